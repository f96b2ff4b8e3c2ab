//! Read paths for the JMAP API: mailbox counts, change log pages.

use super::*;
use crate::model::*;
use crate::{Error, Result};
use mail_types::{AccountId, EmailId, MailboxId, Role, State, ThreadId};
use rusqlite::{Connection, params};

pub(crate) fn mailbox_views(c: &mut Connection, account: AccountId) -> Result<Vec<MailboxView>> {
    // Counts by Email, not by copy (RFC 8621 2: totalEmails counts Emails in the mailbox);
    // "unread" is an Email without $seen. Kept by triggers (schema.sql, mailbox_thread).
    let mut st = c.prepare(
        "SELECT id, name, delimiter, parent_id, role, subscribed, selectable, \
         (SELECT sort_order FROM mailbox_sort WHERE mailbox_id = mailbox.id), \
         total_emails, unread_emails, total_threads, unread_threads FROM mailbox \
         WHERE account_id = ?1 ORDER BY name",
    )?;
    let rows = st.query_map([account.0], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, Option<i64>>(3)?,
            r.get::<_, Option<String>>(4)?,
            r.get::<_, bool>(5)?,
            r.get::<_, bool>(6)?,
            r.get::<_, Option<u32>>(7)?,
            (
                count(r.get::<_, i64>(8)?),
                count(r.get::<_, i64>(9)?),
                count(r.get::<_, i64>(10)?),
                count(r.get::<_, i64>(11)?),
            ),
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, full, delim, parent, role, subscribed, selectable, sort_order, counts) = row?;
        let name = match (&delim, parent) {
            (Some(d), Some(_)) if !d.is_empty() => full
                .rsplit_once(d.as_str())
                .map(|(_, leaf)| leaf.to_string())
                .unwrap_or_else(|| full.clone()),
            _ => full.clone(),
        };
        let (total_emails, unread_emails, total_threads, unread_threads) = counts;
        out.push(MailboxView {
            id: MailboxId(id),
            name,
            parent: parent.map(MailboxId),
            role: role.as_deref().and_then(Role::from_name),
            subscribed,
            selectable,
            total_emails,
            unread_emails,
            total_threads,
            unread_threads,
            sort_order,
        });
    }
    Ok(out)
}

/// A kept counter as a JMAP count (never below zero, whatever happened to the row).
fn count(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

pub(crate) fn changes_page(
    c: &mut Connection,
    account: AccountId,
    object: ObjectType,
    since: ChangePosition,
    max: usize,
) -> Result<std::result::Result<ChangesPage, ChangesError>> {
    let current: i64 = c
        .query_row(
            "SELECT state FROM account WHERE id = ?1",
            [account.0],
            |r| r.get(0),
        )
        .map_err(|_| Error::NotFound(format!("account {account}")))?;
    if since.state < 0 || since.state > current {
        return Ok(Err(ChangesError::UnknownState));
    }
    let mut st = c.prepare_cached(
        "SELECT state, rowid, object_id, op FROM change \
         WHERE account_id = ?1 AND type = ?2 AND (state > ?3 OR (state = ?3 AND rowid > ?4)) \
         ORDER BY state, rowid",
    )?;
    let rows = st.query_map(
        params![account.0, object.as_str(), since.state, since.row],
        |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ))
        },
    )?;
    let mut fold = PageFold::new(current, max);
    for row in rows {
        let (state, rowid, id, op) = row?;
        if !fold.take(state, rowid, id, op) {
            break;
        }
    }
    Ok(Ok(fold.finish()))
}

fn json_list(s: &str) -> Vec<String> {
    serde_json::from_str(s).unwrap_or_default()
}

fn json_value(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or(serde_json::Value::Array(Vec::new()))
}

pub(crate) fn emails(
    c: &mut Connection,
    account: AccountId,
    ids: &[EmailId],
) -> Result<Vec<EmailView>> {
    let mut st = c.prepare_cached(
        "SELECT id, thread_id, blob_id, size, received_at, sent_at, message_id, in_reply_to, refs, \
         subject, addr_from, addr_sender, addr_reply_to, addr_to, addr_cc, addr_bcc, preview, \
         has_attachment, keywords, blob_by_id, sent_offset FROM email \
         WHERE id = ?1 AND account_id = ?2",
    )?;
    let mut boxes = c.prepare_cached("SELECT DISTINCT mailbox_id FROM copy WHERE email_id = ?1")?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let row = st.query_row(params![id.0, account.0], |r| {
            Ok((
                EmailView {
                    id: EmailId(r.get(0)?),
                    thread: ThreadId(r.get(1)?),
                    blob_id: r.get(2)?,
                    mailboxes: Vec::new(),
                    keywords: json_list(&r.get::<_, String>(18)?),
                    size: r.get(3)?,
                    received_at: r.get(4)?,
                    sent_at: r.get(5)?,
                    sent_offset: r.get(20)?,
                    message_id: r.get(6)?,
                    in_reply_to: json_list(&r.get::<_, String>(7)?),
                    references: json_list(&r.get::<_, String>(8)?),
                    subject: r.get(9)?,
                    from: json_value(&r.get::<_, String>(10)?),
                    sender: json_value(&r.get::<_, String>(11)?),
                    reply_to: json_value(&r.get::<_, String>(12)?),
                    to: json_value(&r.get::<_, String>(13)?),
                    cc: json_value(&r.get::<_, String>(14)?),
                    bcc: json_value(&r.get::<_, String>(15)?),
                    preview: r.get(16)?,
                    has_attachment: r.get(17)?,
                    blob_by_id: r.get(19)?,
                },
                (),
            ))
        });
        let mut view = match row {
            Ok((v, ())) => v,
            Err(rusqlite::Error::QueryReturnedNoRows) => continue,
            Err(e) => return Err(e.into()),
        };
        let rows = boxes.query_map([id.0], |r| Ok(MailboxId(r.get(0)?)))?;
        view.mailboxes = rows.collect::<rusqlite::Result<Vec<_>>>()?;
        out.push(view);
    }
    Ok(out)
}

/// SQL parameters of a query being built.
type Params = Vec<Box<dyn rusqlite::ToSql>>;

fn push(params: &mut Params, v: impl rusqlite::ToSql + 'static) -> usize {
    params.push(Box::new(v));
    params.len()
}

/// `%needle%` for LIKE, with the wildcards of the needle escaped (ESCAPE '\').
fn like_pattern(needle: &str) -> String {
    let escaped = needle
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// LIKE pattern of a keyword in the stored JSON array of lowercase keywords.
fn keyword_pattern(k: &str) -> String {
    like_pattern(&serde_json::to_string(&k.to_lowercase()).unwrap_or_default())
}

/// Most words of one text condition that are looked up.
const MAX_WORDS: usize = 32;

/// FTS5 query of words, all required: each word the phrase of its index words
/// (`fulltext`), so nothing in it is FTS syntax. Text indexed before the index got
/// `fulltext`'s words was cut by `unicode61` alone: a word whose phrase differs from the
/// word as it was written is looked up both ways, so that mail is still found.
fn fts_words(column: Option<&str>, text: &str) -> Option<String> {
    let words: Vec<String> = text
        .split_whitespace()
        .take(MAX_WORDS)
        .map(|w| {
            // A word without a letter or digit matches nothing (an empty phrase).
            let p = crate::fulltext::phrase(w).map_or_else(|| "\"\"".to_string(), |p| p.fts5());
            let raw = format!("\"{}\"", w.replace('"', "\"\""));
            let q = if raw == p {
                p
            } else {
                format!("({p} OR {raw})")
            };
            match column {
                Some(c) => format!("{c} : {q}"),
                None => q,
            }
        })
        .collect();
    (!words.is_empty()).then(|| words.join(" AND "))
}

/// The SQL expression (over `email e`) of one condition. `date` is the column that holds
/// receivedAt (the copy's, on the mailbox fast path, so the index serves ranges).
/// How a full-text word is tested on a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fts {
    /// `e.id IN (rowids of the word)`: SQLite builds each word's rowid list once. Right
    /// unless the word is in most messages (the list is then large, and a page needs few
    /// rows).
    Lists,
    /// A per-row lookup of `rowid = e.id` in the index: right when walking rows in order
    /// and most of them match, so a page is found after a few rows.
    Probe,
}

fn condition_sql(c: &EmailCondition, date: &str, fts: Fts, params: &mut Params) -> String {
    use EmailCondition as C;
    match c {
        C::InMailbox(m) => {
            let n = push(params, m.0);
            format!("EXISTS (SELECT 1 FROM copy x WHERE x.email_id = e.id AND x.mailbox_id = ?{n})")
        }
        C::InMailboxOtherThan(list) => {
            let mut ids = String::new();
            for m in list.iter().take(1000) {
                let n = push(params, m.0);
                if !ids.is_empty() {
                    ids.push(',');
                }
                ids.push_str(&format!("?{n}"));
            }
            if ids.is_empty() {
                "EXISTS (SELECT 1 FROM copy x WHERE x.email_id = e.id)".into()
            } else {
                format!(
                    "EXISTS (SELECT 1 FROM copy x WHERE x.email_id = e.id AND x.mailbox_id NOT IN ({ids}))"
                )
            }
        }
        C::Before(t) => format!("{date} < ?{}", push(params, *t)),
        C::After(t) => format!("{date} >= ?{}", push(params, *t)),
        C::MinSize(v) => format!(
            "e.size >= ?{}",
            push(params, i64::try_from(*v).unwrap_or(i64::MAX))
        ),
        C::MaxSize(v) => format!(
            "e.size < ?{}",
            push(params, i64::try_from(*v).unwrap_or(i64::MAX))
        ),
        C::HasKeyword(k) => format!(
            "e.keywords LIKE ?{} ESCAPE '\\'",
            push(params, keyword_pattern(k))
        ),
        C::NotKeyword(k) => format!(
            "e.keywords NOT LIKE ?{} ESCAPE '\\'",
            push(params, keyword_pattern(k))
        ),
        C::SomeInThreadHaveKeyword(k) => format!(
            "EXISTS (SELECT 1 FROM email t WHERE t.thread_id = e.thread_id AND t.orphaned = 0 \
             AND t.keywords LIKE ?{} ESCAPE '\\')",
            push(params, keyword_pattern(k))
        ),
        C::NoneInThreadHaveKeyword(k) => format!(
            "NOT EXISTS (SELECT 1 FROM email t WHERE t.thread_id = e.thread_id AND t.orphaned = 0 \
             AND t.keywords LIKE ?{} ESCAPE '\\')",
            push(params, keyword_pattern(k))
        ),
        C::AllInThreadHaveKeyword(k) => format!(
            "NOT EXISTS (SELECT 1 FROM email t WHERE t.thread_id = e.thread_id AND t.orphaned = 0 \
             AND t.keywords NOT LIKE ?{} ESCAPE '\\')",
            push(params, keyword_pattern(k))
        ),
        C::HasAttachment(h) => format!("e.has_attachment = {}", i32::from(*h)),
        C::Text(text) => match fts_words(None, text) {
            // Every word somewhere: in the header part or in the body. Each table answers
            // with its own rowid list; SQLite probes both per candidate row.
            Some(_) => {
                let mut parts = Vec::new();
                for w in text.split_whitespace().take(MAX_WORDS) {
                    let Some(q) = fts_words(None, w) else {
                        continue;
                    };
                    let n = push(params, q);
                    parts.push(match fts {
                        Fts::Lists => format!(
                            "(e.id IN (SELECT rowid FROM email_fts_head WHERE email_fts_head MATCH ?{n}) \
                             OR e.id IN (SELECT rowid FROM email_fts_body WHERE email_fts_body MATCH ?{n}))"
                        ),
                        // The body first: a common word is far more often there.
                        Fts::Probe => format!(
                            "(EXISTS (SELECT 1 FROM email_fts_body WHERE email_fts_body MATCH ?{n} AND rowid = e.id) \
                             OR EXISTS (SELECT 1 FROM email_fts_head WHERE email_fts_head MATCH ?{n} AND rowid = e.id))"
                        ),
                    });
                }
                parts.join(" AND ")
            }
            None => "1".into(),
        },
        C::Subject(text) => match fts_words(Some("subject"), text) {
            Some(q) => {
                let n = push(params, q);
                format!(
                    "e.id IN (SELECT rowid FROM email_fts_head WHERE email_fts_head MATCH ?{n})"
                )
            }
            None => "1".into(),
        },
        C::Body(text) => match fts_words(Some("body"), text) {
            Some(q) => {
                let n = push(params, q);
                format!(
                    "e.id IN (SELECT rowid FROM email_fts_body WHERE email_fts_body MATCH ?{n})"
                )
            }
            None => "1".into(),
        },
        // The stored JSON holds names and addresses as written; a substring match on it
        // finds either (LIKE is case-insensitive for ASCII).
        C::From(v) => format!(
            "e.addr_from LIKE ?{} ESCAPE '\\'",
            push(params, like_pattern(v))
        ),
        C::To(v) => format!(
            "e.addr_to LIKE ?{} ESCAPE '\\'",
            push(params, like_pattern(v))
        ),
        C::Cc(v) => format!(
            "e.addr_cc LIKE ?{} ESCAPE '\\'",
            push(params, like_pattern(v))
        ),
        C::Bcc(v) => format!(
            "e.addr_bcc LIKE ?{} ESCAPE '\\'",
            push(params, like_pattern(v))
        ),
        C::Header(name, value) => {
            let a = push(params, name.clone());
            let b = push(params, value.clone());
            format!("(e.blob_id IS NOT NULL AND {HEADER_FN}(e.blob_id, ?{a}, ?{b}))")
        }
        C::Nothing => "0".into(),
    }
}

/// Most nodes of a filter compiled into SQL (jmap-proto refuses larger ones first).
const MAX_FILTER_NODES: usize = 10_000;

/// The SQL expression of a filter tree. Iterative over an explicit stack, so a deep tree
/// cannot overflow ours; the depth SQLite sees is bounded by jmap-proto's limit.
fn filter_sql(
    f: &EmailFilter,
    date: &str,
    fts: Fts,
    params: &mut Params,
    nodes: &mut usize,
) -> Result<String> {
    *nodes += 1;
    if *nodes > MAX_FILTER_NODES {
        return Err(Error::Corrupt("filter too large".into()));
    }
    let (parts, join, negate) = match f {
        EmailFilter::Condition(c) => return Ok(condition_sql(c, date, fts, params)),
        EmailFilter::And(p) => (p, " AND ", false),
        EmailFilter::Or(p) => (p, " OR ", false),
        EmailFilter::Not(p) => (p, " OR ", true),
    };
    let mut sql = Vec::with_capacity(parts.len());
    for p in parts {
        sql.push(filter_sql(p, "e.received_at", fts, params, nodes)?);
    }
    let empty = sql.is_empty();
    let inner = if empty {
        // AND of nothing is true, OR of nothing false (NOT of nothing: true).
        if join == " AND " || negate {
            "1".to_string()
        } else {
            "0".to_string()
        }
    } else {
        balanced(sql, join)
    };
    if negate && !empty {
        Ok(format!("NOT {inner}"))
    } else {
        Ok(inner)
    }
}

/// `(a OR b OR ...)` grouped in nested chunks of at most 8, so that a wide operator does
/// not make an expression tree deeper than SQLite allows (1000 levels).
fn balanced(mut parts: Vec<String>, join: &str) -> String {
    const CHUNK: usize = 8;
    while parts.len() > CHUNK {
        parts = parts
            .chunks(CHUNK)
            .map(|c| format!("({})", c.join(join)))
            .collect();
    }
    format!("({})", parts.join(join))
}

/// The sort expression of one comparator.
fn sort_sql(s: &EmailSort, date: &str, params: &mut Params) -> String {
    let collate = match s.collation {
        Collation::UnicodeCasemap => format!(" COLLATE {UNICODE_COLLATION}"),
        Collation::AsciiCasemap => " COLLATE NOCASE".into(),
        Collation::Octet => " COLLATE BINARY".into(),
    };
    let dir = if s.ascending { "ASC" } else { "DESC" };
    let address = |col: &str| {
        format!(
            "coalesce(nullif(json_extract(e.{col}, '$[0].name'), ''), \
             json_extract(e.{col}, '$[0].email'), ''){collate}"
        )
    };
    let expr = match &s.key {
        EmailSortKey::ReceivedAt => date.to_string(),
        // An Email without a Date sorts by its arrival.
        EmailSortKey::SentAt => "coalesce(e.sent_at, e.received_at)".into(),
        EmailSortKey::Size => "e.size".into(),
        EmailSortKey::From => address("addr_from"),
        EmailSortKey::To => address("addr_to"),
        EmailSortKey::Subject => format!("{BASE_SUBJECT_FN}(e.subject){collate}"),
        EmailSortKey::HasKeyword(k) => format!(
            "(e.keywords LIKE ?{} ESCAPE '\\')",
            push(params, keyword_pattern(k))
        ),
        EmailSortKey::SomeInThreadHaveKeyword(k) => format!(
            "EXISTS (SELECT 1 FROM email t WHERE t.thread_id = e.thread_id AND t.orphaned = 0 \
             AND t.keywords LIKE ?{} ESCAPE '\\')",
            push(params, keyword_pattern(k))
        ),
        EmailSortKey::AllInThreadHaveKeyword(k) => format!(
            "NOT EXISTS (SELECT 1 FROM email t WHERE t.thread_id = e.thread_id AND t.orphaned = 0 \
             AND t.keywords NOT LIKE ?{} ESCAPE '\\')",
            push(params, keyword_pattern(k))
        ),
    };
    format!("{expr} {dir}")
}

/// Name of the SQL function `header(blob_id, name, value)`: whether the stored message
/// has that header field (containing `value`, case-insensitively, if not NULL).
pub(crate) const HEADER_FN: &str = "tidings_header";
/// Name of the SQL function giving the RFC 5256 base subject.
pub(crate) const BASE_SUBJECT_FN: &str = "tidings_base_subject";
/// Name of the `i;unicode-casemap` collation.
pub(crate) const UNICODE_COLLATION: &str = "tidings_unicode_casemap";

/// Registers the functions and the collation the queries use on a connection.
pub(crate) fn register(c: &Connection, blobs: std::sync::Arc<crate::blobs::Blobs>) -> Result<()> {
    use rusqlite::functions::FunctionFlags;
    c.create_collation(UNICODE_COLLATION, |a: &str, b: &str| {
        let fold = |s: &str| s.chars().flat_map(char::to_lowercase).collect::<String>();
        fold(a).cmp(&fold(b)).then_with(|| a.cmp(b))
    })?;
    c.create_scalar_function(
        BASE_SUBJECT_FN,
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let s: Option<String> = ctx.get(0)?;
            Ok(s.map(|s| mime::base_subject(&s)).unwrap_or_default())
        },
    )?;
    c.create_scalar_function(HEADER_FN, 3, FunctionFlags::SQLITE_UTF8, move |ctx| {
        let id: String = ctx.get(0)?;
        let name: String = ctx.get(1)?;
        let value: Option<String> = ctx.get(2)?;
        let Ok(Some(head)) = blobs.head(&id) else {
            return Ok(false);
        };
        let needle = value.map(|v| v.to_lowercase());
        Ok(mime::headers::values(&head, &name)
            .iter()
            .any(|v| match &needle {
                None => true,
                Some(n) => mime::headers::as_text(v)
                    .to_lowercase()
                    .contains(n.as_str()),
            }))
    })?;
    Ok(())
}

/// The SQL of a query without its order: what it selects from, and the conditions.
struct Built {
    sql: String,
    params: Params,
    /// Something beyond "every Email of the mailbox (or account)" is asked.
    filtered: bool,
    mailbox: Option<MailboxId>,
    /// The receivedAt column to order by.
    date: &'static str,
}

/// Builds the query. With `by_date`, a top-level `inMailbox` walks that mailbox's copies
/// by date (the index on copy (mailbox_id, received_at)); with `Fts::Lists`, the first
/// top-level full-text word is where the query starts (its rowids, head and body), so
/// the work is proportional to the word's hits, not to the account.
fn build(account: AccountId, q: &EmailQuery, by_date: bool, fts: Fts) -> Result<Built> {
    let mut params: Params = vec![Box::new(account.0)];
    let mut conjuncts: Vec<EmailFilter> = match &q.filter {
        Some(EmailFilter::And(parts)) => parts.clone(),
        Some(f) => vec![f.clone()],
        None => Vec::new(),
    };
    let mut mailbox = None;
    if by_date
        && let Some(i) = conjuncts
            .iter()
            .position(|f| matches!(f, EmailFilter::Condition(EmailCondition::InMailbox(_))))
        && let EmailFilter::Condition(EmailCondition::InMailbox(m)) = conjuncts.remove(i)
    {
        mailbox = Some(m);
    }
    let mut driver: Option<String> = None;
    if fts == Fts::Lists
        && let Some(i) = conjuncts.iter().position(|f| {
            matches!(f, EmailFilter::Condition(EmailCondition::Text(t)) if fts_words(None, t).is_some())
        })
        && let EmailFilter::Condition(EmailCondition::Text(t)) = conjuncts.remove(i)
    {
        let mut words = t.split_whitespace().take(MAX_WORDS);
        driver = words.next().and_then(|w| fts_words(None, w));
        let rest: Vec<&str> = words.collect();
        if !rest.is_empty() {
            conjuncts.push(EmailFilter::Condition(EmailCondition::Text(rest.join(" "))));
        }
    }
    let date = if mailbox.is_some() {
        "c.received_at"
    } else {
        "e.received_at"
    };
    let from = match &driver {
        Some(w) => {
            let n = push(&mut params, w.clone());
            let hits = format!(
                "(SELECT rowid AS r FROM email_fts_body WHERE email_fts_body MATCH ?{n} \
                 UNION SELECT rowid FROM email_fts_head WHERE email_fts_head MATCH ?{n}) u"
            );
            if mailbox.is_some() {
                format!(
                    "{hits} CROSS JOIN copy c ON c.email_id = u.r CROSS JOIN email e ON e.id = c.email_id"
                )
            } else {
                format!("{hits} CROSS JOIN email e ON e.id = u.r")
            }
        }
        None if mailbox.is_some() => "copy c JOIN email e ON e.id = c.email_id".to_string(),
        None => "email e".to_string(),
    };
    let mut sql = format!("SELECT e.id, e.thread_id FROM {from} WHERE e.account_id = ?1");
    match mailbox {
        Some(m) => {
            let n = push(&mut params, m.0);
            sql.push_str(&format!(" AND c.mailbox_id = ?{n}"));
        }
        None => sql.push_str(" AND e.orphaned = 0"),
    }
    let filtered = driver.is_some() || !conjuncts.is_empty();
    let mut nodes = 0;
    for f in &conjuncts {
        sql.push_str(" AND ");
        sql.push_str(&filter_sql(f, date, fts, &mut params, &mut nodes)?);
    }
    Ok(Built {
        sql,
        params,
        filtered,
        mailbox,
        date,
    })
}

/// Every full-text word of the filter's `text` conditions.
fn text_words(f: &EmailFilter, out: &mut Vec<String>) {
    let mut stack = vec![f];
    while let Some(f) = stack.pop() {
        match f {
            EmailFilter::And(p) | EmailFilter::Or(p) | EmailFilter::Not(p) => stack.extend(p),
            EmailFilter::Condition(EmailCondition::Text(t)) => {
                out.extend(t.split_whitespace().take(MAX_WORDS).map(str::to_string))
            }
            EmailFilter::Condition(_) => {}
        }
    }
}

/// Whether the page of a query in date order is found faster by testing the full-text
/// words row by row (`Fts::Probe`) than by listing their hits (`Fts::Lists`): so when each
/// word is in so many of the `n` messages that the walk to the end of the page is short.
/// Listing costs about one unit per hit, a row tested about 240 (both measured on FTS5);
/// the walk is about `(offset + limit) * n / hits` rows; probing wins when
/// hits > sqrt(240 * (offset + limit) * n). Each word's hits are counted up to that bound
/// only, so deciding costs at most that many index entries per word.
fn prefer_probe(c: &Connection, q: &EmailQuery, n: i64) -> Result<bool> {
    let Some((offset, limit)) = q.window else {
        return Ok(false);
    };
    let Some(f) = &q.filter else {
        return Ok(false);
    };
    let mut words = Vec::new();
    text_words(f, &mut words);
    if words.is_empty() || words.len() > 4 {
        return Ok(false);
    }
    let page = (offset.saturating_add(limit)).min(1 << 20) as f64;
    let bound = (240.0 * page * n.max(0) as f64).sqrt().ceil() as i64;
    if bound >= n {
        return Ok(false);
    }
    for w in words {
        let Some(m) = fts_words(None, &w) else {
            continue;
        };
        let mut hits = 0i64;
        for table in ["email_fts_body", "email_fts_head"] {
            let k: i64 = c
                .prepare_cached(&format!(
                    "SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {table} MATCH ?1 LIMIT ?2)"
                ))?
                .query_row(params![m, bound], |r| r.get(0))?;
            hits = hits.max(k);
        }
        if hits < bound {
            return Ok(false);
        }
    }
    Ok(true)
}

pub(crate) fn query_emails(
    c: &mut Connection,
    account: AccountId,
    q: &EmailQuery,
) -> Result<QueryPage> {
    let by_date =
        q.sort.is_empty() || (q.sort.len() == 1 && q.sort[0].key == EmailSortKey::ReceivedAt);
    let ascending = q.sort.first().is_some_and(|s| s.ascending);
    let listed = build(account, q, by_date, Fts::Lists)?;
    let total = if q.count {
        let refs: Vec<&dyn rusqlite::ToSql> = listed.params.iter().map(|b| b.as_ref()).collect();
        Some(match (listed.mailbox, listed.filtered) {
            // Collapsed: one per thread with a match.
            _ if q.collapse_threads => c.query_row(
                &format!("SELECT count(DISTINCT thread_id) FROM ({})", listed.sql),
                refs.as_slice(),
                |r| r.get::<_, i64>(0),
            )?,
            // Kept by triggers: counting a mailbox costs nothing. (A message with two
            // copies in one mailbox counts twice here; rare, and JMAP totals are advisory.)
            (Some(m), false) => {
                c.query_row("SELECT copies FROM mailbox WHERE id = ?1", [m.0], |r| {
                    r.get::<_, i64>(0)
                })?
            }
            (Some(_), true) => c.query_row(
                &format!("SELECT count(DISTINCT id) FROM ({})", listed.sql),
                refs.as_slice(),
                |r| r.get::<_, i64>(0),
            )?,
            // Without a mailbox each Email is one row.
            (None, _) => c.query_row(
                &format!("SELECT count(*) FROM ({})", listed.sql),
                refs.as_slice(),
                |r| r.get::<_, i64>(0),
            )?,
        } as usize)
    } else {
        None
    };
    // A page in date order of words found in most messages: walk the dates, test the words.
    let has_text = q.filter.as_ref().is_some_and(|f| {
        let mut words = Vec::new();
        text_words(f, &mut words);
        !words.is_empty()
    });
    let probe = by_date && !q.collapse_threads && has_text && {
        let n: i64 = match listed.mailbox {
            Some(m) => c.query_row("SELECT copies FROM mailbox WHERE id = ?1", [m.0], |r| {
                r.get(0)
            })?,
            None => c.query_row(
                "SELECT coalesce(sum(copies), 0) FROM mailbox WHERE account_id = ?1",
                [account.0],
                |r| r.get(0),
            )?,
        };
        prefer_probe(c, q, n)?
    };
    let Built {
        mut sql,
        mut params,
        date,
        ..
    } = if probe {
        build(account, q, by_date, Fts::Probe)?
    } else {
        listed
    };
    let tie = if ascending { "ASC" } else { "DESC" };
    if q.sort.is_empty() {
        sql.push_str(&format!(" ORDER BY {date} DESC, e.id DESC"));
    } else {
        let mut keys = Vec::new();
        for s in &q.sort {
            keys.push(sort_sql(s, date, &mut params));
        }
        sql.push_str(&format!(" ORDER BY {}, e.id {tie}", keys.join(", ")));
    }
    // Collapsed, the window is over threads: the rows stream in sort order (by the index
    // for date order) and reading stops at the window's last thread.
    let sql_window = q.window.filter(|_| !q.collapse_threads);
    let thread_window = q.window.filter(|_| q.collapse_threads);
    if let Some((offset, limit)) = sql_window {
        sql.push_str(&format!(
            " LIMIT {} OFFSET {}",
            limit.min(1 << 30),
            offset.min(1 << 40)
        ));
    }
    let refs: Vec<&dyn rusqlite::ToSql> = params.iter().map(|b| b.as_ref()).collect();
    let mut st = c.prepare(&sql)?;
    let rows = st.query_map(refs.as_slice(), |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
    })?;
    let mut ids = Vec::new();
    let mut threads = Vec::new();
    let mut seen_threads = std::collections::HashSet::new();
    let mut seen_emails = std::collections::HashSet::new();
    for row in rows {
        let (id, thread) = row?;
        // An Email with two copies in one mailbox is listed once.
        if !seen_emails.insert(id) {
            continue;
        }
        if q.collapse_threads && !seen_threads.insert(thread) {
            continue;
        }
        ids.push(EmailId(id));
        threads.push(ThreadId(thread));
        if let Some((offset, limit)) = thread_window
            && ids.len() >= offset.saturating_add(limit)
        {
            break;
        }
        if q.stop_after == Some(EmailId(id)) && q.window.is_none() {
            break;
        }
    }
    if let Some((offset, _)) = thread_window {
        let skip = offset.min(ids.len());
        ids.drain(..skip);
        threads.drain(..skip);
    }
    Ok(QueryPage {
        ids,
        threads,
        total,
    })
}

pub(crate) fn threads(
    c: &mut Connection,
    account: AccountId,
    ids: &[ThreadId],
) -> Result<Vec<(ThreadId, Vec<EmailId>)>> {
    // By the thread's index: left to itself, SQLite walks (account_id, received_at) to
    // avoid sorting a thread's few Emails, i.e. every Email of the account per thread
    // (Thread/get of a first screen of 50 conversations took 3.5 s at 100,000 messages).
    let mut st = c.prepare_cached(
        "SELECT id FROM email INDEXED BY email_thread \
         WHERE thread_id = ?1 AND account_id = ?2 AND orphaned = 0 ORDER BY received_at, id",
    )?;
    let mut out = Vec::new();
    for t in ids {
        let rows = st.query_map(params![t.0, account.0], |r| Ok(EmailId(r.get(0)?)))?;
        let emails = rows.collect::<rusqlite::Result<Vec<_>>>()?;
        if !emails.is_empty() {
            out.push((*t, emails));
        }
    }
    Ok(out)
}

#[async_trait]
impl Reading for SqliteStore {
    async fn account_state(&self, id: AccountId) -> Result<State> {
        self.read_call(move |c| {
            c.query_row("SELECT state FROM account WHERE id = ?1", [id.0], |r| {
                Ok(State(r.get(0)?))
            })
            .optional()?
            .ok_or_else(|| Error::NotFound(format!("account {id}")))
        })
        .await
    }

    async fn mailbox_messages(&self, mailbox: MailboxId) -> Result<Vec<MessageSummary>> {
        self.call(move |c| {
            let mut st = c.prepare(
                "SELECT e.id, e.thread_id, c.uid, c.flags, e.size, e.received_at, e.subject, \
                 e.message_id, e.blob_id, e.has_attachment, e.preview \
                 FROM copy c JOIN email e ON e.id = c.email_id \
                 WHERE c.mailbox_id = ?1 AND c.uid < 4294967296 ORDER BY c.uid",
            )?;
            let rows = st.query_map([mailbox.0], |r| {
                let flags: String = r.get(3)?;
                Ok(MessageSummary {
                    email: EmailId(r.get(0)?),
                    thread: ThreadId(r.get(1)?),
                    uid: Uid(r.get(2)?),
                    flags: write::split_flags(&flags),
                    size: r.get(4)?,
                    internal_date: r.get(5)?,
                    subject: r.get(6)?,
                    message_id: r.get(7)?,
                    blob_id: r.get(8)?,
                    has_attachment: r.get(9)?,
                    preview: r.get(10)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn blob(&self, blob_id: &str) -> Result<Option<Vec<u8>>> {
        let id = blob_id.to_string();
        let size: Option<i64> = {
            let id = id.clone();
            self.read_call(move |c| {
                Ok(
                    c.query_row("SELECT size FROM blob WHERE id = ?1", [&id], |r| r.get(0))
                        .optional()?,
                )
            })
            .await?
        };
        let Some(size) = size else {
            return Ok(None);
        };
        // The file is read outside the database lock.
        let blobs = self.blobs.clone();
        tokio::task::spawn_blocking(move || blobs.get(&id, size as u64))
            .await
            .map_err(|e| Error::Task(e.to_string()))?
    }

    async fn blob_in_account(&self, account: AccountId, blob_id: &str) -> Result<bool> {
        let id = blob_id.to_string();
        self.read_call(move |c| {
            // (jmap: or an upload of the account.)
            Ok(c.prepare_cached(
                "SELECT 1 FROM email WHERE blob_id = ?1 AND account_id = ?2 \
                 UNION ALL SELECT 1 FROM upload WHERE blob_id = ?1 AND account_id = ?2 LIMIT 1",
            )?
            .exists(params![id, account.0])?)
        })
        .await
    }

    async fn changes_since(&self, account: AccountId, since: State) -> Result<Vec<Change>> {
        self.call(move |c| {
            let mut st = c.prepare(
                "SELECT state, type, object_id, op FROM change \
                 WHERE account_id = ?1 AND state > ?2 ORDER BY state, rowid",
            )?;
            let rows = st.query_map(params![account.0, since.0], |r| {
                let t: String = r.get(1)?;
                let op: i64 = r.get(3)?;
                Ok((State(r.get(0)?), t, r.get::<_, i64>(2)?, op))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (state, t, id, op) = row?;
                let object = ObjectType::from_name(&t)
                    .ok_or_else(|| Error::Corrupt(format!("change type {t}")))?;
                let op = match op {
                    0 => ChangeOp::Created,
                    1 => ChangeOp::Updated,
                    _ => ChangeOp::Destroyed,
                };
                out.push(Change {
                    state,
                    object,
                    id,
                    op,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn changes_page(
        &self,
        account: AccountId,
        object: ObjectType,
        since: ChangePosition,
        max: usize,
    ) -> Result<std::result::Result<ChangesPage, ChangesError>> {
        self.call(move |c| reading::changes_page(c, account, object, since, max))
            .await
    }

    async fn mailbox_views(&self, account: AccountId) -> Result<Vec<MailboxView>> {
        self.read_call(move |c| reading::mailbox_views(c, account))
            .await
    }

    async fn emails(&self, account: AccountId, ids: &[EmailId]) -> Result<Vec<EmailView>> {
        let ids = ids.to_vec();
        self.read_call(move |c| reading::emails(c, account, &ids))
            .await
    }

    async fn query_emails(&self, account: AccountId, q: &EmailQuery) -> Result<QueryPage> {
        let q = q.clone();
        self.read_call(move |c| reading::query_emails(c, account, &q))
            .await
    }

    async fn threads(
        &self,
        account: AccountId,
        ids: &[ThreadId],
    ) -> Result<Vec<(ThreadId, Vec<EmailId>)>> {
        let ids = ids.to_vec();
        self.read_call(move |c| reading::threads(c, account, &ids))
            .await
    }

    async fn search(&self, account: AccountId, query: &str) -> Result<Vec<EmailId>> {
        if query.split_whitespace().next().is_none() {
            return Ok(Vec::new());
        }
        // The full-text query of Email/query, newest first.
        let q = EmailQuery {
            filter: Some(EmailFilter::Condition(EmailCondition::Text(
                query.to_string(),
            ))),
            ..EmailQuery::default()
        };
        Ok(self.query_emails(account, &q).await?.ids)
    }

    async fn blob_size(&self, blob_id: &str) -> Result<Option<u64>> {
        let id = blob_id.to_string();
        let size: Option<i64> = self
            .read_call(move |c| {
                Ok(c.prepare_cached("SELECT size FROM blob WHERE id = ?1")?
                    .query_row([&id], |r| r.get(0))
                    .optional()?)
            })
            .await?;
        Ok(size.and_then(|s| u64::try_from(s).ok()))
    }

    async fn emails_with_blob(&self, account: AccountId, blob_id: &str) -> Result<Vec<EmailId>> {
        let id = blob_id.to_string();
        self.read_call(move |c| {
            let mut st = c.prepare_cached(
                "SELECT id FROM email WHERE blob_id = ?1 AND account_id = ?2 ORDER BY id",
            )?;
            let rows = st.query_map(params![id, account.0], |r| r.get(0).map(EmailId))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn emails_by_message_id(
        &self,
        account: AccountId,
        message_id: &str,
    ) -> Result<Vec<EmailId>> {
        let m = message_id.to_string();
        self.call(move |c| mdn::emails_by_message_id(c, account, &m))
            .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// 2,000 Emails, received in a shuffled order; "common" in 90 % of the bodies, "rare"
    /// in 1 %, "subj" in some subjects.
    fn store() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(super::super::SCHEMA_V1).unwrap();
        register(&c, std::sync::Arc::new(crate::blobs::Blobs::memory())).unwrap();
        c.execute_batch(
            "INSERT INTO user (name, password_hash) VALUES ('u', 'x');
             INSERT INTO account (user_id, name, kind, host, port, security, username, password_enc)
                 VALUES (1, 'a', 'imap', 'h', 1, 'none', 'u', x'00');
             INSERT INTO mailbox (account_id, raw_name, name) VALUES (1, 'INBOX', 'INBOX');",
        )
        .unwrap();
        for i in 1..=2000i64 {
            let received = (i * 7919) % 2003;
            c.execute(
                "INSERT INTO email (id, account_id, identity, thread_id, received_at) VALUES (?1, 1, ?1, ?1, ?2)",
                params![i, received],
            )
            .unwrap();
            c.execute(
                "INSERT INTO copy (mailbox_id, uid, email_id, received_at) VALUES (1, ?1, ?1, ?2)",
                params![i, received],
            )
            .unwrap();
            let mut body = String::from("filler");
            if i % 10 != 0 {
                body.push_str(" common");
            }
            if i % 100 == 0 {
                body.push_str(" rare");
            }
            c.execute(
                "INSERT INTO email_fts_body (rowid, body) VALUES (?1, ?2)",
                params![i, body],
            )
            .unwrap();
            let subject = if i % 3 == 0 { "subj common" } else { "other" };
            c.execute(
                "INSERT INTO email_fts_head (rowid, subject, addresses) VALUES (?1, ?2, '')",
                params![i, subject],
            )
            .unwrap();
        }
        c
    }

    fn ids(c: &Connection, q: &EmailQuery, fts: Fts) -> Vec<i64> {
        let b = build(AccountId(1), q, true, fts).unwrap();
        let (offset, limit) = q.window.unwrap_or((0, 1 << 30));
        let sql = format!(
            "{} ORDER BY {} DESC, e.id DESC LIMIT {limit} OFFSET {offset}",
            b.sql, b.date
        );
        let refs: Vec<&dyn rusqlite::ToSql> = b.params.iter().map(|b| b.as_ref()).collect();
        let mut st = c.prepare(&sql).unwrap();
        st.query_map(refs.as_slice(), |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<Vec<i64>>>()
            .unwrap()
    }

    #[test]
    fn probing_and_listing_full_text_agree_and_probing_is_chosen_for_common_words() {
        let mut c = store();
        let text = |t: &str| EmailFilter::Condition(EmailCondition::Text(t.into()));
        let inbox = EmailFilter::Condition(EmailCondition::InMailbox(MailboxId(1)));
        let filters = [
            text("common"),
            text("rare"),
            text("common subj"),
            EmailFilter::And(vec![inbox.clone(), text("common")]),
            EmailFilter::Or(vec![text("rare"), text("subj")]),
            EmailFilter::Not(vec![text("common")]),
        ];
        for f in &filters {
            for window in [(0, 1), (0, 50), (100, 20)] {
                let q = EmailQuery {
                    filter: Some(f.clone()),
                    window: Some(window),
                    ..EmailQuery::default()
                };
                let listed = ids(&c, &q, Fts::Lists);
                assert_eq!(listed, ids(&c, &q, Fts::Probe), "{f:?} {window:?}");
                let page = query_emails(&mut c, AccountId(1), &q).unwrap();
                assert_eq!(
                    page.ids.iter().map(|e| e.0).collect::<Vec<_>>(),
                    listed,
                    "{f:?}"
                );
            }
        }
        let q = |t: &str, window| EmailQuery {
            filter: Some(text(t)),
            window: Some(window),
            ..EmailQuery::default()
        };
        // 2,000 messages, a page of 1: probing pays from sqrt(240 * 2000) = 693 hits.
        assert!(prefer_probe(&c, &q("common", (0, 1)), 2000).unwrap());
        assert!(!prefer_probe(&c, &q("rare", (0, 1)), 2000).unwrap());
        assert!(!prefer_probe(&c, &q("common", (0, 50)), 2000).unwrap());
        let counted = query_emails(
            &mut c,
            AccountId(1),
            &EmailQuery {
                count: true,
                ..q("common", (0, 1))
            },
        )
        .unwrap();
        // "common" is in 1,800 bodies and in subjects of multiples of 3 (also in
        // multiples of 10 not in the body: 10 * k with 3 | k: 66 of them).
        assert_eq!(counted.total, Some(1800 + 66));
    }

    /// A window of collapsed results is the same slice of the full collapsed list, and
    /// the total counts threads, while reading stops at the window's end.
    #[test]
    fn collapsed_windows_are_slices_of_the_collapsed_list() {
        let mut c = store();
        c.execute("UPDATE email SET thread_id = (id + 2) / 3", [])
            .unwrap();
        let inbox = EmailFilter::Condition(EmailCondition::InMailbox(MailboxId(1)));
        for filter in [None, Some(inbox)] {
            let full = query_emails(
                &mut c,
                AccountId(1),
                &EmailQuery {
                    filter: filter.clone(),
                    collapse_threads: true,
                    ..EmailQuery::default()
                },
            )
            .unwrap();
            assert_eq!(full.ids.len(), 667, "2,000 Emails in threads of 3");
            for (offset, limit) in [(0, 50), (30, 7), (660, 50), (700, 5)] {
                let page = query_emails(
                    &mut c,
                    AccountId(1),
                    &EmailQuery {
                        filter: filter.clone(),
                        collapse_threads: true,
                        window: Some((offset, limit)),
                        count: true,
                        ..EmailQuery::default()
                    },
                )
                .unwrap();
                let want: Vec<EmailId> =
                    full.ids.iter().skip(offset).take(limit).copied().collect();
                assert_eq!(page.ids, want, "{offset}+{limit}");
                assert_eq!(page.threads.len(), page.ids.len());
                assert_eq!(page.total, Some(667));
            }
        }
    }

    /// The counts the triggers keep (schema.sql, mailbox_thread) equal a full recount
    /// after every kind of write the store makes: copies added (a second copy of an Email
    /// in the same mailbox too), removed, moved and relinked to another Email, $seen set
    /// and cleared, threads merged, Emails deleted with copies left, a mailbox deleted.
    #[test]
    fn mailbox_counts_match_a_recount() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(super::super::SCHEMA_V1).unwrap();
        c.execute_batch("PRAGMA foreign_keys = ON;").unwrap();
        c.execute_batch(
            "INSERT INTO user (name, password_hash) VALUES ('u', 'x');
             INSERT INTO account (user_id, name, kind, host, port, security, username, password_enc)
                 VALUES (1, 'a', 'imap', 'h', 1, 'none', 'u', x'00');
             INSERT INTO mailbox (id, account_id, raw_name, name) VALUES
                 (1, 1, 'INBOX', 'INBOX'), (2, 1, 'Archive', 'Archive'), (3, 1, 'Trash', 'Trash');",
        )
        .unwrap();
        let recount = |c: &Connection| -> Vec<(i64, i64, i64, i64, i64)> {
            let mut st = c
                .prepare(
                    "SELECT m.id, \
                     (SELECT count(DISTINCT e.id) FROM copy c JOIN email e ON e.id = c.email_id WHERE c.mailbox_id = m.id), \
                     (SELECT count(DISTINCT e.id) FROM copy c JOIN email e ON e.id = c.email_id WHERE c.mailbox_id = m.id AND e.keywords NOT LIKE '%\"$seen\"%'), \
                     (SELECT count(DISTINCT e.thread_id) FROM copy c JOIN email e ON e.id = c.email_id WHERE c.mailbox_id = m.id), \
                     (SELECT count(DISTINCT e.thread_id) FROM copy c JOIN email e ON e.id = c.email_id WHERE c.mailbox_id = m.id AND e.keywords NOT LIKE '%\"$seen\"%') \
                     FROM mailbox m ORDER BY m.id",
                )
                .unwrap();
            st.query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap()
            .collect::<rusqlite::Result<Vec<_>>>()
            .unwrap()
        };
        let kept = |c: &Connection| -> Vec<(i64, i64, i64, i64, i64)> {
            let mut st = c
                .prepare(
                    "SELECT id, total_emails, unread_emails, total_threads, unread_threads \
                     FROM mailbox ORDER BY id",
                )
                .unwrap();
            st.query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap()
            .collect::<rusqlite::Result<Vec<_>>>()
            .unwrap()
        };
        // A fixed pseudo-random sequence (an LCG), so a failure replays.
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        let mut uid = 1i64;
        for step in 0..3000 {
            let email = 1 + next(60) as i64;
            let mailbox = 1 + next(3) as i64;
            let sql: String = match next(9) {
                0 | 1 => format!(
                    "INSERT OR IGNORE INTO email (id, account_id, identity, thread_id, keywords) \
                     VALUES ({email}, 1, 'i{email}', {}, '[]')",
                    1 + next(20)
                ),
                2 | 3 => {
                    uid += 1;
                    format!(
                        "INSERT INTO copy (mailbox_id, uid, email_id) \
                         SELECT {mailbox}, {uid}, id FROM email WHERE id = {email}"
                    )
                }
                4 => format!(
                    "DELETE FROM copy WHERE uid IN (SELECT uid FROM copy WHERE email_id = {email} LIMIT 1)"
                ),
                5 => format!(
                    "UPDATE email SET keywords = '{}' WHERE id = {email}",
                    if next(2) == 0 {
                        r#"["$seen","$flagged"]"#
                    } else {
                        r#"["$flagged"]"#
                    }
                ),
                6 => format!(
                    "UPDATE email SET thread_id = {} WHERE thread_id = {}",
                    1 + next(20),
                    1 + next(20)
                ),
                7 => format!(
                    "UPDATE copy SET email_id = {email} WHERE uid = (SELECT min(uid) FROM copy WHERE mailbox_id = {mailbox}) \
                     AND mailbox_id = {mailbox} AND EXISTS (SELECT 1 FROM email WHERE id = {email})"
                ),
                _ => {
                    if next(10) == 0 {
                        format!("DELETE FROM email WHERE id = {email}")
                    } else {
                        uid += 1;
                        format!(
                            "UPDATE copy SET mailbox_id = {mailbox}, uid = {uid} \
                             WHERE uid = (SELECT max(uid) FROM copy WHERE email_id = {email})"
                        )
                    }
                }
            };
            c.execute_batch(&sql).unwrap();
            assert_eq!(kept(&c), recount(&c), "after step {step}: {sql}");
        }
        c.execute_batch("DELETE FROM mailbox WHERE id = 2").unwrap();
        assert_eq!(kept(&c), recount(&c), "after deleting a mailbox");
        assert!(
            kept(&c).iter().any(|k| k.1 > 0),
            "the sequence left mail to count"
        );
    }
}

//! [`Reading`] for PostgreSQL, with the SQLite backend's meaning (sqlite/reading.rs):
//! mailbox views from the counters the triggers keep, Emails read set by set, Email/query
//! with the same filters, sorts, thread collapsing and windows, threads, the change log
//! in pages, blobs, and the full text of `email_text_head` / `email_text_body` (words cut
//! by `fulltext`, so both backends find the same mail).

use super::*;
use crate::fulltext;
use crate::model::*;
use async_trait::async_trait;
use mail_types::{AccountId, EmailId, MailboxId, Role, State, ThreadId, Uid};
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use tokio_postgres::types::ToSql;

/// Most statements a connection keeps prepared: queries are built from JMAP filters, so
/// their texts are many; past this the connection's cache starts over.
const MAX_CACHED: usize = 512;

/// Most words of one text condition that are looked up (as on SQLite).
const MAX_WORDS: usize = 32;

/// Most nodes of a filter compiled into SQL (jmap-proto refuses larger ones first).
const MAX_FILTER_NODES: usize = 10_000;

/// Most bytes of a message read for a header filter (SQLite's `Blobs::head`).
const MAX_HEAD: i32 = 256 * 1024;

/// Bound on `emails_by_message_id`: a Message-ID shared by more Emails is not a real one.
const MAX_MESSAGE_ID_MATCHES: i64 = 100;

/// A tsquery as an SQL literal. Written into the statement, not passed as a parameter, so
/// that each statement is planned knowing the words: whether a word is in a few messages
/// (list them with the index) or in most (walk the dates and test each row) is the
/// planner's choice, from the column's statistics. A query's words are letters and
/// digits (`fulltext`), so the only quotes are the tsquery's own.
fn tsquery_literal(q: &str) -> String {
    format!("'{}'::tsquery", q.replace('\'', "''"))
}

fn to_u32(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

fn json_list(s: &str) -> Vec<String> {
    serde_json::from_str(s).unwrap_or_default()
}

fn json_value(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or(serde_json::Value::Array(Vec::new()))
}

/// A prepared statement of a built query, through the connection's cache (bounded).
async fn prepare(c: &deadpool_postgres::Object, sql: &str) -> Result<tokio_postgres::Statement> {
    if c.statement_cache.size() >= MAX_CACHED {
        c.statement_cache.clear();
    }
    Ok(c.prepare_cached(sql).await?)
}

/// What the conditions of a query are compiled with.
struct Ctx<'a> {
    /// The Emails matching each header condition.
    headers: &'a HeaderHits,
    /// Full-text words are tested row by row (`prefer_probe`), not listed.
    probe: bool,
}

/// SQL parameters of a query being built.
#[derive(Default)]
struct Params(Vec<Box<dyn ToSql + Sync + Send>>);

impl Params {
    /// Adds a parameter; its `$n`.
    fn push(&mut self, v: impl ToSql + Sync + Send + 'static) -> String {
        self.0.push(Box::new(v));
        format!("${}", self.0.len())
    }

    fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.0
            .iter()
            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

/// `%needle%` for LIKE, with the wildcards of the needle escaped (ESCAPE '\'), ASCII
/// lowercased: SQLite's LIKE ignores the case of ASCII letters only.
fn like_pattern(needle: &str) -> String {
    let escaped = needle
        .to_ascii_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// A column with its ASCII letters lowercased (what SQLite's LIKE compares).
fn ascii_lower(col: &str) -> String {
    format!("translate({col}, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')")
}

/// The tsquery of a text's words, all required; `None` when it has no word at all, and
/// `Some(None)` when a word has no letter or digit (FTS5 matches nothing for it).
fn words_query(text: &str) -> Option<Option<String>> {
    let words: Vec<&str> = text.split_whitespace().take(MAX_WORDS).collect();
    if words.is_empty() {
        return None;
    }
    let mut parts = Vec::with_capacity(words.len());
    for w in words {
        match fulltext::phrase(w) {
            Some(p) => parts.push(p.tsquery()),
            None => return Some(None),
        }
    }
    Some(Some(parts.join(" & ")))
}

/// Header conditions of a filter, resolved to the Emails that match them (read from the
/// stored messages once per query, not per row).
type HeaderHits = HashMap<(String, Option<String>), Vec<i64>>;

fn header_conditions(f: &EmailFilter, out: &mut Vec<(String, Option<String>)>) {
    let mut stack = vec![f];
    while let Some(f) = stack.pop() {
        match f {
            EmailFilter::And(p) | EmailFilter::Or(p) | EmailFilter::Not(p) => stack.extend(p),
            EmailFilter::Condition(EmailCondition::Header(n, v)) => {
                if !out.iter().any(|(a, b)| a == n && b == v) {
                    out.push((n.clone(), v.clone()));
                }
            }
            EmailFilter::Condition(_) => {}
        }
    }
}

/// Whether a header block has the field `name` (containing `value`, case-insensitively):
/// SQLite's `tidings_header`.
fn header_matches(head: &[u8], name: &str, value: Option<&str>) -> bool {
    let needle = value.map(str::to_lowercase);
    mime::headers::values(head, name)
        .iter()
        .any(|v| match &needle {
            None => true,
            Some(n) => mime::headers::as_text(v)
                .to_lowercase()
                .contains(n.as_str()),
        })
}

async fn resolve_headers(
    c: &deadpool_postgres::Object,
    account: AccountId,
    f: Option<&EmailFilter>,
) -> Result<HeaderHits> {
    let mut wanted = Vec::new();
    if let Some(f) = f {
        header_conditions(f, &mut wanted);
    }
    let mut hits: HeaderHits = HashMap::new();
    if wanted.is_empty() {
        return Ok(hits);
    }
    for w in &wanted {
        hits.insert(w.clone(), Vec::new());
    }
    let st = c
        .prepare_cached(
            "SELECT e.id, substring(b.data FROM 1 FOR $2) FROM email e \
             JOIN blob b ON b.id = e.blob_id WHERE e.account_id = $1",
        )
        .await?;
    let rows = c
        .query_raw(&st, [&account.0 as &(dyn ToSql + Sync), &MAX_HEAD])
        .await?;
    futures::pin_mut!(rows);
    while let Some(row) = futures::TryStreamExt::try_next(&mut rows).await? {
        let id: i64 = row.get(0);
        let data: &[u8] = row.get(1);
        let head = mime::headers::header_block(data);
        for (name, value) in &wanted {
            if header_matches(head, name, value.as_deref())
                && let Some(v) = hits.get_mut(&(name.clone(), value.clone()))
            {
                v.push(id);
            }
        }
    }
    Ok(hits)
}

/// The SQL expression (over `email e`) of one condition. `date` is the column that holds
/// receivedAt (the copy's, on the mailbox fast path, so the index serves ranges).
fn condition_sql(c: &EmailCondition, date: &str, cx: &Ctx, p: &mut Params) -> String {
    use EmailCondition as C;
    let in_thread = |p: &mut Params, k: &str, negate_row: bool, negate: bool| {
        let n = p.push(k.to_lowercase());
        format!(
            "{}EXISTS (SELECT 1 FROM email t WHERE t.thread_id = e.thread_id \
             AND NOT t.orphaned AND {}t.keywords ? {n}::text)",
            if negate { "NOT " } else { "" },
            if negate_row { "NOT " } else { "" }
        )
    };
    match c {
        C::InMailbox(m) => {
            let n = p.push(m.0);
            format!(
                "EXISTS (SELECT 1 FROM copy x WHERE x.email_id = e.id AND x.mailbox_id = {n}::bigint)"
            )
        }
        C::InMailboxOtherThan(list) => {
            let ids: Vec<i64> = list.iter().take(1000).map(|m| m.0).collect();
            if ids.is_empty() {
                "EXISTS (SELECT 1 FROM copy x WHERE x.email_id = e.id)".into()
            } else {
                let n = p.push(ids);
                format!(
                    "EXISTS (SELECT 1 FROM copy x WHERE x.email_id = e.id \
                     AND x.mailbox_id <> ALL({n}::bigint[]))"
                )
            }
        }
        C::Before(t) => format!("{date} < {}::bigint", p.push(*t)),
        C::After(t) => format!("{date} >= {}::bigint", p.push(*t)),
        C::MinSize(v) => format!("e.size >= {}::bigint", p.push(to_i64(*v))),
        C::MaxSize(v) => format!("e.size < {}::bigint", p.push(to_i64(*v))),
        C::HasKeyword(k) => format!("e.keywords ? {}::text", p.push(k.to_lowercase())),
        C::NotKeyword(k) => format!("NOT e.keywords ? {}::text", p.push(k.to_lowercase())),
        C::SomeInThreadHaveKeyword(k) => in_thread(p, k, false, false),
        C::NoneInThreadHaveKeyword(k) => in_thread(p, k, false, true),
        C::AllInThreadHaveKeyword(k) => in_thread(p, k, true, true),
        C::HasAttachment(h) => format!("e.has_attachment = {h}"),
        C::Text(text) => {
            let words: Vec<&str> = text.split_whitespace().take(MAX_WORDS).collect();
            if words.is_empty() {
                return "TRUE".into();
            }
            // Every word somewhere: in the header part or in the body.
            let mut parts = Vec::with_capacity(words.len());
            for w in words {
                let Some(q) = fulltext::phrase(w) else {
                    return "FALSE".into();
                };
                let q = tsquery_literal(&q.tsquery());
                if cx.probe {
                    // Tested on the row: a scalar subquery is never hashed, so each row
                    // walked costs two index lookups. The body first: a common word is
                    // far more often there.
                    parts.push(format!(
                        "(coalesce((SELECT words FROM email_text_body WHERE email_id = e.id) @@ {q}, false) \
                         OR coalesce((SELECT words FROM email_text_head WHERE email_id = e.id) @@ {q}, false))"
                    ));
                    continue;
                }
                // One IN over both tables (not an OR of two), so that it can be a join.
                parts.push(format!(
                    "e.id IN (SELECT email_id FROM email_text_head WHERE words @@ {q} \
                     UNION ALL SELECT email_id FROM email_text_body WHERE words @@ {q})"
                ));
            }
            parts.join(" AND ")
        }
        C::Subject(text) => match words_query(text) {
            None => "TRUE".into(),
            Some(None) => "FALSE".into(),
            // The index finds the head rows; the subject is the head's text up to
            // `SUBJECT_END` (FTS5 has it as a column of its own).
            Some(Some(q)) => {
                let q = tsquery_literal(&q);
                format!(
                    "e.id IN (SELECT email_id FROM email_text_head WHERE words @@ {q} \
                     AND to_tsvector('simple', split_part(text, '{}', 1)) @@ {q})",
                    fulltext::SUBJECT_END
                )
            }
        },
        C::Body(text) => match words_query(text) {
            None => "TRUE".into(),
            Some(None) => "FALSE".into(),
            Some(Some(q)) => format!(
                "e.id IN (SELECT email_id FROM email_text_body WHERE words @@ {})",
                tsquery_literal(&q)
            ),
        },
        // The stored JSON holds names and addresses as written; a substring match on it
        // finds either.
        C::From(v) => address_like("e.addr_from", v, p),
        C::To(v) => address_like("e.addr_to", v, p),
        C::Cc(v) => address_like("e.addr_cc", v, p),
        C::Bcc(v) => address_like("e.addr_bcc", v, p),
        C::Header(name, value) => {
            let ids = cx
                .headers
                .get(&(name.clone(), value.clone()))
                .cloned()
                .unwrap_or_default();
            format!("e.id = ANY({}::bigint[])", p.push(ids))
        }
        C::Nothing => "FALSE".into(),
    }
}

fn address_like(col: &str, v: &str, p: &mut Params) -> String {
    let n = p.push(like_pattern(v));
    format!("{} LIKE {n}::text ESCAPE '\\'", ascii_lower(col))
}

/// The SQL expression of a filter tree. Iterative over an explicit stack, so a deep tree
/// cannot overflow ours.
fn filter_sql(
    f: &EmailFilter,
    date: &str,
    cx: &Ctx,
    p: &mut Params,
    nodes: &mut usize,
) -> Result<String> {
    *nodes += 1;
    if *nodes > MAX_FILTER_NODES {
        return Err(Error::Corrupt("filter too large".into()));
    }
    let (parts, join, negate) = match f {
        EmailFilter::Condition(c) => return Ok(condition_sql(c, date, cx, p)),
        EmailFilter::And(parts) => (parts, " AND ", false),
        EmailFilter::Or(parts) => (parts, " OR ", false),
        EmailFilter::Not(parts) => (parts, " OR ", true),
    };
    let mut sql = Vec::with_capacity(parts.len());
    for part in parts {
        sql.push(filter_sql(part, "e.received_at", cx, p, nodes)?);
    }
    if sql.is_empty() {
        // AND of nothing is true, OR of nothing false (NOT of nothing: true).
        return Ok(if join == " AND " || negate {
            "TRUE"
        } else {
            "FALSE"
        }
        .into());
    }
    let inner = format!("({})", sql.join(join));
    Ok(if negate {
        format!("(NOT {inner})")
    } else {
        inner
    })
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

/// Builds the query (sqlite/reading.rs `build`): with `by_date`, a top-level `inMailbox`
/// walks that mailbox's copies by date (the index on copy (mailbox_id, received_at)).
fn build(
    account: AccountId,
    q: &EmailQuery,
    by_date: bool,
    cx: &Ctx,
    sort_keys: bool,
) -> Result<Built> {
    let mut params = Params::default();
    params.push(account.0);
    let mut conjuncts: Vec<&EmailFilter> = match &q.filter {
        Some(EmailFilter::And(parts)) => parts.iter().collect(),
        Some(f) => vec![f],
        None => Vec::new(),
    };
    let mut mailbox = None;
    if by_date
        && let Some(i) = conjuncts
            .iter()
            .position(|f| matches!(f, EmailFilter::Condition(EmailCondition::InMailbox(_))))
        && let EmailFilter::Condition(EmailCondition::InMailbox(m)) = conjuncts.remove(i)
    {
        mailbox = Some(*m);
    }
    let date = if mailbox.is_some() {
        "c.received_at"
    } else {
        "e.received_at"
    };
    // The sort keys' values, read back to be compared here (`Key`).
    let mut select = String::new();
    if sort_keys {
        for s in &q.sort {
            select.push_str(", ");
            select.push_str(&sort_column(s, date, &mut params));
        }
    }
    let mut sql = match mailbox {
        Some(m) => {
            let n = params.push(m.0);
            format!(
                "SELECT e.id, e.thread_id{select} FROM copy c JOIN email e ON e.id = c.email_id \
                 WHERE e.account_id = $1 AND c.mailbox_id = {n}::bigint"
            )
        }
        None => format!(
            "SELECT e.id, e.thread_id{select} FROM email e WHERE e.account_id = $1 AND NOT e.orphaned"
        ),
    };
    let filtered = !conjuncts.is_empty();
    let mut nodes = 0;
    for f in conjuncts {
        sql.push_str(" AND ");
        sql.push_str(&filter_sql(f, date, cx, &mut params, &mut nodes)?);
    }
    Ok(Built {
        sql,
        params,
        filtered,
        mailbox,
        date,
    })
}

/// One sort key's value of a row, compared in Rust as SQLite compares it.
#[derive(Debug)]
enum Key {
    Int(i64),
    Bool(bool),
    Text(String),
}

/// The selected expression of a sort key (read back as a [`Key`]).
fn sort_column(s: &EmailSort, date: &str, p: &mut Params) -> String {
    let address = |col: &str| {
        format!("coalesce(nullif(e.{col}::jsonb->0->>'name', ''), e.{col}::jsonb->0->>'email', '')")
    };
    let in_thread = |p: &mut Params, k: &str, all: bool| {
        let n = p.push(k.to_lowercase());
        format!(
            "{}EXISTS (SELECT 1 FROM email t WHERE t.thread_id = e.thread_id \
             AND NOT t.orphaned AND {}t.keywords ? {n}::text)",
            if all { "NOT " } else { "" },
            if all { "NOT " } else { "" }
        )
    };
    match &s.key {
        EmailSortKey::ReceivedAt => date.to_string(),
        // An Email without a Date sorts by its arrival.
        EmailSortKey::SentAt => "coalesce(e.sent_at, e.received_at)".into(),
        EmailSortKey::Size => "e.size".into(),
        EmailSortKey::From => address("addr_from"),
        EmailSortKey::To => address("addr_to"),
        EmailSortKey::Subject => "coalesce(e.subject, '')".into(),
        EmailSortKey::HasKeyword(k) => format!("e.keywords ? {}::text", p.push(k.to_lowercase())),
        EmailSortKey::SomeInThreadHaveKeyword(k) => in_thread(p, k, false),
        EmailSortKey::AllInThreadHaveKeyword(k) => in_thread(p, k, true),
    }
}

fn read_key(row: &tokio_postgres::Row, i: usize, s: &EmailSort) -> Key {
    match &s.key {
        EmailSortKey::ReceivedAt | EmailSortKey::SentAt | EmailSortKey::Size => {
            Key::Int(row.get(i))
        }
        EmailSortKey::From | EmailSortKey::To => Key::Text(row.get(i)),
        // RFC 5256 base subject, as SQLite's `tidings_base_subject`.
        EmailSortKey::Subject => Key::Text(mime::base_subject(row.get::<_, &str>(i))),
        _ => Key::Bool(row.get(i)),
    }
}

/// SQLite's collations: `tidings_unicode_casemap`, NOCASE (ASCII letters only, no tie
/// break) and BINARY (bytes).
fn compare_text(a: &str, b: &str, c: Collation) -> Ordering {
    match c {
        Collation::UnicodeCasemap => {
            let fold = |s: &str| s.chars().flat_map(char::to_lowercase).collect::<String>();
            fold(a).cmp(&fold(b)).then_with(|| a.cmp(b))
        }
        Collation::AsciiCasemap => a
            .bytes()
            .map(|x| x.to_ascii_lowercase())
            .cmp(b.bytes().map(|x| x.to_ascii_lowercase())),
        Collation::Octet => a.as_bytes().cmp(b.as_bytes()),
    }
}

fn compare_key(a: &Key, b: &Key, c: Collation) -> Ordering {
    match (a, b) {
        (Key::Int(x), Key::Int(y)) => x.cmp(y),
        (Key::Bool(x), Key::Bool(y)) => x.cmp(y),
        (Key::Text(x), Key::Text(y)) => compare_text(x, y, c),
        _ => Ordering::Equal,
    }
}

/// Rows (id, thread) of a query in its order, read until `done` says the page is full.
/// Date order is the database's (an index walk); other orders are sorted here, with
/// SQLite's collations, which no PostgreSQL collation reproduces.
struct Reader<'a> {
    q: &'a EmailQuery,
    ids: Vec<EmailId>,
    threads: Vec<ThreadId>,
    seen_threads: HashSet<i64>,
    seen_emails: HashSet<i64>,
    thread_window: Option<(usize, usize)>,
    stopped: bool,
}

impl Reader<'_> {
    /// Takes a row; false once reading may stop.
    fn take(&mut self, id: i64, thread: i64) -> bool {
        // An Email with two copies in one mailbox is listed once.
        if !self.seen_emails.insert(id) {
            return true;
        }
        if self.q.collapse_threads && !self.seen_threads.insert(thread) {
            return true;
        }
        self.ids.push(EmailId(id));
        self.threads.push(ThreadId(thread));
        if let Some((offset, limit)) = self.thread_window
            && self.ids.len() >= offset.saturating_add(limit)
        {
            self.stopped = true;
            return false;
        }
        if self.q.stop_after == Some(EmailId(id)) && self.q.window.is_none() {
            self.stopped = true;
            return false;
        }
        true
    }
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

/// Whether a page in date order is found faster by testing the full-text words on each
/// row walked (`Ctx::probe`) than by listing their hits: so when each word is in so many
/// of the `n` messages that the walk to the end of the page is short (SQLite's rule, with
/// PostgreSQL's costs: a row tested about 23 µs, a hit listed about 10 µs, measured at
/// 100,000 messages; the walk is about `(offset + limit) * n / hits` rows). A word's hits
/// are estimated from the statistics of the `words` columns (their most common
/// elements): a word that is not among them is rare, and listed.
async fn prefer_probe(
    c: &deadpool_postgres::Object,
    account: AccountId,
    q: &EmailQuery,
) -> Result<bool> {
    let (Some((offset, limit)), Some(f)) = (q.window, &q.filter) else {
        return Ok(false);
    };
    let mut words = Vec::new();
    text_words(f, &mut words);
    if words.is_empty() || words.len() > 4 {
        return Ok(false);
    }
    let st = c
        .prepare_cached(
            "SELECT (SELECT coalesce(sum(copies), 0) FROM mailbox WHERE account_id = $1)::bigint, \
             s.most_common_elems::text::text[], s.most_common_elem_freqs \
             FROM pg_stats s WHERE s.schemaname = current_schema() \
             AND s.tablename IN ('email_text_head', 'email_text_body') AND s.attname = 'words'",
        )
        .await?;
    let rows = c.query(&st, &[&account.0]).await?;
    let Some(n) = rows.first().map(|r| r.get::<_, i64>(0)) else {
        return Ok(false); // not analyzed yet
    };
    let page = offset.saturating_add(limit).min(1 << 20) as f64;
    let bound = (2.3 * page * n.max(0) as f64).sqrt();
    let freqs: Vec<HashMap<String, f32>> = rows
        .iter()
        .map(|r| {
            let elems: Vec<String> = r.get::<_, Option<Vec<String>>>(1).unwrap_or_default();
            let freqs: Vec<f32> = r.get::<_, Option<Vec<f32>>>(2).unwrap_or_default();
            elems.into_iter().zip(freqs).collect()
        })
        .collect();
    for w in words {
        let Some(p) = fulltext::phrase(&w) else {
            return Ok(false);
        };
        if p.prefix {
            return Ok(false);
        }
        // A phrase is in no more messages than its least common word.
        let share = freqs
            .iter()
            .map(|f| {
                p.words
                    .iter()
                    .map(|x| f.get(x).copied().unwrap_or(0.0))
                    .fold(f32::MAX, f32::min)
            })
            .fold(0.0f32, f32::max);
        if f64::from(share) * (n as f64) < bound {
            return Ok(false);
        }
    }
    Ok(true)
}

async fn query_emails(
    c: &deadpool_postgres::Object,
    account: AccountId,
    q: &EmailQuery,
) -> Result<QueryPage> {
    let by_date =
        q.sort.is_empty() || (q.sort.len() == 1 && q.sort[0].key == EmailSortKey::ReceivedAt);
    let ascending = q.sort.first().is_some_and(|s| s.ascending);
    let headers = resolve_headers(c, account, q.filter.as_ref()).await?;
    let listed = Ctx {
        headers: &headers,
        probe: false,
    };
    let total = if q.count {
        let b = build(account, q, by_date, &listed, false)?;
        let n: i64 = match (b.mailbox, b.filtered) {
            // Collapsed: one per thread with a match.
            _ if q.collapse_threads => {
                let sql = format!("SELECT count(DISTINCT thread_id) FROM ({}) m", b.sql);
                c.query_one(&prepare(c, &sql).await?, &b.params.refs())
                    .await?
                    .get(0)
            }
            // Kept by triggers, as on SQLite (where a message with two copies in one
            // mailbox counts twice; JMAP totals are advisory, the backends agree).
            (Some(m), false) => {
                let st = c
                    .prepare_cached("SELECT copies FROM mailbox WHERE id = $1")
                    .await?;
                c.query_opt(&st, &[&m.0]).await?.map_or(0, |r| r.get(0))
            }
            (Some(_), true) => {
                let sql = format!("SELECT count(DISTINCT id) FROM ({}) m", b.sql);
                c.query_one(&prepare(c, &sql).await?, &b.params.refs())
                    .await?
                    .get(0)
            }
            (None, _) => {
                let sql = format!("SELECT count(*) FROM ({}) m", b.sql);
                c.query_one(&prepare(c, &sql).await?, &b.params.refs())
                    .await?
                    .get(0)
            }
        };
        Some(usize::try_from(n.max(0)).unwrap_or(usize::MAX))
    } else {
        None
    };
    let thread_window = q.window.filter(|_| q.collapse_threads);
    let mut r = Reader {
        q,
        ids: Vec::new(),
        threads: Vec::new(),
        seen_threads: HashSet::new(),
        seen_emails: HashSet::new(),
        thread_window,
        stopped: false,
    };
    let tie = if ascending { "ASC" } else { "DESC" };
    if by_date {
        let Built {
            mut sql,
            mut params,
            date,
            ..
        } = build(
            account,
            q,
            true,
            &Ctx {
                headers: &headers,
                probe: !q.collapse_threads && prefer_probe(c, account, q).await?,
            },
            false,
        )?;
        sql.push_str(&format!(" ORDER BY {date} {tie}, e.id {tie}"));
        match q.window {
            Some((offset, limit)) if !q.collapse_threads => {
                let l = params.push(i64::try_from(limit.min(1 << 30)).unwrap_or(1 << 30));
                let o = params.push(i64::try_from(offset.min(1 << 40)).unwrap_or(1 << 40));
                sql.push_str(&format!(" LIMIT {l}::bigint OFFSET {o}::bigint"));
                let rows = c.query(&prepare(c, &sql).await?, &params.refs()).await?;
                for row in rows {
                    r.take(row.get(0), row.get(1));
                }
            }
            Some((offset, limit)) => {
                // Collapsed, the window is over threads: rows are read in chunks, in
                // order (each chunk a walk of the date index that the LIMIT lets the
                // planner choose), until the window's last thread.
                let l = params.push(0i64);
                let o = params.push(0i64);
                sql.push_str(&format!(" LIMIT {l} OFFSET {o}"));
                let st = prepare(c, &sql).await?;
                let mut chunk = i64::try_from(offset.saturating_add(limit).saturating_mul(2))
                    .unwrap_or(i64::MAX / 4)
                    .clamp(64, 1 << 20);
                let mut from = 0i64;
                loop {
                    let n = params.0.len();
                    params.0[n - 2] = Box::new(chunk);
                    params.0[n - 1] = Box::new(from);
                    let rows = c.query(&st, &params.refs()).await?;
                    let n = rows.len() as i64;
                    for row in rows {
                        if !r.take(row.get(0), row.get(1)) {
                            break;
                        }
                    }
                    if r.stopped || n < chunk {
                        break;
                    }
                    from = from.saturating_add(chunk);
                    chunk = chunk.saturating_mul(4).min(1 << 22);
                }
            }
            None => {
                let rows = c.query(&prepare(c, &sql).await?, &params.refs()).await?;
                for row in rows {
                    if !r.take(row.get(0), row.get(1)) {
                        break;
                    }
                }
            }
        }
    } else {
        let Built { sql, params, .. } = build(account, q, false, &listed, true)?;
        let rows = c.query(&prepare(c, &sql).await?, &params.refs()).await?;
        let mut keyed: Vec<(i64, i64, Vec<Key>)> = rows
            .iter()
            .map(|row| {
                let keys = q
                    .sort
                    .iter()
                    .enumerate()
                    .map(|(i, s)| read_key(row, i + 2, s))
                    .collect();
                (row.get(0), row.get(1), keys)
            })
            .collect();
        keyed.sort_by(|a, b| {
            for (i, s) in q.sort.iter().enumerate() {
                let o = compare_key(&a.2[i], &b.2[i], s.collation);
                let o = if s.ascending { o } else { o.reverse() };
                if o != Ordering::Equal {
                    return o;
                }
            }
            if ascending {
                a.0.cmp(&b.0)
            } else {
                b.0.cmp(&a.0)
            }
        });
        let sql_window = q.window.filter(|_| !q.collapse_threads);
        let rows: Box<dyn Iterator<Item = &(i64, i64, Vec<Key>)>> = match sql_window {
            Some((offset, limit)) => Box::new(keyed.iter().skip(offset).take(limit)),
            None => Box::new(keyed.iter()),
        };
        for (id, thread, _) in rows {
            if !r.take(*id, *thread) {
                break;
            }
        }
    }
    let Reader {
        mut ids,
        mut threads,
        ..
    } = r;
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

async fn changes_page(
    c: &deadpool_postgres::Object,
    account: AccountId,
    object: ObjectType,
    since: ChangePosition,
    max: usize,
) -> Result<std::result::Result<ChangesPage, ChangesError>> {
    let st = c
        .prepare_cached("SELECT state FROM account WHERE id = $1")
        .await?;
    let current: i64 = c
        .query_opt(&st, &[&account.0])
        .await?
        .ok_or_else(|| Error::NotFound(format!("account {account}")))?
        .get(0);
    if since.state < 0 || since.state > current {
        return Ok(Err(ChangesError::UnknownState));
    }
    // Up to the state read above: a transaction committing meanwhile is the next call's.
    let st = c
        .prepare_cached(
            "SELECT state, seq, object_id, op FROM change \
             WHERE account_id = $1 AND type = $2 AND state <= $5 \
             AND (state > $3 OR (state = $3 AND seq > $4)) ORDER BY state, seq",
        )
        .await?;
    let params: [&(dyn ToSql + Sync); 5] = [
        &account.0,
        &object.as_str(),
        &since.state,
        &since.row,
        &current,
    ];
    let rows = c.query_raw(&st, params).await?;
    futures::pin_mut!(rows);
    let mut fold = PageFold::new(current, max);
    while let Some(row) = futures::TryStreamExt::try_next(&mut rows).await? {
        let (state, seq, id, op): (i64, i64, i64, i16) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        if !fold.take(state, seq, id, i64::from(op)) {
            break;
        }
    }
    Ok(Ok(fold.finish()))
}

async fn emails(
    c: &deadpool_postgres::Object,
    account: AccountId,
    ids: &[EmailId],
) -> Result<Vec<EmailView>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let want: Vec<i64> = ids.iter().map(|i| i.0).collect();
    // The mailboxes with the row (in mailbox order, as SQLite's index on copy (email_id)
    // gives them): one round trip for the whole page.
    let st = c
        .prepare_cached(
            "SELECT id, thread_id, blob_id, size, received_at, sent_at, message_id, in_reply_to, \
             refs, subject, addr_from, addr_sender, addr_reply_to, addr_to, addr_cc, addr_bcc, \
             preview, has_attachment, keywords::text, blob_by_id, sent_offset, \
             ARRAY(SELECT DISTINCT mailbox_id FROM copy WHERE email_id = email.id \
                   ORDER BY mailbox_id) \
             FROM email WHERE id = ANY($1) AND account_id = $2",
        )
        .await?;
    let rows = c.query(&st, &[&want, &account.0]).await?;
    let mut views: HashMap<i64, EmailView> = HashMap::with_capacity(rows.len());
    for r in rows {
        let id: i64 = r.get(0);
        views.insert(
            id,
            EmailView {
                id: EmailId(id),
                thread: ThreadId(r.get(1)),
                blob_id: r.get(2),
                mailboxes: r
                    .get::<_, Vec<i64>>(21)
                    .into_iter()
                    .map(MailboxId)
                    .collect(),
                keywords: json_list(r.get(18)),
                size: to_u32(r.get(3)),
                received_at: r.get(4),
                sent_at: r.get(5),
                sent_offset: i16::try_from(r.get::<_, i64>(20)).unwrap_or(0),
                message_id: r.get(6),
                in_reply_to: json_list(r.get(7)),
                references: json_list(r.get(8)),
                subject: r.get(9),
                from: json_value(r.get(10)),
                sender: json_value(r.get(11)),
                reply_to: json_value(r.get(12)),
                to: json_value(r.get(13)),
                cc: json_value(r.get(14)),
                bcc: json_value(r.get(15)),
                preview: r.get(16),
                has_attachment: r.get(17),
                blob_by_id: r.get(19),
            },
        );
    }
    // In the order asked, as often as asked (SQLite reads them one by one).
    Ok(ids
        .iter()
        .filter_map(|i| views.get(&i.0).cloned())
        .collect())
}

#[async_trait]
impl Reading for PgStore {
    async fn account_state(&self, id: AccountId) -> Result<State> {
        let c = self.client().await?;
        let st = c
            .prepare_cached("SELECT state FROM account WHERE id = $1")
            .await?;
        c.query_opt(&st, &[&id.0])
            .await?
            .map(|r| State(r.get(0)))
            .ok_or_else(|| Error::NotFound(format!("account {id}")))
    }

    async fn mailbox_messages(&self, mailbox: MailboxId) -> Result<Vec<MessageSummary>> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "SELECT e.id, e.thread_id, c.uid, c.flags, e.size, e.received_at, e.subject, \
                 e.message_id, e.blob_id, e.has_attachment, e.preview \
                 FROM copy c JOIN email e ON e.id = c.email_id \
                 WHERE c.mailbox_id = $1 AND c.uid < 4294967296 ORDER BY c.uid",
            )
            .await?;
        Ok(c.query(&st, &[&mailbox.0])
            .await?
            .iter()
            .map(|r| MessageSummary {
                email: EmailId(r.get(0)),
                thread: ThreadId(r.get(1)),
                uid: Uid(to_u32(r.get(2))),
                flags: crate::mailrows::split_flags(r.get(3)),
                size: to_u32(r.get(4)),
                internal_date: r.get(5),
                subject: r.get(6),
                message_id: r.get(7),
                blob_id: r.get(8),
                has_attachment: r.get(9),
                preview: r.get(10),
            })
            .collect())
    }

    async fn blob(&self, blob_id: &str) -> Result<Option<Vec<u8>>> {
        let c = self.client().await?;
        let st = c
            .prepare_cached("SELECT data FROM blob WHERE id = $1")
            .await?;
        Ok(c.query_opt(&st, &[&blob_id]).await?.map(|r| r.get(0)))
    }

    async fn blob_in_account(&self, account: AccountId, blob_id: &str) -> Result<bool> {
        let c = self.client().await?;
        // (jmap: or an upload of the account.)
        let st = c
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM email WHERE blob_id = $1 AND account_id = $2) \
                 OR EXISTS (SELECT 1 FROM upload WHERE blob_id = $1 AND account_id = $2)",
            )
            .await?;
        Ok(c.query_one(&st, &[&blob_id, &account.0]).await?.get(0))
    }

    async fn changes_since(&self, account: AccountId, since: State) -> Result<Vec<Change>> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "SELECT state, type, object_id, op FROM change \
                 WHERE account_id = $1 AND state > $2 ORDER BY state, seq",
            )
            .await?;
        c.query(&st, &[&account.0, &since.0])
            .await?
            .iter()
            .map(|r| {
                let t: &str = r.get(1);
                let object = ObjectType::from_name(t)
                    .ok_or_else(|| Error::Corrupt(format!("change type {t}")))?;
                let op = match r.get::<_, i16>(3) {
                    0 => ChangeOp::Created,
                    1 => ChangeOp::Updated,
                    _ => ChangeOp::Destroyed,
                };
                Ok(Change {
                    state: State(r.get(0)),
                    object,
                    id: r.get(2),
                    op,
                })
            })
            .collect()
    }

    async fn changes_page(
        &self,
        account: AccountId,
        object: ObjectType,
        since: ChangePosition,
        max: usize,
    ) -> Result<std::result::Result<ChangesPage, ChangesError>> {
        changes_page(&self.client().await?, account, object, since, max).await
    }

    async fn mailbox_views(&self, account: AccountId) -> Result<Vec<MailboxView>> {
        let c = self.client().await?;
        // Counts by Email, not by copy (RFC 8621 2), kept by the mailbox_thread triggers
        // (mail.sql). Names in SQLite's order (bytes, whatever the database's collation).
        let st = c
            .prepare_cached(
                "SELECT id, name, delimiter, parent_id, role, subscribed, selectable, \
                 (SELECT sort_order FROM mailbox_sort WHERE mailbox_id = mailbox.id), \
                 total_emails, unread_emails, total_threads, unread_threads FROM mailbox \
                 WHERE account_id = $1 ORDER BY name COLLATE \"C\"",
            )
            .await?;
        Ok(c.query(&st, &[&account.0])
            .await?
            .iter()
            .map(|r| {
                let full: String = r.get(1);
                let delim: Option<String> = r.get(2);
                let parent: Option<i64> = r.get(3);
                let role: Option<String> = r.get(4);
                let name = match (&delim, parent) {
                    (Some(d), Some(_)) if !d.is_empty() => full
                        .rsplit_once(d.as_str())
                        .map(|(_, leaf)| leaf.to_string())
                        .unwrap_or_else(|| full.clone()),
                    _ => full.clone(),
                };
                MailboxView {
                    id: MailboxId(r.get(0)),
                    name,
                    parent: parent.map(MailboxId),
                    role: role.as_deref().and_then(Role::from_name),
                    subscribed: r.get(5),
                    selectable: r.get(6),
                    sort_order: r
                        .get::<_, Option<i64>>(7)
                        .and_then(|s| u32::try_from(s).ok()),
                    total_emails: to_u32(r.get(8)),
                    unread_emails: to_u32(r.get(9)),
                    total_threads: to_u32(r.get(10)),
                    unread_threads: to_u32(r.get(11)),
                }
            })
            .collect())
    }

    async fn emails(&self, account: AccountId, ids: &[EmailId]) -> Result<Vec<EmailView>> {
        emails(&self.client().await?, account, ids).await
    }

    async fn query_emails(&self, account: AccountId, q: &EmailQuery) -> Result<QueryPage> {
        query_emails(&self.client().await?, account, q).await
    }

    async fn threads(
        &self,
        account: AccountId,
        ids: &[ThreadId],
    ) -> Result<Vec<(ThreadId, Vec<EmailId>)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let c = self.client().await?;
        let want: Vec<i64> = ids.iter().map(|t| t.0).collect();
        let st = c
            .prepare_cached(
                "SELECT thread_id, id FROM email \
                 WHERE thread_id = ANY($1) AND account_id = $2 AND NOT orphaned \
                 ORDER BY thread_id, received_at, id",
            )
            .await?;
        let mut by_thread: HashMap<i64, Vec<EmailId>> = HashMap::new();
        for r in c.query(&st, &[&want, &account.0]).await? {
            by_thread
                .entry(r.get(0))
                .or_default()
                .push(EmailId(r.get(1)));
        }
        // In the order asked, as often as asked; a thread with no Email is left out.
        Ok(ids
            .iter()
            .filter_map(|t| by_thread.get(&t.0).map(|e| (*t, e.clone())))
            .collect())
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

    async fn emails_by_message_id(
        &self,
        account: AccountId,
        message_id: &str,
    ) -> Result<Vec<EmailId>> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "SELECT id FROM email WHERE account_id = $1 AND message_id = $2 \
                 ORDER BY id LIMIT $3",
            )
            .await?;
        Ok(
            c.query(&st, &[&account.0, &message_id, &MAX_MESSAGE_ID_MATCHES])
                .await?
                .iter()
                .map(|r| EmailId(r.get(0)))
                .collect(),
        )
    }

    async fn blob_size(&self, blob_id: &str) -> Result<Option<u64>> {
        let c = self.client().await?;
        let st = c
            .prepare_cached("SELECT size FROM blob WHERE id = $1")
            .await?;
        Ok(c.query_opt(&st, &[&blob_id])
            .await?
            .and_then(|r| u64::try_from(r.get::<_, i64>(0)).ok()))
    }

    async fn emails_with_blob(&self, account: AccountId, blob_id: &str) -> Result<Vec<EmailId>> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "SELECT id FROM email WHERE blob_id = $1 AND account_id = $2 ORDER BY id",
            )
            .await?;
        Ok(c.query(&st, &[&blob_id, &account.0])
            .await?
            .iter()
            .map(|r| EmailId(r.get(0)))
            .collect())
    }
}

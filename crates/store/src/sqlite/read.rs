//! Read paths for the JMAP API: mailbox counts, change log pages.

use crate::model::*;
use crate::{Error, Result};
use mail_types::{AccountId, EmailId, MailboxId, Role, State, ThreadId};
use rusqlite::{Connection, params};
use std::collections::HashMap;

pub(crate) fn mailbox_views(c: &mut Connection, account: AccountId) -> Result<Vec<MailboxView>> {
    // Counts by Email, not by copy (RFC 8621 2: totalEmails counts Emails in the mailbox);
    // "unread" is an Email without $seen.
    let mut counts: HashMap<i64, (u32, u32, u32, u32)> = HashMap::new();
    {
        let mut st = c.prepare(
            "SELECT c.mailbox_id, count(DISTINCT e.id), \
                    count(DISTINCT CASE WHEN e.keywords NOT LIKE '%\"$seen\"%' THEN e.id END), \
                    count(DISTINCT e.thread_id), \
                    count(DISTINCT CASE WHEN e.keywords NOT LIKE '%\"$seen\"%' THEN e.thread_id END) \
             FROM copy c JOIN email e ON e.id = c.email_id \
             WHERE e.account_id = ?1 GROUP BY c.mailbox_id",
        )?;
        let rows = st.query_map([account.0], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?),
            ))
        })?;
        for row in rows {
            let (m, v) = row?;
            counts.insert(m, v);
        }
    }
    let mut st = c.prepare(
        "SELECT id, name, delimiter, parent_id, role, subscribed, selectable FROM mailbox \
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
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, full, delim, parent, role, subscribed, selectable) = row?;
        let name = match (&delim, parent) {
            (Some(d), Some(_)) if !d.is_empty() => full
                .rsplit_once(d.as_str())
                .map(|(_, leaf)| leaf.to_string())
                .unwrap_or_else(|| full.clone()),
            _ => full.clone(),
        };
        let (total_emails, unread_emails, total_threads, unread_threads) =
            counts.get(&id).copied().unwrap_or_default();
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
        });
    }
    Ok(out)
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
    let max = max.max(1);
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
    // object -> (first op, last op), in order of first appearance.
    let mut objects: HashMap<i64, (i64, i64)> = HashMap::new();
    let mut order: Vec<i64> = Vec::new();
    let mut position = ChangePosition::whole(State(current));
    let mut has_more = false;
    let mut last: Option<(i64, i64)> = None;
    for row in rows {
        let (state, rowid, id, op) = row?;
        let full = objects.len() >= max;
        match objects.get_mut(&id) {
            Some(e) => e.1 = op,
            None if full => {
                // Stop before this row; the page ends at the last row taken.
                has_more = true;
                break;
            }
            None => {
                objects.insert(id, (op, op));
                order.push(id);
            }
        }
        last = Some((state, rowid));
    }
    if has_more && let Some((state, row)) = last {
        position = ChangePosition { state, row };
    }
    let mut page = ChangesPage {
        created: Vec::new(),
        updated: Vec::new(),
        destroyed: Vec::new(),
        new_position: position,
        has_more,
    };
    for id in order {
        let Some((first, last)) = objects.get(&id).copied() else {
            continue;
        };
        match (first, last) {
            (0, 2) => {}                     // created and destroyed: never seen
            (0, _) => page.created.push(id), // created (then maybe updated)
            (_, 2) => page.destroyed.push(id),
            _ => page.updated.push(id),
        }
    }
    Ok(Ok(page))
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
         has_attachment, keywords FROM email WHERE id = ?1 AND account_id = ?2",
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

pub(crate) fn query_emails(
    c: &mut Connection,
    account: AccountId,
    q: &EmailQuery,
) -> Result<QueryPage> {
    let dir = if q.ascending { "ASC" } else { "DESC" };
    let mut sql;
    let mut params: Vec<Box<dyn rusqlite::ToSql>> = vec![Box::new(account.0)];
    match q.in_mailbox {
        // The index on copy (mailbox_id, received_at) walks the mailbox in order.
        Some(m) => {
            sql = "SELECT e.id, e.thread_id FROM copy c JOIN email e ON e.id = c.email_id \
                   WHERE e.account_id = ?1 AND c.mailbox_id = ?2"
                .to_string();
            params.push(Box::new(m.0));
        }
        None => {
            sql =
                "SELECT e.id, e.thread_id FROM email e WHERE e.account_id = ?1 AND e.orphaned = 0"
                    .to_string();
        }
    }
    let mut filtered = false;
    if let Some(text) = &q.text {
        for w in text.split_whitespace().take(32) {
            filtered = true;
            let quoted = format!("\"{}\"", w.replace('"', "\"\""));
            let n = params.len() + 1;
            sql.push_str(&format!(
                " AND e.id IN (SELECT rowid FROM email_fts_head WHERE email_fts_head MATCH ?{n} \
                 UNION SELECT rowid FROM email_fts_body WHERE email_fts_body MATCH ?{n})"
            ));
            params.push(Box::new(quoted));
        }
    }
    // Column-restricted full text: FTS5 column filters, each word quoted.
    for (table, column, words) in [
        ("email_fts_head", "subject", &q.subject),
        ("email_fts_body", "body", &q.body),
    ] {
        if let Some(text) = words {
            for w in text.split_whitespace().take(32) {
                filtered = true;
                let quoted = format!("{column} : \"{}\"", w.replace('"', "\"\""));
                let n = params.len() + 1;
                sql.push_str(&format!(
                    " AND e.id IN (SELECT rowid FROM {table} WHERE {table} MATCH ?{n})"
                ));
                params.push(Box::new(quoted));
            }
        }
    }
    for (column, needle) in [
        ("addr_from", &q.from),
        ("addr_to", &q.to),
        ("addr_cc", &q.cc),
        ("addr_bcc", &q.bcc),
    ] {
        if let Some(needle) = needle {
            filtered = true;
            // The stored JSON holds names and addresses as written; a substring match on
            // it finds either (LIKE is case-insensitive for ASCII). Wildcards in the
            // needle are escaped.
            let escaped = needle
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            let n = params.len() + 1;
            sql.push_str(&format!(" AND e.{column} LIKE ?{n} ESCAPE '\\'"));
            params.push(Box::new(format!("%{escaped}%")));
        }
    }
    for m in &q.not_in_mailboxes {
        filtered = true;
        let n = params.len() + 1;
        sql.push_str(&format!(
            " AND NOT EXISTS (SELECT 1 FROM copy x WHERE x.email_id = e.id AND x.mailbox_id = ?{n})"
        ));
        params.push(Box::new(m.0));
    }
    let date_col = if q.in_mailbox.is_some() {
        "c.received_at"
    } else {
        "e.received_at"
    };
    if let Some(b) = q.before {
        filtered = true;
        let n = params.len() + 1;
        sql.push_str(&format!(" AND {date_col} < ?{n}"));
        params.push(Box::new(b));
    }
    if let Some(a) = q.after {
        filtered = true;
        let n = params.len() + 1;
        sql.push_str(&format!(" AND {date_col} >= ?{n}"));
        params.push(Box::new(a));
    }
    for (op, v) in [(">=", q.min_size), ("<", q.max_size)] {
        if let Some(v) = v {
            filtered = true;
            let n = params.len() + 1;
            sql.push_str(&format!(" AND e.size {op} ?{n}"));
            params.push(Box::new(i64::try_from(v).unwrap_or(i64::MAX)));
        }
    }
    for (neg, kws) in [("", &q.has_keyword), ("NOT ", &q.not_keyword)] {
        for k in kws {
            filtered = true;
            // Keywords are stored as a JSON array of lowercase strings.
            let n = params.len() + 1;
            sql.push_str(&format!(" AND {neg}(e.keywords LIKE ?{n} ESCAPE '\\')"));
            let json = serde_json::to_string(&k.to_lowercase()).unwrap_or_default();
            let escaped = json
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            params.push(Box::new(format!("%{escaped}%")));
        }
    }
    if let Some(h) = q.has_attachment {
        filtered = true;
        sql.push_str(if h {
            " AND e.has_attachment = 1"
        } else {
            " AND e.has_attachment = 0"
        });
    }
    let refs: Vec<&dyn rusqlite::ToSql> = params.iter().map(|b| b.as_ref()).collect();
    let total = if q.count {
        Some(match (q.in_mailbox, filtered) {
            // Kept by triggers: counting a mailbox costs nothing. (A message with two
            // copies in one mailbox counts twice here; rare, and JMAP totals are advisory.)
            (Some(m), false) => {
                c.query_row("SELECT copies FROM mailbox WHERE id = ?1", [m.0], |r| {
                    r.get::<_, i64>(0)
                })?
            }
            _ => c.query_row(
                &format!("SELECT count(DISTINCT id) FROM ({sql})"),
                refs.as_slice(),
                |r| r.get::<_, i64>(0),
            )?,
        } as usize)
    } else {
        None
    };
    if q.in_mailbox.is_some() {
        sql.push_str(&format!(" ORDER BY c.received_at {dir}, e.id {dir}"));
    } else {
        sql.push_str(&format!(" ORDER BY e.received_at {dir}, e.id {dir}"));
    }
    let window = q.window.filter(|_| !q.collapse_threads);
    if let Some((offset, limit)) = window {
        sql.push_str(&format!(
            " LIMIT {} OFFSET {}",
            limit.min(1 << 30),
            offset.min(1 << 40)
        ));
    }
    let mut st = c.prepare(&sql)?;
    let rows = st.query_map(refs.as_slice(), |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
    })?;
    let mut ids = Vec::new();
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
    }
    let total = match (total, q.collapse_threads) {
        (Some(_), true) => Some(ids.len()),
        (t, _) => t,
    };
    Ok(QueryPage { ids, total })
}

pub(crate) fn threads(
    c: &mut Connection,
    account: AccountId,
    ids: &[ThreadId],
) -> Result<Vec<(ThreadId, Vec<EmailId>)>> {
    let mut st = c.prepare_cached(
        "SELECT id FROM email WHERE thread_id = ?1 AND account_id = ?2 AND orphaned = 0 \
         ORDER BY received_at, id",
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

//! Read paths for the JMAP API: mailbox counts, change log pages.

use crate::model::*;
use crate::{Error, Result};
use mail_types::{AccountId, MailboxId, Role, State};
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

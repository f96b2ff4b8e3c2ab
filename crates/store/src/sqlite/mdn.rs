//! Lookups for read receipts (RFC 9007).

use crate::Result;
use mail_types::{AccountId, EmailId};
use rusqlite::{Connection, params};

/// Bound on the answer: a Message-ID shared by more Emails than this is not a real one.
const MAX_MATCHES: i64 = 100;

pub(super) fn emails_by_message_id(
    c: &mut Connection,
    account: AccountId,
    message_id: &str,
) -> Result<Vec<EmailId>> {
    let mut st = c.prepare_cached(
        "SELECT id FROM email WHERE account_id = ?1 AND message_id = ?2 ORDER BY id LIMIT ?3",
    )?;
    let rows = st.query_map(params![account.0, message_id, MAX_MATCHES], |r| {
        r.get(0).map(EmailId)
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

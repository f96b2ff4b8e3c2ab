//! How both backends spell mail data in their rows: IMAP flags as one string, addresses
//! and attachments as JSON, the text the full-text index gets, Gmail identities, and the
//! JMAP keywords of a set of copies, and what a Mailbox/set may name a mailbox. Pure
//! functions, so the two backends cannot drift.

use crate::model::ParsedMessage;
use crate::outbox::{MailboxPatch, WriteRefusal};
use mail_types::imap_flag_to_keyword;
use std::collections::BTreeSet;

/// Flags are stored as one space-separated string, sorted, as the server spelled them
/// (IMAP flags are atoms, so they never contain a space).
pub(crate) fn join_flags(flags: &[String]) -> String {
    let mut f: Vec<&str> = flags
        .iter()
        .map(|s| s.as_str())
        .filter(|s| !s.is_empty() && !s.eq_ignore_ascii_case("\\Recent"))
        .collect();
    f.sort_unstable();
    f.dedup();
    f.join(" ")
}

pub(crate) fn split_flags(s: &str) -> Vec<String> {
    s.split(' ')
        .filter(|f| !f.is_empty())
        .map(str::to_string)
        .collect()
}

pub(crate) fn addresses_json(list: &[mime::Address]) -> String {
    let v: Vec<serde_json::Value> = list
        .iter()
        .map(|a| serde_json::json!({ "name": a.name, "email": a.email }))
        .collect();
    serde_json::Value::Array(v).to_string()
}

pub(crate) fn attachments_json(list: &[mime::Attachment]) -> String {
    let v: Vec<serde_json::Value> = list
        .iter()
        .map(|a| {
            serde_json::json!({
                "partId": a.part_id, "name": a.name, "type": a.content_type, "size": a.size,
                "disposition": a.disposition, "cid": a.cid, "isInline": a.is_inline,
            })
        })
        .collect();
    serde_json::Value::Array(v).to_string()
}

pub(crate) fn address_text(p: &ParsedMessage) -> String {
    let mut s = String::new();
    for a in p.from.iter().chain(&p.to).chain(&p.cc).chain(&p.bcc) {
        if let Some(n) = &a.name {
            s.push_str(n);
            s.push(' ');
        }
        s.push_str(&a.email);
        s.push(' ');
    }
    s
}

/// The identity of a Gmail message: its X-GM-MSGID.
pub(crate) fn gmail_identity(msgid: u64) -> String {
    format!("g:{msgid}")
}

/// An Email's keywords: the union of its copies' flags as JMAP keywords (RFC 8621 leaves
/// per-mailbox flags to the server; the union means a message read anywhere shows as
/// read), as the JSON array both backends store, sorted.
pub(crate) fn keywords_json<'a>(copies_flags: impl IntoIterator<Item = &'a str>) -> String {
    let kw: BTreeSet<String> = copies_flags
        .into_iter()
        .flat_map(|f| f.split(' '))
        .filter(|f| !f.is_empty())
        .filter_map(imap_flag_to_keyword)
        .collect();
    serde_json::to_string(&kw).unwrap_or_else(|_| "[]".into())
}

/// Whether `flags` holds `f` (IMAP flags compare case-insensitively).
pub(crate) fn has_flag(flags: &[String], f: &str) -> bool {
    flags.iter().any(|x| x.eq_ignore_ascii_case(f))
}

/// `flags` with `add` set and `remove` cleared.
pub(crate) fn apply_flag_ops(flags: &str, add: &[String], remove: &[String]) -> String {
    let mut v: Vec<String> = split_flags(flags)
        .into_iter()
        .filter(|f| !has_flag(remove, f))
        .collect();
    for a in add {
        if !has_flag(&v, a) {
            v.push(a.clone());
        }
    }
    join_flags(&v)
}

/// A queued flag change (`old_add`, `old_remove`) with a later one coalesced into it:
/// `add' = add - remove_new + add_new`, and symmetrically (docs/design/writeback.md).
pub(crate) fn merge_flag_ops(
    old_add: Vec<String>,
    old_remove: Vec<String>,
    add: Vec<String>,
    remove: Vec<String>,
) -> (Vec<String>, Vec<String>) {
    let mut a: Vec<String> = old_add
        .into_iter()
        .filter(|f| !has_flag(&remove, f))
        .collect();
    let mut r: Vec<String> = old_remove
        .into_iter()
        .filter(|f| !has_flag(&add, f))
        .collect();
    for f in add {
        if !has_flag(&a, &f) {
            a.push(f);
        }
    }
    for f in remove {
        if !has_flag(&r, &f) {
            r.push(f);
        }
    }
    (a, r)
}

/// The header block of a raw message (through the blank line), as BODY[HEADER] gives it:
/// an APPENDed message's identity is its hash, as the sync computes it.
pub(crate) fn header_block(raw: &[u8]) -> &[u8] {
    match raw.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(p) => &raw[..p + 4],
        None => match raw.windows(2).position(|w| w == b"\n\n") {
            Some(p) => &raw[..p + 2],
            None => raw,
        },
    }
}

/// Whether `leaf` may be a mailbox's own name under the hierarchy delimiter `delim`.
pub(crate) fn check_leaf(leaf: &str, delim: &str) -> Result<(), WriteRefusal> {
    if leaf.is_empty() || leaf.chars().count() > 255 {
        return Err(WriteRefusal::Invalid("name: 1 to 255 characters".into()));
    }
    if leaf.contains(delim) || leaf.chars().any(|c| c.is_control()) {
        return Err(WriteRefusal::Invalid(format!(
            "name: may not contain the hierarchy delimiter {delim:?} or control characters"
        )));
    }
    Ok(())
}

/// Where a Mailbox/set update moves the mailbox stored as `name` (its full decoded name)
/// under `parent`: `None` when its leaf and parent stay, else its new leaf and parent, or
/// why not (INBOX and a POP3 account's only mailbox stay where they are). Whether the new
/// parent is one of its descendants is the caller's to ask of its rows.
pub(crate) fn mailbox_move(
    name: &str,
    parent: Option<i64>,
    raw_name: &str,
    delim: &str,
    local_only: bool,
    patch: &MailboxPatch,
) -> Result<Option<(String, Option<i64>)>, WriteRefusal> {
    let old_leaf = match (&parent, name.rsplit_once(delim)) {
        (Some(_), Some((_, leaf))) => leaf,
        _ => name,
    };
    let leaf = patch.name.as_deref().unwrap_or(old_leaf);
    let new_parent = patch.parent.map(|p| p.map(|m| m.0)).unwrap_or(parent);
    if leaf == old_leaf && new_parent == parent {
        return Ok(None);
    }
    if local_only || raw_name.eq_ignore_ascii_case("INBOX") {
        return Err(WriteRefusal::Forbidden(
            "INBOX cannot be renamed here".into(),
        ));
    }
    check_leaf(leaf, delim)?;
    Ok(Some((leaf.to_owned(), new_parent)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_types::MailboxId;

    fn patch(name: Option<&str>, parent: Option<Option<i64>>) -> MailboxPatch {
        MailboxPatch {
            name: name.map(str::to_owned),
            parent: parent.map(|p| p.map(MailboxId)),
            ..MailboxPatch::default()
        }
    }

    #[test]
    fn a_mailbox_moves_by_its_leaf_under_its_parent() {
        // "Work/Old" under mailbox 7: its leaf is "Old".
        let moved = |p: &MailboxPatch| mailbox_move("Work/Old", Some(7), "Work/Old", "/", false, p);
        assert_eq!(moved(&patch(Some("Old"), None)), Ok(None));
        assert_eq!(moved(&patch(None, Some(Some(7)))), Ok(None));
        assert_eq!(
            moved(&patch(Some("New"), None)),
            Ok(Some(("New".into(), Some(7))))
        );
        assert_eq!(
            moved(&patch(None, Some(None))),
            Ok(Some(("Old".into(), None)))
        );
        assert!(matches!(
            moved(&patch(Some("a/b"), None)),
            Err(WriteRefusal::Invalid(_))
        ));
        assert!(matches!(
            moved(&patch(Some(""), None)),
            Err(WriteRefusal::Invalid(_))
        ));
        // A top-level name holding the delimiter is its own leaf.
        assert_eq!(
            mailbox_move("a/b", None, "a/b", "/", false, &patch(Some("a/b"), None)),
            Ok(None)
        );
    }

    #[test]
    fn inbox_and_a_pop3_mailbox_stay_where_they_are() {
        let rename = patch(Some("Other"), None);
        for (raw, local_only) in [("INBOX", false), ("inbox", false), ("Notes", true)] {
            assert!(matches!(
                mailbox_move(raw, None, raw, "/", local_only, &rename),
                Err(WriteRefusal::Forbidden(_))
            ));
        }
        // Only its sort order or subscription changing is no move at all.
        assert_eq!(
            mailbox_move("INBOX", None, "INBOX", "/", false, &patch(None, None)),
            Ok(None)
        );
    }
}

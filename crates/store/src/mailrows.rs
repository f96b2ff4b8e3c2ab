//! How both backends spell mail data in their rows: IMAP flags as one string, addresses
//! and attachments as JSON, the text the full-text index gets, Gmail identities, and the
//! JMAP keywords of a set of copies. Pure functions, so the two backends cannot drift.

use crate::model::ParsedMessage;
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

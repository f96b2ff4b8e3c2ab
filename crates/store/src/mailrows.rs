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

//! Minimal header scan used when mail-parser panics: unfolds the header
//! block (RFC 5322 §2.2.3) and pulls out ids, subject, addresses and date
//! with deliberately simple rules. No RFC 2047 decoding is attempted; the
//! point is to keep a message findable and threadable, not to be complete.

use crate::extract::{clean_id, find_header_end};
use crate::text::{clean_field, utf8_or_cp1252};
use crate::{Address, ParsedMessage};

/// Bound on the fields looked at, so a pathological header cannot make the
/// fallback slower than the parse it replaces.
const MAX_FIELDS: usize = 10_000;

pub(crate) fn scan_headers(raw: &[u8]) -> ParsedMessage {
    let mut pm = ParsedMessage::default();
    let header = match find_header_end(raw) {
        Some((h, _)) => raw.get(..h).unwrap_or_default(),
        None => raw,
    };
    let text = utf8_or_cp1252(header);

    // Unfold: a line starting with WSP continues the previous field.
    let mut fields: Vec<String> = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with([' ', '\t']) {
            if let Some(last) = fields.last_mut() {
                last.push(' ');
                last.push_str(line.trim_start());
            }
            continue;
        }
        if fields.len() >= MAX_FIELDS {
            break;
        }
        fields.push(line.to_string());
    }

    let mut date_seen = false;
    for field in &fields {
        let Some((name, value)) = field.split_once(':') else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim();
        match name.as_str() {
            "subject" => pm.subject = Some(crate::text::nfc(clean_field(value, 16 * 1024).0)),
            "message-id" => pm.message_id = angle_ids(value).into_iter().next(),
            "in-reply-to" => pm.in_reply_to = angle_ids(value),
            "references" => pm.references = angle_ids(value),
            "from" => pm.from = addresses(value),
            "sender" => pm.sender = addresses(value),
            "reply-to" => pm.reply_to = addresses(value),
            "to" => pm.to = addresses(value),
            "cc" => pm.cc = addresses(value),
            "bcc" => pm.bcc = addresses(value),
            "date" => {
                date_seen = true;
                let date = mail_parser::DateTime::parse_rfc822(value).filter(|d| d.is_valid());
                pm.sent_at = date.as_ref().map(|d| d.to_timestamp());
                pm.sent_offset = date.as_ref().map_or(0, crate::extract::zone_minutes);
            }
            _ => {}
        }
    }
    if pm.sent_at.is_none() {
        pm.problems.push(if date_seen {
            "header Date unparseable".into()
        } else {
            "header Date missing".into()
        });
    }
    pm
}

/// Ids written as `<...>`; a lone bare token is accepted too since broken
/// clients omit the brackets.
fn angle_ids(value: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut rest = value;
    while let Some(start) = rest.find('<') {
        let after = rest.get(start + 1..).unwrap_or("");
        let Some(end) = after.find('>') else { break };
        if let Some(id) = clean_id(after.get(..end).unwrap_or(""))
            && seen.insert(id.clone())
        {
            out.push(id);
        }
        rest = after.get(end + 1..).unwrap_or("");
    }
    if out.is_empty()
        && !value.contains('<')
        && let Some(id) = clean_id(value)
        && !id.contains(char::is_whitespace)
    {
        out.push(id);
    }
    out
}

/// Comma-separated mailboxes, `Name <addr>` or bare `addr`; a group's
/// "name:" prefix and ";" terminator are dropped.
fn addresses(value: &str) -> Vec<Address> {
    let mut out = Vec::new();
    for piece in value.split([',', ';']) {
        let mut piece = piece.trim();
        if let Some((group, rest)) = piece.split_once(':')
            && !group.contains(['<', '@', '"'])
        {
            piece = rest.trim();
        }
        let (name, email) = match (piece.find('<'), piece.rfind('>')) {
            (Some(s), Some(e)) if s < e => (
                piece.get(..s).unwrap_or("").trim().trim_matches('"'),
                piece.get(s + 1..e).unwrap_or(""),
            ),
            _ if piece.contains('@') => ("", piece),
            _ => continue,
        };
        let (email, _) = clean_field(email, 998);
        if email.is_empty() {
            continue;
        }
        let (name, _) = clean_field(name, 1024);
        out.push(Address {
            name: (!name.is_empty()).then(|| crate::text::nfc(name)),
            email,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::scan_headers;

    #[test]
    fn scan() {
        let raw = b"From: \"Ann\" <ann@example.com>, bob@example.com\r\nTo: undisclosed-recipients:;\r\nSubject: hello\r\n  world\r\nMessage-ID: <a@b>\r\nReferences: <r1@x> <r2@x>\r\n  <r3@x>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\nbody";
        let pm = scan_headers(raw);
        assert_eq!(pm.subject.as_deref(), Some("hello world"));
        assert_eq!(pm.message_id.as_deref(), Some("a@b"));
        assert_eq!(pm.references, vec!["r1@x", "r2@x", "r3@x"]);
        assert_eq!(pm.from.len(), 2);
        assert_eq!(pm.from[0].name.as_deref(), Some("Ann"));
        assert_eq!(pm.from[1].email, "bob@example.com");
        assert!(pm.to.is_empty());
        assert_eq!(pm.sent_at, Some(1_704_067_200));
    }
}

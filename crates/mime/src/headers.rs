//! Header fields of a raw message as JMAP's `header:` properties want them (RFC 8621
//! 4.1.2-4.1.3): the raw fields in order, and each parsed form of a value.
//!
//! Splitting the header block into fields is done here (a dozen lines: RFC 5322 2.2's
//! fields and folding); the parsed forms use `mail-parser`'s field parsers. Never panics,
//! bounded by the input.

use mail_parser::parsers::MessageStream;
use mail_parser::{Address, HeaderValue};

use crate::text::nfc;

/// Most header fields read from one message.
pub const MAX_FIELDS: usize = 2_000;

/// Most bytes of a header block looked at.
pub const MAX_HEADER_BYTES: usize = 1 << 20;

/// One header field as written: its name and its raw value (from the octet after the
/// colon up to, not including, the field's final line end; folding kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawField<'a> {
    pub name: &'a str,
    pub value: &'a [u8],
}

/// The header block of a message: everything before the first empty line.
pub fn header_block(raw: &[u8]) -> &[u8] {
    let raw = &raw[..raw.len().min(MAX_HEADER_BYTES)];
    let mut i = 0;
    while i < raw.len() {
        let end = raw[i..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(raw.len(), |p| i + p + 1);
        let line = &raw[i..end];
        if line == b"\r\n" || line == b"\n" {
            return &raw[..i];
        }
        i = end;
    }
    raw
}

/// The header fields of the message (or of a header block), in order. A line that is
/// neither a field nor a continuation is skipped.
pub fn fields(raw: &[u8]) -> Vec<RawField<'_>> {
    let block = header_block(raw);
    let mut out: Vec<RawField<'_>> = Vec::new();
    let mut i = 0;
    // (name, value start, value end) of the field being read.
    let mut cur: Option<(&str, usize, usize)> = None;
    while i < block.len() && out.len() < MAX_FIELDS {
        let end = block[i..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(block.len(), |p| i + p + 1);
        let mut content_end = end;
        if content_end > i && block[content_end - 1] == b'\n' {
            content_end -= 1;
        }
        if content_end > i && block[content_end - 1] == b'\r' {
            content_end -= 1;
        }
        let line = &block[i..end];
        if matches!(line.first(), Some(b' ' | b'\t')) {
            if let Some(c) = cur.as_mut() {
                c.2 = content_end;
            }
        } else {
            if let Some((name, s, e)) = cur.take() {
                out.push(RawField {
                    name,
                    value: &block[s..e],
                });
            }
            if let Some(colon) = line.iter().position(|&b| b == b':') {
                let name = &line[..colon];
                let valid = !name.is_empty() && name.iter().all(|&b| (33..=126).contains(&b));
                if valid && let Ok(name) = std::str::from_utf8(name) {
                    cur = Some((name, i + colon + 1, content_end.max(i + colon + 1)));
                }
            }
        }
        i = end;
    }
    if let Some((name, s, e)) = cur
        && out.len() < MAX_FIELDS
    {
        out.push(RawField {
            name,
            value: &block[s..e],
        });
    }
    out
}

/// The values of every field named `name` (case-insensitive), in order.
pub fn values<'a>(raw: &'a [u8], name: &str) -> Vec<&'a [u8]> {
    fields(raw)
        .into_iter()
        .filter(|f| f.name.eq_ignore_ascii_case(name))
        .map(|f| f.value)
        .collect()
}

/// The header blocks (start, end) of a message and of each of its MIME parts, in order;
/// not those inside an attached message (its octets are its own). Empty when the message
/// does not parse.
pub fn part_header_blocks(raw: &[u8]) -> Vec<(usize, usize)> {
    std::panic::catch_unwind(|| {
        mail_parser::MessageParser::new()
            .parse(raw)
            .map(|m| {
                m.parts
                    .iter()
                    .map(|p| (p.offset_header as usize, p.offset_body as usize))
                    .filter(|(s, e)| s <= e && *e <= raw.len())
                    .collect()
            })
            .unwrap_or_default()
    })
    .unwrap_or_default()
}

/// Longest header line written where there is white space to fold at (RFC 5322 2.1.1:
/// lines SHOULD be at most 78 characters, without the CRLF).
const FOLD_AT: usize = 78;

/// Refolds the header blocks of a message written by `mail-builder` the RFC 5322 2.2.3
/// way: a CRLF inserted before white space that is there anyway, so unfolding gives the
/// value back, and lines of at most [`FOLD_AT`] octets where the value has white space to
/// fold at. mail-builder folds with CRLF TAB, after a line has passed 76 octets: its lines
/// run past 78, and where it folds before an existing space (unstructured text, raw
/// values) the TAB becomes part of the value ("a b" unfolds to "a\t b"). Bodies and
/// attached messages are left alone.
pub fn refold_headers(raw: Vec<u8>) -> Vec<u8> {
    let mut blocks = part_header_blocks(&raw);
    if blocks.is_empty() {
        return raw;
    }
    blocks.sort_unstable();
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 64);
    let mut at = 0;
    for (start, end) in blocks {
        if start < at {
            continue;
        }
        out.extend_from_slice(&raw[at..start]);
        refold_block(&raw[start..end], &mut out);
        at = end;
    }
    out.extend_from_slice(&raw[at..]);
    out
}

/// One header block (fields, then the empty line): each field unfolded as mail-builder
/// folded it (CRLF TAB before a word stood for a space, before white space for nothing)
/// and folded again by [`fold_field`].
fn refold_block(block: &[u8], out: &mut Vec<u8>) {
    let mut field: Vec<u8> = Vec::new();
    let mut rest = block;
    while !rest.is_empty() {
        let (line, next) = match rest.windows(2).position(|w| w == b"\r\n") {
            Some(p) => (&rest[..p], &rest[p + 2..]),
            None => (rest, &[][..]),
        };
        let continuation = matches!(line.first(), Some(b' ' | b'\t')) && !field.is_empty();
        if continuation {
            match line {
                [b'\t', b' ' | b'\t', ..] => field.extend_from_slice(&line[1..]),
                [b'\t', word @ ..] => {
                    field.push(b' ');
                    field.extend_from_slice(word);
                }
                _ => field.extend_from_slice(line),
            }
        } else {
            if !field.is_empty() {
                fold_field(&field, out);
                field.clear();
            }
            if line.is_empty() {
                // The end of the block: the rest is kept as it is.
                out.extend_from_slice(rest);
                return;
            }
            field.extend_from_slice(line);
        }
        rest = next;
    }
    if !field.is_empty() {
        fold_field(&field, out);
    }
}

/// Writes one unfolded field with CRLF, folded before white space so that lines are at
/// most [`FOLD_AT`] octets where possible. Never inside the name, never leaving a line of
/// white space only.
fn fold_field(field: &[u8], out: &mut Vec<u8>) {
    let colon = field.iter().position(|&b| b == b':').unwrap_or(field.len());
    let is_ws = |b: Option<&u8>| matches!(b, Some(b' ' | b'\t'));
    // Where a run of white space starts that a word follows.
    let breaks = (colon + 2..field.len()).filter(|&i| {
        is_ws(field.get(i))
            && !is_ws(field.get(i - 1))
            && field[i..].iter().any(|b| !matches!(b, b' ' | b'\t'))
    });
    let mut line_start = 0;
    let mut prev: Option<usize> = None;
    for b in breaks.chain(std::iter::once(field.len())) {
        if b - line_start > FOLD_AT
            && let Some(p) = prev.filter(|p| *p > line_start)
        {
            out.extend_from_slice(&field[line_start..p]);
            out.extend_from_slice(b"\r\n");
            line_start = p;
        }
        if b < field.len() {
            prev = Some(b);
        }
    }
    out.extend_from_slice(&field[line_start..]);
    out.extend_from_slice(b"\r\n");
}

/// RFC 8621 4.1.2.1 asRaw: the octets as a string, invalid UTF-8 replaced.
pub fn as_raw(value: &[u8]) -> String {
    String::from_utf8_lossy(value).into_owned()
}

fn terminated(value: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(value.len() + 2);
    v.extend_from_slice(value);
    v.extend_from_slice(b"\r\n");
    v
}

fn text_of(v: HeaderValue<'_>) -> String {
    match v {
        HeaderValue::Text(t) => t.into_owned(),
        HeaderValue::TextList(l) => l.join(" "),
        _ => String::new(),
    }
}

/// RFC 8621 4.1.2.2 asText: unfolded, RFC 2047 decoded, whitespace trimmed, NFC.
pub fn as_text(value: &[u8]) -> String {
    let v = terminated(value);
    let parsed = std::panic::catch_unwind(|| text_of(MessageStream::new(&v).parse_unstructured()));
    nfc(match parsed {
        Ok(t) => t.trim().to_string(),
        Err(_) => as_raw(value).trim().to_string(),
    })
}

/// An address (RFC 8621 4.1.2.3 EmailAddress).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderAddress {
    pub name: Option<String>,
    pub email: String,
}

/// A group of addresses (4.1.2.4 EmailAddressGroup); `name` is None outside a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderGroup {
    pub name: Option<String>,
    pub addresses: Vec<HeaderAddress>,
}

/// RFC 8621 4.1.2.3: a display name is in the Text form (so NFC, 4.1.2.2).
fn name_text(n: &str) -> Option<String> {
    let n = n.trim();
    (!n.is_empty()).then(|| nfc(n.to_string()))
}

fn convert(a: &mail_parser::Addr<'_>) -> HeaderAddress {
    HeaderAddress {
        name: a.name.as_deref().and_then(name_text),
        email: a
            .address
            .as_ref()
            .map(|e| e.trim().to_string())
            .unwrap_or_default(),
    }
}

/// RFC 8621 4.1.2.4 asGroupedAddresses: the groups, with addresses outside any group in
/// groups without a name.
pub fn as_grouped_addresses(value: &[u8]) -> Vec<HeaderGroup> {
    let v = terminated(value);
    let parsed = std::panic::catch_unwind(|| match MessageStream::new(&v).parse_address() {
        HeaderValue::Address(Address::List(list)) => vec![HeaderGroup {
            name: None,
            addresses: list.iter().map(convert).collect(),
        }],
        HeaderValue::Address(Address::Group(groups)) => groups
            .iter()
            .map(|g| HeaderGroup {
                name: g.name.as_deref().and_then(name_text),
                addresses: g.addresses.iter().map(convert).collect(),
            })
            .collect(),
        _ => Vec::new(),
    });
    parsed.unwrap_or_default()
}

/// RFC 8621 4.1.2.3 asAddresses: every address, groups flattened.
pub fn as_addresses(value: &[u8]) -> Vec<HeaderAddress> {
    as_grouped_addresses(value)
        .into_iter()
        .flat_map(|g| g.addresses)
        .collect()
}

/// RFC 8621 4.1.2.5 asMessageIds: the ids without angle brackets; None if none parse.
pub fn as_message_ids(value: &[u8]) -> Option<Vec<String>> {
    let v = terminated(value);
    let parsed = std::panic::catch_unwind(|| match MessageStream::new(&v).parse_id() {
        HeaderValue::Text(t) => vec![t.into_owned()],
        HeaderValue::TextList(l) => l.into_iter().map(|t| t.into_owned()).collect(),
        _ => Vec::new(),
    })
    .unwrap_or_default();
    let ids: Vec<String> = parsed
        .into_iter()
        .filter(|i| !i.is_empty() && i.len() <= crate::MAX_ID_LEN)
        .collect();
    (!ids.is_empty()).then_some(ids)
}

/// RFC 8621 4.1.2.6 asDate: the date as unix seconds; None if it does not parse.
pub fn as_date(value: &[u8]) -> Option<i64> {
    let v = terminated(value);
    std::panic::catch_unwind(|| match MessageStream::new(&v).parse_date() {
        HeaderValue::DateTime(d) if d.is_valid() => Some(d.to_timestamp()),
        _ => None,
    })
    .ok()
    .flatten()
}

/// [`as_date`] and the offset from UTC the field was written in, in minutes east (RFC
/// 5322 3.3 `zone`; `-0000` is 0): RFC 8621 4.1.2.6 asDate is a `Date`, which keeps it.
pub fn as_date_with_offset(value: &[u8]) -> Option<(i64, i16)> {
    let v = terminated(value);
    std::panic::catch_unwind(|| match MessageStream::new(&v).parse_date() {
        HeaderValue::DateTime(d) if d.is_valid() => {
            Some((d.to_timestamp(), crate::extract::zone_minutes(&d)))
        }
        _ => None,
    })
    .ok()
    .flatten()
}

/// RFC 8621 4.1.2.7 asURLs: the URLs in angle brackets (RFC 2369), None if there is none.
pub fn as_urls(value: &[u8]) -> Option<Vec<String>> {
    let text = as_raw(value);
    let mut out = Vec::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find('<') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('>') else { break };
        let url: String = after[..end]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if !url.is_empty() {
            out.push(url);
        }
        rest = &after[end + 1..];
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const MSG: &[u8] = b"From: \"Ann\" <ann@example.org>\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n \
        folded\r\nTo: Team: bob@example.org, c@example.org;, dan@example.org\r\nX-Two: 1\r\n\
        X-two: 2\r\nMessage-ID: <a@b>\r\nReferences: <x@y> <z@w>\r\nDate: Tue, 1 Dec 2026 \
        10:00:00 +0100\r\nList-Unsubscribe: <mailto:u@l>, <https://l/u>\r\nbroken line\r\n\
        \r\nbody: not a header\r\n";

    #[test]
    fn fields_and_forms() {
        let f = fields(MSG);
        assert_eq!(f.len(), 9);
        assert_eq!(f[1].name, "Subject");
        assert_eq!(as_raw(f[1].value), " =?utf-8?q?caf=C3=A9?=\r\n folded");
        assert_eq!(as_text(f[1].value), "café folded");
        assert_eq!(
            values(MSG, "x-TWO")
                .iter()
                .map(|v| as_text(v))
                .collect::<Vec<_>>(),
            vec!["1", "2"]
        );
        let from = as_addresses(values(MSG, "from")[0]);
        assert_eq!(from[0].name.as_deref(), Some("Ann"));
        assert_eq!(from[0].email, "ann@example.org");
        let to = as_grouped_addresses(values(MSG, "to")[0]);
        assert_eq!(to.len(), 2, "{to:?}");
        assert_eq!(to[0].name.as_deref(), Some("Team"));
        assert_eq!(to[0].addresses.len(), 2);
        assert_eq!(to[1].name, None);
        assert_eq!(as_addresses(values(MSG, "to")[0]).len(), 3);
        assert_eq!(
            as_message_ids(values(MSG, "references")[0]).unwrap(),
            vec!["x@y", "z@w"]
        );
        assert_eq!(as_date(values(MSG, "date")[0]), Some(1_796_115_600));
        assert_eq!(
            as_date_with_offset(values(MSG, "date")[0]),
            Some((1_796_115_600, 60))
        );
        assert_eq!(
            as_date_with_offset(b" Fri, 14 Feb 1969 12:02:00 -0330"),
            Some((-27_691_080 + 12_600, -210))
        );
        assert_eq!(
            as_urls(values(MSG, "list-unsubscribe")[0]).unwrap(),
            vec!["mailto:u@l", "https://l/u"]
        );
        assert!(values(MSG, "body").is_empty());
        assert_eq!(as_date(b" not a date"), None);
        assert_eq!(as_message_ids(b" "), None);
    }

    /// RFC 8621 4.1.2.2: the Text form is NFC; U+212B ANGSTROM SIGN is U+00C5 in NFC.
    #[test]
    fn text_and_names_are_nfc() {
        assert_eq!(as_text(b" =?UTF-8?B?4oSr?="), "\u{c5}");
        let a = as_addresses(b" =?UTF-8?B?4oSr?= <a@b.example>");
        assert_eq!(a[0].name.as_deref(), Some("\u{c5}"));
        let g = as_grouped_addresses(b" =?UTF-8?B?4oSr?=: a@b.example;");
        assert_eq!(g[0].name.as_deref(), Some("\u{c5}"));
    }

    #[test]
    fn folds_become_crlf_before_existing_white_space() {
        let raw = b"Subject: a\r\n\t b\r\nTo: x@y,\r\n\tz@w\r\nContent-Type: multipart/mixed; \
            boundary=\"q\"\r\n\r\n--q\r\nContent-Type: text/plain;\r\n\tcharset=utf-8\r\n\r\n\
            body\r\n\tstays\r\n--q--\r\n"
            .to_vec();
        let out = String::from_utf8(refold_headers(raw)).unwrap();
        assert!(out.starts_with("Subject: a b\r\nTo: x@y, z@w\r\n"), "{out}");
        assert!(out.contains("text/plain; charset=utf-8\r\n\r\n"), "{out}");
        assert!(
            out.contains("body\r\n\tstays"),
            "a body is left alone: {out}"
        );

        let words: Vec<String> = (0..40).map(|i| format!("w{i:02}")).collect();
        let long = format!("X-Long: {}\r\n\r\nbody\r\n", words.join("  "));
        let out = String::from_utf8(refold_headers(long.into_bytes())).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert_eq!(body, "body\r\n");
        for l in head.split("\r\n") {
            assert!(l.len() <= 78 && !l.trim().is_empty(), "{l:?} in {out}");
        }
        assert_eq!(
            head.replace("\r\n", ""),
            format!("X-Long: {}", words.join("  ")),
            "unfolding gives the value back"
        );
    }

    #[test]
    fn hostile_input_never_panics() {
        for raw in [
            &b""[..],
            b":",
            b"\r\n\r\n",
            b"A:\xff\xfe\r\n \r\n",
            b" leading continuation\r\nB: x",
        ] {
            for f in fields(raw) {
                let _ = (as_text(f.value), as_addresses(f.value), as_date(f.value));
            }
        }
    }
}

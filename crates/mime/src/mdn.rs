//! Message Disposition Notifications (RFC 8098): reading a received one ([`parse`]) and
//! writing one to send ([`build`]).
//!
//! An MDN is a `multipart/report; report-type=disposition-notification` message: a
//! human-readable part, a `message/disposition-notification` part of header-style fields
//! (RFC 8098 3.1), and optionally the original message. The fields are read here by hand
//! (mail-parser finds the part, it leaves its content alone), bounded in count and size.

use crate::BodyPart;

/// Bounds on hostile input.
const MAX_FIELDS: usize = 200;
const MAX_VALUE: usize = 2_000;
/// Most of a notification part read; real ones are a few hundred bytes.
const MAX_PART: usize = 64 * 1024;
/// Most of the human-readable part returned as `textBody`.
const MAX_TEXT: usize = 64 * 1024;
const MAX_DEPTH: usize = 8;

/// RFC 8098 3.2.6 disposition-mode and disposition-type, lowercased (the JMAP values of
/// RFC 9007 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disposition {
    /// `manual-action` or `automatic-action`.
    pub action_mode: String,
    /// `mdn-sent-manually` or `mdn-sent-automatically`.
    pub sending_mode: String,
    /// `deleted`, `dispatched`, `displayed` or `processed`.
    pub kind: String,
}

const ACTION_MODES: [&str; 2] = ["manual-action", "automatic-action"];
const SENDING_MODES: [&str; 2] = ["mdn-sent-manually", "mdn-sent-automatically"];
const TYPES: [&str; 4] = ["deleted", "dispatched", "displayed", "processed"];

impl Disposition {
    /// A disposition with values RFC 8098 knows, lowercased; `None` otherwise.
    pub fn new(action_mode: &str, sending_mode: &str, kind: &str) -> Option<Disposition> {
        let (a, s, t) = (
            action_mode.trim().to_ascii_lowercase(),
            sending_mode.trim().to_ascii_lowercase(),
            kind.trim().to_ascii_lowercase(),
        );
        (ACTION_MODES.contains(&a.as_str())
            && SENDING_MODES.contains(&s.as_str())
            && TYPES.contains(&t.as_str()))
        .then_some(Disposition {
            action_mode: a,
            sending_mode: s,
            kind: t,
        })
    }

    /// The `Disposition` field value (RFC 8098 3.2.6), in the RFC's usual spelling.
    pub fn field_value(&self) -> String {
        let sending = match self.sending_mode.as_str() {
            "mdn-sent-manually" => "MDN-sent-manually",
            _ => "MDN-sent-automatically",
        };
        format!("{}/{}; {}", self.action_mode, sending, self.kind)
    }

    /// Reads `action-mode/sending-mode; type[/modifier,...]`; modifiers are ignored
    /// (RFC 8098 3.2.6.3 keeps them for extensions).
    fn parse(v: &str) -> Option<Disposition> {
        let (mode, rest) = v.split_once(';')?;
        let (action, sending) = mode.split_once('/')?;
        let kind = rest.trim().split(['/', ' ', '\t']).next()?;
        Disposition::new(action, sending, kind)
    }
}

/// What a received MDN says (the fields of RFC 9007 2's MDN object that come from the
/// message; `forEmailId` is the caller's to find from `original_message_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mdn {
    /// The message's Subject, decoded.
    pub subject: Option<String>,
    /// The human-readable part, as text.
    pub text_body: Option<String>,
    pub reporting_ua: Option<String>,
    pub disposition: Disposition,
    pub mdn_gateway: Option<String>,
    pub original_recipient: Option<String>,
    pub final_recipient: Option<String>,
    /// As written, with its angle brackets.
    pub original_message_id: Option<String>,
    pub error: Vec<String>,
    /// Every other field, name as written.
    pub extension_fields: Vec<(String, String)>,
    /// The report carries the original message (or its header) as a third part.
    pub original_included: bool,
}

impl Mdn {
    /// `original_message_id` without `<>`, as the store keeps Message-IDs.
    pub fn original_id_bare(&self) -> Option<&str> {
        let v = self.original_message_id.as_deref()?.trim();
        let v = v.strip_prefix('<').unwrap_or(v);
        let v = v.strip_suffix('>').unwrap_or(v);
        (!v.is_empty()).then_some(v)
    }
}

/// The MDN in `raw`, when `raw` is one: a report with a (global) disposition-notification
/// part whose `Disposition` field is valid. Never panics.
pub fn parse(raw: &[u8]) -> Option<Mdn> {
    let root = crate::body_structure(raw);
    let (report, part_id) = find_report(&root, 0)?;
    let content = crate::part_content(raw, &part_id)?;
    let body = &content.bytes[..content.bytes.len().min(MAX_PART)];
    let mut mdn = Mdn {
        subject: crate::parse_header(crate::headers::header_block(raw)).subject,
        text_body: None,
        reporting_ua: None,
        disposition: Disposition {
            action_mode: String::new(),
            sending_mode: String::new(),
            kind: String::new(),
        },
        mdn_gateway: None,
        original_recipient: None,
        final_recipient: None,
        original_message_id: None,
        error: Vec::new(),
        extension_fields: Vec::new(),
        original_included: report.sub_parts.iter().flatten().skip(2).any(|p| {
            matches!(
                p.content_type.as_str(),
                "message/rfc822" | "message/global" | "text/rfc822-headers"
            )
        }),
    };
    let mut disposition = None;
    for (name, value) in fields(body) {
        match name.to_ascii_lowercase().as_str() {
            "reporting-ua" => mdn.reporting_ua = Some(value),
            "mdn-gateway" => mdn.mdn_gateway = Some(value),
            "original-recipient" => mdn.original_recipient = Some(value),
            "final-recipient" => mdn.final_recipient = Some(value),
            "original-message-id" => mdn.original_message_id = Some(value),
            "disposition" => disposition = Disposition::parse(&value),
            "error" => mdn.error.push(value),
            _ => mdn.extension_fields.push((name, value)),
        }
    }
    mdn.disposition = disposition?;
    // RFC 8098 3: the first part is the human-readable one.
    if let Some(first) = report.sub_parts.iter().flatten().next()
        && first.content_type.starts_with("text/")
        && let Some(id) = first.part_id.as_deref()
        && let Some(v) = crate::body_value(raw, id, MAX_TEXT)
    {
        mdn.text_body = Some(v.value);
    }
    Some(mdn)
}

/// The multipart/report holding the first disposition-notification part, and that
/// part's id.
fn find_report(p: &BodyPart, depth: usize) -> Option<(&BodyPart, String)> {
    if depth > MAX_DEPTH {
        return None;
    }
    let subs = p.sub_parts.as_deref().unwrap_or_default();
    if p.content_type == "multipart/report"
        && let Some(n) = subs.iter().find(|c| {
            matches!(
                c.content_type.as_str(),
                "message/disposition-notification" | "message/global-disposition-notification"
            )
        })
        && let Some(id) = &n.part_id
    {
        return Some((p, id.clone()));
    }
    subs.iter().find_map(|c| find_report(c, depth + 1))
}

/// The unfolded `(name, value)` fields of a notification part, bounded.
fn fields(body: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(body);
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.split('\n').take(MAX_FIELDS * 4) {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = out.last_mut()
                && v.len() < MAX_VALUE
            {
                v.push(' ');
                v.push_str(line.trim());
                truncate(v, MAX_VALUE);
            }
            continue;
        }
        if out.len() >= MAX_FIELDS {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim();
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
                continue;
            }
            let mut v = value.trim().to_owned();
            truncate(&mut v, MAX_VALUE);
            out.push((name.to_owned(), v));
        }
    }
    out
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let cut = (0..=max)
            .rev()
            .find(|&i| s.is_char_boundary(i))
            .unwrap_or(0);
        s.truncate(cut);
    }
}

/// An MDN to write.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    /// The sender (the identity): display name and address.
    pub from_name: Option<&'a str>,
    pub from: &'a str,
    /// The addresses the original's `Disposition-Notification-To` named.
    pub to: &'a [String],
    pub subject: &'a str,
    pub text_body: &'a str,
    pub reporting_ua: &'a str,
    /// The whole field value, `rfc822; alice@example.org`.
    pub final_recipient: &'a str,
    pub original_recipient: Option<&'a str>,
    /// With its angle brackets.
    pub original_message_id: Option<&'a str>,
    pub disposition: &'a Disposition,
    pub extension_fields: &'a [(String, String)],
    /// The new message's own id, without `<>`.
    pub message_id: &'a str,
    /// Unix seconds, for the Date field.
    pub date: i64,
    /// A boundary that does not occur in any part (random, from the caller).
    pub boundary: &'a str,
    /// RFC 9007 includeOriginalMessage: the original, as the third part.
    pub original: Option<&'a [u8]>,
}

/// A header or field value made safe to write: one line, no control characters (a
/// value from a mail or a client never starts a field of its own).
fn one_line(v: &str) -> String {
    v.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// As [`one_line`], ASCII only: the notification fields are 7-bit (RFC 8098 3.1; the
/// UTF-8 form is RFC 6533's global type, not needed for what we write).
fn ascii_line(v: &str) -> String {
    one_line(v)
        .chars()
        .map(|c| if c.is_ascii() { c } else { '?' })
        .collect()
}

/// RFC 2047 encoded words (UTF-8, B) for a non-ASCII unstructured value; ASCII as is.
fn encode_words(v: &str) -> String {
    let v = one_line(v);
    if v.is_ascii() {
        return v;
    }
    let mut out = Vec::new();
    let mut chunk = String::new();
    for c in v.chars() {
        // 45 octets of UTF-8 make a 60-character encoded word (RFC 2047 2: at most 75).
        if chunk.len() + c.len_utf8() > 45 {
            out.push(format!("=?UTF-8?B?{}?=", base64(chunk.as_bytes())));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        out.push(format!("=?UTF-8?B?{}?=", base64(chunk.as_bytes())));
    }
    out.join("\r\n ")
}

fn base64(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// RFC 5322 3.3 date-time in UTC for unix seconds.
fn rfc5322_date(ts: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = ts.div_euclid(86_400);
    let secs = ts.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[usize::try_from(days.rem_euclid(7)).unwrap_or(0)],
        day,
        MONTHS[usize::try_from(month - 1).unwrap_or(0)],
        year,
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// Text as a 7bit or 8bit body: CRLF line ends, no line over 998 octets (RFC 5322 2.1.1).
fn body_lines(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut rest = line;
        while rest.len() > 900 {
            let cut = (0..=900)
                .rev()
                .find(|&i| rest.is_char_boundary(i))
                .unwrap_or(0)
                .max(1);
            let cut = (cut..=rest.len())
                .find(|&i| rest.is_char_boundary(i))
                .unwrap_or(rest.len());
            out.push_str(&rest[..cut]);
            out.push_str("\r\n");
            rest = &rest[cut..];
        }
        out.push_str(rest);
        out.push_str("\r\n");
    }
    out
}

/// The RFC 8098 message for `m`: `multipart/report; report-type=disposition-notification`
/// with the text, the notification fields and, when asked, the original message.
pub fn build(m: &Outgoing<'_>) -> Vec<u8> {
    let b = ascii_line(m.boundary);
    let from = match m.from_name.map(one_line).filter(|n| !n.is_empty()) {
        Some(n) => format!(
            "{} <{}>",
            if n.is_ascii() {
                format!("\"{}\"", n.replace(['"', '\\'], ""))
            } else {
                encode_words(&n)
            },
            ascii_line(m.from)
        ),
        None => format!("<{}>", ascii_line(m.from)),
    };
    let text = body_lines(m.text_body);
    let mut out = String::new();
    out.push_str(&format!("From: {from}\r\n"));
    let to: Vec<String> =
        m.to.iter()
            .map(|a| format!("<{}>", ascii_line(a)))
            .collect();
    out.push_str(&format!("To: {}\r\n", to.join(",\r\n ")));
    out.push_str(&format!("Subject: {}\r\n", encode_words(m.subject)));
    out.push_str(&format!("Date: {}\r\n", rfc5322_date(m.date)));
    out.push_str(&format!("Message-ID: <{}>\r\n", ascii_line(m.message_id)));
    // RFC 3834 5 / RFC 8098 2.1: an automatic answer must not be answered again.
    if m.disposition.sending_mode == "mdn-sent-automatically" {
        out.push_str("Auto-Submitted: auto-replied\r\n");
    }
    out.push_str("MIME-Version: 1.0\r\n");
    out.push_str(&format!(
        "Content-Type: multipart/report; report-type=disposition-notification;\r\n boundary=\"{b}\"\r\n\r\n"
    ));
    out.push_str("This is a message disposition notification (RFC 8098).\r\n\r\n");
    out.push_str(&format!("--{b}\r\n"));
    out.push_str(&format!(
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: {}\r\n\r\n",
        if text.is_ascii() { "7bit" } else { "8bit" }
    ));
    out.push_str(&text);
    out.push_str(&format!("\r\n--{b}\r\n"));
    out.push_str("Content-Type: message/disposition-notification\r\n\r\n");
    out.push_str(&format!("Reporting-UA: {}\r\n", ascii_line(m.reporting_ua)));
    if let Some(r) = m.original_recipient {
        out.push_str(&format!("Original-Recipient: {}\r\n", ascii_line(r)));
    }
    out.push_str(&format!(
        "Final-Recipient: {}\r\n",
        ascii_line(m.final_recipient)
    ));
    if let Some(id) = m.original_message_id {
        out.push_str(&format!("Original-Message-ID: {}\r\n", ascii_line(id)));
    }
    out.push_str(&format!("Disposition: {}\r\n", m.disposition.field_value()));
    for (name, value) in m.extension_fields {
        let name: String = name
            .chars()
            .filter(|c| c.is_ascii_graphic() && *c != ':')
            .collect();
        if !name.is_empty() {
            out.push_str(&format!("{name}: {}\r\n", ascii_line(value)));
        }
    }
    let mut bytes = out.into_bytes();
    if let Some(original) = m.original {
        bytes.extend_from_slice(
            format!("\r\n--{b}\r\nContent-Type: message/rfc822\r\n\r\n").as_bytes(),
        );
        bytes.extend_from_slice(original);
        if !original.ends_with(b"\r\n") {
            bytes.extend_from_slice(b"\r\n");
        }
    }
    bytes.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
    bytes
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const REPORT: &str = "From: Bob <bob@example.org>\r\n\
        To: alice@example.org\r\n\
        Subject: Read: hello\r\n\
        MIME-Version: 1.0\r\n\
        Content-Type: multipart/report; report-type=disposition-notification;\r\n\tboundary=\"XX\"\r\n\
        \r\n\
        --XX\r\n\
        Content-Type: text/plain\r\n\
        \r\n\
        Your message was displayed.\r\n\
        --XX\r\n\
        Content-Type: message/disposition-notification\r\n\
        \r\n\
        Reporting-UA: pc.example.org; Foomail 97.1\r\n\
        Original-Recipient: rfc822;bob@example.org\r\n\
        Final-Recipient: rfc822;bob@example.org\r\n\
        Original-Message-ID: <orig@example.org>\r\n\
        Disposition: manual-action/MDN-sent-manually;\r\n displayed\r\n\
        X-Extra: one\r\n\
        --XX--\r\n";

    #[test]
    fn a_report_is_read_field_by_field() {
        let m = parse(REPORT.as_bytes()).unwrap();
        assert_eq!(m.subject.as_deref(), Some("Read: hello"));
        assert_eq!(
            m.text_body.as_deref().map(str::trim),
            Some("Your message was displayed.")
        );
        assert_eq!(
            m.reporting_ua.as_deref(),
            Some("pc.example.org; Foomail 97.1")
        );
        assert_eq!(
            m.disposition,
            Disposition::new("manual-action", "mdn-sent-manually", "displayed").unwrap()
        );
        assert_eq!(m.final_recipient.as_deref(), Some("rfc822;bob@example.org"));
        assert_eq!(
            m.original_recipient.as_deref(),
            Some("rfc822;bob@example.org")
        );
        assert_eq!(m.original_id_bare(), Some("orig@example.org"));
        assert_eq!(
            m.extension_fields,
            vec![("X-Extra".to_owned(), "one".to_owned())]
        );
        assert!(m.error.is_empty() && m.mdn_gateway.is_none());
        assert!(!m.original_included);
    }

    #[test]
    fn what_is_not_a_report_is_not_parsed() {
        // A plain message, a report of another kind, and a report with no or a bad
        // Disposition.
        assert!(parse(b"Subject: hi\r\n\r\nhello\r\n").is_none());
        let dsn = REPORT.replace(
            "disposition-notification\r\n\r\nReporting",
            "delivery-status\r\n\r\nReporting",
        );
        assert!(parse(dsn.as_bytes()).is_none());
        let none = REPORT.replace(
            "Disposition: manual-action/MDN-sent-manually;\r\n displayed\r\n",
            "",
        );
        assert!(parse(none.as_bytes()).is_none());
        let bad = REPORT.replace("displayed", "eaten");
        assert!(parse(bad.as_bytes()).is_none());
        let bad = REPORT.replace("manual-action/MDN", "manual-actionMDN");
        assert!(parse(bad.as_bytes()).is_none());
        assert!(parse(b"").is_none());
        assert!(parse(&[0xff; 300]).is_none());
    }

    #[test]
    fn hostile_reports_stay_bounded() {
        // Thousands of fields, a huge folded value, binary junk: no panic, bounded.
        let mut many = String::from(
            "Content-Type: multipart/report; report-type=disposition-notification; boundary=B\r\n\r\n--B\r\nContent-Type: message/disposition-notification\r\n\r\nDisposition: automatic-action/MDN-sent-automatically; deleted\r\n",
        );
        for i in 0..10_000 {
            many.push_str(&format!("X-F{i}: v\r\n"));
        }
        many.push_str("Error: ");
        for _ in 0..10_000 {
            many.push_str("\r\n folded");
        }
        many.push_str("\r\n--B--\r\n");
        let m = parse(many.as_bytes()).unwrap();
        assert!(m.extension_fields.len() < MAX_FIELDS);
        assert_eq!(m.disposition.kind, "deleted");
        let mut junk = many.into_bytes();
        for (i, b) in junk.iter_mut().enumerate().skip(200) {
            if i % 7 == 0 {
                *b = 0x80 | (i as u8);
            }
        }
        let _ = parse(&junk);
        // Nested reports deeper than the bound are not followed.
        let mut nested = String::new();
        for i in 0..40 {
            nested.push_str(&format!(
                "--N{i}\r\nContent-Type: multipart/mixed; boundary=N{}\r\n\r\n",
                i + 1
            ));
        }
        let _ =
            parse(format!("Content-Type: multipart/mixed; boundary=N0\r\n\r\n{nested}").as_bytes());
    }

    #[test]
    fn a_built_report_parses_back_and_cannot_be_injected() {
        let d = Disposition::new("manual-action", "MDN-sent-manually", "displayed").unwrap();
        let ext = vec![("X-Note".to_owned(), "a\r\nBcc: evil@example.org".to_owned())];
        let raw = build(&Outgoing {
            from_name: Some("Alice Ä"),
            from: "alice@example.org",
            to: &[
                "bob@example.org\r\nBcc: x@y".to_owned(),
                "carol@example.org".to_owned(),
            ],
            subject: "Gelesen: grüße",
            text_body: "Your message was displayed.\nÄ",
            reporting_ua: "tidings; Tidings 0.1",
            final_recipient: "rfc822; alice@example.org",
            original_recipient: None,
            original_message_id: Some("<orig@example.org>"),
            disposition: &d,
            extension_fields: &ext,
            message_id: "mdn1@example.org",
            date: 1_796_000_000,
            boundary: "b1",
            original: Some(b"Subject: hi\r\n\r\nbody\r\n"),
        });
        let text = String::from_utf8(raw.clone()).unwrap();
        assert!(!text.contains("\r\nBcc:"), "{text}");
        assert!(text.contains("Disposition: manual-action/MDN-sent-manually; displayed\r\n"));
        assert!(
            text.contains("Date: Mon, 30 Nov 2026 00:53:20 +0000\r\n"),
            "{text}"
        );
        let m = parse(&raw).unwrap();
        assert_eq!(m.disposition, d);
        assert!(m.original_included);
        assert_eq!(m.original_id_bare(), Some("orig@example.org"));
        assert_eq!(m.subject.as_deref(), Some("Gelesen: grüße"));
        assert_eq!(
            m.final_recipient.as_deref(),
            Some("rfc822; alice@example.org")
        );
        assert_eq!(m.reporting_ua.as_deref(), Some("tidings; Tidings 0.1"));
        let text_body = m.text_body.unwrap();
        assert!(
            text_body.contains("Your message was displayed.") && text_body.contains('Ä'),
            "{text_body}"
        );
        let p = crate::parse(&raw);
        assert_eq!(p.from[0].email, "alice@example.org");
        assert_eq!(p.to.len(), 2);
        assert_eq!(p.to[1].email, "carol@example.org");
    }

    #[test]
    fn dates_are_rfc5322() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_796_000_000),
            "Mon, 30 Nov 2026 00:53:20 +0000"
        );
    }
}

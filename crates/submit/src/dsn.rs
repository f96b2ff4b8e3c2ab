//! Delivery status notifications (RFC 3461 to request them, RFC 3464 to read them).
//!
//! A DSN is a `multipart/report; report-type=delivery-status` message whose
//! `message/delivery-status` part is a block of per-message fields (among them
//! `Original-Envelope-Id`, the ENVID we gave at MAIL FROM) and one block per recipient
//! (`Final-Recipient`, `Action`, `Status`, `Diagnostic-Code`). The fields are parsed here
//! by hand: they are RFC 5322-style header blocks, and no maintained crate reads them
//! (mail-parser finds the part, through `mime`, but leaves its content alone).

/// Bounds on hostile input.
const MAX_FIELDS: usize = 2_000;
const MAX_VALUE: usize = 2_000;

/// What one delivery-status report says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// `Original-Envelope-Id`: the ENVID of the submission it is about.
    pub envelope_id: Option<String>,
    pub recipients: Vec<RecipientStatus>,
}

/// One recipient's block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientStatus {
    /// The address of `Original-Recipient`, else of `Final-Recipient` (without the
    /// `rfc822;` type).
    pub recipient: String,
    /// `failed`, `delayed`, `delivered`, `relayed` or `expanded` (lowercased).
    pub action: String,
    /// The RFC 3463 status code, `5.1.1`.
    pub status: String,
    /// `Diagnostic-Code` without its type: usually the remote server's reply,
    /// `550 5.1.1 <x@y>: Recipient address rejected`.
    pub diagnostic: Option<String>,
}

impl RecipientStatus {
    /// As JMAP's `smtpReply` wants it: the server's reply when the report quotes one,
    /// else the status code with the action.
    pub fn smtp_reply(&self) -> String {
        match &self.diagnostic {
            Some(d) if d.len() > 3 && d.as_bytes()[..3].iter().all(u8::is_ascii_digit) => d.clone(),
            Some(d) => format!("{} {}", self.status, d),
            None => format!("{} {}", self.status, self.action),
        }
    }
}

/// The delivery-status report of `raw`, when `raw` is a DSN. Never panics.
pub fn parse_report(raw: &[u8]) -> Option<Report> {
    let root = mime::body_structure(raw);
    let part = find_status_part(&root, 0)?;
    let content = mime::part_content(raw, part)?;
    parse_status_fields(&content.bytes)
}

fn find_status_part(p: &mime::BodyPart, depth: usize) -> Option<&str> {
    if depth > 8 {
        return None;
    }
    if matches!(
        p.content_type.as_str(),
        "message/delivery-status" | "message/global-delivery-status"
    ) {
        return p.part_id.as_deref();
    }
    p.sub_parts
        .iter()
        .flatten()
        .find_map(|c| find_status_part(c, depth + 1))
}

/// The blocks of a `message/delivery-status` body: unfolded `(name, value)` fields,
/// names lowercased, split at blank lines.
fn blocks(body: &[u8]) -> Vec<Vec<(String, String)>> {
    let text = String::from_utf8_lossy(body);
    let mut out: Vec<Vec<(String, String)>> = vec![Vec::new()];
    let mut fields = 0usize;
    for line in text.split('\n') {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            if out.last().is_some_and(|b| !b.is_empty()) {
                out.push(Vec::new());
            }
            continue;
        }
        fields += 1;
        if fields > MAX_FIELDS {
            break;
        }
        let Some(block) = out.last_mut() else {
            break;
        };
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = block.last_mut()
                && v.len() < MAX_VALUE
            {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            let mut v = value.trim().to_owned();
            v.truncate(
                (0..=MAX_VALUE.min(v.len()))
                    .rev()
                    .find(|&i| v.is_char_boundary(i))
                    .unwrap_or(0),
            );
            block.push((name.trim().to_ascii_lowercase(), v));
        }
    }
    out.retain(|b| !b.is_empty());
    out
}

/// `rfc822; bob@example.org` → `bob@example.org` (a value without a type is kept).
fn without_type(v: &str) -> String {
    match v.split_once(';') {
        Some((_, rest)) => rest.trim(),
        None => v.trim(),
    }
    .trim_start_matches('<')
    .trim_end_matches('>')
    .to_owned()
}

fn parse_status_fields(body: &[u8]) -> Option<Report> {
    let blocks = blocks(body);
    let (first, rest) = blocks.split_first()?;
    let get = |b: &[(String, String)], name: &str| {
        b.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
    };
    let envelope_id = get(first, "original-envelope-id");
    let mut recipients = Vec::new();
    for b in rest {
        let Some(recipient) = get(b, "original-recipient")
            .or_else(|| get(b, "final-recipient"))
            .map(|v| without_type(&v))
        else {
            continue;
        };
        let Some(action) = get(b, "action") else {
            continue;
        };
        recipients.push(RecipientStatus {
            recipient,
            action: action.to_ascii_lowercase(),
            status: get(b, "status").unwrap_or_default(),
            diagnostic: get(b, "diagnostic-code").map(|v| without_type(&v)),
        });
    }
    Some(Report {
        envelope_id,
        recipients,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const BOUNCE: &str = "From: MAILER-DAEMON@localhost (Mail Delivery System)\r\n\
Subject: Undelivered Mail Returned to Sender\r\n\
To: alice@example.org\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status;\r\n\
\tboundary=\"B1\"\r\n\
\r\n\
--B1\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\
\r\n\
I'm sorry to have to inform you...\r\n\
--B1\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Reporting-MTA: dns; localhost\r\n\
Original-Envelope-Id: tidings-7-1795000000\r\n\
Arrival-Date: Wed,  2 Dec 2026 03:00:00 +0000 (UTC)\r\n\
\r\n\
Final-Recipient: rfc822; nobody@example.org\r\n\
Original-Recipient: rfc822;Nobody@example.org\r\n\
Action: failed\r\n\
Status: 5.1.1\r\n\
Remote-MTA: dns; 127.0.0.1\r\n\
Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.org> User doesn't\r\n\
\x20   exist: nobody@example.org\r\n\
\r\n\
Final-Recipient: rfc822; slow@example.org\r\n\
Action: delayed\r\n\
Status: 4.4.1\r\n\
\r\n\
--B1\r\n\
Content-Type: text/rfc822-headers\r\n\
\r\n\
Subject: hi\r\n\
--B1--\r\n";

    #[test]
    fn a_bounce_is_read_per_recipient() {
        let r = parse_report(BOUNCE.as_bytes()).unwrap();
        assert_eq!(r.envelope_id.as_deref(), Some("tidings-7-1795000000"));
        assert_eq!(r.recipients.len(), 2);
        assert_eq!(r.recipients[0].recipient, "Nobody@example.org");
        assert_eq!(r.recipients[0].action, "failed");
        assert_eq!(
            r.recipients[0].smtp_reply(),
            "550 5.1.1 <nobody@example.org> User doesn't exist: nobody@example.org"
        );
        assert_eq!(r.recipients[1].action, "delayed");
        assert_eq!(r.recipients[1].smtp_reply(), "4.4.1 delayed");
    }

    #[test]
    fn ordinary_and_hostile_messages_are_not_reports() {
        assert!(parse_report(b"From: a@x\r\nSubject: hi\r\n\r\nbody\r\n").is_none());
        assert!(parse_report(b"").is_none());
        let junk = format!(
            "Content-Type: multipart/report; boundary=x\r\n\r\n--x\r\nContent-Type: message/delivery-status\r\n\r\n{}\r\n--x--\r\n",
            "Action: \u{ff}\u{0}:::\r\n\t\t".repeat(5000)
        );
        let r = parse_report(junk.as_bytes());
        assert!(r.is_none_or(|r| r.recipients.is_empty()));
    }
}

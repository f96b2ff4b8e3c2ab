//! Addresses as SMTP carries them: whether a string is one, and the envelope a message's
//! header implies. Pure, like the rest of the crate: the JMAP server checks addresses with
//! it, and the SMTP client (`submit`) sends what it accepts.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// The SMTP envelope (RFC 5321 2.3.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Reverse path; empty is the null sender `<>`.
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
}

/// Whether `s` is an address SMTP can carry: `local@domain`, split at the last `@`, with
/// a local part of RFC 5321 4.1.2 (dot-atom or quoted string, UTF-8 allowed per RFC 6531)
/// and a domain that is a host name (internationalized names through IDNA, RFC 5891) or
/// an address literal (RFC 5321 4.1.3). The same rules the SMTP client applies to the
/// envelope, so an address accepted here is never refused there.
pub fn valid_address(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    email_address::EmailAddress::is_valid_local_part(local) && valid_domain(domain)
}

fn valid_domain(domain: &str) -> bool {
    valid_domain_ascii(domain)
        || idna::domain_to_ascii(domain).is_ok_and(|ascii| valid_domain_ascii(&ascii))
}

fn valid_domain_ascii(domain: &str) -> bool {
    if email_address::EmailAddress::is_valid_domain(domain) {
        return true;
    }
    let ip = domain
        .strip_prefix('[')
        .and_then(|ip| ip.strip_suffix(']'))
        .unwrap_or(domain);
    ip.parse::<IpAddr>().is_ok()
}

/// RFC 8621 7.5: without an explicit envelope, MAIL FROM is the Sender header's address,
/// else the From header's (first) one; RCPT TO is every address of To, Cc and Bcc,
/// without duplicates. `None` when there is no sender or no recipient.
pub fn envelope_from_headers(raw: &[u8]) -> Option<Envelope> {
    let parsed = crate::parse_header(raw);
    let mail_from = parsed
        .sender
        .first()
        .or_else(|| parsed.from.first())
        .map(|a| a.email.clone())?;
    let mut rcpt_to: Vec<String> = Vec::new();
    for a in parsed.to.iter().chain(&parsed.cc).chain(&parsed.bcc) {
        if !a.email.is_empty()
            && !rcpt_to
                .iter()
                .any(|r: &String| r.eq_ignore_ascii_case(&a.email))
        {
            rcpt_to.push(a.email.clone());
        }
    }
    if rcpt_to.is_empty() {
        return None;
    }
    Some(Envelope { mail_from, rcpt_to })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn envelope_from_sender_or_from_and_every_recipient_once() {
        let raw = b"From: A <a@x.org>\r\nSender: s@x.org\r\nTo: b@y.org, C <c@y.org>\r\nCc: B@y.org\r\nBcc: d@z.org\r\nSubject: hi\r\n\r\nbody\r\n";
        let e = envelope_from_headers(raw).unwrap();
        assert_eq!(e.mail_from, "s@x.org");
        assert_eq!(e.rcpt_to, vec!["b@y.org", "c@y.org", "d@z.org"]);
        let raw = b"From: a@x.org\r\nTo: b@y.org\r\n\r\n";
        assert_eq!(envelope_from_headers(raw).unwrap().mail_from, "a@x.org");
        assert!(envelope_from_headers(b"From: a@x.org\r\n\r\nno rcpt").is_none());
        assert!(envelope_from_headers(b"To: a@x.org\r\n\r\nno from").is_none());
    }

    #[test]
    fn addresses_smtp_can_carry() {
        for ok in [
            "a@x.org",
            "first.last+tag@sub.example.com",
            "\"a b\"@x.org",
            "user@[127.0.0.1]",
            "user@[::1]",
            "josé@exämple.org",
            "\"a@b\"@x.org",
        ] {
            assert!(valid_address(ok), "{ok}");
        }
        for bad in [
            "",
            "a",
            "@x.org",
            "a@",
            "a b@x.org",
            "a@x..org",
            "a@-x.org",
            ".a@x.org",
            "a@b@x.org",
        ] {
            assert!(!valid_address(bad), "{bad}");
        }
    }
}

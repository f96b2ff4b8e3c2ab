//! Email keywords (RFC 8621 4.1.1).

/// `$draft`: the Email is a draft.
pub const DRAFT: &str = "$draft";
/// `$seen`: the Email has been read.
pub const SEEN: &str = "$seen";
/// `$flagged`: the Email is flagged for attention.
pub const FLAGGED: &str = "$flagged";
/// `$answered`: the Email has been replied to.
pub const ANSWERED: &str = "$answered";
/// `$forwarded` (RFC 5788 registry): the Email has been forwarded.
pub const FORWARDED: &str = "$forwarded";
/// `$phishing` (RFC 5788 registry).
pub const PHISHING: &str = "$phishing";
/// `$junk` (RFC 5788 registry).
pub const JUNK: &str = "$junk";
/// `$notjunk` (RFC 5788 registry).
pub const NOTJUNK: &str = "$notjunk";

/// RFC 8621 4.1.1: a keyword is 1-255 characters of `%x21-%x7E` (printable ASCII, no
/// space) except `( ) { ] % * " \`, the IMAP atom-specials, so that every keyword maps
/// to an IMAP flag.
pub fn is_valid_keyword(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && !b"(){]%*\"\\".contains(&b))
}

/// Keywords are case-insensitive (RFC 8621 4.1.1); servers compare and store them in
/// lowercase.
pub fn normalize_keyword(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// A keyword as a client sent it, checked ([`is_valid_keyword`]) and normalized
/// ([`normalize_keyword`]); `None` when it is not a keyword.
pub fn parse_keyword(s: &str) -> Option<String> {
    is_valid_keyword(s).then(|| normalize_keyword(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_checks_then_lowercases() {
        assert_eq!(parse_keyword("$Seen").as_deref(), Some(SEEN));
        assert_eq!(parse_keyword("Work").as_deref(), Some("work"));
        assert_eq!(parse_keyword("a b"), None);
        assert_eq!(parse_keyword(""), None);
    }

    #[test]
    fn keywords() {
        for ok in [
            SEEN,
            DRAFT,
            "$MDNSent",
            "work",
            "a[b",
            "x".repeat(255).as_str(),
        ] {
            assert!(is_valid_keyword(ok), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "a(b",
            "a)",
            "{",
            "]",
            "%",
            "*",
            "\"",
            "\\",
            "é",
            "\u{7f}",
            &"x".repeat(256),
        ] {
            assert!(!is_valid_keyword(bad), "{bad:?}");
        }
        assert_eq!(normalize_keyword("$Seen"), "$seen");
    }
}

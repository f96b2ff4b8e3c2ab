//! Header field properties of Email and EmailBodyPart (RFC 8621 4.1.3):
//! `header:{header-field-name}[:as{form}][:all]`.

use std::fmt;

/// The parsed forms of a header field value (RFC 8621 4.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeaderForm {
    /// 4.1.2.1 `asRaw` (the default): the raw octets, as a String.
    Raw,
    /// 4.1.2.2 `asText`: unfolded, RFC 2047 decoded, trimmed.
    Text,
    /// 4.1.2.3 `asAddresses`: `EmailAddress[]`.
    Addresses,
    /// 4.1.2.4 `asGroupedAddresses`: `EmailAddressGroup[]`.
    GroupedAddresses,
    /// 4.1.2.5 `asMessageIds`: `String[]|null`.
    MessageIds,
    /// 4.1.2.6 `asDate`: `Date|null`.
    Date,
    /// 4.1.2.7 `asURLs`: `String[]|null`.
    Urls,
}

impl HeaderForm {
    /// The suffix as written in a property name, e.g. `asAddresses`. Case-sensitive, as
    /// every JMAP property name is.
    pub fn as_suffix(self) -> &'static str {
        match self {
            HeaderForm::Raw => "asRaw",
            HeaderForm::Text => "asText",
            HeaderForm::Addresses => "asAddresses",
            HeaderForm::GroupedAddresses => "asGroupedAddresses",
            HeaderForm::MessageIds => "asMessageIds",
            HeaderForm::Date => "asDate",
            HeaderForm::Urls => "asURLs",
        }
    }

    /// The form named by a suffix.
    pub fn from_suffix(s: &str) -> Option<Self> {
        Some(match s {
            "asRaw" => HeaderForm::Raw,
            "asText" => HeaderForm::Text,
            "asAddresses" => HeaderForm::Addresses,
            "asGroupedAddresses" => HeaderForm::GroupedAddresses,
            "asMessageIds" => HeaderForm::MessageIds,
            "asDate" => HeaderForm::Date,
            "asURLs" => HeaderForm::Urls,
            _ => return None,
        })
    }
}

/// A parsed `header:` property name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HeaderProperty {
    /// The header field name as the client wrote it. Header field names are
    /// case-insensitive (RFC 5322 1.2.2): compare with [`HeaderProperty::name_is`]; the
    /// response must still use the property name exactly as requested.
    pub name: String,
    /// The requested form.
    pub form: HeaderForm,
    /// `:all`: every instance of the field, as an array, instead of the last one.
    pub all: bool,
}

impl HeaderProperty {
    /// Whether this is the header field `name`, case-insensitively.
    pub fn name_is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    /// RFC 8621 4.1.2: each form other than Raw may only be used for the header fields
    /// it lists, and for any field not defined in RFC 5322 or RFC 2369 (whose syntax the
    /// server cannot know). Requesting a form for another field "MUST" be rejected with
    /// `invalidArguments`, which the caller does when this is false.
    pub fn form_allowed(&self) -> bool {
        let n = self.name.to_ascii_lowercase();
        if !KNOWN_FIELDS.contains(&n.as_str()) {
            return true;
        }
        let allowed: &[&str] = match self.form {
            HeaderForm::Raw => return true,
            HeaderForm::Text => &["subject", "comments", "keywords", "list-id"],
            HeaderForm::Addresses | HeaderForm::GroupedAddresses => &[
                "from",
                "sender",
                "reply-to",
                "to",
                "cc",
                "bcc",
                "resent-from",
                "resent-sender",
                "resent-reply-to",
                "resent-to",
                "resent-cc",
                "resent-bcc",
            ],
            HeaderForm::MessageIds => &[
                "message-id",
                "in-reply-to",
                "references",
                "resent-message-id",
            ],
            HeaderForm::Date => &["date", "resent-date"],
            HeaderForm::Urls => &[
                "list-help",
                "list-unsubscribe",
                "list-subscribe",
                "list-post",
                "list-owner",
                "list-archive",
            ],
        };
        allowed.contains(&n.as_str())
    }
}

/// Header fields defined by RFC 5322 (with the obsolete Resent-Reply-To that RFC 8621
/// lists) and RFC 2369, lowercase: the fields whose forms are restricted.
const KNOWN_FIELDS: &[&str] = &[
    "date",
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "bcc",
    "message-id",
    "in-reply-to",
    "references",
    "subject",
    "comments",
    "keywords",
    "resent-date",
    "resent-from",
    "resent-sender",
    "resent-reply-to",
    "resent-to",
    "resent-cc",
    "resent-bcc",
    "resent-message-id",
    "return-path",
    "received",
    "list-help",
    "list-unsubscribe",
    "list-subscribe",
    "list-post",
    "list-owner",
    "list-archive",
];

impl fmt::Display for HeaderProperty {
    /// The canonical property name; `:asRaw` is left out as it is the default.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "header:{}", self.name)?;
        if self.form != HeaderForm::Raw {
            write!(f, ":{}", self.form.as_suffix())?;
        }
        if self.all {
            f.write_str(":all")?;
        }
        Ok(())
    }
}

/// Parses `header:{name}[:as{form}][:all]` (RFC 8621 4.1.3), e.g.
/// `header:From:asAddresses:all`. `None` if `s` is not such a name: no `header:` prefix,
/// an empty name, a name with characters outside RFC 5322 `ftext` (printable ASCII but
/// `:`), an unknown form (forms are case-sensitive), or anything after `:all`.
pub fn parse_header_property(s: &str) -> Option<HeaderProperty> {
    let rest = s.strip_prefix("header:")?;
    let mut parts = rest.split(':');
    let name = parts.next()?;
    if name.is_empty() || !name.bytes().all(|b| (33..=126).contains(&b)) {
        return None;
    }
    let mut form = HeaderForm::Raw;
    let mut all = false;
    let mut next = parts.next();
    if let Some(p) = next
        && p != "all"
    {
        form = HeaderForm::from_suffix(p)?;
        next = parts.next();
    }
    if let Some(p) = next {
        if p != "all" {
            return None;
        }
        all = true;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(HeaderProperty {
        name: name.to_string(),
        form,
        all,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> HeaderProperty {
        parse_header_property(s).unwrap_or_else(|| panic!("{s} refused"))
    }

    #[test]
    fn parses_forms() {
        let h = p("header:From:asAddresses:all");
        assert_eq!(
            (h.name.as_str(), h.form, h.all),
            ("From", HeaderForm::Addresses, true)
        );
        let h = p("header:Subject");
        assert_eq!((h.form, h.all), (HeaderForm::Raw, false));
        let h = p("header:subject:all");
        assert_eq!((h.form, h.all), (HeaderForm::Raw, true));
        assert!(h.name_is("SUBJECT"));
        for (suffix, form) in [
            ("asRaw", HeaderForm::Raw),
            ("asText", HeaderForm::Text),
            ("asAddresses", HeaderForm::Addresses),
            ("asGroupedAddresses", HeaderForm::GroupedAddresses),
            ("asMessageIds", HeaderForm::MessageIds),
            ("asDate", HeaderForm::Date),
            ("asURLs", HeaderForm::Urls),
        ] {
            assert_eq!(p(&format!("header:X-Y:{suffix}")).form, form);
            assert_eq!(form.as_suffix(), suffix);
        }
    }

    #[test]
    fn refuses() {
        for bad in [
            "header:",
            "header",
            "Header:From",
            "headers",
            "from",
            "header:From:",
            "header:From:asaddresses",
            "header:From:AsAddresses",
            "header:From:asUrls",
            "header:From:All",
            "header:From:all:asRaw",
            "header:From:asRaw:all:all",
            "header:From:asRaw:asText",
            "header:Fr om",
            "header:Frö",
            "header::asRaw",
        ] {
            assert_eq!(parse_header_property(bad), None, "{bad}");
        }
    }

    #[test]
    fn display_is_canonical() {
        assert_eq!(p("header:From:asRaw").to_string(), "header:From");
        assert_eq!(
            p("header:From:asAddresses:all").to_string(),
            "header:From:asAddresses:all"
        );
    }

    #[test]
    fn forms_allowed_per_field() {
        assert!(p("header:From:asAddresses").form_allowed());
        assert!(p("header:from:asGroupedAddresses").form_allowed());
        assert!(p("header:Subject:asText").form_allowed());
        assert!(p("header:List-Id:asText").form_allowed());
        assert!(p("header:Date:asDate").form_allowed());
        assert!(p("header:References:asMessageIds").form_allowed());
        assert!(p("header:List-Unsubscribe:asURLs").form_allowed());
        assert!(p("header:Received").form_allowed());
        // Unknown fields take any form.
        assert!(p("header:X-Spam:asDate").form_allowed());
        // Known fields refuse the others.
        assert!(!p("header:From:asDate").form_allowed());
        assert!(!p("header:Subject:asAddresses").form_allowed());
        assert!(!p("header:Received:asText").form_allowed());
        assert!(!p("header:Date:asText").form_allowed());
        assert!(!p("header:List-Post:asMessageIds").form_allowed());
    }
}

//! FilterConditions and sort properties of Email/query (RFC 8621 4.4.1, 4.4.2) and
//! Mailbox/query (RFC 8621 2.3, 2.4).

use serde::{Deserialize, Serialize};

use crate::date::UtcDate;
use crate::error::MethodError;
use crate::id::Id;
use crate::mail::keyword::is_valid_keyword;
use crate::method::double_option;
use crate::method::filter::FilterCondition;
use crate::method::sort::Comparator;

/// The sort properties of Email/query (RFC 8621 4.4.2).
pub const EMAIL_SORT_PROPERTIES: &[&str] = &[
    "receivedAt",
    "size",
    "from",
    "to",
    "subject",
    "sentAt",
    "hasKeyword",
    "allInThreadHaveKeyword",
    "someInThreadHaveKeyword",
];

/// The Email sorts that need the Comparator's `keyword` (RFC 8621 4.4.2).
pub const EMAIL_KEYWORD_SORT_PROPERTIES: &[&str] = &[
    "hasKeyword",
    "allInThreadHaveKeyword",
    "someInThreadHaveKeyword",
];

/// The sort properties of Mailbox/query (RFC 8621 2.4).
pub const MAILBOX_SORT_PROPERTIES: &[&str] = &["sortOrder", "name"];

/// A FilterCondition of Email/query (RFC 8621 4.4.1). All given properties must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmailFilterCondition {
    /// In this Mailbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_mailbox: Option<Id>,
    /// In at least one Mailbox not in this list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_mailbox_other_than: Option<Vec<Id>>,
    /// `receivedAt` before this date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<UtcDate>,
    /// `receivedAt` at or after this date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<UtcDate>,
    /// `size` at least this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_size: Option<u64>,
    /// `size` less than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<u64>,
    /// Every Email in the thread has this keyword.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all_in_thread_have_keyword: Option<String>,
    /// Some Email in the thread has this keyword.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub some_in_thread_have_keyword: Option<String>,
    /// No Email in the thread has this keyword.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub none_in_thread_have_keyword: Option<String>,
    /// The Email has this keyword.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_keyword: Option<String>,
    /// The Email does not have this keyword.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_keyword: Option<String>,
    /// `hasAttachment` equals this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_attachment: Option<bool>,
    /// Text in any address header, the subject, or a text body part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Text in the From header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Text in the To header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Text in the Cc header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cc: Option<String>,
    /// Text in the Bcc header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bcc: Option<String>,
    /// Text in the subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Text in a text body part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// `[name]`: has a header field of that name; `[name, value]`: one containing value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<Vec<String>>,
}

impl EmailFilterCondition {
    /// The header field name and optional value of the `header` condition.
    pub fn header_condition(&self) -> Option<(&str, Option<&str>)> {
        let h = self.header.as_ref()?;
        let name = h.first()?;
        Some((name.as_str(), h.get(1).map(String::as_str)))
    }
}

impl FilterCondition for EmailFilterCondition {
    const PROPERTIES: &'static [&'static str] = &[
        "inMailbox",
        "inMailboxOtherThan",
        "before",
        "after",
        "minSize",
        "maxSize",
        "allInThreadHaveKeyword",
        "someInThreadHaveKeyword",
        "noneInThreadHaveKeyword",
        "hasKeyword",
        "notKeyword",
        "hasAttachment",
        "text",
        "from",
        "to",
        "cc",
        "bcc",
        "subject",
        "body",
        "header",
    ];
    const SORT_PROPERTIES: &'static [&'static str] = EMAIL_SORT_PROPERTIES;

    fn validate(&self) -> Result<(), MethodError> {
        for (name, k) in [
            ("allInThreadHaveKeyword", &self.all_in_thread_have_keyword),
            ("someInThreadHaveKeyword", &self.some_in_thread_have_keyword),
            ("noneInThreadHaveKeyword", &self.none_in_thread_have_keyword),
            ("hasKeyword", &self.has_keyword),
            ("notKeyword", &self.not_keyword),
        ] {
            if let Some(k) = k
                && !is_valid_keyword(k)
            {
                return Err(MethodError::invalid_arguments(format!(
                    "{name} is not a valid keyword (RFC 8621 4.1.1)"
                )));
            }
        }
        if let Some(h) = &self.header {
            // RFC 8621 4.4.1: "The array MUST contain either one or two elements."
            if h.is_empty() || h.len() > 2 {
                return Err(MethodError::invalid_arguments(
                    "header must be [name] or [name, value]",
                ));
            }
            if h[0].is_empty() || !h[0].bytes().all(|b| (33..=126).contains(&b) && b != b':') {
                return Err(MethodError::invalid_arguments(
                    "header[0] is not a header field name",
                ));
            }
        }
        Ok(())
    }

    /// Property in [`EMAIL_SORT_PROPERTIES`] (else `unsupportedSort`), and for the
    /// keyword sorts a valid `keyword` (else `invalidArguments`: the sort is malformed,
    /// not unsupported).
    fn validate_comparator(c: &Comparator) -> Result<(), MethodError> {
        if !EMAIL_SORT_PROPERTIES.contains(&c.property.as_str()) {
            return Err(MethodError::unsupported_sort(format!(
                "Email/query cannot sort on {:?}",
                crate::method::short(&c.property)
            )));
        }
        if EMAIL_KEYWORD_SORT_PROPERTIES.contains(&c.property.as_str()) {
            match &c.keyword {
                Some(k) if is_valid_keyword(k) => {}
                Some(_) => {
                    return Err(MethodError::invalid_arguments(
                        "the sort keyword is not a valid keyword",
                    ));
                }
                None => {
                    return Err(MethodError::invalid_arguments(format!(
                        "sorting on {} needs a keyword",
                        c.property
                    )));
                }
            }
        }
        Ok(())
    }
}

/// A FilterCondition of Mailbox/query (RFC 8621 2.3).
///
/// `parentId` and `role` tell "absent" (`None`) from `null` (`Some(None)`): a `null`
/// `parentId` matches top-level Mailboxes, a `null` role Mailboxes without a role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MailboxFilterCondition {
    /// The parent Mailbox, or `null` for top-level.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub parent_id: Option<Option<Id>>,
    /// Text in the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The role, or `null` for none.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub role: Option<Option<String>>,
    /// Whether the Mailbox has any role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_any_role: Option<bool>,
    /// `isSubscribed` equals this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_subscribed: Option<bool>,
}

impl FilterCondition for MailboxFilterCondition {
    const PROPERTIES: &'static [&'static str] =
        &["parentId", "name", "role", "hasAnyRole", "isSubscribed"];
    const SORT_PROPERTIES: &'static [&'static str] = MAILBOX_SORT_PROPERTIES;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::MethodErrorType;
    use crate::method::filter::{Filter, Operator};
    use crate::method::sort::parse_sort;
    use serde_json::{Value, json};

    fn ef(v: Value) -> Result<Filter<EmailFilterCondition>, MethodError> {
        Filter::parse(&v)
    }

    #[test]
    fn every_email_condition() {
        let v = json!({
            "inMailbox": "M1", "inMailboxOtherThan": ["M2", "M3"],
            "before": "2024-01-01T00:00:00Z", "after": "2023-01-01T00:00:00Z",
            "minSize": 1, "maxSize": 100000,
            "allInThreadHaveKeyword": "$seen", "someInThreadHaveKeyword": "$flagged",
            "noneInThreadHaveKeyword": "$draft", "hasKeyword": "work", "notKeyword": "$junk",
            "hasAttachment": true, "text": "t", "from": "f", "to": "t", "cc": "c", "bcc": "b",
            "subject": "s", "body": "b", "header": ["List-Id", "rust"]
        });
        let Filter::Condition(c) = ef(v.clone()).unwrap() else {
            panic!()
        };
        assert_eq!(c.in_mailbox.as_ref().unwrap(), "M1");
        assert_eq!(c.before.unwrap().to_string(), "2024-01-01T00:00:00Z");
        assert_eq!(c.header_condition(), Some(("List-Id", Some("rust"))));
        assert_eq!(serde_json::to_value(&c).unwrap(), v);
        assert_eq!(EmailFilterCondition::PROPERTIES.len(), 20);
        let Filter::Condition(c) = ef(json!({"header": ["X-Spam"]})).unwrap() else {
            panic!()
        };
        assert_eq!(c.header_condition(), Some(("X-Spam", None)));
    }

    #[test]
    fn email_condition_errors() {
        let kind = |v: Value| ef(v).unwrap_err().kind;
        use MethodErrorType::{InvalidArguments as Ia, UnsupportedFilter as Uf};
        assert_eq!(kind(json!({"inMailboxes": "M1"})), Uf);
        assert_eq!(kind(json!({"isFlagged": true})), Uf);
        assert_eq!(
            kind(
                json!({"operator": "AND", "conditions": [{"text": "a"}, {"attachmentName": "x"}]})
            ),
            Uf
        );
        assert_eq!(kind(json!({"before": "yesterday"})), Ia);
        assert_eq!(kind(json!({"minSize": "1"})), Ia);
        assert_eq!(kind(json!({"inMailbox": "bad id"})), Ia);
        assert_eq!(kind(json!({"hasKeyword": "a b"})), Ia);
        assert_eq!(kind(json!({"header": []})), Ia);
        assert_eq!(kind(json!({"header": ["a", "b", "c"]})), Ia);
        assert_eq!(kind(json!({"header": ["Fr:om"]})), Ia);
        assert_eq!(kind(json!({"header": "From"})), Ia);
    }

    #[test]
    fn email_sorts() {
        let s = parse_sort::<EmailFilterCondition>(&json!([
            {"property": "receivedAt", "isAscending": false},
            {"property": "hasKeyword", "keyword": "$flagged"},
            {"property": "subject", "collation": "i;unicode-casemap"}
        ]))
        .unwrap();
        assert_eq!(s.len(), 3);
        for p in EMAIL_SORT_PROPERTIES {
            let c = json!([{"property": p, "keyword": "$seen"}]);
            assert!(parse_sort::<EmailFilterCondition>(&c).is_ok(), "{p}");
        }
        let kind = |v: Value| parse_sort::<EmailFilterCondition>(&v).unwrap_err().kind;
        assert_eq!(
            kind(json!([{"property": "id"}])),
            MethodErrorType::UnsupportedSort
        );
        assert_eq!(
            kind(json!([{"property": "threadId"}])),
            MethodErrorType::UnsupportedSort
        );
        assert_eq!(
            kind(json!([{"property": "hasKeyword"}])),
            MethodErrorType::InvalidArguments
        );
        assert_eq!(
            kind(json!([{"property": "hasKeyword", "keyword": "a b"}])),
            MethodErrorType::InvalidArguments
        );
    }

    #[test]
    fn mailbox_conditions() {
        let f: Filter<MailboxFilterCondition> =
            Filter::parse(&json!({"operator": "AND", "conditions": [
                {"parentId": null}, {"parentId": "M1"}, {"role": null}, {"role": "inbox"},
                {"name": "Arch", "hasAnyRole": false, "isSubscribed": true}, {}
            ]}))
            .unwrap();
        let Filter::Operator(op) = &f else { panic!() };
        assert_eq!(op.operator, Operator::And);
        let c = |i: usize| match &op.conditions[i] {
            Filter::Condition(c) => c.clone(),
            _ => panic!(),
        };
        assert_eq!(c(0).parent_id, Some(None));
        assert_eq!(c(1).parent_id, Some(Some(Id::new("M1").unwrap())));
        assert_eq!(c(2).role, Some(None));
        assert_eq!(c(3).role, Some(Some("inbox".into())));
        assert_eq!(c(5), MailboxFilterCondition::default());
        // null survives a round trip; absent stays absent.
        assert_eq!(
            serde_json::to_value(c(0)).unwrap(),
            json!({"parentId": null})
        );
        assert_eq!(serde_json::to_value(c(5)).unwrap(), json!({}));
        let e = Filter::<MailboxFilterCondition>::parse(&json!({"totalEmails": 3})).unwrap_err();
        assert_eq!(e.kind, MethodErrorType::UnsupportedFilter);
        let e =
            Filter::<MailboxFilterCondition>::parse(&json!({"isSubscribed": "yes"})).unwrap_err();
        assert_eq!(e.kind, MethodErrorType::InvalidArguments);
        let e = parse_sort::<MailboxFilterCondition>(&json!([{"property": "totalEmails"}]))
            .unwrap_err();
        assert_eq!(e.kind, MethodErrorType::UnsupportedSort);
        assert!(
            parse_sort::<MailboxFilterCondition>(
                &json!([{"property": "sortOrder"}, {"property": "name"}])
            )
            .is_ok()
        );
    }
}

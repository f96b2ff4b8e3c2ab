//! The arguments RFC 8621 adds to the standard methods, and the request types they make.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::id::IdRef;
use crate::mail::filter::{EmailFilterCondition, MailboxFilterCondition};
use crate::method::{ChangesResponse, GetRequest, QueryChangesRequest, QueryRequest, null_default};

/// Email/get's extra arguments (RFC 8621 4.2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmailGetArgs {
    /// The EmailBodyPart properties to return; `None` for
    /// [`BODY_PART_DEFAULT_PROPERTIES`](crate::mail::properties::BODY_PART_DEFAULT_PROPERTIES).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_properties: Option<Vec<String>>,
    /// Fetch the values of the `textBody` parts.
    #[serde(default, deserialize_with = "null_default")]
    pub fetch_text_body_values: bool,
    /// Fetch the values of the `htmlBody` parts (the RFC spells it `HTML`).
    #[serde(
        default,
        rename = "fetchHTMLBodyValues",
        deserialize_with = "null_default"
    )]
    pub fetch_html_body_values: bool,
    /// Fetch the values of every text part.
    #[serde(default, deserialize_with = "null_default")]
    pub fetch_all_body_values: bool,
    /// Truncate each value to this many octets; 0 for no limit.
    #[serde(default, deserialize_with = "null_default")]
    pub max_body_value_bytes: u64,
}

/// The arguments of Email/parse (RFC 8621 4.9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmailParseRequest {
    /// The account to use.
    pub account_id: crate::id::Id,
    /// The blobs to parse as messages.
    pub blob_ids: Vec<crate::id::Id>,
    /// The Email properties to return; `None` for [`EMAIL_PARSE_DEFAULT_PROPERTIES`].
    #[serde(default)]
    pub properties: Option<Vec<String>>,
    /// As Email/get's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_properties: Option<Vec<String>>,
    /// As Email/get's.
    #[serde(default, deserialize_with = "null_default")]
    pub fetch_text_body_values: bool,
    /// As Email/get's.
    #[serde(
        default,
        rename = "fetchHTMLBodyValues",
        deserialize_with = "null_default"
    )]
    pub fetch_html_body_values: bool,
    /// As Email/get's.
    #[serde(default, deserialize_with = "null_default")]
    pub fetch_all_body_values: bool,
    /// As Email/get's.
    #[serde(default, deserialize_with = "null_default")]
    pub max_body_value_bytes: u64,
}

impl EmailParseRequest {
    /// The body arguments, which RFC 8621 4.9 gives the meaning of Email/get's.
    pub fn body_args(&self) -> EmailGetArgs {
        EmailGetArgs {
            body_properties: self.body_properties.clone(),
            fetch_text_body_values: self.fetch_text_body_values,
            fetch_html_body_values: self.fetch_html_body_values,
            fetch_all_body_values: self.fetch_all_body_values,
            max_body_value_bytes: self.max_body_value_bytes,
        }
    }
}

/// The properties Email/parse returns by default (RFC 8621 4.9).
pub const EMAIL_PARSE_DEFAULT_PROPERTIES: &[&str] = &[
    "messageId",
    "inReplyTo",
    "references",
    "sender",
    "from",
    "to",
    "cc",
    "bcc",
    "replyTo",
    "subject",
    "sentAt",
    "hasAttachment",
    "preview",
    "bodyValues",
    "textBody",
    "htmlBody",
    "attachments",
];

/// Email/query's and Email/queryChanges' extra argument (RFC 8621 4.4, 4.5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmailQueryArgs {
    /// Return only the first matching Email of each Thread.
    #[serde(default, deserialize_with = "null_default")]
    pub collapse_threads: bool,
}

/// Mailbox/query's extra arguments (RFC 8621 2.3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MailboxQueryArgs {
    /// Sort parents before children, siblings by the sort.
    #[serde(default, deserialize_with = "null_default")]
    pub sort_as_tree: bool,
    /// A Mailbox matches only if all its ancestors match too.
    #[serde(default, deserialize_with = "null_default")]
    pub filter_as_tree: bool,
}

/// Mailbox/set's extra argument (RFC 8621 2.5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MailboxSetArgs {
    /// Destroying a Mailbox with Emails removes them from it (destroying those only
    /// there) instead of failing with `mailboxHasEmail`.
    #[serde(default, deserialize_with = "null_default")]
    pub on_destroy_remove_emails: bool,
}

/// EmailSubmission/set's extra arguments (RFC 8621 7.5): keyed by EmailSubmission id or
/// `#creationId` of a submission created in the same call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmailSubmissionSetArgs {
    /// PatchObjects applied to the Email of each successful submission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_success_update_email: Option<BTreeMap<IdRef, Map<String, Value>>>,
    /// Emails of successful submissions to destroy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_success_destroy_email: Option<Vec<IdRef>>,
}

/// Mailbox/changes' extra response property (RFC 8621 2.2), always present.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MailboxChangesExtra {
    /// `["totalEmails", "unreadEmails", "totalThreads", "unreadThreads"]` when only those
    /// counts changed, else `null`.
    #[serde(default)]
    pub updated_properties: Option<Vec<String>>,
}

/// Email/get's arguments.
pub type EmailGetRequest = GetRequest<EmailGetArgs>;
/// Email/query's arguments.
pub type EmailQueryRequest = QueryRequest<EmailFilterCondition, EmailQueryArgs>;
/// Email/queryChanges' arguments.
pub type EmailQueryChangesRequest = QueryChangesRequest<EmailFilterCondition, EmailQueryArgs>;
/// Mailbox/query's arguments.
pub type MailboxQueryRequest = QueryRequest<MailboxFilterCondition, MailboxQueryArgs>;
/// Mailbox/changes' response.
pub type MailboxChangesResponse = ChangesResponse<MailboxChangesExtra>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::MethodErrorType;
    use crate::id::Id;
    use crate::method::{Comparator, Filter, SetRequest};
    use crate::state::State;
    use serde_json::json;

    fn m(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn email_get() {
        let r = EmailGetRequest::parse(m(json!({
            "accountId": "A1", "ids": ["m1"], "properties": ["subject"],
            "bodyProperties": ["partId"], "fetchTextBodyValues": true,
            "fetchHTMLBodyValues": true, "maxBodyValueBytes": 256
        })))
        .unwrap();
        assert!(r.extra.fetch_text_body_values && r.extra.fetch_html_body_values);
        assert!(!r.extra.fetch_all_body_values);
        assert_eq!(r.extra.max_body_value_bytes, 256);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["fetchHTMLBodyValues"], true);
        assert!(v.get("fetchHtmlBodyValues").is_none());
        let e = EmailGetRequest::parse(m(json!({"accountId": "A1", "fetchHtmlBodyValues": true})))
            .unwrap_err();
        assert_eq!(e.kind, MethodErrorType::InvalidArguments);
    }

    #[test]
    fn rfc_email_query_example() {
        // RFC 8620 3.7 / RFC 8621 4.10: the inbox query.
        let r = EmailQueryRequest::parse(m(json!({
            "accountId": "A1",
            "filter": {"inMailbox": "id_of_inbox"},
            "sort": [{"property": "receivedAt", "isAscending": false}],
            "collapseThreads": true,
            "position": 0,
            "limit": 10,
            "calculateTotal": true
        })))
        .unwrap();
        assert!(r.extra.collapse_threads);
        assert_eq!(
            r.sort.as_deref(),
            Some(&[Comparator::desc("receivedAt")][..])
        );
        let Some(Filter::Condition(c)) = &r.filter else {
            panic!()
        };
        assert_eq!(c.in_mailbox.as_ref().unwrap(), "id_of_inbox");
        assert_eq!((r.limit, r.calculate_total), (Some(10), true));
        let kind = |v: Value| EmailQueryRequest::parse(m(v)).unwrap_err().kind;
        assert_eq!(
            kind(json!({"accountId": "A1", "sortAsTree": true})),
            MethodErrorType::InvalidArguments
        );
        assert_eq!(
            kind(json!({"accountId": "A1", "filter": {"inMailboxes": "x"}})),
            MethodErrorType::UnsupportedFilter
        );
        assert_eq!(
            kind(json!({"accountId": "A1", "sort": [{"property": "id"}]})),
            MethodErrorType::UnsupportedSort
        );
    }

    #[test]
    fn email_query_changes() {
        let r = EmailQueryChangesRequest::parse(m(json!({
            "accountId": "A1", "sinceQueryState": "q1", "collapseThreads": true,
            "filter": {"hasKeyword": "$flagged"}
        })))
        .unwrap();
        assert!(r.extra.collapse_threads);
    }

    #[test]
    fn mailbox_query_and_set() {
        let r = MailboxQueryRequest::parse(m(json!({
            "accountId": "A1", "filter": {"parentId": null}, "sort": [{"property": "sortOrder"}],
            "sortAsTree": true, "filterAsTree": true
        })))
        .unwrap();
        assert!(r.extra.sort_as_tree && r.extra.filter_as_tree);
        let e = MailboxQueryRequest::parse(m(json!({"accountId": "A1", "collapseThreads": true})))
            .unwrap_err();
        assert_eq!(e.kind, MethodErrorType::InvalidArguments);
        let r = SetRequest::<MailboxSetArgs>::parse(m(json!({
            "accountId": "A1", "destroy": ["M1"], "onDestroyRemoveEmails": true
        })))
        .unwrap();
        assert!(r.extra.on_destroy_remove_emails);
        let r = SetRequest::<EmailSubmissionSetArgs>::parse(m(json!({
            "accountId": "A1",
            "create": {"k1": {"emailId": "M1", "identityId": "I1"}},
            "onSuccessUpdateEmail": {"#k1": {"keywords/$draft": null, "mailboxIds/M2": true}},
            "onSuccessDestroyEmail": ["#k1"]
        })))
        .unwrap();
        assert_eq!(
            r.extra.on_success_destroy_email.unwrap()[0],
            IdRef::parse("#k1").unwrap()
        );
    }

    #[test]
    fn mailbox_changes_response() {
        let r = MailboxChangesResponse {
            account_id: Id::new("A1").unwrap(),
            old_state: State::from("1"),
            new_state: State::from("2"),
            has_more_changes: false,
            created: vec![],
            updated: vec![Id::new("M1").unwrap()],
            destroyed: vec![],
            extra: MailboxChangesExtra {
                updated_properties: None,
            },
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["updatedProperties"], Value::Null);
        assert_eq!(v.as_object().unwrap().len(), 8);
        assert_eq!(
            serde_json::from_value::<MailboxChangesResponse>(v).unwrap(),
            r
        );
    }
}

//! Capability URIs and the capability objects of the Session (RFC 8620 2, RFC 8621 1.3,
//! RFC 8887 4).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// RFC 8620 2: the core protocol; every Session has it.
pub const CORE: &str = "urn:ietf:params:jmap:core";
/// RFC 8621 1.3.1: Mailbox, Thread, Email, SearchSnippet.
pub const MAIL: &str = "urn:ietf:params:jmap:mail";
/// RFC 8621 1.3.2: Identity, EmailSubmission.
pub const SUBMISSION: &str = "urn:ietf:params:jmap:submission";
/// RFC 8621 1.3.3: VacationResponse.
pub const VACATION_RESPONSE: &str = "urn:ietf:params:jmap:vacationresponse";
/// RFC 8887 4: JMAP over WebSocket.
pub const WEBSOCKET: &str = "urn:ietf:params:jmap:websocket";
/// RFC 9007 2: MDN/send and MDN/parse.
pub const MDN: &str = "urn:ietf:params:jmap:mdn";
/// RFC 9749 3: Web Push signed with VAPID; the server's `applicationServerKey`.
pub const WEBPUSH_VAPID: &str = "urn:ietf:params:jmap:webpush-vapid";
/// RFC 9661 1.3.1: SieveScript.
pub const SIEVE: &str = "urn:ietf:params:jmap:sieve";
/// RFC 9425 3: Quota.
pub const QUOTA: &str = "urn:ietf:params:jmap:quota";
/// RFC 9404 3: Blob/upload, Blob/get, Blob/lookup.
pub const BLOB: &str = "urn:ietf:params:jmap:blob";

/// The value of `urn:ietf:params:jmap:core` in the Session's `capabilities` (RFC 8620 2):
/// the server's limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CoreCapability {
    /// Largest blob upload, in octets.
    pub max_size_upload: u64,
    /// Most concurrent uploads.
    pub max_concurrent_upload: u64,
    /// Largest request body, in octets.
    pub max_size_request: u64,
    /// Most concurrent requests.
    pub max_concurrent_requests: u64,
    /// Most method calls in one request.
    pub max_calls_in_request: u64,
    /// Most objects one `/get` may fetch.
    pub max_objects_in_get: u64,
    /// Most objects one `/set` may create, update and destroy together.
    pub max_objects_in_set: u64,
    /// Collation algorithms (RFC 4790 names) the server can sort and filter with.
    pub collation_algorithms: Vec<String>,
}

impl Default for CoreCapability {
    /// The suggested minimum values of RFC 8620 2. No collation is claimed: which ones a
    /// server implements is for it to say.
    fn default() -> Self {
        Self {
            max_size_upload: 50_000_000,
            max_concurrent_upload: 4,
            max_size_request: 10_000_000,
            max_concurrent_requests: 4,
            max_calls_in_request: 16,
            max_objects_in_get: 500,
            max_objects_in_set: 500,
            collation_algorithms: Vec::new(),
        }
    }
}

/// A capability whose Session-level value is an empty object, as `mail` and `submission`
/// are (RFC 8621 1.3.1, 1.3.2). Unknown members are ignored when reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmptyCapability {}

/// The value of `urn:ietf:params:jmap:mail` in an account's `accountCapabilities`
/// (RFC 8621 1.3.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MailCapability {
    /// Most Mailboxes an Email may be in; `null` for no limit (serialized as `null`).
    pub max_mailboxes_per_email: Option<u64>,
    /// Deepest Mailbox nesting; `null` for no limit.
    pub max_mailbox_depth: Option<u64>,
    /// Longest Mailbox name, in octets of UTF-8 (at least 100).
    pub max_size_mailbox_name: u64,
    /// Largest total size of attachments of an Email the server will create.
    pub max_size_attachments_per_email: u64,
    /// The sort properties Email/query supports (RFC 8621 4.4.2).
    pub email_query_sort_options: Vec<String>,
    /// Whether the user may create a Mailbox at the top level.
    pub may_create_top_level_mailbox: bool,
}

/// The value of `urn:ietf:params:jmap:submission` in `accountCapabilities`
/// (RFC 8621 1.3.2).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubmissionCapability {
    /// Longest delay, in seconds, a submission may be held for; 0 for none.
    pub max_delayed_send: u64,
    /// SMTP EHLO keywords (RFC 5321) and their arguments the server supports.
    pub submission_extensions: BTreeMap<String, Vec<String>>,
}

/// The value of `urn:ietf:params:jmap:websocket` in the Session (RFC 8887 4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebSocketCapability {
    /// The `wss://` URL to connect to.
    pub url: String,
    /// Whether the server pushes StateChange objects over the socket.
    pub supports_push: bool,
}

/// The Session's `capabilities` (RFC 8620 2): a map from capability URI to its object,
/// with the ones Tidings knows typed and any other kept as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionCapabilities {
    /// `urn:ietf:params:jmap:core`, always present.
    #[serde(rename = "urn:ietf:params:jmap:core")]
    pub core: CoreCapability,
    /// `urn:ietf:params:jmap:mail`.
    #[serde(
        rename = "urn:ietf:params:jmap:mail",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub mail: Option<EmptyCapability>,
    /// `urn:ietf:params:jmap:submission`.
    #[serde(
        rename = "urn:ietf:params:jmap:submission",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub submission: Option<EmptyCapability>,
    /// `urn:ietf:params:jmap:websocket`.
    #[serde(
        rename = "urn:ietf:params:jmap:websocket",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub websocket: Option<WebSocketCapability>,
    /// Any other capability, by URI.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

impl SessionCapabilities {
    /// Only the core capability.
    pub fn core(core: CoreCapability) -> Self {
        Self {
            core,
            mail: None,
            submission: None,
            websocket: None,
            other: BTreeMap::new(),
        }
    }

    /// The URIs present: what a request's `using` may name (for [`crate::parse_request`]).
    pub fn uris(&self) -> Vec<&str> {
        let mut out = vec![CORE];
        if self.mail.is_some() {
            out.push(MAIL);
        }
        if self.submission.is_some() {
            out.push(SUBMISSION);
        }
        if self.websocket.is_some() {
            out.push(WEBSOCKET);
        }
        out.extend(self.other.keys().map(String::as_str));
        out
    }
}

/// An account's `accountCapabilities` (RFC 8620 2), typed where Tidings knows them.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AccountCapabilities {
    /// `urn:ietf:params:jmap:mail`.
    #[serde(
        rename = "urn:ietf:params:jmap:mail",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub mail: Option<MailCapability>,
    /// `urn:ietf:params:jmap:submission`.
    #[serde(
        rename = "urn:ietf:params:jmap:submission",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub submission: Option<SubmissionCapability>,
    /// Any other capability, by URI (an empty object for `core`, if a server lists it).
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn core_capability_names() {
        let v = serde_json::to_value(CoreCapability {
            collation_algorithms: vec!["i;ascii-numeric".into()],
            ..CoreCapability::default()
        })
        .unwrap();
        assert_eq!(
            v,
            json!({
                "maxSizeUpload": 50000000,
                "maxConcurrentUpload": 4,
                "maxSizeRequest": 10000000,
                "maxConcurrentRequests": 4,
                "maxCallsInRequest": 16,
                "maxObjectsInGet": 500,
                "maxObjectsInSet": 500,
                "collationAlgorithms": ["i;ascii-numeric"]
            })
        );
    }

    #[test]
    fn mail_capability_nulls_are_kept() {
        let m = MailCapability {
            max_mailboxes_per_email: None,
            max_mailbox_depth: Some(10),
            max_size_mailbox_name: 490,
            max_size_attachments_per_email: 50_000_000,
            email_query_sort_options: vec!["receivedAt".into()],
            may_create_top_level_mailbox: true,
        };
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(
            v,
            json!({
                "maxMailboxesPerEmail": null,
                "maxMailboxDepth": 10,
                "maxSizeMailboxName": 490,
                "maxSizeAttachmentsPerEmail": 50000000,
                "emailQuerySortOptions": ["receivedAt"],
                "mayCreateTopLevelMailbox": true
            })
        );
        assert_eq!(serde_json::from_value::<MailCapability>(v).unwrap(), m);
    }

    #[test]
    fn websocket_and_submission() {
        let w = WebSocketCapability {
            url: "wss://h/jmap/ws/".into(),
            supports_push: true,
        };
        assert_eq!(
            serde_json::to_value(&w).unwrap(),
            json!({"url": "wss://h/jmap/ws/", "supportsPush": true})
        );
        let s = SubmissionCapability {
            max_delayed_send: 44236800,
            submission_extensions: BTreeMap::from([(
                "DELIVERBY".to_string(),
                vec!["240".to_string()],
            )]),
        };
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            json!({"maxDelayedSend": 44236800, "submissionExtensions": {"DELIVERBY": ["240"]}})
        );
    }

    #[test]
    fn session_capabilities_uris() {
        let mut c = SessionCapabilities::core(CoreCapability::default());
        c.mail = Some(EmptyCapability {});
        c.other.insert("urn:example:x".into(), json!({}));
        assert_eq!(c.uris(), vec![CORE, MAIL, "urn:example:x"]);
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v[MAIL], json!({}));
        assert!(v.get(SUBMISSION).is_none());
        assert_eq!(serde_json::from_value::<SessionCapabilities>(v).unwrap(), c);
    }
}

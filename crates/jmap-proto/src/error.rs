//! JMAP errors at their three levels: the request (RFC 8620 3.6.1, an RFC 7807 problem
//! details object), a method call (RFC 8620 3.6.2 and the standard methods of 5.x), and
//! one record of a `/set` (`SetError`, RFC 8620 5.3 and RFC 8621).

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::id::Id;
use crate::request::Invocation;

/// Content type of a request-level error body (RFC 7807 3).
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The `type` of a request-level error (RFC 8620 3.6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RequestErrorType {
    /// The `using` property names a capability the server does not support.
    #[serde(rename = "urn:ietf:params:jmap:error:unknownCapability")]
    UnknownCapability,
    /// The request was not `application/json` or did not parse as I-JSON.
    #[serde(rename = "urn:ietf:params:jmap:error:notJSON")]
    NotJson,
    /// The request parsed as JSON but is not a Request object.
    #[serde(rename = "urn:ietf:params:jmap:error:notRequest")]
    NotRequest,
    /// The request exceeds a limit of the core capability, named in `limit`.
    #[serde(rename = "urn:ietf:params:jmap:error:limit")]
    Limit,
}

impl RequestErrorType {
    /// The URN that goes in the `type` property.
    pub fn as_urn(self) -> &'static str {
        match self {
            RequestErrorType::UnknownCapability => "urn:ietf:params:jmap:error:unknownCapability",
            RequestErrorType::NotJson => "urn:ietf:params:jmap:error:notJSON",
            RequestErrorType::NotRequest => "urn:ietf:params:jmap:error:notRequest",
            RequestErrorType::Limit => "urn:ietf:params:jmap:error:limit",
        }
    }
}

impl fmt::Display for RequestErrorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_urn())
    }
}

/// A request-level error (RFC 8620 3.6.1): an RFC 7807 problem details object, sent
/// instead of a Response with HTTP status `status` and content type [`PROBLEM_JSON`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind}: {detail}")]
pub struct RequestError {
    /// The error URN.
    #[serde(rename = "type")]
    pub kind: RequestErrorType,
    /// HTTP status code; 400 for every type RFC 8620 defines.
    pub status: u16,
    /// For `limit`: the name of the limit exceeded, as the core capability spells it
    /// (`maxSizeRequest`, `maxCallsInRequest`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
    /// A human-readable explanation.
    pub detail: String,
}

impl RequestError {
    fn new(kind: RequestErrorType, detail: impl Into<String>) -> Self {
        Self {
            kind,
            status: 400,
            limit: None,
            detail: detail.into(),
        }
    }

    /// `urn:ietf:params:jmap:error:notJSON`; also what the HTTP layer sends for a wrong
    /// content type.
    pub fn not_json(detail: impl Into<String>) -> Self {
        Self::new(RequestErrorType::NotJson, detail)
    }

    /// `urn:ietf:params:jmap:error:notRequest`.
    pub fn not_request(detail: impl Into<String>) -> Self {
        Self::new(RequestErrorType::NotRequest, detail)
    }

    /// `urn:ietf:params:jmap:error:unknownCapability`.
    pub fn unknown_capability(detail: impl Into<String>) -> Self {
        Self::new(RequestErrorType::UnknownCapability, detail)
    }

    /// `urn:ietf:params:jmap:error:limit` naming the limit, e.g. `maxSizeRequest`.
    pub fn limit(limit: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            limit: Some(limit.into()),
            ..Self::new(RequestErrorType::Limit, detail)
        }
    }

    /// The `application/problem+json` body.
    pub fn to_json(&self) -> String {
        // Built by hand rather than through serde so that producing the body cannot fail.
        let mut m = Map::new();
        m.insert("type".into(), Value::String(self.kind.as_urn().into()));
        m.insert("status".into(), Value::from(self.status));
        if let Some(limit) = &self.limit {
            m.insert("limit".into(), Value::String(limit.clone()));
        }
        m.insert("detail".into(), Value::String(self.detail.clone()));
        Value::Object(m).to_string()
    }
}

/// The `type` of a method-level error: RFC 8620 3.6.2, the standard methods of RFC 8620
/// 5.x (and 6.3 Blob/copy), as used by RFC 8621.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MethodErrorType {
    /// 3.6.2: an internal resource is temporarily unavailable; retry later.
    ServerUnavailable,
    /// 3.6.2: an unexpected error; the call made no changes.
    ServerFail,
    /// 3.6.2: some, but not all, changes were made; the client must resync.
    ServerPartialFail,
    /// 3.6.2: the method name is unknown (or its capability is not in `using`).
    UnknownMethod,
    /// 3.6.2: an argument is of the wrong type, missing, or otherwise invalid.
    InvalidArguments,
    /// 3.6.2 / 3.7: a result reference could not be resolved.
    InvalidResultReference,
    /// 3.6.2: the call would violate an ACL or other permission.
    Forbidden,
    /// 3.6.2: the accountId does not correspond to a valid account.
    AccountNotFound,
    /// 3.6.2: the account does not support this method's data type.
    AccountNotSupportedByMethod,
    /// 3.6.2: the account is read-only.
    AccountReadOnly,
    /// 5.1 /get, 5.3 /set: more ids or objects than `maxObjectsInGet`/`maxObjectsInSet`.
    RequestTooLarge,
    /// 5.2 /changes, 5.6 /queryChanges: the state is too old or unknown.
    CannotCalculateChanges,
    /// 5.3 /set (and RFC 8621 Email/import): `ifInState` does not match.
    StateMismatch,
    /// 5.5 /query: the anchor is not in the results.
    AnchorNotFound,
    /// 5.5 /query: the filter is syntactically valid but cannot be processed.
    UnsupportedFilter,
    /// 5.5 /query: a sort property or collation is not supported.
    UnsupportedSort,
    /// 5.6 /queryChanges: more changes than `maxChanges`.
    TooManyChanges,
    /// 5.4 /copy, 6.3 Blob/copy: the fromAccountId does not exist.
    FromAccountNotFound,
    /// 5.4 /copy: the fromAccountId does not support this data type.
    FromAccountNotSupportedByMethod,
    /// RFC 9404 4.3 Blob/lookup: a type name the server does not know.
    UnknownDataType,
}

impl MethodErrorType {
    /// The wire name, e.g. `invalidArguments`.
    pub fn as_str(self) -> &'static str {
        use MethodErrorType::*;
        match self {
            ServerUnavailable => "serverUnavailable",
            ServerFail => "serverFail",
            ServerPartialFail => "serverPartialFail",
            UnknownMethod => "unknownMethod",
            InvalidArguments => "invalidArguments",
            InvalidResultReference => "invalidResultReference",
            Forbidden => "forbidden",
            AccountNotFound => "accountNotFound",
            AccountNotSupportedByMethod => "accountNotSupportedByMethod",
            AccountReadOnly => "accountReadOnly",
            RequestTooLarge => "requestTooLarge",
            CannotCalculateChanges => "cannotCalculateChanges",
            StateMismatch => "stateMismatch",
            AnchorNotFound => "anchorNotFound",
            UnsupportedFilter => "unsupportedFilter",
            UnsupportedSort => "unsupportedSort",
            TooManyChanges => "tooManyChanges",
            FromAccountNotFound => "fromAccountNotFound",
            FromAccountNotSupportedByMethod => "fromAccountNotSupportedByMethod",
            UnknownDataType => "unknownDataType",
        }
    }

    /// Every type, for exhaustive tests and documentation.
    pub const ALL: &'static [MethodErrorType] = &[
        MethodErrorType::ServerUnavailable,
        MethodErrorType::ServerFail,
        MethodErrorType::ServerPartialFail,
        MethodErrorType::UnknownMethod,
        MethodErrorType::InvalidArguments,
        MethodErrorType::InvalidResultReference,
        MethodErrorType::Forbidden,
        MethodErrorType::AccountNotFound,
        MethodErrorType::AccountNotSupportedByMethod,
        MethodErrorType::AccountReadOnly,
        MethodErrorType::RequestTooLarge,
        MethodErrorType::CannotCalculateChanges,
        MethodErrorType::StateMismatch,
        MethodErrorType::AnchorNotFound,
        MethodErrorType::UnsupportedFilter,
        MethodErrorType::UnsupportedSort,
        MethodErrorType::TooManyChanges,
        MethodErrorType::FromAccountNotFound,
        MethodErrorType::FromAccountNotSupportedByMethod,
        MethodErrorType::UnknownDataType,
    ];
}

impl fmt::Display for MethodErrorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A method-level error (RFC 8620 3.6.2), answered as the `["error", {type, description},
/// callId]` invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind}{}", .description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
pub struct MethodError {
    /// The error type.
    #[serde(rename = "type")]
    pub kind: MethodErrorType,
    /// A human-readable description (optional in the RFC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl MethodError {
    /// An error without description.
    pub fn new(kind: MethodErrorType) -> Self {
        Self {
            kind,
            description: None,
        }
    }

    /// An error with a description.
    pub fn with_description(kind: MethodErrorType, description: impl Into<String>) -> Self {
        Self {
            kind,
            description: Some(description.into()),
        }
    }

    /// `invalidArguments` with a description.
    pub fn invalid_arguments(description: impl Into<String>) -> Self {
        Self::with_description(MethodErrorType::InvalidArguments, description)
    }

    /// `invalidResultReference` with a description.
    pub fn invalid_result_reference(description: impl Into<String>) -> Self {
        Self::with_description(MethodErrorType::InvalidResultReference, description)
    }

    /// `unsupportedFilter` with a description.
    pub fn unsupported_filter(description: impl Into<String>) -> Self {
        Self::with_description(MethodErrorType::UnsupportedFilter, description)
    }

    /// `unsupportedSort` with a description.
    pub fn unsupported_sort(description: impl Into<String>) -> Self {
        Self::with_description(MethodErrorType::UnsupportedSort, description)
    }

    /// `serverFail` with a description.
    pub fn server_fail(description: impl Into<String>) -> Self {
        Self::with_description(MethodErrorType::ServerFail, description)
    }

    /// The arguments object of the error response: `{"type": ..., "description": ...}`.
    pub fn to_arguments(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("type".into(), Value::String(self.kind.as_str().into()));
        if let Some(d) = &self.description {
            m.insert("description".into(), Value::String(d.clone()));
        }
        m
    }

    /// The response invocation `["error", {...}, callId]` (RFC 8620 3.6.2).
    pub fn into_invocation(self, call_id: impl Into<String>) -> Invocation {
        Invocation::new("error", self.to_arguments(), call_id)
    }
}

/// The `type` of a SetError (RFC 8620 5.3, 5.4; RFC 8621 2.5, 4.6, 4.8, 6.3, 7.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SetErrorType {
    /// 5.3: an ACL or other permission forbids the change.
    Forbidden,
    /// 5.3: the change would exceed a server-defined quota.
    OverQuota,
    /// 5.3: the object would exceed a size limit (RFC 8621 7.5 adds `maxSize`).
    TooLarge,
    /// 5.3: too many objects of this type created recently.
    RateLimit,
    /// 5.3: the id to update or destroy does not exist.
    NotFound,
    /// 5.3: the PatchObject is invalid.
    InvalidPatch,
    /// 5.3: the object was both updated and destroyed in the same call.
    WillDestroy,
    /// 5.3: a property is invalid; `properties` names which.
    InvalidProperties,
    /// 5.3: a singleton cannot be created or destroyed.
    Singleton,
    /// 5.4 /copy, RFC 8621 4.8 Email/import: the object already exists (`existingId`).
    AlreadyExists,
    /// RFC 8621 2.5: the Mailbox has child Mailboxes.
    MailboxHasChild,
    /// RFC 8621 2.5: the Mailbox has Emails and `onDestroyRemoveEmails` is false.
    MailboxHasEmail,
    /// RFC 8621 4.6: a referenced blob does not exist (`notFound`).
    BlobNotFound,
    /// RFC 8621 4.6: more keywords than the server allows.
    TooManyKeywords,
    /// RFC 8621 4.6: more mailboxes per Email than the server allows.
    TooManyMailboxes,
    /// RFC 8621 4.8, 7.5: the Email is not valid for import or sending.
    InvalidEmail,
    /// RFC 8621 7.5: too many recipients (`maxRecipients`).
    TooManyRecipients,
    /// RFC 8621 7.5: the envelope has no recipients.
    NoRecipients,
    /// RFC 8621 7.5: some recipients are invalid (`invalidRecipients`).
    InvalidRecipients,
    /// RFC 8621 7.5: the user may not send with this envelope MAIL FROM.
    ForbiddenMailFrom,
    /// RFC 8621 6.3, 7.5: the user may not use this From address.
    ForbiddenFrom,
    /// RFC 8621 7.5: the user may not send at all.
    ForbiddenToSend,
    /// RFC 8621 7.5: the submission can no longer be cancelled.
    CannotUnsend,
}

impl SetErrorType {
    /// The wire name, e.g. `invalidProperties`.
    pub fn as_str(self) -> &'static str {
        use SetErrorType::*;
        match self {
            Forbidden => "forbidden",
            OverQuota => "overQuota",
            TooLarge => "tooLarge",
            RateLimit => "rateLimit",
            NotFound => "notFound",
            InvalidPatch => "invalidPatch",
            WillDestroy => "willDestroy",
            InvalidProperties => "invalidProperties",
            Singleton => "singleton",
            AlreadyExists => "alreadyExists",
            MailboxHasChild => "mailboxHasChild",
            MailboxHasEmail => "mailboxHasEmail",
            BlobNotFound => "blobNotFound",
            TooManyKeywords => "tooManyKeywords",
            TooManyMailboxes => "tooManyMailboxes",
            InvalidEmail => "invalidEmail",
            TooManyRecipients => "tooManyRecipients",
            NoRecipients => "noRecipients",
            InvalidRecipients => "invalidRecipients",
            ForbiddenMailFrom => "forbiddenMailFrom",
            ForbiddenFrom => "forbiddenFrom",
            ForbiddenToSend => "forbiddenToSend",
            CannotUnsend => "cannotUnsend",
        }
    }

    /// Every type, for exhaustive tests.
    pub const ALL: &'static [SetErrorType] = &[
        SetErrorType::Forbidden,
        SetErrorType::OverQuota,
        SetErrorType::TooLarge,
        SetErrorType::RateLimit,
        SetErrorType::NotFound,
        SetErrorType::InvalidPatch,
        SetErrorType::WillDestroy,
        SetErrorType::InvalidProperties,
        SetErrorType::Singleton,
        SetErrorType::AlreadyExists,
        SetErrorType::MailboxHasChild,
        SetErrorType::MailboxHasEmail,
        SetErrorType::BlobNotFound,
        SetErrorType::TooManyKeywords,
        SetErrorType::TooManyMailboxes,
        SetErrorType::InvalidEmail,
        SetErrorType::TooManyRecipients,
        SetErrorType::NoRecipients,
        SetErrorType::InvalidRecipients,
        SetErrorType::ForbiddenMailFrom,
        SetErrorType::ForbiddenFrom,
        SetErrorType::ForbiddenToSend,
        SetErrorType::CannotUnsend,
    ];
}

impl fmt::Display for SetErrorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why one create, update or destroy of a `/set` failed (RFC 8620 5.3), with the extra
/// properties some types carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetError {
    /// The error type.
    #[serde(rename = "type")]
    pub kind: SetErrorType,
    /// A human-readable description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `invalidProperties`: the properties that were invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<Vec<String>>,
    /// `alreadyExists` (RFC 8620 5.4): the id of the existing object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing_id: Option<Id>,
    /// `blobNotFound` (RFC 8621 4.6): the blob ids that were not found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_found: Option<Vec<Id>>,
    /// `tooLarge` on EmailSubmission (RFC 8621 7.5): the maximum size in octets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<u64>,
    /// `tooManyRecipients` (RFC 8621 7.5): the maximum number of recipients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_recipients: Option<u64>,
    /// `invalidRecipients` (RFC 8621 7.5): the recipient addresses that were invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_recipients: Option<Vec<String>>,
}

impl SetError {
    /// A SetError of `kind` with no extra properties.
    pub fn new(kind: SetErrorType) -> Self {
        Self {
            kind,
            description: None,
            properties: None,
            existing_id: None,
            not_found: None,
            max_size: None,
            max_recipients: None,
            invalid_recipients: None,
        }
    }

    /// Adds a description.
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// `invalidProperties` naming `properties`.
    pub fn invalid_properties<I, S>(properties: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            properties: Some(properties.into_iter().map(Into::into).collect()),
            ..Self::new(SetErrorType::InvalidProperties)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_error_bodies() {
        // RFC 8620 3.6.1 examples.
        let e = RequestError::unknown_capability(
            "The Request object used capability 'https://example.com/apis/foobar', which is not supported by this server.",
        );
        let v: Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(
            v,
            json!({
                "type": "urn:ietf:params:jmap:error:unknownCapability",
                "status": 400,
                "detail": "The Request object used capability 'https://example.com/apis/foobar', which is not supported by this server."
            })
        );
        let e = RequestError::limit(
            "maxSizeRequest",
            "The request is larger than the server is willing to process.",
        );
        let v: Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(
            v,
            json!({
                "type": "urn:ietf:params:jmap:error:limit",
                "limit": "maxSizeRequest",
                "status": 400,
                "detail": "The request is larger than the server is willing to process."
            })
        );
        // serde and to_json agree, and the body parses back.
        assert_eq!(serde_json::to_value(&e).unwrap(), v);
        let back: RequestError = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
        for (e, urn) in [
            (
                RequestError::not_json("x"),
                "urn:ietf:params:jmap:error:notJSON",
            ),
            (
                RequestError::not_request("x"),
                "urn:ietf:params:jmap:error:notRequest",
            ),
        ] {
            let v: Value = serde_json::from_str(&e.to_json()).unwrap();
            assert_eq!(v["type"], urn);
            assert_eq!(v["status"], 400);
            assert!(v.get("limit").is_none());
            assert_eq!(serde_json::to_value(e.kind).unwrap(), urn);
        }
    }

    #[test]
    fn method_error_names_match_serde() {
        for t in MethodErrorType::ALL {
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
            let back: MethodErrorType = serde_json::from_value(json!(t.as_str())).unwrap();
            assert_eq!(back, *t);
        }
        assert_eq!(MethodErrorType::ALL.len(), 20);
    }

    #[test]
    fn set_error_names_match_serde() {
        for t in SetErrorType::ALL {
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
        assert_eq!(SetErrorType::ALL.len(), 23);
    }

    #[test]
    fn method_error_invocation() {
        let inv = MethodError::invalid_arguments("missing accountId").into_invocation("c1");
        assert_eq!(
            serde_json::to_value(&inv).unwrap(),
            json!(["error", {"type": "invalidArguments", "description": "missing accountId"}, "c1"])
        );
        let inv = MethodError::new(MethodErrorType::UnknownMethod).into_invocation("c2");
        assert_eq!(
            serde_json::to_value(&inv).unwrap(),
            json!(["error", {"type": "unknownMethod"}, "c2"])
        );
        assert_eq!(
            MethodError::unsupported_sort("size").to_string(),
            "unsupportedSort: size"
        );
        assert_eq!(
            MethodError::new(MethodErrorType::ServerFail).to_string(),
            "serverFail"
        );
    }

    #[test]
    fn set_error_shape() {
        let e = SetError::invalid_properties(["name", "parentId"]).with_description("bad");
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"type": "invalidProperties", "description": "bad", "properties": ["name", "parentId"]})
        );
        let mut e = SetError::new(SetErrorType::AlreadyExists);
        e.existing_id = Some(Id::new("M1").unwrap());
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"type": "alreadyExists", "existingId": "M1"})
        );
        let mut e = SetError::new(SetErrorType::InvalidRecipients);
        e.invalid_recipients = Some(vec!["x@".into()]);
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"type": "invalidRecipients", "invalidRecipients": ["x@"]})
        );
    }
}

//! `/changes` (RFC 8620 5.2).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::MethodError;
use crate::id::Id;
use crate::method::{NoExtra, parse_args};
use crate::state::State;

/// The arguments of `Foo/changes` (RFC 8620 5.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChangesRequest {
    /// The account to use.
    pub account_id: Id,
    /// The state the client has.
    pub since_state: State,
    /// The most ids to return; must be positive when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_changes: Option<u64>,
}

impl ChangesRequest {
    /// Parses the arguments. RFC 8620 5.2: a `maxChanges` of 0 is `invalidArguments`.
    pub fn parse(args: Map<String, Value>) -> Result<Self, MethodError> {
        let r: Self = parse_args(args)?;
        if r.max_changes == Some(0) {
            return Err(MethodError::invalid_arguments(
                "maxChanges must be a positive integer",
            ));
        }
        Ok(r)
    }
}

/// The response of `Foo/changes` (RFC 8620 5.2), plus the data type's own properties
/// (`X`; Mailbox/changes adds `updatedProperties`, RFC 8621 2.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangesResponse<X = NoExtra> {
    /// The account used.
    pub account_id: Id,
    /// The `sinceState` of the request.
    pub old_state: State,
    /// The state the client is at after applying these changes.
    pub new_state: State,
    /// Whether more changes remain after `newState`.
    pub has_more_changes: bool,
    /// Ids created since the old state.
    pub created: Vec<Id>,
    /// Ids updated since the old state.
    pub updated: Vec<Id>,
    /// Ids destroyed since the old state.
    pub destroyed: Vec<Id>,
    /// The data type's extra response properties.
    #[serde(flatten)]
    pub extra: X,
}

impl<X> ChangesResponse<X> {
    /// The same response with the data type's extra properties `extra` (e.g. Mailbox's
    /// `updatedProperties`, RFC 8621 2.2) in place of `X`.
    pub fn with_extra<Y>(self, extra: Y) -> ChangesResponse<Y> {
        ChangesResponse {
            account_id: self.account_id,
            old_state: self.old_state,
            new_state: self.new_state,
            has_more_changes: self.has_more_changes,
            created: self.created,
            updated: self.updated,
            destroyed: self.destroyed,
            extra,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::MethodErrorType;
    use serde_json::json;

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn with_extra_keeps_every_field_and_adds_the_types_own() {
        let r: ChangesResponse = ChangesResponse {
            account_id: Id::try_from("a1").unwrap(),
            old_state: State::from("1"),
            new_state: State::from("2"),
            has_more_changes: true,
            created: vec![Id::try_from("m1").unwrap()],
            updated: vec![],
            destroyed: vec![Id::try_from("m2").unwrap()],
            extra: NoExtra::default(),
        };
        let mut expected = serde_json::to_value(&r).unwrap();
        expected["updatedProperties"] = json!(["unreadEmails"]);
        let extra = crate::mail::MailboxChangesExtra {
            updated_properties: Some(vec!["unreadEmails".into()]),
        };
        assert_eq!(serde_json::to_value(r.with_extra(extra)).unwrap(), expected);
    }

    #[test]
    fn parse_changes() {
        let r = ChangesRequest::parse(args(json!({"accountId": "A1", "sinceState": "abcdef"})))
            .unwrap();
        assert_eq!(r.since_state.as_str(), "abcdef");
        assert_eq!(r.max_changes, None);
        let r = ChangesRequest::parse(args(
            json!({"accountId": "A1", "sinceState": "1", "maxChanges": 50}),
        ))
        .unwrap();
        assert_eq!(r.max_changes, Some(50));
        for v in [
            json!({"accountId": "A1", "sinceState": "1", "maxChanges": 0}),
            json!({"accountId": "A1", "sinceState": "1", "maxChanges": -1}),
            json!({"accountId": "A1"}),
            json!({"accountId": "A1", "sinceState": 1}),
            json!({"accountId": "A1", "sinceState": "1", "x": 1}),
        ] {
            assert_eq!(
                ChangesRequest::parse(args(v)).unwrap_err().kind,
                MethodErrorType::InvalidArguments
            );
        }
    }

    #[test]
    fn rfc_response_shape() {
        // RFC 8620 3.7, the Foo/changes response.
        let v = json!({
            "accountId": "A1", "oldState": "abcdef", "newState": "123456",
            "hasMoreChanges": false, "created": ["f1", "f4"], "updated": [], "destroyed": []
        });
        let r: ChangesResponse = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(r.created.len(), 2);
        assert_eq!(serde_json::to_value(&r).unwrap(), v);
    }
}

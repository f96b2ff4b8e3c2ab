//! The Response object (RFC 8620 3.4).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::id::Id;
use crate::request::Invocation;
use crate::state::State;

/// A JMAP Response (RFC 8620 3.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    /// The responses to the method calls, in order; a call may give several.
    pub method_responses: Vec<Invocation>,
    /// RFC 8620 3.4: present only if the request had `createdIds`; then it holds those
    /// plus every id created by this request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_ids: Option<HashMap<String, Id>>,
    /// The current Session object state (RFC 8620 2), so clients notice a stale Session.
    pub session_state: State,
}

impl Response {
    /// An empty response for a request that did (`Some`) or did not (`None`) carry
    /// `createdIds`.
    pub fn new(session_state: State, created_ids: Option<HashMap<String, Id>>) -> Self {
        Self {
            method_responses: Vec::new(),
            created_ids,
            session_state,
        }
    }

    /// Appends one method response.
    pub fn push(&mut self, invocation: Invocation) {
        self.method_responses.push(invocation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn rfc_example_response() {
        // RFC 8620 3.4.1.
        let text = r#"{
          "methodResponses": [
            [ "method1", { "arg1": 3, "arg2": "foo" }, "c1" ],
            [ "method2", { "isBlah": true }, "c2" ],
            [ "anotherResponseFromMethod2", { "data": 10, "yetmoredata": "Hello" }, "c2"],
            [ "error", { "type":"unknownMethod" }, "c3" ]
          ],
          "sessionState": "75128aab4b1b"
        }"#;
        let r: Response = serde_json::from_str(text).unwrap();
        assert_eq!(r.method_responses.len(), 4);
        assert_eq!(r.method_responses[3].name, "error");
        assert_eq!(r.session_state.as_str(), "75128aab4b1b");
        assert_eq!(r.created_ids, None);
        let back = serde_json::to_value(&r).unwrap();
        assert_eq!(back, serde_json::from_str::<Value>(text).unwrap());
        // No createdIds key at all when the request had none.
        assert!(back.get("createdIds").is_none());
    }

    #[test]
    fn created_ids_present_when_given() {
        let mut ids = HashMap::new();
        ids.insert("k1".to_string(), Id::new("M7").unwrap());
        let mut r = Response::new(State::from("s1"), Some(ids));
        r.push(Invocation::new("Mailbox/set", serde_json::Map::new(), "0"));
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({
                "methodResponses": [["Mailbox/set", {}, "0"]],
                "createdIds": {"k1": "M7"},
                "sessionState": "s1"
            })
        );
    }
}

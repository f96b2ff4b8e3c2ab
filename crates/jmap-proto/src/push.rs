//! The push messages: StateChange (RFC 8620 7.1), as sent over EventSource (RFC 8620
//! 7.3), to a PushSubscription's URL (RFC 8620 7.2) and over a WebSocket (RFC 8887 4.3.5,
//! which adds `pushState`); and the PushVerification a new subscription's URL gets first
//! (RFC 8620 7.2.2).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::id::Id;
use crate::state::State;

/// RFC 8620 7.1: `{"@type": "StateChange", "changed": {accountId: {TypeName: state}}}`.
///
/// `changed` holds, per account that moved, the data types that changed with the
/// account's new state for each. A type name is kept as text: the names a server pushes
/// are its own data types (RFC 8620 7.1 names the types of any capability, and a
/// client ignores those it does not know).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "@type",
    rename = "StateChange",
    rename_all = "camelCase",
    try_from = "Tagged"
)]
pub struct StateChange {
    /// Per account id, per type name, the state the type has now.
    pub changed: BTreeMap<Id, BTreeMap<String, State>>,
    /// RFC 8887 4.3.5: on a WebSocket, the push state a client may resume from after a
    /// reconnection; absent on the other channels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_state: Option<String>,
}

/// What a StateChange reads as, `@type` included: serde's `tag` on a struct writes the
/// tag but does not check it when reading, and any other `@type` is another message.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Tagged {
    #[serde(rename = "@type")]
    kind: String,
    changed: BTreeMap<Id, BTreeMap<String, State>>,
    #[serde(default)]
    push_state: Option<String>,
}

impl TryFrom<Tagged> for StateChange {
    type Error = String;

    fn try_from(t: Tagged) -> Result<Self, String> {
        if t.kind != "StateChange" {
            return Err(format!("@type {:?} is not StateChange", t.kind));
        }
        Ok(StateChange {
            changed: t.changed,
            push_state: t.push_state,
        })
    }
}

impl StateChange {
    /// Whether nothing changed (no account listed).
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty()
    }
}

/// RFC 8620 7.2.2: `{"@type": "PushVerification", "pushSubscriptionId", "verificationCode"}`,
/// sent to a PushSubscription's URL once when it is created; the client proves it got it
/// by setting `verificationCode` on the subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "@type", rename = "PushVerification", rename_all = "camelCase")]
pub struct PushVerification {
    /// The id of the PushSubscription this verifies.
    pub push_subscription_id: Id,
    /// The code the client sets on the subscription.
    pub verification_code: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn sample(push_state: Option<&str>) -> StateChange {
        let mut types = BTreeMap::new();
        types.insert("Email".to_string(), State::from("d35ecb040aab"));
        types.insert("EmailDelivery".to_string(), State::from("428d565f2440"));
        let mut changed = BTreeMap::new();
        changed.insert(Id::try_from("a3123").unwrap(), types);
        StateChange {
            changed,
            push_state: push_state.map(str::to_owned),
        }
    }

    #[test]
    fn serializes_as_rfc_8620_7_1_shows_it() {
        let v = serde_json::to_value(sample(None)).unwrap();
        assert_eq!(
            v,
            json!({
                "@type": "StateChange",
                "changed": {
                    "a3123": {"Email": "d35ecb040aab", "EmailDelivery": "428d565f2440"}
                }
            })
        );
    }

    #[test]
    fn the_websocket_form_carries_push_state() {
        let v = serde_json::to_value(sample(Some("a3123:7"))).unwrap();
        assert_eq!(v["@type"], "StateChange");
        assert_eq!(v["pushState"], "a3123:7");
        assert_eq!(v.as_object().map(|m| m.len()), Some(3));
    }

    #[test]
    fn push_verification_serializes_as_rfc_8620_7_2_2_shows_it() {
        let v = PushVerification {
            push_subscription_id: Id::try_from("P43").unwrap(),
            verification_code: "da1f097b11ca17f06424e30bf02bfa67".into(),
        };
        assert_eq!(
            serde_json::to_value(v).unwrap(),
            json!({
                "@type": "PushVerification",
                "pushSubscriptionId": "P43",
                "verificationCode": "da1f097b11ca17f06424e30bf02bfa67"
            })
        );
    }

    #[test]
    fn round_trips() {
        for c in [sample(None), sample(Some("p1")), StateChange::default()] {
            let text = serde_json::to_string(&c).unwrap();
            let back: StateChange = serde_json::from_str(&text).unwrap();
            assert_eq!(back, c);
        }
    }

    #[test]
    fn another_type_is_not_a_state_change() {
        let v: Value = json!({"@type": "PushVerification", "changed": {}});
        assert!(serde_json::from_value::<StateChange>(v).is_err());
        assert!(serde_json::from_value::<StateChange>(json!({"changed": {}})).is_err());
    }
}

//! `/set` (RFC 8620 5.3).

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{MethodError, MethodErrorType, SetError};
use crate::id::{Id, IdRef};
use crate::method::{NoArgs, parse_args, split_args};
use crate::state::State;

/// The arguments of `Foo/set` (RFC 8620 5.3), plus the data type's own (`X`, e.g.
/// Mailbox/set's `onDestroyRemoveEmails`).
///
/// `update` keys and `destroy` items may be `#creationId` (RFC 8620 5.3), hence
/// [`IdRef`]; `create` keys are the client's creation ids, which are Ids.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SetRequest<X = NoArgs> {
    /// The account to use.
    pub account_id: Id,
    /// If given and not the current state, the call fails with `stateMismatch`.
    pub if_in_state: Option<State>,
    /// Objects to create, by creation id.
    pub create: Option<BTreeMap<Id, Map<String, Value>>>,
    /// PatchObjects (RFC 8620 5.3) by id.
    pub update: Option<BTreeMap<IdRef, Map<String, Value>>>,
    /// Ids to destroy.
    pub destroy: Option<Vec<IdRef>>,
    /// The data type's extra arguments.
    #[serde(flatten)]
    pub extra: X,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Generic {
    account_id: Id,
    #[serde(default)]
    if_in_state: Option<State>,
    #[serde(default)]
    create: Option<BTreeMap<Id, Map<String, Value>>>,
    #[serde(default)]
    update: Option<BTreeMap<IdRef, Map<String, Value>>>,
    #[serde(default)]
    destroy: Option<Vec<IdRef>>,
}

impl<X: DeserializeOwned> SetRequest<X> {
    /// Parses the arguments; anything invalid or unknown is `invalidArguments`.
    pub fn parse(args: Map<String, Value>) -> Result<Self, MethodError> {
        let (generic, extra) = split_args::<X>(
            args,
            &["accountId", "ifInState", "create", "update", "destroy"],
        )?;
        let g: Generic = parse_args(generic)?;
        Ok(Self {
            account_id: g.account_id,
            if_in_state: g.if_in_state,
            create: g.create,
            update: g.update,
            destroy: g.destroy,
            extra,
        })
    }
}

impl<X> SetRequest<X> {
    /// How many objects the call touches, for `maxObjectsInSet`.
    pub fn object_count(&self) -> usize {
        self.create.as_ref().map_or(0, BTreeMap::len)
            + self.update.as_ref().map_or(0, BTreeMap::len)
            + self.destroy.as_ref().map_or(0, Vec::len)
    }

    /// RFC 8620 5.3: `requestTooLarge` beyond `maxObjectsInSet`.
    pub fn check_limit(&self, max_objects_in_set: usize) -> Result<(), MethodError> {
        if self.object_count() > max_objects_in_set {
            return Err(MethodError::with_description(
                MethodErrorType::RequestTooLarge,
                format!("at most {max_objects_in_set} objects per /set"),
            ));
        }
        Ok(())
    }

    /// RFC 8620 5.3: `stateMismatch` when `ifInState` is given and is not `current`.
    pub fn check_state(&self, current: &State) -> Result<(), MethodError> {
        check_if_in_state(self.if_in_state.as_ref(), current)
    }
}

/// RFC 8620 5.3 (and 5.4, 5.5 for `/copy` and `/import`): an `ifInState` the client gave
/// must be the current state, else the whole call is `stateMismatch`.
pub fn check_if_in_state(if_in_state: Option<&State>, current: &State) -> Result<(), MethodError> {
    match if_in_state {
        Some(want) if want != current => Err(MethodError::new(MethodErrorType::StateMismatch)),
        _ => Ok(()),
    }
}

/// The response of `Foo/set` (RFC 8620 5.3). Each map is `null` (`None`) when empty,
/// as the RFC types them `...|null`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetResponse {
    /// The account used.
    pub account_id: Id,
    /// The state before the call, if known.
    pub old_state: Option<State>,
    /// The state after the call.
    pub new_state: State,
    /// Created objects by creation id: the id and any server-set properties.
    #[serde(default)]
    pub created: Option<BTreeMap<Id, Value>>,
    /// Updated ids, each with the server-changed properties or `null`.
    #[serde(default)]
    pub updated: Option<BTreeMap<Id, Option<Value>>>,
    /// Destroyed ids.
    #[serde(default)]
    pub destroyed: Option<Vec<Id>>,
    /// Failed creates by creation id.
    #[serde(default)]
    pub not_created: Option<BTreeMap<Id, SetError>>,
    /// Failed updates by id as the client wrote it.
    #[serde(default)]
    pub not_updated: Option<BTreeMap<IdRef, SetError>>,
    /// Failed destroys by id as the client wrote it.
    #[serde(default)]
    pub not_destroyed: Option<BTreeMap<IdRef, SetError>>,
}

impl SetResponse {
    /// A response with nothing created, updated or destroyed yet.
    pub fn new(account_id: Id, old_state: Option<State>, new_state: State) -> Self {
        Self {
            account_id,
            old_state,
            new_state,
            created: None,
            updated: None,
            destroyed: None,
            not_created: None,
            not_updated: None,
            not_destroyed: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::SetErrorType;
    use serde_json::json;

    fn s(v: Value) -> Result<SetRequest, MethodError> {
        SetRequest::parse(v.as_object().unwrap().clone())
    }

    #[test]
    fn if_in_state_must_be_the_current_state() {
        let now = State::from("s2");
        assert!(
            s(json!({"accountId": "a1"}))
                .unwrap()
                .check_state(&now)
                .is_ok()
        );
        let same = s(json!({"accountId": "a1", "ifInState": "s2"})).unwrap();
        assert!(same.check_state(&now).is_ok());
        let old = s(json!({"accountId": "a1", "ifInState": "s1"})).unwrap();
        let e = old.check_state(&now).unwrap_err();
        assert_eq!(e.kind, MethodErrorType::StateMismatch);
    }

    #[test]
    fn parse_set() {
        let r = s(json!({
            "accountId": "A1",
            "ifInState": "s1",
            "create": {"k1": {"name": "Inbox 2"}},
            "update": {"M1": {"name": "x"}, "#k1": {"sortOrder": 3}},
            "destroy": ["M2", "#k9"]
        }))
        .unwrap();
        assert_eq!(r.if_in_state.as_ref().unwrap().as_str(), "s1");
        assert_eq!(r.create.as_ref().unwrap()["k1"]["name"], "Inbox 2");
        assert!(
            r.update
                .as_ref()
                .unwrap()
                .contains_key(&IdRef::parse("#k1").unwrap())
        );
        assert_eq!(r.destroy.as_ref().unwrap()[1], IdRef::parse("#k9").unwrap());
        assert_eq!(r.object_count(), 5);
        assert!(r.check_limit(5).is_ok());
        assert_eq!(
            r.check_limit(4).unwrap_err().kind,
            MethodErrorType::RequestTooLarge
        );
        let r =
            s(json!({"accountId": "A1", "create": null, "update": null, "destroy": null})).unwrap();
        assert_eq!(r.object_count(), 0);
    }

    #[test]
    fn invalid() {
        for v in [
            json!({"accountId": "A1", "create": {"bad key": {}}}),
            json!({"accountId": "A1", "create": {"k1": 5}}),
            json!({"accountId": "A1", "update": {"M1": []}}),
            json!({"accountId": "A1", "destroy": "M1"}),
            json!({"accountId": "A1", "destroy": ["#"]}),
            json!({"accountId": "A1", "onDestroyRemoveEmails": true}),
            json!({"create": {}}),
        ] {
            assert_eq!(
                s(v.clone()).unwrap_err().kind,
                MethodErrorType::InvalidArguments,
                "{v}"
            );
        }
    }

    #[test]
    fn response_shape() {
        let mut r = SetResponse::new(
            Id::new("A1").unwrap(),
            Some(State::from("1")),
            State::from("2"),
        );
        r.created = Some(BTreeMap::from([(
            Id::new("k1").unwrap(),
            json!({"id": "M9"}),
        )]));
        r.updated = Some(BTreeMap::from([(Id::new("M1").unwrap(), None)]));
        r.not_destroyed = Some(BTreeMap::from([(
            IdRef::parse("#k9").unwrap(),
            SetError::new(SetErrorType::NotFound),
        )]));
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            json!({
                "accountId": "A1", "oldState": "1", "newState": "2",
                "created": {"k1": {"id": "M9"}},
                "updated": {"M1": null},
                "destroyed": null,
                "notCreated": null,
                "notUpdated": null,
                "notDestroyed": {"#k9": {"type": "notFound"}}
            })
        );
        assert_eq!(serde_json::from_value::<SetResponse>(v).unwrap(), r);
    }
}

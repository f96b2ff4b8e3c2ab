//! `/get` (RFC 8620 5.1).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::MethodError;
use crate::id::{Id, IdRef};
use crate::method::{NoArgs, parse_args, split_args};
use crate::state::State;

/// The arguments of `Foo/get` (RFC 8620 5.1), plus the data type's own (`X`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GetRequest<X = NoArgs> {
    /// The account to use.
    pub account_id: Id,
    /// The ids to return; `None` (`null`) for all. An id may be `#creationId`.
    pub ids: Option<Vec<IdRef>>,
    /// The properties to return; `None` for all. `id` is always returned.
    pub properties: Option<Vec<String>>,
    /// The data type's extra arguments (e.g. Email/get's body options).
    #[serde(flatten)]
    pub extra: X,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Generic {
    account_id: Id,
    #[serde(default)]
    ids: Option<Vec<IdRef>>,
    #[serde(default)]
    properties: Option<Vec<String>>,
}

impl<X: DeserializeOwned> GetRequest<X> {
    /// Parses the arguments; anything invalid or unknown is `invalidArguments`.
    pub fn parse(args: Map<String, Value>) -> Result<Self, MethodError> {
        let (generic, extra) = split_args::<X>(args, &["accountId", "ids", "properties"])?;
        let g: Generic = parse_args(generic)?;
        Ok(Self {
            account_id: g.account_id,
            ids: g.ids,
            properties: g.properties,
            extra,
        })
    }
}

impl<X> GetRequest<X> {
    /// The answer to this request (RFC 8620 5.1): its account, the type's `state`, the
    /// objects found and the ids not found, as the response's JSON object.
    pub fn respond(
        &self,
        state: State,
        list: Vec<Value>,
        not_found: Vec<IdRef>,
    ) -> Map<String, Value> {
        GetResponse {
            account_id: self.account_id.clone(),
            state,
            list,
            not_found,
        }
        .into_map()
    }

    /// RFC 8620 5.1: `requestTooLarge` when more ids are asked for than
    /// `maxObjectsInGet`.
    pub fn check_limit(&self, max_objects_in_get: usize) -> Result<(), MethodError> {
        match &self.ids {
            Some(ids) if ids.len() > max_objects_in_get => Err(MethodError::with_description(
                crate::error::MethodErrorType::RequestTooLarge,
                format!("at most {max_objects_in_get} ids per /get"),
            )),
            _ => Ok(()),
        }
    }
}

/// The response of `Foo/get` (RFC 8620 5.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetResponse {
    /// The account used.
    pub account_id: Id,
    /// The state of all data of this type in the account.
    pub state: State,
    /// The objects found, each a JSON object.
    pub list: Vec<Value>,
    /// The requested ids not found (as the client wrote them).
    pub not_found: Vec<IdRef>,
}

impl GetResponse {
    /// The response as its JSON object, the objects of `list` moved rather than copied (as
    /// `serde_json::to_value` would): a list may hold the text of a huge message.
    pub fn into_map(self) -> Map<String, Value> {
        let small = |v: Result<Value, serde_json::Error>| v.unwrap_or(Value::Null);
        let mut m = Map::new();
        m.insert(
            "accountId".into(),
            small(serde_json::to_value(&self.account_id)),
        );
        m.insert("state".into(), small(serde_json::to_value(&self.state)));
        m.insert("list".into(), Value::Array(self.list));
        m.insert(
            "notFound".into(),
            small(serde_json::to_value(&self.not_found)),
        );
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::MethodErrorType;
    use serde_json::json;

    #[test]
    fn into_map_is_the_serialized_response() {
        let r = GetResponse {
            account_id: Id::try_from("a1").unwrap(),
            state: State::from("s7"),
            list: vec![json!({"id": "e1", "subject": "x"})],
            not_found: vec![IdRef::Id(Id::try_from("e9").unwrap())],
        };
        let expected = serde_json::to_value(&r).unwrap();
        assert_eq!(Value::Object(r.into_map()), expected);
    }

    #[test]
    fn respond_answers_for_the_requests_account() {
        let req: GetRequest = GetRequest::parse(args(json!({"accountId": "a1"}))).unwrap();
        let list = vec![json!({"id": "e1"})];
        let not_found = vec![IdRef::Id(Id::try_from("e9").unwrap())];
        let expected = GetResponse {
            account_id: Id::try_from("a1").unwrap(),
            state: State::from("s7"),
            list: list.clone(),
            not_found: not_found.clone(),
        };
        assert_eq!(
            req.respond(State::from("s7"), list, not_found),
            expected.into_map()
        );
    }

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn parse_get() {
        let r = GetRequest::<NoArgs>::parse(args(
            json!({"accountId": "A1", "ids": ["a", "#k"], "properties": ["name"]}),
        ))
        .unwrap();
        assert_eq!(r.account_id, "A1");
        assert_eq!(r.ids.as_ref().unwrap()[1], IdRef::parse("#k").unwrap());
        assert_eq!(r.properties.as_deref(), Some(&["name".to_string()][..]));
        let r = GetRequest::<NoArgs>::parse(args(json!({"accountId": "A1", "ids": null}))).unwrap();
        assert_eq!(r.ids, None);
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"accountId": "A1", "ids": null, "properties": null})
        );
    }

    #[test]
    fn invalid() {
        for v in [
            json!({}),
            json!({"accountId": "A 1"}),
            json!({"accountId": "A1", "ids": "a"}),
            json!({"accountId": "A1", "ids": ["bad id"]}),
            json!({"accountId": "A1", "properties": [1]}),
            json!({"accountId": "A1", "bodyProperties": []}),
        ] {
            let e = GetRequest::<NoArgs>::parse(args(v.clone())).unwrap_err();
            assert_eq!(e.kind, MethodErrorType::InvalidArguments, "{v}");
        }
    }

    #[test]
    fn limit() {
        let r =
            GetRequest::<NoArgs>::parse(args(json!({"accountId": "A1", "ids": ["a", "b", "c"]})))
                .unwrap();
        assert!(r.check_limit(3).is_ok());
        assert_eq!(
            r.check_limit(2).unwrap_err().kind,
            MethodErrorType::RequestTooLarge
        );
    }

    #[test]
    fn response_shape() {
        let r = GetResponse {
            account_id: Id::new("A1").unwrap(),
            state: State::from("s"),
            list: vec![json!({"id": "m1"})],
            not_found: vec![IdRef::parse("m2").unwrap()],
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            json!({"accountId": "A1", "state": "s", "list": [{"id": "m1"}], "notFound": ["m2"]})
        );
        assert_eq!(serde_json::from_value::<GetResponse>(v).unwrap(), r);
    }
}

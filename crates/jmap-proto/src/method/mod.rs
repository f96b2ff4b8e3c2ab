//! The standard methods of RFC 8620 5: arguments and responses of `/get` (5.1),
//! `/changes` (5.2), `/set` (5.3), `/query` (5.5) and `/queryChanges` (5.6), with the
//! filters and comparators of `/query`.
//!
//! Requests are parsed from the arguments map of an [`Invocation`](crate::Invocation),
//! after [`resolve_references`](crate::resolve_references), by each type's `parse`.
//! RFC 8620 3.6.2 makes an argument "of the wrong type, or otherwise invalid" an
//! `invalidArguments` error, so unknown arguments are rejected: a request type carries
//! its data type's extra arguments in a type parameter `X` ([`NoArgs`] when there are
//! none), and whatever the generic and the extra arguments do not claim is refused.

pub mod changes;
pub mod filter;
pub mod get;
pub mod query;
pub mod query_changes;
pub mod set;
pub mod sort;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::error::MethodError;

pub use changes::{ChangesRequest, ChangesResponse};
pub use filter::{
    Filter, FilterCondition, FilterOperator, MAX_FILTER_DEPTH, MAX_FILTER_NODES, Operator,
};
pub use get::{GetRequest, GetResponse};
pub use query::{QueryRequest, QueryResponse};
pub use query_changes::{AddedItem, QueryChangesRequest, QueryChangesResponse};
pub use set::{SetRequest, SetResponse, check_if_in_state};
pub use sort::{Comparator, check_collations};

/// Longest serde message quoted in an `invalidArguments` description.
const MAX_DESCRIPTION: usize = 200;

/// Deserializes method arguments, mapping any failure to `invalidArguments` with a
/// short description (RFC 8620 3.6.2). Unknown arguments are rejected only if `T` says
/// `deny_unknown_fields`.
pub fn parse_args<T: DeserializeOwned>(args: Map<String, Value>) -> Result<T, MethodError> {
    serde_json::from_value(Value::Object(args)).map_err(|e| invalid(&e))
}

/// The same, from a borrowed value (no copy of the arguments).
pub(crate) fn parse_ref<T: DeserializeOwned>(v: &Value) -> Result<T, MethodError> {
    T::deserialize(v).map_err(|e| invalid(&e))
}

pub(crate) fn invalid(e: &serde_json::Error) -> MethodError {
    MethodError::invalid_arguments(short(&e.to_string()))
}

/// Cuts a message to [`MAX_DESCRIPTION`] characters (serde quotes client input).
pub(crate) fn short(s: &str) -> String {
    if s.chars().count() <= MAX_DESCRIPTION {
        return s.to_string();
    }
    let mut out: String = s.chars().take(MAX_DESCRIPTION).collect();
    out.push('…');
    out
}

/// No extra arguments: any argument the generic method does not define is refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

/// No extra response properties (the response counterpart of [`NoArgs`], lenient when
/// read so that a client can parse another server's responses).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoExtra {}

/// Moves the arguments named in `known` out of `args`, then parses what is left as the
/// extra arguments `X` (which must deny unknown fields).
pub(crate) fn split_args<X: DeserializeOwned>(
    mut args: Map<String, Value>,
    known: &[&str],
) -> Result<(Map<String, Value>, X), MethodError> {
    let mut generic = Map::new();
    for k in known {
        if let Some(v) = args.remove(*k) {
            generic.insert((*k).to_string(), v);
        }
    }
    let extra = parse_args::<X>(args)?;
    Ok((generic, extra))
}

/// Reads `null` as the default value: RFC 8620 argument lists give defaults, and some
/// clients send `null` for "not given".
pub(crate) fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

/// Tells an absent property (`None`) from an explicit `null` (`Some(None)`), as the
/// Mailbox filter's `parentId` and `role` need (RFC 8621 2.3).
pub(crate) fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::MethodErrorType;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct A {
        #[allow(dead_code)]
        account_id: String,
    }

    #[test]
    fn parse_args_maps_to_invalid_arguments() {
        let m = |v: Value| v.as_object().unwrap().clone();
        assert!(parse_args::<A>(m(json!({"accountId": "x"}))).is_ok());
        let e = parse_args::<A>(m(json!({}))).unwrap_err();
        assert_eq!(e.kind, MethodErrorType::InvalidArguments);
        assert!(e.description.unwrap().contains("accountId"));
        let e = parse_args::<A>(m(json!({"accountId": "x", "bogus": 1}))).unwrap_err();
        assert!(e.description.unwrap().contains("bogus"));
        let long = "k".repeat(5000);
        let e = parse_args::<A>(m(json!({"accountId": "x", long: 1}))).unwrap_err();
        assert!(e.description.unwrap().chars().count() <= MAX_DESCRIPTION + 1);
    }

    #[test]
    fn no_args_refuses_anything() {
        let e = split_args::<NoArgs>(json!({"a": 1, "b": 2}).as_object().unwrap().clone(), &["a"])
            .unwrap_err();
        assert!(e.description.unwrap().contains('b'));
        let (g, _) =
            split_args::<NoArgs>(json!({"a": 1}).as_object().unwrap().clone(), &["a"]).unwrap();
        assert_eq!(g["a"], 1);
    }
}

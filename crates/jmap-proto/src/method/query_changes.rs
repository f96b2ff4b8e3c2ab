//! `/queryChanges` (RFC 8620 5.6).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::MethodError;
use crate::id::Id;
use crate::method::filter::{Filter, FilterCondition};
use crate::method::query::parse_filter_sort;
use crate::method::sort::Comparator;
use crate::method::{NoArgs, null_default, parse_args, split_args};
use crate::state::State;

/// The arguments of `Foo/queryChanges` (RFC 8620 5.6), plus the data type's own (`X`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryChangesRequest<C, X = NoArgs> {
    /// The account to use.
    pub account_id: Id,
    /// The filter of the original query.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter<C>>,
    /// The sort of the original query.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sort: Option<Vec<Comparator>>,
    /// The `queryState` the client has.
    pub since_query_state: State,
    /// The most changes (removed plus added) to return, else `tooManyChanges`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_changes: Option<u64>,
    /// The last id the client has cached; later changes may be omitted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub up_to_id: Option<Id>,
    /// Whether to return the new total.
    pub calculate_total: bool,
    /// The data type's extra arguments.
    #[serde(flatten)]
    pub extra: X,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Generic {
    account_id: Id,
    since_query_state: State,
    #[serde(default)]
    max_changes: Option<u64>,
    #[serde(default)]
    up_to_id: Option<Id>,
    #[serde(default, deserialize_with = "null_default")]
    calculate_total: bool,
}

const KNOWN: &[&str] = &[
    "accountId",
    "filter",
    "sort",
    "sinceQueryState",
    "maxChanges",
    "upToId",
    "calculateTotal",
];

impl<C: FilterCondition, X: DeserializeOwned> QueryChangesRequest<C, X> {
    /// Parses the arguments, with the same error order as
    /// [`QueryRequest::parse`](crate::method::QueryRequest::parse).
    pub fn parse(args: Map<String, Value>) -> Result<Self, MethodError> {
        let (mut generic, extra) = split_args::<X>(args, KNOWN)?;
        let filter_value = generic.remove("filter");
        let sort_value = generic.remove("sort");
        let g: Generic = parse_args(generic)?;
        let (filter, sort) = parse_filter_sort::<C>(filter_value, sort_value)?;
        Ok(Self {
            account_id: g.account_id,
            filter,
            sort,
            since_query_state: g.since_query_state,
            max_changes: g.max_changes,
            up_to_id: g.up_to_id,
            calculate_total: g.calculate_total,
            extra,
        })
    }
}

/// An id added to the results and its new index (RFC 8620 5.6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddedItem {
    /// The id.
    pub id: Id,
    /// Its index in the new results.
    pub index: u64,
}

/// The response of `Foo/queryChanges` (RFC 8620 5.6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryChangesResponse {
    /// The account used.
    pub account_id: Id,
    /// The `sinceQueryState` of the request.
    pub old_query_state: State,
    /// The current query state.
    pub new_query_state: State,
    /// The new total; only when `calculateTotal` was true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// Ids no longer at their old index (removed, or moved and listed in `added`).
    pub removed: Vec<Id>,
    /// Ids at a new index, sorted by index.
    pub added: Vec<AddedItem>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::MethodErrorType;
    use serde_json::json;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct T {
        #[serde(default)]
        text: Option<String>,
    }
    impl FilterCondition for T {
        const PROPERTIES: &'static [&'static str] = &["text"];
        const SORT_PROPERTIES: &'static [&'static str] = &["name"];
    }

    fn q(v: Value) -> Result<QueryChangesRequest<T>, MethodError> {
        QueryChangesRequest::parse(v.as_object().unwrap().clone())
    }

    #[test]
    fn parse_query_changes() {
        let r = q(
            json!({"accountId": "A1", "sinceQueryState": "q1", "maxChanges": 10, "upToId": "m5",
            "calculateTotal": true, "filter": {"text": "a"}, "sort": [{"property": "name"}]}),
        )
        .unwrap();
        assert_eq!(r.since_query_state.as_str(), "q1");
        assert_eq!((r.max_changes, r.calculate_total), (Some(10), true));
        assert_eq!(r.up_to_id.unwrap(), "m5");
        assert!(r.filter.is_some() && r.sort.is_some());
        let kind = |v: Value| q(v).unwrap_err().kind;
        assert_eq!(
            kind(json!({"accountId": "A1"})),
            MethodErrorType::InvalidArguments
        );
        assert_eq!(
            kind(json!({"accountId": "A1", "sinceQueryState": "q", "position": 0})),
            MethodErrorType::InvalidArguments
        );
        assert_eq!(
            kind(json!({"accountId": "A1", "sinceQueryState": "q", "filter": {"x": 1}})),
            MethodErrorType::UnsupportedFilter
        );
    }

    #[test]
    fn response_shape() {
        let r = QueryChangesResponse {
            account_id: Id::new("A1").unwrap(),
            old_query_state: State::from("q1"),
            new_query_state: State::from("q2"),
            total: Some(3),
            removed: vec![Id::new("m1").unwrap()],
            added: vec![AddedItem {
                id: Id::new("m1").unwrap(),
                index: 0,
            }],
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            json!({"accountId": "A1", "oldQueryState": "q1", "newQueryState": "q2", "total": 3,
            "removed": ["m1"], "added": [{"id": "m1", "index": 0}]})
        );
        assert_eq!(
            serde_json::from_value::<QueryChangesResponse>(v).unwrap(),
            r
        );
    }
}

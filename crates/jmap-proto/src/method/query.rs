//! `/query` (RFC 8620 5.5).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::MethodError;
use crate::id::Id;
use crate::method::filter::{Filter, FilterCondition};
use crate::method::sort::{Comparator, parse_sort};
use crate::method::{NoArgs, null_default, parse_args, split_args};
use crate::state::State;

/// The arguments of `Foo/query` (RFC 8620 5.5) for condition type `C`, plus the data
/// type's own (`X`, e.g. Email/query's `collapseThreads`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryRequest<C, X = NoArgs> {
    /// The account to use.
    pub account_id: Id,
    /// Which objects to include; all if absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter<C>>,
    /// The order; server-defined if absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sort: Option<Vec<Comparator>>,
    /// Zero-based index of the first id to return; negative counts from the end.
    pub position: i64,
    /// An id to start from instead of `position`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anchor: Option<Id>,
    /// Offset from the anchor; may be negative.
    pub anchor_offset: i64,
    /// The most ids to return.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// Whether to return the total number of results.
    pub calculate_total: bool,
    /// The data type's extra arguments.
    #[serde(flatten)]
    pub extra: X,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Generic {
    account_id: Id,
    #[serde(default, deserialize_with = "null_default")]
    position: i64,
    #[serde(default)]
    anchor: Option<Id>,
    #[serde(default, deserialize_with = "null_default")]
    anchor_offset: i64,
    // RFC 8620 5.5: a negative limit MUST be invalidArguments; u64 refuses it.
    #[serde(default)]
    limit: Option<u64>,
    #[serde(default, deserialize_with = "null_default")]
    calculate_total: bool,
}

const KNOWN: &[&str] = &[
    "accountId",
    "filter",
    "sort",
    "position",
    "anchor",
    "anchorOffset",
    "limit",
    "calculateTotal",
];

/// A parsed filter and sort.
pub(crate) type FilterSort<C> = (Option<Filter<C>>, Option<Vec<Comparator>>);

/// Parses the `filter` and `sort` arguments (taken out of the map beforehand, so the
/// rest can go through serde), filter first.
pub(crate) fn parse_filter_sort<C: FilterCondition>(
    filter: Option<Value>,
    sort: Option<Value>,
) -> Result<FilterSort<C>, MethodError> {
    let filter = match filter {
        None | Some(Value::Null) => None,
        Some(v) => Some(Filter::parse(&v)?),
    };
    let sort = match sort {
        None | Some(Value::Null) => None,
        Some(v) => Some(parse_sort::<C>(&v)?),
    };
    Ok((filter, sort))
}

impl<C: FilterCondition, X: DeserializeOwned> QueryRequest<C, X> {
    /// Parses the arguments. Errors, checked in this order: unknown or ill-typed
    /// arguments are `invalidArguments`; then the filter (`unsupportedFilter` for what it
    /// cannot process, see [`Filter::parse`]); then the sort (`unsupportedSort`).
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
            position: g.position,
            anchor: g.anchor,
            anchor_offset: g.anchor_offset,
            limit: g.limit,
            calculate_total: g.calculate_total,
            extra,
        })
    }
}

/// The response of `Foo/query` (RFC 8620 5.5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryResponse {
    /// The account used.
    pub account_id: Id,
    /// The state of this query's results, for `/queryChanges`.
    pub query_state: State,
    /// Whether `/queryChanges` can compute changes from this state.
    pub can_calculate_changes: bool,
    /// The zero-based index of the first id returned.
    pub position: u64,
    /// The ids, in order.
    pub ids: Vec<Id>,
    /// The total number of results; only when `calculateTotal` was true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// The limit the server applied, if it lowered the client's or set its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::MethodErrorType;
    use serde_json::json;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct T {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    }
    impl FilterCondition for T {
        const PROPERTIES: &'static [&'static str] = &["text"];
        const SORT_PROPERTIES: &'static [&'static str] = &["name"];
    }

    fn q(v: Value) -> Result<QueryRequest<T>, MethodError> {
        QueryRequest::parse(v.as_object().unwrap().clone())
    }

    #[test]
    fn defaults() {
        let r = q(json!({"accountId": "A1"})).unwrap();
        assert_eq!(
            (r.position, r.anchor_offset, r.calculate_total),
            (0, 0, false)
        );
        assert_eq!(
            (r.filter, r.sort, r.anchor, r.limit),
            (None, None, None, None)
        );
        // null means "not given".
        let r = q(
            json!({"accountId": "A1", "position": null, "filter": null, "sort": null,
            "anchor": null, "limit": null, "calculateTotal": null, "anchorOffset": null}),
        )
        .unwrap();
        assert_eq!(r.position, 0);
    }

    #[test]
    fn full() {
        let r = q(json!({"accountId": "A1", "filter": {"text": "x"}, "sort": [{"property": "name", "isAscending": false}],
            "position": -5, "anchor": "m1", "anchorOffset": -2, "limit": 10, "calculateTotal": true})).unwrap();
        assert_eq!(
            r.filter,
            Some(Filter::Condition(T {
                text: Some("x".into())
            }))
        );
        assert_eq!(r.sort.as_ref().unwrap()[0], Comparator::desc("name"));
        assert_eq!(
            (r.position, r.anchor_offset, r.limit, r.calculate_total),
            (-5, -2, Some(10), true)
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["sort"][0]["isAscending"], false);
        assert_eq!(v["filter"], json!({"text": "x"}));
    }

    #[test]
    fn errors() {
        let kind = |v: Value| q(v).unwrap_err().kind;
        use MethodErrorType::*;
        assert_eq!(
            kind(json!({"accountId": "A1", "limit": -1})),
            InvalidArguments
        );
        assert_eq!(
            kind(json!({"accountId": "A1", "position": 1.5})),
            InvalidArguments
        );
        assert_eq!(
            kind(json!({"accountId": "A1", "collapseThreads": true})),
            InvalidArguments
        );
        assert_eq!(kind(json!({"limit": 1})), InvalidArguments);
        assert_eq!(
            kind(json!({"accountId": "A1", "filter": {"color": "red"}})),
            UnsupportedFilter
        );
        assert_eq!(
            kind(json!({"accountId": "A1", "sort": [{"property": "color"}]})),
            UnsupportedSort
        );
        assert_eq!(
            kind(json!({"accountId": "A1", "sort": {"property": "name"}})),
            InvalidArguments
        );
        // Ill-typed generic arguments are reported before the filter.
        assert_eq!(
            kind(json!({"accountId": "A1", "limit": "x", "filter": {"color": 1}})),
            InvalidArguments
        );
    }

    #[test]
    fn response_shape() {
        let r = QueryResponse {
            account_id: Id::new("A1").unwrap(),
            query_state: State::from("q1"),
            can_calculate_changes: true,
            position: 0,
            ids: vec![Id::new("m1").unwrap()],
            total: None,
            limit: None,
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"accountId": "A1", "queryState": "q1", "canCalculateChanges": true, "position": 0, "ids": ["m1"]})
        );
        let with_total = QueryResponse {
            total: Some(101),
            limit: Some(10),
            ..r
        };
        let v = serde_json::to_value(&with_total).unwrap();
        assert_eq!(
            (v["total"].as_u64(), v["limit"].as_u64()),
            (Some(101), Some(10))
        );
    }
}

//! The `filter` argument of `/query` (RFC 8620 5.5): a tree of FilterOperators over
//! data-type-specific FilterConditions, parsed with explicit bounds.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, de};
use serde_json::Value;

use crate::error::MethodError;
use crate::method::parse_ref;
use crate::method::sort::Comparator;

/// Deepest filter accepted, counting every FilterOperator and the condition at the
/// bottom (a bare condition has depth 1). Real clients nest two or three levels; the bound
/// keeps parsing (and any later recursive evaluation) far from the stack's limits.
///
/// Through HTTP this bound is not the first one met: each filter level is two JSON
/// levels (object and `conditions` array) inside the four of the request, so
/// serde_json's recursion limit of 128 already refuses a request with a filter deeper
/// than 62 levels (`notJSON`, see [`parse_request`](crate::parse_request)). This one
/// guards filters that reach [`Filter::parse`] by other paths (a `Value` built in code,
/// a transport parsed with another limit).
pub const MAX_FILTER_DEPTH: usize = 64;
/// Most filter nodes (operators plus conditions) in one filter, so that the work a
/// filter costs the server stays bounded whatever its shape.
pub const MAX_FILTER_NODES: usize = 10_000;

/// A FilterOperator's `operator` (RFC 8620 5.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operator {
    /// All of the conditions must match.
    And,
    /// At least one of the conditions must match.
    Or,
    /// None of the conditions may match.
    Not,
}

/// A FilterOperator (RFC 8620 5.5).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FilterOperator<C> {
    /// How the conditions combine.
    pub operator: Operator,
    /// The operands, each an operator or a condition.
    pub conditions: Vec<Filter<C>>,
}

/// A filter (RFC 8620 5.5): `FilterOperator|FilterCondition`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Filter<C> {
    /// An operator over sub-filters.
    Operator(FilterOperator<C>),
    /// A data-type-specific condition.
    Condition(C),
}

/// A FilterCondition type, and with it the rest of what its data type's `/query`
/// defines (the sort properties), since both come from the same RFC section.
pub trait FilterCondition: DeserializeOwned {
    /// Every property name the condition may have. A name outside this list is
    /// `unsupportedFilter` rather than `invalidArguments`: RFC 8620 5.5 names
    /// `unsupportedFilter` for a filter the server "cannot process", and a condition from
    /// an extension we do not implement is exactly that, whereas `invalidArguments`
    /// would tell the client its request is malformed.
    const PROPERTIES: &'static [&'static str];

    /// The properties the data type's `/query` can sort on.
    const SORT_PROPERTIES: &'static [&'static str];

    /// Checks what serde cannot (value syntax); the error is usually `invalidArguments`.
    fn validate(&self) -> Result<(), MethodError> {
        Ok(())
    }

    /// Checks one comparator of the `sort` argument; by default its property must be in
    /// [`Self::SORT_PROPERTIES`] (else `unsupportedSort`, RFC 8620 5.5).
    fn validate_comparator(c: &Comparator) -> Result<(), MethodError> {
        if Self::SORT_PROPERTIES.contains(&c.property.as_str()) {
            Ok(())
        } else {
            Err(MethodError::unsupported_sort(format!(
                "cannot sort on {:?}",
                crate::method::short(&c.property)
            )))
        }
    }
}

impl<C: FilterCondition> Filter<C> {
    /// Parses a filter from its JSON value, within [`MAX_FILTER_DEPTH`] and
    /// [`MAX_FILTER_NODES`] (beyond either: `unsupportedFilter`).
    ///
    /// A value that is not an object, a FilterOperator without a `conditions` array or
    /// with other members, and a condition whose values have the wrong type are
    /// `invalidArguments`; an unknown condition property or operator is
    /// `unsupportedFilter`. The value is only borrowed, and never descended deeper than
    /// the limit, so even a value nested far deeper than the stack could recurse is
    /// refused safely.
    pub fn parse(value: &Value) -> Result<Self, MethodError> {
        let mut nodes = 0;
        parse_node(value, 1, &mut nodes)
    }

    /// Calls `f` on every condition, depth first.
    pub fn for_each_condition(&self, f: &mut impl FnMut(&C)) {
        match self {
            Filter::Condition(c) => f(c),
            Filter::Operator(op) => op.conditions.iter().for_each(|c| c.for_each_condition(f)),
        }
    }
}

fn parse_node<C: FilterCondition>(
    value: &Value,
    depth: usize,
    nodes: &mut usize,
) -> Result<Filter<C>, MethodError> {
    *nodes += 1;
    if *nodes > MAX_FILTER_NODES {
        return Err(MethodError::unsupported_filter(format!(
            "the filter has more than {MAX_FILTER_NODES} operators and conditions"
        )));
    }
    if depth > MAX_FILTER_DEPTH {
        return Err(MethodError::unsupported_filter(format!(
            "the filter is nested more than {MAX_FILTER_DEPTH} levels deep"
        )));
    }
    let Value::Object(m) = value else {
        return Err(MethodError::invalid_arguments(
            "a filter must be a FilterOperator or FilterCondition object",
        ));
    };
    // RFC 8620 5.5: a FilterCondition "MUST NOT have an 'operator' property", so its
    // presence is what makes an object a FilterOperator.
    let Some(op) = m.get("operator") else {
        if let Some(unknown) = m.keys().find(|k| !C::PROPERTIES.contains(&k.as_str())) {
            return Err(MethodError::unsupported_filter(format!(
                "unknown filter condition {:?}",
                crate::method::short(unknown)
            )));
        }
        let c: C = parse_ref(value)?;
        c.validate()?;
        return Ok(Filter::Condition(c));
    };
    let operator = match op {
        Value::String(s) => match s.as_str() {
            "AND" => Operator::And,
            "OR" => Operator::Or,
            "NOT" => Operator::Not,
            other => {
                return Err(MethodError::unsupported_filter(format!(
                    "unknown filter operator {:?}",
                    crate::method::short(other)
                )));
            }
        },
        _ => {
            return Err(MethodError::invalid_arguments(
                "a filter operator must be a string",
            ));
        }
    };
    if let Some(extra) = m.keys().find(|k| *k != "operator" && *k != "conditions") {
        return Err(MethodError::invalid_arguments(format!(
            "a FilterOperator has only \"operator\" and \"conditions\", not {:?}",
            crate::method::short(extra)
        )));
    }
    let Some(Value::Array(items)) = m.get("conditions") else {
        return Err(MethodError::invalid_arguments(
            "a FilterOperator needs a \"conditions\" array",
        ));
    };
    let mut conditions = Vec::with_capacity(items.len().min(MAX_FILTER_NODES));
    for item in items {
        conditions.push(parse_node(item, depth + 1, nodes)?);
    }
    Ok(Filter::Operator(FilterOperator {
        operator,
        conditions,
    }))
}

impl<'de, C: FilterCondition> Deserialize<'de> for Filter<C> {
    /// Through [`Filter::parse`], with its bounds; the method error becomes the serde
    /// error message. Request handlers should call `parse` to keep the error type.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Filter::parse(&v).map_err(|e| de::Error::custom(e.to_string()))
    }
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
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<u64>,
    }
    impl FilterCondition for T {
        const PROPERTIES: &'static [&'static str] = &["text", "size"];
        const SORT_PROPERTIES: &'static [&'static str] = &["size"];
    }

    fn parse(v: Value) -> Result<Filter<T>, MethodError> {
        Filter::parse(&v)
    }

    /// `levels` filter objects in a chain: levels - 1 operators over one condition.
    fn nested(levels: usize) -> Value {
        // Built by moving values, not with json!, whose interpolation serializes (and so
        // recurses over) the value it embeds.
        let mut v = json!({"text": "x"});
        for _ in 1..levels {
            let mut m = serde_json::Map::new();
            m.insert("operator".into(), Value::String("AND".into()));
            m.insert("conditions".into(), Value::Array(vec![v]));
            v = Value::Object(m);
        }
        v
    }

    /// Drops a deep chain without recursion (serde_json's Drop recurses).
    fn drop_deep(v: Value) {
        let mut cur = v;
        loop {
            let next = match &mut cur {
                Value::Object(m) => match m.get_mut("conditions") {
                    Some(Value::Array(a)) => a.pop(),
                    _ => None,
                },
                _ => None,
            };
            drop(cur);
            match next {
                Some(n) => cur = n,
                None => break,
            }
        }
    }

    #[test]
    fn condition_and_operators() {
        let f = parse(json!({"operator": "OR", "conditions": [
            {"text": "a"},
            {"operator": "NOT", "conditions": [{"size": 5}]},
            {}
        ]}))
        .unwrap();
        let Filter::Operator(op) = &f else { panic!() };
        assert_eq!(op.operator, Operator::Or);
        assert_eq!(op.conditions.len(), 3);
        assert_eq!(
            op.conditions[2],
            Filter::Condition(T {
                text: None,
                size: None
            })
        );
        // Serializes back to the same JSON.
        assert_eq!(
            serde_json::to_value(&f).unwrap(),
            json!({"operator": "OR", "conditions": [
                {"text": "a"}, {"operator": "NOT", "conditions": [{"size": 5}]}, {}
            ]})
        );
        let mut n = 0;
        f.for_each_condition(&mut |_| n += 1);
        assert_eq!(n, 3);
        assert!(parse(json!({"operator": "AND", "conditions": []})).is_ok());
    }

    #[test]
    fn errors() {
        let kind = |v: Value| parse(v).unwrap_err().kind;
        use MethodErrorType::{InvalidArguments as Ia, UnsupportedFilter as Uf};
        assert_eq!(kind(json!({"nope": 1})), Uf);
        assert_eq!(kind(json!({"text": "a", "nope": 1})), Uf);
        assert_eq!(kind(json!({"operator": "XOR", "conditions": []})), Uf);
        assert_eq!(kind(json!({"operator": "and", "conditions": []})), Uf);
        assert_eq!(kind(json!({"operator": 1, "conditions": []})), Ia);
        assert_eq!(kind(json!({"operator": "AND"})), Ia);
        assert_eq!(kind(json!({"operator": "AND", "conditions": {}})), Ia);
        assert_eq!(
            kind(json!({"operator": "AND", "conditions": [], "text": "a"})),
            Ia
        );
        assert_eq!(kind(json!({"size": "big"})), Ia);
        assert_eq!(kind(json!({"size": -1})), Ia);
        assert_eq!(kind(json!([])), Ia);
        assert_eq!(kind(json!("text")), Ia);
        assert_eq!(
            kind(json!({"operator": "AND", "conditions": [{"nope": 1}]})),
            Uf
        );
    }

    #[test]
    fn depth_limit() {
        assert!(parse(nested(1)).is_ok());
        assert!(parse(nested(63)).is_ok());
        assert!(parse(nested(MAX_FILTER_DEPTH)).is_ok());
        for levels in [65, 100, 200] {
            let e = parse(nested(levels)).unwrap_err();
            assert_eq!(e.kind, MethodErrorType::UnsupportedFilter, "{levels}");
            assert!(e.description.unwrap().contains("nested"));
        }
    }

    #[test]
    fn very_deep_value_is_refused_without_recursing() {
        // 100,000 levels, built and dropped iteratively: parsing stops at the limit.
        let v = nested(100_000);
        let e = Filter::<T>::parse(&v).unwrap_err();
        assert_eq!(e.kind, MethodErrorType::UnsupportedFilter);
        drop_deep(v);
    }

    #[test]
    fn node_limit() {
        let wide = |n: usize| {
            let items: Vec<Value> = (0..n).map(|_| json!({"size": 1})).collect();
            json!({"operator": "OR", "conditions": items})
        };
        assert!(parse(wide(MAX_FILTER_NODES - 1)).is_ok());
        let e = parse(wide(MAX_FILTER_NODES)).unwrap_err();
        assert_eq!(e.kind, MethodErrorType::UnsupportedFilter);
        assert!(e.description.unwrap().contains("more than"));
    }

    #[test]
    fn serde_deserialize_goes_through_parse() {
        let f: Filter<T> = serde_json::from_value(json!({"text": "a"})).unwrap();
        assert_eq!(
            f,
            Filter::Condition(T {
                text: Some("a".into()),
                size: None
            })
        );
        let e = serde_json::from_value::<Filter<T>>(json!({"nope": 1})).unwrap_err();
        assert!(e.to_string().starts_with("unsupportedFilter"));
    }
}

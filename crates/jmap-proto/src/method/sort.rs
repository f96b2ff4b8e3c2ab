//! The `sort` argument of `/query` (RFC 8620 5.5): a list of Comparators.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::MethodError;
use crate::method::filter::FilterCondition;
use crate::method::{parse_ref, short};

fn yes() -> bool {
    true
}

/// A Comparator (RFC 8620 5.5), with the `keyword` RFC 8621 4.4.2 adds for the keyword
/// sorts of Email/query.
///
/// Unknown members are ignored, not refused: RFC 8620 does not forbid them, and a real
/// client sends them (jmapc 0.4 puts `position`, `anchorOffset` and `calculateTotal` into
/// every comparator). Refusing would break that client for nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Comparator {
    /// The property to sort on.
    pub property: String,
    /// Ascending (the default) or descending.
    #[serde(default = "yes")]
    pub is_ascending: bool,
    /// The collation (RFC 4790 name) to compare strings with; the server's default if
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collation: Option<String>,
    /// RFC 8621 4.4.2: the keyword, for `hasKeyword`, `allInThreadHaveKeyword` and
    /// `someInThreadHaveKeyword`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyword: Option<String>,
}

impl Comparator {
    /// An ascending comparator on `property`.
    pub fn asc(property: impl Into<String>) -> Self {
        Self {
            property: property.into(),
            is_ascending: true,
            collation: None,
            keyword: None,
        }
    }

    /// A descending comparator on `property`.
    pub fn desc(property: impl Into<String>) -> Self {
        Self {
            is_ascending: false,
            ..Self::asc(property)
        }
    }
}

/// Parses a `sort` value for the `/query` of `C`'s data type: the shape is checked by
/// serde (`invalidArguments`), each property by `C::validate_comparator`
/// (`unsupportedSort` for a property it cannot sort on).
pub fn parse_sort<C: FilterCondition>(value: &Value) -> Result<Vec<Comparator>, MethodError> {
    let sort: Vec<Comparator> = parse_ref(value)?;
    for c in &sort {
        C::validate_comparator(c)?;
    }
    Ok(sort)
}

/// RFC 8620 5.5: a collation the server does not recognise is `unsupportedSort`. The
/// supported list is the server's `collationAlgorithms` (RFC 8620 2).
pub fn check_collations(sort: &[Comparator], supported: &[&str]) -> Result<(), MethodError> {
    match sort
        .iter()
        .filter_map(|c| c.collation.as_deref())
        .find(|c| !supported.contains(c))
    {
        Some(c) => Err(MethodError::unsupported_sort(format!(
            "unknown collation {:?}",
            short(c)
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::MethodErrorType;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    struct T {}
    impl FilterCondition for T {
        const PROPERTIES: &'static [&'static str] = &[];
        const SORT_PROPERTIES: &'static [&'static str] = &["name", "size"];
    }

    #[test]
    fn defaults_and_shape() {
        let s = parse_sort::<T>(&json!([{"property": "name"}, {"property": "size", "isAscending": false, "collation": "i;octet"}])).unwrap();
        assert_eq!(s[0], Comparator::asc("name"));
        assert!(!s[1].is_ascending);
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            json!([{"property": "name", "isAscending": true}, {"property": "size", "isAscending": false, "collation": "i;octet"}])
        );
    }

    #[test]
    fn errors() {
        let kind = |v: Value| parse_sort::<T>(&v).unwrap_err().kind;
        assert_eq!(
            kind(json!([{"property": "color"}])),
            MethodErrorType::UnsupportedSort
        );
        assert_eq!(kind(json!([{}])), MethodErrorType::InvalidArguments);
        assert_eq!(
            kind(json!([{"property": 1}])),
            MethodErrorType::InvalidArguments
        );
        // Unknown members are ignored (jmapc 0.4 sends some), not an error.
        assert!(parse_sort::<T>(&json!([{"property": "name", "position": 0, "x": 1}])).is_ok());
        assert_eq!(
            kind(json!({"property": "name"})),
            MethodErrorType::InvalidArguments
        );
    }

    #[test]
    fn collations() {
        let s = vec![Comparator {
            collation: Some("i;klingon".into()),
            ..Comparator::asc("name")
        }];
        assert_eq!(
            check_collations(&s, &["i;unicode-casemap"])
                .unwrap_err()
                .kind,
            MethodErrorType::UnsupportedSort
        );
        assert!(check_collations(&s, &["i;klingon"]).is_ok());
        assert!(check_collations(&[Comparator::desc("name")], &[]).is_ok());
    }
}

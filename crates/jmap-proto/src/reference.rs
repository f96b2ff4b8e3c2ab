//! Result references (RFC 8620 3.7): an argument `#foo` whose value is taken from an
//! earlier response of the same request through a JSON Pointer (RFC 6901) extended with
//! `*`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::MethodError;
use crate::request::Invocation;

/// Most pointer segments evaluated: real paths have two or three (`/list/*/threadId`).
pub const MAX_PATH_SEGMENTS: usize = 32;
/// Most items a reference may produce, so one `*` over a large response cannot grow an
/// argument without bound.
pub const MAX_RESULT_ITEMS: usize = 100_000;

/// A ResultReference object (RFC 8620 3.7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResultReference {
    /// The method call id of an earlier call in this request.
    pub result_of: String,
    /// The name of the response expected to that call.
    pub name: String,
    /// A JSON Pointer into the arguments of that response.
    pub path: String,
}

/// Replaces every `#key` argument by `key` holding the referenced value (RFC 8620 3.7).
///
/// `previous` holds the responses produced so far in this request, in order. Errors:
/// - a `#key` next to a plain `key` is `invalidArguments` (RFC 8620 3.7), checked for
///   every key before anything is resolved; so is a `#key` whose value is not a
///   ResultReference object (it is the argument, not the reference, that is malformed);
/// - no response with that call id, a response of another name, a path that does not
///   resolve, a path of more than [`MAX_PATH_SEGMENTS`] segments or a result of more than
///   [`MAX_RESULT_ITEMS`] items is `invalidResultReference`.
///
/// As RFC 8620 3.7 says, the first response with the call id is used, and only then is
/// its name compared: a call that failed answers `error`, so a reference to it fails.
pub fn resolve_references(
    arguments: &mut Map<String, Value>,
    previous: &[Invocation],
) -> Result<(), MethodError> {
    let refs: Vec<String> = arguments
        .keys()
        .filter(|k| k.starts_with('#'))
        .cloned()
        .collect();
    if refs.is_empty() {
        return Ok(());
    }
    for key in &refs {
        if arguments.contains_key(&key[1..]) {
            return Err(MethodError::invalid_arguments(format!(
                "argument {:?} is given both directly and as a result reference",
                &key[1..]
            )));
        }
    }
    for key in refs {
        let Some(raw) = arguments.remove(&key) else {
            continue;
        };
        let reference: ResultReference = serde_json::from_value(raw).map_err(|e| {
            MethodError::invalid_arguments(format!("{key:?} is not a ResultReference object: {e}"))
        })?;
        let value = resolve(&reference, previous)?;
        arguments.insert(key[1..].to_string(), value);
    }
    Ok(())
}

/// Evaluates one reference against the earlier responses.
pub fn resolve(reference: &ResultReference, previous: &[Invocation]) -> Result<Value, MethodError> {
    let response = previous
        .iter()
        .find(|r| r.call_id == reference.result_of)
        .ok_or_else(|| {
            MethodError::invalid_result_reference(format!(
                "no earlier response has method call id {:?}",
                truncate(&reference.result_of)
            ))
        })?;
    if response.name != reference.name {
        return Err(MethodError::invalid_result_reference(format!(
            "the response to {:?} is {:?}, not {:?}",
            truncate(&reference.result_of),
            response.name,
            truncate(&reference.name)
        )));
    }
    let tokens = parse_pointer(&reference.path)?;
    let out = evaluate(Node::Root(&response.arguments), &tokens)?;
    if let Value::Array(items) = &out
        && items.len() > MAX_RESULT_ITEMS
    {
        return Err(too_many());
    }
    Ok(out)
}

/// A place in a response: the root is a `Map`, not a `Value`, and wrapping it in a
/// `Value` would clone the whole response.
enum Node<'a> {
    Root(&'a Map<String, Value>),
    Value(&'a Value),
}

/// Splits a JSON Pointer into unescaped reference tokens (RFC 6901 3, 4).
fn parse_pointer(path: &str) -> Result<Vec<String>, MethodError> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(MethodError::invalid_result_reference(
            "a path must be empty or start with '/'",
        ));
    };
    let mut tokens = Vec::new();
    for raw in rest.split('/') {
        if tokens.len() == MAX_PATH_SEGMENTS {
            return Err(MethodError::invalid_result_reference(format!(
                "a path may have at most {MAX_PATH_SEGMENTS} segments"
            )));
        }
        tokens.push(unescape(raw)?);
    }
    Ok(tokens)
}

/// RFC 6901 4: `~1` is `/` and `~0` is `~`; any other `~` is an error.
fn unescape(raw: &str) -> Result<String, MethodError> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '~' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('0') => out.push('~'),
            Some('1') => out.push('/'),
            _ => {
                return Err(MethodError::invalid_result_reference(
                    "'~' in a path must be followed by '0' or '1'",
                ));
            }
        }
    }
    Ok(out)
}

fn not_found(token: &str) -> MethodError {
    MethodError::invalid_result_reference(format!(
        "the path does not resolve at {:?}",
        truncate(token)
    ))
}

fn too_many() -> MethodError {
    MethodError::invalid_result_reference(format!(
        "the reference yields more than {MAX_RESULT_ITEMS} items"
    ))
}

/// Applies `tokens` to `node`. Recursion depth is bounded by [`MAX_PATH_SEGMENTS`], and
/// each value of the response is visited at most once.
fn evaluate(node: Node<'_>, tokens: &[String]) -> Result<Value, MethodError> {
    let Some((token, rest)) = tokens.split_first() else {
        return Ok(match node {
            Node::Root(m) => Value::Object(m.clone()),
            Node::Value(v) => v.clone(),
        });
    };
    match node {
        Node::Root(m) => {
            let child = m.get(token).ok_or_else(|| not_found(token))?;
            evaluate(Node::Value(child), rest)
        }
        Node::Value(Value::Object(m)) => {
            // On an object `*` is an ordinary member name (RFC 8620 3.7 extends only
            // the evaluation on arrays).
            let child = m.get(token).ok_or_else(|| not_found(token))?;
            evaluate(Node::Value(child), rest)
        }
        Node::Value(Value::Array(items)) if token == "*" => {
            // RFC 8620 3.7: apply the rest of the path to every item; results that are
            // arrays are flattened into the output, one level.
            let mut out = Vec::new();
            for item in items {
                match evaluate(Node::Value(item), rest)? {
                    Value::Array(inner) => out.extend(inner),
                    other => out.push(other),
                }
                if out.len() > MAX_RESULT_ITEMS {
                    return Err(too_many());
                }
            }
            Ok(Value::Array(out))
        }
        Node::Value(Value::Array(items)) => {
            let child = array_index(token)
                .and_then(|i| items.get(i))
                .ok_or_else(|| not_found(token))?;
            evaluate(Node::Value(child), rest)
        }
        Node::Value(_) => Err(not_found(token)),
    }
}

/// RFC 6901 4: an array index is `0` or digits without a leading zero; `-` (past the
/// end) never resolves when reading.
fn array_index(token: &str) -> Option<usize> {
    let ok = token == "0"
        || (!token.is_empty()
            && !token.starts_with('0')
            && token.bytes().all(|b| b.is_ascii_digit()));
    if ok { token.parse().ok() } else { None }
}

/// Quotes at most 64 characters of client input back in an error.
fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

impl From<&ResultReference> for Value {
    fn from(r: &ResultReference) -> Value {
        let mut m = Map::new();
        m.insert("resultOf".into(), Value::String(r.result_of.clone()));
        m.insert("name".into(), Value::String(r.name.clone()));
        m.insert("path".into(), Value::String(r.path.clone()));
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::MethodErrorType;
    use serde_json::json;

    fn inv(v: Value) -> Invocation {
        serde_json::from_value(v).unwrap()
    }

    fn args(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn rfc_example_changes_created() {
        // RFC 8620 3.7, first example.
        let previous = vec![inv(json!(["Foo/changes", {
            "accountId": "A1",
            "oldState": "abcdef",
            "newState": "123456",
            "hasMoreChanges": false,
            "created": ["f1", "f4"],
            "updated": [],
            "destroyed": []
        }, "t0"]))];
        let mut a = args(json!({
            "accountId": "A1",
            "#ids": {"resultOf": "t0", "name": "Foo/changes", "path": "/created"}
        }));
        resolve_references(&mut a, &previous).unwrap();
        assert_eq!(
            Value::Object(a),
            json!({"accountId": "A1", "ids": ["f1", "f4"]})
        );
    }

    #[test]
    fn rfc_example_threads() {
        // RFC 8620 3.7, second example: ids, then /list/*/threadId, then the flattened
        // /list/*/emailIds.
        let previous = vec![
            inv(json!(["Email/query", {
                "accountId": "A1", "queryState": "abcdefg", "canCalculateChanges": true,
                "position": 0, "total": 101,
                "ids": ["msg1023", "msg223", "msg110"]
            }, "t0"])),
            inv(json!(["Email/get", {
                "accountId": "A1", "state": "123456", "notFound": [],
                "list": [
                    {"id": "msg1023", "threadId": "trd194"},
                    {"id": "msg223", "threadId": "trd114"},
                    {"id": "msg110", "threadId": "trd194"}
                ]
            }, "t1"])),
            inv(json!(["Thread/get", {
                "accountId": "A1", "state": "123456", "notFound": [],
                "list": [
                    {"id": "trd194", "emailIds": ["msg1020", "msg1021", "msg1023"]},
                    {"id": "trd114", "emailIds": ["msg201", "msg223"]}
                ]
            }, "t2"])),
        ];
        let mut a = args(json!({"accountId": "A1",
            "#ids": {"resultOf": "t0", "name": "Email/query", "path": "/ids"},
            "properties": ["threadId"]}));
        resolve_references(&mut a, &previous).unwrap();
        assert_eq!(a["ids"], json!(["msg1023", "msg223", "msg110"]));

        let mut a = args(json!({"accountId": "A1",
            "#ids": {"resultOf": "t1", "name": "Email/get", "path": "/list/*/threadId"}}));
        resolve_references(&mut a, &previous).unwrap();
        assert_eq!(a["ids"], json!(["trd194", "trd114", "trd194"]));

        let mut a = args(json!({"accountId": "A1",
            "#ids": {"resultOf": "t2", "name": "Thread/get", "path": "/list/*/emailIds"}}));
        resolve_references(&mut a, &previous).unwrap();
        assert_eq!(
            a["ids"],
            json!(["msg1020", "msg1021", "msg1023", "msg201", "msg223"])
        );
        assert!(!a.contains_key("#ids"));
    }

    fn previous() -> Vec<Invocation> {
        vec![
            inv(
                json!(["Foo/get", {"list": [{"id": "a", "x": {"*": 1, "a/b": 2, "m~n": 3}}],
                "nested": [[1, 2], [3]], "n": 5}, "c0"]),
            ),
            inv(json!(["error", {"type": "serverFail"}, "c1"])),
            inv(json!(["Foo/get", {"list": []}, "c0"])),
        ]
    }

    fn one(path: &str) -> Result<Value, MethodError> {
        resolve(
            &ResultReference {
                result_of: "c0".into(),
                name: "Foo/get".into(),
                path: path.into(),
            },
            &previous(),
        )
    }

    #[test]
    fn pointer_semantics() {
        // The first response with the call id is used.
        assert_eq!(one("/list/0/id").unwrap(), json!("a"));
        // An object member named "*" is just a member.
        assert_eq!(one("/list/0/x/*").unwrap(), json!(1));
        assert_eq!(one("/list/0/x/a~1b").unwrap(), json!(2));
        assert_eq!(one("/list/0/x/m~0n").unwrap(), json!(3));
        assert_eq!(one("/n").unwrap(), json!(5));
        // "*" over an array of arrays flattens one level.
        assert_eq!(one("/nested/*").unwrap(), json!([1, 2, 3]));
        assert_eq!(one("/nested/*/0").unwrap(), json!([1, 3]));
        // The whole response.
        assert_eq!(one("").unwrap()["n"], json!(5));
    }

    #[test]
    fn errors() {
        let kind = |r: Result<Value, MethodError>| r.unwrap_err().kind;
        use MethodErrorType::InvalidResultReference as Irr;
        for path in [
            "/nope", "/list/1", "/list/-", "/list/01", "/list/+1", "/n/x", "list", "/a~2", "/a~",
        ] {
            assert_eq!(kind(one(path)), Irr, "{path}");
        }
        let p = previous();
        let r = |result_of: &str, name: &str| ResultReference {
            result_of: result_of.into(),
            name: name.into(),
            path: "/list".into(),
        };
        // No such call id.
        assert_eq!(kind(resolve(&r("c9", "Foo/get"), &p)), Irr);
        // Wrong name.
        assert_eq!(kind(resolve(&r("c0", "Foo/query"), &p)), Irr);
        // A call that failed answers "error".
        assert_eq!(kind(resolve(&r("c1", "Foo/set"), &p)), Irr);
        // Too many segments.
        let long = "/a".repeat(MAX_PATH_SEGMENTS + 1);
        assert_eq!(kind(one(&long)), Irr);
        let ok_len = "/a".repeat(MAX_PATH_SEGMENTS);
        // 32 segments parse; the path then just fails to resolve.
        assert!(
            one(&ok_len)
                .unwrap_err()
                .description
                .unwrap()
                .contains("does not resolve")
        );
    }

    #[test]
    fn both_forms_and_malformed_reference() {
        let p = previous();
        let mut a = args(
            json!({"ids": [], "#ids": {"resultOf": "c0", "name": "Foo/get", "path": "/list"}}),
        );
        let e = resolve_references(&mut a, &p).unwrap_err();
        assert_eq!(e.kind, MethodErrorType::InvalidArguments);
        let mut a = args(json!({"#ids": "c0"}));
        assert_eq!(
            resolve_references(&mut a, &p).unwrap_err().kind,
            MethodErrorType::InvalidArguments
        );
        let mut a = args(json!({"#ids": {"resultOf": "c0", "name": "Foo/get"}}));
        assert_eq!(
            resolve_references(&mut a, &p).unwrap_err().kind,
            MethodErrorType::InvalidArguments
        );
        // No references: untouched.
        let mut a = args(json!({"ids": ["x"]}));
        resolve_references(&mut a, &p).unwrap();
        assert_eq!(a["ids"], json!(["x"]));
    }

    #[test]
    fn result_size_is_bounded() {
        let big: Vec<Value> = (0..MAX_RESULT_ITEMS + 1).map(|i| json!([i])).collect();
        let p = vec![inv(
            json!(["Foo/get", {"list": big, "flat": vec![0; MAX_RESULT_ITEMS + 1]}, "c0"]),
        )];
        let r = |path: &str| ResultReference {
            result_of: "c0".into(),
            name: "Foo/get".into(),
            path: path.into(),
        };
        assert_eq!(
            resolve(&r("/list/*"), &p).unwrap_err().kind,
            MethodErrorType::InvalidResultReference
        );
        assert_eq!(
            resolve(&r("/flat"), &p).unwrap_err().kind,
            MethodErrorType::InvalidResultReference
        );
        let ok: Vec<Value> = (0..10).map(|i| json!([i, i])).collect();
        let p = vec![inv(json!(["Foo/get", {"list": ok}, "c0"]))];
        assert_eq!(
            resolve(&r("/list/*"), &p)
                .unwrap()
                .as_array()
                .unwrap()
                .len(),
            20
        );
    }
}

//! The Request object (RFC 8620 3.3) and its parsing, with the request-level errors of
//! RFC 8620 3.6.1.

use std::collections::HashMap;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeTuple, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::capability::CoreCapability;
use crate::error::RequestError;
use crate::id::Id;

/// One method call or response (RFC 8620 3.2): `[name, arguments, methodCallId]` on the
/// wire.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    /// The method name, e.g. `Email/get`, or `error` in a response.
    pub name: String,
    /// The named arguments.
    pub arguments: Map<String, Value>,
    /// The client's id for this call, echoed in the responses to it.
    pub call_id: String,
}

impl Invocation {
    /// Builds an invocation.
    pub fn new(
        name: impl Into<String>,
        arguments: Map<String, Value>,
        call_id: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            arguments,
            call_id: call_id.into(),
        }
    }

    /// Parses the wire form `[String, Object, String]`, saying what is wrong otherwise.
    pub fn from_value(v: Value) -> Result<Self, String> {
        let Value::Array(items) = v else {
            return Err("an Invocation must be an array".into());
        };
        let triple: Result<[Value; 3], _> = items.try_into();
        let Ok([name, arguments, call_id]) = triple else {
            return Err("an Invocation must have exactly 3 elements".into());
        };
        let Value::String(name) = name else {
            return Err("the method name of an Invocation must be a string".into());
        };
        let Value::Object(arguments) = arguments else {
            return Err("the arguments of an Invocation must be an object".into());
        };
        let Value::String(call_id) = call_id else {
            return Err("the method call id of an Invocation must be a string".into());
        };
        Ok(Self {
            name,
            arguments,
            call_id,
        })
    }
}

impl Serialize for Invocation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(3)?;
        t.serialize_element(&self.name)?;
        t.serialize_element(&self.arguments)?;
        t.serialize_element(&self.call_id)?;
        t.end()
    }
}

impl<'de> Deserialize<'de> for Invocation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Invocation;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an Invocation [name, arguments, methodCallId]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Invocation, A::Error> {
                let name: String = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let arguments: Map<String, Value> = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                let call_id: String = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(2, &self))?;
                if seq.next_element::<de::IgnoredAny>()?.is_some() {
                    return Err(de::Error::invalid_length(4, &self));
                }
                Ok(Invocation::new(name, arguments, call_id))
            }
        }
        d.deserialize_seq(V)
    }
}

/// A JMAP Request (RFC 8620 3.3).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    /// The capabilities the client wishes to use.
    pub using: Vec<String>,
    /// The method calls, processed in order.
    pub method_calls: Vec<Invocation>,
    /// Creation id to server id map carried over from an earlier request, if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_ids: Option<HashMap<String, Id>>,
}

/// The request limits of the core capability (RFC 8620 2) that [`parse_request`]
/// enforces itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// `maxSizeRequest`: the largest request body, in octets.
    pub max_size_request: usize,
    /// `maxCallsInRequest`: the most method calls in one request.
    pub max_calls_in_request: usize,
}

impl From<&CoreCapability> for RequestLimits {
    fn from(c: &CoreCapability) -> Self {
        Self {
            max_size_request: usize::try_from(c.max_size_request).unwrap_or(usize::MAX),
            max_calls_in_request: usize::try_from(c.max_calls_in_request).unwrap_or(usize::MAX),
        }
    }
}

/// Longest capability name quoted back in an `unknownCapability` detail, so a hostile
/// request cannot make the error body as large as itself.
const MAX_QUOTED: usize = 100;

/// Parses and validates a request body (RFC 8620 3.3), or returns the request-level
/// error to answer with (RFC 8620 3.6.1).
///
/// In order:
/// 1. a body over `limits.max_size_request` octets is `limit` (`maxSizeRequest`),
///    checked before anything is parsed;
/// 2. a body that is not UTF-8 or not JSON is `notJSON`; so is JSON nested deeper than
///    serde_json's recursion limit of 128: RFC 8620 defines no limit name for nesting, so
///    `limit` would send the client looking for a capability that does not exist, and
///    the body genuinely is JSON we refuse to parse;
/// 3. JSON that is not a Request object (no `using` array of strings, `methodCalls` not an
///    array of `[String, Object, String]`, `createdIds` not a map of ids) is `notRequest`;
///    unknown top-level properties are ignored;
/// 4. a capability in `using` that is not in `supported_capabilities` is
///    `unknownCapability`;
/// 5. more than `limits.max_calls_in_request` calls is `limit` (`maxCallsInRequest`).
pub fn parse_request(
    body: &[u8],
    limits: &RequestLimits,
    supported_capabilities: &[&str],
) -> Result<Request, RequestError> {
    if body.len() > limits.max_size_request {
        return Err(RequestError::limit(
            "maxSizeRequest",
            format!(
                "The request is {} octets; this server accepts at most {}.",
                body.len(),
                limits.max_size_request
            ),
        ));
    }
    let text = std::str::from_utf8(body)
        .map_err(|e| RequestError::not_json(format!("The request is not UTF-8: {e}.")))?;
    let value: Value = serde_json::from_str(text).map_err(|e| {
        let msg = e.to_string();
        if msg.starts_with("recursion limit exceeded") {
            RequestError::not_json(format!(
                "The request is nested too deeply to parse (more than 128 levels): {msg}."
            ))
        } else {
            RequestError::not_json(format!("The request is not valid JSON: {msg}."))
        }
    })?;
    let Value::Object(mut top) = value else {
        return Err(RequestError::not_request(
            "The request must be a JSON object.",
        ));
    };

    let using = match top.remove("using") {
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(RequestError::not_request(
                    "Every item of \"using\" must be a string.",
                )),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => {
            return Err(RequestError::not_request(
                "\"using\" must be an array of strings.",
            ));
        }
        None => return Err(RequestError::not_request("The request has no \"using\".")),
    };

    let calls = match top.remove("methodCalls") {
        Some(Value::Array(calls)) => calls,
        Some(_) => {
            return Err(RequestError::not_request(
                "\"methodCalls\" must be an array of Invocations.",
            ));
        }
        None => {
            return Err(RequestError::not_request(
                "The request has no \"methodCalls\".",
            ));
        }
    };

    let created_ids = match top.remove("createdIds") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => {
            let mut out = HashMap::with_capacity(m.len());
            for (k, v) in m {
                if !crate::id::is_valid(&k) {
                    return Err(RequestError::not_request(
                        "A key of \"createdIds\" is not a valid creation id.",
                    ));
                }
                let id = match v {
                    Value::String(s) => Id::new(s).map_err(|e| {
                        RequestError::not_request(format!(
                            "A value of \"createdIds\" is not a valid Id: {e}."
                        ))
                    })?,
                    _ => {
                        return Err(RequestError::not_request(
                            "The values of \"createdIds\" must be Id strings.",
                        ));
                    }
                };
                out.insert(k, id);
            }
            Some(out)
        }
        Some(_) => {
            return Err(RequestError::not_request(
                "\"createdIds\" must be an object.",
            ));
        }
    };

    let mut method_calls = Vec::with_capacity(calls.len().min(limits.max_calls_in_request));
    for (i, call) in calls.into_iter().enumerate() {
        let inv = Invocation::from_value(call)
            .map_err(|e| RequestError::not_request(format!("methodCalls[{i}]: {e}.")))?;
        method_calls.push(inv);
    }

    if let Some(unknown) = using
        .iter()
        .find(|u| !supported_capabilities.contains(&u.as_str()))
    {
        let quoted: String = unknown.chars().take(MAX_QUOTED).collect();
        return Err(RequestError::unknown_capability(format!(
            "The Request object used capability '{quoted}', which is not supported by this server."
        )));
    }

    if method_calls.len() > limits.max_calls_in_request {
        return Err(RequestError::limit(
            "maxCallsInRequest",
            format!(
                "The request has {} method calls; this server accepts at most {}.",
                method_calls.len(),
                limits.max_calls_in_request
            ),
        ));
    }

    Ok(Request {
        using,
        method_calls,
        created_ids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::{CORE, MAIL};
    use crate::error::RequestErrorType;
    use serde_json::json;

    const LIMITS: RequestLimits = RequestLimits {
        max_size_request: 10_000_000,
        max_calls_in_request: 16,
    };
    const CAPS: &[&str] = &[CORE, MAIL];

    fn parse(body: &str) -> Result<Request, RequestError> {
        parse_request(body.as_bytes(), &LIMITS, CAPS)
    }

    #[test]
    fn rfc_example_request() {
        // RFC 8620 3.3.1.
        let body = r#"{
          "using": [ "urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail" ],
          "methodCalls": [
            [ "method1", { "arg1": "arg1data", "arg2": "arg2data" }, "c1" ],
            [ "method2", { "arg1": "arg1data" }, "c2" ],
            [ "method3", {}, "c3" ]
          ]
        }"#;
        let r = parse(body).unwrap();
        assert_eq!(r.using, vec![CORE, MAIL]);
        assert_eq!(r.method_calls.len(), 3);
        assert_eq!(r.method_calls[0].name, "method1");
        assert_eq!(r.method_calls[0].arguments["arg2"], "arg2data");
        assert_eq!(r.method_calls[2].call_id, "c3");
        assert!(r.method_calls[2].arguments.is_empty());
        assert_eq!(r.created_ids, None);
        // Serializes back to the same JSON.
        let again: Value = serde_json::to_value(&r).unwrap();
        let orig: Value = serde_json::from_str(body).unwrap();
        assert_eq!(again, orig);
    }

    #[test]
    fn created_ids() {
        let r = parse(r#"{"using":[],"methodCalls":[],"createdIds":{"k1":"M1"}}"#).unwrap();
        assert_eq!(r.created_ids.unwrap()["k1"], "M1");
        let e = parse(r#"{"using":[],"methodCalls":[],"createdIds":{"k1":"M 1"}}"#).unwrap_err();
        assert_eq!(e.kind, RequestErrorType::NotRequest);
        let e = parse(r#"{"using":[],"methodCalls":[],"createdIds":{"k1":5}}"#).unwrap_err();
        assert_eq!(e.kind, RequestErrorType::NotRequest);
        let e = parse(r##"{"using":[],"methodCalls":[],"createdIds":{"#k":"M1"}}"##).unwrap_err();
        assert_eq!(e.kind, RequestErrorType::NotRequest);
        let e = parse(r#"{"using":[],"methodCalls":[],"createdIds":[]}"#).unwrap_err();
        assert_eq!(e.kind, RequestErrorType::NotRequest);
    }

    #[test]
    fn size_limit_is_checked_first() {
        let limits = RequestLimits {
            max_size_request: 10,
            max_calls_in_request: 16,
        };
        // Not even JSON, but too large: the size wins.
        let e = parse_request(b"\xff\xff not json at all", &limits, CAPS).unwrap_err();
        assert_eq!(e.kind, RequestErrorType::Limit);
        assert_eq!(e.limit.as_deref(), Some("maxSizeRequest"));
        assert_eq!(e.status, 400);
        // Exactly at the limit is fine (it then fails for another reason).
        let e = parse_request(b"1234567890", &limits, CAPS).unwrap_err();
        assert_eq!(e.kind, RequestErrorType::NotRequest);
    }

    #[test]
    fn not_json() {
        for body in [
            &b"{"[..],
            b"",
            b"{\"using\":[],}",
            b"\xff\xfe{}",
            b"{\"a\":\"\xc3\x28\"}",
            b"nul",
        ] {
            let e = parse_request(body, &LIMITS, CAPS).unwrap_err();
            assert_eq!(e.kind, RequestErrorType::NotJson, "{body:?}");
            assert_eq!(e.status, 400);
            let v: Value = serde_json::from_str(&e.to_json()).unwrap();
            assert_eq!(v["type"], "urn:ietf:params:jmap:error:notJSON");
        }
    }

    #[test]
    fn not_request() {
        for body in [
            "[]",
            "null",
            "\"x\"",
            "{}",
            r#"{"methodCalls":[]}"#,
            r#"{"using":[]}"#,
            r#"{"using":"urn:ietf:params:jmap:core","methodCalls":[]}"#,
            r#"{"using":[1],"methodCalls":[]}"#,
            r#"{"using":[],"methodCalls":{}}"#,
            r#"{"using":[],"methodCalls":[["a",{}]]}"#,
            r#"{"using":[],"methodCalls":[["a",{},"c","d"]]}"#,
            r#"{"using":[],"methodCalls":[[1,{},"c"]]}"#,
            r#"{"using":[],"methodCalls":[["a",[],"c"]]}"#,
            r#"{"using":[],"methodCalls":[["a",{},1]]}"#,
            r#"{"using":[],"methodCalls":["a"]}"#,
        ] {
            let e = parse(body).unwrap_err();
            assert_eq!(e.kind, RequestErrorType::NotRequest, "{body}");
            assert_eq!(e.limit, None);
        }
        // Unknown top-level properties are ignored.
        assert!(parse(r#"{"using":[],"methodCalls":[],"x":1}"#).is_ok());
    }

    #[test]
    fn unknown_capability() {
        let e = parse(r#"{"using":["urn:ietf:params:jmap:core","https://example.com/apis/foobar"],"methodCalls":[]}"#)
            .unwrap_err();
        assert_eq!(e.kind, RequestErrorType::UnknownCapability);
        assert_eq!(
            e.detail,
            "The Request object used capability 'https://example.com/apis/foobar', which is not supported by this server."
        );
        // A huge capability name is not echoed whole.
        let long = "x".repeat(10_000);
        let e = parse(&format!(r#"{{"using":["{long}"],"methodCalls":[]}}"#)).unwrap_err();
        assert!(e.detail.len() < 300);
    }

    #[test]
    fn calls_limit() {
        let call = r#"["Core/echo",{},"c"]"#;
        let ok = format!(
            r#"{{"using":[],"methodCalls":[{}]}}"#,
            vec![call; 16].join(",")
        );
        assert_eq!(parse(&ok).unwrap().method_calls.len(), 16);
        let over = format!(
            r#"{{"using":[],"methodCalls":[{}]}}"#,
            vec![call; 17].join(",")
        );
        let e = parse(&over).unwrap_err();
        assert_eq!(e.kind, RequestErrorType::Limit);
        assert_eq!(e.limit.as_deref(), Some("maxCallsInRequest"));
        let v: Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(v["limit"], "maxCallsInRequest");
        assert_eq!(v["type"], "urn:ietf:params:jmap:error:limit");
    }

    #[test]
    fn deep_nesting_is_not_json() {
        // A filter nested 100,000 levels deep, built as text: serde_json stops at its
        // recursion limit (128) long before the stack is in danger.
        let depth = 100_000;
        let mut body = String::from(
            r#"{"using":["urn:ietf:params:jmap:core"],"methodCalls":[["Email/query",{"accountId":"A","filter":"#,
        );
        for _ in 0..depth {
            body.push_str(r#"{"operator":"AND","conditions":["#);
        }
        body.push_str(r#"{"text":"x"}"#);
        for _ in 0..depth {
            body.push_str("]}");
        }
        body.push_str(r#"},"c1"]]}"#);
        let e = parse(&body).unwrap_err();
        assert_eq!(e.kind, RequestErrorType::NotJson);
        assert!(e.detail.contains("nested too deeply"), "{}", e.detail);
    }

    #[test]
    fn invocation_serde() {
        let inv: Invocation =
            serde_json::from_value(json!(["Email/get", {"ids": null}, "0"])).unwrap();
        assert_eq!(inv.name, "Email/get");
        assert_eq!(
            serde_json::to_value(&inv).unwrap(),
            json!(["Email/get", {"ids": null}, "0"])
        );
        assert!(serde_json::from_value::<Invocation>(json!(["a", {}, "c", 1])).is_err());
        assert!(serde_json::from_value::<Invocation>(json!(["a", {}])).is_err());
        assert!(serde_json::from_str::<Invocation>(r#"["a",{},"c","d"]"#).is_err());
    }
}

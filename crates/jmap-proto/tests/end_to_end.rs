//! A request as the API layer will handle it: body → `parse_request` → for each call,
//! `resolve_references` against the responses so far → typed arguments.

#![allow(clippy::unwrap_used)] // a test: a panic is the failure report

use jmap_proto::capability::{CORE, MAIL};
use jmap_proto::error::{MethodErrorType, RequestErrorType};
use jmap_proto::mail::{EmailFilterCondition, EmailGetRequest, EmailQueryRequest};
use jmap_proto::method::{Filter, GetRequest};
use jmap_proto::{Invocation, RequestLimits, Response, State, parse_request, resolve_references};
use serde_json::{Value, json};

const LIMITS: RequestLimits = RequestLimits {
    max_size_request: 10_000_000,
    max_calls_in_request: 16,
};

fn invocation(v: Value) -> Invocation {
    serde_json::from_value(v).unwrap()
}

#[test]
fn rfc_8620_3_7_inbox_threads_flow() {
    let body = json!({
        "using": [CORE, MAIL],
        "methodCalls": [
            ["Email/query", {
                "accountId": "A1",
                "filter": {"inMailbox": "id_of_inbox"},
                "sort": [{"property": "receivedAt", "isAscending": false}],
                "collapseThreads": true,
                "position": 0,
                "limit": 10,
                "calculateTotal": true
            }, "t0"],
            ["Email/get", {
                "accountId": "A1",
                "#ids": {"resultOf": "t0", "name": "Email/query", "path": "/ids"},
                "properties": ["threadId"]
            }, "t1"],
            ["Thread/get", {
                "accountId": "A1",
                "#ids": {"resultOf": "t1", "name": "Email/get", "path": "/list/*/threadId"}
            }, "t2"],
            ["Email/get", {
                "accountId": "A1",
                "#ids": {"resultOf": "t2", "name": "Thread/get", "path": "/list/*/emailIds"},
                "properties": ["from", "receivedAt", "subject"]
            }, "t3"]
        ]
    })
    .to_string();
    let request = parse_request(body.as_bytes(), &LIMITS, &[CORE, MAIL]).unwrap();
    assert_eq!(request.method_calls.len(), 4);

    // What a server would answer to each call, in turn.
    let answers = [
        json!(["Email/query", {"accountId": "A1", "queryState": "09aa9a075588-780599:0",
            "canCalculateChanges": true, "position": 0, "total": 115,
            "ids": ["Msg1023", "Msg223"]}, "t0"]),
        json!(["Email/get", {"accountId": "A1", "state": "s", "notFound": [],
            "list": [{"id": "Msg1023", "threadId": "Trd194"}, {"id": "Msg223", "threadId": "Trd114"}]}, "t1"]),
        json!(["Thread/get", {"accountId": "A1", "state": "s", "notFound": [],
            "list": [{"id": "Trd194", "emailIds": ["Msg1020", "Msg1021", "Msg1023"]},
                     {"id": "Trd114", "emailIds": ["Msg201", "Msg223"]}]}, "t2"]),
    ];
    let mut response = Response::new(State::from("75128aab4b1b"), request.created_ids.clone());
    let mut resolved_ids = Vec::new();
    for (i, mut call) in request.method_calls.into_iter().enumerate() {
        resolve_references(&mut call.arguments, &response.method_responses).unwrap();
        match call.name.as_str() {
            "Email/query" => {
                let q = EmailQueryRequest::parse(call.arguments).unwrap();
                assert!(q.extra.collapse_threads);
                assert!(
                    matches!(q.filter, Some(Filter::Condition(EmailFilterCondition { ref in_mailbox, .. })) if in_mailbox.as_ref().unwrap() == "id_of_inbox")
                );
            }
            "Email/get" => {
                let g = EmailGetRequest::parse(call.arguments).unwrap();
                resolved_ids.push(serde_json::to_value(&g.ids).unwrap());
            }
            "Thread/get" => {
                let g = GetRequest::<jmap_proto::method::NoArgs>::parse(call.arguments).unwrap();
                resolved_ids.push(serde_json::to_value(&g.ids).unwrap());
            }
            other => panic!("{other}"),
        }
        if let Some(a) = answers.get(i) {
            response.push(invocation(a.clone()));
        }
    }
    assert_eq!(
        resolved_ids,
        vec![
            json!(["Msg1023", "Msg223"]),
            json!(["Trd194", "Trd114"]),
            json!(["Msg1020", "Msg1021", "Msg1023", "Msg201", "Msg223"]),
        ]
    );
    let out = serde_json::to_value(&response).unwrap();
    assert_eq!(out["sessionState"], "75128aab4b1b");
    assert_eq!(out["methodResponses"][2][0], "Thread/get");
}

#[test]
fn a_failed_call_breaks_references_to_it() {
    let previous =
        vec![jmap_proto::MethodError::new(MethodErrorType::AccountNotFound).into_invocation("t0")];
    let mut args = json!({"#ids": {"resultOf": "t0", "name": "Email/query", "path": "/ids"}})
        .as_object()
        .unwrap()
        .clone();
    let e = resolve_references(&mut args, &previous).unwrap_err();
    assert_eq!(e.kind, MethodErrorType::InvalidResultReference);
}

/// A request whose Email/query filter is `levels` filter objects deep.
fn deep_filter_request(levels: usize) -> String {
    let mut filter = String::new();
    for _ in 1..levels {
        filter.push_str(r#"{"operator":"NOT","conditions":["#);
    }
    filter.push_str(r#"{"text":"x"}"#);
    for _ in 1..levels {
        filter.push_str("]}");
    }
    format!(
        r#"{{"using":["{CORE}","{MAIL}"],"methodCalls":[["Email/query",{{"accountId":"A1","filter":{filter}}},"c0"]]}}"#
    )
}

/// Each filter level costs JSON two levels (object and `conditions` array), and the
/// request wraps the filter in four, so serde_json's recursion limit of 128 lets about
/// 62 filter levels through: deeper filters are refused by `parse_request` as notJSON
/// before `Filter::parse` (limit 64) ever sees them. Both layers are tested.
#[test]
fn filter_depth_through_the_whole_stack() {
    let parse = |levels: usize| {
        let body = deep_filter_request(levels);
        parse_request(body.as_bytes(), &LIMITS, &[CORE, MAIL])
    };
    let mut ok = parse(62).unwrap();
    let call = ok.method_calls.remove(0);
    let q = EmailQueryRequest::parse(call.arguments).unwrap();
    assert!(matches!(q.filter, Some(Filter::Operator(_))));
    for levels in [63, 64, 65, 100, 200] {
        let e = parse(levels).unwrap_err();
        assert_eq!(e.kind, RequestErrorType::NotJson, "{levels}");
    }
}

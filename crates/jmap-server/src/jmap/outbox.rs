//! `Outbox/get`: where an account's write-back stands, a Tidings extension method (under
//! the mail capability) so a client can show it: how many changes still wait for the
//! server (and the transient error they are retried on), whether the account keeps its
//! changes local (POP3), and the changes the server refused for good, which were reverted
//! locally (the revert itself is an ordinary change, pushed like any other). Passing
//! `dismiss: [ids]` forgets failures the user has seen.
//!
//! Request `{"accountId": "a1", "dismiss": ["f3"]}`; response `{"accountId", "pending",
//! "lastError", "localOnly", "failures": [{"id", "kind", "objectId", "reason", "at"}]}`.

use super::{Ctx, ids};
use jmap_proto::{Id, MethodError, UtcDate};
use serde::Deserialize;
use serde_json::{Map, Value, json};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Args {
    account_id: Id,
    #[serde(default)]
    dismiss: Vec<String>,
}

pub(crate) async fn get(
    ctx: &Ctx<'_>,
    args: Map<String, Value>,
) -> Result<Map<String, Value>, MethodError> {
    let a: Args = serde_json::from_value(Value::Object(args))
        .map_err(|e| MethodError::invalid_arguments(e.to_string()))?;
    let account = ctx.account(&a.account_id)?;
    if !a.dismiss.is_empty() {
        let rows: Vec<i64> = a
            .dismiss
            .iter()
            .filter_map(|d| ids::parse('f', d))
            .collect();
        ctx.store
            .outbox_dismiss(account, rows)
            .await
            .map_err(|e| MethodError::server_fail(e.to_string()))?;
    }
    let st = ctx
        .store
        .outbox_status(account)
        .await
        .map_err(|e| MethodError::server_fail(e.to_string()))?;
    let failures: Vec<Value> = st
        .failures
        .iter()
        .map(|f| {
            let prefix = if f.kind.ends_with("mailbox") || f.kind == "subscribe" {
                'm'
            } else {
                'e'
            };
            json!({
                "id": ids::id('f', f.id),
                "kind": f.kind,
                "objectId": f.object.and_then(|o| ids::id(prefix, o)),
                "reason": f.reason,
                "at": UtcDate::from_timestamp(f.at).map(|d| d.to_string()),
            })
        })
        .collect();
    let v = json!({
        "accountId": a.account_id,
        "pending": st.pending,
        "lastError": st.last_error,
        "localOnly": st.local_only,
        "failures": failures,
    });
    super::to_map(&v)
}

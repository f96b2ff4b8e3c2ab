//! Identity/get (RFC 8621 6.1): one identity per account, its login address when that is
//! an email address. Identity/set comes with sending (issue 5).

use super::{Ctx, ids};
use jmap_proto::method::{GetRequest, GetResponse};
use jmap_proto::{IdRef, MethodError};
use serde_json::{Map, Value, json};

pub(crate) async fn get(
    ctx: &Ctx<'_>,
    args: Map<String, Value>,
) -> Result<Map<String, Value>, MethodError> {
    let req: GetRequest = GetRequest::parse(args)?;
    req.check_limit(ctx.max_objects_in_get)?;
    let account = ctx.account(&req.account_id)?;
    let state = ctx.store_state(account).await?;
    let record = ctx
        .store
        .list_accounts()
        .await
        .map_err(|e| MethodError::server_fail(e.to_string()))?
        .into_iter()
        .find(|a| a.id == account);
    let mut list = Vec::new();
    let mut not_found = Vec::new();
    // The one identity has the account's own number: `i<account>`.
    let identity = record.as_ref().and_then(|a| {
        let email = if a.server.username.contains('@') {
            a.server.username.clone()
        } else {
            return None;
        };
        Some(json!({
            "id": ids::id('i', a.id.0),
            "name": "",
            "email": email,
            "replyTo": null,
            "bcc": null,
            "textSignature": "",
            "htmlSignature": "",
            "mayDelete": false,
        }))
    });
    match req.ids.clone() {
        None => list.extend(identity),
        Some(wanted) => {
            for r in wanted {
                let hit =
                    matches!(&r, IdRef::Id(id) if ids::parse('i', id.as_str()) == Some(account.0));
                match (&identity, hit) {
                    (Some(i), true) => list.push(i.clone()),
                    _ => not_found.push(r),
                }
            }
        }
    }
    super::to_map(&GetResponse {
        account_id: req.account_id.clone(),
        state: ids::state(state),
        list,
        not_found,
    })
}

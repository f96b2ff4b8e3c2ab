//! Thread/get (RFC 8621 3.1).

use super::{Ctx, ids};
use jmap_proto::method::NoArgs;
use jmap_proto::{IdRef, MethodError, MethodErrorType};
use serde_json::{Map, Value, json};

pub(crate) async fn get(
    ctx: &Ctx<'_>,
    args: Map<String, Value>,
) -> Result<Map<String, Value>, MethodError> {
    let (req, account) = ctx.get_request::<NoArgs>(args)?;
    let state = ctx.store_state(account).await?;
    let Some(wanted) = req.ids.clone() else {
        return Err(MethodError::with_description(
            MethodErrorType::RequestTooLarge,
            "Thread/get needs ids",
        ));
    };
    let asked: Vec<(IdRef, Option<i64>)> = wanted
        .into_iter()
        .map(|r| {
            let n = match &r {
                IdRef::Id(id) => ids::parse('t', id.as_str()),
                IdRef::Creation(_) => None,
            };
            (r, n)
        })
        .collect();
    let rows: Vec<mail_types::ThreadId> = asked
        .iter()
        .filter_map(|(_, n)| n.map(mail_types::ThreadId))
        .collect();
    let found = ctx
        .store
        .threads(account, &rows)
        .await
        .map_err(|e| MethodError::server_fail(e.to_string()))?;
    let by_id: std::collections::HashMap<i64, &Vec<mail_types::EmailId>> =
        found.iter().map(|(t, e)| (t.0, e)).collect();
    let mut list = Vec::new();
    let mut not_found = Vec::new();
    for (r, n) in asked {
        match n.and_then(|n| by_id.get(&n)) {
            Some(emails) => list.push(json!({
                "id": ids::id('t', n.unwrap_or_default()),
                "emailIds": emails.iter().filter_map(|e| ids::id('e', e.0)).collect::<Vec<_>>(),
            })),
            None => not_found.push(r),
        }
    }
    Ok(req.respond(ids::state(state), list, not_found))
}

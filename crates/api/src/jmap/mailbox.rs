//! Mailbox/get (RFC 8621 2.1).

use super::{Ctx, ids};
use jmap_proto::mail::properties::{MAILBOX_PROPERTIES, check_properties};
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
    let props: Vec<String> = match &req.properties {
        Some(p) => {
            check_properties(p, MAILBOX_PROPERTIES)?;
            p.clone()
        }
        None => MAILBOX_PROPERTIES.iter().map(|s| s.to_string()).collect(),
    };
    let state = ctx.store_state(account).await?;
    let views = ctx
        .store
        .mailbox_views(account)
        .await
        .map_err(|e| MethodError::server_fail(e.to_string()))?;
    let wanted: Option<Vec<IdRef>> = req.ids.clone();
    let mut list = Vec::new();
    let mut not_found = Vec::new();
    let by_id: std::collections::HashMap<i64, &store::MailboxView> =
        views.iter().map(|v| (v.id.0, v)).collect();
    let selected: Vec<&store::MailboxView> = match &wanted {
        None => views.iter().collect(),
        Some(ids) => {
            let mut out = Vec::new();
            for r in ids {
                let found = match r {
                    IdRef::Id(id) => ids::parse('m', id.as_str()).and_then(|n| by_id.get(&n)),
                    IdRef::Creation(_) => None,
                };
                match found {
                    Some(v) => out.push(*v),
                    None => not_found.push(r.clone()),
                }
            }
            out
        }
    };
    for v in selected {
        let mut o = Map::new();
        o.insert("id".into(), json!(ids::id('m', v.id.0)));
        for p in &props {
            let value = match p.as_str() {
                "id" => continue,
                "name" => json!(v.name),
                "parentId" => json!(v.parent.and_then(|p| ids::id('m', p.0))),
                "role" => json!(v.role.map(|r| r.as_str())),
                // Special-use mailboxes first, in the usual order; others by name (the
                // client sorts equal orders by name).
                "sortOrder" => json!(match v.role {
                    Some(mail_types::Role::Inbox) => 1,
                    Some(_) => 2,
                    None => 10,
                }),
                "totalEmails" => json!(v.total_emails),
                "unreadEmails" => json!(v.unread_emails),
                "totalThreads" => json!(v.total_threads),
                "unreadThreads" => json!(v.unread_threads),
                // Write-back comes with issue 5; until then the rights say what works.
                "myRights" => json!({
                    "mayReadItems": v.selectable, "mayAddItems": false, "mayRemoveItems": false,
                    "maySetSeen": false, "maySetKeywords": false, "mayCreateChild": false,
                    "mayRename": false, "mayDelete": false, "maySubmit": false,
                }),
                "isSubscribed" => json!(v.subscribed),
                _ => continue,
            };
            o.insert(p.clone(), value);
        }
        list.push(Value::Object(o));
    }
    let resp = GetResponse {
        account_id: req.account_id.clone(),
        state: ids::state(state),
        list,
        not_found,
    };
    super::to_map(&resp)
}

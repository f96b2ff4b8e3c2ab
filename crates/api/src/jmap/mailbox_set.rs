//! Mailbox/set (RFC 8621 2.5): create, rename, move in the hierarchy (parentId), subscribe,
//! destroy with `onDestroyRemoveEmails`. The store applies each change at once and queues
//! the CREATE/RENAME/DELETE/SUBSCRIBE for the account's outbox worker.

// SetError is the RFC's error object, returned by value as everywhere in the API.
#![allow(clippy::result_large_err)]

use super::email_set::refusal;
use super::{Ctx, ids};
use jmap_proto::method::{SetRequest, SetResponse};
use jmap_proto::{Id, IdRef, MethodError, MethodErrorType, SetError, SetErrorType};
use mail_types::MailboxId;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use store::MailboxPatch;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct MailboxSetArgs {
    #[serde(default)]
    on_destroy_remove_emails: Option<bool>,
}

/// RFC 8621 1.3.1 `maxSizeMailboxName` as advertised.
const MAX_NAME_BYTES: usize = 490;

fn fail(e: impl std::fmt::Display) -> MethodError {
    MethodError::server_fail(e.to_string())
}

fn parent_of(v: &Value, created: &HashMap<String, Id>) -> Result<Option<MailboxId>, SetError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => IdRef::parse(s)
            .ok()
            .and_then(|r| r.resolve(created))
            .and_then(|id| ids::parse('m', id.as_str()))
            .map(|n| Some(MailboxId(n)))
            .ok_or_else(|| SetError::invalid_properties(["parentId"])),
        _ => Err(SetError::invalid_properties(["parentId"])),
    }
}

/// name, parentId (`Some(None)`: top level), isSubscribed, sortOrder.
type Settable = (
    Option<String>,
    Option<Option<MailboxId>>,
    Option<bool>,
    Option<u32>,
);

/// Reads the settable properties of a create or update.
fn read(
    obj: &Map<String, Value>,
    created: &HashMap<String, Id>,
    creating: bool,
) -> Result<Settable, SetError> {
    let mut name = None;
    let mut parent = None;
    let mut subscribed = None;
    let mut sort_order = None;
    for (k, v) in obj {
        match k.as_str() {
            "name" => match v {
                Value::String(s) if !s.is_empty() && s.len() <= MAX_NAME_BYTES => {
                    name = Some(s.clone())
                }
                _ => return Err(SetError::invalid_properties(["name"])),
            },
            "parentId" => parent = Some(parent_of(v, created)?),
            "isSubscribed" => match v {
                Value::Bool(b) => subscribed = Some(*b),
                _ => return Err(SetError::invalid_properties(["isSubscribed"])),
            },
            // Kept in the store only (IMAP has no order of mailboxes).
            "sortOrder" => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
                Some(n) => sort_order = Some(n),
                None => return Err(SetError::invalid_properties(["sortOrder"])),
            },
            // Roles follow the server's SPECIAL-USE attributes; only "no role" can be set.
            "role" if v.is_null() => {}
            _ => {
                return Err(SetError::invalid_properties([k.clone()])
                    .with_description("this property cannot be set"));
            }
        }
    }
    if creating && name.is_none() {
        return Err(SetError::invalid_properties(["name"]).with_description("name is required"));
    }
    Ok((name, parent, subscribed, sort_order))
}

pub(crate) async fn set(
    ctx: &Ctx<'_>,
    args: Map<String, Value>,
    created_ids: &mut HashMap<String, Id>,
) -> Result<Map<String, Value>, MethodError> {
    let req: SetRequest<MailboxSetArgs> = SetRequest::parse(args)?;
    req.check_limit(ctx.max_objects_in_set)?;
    let account = ctx.account(&req.account_id)?;
    let old = ctx.store_state(account).await?;
    if let Some(want) = &req.if_in_state
        && *want != ids::state(old)
    {
        return Err(MethodError::new(MethodErrorType::StateMismatch));
    }
    let mut resp = SetResponse::new(
        req.account_id.clone(),
        Some(ids::state(old)),
        ids::state(old),
    );

    if let Some(create) = &req.create {
        let mut created = BTreeMap::new();
        let mut not_created = BTreeMap::new();
        // Parents before children: a child may name its parent's creation id, whatever
        // order the client's map has (bounded by the number of creates).
        let mut todo: Vec<(&Id, &Map<String, Value>)> = create.iter().collect();
        for _ in 0..=create.len() {
            let mut later = Vec::new();
            for (cid, obj) in todo {
                let waits = obj
                    .get("parentId")
                    .and_then(Value::as_str)
                    .and_then(|s| s.strip_prefix('#'))
                    .is_some_and(|c| {
                        !created_ids.contains_key(c) && create.keys().any(|k| k.as_str() == c)
                    });
                if waits {
                    later.push((cid, obj));
                    continue;
                }
                let (name, parent, subscribed, sort_order) = match read(obj, created_ids, true) {
                    Ok(v) => v,
                    Err(e) => {
                        not_created.insert(cid.clone(), e);
                        continue;
                    }
                };
                let name = name.unwrap_or_default();
                let r = ctx
                    .store
                    .create_mailbox(
                        account,
                        &name,
                        parent.flatten(),
                        subscribed.unwrap_or(false),
                    )
                    .await
                    .map_err(fail)?;
                match r {
                    Ok(id) => {
                        let Some(jid) = ids::id('m', id.0) else {
                            return Err(MethodError::server_fail("mailbox id"));
                        };
                        if sort_order.is_some() {
                            // Local only, so no outbox entry: a second, small transaction.
                            let patch = MailboxPatch {
                                sort_order,
                                ..MailboxPatch::default()
                            };
                            let _ = ctx
                                .store
                                .update_mailbox(account, id, patch)
                                .await
                                .map_err(fail)?;
                        }
                        created_ids.insert(cid.as_str().to_string(), jid.clone());
                        created.insert(
                            cid.clone(),
                            json!({
                                "id": jid, "role": null, "sortOrder": sort_order.unwrap_or(10),
                                "totalEmails": 0, "unreadEmails": 0,
                                "totalThreads": 0, "unreadThreads": 0,
                                "isSubscribed": subscribed.unwrap_or(false),
                                "myRights": super::mailbox::rights(true),
                            }),
                        );
                    }
                    Err(e) => {
                        not_created.insert(cid.clone(), refusal(e, "name"));
                    }
                }
            }
            if later.is_empty() {
                break;
            }
            todo = later;
        }
        resp.created = (!created.is_empty()).then_some(created);
        resp.not_created = (!not_created.is_empty()).then_some(not_created);
    }

    let destroying: Vec<String> = req
        .destroy
        .iter()
        .flatten()
        .filter_map(|r| r.resolve(created_ids))
        .map(|i| i.into_string())
        .collect();

    if let Some(update) = &req.update {
        let mut updated = BTreeMap::new();
        let mut not_updated = BTreeMap::new();
        for (idref, obj) in update {
            let Some((id, row)) = idref
                .resolve(created_ids)
                .and_then(|id| ids::parse('m', id.as_str()).map(|r| (id, r)))
            else {
                not_updated.insert(idref.clone(), SetError::new(SetErrorType::NotFound));
                continue;
            };
            if destroying.iter().any(|d| d == id.as_str()) {
                not_updated.insert(idref.clone(), SetError::new(SetErrorType::WillDestroy));
                continue;
            }
            let (name, parent, subscribed, sort_order) = match read(obj, created_ids, false) {
                Ok(v) => v,
                Err(e) => {
                    not_updated.insert(idref.clone(), e);
                    continue;
                }
            };
            let r = ctx
                .store
                .update_mailbox(
                    account,
                    MailboxId(row),
                    MailboxPatch {
                        name,
                        parent,
                        subscribed,
                        sort_order,
                    },
                )
                .await
                .map_err(fail)?;
            match r {
                Ok(()) => {
                    updated.insert(id, None);
                }
                Err(e) => {
                    let prop = if parent.is_some() { "parentId" } else { "name" };
                    not_updated.insert(idref.clone(), refusal(e, prop));
                }
            }
        }
        resp.updated = (!updated.is_empty()).then_some(updated);
        resp.not_updated = (!not_updated.is_empty()).then_some(not_updated);
    }

    if let Some(destroy) = &req.destroy {
        let remove = req.extra.on_destroy_remove_emails.unwrap_or(false);
        let mut destroyed = Vec::new();
        let mut not_destroyed = BTreeMap::new();
        for idref in destroy {
            let Some((id, row)) = idref
                .resolve(created_ids)
                .and_then(|id| ids::parse('m', id.as_str()).map(|r| (id, r)))
            else {
                not_destroyed.insert(idref.clone(), SetError::new(SetErrorType::NotFound));
                continue;
            };
            let r = ctx
                .store
                .destroy_mailbox(account, MailboxId(row), remove)
                .await
                .map_err(fail)?;
            match r {
                Ok(()) => destroyed.push(id),
                Err(e) => {
                    not_destroyed.insert(idref.clone(), refusal(e, "id"));
                }
            }
        }
        resp.destroyed = (!destroyed.is_empty()).then_some(destroyed);
        resp.not_destroyed = (!not_destroyed.is_empty()).then_some(not_destroyed);
    }
    resp.new_state = ids::state(ctx.store_state(account).await?);
    super::to_map(&resp)
}

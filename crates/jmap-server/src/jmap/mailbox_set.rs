//! Mailbox/set (RFC 8621 2.5): create, rename, move in the hierarchy (parentId), subscribe,
//! destroy with `onDestroyRemoveEmails`. The store applies each change at once and queues
//! the CREATE/RENAME/DELETE/SUBSCRIBE for the account's outbox worker.

// SetError is the RFC's error object, returned by value as everywhere in the API.
#![allow(clippy::result_large_err)]

use super::email_set::refusal;
use super::{Ctx, ids};
use jmap_proto::method::{SetRequest, SetResponse};
use jmap_proto::{Id, IdRef, MethodError, SetError, SetErrorType};
use mail_types::{AccountId, MailboxId, SyncStatus};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use store::{MailboxPatch, WriteRefusal};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct MailboxSetArgs {
    #[serde(default)]
    on_destroy_remove_emails: Option<bool>,
    /// The name drafts of RFC 8621 used, still sent by clients written then (Cyrus takes
    /// it too); the RFC name wins when both are given.
    #[serde(default)]
    on_destroy_remove_messages: Option<bool>,
}

/// RFC 8621 1.3.1 `maxSizeMailboxName` as advertised.
const MAX_NAME_BYTES: usize = 490;

/// Mailbox create, rename and destroy are rare and cheap on the server, and a name the
/// server refuses is common (characters it does not allow): answering `created` and
/// reverting a second later helps no client. So while the account's server is reachable
/// the call waits for the outbox worker's answer, at most this long; unreachable (or no
/// answer in time) it answers from the store, the change stays queued, as every change.
const SERVER_ANSWER_WAIT: Duration = Duration::from_secs(10);
/// How often the wait looks at the queue.
const SERVER_ANSWER_POLL: Duration = Duration::from_millis(20);

/// What a wait for the server's answer compares against.
struct Answer {
    /// The account's engine is connected (sync status ok or syncing).
    reachable: bool,
    /// The newest failure recorded before the call: only later ones are its answer.
    failures_before: i64,
}

impl Answer {
    async fn new(ctx: &Ctx<'_>, account: AccountId) -> Result<Self, MethodError> {
        let reachable = ctx
            .store
            .account(account)
            .await
            .map_err(fail)?
            .is_some_and(|a| matches!(a.status, SyncStatus::Ok | SyncStatus::Syncing));
        let failures_before = if reachable {
            ctx.store
                .outbox_status(account)
                .await
                .map_err(fail)?
                .failures
                .iter()
                .map(|f| f.id)
                .max()
                .unwrap_or(0)
        } else {
            0
        };
        Ok(Self {
            reachable,
            failures_before,
        })
    }

    /// The server's refusal of the queued `kind` entry about mailbox `object`, once the
    /// worker has answered; `None` when it accepted, or when there is no answer to wait
    /// for (unreachable, or none within [`SERVER_ANSWER_WAIT`]).
    async fn refusal(
        &self,
        ctx: &Ctx<'_>,
        account: AccountId,
        object: MailboxId,
        kind: &'static str,
    ) -> Result<Option<String>, MethodError> {
        if !self.reachable {
            return Ok(None);
        }
        let deadline = tokio::time::Instant::now() + SERVER_ANSWER_WAIT;
        while ctx
            .store
            .outbox_has(account, object.0, kind)
            .await
            .map_err(fail)?
        {
            if tokio::time::Instant::now() >= deadline {
                tracing::debug!(account = %account, mailbox = object.0, kind,
                    "no answer from the server in time; answered as queued");
                return Ok(None);
            }
            tokio::time::sleep(SERVER_ANSWER_POLL).await;
        }
        let status = ctx.store.outbox_status(account).await.map_err(fail)?;
        Ok(status
            .failures
            .into_iter()
            .find(|f| f.id > self.failures_before && f.object == Some(object.0) && f.kind == kind)
            .map(|f| f.reason))
    }
}

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
            // Server-set (RFC 8621 2.1), but clients copying a mailbox object send it:
            // ignored when it is what this server gives every new mailbox.
            "myRights" if creating && *v == super::mailbox::rights(true) => {}
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
    let (account, old) = ctx.set_head(&req).await?;
    let mut resp = SetResponse::new(
        req.account_id.clone(),
        Some(ids::state(old)),
        ids::state(old),
    );
    let answer = Answer::new(ctx, account).await?;

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
                // RFC 8621 2: isSubscribed SHOULD default to true outside shared accounts;
                // IMAP clients that show subscribed folders only would not see it otherwise.
                let subscribed = subscribed.unwrap_or(true);
                let r = ctx
                    .store
                    .create_mailbox(account, &name, parent.flatten(), subscribed)
                    .await
                    .map_err(fail)?;
                let r = match r {
                    Ok(id) => match answer.refusal(ctx, account, id, "create_mailbox").await? {
                        // The store reverted it (the mailbox row is gone).
                        Some(reason) => Err(WriteRefusal::Invalid(reason)),
                        None => Ok(id),
                    },
                    Err(e) => Err(e),
                };
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
                                "isSubscribed": subscribed,
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
            let renames = name.is_some() || parent.is_some();
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
            let r = match r {
                Ok(()) if renames => {
                    match answer
                        .refusal(ctx, account, MailboxId(row), "rename_mailbox")
                        .await?
                    {
                        Some(reason) => Err(WriteRefusal::Invalid(reason)),
                        None => Ok(()),
                    }
                }
                r => r,
            };
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
        let remove = req
            .extra
            .on_destroy_remove_emails
            .or(req.extra.on_destroy_remove_messages)
            .unwrap_or(false);
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
            let r = match r {
                Ok(()) => match answer
                    .refusal(ctx, account, MailboxId(row), "delete_mailbox")
                    .await?
                {
                    // The mailbox comes back with the next LIST of the server.
                    Some(reason) => Err(WriteRefusal::Forbidden(reason)),
                    None => Ok(()),
                },
                r => r,
            };
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

//! Identity/get and Identity/set (RFC 8621 6), stored per account. An account whose login
//! is an email address gets that address as its first identity (not deletable) the first
//! time identities are asked for.

use super::{Ctx, ids};
use jmap_proto::method::{NoArgs, SetRequest, SetResponse};
use jmap_proto::{Id, IdRef, MethodError, SetError, SetErrorType};
use mail_types::AccountId;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use store::IdentityRecord;

fn fail(e: store::Error) -> MethodError {
    MethodError::server_fail(e.to_string())
}

/// Creates the login identity when the account has none.
pub(crate) async fn ensure_default(ctx: &Ctx<'_>, account: AccountId) -> Result<(), MethodError> {
    let record = ctx.store.account(account).await.map_err(fail)?;
    if let Some(a) = record
        && a.server.username.contains('@')
    {
        ctx.store
            .ensure_identity(account, &a.server.username)
            .await
            .map_err(fail)?;
    }
    Ok(())
}

fn to_json(i: &IdentityRecord) -> Value {
    let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap_or(Value::Null);
    json!({
        "id": ids::id('i', i.id),
        "name": i.name,
        "email": i.email,
        "replyTo": parse(&i.reply_to),
        "bcc": parse(&i.bcc),
        "textSignature": i.text_signature,
        "htmlSignature": i.html_signature,
        "mayDelete": i.may_delete,
    })
}

pub(crate) async fn get(
    ctx: &Ctx<'_>,
    args: Map<String, Value>,
) -> Result<Map<String, Value>, MethodError> {
    let (req, account) = ctx.get_request::<NoArgs>(args)?;
    ensure_default(ctx, account).await?;
    let state = ctx.store_state(account).await?;
    let all = ctx.store.identities(account).await.map_err(fail)?;
    let (list, not_found) = super::pick(req.ids.as_deref(), 'i', &all, |i| i.id, to_json);
    Ok(req.respond(ids::state(state), list, not_found))
}

/// Applies the settable properties of `obj` to `i`.
// SetError is the answer for the client, built once per object; boxing it buys nothing.
#[allow(clippy::result_large_err)]
fn apply(i: &mut IdentityRecord, obj: &Map<String, Value>, creating: bool) -> Result<(), SetError> {
    let invalid = |p: &str| SetError::invalid_properties([p.to_owned()]);
    for (k, v) in obj {
        match k.as_str() {
            "name" | "textSignature" | "htmlSignature" => {
                let s = v.as_str().ok_or_else(|| invalid(k))?.to_owned();
                if s.len() > 64 * 1024 {
                    return Err(invalid(k).with_description("too long"));
                }
                match k.as_str() {
                    "name" => i.name = s,
                    "textSignature" => i.text_signature = s,
                    _ => i.html_signature = s,
                }
            }
            "replyTo" | "bcc" => {
                let ok = v.is_null()
                    || v.as_array().is_some_and(|a| {
                        a.len() <= 100
                            && a.iter().all(|x| {
                                x.get("email")
                                    .and_then(Value::as_str)
                                    .is_some_and(mime::address::valid_address)
                            })
                    });
                if !ok {
                    return Err(invalid(k));
                }
                if k == "replyTo" {
                    i.reply_to = v.to_string();
                } else {
                    i.bcc = v.to_string();
                }
            }
            "email" if creating => {
                let e = v.as_str().ok_or_else(|| invalid(k))?;
                if !mime::address::valid_address(e) {
                    return Err(invalid(k));
                }
                i.email = e.to_owned();
            }
            "email" if v.as_str() == Some(i.email.as_str()) => {}
            _ => return Err(invalid(k).with_description("immutable, server-set or unknown")),
        }
    }
    Ok(())
}

pub(crate) async fn set(
    ctx: &Ctx<'_>,
    args: Map<String, Value>,
) -> Result<Map<String, Value>, MethodError> {
    let req: SetRequest = SetRequest::parse(args)?;
    req.check_limit(ctx.max_objects_in_get)?;
    let account = ctx.account(&req.account_id)?;
    ensure_default(ctx, account).await?;
    let old = ctx.store_state(account).await?;
    req.check_state(&ids::state(old))?;
    let existing = ctx.store.identities(account).await.map_err(fail)?;
    // RFC 8621 6.3: a server may restrict the addresses; we allow the login's domain.
    let login_domain = existing.iter().find(|i| !i.may_delete).and_then(|i| {
        i.email
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase())
    });
    let mut resp = SetResponse::new(
        req.account_id.clone(),
        Some(ids::state(old)),
        ids::state(old),
    );
    let mut created: BTreeMap<Id, Value> = BTreeMap::new();
    let mut not_created: BTreeMap<Id, SetError> = BTreeMap::new();
    for (cid, obj) in req.create.clone().unwrap_or_default() {
        let mut i = IdentityRecord {
            id: 0,
            account,
            name: String::new(),
            email: String::new(),
            reply_to: "null".into(),
            bcc: "null".into(),
            text_signature: String::new(),
            html_signature: String::new(),
            may_delete: true,
        };
        if let Err(e) = apply(&mut i, &obj, true) {
            not_created.insert(cid, e);
            continue;
        }
        if i.email.is_empty() {
            not_created.insert(cid, SetError::invalid_properties(["email"]));
            continue;
        }
        let domain = i
            .email
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase());
        if login_domain.is_some() && domain != login_domain {
            not_created.insert(cid, SetError::new(SetErrorType::ForbiddenFrom));
            continue;
        }
        let id = ctx.store.create_identity(&i).await.map_err(fail)?;
        created.insert(cid, json!({"id": ids::id('i', id), "mayDelete": true}));
    }
    let mut updated: BTreeMap<Id, Option<Value>> = BTreeMap::new();
    let mut not_updated: BTreeMap<IdRef, SetError> = BTreeMap::new();
    for (r, patch) in req.update.clone().unwrap_or_default() {
        let found = match &r {
            IdRef::Id(id) => ids::parse('i', id.as_str())
                .and_then(|n| existing.iter().find(|i| i.id == n))
                .map(|i| (id.clone(), i.clone())),
            IdRef::Creation(_) => None,
        };
        let Some((id, mut i)) = found else {
            not_updated.insert(r, SetError::new(SetErrorType::NotFound));
            continue;
        };
        if let Err(e) = apply(&mut i, &patch, false) {
            not_updated.insert(r, e);
            continue;
        }
        if ctx.store.update_identity(&i).await.map_err(fail)? {
            updated.insert(id, None);
        } else {
            not_updated.insert(r, SetError::new(SetErrorType::NotFound));
        }
    }
    let mut destroyed = Vec::new();
    let mut not_destroyed: BTreeMap<IdRef, SetError> = BTreeMap::new();
    for r in req.destroy.clone().unwrap_or_default() {
        let found = match &r {
            IdRef::Id(id) => ids::parse('i', id.as_str())
                .and_then(|n| existing.iter().find(|i| i.id == n))
                .map(|i| (id.clone(), i.clone())),
            IdRef::Creation(_) => None,
        };
        match found {
            None => {
                not_destroyed.insert(r, SetError::new(SetErrorType::NotFound));
            }
            Some((_, i)) if !i.may_delete => {
                not_destroyed.insert(r, SetError::new(SetErrorType::Forbidden));
            }
            Some((id, i))
                if ctx
                    .store
                    .destroy_identity(account, i.id)
                    .await
                    .map_err(fail)? =>
            {
                destroyed.push(id);
            }
            Some(_) => {
                not_destroyed.insert(r, SetError::new(SetErrorType::NotFound));
            }
        }
    }
    resp.new_state = ids::state(ctx.store_state(account).await?);
    resp.created = (!created.is_empty()).then_some(created);
    resp.not_created = (!not_created.is_empty()).then_some(not_created);
    resp.updated = (!updated.is_empty()).then_some(updated);
    resp.not_updated = (!not_updated.is_empty()).then_some(not_updated);
    resp.destroyed = (!destroyed.is_empty()).then_some(destroyed);
    resp.not_destroyed = (!not_destroyed.is_empty()).then_some(not_destroyed);
    super::to_map(&resp)
}

//! Email/set (RFC 8621 4.6): keyword and mailbox updates (whole values or patch paths such
//! as `keywords/$seen`), destroy, and create (a draft built with `mail-builder`, stored and
//! APPENDed). Every change goes to the store and its outbox in one transaction (the store's
//! write-back section); the server sees it when the account's outbox worker replays it.

// SetError is the RFC's error object, returned by value as everywhere in the API.
#![allow(clippy::result_large_err)]

use super::{Ctx, ids};
use jmap_proto::mail::keyword::parse_keyword;
use jmap_proto::method::{SetRequest, SetResponse};
use jmap_proto::{Id, IdRef, MethodError, SetError, SetErrorType};
use mail_types::{EmailId, MailboxId};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use store::{EmailPatch, WriteRefusal};

/// RFC 6901 unescaping of one path segment.
fn unescape(s: &str) -> String {
    s.replace("~1", "/").replace("~0", "~")
}

pub(crate) fn refusal(r: WriteRefusal, property: &str) -> SetError {
    match r {
        WriteRefusal::NotFound => SetError::new(SetErrorType::NotFound),
        WriteRefusal::Invalid(d) => {
            SetError::invalid_properties([property.to_string()]).with_description(d)
        }
        WriteRefusal::MailboxHasChild => SetError::new(SetErrorType::MailboxHasChild),
        WriteRefusal::MailboxHasEmail => SetError::new(SetErrorType::MailboxHasEmail),
        WriteRefusal::AlreadyExists => SetError::invalid_properties([property.to_string()])
            .with_description("a mailbox with this name exists"),
        WriteRefusal::Forbidden(d) => SetError::new(SetErrorType::Forbidden).with_description(d),
    }
}

fn fail(e: impl std::fmt::Display) -> MethodError {
    MethodError::server_fail(e.to_string())
}

/// The part of a patch this server can change; everything else of an Email is immutable.
#[derive(Default)]
struct Parsed {
    keywords_all: Option<BTreeSet<String>>,
    keywords_set: BTreeMap<String, bool>,
    mailboxes_all: Option<BTreeSet<i64>>,
    mailboxes_set: BTreeMap<i64, bool>,
}

fn parse_patch(
    patch: &Map<String, Value>,
    created_mailboxes: &HashMap<String, Id>,
) -> Result<Parsed, SetError> {
    let mut p = Parsed::default();
    let mailbox_id = |s: &str| -> Option<i64> {
        match IdRef::parse(s).ok()? {
            IdRef::Id(id) => ids::parse('m', id.as_str()),
            r @ IdRef::Creation(_) => r
                .resolve(created_mailboxes)
                .and_then(|id| ids::parse('m', id.as_str())),
        }
    };
    for (path, value) in patch {
        let (prop, rest) = match path.split_once('/') {
            Some((a, b)) => (a, Some(unescape(b))),
            None => (path.as_str(), None),
        };
        match (prop, rest) {
            ("keywords", None) => {
                let Value::Object(m) = value else {
                    return Err(SetError::invalid_properties(["keywords"]));
                };
                let mut set = BTreeSet::new();
                for (k, v) in m {
                    match (parse_keyword(k), v) {
                        (Some(k), Value::Bool(true)) => {
                            set.insert(k);
                        }
                        _ => return Err(SetError::invalid_properties(["keywords"])),
                    }
                }
                p.keywords_all = Some(set);
            }
            ("keywords", Some(k)) => {
                let Some(k) = parse_keyword(&k) else {
                    return Err(SetError::invalid_properties([path.clone()]));
                };
                match value {
                    Value::Bool(true) => p.keywords_set.insert(k, true),
                    Value::Null => p.keywords_set.insert(k, false),
                    _ => return Err(SetError::new(SetErrorType::InvalidPatch)),
                };
            }
            ("mailboxIds", None) => {
                let Value::Object(m) = value else {
                    return Err(SetError::invalid_properties(["mailboxIds"]));
                };
                let mut set = BTreeSet::new();
                for (k, v) in m {
                    match (mailbox_id(k), v) {
                        (Some(id), Value::Bool(true)) => {
                            set.insert(id);
                        }
                        _ => return Err(SetError::invalid_properties(["mailboxIds"])),
                    }
                }
                p.mailboxes_all = Some(set);
            }
            ("mailboxIds", Some(m)) => {
                let Some(id) = mailbox_id(&m) else {
                    return Err(SetError::invalid_properties([path.clone()]));
                };
                match value {
                    Value::Bool(true) => p.mailboxes_set.insert(id, true),
                    Value::Null => p.mailboxes_set.insert(id, false),
                    _ => return Err(SetError::new(SetErrorType::InvalidPatch)),
                };
            }
            _ => {
                return Err(SetError::invalid_properties([path.clone()])
                    .with_description("this property cannot be changed"));
            }
        }
    }
    // RFC 8620 5.3: a patch may not set a property and also a path inside it.
    if (p.keywords_all.is_some() && !p.keywords_set.is_empty())
        || (p.mailboxes_all.is_some() && !p.mailboxes_set.is_empty())
    {
        return Err(SetError::new(SetErrorType::InvalidPatch));
    }
    Ok(p)
}

pub(crate) async fn set(
    ctx: &Ctx<'_>,
    args: Map<String, Value>,
    created_ids: &mut HashMap<String, Id>,
) -> Result<Map<String, Value>, MethodError> {
    let req: SetRequest = SetRequest::parse(args)?;
    req.check_limit(ctx.max_objects_in_set)?;
    let (account, old) = ctx.set_head(&req).await?;
    let mut resp = SetResponse::new(
        req.account_id.clone(),
        Some(ids::state(old)),
        ids::state(old),
    );

    // Creates first (RFC 8620 5.3), so updates and destroys may name them.
    if let Some(create) = &req.create {
        let mut created = BTreeMap::new();
        let mut not_created = BTreeMap::new();
        for (cid, obj) in create {
            match super::email_create::create(ctx, account, obj, created_ids).await? {
                Ok(v) => {
                    super::creation_refs::record(created_ids, cid, &v);
                    created.insert(cid.clone(), v);
                }
                Err(e) => {
                    not_created.insert(cid.clone(), e);
                }
            }
        }
        resp.created = (!created.is_empty()).then_some(created);
        resp.not_created = (!not_created.is_empty()).then_some(not_created);
    }

    let destroy_ids: BTreeSet<String> = req
        .destroy
        .iter()
        .flatten()
        .filter_map(|r| r.resolve(created_ids))
        .map(|i| i.as_str().to_string())
        .collect();

    if let Some(update) = &req.update {
        let mut not_updated = BTreeMap::new();
        let mut wanted: Vec<(IdRef, EmailId, Parsed)> = Vec::new();
        for (idref, patch) in update {
            let Some(id) = idref.resolve(created_ids) else {
                not_updated.insert(idref.clone(), SetError::new(SetErrorType::NotFound));
                continue;
            };
            if destroy_ids.contains(id.as_str()) {
                not_updated.insert(idref.clone(), SetError::new(SetErrorType::WillDestroy));
                continue;
            }
            let Some(row) = ids::parse('e', id.as_str()) else {
                not_updated.insert(idref.clone(), SetError::new(SetErrorType::NotFound));
                continue;
            };
            match parse_patch(patch, created_ids) {
                Ok(p) => wanted.push((idref.clone(), EmailId(row), p)),
                Err(e) => {
                    not_updated.insert(idref.clone(), e);
                }
            }
        }
        // Whole-value forms need the current values: one read for all of them.
        let need: Vec<EmailId> = wanted
            .iter()
            .filter(|(_, _, p)| p.keywords_all.is_some() || p.mailboxes_all.is_some())
            .map(|(_, e, _)| *e)
            .collect();
        let current: HashMap<EmailId, (BTreeSet<String>, BTreeSet<i64>)> = if need.is_empty() {
            HashMap::new()
        } else {
            ctx.store
                .emails(account, &need)
                .await
                .map_err(fail)?
                .into_iter()
                .map(|v| {
                    (
                        v.id,
                        (
                            v.keywords.into_iter().collect(),
                            v.mailboxes.into_iter().map(|m| m.0).collect(),
                        ),
                    )
                })
                .collect()
        };
        let mut patches = Vec::with_capacity(wanted.len());
        let mut order = Vec::with_capacity(wanted.len());
        for (idref, email, p) in wanted {
            let mut patch = EmailPatch {
                email,
                keywords_add: Vec::new(),
                keywords_remove: Vec::new(),
                mailboxes_add: Vec::new(),
                mailboxes_remove: Vec::new(),
            };
            let cur = current.get(&email);
            if let Some(all) = &p.keywords_all {
                let Some((kw, _)) = cur else {
                    not_updated.insert(idref, SetError::new(SetErrorType::NotFound));
                    continue;
                };
                patch.keywords_add = all.difference(kw).cloned().collect();
                patch.keywords_remove = kw.difference(all).cloned().collect();
            }
            for (k, on) in &p.keywords_set {
                if *on {
                    patch.keywords_add.push(k.clone());
                } else {
                    patch.keywords_remove.push(k.clone());
                }
            }
            if let Some(all) = &p.mailboxes_all {
                let Some((_, mb)) = cur else {
                    not_updated.insert(idref, SetError::new(SetErrorType::NotFound));
                    continue;
                };
                patch.mailboxes_add = all.difference(mb).map(|m| MailboxId(*m)).collect();
                patch.mailboxes_remove = mb.difference(all).map(|m| MailboxId(*m)).collect();
            }
            for (m, on) in &p.mailboxes_set {
                if *on {
                    patch.mailboxes_add.push(MailboxId(*m));
                } else {
                    patch.mailboxes_remove.push(MailboxId(*m));
                }
            }
            patches.push(patch);
            order.push(idref);
        }
        let results = if patches.is_empty() {
            Vec::new()
        } else {
            ctx.store
                .update_emails(account, patches)
                .await
                .map_err(fail)?
        };
        let mut updated = BTreeMap::new();
        for (idref, r) in order.into_iter().zip(results) {
            match r {
                Ok(()) => {
                    if let Some(id) = idref.resolve(created_ids) {
                        updated.insert(id, None);
                    }
                }
                Err(e) => {
                    not_updated.insert(idref, refusal(e, "mailboxIds"));
                }
            }
        }
        resp.updated = (!updated.is_empty()).then_some(updated);
        resp.not_updated = (!not_updated.is_empty()).then_some(not_updated);
    }

    if let Some(destroy) = &req.destroy {
        let mut destroyed = Vec::new();
        let mut not_destroyed = BTreeMap::new();
        let mut todo = Vec::new();
        for idref in destroy {
            match idref
                .resolve(created_ids)
                .and_then(|id| ids::parse('e', id.as_str()).map(|r| (id, r)))
            {
                Some((id, row)) => todo.push((idref.clone(), id, EmailId(row))),
                None => {
                    not_destroyed.insert(idref.clone(), SetError::new(SetErrorType::NotFound));
                }
            }
        }
        if !todo.is_empty() {
            let results = ctx
                .store
                .destroy_emails(account, todo.iter().map(|t| t.2).collect())
                .await
                .map_err(fail)?;
            for ((idref, id, _), r) in todo.into_iter().zip(results) {
                match r {
                    Ok(()) => destroyed.push(id),
                    Err(e) => {
                        not_destroyed.insert(idref, refusal(e, "id"));
                    }
                }
            }
        }
        resp.destroyed = (!destroyed.is_empty()).then_some(destroyed);
        resp.not_destroyed = (!not_destroyed.is_empty()).then_some(not_destroyed);
    }

    resp.new_state = ids::state(ctx.store_state(account).await?);
    super::to_map(&resp)
}

//! Email/import (RFC 8621 4.8): a message uploaded as a blob (RFC 8620 6.1) becomes an
//! Email in the given mailboxes, through the same store call as a draft: stored at once,
//! APPENDed by the outbox worker (exactly once, even through crashes), further mailboxes
//! added as COPYs.

// SetError is the RFC's error object, returned by value as everywhere in the API.
#![allow(clippy::result_large_err)]

use super::email_set::refusal;
use super::{Ctx, ids};
use jmap_proto::mail::keyword::parse_keyword;
use jmap_proto::method::{SetResponse, check_if_in_state};
use jmap_proto::{Id, IdRef, MethodError, MethodErrorType, SetError, SetErrorType, UtcDate};
use mail_types::{AccountId, EmailId, MailboxId};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use store::{AppendRequest, EmailPatch};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ImportArgs {
    account_id: Id,
    #[serde(default)]
    if_in_state: Option<jmap_proto::State>,
    emails: BTreeMap<Id, Map<String, Value>>,
}

fn fail(e: impl std::fmt::Display) -> MethodError {
    MethodError::server_fail(e.to_string())
}

/// The bytes of a blob the caller may read: an upload of the account, or the message of
/// one of its Emails (by content address or by the Email's `bm<id>`).
pub(crate) async fn blob_bytes(
    ctx: &Ctx<'_>,
    account: AccountId,
    blob: &str,
) -> Result<Option<Vec<u8>>, MethodError> {
    if blob.starts_with("bm") {
        // The message of an Email, fetched now if its body is not stored yet.
        return match ctx.messages().resolve(account, blob).await {
            Ok(r) => Ok(Some(r.message)),
            Err(crate::bodies::BlobError::NotFound) => Ok(None),
            Err(e) => Err(e.method_error()),
        };
    }
    let Some(hex) = blob.strip_prefix('b') else {
        return Ok(None);
    };
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    if let Some(b) = ctx.store.upload_bytes(account, hex).await.map_err(fail)? {
        return Ok(Some(b));
    }
    ctx.messages().stored(account, hex).await.map_err(fail)
}

/// Mailboxes, keywords and receivedAt of an import or copy.
pub(crate) type Placement = (Vec<MailboxId>, Vec<String>, Option<i64>);

pub(crate) fn placement(
    obj: &Map<String, Value>,
    created_ids: &HashMap<String, Id>,
) -> Result<Placement, SetError> {
    let bad = |p: &str| SetError::invalid_properties([p.to_string()]);
    let mut mailboxes = Vec::new();
    if let Some(m) = obj.get("mailboxIds") {
        let m = m.as_object().ok_or_else(|| bad("mailboxIds"))?;
        for (id, on) in m {
            if on != &Value::Bool(true) {
                return Err(bad("mailboxIds"));
            }
            let n = IdRef::parse(id)
                .ok()
                .and_then(|r| r.resolve(created_ids))
                .and_then(|i| ids::parse('m', i.as_str()))
                .ok_or_else(|| bad("mailboxIds"))?;
            mailboxes.push(MailboxId(n));
        }
    }
    let mut keywords = Vec::new();
    if let Some(k) = obj.get("keywords") {
        let k = k.as_object().ok_or_else(|| bad("keywords"))?;
        for (kw, on) in k {
            match (parse_keyword(kw), on) {
                (Some(kw), Value::Bool(true)) => keywords.push(kw),
                _ => return Err(bad("keywords")),
            }
        }
    }
    let received = match obj.get("receivedAt") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(
            s.parse::<UtcDate>()
                .map_err(|_| bad("receivedAt"))?
                .timestamp(),
        ),
        Some(_) => return Err(bad("receivedAt")),
    };
    Ok((mailboxes, keywords, received))
}

/// Stores `raw` as a new Email in `mailboxes` (the first by APPEND, the others by COPY).
pub(crate) async fn store_message(
    ctx: &Ctx<'_>,
    account: AccountId,
    raw: Vec<u8>,
    mailboxes: Vec<MailboxId>,
    keywords: Vec<String>,
    received_at: i64,
) -> Result<Result<Value, SetError>, MethodError> {
    let Some(first) = mailboxes.first().copied() else {
        return Ok(Err(
            SetError::invalid_properties(["mailboxIds"]).with_description("at least one mailbox")
        ));
    };
    let size = raw.len();
    let r = ctx
        .store
        .append_email(
            account,
            AppendRequest {
                mailbox: first,
                raw,
                keywords,
                received_at,
            },
        )
        .await
        .map_err(fail)?;
    let id: EmailId = match r {
        Ok(id) => id,
        Err(e) => return Ok(Err(refusal(e, "mailboxIds"))),
    };
    if mailboxes.len() > 1 {
        let res = ctx
            .store
            .update_emails(
                account,
                vec![EmailPatch {
                    email: id,
                    keywords_add: Vec::new(),
                    keywords_remove: Vec::new(),
                    mailboxes_add: mailboxes[1..].to_vec(),
                    mailboxes_remove: Vec::new(),
                }],
            )
            .await
            .map_err(fail)?;
        if let Some(Err(e)) = res.into_iter().next() {
            return Ok(Err(refusal(e, "mailboxIds")));
        }
    }
    let views = ctx.store.emails(account, &[id]).await.map_err(fail)?;
    let v = views.first();
    Ok(Ok(json!({
        "id": ids::id('e', id.0),
        "blobId": v.map(|v| v.jmap_blob_id()),
        "threadId": v.and_then(|v| ids::id('t', v.thread.0)),
        "size": size,
    })))
}

pub(crate) async fn import(
    ctx: &Ctx<'_>,
    args: Map<String, Value>,
    created_ids: &mut HashMap<String, Id>,
) -> Result<Map<String, Value>, MethodError> {
    let a: ImportArgs = serde_json::from_value(Value::Object(args))
        .map_err(|e| MethodError::invalid_arguments(e.to_string()))?;
    if a.emails.len() > ctx.max_objects_in_set {
        return Err(MethodError::with_description(
            MethodErrorType::RequestTooLarge,
            format!("at most {} emails per import", ctx.max_objects_in_set),
        ));
    }
    let account = ctx.account(&a.account_id)?;
    let old = ctx.store_state(account).await?;
    check_if_in_state(a.if_in_state.as_ref(), &ids::state(old))?;
    let mut created = BTreeMap::new();
    let mut not_created = BTreeMap::new();
    for (cid, obj) in &a.emails {
        if let Some(k) = obj
            .keys()
            .find(|k| !["blobId", "mailboxIds", "keywords", "receivedAt"].contains(&k.as_str()))
        {
            not_created.insert(cid.clone(), SetError::invalid_properties([k.clone()]));
            continue;
        }
        let (mailboxes, keywords, received) = match placement(obj, created_ids) {
            Ok(p) => p,
            Err(e) => {
                not_created.insert(cid.clone(), e);
                continue;
            }
        };
        let Some(blob) = obj.get("blobId").and_then(Value::as_str) else {
            not_created.insert(cid.clone(), SetError::invalid_properties(["blobId"]));
            continue;
        };
        let Some(raw) = blob_bytes(ctx, account, blob).await? else {
            let mut e = SetError::new(SetErrorType::BlobNotFound);
            e.not_found = Id::new(blob).ok().map(|i| vec![i]);
            not_created.insert(cid.clone(), e);
            continue;
        };
        // RFC 8621 4.8: it must be an RFC 5322 message (a header with at least one field).
        if !super::email_create::has_header_field(&raw) {
            not_created.insert(
                cid.clone(),
                SetError::new(SetErrorType::InvalidEmail)
                    .with_description("not an RFC 5322 message"),
            );
            continue;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        match store_message(
            ctx,
            account,
            raw,
            mailboxes,
            keywords,
            received.unwrap_or(now),
        )
        .await?
        {
            Ok(v) => {
                super::creation_refs::record(created_ids, cid, &v);
                created.insert(cid.clone(), v);
            }
            Err(e) => {
                not_created.insert(cid.clone(), e);
            }
        }
    }
    let mut resp = SetResponse::new(
        a.account_id.clone(),
        Some(ids::state(old)),
        ids::state(ctx.store_state(account).await?),
    );
    resp.created = (!created.is_empty()).then_some(created);
    resp.not_created = (!not_created.is_empty()).then_some(not_created);
    let mut m = super::to_map(&resp)?;
    // Email/import's response has no updated/destroyed members (RFC 8621 4.8).
    for k in ["updated", "destroyed", "notUpdated", "notDestroyed"] {
        m.remove(k);
    }
    Ok(m)
}

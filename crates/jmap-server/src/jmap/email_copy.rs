//! Email/copy (RFC 8621 4.7, RFC 8620 5.4) between two of the caller's accounts: the
//! message is read from the source account's store and APPENDed to the destination like an
//! import; `onSuccessDestroyOriginal` then destroys the originals through an implicit
//! Email/set, whose response follows (RFC 8620 5.4).

// SetError is the RFC's error object, returned by value as everywhere in the API.
#![allow(clippy::result_large_err)]

use super::email_import::{placement, store_message};
use super::{Ctx, ids};
use jmap_proto::method::check_if_in_state;
use jmap_proto::{Id, MethodError, MethodErrorType, SetError, SetErrorType};
use mail_types::EmailId;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CopyArgs {
    from_account_id: Id,
    #[serde(default)]
    if_from_in_state: Option<jmap_proto::State>,
    account_id: Id,
    #[serde(default)]
    if_in_state: Option<jmap_proto::State>,
    create: BTreeMap<Id, Map<String, Value>>,
    #[serde(default)]
    on_success_destroy_original: bool,
    #[serde(default)]
    destroy_from_if_in_state: Option<jmap_proto::State>,
}

fn fail(e: impl std::fmt::Display) -> MethodError {
    MethodError::server_fail(e.to_string())
}

/// The copy response, and the implicit Email/set's when originals are destroyed.
type Implicit = Option<Result<Map<String, Value>, MethodError>>;

pub(crate) async fn copy(
    ctx: &Ctx<'_>,
    args: Map<String, Value>,
    created_ids: &mut HashMap<String, Id>,
) -> Result<(Map<String, Value>, Implicit), MethodError> {
    let a: CopyArgs = serde_json::from_value(Value::Object(args))
        .map_err(|e| MethodError::invalid_arguments(e.to_string()))?;
    if a.create.len() > ctx.max_objects_in_set {
        return Err(MethodError::with_description(
            MethodErrorType::RequestTooLarge,
            format!("at most {} emails per copy", ctx.max_objects_in_set),
        ));
    }
    // RFC 8620 5.4: an account to copy from that is not the caller's is fromAccountNotFound.
    let from = ctx.account(&a.from_account_id).map_err(|_| {
        jmap_proto::MethodError::new(jmap_proto::MethodErrorType::FromAccountNotFound)
    })?;
    let to = ctx.account(&a.account_id)?;
    if from == to {
        return Err(MethodError::invalid_arguments(
            "fromAccountId and accountId must differ (RFC 8620 5.4)",
        ));
    }
    let from_state = ctx.store_state(from).await?;
    let old = ctx.store_state(to).await?;
    check_if_in_state(a.if_from_in_state.as_ref(), &ids::state(from_state))?;
    check_if_in_state(a.if_in_state.as_ref(), &ids::state(old))?;
    let mut created = Map::new();
    let mut not_created: BTreeMap<Id, SetError> = BTreeMap::new();
    let mut originals = Vec::new();
    for (cid, obj) in &a.create {
        if let Some(k) = obj
            .keys()
            .find(|k| !["id", "mailboxIds", "keywords", "receivedAt"].contains(&k.as_str()))
        {
            not_created.insert(cid.clone(), SetError::invalid_properties([k.clone()]));
            continue;
        }
        let Some(src) = obj
            .get("id")
            .and_then(Value::as_str)
            .and_then(|s| ids::parse('e', s))
            .map(EmailId)
        else {
            not_created.insert(cid.clone(), SetError::new(SetErrorType::NotFound));
            continue;
        };
        let views = ctx.store.emails(from, &[src]).await.map_err(fail)?;
        let Some(view) = views.into_iter().next() else {
            not_created.insert(cid.clone(), SetError::new(SetErrorType::NotFound));
            continue;
        };
        let (mailboxes, mut keywords, received) = match placement(obj, created_ids) {
            Ok(p) => p,
            Err(e) => {
                not_created.insert(cid.clone(), e);
                continue;
            }
        };
        if !obj.contains_key("keywords") {
            keywords = view.keywords.clone();
        }
        // A body not synced yet is fetched now; one gone from the server cannot be copied.
        let raw = match ctx.messages().message(from, view.clone()).await {
            Ok((raw, _)) => raw,
            Err(crate::bodies::BlobError::NotFound) => {
                not_created.insert(
                    cid.clone(),
                    SetError::new(SetErrorType::NotFound)
                        .with_description("the message is no longer on its server"),
                );
                continue;
            }
            Err(e) => return Err(e.method_error()),
        };
        match store_message(
            ctx,
            to,
            raw,
            mailboxes,
            keywords,
            received.unwrap_or(view.received_at),
        )
        .await?
        {
            Ok(v) => {
                super::creation_refs::record(created_ids, cid, &v);
                created.insert(cid.as_str().to_string(), v);
                originals.push(src);
            }
            Err(e) => {
                not_created.insert(cid.clone(), e);
            }
        }
    }
    let resp = json!({
        "fromAccountId": a.from_account_id,
        "accountId": a.account_id,
        "oldState": ids::state(old),
        "newState": ids::state(ctx.store_state(to).await?),
        "created": if created.is_empty() { Value::Null } else { Value::Object(created) },
        "notCreated": if not_created.is_empty() { Value::Null } else { serde_json::to_value(&not_created).map_err(fail)? },
    });
    let resp = super::to_map(&resp)?;
    if !a.on_success_destroy_original || originals.is_empty() {
        return Ok((resp, None));
    }
    let mut set = Map::new();
    set.insert("accountId".into(), json!(a.from_account_id));
    if let Some(s) = &a.destroy_from_if_in_state {
        set.insert("ifInState".into(), json!(s));
    }
    set.insert(
        "destroy".into(),
        json!(
            originals
                .iter()
                .filter_map(|e| ids::id('e', e.0))
                .collect::<Vec<_>>()
        ),
    );
    let destroyed = super::email_set::set(ctx, set, created_ids).await;
    Ok((resp, Some(destroyed)))
}

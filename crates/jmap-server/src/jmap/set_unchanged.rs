//! Server-set and immutable properties sent unchanged in a `*/set` update, for every data
//! type in one place.
//!
//! RFC 8620 5.3: a patch may be the whole object ("The client may choose to optimise
//! network usage by just sending the diff or may send the whole object; the server
//! processes it the same either way"), and a property may be updated only if it is "not
//! immutable or server-set unless unchanged". Clients that read an object, change one
//! property and send it all back (`"id": "m216"` beside a new name) are common. Before the
//! type's own `/set` sees the patches, the properties it cannot set are compared with the
//! object's current value (read with the type's `/get`) and dropped when equal; a
//! different value is left in, for the type's `/set` to refuse with invalidProperties.

use super::Ctx;
use crate::Principal;
use jmap_proto::IdRef;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The properties the type's `/set` update can change; every other top-level property
/// of a patch is server-set or immutable, and is compared. Patch paths (`keywords/$seen`)
/// are never compared.
fn settable(set_method: &str) -> Option<&'static [&'static str]> {
    Some(match set_method {
        "Mailbox/set" => &["name", "parentId", "isSubscribed", "sortOrder"],
        "Email/set" => &["keywords", "mailboxIds"],
        "Identity/set" => &["name", "replyTo", "bcc", "textSignature", "htmlSignature"],
        "EmailSubmission/set" => &["undoStatus"],
        "PushSubscription/set" => &["verificationCode", "expires", "types"],
        _ => return None,
    })
}

/// Drops from the `update` patches of `args` each property the type cannot set whose value
/// equals the object's current one. Anything unexpected (no such object, a `/get` error,
/// more objects than a `/get` serves) leaves the patches as they are: the `/set` then
/// answers as it would have.
pub(crate) async fn drop_unchanged(
    ctx: &Ctx<'_>,
    principal: &Principal,
    set_method: &str,
    args: &mut Map<String, Value>,
    created_ids: &HashMap<String, jmap_proto::Id>,
) {
    let Some(settable) = settable(set_method) else {
        return;
    };
    let Some(Value::Object(update)) = args.get("update") else {
        return;
    };
    // Object id -> the patch keys (in `update`) naming it, and the properties to compare.
    let mut wanted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut props: BTreeSet<String> = BTreeSet::new();
    for (key, patch) in update {
        let Value::Object(patch) = patch else {
            continue;
        };
        let compared: Vec<&String> = patch
            .keys()
            .filter(|k| !k.contains('/') && !settable.contains(&k.as_str()))
            .collect();
        if compared.is_empty() {
            continue;
        }
        let Some(id) = IdRef::parse(key).ok().and_then(|r| r.resolve(created_ids)) else {
            continue;
        };
        wanted
            .entry(id.as_str().to_string())
            .or_default()
            .push(key.clone());
        props.extend(compared.into_iter().cloned());
    }
    if wanted.is_empty() || wanted.len() > ctx.max_objects_in_get {
        return;
    }
    let mut get_args = Map::new();
    if let Some(a) = args.get("accountId") {
        get_args.insert("accountId".into(), a.clone());
    }
    get_args.insert("ids".into(), json!(wanted.keys().collect::<Vec<_>>()));
    get_args.insert("properties".into(), json!(props));
    let got = match set_method {
        "Mailbox/set" => super::mailbox::get(ctx, get_args).await,
        "Email/set" => super::email::get(ctx, get_args).await,
        "Identity/set" => super::identity::get(ctx, get_args).await,
        "EmailSubmission/set" => super::submission::get(ctx, get_args).await,
        "PushSubscription/set" => {
            crate::push::subscription::get(ctx.store, principal.user, get_args).await
        }
        _ => return,
    };
    let Ok(got) = got else {
        return;
    };
    let Some(Value::Array(list)) = got.get("list") else {
        return;
    };
    let Some(Value::Object(update)) = args.get_mut("update") else {
        return;
    };
    for current in list {
        let Some(id) = current.get("id").and_then(Value::as_str) else {
            continue;
        };
        for key in wanted.get(id).into_iter().flatten() {
            let Some(Value::Object(patch)) = update.get_mut(key) else {
                continue;
            };
            patch.retain(|k, v| {
                k.contains('/') || settable.contains(&k.as_str()) || current.get(k) != Some(v)
            });
        }
    }
}

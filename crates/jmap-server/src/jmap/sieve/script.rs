//! SieveScript/get, /set, /query, /validate and /changes (RFC 9661 3-5).

use super::generate::{MAIN_SCRIPT, Main, VACATION_SCRIPT};
use super::{Conn, MAX_NAME, Script, View, connect, fail};
use crate::jmap::{Ctx, SetMaps, ids};
use jmap_proto::method::{ChangesRequest, GetRequest, SetRequest};
use jmap_proto::{Id, IdRef, MethodError, MethodErrorType, SetError, SetErrorType};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// The JMAP blob of a script's content: stored as an upload of the account, so the
/// download endpoint serves it and SieveScript/set can name it again.
async fn blob_id(ctx: &Ctx<'_>, conn: &Conn, content: &[u8]) -> Result<String, MethodError> {
    let r = ctx
        .store
        .put_upload(conn.account, "application/sieve", content.to_vec())
        .await
        .map_err(fail)?;
    Ok(format!("b{}", r.blob_id))
}

/// The bytes of an uploaded blob of the account.
async fn blob_bytes(
    ctx: &Ctx<'_>,
    conn: &Conn,
    blob: &str,
) -> Result<Option<Vec<u8>>, MethodError> {
    let Some(hex) = blob.strip_prefix('b') else {
        return Ok(None);
    };
    ctx.store
        .upload_bytes(conn.account, hex)
        .await
        .map_err(fail)
}

fn script_id(s: &Script) -> String {
    ids::id('S', s.id).map(Id::into_string).unwrap_or_default()
}

async fn to_json(
    ctx: &Ctx<'_>,
    conn: &Conn,
    s: &Script,
    properties: &Option<Vec<String>>,
) -> Result<Value, MethodError> {
    let want = |p: &str| {
        properties
            .as_ref()
            .is_none_or(|ps| ps.iter().any(|x| x == p))
    };
    let mut m = Map::new();
    m.insert("id".into(), json!(script_id(s)));
    if want("name") {
        m.insert("name".into(), json!(s.name));
    }
    if want("blobId") {
        m.insert(
            "blobId".into(),
            json!(blob_id(ctx, conn, &s.content).await?),
        );
    }
    if want("isActive") {
        m.insert("isActive".into(), json!(s.active));
    }
    Ok(Value::Object(m))
}

pub(crate) async fn get(
    ctx: &Ctx<'_>,
    args: Map<String, Value>,
) -> Result<Map<String, Value>, MethodError> {
    let req: GetRequest = GetRequest::parse(args)?;
    req.check_limit(ctx.max_objects_in_get)?;
    if let Some(p) = &req.properties
        && let Some(bad) = p
            .iter()
            .find(|p| !["id", "name", "blobId", "isActive"].contains(&p.as_str()))
    {
        return Err(MethodError::invalid_arguments(format!(
            "unknown property {bad}"
        )));
    }
    let mut conn = connect(ctx, &req.account_id, false).await?;
    let view = View::load(ctx, &mut conn).await?;
    let mut list = Vec::new();
    let mut not_found = Vec::new();
    match &req.ids {
        None => {
            for s in &view.scripts {
                list.push(to_json(ctx, &conn, s, &req.properties).await?);
            }
        }
        Some(wanted) => {
            for r in wanted {
                let hit = match r {
                    IdRef::Id(id) => ids::parse('S', id.as_str())
                        .and_then(|n| view.scripts.iter().find(|s| s.id == n)),
                    IdRef::Creation(_) => None,
                };
                match hit {
                    Some(s) => list.push(to_json(ctx, &conn, s, &req.properties).await?),
                    None => not_found.push(r.clone()),
                }
            }
        }
    }
    let state = view.record(ctx, conn.account).await?;
    conn.client.logout().await;
    Ok(req.respond(state.into(), list, not_found))
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SetExtra {
    #[serde(default)]
    on_success_activate_script: Option<IdRef>,
    #[serde(default)]
    on_success_deactivate_script: Option<bool>,
}

/// A SetError of a type jmap-proto does not name (RFC 9661 5.2: `invalidSieve`,
/// `sieveIsActive`), with a description.
fn sieve_error(kind: &str, description: impl Into<String>) -> Value {
    json!({"type": kind, "description": description.into()})
}

fn set_error(e: SetError) -> Value {
    serde_json::to_value(e).unwrap_or(Value::Null)
}

/// The SetError for a refused PUTSCRIPT or RENAMESCRIPT: over quota, too large, or the
/// server's words about the script; a failed connection fails the whole method.
fn refused_script(e: managesieve::Error) -> Result<Value, MethodError> {
    Ok(match e {
        managesieve::Error::No { ref text, .. } if e.has_code("QUOTA") => {
            set_error(SetError::new(SetErrorType::OverQuota).with_description(text.clone()))
        }
        managesieve::Error::No { ref text, .. } if e.has_code("ALREADYEXISTS") => {
            set_error(SetError::new(SetErrorType::AlreadyExists).with_description(text.clone()))
        }
        managesieve::Error::No { text, .. } => sieve_error("invalidSieve", text),
        managesieve::Error::Invalid(why) => {
            let mut e = SetError::new(SetErrorType::TooLarge).with_description(why);
            e.max_size = Some(managesieve::Limits::default().max_literal as u64);
            set_error(e)
        }
        other => return Err(fail(other)),
    })
}

/// Checks a name for a create or rename.
fn name_error(view: &View, name: &str) -> Option<Value> {
    if name.is_empty() || name.len() > MAX_NAME || name.chars().any(|c| c.is_control()) {
        return Some(set_error(SetError::invalid_properties(["name"])));
    }
    if name == MAIN_SCRIPT || name == VACATION_SCRIPT {
        return Some(set_error(
            SetError::new(SetErrorType::Forbidden)
                .with_description("this name is reserved for the VacationResponse"),
        ));
    }
    if view.all_names.iter().any(|n| n == name) {
        return Some(set_error(SetError::new(SetErrorType::AlreadyExists)));
    }
    None
}

/// The properties of a create or update: `name` and `blobId`; `isActive` is server-set.
#[allow(clippy::type_complexity)]
fn properties(
    obj: &Map<String, Value>,
    current_active: Option<bool>,
) -> Result<(Option<Option<String>>, Option<String>), Value> {
    let mut name = None;
    let mut blob = None;
    for (k, v) in obj {
        match k.as_str() {
            "name" => match v {
                Value::Null => name = Some(None),
                Value::String(s) => name = Some(Some(s.clone())),
                _ => return Err(set_error(SetError::invalid_properties(["name"]))),
            },
            "blobId" => match v.as_str() {
                Some(s) => blob = Some(s.to_owned()),
                None => return Err(set_error(SetError::invalid_properties(["blobId"]))),
            },
            "isActive" if current_active.is_some() && v.as_bool() == current_active => {}
            "isActive" if current_active.is_none() && v.as_bool() == Some(false) => {}
            _ => {
                return Err(set_error(
                    SetError::invalid_properties([k.clone()])
                        .with_description("server-set or unknown"),
                ));
            }
        }
    }
    Ok((name, blob))
}

pub(crate) async fn set(
    ctx: &Ctx<'_>,
    args: Map<String, Value>,
    created_ids: &mut std::collections::HashMap<String, Id>,
) -> Result<Map<String, Value>, MethodError> {
    let req: SetRequest<SetExtra> = SetRequest::parse(args)?;
    req.check_limit(ctx.max_objects_in_set)?;
    let mut conn = connect(ctx, &req.account_id, false).await?;
    let mut view = View::load(ctx, &mut conn).await?;
    let old_state = view.record(ctx, conn.account).await?;
    req.check_state(&old_state.as_str().into())?;
    let mut created = Map::new();
    let mut not_created = Map::new();
    let mut updated = Map::new();
    let mut not_updated = Map::new();
    let mut destroyed = Vec::new();
    let mut not_destroyed = Map::new();
    // Creation id -> script id, for `#creationId` in onSuccessActivateScript.
    let mut made: BTreeMap<String, i64> = BTreeMap::new();

    for (cid, obj) in req.create.clone().unwrap_or_default() {
        let (name, blob) = match properties(&obj, None) {
            Ok(p) => p,
            Err(e) => {
                not_created.insert(cid.to_string(), e);
                continue;
            }
        };
        let Some(blob) = blob else {
            not_created.insert(
                cid.to_string(),
                set_error(SetError::invalid_properties(["blobId"])),
            );
            continue;
        };
        // RFC 9661 3: a null name is the server's to choose.
        let name = match name.flatten() {
            Some(n) => n,
            None => (1..)
                .map(|i| format!("script-{i}"))
                .find(|n| !view.all_names.contains(n))
                .unwrap_or_default(),
        };
        if let Some(e) = name_error(&view, &name) {
            not_created.insert(cid.to_string(), e);
            continue;
        }
        let Some(content) = blob_bytes(ctx, &conn, &blob).await? else {
            let mut e = SetError::new(SetErrorType::BlobNotFound);
            e.not_found = Id::new(blob.clone()).ok().map(|b| vec![b]);
            not_created.insert(cid.to_string(), set_error(e));
            continue;
        };
        if let Err(e) = conn.client.put_script(&name, &content).await {
            not_created.insert(cid.to_string(), refused_script(e)?);
            continue;
        }
        // Kept up to date here rather than read again: a call may create thousands.
        let s = view.added(ctx, conn.account, name, content).await?;
        made.insert(cid.to_string(), s.id);
        if let Some(id) = ids::id('S', s.id) {
            created_ids.insert(cid.to_string(), id);
        }
        created.insert(
            cid.to_string(),
            // The content is the client's blob, byte for byte.
            json!({"id": script_id(&s), "name": s.name, "blobId": blob, "isActive": false}),
        );
    }

    let find = |view: &View, r: &IdRef, made: &BTreeMap<String, i64>| -> Option<Script> {
        let n = match r {
            IdRef::Id(id) => ids::parse('S', id.as_str())?,
            IdRef::Creation(c) => *made.get(c.as_str())?,
        };
        view.scripts.iter().find(|s| s.id == n).cloned()
    };

    for (r, patch) in req.update.clone().unwrap_or_default() {
        let Some(s) = find(&view, &r, &made) else {
            not_updated.insert(
                r.to_string(),
                set_error(SetError::new(SetErrorType::NotFound)),
            );
            continue;
        };
        let (name, blob) = match properties(&patch, Some(s.active)) {
            Ok(p) => p,
            Err(e) => {
                not_updated.insert(r.to_string(), e);
                continue;
            }
        };
        let mut content = None;
        if let Some(blob) = blob {
            let Some(bytes) = blob_bytes(ctx, &conn, &blob).await? else {
                not_updated.insert(
                    r.to_string(),
                    set_error(SetError::new(SetErrorType::BlobNotFound)),
                );
                continue;
            };
            if let Err(e) = conn.client.put_script(&s.name, &bytes).await {
                not_updated.insert(r.to_string(), refused_script(e)?);
                continue;
            }
            content = Some(bytes);
        }
        if let Some(new) = name {
            let Some(new) = new else {
                not_updated.insert(
                    r.to_string(),
                    set_error(SetError::invalid_properties(["name"])),
                );
                continue;
            };
            if new != s.name {
                if let Some(e) = name_error(&view, &new) {
                    not_updated.insert(r.to_string(), e);
                    continue;
                }
                if let Err(e) = conn.client.rename_script(&s.name, &new).await {
                    not_updated.insert(r.to_string(), refused_script(e)?);
                    continue;
                }
                ctx.store
                    .rename_sieve_script(conn.account, s.id, &new)
                    .await
                    .map_err(fail)?;
                // The vacation wrapper follows the user's script to its new name.
                if view.main.as_ref().and_then(|m| m.user_script.as_deref()) == Some(&s.name) {
                    put_main(&mut conn, Some(&new)).await?;
                    view.main = Some(Main {
                        user_script: Some(new.clone()),
                    });
                }
                view.renamed(&s.name, &new);
            }
        }
        if let Some(bytes) = content
            && let Some(x) = view.scripts.iter_mut().find(|x| x.id == s.id)
        {
            x.content = bytes;
        }
        // Nothing the server set: the blobId is the client's, the name as given.
        updated.insert(script_id(&s), Value::Null);
    }

    for r in req.destroy.clone().unwrap_or_default() {
        let Some(s) = find(&view, &r, &made) else {
            not_destroyed.insert(
                r.to_string(),
                set_error(SetError::new(SetErrorType::NotFound)),
            );
            continue;
        };
        // RFC 9661 5.2: the active script cannot be destroyed.
        if s.active {
            not_destroyed.insert(
                r.to_string(),
                sieve_error("sieveIsActive", "deactivate it first"),
            );
            continue;
        }
        match conn.client.delete_script(&s.name).await {
            Ok(()) => destroyed.push(json!(script_id(&s))),
            Err(e) if e.has_code("ACTIVE") => {
                not_destroyed.insert(r.to_string(), sieve_error("sieveIsActive", e.to_string()));
            }
            Err(e) if e.has_code("NONEXISTENT") => {
                not_destroyed.insert(
                    r.to_string(),
                    set_error(SetError::new(SetErrorType::NotFound)),
                );
            }
            Err(e) => return Err(fail(e)),
        }
        view.removed(&s.name);
    }

    // RFC 9661 5.2: activation after every create, update and destroy succeeded.
    let all_ok = not_created.is_empty() && not_updated.is_empty() && not_destroyed.is_empty();
    let before = view.active_user_script().map(|s| s.id);
    // RFC 9661 5.2: deactivation first; an activation id that is invalid or names no
    // script is ignored.
    let activate = req
        .extra
        .on_success_activate_script
        .as_ref()
        .and_then(|r| find(&view, r, &made));
    if all_ok && let Some(s) = &activate {
        if view.main.is_some() {
            put_main(&mut conn, Some(&s.name)).await?;
        } else {
            conn.client.set_active(&s.name).await.map_err(fail)?;
        }
    } else if all_ok && req.extra.on_success_deactivate_script == Some(true) {
        if view.main.is_some() {
            put_main(&mut conn, None).await?;
        } else {
            conn.client.set_active("").await.map_err(fail)?;
        }
    }
    view = View::load(ctx, &mut conn).await?;
    let after = view.active_user_script().map(|s| s.id);
    if before != after {
        // RFC 9661 5.2: the scripts whose isActive changed are reported as updated.
        for (id, active) in [(before, false), (after, true)] {
            let Some(s) = id.and_then(|n| view.scripts.iter().find(|s| s.id == n)) else {
                continue;
            };
            // One created in this call is reported in `created`.
            if let Some((cid, _)) = made.iter().find(|(_, n)| **n == s.id)
                && let Some(Value::Object(m)) = created.get_mut(cid)
            {
                m.insert("isActive".into(), json!(active));
                continue;
            }
            let entry = updated
                .entry(script_id(s))
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(m) = entry {
                m.insert("isActive".into(), json!(active));
            }
        }
    }
    let new_state = view.record(ctx, conn.account).await?;
    conn.client.logout().await;
    Ok(SetMaps {
        created,
        updated,
        destroyed,
        not_created,
        not_updated,
        not_destroyed,
    }
    .answer(&req.account_id, &old_state, &new_state))
}

/// Rewrites the active vacation wrapper to include `user` (or no user script).
pub(super) async fn put_main(conn: &mut Conn, user: Option<&str>) -> Result<(), MethodError> {
    let main = Main {
        user_script: user.map(str::to_owned),
    };
    conn.client
        .put_script(MAIN_SCRIPT, super::generate::main_script(&main).as_bytes())
        .await
        .map_err(fail)?;
    Ok(())
}

/// RFC 9661 5.3: SieveScript/query, filtering on `name` (contains) and `isActive`,
/// sorting on either.
pub(crate) async fn query(
    ctx: &Ctx<'_>,
    args: Map<String, Value>,
) -> Result<Map<String, Value>, MethodError> {
    let account = crate::jmap::account_id_arg(&args)?;
    for k in args.keys() {
        if ![
            "accountId",
            "filter",
            "sort",
            "position",
            "anchor",
            "anchorOffset",
            "limit",
            "calculateTotal",
        ]
        .contains(&k.as_str())
        {
            return Err(MethodError::invalid_arguments(format!(
                "unknown argument {k}"
            )));
        }
    }
    let filter = args.get("filter").cloned().unwrap_or(Value::Null);
    check_filter(&filter)?;
    let mut conn = connect(ctx, &account, false).await?;
    let view = View::load(ctx, &mut conn).await?;
    conn.client.logout().await;
    let mut hits: Vec<&Script> = view
        .scripts
        .iter()
        .filter(|s| matches(&filter, s))
        .collect();
    hits.sort_by_key(|s| s.id);
    if let Some(sort) = args.get("sort").and_then(Value::as_array) {
        for c in sort.iter().rev() {
            let prop = c.get("property").and_then(Value::as_str).unwrap_or("");
            let asc = c
                .get("isAscending")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            match prop {
                "name" => hits.sort_by(|a, b| a.name.cmp(&b.name)),
                "isActive" => hits.sort_by_key(|s| s.active),
                _ => return Err(MethodError::unsupported_sort(prop.to_owned())),
            }
            if !asc {
                hits.reverse();
            }
        }
    }
    let total = hits.len();
    let mut position = args.get("position").and_then(Value::as_i64).unwrap_or(0);
    if let Some(anchor) = args.get("anchor").and_then(Value::as_str) {
        let at = hits
            .iter()
            .position(|s| script_id(s) == anchor)
            .ok_or_else(|| MethodError::new(MethodErrorType::AnchorNotFound))?;
        position = at as i64
            + args
                .get("anchorOffset")
                .and_then(Value::as_i64)
                .unwrap_or(0);
    }
    let start = if position < 0 {
        (total as i64 + position).max(0) as usize
    } else {
        (position as usize).min(total)
    };
    let limit = args
        .get("limit")
        .and_then(Value::as_u64)
        .map_or(total, |l| l as usize);
    let ids: Vec<String> = hits
        .iter()
        .skip(start)
        .take(limit)
        .map(|s| script_id(s))
        .collect();
    let mut out = Map::new();
    out.insert("accountId".into(), json!(account));
    out.insert(
        "queryState".into(),
        json!(view.record(ctx, conn.account).await?),
    );
    out.insert("canCalculateChanges".into(), json!(false));
    out.insert("position".into(), json!(start));
    out.insert("ids".into(), json!(ids));
    if args.get("calculateTotal").and_then(Value::as_bool) == Some(true) {
        out.insert("total".into(), json!(total));
    }
    Ok(out)
}

fn check_filter(f: &Value) -> Result<(), MethodError> {
    match f {
        Value::Null => Ok(()),
        Value::Object(m) if m.contains_key("operator") => {
            let op = m.get("operator").and_then(Value::as_str).unwrap_or("");
            if !["AND", "OR", "NOT"].contains(&op) {
                return Err(MethodError::unsupported_filter(format!("operator {op}")));
            }
            for c in m
                .get("conditions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                check_filter(c)?;
            }
            Ok(())
        }
        Value::Object(m) => {
            for (k, v) in m {
                let ok = match k.as_str() {
                    "name" => v.is_string(),
                    "isActive" => v.is_boolean(),
                    _ => false,
                };
                if !ok {
                    return Err(MethodError::unsupported_filter(k.clone()));
                }
            }
            Ok(())
        }
        _ => Err(MethodError::unsupported_filter("not an object")),
    }
}

fn matches(f: &Value, s: &Script) -> bool {
    match f {
        Value::Object(m) if m.contains_key("operator") => {
            let mut cs = m
                .get("conditions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten();
            match m.get("operator").and_then(Value::as_str) {
                Some("AND") => cs.all(|c| matches(c, s)),
                Some("OR") => cs.any(|c| matches(c, s)),
                _ => !cs.any(|c| matches(c, s)),
            }
        }
        Value::Object(m) => m.iter().all(|(k, v)| match k.as_str() {
            "name" => v.as_str().is_some_and(|n| s.name.contains(n)),
            "isActive" => v.as_bool() == Some(s.active),
            _ => false,
        }),
        _ => true,
    }
}

/// RFC 9661 5.4: SieveScript/validate: CHECKSCRIPT, and the server's words when it
/// refuses.
pub(crate) async fn validate(
    ctx: &Ctx<'_>,
    args: Map<String, Value>,
) -> Result<Map<String, Value>, MethodError> {
    let account = crate::jmap::account_id_arg(&args)?;
    let blob = args
        .get("blobId")
        .and_then(Value::as_str)
        .ok_or_else(|| MethodError::invalid_arguments("blobId"))?
        .to_owned();
    let mut conn = connect(ctx, &account, false).await?;
    let error = match blob_bytes(ctx, &conn, &blob).await? {
        None => {
            let mut e = SetError::new(SetErrorType::BlobNotFound);
            e.not_found = Id::new(blob.clone()).ok().map(|b| vec![b]);
            set_error(e)
        }
        Some(content) => match conn.client.check_script(&content).await {
            Ok(_) => Value::Null,
            Err(managesieve::Error::No { text, .. }) => sieve_error("invalidSieve", text),
            Err(e) => return Err(fail(e)),
        },
    };
    conn.client.logout().await;
    let mut out = Map::new();
    out.insert("accountId".into(), json!(account));
    out.insert("error".into(), error);
    Ok(out)
}

/// SieveScript/changes (RFC 8620 5.2): the state is a digest of the scripts, and what
/// they were under each recent state is kept, so the changes are the difference between
/// that and now; a state no longer kept is `cannotCalculateChanges`.
pub(crate) async fn changes(
    ctx: &Ctx<'_>,
    args: Map<String, Value>,
) -> Result<Map<String, Value>, MethodError> {
    let req = ChangesRequest::parse(args)?;
    let mut conn = connect(ctx, &req.account_id, false).await?;
    let view = View::load(ctx, &mut conn).await?;
    conn.client.logout().await;
    let state = view.record(ctx, conn.account).await?;
    let cannot = |why: &str| {
        MethodError::with_description(MethodErrorType::CannotCalculateChanges, why.to_owned())
    };
    let old: Vec<(i64, String)> = ctx
        .store
        .sieve_snapshot(conn.account, req.since_state.as_str())
        .await
        .map_err(fail)?
        .and_then(|j| serde_json::from_str(&j).ok())
        .ok_or_else(|| cannot("that state is no longer known; get the scripts again"))?;
    let now = view.snapshot();
    let id = |n: &i64| ids::id('S', *n).map(Id::into_string).unwrap_or_default();
    let created: Vec<String> = now
        .iter()
        .filter(|(n, _)| !old.iter().any(|(o, _)| o == n))
        .map(|(n, _)| id(n))
        .collect();
    let updated: Vec<String> = now
        .iter()
        .filter(|(n, d)| old.iter().any(|(o, od)| o == n && od != d))
        .map(|(n, _)| id(n))
        .collect();
    let destroyed: Vec<String> = old
        .iter()
        .filter(|(o, _)| !now.iter().any(|(n, _)| n == o))
        .map(|(o, _)| id(o))
        .collect();
    // No intermediate states exist to page through.
    if req
        .max_changes
        .is_some_and(|m| (created.len() + updated.len() + destroyed.len()) as u64 > m)
    {
        return Err(cannot(
            "more changes than maxChanges; get the scripts again",
        ));
    }
    let mut out = Map::new();
    out.insert("accountId".into(), json!(req.account_id));
    out.insert("oldState".into(), json!(req.since_state));
    out.insert("newState".into(), json!(state));
    out.insert("hasMoreChanges".into(), json!(false));
    out.insert("created".into(), json!(created));
    out.insert("updated".into(), json!(updated));
    out.insert("destroyed".into(), json!(destroyed));
    Ok(out)
}

//! VacationResponse/get and /set (RFC 8621 8): the singleton, kept as a Sieve script
//! the server runs (see `generate`).

use super::generate::{self, MAIN_SCRIPT, Main, VACATION_SCRIPT, Vacation};
use super::{View, connect, fail};
use crate::jmap::{Ctx, SetMaps};
use jmap_proto::method::{GetRequest, SetRequest};
use jmap_proto::{IdRef, MethodError, SetError, SetErrorType, UtcDate};
use serde_json::{Map, Value, json};

const SINGLETON: &str = "singleton";

const PROPERTIES: [&str; 7] = [
    "id",
    "isEnabled",
    "fromDate",
    "toDate",
    "subject",
    "textBody",
    "htmlBody",
];

fn to_json(v: &Vacation, properties: &Option<Vec<String>>) -> Value {
    let full = json!({
        "id": SINGLETON,
        "isEnabled": v.is_enabled,
        "fromDate": v.from_date,
        "toDate": v.to_date,
        "subject": v.subject,
        "textBody": v.text_body,
        "htmlBody": v.html_body,
    });
    let Some(props) = properties else {
        return full;
    };
    let mut m = Map::new();
    if let Value::Object(all) = full {
        for (k, v) in all {
            if k == "id" || props.contains(&k) {
                m.insert(k, v);
            }
        }
    }
    Value::Object(m)
}

pub(crate) async fn get(
    ctx: &Ctx<'_>,
    args: Map<String, Value>,
) -> Result<Map<String, Value>, MethodError> {
    let req: GetRequest = GetRequest::parse(args)?;
    if let Some(p) = &req.properties
        && let Some(bad) = p.iter().find(|p| !PROPERTIES.contains(&p.as_str()))
    {
        return Err(MethodError::invalid_arguments(format!(
            "unknown property {bad}"
        )));
    }
    let mut conn = connect(ctx, &req.account_id, true).await?;
    let view = View::load(ctx, &mut conn).await?;
    conn.client.logout().await;
    let v = view.effective_vacation();
    let mut list = Vec::new();
    let mut not_found = Vec::new();
    match &req.ids {
        None => list.push(to_json(&v, &req.properties)),
        Some(ids) => {
            for r in ids {
                match r {
                    IdRef::Id(id) if id.as_str() == SINGLETON => {
                        list.push(to_json(&v, &req.properties))
                    }
                    other => not_found.push(other.clone()),
                }
            }
        }
    }
    Ok(req.respond(view.vacation_state().into(), list, not_found))
}

/// Applies a patch of the singleton's properties.
#[allow(clippy::result_large_err)]
fn apply(v: &mut Vacation, patch: &Map<String, Value>) -> Result<(), SetError> {
    let invalid = |p: &str| SetError::invalid_properties([p.to_owned()]);
    let text = |k: &str, x: &Value| -> Result<Option<String>, SetError> {
        match x {
            Value::Null => Ok(None),
            // Bounded: the whole script must stay under the ManageSieve literal limit.
            Value::String(s) if s.len() <= 256 * 1024 => Ok(Some(s.clone())),
            _ => Err(invalid(k)),
        }
    };
    let date = |k: &str, x: &Value| -> Result<Option<UtcDate>, SetError> {
        match x {
            Value::Null => Ok(None),
            Value::String(s) if s.ends_with('Z') => s.parse().map(Some).map_err(|_| invalid(k)),
            _ => Err(invalid(k)),
        }
    };
    for (k, x) in patch {
        match k.as_str() {
            "isEnabled" => v.is_enabled = x.as_bool().ok_or_else(|| invalid(k))?,
            "fromDate" => v.from_date = date(k, x)?,
            "toDate" => v.to_date = date(k, x)?,
            "subject" => v.subject = text(k, x)?,
            "textBody" => v.text_body = text(k, x)?,
            "htmlBody" => v.html_body = text(k, x)?,
            "id" if x.as_str() == Some(SINGLETON) => {}
            _ => return Err(invalid(k)),
        }
    }
    Ok(())
}

pub(crate) async fn set(
    ctx: &Ctx<'_>,
    args: Map<String, Value>,
) -> Result<Map<String, Value>, MethodError> {
    let req: SetRequest = SetRequest::parse(args)?;
    let mut conn = connect(ctx, &req.account_id, true).await?;
    let view = View::load(ctx, &mut conn).await?;
    let old_state = view.vacation_state();
    req.check_state(&old_state.as_str().into())?;
    let singleton_error =
        || serde_json::to_value(SetError::new(SetErrorType::Singleton)).unwrap_or(Value::Null);
    let mut not_created = Map::new();
    for (cid, _) in req.create.clone().unwrap_or_default() {
        not_created.insert(cid.to_string(), singleton_error());
    }
    let mut not_destroyed = Map::new();
    for r in req.destroy.clone().unwrap_or_default() {
        not_destroyed.insert(r.to_string(), singleton_error());
    }
    let mut updated = Map::new();
    let mut not_updated = Map::new();
    for (r, patch) in req.update.clone().unwrap_or_default() {
        if !matches!(&r, IdRef::Id(id) if id.as_str() == SINGLETON) {
            let e = SetError::new(SetErrorType::NotFound);
            not_updated.insert(
                r.to_string(),
                serde_json::to_value(e).unwrap_or(Value::Null),
            );
            continue;
        }
        let mut v = view.effective_vacation();
        if let Err(e) = apply(&mut v, &patch) {
            not_updated.insert(
                r.to_string(),
                serde_json::to_value(e).unwrap_or(Value::Null),
            );
            continue;
        }
        if v.from_date.is_some() || v.to_date.is_some() {
            let caps = &conn.caps;
            if !(caps.has_extension("date") && caps.has_extension("relational")) {
                let e = SetError::invalid_properties(["fromDate", "toDate"])
                    .with_description("the mail server's Sieve lacks the date extension");
                not_updated.insert(
                    r.to_string(),
                    serde_json::to_value(e).unwrap_or(Value::Null),
                );
                continue;
            }
        }
        write(&mut conn, &view, &v).await?;
        updated.insert(SINGLETON.into(), Value::Null);
    }
    let view = View::load(ctx, &mut conn).await?;
    let new_state = view.vacation_state();
    conn.client.logout().await;
    // A singleton is neither created nor destroyed (RFC 8621 8).
    Ok(SetMaps {
        updated,
        not_created,
        not_updated,
        not_destroyed,
        ..SetMaps::default()
    }
    .answer(&req.account_id, &old_state, &new_state))
}

/// Stores the vacation script and turns the wrapper on or off: on, it includes the
/// user's active script and becomes the active one; off, the user's script is active
/// again as it was.
async fn write(conn: &mut super::Conn, view: &View, v: &Vacation) -> Result<(), MethodError> {
    conn.client
        .put_script(VACATION_SCRIPT, generate::vacation_script(v).as_bytes())
        .await
        .map_err(fail)?;
    let user = view.active_user_script().map(|s| s.name.clone());
    if v.is_enabled {
        let main = Main { user_script: user };
        conn.client
            .put_script(MAIN_SCRIPT, generate::main_script(&main).as_bytes())
            .await
            .map_err(fail)?;
        if view.server_active.as_deref() != Some(MAIN_SCRIPT) {
            conn.client.set_active(MAIN_SCRIPT).await.map_err(fail)?;
        }
    } else if view.main.is_some() {
        conn.client
            .set_active(user.as_deref().unwrap_or(""))
            .await
            .map_err(fail)?;
        conn.client.delete_script(MAIN_SCRIPT).await.map_err(fail)?;
    }
    Ok(())
}

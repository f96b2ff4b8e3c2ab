//! Quota/get, Quota/changes, Quota/query, Quota/queryChanges (RFC 9425 4), from what the
//! account's IMAP server says in GETQUOTAROOT / GETQUOTA (RFC 9208; stored by the sync,
//! `imap_sync::quota`). An account has the capability only when its server reported a
//! quota; elsewhere the methods answer `accountNotSupportedByMethod` (RFC 8620 3.6.2).
//!
//! Every quota is `scope: "account"` and `types: ["Mail"]`: an IMAP quota root covers the
//! user's mailboxes. IMAP has one limit per resource, so `warnLimit` and `softLimit` are
//! never sent (RFC 9425 2: optional). Quota/queryChanges is `cannotCalculateChanges`: the
//! list is a handful of objects, a client queries again.

use super::{Ctx, ids};
use jmap_proto::method::{Comparator, Filter, FilterCondition, Operator};
use jmap_proto::method::{NoArgs, QueryRequest, QueryResponse};
use jmap_proto::{MethodError, MethodErrorType};
use mail_types::AccountId;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use store::{ObjectType, QuotaRecord, QuotaResource};

/// RFC 9425 3.1: the capability's value, in the Session and in `accountCapabilities`.
pub(crate) fn capability_value() -> Value {
    Value::Object(Map::new())
}

fn fail(e: store::Error) -> MethodError {
    MethodError::server_fail(e.to_string())
}

/// Whether the account's server reported a quota (then it has the capability).
pub(crate) async fn has_quota(store: &dyn store::Store, account: AccountId) -> bool {
    match store.quotas(account).await {
        Ok(q) => !q.is_empty(),
        Err(e) => {
            tracing::warn!(account = %account, error = %e, "reading quotas");
            false
        }
    }
}

/// The account's quotas, or `accountNotSupportedByMethod` when its server has none.
async fn quotas(ctx: &Ctx<'_>, account: AccountId) -> Result<Vec<QuotaRecord>, MethodError> {
    let q = ctx.store.quotas(account).await.map_err(fail)?;
    if q.is_empty() {
        return Err(MethodError::with_description(
            MethodErrorType::AccountNotSupportedByMethod,
            "the account's mail server reports no quota",
        ));
    }
    Ok(q)
}

fn name(q: &QuotaRecord) -> String {
    let what = match q.value.resource {
        QuotaResource::Octets => "storage",
        QuotaResource::Count => "messages",
    };
    if q.value.root.is_empty() {
        format!("Mail ({what})")
    } else {
        format!("{} ({what})", q.value.root)
    }
}

fn to_json(q: &QuotaRecord) -> Value {
    let what = match q.value.resource {
        QuotaResource::Octets => "Octets of mail stored",
        QuotaResource::Count => "Messages stored",
    };
    json!({
        "id": ids::id('q', q.id),
        "resourceType": q.value.resource.as_str(),
        "used": q.value.used,
        "hardLimit": q.value.hard_limit,
        "scope": "account",
        "name": name(q),
        "types": ["Mail"],
        "description": format!(
            "{what} in the account, as its IMAP server counts them (quota root {:?})",
            q.value.root
        ),
    })
}

/// The methods of this module, for `jmap::dispatch`; `using` is the request's.
pub(crate) async fn call(
    ctx: &Ctx<'_>,
    using: &[String],
    name: &str,
    args: Map<String, Value>,
) -> Result<Map<String, Value>, MethodError> {
    // RFC 8620 3.3: a method of a capability not in `using` is unknownMethod.
    if !using.iter().any(|u| u == jmap_proto::capability::QUOTA) {
        return Err(MethodError::with_description(
            MethodErrorType::UnknownMethod,
            "this method needs urn:ietf:params:jmap:quota in using",
        ));
    }
    match name {
        "Quota/get" => get(ctx, args).await,
        "Quota/changes" => changes(ctx, args).await,
        "Quota/query" => query(ctx, args).await,
        "Quota/queryChanges" => query_changes(ctx, args).await,
        _ => Err(MethodError::with_description(
            MethodErrorType::UnknownMethod,
            format!("{name} is not supported"),
        )),
    }
}

const PROPERTIES: &[&str] = &[
    "id",
    "resourceType",
    "used",
    "hardLimit",
    "scope",
    "name",
    "types",
    "warnLimit",
    "softLimit",
    "description",
];

async fn get(ctx: &Ctx<'_>, args: Map<String, Value>) -> Result<Map<String, Value>, MethodError> {
    let (req, account) = ctx.get_request::<NoArgs>(args)?;
    let state = ctx.store_state(account).await?;
    let all = quotas(ctx, account).await?;
    if let Some(p) = req
        .properties
        .iter()
        .flatten()
        .find(|p| !PROPERTIES.contains(&p.as_str()))
    {
        return Err(MethodError::invalid_arguments(format!(
            "unknown property {p:?}"
        )));
    }
    let shape = |q: &QuotaRecord| {
        let mut v = to_json(q);
        if let (Some(props), Value::Object(m)) = (&req.properties, &mut v) {
            // RFC 8620 5.1: the id is always returned.
            m.retain(|k, _| k == "id" || props.iter().any(|p| p == k));
        }
        v
    };
    let (list, not_found) = super::pick(req.ids.as_deref(), 'q', &all, |q| q.id, shape);
    Ok(req.respond(ids::state(state), list, not_found))
}

/// RFC 9425 4.2, from the change log like every type: a quota whose usage or limit
/// moved is `updated`.
async fn changes(
    ctx: &Ctx<'_>,
    args: Map<String, Value>,
) -> Result<Map<String, Value>, MethodError> {
    let (_, account) = ctx.account_arg(&args)?;
    quotas(ctx, account).await?;
    super::changes::changes(ctx, ObjectType::Quota, args).await
}

/// RFC 9425 4.3.1.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct QuotaFilterCondition {
    name: Option<String>,
    scope: Option<String>,
    resource_type: Option<String>,
    #[serde(rename = "type")]
    data_type: Option<String>,
}

impl FilterCondition for QuotaFilterCondition {
    const PROPERTIES: &'static [&'static str] = &["name", "scope", "resourceType", "type"];
    /// RFC 9425 4.3.2.
    const SORT_PROPERTIES: &'static [&'static str] = &["name", "used"];
}

fn matches(f: &Filter<QuotaFilterCondition>, q: &QuotaRecord) -> bool {
    match f {
        Filter::Condition(c) => {
            c.name
                .as_ref()
                .is_none_or(|n| name(q).to_lowercase().contains(&n.to_lowercase()))
                && c.scope.as_ref().is_none_or(|s| s == "account")
                && c.resource_type
                    .as_ref()
                    .is_none_or(|r| r == q.value.resource.as_str())
                && c.data_type.as_ref().is_none_or(|t| t == "Mail")
        }
        Filter::Operator(op) => {
            let mut each = op.conditions.iter().map(|c| matches(c, q));
            match op.operator {
                Operator::And => each.all(|m| m),
                Operator::Or => each.any(|m| m),
                Operator::Not => !each.any(|m| m),
            }
        }
    }
}

fn compare(sort: &[Comparator], a: &QuotaRecord, b: &QuotaRecord) -> std::cmp::Ordering {
    for c in sort {
        let o = match c.property.as_str() {
            "name" => name(a).cmp(&name(b)),
            "used" => a.value.used.cmp(&b.value.used),
            _ => std::cmp::Ordering::Equal,
        };
        let o = if c.is_ascending { o } else { o.reverse() };
        if o.is_ne() {
            return o;
        }
    }
    a.id.cmp(&b.id)
}

async fn query(ctx: &Ctx<'_>, args: Map<String, Value>) -> Result<Map<String, Value>, MethodError> {
    let req: QueryRequest<QuotaFilterCondition> = QueryRequest::parse(args)?;
    let account = ctx.account(&req.account_id)?;
    let state = ctx.store_state(account).await?;
    let mut all = quotas(ctx, account).await?;
    if let Some(f) = &req.filter {
        all.retain(|q| matches(f, q));
    }
    all.sort_by(|a, b| compare(req.sort.as_deref().unwrap_or(&[]), a, b));
    let total = all.len();
    // RFC 8620 5.5: an anchor, else a position (negative: from the end), clamped.
    let start = match &req.anchor {
        Some(anchor) => {
            let at = all
                .iter()
                .position(|q| ids::id('q', q.id).as_ref() == Some(anchor))
                .ok_or_else(|| MethodError::new(MethodErrorType::AnchorNotFound))?;
            let at = i64::try_from(at)
                .unwrap_or(0)
                .saturating_add(req.anchor_offset);
            usize::try_from(at.max(0)).unwrap_or(0)
        }
        None if req.position < 0 => {
            total.saturating_sub(usize::try_from(req.position.unsigned_abs()).unwrap_or(total))
        }
        None => usize::try_from(req.position).unwrap_or(total),
    }
    .min(total);
    let limit = req
        .limit
        .map(|l| usize::try_from(l).unwrap_or(usize::MAX))
        .unwrap_or(usize::MAX);
    let ids: Vec<_> = all[start..]
        .iter()
        .take(limit)
        .filter_map(|q| ids::id('q', q.id))
        .collect();
    super::to_map(&QueryResponse {
        account_id: req.account_id.clone(),
        query_state: ids::state(state),
        can_calculate_changes: false,
        position: start as u64,
        ids,
        total: req.calculate_total.then_some(total as u64),
        limit: None,
    })
}

async fn query_changes(
    ctx: &Ctx<'_>,
    args: Map<String, Value>,
) -> Result<Map<String, Value>, MethodError> {
    let req: jmap_proto::method::QueryChangesRequest<QuotaFilterCondition> =
        jmap_proto::method::QueryChangesRequest::parse(args)?;
    let account = ctx.account(&req.account_id)?;
    quotas(ctx, account).await?;
    Err(MethodError::with_description(
        MethodErrorType::CannotCalculateChanges,
        "quota query changes are not kept; query again",
    ))
}

//! Mailbox/get (RFC 8621 2.1).

use super::{Ctx, ids};
use jmap_proto::mail::properties::{MAILBOX_PROPERTIES, check_properties};
use jmap_proto::method::NoArgs;
use jmap_proto::{IdRef, MethodError};
use serde_json::{Map, Value, json};

pub(crate) async fn get(
    ctx: &Ctx<'_>,
    args: Map<String, Value>,
) -> Result<Map<String, Value>, MethodError> {
    let (req, account) = ctx.get_request::<NoArgs>(args)?;
    let props: Vec<String> = match &req.properties {
        Some(p) => {
            check_properties(p, MAILBOX_PROPERTIES)?;
            p.clone()
        }
        None => MAILBOX_PROPERTIES.iter().map(|s| s.to_string()).collect(),
    };
    let state = ctx.store_state(account).await?;
    let views = ctx
        .store
        .mailbox_views(account)
        .await
        .map_err(|e| MethodError::server_fail(e.to_string()))?;
    let wanted: Option<Vec<IdRef>> = req.ids.clone();
    let mut list = Vec::new();
    let mut not_found = Vec::new();
    let by_id: std::collections::HashMap<i64, &store::MailboxView> =
        views.iter().map(|v| (v.id.0, v)).collect();
    let selected: Vec<&store::MailboxView> = match &wanted {
        None => views.iter().collect(),
        Some(ids) => {
            let mut out = Vec::new();
            for r in ids {
                let found = match r {
                    IdRef::Id(id) => ids::parse('m', id.as_str()).and_then(|n| by_id.get(&n)),
                    IdRef::Creation(_) => None,
                };
                match found {
                    Some(v) => out.push(*v),
                    None => not_found.push(r.clone()),
                }
            }
            out
        }
    };
    for v in selected {
        let mut o = Map::new();
        o.insert("id".into(), json!(ids::id('m', v.id.0)));
        for p in &props {
            let value = match p.as_str() {
                "id" => continue,
                "name" => json!(v.name),
                "parentId" => json!(v.parent.and_then(|p| ids::id('m', p.0))),
                "role" => json!(v.role.map(|r| r.as_str())),
                "sortOrder" => json!(sort_order(v)),
                "totalEmails" => json!(v.total_emails),
                "unreadEmails" => json!(v.unread_emails),
                "totalThreads" => json!(v.total_threads),
                "unreadThreads" => json!(v.unread_threads),
                "myRights" => rights(v.selectable),
                "isSubscribed" => json!(v.subscribed),
                _ => continue,
            };
            o.insert(p.clone(), value);
        }
        list.push(Value::Object(o));
    }
    Ok(req.respond(ids::state(state), list, not_found))
}

fn matches(v: &store::MailboxView, c: &jmap_proto::mail::MailboxFilterCondition) -> bool {
    if let Some(p) = &c.parent_id {
        let want = p.as_ref().and_then(|id| ids::parse('m', id.as_str()));
        if p.is_some() && want.is_none() {
            return false;
        }
        if v.parent.map(|m| m.0) != want {
            return false;
        }
    }
    if let Some(n) = &c.name
        && !v.name.to_lowercase().contains(&n.to_lowercase())
    {
        return false;
    }
    if let Some(r) = &c.role
        && v.role.map(|x| x.as_str().to_string()) != *r
    {
        return false;
    }
    if let Some(h) = c.has_any_role
        && v.role.is_some() != h
    {
        return false;
    }
    if let Some(s) = c.is_subscribed
        && v.subscribed != s
    {
        return false;
    }
    true
}

fn eval(
    v: &store::MailboxView,
    f: &jmap_proto::method::filter::Filter<jmap_proto::mail::MailboxFilterCondition>,
) -> bool {
    use jmap_proto::method::filter::{Filter, Operator};
    match f {
        Filter::Condition(c) => matches(v, c),
        Filter::Operator(op) => match op.operator {
            Operator::And => op.conditions.iter().all(|c| eval(v, c)),
            Operator::Or => op.conditions.iter().any(|c| eval(v, c)),
            Operator::Not => !op.conditions.iter().any(|c| eval(v, c)),
        },
    }
}

/// Mailbox/query (RFC 8621 2.3): every filter condition and operator; sorts by `name` and
/// `sortOrder`; `sortAsTree` puts parents before their children.
pub(crate) async fn query(
    ctx: &Ctx<'_>,
    args: Map<String, Value>,
) -> Result<Map<String, Value>, MethodError> {
    let req: jmap_proto::mail::MailboxQueryRequest =
        jmap_proto::mail::MailboxQueryRequest::parse(args)?;
    let account = ctx.account(&req.account_id)?;
    let state = ctx.store_state(account).await?;
    let hits = ordered(
        ctx,
        account,
        req.filter.as_ref(),
        req.sort.as_deref().unwrap_or(&[]),
        req.extra.sort_as_tree,
    )
    .await?;
    let total = hits.len() as i64;
    let start = if req.position < 0 {
        (total + req.position).max(0)
    } else {
        req.position.min(total)
    } as usize;
    let limit = req.limit.map(|l| l as usize).unwrap_or(usize::MAX);
    let page: Vec<_> = hits
        .iter()
        .skip(start)
        .take(limit)
        .filter_map(|v| ids::id('m', v.0))
        .collect();
    super::to_map(&jmap_proto::method::QueryResponse {
        account_id: req.account_id.clone(),
        query_state: ids::state(state),
        can_calculate_changes: true,
        position: start as u64,
        ids: page,
        total: req.calculate_total.then_some(total as u64),
        limit: None,
    })
}

/// The ids of the account's mailboxes that match, in the query's order (Mailbox/query and
/// Mailbox/queryChanges).
pub(crate) async fn ordered(
    ctx: &Ctx<'_>,
    account: mail_types::AccountId,
    filter: Option<&jmap_proto::method::filter::Filter<jmap_proto::mail::MailboxFilterCondition>>,
    sort: &[jmap_proto::method::sort::Comparator],
    sort_as_tree: bool,
) -> Result<Vec<mail_types::MailboxId>, MethodError> {
    let views = ctx
        .store
        .mailbox_views(account)
        .await
        .map_err(|e| MethodError::server_fail(e.to_string()))?;
    let mut hits: Vec<&store::MailboxView> = views
        .iter()
        .filter(|v| filter.is_none_or(|f| eval(v, f)))
        .collect();
    let order = sort_order;
    for c in sort {
        if c.property != "name" && c.property != "sortOrder" {
            return Err(MethodError::unsupported_sort(format!(
                "cannot sort mailboxes by {}",
                c.property
            )));
        }
    }
    hits.sort_by(|a, b| {
        for c in sort {
            let o = match c.property.as_str() {
                "sortOrder" => order(a).cmp(&order(b)),
                _ => a.name.to_lowercase().cmp(&b.name.to_lowercase()),
            };
            let o = if c.is_ascending { o } else { o.reverse() };
            if o != std::cmp::Ordering::Equal {
                return o;
            }
        }
        a.id.cmp(&b.id)
    });
    if sort_as_tree {
        // Depth-first from the roots, keeping the sorted order among siblings.
        let mut out = Vec::with_capacity(hits.len());
        fn walk<'a>(
            parent: Option<mail_types::MailboxId>,
            hits: &[&'a store::MailboxView],
            out: &mut Vec<&'a store::MailboxView>,
            depth: usize,
        ) {
            if depth > 64 {
                return;
            }
            for h in hits.iter().filter(|h| h.parent == parent) {
                out.push(h);
                walk(Some(h.id), hits, out, depth + 1);
            }
        }
        walk(None, &hits, &mut out, 0);
        // Mailboxes whose parent was filtered out come after, as they were.
        for h in &hits {
            if !out.iter().any(|o| o.id == h.id) {
                out.push(h);
            }
        }
        hits = out;
    }
    Ok(hits.iter().map(|v| v.id).collect())
}

/// RFC 8621 2: what the user may do; every change is written back through the outbox.
pub(crate) fn rights(selectable: bool) -> Value {
    json!({
        "mayReadItems": selectable, "mayAddItems": selectable, "mayRemoveItems": selectable,
        "maySetSeen": selectable, "maySetKeywords": selectable, "mayCreateChild": true,
        "mayRename": true, "mayDelete": true, "maySubmit": selectable,
    })
}

/// The sortOrder the user set (Mailbox/set), else special-use mailboxes first, in the
/// usual order, and the others after them (the client sorts equal orders by name).
fn sort_order(v: &store::MailboxView) -> u32 {
    v.sort_order.unwrap_or(match v.role {
        Some(mail_types::Role::Inbox) => 1,
        Some(_) => 2,
        None => 10,
    })
}

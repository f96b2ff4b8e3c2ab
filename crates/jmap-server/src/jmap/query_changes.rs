//! Email/queryChanges and Mailbox/queryChanges (RFC 8620 5.6), from the change log.
//!
//! A query's state is the account's state. The objects the change log names since
//! `sinceQueryState` are the only ones whose place in the results can have changed
//! (filters and sorts look at an Email's own properties; a query that looks at the other
//! Emails of a thread says `canCalculateChanges: false` and is refused here). So every
//! changed object is reported as removed, and those that are in the current results are
//! added back at their index: RFC 8620 5.6 allows `removed` to name ids that were not in
//! the old results. With `collapseThreads`, the representative of a thread can change
//! when any Email of it changes, so every Email of an affected thread is treated as
//! changed. Positions come from one run of the query's id list (ids only, no Email rows).
//!
//! `upToId` (Email): when every sort key is immutable, an unchanged Email keeps its place
//! relative to every other unchanged one, so the results the client caches up to `upToId`
//! are exactly the current results up to `upToId` once the changed ids are removed and
//! re-added. The run of the query then stops at `upToId` instead of reading every match
//! (the common live update of a long list: one flag changed near the top). When `upToId`
//! is no longer in the results the run goes to the end, as without it.

use super::{Ctx, email, ids, mailbox};
use jmap_proto::mail::EmailQueryChangesRequest;
use jmap_proto::method::query_changes::{AddedItem, QueryChangesResponse};
use jmap_proto::{Id, MethodError, MethodErrorType};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use store::{ChangePosition, ChangesError, EmailQuery, ObjectType};

/// Most changed objects looked at; beyond, the client is told to query again.
const MAX_CHANGED: usize = 20_000;

fn cannot(why: &str) -> MethodError {
    MethodError::with_description(MethodErrorType::CannotCalculateChanges, why.to_string())
}

/// The ids of every object of `object` type changed since `since`, in log order, and the
/// position the log was read up to.
async fn changed(
    ctx: &Ctx<'_>,
    account: mail_types::AccountId,
    object: ObjectType,
    since: ChangePosition,
) -> Result<(Vec<i64>, ChangePosition), MethodError> {
    let page = ctx
        .store
        .changes_page(account, object, since, MAX_CHANGED)
        .await
        .map_err(|e| MethodError::server_fail(e.to_string()))?
        .map_err(|ChangesError::UnknownState| cannot("unknown state"))?;
    if page.has_more {
        return Err(cannot("too many changes since that state; query again"));
    }
    let mut out = page.created;
    out.extend(page.updated);
    out.extend(page.destroyed);
    Ok((out, page.new_position))
}

/// The response from the changed ids and the current ordered results.
fn respond(
    (account_id, old, new): (&Id, &jmap_proto::State, ChangePosition),
    prefix: char,
    changed: &[i64],
    results: &[i64],
    max_changes: Option<u64>,
    total: Option<usize>,
) -> Result<Map<String, Value>, MethodError> {
    let index: HashMap<i64, usize> = results.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let mut seen = HashSet::new();
    let mut removed = Vec::new();
    let mut added = Vec::new();
    for id in changed {
        if !seen.insert(*id) {
            continue;
        }
        let Some(jid) = ids::id(prefix, *id) else {
            continue;
        };
        if let Some(i) = index.get(id) {
            added.push(AddedItem {
                id: jid.clone(),
                index: *i as u64,
            });
        }
        removed.push(jid);
    }
    added.sort_by_key(|a| a.index);
    if let Some(max) = max_changes
        && (removed.len() + added.len()) as u64 > max
    {
        return Err(MethodError::with_description(
            MethodErrorType::TooManyChanges,
            format!(
                "{} changes (removed and added) exceed maxChanges",
                removed.len() + added.len()
            ),
        ));
    }
    super::to_map(&QueryChangesResponse {
        account_id: account_id.clone(),
        old_query_state: old.clone(),
        new_query_state: ids::position_state(ChangePosition::whole(mail_types::State(new.state))),
        total: total.map(|t| t as u64),
        removed,
        added,
    })
}

fn check_max(max: Option<u64>) -> Result<(), MethodError> {
    if max == Some(0) {
        return Err(MethodError::invalid_arguments(
            "maxChanges must be a positive integer",
        ));
    }
    Ok(())
}

pub(crate) async fn email(
    ctx: &Ctx<'_>,
    args: Map<String, Value>,
) -> Result<Map<String, Value>, MethodError> {
    let req = EmailQueryChangesRequest::parse(args)?;
    let account = ctx.account(&req.account_id)?;
    check_max(req.max_changes)?;
    let sort_args = req.sort.as_deref().unwrap_or(&[]);
    let sort = email::store_sort(sort_args)?;
    let filter = req.filter.as_ref().map(email::store_filter).transpose()?;
    if !email::changes_computable(req.filter.as_ref(), sort_args) {
        return Err(cannot(
            "this query looks at other Emails of a thread; its changes are not computed",
        ));
    }
    let since = ids::parse_position(&req.since_query_state)?;
    if since.row != i64::MAX {
        return Err(cannot("not a query state"));
    }
    let (mut changed_ids, new) = changed(ctx, account, ObjectType::Email, since).await?;
    let immutable = sort.iter().all(|s| {
        use store::EmailSortKey as K;
        matches!(
            s.key,
            K::ReceivedAt | K::SentAt | K::Size | K::From | K::To | K::Subject
        )
    });
    let stop_after = req
        .up_to_id
        .as_ref()
        .filter(|_| immutable)
        .and_then(|i| ids::parse('e', i.as_str()))
        .map(mail_types::EmailId);
    let q = EmailQuery {
        filter,
        sort,
        collapse_threads: req.extra.collapse_threads,
        // Stopped early, the run does not see every match: count them apart.
        count: req.calculate_total && stop_after.is_some(),
        stop_after,
        ..EmailQuery::default()
    };
    let result = ctx
        .store
        .query_emails(account, &q)
        .await
        .map_err(|e| MethodError::server_fail(e.to_string()))?;
    if req.extra.collapse_threads {
        // Every Email of a thread that changed, or that holds a changed Email.
        let (mut threads, _) = changed(ctx, account, ObjectType::Thread, since).await?;
        let current: Vec<mail_types::EmailId> = changed_ids
            .iter()
            .map(|n| mail_types::EmailId(*n))
            .collect();
        let views = ctx
            .store
            .emails(account, &current)
            .await
            .map_err(|e| MethodError::server_fail(e.to_string()))?;
        threads.extend(views.iter().map(|v| v.thread.0));
        threads.sort_unstable();
        threads.dedup();
        if threads.len() > MAX_CHANGED {
            return Err(cannot("too many changes since that state; query again"));
        }
        let list: Vec<mail_types::ThreadId> =
            threads.into_iter().map(mail_types::ThreadId).collect();
        let members = ctx
            .store
            .threads(account, &list)
            .await
            .map_err(|e| MethodError::server_fail(e.to_string()))?;
        for (_, emails) in members {
            changed_ids.extend(emails.iter().map(|e| e.0));
        }
    }
    let results: Vec<i64> = result.ids.iter().map(|e| e.0).collect();
    let total = req
        .calculate_total
        .then(|| result.total.unwrap_or(results.len()));
    respond(
        (&req.account_id, &req.since_query_state, new),
        'e',
        &changed_ids,
        &results,
        req.max_changes,
        total,
    )
}

pub(crate) async fn mailbox(
    ctx: &Ctx<'_>,
    args: Map<String, Value>,
) -> Result<Map<String, Value>, MethodError> {
    let req: jmap_proto::method::QueryChangesRequest<
        jmap_proto::mail::MailboxFilterCondition,
        jmap_proto::mail::MailboxQueryArgs,
    > = jmap_proto::method::QueryChangesRequest::parse(args)?;
    let account = ctx.account(&req.account_id)?;
    check_max(req.max_changes)?;
    let since = ids::parse_position(&req.since_query_state)?;
    if since.row != i64::MAX {
        return Err(cannot("not a query state"));
    }
    let (mut changed_ids, new) = changed(ctx, account, ObjectType::Mailbox, since).await?;
    let results: Vec<i64> = mailbox::ordered(
        ctx,
        account,
        req.filter.as_ref(),
        req.sort.as_deref().unwrap_or(&[]),
        req.extra.sort_as_tree,
    )
    .await?
    .into_iter()
    .map(|m| m.0)
    .collect();
    if (req.extra.sort_as_tree || req.extra.filter_as_tree) && !changed_ids.is_empty() {
        // A change to a parent moves (or filters) its whole subtree: report them all.
        changed_ids.extend(results.iter().copied());
    }
    respond(
        (&req.account_id, &req.since_query_state, new),
        'm',
        &changed_ids,
        &results,
        req.max_changes,
        req.calculate_total.then_some(results.len()),
    )
}

//! Mailbox/changes, Email/changes, Thread/changes (RFC 8620 5.2, RFC 8621 2.2): straight
//! from the store's change log, never a scan of the mailbox.

use super::{Ctx, ids};
use jmap_proto::mail::MailboxChangesExtra;
use jmap_proto::method::{ChangesRequest, ChangesResponse};
use jmap_proto::{MethodError, MethodErrorType};
use serde_json::{Map, Value};
use store::{ChangesError, ObjectType};

/// Changes per page when the client gives no maxChanges.
const DEFAULT_MAX_CHANGES: usize = 5_000;

pub(crate) async fn changes(
    ctx: &Ctx<'_>,
    object: ObjectType,
    args: Map<String, Value>,
) -> Result<Map<String, Value>, MethodError> {
    let req = ChangesRequest::parse(args)?;
    let account = ctx.account(&req.account_id)?;
    let since = ids::parse_position(&req.since_state)?;
    let max = req
        .max_changes
        .map(|m| usize::try_from(m).unwrap_or(usize::MAX))
        .unwrap_or(DEFAULT_MAX_CHANGES)
        .min(DEFAULT_MAX_CHANGES);
    let page = ctx
        .store
        .changes_page(account, object, since, max)
        .await
        .map_err(|e| MethodError::server_fail(e.to_string()))?
        .map_err(|ChangesError::UnknownState| {
            MethodError::with_description(MethodErrorType::CannotCalculateChanges, "unknown state")
        })?;
    let prefix = match object {
        ObjectType::Email => 'e',
        ObjectType::Mailbox => 'm',
        ObjectType::Thread => 't',
        ObjectType::EmailSubmission => 's',
        ObjectType::Identity => 'i',
        ObjectType::Quota => 'q',
    };
    let conv = |v: &[i64]| v.iter().filter_map(|n| ids::id(prefix, *n)).collect();
    let created = conv(&page.created);
    let updated = conv(&page.updated);
    let destroyed = conv(&page.destroyed);
    let resp: ChangesResponse = ChangesResponse {
        account_id: req.account_id.clone(),
        old_state: req.since_state.clone(),
        new_state: ids::position_state(page.new_position),
        has_more_changes: page.has_more,
        created,
        updated,
        destroyed,
        extra: Default::default(),
    };
    if object == ObjectType::Mailbox {
        // RFC 8621 2.2: Mailbox/changes adds `updatedProperties`.
        return super::to_map(&resp.with_extra(MailboxChangesExtra::default()));
    }
    super::to_map(&resp)
}

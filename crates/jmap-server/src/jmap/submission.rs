//! EmailSubmission/get, /query and /set (RFC 8621 7). /set create queues the exact bytes
//! of the Email with its envelope in one store transaction; the engine's submission
//! worker sends it once its `sendAt` (the undo window) has come. /changes is the shared
//! change-log method.

use super::{Ctx, ids};
use jmap_proto::method::{NoArgs, SetRequest, SetResponse};
use jmap_proto::{Id, IdRef, MethodError, MethodErrorType, SetError, SetErrorType, UtcDate};
use mail_types::{EmailId, ThreadId};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use store::{CancelOutcome, DraftFate, NewSubmission, SentCopy, SubmissionRecord};

/// Longest hold a client may ask for (FUTURERELEASE HOLDFOR/HOLDUNTIL), RFC 4865.
pub(crate) const MAX_DELAYED_SEND: i64 = 7 * 24 * 3600;
/// Most recipients of one submission.
const MAX_RECIPIENTS: usize = 1000;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn fail(e: store::Error) -> MethodError {
    MethodError::server_fail(e.to_string())
}

fn date(ts: i64) -> Value {
    UtcDate::from_timestamp(ts)
        .and_then(|d| serde_json::to_value(d).ok())
        .unwrap_or(Value::Null)
}

fn to_json(s: &SubmissionRecord) -> Value {
    let envelope: Value = serde_json::from_str(&s.envelope_json).unwrap_or(Value::Null);
    let mut status = Map::new();
    for d in &s.delivery {
        status.insert(
            d.email.clone(),
            json!({"smtpReply": d.smtp_reply, "delivered": d.delivered, "displayed": "unknown"}),
        );
    }
    json!({
        "id": ids::id('s', s.id),
        "identityId": ids::id('i', s.identity),
        "emailId": ids::id('e', s.email.0),
        "threadId": ids::id('t', s.thread.0),
        "envelope": envelope,
        "sendAt": date(s.send_at),
        "undoStatus": s.undo_status.as_str(),
        "deliveryStatus": status,
        "dsnBlobIds": s.dsn_blob_ids.iter().map(|b| format!("b{b}")).collect::<Vec<_>>(),
        "mdnBlobIds": [],
    })
}

fn select(obj: Value, properties: Option<&[String]>) -> Value {
    let (Some(props), Value::Object(m)) = (properties, &obj) else {
        return obj;
    };
    let mut out = Map::new();
    for (k, v) in m {
        if k == "id" || props.iter().any(|p| p == k) {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

pub(crate) async fn get(
    ctx: &Ctx<'_>,
    args: Map<String, Value>,
) -> Result<Map<String, Value>, MethodError> {
    let (req, account) = ctx.get_request::<NoArgs>(args)?;
    let state = ctx.store_state(account).await?;
    let all = ctx.store.submissions(account).await.map_err(fail)?;
    let props = req.properties.as_deref();
    let (list, not_found) = super::pick(
        req.ids.as_deref(),
        's',
        &all,
        |s| s.id,
        |s| select(to_json(s), props),
    );
    Ok(req.respond(ids::state(state), list, not_found))
}

/// RFC 8621 7.3: a FilterCondition (no operators) and sort on emailId, threadId, sentAt.
pub(crate) async fn query(
    ctx: &Ctx<'_>,
    mut args: Map<String, Value>,
) -> Result<Map<String, Value>, MethodError> {
    let invalid = |d: &str| MethodError::with_description(MethodErrorType::InvalidArguments, d);
    let account_id: Id = args
        .remove("accountId")
        .and_then(|v| serde_json::from_value(v).ok())
        .ok_or_else(|| invalid("accountId is required"))?;
    let account = ctx.account(&account_id)?;
    let filter = match args.remove("filter") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) if m.contains_key("operator") => {
            return Err(MethodError::with_description(
                MethodErrorType::UnsupportedFilter,
                "EmailSubmission/query takes one FilterCondition",
            ));
        }
        Some(Value::Object(m)) => m,
        Some(_) => return Err(invalid("filter must be an object")),
    };
    let mut list = ctx.store.submissions(account).await.map_err(fail)?;
    let id_list = |v: &Value, prefix: char| -> Result<Vec<i64>, MethodError> {
        let arr = v
            .as_array()
            .ok_or_else(|| invalid("expected a list of ids"))?;
        Ok(arr
            .iter()
            .filter_map(|x| x.as_str().and_then(|s| ids::parse(prefix, s)))
            .collect())
    };
    let time = |v: &Value| -> Result<i64, MethodError> {
        serde_json::from_value::<UtcDate>(v.clone())
            .map(UtcDate::timestamp)
            .map_err(|_| invalid("expected a UTCDate"))
    };
    for (k, v) in &filter {
        match k.as_str() {
            "identityIds" => {
                let want = id_list(v, 'i')?;
                list.retain(|s| want.contains(&s.identity));
            }
            "emailIds" => {
                let want = id_list(v, 'e')?;
                list.retain(|s| want.contains(&s.email.0));
            }
            "threadIds" => {
                let want = id_list(v, 't')?;
                list.retain(|s| want.contains(&s.thread.0));
            }
            "undoStatus" => {
                let want = v.as_str().ok_or_else(|| invalid("undoStatus"))?.to_owned();
                list.retain(|s| s.undo_status.as_str() == want);
            }
            "before" => {
                let t = time(v)?;
                list.retain(|s| s.send_at < t);
            }
            "after" => {
                let t = time(v)?;
                list.retain(|s| s.send_at >= t);
            }
            other => {
                return Err(MethodError::with_description(
                    MethodErrorType::UnsupportedFilter,
                    format!("unknown filter property {other}"),
                ));
            }
        }
    }
    if let Some(Value::Array(sort)) = args.remove("sort") {
        for c in sort.iter().rev() {
            let prop = c.get("property").and_then(Value::as_str).unwrap_or("");
            let asc = c
                .get("isAscending")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            let key = |s: &SubmissionRecord| match prop {
                "emailId" => Ok(s.email.0),
                "threadId" => Ok(s.thread.0),
                "sentAt" => Ok(s.send_at),
                _ => Err(()),
            };
            if !["emailId", "threadId", "sentAt"].contains(&prop) {
                return Err(MethodError::with_description(
                    MethodErrorType::UnsupportedSort,
                    format!("cannot sort on {prop}"),
                ));
            }
            list.sort_by_key(|s| key(s).unwrap_or(0));
            if !asc {
                list.reverse();
            }
        }
    }
    let total = list.len();
    let position = args
        .get("position")
        .and_then(Value::as_i64)
        .unwrap_or(0)
        .clamp(-(i64::try_from(total).unwrap_or(0)), i64::MAX);
    let start = if position < 0 {
        total.saturating_sub(usize::try_from(-position).unwrap_or(0))
    } else {
        usize::try_from(position).unwrap_or(usize::MAX).min(total)
    };
    let limit = args
        .get("limit")
        .and_then(Value::as_u64)
        .map(|l| usize::try_from(l).unwrap_or(usize::MAX))
        .unwrap_or(usize::MAX);
    let page: Vec<Value> = list
        .iter()
        .skip(start)
        .take(limit)
        .filter_map(|s| ids::id('s', s.id))
        .map(|i| json!(i))
        .collect();
    let state = ctx.store_state(account).await?;
    let mut out = Map::new();
    out.insert("accountId".into(), json!(account_id));
    out.insert("queryState".into(), json!(ids::state(state)));
    out.insert("canCalculateChanges".into(), json!(false));
    out.insert("position".into(), json!(start));
    out.insert("ids".into(), Value::Array(page));
    if args.get("calculateTotal").and_then(Value::as_bool) == Some(true) {
        out.insert("total".into(), json!(total));
    }
    Ok(out)
}

/// The delay asked for by FUTURERELEASE parameters on mailFrom (RFC 4865).
// SetError is the answer for the client; boxing it buys nothing.
#[allow(clippy::result_large_err)]
fn hold_from_parameters(params: &Map<String, Value>) -> Result<Option<i64>, SetError> {
    let bad = |d: &str| SetError::invalid_properties(["envelope"]).with_description(d);
    for (k, v) in params {
        match k.to_ascii_uppercase().as_str() {
            "HOLDFOR" => {
                let secs: i64 = v
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .or_else(|| v.as_i64())
                    .ok_or_else(|| bad("HOLDFOR takes seconds"))?;
                if !(0..=MAX_DELAYED_SEND).contains(&secs) {
                    return Err(bad("HOLDFOR is beyond maxDelayedSend"));
                }
                return Ok(Some(now() + secs));
            }
            "HOLDUNTIL" => {
                let at = v
                    .as_str()
                    .and_then(|s| serde_json::from_value::<UtcDate>(json!(s)).ok())
                    .ok_or_else(|| bad("HOLDUNTIL takes a date"))?
                    .timestamp();
                if at - now() > MAX_DELAYED_SEND {
                    return Err(bad("HOLDUNTIL is beyond maxDelayedSend"));
                }
                return Ok(Some(at));
            }
            _ => {}
        }
    }
    Ok(None)
}

fn address_of(v: &Value) -> Option<String> {
    v.get("email").and_then(Value::as_str).map(str::to_owned)
}

/// Validates one create and queues it. Returns the new row id. `draft` says whether the
/// Email is destroyed once the message is sent (onSuccessDestroyEmail).
async fn create_one(
    ctx: &Ctx<'_>,
    account: mail_types::AccountId,
    obj: &Map<String, Value>,
    created_ids: &HashMap<String, Id>,
    draft: DraftFate,
    held: bool,
) -> Result<SubmissionRecord, SetError> {
    // RFC 8620 5.3: "#creationId" names an object created earlier in the request (the
    // draft made by Email/set create just before).
    let resolve_ref = |v: Option<&Value>| -> Option<String> {
        let s = v?.as_str()?;
        match s.strip_prefix('#') {
            Some(c) => created_ids.get(c).map(|id| id.as_str().to_owned()),
            None => Some(s.to_owned()),
        }
    };
    let invalid = |p: &str| SetError::invalid_properties([p.to_owned()]);
    for (k, v) in obj {
        // Clients may send server-set properties as null (RFC 8620 5.3 allows the
        // server-set values themselves; null is what a client library leaves unset).
        if !v.is_null() && !["identityId", "emailId", "envelope"].contains(&k.as_str()) {
            return Err(invalid(k).with_description("server-set or unknown property"));
        }
    }
    let identity_id = resolve_ref(obj.get("identityId"))
        .and_then(|s| ids::parse('i', &s))
        .ok_or_else(|| invalid("identityId"))?;
    let email_id = resolve_ref(obj.get("emailId"))
        .and_then(|s| ids::parse('e', &s))
        .ok_or_else(|| invalid("emailId"))?;
    let server_fail =
        |e: store::Error| SetError::new(SetErrorType::Forbidden).with_description(e.to_string());
    // RFC 8621 7.5 forbiddenToSend: refused now, while the client still has the draft,
    // rather than accepted and failed later (the message would look sent until then).
    let record = ctx.store.account(account).await.map_err(server_fail)?;
    if record.as_ref().is_none_or(|a| a.smtp.is_none()) {
        return Err(
            SetError::new(SetErrorType::ForbiddenToSend).with_description(
                "this account has no outgoing mail server (SMTP) configured, so nothing can be \
             sent from it; the message was not sent",
            ),
        );
    }
    let identities = ctx.store.identities(account).await.map_err(server_fail)?;
    let identity = identities
        .iter()
        .find(|i| i.id == identity_id)
        .ok_or_else(|| invalid("identityId").with_description("no such identity"))?;
    let emails = ctx
        .store
        .emails(account, &[EmailId(email_id)])
        .await
        .map_err(server_fail)?;
    let email = emails
        .first()
        .ok_or_else(|| invalid("emailId").with_description("no such email"))?;
    // A body the sync has not stored yet is fetched now.
    let (raw, blob) = match ctx.messages().message(account, email.clone()).await {
        Ok(found) => found,
        Err(crate::bodies::BlobError::NotFound) => {
            return Err(SetError::new(SetErrorType::InvalidEmail)
                .with_description("the message is no longer on its server"));
        }
        Err(e) => {
            return Err(SetError::new(SetErrorType::Forbidden)
                .with_description(e.method_error().description.unwrap_or_default()));
        }
    };
    let (envelope_json, mail_from, rcpt_to, hold) = match obj.get("envelope") {
        None | Some(Value::Null) => {
            let e = mime::address::envelope_from_headers(&raw).ok_or_else(|| {
                SetError::new(SetErrorType::NoRecipients)
                    .with_description("no sender or no recipient in the message header")
            })?;
            let json = json!({
                "mailFrom": {"email": e.mail_from, "parameters": null},
                "rcptTo": e.rcpt_to.iter().map(|r| json!({"email": r, "parameters": null})).collect::<Vec<_>>(),
            });
            (json, e.mail_from, e.rcpt_to, None)
        }
        Some(env) => {
            let from = env
                .get("mailFrom")
                .and_then(address_of)
                .ok_or_else(|| invalid("envelope"))?;
            let hold = match env.get("mailFrom").and_then(|m| m.get("parameters")) {
                Some(Value::Object(p)) => hold_from_parameters(p)?,
                _ => None,
            };
            let rcpts: Vec<String> = env
                .get("rcptTo")
                .and_then(Value::as_array)
                .ok_or_else(|| invalid("envelope"))?
                .iter()
                .map(address_of)
                .collect::<Option<_>>()
                .ok_or_else(|| invalid("envelope"))?;
            (env.clone(), from, rcpts, hold)
        }
    };
    if rcpt_to.is_empty() {
        return Err(SetError::new(SetErrorType::NoRecipients));
    }
    if rcpt_to.len() > MAX_RECIPIENTS {
        let mut e = SetError::new(SetErrorType::TooManyRecipients);
        e.max_recipients = Some(MAX_RECIPIENTS as u64);
        return Err(e);
    }
    let bad: Vec<&String> = rcpt_to
        .iter()
        .filter(|r| !mime::address::valid_address(r))
        .collect();
    if !bad.is_empty() {
        let mut e = SetError::new(SetErrorType::InvalidRecipients);
        e.invalid_recipients = Some(bad.into_iter().cloned().collect());
        return Err(e);
    }
    if !mail_from.is_empty() && !mime::address::valid_address(&mail_from) {
        return Err(SetError::new(SetErrorType::ForbiddenMailFrom));
    }
    // RFC 8621 7.5: the envelope sender must be one the identity may use.
    if !mail_from.eq_ignore_ascii_case(&identity.email) {
        return Err(SetError::new(SetErrorType::ForbiddenMailFrom)
            .with_description("mailFrom is not the identity's address"));
    }
    let parsed = mime::parse_header(&raw);
    let server_files = ctx
        .store
        .server_files_sent(account)
        .await
        .map_err(server_fail)?;
    let sent_copy = if server_files || email_in_sent(ctx, account, &email.mailboxes).await {
        SentCopy::None
    } else {
        SentCopy::Append
    };
    let new = NewSubmission {
        account,
        identity: identity_id,
        email: email.id,
        thread: ThreadId(email.thread.0),
        envelope_json: envelope_json.to_string(),
        mail_from,
        rcpt_to,
        raw,
        // The submission holds the Email's blob: the exact bytes, kept for as long as
        // the send, the Sent copy or a return to Drafts needs them.
        blob_id: Some(blob),
        draft,
        message_id: parsed.message_id,
        send_at: hold
            .unwrap_or_else(|| now() + i64::try_from(ctx.submission_delay.as_secs()).unwrap_or(0)),
        sent_copy,
    };
    let send_at = new.send_at;
    // Held: stored to be sent no sooner than HELD_FOR_UPDATE from now, and brought back to
    // `send_at` by the caller once the Email was updated.
    let new = NewSubmission {
        send_at: if held {
            send_at.max(now() + HELD_FOR_UPDATE)
        } else {
            send_at
        },
        ..new
    };
    let id = ctx
        .store
        .create_submission(&new)
        .await
        .map_err(server_fail)?;
    let all = ctx.store.submissions(account).await.map_err(server_fail)?;
    let mut record = all
        .into_iter()
        .find(|s| s.id == id)
        .ok_or_else(|| SetError::new(SetErrorType::NotFound))?;
    record.send_at = send_at;
    Ok(record)
}

/// How long a submission created with an onSuccessUpdateEmail waits for that update at
/// most (seconds). RFC 8621 7.5 applies the update once the creation succeeded, in the
/// same method call; but the submission worker may take a new submission at once, and
/// one that fails for good puts its Email back into Drafts (DESIGN.md invariant 9). Sent
/// and settled before the update, its Email would then be moved to Sent after the
/// worker had found it still in Drafts: an unsent message looking sent. So the
/// submission waits until the update is applied; should the request die in between, it
/// is sent this much later, and no sooner.
const HELD_FOR_UPDATE: i64 = 60;

/// Whether one of the Email's mailboxes is the account's Sent mailbox (then the copy
/// there exists already and none is appended).
async fn email_in_sent(
    ctx: &Ctx<'_>,
    account: mail_types::AccountId,
    mailboxes: &[mail_types::MailboxId],
) -> bool {
    match ctx.store.mailboxes(account).await {
        Ok(list) => list
            .iter()
            .any(|m| m.role == Some(mail_types::Role::Sent) && mailboxes.contains(&m.id)),
        Err(_) => false,
    }
}

/// Returns the EmailSubmission/set response and, when onSuccessUpdateEmail or
/// onSuccessDestroyEmail applied, the response of the implicit Email/set.
pub(crate) async fn set(
    ctx: &Ctx<'_>,
    args: Map<String, Value>,
    created_ids: &mut HashMap<String, Id>,
) -> Result<(Map<String, Value>, Option<Map<String, Value>>), MethodError> {
    let req: SetRequest<jmap_proto::mail::EmailSubmissionSetArgs> = SetRequest::parse(args)?;
    req.check_limit(ctx.max_objects_in_get)?;
    let (account, old) = ctx.set_head(&req).await?;
    super::identity::ensure_default(ctx, account).await?;
    let mut created: BTreeMap<Id, Value> = BTreeMap::new();
    let mut not_created: BTreeMap<Id, SetError> = BTreeMap::new();
    // Creation id -> the Email it submitted, for onSuccess* keyed by "#creationId".
    let mut emails_of: HashMap<String, i64> = HashMap::new();
    // Submissions held for their onSuccessUpdateEmail, with the time they are to be sent.
    let mut release: Vec<(i64, i64)> = Vec::new();
    for (cid, obj) in req.create.clone().unwrap_or_default() {
        // RFC 8621 7.5 onSuccessDestroyEmail for a submission created here: the Email is
        // destroyed once the message was sent and its Sent copy made, not now; a send
        // that fails or is canceled leaves it in Drafts (DESIGN.md invariant 9).
        let destroy_when_sent = req
            .extra
            .on_success_destroy_email
            .iter()
            .flatten()
            .any(|r| matches!(r, IdRef::Creation(c) if c.as_str() == cid.as_str()));
        let draft = if destroy_when_sent {
            DraftFate::DestroyWhenSent
        } else {
            DraftFate::Keep
        };
        // Held until its onSuccessUpdateEmail is applied (HELD_FOR_UPDATE).
        let held = req
            .extra
            .on_success_update_email
            .iter()
            .flatten()
            .any(|(r, _)| matches!(r, IdRef::Creation(c) if c.as_str() == cid.as_str()));
        match create_one(ctx, account, &obj, created_ids, draft, held).await {
            Ok(s) => {
                if held {
                    release.push((s.id, s.send_at));
                }
                if let Some(id) = ids::id('s', s.id) {
                    created_ids.insert(cid.as_str().to_owned(), id);
                }
                emails_of.insert(cid.as_str().to_owned(), s.email.0);
                created.insert(
                    cid,
                    json!({
                        "id": ids::id('s', s.id),
                        "threadId": ids::id('t', s.thread.0),
                        "sendAt": date(s.send_at),
                        "undoStatus": s.undo_status.as_str(),
                    }),
                );
            }
            Err(e) => {
                not_created.insert(cid, e);
            }
        }
    }
    // Server id -> Email of the submissions updated or destroyed in this call.
    let mut succeeded: HashMap<String, i64> = HashMap::new();
    let before = ctx.store.submissions(account).await.map_err(fail)?;
    let email_of_row = |row: i64| before.iter().find(|s| s.id == row).map(|s| s.email.0);
    let mut updated: BTreeMap<Id, Option<Value>> = BTreeMap::new();
    let mut not_updated: BTreeMap<IdRef, SetError> = BTreeMap::new();
    for (r, patch) in req.update.clone().unwrap_or_default() {
        let (id, row) = match resolve(&r, &created) {
            Some(x) => x,
            None => {
                not_updated.insert(r, SetError::new(SetErrorType::NotFound));
                continue;
            }
        };
        // RFC 8621 7.5: undoStatus may only be set to canceled.
        let only_cancel = patch.len() == 1 && patch.get("undoStatus") == Some(&json!("canceled"));
        if !only_cancel {
            not_updated.insert(
                r,
                SetError::invalid_properties(patch.keys().cloned().collect::<Vec<_>>())
                    .with_description("only undoStatus: canceled can be set"),
            );
            continue;
        }
        match ctx
            .store
            .cancel_submission(account, row)
            .await
            .map_err(fail)?
        {
            CancelOutcome::Canceled => {
                if let Some(e) = email_of_row(row) {
                    succeeded.insert(id.as_str().to_owned(), e);
                }
                updated.insert(id, None);
            }
            CancelOutcome::TooLate => {
                not_updated.insert(r, SetError::new(SetErrorType::CannotUnsend));
            }
            CancelOutcome::NotFound => {
                not_updated.insert(r, SetError::new(SetErrorType::NotFound));
            }
        }
    }
    let mut destroyed: Vec<Id> = Vec::new();
    let mut not_destroyed: BTreeMap<IdRef, SetError> = BTreeMap::new();
    for r in req.destroy.clone().unwrap_or_default() {
        let Some((id, row)) = resolve(&r, &created) else {
            not_destroyed.insert(r, SetError::new(SetErrorType::NotFound));
            continue;
        };
        if ctx
            .store
            .destroy_submission(account, row)
            .await
            .map_err(fail)?
        {
            if let Some(e) = email_of_row(row) {
                succeeded.insert(id.as_str().to_owned(), e);
            }
            destroyed.push(id);
        } else {
            not_destroyed.insert(
                r,
                SetError::new(SetErrorType::Forbidden)
                    .with_description("being sent right now, or not found"),
            );
        }
    }
    let implicit = implicit_email_set(ctx, &req, &emails_of, &succeeded, created_ids).await;
    // Whether or not the update could be applied, the held submissions may go now.
    for (id, send_at) in release {
        if let Err(e) = ctx.store.reschedule_submission(account, id, send_at).await {
            tracing::warn!(account = %account, submission = id, error = %e,
                "cannot release a held submission; it is sent after its hold");
        }
    }
    let implicit = implicit?;
    let new = ctx.store_state(account).await?;
    let mut resp = SetResponse::new(
        req.account_id.clone(),
        Some(ids::state(old)),
        ids::state(new),
    );
    resp.created = (!created.is_empty()).then_some(created);
    resp.not_created = (!not_created.is_empty()).then_some(not_created);
    resp.updated = (!updated.is_empty()).then_some(updated);
    resp.not_updated = (!not_updated.is_empty()).then_some(not_updated);
    resp.destroyed = (!destroyed.is_empty()).then_some(destroyed);
    resp.not_destroyed = (!not_destroyed.is_empty()).then_some(not_destroyed);
    Ok((super::to_map(&resp)?, implicit))
}

/// RFC 8621 7.5: onSuccessUpdateEmail / onSuccessDestroyEmail, keyed by EmailSubmission
/// id or `#creationId`, name the Email of each submission that succeeded in this call;
/// they are applied as one Email/set (the write-back path: local at once, replayed to
/// the server by the outbox).
async fn implicit_email_set(
    ctx: &Ctx<'_>,
    req: &SetRequest<jmap_proto::mail::EmailSubmissionSetArgs>,
    emails_of: &HashMap<String, i64>,
    succeeded: &HashMap<String, i64>,
    created_ids: &mut HashMap<String, Id>,
) -> Result<Option<Map<String, Value>>, MethodError> {
    let email_of = |r: &IdRef| -> Option<Id> {
        let n = match r {
            IdRef::Creation(c) => emails_of.get(c.as_str()).copied(),
            IdRef::Id(id) => succeeded.get(id.as_str()).copied(),
        }?;
        ids::id('e', n)
    };
    let mut update = Map::new();
    for (r, patch) in req.extra.on_success_update_email.iter().flatten() {
        if let Some(e) = email_of(r) {
            update.insert(e.as_str().to_owned(), Value::Object(patch.clone()));
        }
    }
    // Those of submissions created here wait for the send (see `set`).
    let destroy: Vec<Value> = req
        .extra
        .on_success_destroy_email
        .iter()
        .flatten()
        .filter(|r| matches!(r, IdRef::Id(_)))
        .filter_map(|r| email_of(r).map(|e| json!(e)))
        .collect();
    if update.is_empty() && destroy.is_empty() {
        return Ok(None);
    }
    let mut args = Map::new();
    args.insert("accountId".into(), json!(req.account_id));
    if !update.is_empty() {
        args.insert("update".into(), Value::Object(update));
    }
    if !destroy.is_empty() {
        args.insert("destroy".into(), Value::Array(destroy));
    }
    Ok(Some(super::email_set::set(ctx, args, created_ids).await?))
}

/// An update/destroy target: a server id, or a submission created in this call.
fn resolve(r: &IdRef, created: &BTreeMap<Id, Value>) -> Option<(Id, i64)> {
    let id = match r {
        IdRef::Id(id) => id.clone(),
        IdRef::Creation(c) => {
            let v = created.get(c)?.get("id")?.as_str()?;
            Id::new(v.to_owned()).ok()?
        }
    };
    let row = ids::parse('s', id.as_str())?;
    Some((id, row))
}

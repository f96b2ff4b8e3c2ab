//! Method dispatch (RFC 8620 3.3-3.6): each invocation in order, result references
//! resolved against the responses so far, errors as data in the response. One file per
//! object as the methods land.

mod blob_copy;
pub mod body;
mod changes;
mod creation_refs;
pub(crate) mod email;
mod headers;
mod identity;
pub mod ids;
pub(crate) mod large;
mod mailbox;
pub(crate) mod mdn;
mod parse;
mod query_changes;
mod snippet;
mod submission;
pub(crate) use submission::MAX_DELAYED_SEND;
mod email_copy;
mod email_create;
mod email_import;
mod email_set;
mod mailbox_set;
mod outbox;
mod set_unchanged;
mod thread;
// Sieve scripts (RFC 9661) and the VacationResponse (RFC 8621 8) over ManageSieve.
pub(crate) mod sieve;
// RFC 9425 Quota and RFC 9404 Blob, and their place in the Session.
mod blob;
pub(crate) mod extensions;
mod quota;

use crate::Principal;
use jmap_proto::method::{GetRequest, SetRequest};
use jmap_proto::{
    Id, IdRef, Invocation, MethodError, MethodErrorType, Request, Response, resolve_references,
};
use mail_types::AccountId;
use serde_json::{Map, Value};
use std::sync::Arc;
use store::{ObjectType, Store};

/// What a method sees: the store, the caller and their accounts.
pub(crate) struct Ctx<'a> {
    pub store: &'a Arc<dyn Store>,
    pub accounts: &'a [AccountId],
    pub max_objects_in_get: usize,
    // push: PushSubscription/set starts and stops delivery tasks on the hub.
    pub push: &'a Arc<crate::push::Hub>,
    pub max_objects_in_set: usize,
    // The undo window given to a submission without a hold.
    pub submission_delay: std::time::Duration,
    /// The server's budget for reading large messages, and what this request holds of it.
    pub large: &'a large::LargeBodies,
    pub held: &'a large::Held,
    /// Fetches bodies not stored yet (see `crate::bodies`).
    pub bodies: Option<&'a Arc<dyn crate::BodyFetch>>,
    /// ManageSieve connections (see `sieve`).
    pub sieve: Option<&'a Arc<engine::sieve::Sieve>>,
}

impl Ctx<'_> {
    /// RFC 8620 3.6.2: an account that is not the caller's is `accountNotFound`, exactly
    /// like one that does not exist.
    fn account(&self, id: &Id) -> Result<AccountId, MethodError> {
        ids::parse('a', id.as_str())
            .map(AccountId)
            .filter(|a| self.accounts.contains(a))
            .ok_or_else(|| MethodError::new(MethodErrorType::AccountNotFound))
    }

    /// Messages of the store, fetched on demand when not stored yet.
    pub(crate) fn messages(&self) -> crate::bodies::Messages<'_> {
        crate::bodies::Messages {
            store: self.store,
            bodies: self.bodies,
        }
    }

    async fn store_state(&self, account: AccountId) -> Result<mail_types::State, MethodError> {
        self.store
            .account_state(account)
            .await
            .map_err(|e| MethodError::server_fail(e.to_string()))
    }

    /// The head every `/get` shares (RFC 8620 5.1): its arguments, `maxObjectsInGet`,
    /// and the caller's account it names.
    fn get_request<X: serde::de::DeserializeOwned>(
        &self,
        args: Map<String, Value>,
    ) -> Result<(GetRequest<X>, AccountId), MethodError> {
        let req: GetRequest<X> = GetRequest::parse(args)?;
        req.check_limit(self.max_objects_in_get)?;
        let account = self.account(&req.account_id)?;
        Ok((req, account))
    }

    /// The `accountId` argument of a method whose arguments are read by hand (no
    /// jmap-proto request type), and the caller's account it names.
    fn account_arg(&self, args: &Map<String, Value>) -> Result<(Id, AccountId), MethodError> {
        let id = account_id_arg(args)?;
        let account = self.account(&id)?;
        Ok((id, account))
    }

    /// The head every `/set` on the store shares (RFC 8620 5.3), once the caller has
    /// checked its limit: the caller's account the request names, and the account's
    /// state, which `ifInState` must match.
    async fn set_head<X>(
        &self,
        req: &SetRequest<X>,
    ) -> Result<(AccountId, mail_types::State), MethodError> {
        let account = self.account(&req.account_id)?;
        let old = self.store_state(account).await?;
        req.check_state(&ids::state(old))?;
        Ok((account, old))
    }
}

/// The six maps of a `/set` answer (RFC 8620 5.3) built by hand, where the entries are
/// not jmap-proto's types (a SetError of a type it does not name, an object as JSON).
#[derive(Default)]
pub(crate) struct SetMaps {
    pub created: Map<String, Value>,
    pub updated: Map<String, Value>,
    pub destroyed: Vec<Value>,
    pub not_created: Map<String, Value>,
    pub not_updated: Map<String, Value>,
    pub not_destroyed: Map<String, Value>,
}

impl SetMaps {
    /// The whole answer of a `/set` (RFC 8620 5.3) on `account_id`, from `old_state` to
    /// `new_state`.
    pub(crate) fn answer(
        self,
        account_id: &Id,
        old_state: &str,
        new_state: &str,
    ) -> Map<String, Value> {
        let mut out = Map::new();
        out.insert("accountId".into(), Value::String(account_id.to_string()));
        out.insert("oldState".into(), Value::String(old_state.to_owned()));
        out.insert("newState".into(), Value::String(new_state.to_owned()));
        self.write(&mut out);
        out
    }

    /// Adds the maps to the answer `out`, each `null` when empty as the RFC types them.
    pub(crate) fn write(self, out: &mut Map<String, Value>) {
        let map = |m: Map<String, Value>| {
            if m.is_empty() {
                Value::Null
            } else {
                Value::Object(m)
            }
        };
        out.insert("created".into(), map(self.created));
        out.insert("updated".into(), map(self.updated));
        let destroyed = if self.destroyed.is_empty() {
            Value::Null
        } else {
            Value::Array(self.destroyed)
        };
        out.insert("destroyed".into(), destroyed);
        out.insert("notCreated".into(), map(self.not_created));
        out.insert("notUpdated".into(), map(self.not_updated));
        out.insert("notDestroyed".into(), map(self.not_destroyed));
    }
}

/// The `accountId` argument, an Id (RFC 8620 1.2), of a method whose arguments are read
/// by hand.
fn account_id_arg(args: &Map<String, Value>) -> Result<Id, MethodError> {
    args.get("accountId")
        .and_then(Value::as_str)
        .and_then(|a| Id::new(a).ok())
        .ok_or_else(|| MethodError::invalid_arguments("accountId must be an Id"))
}

/// The `list` and `notFound` of a `/get` (RFC 8620 5.1) over objects held in memory:
/// all of them when `ids` is null; an id that is not of this type (`prefix`), not among
/// them, or a creation id, is not found.
fn pick<T>(
    wanted: Option<&[IdRef]>,
    prefix: char,
    all: &[T],
    id_of: impl Fn(&T) -> i64,
    mut shape: impl FnMut(&T) -> Value,
) -> (Vec<Value>, Vec<IdRef>) {
    let Some(wanted) = wanted else {
        return (all.iter().map(shape).collect(), Vec::new());
    };
    let mut list = Vec::new();
    let mut not_found = Vec::new();
    for r in wanted {
        let hit = match r {
            IdRef::Id(id) => {
                ids::parse(prefix, id.as_str()).and_then(|n| all.iter().find(|o| id_of(o) == n))
            }
            IdRef::Creation(_) => None,
        };
        match hit {
            Some(o) => list.push(shape(o)),
            None => not_found.push(r.clone()),
        }
    }
    (list, not_found)
}

pub(crate) fn to_map<T: serde::Serialize>(v: &T) -> Result<Map<String, Value>, MethodError> {
    match serde_json::to_value(v) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(MethodError::server_fail("response did not serialize")),
    }
}

/// A call without `accountId` (or with null) is for the session's primary account: the
/// RFC makes the argument mandatory, but Cyrus and Fastmail take the primary account
/// (RFC 8620 2, `primaryAccounts`), and clients written against them leave it out. Every
/// capability's primary account is the caller's first (see `server::build_session`).
/// Methods without accounts (Core/echo, PushSubscription, RFC 8620 7.2) are left alone.
fn default_account(ctx: &Ctx<'_>, method: &str, args: &mut Map<String, Value>) {
    if method == "Core/echo" || method.starts_with("PushSubscription/") {
        return;
    }
    if args.get("accountId").is_none_or(Value::is_null)
        && let Some(primary) = ctx.accounts.first().and_then(|a| ids::id('a', a.0))
    {
        args.insert("accountId".into(), Value::String(primary.into_string()));
    }
}

/// Runs every method call of a request.
pub(crate) async fn dispatch(
    principal: &Principal,
    ctx: &Ctx<'_>,
    request: Request,
    session_state: jmap_proto::State,
) -> Response {
    let mail = request
        .using
        .iter()
        .any(|u| u == jmap_proto::capability::MAIL);
    let submission = request
        .using
        .iter()
        .any(|u| u == jmap_proto::capability::SUBMISSION);
    let uses = |uri: &str| request.using.iter().any(|u| u == uri);
    let needs = |uri: &str| {
        MethodError::with_description(
            MethodErrorType::UnknownMethod,
            format!("this method needs {uri} in using"),
        )
    };
    let using_mdn = request
        .using
        .iter()
        .any(|u| u == jmap_proto::capability::MDN);
    let mut response = Response::new(session_state, request.created_ids.clone());
    // RFC 8620 5.3: creation ids are known to every later call of the request.
    let mut created_ids = request.created_ids.clone().unwrap_or_default();
    for call in request.method_calls {
        let Invocation {
            name,
            mut arguments,
            call_id,
        } = call;
        if let Err(e) = resolve_references(&mut arguments, &response.method_responses) {
            response.push(e.into_invocation(call_id));
            continue;
        }
        default_account(ctx, &name, &mut arguments);
        creation_refs::resolve(&name, &mut arguments, &created_ids);
        if name.ends_with("/set") {
            set_unchanged::drop_unchanged(ctx, principal, &name, &mut arguments, &created_ids)
                .await;
        }
        // RFC 8621 7.5, the implicit Email/set of
        // onSuccessUpdateEmail / onSuccessDestroyEmail answers right after, same call id.
        if name == "EmailSubmission/set" && submission {
            match submission::set(ctx, arguments, &mut created_ids).await {
                Ok((args, implicit)) => {
                    response.push(Invocation::new(name, args, call_id.clone()));
                    if let Some(email_set) = implicit {
                        response.push(Invocation::new("Email/set", email_set, call_id));
                    }
                }
                Err(e) => response.push(e.into_invocation(call_id)),
            }
            continue;
        }
        // RFC 9007: MDN/send answers with an implicit Email/set too.
        if name.starts_with("MDN/") {
            let (c, args) = (call_id, arguments);
            mdn::call(
                ctx,
                using_mdn,
                name,
                args,
                c,
                &mut created_ids,
                &mut response,
            )
            .await;
            continue;
        }
        let result = match name.as_str() {
            // RFC 8620 4: echo the arguments back unchanged.
            "Core/echo" => Ok(arguments),
            // RFC 8620 6.3, a core method: blobs between the caller's accounts.
            "Blob/copy" => blob_copy::copy(ctx, arguments).await,
            // RFC 8620 3.3: mail methods need the mail capability in `using`.
            "Mailbox/get"
            | "Mailbox/changes"
            | "Mailbox/query"
            | "Mailbox/queryChanges"
            | "Email/changes"
            | "Email/queryChanges"
            | "Thread/changes"
            | "Email/get"
            | "Email/query"
            | "Thread/get"
            | "SearchSnippet/get"
            | "Email/parse"
            | "Email/set"
            | "Email/import"
            | "Email/copy"
            | "Mailbox/set"
            | "Outbox/get"
                if !mail =>
            {
                Err(MethodError::with_description(
                    MethodErrorType::UnknownMethod,
                    "this method needs urn:ietf:params:jmap:mail in using",
                ))
            }
            "Mailbox/get" => mailbox::get(ctx, arguments).await,
            "Mailbox/query" => mailbox::query(ctx, arguments).await,
            // RFC 8620 5.6, from the change log.
            "Mailbox/queryChanges" => query_changes::mailbox(ctx, arguments).await,
            "Email/queryChanges" => query_changes::email(ctx, arguments).await,
            "Email/parse" => parse::parse(ctx, arguments).await,
            "Mailbox/changes" => changes::changes(ctx, ObjectType::Mailbox, arguments).await,
            "Email/changes" => changes::changes(ctx, ObjectType::Email, arguments).await,
            "Thread/changes" => changes::changes(ctx, ObjectType::Thread, arguments).await,
            "Email/get" => email::get(ctx, arguments).await,
            "Email/query" => email::query(ctx, arguments).await,
            "Thread/get" => thread::get(ctx, arguments).await,
            "SearchSnippet/get" => snippet::get(ctx, arguments).await,
            "Email/set" => email_set::set(ctx, arguments, &mut created_ids).await,
            "Email/import" => email_import::import(ctx, arguments, &mut created_ids).await,
            // RFC 8620 5.4: with onSuccessDestroyOriginal an implicit Email/set answers too.
            "Email/copy" => match email_copy::copy(ctx, arguments, &mut created_ids).await {
                Ok((copied, implicit)) => {
                    response.push(Invocation::new(name, copied, call_id.clone()));
                    match implicit {
                        Some(Ok(set)) => response.push(Invocation::new("Email/set", set, call_id)),
                        Some(Err(e)) => response.push(e.into_invocation(call_id)),
                        None => {}
                    }
                    continue;
                }
                Err(e) => Err(e),
            },
            "Mailbox/set" => mailbox_set::set(ctx, arguments, &mut created_ids).await,
            "Outbox/get" => outbox::get(ctx, arguments).await,
            "Identity/get"
            | "Identity/set"
            | "Identity/changes"
            | "EmailSubmission/get"
            | "EmailSubmission/set"
            | "EmailSubmission/changes"
            | "EmailSubmission/query"
            | "EmailSubmission/queryChanges"
                if !submission =>
            {
                Err(MethodError::with_description(
                    MethodErrorType::UnknownMethod,
                    "this method needs urn:ietf:params:jmap:submission in using",
                ))
            }
            "Identity/get" => identity::get(ctx, arguments).await,
            // RFC 8620 7.2: core methods without accountId.
            "PushSubscription/get" => {
                crate::push::subscription::get(ctx.store, principal.user, arguments).await
            }
            "PushSubscription/set" => {
                crate::push::subscription::set(ctx.push, ctx.store, principal.user, arguments).await
            }
            "Identity/set" => identity::set(ctx, arguments).await,
            "Identity/changes" => changes::changes(ctx, ObjectType::Identity, arguments).await,
            "EmailSubmission/get" => submission::get(ctx, arguments).await,
            "EmailSubmission/query" => submission::query(ctx, arguments).await,
            "EmailSubmission/changes" => {
                changes::changes(ctx, ObjectType::EmailSubmission, arguments).await
            }
            "EmailSubmission/queryChanges" => Err(MethodError::with_description(
                MethodErrorType::CannotCalculateChanges,
                "query changes are not kept; query again",
            )),
            "SieveScript/get"
            | "SieveScript/set"
            | "SieveScript/query"
            | "SieveScript/validate"
            | "SieveScript/changes"
                if !uses(jmap_proto::capability::SIEVE) =>
            {
                Err(needs(jmap_proto::capability::SIEVE))
            }
            "VacationResponse/get" | "VacationResponse/set"
                if !uses(jmap_proto::capability::VACATION_RESPONSE) =>
            {
                Err(needs(jmap_proto::capability::VACATION_RESPONSE))
            }
            "SieveScript/get" => sieve::get(ctx, arguments).await,
            "SieveScript/set" => sieve::set(ctx, arguments, &mut created_ids).await,
            "SieveScript/query" => sieve::query(ctx, arguments).await,
            "SieveScript/validate" => sieve::validate(ctx, arguments).await,
            "SieveScript/changes" => sieve::changes(ctx, arguments).await,
            "VacationResponse/get" => sieve::vacation_get(ctx, arguments).await,
            "VacationResponse/set" => sieve::vacation_set(ctx, arguments).await,
            n if n.starts_with("Quota/") => quota::call(ctx, &request.using, n, arguments).await,
            n if n.starts_with("Blob/") => {
                blob::call(ctx, &request.using, n, arguments, &mut created_ids).await
            }
            _ => Err(MethodError::with_description(
                MethodErrorType::UnknownMethod,
                format!("{name} is not supported (yet)"),
            )),
        };
        match result {
            Ok(args) => response.push(Invocation::new(name, args, call_id)),
            Err(e) => response.push(e.into_invocation(call_id)),
        }
    }
    if response.created_ids.is_some() {
        response.created_ids = Some(created_ids);
    }
    for r in &mut response.method_responses {
        empty_maps(r);
    }
    response
}

/// RFC 8620 5.3 and 5.4 type the maps of a `/set`, `/copy` or `/import` answer
/// `...|null`, null when empty; clients tested against Cyrus and Fastmail iterate them
/// without a null check, so an empty one is sent as `{}`, which the RFC equally allows.
/// (`destroyed` is a list, and stays as it is.)
fn empty_maps(r: &mut Invocation) {
    let name = r.name.as_str();
    if !(name.ends_with("/set") || name.ends_with("/copy") || name.ends_with("/import")) {
        return;
    }
    for key in [
        "created",
        "updated",
        "notCreated",
        "notUpdated",
        "notDestroyed",
    ] {
        if let Some(v) = r.arguments.get_mut(key)
            && v.is_null()
        {
            *v = Value::Object(Map::new());
        }
    }
}

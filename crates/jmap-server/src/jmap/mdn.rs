//! MDN/send and MDN/parse (RFC 9007): read receipts. A receipt is built as an RFC 8098
//! report by `mime::mdn::build`, queued as an EmailSubmission of the account (sent by the
//! engine's submission worker through the account's SMTP server, like any message), and
//! the original Email gets `$MDNSent` (RFC 3503) through the write-back path. MDN/parse
//! reads received reports with `mime::mdn::parse`.

use super::{Ctx, ids};
use crate::JmapServer;
use jmap_proto::{Id, Invocation, MethodError, MethodErrorType};
use mail_types::{AccountId, EmailId, ThreadId};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use store::{DraftFate, NewSubmission, SentCopy};

/// RFC 9007 2: the capability, an empty object in the Session and in the
/// accountCapabilities of each account that can send (one with an SMTP server).
pub(crate) async fn extend_session(
    state: &JmapServer,
    principal: &crate::Principal,
    session: &mut jmap_proto::Session,
) {
    // One read for all accounts: the Session is built for every API request.
    let Ok(records) = state.store.user_accounts(principal.user).await else {
        return;
    };
    let mut primary = None;
    for (id, account) in session.accounts.iter_mut() {
        let can_send = super::ids::parse('a', id.as_str())
            .and_then(|n| records.iter().find(|r| r.id.0 == n))
            .is_some_and(|r| r.smtp.is_some());
        if can_send {
            account
                .account_capabilities
                .other
                .insert(jmap_proto::capability::MDN.to_owned(), json!({}));
            primary.get_or_insert_with(|| id.clone());
        }
    }
    if let Some(p) = primary {
        session
            .capabilities
            .other
            .insert(jmap_proto::capability::MDN.to_owned(), json!({}));
        // RFC 8620 2: the Session state changes with the Session, here when an account
        // gains or loses its SMTP server (and so the capability).
        use sha2::Digest;
        let mut d = sha2::Sha256::new();
        d.update(session.state.as_str().as_bytes());
        for (id, a) in &session.accounts {
            if a.account_capabilities
                .other
                .contains_key(jmap_proto::capability::MDN)
            {
                d.update(id.as_str().as_bytes());
                d.update(b",");
            }
        }
        session.state = jmap_proto::State::from(hex::encode(&d.finalize()[..8]));
        session
            .primary_accounts
            .insert(jmap_proto::capability::MDN.to_owned(), p);
    }
}

/// Most MDNs one MDN/send or MDN/parse handles.
const MAX_PER_CALL: usize = 100;
/// Most addresses a Disposition-Notification-To is answered at.
const MAX_NOTIFY_ADDRESSES: usize = 10;
/// The longest text a client may give for the human-readable part.
const MAX_TEXT: usize = 64 * 1024;
const REPORTING_UA: &str = concat!("tidings; Tidings ", env!("CARGO_PKG_VERSION"));

/// RFC 9007 2.1 and 2.2: runs MDN/send or MDN/parse, pushing its response (and, for a
/// send, the implicit Email/set that sets `$MDNSent`) under the call's id.
pub(crate) async fn call(
    ctx: &Ctx<'_>,
    using_mdn: bool,
    name: String,
    args: Map<String, Value>,
    call_id: String,
    created_ids: &mut HashMap<String, Id>,
    response: &mut jmap_proto::Response,
) {
    if !using_mdn {
        response.push(
            MethodError::with_description(
                MethodErrorType::UnknownMethod,
                "this method needs urn:ietf:params:jmap:mdn in using",
            )
            .into_invocation(call_id),
        );
        return;
    }
    let result = match name.as_str() {
        "MDN/send" => send(ctx, args, created_ids).await,
        "MDN/parse" => parse(ctx, args).await.map(|r| (r, None)),
        _ => Err(MethodError::with_description(
            MethodErrorType::UnknownMethod,
            format!("{name} is not supported"),
        )),
    };
    match result {
        Ok((args, implicit)) => {
            response.push(Invocation::new(name, args, call_id.clone()));
            match implicit {
                Some(Ok(set)) => response.push(Invocation::new("Email/set", set, call_id)),
                Some(Err(e)) => response.push(e.into_invocation(call_id)),
                None => {}
            }
        }
        Err(e) => response.push(e.into_invocation(call_id)),
    }
}

fn invalid_args(why: &str) -> MethodError {
    MethodError::with_description(MethodErrorType::InvalidArguments, why)
}

fn fail(e: impl std::fmt::Display) -> MethodError {
    MethodError::server_fail(e.to_string())
}

/// A SetError as RFC 9007 2.1 names it (`mdnAlreadySent` is not one of RFC 8620's).
fn set_error(kind: &str, why: impl Into<String>) -> Value {
    json!({"type": kind, "description": why.into()})
}

fn invalid_property(prop: &str, why: &str) -> Value {
    json!({"type": "invalidProperties", "properties": [prop], "description": why})
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
    hex::encode(b)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn opt_str<'a>(o: &'a Map<String, Value>, k: &str) -> Result<Option<&'a str>, Value> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid_property(k, "must be a string")),
    }
}

/// What one MDN of a send asks for, checked.
struct Asked<'a> {
    email: EmailId,
    subject: Option<&'a str>,
    text_body: Option<&'a str>,
    reporting_ua: Option<&'a str>,
    final_recipient: Option<&'a str>,
    include_original: bool,
    disposition: mime::mdn::Disposition,
    extension_fields: Vec<(String, String)>,
}

fn check(o: &Map<String, Value>) -> Result<Asked<'_>, Value> {
    for (k, v) in o {
        let known = [
            "forEmailId",
            "subject",
            "textBody",
            "includeOriginalMessage",
            "reportingUA",
            "disposition",
            "finalRecipient",
            "extensionFields",
        ];
        // RFC 9007 2: mdnGateway, originalRecipient, originalMessageId and error are set
        // by the server; null is what a client library leaves unset.
        if !known.contains(&k.as_str()) && !v.is_null() {
            return Err(invalid_property(k, "server-set or unknown property"));
        }
    }
    let email = o
        .get("forEmailId")
        .and_then(Value::as_str)
        .and_then(|s| ids::parse('e', s))
        .map(EmailId);
    let Some(email) = email else {
        return Err(match o.get("forEmailId") {
            Some(Value::String(_)) => set_error("notFound", "no such Email"),
            _ => invalid_property("forEmailId", "forEmailId is required"),
        });
    };
    let d = o.get("disposition").and_then(Value::as_object);
    let disposition = d
        .and_then(|d| {
            mime::mdn::Disposition::new(
                d.get("actionMode")?.as_str()?,
                d.get("sendingMode")?.as_str()?,
                d.get("type")?.as_str()?,
            )
        })
        .ok_or_else(|| {
            invalid_property(
                "disposition",
                "disposition needs actionMode, sendingMode and type with RFC 8098 values",
            )
        })?;
    let include_original = match o.get("includeOriginalMessage") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid_property("includeOriginalMessage", "a boolean")),
    };
    let text_body = opt_str(o, "textBody")?;
    if text_body.is_some_and(|t| t.len() > MAX_TEXT) {
        return Err(set_error("tooLarge", "textBody is too long"));
    }
    let mut extension_fields = Vec::new();
    match o.get("extensionFields") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) if m.len() <= 50 => {
            for (k, v) in m {
                let ok_name = !k.is_empty()
                    && k.len() <= 76
                    && k.bytes().all(|b| b.is_ascii_graphic() && b != b':');
                match v.as_str() {
                    Some(v) if ok_name && v.len() <= 998 => {
                        extension_fields.push((k.clone(), v.to_owned()));
                    }
                    _ => return Err(invalid_property("extensionFields", "name: text pairs")),
                }
            }
        }
        Some(_) => return Err(invalid_property("extensionFields", "name: text pairs")),
    }
    Ok(Asked {
        email,
        subject: opt_str(o, "subject")?,
        text_body,
        reporting_ua: opt_str(o, "reportingUA")?,
        final_recipient: opt_str(o, "finalRecipient")?,
        include_original,
        disposition,
        extension_fields,
    })
}

/// The address of a `Final-Recipient` value (`rfc822; a@b`, or a bare address).
fn address_of_recipient(v: &str) -> &str {
    v.split_once(';').map_or(v, |(_, a)| a).trim()
}

/// A default human-readable part (RFC 8098 3: explains the notification).
fn default_text(kind: &str, subject: &str, recipient: &str) -> String {
    let what = match kind {
        "displayed" => "was displayed",
        "deleted" => "was deleted without being displayed",
        "dispatched" => "was handed on without being displayed",
        _ => "was processed",
    };
    format!(
        "This is a receipt for the mail you sent to {recipient} with the subject \"{subject}\".\n\
         It {what} on the recipient's computer. There is no guarantee that it was read \
         or understood.\n"
    )
}

/// One MDN: checked, built and queued. Returns the properties the server filled in.
async fn send_one(
    ctx: &Ctx<'_>,
    account: AccountId,
    identity: &store::IdentityRecord,
    o: &Map<String, Value>,
) -> Result<(EmailId, Map<String, Value>), Value> {
    let asked = check(o)?;
    let server_fail = |e: &dyn std::fmt::Display| set_error("forbidden", e.to_string());
    let views = ctx
        .store
        .emails(account, &[asked.email])
        .await
        .map_err(|e| server_fail(&e))?;
    let Some(view) = views.into_iter().next() else {
        return Err(set_error("notFound", "no such Email"));
    };
    // RFC 9007 2.1: one receipt per message, whatever the client remembers.
    if view
        .keywords
        .iter()
        .any(|k| k.eq_ignore_ascii_case("$mdnsent"))
    {
        return Err(set_error(
            "mdnAlreadySent",
            "a receipt was sent for this message already ($MDNSent is set)",
        ));
    }
    let final_recipient = match asked.final_recipient {
        Some(v) => {
            // RFC 9007 2.1 forbiddenFrom: only the identity's own address.
            if !address_of_recipient(v).eq_ignore_ascii_case(&identity.email) {
                return Err(set_error(
                    "forbiddenFrom",
                    "finalRecipient is not the identity's address",
                ));
            }
            v.to_owned()
        }
        None => format!("rfc822; {}", identity.email),
    };
    let thread = ThreadId(view.thread.0);
    let (raw, _) = match ctx.messages().message(account, view).await {
        Ok(found) => found,
        Err(crate::bodies::BlobError::NotFound) => {
            return Err(set_error("notFound", "the message is gone from its server"));
        }
        Err(e) => {
            return Err(set_error(
                "forbidden",
                e.method_error().description.unwrap_or_default(),
            ));
        }
    };
    let head = mime::headers::header_block(&raw);
    // RFC 8098 2.1: the receipt goes to the Disposition-Notification-To addresses.
    let mut to: Vec<String> = mime::headers::values(head, "Disposition-Notification-To")
        .into_iter()
        .flat_map(mime::headers::as_addresses)
        .map(|a| a.email)
        .filter(|a| mime::address::valid_address(a))
        .collect();
    let mut seen = std::collections::HashSet::new();
    to.retain(|a| seen.insert(a.to_ascii_lowercase()));
    to.truncate(MAX_NOTIFY_ADDRESSES);
    // As Cyrus answers it (RFC 8621 7.5's type): nobody to send the receipt to.
    if to.is_empty() {
        return Err(set_error(
            "noRecipients",
            "the message asks for no receipt (no Disposition-Notification-To)",
        ));
    }
    let parsed = mime::parse_header(head);
    // RFC 8098 3.2.3: Original-Recipient only when the message carried one.
    let original_recipient = mime::headers::values(head, "Original-Recipient")
        .first()
        .map(|v| mime::headers::as_text(v));
    let original_message_id = parsed.message_id.as_ref().map(|id| format!("<{id}>"));
    let original_subject = parsed.subject.clone().unwrap_or_default();
    let subject = match asked.subject {
        Some(s) => s.to_owned(),
        None if asked.disposition.kind == "displayed" => format!("Read: {original_subject}"),
        None => format!("Disposition notification: {original_subject}"),
    };
    let text_body = match asked.text_body {
        Some(t) => t.to_owned(),
        None => default_text(&asked.disposition.kind, &original_subject, &identity.email),
    };
    let reporting_ua = asked.reporting_ua.unwrap_or(REPORTING_UA).to_owned();
    let domain = identity
        .email
        .rsplit_once('@')
        .map_or("localhost", |(_, d)| d);
    let message_id = format!("{}@{domain}", random_hex(12));
    let boundary = format!("mdn-{}", random_hex(12));
    let name = (!identity.name.is_empty()).then_some(identity.name.as_str());
    let built = mime::mdn::build(&mime::mdn::Outgoing {
        from_name: name,
        from: &identity.email,
        to: &to,
        subject: &subject,
        text_body: &text_body,
        reporting_ua: &reporting_ua,
        final_recipient: &final_recipient,
        original_recipient: original_recipient.as_deref(),
        original_message_id: original_message_id.as_deref(),
        disposition: &asked.disposition,
        extension_fields: &asked.extension_fields,
        message_id: &message_id,
        date: now(),
        boundary: &boundary,
        original: asked.include_original.then_some(&raw[..]),
    });
    let envelope = json!({
        "mailFrom": {"email": "", "parameters": null},
        "rcptTo": to.iter().map(|r| json!({"email": r, "parameters": null})).collect::<Vec<_>>(),
    });
    let new = NewSubmission {
        account,
        identity: identity.id,
        email: asked.email,
        thread,
        envelope_json: envelope.to_string(),
        // RFC 8098 2.1: an MDN goes with a null reverse path, so that nothing (no DSN,
        // no other MDN) is ever sent back about it.
        mail_from: String::new(),
        rcpt_to: to,
        raw: built,
        blob_id: None,
        draft: DraftFate::Keep,
        message_id: Some(message_id),
        send_at: now(),
        // A receipt is not the user's correspondence: no copy in Sent.
        sent_copy: SentCopy::None,
    };
    ctx.store
        .create_submission(&new)
        .await
        .map_err(|e| server_fail(&e))?;
    tracing::info!(
        account = account.0,
        email = asked.email.0,
        "read receipt queued"
    );
    // RFC 9007 2.1: `sent` holds what the server filled in.
    let mut filled = Map::new();
    for (k, v) in [
        ("subject", json!(subject)),
        ("textBody", json!(text_body)),
        ("reportingUA", json!(reporting_ua)),
        ("finalRecipient", json!(final_recipient)),
        ("includeOriginalMessage", json!(asked.include_original)),
        ("extensionFields", Value::Null),
    ] {
        if o.get(k).is_none_or(Value::is_null) {
            filled.insert(k.into(), v);
        }
    }
    filled.insert("mdnGateway".into(), Value::Null);
    filled.insert("originalRecipient".into(), json!(original_recipient));
    filled.insert("originalMessageId".into(), json!(original_message_id));
    filled.insert("error".into(), Value::Null);
    Ok((asked.email, filled))
}

/// MDN/send (RFC 9007 2.1).
async fn send(
    ctx: &Ctx<'_>,
    args: Map<String, Value>,
    created_ids: &mut HashMap<String, Id>,
) -> Result<
    (
        Map<String, Value>,
        Option<Result<Map<String, Value>, MethodError>>,
    ),
    MethodError,
> {
    for k in args.keys() {
        if !["accountId", "identityId", "send", "onSuccessUpdateEmail"].contains(&k.as_str()) {
            return Err(invalid_args(&format!("MDN/send takes no {k}")));
        }
    }
    let (account_id, account) = ctx.account_arg(&args)?;
    let to_send = match args.get("send") {
        Some(Value::Object(m)) => m,
        _ => return Err(invalid_args("send must be a map of MDN objects")),
    };
    if to_send.len() > MAX_PER_CALL {
        return Err(MethodError::new(MethodErrorType::RequestTooLarge));
    }
    let on_success = match args.get("onSuccessUpdateEmail") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(invalid_args("onSuccessUpdateEmail must be a map")),
    };
    super::identity::ensure_default(ctx, account).await?;
    let identities = ctx.store.identities(account).await.map_err(fail)?;
    // RFC 9007 2.1 makes identityId mandatory; Cyrus takes none and sends as the user,
    // and clients written against it leave it out: then the account's first identity
    // (the login address) sends.
    let identity = match args.get("identityId") {
        None | Some(Value::Null) => identities.first(),
        Some(v) => v
            .as_str()
            .and_then(|s| ids::parse('i', s))
            .and_then(|n| identities.iter().find(|i| i.id == n)),
    }
    .ok_or_else(|| invalid_args("identityId names no identity of this account"))?;
    let can_send = ctx
        .store
        .account(account)
        .await
        .map_err(fail)?
        .is_some_and(|a| a.smtp.is_some());
    let mut sent = Map::new();
    let mut not_sent = Map::new();
    let mut update = Map::new();
    for (cid, o) in to_send {
        let Some(o) = o.as_object() else {
            not_sent.insert(
                cid.clone(),
                json!({"type": "invalidProperties", "description": "an MDN is an object"}),
            );
            continue;
        };
        // RFC 9007 2.1 forbiddenToSend: nothing can be sent from this account.
        if !can_send {
            not_sent.insert(
                cid.clone(),
                set_error(
                    "forbiddenToSend",
                    "this account has no outgoing mail server (SMTP)",
                ),
            );
            continue;
        }
        match send_one(ctx, account, identity, o).await {
            Ok((email, filled)) => {
                sent.insert(cid.clone(), Value::Object(filled));
                // RFC 3503 / RFC 9007 2.1: `$MDNSent` marks the message answered, and the
                // client's own patch for it (onSuccessUpdateEmail, keyed `#creationId`)
                // applies on top.
                let mut patch = Map::new();
                patch.insert("keywords/$MDNSent".into(), json!(true));
                if let Some(Value::Object(p)) = on_success.get(&format!("#{cid}")) {
                    patch.extend(p.clone());
                }
                if let Some(e) = ids::id('e', email.0) {
                    update.insert(e.into_string(), Value::Object(patch));
                }
            }
            Err(e) => {
                not_sent.insert(cid.clone(), e);
            }
        }
    }
    let implicit = if update.is_empty() {
        None
    } else {
        let mut a = Map::new();
        a.insert("accountId".into(), json!(account_id));
        a.insert("update".into(), Value::Object(update));
        Some(super::email_set::set(ctx, a, created_ids).await)
    };
    let mut out = Map::new();
    out.insert("accountId".into(), json!(account_id));
    out.insert(
        "sent".into(),
        if sent.is_empty() {
            Value::Null
        } else {
            Value::Object(sent)
        },
    );
    out.insert(
        "notSent".into(),
        if not_sent.is_empty() {
            Value::Null
        } else {
            Value::Object(not_sent)
        },
    );
    Ok((out, implicit))
}

/// The message bytes a blob id of the account names: a message, or an attached one.
async fn blob_message(
    ctx: &Ctx<'_>,
    account: AccountId,
    blob_id: &str,
) -> Result<Option<Vec<u8>>, MethodError> {
    let resolved = match ctx.messages().resolve(account, blob_id).await {
        Ok(r) => r,
        Err(crate::bodies::BlobError::NotFound) => return Ok(None),
        Err(e) => return Err(e.method_error()),
    };
    let Some(part) = resolved.part else {
        return Ok(Some(resolved.message));
    };
    let raw = resolved.message;
    let found = tokio::task::spawn_blocking(move || super::body::nested_part(&raw, &part))
        .await
        .map_err(fail)?;
    // A part that is not a message parses as nothing: notParsable, not notFound.
    Ok(Some(found.map(|p| p.bytes).unwrap_or_default()))
}

/// MDN/parse (RFC 9007 2.2).
async fn parse(ctx: &Ctx<'_>, args: Map<String, Value>) -> Result<Map<String, Value>, MethodError> {
    for k in args.keys() {
        if !["accountId", "blobIds"].contains(&k.as_str()) {
            return Err(invalid_args(&format!("MDN/parse takes no {k}")));
        }
    }
    let (account_id, account) = ctx.account_arg(&args)?;
    let blob_ids: Vec<String> = args
        .get("blobIds")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .ok_or_else(|| invalid_args("blobIds must be a list of ids"))?;
    if blob_ids.len() > MAX_PER_CALL {
        return Err(MethodError::new(MethodErrorType::RequestTooLarge));
    }
    let mut parsed = Map::new();
    let mut not_parsable = Vec::new();
    let mut not_found = Vec::new();
    for blob_id in blob_ids {
        let Some(raw) = blob_message(ctx, account, &blob_id).await? else {
            not_found.push(blob_id);
            continue;
        };
        let mdn = tokio::task::spawn_blocking(move || mime::mdn::parse(&raw))
            .await
            .map_err(fail)?;
        let Some(mdn) = mdn else {
            not_parsable.push(blob_id);
            continue;
        };
        let for_email = match mdn.original_id_bare() {
            Some(id) => ctx
                .store
                .emails_by_message_id(account, id)
                .await
                .map_err(fail)?
                .first()
                .and_then(|e| ids::id('e', e.0)),
            None => None,
        };
        let extension: Map<String, Value> = mdn
            .extension_fields
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        parsed.insert(
            blob_id,
            json!({
                "forEmailId": for_email,
                "subject": mdn.subject,
                "textBody": mdn.text_body,
                "includeOriginalMessage": mdn.original_included,
                "reportingUA": mdn.reporting_ua,
                "disposition": {
                    "actionMode": mdn.disposition.action_mode,
                    "sendingMode": mdn.disposition.sending_mode,
                    "type": mdn.disposition.kind,
                },
                "mdnGateway": mdn.mdn_gateway,
                "originalRecipient": mdn.original_recipient,
                "finalRecipient": mdn.final_recipient,
                "originalMessageId": mdn.original_message_id,
                "error": if mdn.error.is_empty() { Value::Null } else { json!(mdn.error) },
                "extensionFields": if extension.is_empty() { Value::Null } else { Value::Object(extension) },
            }),
        );
    }
    let or_null = |v: Vec<String>| if v.is_empty() { Value::Null } else { json!(v) };
    let mut out = Map::new();
    out.insert("accountId".into(), json!(account_id));
    out.insert(
        "parsed".into(),
        if parsed.is_empty() {
            Value::Null
        } else {
            Value::Object(parsed)
        },
    );
    out.insert("notParsable".into(), or_null(not_parsable));
    out.insert("notFound".into(), or_null(not_found));
    Ok(out)
}

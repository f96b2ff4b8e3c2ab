//! Email/parse (RFC 8621 4.9): a blob of the account (an upload, a stored message, or an
//! attached `message/rfc822` part of one) parsed as an Email, without storing it.

use super::{Ctx, body, headers};
use jmap_proto::mail::properties::check_email_properties;
use jmap_proto::mail::{EMAIL_PARSE_DEFAULT_PROPERTIES, EmailParseRequest};
use jmap_proto::method::parse_args;
use jmap_proto::{MethodError, UtcDate};
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// What one blob id turned out to be.
enum Source {
    NotFound,
    NotParsable,
    /// The message bytes, and the base its part blob ids are built on (`<sha>` or
    /// `<sha>-<part>`).
    Message(Vec<u8>, String),
}

async fn source(
    ctx: &Ctx<'_>,
    account: mail_types::AccountId,
    blob_id: &str,
) -> Result<Source, MethodError> {
    let resolved = match ctx.messages().resolve(account, blob_id).await {
        Ok(r) => r,
        Err(crate::bodies::BlobError::NotFound) => return Ok(Source::NotFound),
        Err(e) => return Err(e.method_error()),
    };
    let (raw, part) = (resolved.message, resolved.part);
    // Part blob ids of what is parsed are built on the content address (`<sha>`, or
    // `<sha>-<part>` for an attached message), whatever id named the message.
    let base = match &part {
        Some(p) => format!("{}-{}", resolved.sha, p.replace('.', "-")),
        None => resolved.sha,
    };
    let Some(part) = part else {
        return Ok(Source::Message(raw, base));
    };
    let found = tokio::task::spawn_blocking(move || body::nested_part(&raw, &part))
        .await
        .map_err(|e| MethodError::server_fail(e.to_string()))?;
    Ok(match found {
        None => Source::NotFound,
        Some(p) if body::is_message(&p.content_type) => Source::Message(p.bytes, base),
        Some(_) => Source::NotParsable,
    })
}

fn addresses(list: &[mime::Address]) -> Value {
    if list.is_empty() {
        return Value::Null;
    }
    Value::Array(
        list.iter()
            .map(|a| json!({"name": a.name, "email": a.email}))
            .collect(),
    )
}

fn ids_or_null(v: &[String]) -> Value {
    if v.is_empty() { Value::Null } else { json!(v) }
}

/// The Email of one message. CPU work: call it off the async executor.
fn email(
    raw: &[u8],
    blob_id: &str,
    base: &str,
    props: &[String],
    req: &body::BodyRequest,
) -> Map<String, Value> {
    let m = mime::parse(raw);
    let mut o = Map::new();
    for p in props {
        let v = match p.as_str() {
            // Not in the store: no id, mailbox, keyword, thread or arrival (RFC 8621 4.9).
            "id" | "mailboxIds" | "keywords" | "receivedAt" | "threadId" => Value::Null,
            "blobId" => json!(blob_id),
            "size" => json!(raw.len()),
            "messageId" => m.message_id.as_ref().map_or(Value::Null, |i| json!([i])),
            "inReplyTo" => ids_or_null(&m.in_reply_to),
            "references" => ids_or_null(&m.references),
            "sender" => addresses(&m.sender),
            "from" => addresses(&m.from),
            "to" => addresses(&m.to),
            "cc" => addresses(&m.cc),
            "bcc" => addresses(&m.bcc),
            "replyTo" => addresses(&m.reply_to),
            "subject" => json!(m.subject),
            "sentAt" => m
                .sent_at
                .and_then(UtcDate::from_timestamp)
                .map_or(Value::Null, |d| json!(d.to_string())),
            "hasAttachment" => json!(m.has_attachment),
            "preview" => json!(m.preview),
            _ => continue,
        };
        o.insert(p.clone(), v);
    }
    if !req.props.is_empty() {
        o.extend(body::body_properties(
            std::borrow::Cow::Borrowed(raw),
            base,
            req,
        ));
    }
    let header_props: Vec<String> = props
        .iter()
        .filter(|p| headers::is_header_property(p))
        .cloned()
        .collect();
    if !header_props.is_empty() {
        o.extend(headers::email_properties(raw, &header_props));
    }
    o
}

pub(crate) async fn parse(
    ctx: &Ctx<'_>,
    args: Map<String, Value>,
) -> Result<Map<String, Value>, MethodError> {
    let req: EmailParseRequest = parse_args(args)?;
    let account = ctx.account(&req.account_id)?;
    if req.blob_ids.len() > ctx.max_objects_in_get {
        return Err(MethodError::with_description(
            jmap_proto::MethodErrorType::RequestTooLarge,
            format!("at most {} blobs per Email/parse", ctx.max_objects_in_get),
        ));
    }
    let props: Vec<String> = match &req.properties {
        Some(p) => {
            check_email_properties(p)?;
            p.clone()
        }
        None => EMAIL_PARSE_DEFAULT_PROPERTIES
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    let body_req = Arc::new(body::BodyRequest::new(&props, &req.body_args())?);
    let props = Arc::new(props);
    let mut parsed = Map::new();
    let mut not_parsable = Vec::new();
    let mut not_found = Vec::new();
    for id in &req.blob_ids {
        match source(ctx, account, id.as_str()).await? {
            Source::NotFound => not_found.push(id.clone()),
            Source::NotParsable => not_parsable.push(id.clone()),
            Source::Message(raw, base) => {
                // Bytes without a single header field are not a message.
                if mime::headers::fields(&raw).is_empty() {
                    not_parsable.push(id.clone());
                    continue;
                }
                let (props, body_req, blob) = (props.clone(), body_req.clone(), id.to_string());
                let e = tokio::task::spawn_blocking(move || {
                    email(&raw, &blob, &base, &props, &body_req)
                })
                .await
                .map_err(|e| MethodError::server_fail(e.to_string()))?;
                parsed.insert(id.to_string(), Value::Object(e));
            }
        }
    }
    let mut out = Map::new();
    out.insert("accountId".into(), json!(req.account_id));
    out.insert("parsed".into(), Value::Object(parsed));
    out.insert("notParsable".into(), json!(not_parsable));
    out.insert("notFound".into(), json!(not_found));
    Ok(out)
}

//! Email/set create (RFC 8621 4.6): a draft from JMAP properties, built as an RFC 5322
//! message by `mail-builder` (never by hand), stored as a blob and queued for APPEND to its
//! mailbox. Served: mailboxIds (one mailbox), keywords, receivedAt, from, sender, to, cc,
//! bcc, replyTo, subject, sentAt, messageId, inReplyTo, references, and a text and/or HTML
//! body through textBody/htmlBody with bodyValues. Not yet: attachments, bodyStructure,
//! header:* properties; each is refused with invalidProperties, never dropped silently.

// SetError is the RFC's error object, returned by value as everywhere in the API.
#![allow(clippy::result_large_err)]

use super::email_set::{keyword, refusal};
use super::{Ctx, ids};
use jmap_proto::{Id, IdRef, MethodError, SetError, UtcDate};
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_types::{AccountId, MailboxId};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use store::AppendRequest;

fn bad(p: &str) -> SetError {
    SetError::invalid_properties([p.to_string()])
}

fn addresses(v: &Value, p: &str) -> Result<Option<Address<'static>>, SetError> {
    match v {
        Value::Null => Ok(None),
        Value::Array(list) if list.len() <= 1000 => {
            let mut out = Vec::new();
            for a in list {
                let email = a
                    .get("email")
                    .and_then(Value::as_str)
                    .filter(|e| e.contains('@') && !e.chars().any(|c| c.is_control() || c == ' '))
                    .ok_or_else(|| bad(p))?;
                let name = a
                    .get("name")
                    .and_then(Value::as_str)
                    .filter(|n| !n.chars().any(char::is_control))
                    .map(str::to_string);
                out.push(Address::new_address(name, email.to_string()));
            }
            Ok(Some(Address::new_list(out)))
        }
        _ => Err(bad(p)),
    }
}

fn msg_ids(v: &Value, p: &str) -> Result<Option<Vec<String>>, SetError> {
    match v {
        Value::Null => Ok(None),
        Value::Array(list) if !list.is_empty() && list.len() <= 1000 => list
            .iter()
            .map(|x| {
                x.as_str()
                    .filter(|s| {
                        s.contains('@') && !s.chars().any(|c| c.is_whitespace() || "<>".contains(c))
                    })
                    .map(str::to_string)
                    .ok_or_else(|| bad(p))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        _ => Err(bad(p)),
    }
}

fn date(v: &Value, p: &str) -> Result<Option<i64>, SetError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => s
            .parse::<UtcDate>()
            .ok()
            .map(|d| Some(d.timestamp()))
            .ok_or_else(|| bad(p)),
        _ => Err(bad(p)),
    }
}

/// The text of a body part given as `[{"partId": "x", "type": ...}]` from `bodyValues`.
fn body_text(
    v: &Value,
    values: &Map<String, Value>,
    p: &str,
    want_type: &str,
) -> Result<Option<String>, SetError> {
    let Value::Array(parts) = v else {
        return if v.is_null() { Ok(None) } else { Err(bad(p)) };
    };
    if parts.len() != 1 {
        return Err(bad(p).with_description("exactly one part"));
    }
    let part = &parts[0];
    if let Some(t) = part.get("type").and_then(Value::as_str)
        && !t.eq_ignore_ascii_case(want_type)
    {
        return Err(bad(p).with_description(format!("the part must be {want_type}")));
    }
    let pid = part
        .get("partId")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(p))?;
    let value = values
        .get(pid)
        .and_then(|b| b.get("value"))
        .and_then(Value::as_str)
        .ok_or_else(|| bad("bodyValues"))?;
    Ok(Some(value.to_string()))
}

fn random_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

pub(crate) async fn create(
    ctx: &Ctx<'_>,
    account: AccountId,
    obj: &Map<String, Value>,
    created_ids: &HashMap<String, Id>,
) -> Result<Result<Value, SetError>, MethodError> {
    let built = match build(obj, created_ids) {
        Ok(b) => b,
        Err(e) => return Ok(Err(e)),
    };
    let (mailbox, keywords, received_at, raw) = built;
    let size = raw.len();
    let r = ctx
        .store
        .append_email(
            account,
            AppendRequest {
                mailbox,
                raw,
                keywords,
                received_at,
            },
        )
        .await
        .map_err(|e| MethodError::server_fail(e.to_string()))?;
    Ok(match r {
        Ok(id) => {
            let views = ctx
                .store
                .emails(account, &[id])
                .await
                .map_err(|e| MethodError::server_fail(e.to_string()))?;
            let v = views.first();
            Ok(json!({
                "id": ids::id('e', id.0),
                "blobId": v.and_then(|v| v.blob_id.as_ref()).map(|b| format!("b{b}")),
                "threadId": v.and_then(|v| ids::id('t', v.thread.0)),
                "size": size,
            }))
        }
        Err(e) => Err(refusal(e, "mailboxIds")),
    })
}

type Built = (MailboxId, Vec<String>, i64, Vec<u8>);

fn build(obj: &Map<String, Value>, created_ids: &HashMap<String, Id>) -> Result<Built, SetError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut mailbox = None;
    let mut keywords = Vec::new();
    let mut received_at = now;
    let mut sent_at = now;
    let mut b = MessageBuilder::new();
    let empty = Map::new();
    let values = obj
        .get("bodyValues")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut text = None;
    let mut html = None;
    let mut message_id = None;
    for (k, v) in obj {
        match k.as_str() {
            "mailboxIds" => {
                let m = v.as_object().ok_or_else(|| bad(k))?;
                if m.len() != 1 {
                    return Err(
                        bad(k).with_description("a draft is created in exactly one mailbox")
                    );
                }
                for (id, on) in m {
                    if on != &Value::Bool(true) {
                        return Err(bad(k));
                    }
                    let id = IdRef::parse(id)
                        .ok()
                        .and_then(|r| r.resolve(created_ids))
                        .and_then(|i| ids::parse('m', i.as_str()))
                        .ok_or_else(|| bad(k))?;
                    mailbox = Some(MailboxId(id));
                }
            }
            "keywords" => {
                let m = v.as_object().ok_or_else(|| bad(k))?;
                for (kw, on) in m {
                    match (keyword(kw), on) {
                        (Some(kw), Value::Bool(true)) => keywords.push(kw),
                        _ => return Err(bad(k)),
                    }
                }
            }
            "receivedAt" => received_at = date(v, k)?.unwrap_or(now),
            "sentAt" => sent_at = date(v, k)?.unwrap_or(now),
            "from" => {
                if let Some(a) = addresses(v, k)? {
                    b = b.from(a);
                }
            }
            "sender" => {
                if let Some(a) = addresses(v, k)? {
                    b = b.sender(a);
                }
            }
            "to" => {
                if let Some(a) = addresses(v, k)? {
                    b = b.to(a);
                }
            }
            "cc" => {
                if let Some(a) = addresses(v, k)? {
                    b = b.cc(a);
                }
            }
            "bcc" => {
                if let Some(a) = addresses(v, k)? {
                    b = b.bcc(a);
                }
            }
            "replyTo" => {
                if let Some(a) = addresses(v, k)? {
                    b = b.reply_to(a);
                }
            }
            "subject" => match v {
                Value::String(s) if !s.chars().any(|c| c == '\r' || c == '\n') => {
                    b = b.subject(s.clone())
                }
                Value::Null => {}
                _ => return Err(bad(k)),
            },
            "messageId" => {
                if let Some(mut ids) = msg_ids(v, k)? {
                    if ids.len() != 1 {
                        return Err(bad(k));
                    }
                    message_id = ids.pop();
                }
            }
            "inReplyTo" => {
                if let Some(ids) = msg_ids(v, k)? {
                    b = b.in_reply_to(ids);
                }
            }
            "references" => {
                if let Some(ids) = msg_ids(v, k)? {
                    b = b.references(ids);
                }
            }
            "textBody" => text = body_text(v, values, k, "text/plain")?,
            "htmlBody" => html = body_text(v, values, k, "text/html")?,
            "bodyValues" => {}
            _ => {
                return Err(bad(k).with_description("not supported in a created Email (yet)"));
            }
        }
    }
    let mailbox = mailbox.ok_or_else(|| bad("mailboxIds"))?;
    // A Message-ID of our own makes the draft findable after a crash, and threads replies.
    let mid = message_id.unwrap_or_else(|| format!("{}@tidings.invalid", random_id()));
    b = b.message_id(mid).date(sent_at);
    match (text, html) {
        (Some(t), Some(h)) => b = b.text_body(t).html_body(h),
        (Some(t), None) => b = b.text_body(t),
        (None, Some(h)) => b = b.html_body(h),
        (None, None) => b = b.text_body(String::new()),
    }
    let raw = b
        .write_to_vec()
        .map_err(|_| SetError::new(jmap_proto::SetErrorType::InvalidEmail))?;
    Ok((mailbox, keywords, received_at, raw))
}

/// Whether the message starts with something shaped like a header field (`Name: value`).
pub(crate) fn has_header_field(raw: &[u8]) -> bool {
    let line = raw.split(|b| *b == b'\n').next().unwrap_or(&[]);
    match line.iter().position(|b| *b == b':') {
        Some(p) if p > 0 => line[..p]
            .iter()
            .all(|b| (33..=126).contains(b) && *b != b':'),
        _ => false,
    }
}

//! Email/get (RFC 8621 4.2) and Email/query (4.4), over the metadata the store keeps.
//!
//! Body properties (bodyStructure, textBody, htmlBody, attachments, bodyValues) are
//! computed from the stored message on demand (`body.rs`). Not yet: `header:` properties;
//! OR/NOT of Email conditions, the thread keyword and header conditions; sorts other than
//! `receivedAt`. Each answers the RFC's error, never a wrong result.

use super::{Ctx, body, ids};
use jmap_proto::mail::properties::{
    BODY_PART_DEFAULT_PROPERTIES, EMAIL_GET_DEFAULT_PROPERTIES, check_email_properties,
};
use jmap_proto::mail::{EmailFilterCondition, EmailGetRequest, EmailQueryRequest};
use jmap_proto::method::filter::{Filter, Operator};
use jmap_proto::method::{GetResponse, QueryResponse};
use jmap_proto::{IdRef, MethodError, MethodErrorType, UtcDate};
use serde_json::{Map, Value, json};
use store::{EmailQuery, EmailView};

/// Served today: RFC 8621's default list of Email/get (the stored metadata plus the body
/// lists and values) and bodyStructure; not yet `headers` and `header:` forms.
fn served(p: &str) -> bool {
    EMAIL_GET_DEFAULT_PROPERTIES.contains(&p) || body::BODY_EMAIL_PROPERTIES.contains(&p)
}

fn date(ts: i64) -> Value {
    UtcDate::from_timestamp(ts)
        .map(|d| json!(d.to_string()))
        .unwrap_or(Value::Null)
}

fn ids_or_null(v: &[String]) -> Value {
    if v.is_empty() { Value::Null } else { json!(v) }
}

fn addresses(v: &Value) -> Value {
    match v {
        Value::Array(a) if !a.is_empty() => v.clone(),
        _ => Value::Null,
    }
}

fn property(e: &EmailView, p: &str) -> Option<Value> {
    Some(match p {
        "blobId" => json!(e.blob_id.as_ref().map(|b| format!("b{b}"))),
        "threadId" => json!(ids::id('t', e.thread.0)),
        "mailboxIds" => {
            let m: Map<String, Value> = e
                .mailboxes
                .iter()
                .filter_map(|m| ids::id('m', m.0))
                .map(|id| (id.as_str().to_string(), Value::Bool(true)))
                .collect();
            Value::Object(m)
        }
        "keywords" => {
            let m: Map<String, Value> = e
                .keywords
                .iter()
                .map(|k| (k.clone(), Value::Bool(true)))
                .collect();
            Value::Object(m)
        }
        "size" => json!(e.size),
        "receivedAt" => date(e.received_at),
        "sentAt" => e.sent_at.map(date).unwrap_or(Value::Null),
        "messageId" => match &e.message_id {
            Some(m) => json!([m]),
            None => Value::Null,
        },
        "inReplyTo" => ids_or_null(&e.in_reply_to),
        "references" => ids_or_null(&e.references),
        "sender" => addresses(&e.sender),
        "from" => addresses(&e.from),
        "to" => addresses(&e.to),
        "cc" => addresses(&e.cc),
        "bcc" => addresses(&e.bcc),
        "replyTo" => addresses(&e.reply_to),
        "subject" => json!(e.subject),
        "hasAttachment" => json!(e.has_attachment),
        "preview" => json!(e.preview),
        _ => return None,
    })
}

/// The body properties of one Email; null values while its body is not stored yet (the
/// sync fetches headers first).
async fn body_of(
    ctx: &Ctx<'_>,
    e: &EmailView,
    req: &std::sync::Arc<body::BodyRequest>,
) -> Result<Map<String, Value>, MethodError> {
    let Some(blob) = e.blob_id.clone() else {
        return Ok(req.props.iter().map(|p| (p.clone(), Value::Null)).collect());
    };
    let raw = ctx
        .store
        .blob(&blob)
        .await
        .map_err(|err| MethodError::server_fail(err.to_string()))?;
    let Some(raw) = raw else {
        return Ok(req.props.iter().map(|p| (p.clone(), Value::Null)).collect());
    };
    let req = req.clone();
    tokio::task::spawn_blocking(move || body::body_properties(&raw, &blob, &req))
        .await
        .map_err(|err| MethodError::server_fail(err.to_string()))
}

pub(crate) async fn get(
    ctx: &Ctx<'_>,
    args: Map<String, Value>,
) -> Result<Map<String, Value>, MethodError> {
    let req: EmailGetRequest = EmailGetRequest::parse(args)?;
    req.check_limit(ctx.max_objects_in_get)?;
    let account = ctx.account(&req.account_id)?;
    let props: Vec<String> = match &req.properties {
        Some(p) => {
            check_email_properties(p)?;
            if let Some(p) = p.iter().find(|p| !served(p)) {
                return Err(MethodError::invalid_arguments(format!(
                    "property {p} is not served by this build yet"
                )));
            }
            p.clone()
        }
        None => EMAIL_GET_DEFAULT_PROPERTIES
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    let body_properties: Vec<String> = match &req.extra.body_properties {
        Some(b) => {
            body::check_body_properties(b)?;
            b.clone()
        }
        None => BODY_PART_DEFAULT_PROPERTIES
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    let body_req = std::sync::Arc::new(body::BodyRequest {
        props: props
            .iter()
            .filter(|p| body::BODY_EMAIL_PROPERTIES.contains(&p.as_str()))
            .cloned()
            .collect(),
        body_properties,
        fetch_text: req.extra.fetch_text_body_values,
        fetch_html: req.extra.fetch_html_body_values,
        fetch_all: req.extra.fetch_all_body_values,
        max_bytes: usize::try_from(req.extra.max_body_value_bytes).unwrap_or(usize::MAX),
    });
    let state = ctx.store_state(account).await?;
    let Some(wanted) = req.ids.clone() else {
        // RFC 8621 4.2: a server may refuse to list every Email.
        return Err(MethodError::with_description(
            MethodErrorType::RequestTooLarge,
            "Email/get needs ids (use Email/query)",
        ));
    };
    let mut rows = Vec::new();
    let mut asked = Vec::new();
    for r in &wanted {
        if let IdRef::Id(id) = r
            && let Some(n) = ids::parse('e', id.as_str())
        {
            rows.push(mail_types::EmailId(n));
            asked.push((r.clone(), Some(n)));
        } else {
            asked.push((r.clone(), None));
        }
    }
    let found = ctx
        .store
        .emails(account, &rows)
        .await
        .map_err(|e| MethodError::server_fail(e.to_string()))?;
    let by_id: std::collections::HashMap<i64, &EmailView> =
        found.iter().map(|e| (e.id.0, e)).collect();
    let mut list = Vec::new();
    let mut not_found = Vec::new();
    for (r, n) in asked {
        match n.and_then(|n| by_id.get(&n)) {
            Some(e) => {
                let mut o = Map::new();
                o.insert("id".into(), json!(ids::id('e', e.id.0)));
                for p in &props {
                    if let Some(v) = property(e, p) {
                        o.insert(p.clone(), v);
                    }
                }
                if !body_req.props.is_empty() {
                    o.extend(body_of(ctx, e, &body_req).await?);
                }
                list.push(Value::Object(o));
            }
            None => not_found.push(r),
        }
    }
    super::to_map(&GetResponse {
        account_id: req.account_id.clone(),
        state: ids::state(state),
        list,
        not_found,
    })
}

/// Folds a filter into the one shape the store answers: an AND of conditions.
fn flatten(f: &Filter<EmailFilterCondition>, q: &mut EmailQuery) -> Result<(), MethodError> {
    match f {
        Filter::Operator(op) if op.operator == Operator::And => {
            for c in &op.conditions {
                flatten(c, q)?;
            }
            Ok(())
        }
        Filter::Operator(_) => Err(MethodError::unsupported_filter(
            "OR and NOT over Email conditions are not supported by this build yet",
        )),
        Filter::Condition(c) => {
            let unsupported = c.all_in_thread_have_keyword.is_some()
                || c.some_in_thread_have_keyword.is_some()
                || c.none_in_thread_have_keyword.is_some()
                || c.header.is_some();
            if unsupported {
                return Err(MethodError::unsupported_filter(
                    "thread keyword and header conditions are not supported by this build yet",
                ));
            }
            let join = |slot: &mut Option<String>, v: &Option<String>| {
                if let Some(v) = v {
                    *slot = Some(match slot.take() {
                        Some(prev) => format!("{prev} {v}"),
                        None => v.clone(),
                    });
                }
            };
            join(&mut q.subject, &c.subject);
            join(&mut q.body, &c.body);
            // Two conditions on one address field: both must hold; the store takes one
            // substring per field, so a second one makes the filter unsupported.
            for (slot, v) in [
                (&mut q.from, &c.from),
                (&mut q.to, &c.to),
                (&mut q.cc, &c.cc),
                (&mut q.bcc, &c.bcc),
            ] {
                if let Some(v) = v {
                    if slot.is_some() {
                        return Err(MethodError::unsupported_filter(
                            "two conditions on one address field are not supported yet",
                        ));
                    }
                    *slot = Some(v.clone());
                }
            }
            if let Some(others) = &c.in_mailbox_other_than {
                for m in others {
                    // A mailbox id that does not parse is no mailbox: excluding it excludes nothing.
                    if let Some(n) = ids::parse('m', m.as_str()) {
                        q.not_in_mailboxes.push(mail_types::MailboxId(n));
                    }
                }
            }
            if let Some(b) = &c.before {
                let t = b.timestamp();
                q.before = Some(q.before.map_or(t, |x| x.min(t)));
            }
            if let Some(a) = &c.after {
                let t = a.timestamp();
                q.after = Some(q.after.map_or(t, |x| x.max(t)));
            }
            if let Some(v) = c.min_size {
                q.min_size = Some(q.min_size.map_or(v, |x| x.max(v)));
            }
            if let Some(v) = c.max_size {
                q.max_size = Some(q.max_size.map_or(v, |x| x.min(v)));
            }
            q.has_keyword.extend(c.has_keyword.iter().cloned());
            q.not_keyword.extend(c.not_keyword.iter().cloned());
            if let Some(h) = c.has_attachment {
                if q.has_attachment.is_some_and(|x| x != h) {
                    // hasAttachment true AND false: nothing matches.
                    q.in_mailbox = Some(mail_types::MailboxId(-1));
                }
                q.has_attachment = Some(h);
            }
            if let Some(m) = &c.in_mailbox {
                let Some(n) = ids::parse('m', m.as_str()) else {
                    // No such mailbox: nothing matches. Mark with an impossible id.
                    q.in_mailbox = Some(mail_types::MailboxId(-1));
                    return Ok(());
                };
                if q.in_mailbox.is_some_and(|x| x.0 != n) {
                    q.in_mailbox = Some(mail_types::MailboxId(-1));
                } else {
                    q.in_mailbox = Some(mail_types::MailboxId(n));
                }
            }
            if let Some(t) = &c.text {
                let joined = match &q.text {
                    Some(prev) => format!("{prev} {t}"),
                    None => t.clone(),
                };
                q.text = Some(joined);
            }
            Ok(())
        }
    }
}

pub(crate) async fn query(
    ctx: &Ctx<'_>,
    args: Map<String, Value>,
) -> Result<Map<String, Value>, MethodError> {
    let req: EmailQueryRequest = EmailQueryRequest::parse(args)?;
    let account = ctx.account(&req.account_id)?;
    let mut q = EmailQuery {
        collapse_threads: req.extra.collapse_threads,
        ..EmailQuery::default()
    };
    if let Some(f) = &req.filter {
        flatten(f, &mut q)?;
    }
    match req.sort.as_deref() {
        None | Some([]) => {}
        Some([c]) if c.property == "receivedAt" => q.ascending = c.is_ascending,
        Some(_) => {
            return Err(MethodError::unsupported_sort(
                "only receivedAt is supported by this build yet",
            ));
        }
    }
    let state = ctx.store_state(account).await?;
    let limit = req
        .limit
        .map(|l| usize::try_from(l).unwrap_or(usize::MAX))
        .unwrap_or(MAX_QUERY_LIMIT)
        .min(MAX_QUERY_LIMIT);
    // The common case (a page from a non-negative position, no anchor, no thread
    // collapsing) is answered by an index walk of just that page.
    let direct = req.anchor.is_none() && req.position >= 0 && !q.collapse_threads;
    q.count = req.calculate_total || !direct;
    if direct {
        q.window = Some((usize::try_from(req.position).unwrap_or(usize::MAX), limit));
    }
    let result = ctx
        .store
        .query_emails(account, &q)
        .await
        .map_err(|e| MethodError::server_fail(e.to_string()))?;
    let (start, page): (usize, Vec<_>) = if direct {
        (
            usize::try_from(req.position).unwrap_or(usize::MAX),
            result
                .ids
                .iter()
                .filter_map(|e| ids::id('e', e.0))
                .collect(),
        )
    } else {
        let all = &result.ids;
        let total = all.len() as i64;
        // RFC 8620 5.5: an anchor wins over position; a negative position counts from
        // the end.
        let start = match &req.anchor {
            Some(a) => {
                let n = ids::parse('e', a.as_str());
                let idx = all
                    .iter()
                    .position(|e| Some(e.0) == n)
                    .ok_or_else(|| MethodError::new(MethodErrorType::AnchorNotFound))?;
                (idx as i64 + req.anchor_offset).max(0)
            }
            None if req.position < 0 => (total + req.position).max(0),
            None => req.position,
        }
        .min(total) as usize;
        (
            start,
            all.iter()
                .skip(start)
                .take(limit)
                .filter_map(|e| ids::id('e', e.0))
                .collect(),
        )
    };
    let total = result.total.unwrap_or(result.ids.len());
    super::to_map(&QueryResponse {
        account_id: req.account_id.clone(),
        query_state: ids::state(state),
        can_calculate_changes: false,
        position: start.min(total) as u64,
        ids: page,
        total: req.calculate_total.then_some(total as u64),
        limit: (req.limit.is_none() || req.limit.is_some_and(|l| l as usize > MAX_QUERY_LIMIT))
            .then_some(MAX_QUERY_LIMIT as u64),
    })
}

/// The most ids one Email/query returns (RFC 8620 5.5 lets the server cap `limit`, saying
/// so in the response).
const MAX_QUERY_LIMIT: usize = 1_000;

//! Email/get (RFC 8621 4.2) and Email/query (4.4), over the metadata the store keeps.
//!
//! Body properties (bodyStructure, textBody, htmlBody, attachments, bodyValues) and header
//! properties (`headers`, `header:Name:asForm:all`) are computed from the stored message
//! on demand (`body.rs`, `headers.rs`); a message the sync has not stored yet is fetched
//! first (`crate::bodies`). Email/query turns the JMAP filter tree and sort
//! into the store's (`store_filter`, `store_sort`); the store compiles them into one SQL
//! query.

use super::{Ctx, body, ids};
use jmap_proto::mail::properties::{EMAIL_GET_DEFAULT_PROPERTIES, check_email_properties};
use jmap_proto::mail::{EmailFilterCondition, EmailGetArgs, EmailQueryRequest};
use jmap_proto::method::QueryResponse;
use jmap_proto::method::filter::{Filter, Operator};
use jmap_proto::method::sort::Comparator;
use jmap_proto::{IdRef, MethodError, MethodErrorType, UtcDate};
use serde_json::{Map, Value, json};
use store::{Collation, EmailFilter, EmailQuery, EmailSort, EmailSortKey, EmailView};

/// Every Email property of RFC 8621 4.1: the stored metadata, the body properties and
/// the header properties (both computed from the stored message).
fn served(p: &str) -> bool {
    EMAIL_GET_DEFAULT_PROPERTIES.contains(&p)
        || body::BODY_EMAIL_PROPERTIES.contains(&p)
        || super::headers::is_header_property(p)
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
        "blobId" => json!(e.jmap_blob_id()),
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
        // RFC 8621 4.1.2.6: a Date, in the offset the Date header was written in.
        "sentAt" => e
            .sent_at
            .and_then(|t| {
                jmap_proto::Date::new(t, e.sent_offset).or_else(|| jmap_proto::Date::new(t, 0))
            })
            .map(|d| json!(d.to_string()))
            .unwrap_or(Value::Null),
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

/// The properties of one Email computed from its stored message (body and header
/// properties). Its body is stored: `get` fetched it first when it was not.
async fn from_message(
    ctx: &Ctx<'_>,
    e: &EmailView,
    req: &std::sync::Arc<body::BodyRequest>,
    header_props: &std::sync::Arc<Vec<String>>,
) -> Result<Map<String, Value>, MethodError> {
    let Some(blob) = e.blob_id.clone() else {
        return Err(MethodError::server_fail("the message is not stored"));
    };
    let raw = ctx
        .store
        .blob(&blob)
        .await
        .map_err(|err| MethodError::server_fail(err.to_string()))?
        .ok_or_else(|| MethodError::server_fail("the stored message is missing"))?;
    let req = req.clone();
    let header_props = header_props.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = Map::new();
        if !header_props.is_empty() {
            out.extend(super::headers::email_properties(&raw, &header_props));
        }
        if !req.props.is_empty() {
            // Last: the message's buffer may become a body value.
            out.extend(body::body_properties(
                std::borrow::Cow::Owned(raw),
                &blob,
                &req,
            ));
        }
        out
    })
    .await
    .map_err(|err| MethodError::server_fail(err.to_string()))
}

/// Whether Email/get must have this Email's message before it answers: body and header
/// properties are computed from it; `preview` and `hasAttachment` (stored from the header
/// alone until the body comes: an empty preview, a guess from Content-Type) need it too,
/// except for a message over [`SUMMARY_FETCH_MAX`]. A list page asks for those two for
/// every row: fetching its small messages is one round trip per mailbox on the engine's
/// lane (they are batched), but a page of 20 MB attachments would hold the list for
/// minutes. Those get their body from the background pass, or when opened, and the change
/// is announced (Email/changes) like any body arriving.
fn needs_body(
    e: &EmailView,
    props: &[String],
    body_req: &body::BodyRequest,
    header_props: &[String],
) -> bool {
    e.blob_id.is_none()
        && (!body_req.props.is_empty()
            || !header_props.is_empty()
            || (e.size <= SUMMARY_FETCH_MAX
                && props.iter().any(|p| p == "preview" || p == "hasAttachment")))
}

/// See [`needs_body`]: the largest message fetched for `preview` / `hasAttachment` alone.
const SUMMARY_FETCH_MAX: u32 = 1024 * 1024;

pub(crate) async fn get(
    ctx: &Ctx<'_>,
    args: Map<String, Value>,
) -> Result<Map<String, Value>, MethodError> {
    let (req, account) = ctx.get_request::<EmailGetArgs>(args)?;
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
    let body_req = std::sync::Arc::new(body::BodyRequest::new(&props, &req.extra)?);
    let header_props = std::sync::Arc::new(
        props
            .iter()
            .filter(|p| super::headers::is_header_property(p))
            .cloned()
            .collect::<Vec<_>>(),
    );
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
    let mut found = ctx
        .store
        .emails(account, &rows)
        .await
        .map_err(|e| MethodError::server_fail(e.to_string()))?;
    // Bodies not stored yet are fetched now (concurrently; the engine shares one fetch per
    // Email). One that is gone from the server is notFound; a server that cannot be
    // reached fails the method: never an Email with its body properties missing.
    let mut gone = std::collections::HashSet::new();
    let wanted_body = |e: &EmailView| needs_body(e, &props, &body_req, &header_props);
    if found.iter().any(wanted_body) {
        let messages = ctx.messages();
        let missing: Vec<EmailView> = found.iter().filter(|e| wanted_body(e)).cloned().collect();
        let fetched =
            futures::future::join_all(missing.into_iter().map(|e| messages.with_body(account, e)))
                .await;
        for (slot, got) in found.iter_mut().filter(|e| wanted_body(e)).zip(fetched) {
            match got {
                Ok(v) => *slot = v,
                Err(crate::bodies::BlobError::NotFound) => {
                    gone.insert(slot.id.0);
                }
                Err(e) => return Err(e.method_error()),
            }
        }
    }
    found.retain(|e| !gone.contains(&e.id.0));
    let by_id: std::collections::HashMap<i64, &EmailView> =
        found.iter().map(|e| (e.id.0, e)).collect();
    if !body_req.props.is_empty() || !header_props.is_empty() {
        let large: u64 = found
            .iter()
            .map(|e| u64::from(e.size))
            .filter(|s| *s > super::large::LARGE_MESSAGE)
            .sum();
        ctx.large.reserve(ctx.held, large).await?;
    }
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
                if !body_req.props.is_empty() || !header_props.is_empty() {
                    o.extend(from_message(ctx, e, &body_req, &header_props).await?);
                }
                list.push(Value::Object(o));
            }
            None => not_found.push(r),
        }
    }
    Ok(req.respond(ids::state(state), list, not_found))
}

/// One JMAP FilterCondition as the store's AND of conditions.
fn condition(c: &EmailFilterCondition) -> Vec<EmailFilter> {
    use store::EmailCondition as C;
    let mut out = Vec::new();
    let mut add = |c: C| out.push(EmailFilter::Condition(c));
    if let Some(m) = &c.in_mailbox {
        // A mailbox id that does not parse is no mailbox: nothing is in it.
        add(match ids::parse('m', m.as_str()) {
            Some(n) => C::InMailbox(mail_types::MailboxId(n)),
            None => C::Nothing,
        });
    }
    if let Some(others) = &c.in_mailbox_other_than {
        add(C::InMailboxOtherThan(
            others
                .iter()
                .filter_map(|m| ids::parse('m', m.as_str()))
                .map(mail_types::MailboxId)
                .collect(),
        ));
    }
    if let Some(b) = &c.before {
        add(C::Before(b.timestamp()));
    }
    if let Some(a) = &c.after {
        add(C::After(a.timestamp()));
    }
    if let Some(v) = c.min_size {
        add(C::MinSize(v));
    }
    if let Some(v) = c.max_size {
        add(C::MaxSize(v));
    }
    for (k, f) in [
        (
            &c.all_in_thread_have_keyword,
            C::AllInThreadHaveKeyword as fn(String) -> C,
        ),
        (&c.some_in_thread_have_keyword, C::SomeInThreadHaveKeyword),
        (&c.none_in_thread_have_keyword, C::NoneInThreadHaveKeyword),
        (&c.has_keyword, C::HasKeyword),
        (&c.not_keyword, C::NotKeyword),
        (&c.text, C::Text),
        (&c.from, C::From),
        (&c.to, C::To),
        (&c.cc, C::Cc),
        (&c.bcc, C::Bcc),
        (&c.subject, C::Subject),
        (&c.body, C::Body),
    ] {
        if let Some(k) = k {
            add(f(k.clone()));
        }
    }
    if let Some(h) = c.has_attachment {
        add(C::HasAttachment(h));
    }
    if let Some((name, value)) = c.header_condition() {
        add(C::Header(name.to_string(), value.map(str::to_string)));
    }
    out
}

/// Most conditions one Email/query may carry into the store, and most SQL parameters
/// they may need (SQLite allows 32766): a larger filter is `unsupportedFilter`.
const MAX_STORE_CONDITIONS: usize = 2_000;
const MAX_STORE_PARAMETERS: usize = 20_000;

/// A JMAP filter as the store's filter tree, within the store's limits.
pub(crate) fn store_filter(f: &Filter<EmailFilterCondition>) -> Result<EmailFilter, MethodError> {
    let tree = to_store_filter(f)?;
    let (mut conditions, mut parameters) = (0usize, 0usize);
    let mut stack = vec![&tree];
    while let Some(f) = stack.pop() {
        match f {
            EmailFilter::And(p) | EmailFilter::Or(p) | EmailFilter::Not(p) => stack.extend(p),
            EmailFilter::Condition(c) => {
                use store::EmailCondition as C;
                conditions += 1;
                parameters += match c {
                    C::Text(t) | C::Subject(t) | C::Body(t) => t.split_whitespace().count().min(32),
                    C::InMailboxOtherThan(l) => l.len().min(1000),
                    C::Header(..) => 2,
                    _ => 1,
                };
            }
        }
    }
    if conditions > MAX_STORE_CONDITIONS || parameters > MAX_STORE_PARAMETERS {
        return Err(MethodError::unsupported_filter(format!(
            "the filter has {conditions} conditions ({parameters} values); at most \
             {MAX_STORE_CONDITIONS} conditions and {MAX_STORE_PARAMETERS} values are supported"
        )));
    }
    Ok(tree)
}

fn to_store_filter(f: &Filter<EmailFilterCondition>) -> Result<EmailFilter, MethodError> {
    Ok(match f {
        Filter::Condition(c) => {
            if let Some(h) = &c.header
                && (h.is_empty() || h.len() > 2)
            {
                return Err(MethodError::invalid_arguments(
                    "header takes the field name and optionally a value (RFC 8621 4.4.1)",
                ));
            }
            let mut parts = condition(c);
            if parts.len() == 1 {
                parts.remove(0)
            } else {
                EmailFilter::And(parts)
            }
        }
        Filter::Operator(op) => {
            let parts = op
                .conditions
                .iter()
                .map(to_store_filter)
                .collect::<Result<Vec<_>, _>>()?;
            match op.operator {
                Operator::And => EmailFilter::And(parts),
                Operator::Or => EmailFilter::Or(parts),
                Operator::Not => EmailFilter::Not(parts),
            }
        }
    })
}

/// The sort properties Email/query serves (the Session lists them).
pub(crate) const SORT_OPTIONS: &[&str] = &[
    "receivedAt",
    "sentAt",
    "size",
    "from",
    "to",
    "subject",
    "hasKeyword",
    "allInThreadHaveKeyword",
    "someInThreadHaveKeyword",
];

/// JMAP comparators as the store's sort.
pub(crate) fn store_sort(sort: &[Comparator]) -> Result<Vec<EmailSort>, MethodError> {
    if sort.len() > 16 {
        return Err(MethodError::unsupported_sort("at most 16 comparators"));
    }
    let mut out = Vec::new();
    for c in sort {
        let keyword = || {
            c.keyword.clone().ok_or_else(|| {
                MethodError::invalid_arguments(format!("sorting by {} needs a keyword", c.property))
            })
        };
        let key = match c.property.as_str() {
            "receivedAt" => EmailSortKey::ReceivedAt,
            "sentAt" => EmailSortKey::SentAt,
            "size" => EmailSortKey::Size,
            "from" => EmailSortKey::From,
            "to" => EmailSortKey::To,
            "subject" => EmailSortKey::Subject,
            "hasKeyword" => EmailSortKey::HasKeyword(keyword()?),
            "allInThreadHaveKeyword" => EmailSortKey::AllInThreadHaveKeyword(keyword()?),
            "someInThreadHaveKeyword" => EmailSortKey::SomeInThreadHaveKeyword(keyword()?),
            other => {
                return Err(MethodError::unsupported_sort(format!(
                    "cannot sort by {:?}",
                    other.chars().take(64).collect::<String>()
                )));
            }
        };
        let collation = match c.collation.as_deref() {
            None => Collation::default(),
            Some(name) => Collation::from_name(name).ok_or_else(|| {
                MethodError::unsupported_sort(format!(
                    "unknown collation {:?} (supported: {})",
                    name.chars().take(64).collect::<String>(),
                    Collation::NAMES.join(", ")
                ))
            })?,
        };
        out.push(EmailSort {
            key,
            ascending: c.is_ascending,
            collation,
        });
    }
    Ok(out)
}

/// Whether the results of a query can change only through the Emails the change log
/// names (so /queryChanges can be computed from it): not so when a condition or a sort
/// looks at the other Emails of a thread.
pub(crate) fn changes_computable(
    f: Option<&Filter<EmailFilterCondition>>,
    sort: &[Comparator],
) -> bool {
    let mut ok = true;
    if let Some(f) = f {
        f.for_each_condition(&mut |c| {
            if c.all_in_thread_have_keyword.is_some()
                || c.some_in_thread_have_keyword.is_some()
                || c.none_in_thread_have_keyword.is_some()
            {
                ok = false;
            }
        });
    }
    ok && !sort
        .iter()
        .any(|c| c.property.ends_with("InThreadHaveKeyword"))
}

pub(crate) async fn query(
    ctx: &Ctx<'_>,
    args: Map<String, Value>,
) -> Result<Map<String, Value>, MethodError> {
    let req: EmailQueryRequest = EmailQueryRequest::parse(args)?;
    let account = ctx.account(&req.account_id)?;
    let sort = store_sort(req.sort.as_deref().unwrap_or(&[]))?;
    let mut q = EmailQuery {
        collapse_threads: req.extra.collapse_threads,
        filter: req.filter.as_ref().map(store_filter).transpose()?,
        sort,
        ..EmailQuery::default()
    };
    let state = ctx.store_state(account).await?;
    let limit = req
        .limit
        .map(|l| usize::try_from(l).unwrap_or(usize::MAX))
        .unwrap_or(MAX_QUERY_LIMIT)
        .min(MAX_QUERY_LIMIT);
    // The common case (a page from a non-negative position, no anchor) is answered by an
    // index walk up to the end of that page (of threads, when collapsed).
    let direct = req.anchor.is_none() && req.position >= 0;
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
        can_calculate_changes: changes_computable(
            req.filter.as_ref(),
            req.sort.as_deref().unwrap_or(&[]),
        ),
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

//! Email/set create (RFC 8621 4.6): a draft from JMAP properties, built as an RFC 5322
//! message by `mail-builder` (never by hand), stored as a blob and queued for APPEND to its
//! first mailbox (COPY to the others). Served: mailboxIds (one or more), keywords,
//! receivedAt, from, sender, to, cc, bcc, replyTo, subject, sentAt, messageId, inReplyTo,
//! references, `header:{name}[:as{Form}][:all]`, and the body either as textBody and/or
//! htmlBody (both: multipart/alternative) plus attachments (multipart/mixed; inline parts
//! with a cid go into a multipart/related with the HTML), or as a whole bodyStructure. Part
//! content comes from bodyValues (`partId`) or from a blob (`blobId`: an upload, a message,
//! or a part of a message of the account). Anything else is refused with
//! invalidProperties, never dropped silently; a blob the account cannot read is
//! blobNotFound.

// SetError is the RFC's error object, returned by value as everywhere in the API.
#![allow(clippy::result_large_err)]

use super::Ctx;
use jmap_proto::mail::header::{HeaderForm, parse_header_property};
use jmap_proto::{Id, MethodError, SetError, SetErrorType, UtcDate};
use mail_builder::MessageBuilder;
use mail_builder::headers::HeaderType;
use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::raw::Raw;
use mail_builder::headers::text::Text;
use mail_builder::headers::url::URL;
use mail_builder::mime::{BodyPart, MimePart};
use mail_types::{AccountId, MailboxId};
use serde_json::{Map, Value};
use std::collections::{BTreeSet, HashMap, HashSet};

/// Bounds on what one created Email may hold (hostile input: no unbounded work).
const MAX_PARTS: usize = 256;
const MAX_DEPTH: usize = 16;
const MAX_HEADER_VALUES: usize = 1000;
/// The built message, like an upload (the server's maxSizeUpload default).
const MAX_MESSAGE: usize = 50_000_000;

fn bad(p: &str) -> SetError {
    SetError::invalid_properties([p.to_string()])
}

fn bad_at(p: &str, why: impl Into<String>) -> SetError {
    bad(p).with_description(why.into())
}

fn fail(e: impl std::fmt::Display) -> MethodError {
    MethodError::server_fail(e.to_string())
}

fn addresses(v: &Value, p: &str) -> Result<Option<Address<'static>>, SetError> {
    match v {
        Value::Null => Ok(None),
        Value::Array(list) if list.len() <= MAX_HEADER_VALUES => {
            Ok(Some(Address::new_list(address_items(list, p)?)))
        }
        _ => Err(bad(p)),
    }
}

fn address_items(list: &[Value], p: &str) -> Result<Vec<Address<'static>>, SetError> {
    let mut out = Vec::new();
    for a in list {
        let email = a
            .get("email")
            .and_then(Value::as_str)
            .filter(|e| e.contains('@') && !e.chars().any(|c| c.is_control() || c == ' '))
            .ok_or_else(|| bad(p))?;
        let name = match a.get("name") {
            None | Some(Value::Null) => None,
            Some(Value::String(n)) if !n.chars().any(char::is_control) => Some(n.clone()),
            Some(_) => return Err(bad(p)),
        };
        out.push(Address::new_address(name, email.to_string()));
    }
    Ok(out)
}

/// `asGroupedAddresses`: `[{"name": ..., "addresses": [...]}]`; a group without a name is
/// a plain list of addresses.
fn grouped(v: &Value, p: &str) -> Result<Option<Address<'static>>, SetError> {
    let Value::Array(groups) = v else {
        return if v.is_null() { Ok(None) } else { Err(bad(p)) };
    };
    if groups.len() > MAX_HEADER_VALUES {
        return Err(bad(p));
    }
    let mut out = Vec::new();
    for g in groups {
        let list = g
            .get("addresses")
            .and_then(Value::as_array)
            .ok_or_else(|| bad(p))?;
        let items = address_items(list, p)?;
        match g.get("name") {
            None | Some(Value::Null) => out.extend(items),
            Some(Value::String(n)) if !n.chars().any(char::is_control) => {
                out.push(Address::new_group(Some(n.clone()), items))
            }
            Some(_) => return Err(bad(p)),
        }
    }
    Ok(Some(Address::new_list(out)))
}

fn msg_ids(v: &Value, p: &str) -> Result<Option<Vec<String>>, SetError> {
    match v {
        Value::Null => Ok(None),
        Value::Array(list) if !list.is_empty() && list.len() <= MAX_HEADER_VALUES => list
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

/// A `Date` (RFC 8620 1.4), its offset kept: the Date field is written in the offset the
/// client gave (`+05:30` stays `+0530`, RFC 5322 3.3), as the sender's clock had it.
fn date(v: &Value, p: &str) -> Result<Option<jmap_proto::Date>, SetError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => s
            .parse::<jmap_proto::Date>()
            .ok()
            .map(Some)
            .ok_or_else(|| bad(p)),
        _ => Err(bad(p)),
    }
}

/// A Date field value. Written here rather than by mail-builder's `Date`, which takes
/// only UTC and writes instants before 1970 wrongly (`15 Feb 1969 -11:-58:00`).
fn date_field(d: jmap_proto::Date) -> HeaderType<'static> {
    Raw::new(d.to_rfc5322()).into()
}

fn one_line(v: &Value, p: &str) -> Result<Option<String>, SetError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if !s.chars().any(|c| c == '\r' || c == '\n' || c == '\0') => {
            Ok(Some(s.clone()))
        }
        _ => Err(bad(p)),
    }
}

/// The value of one header field instance in the given form (RFC 8621 4.1.2), or `None`
/// for `null` (no such field).
fn header_value(
    form: HeaderForm,
    v: &Value,
    p: &str,
) -> Result<Option<HeaderType<'static>>, SetError> {
    Ok(match form {
        HeaderForm::Raw => match v {
            Value::Null => None,
            // Folding is allowed (CRLF followed by white space); mail-builder folds again.
            Value::String(s) => {
                let unfolded = s.replace("\r\n ", " ").replace("\r\n\t", "\t");
                if unfolded
                    .chars()
                    .any(|c| c == '\r' || c == '\n' || c == '\0')
                {
                    return Err(bad_at(p, "a raw value may only contain folded line breaks"));
                }
                Some(Raw::new(unfolded.trim_start().to_string()).into())
            }
            _ => return Err(bad(p)),
        },
        HeaderForm::Text => one_line(v, p)?.map(|s| Text::new(s).into()),
        HeaderForm::Addresses => addresses(v, p)?.map(Into::into),
        HeaderForm::GroupedAddresses => grouped(v, p)?.map(Into::into),
        HeaderForm::MessageIds => msg_ids(v, p)?.map(|l| MessageId::new_list(l.into_iter()).into()),
        HeaderForm::Date => date(v, p)?.map(date_field),
        HeaderForm::Urls => match v {
            Value::Null => None,
            Value::Array(list) if !list.is_empty() && list.len() <= MAX_HEADER_VALUES => {
                let urls = list
                    .iter()
                    .map(|u| {
                        u.as_str()
                            .filter(|s| {
                                !s.is_empty()
                                    && !s.chars().any(|c| c.is_whitespace() || "<>".contains(c))
                            })
                            .map(str::to_string)
                            .ok_or_else(|| bad(p))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Some(URL::new_list(urls.into_iter()).into())
            }
            _ => return Err(bad(p)),
        },
    })
}

/// A `header:` property of an Email or a body part: the field name and its instances.
type HeaderFields = (String, Vec<HeaderType<'static>>);

fn header_property(k: &str, v: &Value) -> Result<HeaderFields, SetError> {
    let h = parse_header_property(k).ok_or_else(|| bad(k))?;
    if !h.form_allowed() {
        return Err(bad_at(
            k,
            format!("{} cannot be given as {}", h.name, h.form.as_suffix()),
        ));
    }
    if h.name.is_empty() || !h.name.bytes().all(|b| (33..=126).contains(&b) && b != b':') {
        return Err(bad(k));
    }
    let mut out = Vec::new();
    if h.all {
        let Value::Array(list) = v else {
            return if v.is_null() {
                Ok((h.name, out))
            } else {
                Err(bad_at(k, ":all takes an array of values"))
            };
        };
        if list.len() > MAX_HEADER_VALUES {
            return Err(bad(k));
        }
        for one in list {
            out.extend(header_value(h.form, one, k)?);
        }
    } else {
        out.extend(header_value(h.form, v, k)?);
    }
    Ok((h.name, out))
}

/// The header field an Email property stands for (RFC 8621 4.1.3), lowercase.
fn field_of(property: &str) -> Option<&'static str> {
    Some(match property {
        "from" => "from",
        "sender" => "sender",
        "to" => "to",
        "cc" => "cc",
        "bcc" => "bcc",
        "replyTo" => "reply-to",
        "subject" => "subject",
        "sentAt" => "date",
        "messageId" => "message-id",
        "inReplyTo" => "in-reply-to",
        "references" => "references",
        _ => return None,
    })
}

/// Fields a body part property stands for; on a part they are set only through those.
const PART_FIELDS: &[&str] = &[
    "content-type",
    "content-disposition",
    "content-id",
    "content-language",
    "content-location",
    "content-transfer-encoding",
];

/// A blob a part names: its bytes and, when known, its media type.
pub(crate) struct PartBlob {
    bytes: Vec<u8>,
    content_type: Option<String>,
}

/// Every `blobId` the body parts of a created Email name (bounded walk).
fn blob_ids(obj: &Map<String, Value>) -> BTreeSet<String> {
    fn walk(v: &Value, out: &mut BTreeSet<String>, depth: usize, budget: &mut usize) {
        if depth > MAX_DEPTH || *budget == 0 {
            return;
        }
        *budget -= 1;
        match v {
            Value::Array(l) => l.iter().for_each(|x| walk(x, out, depth + 1, budget)),
            Value::Object(o) => {
                if let Some(b) = o.get("blobId").and_then(Value::as_str) {
                    out.insert(b.to_string());
                }
                if let Some(s) = o.get("subParts") {
                    walk(s, out, depth + 1, budget);
                }
            }
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    let mut budget = MAX_PARTS * 2;
    for k in ["textBody", "htmlBody", "attachments", "bodyStructure"] {
        if let Some(v) = obj.get(k) {
            walk(v, &mut out, 0, &mut budget);
        }
    }
    out
}

/// The bytes of a blob the account may read: an upload, one of its messages (`b<sha256>`
/// or `bm<email id>`), or a part of one of its messages (`b<sha256>-<partId>`, as Email/get
/// names them).
async fn part_blob(
    ctx: &Ctx<'_>,
    account: AccountId,
    blob: &str,
) -> Result<Option<PartBlob>, MethodError> {
    if blob.starts_with("bm") {
        // The message of an Email, fetched now if its body is not stored yet.
        return match ctx.messages().resolve(account, blob).await {
            Ok(r) => Ok(Some(PartBlob {
                bytes: r.message,
                content_type: Some("message/rfc822".into()),
            })),
            Err(crate::bodies::BlobError::NotFound) => Ok(None),
            Err(e) => Err(e.method_error()),
        };
    }
    let Some((sha, part)) = super::body::parse_blob_id(blob) else {
        return Ok(None);
    };
    let sha = sha.to_string();
    if part.is_none()
        && let Some(u) = ctx.store.upload(account, &sha).await.map_err(fail)?
        && let Some(bytes) = ctx.store.upload_bytes(account, &sha).await.map_err(fail)?
    {
        return Ok(Some(PartBlob {
            bytes,
            content_type: Some(u.content_type),
        }));
    }
    let Some(message) = ctx.messages().stored(account, &sha).await.map_err(fail)? else {
        return Ok(None);
    };
    Ok(match part {
        None => Some(PartBlob {
            bytes: message,
            content_type: Some("message/rfc822".into()),
        }),
        Some(p) => tokio::task::spawn_blocking(move || super::body::nested_part(&message, &p))
            .await
            .map_err(fail)?
            .map(|c| PartBlob {
                bytes: c.bytes,
                content_type: Some(c.content_type),
            }),
    })
}

pub(crate) async fn create(
    ctx: &Ctx<'_>,
    account: AccountId,
    obj: &Map<String, Value>,
    created_ids: &HashMap<String, Id>,
) -> Result<Result<Value, SetError>, MethodError> {
    // The blobs first (the builder itself is synchronous); a missing one is blobNotFound.
    let mut blobs = HashMap::new();
    let mut missing = Vec::new();
    for id in blob_ids(obj) {
        match part_blob(ctx, account, &id).await? {
            Some(b) => {
                blobs.insert(id, b);
            }
            None => missing.push(id),
        }
    }
    if !missing.is_empty() {
        let mut e = SetError::new(SetErrorType::BlobNotFound)
            .with_description(format!("no such blob: {}", missing.join(", ")));
        e.not_found = Some(missing.iter().filter_map(|m| Id::new(m).ok()).collect());
        return Ok(Err(e));
    }
    let built = match build(obj, created_ids, &blobs) {
        Ok(b) => b,
        Err(e) => return Ok(Err(e)),
    };
    super::email_import::store_message(
        ctx,
        account,
        built.raw,
        built.mailboxes,
        built.keywords,
        built.received_at,
    )
    .await
}

pub(crate) struct Built {
    pub mailboxes: Vec<MailboxId>,
    pub keywords: Vec<String>,
    pub received_at: i64,
    pub raw: Vec<u8>,
}

pub(crate) fn build(
    obj: &Map<String, Value>,
    created_ids: &HashMap<String, Id>,
    blobs: &HashMap<String, PartBlob>,
) -> Result<Built, SetError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (mailboxes, keywords, received) = super::email_import::placement(obj, created_ids)?;
    if mailboxes.is_empty() {
        return Err(bad_at("mailboxIds", "at least one mailbox"));
    }
    let mut sent_at = UtcDate::from_timestamp(now).map(jmap_proto::Date::from);
    let mut b = MessageBuilder::new();
    let mut message_id = None;
    let mut fields: HashSet<String> = HashSet::new();
    let mut has_date = false;
    let mut note = |field: &str, p: &str| -> Result<(), SetError> {
        if fields.insert(field.to_ascii_lowercase()) {
            Ok(())
        } else {
            Err(bad_at(
                p,
                format!("the header field {field} is given twice"),
            ))
        }
    };
    for (k, v) in obj {
        if let Some(f) = field_of(k) {
            note(f, k)?;
        }
        match k.as_str() {
            "mailboxIds" | "keywords" | "receivedAt" | "bodyValues" | "textBody" | "htmlBody"
            | "attachments" | "bodyStructure" => {}
            "sentAt" => {
                if let Some(d) = date(v, k)? {
                    sent_at = Some(d);
                }
            }
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
            "subject" => {
                if let Some(s) = one_line(v, k)? {
                    b = b.subject(s);
                }
            }
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
            "headers" => {
                return Err(bad_at(k, "set header fields as header:{name} properties"));
            }
            _ if k.starts_with("header:") => {
                let (name, values) = header_property(k, v)?;
                let lower = name.to_ascii_lowercase();
                if lower.starts_with("content-") || lower == "mime-version" {
                    return Err(bad_at(k, "Content-* fields belong to body parts"));
                }
                note(&lower, k)?;
                match lower.as_str() {
                    "message-id" => message_id = Some(String::new()),
                    "date" => has_date = true,
                    _ => {}
                }
                if !values.is_empty() {
                    b = b.headers(name, values);
                }
            }
            _ => {
                return Err(bad_at(k, "not a property a created Email can set"));
            }
        }
    }
    // A Message-ID of our own makes the draft findable after a crash, and threads replies
    // (an empty one here means the client gave it as a header: property).
    match message_id {
        Some(m) if m.is_empty() => {}
        Some(m) => b = b.message_id(m),
        None => b = b.message_id(format!("{}@tidings.invalid", random_id())),
    }
    if !has_date && let Some(d) = sent_at {
        b = b.header("Date", date_field(d));
    }
    let empty = Map::new();
    let values = match obj.get("bodyValues") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(m)) => {
            for (pid, bv) in m {
                // `null` is read as false, as Cyrus does: clients copy a fetched value's
                // flags back, and some write an absent flag as null.
                let flag = |n: &str| {
                    bv.get(n)
                        .is_some_and(|x| !matches!(x, Value::Bool(false) | Value::Null))
                };
                if bv.get("value").and_then(Value::as_str).is_none()
                    || flag("isEncodingProblem")
                    || flag("isTruncated")
                {
                    return Err(bad_at(
                        "bodyValues",
                        format!("{pid}: a value, not truncated, no encoding problem"),
                    ));
                }
            }
            m
        }
        Some(_) => return Err(bad("bodyValues")),
    };
    let mut parts = PartBuilder {
        values,
        blobs,
        count: 0,
    };
    let body = parts.body(obj)?;
    let raw = b
        .body(body)
        .write_to_vec()
        .map_err(|_| SetError::new(SetErrorType::InvalidEmail))?;
    let raw = mime::headers::refold_headers(raw);
    if raw.len() > MAX_MESSAGE {
        return Err(SetError::new(SetErrorType::TooLarge)
            .with_description(format!("the message would be over {MAX_MESSAGE} octets")));
    }
    Ok(Built {
        mailboxes,
        keywords,
        received_at: received.unwrap_or(now),
        raw,
    })
}

struct PartBuilder<'a> {
    values: &'a Map<String, Value>,
    blobs: &'a HashMap<String, PartBlob>,
    count: usize,
}

/// A media type as a client may give it: `type/subtype`, token characters (RFC 2045 5.1).
fn media_type(s: &str) -> Option<String> {
    let token = |t: &str| {
        !t.is_empty()
            && t.len() <= 127
            && t.bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&b))
    };
    let (a, b) = s.split_once('/')?;
    (token(a) && token(b)).then(|| s.to_ascii_lowercase())
}

impl PartBuilder<'_> {
    /// The body of the message: bodyStructure, or textBody/htmlBody/attachments.
    fn body(&mut self, obj: &Map<String, Value>) -> Result<MimePart<'static>, SetError> {
        let given = |k: &str| obj.get(k).is_some_and(|v| !v.is_null());
        if given("bodyStructure") {
            if given("textBody") || given("htmlBody") || given("attachments") {
                return Err(bad_at(
                    "bodyStructure",
                    "bodyStructure excludes textBody, htmlBody and attachments",
                ));
            }
            return self.part(&obj["bodyStructure"], "bodyStructure", 0);
        }
        let text = self.single(obj.get("textBody"), "textBody", "text/plain")?;
        let html = self.single(obj.get("htmlBody"), "htmlBody", "text/html")?;
        let mut attachments = Vec::new();
        let mut related = Vec::new();
        match obj.get("attachments") {
            None | Some(Value::Null) => {}
            Some(Value::Array(list)) => {
                for a in list {
                    let inline_cid = a.get("cid").is_some_and(|c| !c.is_null())
                        && a.get("disposition").and_then(Value::as_str) == Some("inline");
                    let p = self.part(a, "attachments", 1)?;
                    if matches!(p.contents, BodyPart::Multipart(_)) {
                        return Err(bad_at("attachments", "an attachment is a single part"));
                    }
                    if inline_cid && html.is_some() {
                        related.push(p);
                    } else {
                        attachments.push(p);
                    }
                }
            }
            Some(_) => return Err(bad("attachments")),
        }
        // Inline images referenced by cid travel with the HTML (RFC 2387).
        let html = match html {
            Some(h) if !related.is_empty() => {
                let mut v = vec![h];
                v.extend(related);
                Some(MimePart::new("multipart/related", v))
            }
            h => h,
        };
        let main = match (text, html) {
            (Some(t), Some(h)) => Some(MimePart::new("multipart/alternative", vec![t, h])),
            (Some(t), None) => Some(t),
            (None, Some(h)) => Some(h),
            (None, None) => None,
        };
        Ok(match (main, attachments.is_empty()) {
            (Some(m), true) => m,
            (Some(m), false) => {
                let mut v = vec![m];
                v.extend(attachments);
                MimePart::new("multipart/mixed", v)
            }
            (None, false) => MimePart::new("multipart/mixed", attachments),
            (None, true) => MimePart::new("text/plain", BodyPart::Text("".into())),
        })
    }

    /// textBody / htmlBody: at most one part, of the one type each allows.
    fn single(
        &mut self,
        v: Option<&Value>,
        p: &str,
        want: &str,
    ) -> Result<Option<MimePart<'static>>, SetError> {
        let parts = match v {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Array(parts)) => parts,
            Some(_) => return Err(bad(p)),
        };
        match parts.as_slice() {
            [] => Ok(None),
            [one] => {
                let t = one.get("type").and_then(Value::as_str).unwrap_or(want);
                if !t.eq_ignore_ascii_case(want) {
                    return Err(bad_at(p, format!("the part must be {want}")));
                }
                let mut one = one.clone();
                if let Value::Object(o) = &mut one {
                    o.insert("type".into(), Value::String(want.into()));
                }
                self.part(&one, p, 1).map(Some)
            }
            _ => Err(bad_at(p, "at most one part")),
        }
    }

    /// One EmailBodyPart (RFC 8621 4.1.4) as a MIME part.
    fn part(&mut self, v: &Value, p: &str, depth: usize) -> Result<MimePart<'static>, SetError> {
        self.count += 1;
        if self.count > MAX_PARTS || depth > MAX_DEPTH {
            return Err(bad_at(p, "too many or too deeply nested parts"));
        }
        let Value::Object(o) = v else {
            return Err(bad(p));
        };
        let str_of = |k: &str| -> Result<Option<String>, SetError> {
            match o.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if !s.chars().any(char::is_control) => Ok(Some(s.clone())),
                Some(_) => Err(bad_at(p, format!("{k}: a string"))),
            }
        };
        let part_id = str_of("partId")?;
        let blob_id = str_of("blobId")?;
        let mut ctype = match str_of("type")? {
            Some(t) => Some(media_type(&t).ok_or_else(|| bad_at(p, "type: type/subtype"))?),
            None => None,
        };
        let charset = str_of("charset")?;
        let name = str_of("name")?;
        let disposition = str_of("disposition")?;
        let cid = str_of("cid")?;
        let location = str_of("location")?;
        let language = match o.get("language") {
            None | Some(Value::Null) => None,
            Some(Value::Array(l)) if l.len() <= 100 => Some(
                l.iter()
                    .map(|x| {
                        x.as_str()
                            .filter(|s| {
                                !s.is_empty()
                                    && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                            })
                            .map(str::to_string)
                            .ok_or_else(|| bad_at(p, "language: language tags"))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Some(_) => return Err(bad_at(p, "language: an array")),
        };
        let mut extra: Vec<HeaderFields> = Vec::new();
        for (k, val) in o {
            match k.as_str() {
                "partId" | "blobId" | "type" | "charset" | "name" | "disposition" | "cid"
                | "location" | "language" | "subParts" => {}
                // Ignored when given with a blob (RFC 8621 4.6), not allowed with a partId.
                "size" if part_id.is_none() => {}
                "headers" => {
                    return Err(bad_at(p, "set header fields as header:{name} properties"));
                }
                _ if k.starts_with("header:") => {
                    let (h, values) = header_property(k, val)?;
                    let lower = h.to_ascii_lowercase();
                    if PART_FIELDS.contains(&lower.as_str()) {
                        return Err(bad_at(
                            p,
                            format!("{k}: given by the part's own properties"),
                        ));
                    }
                    if extra.iter().any(|(n, _)| n.eq_ignore_ascii_case(&h)) {
                        return Err(bad_at(p, format!("{k}: the header field is given twice")));
                    }
                    extra.push((h, values));
                }
                _ => return Err(bad_at(p, format!("{k}: not a property of a body part"))),
            }
        }

        let is_multipart = ctype
            .as_deref()
            .is_some_and(|t| t.starts_with("multipart/"));
        let mut part = if is_multipart {
            if part_id.is_some() || blob_id.is_some() || charset.is_some() {
                return Err(bad_at(p, "a multipart has subParts, not content"));
            }
            let subs = match o.get("subParts") {
                Some(Value::Array(l)) if !l.is_empty() => l,
                _ => return Err(bad_at(p, "a multipart needs subParts")),
            };
            let mut children = Vec::with_capacity(subs.len());
            for s in subs {
                children.push(self.part(s, p, depth + 1)?);
            }
            let t = ctype.take().unwrap_or_default();
            MimePart::new(ContentType::new(t), children)
        } else {
            if o.get("subParts").is_some_and(|s| !s.is_null()) {
                return Err(bad_at(p, "subParts only in a multipart"));
            }
            match (part_id, blob_id) {
                (Some(pid), None) => {
                    // RFC 8621 4.6: the client MUST omit charset with a partId (the server
                    // chooses). The charset this server chooses is UTF-8, so a client that
                    // says so anyway asks for nothing else and is let through, as Cyrus
                    // does; any other charset could not be honoured and is refused.
                    if charset
                        .as_deref()
                        .is_some_and(|c| !c.eq_ignore_ascii_case("utf-8"))
                    {
                        return Err(bad_at(p, "charset is chosen by the server for a partId"));
                    }
                    let t = ctype.take().unwrap_or_else(|| "text/plain".into());
                    if !t.starts_with("text/") {
                        return Err(bad_at(p, "a partId is text: give other content as a blob"));
                    }
                    let text = self
                        .values
                        .get(&pid)
                        .and_then(|b| b.get("value"))
                        .and_then(Value::as_str)
                        .ok_or_else(|| bad_at("bodyValues", format!("no value for {pid}")))?;
                    MimePart::new(ContentType::new(t), BodyPart::Text(text.to_string().into()))
                }
                (None, Some(bid)) => {
                    let blob = self
                        .blobs
                        .get(&bid)
                        .ok_or_else(|| SetError::new(SetErrorType::BlobNotFound))?;
                    let t = ctype
                        .take()
                        .or_else(|| blob.content_type.as_deref().and_then(media_type))
                        .unwrap_or_else(|| "application/octet-stream".into());
                    let mut ct = ContentType::new(t.clone());
                    if let Some(c) = charset {
                        if !c
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
                        {
                            return Err(bad_at(p, "charset: a charset name"));
                        }
                        ct = ct.attribute("charset", c);
                    }
                    if let Some(n) = &name {
                        ct = ct.attribute("name", n.clone());
                    }
                    if t == "message/rfc822" || t == "message/global" {
                        // RFC 2046 5.2.1: a message is never base64; sent as it is, with
                        // CRLF line ends.
                        let bytes = crlf(&blob.bytes);
                        let cte = if bytes.is_ascii() { "7bit" } else { "8bit" };
                        MimePart::new(ct, BodyPart::Binary(bytes.into())).transfer_encoding(cte)
                    } else {
                        MimePart::new(ct, BodyPart::Binary(blob.bytes.clone().into()))
                    }
                }
                (Some(_), Some(_)) => {
                    return Err(bad_at(p, "partId and blobId exclude each other"));
                }
                (None, None) => return Err(bad_at(p, "a part needs a partId or a blobId")),
            }
        };
        if disposition.is_some() || name.is_some() {
            let d = disposition
                .unwrap_or_else(|| "attachment".into())
                .to_ascii_lowercase();
            if !d.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') || d.is_empty() {
                return Err(bad_at(p, "disposition: a token"));
            }
            let mut ct = ContentType::new(d);
            if let Some(n) = name {
                ct = ct.attribute("filename", n);
            }
            part = part.header("Content-Disposition", ct);
        }
        if let Some(c) = cid {
            let c = c.trim_start_matches('<').trim_end_matches('>').to_string();
            if c.is_empty() || c.chars().any(|x| x.is_whitespace() || "<>".contains(x)) {
                return Err(bad_at(p, "cid: a Content-ID without spaces"));
            }
            part = part.cid(c);
        }
        if let Some(l) = language {
            part = part.language(l.join(", "));
        }
        if let Some(l) = location {
            if l.chars().any(char::is_whitespace) {
                return Err(bad_at(p, "location: a URI"));
            }
            part = part.location(l);
        }
        for (h, values) in extra {
            for v in values {
                part = part.header(h.clone(), v);
            }
        }
        Ok(part)
    }
}

/// Line ends made CRLF (a message attached as it is must be a valid RFC 5322 message).
fn crlf(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len() + b.len() / 50);
    let mut prev = 0u8;
    for &c in b {
        if c == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(c);
        prev = c;
    }
    out
}

fn random_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
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

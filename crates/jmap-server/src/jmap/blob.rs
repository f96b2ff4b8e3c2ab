//! Blob/upload, Blob/get and Blob/lookup (RFC 9404 4).
//!
//! Blobs are the ones downloads serve (`crate::bodies`): an Email's message (`b<sha256>`,
//! or `bm<id>` before its body is stored, fetched on the priority lane then), a part of
//! one (`b<sha256>-<part>`), or an upload. Blob/upload stores what it builds exactly as
//! an HTTP upload does (`Store::put_upload`: owned by the account, content addressed,
//! forgotten after `UPLOAD_TTL` unless an Email refers to it). Blob/get reserves the
//! server's large-message budget (`large.rs`) for a large blob before reading it, so
//! large answers take turns however many clients ask.

use super::{Ctx, ids};
use base64::Engine as _;
use jmap_proto::{Id, MethodError, MethodErrorType, SetError, SetErrorType};
use mail_types::AccountId;
use serde_json::{Map, Value, json};
use sha1::Digest as _;
use std::collections::{BTreeMap, HashMap};

/// RFC 9404 3.1 `maxSizeBlobSet`: the largest blob Blob/upload builds, the same as the
/// default HTTP upload limit (`maxSizeUpload`).
pub(crate) const MAX_SIZE_BLOB_SET: u64 = 50_000_000;
/// RFC 9404 3.1 `maxDataSources`: at least 64.
pub(crate) const MAX_DATA_SOURCES: usize = 64;
/// RFC 9404 3.1: the types Blob/lookup answers for.
const TYPE_NAMES: [&str; 3] = ["Mailbox", "Thread", "Email"];
/// RFC 9404 3.1, names from the HTTP Digest Algorithm registry (RFC 3230).
const DIGESTS: [&str; 2] = ["sha", "sha-256"];

/// The value of `urn:ietf:params:jmap:blob` in `accountCapabilities` (RFC 9404 3.1).
pub(crate) fn account_capability(_core: &jmap_proto::capability::CoreCapability) -> Value {
    json!({
        "maxSizeBlobSet": MAX_SIZE_BLOB_SET,
        "maxDataSources": MAX_DATA_SOURCES,
        "supportedTypeNames": TYPE_NAMES,
        "supportedDigestAlgorithms": DIGESTS,
    })
}

/// The methods of this module, for `jmap::dispatch`; `using` is the request's.
pub(crate) async fn call(
    ctx: &Ctx<'_>,
    using: &[String],
    name: &str,
    args: Map<String, Value>,
    created_ids: &mut HashMap<String, Id>,
) -> Result<Map<String, Value>, MethodError> {
    if !using.iter().any(|u| u == jmap_proto::capability::BLOB) {
        return Err(MethodError::with_description(
            MethodErrorType::UnknownMethod,
            "this method needs urn:ietf:params:jmap:blob in using",
        ));
    }
    match name {
        "Blob/upload" => upload(ctx, args, created_ids).await,
        "Blob/get" => get(ctx, args, created_ids).await,
        "Blob/lookup" => lookup(ctx, args, created_ids).await,
        _ => Err(MethodError::with_description(
            MethodErrorType::UnknownMethod,
            format!("{name} is not supported"),
        )),
    }
}

fn check_known(args: &Map<String, Value>, known: &[&str]) -> Result<(), MethodError> {
    match args.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(MethodError::invalid_arguments(format!(
            "unknown argument {:?}",
            k.chars().take(64).collect::<String>()
        ))),
        None => Ok(()),
    }
}

/// A blob id as given, with `#creationId` (RFC 9404 4.1: blobs created earlier in the
/// request) resolved.
fn resolve_id<'a>(id: &'a str, created_ids: &'a HashMap<String, Id>) -> Option<&'a str> {
    match id.strip_prefix('#') {
        Some(cid) => created_ids.get(cid).map(Id::as_str),
        None => Some(id),
    }
}

/// The size of a blob of the account without reading it, when known, for the budget.
async fn size_hint(ctx: &Ctx<'_>, account: AccountId, blob_id: &str) -> Option<u64> {
    let sha = match blob_id.strip_prefix("bm") {
        Some(n) => {
            let id = n.parse().ok().map(mail_types::EmailId)?;
            let view = ctx
                .store
                .emails(account, &[id])
                .await
                .ok()?
                .into_iter()
                .next()?;
            return Some(u64::from(view.size));
        }
        None => super::body::parse_blob_id(blob_id)?.0,
    };
    ctx.store.blob_size(sha).await.ok().flatten()
}

/// The bytes of a blob of the account (a part decoded, as a download serves it); `None`
/// when the account has no such blob. A large blob waits for the large-message budget.
async fn bytes(
    ctx: &Ctx<'_>,
    account: AccountId,
    blob_id: &str,
) -> Result<Option<Vec<u8>>, MethodError> {
    if let Some(size) = size_hint(ctx, account, blob_id).await {
        ctx.large.reserve(ctx.held, size).await?;
    }
    let crate::bodies::Resolved { message, part, .. } =
        match ctx.messages().resolve(account, blob_id).await {
            Ok(r) => r,
            Err(crate::bodies::BlobError::NotFound) => return Ok(None),
            Err(e) => return Err(e.method_error()),
        };
    match part {
        None => Ok(Some(message)),
        Some(part) => {
            let decoded = tokio::task::spawn_blocking(move || {
                super::body::nested_part(&message, &part).map(|p| p.bytes)
            })
            .await
            .map_err(|_| MethodError::server_fail("decoding a part failed"))?;
            Ok(decoded)
        }
    }
}

/// `offset` / `length` of a data source or of Blob/get: UnsignedInt or absent/null.
fn unsigned(v: Option<&Value>) -> Result<Option<u64>, ()> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or(()),
    }
}

/// Why one creation of Blob/upload failed.
fn set_error(kind: SetErrorType, why: impl Into<String>) -> SetError {
    SetError::new(kind).with_description(why)
}

/// RFC 9404 4.1: builds one blob from its data sources, in order.
async fn build(
    ctx: &Ctx<'_>,
    account: AccountId,
    obj: &Value,
    created_ids: &HashMap<String, Id>,
) -> Result<Result<(Vec<u8>, String), SetError>, MethodError> {
    let Some(obj) = obj.as_object() else {
        return Ok(Err(SetError::invalid_properties(["data"])));
    };
    if let Some(k) = obj.keys().find(|k| !["data", "type"].contains(&k.as_str())) {
        return Ok(Err(SetError::invalid_properties([k.clone()])));
    }
    let content_type = match obj.get("type") {
        None | Some(Value::Null) => "application/octet-stream".to_string(),
        Some(Value::String(t))
            if !t.is_empty()
                && t.len() <= 255
                && t.contains('/')
                && t.bytes().all(|b| (0x20..0x7f).contains(&b)) =>
        {
            t.clone()
        }
        Some(_) => return Ok(Err(SetError::invalid_properties(["type"]))),
    };
    let Some(sources) = obj.get("data").and_then(Value::as_array) else {
        return Ok(Err(SetError::invalid_properties(["data"])));
    };
    if sources.len() > MAX_DATA_SOURCES {
        return Ok(Err(set_error(
            SetErrorType::TooLarge,
            format!("at most {MAX_DATA_SOURCES} data sources (maxDataSources)"),
        )));
    }
    let too_large = || {
        set_error(
            SetErrorType::TooLarge,
            format!("a blob is at most {MAX_SIZE_BLOB_SET} octets (maxSizeBlobSet)"),
        )
    };
    let mut out: Vec<u8> = Vec::new();
    for (i, source) in sources.iter().enumerate() {
        let bad = || SetError::invalid_properties([format!("data/{i}")]);
        let Some(source) = source.as_object() else {
            return Ok(Err(bad()));
        };
        let piece: Vec<u8> = if let Some(text) = source.get("data:asText") {
            match (text.as_str(), source.len()) {
                (Some(t), 1) => t.as_bytes().to_vec(),
                _ => return Ok(Err(bad())),
            }
        } else if let Some(b64) = source.get("data:asBase64") {
            let decoded = b64
                .as_str()
                .filter(|_| source.len() == 1)
                .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok());
            match decoded {
                Some(d) => d,
                None => return Ok(Err(bad())),
            }
        } else if let Some(id) = source.get("blobId") {
            if source
                .keys()
                .any(|k| !["blobId", "offset", "length"].contains(&k.as_str()))
            {
                return Ok(Err(bad()));
            }
            let (Ok(offset), Ok(length)) = (
                unsigned(source.get("offset")),
                unsigned(source.get("length")),
            ) else {
                return Ok(Err(bad()));
            };
            let Some(given) = id.as_str() else {
                return Ok(Err(bad()));
            };
            let found = match resolve_id(given, created_ids) {
                Some(id) => bytes(ctx, account, id).await?,
                None => None,
            };
            let Some(data) = found else {
                let mut e = set_error(SetErrorType::BlobNotFound, "no such blob");
                e.not_found = Id::new(given).ok().map(|id| vec![id]);
                return Ok(Err(e));
            };
            // RFC 9404 4.1: a range that is not wholly inside the blob is refused.
            let start = usize::try_from(offset.unwrap_or(0)).unwrap_or(usize::MAX);
            let end = match length {
                Some(l) => start.saturating_add(usize::try_from(l).unwrap_or(usize::MAX)),
                None => data.len(),
            };
            if start > data.len() || end > data.len() {
                return Ok(Err(SetError::invalid_properties([format!("data/{i}")])
                    .with_description("the range is not inside the blob")));
            }
            data[start..end].to_vec()
        } else {
            return Ok(Err(bad()));
        };
        if (out.len() as u64).saturating_add(piece.len() as u64) > MAX_SIZE_BLOB_SET {
            return Ok(Err(too_large()));
        }
        out.extend_from_slice(&piece);
    }
    Ok(Ok((out, content_type)))
}

async fn upload(
    ctx: &Ctx<'_>,
    args: Map<String, Value>,
    created_ids: &mut HashMap<String, Id>,
) -> Result<Map<String, Value>, MethodError> {
    check_known(&args, &["accountId", "create"])?;
    let (account_id, account) = ctx.account_arg(&args)?;
    let create = match args.get("create") {
        Some(Value::Object(m)) => m.clone(),
        None | Some(Value::Null) => Map::new(),
        Some(_) => return Err(MethodError::invalid_arguments("create must be an object")),
    };
    if create.len() > ctx.max_objects_in_set {
        return Err(MethodError::new(MethodErrorType::RequestTooLarge));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    if let Err(e) = ctx.store.expire_uploads(now - crate::UPLOAD_TTL).await {
        tracing::warn!(account = %account, error = %e, "expiring old uploads");
    }
    let mut created = BTreeMap::new();
    let mut not_created = BTreeMap::new();
    for (cid, obj) in &create {
        let (data, content_type) = match build(ctx, account, obj, created_ids).await? {
            Ok(b) => b,
            Err(e) => {
                not_created.insert(cid.clone(), e);
                continue;
            }
        };
        let record = ctx
            .store
            .put_upload(account, &content_type, data)
            .await
            .map_err(|e| MethodError::server_fail(e.to_string()))?;
        let blob_id = format!("b{}", record.blob_id);
        if let Ok(id) = Id::new(blob_id.clone()) {
            created_ids.insert(cid.clone(), id);
        }
        created.insert(
            cid.clone(),
            json!({"id": blob_id, "type": record.content_type, "size": record.size}),
        );
    }
    let mut out = Map::new();
    out.insert("accountId".into(), json!(account_id));
    out.insert(
        "created".into(),
        if created.is_empty() {
            Value::Null
        } else {
            json!(created)
        },
    );
    out.insert(
        "notCreated".into(),
        if not_created.is_empty() {
            Value::Null
        } else {
            json!(not_created)
        },
    );
    Ok(out)
}

const GET_PROPERTIES: &[&str] = &["data:asText", "data:asBase64", "data", "size"];

fn digest(algorithm: &str, data: &[u8]) -> Option<String> {
    let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
    match algorithm {
        "sha" => Some(b64(&sha1::Sha1::digest(data))),
        "sha-256" => Some(b64(&sha2::Sha256::digest(data))),
        _ => None,
    }
}

async fn get(
    ctx: &Ctx<'_>,
    args: Map<String, Value>,
    created_ids: &HashMap<String, Id>,
) -> Result<Map<String, Value>, MethodError> {
    check_known(
        &args,
        &["accountId", "ids", "properties", "offset", "length"],
    )?;
    let (account_id, account) = ctx.account_arg(&args)?;
    // There is no listing every blob: `ids` is required.
    let Some(Value::Array(wanted)) = args.get("ids") else {
        return Err(MethodError::invalid_arguments(
            "ids must be a list of blob ids",
        ));
    };
    if wanted.len() > ctx.max_objects_in_get {
        return Err(MethodError::new(MethodErrorType::RequestTooLarge));
    }
    // RFC 9404 4.2: the default properties are `data` and `size`.
    let properties: Vec<String> = match args.get("properties") {
        None | Some(Value::Null) => vec!["data".into(), "size".into()],
        Some(Value::Array(p)) => {
            let mut out = Vec::new();
            for v in p {
                let Some(s) = v.as_str() else {
                    return Err(MethodError::invalid_arguments("properties must be strings"));
                };
                let known = GET_PROPERTIES.contains(&s)
                    || s.strip_prefix("digest:")
                        .is_some_and(|a| DIGESTS.contains(&a));
                if !known {
                    return Err(MethodError::invalid_arguments(format!(
                        "unknown property {:?}",
                        s.chars().take(64).collect::<String>()
                    )));
                }
                out.push(s.to_string());
            }
            out
        }
        Some(_) => return Err(MethodError::invalid_arguments("properties must be a list")),
    };
    let (Ok(offset), Ok(length)) = (unsigned(args.get("offset")), unsigned(args.get("length")))
    else {
        return Err(MethodError::invalid_arguments(
            "offset and length are UnsignedInt",
        ));
    };
    let mut list = Vec::new();
    let mut not_found = Vec::new();
    for given in wanted {
        let Some(given) = given.as_str() else {
            return Err(MethodError::invalid_arguments("ids must be strings"));
        };
        let found = match resolve_id(given, created_ids) {
            Some(id) => bytes(ctx, account, id).await?.map(|b| (id.to_string(), b)),
            None => None,
        };
        let Some((id, data)) = found else {
            not_found.push(json!(given));
            continue;
        };
        list.push(describe(&id, &data, &properties, offset, length));
    }
    let mut out = Map::new();
    out.insert("accountId".into(), json!(account_id));
    out.insert("list".into(), Value::Array(list));
    out.insert("notFound".into(), Value::Array(not_found));
    Ok(out)
}

/// One Blob/get result (RFC 9404 4.2): the range of `data` asked for, as the properties
/// say; `isTruncated` when the range reaches past the end, `isEncodingProblem` when text
/// was asked for and the octets are not UTF-8.
fn describe(
    id: &str,
    data: &[u8],
    properties: &[String],
    offset: Option<u64>,
    length: Option<u64>,
) -> Value {
    let start = usize::try_from(offset.unwrap_or(0))
        .unwrap_or(usize::MAX)
        .min(data.len());
    let wanted_end = match length {
        Some(l) => usize::try_from(l)
            .unwrap_or(usize::MAX)
            .saturating_add(start),
        None => data.len(),
    };
    let truncated = offset.is_some_and(|o| o > data.len() as u64) || wanted_end > data.len();
    let range = &data[start..wanted_end.min(data.len())];
    let mut m = Map::new();
    m.insert("id".into(), json!(id));
    let text = std::str::from_utf8(range).ok();
    let b64 = || base64::engine::general_purpose::STANDARD.encode(range);
    let mut encoding_problem = false;
    for p in properties {
        match p.as_str() {
            "data:asText" => {
                encoding_problem |= text.is_none();
                m.insert(p.clone(), text.map_or(Value::Null, |t| json!(t)));
            }
            "data:asBase64" => {
                m.insert(p.clone(), json!(b64()));
            }
            // RFC 9404 4.2: `data` is asText when the octets are UTF-8, else asBase64
            // (and then an encoding problem).
            "data" => match text {
                Some(t) => {
                    m.insert("data:asText".into(), json!(t));
                }
                None => {
                    encoding_problem = true;
                    m.insert("data:asBase64".into(), json!(b64()));
                }
            },
            "size" => {
                m.insert(p.clone(), json!(data.len()));
            }
            other => {
                if let Some(d) = other.strip_prefix("digest:").and_then(|a| digest(a, range)) {
                    m.insert(p.clone(), json!(d));
                }
            }
        }
    }
    if encoding_problem {
        m.insert("isEncodingProblem".into(), json!(true));
    }
    if truncated {
        m.insert("isTruncated".into(), json!(true));
    }
    Value::Object(m)
}

/// The Emails of the account that a blob id belongs to: the Email whose message it is,
/// or whose part it is; `None` when the account has no such blob at all (an upload no
/// Email refers to has an empty list).
async fn referring_emails(
    ctx: &Ctx<'_>,
    account: AccountId,
    blob_id: &str,
) -> Result<Option<Vec<store::EmailView>>, MethodError> {
    let fail = |e: store::Error| MethodError::server_fail(e.to_string());
    if let Some(n) = blob_id.strip_prefix("bm") {
        let Some(id) = n.parse().ok().map(mail_types::EmailId) else {
            return Ok(None);
        };
        let views = ctx.store.emails(account, &[id]).await.map_err(fail)?;
        let hit: Vec<_> = views
            .into_iter()
            .filter(|v| v.jmap_blob_id() == blob_id)
            .collect();
        return Ok((!hit.is_empty()).then_some(hit));
    }
    let Some((sha, part)) = super::body::parse_blob_id(blob_id) else {
        return Ok(None);
    };
    if !ctx
        .store
        .blob_in_account(account, sha)
        .await
        .map_err(fail)?
    {
        return Ok(None);
    }
    // A part id names a blob only when the message has that part.
    if part.is_some() && bytes(ctx, account, blob_id).await?.is_none() {
        return Ok(None);
    }
    let ids = ctx
        .store
        .emails_with_blob(account, sha)
        .await
        .map_err(fail)?;
    let views = ctx.store.emails(account, &ids).await.map_err(fail)?;
    Ok(Some(views))
}

/// RFC 9404 4.3: which Mailboxes, Threads and Emails refer to each blob.
async fn lookup(
    ctx: &Ctx<'_>,
    args: Map<String, Value>,
    created_ids: &HashMap<String, Id>,
) -> Result<Map<String, Value>, MethodError> {
    check_known(&args, &["accountId", "typeNames", "ids"])?;
    let (account_id, account) = ctx.account_arg(&args)?;
    let Some(Value::Array(type_names)) = args.get("typeNames") else {
        return Err(MethodError::invalid_arguments("typeNames must be a list"));
    };
    let mut types = Vec::new();
    for t in type_names {
        match t.as_str() {
            Some(t) if TYPE_NAMES.contains(&t) => types.push(t),
            _ => {
                return Err(MethodError::with_description(
                    MethodErrorType::UnknownDataType,
                    "Blob/lookup knows Mailbox, Thread and Email",
                ));
            }
        }
    }
    let Some(Value::Array(wanted)) = args.get("ids") else {
        return Err(MethodError::invalid_arguments(
            "ids must be a list of blob ids",
        ));
    };
    if wanted.len() > ctx.max_objects_in_get {
        return Err(MethodError::new(MethodErrorType::RequestTooLarge));
    }
    let mut list = Vec::new();
    let mut not_found = Vec::new();
    for given in wanted {
        let Some(given) = given.as_str() else {
            return Err(MethodError::invalid_arguments("ids must be strings"));
        };
        let emails = match resolve_id(given, created_ids) {
            Some(id) => referring_emails(ctx, account, id).await?,
            None => None,
        };
        let Some(emails) = emails else {
            not_found.push(json!(given));
            continue;
        };
        let mut matched = Map::new();
        for t in &types {
            let mut objects: Vec<String> = match *t {
                "Email" => emails
                    .iter()
                    .filter_map(|e| ids::id('e', e.id.0))
                    .map(Id::into_string)
                    .collect(),
                "Thread" => emails
                    .iter()
                    .filter_map(|e| ids::id('t', e.thread.0))
                    .map(Id::into_string)
                    .collect(),
                _ => emails
                    .iter()
                    .flat_map(|e| e.mailboxes.iter())
                    .filter_map(|m| ids::id('m', m.0))
                    .map(Id::into_string)
                    .collect(),
            };
            objects.sort();
            objects.dedup();
            matched.insert((*t).to_string(), json!(objects));
        }
        list.push(json!({"id": given, "matchedIds": matched}));
    }
    let mut out = Map::new();
    out.insert("accountId".into(), json!(account_id));
    out.insert("list".into(), Value::Array(list));
    out.insert("notFound".into(), Value::Array(not_found));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_digests_and_encodings() {
        let data = b"hello world";
        let all = ["data", "size", "digest:sha-256", "digest:sha"].map(String::from);
        let v = describe("b1", data, &all, Some(6), Some(5));
        assert_eq!(v["data:asText"], "world");
        assert_eq!(v["size"], 11);
        assert_eq!(
            v["digest:sha-256"],
            base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(b"world"))
        );
        assert!(v.get("isTruncated").is_none());
        // Past the end: what there is, and said so.
        let v = describe("b1", data, &all, Some(6), Some(50));
        assert_eq!(
            (v["data:asText"].as_str(), v["isTruncated"].as_bool()),
            (Some("world"), Some(true))
        );
        let v = describe("b1", data, &all, Some(500), None);
        assert_eq!(
            (v["data:asText"].as_str(), v["isTruncated"].as_bool()),
            (Some(""), Some(true))
        );
        // Not UTF-8: base64 for `data`, null for asText, an encoding problem either way.
        let bin = [0xff, 0xfe, b'a'];
        let v = describe("b2", &bin, &["data".to_string()], None, None);
        assert_eq!(v["data:asBase64"], "//5h");
        assert_eq!(v["isEncodingProblem"], true);
        let v = describe("b2", &bin, &["data:asText".to_string()], None, None);
        assert!(v["data:asText"].is_null());
        assert_eq!(v["isEncodingProblem"], true);
    }
}

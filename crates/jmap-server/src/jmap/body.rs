//! The body properties of Email/get (RFC 8621 4.1.4, 4.2): bodyStructure, textBody,
//! htmlBody, attachments, bodyValues, computed from the stored message on demand.
//!
//! Part blobs are named `b<sha256>-<partId with '.' as '-'>`: the message's own blob id
//! plus the part, so the download endpoint can find, check and decode them.

use jmap_proto::MethodError;
use jmap_proto::mail::EmailGetArgs;
use jmap_proto::mail::properties::body_properties_or_default;
use mime::BodyPart;
use serde_json::{Map, Value, json};

/// The Email properties computed from the stored message rather than kept in the store.
pub(crate) const BODY_EMAIL_PROPERTIES: &[&str] = &[
    "bodyStructure",
    "textBody",
    "htmlBody",
    "attachments",
    "bodyValues",
];

/// The blob id of a part of the message whose blob id is `message_blob` (hex sha256).
pub fn part_blob_id(message_blob: &str, part_id: &str) -> String {
    format!("b{message_blob}-{}", part_id.replace('.', "-"))
}

/// Splits a download blob id into the message blob and, for a part, its part id.
pub fn parse_blob_id(id: &str) -> Option<(&str, Option<String>)> {
    let rest = id.strip_prefix('b')?;
    let (sha, part) = match rest.split_once('-') {
        Some((s, p)) => (s, Some(p)),
        None => (rest, None),
    };
    if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let part = match part {
        Some(p)
            if !p.is_empty()
                && p.len() <= 200
                && p.split('-').all(|n| n.parse::<u32>().is_ok()) =>
        {
            Some(p.replace('-', "."))
        }
        Some(_) => return None,
        None => None,
    };
    Some((sha, part))
}

/// Most levels of attached messages followed for one part id.
const MAX_NESTED: usize = 16;

/// The content of part `part_id` of a message, following attached messages: `2.1` is
/// part `1` of the message attached as part `2` when the message's own structure has no
/// `2.1` (IMAP section numbering, RFC 3501 6.4.5). What downloads and Email/parse read.
pub fn nested_part(raw: &[u8], part_id: &str) -> Option<mime::PartContent> {
    let mut raw = std::borrow::Cow::Borrowed(raw);
    let mut rest: Vec<&str> = part_id.split('.').collect();
    for _ in 0..MAX_NESTED {
        if let Some(p) = mime::part_content(&raw, &rest.join(".")) {
            return Some(p);
        }
        // The longest prefix that is an attached message; continue inside it.
        let mut inner = None;
        for i in (1..rest.len()).rev() {
            if let Some(p) = mime::part_content(&raw, &rest[..i].join("."))
                && is_message(&p.content_type)
            {
                inner = Some((p.bytes, i));
                break;
            }
        }
        let (bytes, i) = inner?;
        raw = std::borrow::Cow::Owned(bytes);
        rest = rest.split_off(i);
    }
    None
}

/// A media type whose content is a whole message (RFC 2046 5.2.1, RFC 6532 3.7).
pub(crate) fn is_message(content_type: &str) -> bool {
    content_type == "message/rfc822" || content_type == "message/global"
}

/// One EmailBodyPart with the asked `props`. `subParts` follows one rule everywhere
/// (bodyStructure, textBody, htmlBody, attachments): asked for, it is on every part, null
/// on a leaf (RFC 8621 4.1.4: only a multipart/* has children; RFC 8620 5.1: a property
/// asked for is returned); not asked for, it is absent, except on the multipart parts of
/// bodyStructure (`tree`), whose tree is nothing without it.
fn part_json(p: &BodyPart, blob: &str, props: &[String], tree: bool, depth: usize) -> Value {
    let mut o = Map::new();
    let sub_parts = |p: &BodyPart| match &p.sub_parts {
        Some(subs) if depth < mime::MAX_BODY_DEPTH as usize => Value::Array(
            subs.iter()
                .map(|s| part_json(s, blob, props, tree, depth + 1))
                .collect(),
        ),
        Some(_) => Value::Array(Vec::new()),
        None => Value::Null,
    };
    if tree && p.sub_parts.is_some() && !props.iter().any(|p| p == "subParts") {
        o.insert("subParts".into(), sub_parts(p));
    }
    for prop in props {
        let v = match prop.as_str() {
            "partId" => json!(p.part_id),
            "blobId" => json!(p.part_id.as_deref().map(|id| part_blob_id(blob, id))),
            "size" => json!(p.size),
            "headers" => Value::Array(
                p.headers
                    .iter()
                    .map(|(n, v)| json!({"name": n, "value": v}))
                    .collect(),
            ),
            "name" => json!(p.name),
            "type" => json!(p.content_type),
            "charset" => json!(p.charset),
            "disposition" => json!(p.disposition),
            "cid" => json!(p.cid),
            "language" => json!(p.language),
            "location" => json!(p.location),
            "subParts" => sub_parts(p),
            other => match jmap_proto::mail::header::parse_header_property(other) {
                Some(hp) => {
                    let fields: Vec<(&str, &[u8])> = p
                        .headers
                        .iter()
                        .map(|(n, v)| (n.as_str(), v.as_bytes()))
                        .collect();
                    super::headers::property(&fields, &hp)
                }
                None => continue,
            },
        };
        o.insert(prop.clone(), v);
    }
    Value::Object(o)
}

fn find<'a>(p: &'a BodyPart, id: &str) -> Option<&'a BodyPart> {
    let mut stack = vec![p];
    while let Some(p) = stack.pop() {
        if p.part_id.as_deref() == Some(id) {
            return Some(p);
        }
        if let Some(s) = &p.sub_parts {
            stack.extend(s.iter());
        }
    }
    None
}

/// What Email/get asked for the body.
pub(crate) struct BodyRequest {
    pub props: Vec<String>,
    pub body_properties: Vec<String>,
    pub fetch_text: bool,
    pub fetch_html: bool,
    pub fetch_all: bool,
    pub max_bytes: usize,
}

impl BodyRequest {
    /// What Email/get (or Email/parse, RFC 8621 4.9) asks of the body: the body
    /// properties among `props`, and the body arguments of RFC 8621 4.2, checked.
    pub(crate) fn new(props: &[String], args: &EmailGetArgs) -> Result<Self, MethodError> {
        Ok(Self {
            props: props
                .iter()
                .filter(|p| BODY_EMAIL_PROPERTIES.contains(&p.as_str()))
                .cloned()
                .collect(),
            body_properties: body_properties_or_default(args.body_properties.as_deref())?,
            fetch_text: args.fetch_text_body_values,
            fetch_html: args.fetch_html_body_values,
            fetch_all: args.fetch_all_body_values,
            max_bytes: usize::try_from(args.max_body_value_bytes).unwrap_or(usize::MAX),
        })
    }
}

/// The body properties of one message. CPU work: call it off the async executor.
/// With `raw` owned (`Cow::Owned`), its buffer becomes the largest plain body value
/// instead of being copied (see `mime::body_values_owned`).
pub(crate) fn body_properties(
    raw: std::borrow::Cow<'_, [u8]>,
    blob: &str,
    req: &BodyRequest,
) -> Map<String, Value> {
    let root = mime::body_structure(&raw);
    let lists = mime::body_lists(&root);
    let mut out = Map::new();
    let list = |ids: &[String]| -> Value {
        Value::Array(
            ids.iter()
                .filter_map(|id| find(&root, id))
                .map(|p| part_json(p, blob, &req.body_properties, false, 0))
                .collect(),
        )
    };
    let mut values_wanted: Option<Vec<String>> = None;
    for p in &req.props {
        match p.as_str() {
            "bodyStructure" => {
                out.insert(
                    p.clone(),
                    part_json(&root, blob, &req.body_properties, true, 0),
                );
            }
            "textBody" => {
                out.insert(p.clone(), list(&lists.text_body));
            }
            "htmlBody" => {
                out.insert(p.clone(), list(&lists.html_body));
            }
            "attachments" => {
                out.insert(p.clone(), list(&lists.attachments));
            }
            "bodyValues" => {
                let mut wanted: Vec<&String> = Vec::new();
                if req.fetch_all {
                    let mut stack = vec![&root];
                    while let Some(p) = stack.pop() {
                        if let Some(s) = &p.sub_parts {
                            stack.extend(s.iter());
                        } else if let Some(id) = &p.part_id
                            && p.content_type.starts_with("text/")
                        {
                            wanted.push(id);
                        }
                    }
                } else {
                    if req.fetch_text {
                        wanted.extend(lists.text_body.iter());
                    }
                    if req.fetch_html {
                        wanted.extend(lists.html_body.iter());
                    }
                }
                // Decoded last, once the message is needed for nothing else.
                values_wanted = Some(wanted.into_iter().cloned().collect::<Vec<String>>());
            }
            _ => {}
        }
    }
    if let Some(wanted) = values_wanted {
        // One parse for all of them; each value is moved into the answer, not copied.
        let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
        let found = match raw {
            std::borrow::Cow::Owned(raw) => mime::body_values_owned(raw, &wanted, req.max_bytes),
            std::borrow::Cow::Borrowed(raw) => mime::body_values(raw, &wanted, req.max_bytes),
        };
        let mut values = Map::new();
        for (id, v) in found {
            let mut o = Map::new();
            o.insert("value".into(), Value::String(v.value));
            o.insert("isEncodingProblem".into(), json!(v.is_encoding_problem));
            o.insert("isTruncated".into(), json!(v.is_truncated));
            values.insert(id, Value::Object(o));
        }
        out.insert("bodyValues".into(), Value::Object(values));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_blob_ids_round_trip() {
        let sha = "a".repeat(64);
        let id = part_blob_id(&sha, "1.2");
        assert_eq!(
            parse_blob_id(&id),
            Some((sha.as_str(), Some("1.2".to_string())))
        );
        assert_eq!(
            parse_blob_id(&format!("b{sha}")),
            Some((sha.as_str(), None))
        );
        assert_eq!(parse_blob_id("bxyz"), None);
        assert_eq!(parse_blob_id(&format!("b{sha}-1-x")), None);
        assert!(jmap_proto::Id::new(id).is_ok(), "a valid JMAP id");
    }
}

//! The JMAP body structure of a message (RFC 8621 §4.1.4): the
//! EmailBodyPart tree, the `textBody` / `htmlBody` / `attachments` lists
//! derived from it, and the content of single parts (blob download,
//! `bodyValues`, RFC 8621 §4.2).
//!
//! Input goes through the same repairs and panic fence as [`crate::parse`]
//! ([`extract::run_guarded`]) and parts are numbered by the same
//! [`extract::Tree`], so a `partId` here names the same part as
//! [`crate::Attachment::part_id`]. If mail-parser panics or finds no
//! header, the whole input (after the header block, if one can be found)
//! is presented as a single `text/plain` part "1".

use std::borrow::Cow;

use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::parsers::MessageStream;
use mail_parser::{Encoding, HeaderName, HeaderValue, MessageParser, MessagePart, PartType};
use serde::{Deserialize, Serialize};

use crate::extract::{
    self, MAX_PART_DEPTH, MAX_TOKEN_BYTES, Tree, content_type, drop_flat, last, mime_type,
    part_cid, part_disposition, part_name,
};
use crate::text::{clean_field, utf8_or_cp1252};

/// Most parts (multipart containers included) in a [`BodyPart`] tree; the
/// parts after the limit, in document order, are left out.
pub const MAX_BODY_PARTS: usize = 10_000;

/// Most header fields reported per part in [`BodyPart::headers`].
pub const MAX_PART_HEADERS: usize = 200;

/// Deepest nesting of [`BodyPart`]s: a multipart this deep is reported as a
/// leaf (the same bound under which [`crate::ParsedMessage::attachments`]
/// are reported).
pub const MAX_BODY_DEPTH: u32 = MAX_PART_DEPTH;

/// Most Content-Language tags kept per part.
const MAX_LANGUAGES: usize = 32;
/// Longest Content-Location kept, in bytes.
const MAX_LOCATION_BYTES: usize = 2048;

/// One node of the JMAP EmailBodyPart tree (RFC 8621 §4.1.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BodyPart {
    /// JMAP partId (IMAP section numbering, as [`crate::Attachment::part_id`]);
    /// `None` for multipart containers.
    pub part_id: Option<String>,
    /// Octets after transfer decoding (what a blob download returns; no
    /// charset conversion); 0 for multipart containers.
    pub size: u64,
    /// Header fields in order: the name as written and the raw value (RFC
    /// 8621 §4.1.2 Raw form: after the colon, folding kept, final line
    /// break removed). At most [`MAX_PART_HEADERS`].
    pub headers: Vec<(String, String)>,
    /// File name (Content-Disposition `filename`, else Content-Type `name`),
    /// RFC 2231 / RFC 2047 decoded.
    pub name: Option<String>,
    /// Lowercased `type/subtype`; `text/plain` by default (RFC 2045 §5.2),
    /// `message/rfc822` inside multipart/digest (RFC 2046 §5.1.5). A part
    /// declared multipart whose structure could not be used (no boundary,
    /// boundary never found, or nested too deep) is a leaf typed
    /// `application/octet-stream`.
    pub content_type: String,
    /// For `text/*` parts the charset parameter as written, `us-ascii` when
    /// absent; `None` otherwise.
    pub charset: Option<String>,
    /// Lowercased Content-Disposition type (RFC 2183).
    pub disposition: Option<String>,
    /// Content-ID without angle brackets (RFC 2392).
    pub cid: Option<String>,
    /// Content-Language tags (RFC 3282), as written.
    pub language: Option<Vec<String>>,
    /// Content-Location (RFC 2557).
    pub location: Option<String>,
    /// Children of a multipart container; `None` for leaves, including
    /// `message/rfc822` parts (their content is the attached message).
    pub sub_parts: Option<Vec<BodyPart>>,
}

/// The partIds JMAP lists in `textBody`, `htmlBody` and `attachments`
/// (RFC 8621 §4.1.4).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BodyLists {
    /// Parts to render, in order, when showing the message as plain text.
    pub text_body: Vec<String>,
    /// Parts to render, in order, when showing the message as HTML.
    pub html_body: Vec<String>,
    /// Parts that are not part of the body.
    pub attachments: Vec<String>,
}

/// The content of one leaf part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartContent {
    /// Content after transfer decoding (base64 / quoted-printable undone),
    /// in its own charset. For `message/rfc822` the attached message.
    pub bytes: Vec<u8>,
    /// As [`BodyPart::content_type`].
    pub content_type: String,
    /// As [`BodyPart::name`].
    pub name: Option<String>,
    /// As [`BodyPart::charset`].
    pub charset: Option<String>,
}

/// A text part decoded to UTF-8 (JMAP EmailBodyValue, RFC 8621 §4.1.4).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BodyValue {
    /// The text, at most `max_bytes` bytes when a limit was given.
    pub value: String,
    /// The transfer encoding or the charset could not be decoded cleanly
    /// (unknown charset, bytes invalid in it); `value` is a best effort.
    pub is_encoding_problem: bool,
    /// `value` was cut to the byte limit.
    pub is_truncated: bool,
}

/// The JMAP `bodyStructure` of a raw message. Never panics.
pub fn body_structure(raw: &[u8]) -> BodyPart {
    analyse(
        raw,
        |parts, tree, data| {
            let nodes = walk(parts, tree);
            to_body_part(&nodes, 0, parts, data)
        },
        |body| fallback_part(body.len()),
    )
}

/// RFC 8621 §4.1.4 `textBody`, `htmlBody` and `attachments` for a tree
/// returned by [`body_structure`].
pub fn body_lists(root: &BodyPart) -> BodyLists {
    let mut lists = BodyLists::default();
    let BodyLists {
        text_body,
        html_body,
        attachments,
    } = &mut lists;
    parse_structure(
        std::slice::from_ref(root),
        "mixed",
        false,
        Some(html_body),
        Some(text_body),
        attachments,
        0,
    );
    lists
}

/// The decoded content of the leaf part `part_id`, `None` if there is no
/// such leaf. Never panics.
pub fn part_content(raw: &[u8], part_id: &str) -> Option<PartContent> {
    leaf(raw, part_id).map(|(content, _)| content)
}

/// The text of the `text/*` part `part_id` decoded to UTF-8, cut to at most
/// `max_bytes` bytes on a character boundary when `max_bytes > 0` (RFC 8621
/// §4.2 `maxBodyValueBytes`). `None` for unknown ids and non-text parts.
pub fn body_value(raw: &[u8], part_id: &str, max_bytes: usize) -> Option<BodyValue> {
    body_values(raw, &[part_id], max_bytes)
        .into_iter()
        .next()
        .map(|(_, v)| v)
}

/// [`body_value`] of several parts from one parse of `raw`, in the order asked (unknown
/// ids, non-text parts and repeats left out). Each value is decoded straight from the
/// message buffer: at most one decoded copy of a part exists, and with `max_bytes` only
/// the start of the part the limit can use is decoded at all, so the text of a 200 MB
/// message asked with a limit costs about the limit.
pub fn body_values(raw: &[u8], part_ids: &[&str], max_bytes: usize) -> Vec<(String, BodyValue)> {
    found_parts(raw, part_ids, max_bytes)
        .into_iter()
        .map(|(id, f)| (id, f.value(raw, max_bytes)))
        .collect()
}

/// [`body_values`] of a message the caller no longer needs: the largest value that is the
/// message's own octets (8-bit or 7-bit UTF-8, not cut by `max_bytes`) is moved to the
/// front of `raw` and becomes the value in place, so a huge plain text costs its size once,
/// not twice.
pub fn body_values_owned(
    mut raw: Vec<u8>,
    part_ids: &[&str],
    max_bytes: usize,
) -> Vec<(String, BodyValue)> {
    let found = found_parts(&raw, part_ids, max_bytes);
    let in_place = found
        .iter()
        .enumerate()
        .filter_map(|(i, (_, f))| f.verbatim_len(&raw, max_bytes).map(|len| (i, len)))
        .max_by_key(|(_, len)| *len)
        .map(|(i, _)| i);
    let mut values: Vec<(String, Option<BodyValue>)> = found
        .iter()
        .enumerate()
        .map(|(i, (id, f))| {
            (
                id.clone(),
                (Some(i) != in_place).then(|| f.value(&raw, max_bytes)),
            )
        })
        .collect();
    if let Some(i) = in_place
        && let Some((
            _,
            Found::Range {
                start,
                end,
                problem,
                ..
            },
        )) = found.get(i)
    {
        raw.copy_within(*start..*end, 0);
        raw.truncate(end - start);
        lf_line_ends(&mut raw);
        let value = String::from_utf8(raw).unwrap_or_default();
        if let Some(slot) = values.get_mut(i) {
            slot.1 = Some(BodyValue {
                value,
                is_encoding_problem: *problem,
                is_truncated: false,
            });
        }
    }
    values
        .into_iter()
        .map(|(id, v)| (id, v.unwrap_or_default()))
        .collect()
}

/// A text leaf found by the parse: decoded after it, from `raw`, when its octets are
/// a range of `raw` (the parse's own copies are gone by then); else decoded at once.
enum Found {
    Range {
        start: usize,
        end: usize,
        encoding: Encoding,
        charset: Option<String>,
        problem: bool,
    },
    Value(BodyValue),
}

impl Found {
    fn value(&self, raw: &[u8], max_bytes: usize) -> BodyValue {
        match self {
            Found::Value(v) => v.clone(),
            Found::Range {
                start,
                end,
                encoding,
                charset,
                problem,
            } => {
                let body = raw.get(*start..*end).unwrap_or_default();
                let mut v = octets_value(body, *encoding, charset.as_deref(), max_bytes);
                v.is_encoding_problem |= *problem;
                v
            }
        }
    }

    /// The length of the part's octets when the value is exactly them with CRLF made LF:
    /// no transfer encoding, a UTF-8 (or ASCII) charset, valid UTF-8, and not cut by
    /// `max_bytes` (which counts the value, after the line ends are converted).
    fn verbatim_len(&self, raw: &[u8], max_bytes: usize) -> Option<usize> {
        let Found::Range {
            start,
            end,
            encoding: Encoding::None,
            charset,
            ..
        } = self
        else {
            return None;
        };
        let utf8_like = is_utf8_like(&normal_charset(charset.as_deref()));
        let body = raw.get(*start..*end)?;
        (utf8_like
            && (max_bytes == 0 || body.len() - crlf_count(body) <= max_bytes)
            && std::str::from_utf8(body).is_ok())
        .then_some(body.len())
    }
}

/// The text leaves asked for, in the order asked (unknown ids, non-text parts and repeats
/// left out), from one parse of `raw`.
fn found_parts(raw: &[u8], part_ids: &[&str], max_bytes: usize) -> Vec<(String, Found)> {
    analyse(
        raw,
        |parts, tree, data| {
            let nodes = walk(parts, tree);
            let same_buffer = std::ptr::eq(data, raw);
            let mut out: Vec<(String, Found)> = Vec::new();
            for id in part_ids {
                if out.iter().any(|(k, _)| k == id) {
                    continue;
                }
                let Some(part) = nodes
                    .iter()
                    .find(|n| n.part_id.as_deref() == Some(*id))
                    .and_then(|n| parts.get(n.idx))
                else {
                    continue;
                };
                let content_type = leaf_type(part, false);
                if !content_type.starts_with("text/") {
                    continue;
                }
                let charset = charset(part, &content_type);
                let (start, end) = (part.offset_body as usize, part.offset_end as usize);
                let text_part = matches!(part.body, PartType::Text(_) | PartType::Html(_));
                let f = if same_buffer && text_part && start <= end && end <= raw.len() {
                    Found::Range {
                        start,
                        end,
                        encoding: part.encoding,
                        charset,
                        problem: part.is_encoding_problem,
                    }
                } else {
                    let mut v = limited_value(part, data, charset.as_deref(), max_bytes);
                    v.is_encoding_problem |= part.is_encoding_problem;
                    Found::Value(v)
                };
                out.push((id.to_string(), f));
            }
            out
        },
        |body| {
            if !part_ids.contains(&"1") {
                return Vec::new();
            }
            let charset = fallback_part(body.len()).charset;
            let value = text_value(Cow::Borrowed(body), charset.as_deref(), max_bytes, false)
                .unwrap_or_default();
            vec![("1".to_string(), Found::Value(value))]
        },
    )
}

/// The body value of one text leaf, decoded while its parse is alive (see
/// [`octets_value`]).
fn limited_value(
    part: &MessagePart<'_>,
    data: &[u8],
    charset: Option<&str>,
    max_bytes: usize,
) -> BodyValue {
    if let Some(body) = data.get(part.offset_body as usize..part.offset_end as usize)
        && matches!(part.body, PartType::Text(_) | PartType::Html(_))
    {
        return octets_value(body, part.encoding, charset, max_bytes);
    }
    text_value(leaf_bytes(part, data), charset, max_bytes, false).unwrap_or_default()
}

/// The body value of a text part's octets (`body`, still transfer-encoded). With a limit,
/// only a prefix is transfer-decoded and converted, cut at a line end (so no base64
/// quantum or QP escape is split): 4 bytes of text per byte of the limit cover every
/// charset mail-parser knows, and 3 encoded bytes per decoded byte cover quoted-printable's
/// worst case. When that prefix does not fill the limit after all, the whole part is used.
fn octets_value(
    body: &[u8],
    encoding: Encoding,
    charset: Option<&str>,
    max_bytes: usize,
) -> BodyValue {
    if max_bytes > 0 {
        let text_needed = max_bytes.saturating_mul(4).saturating_add(16);
        let encoded_needed = match encoding {
            Encoding::None => text_needed,
            _ => text_needed.saturating_mul(3).saturating_add(1024),
        };
        if body.len() > encoded_needed {
            let cut = body[..encoded_needed]
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(encoded_needed, |i| i + 1);
            if let Some(octets) = transfer_decode_strict(&body[..cut], encoding)
                && let Some(v) = text_value(octets, charset, max_bytes, true)
            {
                return v;
            }
        }
    }
    text_value(transfer_decode(body, encoding), charset, max_bytes, false).unwrap_or_default()
}

/// Like [`transfer_decode`], `None` when the octets do not decode (the whole part is then
/// decoded the usual way, with its fallback).
fn transfer_decode_strict(body: &[u8], encoding: Encoding) -> Option<Cow<'_, [u8]>> {
    let mut stream = MessageStream::new(body);
    let (end, bytes) = match encoding {
        Encoding::None => return Some(Cow::Borrowed(body)),
        Encoding::Base64 => stream.decode_base64_mime(b""),
        Encoding::QuotedPrintable => stream.decode_quoted_printable_mime(b""),
    };
    (end != usize::MAX).then_some(bytes)
}

/// `octets` in `charset` as a body value of at most `max_bytes` (0: no limit). With `cut`,
/// `octets` is only the start of the part: the answer is `None` unless it fills the limit,
/// and a character split at its end is no encoding problem.
fn text_value(
    octets: Cow<'_, [u8]>,
    charset: Option<&str>,
    max_bytes: usize,
    cut: bool,
) -> Option<BodyValue> {
    let cs = normal_charset(charset);
    let utf8_like = is_utf8_like(&cs);
    let limit = if max_bytes > 0 { max_bytes } else { usize::MAX };
    // RFC 8621 4.1.4: a body value has "any CRLF replaced with a single LF", and the limit
    // counts the value so converted. In a UTF-8 or ASCII text the octets CR LF are the
    // characters CR LF, so the octets are converted before the limit is applied; other
    // charsets (UTF-16 has no such octets) are converted after decoding.
    let octets = if utf8_like || charset_decoder(cs.as_bytes()).is_none() {
        lf_octets(octets)
    } else {
        octets
    };
    // The common case: valid UTF-8 is copied at most once (not at all when the transfer
    // decoding made its own buffer), and only up to the limit.
    let valid_len = match std::str::from_utf8(&octets) {
        Ok(s) => Some(s.len()),
        // A sequence cut by the prefix is incomplete at the very end.
        Err(e) if cut && e.error_len().is_none() => Some(e.valid_up_to()),
        Err(_) => None,
    };
    if (utf8_like || charset_decoder(cs.as_bytes()).is_none())
        && let Some(len) = valid_len
    {
        if cut && len <= limit {
            return None;
        }
        let valid = octets.get(..len).unwrap_or_default();
        let end = floor_char_boundary_bytes(valid, limit);
        let is_encoding_problem = !utf8_like && !valid[..end].is_ascii();
        let value = match octets {
            Cow::Owned(mut v) if end == v.len() => {
                v.truncate(end);
                String::from_utf8(v).unwrap_or_default()
            }
            other => String::from_utf8_lossy(&other[..end]).into_owned(),
        };
        return Some(BodyValue {
            value,
            is_encoding_problem,
            is_truncated: end < len,
        });
    }
    let (value, mut is_encoding_problem) = decode_text(&octets, charset);
    let mut value = lf_text(value);
    if cut && value.len() <= limit {
        return None;
    }
    let is_truncated = value.len() > limit;
    if is_truncated {
        let end = floor_char_boundary(&value, limit);
        value.truncate(end);
    }
    if cut && !utf8_like {
        // Judged on what is kept: the prefix may end inside a character.
        is_encoding_problem = value.contains('\u{FFFD}');
    }
    Some(BodyValue {
        value,
        is_encoding_problem,
        is_truncated,
    })
}

/// The number of CR LF pairs in `b`.
fn crlf_count(b: &[u8]) -> usize {
    b.windows(2).filter(|w| w == b"\r\n").count()
}

/// Removes the CR of every CR LF pair, in place (a lone CR is kept: RFC 8621 4.1.4 only
/// replaces CRLF).
fn lf_line_ends(v: &mut Vec<u8>) {
    let Some(first) = v.windows(2).position(|w| w == b"\r\n") else {
        return;
    };
    let mut w = first;
    for r in first..v.len() {
        let b = v[r];
        if b == b'\r' && v.get(r + 1) == Some(&b'\n') {
            continue;
        }
        v[w] = b;
        w += 1;
    }
    v.truncate(w);
}

/// `octets` with CRLF made LF; borrowed octets are copied only when they have a CRLF.
fn lf_octets(octets: Cow<'_, [u8]>) -> Cow<'_, [u8]> {
    match octets {
        Cow::Borrowed(b) if !b.windows(2).any(|w| w == b"\r\n") => Cow::Borrowed(b),
        other => {
            let mut v = other.into_owned();
            lf_line_ends(&mut v);
            Cow::Owned(v)
        }
    }
}

/// `s` with CRLF made LF.
fn lf_text(s: String) -> String {
    if !s.contains("\r\n") {
        return s;
    }
    let mut v = s.into_bytes();
    lf_line_ends(&mut v);
    // Removing ASCII CRs keeps UTF-8 valid.
    String::from_utf8(v).unwrap_or_default()
}

/// The largest char boundary of the valid UTF-8 `b` at or below `limit`.
fn floor_char_boundary_bytes(b: &[u8], limit: usize) -> usize {
    if limit >= b.len() {
        return b.len();
    }
    let mut end = limit;
    // Continuation bytes are 0b10xxxxxx.
    while end > 0 && (b[end] & 0xC0) == 0x80 {
        end -= 1;
    }
    end
}

/// The largest char boundary of `s` at or below `limit`.
fn floor_char_boundary(s: &str, limit: usize) -> usize {
    if limit >= s.len() {
        return s.len();
    }
    let mut end = limit;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// Parses `raw` behind the crate's panic fence and hands the parts to
/// `on_parts`; when the parse panics or finds no message, hands the
/// fallback body (see the module documentation) to `on_fallback`.
fn analyse<T>(
    raw: &[u8],
    on_parts: impl FnOnce(&[MessagePart<'_>], &Tree, &[u8]) -> T,
    on_fallback: impl FnOnce(&[u8]) -> T,
) -> T {
    if raw.is_empty() {
        return on_fallback(raw);
    }
    let mut problems = Vec::new();
    let (_, result) = extract::run_guarded(raw, false, &mut problems, |data| {
        let message = MessageParser::new().parse(data)?;
        let out = if message.parts.is_empty() {
            None
        } else {
            let tree = Tree::build(&message.parts);
            Some(on_parts(&message.parts, &tree, data))
        };
        drop_flat(message);
        out
    });
    match result.flatten() {
        Some(out) => out,
        None => on_fallback(fallback_body(raw)),
    }
}

/// What the fallback presents as the single part: the input after its
/// header block, or all of it when no header block ends.
fn fallback_body(raw: &[u8]) -> &[u8] {
    match extract::find_header_end(raw) {
        Some((_, body)) => raw.get(body..).unwrap_or_default(),
        None => raw,
    }
}

fn fallback_part(size: usize) -> BodyPart {
    BodyPart {
        part_id: Some("1".into()),
        size: size as u64,
        headers: Vec::new(),
        name: None,
        content_type: "text/plain".into(),
        charset: Some("us-ascii".into()),
        disposition: None,
        cid: None,
        language: None,
        location: None,
        sub_parts: None,
    }
}

/// A part of the bounded tree: mail-parser's index, the partId of a leaf
/// (`None` for a container) and the node indices of the children.
struct Node {
    idx: usize,
    part_id: Option<String>,
    children: Vec<usize>,
}

/// The bounded tree in document (pre-)order, root first. Children are
/// taken as [`Tree`] assigned them, so ids match [`crate::parse`].
fn walk(parts: &[MessagePart<'_>], tree: &Tree) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    // Explicit stack of (node index, next child position) keeps hostile
    // nesting off the call stack.
    let mut stack: Vec<(usize, usize)> = Vec::new();
    push_node(0, parts, tree, &mut nodes, &mut stack);
    while let Some(top) = stack.last_mut() {
        let (node, next) = *top;
        top.1 += 1;
        let children = match nodes.get(node).and_then(|n| parts.get(n.idx)) {
            Some(MessagePart {
                body: PartType::Multipart(c),
                ..
            }) => c.as_slice(),
            _ => &[],
        };
        let Some(&child) = children.get(next) else {
            stack.pop();
            continue;
        };
        if nodes.len() >= MAX_BODY_PARTS {
            stack.clear();
            break;
        }
        let child = child as usize;
        let parent_idx = nodes.get(node).map_or(usize::MAX, |n| n.idx);
        let assigned = tree.reached.get(child).copied().unwrap_or(false)
            && tree.parent.get(child) == Some(&parent_idx);
        if !assigned {
            continue;
        }
        let new = push_node(child, parts, tree, &mut nodes, &mut stack);
        if let Some(n) = nodes.get_mut(node) {
            n.children.push(new);
        }
    }
    nodes
}

/// Adds the node for part `idx`; a container is also pushed on `stack` so
/// its children get visited.
fn push_node(
    idx: usize,
    parts: &[MessagePart<'_>],
    tree: &Tree,
    nodes: &mut Vec<Node>,
    stack: &mut Vec<(usize, usize)>,
) -> usize {
    let n = nodes.len();
    let container = parts
        .get(idx)
        .is_some_and(|p| is_container(p, tree.depth.get(idx).copied().unwrap_or(0)));
    nodes.push(Node {
        idx,
        part_id: (!container).then(|| tree.part_id(idx)),
        children: Vec::new(),
    });
    if container {
        stack.push((n, 0));
    }
    n
}

/// A multipart that mail-parser split into sub-parts and that is not too
/// deep to be shown as one.
fn is_container(part: &MessagePart<'_>, depth: u32) -> bool {
    matches!(part.body, PartType::Multipart(_))
        && depth < MAX_BODY_DEPTH
        && declared_multipart(part)
}

fn declared_multipart(part: &MessagePart<'_>) -> bool {
    content_type(part).is_some_and(|c| c.ctype().eq_ignore_ascii_case("multipart"))
}

/// Builds the [`BodyPart`] of node `n`. Recursion depth is bounded by
/// [`MAX_BODY_DEPTH`] because [`walk`] makes deeper multiparts leaves.
fn to_body_part(nodes: &[Node], n: usize, parts: &[MessagePart<'_>], raw: &[u8]) -> BodyPart {
    let Some((node, part)) = nodes
        .get(n)
        .and_then(|node| parts.get(node.idx).map(|p| (node, p)))
    else {
        return fallback_part(0);
    };
    let ctype = leaf_type(part, node.part_id.is_none());
    let sub_parts = node.part_id.is_none().then(|| {
        node.children
            .iter()
            .map(|&c| to_body_part(nodes, c, parts, raw))
            .collect()
    });
    BodyPart {
        part_id: node.part_id.clone(),
        size: if node.part_id.is_some() {
            leaf_bytes(part, raw).len() as u64
        } else {
            0
        },
        headers: raw_headers(part, raw),
        name: part_name(part),
        charset: charset(part, &ctype),
        content_type: ctype,
        disposition: part_disposition(part),
        cid: part_cid(part),
        language: language(part),
        location: location(part),
        sub_parts,
    }
}

/// The content type reported for a part; see [`BodyPart::content_type`].
fn leaf_type(part: &MessagePart<'_>, container: bool) -> String {
    let t = mime_type(part);
    if !container && t.starts_with("multipart/") {
        "application/octet-stream".into()
    } else {
        t
    }
}

fn charset(part: &MessagePart<'_>, ctype: &str) -> Option<String> {
    if !ctype.starts_with("text/") {
        return None;
    }
    let declared = content_type(part)
        .and_then(|c| c.attribute("charset"))
        .map(|c| clean_field(c, MAX_TOKEN_BYTES).0)
        .filter(|c| !c.is_empty());
    Some(declared.unwrap_or_else(|| "us-ascii".into()))
}

/// A language tag as written: RFC 5646 2.1.1 tags are case-insensitive and their case is
/// only a convention, so the tag is kept as the sender wrote it (as Cyrus does), bounded
/// and limited to token characters.
fn language_tag(s: &str) -> String {
    s.trim()
        .chars()
        .filter(|c| c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?=".contains(*c))
        .take(MAX_TOKEN_BYTES)
        .collect()
}

fn language(part: &MessagePart<'_>) -> Option<Vec<String>> {
    let tags: Vec<String> = match last(&part.headers, &HeaderName::ContentLanguage) {
        Some(HeaderValue::Text(t)) => vec![language_tag(t)],
        Some(HeaderValue::TextList(l)) => l
            .iter()
            .take(MAX_LANGUAGES)
            .map(|t| language_tag(t))
            .collect(),
        _ => return None,
    };
    let tags: Vec<String> = tags.into_iter().filter(|t| !t.is_empty()).collect();
    (!tags.is_empty()).then_some(tags)
}

fn location(part: &MessagePart<'_>) -> Option<String> {
    match last(&part.headers, &HeaderName::ContentLocation) {
        Some(HeaderValue::Text(t)) => Some(clean_field(t, MAX_LOCATION_BYTES).0),
        _ => None,
    }
    .filter(|l| !l.is_empty())
}

/// Header fields as written. Offsets index `raw`, the buffer mail-parser
/// parsed: every part reached by [`walk`] belongs to the outer message
/// (nested messages are leaves).
fn raw_headers(part: &MessagePart<'_>, raw: &[u8]) -> Vec<(String, String)> {
    part.headers
        .iter()
        .take(MAX_PART_HEADERS)
        .map(|h| {
            let (start, value_start, end) = (
                h.offset_field as usize,
                h.offset_start as usize,
                h.offset_end as usize,
            );
            let name = raw
                .get(start..value_start)
                .map(|n| n.strip_suffix(b":").unwrap_or(n).trim_ascii())
                .filter(|n| !n.is_empty())
                .map_or_else(|| h.name.as_str().to_string(), utf8_or_cp1252);
            let value = raw.get(value_start..end).unwrap_or_default();
            let value = value.strip_suffix(b"\n").unwrap_or(value);
            let value = value.strip_suffix(b"\r").unwrap_or(value);
            (name, utf8_or_cp1252(value))
        })
        .collect()
}

/// A part's content after transfer decoding, see [`PartContent::bytes`].
fn leaf_bytes<'a>(part: &'a MessagePart<'_>, raw: &'a [u8]) -> Cow<'a, [u8]> {
    let body = raw.get(part.offset_body as usize..part.offset_end as usize);
    match &part.body {
        PartType::Binary(b) | PartType::InlineBinary(b) => Cow::Borrowed(b.as_ref()),
        // mail-parser keeps text only after charset conversion; the octets
        // are decoded again from the part's extent, with the same decoder.
        PartType::Text(t) | PartType::Html(t) => match body {
            Some(body) => transfer_decode(body, part.encoding),
            None => Cow::Borrowed(t.as_bytes()),
        },
        // In place, a nested message shares the outer buffer; a transfer
        // encoded one was decoded into its own (see `decoded_size`).
        PartType::Message(m) => match (part.encoding, body) {
            (Encoding::None, Some(body)) => Cow::Borrowed(body),
            _ => Cow::Borrowed(m.raw_message.as_ref()),
        },
        PartType::Multipart(_) => Cow::Borrowed(body.unwrap_or_default()),
    }
}

fn transfer_decode(body: &[u8], encoding: Encoding) -> Cow<'_, [u8]> {
    let mut stream = MessageStream::new(body);
    let (end, bytes) = match encoding {
        Encoding::None => return Cow::Borrowed(body),
        Encoding::Base64 => stream.decode_base64_mime(b""),
        Encoding::QuotedPrintable => stream.decode_quoted_printable_mime(b""),
    };
    if end == usize::MAX {
        // Not decodable: mail-parser then keeps the raw bytes too.
        Cow::Borrowed(body)
    } else {
        bytes
    }
}

/// The leaf `part_id` and whether its transfer encoding was broken.
fn leaf(raw: &[u8], part_id: &str) -> Option<(PartContent, bool)> {
    analyse(
        raw,
        |parts, tree, data| {
            let nodes = walk(parts, tree);
            let node = nodes
                .iter()
                .find(|n| n.part_id.as_deref() == Some(part_id))?;
            let part = parts.get(node.idx)?;
            let content_type = leaf_type(part, false);
            Some((
                PartContent {
                    bytes: leaf_bytes(part, data).into_owned(),
                    charset: charset(part, &content_type),
                    content_type,
                    name: part_name(part),
                },
                part.is_encoding_problem,
            ))
        },
        |body| {
            (part_id == "1").then(|| {
                let p = fallback_part(body.len());
                (
                    PartContent {
                        bytes: body.to_vec(),
                        content_type: p.content_type,
                        name: None,
                        charset: p.charset,
                    },
                    false,
                )
            })
        },
    )
}

/// A charset label as compared: trimmed, lower case, US-ASCII when none is declared
/// (RFC 2045 5.2).
fn normal_charset(charset: Option<&str>) -> String {
    charset.unwrap_or("us-ascii").trim().to_ascii_lowercase()
}

/// Whether a (normalised) charset is read as UTF-8: UTF-8 itself, and US-ASCII, which
/// UTF-8 contains.
fn is_utf8_like(cs: &str) -> bool {
    matches!(
        cs,
        "utf-8" | "utf8" | "us-ascii" | "ascii" | "ansi_x3.4-1968" | "iso646-us"
    )
}

/// Decodes text octets from `charset` into UTF-8. Returns the text and
/// whether decoding was a guess or lossy.
///
/// UTF-8 and US-ASCII (the RFC 2045 §5.2 default) are read as UTF-8, bytes
/// that are not fall back to windows-1252; other known charsets go through
/// mail-parser's decoders; an unknown charset is read like US-ASCII and is
/// a problem as soon as the content is not pure ASCII.
fn decode_text(bytes: &[u8], charset: Option<&str>) -> (String, bool) {
    let cs = normal_charset(charset);
    let utf8_like = is_utf8_like(&cs);
    if !utf8_like && let Some(decode) = charset_decoder(cs.as_bytes()) {
        let text = decode(bytes);
        let lossy = text.contains('\u{FFFD}');
        return (text, lossy);
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_string(), !utf8_like && !bytes.is_ascii()),
        Err(_) => (utf8_or_cp1252(bytes), true),
    }
}

/// RFC 8621 §4.1.4 `isInlineMediaType`.
fn is_inline_media_type(t: &str) -> bool {
    t.starts_with("image/") || t.starts_with("audio/") || t.starts_with("video/")
}

/// RFC 8621 §4.1.4 `parseStructure`, transcribed. `html_body` / `text_body`
/// are `None` where the pseudo-code's are `null` (inside an alternative,
/// once the other flavour has been chosen). `depth` stops runaway recursion
/// on trees not built by [`body_structure`].
fn parse_structure(
    parts: &[BodyPart],
    multipart_type: &str,
    in_alternative: bool,
    mut html_body: Option<&mut Vec<String>>,
    mut text_body: Option<&mut Vec<String>>,
    attachments: &mut Vec<String>,
    depth: u32,
) {
    if depth > MAX_BODY_DEPTH + 1 {
        return;
    }
    // For multipartType == alternative.
    let text_length = text_body.as_ref().map(|t| t.len());
    let html_length = html_body.as_ref().map(|h| h.len());

    for (i, part) in parts.iter().enumerate() {
        let t = part.content_type.as_str();
        // Is this a body part rather than an attachment?
        let is_inline = part.disposition.as_deref() != Some("attachment")
            // Must be one of the allowed body types.
            && (t == "text/plain" || t == "text/html" || is_inline_media_type(t))
            // If multipart/related, only the first part can be inline. If a
            // text part with a filename, and not the first item in the
            // multipart, assume it is an attachment.
            && (i == 0
                || (multipart_type != "related"
                    && (is_inline_media_type(t) || part.name.as_deref().is_none_or(str::is_empty))));

        if let Some(sub_parts) = &part.sub_parts {
            let sub_multi_type = t.split_once('/').map_or("", |(_, s)| s);
            parse_structure(
                sub_parts,
                sub_multi_type,
                in_alternative || sub_multi_type == "alternative",
                html_body.as_deref_mut(),
                text_body.as_deref_mut(),
                attachments,
                depth + 1,
            );
            continue;
        }
        let Some(id) = part.part_id.as_ref() else {
            continue;
        };
        if is_inline {
            if multipart_type == "alternative" {
                match t {
                    "text/plain" => {
                        if let Some(text) = text_body.as_deref_mut() {
                            text.push(id.clone());
                        }
                    }
                    "text/html" => {
                        if let Some(html) = html_body.as_deref_mut() {
                            html.push(id.clone());
                        }
                    }
                    _ => attachments.push(id.clone()),
                }
                continue;
            } else if in_alternative {
                if t == "text/plain" {
                    html_body = None;
                }
                if t == "text/html" {
                    text_body = None;
                }
            }
            if let Some(text) = text_body.as_deref_mut() {
                text.push(id.clone());
            }
            if let Some(html) = html_body.as_deref_mut() {
                html.push(id.clone());
            }
            if (text_body.is_none() || html_body.is_none()) && is_inline_media_type(t) {
                attachments.push(id.clone());
            }
        } else {
            attachments.push(id.clone());
        }
    }

    if multipart_type == "alternative"
        && let (Some(text), Some(html)) = (text_body, html_body)
    {
        let (text_length, html_length) = (text_length.unwrap_or(0), html_length.unwrap_or(0));
        // Found HTML part only.
        if text_length == text.len() && html_length != html.len() {
            text.extend(html.iter().skip(html_length).cloned());
        }
        // Found plaintext part only.
        if html_length == html.len() && text_length != text.len() {
            html.extend(text.iter().skip(text_length).cloned());
        }
    }
}

#[cfg(test)]
mod tests;

//! The mail-parser based extraction, the input preparation that precedes
//! it, and the panic fence around both.

use std::borrow::Cow;
use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};

use mail_parser::{
    Addr, ContentType, Encoding, Header, HeaderName, HeaderValue, Message, MessageParser,
    MessagePart, PartType,
};

use crate::text::{Sink, clean_field, html_into, utf8_or_cp1252};
use crate::{Address, Attachment, MAX_ID_LEN, MAX_INDEX_TEXT, MAX_PREVIEW_CHARS, ParsedMessage};

/// Longest subject kept, in bytes. A 1 MB Subject line is an attack or a
/// bug, not something a UI or thread key benefits from.
const MAX_SUBJECT_BYTES: usize = 16 * 1024;
/// Longest display name or file name kept, in bytes.
const MAX_NAME_BYTES: usize = 1024;
/// Longest addr-spec kept (RFC 5322 §2.1.1 line limit).
const MAX_EMAIL_BYTES: usize = 998;
/// Most addresses kept per header field.
const MAX_ADDRESSES: usize = 10_000;
/// Most attachments reported per message.
const MAX_ATTACHMENTS: usize = 10_000;
/// Deepest MIME nesting for which attachments are reported. Part ids grow
/// with depth, so without a cap a deep chain with many leaves would make
/// the output quadratic in the input.
pub(crate) const MAX_PART_DEPTH: u32 = 64;
/// Longest content type / disposition token kept (RFC 6838 §4.2 limits
/// type and subtype names to 127 characters each).
pub(crate) const MAX_TOKEN_BYTES: usize = 255;

/// Signature of the function doing the real work; a parameter so tests can
/// exercise the panic path.
pub(crate) type Extractor = fn(&[u8], bool) -> ParsedMessage;

/// Runs `extractor` on prepared input inside `catch_unwind`, degrading to a
/// minimal header scan if it panics.
pub(crate) fn parse_guarded(raw: &[u8], header_only: bool, extractor: Extractor) -> ParsedMessage {
    let mut problems: Vec<String> = Vec::new();
    if raw.is_empty() {
        problems.push("empty input".into());
        return ParsedMessage {
            problems,
            ..ParsedMessage::default()
        };
    }
    let (prepared, result) = run_guarded(raw, header_only, &mut problems, |data| {
        extractor(data, header_only)
    });
    let mut parsed = match result {
        Some(parsed) => parsed,
        None => {
            problems.push("parser panicked".into());
            // The scan is written not to panic, but it is fenced as well so
            // that a bug there cannot take the caller down either.
            catch_unwind(AssertUnwindSafe(|| {
                crate::fallback::scan_headers(&prepared)
            }))
            .unwrap_or_else(|_| ParsedMessage {
                problems: vec!["header scan panicked".into()],
                ..ParsedMessage::default()
            })
        }
    };
    problems.append(&mut parsed.problems);
    // Keep the first occurrence of each problem, in order.
    let mut seen = HashSet::new();
    problems.retain(|p| seen.insert(p.clone()));
    parsed.problems = problems;
    parsed
}

/// Repairs `raw` (see [`prepare`]) and runs `f` on the result inside
/// `catch_unwind`. Returns the prepared input, for a fallback, and `f`'s
/// result, `None` if it panicked. The shared entry path of every function
/// that hands input to mail-parser.
pub(crate) fn run_guarded<'a, T>(
    raw: &'a [u8],
    header_only: bool,
    problems: &mut Vec<String>,
    f: impl FnOnce(&[u8]) -> T,
) -> (Cow<'a, [u8]>, Option<T>) {
    let prepared = prepare(raw, header_only, problems);
    let result = catch_unwind(AssertUnwindSafe(|| f(&prepared))).ok();
    (prepared, result)
}

/// Finds the blank line ending the header block (RFC 5322 §2.1). Returns
/// the length of the header (including the last field's line break) and the
/// offset of the body.
pub(crate) fn find_header_end(raw: &[u8]) -> Option<(usize, usize)> {
    // A message starting with an empty line has an empty header.
    if raw.first() == Some(&b'\n') {
        return Some((0, 1));
    }
    if raw.starts_with(b"\r\n") {
        return Some((0, 2));
    }
    let mut from = 0;
    while let Some(p) = raw.get(from..)?.iter().position(|&b| b == b'\n') {
        let i = from + p;
        match raw.get(i + 1) {
            Some(b'\n') => return Some((i + 1, i + 2)),
            Some(b'\r') if raw.get(i + 2) == Some(&b'\n') => return Some((i + 1, i + 3)),
            _ => from = i + 1,
        }
    }
    None
}

/// Repairs what mail-parser cannot cope with, copying the input only when a
/// repair is needed:
/// * CR-only line endings (old Mac): mail-parser only splits on LF.
/// * raw 8-bit header bytes that are not UTF-8: mail-parser would replace
///   them with U+FFFD; they are re-encoded from windows-1252 instead.
/// * a header block that does not end in a line break: mail-parser drops
///   the value of a structured field that runs into end of input.
fn prepare<'a>(raw: &'a [u8], header_only: bool, problems: &mut Vec<String>) -> Cow<'a, [u8]> {
    let mut data: Cow<'a, [u8]> = Cow::Borrowed(raw);
    if !raw.contains(&b'\n') && raw.contains(&b'\r') {
        problems.push("CR-only line endings".into());
        data = Cow::Owned(
            raw.iter()
                .map(|&b| if b == b'\r' { b'\n' } else { b })
                .collect(),
        );
    }
    let header_end = find_header_end(&data);
    if header_end.is_none() && !header_only {
        problems.push("no blank line after header".into());
    }
    let header_len = header_end.map_or(data.len(), |(h, _)| h);
    let header = data.get(..header_len).unwrap_or_default();
    if std::str::from_utf8(header).is_err() {
        problems.push("8-bit header bytes decoded as windows-1252".into());
        let mut fixed = utf8_or_cp1252(header).into_bytes();
        fixed.extend_from_slice(data.get(header_len..).unwrap_or_default());
        data = Cow::Owned(fixed);
    }
    if header_end.is_none() && data.last() != Some(&b'\n') {
        let mut fixed = data.into_owned();
        fixed.push(b'\n');
        data = Cow::Owned(fixed);
    }
    data
}

/// The real extraction. May panic only if mail-parser does.
pub(crate) fn extract(raw: &[u8], header_only: bool) -> ParsedMessage {
    let parser = MessageParser::new();
    let message = if header_only {
        parser.parse_headers(raw)
    } else {
        parser.parse(raw)
    };
    let mut pm = ParsedMessage::default();
    let Some(message) = message else {
        pm.problems.push("no header fields found".into());
        return pm;
    };
    let Some(root) = message.parts.first() else {
        pm.problems.push("no header fields found".into());
        return pm;
    };
    fill_headers(&mut pm, &root.headers);
    if !header_only {
        fill_body(&mut pm, &message, raw);
    }
    drop_flat(message);
    pm
}

/// Drops a message without recursion.
///
/// mail-parser parses nested message/rfc822 parts iteratively, but the
/// result nests `PartType::Message(Message)` as deep as the input does, and
/// the compiler-generated drop recurses once per level: 10,000 nested
/// messages overflow a 2 MiB thread stack, which is an abort, not a
/// catchable panic. Moving each nested message onto a heap stack first
/// keeps every individual drop shallow.
pub(crate) fn drop_flat(message: Message<'_>) {
    let mut pending = vec![message];
    while let Some(mut m) = pending.pop() {
        for part in &mut m.parts {
            if let PartType::Message(inner) = &mut part.body {
                pending.push(std::mem::take(inner));
            }
        }
    }
}

/// The value of the last header named `name` (the same choice
/// mail-parser's own accessors make).
pub(crate) fn last<'a, 'x>(
    headers: &'a [Header<'x>],
    name: &HeaderName<'_>,
) -> Option<&'a HeaderValue<'x>> {
    headers
        .iter()
        .rev()
        .find(|h| &h.name == name)
        .map(|h| &h.value)
}

fn fill_headers(pm: &mut ParsedMessage, headers: &[Header<'_>]) {
    let problems = &mut pm.problems;

    if let Some(v) = last(headers, &HeaderName::MessageId) {
        let (ids, bad) = ids(v);
        pm.message_id = ids.into_iter().next();
        if pm.message_id.is_none() || bad {
            problems.push("header Message-ID invalid".into());
        }
    }
    if let Some(v) = last(headers, &HeaderName::InReplyTo) {
        let (ids, bad) = ids(v);
        pm.in_reply_to = ids;
        if bad {
            problems.push("header In-Reply-To has invalid ids".into());
        }
    }
    if let Some(v) = last(headers, &HeaderName::References) {
        let (ids, bad) = ids(v);
        pm.references = ids;
        if bad {
            problems.push("header References has invalid ids".into());
        }
    }

    if let Some(v) = last(headers, &HeaderName::Subject) {
        let raw = match v {
            HeaderValue::Text(t) => t.as_ref(),
            _ => "",
        };
        let (subject, truncated) = clean_field(raw, MAX_SUBJECT_BYTES);
        if truncated {
            problems.push("header Subject truncated".into());
        }
        // mail-parser leaves encoded words it cannot decode (RFC 2047 §6.3
        // allows showing them as-is); note it so bad mail can be found.
        if subject
            .find("=?")
            .is_some_and(|p| subject.get(p..).is_some_and(|s| s.contains("?=")))
        {
            problems.push("header Subject has undecoded encoded words".into());
        }
        // RFC 8621 4.1.2.2: `subject` is header:Subject:asText, which is NFC.
        pm.subject = Some(crate::text::nfc(subject));
    }

    let fields: [(&HeaderName<'_>, &mut Vec<Address>, &str); 6] = [
        (&HeaderName::From, &mut pm.from, "From"),
        (&HeaderName::Sender, &mut pm.sender, "Sender"),
        (&HeaderName::ReplyTo, &mut pm.reply_to, "Reply-To"),
        (&HeaderName::To, &mut pm.to, "To"),
        (&HeaderName::Cc, &mut pm.cc, "Cc"),
        (&HeaderName::Bcc, &mut pm.bcc, "Bcc"),
    ];
    for (name, out, label) in fields {
        if let Some(v) = last(headers, name) {
            let (list, bad) = addresses(v);
            *out = list;
            if bad {
                problems.push(format!("header {label} has invalid addresses"));
            }
        }
    }

    match last(headers, &HeaderName::Date) {
        None => problems.push("header Date missing".into()),
        Some(HeaderValue::DateTime(dt)) if dt.is_valid() => {
            pm.sent_at = Some(dt.to_timestamp());
            pm.sent_offset = zone_minutes(dt);
        }
        Some(_) => problems.push("header Date unparseable".into()),
    }
}

/// A date's zone as minutes east of UTC (`-0330` is -210).
pub(crate) fn zone_minutes(d: &mail_parser::DateTime) -> i16 {
    let minutes = i16::from(d.tz_hour) * 60 + i16::from(d.tz_minute);
    if d.tz_before_gmt { -minutes } else { minutes }
}

/// Cleans a msg-id (RFC 5322 §3.6.4): strips `<>` and whitespace, rejects
/// empty ids, ids over [`MAX_ID_LEN`] bytes and ids with control characters.
pub(crate) fn clean_id(id: &str) -> Option<String> {
    let id = id.trim();
    let id = id.strip_prefix('<').unwrap_or(id);
    let id = id.strip_suffix('>').unwrap_or(id).trim();
    if id.is_empty() || id.len() > MAX_ID_LEN || id.chars().any(char::is_control) {
        return None;
    }
    Some(id.to_string())
}

/// Valid ids of an id-list header, and whether any were rejected.
fn ids(v: &HeaderValue<'_>) -> (Vec<String>, bool) {
    let raw: Vec<&str> = match v {
        HeaderValue::Text(t) => vec![t.as_ref()],
        HeaderValue::TextList(l) => l.iter().map(|t| t.as_ref()).collect(),
        _ => Vec::new(),
    };
    let mut out: Vec<String> = Vec::with_capacity(raw.len());
    // A hash set keeps deduplication linear: a hostile References header
    // can carry tens of thousands of ids.
    let mut seen: HashSet<String> = HashSet::with_capacity(raw.len());
    let mut bad = raw.is_empty();
    for id in raw {
        match clean_id(id) {
            Some(clean) => {
                if seen.insert(clean.clone()) {
                    out.push(clean);
                }
            }
            None => bad = true,
        }
    }
    (out, bad)
}

fn address(a: &Addr<'_>, bad: &mut bool) -> Option<Address> {
    let (email, truncated) = clean_field(a.address.as_deref().unwrap_or(""), MAX_EMAIL_BYTES);
    if email.is_empty() || truncated {
        *bad = true;
        return None;
    }
    let name = a
        .name
        .as_deref()
        .map(|n| crate::text::nfc(clean_field(n, MAX_NAME_BYTES).0))
        .filter(|n| !n.is_empty());
    Some(Address { name, email })
}

/// Flattens an address header (RFC 5322 §3.4: groups such as
/// "undisclosed-recipients:;" contribute their members, possibly none).
fn addresses(v: &HeaderValue<'_>) -> (Vec<Address>, bool) {
    let mut out = Vec::new();
    let mut bad = false;
    let mut push = |a: &Addr<'_>, out: &mut Vec<Address>| {
        if out.len() < MAX_ADDRESSES {
            if let Some(a) = address(a, &mut bad) {
                out.push(a);
            }
        } else {
            bad = true;
        }
    };
    match v {
        HeaderValue::Address(mail_parser::Address::List(list)) => {
            for a in list {
                push(a, &mut out);
            }
        }
        HeaderValue::Address(mail_parser::Address::Group(groups)) => {
            for a in groups.iter().flat_map(|g| g.addresses.iter()) {
                push(a, &mut out);
            }
        }
        HeaderValue::Empty => {}
        _ => bad = true,
    }
    (out, bad)
}

pub(crate) fn content_type<'a, 'x>(part: &'a MessagePart<'x>) -> Option<&'a ContentType<'x>> {
    last(&part.headers, &HeaderName::ContentType).and_then(|v| v.as_content_type())
}

/// Lowercases an RFC 2045 token, dropping anything that is not a token
/// character so hostile bytes cannot leak into stored type strings.
pub(crate) fn token(s: &str) -> String {
    s.trim()
        .chars()
        .filter(|c| c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?=".contains(*c))
        .take(MAX_TOKEN_BYTES)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

pub(crate) fn mime_type(part: &MessagePart<'_>) -> String {
    let ct = content_type(part);
    let main = ct.map(|c| token(c.ctype())).unwrap_or_default();
    let sub = ct.and_then(|c| c.subtype()).map(token).unwrap_or_default();
    if !main.is_empty() && !sub.is_empty() {
        return format!("{main}/{sub}");
    }
    // RFC 2045 §5.2 default, or RFC 2046 §5.1.5 inside multipart/digest
    // (mail-parser already decided that and produced a Message part).
    match part.body {
        PartType::Message(_) => "message/rfc822".into(),
        PartType::Binary(_) | PartType::InlineBinary(_) if !main.is_empty() => {
            "application/octet-stream".into()
        }
        _ => "text/plain".into(),
    }
}

/// Decoded size of a part's body.
fn decoded_size(part: &MessagePart<'_>) -> u64 {
    let n = match &part.body {
        PartType::Text(t) | PartType::Html(t) => t.len(),
        PartType::Binary(b) | PartType::InlineBinary(b) => b.len(),
        // A nested message parsed in place shares the outer raw buffer, so
        // its `raw_message` is the whole outer message; the part offsets
        // give its real extent. A transfer-encoded one was decoded into its
        // own buffer.
        PartType::Message(m) => {
            if part.encoding == Encoding::None {
                part.offset_end.saturating_sub(part.offset_body) as usize
            } else {
                m.raw_message.len()
            }
        }
        PartType::Multipart(_) => 0,
    };
    n as u64
}

/// Shape of the MIME tree: mail-parser keeps parts in a flat array with
/// child index lists; this records parent, position and depth per part,
/// built iteratively so that hostile nesting depth cannot exhaust the stack.
pub(crate) struct Tree {
    pub(crate) parent: Vec<usize>,
    pos: Vec<usize>,
    pub(crate) depth: Vec<u32>,
    pub(crate) reached: Vec<bool>,
}

impl Tree {
    pub(crate) fn build(parts: &[MessagePart<'_>]) -> Tree {
        let n = parts.len();
        let mut t = Tree {
            parent: vec![usize::MAX; n],
            pos: vec![0; n],
            depth: vec![0; n],
            reached: vec![false; n],
        };
        if n == 0 {
            return t;
        }
        t.reached[0] = true;
        let mut stack = vec![0usize];
        while let Some(i) = stack.pop() {
            let Some(PartType::Multipart(children)) = parts.get(i).map(|p| &p.body) else {
                continue;
            };
            for (k, &c) in children.iter().enumerate() {
                let c = c as usize;
                // Out-of-range or repeated child ids would be a parser bug;
                // skipping them also rules out cycles.
                if c >= n || t.reached[c] {
                    continue;
                }
                t.reached[c] = true;
                t.parent[c] = i;
                t.pos[c] = k + 1;
                t.depth[c] = t.depth[i].saturating_add(1);
                stack.push(c);
            }
        }
        t
    }

    /// IMAP-style section number (RFC 3501 §6.4.5), used as the JMAP partId.
    pub(crate) fn part_id(&self, idx: usize) -> String {
        let mut nums = Vec::new();
        let mut i = idx;
        while i != 0 && i < self.parent.len() {
            nums.push(self.pos[i].to_string());
            i = self.parent[i];
        }
        if nums.is_empty() {
            return "1".into();
        }
        nums.reverse();
        nums.join(".")
    }
}

/// Boundaries whose close delimiter ("--boundary--", RFC 2046 §5.1.1)
/// appears at the start of some line, collected in one pass.
fn closed_boundaries(raw: &[u8]) -> HashSet<&[u8]> {
    let mut set = HashSet::new();
    for line in raw.split(|&b| b == b'\n') {
        if let Some(rest) = line.strip_prefix(b"--") {
            let rest = rest.trim_ascii_end();
            if let Some(b) = rest.strip_suffix(b"--") {
                set.insert(b);
            }
        }
    }
    set
}

fn fill_body(pm: &mut ParsedMessage, message: &Message<'_>, raw: &[u8]) {
    let parts = &message.parts;
    let tree = Tree::build(parts);

    // Structural problems.
    let mut closed: Option<HashSet<&[u8]>> = None;
    let mut undecodable = false;
    for (i, part) in parts.iter().enumerate() {
        if !tree.reached.get(i).copied().unwrap_or(false) {
            continue;
        }
        if part.is_encoding_problem && decoded_size(part) > 0 {
            undecodable = true;
        }
        let Some(ct) = content_type(part) else {
            continue;
        };
        if !ct.ctype().eq_ignore_ascii_case("multipart") {
            continue;
        }
        let boundary = ct.attribute("boundary");
        match (&part.body, boundary) {
            (PartType::Multipart(_), Some(b)) => {
                let set = closed.get_or_insert_with(|| closed_boundaries(raw));
                if !set.contains(b.as_bytes()) {
                    pm.problems.push("truncated multipart".into());
                }
            }
            (_, None) => pm.problems.push("multipart without boundary".into()),
            (_, Some(_)) => pm.problems.push("multipart boundary not found".into()),
        }
    }
    if undecodable {
        pm.problems.push("part content not decodable".into());
    }

    // Attachments (RFC 8621 §4.1.4 parseStructure; mail-parser implements
    // that algorithm and hands us the resulting list).
    let mut too_deep = false;
    for &idx in &message.attachments {
        let idx = idx as usize;
        let Some(part) = parts.get(idx) else { continue };
        if !tree.reached.get(idx).copied().unwrap_or(false) {
            continue;
        }
        if tree.depth.get(idx).copied().unwrap_or(0) > MAX_PART_DEPTH {
            too_deep = true;
            continue;
        }
        if pm.attachments.len() >= MAX_ATTACHMENTS {
            pm.problems.push("too many attachments".into());
            break;
        }
        pm.attachments.push(attachment(part, idx, &tree, parts));
    }
    if too_deep {
        pm.problems.push("MIME nesting too deep".into());
    }
    // RFC 8621 §4.1.4: hasAttachment SHOULD be true if an attachment lacks
    // Content-Disposition: inline; embedded related resources may be
    // ignored.
    pm.has_attachment = pm.attachments.iter().any(|a| !a.is_inline);

    // Preview: the first text body part with visible text.
    let body_ids = if message.text_body.is_empty() {
        &message.html_body
    } else {
        &message.text_body
    };
    let mut preview = Sink::new(MAX_PREVIEW_CHARS, usize::MAX);
    for &idx in body_ids {
        push_part(&mut preview, parts.get(idx as usize));
        if !preview.is_empty() {
            break;
        }
    }
    pm.preview = preview.finish();

    // Index text: every text body part, bounded.
    let mut body = Sink::new(usize::MAX, MAX_INDEX_TEXT);
    for &idx in body_ids {
        if body.is_full() {
            break;
        }
        push_part(&mut body, parts.get(idx as usize));
        body.separator();
    }
    pm.body_text = body.finish();
}

fn push_part(sink: &mut Sink, part: Option<&MessagePart<'_>>) {
    match part.map(|p| &p.body) {
        Some(PartType::Text(t)) => sink.push_str(t),
        Some(PartType::Html(h)) => html_into(sink, h),
        _ => {}
    }
}

fn content_disposition<'a, 'x>(part: &'a MessagePart<'x>) -> Option<&'a ContentType<'x>> {
    last(&part.headers, &HeaderName::ContentDisposition).and_then(|v| v.as_content_type())
}

/// File name of a part: RFC 2183 §2.3 `filename` takes precedence over the
/// older Content-Type `name` parameter (RFC 2046 §4.5.1 deprecates it but it
/// is common). mail-parser has already undone RFC 2231 / RFC 2047.
pub(crate) fn part_name(part: &MessagePart<'_>) -> Option<String> {
    content_disposition(part)
        .and_then(|d| d.attribute("filename"))
        .or_else(|| content_type(part).and_then(|c| c.attribute("name")))
        .map(|n| clean_field(n, MAX_NAME_BYTES).0)
        .filter(|n| !n.is_empty())
}

/// Lowercased Content-Disposition type (RFC 2183).
pub(crate) fn part_disposition(part: &MessagePart<'_>) -> Option<String> {
    content_disposition(part)
        .map(|d| token(d.ctype()))
        .filter(|d| !d.is_empty())
}

/// Content-ID without angle brackets (RFC 2392).
pub(crate) fn part_cid(part: &MessagePart<'_>) -> Option<String> {
    match last(&part.headers, &HeaderName::ContentId) {
        Some(HeaderValue::Text(t)) => clean_id(t),
        Some(HeaderValue::TextList(l)) => l.first().and_then(|t| clean_id(t)),
        _ => None,
    }
}

fn attachment(
    part: &MessagePart<'_>,
    idx: usize,
    tree: &Tree,
    parts: &[MessagePart<'_>],
) -> Attachment {
    let name = part_name(part);
    let disposition = part_disposition(part);
    let cid = part_cid(part);
    let in_related = tree
        .parent
        .get(idx)
        .and_then(|&p| parts.get(p))
        .and_then(content_type)
        .is_some_and(|c| {
            c.ctype().eq_ignore_ascii_case("multipart")
                && c.subtype()
                    .is_some_and(|s| s.eq_ignore_ascii_case("related"))
        });
    let is_inline = match disposition.as_deref() {
        Some("inline") => true,
        None => in_related && cid.is_some(),
        Some(_) => false,
    };
    Attachment {
        part_id: tree.part_id(idx),
        name,
        content_type: mime_type(part),
        size: decoded_size(part),
        disposition,
        cid,
        is_inline,
    }
}

//! Parsing of raw RFC 5322 / MIME messages (RFC 2045-2049, RFC 2047 encoded
//! words, RFC 2231 parameters) into the metadata Tidings stores.
//!
//! Every input byte is treated as hostile. The functions here never panic
//! (the [`mail_parser`] call is additionally fenced with
//! [`std::panic::catch_unwind`] and degrades to a minimal header scan),
//! never allocate much beyond the size of the input, and never fail: they
//! return whatever could be understood plus a list of
//! [`ParsedMessage::problems`].

pub mod address;
mod extract;
mod fallback;
pub mod headers;
pub mod mdn;
mod structure;
mod subject;
mod text;

pub use structure::{
    BodyLists, BodyPart, BodyValue, MAX_BODY_DEPTH, MAX_BODY_PARTS, MAX_PART_HEADERS, PartContent,
    body_lists, body_structure, body_value, body_values, body_values_owned, part_content,
};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Upper bound, in bytes, of [`ParsedMessage::body_text`].
pub const MAX_INDEX_TEXT: usize = 256 * 1024;

/// Upper bound, in characters, of [`ParsedMessage::preview`] (RFC 8621
/// §4.1.4: the preview "MUST NOT be more than 256 characters in length").
pub const MAX_PREVIEW_CHARS: usize = 256;

/// Longest message id accepted, in bytes (RFC 5322 §2.1.1 line limit:
/// an id longer than a line cannot be a real one).
pub const MAX_ID_LEN: usize = 998;

/// Most ids returned by [`thread_keys`].
pub const MAX_THREAD_KEYS: usize = 100;

/// A mailbox from an address header (RFC 5322 §3.4). Group syntax is
/// flattened into its members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    /// Display name, decoded (RFC 2047) and trimmed; `None` when absent.
    pub name: Option<String>,
    /// The addr-spec as written (case preserved, trimmed).
    pub email: String,
}

/// A part that JMAP (RFC 8621 §4.1.4) lists in `attachments`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// JMAP partId, using IMAP section numbering (RFC 3501 §6.4.5): "1" for
    /// a single-part message, "2" or "1.2" inside multiparts. Stable for the
    /// same input bytes.
    pub part_id: String,
    /// File name from Content-Disposition `filename` or Content-Type `name`
    /// (RFC 2231 / RFC 2047 decoded).
    pub name: Option<String>,
    /// Lowercased `type/subtype`; defaults per RFC 2045 §5.2.
    pub content_type: String,
    /// Size in bytes after transfer decoding (text parts: after charset
    /// conversion to UTF-8).
    pub size: u64,
    /// Lowercased Content-Disposition type (RFC 2183), e.g. "attachment".
    pub disposition: Option<String>,
    /// Content-ID without angle brackets (RFC 2392).
    pub cid: Option<String>,
    /// True when the part is shown inside the body rather than offered for
    /// download: `Content-Disposition: inline`, or an undisposed part with
    /// a Content-ID inside multipart/related (RFC 2387 embedded resource).
    pub is_inline: bool,
}

/// The metadata extracted from one message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParsedMessage {
    /// Message-ID without `<>`.
    pub message_id: Option<String>,
    /// In-Reply-To ids without `<>`.
    pub in_reply_to: Vec<String>,
    /// References ids without `<>`, oldest first as written.
    pub references: Vec<String>,
    /// Subject, RFC 2047 decoded, trimmed, control characters removed.
    pub subject: Option<String>,
    /// From addresses.
    pub from: Vec<Address>,
    /// Sender addresses.
    pub sender: Vec<Address>,
    /// Reply-To addresses.
    pub reply_to: Vec<Address>,
    /// To addresses.
    pub to: Vec<Address>,
    /// Cc addresses.
    pub cc: Vec<Address>,
    /// Bcc addresses.
    pub bcc: Vec<Address>,
    /// Date header as unix seconds (UTC); `None` if missing or unparseable.
    pub sent_at: Option<i64>,
    /// The offset from UTC the Date header was written in, minutes east (RFC 5322 3.3
    /// `zone`): JMAP `sentAt` is a Date, which keeps it (RFC 8621 4.1.2.6). 0 without one.
    #[serde(default)]
    pub sent_offset: i16,
    /// JMAP preview: up to 256 characters of the first text body part (HTML
    /// converted to text), whitespace collapsed. Empty for header-only
    /// parses.
    pub preview: String,
    /// JMAP `hasAttachment`: some attachment is not an inline part.
    pub has_attachment: bool,
    /// JMAP `attachments`, in document order.
    pub attachments: Vec<Attachment>,
    /// Text for the full-text index: the JMAP text body (text/plain parts,
    /// else HTML converted to text), at most [`MAX_INDEX_TEXT`] bytes.
    pub body_text: String,
    /// Short descriptions of what was wrong with the input. Never contains
    /// message content.
    pub problems: Vec<String>,
}

/// Parses a full raw message. Never panics, never fails.
pub fn parse(raw: &[u8]) -> ParsedMessage {
    extract::parse_guarded(raw, false, extract::extract)
}

/// Parses only a header block, as returned by IMAP `BODY.PEEK[HEADER]`.
/// Header fields are filled; `preview`, `body_text` and `attachments` stay
/// empty.
pub fn parse_header(raw_header: &[u8]) -> ParsedMessage {
    extract::parse_guarded(raw_header, true, extract::extract)
}

/// RFC 5256 §2.1 base subject, for subject-based thread fallback: strips
/// (repeatedly, case-insensitively) `Re:`, `Fwd:`, `Fw:`, `AW:`, `SV:`,
/// `WG:` leaders together with `[list]` tags, `(fwd)` trailers and
/// `[Fwd: ...]` wrappers, collapses whitespace and lowercases.
pub fn base_subject(subject: &str) -> String {
    subject::base_subject(subject)
}

/// Content address of a message: lowercase hex SHA-256 of the raw bytes.
pub fn blob_id(raw: &[u8]) -> String {
    hex::encode(Sha256::digest(raw))
}

/// Converts HTML to plain text of at most `max_chars` characters: tags are
/// stripped, `<script>`/`<style>`/`<title>` content dropped, common
/// character references decoded and whitespace collapsed.
pub fn html_to_text(html: &str, max_chars: usize) -> String {
    let mut sink = text::Sink::new(max_chars, usize::MAX);
    text::html_into(&mut sink, html);
    sink.finish()
}

/// The message ids through which a message joins a thread (JWZ threading):
/// its own Message-ID first, then References, then In-Reply-To;
/// deduplicated, each at most [`MAX_ID_LEN`] bytes, at most
/// [`MAX_THREAD_KEYS`] in total.
///
/// When References is very long, its first id (the thread root) and its
/// last ids (the nearest ancestors) are kept and the middle is dropped:
/// those are the ids JWZ needs to attach the message to the right tree.
pub fn thread_keys(m: &ParsedMessage) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    let push = |id: &str, keys: &mut Vec<String>| {
        if keys.len() < MAX_THREAD_KEYS
            && !id.is_empty()
            && id.len() <= MAX_ID_LEN
            && !keys.iter().any(|k| k == id)
        {
            keys.push(id.to_string());
        }
    };
    if let Some(id) = &m.message_id {
        push(id, &mut keys);
    }
    // Reserve room for the In-Reply-To ids so a huge References header
    // cannot crowd out the direct parent.
    let reserve = m
        .in_reply_to
        .iter()
        .filter(|id| !m.references.contains(id))
        .count()
        .min(4);
    let budget = MAX_THREAD_KEYS.saturating_sub(keys.len() + reserve);
    let refs = &m.references;
    if refs.len() > budget && budget >= 2 {
        if let Some(first) = refs.first() {
            push(first, &mut keys);
        }
        let tail_start = refs.len() - (budget - 1);
        for id in refs.get(tail_start..).unwrap_or_default() {
            push(id, &mut keys);
        }
    } else {
        for id in refs.iter().take(budget) {
            push(id, &mut keys);
        }
    }
    for id in &m.in_reply_to {
        push(id, &mut keys);
    }
    keys
}

#[cfg(test)]
mod tests;

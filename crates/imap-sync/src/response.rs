//! Owned, simplified views of server responses, built from `imap-proto`'s parse of one
//! complete frame. Message bodies stay zero-copy slices of the frame (`Bytes`).
//!
//! A frame that `imap-proto` cannot parse is not fatal: tagged completions are recovered by
//! a plain text scan, and anything else becomes `Response::Unparsed` for the caller to log
//! and skip (a lying server must not stop the sync).

use bytes::Bytes;
use imap_proto::{
    AttributeValue, Capability, MailboxDatum, MessageSection, NameAttribute, ResponseCode,
    SectionPath, StatusAttribute,
};
use std::borrow::Cow;
use std::ops::RangeInclusive;

/// Completion status of a tagged response or an untagged condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
    PreAuth,
    Bye,
}

/// Response codes we act on (RFC 3501 7.1, RFC 7162, RFC 4315).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    UidValidity(u32),
    UidNext(u32),
    HighestModSeq(u64),
    NoModSeq,
    Capabilities(Vec<String>),
    AppendUid(u32, u32),
    /// RFC 4315 COPYUID: UIDVALIDITY of the destination, source and destination UIDs in
    /// matching order.
    CopyUid(u32, Vec<u32>, Vec<u32>),
    Closed,
    Other,
}

#[derive(Debug, Clone, Default)]
pub struct Fetch {
    pub seq: u32,
    pub uid: Option<u32>,
    pub flags: Option<Vec<String>>,
    pub modseq: Option<u64>,
    /// INTERNALDATE as unix seconds.
    pub internal_date: Option<i64>,
    pub size: Option<u32>,
    /// BODY[HEADER] (or RFC822.HEADER).
    pub header: Option<Bytes>,
    /// BODY[] (or RFC822).
    pub body: Option<Bytes>,
    /// RFC 8474 EMAILID / THREADID.
    pub email_id: Option<String>,
    pub thread_id: Option<String>,
    /// Gmail's X-GM-MSGID and X-GM-THRID (X-GM-EXT-1).
    pub gm_msgid: Option<u64>,
    pub gm_thrid: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct ListEntry {
    /// The name as the server sent it (modified UTF-7), for use in commands.
    pub raw_name: String,
    pub delimiter: Option<String>,
    /// Attributes with their backslash, as sent (`\Noselect`, `\Sent`, `\Subscribed`...).
    pub attributes: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct StatusData {
    pub raw_name: String,
    pub messages: Option<u32>,
    pub uidnext: Option<u32>,
    pub uidvalidity: Option<u32>,
    pub unseen: Option<u32>,
    pub highestmodseq: Option<u64>,
}

#[derive(Debug, Clone)]
pub enum Response {
    Tagged {
        tag: String,
        status: Status,
        code: Option<Code>,
        text: String,
    },
    Continue,
    Condition {
        status: Status,
        code: Option<Code>,
        text: String,
    },
    Capabilities(Vec<String>),
    Exists(u32),
    Expunge(u32),
    Vanished {
        earlier: bool,
        uids: Vec<RangeInclusive<u32>>,
    },
    Fetch(Box<Fetch>),
    List(ListEntry),
    Status(StatusData),
    Search(Vec<u32>),
    /// RFC 4731 `* ESEARCH (TAG "x") UID ALL 1:5,7` as the UID ranges of ALL.
    ESearch {
        tag: Option<String>,
        all: Vec<RangeInclusive<u32>>,
    },
    /// RFC 9208 5.2 QUOTAROOT and 5.1 QUOTA (see `crate::quota`).
    QuotaRoot(crate::quota::QuotaRoot),
    Quota(crate::quota::Quota),
    Other,
    /// A LIST or LSUB that `imap-proto` could not parse, e.g. one carrying RFC 5465's
    /// `("OLDNAME" (...))` after a rename: the mailbox list changed, details unknown.
    UnparsedList,
    /// Could not be parsed; an escaped [`excerpt`] is kept for the log (never a message body).
    Unparsed(String),
}

fn status_of(s: imap_proto::Status) -> Status {
    match s {
        imap_proto::Status::Ok => Status::Ok,
        imap_proto::Status::No => Status::No,
        imap_proto::Status::Bad => Status::Bad,
        imap_proto::Status::PreAuth => Status::PreAuth,
        imap_proto::Status::Bye => Status::Bye,
    }
}

fn code_of(c: Option<ResponseCode<'_>>) -> Option<Code> {
    Some(match c? {
        ResponseCode::UidValidity(v) => Code::UidValidity(v),
        ResponseCode::UidNext(v) => Code::UidNext(v),
        ResponseCode::HighestModSeq(v) => Code::HighestModSeq(v),
        ResponseCode::Capabilities(c) => Code::Capabilities(caps(c)),
        ResponseCode::AppendUid(v, uids) => match uids.first() {
            Some(imap_proto::rfc4315::UidSetMember::Uid(u)) => Code::AppendUid(v, *u),
            _ => Code::Other,
        },
        ResponseCode::CopyUid(v, src, dst) => {
            Code::CopyUid(v, uid_members(&src), uid_members(&dst))
        }
        _ => Code::Other,
    })
}

/// A UID set as its UIDs, bounded (a lying server's `1:4294967295` must not exhaust memory).
fn uid_members(set: &[imap_proto::rfc4315::UidSetMember]) -> Vec<u32> {
    const MAX: usize = 1_000_000;
    let mut out = Vec::new();
    for m in set {
        match m {
            imap_proto::rfc4315::UidSetMember::Uid(u) => out.push(*u),
            imap_proto::rfc4315::UidSetMember::UidRange(r) => {
                let room = MAX.saturating_sub(out.len());
                out.extend(r.clone().take(room));
            }
        }
        if out.len() >= MAX {
            break;
        }
    }
    out
}

fn caps(c: Vec<Capability<'_>>) -> Vec<String> {
    c.into_iter()
        .map(|c| match c {
            Capability::Imap4rev1 => "IMAP4REV1".to_string(),
            Capability::Auth(a) => format!("AUTH={}", a.to_ascii_uppercase()),
            Capability::Atom(a) => a.to_ascii_uppercase(),
        })
        .collect()
}

/// The zero-copy slice of `frame` that `data` borrows, or a copy if it is not borrowed.
fn slice_of(frame: &Bytes, data: Cow<'_, [u8]>) -> Bytes {
    match data {
        Cow::Borrowed(s) => {
            let base = frame.as_ptr() as usize;
            let start = (s.as_ptr() as usize).wrapping_sub(base);
            if start <= frame.len() && start + s.len() <= frame.len() {
                frame.slice(start..start + s.len())
            } else {
                Bytes::copy_from_slice(s)
            }
        }
        Cow::Owned(v) => Bytes::from(v),
    }
}

/// Parses one complete frame.
pub fn parse(frame: &Bytes) -> Response {
    if let Some(r) = parse_esearch(frame) {
        return r;
    }
    if let Some(r) = crate::quota::parse_frame(frame) {
        return r;
    }
    // imap-proto can panic on hostile input (0.17: a response code followed directly by a
    // multibyte character slices a str off its char boundary, found by tests/fuzz.rs). A
    // panic here would end the account's task, so it is caught and treated as garbage.
    let bytes: &[u8] = frame;
    let parsed = std::panic::catch_unwind(|| imap_proto::Response::parse(bytes));
    let resp = match parsed {
        Ok(Ok((_, r))) => r,
        Ok(Err(_)) => return recover(frame),
        Err(_) => {
            tracing::warn!(
                len = frame.len(),
                "the IMAP parser panicked on a response; skipped"
            );
            return recover(frame);
        }
    };
    match resp {
        imap_proto::Response::Done {
            tag,
            status,
            outcome,
        } => Response::Tagged {
            tag: tag.0,
            status: status_of(status),
            code: code_of(outcome.code),
            text: outcome
                .information
                .map(|s| s.into_owned())
                .unwrap_or_default(),
        },
        imap_proto::Response::Continue(_) => Response::Continue,
        imap_proto::Response::Data { status, outcome } => {
            let text = outcome
                .information
                .map(|s| s.into_owned())
                .unwrap_or_default();
            let code = code_of(outcome.code).or_else(|| {
                // Codes imap-proto does not know but we must act on.
                if text.starts_with("[NOMODSEQ]") {
                    Some(Code::NoModSeq)
                } else if text.starts_with("[CLOSED]") {
                    Some(Code::Closed)
                } else {
                    None
                }
            });
            Response::Condition {
                status: status_of(status),
                code,
                text,
            }
        }
        imap_proto::Response::Capabilities(c) => Response::Capabilities(caps(c)),
        imap_proto::Response::Expunge(n) => Response::Expunge(n),
        imap_proto::Response::Vanished { earlier, uids } => Response::Vanished { earlier, uids },
        imap_proto::Response::Fetch(seq, attrs) => {
            let mut f = Fetch {
                seq,
                ..Fetch::default()
            };
            for a in attrs {
                match a {
                    AttributeValue::Uid(u) => f.uid = Some(u),
                    AttributeValue::Flags(fl) => {
                        f.flags = Some(fl.into_iter().map(|s| s.into_owned()).collect())
                    }
                    AttributeValue::ModSeq(m) => f.modseq = Some(m),
                    AttributeValue::InternalDate(d) => f.internal_date = parse_internal_date(&d),
                    AttributeValue::Rfc822Size(s) => f.size = Some(s),
                    AttributeValue::Rfc822Header(Some(d)) => f.header = Some(slice_of(frame, d)),
                    AttributeValue::Rfc822(Some(d)) => f.body = Some(slice_of(frame, d)),
                    AttributeValue::BodySection {
                        section,
                        data: Some(d),
                        ..
                    } => match section {
                        None => f.body = Some(slice_of(frame, d)),
                        Some(SectionPath::Full(MessageSection::Header)) => {
                            f.header = Some(slice_of(frame, d))
                        }
                        Some(_) => {}
                    },
                    AttributeValue::EmailId(e) => f.email_id = Some(e.into_owned()),
                    AttributeValue::ThreadId(t) => f.thread_id = t.map(|t| t.into_owned()),
                    AttributeValue::GmailMsgId(m) => f.gm_msgid = Some(m),
                    AttributeValue::GmailThrId(t) => f.gm_thrid = Some(t),
                    _ => {}
                }
            }
            Response::Fetch(Box::new(f))
        }
        imap_proto::Response::MailboxData(d) => match d {
            MailboxDatum::Exists(n) => Response::Exists(n),
            MailboxDatum::List(l) => Response::List(ListEntry {
                raw_name: l.name.into_owned(),
                delimiter: l.delimiter.map(|d| d.into_owned()),
                attributes: l.name_attributes.into_iter().map(attr_name).collect(),
            }),
            MailboxDatum::Status { mailbox, status } => {
                let mut s = StatusData {
                    raw_name: mailbox.into_owned(),
                    ..StatusData::default()
                };
                for a in status {
                    match a {
                        StatusAttribute::Messages(n) => s.messages = Some(n),
                        StatusAttribute::UidNext(n) => s.uidnext = Some(n),
                        StatusAttribute::UidValidity(n) => s.uidvalidity = Some(n),
                        StatusAttribute::Unseen(n) => s.unseen = Some(n),
                        StatusAttribute::HighestModSeq(n) => s.highestmodseq = Some(n),
                        _ => {}
                    }
                }
                Response::Status(s)
            }
            MailboxDatum::Search(v) => Response::Search(v),
            _ => Response::Other,
        },
        _ => Response::Other,
    }
}

fn attr_name(a: NameAttribute<'_>) -> String {
    match a {
        NameAttribute::NoInferiors => "\\Noinferiors".into(),
        NameAttribute::NoSelect => "\\Noselect".into(),
        NameAttribute::Marked => "\\Marked".into(),
        NameAttribute::Unmarked => "\\Unmarked".into(),
        NameAttribute::All => "\\All".into(),
        NameAttribute::Archive => "\\Archive".into(),
        NameAttribute::Drafts => "\\Drafts".into(),
        NameAttribute::Flagged => "\\Flagged".into(),
        NameAttribute::Junk => "\\Junk".into(),
        NameAttribute::Sent => "\\Sent".into(),
        NameAttribute::Trash => "\\Trash".into(),
        NameAttribute::Extension(s) => s.into_owned(),
        _ => String::new(),
    }
}

/// Best effort for a frame imap-proto refused: a tagged completion must still complete its
/// command, or we would wait forever.
/// Most characters of a server's human-readable text shown (RFC 3501 resp-text): it ends
/// up in errors, logs and the account status, and a lying server may send megabytes of it.
const MAX_SERVER_WORDS: usize = 200;

/// A server's resp-text as shown in errors and logs: at most `MAX_SERVER_WORDS`
/// characters, control characters (which could forge log lines or terminal escapes)
/// replaced by U+FFFD. Never applied to what is parsed: a completion's text carries
/// response codes (`[MODIFIED 1,3,...]`) that can be long.
pub fn server_words(text: &str) -> String {
    text.chars()
        .take(MAX_SERVER_WORDS)
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}

/// What of a response nobody could parse may be logged: its first few characters, up to the
/// first literal or line end (after which a FETCH carries message content), escaped.
pub fn excerpt(line: &str) -> String {
    const MAX: usize = 40;
    let end = line.find(['{', '\r', '\n']).unwrap_or(line.len());
    let head: String = line[..end].chars().take(MAX).collect();
    head.escape_debug().to_string()
}

fn recover(frame: &Bytes) -> Response {
    let line_end = frame
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(frame.len());
    let line = String::from_utf8_lossy(&frame[..line_end.min(200)]).into_owned();
    let mut words = line.splitn(3, ' ');
    let first = words.next().unwrap_or("");
    let second = words.next().unwrap_or("").to_ascii_uppercase();
    let rest = words.next().unwrap_or("").to_string();
    let status = match second.as_str() {
        "OK" => Some(Status::Ok),
        "NO" => Some(Status::No),
        "BAD" => Some(Status::Bad),
        "BYE" => Some(Status::Bye),
        _ => None,
    };
    if first == "*" && (second == "LIST" || second == "LSUB") {
        return Response::UnparsedList;
    }
    match (first, status) {
        ("*", Some(status)) => Response::Condition {
            status,
            code: None,
            text: rest,
        },
        ("+", _) => Response::Continue,
        (tag, Some(status)) if !tag.is_empty() => Response::Tagged {
            tag: tag.to_string(),
            status,
            code: None,
            text: rest,
        },
        _ => Response::Unparsed(excerpt(&line)),
    }
}

/// RFC 4731 ESEARCH, which imap-proto does not parse: `* ESEARCH (TAG "T5") UID ALL 1:3,7`.
fn parse_esearch(frame: &[u8]) -> Option<Response> {
    let line = frame.strip_prefix(b"* ")?;
    if line.len() < 7 || !line[..7].eq_ignore_ascii_case(b"ESEARCH") {
        return None;
    }
    let line = std::str::from_utf8(line).ok()?.trim_end();
    let mut rest = line[7..].trim_start();
    let mut tag = None;
    if let Some(r) = rest.strip_prefix("(") {
        let close = r.find(')')?;
        let inner = &r[..close];
        // (TAG "T5")
        tag = inner
            .split_once(' ')
            .map(|(_, t)| t.trim_matches('"').to_string());
        rest = r[close + 1..].trim_start();
    }
    let mut all = Vec::new();
    let mut tokens = rest.split_ascii_whitespace();
    while let Some(t) = tokens.next() {
        if t.eq_ignore_ascii_case("ALL") {
            all = parse_sequence_set(tokens.next()?)?;
        }
    }
    Some(Response::ESearch { tag, all })
}

/// Parses `1:3,7,9:12` into ranges (no `*`).
pub fn parse_sequence_set(s: &str) -> Option<Vec<RangeInclusive<u32>>> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let (a, b) = match part.split_once(':') {
            Some((a, b)) => (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?),
            None => {
                let n = part.parse::<u32>().ok()?;
                (n, n)
            }
        };
        out.push(a.min(b)..=a.max(b));
    }
    Some(out)
}

/// RFC 3501 date-time: `"17-Jul-1996 02:44:25 -0700"` to unix seconds.
pub fn parse_internal_date(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, rest) = s.split_once(' ')?;
    let (time, zone) = rest.trim().split_once(' ')?;
    let mut d = date.trim().split('-');
    let day: i64 = d.next()?.trim().parse().ok()?;
    let month = match d.next()?.to_ascii_lowercase().as_str() {
        "jan" => 1,
        "feb" => 2,
        "mar" => 3,
        "apr" => 4,
        "may" => 5,
        "jun" => 6,
        "jul" => 7,
        "aug" => 8,
        "sep" => 9,
        "oct" => 10,
        "nov" => 11,
        "dec" => 12,
        _ => return None,
    };
    let year: i64 = d.next()?.parse().ok()?;
    let mut t = time.split(':');
    let h: i64 = t.next()?.parse().ok()?;
    let m: i64 = t.next()?.parse().ok()?;
    let sec: i64 = t.next()?.parse().ok()?;
    if !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let zone = zone.as_bytes();
    if zone.len() != 5 {
        return None;
    }
    let sign = match zone[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let zh: i64 = std::str::from_utf8(&zone[1..3]).ok()?.parse().ok()?;
    let zm: i64 = std::str::from_utf8(&zone[3..5]).ok()?.parse().ok()?;
    let days = days_from_civil(year, month, day);
    Some(days * 86400 + h * 3600 + m * 60 + sec - sign * (zh * 3600 + zm * 60))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// Formats unix seconds as an RFC 3501 date-time in UTC (for APPEND and SEARCH).
pub fn format_internal_date(ts: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = ts.div_euclid(86400);
    let secs = ts.rem_euclid(86400);
    // Inverse of days_from_civil.
    let z = days + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{:02}-{}-{} {:02}:{:02}:{:02} +0000",
        d,
        MONTHS[(m - 1) as usize],
        y,
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_dates() {
        assert_eq!(
            parse_internal_date("17-Jul-1996 02:44:25 -0700"),
            Some(837596665)
        );
        assert_eq!(parse_internal_date(" 1-Jan-1970 00:00:00 +0000"), Some(0));
        assert_eq!(parse_internal_date("garbage"), None);
        for ts in [0, 837596665, 1_700_000_000, 4_000_000_000, -1, -27_691_080] {
            assert_eq!(parse_internal_date(&format_internal_date(ts)), Some(ts));
        }
    }

    #[test]
    fn fetch_is_zero_copy_and_complete() {
        let frame = Bytes::from_static(
            b"* 3 FETCH (UID 42 FLAGS (\\Seen $Work) MODSEQ (77) RFC822.SIZE 5 INTERNALDATE \"01-Jan-2020 00:00:00 +0000\" BODY[] {5}\r\nhello)\r\n",
        );
        let Response::Fetch(f) = parse(&frame) else {
            panic!("not a fetch")
        };
        assert_eq!(f.uid, Some(42));
        assert_eq!(f.modseq, Some(77));
        assert_eq!(
            f.flags.as_deref(),
            Some(&["\\Seen".to_string(), "$Work".into()][..])
        );
        assert_eq!(f.body.as_deref(), Some(&b"hello"[..]));
        assert_eq!(f.internal_date, Some(1577836800));
    }

    #[test]
    fn garbage_tagged_line_still_completes() {
        let frame = Bytes::from_static(b"T7 OK [WEIRD-CODE \x01\x02] done\r\n");
        match parse(&frame) {
            Response::Tagged { tag, status, .. } => {
                assert_eq!(tag, "T7");
                assert_eq!(status, Status::Ok);
            }
            other => panic!("{other:?}"),
        }
        let junk = Bytes::from_static(b"\x00\xff garbage\r\n");
        assert!(matches!(parse(&junk), Response::Unparsed(_)));
    }

    #[test]
    fn parser_panic_is_contained() {
        // imap-proto 0.17 panics on a response code followed by a multibyte character.
        let frame = Bytes::from_static(b"T9 OK [UIDNEXT 5]\xe2\x82\xacDone\r\n");
        match parse(&frame) {
            Response::Tagged { tag, status, .. } => {
                assert_eq!(tag, "T9");
                assert_eq!(status, Status::Ok);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn esearch_and_vanished() {
        let f = Bytes::from_static(b"* ESEARCH (TAG \"T3\") UID ALL 1:3,7\r\n");
        match parse(&f) {
            Response::ESearch { tag, all } => {
                assert_eq!(tag.as_deref(), Some("T3"));
                assert_eq!(all, vec![1..=3, 7..=7]);
            }
            other => panic!("{other:?}"),
        }
        let v = Bytes::from_static(b"* VANISHED (EARLIER) 41,43:45\r\n");
        assert!(matches!(
            parse(&v),
            Response::Vanished { earlier: true, .. }
        ));
    }
}

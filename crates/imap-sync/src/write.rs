//! IMAP write commands for the outbox: SELECT (read-write), UID STORE with UNCHANGEDSINCE
//! (RFC 7162), UID MOVE (RFC 6851) or COPY + STORE \Deleted + UID EXPUNGE (RFC 4315),
//! APPEND with APPENDUID, CREATE, RENAME, DELETE, SUBSCRIBE/UNSUBSCRIBE. Responses go
//! through `response.rs` like every other command's.

use crate::conn::quote;
use crate::error::{Error, Result};
use crate::response::{Code, Response, Status};
use crate::session::{Selected, Session, mailbox_arg};
use crate::sync::uid_set;
use std::ops::RangeInclusive;

/// UIDs per command: keeps a line of scattered UIDs well below servers' line limits
/// (Dovecot: 64 kB).
pub const UIDS_PER_COMMAND: usize = 2000;

/// What a UID STORE did.
#[derive(Debug, Default, Clone)]
pub struct StoreOutcome {
    /// RFC 7162 3.1.3: UIDs not changed because they were modified since UNCHANGEDSINCE.
    pub modified: Vec<u32>,
    /// The highest MODSEQ the server reported for what it changed (RFC 7162 3.1.3: it
    /// sends one FETCH per changed message even for .SILENT), when it reported any.
    pub highest_modseq: Option<u64>,
}

/// A message's flags as the server holds them, from a `UID FETCH (UID FLAGS [MODSEQ])`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFlags {
    pub uid: u32,
    pub flags: Vec<String>,
    /// None without CONDSTORE.
    pub modseq: Option<u64>,
}

/// Whether a NO is worth retrying (RFC 5530 codes for passing trouble).
pub fn refusal_is_transient(text: &str) -> bool {
    let t = text.to_ascii_uppercase();
    [
        "[UNAVAILABLE]",
        "[INUSE]",
        "[SERVERBUG]",
        "[LIMIT]",
        "[EXPUNGEISSUED]",
    ]
    .iter()
    .any(|c| t.contains(c))
}

/// Parses `[MODIFIED 7,9:12]` out of a completion text.
fn modified_of(text: &str) -> Vec<u32> {
    let upper = text.to_ascii_uppercase();
    let Some(start) = upper.find("[MODIFIED ") else {
        return Vec::new();
    };
    let rest = &text[start + 10..];
    let set = rest.split(']').next().unwrap_or("");
    parse_set(set, 1_000_000)
}

fn parse_set(set: &str, max: usize) -> Vec<u32> {
    let mut out = Vec::new();
    for part in set.split(',') {
        let r: Option<RangeInclusive<u32>> = match part.split_once(':') {
            Some((a, b)) => match (a.trim().parse::<u32>(), b.trim().parse::<u32>()) {
                (Ok(a), Ok(b)) => Some(a.min(b)..=a.max(b)),
                _ => None,
            },
            None => part.trim().parse::<u32>().ok().map(|u| u..=u),
        };
        if let Some(r) = r {
            let room = max.saturating_sub(out.len());
            out.extend(r.take(room));
        }
    }
    out
}

/// RFC 3501 date-time for APPEND: `"02-Dec-2026 00:06:35 +0000"`.
pub fn imap_date(ts: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // Not before 1970: servers keep the internal date as an unsigned 32-bit time (Dovecot
    // turns 14-Feb-1969 into 23-Mar-2105), so the epoch is the nearest date they can hold.
    let ts = ts.max(0);
    let days = ts.div_euclid(86_400);
    let secs = ts.rem_euclid(86_400);
    // Civil from days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "\"{:02}-{}-{:04} {:02}:{:02}:{:02} +0000\"",
        d,
        MONTHS[(m - 1).clamp(0, 11) as usize],
        y,
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// A flag as a command argument: system flags and keywords are atoms; anything else is
/// refused (it would break the command line).
fn flag_arg(f: &str) -> Result<&str> {
    let ok = !f.is_empty()
        && f.len() <= 255
        && f.char_indices()
            .all(|(i, c)| c.is_ascii_graphic() && !"(){%*\"]".contains(c) && (c != '\\' || i == 0));
    if ok {
        Ok(f)
    } else {
        Err(Error::Protocol(format!("flag {f:?} is not an IMAP atom")))
    }
}

fn flag_list(flags: &[String]) -> Result<String> {
    let v = flags
        .iter()
        .map(|f| flag_arg(f))
        .collect::<Result<Vec<_>>>()?;
    Ok(format!("({})", v.join(" ")))
}

fn copyuid(untagged: &[Response], code: &Option<Code>) -> Vec<(u32, u32)> {
    let from_code = |c: &Code| match c {
        Code::CopyUid(_, src, dst) if src.len() == dst.len() => {
            Some(src.iter().copied().zip(dst.iter().copied()).collect())
        }
        _ => None,
    };
    if let Some(v) = code.as_ref().and_then(from_code) {
        return v;
    }
    for r in untagged {
        if let Response::Condition {
            code: Some(c),
            status: Status::Ok,
            ..
        } = r
            && let Some(v) = from_code(c)
        {
            return v;
        }
    }
    Vec::new()
}

impl Session {
    /// SELECT (read-write, with CONDSTORE when offered) for the write commands.
    pub async fn select(&mut self, raw_name: &str) -> Result<Selected> {
        let mut cmd = format!("SELECT {}", mailbox_arg(raw_name)?);
        if self.condstore() {
            cmd.push_str(" (CONDSTORE)");
        }
        self.selected_uidnext = None;
        let (untagged, _) = self.run(&cmd).await?;
        let mut sel = Selected::default();
        for r in untagged {
            match r {
                Response::Exists(n) => sel.exists = n,
                Response::Condition { code: Some(c), .. } => match c {
                    Code::UidValidity(v) => sel.uidvalidity = v,
                    Code::UidNext(n) => sel.uidnext = Some(n),
                    Code::HighestModSeq(m) => sel.highestmodseq = Some(m),
                    Code::NoModSeq => sel.highestmodseq = None,
                    _ => {}
                },
                _ => {}
            }
        }
        self.selected_uidnext = sel.uidnext;
        Ok(sel)
    }

    /// `UID STORE set [(UNCHANGEDSINCE m)] ±FLAGS.SILENT (flags)` on the selected mailbox,
    /// in commands of at most [`UIDS_PER_COMMAND`] UIDs.
    pub async fn uid_store(
        &mut self,
        uids: &[u32],
        add: bool,
        flags: &[String],
        unchanged_since: Option<u64>,
    ) -> Result<StoreOutcome> {
        let mut out = StoreOutcome::default();
        if uids.is_empty() || flags.is_empty() {
            return Ok(out);
        }
        let list = flag_list(flags)?;
        let sign = if add { '+' } else { '-' };
        let cond = match unchanged_since {
            Some(m) if self.condstore() && m > 0 => format!(" (UNCHANGEDSINCE {m})"),
            _ => String::new(),
        };
        let mut sorted = uids.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        for chunk in sorted.chunks(UIDS_PER_COMMAND) {
            let cmd = format!(
                "UID STORE {}{cond} {sign}FLAGS.SILENT {list}",
                uid_set(chunk)
            );
            tracing::debug!(uids = chunk.len(), "UID STORE");
            let tag = self.send(&cmd).await?;
            let (untagged, text) = self.finish_with_text(&tag, "UID STORE").await?;
            out.modified.extend(modified_of(&text));
            let reported = untagged.iter().filter_map(|r| match r {
                Response::Fetch(f) => f.modseq,
                _ => None,
            });
            out.highest_modseq = out.highest_modseq.into_iter().chain(reported).max();
            self.unsolicited.extend(untagged);
        }
        Ok(out)
    }

    /// Gmail: `UID STORE uid +X-GM-LABELS (..)` then `-X-GM-LABELS (..)` on the selected
    /// mailbox (All Mail), the labels as Gmail names them (`\\Inbox`, `\\Important`, or a
    /// user label's folder name). Both are idempotent: a replay adds nothing twice. Gmail
    /// then shows the message in the label folders added and takes it out of the others
    /// (developers.google.com/gmail/imap/imap-extensions, "Access to Gmail labels").
    pub async fn uid_store_labels(
        &mut self,
        uid: u32,
        add: &[String],
        remove: &[String],
    ) -> Result<()> {
        for (sign, labels) in [('+', add), ('-', remove)] {
            if labels.is_empty() {
                continue;
            }
            let cmd = format!("UID STORE {uid} {sign}X-GM-LABELS {}", label_list(labels)?);
            let tag = self.send(&cmd).await?;
            let (untagged, _) = self.finish_with_text(&tag, "UID STORE X-GM-LABELS").await?;
            self.unsolicited.extend(untagged);
        }
        Ok(())
    }

    /// Like `finish`, also returning the completion's text (for codes imap-proto lacks,
    /// such as MODIFIED).
    async fn finish_with_text(&mut self, tag: &str, name: &str) -> Result<(Vec<Response>, String)> {
        let mut untagged = Vec::new();
        loop {
            match self.read().await? {
                Response::Tagged {
                    tag: t,
                    status,
                    text,
                    ..
                } if t == tag => {
                    return match status {
                        Status::Ok => Ok((untagged, text)),
                        _ => Err(Error::Refused {
                            command: name.to_string(),
                            text,
                        }),
                    };
                }
                Response::Tagged { tag: t, .. } => {
                    return Err(Error::Protocol(format!(
                        "completion for unknown tag {t} while waiting for {tag}"
                    )));
                }
                other => untagged.push(other),
            }
        }
    }

    /// UID MOVE to `dest` (RFC 6851), else COPY + STORE \Deleted + UID EXPUNGE. Returns the
    /// (source, destination) UID pairs the server reported (COPYUID), empty when it did not
    /// say or when none of the UIDs exists any more.
    pub async fn uid_move(&mut self, uids: &[u32], dest: &str) -> Result<Vec<(u32, u32)>> {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let dest = mailbox_arg(dest)?;
        if self.has("MOVE") {
            let mut pairs = Vec::new();
            for chunk in uids.chunks(UIDS_PER_COMMAND) {
                let (untagged, code) = self
                    .run(&format!("UID MOVE {} {dest}", uid_set(chunk)))
                    .await?;
                pairs.extend(copyuid(&untagged, &code));
            }
            return Ok(pairs);
        }
        let mut pairs = Vec::new();
        for chunk in uids.chunks(UIDS_PER_COMMAND) {
            let (untagged, code) = self
                .run(&format!("UID COPY {} {dest}", uid_set(chunk)))
                .await?;
            pairs.extend(copyuid(&untagged, &code));
        }
        self.uid_expunge(uids).await?;
        Ok(pairs)
    }

    /// UID COPY to `dest`; the (source, destination) UID pairs from COPYUID.
    pub async fn uid_copy(&mut self, uids: &[u32], dest: &str) -> Result<Vec<(u32, u32)>> {
        let dest = mailbox_arg(dest)?;
        let mut pairs = Vec::new();
        for chunk in uids.chunks(UIDS_PER_COMMAND) {
            let (untagged, code) = self
                .run(&format!("UID COPY {} {dest}", uid_set(chunk)))
                .await?;
            pairs.extend(copyuid(&untagged, &code));
        }
        Ok(pairs)
    }

    /// Removes exactly these UIDs from the selected mailbox: STORE \Deleted, then UID
    /// EXPUNGE (RFC 4315). Without UIDPLUS a plain EXPUNGE would also remove messages other
    /// clients marked \Deleted, so the messages are left marked and the server's own expunge
    /// (or the next client's) removes them.
    pub async fn uid_expunge(&mut self, uids: &[u32]) -> Result<()> {
        if uids.is_empty() {
            return Ok(());
        }
        self.uid_store(uids, true, &["\\Deleted".to_string()], None)
            .await?;
        if self.has("UIDPLUS") {
            for chunk in uids.chunks(UIDS_PER_COMMAND) {
                let (untagged, _) = self.run(&format!("UID EXPUNGE {}", uid_set(chunk))).await?;
                self.unsolicited.extend(untagged);
            }
        }
        Ok(())
    }

    /// APPEND a message; returns the (UIDVALIDITY, UID) of APPENDUID when the server has
    /// UIDPLUS.
    pub async fn append(
        &mut self,
        raw_name: &str,
        flags: &[String],
        internal_date: Option<i64>,
        message: &[u8],
    ) -> Result<Option<(u32, u32)>> {
        self.append_if(raw_name, flags, internal_date, message, None)
            .await
    }

    /// [`Session::append`] whose message leaves only if `proceed` still says so once the
    /// server asked for it: the literal is always synchronizing (RFC 3501 7.5), and
    /// `proceed` is asked between the server's continuation and the message. An APPEND is
    /// not idempotent, and a process paused after sending the command line would send the
    /// rest when it wakes, however long after. When `proceed` says no, the connection is
    /// closed with the literal unsent (the server drops the command) and
    /// [`Error::Abandoned`] returned: the session cannot be used again.
    pub async fn append_if(
        &mut self,
        raw_name: &str,
        flags: &[String],
        internal_date: Option<i64>,
        message: &[u8],
        proceed: Option<&(dyn Fn() -> bool + Send + Sync)>,
    ) -> Result<Option<(u32, u32)>> {
        let mbox = mailbox_arg(raw_name)?;
        let flags: Vec<String> = flags
            .iter()
            .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
            .cloned()
            .collect();
        let list = flag_list(&flags)?;
        let date = internal_date
            .map(|d| format!(" {}", imap_date(d)))
            .unwrap_or_default();
        let plus = proceed.is_none() && self.has("LITERAL+");
        let tag = self
            .send(&format!(
                "APPEND {mbox} {list}{date} {{{}{}}}",
                message.len(),
                if plus { "+" } else { "" }
            ))
            .await?;
        if !plus {
            loop {
                match self.read().await? {
                    Response::Continue => break,
                    Response::Tagged { text, .. } => {
                        return Err(Error::Refused {
                            command: "APPEND".into(),
                            text,
                        });
                    }
                    other => self.unsolicited.push(other),
                }
            }
        }
        if proceed.is_some_and(|p| !p()) {
            self.cut().await;
            return Err(Error::Abandoned("APPEND"));
        }
        self.write_raw(message).await?;
        self.write_raw(b"\r\n").await?;
        let (untagged, code) = self.finish(&tag, "APPEND").await?;
        self.unsolicited.extend(untagged);
        Ok(match code {
            Some(Code::AppendUid(v, u)) => Some((v, u)),
            _ => None,
        })
    }

    /// UIDNEXT of a mailbox (STATUS).
    pub async fn status_uidnext(&mut self, raw_name: &str) -> Result<Option<u32>> {
        let (untagged, _) = self
            .run(&format!("STATUS {} (UIDNEXT)", mailbox_arg(raw_name)?))
            .await?;
        Ok(untagged.into_iter().find_map(|r| match r {
            Response::Status(s) => s.uidnext,
            _ => None,
        }))
    }

    /// Whether the server opens a mailbox of this wire name (STATUS), asked by name rather
    /// than read from a LIST: a refusal (NO, RFC 3501 6.3.10) is "not there".
    pub async fn mailbox_opens(&mut self, raw_name: &str) -> Result<bool> {
        match self
            .run(&format!("STATUS {} (UIDVALIDITY)", mailbox_arg(raw_name)?))
            .await
        {
            Ok(_) => Ok(true),
            Err(Error::Refused { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether a mailbox of this wire name exists (LIST).
    pub async fn mailbox_exists(&mut self, raw_name: &str) -> Result<bool> {
        let (untagged, _) = self
            .run(&format!("LIST \"\" {}", mailbox_arg(raw_name)?))
            .await?;
        Ok(untagged
            .iter()
            .any(|r| matches!(r, Response::List(l) if l.raw_name == raw_name)))
    }

    pub async fn create(&mut self, raw_name: &str) -> Result<()> {
        self.run(&format!("CREATE {}", mailbox_arg(raw_name)?))
            .await?;
        Ok(())
    }

    pub async fn rename(&mut self, from: &str, to: &str) -> Result<()> {
        self.run(&format!(
            "RENAME {} {}",
            mailbox_arg(from)?,
            mailbox_arg(to)?
        ))
        .await?;
        Ok(())
    }

    pub async fn delete(&mut self, raw_name: &str) -> Result<()> {
        self.run(&format!("DELETE {}", mailbox_arg(raw_name)?))
            .await?;
        Ok(())
    }

    pub async fn subscribe(&mut self, raw_name: &str, on: bool) -> Result<()> {
        let verb = if on { "SUBSCRIBE" } else { "UNSUBSCRIBE" };
        self.run(&format!("{verb} {}", mailbox_arg(raw_name)?))
            .await?;
        Ok(())
    }

    /// The server's flags (and MODSEQ under CONDSTORE) of `uids` in the selected mailbox,
    /// in one `UID FETCH`; UIDs the server no longer has are simply absent.
    pub async fn uid_fetch_flags(&mut self, uids: &[u32]) -> Result<Vec<ServerFlags>> {
        let cmd = format!(
            "UID FETCH {} (UID FLAGS{})",
            uid_set(uids),
            if self.condstore() { " MODSEQ" } else { "" }
        );
        let mut out = Vec::new();
        let mut stream = self.fetch_stream(vec![cmd], 1);
        while let Some(f) = stream.next().await? {
            if let (Some(uid), Some(flags)) = (f.uid, f.flags) {
                out.push(ServerFlags {
                    uid,
                    flags,
                    modseq: f.modseq,
                });
            }
        }
        Ok(out)
    }

    /// Examines `mailbox` and returns the highest UID of a message whose Message-ID header
    /// contains `message_id` (RFC 3501 6.4.4 HEADER), or None. A Message-ID that cannot be
    /// sent quoted (CR, LF or 8-bit, which RFC 5322 3.6.4 does not allow) finds nothing,
    /// and then nothing is sent and the selection is left as it was.
    pub async fn search_message_id(
        &mut self,
        mailbox: &str,
        message_id: &str,
    ) -> Result<Option<u32>> {
        let Some(q) = quote(message_id) else {
            return Ok(None);
        };
        self.examine(mailbox, None).await?;
        let uids = self.uid_search(&format!("HEADER Message-ID {q}")).await?;
        Ok(uids.into_iter().max())
    }

    /// Leaves a mailbox opened read-write, if the server has UNSELECT (RFC 3691); without
    /// it the mailbox stays selected, as CLOSE would expunge what is \Deleted (RFC 3501
    /// 6.4.2). A refusal means nothing was selected, where we wanted to be.
    pub async fn unselect_if_offered(&mut self) -> Result<()> {
        if !self.has("UNSELECT") {
            return Ok(());
        }
        match self.run("UNSELECT").await {
            Ok(_) | Err(Error::Refused { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Leaves the selected mailbox without expunging (UNSELECT, RFC 3691; else EXAMINE of
    /// nothing is impossible, so CLOSE on a read-only re-open).
    pub async fn unselect(&mut self) -> Result<()> {
        if self.has("UNSELECT") {
            self.run("UNSELECT").await?;
        } else {
            // CLOSE would expunge \Deleted messages of a read-write mailbox: re-open it
            // read-only first is not possible without a name, so select INBOX read-only.
            self.run("EXAMINE INBOX").await?;
        }
        Ok(())
    }

    /// Finds messages appended since `uidnext` whose header block hashes to `header_hash`
    /// (how an APPEND replayed after a crash knows it already happened). Bounded.
    pub async fn find_appended(
        &mut self,
        uidnext: u32,
        header_hash: &str,
        size: u32,
    ) -> Result<Option<u32>> {
        let uids = self.uid_search(&format!("UID {uidnext}:*")).await?;
        let uids: Vec<u32> = uids
            .into_iter()
            .filter(|u| *u >= uidnext)
            .take(500)
            .collect();
        if uids.is_empty() {
            return Ok(None);
        }
        let cmd = format!(
            "UID FETCH {} (UID RFC822.SIZE BODY.PEEK[HEADER])",
            uid_set(&uids)
        );
        let mut found = None;
        let mut stream = self.fetch_stream(vec![cmd], 1);
        while let Some(f) = stream.next().await? {
            if found.is_some() {
                continue;
            }
            let same_size = f.size.is_none_or(|s| s == size);
            if let (Some(uid), Some(h)) = (f.uid, &f.header)
                && same_size
                && mime::blob_id(h) == header_hash
            {
                found = Some(uid);
            }
        }
        Ok(found)
    }
}

/// A mailbox wire name for `leaf` under `parent_raw` (modified UTF-7, RFC 3501 5.1.3).
pub fn child_raw_name(parent_raw: Option<&str>, delimiter: &str, leaf: &str) -> Result<String> {
    let enc = crate::mutf7::encode(leaf);
    let name = match parent_raw {
        Some(p) => format!("{p}{delimiter}{enc}"),
        None => enc,
    };
    quote(&name)
        .map(|_| name)
        .ok_or_else(|| Error::Protocol("mailbox name not encodable".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(imap_date(0), "\"01-Jan-1970 00:00:00 +0000\"");
        assert_eq!(imap_date(1_796_170_000), "\"02-Dec-2026 00:06:40 +0000\"");
    }

    #[test]
    fn modified_codes() {
        assert_eq!(
            modified_of("[MODIFIED 7,9:11] Conditional STORE failed"),
            vec![7, 9, 10, 11]
        );
        assert!(modified_of("Store completed").is_empty());
        assert_eq!(parse_set("1:4294967295", 5).len(), 5);
    }

    #[test]
    fn flags_are_atoms() {
        assert!(flag_arg("\\Seen").is_ok());
        assert!(flag_arg("$label1").is_ok());
        assert!(flag_arg("a b").is_err());
        assert!(flag_arg("x)").is_err());
        assert!(flag_arg("").is_err());
    }

    #[test]
    fn child_names() {
        assert_eq!(
            child_raw_name(Some("INBOX"), ".", "Ärger").unwrap(),
            "INBOX.&AMQ-rger"
        );
        assert_eq!(child_raw_name(None, "/", "Work").unwrap(), "Work");
    }
}

#[cfg(test)]
mod parse_tests {
    use crate::response::{Response, parse};

    #[test]
    fn modified_survives_the_parser() {
        let f = bytes::Bytes::from_static(b"T1 OK [MODIFIED 7,9] Conditional STORE failed\r\n");
        match parse(&f) {
            Response::Tagged { text, .. } => {
                assert_eq!(super::modified_of(&text), vec![7, 9], "{text}")
            }
            other => panic!("{other:?}"),
        }
    }
}

/// A parenthesised list of Gmail labels: a system label (`\\Inbox`) as the atom it is, a
/// user label as a quoted string (it may hold spaces or `[`).
fn label_list(labels: &[String]) -> Result<String> {
    let mut out = Vec::with_capacity(labels.len());
    for l in labels {
        let system =
            l.starts_with('\\') && l.len() > 1 && l[1..].bytes().all(|b| b.is_ascii_alphanumeric());
        if system {
            out.push(l.clone());
        } else {
            out.push(quote(l).ok_or_else(|| {
                Error::Protocol("a Gmail label that cannot be quoted".to_string())
            })?);
        }
    }
    Ok(format!("({})", out.join(" ")))
}

#[cfg(test)]
mod gmail_tests {
    use super::label_list;

    #[test]
    fn labels_are_atoms_or_quoted_strings() {
        let l = |v: &[&str]| label_list(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            l(&["\\Inbox", "Work", "My \"label\""]).ok().as_deref(),
            Some("(\\Inbox \"Work\" \"My \\\"label\\\"\")")
        );
        // Not a system label: quoted, so the server cannot take it for a flag.
        assert_eq!(l(&["\\Foo Bar"]).ok().as_deref(), Some("(\"\\\\Foo Bar\")"));
        assert!(l(&["line\r\nbreak"]).is_err());
    }
}

//! A deliberately small, blocking IMAP client for tests.
//!
//! It plays "a second, independent client" on the test server: it changes
//! flags, expunges, moves, creates mailboxes and so on while the code under
//! test is syncing. It shares no code with the engine on purpose, so a bug in
//! the engine's IMAP layer cannot hide itself in the tests. It speaks plain
//! IMAP with LOGIN, one command at a time, and understands just enough of
//! the responses (tagged status, literals) for that.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

/// Socket read/write timeout: no test waits forever on a silent server.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A logged-in IMAP connection to 127.0.0.1.
#[derive(Debug)]
pub struct ImapClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    next_tag: u32,
}

/// Quotes a mailbox name or string as an IMAP quoted string (non-ASCII
/// mailbox names are converted to modified UTF-7 first).
fn quote_mailbox(name: &str) -> String {
    quote(&crate::mutf7::encode(name))
}

fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// If `line` (without CRLF) ends in a literal announcement `{N}` or `{N+}`,
/// returns N.
fn literal_len(line: &[u8]) -> Option<usize> {
    let line = line.strip_suffix(b"}")?;
    let open = line.iter().rposition(|&b| b == b'{')?;
    let inner = &line[open + 1..];
    let inner = inner.strip_suffix(b"+").unwrap_or(inner);
    std::str::from_utf8(inner).ok()?.parse().ok()
}

impl ImapClient {
    /// Connects to 127.0.0.1:`port`, reads the greeting and logs in.
    pub fn login(port: u16, user: &str, pass: &str) -> Result<ImapClient> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let stream = TcpStream::connect_timeout(&addr, TIMEOUT)
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        stream.set_write_timeout(Some(TIMEOUT))?;
        let mut client = ImapClient {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            next_tag: 1,
        };
        let greeting = client.read_response()?;
        if !greeting.starts_with("* OK") {
            bail!("unexpected IMAP greeting: {greeting:?}");
        }
        client
            .command(&format!("LOGIN {} {}", quote(user), quote(pass)))
            .with_context(|| format!("LOGIN as {user}"))?;
        Ok(client)
    }

    /// Reads one response: a line plus any literals it announces, with the
    /// literal bytes inlined (lossily decoded) and the final CRLF removed.
    fn read_response(&mut self) -> Result<String> {
        let mut out: Vec<u8> = Vec::new();
        loop {
            let mut line = Vec::new();
            let n = self
                .reader
                .read_until(b'\n', &mut line)
                .context("reading from IMAP server")?;
            if n == 0 {
                bail!("IMAP server closed the connection");
            }
            while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                line.pop();
            }
            let literal = literal_len(&line);
            out.extend_from_slice(&line);
            match literal {
                Some(len) => {
                    let mut buf = vec![0u8; len];
                    self.reader
                        .read_exact(&mut buf)
                        .context("reading IMAP literal")?;
                    out.extend_from_slice(b"\r\n");
                    out.extend_from_slice(&buf);
                }
                None => break,
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    fn send_tagged(&mut self, command: &str) -> Result<String> {
        let tag = format!("t{}", self.next_tag);
        self.next_tag += 1;
        self.writer
            .write_all(format!("{tag} {command}\r\n").as_bytes())
            .context("writing IMAP command")?;
        Ok(tag)
    }

    /// Reads responses up to and including the tagged one for `tag`.
    fn collect(&mut self, tag: &str) -> Result<(Vec<String>, String)> {
        let mut lines = Vec::new();
        let prefix = format!("{tag} ");
        loop {
            let resp = self.read_response()?;
            if let Some(rest) = resp.strip_prefix(&prefix) {
                let status = rest.to_owned();
                lines.push(resp);
                return Ok((lines, status));
            }
            lines.push(resp);
        }
    }

    /// Sends one command and returns all response lines (untagged and the
    /// final tagged one). Fails if the tagged status is not OK.
    fn command(&mut self, command: &str) -> Result<Vec<String>> {
        let tag = self.send_tagged(command)?;
        let (lines, status) = self.collect(&tag)?;
        if !status.starts_with("OK") {
            bail!("IMAP {command:?} failed: {status}");
        }
        Ok(lines)
    }

    /// Sends any command line (without tag) and returns every response line,
    /// joined with CRLF, including the tagged status line. Does not fail on a
    /// NO/BAD answer, so tests can check those too.
    pub fn raw_command(&mut self, command: &str) -> Result<String> {
        let tag = self.send_tagged(command)?;
        let (lines, _) = self.collect(&tag)?;
        Ok(lines.join("\r\n"))
    }

    /// SELECTs a mailbox; returns the untagged lines (EXISTS, UIDVALIDITY...).
    pub fn select(&mut self, mailbox: &str) -> Result<Vec<String>> {
        self.command(&format!("SELECT {}", quote_mailbox(mailbox)))
    }

    /// `UID STORE <uid_set> <op> (<flags>)` on the selected mailbox, where
    /// `op` is "+FLAGS", "-FLAGS" or "FLAGS" (".SILENT" variants work too).
    pub fn store_flags(&mut self, uid_set: &str, op: &str, flags: &[&str]) -> Result<()> {
        self.command(&format!("UID STORE {uid_set} {op} ({})", flags.join(" ")))?;
        Ok(())
    }

    /// Marks the messages \Deleted and removes exactly them with UID EXPUNGE.
    pub fn expunge_uids(&mut self, uid_set: &str) -> Result<()> {
        self.store_flags(uid_set, "+FLAGS.SILENT", &["\\Deleted"])?;
        self.command(&format!("UID EXPUNGE {uid_set}"))?;
        Ok(())
    }

    /// UID MOVE to another mailbox.
    pub fn move_uids(&mut self, uid_set: &str, dest: &str) -> Result<()> {
        self.command(&format!("UID MOVE {uid_set} {}", quote_mailbox(dest)))?;
        Ok(())
    }

    /// UID COPY to another mailbox.
    pub fn copy_uids(&mut self, uid_set: &str, dest: &str) -> Result<()> {
        self.command(&format!("UID COPY {uid_set} {}", quote_mailbox(dest)))?;
        Ok(())
    }

    /// CREATE a mailbox.
    pub fn create(&mut self, mailbox: &str) -> Result<()> {
        self.command(&format!("CREATE {}", quote_mailbox(mailbox)))?;
        Ok(())
    }

    /// RENAME a mailbox.
    pub fn rename(&mut self, from: &str, to: &str) -> Result<()> {
        self.command(&format!(
            "RENAME {} {}",
            quote_mailbox(from),
            quote_mailbox(to)
        ))?;
        Ok(())
    }

    /// DELETE a mailbox.
    pub fn delete(&mut self, mailbox: &str) -> Result<()> {
        self.command(&format!("DELETE {}", quote_mailbox(mailbox)))?;
        Ok(())
    }

    /// APPENDs a message with the given flags. Returns the new UID when the
    /// server reports it (UIDPLUS APPENDUID).
    pub fn append(&mut self, mailbox: &str, flags: &[&str], raw: &[u8]) -> Result<Option<u32>> {
        let tag = self.send_tagged(&format!(
            "APPEND {} ({}) {{{}}}",
            quote_mailbox(mailbox),
            flags.join(" "),
            raw.len()
        ))?;
        // Wait for the continuation request before sending the literal.
        loop {
            let resp = self.read_response()?;
            if resp.starts_with('+') {
                break;
            }
            if resp.starts_with(&format!("{tag} ")) {
                bail!("APPEND refused: {resp}");
            }
        }
        self.writer
            .write_all(raw)
            .context("writing APPEND literal")?;
        self.writer.write_all(b"\r\n")?;
        let (_, status) = self.collect(&tag)?;
        if !status.starts_with("OK") {
            bail!("APPEND failed: {status}");
        }
        // "OK [APPENDUID <validity> <uid>] ..."
        Ok(status
            .split_once("[APPENDUID ")
            .and_then(|(_, rest)| rest.split([' ', ']']).nth(1))
            .and_then(|uid| uid.parse().ok()))
    }

    /// All UIDs in the selected mailbox (UID SEARCH ALL), ascending.
    pub fn uids(&mut self) -> Result<Vec<u32>> {
        let lines = self.command("UID SEARCH ALL")?;
        let mut uids = Vec::new();
        for line in &lines {
            if let Some(rest) = line.strip_prefix("* SEARCH") {
                for word in rest.split_whitespace() {
                    uids.push(
                        word.parse()
                            .with_context(|| format!("bad UID in {line:?}"))?,
                    );
                }
            }
        }
        uids.sort_unstable();
        Ok(uids)
    }

    /// `(uid, flags)` of every message in the selected mailbox, by UID.
    pub fn fetch_flags(&mut self) -> Result<Vec<(u32, Vec<String>)>> {
        let lines = self.command("UID FETCH 1:* (UID FLAGS)")?;
        let mut out = Vec::new();
        for line in &lines {
            if !line.starts_with("* ") || !line.contains(" FETCH (") {
                continue;
            }
            let uid = line
                .split_once("UID ")
                .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|d| d.parse().ok())
                .ok_or_else(|| anyhow!("no UID in {line:?}"))?;
            let flags = line
                .split_once("FLAGS (")
                .and_then(|(_, rest)| rest.split_once(')'))
                .map(|(inner, _)| inner.split_whitespace().map(str::to_owned).collect())
                .ok_or_else(|| anyhow!("no FLAGS in {line:?}"))?;
            out.push((uid, flags));
        }
        out.sort_by_key(|(uid, _)| *uid);
        Ok(out)
    }

    /// LOGOUT and close the connection.
    /// Changes the socket timeout (benchmarks wait on commands that take longer than a
    /// test should, like Dovecot's first SORT of a large mailbox).
    pub fn set_timeout(&mut self, timeout: Duration) -> Result<()> {
        self.writer.set_read_timeout(Some(timeout))?;
        self.writer.set_write_timeout(Some(timeout))?;
        Ok(())
    }

    pub fn logout(mut self) -> Result<()> {
        self.command("LOGOUT")?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn literal_detection() {
        assert_eq!(literal_len(b"* 1 FETCH (BODY[] {123}"), Some(123));
        assert_eq!(literal_len(b"a APPEND x {5+}"), Some(5));
        assert_eq!(literal_len(b"* OK done"), None);
        assert_eq!(literal_len(b"* OK {x}"), None);
    }

    #[test]
    fn quoting() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quote_mailbox("Entwürfe"), "\"Entw&APw-rfe\"");
    }
}

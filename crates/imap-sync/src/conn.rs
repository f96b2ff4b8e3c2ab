//! A buffered IMAP connection: response framing with literals, tags, and command writing,
//! over `mail-net`'s socket (plain, TLS, STARTTLS upgrade). Knows nothing of mailboxes or
//! the store.
//!
//! Framing is done here and parsing by `imap-proto` (see `response.rs`): a frame is one
//! complete server response (a line plus every literal it announces), so the parser never
//! sees half a response and a malformed one can be skipped whole.

use crate::error::{Error, Result};
use bytes::{Bytes, BytesMut};
pub use mail_net::{CONNECT_TIMEOUT, Endpoint, Stream};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longest response line (outside literals) we accept. A `UID SEARCH ALL` over 100,000
/// messages is about 700 KB on one line, so this leaves room while bounding memory.
pub const MAX_LINE: usize = 16 * 1024 * 1024;
/// Largest literal we accept. Messages of 50 MB must sync; a server announcing more than
/// this is refused rather than trusted with our memory.
pub const MAX_LITERAL: usize = 256 * 1024 * 1024;
/// Default time we wait for the server to say anything while a command runs.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// The read buffer of a fresh or idle connection.
const MIN_BUFFER: usize = 8 * 1024;
/// Room made for each read while a response is streaming in.
const STREAM_CHUNK: usize = 64 * 1024;

/// One IMAP connection with its read buffer and tag counter.
pub struct Connection {
    stream: Stream,
    rbuf: BytesMut,
    /// Where the frame scanner resumes, so a response arriving in many reads is scanned once.
    scan: Scan,
    next_tag: u32,
    pub(crate) read_timeout: Duration,
    /// Bytes read from the server since last taken (the daily download budget).
    bytes_read: u64,
}

impl Connection {
    pub(crate) fn new(stream: Stream) -> Self {
        Connection {
            stream,
            rbuf: BytesMut::with_capacity(MIN_BUFFER),
            scan: Scan::default(),
            next_tag: 1,
            read_timeout: READ_TIMEOUT,
            bytes_read: 0,
        }
    }

    /// Replaces the plain socket by TLS (after the server said OK to STARTTLS).
    pub(crate) async fn upgrade_tls(&mut self, ep: &Endpoint) -> Result<()> {
        if !self.rbuf.is_empty() {
            // RFC 3501 6.2.1 / STARTTLS injection (CVE-2011-0411 class): nothing may follow
            // the OK in plaintext.
            return Err(Error::Protocol(
                "server sent data after STARTTLS response".into(),
            ));
        }
        match std::mem::replace(&mut self.stream, Stream::Gone) {
            Stream::Plain(tcp) => {
                self.stream = Stream::Tls(Box::new(mail_net::tls_wrap(ep, tcp).await?));
                Ok(())
            }
            other => {
                self.stream = other;
                Err(Error::Protocol("STARTTLS on a TLS connection".into()))
            }
        }
    }

    /// A fresh tag for the next command.
    pub fn tag(&mut self) -> String {
        let t = format!("T{}", self.next_tag);
        self.next_tag = self.next_tag.wrapping_add(1);
        t
    }

    /// Writes raw bytes (a complete command line, CRLF included) and flushes.
    pub async fn write_all(&mut self, data: &[u8]) -> Result<()> {
        let fut = async {
            self.stream.write_all(data).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(self.read_timeout, fut).await {
            Ok(r) => r.map_err(Error::Io),
            Err(_) => Err(Error::Timeout),
        }
    }

    /// Reads the next complete response frame (line plus literals, CRLF included).
    pub async fn read_frame(&mut self) -> Result<Bytes> {
        self.read_frame_within(self.read_timeout).await
    }

    /// Like `read_frame` with an explicit inactivity timeout (IDLE waits much longer).
    pub async fn read_frame_within(&mut self, timeout: Duration) -> Result<Bytes> {
        loop {
            if let Some(end) = scan_frame(&self.rbuf, &mut self.scan)? {
                self.scan = Scan::default();
                return Ok(self.rbuf.split_to(end).freeze());
            }
            if self.rbuf.capacity() - self.rbuf.len() < MIN_BUFFER / 2 {
                // Waiting for a new response (nothing buffered) needs little room; a
                // response streaming in is read in large chunks.
                self.rbuf.reserve(if self.rbuf.is_empty() {
                    MIN_BUFFER
                } else {
                    STREAM_CHUNK
                });
            }
            let n = match tokio::time::timeout(timeout, self.stream.read_buf(&mut self.rbuf)).await
            {
                Ok(r) => r.map_err(Error::Io)?,
                Err(_) => return Err(Error::Timeout),
            };
            if n == 0 {
                return Err(Error::Closed);
            }
            self.bytes_read = self.bytes_read.saturating_add(n as u64);
        }
    }

    /// Bytes read since the last call (after TLS: what the server sent, less the TLS
    /// overhead providers do not count either).
    pub(crate) fn take_bytes_read(&mut self) -> u64 {
        std::mem::take(&mut self.bytes_read)
    }

    /// Gives back a read buffer that grew for a big response, once it holds nothing: a
    /// watching connection waits with a small one (memory per watched account).
    pub(crate) fn shrink(&mut self) {
        if self.rbuf.is_empty() && self.rbuf.capacity() > 4 * MIN_BUFFER {
            self.rbuf = BytesMut::with_capacity(MIN_BUFFER);
            self.scan = Scan::default();
        }
    }

    pub async fn shutdown(&mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.stream.shutdown()).await;
    }
}

/// Resumable position of the frame scanner inside the read buffer.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Scan {
    /// Next byte to look at for a CRLF (may point past the buffer while a literal arrives).
    pos: usize,
    /// Start of the current line, for the line-length bound.
    line_start: usize,
}

/// Finds the end of the first complete response in `buf`. `scan` is where to resume; it is
/// updated so that repeated calls on a growing buffer stay linear.
///
/// RFC 3501 4.3: a line ending in `{N}` (or `{N+}`, or `~{N}` for literal8) is followed by
/// exactly N bytes of literal, and then the response continues.
pub(crate) fn scan_frame(buf: &[u8], scan: &mut Scan) -> Result<Option<usize>> {
    loop {
        if scan.pos > buf.len() {
            // Still inside an announced literal.
            return Ok(None);
        }
        let Some(nl) = memchr_crlf(&buf[scan.pos..]) else {
            if buf.len() - scan.line_start > MAX_LINE {
                return Err(Error::Protocol(format!(
                    "response line longer than {MAX_LINE} bytes"
                )));
            }
            // Resume at the unscanned tail, keeping one byte for a CRLF split across reads.
            scan.pos = buf.len().saturating_sub(1).max(scan.pos);
            return Ok(None);
        };
        let cr = scan.pos + nl;
        if cr - scan.line_start > MAX_LINE {
            return Err(Error::Protocol(format!(
                "response line longer than {MAX_LINE} bytes"
            )));
        }
        match literal_len(&buf[scan.line_start..cr])? {
            Some(len) => {
                let next = cr + 2 + len;
                scan.pos = next;
                scan.line_start = next;
                if next > buf.len() {
                    return Ok(None);
                }
            }
            None => return Ok(Some(cr + 2)),
        }
    }
}

/// The length of the first complete response in `buf`, if it is all there (for tools and
/// fuzzing; the connection scans incrementally with `scan_frame`).
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>> {
    scan_frame(buf, &mut Scan::default())
}

fn memchr_crlf(hay: &[u8]) -> Option<usize> {
    hay.windows(2).position(|w| w == b"\r\n")
}

/// If the line ends with a literal announcement `{N}` / `{N+}`, returns N.
fn literal_len(line: &[u8]) -> Result<Option<usize>> {
    let Some(body) = line.strip_suffix(b"}") else {
        return Ok(None);
    };
    let Some(open) = body.iter().rposition(|&b| b == b'{') else {
        return Ok(None);
    };
    let digits = &body[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || digits.len() > 12 || !digits.iter().all(u8::is_ascii_digit) {
        return Ok(None);
    }
    let mut n: usize = 0;
    for d in digits {
        n = n * 10 + usize::from(d - b'0');
    }
    if n > MAX_LITERAL {
        return Err(Error::Protocol(format!(
            "server announced a literal of {n} bytes (limit {MAX_LITERAL})"
        )));
    }
    Ok(Some(n))
}

/// Quotes a string argument for a command (RFC 3501 4.3). Returns `None` when it cannot be
/// quoted (CR, LF, NUL or 8-bit) and must be sent as a literal.
pub fn quote(s: &str) -> Option<String> {
    if s.bytes()
        .any(|b| b == b'\r' || b == b'\n' || b == 0 || b >= 0x80)
    {
        return None;
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(data: &[u8]) -> Vec<Vec<u8>> {
        let mut buf = data.to_vec();
        let mut out = vec![];
        let mut scan = Scan::default();
        while let Some(end) = scan_frame(&buf, &mut scan).unwrap() {
            out.push(buf.drain(..end).collect());
            scan = Scan::default();
        }
        out
    }

    #[test]
    fn frames_lines_and_literals() {
        let data = b"* 1 FETCH (UID 5 BODY[] {5}\r\nab\r\nc)\r\n* OK done\r\nT1 OK x\r\n";
        let f = frames(data);
        assert_eq!(f.len(), 3);
        assert_eq!(f[0], b"* 1 FETCH (UID 5 BODY[] {5}\r\nab\r\nc)\r\n");
        assert_eq!(f[2], b"T1 OK x\r\n");
    }

    #[test]
    fn incomplete_literal_waits_and_resumes() {
        let full = b"* 1 FETCH (BODY[] {10}\r\n0123456789 UID 3)\r\n";
        let mut scan = Scan::default();
        for cut in 1..full.len() {
            let mut s = Scan::default();
            assert_eq!(scan_frame(&full[..cut], &mut s).unwrap(), None, "cut {cut}");
        }
        assert_eq!(
            scan_frame(full, &mut scan).unwrap(),
            Some(full.len()),
            "whole"
        );
    }

    #[test]
    fn refuses_absurd_literal() {
        let mut s = Scan::default();
        assert!(scan_frame(b"* 1 FETCH (BODY[] {99999999999})\r\n", &mut s).is_ok());
        let mut s = Scan::default();
        assert!(scan_frame(b"* 1 FETCH (BODY[] {999999999999}\r\n", &mut s).is_err());
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("a\"b\\").as_deref(), Some("\"a\\\"b\\\\\""));
        assert_eq!(quote("p\u{e4}ss"), None);
        assert_eq!(quote("a\r\nb"), None);
    }
}

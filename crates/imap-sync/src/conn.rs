//! A buffered IMAP connection: TLS or plain socket, response framing with literals, tags,
//! and command writing. Knows nothing of mailboxes or the store.
//!
//! Framing is done here and parsing by `imap-proto` (see `response.rs`): a frame is one
//! complete server response (a line plus every literal it announces), so the parser never
//! sees half a response and a malformed one can be skipped whole.

use crate::error::{Error, Result};
use bytes::{Bytes, BytesMut};
use mail_types::Security;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Longest response line (outside literals) we accept. A `UID SEARCH ALL` over 100,000
/// messages is about 700 KB on one line, so this leaves room while bounding memory.
pub const MAX_LINE: usize = 16 * 1024 * 1024;
/// Largest literal we accept. Messages of 50 MB must sync; a server announcing more than
/// this is refused rather than trusted with our memory.
pub const MAX_LITERAL: usize = 256 * 1024 * 1024;
/// Default time we wait for the server to say anything while a command runs.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Time allowed for TCP connect plus TLS handshake plus greeting.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// The read buffer of a fresh or idle connection.
const MIN_BUFFER: usize = 8 * 1024;
/// Room made for each read while a response is streaming in.
const STREAM_CHUNK: usize = 64 * 1024;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// PEM file of an extra CA to trust (a private server's self-signed CA).
    pub ca_file: Option<std::path::PathBuf>,
}

/// A client socket: plain, or TLS (implicit or after STARTTLS/STLS). Shared with
/// `pop3-sync`, which has the same needs.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while STARTTLS swaps the stream.
    Gone,
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Gone => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, b),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, b),
            Stream::Gone => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Gone => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Gone => Poll::Ready(Ok(())),
        }
    }
}

/// The client config for `ca_file`, built once per CA file (and again when the file
/// changes) and shared by every connection: building one reads and parses every system
/// root, and each connection keeps its config alive, so 2,000 connections of 1,000 watched
/// accounts would otherwise hold 2,000 copies of the root store.
pub fn tls_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>> {
    type Key = (Option<std::path::PathBuf>, Option<std::time::SystemTime>);
    static CACHE: std::sync::Mutex<Vec<(Key, Arc<rustls::ClientConfig>)>> =
        std::sync::Mutex::new(Vec::new());
    let key: Key = (
        ca_file.map(Path::to_path_buf),
        ca_file.and_then(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok()),
    );
    if let Ok(cache) = CACHE.lock()
        && let Some((_, c)) = cache.iter().find(|(k, _)| *k == key)
    {
        return Ok(c.clone());
    }
    let config = build_tls_config(ca_file)?;
    if let Ok(mut cache) = CACHE.lock() {
        // A changed file replaces its old entry; the list stays as long as the CA files.
        cache.retain(|(k, _)| k.0 != key.0);
        cache.push((key, config.clone()));
    }
    Ok(config)
}

/// Builds a rustls client config trusting the system roots plus `ca_file`.
fn build_tls_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A broken system certificate must not stop us from trusting the others.
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| Error::Tls(format!("reading CA file {}: {e}", path.display())))?;
        let mut found = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| Error::Tls(format!("CA file {}: {e}", path.display())))?;
            roots
                .add(cert)
                .map_err(|e| Error::Tls(format!("CA file {}: {e}", path.display())))?;
            found += 1;
        }
        if found == 0 {
            return Err(Error::Tls(format!(
                "CA file {} holds no certificate",
                path.display()
            )));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Opens TCP (and TLS when `security` is `Tls`) to the endpoint. STARTTLS is the caller's.
pub(crate) async fn open(ep: &Endpoint) -> Result<Stream> {
    let tcp = TcpStream::connect((ep.host.as_str(), ep.port))
        .await
        .map_err(Error::Io)?;
    tcp.set_nodelay(true).map_err(Error::Io)?;
    set_keepalive(&tcp);
    match ep.security {
        Security::Tls => Ok(Stream::Tls(Box::new(tls_wrap(ep, tcp).await?))),
        Security::Starttls | Security::None => Ok(Stream::Plain(tcp)),
    }
}

/// TCP keepalive finds a peer that vanished (a NAT that forgot us, a dead server) in
/// about 90 s, instead of at the next command, which may be many minutes away while the
/// connection waits in IDLE or NOTIFY.
pub fn set_keepalive(tcp: &TcpStream) {
    let ka = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(10))
        .with_retries(3);
    if let Err(e) = socket2::SockRef::from(tcp).set_tcp_keepalive(&ka) {
        tracing::debug!(error = %e, "cannot enable TCP keepalive");
    }
}

/// Wraps a TCP stream in TLS, trusting the system roots plus the endpoint's CA file.
pub async fn tls_wrap(ep: &Endpoint, tcp: TcpStream) -> Result<TlsStream<TcpStream>> {
    let config = tls_config(ep.ca_file.as_deref())?;
    let name = rustls::pki_types::ServerName::try_from(ep.host.clone())
        .map_err(|e| Error::Tls(format!("server name {}: {e}", ep.host)))?;
    TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| Error::Tls(e.to_string()))
}

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
                self.stream = Stream::Tls(Box::new(tls_wrap(ep, tcp).await?));
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

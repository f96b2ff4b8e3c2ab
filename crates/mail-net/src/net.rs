//! TCP and TLS for a mail client: connect with keepalive, the TLS client config (system
//! roots plus a private CA) and handshake, and a stream that is plain or TLS.

use crate::error::{Error, Result};
use mail_types::Security;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Time allowed for TCP connect plus TLS handshake plus greeting (and, for POP3, CAPA and
/// STLS).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// PEM file of an extra CA to trust (a private server's self-signed CA).
    pub ca_file: Option<std::path::PathBuf>,
}

/// A client socket: plain, or TLS (implicit or after STARTTLS/STLS).
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

/// Opens TCP (and TLS when `security` is `Tls`) to the endpoint, with Nagle off (commands
/// are small and pipelined) and keepalive on. STARTTLS is the caller's: it is a command of
/// the protocol.
pub async fn open(ep: &Endpoint) -> Result<Stream> {
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
    tls_handshake(tls_config(ep.ca_file.as_deref())?, &ep.host, tcp).await
}

/// The TLS handshake with `host` (its certificate must name it) under `config`.
pub async fn tls_handshake(
    config: Arc<rustls::ClientConfig>,
    host: &str,
    tcp: TcpStream,
) -> Result<TlsStream<TcpStream>> {
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| Error::Tls(format!("server name {host}: {e}")))?;
    TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| Error::Tls(e.to_string()))
}

//! The HTTP connections: an accept loop of our own (axum's `serve` has no knobs for it)
//! that gives every connection deadlines and caps the connections of one client address,
//! and the real client address behind a trusted reverse proxy.
//!
//! Deadlines, all on the connection's own clock (`tokio::time`):
//! - idle: a keep-alive connection with no request in flight and no byte of the next one
//!   is closed after `idle_timeout`;
//! - header: once the first byte of a request arrived, its whole header must follow within
//!   `header_read_timeout` (a client trickling a header line every few seconds is cut);
//! - body: a request body (an upload) may take as long as it needs while it moves, but not
//!   `body_idle_timeout` without a byte; a response the client stops reading is cut after
//!   the same time without progress.
//!
//! A WebSocket (RFC 8887) is long-lived on purpose and keeps its own ping rules: once a
//! connection is upgraded none of these deadlines apply. An EventSource response is a
//! request in flight, so the idle and header deadlines do not apply to it either; it is
//! kept alive by its own pings (RFC 8620 7.3).

use crate::tls::ClientAddr;
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, header};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};

/// The deadlines and caps of the HTTP listener.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// From the first byte of a request until its header is complete.
    pub header_read_timeout: Duration,
    /// A keep-alive connection with nothing in flight is closed after this.
    pub idle_timeout: Duration,
    /// The longest pause while a request body arrives or a response is written.
    pub body_idle_timeout: Duration,
    /// Connections open at once from one client address (an IPv6 client: its /64); the
    /// next one is closed at once. Trusted proxies are not capped.
    pub max_connections_per_address: usize,
    /// Reverse proxies whose `Forwarded` / `X-Forwarded-For` headers are believed.
    pub trusted_proxies: TrustedProxies,
}

/// nginx's `client_header_timeout` is 60 s, hyper's header timeout 30 s: a real client
/// sends its header in one packet, so 30 s is generous.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// nginx's `keepalive_timeout` is 75 s; browsers close idle connections sooner.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// nginx's `client_body_timeout` and `send_timeout` are 60 s between two reads or writes.
pub const DEFAULT_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Enough for a household or an office behind one NAT, each browser opening a handful.
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 256;
/// How long a stopping server waits for requests in flight (an EventSource never ends by
/// itself) before it closes what is left.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// A TLS handshake that takes longer than this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            body_idle_timeout: DEFAULT_BODY_IDLE_TIMEOUT,
            max_connections_per_address: DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
            trusted_proxies: TrustedProxies::default(),
        }
    }
}

// --- trusted proxies -----------------------------------------------------------------------

/// An address block: `127.0.0.1/32`, `10.0.0.0/8`, `::1`, `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    net: IpAddr,
    prefix: u8,
}

#[derive(Debug, thiserror::Error)]
#[error("not an address or address block: {0:?}")]
pub struct BadCidr(String);

impl std::str::FromStr for Cidr {
    type Err = BadCidr;

    fn from_str(s: &str) -> Result<Self, BadCidr> {
        let bad = || BadCidr(s.to_string());
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (s.trim(), None),
        };
        let net: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(Cidr { net, prefix })
    }
}

impl Cidr {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// The reverse proxies in front of the server. Default: none, and forwarding headers are
/// ignored (anyone can send them).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// From addresses and blocks as written in the configuration.
    pub fn parse<S: AsRef<str>>(list: &[S]) -> Result<Self, BadCidr> {
        list.iter()
            .map(|s| s.as_ref().parse())
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    /// The client's address: the TCP peer, unless the peer is a trusted proxy; then the
    /// right-most hop of `Forwarded` (RFC 7239 5.2), else of `X-Forwarded-For`, that is not
    /// itself a trusted proxy. Hops left of that were written by the client and prove
    /// nothing. A hop that is no address (`unknown`, an obfuscated name, RFC 7239 6) leaves
    /// the proxy's own address.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let forwarded: Vec<&str> = headers
            .get_all(header::FORWARDED)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let hops: Vec<Option<IpAddr>> = if !forwarded.is_empty() {
            forwarded
                .iter()
                .flat_map(|v| v.split(','))
                .map(forwarded_for)
                .collect()
        } else {
            headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(|h| parse_node(h.trim()))
                .collect()
        };
        for hop in hops.iter().rev() {
            match hop {
                Some(ip) if self.trusts(*ip) => continue,
                Some(ip) => return ip.to_canonical(),
                None => return peer,
            }
        }
        // Every hop is a trusted proxy (or there is none): the left-most one is as close
        // to the client as we can see.
        hops.first().copied().flatten().unwrap_or(peer)
    }
}

/// The `for=` node of one `Forwarded` element (RFC 7239 4).
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("for")
            .then(|| parse_node(v.trim().trim_matches('"')))?
    })
}

/// A node (RFC 7239 6): `192.0.2.43`, `192.0.2.43:47011`, `[2001:db8::1]:4711`, or a bare
/// IPv6 address as `X-Forwarded-For` writes it.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    if let Ok(ip) = node.parse() {
        return Some(ip);
    }
    node.parse::<SocketAddr>().ok().map(|s| s.ip())
}

// --- connections per address --------------------------------------------------------------

/// Open connections per client address.
struct PerAddress {
    open: Mutex<HashMap<IpAddr, usize>>,
    max: usize,
}

/// One admitted connection; its count is given back when the connection ends.
struct Admitted {
    table: Arc<PerAddress>,
    key: Option<IpAddr>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Some(key) = self.key
            && let Ok(mut open) = self.table.open.lock()
            && let Some(n) = open.get_mut(&key)
        {
            *n -= 1;
            if *n == 0 {
                open.remove(&key);
            }
        }
    }
}

/// An IPv6 client gets a /64 (RFC 4291 2.5.4: one network), so it cannot pick a new
/// address per connection to escape the cap.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        v4 => v4,
    }
}

impl PerAddress {
    fn admit(self: &Arc<Self>, ip: IpAddr, uncapped: bool) -> Option<Admitted> {
        if uncapped {
            return Some(Admitted {
                table: self.clone(),
                key: None,
            });
        }
        let key = address_key(ip);
        let mut open = self.open.lock().ok()?;
        let n = open.entry(key).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Admitted {
            table: self.clone(),
            key: Some(key),
        })
    }
}

// --- the deadlines of one connection -------------------------------------------------------

/// What the connection's requests tell its socket.
struct ConnState {
    born: Instant,
    /// Requests whose response is not finished.
    in_flight: AtomicUsize,
    /// Requests started so far (a new one ends the previous header deadline).
    started: AtomicU64,
    /// When the connection last became idle, in milliseconds since `born`.
    idle_since_ms: AtomicU64,
    /// Upgraded to a WebSocket: no deadlines any more.
    upgraded: AtomicBool,
    /// The connection's task, parked on a read without a deadline while a request was in
    /// flight: woken when the last one ends, so the idle deadline starts.
    parked: Mutex<Option<std::task::Waker>>,
}

impl ConnState {
    fn idle_since(&self) -> Instant {
        self.born + Duration::from_millis(self.idle_since_ms.load(Ordering::SeqCst))
    }
}

/// A request in flight; dropped when its response body is finished (or abandoned).
struct InFlight(Arc<ConnState>);

impl InFlight {
    fn start(conn: &Arc<ConnState>) -> Self {
        conn.in_flight.fetch_add(1, Ordering::SeqCst);
        conn.started.fetch_add(1, Ordering::SeqCst);
        InFlight(conn.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let ms = u64::try_from(self.0.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.idle_since_ms.store(ms, Ordering::SeqCst);
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1
            && let Some(w) = self.0.parked.lock().ok().and_then(|mut p| p.take())
        {
            w.wake();
        }
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what.to_string())
}

/// The socket of one connection with the idle, header and write deadlines.
struct Watched<IO> {
    io: IO,
    conn: Arc<ConnState>,
    limits: Arc<HttpLimits>,
    read_timer: Pin<Box<Sleep>>,
    write_timer: Pin<Box<Sleep>>,
    /// When the first byte of the request being read arrived.
    header_started: Option<Instant>,
    /// `conn.started` when `header_started` was set.
    seen_started: u64,
    /// Since when a write has made no progress.
    write_stalled: Option<Instant>,
}

impl<IO> Watched<IO> {
    fn new(io: IO, conn: Arc<ConnState>, limits: Arc<HttpLimits>) -> Self {
        let far = Instant::now() + Duration::from_secs(86_400);
        Watched {
            io,
            conn,
            limits,
            read_timer: Box::pin(tokio::time::sleep_until(far)),
            write_timer: Box::pin(tokio::time::sleep_until(far)),
            header_started: None,
            seen_started: 0,
            write_stalled: None,
        }
    }

    fn exempt(&self) -> bool {
        self.conn.upgraded.load(Ordering::SeqCst)
    }

    /// A request started since `header_started` was set: that header is complete.
    fn forget_finished_header(&mut self) {
        let started = self.conn.started.load(Ordering::SeqCst);
        if started != self.seen_started {
            self.seen_started = started;
            self.header_started = None;
        }
    }

    /// The read deadline while nothing is in flight, and what it is for (never called on
    /// an upgraded connection).
    fn read_deadline(&mut self) -> Option<(Instant, &'static str)> {
        self.forget_finished_header();
        if self.conn.in_flight.load(Ordering::SeqCst) > 0 {
            // Waiting for a body is the body's deadline (see `IdleBody`); waiting while
            // the server works is no fault of the client.
            return None;
        }
        Some(match self.header_started {
            Some(t) => (
                t + self.limits.header_read_timeout,
                "request header timed out",
            ),
            None => (
                self.conn.idle_since() + self.limits.idle_timeout,
                "idle connection timed out",
            ),
        })
    }

    /// A write's outcome: any progress (or error) ends a stall; a write still pending
    /// runs against the write deadline.
    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        p: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match p {
            Poll::Ready(r) => {
                self.write_stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.poll_write_deadline(cx).map(Err),
        }
    }

    fn poll_write_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if self.exempt() {
            return Poll::Pending;
        }
        let since = *self.write_stalled.get_or_insert_with(Instant::now);
        let deadline = since + self.limits.body_idle_timeout;
        if self.write_timer.deadline() != deadline {
            self.write_timer.as_mut().reset(deadline);
        }
        match self.write_timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(timed_out("response write stalled")),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.forget_finished_header();
                    if self.header_started.is_none()
                        && self.conn.in_flight.load(Ordering::SeqCst) == 0
                    {
                        self.header_started = Some(Instant::now());
                    }
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                if self.exempt() {
                    return Poll::Pending;
                }
                let Some((deadline, what)) = self.read_deadline() else {
                    if let Ok(mut p) = self.conn.parked.lock() {
                        *p = Some(cx.waker().clone());
                    }
                    // The request may have ended between the check and the parking.
                    if self.conn.in_flight.load(Ordering::SeqCst) == 0 {
                        cx.waker().wake_by_ref();
                    }
                    return Poll::Pending;
                };
                if self.read_timer.deadline() != deadline {
                    self.read_timer.as_mut().reset(deadline);
                }
                ready!(self.read_timer.as_mut().poll(cx));
                tracing::debug!(reason = what, "closing HTTP connection");
                Poll::Ready(Err(timed_out(what)))
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let p = Pin::new(&mut self.io).poll_write(cx, buf);
        self.after_write(cx, p)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let p = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.after_write(cx, p)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Ready(r) => {
                self.write_stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.poll_write_deadline(cx).map(Err),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A request body that fails when no byte arrives for `timeout`: an upload may be as big
/// and as slow as it likes, as long as it moves.
struct IdleBody<B> {
    inner: B,
    timeout: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

#[derive(Debug, thiserror::Error)]
#[error("the request body stalled")]
struct BodyStalled;

impl<B> http_body::Body for IdleBody<B>
where
    B: http_body::Body + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = B::Data;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                self.timer = None;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let timeout = self.timeout;
                let timer = self
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                ready!(timer.as_mut().poll(cx));
                Poll::Ready(Some(Err(BodyStalled.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that ends its request's time in flight when it is done.
struct Tracked {
    inner: Body,
    _in_flight: InFlight,
}

impl http_body::Body for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

// --- serving --------------------------------------------------------------------------------

/// Serves one accepted connection until it ends, or until `stop` asks it to finish.
async fn serve_connection<IO>(
    io: IO,
    peer: SocketAddr,
    router: Router,
    limits: Arc<HttpLimits>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = Arc::new(ConnState {
        born: Instant::now(),
        in_flight: AtomicUsize::new(0),
        started: AtomicU64::new(0),
        idle_since_ms: AtomicU64::new(0),
        upgraded: AtomicBool::new(false),
        parked: Mutex::new(None),
    });
    let io = hyper_util::rt::TokioIo::new(Watched::new(io, conn.clone(), limits.clone()));
    let service = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
        let client = limits.trusted_proxies.client(peer.ip(), req.headers());
        req.extensions_mut()
            .insert(ConnectInfo(ClientAddr(SocketAddr::new(
                client,
                peer.port(),
            ))));
        let in_flight = InFlight::start(&conn);
        let conn = conn.clone();
        let timeout = limits.body_idle_timeout;
        let req = req.map(|inner| IdleBody {
            inner,
            timeout,
            timer: None,
        });
        let router = router.clone();
        async move {
            let response = tower::ServiceExt::oneshot(router, req).await?;
            // Only an upgrade that happened (101, RFC 9110 15.2.2: after an authenticated
            // WebSocket handshake) frees the connection from the HTTP deadlines; an
            // `Upgrade` header alone proves nothing.
            if response.status() == axum::http::StatusCode::SWITCHING_PROTOCOLS {
                conn.upgraded.store(true, Ordering::SeqCst);
            }
            Ok::<_, std::convert::Infallible>(response.map(|inner| {
                Body::new(Tracked {
                    inner,
                    _in_flight: in_flight,
                })
            }))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // Our own deadlines live in `Watched`; hyper's would need its timer and cannot tell an
    // idle connection from a slow header.
    builder.header_read_timeout(None);
    let connection = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        r = connection.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(client = %peer, error = %e, "HTTP connection ended");
            }
            return;
        }
        _ = stop.wait_for(|s| *s) => {}
    }
    connection.as_mut().graceful_shutdown();
    if let Err(e) = connection.await {
        tracing::debug!(client = %peer, error = %e, "HTTP connection ended");
    }
}

/// The accept loop shared by HTTP and HTTPS: admits connections under the per-address cap
/// and hands each to `start` on a task of its own. When `shutdown` completes it stops
/// accepting, asks every connection to finish its requests, and closes what is left after
/// [`SHUTDOWN_GRACE`].
async fn accept_loop<F, Fut>(
    listener: TcpListener,
    limits: Arc<HttpLimits>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    start: F,
) -> io::Result<()>
where
    F: Fn(TcpStream, SocketAddr, tokio::sync::watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let table = Arc::new(PerAddress {
        open: Mutex::new(HashMap::new()),
        max: limits.max_connections_per_address,
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (sock, peer) = tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let uncapped = limits.trusted_proxies.trusts(peer.ip());
        let Some(admitted) = table.admit(peer.ip(), uncapped) else {
            tracing::debug!(client = %peer, "too many connections from this address");
            drop(sock);
            continue;
        };
        let _ = sock.set_nodelay(true);
        let task = start(sock, peer, stop_rx.clone());
        connections.spawn(async move {
            task.await;
            drop(admitted);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::info!(
            open = connections.len(),
            "closing HTTP connections still open at shutdown"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// Serves plain HTTP on `listener` with `limits` until `shutdown` completes.
pub async fn serve_http(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let limits = Arc::new(limits);
    let l = limits.clone();
    accept_loop(listener, limits, shutdown, move |sock, peer, stop| {
        serve_connection(sock, peer, router.clone(), l.clone(), stop)
    })
    .await
}

/// Serves HTTPS like [`serve_http`]; each handshake runs on its connection's own task, so
/// a slow or hostile one never holds up the others.
pub async fn serve_https(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    router: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let limits = Arc::new(limits);
    let l = limits.clone();
    accept_loop(listener, limits, shutdown, move |sock, peer, stop| {
        let (acceptor, router, limits) = (acceptor.clone(), router.clone(), l.clone());
        async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(sock)).await {
                Ok(Ok(tls)) => serve_connection(tls, peer, router, limits, stop).await,
                Ok(Err(e)) => tracing::debug!(client = %peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(client = %peer, "TLS handshake timed out"),
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarding_headers_count_only_from_trusted_proxies() {
        let none = TrustedProxies::default();
        let h = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(none.client(ip("127.0.0.1"), &h), ip("127.0.0.1"));

        let proxies = TrustedProxies::parse(&["127.0.0.1/32", "::1", "10.0.0.0/8"]).unwrap();
        assert_eq!(proxies.client(ip("127.0.0.1"), &h), ip("203.0.113.9"));
        // A stranger's own header is not believed.
        assert_eq!(proxies.client(ip("198.51.100.1"), &h), ip("198.51.100.1"));
        // The right-most untrusted hop: the left ones were written by the client.
        let h = headers(&[("x-forwarded-for", "1.2.3.4, 203.0.113.9, 10.1.1.1")]);
        assert_eq!(proxies.client(ip("::1"), &h), ip("203.0.113.9"));
        // Several header lines are one list (RFC 9110 5.3).
        let h = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "203.0.113.7"),
        ]);
        assert_eq!(proxies.client(ip("127.0.0.1"), &h), ip("203.0.113.7"));
        // RFC 7239: Forwarded wins, with ports, quotes and IPv6 brackets.
        let h = headers(&[
            ("x-forwarded-for", "9.9.9.9"),
            (
                "forwarded",
                "for=1.2.3.4;proto=https, for=\"[2001:db8:cafe::17]:4711\";by=10.0.0.1",
            ),
        ]);
        assert_eq!(proxies.client(ip("10.0.0.2"), &h), ip("2001:db8:cafe::17"));
        let h = headers(&[("forwarded", "for=192.0.2.60:8080")]);
        assert_eq!(proxies.client(ip("127.0.0.1"), &h), ip("192.0.2.60"));
        // An obfuscated hop leaves the proxy's own address.
        let h = headers(&[("forwarded", "for=_hidden, for=unknown")]);
        assert_eq!(proxies.client(ip("127.0.0.1"), &h), ip("127.0.0.1"));
        // No header at all: the proxy itself.
        assert_eq!(
            proxies.client(ip("127.0.0.1"), &HeaderMap::new()),
            ip("127.0.0.1")
        );
        assert!(TrustedProxies::parse(&["10.0.0.0/33"]).is_err());
        assert!(TrustedProxies::parse(&["proxy.example"]).is_err());
    }

    #[test]
    fn an_ipv6_client_is_capped_by_its_64() {
        let table = Arc::new(PerAddress {
            open: Mutex::new(HashMap::new()),
            max: 2,
        });
        let a = table.admit(ip("2001:db8::1"), false);
        let b = table.admit(ip("2001:db8::2"), false);
        assert!(a.is_some() && b.is_some());
        assert!(table.admit(ip("2001:db8::3"), false).is_none());
        assert!(table.admit(ip("2001:db8:0:1::3"), false).is_some());
        drop(a);
        assert!(table.admit(ip("2001:db8::4"), false).is_some());
        assert!(table.admit(ip("2001:db8::5"), true).is_some());
    }
}

//! The router: the Session resource (RFC 8620 2) at `/.well-known/jmap` and
//! `/jmap/session`, and the API endpoint (3.1) at `/jmap/api`. Every route authenticates;
//! errors never leak internals (a JMAP error, a problem+json, or a bare status).

use crate::auth::{AuthError, Authenticator, Principal};
use crate::http::HttpLimits;
use crate::tls::ClientAddr;
use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jmap_proto::capability::{CoreCapability, SessionCapabilities};
use jmap_proto::{Account, Id, RequestLimits, Session, parse_request};

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use store::Store;

/// What every handler shares.
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub auth: Authenticator,
    pub core: CoreCapability,
    /// The URL clients reach this server at, without a trailing slash
    /// (`http://127.0.0.1:8080`); the Session's URLs are built from it.
    pub base_url: String,
    // push: the connections following account changes, and their limits.
    pub push: Arc<crate::push::Hub>,
    // The undo window of a submission without FUTURERELEASE hold.
    pub submission_delay: std::time::Duration,
    /// Rung after a submission is queued, so the engine's worker looks at once.
    pub submission_waker: Option<Arc<tokio::sync::Notify>>,
    /// Bounds the memory of answers that carry large messages.
    pub large_bodies: crate::jmap::large::LargeBodies,
    /// Fetches a message whose body is not stored yet, on the engine's priority lane;
    /// without it (no engine) such a request is `serverUnavailable` / 503.
    pub bodies: Option<Arc<dyn crate::BodyFetch>>,
    /// Adding accounts from the browser; without it (no key to encrypt secrets with)
    /// those routes answer 404.
    pub setup: Option<Arc<crate::setup::Setup>>,
    /// ManageSieve connections for SieveScript and VacationResponse (the engine's);
    /// without it those methods are `serverUnavailable`.
    pub sieve: Option<Arc<engine::sieve::Sieve>>,
}

/// A short undo window: a submission waits this long before it is sent, unless the
/// client asked for another hold (RFC 4865 FUTURERELEASE).
pub const DEFAULT_SUBMISSION_DELAY: std::time::Duration = std::time::Duration::from_secs(5);

impl AppState {
    pub fn new(store: Arc<dyn Store>, base_url: &str) -> Self {
        AppState {
            auth: Authenticator::new(store.clone()),
            push: crate::push::Hub::new(store.as_ref(), crate::push::Limits::default()),
            store,
            // The collations Email/query sorts with.
            core: CoreCapability {
                collation_algorithms: store::Collation::NAMES
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                // Write-back: marking a few thousand messages read is one Email/set.
                max_objects_in_set: 10_000,
                ..CoreCapability::default()
            },
            base_url: base_url.trim_end_matches('/').to_string(),
            submission_delay: DEFAULT_SUBMISSION_DELAY,
            submission_waker: None,
            large_bodies: Default::default(),
            bodies: None,
            setup: None,
            sieve: None,
        }
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/.well-known/jmap", get(session))
        .route("/jmap/session", get(session))
        .route("/jmap/api", post(api).get(api_not_post))
        .route(
            "/jmap/download/{account}/{blob}/{name}",
            get(crate::download::download),
        )
        // push: WebSocket (RFC 8887) and EventSource (RFC 8620 7.3)
        .route("/jmap/ws", get(crate::push::ws::upgrade))
        .route("/jmap/eventsource", get(crate::push::eventsource::events))
        .route("/jmap/eventsource/", get(crate::push::eventsource::events))
        // Blob upload.
        .route("/jmap/upload/{account}/", post(crate::upload::upload))
        .route("/jmap/upload/{account}", post(crate::upload::upload))
        .route("/", get(crate::web::app))
        .route("/assets/{*file}", get(crate::web::app))
        .route("/favicon.svg", get(crate::web::app))
        .route("/auth/login", post(crate::web::login))
        .route("/auth/logout", post(crate::web::logout))
        .route("/web/html/{account}/{blob}", get(crate::web::html))
        .route(
            "/web/accounts",
            get(crate::setup::list_route).post(crate::setup::add_route),
        )
        .route("/web/accounts/discover", post(crate::setup::discover_route))
        .route("/web/accounts/try", post(crate::setup::try_route))
        .route("/web/oauth/start", get(crate::setup::oauth::start_route))
        .route(
            "/web/oauth/callback",
            get(crate::setup::oauth::callback_route),
        )
        .route(
            "/web/accounts/{id}",
            axum::routing::patch(crate::setup::edit_route).delete(crate::setup::remove_route),
        )
        .with_state(state)
}

/// Serves plain HTTP until `shutdown` completes, then lets running requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, HttpLimits::default(), shutdown).await
}

/// [`serve`] with the connection deadlines and caps of `limits`.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::http::serve_http(listener, router(state), limits, shutdown).await
}

/// Serves HTTPS on `listener` with `acceptor`, like [`serve`].
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_tls_with(listener, acceptor, state, HttpLimits::default(), shutdown).await
}

/// [`serve_tls`] with the connection deadlines and caps of `limits`.
pub async fn serve_tls_with(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    state: Arc<AppState>,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::http::serve_https(listener, acceptor, router(state), limits, shutdown).await
}

pub(crate) fn client_ip(req_ext: &axum::http::Extensions) -> IpAddr {
    req_ext
        .get::<ConnectInfo<ClientAddr>>()
        .map(|c| c.0.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// RFC 9110 10.2.3: when to come back, for a 429 (RFC 6585 4) or a 503.
fn retry_after(status: StatusCode, e: &AuthError, secs: u64) -> Response {
    let mut r = (status, e.to_string()).into_response();
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

fn auth_failure(e: AuthError) -> Response {
    match e {
        AuthError::Missing | AuthError::Invalid => {
            let mut r = (StatusCode::UNAUTHORIZED, e.to_string()).into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"Tidings\", charset=\"UTF-8\""),
            );
            r
        }
        AuthError::RateLimited(secs) => retry_after(StatusCode::TOO_MANY_REQUESTS, &e, secs),
        AuthError::Busy(secs) => retry_after(StatusCode::SERVICE_UNAVAILABLE, &e, secs),
        AuthError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

pub(crate) async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    ip: IpAddr,
) -> Result<Principal, Response> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    // The session cookie, when there is no Authorization.
    if value.is_none()
        && let Some(r) = crate::web::cookie_principal(state, headers, ip).await
    {
        return r.map_err(|e| web_failure(e, headers));
    }
    state
        .auth
        .authenticate(value, ip)
        .await
        .map_err(|e| web_failure(e, headers))
}

/// A 401 to our own web client carries no `WWW-Authenticate`, so the
/// browser shows our sign-in page rather than its own password dialog.
fn web_failure(e: AuthError, headers: &HeaderMap) -> Response {
    let mut r = auth_failure(e);
    if headers.contains_key(crate::web::WEB_CLIENT_HEADER) {
        r.headers_mut().remove(header::WWW_AUTHENTICATE);
    }
    r
}

/// Authenticates a request addressed to the account in its path (`accountId` of
/// downloads, uploads, sanitised HTML) and resolves it among the caller's accounts. An
/// account that is not the caller's answers 404 `not_found`, exactly like one that does
/// not exist.
pub(crate) async fn caller_account(
    state: &AppState,
    req: &axum::http::request::Parts,
    account: &str,
    not_found: &'static str,
) -> Result<(Principal, mail_types::AccountId), Response> {
    let principal = authenticate(state, &req.headers, client_ip(&req.extensions)).await?;
    let missing = || (StatusCode::NOT_FOUND, not_found).into_response();
    let account = crate::jmap::ids::parse('a', account)
        .map(mail_types::AccountId)
        .ok_or_else(missing)?;
    match state.store.user_accounts(principal.user).await {
        Ok(list) if list.iter().any(|a| a.id == account) => Ok((principal, account)),
        Ok(_) => Err(missing()),
        Err(_) => Err(StatusCode::SERVICE_UNAVAILABLE.into_response()),
    }
}

/// JMAP account id of a store account.
pub(crate) fn account_id(id: mail_types::AccountId) -> Option<Id> {
    crate::jmap::ids::id('a', id.0)
}

/// RFC 8621 1.3.1.
fn mail_capability() -> jmap_proto::capability::MailCapability {
    jmap_proto::capability::MailCapability {
        max_mailboxes_per_email: None,
        max_mailbox_depth: None,
        max_size_mailbox_name: 490,
        max_size_attachments_per_email: 50_000_000,
        email_query_sort_options: crate::jmap::email::SORT_OPTIONS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        may_create_top_level_mailbox: true,
    }
}

async fn build_session(state: &AppState, principal: &Principal) -> Result<Session, Response> {
    let accounts = state
        .store
        .user_accounts(principal.user)
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE.into_response())?;
    let mut map = BTreeMap::new();
    let mut digest = Sha256::new();
    for a in accounts {
        let Some(id) = account_id(a.id) else { continue };
        digest.update(id.as_str().as_bytes());
        digest.update(a.name.as_bytes());
        // The account's sync status as a Tidings capability.
        let sync = crate::web::sync_capability(state, &a).await;
        digest.update(sync.to_string().as_bytes());
        let extensions = crate::jmap::extensions::account_capabilities(state, &a).await;
        digest.update(format!("{extensions:?}").as_bytes());
        map.insert(
            id,
            Account {
                name: a.name,
                is_personal: true,
                is_read_only: false,
                account_capabilities: jmap_proto::capability::AccountCapabilities {
                    mail: Some(mail_capability()),
                    submission: Some(jmap_proto::capability::SubmissionCapability {
                        max_delayed_send: u64::try_from(crate::jmap::MAX_DELAYED_SEND).unwrap_or(0),
                        submission_extensions: std::collections::BTreeMap::from([(
                            "FUTURERELEASE".to_owned(),
                            vec![crate::jmap::MAX_DELAYED_SEND.to_string()],
                        )]),
                    }),
                    other: [(crate::web::SYNC_CAPABILITY.to_string(), sync)]
                        .into_iter()
                        .chain(extensions)
                        .collect(),
                },
            },
        );
    }
    let primary = map
        .keys()
        .next()
        .map(|id| {
            let mut p = BTreeMap::new();
            p.insert(jmap_proto::capability::CORE.to_string(), id.clone());
            p.insert(jmap_proto::capability::MAIL.to_string(), id.clone());
            p.insert(jmap_proto::capability::SUBMISSION.to_string(), id.clone());
            p
        })
        .unwrap_or_default();
    let base = &state.base_url;
    let mut session = Session {
        capabilities: {
            let mut c = SessionCapabilities::core(state.core.clone());
            c.mail = Some(Default::default());
            c.submission = Some(Default::default());
            // push: JMAP over WebSocket with push (RFC 8887 4).
            c.websocket = Some(jmap_proto::capability::WebSocketCapability {
                url: crate::push::ws::url(base),
                supports_push: true,
            });
            c
        },
        accounts: map,
        primary_accounts: primary,
        username: principal.name.clone(),
        api_url: format!("{base}/jmap/api"),
        download_url: format!(
            "{base}/jmap/download/{{accountId}}/{{blobId}}/{{name}}?type={{type}}"
        ),
        upload_url: format!("{base}/jmap/upload/{{accountId}}/"),
        event_source_url: format!(
            "{base}/jmap/eventsource/?types={{types}}&closeafter={{closeafter}}&ping={{ping}}"
        ),
        state: jmap_proto::State::from(hex::encode(&digest.finalize()[..8])),
    };
    crate::jmap::sieve::add_to_session(state.store.as_ref(), &mut session).await;
    crate::jmap::mdn::extend_session(state, principal, &mut session).await;
    crate::push::vapid::extend_session(&state.push, &mut session);
    crate::jmap::extensions::complete_session(&mut session);
    Ok(session)
}

async fn session(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let ip = client_ip(req.extensions());
    let principal = match authenticate(&state, req.headers(), ip).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    match build_session(&state, &principal).await {
        Ok(s) => json_response(StatusCode::OK, "application/json", &s),
        Err(r) => r,
    }
}

pub(crate) fn json_response<T: serde::Serialize>(
    status: StatusCode,
    content_type: &'static str,
    v: &T,
) -> Response {
    match serde_json::to_vec(v) {
        Ok(body) => {
            let mut r = (status, body).into_response();
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            r
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn problem(e: jmap_proto::RequestError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut r = (status, e.to_json()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(jmap_proto::error::PROBLEM_JSON),
    );
    r
}

async fn api(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let ip = client_ip(req.extensions());
    let principal = match authenticate(&state, req.headers(), ip).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let limit = usize::try_from(state.core.max_size_request).unwrap_or(usize::MAX);
    // Read one byte past the limit, so an oversized request is told `limit`, not cut.
    let body: Body = req.into_body();
    let bytes = match to_bytes(body, limit.saturating_add(1)).await {
        Ok(b) => b,
        Err(_) => {
            return problem(jmap_proto::RequestError::limit(
                "maxSizeRequest",
                "the request is larger than maxSizeRequest",
            ));
        }
    };
    match handle_request(&state, &principal, &bytes).await {
        Ok((response, held)) if held.is_empty() => {
            json_response(StatusCode::OK, "application/json", &response)
        }
        Ok((response, held)) => streamed_json(response, held),
        Err(ApiError::Request(e)) => problem(e),
        Err(ApiError::Unavailable) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// A GET (or anything but POST) at the API URL: RFC 8620 3.1 takes requests by POST only.
/// Answered as a request-level error (3.6.1, problem details) so a client that probes the
/// URL, or a person with a browser, reads why; `Allow` names the method (RFC 9110 15.5.6).
async fn api_not_post() -> Response {
    let mut r = problem(jmap_proto::RequestError::not_request(
        "send a JMAP Request object with POST (RFC 8620 3.1)",
    ));
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    r
}

// --- push: request handling shared by /jmap/api and the WebSocket (RFC 8887) ------------

/// Why a request got no Response.
pub(crate) enum ApiError {
    /// A request-level error (RFC 8620 3.6.1).
    Request(jmap_proto::RequestError),
    /// The store could not be read.
    Unavailable,
}

/// A Response written out as it is serialized, in chunks, instead of as one buffer: an
/// answer carrying a large message then costs its size once, not twice. `held` (the large
/// message budget the request took) is released once the last byte is handed over.
fn streamed_json(
    response: jmap_proto::Response,
    held: Vec<tokio::sync::OwnedSemaphorePermit>,
) -> Response {
    const CHUNK: usize = 64 * 1024;
    struct Chunks {
        tx: tokio::sync::mpsc::Sender<Result<axum::body::Bytes, std::io::Error>>,
        buf: Vec<u8>,
    }
    impl Chunks {
        fn send(&mut self) -> std::io::Result<()> {
            let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
            self.tx
                .blocking_send(Ok(axum::body::Bytes::from(chunk)))
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
        }
    }
    impl std::io::Write for Chunks {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            // At most a chunk at a time: serde_json writes a string without escapes in
            // one call, and a 50 MB base64 value sent whole would sit in the channel, the
            // serialization would end and the budget be released before the client read
            // a byte of it.
            let n = b.len().min(CHUNK.saturating_sub(self.buf.len()).max(1));
            self.buf.extend_from_slice(&b[..n]);
            if self.buf.len() >= CHUNK {
                self.send()?;
            }
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            if self.buf.is_empty() {
                return Ok(());
            }
            self.send()
        }
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let mut out = Chunks {
            tx,
            buf: Vec::with_capacity(CHUNK),
        };
        // A client gone mid-answer ends the serialization (BrokenPipe); nothing to report.
        if serde_json::to_writer(&mut out, &response).is_ok() {
            let _ = std::io::Write::flush(&mut out);
        }
        drop(response);
        drop(held);
    });
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let mut r = (StatusCode::OK, Body::from_stream(stream)).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Parses and runs one JMAP Request of an authenticated user. The permits returned are
/// the large message budget the request took: hold them until the Response is written.
pub(crate) async fn handle_request(
    state: &AppState,
    principal: &Principal,
    bytes: &[u8],
) -> Result<(jmap_proto::Response, Vec<tokio::sync::OwnedSemaphorePermit>), ApiError> {
    let limits = RequestLimits::from(&state.core);
    let supported = [
        jmap_proto::capability::CORE,
        jmap_proto::capability::MAIL,
        jmap_proto::capability::SUBMISSION,
        jmap_proto::capability::WEBSOCKET,
        crate::jmap::sieve::URIS[0],
        crate::jmap::sieve::URIS[1],
        jmap_proto::capability::MDN,
        crate::push::vapid::CAPABILITY,
        jmap_proto::capability::QUOTA,
        jmap_proto::capability::BLOB,
    ];
    let request = parse_request(bytes, &limits, &supported).map_err(ApiError::Request)?;
    let session = build_session(state, principal)
        .await
        .map_err(|_| ApiError::Unavailable)?;
    let accounts: Vec<mail_types::AccountId> = session
        .accounts
        .keys()
        .filter_map(|id| crate::jmap::ids::parse('a', id.as_str()))
        .map(mail_types::AccountId)
        .collect();
    let held = crate::jmap::large::Held::default();
    let ctx = crate::jmap::Ctx {
        store: &state.store,
        accounts: &accounts,
        max_objects_in_get: usize::try_from(state.core.max_objects_in_get).unwrap_or(500),
        push: &state.push,
        max_objects_in_set: usize::try_from(state.core.max_objects_in_set).unwrap_or(500),
        submission_delay: state.submission_delay,
        submission_waker: state.submission_waker.as_ref(),
        large: &state.large_bodies,
        held: &held,
        bodies: state.bodies.as_ref(),
        sieve: state.sieve.as_ref(),
    };
    let response = crate::jmap::dispatch(principal, &ctx, request, session.state).await;
    Ok((response, held.take()))
}

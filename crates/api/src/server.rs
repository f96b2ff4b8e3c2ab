//! The router: which path goes to which handler, and the accept loops it is served by.
//! It is the crate's top: only `lib.rs` imports it, and it imports the handlers.

use crate::http::HttpLimits;
use crate::state::AppState;
use axum::Router;
use axum::routing::{get, post};
use std::future::Future;
use std::sync::Arc;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/.well-known/jmap", get(crate::endpoint::session))
        .route("/jmap/session", get(crate::endpoint::session))
        .route(
            "/jmap/api",
            post(crate::endpoint::api).get(crate::endpoint::api_not_post),
        )
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
        // The app's top-level files: favicon, web app manifest and icons, the service worker
        // (which must sit at the root to control the whole app) and the appearance script
        // applied before the first paint. None is hashed, so each is revalidated like
        // index.html.
        .route("/{file}", get(crate::web::app))
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

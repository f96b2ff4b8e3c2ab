//! The HTTP face of Tidings: the JMAP server (`jmap-server`) as it lands over HTTP (RFC
//! 8620 3.1), WebSocket (RFC 8887) and EventSource (RFC 8620 7.3), the web client, and
//! account setup from the browser. Only this crate knows axum, hyper and tower.
//!
//! # Layout
//! - `state`: `AppState`, what every handler shares (the `JmapServer` and the HTTP parts).
//! - `caller`: the client's address, authentication of a request, the answers to a
//!   failure, the account a path names. `state` and `caller` are leaves: every handler
//!   imports them, they import no handler.
//! - `server`: the router and the accept loops it is served by; nothing imports it back.
//! - `endpoint`: the Session resource and the API endpoint.
//! - `auth`: Basic (Argon2) and Bearer (API token) authentication, failure rate limits.
//! - `download`: blob download with ownership checks, ranges and safe headers.
//! - `upload`: blob upload (RFC 8620 6.1) into the account's uploads.
//! - `http`: the accept loop: connection deadlines, per-address cap, trusted proxies.
//! - `tls`: HTTPS certificate loading (handshakes beside the accept loop).
//! - `push`: the WebSocket and EventSource adapters of the JMAP server's push hub.
//! - `web`: the embedded web client, sign-in with a session cookie, sanitised HTML mail.
//! - `setup`: adding, trying, editing and removing mail accounts from the browser.

pub mod auth;
mod caller;
mod download;
mod endpoint;
pub mod http;
mod push;
mod server;
pub mod setup;
mod state;
pub mod tls;
pub mod upload;
pub mod web;

pub use http::{HttpLimits, TrustedProxies};
pub use server::{router, serve, serve_tls, serve_tls_with, serve_with};
pub use state::AppState;

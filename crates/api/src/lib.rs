//! The HTTP face of Tidings: the JMAP API as it lands (RFC 8620). Only this crate knows
//! axum.
//!
//! # Layout
//! - `auth`: Basic (Argon2) and Bearer (API token) authentication, failure rate limits.
//! - `server`: the router, the Session resource, the API endpoint, error responses.
//! - `bodies`: messages not stored yet, fetched on demand through the engine (`BodyFetch`).
//! - `download`: blob download with ownership checks, ranges and safe headers.
//! - `upload`: blob upload (RFC 8620 6.1) into the account's uploads.
//! - `jmap`: method dispatch; one file per object as the methods land.
//! - `http`: the accept loop: connection deadlines, per-address cap, trusted proxies.
//! - `tls`: HTTPS certificate loading (handshakes beside the accept loop).
//! - `push`: the hub following account changes, WebSocket (RFC 8887), EventSource.
//! - `web`: the embedded web client, sign-in with a session cookie, sanitised HTML mail.
//! - `setup`: adding, trying, editing and removing mail accounts from the browser.

pub mod auth;
// Bodies fetched on demand, blob ids of messages.
pub mod bodies;
mod download;
pub mod http;
mod jmap;
mod push;
mod server;
pub mod setup;
pub mod tls;
pub mod upload;
pub mod web;

pub use bodies::{BodyFetch, FetchError};
pub use http::{HttpLimits, TrustedProxies};
pub use push::vapid::{Vapid, VapidError};
pub use push::{Hub as PushHub, Limits as PushLimits};
pub use server::{AppState, router, serve, serve_tls, serve_tls_with, serve_with};

/// push: starts the delivery tasks of the stored push subscriptions (at server start).
pub async fn start_push(state: &AppState) -> Result<(), store::Error> {
    push::subscription::start_all(&state.push, &state.store).await
}

//! Push over HTTP: the WebSocket (RFC 8887) and EventSource (RFC 8620 7.3) adapters of
//! `jmap_server::push`'s hub. The hub, its coalescing slots and push states, and Web Push
//! delivery live in `jmap-server`; here is only what speaks axum.

pub(crate) mod eventsource;
pub(crate) mod ws;

//! The HTTP face of Tidings: the JMAP API as it lands (RFC 8620). Only this crate knows
//! axum.
//!
//! # Layout
//! - `auth`: Basic (Argon2) and Bearer (API token) authentication, failure rate limits.
//! - `server`: the router, the Session resource, the API endpoint, error responses.
//! - `jmap`: method dispatch; one file per method as they land.

pub mod auth;
mod jmap;
mod server;

pub use server::{AppState, router, serve};

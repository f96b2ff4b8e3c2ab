//! The HTTP face of Tidings (the JMAP API as it lands). Only this crate knows axum.
//!
//! # Layout
//! - `auth`: Basic (Argon2) and Bearer (API token) authentication, failure rate limits.

pub mod auth;

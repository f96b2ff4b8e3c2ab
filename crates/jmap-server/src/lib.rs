//! The JMAP server of Tidings (RFC 8620, RFC 8621, RFC 8887's push): the methods, the
//! Session object, the push hub and Web Push delivery. It knows no HTTP server: the HTTP
//! layer (`api`) authenticates the caller and hands [`JmapServer::handle`] the request's
//! bytes, whatever carried them (a POST to the API URL or a WebSocket frame).
//!
//! # Layout
//! - [`JmapServer`]: what every request needs (the store, the limits, the push hub, the
//!   engine's fetchers), [`JmapServer::handle`] and [`JmapServer::session`].
//! - `session`: the Session resource (RFC 8620 2) and the account capabilities.
//! - `jmap`: method dispatch; one file per object or method.
//! - `bodies`: messages not stored yet, fetched on demand through the engine (`BodyFetch`).
//! - `push`: the hub that fans the store's committed changes out to the connections
//!   following them, PushSubscription (RFC 8620 7.2) and its Web Push delivery (RFC 8030,
//!   8291, 8292), with the SSRF guard on the URLs it posts to.

pub mod bodies;
pub mod jmap;
pub mod push;
pub mod session;

pub use bodies::{BodyFetch, FetchError};
pub use push::vapid::{Vapid, VapidError};
pub use push::{Hub as PushHub, Limits as PushLimits};

use jmap_proto::capability::CoreCapability;
use jmap_proto::{RequestLimits, parse_request};
use mail_types::UserId;
use std::sync::Arc;
use std::time::Duration;
use store::Store;

/// The caller of a request, once the HTTP layer has authenticated it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user: UserId,
    pub name: String,
}

/// How long an upload no Email references is kept (RFC 8620 6.1 asks for at least an
/// hour): Blob/upload and Blob/get clean up with it, like the upload route.
pub const UPLOAD_TTL: i64 = 24 * 3600;

/// A short undo window: a submission waits this long before it is sent, unless the
/// client asked for another hold (RFC 4865 FUTURERELEASE).
pub const DEFAULT_SUBMISSION_DELAY: Duration = Duration::from_secs(5);

/// What every JMAP request shares.
pub struct JmapServer {
    pub store: Arc<dyn Store>,
    pub core: CoreCapability,
    /// The URL clients reach this server at, without a trailing slash
    /// (`http://127.0.0.1:8080`); the Session's URLs are built from it.
    pub base_url: String,
    /// The connections following account changes, and their limits.
    pub push: Arc<push::Hub>,
    /// The undo window of a submission without FUTURERELEASE hold.
    pub submission_delay: Duration,
    /// Bounds the memory of answers that carry large messages.
    pub large_bodies: jmap::large::LargeBodies,
    /// Fetches a message whose body is not stored yet, on the engine's priority lane;
    /// without it (no engine) such a request is `serverUnavailable` / 503.
    pub bodies: Option<Arc<dyn BodyFetch>>,
    /// ManageSieve connections for SieveScript and VacationResponse (the engine's);
    /// without it those methods are `serverUnavailable`.
    pub sieve: Option<Arc<engine::sieve::Sieve>>,
}

/// Why a request got no Response.
#[derive(Debug)]
pub enum ApiError {
    /// A request-level error (RFC 8620 3.6.1).
    Request(jmap_proto::RequestError),
    /// The store could not be read.
    Unavailable,
}

/// The large message budget a request took: hold it until the Response is written.
pub type Held = Vec<tokio::sync::OwnedSemaphorePermit>;

impl JmapServer {
    pub fn new(store: Arc<dyn Store>, base_url: &str) -> Self {
        JmapServer {
            push: push::Hub::new(store.as_ref(), push::Limits::default()),
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
            large_bodies: Default::default(),
            bodies: None,
            sieve: None,
        }
    }

    /// Starts the delivery tasks of the stored push subscriptions (at server start).
    pub async fn start_push(&self) -> Result<(), store::Error> {
        push::subscription::start_all(&self.push, &self.store).await
    }

    /// Parses and runs one JMAP Request of an authenticated user. The permits returned are
    /// the large message budget the request took: hold them until the Response is written.
    pub async fn handle(
        &self,
        principal: &Principal,
        bytes: &[u8],
    ) -> Result<(jmap_proto::Response, Held), ApiError> {
        let limits = RequestLimits::from(&self.core);
        let supported = [
            jmap_proto::capability::CORE,
            jmap_proto::capability::MAIL,
            jmap_proto::capability::SUBMISSION,
            jmap_proto::capability::WEBSOCKET,
            jmap::sieve::URIS[0],
            jmap::sieve::URIS[1],
            jmap_proto::capability::MDN,
            push::vapid::CAPABILITY,
            jmap_proto::capability::QUOTA,
            jmap_proto::capability::BLOB,
        ];
        let request = parse_request(bytes, &limits, &supported).map_err(ApiError::Request)?;
        let session = self
            .session(principal)
            .await
            .map_err(|_| ApiError::Unavailable)?;
        let accounts: Vec<mail_types::AccountId> = session
            .accounts
            .keys()
            .filter_map(|id| jmap::ids::parse('a', id.as_str()))
            .map(mail_types::AccountId)
            .collect();
        let held = jmap::large::Held::default();
        let ctx = jmap::Ctx {
            store: &self.store,
            accounts: &accounts,
            max_objects_in_get: usize::try_from(self.core.max_objects_in_get).unwrap_or(500),
            push: &self.push,
            max_objects_in_set: usize::try_from(self.core.max_objects_in_set).unwrap_or(500),
            submission_delay: self.submission_delay,
            large: &self.large_bodies,
            held: &held,
            bodies: self.bodies.as_ref(),
            sieve: self.sieve.as_ref(),
        };
        let response = jmap::dispatch(principal, &ctx, request, session.state).await;
        Ok((response, held.take()))
    }
}

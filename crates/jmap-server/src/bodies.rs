//! Messages whose body is not stored yet, and the blob ids that name messages.
//!
//! The sync stores headers first and bodies later (newest first). A request that needs a
//! body the background pass has not reached (Email/get body and header properties, a
//! download, Email/parse, Email/copy, Email/import or Email/set from a message blob, an
//! EmailSubmission) asks the engine for it through [`BodyFetch`] and waits, bounded by
//! [`FETCH_TIMEOUT`]. This crate never speaks IMAP: the engine implements the trait.
//!
//! An Email's blobId is `b<sha256>` (the content address, as uploads and message parts
//! are) when its bytes were stored with it, else `bm<email id>`, fixed when the Email was
//! created from its header (see `store::EmailView::jmap_blob_id`). Part blob ids are
//! always content addressed: they are only ever seen once the body is stored.

use mail_types::{AccountId, EmailId};
use std::sync::Arc;
use std::time::Duration;
use store::{EmailView, Store};

/// Why a message could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The message is not on the server any more (expunged before its body was fetched).
    #[error("the message is no longer on its server")]
    Gone,
    /// The server cannot be reached or did not answer in time; asking again later may work.
    #[error("the mail server is unavailable: {0}")]
    Unavailable(String),
}

/// "Fetch this Email's message now", ahead of the background body pass. Implemented by the
/// engine (`engine::BodyFetcher`); concurrent calls for one Email share one fetch.
pub trait BodyFetch: Send + Sync {
    /// Fetches the message of `email` from its server and stores it through the store's
    /// normal body path (index and counters included). `Ok` once it is stored (or was
    /// already).
    fn fetch_body(
        &self,
        account: AccountId,
        email: EmailId,
    ) -> futures::future::BoxFuture<'_, Result<(), FetchError>>;
}

/// The longest a request waits for a message to be fetched; the fetch itself is bounded
/// by the engine's IMAP timeouts, this bounds the request whatever happens there.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a message or blob could not be read.
#[derive(Debug)]
pub enum BlobError {
    /// No such blob for this account, or the message is gone from the server.
    NotFound,
    /// The server holding the message cannot be reached now (JMAP `serverUnavailable`,
    /// HTTP 503).
    Unavailable(String),
    /// The store failed.
    Store(store::Error),
}

impl From<store::Error> for BlobError {
    fn from(e: store::Error) -> Self {
        BlobError::Store(e)
    }
}

impl BlobError {
    /// As a JMAP method error (for the cases a method does not turn into `notFound`).
    pub fn method_error(&self) -> jmap_proto::MethodError {
        use jmap_proto::{MethodError, MethodErrorType};
        match self {
            BlobError::NotFound => MethodError::with_description(
                MethodErrorType::ServerUnavailable,
                "the message is no longer on its server",
            ),
            BlobError::Unavailable(why) => MethodError::with_description(
                MethodErrorType::ServerUnavailable,
                format!("the message is not stored yet and its server is unavailable: {why}"),
            ),
            BlobError::Store(e) => MethodError::server_fail(e.to_string()),
        }
    }
}

/// The store and the engine's fetcher, as every reading path needs them.
#[derive(Clone, Copy)]
pub struct Messages<'a> {
    pub store: &'a Arc<dyn Store>,
    pub bodies: Option<&'a Arc<dyn BodyFetch>>,
}

/// A blob id that names bytes: an Email's message, or content (`b<sha>`, `b<sha>-<part>`).
enum BlobRef<'a> {
    Email(EmailId),
    Content(&'a str, Option<String>),
}

fn parse(id: &str) -> Option<BlobRef<'_>> {
    if let Some(n) = id.strip_prefix("bm") {
        // Canonical decimal only, so one Email has one blob id.
        let ok = !n.is_empty() && n.len() <= 18 && n.bytes().all(|b| b.is_ascii_digit());
        return (ok && !n.starts_with('0'))
            .then(|| n.parse().ok().map(|n| BlobRef::Email(EmailId(n))))
            .flatten();
    }
    let (sha, part) = crate::jmap::body::parse_blob_id(id)?;
    Some(BlobRef::Content(sha, part))
}

/// Bytes a blob id resolved to: the whole message, its content address (what part blob
/// ids are built on) and, for a part id, the part to take from it.
pub struct Resolved {
    pub message: Vec<u8>,
    pub sha: String,
    pub part: Option<String>,
}

impl Messages<'_> {
    /// The stored bytes with content address `sha`, when `account` holds them (a message
    /// of one of its Emails, or an upload): a blob of another account is not found, like
    /// one that does not exist (RFC 8620 6.2).
    pub async fn stored(
        &self,
        account: AccountId,
        sha: &str,
    ) -> Result<Option<Vec<u8>>, store::Error> {
        if !self.store.blob_in_account(account, sha).await? {
            return Ok(None);
        }
        self.store.blob(sha).await
    }

    /// The Email `id` of `account`, or `NotFound`.
    async fn view(&self, account: AccountId, id: EmailId) -> Result<EmailView, BlobError> {
        self.store
            .emails(account, &[id])
            .await?
            .into_iter()
            .next()
            .ok_or(BlobError::NotFound)
    }

    /// The Email with its body stored: fetched now when the background pass has not
    /// stored it yet.
    pub async fn with_body(
        &self,
        account: AccountId,
        view: EmailView,
    ) -> Result<EmailView, BlobError> {
        if view.blob_id.is_some() {
            return Ok(view);
        }
        let Some(bodies) = self.bodies else {
            return Err(BlobError::Unavailable(
                "no engine runs to fetch it".to_string(),
            ));
        };
        let id = view.id;
        match tokio::time::timeout(FETCH_TIMEOUT, bodies.fetch_body(account, id)).await {
            Ok(Ok(())) => {}
            Ok(Err(FetchError::Gone)) => return Err(BlobError::NotFound),
            Ok(Err(FetchError::Unavailable(why))) => return Err(BlobError::Unavailable(why)),
            Err(_) => {
                tracing::warn!(account = %account, email = id.0, "fetching a message on demand timed out");
                return Err(BlobError::Unavailable(
                    "the server did not answer in time".into(),
                ));
            }
        }
        let view = self.view(account, id).await?;
        if view.blob_id.is_none() {
            // Fetched, yet not stored: the Email lost its last copy meanwhile.
            return Err(BlobError::NotFound);
        }
        Ok(view)
    }

    /// The raw message of an Email and its content address, fetched first if need be.
    pub async fn message(
        &self,
        account: AccountId,
        view: EmailView,
    ) -> Result<(Vec<u8>, String), BlobError> {
        let view = self.with_body(account, view).await?;
        let sha = view.blob_id.ok_or(BlobError::NotFound)?;
        let raw = self.store.blob(&sha).await?.ok_or(BlobError::NotFound)?;
        Ok((raw, sha))
    }

    /// What a blob id of `account` names: an Email's message (fetched first if need be), a
    /// stored message or upload by content address, or a part of one.
    pub async fn resolve(&self, account: AccountId, blob_id: &str) -> Result<Resolved, BlobError> {
        match parse(blob_id).ok_or(BlobError::NotFound)? {
            BlobRef::Email(id) => {
                let view = self.view(account, id).await?;
                // Only the id the Email carries: `bm<id>` of an Email known by its content
                // address would be a second name for the same blob.
                if view.jmap_blob_id() != blob_id {
                    return Err(BlobError::NotFound);
                }
                let (message, sha) = self.message(account, view).await?;
                Ok(Resolved {
                    message,
                    sha,
                    part: None,
                })
            }
            BlobRef::Content(sha, part) => {
                let message = self
                    .stored(account, sha)
                    .await?
                    .ok_or(BlobError::NotFound)?;
                Ok(Resolved {
                    message,
                    sha: sha.to_string(),
                    part,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_blob_ids_parse_canonically() {
        assert!(matches!(parse("bm42"), Some(BlobRef::Email(EmailId(42)))));
        for bad in [
            "bm",
            "bm042",
            "bm4x",
            "bm-1",
            "bm99999999999999999999",
            "bmff",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
        let sha = "a".repeat(64);
        assert!(matches!(
            parse(&format!("b{sha}-1-2")),
            Some(BlobRef::Content(_, Some(p))) if p == "1.2"
        ));
    }
}

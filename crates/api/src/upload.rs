//! Blob upload (RFC 8620 6.1): `POST /jmap/upload/{accountId}/` with the bytes as the body.
//!
//! The bytes become a content-addressed blob owned by the account (`Store::put_upload`);
//! the answer is `{accountId, blobId, type, size}` with 201. A body larger than
//! `maxSizeUpload` is refused with a `limit` problem (413) before more than that is read;
//! more than `maxConcurrentUpload` uploads of one user at once with a `limit` problem
//! (429).
//! Uploads no Email references are forgotten after [`UPLOAD_TTL`] (RFC 8620 6.1 asks for
//! at least an hour); expired ones are swept at each upload.

use crate::state::AppState;
use axum::body::to_bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// How long an upload that no Email references is kept, in seconds.
pub use jmap_server::UPLOAD_TTL;

/// Uploads running per user, for `maxConcurrentUpload`.
fn running() -> &'static std::sync::Mutex<std::collections::HashMap<mail_types::UserId, u64>> {
    static RUNNING: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<mail_types::UserId, u64>>,
    > = std::sync::OnceLock::new();
    RUNNING.get_or_init(Default::default)
}

/// One running upload of a user; counted down when dropped.
struct Slot(mail_types::UserId);

impl Slot {
    fn take(user: mail_types::UserId, max: u64) -> Option<Slot> {
        let mut m = running().lock().ok()?;
        let n = m.entry(user).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Slot(user))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut m) = running().lock()
            && let Some(n) = m.get_mut(&self.0)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.0);
            }
        }
    }
}

fn problem(status: StatusCode, e: jmap_proto::RequestError) -> Response {
    let mut r = (status, e.to_json()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(jmap_proto::error::PROBLEM_JSON),
    );
    r
}

/// The media type as the client gave it, if it is a printable, reasonable one.
fn media_type(v: Option<&HeaderValue>) -> String {
    v.and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| {
            !t.is_empty()
                && t.len() <= 255
                && t.contains('/')
                && t.bytes().all(|b| (0x20..0x7f).contains(&b))
        })
        .unwrap_or("application/octet-stream")
        .to_string()
}

pub(crate) async fn upload(
    State(state): State<Arc<AppState>>,
    Path(account): Path<String>,
    req: Request,
) -> Response {
    let (req, body) = req.into_parts();
    let (principal, account) =
        match crate::caller::caller_account(&state, &req, &account, "no such account").await {
            Ok(found) => found,
            Err(r) => return r,
        };
    let limit = usize::try_from(state.core.max_size_upload).unwrap_or(usize::MAX);
    let too_large = || {
        problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            jmap_proto::RequestError::limit(
                "maxSizeUpload",
                format!("uploads are limited to {limit} bytes"),
            ),
        )
    };
    let declared = req
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large();
    }
    let Some(_slot) = Slot::take(principal.user, state.core.max_concurrent_upload) else {
        return problem(
            StatusCode::TOO_MANY_REQUESTS,
            jmap_proto::RequestError::limit(
                "maxConcurrentUpload",
                "too many uploads at once for this user",
            ),
        );
    };
    let content_type = media_type(req.headers.get(header::CONTENT_TYPE));
    let bytes = match to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => return too_large(),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    if let Err(e) = state.store.expire_uploads(now - UPLOAD_TTL).await {
        tracing::warn!(error = %e, "expiring old uploads");
    }
    let record = match state
        .store
        .put_upload(account, &content_type, bytes.to_vec())
        .await
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(account = %account, error = %e, "storing an upload");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    let body = serde_json::json!({
        "accountId": jmap_server::session::account_id(account),
        "blobId": format!("b{}", record.blob_id),
        "type": record.content_type,
        "size": record.size,
    });
    let mut r = (StatusCode::CREATED, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        let v = |s: &str| HeaderValue::from_str(s).ok();
        assert_eq!(media_type(v("image/png").as_ref()), "image/png");
        assert_eq!(
            media_type(v("text/plain; charset=utf-8").as_ref()),
            "text/plain; charset=utf-8"
        );
        assert_eq!(
            media_type(v("nonsense").as_ref()),
            "application/octet-stream"
        );
        assert_eq!(media_type(None), "application/octet-stream");
    }
}

//! The JMAP endpoints over HTTP: the Session resource (RFC 8620 2) at `/.well-known/jmap`
//! and `/jmap/session`, and the API endpoint (3.1) at `/jmap/api`. Both authenticate;
//! errors never leak internals (a JMAP error, a problem+json, or a bare status).

use crate::caller::{authenticate, client_ip};
use crate::state::AppState;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jmap_server::ApiError;
use std::sync::Arc;

pub(crate) async fn session(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let ip = client_ip(req.extensions());
    let principal = match authenticate(&state, req.headers(), ip).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    match state
        .session(&principal)
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE.into_response())
    {
        Ok(s) => json_response(StatusCode::OK, "application/json", &s),
        Err(r) => r,
    }
}

fn json_response<T: serde::Serialize>(
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

pub(crate) async fn api(State(state): State<Arc<AppState>>, req: Request) -> Response {
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
    match state.handle(&principal, &bytes).await {
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
pub(crate) async fn api_not_post() -> Response {
    let mut r = problem(jmap_proto::RequestError::not_request(
        "send a JMAP Request object with POST (RFC 8620 3.1)",
    ));
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    r
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

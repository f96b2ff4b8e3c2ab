//! Blob download (RFC 8620 6.2): `GET /jmap/download/{accountId}/{blobId}/{name}?type=`.
//!
//! A blob is served only to the owner of an account that holds it (a message of the
//! account, or an upload to it; a part of either, following attached messages). It never
//! changes (a content address, or the message of one Email: `jmap_server::bodies`), so it may be
//! cached for good (privately); a message not stored yet is fetched first. What is served is never
//! interpreted by the browser as a page of ours: `nosniff`, a sandboxing CSP, and
//! `attachment` unless the type is an image, audio or video.

use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize)]
pub(crate) struct DownloadQuery {
    #[serde(rename = "type")]
    content_type: Option<String>,
}

/// A MIME type we are willing to put in a header: `type/subtype` of token characters, and
/// its parameters whose name and value are tokens (RFC 2045 5.1), so that a client asking
/// for `text/plain; charset=utf-8` gets that (RFC 8620 6.2: the server sets the
/// Content-Type the `type` variable names). Anything else in a parameter drops it; a bad
/// type gives `application/octet-stream`.
fn safe_type(t: Option<&str>) -> String {
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 127
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    let mut parts = t.unwrap_or_default().split(';');
    let mut out = match parts.next().map(str::trim).and_then(|m| m.split_once('/')) {
        Some((a, b)) if ok(a) && ok(b) => {
            format!("{}/{}", a.to_ascii_lowercase(), b.to_ascii_lowercase())
        }
        _ => return "application/octet-stream".into(),
    };
    // A few parameters at most: a header, not a place for a client to store things.
    for p in parts.take(4) {
        let Some((k, v)) = p.trim().split_once('=') else {
            continue;
        };
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        if ok(k.trim()) && ok(v) {
            out.push_str(&format!("; {}={v}", k.trim().to_ascii_lowercase()));
        }
    }
    out
}

/// RFC 6266 / RFC 8187: `filename*=UTF-8''percent-encoded`, plus an ASCII fallback.
fn disposition(kind: &str, name: &str) -> String {
    let mut enc = String::new();
    for b in name.bytes().take(512) {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            enc.push(b as char);
        } else {
            enc.push_str(&format!("%{b:02X}"));
        }
    }
    let ascii: String = name
        .chars()
        .take(128)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-._ ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{enc}")
}

/// One `bytes=a-b` range (RFC 9110 14.1.2); anything else serves the whole blob.
fn range(header: Option<&str>, len: usize) -> Option<Result<(usize, usize), ()>> {
    let spec = header?.strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None; // several ranges: the whole blob is a valid answer
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: usize = n.parse().ok()?;
            if n == 0 {
                return Some(Err(()));
            }
            (len.saturating_sub(n), len.checked_sub(1)?)
        }
        (s, "") => (s.parse().ok()?, len.checked_sub(1)?),
        (s, e) => (
            s.parse().ok()?,
            e.parse::<usize>().ok()?.min(len.checked_sub(1)?),
        ),
    };
    if start > end || start >= len {
        return Some(Err(()));
    }
    Some(Ok((start, end)))
}

/// The headers of every answer that carries mail bytes (a download, a sanitised HTML
/// part): the browser must not sniff another type, `csp` confines what the bytes may do,
/// and a content-addressed blob never changes, so the browser may keep it.
pub(crate) fn blob_headers(h: &mut HeaderMap, csp: &'static str) {
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=31536000, immutable"),
    );
}

pub(crate) async fn download(
    State(state): State<Arc<AppState>>,
    Path((account, blob, name)): Path<(String, String, String)>,
    Query(q): Query<DownloadQuery>,
    req: axum::http::request::Parts,
) -> Response {
    let account = match crate::caller::caller_account(&state, &req, &account, "no such blob").await
    {
        Ok((_, account)) => account,
        Err(r) => return r,
    };
    let not_found = || (StatusCode::NOT_FOUND, "no such blob").into_response();
    // A message blob is `b<sha256>` or `bm<email id>`; one of its parts `b<sha256>-<partId>`.
    // A message not stored yet is fetched now (`jmap_server::bodies`).
    let messages = jmap_server::bodies::Messages {
        store: &state.store,
        bodies: state.bodies.as_ref(),
    };
    let jmap_server::bodies::Resolved { message, part, .. } = match messages
        .resolve(account, &blob)
        .await
    {
        Ok(r) => r,
        Err(jmap_server::bodies::BlobError::NotFound) => return not_found(),
        Err(jmap_server::bodies::BlobError::Unavailable(why)) => {
            tracing::warn!(account = %account, reason = %why, "a download waits for an unreachable server");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "30")],
                "the message is not stored yet and its server is unavailable",
            )
                .into_response();
        }
        Err(jmap_server::bodies::BlobError::Store(e)) => {
            tracing::error!(account = %account, error = %e, "reading a blob");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    let data = match part {
        None => message,
        Some(part) => {
            let decoded = tokio::task::spawn_blocking(move || {
                jmap_server::jmap::body::nested_part(&message, &part)
            })
            .await;
            match decoded {
                Ok(Some(p)) => p.bytes,
                _ => return not_found(),
            }
        }
    };
    let ctype = safe_type(q.content_type.as_deref());
    let inline = ["image/", "audio/", "video/"]
        .iter()
        .any(|p| ctype.starts_with(p));
    let range_header = req
        .headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let len = data.len();
    let (status, body, content_range) = match range(range_header.as_deref(), len) {
        Some(Ok((a, b))) => (
            StatusCode::PARTIAL_CONTENT,
            data[a..=b].to_vec(),
            Some(format!("bytes {a}-{b}/{len}")),
        ),
        Some(Err(())) => {
            let mut r = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
        None => (StatusCode::OK, data, None),
    };
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&ctype) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&disposition(
        if inline { "inline" } else { "attachment" },
        &name,
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    blob_headers(h, "sandbox; default-src 'none'");
    if let Some(cr) = content_range
        && let Ok(v) = HeaderValue::from_str(&cr)
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(range(Some("bytes=0-4"), 10), Some(Ok((0, 4))));
        assert_eq!(range(Some("bytes=5-"), 10), Some(Ok((5, 9))));
        assert_eq!(range(Some("bytes=-3"), 10), Some(Ok((7, 9))));
        assert_eq!(range(Some("bytes=8-100"), 10), Some(Ok((8, 9))));
        assert_eq!(range(Some("bytes=10-12"), 10), Some(Err(())));
        assert_eq!(range(Some("bytes=0-1,3-4"), 10), None);
        assert_eq!(range(Some("items=1-2"), 10), None);
        assert_eq!(range(None, 10), None);
    }

    #[test]
    fn headers_are_safe() {
        assert_eq!(safe_type(Some("Image/PNG")), "image/png");
        assert_eq!(
            safe_type(Some("text/html\r\nX: y")),
            "application/octet-stream"
        );
        assert_eq!(safe_type(None), "application/octet-stream");
        assert_eq!(
            safe_type(Some("text/plain; Charset=\"UTF-8\"")),
            "text/plain; charset=UTF-8"
        );
        // A parameter that is not a token pair is dropped, the type kept.
        assert_eq!(
            safe_type(Some("text/plain; charset=utf-8\r\nX: y; format")),
            "text/plain"
        );
        let d = disposition("attachment", "r\u{e9}sum\u{e9} \"x\".pdf");
        assert!(d.contains("filename*=UTF-8''r%C3%A9sum%C3%A9%20%22x%22.pdf"));
        assert!(
            d.starts_with("attachment; filename=\"r_sum_ _x_.pdf\"; "),
            "{d}"
        );
    }
}

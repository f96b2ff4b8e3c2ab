//! The web client: the embedded single-page app at `/`, sign-in and sign-out
//! (`POST /auth/login`, `POST /auth/logout`, a session cookie), and HTML mail bodies
//! sanitised for a sandboxed iframe (`GET /web/html/{account}/{blob}`).
//!
//! The app itself speaks only JMAP; these routes are what a browser needs around it.
//!
//! - Assets are embedded by `build.rs` with gzip and brotli copies; hashed files under
//!   `/assets/` are cached for good, `index.html` is revalidated every time.
//! - Every page carries a strict Content-Security-Policy (no inline script, nothing from
//!   elsewhere), `nosniff`, `frame-ancestors 'none'`.
//! - HTML mail is cleaned with ammonia (no script, no event handlers, no `javascript:`
//!   URLs, no forms, no CSS `expression`), remote images are removed unless `images=1`,
//!   and the page's own CSP forbids scripts and any load but (when allowed) images, so
//!   even a sanitiser miss cannot run or fetch anything.

use crate::auth::{AuthError, SESSION_COOKIE, SESSION_TTL, session_cookie};
use crate::caller::{client_ip, same_origin};
use crate::state::AppState;
use axum::body::{Body, to_bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

/// One embedded file of `web/dist`.
pub(crate) struct Asset {
    pub path: &'static str,
    pub mime: &'static str,
    pub raw: &'static [u8],
    pub gzip: &'static [u8],
    pub brotli: &'static [u8],
}

/// The policy of the app's own pages.
const APP_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data: blob:; connect-src 'self'; frame-src 'self'; font-src 'self'; \
     manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; \
     object-src 'none'";

/// The service worker (web/src/sw.ts): the app shell offline, and Web Push.
const SERVICE_WORKER: &str = "/sw.js";

fn asset(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

fn accepts(headers: &HeaderMap, coding: &str) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|part| {
            let mut it = part.split(';');
            let name = it.next().unwrap_or("").trim();
            let refused = it.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    == Some(0.0)
            });
            name.eq_ignore_ascii_case(coding) && !refused
        })
}

fn security_headers(h: &mut HeaderMap) {
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

fn serve_asset(a: &'static Asset, headers: &HeaderMap, method: &Method) -> Response {
    let (body, coding): (&'static [u8], Option<&'static str>) = if accepts(headers, "br") {
        (a.brotli, Some("br"))
    } else if accepts(headers, "gzip") {
        (a.gzip, Some("gzip"))
    } else {
        (a.raw, None)
    };
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(body)
    };
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(a.mime));
    if let Some(c) = coding {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(c));
    }
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    let immutable = a.path.starts_with("/assets/");
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if immutable {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        }),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(APP_CSP),
    );
    if a.path == SERVICE_WORKER {
        // The Service Workers spec ("Service-Worker-Allowed"): the worker's scope is the
        // whole app, wherever the script is; it is revalidated like index.html above, so
        // a new build reaches browsers at their next visit.
        h.insert(
            HeaderName::from_static("service-worker-allowed"),
            HeaderValue::from_static("/"),
        );
    }
    security_headers(h);
    r
}

/// `GET /` and every file of the app.
pub(crate) async fn app(req: Request) -> Response {
    let path = req.uri().path();
    let found = if path == "/" {
        asset("/index.html")
    } else {
        asset(path)
    };
    match found {
        Some(a) => serve_asset(a, req.headers(), req.method()),
        None if path == "/" => {
            let mut r = (
                StatusCode::OK,
                "Tidings: the web client is not built into this binary. \
                 Run `npm ci && npm run build` in web/ and rebuild.\n",
            )
                .into_response();
            security_headers(r.headers_mut());
            r
        }
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

// --- sign-in ------------------------------------------------------------------------------

fn secure(state: &AppState) -> bool {
    state.base_url.starts_with("https://")
}

fn cookie(state: &AppState, value: &str, max_age: u64) -> Option<HeaderValue> {
    let secure = if secure(state) { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .ok()
}

/// A JSON answer of the web client's and setup's private routes, never cached.
pub(crate) fn json(status: StatusCode, v: serde_json::Value) -> Response {
    let mut r = (status, v.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[derive(Deserialize)]
struct Login {
    username: String,
    password: String,
}

/// `POST /auth/login` with `{"username","password"}` as JSON (a JSON body cannot be sent
/// cross-site without a CORS preflight, which we never grant).
pub(crate) async fn login(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let ip = client_ip(req.extensions());
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json || !same_origin(&state, req.headers()) {
        return json(
            StatusCode::FORBIDDEN,
            serde_json::json!({"error": "forbidden"}),
        );
    }
    let Ok(body) = to_bytes(req.into_body(), 16 * 1024).await else {
        return json(
            StatusCode::PAYLOAD_TOO_LARGE,
            serde_json::json!({"error": "too large"}),
        );
    };
    let Ok(l) = serde_json::from_slice::<Login>(&body) else {
        return json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": "expected {\"username\", \"password\"}"}),
        );
    };
    match state.auth.login(&l.username, &l.password, ip).await {
        Ok((p, token)) => {
            let mut r = json(StatusCode::OK, serde_json::json!({"username": p.name}));
            if let Some(c) = cookie(&state, &token, SESSION_TTL.as_secs()) {
                r.headers_mut().insert(header::SET_COOKIE, c);
            }
            r
        }
        Err(AuthError::RateLimited(s)) => json(
            StatusCode::TOO_MANY_REQUESTS,
            serde_json::json!({"error": format!("too many failed attempts; try again in {s} s")}),
        ),
        Err(AuthError::Unavailable) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"error": "sign-in is unavailable"}),
        ),
        Err(AuthError::Busy(s)) => {
            let mut r = json(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"error": format!("sign-in is busy; try again in {s} s")}),
            );
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
        Err(_) => json(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"error": "wrong user name or password"}),
        ),
    }
}

/// `POST /auth/logout`: deletes the session and clears the cookie.
pub(crate) async fn logout(State(state): State<Arc<AppState>>, req: Request) -> Response {
    if !same_origin(&state, req.headers()) || req.headers().get(header::ORIGIN).is_none() {
        return json(
            StatusCode::FORBIDDEN,
            serde_json::json!({"error": "forbidden"}),
        );
    }
    let token = req
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(session_cookie)
        .map(str::to_string);
    if let Some(t) = token
        && state.auth.logout(&t).await.is_err()
    {
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"error": "sign-out is unavailable"}),
        );
    }
    let mut r = json(StatusCode::OK, serde_json::json!({}));
    if let Some(c) = cookie(&state, "", 0) {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r
}

// --- HTML mail ----------------------------------------------------------------------------

#[derive(Deserialize)]
pub(crate) struct HtmlQuery {
    images: Option<String>,
}

/// The sanitised HTML and how many remote images were removed from it. `cids` maps the
/// Content-IDs of the message's parts (RFC 2392, lowercased, without `<>`) to the URLs
/// that serve them: a `cid:` image is shown from there (the server's own download, so
/// nothing leaves), any other `cid:` reference is dropped.
pub fn sanitize_html(
    html: &str,
    allow_remote_images: bool,
    cids: &std::collections::HashMap<String, String>,
) -> (String, usize) {
    let blocked = Arc::new(AtomicUsize::new(0));
    let counter = blocked.clone();
    let cids = cids.clone();
    let mut b = ammonia::Builder::default();
    b.add_generic_attributes(["style", "align", "valign", "bgcolor", "width", "height"])
        .add_tag_attributes("td", ["colspan", "rowspan"])
        .add_tag_attributes("th", ["colspan", "rowspan"])
        .add_tag_attributes("font", ["color", "face", "size"])
        .add_tags(["font", "center"])
        .set_tag_attribute_value("a", "target", "_blank")
        // `cid:` passes the scheme check so that the filter below can map it (or drop it).
        .url_schemes(
            ["http", "https", "mailto", "data", "cid"]
                .into_iter()
                .collect(),
        )
        .attribute_filter(move |element, attribute, value| {
            let lower = value.to_ascii_lowercase();
            match (element, attribute) {
                (_, "style") => {
                    // No CSS that fetches or evaluates: url() (remote images, fonts),
                    // expression() (old IE), behaviour bindings, imports.
                    let compact: String =
                        lower.chars().filter(|c| !c.is_ascii_whitespace()).collect();
                    let bad = [
                        "expression(",
                        "javascript:",
                        "behavior:",
                        "-moz-binding",
                        "@import",
                    ]
                    .iter()
                    .any(|p| compact.contains(p));
                    if bad || (!allow_remote_images && compact.contains("url(")) {
                        None
                    } else {
                        Some(value.into())
                    }
                }
                ("img", "src") if lower.starts_with("cid:") => {
                    let id = percent_decode(&lower[4..]);
                    let id = id.trim_start_matches('<').trim_end_matches('>');
                    cids.get(id).map(|u| u.clone().into())
                }
                _ if lower.starts_with("cid:") => None,
                ("img", "src") => {
                    if lower.starts_with("data:image/")
                        || (allow_remote_images
                            && (lower.starts_with("https:") || lower.starts_with("http:")))
                    {
                        Some(value.into())
                    } else {
                        counter.fetch_add(1, Ordering::Relaxed);
                        None
                    }
                }
                (_, "src") | (_, "background") => None,
                ("a", "href") if lower.starts_with("data:") => None,
                _ => Some(value.into()),
            }
        });
    let clean = b.clean(html).to_string();
    (clean, blocked.load(Ordering::Relaxed))
}

/// `%XX` escapes of a `cid:` URL decoded (RFC 2392: the Content-ID is URL-encoded); an
/// escape that does not decode is kept as written.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The download URLs of a message's parts by Content-ID, for its HTML part's `cid:`
/// images (only parts of the same message: an HTML part inside an attached message is
/// shown without them).
fn cid_urls(
    message: &[u8],
    account: &str,
    sha: &str,
    part: &str,
) -> std::collections::HashMap<String, String> {
    let mut out = std::collections::HashMap::new();
    let parsed = mime::parse(message);
    let enc = url_escape;
    for a in &parsed.attachments {
        let Some(cid) = &a.cid else { continue };
        if !a.content_type.starts_with("image/") || a.part_id == part {
            continue;
        }
        let blob = jmap_server::jmap::body::part_blob_id(sha, &a.part_id);
        let name = a.name.as_deref().unwrap_or("image");
        out.insert(
            cid.to_ascii_lowercase(),
            format!(
                "/jmap/download/{}/{}/{}?type={}",
                enc(account),
                enc(&blob),
                enc(name),
                enc(&a.content_type)
            ),
        );
    }
    out
}

/// Percent-encodes everything but unreserved characters (RFC 3986 2.3).
fn url_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The policy of a sanitised mail page: nothing runs, nothing loads but inline styles,
/// the message's own images from this server, and (when the user allowed them) remote
/// images.
fn mail_csp(allow_remote_images: bool) -> &'static str {
    if allow_remote_images {
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data: http: https:; \
         sandbox allow-popups allow-popups-to-escape-sandbox allow-same-origin; \
         base-uri 'none'; form-action 'none'"
    } else {
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
         sandbox allow-popups allow-popups-to-escape-sandbox allow-same-origin; \
         base-uri 'none'; form-action 'none'"
    }
}

/// `GET /web/html/{account}/{blob}`: the HTML part `blob` (a part blob id of one of the
/// account's messages) sanitised, as a page for a sandboxed iframe. The number of remote
/// images left out is in `X-Tidings-Blocked-Images`.
pub(crate) async fn html(
    State(state): State<Arc<AppState>>,
    Path((account, blob)): Path<(String, String)>,
    Query(q): Query<HtmlQuery>,
    req: axum::http::request::Parts,
) -> Response {
    let jmap_account = account.clone();
    let account = match crate::caller::caller_account(&state, &req, &account, "no such blob").await
    {
        Ok((_, account)) => account,
        Err(r) => return r,
    };
    let not_found = || (StatusCode::NOT_FOUND, "no such blob").into_response();
    let Some((sha, Some(part))) = jmap_server::jmap::body::parse_blob_id(&blob) else {
        return not_found();
    };
    let messages = jmap_server::bodies::Messages {
        store: &state.store,
        bodies: state.bodies.as_ref(),
    };
    let message = match messages.stored(account, sha).await {
        Ok(Some(d)) => d,
        Ok(None) => return not_found(),
        Err(e) => {
            tracing::error!(account = %account, error = %e, "reading a blob");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    let allow = q.images.as_deref() == Some("1");
    let sha = sha.to_string();
    let cleaned = tokio::task::spawn_blocking(move || {
        let v = mime::body_value(&message, &part, 0)?;
        let cids = cid_urls(&message, &jmap_account, &sha, &part);
        Some(sanitize_html(&v.value, allow, &cids))
    })
    .await;
    let Ok(Some((clean, blocked))) = cleaned else {
        return not_found();
    };
    let page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <base target=\"_blank\"></head><body>{clean}</body></html>"
    );
    let mut r = (StatusCode::OK, page).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    crate::download::blob_headers(h, mail_csp(allow));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("SAMEORIGIN"),
    );
    if let Ok(v) = HeaderValue::from_str(&blocked.to_string()) {
        h.insert("x-tidings-blocked-images", v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_html_is_defused() {
        let evil = r#"<p onclick="x()">hi</p><script>alert(1)</script>
            <img src="https://tracker.example/p.gif" onerror="alert(2)">
            <img src="data:image/png;base64,AAAA">
            <a href="javascript:alert(3)">j</a><a href="https://ok.example/">ok</a>
            <div style="width: expression(alert(4))">e</div>
            <div style="background: url(https://tracker.example/b.png)">b</div>
            <div style="color: red">c</div>
            <form action="https://x.example"><input name=a></form>
            <iframe src="https://x.example"></iframe><style>body{}</style>"#;
        let none = std::collections::HashMap::new();
        let (clean, blocked) = sanitize_html(evil, false, &none);
        for bad in [
            "script",
            "onclick",
            "onerror",
            "javascript",
            "expression",
            "tracker",
            "<form",
            "<iframe",
            "<style",
            "alert",
        ] {
            assert!(!clean.contains(bad), "{bad} survived: {clean}");
        }
        assert!(clean.contains("data:image/png"));
        assert!(clean.contains("https://ok.example/"));
        assert!(clean.contains("color: red"));
        assert_eq!(blocked, 1);
        let (allowed, blocked) = sanitize_html(evil, true, &none);
        assert!(allowed.contains("https://tracker.example/p.gif"));
        assert!(!allowed.contains("onerror") && !allowed.contains("expression"));
        assert_eq!(blocked, 0);
    }

    /// A `cid:` image of the message is served from its part's download URL; an unknown
    /// `cid:` is dropped (and counted as nothing remote), the page's policy allows 'self'.
    #[test]
    fn cid_images_point_at_their_parts() {
        let raw = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: logo\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/related; boundary=\"r\"\r\n\r\n--r\r\n\
Content-Type: text/html; charset=utf-8\r\n\r\n<p>hi <img src=\"cid:Logo%40x\"><img src=\"cid:nope@x\"></p>\r\n--r\r\n\
Content-Type: image/png; name=\"logo.png\"\r\nContent-ID: <logo@x>\r\n\
Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--r--\r\n";
        let sha = "ab".repeat(32);
        let cids = cid_urls(raw, "a1", &sha, "1");
        let url = cids.get("logo@x").expect("the image by its Content-ID");
        assert_eq!(
            url,
            &format!("/jmap/download/a1/b{sha}-2/logo.png?type=image%2Fpng")
        );
        let html = mime::body_value(raw, "1", 0).expect("html").value;
        let (clean, blocked) = sanitize_html(&html, false, &cids);
        assert!(
            clean.contains(&format!("src=\"{}\"", url.replace('&', "&amp;"))),
            "{clean}"
        );
        assert!(!clean.contains("nope"), "{clean}");
        assert_eq!(blocked, 0);
        assert!(mail_csp(false).contains("img-src 'self' data:"));
    }

    /// The service worker is served as JavaScript for the root scope, revalidated at each
    /// visit, under the app's CSP (whose `script-src 'self'` is also its `worker-src`).
    #[test]
    fn the_service_worker_is_served_for_the_root_scope() {
        static SW: Asset = Asset {
            path: "/sw.js",
            mime: "text/javascript; charset=utf-8",
            raw: b"self.addEventListener('push', () => {});",
            gzip: b"",
            brotli: b"",
        };
        let r = serve_asset(&SW, &HeaderMap::new(), &Method::GET);
        let h = r.headers();
        assert_eq!(h["service-worker-allowed"], "/");
        assert_eq!(h[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
        assert_eq!(h[header::CACHE_CONTROL], "no-cache");
        assert!(APP_CSP.contains("script-src 'self'") && APP_CSP.contains("manifest-src 'self'"));
    }

    #[test]
    fn accept_encoding() {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip, deflate, br;q=0"),
        );
        assert!(accepts(&h, "gzip"));
        assert!(!accepts(&h, "br"));
        assert!(!accepts(&h, "zstd"));
    }
}

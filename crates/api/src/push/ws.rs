//! JMAP over WebSocket (RFC 8887): authentication at the upgrade, subprotocol `jmap`,
//! Request/Response with `id` echo, RequestError, WebSocketPushEnable/Disable and
//! StateChange with `pushState`.
//!
//! One task per connection reads frames and writes one frame at a time: requests are
//! answered in order through the same function as `/jmap/api`, and pushes wait in the
//! connection's coalescing slot while a response (or a slow reader) holds the socket.

use crate::auth::Principal;
use crate::caller::{authenticate, client_ip};
use crate::state::AppState;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use jmap_server::ApiError;
use jmap_server::push::{Changed, Connection, Follower, state_change_json, type_filter};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::events::TypeSet;

/// `scheme://host[:port]` of a URL, lowercased.
fn origin_of(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let host = rest.split('/').next().unwrap_or("");
    format!("{scheme}://{host}").to_ascii_lowercase()
}

/// A browser names the page's origin: only pages of this server may open a socket with
/// the user's cookie (cross-site WebSocket hijacking). Clients without `Origin` are not
/// browsers and authenticate themselves.
pub(crate) fn origin_allowed(headers: &HeaderMap, base_url: &str) -> bool {
    match headers.get(header::ORIGIN) {
        None => true,
        Some(v) => v
            .to_str()
            .map(|o| o.trim_end_matches('/').to_ascii_lowercase() == origin_of(base_url))
            .unwrap_or(false),
    }
}

fn offers_jmap(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == "jmap")
}

pub(crate) async fn upgrade(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let (mut parts, _) = req.into_parts();
    let ip = client_ip(&parts.extensions);
    if !origin_allowed(&parts.headers, &state.base_url) {
        return (StatusCode::FORBIDDEN, "this origin may not connect").into_response();
    }
    let principal = match authenticate(&state, &parts.headers, ip).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    if !offers_jmap(&parts.headers) {
        return (
            StatusCode::BAD_REQUEST,
            "the WebSocket subprotocol \"jmap\" is required (RFC 8887)",
        )
            .into_response();
    }
    let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(ws) => ws,
        Err(e) => return e.into_response(),
    };
    let Some(conn) = state.push.connect(principal.user) else {
        tracing::info!(user = %principal.name, "too many push connections");
        return (
            StatusCode::TOO_MANY_REQUESTS,
            "too many push connections for this user",
        )
            .into_response();
    };
    let limit = usize::try_from(state.core.max_size_request).unwrap_or(usize::MAX);
    // Small buffers: most sockets idle, a few KB each (tungstenite's default is 128 KiB
    // each way); every frame is written and flushed on its own anyway.
    ws.protocols(["jmap"])
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| run(socket, state, principal, conn))
}

fn request_error(id: Option<&str>, e: &jmap_proto::RequestError) -> Value {
    let mut v = match serde_json::from_str::<Value>(&e.to_json()) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    v.insert("@type".into(), Value::String("RequestError".into()));
    if let Some(id) = id {
        v.insert("requestId".into(), Value::String(id.into()));
    }
    Value::Object(v)
}

fn unavailable(id: Option<&str>) -> Value {
    let mut v = Map::new();
    v.insert("@type".into(), Value::String("RequestError".into()));
    v.insert("type".into(), Value::String("about:blank".into()));
    v.insert("status".into(), Value::from(503));
    v.insert(
        "detail".into(),
        Value::String("the server cannot answer now; try again".into()),
    );
    if let Some(id) = id {
        v.insert("requestId".into(), Value::String(id.into()));
    }
    Value::Object(v)
}

/// What one client frame asks for.
enum Reply {
    Send(Value),
    /// A Response, and the large message budget its request holds until it is sent.
    Response(Value, Vec<tokio::sync::OwnedSemaphorePermit>),
    Enable {
        id: Option<String>,
        types: TypeSet,
        push_state: Option<String>,
    },
    Disable,
}

async fn answer(state: &AppState, principal: &Principal, text: &str) -> Reply {
    let not_request = |id: Option<&str>, detail: &str| {
        Reply::Send(request_error(
            id,
            &jmap_proto::RequestError::not_request(detail),
        ))
    };
    let v: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return Reply::Send(request_error(
                None,
                &jmap_proto::RequestError::not_json(format!("not valid JSON: {e}")),
            ));
        }
    };
    let Value::Object(m) = &v else {
        return not_request(None, "a message must be a JSON object");
    };
    let id = match m.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return not_request(None, "\"id\" must be a string"),
    };
    let id = id.as_deref();
    match m.get("@type").and_then(Value::as_str) {
        Some("Request") => match state.handle(principal, text.as_bytes()).await {
            Ok((response, held)) => match serde_json::to_value(&response) {
                Ok(Value::Object(mut r)) => {
                    drop(response);
                    r.insert("@type".into(), Value::String("Response".into()));
                    if let Some(id) = id {
                        r.insert("requestId".into(), Value::String(id.into()));
                    }
                    Reply::Response(Value::Object(r), held)
                }
                _ => Reply::Send(unavailable(id)),
            },
            Err(ApiError::Request(e)) => Reply::Send(request_error(id, &e)),
            Err(ApiError::Unavailable) => Reply::Send(unavailable(id)),
        },
        Some("WebSocketPushEnable") => {
            let types = match m.get("dataTypes") {
                None | Some(Value::Null) => TypeSet::all(),
                Some(Value::Array(a)) => type_filter(a.iter().filter_map(Value::as_str)),
                Some(_) => return not_request(id, "\"dataTypes\" must be null or an array"),
            };
            let push_state = match m.get("pushState") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => return not_request(id, "\"pushState\" must be a string"),
            };
            Reply::Enable {
                id: id.map(str::to_string),
                types,
                push_state,
            }
        }
        Some("WebSocketPushDisable") => Reply::Disable,
        Some(other) => not_request(id, &format!("unknown message type {other:?}")),
        None => not_request(id, "the message has no \"@type\""),
    }
}

async fn send(
    socket: &mut futures::stream::SplitSink<WebSocket, Message>,
    v: &Value,
    timeout: Duration,
) -> bool {
    let text = v.to_string();
    matches!(
        tokio::time::timeout(timeout, socket.send(Message::Text(text.into()))).await,
        Ok(Ok(()))
    )
}

async fn run(socket: WebSocket, state: Arc<AppState>, principal: Principal, _conn: Connection) {
    let limits = state.push.limits().clone();
    let (mut tx, mut rx) = socket.split();
    let mut follower: Option<Follower> = None;
    let mut last_heard = Instant::now();
    let mut ticks = tokio::time::interval(limits.ws_ping);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let pushed = async {
            match &follower {
                Some(f) => f.wait().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            frame = rx.next() => {
                last_heard = Instant::now();
                let text = match frame {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Binary(_))) => {
                        let e = jmap_proto::RequestError::not_json("binary messages are not JMAP");
                        if !send(&mut tx, &request_error(None, &e), limits.write_timeout).await {
                            break;
                        }
                        continue;
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue, // ping (answered by the library) or pong
                };
                match answer(&state, &principal, text.as_str()).await {
                    Reply::Send(v) => {
                        if !send(&mut tx, &v, limits.write_timeout).await {
                            break;
                        }
                    }
                    Reply::Response(v, held) => {
                        let sent = send(&mut tx, &v, limits.write_timeout).await;
                        drop((v, held));
                        if !sent {
                            break;
                        }
                    }
                    Reply::Disable => follower = None,
                    Reply::Enable { id, types, push_state } => {
                        follower = None;
                        match Follower::start(
                            &state.push,
                            state.store.clone(),
                            &principal,
                            types,
                            push_state.as_deref(),
                        )
                        .await
                        {
                            Ok((mut f, first)) => {
                                if !first.0.is_empty() && !push(&mut tx, &mut f, &first, &limits).await {
                                    break;
                                }
                                follower = Some(f);
                            }
                            Err(e) => {
                                tracing::warn!(user = %principal.name, error = %e, "push enable failed");
                                if !send(&mut tx, &unavailable(id.as_deref()), limits.write_timeout).await {
                                    break;
                                }
                            }
                        }
                    }
                }
            }
            () = pushed => {
                let Some(f) = follower.as_mut() else { continue };
                match f.take().await {
                    Ok(c) if c.0.is_empty() => {}
                    Ok(c) => {
                        if !push(&mut tx, f, &c, &limits).await {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(user = %principal.name, error = %e, "push read failed");
                    }
                }
            }
            _ = ticks.tick() => {
                let silent = last_heard.elapsed();
                if silent >= limits.ws_ping * 3 {
                    tracing::debug!(user = %principal.name, "push connection silent; closing");
                    break;
                }
                if silent >= limits.ws_ping
                    && !matches!(
                        tokio::time::timeout(limits.write_timeout, tx.send(Message::Ping(Default::default()))).await,
                        Ok(Ok(()))
                    )
                {
                    break;
                }
            }
        }
    }
    let _ = tx.close().await;
}

async fn push(
    tx: &mut futures::stream::SplitSink<WebSocket, Message>,
    f: &mut Follower,
    c: &Changed,
    limits: &jmap_server::PushLimits,
) -> bool {
    f.told(c);
    let v = state_change_json(c, Some(&f.push_state()));
    send(tx, &v, limits.write_timeout).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let mut h = HeaderMap::new();
        assert!(origin_allowed(&h, "https://mail.example.org"));
        h.insert(header::ORIGIN, "https://Mail.example.org".parse().unwrap());
        assert!(origin_allowed(&h, "https://mail.example.org/prefix"));
        h.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(!origin_allowed(&h, "https://mail.example.org"));
        h.insert(header::ORIGIN, "http://mail.example.org".parse().unwrap());
        assert!(!origin_allowed(&h, "https://mail.example.org"));
    }
}

//! EventSource push (RFC 8620 7.3): `GET /jmap/eventsource/?types=&closeafter=&ping=`.
//!
//! A `state` event carries a StateChange; its `id` is the push state, so a browser's
//! EventSource that reconnects sends it back as `Last-Event-ID` and is told at once what
//! it missed. `ping` events carry the interval actually used, clamped to
//! [`MIN_PING`, `MAX_PING`] (RFC 8620 7.3: a server's minimum must not be above 30 s nor
//! its maximum below 300 s).

use crate::caller::{authenticate, client_ip};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jmap_server::push::{Changed, Connection, Follower, state_change_json, type_filter};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use store::events::TypeSet;
use tokio::time::Instant;

pub(crate) const MIN_PING: u64 = 5;
pub(crate) const MAX_PING: u64 = 300;
/// Without `ping` the client gets no ping events, but the stream still writes an SSE
/// comment (which no EventSource shows) this often: that write is what finds a dead
/// connection and frees its slot, and it keeps idle-timeout proxies from cutting the
/// stream.
const KEEPALIVE: Duration = Duration::from_secs(55);

#[derive(Debug, PartialEq, Eq)]
struct Params {
    types: TypeSet,
    close_after_state: bool,
    /// Seconds; None for no pings.
    ping: Option<u64>,
}

fn params(query: Option<&str>) -> Result<Params, String> {
    let mut p = Params {
        types: TypeSet::all(),
        close_after_state: false,
        ping: None,
    };
    for pair in query.unwrap_or("").split('&').filter(|s| !s.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v).ok_or_else(|| format!("{k}: bad percent-encoding"))?;
        match k {
            "types" if v == "*" => p.types = TypeSet::all(),
            "types" => p.types = type_filter(v.split(',').map(str::trim)),
            "closeafter" => match v.as_str() {
                "state" => p.close_after_state = true,
                "no" | "" => p.close_after_state = false,
                _ => return Err("closeafter must be \"state\" or \"no\"".into()),
            },
            "ping" => {
                let n: u64 = v
                    .parse()
                    .map_err(|_| "ping must be a non-negative integer".to_string())?;
                p.ping = (n > 0).then(|| n.clamp(MIN_PING, MAX_PING));
            }
            _ => {}
        }
    }
    Ok(p)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

pub(crate) async fn events(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let ip = client_ip(req.extensions());
    let principal = match authenticate(&state, req.headers(), ip).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let p = match params(req.uri().query()) {
        Ok(p) => p,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    let last_id = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let Some(conn) = state.push.connect(principal.user) else {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            "too many push connections for this user",
        )
            .into_response();
    };
    let (follower, first) = match Follower::start(
        &state.push,
        state.store.clone(),
        &principal,
        p.types,
        last_id.as_deref(),
    )
    .await
    {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(user = %principal.name, error = %e, "eventsource start failed");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    let stream = Stream {
        follower,
        first: Some(first),
        ping: p.ping.map(Duration::from_secs),
        close_after_state: p.close_after_state,
        done: false,
        opened: false,
        _conn: conn,
        user: principal.name,
    };
    let body = Body::from_stream(futures::stream::unfold(stream, |mut s| async move {
        s.next().await.map(|chunk| (Ok::<_, Infallible>(chunk), s))
    }));
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

struct Stream {
    follower: Follower,
    first: Option<Changed>,
    ping: Option<Duration>,
    close_after_state: bool,
    done: bool,
    opened: bool,
    _conn: Connection,
    user: String,
}

impl Stream {
    fn state_event(&mut self, c: &Changed) -> String {
        self.follower.told(c);
        let id = self.follower.push_state();
        if self.close_after_state {
            self.done = true;
        }
        format!(
            "event: state\nid: {id}\ndata: {}\n\n",
            state_change_json(c, None)
        )
    }

    async fn next(&mut self) -> Option<String> {
        if self.done {
            return None;
        }
        if !self.opened {
            // A comment first, so the headers and a first byte leave at once.
            self.opened = true;
            return Some(": tidings push\n\n".into());
        }
        if let Some(first) = self.first.take()
            && !first.0.is_empty()
        {
            return Some(self.state_event(&first));
        }
        let mut deadline = Instant::now() + self.ping.unwrap_or(KEEPALIVE);
        loop {
            let ping = tokio::time::sleep_until(deadline);
            tokio::select! {
                () = self.follower.wait() => {
                    match self.follower.take().await {
                        Ok(c) if c.0.is_empty() => continue,
                        Ok(c) => return Some(self.state_event(&c)),
                        Err(e) => {
                            tracing::warn!(user = %self.user, error = %e, "push read failed");
                            deadline = deadline.max(Instant::now());
                        }
                    }
                }
                () = ping => {
                    return Some(match self.ping {
                        Some(p) => {
                            format!("event: ping\ndata: {{\"interval\":{}}}\n\n", p.as_secs())
                        }
                        None => ": keep-alive\n\n".into(),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::events::PushType;

    /// With `ping=0` no ping event is sent, but a comment is written every KEEPALIVE, so a
    /// dead client is found without waiting for the next change.
    #[tokio::test(start_paused = true)]
    #[allow(clippy::unwrap_used)]
    async fn without_ping_a_comment_keeps_the_stream_alive() {
        let store: Arc<dyn store::Store> = Arc::new(store::SqliteStore::open_in_memory().unwrap());
        let hub = jmap_server::push::Hub::new(store.as_ref(), jmap_server::push::Limits::default());
        let principal = jmap_server::Principal {
            user: mail_types::UserId(1),
            name: "u".into(),
        };
        let (follower, first) = Follower::start(&hub, store, &principal, TypeSet::all(), None)
            .await
            .unwrap();
        let mut s = Stream {
            follower,
            first: Some(first),
            ping: None,
            close_after_state: false,
            done: false,
            opened: false,
            _conn: hub.connect(principal.user).unwrap(),
            user: principal.name,
        };
        assert_eq!(s.next().await.unwrap(), ": tidings push\n\n");
        let t0 = Instant::now();
        let chunk = s.next().await.unwrap();
        assert_eq!(chunk, ": keep-alive\n\n");
        assert_eq!(Instant::now() - t0, KEEPALIVE);
        s.ping = Some(Duration::from_secs(MIN_PING));
        assert!(s.next().await.unwrap().starts_with("event: ping\n"));
    }

    #[test]
    fn query_parameters() {
        let p = params(Some("types=Email,Mailbox&closeafter=state&ping=1")).unwrap();
        assert_eq!(
            p.types,
            [PushType::Email, PushType::Mailbox].into_iter().collect()
        );
        assert!(p.close_after_state);
        assert_eq!(p.ping, Some(MIN_PING));
        let p = params(Some("types=*&closeafter=no&ping=0")).unwrap();
        assert_eq!(p.types, TypeSet::all());
        assert_eq!(p.ping, None);
        assert_eq!(params(Some("ping=100000")).unwrap().ping, Some(MAX_PING));
        assert_eq!(
            params(Some("types=Email%2CThread")).unwrap().types,
            [PushType::Email, PushType::Thread].into_iter().collect()
        );
        assert!(params(Some("closeafter=maybe")).is_err());
        assert!(params(Some("ping=-1")).is_err());
        assert!(params(Some("types=%zz")).is_err());
        assert_eq!(params(None).unwrap().types, TypeSet::all());
    }
}

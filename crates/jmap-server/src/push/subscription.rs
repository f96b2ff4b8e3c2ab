//! PushSubscription (RFC 8620 7.2): `/get` and `/set`, the PushVerification sent on
//! create, and delivery of StateChange by HTTP POST to the subscription's URL, encrypted
//! per RFC 8291 (`aes128gcm`, through Mozilla's `ece`) when the client gave `keys`.
//!
//! Every verified, unexpired subscription has one task that follows its user's accounts
//! through the hub like a connection does (same coalescing slot: while a POST is retried,
//! newer changes merge into the next one). Failures are retried with exponential backoff
//! (1 s doubling to 5 min, `Retry-After` honoured up to 5 min, at most 8 attempts per
//! StateChange); 404 or 410 means the push service dropped the subscription, so it is
//! destroyed. An expired subscription is destroyed by its task.

use super::{Changed, Follower, Hub, state_change_json, type_filter};
use crate::Principal;
use base64::Engine;
use jmap_proto::{MethodError, PushVerification, SetError, SetErrorType, UtcDate};
use mail_types::UserId;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::Store;
use store::events::TypeSet;
use store::subscriptions::{
    NewPushSubscription, PushKeys, PushSubscriptionRecord, PushSubscriptionUpdate,
};

/// Subscriptions one user may hold.
const MAX_PER_USER: usize = 50;
/// Longest lifetime granted; a later `expires` is cut to this (RFC 8620 7.2: the server
/// may reduce it, and says so in the response).
const MAX_LIFETIME_SECS: i64 = 30 * 24 * 3600;
const MAX_ATTEMPTS: u32 = 8;
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// RFC 8030 5.2: how long a push service may keep an undelivered message.
const TTL_SECS: &str = "86400";

/// The delivery tasks of the verified subscriptions, and the HTTP client they share.
pub(crate) struct Subscriptions {
    workers: Mutex<HashMap<i64, tokio::task::AbortHandle>>,
    client: Option<reqwest::Client>,
    /// `http://` subscription URLs allowed (tests, development); https only otherwise.
    allow_http: bool,
    /// Subscription URLs may reach loopback, private and link-local addresses (tests, a
    /// push service inside one's own network); public addresses only otherwise.
    allow_private: bool,
}

impl Subscriptions {
    pub(crate) fn new(allow_http: bool, allow_private: bool) -> Self {
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve the name itself, past the guard below.
            .no_proxy();
        if !allow_private {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        let client = builder
            .build()
            .map_err(|e| tracing::error!(error = %e, "no HTTP client for push subscriptions"))
            .ok();
        Subscriptions {
            workers: Mutex::new(HashMap::new()),
            client,
            allow_http,
            allow_private,
        }
    }

    fn stop(&self, id: i64) {
        if let Ok(mut w) = self.workers.lock()
            && let Some(h) = w.remove(&id)
        {
            h.abort();
        }
    }
}

// SSRF guard: a subscription URL is the client's, and the server POSTs to it. Unless
// `allow_private`, it may only reach public addresses. The check runs where the address is
// known: an IP literal at create and before each POST, a name in the HTTP client's
// resolver at each connection (so a name that resolves to a public address at create and
// to 127.0.0.1 later, DNS rebinding, is still refused).

/// Whether `ip` is an address on the public Internet: not loopback, private (RFC 1918,
/// RFC 4193), shared (RFC 6598), link-local, multicast, documentation, benchmarking,
/// reserved or unspecified; an IPv4-mapped or -compatible IPv6 address counts as its IPv4.
pub(crate) fn is_public(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first & 0xffc0) == 0xfec0
                || first == 0x2001 && v6.segments()[1] == 0x0db8
                || first == 0x0064 && v6.segments()[1] == 0xff9b)
        }
    }
}

/// The subscription client's resolver: the system's answer, less every address that is
/// not public; a name with no public address fails to resolve.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let public: Vec<std::net::SocketAddr> = found.filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                return Err("the push URL's host has no public address".into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(public.into_iter());
            Ok(addrs)
        })
    }
}

/// Whether the URL's host is an IP literal that the guard refuses.
fn refused_literal(url: &reqwest::Url, allow_private: bool) -> bool {
    if allow_private {
        return false;
    }
    let host = url.host_str().unwrap_or("");
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| !is_public(ip))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn jmap_id(id: i64) -> String {
    format!("p{id}")
}

/// Starts the delivery task of every verified, unexpired subscription in the store, and
/// destroys the expired ones (at server start).
pub(crate) async fn start_all(hub: &Arc<Hub>, store: &Arc<dyn Store>) -> store::Result<()> {
    for s in store.push_subscriptions(None).await? {
        if s.expires.is_some_and(|e| e <= now()) {
            store.delete_push_subscription(s.id, None).await?;
        } else if s.verified {
            start(hub, store, s);
        }
    }
    Ok(())
}

fn start(hub: &Arc<Hub>, store: &Arc<dyn Store>, s: PushSubscriptionRecord) {
    let id = s.id;
    hub.subscriptions.stop(id);
    let task = tokio::spawn(worker(hub.clone(), store.clone(), s));
    if let Ok(mut w) = hub.subscriptions.workers.lock() {
        w.insert(id, task.abort_handle());
    }
}

enum Outcome {
    Done,
    Gone,
    Retry(Option<Duration>),
    Failed(String),
}

fn b64url(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
}

async fn post(hub: &Hub, s: &PushSubscriptionRecord, v: &Value) -> Outcome {
    let Some(client) = &hub.subscriptions.client else {
        return Outcome::Failed("no HTTP client".into());
    };
    match reqwest::Url::parse(&s.url) {
        Ok(u) if !refused_literal(&u, hub.subscriptions.allow_private) => {}
        _ => return Outcome::Failed("the URL names a non-public address".into()),
    }
    let body = v.to_string().into_bytes();
    let mut req = client
        .post(&s.url)
        .header("TTL", TTL_SECS)
        .header("Urgency", "normal");
    // RFC 8292 2: a push service may refuse (or bind the subscription to) unsigned pushes.
    if let Some(vapid) = &hub.limits.vapid
        && let Ok(url) = reqwest::Url::parse(&s.url)
        && let Some(auth) = vapid.authorization(&url)
    {
        req = req.header(reqwest::header::AUTHORIZATION, auth);
    }
    let req = match &s.keys {
        Some(k) => {
            let (Some(ua), Some(auth)) = (b64url(&k.p256dh), b64url(&k.auth)) else {
                return Outcome::Failed("stored keys do not decode".into());
            };
            match ece::encrypt(&ua, &auth, &body) {
                Ok(enc) => req
                    .header(reqwest::header::CONTENT_ENCODING, "aes128gcm")
                    .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                    .body(enc),
                Err(e) => return Outcome::Failed(format!("encryption: {e}")),
            }
        }
        None => req
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/json; charset=utf-8",
            )
            .body(body),
    };
    match req.send().await {
        Ok(r) if r.status().is_success() => Outcome::Done,
        Ok(r) if r.status().as_u16() == 404 || r.status().as_u16() == 410 => Outcome::Gone,
        Ok(r) if r.status().as_u16() == 429 || r.status().is_server_error() => {
            let after = r
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|s| Duration::from_secs(s).min(MAX_BACKOFF));
            Outcome::Retry(after)
        }
        Ok(r) => Outcome::Failed(format!("HTTP {}", r.status())),
        // The URL is the client's and may name a private host: only the kind of failure is
        // logged, not the address.
        Err(e) if e.is_timeout() => Outcome::Retry(None),
        Err(e) if e.is_connect() => Outcome::Retry(None),
        Err(_) => Outcome::Retry(None),
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.min(9)).min(MAX_BACKOFF)
}

/// Sends `v` with retries; false when the subscription is gone (destroyed here). With
/// the follower and the changes `v` tells, what changes meanwhile joins the next attempt.
async fn deliver(
    hub: &Arc<Hub>,
    store: &Arc<dyn Store>,
    s: &PushSubscriptionRecord,
    mut v: Value,
    mut follower: Option<(&mut Follower, Changed)>,
) -> bool {
    for attempt in 0..MAX_ATTEMPTS {
        match post(hub, s, &v).await {
            Outcome::Done => return true,
            Outcome::Gone => {
                tracing::info!(subscription = s.id, "push service dropped the subscription");
                let _ = store.delete_push_subscription(s.id, None).await;
                return false;
            }
            Outcome::Failed(why) => {
                tracing::warn!(subscription = s.id, why, "push delivery refused; dropped");
                return true;
            }
            Outcome::Retry(after) => {
                tokio::time::sleep(after.unwrap_or_else(|| backoff(attempt))).await;
                // What changed meanwhile goes along in the next attempt.
                if let Some((f, sent)) = follower.as_mut()
                    && let Ok(more) = f.take().await
                    && !more.0.is_empty()
                {
                    f.told(&more);
                    for (a, (st, t)) in more.0 {
                        let e = sent.0.entry(a).or_insert((st, TypeSet::EMPTY));
                        e.0 = st.max(e.0);
                        e.1 = e.1.union(t);
                    }
                    v = state_change_json(sent, None);
                }
            }
        }
    }
    tracing::warn!(
        subscription = s.id,
        "push delivery failed {MAX_ATTEMPTS} times; dropped"
    );
    true
}

async fn worker(hub: Arc<Hub>, store: Arc<dyn Store>, s: PushSubscriptionRecord) {
    let principal = Principal {
        user: s.user,
        name: String::new(),
    };
    let types = match &s.types {
        Some(t) => type_filter(t.iter().map(String::as_str)),
        None => TypeSet::all(),
    };
    let mut f = match Follower::start(&hub, store.clone(), &principal, types, None).await {
        Ok((f, _)) => f,
        Err(e) => {
            tracing::warn!(subscription = s.id, error = %e, "push subscription cannot follow");
            return;
        }
    };
    let expiry = s.expires.map(|e| {
        tokio::time::Instant::now() + Duration::from_secs(u64::try_from(e - now()).unwrap_or(0))
    });
    loop {
        let expired = async {
            match expiry {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = f.wait() => {}
            () = expired => {
                let _ = store.delete_push_subscription(s.id, None).await;
                return;
            }
        }
        let c = match f.take().await {
            Ok(c) if c.0.is_empty() => continue,
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(subscription = s.id, error = %e, "push read failed");
                continue;
            }
        };
        f.told(&c);
        let v = state_change_json(&c, None);
        if !deliver(&hub, &store, &s, v, Some((&mut f, c))).await {
            return;
        }
    }
}

fn random_code() -> String {
    let b: [u8; 16] = rand::random();
    hex::encode(b)
}

fn parse_ids(args: &Map<String, Value>) -> Result<Option<Vec<String>>, MethodError> {
    match args.get("ids") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| MethodError::invalid_arguments("ids must be strings"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(MethodError::invalid_arguments(
            "ids must be null or an array",
        )),
    }
}

fn view(s: &PushSubscriptionRecord) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("id".into(), json!(jmap_id(s.id)));
    m.insert("deviceClientId".into(), json!(s.device_client_id));
    // RFC 8620 7.2: url and keys are never returned.
    m.insert(
        "verificationCode".into(),
        if s.verified {
            json!(s.verification_code)
        } else {
            Value::Null
        },
    );
    m.insert(
        "expires".into(),
        s.expires
            .and_then(UtcDate::from_timestamp)
            .map(|d| json!(d.to_string()))
            .unwrap_or(Value::Null),
    );
    m.insert("types".into(), json!(s.types));
    m
}

fn server_fail(e: store::Error) -> MethodError {
    MethodError::server_fail(e.to_string())
}

/// PushSubscription/get (RFC 8620 7.2.1): no accountId, no state; the caller's own
/// subscriptions only.
pub(crate) async fn get(
    store: &Arc<dyn Store>,
    user: UserId,
    args: Map<String, Value>,
) -> Result<Map<String, Value>, MethodError> {
    let ids = parse_ids(&args)?;
    let props: Option<Vec<String>> = match args.get("properties") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(
            a.iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| MethodError::invalid_arguments("properties must be strings"))
                })
                .collect::<Result<_, _>>()?,
        ),
        Some(_) => {
            return Err(MethodError::invalid_arguments(
                "properties must be an array",
            ));
        }
    };
    const KNOWN: [&str; 5] = [
        "id",
        "deviceClientId",
        "verificationCode",
        "expires",
        "types",
    ];
    if let Some(p) = &props
        && let Some(bad) = p.iter().find(|p| !KNOWN.contains(&p.as_str()))
    {
        return Err(MethodError::invalid_arguments(format!(
            "unknown or unreadable property {bad}"
        )));
    }
    let mine = store
        .push_subscriptions(Some(user))
        .await
        .map_err(server_fail)?;
    let pick = |s: &PushSubscriptionRecord| {
        let mut v = view(s);
        if let Some(p) = &props {
            v.retain(|k, _| k == "id" || p.contains(k));
        }
        Value::Object(v)
    };
    let mut list = Vec::new();
    let mut not_found = Vec::new();
    match ids {
        None => list.extend(mine.iter().map(pick)),
        Some(wanted) => {
            for w in wanted {
                match mine.iter().find(|s| jmap_id(s.id) == w) {
                    Some(s) => list.push(pick(s)),
                    None => not_found.push(json!(w)),
                }
            }
        }
    }
    let mut out = Map::new();
    out.insert("list".into(), Value::Array(list));
    out.insert("notFound".into(), Value::Array(not_found));
    Ok(out)
}

/// Boxed: a SetError is large and travels in `Result`s.
type SetErr = Box<SetError>;

fn set_error(e: SetError) -> Value {
    serde_json::to_value(e).unwrap_or(Value::Null)
}

fn invalid(props: &[&str], why: &str) -> SetErr {
    Box::new(SetError::invalid_properties(props.iter().copied()).with_description(why))
}

fn parse_expires(v: &Value) -> Result<Option<i64>, SetErr> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => {
            let d: UtcDate = s
                .parse()
                .map_err(|_| invalid(&["expires"], "expires must be a UTCDate"))?;
            if d.timestamp() <= now() {
                return Err(invalid(&["expires"], "expires is in the past"));
            }
            Ok(Some(d.timestamp()))
        }
        _ => Err(invalid(&["expires"], "expires must be a UTCDate or null")),
    }
}

/// Cut to the longest lifetime (also when the client asked for none).
fn granted(expires: Option<i64>) -> i64 {
    let max = now() + MAX_LIFETIME_SECS;
    expires.map_or(max, |e| e.min(max))
}

fn parse_types(v: &Value) -> Result<Option<Vec<String>>, SetErr> {
    match v {
        Value::Null => Ok(None),
        Value::Array(a) if a.len() <= 32 => a
            .iter()
            .map(|t| {
                t.as_str()
                    .filter(|t| t.len() <= 64)
                    .map(str::to_string)
                    .ok_or_else(|| invalid(&["types"], "types must be type names"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        _ => Err(invalid(
            &["types"],
            "types must be null or an array of type names",
        )),
    }
}

fn parse_create(
    obj: &Value,
    user: UserId,
    allow_http: bool,
    allow_private: bool,
) -> Result<NewPushSubscription, SetErr> {
    let Some(m) = obj.as_object() else {
        return Err(Box::new(
            SetError::new(SetErrorType::InvalidProperties).with_description("not an object"),
        ));
    };
    for k in m.keys() {
        if ![
            "deviceClientId",
            "url",
            "keys",
            "expires",
            "types",
            "verificationCode",
            "id",
        ]
        .contains(&k.as_str())
        {
            return Err(invalid(&[k.as_str()], "unknown property"));
        }
    }
    if m.get("id").is_some_and(|v| !v.is_null()) {
        return Err(invalid(&["id"], "id is set by the server"));
    }
    if m.get("verificationCode").is_some_and(|v| !v.is_null()) {
        return Err(invalid(
            &["verificationCode"],
            "verificationCode is sent to the client, not set by it",
        ));
    }
    let device = m
        .get("deviceClientId")
        .and_then(Value::as_str)
        .filter(|d| !d.is_empty() && d.len() <= 255)
        .ok_or_else(|| invalid(&["deviceClientId"], "a non-empty string is required"))?;
    let url = m
        .get("url")
        .and_then(Value::as_str)
        .filter(|u| u.len() <= 2048)
        .ok_or_else(|| invalid(&["url"], "a URL is required"))?;
    let parsed =
        reqwest::Url::parse(url).map_err(|_| invalid(&["url"], "url is not a valid URL"))?;
    let scheme_ok = parsed.scheme() == "https" || (allow_http && parsed.scheme() == "http");
    if !scheme_ok || parsed.host_str().is_none() || !parsed.username().is_empty() {
        return Err(invalid(
            &["url"],
            "url must be an https:// URL without credentials",
        ));
    }
    if refused_literal(&parsed, allow_private) {
        return Err(invalid(
            &["url"],
            "url must not name a loopback, private or link-local address",
        ));
    }
    let keys = match m.get("keys") {
        None | Some(Value::Null) => None,
        Some(Value::Object(k)) => {
            let p256dh = k.get("p256dh").and_then(Value::as_str).unwrap_or("");
            let auth = k.get("auth").and_then(Value::as_str).unwrap_or("");
            let ok = b64url(p256dh).is_some_and(|p| p.len() == 65 && p[0] == 4)
                && b64url(auth).is_some_and(|a| a.len() == 16);
            if !ok {
                return Err(invalid(
                    &["keys"],
                    "keys needs p256dh (an uncompressed P-256 point) and auth (16 octets), base64url",
                ));
            }
            Some(PushKeys {
                p256dh: p256dh.to_string(),
                auth: auth.to_string(),
            })
        }
        Some(_) => return Err(invalid(&["keys"], "keys must be an object or null")),
    };
    let expires = parse_expires(m.get("expires").unwrap_or(&Value::Null))?;
    let types = parse_types(m.get("types").unwrap_or(&Value::Null))?;
    Ok(NewPushSubscription {
        user,
        device_client_id: device.to_string(),
        url: url.to_string(),
        keys,
        verification_code: random_code(),
        expires: Some(granted(expires)),
        types,
    })
}

/// PushSubscription/set (RFC 8620 7.2.2).
pub(crate) async fn set(
    hub: &Arc<Hub>,
    store: &Arc<dyn Store>,
    user: UserId,
    args: Map<String, Value>,
) -> Result<Map<String, Value>, MethodError> {
    for k in args.keys() {
        if !["create", "update", "destroy"].contains(&k.as_str()) {
            return Err(MethodError::invalid_arguments(format!(
                "PushSubscription/set takes no {k}"
            )));
        }
    }
    let obj = |k: &str| -> Result<Map<String, Value>, MethodError> {
        match args.get(k) {
            None | Some(Value::Null) => Ok(Map::new()),
            Some(Value::Object(m)) => Ok(m.clone()),
            Some(_) => Err(MethodError::invalid_arguments(format!(
                "{k} must be an object"
            ))),
        }
    };
    let create = obj("create")?;
    let update = obj("update")?;
    let destroy = parse_ids(&{
        let mut m = Map::new();
        if let Some(d) = args.get("destroy") {
            m.insert("ids".into(), d.clone());
        }
        m
    })?
    .unwrap_or_default();

    let (mut created, mut not_created) = (Map::new(), Map::new());
    let (mut updated, mut not_updated) = (Map::new(), Map::new());
    let (mut destroyed, mut not_destroyed) = (Vec::new(), Map::new());
    let mut mine = store
        .push_subscriptions(Some(user))
        .await
        .map_err(server_fail)?;

    for (cid, o) in create {
        if mine.len() >= MAX_PER_USER {
            not_created.insert(
                cid,
                set_error(
                    SetError::new(SetErrorType::OverQuota)
                        .with_description(format!("at most {MAX_PER_USER} push subscriptions")),
                ),
            );
            continue;
        }
        let asked = o
            .get("expires")
            .and_then(|e| parse_expires(e).ok())
            .flatten();
        let new = match parse_create(
            &o,
            user,
            hub.subscriptions.allow_http,
            hub.subscriptions.allow_private,
        ) {
            Ok(n) => n,
            Err(e) => {
                not_created.insert(cid, set_error(*e));
                continue;
            }
        };
        let id = store
            .create_push_subscription(&new)
            .await
            .map_err(server_fail)?;
        let rec = PushSubscriptionRecord {
            id,
            user,
            device_client_id: new.device_client_id,
            url: new.url,
            keys: new.keys,
            verification_code: new.verification_code,
            verified: false,
            expires: new.expires,
            types: new.types,
        };
        let mut c = Map::new();
        c.insert("id".into(), json!(jmap_id(id)));
        if asked != rec.expires {
            c.insert("expires".into(), view(&rec)["expires"].clone());
        }
        created.insert(cid, Value::Object(c));
        // RFC 8620 7.2.2: the PushVerification goes to the URL; the client sets the code.
        let (hub, store, r) = (hub.clone(), store.clone(), rec.clone());
        tokio::spawn(async move {
            // `p<n>` is always an Id (RFC 8620 1.2).
            let Ok(id) = jmap_proto::Id::new(jmap_id(r.id)) else {
                return;
            };
            let verification = PushVerification {
                push_subscription_id: id,
                verification_code: r.verification_code.clone(),
            };
            // Only strings: serializing cannot fail.
            let v = serde_json::to_value(verification).unwrap_or(Value::Null);
            deliver(&hub, &store, &r, v, None).await;
        });
        mine.push(rec);
    }

    for (id, patch) in update {
        let Some(s) = mine.iter().find(|s| jmap_id(s.id) == id).cloned() else {
            not_updated.insert(id, set_error(SetError::new(SetErrorType::NotFound)));
            continue;
        };
        let Some(p) = patch.as_object() else {
            not_updated.insert(id, set_error(SetError::new(SetErrorType::InvalidPatch)));
            continue;
        };
        let mut u = PushSubscriptionUpdate::default();
        let mut err = None;
        let mut reply = Map::new();
        for (k, v) in p {
            match k.as_str() {
                "verificationCode" => {
                    if v.as_str() == Some(s.verification_code.as_str()) {
                        u.verified = Some(true);
                    } else {
                        err = Some(invalid(&["verificationCode"], "not the code sent"));
                    }
                }
                "expires" => match parse_expires(v) {
                    Ok(e) => {
                        let g = granted(e);
                        if Some(g) != e {
                            reply.insert(
                                "expires".into(),
                                UtcDate::from_timestamp(g)
                                    .map(|d| json!(d.to_string()))
                                    .unwrap_or(Value::Null),
                            );
                        }
                        u.expires = Some(Some(g));
                    }
                    Err(e) => err = Some(e),
                },
                "types" => match parse_types(v) {
                    Ok(t) => u.types = Some(t),
                    Err(e) => err = Some(e),
                },
                other => err = Some(invalid(&[other], "immutable or unknown property")),
            }
        }
        if let Some(e) = err {
            not_updated.insert(id, set_error(*e));
            continue;
        }
        store
            .update_push_subscription(s.id, user, &u)
            .await
            .map_err(server_fail)?;
        updated.insert(
            id,
            if reply.is_empty() {
                Value::Null
            } else {
                Value::Object(reply)
            },
        );
        let rec = PushSubscriptionRecord {
            verified: u.verified.unwrap_or(s.verified),
            expires: u.expires.unwrap_or(s.expires),
            types: u.types.clone().unwrap_or(s.types.clone()),
            ..s
        };
        if rec.verified {
            start(hub, store, rec);
        }
    }

    for id in destroy {
        let Some(s) = mine.iter().find(|s| jmap_id(s.id) == id) else {
            not_destroyed.insert(id, set_error(SetError::new(SetErrorType::NotFound)));
            continue;
        };
        hub.subscriptions.stop(s.id);
        store
            .delete_push_subscription(s.id, Some(user))
            .await
            .map_err(server_fail)?;
        destroyed.push(json!(id));
    }

    let mut out = Map::new();
    crate::jmap::SetMaps {
        created,
        updated,
        destroyed,
        not_created,
        not_updated,
        not_destroyed,
    }
    .write(&mut out);
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn only_public_addresses_are_public() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(!is_public(a.parse::<IpAddr>().unwrap()), "{a}");
        }
        for a in [
            "1.1.1.1",
            "93.184.216.34",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(a.parse::<IpAddr>().unwrap()), "{a}");
        }
    }

    #[test]
    fn a_subscription_to_a_private_literal_is_refused_at_create() {
        for url in [
            "https://127.0.0.1/p",
            "https://[::1]:8443/p",
            "https://10.0.0.7/p",
            "https://169.254.169.254/latest/meta-data",
            "https://[::ffff:192.168.0.1]/p",
        ] {
            let obj = json!({"deviceClientId": "d", "url": url});
            let err = parse_create(&obj, UserId(1), false, false).unwrap_err();
            assert_eq!(err.kind, SetErrorType::InvalidProperties, "{url}");
            assert!(parse_create(&obj, UserId(1), false, true).is_ok(), "{url}");
        }
        let obj = json!({"deviceClientId": "d", "url": "https://push.example.org/p"});
        assert!(parse_create(&obj, UserId(1), false, false).is_ok());
    }

    /// A name that resolves to loopback (here `localhost`, as DNS rebinding would) never
    /// gets a connection: the listener below sees nobody, and the POST fails.
    #[tokio::test]
    async fn the_client_never_connects_to_a_name_that_resolves_privately() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let guarded = Subscriptions::new(true, false);
        let r = guarded
            .client
            .as_ref()
            .unwrap()
            .post(format!("http://localhost:{port}/p"))
            .body("x")
            .send()
            .await;
        assert!(r.is_err(), "the guarded client reached localhost");
        let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
        assert!(accepted.is_err(), "a connection reached the listener");

        // The same request with private addresses allowed does connect.
        let open = Subscriptions::new(true, true);
        let send = tokio::spawn(async move {
            open.client
                .as_ref()
                .unwrap()
                .post(format!("http://localhost:{port}/p"))
                .body("x")
                .timeout(Duration::from_millis(500))
                .send()
                .await
        });
        let accepted = tokio::time::timeout(Duration::from_secs(5), listener.accept()).await;
        assert!(accepted.is_ok(), "the unguarded client did not connect");
        send.abort();
    }
}

//! Who is asking: HTTP Basic with the Tidings user name and password, or a Bearer API token,
//! with failed attempts rate-limited per client address and per user name.
//!
//! Argon2 is deliberately slow (tens of milliseconds), too slow for every request of a
//! busy client, so a successful Basic login is remembered for a while by a keyed hash of
//! the credentials (never the password itself).

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use mail_types::UserId;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::Store;

/// Failed attempts allowed per window, per client address and per user name.
const MAX_FAILURES: u32 = 10;
const FAILURE_WINDOW: Duration = Duration::from_secs(300);
/// How long a verified Basic login is remembered.
const CACHE_TTL: Duration = Duration::from_secs(300);
/// Bounds on the in-memory tables, so a flood of distinct names cannot exhaust memory.
const MAX_TRACKED: usize = 100_000;

#[derive(Debug, thiserror::Error)]
#[error("hashing the password failed: {0}")]
pub struct HashError(String);

/// Argon2id hash (PHC string) of a Tidings user password.
pub fn hash_password(password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Whether `password` matches the stored Argon2 `hash`.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A new API token (shown once) and the hash that is stored. Tokens carry 256 random bits,
/// so a plain SHA-256 is enough to store them (no dictionary to slow down).
pub fn new_token() -> (String, String) {
    let mut raw = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut raw);
    let token = format!(
        "tid_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    );
    let hash = token_hash(&token);
    (token, hash)
}

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("authentication required")]
    Missing,
    #[error("wrong user name or password")]
    Invalid,
    #[error("too many failed attempts; retry in {0} s")]
    RateLimited(u64),
    #[error("authentication is unavailable")]
    Unavailable,
}

#[derive(Default)]
struct Failures {
    by_ip: HashMap<IpAddr, (u32, Instant)>,
    by_user: HashMap<String, (u32, Instant)>,
}

/// The authenticated principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user: UserId,
    pub name: String,
}

pub struct Authenticator {
    store: Arc<dyn Store>,
    failures: Mutex<Failures>,
    cache: Mutex<HashMap<[u8; 32], (Principal, Instant)>>,
    /// Keys the credential cache, so its keys reveal nothing even in a memory dump.
    cache_key: [u8; 32],
}

fn over(entry: Option<&(u32, Instant)>) -> Option<u64> {
    let (n, since) = entry?;
    let elapsed = since.elapsed();
    if *n >= MAX_FAILURES && elapsed < FAILURE_WINDOW {
        Some((FAILURE_WINDOW - elapsed).as_secs().max(1))
    } else {
        None
    }
}

fn bump<K: std::hash::Hash + Eq>(map: &mut HashMap<K, (u32, Instant)>, key: K) {
    if map.len() >= MAX_TRACKED {
        map.retain(|_, (_, since)| since.elapsed() < FAILURE_WINDOW);
    }
    if map.len() >= MAX_TRACKED {
        // Still full of live entries: an attack from many addresses. Keep counting the
        // existing ones; new keys are refused tracking rather than growing the map.
        if let Some(e) = map.get_mut(&key) {
            e.0 += 1;
        }
        return;
    }
    let e = map.entry(key).or_insert((0, Instant::now()));
    if e.1.elapsed() >= FAILURE_WINDOW {
        *e = (0, Instant::now());
    }
    e.0 += 1;
}

impl Authenticator {
    pub fn new(store: Arc<dyn Store>) -> Self {
        let mut cache_key = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut cache_key);
        Authenticator {
            store,
            failures: Mutex::new(Failures::default()),
            cache: Mutex::new(HashMap::new()),
            cache_key,
        }
    }

    fn limited(&self, ip: IpAddr, user: Option<&str>) -> Result<(), AuthError> {
        let f = self.failures.lock().map_err(|_| AuthError::Unavailable)?;
        let wait = over(f.by_ip.get(&ip)).or_else(|| user.and_then(|u| over(f.by_user.get(u))));
        match wait {
            Some(s) => Err(AuthError::RateLimited(s)),
            None => Ok(()),
        }
    }

    fn failed(&self, ip: IpAddr, user: Option<&str>) {
        if let Ok(mut f) = self.failures.lock() {
            bump(&mut f.by_ip, ip);
            if let Some(u) = user {
                bump(&mut f.by_user, u.to_string());
            }
        }
        tracing::warn!(client = %ip, user = user.unwrap_or(""), "failed authentication");
    }

    fn cache_slot(&self, user: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.cache_key);
        h.update((user.len() as u64).to_le_bytes());
        h.update(user.as_bytes());
        h.update(password.as_bytes());
        h.finalize().into()
    }

    /// Checks an `Authorization` header value.
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
        ip: IpAddr,
    ) -> Result<Principal, AuthError> {
        let Some(value) = authorization else {
            return Err(AuthError::Missing);
        };
        let (scheme, rest) = value.trim().split_once(' ').ok_or(AuthError::Missing)?;
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .map_err(|_| AuthError::Invalid)?;
            let decoded = String::from_utf8(decoded).map_err(|_| AuthError::Invalid)?;
            let (user, password) = decoded.split_once(':').ok_or(AuthError::Invalid)?;
            self.basic(user, password, ip).await
        } else if scheme.eq_ignore_ascii_case("bearer") {
            self.bearer(rest.trim(), ip).await
        } else {
            Err(AuthError::Missing)
        }
    }

    async fn basic(&self, user: &str, password: &str, ip: IpAddr) -> Result<Principal, AuthError> {
        self.limited(ip, Some(user))?;
        let slot = self.cache_slot(user, password);
        if let Ok(cache) = self.cache.lock()
            && let Some((p, at)) = cache.get(&slot)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(p.clone());
        }
        let record = self
            .store
            .user_by_name(user)
            .await
            .map_err(|_| AuthError::Unavailable)?;
        // Verify even for unknown users (against a fixed hash) so timing does not tell
        // which user names exist.
        let hash = record
            .as_ref()
            .map(|r| r.password_hash.clone())
            .unwrap_or_else(|| DUMMY_HASH.to_string());
        let pw = password.to_string();
        let ok = tokio::task::spawn_blocking(move || verify_password(&pw, &hash))
            .await
            .map_err(|_| AuthError::Unavailable)?;
        match (ok, record) {
            (true, Some(r)) => {
                let p = Principal {
                    user: r.id,
                    name: r.name,
                };
                if let Ok(mut cache) = self.cache.lock() {
                    if cache.len() >= MAX_TRACKED {
                        cache.clear();
                    }
                    cache.insert(slot, (p.clone(), Instant::now()));
                }
                Ok(p)
            }
            _ => {
                self.failed(ip, Some(user));
                Err(AuthError::Invalid)
            }
        }
    }

    async fn bearer(&self, token: &str, ip: IpAddr) -> Result<Principal, AuthError> {
        self.limited(ip, None)?;
        match self.store.user_by_token_hash(&token_hash(token)).await {
            Ok(Some(r)) => Ok(Principal {
                user: r.id,
                name: r.name,
            }),
            Ok(None) => {
                self.failed(ip, None);
                Err(AuthError::Invalid)
            }
            Err(_) => Err(AuthError::Unavailable),
        }
    }
}

// --- web client sessions (issue 6) ------------------------------------------------------

/// Name of the web client's session cookie.
pub const SESSION_COOKIE: &str = "tidings_session";
/// How long a web sign-in lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// A new web session token (256 random bits, base64url) and the hash that is stored.
pub fn new_session_token() -> (String, String) {
    let mut raw = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut raw);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    let hash = token_hash(&token);
    (token, hash)
}

/// The value of the session cookie in a `Cookie` header, if any.
pub fn session_cookie(cookie_header: &str) -> Option<&str> {
    cookie_header
        .split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

impl Authenticator {
    /// Checks a user name and password (with the rate limits of Basic) and opens a web
    /// session: the token for the cookie and the principal.
    pub async fn login(
        &self,
        user: &str,
        password: &str,
        ip: IpAddr,
    ) -> Result<(Principal, String), AuthError> {
        let p = self.basic(user, password, ip).await?;
        let (token, hash) = new_session_token();
        let expires = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
            + SESSION_TTL.as_secs() as i64;
        self.store
            .create_web_session(p.user, &hash, expires)
            .await
            .map_err(|_| AuthError::Unavailable)?;
        Ok((p, token))
    }

    /// The principal of a session cookie's token.
    pub async fn session(&self, token: &str, ip: IpAddr) -> Result<Principal, AuthError> {
        self.limited(ip, None)?;
        match self.store.user_by_web_session(&token_hash(token)).await {
            Ok(Some(r)) => Ok(Principal {
                user: r.id,
                name: r.name,
            }),
            Ok(None) => {
                self.failed(ip, None);
                Err(AuthError::Invalid)
            }
            Err(_) => Err(AuthError::Unavailable),
        }
    }

    /// Ends the session of a token (signing out).
    pub async fn logout(&self, token: &str) -> Result<bool, AuthError> {
        self.store
            .delete_web_session(&token_hash(token))
            .await
            .map_err(|_| AuthError::Unavailable)
    }
}

/// Argon2id of a random password nobody knows; verified against for unknown user names.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$6c0BsHvtwJ6ZhvIfq4c3o6gpLs/6yD+ZwVsg1ZlXlyw";

#[cfg(test)]
mod tests {
    use super::*;
    use store::SqliteStore;

    fn basic(user: &str, pw: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
        )
    }

    async fn setup() -> (Authenticator, Arc<dyn Store>) {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
        store
            .create_user("alice", &hash_password("right").unwrap())
            .await
            .unwrap();
        (Authenticator::new(store.clone()), store)
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn the_dummy_hash_is_a_real_argon2_hash() {
        // Otherwise unknown users would fail fast and timing would tell them apart.
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
        assert!(!verify_password("anything", DUMMY_HASH));
    }

    #[tokio::test]
    async fn basic_and_bearer() {
        let (auth, store) = setup().await;
        let p = auth
            .authenticate(Some(&basic("alice", "right")), IP)
            .await
            .unwrap();
        assert_eq!(p.name, "alice");
        // The second time comes from the cache, with the same answer.
        assert_eq!(
            auth.authenticate(Some(&basic("alice", "right")), IP).await,
            Ok(p.clone())
        );
        assert_eq!(
            auth.authenticate(Some(&basic("alice", "wrong")), IP).await,
            Err(AuthError::Invalid)
        );
        assert_eq!(
            auth.authenticate(Some(&basic("nobody", "x")), IP).await,
            Err(AuthError::Invalid)
        );
        assert_eq!(auth.authenticate(None, IP).await, Err(AuthError::Missing));
        assert_eq!(
            auth.authenticate(Some("Basic !!!"), IP).await,
            Err(AuthError::Invalid)
        );
        let (token, hash) = new_token();
        store.create_token(p.user, "t", &hash).await.unwrap();
        let via_token = auth
            .authenticate(Some(&format!("Bearer {token}")), IP)
            .await
            .unwrap();
        assert_eq!(via_token.user, p.user);
        assert_eq!(
            auth.authenticate(Some("Bearer tid_nope"), IP).await,
            Err(AuthError::Invalid)
        );
    }

    #[tokio::test]
    async fn web_sessions_open_check_and_close() {
        let (auth, _) = setup().await;
        assert_eq!(
            auth.login("alice", "wrong", IP).await.map(|_| ()),
            Err(AuthError::Invalid)
        );
        let (p, token) = auth.login("alice", "right", IP).await.unwrap();
        assert_eq!(p.name, "alice");
        assert_eq!(auth.session(&token, IP).await, Ok(p));
        assert_eq!(auth.session("forged", IP).await, Err(AuthError::Invalid));
        assert_eq!(
            session_cookie(&format!("a=b; {SESSION_COOKIE}={token}; c=d")),
            Some(token.as_str())
        );
        assert_eq!(session_cookie("a=b"), None);
        assert_eq!(auth.logout(&token).await, Ok(true));
        assert_eq!(auth.session(&token, IP).await, Err(AuthError::Invalid));
        assert_eq!(auth.logout(&token).await, Ok(false));
    }

    #[tokio::test]
    async fn failures_are_rate_limited_per_user_and_per_address() {
        let (auth, _) = setup().await;
        let other = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
        for _ in 0..MAX_FAILURES {
            let _ = auth.authenticate(Some(&basic("alice", "wrong")), IP).await;
        }
        // Even the right password is refused while the address is limited...
        assert!(matches!(
            auth.authenticate(Some(&basic("alice", "right")), IP).await,
            Err(AuthError::RateLimited(_))
        ));
        // ...and the user name is limited from another address too.
        assert!(matches!(
            auth.authenticate(Some(&basic("alice", "right")), other)
                .await,
            Err(AuthError::RateLimited(_))
        ));
    }
}

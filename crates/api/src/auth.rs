//! Who is asking: HTTP Basic with the Tidings user name and password, or a Bearer API token,
//! or the web client's session cookie.
//!
//! Argon2 is deliberately slow (tens of milliseconds) and large (19 MiB per check), too
//! slow for every request of a busy client, so a successful Basic login is remembered for
//! a while by a keyed hash of the credentials (never the password itself). Password checks
//! run at most one per core at once, each in a buffer reused from a pool, so a burst of
//! failed logins costs time (queued, then 503) but never memory.
//!
//! Failed passwords are limited the way well-run services do it, so a stranger can slow
//! down guessing but not lock a user out: a budget per (address, user) and one per address,
//! each followed by an exponentially growing delay; per user (all addresses together) only
//! a slow-down, and only far beyond what one person mistypes. An attempt reserves its
//! failure before the password is checked, so parallel attempts cannot slip past the
//! budget; a right password takes its reservation back. Tokens and session cookies carry
//! 256 random bits, cannot be guessed, and are never refused by a password limit.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use base64::Engine;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::Store;

/// Failed passwords one address may try for one user name before each further attempt
/// waits (exponentially longer).
const PAIR_FREE: u32 = 10;
/// Failed passwords one address may try across all user names (a shared NAT holds many
/// people, so this is higher than the per-user budget).
const ADDRESS_FREE: u32 = 50;
/// Failed passwords for one user name from all addresses together beyond which every
/// password attempt for that user is slowed down, never refused: refusing would let
/// anyone lock the user out.
const USER_SLOW: u32 = 200;
/// The slow-down of an attempt for a user over [`USER_SLOW`].
const USER_SLOWDOWN: Duration = Duration::from_secs(1);
/// The first delay after a budget is spent; each further failure doubles it.
const BASE_DELAY: Duration = Duration::from_secs(1);
const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
/// Failures older than this (and whose delay has passed) are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// How long a verified Basic login is remembered.
const CACHE_TTL: Duration = Duration::from_secs(300);
/// Bounds on the in-memory tables, so a flood of distinct names cannot exhaust memory.
const MAX_TRACKED: usize = 100_000;
/// Longest user name kept as a key of the failure tables.
const MAX_NAME_KEY: usize = 256;
/// How long a password check waits for a free verifier before the client is told to come
/// back later (503 with Retry-After).
pub const DEFAULT_VERIFY_WAIT: Duration = Duration::from_secs(10);
/// Password checks waiting for a verifier, per verifier; beyond that the answer is 503 at
/// once (a waiting request is cheap, but not free).
const WAITING_PER_VERIFIER: usize = 256;

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
    verify_in(password, hash, &mut Vec::new())
}

/// Argon2 memory of the default parameters (what [`hash_password`] makes), in blocks.
const POOLED_BLOCKS: usize = argon2::Params::DEFAULT_M_COST as usize;

/// [`verify_password`] with `memory` as Argon2's working memory (grown when the hash asks
/// for more), so a pool of buffers can serve every check instead of 19 MiB allocated and
/// freed per check: with glibc that memory stays with the process after a burst.
fn verify_in(password: &str, hash: &str, memory: &mut Vec<argon2::Block>) -> bool {
    let Ok(h) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(expected), Some(salt)) = (h.hash, h.salt) else {
        return false;
    };
    let Ok(algorithm) = argon2::Algorithm::try_from(h.algorithm) else {
        return false;
    };
    let version = match h.version.map(argon2::Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = argon2::Params::try_from(&h) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    if memory.len() < params.block_count() {
        memory.resize(params.block_count(), argon2::Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    let hashed = argon2::Argon2::new(algorithm, version, params).hash_password_into_with_memory(
        password.as_bytes(),
        salt,
        &mut out,
        memory.as_mut_slice(),
    );
    if hashed.is_err() {
        return false;
    }
    // `Output`'s equality is constant-time.
    argon2::password_hash::Output::new(&out).is_ok_and(|o| o == expected)
}

/// Runs password checks at most `slots` at once, each in a pooled Argon2 buffer.
struct Verifier {
    slots: Arc<tokio::sync::Semaphore>,
    pool: Arc<Mutex<Vec<Vec<argon2::Block>>>>,
    waiting: AtomicUsize,
    max_waiting: usize,
    wait: Duration,
}

impl Verifier {
    fn new(slots: usize, wait: Duration) -> Self {
        let slots = slots.max(1);
        Verifier {
            slots: Arc::new(tokio::sync::Semaphore::new(slots)),
            pool: Arc::new(Mutex::new(Vec::new())),
            waiting: AtomicUsize::new(0),
            max_waiting: slots * WAITING_PER_VERIFIER,
            wait,
        }
    }

    async fn verify(&self, password: &str, hash: String) -> Result<bool, AuthError> {
        let busy = AuthError::Busy(self.wait.as_secs().max(1));
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(busy);
        }
        let permit = tokio::time::timeout(self.wait, self.slots.clone().acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        let permit = match permit {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => return Err(AuthError::Unavailable),
            Err(_) => return Err(busy),
        };
        let pool = self.pool.clone();
        let pw = password.to_string();
        // The permit and the buffer travel with the blocking task: a request dropped
        // while its check runs still holds its slot until the check ends.
        tokio::task::spawn_blocking(move || {
            let mut memory = pool
                .lock()
                .ok()
                .and_then(|mut p| p.pop())
                .unwrap_or_default();
            let ok = verify_in(&pw, &hash, &mut memory);
            // A foreign hash may have grown the buffer; the pool keeps default-size ones.
            if memory.len() == POOLED_BLOCKS
                && let Ok(mut p) = pool.lock()
            {
                p.push(memory);
            }
            drop(permit);
            ok
        })
        .await
        .map_err(|_| AuthError::Unavailable)
    }
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

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("authentication required")]
    Missing,
    #[error("wrong user name or password")]
    Invalid,
    #[error("too many failed attempts; retry in {0} s")]
    RateLimited(u64),
    #[error("authentication is unavailable")]
    Unavailable,
    #[error("too many password checks at once; retry in {0} s")]
    Busy(u64),
}

/// Failed attempts of one key, and until when its next attempt waits.
#[derive(Clone, Copy)]
struct Entry {
    failures: u32,
    last: Instant,
    until: Instant,
}

impl Entry {
    fn new(now: Instant) -> Self {
        Entry {
            failures: 0,
            last: now,
            until: now,
        }
    }

    fn stale(&self, now: Instant) -> bool {
        self.until <= now && now.duration_since(self.last) >= FORGET_AFTER
    }

    /// Seconds until the next attempt may run, when it must wait.
    fn wait(&self, now: Instant) -> Option<u64> {
        (self.until > now).then(|| {
            let d = self.until - now;
            d.as_secs() + u64::from(d.subsec_nanos() > 0)
        })
    }

    /// Counts one more failure; past `free` failures the next attempt waits
    /// `BASE_DELAY * 2^(over - 1)`, at most `MAX_DELAY`.
    fn fail(&mut self, now: Instant, free: u32) {
        if self.stale(now) {
            *self = Entry::new(now);
        }
        self.failures = self.failures.saturating_add(1);
        self.last = now;
        self.delay_from(now, free);
    }

    /// Starts the delay the failures call for at `now` (again when the check that was
    /// reserved earlier has failed: the wait runs from the answer, not from the question).
    fn delay_from(&mut self, now: Instant, free: u32) {
        if let Some(over) = self.failures.checked_sub(free).filter(|o| *o > 0) {
            let delay = BASE_DELAY
                .checked_mul(1u32 << (over - 1).min(20))
                .unwrap_or(MAX_DELAY)
                .min(MAX_DELAY);
            self.until = self.until.max(now + delay);
        }
    }

    /// Takes back one failure (its password proved right).
    fn unfail(&mut self, now: Instant, free: u32) {
        self.failures = self.failures.saturating_sub(1);
        if self.failures <= free {
            self.until = now;
        }
    }
}

/// The failure tables, behind one lock so a check and its reservation are one step.
#[derive(Default)]
struct Failures {
    by_pair: HashMap<(IpAddr, String), Entry>,
    by_address: HashMap<IpAddr, Entry>,
    by_user: HashMap<String, Entry>,
}

/// An entry of `map` to count in, or `None` when the table is full of live entries (an
/// attack from very many keys): the attempt then goes uncounted rather than growing it.
fn slot<K: std::hash::Hash + Eq>(
    map: &mut HashMap<K, Entry>,
    key: K,
    now: Instant,
) -> Option<&mut Entry> {
    if map.len() >= MAX_TRACKED && !map.contains_key(&key) {
        map.retain(|_, e| !e.stale(now));
        if map.len() >= MAX_TRACKED {
            return None;
        }
    }
    Some(map.entry(key).or_insert_with(|| Entry::new(now)))
}

/// A password attempt counted as failed until [`Reservation::succeeded`] says otherwise.
struct Reservation {
    ip: IpAddr,
    user: String,
    /// Wait this long before checking (the per-user slow-down).
    slow_down: Option<Duration>,
}

/// The authenticated principal (the JMAP server's caller).
pub use jmap_server::Principal;

pub struct Authenticator {
    store: Arc<dyn Store>,
    failures: Mutex<Failures>,
    verifier: Verifier,
    cache: Mutex<HashMap<[u8; 32], (Principal, Instant)>>,
    /// The credentials being checked now (by cache slot): a request presenting the same
    /// ones takes that check's answer instead of starting its own. A node just started
    /// behind a load balancer gets a client's parallel requests all at once; each would
    /// count against its address's failure budget before the first check ends, and all
    /// but the first few be refused.
    checking: Mutex<HashMap<[u8; 32], Answer>>,
    /// Keys the credential cache, so its keys reveal nothing even in a memory dump.
    cache_key: [u8; 32],
}

/// The answer of a running check of credentials, once it has one.
type Answer = tokio::sync::watch::Receiver<Option<Result<Principal, AuthError>>>;

/// The check of one set of credentials while it runs (see `Authenticator::checking`):
/// when it ends, however it ends, the slot is freed and the waiting requests told.
struct Checking<'a> {
    map: &'a Mutex<HashMap<[u8; 32], Answer>>,
    slot: [u8; 32],
    answer: tokio::sync::watch::Sender<Option<Result<Principal, AuthError>>>,
}

impl Checking<'_> {
    fn answer(&self, r: &Result<Principal, AuthError>) {
        let _ = self.answer.send(Some(r.clone()));
    }
}

impl Drop for Checking<'_> {
    fn drop(&mut self) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(&self.slot);
        }
    }
}

/// Password checks that run at once by default: one per core.
pub fn default_verifiers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

fn name_key(user: &str) -> String {
    let mut end = user.len().min(MAX_NAME_KEY);
    while !user.is_char_boundary(end) {
        end -= 1;
    }
    user[..end].to_string()
}

impl Authenticator {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self::with_verifiers(store, default_verifiers(), DEFAULT_VERIFY_WAIT)
    }

    /// With `verifiers` password checks at once, each waiting at most `wait` for its turn.
    pub fn with_verifiers(store: Arc<dyn Store>, verifiers: usize, wait: Duration) -> Self {
        let mut cache_key = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut cache_key);
        Authenticator {
            store,
            failures: Mutex::new(Failures::default()),
            verifier: Verifier::new(verifiers, wait),
            cache: Mutex::new(HashMap::new()),
            checking: Mutex::new(HashMap::new()),
            cache_key,
        }
    }

    /// Checks the budgets of `ip` and (`ip`, `user`) and, in the same step, counts this
    /// attempt as a failure, so attempts running in parallel each see the others.
    fn reserve(&self, ip: IpAddr, user: &str) -> Result<Reservation, AuthError> {
        let mut f = self.failures.lock().map_err(|_| AuthError::Unavailable)?;
        let now = Instant::now();
        let user = name_key(user);
        let pair = (ip, user.clone());
        let wait = f
            .by_pair
            .get(&pair)
            .and_then(|e| e.wait(now))
            .into_iter()
            .chain(f.by_address.get(&ip).and_then(|e| e.wait(now)))
            .max();
        if let Some(secs) = wait {
            return Err(AuthError::RateLimited(secs));
        }
        if let Some(e) = slot(&mut f.by_pair, pair, now) {
            e.fail(now, PAIR_FREE);
        }
        if let Some(e) = slot(&mut f.by_address, ip, now) {
            e.fail(now, ADDRESS_FREE);
        }
        let slow_down = slot(&mut f.by_user, user.clone(), now).and_then(|e| {
            if e.stale(now) {
                *e = Entry::new(now);
            }
            e.failures = e.failures.saturating_add(1);
            e.last = now;
            (e.failures > USER_SLOW).then_some(USER_SLOWDOWN)
        });
        Ok(Reservation {
            ip,
            user,
            slow_down,
        })
    }

    /// The password of `r` was wrong: its failure stays counted and the delay it earned
    /// runs from now.
    fn failed(&self, r: &Reservation) {
        if let Ok(mut f) = self.failures.lock() {
            let now = Instant::now();
            if let Some(e) = f.by_pair.get_mut(&(r.ip, r.user.clone())) {
                e.delay_from(now, PAIR_FREE);
            }
            if let Some(e) = f.by_address.get_mut(&r.ip) {
                e.delay_from(now, ADDRESS_FREE);
            }
        }
    }

    /// The password of `r` was right: its failure is taken back, and the address's record
    /// for that user is cleared.
    fn succeeded(&self, r: Reservation) {
        if let Ok(mut f) = self.failures.lock() {
            let now = Instant::now();
            f.by_pair.remove(&(r.ip, r.user.clone()));
            if let Some(e) = f.by_address.get_mut(&r.ip) {
                e.unfail(now, ADDRESS_FREE);
            }
            if let Some(e) = f.by_user.get_mut(&r.user) {
                e.failures = e.failures.saturating_sub(1);
            }
        }
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
        let slot = self.cache_slot(user, password);
        // A password proven right a moment ago is not a guess: no budget, no Argon2.
        if let Ok(cache) = self.cache.lock()
            && let Some((p, at)) = cache.get(&slot)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(p.clone());
        }
        // The same credentials being checked right now: that check's answer is this
        // request's (the same guess tells nothing new, right or wrong). A check that ends
        // otherwise (busy, limited, cut off) leaves this request to be checked on its own.
        let waiting = self
            .checking
            .lock()
            .map_err(|_| AuthError::Unavailable)?
            .get(&slot)
            .cloned();
        if let Some(mut answer) = waiting
            && let Ok(a) = answer.wait_for(Option::is_some).await
            && let Some(r @ (Ok(_) | Err(AuthError::Invalid))) = a.as_ref()
        {
            return r.clone();
        }
        let (answer, rx) = tokio::sync::watch::channel(None);
        if let Ok(mut m) = self.checking.lock()
            && m.len() < MAX_TRACKED
        {
            m.entry(slot).or_insert(rx);
        }
        let checking = Checking {
            map: &self.checking,
            slot,
            answer,
        };
        let r = self.check_basic(user, password, ip, slot).await;
        checking.answer(&r);
        r
    }

    /// [`Authenticator::basic`]'s check of credentials not in the cache.
    async fn check_basic(
        &self,
        user: &str,
        password: &str,
        ip: IpAddr,
        slot: [u8; 32],
    ) -> Result<Principal, AuthError> {
        let reservation = self.reserve(ip, user)?;
        if let Some(d) = reservation.slow_down {
            tokio::time::sleep(d).await;
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
        let ok = self.verifier.verify(password, hash).await?;
        match (ok, record) {
            (true, Some(r)) => {
                self.succeeded(reservation);
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
                self.failed(&reservation);
                tracing::warn!(client = %ip, user = %reservation.user, "failed authentication");
                Err(AuthError::Invalid)
            }
        }
    }

    /// A Bearer token: 256 random bits, so there is no guessing to limit, and a valid one
    /// is never refused because someone else failed passwords from the same address.
    async fn bearer(&self, token: &str, ip: IpAddr) -> Result<Principal, AuthError> {
        match self.store.user_by_token_hash(&token_hash(token)).await {
            Ok(Some(r)) => Ok(Principal {
                user: r.id,
                name: r.name,
            }),
            Ok(None) => {
                tracing::debug!(client = %ip, "unknown API token");
                Err(AuthError::Invalid)
            }
            Err(_) => Err(AuthError::Unavailable),
        }
    }
}

// --- web client sessions ------------------------------------------------------------------

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
    /// Like a Bearer token, a session token is never refused by a password limit; an
    /// expired cookie (a browser's EventSource retrying with it, say) must not use up the
    /// address's password budget either.
    pub async fn session(&self, token: &str, ip: IpAddr) -> Result<Principal, AuthError> {
        match self.store.user_by_web_session(&token_hash(token)).await {
            Ok(Some(r)) => Ok(Principal {
                user: r.id,
                name: r.name,
            }),
            Ok(None) => {
                tracing::debug!(client = %ip, "unknown session token");
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

    /// An Argon2 hash with tiny parameters, so tests that check many passwords stay fast
    /// in a debug build; verification reads the parameters from the hash.
    fn cheap_hash(password: &str) -> String {
        let salt = SaltString::generate(&mut OsRng);
        let params = argon2::Params::new(8, 1, 1, None).unwrap();
        argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password(password.as_bytes(), &salt)
            .unwrap()
            .to_string()
    }

    async fn cheap_setup(verifiers: usize, wait: Duration) -> (Arc<Authenticator>, Arc<dyn Store>) {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
        store
            .create_user("alice", &cheap_hash("right"))
            .await
            .unwrap();
        let auth = Authenticator::with_verifiers(store.clone(), verifiers, wait);
        (Arc::new(auth), store)
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, n))
    }

    #[test]
    fn a_pooled_buffer_verifies_like_a_fresh_one() {
        let mut memory = Vec::new();
        let real = hash_password("right").unwrap();
        for _ in 0..2 {
            assert!(verify_in("right", &real, &mut memory));
            assert!(!verify_in("wrong", &real, &mut memory));
        }
        assert_eq!(memory.len(), POOLED_BLOCKS);
        // A smaller cost reuses the front of the same buffer.
        let cheap = cheap_hash("pw");
        assert!(verify_in("pw", &cheap, &mut memory));
        assert!(!verify_in("pw", "$argon2id$garbage", &mut memory));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn parallel_wrong_passwords_are_checked_at_most_the_budget() {
        let (auth, _) = cheap_setup(2, DEFAULT_VERIFY_WAIT).await;
        // Each a guess of its own (the same guess twice at once is checked once).
        let tasks: Vec<_> = (0..100)
            .map(|i| {
                let auth = auth.clone();
                tokio::spawn(async move {
                    auth.authenticate(Some(&basic("alice", &format!("wrong{i}"))), IP)
                        .await
                })
            })
            .collect();
        let (mut checked, mut limited) = (0, 0);
        for t in tasks {
            match t.await.unwrap() {
                Err(AuthError::Invalid) => checked += 1,
                Err(AuthError::RateLimited(_)) => limited += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        // The attempt that spends the budget is checked; every later one waits.
        assert_eq!(checked, PAIR_FREE + 1, "{limited} limited");
    }

    /// A client's parallel requests reaching a node that has not checked its password yet
    /// (a node just started behind a load balancer): one check, every request let in.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn parallel_right_passwords_share_one_check() {
        let (auth, _) = setup().await;
        let auth = Arc::new(auth);
        let tasks: Vec<_> = (0..70)
            .map(|_| {
                let auth = auth.clone();
                tokio::spawn(
                    async move { auth.authenticate(Some(&basic("alice", "right")), IP).await },
                )
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().map(|p| p.name), Ok("alice".to_string()));
        }
        assert!(auth.checking.lock().unwrap().is_empty());
    }

    /// The same wrong guess sent many times at once is one guess: checked once, every
    /// request told it is wrong, and the budget charged once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_same_wrong_guess_at_once_is_checked_once() {
        let (auth, _) = setup().await;
        let auth = Arc::new(auth);
        let tasks: Vec<_> = (0..40)
            .map(|_| {
                let auth = auth.clone();
                tokio::spawn(
                    async move { auth.authenticate(Some(&basic("alice", "wrong")), IP).await },
                )
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), Err(AuthError::Invalid));
        }
        // The address has spent one failure of its budget, not forty.
        for i in 0..PAIR_FREE - 1 {
            assert_eq!(
                auth.authenticate(Some(&basic("alice", &format!("w{i}"))), IP)
                    .await,
                Err(AuthError::Invalid)
            );
        }
    }

    #[tokio::test]
    async fn a_limited_address_locks_out_nobody_else() {
        let (auth, store) = cheap_setup(2, DEFAULT_VERIFY_WAIT).await;
        let attacker = ip(9);
        for _ in 0..=PAIR_FREE {
            assert_eq!(
                auth.authenticate(Some(&basic("alice", "wrong")), attacker)
                    .await,
                Err(AuthError::Invalid)
            );
        }
        // The attacker's address now waits, even with the right password...
        assert!(matches!(
            auth.authenticate(Some(&basic("alice", "right")), attacker)
                .await,
            Err(AuthError::RateLimited(1))
        ));
        // ...the user from a clean address is let in...
        let p = auth
            .authenticate(Some(&basic("alice", "right")), IP)
            .await
            .unwrap();
        // ...and so are the user's token and session from the attacker's address itself.
        let (token, hash) = new_token();
        store.create_token(p.user, "t", &hash).await.unwrap();
        assert_eq!(
            auth.authenticate(Some(&format!("Bearer {token}")), attacker)
                .await
                .map(|p| p.name),
            Ok("alice".to_string())
        );
        let (_, session) = auth.login("alice", "right", IP).await.unwrap();
        assert_eq!(
            auth.session(&session, attacker).await.map(|p| p.name),
            Ok("alice".to_string())
        );
    }

    #[tokio::test]
    async fn the_delay_doubles_and_a_right_password_takes_its_failure_back() {
        let (auth, _) = cheap_setup(2, DEFAULT_VERIFY_WAIT).await;
        let now = Instant::now();
        for n in 1..=PAIR_FREE + 3 {
            let r = auth.reserve(IP, "bob").unwrap();
            drop(r);
            let f = auth.failures.lock().unwrap();
            let e = f.by_pair[&(IP, "bob".to_string())];
            assert_eq!(e.failures, n);
            if n > PAIR_FREE {
                let want = BASE_DELAY * (1 << (n - PAIR_FREE - 1));
                assert!(e.until >= now + want && e.until <= Instant::now() + want);
            } else {
                assert!(e.until <= Instant::now());
            }
            drop(f);
            // Let the next attempt through without waiting out the delay.
            auth.failures
                .lock()
                .unwrap()
                .by_pair
                .get_mut(&(IP, "bob".to_string()))
                .unwrap()
                .until = Instant::now();
        }
        let r = auth.reserve(ip(3), "bob").unwrap();
        auth.succeeded(r);
        let f = auth.failures.lock().unwrap();
        assert!(!f.by_pair.contains_key(&(ip(3), "bob".to_string())));
        assert_eq!(f.by_user["bob"].failures, PAIR_FREE + 3);
        assert_eq!(f.by_address[&ip(3)].failures, 0);
    }

    #[tokio::test]
    async fn the_per_user_budget_only_slows_down() {
        let (auth, _) = cheap_setup(2, DEFAULT_VERIFY_WAIT).await;
        // Failures for alice from many addresses, each well within its own budgets.
        for i in 0..USER_SLOW {
            let a = IpAddr::V6(std::net::Ipv6Addr::from(u128::from(i) + 1));
            assert!(auth.reserve(a, "alice").unwrap().slow_down.is_none());
        }
        let clean = ip(77);
        assert_eq!(
            auth.reserve(clean, "alice").unwrap().slow_down,
            Some(USER_SLOWDOWN)
        );
        // Slowed down, never refused: the right password still gets in.
        let start = Instant::now();
        assert_eq!(
            auth.authenticate(Some(&basic("alice", "right")), clean)
                .await
                .map(|p| p.name),
            Ok("alice".to_string())
        );
        assert!(start.elapsed() >= USER_SLOWDOWN);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn password_checks_beyond_the_verifiers_wait_then_get_busy() {
        // One verifier and no waiting: while the first check runs, the others are told to
        // come back (503) instead of each allocating Argon2 memory.
        let (auth, _) = cheap_setup(1, Duration::ZERO).await;
        let store = auth.store.clone();
        store
            .create_user("carol", &hash_password("right").unwrap())
            .await
            .unwrap();
        // The web client's sign-in takes its turn in the same queue.
        let tasks: Vec<_> = (0..5)
            .map(|i| {
                let auth = auth.clone();
                tokio::spawn(async move {
                    if i == 4 {
                        auth.login("carol", "wrong", ip(10 + i))
                            .await
                            .map(|(p, _)| p)
                    } else {
                        let guess = format!("wrong{i}");
                        auth.authenticate(Some(&basic("carol", &guess)), ip(10 + i))
                            .await
                    }
                })
            })
            .collect();
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        let checked = results
            .iter()
            .filter(|r| **r == Err(AuthError::Invalid))
            .count();
        let busy = results
            .iter()
            .filter(|r| matches!(r, Err(AuthError::Busy(_))))
            .count();
        assert_eq!((checked, busy), (1, 4), "{results:?}");
    }
}

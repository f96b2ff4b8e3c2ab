//! VAPID (RFC 8292): the server's P-256 key pair, kept in a file beside the key that
//! encrypts stored passwords, and the `Authorization: vapid t=…, k=…` header that goes with
//! every Web Push POST (the StateChanges and the PushVerification alike). RFC 9749: the
//! public key is offered in the Session as `urn:ietf:params:jmap:webpush-vapid`
//! `applicationServerKey`, so a browser can subscribe with it and its push service can
//! refuse pushes signed by anyone else.
//!
//! Signing is ring's ECDSA P-256 SHA-256 in the fixed (r || s) form, which is exactly
//! the JWS ES256 signature (RFC 7515 A.3); the JWT around it is three base64url parts.
//! The private key is never logged: `Debug` shows the public key only.

use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use std::path::Path;

/// RFC 9749 3: the capability URI.
pub const CAPABILITY: &str = jmap_proto::capability::WEBPUSH_VAPID;

/// How long a token is valid. RFC 8292 2: `exp` MUST NOT be more than 24 hours after
/// the request; 12 hours leaves room for a clock that runs fast.
const TOKEN_LIFETIME_SECS: u64 = 12 * 3600;
/// A token is reused for this long: a change fanned out to thousands of subscriptions at
/// one push service costs one signature, and every token sent has 11 hours left.
const TOKEN_REUSE_SECS: u64 = 3600;
/// Most push service origins whose tokens are kept (subscriptions name a few in practice;
/// past this the cache starts over rather than grow).
const MAX_CACHED_ORIGINS: usize = 1024;

/// What can go wrong with the key file.
#[derive(Debug, thiserror::Error)]
pub enum VapidError {
    #[error("VAPID key file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("VAPID key file {0} holds no PKCS#8 P-256 private key")]
    BadKey(String),
    #[error("no VAPID key could be generated")]
    Generate,
}

/// The server's VAPID identity: its key pair and the contact (`sub`) it names.
pub struct Vapid {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    /// base64url (no padding) of the uncompressed public point, 65 octets.
    public: String,
    subject: String,
    /// Origin -> (Authorization value, when it was made).
    tokens: std::sync::Mutex<std::collections::HashMap<String, (String, u64)>>,
}

impl std::fmt::Debug for Vapid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vapid")
            .field("public", &self.public)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> VapidError + '_ {
    move |source| VapidError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// PKCS#8 DER as PEM (`PRIVATE KEY`), so the file also works with openssl and others.
fn pem(der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END PRIVATE KEY-----\n");
    out
}

/// Writes `data` to `path` readable by the owner only, whole or not at all, through a
/// temporary file: a rotation (`replace`) renames it over the old key in one step; a first
/// start links it only where no key is yet, so of two processes starting together (the
/// server and `tidings vapid show`) both end up with the one that was linked first.
fn write_private(path: &Path, data: &[u8], replace: bool) -> Result<(), VapidError> {
    use std::io::Write;
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let mut suffix = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut suffix);
    let tmp = parent.join(format!(".vapid-{}.tmp", hex::encode(suffix)));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = options
        .open(&tmp)
        .and_then(|mut f| f.write_all(data).and_then(|()| f.sync_all()))
        .and_then(|()| {
            if replace {
                std::fs::rename(&tmp, path)
            } else {
                match std::fs::hard_link(&tmp, path) {
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                    other => other,
                }
            }
        });
    let _ = std::fs::remove_file(&tmp);
    written.map_err(io(path))
}

impl Vapid {
    /// A key pair from PKCS#8 DER.
    pub fn from_pkcs8(der: &[u8], subject: &str) -> Option<Vapid> {
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng).ok()?;
        let public = b64url(key.public_key().as_ref());
        Some(Vapid {
            key,
            rng,
            public,
            subject: subject.to_owned(),
            tokens: Default::default(),
        })
    }

    /// Loads the key pair from `path` (PEM, PKCS#8), creating it (mode 0600) on first
    /// start: the key must survive restarts, or every browser subscription made with the
    /// old public key stops working (RFC 9749 5).
    pub fn load_or_create(path: &Path, subject: &str) -> Result<Vapid, VapidError> {
        match std::fs::read(path) {
            Ok(bytes) => Self::parse(path, &bytes, subject),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                write_private(path, &Self::generate()?, false)?;
                let bytes = std::fs::read(path).map_err(io(path))?;
                let v = Self::parse(path, &bytes, subject)?;
                tracing::info!(path = %path.display(), public = %v.public,
                    "created a new VAPID key pair");
                Ok(v)
            }
            Err(e) => Err(io(path)(e)),
        }
    }

    /// Writes a new key pair to `path`, replacing any old one.
    pub fn rotate(path: &Path) -> Result<(), VapidError> {
        write_private(path, &Self::generate()?, true)
    }

    /// A new key pair as PEM.
    fn generate() -> Result<Vec<u8>, VapidError> {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| VapidError::Generate)?;
        Ok(pem(doc.as_ref()).into_bytes())
    }

    fn parse(path: &Path, bytes: &[u8], subject: &str) -> Result<Vapid, VapidError> {
        let bad = || VapidError::BadKey(path.display().to_string());
        let mut reader = bytes;
        let der = match rustls_pemfile::private_key(&mut reader) {
            Ok(Some(rustls::pki_types::PrivateKeyDer::Pkcs8(k))) => k.secret_pkcs8_der().to_vec(),
            _ => return Err(bad()),
        };
        Self::from_pkcs8(&der, subject).ok_or_else(bad)
    }

    /// RFC 9749 3: the `applicationServerKey`, base64url of the uncompressed point.
    pub fn application_server_key(&self) -> &str {
        &self.public
    }

    /// The Session's `urn:ietf:params:jmap:webpush-vapid` object.
    pub(crate) fn capability(&self) -> serde_json::Value {
        serde_json::json!({ "applicationServerKey": self.public })
    }

    /// RFC 8292 2 and 3: `vapid t=<JWT>, k=<public key>` for a POST to `endpoint`; the
    /// token's `aud` is the push resource's origin. `None` only when signing failed.
    pub(crate) fn authorization(&self, endpoint: &reqwest::Url) -> Option<String> {
        let origin = endpoint.origin().ascii_serialization();
        let now = now();
        if let Ok(tokens) = self.tokens.lock()
            && let Some((value, made)) = tokens.get(&origin)
            && now.saturating_sub(*made) < TOKEN_REUSE_SECS
        {
            return Some(value.clone());
        }
        let value = self.sign(&origin, now)?;
        if let Ok(mut tokens) = self.tokens.lock() {
            if tokens.len() >= MAX_CACHED_ORIGINS {
                tokens.clear();
            }
            tokens.insert(origin, (value.clone(), now));
        }
        Some(value)
    }

    /// A new `vapid` Authorization value for `origin`, made at `now`.
    fn sign(&self, origin: &str, now: u64) -> Option<String> {
        let header = b64url(br#"{"typ":"JWT","alg":"ES256"}"#);
        let mut claims = serde_json::json!({
            "aud": origin,
            "exp": now + TOKEN_LIFETIME_SECS,
        });
        // RFC 8292 2.1: `sub` is a mailto: or https: contact; better none than another.
        if self.subject.starts_with("mailto:") || self.subject.starts_with("https:") {
            claims["sub"] = serde_json::Value::String(self.subject.clone());
        }
        let claims = b64url(claims.to_string().as_bytes());
        let signing_input = format!("{header}.{claims}");
        let sig = self.key.sign(&self.rng, signing_input.as_bytes()).ok()?;
        Some(format!(
            "vapid t={signing_input}.{}, k={}",
            b64url(sig.as_ref()),
            self.public
        ))
    }
}

/// The Session's VAPID capability, when the server has a key (RFC 9749 3), and the
/// Session state follows the key: after a rotation clients see a new state, fetch the
/// Session and subscribe again with the new key (RFC 9749 5).
pub(crate) fn extend_session(hub: &super::Hub, session: &mut jmap_proto::Session) {
    let Some(v) = &hub.limits().vapid else {
        return;
    };
    session
        .capabilities
        .other
        .insert(CAPABILITY.to_owned(), v.capability());
    use sha2::Digest;
    let mut d = sha2::Sha256::new();
    d.update(session.state.as_str().as_bytes());
    d.update(v.public.as_bytes());
    session.state = jmap_proto::State::from(hex::encode(&d.finalize()[..8]));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_key_file_is_made_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k/vapid.pem");
        let a = Vapid::load_or_create(&path, "mailto:admin@example.org").unwrap();
        let b = Vapid::load_or_create(&path, "mailto:admin@example.org").unwrap();
        assert_eq!(a.application_server_key(), b.application_server_key());
        assert_eq!(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(a.application_server_key())
                .unwrap()
                .len(),
            65
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!format!("{a:?}").contains("PRIVATE"));
        Vapid::rotate(&path).unwrap();
        let c = Vapid::load_or_create(&path, "mailto:admin@example.org").unwrap();
        assert_ne!(a.application_server_key(), c.application_server_key());
    }

    #[test]
    fn a_token_is_reused_per_origin_only() {
        let dir = tempfile::tempdir().unwrap();
        let v = Vapid::load_or_create(&dir.path().join("v.pem"), "mailto:a@example.org").unwrap();
        let a = reqwest::Url::parse("https://push.example.net/a").unwrap();
        let b = reqwest::Url::parse("https://push.example.net/b").unwrap();
        let other = reqwest::Url::parse("https://push.example.com:8443/a").unwrap();
        let ta = v.authorization(&a).unwrap();
        assert_eq!(v.authorization(&b).unwrap(), ta, "same origin, same token");
        let to = v.authorization(&other).unwrap();
        assert_ne!(to, ta);
        let claims = |t: &str| -> serde_json::Value {
            let jwt = t
                .strip_prefix("vapid t=")
                .unwrap()
                .split(',')
                .next()
                .unwrap();
            let part = jwt.split('.').nth(1).unwrap();
            serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(part)
                    .unwrap(),
            )
            .unwrap()
        };
        assert_eq!(claims(&ta)["aud"], "https://push.example.net");
        assert_eq!(claims(&to)["aud"], "https://push.example.com:8443");
        // An old token is made again.
        if let Ok(mut t) = v.tokens.lock() {
            for (_, made) in t.values_mut() {
                *made -= TOKEN_REUSE_SECS;
            }
        }
        let again = v.authorization(&a).unwrap();
        assert!(claims(&again)["exp"].as_u64().unwrap() >= claims(&ta)["exp"].as_u64().unwrap());
        assert_ne!(again, ta);
    }

    #[test]
    fn a_damaged_key_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vapid.pem");
        std::fs::write(
            &path,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        assert!(matches!(
            Vapid::load_or_create(&path, "mailto:a@b"),
            Err(VapidError::BadKey(_))
        ));
    }
}

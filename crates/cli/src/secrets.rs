//! Secrets: mail passwords encrypted at rest with a key kept outside the data dir. (Tidings
//! user passwords are Argon2 hashes, made and checked by `api::auth`.)

use anyhow::{Context, Result, bail};
use chacha20poly1305::aead::{Aead, KeyInit, OsRng};
use chacha20poly1305::{AeadCore, ChaCha20Poly1305, Key, Nonce};
use std::path::Path;

const VERSION: u8 = 1;

/// The key that encrypts stored mail passwords (ChaCha20-Poly1305).
#[derive(Clone)]
pub struct SecretKey(Key);

impl SecretKey {
    /// Loads the key, creating it (mode 0600, parent dir 0700) on first start.
    pub fn load_or_create(path: &Path, data_dir: &Path) -> Result<SecretKey> {
        let canon_data = data_dir
            .canonicalize()
            .unwrap_or_else(|_| data_dir.to_path_buf());
        let parent = path.parent().unwrap_or(Path::new("."));
        let canon_parent = parent
            .canonicalize()
            .unwrap_or_else(|_| parent.to_path_buf());
        if canon_parent.starts_with(&canon_data) {
            bail!(
                "key file {} must be outside the data dir {}: a copy of the data dir must not carry its key",
                path.display(),
                data_dir.display()
            );
        }
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
                let key = ChaCha20Poly1305::generate_key(&mut OsRng);
                if write_private(path, hex_encode(&key).as_bytes())? {
                    tracing::info!(path = %path.display(), "created a new secret key");
                    Ok(SecretKey(key))
                } else {
                    // Another process (the server and `tidings account` starting together)
                    // created it first, whole: use that one.
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("reading key file {}", path.display()))?;
                    Self::parse(path, &text)
                }
            }
            Err(e) => Err(e).with_context(|| format!("reading key file {}", path.display())),
        }
    }

    fn parse(path: &Path, text: &str) -> Result<SecretKey> {
        let bytes = hex_decode(text.trim())
            .with_context(|| format!("key file {} is not 64 hex digits", path.display()))?;
        Ok(SecretKey(*Key::from_slice(&bytes)))
    }

    pub fn encrypt(&self, plain: &str) -> Result<Vec<u8>> {
        let cipher = ChaCha20Poly1305::new(&self.0);
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ct = cipher
            .encrypt(&nonce, plain.as_bytes())
            .map_err(|_| anyhow::anyhow!("encryption failed"))?;
        let mut out = Vec::with_capacity(1 + nonce.len() + ct.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    pub fn decrypt(&self, data: &[u8]) -> Result<String> {
        if data.len() < 13 || data[0] != VERSION {
            bail!("stored secret has an unknown format");
        }
        let cipher = ChaCha20Poly1305::new(&self.0);
        let nonce = Nonce::from_slice(&data[1..13]);
        let plain = cipher
            .decrypt(nonce, &data[13..])
            .map_err(|_| anyhow::anyhow!("stored secret does not decrypt with this key file"))?;
        String::from_utf8(plain).context("stored secret is not UTF-8")
    }
}

/// Creates the key file with `data`, readable by its owner only, as one step: it is written
/// and synced under a temporary name, then linked to `path`, so nobody ever reads it half
/// written. `false` when `path` existed already (another process created it first).
#[cfg(unix)]
fn write_private(path: &Path, data: &[u8]) -> Result<bool> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let parent = path.parent().unwrap_or(Path::new("."));
    let _ = std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700));
    let mut suffix = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut suffix);
    let tmp = parent.join(format!(".key-{}.tmp", hex_encode(&suffix)));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating key file {}", tmp.display()))?;
    let written = f.write_all(data).and_then(|()| f.sync_all());
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e).with_context(|| format!("creating key file {}", path.display())),
    }
}

#[cfg(not(unix))]
fn write_private(path: &Path, data: &[u8]) -> Result<bool> {
    std::fs::write(path, data).with_context(|| format!("creating key file {}", path.display()))?;
    Ok(true)
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hex_decode(s: &str) -> Result<Vec<u8>> {
    if s.len() != 64 {
        bail!("wrong length");
    }
    (0..32)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).context("not hex"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_starting_together_share_one_key() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let data = dir.path().join("data");
            std::fs::create_dir_all(&data).unwrap();
            let key = dir.path().join("conf/secret.key");
            let openers: Vec<_> = (0..4)
                .map(|_| {
                    let (key, data) = (key.clone(), data.clone());
                    std::thread::spawn(move || SecretKey::load_or_create(&key, &data).map(|k| k.0))
                })
                .collect();
            let keys: Vec<_> = openers
                .into_iter()
                .map(|o| o.join().unwrap().unwrap())
                .collect();
            assert!(keys.windows(2).all(|w| w[0] == w[1]), "one key for all");
            let leftovers = std::fs::read_dir(key.parent().unwrap()).unwrap().count();
            assert_eq!(leftovers, 1, "no temporary file left");
        }
    }

    #[test]
    fn round_trip_and_tamper() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let keyp = dir.path().join("conf/secret.key");
        let k = SecretKey::load_or_create(&keyp, &data).unwrap();
        let enc = k.encrypt("hunter2").unwrap();
        assert!(!enc.windows(7).any(|w| w == b"hunter2"));
        let k2 = SecretKey::load_or_create(&keyp, &data).unwrap();
        assert_eq!(k2.decrypt(&enc).unwrap(), "hunter2");
        let mut bad = enc.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(k2.decrypt(&bad).is_err());
        assert!(SecretKey::load_or_create(&data.join("k"), &data).is_err());
    }
}

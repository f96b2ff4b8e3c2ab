//! Raw messages, content-addressed by the sha256 of their bytes, as files under
//! `<data_dir>/blobs/ab/abcdef...` (or in memory for tests).
//!
//! Files, not SQLite rows: a message is written once (a WAL database writes it twice, once
//! to the log and once at checkpoint), outside the single writer lock, and can later be
//! streamed to HTTP clients. A file is renamed into place before the transaction that
//! references it commits; a crash in between leaves an unreferenced file, never a
//! reference to nothing. The server stays the source of truth: a blob lost to a power cut
//! after its commit reads back as corrupt (size check) and is fetched again.

use crate::{Error, Result};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub(crate) enum Blobs {
    Dir(PathBuf),
    Memory(Mutex<HashMap<String, Vec<u8>>>),
}

/// A blob id is 64 lowercase hex digits; anything else never becomes a path.
pub(crate) fn valid_id(id: &str) -> bool {
    id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Blobs {
    pub(crate) fn dir(path: &Path) -> Result<Blobs> {
        private_dir_all(path)?;
        Ok(Blobs::Dir(path.to_path_buf()))
    }

    pub(crate) fn memory() -> Blobs {
        Blobs::Memory(Mutex::new(HashMap::new()))
    }

    fn path(root: &Path, id: &str) -> PathBuf {
        root.join(&id[..2]).join(id)
    }

    /// Stores `raw` unless it is there already; returns its id.
    pub(crate) fn put(&self, raw: &[u8]) -> Result<String> {
        let id = mime::blob_id(raw);
        match self {
            Blobs::Dir(root) => {
                let path = Self::path(root, &id);
                if path.metadata().is_ok_and(|m| m.len() == raw.len() as u64) {
                    return Ok(id);
                }
                let dir = root.join(&id[..2]);
                private_dir_all(&dir)?;
                let mut tmp = tempfile_in(&dir)?;
                tmp.1.write_all(raw)?;
                drop(tmp.1);
                std::fs::rename(&tmp.0, &path)?;
            }
            Blobs::Memory(m) => {
                m.lock()
                    .map_err(|_| Error::Task("blob map poisoned".into()))?
                    .entry(id.clone())
                    .or_insert_with(|| raw.to_vec());
            }
        }
        Ok(id)
    }

    /// The blob's bytes; `expected` (the recorded size) detects a file cut short.
    pub(crate) fn get(&self, id: &str, expected: u64) -> Result<Option<Vec<u8>>> {
        if !valid_id(id) {
            return Ok(None);
        }
        let data = match self {
            Blobs::Dir(root) => match std::fs::read(Self::path(root, id)) {
                Ok(d) => d,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e.into()),
            },
            Blobs::Memory(m) => match m
                .lock()
                .map_err(|_| Error::Task("blob map poisoned".into()))?
                .get(id)
            {
                Some(d) => d.clone(),
                None => return Ok(None),
            },
        };
        if data.len() as u64 != expected {
            return Err(Error::Corrupt(format!(
                "blob {id} has {} bytes, {expected} recorded",
                data.len()
            )));
        }
        Ok(Some(data))
    }

    /// The header block of a stored message (at most 256 KiB read), for header filters.
    pub(crate) fn head(&self, id: &str) -> Result<Option<Vec<u8>>> {
        use std::io::Read;
        const MAX: u64 = 256 * 1024;
        if !valid_id(id) {
            return Ok(None);
        }
        let mut data = match self {
            Blobs::Dir(root) => match std::fs::File::open(Self::path(root, id)) {
                Ok(f) => {
                    let mut d = Vec::new();
                    f.take(MAX).read_to_end(&mut d)?;
                    d
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e.into()),
            },
            Blobs::Memory(m) => match m
                .lock()
                .map_err(|_| Error::Task("blob map poisoned".into()))?
                .get(id)
            {
                Some(d) => d[..d.len().min(MAX as usize)].to_vec(),
                None => return Ok(None),
            },
        };
        let end = mime::headers::header_block(&data).len();
        data.truncate(end);
        Ok(Some(data))
    }

    pub(crate) fn remove(&self, id: &str) -> Result<()> {
        if !valid_id(id) {
            return Ok(());
        }
        match self {
            Blobs::Dir(root) => match std::fs::remove_file(Self::path(root, id)) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e.into()),
            },
            Blobs::Memory(m) => {
                m.lock()
                    .map_err(|_| Error::Task("blob map poisoned".into()))?
                    .remove(id);
                Ok(())
            }
        }
    }
}

/// Creates `path` and its missing parents readable by the owner only (0700), whatever the
/// umask: the folders hold people's mail.
pub(crate) fn private_dir_all(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// A new temporary file in `dir` (same filesystem, so the rename is atomic), readable by the
/// owner only (0600) whatever the umask.
fn tempfile_in(dir: &Path) -> Result<(PathBuf, std::fs::File)> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    for _ in 0..100 {
        let name = format!(
            ".tmp-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let path = dir.join(name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Task("no temporary blob file name free".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_round_trip_and_refuse_bad_ids() {
        let dir = tempfile::tempdir().unwrap();
        let b = Blobs::dir(&dir.path().join("blobs")).unwrap();
        let id = b.put(b"hello").unwrap();
        assert_eq!(b.put(b"hello").unwrap(), id);
        assert_eq!(b.get(&id, 5).unwrap().as_deref(), Some(&b"hello"[..]));
        assert!(b.get(&id, 6).is_err(), "size mismatch is corruption");
        assert_eq!(b.get("../../etc/passwd", 0).unwrap(), None);
        b.remove(&id).unwrap();
        assert_eq!(b.get(&id, 5).unwrap(), None);
    }
}

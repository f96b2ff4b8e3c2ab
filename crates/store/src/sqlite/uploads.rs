//! [`Uploads`] for SQLite.

use super::*;

#[async_trait]
impl Uploads for SqliteStore {
    async fn put_upload(
        &self,
        account: AccountId,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Result<UploadRecord> {
        // The file first, outside the lock; the rows reference it once it is in place.
        let blobs = self.blobs.clone();
        let size = bytes.len();
        let bytes = Arc::new(bytes);
        let b = bytes.clone();
        let blob_id = tokio::task::spawn_blocking(move || blobs.put(&b))
            .await
            .map_err(|e| Error::Task(e.to_string()))??;
        let record = UploadRecord {
            account,
            blob_id,
            content_type: content_type.to_string(),
            size: size as u64,
            created_at: now(),
        };
        let r = record.clone();
        self.call(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT OR IGNORE INTO blob (id, size) VALUES (?1, ?2)",
                params![r.blob_id, r.size as i64],
            )?;
            tx.execute(
                "INSERT INTO upload (account_id, blob_id, type, size, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (account_id, blob_id) \
                 DO UPDATE SET type = excluded.type, created_at = excluded.created_at",
                params![
                    account.0,
                    r.blob_id,
                    r.content_type,
                    r.size as i64,
                    r.created_at
                ],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await?;
        // An expiry of an older upload of the same bytes may have removed the file between
        // the write and the commit; now that the row holds it, make sure it is there
        // (a size check when it is).
        let blobs = self.blobs.clone();
        tokio::task::spawn_blocking(move || blobs.put(&bytes))
            .await
            .map_err(|e| Error::Task(e.to_string()))??;
        Ok(record)
    }

    async fn upload(&self, account: AccountId, blob_id: &str) -> Result<Option<UploadRecord>> {
        let id = blob_id.to_string();
        self.call(move |c| {
            Ok(c.prepare_cached(
                "SELECT type, size, created_at FROM upload WHERE account_id = ?1 AND blob_id = ?2",
            )?
            .query_row(params![account.0, id], |r| {
                Ok(UploadRecord {
                    account,
                    blob_id: id.clone(),
                    content_type: r.get(0)?,
                    size: r.get::<_, i64>(1)? as u64,
                    created_at: r.get(2)?,
                })
            })
            .optional()?)
        })
        .await
    }

    async fn upload_bytes(&self, account: AccountId, blob_id: &str) -> Result<Option<Vec<u8>>> {
        let Some(u) = self.upload(account, blob_id).await? else {
            return Ok(None);
        };
        let blobs = self.blobs.clone();
        tokio::task::spawn_blocking(move || blobs.get(&u.blob_id, u.size))
            .await
            .map_err(|e| Error::Task(e.to_string()))?
    }

    async fn expire_uploads(&self, before: i64) -> Result<usize> {
        let blobs = self.blobs.clone();
        self.call(move |c| {
            let tx = c.transaction()?;
            let expired: Vec<String> = {
                let mut st = tx
                    .prepare_cached("DELETE FROM upload WHERE created_at < ?1 RETURNING blob_id")?;
                let rows = st.query_map([before], |r| r.get(0))?;
                rows.collect::<rusqlite::Result<Vec<_>>>()?
            };
            let mut gone = Vec::new();
            for b in &expired {
                let n = tx
                    .prepare_cached(&format!(
                        "DELETE FROM blob WHERE id = ?1 AND {BLOB_UNREFERENCED}"
                    ))?
                    .execute([b])?;
                if n > 0 {
                    gone.push(b.clone());
                }
            }
            tx.commit()?;
            for b in gone {
                blobs.remove(&b)?;
            }
            Ok(expired.len())
        })
        .await
    }
}

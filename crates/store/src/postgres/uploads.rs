//! [`Uploads`] for PostgreSQL (RFC 8620 6.1): the bytes are a `blob` row, so every node
//! reads an upload made on any other.

use super::*;
use crate::model::UploadRecord;
use async_trait::async_trait;
use mail_types::AccountId;

/// Deletes the rows of those blobs nothing references any more, inside `tx`.
///
/// Each blob row is locked first and the reference check is a statement of its own: under
/// READ COMMITTED that statement's snapshot is taken after the lock, so it sees an upload
/// committed by a `put_upload` that held the row (its upsert locks it). A check folded
/// into the DELETE would run on the snapshot from before the wait and remove a blob just
/// taken again.
pub(super) async fn forget_unreferenced(
    tx: &deadpool_postgres::Transaction<'_>,
    blobs: &[String],
) -> Result<usize> {
    let lock = tx
        .prepare_cached("SELECT 1 FROM blob WHERE id = $1 FOR UPDATE")
        .await?;
    let delete = tx
        .prepare_cached(&format!(
            "DELETE FROM blob WHERE id = $1 AND {BLOB_UNREFERENCED}"
        ))
        .await?;
    let mut gone = 0;
    for b in blobs {
        if tx.query_opt(&lock, &[b]).await?.is_some() {
            gone += tx.execute(&delete, &[b]).await? as usize;
        }
    }
    Ok(gone)
}

#[async_trait]
impl Uploads for PgStore {
    async fn put_upload(
        &self,
        account: AccountId,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Result<UploadRecord> {
        let record = UploadRecord {
            account,
            blob_id: mime::blob_id(&bytes),
            content_type: content_type.to_string(),
            size: bytes.len() as u64,
            created_at: now(),
        };
        let size = to_i64(record.size);
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        // DO UPDATE, not DO NOTHING: the upsert locks an existing row until the commit, so
        // an expiry running beside it waits and then sees this upload.
        let blob = tx
            .prepare_cached(
                "INSERT INTO blob (id, size, data) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET size = excluded.size",
            )
            .await?;
        tx.execute(&blob, &[&record.blob_id, &size, &bytes]).await?;
        let upload = tx
            .prepare_cached(
                "INSERT INTO upload (account_id, blob_id, type, size, created_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (account_id, blob_id) \
                 DO UPDATE SET type = excluded.type, created_at = excluded.created_at",
            )
            .await?;
        tx.execute(
            &upload,
            &[
                &account.0,
                &record.blob_id,
                &record.content_type,
                &size,
                &record.created_at,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn upload(&self, account: AccountId, blob_id: &str) -> Result<Option<UploadRecord>> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "SELECT type, size, created_at FROM upload WHERE account_id = $1 AND blob_id = $2",
            )
            .await?;
        Ok(c.query_opt(&st, &[&account.0, &blob_id])
            .await?
            .map(|r| UploadRecord {
                account,
                blob_id: blob_id.to_string(),
                content_type: r.get(0),
                size: u64::try_from(r.get::<_, i64>(1)).unwrap_or(0),
                created_at: r.get(2),
            }))
    }

    async fn upload_bytes(&self, account: AccountId, blob_id: &str) -> Result<Option<Vec<u8>>> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "SELECT b.data, u.size FROM upload u JOIN blob b ON b.id = u.blob_id \
                 WHERE u.account_id = $1 AND u.blob_id = $2",
            )
            .await?;
        let Some(r) = c.query_opt(&st, &[&account.0, &blob_id]).await? else {
            return Ok(None);
        };
        let data: Vec<u8> = r.get(0);
        let size: i64 = r.get(1);
        if i64::try_from(data.len()).ok() != Some(size) {
            return Err(Error::Corrupt(format!(
                "blob {blob_id} has {} bytes, {size} recorded",
                data.len()
            )));
        }
        Ok(Some(data))
    }

    async fn expire_uploads(&self, before: i64) -> Result<usize> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let expired: Vec<String> = tx
            .query(
                "DELETE FROM upload WHERE created_at < $1 RETURNING blob_id",
                &[&before],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut blobs = expired.clone();
        blobs.sort();
        blobs.dedup();
        forget_unreferenced(&tx, &blobs).await?;
        tx.commit().await?;
        Ok(expired.len())
    }
}

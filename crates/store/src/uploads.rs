//! Uploads (RFC 8620 6.1).

use crate::Result;
use crate::model::*;
use async_trait::async_trait;
use mail_types::AccountId;

/// JMAP blob upload (RFC 8620 6.1): uploaded bytes owned by an account until they
/// expire or an Email takes them over.
#[async_trait]
pub trait Uploads: Send + Sync + 'static {
    /// Stores uploaded bytes for an account: content-addressed like every blob (the same
    /// bytes uploaded twice are one file), owned by `account`, with the client's media
    /// type. Uploading again refreshes its time.
    async fn put_upload(
        &self,
        account: AccountId,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Result<UploadRecord>;

    /// The upload `blob_id` (hex sha256) of `account`, if it has one (not another
    /// account's).
    async fn upload(&self, account: AccountId, blob_id: &str) -> Result<Option<UploadRecord>>;

    /// The bytes of the upload `blob_id` of `account` (None if the account has no such
    /// upload). What Email/import and Email/parse read.
    async fn upload_bytes(&self, account: AccountId, blob_id: &str) -> Result<Option<Vec<u8>>>;

    /// Forgets uploads made before `before` (unix seconds); a blob no Email and no other
    /// upload references is deleted with its file. Returns how many uploads were forgotten.
    async fn expire_uploads(&self, before: i64) -> Result<usize>;
}

//! Blob/copy (RFC 8620 6.3): blobs of one of the caller's accounts made readable in
//! another. Any blob id the source account can download may be copied (an upload, an
//! Email's message, a part of one); the copy is an upload of the target account (RFC 8620
//! 6.1 rules: kept while an Email references it, else for `UPLOAD_TTL`), so it can be
//! downloaded, imported or attached there. Content addressing makes the copy of the same
//! bytes one file.

use super::Ctx;
use jmap_proto::{Id, MethodError, MethodErrorType, SetError, SetErrorType};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CopyArgs {
    from_account_id: Id,
    account_id: Id,
    blob_ids: Vec<Id>,
}

pub(crate) async fn copy(
    ctx: &Ctx<'_>,
    args: Map<String, Value>,
) -> Result<Map<String, Value>, MethodError> {
    let args: CopyArgs = serde_json::from_value(Value::Object(args))
        .map_err(|e| MethodError::invalid_arguments(e.to_string()))?;
    // RFC 8620 6.3: a source account the caller cannot see is `fromAccountNotFound`.
    let from = ctx
        .account(&args.from_account_id)
        .map_err(|_| MethodError::new(MethodErrorType::FromAccountNotFound))?;
    let to = ctx.account(&args.account_id)?;
    if args.blob_ids.len() > ctx.max_objects_in_set {
        return Err(MethodError::new(MethodErrorType::RequestTooLarge));
    }
    let mut copied: BTreeMap<String, String> = BTreeMap::new();
    let mut not_copied: BTreeMap<String, SetError> = BTreeMap::new();
    for blob in args.blob_ids {
        let Some(bytes) = readable(ctx, from, blob.as_str()).await? else {
            not_copied.insert(blob.into_string(), SetError::new(SetErrorType::NotFound));
            continue;
        };
        let id = if from == to {
            // Already readable there under this id.
            blob.as_str().to_owned()
        } else {
            let record = ctx
                .store
                .put_upload(to, "application/octet-stream", bytes)
                .await
                .map_err(|e| MethodError::server_fail(e.to_string()))?;
            tracing::debug!(account = %to, from = %from, "blob copied between accounts");
            format!("b{}", record.blob_id)
        };
        copied.insert(blob.into_string(), id);
    }
    let mut out = Map::new();
    out.insert("fromAccountId".into(), json!(args.from_account_id));
    out.insert("accountId".into(), json!(args.account_id));
    out.insert(
        "copied".into(),
        if copied.is_empty() {
            Value::Null
        } else {
            json!(copied)
        },
    );
    out.insert(
        "notCopied".into(),
        if not_copied.is_empty() {
            Value::Null
        } else {
            json!(not_copied)
        },
    );
    Ok(out)
}

/// The bytes of `blob` as a download from `account` would give them, or None when the
/// account has no such blob.
async fn readable(
    ctx: &Ctx<'_>,
    account: mail_types::AccountId,
    blob: &str,
) -> Result<Option<Vec<u8>>, MethodError> {
    let resolved = match ctx.messages().resolve(account, blob).await {
        Ok(r) => r,
        Err(crate::bodies::BlobError::NotFound) => return Ok(None),
        Err(e) => return Err(e.method_error()),
    };
    match resolved.part {
        None => Ok(Some(resolved.message)),
        Some(part) => {
            let message = resolved.message;
            tokio::task::spawn_blocking(move || super::body::nested_part(&message, &part))
                .await
                .map(|p| p.map(|p| p.bytes))
                .map_err(|e| MethodError::server_fail(e.to_string()))
        }
    }
}

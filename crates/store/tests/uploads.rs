//! JMAP blob uploads (RFC 8620 6.1) on both backends: content-addressed, owned by their
//! account, refreshed by a second upload, forgotten after their time with the bytes no
//! other upload holds, and gone with their account.

mod common;

use common::{new_account, on_both_backends};
use std::time::Duration;
use store::prelude::*;

on_both_backends!(uploads_are_owned_and_expire);

async fn uploads_are_owned_and_expire<S: Directory + Uploads>(s: &S) {
    let a = common::account(s).await;
    let u = s.user_by_name("u").await.expect("user").expect("u");
    let b = s.create_account(&new_account(u.id, "b")).await.expect("b");
    let bytes = b"Subject: hi\r\n\r\nhello\r\n".to_vec();

    let r = s
        .put_upload(a, "message/rfc822", bytes.clone())
        .await
        .expect("upload");
    assert_eq!(r.blob_id, mime::blob_id(&bytes));
    assert_eq!((r.account, r.size), (a, bytes.len() as u64));
    assert_eq!(r.content_type, "message/rfc822");
    let found = s.upload(a, &r.blob_id).await.expect("read").expect("there");
    assert_eq!(found, r);
    assert_eq!(
        s.upload_bytes(a, &r.blob_id).await.expect("bytes"),
        Some(bytes.clone())
    );
    // Another account sees nothing of it.
    assert!(s.upload(b, &r.blob_id).await.expect("read").is_none());
    assert!(
        s.upload_bytes(b, &r.blob_id)
            .await
            .expect("bytes")
            .is_none()
    );

    // Uploads are counted in whole seconds: the second one is a second later.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r2 = s
        .put_upload(b, "text/plain", bytes.clone())
        .await
        .expect("the same bytes to b");
    assert_eq!(r2.blob_id, r.blob_id, "one content address");
    assert!(r2.created_at > r.created_at);

    // Nothing is older than long ago.
    assert_eq!(s.expire_uploads(r.created_at - 100).await.expect("none"), 0);
    // a's upload expires; the bytes stay for b's.
    assert_eq!(s.expire_uploads(r2.created_at).await.expect("expire"), 1);
    assert!(s.upload(a, &r.blob_id).await.expect("read").is_none());
    assert_eq!(
        s.upload_bytes(b, &r.blob_id).await.expect("bytes"),
        Some(bytes.clone())
    );
    // Uploading again refreshes the time: a's upload is back and younger than b's.
    let again = s
        .put_upload(a, "message/rfc822", bytes.clone())
        .await
        .expect("again");
    assert!(again.created_at >= r2.created_at);

    // b goes, its upload with it; a's still reads.
    assert!(s.delete_account(b).await.expect("delete"));
    assert_eq!(
        s.upload_bytes(a, &r.blob_id).await.expect("bytes"),
        Some(bytes.clone())
    );
    assert_eq!(
        s.expire_uploads(again.created_at + 1).await.expect("all"),
        1
    );
    assert!(
        s.upload_bytes(a, &r.blob_id)
            .await
            .expect("bytes")
            .is_none()
    );
}

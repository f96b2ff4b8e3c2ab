//! The directory on both backends: users and passwords, API tokens, web sessions with
//! their expiry sweep, accounts (settings, encrypted secret bytes, sync status, provider),
//! and ids that are never handed out twice.

mod common;

use common::{new_account, on_both_backends, settings};
use mail_types::{AccountAuth, AccountId, AccountKind, Security, SyncStatus};
use store::prelude::*;
use store::*;

on_both_backends!(
    users_and_passwords,
    tokens_name_their_user,
    web_sessions_expire_and_are_swept,
    accounts_round_trip_every_setting,
    account_ids_are_never_reused,
    oauth2_accounts_keep_their_provider_and_secret,
);

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

async fn users_and_passwords<S: Directory>(s: &S) {
    let bob = s.create_user("bob", "h1").await.expect("bob");
    let alice = s.create_user("alice", "h2").await.expect("alice");
    assert_ne!(alice, bob);
    assert!(matches!(
        s.create_user("bob", "other").await,
        Err(Error::Exists(_))
    ));
    let names: Vec<String> = s
        .list_users()
        .await
        .expect("list")
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, ["alice", "bob"], "ordered by name");
    let found = s.user_by_name("bob").await.expect("find").expect("bob");
    assert_eq!((found.id, found.password_hash.as_str()), (bob, "h1"));
    assert!(s.user_by_name("carol").await.expect("find").is_none());

    s.set_user_password("bob", "h3").await.expect("password");
    let found = s.user_by_name("bob").await.expect("find").expect("bob");
    assert_eq!(found.password_hash, "h3");
    assert!(matches!(
        s.set_user_password("carol", "x").await,
        Err(Error::NotFound(_))
    ));

    assert!(s.delete_user("bob").await.expect("delete"));
    assert!(!s.delete_user("bob").await.expect("delete again"));
    assert!(s.user_by_name("bob").await.expect("find").is_none());
}

async fn tokens_name_their_user<S: Directory>(s: &S) {
    let alice = s.create_user("alice", "h").await.expect("alice");
    let bob = s.create_user("bob", "h").await.expect("bob");
    s.create_token(alice, "laptop", "hash-a")
        .await
        .expect("token");
    s.create_token(bob, "phone", "hash-b").await.expect("token");
    let u = s
        .user_by_token_hash("hash-a")
        .await
        .expect("find")
        .expect("alice's token");
    assert_eq!((u.id, u.name.as_str()), (alice, "alice"));
    assert!(
        s.user_by_token_hash("hash-c")
            .await
            .expect("find")
            .is_none()
    );
    // A user's tokens go with the user.
    assert!(s.delete_user("alice").await.expect("delete"));
    assert!(
        s.user_by_token_hash("hash-a")
            .await
            .expect("find")
            .is_none()
    );
    assert!(
        s.user_by_token_hash("hash-b")
            .await
            .expect("find")
            .is_some()
    );
}

async fn web_sessions_expire_and_are_swept<S: Directory>(s: &S) {
    let alice = s.create_user("alice", "h").await.expect("alice");
    let t = now();
    s.create_web_session(alice, "live", t + 3600)
        .await
        .expect("session");
    // Stored already expired (the sweep runs before the insert of its own call).
    s.create_web_session(alice, "stale", t - 10)
        .await
        .expect("session");
    let u = s
        .user_by_web_session("live")
        .await
        .expect("find")
        .expect("live session");
    assert_eq!(u.id, alice);
    assert!(
        s.user_by_web_session("stale")
            .await
            .expect("find")
            .is_none(),
        "an expired session is not accepted"
    );
    // The next sign-in sweeps every user's expired sessions: the row is gone.
    let bob = s.create_user("bob", "h").await.expect("bob");
    s.create_web_session(bob, "bob's", t + 3600)
        .await
        .expect("session");
    assert!(!s.delete_web_session("stale").await.expect("delete"));
    assert!(s.delete_web_session("live").await.expect("delete"));
    assert!(!s.delete_web_session("live").await.expect("delete again"));
    assert!(s.user_by_web_session("live").await.expect("find").is_none());
    // A user's sessions go with the user.
    assert!(s.delete_user("bob").await.expect("delete"));
    assert!(
        s.user_by_web_session("bob's")
            .await
            .expect("find")
            .is_none()
    );
}

async fn accounts_round_trip_every_setting<S: Directory>(s: &S) {
    let alice = s.create_user("alice", "h").await.expect("alice");
    let bob = s.create_user("bob", "h").await.expect("bob");
    // Encrypted secrets are bytes, not text: every byte value survives.
    let secret: Vec<u8> = (0..=255u8).collect();
    let full = NewAccount {
        user: alice,
        name: "work".into(),
        kind: AccountKind::Pop3,
        server: ServerSettings {
            host: "pop.example.org".into(),
            port: 995,
            security: Security::Tls,
            username: "alice@example.org".into(),
            password_enc: secret.clone(),
            ca_file: Some("/etc/ca.pem".into()),
        },
        smtp: Some(ServerSettings {
            host: "smtp.example.org".into(),
            port: 587,
            security: Security::Starttls,
            username: "alice".into(),
            password_enc: vec![0, 1, 0xff],
            ca_file: None,
        }),
        pop3_delete_after_days: Some(7),
        auth: AccountAuth::Password,
    };
    let work = s.create_account(&full).await.expect("create");
    let home = s
        .create_account(&new_account(alice, "home"))
        .await
        .expect("home");
    let bobs = s
        .create_account(&new_account(bob, "work"))
        .await
        .expect("the same name for another user");
    assert!(matches!(
        s.create_account(&new_account(alice, "work")).await,
        Err(Error::Exists(_))
    ));

    let a = s.account(work).await.expect("read").expect("there");
    assert_eq!((a.user, a.user_name.as_str()), (alice, "alice"));
    assert_eq!((a.name.as_str(), a.kind), ("work", AccountKind::Pop3));
    assert_eq!(a.server, full.server);
    assert_eq!(a.smtp, full.smtp);
    assert_eq!(a.pop3_delete_after_days, Some(7));
    assert_eq!(a.status, SyncStatus::New);
    assert_eq!(a.provider, "auto");
    assert!(
        s.account(AccountId(work.0 + 1000))
            .await
            .expect("read")
            .is_none()
    );

    let ids = |v: Vec<AccountRecord>| v.into_iter().map(|a| a.id).collect::<Vec<_>>();
    // Ordered by user name, then account name.
    assert_eq!(
        ids(s.list_accounts().await.expect("list")),
        [home, work, bobs]
    );
    assert_eq!(
        ids(s.user_accounts(alice).await.expect("alice's")),
        [home, work]
    );
    assert_eq!(ids(s.user_accounts(bob).await.expect("bob's")), [bobs]);

    let mut changed = new_account(alice, "office");
    changed.server = settings("imap.example.org");
    s.update_account(work, &changed).await.expect("update");
    let a = s.account(work).await.expect("read").expect("there");
    assert_eq!((a.name.as_str(), a.kind), ("office", AccountKind::Imap));
    assert_eq!(a.server, changed.server);
    assert_eq!(a.smtp, None);
    assert_eq!(a.pop3_delete_after_days, None);

    s.set_account_secret(work, &[9, 0, 9])
        .await
        .expect("secret");
    s.set_sync_status(work, &SyncStatus::AuthFailed("no".into()))
        .await
        .expect("status");
    s.set_account_provider(work, "gmail")
        .await
        .expect("provider");
    let a = s.account(work).await.expect("read").expect("there");
    assert_eq!(a.server.password_enc, [9, 0, 9]);
    assert_eq!(a.status, SyncStatus::AuthFailed("no".into()));
    assert!(a.status_at >= now() - 60, "status time set");
    assert_eq!(a.provider, "gmail");
    assert!(matches!(
        s.set_account_secret(AccountId(work.0 + 1000), b"x").await,
        Err(Error::NotFound(_))
    ));

    assert!(s.delete_account(work).await.expect("delete"));
    assert!(!s.delete_account(work).await.expect("delete again"));
    assert!(s.account(work).await.expect("read").is_none());
    // A user's accounts go with the user.
    assert!(s.delete_user("bob").await.expect("delete"));
    assert_eq!(ids(s.list_accounts().await.expect("list")), [home]);
}

/// RFC 8620 1.2 (DESIGN.md invariant 8): a removed account's id never names another
/// account, even when it was the newest.
async fn account_ids_are_never_reused<S: Directory>(s: &S) {
    let u = s.create_user("u", "h").await.expect("user");
    let first = s.create_account(&new_account(u, "a")).await.expect("a");
    let second = s.create_account(&new_account(u, "b")).await.expect("b");
    assert!(s.delete_account(second).await.expect("delete"));
    let third = s
        .create_account(&new_account(u, "b"))
        .await
        .expect("b again");
    assert!(
        third.0 > second.0 && second.0 > first.0,
        "{first} {second} {third}"
    );
}

/// An account's auth kind and OAuth2 provider round-trip through create, update and read;
/// a rotated refresh token replaces the stored secret.
async fn oauth2_accounts_keep_their_provider_and_secret<S: Directory>(s: &S) {
    let password_account = common::account(s).await;
    let all = s.list_accounts().await.expect("list");
    assert_eq!(all[0].auth, mail_types::AccountAuth::Password);
    let mut new = NewAccount {
        user: all[0].user,
        name: "g".into(),
        kind: AccountKind::Imap,
        server: ServerSettings {
            host: "imap.gmail.com".into(),
            port: 993,
            security: Security::Tls,
            username: "u@gmail.com".into(),
            password_enc: b"rt1".to_vec(),
            ca_file: None,
        },
        smtp: None,
        pop3_delete_after_days: None,
        auth: mail_types::AccountAuth::OAuth2 {
            provider: "google".into(),
        },
    };
    let id = s.create_account(&new).await.expect("create");
    let a = s.account(id).await.expect("read").expect("there");
    assert_eq!(a.auth, new.auth);
    s.set_account_secret(id, b"rt2").await.expect("rotate");
    let a = s.account(id).await.expect("read").expect("there");
    assert_eq!(a.server.password_enc, b"rt2");
    new.auth = mail_types::AccountAuth::OAuth2 {
        provider: "microsoft".into(),
    };
    s.update_account(id, &new).await.expect("update");
    let a = s.account(id).await.expect("read").expect("there");
    assert_eq!(a.auth.provider(), "microsoft");
    // The other account is untouched.
    let p = s
        .account(password_account)
        .await
        .expect("read")
        .expect("there");
    assert_eq!(p.auth, mail_types::AccountAuth::Password);
    assert!(s.set_account_secret(AccountId(999), b"x").await.is_err());
}

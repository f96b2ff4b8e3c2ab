//! `Push` on both backends: the types changed since a client's last state, read from the
//! change log (EmailDelivery only for mail delivered from the server), and push
//! subscriptions kept per user.

mod common;

use common::{copy, mailbox, msg, on_both_backends, remote};
use mail_types::{AccountId, MailboxId, ModSeq, State, Uid, UidValidity};
use store::events::{PushType, TypeSet};
use store::prelude::*;
use store::subscriptions::{NewPushSubscription, PushKeys, PushSubscriptionUpdate};
use store::{FlagUpdate, MailboxChanges, NewCopy};

async fn add<S: MailSync>(s: &S, a: AccountId, mb: MailboxId, copies: Vec<NewCopy>) -> State {
    s.apply_mailbox_changes(
        a,
        mb,
        MailboxChanges {
            new: copies,
            ..MailboxChanges::new(UidValidity(7))
        },
    )
    .await
    .expect("apply")
}

/// A client coming back with an older state learns exactly the types changed since, and
/// of a delivery only when mail came from the server after its state.
async fn changed_types_come_from_the_change_log<S: Directory + MailSync + Push>(s: &S) {
    let a = common::account(s).await;
    s.apply_mailbox_list(a, &[remote("INBOX", 7)])
        .await
        .expect("list");
    let inbox = mailbox(s, a, "INBOX").await;
    // Nothing new: the state the list left.
    let s0 = add(s, a, inbox, vec![]).await;
    assert_eq!(
        s.changed_types_since(a, s0).await.expect("types"),
        TypeSet::EMPTY
    );

    let s1 = add(s, a, inbox, vec![copy(1, &msg("m1", &[], "hi"), &[])]).await;
    let delivery: TypeSet = [
        PushType::Email,
        PushType::Mailbox,
        PushType::Thread,
        PushType::EmailDelivery,
    ]
    .into_iter()
    .collect();
    assert_eq!(s.changed_types_since(a, s0).await.expect("types"), delivery);

    // A flag change is Email and Mailbox, not a delivery.
    let s2 = s
        .apply_mailbox_changes(
            a,
            inbox,
            MailboxChanges {
                flags: vec![FlagUpdate {
                    uid: Uid(1),
                    flags: vec!["\\Seen".into()],
                    modseq: ModSeq(2),
                }],
                ..MailboxChanges::new(UidValidity(7))
            },
        )
        .await
        .expect("flags");
    assert!(s2.0 > s1.0);
    let flags: TypeSet = [PushType::Email, PushType::Mailbox].into_iter().collect();
    assert_eq!(s.changed_types_since(a, s1).await.expect("types"), flags);
    assert_eq!(
        s.changed_types_since(a, s2).await.expect("types"),
        TypeSet::EMPTY
    );

    // A draft that shows up from the server is new Email, not a delivery (RFC 8621 1.5)...
    add(
        s,
        a,
        inbox,
        vec![copy(2, &msg("d1", &[], "draft"), &["\\Draft"])],
    )
    .await;
    let since = s.changed_types_since(a, s2).await.expect("types");
    assert!(since.contains(PushType::Email), "{since:?}");
    assert!(!since.contains(PushType::EmailDelivery), "{since:?}");
    // ... while a client from before the first message still hears of that delivery.
    assert!(
        s.changed_types_since(a, s0)
            .await
            .expect("types")
            .contains(PushType::EmailDelivery)
    );
    // Another account's changes are not this one's.
    let u = s.create_user("v", "h").await.expect("user");
    let b = s
        .create_account(&common::new_account(u, "b"))
        .await
        .expect("account");
    assert_eq!(
        s.changed_types_since(b, State(0)).await.expect("types"),
        TypeSet::EMPTY
    );
}

fn subscription(user: mail_types::UserId, n: u32, keys: bool) -> NewPushSubscription {
    NewPushSubscription {
        user,
        device_client_id: format!("device {n}"),
        url: format!("https://127.0.0.1/push/{n}"),
        keys: keys.then(|| PushKeys {
            p256dh: format!("p256dh {n}"),
            auth: format!("auth {n}"),
        }),
        verification_code: format!("code {n}"),
        expires: keys.then_some(1_900_000_000),
        types: keys.then(|| vec!["Email".to_owned(), "Mailbox".to_owned()]),
    }
}

/// Subscriptions are stored as given, listed per user or all, updated property by
/// property (a property set to null is null, one left out keeps its value) and deleted
/// only by their user.
async fn push_subscriptions_are_kept_per_user<S: Directory + Push>(s: &S) {
    let u = s.create_user("u", "h").await.expect("user");
    let v = s.create_user("v", "h").await.expect("user");
    let new_u = subscription(u, 1, true);
    let id_u = s.create_push_subscription(&new_u).await.expect("create");
    let id_v = s
        .create_push_subscription(&subscription(v, 2, false))
        .await
        .expect("create");
    assert!(id_v > id_u);

    let of_u = s.push_subscriptions(Some(u)).await.expect("list");
    assert_eq!(of_u.len(), 1);
    let stored = &of_u[0];
    assert_eq!(stored.id, id_u);
    assert_eq!(stored.user, u);
    assert_eq!(stored.device_client_id, new_u.device_client_id);
    assert_eq!(stored.url, new_u.url);
    assert_eq!(stored.keys, new_u.keys);
    assert_eq!(stored.verification_code, new_u.verification_code);
    assert!(!stored.verified);
    assert_eq!(stored.expires, new_u.expires);
    assert_eq!(stored.types, new_u.types);
    let all = s.push_subscriptions(None).await.expect("all");
    assert_eq!(all.iter().map(|p| p.id).collect::<Vec<_>>(), [id_u, id_v]);
    let of_v = &all[1];
    assert_eq!((of_v.keys.clone(), of_v.expires), (None, None));
    assert_eq!(of_v.types, None);

    // Not v's to change.
    let verify = PushSubscriptionUpdate {
        verified: Some(true),
        ..Default::default()
    };
    assert!(
        !s.update_push_subscription(id_u, v, &verify)
            .await
            .expect("update")
    );
    assert!(!s.push_subscriptions(Some(u)).await.expect("list")[0].verified);
    assert!(
        s.update_push_subscription(id_u, u, &verify)
            .await
            .expect("update")
    );
    let after = &s.push_subscriptions(Some(u)).await.expect("list")[0];
    assert!(after.verified);
    assert_eq!(
        (after.expires, after.types.clone()),
        (new_u.expires, new_u.types.clone()),
        "left out: kept"
    );
    let cleared = PushSubscriptionUpdate {
        expires: Some(None),
        types: Some(None),
        ..Default::default()
    };
    assert!(
        s.update_push_subscription(id_u, u, &cleared)
            .await
            .expect("update")
    );
    let after = &s.push_subscriptions(Some(u)).await.expect("list")[0];
    assert_eq!((after.expires, after.types.clone()), (None, None));
    assert!(after.verified, "left out: kept");
    let set = PushSubscriptionUpdate {
        expires: Some(Some(1_950_000_000)),
        types: Some(Some(vec!["EmailDelivery".to_owned()])),
        ..Default::default()
    };
    assert!(
        s.update_push_subscription(id_u, u, &set)
            .await
            .expect("update")
    );
    let after = &s.push_subscriptions(Some(u)).await.expect("list")[0];
    assert_eq!(after.expires, Some(1_950_000_000));
    assert_eq!(after.types, Some(vec!["EmailDelivery".to_owned()]));
    assert!(
        !s.update_push_subscription(id_v + 100, u, &verify)
            .await
            .expect("update")
    );

    assert!(
        !s.delete_push_subscription(id_u, Some(v))
            .await
            .expect("delete")
    );
    assert!(
        s.delete_push_subscription(id_u, Some(u))
            .await
            .expect("delete")
    );
    assert!(
        !s.delete_push_subscription(id_u, None)
            .await
            .expect("delete")
    );
    assert!(
        s.delete_push_subscription(id_v, None)
            .await
            .expect("delete")
    );
    assert!(s.push_subscriptions(None).await.expect("all").is_empty());
}

on_both_backends!(
    changed_types_come_from_the_change_log,
    push_subscriptions_are_kept_per_user
);

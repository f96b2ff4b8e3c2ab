//! [`Push`] for PostgreSQL, with the SQLite backend's meaning (sqlite/push.rs): the bus is
//! the node's LISTEN connection (bus.rs), the changed types come from the change log,
//! and push subscriptions are rows every node reads, so a subscription made through one
//! node is pushed to by whichever node sees the change.

use super::*;
use crate::events::{EventBus, PushType, TypeSet};
use crate::subscriptions::{
    NewPushSubscription, PushKeys, PushSubscriptionRecord, PushSubscriptionUpdate, types_from_json,
    types_to_json,
};
use async_trait::async_trait;
use mail_types::{AccountId, State, UserId};

fn subscription_from_row(r: &tokio_postgres::Row) -> Result<PushSubscriptionRecord> {
    let id: i64 = r.get(0);
    let types: Option<String> = r.get(9);
    Ok(PushSubscriptionRecord {
        id,
        user: UserId(r.get(1)),
        device_client_id: r.get(2),
        url: r.get(3),
        keys: match (r.get(4), r.get(5)) {
            (Some(p256dh), Some(auth)) => Some(PushKeys { p256dh, auth }),
            _ => None,
        },
        verification_code: r.get(6),
        verified: r.get(7),
        expires: r.get(8),
        types: types_from_json(id, types)?,
    })
}

#[async_trait]
impl Push for PgStore {
    fn events(&self) -> Arc<dyn EventBus> {
        PgStore::events(self)
    }

    async fn changed_types_since(&self, account: AccountId, since: State) -> Result<TypeSet> {
        let c = self.client().await?;
        let mut types = super::bus::changed_types(&c, account.0, since.0).await?;
        // Only mail delivered from the server counts, not drafts, imports or sent copies
        // created since (those are Email changes alone; RFC 8621 1.5).
        let st = c
            .prepare_cached("SELECT delivery_state FROM account WHERE id = $1")
            .await?;
        let delivered: i64 = c
            .query_opt(&st, &[&account.0])
            .await?
            .map(|r| r.get(0))
            .unwrap_or(0);
        if delivered > since.0 {
            types.insert(PushType::EmailDelivery);
        }
        Ok(types)
    }

    async fn push_subscriptions(
        &self,
        user: Option<UserId>,
    ) -> Result<Vec<PushSubscriptionRecord>> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "SELECT id, user_id, device_client_id, url, keys_p256dh, keys_auth, \
                 verification_code, verified, expires, types FROM push_subscription \
                 WHERE $1::bigint IS NULL OR user_id = $1 ORDER BY id",
            )
            .await?;
        c.query(&st, &[&user.map(|u| u.0)])
            .await?
            .iter()
            .map(subscription_from_row)
            .collect()
    }

    async fn create_push_subscription(&self, s: &NewPushSubscription) -> Result<i64> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "INSERT INTO push_subscription (user_id, device_client_id, url, keys_p256dh, \
                 keys_auth, verification_code, expires, types) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            )
            .await?;
        let row = c
            .query_one(
                &st,
                &[
                    &s.user.0,
                    &s.device_client_id,
                    &s.url,
                    &s.keys.as_ref().map(|k| k.p256dh.as_str()),
                    &s.keys.as_ref().map(|k| k.auth.as_str()),
                    &s.verification_code,
                    &s.expires,
                    &types_to_json(&s.types)?,
                ],
            )
            .await?;
        Ok(row.get(0))
    }

    /// One UPDATE: a property left `None` keeps its value (the `$n` flags say which are
    /// set, since a set `expires` or `types` may itself be NULL).
    async fn update_push_subscription(
        &self,
        id: i64,
        user: UserId,
        u: &PushSubscriptionUpdate,
    ) -> Result<bool> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "UPDATE push_subscription SET \
                 verified = coalesce($3, verified), \
                 expires = CASE WHEN $4 THEN $5 ELSE expires END, \
                 types = CASE WHEN $6 THEN $7 ELSE types END \
                 WHERE id = $1 AND user_id = $2",
            )
            .await?;
        let types = match &u.types {
            Some(t) => types_to_json(t)?,
            None => None,
        };
        let n = c
            .execute(
                &st,
                &[
                    &id,
                    &user.0,
                    &u.verified,
                    &u.expires.is_some(),
                    &u.expires.flatten(),
                    &u.types.is_some(),
                    &types,
                ],
            )
            .await?;
        Ok(n > 0)
    }

    async fn delete_push_subscription(&self, id: i64, user: Option<UserId>) -> Result<bool> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "DELETE FROM push_subscription WHERE id = $1 \
                 AND ($2::bigint IS NULL OR user_id = $2)",
            )
            .await?;
        Ok(c.execute(&st, &[&id, &user.map(|u| u.0)]).await? > 0)
    }
}

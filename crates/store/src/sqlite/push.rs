//! [`Push`] for SQLite.

use super::*;
use crate::events::TypeSet;
use crate::subscriptions::{
    NewPushSubscription, PushKeys, PushSubscriptionRecord, PushSubscriptionUpdate, types_from_json,
    types_to_json,
};

#[async_trait]
impl Push for SqliteStore {
    fn events(&self) -> Arc<dyn EventBus> {
        self.announce.events.clone()
    }

    async fn changed_types_since(&self, account: AccountId, since: State) -> Result<TypeSet> {
        self.call(move |c| {
            let mut types = TypeSet::EMPTY;
            let mut st = c.prepare_cached(
                "SELECT DISTINCT type FROM change WHERE account_id = ?1 AND state > ?2",
            )?;
            let rows = st.query_map(params![account.0, since.0], |r| r.get::<_, String>(0))?;
            for row in rows {
                let t = row?;
                let object = ObjectType::from_name(&t)
                    .ok_or_else(|| Error::Corrupt(format!("change type {t}")))?;
                types.insert(object.into());
            }
            // Only mail delivered from the server counts, not drafts, imports or sent
            // copies created since (those are Email changes alone).
            let delivered: i64 = c
                .prepare_cached("SELECT delivery_state FROM account WHERE id = ?1")?
                .query_row([account.0], |r| r.get(0))
                .optional()?
                .unwrap_or(0);
            if delivered > since.0 {
                types.insert(crate::events::PushType::EmailDelivery);
            }
            Ok(types)
        })
        .await
    }

    async fn push_subscriptions(
        &self,
        user: Option<UserId>,
    ) -> Result<Vec<PushSubscriptionRecord>> {
        self.call(move |c| {
            let mut st = c.prepare_cached(
                "SELECT id, user_id, device_client_id, url, keys_p256dh, keys_auth, \
                 verification_code, verified, expires, types FROM push_subscription \
                 WHERE ?1 IS NULL OR user_id = ?1 ORDER BY id",
            )?;
            let rows = st.query_map([user.map(|u| u.0)], |r| {
                let p256dh: Option<String> = r.get(4)?;
                let auth: Option<String> = r.get(5)?;
                let types: Option<String> = r.get(9)?;
                Ok((
                    PushSubscriptionRecord {
                        id: r.get(0)?,
                        user: UserId(r.get(1)?),
                        device_client_id: r.get(2)?,
                        url: r.get(3)?,
                        keys: match (p256dh, auth) {
                            (Some(p256dh), Some(auth)) => Some(PushKeys { p256dh, auth }),
                            _ => None,
                        },
                        verification_code: r.get(6)?,
                        verified: r.get(7)?,
                        expires: r.get(8)?,
                        types: None,
                    },
                    types,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (mut rec, types) = row?;
                rec.types = types_from_json(rec.id, types)?;
                out.push(rec);
            }
            Ok(out)
        })
        .await
    }

    async fn create_push_subscription(&self, s: &NewPushSubscription) -> Result<i64> {
        let s = s.clone();
        self.call(move |c| {
            let types = types_to_json(&s.types)?;
            c.execute(
                "INSERT INTO push_subscription (user_id, device_client_id, url, keys_p256dh, \
                 keys_auth, verification_code, expires, types) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    s.user.0,
                    s.device_client_id,
                    s.url,
                    s.keys.as_ref().map(|k| k.p256dh.clone()),
                    s.keys.as_ref().map(|k| k.auth.clone()),
                    s.verification_code,
                    s.expires,
                    types
                ],
            )?;
            Ok(c.last_insert_rowid())
        })
        .await
    }

    async fn update_push_subscription(
        &self,
        id: i64,
        user: UserId,
        u: &PushSubscriptionUpdate,
    ) -> Result<bool> {
        let u = u.clone();
        self.call(move |c| {
            let tx = c.transaction()?;
            let exists = tx
                .prepare_cached("SELECT 1 FROM push_subscription WHERE id = ?1 AND user_id = ?2")?
                .exists(params![id, user.0])?;
            if !exists {
                return Ok(false);
            }
            if let Some(v) = u.verified {
                tx.execute(
                    "UPDATE push_subscription SET verified = ?2 WHERE id = ?1",
                    params![id, v],
                )?;
            }
            if let Some(e) = u.expires {
                tx.execute(
                    "UPDATE push_subscription SET expires = ?2 WHERE id = ?1",
                    params![id, e],
                )?;
            }
            if let Some(t) = &u.types {
                let t = types_to_json(t)?;
                tx.execute(
                    "UPDATE push_subscription SET types = ?2 WHERE id = ?1",
                    params![id, t],
                )?;
            }
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn delete_push_subscription(&self, id: i64, user: Option<UserId>) -> Result<bool> {
        self.call(move |c| {
            Ok(c.execute(
                "DELETE FROM push_subscription WHERE id = ?1 AND (?2 IS NULL OR user_id = ?2)",
                params![id, user.map(|u| u.0)],
            )? > 0)
        })
        .await
    }
}

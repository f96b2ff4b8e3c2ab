//! Push: the event bus and push subscriptions, as the JMAP server sees them.

use crate::Result;
use crate::{events, subscriptions};
use async_trait::async_trait;
use mail_types::{AccountId, State, UserId};

/// Push: the bus every committed change is announced on, the types changed since a
/// state (a reconnecting client), and push subscriptions (RFC 8620 7.2).
#[async_trait]
pub trait Push: Send + Sync + 'static {
    /// The bus on which every committed change is announced (see [`events`]).
    fn events(&self) -> std::sync::Arc<dyn events::EventBus>;

    /// The types changed after `since` (a reconnecting push client's last state), from the
    /// change log: EmailDelivery when an Email was created.
    async fn changed_types_since(
        &self,
        account: AccountId,
        since: State,
    ) -> Result<events::TypeSet>;

    /// Push subscriptions of one user, or of everyone (`None`, at server start).
    async fn push_subscriptions(
        &self,
        user: Option<UserId>,
    ) -> Result<Vec<subscriptions::PushSubscriptionRecord>>;

    async fn create_push_subscription(&self, s: &subscriptions::NewPushSubscription)
    -> Result<i64>;

    /// Updates a subscription of `user`; false if there is none with that id.
    async fn update_push_subscription(
        &self,
        id: i64,
        user: UserId,
        u: &subscriptions::PushSubscriptionUpdate,
    ) -> Result<bool>;

    /// Deletes a subscription (of `user`, when given); false if there was none.
    async fn delete_push_subscription(&self, id: i64, user: Option<UserId>) -> Result<bool>;
}

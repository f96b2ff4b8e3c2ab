//! [`Leases`] for SQLite: one process owns the database file, so there is one node and
//! it holds every account. Granting always lets the engine use one interface for both
//! backends.

use super::SqliteStore;
use crate::Result;
use crate::leases::{Fencing, Lease, Leases};
use crate::prelude::Directory;
use async_trait::async_trait;
use mail_types::AccountId;
use std::time::Duration;

#[async_trait]
impl Leases for SqliteStore {
    async fn heartbeat(&self, _node: &str, _ttl: Duration) -> Result<usize> {
        Ok(1)
    }

    async fn acquire(
        &self,
        _node: &str,
        account: AccountId,
        _ttl: Duration,
    ) -> Result<Option<Lease>> {
        Ok(Some(Lease { account, epoch: 1 }))
    }

    async fn renew(&self, _node: &str, _lease: Lease, _ttl: Duration) -> Result<bool> {
        Ok(true)
    }

    async fn release(&self, _node: &str, _lease: Lease) -> Result<()> {
        Ok(())
    }

    async fn free_accounts(&self) -> Result<Vec<AccountId>> {
        // One node: an account is never held by another.
        Ok(self
            .list_accounts()
            .await?
            .into_iter()
            .map(|a| a.id)
            .collect())
    }

    fn shared(&self) -> bool {
        false
    }
}

impl Fencing for SqliteStore {
    fn fenced(&self, _node: &str, _lease: Lease) -> std::sync::Arc<dyn crate::Store> {
        std::sync::Arc::new(self.clone())
    }
}

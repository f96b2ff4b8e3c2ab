//! [`Leases`] for SQLite: one process owns the database file, so there is one node and
//! it holds every account. Granting always lets the engine use one interface for both
//! backends.

use super::SqliteStore;
use crate::Result;
use crate::leases::{Lease, Leases};
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
}

//! The change log of one transaction (sqlite/write.rs's `ChangeLog`): the account's state
//! is bumped once, on the first change recorded, and each changed object gets a `change`
//! row under that state, in the same transaction as the data (DESIGN.md invariant 3).

use super::*;
use crate::events::TypeSet;
use crate::wake::{Queue, WorkSignals};
use crate::{ChangeOp, ObjectType};
use mail_types::{AccountId, State};
use std::collections::HashSet;

pub(super) struct ChangeLog {
    account: AccountId,
    state: Option<i64>,
    seen: HashSet<(ObjectType, i64)>,
    /// The types changed, for the bus's notification.
    types: TypeSet,
    /// The lease the transaction writes under, checked before its first change.
    fence: Option<Arc<super::leases::Fence>>,
    /// The queues this transaction gave work to: every node's workers are woken for them
    /// through the bus, this node's also right after the commit.
    queued: super::bus::Queued,
    /// This node's workers (none for a log opened without its store).
    work: Option<Arc<WorkSignals>>,
}

impl ChangeLog {
    pub(super) fn new(account: AccountId) -> Self {
        ChangeLog {
            account,
            state: None,
            seen: HashSet::new(),
            types: TypeSet::EMPTY,
            fence: None,
            queued: super::bus::Queued::NONE,
            work: None,
        }
    }

    /// The change log of a user's write through `store` (JMAP, on any node): it wakes the
    /// workers of the queues it fills, and is never fenced, since a user's change is not the
    /// lease holder's work (the lease holder replays it).
    pub(super) fn user(store: &PgStore, account: AccountId) -> Self {
        ChangeLog {
            work: Some(store.work.clone()),
            ..ChangeLog::new(account)
        }
    }

    /// For a write that records no change (an outbox entry's attempt or error): refused
    /// with [`Error::Fenced`] unless the lease is held, as the first change would be.
    pub(super) async fn check_fence(
        &mut self,
        tx: &deadpool_postgres::Transaction<'_>,
    ) -> Result<()> {
        if let Some(fence) = self.fence.take() {
            fence.check(tx, self.account).await?;
        }
        Ok(())
    }

    /// The change log of a transaction of `store`: a fenced store's writes are refused
    /// once its lease is no longer held (leases.rs).
    pub(super) fn of(store: &PgStore, account: AccountId) -> Self {
        ChangeLog {
            fence: store.fence.clone(),
            work: Some(store.work.clone()),
            ..ChangeLog::new(account)
        }
    }

    pub(super) async fn record(
        &mut self,
        tx: &deadpool_postgres::Transaction<'_>,
        object: ObjectType,
        id: i64,
        op: ChangeOp,
    ) -> Result<()> {
        let state = self.bump(tx).await?;
        self.types.insert(object.into());
        // One row per object per transaction; a later "destroyed" still wins because it is
        // written as its own row after the earlier one.
        if op != ChangeOp::Destroyed && !self.seen.insert((object, id)) {
            return Ok(());
        }
        let op = op_code(op);
        let st = tx
            .prepare_cached(
                "INSERT INTO change (account_id, state, type, object_id, op) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .await?;
        tx.execute(&st, &[&self.account.0, &state, &object.as_str(), &id, &op])
            .await?;
        Ok(())
    }

    /// [`ChangeLog::record`] of many objects of one type with one INSERT for all their
    /// rows (a sync batch changes thousands).
    pub(super) async fn record_many(
        &mut self,
        tx: &deadpool_postgres::Transaction<'_>,
        object: ObjectType,
        ids: &[i64],
        op: ChangeOp,
    ) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let state = self.bump(tx).await?;
        self.types.insert(object.into());
        // Destroyed rows are always written (see `record`); others once per object.
        let fresh: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|id| op == ChangeOp::Destroyed || self.seen.insert((object, *id)))
            .collect();
        if fresh.is_empty() {
            return Ok(());
        }
        let st = tx
            .prepare_cached(
                "INSERT INTO change (account_id, state, type, object_id, op) \
                 SELECT $1, $2, $3, id, $4 FROM unnest($5::bigint[]) WITH ORDINALITY AS u(id, n) \
                 ORDER BY n",
            )
            .await?;
        tx.execute(
            &st,
            &[
                &self.account.0,
                &state,
                &object.as_str(),
                &op_code(op),
                &fresh,
            ],
        )
        .await?;
        Ok(())
    }

    /// [`ChangeLog::record_many`] of several sets of objects, each of one type, with one
    /// INSERT for all their rows, in the order given (a round trip less per set).
    pub(super) async fn record_sets(
        &mut self,
        tx: &deadpool_postgres::Transaction<'_>,
        sets: &[(ObjectType, &[i64])],
        op: ChangeOp,
    ) -> Result<()> {
        if sets.iter().all(|(_, ids)| ids.is_empty()) {
            return Ok(());
        }
        let state = self.bump(tx).await?;
        let (mut types, mut fresh) = (Vec::new(), Vec::new());
        for (object, ids) in sets.iter().filter(|(_, ids)| !ids.is_empty()) {
            self.types.insert((*object).into());
            for id in ids.iter().copied() {
                // As in `record_many`: destroyed rows always, others once per object.
                if op == ChangeOp::Destroyed || self.seen.insert((*object, id)) {
                    types.push(object.as_str());
                    fresh.push(id);
                }
            }
        }
        if fresh.is_empty() {
            return Ok(());
        }
        let st = tx
            .prepare_cached(
                "INSERT INTO change (account_id, state, type, object_id, op) \
                 SELECT $1, $2, t, id, $3 FROM unnest($4::text[], $5::bigint[]) \
                 WITH ORDINALITY AS u(t, id, n) ORDER BY n",
            )
            .await?;
        tx.execute(
            &st,
            &[&self.account.0, &state, &op_code(op), &types, &fresh],
        )
        .await?;
        Ok(())
    }

    /// New mail arrived from the server in this transaction (EmailDelivery, RFC 8621 1.5):
    /// kept as the account's `delivery_state` for clients that come back later. Call
    /// after recording its Email (the state is bumped by then).
    pub(super) async fn delivered(
        &mut self,
        tx: &deadpool_postgres::Transaction<'_>,
    ) -> Result<()> {
        if let Some(s) = self.state {
            self.types.insert(crate::events::PushType::EmailDelivery);
            let st = tx
                .prepare_cached("UPDATE account SET delivery_state = $2 WHERE id = $1")
                .await?;
            tx.execute(&st, &[&self.account.0, &s]).await?;
        }
        Ok(())
    }

    /// This transaction gave `queue` work (the account's outbox, the submission queue):
    /// the worker, on whichever node it runs, is woken once it commits.
    pub(super) fn queued(&mut self, queue: Queue) {
        self.queued.insert(queue);
    }

    /// The account's state after this transaction: the new one, or the current one when
    /// nothing changed.
    pub(super) async fn state(&self, tx: &deadpool_postgres::Transaction<'_>) -> Result<State> {
        if let Some(s) = self.state {
            return Ok(State(s));
        }
        let st = tx
            .prepare_cached("SELECT state FROM account WHERE id = $1")
            .await?;
        let row = tx
            .query_opt(&st, &[&self.account.0])
            .await?
            .ok_or_else(|| Error::NotFound(format!("account {}", self.account)))?;
        Ok(State(row.get(0)))
    }

    /// The transaction's new state, bumped on the first change. The UPDATE's row lock
    /// is held to the commit, so the account's writers on every node take their states
    /// one after the other: no two transactions commit the same state.
    async fn bump(&mut self, tx: &deadpool_postgres::Transaction<'_>) -> Result<i64> {
        if let Some(s) = self.state {
            return Ok(s);
        }
        if let Some(fence) = &self.fence {
            fence.check(tx, self.account).await?;
        }
        let st = tx
            .prepare_cached("UPDATE account SET state = state + 1 WHERE id = $1 RETURNING state")
            .await?;
        let s: i64 = tx
            .query_opt(&st, &[&self.account.0])
            .await?
            .ok_or_else(|| Error::NotFound(format!("account {}", self.account)))?
            .get(0);
        self.state = Some(s);
        Ok(s)
    }

    /// Commits `tx`; the state it committed, if it changed anything. A transaction that
    /// changed something or queued work notifies the bus in itself, once (bus.rs says why
    /// inside and why once); one that did neither sends nothing.
    pub(super) async fn commit(
        self,
        tx: deadpool_postgres::Transaction<'_>,
    ) -> Result<Option<State>> {
        if self.state.is_some() || !self.queued.is_empty() {
            // State 0 when only work was queued: no listener announces a change for it.
            let state = self.state.unwrap_or(0);
            super::bus::notify(&tx, self.account, state, self.types, self.queued).await?;
        }
        tx.commit().await?;
        // This node's workers at once; the others' when their listener hears the commit
        // (this node's listener rings them again, which costs a worker one empty read).
        if let Some(work) = &self.work {
            for q in self.queued.iter() {
                work.queued(self.account, q);
            }
        }
        Ok(self.state.map(State))
    }
}

/// The change log's `op` column.
fn op_code(op: ChangeOp) -> i16 {
    match op {
        ChangeOp::Created => 0,
        ChangeOp::Updated => 1,
        ChangeOp::Destroyed => 2,
    }
}

//! A bound on what huge messages cost in memory. Email/get of a message's body holds its
//! raw bytes and a decoded copy of a part while it works, and the answer holds that copy
//! until it is written out: four clients asking at once for the text of a 200 MB message
//! held gigabytes. A request that reads a large message first takes permits from a shared
//! byte budget and keeps them until its answer has been written, so large answers are
//! made one after another once the budget is used: together they stay within about twice
//! the largest message, however many clients ask.

use jmap_proto::{MethodError, MethodErrorType};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Messages up to this size are not counted: small ones are cheap and the common case.
pub(crate) const LARGE_MESSAGE: u64 = 1 << 20;
/// The budget, in KiB (the semaphore's unit): a request counts twice the size of the large
/// messages it reads (the raw bytes and a decoded copy). One that needs more takes it all,
/// so messages of 32 MiB and more are answered one at a time.
const BUDGET_KIB: u32 = 64 * 1024;
/// How long a request waits for the budget before it is told to try again later.
const WAIT: Duration = Duration::from_secs(120);

/// The shared budget (one per server).
#[derive(Clone)]
pub struct LargeBodies {
    budget: Arc<Semaphore>,
}

impl Default for LargeBodies {
    fn default() -> Self {
        LargeBodies {
            budget: Arc::new(Semaphore::new(BUDGET_KIB as usize)),
        }
    }
}

/// The permits one request holds until its answer is written.
#[derive(Default)]
pub(crate) struct Held(Mutex<Vec<OwnedSemaphorePermit>>);

impl Held {
    fn holds_any(&self) -> bool {
        self.0.lock().map(|h| !h.is_empty()).unwrap_or(true)
    }

    /// The permits, to be dropped once the answer is out.
    pub(crate) fn take(&self) -> Vec<OwnedSemaphorePermit> {
        self.0
            .lock()
            .map(|mut h| std::mem::take(&mut *h))
            .unwrap_or_default()
    }
}

impl LargeBodies {
    /// Reserves the budget for reading `bytes` of large messages in the request that holds
    /// `held`, waiting (bounded) for other requests to finish. A request that already holds
    /// permits takes no more, so no two requests can wait on each other.
    pub(crate) async fn reserve(&self, held: &Held, bytes: u64) -> Result<(), MethodError> {
        if bytes <= LARGE_MESSAGE || held.holds_any() {
            return Ok(());
        }
        let kib = u32::try_from(bytes.saturating_mul(2).div_ceil(1024))
            .unwrap_or(BUDGET_KIB)
            .min(BUDGET_KIB);
        let busy = || {
            MethodError::with_description(
                MethodErrorType::ServerUnavailable,
                "too many large messages are being read; try again shortly",
            )
        };
        let permit = tokio::time::timeout(WAIT, self.budget.clone().acquire_many_owned(kib))
            .await
            .map_err(|_| busy())?
            .map_err(|_| busy())?;
        if let Ok(mut h) = held.0.lock() {
            h.push(permit);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn large_requests_take_turns_and_small_ones_never_wait() {
        let large = LargeBodies::default();
        let first = Held::default();
        large.reserve(&first, 200 << 20).await.unwrap();
        // A second request for a large message waits until the first answer is out...
        let second = Held::default();
        let waiting =
            tokio::time::timeout(Duration::from_millis(50), large.reserve(&second, 200 << 20))
                .await;
        assert!(waiting.is_err(), "two 200 MB answers at once");
        // ...while a small one goes through, and the first request may read more.
        large.reserve(&Held::default(), 4096).await.unwrap();
        large.reserve(&first, 300 << 20).await.unwrap();
        drop(first.take());
        large.reserve(&second, 200 << 20).await.unwrap();
        assert!(second.holds_any());
    }
}

//! Exponential backoff with equal jitter (each delay uniform in the upper half of its
//! ceiling), so a server coming back is not hit by every account at the same instant.

use rand::Rng;
use std::time::{Duration, Instant};

/// How long a connection must keep working after its first pass before a failure is taken
/// as the end of a good run (and retried quickly) rather than as one more failed attempt.
/// A server that logs in, then answers nothing usable, fails within a second or two of
/// every pass; one that served for a minute and then dropped is worth a quick reconnect.
pub const PROVEN_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
    /// When the current connection was seen working (its first pass done).
    working_since: Option<Instant>,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max,
            attempt: 0,
            working_since: None,
        }
    }

    /// The connection did its first pass. The failures so far are forgotten only once it
    /// has kept working for [`PROVEN_AFTER`] (see `next_delay`).
    pub fn working(&mut self) {
        self.working_since = Some(Instant::now());
    }

    /// The delay before the next attempt: uniform in [ceiling/2, ceiling], where the
    /// ceiling doubles per failure up to `max`.
    pub fn next_delay(&mut self) -> Duration {
        if self
            .working_since
            .take()
            .is_some_and(|t| t.elapsed() >= PROVEN_AFTER)
        {
            self.attempt = 0;
        }
        let exp = self.attempt.min(20);
        self.attempt = self.attempt.saturating_add(1);
        let ceiling = self.base.saturating_mul(1u32 << exp).min(self.max);
        let low = ceiling / 2;
        let jitter = rand::thread_rng().gen_range(0..=(ceiling - low).as_millis() as u64);
        low + Duration::from_millis(jitter)
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
        self.working_since = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(500) && first <= Duration::from_secs(1));
        for _ in 0..30 {
            let d = b.next_delay();
            assert!(d <= Duration::from_secs(60));
        }
        assert!(b.next_delay() >= Duration::from_secs(30));
        b.reset();
        assert!(b.next_delay() <= Duration::from_secs(1));
    }

    #[test]
    fn a_connection_that_fails_soon_after_its_pass_keeps_backing_off() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        for _ in 0..4 {
            b.next_delay();
        }
        b.working();
        assert!(
            b.next_delay() >= Duration::from_secs(8),
            "not forgotten yet"
        );
        b.working_since = Instant::now().checked_sub(PROVEN_AFTER);
        assert!(
            b.next_delay() <= Duration::from_secs(1),
            "a proven run resets"
        );
    }
}

//! An account's daily download budget: what was downloaded from its server today and how
//! much the provider allows. Gmail allows about 2,500 MB a day over IMAP and locks an
//! account that goes past it for a day (support.google.com/a/answer/1071518), so the
//! background work stops short of it and only what a person asks for may use the rest.
//!
//! A day is a UTC calendar day (day number = Unix seconds / 86,400): simple to persist
//! (one row per account and day), and a person can be told when bodies resume ("00:00
//! UTC"). A rolling 24-hour window would follow the provider more closely but needs
//! per-download timestamps to be kept.

/// Seconds in a day.
pub const DAY_SECONDS: i64 = 86_400;
/// The share of the daily limit the background body pass may use, in percent; the rest is
/// kept for bodies someone asks for (the priority lane), which may go up to the limit.
pub const BACKGROUND_PERCENT: u64 = 90;
const MB: u64 = 1_000_000;

/// The UTC day number of a Unix time.
pub fn utc_day(unix_seconds: i64) -> i64 {
    unix_seconds.div_euclid(DAY_SECONDS)
}

/// Bytes downloaded on one account today against its daily limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DownloadBudget {
    /// Bytes read from the account's servers this UTC day.
    pub used: u64,
    /// The daily limit in MB (10^6 bytes, as providers count); `None`: unlimited.
    pub limit_mb: Option<u64>,
    /// The UTC day the figures are for.
    pub day: i64,
    /// The background pass stopped this day because the next body would not fit.
    pub background_stopped: bool,
}

impl DownloadBudget {
    /// The hard limit in bytes: a person's requests fail beyond it.
    pub fn limit(&self) -> Option<u64> {
        self.limit_mb.map(|mb| mb.saturating_mul(MB))
    }

    /// Where the background pass stops, in bytes.
    pub fn background_limit(&self) -> Option<u64> {
        self.limit()
            .map(|l| l / 100 * BACKGROUND_PERCENT + l % 100 * BACKGROUND_PERCENT / 100)
    }

    /// Bytes the background pass may still download today (`None`: no limit).
    pub fn background_left(&self) -> Option<u64> {
        self.background_limit().map(|l| l.saturating_sub(self.used))
    }

    /// Whether the background pass has used its share (or stopped short of it, because
    /// the next body would not fit).
    pub fn background_reached(&self) -> bool {
        self.background_stopped || self.background_left() == Some(0)
    }

    /// Whether nothing more may be downloaded today, not even on request.
    pub fn exhausted(&self) -> bool {
        self.limit().is_some_and(|l| self.used >= l)
    }

    /// When the next day starts (Unix seconds).
    pub fn resets_at(&self) -> i64 {
        (self.day + 1).saturating_mul(DAY_SECONDS)
    }

    /// What the sync status says once the background share is used:
    /// "download budget reached: 2,251 of 2,500 MB today; bodies resume at 00:00 UTC".
    pub fn describe(&self) -> String {
        let limit = self.limit_mb.map_or_else(|| "unlimited".into(), group);
        format!(
            "download budget reached: {} of {limit} MB today; bodies resume at 00:00 UTC",
            group(self.used / MB)
        )
    }
}

/// 2251 → "2,251".
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_and_text() {
        let b = DownloadBudget {
            used: 2_251_400_000,
            limit_mb: Some(2500),
            day: 20_000,
            background_stopped: false,
        };
        assert_eq!(b.limit(), Some(2_500_000_000));
        assert_eq!(b.background_limit(), Some(2_250_000_000));
        assert!(b.background_reached());
        assert!(!b.exhausted());
        assert_eq!(
            b.describe(),
            "download budget reached: 2,251 of 2,500 MB today; bodies resume at 00:00 UTC"
        );
        assert_eq!(b.resets_at(), 20_001 * 86_400);
        let open = DownloadBudget {
            used: u64::MAX,
            limit_mb: None,
            day: 0,
            background_stopped: false,
        };
        assert_eq!(open.background_left(), None);
        assert!(!open.background_reached() && !open.exhausted());
        assert_eq!(utc_day(-1), -1);
        assert_eq!(utc_day(86_399), 0);
        assert_eq!(group(1_234_567), "1,234,567");
    }
}

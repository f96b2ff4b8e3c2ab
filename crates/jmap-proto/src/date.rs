//! `Date` and `UTCDate` (RFC 8620 1.4): RFC 3339 `date-time` strings.
//!
//! Both are held as unix seconds; [`Date`] also keeps its offset so it formats back as
//! it came. Parsing is liberal where RFC 3339 is and RFC 8620 only restricts what a
//! server sends: lowercase `t`/`z` and a fractional second are accepted (the fraction is
//! truncated: mail dates carry whole seconds), and [`UtcDate`] accepts a numeric offset,
//! converting it to UTC, because refusing `"2024-01-01T00:00:00+01:00"` in a filter would
//! help nobody. What we emit always follows RFC 8620 1.4: uppercase letters, no fraction,
//! and `Z` for a UTCDate.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// Seconds from 1970-01-01T00:00:00Z to 0000-01-01T00:00:00Z.
const MIN_TIMESTAMP: i64 = -62_167_219_200;
/// Seconds from the epoch to 9999-12-31T23:59:59Z: RFC 3339 years have four digits.
const MAX_TIMESTAMP: i64 = 253_402_300_799;

/// Why a string is not an RFC 3339 `date-time`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DateError {
    /// The text does not follow the RFC 3339 `date-time` grammar.
    #[error("not an RFC 3339 date-time (expected YYYY-MM-DDTHH:MM:SSZ or ±HH:MM)")]
    Syntax,
    /// A field is out of range (month 13, February 30, hour 24, ...).
    #[error("date-time field out of range")]
    Range,
    /// The instant falls outside years 0000-9999 once the offset is applied.
    #[error("date-time outside years 0000-9999")]
    OutOfBounds,
}

/// A `UTCDate` (RFC 8620 1.4): an instant, formatted as `YYYY-MM-DDTHH:MM:SSZ`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UtcDate {
    timestamp: i64,
}

impl UtcDate {
    /// The instant `timestamp` seconds after the unix epoch; `None` outside 0000-9999.
    pub fn from_timestamp(timestamp: i64) -> Option<Self> {
        (MIN_TIMESTAMP..=MAX_TIMESTAMP)
            .contains(&timestamp)
            .then_some(Self { timestamp })
    }

    /// Seconds since the unix epoch.
    pub fn timestamp(self) -> i64 {
        self.timestamp
    }
}

impl FromStr for UtcDate {
    type Err = DateError;
    /// Parses any RFC 3339 date-time and converts it to UTC (see the module docs).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (timestamp, _) = parse_rfc3339(s)?;
        Ok(Self { timestamp })
    }
}

impl fmt::Display for UtcDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_date_time(f, self.timestamp)?;
        f.write_str("Z")
    }
}

/// A `Date` (RFC 8620 1.4): an instant and the offset from UTC it was written in, e.g.
/// `2014-10-30T06:12:00+05:00` (the `sentAt` of an Email keeps the sender's offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Date {
    timestamp: i64,
    offset_minutes: i16,
}

impl Date {
    /// An instant with an offset in minutes east of UTC; `None` if the offset is not in
    /// -23:59..=+23:59 or the local time falls outside years 0000-9999.
    pub fn new(timestamp: i64, offset_minutes: i16) -> Option<Self> {
        if offset_minutes.unsigned_abs() >= 24 * 60 {
            return None;
        }
        UtcDate::from_timestamp(timestamp)?;
        UtcDate::from_timestamp(timestamp + i64::from(offset_minutes) * 60)?;
        Some(Self {
            timestamp,
            offset_minutes,
        })
    }

    /// Seconds since the unix epoch of the instant (offset already applied).
    pub fn timestamp(self) -> i64 {
        self.timestamp
    }

    /// Offset from UTC in minutes east (`+05:00` is 300).
    pub fn offset_minutes(self) -> i16 {
        self.offset_minutes
    }

    /// The same instant as a UTCDate.
    pub fn to_utc(self) -> UtcDate {
        UtcDate {
            timestamp: self.timestamp,
        }
    }

    /// The RFC 5322 3.3 `date-time` of this instant in its own offset, as a Date header
    /// field carries it: `Fri, 14 Feb 1969 12:02:00 +0000`. Instants before 1970 (negative
    /// timestamps) are days and seconds counted with Euclidean division, so they format
    /// like any other.
    pub fn to_rfc5322(self) -> String {
        const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let local = self.timestamp + i64::from(self.offset_minutes) * 60;
        let days = local.div_euclid(86_400);
        let secs = local.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        // 1970-01-01 was a Thursday.
        let dow = DAYS[days.rem_euclid(7) as usize];
        let month = MONTHS[((m - 1).rem_euclid(12)) as usize];
        let sign = if self.offset_minutes < 0 { '-' } else { '+' };
        let abs = self.offset_minutes.unsigned_abs();
        format!(
            "{dow}, {d} {month} {y:04} {:02}:{:02}:{:02} {sign}{:02}{:02}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            abs / 60,
            abs % 60
        )
    }
}

impl FromStr for Date {
    type Err = DateError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (timestamp, offset_minutes) = parse_rfc3339(s)?;
        Date::new(timestamp, offset_minutes).ok_or(DateError::OutOfBounds)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let local = self.timestamp + i64::from(self.offset_minutes) * 60;
        write_date_time(f, local)?;
        if self.offset_minutes == 0 {
            return f.write_str("Z");
        }
        let sign = if self.offset_minutes < 0 { '-' } else { '+' };
        let abs = self.offset_minutes.unsigned_abs();
        write!(f, "{sign}{:02}:{:02}", abs / 60, abs % 60)
    }
}

impl From<UtcDate> for Date {
    fn from(d: UtcDate) -> Self {
        Date {
            timestamp: d.timestamp,
            offset_minutes: 0,
        }
    }
}

macro_rules! string_serde {
    ($t:ty, $what:literal) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse()
                    .map_err(|e: DateError| de::Error::custom(format!(concat!($what, ": {}"), e)))
            }
        }
    };
}
string_serde!(UtcDate, "invalid UTCDate");
string_serde!(Date, "invalid Date");

/// Parses an RFC 3339 `date-time` into (unix seconds in UTC, offset in minutes east).
fn parse_rfc3339(s: &str) -> Result<(i64, i16), DateError> {
    let b = s.as_bytes();
    // The shortest form is "YYYY-MM-DDTHH:MM:SSZ" (20 bytes); refusing long input early
    // bounds the work on a hostile string (9 fraction digits plus an offset is 35).
    if b.len() < 20 || b.len() > 35 {
        return Err(DateError::Syntax);
    }
    let year = digits(b, 0, 4)?;
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    let hour = digits(b, 11, 2)?;
    let minute = digits(b, 14, 2)?;
    let second = digits(b, 17, 2)?;
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(DateError::Syntax);
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start || i - start > 9 {
            return Err(DateError::Syntax);
        }
    }
    let offset_minutes: i64 = match &b[i..] {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), rest @ ..] if rest.len() == 5 && rest[2] == b':' => {
            let oh = digits(rest, 0, 2)?;
            let om = digits(rest, 3, 2)?;
            if oh > 23 || om > 59 {
                return Err(DateError::Range);
            }
            let total = oh * 60 + om;
            if *sign == b'-' { -total } else { total }
        }
        _ => return Err(DateError::Syntax),
    };
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        // RFC 3339 allows a leap second (60); unix time has none, so it counts as 59.
        || second > 60
    {
        return Err(DateError::Range);
    }
    let second = second.min(59);
    let local = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    let utc = local - offset_minutes * 60;
    if !(MIN_TIMESTAMP..=MAX_TIMESTAMP).contains(&utc) {
        return Err(DateError::OutOfBounds);
    }
    // |offset| < 24 * 60 was checked above, so it fits an i16.
    let offset = i16::try_from(offset_minutes).map_err(|_| DateError::Range)?;
    Ok((utc, offset))
}

fn digits(b: &[u8], at: usize, n: usize) -> Result<i64, DateError> {
    let field = b.get(at..at + n).ok_or(DateError::Syntax)?;
    field.iter().try_fold(0i64, |acc, c| {
        if c.is_ascii_digit() {
            Ok(acc * 10 + i64::from(c - b'0'))
        } else {
            Err(DateError::Syntax)
        }
    })
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Writes `YYYY-MM-DDTHH:MM:SS` for a local timestamp.
fn write_date_time(f: &mut fmt::Formatter<'_>, t: i64) -> fmt::Result {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    write!(
        f,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5322 dates of instants before 1970, after, and in offsets either side of UTC.
    #[test]
    fn rfc5322_dates_before_and_after_1970() {
        let f = |s: &str| s.parse::<Date>().unwrap().to_rfc5322();
        assert_eq!(f("1969-02-14T12:02:00Z"), "Fri, 14 Feb 1969 12:02:00 +0000");
        assert_eq!(f("1969-12-31T23:59:59Z"), "Wed, 31 Dec 1969 23:59:59 +0000");
        assert_eq!(f("1970-01-01T00:00:00Z"), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(f("1900-03-01T00:00:00Z"), "Thu, 1 Mar 1900 00:00:00 +0000");
        assert_eq!(
            f("2014-10-30T06:12:00+05:30"),
            "Thu, 30 Oct 2014 06:12:00 +0530"
        );
        assert_eq!(
            f("1969-07-20T20:17:40-04:00"),
            "Sun, 20 Jul 1969 20:17:40 -0400"
        );
        assert_eq!(f("0001-01-01T00:00:00Z"), "Mon, 1 Jan 0001 00:00:00 +0000");
    }

    fn utc(s: &str) -> i64 {
        s.parse::<UtcDate>().unwrap().timestamp()
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc("1970-01-01T00:00:00Z"), 0);
        assert_eq!(utc("2014-10-30T06:12:00Z"), 1_414_649_520);
        assert_eq!(utc("2000-02-29T23:59:59Z"), 951_868_799);
        assert_eq!(utc("1969-12-31T23:59:59Z"), -1);
        assert_eq!(utc("0000-01-01T00:00:00Z"), MIN_TIMESTAMP);
        assert_eq!(utc("9999-12-31T23:59:59Z"), MAX_TIMESTAMP);
        let d = UtcDate::from_timestamp(1_414_649_520).unwrap();
        assert_eq!(d.to_string(), "2014-10-30T06:12:00Z");
    }

    #[test]
    fn offsets_convert_to_utc() {
        // The RFC 8620 1.4 example of a Date.
        let d: Date = "2014-10-30T06:12:00+05:00".parse().unwrap();
        assert_eq!(d.timestamp(), utc("2014-10-30T01:12:00Z"));
        assert_eq!(d.offset_minutes(), 300);
        assert_eq!(d.to_string(), "2014-10-30T06:12:00+05:00");
        assert_eq!(d.to_utc().to_string(), "2014-10-30T01:12:00Z");

        let d: Date = "2014-10-30T06:12:00-03:30".parse().unwrap();
        assert_eq!(d.timestamp(), utc("2014-10-30T09:42:00Z"));
        assert_eq!(d.to_string(), "2014-10-30T06:12:00-03:30");

        // Crossing a day and a year boundary.
        assert_eq!(
            utc("2020-01-01T00:30:00+01:00"),
            utc("2019-12-31T23:30:00Z")
        );
        // UTCDate is liberal in what it accepts but always emits Z.
        let u: UtcDate = "2020-01-01T00:30:00+01:00".parse().unwrap();
        assert_eq!(u.to_string(), "2019-12-31T23:30:00Z");
        // -00:00 (RFC 3339 "unknown local offset") is UTC.
        let d: Date = "2020-01-01T00:00:00-00:00".parse().unwrap();
        assert_eq!(d.to_string(), "2020-01-01T00:00:00Z");
    }

    #[test]
    fn liberal_forms() {
        assert_eq!(utc("2014-10-30t06:12:00z"), utc("2014-10-30T06:12:00Z"));
        assert_eq!(utc("2014-10-30T06:12:00.999Z"), utc("2014-10-30T06:12:00Z"));
        assert_eq!(
            utc("2014-10-30T06:12:00.123456789+00:00"),
            utc("2014-10-30T06:12:00Z")
        );
        // Leap second.
        assert_eq!(utc("2016-12-31T23:59:60Z"), utc("2016-12-31T23:59:59Z"));
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "2014-10-30",
            "2014-10-30T06:12:00",
            "2014-10-30 06:12:00Z",
            "2014-10-30T06:12Z",
            "14-10-30T06:12:00Z",
            "2014-10-30T06:12:00.Z",
            "2014-10-30T06:12:00.1234567890Z",
            "2014-10-30T06:12:00+0500",
            "2014-10-30T06:12:00+05",
            "2014-10-30T06:12:00ZZ",
            "+014-10-30T06:12:00Z",
            "2014-1a-30T06:12:00Z",
            "２014-10-30T06:12:00Z",
        ] {
            assert_eq!(bad.parse::<UtcDate>(), Err(DateError::Syntax), "{bad:?}");
        }
        for bad in [
            "2014-13-01T00:00:00Z",
            "2014-00-01T00:00:00Z",
            "2014-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2014-04-31T00:00:00Z",
            "2014-01-00T00:00:00Z",
            "2014-01-01T24:00:00Z",
            "2014-01-01T00:60:00Z",
            "2014-01-01T00:00:61Z",
            "2014-01-01T00:00:00+24:00",
            "2014-01-01T00:00:00+01:60",
        ] {
            assert_eq!(bad.parse::<UtcDate>(), Err(DateError::Range), "{bad:?}");
        }
        assert_eq!(
            "0000-01-01T00:00:00+01:00".parse::<UtcDate>(),
            Err(DateError::OutOfBounds)
        );
        assert_eq!(
            "9999-12-31T23:59:59-01:00".parse::<UtcDate>(),
            Err(DateError::OutOfBounds)
        );
        assert!(UtcDate::from_timestamp(MAX_TIMESTAMP + 1).is_none());
        assert!(Date::new(0, 24 * 60).is_none());
    }

    #[test]
    fn round_trips_every_day_of_a_leap_cycle() {
        // 400 years of days, sampled every 7 days, to cover month and leap edges.
        let start = utc("1800-01-01T00:00:00Z");
        let mut t = start;
        while t < start + 146_097 * 86_400 {
            let d = UtcDate::from_timestamp(t + 3723).unwrap();
            assert_eq!(d.to_string().parse::<UtcDate>().unwrap(), d);
            t += 7 * 86_400;
        }
    }

    #[test]
    fn serde() {
        let d: UtcDate = serde_json::from_str("\"2014-10-30T06:12:00Z\"").unwrap();
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            "\"2014-10-30T06:12:00Z\""
        );
        let e = serde_json::from_str::<UtcDate>("\"yesterday\"").unwrap_err();
        assert!(e.to_string().starts_with("invalid UTCDate"));
        let d: Date = serde_json::from_str("\"2014-10-30T06:12:00+05:00\"").unwrap();
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            "\"2014-10-30T06:12:00+05:00\""
        );
    }
}

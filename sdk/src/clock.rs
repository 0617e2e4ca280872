//! Calendar dates and the current time, as FHIR writes them (`2026-10-30`,
//! `2026-10-30T08:12:03Z`).
//!
//! The current time comes from the standard WASI wall clock (no platform capability). Dates
//! are UTC dates; a FHIR dateTime's date part is its local date.
//!
//! ```
//! use healthcloud_sdk::clock::Date;
//!
//! let date = Date::parse("2026-10-30").unwrap();
//! assert_eq!(date.add_days(-90).to_string(), "2026-08-01");
//! assert_eq!(Date::from_fhir("2026-10-30T08:12:00+01:00"), Some(date));
//! assert_eq!(Date::parse("2026-02-30"), None);
//! ```

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

const SECONDS_PER_DAY: i64 = 86_400;

/// A calendar date (proleptic Gregorian), years 0000 to 9999 as FHIR allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    /// Days since 1970-01-01.
    days: i64,
}

impl Date {
    /// The date `year-month-day`, if it exists.
    pub fn from_ymd(year: i32, month: u32, day: u32) -> Option<Date> {
        let valid = (0..=9999).contains(&year)
            && (1..=12).contains(&month)
            && day >= 1
            && day <= days_in_month(year, month);
        valid.then(|| Date {
            days: days_from_civil(year, month, day),
        })
    }

    /// Parses exactly `YYYY-MM-DD`.
    pub fn parse(text: &str) -> Option<Date> {
        let bytes = text.as_bytes();
        let shaped = bytes.len() == 10
            && bytes[4] == b'-'
            && bytes[7] == b'-'
            && bytes
                .iter()
                .enumerate()
                .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit());
        if !shaped {
            return None;
        }
        Date::from_ymd(
            text[0..4].parse().ok()?,
            text[5..7].parse().ok()?,
            text[8..10].parse().ok()?,
        )
    }

    /// The date of a FHIR `date` or `dateTime` with at least day precision
    /// (`2026-10-30`, `2026-10-30T08:12:00+01:00`).
    pub fn from_fhir(text: &str) -> Option<Date> {
        Date::parse(text.get(..10)?)
    }

    /// Today's date in UTC.
    pub fn today() -> Date {
        Date::from_unix_seconds(unix_now())
    }

    /// The UTC date of a Unix time.
    pub fn from_unix_seconds(seconds: i64) -> Date {
        Date {
            days: seconds.div_euclid(SECONDS_PER_DAY),
        }
    }

    /// The date `days` later (earlier when negative).
    pub fn add_days(self, days: i64) -> Date {
        Date {
            days: self.days + days,
        }
    }

    /// Days since 1970-01-01 (negative before).
    pub fn days_since_epoch(self) -> i64 {
        self.days
    }

    /// `(year, month, day)`.
    pub fn ymd(self) -> (i32, u32, u32) {
        civil_from_days(self.days)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (year, month, day) = self.ymd();
        write!(f, "{year:04}-{month:02}-{day:02}")
    }
}

/// Seconds since the Unix epoch, from the WASI wall clock.
pub fn unix_now() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// The current time as a FHIR `instant` in UTC, e.g. `2026-10-30T08:12:03Z`.
pub fn now_instant() -> String {
    format_instant(unix_now())
}

/// A Unix time as a FHIR `instant` in UTC, e.g. `2026-10-30T08:12:03Z`.
pub fn format_instant(seconds: i64) -> String {
    let date = Date::from_unix_seconds(seconds);
    let in_day = seconds.rem_euclid(SECONDS_PER_DAY);
    format!(
        "{date}T{:02}:{:02}:{:02}Z",
        in_day / 3600,
        in_day % 3600 / 60,
        in_day % 60
    )
}

fn is_leap_year(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's `days_from_civil` / `civil_from_days`
// (https://howardhinnant.github.io/date_algorithms.html): exact for the proleptic Gregorian
// calendar, no tables, no loops.
fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    let year = i64::from(year) - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn civil_from_days(days: i64) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // In range by construction for every date `Date` can hold.
    (year as i32, month as u32, day as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_across_leap_years_and_centuries() {
        for days in (-800_000..800_000).step_by(997) {
            let date = Date { days };
            let (y, m, d) = date.ymd();
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(Date::parse("1970-01-01").unwrap().days_since_epoch(), 0);
        assert_eq!(
            Date::parse("2000-02-29").unwrap().add_days(1).to_string(),
            "2000-03-01"
        );
        assert_eq!(
            Date::parse("2024-12-31").unwrap().add_days(1).to_string(),
            "2025-01-01"
        );
    }

    #[test]
    fn rejects_what_is_not_a_date() {
        for text in [
            "2026-13-01",
            "2026-00-10",
            "2025-02-29",
            "1900-02-29",
            "26-10-30",
            "2026/10/30",
            "2026-1-030",
            "",
        ] {
            assert_eq!(Date::parse(text), None, "{text}");
        }
        assert!(Date::parse("2000-02-29").is_some());
        assert_eq!(Date::from_fhir("2026-10"), None);
    }

    #[test]
    fn instants_are_utc() {
        assert_eq!(format_instant(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_instant(1_793_349_123), "2026-10-30T08:32:03Z");
        assert_eq!(format_instant(-1), "1969-12-31T23:59:59Z");
    }
}

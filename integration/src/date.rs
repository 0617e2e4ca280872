//! FHIR `date`, `dateTime` and `instant` values as inclusive ranges of epoch milliseconds, the
//! form in which dates are indexed and compared: `2024` covers the whole year, `2024-03-01`
//! the whole day, a full timestamp a single millisecond.

use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// An inclusive range `[lo, hi]` of epoch milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateRange {
    /// First millisecond covered.
    pub lo: i64,
    /// Last millisecond covered.
    pub hi: i64,
}

/// The zone of dates and times written without one (`2024-03-01`, `2024-03-01T10:00`): the
/// national deployment's, in stored data and in searches alike.
pub const ZONE: chrono_tz::Tz = chrono_tz::Europe::Copenhagen;

/// `naive` in [`ZONE`]: the earlier of an hour that occurs twice, the hour after a gap.
fn local(naive: NaiveDateTime) -> Option<i64> {
    let at = ZONE.from_local_datetime(&naive).earliest().or_else(|| {
        ZONE.from_local_datetime(&(naive + chrono::Duration::hours(1)))
            .earliest()
    })?;
    Some(at.timestamp_millis())
}

/// Parses a FHIR date, dateTime or instant. Values without a time zone are read in [`ZONE`].
pub fn parse(value: &str) -> Option<DateRange> {
    let value = value.trim();
    let bytes = value.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        bytes
            .get(range)
            .is_some_and(|b| b.iter().all(u8::is_ascii_digit))
    };
    match value.len() {
        4 if digits(0..4) => {
            let year: i32 = value.parse().ok()?;
            let start = NaiveDate::from_ymd_opt(year, 1, 1)?;
            span(start, start.with_year(year + 1)?)
        }
        7 if digits(0..4) && bytes[4] == b'-' && digits(5..7) => {
            let start = NaiveDate::parse_from_str(&format!("{value}-01"), "%Y-%m-%d").ok()?;
            span(start, start.checked_add_months(Months::new(1))?)
        }
        10 => {
            let day = NaiveDate::parse_from_str(value, "%Y-%m-%d").ok()?;
            span(day, day.succ_opt()?)
        }
        _ => {
            // The precision given sets the range: a minute covers 60 s, a second 1 s, a
            // fraction of a second one millisecond.
            let time = value.get(11..).unwrap_or_default();
            let precision_ms =
                if time.len() >= 5 && !time.get(5..).is_some_and(|r| r.starts_with(':')) {
                    60_000
                } else if time.contains('.') {
                    1
                } else {
                    1_000
                };
            let at = match DateTime::parse_from_rfc3339(value) {
                Ok(at) => at.with_timezone(&Utc),
                Err(_) => {
                    // FHIR search allows a time without seconds or zone: "2024-03-01T10:00".
                    let naive = NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%.f")
                        .or_else(|_| NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M"))
                        .ok()?;
                    Utc.timestamp_millis_opt(local(naive)?).single()?
                }
            };
            let lo = at.timestamp_millis();
            Some(DateRange {
                lo,
                hi: lo + precision_ms - 1,
            })
        }
    }
}

/// The days from `start` up to `end_exclusive`, from midnight to midnight in [`ZONE`].
fn span(start: NaiveDate, end_exclusive: NaiveDate) -> Option<DateRange> {
    let lo = local(start.and_hms_opt(0, 0, 0)?)?;
    let hi = local(end_exclusive.and_hms_opt(0, 0, 0)?)? - 1;
    Some(DateRange { lo, hi })
}

/// Formats epoch milliseconds as a FHIR instant (`2024-03-01T10:00:00.000Z`).
pub fn instant(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// The current time in epoch milliseconds.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_sets_the_range() {
        // Dates and times without a zone are Copenhagen's: winter UTC+1, summer UTC+2.
        let year = parse("2024").unwrap();
        assert_eq!(instant(year.lo), "2023-12-31T23:00:00.000Z");
        assert_eq!(instant(year.hi), "2024-12-31T22:59:59.999Z");
        let month = parse("2024-02").unwrap();
        assert_eq!(instant(month.hi), "2024-02-29T22:59:59.999Z");
        let day = parse("2024-03-01").unwrap();
        assert_eq!(instant(day.lo), "2024-02-29T23:00:00.000Z");
        assert_eq!(instant(day.hi), "2024-03-01T22:59:59.999Z");
        let summer = parse("2024-07-01").unwrap();
        assert_eq!(instant(summer.lo), "2024-06-30T22:00:00.000Z");
        // The day the clocks go forward has 23 hours.
        let short = parse("2024-03-31").unwrap();
        assert_eq!(short.hi - short.lo + 1, 23 * 3_600_000);
        let second = parse("2024-03-01T10:00:00+01:00").unwrap();
        assert_eq!(instant(second.lo), "2024-03-01T09:00:00.000Z");
        assert_eq!(instant(second.hi), "2024-03-01T09:00:00.999Z");
        let millisecond = parse("2024-03-01T10:00:00.250Z").unwrap();
        assert_eq!(millisecond.lo, millisecond.hi);
        let minute = parse("2024-03-01T10:00").unwrap();
        assert_eq!(minute.lo, second.lo);
        assert_eq!(instant(minute.hi), "2024-03-01T09:00:59.999Z");
        // In the hour the clocks skip, the hour after.
        let skipped = parse("2024-03-31T02:30").unwrap();
        assert_eq!(instant(skipped.lo), "2024-03-31T01:30:00.000Z");
    }

    #[test]
    fn garbage_is_not_a_date() {
        for bad in [
            "",
            "yesterday",
            "2024-13",
            "2024-02-30",
            "20240301",
            "2024-03-01T25:00",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}

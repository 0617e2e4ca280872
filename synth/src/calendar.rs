//! Time: days relative to `today`, the five-year window clinical events fall in, and Danish
//! local time (summer time included) for timestamps.

use chrono::{Datelike, NaiveDate, TimeDelta};

/// Days relative to `today` (0 = today, negative = past). Integer offsets keep the hot loops
/// free of calendar arithmetic; conversion to a date happens only when formatting.
pub(crate) type Day = i32;

/// Earliest day any clinical event may fall on: the "past ~5 years" window.
pub(crate) const WINDOW_START: Day = -(5 * 365);

/// Latest day for events. Yesterday, not today, so that a timestamp can never be later than the
/// wall clock when `today` is the real current date.
pub(crate) const LAST: Day = -1;

pub(crate) fn date_of(today: NaiveDate, day: Day) -> NaiveDate {
    today + TimeDelta::days(i64::from(day))
}

pub(crate) fn day_of(today: NaiveDate, date: NaiveDate) -> Day {
    (date - today).num_days() as Day
}

pub(crate) fn fmt_date(d: NaiveDate) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
}

pub(crate) fn last_sunday(year: i32, month: u32) -> NaiveDate {
    // Only called for March and October, which both have 31 days.
    let last = NaiveDate::from_ymd_opt(year, month, 31).expect("March and October have 31 days");
    last - TimeDelta::days(i64::from(last.weekday().num_days_from_sunday()))
}

/// Danish local-time offset. Events are only placed between 06:30 and 23:00, so the date alone
/// decides, and the non-existent/ambiguous hours of the switch nights never occur.
pub(crate) fn danish_offset(d: NaiveDate) -> &'static str {
    let y = d.year();
    if d >= last_sunday(y, 3) && d < last_sunday(y, 10) {
        "+02:00"
    } else {
        "+01:00"
    }
}

/// A point in local time: a day offset plus minutes after midnight.
#[derive(Clone, Copy)]
pub(crate) struct When {
    pub(crate) day: Day,
    pub(crate) minute: u32,
}

//! Who a patient is: sex, age, birth date, names and the CPR-like replacement number (day
//! of month + 60), which can never be a real person's.

use chrono::{Datelike, NaiveDate, TimeDelta};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::names::{FAMILY_NAMES, FEMALE_OLDER, FEMALE_YOUNGER, MALE_OLDER, MALE_YOUNGER};
use crate::rng::pick;

pub(crate) struct Person {
    pub(crate) female: bool,
    pub(crate) age: i32,
    pub(crate) birth: NaiveDate,
    pub(crate) given: Vec<&'static str>,
    pub(crate) family: &'static str,
    pub(crate) cpr: String,
}

pub(crate) fn sample_age(rng: &mut ChaCha8Rng) -> i32 {
    // Skewed older than the general population because benchmark value lies in chronic
    // patients, while still keeping younger adults present.
    let u: f64 = rng.gen_range(0.0..1.0);
    if u < 0.30 {
        rng.gen_range(18..50)
    } else if u < 0.62 {
        rng.gen_range(50..67)
    } else if u < 0.90 {
        rng.gen_range(67..82)
    } else {
        rng.gen_range(82..=95)
    }
}

pub(crate) fn sample_person(rng: &mut ChaCha8Rng, today: NaiveDate) -> Person {
    let female = rng.gen_bool(0.52);
    let age = sample_age(rng);
    let year = today.year() - age;
    let anniversary = NaiveDate::from_ymd_opt(year, today.month(), today.day())
        .or_else(|| NaiveDate::from_ymd_opt(year, 2, 28))
        .expect("valid calendar date");
    // At most 364 days back keeps the exact age at `age`, whatever the leap years.
    let birth = anniversary - TimeDelta::days(rng.gen_range(0..365));

    let young_names = birth.year() >= 1995 && rng.gen_bool(0.75);
    let pool = match (female, young_names) {
        (true, true) => FEMALE_YOUNGER,
        (true, false) => FEMALE_OLDER,
        (false, true) => MALE_YOUNGER,
        (false, false) => MALE_OLDER,
    };
    let first = *pick(rng, pool);
    let mut given = vec![first];
    if rng.gen_bool(0.3) {
        let second = *pick(rng, pool);
        if second != first {
            given.push(second);
        }
    }
    // Minimum of two draws favours the head of the list, mimicking how a few surnames dominate.
    let n = FAMILY_NAMES.len();
    let family = FAMILY_NAMES[rng.gen_range(0..n).min(rng.gen_range(0..n))];

    // Replacement-number convention: day + 60 can never be a real CPR. The century digit and
    // the sex parity of the last digit follow the real rules so parsers treat it like a CPR.
    let century_digit = match birth.year() {
        ..1900 => rng.gen_range(5..=8),
        1900..2000 => rng.gen_range(0..=3),
        2000..2037 => rng.gen_range(4..=9),
        _ => rng.gen_range(5..=8),
    };
    let middle = rng.gen_range(0..100);
    let last = rng.gen_range(0..5) * 2 + if female { 0 } else { 1 };
    let cpr = format!(
        "{:02}{:02}{:02}{}{:02}{}",
        birth.day() + 60,
        birth.month(),
        birth.year().rem_euclid(100),
        century_digit,
        middle,
        last
    );
    Person {
        female,
        age,
        birth,
        given,
        family,
        cpr,
    }
}

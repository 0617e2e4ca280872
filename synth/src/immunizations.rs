//! Immunizations: the seasonal and age-based vaccinations Danish programmes offer.

use chrono::{Datelike, NaiveDate};
use serde_json::json;

use crate::calendar::{Day, LAST, WINDOW_START, date_of, day_of};
use crate::codes::SYS_CVX;
use crate::context::Ctx;
use crate::fhir::concept;

pub(crate) fn push_immunization(
    ctx: &mut Ctx,
    (code, display, text): (&str, &str, &str),
    day: Day,
) {
    if !(WINDOW_START..=LAST).contains(&day) {
        return;
    }
    let id = ctx.id();
    let when = ctx.clinic_time(day);
    let imm = json!({
        "resourceType": "Immunization",
        "id": id,
        "status": "completed",
        "vaccineCode": concept(SYS_CVX, code, display, text),
        "patient": ctx.patient_ref.clone(),
        "occurrenceDateTime": ctx.datetime(when),
        "primarySource": true
    });
    ctx.immunizations.push(imm);
}

pub(crate) fn immunizations(ctx: &mut Ctx, age: i32) {
    const FLU_PF: (&str, &str, &str) = (
        "140",
        "Influenza, seasonal, injectable, preservative free",
        "Influenzavaccine",
    );
    const FLU: (&str, &str, &str) = ("141", "Influenza, seasonal, injectable", "Influenzavaccine");
    const COVID: (&str, &str, &str) = (
        "208",
        "COVID-19, mRNA, LNP-S, PF, 30 mcg/0.3 mL dose",
        "COVID-19-vaccine",
    );
    const PNEUMO: (&str, &str, &str) = (
        "33",
        "pneumococcal polysaccharide vaccine, 23 valent",
        "Pneumokokvaccine",
    );

    let today = ctx.today;
    let first_year = date_of(today, WINDOW_START).year();
    let elderly = age >= 65;
    for year in first_year..=today.year() {
        let Some(autumn) = NaiveDate::from_ymd_opt(year, 10, 1) else {
            continue;
        };
        let flu_p = if elderly { 0.75 } else { 0.15 };
        if ctx.chance(flu_p) {
            let day = day_of(today, autumn) + ctx.int(0, 75);
            let vaccine = if ctx.chance(0.8) { FLU_PF } else { FLU };
            push_immunization(ctx, vaccine, day);
        }
        if year == 2021 && ctx.chance(0.85) {
            // Primary series: two doses three to six weeks apart.
            let Some(jan) = NaiveDate::from_ymd_opt(2021, 1, 15) else {
                continue;
            };
            let first = day_of(today, jan) + ctx.int(0, 160);
            push_immunization(ctx, COVID, first);
            let second = first + ctx.int(21, 42);
            push_immunization(ctx, COVID, second);
        }
        if year >= 2021 {
            let booster_p = match (elderly, year) {
                (true, 2021 | 2022) => 0.75,
                (true, _) => 0.6,
                (false, 2021) => 0.4,
                (false, 2022) => 0.2,
                (false, _) => 0.03,
            };
            if ctx.chance(booster_p)
                && let Some(sep) = NaiveDate::from_ymd_opt(year, 9, 15)
            {
                let day = day_of(today, sep) + ctx.int(0, 75);
                push_immunization(ctx, COVID, day);
            }
        }
    }
    if elderly && ctx.chance(0.35) {
        let day = ctx.int(WINDOW_START, LAST);
        push_immunization(ctx, PNEUMO, day);
    }
}

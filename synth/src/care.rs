//! The care timeline: check-ups, chronic follow-up, symptom visits, home monitoring and
//! admissions, with the measurements and laboratory reports of each.

use rand::Rng;

use crate::calendar::{Day, LAST, WINDOW_START, When};
use crate::context::{Ctx, Setting};
use crate::diagnoses::{Cond, Diagnoses, Dx};
use crate::encounters::{
    CLASS_AMB, CLASS_HH, CLASS_IMP, ENC_ADMISSION, ENC_CHECKUP, ENC_FOLLOWUP, ENC_HOME,
    ENC_SYMPTOM, EncounterType,
};
use crate::person::Person;
use crate::physiology::Physiology;
use crate::rng::pick;

pub(crate) fn plan_admissions(ctx: &mut Ctx, dx: &Diagnoses) -> Vec<Day> {
    let Some(hf) = dx.get(Cond::HeartFailure) else {
        return Vec::new();
    };
    let r = ctx.uniform(0.0, 1.0);
    let n = if r < 0.45 {
        0
    } else if r < 0.8 {
        1
    } else if r < 0.95 {
        2
    } else {
        3
    };
    let lo = (hf.onset + 30).max(WINDOW_START);
    let hi = -20;
    let mut days: Vec<Day> = (0..n)
        .filter(|_| lo < hi)
        .map(|_| ctx.int(lo, hi))
        .collect();
    days.sort_unstable();
    // Admissions closer than three weeks would overlap or be one stay.
    days.dedup_by(|b, a| *b - *a < 21);
    days
}

#[derive(Clone, Copy)]
pub(crate) enum Labs {
    None,
    Screening,
    Diabetic,
}

pub(crate) struct VisitPlan<'a> {
    pub(crate) kind: &'a EncounterType,
    pub(crate) reasons: &'a [String],
    pub(crate) hr: f64,
    pub(crate) weight: f64,
    pub(crate) labs: Labs,
}

pub(crate) fn gp_visit(ctx: &mut Ctx, phys: &Physiology, day: Day, plan: &VisitPlan) {
    let start = ctx.clinic_time(day);
    let length = *pick(&mut ctx.rng, &[15, 20, 30]);
    let end = When {
        day,
        minute: start.minute + length,
    };
    let gp = ctx.gp_ref.clone();
    let enc = ctx.push_encounter(CLASS_AMB, plan.kind, start, end, gp.clone(), plan.reasons);
    let setting = Setting {
        when: When {
            day,
            minute: start.minute + 5,
        },
        encounter: Some(enc),
        performer: Some(gp),
    };
    let (s, d) = phys.blood_pressure(ctx, day, true);
    ctx.obs_blood_pressure(&setting, s, d);
    if ctx.chance(plan.hr) {
        let hr = phys.heart_rate(ctx, day);
        ctx.obs_heart_rate(&setting, hr);
    }
    if ctx.chance(plan.weight) {
        let w = phys.weight(ctx, day, true);
        ctx.obs_weight(&setting, w);
    }
    match plan.labs {
        Labs::None => {}
        Labs::Screening => {
            let v = phys.hba1c(ctx, day);
            let a = ctx.obs_hba1c(&setting, v.round() as i64);
            ctx.push_report(&setting, &[a]);
        }
        Labs::Diabetic => {
            let v = phys.hba1c(ctx, day);
            let a = ctx.obs_hba1c(&setting, v.round() as i64);
            let g = Physiology::glucose(ctx, v);
            let b = ctx.obs_glucose(&setting, g);
            ctx.push_report(&setting, &[a, b]);
        }
    }
}

pub(crate) fn care(ctx: &mut Ctx, phys: &Physiology, person: &Person, dx: &Diagnoses) {
    let age = person.age;
    let chronic: Vec<&Dx> =
        dx.0.iter()
            .filter(|d| d.cond.is_chronic_programme())
            .collect();
    let first_chronic = chronic.iter().map(|d| d.onset).min();
    let dm = dx.has(Cond::Diabetes);
    let hf = dx.has(Cond::HeartFailure);
    let htn = dx.has(Cond::Hypertension);
    let screening = ctx.chance(if age >= 40 { 0.35 } else { 0.1 });

    // Yearly check-ups until the patient enters a chronic follow-up programme.
    let checkup_p = if age < 40 {
        0.25
    } else if age < 65 {
        0.45
    } else {
        0.65
    };
    for k in 0..5 {
        let lo = WINDOW_START + 365 * k;
        let hi = (lo + 364).min(LAST);
        if first_chronic.is_some_and(|f| hi >= f) || !ctx.chance(checkup_p) {
            continue;
        }
        let day = ctx.int(lo, hi);
        let plan = VisitPlan {
            kind: &ENC_CHECKUP,
            reasons: &[],
            hr: 0.7,
            weight: 0.5,
            labs: if screening {
                Labs::Screening
            } else {
                Labs::None
            },
        };
        gp_visit(ctx, phys, day, &plan);
    }

    // Chronic follow-up: diabetics and heart failure three times a year (HbA1c for diabetics),
    // other programmes every eight months or so.
    if let Some(first) = first_chronic {
        let (interval, jitter) = if dm {
            (120, 20)
        } else if hf {
            (120, 30)
        } else {
            (240, 60)
        };
        let mut day = first;
        let mut first_visit = true;
        while day <= LAST {
            let labs = if dm {
                Labs::Diabetic
            } else if screening && ctx.chance(0.5) {
                Labs::Screening
            } else {
                Labs::None
            };
            // Only conditions already diagnosed can be the reason for a visit.
            let reasons: Vec<String> = chronic
                .iter()
                .filter(|d| d.onset <= day)
                .map(|d| d.id.clone())
                .collect();
            let plan = VisitPlan {
                kind: if first_visit {
                    &ENC_SYMPTOM
                } else {
                    &ENC_FOLLOWUP
                },
                reasons: &reasons,
                hr: 0.6,
                weight: if hf {
                    1.0
                } else if dm {
                    0.7
                } else {
                    0.25
                },
                labs,
            };
            gp_visit(ctx, phys, day, &plan);
            first_visit = false;
            day += interval + ctx.int(-jitter, jitter);
        }
    }

    // Home blood-pressure monitoring: the long time series benchmarks care about.
    let bp_onset = [Cond::Hypertension, Cond::HeartFailure]
        .iter()
        .filter_map(|&c| dx.get(c).map(|d| d.onset))
        .min();
    if let Some(onset) = bp_onset
        && ctx.chance(0.75)
    {
        let heavy = ctx.chance(0.02);
        let span = ctx.int(365, 1095);
        let start = (LAST - span).max(onset - 14).max(WINDOW_START);
        let days = LAST - start + 1;
        let target = if heavy {
            ctx.int(200, 500)
        } else {
            let u = ctx.uniform(0.0, 1.0);
            30 + (100.0 * u * u * u) as i32
        };
        let cap = if heavy { days } else { days / 4 };
        let n = target.min(cap).max(1);
        let interval = f64::from(days) / f64::from(n);
        let hr_p = if dx.has(Cond::AtrialFibrillation) {
            0.5
        } else {
            0.1
        };
        let weight_p = if hf { 0.8 } else { 0.02 };
        let mut prev = start - 1;
        for k in 0..n {
            let base = f64::from(start) + (f64::from(k) + 0.5) * interval;
            let jitter = ctx.uniform(-0.35, 0.35) * interval;
            if prev >= LAST {
                break;
            }
            let day = ((base + jitter).round() as Day).clamp(prev + 1, LAST);
            prev = day;
            let setting = Setting {
                when: ctx.home_time(day),
                encounter: None,
                performer: None,
            };
            let (s, d) = phys.blood_pressure(ctx, day, false);
            ctx.obs_blood_pressure(&setting, s, d);
            if ctx.chance(hr_p) {
                let hr = phys.heart_rate(ctx, day);
                ctx.obs_heart_rate(&setting, hr);
            }
            if ctx.chance(weight_p) {
                let w = phys.weight(ctx, day, false);
                ctx.obs_weight(&setting, w);
            }
        }
    }

    // Municipal home nursing for frail heart-failure patients.
    if hf && age >= 75 && ctx.chance(0.4) {
        let mut day = LAST - ctx.int(180, 730);
        let muni = ctx.municipality_ref.clone();
        while day <= LAST {
            let start = When {
                day,
                minute: 8 * 60 + 15 * ctx.rng.gen_range(0..24),
            };
            let end = When {
                day,
                minute: start.minute + 30,
            };
            let reasons: Vec<String> = dx
                .get(Cond::HeartFailure)
                .map(|d| d.id.clone())
                .into_iter()
                .collect();
            let enc = ctx.push_encounter(CLASS_HH, &ENC_HOME, start, end, muni.clone(), &reasons);
            let setting = Setting {
                when: When {
                    day,
                    minute: start.minute + 10,
                },
                encounter: Some(enc),
                performer: Some(muni.clone()),
            };
            let w = phys.weight(ctx, day, false);
            ctx.obs_weight(&setting, w);
            if htn || ctx.chance(0.5) {
                let (s, d) = phys.blood_pressure(ctx, day, false);
                ctx.obs_blood_pressure(&setting, s, d);
            }
            day += ctx.int(14, 45);
        }
    }

    // Heart-failure admissions to the regional hospital.
    if let Some(hf_dx) = dx.get(Cond::HeartFailure) {
        let region = ctx.region_ref.clone();
        for &a in &phys.admissions {
            let start = When {
                day: a,
                minute: ctx.int(8 * 60, 22 * 60) as u32,
            };
            let end_day = (a + ctx.int(2, 12)).min(LAST);
            let end = When {
                day: end_day,
                minute: ctx.int(9 * 60, 15 * 60) as u32,
            };
            ctx.push_encounter(
                CLASS_IMP,
                &ENC_ADMISSION,
                start,
                end,
                region.clone(),
                std::slice::from_ref(&hf_dx.id),
            );
        }
    }

    // Acute consultations for everything else.
    let acute_p = if age < 40 {
        0.2
    } else if age < 70 {
        0.3
    } else {
        0.4
    };
    for _ in 0..5 {
        if !ctx.chance(acute_p) {
            continue;
        }
        let day = ctx.int(WINDOW_START, LAST);
        let start = ctx.clinic_time(day);
        let end = When {
            day,
            minute: start.minute + 15,
        };
        let gp = ctx.gp_ref.clone();
        ctx.push_encounter(CLASS_AMB, &ENC_SYMPTOM, start, end, gp, &[]);
    }
}

/// The vital signs the hospital takes at each heart-failure admission: blood pressure and
/// pulse within the hour of arrival, and again the next morning on the ward.
pub(crate) fn admission_vitals(ctx: &mut Ctx, phys: &Physiology) {
    let admissions: Vec<(String, u32)> = ctx
        .encounters
        .iter()
        .filter(|e| e["class"]["code"] == CLASS_IMP.0)
        .filter_map(|e| {
            let start = e["period"]["start"].as_str()?;
            let hours: u32 = start.get(11..13)?.parse().ok()?;
            let minutes: u32 = start.get(14..16)?.parse().ok()?;
            Some((e["id"].as_str()?.to_owned(), hours * 60 + minutes))
        })
        .collect();
    let region = ctx.region_ref.clone();
    for (&day, (encounter, arrival)) in phys.admissions.iter().zip(admissions) {
        let mut times = vec![When {
            day,
            minute: arrival + ctx.int(10, 50) as u32,
        }];
        if day < LAST {
            times.push(When {
                day: day + 1,
                minute: 7 * 60 + 15 * ctx.rng.gen_range(0..8),
            });
        }
        for when in times {
            let setting = Setting {
                when,
                encounter: Some(encounter.clone()),
                performer: Some(region.clone()),
            };
            let (s, d) = phys.blood_pressure(ctx, when.day, true);
            ctx.obs_blood_pressure(&setting, s, d);
            let hr = phys.heart_rate(ctx, when.day);
            ctx.obs_heart_rate(&setting, hr);
        }
    }
}

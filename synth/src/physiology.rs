//! Vitals and labs over time: blood pressure, heart rate, weight and glycaemia, each a
//! baseline with drift that responds to diagnoses, treatments and admissions.

use chrono::Datelike;

use crate::calendar::{Day, WINDOW_START, date_of};
use crate::context::Ctx;
use crate::diagnoses::{Cond, Diagnoses};
use crate::person::Person;
use crate::treatments::{Courses, METFORMIN};

pub(crate) struct Glycaemia {
    pub(crate) onset: Day,
    pub(crate) at_diagnosis: f64,
    pub(crate) target: f64,
    pub(crate) drift_per_year: f64,
    pub(crate) treated_from: Option<Day>,
    pub(crate) intensified: Vec<Day>,
}

pub(crate) struct Physiology {
    pub(crate) systolic0: f64,
    pub(crate) diastolic0: f64,
    pub(crate) bp_drift_per_year: f64,
    pub(crate) hr0: f64,
    pub(crate) hr_sd: f64,
    pub(crate) weight0: f64,
    pub(crate) weight_drift_per_year: f64,
    /// (start, end, steady-state effect)
    pub(crate) bp_drugs: Vec<(Day, Option<Day>, f64)>,
    pub(crate) hr_drugs: Vec<(Day, Option<Day>, f64)>,
    pub(crate) admissions: Vec<Day>,
    pub(crate) glycaemia: Option<Glycaemia>,
    pub(crate) hba1c0: f64,
}

pub(crate) fn ramp(day: Day, start: Day, end: Option<Day>, tau: f64) -> f64 {
    if day < start || end.is_some_and(|e| day >= e) {
        0.0
    } else {
        1.0 - (-(f64::from(day - start)) / tau).exp()
    }
}

impl Physiology {
    pub(crate) fn new(
        ctx: &mut Ctx,
        person: &Person,
        dx: &Diagnoses,
        courses: &Courses,
        admissions: Vec<Day>,
    ) -> Self {
        let htn = dx.has(Cond::Hypertension);
        let (systolic0, diastolic0) = if htn {
            (ctx.uniform(148.0, 172.0), ctx.uniform(88.0, 102.0))
        } else {
            let age_effect = 0.25 * f64::from((person.age - 30).max(0));
            (
                (112.0 + age_effect + ctx.uniform(-6.0, 8.0)).min(138.0),
                ctx.uniform(66.0, 84.0),
            )
        };
        let bp_drift_per_year = ctx.uniform(-0.5, 3.0);
        let af = dx.has(Cond::AtrialFibrillation);
        let hr0 = ctx.uniform(60.0, 80.0) + if af { 12.0 } else { 0.0 };
        let hr_sd = if af { 12.0 } else { 5.0 };
        let metabolic = if dx.has(Cond::Diabetes) || htn {
            8.0
        } else {
            0.0
        };
        let weight0 = if person.female {
            ctx.uniform(54.0, 92.0)
        } else {
            ctx.uniform(68.0, 108.0)
        } + metabolic;
        let weight_drift_per_year = ctx.uniform(-1.5, 1.0);

        let bp_drugs = courses
            .0
            .iter()
            .filter(|c| c.drug.bp_effect > 0.0)
            .map(|c| (c.start, c.end, c.drug.bp_effect * ctx.uniform(0.6, 1.3)))
            .collect();
        let hr_drugs = courses
            .0
            .iter()
            .filter(|c| c.drug.hr_effect > 0.0)
            .map(|c| (c.start, c.end, c.drug.hr_effect))
            .collect();

        let glycaemia = dx.get(Cond::Diabetes).map(|d| {
            let dm_courses = courses
                .0
                .iter()
                .filter(|c| dx.0[c.reason].cond == Cond::Diabetes);
            let mut treated_from = None;
            let mut intensified = Vec::new();
            for c in dm_courses {
                if c.drug.atc == METFORMIN.atc {
                    treated_from = Some(c.start);
                } else if c.drug.atc.starts_with("A10") {
                    intensified.push(c.start);
                }
            }
            Glycaemia {
                onset: d.onset,
                at_diagnosis: ctx.uniform(52.0, 90.0),
                target: ctx.uniform(46.0, 60.0),
                drift_per_year: ctx.uniform(0.0, 4.0),
                treated_from: treated_from.or(intensified.first().copied()),
                intensified,
            }
        });
        let hba1c0 = ctx.uniform(31.0, 40.0);

        Physiology {
            systolic0,
            diastolic0,
            bp_drift_per_year,
            hr0,
            hr_sd,
            weight0,
            weight_drift_per_year,
            bp_drugs,
            hr_drugs,
            admissions,
            glycaemia,
            hba1c0,
        }
    }

    pub(crate) fn years_in(day: Day) -> f64 {
        f64::from(day - WINDOW_START) / 365.25
    }

    pub(crate) fn blood_pressure(&self, ctx: &mut Ctx, day: Day, clinic: bool) -> (i64, i64) {
        let ordinal = f64::from(date_of(ctx.today, day).ordinal());
        // Blood pressure runs a few mmHg higher in winter.
        let season = (2.0 * std::f64::consts::PI * (ordinal - 15.0) / 365.25).cos();
        let treatment: f64 = self
            .bp_drugs
            .iter()
            .map(|&(s, e, eff)| eff * ramp(day, s, e, 30.0))
            .sum();
        let white_coat = if clinic { 5.0 } else { 0.0 };
        let drift = self.bp_drift_per_year * Physiology::years_in(day);
        let sys =
            self.systolic0 + drift + 3.5 * season - treatment + white_coat + 7.0 * ctx.normal();
        let dia = self.diastolic0 + 0.4 * drift + 2.0 * season - 0.55 * treatment
            + 0.6 * white_coat
            + 5.0 * ctx.normal();
        let sys = sys.round().clamp(110.0, 190.0);
        let dia = dia.round().clamp(60.0, 110.0).min(sys - 25.0);
        (sys as i64, dia as i64)
    }

    pub(crate) fn heart_rate(&self, ctx: &mut Ctx, day: Day) -> i64 {
        let beta: f64 = self
            .hr_drugs
            .iter()
            .map(|&(s, e, eff)| eff * ramp(day, s, e, 14.0))
            .sum();
        let hr = self.hr0 - beta + self.hr_sd * ctx.normal();
        hr.round().clamp(42.0, 150.0) as i64
    }

    pub(crate) fn weight(&self, ctx: &mut Ctx, day: Day, clinic: bool) -> f64 {
        // Fluid build-up in the two weeks before a heart-failure admission, which is exactly
        // what home weight monitoring is meant to catch.
        let mut fluid = 0.0;
        for &a in &self.admissions {
            if (a - 14..a).contains(&day) {
                fluid += 3.5 * f64::from(day - (a - 14)) / 14.0;
            }
        }
        let clothes = if clinic { 0.8 } else { 0.0 };
        self.weight0
            + self.weight_drift_per_year * Physiology::years_in(day)
            + fluid
            + clothes
            + 0.4 * ctx.normal()
    }

    pub(crate) fn hba1c(&self, ctx: &mut Ctx, day: Day) -> f64 {
        match &self.glycaemia {
            Some(g) => {
                let mut v = g.at_diagnosis;
                if let Some(t) = g.treated_from
                    && day >= t
                {
                    let since = f64::from(day - t);
                    v = g.target + (g.at_diagnosis - g.target) * (-since / 120.0).exp();
                    // Type 2 diabetes progresses; intensification pulls it back down.
                    v += g.drift_per_year * since / 365.25;
                    for &s in &g.intensified {
                        v -= 8.0 * ramp(day, s, None, 90.0);
                    }
                } else if day > g.onset {
                    v += g.drift_per_year * f64::from(day - g.onset) / 365.25;
                }
                (v + 3.0 * ctx.normal()).clamp(42.0, 95.0)
            }
            None => (self.hba1c0 + 0.3 * Physiology::years_in(day) + 1.5 * ctx.normal())
                .clamp(30.0, 42.0),
        }
    }

    /// Fasting plasma glucose consistent with the HbA1c (ADAG relation) plus day-to-day noise.
    pub(crate) fn glucose(ctx: &mut Ctx, hba1c: f64) -> f64 {
        let percent = hba1c / 10.929 + 2.15;
        let mean_glucose = 1.59 * percent - 2.59;
        (mean_glucose * ctx.uniform(0.8, 1.05) + 0.6 * ctx.normal()).clamp(4.0, 20.0)
    }
}

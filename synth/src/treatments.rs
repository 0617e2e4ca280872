//! The drug formulary (ATC-coded Danish products) and the courses of treatment diagnoses
//! lead to: first-line drugs, add-ons and switches, as MedicationRequests and
//! MedicationStatements.

use serde_json::{Map, Value, json};

use crate::calendar::{Day, LAST};
use crate::codes::SYS_ATC;
use crate::context::Ctx;
use crate::diagnoses::{Cond, Diagnoses};
use crate::fhir::coding;
use crate::rng::pick;

pub(crate) struct Drug {
    pub(crate) atc: &'static str,
    pub(crate) inn: &'static str,
    pub(crate) product: &'static str,
    pub(crate) dosage: &'static str,
    /// Steady-state systolic lowering in mmHg; drives the treated blood-pressure trend.
    pub(crate) bp_effect: f64,
    /// Steady-state heart-rate lowering in beats/min (beta blockers).
    pub(crate) hr_effect: f64,
}

pub(crate) const fn drug(
    atc: &'static str,
    inn: &'static str,
    product: &'static str,
    dosage: &'static str,
) -> Drug {
    Drug {
        atc,
        inn,
        product,
        dosage,
        bp_effect: 0.0,
        hr_effect: 0.0,
    }
}

pub(crate) const fn bp_drug(
    atc: &'static str,
    inn: &'static str,
    product: &'static str,
    dosage: &'static str,
    bp_effect: f64,
    hr_effect: f64,
) -> Drug {
    Drug {
        atc,
        inn,
        product,
        dosage,
        bp_effect,
        hr_effect,
    }
}

pub(crate) static METFORMIN: Drug = drug(
    "A10BA02",
    "metformin",
    "Metformin \"Teva\" 500 mg filmovertrukne tabletter",
    "1 tablet 2 gange dagligt",
);

pub(crate) static SITAGLIPTIN: Drug = drug(
    "A10BH01",
    "sitagliptin",
    "Januvia 100 mg filmovertrukne tabletter",
    "1 tablet dagligt",
);

pub(crate) static EMPAGLIFLOZIN: Drug = drug(
    "A10BK03",
    "empagliflozin",
    "Jardiance 10 mg filmovertrukne tabletter",
    "1 tablet dagligt",
);

pub(crate) static SEMAGLUTIDE: Drug = drug(
    "A10BJ06",
    "semaglutide",
    "Ozempic 1 mg injektionsvæske, opløsning i fyldt pen",
    "1 injektion ugentligt",
);

pub(crate) static INSULIN_GLARGINE: Drug = drug(
    "A10AE04",
    "insulin glargine",
    "Lantus 100 enheder/ml injektionsvæske, opløsning i fyldt pen",
    "Efter aftale, typisk 10-30 enheder subkutant til aften",
);

pub(crate) static AMLODIPINE: Drug = bp_drug(
    "C08CA01",
    "amlodipine",
    "Amlodipin \"Sandoz\" 5 mg tabletter",
    "1 tablet dagligt",
    11.0,
    0.0,
);

pub(crate) static RAMIPRIL: Drug = bp_drug(
    "C09AA05",
    "ramipril",
    "Ramipril \"Actavis\" 5 mg tabletter",
    "1 tablet dagligt",
    9.0,
    0.0,
);

pub(crate) static LOSARTAN: Drug = bp_drug(
    "C09CA01",
    "losartan",
    "Losartan \"Krka\" 50 mg filmovertrukne tabletter",
    "1 tablet dagligt",
    9.0,
    0.0,
);

pub(crate) static BENDROFLUMETHIAZIDE: Drug = bp_drug(
    "C03AB01",
    "bendroflumethiazide and potassium",
    "Centyl mite med kaliumklorid 1,25 mg/573 mg tabletter",
    "1 tablet om morgenen",
    8.0,
    0.0,
);

pub(crate) static FUROSEMIDE: Drug = bp_drug(
    "C03CA01",
    "furosemide",
    "Furix 40 mg tabletter",
    "1 tablet om morgenen",
    4.0,
    0.0,
);

pub(crate) static BISOPROLOL: Drug = bp_drug(
    "C07AB07",
    "bisoprolol",
    "Bisoprolol \"Sandoz\" 5 mg filmovertrukne tabletter",
    "1 tablet dagligt",
    6.0,
    11.0,
);

pub(crate) static METOPROLOL: Drug = bp_drug(
    "C07AB02",
    "metoprolol",
    "Selo-Zok 50 mg depottabletter",
    "1 depottablet dagligt",
    6.0,
    10.0,
);

pub(crate) static SPIRONOLACTONE: Drug = bp_drug(
    "C03DA01",
    "spironolactone",
    "Spiron 25 mg tabletter",
    "1 tablet dagligt",
    5.0,
    0.0,
);

pub(crate) static ATORVASTATIN: Drug = drug(
    "C10AA05",
    "atorvastatin",
    "Atorvastatin \"Krka\" 40 mg filmovertrukne tabletter",
    "1 tablet til natten",
);

pub(crate) static SIMVASTATIN: Drug = drug(
    "C10AA01",
    "simvastatin",
    "Simvastatin \"Bluefish\" 40 mg filmovertrukne tabletter",
    "1 tablet til natten",
);

pub(crate) static APIXABAN: Drug = drug(
    "B01AF02",
    "apixaban",
    "Eliquis 5 mg filmovertrukne tabletter",
    "1 tablet 2 gange dagligt",
);

pub(crate) static SALBUTAMOL: Drug = drug(
    "R03AC02",
    "salbutamol",
    "Ventoline 0,1 mg/dosis inhalationsspray",
    "1-2 pust ved behov, højst 4 gange dagligt",
);

pub(crate) static TIOTROPIUM: Drug = drug(
    "R03BB04",
    "tiotropium bromide",
    "Spiriva Respimat 2,5 mikrogram/dosis inhalationsvæske",
    "2 pust 1 gang dagligt",
);

pub(crate) static PARACETAMOL: Drug = drug(
    "N02BE01",
    "paracetamol",
    "Pamol 500 mg tabletter",
    "2 tabletter 3 gange dagligt efter behov",
);

pub(crate) static SERTRALINE: Drug = drug(
    "N06AB06",
    "sertraline",
    "Sertralin \"Bluefish\" 50 mg filmovertrukne tabletter",
    "1 tablet dagligt",
);

pub(crate) struct Course {
    pub(crate) drug: &'static Drug,
    /// Index into the patient's diagnoses.
    pub(crate) reason: usize,
    pub(crate) start: Day,
    pub(crate) end: Option<Day>,
    /// Ended early (side effects / switch) rather than running its planned course.
    pub(crate) stopped: bool,
}

pub(crate) struct Courses(pub(crate) Vec<Course>);

impl Courses {
    pub(crate) fn active_at(&self, day: Day, pred: impl Fn(&Drug) -> bool) -> bool {
        self.0
            .iter()
            .any(|c| pred(c.drug) && c.start <= day && c.end.is_none_or(|e| day < e))
    }

    /// Adds a course unless it would start in the future or duplicate a running course of the
    /// same substance; ends beyond `LAST` mean the course is still running.
    pub(crate) fn add(
        &mut self,
        drug: &'static Drug,
        reason: usize,
        start: Day,
        end: Option<Day>,
        stopped: bool,
    ) -> bool {
        if start > LAST || self.active_at(start, |d| d.atc == drug.atc) {
            return false;
        }
        let end = end.filter(|&e| e <= LAST && e > start);
        let stopped = stopped && end.is_some();
        self.0.push(Course {
            drug,
            reason,
            start,
            end,
            stopped,
        });
        true
    }
}

pub(crate) fn class_of(d: &Drug) -> &str {
    // ACE inhibitors and ARBs share C09, so both count as one class and are never combined.
    &d.atc[..3]
}

pub(crate) fn treatments(ctx: &mut Ctx, dx: &Diagnoses) -> Courses {
    let mut c = Courses(Vec::new());

    if let Some(i) = dx.index(Cond::Hypertension)
        && ctx.chance(0.88)
    {
        let onset = dx.0[i].onset;
        let s1 = onset + ctx.int(0, 60);
        let r = ctx.uniform(0.0, 1.0);
        let first: &'static Drug = if r < 0.35 {
            &AMLODIPINE
        } else if r < 0.65 {
            &RAMIPRIL
        } else if r < 0.9 {
            &LOSARTAN
        } else {
            &BENDROFLUMETHIAZIDE
        };
        if first.atc == RAMIPRIL.atc && ctx.chance(0.12) {
            // ACE-inhibitor cough: the classic switch to an ARB.
            let stop = s1 + ctx.int(20, 120);
            c.add(&RAMIPRIL, i, s1, Some(stop), true);
            c.add(&LOSARTAN, i, stop, None, false);
        } else {
            c.add(first, i, s1, None, false);
        }
        let mut s = s1;
        for p in [0.45, 0.33] {
            if !ctx.chance(p) {
                break;
            }
            s += ctx.int(90, 500);
            let options: [&'static Drug; 4] =
                [&AMLODIPINE, &LOSARTAN, &BENDROFLUMETHIAZIDE, &RAMIPRIL];
            let candidates: Vec<&'static Drug> = options
                .into_iter()
                .filter(|d| !c.active_at(s, |x| class_of(x) == class_of(d)))
                .collect();
            if candidates.is_empty() {
                break;
            }
            let d = *pick(&mut ctx.rng, &candidates);
            c.add(d, i, s, None, false);
        }
    }

    if let Some(i) = dx.index(Cond::HeartFailure) {
        let s = dx.0[i].onset + ctx.int(0, 30);
        if ctx.chance(0.9) {
            c.add(&FUROSEMIDE, i, s, None, false);
        }
        if ctx.chance(0.85) {
            let beta: &'static Drug = if ctx.chance(0.6) {
                &BISOPROLOL
            } else {
                &METOPROLOL
            };
            let start = s + ctx.int(0, 30);
            if !c.active_at(start, |d| class_of(d) == "C07") {
                c.add(beta, i, start, None, false);
            }
        }
        let start = s + ctx.int(0, 30);
        if !c.active_at(start, |d| class_of(d) == "C09") && ctx.chance(0.8) {
            let ras: &'static Drug = if ctx.chance(0.5) {
                &RAMIPRIL
            } else {
                &LOSARTAN
            };
            c.add(ras, i, start, None, false);
        }
        if ctx.chance(0.5) {
            let start = s + ctx.int(60, 400);
            c.add(&SPIRONOLACTONE, i, start, None, false);
        }
        if ctx.chance(0.3) {
            let start = s + ctx.int(30, 700);
            c.add(&EMPAGLIFLOZIN, i, start, None, false);
        }
    }

    if let Some(i) = dx.index(Cond::Diabetes) {
        let onset = dx.0[i].onset;
        if ctx.chance(0.9) {
            let s = onset + ctx.int(0, 30);
            if ctx.chance(0.06) {
                // Gastrointestinal intolerance is the usual reason metformin is stopped.
                let stop = s + ctx.int(14, 120);
                c.add(&METFORMIN, i, s, Some(stop), true);
            } else {
                c.add(&METFORMIN, i, s, None, false);
            }
        }
        if ctx.chance(0.45) {
            let r = ctx.uniform(0.0, 1.0);
            let d: &'static Drug = if r < 0.3 {
                &SITAGLIPTIN
            } else if r < 0.7 {
                &EMPAGLIFLOZIN
            } else {
                &SEMAGLUTIDE
            };
            let s = onset + ctx.int(180, 900);
            c.add(d, i, s, None, false);
        }
        if ctx.chance(0.12) {
            let s = onset + ctx.int(365, 1400);
            c.add(&INSULIN_GLARGINE, i, s, None, false);
        }
        if !dx.has(Cond::Hypercholesterolaemia) && ctx.chance(0.5) {
            let s = onset + ctx.int(30, 180);
            c.add(&ATORVASTATIN, i, s, None, false);
        }
    }

    if let Some(i) = dx.index(Cond::AtrialFibrillation) {
        let s = dx.0[i].onset + ctx.int(0, 14);
        if ctx.chance(0.85) {
            c.add(&APIXABAN, i, s, None, false);
        }
        if !c.active_at(s, |d| class_of(d) == "C07") && ctx.chance(0.7) {
            c.add(&BISOPROLOL, i, s, None, false);
        }
    }

    if let Some(i) = dx.index(Cond::Hypercholesterolaemia) {
        let s = dx.0[i].onset + ctx.int(0, 90);
        let r = ctx.uniform(0.0, 1.0);
        if r < 0.75 {
            c.add(&ATORVASTATIN, i, s, None, false);
        } else if r < 0.9 {
            c.add(&SIMVASTATIN, i, s, None, false);
        }
    }

    if let Some(i) = dx.index(Cond::Copd) {
        let s = dx.0[i].onset + ctx.int(0, 30);
        if ctx.chance(0.8) {
            c.add(&TIOTROPIUM, i, s, None, false);
        }
        if ctx.chance(0.9) {
            c.add(&SALBUTAMOL, i, s, None, false);
        }
    }

    if let Some(i) = dx.index(Cond::Asthma)
        && ctx.chance(0.9)
    {
        let s = dx.0[i].onset + ctx.int(0, 14);
        c.add(&SALBUTAMOL, i, s, None, false);
    }

    if let Some(i) = dx.index(Cond::Osteoarthritis)
        && ctx.chance(0.6)
    {
        // Pain relief comes and goes in flares.
        let mut s = dx.0[i].onset + ctx.int(0, 60);
        for _ in 0..ctx.int(1, 3) {
            let end = s + ctx.int(30, 180);
            c.add(&PARACETAMOL, i, s, Some(end), false);
            s = end + ctx.int(60, 365);
        }
    }

    if let Some(i) = dx.index(Cond::Depression)
        && ctx.chance(0.6)
    {
        let d = &dx.0[i];
        let s = d.onset + ctx.int(0, 30);
        let end = match d.abated {
            Some(a) => a + ctx.int(0, 60),
            None => s + ctx.int(180, 540),
        };
        c.add(&SERTRALINE, i, s, Some(end), false);
    }

    c
}

pub(crate) fn medication_resources(ctx: &mut Ctx, course: &Course, dx: &Diagnoses) {
    let d = course.drug;
    let med = json!({
        "coding": [coding(SYS_ATC, d.atc, d.inn)],
        "text": d.product
    });
    let reason = json!([Ctx::reference("Condition", &dx.0[course.reason].id)]);
    let (request_status, statement_status) = match (course.end, course.stopped) {
        (None, _) => ("active", "active"),
        (Some(_), true) => ("stopped", "completed"),
        (Some(_), false) => ("completed", "completed"),
    };

    let request_id = ctx.id();
    let request = json!({
        "resourceType": "MedicationRequest",
        "id": request_id,
        "status": request_status,
        "intent": "order",
        "medicationCodeableConcept": med.clone(),
        "subject": ctx.patient_ref.clone(),
        "authoredOn": ctx.date(course.start),
        "requester": ctx.gp_ref.clone(),
        "reasonReference": reason.clone(),
        "dosageInstruction": [{ "text": d.dosage }]
    });
    ctx.medications.push(request);

    let statement_id = ctx.id();
    let asserted = (course.start + ctx.int(0, 7)).min(LAST);
    let mut period = Map::with_capacity(2);
    period.insert("start".into(), ctx.date(course.start).into());
    if let Some(e) = course.end {
        period.insert("end".into(), ctx.date(e).into());
    }
    let statement = json!({
        "resourceType": "MedicationStatement",
        "id": statement_id,
        "basedOn": [Ctx::reference("MedicationRequest", &request_id)],
        "status": statement_status,
        "medicationCodeableConcept": med,
        "subject": ctx.patient_ref.clone(),
        "effectivePeriod": Value::Object(period),
        "dateAsserted": ctx.date(asserted),
        "informationSource": ctx.gp_ref.clone(),
        "reasonReference": reason,
        "dosage": [{ "text": d.dosage }]
    });
    ctx.medications.push(statement);
}

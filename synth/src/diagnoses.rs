//! Chronic conditions, drawn by age with correlated comorbidities, and their Condition
//! resources (SNOMED CT and ICD-10).

use serde_json::{Map, Value, json};

use crate::calendar::{Day, LAST, WINDOW_START};
use crate::codes::{
    SYS_CONDITION_CATEGORY, SYS_CONDITION_CLINICAL, SYS_CONDITION_VERIFICATION, SYS_ICD10,
    SYS_SNOMED,
};
use crate::context::Ctx;
use crate::fhir::coding;

pub(crate) struct ConditionDef {
    pub(crate) snomed: &'static str,
    pub(crate) snomed_display: &'static str,
    pub(crate) icd10: &'static str,
    pub(crate) icd10_display: &'static str,
    pub(crate) text: &'static str,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Cond {
    Hypertension,
    Hypercholesterolaemia,
    Diabetes,
    HeartFailure,
    AtrialFibrillation,
    Copd,
    Asthma,
    Osteoarthritis,
    Depression,
}

impl Cond {
    pub(crate) fn def(self) -> &'static ConditionDef {
        match self {
            Cond::Hypertension => &ConditionDef {
                snomed: "59621000",
                snomed_display: "Essential hypertension",
                icd10: "I10",
                icd10_display: "Essential (primary) hypertension",
                text: "Essentiel hypertension",
            },
            Cond::Hypercholesterolaemia => &ConditionDef {
                snomed: "13644009",
                snomed_display: "Hypercholesterolemia",
                icd10: "E78.0",
                icd10_display: "Pure hypercholesterolaemia",
                text: "Forhøjet kolesterol",
            },
            Cond::Diabetes => &ConditionDef {
                snomed: "44054006",
                snomed_display: "Diabetes mellitus type 2",
                icd10: "E11.9",
                icd10_display: "Type 2 diabetes mellitus without complications",
                text: "Type 2-diabetes",
            },
            Cond::HeartFailure => &ConditionDef {
                snomed: "84114007",
                snomed_display: "Heart failure",
                icd10: "I50.9",
                icd10_display: "Heart failure, unspecified",
                text: "Hjertesvigt",
            },
            Cond::AtrialFibrillation => &ConditionDef {
                snomed: "49436004",
                snomed_display: "Atrial fibrillation",
                icd10: "I48.9",
                icd10_display: "Atrial fibrillation and atrial flutter, unspecified",
                text: "Atrieflimren",
            },
            Cond::Copd => &ConditionDef {
                snomed: "13645005",
                snomed_display: "Chronic obstructive lung disease",
                icd10: "J44.9",
                icd10_display: "Chronic obstructive pulmonary disease, unspecified",
                text: "KOL (kronisk obstruktiv lungesygdom)",
            },
            Cond::Asthma => &ConditionDef {
                snomed: "195967001",
                snomed_display: "Asthma",
                icd10: "J45.9",
                icd10_display: "Asthma, unspecified",
                text: "Astma",
            },
            Cond::Osteoarthritis => &ConditionDef {
                snomed: "396275006",
                snomed_display: "Osteoarthritis",
                icd10: "M19.9",
                icd10_display: "Arthrosis, unspecified",
                text: "Slidgigt (artrose)",
            },
            Cond::Depression => &ConditionDef {
                snomed: "35489007",
                snomed_display: "Depressive disorder",
                icd10: "F32.9",
                icd10_display: "Depressive episode, unspecified",
                text: "Depression",
            },
        }
    }

    /// Conditions that put a patient on a scheduled GP follow-up programme in Denmark.
    pub(crate) fn is_chronic_programme(self) -> bool {
        matches!(
            self,
            Cond::Hypertension
                | Cond::Diabetes
                | Cond::HeartFailure
                | Cond::AtrialFibrillation
                | Cond::Copd
        )
    }
}

pub(crate) struct Dx {
    pub(crate) cond: Cond,
    pub(crate) id: String,
    pub(crate) onset: Day,
    pub(crate) abated: Option<Day>,
}

pub(crate) struct Diagnoses(pub(crate) Vec<Dx>);

impl Diagnoses {
    pub(crate) fn get(&self, cond: Cond) -> Option<&Dx> {
        self.0.iter().find(|d| d.cond == cond)
    }

    pub(crate) fn has(&self, cond: Cond) -> bool {
        self.get(cond).is_some()
    }

    pub(crate) fn index(&self, cond: Cond) -> Option<usize> {
        self.0.iter().position(|d| d.cond == cond)
    }
}

pub(crate) fn by_age(age: i32, bands: [f64; 4]) -> f64 {
    match age {
        ..40 => bands[0],
        40..60 => bands[1],
        60..75 => bands[2],
        _ => bands[3],
    }
}

pub(crate) fn diagnoses(ctx: &mut Ctx, age: i32) -> Diagnoses {
    // Drawn in dependency order so comorbidities can be correlated (diabetes and heart failure
    // make hypertension very likely, heart failure makes atrial fibrillation likely, ...).
    let hf = ctx.chance(by_age(age, [0.002, 0.015, 0.05, 0.12]));
    let dm = ctx.chance(by_age(age, [0.015, 0.07, 0.14, 0.17]));
    let htn = ctx.chance(if hf || dm {
        0.85
    } else {
        by_age(age, [0.04, 0.22, 0.42, 0.55])
    });
    let af = ctx.chance(if hf {
        0.35
    } else {
        by_age(age, [0.003, 0.02, 0.07, 0.14])
    });
    let copd = ctx.chance(by_age(age, [0.003, 0.03, 0.08, 0.10]));
    let asthma = ctx.chance(if copd {
        0.05
    } else {
        by_age(age, [0.08, 0.06, 0.05, 0.04])
    });
    let chol = ctx.chance(if dm || hf {
        0.5
    } else {
        by_age(age, [0.02, 0.12, 0.25, 0.25])
    });
    let oa = ctx.chance(by_age(age, [0.01, 0.10, 0.25, 0.35]));
    let dep = ctx.chance(if hf || copd { 0.15 } else { 0.07 });

    let present = [
        (Cond::Hypertension, htn),
        (Cond::Hypercholesterolaemia, chol),
        (Cond::Diabetes, dm),
        (Cond::HeartFailure, hf),
        (Cond::AtrialFibrillation, af),
        (Cond::Copd, copd),
        (Cond::Asthma, asthma),
        (Cond::Osteoarthritis, oa),
        (Cond::Depression, dep),
    ];
    let mut out = Vec::new();
    for (cond, yes) in present {
        if !yes {
            continue;
        }
        let onset = if cond.is_chronic_programme() {
            // Mostly prevalent disease (diagnosed over a year ago, so follow-up series have
            // time to build up), plus some new diagnoses.
            if ctx.chance(0.88) {
                ctx.int(WINDOW_START, -365)
            } else {
                ctx.int(-364, -30)
            }
        } else {
            ctx.int(WINDOW_START, -14)
        };
        let abated = if cond == Cond::Depression && ctx.chance(0.4) {
            Some(onset + ctx.int(120, 540)).filter(|&d| d <= LAST)
        } else {
            None
        };
        let id = ctx.id();
        let dx = Dx {
            cond,
            id,
            onset,
            abated,
        };
        let resource = condition_resource(ctx, &dx);
        ctx.conditions.push(resource);
        out.push(dx);
    }
    Diagnoses(out)
}

pub(crate) fn condition_resource(ctx: &mut Ctx, dx: &Dx) -> Value {
    let def = dx.cond.def();
    let (status, status_display) = if dx.abated.is_some() {
        ("resolved", "Resolved")
    } else {
        ("active", "Active")
    };
    let recorded = (dx.onset + ctx.int(0, 14)).min(LAST);
    let mut c = Map::with_capacity(12);
    c.insert("resourceType".into(), "Condition".into());
    c.insert("id".into(), dx.id.clone().into());
    c.insert(
        "clinicalStatus".into(),
        json!({ "coding": [coding(SYS_CONDITION_CLINICAL, status, status_display)] }),
    );
    c.insert(
        "verificationStatus".into(),
        json!({ "coding": [coding(SYS_CONDITION_VERIFICATION, "confirmed", "Confirmed")] }),
    );
    c.insert(
        "category".into(),
        json!([{ "coding": [coding(SYS_CONDITION_CATEGORY, "problem-list-item", "Problem List Item")] }]),
    );
    c.insert(
        "code".into(),
        json!({
            "coding": [
                coding(SYS_SNOMED, def.snomed, def.snomed_display),
                coding(SYS_ICD10, def.icd10, def.icd10_display)
            ],
            "text": def.text
        }),
    );
    c.insert("subject".into(), ctx.patient_ref.clone());
    c.insert("onsetDateTime".into(), ctx.date(dx.onset).into());
    if let Some(a) = dx.abated {
        c.insert("abatementDateTime".into(), ctx.date(a).into());
    }
    c.insert("recordedDate".into(), ctx.date(recorded).into());
    Value::Object(c)
}

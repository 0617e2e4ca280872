//! The per-patient generation context: the patient's RNG and references, the resources
//! generated so far, and the builders every domain pushes Encounters, Observations,
//! DiagnosticReports and Procedures with.

use chrono::{Datelike, NaiveDate};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};

use crate::calendar::{Day, When, danish_offset, date_of, fmt_date};
use crate::codes::{SYS_ACT_CODE, SYS_DIAGNOSTIC_SERVICE, SYS_DISCHARGE, SYS_LOINC, SYS_SNOMED};
use crate::encounters::EncounterType;
use crate::fhir::{coding, concept};
use crate::observations::{field, round1, set_quantity, templates};
use crate::rng::new_id;

/// Where and by whom an observation was recorded.
pub(crate) struct Setting {
    pub(crate) when: When,
    pub(crate) encounter: Option<String>,
    pub(crate) performer: Option<Value>,
}

pub(crate) struct Ctx {
    pub(crate) rng: ChaCha8Rng,
    pub(crate) index: u64,
    pub(crate) today: NaiveDate,
    pub(crate) patient_ref: Value,
    pub(crate) gp_ref: Value,
    pub(crate) region_ref: Value,
    pub(crate) municipality_ref: Value,
    pub(crate) conditions: Vec<Value>,
    pub(crate) allergies: Vec<Value>,
    pub(crate) encounters: Vec<Value>,
    pub(crate) observations: Vec<Value>,
    pub(crate) reports: Vec<Value>,
    pub(crate) medications: Vec<Value>,
    pub(crate) immunizations: Vec<Value>,
    pub(crate) procedures: Vec<Value>,
}

impl Ctx {
    pub(crate) fn id(&mut self) -> String {
        new_id(&mut self.rng, self.index)
    }

    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.rng.gen_bool(p.clamp(0.0, 1.0))
    }

    /// Inclusive integer range that tolerates empty ranges by returning the lower bound.
    pub(crate) fn int(&mut self, lo: i32, hi: i32) -> i32 {
        if hi <= lo {
            lo
        } else {
            self.rng.gen_range(lo..=hi)
        }
    }

    pub(crate) fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        if hi <= lo {
            lo
        } else {
            self.rng.gen_range(lo..hi)
        }
    }

    /// Approximately standard normal (Irwin–Hall with 4 terms); cheap and bounded, which keeps
    /// vitals free of absurd outliers.
    pub(crate) fn normal(&mut self) -> f64 {
        let s: f64 = (0..4).map(|_| self.rng.gen_range(0.0..1.0)).sum();
        (s - 2.0) * 3f64.sqrt()
    }

    pub(crate) fn date(&self, day: Day) -> String {
        fmt_date(date_of(self.today, day))
    }

    pub(crate) fn datetime(&self, w: When) -> String {
        let d = date_of(self.today, w.day);
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:00{}",
            d.year(),
            d.month(),
            d.day(),
            w.minute / 60,
            w.minute % 60,
            danish_offset(d)
        )
    }

    /// Clinic opening hours, in 15-minute booking slots from 08:00 to 15:45.
    pub(crate) fn clinic_time(&mut self, day: Day) -> When {
        When {
            day,
            minute: 8 * 60 + 15 * self.rng.gen_range(0..32),
        }
    }

    /// Home measurements cluster in the morning and the evening.
    pub(crate) fn home_time(&mut self, day: Day) -> When {
        let minute = if self.rng.gen_bool(0.6) {
            self.rng.gen_range(6 * 60 + 30..8 * 60 + 30)
        } else {
            self.rng.gen_range(19 * 60..21 * 60 + 30)
        };
        When { day, minute }
    }

    pub(crate) fn reference(kind: &str, id: &str) -> Value {
        json!({ "reference": format!("{kind}/{id}") })
    }

    pub(crate) fn push_encounter(
        &mut self,
        class: (&str, &str),
        kind: &EncounterType,
        start: When,
        end: When,
        provider: Value,
        reasons: &[String],
    ) -> String {
        let id = self.id();
        let mut e = Map::with_capacity(11);
        e.insert("resourceType".into(), "Encounter".into());
        e.insert("id".into(), id.clone().into());
        e.insert("status".into(), "finished".into());
        e.insert(
            "class".into(),
            json!({ "system": SYS_ACT_CODE, "code": class.0, "display": class.1 }),
        );
        e.insert(
            "type".into(),
            json!([concept(SYS_SNOMED, kind.code, kind.display, kind.text)]),
        );
        e.insert("subject".into(), self.patient_ref.clone());
        e.insert(
            "period".into(),
            json!({ "start": self.datetime(start), "end": self.datetime(end) }),
        );
        if !reasons.is_empty() {
            let r: Vec<Value> = reasons
                .iter()
                .map(|c| Ctx::reference("Condition", c))
                .collect();
            e.insert("reasonReference".into(), Value::Array(r));
        }
        if class.0 == "IMP" {
            e.insert(
                "hospitalization".into(),
                json!({ "dischargeDisposition": { "coding": [coding(SYS_DISCHARGE, "home", "Home")] } }),
            );
        }
        e.insert("serviceProvider".into(), provider);
        self.encounters.push(Value::Object(e));
        id
    }

    /// Clones the prebuilt template for this observation kind and fills in the per-instance
    /// fields; building each observation from scratch with `json!` spent most of the time
    /// hashing and inserting the same constant keys.
    pub(crate) fn push_observation(
        &mut self,
        template: &Value,
        setting: &Setting,
        fill: impl FnOnce(&mut Value),
    ) -> String {
        let id = self.id();
        let mut v = template.clone();
        *field(&mut v, "id") = Value::String(id.clone());
        *field(&mut v, "subject") = self.patient_ref.clone();
        *field(&mut v, "effectiveDateTime") = Value::String(self.datetime(setting.when));
        fill(&mut v);
        if let Value::Object(o) = &mut v {
            if let Some(enc) = &setting.encounter {
                o.insert("encounter".into(), Ctx::reference("Encounter", enc));
            }
            if let Some(p) = &setting.performer {
                o.insert("performer".into(), Value::Array(vec![p.clone()]));
            }
        }
        self.observations.push(v);
        id
    }

    pub(crate) fn obs_blood_pressure(
        &mut self,
        setting: &Setting,
        systolic: i64,
        diastolic: i64,
    ) -> String {
        self.push_observation(&templates().blood_pressure, setting, |v| {
            let components = field(v, "component");
            *field(field(&mut components[0], "valueQuantity"), "value") = systolic.into();
            *field(field(&mut components[1], "valueQuantity"), "value") = diastolic.into();
        })
    }

    pub(crate) fn obs_heart_rate(&mut self, setting: &Setting, bpm: i64) -> String {
        self.push_observation(&templates().heart_rate, setting, |v| {
            set_quantity(v, bpm.into())
        })
    }

    pub(crate) fn obs_weight(&mut self, setting: &Setting, kg: f64) -> String {
        self.push_observation(&templates().weight, setting, |v| {
            set_quantity(v, round1(kg).into())
        })
    }

    pub(crate) fn obs_hba1c(&mut self, setting: &Setting, mmol_per_mol: i64) -> String {
        self.push_observation(&templates().hba1c, setting, |v| {
            set_quantity(v, mmol_per_mol.into())
        })
    }

    pub(crate) fn obs_glucose(&mut self, setting: &Setting, mmol_per_l: f64) -> String {
        self.push_observation(&templates().glucose, setting, |v| {
            set_quantity(v, round1(mmol_per_l).into())
        })
    }

    pub(crate) fn push_report(&mut self, setting: &Setting, results: &[String]) {
        let id = self.id();
        let mut r = Map::with_capacity(11);
        r.insert("resourceType".into(), "DiagnosticReport".into());
        r.insert("id".into(), id.into());
        r.insert("status".into(), "final".into());
        r.insert(
            "category".into(),
            json!([{ "coding": [coding(SYS_DIAGNOSTIC_SERVICE, "LAB", "Laboratory")] }]),
        );
        r.insert(
            "code".into(),
            concept(SYS_LOINC, "11502-2", "Laboratory report", "Laboratoriesvar"),
        );
        r.insert("subject".into(), self.patient_ref.clone());
        if let Some(enc) = &setting.encounter {
            r.insert("encounter".into(), Ctx::reference("Encounter", enc));
        }
        r.insert(
            "effectiveDateTime".into(),
            self.datetime(setting.when).into(),
        );
        // Samples are analysed by the regional hospital laboratory; the answer arrives the same
        // afternoon (samples are taken no later than 16:00, so this stays on the same day).
        let issued = When {
            day: setting.when.day,
            minute: setting.when.minute + 180,
        };
        r.insert("issued".into(), self.datetime(issued).into());
        r.insert("performer".into(), json!([self.region_ref.clone()]));
        let refs: Vec<Value> = results
            .iter()
            .map(|o| Ctx::reference("Observation", o))
            .collect();
        r.insert("result".into(), Value::Array(refs));
        self.reports.push(Value::Object(r));
    }

    pub(crate) fn push_procedure(
        &mut self,
        (code, display, text): (&str, &str, &str),
        when: When,
        performer: Value,
        reason: Option<&str>,
    ) {
        let id = self.id();
        let mut p = Map::with_capacity(9);
        p.insert("resourceType".into(), "Procedure".into());
        p.insert("id".into(), id.into());
        p.insert("status".into(), "completed".into());
        p.insert("code".into(), concept(SYS_SNOMED, code, display, text));
        p.insert("subject".into(), self.patient_ref.clone());
        p.insert("performedDateTime".into(), self.datetime(when).into());
        p.insert("performer".into(), json!([{ "actor": performer }]));
        if let Some(c) = reason {
            p.insert(
                "reasonReference".into(),
                json!([Ctx::reference("Condition", c)]),
            );
        }
        self.procedures.push(Value::Object(p));
    }
}

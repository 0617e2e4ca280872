//! Prebuilt Observation skeletons, cloned and filled per measurement: building each from
//! scratch with `json!` spent most of the time hashing and inserting the same constant keys.

use serde_json::{Map, Value, json};

use crate::codes::{SYS_LOINC, SYS_NPU, SYS_OBS_CATEGORY};
use crate::fhir::{coding, concept, quantity};

pub(crate) fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Prebuilt observation skeletons, shared by all patients and threads.
pub(crate) struct Templates {
    pub(crate) blood_pressure: Value,
    pub(crate) heart_rate: Value,
    pub(crate) weight: Value,
    pub(crate) hba1c: Value,
    pub(crate) glucose: Value,
}

pub(crate) fn observation_template(
    category: &str,
    code: Value,
    value_key: &str,
    value: Value,
) -> Value {
    let category_display = if category == "laboratory" {
        "Laboratory"
    } else {
        "Vital Signs"
    };
    let mut o = Map::with_capacity(11);
    o.insert("resourceType".into(), "Observation".into());
    o.insert("id".into(), Value::Null);
    o.insert("status".into(), "final".into());
    o.insert(
        "category".into(),
        json!([{ "coding": [coding(SYS_OBS_CATEGORY, category, category_display)] }]),
    );
    o.insert("code".into(), code);
    o.insert("subject".into(), Value::Null);
    o.insert("effectiveDateTime".into(), Value::Null);
    o.insert(value_key.into(), value);
    Value::Object(o)
}

pub(crate) fn templates() -> &'static Templates {
    static TEMPLATES: std::sync::OnceLock<Templates> = std::sync::OnceLock::new();
    TEMPLATES.get_or_init(|| {
        let bp_code = json!({
            "coding": [coding(SYS_LOINC, "85354-9", "Blood pressure panel with all children optional")],
            "text": "Blodtryk"
        });
        let components = json!([
            {
                "code": { "coding": [coding(SYS_LOINC, "8480-6", "Systolic blood pressure")] },
                "valueQuantity": quantity(Value::Null, "mmHg", "mm[Hg]")
            },
            {
                "code": { "coding": [coding(SYS_LOINC, "8462-4", "Diastolic blood pressure")] },
                "valueQuantity": quantity(Value::Null, "mmHg", "mm[Hg]")
            }
        ]);
        let hba1c_code = json!({
            "coding": [
                coding(SYS_LOINC, "59261-8", "Hemoglobin A1c/Hemoglobin.total in Blood by IFCC protocol"),
                { "system": SYS_NPU, "code": "NPU27300" }
            ],
            "text": "HbA1c"
        });
        // LOINC 2345-7 is formally a mass concentration, but it is the code the project's
        // conventions prescribe; the NPU code alongside carries the mmol/L meaning Danish
        // laboratories report.
        let glucose_code = json!({
            "coding": [
                coding(SYS_LOINC, "2345-7", "Glucose [Mass/volume] in Serum or Plasma"),
                { "system": SYS_NPU, "code": "NPU02192" }
            ],
            "text": "Glukose (plasma)"
        });
        Templates {
            blood_pressure: observation_template("vital-signs", bp_code, "component", components),
            heart_rate: observation_template(
                "vital-signs",
                concept(SYS_LOINC, "8867-4", "Heart rate", "Puls"),
                "valueQuantity",
                quantity(Value::Null, "/min", "/min"),
            ),
            weight: observation_template(
                "vital-signs",
                concept(SYS_LOINC, "29463-7", "Body weight", "Vægt"),
                "valueQuantity",
                quantity(Value::Null, "kg", "kg"),
            ),
            hba1c: observation_template(
                "laboratory",
                hba1c_code,
                "valueQuantity",
                quantity(Value::Null, "mmol/mol", "mmol/mol"),
            ),
            glucose: observation_template(
                "laboratory",
                glucose_code,
                "valueQuantity",
                quantity(Value::Null, "mmol/L", "mmol/L"),
            ),
        }
    })
}

/// A field that the template is known to contain.
pub(crate) fn field<'a>(v: &'a mut Value, key: &str) -> &'a mut Value {
    v.as_object_mut()
        .and_then(|o| o.get_mut(key))
        .expect("observation template field")
}

pub(crate) fn set_quantity(v: &mut Value, value: Value) {
    *field(field(v, "valueQuantity"), "value") = value;
}

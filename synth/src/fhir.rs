//! Builders of FHIR datatypes: Coding, CodeableConcept, Quantity.

use serde_json::{Value, json};

use crate::codes::SYS_UCUM;

pub(crate) fn coding(system: &str, code: &str, display: &str) -> Value {
    json!({ "system": system, "code": code, "display": display })
}

pub(crate) fn concept(system: &str, code: &str, display: &str, text: &str) -> Value {
    json!({ "coding": [coding(system, code, display)], "text": text })
}

pub(crate) fn quantity(value: Value, unit: &str, code: &str) -> Value {
    json!({ "value": value, "unit": unit, "system": SYS_UCUM, "code": code })
}

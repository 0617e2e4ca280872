//! The overview's content, built from FHIR resources. Plain Rust, tested natively.

use healthcloud_sdk::clock::Date;
use healthcloud_sdk::model::{MedicationStatement, Observation, code};
use serde::Serialize;

/// The usual treatment target for HbA1c in type 2 diabetes (Danish guidelines): results
/// above it are marked. Individual targets differ; the clinician decides.
pub const HBA1C_TARGET: f64 = 53.0;
/// The unit HbA1c is reported in by Danish laboratories (IFCC).
pub const HBA1C_UNIT: &str = "mmol/mol";

/// One laboratory result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabValue {
    /// The day of the sample, `YYYY-MM-DD`.
    pub date: String,
    /// When the sample was taken, as recorded (a FHIR dateTime).
    pub effective: String,
    /// The value, in `unit`.
    pub value: f64,
    /// The unit as reported, e.g. `mmol/mol` or `mmol/L`.
    pub unit: String,
}

impl LabValue {
    /// The result of an observation with a quantity value and a date.
    pub fn from_observation(observation: &Observation) -> Option<LabValue> {
        let effective = observation.effective()?;
        let date = Date::from_fhir(effective)?;
        let quantity = observation.value_quantity.as_ref()?;
        Some(LabValue {
            date: date.to_string(),
            effective: effective.to_owned(),
            value: quantity.value_f64()?,
            unit: quantity
                .unit
                .clone()
                .or_else(|| quantity.code.clone())
                .unwrap_or_default(),
        })
    }
}

/// One HbA1c result with its reading against the target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hba1c {
    /// The result.
    #[serde(flatten)]
    pub result: LabValue,
    /// Above [`HBA1C_TARGET`]; only judged for results in mmol/mol.
    pub above_target: bool,
    /// The change since the previous result, in the same unit, when both are in mmol/mol.
    pub change: Option<f64>,
}

/// A diabetes medicine the patient currently takes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Medication {
    /// The ATC code (A10…).
    pub atc: String,
    /// The product or substance.
    pub name: String,
    /// How it is taken.
    pub dosage: Option<String>,
    /// Since when.
    pub since: Option<String>,
}

impl Medication {
    /// The statement's medication if it is current and a diabetes drug (ATC A10…).
    pub fn diabetes_drug(statement: &MedicationStatement) -> Option<Medication> {
        let atc = statement.atc_code()?;
        if !statement.is_active() || !atc.starts_with(code::ATC_DIABETES) {
            return None;
        }
        let concept = statement.medication_codeable_concept.as_ref()?;
        Some(Medication {
            atc: atc.to_owned(),
            name: concept.label().unwrap_or(atc).to_owned(),
            dosage: statement.dosage.iter().find_map(|d| d.text.clone()),
            since: statement
                .started()
                .and_then(Date::from_fhir)
                .map(|d| d.to_string()),
        })
    }
}

/// Everything the overview shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// The patient's id.
    pub patient: String,
    /// HbA1c results, newest first.
    pub hba1c: Vec<Hba1c>,
    /// The newest plasma glucose.
    pub glucose: Option<LabValue>,
    /// Current diabetes medication.
    pub medications: Vec<Medication>,
}

impl Summary {
    /// Builds the overview from HbA1c observations (newest first), the newest glucose
    /// observation and the patient's active medication statements.
    pub fn new(
        patient: String,
        hba1c: &[Observation],
        glucose: Option<&Observation>,
        statements: &[MedicationStatement],
    ) -> Summary {
        let results: Vec<LabValue> = hba1c
            .iter()
            .filter_map(LabValue::from_observation)
            .collect();
        let in_mmol_per_mol = |r: &LabValue| r.unit == HBA1C_UNIT;
        let hba1c = results
            .iter()
            .enumerate()
            .map(|(i, result)| Hba1c {
                result: result.clone(),
                above_target: in_mmol_per_mol(result) && result.value > HBA1C_TARGET,
                change: results
                    .get(i + 1)
                    .filter(|previous| in_mmol_per_mol(previous) && in_mmol_per_mol(result))
                    .map(|previous| result.value - previous.value),
            })
            .collect();
        let mut medications: Vec<Medication> = statements
            .iter()
            .filter_map(Medication::diabetes_drug)
            .collect();
        medications.sort_by(|a, b| a.atc.cmp(&b.atc));
        Summary {
            patient,
            hba1c,
            glucose: glucose.and_then(LabValue::from_observation),
            medications,
        }
    }

    /// The newest HbA1c.
    pub fn latest_hba1c(&self) -> Option<&Hba1c> {
        self.hba1c.first()
    }
}

#[cfg(test)]
mod tests {
    use healthcloud_sdk::model::{CodeableConcept, Coding, Dosage, Period, Quantity, system};

    use super::*;

    fn lab(date: &str, value: f64, unit: &str) -> Observation {
        Observation {
            status: "final".into(),
            code: CodeableConcept::coded(system::LOINC, code::HBA1C, "HbA1c", "HbA1c"),
            effective_date_time: Some(format!("{date}T09:00:00+01:00")),
            value_quantity: Some(Quantity {
                value: serde_json::Number::from_f64(value),
                unit: Some(unit.into()),
                ..Quantity::default()
            }),
            ..Observation::default()
        }
    }

    fn statement(atc: &str, status: &str) -> MedicationStatement {
        MedicationStatement {
            status: status.into(),
            medication_codeable_concept: Some(CodeableConcept {
                coding: vec![Coding::new(system::ATC, atc, "x")],
                text: Some(format!("Product {atc}")),
            }),
            effective_period: Some(Period {
                start: Some("2024-03-01".into()),
                end: None,
            }),
            dosage: vec![Dosage {
                text: Some("1 tablet daily".into()),
            }],
            ..MedicationStatement::default()
        }
    }

    #[test]
    fn hba1c_is_judged_against_the_target_with_the_change() {
        let summary = Summary::new(
            "p1".into(),
            &[
                lab("2026-10-01", 58.0, "mmol/mol"),
                lab("2026-04-01", 52.0, "mmol/mol"),
                lab("2025-10-01", 7.1, "%"),
            ],
            None,
            &[],
        );
        let latest = summary.latest_hba1c().unwrap();
        assert!(latest.above_target);
        assert_eq!(latest.change, Some(6.0));
        assert!(!summary.hba1c[1].above_target);
        // Units other than mmol/mol are shown as they are, but neither judged nor compared.
        assert_eq!(summary.hba1c[1].change, None);
        assert!(!summary.hba1c[2].above_target);
    }

    #[test]
    fn only_current_a10_medication_is_listed() {
        let summary = Summary::new(
            "p1".into(),
            &[],
            None,
            &[
                statement("C09AA05", "active"),
                statement("A10BA02", "active"),
                statement("A10BH01", "completed"),
                statement("A10AE04", "active"),
            ],
        );
        let atcs: Vec<_> = summary.medications.iter().map(|m| m.atc.as_str()).collect();
        assert_eq!(atcs, ["A10AE04", "A10BA02"]);
        assert_eq!(summary.medications[0].since.as_deref(), Some("2024-03-01"));
        assert_eq!(
            summary.medications[0].dosage.as_deref(),
            Some("1 tablet daily")
        );
    }

    #[test]
    fn json_keys_are_stable() {
        let summary = Summary::new(
            "p1".into(),
            &[lab("2026-10-01", 58.0, "mmol/mol")],
            None,
            &[],
        );
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["hba1c"][0]["value"], 58.0);
        assert_eq!(json["hba1c"][0]["date"], "2026-10-01");
        assert_eq!(json["hba1c"][0]["above_target"], true);
        assert!(json["glucose"].is_null());
    }
}

//! The overview's content, built from FHIR resources. Plain Rust, tested natively.
//!
//! Each section (the HbA1c results, the latest glucose, the medication) is read with its own
//! FHIR search and stands on its own: a section the platform denies or cannot reach is shown
//! as such while the others are still shown. Only when every section is withheld does the
//! overview as a whole fail.

use healthcloud_sdk::clock::Date;
use healthcloud_sdk::fhir::{self, Section};
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
    pub hba1c: Section<Vec<Hba1c>>,
    /// The newest plasma glucose.
    pub glucose: Section<Option<LabValue>>,
    /// Current diabetes medication.
    pub medications: Section<Vec<Medication>>,
}

impl Summary {
    /// Builds the overview from the results of its three FHIR searches: the HbA1c
    /// observations (newest first), the newest glucose observation and the patient's active
    /// medication statements.
    ///
    /// A search that was denied or found the data unavailable withholds its section only.
    /// The overview fails when any search failed otherwise (that error), or when every
    /// section is withheld (the first one's error: a patient who opted the app out denies
    /// all of them).
    pub fn new(
        patient: String,
        hba1c: Result<Vec<Observation>, fhir::Error>,
        glucose: Result<Option<Observation>, fhir::Error>,
        statements: Result<Vec<MedicationStatement>, fhir::Error>,
    ) -> Result<Summary, fhir::Error> {
        let hba1c = Section::from_result(hba1c)?;
        let glucose = Section::from_result(glucose)?;
        let statements = Section::from_result(statements)?;
        if let (Some(first), Some(_), Some(_)) =
            (hba1c.withheld(), glucose.withheld(), statements.withheld())
        {
            return Err(first.clone().into());
        }
        Ok(Summary {
            patient,
            hba1c: hba1c.map(|observations| hba1c_results(&observations)),
            glucose: glucose.map(|glucose| glucose.as_ref().and_then(LabValue::from_observation)),
            medications: statements.map(|statements| diabetes_medication(&statements)),
        })
    }

    /// The newest HbA1c, or why the HbA1c results were not read.
    pub fn latest_hba1c(&self) -> Section<Option<&Hba1c>> {
        self.hba1c.as_ref().map(|results| results.first())
    }
}

/// The HbA1c results of the observations (newest first), judged and compared.
fn hba1c_results(observations: &[Observation]) -> Vec<Hba1c> {
    let results: Vec<LabValue> = observations
        .iter()
        .filter_map(LabValue::from_observation)
        .collect();
    let in_mmol_per_mol = |r: &LabValue| r.unit == HBA1C_UNIT;
    results
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
        .collect()
}

/// The current diabetes medication among the statements, by ATC code.
fn diabetes_medication(statements: &[MedicationStatement]) -> Vec<Medication> {
    let mut medications: Vec<Medication> = statements
        .iter()
        .filter_map(Medication::diabetes_drug)
        .collect();
    medications.sort_by(|a, b| a.atc.cmp(&b.atc));
    medications
}

#[cfg(test)]
mod tests {
    use healthcloud_sdk::fhir::Withheld;
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
            Ok(vec![
                lab("2026-10-01", 58.0, "mmol/mol"),
                lab("2026-04-01", 52.0, "mmol/mol"),
                lab("2025-10-01", 7.1, "%"),
            ]),
            Ok(None),
            Ok(vec![]),
        )
        .unwrap();
        let latest = summary.latest_hba1c().read().copied().flatten().unwrap();
        assert!(latest.above_target);
        assert_eq!(latest.change, Some(6.0));
        let hba1c = summary.hba1c.read().unwrap();
        assert!(!hba1c[1].above_target);
        // Units other than mmol/mol are shown as they are, but neither judged nor compared.
        assert_eq!(hba1c[1].change, None);
        assert!(!hba1c[2].above_target);
    }

    #[test]
    fn only_current_a10_medication_is_listed() {
        let summary = Summary::new(
            "p1".into(),
            Ok(vec![]),
            Ok(None),
            Ok(vec![
                statement("C09AA05", "active"),
                statement("A10BA02", "active"),
                statement("A10BH01", "completed"),
                statement("A10AE04", "active"),
            ]),
        )
        .unwrap();
        let medications = summary.medications.read().unwrap();
        let atcs: Vec<_> = medications.iter().map(|m| m.atc.as_str()).collect();
        assert_eq!(atcs, ["A10AE04", "A10BA02"]);
        assert_eq!(medications[0].since.as_deref(), Some("2024-03-01"));
        assert_eq!(medications[0].dosage.as_deref(), Some("1 tablet daily"));
    }

    #[test]
    fn json_keys_are_stable() {
        let summary = Summary::new(
            "p1".into(),
            Ok(vec![lab("2026-10-01", 58.0, "mmol/mol")]),
            Ok(None),
            Ok(vec![]),
        )
        .unwrap();
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["hba1c"][0]["value"], 58.0);
        assert_eq!(json["hba1c"][0]["date"], "2026-10-01");
        assert_eq!(json["hba1c"][0]["above_target"], true);
        assert!(json["glucose"].is_null());
        assert_eq!(json["medications"], serde_json::json!([]));
    }

    const NO_MEDICATION: &str =
        "the region has not granted this app search-type of MedicationStatement";

    #[test]
    fn a_denied_section_is_withheld_and_the_others_still_read() {
        let summary = Summary::new(
            "p1".into(),
            Ok(vec![lab("2026-10-01", 58.0, "mmol/mol")]),
            Ok(Some(lab("2026-10-01", 7.4, "mmol/L"))),
            Err(fhir::Error::Denied(NO_MEDICATION.into())),
        )
        .unwrap();
        assert_eq!(summary.hba1c.read().unwrap().len(), 1);
        assert_eq!(summary.glucose.read().unwrap().as_ref().unwrap().value, 7.4);
        assert_eq!(
            summary.medications,
            Section::Withheld(Withheld::Denied(NO_MEDICATION.into()))
        );
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(
            json["medications"],
            serde_json::json!({ "denied": NO_MEDICATION })
        );
        assert_eq!(json["hba1c"][0]["value"], 58.0);
        assert_eq!(json["glucose"]["unit"], "mmol/L");
    }

    #[test]
    fn unavailable_data_is_withheld_too() {
        let summary = Summary::new(
            "p1".into(),
            Err(fhir::Error::Unavailable("store timeout".into())),
            Ok(None),
            Ok(vec![]),
        )
        .unwrap();
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(
            json["hba1c"],
            serde_json::json!({ "unavailable": "store timeout" })
        );
        assert_eq!(
            summary.latest_hba1c(),
            Section::Withheld(Withheld::Unavailable("store timeout".into()))
        );
        assert!(json["glucose"].is_null());
    }

    #[test]
    fn every_section_withheld_fails_with_the_first_denial() {
        fn denied<T>(what: &str) -> Result<T, fhir::Error> {
            Err(fhir::Error::Denied(format!(
                "the patient opted out ({what})"
            )))
        }
        let result = Summary::new(
            "p1".into(),
            denied("hba1c"),
            denied("glucose"),
            denied("med"),
        );
        assert_eq!(
            result,
            Err(fhir::Error::Denied("the patient opted out (hba1c)".into()))
        );
    }

    #[test]
    fn other_errors_fail_the_whole_overview() {
        let result = Summary::new(
            "p1".into(),
            Ok(vec![]),
            Err(fhir::Error::Invalid("unknown search parameter".into())),
            Err(fhir::Error::Denied(NO_MEDICATION.into())),
        );
        assert_eq!(
            result,
            Err(fhir::Error::Invalid("unknown search parameter".into()))
        );
    }
}

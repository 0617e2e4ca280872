//! A minimal hand-written FHIR R4 model: the resources and data types the example apps
//! need, nothing more.
//!
//! Decoding is tolerant: unknown elements are ignored, and every element may be missing
//! (elements FHIR requires decode to their empty value when absent). Encoding is valid FHIR
//! JSON: absent elements and empty lists are left out (FHIR forbids `null` and `[]`), and
//! each resource writes its `resourceType`. Decimals keep the precision they were written
//! with (`142` stays `142`, `7.0` stays `7.0`), as FHIR decimals must.
//!
//! ```
//! use healthcloud_sdk::model::{Observation, code, system};
//!
//! let reading = Observation::blood_pressure("p1", 142, 91, "2026-10-30T08:12:00+01:00");
//! assert!(reading.has_code(system::LOINC, code::BLOOD_PRESSURE_PANEL));
//! assert_eq!((reading.systolic(), reading.diastolic()), (Some(142.0), Some(91.0)));
//!
//! let json = serde_json::to_value(&reading).unwrap();
//! assert_eq!(json["resourceType"], "Observation");
//! assert_eq!(json["component"][0]["valueQuantity"]["code"], "mm[Hg]");
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Number;

use crate::clock::Date;

/// Code system URIs used by the integration cloud's data.
pub mod system {
    /// LOINC.
    pub const LOINC: &str = "http://loinc.org";
    /// NPU, the Nordic lab terminology (Danish laboratories report in it).
    pub const NPU: &str = "urn:oid:1.2.208.176.2.1";
    /// UCUM units.
    pub const UCUM: &str = "http://unitsofmeasure.org";
    /// SNOMED CT.
    pub const SNOMED_CT: &str = "http://snomed.info/sct";
    /// ICD-10.
    pub const ICD_10: &str = "http://hl7.org/fhir/sid/icd-10";
    /// WHO ATC, the anatomical therapeutic chemical classification of medicines.
    pub const ATC: &str = "http://www.whocc.no/atc";
    /// The Danish CPR number (patient identifier).
    pub const CPR: &str = "urn:oid:1.2.208.176.1.2";
    /// Observation categories (`vital-signs`, `laboratory`, …).
    pub const OBSERVATION_CATEGORY: &str =
        "http://terminology.hl7.org/CodeSystem/observation-category";
    /// Condition clinical status (`active`, `resolved`, …).
    pub const CONDITION_CLINICAL: &str = "http://terminology.hl7.org/CodeSystem/condition-clinical";
    /// AllergyIntolerance clinical status (`active`, `inactive`, `resolved`).
    pub const ALLERGY_CLINICAL: &str =
        "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical";
}

/// Codes the example apps look for.
pub mod code {
    /// LOINC: blood pressure panel with all children optional.
    pub const BLOOD_PRESSURE_PANEL: &str = "85354-9";
    /// LOINC: systolic blood pressure (a component of the panel).
    pub const SYSTOLIC: &str = "8480-6";
    /// LOINC: diastolic blood pressure (a component of the panel).
    pub const DIASTOLIC: &str = "8462-4";
    /// LOINC: heart rate.
    pub const HEART_RATE: &str = "8867-4";
    /// LOINC: body weight.
    pub const BODY_WEIGHT: &str = "29463-7";
    /// LOINC: HbA1c by IFCC protocol, in mmol/mol.
    pub const HBA1C: &str = "59261-8";
    /// NPU: HbA1c in mmol/mol.
    pub const HBA1C_NPU: &str = "NPU27300";
    /// LOINC: glucose in serum or plasma.
    pub const GLUCOSE: &str = "2345-7";
    /// NPU: glucose in plasma, in mmol/L.
    pub const GLUCOSE_NPU: &str = "NPU02192";
    /// UCUM: millimetres of mercury.
    pub const MM_HG: &str = "mm[Hg]";
    /// Observation category: vital signs.
    pub const VITAL_SIGNS: &str = "vital-signs";
    /// Observation category: laboratory.
    pub const LABORATORY: &str = "laboratory";
    /// ATC group: drugs used in diabetes (every code starting with it).
    pub const ATC_DIABETES: &str = "A10";
}

fn is_false(value: &bool) -> bool {
    !value
}

/// A code from a code system.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Coding {
    /// The code system's URI.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Its display text in the code system.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

impl Coding {
    /// A coding with system, code and display.
    pub fn new(system: &str, code: &str, display: &str) -> Coding {
        Coding {
            system: Some(system.to_owned()),
            code: Some(code.to_owned()),
            display: Some(display.to_owned()),
        }
    }

    /// Whether this is `code` in `system`.
    pub fn is(&self, system: &str, code: &str) -> bool {
        self.system.as_deref() == Some(system) && self.code.as_deref() == Some(code)
    }
}

/// A concept: codings from one or more systems, and text.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CodeableConcept {
    /// Codes for the concept.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub coding: Vec<Coding>,
    /// Plain text, as the user saw or wrote it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl CodeableConcept {
    /// A concept with one coding and text.
    pub fn coded(system: &str, code: &str, display: &str, text: &str) -> CodeableConcept {
        CodeableConcept {
            coding: vec![Coding::new(system, code, display)],
            text: Some(text.to_owned()),
        }
    }

    /// Whether it has neither codings nor text.
    pub fn is_empty(&self) -> bool {
        self.coding.is_empty() && self.text.is_none()
    }

    /// Whether any coding is `code` in `system`.
    pub fn has_code(&self, system: &str, code: &str) -> bool {
        self.coding.iter().any(|c| c.is(system, code))
    }

    /// The first code in `system`.
    pub fn code_in(&self, system: &str) -> Option<&str> {
        self.coding
            .iter()
            .find(|c| c.system.as_deref() == Some(system))
            .and_then(|c| c.code.as_deref())
    }

    /// Something to show a person: the text, else the first display, else the first code.
    pub fn label(&self) -> Option<&str> {
        self.text
            .as_deref()
            .or_else(|| self.coding.iter().find_map(|c| c.display.as_deref()))
            .or_else(|| self.coding.iter().find_map(|c| c.code.as_deref()))
    }
}

/// A measured amount.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Quantity {
    /// The value, with the precision it was written with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Number>,
    /// The unit as shown to people (`mmHg`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// The unit's code system (UCUM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The unit's code (`mm[Hg]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

impl Quantity {
    /// A quantity in a UCUM unit.
    pub fn ucum(value: impl Into<Number>, unit: &str, code: &str) -> Quantity {
        Quantity {
            value: Some(value.into()),
            unit: Some(unit.to_owned()),
            system: Some(system::UCUM.to_owned()),
            code: Some(code.to_owned()),
        }
    }

    /// The value as a float.
    pub fn value_f64(&self) -> Option<f64> {
        self.value.as_ref().and_then(Number::as_f64)
    }
}

/// A reference to another resource.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Reference {
    /// `Type/id`, an absolute URL, or `urn:uuid:…` inside a Bundle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Text for the referenced resource.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

impl Reference {
    /// A reference to `resource_type/id`.
    pub fn to(resource_type: &str, id: &str) -> Reference {
        Reference {
            reference: Some(format!("{resource_type}/{id}")),
            display: None,
        }
    }

    /// The id, when this refers to a resource of `resource_type` (`Patient/123`, or an
    /// absolute URL ending in it).
    pub fn id_of(&self, resource_type: &str) -> Option<&str> {
        let reference = self.reference.as_deref()?;
        let reference = reference.split("/_history/").next()?;
        let (prefix, id) = reference.rsplit_once('/')?;
        let referenced_type = prefix.rsplit('/').next()?;
        (referenced_type == resource_type && !id.is_empty()).then_some(id)
    }
}

/// A time span; either end may be open.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Period {
    /// The start (a FHIR dateTime).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// The end (a FHIR dateTime); open when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
}

/// An identifier, e.g. a CPR number.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Identifier {
    /// The identifier's namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// A person's name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HumanName {
    /// `official`, `usual`, `nickname`, …
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// The whole name as text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The family name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    /// Given names, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub given: Vec<String>,
    /// Prefixes, e.g. titles.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub prefix: Vec<String>,
}

impl HumanName {
    /// The name as people write it: the text, else the given names then the family name.
    pub fn display(&self) -> String {
        if let Some(text) = &self.text {
            return text.clone();
        }
        self.given
            .iter()
            .map(String::as_str)
            .chain(self.family.as_deref())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Metadata the server keeps about a resource.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Meta {
    /// The version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// When it last changed (a FHIR instant).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<String>,
    /// Where it came from (a URI); [`crate::fhir::origin`] reads it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// How a medication is (to be) taken.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Dosage {
    /// The dosage as free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// A patient.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", tag = "resourceType")]
pub struct Patient {
    /// The logical id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Server metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    /// Identifiers, e.g. the CPR number.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier>,
    /// Whether the record is in active use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    /// Names.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub name: Vec<HumanName>,
    /// `male`, `female`, `other` or `unknown`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gender: Option<String>,
    /// The date of birth (a FHIR date).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<String>,
    /// Set when the patient has died.
    #[serde(skip_serializing_if = "is_false")]
    pub deceased_boolean: bool,
    /// When the patient died.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deceased_date_time: Option<String>,
    /// The patient's GP clinic or practitioner.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub general_practitioner: Vec<Reference>,
}

impl Patient {
    /// The name to show: the official one if there is one, else the first.
    pub fn display_name(&self) -> Option<String> {
        self.name
            .iter()
            .find(|n| n.use_.as_deref() == Some("official"))
            .or_else(|| self.name.first())
            .map(HumanName::display)
            .filter(|name| !name.is_empty())
    }

    /// The value of the first identifier in `system`, e.g. [`system::CPR`].
    pub fn identifier_in(&self, system: &str) -> Option<&str> {
        self.identifier
            .iter()
            .find(|i| i.system.as_deref() == Some(system))
            .and_then(|i| i.value.as_deref())
    }
}

/// One part of a multi-part observation, e.g. the systolic value of a blood pressure.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ObservationComponent {
    /// What this part is.
    #[serde(skip_serializing_if = "CodeableConcept::is_empty")]
    pub code: CodeableConcept,
    /// Its value, when a quantity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_quantity: Option<Quantity>,
}

/// A measurement or finding: vital signs, lab results.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", tag = "resourceType")]
pub struct Observation {
    /// The logical id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Server metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    /// `final`, `amended`, `preliminary`, … (required by FHIR).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub status: String,
    /// Categories, e.g. `vital-signs` or `laboratory`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub category: Vec<CodeableConcept>,
    /// What was observed (required by FHIR).
    #[serde(skip_serializing_if = "CodeableConcept::is_empty")]
    pub code: CodeableConcept,
    /// Whom it is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<Reference>,
    /// The encounter it was made in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encounter: Option<Reference>,
    /// When it was observed (a FHIR dateTime).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective_date_time: Option<String>,
    /// When it was observed, as a period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective_period: Option<Period>,
    /// When the result was made available (a FHIR instant).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued: Option<String>,
    /// Who made it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub performer: Vec<Reference>,
    /// The value, when a quantity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_quantity: Option<Quantity>,
    /// The value, when a coded concept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_codeable_concept: Option<CodeableConcept>,
    /// The value, when text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_string: Option<String>,
    /// High, low, normal, …
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub interpretation: Vec<CodeableConcept>,
    /// Parts of a multi-part observation.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub component: Vec<ObservationComponent>,
}

impl Observation {
    /// A blood pressure reading as the integration cloud codes it: a LOINC 85354-9 panel in
    /// category `vital-signs`, status `final`, with systolic (8480-6) and diastolic (8462-4)
    /// components in `mm[Hg]`, about `Patient/{patient_id}`, observed at `effective` (a FHIR
    /// dateTime).
    pub fn blood_pressure(
        patient_id: &str,
        systolic: u16,
        diastolic: u16,
        effective: &str,
    ) -> Observation {
        let component = |code: &str, display: &str, value: u16| ObservationComponent {
            code: CodeableConcept {
                coding: vec![Coding::new(system::LOINC, code, display)],
                text: None,
            },
            value_quantity: Some(Quantity::ucum(value, "mmHg", code::MM_HG)),
        };
        Observation {
            status: "final".to_owned(),
            category: vec![CodeableConcept {
                coding: vec![Coding::new(
                    system::OBSERVATION_CATEGORY,
                    code::VITAL_SIGNS,
                    "Vital Signs",
                )],
                text: None,
            }],
            code: CodeableConcept::coded(
                system::LOINC,
                code::BLOOD_PRESSURE_PANEL,
                "Blood pressure panel with all children optional",
                "Blood pressure",
            ),
            subject: Some(Reference::to("Patient", patient_id)),
            effective_date_time: Some(effective.to_owned()),
            component: vec![
                component(code::SYSTOLIC, "Systolic blood pressure", systolic),
                component(code::DIASTOLIC, "Diastolic blood pressure", diastolic),
            ],
            ..Observation::default()
        }
    }

    /// Whether the observation's code includes `code` in `system`.
    pub fn has_code(&self, system: &str, code: &str) -> bool {
        self.code.has_code(system, code)
    }

    /// Whether the observation is in category `category` (e.g. `vital-signs`).
    pub fn has_category(&self, category: &str) -> bool {
        self.category
            .iter()
            .any(|c| c.has_code(system::OBSERVATION_CATEGORY, category))
    }

    /// The quantity of the component coded `code` in `system`.
    pub fn component_quantity(&self, system: &str, code: &str) -> Option<&Quantity> {
        self.component
            .iter()
            .find(|c| c.code.has_code(system, code))
            .and_then(|c| c.value_quantity.as_ref())
    }

    /// The systolic pressure of a blood pressure panel, in the unit it was recorded in
    /// (`mm[Hg]` in this platform's data).
    pub fn systolic(&self) -> Option<f64> {
        self.component_quantity(system::LOINC, code::SYSTOLIC)
            .and_then(Quantity::value_f64)
    }

    /// The diastolic pressure of a blood pressure panel.
    pub fn diastolic(&self) -> Option<f64> {
        self.component_quantity(system::LOINC, code::DIASTOLIC)
            .and_then(Quantity::value_f64)
    }

    /// The value of `valueQuantity` as a float.
    pub fn value_f64(&self) -> Option<f64> {
        self.value_quantity.as_ref().and_then(Quantity::value_f64)
    }

    /// When it was observed: `effectiveDateTime`, else the start of `effectivePeriod`.
    pub fn effective(&self) -> Option<&str> {
        self.effective_date_time.as_deref().or_else(|| {
            self.effective_period
                .as_ref()
                .and_then(|p| p.start.as_deref())
        })
    }

    /// The date it was observed on.
    pub fn effective_date(&self) -> Option<Date> {
        self.effective().and_then(Date::from_fhir)
    }
}

/// A problem or diagnosis.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", tag = "resourceType")]
pub struct Condition {
    /// The logical id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Server metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    /// `active`, `recurrence`, `relapse`, `inactive`, `remission`, `resolved`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clinical_status: Option<CodeableConcept>,
    /// `confirmed`, `provisional`, `refuted`, …
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification_status: Option<CodeableConcept>,
    /// E.g. `problem-list-item`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub category: Vec<CodeableConcept>,
    /// The condition (SNOMED CT, ICD-10).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<CodeableConcept>,
    /// Whom it is about (required by FHIR).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<Reference>,
    /// When it began.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub onset_date_time: Option<String>,
    /// When it resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abatement_date_time: Option<String>,
    /// When it was recorded (a FHIR dateTime).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded_date: Option<String>,
}

impl Condition {
    /// Whether its clinical status is active (`active`, `recurrence` or `relapse`).
    pub fn is_active(&self) -> bool {
        self.clinical_status.as_ref().is_some_and(|status| {
            ["active", "recurrence", "relapse"]
                .iter()
                .any(|code| status.has_code(system::CONDITION_CLINICAL, code))
        })
    }
}

/// A statement that the patient takes (or took) a medication.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", tag = "resourceType")]
pub struct MedicationStatement {
    /// The logical id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Server metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    /// `active`, `completed`, `stopped`, … (required by FHIR).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub status: String,
    /// The medication (ATC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub medication_codeable_concept: Option<CodeableConcept>,
    /// Who takes it (required by FHIR).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<Reference>,
    /// When it is taken, as a dateTime.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective_date_time: Option<String>,
    /// When it is taken, as a period (open-ended while current).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective_period: Option<Period>,
    /// When the statement was made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date_asserted: Option<String>,
    /// Why it is taken.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reason_reference: Vec<Reference>,
    /// How it is taken.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dosage: Vec<Dosage>,
}

impl MedicationStatement {
    /// Whether the patient takes it now (status `active`).
    pub fn is_active(&self) -> bool {
        self.status == "active"
    }

    /// The ATC code of the medication.
    pub fn atc_code(&self) -> Option<&str> {
        self.medication_codeable_concept
            .as_ref()
            .and_then(|m| m.code_in(system::ATC))
    }

    /// When the patient started taking it.
    pub fn started(&self) -> Option<&str> {
        self.effective_period
            .as_ref()
            .and_then(|p| p.start.as_deref())
            .or(self.effective_date_time.as_deref())
    }
}

/// A prescription.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", tag = "resourceType")]
pub struct MedicationRequest {
    /// The logical id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Server metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    /// `active`, `completed`, `stopped`, … (required by FHIR).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub status: String,
    /// `order`, `plan`, … (required by FHIR).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub intent: String,
    /// The medication (ATC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub medication_codeable_concept: Option<CodeableConcept>,
    /// For whom (required by FHIR).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<Reference>,
    /// When it was prescribed (a FHIR dateTime).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authored_on: Option<String>,
    /// Who prescribed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requester: Option<Reference>,
    /// Why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reason_reference: Vec<Reference>,
    /// How to take it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dosage_instruction: Vec<Dosage>,
}

impl MedicationRequest {
    /// Whether the prescription is current (status `active`).
    pub fn is_active(&self) -> bool {
        self.status == "active"
    }

    /// The ATC code of the medication.
    pub fn atc_code(&self) -> Option<&str> {
        self.medication_codeable_concept
            .as_ref()
            .and_then(|m| m.code_in(system::ATC))
    }
}

/// A reaction the patient has (had) to something.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct AllergyReaction {
    /// What happened.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub manifestation: Vec<CodeableConcept>,
    /// `mild`, `moderate` or `severe`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
}

/// An allergy or intolerance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", tag = "resourceType")]
pub struct AllergyIntolerance {
    /// The logical id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Server metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    /// `active`, `inactive` or `resolved`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clinical_status: Option<CodeableConcept>,
    /// `confirmed`, `unconfirmed`, `refuted`, …
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification_status: Option<CodeableConcept>,
    /// `allergy` or `intolerance`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
    /// `food`, `medication`, `environment`, `biologic`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub category: Vec<String>,
    /// `low`, `high` or `unable-to-assess`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub criticality: Option<String>,
    /// The substance or allergy (SNOMED CT).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<CodeableConcept>,
    /// Whose allergy (required by FHIR).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient: Option<Reference>,
    /// When it began.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub onset_date_time: Option<String>,
    /// When it was recorded (a FHIR dateTime).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded_date: Option<String>,
    /// Reactions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reaction: Vec<AllergyReaction>,
}

impl AllergyIntolerance {
    /// Whether it is current: clinical status `active`, or no status recorded (FHIR
    /// allows omitting it only for refuted or entered-in-error records, which say so in the
    /// verification status).
    pub fn is_active(&self) -> bool {
        match &self.clinical_status {
            Some(status) => status.has_code(system::ALLERGY_CLINICAL, "active"),
            None => !self.verification_status.as_ref().is_some_and(|v| {
                v.coding
                    .iter()
                    .any(|c| matches!(c.code.as_deref(), Some("refuted" | "entered-in-error")))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_blood_pressure_reading_is_coded_like_the_platform_data() {
        let reading = Observation::blood_pressure("p1", 142, 91, "2026-10-30");
        let json = serde_json::to_value(&reading).unwrap();
        assert_eq!(
            json,
            json!({
                "resourceType": "Observation",
                "status": "final",
                "category": [{"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                    "code": "vital-signs", "display": "Vital Signs"}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9",
                    "display": "Blood pressure panel with all children optional"}],
                    "text": "Blood pressure"},
                "subject": {"reference": "Patient/p1"},
                "effectiveDateTime": "2026-10-30",
                "component": [
                    {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6",
                        "display": "Systolic blood pressure"}]},
                     "valueQuantity": {"value": 142, "unit": "mmHg",
                        "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
                    {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4",
                        "display": "Diastolic blood pressure"}]},
                     "valueQuantity": {"value": 91, "unit": "mmHg",
                        "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}
                ]
            })
        );
        assert!(reading.has_category(code::VITAL_SIGNS));
        assert_eq!(reading.effective_date(), Date::parse("2026-10-30"));
    }

    #[test]
    fn platform_data_decodes_and_unknown_elements_are_ignored() {
        let stored = json!({
            "resourceType": "Observation", "id": "o1", "status": "final",
            "meta": {"versionId": "1", "lastUpdated": "2026-10-30T08:00:00Z"},
            "code": {"coding": [
                {"system": "http://loinc.org", "code": "59261-8"},
                {"system": "urn:oid:1.2.208.176.2.1", "code": "NPU27300"}], "text": "HbA1c"},
            "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2026-10-30T08:12:00+01:00",
            "valueQuantity": {"value": 53.0, "unit": "mmol/mol"},
            "encounter": {"reference": "Encounter/e1"},
            "somethingNew": {"nested": [1, 2]}
        });
        let obs: Observation = serde_json::from_value(stored).unwrap();
        assert!(obs.has_code(system::NPU, code::HBA1C_NPU));
        assert_eq!(obs.value_f64(), Some(53.0));
        assert_eq!(obs.code.label(), Some("HbA1c"));
        assert_eq!(obs.meta.unwrap().version_id.as_deref(), Some("1"));
        // The decimal keeps its written precision when written back.
        let quantity = serde_json::to_value(obs.value_quantity).unwrap();
        assert_eq!(quantity["value"].to_string(), "53.0");
        // A resource with nothing in it still decodes.
        let empty: Observation = serde_json::from_str("{}").unwrap();
        assert_eq!(empty.systolic(), None);
    }

    #[test]
    fn patients_names_and_references() {
        let patient: Patient = serde_json::from_value(json!({
            "resourceType": "Patient", "id": "p1",
            "identifier": [{"system": "urn:oid:1.2.208.176.1.2", "value": "0101709995"}],
            "name": [{"use": "nickname", "given": ["Bo"]},
                     {"use": "official", "family": "Sørensen", "given": ["Åse", "Marie"]}],
            "birthDate": "1970-01-01"
        }))
        .unwrap();
        assert_eq!(
            patient.display_name().as_deref(),
            Some("Åse Marie Sørensen")
        );
        assert_eq!(patient.identifier_in(system::CPR), Some("0101709995"));
        let json = serde_json::to_value(&patient).unwrap();
        assert_eq!(json["name"][1]["use"], "official");
        assert!(json.get("deceasedBoolean").is_none());

        let reference = Reference::to("Patient", "p1");
        assert_eq!(reference.id_of("Patient"), Some("p1"));
        assert_eq!(reference.id_of("Group"), None);
        let absolute = Reference {
            reference: Some("https://x.example/fhir/r4/Patient/p2/_history/3".into()),
            display: None,
        };
        assert_eq!(absolute.id_of("Patient"), Some("p2"));
    }

    #[test]
    fn medication_and_allergy_status() {
        let statement: MedicationStatement = serde_json::from_value(json!({
            "resourceType": "MedicationStatement", "status": "active",
            "medicationCodeableConcept": {"coding": [
                {"system": "http://www.whocc.no/atc", "code": "A10BA02", "display": "metformin"}],
                "text": "Metformin 500 mg"},
            "effectivePeriod": {"start": "2024-01-01"},
            "dosage": [{"text": "1 tablet 2 times daily"}]
        }))
        .unwrap();
        assert!(statement.is_active());
        assert!(
            statement
                .atc_code()
                .unwrap()
                .starts_with(code::ATC_DIABETES)
        );
        assert_eq!(statement.started(), Some("2024-01-01"));

        let allergy: AllergyIntolerance = serde_json::from_value(json!({
            "resourceType": "AllergyIntolerance", "type": "allergy", "category": ["medication"],
            "clinicalStatus": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                "code": "active"}]}
        }))
        .unwrap();
        assert!(allergy.is_active());
        assert_eq!(allergy.r#type.as_deref(), Some("allergy"));
        assert_eq!(serde_json::to_value(&allergy).unwrap()["type"], "allergy");

        let condition: Condition = serde_json::from_value(json!({
            "resourceType": "Condition", "clinicalStatus": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                "code": "resolved"}]}
        }))
        .unwrap();
        assert!(!condition.is_active());
    }
}

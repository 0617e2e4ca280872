//! The International Patient Summary as a FHIR document Bundle. Plain Rust, tested
//! natively, and one implementation for both places that make the document: the
//! patient-summary app (`GET /api/ips`) and the FHIR API's `Patient/[id]/$summary`. Each
//! reads the Patient and makes the [`SEARCHES`] with its caller's rights, then hands the
//! results to [`Record::current`] and [`document`].
//!
//! The document is a snapshot that must be readable on its own, anywhere: every entry has a
//! `urn:uuid:` fullUrl, references between included resources are rewritten to those, and
//! references to resources the document does not include (the GP clinic, the prescription
//! behind a statement) are dropped, keeping their `display` if they had one.
//!
//! Each section is read with its own FHIR search and stands on its own: a section the
//! platform denies (or cannot reach) is in the document without entries, with a narrative
//! saying so and an `emptyReason` (`withheld`, or `unavailable`), and the other sections are
//! still filled in.

use std::collections::HashMap;

use healthcloud_sdk::fhir::{self, Withheld};
use healthcloud_sdk::model::{AllergyIntolerance, Condition, MedicationStatement, Patient};
use maud::html;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

const LOINC: &str = "http://loinc.org";
const LIST_EMPTY_REASON: &str = "http://terminology.hl7.org/CodeSystem/list-empty-reason";

/// More entries than any patient's current medication, allergies or problems; an upper bound
/// on the work of one summary (each section's search asks for at most this many).
pub const MAX_ENTRIES: usize = 500;

/// One section's FHIR search within the patient's record.
#[derive(Debug, Clone, Copy)]
pub struct SectionSearch {
    /// The resource type searched.
    pub resource_type: &'static str,
    /// Search parameters besides the patient and the count.
    pub params: &'static [(&'static str, &'static str)],
}

/// The sections' searches, in the order [`Record::current`] takes their results:
/// medication, allergies, problems.
pub const SEARCHES: [SectionSearch; 3] = [
    SectionSearch {
        resource_type: "MedicationStatement",
        params: &[("status", "active")],
    },
    SectionSearch {
        resource_type: "AllergyIntolerance",
        params: &[],
    },
    SectionSearch {
        resource_type: "Condition",
        params: &[("clinical-status", "active")],
    },
];

/// The resources of one section (FHIR JSON as the platform returned it), or why they could
/// not be read.
pub type Section = fhir::Section<Vec<Value>>;

/// The section from the result of its search, keeping only what `keep` accepts; see
/// [`fhir::Section::from_result`].
fn section_from_search(
    result: Result<Vec<Value>, fhir::Error>,
    keep: impl Fn(&Value) -> bool,
) -> Result<Section, fhir::Error> {
    Ok(Section::from_result(result)?
        .map(|resources| resources.into_iter().filter(|r| keep(r)).collect()))
}

/// The section's `emptyReason` when it was withheld
/// (http://terminology.hl7.org/CodeSystem/list-empty-reason).
fn empty_reason(why: &Withheld) -> Value {
    let (code, display) = match why {
        Withheld::Denied(_) => ("withheld", "Information Withheld"),
        Withheld::Unavailable(_) => ("unavailable", "Unavailable"),
    };
    json!({ "coding": [{ "system": LIST_EMPTY_REASON, "code": code, "display": display }] })
}

/// The patient's data the summary is made of.
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// The Patient.
    pub patient: Value,
    /// Current medication (MedicationStatement).
    pub medications: Section,
    /// Current allergies and intolerances (AllergyIntolerance).
    pub allergies: Section,
    /// Current problems (Condition).
    pub problems: Section,
}

impl Record {
    /// The record from the Patient and the results of the [`SEARCHES`], with only
    /// what is current: active statements, allergies and conditions. (The searches already
    /// ask for active statements and conditions; allergies cannot be searched by status.)
    ///
    /// A search that was denied or found the data unavailable withholds its section only;
    /// any other failure fails the record (that error).
    pub fn current(
        patient: Value,
        [medications, allergies, problems]: [Result<Vec<Value>, fhir::Error>; 3],
    ) -> Result<Record, fhir::Error> {
        Ok(Record {
            patient,
            medications: section_from_search(medications, |m| {
                decode::<MedicationStatement>(m).is_active()
            })?,
            allergies: section_from_search(allergies, |a| {
                decode::<AllergyIntolerance>(a).is_active()
            })?,
            problems: section_from_search(problems, |c| decode::<Condition>(c).is_active())?,
        })
    }
}

/// Who made the document and when.
#[derive(Debug, Clone)]
pub struct Authorship {
    /// When the document was assembled (a FHIR instant).
    pub timestamp: String,
    /// Who assembled it, e.g. `examples/patient-summary 0.1.0, region hovedstaden`.
    pub author: String,
}

/// What the medication section holds, in a sentence.
pub const MEDICATION_DATA: &str = "medication data";
/// What the allergy section holds, in a sentence.
pub const ALLERGY_DATA: &str = "allergy and intolerance data";
/// What the problem section holds, in a sentence.
pub const PROBLEM_DATA: &str = "problem list data";

/// One section of the summary.
struct SectionDef {
    title: &'static str,
    /// What the section's entries are, in a sentence: "Access to {data} was denied".
    data: &'static str,
    loinc: &'static str,
    loinc_display: &'static str,
    empty_text: &'static str,
}

const MEDICATION: SectionDef = SectionDef {
    title: "Medication Summary",
    data: MEDICATION_DATA,
    loinc: "10160-0",
    loinc_display: "History of Medication use Narrative",
    empty_text: "No current medication is recorded.",
};
const ALLERGIES: SectionDef = SectionDef {
    title: "Allergies and Intolerances",
    data: ALLERGY_DATA,
    loinc: "48765-2",
    loinc_display: "Allergies and adverse reactions Document",
    empty_text: "No current allergies or intolerances are recorded.",
};
const PROBLEMS: SectionDef = SectionDef {
    title: "Problem List",
    data: PROBLEM_DATA,
    loinc: "11450-4",
    loinc_display: "Problem list - Reported",
    empty_text: "No current problems are recorded.",
};

/// The summary as a FHIR `document` Bundle: a Composition (LOINC 60591-5) first, then the
/// Patient and every resource the sections refer to. `new_uuid` makes the Bundle's
/// identifier and the entries' fullUrls.
pub fn document(
    record: &Record,
    authorship: &Authorship,
    mut new_uuid: impl FnMut() -> String,
) -> Value {
    let mut full_urls: HashMap<String, String> = HashMap::new();
    let mut entry_url = |resource: &Value| {
        let url = format!("urn:uuid:{}", new_uuid());
        if let Some(key) = local_key(resource) {
            full_urls.insert(key, url.clone());
        }
        url
    };
    let composition_url = entry_url(&Value::Null);
    let patient_url = entry_url(&record.patient);
    let section_urls = |resources: &[Value], entry_url: &mut dyn FnMut(&Value) -> String| {
        resources
            .iter()
            .map(|r| (entry_url(r), r.clone()))
            .collect::<Vec<_>>()
    };
    let medications = section_urls(record.medications.items(), &mut entry_url);
    let allergies = section_urls(record.allergies.items(), &mut entry_url);
    let problems = section_urls(record.problems.items(), &mut entry_url);

    let patient: Patient = decode(&record.patient);
    let mut subject = json!({ "reference": patient_url });
    if let Some(name) = patient.display_name() {
        subject["display"] = name.into();
    }
    let composition = json!({
        "resourceType": "Composition",
        "id": composition_url.trim_start_matches("urn:uuid:"),
        "status": "final",
        "type": { "coding": [{ "system": LOINC, "code": "60591-5", "display": "Patient summary Document" }] },
        "subject": subject,
        "date": authorship.timestamp,
        "author": [{ "display": authorship.author }],
        "title": "International Patient Summary",
        "section": [
            section(&MEDICATION, record.medications.withheld(), &medications, |r| medication_line(&decode(r))),
            section(&ALLERGIES, record.allergies.withheld(), &allergies, |r| allergy_line(&decode(r))),
            section(&PROBLEMS, record.problems.withheld(), &problems, |r| problem_line(&decode(r))),
        ],
    });

    let mut entries = vec![
        json!({ "fullUrl": composition_url, "resource": composition }),
        json!({ "fullUrl": patient_url, "resource": record.patient }),
    ];
    for (url, resource) in medications.into_iter().chain(allergies).chain(problems) {
        entries.push(json!({ "fullUrl": url, "resource": resource }));
    }
    for entry in entries.iter_mut().skip(1) {
        resolve_references(&mut entry["resource"], &full_urls);
    }
    let bundle_uuid = new_uuid();
    json!({
        "resourceType": "Bundle",
        "id": bundle_uuid,
        "identifier": { "system": "urn:ietf:rfc:3986", "value": format!("urn:uuid:{bundle_uuid}") },
        "type": "document",
        "timestamp": authorship.timestamp,
        "entry": entries,
    })
}

/// One section of the Composition: its entries, or (none read) why it is empty.
fn section(
    def: &SectionDef,
    withheld: Option<&Withheld>,
    entries: &[(String, Value)],
    line: impl Fn(&Value) -> String,
) -> Value {
    let lines: Vec<String> = entries.iter().map(|(_, r)| line(r)).collect();
    // FHIR narrative is XHTML in a div with the XHTML namespace; maud escapes the data.
    let div = html! {
        div xmlns="http://www.w3.org/1999/xhtml" {
            @if let Some(why) = withheld {
                p { (why.sentence(def.data)) }
            } @else if lines.is_empty() {
                p { (def.empty_text) }
            } @else {
                ul { @for line in &lines { li { (line) } } }
            }
        }
    }
    .into_string();
    let mut section = Map::new();
    section.insert("title".into(), def.title.into());
    section.insert(
        "code".into(),
        json!({ "coding": [{ "system": LOINC, "code": def.loinc, "display": def.loinc_display }] }),
    );
    section.insert("text".into(), json!({ "status": "generated", "div": div }));
    if let Some(why) = withheld {
        // Not read (denied, or unavailable): the section says so rather than "none known".
        section.insert("emptyReason".into(), empty_reason(why));
    } else if entries.is_empty() {
        // A section with nothing in it must say why (FHIR cmp-1/cmp-2): the record was
        // searched and holds nothing current.
        section.insert(
            "emptyReason".into(),
            json!({ "coding": [{ "system": LIST_EMPTY_REASON, "code": "nilknown", "display": "Nil Known" }] }),
        );
    } else {
        section.insert(
            "entry".into(),
            entries
                .iter()
                .map(|(url, _)| json!({ "reference": url }))
                .collect(),
        );
    }
    Value::Object(section)
}

/// `Type/id` of a resource.
fn local_key(resource: &Value) -> Option<String> {
    let resource_type = resource.get("resourceType")?.as_str()?;
    let id = resource.get("id")?.as_str()?;
    Some(format!("{resource_type}/{id}"))
}

/// `Type/id` of a reference (`Type/id`, an absolute URL ending in it, with or without
/// `/_history/n`).
fn reference_key(reference: &str) -> Option<String> {
    let reference = reference.split("/_history/").next()?;
    let mut parts = reference.rsplit('/');
    let id = parts.next()?;
    let resource_type = parts.next()?;
    Some(format!("{resource_type}/{id}"))
}

/// Points references at the Bundle's entries and drops the rest; returns whether anything
/// is left of `value` (FHIR forbids empty objects and arrays).
fn resolve_references(value: &mut Value, full_urls: &HashMap<String, String>) -> bool {
    match value {
        Value::Object(object) => {
            if let Some(Value::String(reference)) = object.get("reference") {
                match reference_key(reference).and_then(|key| full_urls.get(&key)) {
                    Some(url) => {
                        object.insert("reference".into(), url.clone().into());
                    }
                    None => {
                        object.remove("reference");
                    }
                }
            }
            object.retain(|key, child| key == "div" || resolve_references(child, full_urls));
            !object.is_empty()
        }
        Value::Array(items) => {
            items.retain_mut(|item| resolve_references(item, full_urls));
            !items.is_empty()
        }
        _ => true,
    }
}

/// Decodes tolerantly: the model ignores what it does not know, and a resource that does
/// not fit it at all shows as empty rather than hiding the rest of the summary.
pub fn decode<T: DeserializeOwned + Default>(resource: &Value) -> T {
    serde_json::from_value(resource.clone()).unwrap_or_default()
}

/// One line about a medication statement.
pub fn medication_line(statement: &MedicationStatement) -> String {
    let concept = statement.medication_codeable_concept.as_ref();
    let mut line = concept
        .and_then(|c| c.label())
        .unwrap_or("Unnamed medication")
        .to_owned();
    if let Some(atc) = statement.atc_code() {
        line.push_str(&format!(" (ATC {atc})"));
    }
    if let Some(dosage) = statement.dosage.iter().find_map(|d| d.text.as_deref()) {
        line.push_str(&format!(": {dosage}"));
    }
    if let Some(start) = statement.started() {
        line.push_str(&format!("; since {}", date_part(start)));
    }
    line
}

/// One line about an allergy or intolerance.
pub fn allergy_line(allergy: &AllergyIntolerance) -> String {
    let mut line = allergy
        .code
        .as_ref()
        .and_then(|c| c.label())
        .unwrap_or("Unspecified allergy")
        .to_owned();
    let mut details = Vec::new();
    if !allergy.category.is_empty() {
        details.push(allergy.category.join(", "));
    }
    if let Some(criticality) = &allergy.criticality {
        details.push(format!("{criticality} criticality"));
    }
    if !details.is_empty() {
        line.push_str(&format!(" ({})", details.join("; ")));
    }
    if let Some(recorded) = &allergy.recorded_date {
        line.push_str(&format!("; recorded {}", date_part(recorded)));
    }
    line
}

/// One line about a problem.
pub fn problem_line(condition: &Condition) -> String {
    let mut line = condition
        .code
        .as_ref()
        .and_then(|c| c.label())
        .unwrap_or("Unspecified problem")
        .to_owned();
    if let Some(onset) = &condition.onset_date_time {
        line.push_str(&format!("; since {}", date_part(onset)));
    }
    line
}

fn date_part(date_time: &str) -> &str {
    date_time.get(..10).unwrap_or(date_time)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patient() -> Value {
        json!({"resourceType": "Patient", "id": "p1",
            "name": [{"use": "official", "family": "Sørensen", "given": ["Åse"]}],
            "generalPractitioner": [{"reference": "Organization/gp1"}],
            "birthDate": "1950-02-03"})
    }

    fn medications() -> Vec<Value> {
        vec![
            json!({"resourceType": "MedicationStatement", "id": "m1", "status": "active",
                "basedOn": [{"reference": "MedicationRequest/r1"}],
                "medicationCodeableConcept": {"coding": [{"system": "http://www.whocc.no/atc",
                    "code": "A10BA02", "display": "metformin"}], "text": "Metformin <500 mg>"},
                "subject": {"reference": "Patient/p1"},
                "effectivePeriod": {"start": "2024-03-01"},
                "reasonReference": [{"reference": "Condition/c1"}],
                "informationSource": {"reference": "Organization/gp1", "display": "Lægehuset"},
                "dosage": [{"text": "1 tablet 2 times daily"}]}),
        ]
    }

    fn record_with(medications: Result<Vec<Value>, fhir::Error>) -> Record {
        Record::current(
            patient(),
            [medications,
            Ok(vec![json!({"resourceType": "AllergyIntolerance", "id": "a1",
                "clinicalStatus": {"coding": [{"system":
                    "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "resolved"}]},
                "patient": {"reference": "Patient/p1"}})]),
            Ok(vec![json!({"resourceType": "Condition", "id": "c1",
                "clinicalStatus": {"coding": [{"system":
                    "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
                "code": {"text": "Type 2 diabetes"}, "onsetDateTime": "2019-05-01",
                "subject": {"reference": "https://x.example/fhir/r4/Patient/p1"}})])],
        )
        .unwrap()
    }

    fn ips() -> Value {
        ips_of(&record_with(Ok(medications())))
    }

    fn ips_of(record: &Record) -> Value {
        let mut n = 0;
        document(
            record,
            &Authorship {
                timestamp: "2026-10-30T08:00:00Z".into(),
                author: "examples/patient-summary 0.1.0".into(),
            },
            || {
                n += 1;
                format!("00000000-0000-4000-8000-{n:012}")
            },
        )
    }

    #[test]
    fn is_a_document_with_the_composition_first() {
        let bundle = ips();
        assert_eq!(bundle["type"], "document");
        assert_eq!(bundle["timestamp"], "2026-10-30T08:00:00Z");
        assert!(
            bundle["identifier"]["value"]
                .as_str()
                .unwrap()
                .starts_with("urn:uuid:")
        );
        let composition = &bundle["entry"][0]["resource"];
        assert_eq!(composition["resourceType"], "Composition");
        assert_eq!(composition["type"]["coding"][0]["code"], "60591-5");
        assert_eq!(
            composition["subject"]["reference"],
            bundle["entry"][1]["fullUrl"]
        );
        assert_eq!(bundle["entry"][1]["resource"]["resourceType"], "Patient");
        let codes: Vec<_> = composition["section"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["code"]["coding"][0]["code"].as_str().unwrap())
            .collect();
        assert_eq!(codes, ["10160-0", "48765-2", "11450-4"]);
    }

    #[test]
    fn every_section_entry_is_in_the_bundle_and_empty_sections_say_why() {
        let bundle = ips();
        let full_urls: Vec<&str> = bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["fullUrl"].as_str().unwrap())
            .collect();
        let sections = bundle["entry"][0]["resource"]["section"]
            .as_array()
            .unwrap();
        for section in sections {
            for entry in section["entry"].as_array().into_iter().flatten() {
                assert!(full_urls.contains(&entry["reference"].as_str().unwrap()));
            }
        }
        // The only allergy is resolved, so the allergy section is empty, with a reason.
        assert!(sections[1].get("entry").is_none());
        assert_eq!(sections[1]["emptyReason"]["coding"][0]["code"], "nilknown");
        assert!(
            sections[1]["text"]["div"]
                .as_str()
                .unwrap()
                .contains("No current allergies")
        );
        assert_eq!(full_urls.len(), 4); // composition, patient, medication, problem
    }

    #[test]
    fn references_point_inside_the_bundle_or_are_dropped() {
        let bundle = ips();
        let patient_url = bundle["entry"][1]["fullUrl"].clone();
        let statement = &bundle["entry"][2]["resource"];
        assert_eq!(statement["subject"]["reference"], patient_url);
        assert_eq!(
            statement["reasonReference"][0]["reference"],
            bundle["entry"][3]["fullUrl"]
        );
        assert!(statement.get("basedOn").is_none());
        assert_eq!(
            statement["informationSource"],
            json!({"display": "Lægehuset"})
        );
        assert!(
            bundle["entry"][1]["resource"]
                .get("generalPractitioner")
                .is_none()
        );
        // Absolute references are recognised too.
        assert_eq!(
            bundle["entry"][3]["resource"]["subject"]["reference"],
            patient_url
        );
    }

    #[test]
    fn narrative_is_escaped_xhtml() {
        let bundle = ips();
        let div = bundle["entry"][0]["resource"]["section"][0]["text"]["div"]
            .as_str()
            .unwrap();
        assert!(div.starts_with(r#"<div xmlns="http://www.w3.org/1999/xhtml">"#));
        assert!(div.contains(
            "Metformin &lt;500 mg&gt; (ATC A10BA02): 1 tablet 2 times daily; since 2024-03-01"
        ));
    }

    const NO_MEDICATION: &str =
        "the region has not granted this app search-type of <MedicationStatement>";

    #[test]
    fn a_denied_section_is_withheld_and_says_so_and_the_others_are_filled_in() {
        let record = record_with(Err(fhir::Error::Denied(NO_MEDICATION.into())));
        assert_eq!(
            record.medications,
            Section::Withheld(Withheld::Denied(NO_MEDICATION.into()))
        );
        let bundle = ips_of(&record);
        let sections = bundle["entry"][0]["resource"]["section"]
            .as_array()
            .unwrap();
        let medication = &sections[0];
        assert_eq!(medication["code"]["coding"][0]["code"], "10160-0");
        assert!(medication.get("entry").is_none());
        assert_eq!(
            medication["emptyReason"],
            json!({ "coding": [{ "system": LIST_EMPTY_REASON, "code": "withheld",
                "display": "Information Withheld" }] })
        );
        let div = medication["text"]["div"].as_str().unwrap();
        assert!(
            div.contains("Access to medication data was denied: the region has not granted this app search-type of &lt;MedicationStatement&gt;"),
            "{div}"
        );
        // The problem section is still there, with its entry; the allergy one is "nil known".
        assert_eq!(sections[1]["emptyReason"]["coding"][0]["code"], "nilknown");
        let problem_url = sections[2]["entry"][0]["reference"].clone();
        assert_eq!(bundle["entry"][2]["fullUrl"], problem_url);
        assert_eq!(bundle["entry"][2]["resource"]["resourceType"], "Condition");
        assert_eq!(bundle["entry"].as_array().unwrap().len(), 3); // composition, patient, problem
    }

    #[test]
    fn an_unavailable_section_says_unavailable() {
        let record = record_with(Err(fhir::Error::Unavailable("store timeout".into())));
        let bundle = ips_of(&record);
        let medication = &bundle["entry"][0]["resource"]["section"][0];
        assert_eq!(
            medication["emptyReason"]["coding"][0]["code"],
            "unavailable"
        );
        let div = medication["text"]["div"].as_str().unwrap();
        assert!(div.contains("unavailable right now"), "{div}");
        assert!(!div.contains("store timeout"), "{div}");
    }

    #[test]
    fn other_errors_fail_the_record() {
        let result = Record::current(
            patient(),
            [
                Err(fhir::Error::Denied(NO_MEDICATION.into())),
                Err(fhir::Error::Invalid("unknown search parameter".into())),
                Ok(vec![]),
            ],
        );
        assert_eq!(
            result.unwrap_err(),
            fhir::Error::Invalid("unknown search parameter".into())
        );
    }
}

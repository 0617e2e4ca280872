//! The summary as a readable page. `maud` escapes every value it inserts; no JavaScript, no
//! external assets.

use healthcloud_sdk::fhir;
use healthcloud_sdk::html::Layout;
use healthcloud_sdk::model::{AllergyIntolerance, Condition, MedicationStatement, Patient, system};
use maud::{Markup, html};
use serde_json::Value;

use patient_summary_document::{
    ALLERGY_DATA, MEDICATION_DATA, PROBLEM_DATA, Record, Section, allergy_line, decode,
    medication_line, problem_line,
};

/// The app's pages: the SDK's layout and base style, and the app's own style.
pub const LAYOUT: Layout = Layout {
    app_name: "Patient summary",
    style: "
dl { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; }
dt { font-weight: 600; }
dd { margin: 0; }
.origin { color: #555; font-variant: small-caps; }
",
};

/// A whole HTML page.
pub fn page(title: &str, body: Markup) -> String {
    LAYOUT.page(title, &body.into_string())
}

/// The page for a failed platform call: a denial says "denied" and why.
pub fn failure_page(error: &fhir::Error) -> String {
    LAYOUT.failure_page(error, "patient record")
}

/// The summary, section by section as in the FHIR document.
pub fn summary_page(record: &Record, generated_at: &str, document_url: &str) -> String {
    let patient: Patient = decode(&record.patient);
    let name = patient
        .display_name()
        .unwrap_or_else(|| "Unnamed patient".to_owned());
    // `what` names the section's data in a sentence ("Access to medication data was denied").
    let section = |id: &str,
                   title: &str,
                   what: &str,
                   data: &Section,
                   line: fn(&Value) -> String,
                   empty: &str| {
        // Each item says whose record it is from: the summary is assembled from the
        // hospital's, the GP's and other organizations' own systems.
        let lines: Vec<(String, String)> = data
            .items()
            .iter()
            .map(|item| {
                let origin = fhir::Origin::of(item["meta"]["source"].as_str());
                (line(item), origin.label().into_owned())
            })
            .collect();
        html! {
            section aria-labelledby=(id) {
                h2 id=(id) { (title) }
                @if let Some(why) = data.withheld() {
                    p class=(why.kind()) { (why.sentence(what)) }
                } @else if lines.is_empty() {
                    p { (empty) }
                } @else {
                    ul {
                        @for (line, origin) in &lines {
                            li { (line) " " span.origin { "(" (origin) ")" } }
                        }
                    }
                }
            }
        }
    };
    page(
        &format!("Patient summary of {name}"),
        html! {
            h1 { "Patient summary: " (name) }
            dl {
                dt { "Date of birth" } dd { (patient.birth_date.as_deref().unwrap_or("unknown")) }
                dt { "Gender" } dd { (patient.gender.as_deref().unwrap_or("unknown")) }
                @if let Some(cpr) = patient.identifier_in(system::CPR) {
                    dt { "CPR number" } dd { (cpr) }
                }
                dt { "Summary made" } dd { (generated_at) }
            }
            p { "Assembled from each organization's own record; each item names whose it is." }
            (section(
                "medication",
                "Medication",
                MEDICATION_DATA,
                &record.medications,
                |m| medication_line(&decode::<MedicationStatement>(m)),
                "No current medication is recorded.",
            ))
            (section(
                "allergies",
                "Allergies and intolerances",
                ALLERGY_DATA,
                &record.allergies,
                |a| allergy_line(&decode::<AllergyIntolerance>(a)),
                "No current allergies or intolerances are recorded.",
            ))
            (section(
                "problems",
                "Problems",
                PROBLEM_DATA,
                &record.problems,
                |c| problem_line(&decode::<Condition>(c)),
                "No current problems are recorded.",
            ))
            p {
                a href=(document_url) { "This summary as a FHIR document (International Patient Summary, JSON)" }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use healthcloud_sdk::fhir::Withheld;
    use serde_json::json;

    use super::*;

    #[test]
    fn shows_every_section_and_escapes_data() {
        let record = Record {
            patient: json!({"resourceType": "Patient", "id": "p1",
                "name": [{"family": "<Sørensen>", "given": ["Åse"]}],
                "identifier": [{"system": "urn:oid:1.2.208.176.1.2", "value": "0302509996"}]}),
            medications: Section::Read(vec![]),
            allergies: Section::Read(vec![json!({"resourceType": "AllergyIntolerance",
                "code": {"text": "Penicillinallergi"}, "criticality": "high", "category": ["medication"]})]),
            problems: Section::Read(vec![json!({"resourceType": "Condition",
                "meta": {"source": "urn:healthcloud:source:gp"},
                "code": {"text": "Essentiel hypertension"}})]),
        };
        let html = summary_page(
            &record,
            "2026-10-30T08:00:00Z",
            "/apps/r/examples/patient-summary/api/ips",
        );
        assert!(html.contains("Patient summary: Åse &lt;Sørensen&gt;"));
        assert!(html.contains("0302509996"));
        assert!(html.contains("Penicillinallergi (medication; high criticality)"));
        assert!(html.contains("No current medication is recorded."));
        assert!(
            html.contains(r#"<li>Essentiel hypertension <span class="origin">(gp)</span></li>"#),
            "{html}"
        );
        assert!(html.contains(r#"href="/apps/r/examples/patient-summary/api/ips""#));
    }

    #[test]
    fn a_denied_section_says_so_and_the_others_still_show() {
        let record = Record {
            patient: json!({"resourceType": "Patient", "id": "p1", "name": [{"text": "Bo"}]}),
            medications: Section::Withheld(Withheld::Denied(
                "the region has not granted this app search-type of <MedicationStatement>".into(),
            )),
            allergies: Section::Withheld(Withheld::Unavailable("store timeout".into())),
            problems: Section::Read(vec![json!({"resourceType": "Condition",
                "code": {"text": "Type 2 diabetes"}})]),
        };
        let html = summary_page(&record, "2026-10-30T08:00:00Z", "/api/ips");
        assert!(
            html.contains(
                r#"<p class="denied">Access to medication data was denied: the region has not granted this app search-type of &lt;MedicationStatement&gt;</p>"#
            ),
            "{html}"
        );
        assert!(!html.contains("No current medication"), "{html}");
        assert!(html.contains(r#"<p class="unavailable">The allergy and intolerance data is unavailable right now"#), "{html}");
        assert!(!html.contains("store timeout"), "{html}");
        assert!(
            html.contains(r#"<li>Type 2 diabetes <span class="origin">(hospital)</span></li>"#),
            "{html}"
        );
    }
}

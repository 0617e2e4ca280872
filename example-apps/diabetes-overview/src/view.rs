//! The overview's HTML. `maud` escapes every value it inserts; no JavaScript, no external
//! assets.

use healthcloud_sdk::fhir::{self, Section, Withheld};
use healthcloud_sdk::html::Layout;
use maud::{Markup, html};

use crate::summary::{HBA1C_TARGET, HBA1C_UNIT, Summary};

/// The app's pages: the SDK's layout and base style, and the app's own style.
pub const LAYOUT: Layout = Layout {
    app_name: "Diabetes overview",
    style: "
.latest { font-size: 1.25rem; }
",
};

/// A whole HTML page.
pub fn page(title: &str, body: Markup) -> String {
    LAYOUT.page(title, &body.into_string())
}

/// The page for a failed platform call: a denial says "denied" and why.
pub fn failure_page(error: &fhir::Error) -> String {
    LAYOUT.failure_page(error, "diabetes data")
}

/// The page shown to roles the app is not for.
pub fn wrong_role_page(role: &str) -> String {
    page(
        "Not for this role",
        html! {
            h1 { "Not available for your role" }
            p.error { "This app is for clinicians and patients; you are signed in as " (role) "." }
        },
    )
}

fn number(value: f64) -> String {
    // Laboratories report HbA1c in whole mmol/mol and glucose with one decimal; show what
    // was reported, without float noise.
    let rounded = (value * 10.0).round() / 10.0;
    format!("{rounded}")
}

fn signed(change: f64) -> String {
    if change > 0.0 {
        format!("+{}", number(change))
    } else {
        number(change)
    }
}

/// What a section says in place of its data when it could not be read: a denial says
/// "denied" and why. `what` names the data, e.g. "medication data".
fn withheld(id: Option<&str>, what: &str, why: &Withheld) -> Markup {
    html! {
        p class=(why.kind()) id=[id] {
            (why.sentence(what))
            @if let Withheld::Unavailable(_) = why { " Please try again in a few minutes." }
        }
    }
}

/// The overview.
pub fn overview_page(patient_name: Option<&str>, summary: &Summary, json_url: &str) -> String {
    let name = patient_name.unwrap_or("Unnamed patient");
    page(
        &format!("Diabetes overview of {name}"),
        html! {
            h1 { "Diabetes overview: " (name) }
            section aria-labelledby="hba1c-heading" {
                h2 #hba1c-heading { "HbA1c" }
                @match &summary.hba1c {
                    Section::Withheld(why) => (withheld(Some("latest-hba1c"), "HbA1c data", why)),
                    Section::Read(results) => {
                        @match results.first() {
                            Some(latest) => p.latest #latest-hba1c {
                                "Latest HbA1c: " strong { (number(latest.result.value)) " " (latest.result.unit) }
                                " on " (latest.result.date)
                                @if let Some(change) = latest.change {
                                    " (" (signed(change)) " since the previous result)"
                                }
                                @if latest.above_target {
                                    " " span.flag { "above " (HBA1C_TARGET) " " (HBA1C_UNIT) }
                                }
                            },
                            None => p #latest-hba1c { "No HbA1c results recorded." },
                        }
                        @if !results.is_empty() {
                            table {
                                caption {
                                    "HbA1c results, newest first. Marked: above the usual target of "
                                    (HBA1C_TARGET) " " (HBA1C_UNIT) "."
                                }
                                thead { tr {
                                    th scope="col" { "Date" }
                                    th scope="col" { "HbA1c" }
                                    th scope="col" { "Unit" }
                                    th scope="col" { "Change" }
                                    th scope="col" { "Above target" }
                                } }
                                tbody {
                                    @for row in results {
                                        tr class=[row.above_target.then_some("flagged")] {
                                            td { time datetime=(row.result.effective) { (row.result.date) } }
                                            td.number { (number(row.result.value)) }
                                            td { (row.result.unit) }
                                            td.number { @if let Some(change) = row.change { (signed(change)) } }
                                            td { @if row.above_target { span.flag { "Yes" } } }
                                        }
                                    }
                                }
                            }
                        }
                    },
                }
            }
            section aria-labelledby="glucose-heading" {
                h2 #glucose-heading { "Plasma glucose" }
                @match &summary.glucose {
                    Section::Withheld(why) => (withheld(Some("latest-glucose"), "plasma glucose data", why)),
                    Section::Read(Some(glucose)) => p.latest #latest-glucose {
                        "Latest plasma glucose: " strong { (number(glucose.value)) " " (glucose.unit) }
                        " on " (glucose.date)
                    },
                    Section::Read(None) => p #latest-glucose { "No plasma glucose results recorded." },
                }
            }
            section aria-labelledby="medication-heading" {
                h2 #medication-heading { "Current diabetes medication" }
                @match &summary.medications {
                    Section::Withheld(why) => (withheld(None, "medication data", why)),
                    Section::Read(medications) if medications.is_empty() => {
                        p { "No current diabetes medication (ATC group A10) is recorded." }
                    },
                    Section::Read(medications) => table {
                        caption { "Medicines in ATC group A10 that the patient currently takes." }
                        thead { tr {
                            th scope="col" { "Medicine" }
                            th scope="col" { "ATC" }
                            th scope="col" { "Dosage" }
                            th scope="col" { "Since" }
                        } }
                        tbody {
                            @for medication in medications {
                                tr {
                                    td { (medication.name) }
                                    td { (medication.atc) }
                                    td { (medication.dosage.as_deref().unwrap_or("—")) }
                                    td { (medication.since.as_deref().unwrap_or("—")) }
                                }
                            }
                        }
                    },
                }
            }
            p { a href=(json_url) { "The same overview as JSON" } }
        },
    )
}

#[cfg(test)]
mod tests {
    use crate::summary::{Hba1c, LabValue, Medication};

    use super::*;

    fn summary() -> Summary {
        Summary {
            patient: "p1".into(),
            hba1c: Section::Read(vec![Hba1c {
                result: LabValue {
                    date: "2026-10-01".into(),
                    effective: "2026-10-01T09:00:00+02:00".into(),
                    value: 58.0,
                    unit: "mmol/mol".into(),
                },
                above_target: true,
                change: Some(6.0),
            }]),
            glucose: Section::Read(Some(LabValue {
                date: "2026-10-01".into(),
                effective: "2026-10-01T09:00:00+02:00".into(),
                value: 7.4,
                unit: "mmol/L".into(),
            })),
            medications: Section::Read(vec![Medication {
                atc: "A10BA02".into(),
                name: "Metformin <500 mg>".into(),
                dosage: None,
                since: Some("2024-03-01".into()),
            }]),
        }
    }

    #[test]
    fn shows_latest_values_and_escapes_data() {
        let html = overview_page(
            Some("Bo & Co"),
            &summary(),
            "/apps/r/examples/diabetes-overview/api/summary",
        );
        assert!(html.contains("Latest HbA1c: <strong>58 mmol/mol</strong> on 2026-10-01 (+6 since the previous result)"), "{html}");
        assert!(html.contains("Latest plasma glucose: <strong>7.4 mmol/L</strong> on 2026-10-01"));
        assert!(html.contains("Metformin &lt;500 mg&gt;"));
        assert!(html.contains("Bo &amp; Co"));
        assert!(html.contains(r#"<html lang="en">"#));
    }

    #[test]
    fn denial_is_said_in_words() {
        let html = failure_page(&fhir::Error::Denied(
            "the region has not granted this app search-type of Observation".into(),
        ));
        assert!(html.contains("was denied: the region has not granted"));
    }

    #[test]
    fn a_denied_section_says_so_and_the_others_still_show() {
        let summary = Summary {
            medications: Section::Withheld(Withheld::Denied(
                "the region has not granted this app search-type of <MedicationStatement>".into(),
            )),
            ..summary()
        };
        let html = overview_page(Some("Bo"), &summary, "/api/summary");
        assert!(html.contains("<strong>58 mmol/mol</strong>"), "{html}");
        assert!(html.contains("<strong>7.4 mmol/L</strong>"), "{html}");
        assert!(
            html.contains(
                r#"<p class="denied">Access to medication data was denied: the region has not granted this app search-type of &lt;MedicationStatement&gt;</p>"#
            ),
            "{html}"
        );
        assert!(!html.contains("Metformin"), "{html}");
        assert!(!html.contains("No current diabetes medication"), "{html}");
    }

    #[test]
    fn a_withheld_lab_section_keeps_its_hook() {
        let summary = Summary {
            hba1c: Section::Withheld(Withheld::Denied("no Observation scope".into())),
            glucose: Section::Withheld(Withheld::Unavailable("timeout".into())),
            ..summary()
        };
        let html = overview_page(None, &summary, "/api/summary");
        assert!(
            html.contains(r#"<p class="denied" id="latest-hba1c">Access to HbA1c data was denied: no Observation scope</p>"#),
            "{html}"
        );
        assert!(
            html.contains(r#"<p class="unavailable" id="latest-glucose">"#),
            "{html}"
        );
        assert!(!html.contains("<table><caption>HbA1c"), "{html}");
        assert!(!html.contains("timeout"), "{html}");
        assert!(html.contains("Metformin"), "{html}");
    }
}

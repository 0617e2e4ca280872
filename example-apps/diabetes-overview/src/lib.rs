//! Diabetes overview: the HbA1c trend in mmol/mol (LOINC 59261-8 / NPU27300), the latest
//! plasma glucose in mmol/L (LOINC 2345-7 / NPU02192) and the diabetes medication the
//! patient currently takes (ATC group A10, from active MedicationStatements).
//!
//! - `GET /` — the overview as a page, for a clinician or the patient.
//! - `GET /api/summary` — the same as JSON:
//!   `{"patient", "hba1c": [{"date", "effective", "value", "unit", "above_target", "change"}],
//!   "latest_hba1c", "glucose", "medications": [{"atc", "name", "dosage", "since"}]}`.
//!
//! Each section (HbA1c, glucose, medication) stands on its own: when the platform denies
//! one, or its data is unavailable, that section says so (in JSON the field is
//! `{"denied": reason}` or `{"unavailable": reason}`) and the others are still shown (`200`).
//! When every section is denied (e.g. the patient opted the app out), or the page cannot
//! read the Patient, the denial is shown as such (`403`), unavailable data as `503`, and
//! without a patient in context the app asks for one (`400`).

mod summary;
mod view;

use healthcloud_sdk::context::{self, Role};
use healthcloud_sdk::fhir::{self, Section};
use healthcloud_sdk::model::{MedicationStatement, Observation, Patient, code, system};
use healthcloud_sdk::{Request, Response, Router};
use serde::Serialize;

use crate::summary::{Hba1c, Summary};

healthcloud_sdk::serve!(|request| router().handle(request));

/// Far more results than a patient has of either; an upper bound on one request's work.
const MAX_RESULTS: usize = 500;

fn router() -> Router {
    Router::new()
        .get("/", overview)
        .get("/api/summary", api_summary)
}

fn overview(request: Request) -> Response {
    let launch = context::launch();
    let Some(patient_id) = launch.patient else {
        return Response::html(view::LAYOUT.no_patient_page()).with_status(400);
    };
    if !matches!(
        launch.user.role,
        Role::Clinician | Role::Patient | Role::Citizen
    ) {
        return Response::html(view::wrong_role_page(launch.user.role.as_str())).with_status(403);
    }
    // The page is about the patient: without the Patient there is nothing to show.
    let loaded = fhir::read::<Patient>("Patient", &patient_id)
        .and_then(|patient| Ok((patient, load_summary(patient_id)?)));
    match loaded {
        Ok((patient, summary)) => Response::html(view::overview_page(
            patient.display_name().as_deref(),
            &summary,
            &request.app_url("/api/summary"),
        )),
        Err(error) => Response::html(view::failure_page(&error)).with_status(error.status_code()),
    }
}

#[derive(Serialize)]
struct SummaryBody<'a> {
    #[serde(flatten)]
    summary: &'a Summary,
    latest_hba1c: Section<Option<&'a Hba1c>>,
}

impl SummaryBody<'_> {
    fn of(summary: &Summary) -> SummaryBody<'_> {
        SummaryBody {
            summary,
            latest_hba1c: summary.latest_hba1c(),
        }
    }
}

fn api_summary(_request: Request) -> Response {
    let Some(patient_id) = context::launch().patient else {
        return Response::json_error(
            400,
            "no-patient",
            "a patient must be selected to use this app",
        );
    };
    match load_summary(patient_id) {
        Ok(summary) => Response::json(&SummaryBody::of(&summary)),
        Err(error) => Response::json_fhir_error(&error),
    }
}

/// Every section's search is made; which failures withhold a section only and which fail
/// the overview is [`Summary::new`]'s to decide.
fn load_summary(patient_id: String) -> Result<Summary, fhir::Error> {
    let hba1c: Result<Vec<Observation>, _> = lab_search(code::HBA1C, code::HBA1C_NPU)
        .count(100)
        .limit(MAX_RESULTS)
        .all();
    let glucose: Result<Option<Observation>, _> = lab_search(code::GLUCOSE, code::GLUCOSE_NPU)
        .count(1)
        .first();
    // The search returns every current medicine; which are for diabetes is decided by ATC
    // group, which the server cannot search by prefix.
    let statements: Result<Vec<MedicationStatement>, _> = fhir::search("MedicationStatement")
        .param("status", "active")
        .count(100)
        .limit(MAX_RESULTS)
        .all();
    Summary::new(patient_id, hba1c, glucose, statements)
}

/// Newest first, by either code: laboratories code with LOINC, NPU or both.
fn lab_search(loinc: &str, npu: &str) -> fhir::Search {
    fhir::search("Observation")
        .param(
            "code",
            &format!("{}|{loinc},{}|{npu}", system::LOINC, system::NPU),
        )
        .sort("-date")
}

#[cfg(test)]
mod tests {
    use healthcloud_sdk::fhir::Withheld;
    use serde_json::json;

    use super::*;

    #[test]
    fn a_withheld_section_is_an_object_in_the_json_and_the_rest_is_unchanged() {
        let reason = "the region has not granted this app search-type of MedicationStatement";
        let summary = Summary {
            patient: "p1".into(),
            hba1c: Section::Read(vec![]),
            glucose: Section::Read(None),
            medications: Section::Withheld(Withheld::Denied(reason.into())),
        };
        let body = serde_json::to_value(SummaryBody::of(&summary)).unwrap();
        assert_eq!(
            body,
            json!({"patient": "p1", "hba1c": [], "latest_hba1c": null, "glucose": null,
                "medications": {"denied": reason}})
        );
        let summary = Summary {
            hba1c: Section::Withheld(Withheld::Denied("no Observation".into())),
            ..summary
        };
        let body = serde_json::to_value(SummaryBody::of(&summary)).unwrap();
        assert_eq!(body["hba1c"], json!({"denied": "no Observation"}));
        assert_eq!(body["latest_hba1c"], json!({"denied": "no Observation"}));
    }
}

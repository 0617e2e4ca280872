//! Diabetes overview: the HbA1c trend in mmol/mol (LOINC 59261-8 / NPU27300), the latest
//! plasma glucose in mmol/L (LOINC 2345-7 / NPU02192) and the diabetes medication the
//! patient currently takes (ATC group A10, from active MedicationStatements).
//!
//! - `GET /` — the overview as a page, for a clinician or the patient.
//! - `GET /api/summary` — the same as JSON:
//!   `{"patient", "hba1c": [{"date", "effective", "value", "unit", "above_target", "change"}],
//!   "latest_hba1c", "glucose", "medications": [{"atc", "name", "dosage", "since"}]}`.
//!
//! A denied platform call is shown as such (`403`), unavailable data as `503`, and without
//! a patient in context the app asks for one (`400`).

mod summary;
mod view;

use healthcloud_sdk::context::{self, Role};
use healthcloud_sdk::model::{MedicationStatement, Observation, Patient, code, system};
use healthcloud_sdk::{Request, Response, Router, fhir};
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
        return Response::html(view::no_patient_page()).with_status(400);
    };
    if !matches!(
        launch.user.role,
        Role::Clinician | Role::Patient | Role::Citizen
    ) {
        return Response::html(view::wrong_role_page(launch.user.role.as_str())).with_status(403);
    }
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
    latest_hba1c: Option<&'a Hba1c>,
}

fn api_summary(_request: Request) -> Response {
    let Some(patient_id) = context::launch().patient else {
        return json_error(
            400,
            "no-patient",
            "a patient must be selected to use this app",
        );
    };
    match load_summary(patient_id) {
        Ok(summary) => Response::json(&SummaryBody {
            summary: &summary,
            latest_hba1c: summary.latest_hba1c(),
        }),
        Err(error) => json_error(error.status_code(), error.kind(), &error.to_string()),
    }
}

fn load_summary(patient_id: String) -> Result<Summary, fhir::Error> {
    let hba1c: Vec<Observation> = lab_search(code::HBA1C, code::HBA1C_NPU)
        .count(100)
        .limit(MAX_RESULTS)
        .all()?;
    let glucose: Option<Observation> = lab_search(code::GLUCOSE, code::GLUCOSE_NPU)
        .count(1)
        .first()?;
    // The search returns every current medicine; which are for diabetes is decided by ATC
    // group, which the server cannot search by prefix.
    let statements: Vec<MedicationStatement> = fhir::search("MedicationStatement")
        .param("status", "active")
        .count(100)
        .limit(MAX_RESULTS)
        .all()?;
    Ok(Summary::new(
        patient_id,
        &hba1c,
        glucose.as_ref(),
        &statements,
    ))
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

fn json_error(status: u16, kind: &str, message: &str) -> Response {
    Response::json(&serde_json::json!({ "error": kind, "message": message })).with_status(status)
}

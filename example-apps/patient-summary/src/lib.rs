//! International Patient Summary (IPS), the summary the European Health Data Space (EHDS)
//! exchanges for care across borders.
//!
//! - `GET /api/ips` — a FHIR `document` Bundle (`application/fhir+json`): a Composition
//!   (LOINC 60591-5 "Patient summary Document") about the patient with the sections
//!   medication (10160-0), allergies (48765-2) and problems (11450-4), then the Patient and
//!   every resource the sections refer to. Entries have `urn:uuid:` fullUrls; an empty
//!   section has a narrative and an `emptyReason`.
//! - `GET /` — the same summary as a readable page.
//!
//! Each section stands on its own: when the platform denies its search, the section is
//! empty with `emptyReason` `withheld` and a narrative saying access was denied and why
//! (`unavailable` when its data could not be reached), and the rest of the summary is still
//! made (`200`). When the Patient itself cannot be read the denial is shown as such (`403`;
//! an OperationOutcome for `/api/ips`), unavailable data as `503`, and without a patient in
//! context the app asks for one (`400`).

mod view;

use healthcloud_sdk::context::{self, LaunchContext};
use healthcloud_sdk::{Request, Response, Router, clock, fhir};
use patient_summary_document::{self as ips, Authorship, MAX_ENTRIES, Record, SEARCHES};
use serde_json::{Value, json};

healthcloud_sdk::serve!(|request| router().handle(request));

fn router() -> Router {
    Router::new()
        .get("/", summary_page)
        .get("/api/ips", ips_document)
}

fn summary_page(request: Request) -> Response {
    let Some(patient_id) = context::launch().patient else {
        return Response::html(view::LAYOUT.no_patient_page()).with_status(400);
    };
    match load_record(&patient_id) {
        Ok(record) => Response::html(view::summary_page(
            &record,
            &clock::now_instant(),
            &request.app_url("/api/ips"),
        )),
        Err(error) => Response::html(view::failure_page(&error)).with_status(error.status_code()),
    }
}

fn ips_document(_request: Request) -> Response {
    let launch = context::launch();
    let Some(patient_id) = launch.patient.clone() else {
        return operation_outcome(
            400,
            "required",
            "a patient must be selected to use this app",
        );
    };
    match load_record(&patient_id) {
        Ok(record) => {
            let authorship = Authorship {
                timestamp: clock::now_instant(),
                author: author(&launch),
            };
            let bundle = ips::document(&record, &authorship, || uuid::Uuid::new_v4().to_string());
            fhir_json(200, &bundle)
        }
        Err(error) => {
            let code = match error {
                fhir::Error::Denied(_) => "forbidden",
                fhir::Error::NotFound => "not-found",
                fhir::Error::Unavailable(_) => "transient",
                fhir::Error::Invalid(_) | fhir::Error::Json(_) => "exception",
            };
            operation_outcome(error.status_code(), code, &error.to_string())
        }
    }
}

/// The app assembles the document; the platform knows which install and user it ran for.
fn author(launch: &LaunchContext) -> String {
    format!(
        "{} {} (healthcloud app, region {})",
        launch.app_id, launch.app_version, launch.region
    )
}

/// The summary is about the patient: without the Patient there is no summary. Each
/// section's search is made; which failures withhold a section only is [`Record::current`]'s
/// to decide.
fn load_record(patient_id: &str) -> Result<Record, fhir::Error> {
    let patient: Value = fhir::read("Patient", patient_id)?;
    let sections = SEARCHES.map(|section| {
        let mut search = fhir::search(section.resource_type);
        for (name, value) in section.params {
            search = search.param(name, value);
        }
        search.count(100).limit(MAX_ENTRIES).all()
    });
    Record::current(patient, sections)
}

fn fhir_json(status: u16, body: &Value) -> Response {
    Response::json(body)
        .with_status(status)
        .with_header("content-type", "application/fhir+json")
}

fn operation_outcome(status: u16, code: &str, diagnostics: &str) -> Response {
    fhir_json(
        status,
        &json!({
            "resourceType": "OperationOutcome",
            "issue": [{ "severity": "error", "code": code, "diagnostics": diagnostics }]
        }),
    )
}

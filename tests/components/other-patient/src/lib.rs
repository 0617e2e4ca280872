//! Asks for data of whatever patient the request names, to test that the host confines FHIR
//! calls to the patient in context and to the granted scopes: `/read?id=X` reads `Patient/X`,
//! `/search?patient=X` searches Observations with `patient=X`, `/context` shows the launch
//! context the host gave.

use std::collections::BTreeSet;

use guest_support::bindings::exports::wasi::http::incoming_handler::Guest;
use guest_support::bindings::healthcloud::platform::context::{self, Role};
use guest_support::bindings::healthcloud::platform::fhir::{self, SearchParam};
use guest_support::bindings::wasi::http::types::{IncomingRequest, ResponseOutparam};
use guest_support::{
    Request, respond, respond_fhir_error, respond_json, respond_no_route, respond_text,
};
use serde_json::{Value, json};

/// How many pages `/search` follows before it stops, so a host that never ends a search
/// cannot keep the component busy.
const MAX_PAGES: usize = 100;

struct OtherPatient;

impl Guest for OtherPatient {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let request = Request::new(&request);
        if request.ends_with("/ok") {
            respond_text(response_out, 200, "ok");
        } else if request.ends_with("/read") {
            let Some(id) = request.query("id") else {
                return respond_text(response_out, 400, "missing query parameter: id");
            };
            match fhir::read("Patient", &id) {
                Ok(resource) => respond(response_out, 200, "application/fhir+json", resource),
                Err(error) => respond_fhir_error(response_out, &error),
            }
        } else if request.ends_with("/search") {
            let Some(patient) = request.query("patient") else {
                return respond_text(response_out, 400, "missing query parameter: patient");
            };
            match search_subjects(&patient) {
                Ok(found) => respond_json(response_out, 200, found.to_string()),
                Err(error) => respond_fhir_error(response_out, &error),
            }
        } else if request.ends_with("/context") {
            respond_json(response_out, 200, launch_json().to_string());
        } else {
            respond_no_route(response_out, &request);
        }
    }
}

/// `{"total": n, "patients": [...]}`: the search's total and the distinct
/// `subject.reference`s of every Observation on every page.
fn search_subjects(patient: &str) -> Result<Value, fhir::Error> {
    let params = [SearchParam {
        name: "patient".to_owned(),
        value: patient.to_owned(),
    }];
    let mut subjects = BTreeSet::new();
    let mut total = None;
    let mut cursor = None;
    for _ in 0..MAX_PAGES {
        let page = fhir::search("Observation", &params, cursor.as_deref())?;
        total.get_or_insert(page.total);
        for resource in &page.resources {
            let reference = serde_json::from_str::<Value>(resource)
                .ok()
                .and_then(|observation| {
                    observation["subject"]["reference"]
                        .as_str()
                        .map(str::to_owned)
                });
            subjects.insert(reference.unwrap_or_else(|| "(no subject.reference)".to_owned()));
        }
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    Ok(json!({ "total": total.unwrap_or(0), "patients": subjects }))
}

/// The launch context with the WIT's field names.
fn launch_json() -> Value {
    let launch = context::launch();
    json!({
        "region": launch.region,
        "app-id": launch.app_id,
        "app-version": launch.app_version,
        "user": {
            "id": launch.user.id,
            "role": role_name(launch.user.role),
            "fhir-user": launch.user.fhir_user,
        },
        "patient": launch.patient,
        "granted-scopes": launch.granted_scopes,
        "user-scopes": launch.user_scopes,
    })
}

/// The WIT name of a role.
fn role_name(role: Role) -> &'static str {
    match role {
        Role::Clinician => "clinician",
        Role::Patient => "patient",
        Role::Citizen => "citizen",
        Role::RegionAdmin => "region-admin",
        Role::StoreAdmin => "store-admin",
        Role::Publisher => "publisher",
    }
}

guest_support::bindings::export!(OtherPatient);

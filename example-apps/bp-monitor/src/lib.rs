//! Blood pressure follow-up for heart patients.
//!
//! - `GET /` — for a clinician: the patient's name, the latest reading, and the trend of the
//!   last 90 days as an SVG chart and a table, readings at or above 140/90 flagged, each
//!   saying where it was measured: at home (entered with this app), or read from the record
//!   of the hospital, the GP or the municipality's home care ([`fhir::origin`]); then, for
//!   each place with no reading in those days, its newest earlier one. For the patient (or a
//!   citizen, about themselves): a form to enter a home measurement, then their own trend.
//! - `POST /measurements` — the form's target: validates the numbers, stores a FHIR
//!   Observation (LOINC 85354-9 with components 8480-6 and 8462-4 in mm[Hg]) and redirects to
//!   `/`.
//! - `GET /api/readings` — the trend as JSON:
//!   `{"patient", "readings": [{"date", "effective", "systolic", "diastolic", "flagged", "origin"}], "latest", "elsewhere"}`.
//!
//! A platform call that is denied is shown as such (`403`), unavailable data as `503`, and
//! without a patient in context the app asks for one (`400`).

use bp_monitor_pages::reading::{DATE_GRACE_DAYS, Measurement, Reading};
use bp_monitor_pages::view::{self, Entry, Subject, Trend};
use healthcloud_sdk::clock::{self, Date};
use healthcloud_sdk::context::{self, Role};
use healthcloud_sdk::model::{Observation, Patient, code, system};
use healthcloud_sdk::{Request, Response, Router, fhir, log};
use serde::Serialize;

healthcloud_sdk::serve!(|request| router().handle(request));

/// How many days back the trend goes.
const TREND_DAYS: i64 = 90;
/// More readings than anyone measures in the window; an upper bound on one page's work.
const MAX_READINGS: usize = 1000;
/// How many of the newest panels before the window are looked through for the latest reading
/// (when the window holds none) and for the newest one from each place with none in the
/// window: one page.
const EARLIER_LOOKBACK: u32 = 100;

fn router() -> Router {
    Router::new()
        .get("/", home)
        .post("/measurements", record_measurement)
        .get("/api/readings", api_readings)
}

fn home(request: Request) -> Response {
    let launch = context::launch();
    let Some(patient_id) = launch.patient else {
        return Response::html(view::LAYOUT.no_patient_page()).with_status(400);
    };
    match launch.user.role {
        Role::Clinician => clinician_home(&patient_id),
        role if role.is_own_record() => {
            let saved = request.query_param("saved") == Some("1");
            patient_home(&request, saved, &Entry::default(), 200)
        }
        role => Response::html(view::wrong_role_page(role.as_str())).with_status(403),
    }
}

fn clinician_home(patient_id: &str) -> Response {
    let trend = match load_trend() {
        Ok(trend) => trend,
        Err(error) => return failure_page(&error, Subject::Readings),
    };
    match fhir::read::<Patient>("Patient", patient_id) {
        Ok(patient) => Response::html(view::clinician_page(
            patient.display_name().as_deref(),
            &trend,
            TREND_DAYS,
        )),
        Err(error) => failure_page(&error, Subject::PatientRecord),
    }
}

/// The patient's page: the entry form (with `entry` shown again after a failed attempt)
/// and their own trend. The form is useful even when reading the trend is not allowed, so
/// a failed search is shown in its section, with its status.
fn patient_home(request: &Request, saved: bool, entry: &Entry, status: u16) -> Response {
    let trend = load_trend();
    let status = match &trend {
        Err(error) => {
            note_failure(error, "search blood pressure readings");
            error.status_code()
        }
        Ok(_) => status,
    };
    Response::html(view::patient_page(
        &request.app_url("/measurements"),
        saved,
        entry,
        trend.as_ref(),
        TREND_DAYS,
        &Date::today().add_days(DATE_GRACE_DAYS).to_string(),
    ))
    .with_status(status)
}

fn record_measurement(request: Request) -> Response {
    let launch = context::launch();
    let Some(patient_id) = launch.patient else {
        return Response::html(view::LAYOUT.no_patient_page()).with_status(400);
    };
    if !launch.user.role.is_own_record() {
        return Response::html(view::patients_only_page()).with_status(403);
    }
    let form = match request.form() {
        Ok(form) => form,
        Err(error) => return Response::text(error.to_string()).with_status(415),
    };
    let measurement = match Measurement::from_form(&form, Date::today()) {
        Ok(measurement) => measurement,
        Err(errors) => {
            let entry = Entry {
                systolic: form.get("systolic").unwrap_or_default().to_owned(),
                diastolic: form.get("diastolic").unwrap_or_default().to_owned(),
                date: form.get("date").unwrap_or_default().to_owned(),
                errors,
            };
            return patient_home(&request, false, &entry, 400);
        }
    };
    let observation = measurement.to_observation(&patient_id, &clock::now_instant());
    match fhir::create(&observation) {
        Ok(_) => {
            log::info("home blood pressure measurement saved", &[]);
            // After a POST, send the browser back to the page with GET (no resubmission on
            // reload). The location must include the mount point: the app is not at `/`.
            Response::redirect(request.app_url("/?saved=1"))
        }
        Err(error) => failure_page(&error, Subject::Saving),
    }
}

#[derive(Serialize)]
struct ReadingsBody {
    patient: String,
    readings: Vec<Reading>,
    latest: Option<Reading>,
    elsewhere: Vec<Reading>,
}

fn api_readings(_request: Request) -> Response {
    let Some(patient_id) = context::launch().patient else {
        return Response::json_error(
            400,
            "no-patient",
            "a patient must be selected to use this app",
        );
    };
    match load_trend() {
        Ok(trend) => Response::json(&ReadingsBody {
            patient: patient_id,
            readings: trend.readings,
            latest: trend.latest,
            elsewhere: trend.elsewhere,
        }),
        Err(error) => {
            note_failure(&error, "search blood pressure readings");
            Response::json_fhir_error(&error)
        }
    }
}

/// The patient in context's readings of the last [`TREND_DAYS`] days, newest first; the
/// newest reading even if it is older; and the newest earlier reading of each place (home,
/// the GP, the hospital, …) with none in the window.
fn load_trend() -> Result<Trend, fhir::Error> {
    let since = Date::today().add_days(-TREND_DAYS);
    let window = blood_pressure_search()
        .param("date", &format!("ge{since}"))
        .count(100)
        .limit(MAX_READINGS)
        .all_pages::<Observation>()?;
    let readings: Vec<Reading> = window
        .resources
        .iter()
        .filter_map(Reading::from_observation)
        .collect();
    let before = blood_pressure_search()
        .param("date", &format!("lt{since}"))
        .count(EARLIER_LOOKBACK)
        .first_page::<Observation>()?;
    let earlier: Vec<Reading> = before
        .resources
        .iter()
        .filter_map(Reading::from_observation)
        .collect();
    let mut trend = Trend::new(readings, &earlier);
    // A place that did not answer is said, not silently left out.
    for missing in window.incomplete.iter().chain(&before.incomplete) {
        if !trend.missing.contains(&missing.source) {
            trend.missing.push(missing.source.clone());
        }
    }
    Ok(trend)
}

fn blood_pressure_search() -> fhir::Search {
    fhir::search("Observation")
        .param(
            "code",
            &format!("{}|{}", system::LOINC, code::BLOOD_PRESSURE_PANEL),
        )
        .sort("-date")
}

fn failure_page(error: &fhir::Error, subject: Subject) -> Response {
    let action = match subject {
        Subject::Readings => "search blood pressure readings",
        Subject::PatientRecord => "read the patient",
        Subject::Saving => "create a blood pressure observation",
    };
    note_failure(error, action);
    Response::html(view::failure_page(error, subject)).with_status(error.status_code())
}

/// Logs what operators and the vendor can act on. Denials are the platform working as
/// intended (and already in the patient's audit trail), so they are not logged again.
fn note_failure(error: &fhir::Error, action: &str) {
    match error {
        fhir::Error::Unavailable(reason) => log::warn(
            "FHIR data unavailable",
            &[("action", action), ("reason", reason)],
        ),
        fhir::Error::Invalid(reason) | fhir::Error::Json(reason) => log::error(
            "FHIR call failed: a fault in the app",
            &[
                ("action", action),
                ("kind", error.kind()),
                ("reason", reason),
            ],
        ),
        fhir::Error::Denied(_) | fhir::Error::NotFound => {}
    }
}

//! The app's HTML: pages, the trend table and an inline SVG chart. `maud` escapes every
//! value it inserts, so data (patient names, reasons from the platform, form input) cannot
//! become markup. No JavaScript and no external assets: the page is one document.

use healthcloud_sdk::fhir;
use healthcloud_sdk::html::Layout;
use maud::{Markup, html};

use crate::reading::{
    DIASTOLIC_LIMIT, DIASTOLIC_RANGE, FieldError, Reading, SYSTOLIC_LIMIT, SYSTOLIC_RANGE,
};

/// The app's pages: the SDK's layout and base style, and the app's own style.
pub const LAYOUT: Layout = Layout {
    app_name: "Blood pressure monitor",
    style: "
h1 { margin-top: .25rem; }
#latest { font-size: 1.25rem; }
.errors { border-left: .25rem solid #8a1c12; background: #fdecea; padding: .5rem 1rem; }
.saved { border-left: .25rem solid #1e6b33; background: #e7f4ea; padding: .5rem 1rem; }
form p { margin: .75rem 0; }
label { display: block; font-weight: 600; }
input { font-size: 1rem; padding: .25rem; }
.field-error { color: #8a1c12; display: block; }
figure { margin: 1rem 0; }
svg { max-width: 100%; height: auto; }
.origin { font-variant: small-caps; }
",
};

/// The trend of one patient's blood pressure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trend {
    /// Readings of the trend window, newest first.
    pub readings: Vec<Reading>,
    /// The newest reading, also when it is older than the window.
    pub latest: Option<Reading>,
    /// For each place with no reading in the window, its newest earlier reading, newest
    /// first ([`Trend::newest_from_elsewhere`]): the GP's or the hospital's last measurement
    /// beside a window of home measurements.
    pub elsewhere: Vec<Reading>,
    /// The places (sources) whose readings are missing because they did not answer: what
    /// the page shows may not be everything.
    pub missing: Vec<String>,
}

impl Trend {
    /// The trend of `readings` (the window's, newest first) and `earlier` (the newest readings
    /// before the window, newest first).
    pub fn new(readings: Vec<Reading>, earlier: &[Reading]) -> Trend {
        let latest = readings.first().or(earlier.first()).cloned();
        let elsewhere = Trend::newest_from_elsewhere(&readings, earlier);
        Trend {
            readings,
            latest,
            elsewhere,
            missing: Vec::new(),
        }
    }

    /// For each place (origin) in `earlier` that has no reading in `window`, its newest
    /// reading in `earlier`; both newest first.
    pub fn newest_from_elsewhere(window: &[Reading], earlier: &[Reading]) -> Vec<Reading> {
        let mut newest: Vec<Reading> = Vec::new();
        for reading in earlier {
            let seen = window
                .iter()
                .chain(&newest)
                .any(|other| other.origin == reading.origin);
            if !seen {
                newest.push(reading.clone());
            }
        }
        newest
    }
}

/// Which data a failed platform call was about, to say so in words.
#[derive(Debug, Clone, Copy)]
pub enum Subject {
    /// Searching blood pressure observations.
    Readings,
    /// Reading the Patient resource.
    PatientRecord,
    /// Creating a home measurement.
    Saving,
}

impl Subject {
    fn denied(self) -> &'static str {
        match self {
            Subject::Readings => "Access to blood-pressure readings was denied",
            Subject::PatientRecord => "Access to the patient's record was denied",
            Subject::Saving => "Saving the measurement was denied",
        }
    }

    fn unavailable(self) -> &'static str {
        match self {
            Subject::Readings => "Blood-pressure readings are unavailable right now",
            Subject::PatientRecord => "The patient's record is unavailable right now",
            Subject::Saving => "The measurement could not be saved right now",
        }
    }
}

/// A whole HTML page.
pub fn page(title: &str, body: Markup) -> String {
    LAYOUT.page(title, &body.into_string())
}

/// Why a platform call failed, in words for the user. `denied` says "denied" and gives the
/// platform's reason, so the user knows it is a permission and not a fault.
pub fn failure(error: &fhir::Error, subject: Subject) -> Markup {
    html! {
        @match error {
            fhir::Error::Denied(reason) => {
                p.denied role="alert" { (subject.denied()) ": " (reason) }
            }
            fhir::Error::Unavailable(_) => {
                p.unavailable role="alert" {
                    (subject.unavailable())
                    ": the health record could not be reached. Please try again in a few minutes."
                }
            }
            fhir::Error::NotFound => {
                p.error role="alert" { "The patient's record was not found." }
            }
            fhir::Error::Invalid(_) | fhir::Error::Json(_) => {
                p.error role="alert" {
                    "Something went wrong in this app. The fault has been logged for its vendor."
                }
            }
        }
    }
}

/// The page for a failed platform call.
pub fn failure_page(error: &fhir::Error, subject: Subject) -> String {
    page(
        "Not available",
        html! {
            h1 { "Blood pressure" }
            (failure(error, subject))
        },
    )
}

/// The page shown to roles the app is not for.
pub fn wrong_role_page(role: &str) -> String {
    page(
        "Not for this role",
        html! {
            h1 { "Not available for your role" }
            p.error {
                "This app is for clinicians and patients; you are signed in as " (role) "."
            }
        },
    )
}

/// The page shown when someone other than the patient tries to enter a home measurement.
pub fn patients_only_page() -> String {
    page(
        "Patients only",
        html! {
            h1 { "Home measurements are entered by the patient" }
            p.error {
                "Only the patient (signed in as patient or citizen) can enter home measurements \
                 in this app. Clinic measurements belong in the clinic's own record."
            }
        },
    )
}

/// The clinician's view: the patient's name, the latest reading, a chart and a table.
pub fn clinician_page(patient_name: Option<&str>, trend: &Trend, window_days: i64) -> String {
    let name = patient_name.unwrap_or("Unnamed patient");
    page(
        &format!("Blood pressure of {name}"),
        html! {
            h1 { "Blood pressure: " (name) }
            (trend_section(trend, window_days))
        },
    )
}

/// What the patient typed, and what is wrong with it, to show the form again.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    /// The submitted fields, as typed.
    pub systolic: String,
    /// As typed.
    pub diastolic: String,
    /// As typed.
    pub date: String,
    /// What to fix.
    pub errors: Vec<FieldError>,
}

impl Entry {
    fn error(&self, field: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|e| e.field == field)
            .map(|e| e.message.as_str())
    }
}

/// The patient's view: the entry form, then their own trend (or why it cannot be shown).
pub fn patient_page(
    form_action: &str,
    saved: bool,
    entry: &Entry,
    trend: Result<&Trend, &fhir::Error>,
    window_days: i64,
    latest_date: &str,
) -> String {
    page(
        "Your blood pressure",
        html! {
            h1 { "Your blood pressure" }
            @if saved {
                p.saved role="status" { "Your measurement was saved." }
            }
            (entry_form(form_action, entry, latest_date))
            @match trend {
                Ok(trend) => (trend_section(trend, window_days)),
                Err(error) => {
                    h2 { "Your readings" }
                    (failure(error, Subject::Readings))
                }
            }
        },
    )
}

/// What kind of input a form field is.
enum Input {
    /// Whole mmHg, at least the first and at most the second.
    Pressure(u16, u16),
    /// A date, at most this one (`YYYY-MM-DD`).
    Date(String),
}

fn entry_form(action: &str, entry: &Entry, latest_date: &str) -> Markup {
    let field = |name: &'static str, label: &str, hint: &str, input: Input, value: &str| {
        let error = entry.error(name);
        let hint_id = format!("{name}-hint");
        let error_id = format!("{name}-error");
        let described_by = match error {
            Some(_) => format!("{hint_id} {error_id}"),
            None => hint_id.clone(),
        };
        let invalid = error.map(|_| "true");
        html! {
            p {
                label for=(name) { (label) }
                span.hint id=(hint_id) { (hint) }
                @if let Some(message) = error {
                    span.field-error id=(error_id) { (message) }
                }
                @match input {
                    Input::Pressure(min, max) => {
                        input type="number" inputmode="numeric" id=(name) name=(name) value=(value)
                            required min=(min) max=(max) step="1"
                            aria-describedby=(described_by) aria-invalid=[invalid];
                    }
                    Input::Date(max) => {
                        input type="date" id=(name) name=(name) value=(value) max=(max)
                            aria-describedby=(described_by) aria-invalid=[invalid];
                    }
                }
            }
        }
    };
    let (systolic_min, systolic_max) = SYSTOLIC_RANGE;
    let (diastolic_min, diastolic_max) = DIASTOLIC_RANGE;
    html! {
        section aria-labelledby="entry-heading" {
            h2 #entry-heading { "Enter a home measurement" }
            @if !entry.errors.is_empty() {
                div.errors role="alert" {
                    p { strong { "The measurement was not saved." } " Please correct:" }
                    ul {
                        @for error in &entry.errors {
                            li { a href={ "#" (error.field) } { (error.message) } }
                        }
                    }
                }
            }
            form method="post" action=(action) {
                (field("systolic", "Systolic (upper) pressure, mmHg", " For example 128.",
                    Input::Pressure(systolic_min, systolic_max), &entry.systolic))
                (field("diastolic", "Diastolic (lower) pressure, mmHg", " For example 82.",
                    Input::Pressure(diastolic_min, diastolic_max), &entry.diastolic))
                (field("date", "Date measured (optional)", " Leave empty if you measured just now.",
                    Input::Date(latest_date.to_owned()), &entry.date))
                p { button type="submit" { "Save measurement" } }
            }
        }
    }
}

/// Each place readings came from with how many, in order of first appearance (newest
/// first): `home: 12, gp: 2`.
fn origins(readings: &[Reading]) -> Vec<(&str, usize)> {
    let mut counted: Vec<(&str, usize)> = Vec::new();
    for reading in readings {
        match counted
            .iter_mut()
            .find(|(origin, _)| *origin == reading.origin)
        {
            Some((_, count)) => *count += 1,
            None => counted.push((&reading.origin, 1)),
        }
    }
    counted
}

fn trend_section(trend: &Trend, window_days: i64) -> Markup {
    html! {
        section aria-labelledby="trend-heading" {
            h2 #trend-heading { "Readings of the last " (window_days) " days" }
            @if !trend.missing.is_empty() {
                p #missing role="status" {
                    "Not shown: readings from "
                    @for (i, place) in trend.missing.iter().enumerate() {
                        @if i > 0 { ", " }
                        span.origin { (place) }
                    }
                    ", which did not answer just now. What you see may not be every reading; try again later."
                }
            }
            @match &trend.latest {
                Some(latest) => {
                    p #latest {
                        "Latest: " strong { (latest.systolic) "/" (latest.diastolic) " mmHg" }
                        " on " (latest.date)
                        " " span.origin { "(" (latest.origin) ")" }
                        @if latest.flagged {
                            " " span.flag { "(at or above " (SYSTOLIC_LIMIT) "/" (DIASTOLIC_LIMIT) ")" }
                        }
                    }
                }
                None => p #latest { "No blood pressure readings recorded." }
            }
            @if trend.readings.is_empty() {
                p { "No readings in the last " (window_days) " days." }
            } @else {
                p #origins {
                    "Measured at: "
                    @for (i, (origin, count)) in origins(&trend.readings).into_iter().enumerate() {
                        @if i > 0 { ", " }
                        span.origin { (origin) } " (" (count) ")"
                    }
                    ". Readings from other places than home are read from each place's own record."
                }
                (chart(&trend.readings))
                table {
                    caption { "Readings, newest first. Flagged: at or above "
                        (SYSTOLIC_LIMIT) "/" (DIASTOLIC_LIMIT) " mmHg." }
                    (reading_head())
                    tbody {
                        @for reading in &trend.readings {
                            (reading_row(reading))
                        }
                    }
                }
            }
        }
        @if !trend.elsewhere.is_empty() {
            section aria-labelledby="elsewhere-heading" {
                h2 #elsewhere-heading { "Earlier readings from other places" }
                table #elsewhere {
                    caption { "The newest reading from each place with none in the last "
                        (window_days) " days, newest first." }
                    (reading_head())
                    tbody {
                        @for reading in &trend.elsewhere {
                            (reading_row(reading))
                        }
                    }
                }
            }
        }
    }
}

fn reading_head() -> Markup {
    html! {
        thead {
            tr {
                th scope="col" { "Date" }
                th scope="col" { "Measured at" }
                th scope="col" { "Systolic (mmHg)" }
                th scope="col" { "Diastolic (mmHg)" }
                th scope="col" { "Flag" }
            }
        }
    }
}

fn reading_row(reading: &Reading) -> Markup {
    html! {
        tr class=[reading.flagged.then_some("flagged")] {
            td { time datetime=(reading.effective) { (reading.date) } }
            td.origin { (reading.origin) }
            td.number { (reading.systolic) }
            td.number { (reading.diastolic) }
            td { @if reading.flagged { span.flag { "High" } } }
        }
    }
}

const CHART_WIDTH: f64 = 640.0;
const CHART_HEIGHT: f64 = 280.0;
const MARGIN_LEFT: f64 = 48.0;
const MARGIN_RIGHT: f64 = 16.0;
const MARGIN_TOP: f64 = 16.0;
const MARGIN_BOTTOM: f64 = 36.0;
const GRID_STEP: u16 = 20;
const SYSTOLIC_COLOUR: &str = "#b3261e";
const DIASTOLIC_COLOUR: &str = "#1f5fbf";

/// A line chart of systolic and diastolic pressure over time (`readings` newest first),
/// with the flagging thresholds as dashed lines. Described in words for screen readers; the
/// table below it holds the same numbers.
pub fn chart(readings: &[Reading]) -> Markup {
    let oldest_first: Vec<&Reading> = readings.iter().rev().collect();
    let day = |r: &Reading| {
        healthcloud_sdk::clock::Date::parse(&r.date).map_or(0, |d| d.days_since_epoch())
    };
    let (Some(first), Some(last)) = (oldest_first.first(), oldest_first.last()) else {
        return html! {};
    };
    let (first_day, last_day) = (day(first), day(last));

    let lowest = oldest_first.iter().map(|r| r.diastolic).min().unwrap_or(60);
    let highest = oldest_first.iter().map(|r| r.systolic).max().unwrap_or(160);
    // Always show both thresholds, with a little room around the data.
    let y_min = (lowest.saturating_sub(10).min(DIASTOLIC_LIMIT - 30) / GRID_STEP) * GRID_STEP;
    let y_max =
        (highest.saturating_add(10).max(SYSTOLIC_LIMIT + 20)).div_ceil(GRID_STEP) * GRID_STEP;

    let plot_width = CHART_WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
    let plot_height = CHART_HEIGHT - MARGIN_TOP - MARGIN_BOTTOM;
    let x = |r: &Reading| {
        if last_day == first_day {
            MARGIN_LEFT + plot_width / 2.0
        } else {
            MARGIN_LEFT + (day(r) - first_day) as f64 / (last_day - first_day) as f64 * plot_width
        }
    };
    let y =
        |value: u16| MARGIN_TOP + f64::from(y_max - value) / f64::from(y_max - y_min) * plot_height;
    let points = |value: fn(&Reading) -> u16| {
        oldest_first
            .iter()
            .map(|r| format!("{:.1},{:.1}", x(r), y(value(r))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let grid: Vec<u16> = (y_min..=y_max).step_by(usize::from(GRID_STEP)).collect();
    let right = CHART_WIDTH - MARGIN_RIGHT;
    let bottom = CHART_HEIGHT - MARGIN_BOTTOM;
    let description = format!(
        "{} from {} to {}. Systolic ranged from {} to {} mmHg, diastolic from {} to {} mmHg. \
         {} at or above {}/{}.",
        count(readings.len(), "reading", "readings"),
        first.date,
        last.date,
        oldest_first
            .iter()
            .map(|r| r.systolic)
            .min()
            .unwrap_or_default(),
        highest,
        lowest,
        oldest_first
            .iter()
            .map(|r| r.diastolic)
            .max()
            .unwrap_or_default(),
        count(
            readings.iter().filter(|r| r.flagged).count(),
            "reading is",
            "readings are"
        ),
        SYSTOLIC_LIMIT,
        DIASTOLIC_LIMIT,
    );

    html! {
        figure {
            svg xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (CHART_WIDTH) " " (CHART_HEIGHT) }
                width=(CHART_WIDTH) height=(CHART_HEIGHT) role="img"
                aria-labelledby="chart-title chart-description" {
                title #chart-title { "Blood pressure trend" }
                desc #chart-description { (description) }
                g font-size="12" fill="#555" {
                    @for value in &grid {
                        line x1=(MARGIN_LEFT) x2=(right) y1=(format!("{:.1}", y(*value))) y2=(format!("{:.1}", y(*value)))
                            stroke="#e3e3e3" stroke-width="1" {}
                        text x=(MARGIN_LEFT - 6.0) y=(format!("{:.1}", y(*value) + 4.0)) text-anchor="end" { (value) }
                    }
                    text x=(MARGIN_LEFT) y=(bottom + 24.0) text-anchor="start" { (first.date) }
                    @if last_day != first_day {
                        text x=(right) y=(bottom + 24.0) text-anchor="end" { (last.date) }
                    }
                }
                @for limit in [SYSTOLIC_LIMIT, DIASTOLIC_LIMIT] {
                    line x1=(MARGIN_LEFT) x2=(right) y1=(format!("{:.1}", y(limit))) y2=(format!("{:.1}", y(limit)))
                        stroke="#8a1c12" stroke-width="1" stroke-dasharray="6 4" {}
                }
                polyline points=(points(|r| r.systolic)) fill="none" stroke=(SYSTOLIC_COLOUR) stroke-width="2" {}
                polyline points=(points(|r| r.diastolic)) fill="none" stroke=(DIASTOLIC_COLOUR) stroke-width="2" {}
                @for reading in &oldest_first {
                    g data-origin=(reading.origin) {
                        title { (reading.date) ", " (reading.origin) ": " (reading.systolic) "/" (reading.diastolic) " mmHg" }
                        @if reading.origin == "home" {
                            circle cx=(format!("{:.1}", x(reading))) cy=(format!("{:.1}", y(reading.systolic))) r="3" fill=(SYSTOLIC_COLOUR) {}
                            circle cx=(format!("{:.1}", x(reading))) cy=(format!("{:.1}", y(reading.diastolic))) r="3" fill=(DIASTOLIC_COLOUR) {}
                        } @else {
                            // Measured by a professional: a larger hollow marker.
                            circle cx=(format!("{:.1}", x(reading))) cy=(format!("{:.1}", y(reading.systolic))) r="5" fill="#fff" stroke=(SYSTOLIC_COLOUR) stroke-width="2" {}
                            circle cx=(format!("{:.1}", x(reading))) cy=(format!("{:.1}", y(reading.diastolic))) r="5" fill="#fff" stroke=(DIASTOLIC_COLOUR) stroke-width="2" {}
                        }
                    }
                }
            }
            figcaption {
                "Upper line: systolic; lower line: diastolic (mmHg). Dashed lines mark "
                (SYSTOLIC_LIMIT) " and " (DIASTOLIC_LIMIT) " mmHg. Filled dots: home \
                 measurements; hollow circles: measured at the GP, the hospital or by home care."
            }
        }
    }
}

fn count(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(date: &str, systolic: u16, diastolic: u16) -> Reading {
        Reading {
            date: date.to_owned(),
            effective: format!("{date}T08:00:00+01:00"),
            systolic,
            diastolic,
            flagged: systolic >= SYSTOLIC_LIMIT || diastolic >= DIASTOLIC_LIMIT,
            origin: "home".into(),
        }
    }

    fn at(origin: &str, reading: Reading) -> Reading {
        Reading {
            origin: origin.into(),
            ..reading
        }
    }

    fn trend() -> Trend {
        let readings = vec![
            reading("2026-10-30", 142, 91),
            at("gp", reading("2026-10-12", 150, 88)),
            reading("2026-10-01", 128, 82),
        ];
        Trend::new(readings, &[])
    }

    #[test]
    fn the_latest_reading_is_prominent_and_findable() {
        let html = clinician_page(Some("Åse Sørensen"), &trend(), 90);
        assert!(
            html.contains(r#"<p id="latest">Latest: <strong>142/91 mmHg</strong> on 2026-10-30"#),
            "{html}"
        );
        assert!(html.contains("<html lang=\"en\">"));
        assert!(html.contains("<th scope=\"col\">Systolic (mmHg)</th>"));
        assert!(html.contains("<svg"));
        assert_eq!(html.matches("<polyline").count(), 2);
        assert!(!html.contains("<script"));
    }

    #[test]
    fn each_reading_says_where_it_was_measured() {
        let html = clinician_page(None, &trend(), 90);
        assert!(
            html.contains("<th scope=\"col\">Measured at</th>"),
            "{html}"
        );
        assert!(html.contains("<td class=\"origin\">gp</td>"), "{html}");
        assert_eq!(html.matches("<td class=\"origin\">home</td>").count(), 2);
        assert!(
            html.contains(r#"Measured at: <span class="origin">home</span> (2), <span class="origin">gp</span> (1)."#),
            "{html}"
        );
        assert!(html.contains(r#"<g data-origin="gp"><title>2026-10-12, gp: 150/88 mmHg</title>"#));
        assert!(!html.contains("elsewhere"), "nothing earlier: {html}");
    }

    #[test]
    fn the_newest_earlier_reading_of_each_place_missing_from_the_window_is_shown() {
        let earlier = [
            reading("2026-07-30", 135, 85),
            at("gp", reading("2026-06-23", 151, 90)),
            at("hospital", reading("2026-03-04", 160, 95)),
            at("hospital", reading("2026-03-03", 170, 99)),
        ];
        let trend = Trend::new(vec![reading("2026-10-30", 142, 91)], &earlier);
        assert_eq!(trend.latest.as_ref().unwrap().date, "2026-10-30");
        let dates: Vec<&str> = trend.elsewhere.iter().map(|r| r.date.as_str()).collect();
        assert_eq!(dates, ["2026-06-23", "2026-03-04"]);
        let html = clinician_page(None, &trend, 90);
        assert!(
            html.contains("<h2 id=\"elsewhere-heading\">Earlier readings from other places</h2>")
        );
        assert!(
            html.contains("<td class=\"origin\">hospital</td>"),
            "{html}"
        );

        // With nothing in the window, the newest reading is still the latest.
        let trend = Trend::new(vec![], &earlier);
        assert_eq!(trend.latest.as_ref().unwrap().date, "2026-07-30");
        assert_eq!(trend.elsewhere.len(), 3);
    }

    #[test]
    fn patient_names_and_reasons_are_escaped() {
        let html = clinician_page(Some("<script>alert(1)</script>"), &trend(), 90);
        assert!(!html.contains("<script>alert"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));

        let denied = fhir::Error::Denied("the patient opted <b>out</b>".into());
        let page = failure_page(&denied, Subject::Readings);
        assert!(page.contains(
            "Access to blood-pressure readings was denied: the patient opted &lt;b&gt;out&lt;/b&gt;"
        ));
    }

    #[test]
    fn the_form_shows_what_to_fix_next_to_the_field() {
        let entry = Entry {
            systolic: "\"><b>".into(),
            errors: vec![FieldError {
                field: "systolic",
                message: "Systolic pressure must be a whole number.".into(),
            }],
            ..Entry::default()
        };
        let denied = fhir::Error::Denied("no read scope".into());
        let html = patient_page(
            "/apps/r/examples/bp-monitor/measurements",
            false,
            &entry,
            Err(&denied),
            90,
            "2026-10-30",
        );
        assert!(html.contains(r#"action="/apps/r/examples/bp-monitor/measurements""#));
        assert!(html.contains(r#"value="&quot;&gt;&lt;b&gt;""#));
        assert!(html.contains(r#"aria-invalid="true""#));
        assert!(html.contains("Systolic pressure must be a whole number."));
        assert!(html.contains("denied: no read scope"));
    }

    #[test]
    fn a_single_reading_still_charts() {
        let markup = chart(&[reading("2026-10-30", 120, 80)]).into_string();
        assert!(markup.contains("1 reading from 2026-10-30 to 2026-10-30"));
        assert!(!markup.contains("NaN"));
    }

    #[test]
    fn a_partial_answer_names_the_places_that_did_not_answer() {
        let mut trend = Trend::new(Vec::new(), &[]);
        assert!(!clinician_page(None, &trend, 90).contains("Not shown"));
        trend.missing = vec!["gp".into(), "municipality".into()];
        let html = clinician_page(None, &trend, 90);
        assert!(
            html.contains("Not shown: readings from <span class=\"origin\">gp</span>, <span class=\"origin\">municipality</span>, which did not answer just now."),
            "{html}"
        );
    }
}

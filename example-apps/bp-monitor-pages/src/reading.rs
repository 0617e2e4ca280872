//! Blood pressure readings: from FHIR Observations for the trend, and from the home
//! measurement form into a new Observation. Plain Rust, tested natively.

use healthcloud_sdk::Form;
use healthcloud_sdk::clock::Date;
use healthcloud_sdk::fhir;
use healthcloud_sdk::model::{Observation, Reference};
use serde::Serialize;

/// At or above this systolic pressure (mmHg) a reading is flagged: the Danish and European
/// threshold for hypertension measured in clinic.
pub const SYSTOLIC_LIMIT: u16 = 140;
/// At or above this diastolic pressure (mmHg) a reading is flagged.
pub const DIASTOLIC_LIMIT: u16 = 90;

/// Plausible systolic values (mmHg) a person can measure at home; anything outside is a
/// typing mistake.
pub const SYSTOLIC_RANGE: (u16, u16) = (50, 300);
/// Plausible diastolic values (mmHg).
pub const DIASTOLIC_RANGE: (u16, u16) = (30, 200);
/// How far back a home measurement may be entered.
const OLDEST_ENTRY_DAYS: i64 = 365;
/// How far ahead of today's UTC date an entered date may be: the patient's local date is
/// ahead of UTC in Denmark for an hour or two each night.
pub const DATE_GRACE_DAYS: i64 = 1;

/// One blood pressure reading, as the trend shows it and the JSON API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reading {
    /// The day it was measured, `YYYY-MM-DD` (local to where it was measured).
    pub date: String,
    /// When it was measured, as recorded (a FHIR dateTime).
    pub effective: String,
    /// mmHg.
    pub systolic: u16,
    /// mmHg.
    pub diastolic: u16,
    /// At or above 140 systolic or 90 diastolic.
    pub flagged: bool,
    /// Where it was measured, as [`fhir::Origin::label`] names it: `home`, `hospital`, or the
    /// source it was read from (e.g. `gp`, `municipality`).
    pub origin: String,
}

impl Reading {
    /// The reading in a blood pressure panel, or `None` when the panel lacks a date, a
    /// component, or has a value no one can have measured.
    pub fn from_observation(observation: &Observation) -> Option<Reading> {
        let effective = observation.effective()?;
        let date = Date::from_fhir(effective)?;
        let systolic = whole_mmhg(observation.systolic()?)?;
        let diastolic = whole_mmhg(observation.diastolic()?)?;
        Some(Reading {
            date: date.to_string(),
            effective: effective.to_owned(),
            systolic,
            diastolic,
            flagged: systolic >= SYSTOLIC_LIMIT || diastolic >= DIASTOLIC_LIMIT,
            origin: fhir::origin(observation.meta.as_ref()).label().into_owned(),
        })
    }
}

/// Blood pressure is recorded in whole mmHg; round anything finer.
fn whole_mmhg(value: f64) -> Option<u16> {
    let rounded = value.round();
    (0.0..=f64::from(u16::MAX))
        .contains(&rounded)
        .then_some(rounded as u16)
}

/// A home measurement as the patient entered it, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measurement {
    /// mmHg.
    pub systolic: u16,
    /// mmHg.
    pub diastolic: u16,
    /// The day the patient gave, if any; otherwise the measurement is "now".
    pub date: Option<Date>,
}

/// What is wrong with one form field, for showing next to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The form field's name.
    pub field: &'static str,
    /// What to fix, in words for the patient.
    pub message: String,
}

impl Measurement {
    /// Validates the form fields `systolic`, `diastolic` and optional `date` (`YYYY-MM-DD`,
    /// not in the future, at most a year back). `today` is the UTC date.
    pub fn from_form(form: &Form, today: Date) -> Result<Measurement, Vec<FieldError>> {
        let mut errors = Vec::new();
        let systolic = pressure(
            form,
            "systolic",
            "Systolic pressure",
            SYSTOLIC_RANGE,
            &mut errors,
        );
        let diastolic = pressure(
            form,
            "diastolic",
            "Diastolic pressure",
            DIASTOLIC_RANGE,
            &mut errors,
        );
        if let (Some(systolic), Some(diastolic)) = (systolic, diastolic)
            && systolic <= diastolic
        {
            errors.push(FieldError {
                field: "diastolic",
                message: "The diastolic (lower) pressure must be below the systolic (upper) \
                          pressure. Check that the numbers are not swapped."
                    .to_owned(),
            });
        }
        let date = match form.non_empty("date") {
            None => None,
            Some(text) => match Date::parse(text) {
                Some(date) if date > today.add_days(DATE_GRACE_DAYS) => {
                    errors.push(FieldError {
                        field: "date",
                        message: "The date is in the future.".to_owned(),
                    });
                    None
                }
                Some(date) if date < today.add_days(-OLDEST_ENTRY_DAYS) => {
                    errors.push(FieldError {
                        field: "date",
                        message: "The date is more than a year ago. Older measurements \
                                  cannot be entered here."
                            .to_owned(),
                    });
                    None
                }
                Some(date) => Some(date),
                None => {
                    errors.push(FieldError {
                        field: "date",
                        message: "The date must be a calendar date written as YYYY-MM-DD, \
                                  e.g. 2026-10-30."
                            .to_owned(),
                    });
                    None
                }
            },
        };
        match (systolic, diastolic) {
            (Some(systolic), Some(diastolic)) if errors.is_empty() => Ok(Measurement {
                systolic,
                diastolic,
                date,
            }),
            _ => Err(errors),
        }
    }

    /// The FHIR Observation to store: a blood pressure panel about the patient, recorded
    /// as measured by the patient (the performer), at `date` or `now` (a FHIR instant).
    pub fn to_observation(&self, patient_id: &str, now: &str) -> Observation {
        let effective = match self.date {
            Some(date) => date.to_string(),
            None => now.to_owned(),
        };
        let mut observation =
            Observation::blood_pressure(patient_id, self.systolic, self.diastolic, &effective);
        observation.performer = vec![Reference::to("Patient", patient_id)];
        observation
    }
}

fn pressure(
    form: &Form,
    field: &'static str,
    label: &str,
    (low, high): (u16, u16),
    errors: &mut Vec<FieldError>,
) -> Option<u16> {
    let Some(text) = form.non_empty(field) else {
        errors.push(FieldError {
            field,
            message: format!("{label} is required."),
        });
        return None;
    };
    match text.parse::<u16>() {
        Ok(value) if (low..=high).contains(&value) => Some(value),
        _ => {
            errors.push(FieldError {
                field,
                message: format!(
                    "{label} must be a whole number of mmHg between {low} and {high}."
                ),
            });
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use healthcloud_sdk::model::{code, system};

    use super::*;

    fn form(fields: &[(&str, &str)]) -> Form {
        Form {
            fields: fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    fn today() -> Date {
        Date::parse("2026-10-30").unwrap()
    }

    #[test]
    fn a_valid_measurement_becomes_a_patient_reported_panel() {
        let measurement = Measurement::from_form(
            &form(&[
                ("systolic", " 142 "),
                ("diastolic", "91"),
                ("date", "2026-10-29"),
            ]),
            today(),
        )
        .unwrap();
        let observation = measurement.to_observation("p1", "2026-10-30T09:00:00Z");
        assert!(observation.has_code(system::LOINC, code::BLOOD_PRESSURE_PANEL));
        assert_eq!(observation.systolic(), Some(142.0));
        assert_eq!(observation.diastolic(), Some(91.0));
        assert_eq!(observation.effective(), Some("2026-10-29"));
        assert_eq!(observation.performer, [Reference::to("Patient", "p1")]);

        let undated =
            Measurement::from_form(&form(&[("systolic", "120"), ("diastolic", "80")]), today())
                .unwrap();
        assert_eq!(
            undated
                .to_observation("p1", "2026-10-30T09:00:00Z")
                .effective(),
            Some("2026-10-30T09:00:00Z")
        );
    }

    #[test]
    fn bad_input_names_every_field_to_fix() {
        let errors = Measurement::from_form(
            &form(&[
                ("systolic", "abc"),
                ("diastolic", "400"),
                ("date", "30-10-2026"),
            ]),
            today(),
        )
        .unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["systolic", "diastolic", "date"]);

        let missing = Measurement::from_form(&form(&[]), today()).unwrap_err();
        assert!(missing[0].message.contains("required"));

        let swapped =
            Measurement::from_form(&form(&[("systolic", "80"), ("diastolic", "120")]), today())
                .unwrap_err();
        assert!(swapped[0].message.contains("swapped"));

        for date in ["2026-11-02", "2025-10-01"] {
            let dated = form(&[("systolic", "120"), ("diastolic", "80"), ("date", date)]);
            assert_eq!(
                Measurement::from_form(&dated, today()).unwrap_err()[0].field,
                "date"
            );
        }
        // Tomorrow in UTC is still today in Copenhagen.
        let tomorrow = form(&[
            ("systolic", "120"),
            ("diastolic", "80"),
            ("date", "2026-10-31"),
        ]);
        assert!(Measurement::from_form(&tomorrow, today()).is_ok());
    }

    #[test]
    fn readings_are_flagged_at_140_or_90() {
        let reading = |s, d| {
            Reading::from_observation(&Observation::blood_pressure(
                "p",
                s,
                d,
                "2026-10-30T08:12:00+01:00",
            ))
            .unwrap()
        };
        assert!(!reading(139, 89).flagged);
        assert!(reading(140, 80).flagged);
        assert!(reading(120, 90).flagged);
        assert_eq!(reading(120, 80).date, "2026-10-30");
    }

    #[test]
    fn incomplete_panels_are_skipped() {
        let mut observation = Observation::blood_pressure("p", 120, 80, "2026-10-30");
        observation.component.pop();
        assert_eq!(Reading::from_observation(&observation), None);
        let mut undated = Observation::blood_pressure("p", 120, 80, "2026-10-30");
        undated.effective_date_time = None;
        assert_eq!(Reading::from_observation(&undated), None);
    }
}

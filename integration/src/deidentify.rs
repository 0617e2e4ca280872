//! Pseudonymization of exported resources (`$export?_deidentify=true`), for research that
//! needs no one's identity. What comes out is pseudonymized personal data, not anonymous data:
//! the values of a record are kept, and a client whose grant also lets it read identified
//! data could match them. It is decided by an allow-list, at any depth of every resource:
//!
//! - a text value is kept only where its element is a code (`system`, `code`, `unit`,
//!   `status`, `gender`, …: [`CODED`]) or a date with a day; every other text goes — names,
//!   identifiers, addresses, free text (`valueString`, descriptions, comments, titles,
//!   notes), a code's or a reference's `display`, lot and serial numbers, UIDs, hashes, URLs;
//!   numbers and true/false values are kept; `identifier`, `name`, `telecom`, `address`,
//!   `photo`, `contact`, `link`, `extension` and `modifierExtension` go whole, and so do
//!   `meta` (versions and real write times), `contained` resources and `multipleBirth`;
//! - the resource's `id`, and every reference `Type/id`, become a pseudonym: an HMAC of
//!   `Type/id` under the export client's own key, the same in each of its exports and another
//!   in every other client's; a reference that is not `Type/id` is removed;
//! - every date with a day (`effectiveDateTime`, periods, `issued`, …) moves by a whole number
//!   of days, 1 to 183 either way, the same for every resource of one patient (intervals within
//!   a record hold), drawn from an HMAC of the patient under the client's key; a year or a
//!   month alone goes; a Patient's `birthDate` and `deceasedDateTime` keep only their year;
//! - only patients' records are exported this way: shared data (practitioners, organizations,
//!   locations, medications, groups) and Binary documents are left out, and `_since` (real
//!   write times) cannot be combined with it.

use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

/// Elements whose text values are codes, kept as they are.
pub const CODED: &[&str] = &[
    "resourceType",
    "system",
    "code",
    "unit",
    "status",
    "gender",
    "intent",
    "priority",
    "use",
    "comparator",
    "version",
    "lifecycleStatus",
    "criticality",
    "category",
    "severity",
    "mode",
    "kind",
    "type",
    "contentType",
    "language",
    "reference",
];

/// Keys removed wherever they are, whatever they hold.
const REMOVED: &[&str] = &[
    "identifier",
    "name",
    "telecom",
    "address",
    "photo",
    "contact",
    "link",
    "text",
    "note",
    "extension",
    "modifierExtension",
    "meta",
    "contained",
    "multipleBirthBoolean",
    "multipleBirthInteger",
];

/// Whether resources of `type_def` can be in a de-identified export: patients' records only
/// (shared data has no patient whose dates it could move with), and no Binary.
pub fn exported(type_def: &crate::params::TypeDef) -> bool {
    type_def.in_patient_compartment() && type_def.name != "Binary"
}

/// The largest date shift, in days either way.
const MAX_SHIFT_DAYS: u64 = 183;

/// De-identifies resources under one export client's key.
pub struct Deidentifier {
    key: [u8; 32],
}

impl Deidentifier {
    /// The de-identifier of the client whose key is `key`.
    pub fn new(key: [u8; 32]) -> Self {
        Deidentifier { key }
    }

    fn mac(&self, what: &str) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(what.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The pseudonym of `Type/id`: 32 hex digits, a valid FHIR id.
    pub fn pseudonym(&self, reference: &str) -> String {
        self.mac(reference)[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The days `patient`'s dates move: never zero.
    pub fn shift_days(&self, patient: &str) -> i64 {
        let mac = self.mac(&format!("date-shift:{patient}"));
        let n = u64::from_be_bytes(mac[..8].try_into().expect("8 bytes"));
        let days = (n % MAX_SHIFT_DAYS + 1) as i64;
        if mac[8] & 1 == 0 { days } else { -days }
    }

    /// `resource` (a `resource_type` with id `id`, in `patient`'s record if any), de-identified.
    pub fn apply(
        &self,
        resource_type: &str,
        id: &str,
        patient: Option<&str>,
        resource: &mut Value,
    ) {
        // Birth and death: the year only, as it was.
        let years: Vec<(&str, String)> = ["birthDate", "deceasedDateTime"]
            .into_iter()
            .filter(|_| resource_type == "Patient")
            .filter_map(|key| {
                let date = resource.get(key).and_then(Value::as_str)?;
                Some((key, date.chars().take(4).collect()))
            })
            .collect();
        let shift = patient.map(|p| self.shift_days(p)).unwrap_or(0);
        self.walk(resource, None, shift);
        for (key, year) in years {
            resource[key] = Value::String(year);
        }
        resource["id"] = Value::String(self.pseudonym(&format!("{resource_type}/{id}")));
    }

    /// De-identifies `value`, the value of element `key`: whether anything of it is kept.
    fn walk(&self, value: &mut Value, key: Option<&str>, shift: i64) -> bool {
        match value {
            Value::Object(object) => {
                for key in REMOVED {
                    object.remove(*key);
                }
                if object.contains_key("reference") {
                    self.reference(object);
                }
                object.retain(|key, child| self.walk(child, Some(key), shift));
                !object.is_empty()
            }
            Value::Array(items) => {
                items.retain_mut(|item| self.walk(item, key, shift));
                !items.is_empty()
            }
            Value::String(text) => match shift_date(text, shift) {
                Some(shifted) => {
                    *text = shifted;
                    true
                }
                None => key.is_some_and(|key| CODED.contains(&key)) && !is_partial_date(text),
            },
            _ => true,
        }
    }

    /// A reference `Type/id` as its pseudonym; any other removed.
    fn reference(&self, object: &mut Map<String, Value>) {
        let renamed = (object.get("reference").and_then(Value::as_str))
            // Relative only: an absolute URL or a `urn:` names something elsewhere.
            .filter(|reference| !reference.contains(':'))
            .and_then(crate::params::split_reference)
            .filter(|(_, id)| healthcloud_platform::auth::is_fhir_id(id))
            .map(|(resource_type, id)| {
                format!(
                    "{resource_type}/{}",
                    self.pseudonym(&format!("{resource_type}/{id}"))
                )
            });
        match renamed {
            Some(renamed) => {
                object.insert("reference".into(), Value::String(renamed));
            }
            None => {
                object.remove("reference");
            }
        }
    }
}

/// Whether `text` is a year or a year and month alone (`1950`, `2024-03`): a date that cannot
/// be moved by days, and would tell the real one.
fn is_partial_date(text: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match text.split_once('-') {
        None => text.len() == 4 && digits(text),
        Some((year, month)) => year.len() == 4 && digits(year) && month.len() == 2 && digits(month),
    }
}

/// `text` moved by `days` when it is a date with a day (the rest of it, a time and a zone,
/// kept as it was); `None` for anything else.
fn shift_date(text: &str, days: i64) -> Option<String> {
    if text.len() < 10 || !(text.len() == 10 || text.as_bytes()[10] == b'T') {
        return None;
    }
    let (day, rest) = text.split_at(10);
    let shape = day.bytes().enumerate().all(|(i, b)| match i {
        4 | 7 => b == b'-',
        _ => b.is_ascii_digit(),
    });
    if !shape {
        return None;
    }
    let date = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
    let moved = date.checked_add_signed(chrono::Duration::days(days))?;
    Some(format!("{}{rest}", moved.format("%Y-%m-%d")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dates_with_a_day_move_and_nothing_else_does() {
        assert_eq!(shift_date("2024-03-01", 2).as_deref(), Some("2024-03-03"));
        assert_eq!(
            shift_date("2024-12-31T23:30:00+01:00", 1).as_deref(),
            Some("2025-01-01T23:30:00+01:00")
        );
        for kept in [
            "2024",
            "2024-03",
            "85354-9",
            "2024-13-01",
            "urn:x",
            "2024-03-01x",
        ] {
            assert_eq!(shift_date(kept, 5), None, "{kept}");
        }
        assert!(is_partial_date("1950") && is_partial_date("2024-03"));
        assert!(!is_partial_date("85354-9") && !is_partial_date("12345"));
    }

    #[test]
    fn a_patients_identity_is_gone_and_their_record_still_fits_together() {
        let client = Deidentifier::new([7; 32]);
        let mut patient = json!({"resourceType": "Patient", "id": "pat-a", "gender": "female",
            "identifier": [{"system": "urn:oid:1.2.208.176.1.2", "value": "7501504321"}],
            "name": [{"family": "Sørensen"}], "birthDate": "1950-03-15",
            "text": {"div": "<div>Åse Sørensen</div>"},
            "generalPractitioner": [{"reference": "Organization/gp-1", "display": "Lægerne"}],
            "meta": {"source": "urn:healthcloud:written:user:clinician:dr", "versionId": "1"}});
        client.apply("Patient", "pat-a", Some("pat-a"), &mut patient);
        let text = patient.to_string();
        for gone in [
            "7501504321",
            "Sørensen",
            "Åse",
            "pat-a",
            "gp-1",
            "Lægerne",
            "written",
        ] {
            assert!(!text.contains(gone), "{gone} in {text}");
        }
        assert_eq!(patient["birthDate"], "1950", "the year only");
        assert_eq!(patient["gender"], "female");
        assert!(patient.get("meta").is_none());
        let shift = client.shift_days("pat-a");
        assert_ne!(shift, 0);
        let mut observation = json!({"resourceType": "Observation", "id": "o1", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9", "display": "BP"}],
                     "text": "Blodtryk"},
            "subject": {"reference": "Patient/pat-a"}, "effectiveDateTime": "2024-01-01T09:00:00Z",
            "valueString": "Åse says her neighbour Bent measured it", "issued": "2024-01",
            "performer": [{"reference": "https://elsewhere.example/Practitioner/9"},
                          {"display": "Dr. Jens Hansen"}],
            "component": [{"valueQuantity": {"value": 140, "unit": "mmHg"}}]});
        client.apply("Observation", "o1", Some("pat-a"), &mut observation);
        assert_eq!(
            observation["subject"]["reference"],
            format!("Patient/{}", patient["id"].as_str().unwrap())
        );
        let expected =
            chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap() + chrono::Duration::days(shift);
        assert_eq!(
            observation["effectiveDateTime"],
            format!("{}T09:00:00Z", expected.format("%Y-%m-%d"))
        );
        // Codes and values stay; free text, displays, partial dates and names go.
        assert_eq!(observation["status"], "final");
        assert_eq!(observation["code"]["coding"][0]["code"], "85354-9");
        assert_eq!(observation["component"][0]["valueQuantity"]["value"], 140);
        let text = observation.to_string();
        for gone in [
            "Åse",
            "Bent",
            "Hansen",
            "Blodtryk",
            "\"BP\"",
            "elsewhere",
            "2024-01\"",
        ] {
            assert!(!text.contains(gone), "{gone} in {text}");
        }
        assert!(observation.get("performer").is_none(), "{observation}");
        // Another client's pseudonyms are others.
        let other = Deidentifier::new([8; 32]);
        assert_ne!(
            other.pseudonym("Patient/pat-a"),
            client.pseudonym("Patient/pat-a")
        );
    }
}

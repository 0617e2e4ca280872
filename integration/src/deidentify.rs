//! De-identification of exported resources (`$export?_deidentify=true`), for research that
//! needs no one's identity. Field by field, at any depth of every resource:
//!
//! - removed: `identifier` (CPR numbers and every other identifier), `name`, `telecom`,
//!   `address`, `photo`, `contact`, `link`, `text` (the narrative), `note`, `extension` and
//!   `modifierExtension` (they can carry anything), the `display` beside a reference (a
//!   name), an attachment's `data`, `url` and `title`, and `meta.source` (who wrote it);
//! - replaced: the resource's `id`, and every reference `Type/id`, by a pseudonym: an HMAC of
//!   `Type/id` under the export client's own key, so the same resource has the same
//!   pseudonym in every export of that client and another in every other client's; a
//!   reference that is not `Type/id` (an absolute URL, a `urn:`) is removed;
//! - shifted: every date with a day (`2024-03-01`, `2024-03-01T10:00:00Z`: `birthDate`,
//!   `effectiveDateTime`, periods, `meta.lastUpdated`, …) by a whole number of days, 1 to 183
//!   either way, the same for every resource of one patient (so intervals within a record
//!   hold) and drawn from an HMAC of the patient under the client's key; a year or a month
//!   alone is kept;
//! - kept: everything else — codes, values, units, statuses, categories.
//!
//! Binary resources (documents as they are) are never in a de-identified export.

use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

/// Keys removed wherever they are.
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
];

/// The types left out of a de-identified export.
pub const LEFT_OUT: &[&str] = &["Binary"];

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
        let shift = patient.map(|p| self.shift_days(p)).unwrap_or(0);
        self.walk(resource, shift);
        if let Some(meta) = resource.get_mut("meta").and_then(Value::as_object_mut) {
            meta.remove("source");
        }
        resource["id"] = Value::String(self.pseudonym(&format!("{resource_type}/{id}")));
    }

    fn walk(&self, value: &mut Value, shift: i64) {
        match value {
            Value::Object(object) => {
                for key in REMOVED {
                    object.remove(*key);
                }
                if object.contains_key("contentType") {
                    for key in ["data", "url", "title"] {
                        object.remove(key);
                    }
                }
                if object.contains_key("reference") {
                    object.remove("display");
                    self.reference(object);
                }
                for (_, child) in object.iter_mut() {
                    self.walk(child, shift);
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|item| self.walk(item, shift)),
            Value::String(text) => {
                if let Some(shifted) = shift_date(text, shift) {
                    *text = shifted;
                }
            }
            _ => {}
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

/// `text` moved by `days` when it is a date with a day (the rest of it, a time and a zone,
/// kept as it was); `None` for anything else.
fn shift_date(text: &str, days: i64) -> Option<String> {
    if days == 0 || text.len() < 10 || !(text.len() == 10 || text.as_bytes()[10] == b'T') {
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
    }

    #[test]
    fn a_patients_identity_is_gone_and_their_record_still_fits_together() {
        let client = Deidentifier::new([7; 32]);
        let mut patient = json!({"resourceType": "Patient", "id": "pat-a",
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
        let shift = client.shift_days("pat-a");
        assert_ne!(shift, 0);
        let expected =
            chrono::NaiveDate::from_ymd_opt(1950, 3, 15).unwrap() + chrono::Duration::days(shift);
        assert_eq!(
            patient["birthDate"],
            expected.format("%Y-%m-%d").to_string()
        );
        let mut observation = json!({"resourceType": "Observation", "id": "o1",
            "subject": {"reference": "Patient/pat-a"}, "effectiveDateTime": "2024-01-01T09:00:00Z",
            "performer": [{"reference": "https://elsewhere.example/Practitioner/9"}]});
        client.apply("Observation", "o1", Some("pat-a"), &mut observation);
        assert_eq!(
            observation["subject"]["reference"],
            format!("Patient/{}", patient["id"].as_str().unwrap())
        );
        assert!(observation["performer"][0].get("reference").is_none());
        // Another client's pseudonyms are others.
        let other = Deidentifier::new([8; 32]);
        assert_ne!(
            other.pseudonym("Patient/pat-a"),
            client.pseudonym("Patient/pat-a")
        );
    }
}

//! Patient consent in the shape of the Danish "Min Spærring" opt-outs: an active FHIR R4
//! Consent whose base provision permits, with nested `deny` provisions naming who may not see
//! the patient's data — an organization, a practitioner or an app (`Device/<app-id>`) —
//! optionally only within a period and for some resource types. A deny provision may name a
//! purpose of use instead (`purpose`, HL7 v3 ActReason: `HRESCH` research, `HQUALIMP` quality,
//! `TREAT` treatment): the patient opts out of every backend service granted that purpose, as
//! the actor `PurposeOfUse/<code>`.

use healthcloud_platform::scope::{PURPOSE_SYSTEM, Purpose};
use serde_json::Value;

use crate::date;
use crate::error::FhirError;
use crate::params::{split_reference, type_def};

/// Actor types a deny provision may name.
const ACTOR_TYPES: &[&str] = &["Organization", "Practitioner", "PractitionerRole", "Device"];

/// One flattened deny provision.
#[derive(Debug, Clone, PartialEq)]
pub struct Denial {
    /// The consenting patient.
    pub patient_id: String,
    /// Who is denied: `Organization/…`, `Practitioner/…` or `Device/<app-id>`; or for which
    /// purpose of use, `PurposeOfUse/<code>`.
    pub actor: String,
    /// The resource type covered, or `""` for all.
    pub resource_type: String,
    /// When the denial starts applying (epoch ms), if bounded.
    pub period_start: Option<i64>,
    /// When it stops applying (epoch ms), if bounded.
    pub period_end: Option<i64>,
}

/// Validates a Consent resource and flattens its deny provisions (none unless it is active).
pub fn denials(consent: &Value) -> Result<Vec<Denial>, FhirError> {
    let status = consent
        .get("status")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            FhirError::invalid(
                "Consent.status",
                "required: draft, proposed, active, rejected, inactive or entered-in-error",
            )
        })?;
    if ![
        "draft",
        "proposed",
        "active",
        "rejected",
        "inactive",
        "entered-in-error",
    ]
    .contains(&status)
    {
        return Err(FhirError::invalid(
            "Consent.status",
            format!("unknown status '{status}'"),
        ));
    }
    for element in ["scope", "category"] {
        if consent.get(element).is_none() {
            return Err(FhirError::invalid(
                format!("Consent.{element}"),
                "required by FHIR R4",
            ));
        }
    }
    let patient_id = match consent
        .get("patient")
        .and_then(|p| p.get("reference"))
        .and_then(Value::as_str)
        .and_then(split_reference)
    {
        Some((t, id)) if t == "Patient" => id,
        _ => {
            return Err(FhirError::invalid(
                "Consent.patient",
                "required: a reference to Patient/<id>",
            ));
        }
    };
    let Some(base) = consent.get("provision") else {
        return Err(FhirError::invalid(
            "Consent.provision",
            "required: a base provision with nested deny provisions",
        ));
    };
    let mut denials = Vec::new();
    collect(base, "Consent.provision", &patient_id, &mut denials)?;
    if status != "active" {
        denials.clear();
    }
    Ok(denials)
}

fn collect(
    provision: &Value,
    path: &str,
    patient_id: &str,
    out: &mut Vec<Denial>,
) -> Result<(), FhirError> {
    let kind = provision
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("permit");
    if kind != "permit" && kind != "deny" {
        return Err(FhirError::invalid(
            format!("{path}.type"),
            "must be permit or deny",
        ));
    }
    let actors = provision
        .get("actor")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if kind == "deny" {
        let purposes = purposes(provision, path)?;
        if actors.is_empty() && purposes.is_empty() {
            return Err(FhirError::invalid(
                format!("{path}.actor"),
                "a deny provision must name who is denied (Organization/…, Practitioner/… or Device/<app-id>) or for which purpose of use (purpose: HRESCH, HQUALIMP or TREAT)",
            ));
        }
        // Both would mean "this actor for this purpose", which the consent table cannot hold;
        // either alone it can.
        if !actors.is_empty() && !purposes.is_empty() {
            return Err(FhirError::invalid(
                format!("{path}.purpose"),
                "a deny provision names who is denied or for which purpose of use, not both: write two provisions",
            ));
        }
        let (period_start, period_end) = period(provision, path)?;
        let mut types = Vec::new();
        for (i, class) in provision
            .get("class")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let code = class
                .get("code")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if type_def(code).is_none() {
                return Err(FhirError::invalid(
                    format!("{path}.class[{i}].code"),
                    format!("'{code}' is not a resource type served here"),
                ));
            }
            types.push(code.to_owned());
        }
        if types.is_empty() {
            types.push(String::new());
        }
        let mut denied: Vec<String> = purposes.iter().map(|p| p.consent_actor()).collect();
        for (i, actor) in actors.iter().enumerate() {
            let reference = actor
                .get("reference")
                .and_then(|r| r.get("reference"))
                .and_then(Value::as_str);
            match reference.and_then(split_reference) {
                Some((t, id)) if ACTOR_TYPES.contains(&t.as_str()) => {
                    denied.push(format!("{t}/{id}"));
                }
                _ => {
                    return Err(FhirError::invalid(
                        format!("{path}.actor[{i}].reference"),
                        "must reference Organization/…, Practitioner/… or Device/<app-id>",
                    ));
                }
            }
        }
        for actor in denied {
            for resource_type in &types {
                out.push(Denial {
                    patient_id: patient_id.to_owned(),
                    actor: actor.clone(),
                    resource_type: resource_type.clone(),
                    period_start,
                    period_end,
                });
            }
        }
    }
    for (i, nested) in provision
        .get("provision")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        collect(nested, &format!("{path}.provision[{i}]"), patient_id, out)?;
    }
    Ok(())
}

/// The purposes of use a deny provision names (`purpose`, HL7 v3 ActReason codings).
fn purposes(provision: &Value, path: &str) -> Result<Vec<Purpose>, FhirError> {
    let codings = provision
        .get("purpose")
        .map(|p| p.as_array().ok_or(p))
        .transpose()
        .map_err(|_| FhirError::invalid(format!("{path}.purpose"), "must be a list of Codings"))?;
    let mut purposes = Vec::new();
    for (i, coding) in codings.into_iter().flatten().enumerate() {
        let system = coding.get("system").and_then(Value::as_str);
        let purpose = (coding.get("code").and_then(Value::as_str))
            .and_then(Purpose::from_code)
            .filter(|_| system == Some(PURPOSE_SYSTEM));
        let Some(purpose) = purpose else {
            return Err(FhirError::invalid(
                format!("{path}.purpose[{i}]"),
                format!(
                    "a purpose of use opted out of is a {PURPOSE_SYSTEM} code: HRESCH (research), HQUALIMP (quality) or TREAT (treatment)"
                ),
            ));
        };
        purposes.push(purpose);
    }
    Ok(purposes)
}

fn period(provision: &Value, path: &str) -> Result<(Option<i64>, Option<i64>), FhirError> {
    let Some(period) = provision.get("period") else {
        return Ok((None, None));
    };
    let bound = |key: &str| -> Result<Option<date::DateRange>, FhirError> {
        match period.get(key) {
            None => Ok(None),
            Some(v) => v.as_str().and_then(date::parse).map(Some).ok_or_else(|| {
                FhirError::invalid(format!("{path}.period.{key}"), "not a valid FHIR dateTime")
            }),
        }
    };
    Ok((bound("start")?.map(|r| r.lo), bound("end")?.map(|r| r.hi)))
}

/// A Consent opting `actor` out of `patient_id`'s data (optionally only some types): what a
/// citizen's "block this app" button creates. An actor `PurposeOfUse/<code>` becomes the
/// provision's purpose: the opt-out of research is `PurposeOfUse/HRESCH`.
pub fn opt_out(patient_id: &str, actor: &str, resource_types: &[&str]) -> Value {
    let mut deny = match actor.strip_prefix("PurposeOfUse/") {
        Some(code) => serde_json::json!({
            "type": "deny",
            "purpose": [{"system": PURPOSE_SYSTEM, "code": code}]
        }),
        None => serde_json::json!({
            "type": "deny",
            "actor": [{
                "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
                "reference": {"reference": actor}
            }]
        }),
    };
    if !resource_types.is_empty() {
        deny["class"] = resource_types
            .iter()
            .map(|t| serde_json::json!({"system": "http://hl7.org/fhir/resource-types", "code": t}))
            .collect();
    }
    serde_json::json!({
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{patient_id}")},
        "dateTime": date::instant(date::now_ms()),
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "provision": {"type": "permit", "provision": [deny]}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opt_out_of_an_app_for_observations() {
        let consent = opt_out("p1", "Device/bp-monitor", &["Observation"]);
        let denials = denials(&consent).unwrap();
        assert_eq!(
            denials,
            vec![Denial {
                patient_id: "p1".into(),
                actor: "Device/bp-monitor".into(),
                resource_type: "Observation".into(),
                period_start: None,
                period_end: None,
            }]
        );
    }

    #[test]
    fn opt_out_of_research() {
        let consent = opt_out("p1", "PurposeOfUse/HRESCH", &[]);
        let denied = denials(&consent).unwrap();
        assert_eq!(denied.len(), 1);
        assert_eq!(denied[0].actor, "PurposeOfUse/HRESCH");
        assert_eq!(denied[0].resource_type, "");

        // An unknown purpose, another code system, or a purpose beside an actor is refused
        // rather than read as something narrower.
        let mut unknown = consent.clone();
        unknown["provision"]["provision"][0]["purpose"][0]["code"] = "MARKETING".into();
        let err = denials(&unknown).unwrap_err().to_string();
        assert!(err.contains("provision[0].purpose[0]"), "{err}");
        let mut system = consent.clone();
        system["provision"]["provision"][0]["purpose"][0]["system"] = "urn:other".into();
        assert_eq!(denials(&system).unwrap_err().status(), 422);
        let mut both = consent.clone();
        both["provision"]["provision"][0]["actor"] =
            opt_out("p1", "Device/x", &[])["provision"]["provision"][0]["actor"].clone();
        let err = denials(&both).unwrap_err().to_string();
        assert!(err.contains("not both"), "{err}");
    }

    #[test]
    fn inactive_consent_denies_nothing() {
        let mut consent = opt_out("p1", "Organization/gp-1", &[]);
        consent["status"] = "inactive".into();
        assert!(denials(&consent).unwrap().is_empty());
    }

    #[test]
    fn period_bounds_and_bad_actors() {
        let mut consent = opt_out("p1", "Organization/gp-1", &[]);
        consent["provision"]["provision"][0]["period"] =
            serde_json::json!({"start": "2024-01-01", "end": "2024-12-31"});
        let d = &denials(&consent).unwrap()[0];
        assert_eq!(d.period_start, date::parse("2024-01-01").map(|r| r.lo));
        assert_eq!(d.period_end, date::parse("2024-12-31").map(|r| r.hi));

        let bad = opt_out("p1", "Patient/p2", &[]);
        let err = denials(&bad).unwrap_err();
        assert!(
            err.to_string()
                .contains("Consent.provision.provision[0].actor[0].reference"),
            "{err}"
        );
        let mut no_patient = opt_out("p1", "Device/x", &[]);
        no_patient.as_object_mut().unwrap().remove("patient");
        assert_eq!(denials(&no_patient).unwrap_err().status(), 422);
    }
}

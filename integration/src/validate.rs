//! Structural validation of incoming resources: what the server needs to store, index and
//! authorize a resource safely. Errors name the element (`Observation.code`) so a client, or a
//! Bundle import, can point at it. Full profile validation is out of scope.

use healthcloud_platform::auth::is_fhir_id;
use serde_json::Value;

use crate::date;
use crate::error::FhirError;
use crate::params::split_reference;
use crate::shape::{element_among, elements_of};

/// Validates `resource` as a `resource_type`.
pub fn resource(resource_type: &str, resource: &Value) -> Result<(), FhirError> {
    let object = resource
        .as_object()
        .ok_or_else(|| FhirError::invalid(resource_type, "a resource must be a JSON object"))?;
    match object.get("resourceType").and_then(Value::as_str) {
        Some(t) if t == resource_type => {}
        Some(t) => {
            return Err(FhirError::invalid(
                format!("{resource_type}.resourceType"),
                format!("is '{t}', expected '{resource_type}'"),
            ));
        }
        None => {
            return Err(FhirError::invalid(
                format!("{resource_type}.resourceType"),
                "missing",
            ));
        }
    }
    if let Some(id) = object.get("id")
        && !id.as_str().is_some_and(is_fhir_id)
    {
        return Err(FhirError::invalid(
            format!("{resource_type}.id"),
            "must match [A-Za-z0-9-.]{1,64}",
        ));
    }
    // A subset (read with `_summary` or `_elements`) written back would lose what was left out.
    let subsetted = resource["meta"]["tag"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|tag| tag["code"] == "SUBSETTED");
    if subsetted {
        return Err(FhirError::invalid(
            format!("{resource_type}.meta.tag"),
            "is SUBSETTED: this copy lacks the elements _summary or _elements left out; read the resource whole and write that",
        ));
    }
    check_elements(resource_type, object)?;
    check_tree(resource, resource_type).map_err(|e| {
        let inner: Vec<String> = e.path.into_iter().rev().collect();
        FhirError::invalid(format!("{resource_type}.{}", inner.join(".")), e.message)
    })?;
    let required = |element: &str, allowed: &[&str]| -> Result<(), FhirError> {
        let path = format!("{resource_type}.{element}");
        match object.get(element).and_then(Value::as_str) {
            Some(v) if allowed.is_empty() || allowed.contains(&v) => Ok(()),
            Some(v) => Err(FhirError::invalid(
                path,
                format!("'{v}' is not one of {}", allowed.join(", ")),
            )),
            None => Err(FhirError::invalid(path, "required")),
        }
    };
    match resource_type {
        "Observation" => {
            required(
                "status",
                &[
                    "registered",
                    "preliminary",
                    "final",
                    "amended",
                    "corrected",
                    "cancelled",
                    "entered-in-error",
                    "unknown",
                ],
            )?;
            if !object
                .get("code")
                .is_some_and(|c| c.get("coding").is_some() || c.get("text").is_some())
            {
                return Err(FhirError::invalid(
                    "Observation.code",
                    "required: a CodeableConcept with coding or text",
                ));
            }
        }
        "Patient" => {
            if let Some(gender) = object.get("gender")
                && !gender
                    .as_str()
                    .is_some_and(|g| ["male", "female", "other", "unknown"].contains(&g))
            {
                return Err(FhirError::invalid(
                    "Patient.gender",
                    "must be male, female, other or unknown",
                ));
            }
        }
        "Condition"
        | "Procedure"
        | "DiagnosticReport"
        | "Encounter"
        | "MedicationRequest"
        | "MedicationStatement"
            if object.get("subject").is_none() =>
        {
            return Err(FhirError::invalid(
                format!("{resource_type}.subject"),
                "required",
            ));
        }
        "Binary" => {
            use base64::Engine as _;
            required("contentType", &[])?;
            if !object["contentType"].as_str().is_some_and(is_media_type) {
                return Err(FhirError::invalid(
                    "Binary.contentType",
                    "must be a media type like application/pdf",
                ));
            }
            if let Some(data) = object.get("data") {
                let decoded = (data.as_str())
                    .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok());
                if decoded.is_none() {
                    return Err(FhirError::invalid("Binary.data", "must be base64"));
                }
            }
        }
        "AllergyIntolerance" | "Immunization" if object.get("patient").is_none() => {
            return Err(FhirError::invalid(
                format!("{resource_type}.patient"),
                "required",
            ));
        }
        _ => {}
    }
    Ok(())
}

/// What a write holds a resource to: [`resource`], and each profile this server serves that
/// it claims in `meta.profile` ([`crate::profiles`]).
pub fn written(resource_type: &str, resource: &Value) -> Result<(), FhirError> {
    self::resource(resource_type, resource)?;
    crate::profiles::check_claimed(resource_type, resource)
}

/// Whether `text` is a media type (`type/subtype`, with parameters): what a Binary's content
/// is served as.
pub fn is_media_type(text: &str) -> bool {
    let essence = text.split(';').next().unwrap_or_default().trim();
    let token = |part: &str| {
        !part.is_empty()
            && (part.bytes()).all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    essence
        .split_once('/')
        .is_some_and(|(kind, subtype)| token(kind) && token(subtype))
        && text.len() <= 200
        && text.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// Holds the top level of `object` to the type's R4 definition: every property is one of its
/// elements (a misspelt element would be stored unread and unsearched), and every element the
/// definition requires (`min` ≥ 1) is there.
fn check_elements(
    resource_type: &str,
    object: &serde_json::Map<String, Value>,
) -> Result<(), FhirError> {
    let elements = elements_of(resource_type);
    if elements.is_empty() {
        return Ok(());
    }
    // Each property's element, once: an import checks a million resources.
    let mut present = Vec::with_capacity(object.len());
    for property in object.keys().filter(|p| *p != "resourceType") {
        match element_among(elements, property) {
            Some(element) => present.push(element.name),
            None => {
                return Err(FhirError::invalid(
                    format!("{resource_type}.{property}"),
                    format!("is not an element of {resource_type} in FHIR R4"),
                ));
            }
        }
    }
    for element in elements.iter().filter(|e| e.mandatory) {
        if !present.contains(&element.name) {
            let name = match element.choice {
                true => format!("{}[x]", element.name),
                false => element.name.to_owned(),
            };
            return Err(FhirError::invalid(
                format!("{resource_type}.{name}"),
                "required by the R4 definition",
            ));
        }
    }
    Ok(())
}

/// A problem found deep in a resource; the path is collected innermost-first on the way out,
/// so valid resources (nearly all) cost no path strings.
struct TreeError {
    path: Vec<String>,
    message: String,
}

/// Checks primitive shapes everywhere: references are strings of a known form, date-like
/// elements parse, and numbers are numbers. `parent` is the key holding `value`.
fn check_tree(value: &Value, parent: &str) -> Result<(), TreeError> {
    let Value::Object(object) = value else {
        return Ok(());
    };
    for (key, child) in object {
        let fail = |message: String| {
            Err(TreeError {
                path: vec![key.clone()],
                message,
            })
        };
        let nested = |e: TreeError, segment: String| {
            let mut e = e;
            e.path.push(segment);
            e
        };
        match (key.as_str(), child) {
            ("reference", Value::String(r)) => {
                let local = r.starts_with('#')
                    || r.starts_with("urn:uuid:")
                    || r.starts_with("urn:oid:")
                    || r.contains('?');
                if !local && split_reference(r).is_none() {
                    return fail(format!("'{r}' is not a reference of the form Type/id"));
                }
            }
            // Consent.provision.actor.reference is itself a Reference object.
            ("reference", Value::Object(_)) => {
                check_tree(child, key).map_err(|e| nested(e, key.clone()))?
            }
            ("reference", _) => return fail("must be a string".into()),
            ("value", Value::String(_)) if parent.ends_with("Quantity") => {
                return fail("a quantity's value must be a number".into());
            }
            (k, Value::String(s)) if is_date_element(k) => {
                if date::parse(s).is_none() {
                    return fail(format!("'{s}' is not a valid FHIR date/dateTime"));
                }
            }
            (k, Value::Array(items)) => {
                if items.is_empty() {
                    return fail("arrays must not be empty in FHIR JSON".into());
                }
                for (i, item) in items.iter().enumerate() {
                    check_tree(item, k).map_err(|e| nested(e, format!("{k}[{i}]")))?;
                }
            }
            (_, Value::Null) => return fail("null is not allowed in FHIR JSON".into()),
            _ => check_tree(child, key).map_err(|e| nested(e, key.clone()))?,
        }
    }
    Ok(())
}

fn is_date_element(key: &str) -> bool {
    key.ends_with("DateTime")
        || key.ends_with("Instant")
        || matches!(
            key,
            "birthDate"
                | "recordedDate"
                | "authoredOn"
                | "issued"
                | "recorded"
                | "start"
                | "end"
                | "dateAsserted"
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn errors_name_the_element() {
        let bad = json!({"resourceType": "Observation", "status": "final", "code": {"text": "BP"},
            "subject": {"reference": "Patient/p"}, "effectiveDateTime": "last tuesday"});
        let err = resource("Observation", &bad).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("Observation.effectiveDateTime:"),
            "{err}"
        );

        let bad = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "component": [{"code": {"text": "s"}, "valueQuantity": {"value": "120"}}]});
        let err = resource("Observation", &bad).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("Observation.component[0].valueQuantity.value"),
            "{err}"
        );

        let err = resource(
            "Observation",
            &json!({"resourceType": "Observation", "code": {"text": "x"}}),
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("Observation.status"), "{err}");
        let err = resource("Observation", &json!({"resourceType": "Patient"})).unwrap_err();
        assert_eq!(err.status(), 422);
    }

    #[test]
    fn a_home_measurement_is_valid() {
        let obs = json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
            "subject": {"reference": "Patient/p"}, "effectiveDateTime": "2024-03-01T08:00:00+01:00",
            "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                "valueQuantity": {"value": 128, "unit": "mmHg"}}]});
        resource("Observation", &obs).unwrap();
    }
}

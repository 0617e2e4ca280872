//! The profiles this server holds resources to: FHIR R4's vital signs profiles
//! (http://hl7.org/fhir/R4/observation-vitalsigns.html). A resource that claims one in
//! `meta.profile` is held to it when it is written, and `$validate` checks a resource against
//! any of them on request; the CapabilityStatement lists them (`supportedProfile`). Other
//! profiles a resource claims are kept as they are, unchecked.

use serde_json::Value;

use crate::error::FhirError;

const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";
const CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
const BASE: &str = "http://hl7.org/fhir/StructureDefinition/";

/// One served profile: an R4 vital sign.
#[derive(Debug)]
pub struct Profile {
    /// Its canonical URL.
    pub url: &'static str,
    /// The LOINC code it fixes (`None` for the vital signs base profile, any code).
    code: Option<&'static str>,
    /// The UCUM units its value may have (any, when empty).
    units: &'static [&'static str],
    /// The components it requires: LOINC code and the UCUM units of each one's value.
    components: &'static [(&'static str, &'static [&'static str])],
}

const fn vital(url: &'static str, code: &'static str, units: &'static [&'static str]) -> Profile {
    Profile {
        url,
        code: Some(code),
        units,
        components: &[],
    }
}

/// Every served profile, all of Observation.
pub static PROFILES: &[Profile] = &[
    Profile {
        url: "http://hl7.org/fhir/StructureDefinition/vitalsigns",
        code: None,
        units: &[],
        components: &[],
    },
    Profile {
        url: "http://hl7.org/fhir/StructureDefinition/bp",
        code: Some("85354-9"),
        units: &[],
        components: &[("8480-6", &["mm[Hg]"]), ("8462-4", &["mm[Hg]"])],
    },
    vital(
        "http://hl7.org/fhir/StructureDefinition/heartrate",
        "8867-4",
        &["/min"],
    ),
    vital(
        "http://hl7.org/fhir/StructureDefinition/resprate",
        "9279-1",
        &["/min"],
    ),
    vital(
        "http://hl7.org/fhir/StructureDefinition/bodytemp",
        "8310-5",
        &["Cel", "[degF]"],
    ),
    vital(
        "http://hl7.org/fhir/StructureDefinition/bodyheight",
        "8302-2",
        &["cm", "[in_i]"],
    ),
    vital(
        "http://hl7.org/fhir/StructureDefinition/bodyweight",
        "29463-7",
        &["kg", "g", "[lb_av]"],
    ),
    vital(
        "http://hl7.org/fhir/StructureDefinition/bmi",
        "39156-5",
        &["kg/m2"],
    ),
    vital(
        "http://hl7.org/fhir/StructureDefinition/oxygensat",
        "2708-6",
        &["%"],
    ),
    vital(
        "http://hl7.org/fhir/StructureDefinition/headcircum",
        "9843-4",
        &["cm", "[in_i]"],
    ),
];

/// The served profile `url` names (a version after `|` aside), for a resource of
/// `resource_type`.
pub fn served(resource_type: &str, url: &str) -> Option<&'static Profile> {
    let url = url.split('|').next().unwrap_or_default();
    (resource_type == "Observation")
        .then(|| PROFILES.iter().find(|p| p.url == url))
        .flatten()
}

/// The served profiles `resource` claims in `meta.profile`.
pub fn claimed(resource_type: &str, resource: &Value) -> Vec<&'static Profile> {
    (resource["meta"]["profile"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .filter_map(|url| served(resource_type, url))
        .collect()
}

/// Holds `resource` to every served profile it claims.
pub fn check_claimed(resource_type: &str, resource: &Value) -> Result<(), FhirError> {
    claimed(resource_type, resource)
        .into_iter()
        .try_for_each(|profile| profile.check(resource))
}

/// Whether `concept` (a CodeableConcept) has a Coding of `system` and `code`.
fn has_coding(concept: &Value, system: &str, code: &str) -> bool {
    (concept["coding"].as_array().into_iter().flatten())
        .any(|c| c["system"] == system && c["code"] == code)
}

impl Profile {
    /// Holds `observation` to the profile (and to the vital signs base profile every vital sign
    /// profile derives from): the first thing that does not conform, named by its path.
    pub fn check(&self, observation: &Value) -> Result<(), FhirError> {
        let name = self.url.trim_start_matches(BASE);
        let wrong = |path: &str, what: String| {
            FhirError::invalid(
                format!("Observation.{path}"),
                format!("{what} (profile {name})"),
            )
        };
        let categories = observation["category"].as_array().into_iter().flatten();
        if !categories
            .clone()
            .any(|c| has_coding(c, CATEGORY, "vital-signs"))
        {
            return Err(wrong(
                "category",
                format!("must include the coding {CATEGORY}|vital-signs"),
            ));
        }
        if let Some(code) = self.code
            && !has_coding(&observation["code"], LOINC, code)
        {
            return Err(wrong(
                "code",
                format!("must include the coding {LOINC}|{code}"),
            ));
        }
        let subject = observation["subject"]["reference"]
            .as_str()
            .unwrap_or_default();
        if !subject.starts_with("Patient/") && !subject.contains("/Patient/") {
            return Err(wrong("subject", "must reference the Patient".into()));
        }
        if observation.get("effectiveDateTime").is_none()
            && observation.get("effectivePeriod").is_none()
        {
            return Err(wrong(
                "effective[x]",
                "is required, as a dateTime or a Period".into(),
            ));
        }
        let quantity_in =
            |path: &str, holder: &Value, units: &[&str]| match holder.get("valueQuantity") {
                Some(quantity) => {
                    let code = quantity["code"].as_str().unwrap_or_default();
                    if quantity["value"].as_f64().is_none() || quantity["system"] != UCUM {
                        Err(wrong(
                            &format!("{path}valueQuantity"),
                            format!("must have a value in UCUM ({UCUM})"),
                        ))
                    } else if !units.is_empty() && !units.contains(&code) {
                        Err(wrong(
                            &format!("{path}valueQuantity.code"),
                            format!("'{code}' is not one of {}", units.join(", ")),
                        ))
                    } else {
                        Ok(())
                    }
                }
                None if holder.get("dataAbsentReason").is_some() => Ok(()),
                None if holder
                    .as_object()
                    .is_some_and(|o| o.keys().any(|k| k.starts_with("value"))) =>
                {
                    Err(wrong(
                        &format!("{path}value[x]"),
                        "must be a Quantity".into(),
                    ))
                }
                None => Err(wrong(
                    &format!("{path}value[x]"),
                    "is required, or a dataAbsentReason saying why there is none".into(),
                )),
            };
        let components = observation["component"].as_array();
        let members = observation.get("hasMember").is_some();
        // A panel carries its values in components or members (vs-2).
        if components.is_none() && !members || observation.get("valueQuantity").is_some() {
            quantity_in("", observation, self.units)?;
        }
        for (code, units) in self.components {
            let component = (components.into_iter().flatten())
                .find(|c| has_coding(&c["code"], LOINC, code))
                .ok_or_else(|| {
                    wrong(
                        "component",
                        format!("must include a component coded {LOINC}|{code}"),
                    )
                })?;
            quantity_in(&format!("component({code})."), component, units)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn blood_pressure() -> Value {
        let part = |code: &str, value: f64| {
            json!({"code": {"coding": [{"system": LOINC, "code": code}]},
                "valueQuantity": {"value": value, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}})
        };
        json!({"resourceType": "Observation", "status": "final",
            "meta": {"profile": ["http://hl7.org/fhir/StructureDefinition/bp"]},
            "category": [{"coding": [{"system": CATEGORY, "code": "vital-signs"}]}],
            "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
            "subject": {"reference": "Patient/p"}, "effectiveDateTime": "2025-01-01T08:00:00Z",
            "component": [part("8480-6", 140.0), part("8462-4", 90.0)]})
    }

    fn fails_at(resource: &Value, path: &str) {
        match check_claimed("Observation", resource) {
            Err(FhirError::Invalid { path: at, .. }) => assert_eq!(at, path),
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn a_blood_pressure_is_held_to_the_profile_it_claims() {
        let good = blood_pressure();
        check_claimed("Observation", &good).unwrap();
        let mut no_category = good.clone();
        no_category["category"] = json!([{"text": "vital"}]);
        fails_at(&no_category, "Observation.category");
        let mut no_diastolic = good.clone();
        no_diastolic["component"].as_array_mut().unwrap().pop();
        fails_at(&no_diastolic, "Observation.component");
        let mut in_kpa = good.clone();
        in_kpa["component"][0]["valueQuantity"]["code"] = json!("kPa");
        fails_at(&in_kpa, "Observation.component(8480-6).valueQuantity.code");
        let mut undated = good.clone();
        undated.as_object_mut().unwrap().remove("effectiveDateTime");
        fails_at(&undated, "Observation.effective[x]");
        let mut heart_rate = good.clone();
        heart_rate["meta"]["profile"] =
            json!(["http://hl7.org/fhir/StructureDefinition/heartrate|4.0.1"]);
        fails_at(&heart_rate, "Observation.code");
        // A profile not served here is not checked.
        let mut other = no_category;
        other["meta"]["profile"] = json!(["http://example.org/StructureDefinition/mine"]);
        check_claimed("Observation", &other).unwrap();
        assert!(served("Condition", "http://hl7.org/fhir/StructureDefinition/bp").is_none());
    }

    #[test]
    fn a_single_vital_sign_has_its_value_in_its_units_or_says_why_not() {
        let weight = json!({"resourceType": "Observation", "status": "final",
            "meta": {"profile": ["http://hl7.org/fhir/StructureDefinition/bodyweight"]},
            "category": [{"coding": [{"system": CATEGORY, "code": "vital-signs"}]}],
            "code": {"coding": [{"system": LOINC, "code": "29463-7"}]},
            "subject": {"reference": "Patient/p"}, "effectiveDateTime": "2025-01-01",
            "valueQuantity": {"value": 72.5, "system": UCUM, "code": "kg"}});
        check_claimed("Observation", &weight).unwrap();
        let mut in_stone = weight.clone();
        in_stone["valueQuantity"]["code"] = json!("[stone_av]");
        fails_at(&in_stone, "Observation.valueQuantity.code");
        let mut as_text = weight.clone();
        as_text.as_object_mut().unwrap().remove("valueQuantity");
        as_text["valueString"] = json!("heavy");
        fails_at(&as_text, "Observation.value[x]");
        let mut absent = as_text;
        absent.as_object_mut().unwrap().remove("valueString");
        fails_at(&absent, "Observation.value[x]");
        absent["dataAbsentReason"] = json!({"text": "refused"});
        check_claimed("Observation", &absent).unwrap();
    }
}

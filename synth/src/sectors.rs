//! One patient's data as the sectors of Danish healthcare hold it: the GP's system (visits,
//! their measurements and laboratory reports, diagnoses, prescriptions), the municipality's
//! care record (home nursing visits and what the nurse measured), the region's hospital record
//! (the patient's demographics, admissions and the vital signs taken there, allergies,
//! vaccinations, procedures) and what the patient measured at home.
//!
//! Each system knows the patient by the same CPR number, so each sector's part starts with
//! the same Patient resource.

use std::collections::HashMap;

use serde_json::Value;

use crate::options::SynthOptions;
use crate::patient::{Extras, generate};

/// Who recorded a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sector {
    /// The region's hospital record.
    Hospital,
    /// The patient's GP clinic.
    Gp,
    /// The municipality's home care.
    Municipality,
    /// The patient, measuring at home.
    Home,
}

/// One patient's resources by who recorded them; each sector's part but `home` starts with the
/// Patient.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BySector {
    /// The hospital record: the Patient, admissions and their vital signs, allergies,
    /// vaccinations, procedures.
    pub hospital: Vec<Value>,
    /// The GP's system: the Patient, visits and their measurements and laboratory reports,
    /// Conditions, MedicationRequests and MedicationStatements.
    pub gp: Vec<Value>,
    /// The municipality's care record: the Patient, home nursing visits and their measurements.
    pub municipality: Vec<Value>,
    /// Home measurements (blood pressure, pulse, weight) the patient took.
    pub home: Vec<Value>,
}

impl BySector {
    /// Names what the GP and the municipality hold as a region's healthcloud serves it when
    /// their systems are its sources `gp` and `municipality`: in the hospital record and the
    /// home measurements, a reference to one of their resources (an admission's reason, a
    /// Condition the GP diagnosed) becomes `Type/<source>.<id>`, which reads through to the
    /// source. The Patient, which every sector holds under one id, stays as it is.
    pub fn refer_across(&mut self, gp: &str, municipality: &str) {
        let mut elsewhere = HashMap::new();
        for (source, part) in [(gp, &self.gp), (municipality, &self.municipality)] {
            for resource in part {
                if let (Some(kind), Some(id)) =
                    (resource["resourceType"].as_str(), resource["id"].as_str())
                    && kind != "Patient"
                {
                    elsewhere.insert(format!("{kind}/{id}"), format!("{kind}/{source}.{id}"));
                }
            }
        }
        for resource in self.hospital.iter_mut().chain(self.home.iter_mut()) {
            rename_references(resource, &elsewhere);
        }
    }
}

/// Replaces every `reference` in `value` that `renamed` maps.
fn rename_references(value: &mut Value, renamed: &HashMap<String, String>) {
    match value {
        Value::Object(object) => {
            for (key, inner) in object.iter_mut() {
                match inner.as_str().and_then(|reference| renamed.get(reference)) {
                    Some(new) if key == "reference" => *inner = Value::String(new.clone()),
                    _ => rename_references(inner, renamed),
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| rename_references(item, renamed)),
        _ => {}
    }
}

/// Patient number `index` by sector: [`patient`](crate::patient)'s resources plus the vital
/// signs taken at hospital admissions, which only a hospital record holds.
pub fn patient_by_sector(opts: &SynthOptions, index: usize) -> BySector {
    let resources = generate(opts, index, Extras::AdmissionVitals);
    let mut providers = std::collections::HashMap::new();
    for resource in &resources {
        if resource["resourceType"] == "Encounter"
            && let Some(id) = resource["id"].as_str()
        {
            providers.insert(
                id.to_owned(),
                organization_sector(&resource["serviceProvider"]),
            );
        }
    }
    let mut by_sector = BySector::default();
    for resource in resources {
        if resource["resourceType"] == "Patient" {
            by_sector.gp.push(resource.clone());
            by_sector.municipality.push(resource.clone());
            by_sector.hospital.push(resource);
            continue;
        }
        let sector = match resource["resourceType"].as_str() {
            Some("Encounter") => organization_sector(&resource["serviceProvider"]),
            Some("Condition" | "MedicationRequest" | "MedicationStatement") => Sector::Gp,
            Some("Observation" | "DiagnosticReport") => {
                let encounter = resource["encounter"]["reference"]
                    .as_str()
                    .and_then(|r| r.strip_prefix("Encounter/"));
                match encounter.and_then(|id| providers.get(id)) {
                    Some(sector) => *sector,
                    None if resource["performer"].is_null() => Sector::Home,
                    None => organization_sector(&resource["performer"][0]),
                }
            }
            Some("Procedure") => match organization_sector(&resource["performer"][0]["actor"]) {
                Sector::Gp => Sector::Gp,
                _ => Sector::Hospital,
            },
            _ => Sector::Hospital,
        };
        match sector {
            Sector::Hospital => by_sector.hospital.push(resource),
            Sector::Gp => by_sector.gp.push(resource),
            Sector::Municipality => by_sector.municipality.push(resource),
            Sector::Home => by_sector.home.push(resource),
        }
    }
    by_sector
}

/// The sector of an organization reference: GP clinics are `Organization/gp-…`, municipalities
/// `Organization/municipality-…`, the regions (which run the hospitals) the rest.
fn organization_sector(reference: &Value) -> Sector {
    let id = reference["reference"]
        .as_str()
        .and_then(|r| r.strip_prefix("Organization/"))
        .unwrap_or_default();
    if id.starts_with("gp-") {
        Sector::Gp
    } else if id.starts_with("municipality-") {
        Sector::Municipality
    } else {
        Sector::Hospital
    }
}

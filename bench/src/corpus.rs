//! The import corpus: one Synthea-style FHIR transaction Bundle per synthetic patient, built
//! before any timer starts and kept in memory as serialized JSON, so the timed import measures
//! the realistic "file → store" path (parse, resolve, validate, index, write).

use std::collections::HashMap;

use anyhow::Context as _;
use healthcloud_synth::{self as synth, SynthOptions};
use serde_json::{Value, json};

/// The code system of the blood-pressure panel code the search benchmark looks for.
pub const LOINC: &str = "http://loinc.org";
/// LOINC "Blood pressure panel with all children optional".
pub const BP_PANEL: &str = "85354-9";
/// The identifier system of the (fake) CPR numbers synth gives every Patient.
const CPR_SYSTEM: &str = "urn:oid:1.2.208.176.1.2";

/// Everything the import and search phases need, generated up front.
#[derive(Debug)]
pub struct Corpus {
    /// The shared Organizations, as a transaction Bundle of PUTs: patients refer to them by
    /// their readable ids (`Organization/gp-0001`), so they keep those ids.
    pub organizations: String,
    /// One serialized transaction Bundle per patient, in patient order.
    pub bundles: Vec<String>,
    /// What the search phase needs to know about each patient, in patient order.
    pub patients: Vec<PatientFacts>,
    /// Resources in all Bundles (organizations included).
    pub resources: usize,
    /// Serialized size of all Bundles.
    pub bytes: usize,
}

/// Facts about one generated patient, used to find it after import (the import assigns new
/// ids) and to check that searches return what was imported.
#[derive(Debug, Clone)]
pub struct PatientFacts {
    /// `system|value` of its CPR identifier, if it has one.
    pub identifier: Option<String>,
    /// How many blood-pressure panel Observations it has.
    pub bp_observations: usize,
}

/// Generates `options.patients` patients on all cores and turns each into a transaction Bundle.
pub fn build(options: &SynthOptions) -> anyhow::Result<Corpus> {
    let organizations = synth::organizations(options);
    let org_count = organizations.len();
    let organizations = serde_json::to_string(&organization_bundle(organizations))?;

    // Patients are independent (synth derives each from its own RNG), so contiguous slices are
    // built on separate threads and concatenated in order: the corpus stays deterministic.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(options.patients.max(1));
    let per_thread = options.patients.div_ceil(threads);
    let parts: Vec<anyhow::Result<Vec<(String, PatientFacts, usize)>>> =
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let range = (t * per_thread)..((t + 1) * per_thread).min(options.patients);
                    scope.spawn(move || range.map(|index| patient_bundle(options, index)).collect())
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("a corpus thread panicked")))
                })
                .collect()
        });

    let mut corpus = Corpus {
        bytes: organizations.len(),
        organizations,
        bundles: Vec::with_capacity(options.patients),
        patients: Vec::with_capacity(options.patients),
        resources: org_count,
    };
    for part in parts {
        for (bundle, facts, resources) in part? {
            corpus.bytes += bundle.len();
            corpus.resources += resources;
            corpus.bundles.push(bundle);
            corpus.patients.push(facts);
        }
    }
    Ok(corpus)
}

/// The Organizations as PUT entries, so their ids (which patients reference) are kept.
fn organization_bundle(organizations: Vec<Value>) -> Value {
    let entry: Vec<Value> = organizations
        .into_iter()
        .map(|org| {
            let url = format!("Organization/{}", org["id"].as_str().unwrap_or_default());
            json!({ "resource": org, "request": { "method": "PUT", "url": url } })
        })
        .collect();
    json!({ "resourceType": "Bundle", "type": "transaction", "entry": entry })
}

/// Patient number `index` as a serialized transaction Bundle, with its facts and resource count.
///
/// Like Synthea output: every entry has `fullUrl: urn:uuid:<id>` and `request: POST <Type>`,
/// and every reference between the patient's own resources (to the Patient, Encounters,
/// Conditions, …) points at that fullUrl, so the importer must resolve them to the ids it
/// assigns. References to the shared Organizations stay literal.
fn patient_bundle(
    options: &SynthOptions,
    index: usize,
) -> anyhow::Result<(String, PatientFacts, usize)> {
    let mut resources = synth::patient(options, index);
    let mut local = HashMap::with_capacity(resources.len());
    for resource in &resources {
        let (resource_type, id) =
            type_and_id(resource).with_context(|| format!("patient {index}"))?;
        // synth ids are UUIDs, so they serve directly as urn:uuid fullUrls.
        local.insert(format!("{resource_type}/{id}"), format!("urn:uuid:{id}"));
    }
    let facts = PatientFacts {
        identifier: resources.first().and_then(cpr_identifier),
        bp_observations: resources.iter().filter(|r| is_bp_panel(r)).count(),
    };
    let count = resources.len();
    let mut entry = Vec::with_capacity(count);
    for mut resource in resources.drain(..) {
        rewrite_references(&mut resource, &local);
        let (resource_type, id) = type_and_id(&resource)?;
        entry.push(json!({
            "fullUrl": format!("urn:uuid:{id}"),
            "resource": resource,
            "request": { "method": "POST", "url": resource_type },
        }));
    }
    let bundle = json!({ "resourceType": "Bundle", "type": "transaction", "entry": entry });
    Ok((serde_json::to_string(&bundle)?, facts, count))
}

/// `(resourceType, id)` of a generated resource.
pub fn type_and_id(resource: &Value) -> anyhow::Result<(String, String)> {
    let resource_type = resource["resourceType"]
        .as_str()
        .context("resource without resourceType")?;
    let id = resource["id"].as_str().context("resource without id")?;
    Ok((resource_type.to_owned(), id.to_owned()))
}

/// Replaces every `reference` string found in `map` by its mapped value, at any depth.
pub fn rewrite_references(value: &mut Value, map: &HashMap<String, String>) {
    match value {
        Value::Object(object) => {
            for (key, child) in object.iter_mut() {
                match child {
                    Value::String(reference) if key == "reference" => {
                        if let Some(target) = map.get(reference.as_str()) {
                            reference.clone_from(target);
                        }
                    }
                    _ => rewrite_references(child, map),
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| rewrite_references(item, map)),
        _ => {}
    }
}

fn cpr_identifier(patient: &Value) -> Option<String> {
    let identifiers = patient["identifier"].as_array()?;
    let value = identifiers.iter().find(|i| i["system"] == CPR_SYSTEM)?["value"].as_str()?;
    Some(format!("{CPR_SYSTEM}|{value}"))
}

/// Whether `resource` is an Observation the benchmark's `code=LOINC|85354-9` search matches
/// (the `code` parameter indexes `Observation.code` only, not component codes).
fn is_bp_panel(resource: &Value) -> bool {
    resource["resourceType"] == "Observation"
        && resource["code"]["coding"]
            .as_array()
            .is_some_and(|codings| {
                codings
                    .iter()
                    .any(|c| c["system"] == LOINC && c["code"] == BP_PANEL)
            })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn references(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(object) => {
                for (key, child) in object {
                    match child {
                        Value::String(r) if key == "reference" => out.push(r.clone()),
                        _ => references(child, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| references(item, out)),
            _ => {}
        }
    }

    #[test]
    fn bundles_are_synthea_style_transactions() {
        let options = SynthOptions {
            patients: 5,
            seed: 7,
            today: "2026-11-01".parse().unwrap(),
        };
        let corpus = build(&options).unwrap();
        assert_eq!(corpus.bundles.len(), 5);
        assert!(corpus.patients.iter().all(|p| p.identifier.is_some()));
        for text in &corpus.bundles {
            let bundle: Value = serde_json::from_str(text).unwrap();
            assert_eq!(bundle["type"], "transaction");
            let entries = bundle["entry"].as_array().unwrap();
            assert_eq!(entries[0]["resource"]["resourceType"], "Patient");
            let full_urls: Vec<&str> = entries
                .iter()
                .map(|e| e["fullUrl"].as_str().unwrap())
                .collect();
            let mut refs = Vec::new();
            for entry in entries {
                assert_eq!(entry["request"]["method"], "POST");
                assert_eq!(entry["request"]["url"], entry["resource"]["resourceType"]);
                references(&entry["resource"], &mut refs);
            }
            // Every reference is to an entry of the Bundle or to a shared Organization.
            for r in &refs {
                assert!(
                    full_urls.contains(&r.as_str()) || r.starts_with("Organization/"),
                    "{r}"
                );
            }
            assert!(
                refs.contains(&full_urls[0].to_owned()),
                "nothing refers to the Patient"
            );
        }
    }
}

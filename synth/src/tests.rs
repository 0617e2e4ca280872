//! Shape, determinism and consistency of the generated data.

use chrono::{Datelike, NaiveDate, TimeDelta};
use serde_json::Value;
use std::collections::HashSet;

use crate::codes::{SYS_ATC, SYS_CPR, SYS_NPU, SYS_SOR, SYS_UCUM};
use crate::options::SynthOptions;
use crate::organizations::organizations;
use crate::patient::patient;

fn opts(seed: u64) -> SynthOptions {
    SynthOptions {
        patients: 2_000,
        seed,
        today: NaiveDate::from_ymd_opt(2025, 6, 15).unwrap(),
    }
}

fn is_fhir_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

fn walk<'a>(v: &'a Value, key: Option<&'a str>, f: &mut dyn FnMut(Option<&'a str>, &'a Value)) {
    f(key, v);
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                walk(child, Some(k.as_str()), f);
            }
        }
        Value::Array(a) => {
            for child in a {
                walk(child, key, f);
            }
        }
        _ => {}
    }
}

fn references(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(v, None, &mut |k, v| {
        if k == Some("reference")
            && let Some(s) = v.as_str()
        {
            out.push(s.to_string());
        }
    });
    out
}

fn of_type<'a>(res: &'a [Value], t: &str) -> impl Iterator<Item = &'a Value> {
    res.iter().filter(move |r| r["resourceType"] == t)
}

#[test]
fn deterministic_per_seed_and_index() {
    let a = opts(42);
    for i in [0, 1, 17, 1999] {
        let x = serde_json::to_string(&patient(&a, i)).unwrap();
        let y = serde_json::to_string(&patient(&a, i)).unwrap();
        assert_eq!(x, y);
    }
    assert_eq!(organizations(&a), organizations(&a));
    let b = opts(43);
    assert_ne!(patient(&a, 5), patient(&b, 5));
    assert_ne!(patient(&a, 5), patient(&a, 6));
    // Generation order must not matter.
    let forward: Vec<_> = (0..5).map(|i| patient(&a, i)).collect();
    let backward: Vec<_> = (0..5).rev().map(|i| patient(&a, i)).collect();
    assert_eq!(forward, backward.into_iter().rev().collect::<Vec<_>>());
}

#[test]
fn organizations_shape() {
    let o = opts(1);
    let orgs = organizations(&o);
    assert_eq!(orgs.len(), 5 + 10 + 3);
    let big = organizations(&SynthOptions {
        patients: 100_000,
        ..o
    });
    assert_eq!(big.len(), 15 + 67);
    for org in &big {
        assert_eq!(org["resourceType"], "Organization");
        assert!(is_fhir_id(org["id"].as_str().unwrap()));
        assert_eq!(org["identifier"][0]["system"], SYS_SOR);
        assert!(org["name"].as_str().is_some_and(|n| !n.is_empty()));
        assert_eq!(org["address"][0]["country"], "DK");
        assert!(org.get("meta").is_none());
    }
    let ids: HashSet<_> = big.iter().map(|o| o["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), big.len());
    for id in [
        "region-hovedstaden",
        "municipality-aarhus",
        "gp-0001",
        "gp-0067",
    ] {
        assert!(ids.contains(id), "{id}");
    }
}

#[test]
fn resources_are_wellformed_and_references_resolve() {
    let o = opts(7);
    let org_ids: HashSet<String> = organizations(&o)
        .iter()
        .map(|r| format!("Organization/{}", r["id"].as_str().unwrap()))
        .collect();
    let mut all_ids = HashSet::new();
    for i in 0..300 {
        let res = patient(&o, i);
        assert_eq!(res[0]["resourceType"], "Patient");
        let me = format!("Patient/{}", res[0]["id"].as_str().unwrap());
        let local: HashSet<String> = res
            .iter()
            .map(|r| {
                format!(
                    "{}/{}",
                    r["resourceType"].as_str().unwrap(),
                    r["id"].as_str().unwrap()
                )
            })
            .collect();
        for r in &res {
            let rt = r["resourceType"].as_str().expect("resourceType");
            let id = r["id"].as_str().expect("id");
            assert!(is_fhir_id(id), "bad id {id}");
            assert!(all_ids.insert(id.to_string()), "duplicate id {id}");
            assert!(r.get("meta").is_none(), "meta must be left to the store");
            // FHIR JSON forbids nulls and empty arrays; a leftover template slot would show
            // up here.
            walk(r, None, &mut |k, v| {
                assert!(!v.is_null(), "{rt}.{k:?} is null");
                assert!(
                    v.as_array().is_none_or(|a| !a.is_empty()),
                    "{rt}.{k:?} is an empty array"
                );
            });
            for reference in references(r) {
                if reference.starts_with("Patient/") {
                    assert_eq!(reference, me);
                } else if reference.starts_with("Organization/") {
                    assert!(org_ids.contains(&reference), "{reference}");
                } else {
                    assert!(local.contains(&reference), "{rt} has dangling {reference}");
                }
            }
            match rt {
                "Patient" => {}
                "AllergyIntolerance" | "Immunization" => {
                    assert_eq!(r["patient"]["reference"], me.as_str());
                    assert!(r.get("subject").is_none());
                }
                _ => assert_eq!(r["subject"]["reference"], me.as_str(), "{rt}"),
            }
        }
    }
}

#[test]
fn cpr_is_replacement_number_matching_birth_date() {
    let o = opts(3);
    for i in 0..500 {
        let p = &patient(&o, i)[0];
        let cpr = p["identifier"][0]["value"].as_str().unwrap();
        assert_eq!(p["identifier"][0]["system"], SYS_CPR);
        assert_eq!(cpr.len(), 10);
        assert!(cpr.bytes().all(|b| b.is_ascii_digit()));
        let dd: u32 = cpr[0..2].parse().unwrap();
        assert!((61..=91).contains(&dd), "{cpr}");
        let birth =
            NaiveDate::parse_from_str(p["birthDate"].as_str().unwrap(), "%Y-%m-%d").unwrap();
        assert_eq!(dd - 60, birth.day());
        assert_eq!(cpr[2..4].parse::<u32>().unwrap(), birth.month());
        assert_eq!(cpr[4..6].parse::<i32>().unwrap(), birth.year() % 100);
        let male = cpr.as_bytes()[9] % 2 == 1;
        assert_eq!(p["gender"], if male { "male" } else { "female" });
        let age = o.today.years_since(birth).unwrap();
        assert!((18..=95).contains(&age), "age {age}");
        assert_eq!(p["address"][0]["country"], "DK");
    }
}

#[test]
fn vitals_and_labs_have_expected_codes_and_units() {
    let o = opts(11);
    let (mut bp_count, mut hba1c_count, mut glucose_count) = (0, 0, 0);
    for i in 0..300 {
        let res = patient(&o, i);
        for obs in of_type(&res, "Observation") {
            assert_eq!(obs["status"], "final");
            let code = obs["code"]["coding"][0]["code"].as_str().unwrap();
            let dt = obs["effectiveDateTime"].as_str().unwrap();
            assert!(
                dt.len() == 25 && (dt.ends_with("+01:00") || dt.ends_with("+02:00")),
                "{dt}"
            );
            match code {
                "85354-9" => {
                    bp_count += 1;
                    let comps = obs["component"].as_array().unwrap();
                    assert_eq!(comps.len(), 2);
                    let sys = &comps[0]["valueQuantity"];
                    let dia = &comps[1]["valueQuantity"];
                    assert_eq!(comps[0]["code"]["coding"][0]["code"], "8480-6");
                    assert_eq!(comps[1]["code"]["coding"][0]["code"], "8462-4");
                    for q in [sys, dia] {
                        assert_eq!(q["unit"], "mmHg");
                        assert_eq!(q["code"], "mm[Hg]");
                        assert_eq!(q["system"], SYS_UCUM);
                    }
                    let (s, d) = (
                        sys["value"].as_i64().unwrap(),
                        dia["value"].as_i64().unwrap(),
                    );
                    assert!((110..=190).contains(&s) && (60..=110).contains(&d) && d < s);
                    assert_eq!(obs["category"][0]["coding"][0]["code"], "vital-signs");
                }
                "59261-8" => {
                    hba1c_count += 1;
                    let codings = obs["code"]["coding"].as_array().unwrap();
                    assert_eq!(codings.len(), 2);
                    assert_eq!(codings[1]["system"], SYS_NPU);
                    assert_eq!(codings[1]["code"], "NPU27300");
                    assert_eq!(obs["valueQuantity"]["unit"], "mmol/mol");
                    assert_eq!(obs["valueQuantity"]["code"], "mmol/mol");
                    let v = obs["valueQuantity"]["value"].as_i64().unwrap();
                    assert!((30..=95).contains(&v));
                    assert_eq!(obs["category"][0]["coding"][0]["code"], "laboratory");
                }
                "2345-7" => {
                    glucose_count += 1;
                    assert_eq!(obs["code"]["coding"][1]["code"], "NPU02192");
                    assert_eq!(obs["valueQuantity"]["unit"], "mmol/L");
                }
                "8867-4" => assert_eq!(obs["valueQuantity"]["unit"], "/min"),
                "29463-7" => assert_eq!(obs["valueQuantity"]["unit"], "kg"),
                other => panic!("unexpected observation code {other}"),
            }
        }
        for report in of_type(&res, "DiagnosticReport") {
            assert!(!report["result"].as_array().unwrap().is_empty());
        }
    }
    assert!(bp_count > 1_000, "expected long BP series, got {bp_count}");
    assert!(hba1c_count > 50 && glucose_count > 20);
}

#[test]
fn dates_are_past_and_after_birth() {
    let o = opts(5);
    let today = o.today;
    for i in 0..300 {
        let res = patient(&o, i);
        let birth =
            NaiveDate::parse_from_str(res[0]["birthDate"].as_str().unwrap(), "%Y-%m-%d").unwrap();
        for r in &res {
            walk(r, None, &mut |k, v| {
                let Some(s) = v.as_str() else { return };
                let b = s.as_bytes();
                if b.len() < 10
                    || b[4] != b'-'
                    || b[7] != b'-'
                    || !b[..4].iter().all(u8::is_ascii_digit)
                {
                    return;
                }
                let d = NaiveDate::parse_from_str(&s[..10], "%Y-%m-%d").unwrap();
                assert!(d < today, "{k:?} {s} is not in the past");
                if k != Some("birthDate") {
                    assert!(d > birth, "{k:?} {s} before birth {birth}");
                    assert!(d >= today - TimeDelta::days(5 * 366), "{k:?} {s} too old");
                }
            });
        }
    }
}

#[test]
fn volume_is_in_the_expected_range() {
    let o = opts(9);
    let n = 400;
    let total: usize = (0..n).map(|i| patient(&o, i).len()).sum();
    let avg = total as f64 / n as f64;
    assert!(
        (35.0..=75.0).contains(&avg),
        "average resources per patient {avg}"
    );
    // Some patients must carry the heavy chronic series.
    assert!((0..n).any(|i| patient(&o, i).len() > 150));
}

#[test]
fn medications_are_coded_with_atc() {
    let o = opts(13);
    let mut seen = 0;
    for i in 0..200 {
        let res = patient(&o, i);
        for m in res.iter().filter(|r| {
            r["resourceType"] == "MedicationRequest" || r["resourceType"] == "MedicationStatement"
        }) {
            seen += 1;
            assert_eq!(
                m["medicationCodeableConcept"]["coding"][0]["system"],
                SYS_ATC
            );
            if m["resourceType"] == "MedicationRequest" {
                assert_eq!(m["intent"], "order");
                assert!(
                    ["active", "completed", "stopped"].contains(&m["status"].as_str().unwrap())
                );
                assert!(m["dosageInstruction"][0]["text"].is_string());
            } else {
                assert!(["active", "completed"].contains(&m["status"].as_str().unwrap()));
                assert!(m["effectivePeriod"]["start"].is_string());
            }
        }
    }
    assert!(seen > 100);
}

#[test]
fn by_sector_is_the_patient_plus_admission_vitals_split_by_who_recorded_it() {
    let options = SynthOptions {
        patients: 300,
        ..opts(11)
    };
    let mut admitted = 0;
    for index in 0..options.patients {
        let whole = patient(&options, index);
        let split = crate::sectors::patient_by_sector(&options, index);
        let patient_resource = &whole[0];
        for part in [&split.hospital, &split.gp, &split.municipality] {
            assert_eq!(&part[0], patient_resource, "each system knows the patient");
        }
        let parts: Vec<&Value> = split.hospital[1..]
            .iter()
            .chain(&split.gp[1..])
            .chain(&split.municipality[1..])
            .chain(&split.home)
            .collect();
        // Every resource of `patient` lands in exactly one sector; what is added is the
        // vital signs the hospital took at admissions.
        let ids = |resources: &mut dyn Iterator<Item = &Value>| -> HashSet<String> {
            resources
                .map(|r| r["id"].as_str().unwrap().to_owned())
                .collect()
        };
        let whole_ids = ids(&mut whole[1..].iter());
        let split_ids = ids(&mut parts.iter().copied());
        assert_eq!(split_ids.len(), parts.len(), "no resource in two sectors");
        assert!(split_ids.is_superset(&whole_ids));
        let added: Vec<&&Value> = parts
            .iter()
            .filter(|r| !whole_ids.contains(r["id"].as_str().unwrap()))
            .collect();
        for vital in &added {
            assert_eq!(vital["resourceType"], "Observation");
            assert!(split.hospital.contains(vital));
            assert!(
                vital["performer"][0]["reference"]
                    .as_str()
                    .unwrap()
                    .starts_with("Organization/region-")
            );
        }
        if !added.is_empty() {
            admitted += 1;
        }
        for reading in &split.home {
            assert!(reading["performer"].is_null() && reading["encounter"].is_null());
        }
        for resource in &split.gp[1..] {
            if resource["resourceType"] == "Encounter" {
                assert!(
                    resource["serviceProvider"]["reference"]
                        .as_str()
                        .unwrap()
                        .starts_with("Organization/gp-")
                );
            }
        }
        for resource in &split.municipality[1..] {
            let by = match resource["resourceType"].as_str().unwrap() {
                "Encounter" => &resource["serviceProvider"],
                _ => &resource["performer"][0],
            };
            assert!(
                by["reference"]
                    .as_str()
                    .unwrap()
                    .starts_with("Organization/municipality-")
            );
        }
    }
    assert!(admitted > 0, "some patients were admitted");
}

#[test]
fn across_sectors_the_hospital_record_names_what_the_gp_and_the_municipality_hold_as_their_sources()
{
    let options = SynthOptions {
        patients: 100,
        ..opts(12)
    };
    let mut across = 0;
    for index in 0..options.patients {
        let mut split = crate::sectors::patient_by_sector(&options, index);
        let named = |part: &[Value], source: &str| -> HashSet<(String, String)> {
            part.iter()
                .filter(|r| r["resourceType"] != "Patient")
                .map(|r| {
                    let kind = r["resourceType"].as_str().unwrap();
                    let id = r["id"].as_str().unwrap();
                    (format!("{kind}/{id}"), format!("{kind}/{source}.{id}"))
                })
                .collect()
        };
        let held: HashSet<_> = named(&split.gp, "gp")
            .union(&named(&split.municipality, "municipality"))
            .cloned()
            .collect();
        split.refer_across("gp", "municipality");
        let found: Vec<String> = split
            .hospital
            .iter()
            .chain(&split.home)
            .flat_map(references)
            .collect();
        for reference in &found {
            assert!(
                held.iter().all(|(plain, _)| plain != reference),
                "{reference} names a resource the hospital does not hold"
            );
        }
        across += found
            .iter()
            .filter(|reference| held.iter().any(|(_, source)| source == *reference))
            .count();
    }
    assert!(across > 10, "admissions name the GP's diagnoses: {across}");
}

//! The shared Organizations: the 5 regions, 10 municipalities and the GP clinics. A clinic's
//! municipality is computed without an RNG, so a patient can name its GP and live near it
//! without the clinics being generated.

use rand::Rng;
use serde_json::{Value, json};

use crate::codes::{SYS_ORG_TYPE, SYS_SOR};
use crate::geography::{MUNICIPALITIES, REGIONS, STREETS};
use crate::names::{FAMILY_NAMES, FEMALE_OLDER, MALE_OLDER};
use crate::options::SynthOptions;
use crate::rng::{DOMAIN_GP, pick, rng_for};

/// Shared resources: the 5 Danish regions, 10 municipalities and the GP clinics (about one per
/// 1,500 patients, at least 3), each with a SOR identifier on system `urn:oid:1.2.208.176.1.1`,
/// a name, a type and a Danish address. Ids are readable (`region-hovedstaden`,
/// `municipality-aarhus`, `gp-0001`) because patients reference them directly.
pub fn organizations(opts: &SynthOptions) -> Vec<Value> {
    let n_gp = gp_count(opts.patients);
    let mut out = Vec::with_capacity(REGIONS.len() + MUNICIPALITIES.len() + n_gp);
    for (k, r) in REGIONS.iter().enumerate() {
        out.push(organization(
            format!("region-{}", r.slug),
            sor(1, k),
            ("govt", "Government", "Region"),
            r.name.to_string(),
            (r.line.to_string(), r.postal, r.city),
        ));
    }
    for (k, m) in MUNICIPALITIES.iter().enumerate() {
        out.push(organization(
            format!("municipality-{}", m.slug),
            sor(2, k),
            ("govt", "Government", "Kommune"),
            m.name.to_string(),
            (m.line.to_string(), m.postal, m.city),
        ));
    }
    for i in 0..n_gp {
        let mut rng = rng_for(opts.seed, i as u64, DOMAIN_GP);
        let muni = &MUNICIPALITIES[gp_municipality(i)];
        let (postal, city) = *pick(&mut rng, muni.districts);
        let street = *pick(&mut rng, STREETS);
        let line = format!("{street} {}", rng.gen_range(1..=140));
        let name = match rng.gen_range(0..5) {
            0 => format!("Lægerne {street}"),
            1 => format!("Lægehuset {city}"),
            2 => {
                let given = if rng.gen_bool(0.5) {
                    pick(&mut rng, FEMALE_OLDER)
                } else {
                    pick(&mut rng, MALE_OLDER)
                };
                format!("Læge {given} {}", pick(&mut rng, FAMILY_NAMES))
            }
            3 => {
                let a = pick(&mut rng, FAMILY_NAMES);
                let b = pick(&mut rng, FAMILY_NAMES);
                if a == b {
                    format!("Lægerne {a}")
                } else {
                    format!("Lægerne {a} & {b}")
                }
            }
            _ => format!("Lægecenter {city}"),
        };
        out.push(organization(
            gp_id(i),
            sor(3, i),
            ("prov", "Healthcare Provider", "Almen praksis"),
            name,
            (line, postal, city),
        ));
    }
    out
}

/// The first clinics go one per municipality, spread over all regions, so that even the minimum
/// of three clinics covers several regions.
pub(crate) const GP_MUNICIPALITY_ORDER: [usize; 10] = [0, 7, 5, 9, 3, 1, 6, 8, 4, 2];

pub(crate) fn gp_count(patients: usize) -> usize {
    patients.div_ceil(1500).max(3)
}

pub(crate) fn gp_id(i: usize) -> String {
    format!("gp-{:04}", i + 1)
}

/// Municipality of clinic `i`, computed without an RNG so that `patient()` can locate its GP's
/// address without generating the organizations.
pub(crate) fn gp_municipality(i: usize) -> usize {
    if let Some(&m) = GP_MUNICIPALITY_ORDER.get(i) {
        return m;
    }
    // Golden-ratio low-discrepancy sequence: spreads later clinics proportionally to
    // population weight without clustering.
    let total: u32 = MUNICIPALITIES.iter().map(|m| m.weight).sum();
    let x = ((i as f64) * 0.618_033_988_749_895).fract() * f64::from(total);
    let mut acc = 0.0;
    for (k, m) in MUNICIPALITIES.iter().enumerate() {
        acc += f64::from(m.weight);
        if x < acc {
            return k;
        }
    }
    MUNICIPALITIES.len() - 1
}

pub(crate) fn sor(kind: u64, n: usize) -> String {
    // The "99" prefix keeps the synthetic SOR codes out of the range of real registrations.
    format!("99{kind}{:012}", n + 1)
}

pub(crate) fn organization(
    id: String,
    sor_code: String,
    (type_code, type_display, type_text): (&str, &str, &str),
    name: String,
    (line, postal, city): (String, &str, &str),
) -> Value {
    json!({
        "resourceType": "Organization",
        "id": id,
        "identifier": [{ "system": SYS_SOR, "value": sor_code }],
        "active": true,
        "type": [{
            "coding": [{ "system": SYS_ORG_TYPE, "code": type_code, "display": type_display }],
            "text": type_text
        }],
        "name": name,
        "address": [{ "use": "work", "line": [line], "city": city, "postalCode": postal, "country": "DK" }]
    })
}

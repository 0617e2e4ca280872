//! One patient's resources: the Patient (names, CPR-like identifier, address, contact,
//! GP) first, then each clinical domain in an order where referenced resources precede their
//! referrers.

use rand::Rng;
use serde_json::{Map, Value, json};

use crate::allergies::allergies;
use crate::calendar::fmt_date;
use crate::care::{admission_vitals, care, plan_admissions};
use crate::codes::SYS_CPR;
use crate::context::Ctx;
use crate::diagnoses::diagnoses;
use crate::geography::{MUNICIPALITIES, Municipality, REGIONS, STREETS};
use crate::immunizations::immunizations;
use crate::options::SynthOptions;
use crate::organizations::{gp_count, gp_id, gp_municipality};
use crate::person::{Person, sample_person};
use crate::physiology::Physiology;
use crate::procedures::procedures;
use crate::rng::{DOMAIN_PATIENT, new_id, pick, rng_for};
use crate::treatments::{medication_resources, treatments};

/// The resources of patient number `index` (0-based): the Patient first, then every resource
/// whose subject/patient is that patient (Conditions, AllergyIntolerances, Encounters,
/// Observations, DiagnosticReports, MedicationRequests/MedicationStatements, Immunizations,
/// Procedures, in that order so that referenced resources precede their referrers).
///
/// Deterministic: depends only on `(opts.seed, index, opts.today, opts.patients)`, so patients
/// can be generated in parallel or in any order.
pub fn patient(opts: &SynthOptions, index: usize) -> Vec<Value> {
    generate(opts, index, Extras::None)
}

/// What [`generate`] adds to a patient's record beyond [`patient`]'s output.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Extras {
    /// Exactly [`patient`]'s output.
    None,
    /// Also the vital signs taken at each hospital admission. They are drawn after
    /// everything else, so every other resource is the same as [`patient`]'s.
    AdmissionVitals,
}

pub(crate) fn generate(opts: &SynthOptions, index: usize, extras: Extras) -> Vec<Value> {
    let mut rng = rng_for(opts.seed, index as u64, DOMAIN_PATIENT);
    let patient_id = new_id(&mut rng, index as u64);
    let gp = rng.gen_range(0..gp_count(opts.patients));
    let muni_idx = gp_municipality(gp);
    let muni = &MUNICIPALITIES[muni_idx];
    let region = &REGIONS[muni.region];
    let person = sample_person(&mut rng, opts.today);

    let mut ctx = Ctx {
        rng,
        index: index as u64,
        today: opts.today,
        patient_ref: json!({ "reference": format!("Patient/{patient_id}") }),
        gp_ref: json!({ "reference": format!("Organization/{}", gp_id(gp)) }),
        region_ref: json!({ "reference": format!("Organization/region-{}", region.slug) }),
        municipality_ref: json!({ "reference": format!("Organization/municipality-{}", muni.slug) }),
        conditions: Vec::new(),
        allergies: Vec::new(),
        encounters: Vec::new(),
        observations: Vec::new(),
        reports: Vec::new(),
        medications: Vec::new(),
        immunizations: Vec::new(),
        procedures: Vec::new(),
    };

    let patient_json = patient_resource(&mut ctx, &patient_id, &person, muni);
    let dx = diagnoses(&mut ctx, person.age);
    allergies(&mut ctx);
    let courses = treatments(&mut ctx, &dx);
    for c in &courses.0 {
        medication_resources(&mut ctx, c, &dx);
    }
    let admissions = plan_admissions(&mut ctx, &dx);
    let phys = Physiology::new(&mut ctx, &person, &dx, &courses, admissions);
    care(&mut ctx, &phys, &person, &dx);
    immunizations(&mut ctx, person.age);
    procedures(&mut ctx, &person, &dx, &courses);
    if extras == Extras::AdmissionVitals {
        admission_vitals(&mut ctx, &phys);
    }

    let mut out = Vec::with_capacity(
        1 + ctx.conditions.len()
            + ctx.allergies.len()
            + ctx.encounters.len()
            + ctx.observations.len()
            + ctx.reports.len()
            + ctx.medications.len()
            + ctx.immunizations.len()
            + ctx.procedures.len(),
    );
    out.push(patient_json);
    out.append(&mut ctx.conditions);
    out.append(&mut ctx.allergies);
    out.append(&mut ctx.encounters);
    out.append(&mut ctx.observations);
    out.append(&mut ctx.reports);
    out.append(&mut ctx.medications);
    out.append(&mut ctx.immunizations);
    out.append(&mut ctx.procedures);
    out
}

pub(crate) fn ascii_fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        match c {
            'æ' | 'Æ' => out.push_str("ae"),
            'ø' | 'Ø' => out.push_str("oe"),
            'å' | 'Å' => out.push_str("aa"),
            c if c.is_ascii_alphanumeric() => out.push(c.to_ascii_lowercase()),
            _ => {}
        }
    }
    out
}

pub(crate) fn patient_resource(
    ctx: &mut Ctx,
    id: &str,
    person: &Person,
    muni: &Municipality,
) -> Value {
    let (postal, city) = *pick(&mut ctx.rng, muni.districts);
    let street = *pick(&mut ctx.rng, STREETS);
    let number = ctx.int(1, 160);
    let line = if ctx.chance(0.4) {
        let side = *pick(&mut ctx.rng, &["th", "tv", "mf"]);
        format!("{street} {number}, {}. {side}", ctx.int(1, 5))
    } else {
        format!("{street} {number}")
    };
    let mut p = Map::with_capacity(14);
    p.insert("resourceType".into(), "Patient".into());
    p.insert("id".into(), id.into());
    p.insert(
        "text".into(),
        json!({
            "status": "generated",
            "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Synthetic test patient</div>"
        }),
    );
    p.insert(
        "identifier".into(),
        json!([{ "system": SYS_CPR, "value": person.cpr }]),
    );
    p.insert("active".into(), true.into());
    p.insert(
        "name".into(),
        json!([{ "use": "official", "family": person.family, "given": person.given }]),
    );
    if ctx.chance(0.6) {
        // example.invalid can never resolve, so the address is unmistakably fake.
        let email = format!(
            "{}.{}{}@example.invalid",
            ascii_fold(person.given[0]),
            ascii_fold(person.family),
            ctx.int(10, 99)
        );
        p.insert(
            "telecom".into(),
            json!([{ "system": "email", "value": email, "use": "home" }]),
        );
    }
    p.insert(
        "gender".into(),
        (if person.female { "female" } else { "male" }).into(),
    );
    p.insert("birthDate".into(), fmt_date(person.birth).into());
    p.insert(
        "address".into(),
        json!([{ "use": "home", "type": "physical", "line": [line], "city": city, "postalCode": postal, "country": "DK" }]),
    );
    p.insert("generalPractitioner".into(), json!([ctx.gp_ref.clone()]));
    p.insert("managingOrganization".into(), ctx.region_ref.clone());
    Value::Object(p)
}

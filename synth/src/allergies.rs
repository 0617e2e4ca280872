//! AllergyIntolerances: a minority of patients, drawn from a few common allergies by
//! relative frequency.

use rand::Rng;
use serde_json::json;

use crate::calendar::{LAST, WINDOW_START};
use crate::codes::{SYS_ALLERGY_CLINICAL, SYS_ALLERGY_VERIFICATION, SYS_SNOMED};
use crate::context::Ctx;
use crate::fhir::{coding, concept};

pub(crate) fn allergies(ctx: &mut Ctx) {
    if !ctx.chance(0.15) {
        return;
    }
    // (SNOMED code, display, Danish text, category, criticality, relative frequency)
    const ALLERGIES: [(&str, &str, &str, &str, &str, u32); 7] = [
        (
            "91936005",
            "Allergy to penicillin",
            "Penicillinallergi",
            "medication",
            "high",
            35,
        ),
        (
            "418689008",
            "Allergy to grass pollen",
            "Græspollenallergi",
            "environment",
            "low",
            20,
        ),
        (
            "232350006",
            "House dust mite allergy",
            "Husstøvmideallergi",
            "environment",
            "low",
            12,
        ),
        (
            "91935009",
            "Allergy to peanuts",
            "Jordnøddeallergi",
            "food",
            "high",
            8,
        ),
        (
            "300916003",
            "Latex allergy",
            "Latexallergi",
            "environment",
            "high",
            6,
        ),
        (
            "424213003",
            "Allergy to bee venom",
            "Allergi over for bigift",
            "environment",
            "high",
            10,
        ),
        ("91930004", "Allergy to eggs", "Ægallergi", "food", "low", 9),
    ];
    let total: u32 = ALLERGIES.iter().map(|a| a.5).sum();
    let n = if ctx.chance(0.2) { 2 } else { 1 };
    let mut used: Vec<&str> = Vec::new();
    for _ in 0..n {
        let mut x = ctx.rng.gen_range(0..total);
        let mut chosen = &ALLERGIES[0];
        for a in &ALLERGIES {
            if x < a.5 {
                chosen = a;
                break;
            }
            x -= a.5;
        }
        if used.contains(&chosen.0) {
            continue;
        }
        used.push(chosen.0);
        let id = ctx.id();
        let recorded = ctx.int(WINDOW_START, LAST);
        let allergy = json!({
            "resourceType": "AllergyIntolerance",
            "id": id,
            "clinicalStatus": { "coding": [coding(SYS_ALLERGY_CLINICAL, "active", "Active")] },
            "verificationStatus": { "coding": [coding(SYS_ALLERGY_VERIFICATION, "confirmed", "Confirmed")] },
            "type": "allergy",
            "category": [chosen.3],
            "criticality": chosen.4,
            "code": concept(SYS_SNOMED, chosen.0, chosen.1, chosen.2),
            "patient": ctx.patient_ref.clone(),
            "recordedDate": ctx.date(recorded)
        });
        ctx.allergies.push(allergy);
    }
}

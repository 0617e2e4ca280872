//! Procedures following from diagnoses and treatments (ECGs, echocardiography, spirometry,
//! joint replacements, medication reviews).

use crate::calendar::{LAST, WINDOW_START, When};
use crate::context::Ctx;
use crate::diagnoses::{Cond, Diagnoses};
use crate::person::Person;
use crate::treatments::Courses;

pub(crate) fn procedures(ctx: &mut Ctx, person: &Person, dx: &Diagnoses, courses: &Courses) {
    const ECG: (&str, &str, &str) = ("29303009", "Electrocardiographic procedure", "EKG");
    const ECHO: (&str, &str, &str) = ("40701008", "Echocardiography", "Ekkokardiografi");
    const SPIROMETRY: (&str, &str, &str) = ("127783003", "Spirometry", "Spirometri");
    const HIP: (&str, &str, &str) = (
        "52734007",
        "Total replacement of hip joint",
        "Hoftealloplastik",
    );
    const KNEE: (&str, &str, &str) = ("609588000", "Total knee replacement", "Knæalloplastik");
    const REVIEW: (&str, &str, &str) = ("182836005", "Review of medication", "Medicingennemgang");

    let gp = ctx.gp_ref.clone();
    let region = ctx.region_ref.clone();
    for d in &dx.0 {
        let at = |ctx: &mut Ctx, lo: i32, hi: i32| -> Option<When> {
            let day = d.onset + ctx.int(lo, hi);
            (day <= LAST).then(|| ctx.clinic_time(day))
        };
        match d.cond {
            Cond::Hypertension | Cond::AtrialFibrillation | Cond::HeartFailure => {
                let p = if d.cond == Cond::Hypertension {
                    0.6
                } else {
                    1.0
                };
                if ctx.chance(p)
                    && let Some(w) = at(ctx, 0, 21)
                {
                    ctx.push_procedure(ECG, w, gp.clone(), Some(&d.id));
                }
                if d.cond == Cond::HeartFailure
                    && let Some(w) = at(ctx, 7, 60)
                {
                    ctx.push_procedure(ECHO, w, region.clone(), Some(&d.id));
                }
            }
            Cond::Copd | Cond::Asthma => {
                if let Some(w) = at(ctx, 0, 30) {
                    ctx.push_procedure(SPIROMETRY, w, gp.clone(), Some(&d.id));
                }
            }
            Cond::Osteoarthritis => {
                if person.age >= 60
                    && ctx.chance(0.12)
                    && let Some(w) = at(ctx, 90, 900)
                {
                    let which = if ctx.chance(0.5) { HIP } else { KNEE };
                    ctx.push_procedure(which, w, region.clone(), Some(&d.id));
                }
            }
            _ => {}
        }
    }

    // Yearly medication reviews for patients on several drugs, as Danish GPs are paid to do.
    for k in 0..5 {
        let day = WINDOW_START + 365 * k + ctx.int(0, 364);
        if day > LAST {
            continue;
        }
        let running = courses
            .0
            .iter()
            .filter(|c| c.start <= day && c.end.is_none_or(|e| day < e))
            .count();
        if running >= 3 && ctx.chance(0.5) {
            let w = ctx.clinic_time(day);
            ctx.push_procedure(REVIEW, w, gp.clone(), None);
        }
    }
}

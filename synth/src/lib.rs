//! Deterministic generator of synthetic, clearly fake Danish patient data as FHIR R4 JSON.
//!
//! Each patient is derived from its own RNG keyed by `(seed, index)`, so a run can be produced in
//! parallel, in any order, or streamed one patient at a time without holding the population in
//! memory. The CPR-like identifiers follow the Danish "replacement number" convention (day of
//! month + 60), so no generated number can ever belong to a real person.
//!
//! The clinical model is deliberately simple but internally consistent: diagnoses drive
//! treatments, treatments drive the vital-sign and lab trajectories, and every date lies in the
//! five years before [`SynthOptions::today`], so benchmarks and demos see realistic shapes
//! (long blood-pressure series, quarterly HbA1c, medication switches) without any real data.

use chrono::{Datelike, NaiveDate, TimeDelta};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};

/// Options for one generation run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynthOptions {
    /// Number of patients in the run. It sizes the GP clinic population (about one clinic per
    /// 1,500 patients, as in Danish general practice), so it is part of every patient's output.
    pub patients: usize,
    /// Master seed: the same seed, patient count and `today` always yield byte-identical data.
    pub seed: u64,
    /// The "now" anchor. All dates are derived from it rather than the wall clock so that a run
    /// is reproducible on any day.
    pub today: NaiveDate,
}

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

/// The resources of patient number `index` (0-based): the Patient first, then every resource
/// whose subject/patient is that patient (Conditions, AllergyIntolerances, Encounters,
/// Observations, DiagnosticReports, MedicationRequests/MedicationStatements, Immunizations,
/// Procedures, in that order so that referenced resources precede their referrers).
///
/// Deterministic: depends only on `(opts.seed, index, opts.today, opts.patients)`, so patients
/// can be generated in parallel or in any order.
pub fn patient(opts: &SynthOptions, index: usize) -> Vec<Value> {
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

// ---------------------------------------------------------------------------------------------
// Code systems and fixed vocabularies
// ---------------------------------------------------------------------------------------------

const SYS_SOR: &str = "urn:oid:1.2.208.176.1.1";
const SYS_CPR: &str = "urn:oid:1.2.208.176.1.2";
const SYS_NPU: &str = "urn:oid:1.2.208.176.2.1";
const SYS_SNOMED: &str = "http://snomed.info/sct";
const SYS_ICD10: &str = "http://hl7.org/fhir/sid/icd-10";
const SYS_LOINC: &str = "http://loinc.org";
const SYS_UCUM: &str = "http://unitsofmeasure.org";
const SYS_ATC: &str = "http://www.whocc.no/atc";
const SYS_CVX: &str = "http://hl7.org/fhir/sid/cvx";
const SYS_OBS_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
const SYS_CONDITION_CLINICAL: &str = "http://terminology.hl7.org/CodeSystem/condition-clinical";
const SYS_CONDITION_VERIFICATION: &str =
    "http://terminology.hl7.org/CodeSystem/condition-ver-status";
const SYS_CONDITION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/condition-category";
const SYS_ALLERGY_CLINICAL: &str =
    "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical";
const SYS_ALLERGY_VERIFICATION: &str =
    "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification";
const SYS_ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
const SYS_ORG_TYPE: &str = "http://terminology.hl7.org/CodeSystem/organization-type";
const SYS_DIAGNOSTIC_SERVICE: &str = "http://terminology.hl7.org/CodeSystem/v2-0074";
const SYS_DISCHARGE: &str = "http://terminology.hl7.org/CodeSystem/discharge-disposition";

/// Domain tags keep the patient and clinic RNG streams disjoint even for equal (seed, index).
const DOMAIN_PATIENT: &[u8; 16] = b"hc-synth-patient";
const DOMAIN_GP: &[u8; 16] = b"hc-synth-gp-clin";

/// Days relative to `today` (0 = today, negative = past). Integer offsets keep the hot loops
/// free of calendar arithmetic; conversion to a date happens only when formatting.
type Day = i32;
/// Earliest day any clinical event may fall on: the "past ~5 years" window.
const WINDOW_START: Day = -(5 * 365);
/// Latest day for events. Yesterday, not today, so that a timestamp can never be later than the
/// wall clock when `today` is the real current date.
const LAST: Day = -1;

struct Region {
    slug: &'static str,
    name: &'static str,
    line: &'static str,
    postal: &'static str,
    city: &'static str,
}

const REGIONS: [Region; 5] = [
    Region {
        slug: "hovedstaden",
        name: "Region Hovedstaden",
        line: "Kongens Vænge 2",
        postal: "3400",
        city: "Hillerød",
    },
    Region {
        slug: "sjaelland",
        name: "Region Sjælland",
        line: "Alleen 15",
        postal: "4180",
        city: "Sorø",
    },
    Region {
        slug: "syddanmark",
        name: "Region Syddanmark",
        line: "Damhaven 12",
        postal: "7100",
        city: "Vejle",
    },
    Region {
        slug: "midtjylland",
        name: "Region Midtjylland",
        line: "Skottenborg 26",
        postal: "8800",
        city: "Viborg",
    },
    Region {
        slug: "nordjylland",
        name: "Region Nordjylland",
        line: "Niels Bohrs Vej 30",
        postal: "9220",
        city: "Aalborg Øst",
    },
];

struct Municipality {
    slug: &'static str,
    name: &'static str,
    region: usize,
    /// Rough population weight, used so that large municipalities get more clinics.
    weight: u32,
    line: &'static str,
    postal: &'static str,
    city: &'static str,
    districts: &'static [(&'static str, &'static str)],
}

const MUNICIPALITIES: [Municipality; 10] = [
    Municipality {
        slug: "koebenhavn",
        name: "Københavns Kommune",
        region: 0,
        weight: 650,
        line: "Rådhuspladsen 1",
        postal: "1550",
        city: "København V",
        districts: &[
            ("1050", "København K"),
            ("2100", "København Ø"),
            ("2200", "København N"),
            ("2300", "København S"),
            ("2400", "København NV"),
            ("2450", "København SV"),
            ("2500", "Valby"),
            ("2700", "Brønshøj"),
            ("2720", "Vanløse"),
        ],
    },
    Municipality {
        slug: "frederiksberg",
        name: "Frederiksberg Kommune",
        region: 0,
        weight: 105,
        line: "Smallegade 1",
        postal: "2000",
        city: "Frederiksberg",
        districts: &[
            ("2000", "Frederiksberg"),
            ("1850", "Frederiksberg C"),
            ("1870", "Frederiksberg C"),
        ],
    },
    Municipality {
        slug: "helsingoer",
        name: "Helsingør Kommune",
        region: 0,
        weight: 64,
        line: "Stengade 59",
        postal: "3000",
        city: "Helsingør",
        districts: &[
            ("3000", "Helsingør"),
            ("3070", "Snekkersten"),
            ("3100", "Hornbæk"),
            ("3140", "Ålsgårde"),
            ("3150", "Hellebæk"),
            ("3490", "Kvistgård"),
        ],
    },
    Municipality {
        slug: "roskilde",
        name: "Roskilde Kommune",
        region: 1,
        weight: 90,
        line: "Rådhusbuen 1",
        postal: "4000",
        city: "Roskilde",
        districts: &[
            ("4000", "Roskilde"),
            ("4040", "Jyllinge"),
            ("4130", "Viby Sjælland"),
            ("4621", "Gadstrup"),
        ],
    },
    Municipality {
        slug: "naestved",
        name: "Næstved Kommune",
        region: 1,
        weight: 84,
        line: "Rådmandshaven 20",
        postal: "4700",
        city: "Næstved",
        districts: &[
            ("4700", "Næstved"),
            ("4160", "Herlufmagle"),
            ("4171", "Glumsø"),
            ("4684", "Holmegaard"),
        ],
    },
    Municipality {
        slug: "odense",
        name: "Odense Kommune",
        region: 2,
        weight: 205,
        line: "Flakhaven 2",
        postal: "5000",
        city: "Odense C",
        districts: &[
            ("5000", "Odense C"),
            ("5200", "Odense V"),
            ("5210", "Odense NV"),
            ("5220", "Odense SØ"),
            ("5230", "Odense M"),
            ("5250", "Odense SV"),
            ("5260", "Odense S"),
        ],
    },
    Municipality {
        slug: "esbjerg",
        name: "Esbjerg Kommune",
        region: 2,
        weight: 115,
        line: "Torvegade 74",
        postal: "6700",
        city: "Esbjerg",
        districts: &[
            ("6700", "Esbjerg"),
            ("6705", "Esbjerg Ø"),
            ("6710", "Esbjerg V"),
            ("6715", "Esbjerg N"),
            ("6731", "Tjæreborg"),
        ],
    },
    Municipality {
        slug: "aarhus",
        name: "Aarhus Kommune",
        region: 3,
        weight: 360,
        line: "Rådhuspladsen 2",
        postal: "8000",
        city: "Aarhus C",
        districts: &[
            ("8000", "Aarhus C"),
            ("8200", "Aarhus N"),
            ("8210", "Aarhus V"),
            ("8220", "Brabrand"),
            ("8240", "Risskov"),
            ("8260", "Viby J"),
            ("8270", "Højbjerg"),
        ],
    },
    Municipality {
        slug: "herning",
        name: "Herning Kommune",
        region: 3,
        weight: 90,
        line: "Torvet 5",
        postal: "7400",
        city: "Herning",
        districts: &[
            ("7400", "Herning"),
            ("7451", "Sunds"),
            ("7480", "Vildbjerg"),
            ("7490", "Aulum"),
            ("6933", "Kibæk"),
        ],
    },
    Municipality {
        slug: "aalborg",
        name: "Aalborg Kommune",
        region: 4,
        weight: 220,
        line: "Boulevarden 13",
        postal: "9000",
        city: "Aalborg",
        districts: &[
            ("9000", "Aalborg"),
            ("9200", "Aalborg SV"),
            ("9210", "Aalborg SØ"),
            ("9220", "Aalborg Øst"),
            ("9400", "Nørresundby"),
        ],
    },
];

/// The first clinics go one per municipality, spread over all regions, so that even the minimum
/// of three clinics covers several regions.
const GP_MUNICIPALITY_ORDER: [usize; 10] = [0, 7, 5, 9, 3, 1, 6, 8, 4, 2];

const STREETS: &[&str] = &[
    "Vestergade",
    "Østergade",
    "Nørregade",
    "Søndergade",
    "Algade",
    "Jernbanegade",
    "Skolegade",
    "Kirkevej",
    "Møllevej",
    "Bakkevej",
    "Parkvej",
    "Engvej",
    "Skovvej",
    "Birkevej",
    "Egevej",
    "Lindevej",
    "Ahornvej",
    "Rosenvænget",
    "Fasanvej",
    "Havnegade",
    "Stationsvej",
    "Grønnegade",
    "Kongensgade",
    "Dronningensgade",
    "Strandvejen",
    "Bøgevej",
    "Hybenvej",
    "Kastanie Allé",
    "Æblehaven",
    "Åboulevarden",
];

const FAMILY_NAMES: &[&str] = &[
    "Jensen",
    "Nielsen",
    "Hansen",
    "Pedersen",
    "Andersen",
    "Christensen",
    "Larsen",
    "Sørensen",
    "Rasmussen",
    "Jørgensen",
    "Petersen",
    "Madsen",
    "Kristensen",
    "Olsen",
    "Thomsen",
    "Christiansen",
    "Poulsen",
    "Johansen",
    "Møller",
    "Mortensen",
    "Knudsen",
    "Jakobsen",
    "Mikkelsen",
    "Frederiksen",
    "Laursen",
    "Henriksen",
    "Lund",
    "Schmidt",
    "Eriksen",
    "Holm",
    "Kristiansen",
    "Clausen",
    "Simonsen",
    "Svendsen",
    "Andreasen",
    "Iversen",
    "Jeppesen",
    "Vestergaard",
    "Mogensen",
    "Nørgaard",
    "Bech",
    "Dahl",
    "Kjær",
    "Lauridsen",
    "Østergaard",
];

const FEMALE_OLDER: &[&str] = &[
    "Anne",
    "Mette",
    "Kirsten",
    "Hanne",
    "Helle",
    "Lene",
    "Maria",
    "Susanne",
    "Inge",
    "Karen",
    "Birgit",
    "Bente",
    "Grethe",
    "Jytte",
    "Tove",
    "Pia",
    "Charlotte",
    "Camilla",
    "Louise",
    "Marianne",
    "Dorthe",
    "Gitte",
    "Lis",
    "Birthe",
    "Ulla",
    "Merete",
    "Marie",
];
const FEMALE_YOUNGER: &[&str] = &[
    "Freja", "Ida", "Emma", "Sofie", "Clara", "Alma", "Ella", "Karla", "Laura", "Anna", "Josefine",
    "Olivia", "Nora", "Agnes", "Caroline", "Mathilde", "Julie", "Maja", "Signe",
];
const MALE_OLDER: &[&str] = &[
    "Peter",
    "Jens",
    "Lars",
    "Michael",
    "Henrik",
    "Søren",
    "Thomas",
    "Jørgen",
    "Niels",
    "Ole",
    "Hans",
    "Poul",
    "Erik",
    "Bent",
    "Finn",
    "Kurt",
    "Per",
    "Carsten",
    "Torben",
    "Morten",
    "Anders",
    "Martin",
    "Christian",
    "Jesper",
    "Rasmus",
    "Bjørn",
    "Jan",
];
const MALE_YOUNGER: &[&str] = &[
    "William", "Noah", "Oscar", "Lucas", "Carl", "Victor", "Malthe", "Alfred", "Emil", "Magnus",
    "Frederik", "Oliver", "Mads", "Mikkel", "Jonas", "Mathias", "Aksel", "Valdemar",
];

struct ConditionDef {
    snomed: &'static str,
    snomed_display: &'static str,
    icd10: &'static str,
    icd10_display: &'static str,
    text: &'static str,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Cond {
    Hypertension,
    Hypercholesterolaemia,
    Diabetes,
    HeartFailure,
    AtrialFibrillation,
    Copd,
    Asthma,
    Osteoarthritis,
    Depression,
}

impl Cond {
    fn def(self) -> &'static ConditionDef {
        match self {
            Cond::Hypertension => &ConditionDef {
                snomed: "59621000",
                snomed_display: "Essential hypertension",
                icd10: "I10",
                icd10_display: "Essential (primary) hypertension",
                text: "Essentiel hypertension",
            },
            Cond::Hypercholesterolaemia => &ConditionDef {
                snomed: "13644009",
                snomed_display: "Hypercholesterolemia",
                icd10: "E78.0",
                icd10_display: "Pure hypercholesterolaemia",
                text: "Forhøjet kolesterol",
            },
            Cond::Diabetes => &ConditionDef {
                snomed: "44054006",
                snomed_display: "Diabetes mellitus type 2",
                icd10: "E11.9",
                icd10_display: "Type 2 diabetes mellitus without complications",
                text: "Type 2-diabetes",
            },
            Cond::HeartFailure => &ConditionDef {
                snomed: "84114007",
                snomed_display: "Heart failure",
                icd10: "I50.9",
                icd10_display: "Heart failure, unspecified",
                text: "Hjertesvigt",
            },
            Cond::AtrialFibrillation => &ConditionDef {
                snomed: "49436004",
                snomed_display: "Atrial fibrillation",
                icd10: "I48.9",
                icd10_display: "Atrial fibrillation and atrial flutter, unspecified",
                text: "Atrieflimren",
            },
            Cond::Copd => &ConditionDef {
                snomed: "13645005",
                snomed_display: "Chronic obstructive lung disease",
                icd10: "J44.9",
                icd10_display: "Chronic obstructive pulmonary disease, unspecified",
                text: "KOL (kronisk obstruktiv lungesygdom)",
            },
            Cond::Asthma => &ConditionDef {
                snomed: "195967001",
                snomed_display: "Asthma",
                icd10: "J45.9",
                icd10_display: "Asthma, unspecified",
                text: "Astma",
            },
            Cond::Osteoarthritis => &ConditionDef {
                snomed: "396275006",
                snomed_display: "Osteoarthritis",
                icd10: "M19.9",
                icd10_display: "Arthrosis, unspecified",
                text: "Slidgigt (artrose)",
            },
            Cond::Depression => &ConditionDef {
                snomed: "35489007",
                snomed_display: "Depressive disorder",
                icd10: "F32.9",
                icd10_display: "Depressive episode, unspecified",
                text: "Depression",
            },
        }
    }

    /// Conditions that put a patient on a scheduled GP follow-up programme in Denmark.
    fn is_chronic_programme(self) -> bool {
        matches!(
            self,
            Cond::Hypertension
                | Cond::Diabetes
                | Cond::HeartFailure
                | Cond::AtrialFibrillation
                | Cond::Copd
        )
    }
}

struct Drug {
    atc: &'static str,
    inn: &'static str,
    product: &'static str,
    dosage: &'static str,
    /// Steady-state systolic lowering in mmHg; drives the treated blood-pressure trend.
    bp_effect: f64,
    /// Steady-state heart-rate lowering in beats/min (beta blockers).
    hr_effect: f64,
}

const fn drug(
    atc: &'static str,
    inn: &'static str,
    product: &'static str,
    dosage: &'static str,
) -> Drug {
    Drug {
        atc,
        inn,
        product,
        dosage,
        bp_effect: 0.0,
        hr_effect: 0.0,
    }
}

const fn bp_drug(
    atc: &'static str,
    inn: &'static str,
    product: &'static str,
    dosage: &'static str,
    bp_effect: f64,
    hr_effect: f64,
) -> Drug {
    Drug {
        atc,
        inn,
        product,
        dosage,
        bp_effect,
        hr_effect,
    }
}

static METFORMIN: Drug = drug(
    "A10BA02",
    "metformin",
    "Metformin \"Teva\" 500 mg filmovertrukne tabletter",
    "1 tablet 2 gange dagligt",
);
static SITAGLIPTIN: Drug = drug(
    "A10BH01",
    "sitagliptin",
    "Januvia 100 mg filmovertrukne tabletter",
    "1 tablet dagligt",
);
static EMPAGLIFLOZIN: Drug = drug(
    "A10BK03",
    "empagliflozin",
    "Jardiance 10 mg filmovertrukne tabletter",
    "1 tablet dagligt",
);
static SEMAGLUTIDE: Drug = drug(
    "A10BJ06",
    "semaglutide",
    "Ozempic 1 mg injektionsvæske, opløsning i fyldt pen",
    "1 injektion ugentligt",
);
static INSULIN_GLARGINE: Drug = drug(
    "A10AE04",
    "insulin glargine",
    "Lantus 100 enheder/ml injektionsvæske, opløsning i fyldt pen",
    "Efter aftale, typisk 10-30 enheder subkutant til aften",
);
static AMLODIPINE: Drug = bp_drug(
    "C08CA01",
    "amlodipine",
    "Amlodipin \"Sandoz\" 5 mg tabletter",
    "1 tablet dagligt",
    11.0,
    0.0,
);
static RAMIPRIL: Drug = bp_drug(
    "C09AA05",
    "ramipril",
    "Ramipril \"Actavis\" 5 mg tabletter",
    "1 tablet dagligt",
    9.0,
    0.0,
);
static LOSARTAN: Drug = bp_drug(
    "C09CA01",
    "losartan",
    "Losartan \"Krka\" 50 mg filmovertrukne tabletter",
    "1 tablet dagligt",
    9.0,
    0.0,
);
static BENDROFLUMETHIAZIDE: Drug = bp_drug(
    "C03AB01",
    "bendroflumethiazide and potassium",
    "Centyl mite med kaliumklorid 1,25 mg/573 mg tabletter",
    "1 tablet om morgenen",
    8.0,
    0.0,
);
static FUROSEMIDE: Drug = bp_drug(
    "C03CA01",
    "furosemide",
    "Furix 40 mg tabletter",
    "1 tablet om morgenen",
    4.0,
    0.0,
);
static BISOPROLOL: Drug = bp_drug(
    "C07AB07",
    "bisoprolol",
    "Bisoprolol \"Sandoz\" 5 mg filmovertrukne tabletter",
    "1 tablet dagligt",
    6.0,
    11.0,
);
static METOPROLOL: Drug = bp_drug(
    "C07AB02",
    "metoprolol",
    "Selo-Zok 50 mg depottabletter",
    "1 depottablet dagligt",
    6.0,
    10.0,
);
static SPIRONOLACTONE: Drug = bp_drug(
    "C03DA01",
    "spironolactone",
    "Spiron 25 mg tabletter",
    "1 tablet dagligt",
    5.0,
    0.0,
);
static ATORVASTATIN: Drug = drug(
    "C10AA05",
    "atorvastatin",
    "Atorvastatin \"Krka\" 40 mg filmovertrukne tabletter",
    "1 tablet til natten",
);
static SIMVASTATIN: Drug = drug(
    "C10AA01",
    "simvastatin",
    "Simvastatin \"Bluefish\" 40 mg filmovertrukne tabletter",
    "1 tablet til natten",
);
static APIXABAN: Drug = drug(
    "B01AF02",
    "apixaban",
    "Eliquis 5 mg filmovertrukne tabletter",
    "1 tablet 2 gange dagligt",
);
static SALBUTAMOL: Drug = drug(
    "R03AC02",
    "salbutamol",
    "Ventoline 0,1 mg/dosis inhalationsspray",
    "1-2 pust ved behov, højst 4 gange dagligt",
);
static TIOTROPIUM: Drug = drug(
    "R03BB04",
    "tiotropium bromide",
    "Spiriva Respimat 2,5 mikrogram/dosis inhalationsvæske",
    "2 pust 1 gang dagligt",
);
static PARACETAMOL: Drug = drug(
    "N02BE01",
    "paracetamol",
    "Pamol 500 mg tabletter",
    "2 tabletter 3 gange dagligt efter behov",
);
static SERTRALINE: Drug = drug(
    "N06AB06",
    "sertraline",
    "Sertralin \"Bluefish\" 50 mg filmovertrukne tabletter",
    "1 tablet dagligt",
);

struct EncounterType {
    code: &'static str,
    display: &'static str,
    text: &'static str,
}

const ENC_CHECKUP: EncounterType = EncounterType {
    code: "185349003",
    display: "Encounter for check up",
    text: "Helbredsundersøgelse hos egen læge",
};
const ENC_FOLLOWUP: EncounterType = EncounterType {
    code: "390906007",
    display: "Follow-up encounter",
    text: "Kontrol hos egen læge",
};
const ENC_SYMPTOM: EncounterType = EncounterType {
    code: "185345009",
    display: "Encounter for symptom",
    text: "Konsultation hos egen læge",
};
const ENC_HOME: EncounterType = EncounterType {
    code: "439708006",
    display: "Home visit",
    text: "Besøg af hjemmesygeplejerske",
};
const ENC_ADMISSION: EncounterType = EncounterType {
    code: "183452005",
    display: "Emergency hospital admission",
    text: "Akut indlæggelse",
};

const CLASS_AMB: (&str, &str) = ("AMB", "ambulatory");
const CLASS_HH: (&str, &str) = ("HH", "home health");
const CLASS_IMP: (&str, &str) = ("IMP", "inpatient encounter");

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

fn rng_for(seed: u64, index: u64, domain: &[u8; 16]) -> ChaCha8Rng {
    // A full 256-bit key instead of `seed ^ index * k` so that distinct (seed, index) pairs can
    // never alias each other's stream.
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&index.to_le_bytes());
    key[16..].copy_from_slice(domain);
    ChaCha8Rng::from_seed(key)
}

/// A UUIDv7-shaped id whose "timestamp" is the patient's index: deterministic, yet ordered by
/// patient, so a large generated population is written at the right edge of every id-keyed
/// index instead of at random pages.
fn new_id(rng: &mut ChaCha8Rng, patient_index: u64) -> String {
    let random: [u8; 10] = rng.r#gen();
    uuid::Builder::from_unix_timestamp_millis(patient_index, &random)
        .into_uuid()
        .to_string()
}

fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> &'a T {
    &items[rng.gen_range(0..items.len())]
}

fn gp_count(patients: usize) -> usize {
    patients.div_ceil(1500).max(3)
}

fn gp_id(i: usize) -> String {
    format!("gp-{:04}", i + 1)
}

/// Municipality of clinic `i`, computed without an RNG so that `patient()` can locate its GP's
/// address without generating the organizations.
fn gp_municipality(i: usize) -> usize {
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

fn sor(kind: u64, n: usize) -> String {
    // The "99" prefix keeps the synthetic SOR codes out of the range of real registrations.
    format!("99{kind}{:012}", n + 1)
}

fn organization(
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

fn coding(system: &str, code: &str, display: &str) -> Value {
    json!({ "system": system, "code": code, "display": display })
}

fn concept(system: &str, code: &str, display: &str, text: &str) -> Value {
    json!({ "coding": [coding(system, code, display)], "text": text })
}

fn quantity(value: Value, unit: &str, code: &str) -> Value {
    json!({ "value": value, "unit": unit, "system": SYS_UCUM, "code": code })
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn date_of(today: NaiveDate, day: Day) -> NaiveDate {
    today + TimeDelta::days(i64::from(day))
}

fn day_of(today: NaiveDate, date: NaiveDate) -> Day {
    (date - today).num_days() as Day
}

fn fmt_date(d: NaiveDate) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
}

fn last_sunday(year: i32, month: u32) -> NaiveDate {
    // Only called for March and October, which both have 31 days.
    let last = NaiveDate::from_ymd_opt(year, month, 31).expect("March and October have 31 days");
    last - TimeDelta::days(i64::from(last.weekday().num_days_from_sunday()))
}

/// Danish local-time offset. Events are only placed between 06:30 and 23:00, so the date alone
/// decides, and the non-existent/ambiguous hours of the switch nights never occur.
fn danish_offset(d: NaiveDate) -> &'static str {
    let y = d.year();
    if d >= last_sunday(y, 3) && d < last_sunday(y, 10) {
        "+02:00"
    } else {
        "+01:00"
    }
}

/// A point in local time: a day offset plus minutes after midnight.
#[derive(Clone, Copy)]
struct When {
    day: Day,
    minute: u32,
}

struct Person {
    female: bool,
    age: i32,
    birth: NaiveDate,
    given: Vec<&'static str>,
    family: &'static str,
    cpr: String,
}

fn sample_age(rng: &mut ChaCha8Rng) -> i32 {
    // Skewed older than the general population because benchmark value lies in chronic
    // patients, while still keeping younger adults present.
    let u: f64 = rng.gen_range(0.0..1.0);
    if u < 0.30 {
        rng.gen_range(18..50)
    } else if u < 0.62 {
        rng.gen_range(50..67)
    } else if u < 0.90 {
        rng.gen_range(67..82)
    } else {
        rng.gen_range(82..=95)
    }
}

fn sample_person(rng: &mut ChaCha8Rng, today: NaiveDate) -> Person {
    let female = rng.gen_bool(0.52);
    let age = sample_age(rng);
    let year = today.year() - age;
    let anniversary = NaiveDate::from_ymd_opt(year, today.month(), today.day())
        .or_else(|| NaiveDate::from_ymd_opt(year, 2, 28))
        .expect("valid calendar date");
    // At most 364 days back keeps the exact age at `age`, whatever the leap years.
    let birth = anniversary - TimeDelta::days(rng.gen_range(0..365));

    let young_names = birth.year() >= 1995 && rng.gen_bool(0.75);
    let pool = match (female, young_names) {
        (true, true) => FEMALE_YOUNGER,
        (true, false) => FEMALE_OLDER,
        (false, true) => MALE_YOUNGER,
        (false, false) => MALE_OLDER,
    };
    let first = *pick(rng, pool);
    let mut given = vec![first];
    if rng.gen_bool(0.3) {
        let second = *pick(rng, pool);
        if second != first {
            given.push(second);
        }
    }
    // Minimum of two draws favours the head of the list, mimicking how a few surnames dominate.
    let n = FAMILY_NAMES.len();
    let family = FAMILY_NAMES[rng.gen_range(0..n).min(rng.gen_range(0..n))];

    // Replacement-number convention: day + 60 can never be a real CPR. The century digit and
    // the sex parity of the last digit follow the real rules so parsers treat it like a CPR.
    let century_digit = match birth.year() {
        ..1900 => rng.gen_range(5..=8),
        1900..2000 => rng.gen_range(0..=3),
        2000..2037 => rng.gen_range(4..=9),
        _ => rng.gen_range(5..=8),
    };
    let middle = rng.gen_range(0..100);
    let last = rng.gen_range(0..5) * 2 + if female { 0 } else { 1 };
    let cpr = format!(
        "{:02}{:02}{:02}{}{:02}{}",
        birth.day() + 60,
        birth.month(),
        birth.year().rem_euclid(100),
        century_digit,
        middle,
        last
    );
    Person {
        female,
        age,
        birth,
        given,
        family,
        cpr,
    }
}

fn ascii_fold(s: &str) -> String {
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

/// Prebuilt observation skeletons, shared by all patients and threads.
struct Templates {
    blood_pressure: Value,
    heart_rate: Value,
    weight: Value,
    hba1c: Value,
    glucose: Value,
}

fn observation_template(category: &str, code: Value, value_key: &str, value: Value) -> Value {
    let category_display = if category == "laboratory" {
        "Laboratory"
    } else {
        "Vital Signs"
    };
    let mut o = Map::with_capacity(11);
    o.insert("resourceType".into(), "Observation".into());
    o.insert("id".into(), Value::Null);
    o.insert("status".into(), "final".into());
    o.insert(
        "category".into(),
        json!([{ "coding": [coding(SYS_OBS_CATEGORY, category, category_display)] }]),
    );
    o.insert("code".into(), code);
    o.insert("subject".into(), Value::Null);
    o.insert("effectiveDateTime".into(), Value::Null);
    o.insert(value_key.into(), value);
    Value::Object(o)
}

fn templates() -> &'static Templates {
    static TEMPLATES: std::sync::OnceLock<Templates> = std::sync::OnceLock::new();
    TEMPLATES.get_or_init(|| {
        let bp_code = json!({
            "coding": [coding(SYS_LOINC, "85354-9", "Blood pressure panel with all children optional")],
            "text": "Blodtryk"
        });
        let components = json!([
            {
                "code": { "coding": [coding(SYS_LOINC, "8480-6", "Systolic blood pressure")] },
                "valueQuantity": quantity(Value::Null, "mmHg", "mm[Hg]")
            },
            {
                "code": { "coding": [coding(SYS_LOINC, "8462-4", "Diastolic blood pressure")] },
                "valueQuantity": quantity(Value::Null, "mmHg", "mm[Hg]")
            }
        ]);
        let hba1c_code = json!({
            "coding": [
                coding(SYS_LOINC, "59261-8", "Hemoglobin A1c/Hemoglobin.total in Blood by IFCC protocol"),
                { "system": SYS_NPU, "code": "NPU27300" }
            ],
            "text": "HbA1c"
        });
        // LOINC 2345-7 is formally a mass concentration, but it is the code the project's
        // conventions prescribe; the NPU code alongside carries the mmol/L meaning Danish
        // laboratories report.
        let glucose_code = json!({
            "coding": [
                coding(SYS_LOINC, "2345-7", "Glucose [Mass/volume] in Serum or Plasma"),
                { "system": SYS_NPU, "code": "NPU02192" }
            ],
            "text": "Glukose (plasma)"
        });
        Templates {
            blood_pressure: observation_template("vital-signs", bp_code, "component", components),
            heart_rate: observation_template(
                "vital-signs",
                concept(SYS_LOINC, "8867-4", "Heart rate", "Puls"),
                "valueQuantity",
                quantity(Value::Null, "/min", "/min"),
            ),
            weight: observation_template(
                "vital-signs",
                concept(SYS_LOINC, "29463-7", "Body weight", "Vægt"),
                "valueQuantity",
                quantity(Value::Null, "kg", "kg"),
            ),
            hba1c: observation_template(
                "laboratory",
                hba1c_code,
                "valueQuantity",
                quantity(Value::Null, "mmol/mol", "mmol/mol"),
            ),
            glucose: observation_template(
                "laboratory",
                glucose_code,
                "valueQuantity",
                quantity(Value::Null, "mmol/L", "mmol/L"),
            ),
        }
    })
}

/// A field that the template is known to contain.
fn field<'a>(v: &'a mut Value, key: &str) -> &'a mut Value {
    v.as_object_mut()
        .and_then(|o| o.get_mut(key))
        .expect("observation template field")
}

fn set_quantity(v: &mut Value, value: Value) {
    *field(field(v, "valueQuantity"), "value") = value;
}

// ---------------------------------------------------------------------------------------------
// Per-patient generation context
// ---------------------------------------------------------------------------------------------

/// Where and by whom an observation was recorded.
struct Setting {
    when: When,
    encounter: Option<String>,
    performer: Option<Value>,
}

struct Ctx {
    rng: ChaCha8Rng,
    index: u64,
    today: NaiveDate,
    patient_ref: Value,
    gp_ref: Value,
    region_ref: Value,
    municipality_ref: Value,
    conditions: Vec<Value>,
    allergies: Vec<Value>,
    encounters: Vec<Value>,
    observations: Vec<Value>,
    reports: Vec<Value>,
    medications: Vec<Value>,
    immunizations: Vec<Value>,
    procedures: Vec<Value>,
}

impl Ctx {
    fn id(&mut self) -> String {
        new_id(&mut self.rng, self.index)
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.gen_bool(p.clamp(0.0, 1.0))
    }

    /// Inclusive integer range that tolerates empty ranges by returning the lower bound.
    fn int(&mut self, lo: i32, hi: i32) -> i32 {
        if hi <= lo {
            lo
        } else {
            self.rng.gen_range(lo..=hi)
        }
    }

    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        if hi <= lo {
            lo
        } else {
            self.rng.gen_range(lo..hi)
        }
    }

    /// Approximately standard normal (Irwin–Hall with 4 terms); cheap and bounded, which keeps
    /// vitals free of absurd outliers.
    fn normal(&mut self) -> f64 {
        let s: f64 = (0..4).map(|_| self.rng.gen_range(0.0..1.0)).sum();
        (s - 2.0) * 3f64.sqrt()
    }

    fn date(&self, day: Day) -> String {
        fmt_date(date_of(self.today, day))
    }

    fn datetime(&self, w: When) -> String {
        let d = date_of(self.today, w.day);
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:00{}",
            d.year(),
            d.month(),
            d.day(),
            w.minute / 60,
            w.minute % 60,
            danish_offset(d)
        )
    }

    /// Clinic opening hours, in 15-minute booking slots from 08:00 to 15:45.
    fn clinic_time(&mut self, day: Day) -> When {
        When {
            day,
            minute: 8 * 60 + 15 * self.rng.gen_range(0..32),
        }
    }

    /// Home measurements cluster in the morning and the evening.
    fn home_time(&mut self, day: Day) -> When {
        let minute = if self.rng.gen_bool(0.6) {
            self.rng.gen_range(6 * 60 + 30..8 * 60 + 30)
        } else {
            self.rng.gen_range(19 * 60..21 * 60 + 30)
        };
        When { day, minute }
    }

    fn reference(kind: &str, id: &str) -> Value {
        json!({ "reference": format!("{kind}/{id}") })
    }

    fn push_encounter(
        &mut self,
        class: (&str, &str),
        kind: &EncounterType,
        start: When,
        end: When,
        provider: Value,
        reasons: &[String],
    ) -> String {
        let id = self.id();
        let mut e = Map::with_capacity(11);
        e.insert("resourceType".into(), "Encounter".into());
        e.insert("id".into(), id.clone().into());
        e.insert("status".into(), "finished".into());
        e.insert(
            "class".into(),
            json!({ "system": SYS_ACT_CODE, "code": class.0, "display": class.1 }),
        );
        e.insert(
            "type".into(),
            json!([concept(SYS_SNOMED, kind.code, kind.display, kind.text)]),
        );
        e.insert("subject".into(), self.patient_ref.clone());
        e.insert(
            "period".into(),
            json!({ "start": self.datetime(start), "end": self.datetime(end) }),
        );
        if !reasons.is_empty() {
            let r: Vec<Value> = reasons
                .iter()
                .map(|c| Ctx::reference("Condition", c))
                .collect();
            e.insert("reasonReference".into(), Value::Array(r));
        }
        if class.0 == "IMP" {
            e.insert(
                "hospitalization".into(),
                json!({ "dischargeDisposition": { "coding": [coding(SYS_DISCHARGE, "home", "Home")] } }),
            );
        }
        e.insert("serviceProvider".into(), provider);
        self.encounters.push(Value::Object(e));
        id
    }

    /// Clones the prebuilt template for this observation kind and fills in the per-instance
    /// fields; building each observation from scratch with `json!` spent most of the time
    /// hashing and inserting the same constant keys.
    fn push_observation(
        &mut self,
        template: &Value,
        setting: &Setting,
        fill: impl FnOnce(&mut Value),
    ) -> String {
        let id = self.id();
        let mut v = template.clone();
        *field(&mut v, "id") = Value::String(id.clone());
        *field(&mut v, "subject") = self.patient_ref.clone();
        *field(&mut v, "effectiveDateTime") = Value::String(self.datetime(setting.when));
        fill(&mut v);
        if let Value::Object(o) = &mut v {
            if let Some(enc) = &setting.encounter {
                o.insert("encounter".into(), Ctx::reference("Encounter", enc));
            }
            if let Some(p) = &setting.performer {
                o.insert("performer".into(), Value::Array(vec![p.clone()]));
            }
        }
        self.observations.push(v);
        id
    }

    fn obs_blood_pressure(&mut self, setting: &Setting, systolic: i64, diastolic: i64) -> String {
        self.push_observation(&templates().blood_pressure, setting, |v| {
            let components = field(v, "component");
            *field(field(&mut components[0], "valueQuantity"), "value") = systolic.into();
            *field(field(&mut components[1], "valueQuantity"), "value") = diastolic.into();
        })
    }

    fn obs_heart_rate(&mut self, setting: &Setting, bpm: i64) -> String {
        self.push_observation(&templates().heart_rate, setting, |v| {
            set_quantity(v, bpm.into())
        })
    }

    fn obs_weight(&mut self, setting: &Setting, kg: f64) -> String {
        self.push_observation(&templates().weight, setting, |v| {
            set_quantity(v, round1(kg).into())
        })
    }

    fn obs_hba1c(&mut self, setting: &Setting, mmol_per_mol: i64) -> String {
        self.push_observation(&templates().hba1c, setting, |v| {
            set_quantity(v, mmol_per_mol.into())
        })
    }

    fn obs_glucose(&mut self, setting: &Setting, mmol_per_l: f64) -> String {
        self.push_observation(&templates().glucose, setting, |v| {
            set_quantity(v, round1(mmol_per_l).into())
        })
    }

    fn push_report(&mut self, setting: &Setting, results: &[String]) {
        let id = self.id();
        let mut r = Map::with_capacity(11);
        r.insert("resourceType".into(), "DiagnosticReport".into());
        r.insert("id".into(), id.into());
        r.insert("status".into(), "final".into());
        r.insert(
            "category".into(),
            json!([{ "coding": [coding(SYS_DIAGNOSTIC_SERVICE, "LAB", "Laboratory")] }]),
        );
        r.insert(
            "code".into(),
            concept(SYS_LOINC, "11502-2", "Laboratory report", "Laboratoriesvar"),
        );
        r.insert("subject".into(), self.patient_ref.clone());
        if let Some(enc) = &setting.encounter {
            r.insert("encounter".into(), Ctx::reference("Encounter", enc));
        }
        r.insert(
            "effectiveDateTime".into(),
            self.datetime(setting.when).into(),
        );
        // Samples are analysed by the regional hospital laboratory; the answer arrives the same
        // afternoon (samples are taken no later than 16:00, so this stays on the same day).
        let issued = When {
            day: setting.when.day,
            minute: setting.when.minute + 180,
        };
        r.insert("issued".into(), self.datetime(issued).into());
        r.insert("performer".into(), json!([self.region_ref.clone()]));
        let refs: Vec<Value> = results
            .iter()
            .map(|o| Ctx::reference("Observation", o))
            .collect();
        r.insert("result".into(), Value::Array(refs));
        self.reports.push(Value::Object(r));
    }

    fn push_procedure(
        &mut self,
        (code, display, text): (&str, &str, &str),
        when: When,
        performer: Value,
        reason: Option<&str>,
    ) {
        let id = self.id();
        let mut p = Map::with_capacity(9);
        p.insert("resourceType".into(), "Procedure".into());
        p.insert("id".into(), id.into());
        p.insert("status".into(), "completed".into());
        p.insert("code".into(), concept(SYS_SNOMED, code, display, text));
        p.insert("subject".into(), self.patient_ref.clone());
        p.insert("performedDateTime".into(), self.datetime(when).into());
        p.insert("performer".into(), json!([{ "actor": performer }]));
        if let Some(c) = reason {
            p.insert(
                "reasonReference".into(),
                json!([Ctx::reference("Condition", c)]),
            );
        }
        self.procedures.push(Value::Object(p));
    }
}

// ---------------------------------------------------------------------------------------------
// Patient
// ---------------------------------------------------------------------------------------------

fn patient_resource(ctx: &mut Ctx, id: &str, person: &Person, muni: &Municipality) -> Value {
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

// ---------------------------------------------------------------------------------------------
// Diagnoses
// ---------------------------------------------------------------------------------------------

struct Dx {
    cond: Cond,
    id: String,
    onset: Day,
    abated: Option<Day>,
}

struct Diagnoses(Vec<Dx>);

impl Diagnoses {
    fn get(&self, cond: Cond) -> Option<&Dx> {
        self.0.iter().find(|d| d.cond == cond)
    }

    fn has(&self, cond: Cond) -> bool {
        self.get(cond).is_some()
    }

    fn index(&self, cond: Cond) -> Option<usize> {
        self.0.iter().position(|d| d.cond == cond)
    }
}

fn by_age(age: i32, bands: [f64; 4]) -> f64 {
    match age {
        ..40 => bands[0],
        40..60 => bands[1],
        60..75 => bands[2],
        _ => bands[3],
    }
}

fn diagnoses(ctx: &mut Ctx, age: i32) -> Diagnoses {
    // Drawn in dependency order so comorbidities can be correlated (diabetes and heart failure
    // make hypertension very likely, heart failure makes atrial fibrillation likely, ...).
    let hf = ctx.chance(by_age(age, [0.002, 0.015, 0.05, 0.12]));
    let dm = ctx.chance(by_age(age, [0.015, 0.07, 0.14, 0.17]));
    let htn = ctx.chance(if hf || dm {
        0.85
    } else {
        by_age(age, [0.04, 0.22, 0.42, 0.55])
    });
    let af = ctx.chance(if hf {
        0.35
    } else {
        by_age(age, [0.003, 0.02, 0.07, 0.14])
    });
    let copd = ctx.chance(by_age(age, [0.003, 0.03, 0.08, 0.10]));
    let asthma = ctx.chance(if copd {
        0.05
    } else {
        by_age(age, [0.08, 0.06, 0.05, 0.04])
    });
    let chol = ctx.chance(if dm || hf {
        0.5
    } else {
        by_age(age, [0.02, 0.12, 0.25, 0.25])
    });
    let oa = ctx.chance(by_age(age, [0.01, 0.10, 0.25, 0.35]));
    let dep = ctx.chance(if hf || copd { 0.15 } else { 0.07 });

    let present = [
        (Cond::Hypertension, htn),
        (Cond::Hypercholesterolaemia, chol),
        (Cond::Diabetes, dm),
        (Cond::HeartFailure, hf),
        (Cond::AtrialFibrillation, af),
        (Cond::Copd, copd),
        (Cond::Asthma, asthma),
        (Cond::Osteoarthritis, oa),
        (Cond::Depression, dep),
    ];
    let mut out = Vec::new();
    for (cond, yes) in present {
        if !yes {
            continue;
        }
        let onset = if cond.is_chronic_programme() {
            // Mostly prevalent disease (diagnosed over a year ago, so follow-up series have
            // time to build up), plus some new diagnoses.
            if ctx.chance(0.88) {
                ctx.int(WINDOW_START, -365)
            } else {
                ctx.int(-364, -30)
            }
        } else {
            ctx.int(WINDOW_START, -14)
        };
        let abated = if cond == Cond::Depression && ctx.chance(0.4) {
            Some(onset + ctx.int(120, 540)).filter(|&d| d <= LAST)
        } else {
            None
        };
        let id = ctx.id();
        let dx = Dx {
            cond,
            id,
            onset,
            abated,
        };
        let resource = condition_resource(ctx, &dx);
        ctx.conditions.push(resource);
        out.push(dx);
    }
    Diagnoses(out)
}

fn condition_resource(ctx: &mut Ctx, dx: &Dx) -> Value {
    let def = dx.cond.def();
    let (status, status_display) = if dx.abated.is_some() {
        ("resolved", "Resolved")
    } else {
        ("active", "Active")
    };
    let recorded = (dx.onset + ctx.int(0, 14)).min(LAST);
    let mut c = Map::with_capacity(12);
    c.insert("resourceType".into(), "Condition".into());
    c.insert("id".into(), dx.id.clone().into());
    c.insert(
        "clinicalStatus".into(),
        json!({ "coding": [coding(SYS_CONDITION_CLINICAL, status, status_display)] }),
    );
    c.insert(
        "verificationStatus".into(),
        json!({ "coding": [coding(SYS_CONDITION_VERIFICATION, "confirmed", "Confirmed")] }),
    );
    c.insert(
        "category".into(),
        json!([{ "coding": [coding(SYS_CONDITION_CATEGORY, "problem-list-item", "Problem List Item")] }]),
    );
    c.insert(
        "code".into(),
        json!({
            "coding": [
                coding(SYS_SNOMED, def.snomed, def.snomed_display),
                coding(SYS_ICD10, def.icd10, def.icd10_display)
            ],
            "text": def.text
        }),
    );
    c.insert("subject".into(), ctx.patient_ref.clone());
    c.insert("onsetDateTime".into(), ctx.date(dx.onset).into());
    if let Some(a) = dx.abated {
        c.insert("abatementDateTime".into(), ctx.date(a).into());
    }
    c.insert("recordedDate".into(), ctx.date(recorded).into());
    Value::Object(c)
}

// ---------------------------------------------------------------------------------------------
// Allergies
// ---------------------------------------------------------------------------------------------

fn allergies(ctx: &mut Ctx) {
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

// ---------------------------------------------------------------------------------------------
// Treatments
// ---------------------------------------------------------------------------------------------

struct Course {
    drug: &'static Drug,
    /// Index into the patient's diagnoses.
    reason: usize,
    start: Day,
    end: Option<Day>,
    /// Ended early (side effects / switch) rather than running its planned course.
    stopped: bool,
}

struct Courses(Vec<Course>);

impl Courses {
    fn active_at(&self, day: Day, pred: impl Fn(&Drug) -> bool) -> bool {
        self.0
            .iter()
            .any(|c| pred(c.drug) && c.start <= day && c.end.is_none_or(|e| day < e))
    }

    /// Adds a course unless it would start in the future or duplicate a running course of the
    /// same substance; ends beyond `LAST` mean the course is still running.
    fn add(
        &mut self,
        drug: &'static Drug,
        reason: usize,
        start: Day,
        end: Option<Day>,
        stopped: bool,
    ) -> bool {
        if start > LAST || self.active_at(start, |d| d.atc == drug.atc) {
            return false;
        }
        let end = end.filter(|&e| e <= LAST && e > start);
        let stopped = stopped && end.is_some();
        self.0.push(Course {
            drug,
            reason,
            start,
            end,
            stopped,
        });
        true
    }
}

fn class_of(d: &Drug) -> &str {
    // ACE inhibitors and ARBs share C09, so both count as one class and are never combined.
    &d.atc[..3]
}

fn treatments(ctx: &mut Ctx, dx: &Diagnoses) -> Courses {
    let mut c = Courses(Vec::new());

    if let Some(i) = dx.index(Cond::Hypertension)
        && ctx.chance(0.88)
    {
        let onset = dx.0[i].onset;
        let s1 = onset + ctx.int(0, 60);
        let r = ctx.uniform(0.0, 1.0);
        let first: &'static Drug = if r < 0.35 {
            &AMLODIPINE
        } else if r < 0.65 {
            &RAMIPRIL
        } else if r < 0.9 {
            &LOSARTAN
        } else {
            &BENDROFLUMETHIAZIDE
        };
        if first.atc == RAMIPRIL.atc && ctx.chance(0.12) {
            // ACE-inhibitor cough: the classic switch to an ARB.
            let stop = s1 + ctx.int(20, 120);
            c.add(&RAMIPRIL, i, s1, Some(stop), true);
            c.add(&LOSARTAN, i, stop, None, false);
        } else {
            c.add(first, i, s1, None, false);
        }
        let mut s = s1;
        for p in [0.45, 0.33] {
            if !ctx.chance(p) {
                break;
            }
            s += ctx.int(90, 500);
            let options: [&'static Drug; 4] =
                [&AMLODIPINE, &LOSARTAN, &BENDROFLUMETHIAZIDE, &RAMIPRIL];
            let candidates: Vec<&'static Drug> = options
                .into_iter()
                .filter(|d| !c.active_at(s, |x| class_of(x) == class_of(d)))
                .collect();
            if candidates.is_empty() {
                break;
            }
            let d = *pick(&mut ctx.rng, &candidates);
            c.add(d, i, s, None, false);
        }
    }

    if let Some(i) = dx.index(Cond::HeartFailure) {
        let s = dx.0[i].onset + ctx.int(0, 30);
        if ctx.chance(0.9) {
            c.add(&FUROSEMIDE, i, s, None, false);
        }
        if ctx.chance(0.85) {
            let beta: &'static Drug = if ctx.chance(0.6) {
                &BISOPROLOL
            } else {
                &METOPROLOL
            };
            let start = s + ctx.int(0, 30);
            if !c.active_at(start, |d| class_of(d) == "C07") {
                c.add(beta, i, start, None, false);
            }
        }
        let start = s + ctx.int(0, 30);
        if !c.active_at(start, |d| class_of(d) == "C09") && ctx.chance(0.8) {
            let ras: &'static Drug = if ctx.chance(0.5) {
                &RAMIPRIL
            } else {
                &LOSARTAN
            };
            c.add(ras, i, start, None, false);
        }
        if ctx.chance(0.5) {
            let start = s + ctx.int(60, 400);
            c.add(&SPIRONOLACTONE, i, start, None, false);
        }
        if ctx.chance(0.3) {
            let start = s + ctx.int(30, 700);
            c.add(&EMPAGLIFLOZIN, i, start, None, false);
        }
    }

    if let Some(i) = dx.index(Cond::Diabetes) {
        let onset = dx.0[i].onset;
        if ctx.chance(0.9) {
            let s = onset + ctx.int(0, 30);
            if ctx.chance(0.06) {
                // Gastrointestinal intolerance is the usual reason metformin is stopped.
                let stop = s + ctx.int(14, 120);
                c.add(&METFORMIN, i, s, Some(stop), true);
            } else {
                c.add(&METFORMIN, i, s, None, false);
            }
        }
        if ctx.chance(0.45) {
            let r = ctx.uniform(0.0, 1.0);
            let d: &'static Drug = if r < 0.3 {
                &SITAGLIPTIN
            } else if r < 0.7 {
                &EMPAGLIFLOZIN
            } else {
                &SEMAGLUTIDE
            };
            let s = onset + ctx.int(180, 900);
            c.add(d, i, s, None, false);
        }
        if ctx.chance(0.12) {
            let s = onset + ctx.int(365, 1400);
            c.add(&INSULIN_GLARGINE, i, s, None, false);
        }
        if !dx.has(Cond::Hypercholesterolaemia) && ctx.chance(0.5) {
            let s = onset + ctx.int(30, 180);
            c.add(&ATORVASTATIN, i, s, None, false);
        }
    }

    if let Some(i) = dx.index(Cond::AtrialFibrillation) {
        let s = dx.0[i].onset + ctx.int(0, 14);
        if ctx.chance(0.85) {
            c.add(&APIXABAN, i, s, None, false);
        }
        if !c.active_at(s, |d| class_of(d) == "C07") && ctx.chance(0.7) {
            c.add(&BISOPROLOL, i, s, None, false);
        }
    }

    if let Some(i) = dx.index(Cond::Hypercholesterolaemia) {
        let s = dx.0[i].onset + ctx.int(0, 90);
        let r = ctx.uniform(0.0, 1.0);
        if r < 0.75 {
            c.add(&ATORVASTATIN, i, s, None, false);
        } else if r < 0.9 {
            c.add(&SIMVASTATIN, i, s, None, false);
        }
    }

    if let Some(i) = dx.index(Cond::Copd) {
        let s = dx.0[i].onset + ctx.int(0, 30);
        if ctx.chance(0.8) {
            c.add(&TIOTROPIUM, i, s, None, false);
        }
        if ctx.chance(0.9) {
            c.add(&SALBUTAMOL, i, s, None, false);
        }
    }

    if let Some(i) = dx.index(Cond::Asthma)
        && ctx.chance(0.9)
    {
        let s = dx.0[i].onset + ctx.int(0, 14);
        c.add(&SALBUTAMOL, i, s, None, false);
    }

    if let Some(i) = dx.index(Cond::Osteoarthritis)
        && ctx.chance(0.6)
    {
        // Pain relief comes and goes in flares.
        let mut s = dx.0[i].onset + ctx.int(0, 60);
        for _ in 0..ctx.int(1, 3) {
            let end = s + ctx.int(30, 180);
            c.add(&PARACETAMOL, i, s, Some(end), false);
            s = end + ctx.int(60, 365);
        }
    }

    if let Some(i) = dx.index(Cond::Depression)
        && ctx.chance(0.6)
    {
        let d = &dx.0[i];
        let s = d.onset + ctx.int(0, 30);
        let end = match d.abated {
            Some(a) => a + ctx.int(0, 60),
            None => s + ctx.int(180, 540),
        };
        c.add(&SERTRALINE, i, s, Some(end), false);
    }

    c
}

fn medication_resources(ctx: &mut Ctx, course: &Course, dx: &Diagnoses) {
    let d = course.drug;
    let med = json!({
        "coding": [coding(SYS_ATC, d.atc, d.inn)],
        "text": d.product
    });
    let reason = json!([Ctx::reference("Condition", &dx.0[course.reason].id)]);
    let (request_status, statement_status) = match (course.end, course.stopped) {
        (None, _) => ("active", "active"),
        (Some(_), true) => ("stopped", "completed"),
        (Some(_), false) => ("completed", "completed"),
    };

    let request_id = ctx.id();
    let request = json!({
        "resourceType": "MedicationRequest",
        "id": request_id,
        "status": request_status,
        "intent": "order",
        "medicationCodeableConcept": med.clone(),
        "subject": ctx.patient_ref.clone(),
        "authoredOn": ctx.date(course.start),
        "requester": ctx.gp_ref.clone(),
        "reasonReference": reason.clone(),
        "dosageInstruction": [{ "text": d.dosage }]
    });
    ctx.medications.push(request);

    let statement_id = ctx.id();
    let asserted = (course.start + ctx.int(0, 7)).min(LAST);
    let mut period = Map::with_capacity(2);
    period.insert("start".into(), ctx.date(course.start).into());
    if let Some(e) = course.end {
        period.insert("end".into(), ctx.date(e).into());
    }
    let statement = json!({
        "resourceType": "MedicationStatement",
        "id": statement_id,
        "basedOn": [Ctx::reference("MedicationRequest", &request_id)],
        "status": statement_status,
        "medicationCodeableConcept": med,
        "subject": ctx.patient_ref.clone(),
        "effectivePeriod": Value::Object(period),
        "dateAsserted": ctx.date(asserted),
        "informationSource": ctx.gp_ref.clone(),
        "reasonReference": reason,
        "dosage": [{ "text": d.dosage }]
    });
    ctx.medications.push(statement);
}

// ---------------------------------------------------------------------------------------------
// Physiology: time-varying vitals and labs
// ---------------------------------------------------------------------------------------------

struct Glycaemia {
    onset: Day,
    at_diagnosis: f64,
    target: f64,
    drift_per_year: f64,
    treated_from: Option<Day>,
    intensified: Vec<Day>,
}

struct Physiology {
    systolic0: f64,
    diastolic0: f64,
    bp_drift_per_year: f64,
    hr0: f64,
    hr_sd: f64,
    weight0: f64,
    weight_drift_per_year: f64,
    /// (start, end, steady-state effect)
    bp_drugs: Vec<(Day, Option<Day>, f64)>,
    hr_drugs: Vec<(Day, Option<Day>, f64)>,
    admissions: Vec<Day>,
    glycaemia: Option<Glycaemia>,
    hba1c0: f64,
}

fn ramp(day: Day, start: Day, end: Option<Day>, tau: f64) -> f64 {
    if day < start || end.is_some_and(|e| day >= e) {
        0.0
    } else {
        1.0 - (-(f64::from(day - start)) / tau).exp()
    }
}

impl Physiology {
    fn new(
        ctx: &mut Ctx,
        person: &Person,
        dx: &Diagnoses,
        courses: &Courses,
        admissions: Vec<Day>,
    ) -> Self {
        let htn = dx.has(Cond::Hypertension);
        let (systolic0, diastolic0) = if htn {
            (ctx.uniform(148.0, 172.0), ctx.uniform(88.0, 102.0))
        } else {
            let age_effect = 0.25 * f64::from((person.age - 30).max(0));
            (
                (112.0 + age_effect + ctx.uniform(-6.0, 8.0)).min(138.0),
                ctx.uniform(66.0, 84.0),
            )
        };
        let bp_drift_per_year = ctx.uniform(-0.5, 3.0);
        let af = dx.has(Cond::AtrialFibrillation);
        let hr0 = ctx.uniform(60.0, 80.0) + if af { 12.0 } else { 0.0 };
        let hr_sd = if af { 12.0 } else { 5.0 };
        let metabolic = if dx.has(Cond::Diabetes) || htn {
            8.0
        } else {
            0.0
        };
        let weight0 = if person.female {
            ctx.uniform(54.0, 92.0)
        } else {
            ctx.uniform(68.0, 108.0)
        } + metabolic;
        let weight_drift_per_year = ctx.uniform(-1.5, 1.0);

        let bp_drugs = courses
            .0
            .iter()
            .filter(|c| c.drug.bp_effect > 0.0)
            .map(|c| (c.start, c.end, c.drug.bp_effect * ctx.uniform(0.6, 1.3)))
            .collect();
        let hr_drugs = courses
            .0
            .iter()
            .filter(|c| c.drug.hr_effect > 0.0)
            .map(|c| (c.start, c.end, c.drug.hr_effect))
            .collect();

        let glycaemia = dx.get(Cond::Diabetes).map(|d| {
            let dm_courses = courses
                .0
                .iter()
                .filter(|c| dx.0[c.reason].cond == Cond::Diabetes);
            let mut treated_from = None;
            let mut intensified = Vec::new();
            for c in dm_courses {
                if c.drug.atc == METFORMIN.atc {
                    treated_from = Some(c.start);
                } else if c.drug.atc.starts_with("A10") {
                    intensified.push(c.start);
                }
            }
            Glycaemia {
                onset: d.onset,
                at_diagnosis: ctx.uniform(52.0, 90.0),
                target: ctx.uniform(46.0, 60.0),
                drift_per_year: ctx.uniform(0.0, 4.0),
                treated_from: treated_from.or(intensified.first().copied()),
                intensified,
            }
        });
        let hba1c0 = ctx.uniform(31.0, 40.0);

        Physiology {
            systolic0,
            diastolic0,
            bp_drift_per_year,
            hr0,
            hr_sd,
            weight0,
            weight_drift_per_year,
            bp_drugs,
            hr_drugs,
            admissions,
            glycaemia,
            hba1c0,
        }
    }

    fn years_in(day: Day) -> f64 {
        f64::from(day - WINDOW_START) / 365.25
    }

    fn blood_pressure(&self, ctx: &mut Ctx, day: Day, clinic: bool) -> (i64, i64) {
        let ordinal = f64::from(date_of(ctx.today, day).ordinal());
        // Blood pressure runs a few mmHg higher in winter.
        let season = (2.0 * std::f64::consts::PI * (ordinal - 15.0) / 365.25).cos();
        let treatment: f64 = self
            .bp_drugs
            .iter()
            .map(|&(s, e, eff)| eff * ramp(day, s, e, 30.0))
            .sum();
        let white_coat = if clinic { 5.0 } else { 0.0 };
        let drift = self.bp_drift_per_year * Physiology::years_in(day);
        let sys =
            self.systolic0 + drift + 3.5 * season - treatment + white_coat + 7.0 * ctx.normal();
        let dia = self.diastolic0 + 0.4 * drift + 2.0 * season - 0.55 * treatment
            + 0.6 * white_coat
            + 5.0 * ctx.normal();
        let sys = sys.round().clamp(110.0, 190.0);
        let dia = dia.round().clamp(60.0, 110.0).min(sys - 25.0);
        (sys as i64, dia as i64)
    }

    fn heart_rate(&self, ctx: &mut Ctx, day: Day) -> i64 {
        let beta: f64 = self
            .hr_drugs
            .iter()
            .map(|&(s, e, eff)| eff * ramp(day, s, e, 14.0))
            .sum();
        let hr = self.hr0 - beta + self.hr_sd * ctx.normal();
        hr.round().clamp(42.0, 150.0) as i64
    }

    fn weight(&self, ctx: &mut Ctx, day: Day, clinic: bool) -> f64 {
        // Fluid build-up in the two weeks before a heart-failure admission, which is exactly
        // what home weight monitoring is meant to catch.
        let mut fluid = 0.0;
        for &a in &self.admissions {
            if (a - 14..a).contains(&day) {
                fluid += 3.5 * f64::from(day - (a - 14)) / 14.0;
            }
        }
        let clothes = if clinic { 0.8 } else { 0.0 };
        self.weight0
            + self.weight_drift_per_year * Physiology::years_in(day)
            + fluid
            + clothes
            + 0.4 * ctx.normal()
    }

    fn hba1c(&self, ctx: &mut Ctx, day: Day) -> f64 {
        match &self.glycaemia {
            Some(g) => {
                let mut v = g.at_diagnosis;
                if let Some(t) = g.treated_from
                    && day >= t
                {
                    let since = f64::from(day - t);
                    v = g.target + (g.at_diagnosis - g.target) * (-since / 120.0).exp();
                    // Type 2 diabetes progresses; intensification pulls it back down.
                    v += g.drift_per_year * since / 365.25;
                    for &s in &g.intensified {
                        v -= 8.0 * ramp(day, s, None, 90.0);
                    }
                } else if day > g.onset {
                    v += g.drift_per_year * f64::from(day - g.onset) / 365.25;
                }
                (v + 3.0 * ctx.normal()).clamp(42.0, 95.0)
            }
            None => (self.hba1c0 + 0.3 * Physiology::years_in(day) + 1.5 * ctx.normal())
                .clamp(30.0, 42.0),
        }
    }

    /// Fasting plasma glucose consistent with the HbA1c (ADAG relation) plus day-to-day noise.
    fn glucose(ctx: &mut Ctx, hba1c: f64) -> f64 {
        let percent = hba1c / 10.929 + 2.15;
        let mean_glucose = 1.59 * percent - 2.59;
        (mean_glucose * ctx.uniform(0.8, 1.05) + 0.6 * ctx.normal()).clamp(4.0, 20.0)
    }
}

// ---------------------------------------------------------------------------------------------
// Care timeline: visits, home monitoring, admissions
// ---------------------------------------------------------------------------------------------

fn plan_admissions(ctx: &mut Ctx, dx: &Diagnoses) -> Vec<Day> {
    let Some(hf) = dx.get(Cond::HeartFailure) else {
        return Vec::new();
    };
    let r = ctx.uniform(0.0, 1.0);
    let n = if r < 0.45 {
        0
    } else if r < 0.8 {
        1
    } else if r < 0.95 {
        2
    } else {
        3
    };
    let lo = (hf.onset + 30).max(WINDOW_START);
    let hi = -20;
    let mut days: Vec<Day> = (0..n)
        .filter(|_| lo < hi)
        .map(|_| ctx.int(lo, hi))
        .collect();
    days.sort_unstable();
    // Admissions closer than three weeks would overlap or be one stay.
    days.dedup_by(|b, a| *b - *a < 21);
    days
}

#[derive(Clone, Copy)]
enum Labs {
    None,
    Screening,
    Diabetic,
}

struct VisitPlan<'a> {
    kind: &'a EncounterType,
    reasons: &'a [String],
    hr: f64,
    weight: f64,
    labs: Labs,
}

fn gp_visit(ctx: &mut Ctx, phys: &Physiology, day: Day, plan: &VisitPlan) {
    let start = ctx.clinic_time(day);
    let length = *pick(&mut ctx.rng, &[15, 20, 30]);
    let end = When {
        day,
        minute: start.minute + length,
    };
    let gp = ctx.gp_ref.clone();
    let enc = ctx.push_encounter(CLASS_AMB, plan.kind, start, end, gp.clone(), plan.reasons);
    let setting = Setting {
        when: When {
            day,
            minute: start.minute + 5,
        },
        encounter: Some(enc),
        performer: Some(gp),
    };
    let (s, d) = phys.blood_pressure(ctx, day, true);
    ctx.obs_blood_pressure(&setting, s, d);
    if ctx.chance(plan.hr) {
        let hr = phys.heart_rate(ctx, day);
        ctx.obs_heart_rate(&setting, hr);
    }
    if ctx.chance(plan.weight) {
        let w = phys.weight(ctx, day, true);
        ctx.obs_weight(&setting, w);
    }
    match plan.labs {
        Labs::None => {}
        Labs::Screening => {
            let v = phys.hba1c(ctx, day);
            let a = ctx.obs_hba1c(&setting, v.round() as i64);
            ctx.push_report(&setting, &[a]);
        }
        Labs::Diabetic => {
            let v = phys.hba1c(ctx, day);
            let a = ctx.obs_hba1c(&setting, v.round() as i64);
            let g = Physiology::glucose(ctx, v);
            let b = ctx.obs_glucose(&setting, g);
            ctx.push_report(&setting, &[a, b]);
        }
    }
}

fn care(ctx: &mut Ctx, phys: &Physiology, person: &Person, dx: &Diagnoses) {
    let age = person.age;
    let chronic: Vec<&Dx> =
        dx.0.iter()
            .filter(|d| d.cond.is_chronic_programme())
            .collect();
    let first_chronic = chronic.iter().map(|d| d.onset).min();
    let dm = dx.has(Cond::Diabetes);
    let hf = dx.has(Cond::HeartFailure);
    let htn = dx.has(Cond::Hypertension);
    let screening = ctx.chance(if age >= 40 { 0.35 } else { 0.1 });

    // Yearly check-ups until the patient enters a chronic follow-up programme.
    let checkup_p = if age < 40 {
        0.25
    } else if age < 65 {
        0.45
    } else {
        0.65
    };
    for k in 0..5 {
        let lo = WINDOW_START + 365 * k;
        let hi = (lo + 364).min(LAST);
        if first_chronic.is_some_and(|f| hi >= f) || !ctx.chance(checkup_p) {
            continue;
        }
        let day = ctx.int(lo, hi);
        let plan = VisitPlan {
            kind: &ENC_CHECKUP,
            reasons: &[],
            hr: 0.7,
            weight: 0.5,
            labs: if screening {
                Labs::Screening
            } else {
                Labs::None
            },
        };
        gp_visit(ctx, phys, day, &plan);
    }

    // Chronic follow-up: diabetics and heart failure three times a year (HbA1c for diabetics),
    // other programmes every eight months or so.
    if let Some(first) = first_chronic {
        let (interval, jitter) = if dm {
            (120, 20)
        } else if hf {
            (120, 30)
        } else {
            (240, 60)
        };
        let mut day = first;
        let mut first_visit = true;
        while day <= LAST {
            let labs = if dm {
                Labs::Diabetic
            } else if screening && ctx.chance(0.5) {
                Labs::Screening
            } else {
                Labs::None
            };
            // Only conditions already diagnosed can be the reason for a visit.
            let reasons: Vec<String> = chronic
                .iter()
                .filter(|d| d.onset <= day)
                .map(|d| d.id.clone())
                .collect();
            let plan = VisitPlan {
                kind: if first_visit {
                    &ENC_SYMPTOM
                } else {
                    &ENC_FOLLOWUP
                },
                reasons: &reasons,
                hr: 0.6,
                weight: if hf {
                    1.0
                } else if dm {
                    0.7
                } else {
                    0.25
                },
                labs,
            };
            gp_visit(ctx, phys, day, &plan);
            first_visit = false;
            day += interval + ctx.int(-jitter, jitter);
        }
    }

    // Home blood-pressure monitoring: the long time series benchmarks care about.
    let bp_onset = [Cond::Hypertension, Cond::HeartFailure]
        .iter()
        .filter_map(|&c| dx.get(c).map(|d| d.onset))
        .min();
    if let Some(onset) = bp_onset
        && ctx.chance(0.75)
    {
        let heavy = ctx.chance(0.02);
        let span = ctx.int(365, 1095);
        let start = (LAST - span).max(onset - 14).max(WINDOW_START);
        let days = LAST - start + 1;
        let target = if heavy {
            ctx.int(200, 500)
        } else {
            let u = ctx.uniform(0.0, 1.0);
            30 + (100.0 * u * u * u) as i32
        };
        let cap = if heavy { days } else { days / 4 };
        let n = target.min(cap).max(1);
        let interval = f64::from(days) / f64::from(n);
        let hr_p = if dx.has(Cond::AtrialFibrillation) {
            0.5
        } else {
            0.1
        };
        let weight_p = if hf { 0.8 } else { 0.02 };
        let mut prev = start - 1;
        for k in 0..n {
            let base = f64::from(start) + (f64::from(k) + 0.5) * interval;
            let jitter = ctx.uniform(-0.35, 0.35) * interval;
            if prev >= LAST {
                break;
            }
            let day = ((base + jitter).round() as Day).clamp(prev + 1, LAST);
            prev = day;
            let setting = Setting {
                when: ctx.home_time(day),
                encounter: None,
                performer: None,
            };
            let (s, d) = phys.blood_pressure(ctx, day, false);
            ctx.obs_blood_pressure(&setting, s, d);
            if ctx.chance(hr_p) {
                let hr = phys.heart_rate(ctx, day);
                ctx.obs_heart_rate(&setting, hr);
            }
            if ctx.chance(weight_p) {
                let w = phys.weight(ctx, day, false);
                ctx.obs_weight(&setting, w);
            }
        }
    }

    // Municipal home nursing for frail heart-failure patients.
    if hf && age >= 75 && ctx.chance(0.4) {
        let mut day = LAST - ctx.int(180, 730);
        let muni = ctx.municipality_ref.clone();
        while day <= LAST {
            let start = When {
                day,
                minute: 8 * 60 + 15 * ctx.rng.gen_range(0..24),
            };
            let end = When {
                day,
                minute: start.minute + 30,
            };
            let reasons: Vec<String> = dx
                .get(Cond::HeartFailure)
                .map(|d| d.id.clone())
                .into_iter()
                .collect();
            let enc = ctx.push_encounter(CLASS_HH, &ENC_HOME, start, end, muni.clone(), &reasons);
            let setting = Setting {
                when: When {
                    day,
                    minute: start.minute + 10,
                },
                encounter: Some(enc),
                performer: Some(muni.clone()),
            };
            let w = phys.weight(ctx, day, false);
            ctx.obs_weight(&setting, w);
            if htn || ctx.chance(0.5) {
                let (s, d) = phys.blood_pressure(ctx, day, false);
                ctx.obs_blood_pressure(&setting, s, d);
            }
            day += ctx.int(14, 45);
        }
    }

    // Heart-failure admissions to the regional hospital.
    if let Some(hf_dx) = dx.get(Cond::HeartFailure) {
        let region = ctx.region_ref.clone();
        for &a in &phys.admissions {
            let start = When {
                day: a,
                minute: ctx.int(8 * 60, 22 * 60) as u32,
            };
            let end_day = (a + ctx.int(2, 12)).min(LAST);
            let end = When {
                day: end_day,
                minute: ctx.int(9 * 60, 15 * 60) as u32,
            };
            ctx.push_encounter(
                CLASS_IMP,
                &ENC_ADMISSION,
                start,
                end,
                region.clone(),
                std::slice::from_ref(&hf_dx.id),
            );
        }
    }

    // Acute consultations for everything else.
    let acute_p = if age < 40 {
        0.2
    } else if age < 70 {
        0.3
    } else {
        0.4
    };
    for _ in 0..5 {
        if !ctx.chance(acute_p) {
            continue;
        }
        let day = ctx.int(WINDOW_START, LAST);
        let start = ctx.clinic_time(day);
        let end = When {
            day,
            minute: start.minute + 15,
        };
        let gp = ctx.gp_ref.clone();
        ctx.push_encounter(CLASS_AMB, &ENC_SYMPTOM, start, end, gp, &[]);
    }
}

// ---------------------------------------------------------------------------------------------
// Immunizations and procedures
// ---------------------------------------------------------------------------------------------

fn push_immunization(ctx: &mut Ctx, (code, display, text): (&str, &str, &str), day: Day) {
    if !(WINDOW_START..=LAST).contains(&day) {
        return;
    }
    let id = ctx.id();
    let when = ctx.clinic_time(day);
    let imm = json!({
        "resourceType": "Immunization",
        "id": id,
        "status": "completed",
        "vaccineCode": concept(SYS_CVX, code, display, text),
        "patient": ctx.patient_ref.clone(),
        "occurrenceDateTime": ctx.datetime(when),
        "primarySource": true
    });
    ctx.immunizations.push(imm);
}

fn immunizations(ctx: &mut Ctx, age: i32) {
    const FLU_PF: (&str, &str, &str) = (
        "140",
        "Influenza, seasonal, injectable, preservative free",
        "Influenzavaccine",
    );
    const FLU: (&str, &str, &str) = ("141", "Influenza, seasonal, injectable", "Influenzavaccine");
    const COVID: (&str, &str, &str) = (
        "208",
        "COVID-19, mRNA, LNP-S, PF, 30 mcg/0.3 mL dose",
        "COVID-19-vaccine",
    );
    const PNEUMO: (&str, &str, &str) = (
        "33",
        "pneumococcal polysaccharide vaccine, 23 valent",
        "Pneumokokvaccine",
    );

    let today = ctx.today;
    let first_year = date_of(today, WINDOW_START).year();
    let elderly = age >= 65;
    for year in first_year..=today.year() {
        let Some(autumn) = NaiveDate::from_ymd_opt(year, 10, 1) else {
            continue;
        };
        let flu_p = if elderly { 0.75 } else { 0.15 };
        if ctx.chance(flu_p) {
            let day = day_of(today, autumn) + ctx.int(0, 75);
            let vaccine = if ctx.chance(0.8) { FLU_PF } else { FLU };
            push_immunization(ctx, vaccine, day);
        }
        if year == 2021 && ctx.chance(0.85) {
            // Primary series: two doses three to six weeks apart.
            let Some(jan) = NaiveDate::from_ymd_opt(2021, 1, 15) else {
                continue;
            };
            let first = day_of(today, jan) + ctx.int(0, 160);
            push_immunization(ctx, COVID, first);
            let second = first + ctx.int(21, 42);
            push_immunization(ctx, COVID, second);
        }
        if year >= 2021 {
            let booster_p = match (elderly, year) {
                (true, 2021 | 2022) => 0.75,
                (true, _) => 0.6,
                (false, 2021) => 0.4,
                (false, 2022) => 0.2,
                (false, _) => 0.03,
            };
            if ctx.chance(booster_p)
                && let Some(sep) = NaiveDate::from_ymd_opt(year, 9, 15)
            {
                let day = day_of(today, sep) + ctx.int(0, 75);
                push_immunization(ctx, COVID, day);
            }
        }
    }
    if elderly && ctx.chance(0.35) {
        let day = ctx.int(WINDOW_START, LAST);
        push_immunization(ctx, PNEUMO, day);
    }
}

fn procedures(ctx: &mut Ctx, person: &Person, dx: &Diagnoses, courses: &Courses) {
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

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

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
                NaiveDate::parse_from_str(res[0]["birthDate"].as_str().unwrap(), "%Y-%m-%d")
                    .unwrap();
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
                r["resourceType"] == "MedicationRequest"
                    || r["resourceType"] == "MedicationStatement"
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
}

//! The demo world `healthcloud up` creates on first start: synthetic patients, each sector's
//! part of their records in that sector's own store, and ready-made tokens for each kind of
//! user.

use healthcloud_integration::import::Importer;
use healthcloud_integration::query::{PageLimits, SearchQuery};
use healthcloud_integration::service::WRITTEN_SOURCE;
use healthcloud_integration::store::{EmbeddedStore, Prepared};
use healthcloud_platform::auth::{Role, TokenIssuer, TokenRequest, apps_audience, fhir_audience};
use healthcloud_synth::SynthOptions;
use serde_json::Value;

/// "Today" for generated data, fixed so a seed always gives the same data.
pub const DATA_ANCHOR_DATE: &str = "2026-11-01";

/// Patients generated on first start: enough to feel real, quick to create.
pub const DEMO_PATIENTS: usize = 500;

/// Generates `patients` synthetic patients unless the store already holds patients.
pub async fn ensure_data_of_size(store: &EmbeddedStore, patients: usize) -> anyhow::Result<()> {
    if first_patient(store).await?.is_some() {
        return Ok(());
    }
    eprintln!("first start: generating {patients} synthetic patients…");
    let report = crate::progress::generate(
        store,
        SynthOptions {
            patients,
            seed: 42,
            today: DATA_ANCHOR_DATE.parse()?,
        },
    )
    .await?;
    eprintln!("generated {} resources", report.resources());
    Ok(())
}

/// The stores of the demo world's sectors.
#[derive(Debug, Clone, Copy)]
pub struct SectorStores<'a> {
    /// The region's own record: the hospital's data and the patients' home measurements.
    pub hospital: &'a EmbeddedStore,
    /// The GP system's.
    pub gp: &'a EmbeddedStore,
    /// The municipal care record's.
    pub municipality: &'a EmbeddedStore,
    /// The names of the GP system and the municipal care record as the region's sources: the
    /// hospital record names their resources `<name>.<id>`.
    pub source_names: (&'a str, &'a str),
}

/// Generates `patients` synthetic patients unless the hospital's store already holds
/// patients, each sector's part of their records in that sector's store: what the hospital
/// recorded, and the home measurements the patients sent in through the blood-pressure app,
/// in the region's own record; visits, diagnoses and prescriptions in the GP system; home
/// nursing in the municipal care record. A data directory whose store was filled by
/// `data generate` keeps its data as it is: whole records, in the region's store.
pub async fn ensure_world(stores: SectorStores<'_>, patients: usize) -> anyhow::Result<()> {
    if first_patient(stores.hospital).await?.is_some() {
        return Ok(());
    }
    eprintln!(
        "first start: generating {patients} synthetic patients across the hospital, GP and municipal records…"
    );
    let options = SynthOptions {
        patients,
        seed: 42,
        today: DATA_ANCHOR_DATE.parse()?,
    };
    let bar = crate::progress::progress_bar(patients as u64, "patients");
    let mut importers = [
        Importer::new(stores.hospital),
        Importer::new(stores.gp),
        Importer::new(stores.municipality),
    ];
    let organizations = prepare(healthcloud_synth::organizations(&options))?;
    for importer in &mut importers {
        importer.add_prepared(organizations.clone()).await?;
    }
    importers[0]
        .add_prepared(prepare(demo_practitioners())?)
        .await?;
    const PATIENTS_PER_BATCH: usize = 50;
    for first in (0..patients).step_by(PATIENTS_PER_BATCH) {
        let indices = first..(first + PATIENTS_PER_BATCH).min(patients);
        let done = indices.end;
        let (gp_source, municipality_source) = (
            stores.source_names.0.to_owned(),
            stores.source_names.1.to_owned(),
        );
        let parts = tokio::task::spawn_blocking(move || {
            let mut parts: [Vec<Value>; 3] = Default::default();
            for index in indices {
                let mut split = healthcloud_synth::patient_by_sector(&options, index);
                split.refer_across(&gp_source, &municipality_source);
                let patient = split.hospital[0]["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                parts[0].extend(split.hospital);
                parts[0].extend(split.home.into_iter().map(|r| sent_from_home(r, &patient)));
                parts[1].extend(split.gp);
                parts[2].extend(split.municipality);
            }
            parts.map(prepare)
        })
        .await?;
        for (importer, part) in importers.iter_mut().zip(parts) {
            importer.add_prepared(part?).await?;
        }
        bar.set_position(done as u64);
    }
    let mut written = 0;
    for importer in importers {
        written += importer.finish().await?.resources();
    }
    bar.finish_and_clear();
    eprintln!("generated {written} resources");
    Ok(())
}

/// The practitioners the demo tokens name as their users (`fhirUser`), in the region's record,
/// each with their role at their region: what a SMART client reads as "who is logged in".
fn demo_practitioners() -> Vec<Value> {
    [
        ("dr-hansen", "Karen", "Hansen", "hovedstaden"),
        ("dr-madsen", "Jens", "Madsen", "midtjylland"),
    ]
    .into_iter()
    .flat_map(|(id, given, family, region)| {
        [
            serde_json::json!({"resourceType": "Practitioner", "id": id, "active": true,
                "name": [{"family": family, "given": [given], "prefix": ["Dr."]}]}),
            serde_json::json!({"resourceType": "PractitionerRole", "id": format!("{id}-{region}"),
                "active": true,
                "practitioner": {"reference": format!("Practitioner/{id}")},
                "organization": {"reference": format!("Organization/region-{region}")},
                "code": [{"text": "physician"}]}),
        ]
    })
    .collect()
}

/// A home measurement as the platform holds one the patient sent in with the blood-pressure
/// app: stamped with its writer as every write through the platform is.
fn sent_from_home(mut reading: Value, patient: &str) -> Value {
    reading["meta"] = serde_json::json!({
        "source": format!("{WRITTEN_SOURCE}:app:examples.bp-monitor:patient:{patient}")
    });
    reading
}

/// Generated resources, ready to write.
fn prepare(resources: Vec<Value>) -> anyhow::Result<Vec<Prepared>> {
    let now = healthcloud_integration::date::now_ms();
    resources
        .into_iter()
        .map(|resource| {
            let resource_type = resource["resourceType"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let id = resource["id"].as_str().unwrap_or_default().to_owned();
            Ok(Prepared::new(&resource_type, &id, 1, now, resource)?)
        })
        .collect()
}

/// The patient the demo tokens open: in the demo world, one the hospital admitted who also
/// measures at home (so the blood-pressure app shows home, GP and hospital readings); else
/// one with hypertension (so blood-pressure series show up); else the first patient.
pub async fn demo_patient(store: &EmbeddedStore) -> anyhow::Result<Option<String>> {
    if let Some(patient) = admitted_and_measuring_at_home(store).await? {
        return Ok(Some(patient));
    }
    let hypertension = [
        (
            "code".to_owned(),
            "http://snomed.info/sct|59621000".to_owned(),
        ),
        ("_count".to_owned(), "1".to_owned()),
    ];
    let query = SearchQuery::parse("Condition", &hypertension, PageLimits::default())?;
    if let Some(condition) = store.search(&query).await?.resources.into_iter().next() {
        return Ok(condition.patient_id);
    }
    first_patient(store).await
}

/// A patient with an Encounter in `store` (in the demo world, the hospital's admissions) and
/// home blood-pressure readings.
async fn admitted_and_measuring_at_home(store: &EmbeddedStore) -> anyhow::Result<Option<String>> {
    let encounters = SearchQuery::parse(
        "Encounter",
        &[("_count".into(), "200".into())],
        PageLimits::default(),
    )?;
    let mut seen = std::collections::BTreeSet::new();
    for encounter in store.search(&encounters).await?.resources {
        let Some(patient) = encounter.patient_id else {
            continue;
        };
        if !seen.insert(patient.clone()) {
            continue;
        }
        let home_readings = SearchQuery::parse(
            "Observation",
            &[
                ("patient".into(), patient.clone()),
                ("code".into(), "http://loinc.org|85354-9".into()),
                ("_source:below".into(), WRITTEN_SOURCE.into()),
                ("_count".into(), "1".into()),
            ],
            PageLimits::default(),
        )?;
        if !store.search(&home_readings).await?.resources.is_empty() {
            return Ok(Some(patient));
        }
    }
    Ok(None)
}

/// Whether `store` holds any patient.
pub async fn holds_patients(store: &EmbeddedStore) -> anyhow::Result<bool> {
    Ok(first_patient(store).await?.is_some())
}

async fn first_patient(store: &EmbeddedStore) -> anyhow::Result<Option<String>> {
    let query = SearchQuery::parse(
        "Patient",
        &[("_count".into(), "1".into())],
        PageLimits::default(),
    )?;
    Ok(store
        .search(&query)
        .await?
        .resources
        .first()
        .map(|r| r.id.clone()))
}

/// Demo tokens, one per user kind, valid for twelve hours, for the server at `public_url`.
/// The names double as the shell variables the printed examples use. Each is for the
/// service it is printed for (the FHIR API or the app cloud), and the workforce ones name
/// who acts (their region's organization and a practitioner), so consent opt-outs apply.
pub fn tokens(
    issuer: &TokenIssuer,
    patient: &str,
    public_url: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let ttl = Some(12 * 3600);
    let (fhir, apps) = (fhir_audience(public_url), apps_audience(public_url));
    let mint = |role, request| issuer.mint(role, request).map_err(anyhow::Error::msg);
    let staff = |sub: &str, region: &str, patient: Option<&str>, audience: &str| TokenRequest {
        sub: Some(sub.into()),
        region: Some(region.into()),
        patient: patient.map(str::to_owned),
        org: Some(format!("region-{region}")),
        fhir_user: Some(format!("Practitioner/{sub}")),
        audience: vec![audience.to_owned()],
        ttl_secs: ttl,
        ..Default::default()
    };
    Ok(vec![
        (
            "TOKEN: clinician in hovedstaden (FHIR API, all patients, read + search + create Observation)".into(),
            mint(Role::Clinician, staff("dr-hansen", "hovedstaden", None, &fhir))?,
        ),
        (
            format!("APP_TOKEN: clinician in hovedstaden who opened patient {patient} (apps in /apps/hovedstaden/)"),
            mint(Role::Clinician, staff("dr-hansen", "hovedstaden", Some(patient), &apps))?,
        ),
        (
            format!("MIDT_TOKEN: clinician in midtjylland who opened patient {patient} (apps in /apps/midtjylland/)"),
            mint(Role::Clinician, staff("dr-madsen", "midtjylland", Some(patient), &apps))?,
        ),
        (
            format!("PATIENT_TOKEN: patient {patient} (records home measurements in /apps/hovedstaden/examples/bp-monitor/)"),
            mint(
                Role::Patient,
                TokenRequest {
                    sub: Some("patient-demo".into()),
                    region: Some("hovedstaden".into()),
                    patient: Some(patient.to_owned()),
                    audience: vec![apps.clone()],
                    ttl_secs: ttl,
                    ..Default::default()
                },
            )?,
        ),
        (
            "CITIZEN_TOKEN: citizen (FHIR API: own record, audit log and consent)".into(),
            mint(
                Role::Citizen,
                TokenRequest {
                    sub: Some("citizen-demo".into()),
                    patient: Some(patient.to_owned()),
                    audience: vec![fhir.clone()],
                    ttl_secs: ttl,
                    ..Default::default()
                },
            )?,
        ),
        (
            "SECURITY_TOKEN: security officer in hovedstaden (FHIR API: every patient's AuditEvents and Consents, each read audited)".into(),
            mint(
                Role::SecurityOfficer,
                staff("security-hovedstaden", "hovedstaden", None, &fhir),
            )?,
        ),
    ])
}

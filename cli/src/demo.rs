//! The demo world `healthcloud up` creates on first start: synthetic patients and ready-made
//! tokens for each kind of user.

use healthcloud_integration::auth::{Role, TokenIssuer, TokenRequest};
use healthcloud_integration::query::{PageLimits, SearchQuery};
use healthcloud_integration::store::EmbeddedStore;
use healthcloud_integration::synth::SynthOptions;

/// "Today" for generated data, fixed so a seed always gives the same data.
pub const DATA_ANCHOR_DATE: &str = "2026-11-01";

/// Patients generated on first start: enough to feel real, quick to create.
pub const DEMO_PATIENTS: usize = 500;

/// Generates the demo data unless the store already holds patients.
pub async fn ensure_data(store: &EmbeddedStore) -> anyhow::Result<()> {
    if first_patient(store).await?.is_some() {
        return Ok(());
    }
    eprintln!("first start: generating {DEMO_PATIENTS} synthetic patients…");
    let report = crate::commands::generate_data(
        store,
        SynthOptions {
            patients: DEMO_PATIENTS,
            seed: 42,
            today: DATA_ANCHOR_DATE.parse()?,
        },
    )
    .await?;
    eprintln!("generated {} resources", report.resources());
    Ok(())
}

/// The patient the demo tokens open: one with hypertension (so blood-pressure series show
/// up), else the first patient.
pub async fn demo_patient(store: &EmbeddedStore) -> anyhow::Result<Option<String>> {
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

/// Demo tokens, one per user kind, valid for twelve hours.
pub fn tokens(issuer: &TokenIssuer, patient: &str) -> anyhow::Result<Vec<(&'static str, String)>> {
    let ttl = Some(12 * 3600);
    let mint = |role, request| issuer.mint(role, request).map_err(anyhow::Error::msg);
    Ok(vec![
        (
            "clinician (all patients, read + search + create Observation)",
            mint(
                Role::Clinician,
                TokenRequest {
                    sub: Some("dr-hansen".into()),
                    region: Some("hovedstaden".into()),
                    ttl_secs: ttl,
                    ..Default::default()
                },
            )?,
        ),
        (
            "citizen (own record, audit log and consent)",
            mint(
                Role::Citizen,
                TokenRequest {
                    sub: Some("citizen-demo".into()),
                    patient: Some(patient.to_owned()),
                    ttl_secs: ttl,
                    ..Default::default()
                },
            )?,
        ),
    ])
}

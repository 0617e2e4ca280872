//! The demo world `healthcloud up` creates on first start: synthetic patients and ready-made
//! tokens for each kind of user.

use healthcloud_integration::query::{PageLimits, SearchQuery};
use healthcloud_integration::store::EmbeddedStore;
use healthcloud_platform::auth::{Role, TokenIssuer, TokenRequest, apps_audience, fhir_audience};
use healthcloud_synth::SynthOptions;

/// "Today" for generated data, fixed so a seed always gives the same data.
pub const DATA_ANCHOR_DATE: &str = "2026-11-01";

/// Patients generated on first start: enough to feel real, quick to create.
pub const DEMO_PATIENTS: usize = 500;

/// Generates the demo data unless the store already holds patients.
pub async fn ensure_data(store: &EmbeddedStore) -> anyhow::Result<()> {
    ensure_data_of_size(store, DEMO_PATIENTS).await
}

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

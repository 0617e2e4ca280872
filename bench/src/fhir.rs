//! The `fhir` benchmark: Bundle import throughput and patient-compartment search latency on
//! embedded SQLite, plus synthetic data generation throughput.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use chrono::NaiveDate;
use healthcloud_integration::FhirService;
use healthcloud_integration::audit::{AuditRecord, audit_event};
use healthcloud_integration::auth::{Role, TokenIssuer, TokenRequest};
use healthcloud_integration::db::Database;
use healthcloud_integration::import::{Importer, load_synthetic};
use healthcloud_integration::policy::AccessContext;
use healthcloud_integration::query::{PageLimits, SearchQuery};
use healthcloud_integration::scope::Interaction;
use healthcloud_integration::store::{EmbeddedStore, Prepared, SearchPage};
use healthcloud_integration::synth::SynthOptions;
use healthcloud_integration::validate;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use crate::corpus::{self, BP_PANEL, Corpus, LOINC};
use crate::stats::{Latency, per_second};

/// Resources the importer commits per transaction. It mirrors the (private)
/// `import::GROUP_RESOURCES` of healthcloud-integration and is used ONLY to attribute the time
/// of an `Importer::add` call that ended in a commit to "commit" rather than "prepare"; the
/// headline throughput does not depend on it. [`check_attribution`] warns if it goes stale.
const IMPORTER_GROUP_RESOURCES: usize = 20_000;

/// Page size of the benchmark search: "the patient's last 100 blood pressures".
const SEARCH_COUNT: usize = 100;

/// Bundles re-processed step by step (outside the timed import) to split prepare time.
const CPU_SAMPLE_BUNDLES: usize = 1_000;

/// Audit writes timed on their own, to explain what the service adds to a raw search.
const AUDIT_PROBE_WRITES: usize = 300;

/// How one run is configured.
#[derive(Debug, Clone)]
pub struct Config {
    /// Patients generated (and imported as one Bundle each).
    pub patients: usize,
    /// Synth seed; also seeds the choice of searched patients.
    pub seed: u64,
    /// synth's "today": fixed so the corpus is the same on every day.
    pub today: NaiveDate,
    /// Patients (with blood pressures) searched.
    pub search_patients: usize,
    /// Timed passes over the searched patients, per search path.
    pub rounds: usize,
    /// Whether to also time `load_synthetic` (the `data generate` path).
    pub generate: bool,
    /// Where the databases are created.
    pub data_dir: PathBuf,
}

/// Everything a run measured.
#[derive(Debug)]
pub struct Results {
    /// The corpus.
    pub corpus: CorpusStats,
    /// The timed import.
    pub import: ImportResult,
    /// The per-step split of prepare time on a sample.
    pub cpu: CpuSample,
    /// Search latencies.
    pub search: SearchResult,
    /// `load_synthetic` throughput, if measured.
    pub generate: Option<GenerateResult>,
}

/// Size of the corpus and how long building it took (not part of any figure).
#[derive(Debug)]
pub struct CorpusStats {
    /// Patients.
    pub patients: usize,
    /// Bundles (one per patient plus one of Organizations).
    pub bundles: usize,
    /// Resources.
    pub resources: usize,
    /// Serialized JSON bytes.
    pub bytes: usize,
    /// Time to generate and serialize the Bundles.
    pub build_time: Duration,
}

/// The timed import.
#[derive(Debug)]
pub struct ImportResult {
    /// Wall time of the whole import (parse + add + finish).
    pub elapsed: Duration,
    /// Resources the importer reports written.
    pub resources: usize,
    /// Bundles the importer reports written.
    pub bundles: usize,
    /// Time in `serde_json::from_str` of the Bundle text.
    pub parse: Duration,
    /// Time in `Importer::add` calls that did not commit: resolve, validate, index, serialize.
    pub prepare: Duration,
    /// Time in `Importer::add` calls that committed a group, and in `finish`: SQL inserts + commit.
    pub commit: Duration,
    /// Commits (groups) attributed.
    pub commits: usize,
    /// Median duration of a non-committing `add` call, for the attribution check.
    pub median_prepare_call: Duration,
    /// Database file size after import (with WAL).
    pub db_bytes: u64,
    /// Peak resident memory of the process after import (corpus included).
    pub peak_rss: String,
}

/// The prepare steps timed one by one on a sample of Bundles.
#[derive(Debug, Default)]
pub struct CpuSample {
    /// Bundles in the sample.
    pub bundles: usize,
    /// Resources in the sample.
    pub resources: usize,
    /// `serde_json::from_str` of the Bundle text.
    pub parse: Duration,
    /// `validate::resource`.
    pub validate: Duration,
    /// `Prepared::new`: stamp meta, extract index rows, serialize.
    pub prepared: Duration,
    /// Token index rows (one SQL row each).
    pub token_rows: usize,
    /// Date index rows (one SQL row each).
    pub date_rows: usize,
    /// Stored JSON bytes.
    pub content_bytes: usize,
}

/// Search latencies.
#[derive(Debug)]
pub struct SearchResult {
    /// Patients searched.
    pub patients: usize,
    /// Mean matches per searched patient (before the page limit).
    pub mean_matches: f64,
    /// `store.search`: parse + COUNT + page SELECT.
    pub raw: Latency,
    /// `store.search` with `_count=0`: parse + COUNT only.
    pub count_only: Latency,
    /// `FhirService::search` as a clinician: policy, consent check, search, audit write.
    pub service: Latency,
    /// One AuditEvent written in its own transaction, as the service does after each search.
    pub audit_write: Latency,
}

/// `load_synthetic` throughput.
#[derive(Debug)]
pub struct GenerateResult {
    /// Wall time.
    pub elapsed: Duration,
    /// Patients generated.
    pub patients: usize,
    /// Resources written.
    pub resources: usize,
}

/// Runs the benchmark.
pub async fn run(config: &Config) -> anyhow::Result<Results> {
    let options = SynthOptions {
        patients: config.patients,
        seed: config.seed,
        today: config.today,
    };

    eprintln!("building {} patient Bundles (untimed)…", config.patients);
    let started = Instant::now();
    let corpus = corpus::build(&options)?;
    let corpus_stats = CorpusStats {
        patients: config.patients,
        bundles: corpus.bundles.len() + 1,
        resources: corpus.resources,
        bytes: corpus.bytes,
        build_time: started.elapsed(),
    };
    eprintln!(
        "  {} resources, {:.0} MiB of JSON in {:.1} s",
        corpus.resources,
        corpus.bytes as f64 / (1 << 20) as f64,
        corpus_stats.build_time.as_secs_f64()
    );

    let import_db = config.data_dir.join("import.db");
    let store = EmbeddedStore::new(Database::connect(&sqlite_url(&import_db)).await?);
    eprintln!("importing into {} (timed)…", import_db.display());
    let mut import = import(&store, &corpus).await?;
    import.db_bytes = file_size(&import_db);
    import.peak_rss = crate::machine::peak_rss();
    ensure!(
        import.resources == corpus.resources,
        "the importer wrote {} resources, the corpus has {}",
        import.resources,
        corpus.resources
    );
    check_attribution(&import);

    let cpu = cpu_sample(&corpus)?;
    let Corpus {
        patients: facts, ..
    } = corpus; // the Bundle texts are no longer needed

    eprintln!("searching…");
    let search = search(&store, &facts, config).await?;
    drop(store);

    let generate = if config.generate {
        eprintln!("timing load_synthetic (data generate)…");
        let db = config.data_dir.join("generate.db");
        let store = EmbeddedStore::new(Database::connect(&sqlite_url(&db)).await?);
        let started = Instant::now();
        let report = load_synthetic(&store, options, &|_| {}).await?;
        Some(GenerateResult {
            elapsed: started.elapsed(),
            patients: config.patients,
            resources: report.resources(),
        })
    } else {
        None
    };

    Ok(Results {
        corpus: corpus_stats,
        import,
        cpu,
        search,
        generate,
    })
}

/// The timed import: every Bundle text parsed and added, then the importer finished.
async fn import(store: &EmbeddedStore, corpus: &Corpus) -> anyhow::Result<ImportResult> {
    let mut parse = Duration::ZERO;
    let mut prepare_calls = Vec::with_capacity(corpus.bundles.len() + 1);
    let mut commit = Duration::ZERO;
    let mut commits = 0;
    let mut pending = 0;
    let total = corpus.bundles.len();
    let mut importer = Importer::new(store);

    let started = Instant::now();
    for (i, text) in std::iter::once(&corpus.organizations)
        .chain(&corpus.bundles)
        .enumerate()
    {
        let t0 = Instant::now();
        let bundle: Value = serde_json::from_str(text).context("corpus Bundle is not JSON")?;
        let t1 = Instant::now();
        let added = importer
            .add(bundle)
            .await
            .with_context(|| format!("importing Bundle {i}"))?;
        let t2 = Instant::now();
        parse += t1 - t0;
        // The importer commits inside `add` once its group is full; such a call is almost all
        // commit (the Bundle's own prepare is ~1/400 of the group's work).
        pending += added;
        if pending >= IMPORTER_GROUP_RESOURCES {
            commit += t2 - t1;
            commits += 1;
            pending = 0;
        } else {
            prepare_calls.push(t2 - t1);
        }
        if i > 0 && i % (total / 10).max(1) == 0 {
            eprintln!(
                "  {i}/{total} Bundles, {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    let t = Instant::now();
    let report = importer.finish().await?;
    commit += t.elapsed();
    commits += usize::from(pending > 0);
    let elapsed = started.elapsed();

    let prepare = prepare_calls.iter().sum();
    prepare_calls.sort_unstable();
    Ok(ImportResult {
        elapsed,
        resources: report.resources(),
        bundles: report.bundles,
        parse,
        prepare,
        commit,
        commits,
        median_prepare_call: prepare_calls
            .get(prepare_calls.len() / 2)
            .copied()
            .unwrap_or_default(),
        db_bytes: 0,
        peak_rss: String::new(),
    })
}

/// Warns when the commit/prepare split looks wrong, i.e. the importer's group size changed.
fn check_attribution(import: &ImportResult) {
    let expected = import.resources.div_ceil(IMPORTER_GROUP_RESOURCES);
    let per_commit = import.commit / import.commits.max(1) as u32;
    if import.commits != expected || per_commit < import.median_prepare_call * 20 {
        eprintln!(
            "warning: the prepare/commit split may be off (commits attributed: {}, expected {expected}); \
             has import::GROUP_RESOURCES changed from {IMPORTER_GROUP_RESOURCES}? Headline figures are unaffected.",
            import.commits
        );
    }
}

/// Re-runs the CPU steps of the importer's prepare one by one on the first Bundles, to show
/// which dominates. Outside the timed import; reference resolution is the remainder.
fn cpu_sample(corpus: &Corpus) -> anyhow::Result<CpuSample> {
    let mut sample = CpuSample::default();
    for text in corpus.bundles.iter().take(CPU_SAMPLE_BUNDLES) {
        let t = Instant::now();
        let mut bundle: Value = serde_json::from_str(text)?;
        sample.parse += t.elapsed();
        sample.bundles += 1;
        let Some(Value::Array(entries)) = bundle.get_mut("entry").map(Value::take) else {
            bail!("corpus Bundle without entries");
        };
        // Undo the urn:uuid references (as the importer would resolve them) so that the
        // resources are what the importer validates and indexes.
        let mut resources = Vec::with_capacity(entries.len());
        let mut targets = HashMap::new();
        for mut entry in entries {
            let resource = entry["resource"].take();
            let (resource_type, id) = corpus::type_and_id(&resource)?;
            targets.insert(format!("urn:uuid:{id}"), format!("{resource_type}/{id}"));
            resources.push((resource_type, id, resource));
        }
        for (resource_type, id, mut resource) in resources {
            corpus::rewrite_references(&mut resource, &targets);
            let t = Instant::now();
            validate::resource(&resource_type, &resource)?;
            sample.validate += t.elapsed();
            let t = Instant::now();
            let prepared = Prepared::new(&resource_type, &id, 1, 0, resource)?;
            sample.prepared += t.elapsed();
            sample.resources += 1;
            sample.token_rows += prepared.index.tokens.len();
            sample.date_rows += prepared.index.dates.len();
            sample.content_bytes += prepared.content.len();
        }
    }
    Ok(sample)
}

/// A patient chosen for the search benchmark.
struct Searched {
    /// Its id in the store (assigned by the import).
    id: String,
    /// Its blood-pressure Observations.
    matches: usize,
}

/// The search benchmark on the imported store.
async fn search(
    store: &EmbeddedStore,
    facts: &[corpus::PatientFacts],
    config: &Config,
) -> anyhow::Result<SearchResult> {
    let patients = choose_patients(store, facts, config).await?;
    ensure!(
        !patients.is_empty(),
        "no imported patient has blood-pressure Observations"
    );
    let mean_matches =
        patients.iter().map(|p| p.matches).sum::<usize>() as f64 / patients.len() as f64;

    // Raw store: warm up (one untimed pass, so the measured passes see a warm page cache, as
    // a running server would), then time every query.
    for patient in &patients {
        check(
            &store.search(&bp_query(&patient.id, SEARCH_COUNT)?).await?,
            patient,
        )?;
    }
    let mut raw = Vec::with_capacity(patients.len() * config.rounds);
    let mut count_only = Vec::with_capacity(patients.len() * config.rounds);
    for _ in 0..config.rounds {
        for patient in &patients {
            let t = Instant::now();
            let page = store.search(&bp_query(&patient.id, SEARCH_COUNT)?).await?;
            raw.push(t.elapsed());
            check(&page, patient)?;
        }
        // `_count=0` makes the store run only its COUNT(*) (no page SELECT): the split of a search.
        for patient in &patients {
            let t = Instant::now();
            let page = store.search(&bp_query(&patient.id, 0)?).await?;
            count_only.push(t.elapsed());
            ensure!(
                page.total == patient.matches,
                "_count=0 search total is {}, expected {}",
                page.total,
                patient.matches
            );
        }
    }

    // Through the service, as a clinician. The token names an organization and a practitioner
    // so the consent check has actors to look up, as a real clinician token would.
    let issuer = TokenIssuer::generate("healthcloud-bench");
    let token = issuer
        .mint(
            Role::Clinician,
            TokenRequest {
                org: Some("gp-0001".into()),
                fhir_user: Some("Practitioner/bench-clinician".into()),
                ..TokenRequest::default()
            },
        )
        .map_err(anyhow::Error::msg)?;
    let context = AccessContext::user(issuer.verifier().verify(&token)?);
    let service = FhirService::new(store.clone(), PageLimits::default());
    for patient in &patients {
        check(
            &service
                .search(&context, bp_query(&patient.id, SEARCH_COUNT)?)
                .await?,
            patient,
        )?;
    }
    let mut through_service = Vec::with_capacity(patients.len() * config.rounds);
    for _ in 0..config.rounds {
        for patient in &patients {
            let t = Instant::now();
            let page = service
                .search(&context, bp_query(&patient.id, SEARCH_COUNT)?)
                .await?;
            through_service.push(t.elapsed());
            check(&page, patient)?;
        }
    }

    let audit_write = audit_probe(store, &context, &patients).await?;
    Ok(SearchResult {
        patients: patients.len(),
        mean_matches,
        raw: Latency::of(&raw),
        count_only: Latency::of(&count_only),
        service: Latency::of(&through_service),
        audit_write: Latency::of(&audit_write),
    })
}

/// `config.search_patients` patients with blood pressures, drawn with a seeded RNG, found in
/// the store by their CPR identifier (the import gave them new ids). Patients whose
/// identifier is not unique in the run are skipped: the lookup would be ambiguous.
async fn choose_patients(
    store: &EmbeddedStore,
    facts: &[corpus::PatientFacts],
    config: &Config,
) -> anyhow::Result<Vec<Searched>> {
    let mut candidates: Vec<(&str, usize)> = facts
        .iter()
        .filter(|f| f.bp_observations > 0)
        .filter_map(|f| Some((f.identifier.as_deref()?, f.bp_observations)))
        .collect();
    candidates.shuffle(&mut ChaCha8Rng::seed_from_u64(config.seed));
    let mut chosen = Vec::with_capacity(config.search_patients);
    for (identifier, matches) in candidates {
        if chosen.len() == config.search_patients {
            break;
        }
        let query = SearchQuery::parse(
            "Patient",
            &[
                ("identifier".into(), identifier.into()),
                ("_count".into(), "2".into()),
            ],
            PageLimits::default(),
        )?;
        let page = store.search(&query).await?;
        if let [patient] = page.resources.as_slice() {
            chosen.push(Searched {
                id: patient.id.clone(),
                matches,
            });
        }
    }
    if chosen.len() < config.search_patients {
        eprintln!(
            "note: only {} patients with blood pressures could be searched (asked for {})",
            chosen.len(),
            config.search_patients
        );
    }
    Ok(chosen)
}

/// "The patient's last `count` blood-pressure panels".
fn bp_query(patient: &str, count: usize) -> anyhow::Result<SearchQuery> {
    Ok(SearchQuery::parse(
        "Observation",
        &[
            ("patient".into(), patient.into()),
            ("code".into(), format!("{LOINC}|{BP_PANEL}")),
            ("_sort".into(), "-date".into()),
            ("_count".into(), count.to_string()),
        ],
        PageLimits::default(),
    )?)
}

/// A benchmark of wrong answers is worthless: every page must hold exactly what was imported.
fn check(page: &SearchPage, patient: &Searched) -> anyhow::Result<()> {
    let expected_page = patient.matches.min(SEARCH_COUNT);
    ensure!(
        page.total == patient.matches && page.resources.len() == expected_page,
        "search for Patient/{} returned {} of {} matches, expected {expected_page} of {}",
        patient.id,
        page.resources.len(),
        page.total,
        patient.matches
    );
    ensure!(
        page.resources
            .iter()
            .all(|r| r.patient_id.as_deref() == Some(patient.id.as_str())),
        "search for Patient/{} returned another patient's data",
        patient.id
    );
    Ok(())
}

/// Times what the service does after every search: build one AuditEvent and write it in its
/// own durable transaction. Reproduces `FhirService`'s audit path through public API.
async fn audit_probe(
    store: &EmbeddedStore,
    context: &AccessContext,
    patients: &[Searched],
) -> anyhow::Result<Vec<Duration>> {
    let mut samples = Vec::with_capacity(AUDIT_PROBE_WRITES);
    for (i, patient) in patients.iter().cycle().take(AUDIT_PROBE_WRITES).enumerate() {
        let t = Instant::now();
        let now = chrono::Utc::now().timestamp_millis();
        let record = AuditRecord {
            context,
            interaction: Interaction::Search,
            resource_type: "Observation",
            resource_id: None,
            query: Some("patient=…&code=…&_sort=-date"),
            patient: Some(&patient.id),
            denied: None,
        };
        let event = Prepared::new(
            "AuditEvent",
            &format!("bench-audit-{i}"),
            1,
            now,
            audit_event(&record, now),
        )?;
        let mut tx = store.database().begin_write().await?;
        store.write(&mut tx, std::slice::from_ref(&event)).await?;
        tx.commit().await?;
        samples.push(t.elapsed());
    }
    Ok(samples)
}

/// The sqlx URL of a SQLite file.
fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// Size of a SQLite database with its WAL.
fn file_size(path: &Path) -> u64 {
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    [path, wal.as_path()]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

/// Import throughput in resources per second.
pub fn import_rate(import: &ImportResult) -> f64 {
    per_second(import.resources, import.elapsed)
}

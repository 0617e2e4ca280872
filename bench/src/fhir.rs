//! The `fhir` benchmark: Bundle import throughput and patient-compartment search latency on
//! embedded SQLite, plus synthetic data generation throughput.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use chrono::NaiveDate;
use healthcloud_integration::FhirService;
use healthcloud_integration::audit::{AuditRecord, audit_event};
use healthcloud_integration::import::{Importer, load_synthetic};
use healthcloud_integration::policy::AccessContext;
use healthcloud_integration::query::{PageLimits, SearchQuery};
use healthcloud_integration::store::{EmbeddedStore, Prepared, SearchPage};
use healthcloud_integration::validate;
use healthcloud_platform::auth::{Role, TokenIssuer, TokenRequest};
use healthcloud_platform::scope::Interaction;
use healthcloud_synth::SynthOptions;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use crate::corpus::{self, BP_PANEL, Corpus, LOINC};
use crate::stats::{Latency, per_second};

/// Resources the importer commits per transaction. It mirrors the (private)
/// `import::GROUP_RESOURCES` of healthcloud-integration and is used ONLY to attribute the time
/// of the `Importer::add` calls that hand a full group to the store to "store wait" rather
/// than "prepare". If the importer's constant changes, that split (not the headline
/// throughput) goes wrong: keep the two equal.
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
    /// Time budget of each measured search path (warm-up gets a quarter more).
    pub search_budget: Duration,
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
    /// Time in `Importer::add` calls that did not hand over a group: resolve, validate, index,
    /// serialize.
    pub prepare: Duration,
    /// Time the import loop was blocked on the store: `add` calls that handed over a full
    /// group, and `finish`. With a sequential importer this is the whole write and commit; with
    /// one that commits in the background, the part of it that preparation did not hide.
    pub store_wait: Duration,
    /// Groups handed over.
    pub groups: usize,
    /// CPU time and disk traffic of the whole process during the import.
    pub usage: crate::machine::Usage,
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
    pub raw: Timed,
    /// `store.search` with `_count=0`: parse + COUNT only.
    pub count_only: Timed,
    /// `FhirService::search` as a clinician: policy, consent check, search, audit write.
    pub service: Timed,
    /// One AuditEvent written in its own transaction, as the service does after each search.
    pub audit_write: Timed,
}

/// Latencies of one measured path, and how many samples were planned (fewer were taken if
/// the time budget ran out).
#[derive(Debug)]
pub struct Timed {
    /// The samples taken.
    pub latency: Latency,
    /// The samples planned.
    pub planned: usize,
}

impl Timed {
    fn complete(latency: Latency) -> Timed {
        Timed {
            planned: latency.samples,
            latency,
        }
    }

    /// Whether the time budget cut the measurement short.
    pub fn truncated(&self) -> bool {
        self.latency.samples < self.planned
    }
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
    let store =
        EmbeddedStore::new(healthcloud_integration::open_database(&sqlite_url(&import_db)).await?);
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
        let store =
            EmbeddedStore::new(healthcloud_integration::open_database(&sqlite_url(&db)).await?);
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
    let mut prepare = Duration::ZERO;
    let mut store_wait = Duration::ZERO;
    let mut groups = 0;
    let mut pending = 0;
    let total = corpus.bundles.len();
    let mut importer = Importer::new(store);

    let usage = crate::machine::Usage::now();
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
        // The importer hands its group to the store inside `add` once the group is full; such
        // a call is almost all store time (its own Bundle is ~1/400 of the group's work).
        pending += added;
        if pending >= IMPORTER_GROUP_RESOURCES {
            store_wait += t2 - t1;
            groups += 1;
            pending = 0;
        } else {
            prepare += t2 - t1;
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
    store_wait += t.elapsed();
    groups += usize::from(pending > 0);
    let elapsed = started.elapsed();
    let usage = usage.since();

    Ok(ImportResult {
        elapsed,
        resources: report.resources(),
        bundles: report.bundles,
        parse,
        prepare,
        store_wait,
        groups,
        usage,
        db_bytes: 0,
        peak_rss: String::new(),
    })
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
    let started = Instant::now();
    let patients = choose_patients(store, facts, config).await?;
    ensure!(
        !patients.is_empty(),
        "no imported patient has blood-pressure Observations"
    );
    eprintln!(
        "  {} patients chosen in {:.1} s",
        patients.len(),
        started.elapsed().as_secs_f64()
    );
    let mean_matches =
        patients.iter().map(|p| p.matches).sum::<usize>() as f64 / patients.len() as f64;

    eprintln!("  raw store.search…");
    let raw = measure(
        &patients,
        config,
        SEARCH_COUNT,
        async |patient: &Searched| Ok(store.search(&bp_query(&patient.id, SEARCH_COUNT)?).await?),
    )
    .await?;
    // `_count=0` makes the store run only its COUNT(*), not the page SELECT: the split of a search.
    eprintln!("  store.search with _count=0…");
    let count_only = measure(&patients, config, 0, async |patient: &Searched| {
        Ok(store.search(&bp_query(&patient.id, 0)?).await?)
    })
    .await?;

    // Through the service, as a clinician. The token names an organization and a practitioner
    // so the consent check has actors to look up, as a real clinician token would.
    let issuer = TokenIssuer::generate("healthcloud-bench").with_audience(crate::bench_audience());
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
    eprintln!("  FhirService::search…");
    let through_service = measure(
        &patients,
        config,
        SEARCH_COUNT,
        async |patient: &Searched| {
            Ok(service
                .search(&context, bp_query(&patient.id, SEARCH_COUNT)?)
                .await?)
        },
    )
    .await?;

    let audit_write = audit_probe(store, &context, &patients).await?;
    Ok(SearchResult {
        patients: patients.len(),
        mean_matches,
        raw,
        count_only,
        service: through_service,
        audit_write: Timed::complete(Latency::of(&audit_write)),
    })
}

/// Warms up with one untimed pass over `patients` (so the timed passes see the warm page
/// cache a running server has), then times `search` for each patient, `config.rounds` times.
///
/// Both phases stop early at the time budget, so a slow store yields a report in bounded
/// time (with fewer samples, which the report states) instead of running for hours.
async fn measure(
    patients: &[Searched],
    config: &Config,
    count: usize,
    mut search: impl AsyncFnMut(&Searched) -> anyhow::Result<SearchPage>,
) -> anyhow::Result<Timed> {
    let warm_up_budget = config.search_budget / 4;
    let started = Instant::now();
    for patient in patients {
        if started.elapsed() > warm_up_budget {
            break;
        }
        check(&search(patient).await?, patient, count)?;
    }
    let planned = patients.len() * config.rounds;
    let mut samples = Vec::with_capacity(planned);
    let started = Instant::now();
    for patient in patients.iter().cycle().take(planned) {
        if started.elapsed() > config.search_budget {
            break;
        }
        let t = Instant::now();
        let page = search(patient).await?;
        samples.push(t.elapsed());
        check(&page, patient, count)?;
    }
    if samples.len() < planned {
        eprintln!(
            "    time budget of {:.0} s reached after {} of {planned} queries",
            config.search_budget.as_secs_f64(),
            samples.len()
        );
    }
    Ok(Timed {
        latency: Latency::of(&samples),
        planned,
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

/// A benchmark of wrong answers is worthless: every page must hold exactly what was imported
/// (`count` is the page size asked for).
fn check(page: &SearchPage, patient: &Searched, count: usize) -> anyhow::Result<()> {
    let expected_page = patient.matches.min(count);
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
            sources: &[],
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

//! The `federation` benchmark: a patient's blood-pressure search, side by side in one run,
//! against the embedded store alone, against each upstream source directly, and through
//! healthcloud fanning out to three sources.
//!
//! Every server is its own process on loopback, so each one's CPU time can be read from
//! /proc while the load generator (this process) runs:
//!
//! - `home`: a healthcloud integration node (this binary in node mode) holding the patients'
//!   records (with their CPR numbers) and their home measurements, with three sources;
//! - `home-alone`: a copy of the same database served with no sources: the embedded store
//!   alone;
//! - `gp`: the Medplum upstream of `tests/upstream` on `data/gp.json` (an independently
//!   written FHIR server; its in-memory engine scans every resource, so its data stays small);
//! - `hospital` and `municipality`: two more healthcloud nodes, each with its own SQLite
//!   database holding the same patients (by CPR number, under other ids) and many or fewer
//!   readings.
//!
//! Before anything is timed, the federated answer is paged through for every patient and must
//! hold every reading of every source and of the home store, and no outcome entry (a partial
//! answer): a fan-out that silently lost a source would otherwise look fast. Every timed answer
//! has its status checked and a sample has its matches counted.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use healthcloud_integration::api::{self, FhirConfig, FhirState};
use healthcloud_integration::federation::origin;
use healthcloud_integration::import::{Importer, load_synthetic};
use healthcloud_integration::query::PageLimits;
use healthcloud_integration::sources::SourceSettings;
use healthcloud_integration::store::EmbeddedStore;
use healthcloud_integration::upstream::{UpstreamAuth, UpstreamConfig};
use healthcloud_integration::{DEFAULT_MAX_BODY_BYTES, FhirService};
use healthcloud_platform::auth::{Role, TokenIssuer, TokenRequest, TokenVerifier, fhir_audience};
use healthcloud_synth::SynthOptions;
use serde_json::{Value, json};

use crate::corpus::{BP_PANEL, LOINC};
use crate::http::Connection;
use crate::server::{Ready, Server};
use crate::stats::{Latency, ms};

/// The issuer of every token of the run (each node trusts its public key).
const ISSUER: &str = "bench-federation";
/// The identifier system of CPR numbers, by which sources know a patient.
const CPR_SYSTEM: &str = "urn:oid:1.2.208.176.1.2";
/// Page size of every timed search: "the patient's last 100 blood pressures".
const PAGE: usize = 100;
/// Home measurements per patient in the home node.
const HOME_READINGS: usize = 30;
/// Hospital readings per patient: more than a healthcloud source serves in one page (200),
/// so federation follows its `next` link.
const HOSPITAL_READINGS: usize = 300;
/// Municipal care readings per patient.
const MUNICIPALITY_READINGS: usize = 40;
/// Synthetic patients besides the benchmark's own in each healthcloud node, so its searches
/// run over indexes holding other patients' data too.
const BACKGROUND_PATIENTS: usize = 200;
/// Timed passes per concurrency level: the targets take turns round by round, so drift in
/// the shared machine's load hits all of them alike.
const ROUNDS: usize = 4;
/// Every `CHECK_EVERY`-th answer of a connection (and its first) has its matches counted.
const CHECK_EVERY: usize = 10;
/// The goal: the federated p99 is at most the slowest source's p99 plus this.
const FEDERATION_OVERHEAD_GOAL: Duration = Duration::from_millis(5);

/// The benchmark's patients: their CPR numbers, as in `tests/upstream/data/gp.json`.
const PATIENTS: [Person; 2] = [
    Person {
        cpr: "0101701234",
        family: "Jensen",
        given: "Anne",
        gender: "female",
        birth_date: "1970-01-01",
    },
    Person {
        cpr: "0202802345",
        family: "Hansen",
        given: "Peter",
        gender: "male",
        birth_date: "1980-02-02",
    },
];

/// One of the benchmark's (fictitious) patients.
struct Person {
    cpr: &'static str,
    family: &'static str,
    given: &'static str,
    gender: &'static str,
    birth_date: &'static str,
}

/// How one run is configured.
#[derive(Debug, Clone)]
pub struct Config {
    /// Timed requests per target and concurrency level.
    pub requests: usize,
    /// Untimed requests per target before the timed ones.
    pub warm_up: usize,
    /// Concurrent connections of the second level (the first is one, sequential).
    pub concurrency: usize,
    /// Where the databases and token files are made.
    pub data_dir: PathBuf,
}

/// What is searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetId {
    /// The home node with no sources.
    HomeAlone,
    /// The Medplum upstream, directly.
    Gp,
    /// The hospital's healthcloud node, directly.
    Hospital,
    /// The municipality's healthcloud node, directly.
    Municipality,
    /// The three sources asked at once, directly: what the fan-out waits for when the
    /// sources share this machine's cores, without healthcloud.
    SourcesAtOnce,
    /// The home node, fanning out to the three sources.
    Federated,
}

impl TargetId {
    /// How the report names it.
    pub fn name(self) -> &'static str {
        match self {
            TargetId::HomeAlone => "embedded store alone (home node, no sources)",
            TargetId::Gp => "gp: Medplum upstream, directly",
            TargetId::Hospital => "hospital: healthcloud node, directly",
            TargetId::Municipality => "municipality: healthcloud node, directly",
            TargetId::SourcesAtOnce => "the 3 sources at once, directly",
            TargetId::Federated => "federated: home node over 3 sources",
        }
    }

    /// Whether it is one of the sources the federated search reads (the embedded store
    /// included).
    fn is_source(self) -> bool {
        !matches!(self, TargetId::SourcesAtOnce | TargetId::Federated)
    }
}

/// One target at one concurrency level.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Which.
    pub id: TargetId,
    /// Its search's matches, per patient.
    pub matches: Vec<usize>,
    /// The latencies of its timed requests.
    pub latency: Latency,
    /// CPU time (user + system) of the server process it was sent to, over its timed
    /// requests.
    pub server_cpu: Duration,
    /// For the federated search: CPU time of the three sources' processes over its timed
    /// requests.
    pub sources_cpu: Duration,
}

impl Measured {
    fn per_request(&self, cpu: Duration) -> Duration {
        cpu / u32::try_from(self.latency.samples.max(1)).unwrap_or(u32::MAX)
    }

    /// Server CPU per request.
    pub fn server_cpu_per_request(&self) -> Duration {
        self.per_request(self.server_cpu)
    }
}

/// Every target at one concurrency level.
#[derive(Debug, Clone)]
pub struct Level {
    /// Concurrent connections per target.
    pub clients: usize,
    /// The targets: the embedded store alone, the three upstreams, the federated search.
    pub targets: Vec<Measured>,
}

impl Level {
    fn get(&self, id: TargetId) -> &Measured {
        self.targets
            .iter()
            .find(|m| m.id == id)
            .expect("every target is measured at every level")
    }

    /// The source (the embedded store included) with the highest p99.
    pub fn slowest_source(&self) -> &Measured {
        self.targets
            .iter()
            .filter(|m| m.id.is_source())
            .max_by_key(|m| m.latency.p99)
            .expect("there are sources")
    }

    /// Federated p99 minus the slowest source's p99 (negative when faster), in milliseconds.
    pub fn overhead_ms(&self) -> f64 {
        self.get(TargetId::Federated).latency.p99.as_secs_f64() * 1e3
            - self.slowest_source().latency.p99.as_secs_f64() * 1e3
    }

    /// Whether the federated p99 is within the goal.
    pub fn met(&self) -> bool {
        self.get(TargetId::Federated).latency.p99
            <= self.slowest_source().latency.p99 + FEDERATION_OVERHEAD_GOAL
    }
}

/// Everything a run measured.
#[derive(Debug)]
pub struct Results {
    /// Timed requests per target and level.
    pub requests: usize,
    /// Untimed requests per target first.
    pub warm_up: usize,
    /// Each concurrency level.
    pub levels: Vec<Level>,
    /// What the verification found in the federated answer, per origin: `(origin, resources)`
    /// summed over the patients.
    pub verified: Vec<(String, usize)>,
    /// /proc/loadavg when the measuring started and when it ended (the machine is shared).
    pub load_average: (String, String),
}

/// The hidden options with which the benchmark starts its healthcloud nodes.
#[derive(Debug, Clone, clap::Args)]
pub struct NodeArgs {
    /// Serve a healthcloud integration node instead of measuring (the benchmark starts its
    /// nodes this way).
    #[arg(long, hide = true)]
    pub serve_node: bool,
    /// Where to listen; the bound address is printed as `listening on ADDR`.
    #[arg(long, hide = true, default_value = "127.0.0.1:0")]
    pub addr: SocketAddr,
    /// The node's SQLite database.
    #[arg(long, hide = true)]
    pub db: Option<PathBuf>,
    /// The token issuer's public key (PEM).
    #[arg(long, hide = true)]
    pub issuer_pem: Option<PathBuf>,
    /// A source, as `NAME=FHIR_BASE` or `NAME=FHIR_BASE,TOKEN_FILE` (repeatable).
    #[arg(long = "source", hide = true)]
    pub sources: Vec<String>,
}

/// Serves a healthcloud integration node (`/fhir/r4`, as `serve integration` does) over
/// `--db`, with `--source`s, until it is killed. Its public URL is the address it listens on,
/// so tokens name `http://ADDR/fhir/r4` as their audience.
pub async fn serve_node(args: &NodeArgs) -> anyhow::Result<()> {
    let db = args.db.as_deref().context("--db is required")?;
    let pem = args
        .issuer_pem
        .as_deref()
        .context("--issuer-pem is required")?;
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    let addr = listener.local_addr()?;
    let database = healthcloud_integration::open_database(&sqlite_url(db)).await?;
    let service = FhirService::new(EmbeddedStore::new(database), PageLimits::default());
    for spec in &args.sources {
        service.sources().add(source_settings(spec)?)?;
    }
    let audience = fhir_audience(&format!("http://{addr}"));
    let state = FhirState {
        service,
        verifier: TokenVerifier::from_public_pem(ISSUER, &std::fs::read(pem)?)?,
        config: Arc::new(FhirConfig {
            base_url: audience.clone(),
            audience,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            cors_origins: Vec::new(),
            authorization: None,
            subscription_endpoints: Default::default(),
        }),
    };
    let router = api::mount(state);
    println!("listening on {addr}");
    // As `healthcloud serve` serves.
    axum::serve(healthcloud_platform::http::without_delay(listener), router).await?;
    Ok(())
}

/// A source of `--source NAME=FHIR_BASE[,TOKEN_FILE]`, with the product's defaults otherwise.
fn source_settings(spec: &str) -> anyhow::Result<SourceSettings> {
    let (name, rest) = spec
        .split_once('=')
        .with_context(|| format!("--source {spec}: expected NAME=FHIR_BASE[,TOKEN_FILE]"))?;
    let (base, token) = match rest.split_once(',') {
        Some((base, token)) => (base, Some(token)),
        None => (rest, None),
    };
    let mut upstream = UpstreamConfig::new(name, base.parse()?);
    if let Some(token) = token {
        upstream.auth = UpstreamAuth::BearerFile(token.into());
    }
    Ok(SourceSettings {
        upstream,
        organization: None,
        types: None,
    })
}

/// A request target: a server, one search path per patient, and what each answer holds.
struct Target<'a> {
    id: TargetId,
    /// What one request is: each part's search, sent at once, done when all are answered.
    parts: Vec<Part<'a>>,
    /// The servers that answer the sources' part of this target's requests.
    source_servers: Vec<&'a Server>,
}

impl<'a> Target<'a> {
    /// A target of one server.
    fn one(id: TargetId, part: Part<'a>, source_servers: Vec<&'a Server>) -> Self {
        Target {
            id,
            parts: vec![part],
            source_servers,
        }
    }

    /// Its servers (not its sources').
    fn servers(&self) -> Vec<&'a Server> {
        self.parts.iter().map(|part| part.server).collect()
    }

    /// Per patient: the matches of all its parts.
    fn matches(&self) -> Vec<usize> {
        (0..PATIENTS.len())
            .map(|n| self.parts.iter().map(|part| part.searches[n].1).sum())
            .collect()
    }
}

/// One server's share of a target's requests.
struct Part<'a> {
    server: &'a Server,
    bearer: Option<String>,
    /// Per patient: the search and its matches.
    searches: Vec<(String, usize)>,
}

/// A healthcloud node's share of a target: the blood pressures of the patients it holds as
/// `<prefix>-patient-<n>`, `readings` each, asked with `token`.
fn node_part<'a>(server: &'a Server, prefix: &str, readings: usize, token: String) -> Part<'a> {
    Part {
        server,
        bearer: Some(token),
        searches: (1..=PATIENTS.len())
            .map(|n| {
                (
                    bp_search(&format!("{prefix}-patient-{n}"), "/fhir/r4"),
                    readings,
                )
            })
            .collect(),
    }
}

/// The CPU time the processes of `servers` have used.
fn cpu(servers: &[&Server]) -> anyhow::Result<Duration> {
    servers.iter().map(|s| s.cpu()).sum()
}

/// Runs the benchmark in `config.data_dir` (which the caller removes).
pub async fn run(config: &Config) -> anyhow::Result<Results> {
    let root = crate::repository_root();
    let dir = &config.data_dir;
    let medplum_dir = root.join("tests/upstream");
    let gp_data = medplum_dir.join("data/gp.json");
    let gp_readings = gp_readings(&gp_data)?;

    eprintln!("preparing the databases…");
    let home_db = dir.join("home.db");
    let hospital_db = dir.join("hospital.db");
    let municipality_db = dir.join("municipality.db");
    prepare_node(&home_db, "home", HOME_READINGS, 1).await?;
    prepare_node(&hospital_db, "hospital", HOSPITAL_READINGS, 2).await?;
    prepare_node(&municipality_db, "municipality", MUNICIPALITY_READINGS, 3).await?;
    let home_alone_db = dir.join("home-alone.db");
    std::fs::copy(&home_db, &home_alone_db).with_context(|| {
        format!(
            "cannot copy {} to {}",
            home_db.display(),
            home_alone_db.display()
        )
    })?;

    let issuer = TokenIssuer::generate(ISSUER);
    let issuer_pem = dir.join("issuer.pem");
    std::fs::write(&issuer_pem, issuer.public_pem())?;
    let exe = std::env::current_exe()?;
    let node = async |name: &'static str, db: &Path, sources: &[String]| {
        let mut args: Vec<String> = vec![
            "federation".into(),
            "--serve-node".into(),
            "--db".into(),
            db.display().to_string(),
            "--issuer-pem".into(),
            issuer_pem.display().to_string(),
        ];
        for source in sources {
            args.extend(["--source".into(), source.clone()]);
        }
        Server::start(name, &exe, &args, Ready::Stdout).await
    };
    // What the home node (a region's integration cloud) is to the other nodes: a clinician's
    // system of that organization, with a token each of them issued for it.
    let token_for = |server: &Server, request: TokenRequest| {
        issuer
            .mint(
                Role::Clinician,
                TokenRequest {
                    audience: vec![node_base(server.addr)],
                    ..request
                },
            )
            .map_err(anyhow::Error::msg)
    };
    let integration_cloud = || TokenRequest {
        org: Some("region-integration-cloud".into()),
        ..TokenRequest::default()
    };
    let clinician = || TokenRequest {
        org: Some("bench-clinic".into()),
        fhir_user: Some("Practitioner/bench-clinician".into()),
        ..TokenRequest::default()
    };

    eprintln!("starting the servers…");
    let hospital = node("hospital", &hospital_db, &[]).await?;
    let municipality = node("municipality", &municipality_db, &[]).await?;
    install_medplum(&medplum_dir)?;
    let gp_args: Vec<String> = vec![
        "--experimental-websocket".into(),
        medplum_dir.join("server.mjs").display().to_string(),
        "--port".into(),
        "0".into(),
        "--name".into(),
        "gp".into(),
        "--data".into(),
        gp_data.display().to_string(),
    ];
    let gp = Server::start("gp", Path::new("node"), &gp_args, Ready::Medplum).await?;
    let mut sources = vec![format!("gp=http://{}/fhir/R4", gp.addr)];
    for (name, server) in [("hospital", &hospital), ("municipality", &municipality)] {
        let token_file = dir.join(format!("{name}.token"));
        std::fs::write(&token_file, token_for(server, integration_cloud())?)?;
        sources.push(format!(
            "{name}={},{}",
            node_base(server.addr),
            token_file.display()
        ));
    }
    let home = node("home", &home_db, &sources).await?;
    let home_alone = node("home-alone", &home_alone_db, &[]).await?;

    let federated_matches =
        |n: usize| HOME_READINGS + gp_readings[n] + HOSPITAL_READINGS + MUNICIPALITY_READINGS;
    let gp_part = || Part {
        server: &gp,
        bearer: None,
        searches: (1..=PATIENTS.len())
            .map(|n| {
                (
                    bp_search(&format!("gp-patient-{n}"), "/fhir/R4"),
                    gp_readings[n - 1],
                )
            })
            .collect(),
    };
    let hospital_part = || {
        let token = token_for(&hospital, integration_cloud())?;
        anyhow::Ok(node_part(&hospital, "hospital", HOSPITAL_READINGS, token))
    };
    let municipality_part = || {
        let token = token_for(&municipality, integration_cloud())?;
        anyhow::Ok(node_part(
            &municipality,
            "municipality",
            MUNICIPALITY_READINGS,
            token,
        ))
    };
    let targets = vec![
        Target::one(
            TargetId::HomeAlone,
            node_part(
                &home_alone,
                "home",
                HOME_READINGS,
                token_for(&home_alone, clinician())?,
            ),
            Vec::new(),
        ),
        Target::one(TargetId::Gp, gp_part(), Vec::new()),
        Target::one(TargetId::Hospital, hospital_part()?, Vec::new()),
        Target::one(TargetId::Municipality, municipality_part()?, Vec::new()),
        Target {
            id: TargetId::SourcesAtOnce,
            parts: vec![gp_part(), hospital_part()?, municipality_part()?],
            source_servers: Vec::new(),
        },
        Target::one(
            TargetId::Federated,
            Part {
                server: &home,
                bearer: Some(token_for(&home, clinician())?),
                searches: (1..=PATIENTS.len())
                    .map(|n| {
                        (
                            bp_search(&format!("home-patient-{n}"), "/fhir/r4"),
                            federated_matches(n - 1),
                        )
                    })
                    .collect(),
            },
            vec![&gp, &hospital, &municipality],
        ),
    ];

    eprintln!("checking every answer, and the federated one source by source…");
    for target in &targets {
        check_once(target).await?;
    }
    let federated = targets.last().expect("the federated target is last");
    let verified = verify_federated(federated, &gp_readings).await?;

    eprintln!("warming up ({} requests per target)…", config.warm_up);
    for target in &targets {
        requests(target, 1, config.warm_up)
            .await
            .with_context(|| format!("warming up {}", target.id.name()))?;
    }

    let load_before = crate::machine::load_average();
    let mut levels = Vec::new();
    let mut clients_per_level = vec![1];
    if config.concurrency > 1 {
        clients_per_level.push(config.concurrency);
    }
    for clients in clients_per_level {
        eprintln!(
            "timing {} requests per target with {clients} connection(s)…",
            config.requests
        );
        levels.push(measure(&targets, clients, config.requests).await?);
    }
    let load_after = crate::machine::load_average();

    for server in [home, home_alone, hospital, municipality, gp] {
        server.stop().await;
    }
    Ok(Results {
        requests: config.requests,
        warm_up: config.warm_up,
        levels,
        verified,
        load_average: (load_before, load_after),
    })
}

/// The targets in turn, [`ROUNDS`] times, `requests` per target in all, over `clients`
/// connections each; the CPU of each target's servers is read around each of its turns.
async fn measure(targets: &[Target<'_>], clients: usize, requests: usize) -> anyhow::Result<Level> {
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); targets.len()];
    let mut server_cpu = vec![Duration::ZERO; targets.len()];
    let mut sources_cpu = vec![Duration::ZERO; targets.len()];
    for round in 0..ROUNDS {
        // This round's share: the remainder goes to the first rounds.
        let share = requests / ROUNDS + usize::from(round < requests % ROUNDS);
        for (i, target) in targets.iter().enumerate() {
            let server_before = cpu(&target.servers())?;
            let sources_before = cpu(&target.source_servers)?;
            let latencies = self::requests(target, clients, share)
                .await
                .with_context(|| format!("round {} of {}", round + 1, target.id.name()))?;
            server_cpu[i] += cpu(&target.servers())?.saturating_sub(server_before);
            sources_cpu[i] += cpu(&target.source_servers)?.saturating_sub(sources_before);
            samples[i].extend(latencies);
        }
    }
    Ok(Level {
        clients,
        targets: targets
            .iter()
            .enumerate()
            .map(|(i, target)| Measured {
                id: target.id,
                matches: target.matches(),
                latency: Latency::of(&samples[i]),
                server_cpu: server_cpu[i],
                sources_cpu: sources_cpu[i],
            })
            .collect(),
    })
}

/// Sends `count` searches to `target` over `clients` keep-alive connections (per part), the
/// patients taking turns, each client sending its next as soon as its last was answered:
/// every latency, every status checked, a sample of answers' matches counted.
async fn requests(
    target: &Target<'_>,
    clients: usize,
    count: usize,
) -> anyhow::Result<Vec<Duration>> {
    let clients = clients.clamp(1, count.max(1));
    let mut tasks = Vec::with_capacity(clients);
    for client in 0..clients {
        let mut connections = Vec::with_capacity(target.parts.len());
        for part in &target.parts {
            let connection = Connection::open(part.server.addr, part.bearer.as_deref()).await?;
            connections.push((connection, part.searches.clone()));
        }
        let name = target.id.name();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for (sent, n) in (client..count).step_by(clients).enumerate() {
                let started = Instant::now();
                let answers = futures_util::future::try_join_all(connections.iter_mut().map(
                    async |(connection, searches)| {
                        let (path, matches) = &searches[n % searches.len()];
                        let body = connection.get_ok(path).await?;
                        anyhow::Ok((body, path.clone(), *matches))
                    },
                ))
                .await?;
                latencies.push(started.elapsed());
                if sent % CHECK_EVERY == 0 {
                    for (body, path, matches) in answers {
                        check_page(&body, matches).with_context(|| format!("{name}: {path}"))?;
                    }
                }
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(count);
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok(latencies)
}

/// One search per patient and part, each answer's matches counted.
async fn check_once(target: &Target<'_>) -> anyhow::Result<()> {
    for part in &target.parts {
        let mut connection = Connection::open(part.server.addr, part.bearer.as_deref()).await?;
        for (path, matches) in &part.searches {
            let body = connection.get_ok(path).await?;
            check_page(&body, *matches).with_context(|| format!("{}: {path}", target.id.name()))?;
        }
    }
    Ok(())
}

/// A correct first page of a search with `matches` matches: a searchset Bundle with
/// `min(matches, PAGE)` match entries, no outcome entry (a partial answer) and, when it says
/// a total, `matches`.
fn check_page(body: &[u8], matches: usize) -> anyhow::Result<()> {
    let bundle: Value = serde_json::from_slice(body).context("the answer is not JSON")?;
    ensure!(
        bundle["resourceType"] == "Bundle",
        "the answer is not a Bundle"
    );
    let entries = bundle["entry"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if let Some(outcome) = entries.iter().find(|e| e["search"]["mode"] == "outcome") {
        bail!("a partial answer: {}", outcome["resource"]);
    }
    let found = entries
        .iter()
        .filter(|e| e["search"]["mode"] == "match")
        .count();
    ensure!(
        found == matches.min(PAGE),
        "{found} matches on the page, expected {}",
        matches.min(PAGE)
    );
    if let Some(total) = bundle["total"].as_u64() {
        ensure!(
            total as usize == matches,
            "total {total}, expected {matches}"
        );
    }
    Ok(())
}

/// Pages through the federated search of every patient: every page complete (no outcome
/// entry), and in all, exactly the readings of the home store and of each source, each
/// source's named as its (`meta.source`, id `<source>.<id>`), all in the patient's
/// compartment. Returns the resources found per origin.
async fn verify_federated(
    target: &Target<'_>,
    gp_readings: &[usize],
) -> anyhow::Result<Vec<(String, usize)>> {
    let part = &target.parts[0];
    let mut connection = Connection::open(part.server.addr, part.bearer.as_deref()).await?;
    let expected = |n: usize| {
        [
            ("home".to_owned(), HOME_READINGS),
            (origin("gp"), gp_readings[n]),
            (origin("hospital"), HOSPITAL_READINGS),
            (origin("municipality"), MUNICIPALITY_READINGS),
        ]
    };
    let mut found_all: Vec<(String, usize)> = expected(0).map(|(o, _)| (o, 0)).to_vec();
    for n in 0..PATIENTS.len() {
        let patient = format!("Patient/home-patient-{}", n + 1);
        let mut path = format!(
            "/fhir/r4/Observation?patient={patient}&code={LOINC}|{BP_PANEL}&_sort=-date&_count=200"
        );
        let mut found: Vec<(String, usize)> = expected(n).map(|(o, _)| (o, 0)).to_vec();
        let mut ids = std::collections::BTreeSet::new();
        loop {
            let bundle: Value = serde_json::from_slice(&connection.get_ok(&path).await?)?;
            for entry in bundle["entry"].as_array().into_iter().flatten() {
                let resource = &entry["resource"];
                ensure!(
                    entry["search"]["mode"] == "match",
                    "the federated search of {patient} is partial: {resource}"
                );
                ensure!(
                    resource["subject"]["reference"] == patient.as_str(),
                    "the federated search of {patient} returned another patient's reading: {resource}"
                );
                let id = resource["id"].as_str().context("a resource without id")?;
                ensure!(ids.insert(id.to_owned()), "{id} came back twice");
                let from = match id.split_once('.') {
                    Some((source, _)) => {
                        let named = origin(source);
                        ensure!(
                            resource["meta"]["source"] == named.as_str(),
                            "{id} does not name its source {named} in meta.source"
                        );
                        named
                    }
                    None => "home".to_owned(),
                };
                match found.iter_mut().find(|(o, _)| *o == from) {
                    Some((_, count)) => *count += 1,
                    None => bail!("{id} comes from an unexpected origin {from}"),
                }
            }
            let next = bundle["link"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|link| link["relation"] == "next")
                .and_then(|link| link["url"].as_str());
            match next {
                Some(url) => {
                    path = url
                        .split_once(&part.server.addr.to_string())
                        .map(|(_, path)| path.to_owned())
                        .with_context(|| format!("a next link to another server: {url}"))?;
                }
                None => break,
            }
        }
        for ((origin, expected), (_, got)) in expected(n).iter().zip(&found) {
            ensure!(
                got == expected,
                "the federated search of {patient} returned {got} readings from {origin}, \
                 expected {expected}: the fan-out lost data, and timing it would measure the \
                 wrong thing"
            );
        }
        for ((_, all), (_, got)) in found_all.iter_mut().zip(&found) {
            *all += got;
        }
    }
    Ok(found_all)
}

/// "The patient's last [`PAGE`] blood pressures" on a FHIR base path.
fn bp_search(patient: &str, base_path: &str) -> String {
    format!(
        "{base_path}/Observation?patient=Patient/{patient}&code={LOINC}|{BP_PANEL}&_sort=-date&_count={PAGE}"
    )
}

/// The FHIR base URL of a healthcloud node listening on `addr` (also its tokens' audience).
fn node_base(addr: SocketAddr) -> String {
    fhir_audience(&format!("http://{addr}"))
}

/// The blood pressures of each benchmark patient in the Medplum data (`gp-patient-<n>`).
fn gp_readings(data: &Path) -> anyhow::Result<Vec<usize>> {
    let bundle: Value = serde_json::from_str(
        &std::fs::read_to_string(data)
            .with_context(|| format!("cannot read {}", data.display()))?,
    )?;
    let resources: Vec<&Value> = bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|entry| &entry["resource"])
        .collect();
    let mut counts = Vec::new();
    for (n, person) in PATIENTS.iter().enumerate() {
        let patient = format!("gp-patient-{}", n + 1);
        let record = resources
            .iter()
            .find(|r| r["resourceType"] == "Patient" && r["id"] == patient.as_str())
            .with_context(|| format!("{} has no Patient/{patient}", data.display()))?;
        ensure!(
            record["identifier"][0]["value"] == person.cpr,
            "Patient/{patient} in {} is not CPR {}",
            data.display(),
            person.cpr
        );
        counts.push(
            resources
                .iter()
                .filter(|r| {
                    r["resourceType"] == "Observation"
                        && r["subject"]["reference"] == format!("Patient/{patient}").as_str()
                        && r["code"]["coding"][0]["code"] == BP_PANEL
                })
                .count(),
        );
    }
    ensure!(
        counts.iter().all(|&c| c > 0),
        "{} has no blood pressures for a benchmark patient",
        data.display()
    );
    Ok(counts)
}

/// The Medplum upstream's npm packages, installed from the lockfile when missing.
fn install_medplum(dir: &Path) -> anyhow::Result<()> {
    if dir.join("node_modules/@medplum/fhir-router").exists() {
        return Ok(());
    }
    eprintln!("npm ci in {} …", dir.display());
    let status = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(dir)
        .status()
        .context("cannot run npm: Node.js 20 and npm are needed for the Medplum upstream")?;
    ensure!(status.success(), "npm ci in {} failed", dir.display());
    Ok(())
}

/// A new database at `db` for node `prefix`: [`BACKGROUND_PATIENTS`] synthetic patients, and
/// the benchmark's patients as `Patient/<prefix>-patient-<n>` with their CPR numbers and
/// `readings` blood pressures each; checkpointed and closed, so it can be copied and served.
async fn prepare_node(db: &Path, prefix: &str, readings: usize, seed: u64) -> anyhow::Result<()> {
    let store = EmbeddedStore::new(healthcloud_integration::open_database(&sqlite_url(db)).await?);
    load_synthetic(
        &store,
        SynthOptions {
            patients: BACKGROUND_PATIENTS,
            seed,
            today: crate::SYNTH_TODAY.parse()?,
        },
        &|_| {},
    )
    .await?;
    let mut importer = Importer::new(&store);
    importer.add(readings_bundle(prefix, readings)).await?;
    importer.finish().await?;
    let pool = store.database().pool();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(pool)
        .await?;
    pool.close().await;
    Ok(())
}

/// A transaction Bundle: each benchmark patient as `Patient/<prefix>-patient-<n>` and
/// `readings` blood-pressure panels of theirs, spread over the ten months before the
/// synthetic data's "today" (each node's at other minutes, so no two sources tie).
fn readings_bundle(prefix: &str, readings: usize) -> Value {
    let mut entries = Vec::new();
    let newest = chrono::NaiveDate::from_ymd_opt(2026, 10, 31)
        .expect("a date")
        .and_hms_opt(8, 0, 0)
        .expect("a time")
        .and_utc()
        - chrono::TimeDelta::minutes(prefix.len() as i64);
    let step = chrono::TimeDelta::days(300) / i32::try_from(readings.max(1)).expect("small");
    for (n, person) in PATIENTS.iter().enumerate() {
        let id = format!("{prefix}-patient-{}", n + 1);
        entries.push(json!({
            "resource": {
                "resourceType": "Patient",
                "id": id,
                "identifier": [{"system": CPR_SYSTEM, "value": person.cpr}],
                "name": [{"use": "official", "family": person.family, "given": [person.given]}],
                "gender": person.gender,
                "birthDate": person.birth_date
            },
            "request": {"method": "PUT", "url": format!("Patient/{id}")}
        }));
        for i in 0..readings {
            let when = newest - step * i32::try_from(i).expect("small");
            // Plausible values that vary, without a random generator.
            let systolic = 118 + (i * 7 + n * 3) % 40;
            let diastolic = 72 + (i * 5 + n) % 22;
            let quantity = |value: usize| json!({"value": value, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"});
            entries.push(json!({
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "category": [{"coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs"
                    }]}],
                    "code": {"coding": [{
                        "system": LOINC,
                        "code": BP_PANEL,
                        "display": "Blood pressure panel with all children optional"
                    }]},
                    "subject": {"reference": format!("Patient/{id}")},
                    "effectiveDateTime": when.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                    "component": [
                        {
                            "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                            "valueQuantity": quantity(systolic)
                        },
                        {
                            "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
                            "valueQuantity": quantity(diastolic)
                        }
                    ]
                },
                "request": {"method": "POST", "url": "Observation"}
            }));
        }
    }
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

/// The sqlx URL of a SQLite file.
fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// The results as a plain-text report.
pub fn table(results: &Results) -> String {
    let mut out = String::new();
    let line = |out: &mut String, text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(
        &mut out,
        format!(
            "federation: Observation?patient=…&code={LOINC}|{BP_PANEL}&_sort=-date&_count={PAGE} \
             for {} patients in turn, as a clinician",
            PATIENTS.len()
        ),
    );
    line(
        &mut out,
        format!(
            "{} timed requests per target and concurrency level, in {ROUNDS} rounds with the \
             targets taking turns, after {} untimed; load average {} at the start, {} at the end",
            results.requests, results.warm_up, results.load_average.0, results.load_average.1
        ),
    );
    line(
        &mut out,
        format!(
            "verified before timing, every page of the federated search: {} (no partial answer)",
            results
                .verified
                .iter()
                .map(|(origin, n)| format!("{n} from {origin}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    line(&mut out, String::new());
    line(
        &mut out,
        format!(
            "{:<46} {:>8} {:>7} {:>9} {:>9} {:>9} {:>9} {:>13} {:>13}",
            "target",
            "matches",
            "clients",
            "p50",
            "p90",
            "p99",
            "max",
            "server CPU",
            "sources' CPU"
        ),
    );
    for level in &results.levels {
        for m in &level.targets {
            let matches = m
                .matches
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join("/");
            let sources = if m.id == TargetId::Federated {
                ms(m.per_request(m.sources_cpu))
            } else {
                String::new()
            };
            line(
                &mut out,
                format!(
                    "{:<46} {:>8} {:>7} {:>9} {:>9} {:>9} {:>9} {:>13} {:>13}",
                    m.id.name(),
                    matches,
                    level.clients,
                    ms(m.latency.p50),
                    ms(m.latency.p90),
                    ms(m.latency.p99),
                    ms(m.latency.max),
                    ms(m.server_cpu_per_request()),
                    sources
                ),
            );
        }
    }
    line(&mut out, String::new());
    for level in &results.levels {
        let federated = level.get(TargetId::Federated);
        let slowest = level.slowest_source();
        line(
            &mut out,
            format!(
                "goal, {} client(s): federated p99 {} ≤ slowest source's p99 ({}: {}) + 5 ms: {} ({:+.2} ms)",
                level.clients,
                ms(federated.latency.p99),
                slowest.id.name().split(':').next().unwrap_or_default(),
                ms(slowest.latency.p99),
                if level.met() { "met" } else { "NOT met" },
                level.overhead_ms()
            ),
        );
    }
    for level in &results.levels {
        let federated = level.get(TargetId::Federated).latency.p99;
        let at_once = level.get(TargetId::SourcesAtOnce).latency.p99;
        line(
            &mut out,
            format!(
                "beside it, {} client(s): the 3 sources asked at once directly (no healthcloud, \
                 the sources sharing this machine's cores as in the fan-out) p99 {}; federated \
                 {:+.2} ms above that",
                level.clients,
                ms(at_once),
                federated.as_secs_f64() * 1e3 - at_once.as_secs_f64() * 1e3
            ),
        );
    }
    for level in &results.levels {
        let federated = level.get(TargetId::Federated);
        line(
            &mut out,
            format!(
                "healthcloud CPU per federated search, {} client(s): {} in the home node's \
                 process (the three sources spent {} answering it)",
                level.clients,
                ms(federated.server_cpu_per_request()),
                ms(federated.per_request(federated.sources_cpu))
            ),
        );
    }
    let resolution = Duration::from_millis(10 * ROUNDS as u64)
        / u32::try_from(results.requests.max(1)).unwrap_or(u32::MAX);
    line(
        &mut out,
        format!(
            "\nserver CPU: user + system time of the server process (all threads) from \
             /proc/<pid>/stat over the target's timed requests, per request (±{} from 10 ms \
             ticks). For the federated search that is the home node alone — healthcloud's own \
             cost: policy, consent, the patient index, the home store, three upstream calls, \
             merging and the audit write; sources' CPU is what the three sources' processes \
             spent answering it. The load generator runs in the benchmark's own process. \
             Federation asks each source that applies the whole search and sorts by date for the \
             first matches up to the end of the page (`Observation?patient=<id there>&code=…\
             &_sort=-date&_count=100`) with its count of all, and merges them with the home \
             store's.",
            ms(resolution)
        ),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(matches: usize, total: usize, outcome: bool) -> Vec<u8> {
        let mut entry: Vec<Value> = (0..matches)
            .map(|i| json!({"resource": {"resourceType": "Observation", "id": format!("o{i}")}, "search": {"mode": "match"}}))
            .collect();
        if outcome {
            entry.push(json!({"resource": {"resourceType": "OperationOutcome"}, "search": {"mode": "outcome"}}));
        }
        json!({"resourceType": "Bundle", "type": "searchset", "total": total, "entry": entry})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn a_complete_first_page_passes() {
        check_page(&page(PAGE, 273, false), 273).unwrap();
        check_page(&page(3, 3, false), 3).unwrap();
    }

    #[test]
    fn a_partial_answer_fails_the_benchmark() {
        let error = check_page(&page(PAGE, 273, true), 273).unwrap_err();
        assert!(error.to_string().contains("partial answer"), "{error}");
    }

    #[test]
    fn an_answer_missing_a_sources_readings_fails_the_benchmark() {
        // The page is full either way; the total gives the lost source away.
        assert!(check_page(&page(PAGE, 233, false), 273).is_err());
        assert!(check_page(&page(30, 30, false), 33).is_err());
    }

    #[test]
    fn a_source_is_name_base_and_optional_token_file() {
        let plain = source_settings("gp=http://127.0.0.1:9/fhir/R4").unwrap();
        assert_eq!(plain.upstream.name, "gp");
        assert!(matches!(plain.upstream.auth, UpstreamAuth::None));
        let dir = std::env::temp_dir();
        let token = dir.join(format!("bench-federation-test-{}", std::process::id()));
        let spec = format!("hospital=http://127.0.0.1:9/fhir/r4,{}", token.display());
        let with_token = source_settings(&spec).unwrap();
        assert!(
            matches!(with_token.upstream.auth, UpstreamAuth::BearerFile(ref path) if *path == token)
        );
        assert!(source_settings("no-base").is_err());
    }
}

//! The upstream sources an integration cloud reads through, beside its embedded store: each an
//! organization's own FHIR server (a GP system, a municipal care record, another region's
//! healthcloud), with what it declared it serves and how it has been answering.
//!
//! [`Sources`] asks every source in parallel for its part of a patient's compartment
//! ([`federation`](crate::federation)) and reports, source by source, what came back or what
//! went wrong. Each source's part runs within that source's deadline, whatever it takes
//! (capabilities, identity, search). A source that failed [`SkipPolicy::after_failures`]
//! times in a row is not asked for a while, then tried again; while skipped, its part of every
//! answer says so. Health (last success, latency, recent failures) is kept in memory for
//! operators.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::error::FhirError;
use crate::federation::{
    self, CompartmentPatient, Dropped, FederatedSource, Renamed, SourceAnswer,
};
use crate::patient_index::{CPR_SYSTEM, IdentityError, PatientIndex, Remembered};
use crate::query::SearchQuery;
use crate::store::Incomplete;
use crate::upstream::{Upstream, UpstreamCapabilities, UpstreamConfig, UpstreamError};

/// How many recent failures of a source are kept for operators.
const RECENT_FAILURES: usize = 10;

/// A source as configured.
#[derive(Debug, Clone)]
pub struct SourceSettings {
    /// How it is reached (name, base URL, authentication, deadline, caps).
    pub upstream: UpstreamConfig,
    /// The organization that owns it, e.g. `Organization/gp-clinic`.
    pub organization: Option<String>,
    /// The resource types asked of it; `None` for every type its CapabilityStatement
    /// declares. Narrows, never widens, what it declares.
    pub types: Option<BTreeSet<String>>,
}

/// When a failing source is left alone.
#[derive(Debug, Clone, Copy)]
pub struct SkipPolicy {
    /// Failures in a row after which the source is skipped.
    pub after_failures: u32,
    /// How long it is first skipped; each further failure doubles it, up to `longest`.
    pub first: Duration,
    /// The longest skip.
    pub longest: Duration,
}

impl Default for SkipPolicy {
    fn default() -> Self {
        SkipPolicy {
            after_failures: 3,
            first: Duration::from_secs(30),
            longest: Duration::from_secs(300),
        }
    }
}

/// The registered sources.
#[derive(Debug, Clone)]
pub struct Sources {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registered: RwLock<BTreeMap<String, Arc<Registered>>>,
    index: PatientIndex,
}

#[derive(Debug)]
struct Registered {
    settings: SourceSettings,
    upstream: Upstream,
    skip: SkipPolicy,
    /// What it declared, narrowed by `settings.types`, as last read.
    capabilities: Mutex<Option<Arc<UpstreamCapabilities>>>,
    health: Mutex<Health>,
}

#[derive(Debug, Default)]
struct Health {
    last_success: Option<DateTime<Utc>>,
    latency: Option<Duration>,
    recent_failures: VecDeque<Failure>,
    failures_in_a_row: u32,
    skipped_until: Option<Instant>,
}

/// One failure of a source, for operators.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Failure {
    /// When (RFC 3339, UTC).
    pub at: String,
    /// What happened.
    pub error: String,
}

/// A source's configuration and health, as operators see it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceStatus {
    /// Its name.
    pub name: String,
    /// The organization that owns it.
    pub organization: Option<String>,
    /// Its FHIR base URL.
    pub base: String,
    /// The types it is asked for, once its CapabilityStatement was read.
    pub types: Option<Vec<String>>,
    /// When it last answered (RFC 3339, UTC).
    pub last_success: Option<String>,
    /// How long its last successful part of an answer took, in milliseconds.
    pub latency_ms: Option<u64>,
    /// Its failures in a row now.
    pub failures_in_a_row: u32,
    /// Seconds until it is asked again, while it is skipped.
    pub skipped_for_secs: Option<u64>,
    /// Its latest failures, newest last.
    pub recent_failures: Vec<Failure>,
}

/// One source's part of a federated search.
#[derive(Debug)]
pub struct SourceReport {
    /// The source's name.
    pub source: String,
    /// What came of asking it.
    pub outcome: SourceOutcome,
}

/// What came of asking a source.
#[derive(Debug)]
pub enum SourceOutcome {
    /// It was not asked: it does not serve the type by patient, or does not hold the patient.
    NotAsked,
    /// It answered.
    Answered(SourceAnswer),
    /// It failed: the OperationOutcome issue code, and a message naming it and what
    /// happened, never its own error body.
    Failed(&'static str, String),
    /// It failed too often lately and was not asked; the message says until when.
    Skipped(String),
}

impl SourceReport {
    /// What the caller's answer lacks because of this source, if anything.
    pub fn incomplete(&self) -> Option<Incomplete> {
        let (code, diagnostics) = match &self.outcome {
            SourceOutcome::NotAsked => return None,
            SourceOutcome::Answered(answer) if !answer.truncated => return None,
            SourceOutcome::Answered(answer) => (
                "too-costly",
                format!(
                    "source '{}' holds more matches than the {} read: only those are in this answer; narrow the search",
                    self.source,
                    answer.returned + answer.dropped.len()
                ),
            ),
            SourceOutcome::Failed(code, error) => (
                *code,
                format!("{error}: its data is missing from this answer"),
            ),
            SourceOutcome::Skipped(why) => (
                "transient",
                format!("{why}: its data is missing from this answer"),
            ),
        };
        Some(Incomplete {
            source: self.source.clone(),
            code,
            diagnostics,
        })
    }

    /// What the source returned, in words for the audit trail: `3 resources`, `failed: …`.
    pub fn summary(&self) -> String {
        match &self.outcome {
            SourceOutcome::NotAsked => "not asked".into(),
            SourceOutcome::Answered(answer) => {
                let mut text = format!("returned {}", answer.returned);
                if !answer.dropped.is_empty() {
                    text.push_str(&format!(", {} withheld", answer.dropped.len()));
                }
                if answer.truncated {
                    text.push_str(", holding more than were read");
                }
                text
            }
            SourceOutcome::Failed(_, error) => format!("failed: {error}"),
            SourceOutcome::Skipped(why) => format!("skipped: {why}"),
        }
    }

    /// The resources it sent that were withheld.
    pub fn dropped(&self) -> &[Dropped] {
        match &self.outcome {
            SourceOutcome::Answered(answer) => &answer.dropped,
            _ => &[],
        }
    }
}

/// Why a source could not be read from.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// No source has this name.
    #[error("no source named '{0}'")]
    Unknown(String),
    /// The source failed or is skipped; the message names it.
    #[error("{0}")]
    Unavailable(String),
    /// Healthcloud's own patient index or home records failed.
    #[error("{0}")]
    Home(String),
}

impl Sources {
    /// No sources yet; patients are matched through the index `index`.
    pub fn new(index: PatientIndex) -> Self {
        Sources {
            inner: Arc::new(Inner {
                registered: RwLock::default(),
                index,
            }),
        }
    }

    /// Adds (or replaces) a source. Nothing is sent to it yet.
    pub fn add(&self, settings: SourceSettings) -> anyhow::Result<()> {
        let name = settings.upstream.name.clone();
        anyhow::ensure!(
            is_source_name(&name),
            "'{name}' cannot name a source: use lowercase letters, digits and '-' (it prefixes \
             the ids of the source's resources, e.g. {name}.<id>)"
        );
        let upstream = Upstream::open(settings.upstream.clone())?;
        let registered = Arc::new(Registered {
            settings,
            upstream,
            skip: SkipPolicy::default(),
            capabilities: Mutex::default(),
            health: Mutex::default(),
        });
        self.write().insert(name, registered);
        Ok(())
    }

    /// Removes a source; whether there was one.
    pub fn remove(&self, name: &str) -> bool {
        self.write().remove(name).is_some()
    }

    /// Whether no source is registered.
    pub fn is_empty(&self) -> bool {
        self.registered().is_empty()
    }

    /// The sources' names, in order.
    pub fn names(&self) -> Vec<String> {
        self.registered().keys().cloned().collect()
    }

    /// Whether a source is called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.registered().contains_key(name)
    }

    /// Every source's configuration and health, by name.
    pub fn status(&self) -> Vec<SourceStatus> {
        self.all().iter().map(|source| source.status()).collect()
    }

    /// Reads source `name`'s CapabilityStatement now: its status afterwards, or why not. An
    /// answer counts as a success in its health (an operator's check shows it is back).
    pub async fn check(&self, name: &str) -> Result<SourceStatus, SourceError> {
        let source = self.get(name)?;
        let started = Instant::now();
        source
            .refresh_capabilities()
            .await
            .map_err(|error| SourceError::Unavailable(error.to_string()))?;
        source.succeeded(started.elapsed());
        Ok(source.status())
    }

    /// Reads every source's CapabilityStatement again, every `every`, for as long as the
    /// registry lives. A source that fails is noted in its health; its last statement stays.
    pub fn refresh_every(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let registry = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(inner) = registry.upgrade() else {
                    return;
                };
                let sources: Vec<_> = inner
                    .registered
                    .read()
                    .expect("poisoned")
                    .values()
                    .cloned()
                    .collect();
                drop(inner);
                for source in sources {
                    if let Err(error) = source.refresh_capabilities().await {
                        tracing::warn!(source = source.name(), %error, "source capabilities not refreshed");
                    }
                }
            }
        })
    }

    /// What the patient index holds about `patient`, for [`search`](Self::search).
    pub async fn remembered(&self, patient: &str) -> Result<Remembered, sqlx::Error> {
        self.inner.index.remembered(patient).await
    }

    /// Every source's part of `query` in `patient`'s compartment, asked in parallel. The
    /// caller has checked the patient's consent: this asks every source.
    pub async fn search(
        &self,
        query: &SearchQuery,
        patient: CompartmentPatient<'_>,
    ) -> Vec<SourceReport> {
        // Each source's part runs as its own task: checking and renaming what a source sent
        // takes CPU, which the other sources' parts need not wait for.
        let remembered = Arc::new(patient.remembered.clone());
        let parts: Vec<_> = self
            .all()
            .into_iter()
            .map(|source| {
                let registry = self.clone();
                let query = query.clone();
                let (id, cpr) = (patient.id.to_owned(), patient.cpr.to_owned());
                let remembered = remembered.clone();
                let name = source.name().to_owned();
                let task = tokio::spawn(async move {
                    let patient = CompartmentPatient {
                        id: &id,
                        cpr: &cpr,
                        remembered: &remembered,
                    };
                    registry.search_one(&source, &query, patient).await
                });
                (name, task)
            })
            .collect();
        let mut reports = Vec::with_capacity(parts.len());
        for (source, task) in parts {
            let outcome = task.await.unwrap_or_else(|error| {
                tracing::error!(source, %error, "a source's part of a search failed");
                SourceOutcome::Failed(
                    "exception",
                    format!("source '{source}' could not be asked: healthcloud failed"),
                )
            });
            reports.push(SourceReport { source, outcome });
        }
        reports
    }

    async fn search_one(
        &self,
        source: &Registered,
        query: &SearchQuery,
        patient: CompartmentPatient<'_>,
    ) -> SourceOutcome {
        if let Some(why) = source.skipped() {
            return SourceOutcome::Skipped(why);
        }
        let started = Instant::now();
        let part = async {
            let capabilities = source.capabilities().await?;
            let federated = FederatedSource {
                upstream: source.upstream.clone(),
                capabilities,
            };
            federation::search_source(&federated, &self.inner.index, query, patient).await
        };
        let result = match tokio::time::timeout(source.deadline(), part).await {
            Ok(result) => result,
            Err(_) => Err(IdentityError::Upstream(UpstreamError::Deadline {
                source_name: source.name().to_owned(),
                deadline: source.deadline(),
            })),
        };
        match result {
            Ok(answer) => {
                source.succeeded(started.elapsed());
                match answer.searched {
                    true => SourceOutcome::Answered(answer),
                    false => SourceOutcome::NotAsked,
                }
            }
            Err(error @ (IdentityError::Database(_) | IdentityError::Home(_))) => {
                // Healthcloud's own failure, not the source's.
                tracing::error!(%error, "patient index");
                SourceOutcome::Failed(
                    "exception",
                    format!(
                        "source '{}' could not be asked: healthcloud's patient index failed",
                        source.name()
                    ),
                )
            }
            Err(IdentityError::Upstream(error)) => {
                let message = error.to_string();
                // A search value the caller chose can make a source refuse the search; that
                // must not get the source skipped for everyone else.
                if !refused_request(&error) {
                    source.failed(&message);
                }
                SourceOutcome::Failed(issue_code(&error), message)
            }
            Err(error @ IdentityError::Ambiguous { .. }) => {
                // The source answered; its data about this patient stays unused until it
                // merges the records.
                source.succeeded(started.elapsed());
                SourceOutcome::Failed("multiple-matches", error.to_string())
            }
        }
    }

    /// Resource `resource_type`/`id` from source `name`, renamed into healthcloud's namespace;
    /// `None` when the source has none. A source that fails or is skipped is unavailable.
    pub async fn read(
        &self,
        name: &str,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<Renamed>, SourceError> {
        let source = self.get(name)?;
        if let Some(why) = source.skipped() {
            return Err(SourceError::Unavailable(why));
        }
        let started = Instant::now();
        let read = async {
            // A source is read by id for the types it is asked for in searches only (what it
            // declares, narrowed by configuration): one configured for some types, say what
            // its organization agreed to share, is never asked for another.
            if !source
                .capabilities()
                .await?
                .types
                .contains_key(resource_type)
            {
                return Ok(None);
            }
            federation::read_source(&source.upstream, &self.inner.index, resource_type, id).await
        };
        let result = tokio::time::timeout(source.deadline(), read)
            .await
            .unwrap_or_else(|_| {
                Err(IdentityError::Upstream(UpstreamError::Deadline {
                    source_name: name.to_owned(),
                    deadline: source.deadline(),
                }))
            });
        match result {
            Ok(resource) => {
                source.succeeded(started.elapsed());
                Ok(resource)
            }
            // The source refused to read this id (400 for an id it finds malformed, say): it
            // holds nothing by that id for the caller, and it is not failing. Counted as a
            // failure, any caller could get the source skipped for everyone by reading such
            // ids a few times.
            Err(IdentityError::Upstream(error)) if refused_request(&error) => Ok(None),
            Err(IdentityError::Upstream(error)) => {
                let message = error.to_string();
                source.failed(&message);
                Err(SourceError::Unavailable(message))
            }
            Err(error) => Err(SourceError::Home(error.to_string())),
        }
    }

    /// The source named `name`.
    fn get(&self, name: &str) -> Result<Arc<Registered>, SourceError> {
        self.registered()
            .get(name)
            .cloned()
            .ok_or_else(|| SourceError::Unknown(name.to_owned()))
    }

    fn all(&self) -> Vec<Arc<Registered>> {
        self.registered().values().cloned().collect()
    }

    fn registered(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Registered>>> {
        self.inner
            .registered
            .read()
            .expect("no panics while registering")
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<Registered>>> {
        self.inner
            .registered
            .write()
            .expect("no panics while registering")
    }
}

/// Whether `name` can name a source: lowercase letters, digits and `-`, starting with a
/// letter, at most 32 characters. No `.`, which separates it from the source's own id.
pub fn is_source_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The source and the id there of a resource id served through healthcloud, `<source>.<id>`.
pub fn split_source_id(id: &str) -> Option<(&str, &str)> {
    id.split_once('.')
        .filter(|(source, rest)| is_source_name(source) && !rest.is_empty())
}

/// Refuses data filed in the compartment of a source's patient (`Patient/<source>.<id>`, as
/// searches name them): data written here belongs in the healthcloud patient's own record,
/// where their consent, log and confinement hold.
pub fn check_home_compartment(resource_type: &str, patient: Option<&str>) -> Result<(), FhirError> {
    let Some((source, _)) = patient.and_then(split_source_id) else {
        return Ok(());
    };
    let element = crate::params::type_def(resource_type)
        .and_then(|type_def| type_def.param("patient"))
        .map_or("subject", |param| param.paths[0]);
    Err(FhirError::invalid(
        format!("{resource_type}.{element}"),
        format!(
            "Patient/{} is a patient record at source '{source}': reference the patient by \
             their healthcloud id (Patient?identifier={CPR_SYSTEM}|<CPR number> finds it)",
            patient.unwrap_or_default()
        ),
    ))
}

impl Registered {
    fn name(&self) -> &str {
        self.upstream.name()
    }

    fn deadline(&self) -> Duration {
        self.settings.upstream.deadline
    }

    /// What it serves: as last read, else read now.
    async fn capabilities(&self) -> Result<Arc<UpstreamCapabilities>, UpstreamError> {
        if let Some(capabilities) = &*self.capabilities.lock().expect("poisoned") {
            return Ok(capabilities.clone());
        }
        self.refresh_capabilities().await
    }

    async fn refresh_capabilities(&self) -> Result<Arc<UpstreamCapabilities>, UpstreamError> {
        let mut declared = match self.upstream.capabilities().await {
            Ok(declared) => declared,
            Err(error) => {
                self.failed(&error.to_string());
                return Err(error);
            }
        };
        if let Some(types) = &self.settings.types {
            declared
                .types
                .retain(|resource_type, _| types.contains(resource_type));
        }
        let declared = Arc::new(declared);
        *self.capabilities.lock().expect("poisoned") = Some(declared.clone());
        Ok(declared)
    }

    /// Why it is not asked now, while it is skipped.
    fn skipped(&self) -> Option<String> {
        let health = self.health.lock().expect("poisoned");
        let until = health.skipped_until?;
        let left = until.checked_duration_since(Instant::now())?;
        Some(format!(
            "source '{}' failed {} times in a row and is not asked for another {} s",
            self.name(),
            health.failures_in_a_row,
            left.as_secs().max(1)
        ))
    }

    fn succeeded(&self, latency: Duration) {
        let mut health = self.health.lock().expect("poisoned");
        health.last_success = Some(Utc::now());
        health.latency = Some(latency);
        health.failures_in_a_row = 0;
        health.skipped_until = None;
    }

    fn failed(&self, error: &str) {
        let policy = &self.skip;
        let mut health = self.health.lock().expect("poisoned");
        health.failures_in_a_row += 1;
        if health.recent_failures.len() == RECENT_FAILURES {
            health.recent_failures.pop_front();
        }
        health.recent_failures.push_back(Failure {
            at: rfc3339(Utc::now()),
            error: error.to_owned(),
        });
        if let Some(beyond) = health.failures_in_a_row.checked_sub(policy.after_failures) {
            let skip = policy
                .first
                .saturating_mul(1 << beyond.min(16))
                .min(policy.longest);
            health.skipped_until = Some(Instant::now() + skip);
        }
    }

    fn status(&self) -> SourceStatus {
        let health = self.health.lock().expect("poisoned");
        let capabilities = self.capabilities.lock().expect("poisoned");
        SourceStatus {
            name: self.name().to_owned(),
            organization: self.settings.organization.clone(),
            base: self.upstream.base().to_string(),
            types: capabilities
                .as_ref()
                .map(|declared| declared.types.keys().cloned().collect()),
            last_success: health.last_success.map(rfc3339),
            latency_ms: health.latency.map(|l| l.as_millis() as u64),
            failures_in_a_row: health.failures_in_a_row,
            skipped_for_secs: health
                .skipped_until
                .and_then(|until| until.checked_duration_since(Instant::now()))
                .map(|left| left.as_secs().max(1)),
            recent_failures: health.recent_failures.iter().cloned().collect(),
        }
    }
}

/// Whether `error` is the source refusing one request (a 4xx status other than for
/// credentials, a request timeout or too many requests), which the request's caller can
/// cause, rather than the source failing.
fn refused_request(error: &UpstreamError) -> bool {
    use reqwest::StatusCode;
    matches!(error, UpstreamError::Status { status, .. }
        if status.is_client_error()
            && *status != StatusCode::REQUEST_TIMEOUT
            && *status != StatusCode::TOO_MANY_REQUESTS)
}

/// The OperationOutcome issue code for a source's failure.
fn issue_code(error: &UpstreamError) -> &'static str {
    match error {
        UpstreamError::Deadline { .. } => "timeout",
        UpstreamError::Unreachable { .. } | UpstreamError::Status { .. } => "transient",
        UpstreamError::Unauthorized { .. }
        | UpstreamError::CredentialsRefused { .. }
        | UpstreamError::TokenEndpoint { .. } => "security",
        UpstreamError::TooLarge { .. } => "too-costly",
        UpstreamError::NotFhir { .. } => "structure",
    }
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

//! Bulk Data export (FHIR Bulk Data Access IG 2.0, `$export`) for backend services: a kick-off
//! checked against the caller's grant, a job that walks each type it may search in pages of
//! id order and writes NDJSON files to disk (the resources in memory bounded by a page),
//! status with progress, a manifest, the files to their requester only, and cancelling. A job
//! stops, and its files go, when the client's install changes (grant, version, uninstall). The data is read as the caller's own searches would read it (grant, scope
//! restrictions, consent opt-outs naming the service or its purpose of use, which the region
//! must have granted), and each patient whose data is in the files gets one audit record of
//! the export, for that purpose, in their log.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use healthcloud_platform::auth::Role;
use healthcloud_platform::scope::Interaction;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use super::{FhirService, Pending};
use crate::date;
use crate::deidentify::{self, Deidentifier};
use crate::error::FhirError;
use crate::federation::CompartmentPatient;
use crate::params::{TYPES, TypeDef};
use crate::policy::{AccessContext, authorize};
use crate::query::{ConsentExclusion, Constraints, MAX_VALUES, SearchQuery};
use crate::sources::SourceOutcome;

/// Resources read from the store at a time (and held in memory at most).
const PAGE: usize = 1000;

/// How long a finished export's files are kept for download.
pub const EXPIRES_AFTER: Duration = Duration::from_secs(60 * 60);

/// Exports one client may have at once, running or finished and kept; another is refused
/// (409) until one is deleted or expires.
pub const MAX_PER_CLIENT: usize = 3;

/// How often finished exports are looked at for expiry.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Search parameters a `_typeFilter` may not carry: they shape or page an answer rather than
/// select.
const NOT_FILTERS: &[&str] = &[
    "_count",
    "_offset",
    "_sort",
    "_include",
    "_revinclude",
    "_summary",
    "_elements",
    "_total",
    "_contained",
    "_containedType",
    "_format",
    "_pretty",
];

/// `_typeFilter` searches one export takes.
const MAX_TYPE_FILTERS: usize = 10;

/// The parameters a `_typeFilter` of a de-identified export may use: codes and statuses,
/// which name no one.
const DEIDENTIFIED_FILTERS: &[&str] = &[
    "category",
    "code",
    "status",
    "clinical-status",
    "verification-status",
    "intent",
    "class",
    "type",
    "vaccine-code",
];

/// Sources' withheld resources one export keeps for the security log.
const MAX_WITHHELD: usize = 1000;

/// Patients whose audit records of an export are written in one transaction.
const AUDIT_BATCH: usize = 1000;

/// What an export covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportLevel {
    /// `[base]/$export`: every type the caller may search.
    System,
    /// `[base]/Patient/$export`: every patient's compartment.
    Patient,
    /// `[base]/Group/[id]/$export`: the compartments of the Group's members.
    Group(String),
}

/// Whether the client's install is still the one that started an export (same grant,
/// version and install): asked before each page and before its status or files are served.
#[derive(Clone)]
pub struct InstallCheck(pub Arc<dyn Fn() -> bool + Send + Sync>);

impl std::fmt::Debug for InstallCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InstallCheck")
    }
}

/// A kick-off request, its parameters checked.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    /// Its level.
    pub level: ExportLevel,
    /// `_type`: the types asked for (all that apply when `None`).
    pub types: Option<Vec<String>>,
    /// `_since`: only resources changed at or after this instant.
    pub since: Option<String>,
    /// `_deidentify=true`: the files de-identified (see [`crate::deidentify`]).
    pub deidentify: bool,
    /// `_typeFilter`: searches that select what of a type is exported (a resource any of its
    /// type's filters matches); a type without one is exported whole.
    pub type_filters: Vec<(String, Vec<(String, String)>)>,
    /// The kick-off URL, as the manifest's `request` names it.
    pub url: String,
    /// Whether the client's install is still the one that asked.
    pub installed: InstallCheck,
}

impl ExportRequest {
    /// The request as its audit records show it: `$export` (its level) and its parameters.
    fn audit_query(&self) -> String {
        let level = match &self.level {
            ExportLevel::System => "system".to_owned(),
            ExportLevel::Patient => "Patient".to_owned(),
            ExportLevel::Group(id) => format!("Group/{id}"),
        };
        let mut pairs = vec![("$export".to_owned(), level)];
        if let Some(types) = &self.types {
            pairs.push(("_type".into(), types.join(",")));
        }
        if let Some(since) = &self.since {
            pairs.push(("_since".into(), since.clone()));
        }
        if !self.type_filters.is_empty() {
            let filters: Vec<String> = (self.type_filters.iter())
                .map(|(t, params)| format!("{t}?{}", super::encode(params)))
                .collect();
            pairs.push(("_typeFilter".into(), filters.join(",")));
        }
        if self.deidentify {
            pairs.push(("_deidentify".into(), "true".into()));
        }
        super::encode(&pairs)
    }
}

/// One NDJSON file of a finished export.
#[derive(Debug, Clone)]
pub struct ExportFile {
    /// The type of its resources.
    pub resource_type: &'static str,
    /// Its file name, as the download URL names it.
    pub name: String,
    /// How many resources it holds.
    pub count: usize,
}

/// Where an export stands.
#[derive(Debug, Clone)]
pub enum ExportStatus {
    /// Still running: what it has done so far.
    InProgress(String),
    /// Done: its files, and the time the data was read as of.
    Complete {
        /// When the export started (`transactionTime`).
        transaction_time: String,
        /// The kick-off URL.
        request: String,
        /// Its files, one per type with data.
        files: Vec<ExportFile>,
        /// OperationOutcomes of what could not be read (a source down, a patient's data
        /// there past what one export takes): the manifest's `error`.
        errors: Vec<ExportFile>,
    },
    /// It failed: why.
    Failed(String),
}

/// The exports of this server: each job, its files in a directory of its own under one
/// private temporary directory (deleted with it), and who may see them.
#[derive(Clone, Default)]
pub struct Exports {
    inner: Arc<Mutex<ExportsInner>>,
}

impl std::fmt::Debug for Exports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let jobs = self.inner.lock().map(|inner| inner.jobs.len()).unwrap_or(0);
        f.debug_struct("Exports").field("jobs", &jobs).finish()
    }
}

#[derive(Default)]
struct ExportsInner {
    dir: Option<Arc<tempfile::TempDir>>,
    jobs: HashMap<String, Arc<Job>>,
}

struct Job {
    id: String,
    /// The client that asked (issuer and client id): the only one that sees it.
    owner: String,
    dir: PathBuf,
    installed: InstallCheck,
    /// Set under the state's lock; read without it between pages.
    cancelled: AtomicBool,
    state: Mutex<JobState>,
}

/// Why an export stopped when its client's install changed.
const INSTALL_CHANGED: &str = "the service's install changed (its grant, its version, or it was uninstalled) after the export started: start it again";

struct JobState {
    status: ExportStatus,
    /// When it stopped running (files expire [`EXPIRES_AFTER`] later).
    finished: Option<Instant>,
}

impl Exports {
    /// Forgets the jobs that finished more than [`EXPIRES_AFTER`] ago and deletes their files.
    fn expire(&self) {
        let expired: Vec<Arc<Job>> = {
            let mut inner = self.inner.lock().expect("exports lock");
            let expired: Vec<String> = (inner.jobs.values())
                .filter(|job| {
                    let state = job.state.lock().expect("job lock");
                    state.finished.is_some_and(|at| {
                        at.elapsed() > EXPIRES_AFTER || job.cancelled.load(Ordering::SeqCst)
                    })
                })
                .map(|job| job.id.clone())
                .collect();
            expired
                .iter()
                .filter_map(|id| inner.jobs.remove(id))
                .collect()
        };
        for job in expired {
            let _ = std::fs::remove_dir_all(&job.dir);
        }
    }

    /// The job `id` if `owner` started it and has not cancelled it (another client's is as
    /// unknown as none). One whose client's install changed since is stopped and its files
    /// deleted.
    fn owned(&self, id: &str, owner: &str) -> Result<Arc<Job>, FhirError> {
        self.expire();
        let job = {
            let inner = self.inner.lock().expect("exports lock");
            (inner.jobs.get(id))
                .filter(|job| job.owner == owner && !job.cancelled.load(Ordering::SeqCst))
                .cloned()
                .ok_or_else(|| FhirError::NotFound(format!("no export {id} of this client")))?
        };
        if !(job.installed.0)() {
            job.withdraw();
        }
        Ok(job)
    }

    fn start(&self, owner: &str, installed: InstallCheck) -> Result<Arc<Job>, FhirError> {
        self.expire();
        let mut inner = self.inner.lock().expect("exports lock");
        // Running or kept, or cancelled and still stopping: each holds disk.
        let held = inner.jobs.values().filter(|job| job.owner == owner).count();
        if held >= MAX_PER_CLIENT {
            return Err(FhirError::Conflict(format!(
                "this client has {held} exports (running, or finished and kept for an hour): delete one it has downloaded (DELETE its status URL) before starting another"
            )));
        }
        let root = match &inner.dir {
            Some(dir) => dir.clone(),
            None => {
                let dir = Arc::new(
                    tempfile::Builder::new()
                        .prefix("healthcloud-exports-")
                        .tempdir()
                        .map_err(|e| FhirError::Internal(e.into()))?,
                );
                inner.dir = Some(dir.clone());
                // Files expire whether or not anyone asks about exports again.
                let exports = Arc::downgrade(&self.inner);
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(SWEEP_EVERY).await;
                        match exports.upgrade() {
                            Some(inner) => Exports { inner }.expire(),
                            None => break,
                        }
                    }
                });
                dir
            }
        };
        let id = crate::import::new_id();
        let dir = root.path().join(&id);
        std::fs::create_dir(&dir).map_err(|e| FhirError::Internal(e.into()))?;
        let job = Arc::new(Job {
            id: id.clone(),
            owner: owner.to_owned(),
            dir,
            installed,
            cancelled: AtomicBool::new(false),
            state: Mutex::new(JobState {
                status: ExportStatus::InProgress("starting".into()),
                finished: None,
            }),
        });
        inner.jobs.insert(id, job.clone());
        Ok(job)
    }
}

impl Job {
    /// Progress of a running export (a stopped one keeps its end).
    fn progress(&self, progress: String) {
        let mut state = self.state.lock().expect("job lock");
        if state.finished.is_none() {
            state.status = ExportStatus::InProgress(progress);
        }
    }

    /// Ends it with `status` (once): its files are deleted unless it is complete and not
    /// cancelled. Under the state's lock, so a cancel and the end cannot pass each other.
    fn stop(&self, status: ExportStatus) {
        let mut state = self.state.lock().expect("job lock");
        if state.finished.is_some() {
            return;
        }
        let kept = matches!(status, ExportStatus::Complete { .. })
            && !self.cancelled.load(Ordering::SeqCst);
        if !kept {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        state.finished = Some(Instant::now());
        state.status = status;
    }

    /// Ends it, finished or not, because its client's install changed: its files are deleted
    /// and its status says why.
    fn withdraw(&self) {
        let mut state = self.state.lock().expect("job lock");
        let _ = std::fs::remove_dir_all(&self.dir);
        state.finished.get_or_insert_with(Instant::now);
        state.status = ExportStatus::Failed(INSTALL_CHANGED.into());
    }

    /// Cancels it: a finished one's files are deleted now, a running one's when it stops.
    fn cancel(&self) {
        let state = self.state.lock().expect("job lock");
        self.cancelled.store(true, Ordering::SeqCst);
        if state.finished.is_some() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Who an export belongs to: the backend service of the token (its issuer and client id);
/// `None` for any other token, which has no exports.
fn owner(context: &AccessContext) -> Option<String> {
    let claims = &context.principal.claims;
    let client = claims.client_id.as_deref()?;
    (claims.role == Role::System && context.app.is_some())
        .then(|| format!("{} {client}", claims.iss))
}

/// The owner of the caller's exports, or a 404 for a caller that has none.
fn owner_or_none(context: &AccessContext, id: &str) -> Result<String, FhirError> {
    owner(context).ok_or_else(|| FhirError::NotFound(format!("no export {id} of this client")))
}

impl FhirService {
    /// Starts an export for `context` (a backend service): the types are checked against its
    /// grant at once (a type asked for that it may not search refuses the whole request), the
    /// job runs in the background. Returns the job's id. The kick-off is audited.
    pub async fn export_start(
        &self,
        context: &AccessContext,
        request: ExportRequest,
    ) -> Result<String, FhirError> {
        self.admit(context)?;
        let mut audit = Pending::new(context, Interaction::Search, "Patient");
        audit.query = Some(request.audit_query());
        let result = self.export_kickoff(context, request).await;
        self.finish(audit, result).await
    }

    async fn export_kickoff(
        &self,
        context: &AccessContext,
        request: ExportRequest,
    ) -> Result<String, FhirError> {
        let Some(owner) = owner(context) else {
            return Err(FhirError::Forbidden(
                "Bulk Data export is for backend services: get a system token with system/ scopes from healthcloud's authorization server (client credentials)".into(),
            ));
        };
        if context.purpose.is_none() {
            return Err(FhirError::Forbidden(
                "the region granted this service no purpose of use, and an export is for one: the region admin grants purpose:research, purpose:quality or purpose:treatment with the install".into(),
            ));
        }
        // Real write times would undo the moved dates.
        if request.deidentify && request.since.is_some() {
            return Err(FhirError::BadRequest(
                "_since cannot be combined with _deidentify: it selects by real write times, which would tell the moved dates".into(),
            ));
        }
        let compartments = request.level != ExportLevel::System;
        let applies = |t: &TypeDef| {
            (!compartments || t.in_patient_compartment())
                && (!request.deidentify || deidentify::exported(t))
        };
        let types: Vec<&'static TypeDef> = match &request.types {
            Some(names) => {
                let mut types = Vec::new();
                for name in names {
                    let Some(def) = TYPES.iter().find(|t| t.name == name && applies(t)) else {
                        return Err(FhirError::BadRequest(format!(
                            "_type '{name}' is not a type exported at this level here{} (see /metadata)",
                            if request.deidentify {
                                ", or not in a de-identified export"
                            } else {
                                ""
                            }
                        )));
                    };
                    authorize(context, Interaction::Search, def).map_err(|_| {
                        FhirError::Forbidden(format!(
                            "the client's grant does not allow exporting {name}"
                        ))
                    })?;
                    if !types.iter().any(|t: &&TypeDef| t.name == def.name) {
                        types.push(def);
                    }
                }
                types
            }
            // A cohort's members are no patient's own data: exported only when named.
            None => (TYPES.iter())
                .filter(|t| applies(t) && !t.lists_patients())
                .filter(|t| authorize(context, Interaction::Search, t).is_ok())
                .collect(),
        };
        if types.is_empty() {
            return Err(FhirError::Forbidden(
                "the client's grant allows exporting no type at this level".into(),
            ));
        }
        // Each filter is a search of a type exported, with nothing but search parameters of
        // that type; a few of them. In a de-identified export only codes and statuses select:
        // an id, a reference, an identifier, a name or a date would tie pseudonyms to people.
        if request.type_filters.len() > MAX_TYPE_FILTERS {
            return Err(FhirError::BadRequest(format!(
                "at most {MAX_TYPE_FILTERS} _typeFilter searches in one export"
            )));
        }
        for (resource_type, params) in &request.type_filters {
            if let Some((name, _)) =
                (params.iter()).find(|(name, _)| name.contains('.') || name.starts_with("_has"))
            {
                return Err(FhirError::BadRequest(format!(
                    "_typeFilter {resource_type}?…{name}…: a filter searches its own type's parameters (no chains, no _has)"
                )));
            }
            if request.deidentify
                && let Some((name, _)) = (params.iter()).find(|(name, _)| {
                    !DEIDENTIFIED_FILTERS.contains(&name.split(':').next().unwrap_or_default())
                })
            {
                return Err(FhirError::BadRequest(format!(
                    "_typeFilter {resource_type}?…{name}… in a de-identified export: only {} select there",
                    DEIDENTIFIED_FILTERS.join(", ")
                )));
            }
            if !types.iter().any(|t| t.name == resource_type) {
                return Err(FhirError::BadRequest(format!(
                    "_typeFilter names {resource_type}, which this export does not hold: add it to _type"
                )));
            }
            if let Some((name, _)) =
                (params.iter()).find(|(name, _)| NOT_FILTERS.contains(&name.as_str()))
            {
                return Err(FhirError::BadRequest(format!(
                    "_typeFilter {resource_type}?…{name}… : a filter selects, it does not shape ({name} is not taken)"
                )));
            }
            SearchQuery::parse(resource_type, params, self.limits)?;
        }
        let patients = match &request.level {
            ExportLevel::Group(id) => Some(self.group_members(context, id).await?),
            _ => None,
        };
        let job = self.exports.start(&owner, request.installed.clone())?;
        let service = self.clone();
        let context = context.clone();
        let id = job.id.clone();
        tokio::spawn(async move {
            let transaction_time = date::instant(date::now_ms());
            let status =
                match (service.export_run(&context, &job, &types, patients, &request)).await {
                    Ok((files, errors)) => ExportStatus::Complete {
                        transaction_time,
                        request: request.url.clone(),
                        files,
                        errors,
                    },
                    Err(error) => {
                        tracing::warn!(export = %job.id, %error, "an export stopped");
                        ExportStatus::Failed(error.to_string())
                    }
                };
            job.stop(status);
        });
        Ok(id)
    }

    /// The patients a Group lists as its members, read as the caller's own read of it.
    async fn group_members(
        &self,
        context: &AccessContext,
        id: &str,
    ) -> Result<Vec<String>, FhirError> {
        let group = self.read(context, "Group", id).await?;
        let group: Value = serde_json::from_str(&group.content)
            .map_err(|e| FhirError::Internal(anyhow::anyhow!("a stored Group: {e}")))?;
        if group["actual"] == false {
            return Err(FhirError::BadRequest(format!(
                "Group/{id} is defined by characteristics (actual = false): only a Group that lists its members can be exported"
            )));
        }
        let mut members = BTreeSet::new();
        let now = date::now_ms();
        for member in group["member"].as_array().into_iter().flatten() {
            // Members no longer: marked inactive, or their period ended.
            let ended = (member["period"]["end"].as_str())
                .and_then(date::parse)
                .is_some_and(|end| end.hi < now);
            if member["inactive"] == true || ended {
                continue;
            }
            if let Some(("Patient", patient)) = (member["entity"]["reference"].as_str())
                .and_then(|r| r.split_once('/'))
                .filter(|(_, id)| healthcloud_platform::auth::is_fhir_id(id))
            {
                members.insert(patient.to_owned());
            }
        }
        Ok(members.into_iter().collect())
    }

    /// Runs an export: each type, page by page, into its file; then one audit record in the
    /// log of each patient whose data is in the files.
    async fn export_run(
        &self,
        context: &AccessContext,
        job: &Job,
        types: &[&'static TypeDef],
        patients: Option<Vec<String>>,
        request: &ExportRequest,
    ) -> Result<(Vec<ExportFile>, Vec<ExportFile>), FhirError> {
        let mut files = Vec::new();
        // What could not be read from the sources (the manifest's `error`), counted by source,
        // type and kind; and what they sent that was withheld.
        let mut missing = Missing::default();
        // The export's patients, read once (for the sources' part of each type).
        let mut population: Option<Vec<String>> = patients.clone();
        let mut included: BTreeSet<String> = BTreeSet::new();
        let chunks: Vec<Option<&[String]>> = match &patients {
            Some(patients) => patients.chunks(MAX_VALUES).map(Some).collect(),
            None => vec![None],
        };
        let deidentifier = match request.deidentify {
            true => {
                let owner = owner(context).ok_or_else(|| {
                    FhirError::Internal(anyhow::anyhow!("an export without its client"))
                })?;
                Some(Deidentifier::new(self.store.export_key(&owner).await?))
            }
            false => None,
        };
        // One connection for the whole walk (see `EmbeddedStore::connection`).
        let mut connection = self.store.connection().await?;
        for (done, type_def) in types.iter().enumerate() {
            let groups = authorize(context, Interaction::Search, type_def)?;
            let actors = context.consent_actors();
            let name = format!("{}.ndjson", type_def.name);
            let path = job.dir.join(&name);
            let file = tokio::io::BufWriter::new(
                tokio::fs::File::create(&path)
                    .await
                    .map_err(|e| FhirError::Internal(e.into()))?,
            );
            // Without a filter the type is read whole; with several, a resource two of them
            // match is written once.
            let filters: Vec<Filter<'_>> = match (request.type_filters.iter())
                .filter(|(t, _)| t == type_def.name)
                .map(|(_, params)| Some(params))
                .collect::<Vec<_>>()
            {
                none if none.is_empty() => vec![None],
                some => some,
            };
            let mut out = TypeFile {
                file,
                count: 0,
                written: (filters.len() > 1).then(HashSet::new),
            };
            // Collected: an iterator of borrowing closures held across an await is not Send.
            let passes: Vec<(&Option<&[String]>, &Filter<'_>)> = (chunks.iter())
                .flat_map(|c| filters.iter().map(move |f| (c, f)))
                .collect();
            for (chunk, filter) in passes {
                let mut params: Vec<(String, String)> = filter.cloned().unwrap_or_default();
                if let Some(since) = &request.since {
                    params.push(("_lastUpdated".to_owned(), format!("ge{since}")));
                }
                match chunk {
                    Some([]) => continue,
                    Some(ids) if type_def.name == "Patient" => {
                        params.push(("_id".into(), ids.join(",")));
                    }
                    Some(ids) => params.push((
                        "patient".into(),
                        (ids.iter().map(|id| format!("Patient/{id}")))
                            .collect::<Vec<_>>()
                            .join(","),
                    )),
                    None => {}
                }
                let mut query = SearchQuery::parse(type_def.name, &params, self.limits)?;
                query.constraints = Constraints {
                    groups: groups.clone(),
                    consent: (!actors.is_empty()).then(|| ConsentExclusion {
                        actors: actors.clone(),
                        at: date::now_ms(),
                    }),
                };
                let mut after: Option<String> = None;
                loop {
                    if job.cancelled.load(Ordering::SeqCst) {
                        return Err(FhirError::BadRequest("the export was cancelled".into()));
                    }
                    // A grant narrowed, a version revoked, an uninstall: it stops here.
                    if !(job.installed.0)() {
                        return Err(FhirError::Forbidden(INSTALL_CHANGED.into()));
                    }
                    let page = self
                        .store
                        .search_after(&mut connection, &query, after.as_deref(), PAGE)
                        .await?;
                    let Some(last) = page.last() else { break };
                    after = Some(last.id.clone());
                    for resource in &page {
                        out.write(
                            resource,
                            type_def.name,
                            deidentifier.as_ref(),
                            &mut included,
                        )
                        .await?;
                    }
                    job.progress(format!(
                        "{done} of {} types done; {}: {} resources",
                        types.len(),
                        type_def.name,
                        out.count
                    ));
                }
            }
            // What stays at the sources is read from them patient by patient, as each
            // patient's own compartment search would (consent first), and written as it comes.
            if self.sources_may_hold(type_def) {
                if population.is_none() {
                    population = Some(self.home_patients(&mut connection).await?);
                }
                let population = population.as_deref().unwrap_or_default();
                for (n, patient) in population.iter().enumerate() {
                    if job.cancelled.load(Ordering::SeqCst) {
                        return Err(FhirError::BadRequest("the export was cancelled".into()));
                    }
                    if !(job.installed.0)() {
                        return Err(FhirError::Forbidden(INSTALL_CHANGED.into()));
                    }
                    let at_sources = AtSources {
                        type_def,
                        groups: &groups,
                        filters: &filters,
                        since: request.since.as_deref(),
                    };
                    self.export_from_sources(
                        context,
                        patient,
                        &at_sources,
                        &mut out,
                        deidentifier.as_ref(),
                        &mut included,
                        &mut missing,
                    )
                    .await?;
                    if n % 100 == 0 {
                        job.progress(format!(
                            "{done} of {} types done; {}: {} resources, at the sources for {n} of {} patients",
                            types.len(),
                            type_def.name,
                            out.count,
                            population.len()
                        ));
                    }
                }
            }
            let count = out.count;
            out.file.flush().await.map_err(io)?;
            drop(out);
            if count == 0 {
                let _ = tokio::fs::remove_file(&path).await;
                continue;
            }
            files.push(ExportFile {
                resource_type: type_def.name,
                name,
                count,
            });
        }
        drop(connection);
        // Each patient whose data is in the files has it in their log, once; in batches, so
        // no one transaction holds the database's writer for long.
        let included: Vec<String> = included.into_iter().collect();
        let mut withheld = Some(std::mem::take(&mut missing.withheld));
        for batch in included.chunks(AUDIT_BATCH) {
            let mut audit = Pending::new(context, Interaction::Search, "Patient");
            audit.query = Some(request.audit_query());
            // What the sources sent that was withheld goes to the security log once.
            audit.withheld = withheld.take().unwrap_or_default();
            audit.stored = batch.to_vec();
            audit.patients = batch.to_vec();
            self.finish(audit, Ok(())).await?;
        }
        let mut error_files = Vec::new();
        if !missing.by_kind.is_empty() {
            let name = "OperationOutcome.ndjson".to_owned();
            let mut lines = String::new();
            for ((source, resource_type, code), (patients, example)) in &missing.by_kind {
                let outcome = json!({"resourceType": "OperationOutcome", "issue": [{
                    "severity": "error",
                    "code": code,
                    "diagnostics": format!(
                        "{resource_type} of {patients} patient(s) could not be read in full from source '{source}': {example}"
                    ),
                }]});
                lines.push_str(&outcome.to_string());
                lines.push('\n');
            }
            tokio::fs::write(job.dir.join(&name), lines)
                .await
                .map_err(io)?;
            error_files.push(ExportFile {
                resource_type: "OperationOutcome",
                name,
                count: missing.by_kind.len(),
            });
        }
        Ok((files, error_files))
    }

    /// Where the export `id` of the caller stands.
    pub fn export_status(
        &self,
        context: &AccessContext,
        id: &str,
    ) -> Result<ExportStatus, FhirError> {
        let job = self.exports.owned(id, &owner_or_none(context, id)?)?;
        let state = job.state.lock().expect("job lock");
        Ok(state.status.clone())
    }

    /// The path of the file `name` of the caller's finished export `id`.
    pub fn export_file(
        &self,
        context: &AccessContext,
        id: &str,
        name: &str,
    ) -> Result<PathBuf, FhirError> {
        let job = self.exports.owned(id, &owner_or_none(context, id)?)?;
        let state = job.state.lock().expect("job lock");
        match &state.status {
            ExportStatus::Complete { files, errors, .. }
                if files.iter().chain(errors).any(|f| f.name == name) =>
            {
                Ok(job.dir.join(name))
            }
            _ => Err(FhirError::NotFound(format!(
                "export {id} has no file {name}"
            ))),
        }
    }

    /// Cancels the caller's export `id`, or deletes its files when it has finished: from now
    /// on it is unknown to the client (a running one still counts against its limit until
    /// it has stopped).
    pub fn export_cancel(&self, context: &AccessContext, id: &str) -> Result<(), FhirError> {
        let job = self.exports.owned(id, &owner_or_none(context, id)?)?;
        job.cancel();
        self.exports.expire();
        Ok(())
    }
}

/// The file of one type being written.
struct TypeFile {
    file: tokio::io::BufWriter<tokio::fs::File>,
    /// Resources written.
    count: usize,
    /// With several filters of the type, the ids written (each is written once).
    written: Option<HashSet<String>>,
}

impl TypeFile {
    /// Writes `resource` as one line (de-identified when asked), once; notes its patient
    /// among those included.
    async fn write(
        &mut self,
        resource: &crate::store::StoredResource,
        resource_type: &str,
        deidentifier: Option<&Deidentifier>,
        included: &mut BTreeSet<String>,
    ) -> Result<(), FhirError> {
        if let Some(written) = &mut self.written
            && !written.insert(resource.id.clone())
        {
            return Ok(());
        }
        let de_identified;
        let content = match deidentifier {
            Some(deidentifier) => {
                let mut value: Value = serde_json::from_str(&resource.content)
                    .map_err(|e| FhirError::Internal(e.into()))?;
                let patient = resource.patient_id.as_deref();
                deidentifier.apply(resource_type, &resource.id, patient, &mut value);
                de_identified = value.to_string();
                &de_identified
            }
            None => &resource.content,
        };
        // One line each: in JSON a raw line break can only be whitespace between tokens
        // (inside a string it is escaped).
        let line = match content.contains('\n') {
            true => std::borrow::Cow::Owned(content.replace('\n', " ")),
            false => std::borrow::Cow::Borrowed(content.as_str()),
        };
        self.file.write_all(line.as_bytes()).await.map_err(io)?;
        self.file.write_all(b"\n").await.map_err(io)?;
        if let Some(patient) = &resource.patient_id {
            included.insert(patient.clone());
        }
        self.count += 1;
        Ok(())
    }
}

/// One `_typeFilter` of a type (its search parameters), or none: the type whole.
type Filter<'a> = Option<&'a Vec<(String, String)>>;

/// What an export could not read from the sources: by source, type and kind (the issue
/// code), how many patients, and one diagnostics of it (naming the source, never a patient);
/// and what they sent that was withheld (for the security log, at most [`MAX_WITHHELD`]).
/// Bounded by the sources and types, whatever the population.
#[derive(Default)]
struct Missing {
    by_kind: std::collections::BTreeMap<(String, &'static str, &'static str), (usize, String)>,
    withheld: Vec<(String, crate::federation::Dropped)>,
}

/// What of one type an export reads at the sources.
struct AtSources<'a> {
    type_def: &'static TypeDef,
    groups: &'a [Vec<crate::query::Alternative>],
    filters: &'a [Filter<'a>],
    since: Option<&'a str>,
}

/// Resources of one type one patient may have at a source that one export takes; past it,
/// the manifest's `error` says so.
const PER_PATIENT_AT_A_SOURCE: usize = 1000;

impl FhirService {
    /// The ids of the home store's patients, in id order (read a page at a time).
    async fn home_patients(
        &self,
        connection: &mut sqlx::pool::PoolConnection<sqlx::Any>,
    ) -> Result<Vec<String>, FhirError> {
        let query = SearchQuery::parse("Patient", &[], self.limits)?;
        let mut ids = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .store
                .search_after(connection, &query, after.as_deref(), PAGE)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            ids.extend(page.into_iter().map(|r| r.id));
        }
        Ok(ids)
    }

    /// Writes what the sources hold of `patient` of one type, as that patient's compartment
    /// search by the caller would read it: nothing when their consent denies the caller (no
    /// source is asked), nothing when their record names no CPR number; each source's part
    /// checked against every constraint before it is written. A source that fails, or holds
    /// more than an export takes, is an OperationOutcome in `errors`.
    #[allow(clippy::too_many_arguments)]
    async fn export_from_sources(
        &self,
        context: &AccessContext,
        patient: &str,
        at: &AtSources<'_>,
        out: &mut TypeFile,
        deidentifier: Option<&Deidentifier>,
        included: &mut BTreeSet<String>,
        missing: &mut Missing,
    ) -> Result<(), FhirError> {
        if self
            .check_consent(context, Some(at.type_def), patient)
            .await
            .is_err()
        {
            return Ok(());
        }
        let (Some(cpr), remembered) = self.identity(patient).await? else {
            return Ok(());
        };
        let compartment = CompartmentPatient {
            id: patient,
            cpr: &cpr,
            remembered: &remembered,
        };
        let actors = context.consent_actors();
        for filter in at.filters {
            let mut params: Vec<(String, String)> = filter.cloned().unwrap_or_default();
            params.push(("patient".into(), format!("Patient/{patient}")));
            params.push(("_count".into(), PER_PATIENT_AT_A_SOURCE.to_string()));
            if let Some(since) = at.since {
                params.push(("_lastUpdated".to_owned(), format!("ge{since}")));
            }
            let mut query = SearchQuery::parse(at.type_def.name, &params, self.limits)?;
            query.count = PER_PATIENT_AT_A_SOURCE;
            query.constraints = Constraints {
                groups: at.groups.to_vec(),
                consent: (!actors.is_empty()).then(|| ConsentExclusion {
                    actors: actors.clone(),
                    at: date::now_ms(),
                }),
            };
            for report in self.sources.search(&query, compartment).await {
                for dropped in report.dropped() {
                    if missing.withheld.len() < MAX_WITHHELD {
                        missing
                            .withheld
                            .push((report.source.clone(), dropped.clone()));
                    }
                }
                if let Some(incomplete) = report.incomplete() {
                    let key = (report.source.clone(), at.type_def.name, incomplete.code);
                    let entry = (missing.by_kind)
                        .entry(key)
                        .or_insert_with(|| (0, incomplete.diagnostics.clone()));
                    entry.0 += 1;
                }
                if let SourceOutcome::Answered(answer) = report.outcome {
                    for resource in &answer.resources {
                        out.write(resource, at.type_def.name, deidentifier, included)
                            .await?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The manifest of a finished export (the IG's completion response body).
pub fn manifest(status: &ExportStatus, file_url: impl Fn(&str) -> String) -> Option<Value> {
    let ExportStatus::Complete {
        transaction_time,
        request,
        files,
        errors,
    } = status
    else {
        return None;
    };
    Some(json!({
        "transactionTime": transaction_time,
        "request": request,
        "requiresAccessToken": true,
        "output": files.iter().map(|file| json!({
            "type": file.resource_type,
            "url": file_url(&file.name),
            "count": file.count,
        })).collect::<Vec<_>>(),
        "error": errors.iter().map(|file| json!({
            "type": file.resource_type,
            "url": file_url(&file.name),
            "count": file.count,
        })).collect::<Vec<_>>(),
    }))
}

fn io(error: std::io::Error) -> FhirError {
    FhirError::Internal(error.into())
}

//! The front door to patient data: every read, search and write — from the FHIR API or from an
//! app's host call — goes through [`FhirService`], which applies the policy engine and consent,
//! and records the access in the audit trail before answering.

use std::time::Duration;

use healthcloud_platform::auth::is_fhir_id;
use healthcloud_platform::scope::{Interaction, Scope, ScopeContext};
use serde_json::Value;

use crate::audit::{AuditRecord, audit_event};
use crate::date;
use crate::error::FhirError;
use crate::evaluate::satisfies;
use crate::federation::{CompartmentPatient, Dropped};
use crate::params::TYPES;
use crate::params::TypeDef;
use crate::patient_index::{CPR_SYSTEM, PatientIndex, Remembered};
use crate::policy::{AccessContext, authorize, confined_patient};
use crate::query::{
    Alternative, ConsentExclusion, Constraints, Filter, PageLimits, SearchQuery, Sort, served_type,
};
use crate::ratelimit::{RefusalLimiter, RefusalLimits, is_refusal};
use crate::security::{SecurityEvent, SecurityKind, SecurityLog};
use crate::shape::RESULT_PARAMETERS;
use crate::sources::{
    SourceError, SourceOutcome, Sources, check_home_compartment, split_source_id,
};
use crate::store::{
    ConsentVersion, EmbeddedStore, HistoryCursor, Prepared, Quantifier, SearchPage, StoredResource,
    Version,
};
use crate::validate;

pub mod export;
mod include;
mod operations;
pub mod subscriptions;
pub mod transaction;

/// Policy-checked, audited access to FHIR data.
#[derive(Debug, Clone)]
pub struct FhirService {
    /// The home of the data the platform itself holds (imported data, resources written
    /// through the API such as home measurements), consents and the audit trail.
    store: EmbeddedStore,
    /// The organizations' own FHIR servers, read through for each patient's compartment.
    sources: Sources,
    limits: PageLimits,
    /// Slows down principals refused too often (shared with the app runtime's host calls).
    refusals: RefusalLimiter,
    /// Where probes about patients out of the caller's reach are recorded.
    security: SecurityLog,
    /// Bulk Data exports, running and finished.
    exports: export::Exports,
    /// Topic-based subscriptions: their dispatcher's wake-up and delivery.
    subscriptions: subscriptions::Subscriptions,
}

/// The result of a create or update.
#[derive(Debug, Clone)]
pub struct Written {
    /// The resource id.
    pub id: String,
    /// The new version.
    pub version_id: i64,
    /// The stored JSON.
    pub content: String,
}

/// One write, as [`FhirService::write_checked`] makes it.
struct Write<'a> {
    type_def: &'static TypeDef,
    id: &'a str,
    version_id: i64,
    interaction: Interaction,
    /// For an update: the compartment the resource is in now.
    previous_patient: Option<Option<&'a str>>,
    /// A search that must find nothing when the resource is written (a conditional create).
    unless: Option<&'a SearchQuery>,
}

/// A write that passed every check needing no transaction, to be applied in one
/// ([`FhirService::apply`]): alone, or with the other entries of a transaction Bundle.
#[derive(Debug)]
enum Planned {
    /// A create or an update.
    Write {
        /// The resource as it will be stored.
        prepared: Box<Prepared>,
        /// The caller's right to write it, checked against the resource as stored.
        query: Box<SearchQuery>,
        /// A search that must find nothing when it is written (a conditional create).
        unless: Option<Box<SearchQuery>>,
        /// For an update: the caller's right over the version it replaces, every value of
        /// which must be theirs to change.
        current: Option<Box<SearchQuery>>,
    },
    /// A deletion of the version read when it was planned.
    Delete {
        type_def: &'static TypeDef,
        id: String,
        version_id: i64,
        /// The caller's right to delete it, every value of which must allow it.
        query: Box<SearchQuery>,
    },
}

impl Planned {
    /// What a planned create or update wrote, once applied.
    fn written(&self) -> Written {
        match self {
            Planned::Write { prepared, .. } => Written {
                id: prepared.id.clone(),
                version_id: prepared.version_id,
                content: prepared.content.clone(),
            },
            Planned::Delete { id, version_id, .. } => Written {
                id: id.clone(),
                version_id: version_id + 1,
                content: String::new(),
            },
        }
    }
}

/// The most versions one page of a type's `_history` looks at.
pub const MAX_HISTORY_SCAN: usize = 5000;

/// What decides which versions of a type's `_history` a caller may read.
struct Readable {
    /// The caller's constraints on the type, and no filter of its own.
    query: SearchQuery,
    /// Who asks, for the patients' consents.
    actors: Vec<String>,
    now: i64,
    /// Patients whose consent was looked at: whether it denies the caller.
    denied: std::collections::BTreeMap<String, bool>,
    /// Resources looked at: the patient whose record holds them now.
    owners: std::collections::BTreeMap<String, Option<String>>,
}

/// An installed app, as [`FhirService::register_app`] records it.
#[derive(Debug, Clone, Copy)]
pub struct AppRecord<'a> {
    /// `publisher/app`.
    pub id: &'a str,
    /// Its name for people.
    pub name: &'a str,
    /// The version installed.
    pub version: &'a str,
    /// What it does.
    pub description: &'a str,
}

/// One page of a type's or the system's `_history`.
#[derive(Debug)]
pub struct HistoryVersions {
    /// The versions, newest first: each with its type and resource id.
    pub versions: Vec<(&'static str, String, Version)>,
    /// Whether more follow.
    pub more: bool,
    /// What the page cannot hold, said: the versions sources keep.
    pub not_included: Option<String>,
}

/// What the search of a conditional create found.
enum Found {
    /// The one match.
    Existing(StoredResource),
    /// Nothing: the search to repeat when the resource is written.
    Missing(SearchQuery),
}

/// What a conditional update is to change: the match's id, the change and the version it was
/// found at; or, when nothing matched, the resource to create and the criteria it must still
/// not match.
enum Resolved {
    Existing(String, Change, i64),
    New(Value, Criteria),
}

/// What a conditional create did.
#[derive(Debug, Clone)]
pub enum Creation {
    /// Nothing matched: the resource was created.
    Created(Written),
    /// One resource the caller may see matched: it is returned, nothing was written.
    Exists(StoredResource),
}

/// Paging a conditional create's criteria cannot carry (nor the result parameters): they
/// choose no resources.
const NOT_CRITERIA: &[&str] = &[
    "_count",
    "_offset",
    "_sort",
    "_include",
    "_include:iterate",
    "_revinclude",
    "_revinclude:iterate",
];

/// The type `resource_type`, when clients may write it (`what`: `create`, `update`, …).
fn writable(resource_type: &str, what: &str) -> Result<&'static TypeDef, FhirError> {
    let type_def = served_type(resource_type)?;
    match type_def.writable() {
        true => Ok(type_def),
        false => Err(FhirError::MethodNotAllowed(format!(
            "{what} is not supported for {resource_type}: {}",
            match resource_type {
                "Patient" => "patients come from the population register (data import)",
                _ => "the audit trail is written by the platform alone",
            }
        ))),
    }
}

/// The most operations one JSON Patch may hold.
pub const MAX_PATCH_OPERATIONS: usize = 100;

/// The largest resource a patch may make (as JSON).
pub const MAX_PATCHED_BYTES: usize = 4 << 20;

/// How an update changes a resource.
#[derive(Debug, Clone)]
pub enum Change {
    /// The whole new resource (`PUT`).
    Replace(Value),
    /// A JSON Patch (RFC 6902) applied to the current version.
    JsonPatch(json_patch::Patch),
    /// A JSON merge patch (RFC 7386, what fhirpy's `patch()` sends): the elements given
    /// replace the current ones, and `null` removes one.
    Merge(Value),
}

impl Change {
    /// The `resource_type` after the change, from the current version's JSON.
    fn apply(self, resource_type: &str, current: &str) -> Result<Value, FhirError> {
        let patch = match self {
            Change::Replace(resource) => return Ok(resource),
            patch => patch,
        };
        let mut resource: Value =
            serde_json::from_str(current).map_err(|e| FhirError::Internal(e.into()))?;
        match patch {
            Change::JsonPatch(operations) => {
                if operations.0.len() > MAX_PATCH_OPERATIONS {
                    return Err(FhirError::BadRequest(format!(
                        "a JSON Patch may hold at most {MAX_PATCH_OPERATIONS} operations"
                    )));
                }
                // One operation at a time, each held to the size a resource may have: a
                // `copy` of the whole resource into itself doubles it.
                for operation in operations.0 {
                    json_patch::patch(&mut resource, &[operation]).map_err(|e| {
                        FhirError::invalid(
                            resource_type,
                            format!("the JSON Patch cannot be applied: {e}"),
                        )
                    })?;
                    let size = serde_json::to_vec(&resource)
                        .map_err(|e| FhirError::Internal(e.into()))?
                        .len();
                    if size > MAX_PATCHED_BYTES {
                        return Err(FhirError::PayloadTooLarge(format!(
                            "the patched {resource_type} would be larger than {MAX_PATCHED_BYTES} bytes"
                        )));
                    }
                }
            }
            Change::Merge(changes) => json_patch::merge(&mut resource, &changes),
            Change::Replace(_) => unreachable!("returned above"),
        }
        Ok(resource)
    }
}

/// Refuses a write of shared data (organizations, practitioners, locations, medications) by a
/// caller confined to one patient's record: such data is in no record and concerns everyone.
fn shared_data_check(context: &AccessContext, type_def: &TypeDef) -> Result<(), FhirError> {
    match !type_def.in_patient_compartment() && confined(context) {
        true => Err(FhirError::Forbidden(format!(
            "{} is shared data, written by workforce and system tokens, not within one patient's record",
            type_def.name
        ))),
        false => Ok(()),
    }
}

/// The refusal of a change (`what`) to a resource that carries values the caller's
/// restriction does not allow, though some of its values do.
fn restricted(resource_type: &str, what: &str) -> FhirError {
    FhirError::Forbidden(format!(
        "this {resource_type} carries values your scopes (or the app's grant) do not allow you \
         to {what} (e.g. a second category)"
    ))
}

/// Whether `context` acts within one patient's record only: a citizen or patient, or a token
/// (or an app's grant) with nothing but `patient/` scopes. An app with `user/` or `system/`
/// scopes granted (a backend service, say) reaches beyond one record, as a workforce token
/// does.
fn confined(context: &AccessContext) -> bool {
    let patient_only = |scopes: &[Scope]| {
        scopes
            .iter()
            .all(|scope| scope.context == ScopeContext::Patient)
    };
    context.principal.claims.role.is_own_record_only()
        || patient_only(&context.principal.scopes)
        || context.grant.as_deref().is_some_and(patient_only)
}

/// The one resource a conditional interaction's search found: `None` for no match; 412 for
/// several; 503 when a source that may hold one did not answer.
fn sole_match(
    page: SearchPage,
    resource_type: &str,
    criteria: &str,
) -> Result<Option<StoredResource>, FhirError> {
    if !page.incomplete.is_empty() && page.total == 0 {
        let missing: Vec<&str> = page.incomplete.iter().map(|m| m.source.as_str()).collect();
        return Err(FhirError::Unavailable(format!(
            "whether a matching {resource_type} exists is not known: source(s) {} did not answer; send the request again later",
            missing.join(", ")
        )));
    }
    match page.total {
        0 => Ok(None),
        1 if page.resources.len() == 1 => Ok(page.resources.into_iter().next()),
        n => Err(FhirError::PreconditionFailed(format!(
            "{criteria} matches {n} {resource_type} resources: make the criteria select at most one"
        ))),
    }
}

/// The patient a write of a patient-compartment `type_def` is about: data about a patient
/// must say so literally (`Patient/<id>`), or it would sit outside every compartment,
/// invisible to the patient's log, consent and confinement.
fn literal_patient<'a>(type_def: &TypeDef, patient: Option<&'a str>) -> Result<&'a str, FhirError> {
    patient.ok_or_else(|| {
        let element = type_def.param("patient").map_or("subject", |p| p.paths[0]);
        FhirError::invalid(
            format!("{}.{element}", type_def.name),
            "must reference the patient as Patient/<id>",
        )
    })
}

/// Whether `resource` would be accepted by a write of `type_def` (`$validate`): it is valid,
/// can be indexed, and (patient data) names its patient literally, who is returned.
pub fn acceptable(type_def: &TypeDef, resource: &Value) -> Result<Option<String>, FhirError> {
    validate::written(type_def.name, resource)?;
    let index = crate::params::index(type_def.name, "", resource)
        .map_err(|e| FhirError::invalid(e.path, e.message))?;
    match type_def.in_patient_compartment() && type_def.name != "Patient" {
        true => literal_patient(type_def, index.patient_id.as_deref()).map(|p| Some(p.to_owned())),
        false => Ok(None),
    }
}

/// Search parameters, as a request gives them.
type Criteria = Vec<(String, String)>;

/// Refuses the criteria of a conditional `what` (create, update, delete) when they choose
/// nothing: none at all, or paging and result parameters.
fn check_criteria(criteria: &[(String, String)], what: &str) -> Result<(), FhirError> {
    let chooses_nothing =
        |name: &str| NOT_CRITERIA.contains(&name) || RESULT_PARAMETERS.contains(&name);
    match criteria.iter().find(|(name, _)| chooses_nothing(name)) {
        _ if criteria.is_empty() => Err(FhirError::BadRequest(format!(
            "the criteria of a conditional {what} are empty: give the search parameters that find the resource, e.g. identifier=system|value"
        ))),
        Some((name, _)) => Err(FhirError::BadRequest(format!(
            "the criteria of a conditional {what} are search parameters that choose resources, which '{name}' does not"
        ))),
        None => Ok(()),
    }
}

/// The search of a conditional create of `resource`: `criteria`, narrowed to the record of
/// the patient `resource` is about (returned too), after the checks that need no data (the
/// type can be created, the body is valid, the caller may create it).
fn creation_criteria(
    context: &AccessContext,
    resource_type: &str,
    resource: &Value,
    criteria: &[(String, String)],
) -> Result<(Criteria, Option<String>), FhirError> {
    let type_def = writable(resource_type, "create")?;
    let about = acceptable(type_def, resource)?;
    authorize(context, Interaction::Create, type_def)?;
    check_criteria(
        criteria,
        "create (If-None-Exist, or the POST's query string)",
    )?;
    let mut criteria = criteria.to_vec();
    if let Some(patient) = &about {
        criteria.push(("patient".into(), format!("Patient/{patient}")));
    }
    criteria.push(("_count".into(), "2".into()));
    Ok((criteria, about))
}

impl FhirService {
    /// A service reading patient data from the embedded store, and from no source until
    /// some are added to [`sources`](Self::sources).
    pub fn new(store: EmbeddedStore, limits: PageLimits) -> Self {
        let security = SecurityLog::new(store.database().clone());
        let index = PatientIndex::new(store.database().clone(), PATIENT_INDEX_MAX_AGE);
        FhirService {
            sources: Sources::new(index),
            store,
            limits,
            refusals: RefusalLimiter::default(),
            security,
            exports: export::Exports::default(),
            subscriptions: subscriptions::Subscriptions::default(),
        }
    }

    /// The service with other refusal limits (see [`RefusalLimits`]).
    pub fn with_refusal_limits(mut self, limits: RefusalLimits) -> Self {
        self.refusals = RefusalLimiter::new(limits);
        self
    }

    /// The upstream sources read through, to add, remove and check them.
    pub fn sources(&self) -> &Sources {
        &self.sources
    }

    /// The per-principal refusal limiter, for other front doors (the region admin API).
    pub fn refusals(&self) -> &RefusalLimiter {
        &self.refusals
    }

    /// Records an admin API's refusal of `principal` (`kind`: which API) in the security log
    /// and charges it against the caller's refusal budget, noting when that slows the caller
    /// down. A failure to write is logged, not returned: the refusal stands either way.
    pub async fn record_admin_refusal(
        &self,
        kind: SecurityKind,
        principal: &healthcloud_platform::auth::Principal,
        asked: &str,
        reason: &str,
    ) {
        let mut events = vec![SecurityEvent::new(kind, principal, None, asked, reason)];
        if self.refusals.charge(principal) {
            events.push(SecurityEvent::new(
                SecurityKind::RateLimited,
                principal,
                None,
                asked,
                "too many refused requests in a row: further requests are answered 429",
            ));
        }
        for event in &events {
            if let Err(error) = self.security.record(event).await {
                tracing::error!(%error, "cannot write the security log");
            }
        }
    }

    /// The security log.
    pub fn security_log(&self) -> &SecurityLog {
        &self.security
    }

    /// The embedded store itself, without the policy engine: for loading data only (FHIR
    /// Bundle import, synthetic data, and the demo's own setup, such as the launcher's list
    /// of demo patients). These act for the operator on the whole database, not for a user
    /// or an app whose access the policy engine could judge, so nothing answering a user's or
    /// an app's request may use it; anything else that needs the database gets it from the
    /// composition.
    pub fn store_for_loading(&self) -> &EmbeddedStore {
        &self.store
    }

    /// Records an installed app as the FHIR Device that consents and audit records name
    /// (`Device/<publisher>.<app>`, shared data, readable with a matching scope): its name,
    /// publisher, what it does and the newest version installed anywhere. Written when the
    /// app is new or `app` is a newer version than the one recorded (the earlier kept in the
    /// Device's history), otherwise left as it is; whether it was written.
    pub async fn register_app(&self, app: &AppRecord<'_>) -> Result<bool, FhirError> {
        let id = app.id.replace('/', ".");
        let version = semver::Version::parse(app.version)
            .map_err(|e| FhirError::BadRequest(format!("app version '{}': {e}", app.version)))?;
        if let Some(existing) = self.store.read("Device", &id).await? {
            let existing: Value = serde_json::from_str(&existing.content)
                .map_err(|e| FhirError::Internal(e.into()))?;
            let recorded = existing["version"][0]["value"].as_str();
            if recorded
                .and_then(|v| semver::Version::parse(v).ok())
                .is_some_and(|recorded| recorded >= version)
            {
                return Ok(false);
            }
        }
        let (publisher, _) = app.id.split_once('/').unwrap_or((app.id, ""));
        let mut device = serde_json::json!({
            "resourceType": "Device",
            "id": id,
            "identifier": [{"system": crate::params::APP_SYSTEM, "value": app.id}],
            "status": "active",
            "manufacturer": publisher,
            "deviceName": [{"name": app.name, "type": "user-friendly-name"}],
            "type": {
                "coding": [{"system": "http://snomed.info/sct", "code": "706689003",
                    "display": "Application program software"}],
                "text": "healthcloud app"
            },
            "version": [{"value": app.version}],
        });
        if !app.description.trim().is_empty() {
            device["note"] = serde_json::json!([{"text": app.description}]);
        }
        // Its id has the form of a source's resource (`publisher.app`, as consents name it),
        // which a Bundle may not give: it is queued as it is, its version counted on from the
        // one it replaces.
        validate::resource("Device", &device)?;
        let prepared = Prepared::new("Device", &id, 1, date::now_ms(), device)?;
        let mut importer = crate::import::Importer::new(&self.store);
        importer.add_prepared(vec![prepared]).await?;
        importer.finish().await?;
        Ok(true)
    }

    /// The page sizes searches and histories are served in.
    pub fn page_limits(&self) -> PageLimits {
        self.limits
    }

    /// Changes whenever one of `patient`'s Consents is written or deleted (here or by another
    /// node), so what was kept from before (an app instance kept for reuse) can be retired.
    /// It reveals no data; only the app cloud asks, for the patient a token names.
    pub async fn consent_version(&self, patient: &str) -> Result<ConsentVersion, FhirError> {
        self.store.consent_version(patient).await
    }

    /// Reads one resource.
    pub async fn read(
        &self,
        context: &AccessContext,
        resource_type: &str,
        id: &str,
    ) -> Result<StoredResource, FhirError> {
        self.admit(context)?;
        let mut audit = Pending::new(context, Interaction::Read, resource_type);
        audit.resource_id = Some(id.to_owned());
        let result = self
            .read_checked(context, resource_type, id, Interaction::Read, &mut audit)
            .await;
        self.finish(audit, result).await
    }

    async fn read_checked(
        &self,
        context: &AccessContext,
        resource_type: &str,
        id: &str,
        interaction: Interaction,
        audit: &mut Pending<'_>,
    ) -> Result<StoredResource, FhirError> {
        let type_def = served_type(resource_type)?;
        let not_found = || FhirError::NotFound(format!("{resource_type}/{id} not found"));
        if !is_fhir_id(id) {
            return Err(not_found());
        }
        let at_source = self.source_of(id);
        let groups = match (at_source, authorize(context, interaction, type_def)) {
            // A caller the policy refuses this type gets no source asked on its behalf: that
            // would contact another organization's system (and resolve whose the resource
            // is) for nothing, and a source that is down would answer before the refusal.
            // The refusal concerns the patient in context, if any.
            (Some(_), Err(error)) if interaction == Interaction::Read => {
                audit.patients = context.principal.claims.patient.iter().cloned().collect();
                return Err(error);
            }
            (_, groups) => groups,
        };
        let mut deleted = false;
        // `rows`: the index the resource is held to in memory (a source's resource, the last
        // version of a deleted one) rather than in the store's SQL.
        let (resource, source_rows) = match at_source {
            Some((source, source_id)) => {
                if interaction != Interaction::Read {
                    return Err(FhirError::MethodNotAllowed(format!(
                        "{resource_type}/{id} is held by source '{source}': change it in that organization's own system"
                    )));
                }
                // A caller confined to one patient is held to that patient's consent before
                // the source is asked at all.
                if let Ok(groups) = &groups
                    && let Some(patient) = confined_patient(groups)
                {
                    audit.patients = vec![patient.to_owned()];
                    self.check_consent(context, Some(type_def), patient).await?;
                }
                let read = self.sources.read(source, resource_type, source_id).await;
                let summary = match &read {
                    Ok(Some(_)) => "returned 1".to_owned(),
                    Ok(None) => "returned none".to_owned(),
                    Err(error) => format!("failed: {error}"),
                };
                audit.sources.push((source.to_owned(), summary));
                match read {
                    Ok(Some(renamed)) => {
                        let (resource, rows) = renamed.into_stored();
                        (Some(resource), Some(rows))
                    }
                    Ok(None) | Err(SourceError::Unknown(_)) => (None, None),
                    Err(SourceError::Unavailable(why)) => return Err(FhirError::Unavailable(why)),
                    Err(SourceError::Home(error)) => {
                        return Err(FhirError::Internal(anyhow::anyhow!(error)));
                    }
                }
            }
            None => match self.store.read(resource_type, id).await? {
                Some(resource) => (Some(resource), None),
                // A deleted resource is held to the checks of its last version: who could not
                // have read it learns nothing; who could is told it is gone.
                None => match self.last_before_deletion(resource_type, id).await? {
                    Some((last, rows)) => {
                        deleted = true;
                        (Some(last), Some(rows))
                    }
                    None => (None, None),
                },
            },
        };
        if let Some(resource) = &resource {
            audit.patients = resource.patient_id.iter().cloned().collect();
            audit.stored = audit.patients.clone();
        }
        let groups = groups?;
        let resource = resource.ok_or_else(not_found)?;
        let query = self.id_query(type_def, id, groups);
        let permitted = match &source_rows {
            // What a source holds is its patients' data: never shared data it could pass off
            // as the platform's own (an app's Device).
            Some(rows)
                if at_source.is_some() && type_def.placed_only() && rows.patient_id.is_none() =>
            {
                return Err(not_found());
            }
            Some(rows) => satisfies(&query, id, rows, Quantifier::Any),
            None => self.store.matches(&query).await?,
        };
        // Outside the caller's compartment the resource does not exist for them: checked
        // before consent, so a denial cannot confirm that someone else's resource exists.
        if !permitted
            && confined_patient(&query.constraints.groups)
                .is_some_and(|p| resource.patient_id.as_deref() != Some(p))
        {
            return Err(not_found());
        }
        if let Some(patient) = &resource.patient_id {
            self.check_consent(context, Some(type_def), patient).await?;
        }
        if !permitted {
            return Err(FhirError::Forbidden(format!(
                "{resource_type}/{id} is outside what your scopes (or the app's grant) allow"
            )));
        }
        if deleted {
            return Err(FhirError::Gone(format!(
                "{resource_type}/{id} was deleted; its versions are kept (_history)"
            )));
        }
        Ok(resource)
    }

    /// A deleted resource's last version, with its index (its compartment re-read from its
    /// content): `None` unless `resource_type/id` was deleted.
    async fn last_before_deletion(
        &self,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<(StoredResource, crate::params::IndexRows)>, FhirError> {
        let latest = self.store.history(resource_type, id, 2, 0).await?;
        let Ok([deletion, last]) = <[Version; 2]>::try_from(latest) else {
            return Ok(None);
        };
        if deletion.content.is_some() {
            return Ok(None);
        }
        let Some(mut last) = last.into_stored(id) else {
            return Ok(None);
        };
        let rows = serde_json::from_str(&last.content)
            .ok()
            .and_then(|json| crate::params::index(resource_type, id, &json).ok());
        Ok(rows.map(|rows| {
            last.patient_id = rows.patient_id.clone();
            (last, rows)
        }))
    }

    /// The resource whose versions are read, held to the checks of a read: its current
    /// version (`None` when it was deleted: 410 is answered only to whoever could have read
    /// it, whose its versions then are) and the patient whose compartment holds it.
    async fn versioned(
        &self,
        context: &AccessContext,
        resource_type: &str,
        id: &str,
        audit: &mut Pending<'_>,
    ) -> Result<(Option<StoredResource>, Option<String>), FhirError> {
        match (self.read_checked(context, resource_type, id, Interaction::Read, audit)).await {
            Ok(current) => {
                let patient = current.patient_id.clone();
                Ok((Some(current), patient))
            }
            Err(FhirError::Gone(_)) => {
                let last = self.last_before_deletion(resource_type, id).await?;
                Ok((None, last.and_then(|(last, _)| last.patient_id)))
            }
            Err(error) => Err(error),
        }
    }

    /// Reads version `version_id` of a resource: the caller must be able to read the resource
    /// as it is now (or was, when deleted), and the version is held to the caller's
    /// constraints as it was.
    pub async fn read_version(
        &self,
        context: &AccessContext,
        resource_type: &str,
        id: &str,
        version_id: i64,
    ) -> Result<StoredResource, FhirError> {
        self.admit(context)?;
        let mut audit = Pending::new(context, Interaction::Read, resource_type);
        audit.resource_id = Some(id.to_owned());
        let result = async {
            let (current, patient) = self
                .versioned(context, resource_type, id, &mut audit)
                .await?;
            if let Some(current) = current
                && current.version_id == version_id
            {
                return Ok(current);
            }
            let no_such =
                || FhirError::NotFound(format!("{resource_type}/{id} has no version {version_id}"));
            let version = self.store.version(resource_type, id, version_id).await?;
            let version = version.ok_or_else(no_such)?;
            self.permitted_version(context, (resource_type, id), version, patient.as_deref())
        }
        .await;
        self.finish(audit, result).await
    }

    /// A page of the versions of a resource the caller may read, newest first (the current
    /// one first; a deletion without content), and how many versions there are.
    pub async fn history(
        &self,
        context: &AccessContext,
        resource_type: &str,
        id: &str,
        (count, offset): (usize, usize),
    ) -> Result<(Vec<Version>, usize), FhirError> {
        self.admit(context)?;
        let mut audit = Pending::new(context, Interaction::Read, resource_type);
        audit.resource_id = Some(id.to_owned());
        let result = async {
            let (current, patient) = self
                .versioned(context, resource_type, id, &mut audit)
                .await?;
            let total =
                self.store.history_count(resource_type, id).await? + usize::from(current.is_some());
            let mut versions = Vec::new();
            let mut skip = offset;
            if let Some(current) = current {
                match skip {
                    0 => {
                        let last_updated = serde_json::from_str::<Value>(&current.content)
                            .ok()
                            .and_then(|json| {
                                json["meta"]["lastUpdated"].as_str().and_then(date::parse)
                            })
                            .map_or(0, |at| at.lo);
                        versions.push(Version {
                            version_id: current.version_id,
                            last_updated,
                            patient_id: current.patient_id,
                            content: Some(current.content),
                        });
                    }
                    _ => skip -= 1,
                }
            }
            let wanted = count.saturating_sub(versions.len());
            for version in self.store.history(resource_type, id, wanted, skip).await? {
                // Versions the caller may not read are left out.
                let allowed = version.content.is_none()
                    || (self.permitted_version(
                        context,
                        (resource_type, id),
                        version.clone(),
                        patient.as_deref(),
                    ))
                    .is_ok();
                if allowed {
                    versions.push(version);
                }
            }
            Ok((versions, total))
        }
        .await;
        self.finish(audit, result).await
    }

    /// The `_history` of a whole type, or of the system (`resource_type` `None`: every type
    /// the caller may search, the others left out): the versions the caller may search —
    /// each held to the caller's constraints as it was, to the resource's patient now (as a
    /// version read is) and to that patient's consent; a deletion when the version it ended
    /// is — newest first, `count` of them after `after` (the last version of the previous
    /// page), written at or after `since`. A page looks at no more than [`MAX_HISTORY_SCAN`]
    /// versions: past that without a full page, the caller is asked to narrow it (`_since`),
    /// so where the versions they may not read lie is not told. What sources hold is not in
    /// it (each organization keeps its own history): the page says so, naming them.
    pub async fn type_history(
        &self,
        context: &AccessContext,
        resource_type: Option<&str>,
        (count, after): (usize, Option<HistoryCursor>),
        since: Option<i64>,
    ) -> Result<HistoryVersions, FhirError> {
        self.admit(context)?;
        let mut audit = Pending::new(
            context,
            Interaction::Search,
            resource_type.unwrap_or("Resource"),
        );
        audit.query = Some("_history".into());
        let result = async {
            let types: Vec<&'static TypeDef> = match resource_type {
                Some(name) => vec![served_type(name)?],
                None => TYPES.iter().collect(),
            };
            let mut readable: std::collections::BTreeMap<&'static str, (Readable, Option<String>)> =
                std::collections::BTreeMap::new();
            let mut refused = None;
            for type_def in types {
                let checked = async {
                    let groups = authorize(context, Interaction::Search, type_def)?;
                    let confined = confined_patient(&groups).map(str::to_owned);
                    if let Some(patient) = &confined {
                        if !audit.patients.contains(patient) {
                            audit.patients.push(patient.clone());
                        }
                        self.check_consent(context, Some(type_def), patient).await?;
                    }
                    let mut query = self.id_query(type_def, "", groups);
                    query.filters.clear();
                    Ok::<_, FhirError>((query, confined))
                }
                .await;
                match checked {
                    Ok((query, confined)) => {
                        let types = Readable {
                            query,
                            actors: context.consent_actors(),
                            now: date::now_ms(),
                            denied: std::collections::BTreeMap::new(),
                            owners: std::collections::BTreeMap::new(),
                        };
                        readable.insert(type_def.name, (types, confined));
                    }
                    // The system's history leaves out the types the caller may not search.
                    Err(error) if resource_type.is_none() && is_refusal(&error) => {
                        refused = Some(error)
                    }
                    Err(error) => return Err(error),
                }
            }
            if readable.is_empty() {
                return Err(refused.unwrap_or_else(|| {
                    FhirError::Forbidden("no type may be searched".into())
                }));
            }
            let scans: Vec<(&str, Option<&str>)> = (readable.iter())
                .map(|(name, (_, confined))| (*name, confined.as_deref()))
                .collect();
            let at_sources: Vec<&str> = (readable.values())
                .map(|(of_type, _)| of_type.query.type_def)
                .filter(|type_def| self.sources_may_hold(type_def))
                .map(|type_def| type_def.name)
                .collect();
            let not_included = (!at_sources.is_empty()).then(|| {
                format!(
                    "the versions the sources ({}) hold of {} are not included: each organization keeps its own history; search for their current data",
                    self.sources.names().join(", "),
                    at_sources.join(", ")
                )
            });
            let versions = (self.store)
                .history_of_types(&scans, since, after.as_ref(), MAX_HISTORY_SCAN + 1)
                .await?;
            let looked_at = versions.len();
            let mut kept = Vec::new();
            for (resource_type, id, version) in versions.into_iter().take(MAX_HISTORY_SCAN) {
                let Some((of_type, _)) = readable.get_mut(resource_type.as_str()) else {
                    continue;
                };
                let name = of_type.query.type_def.name;
                if let Some(patient) = self.version_readable(of_type, &id, &version).await? {
                    if let Some(patient) = patient {
                        for list in [&mut audit.patients, &mut audit.stored] {
                            if !list.contains(&patient) {
                                list.push(patient.clone());
                            }
                        }
                    }
                    kept.push((name, id, version));
                    if kept.len() == count {
                        return Ok(HistoryVersions {
                            versions: kept,
                            more: true,
                            not_included,
                        });
                    }
                }
            }
            if looked_at > MAX_HISTORY_SCAN {
                return Err(FhirError::BadRequest(format!(
                    "more than {MAX_HISTORY_SCAN} versions were looked at for this page: narrow the history with _since"
                )));
            }
            Ok(HistoryVersions {
                versions: kept,
                more: false,
                not_included,
            })
        }
        .await;
        self.finish(audit, result).await
    }

    /// The patient whose record holds `version` of resource `id` (`Some(None)` for shared
    /// data) when the caller of `readable` may read it: held to their constraints, to the
    /// resource's patient now (a version filed under another patient is not the resource's
    /// for anyone) and to that patient's consent; a deletion when the version it ended is.
    /// `None` when they may not.
    async fn version_readable(
        &self,
        readable: &mut Readable,
        id: &str,
        version: &Version,
    ) -> Result<Option<Option<String>>, FhirError> {
        let resource_type = readable.query.type_def.name;
        let content = match &version.content {
            Some(content) => content.clone(),
            None => match (self.store)
                .version(resource_type, id, version.version_id - 1)
                .await?
                .and_then(|ended| ended.content)
            {
                Some(content) => content,
                None => return Ok(None),
            },
        };
        let Ok(json) = serde_json::from_str::<Value>(&content) else {
            return Ok(None);
        };
        let Ok(rows) = crate::params::index(resource_type, id, &json) else {
            return Ok(None);
        };
        if !satisfies(&readable.query, id, &rows, Quantifier::Any) {
            return Ok(None);
        }
        let owner = match readable.owners.get(id) {
            Some(owner) => owner.clone(),
            None => {
                let owner = match self.store.read(resource_type, id).await? {
                    Some(current) => current.patient_id,
                    None => (self.last_before_deletion(resource_type, id).await?)
                        .and_then(|(last, _)| last.patient_id),
                };
                readable.owners.insert(id.to_owned(), owner.clone());
                owner
            }
        };
        if rows.patient_id != owner {
            return Ok(None);
        }
        let Some(patient) = owner else {
            return Ok(Some(None));
        };
        if readable.actors.is_empty() {
            return Ok(Some(Some(patient)));
        }
        let denied = match readable.denied.get(&patient) {
            Some(denied) => *denied,
            None => {
                let denied = (self.store)
                    .consent_denies(
                        &readable.actors,
                        Some(resource_type),
                        &patient,
                        readable.now,
                    )
                    .await?;
                readable.denied.insert(patient.clone(), denied);
                denied
            }
        };
        Ok((!denied).then_some(Some(patient)))
    }

    /// `version` of `resource_type/id`, when the caller's constraints allow it as it was and
    /// it was in the compartment of `patient`, the resource's now: a version filed under
    /// someone else is not this resource's for the caller (as if there were none).
    fn permitted_version(
        &self,
        context: &AccessContext,
        (resource_type, id): (&str, &str),
        version: Version,
        patient: Option<&str>,
    ) -> Result<StoredResource, FhirError> {
        let number = version.version_id;
        let Some(kept) = version.into_stored(id) else {
            return Err(FhirError::Gone(format!(
                "version {number} of {resource_type}/{id} is its deletion"
            )));
        };
        let type_def = served_type(resource_type)?;
        let query = self.id_query(
            type_def,
            id,
            authorize(context, Interaction::Read, type_def)?,
        );
        let json: Value =
            serde_json::from_str(&kept.content).map_err(|e| FhirError::Internal(e.into()))?;
        let rows = crate::params::index(resource_type, id, &json)
            .map_err(|e| FhirError::Internal(anyhow::anyhow!(e)))?;
        if rows.patient_id.as_deref() != patient {
            return Err(FhirError::NotFound(format!(
                "{resource_type}/{id} has no version {number}"
            )));
        }
        match satisfies(&query, id, &rows, Quantifier::Any) {
            true => Ok(kept),
            false => Err(FhirError::Forbidden(format!(
                "version {number} of {resource_type}/{id} is outside what your scopes (or the app's grant) allow"
            ))),
        }
    }

    /// Records the refusal of a request that never reached an interaction (an unreadable body,
    /// say) and returns its error: refusals belong in the audit trail too.
    pub async fn refused(
        &self,
        context: &AccessContext,
        (interaction, resource_type, resource_id): (Interaction, &str, Option<&str>),
        error: FhirError,
    ) -> FhirError {
        if let Err(limited) = self.admit(context) {
            return limited;
        }
        let mut audit = Pending::new(context, interaction, resource_type);
        audit.resource_id = resource_id.map(str::to_owned);
        self.refuse(audit, error).await
    }

    /// Records `audit` as refused with `error`, and returns the error.
    async fn refuse(&self, audit: Pending<'_>, error: FhirError) -> FhirError {
        self.finish::<()>(audit, Err(error))
            .await
            .expect_err("finish passes an error through")
    }

    /// Parses and runs a search from request parameters. Refusals are audited too, including
    /// malformed and unsupported searches.
    pub async fn search_params(
        &self,
        context: &AccessContext,
        resource_type: &str,
        params: &[(String, String)],
    ) -> Result<(SearchQuery, SearchPage), FhirError> {
        self.admit(context)?;
        let mut audit = Pending::new(context, Interaction::Search, resource_type);
        audit.query = Some(encode(params));
        let result = match SearchQuery::parse(resource_type, params, self.limits) {
            Ok(query) => self.search_checked(context, query, &mut audit).await,
            Err(error) => Err(error),
        };
        self.finish(audit, result).await
    }

    /// Runs a search already parsed with [`SearchQuery::parse`] (the app runtime's path).
    pub async fn search(
        &self,
        context: &AccessContext,
        query: SearchQuery,
    ) -> Result<SearchPage, FhirError> {
        self.admit(context)?;
        let mut audit = Pending::new(context, Interaction::Search, query.type_def.name);
        audit.query = Some(encode(&query.link_params));
        let result = self.search_checked(context, query, &mut audit).await;
        self.finish(audit, result.map(|(_, page)| page)).await
    }

    async fn search_checked(
        &self,
        context: &AccessContext,
        mut query: SearchQuery,
        audit: &mut Pending<'_>,
    ) -> Result<(SearchQuery, SearchPage), FhirError> {
        let groups = match authorize(context, Interaction::Search, query.type_def) {
            Ok(groups) => groups,
            Err(error) => {
                // A refused attempt still concerns the patient in context and any patient it
                // names: in the log of the first, a probe of the others (see `filing`).
                let mut concerned: Vec<String> =
                    context.principal.claims.patient.iter().cloned().collect();
                for patient in query.named_patients().unwrap_or_default() {
                    if !concerned.contains(&patient) {
                        concerned.push(patient);
                    }
                }
                audit.patients = concerned;
                return Err(error);
            }
        };
        // Chains and `_has` become conditions on ids, found by the caller's own searches.
        let joined_incomplete = match query.joins.is_empty() {
            true => Vec::new(),
            false => self.resolve_joins(context, &mut query, audit).await?,
        };
        let actors = context.consent_actors();
        // The one patient whose sources a search in one compartment asks is found at home (CPR
        // number, patient index) while consent is checked: no source is asked before.
        let fan_out = match confined_patient(&groups) {
            Some(patient) => Some(patient.to_owned()),
            None => match query.named_patients().as_deref() {
                Some([patient]) => Some(patient.clone()),
                _ => None,
            },
        }
        .filter(|_| self.fans_out(&query));
        let identity = async {
            match &fan_out {
                Some(patient) => Some(self.identity(patient).await),
                None => None,
            }
        };
        let checked = async {
            Ok::<_, FhirError>(match confined_patient(&groups) {
                Some(patient) => {
                    audit.patients = vec![patient.to_owned()];
                    self.check_consent(context, Some(query.type_def), patient)
                        .await?;
                    None
                }
                None => {
                    // Asked for by name, an opted-out patient is refused openly: an empty
                    // result would read as "no data", which a clinician could act on.
                    if let Some(named) = query.named_patients()
                        && !named.is_empty()
                    {
                        let now = date::now_ms();
                        let mut all_denied = !actors.is_empty();
                        for patient in &named {
                            if !all_denied {
                                break;
                            }
                            all_denied = self
                                .store
                                .consent_denies(&actors, Some(query.type_def.name), patient, now)
                                .await?;
                        }
                        if all_denied {
                            audit.patients = named;
                            return Err(FhirError::ConsentDenied);
                        }
                    }
                    (!actors.is_empty()).then(|| ConsentExclusion {
                        actors,
                        at: date::now_ms(),
                    })
                }
            })
        };
        let (consent, identity) = tokio::join!(checked, identity);
        query.constraints = Constraints {
            groups,
            consent: consent?,
        };
        // Consent allowed the search (a refusal returned above): the confined patient's was
        // checked, and so was the one named patient's (unless no consent can name the caller).
        let mut page = match fan_out.zip(identity) {
            Some((patient, identity)) => {
                self.search_sources(&query, &Consented(patient), identity?, audit)
                    .await?
            }
            None => self.store.search(&query).await?,
        };
        for patient in page.resources.iter().filter_map(|r| r.patient_id.as_ref()) {
            if !audit.stored.contains(patient) {
                audit.stored.push(patient.clone());
            }
            if !audit.patients.contains(patient) {
                audit.patients.push(patient.clone());
            }
        }
        // A search naming a patient concerns them even when nothing matched: it reaches their
        // log if the caller could reach them, else it is a probe (see `filing`).
        for patient in query.named_patients().unwrap_or_default() {
            if !audit.patients.contains(&patient) {
                audit.patients.push(patient);
            }
        }
        page.incomplete.extend(joined_incomplete);
        if !query.includes.is_empty() && !page.resources.is_empty() {
            self.include(context, &query, &mut page, audit).await?;
        }
        // Left out (`_summary`, `_elements`) only after every check, from what may be seen.
        for resource in &mut page.resources {
            let whole = std::mem::take(&mut resource.content);
            resource.content = query.presentation.apply(query.type_def.name, whole)?;
        }
        Ok((query, page))
    }

    /// Creates a resource with a server-assigned id.
    pub async fn create(
        &self,
        context: &AccessContext,
        resource_type: &str,
        resource: Value,
    ) -> Result<Written, FhirError> {
        self.admit(context)?;
        let mut audit = Pending::new(context, Interaction::Create, resource_type);
        let result = self
            .create_checked(context, resource_type, resource, None, &mut audit)
            .await;
        self.finish(audit, result).await
    }

    /// Creates `resource` with a new id, unless (`unless`) a resource matches that search
    /// when it is written.
    async fn create_checked(
        &self,
        context: &AccessContext,
        resource_type: &str,
        resource: Value,
        unless: Option<&SearchQuery>,
        audit: &mut Pending<'_>,
    ) -> Result<Written, FhirError> {
        let type_def = writable(resource_type, "create")?;
        let id = crate::import::new_id();
        audit.resource_id = Some(id.clone());
        let write = Write {
            type_def,
            id: &id,
            version_id: 1,
            interaction: Interaction::Create,
            previous_patient: None,
            unless,
        };
        self.write_checked(context, write, resource, audit).await
    }

    /// Creates a resource unless one matches `criteria` (`If-None-Exist`): the criteria are a
    /// search by the caller, audited as one, under the caller's rights and the patients'
    /// consent, so only what the caller may see can match. One match is returned, several
    /// are refused (412), none creates. The check is repeated in the write's transaction
    /// (serialized with other conditional creates of the type), so two requests at once
    /// cannot both create.
    pub async fn create_unless_exists(
        &self,
        context: &AccessContext,
        resource_type: &str,
        resource: Value,
        criteria: &[(String, String)],
    ) -> Result<Creation, FhirError> {
        self.admit(context)?;
        match (self.find_existing(context, resource_type, &resource, criteria)).await? {
            // Nothing was written: the search's own record says what was disclosed.
            Found::Existing(existing) => Ok(Creation::Exists(existing)),
            Found::Missing(query) => {
                let mut audit = Pending::new(context, Interaction::Create, resource_type);
                let result = self
                    .create_checked(context, resource_type, resource, Some(&query), &mut audit)
                    .await;
                self.finish(audit, result).await.map(Creation::Created)
            }
        }
    }

    /// Runs the search of a conditional create of `resource` as the caller's (after the
    /// checks of [`creation_criteria`]): the one resource it finds, or the query to repeat
    /// when the resource is written. Refusals are audited.
    async fn find_existing(
        &self,
        context: &AccessContext,
        resource_type: &str,
        resource: &Value,
        criteria: &[(String, String)],
    ) -> Result<Found, FhirError> {
        let refused = (Interaction::Create, resource_type, None);
        // What would be created is checked first: a caller who may not create it learns
        // nothing from the criteria, and only a match in the same patient's record counts.
        let (criteria, patient) =
            match creation_criteria(context, resource_type, resource, criteria) {
                Ok(checked) => checked,
                Err(error) => return Err(self.refused(context, refused, error).await),
            };
        let (query, page) = self
            .search_params(context, resource_type, &criteria)
            .await?;
        match sole_match(page, resource_type, "If-None-Exist") {
            Ok(Some(existing)) => Ok(Found::Existing(existing)),
            Ok(None) => Ok(Found::Missing(query)),
            // The create refused concerns the patient it was for.
            Err(error) => {
                let mut audit = Pending::new(context, Interaction::Create, resource_type);
                audit.patients.extend(patient);
                Err(self.refuse(audit, error).await)
            }
        }
    }

    /// Changes a resource: replaces it, or patches its current version (a citizen withdrawing
    /// a consent, a clinician correcting a reading). With `if_match`, the current version
    /// must be that one (412 otherwise).
    pub async fn update(
        &self,
        context: &AccessContext,
        resource_type: &str,
        id: &str,
        change: Change,
        if_match: Option<i64>,
    ) -> Result<Written, FhirError> {
        self.admit(context)?;
        let mut audit = Pending::new(context, Interaction::Update, resource_type);
        audit.resource_id = Some(id.to_owned());
        let result = async {
            let planned =
                (self.plan_update(context, (resource_type, id), change, if_match, &mut audit))
                    .await?;
            self.commit_one(&planned, &mut audit).await
        }
        .await;
        self.finish(audit, result).await
    }

    /// Changes the one resource that `criteria` (a search by the caller) finds: a conditional
    /// update or patch. No match creates the resource of a `Replace` (as a conditional create,
    /// so two requests at once cannot both create; answered with `true`), and is a 404 for a
    /// patch; several are refused (412).
    pub async fn update_where(
        &self,
        context: &AccessContext,
        resource_type: &str,
        criteria: &[(String, String)],
        change: Change,
    ) -> Result<(Written, bool), FhirError> {
        match self
            .resolve_update(context, resource_type, criteria, change)
            .await?
        {
            Resolved::Existing(id, change, version_id) => {
                let written =
                    (self.update(context, resource_type, &id, change, Some(version_id))).await?;
                Ok((written, false))
            }
            Resolved::New(resource, criteria) => {
                match (self.create_unless_exists(context, resource_type, resource, &criteria))
                    .await?
                {
                    Creation::Created(written) => Ok((written, true)),
                    Creation::Exists(_) => Err(FhirError::PreconditionFailed(format!(
                        "another request created a matching {resource_type} while this one was checked: send it again to update that one"
                    ))),
                }
            }
        }
    }

    /// What a conditional update's criteria (a search by the caller) find to change: the one
    /// match, or (for a whole resource, when nothing matches) the resource to create with
    /// the criteria it must still not match. A patch of nothing is a 404, several matches a
    /// 412; refusals are audited.
    async fn resolve_update(
        &self,
        context: &AccessContext,
        resource_type: &str,
        criteria: &[(String, String)],
        change: Change,
    ) -> Result<Resolved, FhirError> {
        let criteria = self
            .conditional_search(context, (Interaction::Update, resource_type), criteria)
            .await?;
        let (_, page) = self
            .search_params(context, resource_type, &criteria)
            .await?;
        let refused = (Interaction::Update, resource_type, None);
        let found = match sole_match(page, resource_type, "the conditional update") {
            Ok(found) => found,
            Err(error) => return Err(self.refused(context, refused, error).await),
        };
        match (found, change) {
            (Some(existing), Change::Replace(mut resource)) => {
                // The body names the match, or no resource at all.
                match resource.get("id").and_then(Value::as_str) {
                    None => resource["id"] = Value::String(existing.id.clone()),
                    Some(id) if id == existing.id => {}
                    Some(id) => {
                        let error = FhirError::BadRequest(format!(
                            "the criteria match {resource_type}/{}, not the body's id '{id}'",
                            existing.id
                        ));
                        return Err(self.refused(context, refused, error).await);
                    }
                }
                let change = Change::Replace(resource);
                Ok(Resolved::Existing(existing.id, change, existing.version_id))
            }
            (Some(existing), patch) => {
                Ok(Resolved::Existing(existing.id, patch, existing.version_id))
            }
            (None, Change::Replace(resource)) => {
                let criteria = (criteria.into_iter())
                    .filter(|(name, _)| name != "_count")
                    .collect();
                Ok(Resolved::New(resource, criteria))
            }
            (None, _) => {
                let error = FhirError::NotFound(format!(
                    "no {resource_type} matches the conditional patch's criteria"
                ));
                Err(self.refused(context, refused, error).await)
            }
        }
    }

    /// Deletes the one resource `criteria` (a search by the caller) finds: `None` when none
    /// does; several are refused (412).
    pub async fn delete_where(
        &self,
        context: &AccessContext,
        resource_type: &str,
        criteria: &[(String, String)],
    ) -> Result<Option<String>, FhirError> {
        match self
            .resolve_delete(context, resource_type, criteria)
            .await?
        {
            Some(id) => {
                self.delete(context, resource_type, &id).await?;
                Ok(Some(id))
            }
            None => Ok(None),
        }
    }

    /// The id of the one resource a conditional delete's criteria (a search by the caller)
    /// find, if any; several are refused (412, audited).
    async fn resolve_delete(
        &self,
        context: &AccessContext,
        resource_type: &str,
        criteria: &[(String, String)],
    ) -> Result<Option<String>, FhirError> {
        let criteria = self
            .conditional_search(context, (Interaction::Delete, resource_type), criteria)
            .await?;
        let (_, page) = self
            .search_params(context, resource_type, &criteria)
            .await?;
        match sole_match(page, resource_type, "the conditional delete") {
            Ok(found) => Ok(found.map(|existing| existing.id)),
            Err(error) => {
                let refused = (Interaction::Delete, resource_type, None);
                Err(self.refused(context, refused, error).await)
            }
        }
    }

    /// The search of a conditional update or delete: `criteria` must choose resources (no
    /// paging or result parameters), of a type the caller may change. Refusals are audited.
    async fn conditional_search(
        &self,
        context: &AccessContext,
        (interaction, resource_type): (Interaction, &str),
        criteria: &[(String, String)],
    ) -> Result<Criteria, FhirError> {
        let checked = (|| {
            let type_def = writable(resource_type, interaction.fhir_code())?;
            authorize(context, interaction, type_def)?;
            check_criteria(criteria, interaction.fhir_code())
        })();
        if let Err(error) = checked {
            return Err(self
                .refused(context, (interaction, resource_type, None), error)
                .await);
        }
        let mut criteria = criteria.to_vec();
        criteria.push(("_count".into(), "2".into()));
        Ok(criteria)
    }

    /// Deletes a resource.
    pub async fn delete(
        &self,
        context: &AccessContext,
        resource_type: &str,
        id: &str,
    ) -> Result<(), FhirError> {
        self.admit(context)?;
        let mut audit = Pending::new(context, Interaction::Delete, resource_type);
        audit.resource_id = Some(id.to_owned());
        let result = async {
            let planned = self
                .plan_delete(context, resource_type, id, &mut audit)
                .await?;
            self.commit_one(&planned, &mut audit).await.map(|_| ())
        }
        .await;
        self.finish(audit, result).await
    }

    async fn write_checked(
        &self,
        context: &AccessContext,
        write: Write<'_>,
        resource: Value,
        audit: &mut Pending<'_>,
    ) -> Result<Written, FhirError> {
        let planned = self.plan_write(context, write, resource, audit).await?;
        self.commit_one(&planned, audit).await
    }

    /// Applies one planned write in a transaction of its own, with its audit record.
    async fn commit_one(
        &self,
        planned: &Planned,
        audit: &mut Pending<'_>,
    ) -> Result<Written, FhirError> {
        let mut tx = self.store.database().begin_write().await?;
        // Dropped on an error: nothing is written.
        self.apply(&mut tx, planned, audit).await?;
        tx.commit().await?;
        self.subscriptions.wake();
        audit.written = true;
        Ok(planned.written())
    }

    /// Checks a change of `resource_type/id` as far as it can be without a transaction: the
    /// caller may read the resource now, `if_match` names its current version, and the
    /// changed resource is a valid write (see [`FhirService::plan_write`]).
    async fn plan_update(
        &self,
        context: &AccessContext,
        (resource_type, id): (&str, &str),
        change: Change,
        if_match: Option<i64>,
        audit: &mut Pending<'_>,
    ) -> Result<Planned, FhirError> {
        let type_def = writable(resource_type, "update")?;
        if let Change::Replace(resource) = &change
            && resource.get("id").and_then(Value::as_str) != Some(id)
        {
            return Err(FhirError::BadRequest(format!(
                "the body's id must be '{id}', as in the URL"
            )));
        }
        let current =
            (self.read_checked(context, resource_type, id, Interaction::Update, audit)).await?;
        // A patch answers with (and can test) what is there: it takes the right to read it.
        if !matches!(change, Change::Replace(_)) {
            (self.read_checked(context, resource_type, id, Interaction::Read, audit)).await?;
        }
        let resource = change.apply(resource_type, &current.content)?;
        if resource.get("id").and_then(Value::as_str) != Some(id) {
            return Err(FhirError::invalid(
                format!("{resource_type}.id"),
                format!("the patch must keep the id '{id}'"),
            ));
        }
        if let Some(expected) = if_match
            && expected != current.version_id
        {
            return Err(FhirError::PreconditionFailed(format!(
                "{resource_type}/{id} is at version {}, not {expected}: read it again and retry",
                current.version_id
            )));
        }
        let write = Write {
            type_def,
            id,
            version_id: current.version_id + 1,
            interaction: Interaction::Update,
            previous_patient: Some(current.patient_id.as_deref()),
            unless: None,
        };
        let mut planned = self.plan_write(context, write, resource, audit).await?;
        if let Planned::Write { current, .. } = &mut planned {
            let groups = authorize(context, Interaction::Update, type_def)?;
            *current = Some(Box::new(self.id_query(type_def, id, groups)));
        }
        Ok(planned)
    }

    /// Checks `write` of `resource` as far as it can be without a transaction: valid, in its
    /// patient's compartment (and staying there), allowed by the caller's rights and the
    /// patient's consent.
    async fn plan_write(
        &self,
        context: &AccessContext,
        write: Write<'_>,
        resource: Value,
        audit: &mut Pending<'_>,
    ) -> Result<Planned, FhirError> {
        let Write {
            type_def,
            id,
            version_id,
            interaction,
            previous_patient,
            unless,
        } = write;
        shared_data_check(context, type_def)?;
        validate::written(type_def.name, &resource)?;
        let mut resource = resource;
        stamp_writer(&mut resource, context);
        let prepared = Prepared::new(type_def.name, id, version_id, date::now_ms(), resource)?;
        let patient = prepared.index.patient_id.clone();
        if let Some(patient) = &patient
            && !audit.patients.contains(patient)
        {
            audit.patients.push(patient.clone());
        }
        if type_def.in_patient_compartment() {
            literal_patient(type_def, patient.as_deref())?;
        }
        check_home_compartment(type_def.name, patient.as_deref())?;
        if let Some(previous) = previous_patient
            && patient.as_deref() != previous
        {
            return Err(FhirError::invalid(
                format!(
                    "{}.{}",
                    type_def.name,
                    type_def.param("patient").map_or("subject", |p| p.paths[0])
                ),
                "a resource cannot move to another patient's record",
            ));
        }
        let groups = authorize(context, interaction, type_def)?;
        if let Some(patient) = &patient {
            self.check_write_consent(context, type_def, patient).await?;
        }
        Ok(Planned::Write {
            query: Box::new(self.id_query(type_def, id, groups)),
            unless: unless.cloned().map(Box::new),
            current: None,
            prepared: Box::new(prepared),
        })
    }

    /// Checks the deletion of `resource_type/id` as far as it can be without a transaction:
    /// the caller may read it now, may delete it, and the patient's consent allows it.
    async fn plan_delete(
        &self,
        context: &AccessContext,
        resource_type: &str,
        id: &str,
        audit: &mut Pending<'_>,
    ) -> Result<Planned, FhirError> {
        let type_def = writable(resource_type, "delete")?;
        shared_data_check(context, type_def)?;
        let current = self
            .read_checked(context, resource_type, id, Interaction::Delete, audit)
            .await?;
        if let Some(patient) = &current.patient_id {
            self.check_write_consent(context, type_def, patient).await?;
        }
        let groups = authorize(context, Interaction::Delete, type_def)?;
        Ok(Planned::Delete {
            type_def,
            id: id.to_owned(),
            version_id: current.version_id,
            query: Box::new(self.id_query(type_def, id, groups)),
        })
    }

    /// Applies a planned write in `tx`, with its audit record; on an error nothing of it may
    /// be committed (the caller drops `tx`).
    async fn apply(
        &self,
        tx: &mut healthcloud_platform::db::WriteTx,
        planned: &Planned,
        audit: &Pending<'_>,
    ) -> Result<(), FhirError> {
        let (prepared, query, unless) = match planned {
            Planned::Delete {
                type_def,
                id,
                version_id,
                query,
            } => {
                if !self.store.permits(query, Quantifier::Every, tx).await? {
                    return Err(restricted(type_def.name, "delete"));
                }
                let now = date::now_ms();
                if !(self
                    .store
                    .delete(tx, type_def.name, id, Some(*version_id), now))
                .await?
                {
                    return Err(FhirError::Conflict(format!(
                        "{}/{id} changed while it was being deleted: read it again and retry",
                        type_def.name
                    )));
                }
                self.record_change(tx, type_def.name, id, version_id + 1, None, true)
                    .await?;
                self.write_audit(tx, audit, None).await?;
                return Ok(());
            }
            Planned::Write {
                prepared,
                query,
                unless,
                current,
            } => {
                if let Some(current) = current
                    && !self.store.permits(current, Quantifier::Every, tx).await?
                {
                    return Err(restricted(current.type_def.name, "change"));
                }
                (prepared, query, unless)
            }
        };
        let type_def = query.type_def;
        let patient = prepared.index.patient_id.as_deref();
        if let Some(unless) = unless {
            (self.store)
                .serialize_conditional_creates(tx, type_def.name, patient)
                .await?;
            if self.store.permits(unless, Quantifier::Any, tx).await? {
                return Err(FhirError::PreconditionFailed(format!(
                    "another request created a {} matching If-None-Exist while this one was checked: send it again to get that one",
                    type_def.name
                )));
            }
        }
        self.store.write(tx, std::slice::from_ref(prepared)).await?;
        let (id, version_id) = (prepared.id.as_str(), prepared.version_id);
        (self.record_change(tx, type_def.name, id, version_id, patient, false)).await?;
        // The policy is checked against the resource exactly as stored, with every value of a
        // restricted element held to the restriction; refused writes roll back.
        if !self.store.permits(query, Quantifier::Every, tx).await? {
            let one_value_allowed = self.store.permits(query, Quantifier::Any, tx).await?;
            return Err(FhirError::Forbidden(if one_value_allowed {
                format!(
                    "every value of an element your scopes (or the app's grant) restrict must be \
                     allowed, and this {} also carries values they do not allow (e.g. a second \
                     category): write it with allowed values only",
                    type_def.name
                )
            } else {
                format!(
                    "your scopes (or the app's grant) do not allow writing this {} (e.g. another patient's)",
                    type_def.name
                )
            }));
        }
        self.write_audit(tx, audit, None).await?;
        Ok(())
    }

    /// Refuses when one of the patient's consents denies this caller `type_def` (with `None`:
    /// any type at all).
    async fn check_consent(
        &self,
        context: &AccessContext,
        type_def: Option<&TypeDef>,
        patient: &str,
    ) -> Result<(), FhirError> {
        let actors = context.consent_actors();
        let now = date::now_ms();
        match self
            .store
            .consent_denies(&actors, type_def.map(|t| t.name), patient, now)
            .await?
        {
            true => Err(FhirError::ConsentDenied),
            false => Ok(()),
        }
    }

    /// Consent for a write: as for a read, except that nobody a patient has opted out may
    /// write that patient's consents (and so lift an opt-out against themselves), whatever
    /// types the opt-out covers.
    async fn check_write_consent(
        &self,
        context: &AccessContext,
        type_def: &'static TypeDef,
        patient: &str,
    ) -> Result<(), FhirError> {
        let covered = (type_def.name != "Consent").then_some(type_def);
        self.check_consent(context, covered, patient).await
    }

    /// The source holding resource `id`, and its id there, when `id` names a registered
    /// source's resource (`<source>.<id>`).
    fn source_of<'i>(&self, id: &'i str) -> Option<(&'i str, &'i str)> {
        split_source_id(id).filter(|(source, _)| self.sources.contains(source))
    }

    /// Whether sources hold data of `query`'s kind: then a search in one patient's
    /// compartment asks them too.
    fn fans_out(&self, query: &SearchQuery) -> bool {
        // Ids with no source's prefix are the home store's alone.
        let home_ids = query.filters.iter().any(|filter| {
            matches!(filter, Filter::Id(ids) if ids.iter().all(|id| self.source_of(id).is_none()))
        });
        !home_ids && self.sources_may_hold(query.type_def)
    }

    /// Whether sources may hold resources of `type_def`: patient data other than the Patient,
    /// the consents and the audit trail (which are the home store's alone), when any source
    /// is registered.
    fn sources_may_hold(&self, type_def: &TypeDef) -> bool {
        !self.sources.is_empty()
            && type_def.in_patient_compartment()
            && type_def.name != "Patient"
            && !crate::federation::home_only(type_def.name)
    }

    /// `query` over the embedded store and every source, in `patient`'s compartment: merged,
    /// sorted as asked and paged. Only a patient whose consent allowed the search gets here:
    /// no source is asked before.
    async fn search_sources(
        &self,
        query: &SearchQuery,
        patient: &Consented,
        (cpr, remembered): (Option<String>, Remembered),
        audit: &mut Pending<'_>,
    ) -> Result<SearchPage, FhirError> {
        let patient = patient.0.as_str();
        let Some(cpr) = cpr else {
            // Sources know patients by CPR number; without one, only the home record has data.
            return self.store.search(query).await;
        };
        // Every page is cut from the same merged order: the home store's first matches up to
        // the end of the page and every source's matches, sorted together.
        let mut home = query.clone();
        home.offset = 0;
        home.count = query.offset + query.count;
        let compartment = CompartmentPatient {
            id: patient,
            cpr: &cpr,
            remembered: &remembered,
        };
        let (home, reports) = tokio::join!(
            self.store.search(&home),
            self.sources.search(query, compartment)
        );
        let home = home?;
        let mut total = home.total;
        let mut lists = vec![home.resources];
        let mut incomplete = Vec::new();
        for report in reports {
            audit
                .sources
                .push((report.source.clone(), report.summary()));
            for dropped in report.dropped() {
                audit
                    .withheld
                    .push((report.source.clone(), dropped.clone()));
            }
            if let Some(missing) = report.incomplete() {
                incomplete.push(missing);
            }
            if let SourceOutcome::Answered(answer) = report.outcome {
                total += answer.total;
                lists.push(answer.resources);
            }
        }
        let resources = merge(lists, query.sort, query.offset + query.count)
            .into_iter()
            .skip(query.offset)
            .collect();
        Ok(SearchPage {
            resources,
            total,
            incomplete,
            ..SearchPage::default()
        })
    }

    /// What sources know patient `patient` by, read at home: the CPR number of their record
    /// and what the patient index remembers of them at each source. The number is `None`
    /// when the record holds none, several, or one another home record holds too (a mistyped
    /// number, a duplicate registration): either may be someone else, and joining both to the
    /// sources' records would show one person's data to the other (as `PatientIndex` refuses
    /// a number a source holds twice).
    async fn identity(&self, patient: &str) -> Result<(Option<String>, Remembered), FhirError> {
        let (cpr, remembered) = tokio::join!(
            self.store.sole_identifier(patient, CPR_SYSTEM),
            self.sources.remembered(patient)
        );
        Ok((cpr?, remembered.map_err(|e| FhirError::Internal(e.into()))?))
    }

    fn id_query(
        &self,
        type_def: &'static TypeDef,
        id: &str,
        groups: Vec<Vec<Alternative>>,
    ) -> SearchQuery {
        let mut query = SearchQuery::by_ids(type_def, vec![id.to_owned()]);
        query.constraints.groups = groups;
        query
    }

    /// Files the audit record of `audit` in the log of every concerned patient the caller
    /// could reach. A refused request about patients out of the caller's reach is recorded in
    /// the security log instead, and in no patient's log (not even the caller's own, which
    /// would then name the others). Returns whether the request probed out of reach.
    async fn write_audit(
        &self,
        tx: &mut healthcloud_platform::db::WriteTx,
        audit: &Pending<'_>,
        denied: Option<&FhirError>,
    ) -> Result<bool, FhirError> {
        let now = date::now_ms();
        let reason = denied.map(ToString::to_string);
        let Filing { filed, probed } = self.filing(audit).await?;
        if !probed.is_empty() {
            let event = SecurityEvent::new(
                SecurityKind::Probe,
                &audit.context.principal,
                audit.context.app.as_ref(),
                audit.describe(),
                format!(
                    "{} outside what this caller may reach ({}); {}",
                    if probed.len() == 1 {
                        "a patient"
                    } else {
                        "patients"
                    },
                    probed.len(),
                    reason
                        .as_deref()
                        .unwrap_or("answered as if they had no data")
                ),
            );
            self.security.record_in(&mut tx.tx, &event).await?;
            if denied.is_some() {
                return Ok(true);
            }
        }
        let patients: Vec<Option<&str>> = if filed.is_empty() {
            vec![None]
        } else {
            filed.iter().map(|p| Some(p.as_str())).collect()
        };
        // Redacted whenever the access concerned several patients, so no log names another.
        let query = match &audit.query {
            Some(query) => Some(redact(query, audit.patients.len() > 1)),
            other => other.clone(),
        };
        let mut events = Vec::with_capacity(patients.len());
        for patient in patients {
            let record = AuditRecord {
                context: audit.context,
                interaction: audit.interaction,
                resource_type: audit.resource_type,
                resource_id: audit.resource_id.as_deref(),
                query: query.as_deref(),
                patient,
                denied: reason.clone(),
                sources: &audit.sources,
            };
            let id = crate::import::new_id();
            events.push(Prepared::new(
                "AuditEvent",
                &id,
                1,
                now,
                audit_event(&record, now),
            )?);
        }
        self.store.write(tx, &events).await?;
        Ok(!probed.is_empty())
    }

    /// Which of the patients `audit` concerns get the record in their log: those the caller
    /// could reach. A confined caller (a citizen or patient, an app, a token with only
    /// `patient/` scopes) reaches only its patient in context; the others are probes. A caller
    /// with `user/` or `system/` scopes reaches every patient that exists, whatever this one
    /// request was allowed; ids of no patient have no log.
    async fn filing(&self, audit: &Pending<'_>) -> Result<Filing, FhirError> {
        if audit.patients.is_empty() {
            return Ok(Filing::default());
        }
        let context = audit.context;
        let confined_to = confined(context).then(|| context.patient().map(str::to_owned));
        Ok(match confined_to {
            Some(own) => {
                let (filed, probed) = audit
                    .patients
                    .iter()
                    .cloned()
                    .partition(|p| own.as_ref() == Some(p));
                Filing { filed, probed }
            }
            None => {
                // Sets: an export concerns every patient in its files.
                let stored: std::collections::HashSet<&String> = audit.stored.iter().collect();
                let unknown: Vec<String> = (audit.patients.iter())
                    .filter(|p| !stored.contains(p))
                    .cloned()
                    .collect();
                let existing = match unknown.is_empty() {
                    true => Vec::new(),
                    false => self.existing_patients(&unknown).await?,
                };
                let existing: std::collections::HashSet<&String> = existing.iter().collect();
                Filing {
                    filed: (audit.patients.iter())
                        .filter(|p| stored.contains(p) || existing.contains(p))
                        .cloned()
                        .collect(),
                    probed: Vec::new(),
                }
            }
        })
    }

    /// The ids among `ids` of Patients that exist.
    async fn existing_patients(&self, ids: &[String]) -> Result<Vec<String>, FhirError> {
        let query = SearchQuery::by_ids(served_type("Patient")?, ids.to_vec());
        let page = self.store.search(&query).await?;
        Ok(page.resources.into_iter().map(|r| r.id).collect())
    }

    /// Answers 429 when the caller was refused too often lately; such requests reach no data
    /// and write no record.
    fn admit(&self, context: &AccessContext) -> Result<(), FhirError> {
        Ok(self.refusals.check(&context.principal)?)
    }

    /// Writes the audit record (unless the write already did, atomically with it), counts a
    /// refusal against the caller's budget, then answers.
    async fn finish<T>(
        &self,
        audit: Pending<'_>,
        result: Result<T, FhirError>,
    ) -> Result<T, FhirError> {
        if audit.written {
            return result;
        }
        let denied = result.as_ref().err();
        let mut tx = self.store.database().begin_write().await?;
        let probed = self.write_audit(&mut tx, &audit, denied).await?;
        let principal = &audit.context.principal;
        let mut sources: Vec<&str> = audit.withheld.iter().map(|(s, _)| s.as_str()).collect();
        sources.dedup();
        for source in sources {
            let withheld: Vec<String> = (audit.withheld.iter())
                .filter(|(s, _)| s == source)
                .map(|(_, dropped)| format!("{} ({})", dropped.resource, dropped.reason))
                .collect();
            // A source can send hundreds: the first few name what it was, the rest are
            // counted, so one search cannot write megabytes into the log.
            const NAMED: usize = 10;
            let mut named = withheld[..withheld.len().min(NAMED)].join("; ");
            if withheld.len() > NAMED {
                named.push_str(&format!("; and {} more", withheld.len() - NAMED));
            }
            let event = SecurityEvent::new(
                SecurityKind::SourceWithheld,
                principal,
                audit.context.app.as_ref(),
                audit.describe(),
                format!(
                    "source '{source}' sent {} resource(s) that were withheld: {named}",
                    withheld.len(),
                ),
            );
            self.security.record_in(&mut tx.tx, &event).await?;
        }
        if (probed || denied.is_some_and(is_refusal)) && self.refusals.charge(principal) {
            let limits = self.refusals.limits();
            let event = SecurityEvent::new(
                SecurityKind::RateLimited,
                principal,
                audit.context.app.as_ref(),
                audit.describe(),
                format!(
                    "{} refused requests in a row: further requests are answered 429 (one more every {} s)",
                    limits.burst,
                    limits.refill_every.as_secs_f64()
                ),
            );
            self.security.record_in(&mut tx.tx, &event).await?;
        }
        tx.commit().await?;
        result
    }
}

/// What every `meta.source` the platform stamps starts with: a resource written through
/// [`FhirService`] carries one, naming who wrote it; imported data keeps its own source.
/// Search for them with `_source:below=urn:healthcloud:written`.
pub const WRITTEN_SOURCE: &str = "urn:healthcloud:written";

/// Who writes through `context`, as a `meta.source` URI (each part percent-encoded):
/// `urn:healthcloud:written:user:<role>:<user>` for a user through the FHIR API,
/// `urn:healthcloud:written:app:<publisher.app>:<role>:<user>` for an app acting for a user.
/// The AuditEvent of the write holds the rest (app version, digest, region).
pub fn written_source(context: &AccessContext) -> String {
    let part = |text: &str| form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
    let claims = &context.principal.claims;
    let user = format!("{}:{}", part(claims.role.as_str()), part(&claims.sub));
    match &context.app {
        Some(app) => format!(
            "{WRITTEN_SOURCE}:app:{}:{user}",
            part(&app.fhir_device_id())
        ),
        None => format!("{WRITTEN_SOURCE}:user:{user}"),
    }
}

/// Sets `meta.source` to who is writing, whatever the client sent: a client cannot make its
/// data look like a source system's. (A `meta` that is not an object is refused later.)
fn stamp_writer(resource: &mut Value, context: &AccessContext) {
    if let Some(object) = resource.as_object_mut()
        && let Some(meta) = object
            .entry("meta")
            .or_insert_with(|| Value::Object(Default::default()))
            .as_object_mut()
    {
        meta.insert("source".into(), Value::String(written_source(context)));
    }
}

/// How long a patient's match at a source is trusted before it is looked up again.
const PATIENT_INDEX_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// The first `limit` items of `lists`, each already in order, merged by `sort`: at each step
/// the list whose next item comes first, the earlier list when they compare equal. Each list
/// keeps its own order (a source's sorted answer stays as it sorted it), so merging the first
/// items of longer lists gives the first items of the same merge: every page of a search is
/// cut from one order, however the sources break ties.
fn merge(lists: Vec<Vec<StoredResource>>, sort: Sort, limit: usize) -> Vec<StoredResource> {
    let mut lists: Vec<std::collections::VecDeque<StoredResource>> =
        lists.into_iter().map(Into::into).collect();
    let mut merged = Vec::with_capacity(limit.min(lists.iter().map(|l| l.len()).sum()));
    while merged.len() < limit {
        let mut first: Option<usize> = None;
        for (index, list) in lists.iter().enumerate() {
            let Some(head) = list.front() else {
                continue;
            };
            let earlier = first.is_none_or(|best| {
                let best = lists[best].front().expect("a list with a head");
                sort.compare(head.sort_key(), best.sort_key()).is_lt()
            });
            if earlier {
                first = Some(index);
            }
        }
        let Some(first) = first else {
            break;
        };
        merged.extend(lists[first].pop_front());
    }
    merged
}

/// The one patient of a search whose consent allowed it: the search's compartment (by the
/// policy) or the one patient it names. Made only once consent was checked, it is what lets a
/// search ask the sources.
struct Consented(String);

/// Which patients' logs get an access record, and which patients it probed out of reach.
#[derive(Debug, Default)]
struct Filing {
    filed: Vec<String>,
    probed: Vec<String>,
}

fn encode(params: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

/// Parameters whose values identify a patient.
const IDENTIFYING: &[&str] = &[
    "_id",
    "identifier",
    "name",
    "patient",
    "subject",
    "birthdate",
    "general-practitioner",
    "family",
    "given",
    "address",
    "address-city",
    "address-postalcode",
    // A stamp names the user who wrote (urn:healthcloud:written:…:<user>).
    "_source",
];

/// The query as each patient's copy of its audit record shows it, so that no log names
/// another patient: identifying values are masked when the search reached several patients
/// (`several`), and always where they could name someone else (several alternatives, or a
/// chain or `_has`, which search other resources than the ones the record is about).
fn redact(query: &str, several: bool) -> String {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .map(|(name, value)| {
            let base = name.split([':', '.']).next().unwrap_or_default();
            // A chain, `_has` or `:not` names what the record is not about.
            let joined = name.contains('.') || base == "_has" || name.ends_with(":not");
            let identifying = IDENTIFYING.contains(&base) || joined;
            let value = match identifying && (several || joined || value.contains(',')) {
                true => "(redacted)".into(),
                false => value.into_owned(),
            };
            (name.into_owned(), value)
        })
        .collect();
    encode(&pairs)
}

/// An audit record being assembled while an interaction runs.
struct Pending<'a> {
    context: &'a AccessContext,
    interaction: Interaction,
    resource_type: &'a str,
    resource_id: Option<String>,
    query: Option<String>,
    /// The patients the access concerns (read, returned, named or written).
    patients: Vec<String>,
    /// Those of them whose compartment holds the data read or returned: they exist.
    stored: Vec<String>,
    /// The sources asked, and what each returned.
    sources: Vec<(String, String)>,
    /// What sources sent that was withheld, by source.
    withheld: Vec<(String, Dropped)>,
    written: bool,
}

impl<'a> Pending<'a> {
    /// What was asked, for the security log: `read Observation/x`, `search-type
    /// Observation?patient=…`.
    fn describe(&self) -> String {
        let mut text = format!("{} {}", self.interaction.fhir_code(), self.resource_type);
        if let Some(id) = &self.resource_id {
            text.push('/');
            text.push_str(id);
        }
        if let Some(query) = &self.query {
            text.push('?');
            text.push_str(query);
        }
        text
    }

    /// Takes in the record of a search run on this one's behalf: the patients it concerned
    /// and the sources it asked are this search's too.
    fn absorb(&mut self, other: Pending<'_>) {
        for patient in other.patients {
            if !self.patients.contains(&patient) {
                self.patients.push(patient);
            }
        }
        for patient in other.stored {
            if !self.stored.contains(&patient) {
                self.stored.push(patient);
            }
        }
        self.sources.extend(other.sources);
        self.withheld.extend(other.withheld);
    }

    fn new(context: &'a AccessContext, interaction: Interaction, resource_type: &'a str) -> Self {
        Pending {
            context,
            interaction,
            resource_type,
            resource_id: None,
            query: None,
            patients: Vec::new(),
            stored: Vec::new(),
            sources: Vec::new(),
            withheld: Vec::new(),
            written: false,
        }
    }
}

/// What an app keeps about the patient in context (the `kv` capability's partition for that
/// patient) is patient data: reaching it takes the patient's consent, and every access is
/// filed in the patient's log like a data call.
pub const APP_STATE: &str = "kv";

/// An app's access to the state it keeps about the patient in context, opened by
/// [`FhirService::app_state`] once the patient's consent allowed it. The work runs in
/// [`AppStateAccess::tx`]; [`AppStateAccess::commit`] files the access in the patient's log in
/// that same transaction. Dropped without a commit, nothing is changed and nothing is filed
/// (a write that failed its quota, say, reached nothing).
pub struct AppStateAccess<'a> {
    service: &'a FhirService,
    audit: Pending<'a>,
    tx: healthcloud_platform::db::WriteTx,
}

impl std::fmt::Debug for AppStateAccess<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppStateAccess")
            .field("patients", &self.audit.patients)
            .finish_non_exhaustive()
    }
}

impl FhirService {
    /// Opens an app's access to the state it keeps about the patient in context: `what` says
    /// which entry (`key=…`, `prefix=…`) for the log. Refused (and the refusal filed in the
    /// patient's log) when there is no patient in context or the patient's consent denies the
    /// app, its user or their organization anything at all: an app's notes about a patient
    /// can hold any of that patient's data.
    pub async fn app_state<'a>(
        &'a self,
        context: &'a AccessContext,
        interaction: Interaction,
        what: &str,
    ) -> Result<AppStateAccess<'a>, FhirError> {
        self.admit(context)?;
        let mut audit = Pending::new(context, interaction, APP_STATE);
        audit.query = Some(what.to_owned());
        let Some(patient) = context.patient() else {
            let refusal = FhirError::Forbidden(
                "no patient in context: an app keeps state about the patient it was opened for"
                    .into(),
            );
            return Err(self.finish::<()>(audit, Err(refusal)).await.unwrap_err());
        };
        audit.patients = vec![patient.to_owned()];
        if let Err(refusal) = self.check_consent(context, None, patient).await {
            return Err(self.finish::<()>(audit, Err(refusal)).await.unwrap_err());
        }
        let tx = self.store.database().begin_write().await?;
        Ok(AppStateAccess {
            service: self,
            audit,
            tx,
        })
    }
}

impl AppStateAccess<'_> {
    /// The transaction the access runs in.
    pub fn tx(&mut self) -> &mut healthcloud_platform::db::WriteTx {
        &mut self.tx
    }

    /// Files the access in the patient's log and commits it together with the work.
    pub async fn commit(self) -> Result<(), FhirError> {
        let AppStateAccess {
            service,
            audit,
            mut tx,
        } = self;
        service.write_audit(&mut tx, &audit, None).await?;
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::AppIdentity;
    use healthcloud_platform::auth::{Role, TokenIssuer, TokenRequest};
    use serde_json::json;

    fn context(sub: &str) -> AccessContext {
        let issuer = TokenIssuer::generate("test").with_audience(vec!["http://fhir.test".into()]);
        let token = issuer
            .mint(
                Role::Citizen,
                TokenRequest {
                    sub: Some(sub.into()),
                    patient: Some("p".into()),
                    ..Default::default()
                },
            )
            .unwrap();
        AccessContext::user(issuer.verifier().verify(&token).unwrap())
    }

    #[test]
    fn a_login_cannot_spell_out_an_app_in_the_stamp() {
        let forger = context("x:app:examples.bp-monitor");
        let stamp = written_source(&forger);
        assert_eq!(
            stamp,
            "urn:healthcloud:written:user:citizen:x%3Aapp%3Aexamples.bp-monitor"
        );
        let mut app = context("u");
        app.app = Some(AppIdentity {
            id: "examples/bp-monitor".into(),
            version: "1.0.0".into(),
            digest: "sha256:00".into(),
            publisher_key: "k".into(),
            region: "r".into(),
        });
        assert_eq!(
            written_source(&app),
            "urn:healthcloud:written:app:examples.bp-monitor:citizen:u"
        );
    }

    #[test]
    fn the_stamp_replaces_what_the_client_sent() {
        let mut resource = json!({"resourceType": "Observation",
            "meta": {"source": "https://lab.example", "tag": [{"code": "kept"}]}});
        stamp_writer(&mut resource, &context("u"));
        assert_eq!(
            resource["meta"]["source"],
            "urn:healthcloud:written:user:citizen:u"
        );
        assert_eq!(resource["meta"]["tag"][0]["code"], "kept");
    }
}

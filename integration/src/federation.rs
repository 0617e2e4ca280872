//! One upstream source's part of a search in a patient's compartment.
//!
//! The patient is found at the source by CPR number ([`PatientIndex`]); the search is sent
//! with the patient translated to the source's id and with every filter the source declares
//! it can search and that can be passed on exactly (tokens, URIs, string prefixes); what comes
//! back is renamed into healthcloud's namespace (ids `<source>.<id>`, references rewritten so
//! they resolve through healthcloud, the patient reference to the healthcloud patient,
//! `meta.source` naming the source) and then held, resource by resource, to the search's
//! filters, the policy's constraints and the patient's compartment by the store's own rules
//! ([`evaluate::satisfies`]). Whatever fails any of them is dropped: a source that ignores a
//! parameter, cannot express a scope's restriction or sends another patient's data leaks
//! nothing. What the source should not have sent (another patient's, another type, what fails
//! a parameter it was asked to apply) is said in [`SourceAnswer::dropped`]; what fails only
//! what it was not asked to apply is an ordinary non-match.
//!
//! Consent is the caller's to check before any source is asked.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::Value;

use crate::evaluate::satisfies;
use crate::params::{self, IndexRows, ParamKind};
use crate::patient_index::{IdentityError, PatientIndex, Remembered};
use crate::query::{Filter, Match, SearchQuery, Sort, Value as QueryValue, compartment_patients};
use crate::store::{Quantifier, StoredResource};
use crate::upstream::{Upstream, UpstreamCapabilities, UpstreamError};

/// The most resources asked of one source for one search.
pub const MAX_RESULTS_PER_SOURCE: usize = 1000;

/// A source as federation uses it: its client and what it declared it serves.
#[derive(Debug, Clone)]
pub struct FederatedSource {
    /// Its FHIR API.
    pub upstream: Upstream,
    /// Its CapabilityStatement, as last read (shared: a large one is read by every search).
    pub capabilities: Arc<UpstreamCapabilities>,
}

/// The healthcloud patient whose compartment is searched.
#[derive(Debug, Clone, Copy)]
pub struct CompartmentPatient<'a> {
    /// Healthcloud's id of the patient.
    pub id: &'a str,
    /// The patient's CPR number, by which sources know them.
    pub cpr: &'a str,
    /// What the patient index held about them.
    pub remembered: &'a Remembered,
}

/// A resource from a source, renamed into healthcloud's namespace, with its index.
#[derive(Debug, Clone)]
pub struct Renamed {
    /// The resource as healthcloud serves it.
    pub resource: Value,
    /// Its id here, `<source>.<id at the source>`.
    pub id: String,
    /// Its index rows, as the embedded store would keep them.
    pub rows: IndexRows,
}

impl Renamed {
    /// What it is ordered by in a search: its date and its id.
    fn sort_key(&self) -> (Option<i64>, &str) {
        (self.rows.sort_date, &self.id)
    }

    /// The resource as the store's resources are handed around, and its index.
    pub fn into_stored(self) -> (StoredResource, IndexRows) {
        let stored = StoredResource {
            version_id: self.resource["meta"]["versionId"]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1),
            patient_id: self.rows.patient_id.clone(),
            // `serde_json::to_string` writes into a `String` directly (`to_string` would go
            // through `fmt`, measurably slower for a page of resources).
            content: serde_json::to_string(&self.resource).expect("a JSON value serializes"),
            sort_date: self.rows.sort_date,
            id: self.id,
        };
        (stored, self.rows)
    }
}

/// What one source contributed to a search.
#[derive(Debug, Default)]
pub struct SourceAnswer {
    /// The first of the resources that passed every check, up to the end of the page asked
    /// for, in the search's order, as healthcloud serves them. They are written out in the
    /// source's own task, off the path of the merged answer, and the rest are only counted.
    pub resources: Vec<StoredResource>,
    /// How many resources passed every check.
    pub returned: usize,
    /// Resources the source should not have sent, and why (for the security log).
    pub dropped: Vec<Dropped>,
    /// Whether the source had more than [`MAX_RESULTS_PER_SOURCE`] matches.
    pub truncated: bool,
    /// Whether the search was sent: not when the source cannot search the type by patient
    /// or holds no such patient.
    pub searched: bool,
    /// How many resources match at the source: those read, or, when only the first of a
    /// sorted search were read, the source's own count.
    pub total: usize,
}

/// A resource a source sent that did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// `Type/id` as the source named it.
    pub resource: String,
    /// Why it was not returned.
    pub reason: String,
}

/// The `meta.source` of a resource read from source `name`.
pub fn origin(name: &str) -> String {
    format!("urn:healthcloud:source:{name}")
}

/// Whether resources of `resource_type` are the home store's alone, never asked of a source:
/// a patient's consents are enforced from the home store only, and the audit trail records the
/// accesses through this platform. A source's Consent ("you opted out") or AuditEvent in the
/// patient's own list would tell them something healthcloud does not do.
pub fn home_only(resource_type: &str) -> bool {
    matches!(resource_type, "Consent" | "AuditEvent")
}

/// Source `source`'s part of `query` in `patient`'s compartment.
pub async fn search_source(
    source: &FederatedSource,
    index: &PatientIndex,
    query: &SearchQuery,
    patient: CompartmentPatient<'_>,
) -> Result<SourceAnswer, IdentityError> {
    let name = source.upstream.name();
    let resource_type = query.type_def.name;
    // A patient's own record (demographics) is the home record's; sources add clinical data.
    // A source that cannot search the type by patient is not asked: ignoring the parameter, it
    // would send everyone's data.
    if resource_type == "Patient"
        || home_only(resource_type)
        || !source.capabilities.searches(resource_type, "patient")
    {
        return Ok(SourceAnswer::default());
    }
    let Some(source_patient) = index
        .at_source_with(
            &source.upstream,
            patient.id,
            patient.cpr,
            patient.remembered,
        )
        .await?
    else {
        return Ok(SourceAnswer::default());
    };
    let mut parameters = vec![("patient".to_owned(), format!("Patient/{source_patient}"))];
    let pushed = query.filters.iter().chain(
        // A group of one alternative must hold as a whole; several alternatives are ORed
        // and are only applied here.
        query
            .constraints
            .groups
            .iter()
            .filter(|group| group.len() == 1)
            .flat_map(|group| group[0].filters.iter()),
    );
    // What the source is asked to apply: a resource that fails it is the source's fault.
    let mut asked = SearchQuery {
        filters: Vec::new(),
        constraints: Default::default(),
        ..query.clone()
    };
    let mut candidates = 0;
    for filter in pushed {
        // The patient's own compartment is what `patient=` asks the source for.
        if names_only(query, filter, patient.id) {
            continue;
        }
        candidates += 1;
        if let Some((parameter, value)) = pushed_down(filter)
            && source.capabilities.searches(
                resource_type,
                parameter.split(':').next().unwrap_or_default(),
            )
        {
            parameters.push((parameter, value));
            asked.filters.push(filter.clone());
        }
    }
    // When the source applies the whole search and can sort it as asked, only the first
    // matches up to the end of the page are read, in its order, with its count of the rest;
    // otherwise every match (up to the cap) is read and ordered here.
    let exact = asked.filters.len() == candidates
        && query
            .constraints
            .groups
            .iter()
            .all(|group| group.len() == 1);
    let sort = match query.sort {
        Sort::DateAscending => Some("date"),
        Sort::DateDescending => Some("-date"),
        Sort::Id => None,
    };
    let wanted = match sort {
        Some(sort) if exact && source.capabilities.searches(resource_type, "date") => {
            parameters.push(("_sort".into(), sort.into()));
            Some((query.offset + query.count).clamp(1, MAX_RESULTS_PER_SOURCE))
        }
        _ => None,
    };
    let count = wanted.unwrap_or(MAX_RESULTS_PER_SOURCE);
    parameters.push(("_count".into(), count.to_string()));
    let pages = read_pages(&source.upstream, resource_type, parameters, wanted).await?;
    let patients = BTreeMap::from([(source_patient.clone(), patient.id.to_owned())]);
    let names = Names {
        source: name,
        base: source.upstream.base().as_str().trim_end_matches('/'),
        patients: &patients,
    };
    // Only what the checks read is indexed (a source's page is indexed on every search).
    let read = crate::evaluate::params_read(query);
    let mut dropped = Vec::new();
    let mut admitted = Vec::new();
    // A source that sends one resource twice must not make it count, or page, twice.
    let mut returned = BTreeSet::new();
    for mut resource in pages.matches {
        let named = format!(
            "{}/{}",
            resource["resourceType"].as_str().unwrap_or("?"),
            resource["id"].as_str().unwrap_or("?")
        );
        match admit(&names, &mut resource, query, &asked, patient.id, &read) {
            Ok(None) => {}
            Ok(Some((id, _))) if returned.contains(&id) => dropped.push(Dropped {
                resource: named,
                reason: "it was sent twice".into(),
            }),
            Ok(Some((id, rows))) => {
                returned.insert(id.clone());
                admitted.push(Renamed { resource, id, rows });
            }
            Err(reason) => dropped.push(Dropped {
                resource: named,
                reason,
            }),
        }
    }
    // A source's sorted answer keeps its order (it breaks ties as it does, the same on every
    // page); anything else is sorted as the embedded store sorts.
    if !pages.ordered {
        admitted.sort_by(|a, b| query.sort.compare(a.sort_key(), b.sort_key()));
    }
    let total = match pages.first_of {
        // The source's count, of what it was asked (the whole search): what it sent beyond
        // the page is not read, so what it sent that fails is not known either.
        Some(total) => total.max(admitted.len()),
        None => admitted.len(),
    };
    Ok(SourceAnswer {
        returned: admitted.len(),
        resources: (admitted.into_iter())
            .take(query.offset + query.count)
            .map(|renamed| renamed.into_stored().0)
            .collect(),
        dropped,
        truncated: pages.truncated,
        searched: true,
        total,
    })
}

/// The most pages read from one source for one search.
const MAX_PAGES_PER_SOURCE: usize = 10;

/// What [`read_pages`] read.
struct Pages {
    /// The matches read, in the source's order.
    matches: Vec<Value>,
    /// Whether the source holds more than could be read.
    truncated: bool,
    /// Whether `matches` are the source's sorted order (of all its matches, or the first).
    ordered: bool,
    /// When only the first matches were read (enough for the page): the source's count of
    /// them all.
    first_of: Option<usize>,
}

/// The matches of a search at `source`, page after page, up to [`MAX_RESULTS_PER_SOURCE`]
/// and [`MAX_PAGES_PER_SOURCE`], or only the first `wanted` when the source says how many
/// match in all (`Bundle.total`). A `next` link is followed only as parameters of a search at
/// the source's own base: wherever it points, no other server is asked (and whatever comes
/// back is held to every check, as the first page).
async fn read_pages(
    source: &Upstream,
    resource_type: &str,
    parameters: Vec<(String, String)>,
    wanted: Option<usize>,
) -> Result<Pages, UpstreamError> {
    let mut matches = Vec::new();
    let mut parameters = parameters;
    let mut reported_total = None;
    let done = |matches: Vec<Value>, truncated: bool| Pages {
        matches,
        truncated,
        ordered: false,
        first_of: None,
    };
    for page in 0..MAX_PAGES_PER_SOURCE {
        let mut bundle = source.search(resource_type, &parameters).await?;
        if page == 0 {
            reported_total = bundle["total"].as_u64().map(|n| n as usize);
        }
        let read = matches.len();
        if let Value::Array(entries) = bundle["entry"].take() {
            matches.extend(
                entries
                    .into_iter()
                    .filter(|entry| {
                        entry["search"]["mode"] != "outcome" && entry["search"]["mode"] != "include"
                    })
                    .map(|mut entry| entry["resource"].take()),
            );
        }
        // A source that sends more than was asked for is read no further, as if it had said
        // it holds more: one search merges, sorts and logs at most that many of its resources.
        if matches.len() > MAX_RESULTS_PER_SOURCE {
            matches.truncate(MAX_RESULTS_PER_SOURCE);
            return Ok(done(matches, true));
        }
        let next = next_parameters(&bundle, resource_type);
        if let (Some(wanted), Some(total), Some(_)) = (wanted, reported_total, &next)
            && matches.len() >= wanted
        {
            return Ok(Pages {
                matches,
                truncated: false,
                ordered: true,
                first_of: Some(total),
            });
        }
        match next {
            None if has_next(&bundle) => return Ok(done(matches, true)),
            None => {
                return Ok(Pages {
                    matches,
                    truncated: false,
                    // All of a sorted search: in the source's order too.
                    ordered: wanted.is_some(),
                    first_of: None,
                });
            }
            // A page that adds nothing would be asked for again and again.
            Some(_) if matches.len() == read || matches.len() == MAX_RESULTS_PER_SOURCE => {
                return Ok(done(matches, true));
            }
            Some(next) => parameters = next,
        }
    }
    Ok(done(matches, true))
}

/// Whether `filter` is a condition on the compartment that names only `patient`.
fn names_only(query: &SearchQuery, filter: &Filter, patient: &str) -> bool {
    match filter {
        Filter::Param { def, mode, values } => {
            compartment_patients(query.type_def, def, *mode, values)
                .is_some_and(|named| named.iter().all(|id| *id == patient))
        }
        _ => false,
    }
}

fn has_next(bundle: &Value) -> bool {
    bundle["link"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|link| link["relation"] == "next")
}

/// The parameters of a searchset's `next` link, when it is a search of `resource_type`.
fn next_parameters(bundle: &Value, resource_type: &str) -> Option<Vec<(String, String)>> {
    let link = bundle["link"]
        .as_array()?
        .iter()
        .find(|link| link["relation"] == "next")?["url"]
        .as_str()?;
    let url = url::Url::parse(link).ok()?;
    url.path_segments()?
        .next_back()
        .filter(|last| *last == resource_type)?;
    Some(url.query_pairs().into_owned().collect())
}

/// Resource `resource_type`/`id` read from `source`, renamed into healthcloud's namespace:
/// `None` when the source has no such resource. Its patient references resolve to the
/// healthcloud patients they are ([`PatientIndex::patient_at_home`]); one that is nobody
/// here stays the source's (`Patient/<source>.<id>`), in no healthcloud patient's compartment.
pub async fn read_source(
    source: &Upstream,
    index: &PatientIndex,
    resource_type: &str,
    id: &str,
) -> Result<Option<Renamed>, IdentityError> {
    if home_only(resource_type) {
        return Ok(None);
    }
    let Some(mut resource) = source.read(resource_type, id).await? else {
        return Ok(None);
    };
    let base = source.base().as_str().trim_end_matches('/');
    let mut patients = BTreeMap::new();
    for source_patient in patient_references(&mut resource, base) {
        if let Some(patient) = index.patient_at_home(source, &source_patient).await? {
            patients.insert(source_patient, patient);
        }
    }
    let names = Names {
        source: source.name(),
        base,
        patients: &patients,
    };
    // A read is held to any constraint of the caller's: all of it is indexed.
    let (renamed, mut rows) = match rename(&names, &mut resource, resource_type, |_| true) {
        Ok(renamed) => renamed,
        Err(reason) => {
            // What healthcloud cannot serve (its patient named by a URL elsewhere, say) is
            // not there for the caller, as a search would not return it either. Not a
            // failure of the source: any caller could read it again and again to get the
            // source skipped for everyone.
            tracing::warn!(source = source.name(), resource = %format!("{resource_type}/{id}"), %reason, "a resource read from a source cannot be served");
            return Ok(None);
        }
    };
    // A source's Patient record is that patient's data (name, CPR number): in the compartment
    // of the healthcloud patient it is, so their consent and confinement hold for it as for
    // their home record. One that is nobody here stays in its own.
    if resource_type == "Patient"
        && let Some(patient) = index.patient_at_home(source, id).await?
    {
        rows.patient_id = Some(patient);
    }
    Ok(Some(Renamed {
        resource,
        id: renamed,
        rows,
    }))
}

/// How a source's names become healthcloud's.
struct Names<'a> {
    /// The source's name, the prefix of its resources' ids here.
    source: &'a str,
    /// Its FHIR base URL, without a trailing `/`: absolute references under it are its own.
    base: &'a str,
    /// The source's patient ids the index matched → healthcloud's patient ids.
    patients: &'a BTreeMap<String, String>,
}

impl Names<'_> {
    /// `reference` as the source's `Type/id`, when it points into the source (relative, or
    /// absolute under its base).
    fn at_source(&self, reference: &str) -> Option<(String, String)> {
        let relative = match reference.strip_prefix(self.base) {
            Some(rest) => rest.strip_prefix('/'),
            None => (!reference.contains("://")).then_some(reference),
        };
        relative.and_then(params::split_reference)
    }
}

/// Renames `resource` from a source into healthcloud's namespace, holds it to `query`, its
/// constraints and `patient`'s compartment: its id and index; `None` for an ordinary
/// non-match, one that fails only what the source was not `asked` to apply (a date, a
/// restriction it cannot express), which is no fault of the source's; or why the source
/// should not have sent it.
fn admit(
    names: &Names<'_>,
    resource: &mut Value,
    query: &SearchQuery,
    asked: &SearchQuery,
    patient: &str,
    read: &BTreeSet<String>,
) -> Result<Option<(String, IndexRows)>, String> {
    let (id, rows) = rename(names, resource, query.type_def.name, |param| {
        read.contains(param)
    })?;
    if rows.patient_id.as_deref() != Some(patient) {
        return Err("it is not in the patient's compartment".into());
    }
    if satisfies(query, &id, &rows, Quantifier::Any) {
        return Ok(Some((id, rows)));
    }
    if satisfies(asked, &id, &rows, Quantifier::Any) {
        return Ok(None);
    }
    Err("it does not satisfy the search or the caller's access".into())
}

/// Renames `resource`, which should be a `resource_type`, from a source into healthcloud's
/// namespace (id, references, `meta.source`) and indexes it (the parameters `indexed` names,
/// see [`params::index_where`]); why not, when it cannot be.
fn rename(
    names: &Names<'_>,
    resource: &mut Value,
    resource_type: &str,
    indexed: impl Fn(&str) -> bool,
) -> Result<(String, IndexRows), String> {
    let name = names.source;
    if resource["resourceType"] != resource_type {
        return Err(format!(
            "its type is {}, not {resource_type}",
            resource["resourceType"]
        ));
    }
    let id = resource["id"].as_str().ok_or("it has no id")?.to_owned();
    let renamed = format!("{name}.{id}");
    // `.` and `..` are path steps, which a read by id never reaches (see `Upstream::read`).
    if !healthcloud_platform::auth::is_fhir_id(&id)
        || !healthcloud_platform::auth::is_fhir_id(&renamed)
        || id == "."
        || id == ".."
    {
        return Err("its id cannot be named through healthcloud".into());
    }
    rewrite_references(resource, names);
    // Every reference into the source is relative now: a Patient reference still absolute
    // points at another server, whose patient `<id>` is not healthcloud's patient `<id>`,
    // although the index reads the end of any URL as a local reference.
    let mut elsewhere = BTreeSet::new();
    params::for_each_reference(resource, &mut |reference| {
        if reference.contains("://")
            && let Some((resource_type, id)) = params::split_reference(reference)
            && resource_type == "Patient"
        {
            elsewhere.insert(id);
        }
    });
    resource["id"] = Value::String(renamed.clone());
    // Whatever the source said its meta was, healthcloud says where the resource came from.
    if !resource["meta"].is_object() {
        resource["meta"] = Value::Object(serde_json::Map::new());
    }
    resource["meta"]["source"] = Value::String(origin(name));
    let rows = params::index_where(resource_type, &renamed, resource, indexed)
        .map_err(|e| format!("it cannot be indexed: {e}"))?;
    if let Some(patient) = &rows.patient_id
        && elsewhere.contains(patient)
    {
        return Err(format!(
            "its patient is named by a URL outside the source (…/Patient/{patient}): \
             healthcloud cannot tell who that is"
        ));
    }
    Ok((renamed, rows))
}

/// The source's ids of the patients `resource` references.
fn patient_references(resource: &mut Value, base: &str) -> BTreeSet<String> {
    let names = Names {
        source: "",
        base,
        patients: &BTreeMap::new(),
    };
    let mut found = BTreeSet::new();
    params::for_each_reference(resource, &mut |reference| {
        if let Some((resource_type, id)) = names.at_source(reference)
            && resource_type == "Patient"
        {
            found.insert(id);
        }
    });
    found
}

/// Rewrites every literal reference in `resource` so it resolves through healthcloud: a
/// patient the index matched to the healthcloud patient, any other `Type/id` of the source
/// (relative, or absolute under its base) to `Type/<source>.<id>`. References to anything
/// else (absolute URLs elsewhere, contained `#…`) are left as they are.
fn rewrite_references(resource: &mut Value, names: &Names<'_>) {
    params::for_each_reference(resource, &mut |reference| {
        if let Some((resource_type, id)) = names.at_source(reference) {
            *reference = match names.patients.get(&id) {
                Some(patient) if resource_type == "Patient" => format!("Patient/{patient}"),
                _ => format!("{resource_type}/{}.{id}", names.source),
            };
        }
    });
}

/// `filter` as a query parameter a source applies exactly as the store would, or `None`
/// (then it is only applied here). Only values that mean the same on any FHIR server are
/// passed on: tokens and URIs; references name healthcloud's ids, strings are compared in
/// their Danish and accent-free forms (`text`) and dates are left to [`satisfies`].
fn pushed_down(filter: &Filter) -> Option<(String, String)> {
    let Filter::Param { def, mode, values } = filter else {
        return None;
    };
    // Through healthcloud, `meta.source` names the source itself (`origin`), whatever the
    // source had there: asked of the source, the value would be matched against the source's
    // own and find nothing, or what it forged.
    if *mode != Match::Prefix || def.name == "_source" {
        return None;
    }
    let rendered: Option<Vec<String>> = values
        .iter()
        .map(|value| match (def.kind, value) {
            (ParamKind::Token, QueryValue::Token { system, code }) => Some(format!(
                "{}{}",
                system
                    .as_deref()
                    .map(|s| format!("{s}|"))
                    .unwrap_or_default(),
                code.as_deref().unwrap_or_default()
            )),
            (ParamKind::Uri, QueryValue::Uri(uri)) => Some(uri.clone()),
            _ => None,
        })
        .collect();
    let rendered = rendered?;
    // A comma inside a value would split it into alternatives at the source.
    if rendered.iter().any(|v| v.contains(',') || v.is_empty()) {
        return None;
    }
    Some((def.name.to_owned(), rendered.join(",")))
}

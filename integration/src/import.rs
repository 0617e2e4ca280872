//! Loading FHIR R4 Bundles (`transaction`, `batch`, `collection`) into the embedded store, e.g.
//! Synthea output. Each Bundle is all-or-nothing: every entry is resolved (`urn:uuid:`
//! references, conditional `Type?identifier=` references and `ifNoneExist`) and validated
//! before anything is written, and a bad element is reported by its path in the Bundle.
//! Validated Bundles are written in groups, so a large import commits in few transactions.

use std::collections::{BTreeMap, HashMap};

use healthcloud_platform::auth::is_fhir_id;
use healthcloud_platform::db::WriteTx;
use serde_json::Value;

use crate::date;
use crate::error::FhirError;
use crate::params::{self, split_reference};
use crate::sources::{check_home_compartment, split_source_id};
use crate::store::{EmbeddedStore, Prepared};
use crate::validate;

/// Counts of what an import wrote.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ImportReport {
    /// Bundles written.
    pub bundles: usize,
    /// Resources written, by type.
    pub by_type: BTreeMap<String, usize>,
    /// Of those, patient data that names its patient otherwise than literally (by identifier,
    /// a contained Patient), by type: kept, but served to no one
    /// ([`TypeDef::placed_only`](crate::params::TypeDef::placed_only)).
    pub unplaced: BTreeMap<String, usize>,
}

impl ImportReport {
    /// Resources written in all.
    pub fn resources(&self) -> usize {
        self.by_type.values().sum()
    }
}

/// Writes Bundles in groups: [`Importer::add`] validates one Bundle (refusing it whole on any
/// error), [`Importer::flush`] starts committing what was added while the next group is being
/// prepared, and [`Importer::finish`] waits for everything to be durable.
#[derive(Debug)]
pub struct Importer<'a> {
    store: &'a EmbeddedStore,
    pending: Vec<Prepared>,
    /// Where each (type, id) sits in `pending`: a later Bundle writing the same resource
    /// replaces it, instead of both reaching the database's primary key.
    pending_index: HashMap<(String, String), usize>,
    pending_bundles: usize,
    /// The group being committed in the background, if any.
    in_flight: Option<tokio::task::JoinHandle<Result<ImportReport, FhirError>>>,
    /// Ids of resources imported in this run, by `Type?identifier=system|value`, so later
    /// Bundles' conditional references resolve (Synthea puts practitioners and organizations
    /// in Bundles of their own).
    known_identifiers: HashMap<String, String>,
    report: ImportReport,
}

/// Resources per commit: large enough to amortize fsync, small enough to bound memory.
const GROUP_RESOURCES: usize = 20_000;

impl<'a> Importer<'a> {
    /// An importer into `store`.
    pub fn new(store: &'a EmbeddedStore) -> Self {
        Importer {
            store,
            pending: Vec::new(),
            pending_index: HashMap::new(),
            pending_bundles: 0,
            in_flight: None,
            known_identifiers: HashMap::new(),
            report: ImportReport::default(),
        }
    }

    /// Validates `bundle` and queues it; commits the group when it is large.
    pub async fn add(&mut self, bundle: Value) -> Result<usize, FhirError> {
        let prepared = self.prepare(bundle).await?;
        let count = prepared.len();
        self.queue(prepared);
        self.pending_bundles += 1;
        if self.pending.len() >= GROUP_RESOURCES {
            self.flush().await?;
        }
        Ok(count)
    }

    /// Queues resources prepared elsewhere (data generation), bypassing Bundle resolution.
    pub async fn add_prepared(&mut self, prepared: Vec<Prepared>) -> Result<(), FhirError> {
        self.queue(prepared);
        if self.pending.len() >= GROUP_RESOURCES {
            self.flush().await?;
        }
        Ok(())
    }

    /// Starts committing everything queued, after the previous group is durable.
    pub async fn flush(&mut self) -> Result<(), FhirError> {
        self.wait_in_flight().await?;
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut group = std::mem::take(&mut self.pending);
        self.pending_index.clear();
        let bundles = std::mem::take(&mut self.pending_bundles);
        let store = self.store.clone();
        self.in_flight = Some(tokio::spawn(async move {
            // In key order, B-tree inserts walk the pages once instead of jumping around.
            group
                .sort_unstable_by(|a, b| (&a.resource_type, &a.id).cmp(&(&b.resource_type, &b.id)));
            let mut tx = store.database().begin_write().await?;
            bump_existing_versions(&store, &mut tx, &mut group).await?;
            store.write(&mut tx, &group).await?;
            tx.commit().await?;
            let mut report = ImportReport {
                bundles,
                ..Default::default()
            };
            for item in group {
                let unplaced = item.index.patient_id.is_none()
                    && params::type_def(&item.resource_type).is_some_and(|t| t.placed_only());
                if unplaced {
                    *report
                        .unplaced
                        .entry(item.resource_type.clone())
                        .or_default() += 1;
                }
                *report.by_type.entry(item.resource_type).or_default() += 1;
            }
            Ok(report)
        }));
        Ok(())
    }

    fn queue(&mut self, prepared: Vec<Prepared>) {
        for item in prepared {
            let key = (item.resource_type.clone(), item.id.clone());
            match self.pending_index.get(&key) {
                Some(&position) => self.pending[position] = item,
                None => {
                    self.pending_index.insert(key, self.pending.len());
                    self.pending.push(item);
                }
            }
        }
    }

    async fn wait_in_flight(&mut self) -> Result<(), FhirError> {
        if let Some(handle) = self.in_flight.take() {
            // Whatever went wrong, it went wrong for the whole group, not for the Bundle being
            // added now: report it as a storage failure, which callers treat as fatal.
            let done = match handle.await {
                Ok(Ok(done)) => done,
                Ok(Err(error)) => {
                    return Err(FhirError::Internal(
                        anyhow::Error::new(error).context("committing a group of Bundles failed"),
                    ));
                }
                Err(error) => return Err(FhirError::Internal(error.into())),
            };
            self.report.bundles += done.bundles;
            for (resource_type, count) in done.by_type {
                *self.report.by_type.entry(resource_type).or_default() += count;
            }
            for (resource_type, count) in done.unplaced {
                *self.report.unplaced.entry(resource_type).or_default() += count;
            }
        }
        Ok(())
    }

    /// What has been committed so far (in the order Bundles were added).
    pub fn committed(&self) -> &ImportReport {
        &self.report
    }

    /// Commits the rest and returns what was written.
    pub async fn finish(mut self) -> Result<ImportReport, FhirError> {
        self.flush().await?;
        self.wait_in_flight().await?;
        if self.report.resources() > 0 {
            self.store.refresh_statistics().await?;
        }
        Ok(self.report)
    }

    async fn prepare(&mut self, mut bundle: Value) -> Result<Vec<Prepared>, FhirError> {
        if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
            return Err(FhirError::invalid(
                "Bundle.resourceType",
                "expected a FHIR Bundle",
            ));
        }
        let kind = bundle
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if !["transaction", "batch", "collection"].contains(&kind.as_str()) {
            return Err(FhirError::invalid(
                "Bundle.type",
                format!("'{kind}' bundles are not imported; use transaction, batch or collection"),
            ));
        }
        let entries = match bundle.get_mut("entry") {
            Some(Value::Array(entries)) => std::mem::take(entries),
            None => Vec::new(),
            Some(_) => return Err(FhirError::invalid("Bundle.entry", "must be an array")),
        };

        // Pass 1: give every entry its final id and learn what its fullUrl stands for.
        let mut targets: HashMap<String, String> = HashMap::new();
        let mut identifiers: HashMap<String, String> = HashMap::new();
        let mut seen: HashMap<(String, String), usize> = HashMap::new();
        let mut planned = Vec::new();
        for (i, mut entry) in entries.into_iter().enumerate() {
            let path = format!("Bundle.entry[{i}]");
            let resource = entry
                .get_mut("resource")
                .map(Value::take)
                .ok_or_else(|| FhirError::invalid(&path, "every entry needs a resource"))?;
            let resource_type = resource_type(&resource, &format!("{path}.resource"))?;
            let request = entry.get("request");
            let method = request
                .and_then(|r| r.get("method"))
                .and_then(Value::as_str)
                .unwrap_or(if kind == "collection" { "PUT" } else { "POST" });
            let id = match method {
                "PUT" => {
                    let from_url = request
                        .and_then(|r| r.get("url"))
                        .and_then(Value::as_str)
                        .and_then(split_reference)
                        .map(|(_, id)| id);
                    let id = from_url.or_else(|| {
                        resource
                            .get("id")
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    });
                    match id {
                        // `<source>.<id>` names a resource held at a source: a home resource of
                        // that id would be listed by searches but never read back.
                        Some(id) if split_source_id(&id).is_some() => {
                            return Err(FhirError::invalid(
                                format!("{path}.resource.id"),
                                format!(
                                    "'{id}' has the form <source>.<id>, which names resources held \
                                     at a source; give it an id without a '.' after a lowercase \
                                     name (or POST it for a new id)"
                                ),
                            ));
                        }
                        Some(id) if is_fhir_id(&id) => id,
                        Some(id) => {
                            return Err(FhirError::invalid(
                                format!("{path}.resource.id"),
                                format!("'{id}' is not a valid id"),
                            ));
                        }
                        None => new_id(),
                    }
                }
                "POST" => new_id(),
                other => {
                    return Err(FhirError::invalid(
                        format!("{path}.request.method"),
                        format!("{other} entries are not imported; use POST or PUT"),
                    ));
                }
            };
            let mut id = id;
            let mut skip = false;
            if let Some(condition) = request
                .and_then(|r| r.get("ifNoneExist"))
                .and_then(Value::as_str)
            {
                let key = format!("{resource_type}?{condition}");
                if let Some(existing) = self
                    .resolve_conditional(&key, &identifiers, &format!("{path}.request.ifNoneExist"))
                    .await?
                {
                    id = existing;
                    skip = true;
                }
            }
            for identifier in identifier_keys(&resource_type, &resource) {
                identifiers.entry(identifier).or_insert_with(|| id.clone());
            }
            if !skip && let Some(earlier) = seen.insert((resource_type.clone(), id.clone()), i) {
                return Err(FhirError::invalid(
                    format!("{path}.resource.id"),
                    format!("{resource_type}/{id} is also written by Bundle.entry[{earlier}]"),
                ));
            }
            if let Some(full_url) = entry.get("fullUrl").and_then(Value::as_str) {
                let target = format!("{resource_type}/{id}");
                // Relative references resolve against an absolute fullUrl (FHIR R4 §2.36.4).
                if !full_url.starts_with("urn:")
                    && let Some((t, old_id)) = split_reference(full_url)
                {
                    targets.insert(format!("{t}/{old_id}"), target.clone());
                }
                targets.insert(full_url.to_owned(), target);
            }
            planned.push((path, resource_type, id, resource, skip));
        }

        // Pass 2: rewrite references, validate, stamp and index.
        let now = date::now_ms();
        let mut prepared = Vec::with_capacity(planned.len());
        for (path, resource_type, id, mut resource, skip) in planned {
            if skip {
                continue;
            }
            self.rewrite_references(
                &mut resource,
                &targets,
                &identifiers,
                &format!("{path}.resource"),
            )
            .await?;
            let in_bundle = |e: FhirError| match e {
                FhirError::Invalid {
                    path: inner,
                    message,
                } => FhirError::Invalid {
                    path: format!(
                        "{path}.resource{}",
                        inner.strip_prefix(resource_type.as_str()).unwrap_or(&inner)
                    ),
                    message,
                },
                other => other,
            };
            if params::type_def(&resource_type).is_some() {
                validate::resource(&resource_type, &resource).map_err(in_bundle)?;
            }
            let item = Prepared::new(&resource_type, &id, 1, now, resource).map_err(in_bundle)?;
            check_home_compartment(&resource_type, item.index.patient_id.as_deref())
                .map_err(in_bundle)?;
            prepared.push(item);
        }
        for (key, id) in identifiers {
            self.known_identifiers.entry(key).or_insert(id);
        }
        Ok(prepared)
    }

    async fn rewrite_references(
        &self,
        value: &mut Value,
        targets: &HashMap<String, String>,
        identifiers: &HashMap<String, String>,
        path: &str,
    ) -> Result<(), FhirError> {
        // Iterative walk without per-node paths (they cost more than the walk); the path of a
        // bad reference is looked up only when there is one.
        let mut stack: Vec<&mut Value> = vec![&mut *value];
        let mut dangling = None;
        while let Some(value) = stack.pop() {
            match value {
                Value::Object(object) => {
                    if let Some(Value::String(reference)) = object.get("reference") {
                        let reference = reference.clone();
                        if let Some(target) = targets.get(&reference) {
                            object.insert("reference".into(), Value::String(target.clone()));
                        } else if reference.starts_with("urn:uuid:") {
                            dangling = Some(reference);
                            break;
                        } else if let Some((resource_type, _)) = reference.split_once('?') {
                            match self
                                .resolve_conditional(&reference, identifiers, path)
                                .await?
                            {
                                Some(id) => {
                                    object.insert(
                                        "reference".into(),
                                        Value::String(format!("{resource_type}/{id}")),
                                    );
                                }
                                None => {
                                    // Not imported (yet): keep it as a logical reference by
                                    // identifier, which R4 allows, not a dangling search URL.
                                    let (resource_type, identifier) = logical_reference(&reference);
                                    object.remove("reference");
                                    object.insert("type".into(), Value::String(resource_type));
                                    object.insert("identifier".into(), identifier);
                                }
                            }
                        }
                    }
                    stack.extend(
                        object
                            .iter_mut()
                            .filter(|(k, _)| *k != "reference")
                            .map(|(_, v)| v),
                    );
                }
                Value::Array(items) => stack.extend(items.iter_mut()),
                _ => {}
            }
        }
        drop(stack);
        match dangling {
            None => Ok(()),
            Some(reference) => Err(FhirError::invalid(
                format!(
                    "{path}{}",
                    path_of_reference(value, &reference).unwrap_or_default()
                ),
                format!("'{reference}' matches no entry's fullUrl in this Bundle"),
            )),
        }
    }

    /// Resolves `Type?identifier=system|value` against this Bundle, the pending group and the store.
    async fn resolve_conditional(
        &self,
        key: &str,
        identifiers: &HashMap<String, String>,
        path: &str,
    ) -> Result<Option<String>, FhirError> {
        let (resource_type, condition) = key.split_once('?').unwrap_or((key, ""));
        let Some(value) = condition.strip_prefix("identifier=") else {
            return Err(FhirError::invalid(
                path,
                format!("only identifier= conditions are supported, not '{condition}'"),
            ));
        };
        let value = form_urlencoded::parse(format!("v={value}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let normalized = format!("{resource_type}?identifier={value}");
        if let Some(id) = identifiers
            .get(&normalized)
            .or_else(|| self.known_identifiers.get(&normalized))
        {
            return Ok(Some(id.clone()));
        }
        let Some(type_def) = params::type_def(resource_type) else {
            return Ok(None);
        };
        if type_def.param("identifier").is_none() {
            return Ok(None);
        }
        let query = crate::query::SearchQuery::parse(
            resource_type,
            &[
                ("identifier".to_owned(), value),
                ("_count".to_owned(), "1".to_owned()),
            ],
            crate::query::PageLimits::default(),
        )?;
        let page = self.store.search(&query).await?;
        Ok(page.resources.first().map(|r| r.id.clone()))
    }
}

/// Resources that replace stored ones (PUT entries, re-imports) get the next version.
async fn bump_existing_versions(
    store: &EmbeddedStore,
    tx: &mut WriteTx,
    group: &mut [Prepared],
) -> Result<(), FhirError> {
    let mut by_type: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for item in group.iter() {
        by_type
            .entry(item.resource_type.clone())
            .or_default()
            .push(item.id.clone());
    }
    let mut existing = HashMap::new();
    for (resource_type, ids) in by_type {
        for (id, version) in store.versions(tx, &resource_type, &ids).await? {
            existing.insert((resource_type.clone(), id), version);
        }
    }
    if existing.is_empty() {
        return Ok(());
    }
    for item in group.iter_mut() {
        if let Some(version) = existing.get(&(item.resource_type.clone(), item.id.clone())) {
            let mut resource: Value =
                serde_json::from_str(&item.content).map_err(|e| FhirError::Internal(e.into()))?;
            resource["meta"]["versionId"] = Value::String((version + 1).to_string());
            item.version_id = version + 1;
            item.content = resource.to_string();
        }
    }
    Ok(())
}

fn resource_type(resource: &Value, path: &str) -> Result<String, FhirError> {
    match resource.get("resourceType").and_then(Value::as_str) {
        Some(t)
            if t.starts_with(|c: char| c.is_ascii_uppercase())
                && t.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            Ok(t.to_owned())
        }
        _ => Err(FhirError::invalid(
            format!("{path}.resourceType"),
            "missing or not a FHIR type name",
        )),
    }
}

/// `Type?identifier=system|value` keys under which conditional references may find `resource`.
fn identifier_keys(resource_type: &str, resource: &Value) -> Vec<String> {
    params::select(resource, "identifier")
        .into_iter()
        .filter_map(|identifier| {
            let value = identifier.get("value")?.as_str()?;
            let system = identifier
                .get("system")
                .and_then(Value::as_str)
                .unwrap_or_default();
            Some(format!("{resource_type}?identifier={system}|{value}"))
        })
        .collect()
}

/// The path (`.subject.reference`) of the first `reference` element equal to `needle`.
fn path_of_reference(value: &Value, needle: &str) -> Option<String> {
    match value {
        Value::Object(object) => object.iter().find_map(|(key, child)| {
            if key == "reference" && child.as_str() == Some(needle) {
                Some(".reference".to_owned())
            } else {
                path_of_reference(child, needle).map(|rest| format!(".{key}{rest}"))
            }
        }),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            path_of_reference(item, needle).map(|rest| format!("[{i}]{rest}"))
        }),
        _ => None,
    }
}

/// `Type?identifier=system|value` as `(Type, Identifier)`.
fn logical_reference(reference: &str) -> (String, Value) {
    let (resource_type, condition) = reference.split_once('?').unwrap_or((reference, ""));
    let value = condition.strip_prefix("identifier=").unwrap_or(condition);
    let value = form_urlencoded::parse(format!("v={value}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let identifier = match value.split_once('|') {
        Some((system, value)) => serde_json::json!({"system": system, "value": value}),
        None => serde_json::json!({"value": value}),
    };
    (resource_type.to_owned(), identifier)
}

/// A server-assigned id. Time-ordered (UUIDv7), so new rows land at the right edge of every
/// id-keyed index instead of at random pages: at millions of resources this halves write time.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Generates `options.patients` synthetic patients (plus organizations) into `store`, calling
/// `progress` with the number of patients written so far. Generation runs on its own thread
/// while this task writes, so both cores are busy.
pub async fn load_synthetic(
    store: &EmbeddedStore,
    options: healthcloud_synth::SynthOptions,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<ImportReport, FhirError> {
    const PATIENTS_PER_MESSAGE: usize = 50;
    let (sender, mut receiver) =
        tokio::sync::mpsc::channel::<Result<(usize, Vec<Prepared>), FhirError>>(8);
    let generator = std::thread::spawn(move || {
        let now = date::now_ms();
        let prepare = |resources: Vec<Value>| -> Result<Vec<Prepared>, FhirError> {
            resources
                .into_iter()
                .map(|resource| {
                    let resource_type = resource_type(&resource, "resource")?;
                    let id = resource
                        .get("id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    Prepared::new(&resource_type, &id, 1, now, resource)
                })
                .collect()
        };
        let mut batch = prepare(healthcloud_synth::organizations(&options));
        let mut patients_in_batch = 0;
        for index in 0..options.patients {
            if let Ok(items) = &mut batch {
                match prepare(healthcloud_synth::patient(&options, index)) {
                    Ok(more) => items.extend(more),
                    Err(e) => batch = Err(e),
                }
            }
            patients_in_batch += 1;
            if patients_in_batch == PATIENTS_PER_MESSAGE || index + 1 == options.patients {
                let message = std::mem::replace(&mut batch, Ok(Vec::new()));
                let failed = message.is_err();
                if sender
                    .blocking_send(message.map(|items| (patients_in_batch, items)))
                    .is_err()
                    || failed
                {
                    return;
                }
                patients_in_batch = 0;
            }
        }
        if options.patients == 0 {
            let _ = sender.blocking_send(batch.map(|items| (0, items)));
        }
    });
    let mut importer = Importer::new(store);
    let mut written = 0;
    while let Some(message) = receiver.recv().await {
        let (patients, prepared) = message?;
        importer.add_prepared(prepared).await?;
        written += patients;
        progress(written);
    }
    let _ = generator.join();
    importer.finish().await
}

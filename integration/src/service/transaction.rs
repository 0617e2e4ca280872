//! Transaction Bundles: every write of the Bundle is checked as the same single call would be
//! (the caller's rights, the patients' consent, conditional criteria searched as the caller's),
//! then all are applied in one database transaction, each with its audit record: all of them
//! happen, or none does. Entries name each other by `fullUrl` (`urn:uuid:…`), resolved to the
//! ids the new resources get.

use std::collections::{BTreeMap, BTreeSet};

use healthcloud_platform::scope::Interaction;
use serde_json::Value;

use super::{
    Change, Criteria, FhirService, Found, Pending, Planned, Resolved, Write, Written, writable,
};
use crate::error::FhirError;
use crate::policy::AccessContext;
use crate::query::SearchQuery;
use crate::store::StoredResource;

/// The most entries one Bundle may hold.
pub const MAX_ENTRIES: usize = 500;

/// Which resource an update or a delete is for.
#[derive(Debug, Clone)]
pub enum Target {
    /// `Type/id`.
    Id(String),
    /// `Type?criteria`: the one resource a search by the caller finds.
    Criteria(Criteria),
}

/// One write of a transaction.
#[derive(Debug, Clone)]
pub enum TxWrite {
    /// `POST Type`; `full_url` names the new resource for the other entries' references.
    Create {
        /// The type.
        resource_type: String,
        /// The entry's `fullUrl`.
        full_url: Option<String>,
        /// The resource.
        resource: Value,
        /// `ifNoneExist`: create only when these criteria find nothing.
        if_none_exist: Option<Criteria>,
    },
    /// `PUT` or `PATCH`.
    Update {
        /// The type.
        resource_type: String,
        /// Which resource.
        target: Target,
        /// The new resource, or a patch.
        change: Change,
        /// `ifMatch`: the version it must be at.
        if_match: Option<i64>,
    },
    /// `DELETE`.
    Delete {
        /// The type.
        resource_type: String,
        /// Which resource.
        target: Target,
    },
}

impl TxWrite {
    fn resource_type(&self) -> &str {
        match self {
            TxWrite::Create { resource_type, .. }
            | TxWrite::Update { resource_type, .. }
            | TxWrite::Delete { resource_type, .. } => resource_type,
        }
    }

    /// The order a transaction processes its entries in (FHIR's: deletes, creates, updates).
    fn rank(&self) -> u8 {
        match self {
            TxWrite::Delete { .. } => 0,
            TxWrite::Create { .. } => 1,
            TxWrite::Update { .. } => 2,
        }
    }
}

/// What a transaction's write did.
#[derive(Debug, Clone)]
pub enum TxDone {
    /// Created (`true`) or changed.
    Written(Written, bool),
    /// A conditional create whose criteria found this resource: nothing was written.
    Exists(StoredResource),
    /// The resource deleted (`None`: a conditional delete that found nothing).
    Deleted(Option<String>),
}

/// A create of the transaction before it is planned.
enum Creating {
    /// To be created with this id (unless `SearchQuery` then finds something).
    New(String, Option<SearchQuery>),
    /// Its criteria found this resource.
    Exists(StoredResource),
}

impl FhirService {
    /// Applies `writes` all together or not at all. An error names the entry (by its
    /// position) that failed; nothing was written then.
    pub async fn transaction(
        &self,
        context: &AccessContext,
        mut writes: Vec<TxWrite>,
    ) -> Result<Vec<TxDone>, (usize, FhirError)> {
        self.admit(context).map_err(|e| (0, e))?;
        if writes.len() > MAX_ENTRIES {
            return Err((
                MAX_ENTRIES,
                FhirError::BadRequest(format!(
                    "a transaction may hold at most {MAX_ENTRIES} entries; this one holds {}",
                    writes.len()
                )),
            ));
        }
        // The ids of new resources, found first: other entries refer to them.
        let mut creating: BTreeMap<usize, Creating> = BTreeMap::new();
        let mut names: BTreeMap<String, String> = BTreeMap::new();
        for (i, write) in writes.iter().enumerate() {
            let TxWrite::Create {
                resource_type,
                full_url,
                resource,
                if_none_exist,
            } = write
            else {
                continue;
            };
            let create = match if_none_exist {
                Some(criteria) => {
                    match (self.find_existing(context, resource_type, resource, criteria)).await {
                        Ok(Found::Existing(existing)) => Creating::Exists(existing),
                        Ok(Found::Missing(query)) => {
                            Creating::New(crate::import::new_id(), Some(query))
                        }
                        Err(error) => return Err((i, error)),
                    }
                }
                None => Creating::New(crate::import::new_id(), None),
            };
            if let Some(full_url) = full_url {
                let id = match &create {
                    Creating::New(id, _) => id,
                    Creating::Exists(existing) => &existing.id,
                };
                names.insert(full_url.clone(), format!("{resource_type}/{id}"));
            }
            creating.insert(i, create);
        }
        for (i, write) in writes.iter_mut().enumerate() {
            let resolved = match write {
                TxWrite::Create { resource, .. }
                | TxWrite::Update {
                    change: Change::Replace(resource) | Change::Merge(resource),
                    ..
                } => resolve_references(resource, &names, false),
                // A patch names references as values of its operations, or parts of them.
                TxWrite::Update {
                    change: Change::JsonPatch(patch),
                    ..
                } => {
                    let mut operations = serde_json::to_value(&*patch).unwrap_or_default();
                    let resolved = resolve_references(&mut operations, &names, true);
                    if let Ok(operations) = serde_json::from_value(operations) {
                        *patch = operations;
                    }
                    resolved
                }
                _ => continue,
            };
            if let Err(unknown) = resolved {
                let error = FhirError::BadRequest(format!(
                    "entry {i} refers to '{unknown}', which is no entry's fullUrl in this transaction"
                ));
                let refused = (Interaction::Create, write.resource_type(), None);
                return Err((i, self.refused(context, refused, error).await));
            }
        }
        // Every write checked as far as it can be outside the transaction, in FHIR's order.
        let mut order: Vec<usize> = (0..writes.len()).collect();
        order.sort_by_key(|i| writes[*i].rank());
        let mut planned: Vec<(usize, Planned, Pending<'_>, bool)> = Vec::new();
        let mut done: BTreeMap<usize, TxDone> = BTreeMap::new();
        let mut changed: BTreeMap<(String, String), usize> = BTreeMap::new();
        for i in order {
            let step = self
                .plan_entry(context, writes[i].clone(), creating.remove(&i))
                .await;
            let (plan, audit, created) = match step {
                Ok(Step::Done(result)) => {
                    done.insert(i, result);
                    continue;
                }
                Ok(Step::Planned(plan, audit, created)) => (plan, audit, created),
                Err(Refusal::Audited(error)) => {
                    self.abandon(planned).await;
                    return Err((i, error));
                }
                Err(Refusal::Pending(audit, error)) => {
                    self.abandon(planned).await;
                    return Err((i, self.refuse(audit, error).await));
                }
            };
            let key = plan.target();
            if let Some(first) = changed.insert(key.clone(), i) {
                let error = FhirError::BadRequest(format!(
                    "entries {first} and {i} both change {}/{}: one entry per resource",
                    key.0, key.1
                ));
                self.abandon(planned).await;
                return Err((i, self.refuse(audit, error).await));
            }
            planned.push((i, *plan, audit, created));
        }
        let mut tx = (self.store.database().begin_write())
            .await
            .map_err(|e| (0, e.into()))?;
        let mut failed = None;
        for (position, (_, plan, audit, _)) in planned.iter().enumerate() {
            if let Err(error) = self.apply(&mut tx, plan, audit).await {
                failed = Some((position, error));
                break;
            }
        }
        if let Some((position, error)) = failed {
            drop(tx);
            let (i, _, audit, _) = planned.swap_remove(position);
            self.abandon(planned).await;
            return Err((i, self.refuse(audit, error).await));
        }
        tx.commit().await.map_err(|e| (0, e.into()))?;
        self.subscriptions.wake();
        for (i, plan, _, created) in planned {
            let result = match plan {
                Planned::Delete { id, .. } => TxDone::Deleted(Some(id)),
                write => TxDone::Written(write.written(), created),
            };
            done.insert(i, result);
        }
        Ok(done.into_values().collect())
    }

    /// Records the entries planned before the transaction failed as not written: what their
    /// checks read is in the patients' logs though nothing was changed.
    async fn abandon(&self, planned: Vec<(usize, Planned, Pending<'_>, bool)>) {
        for (_, _, audit, _) in planned {
            let error = FhirError::Conflict(
                "not written: another entry of the transaction failed, so none was".into(),
            );
            self.refuse(audit, error).await;
        }
    }

    /// Plans one entry of a transaction (see [`FhirService::transaction`]).
    async fn plan_entry<'a>(
        &self,
        context: &'a AccessContext,
        write: TxWrite,
        creating: Option<Creating>,
    ) -> Result<Step<'a>, Refusal<'a>> {
        match write {
            TxWrite::Create {
                resource_type,
                resource,
                ..
            } => {
                let (id, unless) = match creating {
                    Some(Creating::New(id, unless)) => (id, unless),
                    Some(Creating::Exists(existing)) => {
                        return Ok(Step::Done(TxDone::Exists(existing)));
                    }
                    None => (crate::import::new_id(), None),
                };
                self.plan_create(context, &resource_type, id, resource, unless)
                    .await
            }
            TxWrite::Update {
                resource_type,
                target,
                change,
                if_match,
            } => {
                let (id, change, if_match) = match target {
                    Target::Id(id) => (id, change, if_match),
                    Target::Criteria(criteria) => {
                        let resolved = self
                            .resolve_update(context, &resource_type, &criteria, change)
                            .await
                            .map_err(Refusal::Audited)?;
                        match resolved {
                            Resolved::Existing(id, change, version) => (id, change, Some(version)),
                            Resolved::New(resource, criteria) => {
                                let unless = match (self.find_existing(
                                    context,
                                    &resource_type,
                                    &resource,
                                    &criteria,
                                ))
                                .await
                                .map_err(Refusal::Audited)?
                                {
                                    Found::Missing(query) => query,
                                    Found::Existing(_) => {
                                        return Err(Refusal::Audited(
                                            FhirError::PreconditionFailed(format!(
                                                "another request created a matching {resource_type} while this one was checked: send it again"
                                            )),
                                        ));
                                    }
                                };
                                let id = crate::import::new_id();
                                return self
                                    .plan_create(
                                        context,
                                        &resource_type,
                                        id,
                                        resource,
                                        Some(unless),
                                    )
                                    .await;
                            }
                        }
                    }
                };
                let type_def = writable(&resource_type, "update").map_err(Refusal::Audited)?;
                let mut audit = Pending::new(context, Interaction::Update, type_def.name);
                audit.resource_id = Some(id.clone());
                match (self.plan_update(
                    context,
                    (type_def.name, &id),
                    change,
                    if_match,
                    &mut audit,
                ))
                .await
                {
                    Ok(plan) => Ok(Step::Planned(Box::new(plan), audit, false)),
                    Err(error) => Err(Refusal::Pending(audit, error)),
                }
            }
            TxWrite::Delete {
                resource_type,
                target,
            } => {
                let id = match target {
                    Target::Id(id) => id,
                    Target::Criteria(criteria) => {
                        match (self.resolve_delete(context, &resource_type, &criteria))
                            .await
                            .map_err(Refusal::Audited)?
                        {
                            Some(id) => id,
                            None => return Ok(Step::Done(TxDone::Deleted(None))),
                        }
                    }
                };
                let type_def = writable(&resource_type, "delete").map_err(Refusal::Audited)?;
                let mut audit = Pending::new(context, Interaction::Delete, type_def.name);
                audit.resource_id = Some(id.clone());
                match self
                    .plan_delete(context, type_def.name, &id, &mut audit)
                    .await
                {
                    Ok(plan) => Ok(Step::Planned(Box::new(plan), audit, false)),
                    Err(error) => Err(Refusal::Pending(audit, error)),
                }
            }
        }
    }

    /// Plans the create of `resource` as `id` (unless `unless` then finds something).
    async fn plan_create<'a>(
        &self,
        context: &'a AccessContext,
        resource_type: &str,
        id: String,
        resource: Value,
        unless: Option<SearchQuery>,
    ) -> Result<Step<'a>, Refusal<'a>> {
        let type_def = writable(resource_type, "create").map_err(Refusal::Audited)?;
        let mut audit = Pending::new(context, Interaction::Create, type_def.name);
        audit.resource_id = Some(id.clone());
        let write = Write {
            type_def,
            id: &id,
            version_id: 1,
            interaction: Interaction::Create,
            previous_patient: None,
            unless: unless.as_ref(),
        };
        match self.plan_write(context, write, resource, &mut audit).await {
            Ok(plan) => Ok(Step::Planned(Box::new(plan), audit, true)),
            Err(error) => Err(Refusal::Pending(audit, error)),
        }
    }
}

/// Where planning one entry got.
enum Step<'a> {
    /// Nothing to write (a conditional create or delete that found its answer).
    Done(TxDone),
    /// A write to apply, its audit record, and whether it creates.
    Planned(Box<Planned>, Pending<'a>, bool),
}

/// Why an entry cannot be written: audited already, or to be audited with its record.
enum Refusal<'a> {
    Audited(FhirError),
    Pending(Pending<'a>, FhirError),
}

impl Planned {
    /// The resource it writes: `(type, id)`.
    fn target(&self) -> (String, String) {
        match self {
            Planned::Write { prepared, .. } => {
                (prepared.resource_type.clone(), prepared.id.clone())
            }
            Planned::Delete { type_def, id, .. } => (type_def.name.to_owned(), id.clone()),
        }
    }
}

/// Replaces every `reference` in `value` (with `everywhere`, every string) that is a key of
/// `names` (an entry's `fullUrl`) by what it stands for; a `urn:uuid:` that no entry has is
/// returned.
fn resolve_references(
    value: &mut Value,
    names: &BTreeMap<String, String>,
    everywhere: bool,
) -> Result<(), String> {
    let mut unknown = BTreeSet::new();
    walk(value, names, everywhere, &mut unknown);
    match unknown.into_iter().next() {
        Some(unknown) => Err(unknown),
        None => Ok(()),
    }
}

fn walk(
    value: &mut Value,
    names: &BTreeMap<String, String>,
    everywhere: bool,
    unknown: &mut BTreeSet<String>,
) {
    let resolve = |reference: &mut String, unknown: &mut BTreeSet<String>| {
        if let Some(name) = names.get(reference.as_str()) {
            *reference = name.clone();
        } else if reference.starts_with("urn:uuid:") {
            unknown.insert(reference.clone());
        }
    };
    match value {
        Value::String(text) if everywhere => resolve(text, unknown),
        Value::Object(object) => {
            for (key, child) in object.iter_mut() {
                match child {
                    Value::String(reference) if key == "reference" => resolve(reference, unknown),
                    child => walk(child, names, everywhere, unknown),
                }
            }
        }
        Value::Array(items) => {
            (items.iter_mut()).for_each(|item| walk(item, names, everywhere, unknown))
        }
        _ => {}
    }
}

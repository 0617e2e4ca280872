//! Searches that reach across references: chained parameters and `_has` (joins), and
//! `_include`/`_revinclude`. Each part on another type is a search of that type by the caller,
//! under their rights and the patients' consent, recorded with the search it belongs to; so
//! nothing reaches the caller, or narrows what they get, that they could not have searched for.

use std::collections::{BTreeMap, BTreeSet};

use healthcloud_platform::scope::Interaction;
use serde_json::Value;

use super::{FhirService, Pending};
use crate::error::FhirError;
use crate::params::{ParamDef, TypeDef, type_def};
use crate::policy::AccessContext;
use crate::query::{Filter, Link, MAX_JOINED, Match, SearchQuery, Value as QueryValue};
use crate::ratelimit::is_refusal;
use crate::store::{Included, Incomplete, Omission, SearchPage, StoredResource};

/// The most resources `_include` and `_revinclude` add to one page.
pub const MAX_INCLUDED: usize = 1000;

/// The most resources of sources one include reads by id (each a request to the source).
const MAX_SOURCE_READS: usize = 20;

/// How many times `:iterate` follows references from what it included.
const MAX_ROUNDS: usize = 4;

/// The reference parameter `def`'s literal references in `resource` (of `resource_type`):
/// `(type, id)`, as the search index reads them.
fn references(
    resource_type: &str,
    resource: &StoredResource,
    def: &ParamDef,
) -> Vec<(String, String)> {
    let Ok(json) = serde_json::from_str::<Value>(&resource.content) else {
        return Vec::new();
    };
    let Ok(rows) = crate::params::index(resource_type, &resource.id, &json) else {
        return Vec::new();
    };
    rows.tokens
        .into_iter()
        .filter(|(param, _, _)| *param == def.name)
        .map(|(_, target, id)| (target, id))
        .collect()
}

impl FhirService {
    /// Turns `query`'s joins into filters on ids: each join's search runs as the caller's and
    /// is recorded with this one; what it found is the condition. A join that finds more than
    /// [`MAX_JOINED`] is refused (the condition would be a list too long to be useful).
    pub(super) async fn resolve_joins(
        &self,
        context: &AccessContext,
        query: &mut SearchQuery,
        audit: &mut Pending<'_>,
    ) -> Result<Vec<Incomplete>, FhirError> {
        let mut incomplete = Vec::new();
        let ids: Option<Vec<String>> = query.filters.iter().find_map(|filter| match filter {
            Filter::Id(ids) => Some(ids.clone()),
            _ => None,
        });
        for mut join in std::mem::take(&mut query.joins) {
            let joined = join.query.type_def;
            // Only what refers to the searched ids can count: ask for nothing else.
            if let (Link::Has(def), Some(ids)) = (join.link, &ids) {
                join.query.filters.push(Filter::Param {
                    def,
                    mode: Match::Prefix,
                    values: (ids.iter())
                        .map(|id| QueryValue::Reference {
                            resource_type: Some(query.type_def.name.to_owned()),
                            id: id.clone(),
                        })
                        .collect(),
                });
            }
            let mut inner = Pending::new(context, Interaction::Search, joined.name);
            let result = Box::pin(self.search_checked(context, *join.query, &mut inner)).await;
            audit.absorb(inner);
            let (_, page) = result?;
            if page.total > MAX_JOINED {
                return Err(FhirError::BadRequest(format!(
                    "'{}' matches {} {} resources, more than the {MAX_JOINED} a chained parameter or _has may: make it narrower",
                    join.written, page.total, joined.name
                )));
            }
            incomplete.extend(page.incomplete);
            let filter = match join.link {
                Link::Chain(def) if !page.resources.is_empty() => Filter::Param {
                    def,
                    mode: Match::Prefix,
                    values: (page.resources.into_iter())
                        .map(|r| QueryValue::Reference {
                            resource_type: Some(joined.name.to_owned()),
                            id: r.id,
                        })
                        .collect(),
                },
                Link::Chain(_) => Filter::Id(Vec::new()),
                Link::Has(def) => {
                    let ids: BTreeSet<String> = (page.resources.iter())
                        .flat_map(|r| references(joined.name, r, def))
                        .filter(|(target, _)| target == query.type_def.name)
                        .map(|(_, id)| id)
                        .collect();
                    Filter::Id(ids.into_iter().collect())
                }
            };
            query.filters.push(filter);
        }
        Ok(incomplete)
    }

    /// Adds to `page` what `query`'s `_include`s and `_revinclude`s bring: the resources its
    /// matches refer to, or that refer to them (and, with `:iterate`, to what was included).
    /// Each set is a search of its type as the caller's, so a resource the caller may not see
    /// is left out; references left unresolved are counted in `page.omissions`.
    pub(super) async fn include(
        &self,
        context: &AccessContext,
        query: &SearchQuery,
        page: &mut SearchPage,
        audit: &mut Pending<'_>,
    ) -> Result<(), FhirError> {
        let mut seen: BTreeSet<(&str, String)> = (page.resources.iter())
            .map(|r| (query.type_def.name, r.id.clone()))
            .collect();
        // What forward includes asked for already: each reference is followed once.
        let mut asked: BTreeSet<(String, String)> = BTreeSet::new();
        // Per include (by its position): references not resolved, refusals.
        let mut unresolved: BTreeMap<usize, usize> = BTreeMap::new();
        let mut refused: BTreeMap<usize, FhirError> = BTreeMap::new();
        let mut truncated = false;
        let mut from_included = 0;
        for round in 0..MAX_ROUNDS {
            let from: Vec<(&str, &StoredResource)> = match round {
                0 => (page.resources.iter())
                    .map(|r| (query.type_def.name, r))
                    .collect(),
                _ => (page.included[from_included..].iter())
                    .map(|i| (i.resource_type, &i.resource))
                    .collect(),
            };
            let next_from = page.included.len();
            // What to look for, decided before any search (they add to `page.included`).
            let mut asks: Vec<(usize, &'static TypeDef, Filter)> = Vec::new();
            for (position, include) in query.includes.iter().enumerate() {
                if round > 0 && !include.iterate {
                    continue;
                }
                if include.reverse {
                    let values: Vec<QueryValue> = (from.iter())
                        .filter(|(resource_type, _)| include.targets(resource_type))
                        .map(|(resource_type, r)| QueryValue::Reference {
                            resource_type: Some((*resource_type).to_owned()),
                            id: r.id.clone(),
                        })
                        .collect();
                    if !values.is_empty() {
                        let filter = Filter::Param {
                            def: include.param,
                            mode: Match::Prefix,
                            values,
                        };
                        asks.push((position, include.source, filter));
                    }
                    continue;
                }
                let mut wanted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
                for (_, resource) in from.iter().filter(|(t, _)| *t == include.source.name) {
                    for (target, id) in references(include.source.name, resource, include.param) {
                        let known = seen.contains(&(target.as_str(), id.clone()));
                        if include.targets(&target)
                            && !known
                            && asked.insert((target.clone(), id.clone()))
                        {
                            wanted.entry(target).or_default().insert(id);
                        }
                    }
                }
                for (target, ids) in wanted {
                    match type_def(&target) {
                        Some(target) => {
                            asks.push((position, target, Filter::Id(ids.into_iter().collect())));
                        }
                        None => *unresolved.entry(position).or_default() += ids.len(),
                    }
                }
            }
            drop(from);
            if asks.is_empty() {
                break;
            }
            for (position, resource_type, filter) in asks {
                let room = MAX_INCLUDED.saturating_sub(page.included.len());
                if room == 0 {
                    truncated = true;
                    break;
                }
                let asked = match &filter {
                    Filter::Id(ids) => Some(ids.len()),
                    _ => None,
                };
                let found =
                    match (self.search_included(context, resource_type, filter, room, audit)).await
                    {
                        Ok((found, more)) => {
                            truncated |= more;
                            found
                        }
                        Err(error)
                            if is_refusal(&error) || matches!(error, FhirError::Unavailable(_)) =>
                        {
                            refused.entry(position).or_insert(error);
                            Vec::new()
                        }
                        Err(error) => return Err(error),
                    };
                let mut added = 0;
                for resource in found {
                    if seen.insert((resource_type.name, resource.id.clone())) {
                        added += 1;
                        page.included.push(Included {
                            resource_type: resource_type.name,
                            resource,
                        });
                    }
                }
                if let Some(asked) = asked {
                    *unresolved.entry(position).or_default() += asked.saturating_sub(added);
                }
            }
            from_included = next_from;
            if truncated {
                break;
            }
        }
        for (position, include) in query.includes.iter().enumerate() {
            let written = format!(
                "{}={}:{}{}",
                if include.reverse {
                    "_revinclude"
                } else {
                    "_include"
                },
                include.source.name,
                include.param.name,
                include
                    .target
                    .map(|t| format!(":{}", t.name))
                    .unwrap_or_default()
            );
            if let Some(error) = refused.get(&position) {
                page.omissions.push(Omission {
                    severity: "information",
                    code: "suppressed",
                    diagnostics: format!("{written}: nothing included: {error}"),
                });
            }
            if let Some(&n) = unresolved.get(&position).filter(|n| **n > 0) {
                page.omissions.push(Omission {
                    severity: "information",
                    code: "suppressed",
                    diagnostics: format!(
                        "{written}: {n} referenced resource(s) not included: they are not \
                         held here, or not yours to see"
                    ),
                });
            }
        }
        if truncated {
            page.omissions.push(Omission {
                severity: "warning",
                code: "too-costly",
                diagnostics: format!(
                    "more than {MAX_INCLUDED} resources to include: only {MAX_INCLUDED} are; \
                     ask for a smaller _count"
                ),
            });
        }
        // Included resources are shaped as the matches are (`_summary`), except for
        // `_elements`, which names the searched type's elements.
        let shape = query.presentation.for_included();
        for included in &mut page.included {
            let whole = std::mem::take(&mut included.resource.content);
            included.resource.content = shape.apply(included.resource_type, whole)?;
        }
        Ok(())
    }

    /// The resources of `resource_type` that `filter` selects, as a search by the caller
    /// recorded with `audit`'s: at most `room` of them, and whether there were more. A
    /// source's resource asked for by id is read from its source.
    async fn search_included(
        &self,
        context: &AccessContext,
        resource_type: &'static TypeDef,
        filter: Filter,
        room: usize,
        audit: &mut Pending<'_>,
    ) -> Result<(Vec<StoredResource>, bool), FhirError> {
        let mut found = Vec::new();
        let filter = match filter {
            Filter::Id(ids) => {
                let (at_sources, home): (Vec<String>, Vec<String>) =
                    ids.into_iter().partition(|id| self.source_of(id).is_some());
                // Each is a request to another organization's system: a few, not hundreds.
                for id in at_sources.into_iter().take(room.min(MAX_SOURCE_READS)) {
                    let mut inner = Pending::new(context, Interaction::Read, resource_type.name);
                    let read = Box::pin(self.read_checked(
                        context,
                        resource_type.name,
                        &id,
                        Interaction::Read,
                        &mut inner,
                    ))
                    .await;
                    audit.absorb(inner);
                    match read {
                        Ok(resource) => found.push(resource),
                        Err(error) if is_refusal(&error) || matches!(error, FhirError::Gone(_)) => {
                        }
                        Err(error) => return Err(error),
                    }
                }
                if home.is_empty() {
                    let more = found.len() > room;
                    found.truncate(room);
                    return Ok((found, more));
                }
                Filter::Id(home)
            }
            filter => filter,
        };
        let mut query = SearchQuery::by_ids(resource_type, Vec::new());
        query.filters = vec![filter];
        query.count = room + 1;
        let mut inner = Pending::new(context, Interaction::Search, resource_type.name);
        let result = Box::pin(self.search_checked(context, query, &mut inner)).await;
        audit.absorb(inner);
        let (_, page) = result?;
        found.extend(page.resources);
        let more = found.len() > room;
        found.truncate(room);
        Ok((found, more))
    }
}

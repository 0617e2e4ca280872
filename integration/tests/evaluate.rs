//! The in-memory evaluation of searches and policy constraints (`evaluate::satisfies`) is
//! held to the embedded store's SQL: for every query the data itself suggests (each indexed
//! token, reference, string, URI and date, with each modifier and prefix), on the fixture
//! and on synthetic patients, both must select exactly the same resources, on both
//! databases (also when a resource is indexed only for what the search reads, as a source's
//! answer is). A difference would let an upstream's answer through that the store would have
//! withheld, or the other way round.

mod common;

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate};
use common::{Backend, Harness};
use healthcloud_integration::evaluate::{params_read, satisfies};
use healthcloud_integration::import::load_synthetic;
use healthcloud_integration::params::{ParamKind, TYPES, index, index_where};
use healthcloud_integration::query::{Alternative, PageLimits, SearchQuery, parse_restriction};
use healthcloud_integration::store::{EmbeddedStore, Quantifier};
use healthcloud_synth::SynthOptions;
use serde_json::Value;

/// Every resource of `resource_type` with its id.
async fn all(store: &EmbeddedStore, resource_type: &str) -> Vec<(String, Value)> {
    let mut query = SearchQuery::parse(resource_type, &[], PageLimits::default()).unwrap();
    query.count = 100_000;
    store
        .search(&query)
        .await
        .unwrap()
        .resources
        .into_iter()
        .map(|stored| (stored.id, serde_json::from_str(&stored.content).unwrap()))
        .collect()
}

/// The query parameters the resources' own index rows suggest, for one type.
fn suggested(resource_type: &str, resources: &[(String, Value)]) -> BTreeSet<(String, String)> {
    let def = TYPES.iter().find(|t| t.name == resource_type).unwrap();
    let mut queries = BTreeSet::new();
    for (id, resource) in resources {
        let rows = index(resource_type, id, resource).unwrap();
        for param in def.all_params() {
            queries.insert((format!("{}:missing", param.name), "true".into()));
            queries.insert((format!("{}:missing", param.name), "false".into()));
        }
        for (name, system, value) in &rows.tokens {
            let param = def.all_params().find(|p| p.name == *name).unwrap();
            let name = name.to_string();
            match param.kind {
                ParamKind::Token => {
                    queries.insert((name.clone(), format!("{system}|{value}")));
                    queries.insert((name.clone(), value.clone()));
                    queries.insert((format!("{name}:not"), format!("{system}|{value}")));
                    if !system.is_empty() {
                        queries.insert((name.clone(), format!("{system}|")));
                    }
                }
                ParamKind::String if system == healthcloud_integration::text::EXACT => {
                    queries.insert((format!("{name}:exact"), value.clone()));
                }
                ParamKind::Reference { .. } => {
                    queries.insert((name.clone(), format!("{system}/{value}")));
                    queries.insert((name, value.clone()));
                }
                ParamKind::String => {
                    let prefix: String = value.chars().take(3).collect();
                    let middle: String = value.chars().skip(1).take(3).collect();
                    queries.insert((name.clone(), prefix));
                    queries.insert((format!("{name}:contains"), middle));
                }
                ParamKind::Uri => {
                    queries.insert((name.clone(), value.clone()));
                    if let Some((parent, _)) = value.rsplit_once('/') {
                        queries.insert((format!("{name}:below"), parent.to_owned()));
                    }
                }
                _ => {}
            }
        }
        for row in &rows.quantities {
            let (name, value) = (row.param, row.lo as f64 / 1_000_000.0);
            for prefix in ["", "ne", "ge", "lt", "sa", "ap"] {
                queries.insert((name.to_string(), format!("{prefix}{value}")));
            }
            if def.param(name).unwrap().kind == ParamKind::Quantity {
                for prefix in ["", "gt"] {
                    let unit = format!("|{}|{}", row.system, row.code);
                    queries.insert((name.to_string(), format!("{prefix}{value}{unit}")));
                }
            }
            queries.insert((name.to_string(), format!("{}", value.round())));
            // The composites over it: each code beside the value, with and without its system.
            for composite in def.all_params() {
                if composite.kind != (ParamKind::CodeQuantity { of: name }) {
                    continue;
                }
                for code in row.concept.split_whitespace() {
                    let bare = code.split_once('|').map_or(code, |(_, c)| c);
                    for token in [code, bare] {
                        for prefix in ["", "ge", "lt"] {
                            queries.insert((
                                composite.name.to_string(),
                                format!("{token}${prefix}{value}"),
                            ));
                        }
                    }
                }
            }
        }
        for ((name, _, _), text) in &rows.token_texts {
            for word in text.split_whitespace().take(3) {
                let start: String = word.chars().take(4).collect();
                queries.insert((format!("{name}:text"), start));
            }
        }
        for (name, system, value) in &rows.reference_identifiers {
            queries.insert((format!("{name}:identifier"), format!("{system}|{value}")));
        }
        for (name, lo, _) in &rows.dates {
            let day = DateTime::from_timestamp_millis(*lo)
                .unwrap()
                .format("%Y-%m-%d")
                .to_string();
            for prefix in ["", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"] {
                queries.insert((name.to_string(), format!("{prefix}{day}")));
            }
        }
    }
    queries
}

async fn sql_and_memory_agree(h: Harness) {
    load_synthetic(
        &h.store,
        SynthOptions {
            patients: 4,
            seed: 7,
            today: NaiveDate::from_ymd_opt(2026, 6, 1).unwrap(),
        },
        &|_| {},
    )
    .await
    .unwrap();
    let mut compared = 0;
    for def in TYPES {
        let resources = all(&h.store, def.name).await;
        let patients: BTreeSet<String> = resources
            .iter()
            .filter_map(|(id, r)| index(def.name, id, r).unwrap().patient_id)
            .collect();
        for (name, value) in suggested(def.name, &resources) {
            let pair = [(name.clone(), value.clone())];
            let Ok(mut query) = SearchQuery::parse(def.name, &pair, PageLimits::default()) else {
                continue;
            };
            query.count = 100_000;
            // As a client's filter, and as a policy's restriction inside one patient's
            // compartment (a scope such as `patient/Observation.rs?category=…`).
            let mut variants = vec![query.clone()];
            // (A restriction names what is allowed: `:not` is refused there.)
            let restriction = parse_restriction(def, &pair).ok();
            for patient in patients.iter().take(2).filter(|_| restriction.is_some()) {
                let mut constrained = query.clone();
                constrained.filters.clear();
                constrained.constraints.groups = vec![vec![Alternative {
                    compartment: Some(patient.clone()),
                    filters: restriction.clone().unwrap_or_default(),
                }]];
                variants.push(constrained);
            }
            for query in variants {
                let by_sql: BTreeSet<String> = h
                    .store
                    .search(&query)
                    .await
                    .unwrap()
                    .resources
                    .into_iter()
                    .map(|stored| stored.id)
                    .collect();
                let in_memory: BTreeSet<String> = resources
                    .iter()
                    .filter(|(id, resource)| {
                        let rows = index(def.name, id, resource).unwrap();
                        satisfies(&query, id, &rows, Quantifier::Any)
                    })
                    .map(|(id, _)| id.clone())
                    .collect();
                assert_eq!(
                    by_sql, in_memory,
                    "{}?{name}={value} with constraints {:?}",
                    def.name, query.constraints.groups
                );
                // A source's answer is indexed only for what the search reads: the same.
                let read = params_read(&query);
                let in_part: BTreeSet<String> = resources
                    .iter()
                    .filter(|(id, resource)| {
                        let rows =
                            index_where(def.name, id, resource, |p| read.contains(p)).unwrap();
                        satisfies(&query, id, &rows, Quantifier::Any)
                    })
                    .map(|(id, _)| id.clone())
                    .collect();
                assert_eq!(
                    by_sql, in_part,
                    "{}?{name}={value} with constraints {:?}, indexed for {read:?} only",
                    def.name, query.constraints.groups
                );
                compared += 1;
            }
        }
    }
    assert!(compared > 500, "only {compared} queries compared");
}

on_both_backends!(sql_and_memory_agree);

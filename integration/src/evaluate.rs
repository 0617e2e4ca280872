//! A search's filters and the policy's constraints decided for one resource in memory: the
//! same rules the embedded store compiles to SQL (`store.rs`), over the same index rows
//! ([`params::index`](crate::params::index)). An upstream source is asked with the constraints it can express as
//! search parameters; whatever it returns is held to every constraint here before anything
//! leaves the server, so a constraint it ignored or could not express leaks nothing.
//!
//! Consent is not decided here: it needs the patient's consents, which the
//! [`FhirService`](crate::service::FhirService) checks before any source is asked.
//! `tests/evaluate.rs` holds this module to the store's SQL, query by query.

use crate::params::{IndexRows, ParamKind};
use crate::query::{Alternative, Filter, Match, Prefix, SearchQuery, Value, compartment_patients};
use crate::store::Quantifier;

/// Whether the resource `id` with index `rows` satisfies `query`'s filters (one value
/// matching) and its policy constraints (held with `quantifier`), as the store would decide.
pub fn satisfies(query: &SearchQuery, id: &str, rows: &IndexRows, quantifier: Quantifier) -> bool {
    let shared = |(param, system): (&str, &str)| {
        (rows.tokens.iter()).any(|(p, s, _)| *p == param && s == system)
    };
    (rows.patient_id.is_some()
        || !query.type_def.placed_only()
        || query.type_def.shared_unplaced().is_some_and(shared))
        && query
            .filters
            .iter()
            .all(|filter| holds(query, filter, id, rows, Quantifier::Any))
        && query.constraints.groups.iter().all(|group| {
            group
                .iter()
                .any(|alternative| allows(query, alternative, id, rows, quantifier))
        })
}

/// The parameters whose index rows [`satisfies`] reads for `query` (besides the patient's and
/// dates, which every index has): see [`crate::params::index_where`].
pub fn params_read(query: &SearchQuery) -> std::collections::BTreeSet<String> {
    let filters = (query.filters.iter()).chain(
        (query.constraints.groups.iter())
            .flatten()
            .flat_map(|alternative| alternative.filters.iter()),
    );
    let mut read: std::collections::BTreeSet<String> = filters
        .flat_map(|filter| match filter {
            Filter::Id(_) => Vec::new(),
            Filter::Param { def, mode, .. } if def.kind.is_numeric() => {
                crate::query::indexed_params(def, *mode)
            }
            Filter::Param { def, .. } => match def.union {
                [] => vec![def.name.to_owned()],
                union => union.iter().map(|p| (*p).to_owned()).collect(),
            },
        })
        .collect();
    read.extend((query.type_def.shared_unplaced()).map(|(param, _)| param.to_owned()));
    read
}

fn allows(
    query: &SearchQuery,
    alternative: &Alternative,
    id: &str,
    rows: &IndexRows,
    quantifier: Quantifier,
) -> bool {
    alternative
        .compartment
        .as_ref()
        .is_none_or(|patient| rows.patient_id.as_ref() == Some(patient))
        && alternative
            .filters
            .iter()
            .all(|filter| holds(query, filter, id, rows, quantifier))
}

/// One index value of a resource: a token row or a date row.
enum Indexed<'a> {
    Token {
        system: &'a str,
        value: &'a str,
        /// The text of the code it came from, for `:text`.
        text: Option<&'a str>,
    },
    Date {
        lo: i64,
        hi: i64,
    },
    Quantity {
        system: &'a str,
        code: &'a str,
        lo: i64,
        hi: i64,
        concept: &'a str,
    },
}

fn holds(
    query: &SearchQuery,
    filter: &Filter,
    id: &str,
    rows: &IndexRows,
    quantifier: Quantifier,
) -> bool {
    let (def, mode, values) = match filter {
        Filter::Id(ids) => return ids.iter().any(|candidate| candidate == id),
        Filter::Param { def, mode, values } => (*def, *mode, values),
    };
    if mode == Match::Not {
        let positive = Filter::Param {
            def,
            mode: Match::Prefix,
            values: values.clone(),
        };
        return !holds(query, &positive, id, rows, Quantifier::Any);
    }
    // The type's compartment element is the compartment itself (see `store::push_filter`).
    if let Some(patients) = compartment_patients(query.type_def, def, mode, values) {
        return rows
            .patient_id
            .as_ref()
            .is_some_and(|patient| patients.contains(&patient));
    }
    let indexed: Vec<Indexed<'_>> = if def.kind == ParamKind::Date {
        rows.dates
            .iter()
            .filter(|(param, _, _)| *param == def.name)
            .map(|(_, lo, hi)| Indexed::Date { lo: *lo, hi: *hi })
            .collect()
    } else if def.kind.is_numeric() {
        let params = crate::query::indexed_params(def, mode);
        (rows.quantities.iter())
            .filter(|row| params.iter().any(|p| p == row.param))
            .map(|row| Indexed::Quantity {
                system: &row.system,
                code: &row.code,
                lo: row.lo,
                hi: row.hi,
                concept: &row.concept,
            })
            .collect()
    } else {
        let tokens = match mode {
            Match::Identifier => &rows.reference_identifiers,
            _ => &rows.tokens,
        };
        // A string's values are those of the form compared (folded, or as written).
        let form = crate::query::string_form(def.kind, mode);
        let params = match def.union {
            [] => &[def.name][..],
            union => union,
        };
        tokens
            .iter()
            .filter(|(param, system, _)| {
                params.contains(param) && form.is_none_or(|form| system == form)
            })
            .map(|row| Indexed::Token {
                system: &row.1,
                value: &row.2,
                text: rows.token_texts.get(row).map(String::as_str),
            })
            .collect()
    };
    if let Match::Missing(missing) = mode {
        return indexed.is_empty() == missing;
    }
    let matching = |row: &Indexed<'_>| values.iter().any(|value| value_matches(mode, value, row));
    let any = indexed.iter().any(matching);
    match quantifier {
        Quantifier::Any => any,
        Quantifier::Every => any && indexed.iter().all(matching),
    }
}

fn value_matches(mode: Match, value: &Value, row: &Indexed<'_>) -> bool {
    match (value, row) {
        (Value::Text(pattern), Indexed::Token { text, .. }) if mode == Match::Text => {
            text.is_some_and(|text| text.contains(pattern.as_str()))
        }
        (
            Value::Token { system, code },
            Indexed::Token {
                system: s,
                value: v,
                ..
            },
        ) => {
            system.as_deref().is_none_or(|system| system == *s)
                && code.as_deref().is_none_or(|code| code == *v)
        }
        (Value::Reference { resource_type, id }, Indexed::Token { system, value, .. }) => {
            resource_type.as_deref().is_none_or(|t| t == *system) && id == value
        }
        (Value::Text(text), Indexed::Token { system, value, .. }) => match mode {
            Match::Exact => *system == crate::text::EXACT && value == text,
            Match::Contains => system.is_empty() && value.contains(text.as_str()),
            _ => system.is_empty() && value.starts_with(text.as_str()),
        },
        (Value::Uri(uri), Indexed::Token { value, .. }) => {
            *value == uri
                || (mode == Match::Below
                    && if uri.ends_with([':', '/']) {
                        value.starts_with(uri.as_str())
                    } else {
                        value
                            .strip_prefix(uri.as_str())
                            .is_some_and(|rest| rest.starts_with([':', '/']))
                    })
        }
        (Value::Date(prefix, range), Indexed::Date { lo, hi }) => {
            compares(*prefix, range, *lo, *hi)
        }
        (
            Value::Quantity {
                prefix,
                range,
                system,
                code,
                concept,
            },
            Indexed::Quantity {
                system: s,
                code: c,
                lo,
                hi,
                concept: held,
            },
        ) => {
            system.as_deref().is_none_or(|system| system == *s)
                && code.as_deref().is_none_or(|code| code == *c)
                && concept
                    .as_deref()
                    .is_none_or(|concept| held.contains(concept))
                && compares(*prefix, range, *lo, *hi)
        }
        // A value of another kind than the parameter's never matches (the parser does not
        // produce one).
        _ => false,
    }
}

/// Whether an indexed range `lo`…`hi` compares with `range` as `prefix` asks (as
/// `store::push_range` decides it in SQL).
fn compares(prefix: Prefix, range: &crate::date::DateRange, lo: i64, hi: i64) -> bool {
    let within = lo >= range.lo && hi <= range.hi;
    match prefix {
        Prefix::Eq => within,
        Prefix::Ne => !within,
        Prefix::Gt => hi > range.hi,
        Prefix::Lt => lo < range.lo,
        Prefix::Ge => hi > range.hi || within,
        Prefix::Le => lo < range.lo || within,
        Prefix::Sa => lo > range.hi,
        Prefix::Eb => hi < range.lo,
        Prefix::Ap => hi >= range.lo && lo <= range.hi,
    }
}

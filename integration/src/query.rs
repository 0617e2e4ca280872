//! FHIR search requests parsed into a source-independent query: the client's filters, paging
//! and sort, plus the constraints the policy engine ANDs in. Anything we do not support is a
//! 400: an ignored filter would return more data than the client asked for.

use healthcloud_platform::auth::is_fhir_id;

use crate::date::{self, DateRange};
use crate::error::FhirError;
use crate::params::{ParamDef, ParamKind, TypeDef, split_reference, type_def};
use crate::shape::{Presentation, PresentationParams};

/// Page size limits.
#[derive(Debug, Clone, Copy)]
pub struct PageLimits {
    /// `_count` when the client gives none.
    pub default_count: usize,
    /// The largest page served; larger `_count`s are clamped to it.
    pub max_count: usize,
}

impl Default for PageLimits {
    fn default() -> Self {
        PageLimits {
            default_count: 50,
            max_count: 200,
        }
    }
}

/// A date comparison prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    /// Within the given range.
    Eq,
    /// Not within it.
    Ne,
    /// After it.
    Gt,
    /// Before it.
    Lt,
    /// At or after its start.
    Ge,
    /// At or before its end.
    Le,
    /// Starts after it ends.
    Sa,
    /// Ends before it starts.
    Eb,
    /// Overlaps it, widened by a tenth of its distance from now (at least a day): `ap`,
    /// already applied to the range when the query was parsed.
    Ap,
}

/// One alternative value of a search parameter (comma-separated values are ORed).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `system|code`, `code`, `system|` or `|code`; `None` system means any, `Some("")` none.
    Token {
        /// The code system constraint.
        system: Option<String>,
        /// The code constraint.
        code: Option<String>,
    },
    /// A literal reference as `Type/id` or a bare id.
    Reference {
        /// The referenced type, if given.
        resource_type: Option<String>,
        /// The referenced id.
        id: String,
    },
    /// A URI, matched exactly (or as a prefix with `:below`).
    Uri(String),
    /// A lower-cased string to match.
    Text(String),
    /// A date comparison.
    Date(Prefix, DateRange),
    /// A quantity comparison: the range in millionths, and the unit when given.
    Quantity {
        /// The comparison.
        prefix: Prefix,
        /// What is compared with, in millionths (for `eq`, `ne` and `ap` the value's implied
        /// precision; otherwise the value itself).
        range: DateRange,
        /// The unit's system, when given.
        system: Option<String>,
        /// The unit's code, when given.
        code: Option<String>,
        /// A composite's code: what the codes beside the quantity must hold (` system|code `,
        /// or `|code ` for any system).
        concept: Option<String>,
    },
}

/// How a parameter's values match (the modifier).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// The default: strings start with the value, case-insensitive; other kinds match it.
    Prefix,
    /// `:contains` on strings.
    Contains,
    /// `:exact` on strings: the text as written, case and accents included.
    Exact,
    /// `:not` on tokens: resources with no value that matches (none at all included).
    Not,
    /// `:identifier` on references: `system|value` tokens matched against the Identifiers
    /// inside references (what their writer claims), never against literal references.
    Identifier,
    /// `:text` on tokens: a word of a code's text (`CodeableConcept.text`, `Coding.display`)
    /// starts with the value (or its words follow each other there), compared as strings are.
    Text,
    /// `:below` on URIs: the URI itself or any URI under it (after `:` or `/`).
    Below,
    /// `:missing=true` (the resource has no value for the parameter) or `:missing=false`
    /// (it has one); the filter carries no values.
    Missing(bool),
}

/// One ANDed condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `_id`: one of these ids.
    Id(Vec<String>),
    /// A search parameter with its ORed values.
    Param {
        /// The parameter.
        def: &'static ParamDef,
        /// How the values match (the modifier).
        mode: Match,
        /// Alternatives.
        values: Vec<Value>,
    },
}

/// Result order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// By id: stable paging, no meaning.
    Id,
    /// `_sort=date`.
    DateAscending,
    /// `_sort=-date`.
    DateDescending,
}

impl Sort {
    /// How two matches with `(date, id)` keys are ordered, as the embedded store orders a
    /// search: by their dates (those without one last, as the store's `NULLS LAST`), then by
    /// id (bytes).
    pub fn compare(self, a: (Option<i64>, &str), b: (Option<i64>, &str)) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        let by_date = |descending: bool| match (a.0, b.0) {
            (Some(x), Some(y)) if descending => y.cmp(&x),
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        let first = match self {
            Sort::Id => Ordering::Equal,
            Sort::DateAscending => by_date(false),
            Sort::DateDescending => by_date(true),
        };
        first.then_with(|| a.1.as_bytes().cmp(b.1.as_bytes()))
    }
}

/// One way the policy engine allows access: inside a patient's compartment (if set) and
/// matching every filter (a scope's query restriction).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Alternative {
    /// Only resources in this patient's compartment.
    pub compartment: Option<String>,
    /// Filters ANDed in.
    pub filters: Vec<Filter>,
}

/// What the policy engine adds to every query: each group is a set of alternatives (ORed),
/// groups are ANDed (token scopes ∩ region grant); patients who opted the caller out are excluded.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Constraints {
    /// ANDed groups of ORed alternatives.
    pub groups: Vec<Vec<Alternative>>,
    /// Leave out the data of every patient whose consent denies these parties.
    pub consent: Option<ConsentExclusion>,
}

/// Excludes patients whose active consent denies any of `actors` the searched type at `at`.
/// Expressed as a rule rather than a list of patients, so a party many patients opted out
/// of costs no more per search than one few did.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsentExclusion {
    /// The parties asking (`Device/…`, `Organization/…`, `Practitioner/…`).
    pub actors: Vec<String>,
    /// The time of the access (epoch ms), against the provisions' periods.
    pub at: i64,
}

/// `_include` or `_revinclude`: resources that a search's matches refer to, or that refer to
/// them, returned beside the matches (each under the caller's rights, as its own search).
#[derive(Debug, Clone)]
pub struct Include {
    /// The type holding the reference (for `_include`, the type whose resources refer).
    pub source: &'static TypeDef,
    /// Its reference parameter.
    pub param: &'static ParamDef,
    /// The referenced type, when limited (`Observation:subject:Patient`).
    pub target: Option<&'static TypeDef>,
    /// `_revinclude`: resources of `source` that refer to the matches.
    pub reverse: bool,
    /// `:iterate`: applied to included resources too, not only to the matches.
    pub iterate: bool,
}

impl PartialEq for Include {
    fn eq(&self, other: &Self) -> bool {
        self.source.name == other.source.name
            && self.param.name == other.param.name
            && self.target.map(|t| t.name) == other.target.map(|t| t.name)
            && (self.reverse, self.iterate) == (other.reverse, other.iterate)
    }
}

impl Include {
    /// Whether a resource of `resource_type` can be the referenced end of this include.
    pub fn targets(&self, resource_type: &str) -> bool {
        match (self.target, self.param.kind) {
            (Some(target), _) => target.name == resource_type,
            (None, ParamKind::Reference { target: Some(only) }) => only == resource_type,
            _ => true,
        }
    }
}

/// A condition through references (a chained parameter or `_has`): a search on another type
/// that the service runs under the caller's rights, and turns into a filter on the ids it
/// found, before any store or source is asked.
#[derive(Debug, Clone)]
pub struct Join {
    /// How the two types are linked.
    pub link: Link,
    /// The search on the other type: one condition (which may itself be a join).
    pub query: Box<SearchQuery>,
    /// The parameter as the client wrote it, for messages.
    pub written: String,
}

/// How a [`Join`]'s search relates to the searched type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Link {
    /// `patient.name=…`: the searched type's reference parameter points at a match.
    Chain(&'static ParamDef),
    /// `_has:Observation:patient:code=…`: a match points at the searched resource through
    /// its reference parameter.
    Has(&'static ParamDef),
}

/// The most resources a join's search may match: what it finds becomes a list of ids.
pub const MAX_JOINED: usize = 200;

/// The most references a chain (or `_has`) may follow, one inside the other.
pub const MAX_JOIN_DEPTH: usize = 3;

/// The most chained parameters and `_has` one search may have.
pub const MAX_JOINS: usize = 4;

/// The most `_include` and `_revinclude` parameters one search may have.
pub const MAX_INCLUDES: usize = 10;

/// A complete search against one type.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    /// The type searched.
    pub type_def: &'static TypeDef,
    /// The client's filters (ANDed).
    pub filters: Vec<Filter>,
    /// The policy's constraints.
    pub constraints: Constraints,
    /// Order.
    pub sort: Sort,
    /// Page size.
    pub count: usize,
    /// Rows skipped (paging).
    pub offset: usize,
    /// The query parameters that define this search, for `self`/`next` links.
    pub link_params: Vec<(String, String)>,
    /// How the answer is presented (`_summary`, `_elements`, `_total`, `_pretty`).
    pub presentation: Presentation,
    /// `_include` and `_revinclude`.
    pub includes: Vec<Include>,
    /// Chained parameters and `_has`, resolved into `filters` by the service; the store
    /// refuses a query that still has any.
    pub joins: Vec<Join>,
}

/// The deepest page offset served; deeper paging is a sign of a client gone wrong.
pub const MAX_OFFSET: usize = 10_000_000;

/// The most comma-separated alternatives one parameter may carry (each is a bound SQL value).
pub const MAX_VALUES: usize = 100;

/// The Danish CPR number's system, the example in error messages.
const CPR_SYSTEM: &str = "urn:oid:1.2.208.176.1.2";

impl SearchQuery {
    /// Parses a search on `resource_type` from query (or form) parameters.
    pub fn parse(
        resource_type: &str,
        params: &[(String, String)],
        limits: PageLimits,
    ) -> Result<SearchQuery, FhirError> {
        Self::parse_at(resource_type, params, limits, 0)
    }

    /// [`SearchQuery::parse`] of a search `depth` joins down (a chain's or `_has`'s own).
    fn parse_at(
        resource_type: &str,
        params: &[(String, String)],
        limits: PageLimits,
        depth: usize,
    ) -> Result<SearchQuery, FhirError> {
        let type_def = served_type(resource_type)?;
        let mut filters = Vec::new();
        let mut sort = None;
        let mut count = None;
        let mut offset = None;
        let mut link_params = Vec::new();
        let mut presentation = PresentationParams::default();
        let mut includes = Vec::new();
        let mut joins = Vec::new();
        for (name, value) in params {
            let once = |seen: bool| {
                if seen {
                    Err(FhirError::BadRequest(format!(
                        "'{name}' may be given only once"
                    )))
                } else {
                    Ok(())
                }
            };
            match name.as_str() {
                "_count" => {
                    once(count.is_some())?;
                    let n: usize = value.parse().map_err(|_| {
                        FhirError::BadRequest(format!(
                            "_count must be a non-negative integer, not '{value}'"
                        ))
                    })?;
                    count = Some(n.min(limits.max_count));
                }
                "_offset" => {
                    once(offset.is_some())?;
                    offset = Some(value.parse().ok().filter(|o| *o <= MAX_OFFSET).ok_or_else(
                        || {
                            FhirError::BadRequest(format!(
                                "_offset must be an integer from 0 to {MAX_OFFSET}, not '{value}'"
                            ))
                        },
                    )?);
                }
                "_sort" => {
                    once(sort.is_some())?;
                    sort = Some(match value.as_str() {
                        "date" if type_def.sortable_by_date() => Sort::DateAscending,
                        "-date" if type_def.sortable_by_date() => Sort::DateDescending,
                        _ => {
                            return Err(FhirError::BadRequest(format!(
                                "unsupported _sort '{value}' for {resource_type}: {}",
                                if type_def.sortable_by_date() {
                                    "use date or -date"
                                } else {
                                    "this type cannot be sorted"
                                }
                            )));
                        }
                    });
                    link_params.push((name.clone(), value.clone()));
                }
                _ if presentation.take(type_def.name, name, value)? => {
                    if name != "_format" {
                        link_params.push((name.clone(), value.clone()));
                    }
                }
                "_include" | "_include:iterate" | "_revinclude" | "_revinclude:iterate" => {
                    let include = parse_include(type_def, name, value)?;
                    if !includes.contains(&include) {
                        if includes.len() == MAX_INCLUDES {
                            return Err(FhirError::BadRequest(format!(
                                "a search may have at most {MAX_INCLUDES} _include and _revinclude parameters"
                            )));
                        }
                        includes.push(include);
                    }
                    link_params.push((name.clone(), value.clone()));
                }
                _ if name.starts_with("_has:") || is_chain(name) => {
                    if joins.len() == MAX_JOINS {
                        return Err(FhirError::BadRequest(format!(
                            "a search may have at most {MAX_JOINS} chained parameters and _has"
                        )));
                    }
                    joins.push(parse_join(type_def, name, value, limits, depth + 1)?);
                    link_params.push((name.clone(), value.clone()));
                }
                _ => {
                    filters.push(parse_filter(type_def, name, value)?);
                    link_params.push((name.clone(), value.clone()));
                }
            }
        }
        let (presentation, only_count) = presentation.finish()?;
        let count = match only_count {
            true => 0,
            false => count.unwrap_or(limits.default_count.min(limits.max_count)),
        };
        Ok(SearchQuery {
            type_def,
            filters,
            constraints: Constraints::default(),
            sort: sort.unwrap_or(Sort::Id),
            count,
            offset: offset.unwrap_or(0),
            link_params,
            presentation,
            includes,
            joins,
        })
    }

    /// A search of `type_def` for the resources with these ids, under no constraints yet.
    pub fn by_ids(type_def: &'static TypeDef, ids: Vec<String>) -> SearchQuery {
        SearchQuery {
            type_def,
            count: ids.len(),
            filters: vec![Filter::Id(ids)],
            constraints: Constraints::default(),
            sort: Sort::Id,
            offset: 0,
            link_params: Vec::new(),
            presentation: Presentation::default(),
            includes: Vec::new(),
            joins: Vec::new(),
        }
    }
}

/// Parameters that shape or page a search rather than select: not allowed at the end of a
/// chain or `_has`.
fn is_control(name: &str) -> bool {
    let base = name.split(':').next().unwrap_or_default();
    matches!(
        base,
        "_count" | "_offset" | "_sort" | "_include" | "_revinclude" | "_format" | "_pretty"
    ) || crate::shape::RESULT_PARAMETERS.contains(&base)
}

/// Whether `name` is a chained parameter (`patient.name`, `subject:Patient.name`).
fn is_chain(name: &str) -> bool {
    !name.starts_with('_') && name.contains('.')
}

/// `_include=Type:param[:Target]` (and `_revinclude`, `:iterate`).
fn parse_include(
    searched: &'static TypeDef,
    name: &str,
    value: &str,
) -> Result<Include, FhirError> {
    let reverse = name.starts_with("_revinclude");
    let iterate = name.ends_with(":iterate");
    let bad = |why: String| FhirError::BadRequest(format!("bad {name} '{value}': {why}"));
    if value == "*" {
        return Err(bad(
            "'*' is not supported: name each reference, as Type:parameter (e.g. Observation:patient)"
                .into(),
        ));
    }
    let mut parts = value.split(':');
    let (Some(source), Some(param), target, None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad(
            "write it as Type:parameter or Type:parameter:TargetType (e.g. Observation:patient)"
                .into(),
        ));
    };
    let source = type_def(source).ok_or_else(|| bad(format!("'{source}' is not a served type")))?;
    if !reverse && !iterate && source.name != searched.name {
        return Err(bad(format!(
            "_include names the searched type's references ({}:…); use _include:iterate for references of included resources",
            searched.name
        )));
    }
    let param = source
        .param(param)
        .filter(|p| matches!(p.kind, ParamKind::Reference { .. }))
        .ok_or_else(|| {
            let references: Vec<&str> = source
                .all_params()
                .filter(|p| matches!(p.kind, ParamKind::Reference { .. }))
                .map(|p| p.name)
                .collect();
            bad(format!(
                "{} has no reference parameter '{param}'; its reference parameters: {}",
                source.name,
                references.join(", ")
            ))
        })?;
    let target = match target {
        None => None,
        Some(target) => {
            let target_def =
                type_def(target).ok_or_else(|| bad(format!("'{target}' is not a served type")))?;
            if let ParamKind::Reference { target: Some(only) } = param.kind
                && only != target_def.name
            {
                return Err(bad(format!(
                    "{}:{} refers only to {only}",
                    source.name, param.name
                )));
            }
            Some(target_def)
        }
    };
    let include = Include {
        source,
        param,
        target,
        reverse,
        iterate,
    };
    if reverse && !iterate && !include.targets(searched.name) {
        return Err(bad(format!(
            "{}:{} does not refer to {}",
            source.name, param.name, searched.name
        )));
    }
    Ok(include)
}

/// A chained parameter (`patient.name=…`, `subject:Patient.name=…`) or a reverse chain
/// (`_has:Observation:patient:code=…`): the condition on the other type is parsed as a
/// search of that type, and may itself be a chain.
fn parse_join(
    searched: &'static TypeDef,
    name: &str,
    value: &str,
    limits: PageLimits,
    depth: usize,
) -> Result<Join, FhirError> {
    let bad = |why: String| FhirError::BadRequest(format!("bad search parameter '{name}': {why}"));
    if depth > MAX_JOIN_DEPTH {
        return Err(bad(format!(
            "chains and _has may reach at most {MAX_JOIN_DEPTH} references deep"
        )));
    }
    let references = |of: &'static TypeDef| {
        of.all_params()
            .filter(|p| matches!(p.kind, ParamKind::Reference { .. }))
            .map(|p| p.name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (link, other, rest) = match name.strip_prefix("_has:") {
        Some(has) => {
            let mut parts = has.splitn(3, ':');
            let (Some(other), Some(param), Some(rest)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(bad(
                    "write it as _has:Type:reference:parameter (e.g. _has:Observation:patient:code)"
                        .into(),
                ));
            };
            let other =
                type_def(other).ok_or_else(|| bad(format!("'{other}' is not a served type")))?;
            let def = (other.param(param))
                .filter(|p| matches!(p.kind, ParamKind::Reference { .. }))
                .ok_or_else(|| {
                    bad(format!(
                        "{} has no reference parameter '{param}'; its reference parameters: {}",
                        other.name,
                        references(other)
                    ))
                })?;
            if let ParamKind::Reference { target: Some(only) } = def.kind
                && only != searched.name
            {
                return Err(bad(format!("{}:{param} refers only to {only}", other.name)));
            }
            (Link::Has(def), other, rest)
        }
        None => {
            let (head, rest) = name.split_once('.').unwrap_or((name, ""));
            let (param, target) = match head.split_once(':') {
                Some((param, target)) => (param, Some(target)),
                None => (head, None),
            };
            let def = (searched.param(param))
                .filter(|p| matches!(p.kind, ParamKind::Reference { .. }))
                .ok_or_else(|| {
                    bad(format!(
                        "only reference parameters can be chained, and {} has no reference parameter '{param}'; its reference parameters: {}",
                        searched.name,
                        references(searched)
                    ))
                })?;
            let other = match (target, def.kind) {
                (Some(target), ParamKind::Reference { target: only }) => {
                    let other = type_def(target)
                        .ok_or_else(|| bad(format!("'{target}' is not a served type")))?;
                    if only.is_some_and(|only| only != other.name) {
                        return Err(bad(format!(
                            "{} refers only to {}",
                            def.name,
                            only.unwrap_or_default()
                        )));
                    }
                    other
                }
                (None, ParamKind::Reference { target: Some(only) }) => {
                    type_def(only).ok_or_else(|| bad(format!("'{only}' is not a served type")))?
                }
                _ => {
                    return Err(bad(format!(
                        "'{param}' may refer to several types: name one, as {param}:Patient.{rest}"
                    )));
                }
            };
            (Link::Chain(def), other, rest)
        }
    };
    if rest.is_empty() || is_control(rest) {
        return Err(bad(format!(
            "end it with a search parameter of {} (e.g. …{})",
            other.name,
            if matches!(link, Link::Has(_)) {
                ":_id"
            } else {
                "._id"
            }
        )));
    }
    let pair = [(rest.to_owned(), value.to_owned())];
    let mut query = SearchQuery::parse_at(other.name, &pair, limits, depth)?;
    query.count = MAX_JOINED + 1;
    Ok(Join {
        link,
        query: Box::new(query),
        written: name.to_owned(),
    })
}

impl SearchQuery {
    /// The patients the client's filters explicitly name through the compartment element
    /// (`patient=`, or `_id=` on Patient), if any filter does. These are exactly the filters
    /// the store answers from the compartment column ([`compartment_patients`]), so whom a
    /// search names (for consent and audit) is whom it can match. Identifiers (`:identifier`)
    /// and bare ids name nobody: they are claims or may refer to other types.
    pub fn named_patients(&self) -> Option<Vec<String>> {
        self.filters.iter().find_map(|filter| match filter {
            Filter::Id(ids) if self.type_def.name == "Patient" => Some(ids.clone()),
            Filter::Param { def, mode, values } => {
                compartment_patients(self.type_def, def, *mode, values)
                    .map(|ids| ids.into_iter().cloned().collect())
            }
            _ => None,
        })
    }
}

/// When a filter on `def` is a condition on the patient compartment (literal `Patient/<id>`
/// references through the type's compartment element), the patients it allows.
pub fn compartment_patients<'a>(
    type_def: &TypeDef,
    def: &ParamDef,
    mode: Match,
    values: &'a [Value],
) -> Option<Vec<&'a String>> {
    let compartment = type_def.param("patient")?;
    if compartment.paths != def.paths || mode != Match::Prefix {
        return None;
    }
    values
        .iter()
        .map(|v| match v {
            Value::Reference {
                resource_type: Some(t),
                id,
            } if t == "Patient" => Some(id),
            _ => None,
        })
        .collect()
}

/// The definition of a type we serve, or a 404 naming the ones we do.
pub fn served_type(resource_type: &str) -> Result<&'static TypeDef, FhirError> {
    type_def(resource_type).ok_or_else(|| {
        FhirError::NotFound(format!(
            "resource type '{resource_type}' is not served here; served types: {}",
            crate::params::TYPES
                .iter()
                .map(|t| t.name)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

/// Parses the filters of a scope's query restriction; control parameters are refused.
pub fn parse_restriction(
    type_def: &'static TypeDef,
    pairs: &[(String, String)],
) -> Result<Vec<Filter>, FhirError> {
    let filters: Vec<Filter> = pairs
        .iter()
        .map(|(name, value)| parse_filter(type_def, name, value))
        .collect::<Result<_, _>>()?;
    // A grant says what may be reached, never what may not.
    if filters.iter().any(|f| {
        matches!(
            f,
            Filter::Param {
                mode: Match::Not,
                ..
            }
        )
    }) {
        return Err(FhirError::BadRequest(
            "a restriction cannot use :not: name what is allowed".into(),
        ));
    }
    Ok(filters)
}

fn parse_filter(type_def: &'static TypeDef, name: &str, value: &str) -> Result<Filter, FhirError> {
    let (base, modifier) = match name.split_once(':') {
        Some((base, modifier)) => (base, Some(modifier)),
        None => (name, None),
    };
    if value.is_empty() {
        return Err(FhirError::BadRequest(format!(
            "search parameter '{name}' has no value"
        )));
    }
    if value.split(',').count() > MAX_VALUES {
        return Err(FhirError::BadRequest(format!(
            "search parameter '{name}' has more than {MAX_VALUES} comma-separated values"
        )));
    }
    let values = value.split(',').map(str::trim);
    if base == "_id" {
        if modifier.is_some() {
            return Err(FhirError::BadRequest(format!(
                "modifier ':{}' is not supported on _id",
                modifier.unwrap_or_default()
            )));
        }
        let ids: Vec<String> = values.map(str::to_owned).collect();
        if let Some(bad) = ids.iter().find(|id| !is_fhir_id(id)) {
            return Err(FhirError::BadRequest(format!(
                "'{bad}' is not a valid resource id"
            )));
        }
        return Ok(Filter::Id(ids));
    }
    let Some(def) = type_def.param(base) else {
        let mut supported: Vec<&str> = type_def.all_params().map(|p| p.name).collect();
        supported.extend(["_id", "_count", "_offset"]);
        supported.extend(crate::shape::RESULT_PARAMETERS);
        if type_def.sortable_by_date() {
            supported.push("_sort");
        }
        return Err(FhirError::BadRequest(format!(
            "unsupported search parameter '{base}' for {}; supported: {}",
            type_def.name,
            supported.join(", ")
        )));
    };
    let mode = match (def.kind, modifier) {
        (_, None) => Match::Prefix,
        (ParamKind::String, Some("contains")) => Match::Contains,
        (ParamKind::String, Some("exact")) => Match::Exact,
        (ParamKind::Token, Some("not")) => Match::Not,
        (ParamKind::Token, Some("text")) => Match::Text,
        (ParamKind::Uri, Some("below")) => Match::Below,
        (_, Some("missing")) => {
            let missing = match value {
                "true" => true,
                "false" => false,
                _ => {
                    return Err(FhirError::BadRequest(format!(
                        "bad value '{value}' for '{name}': use true or false"
                    )));
                }
            };
            return Ok(Filter::Param {
                def,
                mode: Match::Missing(missing),
                values: Vec::new(),
            });
        }
        (ParamKind::Reference { .. }, Some("identifier")) => {
            let identifiers = values
                .map(|v| match v.split_once('|') {
                    Some((system, value)) if !system.is_empty() && !value.is_empty() => {
                        Ok(Value::Token {
                            system: Some(system.to_owned()),
                            code: Some(value.to_owned()),
                        })
                    }
                    _ => Err(FhirError::BadRequest(format!(
                        "bad value '{v}' for '{name}': give the identifier with its system, \
                         as {name}=system|value (e.g. {name}={CPR_SYSTEM}|0101010000)"
                    ))),
                })
                .collect::<Result<_, _>>()?;
            return Ok(Filter::Param {
                def,
                mode: Match::Identifier,
                values: identifiers,
            });
        }
        (ParamKind::Reference { target: None }, Some(t))
            if t.starts_with(|c: char| c.is_ascii_uppercase()) =>
        {
            // `subject:Patient=123` is the same as `subject=Patient/123`.
            let ids = values
                .map(|v| parse_value(def, &format!("{t}/{v}")))
                .collect::<Result<_, _>>()?;
            return Ok(Filter::Param {
                def,
                mode: Match::Prefix,
                values: ids,
            });
        }
        (_, Some(m)) => {
            return Err(FhirError::BadRequest(format!(
                "modifier ':{m}' is not supported on '{base}'"
            )));
        }
    };
    let values = match (def.kind, mode) {
        // A string is searched in each of the forms it can be written in (see `text`).
        (ParamKind::Token, Match::Text) => {
            let patterns: Vec<Value> = values
                .flat_map(crate::text::text_patterns)
                .map(Value::Text)
                .collect();
            if patterns.is_empty() {
                return Err(FhirError::BadRequest(format!(
                    "search parameter '{name}' has no word to look for"
                )));
            }
            patterns
        }
        (ParamKind::String, Match::Prefix | Match::Contains) => values
            .flat_map(crate::text::folds)
            .map(Value::Text)
            .collect(),
        (ParamKind::String, _) => values.map(|v| Value::Text(v.to_owned())).collect(),
        _ => values
            .map(|v| parse_value(def, v))
            .collect::<Result<Vec<_>, _>>()?,
    };
    Ok(Filter::Param { def, mode, values })
}

/// For a string parameter compared with `mode`, the form of its indexed values that counts
/// (the system of their rows): `EXACT` for `:exact`, the folded forms otherwise; `None` for
/// other kinds of parameters and for `:missing` (any value counts).
pub fn string_form(kind: ParamKind, mode: Match) -> Option<&'static str> {
    match (kind, mode) {
        (ParamKind::String, Match::Missing(_)) => None,
        (ParamKind::String, Match::Exact) => Some(crate::text::EXACT),
        (ParamKind::String, _) => Some(""),
        _ => None,
    }
}

/// A `[prefix]number` search value: its prefix and the range of millionths it stands for
/// (`100` means 99.5 up to 100.5, `100.0` 99.95 up to 100.05; `ap` within 10%). The error is
/// what is wrong when it is more than the value's form.
fn parse_number(raw: &str) -> Result<(Prefix, DateRange), Option<&'static str>> {
    let (prefix, number) = prefix_of(raw).ok_or(Some(
        "supported prefixes are eq, ne, gt, lt, ge, le, sa, eb, ap",
    ))?;
    let value: f64 = number
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && !number.contains(['e', 'E']))
        .ok_or(None)?;
    let decimals = number.split_once('.').map_or(0, |(_, d)| d.len());
    let half = 0.5 * 10f64.powi(-(decimals.min(6) as i32));
    let half = match prefix {
        Prefix::Eq | Prefix::Ne => half,
        Prefix::Ap => half.max(value.abs() / 10.0),
        _ => 0.0,
    };
    let scaled = |v: f64| crate::params::millionths(v).ok_or(Some("out of range"));
    let range = match half {
        0.0 => DateRange {
            lo: scaled(value)?,
            hi: scaled(value)?,
        },
        _ => DateRange {
            lo: scaled(value - half)?,
            hi: scaled(value + half)? - 1,
        },
    };
    Ok((prefix, range))
}

/// The index names a filter of `def` with `mode` searches: the Identifiers inside references
/// live under their modifier's name (`subject:identifier`), a composite's values in the rows
/// of the quantity parameter it names, a union's in those of its parameters, everything else
/// under the parameter's own.
pub fn indexed_params(def: &ParamDef, mode: Match) -> Vec<String> {
    match (def.kind, mode) {
        (_, Match::Identifier) => vec![crate::params::identifier_param(def.name)],
        (ParamKind::CodeQuantity { of }, _) => vec![of.to_owned()],
        _ if !def.union.is_empty() => def.union.iter().map(|p| (*p).to_owned()).collect(),
        _ => vec![def.name.to_owned()],
    }
}

/// The comparison prefix of a date or number value (`eq` when it has none), and the rest;
/// `None` for an unknown prefix.
fn prefix_of(raw: &str) -> Option<(Prefix, &str)> {
    const PREFIXES: [(&str, Prefix); 9] = [
        ("eq", Prefix::Eq),
        ("ne", Prefix::Ne),
        ("gt", Prefix::Gt),
        ("lt", Prefix::Lt),
        ("ge", Prefix::Ge),
        ("le", Prefix::Le),
        ("sa", Prefix::Sa),
        ("eb", Prefix::Eb),
        ("ap", Prefix::Ap),
    ];
    match raw.starts_with(|c: char| c.is_ascii_lowercase()) {
        true => (PREFIXES.iter())
            .find_map(|(name, prefix)| raw.strip_prefix(name).map(|rest| (*prefix, rest))),
        false => Some((Prefix::Eq, raw)),
    }
}

fn parse_value(def: &ParamDef, raw: &str) -> Result<Value, FhirError> {
    let bad =
        |why: &str| FhirError::BadRequest(format!("bad value '{raw}' for '{}': {why}", def.name));
    match def.kind {
        ParamKind::Token => Ok(match raw.split_once('|') {
            Some((system, code)) => Value::Token {
                system: Some(system.to_owned()),
                code: (!code.is_empty()).then(|| code.to_owned()),
            },
            None => Value::Token {
                system: None,
                code: Some(raw.to_owned()),
            },
        }),
        ParamKind::Reference { target } => {
            let (resource_type, id) = if raw.contains('/') {
                let (t, id) =
                    split_reference(raw).ok_or_else(|| bad("expected Type/id or an id"))?;
                (Some(t), id)
            } else {
                (target.map(str::to_owned), raw.to_owned())
            };
            if let (Some(target), Some(t)) = (target, &resource_type)
                && target != t
            {
                return Err(bad(&format!("'{}' refers to {target} resources", def.name)));
            }
            if !is_fhir_id(&id) {
                return Err(FhirError::BadRequest(format!(
                    "bad value '{raw}' for '{name}': not a resource id; a reference search \
                     matches Type/id or an id, and an identifier inside a reference only \
                     with {name}:identifier=system|value",
                    name = def.name
                )));
            }
            Ok(Value::Reference { resource_type, id })
        }
        ParamKind::String => Ok(Value::Text(raw.to_owned())),
        ParamKind::Uri => Ok(Value::Uri(raw.to_owned())),
        ParamKind::Quantity => {
            let mut parts = raw.splitn(3, '|');
            let number = parts.next().unwrap_or_default();
            let (system, code) = (parts.next(), parts.next());
            let (prefix, range) = parse_number(number).map_err(|why| {
                bad(why.unwrap_or(
                    "expected [prefix]number[|system|code], e.g. ge7.5|http://unitsofmeasure.org|mmol/L",
                ))
            })?;
            let unit = |part: Option<&str>| part.filter(|p| !p.is_empty()).map(str::to_owned);
            Ok(Value::Quantity {
                prefix,
                range,
                system: unit(system),
                code: unit(code),
                concept: None,
            })
        }
        ParamKind::Number => {
            let (prefix, range) = parse_number(raw)
                .map_err(|why| bad(why.unwrap_or("expected [prefix]number, e.g. ge0.8")))?;
            Ok(Value::Quantity {
                prefix,
                range,
                system: None,
                code: None,
                concept: None,
            })
        }
        ParamKind::CodeQuantity { .. } => {
            let example = "expected system|code$[prefix]number, e.g. http://loinc.org|8480-6$ge180";
            let (token, number) = raw.split_once('$').ok_or_else(|| bad(example))?;
            if number.contains('|') {
                return Err(bad(
                    "the number compares in the unit it was recorded in: leave out the unit, e.g. http://loinc.org|8480-6$ge180",
                ));
            }
            let (prefix, range) =
                parse_number(number).map_err(|why| bad(why.unwrap_or(example)))?;
            let (system, code) = match token.split_once('|') {
                Some((system, code)) => (system, code),
                None => ("", token),
            };
            if code.is_empty() || token.contains(char::is_whitespace) {
                return Err(bad(example));
            }
            let concept = match system {
                "" => format!("|{code} "),
                system => format!(" {system}|{code} "),
            };
            Ok(Value::Quantity {
                prefix,
                range,
                system: None,
                code: None,
                concept: Some(concept),
            })
        }
        ParamKind::Date => {
            let (prefix, rest) = prefix_of(raw)
                .ok_or_else(|| bad("supported prefixes are eq, ne, gt, lt, ge, le, sa, eb, ap"))?;
            let mut range = date::parse(rest).ok_or_else(|| {
                bad("expected a FHIR date like 2024, 2024-03, 2024-03-01 or 2024-03-01T10:00:00Z")
            })?;
            if prefix == Prefix::Ap {
                const DAY_MS: i64 = 86_400_000;
                let distance = (date::now_ms() - (range.lo / 2 + range.hi / 2)).abs();
                let margin = (distance / 10).max(DAY_MS);
                range.lo = range.lo.saturating_sub(margin);
                range.hi = range.hi.saturating_add(margin);
            }
            Ok(Value::Date(prefix, range))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::Shape;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn result_parameters_shape_the_answer_and_travel_in_the_links() {
        let parse = |list: &[(&str, &str)]| {
            SearchQuery::parse("Observation", &pairs(list), PageLimits::default())
        };
        let count = parse(&[("_summary", "count"), ("_count", "20")]).unwrap();
        assert_eq!(count.count, 0);
        assert_eq!(count.presentation.shape, Shape::Full);
        let query = parse(&[
            ("_elements", "status,value"),
            ("_total", "none"),
            ("_pretty", "true"),
        ])
        .unwrap();
        assert_eq!(
            query.presentation.shape,
            Shape::Elements(vec!["status", "value"])
        );
        assert!(!query.presentation.total && query.presentation.pretty);
        assert_eq!(
            query.link_params,
            pairs(&[
                ("_elements", "status,value"),
                ("_total", "none"),
                ("_pretty", "true")
            ])
        );
        assert!(
            parse(&[("_totalMethod", "count")])
                .unwrap()
                .presentation
                .total
        );
        let error = parse(&[("_summary", "true"), ("_elements", "status")]).unwrap_err();
        assert!(error.to_string().contains("cannot be combined"), "{error}");
        assert_eq!(error.status(), 400);
    }

    #[test]
    fn a_format_other_than_json_is_not_acceptable() {
        for format in ["xml", "application/fhir+xml", "ttl"] {
            let error = SearchQuery::parse(
                "Patient",
                &pairs(&[("_format", format)]),
                PageLimits::default(),
            )
            .unwrap_err();
            assert_eq!(error.status(), 406, "{format}");
            assert!(error.to_string().contains("FHIR JSON only"), "{error}");
        }
        let json = pairs(&[("_format", "application/fhir+json")]);
        let query = SearchQuery::parse("Patient", &json, PageLimits::default()).unwrap();
        assert!(query.link_params.is_empty());
    }

    #[test]
    fn unsupported_parameters_and_modifiers_are_refused() {
        for (name, value) in [
            ("colour", "red"),
            ("name:text", "x"),
            ("date", "xy2024"),
            ("date", "yesterday"),
            ("_elements", "colour"),
            ("_summary", "yes"),
            ("_total", "some"),
            ("_pretty", "yes"),
            ("patient", "Organization/x"),
            ("_sort", "code"),
            ("_count", "-1"),
            ("code", ""),
        ] {
            let err = SearchQuery::parse(
                "Observation",
                &pairs(&[(name, value)]),
                PageLimits::default(),
            )
            .unwrap_err();
            assert_eq!(err.status(), 400, "{name}={value} gave {err}");
        }
    }

    #[test]
    fn count_is_clamped_to_the_maximum() {
        let limits = PageLimits {
            default_count: 10,
            max_count: 20,
        };
        let q = SearchQuery::parse("Observation", &pairs(&[("_count", "1000")]), limits).unwrap();
        assert_eq!(q.count, 20);
        let q = SearchQuery::parse("Observation", &[], limits).unwrap();
        assert_eq!(q.count, 10);
    }

    #[test]
    fn token_forms() {
        let q = SearchQuery::parse(
            "Observation",
            &pairs(&[(
                "code",
                "http://loinc.org|8480-6,8462-4,|x,http://loinc.org|",
            )]),
            PageLimits::default(),
        )
        .unwrap();
        let Filter::Param { values, .. } = &q.filters[0] else {
            panic!()
        };
        assert_eq!(
            values,
            &vec![
                Value::Token {
                    system: Some("http://loinc.org".into()),
                    code: Some("8480-6".into())
                },
                Value::Token {
                    system: None,
                    code: Some("8462-4".into())
                },
                Value::Token {
                    system: Some(String::new()),
                    code: Some("x".into())
                },
                Value::Token {
                    system: Some("http://loinc.org".into()),
                    code: None
                },
            ]
        );
    }

    #[test]
    fn reference_identifiers_need_the_modifier_and_their_system() {
        let parse = |name: &str, value: &str| {
            SearchQuery::parse(
                "Observation",
                &pairs(&[(name, value)]),
                PageLimits::default(),
            )
        };
        let err = parse("subject", "urn:oid:1.2.208.176.1.2|0101010000").unwrap_err();
        assert_eq!(err.status(), 400);
        assert!(
            err.to_string().contains("subject:identifier=system|value"),
            "{err}"
        );
        for bare in ["0101010000", "|0101010000", "urn:oid:1.2.208.176.1.2|"] {
            let err = parse("subject:identifier", bare).unwrap_err();
            assert!(err.to_string().contains("with its system"), "{bare}: {err}");
        }
        let q = parse("subject:identifier", "urn:oid:1.2.208.176.1.2|0101010000").unwrap();
        let Filter::Param { mode, values, .. } = &q.filters[0] else {
            panic!()
        };
        assert_eq!(*mode, Match::Identifier);
        assert_eq!(
            values[0],
            Value::Token {
                system: Some("urn:oid:1.2.208.176.1.2".into()),
                code: Some("0101010000".into())
            }
        );
        assert_eq!(q.named_patients(), None, "an identifier names no patient");
        let q = parse("patient:identifier", "urn:oid:1.2.208.176.1.2|0101010000").unwrap();
        assert_eq!(q.named_patients(), None, "an identifier names no patient");
        let q = parse("subject", "pat-b").unwrap();
        assert_eq!(q.named_patients(), None, "a bare id may be a Group's");
        let q = parse("subject", "Patient/pat-b").unwrap();
        assert_eq!(q.named_patients(), Some(vec!["pat-b".to_owned()]));
    }

    #[test]
    fn source_takes_below() {
        let q = SearchQuery::parse(
            "Observation",
            &pairs(&[("_source:below", "urn:healthcloud:written")]),
            PageLimits::default(),
        )
        .unwrap();
        let Filter::Param { mode, values, .. } = &q.filters[0] else {
            panic!()
        };
        assert_eq!(*mode, Match::Below);
        assert_eq!(values[0], Value::Uri("urn:healthcloud:written".into()));
        let q = SearchQuery::parse(
            "Observation",
            &pairs(&[("_source:missing", "true")]),
            PageLimits::default(),
        )
        .unwrap();
        let Filter::Param { mode, .. } = &q.filters[0] else {
            panic!()
        };
        assert_eq!(*mode, Match::Missing(true));
        for bad in ["yes", "true,false"] {
            let err = SearchQuery::parse(
                "Observation",
                &pairs(&[("_source:missing", bad)]),
                PageLimits::default(),
            )
            .unwrap_err();
            assert!(err.to_string().contains("true or false"), "{err}");
        }
        let err = SearchQuery::parse(
            "Observation",
            &pairs(&[("_source:contains", "x")]),
            PageLimits::default(),
        )
        .unwrap_err();
        assert_eq!(err.status(), 400);
    }

    #[test]
    fn references_take_type_from_target_or_value() {
        let q = SearchQuery::parse(
            "Observation",
            &pairs(&[
                ("patient", "abc"),
                ("subject", "Patient/def"),
                ("subject:Patient", "ghi"),
            ]),
            PageLimits::default(),
        )
        .unwrap();
        let ids: Vec<_> = q
            .filters
            .iter()
            .map(|f| match f {
                Filter::Param { values, .. } => values[0].clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            ids,
            vec![
                Value::Reference {
                    resource_type: Some("Patient".into()),
                    id: "abc".into()
                },
                Value::Reference {
                    resource_type: Some("Patient".into()),
                    id: "def".into()
                },
                Value::Reference {
                    resource_type: Some("Patient".into()),
                    id: "ghi".into()
                },
            ]
        );
    }
}

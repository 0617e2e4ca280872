//! FHIR R4 data of the patient in context: read, search (paged), create.
//!
//! Every call is checked by the host when it is made, against the region's grant ∩ the
//! user's scopes ∩ the patient's consent ∩ the patient compartment, and written to the
//! patient's audit trail. So every call can fail with [`Error::Denied`], also for an app
//! that worked a minute ago (a grant was revoked, the patient opted out): show it to the
//! user in words.
//!
//! Resources cross the boundary as FHIR JSON and are decoded into any
//! [`serde::de::DeserializeOwned`] type: the types in [`crate::model`], your own, or
//! [`serde_json::Value`].
//!
//! Only the search parameters the integration cloud serves are accepted (an unsupported one
//! is [`Error::Invalid`]); see its CapabilityStatement (`/fhir/r4/metadata`).
//!
//! Each resource names where it came from (the region's own record, a source such as a GP
//! system, or a user who wrote it through healthcloud): [`origin`] reads it, for the app to
//! show beside the data.
//!
//! A search can be answered in part: the patient's data lives in several sources (the
//! platform's own store and the organizations' FHIR servers), and one that is down or slow is
//! left out rather than failing the search. A [`Page`] says so: [`Page::is_complete`], and
//! [`Page::incomplete`] names each missing source. Show the user that what they see may not
//! be everything.
//!
//! A page or document made of parts that each have their own call can show the others when
//! one is denied or unavailable: [`Section::from_result`] turns those two errors into a
//! [`Withheld`] part and gives any other error back.
//!
//! ```no_run
//! use healthcloud_sdk::{context, fhir, model::{Observation, Patient}};
//!
//! # fn main() -> Result<(), fhir::Error> {
//! let patient_id = context::launch().patient.expect("a patient in context");
//! let patient: Patient = fhir::read("Patient", &patient_id)?;
//! let readings: Vec<Observation> = fhir::search("Observation")
//!     .param("code", "http://loinc.org|85354-9")
//!     .param("date", "ge2026-08-01")
//!     .sort("-date")
//!     .count(100)
//!     .all()?;
//! # Ok(()) }
//! ```

mod origin;

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::healthcloud::platform::fhir as wit;

pub use origin::{Origin, origin};

/// How many resources [`Search::all`] collects at most unless [`Search::limit`] says
/// otherwise: an upper bound, so a broad search cannot exhaust the instance's memory.
pub const DEFAULT_LIMIT: usize = 1000;

/// Why a FHIR call failed. The first four mirror the WIT `error` variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The effective permission does not allow the call: the region did not grant it, the
    /// user's scopes do not allow it, the patient opted out, or there is no patient in
    /// context. The reason says which.
    Denied(String),
    /// No such resource for the patient in context (resources of other patients are
    /// reported the same way).
    NotFound,
    /// The call itself is wrong: an unknown type, an unsupported search parameter, or a
    /// resource that fails validation. The reason names the offending part. Usually a bug
    /// in the app.
    Invalid(String),
    /// The data could not be reached right now; retrying later may succeed.
    Unavailable(String),
    /// Not from the platform: a resource did not convert between FHIR JSON and the app's
    /// Rust type (the app's model does not fit the data).
    Json(String),
}

impl Error {
    /// The HTTP status an app should answer with when this error ends a request: `403`
    /// denied, `404` not found, `500` invalid (a bug in the app), `503` unavailable, `502`
    /// for data the app could not read.
    pub fn status_code(&self) -> u16 {
        match self {
            Error::Denied(_) => 403,
            Error::NotFound => 404,
            Error::Invalid(_) => 500,
            Error::Unavailable(_) => 503,
            Error::Json(_) => 502,
        }
    }

    /// A short machine-readable name: `denied`, `not-found`, `invalid`, `unavailable`,
    /// `json`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Denied(_) => "denied",
            Error::NotFound => "not-found",
            Error::Invalid(_) => "invalid",
            Error::Unavailable(_) => "unavailable",
            Error::Json(_) => "json",
        }
    }

    /// The reason given with the error, if any.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Error::Denied(reason)
            | Error::Invalid(reason)
            | Error::Unavailable(reason)
            | Error::Json(reason) => Some(reason),
            Error::NotFound => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Denied(reason) => write!(f, "access denied: {reason}"),
            Error::NotFound => f.write_str("not found"),
            Error::Invalid(reason) => write!(f, "invalid FHIR call: {reason}"),
            Error::Unavailable(reason) => write!(f, "data unavailable: {reason}"),
            Error::Json(reason) => write!(f, "unexpected FHIR data: {reason}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<wit::Error> for Error {
    fn from(error: wit::Error) -> Error {
        match error {
            wit::Error::Denied(reason) => Error::Denied(reason),
            wit::Error::NotFound => Error::NotFound,
            wit::Error::Invalid(reason) => Error::Invalid(reason),
            wit::Error::Unavailable(reason) => Error::Unavailable(reason),
        }
    }
}

/// Why part of a page or document was not read: the platform denied its call, or its data
/// could not be reached. Either is a normal outcome (a grant is narrower than the app's
/// manifest, the patient opted out, a source is down) that the app shows in place of the
/// data; see [`Section`].
///
/// As JSON `{"denied": reason}` or `{"unavailable": reason}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Withheld {
    /// The platform denied the call (grant, user scopes or consent); the reason says why.
    Denied(String),
    /// The data could not be reached right now.
    Unavailable(String),
}

impl Withheld {
    /// The part-level reading of a failed call: a denial or unavailable data withholds the
    /// part; any other error (a bug in the app, data it cannot read) is given back, to fail
    /// the whole request.
    pub fn from_error(error: Error) -> Result<Withheld, Error> {
        match error {
            Error::Denied(reason) => Ok(Withheld::Denied(reason)),
            Error::Unavailable(reason) => Ok(Withheld::Unavailable(reason)),
            other => Err(other),
        }
    }

    /// `denied` or `unavailable`, as [`Error::kind`] names them: e.g. a CSS class.
    pub fn kind(&self) -> &'static str {
        match self {
            Withheld::Denied(_) => "denied",
            Withheld::Unavailable(_) => "unavailable",
        }
    }

    /// The platform's reason. Show a denial's to the user; an unavailable source's is for logs.
    pub fn reason(&self) -> &str {
        match self {
            Withheld::Denied(reason) | Withheld::Unavailable(reason) => reason,
        }
    }

    /// What to show in place of the data, in a sentence; `data` names it, e.g. "medication
    /// data". A denial says "denied" and why; unavailable data does not say why (the reason
    /// is about the platform, not for the user).
    pub fn sentence(&self, data: &str) -> String {
        match self {
            Withheld::Denied(reason) => format!("Access to {data} was denied: {reason}"),
            Withheld::Unavailable(_) => format!(
                "The {data} is unavailable right now: the health record could not be reached."
            ),
        }
    }
}

impl From<Withheld> for Error {
    fn from(withheld: Withheld) -> Error {
        match withheld {
            Withheld::Denied(reason) => Error::Denied(reason),
            Withheld::Unavailable(reason) => Error::Unavailable(reason),
        }
    }
}

/// One part of a page or document that is read with its own FHIR call and stands on its own:
/// what was read, or why it was not ([`Withheld`]). A page made of sections still shows the
/// others when one is denied.
///
/// As JSON the content itself, or `{"denied": reason}` / `{"unavailable": reason}`.
///
/// ```
/// use healthcloud_sdk::fhir::{Error, Section, Withheld};
///
/// let medication: Result<Vec<String>, Error> = Err(Error::Denied("the patient opted out".into()));
/// let section = Section::from_result(medication)?;
/// assert_eq!(section.withheld(), Some(&Withheld::Denied("the patient opted out".into())));
/// assert_eq!(serde_json::to_string(&section).unwrap(), r#"{"denied":"the patient opted out"}"#);
///
/// // Anything else is not the section's to hide: it fails the request.
/// let bug: Result<Vec<String>, Error> = Err(Error::Invalid("unknown search parameter".into()));
/// assert!(Section::from_result(bug).is_err());
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Section<T> {
    /// The section's content.
    Read(T),
    /// The section could not be read.
    Withheld(Withheld),
}

impl<T> Section<T> {
    /// The section from the result of its FHIR call; see [`Withheld::from_error`] for which
    /// errors withhold the section and which are given back.
    pub fn from_result(result: Result<T, Error>) -> Result<Section<T>, Error> {
        match result {
            Ok(content) => Ok(Section::Read(content)),
            Err(error) => Withheld::from_error(error).map(Section::Withheld),
        }
    }

    /// The content, converted.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Section<U> {
        match self {
            Section::Read(content) => Section::Read(f(content)),
            Section::Withheld(why) => Section::Withheld(why),
        }
    }

    /// The section by reference.
    pub fn as_ref(&self) -> Section<&T> {
        match self {
            Section::Read(content) => Section::Read(content),
            Section::Withheld(why) => Section::Withheld(why.clone()),
        }
    }

    /// The content, if it was read.
    pub fn read(&self) -> Option<&T> {
        match self {
            Section::Read(content) => Some(content),
            Section::Withheld(_) => None,
        }
    }

    /// Why the section was not read, if it was not.
    pub fn withheld(&self) -> Option<&Withheld> {
        match self {
            Section::Read(_) => None,
            Section::Withheld(why) => Some(why),
        }
    }
}

impl<T> Section<Vec<T>> {
    /// The items read; none when the section was withheld.
    pub fn items(&self) -> &[T] {
        self.read().map_or(&[], Vec::as_slice)
    }
}

/// An empty section that was read.
impl<T: Default> Default for Section<T> {
    fn default() -> Section<T> {
        Section::Read(T::default())
    }
}

/// Reads one resource by type and id, e.g. `fhir::read::<Patient>("Patient", &id)`.
pub fn read<T: DeserializeOwned>(resource_type: &str, id: &str) -> Result<T, Error> {
    decode(resource_type, &wit::read(resource_type, id)?)
}

/// Creates `resource` (with its `resourceType`, without an `id`) for the patient in context
/// and returns what was stored, with `id` and `meta` set by the server.
pub fn create<T: Serialize + DeserializeOwned>(resource: &T) -> Result<T, Error> {
    let json = serde_json::to_string(resource)
        .map_err(|error| Error::Json(format!("the resource could not be serialized: {error}")))?;
    decode("the created resource", &wit::create(&json)?)
}

/// Starts a search of the patient in context's resources of `resource_type`.
pub fn search(resource_type: &str) -> Search {
    Search {
        resource_type: resource_type.to_owned(),
        params: Vec::new(),
        limit: DEFAULT_LIMIT,
    }
}

/// A search being built; run it with [`first_page`](Self::first_page),
/// [`first`](Self::first) or [`all`](Self::all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    resource_type: String,
    params: Vec<(String, String)>,
    limit: usize,
}

/// One page of search results: the resources found, and which sources, if any, are missing
/// from the answer.
///
/// ```no_run
/// use healthcloud_sdk::{fhir, model::Observation};
///
/// # fn main() -> Result<(), fhir::Error> {
/// let page = fhir::search("Observation").sort("-date").first_page::<Observation>()?;
/// for missing in &page.incomplete {
///     println!("readings from {} are missing: {}", missing.source, missing.diagnostics);
/// }
/// if !page.is_complete() {
///     println!("showing {} readings; some sources could not be reached", page.resources.len());
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The resources on this page.
    pub resources: Vec<T>,
    /// How many resources match in all, among the sources that answered.
    pub total: u32,
    /// The cursor of the next page ([`Search::page`]); `None` on the last page.
    pub next: Option<String>,
    /// What the answer lacks: one entry per source whose data is missing; empty when the
    /// answer is complete.
    pub incomplete: Vec<Incomplete>,
}

impl<T> Page<T> {
    /// Whether every source answered: nothing is missing from this page.
    pub fn is_complete(&self) -> bool {
        self.incomplete.is_empty()
    }
}

/// A source whose data is missing from a search's answer; the resources of the others are
/// there all the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Incomplete {
    /// The source, by the name operators gave it (e.g. `gp`). Its resources, in an answer
    /// where it is not missing, carry `meta.source` = `urn:healthcloud:source:<source>`.
    pub source: String,
    /// What happened, as a FHIR OperationOutcome issue code: `timeout`, `transient` (down,
    /// an error answer, or left alone for a while after failing), `structure` (not FHIR),
    /// `security`, `too-costly` (too large, or more matches than were read), …
    pub code: String,
    /// What happened, in words for the log; never the source's own error body.
    pub diagnostics: String,
}

impl Search {
    /// Adds a search parameter, e.g. `("code", "http://loinc.org|85354-9")` or
    /// `("date", "ge2026-01-01")`. Modifiers go in the name (`code:text`), prefixes in the
    /// value; values are not URL-encoded. Repeating a name ANDs; commas in a value OR.
    pub fn param(mut self, name: &str, value: &str) -> Search {
        self.params.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sorts the results: `date` (oldest first) or `-date` (newest first).
    pub fn sort(self, order: &str) -> Search {
        self.param("_sort", order)
    }

    /// Asks for pages of `page_size` resources (the host caps it at its per-call limit).
    pub fn count(self, page_size: u32) -> Search {
        self.param("_count", &page_size.to_string())
    }

    /// The most resources [`all`](Self::all) collects (default [`DEFAULT_LIMIT`]).
    pub fn limit(mut self, max_results: usize) -> Search {
        self.limit = max_results;
        self
    }

    /// The resource type searched.
    pub fn resource_type(&self) -> &str {
        &self.resource_type
    }

    /// The parameters as they will be sent.
    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }

    /// Runs the search and returns its first page.
    pub fn first_page<T: DeserializeOwned>(&self) -> Result<Page<T>, Error> {
        self.page(None)
    }

    /// Returns the page at `cursor` (a previous page's `next`), or the first page for `None`.
    pub fn page<T: DeserializeOwned>(&self, cursor: Option<&str>) -> Result<Page<T>, Error> {
        decode_page(&self.resource_type, self.fetch(cursor)?)
    }

    /// The first result of the first page, if any: with `sort("-date")`, the newest. Add
    /// `count(1)` so the host sends no more than that.
    pub fn first<T: DeserializeOwned>(&self) -> Result<Option<T>, Error> {
        Ok(self.first_page()?.resources.into_iter().next())
    }

    /// Follows `next` cursors and returns every result, up to [`limit`](Self::limit):
    /// results past the limit are not fetched.
    pub fn all<T: DeserializeOwned>(&self) -> Result<Vec<T>, Error> {
        Ok(self.all_pages()?.resources)
    }

    /// As [`all`](Self::all), as one [`Page`] holding every result: its
    /// [`incomplete`](Page::incomplete) names each source missing from any of the pages read,
    /// so the app can say that what it shows may not be everything.
    pub fn all_pages<T: DeserializeOwned>(&self) -> Result<Page<T>, Error> {
        self.collect_pages(|cursor| self.fetch(cursor))
    }

    fn fetch(&self, cursor: Option<&str>) -> Result<wit::SearchPage, Error> {
        let params: Vec<wit::SearchParam> = self
            .params
            .iter()
            .map(|(name, value)| wit::SearchParam {
                name: name.clone(),
                value: value.clone(),
            })
            .collect();
        Ok(wit::search(&self.resource_type, &params, cursor)?)
    }

    /// The paging loop, apart from the host call so that it is testable natively.
    fn collect_pages<T: DeserializeOwned>(
        &self,
        mut fetch: impl FnMut(Option<&str>) -> Result<wit::SearchPage, Error>,
    ) -> Result<Page<T>, Error> {
        let mut results = Page {
            resources: Vec::new(),
            total: 0,
            next: None,
            incomplete: Vec::new(),
        };
        let mut cursor: Option<String> = None;
        while results.resources.len() < self.limit {
            let page = fetch(cursor.as_deref())?;
            let empty = page.resources.is_empty();
            let mut decoded = decode_page::<T>(&self.resource_type, page)?;
            let room = self.limit - results.resources.len();
            decoded.resources.truncate(room);
            results.resources.append(&mut decoded.resources);
            results.total = decoded.total;
            for missing in decoded.incomplete {
                if !results
                    .incomplete
                    .iter()
                    .any(|m| m.source == missing.source)
                {
                    results.incomplete.push(missing);
                }
            }
            // An empty page with a cursor would loop forever; a host never sends one, but
            // the app should not hang if one ever did.
            match decoded.next {
                Some(next) if !empty => cursor = Some(next),
                _ => break,
            }
        }
        Ok(results)
    }
}

fn decode_page<T: DeserializeOwned>(
    resource_type: &str,
    page: wit::SearchPage,
) -> Result<Page<T>, Error> {
    Ok(Page {
        resources: page
            .resources
            .iter()
            .map(|json| decode(resource_type, json))
            .collect::<Result<_, _>>()?,
        total: page.total,
        next: page.next,
        incomplete: page
            .incomplete
            .into_iter()
            .map(|missing| Incomplete {
                source: missing.source,
                code: missing.code,
                diagnostics: missing.diagnostics,
            })
            .collect(),
    })
}

fn decode<T: DeserializeOwned>(what: &str, json: &str) -> Result<T, Error> {
    serde_json::from_str(json).map_err(|error| Error::Json(format!("{what}: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn page(ids: &[&str], next: Option<&str>) -> wit::SearchPage {
        wit::SearchPage {
            resources: ids
                .iter()
                .map(|id| json!({"resourceType": "Observation", "id": id}).to_string())
                .collect(),
            total: 5,
            next: next.map(str::to_owned),
            incomplete: Vec::new(),
        }
    }

    fn ids(values: &[Value]) -> Vec<&str> {
        values.iter().map(|v| v["id"].as_str().unwrap()).collect()
    }

    #[test]
    fn the_builder_collects_parameters_in_order() {
        let search = search("Observation")
            .param("code", "http://loinc.org|85354-9")
            .sort("-date")
            .count(100);
        assert_eq!(search.resource_type(), "Observation");
        assert_eq!(
            search.params(),
            [
                ("code".to_owned(), "http://loinc.org|85354-9".to_owned()),
                ("_sort".to_owned(), "-date".to_owned()),
                ("_count".to_owned(), "100".to_owned()),
            ]
        );
    }

    #[test]
    fn all_follows_cursors_to_the_last_page() {
        let mut cursors = Vec::new();
        let results: Vec<Value> = search("Observation")
            .collect_pages(|cursor| {
                cursors.push(cursor.map(str::to_owned));
                Ok(match cursor {
                    None => page(&["a", "b"], Some("c1")),
                    Some("c1") => page(&["c", "d"], Some("c2")),
                    _ => page(&["e"], None),
                })
            })
            .unwrap()
            .resources;
        assert_eq!(ids(&results), ["a", "b", "c", "d", "e"]);
        assert_eq!(cursors, [None, Some("c1".into()), Some("c2".into())]);
    }

    #[test]
    fn all_stops_at_the_limit_without_fetching_more() {
        let mut fetches = 0;
        let results: Vec<Value> = search("Observation")
            .limit(3)
            .collect_pages(|_| {
                fetches += 1;
                Ok(page(&["x", "y"], Some("more")))
            })
            .unwrap()
            .resources;
        assert_eq!(results.len(), 3);
        assert_eq!(fetches, 2);
    }

    #[test]
    fn an_empty_page_with_a_cursor_ends_the_search() {
        let mut fetches = 0;
        let results: Vec<Value> = search("Observation")
            .collect_pages(|_| {
                fetches += 1;
                Ok(page(&[], Some("again")))
            })
            .unwrap()
            .resources;
        assert!(results.is_empty());
        assert_eq!(fetches, 1);
    }

    #[test]
    fn errors_stop_the_search_and_map_to_statuses() {
        let denied: Result<Page<Value>, _> = search("Observation")
            .collect_pages(|_| Err(Error::Denied("the patient opted out".into())));
        let error = denied.unwrap_err();
        assert_eq!(error.status_code(), 403);
        assert_eq!(error.kind(), "denied");
        assert_eq!(error.to_string(), "access denied: the patient opted out");
        assert_eq!(Error::from(wit::Error::NotFound), Error::NotFound);
        assert_eq!(Error::Unavailable("x".into()).status_code(), 503);
    }

    #[test]
    fn all_pages_names_each_source_missing_from_any_page_once() {
        let missing = |source: &str| wit::Incomplete {
            source: source.into(),
            code: "timeout".into(),
            diagnostics: format!("source '{source}' did not answer"),
        };
        let all: Page<Value> = search("Observation")
            .collect_pages(|cursor| {
                let mut next = page(&["a"], cursor.is_none().then_some("c1"));
                next.incomplete = match cursor {
                    None => vec![missing("gp")],
                    _ => vec![missing("gp"), missing("kommune")],
                };
                Ok(next)
            })
            .unwrap();
        assert_eq!(ids(&all.resources), ["a", "a"]);
        assert!(!all.is_complete());
        let sources: Vec<&str> = all.incomplete.iter().map(|m| m.source.as_str()).collect();
        assert_eq!(sources, ["gp", "kommune"]);
    }

    #[test]
    fn denied_and_unavailable_withhold_a_section_and_other_errors_fail_it() {
        let denied = Section::<Vec<u8>>::from_result(Err(Error::Denied("no grant".into())));
        assert_eq!(
            denied,
            Ok(Section::Withheld(Withheld::Denied("no grant".into())))
        );
        let unavailable = Section::<Vec<u8>>::from_result(Err(Error::Unavailable("down".into())));
        assert_eq!(
            unavailable,
            Ok(Section::Withheld(Withheld::Unavailable("down".into())))
        );
        for error in [
            Error::NotFound,
            Error::Invalid("bad parameter".into()),
            Error::Json("bad data".into()),
        ] {
            assert_eq!(
                Section::<Vec<u8>>::from_result(Err(error.clone())),
                Err(error)
            );
        }
        assert_eq!(
            Section::from_result(Ok(vec![1, 2])),
            Ok(Section::Read(vec![1, 2]))
        );
    }

    #[test]
    fn a_withheld_section_reads_back_as_its_error() {
        for error in [Error::Denied("d".into()), Error::Unavailable("u".into())] {
            let why = Withheld::from_error(error.clone()).unwrap();
            assert_eq!(why.kind(), error.kind());
            assert_eq!(Some(why.reason()), error.reason());
            assert_eq!(Error::from(why), error);
        }
    }

    #[test]
    fn a_section_is_its_content_or_why_not_in_json() {
        let read: Section<Vec<u32>> = Section::Read(vec![7]);
        assert_eq!(serde_json::to_value(&read).unwrap(), json!([7]));
        let nothing: Section<Option<u32>> = Section::Read(None);
        assert_eq!(serde_json::to_value(&nothing).unwrap(), Value::Null);
        let denied: Section<Vec<u32>> = Section::Withheld(Withheld::Denied("opted out".into()));
        assert_eq!(
            serde_json::to_value(&denied).unwrap(),
            json!({"denied": "opted out"})
        );
        let unavailable: Section<Vec<u32>> = Section::Withheld(Withheld::Unavailable("t".into()));
        assert_eq!(
            serde_json::to_value(&unavailable).unwrap(),
            json!({"unavailable": "t"})
        );
    }

    #[test]
    fn a_section_is_read_mapped_and_borrowed() {
        let read: Section<Vec<u32>> = Section::Read(vec![1, 2]);
        assert_eq!(read.read(), Some(&vec![1, 2]));
        assert_eq!(read.withheld(), None);
        assert_eq!(read.items(), [1, 2]);
        assert_eq!(read.as_ref().map(|v| v.len()), Section::Read(2));
        assert_eq!(read.map(|v| v[0]), Section::Read(1));

        let why = Withheld::Unavailable("timeout".into());
        let withheld: Section<Vec<u32>> = Section::Withheld(why.clone());
        assert_eq!(withheld.read(), None);
        assert_eq!(withheld.withheld(), Some(&why));
        assert!(withheld.items().is_empty());
        assert_eq!(
            withheld.as_ref().map(|v| v.len()),
            Section::Withheld(why.clone())
        );
        assert_eq!(Section::<Vec<u32>>::default(), Section::Read(vec![]));
    }

    #[test]
    fn a_withheld_section_says_why_in_a_sentence() {
        let denied = Withheld::Denied("the patient opted out".into());
        assert_eq!(denied.kind(), "denied");
        assert_eq!(
            denied.sentence("medication data"),
            "Access to medication data was denied: the patient opted out"
        );
        let unavailable = Withheld::Unavailable("store timeout".into());
        assert_eq!(unavailable.kind(), "unavailable");
        assert_eq!(
            unavailable.sentence("medication data"),
            "The medication data is unavailable right now: the health record could not be reached."
        );
    }

    #[test]
    fn a_page_names_the_sources_missing_from_a_partial_answer() {
        let complete: Page<Value> = decode_page("Observation", page(&["a"], None)).unwrap();
        assert!(complete.is_complete());
        let mut partial = page(&["a"], None);
        partial.incomplete.push(wit::Incomplete {
            source: "gp".into(),
            code: "timeout".into(),
            diagnostics: "source 'gp' did not answer within 3000 ms".into(),
        });
        let partial: Page<Value> = decode_page("Observation", partial).unwrap();
        assert!(!partial.is_complete());
        assert_eq!(ids(&partial.resources), ["a"]);
        assert_eq!(
            partial.incomplete,
            [Incomplete {
                source: "gp".into(),
                code: "timeout".into(),
                diagnostics: "source 'gp' did not answer within 3000 ms".into(),
            }]
        );
    }

    #[test]
    fn data_that_does_not_fit_the_type_is_a_json_error() {
        #[derive(serde::Deserialize, Debug)]
        struct Strict {
            #[expect(dead_code, reason = "only decoding is tested")]
            id: u32,
        }
        let result: Result<Page<Strict>, _> =
            search("Observation").collect_pages(|_| Ok(page(&["not-a-number"], None)));
        assert!(matches!(result, Err(Error::Json(reason)) if reason.starts_with("Observation")));
    }
}

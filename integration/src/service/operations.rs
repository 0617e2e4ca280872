//! Operations over many searches: `Patient/$everything` (a patient's whole record as the
//! caller may see it), `Patient/$summary` (their International Patient Summary) and
//! `Observation/$lastn` (the latest observations of each code). Each is made of the caller's
//! own searches, recorded as one access.

use std::collections::BTreeMap;

use healthcloud_platform::scope::Interaction;
use healthcloud_sdk::fhir as sdk;
use patient_summary_document::{Authorship, MAX_ENTRIES, Record, SEARCHES, document};
use serde_json::Value;

use super::{FhirService, Pending};
use crate::error::FhirError;
use crate::params::TYPES;
use crate::policy::AccessContext;
use crate::query::SearchQuery;
use crate::ratelimit::is_refusal;
use crate::store::{Included, Omission, SearchPage};

/// The most resources of one type `$everything` returns.
pub const MAX_PER_TYPE: usize = 1000;

/// The most observations `$lastn` looks at (newest first).
pub const MAX_LASTN_SCAN: usize = 1000;

/// Refuses anything but one patient's id where an operation takes one (a list would mix
/// patients in one answer and name each in the other's log).
fn one_patient(id: &str) -> Result<(), FhirError> {
    match healthcloud_platform::auth::is_fhir_id(id) {
        true => Ok(()),
        false => Err(FhirError::NotFound(format!("Patient/{id} not found"))),
    }
}

impl FhirService {
    /// `Patient/$everything`: the patient and the resources of every type in their compartment
    /// that the caller may search (the caller's rights, compartment and the patient's
    /// consent), each type up to [`MAX_PER_TYPE`]; `types` narrows them (`_type`), `since`
    /// (`_since`) takes only what was written since. What was left out, and why, is in the
    /// page's omissions. One audit record.
    pub async fn everything(
        &self,
        context: &AccessContext,
        patient: &str,
        types: Option<&[String]>,
        since: Option<&str>,
    ) -> Result<SearchPage, FhirError> {
        self.admit(context)?;
        let mut audit = Pending::new(context, Interaction::Search, "Patient");
        audit.resource_id = Some(patient.to_owned());
        audit.query = Some("$everything".into());
        let result = async {
            one_patient(patient)?;
            if let Some(unknown) = (types.unwrap_or_default().iter())
                .find(|t| !TYPES.iter().any(|d| d.name == t.as_str() && d.in_patient_compartment()))
            {
                return Err(FhirError::BadRequest(format!(
                    "_type '{unknown}' is not a type of a patient's record served here"
                )));
            }
            // The patient first: a caller who may not read them gets nothing else.
            let mut page = self
                .joined(context, "Patient", &[("_id", patient.to_owned())], &mut audit)
                .await?;
            if page.resources.is_empty() {
                return Err(FhirError::NotFound(format!("Patient/{patient} not found")));
            }
            let mut omissions = Vec::new();
            let mut included = Vec::new();
            for type_def in TYPES.iter().filter(|t| t.placed_only()) {
                if types.is_some_and(|types| !types.iter().any(|t| t == type_def.name)) {
                    continue;
                }
                let mut params = vec![("patient", format!("Patient/{patient}"))];
                if let Some(since) = since {
                    params.push(("_lastUpdated", format!("ge{since}")));
                }
                params.push(("_count", (MAX_PER_TYPE).to_string()));
                match self.joined(context, type_def.name, &params, &mut audit).await {
                    Ok(found) => {
                        if found.total > found.resources.len() {
                            omissions.push(Omission {
                                severity: "warning",
                                code: "too-costly",
                                diagnostics: format!(
                                    "{}: the first {MAX_PER_TYPE} of {} are included; search the type for the rest",
                                    type_def.name, found.total
                                ),
                            });
                        }
                        omissions.extend(found.incomplete.iter().map(|missing| Omission {
                            severity: "warning",
                            code: missing.code,
                            diagnostics: missing.diagnostics.clone(),
                        }));
                        included.extend(found.resources.into_iter().map(|resource| Included {
                            resource_type: type_def.name,
                            resource,
                        }));
                    }
                    Err(error) if is_refusal(&error) => omissions.push(Omission {
                        severity: "information",
                        code: "suppressed",
                        diagnostics: format!("{}: not included: {error}", type_def.name),
                    }),
                    Err(error) => return Err(error),
                }
            }
            page.included = included;
            page.omissions = omissions;
            Ok(page)
        }
        .await;
        self.finish(audit, result).await
    }

    /// `Patient/$summary`: the patient's International Patient Summary, the FHIR document
    /// Bundle the patient-summary app makes, by the same code
    /// ([`patient_summary_document`]) from the caller's own read of the Patient and searches
    /// of each section. A section the caller may not see (scopes, consent) or whose data
    /// cannot be reached is in the document without entries, saying why; without the Patient
    /// there is no summary. One audit record.
    pub async fn summary(
        &self,
        context: &AccessContext,
        patient: &str,
    ) -> Result<Value, FhirError> {
        self.admit(context)?;
        let mut audit = Pending::new(context, Interaction::Search, "Patient");
        audit.resource_id = Some(patient.to_owned());
        audit.query = Some("$summary".into());
        let result = async {
            one_patient(patient)?;
            let found = self
                .joined(
                    context,
                    "Patient",
                    &[("_id", patient.to_owned())],
                    &mut audit,
                )
                .await?;
            let Some(patient_resource) = found.resources.first() else {
                return Err(FhirError::NotFound(format!("Patient/{patient} not found")));
            };
            let patient_json: Value =
                serde_json::from_str(&patient_resource.content).map_err(|error| {
                    FhirError::Internal(anyhow::anyhow!("a stored Patient is not JSON: {error}"))
                })?;
            let mut sections = Vec::new();
            for section in SEARCHES {
                let mut params = vec![("patient", format!("Patient/{patient}"))];
                params.extend(section.params.iter().map(|(n, v)| (*n, (*v).to_owned())));
                params.push(("_count", MAX_ENTRIES.to_string()));
                let searched = self
                    .joined(context, section.resource_type, &params, &mut audit)
                    .await;
                sections.push(match searched {
                    // A source that did not answer leaves the section unknown, not empty.
                    Ok(page) if !page.incomplete.is_empty() => Err(sdk::Error::Unavailable(
                        (page.incomplete.iter())
                            .map(|missing| missing.diagnostics.as_str())
                            .collect::<Vec<_>>()
                            .join("; "),
                    )),
                    Ok(page) => (page.resources.iter())
                        .filter(|r| r.patient_id.as_deref() == Some(patient))
                        .map(|r| serde_json::from_str(&r.content))
                        .collect::<Result<Vec<Value>, _>>()
                        .map_err(|error| sdk::Error::Json(error.to_string())),
                    Err(FhirError::Unavailable(why)) => Err(sdk::Error::Unavailable(why)),
                    Err(error) if is_refusal(&error) => Err(sdk::Error::Denied(error.to_string())),
                    Err(error) => return Err(error),
                });
            }
            let sections: [_; 3] = sections.try_into().expect("one result per section");
            let record = Record::current(patient_json, sections).map_err(|error| {
                FhirError::Internal(anyhow::anyhow!("the summary could not be made: {error}"))
            })?;
            let claims = &context.principal.claims;
            let on_behalf = claims.fhir_user.as_deref().unwrap_or(&claims.sub);
            let authorship = Authorship {
                timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                author: format!("healthcloud FHIR API (Patient/$summary for {on_behalf})"),
            };
            Ok(document(&record, &authorship, || {
                uuid::Uuid::new_v4().to_string()
            }))
        }
        .await;
        self.finish(audit, result).await
    }

    /// `Observation/$lastn`: the `max` latest observations of each code among those the
    /// search `params` finds (newest first, at most [`MAX_LASTN_SCAN`] looked at). One audit
    /// record.
    pub async fn lastn(
        &self,
        context: &AccessContext,
        params: &[(String, String)],
        max: usize,
    ) -> Result<SearchPage, FhirError> {
        self.admit(context)?;
        let mut audit = Pending::new(context, Interaction::Search, "Observation");
        audit.query = Some(super::encode(params));
        let result = async {
            let mut asked: Vec<(&str, String)> = Vec::new();
            for (name, value) in params {
                if matches!(name.as_str(), "_sort" | "_count" | "_offset") {
                    return Err(FhirError::BadRequest(format!(
                        "$lastn orders and counts itself: '{name}' is not taken (use max)"
                    )));
                }
                asked.push((name.as_str(), value.clone()));
            }
            asked.push(("_sort", "-date".into()));
            asked.push(("_count", MAX_LASTN_SCAN.to_string()));
            let mut page = self.joined(context, "Observation", &asked, &mut audit).await?;
            let mut per_code: BTreeMap<String, usize> = BTreeMap::new();
            page.resources.retain(|resource| {
                let code = serde_json::from_str::<serde_json::Value>(&resource.content)
                    .ok()
                    .and_then(|json| {
                        let coding = &json["code"]["coding"][0];
                        Some(format!(
                            "{}|{}",
                            coding["system"].as_str().unwrap_or_default(),
                            coding["code"].as_str()?
                        ))
                    })
                    .unwrap_or_default();
                let seen = per_code.entry(code).or_default();
                *seen += 1;
                *seen <= max
            });
            if page.total > MAX_LASTN_SCAN {
                page.omissions.push(Omission {
                    severity: "warning",
                    code: "too-costly",
                    diagnostics: format!(
                        "only the latest {MAX_LASTN_SCAN} of {} observations were looked at: narrow the search (patient, category, code)",
                        page.total
                    ),
                });
            }
            page.total = page.resources.len();
            Ok(page)
        }
        .await;
        self.finish(audit, result).await
    }

    /// A search of `resource_type` by the caller, recorded with `audit`.
    async fn joined(
        &self,
        context: &AccessContext,
        resource_type: &str,
        params: &[(&str, String)],
        audit: &mut Pending<'_>,
    ) -> Result<SearchPage, FhirError> {
        let params: Vec<(String, String)> = (params.iter())
            .map(|(name, value)| ((*name).to_owned(), value.clone()))
            .collect();
        let mut limits = self.limits;
        limits.max_count = limits.max_count.max(MAX_PER_TYPE).max(MAX_LASTN_SCAN);
        let query = SearchQuery::parse(resource_type, &params, limits)?;
        let mut inner = Pending::new(context, Interaction::Search, query.type_def.name);
        let result = Box::pin(self.search_checked(context, query, &mut inner)).await;
        audit.absorb(inner);
        result.map(|(_, page)| page)
    }
}

use std::future::Future;
use std::time::Duration;

use healthcloud_integration::policy::AccessContext;
use healthcloud_integration::{FhirError, FhirService};
use healthcloud_platform::scope::Interaction;
use serde_json::Value;

use super::FhirCtx;
use crate::bindings::fhir::{self, Error, Incomplete, SearchPage, SearchParam};

impl fhir::Host for &mut FhirCtx {
    async fn read(&mut self, resource_type: String, id: String) -> Result<String, Error> {
        let call = self.call(Interaction::Read, &resource_type, Some(&id))?;
        call.run(move |service, context| async move {
            let resource = service.read(&context, &resource_type, &id).await?;
            Ok(resource.content)
        })
        .await
    }

    async fn search(
        &mut self,
        resource_type: String,
        params: Vec<SearchParam>,
        cursor: Option<String>,
    ) -> Result<SearchPage, Error> {
        let limit = self.search_results;
        let call = self.call(Interaction::Search, &resource_type, None)?;
        call.run(move |service, context| async move {
            let (params, offset) = paged(params, cursor.as_deref(), limit)?;
            let (_, page) = service
                .search_params(&context, &resource_type, &params)
                .await?;
            let returned = page.resources.len();
            let next = (offset + returned < page.total && returned > 0)
                .then(|| (offset + returned).to_string());
            Ok(SearchPage {
                total: u32::try_from(page.total).unwrap_or(u32::MAX),
                resources: page.resources.into_iter().map(|r| r.content).collect(),
                next,
                incomplete: page
                    .incomplete
                    .into_iter()
                    .map(|missing| Incomplete {
                        source: missing.source,
                        code: missing.code.to_owned(),
                        diagnostics: missing.diagnostics,
                    })
                    .collect(),
            })
        })
        .await
    }

    async fn create(&mut self, resource_json: String) -> Result<String, Error> {
        let resource: Value = serde_json::from_str(&resource_json)
            .map_err(|e| Error::Invalid(format!("the resource is not JSON: {e}")))?;
        let resource_type = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Invalid("the resource has no resourceType".into()))?
            .to_owned();
        let call = self.call(Interaction::Create, &resource_type, None)?;
        call.run(move |service, context| async move {
            let written = service.create(&context, &resource_type, resource).await?;
            Ok(written.content)
        })
        .await
    }
}

/// One data host call: what it is, the service, and the policy engine's view of the caller.
struct Call {
    what: (Interaction, String, Option<String>),
    service: FhirService,
    context: AccessContext,
    timeout: Duration,
}

impl FhirCtx {
    /// Counts a call against the per-request limit and takes the grant as it is now.
    fn call(
        &mut self,
        interaction: Interaction,
        resource_type: &str,
        id: Option<&str>,
    ) -> Result<Call, Error> {
        if self.calls >= self.max_calls {
            return Err(Error::Unavailable(format!(
                "this request has made its {} data calls; make fewer, larger searches",
                self.max_calls
            )));
        }
        self.calls += 1;
        Ok(Call {
            what: (interaction, resource_type.to_owned(), id.map(str::to_owned)),
            service: self.service.clone(),
            context: self.access(),
            timeout: self.timeout,
        })
    }
}

impl Call {
    /// Runs the call on its own task under the host-call time limit. A call that runs out of
    /// time is cancelled there and answers `unavailable`: its task is aborted, so whatever
    /// database work it had started stops, and an uncommitted write (the resource with its
    /// AuditEvent, one transaction) rolls back. The same holds when the instance itself is
    /// stopped mid-call (its deadline, an uninstall): dropping the call aborts the task. A
    /// cancelled call returned nothing, so it has no audit record to keep.
    ///
    /// An app acts for the patient it was opened for: without one, the call is refused here
    /// (and the refusal audited) before `call` runs.
    async fn run<T, F, C>(self, call: C) -> Result<T, Error>
    where
        C: FnOnce(FhirService, AccessContext) -> F + Send + 'static,
        T: Send + 'static,
        F: Future<Output = Result<T, Error>> + Send + 'static,
    {
        let Call {
            what: (interaction, resource_type, id),
            service,
            context,
            timeout,
        } = self;
        let (app, region) = context
            .app
            .as_ref()
            .map(|app| (app.id.clone(), app.region.clone()))
            .unwrap_or_default();
        let mut task = AbortOnDrop(tokio::spawn(async move {
            if context.patient().is_none() {
                let refusal = FhirError::Forbidden(
                    "no patient in context: open the app for a patient (the launch token's patient claim)"
                        .into(),
                );
                let call = (interaction, resource_type.as_str(), id.as_deref());
                return Err(service.refused(&context, call, refusal).await.into());
            }
            call(service, context).await
        }));
        match tokio::time::timeout(timeout, &mut task.0).await {
            Ok(Ok(result)) => result,
            Ok(Err(error)) => {
                tracing::error!(%error, "a data host call failed");
                Err(Error::Unavailable(
                    "the data service failed; the error is in the host log".into(),
                ))
            }
            Err(_) => {
                task.0.abort();
                tracing::warn!(
                    app,
                    region,
                    "a data host call ran past its limit of {} ms and was cancelled",
                    timeout.as_millis()
                );
                Err(Error::Unavailable(format!(
                    "the call took longer than its limit of {} ms and was cancelled; \
                     nothing it would have written was kept",
                    timeout.as_millis()
                )))
            }
        }
    }
}

/// A spawned host call that is aborted when its caller stops waiting for it.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The search parameters with the page size capped at the per-call limit and the cursor
/// turned into an offset. The guest's own `_offset` is refused: paging goes by cursor.
fn paged(
    params: Vec<SearchParam>,
    cursor: Option<&str>,
    limit: u32,
) -> Result<(Vec<(String, String)>, usize), Error> {
    let offset = match cursor {
        None => 0,
        Some(cursor) => cursor.parse::<usize>().map_err(|_| {
            Error::Invalid(format!("'{cursor}' is not a cursor this host returned"))
        })?,
    };
    let mut count = None;
    let mut pairs = Vec::with_capacity(params.len() + 2);
    for SearchParam { name, value } in params {
        match name.as_str() {
            "_offset" => {
                return Err(Error::Invalid(
                    "_offset is not accepted: page with the cursor the previous page returned"
                        .into(),
                ));
            }
            "_include" | "_include:iterate" | "_revinclude" | "_revinclude:iterate" => {
                return Err(Error::Invalid(format!(
                    "{name} is not available to apps: a search page holds its matches only; \
                     search or read the referenced resources instead"
                )));
            }
            "_count" => {
                let requested: u32 = value.parse().map_err(|_| {
                    Error::Invalid(format!("_count must be a number, not '{value}'"))
                })?;
                count = Some(requested.min(limit));
            }
            _ => pairs.push((name, value)),
        }
    }
    pairs.push(("_count".into(), count.unwrap_or(limit).to_string()));
    pairs.push(("_offset".into(), offset.to_string()));
    Ok((pairs, offset))
}

impl From<FhirError> for Error {
    fn from(error: FhirError) -> Self {
        match error {
            FhirError::Forbidden(reason) => Error::Denied(reason),
            FhirError::Unauthorized(reason) => Error::Denied(reason.to_string()),
            error @ FhirError::ConsentDenied => Error::Denied(error.to_string()),
            FhirError::NotFound(_) | FhirError::Gone(_) => Error::NotFound,
            FhirError::Unavailable(reason) => Error::Unavailable(reason),
            // The WIT has no "slow down": the user was refused too often lately.
            error @ FhirError::TooManyRequests { .. } => Error::Unavailable(error.to_string()),
            FhirError::Internal(_) => {
                Error::Unavailable("the data service failed; the error is in the host log".into())
            }
            error @ (FhirError::BadRequest(_)
            | FhirError::MethodNotAllowed(_)
            | FhirError::NotAcceptable(_)
            | FhirError::Conflict(_)
            | FhirError::PreconditionFailed(_)
            | FhirError::PayloadTooLarge(_)
            | FhirError::Invalid { .. }) => Error::Invalid(error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::fhir::Host as _;
    use crate::capability::fhir::Fhir;
    use crate::capability::testing::TestEnvironment;
    use healthcloud_platform::auth::Role;

    #[tokio::test]
    async fn a_request_makes_at_most_its_data_calls() {
        let env = TestEnvironment::new()
            .await
            .requesting(&["patient/Observation.rs"])
            .launched_by(Role::Clinician, Some("p1"))
            .limits(|limits| limits.host_calls = 2);
        let mut ctx = env.instance::<Fhir>().unwrap();
        let mut host = &mut ctx;
        for _ in 0..2 {
            // No such resource: the call is made and counted all the same.
            let answer = host.read("Observation".into(), "none".into()).await;
            assert!(!matches!(answer, Err(Error::Unavailable(_))), "{answer:?}");
        }
        let refused = host
            .read("Observation".into(), "none".into())
            .await
            .unwrap_err();
        let Error::Unavailable(message) = refused else {
            panic!("not a budget refusal: {refused:?}");
        };
        assert_eq!(
            message,
            "this request has made its 2 data calls; make fewer, larger searches"
        );
    }

    #[tokio::test]
    async fn a_launch_without_a_patient_reads_nothing() {
        let env = TestEnvironment::new()
            .await
            .requesting(&["patient/Observation.rs"]);
        let mut ctx = env.instance::<Fhir>().unwrap();
        let refused = (&mut ctx)
            .read("Observation".into(), "o1".into())
            .await
            .unwrap_err();
        assert!(
            matches!(&refused, Error::Denied(m) if m.contains("no patient in context")),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn the_policy_sees_the_grant_confined_to_the_patient_in_context() {
        let env = TestEnvironment::new()
            .await
            .requesting(&["patient/Observation.rs", "patient/Condition.rs"])
            .granting(&["patient/Observation.rs"])
            .launched_by(Role::Clinician, Some("p1"));
        let ctx = env.instance::<Fhir>().unwrap();
        let access = ctx.access();
        let granted: Vec<String> = access
            .grant
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(granted, ["patient/Observation.rs"]);
        assert_eq!(access.app.unwrap().id, "tests/harness");
    }

    fn param(name: &str, value: &str) -> SearchParam {
        SearchParam {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn page_size_is_capped_and_the_cursor_is_the_offset() {
        let (pairs, offset) = paged(
            vec![param("code", "x"), param("_count", "5000")],
            Some("200"),
            100,
        )
        .unwrap();
        assert_eq!(offset, 200);
        assert!(pairs.contains(&("_count".into(), "100".into())));
        assert!(pairs.contains(&("_offset".into(), "200".into())));
        let (pairs, _) = paged(vec![param("_count", "10")], None, 100).unwrap();
        assert!(pairs.contains(&("_count".into(), "10".into())));
    }

    #[test]
    fn guest_offsets_and_bad_cursors_are_invalid() {
        assert!(matches!(
            paged(vec![param("_offset", "5")], None, 100),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            paged(vec![], Some("next-please"), 100),
            Err(Error::Invalid(_))
        ));
    }
}

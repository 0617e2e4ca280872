//! `healthcloud:platform/fhir@0.1.0`, for apps built against that version: the current host
//! calls, answered in the frozen version's types. Its `search-page` has no `incomplete`, so
//! such an app gets the resources of a partial answer without learning that it is partial;
//! the host log says when that happens.

use super::FhirCtx;
use crate::bindings::fhir as current;
use crate::bindings::v0_1::fhir::{self, Error, SearchPage, SearchParam};

impl fhir::Host for &mut FhirCtx {
    async fn read(&mut self, resource_type: String, id: String) -> Result<String, Error> {
        Ok(current::Host::read(self, resource_type, id).await?)
    }

    async fn search(
        &mut self,
        resource_type: String,
        params: Vec<SearchParam>,
        cursor: Option<String>,
    ) -> Result<SearchPage, Error> {
        let params = params
            .into_iter()
            .map(|SearchParam { name, value }| current::SearchParam { name, value })
            .collect();
        let page = current::Host::search(self, resource_type, params, cursor).await?;
        if !page.incomplete.is_empty() {
            let missing: Vec<&str> = page.incomplete.iter().map(|i| i.source.as_str()).collect();
            tracing::info!(
                app = self.app.id,
                version = self.app.version,
                region = self.app.region,
                missing = missing.join(","),
                "a partial search answer went to an app built against healthcloud:platform@0.1.0, \
                 which cannot tell it from a complete one; rebuilding it against 0.2.0 lets it"
            );
        }
        Ok(SearchPage {
            resources: page.resources,
            total: page.total,
            next: page.next,
        })
    }

    async fn create(&mut self, resource_json: String) -> Result<String, Error> {
        Ok(current::Host::create(self, resource_json).await?)
    }
}

impl From<current::Error> for Error {
    fn from(error: current::Error) -> Self {
        match error {
            current::Error::Denied(reason) => Error::Denied(reason),
            current::Error::NotFound => Error::NotFound,
            current::Error::Invalid(reason) => Error::Invalid(reason),
            current::Error::Unavailable(reason) => Error::Unavailable(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::bindings::v0_1::fhir::{Error, Host as _, SearchParam};
    use crate::capability::fhir::Fhir;
    use crate::capability::testing::TestEnvironment;
    use healthcloud_platform::auth::Role;

    #[tokio::test]
    async fn an_app_built_against_0_1_searches_and_is_refused_as_before() {
        let env = TestEnvironment::new()
            .await
            .requesting(&["patient/Observation.rs"])
            .launched_by(Role::Clinician, Some("p1"));
        let mut ctx = env.instance::<Fhir>().unwrap();
        let page = (&mut ctx)
            .search("Observation".into(), Vec::new(), None)
            .await
            .unwrap();
        assert!(page.resources.is_empty());
        assert_eq!(page.next, None);
        let offset = SearchParam {
            name: "_offset".into(),
            value: "5".into(),
        };
        let refused = (&mut ctx)
            .search("Observation".into(), vec![offset], None)
            .await
            .unwrap_err();
        assert!(matches!(refused, Error::Invalid(_)), "{refused:?}");
        let denied = (&mut ctx)
            .read("Condition".into(), "c1".into())
            .await
            .unwrap_err();
        assert!(matches!(denied, Error::Denied(_)), "{denied:?}");
    }
}

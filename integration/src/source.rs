//! Where patient data comes from. Data stays in the systems that own it; the integration cloud
//! reads through sources and applies policy, consent and audit on top, once, whatever the
//! source. The embedded store is the default source; upstream FHIR servers (hospitals, GPs,
//! municipalities, other regions) implement the same trait.

use async_trait::async_trait;

use crate::error::FhirError;
use crate::query::SearchQuery;
use crate::store::{EmbeddedStore, SearchPage, StoredResource};

/// A system that holds patient data and answers reads and searches.
///
/// Every query it receives already carries the policy engine's constraints
/// ([`SearchQuery::constraints`]); a source must apply all of them or fail the query, never
/// ignore one, because an ignored constraint leaks data.
#[async_trait]
pub trait Source: Send + Sync + std::fmt::Debug {
    /// A resource by type and id, unfiltered (the caller decides whether it may be seen).
    async fn read(
        &self,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<StoredResource>, FhirError>;

    /// One page of a search, constraints applied.
    async fn search(&self, query: &SearchQuery) -> Result<SearchPage, FhirError>;

    /// Whether any resource satisfies `query` with its constraints.
    async fn matches(&self, query: &SearchQuery) -> Result<bool, FhirError>;
}

#[async_trait]
impl Source for EmbeddedStore {
    async fn read(
        &self,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<StoredResource>, FhirError> {
        EmbeddedStore::read(self, resource_type, id).await
    }

    async fn search(&self, query: &SearchQuery) -> Result<SearchPage, FhirError> {
        EmbeddedStore::search(self, query).await
    }

    async fn matches(&self, query: &SearchQuery) -> Result<bool, FhirError> {
        EmbeddedStore::matches(self, query).await
    }
}

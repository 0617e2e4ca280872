//! The store API's catalog answers (`GET /store/v1/apps`, `GET /store/v1/apps/{publisher}/{app}`),
//! as the store service writes them and [`crate::client::StoreClient`] reads them.

use serde::{Deserialize, Serialize};

/// One page of the catalog.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AppList {
    /// The apps on this page.
    pub apps: Vec<AppSummary>,
    /// How many match in all.
    pub total: i64,
    /// This page.
    pub page: u32,
    /// Apps per page.
    pub per_page: u32,
}

/// An app as the catalog lists it (its latest version).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AppSummary {
    /// The publisher's id.
    pub publisher: String,
    /// The app's id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// Who it is for.
    pub audience: Vec<String>,
    /// The latest version.
    pub latest_version: String,
}

/// An app with its publisher, capabilities and versions.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AppDetail {
    /// The catalog entry.
    #[serde(flatten)]
    pub summary: AppSummary,
    /// The publisher's display name.
    pub publisher_name: String,
    /// What the latest version requests, explained.
    pub capabilities: Vec<ExplainedCapability>,
    /// Every version, newest first.
    pub versions: Vec<VersionSummary>,
}

/// A requested capability with the vendor's reason and what it means.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExplainedCapability {
    /// As in the manifest, e.g. `patient/Observation.rs`.
    pub name: String,
    /// The vendor's justification.
    pub justification: String,
    /// What it lets the app do, in plain language.
    pub explanation: String,
}

/// One version's status.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VersionSummary {
    /// The version.
    pub version: String,
    /// When the store accepted it.
    pub published_at: String,
    /// The component's sha256.
    pub sha256: String,
    /// Its size in bytes.
    pub size: i64,
    /// The key that signed it.
    pub key_id: String,
    /// `valid` when the stored signature verifies with a key of the publisher that has not
    /// been revoked for it; otherwise what is wrong.
    pub signature: String,
    /// Set when the publisher yanked it (no new installs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub yanked_at: Option<String>,
    /// Set when the store admin revoked it (no runtime serves it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked: Option<Revoked>,
}

/// A revocation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Revoked {
    /// When.
    pub at: String,
    /// Why.
    pub reason: String,
}

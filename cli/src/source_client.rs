//! The sources admin API's client, `/admin/v1/sources…`: one typed method per route, over
//! the store client's HTTP machinery (and its errors, which name the fix), with a
//! platform-operator token given or minted from the data directory's development issuer.

use std::path::Path;

use healthcloud_integration::admin::{SourceRemoved, SourceView};
use healthcloud_integration::sources_file::SourceEntry;
use healthcloud_package::client::{Api, Caller, ClientError, StoreClient};
use healthcloud_platform::auth::{Role, TokenIssuer, TokenRequest, dev_key_path, fhir_audience};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The sources admin API.
const SOURCES_ADMIN: Api = Api {
    root: &["admin", "v1", "sources"],
    name: "sources admin API",
};

/// How long a minted token lives: one command's worth.
const MINTED_TOKEN_SECS: i64 = 300;

/// A client of one server's sources admin API.
pub struct SourceClient {
    client: StoreClient,
}

impl SourceClient {
    /// A client of the server at `server` with `token`, else a platform-operator token minted
    /// with the development issuer key of `data_dir` when it has one.
    pub fn new(server: &str, token: Option<String>, data_dir: &Path) -> anyhow::Result<Self> {
        let token = match token {
            Some(token) => Some(token),
            None if dev_key_path(data_dir).exists() => {
                let issuer = TokenIssuer::dev(data_dir)?;
                let token = issuer
                    .mint(
                        Role::PlatformOperator,
                        TokenRequest {
                            audience: vec![fhir_audience(server)],
                            ttl_secs: Some(MINTED_TOKEN_SECS),
                            ..TokenRequest::default()
                        },
                    )
                    .map_err(anyhow::Error::msg)?;
                Some(token)
            }
            None => None,
        };
        Ok(SourceClient {
            client: StoreClient::new(server, token)?,
        })
    }

    /// The server's base URL, as shown to the user.
    pub fn server(&self) -> &str {
        self.client.server()
    }

    /// Whether anything answers at the server's address (`GET /healthz`, no token).
    pub async fn answers(&self) -> bool {
        const HEALTH: Api = Api {
            root: &["healthz"],
            name: "health check",
        };
        let probe = self
            .client
            .call::<Value>(HEALTH, Method::GET, &[], Caller::Anyone, None)
            .await;
        !matches!(probe, Err(ClientError::Unreachable { .. }))
    }

    /// `GET /admin/v1/sources`.
    pub async fn list(&self) -> Result<Vec<SourceView>, ClientError> {
        self.call(Method::GET, &[], None).await
    }

    /// `POST /admin/v1/sources/{name}/check`.
    pub async fn check(&self, name: &str) -> Result<SourceView, ClientError> {
        self.call(Method::POST, &[name, "check"], None).await
    }

    /// `PUT /admin/v1/sources/{name}`.
    pub async fn put(&self, entry: &SourceEntry) -> Result<SourceView, ClientError> {
        let body = serde_json::to_value(entry).expect("a source serializes");
        self.call(Method::PUT, &[&entry.name], Some(&body)).await
    }

    /// `DELETE /admin/v1/sources/{name}`.
    pub async fn remove(&self, name: &str) -> Result<SourceRemoved, ClientError> {
        self.call(Method::DELETE, &[name], None).await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &[&str],
        body: Option<&Value>,
    ) -> Result<T, ClientError> {
        self.client
            .call(SOURCES_ADMIN, method, path, Caller::PlatformOperator, body)
            .await
    }
}

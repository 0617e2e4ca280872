//! An upstream FHIR R4 server as the integration cloud reaches it: an organization's own
//! system (a hospital, a GP system, a municipal care record, another region's healthcloud).
//!
//! Everything an upstream answers is hostile until checked: every call runs within the
//! source's deadline (waiting for a free connection included) and under its concurrency cap,
//! a body is read only up to the source's size cap, and an answer is accepted only when it is
//! the FHIR it should be (a `searchset` Bundle of resources; the resource asked for). A failed
//! call is an [`UpstreamError`] that names the source and what happened, never the upstream's
//! own error body, which may carry internals of another organization's system.
//!
//! A source authenticates healthcloud by a static bearer token or by OAuth 2.0 client
//! credentials against its token endpoint (`oauth`), whose calls share the deadline and the
//! concurrency cap of the source call they serve.

mod oauth;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use healthcloud_platform::auth::is_fhir_id;
use healthcloud_platform::http::{LimitedReadError, read_limited};
use reqwest::{StatusCode, Url};
use serde_json::Value;
use tokio::sync::Semaphore;

use self::oauth::{AccessToken, ClientCredentials};

/// How a source is reached.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// The source's name, as operators and outcomes call it (e.g. `gp`).
    pub name: String,
    /// Its FHIR base URL, e.g. `https://fhir.example.dk/R4`.
    pub base: Url,
    /// How healthcloud authenticates to it.
    pub auth: UpstreamAuth,
    /// How long one call may take, from waiting for a connection to the last byte.
    pub deadline: Duration,
    /// How many calls may be open to it at once.
    pub max_concurrent: usize,
    /// The largest answer read from it, in bytes.
    pub max_response_bytes: u64,
}

impl UpstreamConfig {
    /// A source at `base` with no authentication, a 3 s deadline (below the app cloud's 5 s
    /// per host call, so an app gets the other sources' answer when this one is late), 8
    /// concurrent calls and answers up to 16 MiB.
    pub fn new(name: impl Into<String>, base: Url) -> Self {
        UpstreamConfig {
            name: name.into(),
            base,
            auth: UpstreamAuth::None,
            deadline: Duration::from_secs(3),
            max_concurrent: 8,
            max_response_bytes: 16 * 1024 * 1024,
        }
    }
}

/// How healthcloud authenticates to a source.
#[derive(Debug, Clone)]
pub enum UpstreamAuth {
    /// No credentials (a server inside the organization's network that needs none).
    None,
    /// A bearer token, read from this file when the source is opened (kept out of the
    /// configuration file and the process arguments).
    BearerFile(PathBuf),
    /// OAuth 2.0 client credentials (RFC 6749 §4.4): access tokens from the source's token
    /// endpoint, asked for with `grant_type=client_credentials` and the client id and secret
    /// in `Authorization: Basic` (`client_secret_basic`). A token is used until shortly before
    /// its `expires_in`, shared by concurrent calls, and replaced once when the source answers
    /// 401 to it.
    ClientCredentials {
        /// The token endpoint: https, or http to a loopback address only, as the secret is
        /// sent to it.
        token_url: Url,
        /// The client id the token endpoint issued to healthcloud.
        client_id: String,
        /// A file holding the client secret, read when the source is opened (kept out of the
        /// configuration file and the process arguments).
        secret_file: PathBuf,
        /// The `scope` to ask for, space-separated (e.g. `system/*.read`); none asks for the
        /// client's default.
        scope: Option<String>,
    },
}

/// Why a call to a source failed. Each message names the source and what to check; none
/// carries the upstream's own answer.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No answer within the deadline.
    #[error("source '{source_name}' did not answer within its deadline of {deadline:?}")]
    Deadline {
        /// The source.
        source_name: String,
        /// Its deadline.
        deadline: Duration,
    },
    /// The connection could not be made or broke off.
    #[error("source '{source_name}' could not be reached: {reason}")]
    Unreachable {
        /// The source.
        source_name: String,
        /// What the connection said (no upstream content).
        reason: String,
    },
    /// The source refused healthcloud's credentials (with client credentials: even a token
    /// fetched anew for the retry).
    #[error(
        "source '{source_name}' refused healthcloud's credentials ({status}): check the token or the client credentials configured for it"
    )]
    Unauthorized {
        /// The source.
        source_name: String,
        /// 401 or 403.
        status: StatusCode,
    },
    /// The source's token endpoint refused healthcloud's client credentials (400 or 401).
    #[error(
        "source '{source_name}' refused healthcloud's client credentials at its token endpoint ({status}{}): check the client id, the secret file and the scope configured for it",
        .oauth_error.as_ref().map(|code| format!(", {code}")).unwrap_or_default()
    )]
    CredentialsRefused {
        /// The source.
        source_name: String,
        /// The token endpoint's status.
        status: StatusCode,
        /// Its OAuth `error` code (e.g. `invalid_client`), when it sent a plain one.
        oauth_error: Option<String>,
    },
    /// The source's token endpoint gave no usable access token: it could not be reached,
    /// answered another error status, too much, or something that is not a token response.
    #[error("source '{source_name}': its token endpoint {problem}")]
    TokenEndpoint {
        /// The source.
        source_name: String,
        /// What happened (no content of the token endpoint's answer).
        problem: String,
    },
    /// Another error status; its body is not read.
    #[error("source '{source_name}' answered {status}")]
    Status {
        /// The source.
        source_name: String,
        /// The status it answered.
        status: StatusCode,
    },
    /// More than the source's size cap.
    #[error("source '{source_name}' answered more than its cap of {limit} bytes")]
    TooLarge {
        /// The source.
        source_name: String,
        /// The cap.
        limit: u64,
    },
    /// Not the FHIR that was asked for.
    #[error("source '{source_name}' answered something that is not {expected}: {reason}")]
    NotFhir {
        /// The source.
        source_name: String,
        /// What was expected, e.g. `a FHIR searchset Bundle`.
        expected: &'static str,
        /// What was wrong with it.
        reason: String,
    },
}

/// What a source declares it serves (its CapabilityStatement): each resource type with the
/// search parameters it supports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamCapabilities {
    /// Resource type → the names of its search parameters.
    pub types: BTreeMap<String, BTreeSet<String>>,
}

impl UpstreamCapabilities {
    /// Whether the source serves `resource_type` and can search it by `parameter`.
    pub fn searches(&self, resource_type: &str, parameter: &str) -> bool {
        self.types
            .get(resource_type)
            .is_some_and(|parameters| parameters.contains(parameter))
    }
}

/// A source's FHIR API, reached over HTTP.
#[derive(Debug, Clone)]
pub struct Upstream {
    config: Arc<UpstreamConfig>,
    http: reqwest::Client,
    credentials: Credentials,
    open_calls: Arc<Semaphore>,
}

/// What a call to the source carries, as read when it was opened.
#[derive(Debug, Clone)]
enum Credentials {
    None,
    Bearer(AccessToken),
    /// Shared by the clones of an `Upstream`, so they share its access token.
    OAuth(Arc<ClientCredentials>),
}

impl Upstream {
    /// Opens the source: reads its token file or client secret file, if any. Nothing is sent
    /// yet.
    pub fn open(config: UpstreamConfig) -> anyhow::Result<Self> {
        let credentials = match &config.auth {
            UpstreamAuth::None => Credentials::None,
            UpstreamAuth::BearerFile(path) => {
                let token = std::fs::read_to_string(path).map_err(|e| {
                    anyhow::anyhow!(
                        "source '{}': its token file {} cannot be read: {e}",
                        config.name,
                        path.display()
                    )
                })?;
                let token = token.trim().to_owned();
                anyhow::ensure!(
                    !token.is_empty(),
                    "source '{}': its token file {} is empty: write the bearer token the source issued into it",
                    config.name,
                    path.display()
                );
                Credentials::Bearer(AccessToken::new(token))
            }
            UpstreamAuth::ClientCredentials {
                token_url,
                client_id,
                secret_file,
                scope,
            } => Credentials::OAuth(Arc::new(ClientCredentials::open(
                &config.name,
                token_url,
                client_id,
                secret_file,
                scope.as_deref(),
                config.max_response_bytes,
            )?)),
        };
        let http = reqwest::Client::builder()
            .user_agent(concat!("healthcloud/", env!("CARGO_PKG_VERSION")))
            // A redirect could lead the token elsewhere; a source answers at its own base, and
            // a token endpoint at its own URL.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Upstream {
            open_calls: Arc::new(Semaphore::new(config.max_concurrent.max(1))),
            config: Arc::new(config),
            http,
            credentials,
        })
    }

    /// The source's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The source's FHIR base URL.
    pub fn base(&self) -> &Url {
        &self.config.base
    }

    /// What the source declares it serves: `GET [base]/metadata`.
    pub async fn capabilities(&self) -> Result<UpstreamCapabilities, UpstreamError> {
        let statement = self
            .get_json(&["metadata"], &[])
            .await?
            .ok_or_else(|| self.not_fhir("a CapabilityStatement", "it answered 404"))?;
        if statement["resourceType"] != "CapabilityStatement" {
            return Err(self.not_fhir(
                "a CapabilityStatement",
                format!("its resourceType is {}", statement["resourceType"]),
            ));
        }
        let mut types = BTreeMap::new();
        for rest in statement["rest"].as_array().into_iter().flatten() {
            if rest["mode"] != "server" {
                continue;
            }
            for resource in rest["resource"].as_array().into_iter().flatten() {
                let Some(resource_type) = resource["type"].as_str() else {
                    continue;
                };
                let parameters: BTreeSet<String> = resource["searchParam"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|parameter| parameter["name"].as_str().map(str::to_owned))
                    .collect();
                types.insert(resource_type.to_owned(), parameters);
            }
        }
        Ok(UpstreamCapabilities { types })
    }

    /// A search, `GET [base]/[type]?[parameters]`: the source's `searchset` Bundle, its
    /// entries checked to be resources. Which entries are matches, and whether each may be
    /// returned, is the caller's to decide.
    pub async fn search(
        &self,
        resource_type: &str,
        parameters: &[(String, String)],
    ) -> Result<Value, UpstreamError> {
        const EXPECTED: &str = "a FHIR searchset Bundle";
        let bundle = self
            .get_json(&[resource_type], parameters)
            .await?
            .ok_or_else(|| self.not_fhir(EXPECTED, "it answered 404"))?;
        if bundle["resourceType"] != "Bundle" || bundle["type"] != "searchset" {
            return Err(self.not_fhir(
                EXPECTED,
                format!(
                    "its resourceType is {} and its type {}",
                    bundle["resourceType"], bundle["type"]
                ),
            ));
        }
        for (index, entry) in bundle["entry"].as_array().into_iter().flatten().enumerate() {
            if !entry["resource"]["resourceType"].is_string() {
                return Err(self.not_fhir(EXPECTED, format!("entry {index} holds no resource")));
            }
        }
        Ok(bundle)
    }

    /// A read, `GET [base]/[type]/[id]`: the resource, or `None` when the source has none by
    /// that id (404 or 410).
    pub async fn read(
        &self,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<Value>, UpstreamError> {
        const EXPECTED: &str = "the resource asked for";
        // `.` and `..` are path steps, not ids: the URL would drop them and ask for the
        // type's whole listing (e.g. for an id `<source>..` read through healthcloud).
        if !is_fhir_id(id) || id == "." || id == ".." {
            return Ok(None);
        }
        let Some(resource) = self.get_json(&[resource_type, id], &[]).await? else {
            return Ok(None);
        };
        if resource["resourceType"] != resource_type || resource["id"] != id {
            return Err(self.not_fhir(
                EXPECTED,
                format!(
                    "asked for {resource_type}/{id}, it answered {}/{}",
                    resource["resourceType"], resource["id"]
                ),
            ));
        }
        Ok(Some(resource))
    }

    /// `GET` of `segments` under the base, within the deadline and the concurrency cap (an
    /// access token fetched for it included): the JSON body, or `None` on 404/410.
    async fn get_json(
        &self,
        segments: &[&str],
        parameters: &[(String, String)],
    ) -> Result<Option<Value>, UpstreamError> {
        let mut url = self.config.base.clone();
        url.path_segments_mut()
            .map_err(|()| self.not_fhir("a FHIR base URL", "the base cannot hold a path"))?
            .pop_if_empty()
            .extend(segments);
        if !parameters.is_empty() {
            url.query_pairs_mut().extend_pairs(parameters);
        }
        let call = async {
            let _open = self.open_calls.acquire().await.expect("never closed");
            let token = match &self.credentials {
                Credentials::None => None,
                Credentials::Bearer(token) => Some(token.clone()),
                Credentials::OAuth(client) => Some(client.token(&self.http).await?),
            };
            let mut response = self.send_get(&url, token.as_ref()).await?;
            if response.status() == StatusCode::UNAUTHORIZED
                && let (Credentials::OAuth(client), Some(refused)) = (&self.credentials, &token)
            {
                // The token was refused before its time (revoked, or forgotten by the token
                // endpoint): one new token, one more try.
                let renewed = client.replace(&self.http, refused).await?;
                response = self.send_get(&url, Some(&renewed)).await?;
            }
            match response.status() {
                StatusCode::NOT_FOUND | StatusCode::GONE => return Ok(None),
                status @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
                    return Err(UpstreamError::Unauthorized {
                        source_name: self.config.name.clone(),
                        status,
                    });
                }
                status if !status.is_success() => {
                    return Err(UpstreamError::Status {
                        source_name: self.config.name.clone(),
                        status,
                    });
                }
                _ => {}
            }
            let body = read_limited(response, self.config.max_response_bytes)
                .await
                .map_err(|error| match error {
                    LimitedReadError::TooLarge { limit } => UpstreamError::TooLarge {
                        source_name: self.config.name.clone(),
                        limit,
                    },
                    LimitedReadError::Transport(error) => self.unreachable(error),
                })?;
            serde_json::from_slice(&body)
                .map(Some)
                .map_err(|e| self.not_fhir("FHIR JSON", format!("it is not JSON ({e})")))
        };
        tokio::time::timeout(self.config.deadline, call)
            .await
            .unwrap_or_else(|_| {
                Err(UpstreamError::Deadline {
                    source_name: self.config.name.clone(),
                    deadline: self.config.deadline,
                })
            })
    }

    async fn send_get(
        &self,
        url: &Url,
        token: Option<&AccessToken>,
    ) -> Result<reqwest::Response, UpstreamError> {
        let mut request = self
            .http
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/fhir+json");
        if let Some(token) = token {
            request = request.bearer_auth(token.value());
        }
        request.send().await.map_err(|e| self.unreachable(e))
    }

    fn unreachable(&self, error: reqwest::Error) -> UpstreamError {
        UpstreamError::Unreachable {
            source_name: self.config.name.clone(),
            reason: transport_failure(error),
        }
    }

    fn not_fhir(&self, expected: &'static str, reason: impl Into<String>) -> UpstreamError {
        UpstreamError::NotFhir {
            source_name: self.config.name.clone(),
            expected,
            reason: reason.into(),
        }
    }
}

/// What a failed connection says (refused, reset, TLS), cause by cause: never the upstream's
/// content, and without the URL, as its query may name a patient.
fn transport_failure(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut reason = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        reason = format!("{reason}: {cause}");
        source = cause.source();
    }
    reason
}

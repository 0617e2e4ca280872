//! The healthcloud server's HTTP client: one method per store endpoint the commands use, a
//! generic [`StoreClient::call`] for the other APIs the server serves beside the store (such
//! as the region admin API), and errors that say what to do about them.

use crate::catalog::{AppDetail, AppList};
use crate::feed::{FeedKey, SignedFeed};
use crate::keys::KeyId;
use crate::package::{SignedPackage, SignedVersionRecord};
use healthcloud_platform::http::{LimitedReadError, read_limited};
use reqwest::multipart::{Form, Part};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::time::Duration;

/// Who may make a call: decides whether a token is needed and how to mint one.
#[derive(Debug, Clone, Copy)]
pub enum Caller<'a> {
    /// Anyone; no token is sent.
    Anyone,
    /// A store administrator.
    StoreAdmin,
    /// The publisher with this id.
    Publisher(&'a str),
    /// The publisher with this id, or a store administrator.
    PublisherOrStoreAdmin(&'a str),
    /// An administrator of this region.
    RegionAdmin(&'a str),
    /// A platform operator (the upstream sources).
    PlatformOperator,
}

impl Caller<'_> {
    /// The `healthcloud token` command that mints a fitting development token.
    fn mint_hint(self) -> String {
        let publisher = |id: &str| format!("healthcloud token --role publisher --sub {id}");
        match self {
            Caller::Anyone | Caller::StoreAdmin => "healthcloud token --role store-admin".into(),
            Caller::Publisher(id) => publisher(id),
            Caller::PublisherOrStoreAdmin(id) => {
                format!(
                    "{}` or `healthcloud token --role store-admin",
                    publisher(id)
                )
            }
            Caller::RegionAdmin(region) => {
                format!("healthcloud token --role region-admin --region {region}")
            }
            Caller::PlatformOperator => "healthcloud token --role platform-operator".into(),
        }
    }

    fn who(self) -> String {
        match self {
            Caller::Anyone => "anyone".into(),
            Caller::StoreAdmin => "a store administrator".into(),
            Caller::Publisher(id) => format!("publisher {id}"),
            Caller::PublisherOrStoreAdmin(id) => {
                format!("publisher {id} or a store administrator")
            }
            Caller::RegionAdmin(region) => format!("a region administrator of {region}"),
            Caller::PlatformOperator => "a platform operator".into(),
        }
    }
}

/// One of the JSON APIs the server serves, under its own root path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Api {
    /// The root's path segments, e.g. `["store", "v1"]`.
    pub root: &'static [&'static str],
    /// What messages call it, e.g. `store`.
    pub name: &'static str,
}

impl Api {
    /// The store API, `/store/v1/…`.
    pub const STORE: Api = Api {
        root: &["store", "v1"],
        name: "store",
    };
}

/// Why a call of the server failed; each message names the fix.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answered at the server's address.
    #[error(
        "cannot reach the {api} at {server}: start it with `healthcloud up`, or pass --server URL (or set HEALTHCLOUD_SERVER)"
    )]
    Unreachable {
        /// The API called, as [`Api::name`] says it.
        api: &'static str,
        /// The base URL tried.
        server: String,
        /// What the connection attempt said.
        #[source]
        source: reqwest::Error,
    },
    /// The call needs a token and none was given.
    #[error(
        "this needs a token of {who}: pass --token TOKEN or set HEALTHCLOUD_TOKEN (mint one with `{mint}`)"
    )]
    NoToken {
        /// Who may make the call.
        who: String,
        /// How to mint a token for them.
        mint: String,
    },
    /// The token was refused (401).
    #[error(
        "the {api} refused the token ({message}): pass a valid token of {who} with --token or HEALTHCLOUD_TOKEN (mint one with `{mint}`)"
    )]
    Unauthorized {
        /// The API called.
        api: &'static str,
        /// The server's message.
        message: String,
        /// Who may make the call.
        who: String,
        /// How to mint a token for them.
        mint: String,
    },
    /// The server answered with an error status; its message names the fix.
    #[error("{message}{} (HTTP {status})", field.as_ref().map(|f| format!(" [at {f}]")).unwrap_or_default())]
    Refused {
        /// The status.
        status: StatusCode,
        /// The server's message.
        message: String,
        /// The request field the message is about, if any.
        field: Option<String>,
    },
    /// An answer larger than it may be: refused without reading the rest.
    #[error(
        "{what} from {server} is larger than {limit} bytes: refused without reading the rest{why}"
    )]
    TooLarge {
        /// What was being read.
        what: String,
        /// The base URL.
        server: String,
        /// The most bytes it may have.
        limit: u64,
        /// What that means, if anything.
        why: &'static str,
    },
    /// The answer did not arrive in time: a stalled or very slow store.
    #[error(
        "{what} from {server} did not arrive within {} s: refused (the store, or something between, stalls; try again once it answers)",
        after.as_secs_f64()
    )]
    TimedOut {
        /// What was being read.
        what: String,
        /// The base URL.
        server: String,
        /// The time allowed.
        after: Duration,
    },
    /// The answer is not the JSON the API promises.
    #[error("the {api} at {server} answered with JSON other than the API promises")]
    Malformed {
        /// The API called.
        api: &'static str,
        /// The base URL.
        server: String,
        /// What is wrong with it.
        #[source]
        source: serde_json::Error,
    },
    /// The exchange failed after the connection was made.
    #[error("talking to the {api} at {server} failed")]
    Http {
        /// The API called.
        api: &'static str,
        /// The base URL.
        server: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
}

impl ClientError {
    /// The HTTP status the server answered with, if it answered with an error.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Refused { status, .. } => Some(*status),
            ClientError::Unauthorized { .. } => Some(StatusCode::UNAUTHORIZED),
            _ => None,
        }
    }
}

/// The server's JSON error body (the store's and the region admin API's alike).
#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    field: Option<String>,
}

/// A publisher as `GET /store/v1/publishers/{publisher}` returns it.
#[derive(Debug, Deserialize)]
pub struct Publisher {
    /// The publisher's id.
    pub id: String,
    /// Its display name.
    pub name: String,
    /// Every key it ever registered.
    pub keys: Vec<PublisherKey>,
}

/// One of a publisher's keys.
#[derive(Debug, Deserialize)]
pub struct PublisherKey {
    /// The key's id.
    pub key_id: KeyId,
    /// Whether it is trusted.
    pub status: KeyStatus,
    #[serde(default)]
    /// When it was revoked.
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    /// Versions published from then on are void.
    pub compromised_since: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    /// Why it was revoked.
    pub reason: Option<String>,
}

/// Whether a key may still be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    /// Trusted.
    Active,
    /// No longer trusted.
    Revoked,
}

/// A published version as `GET …/versions/{version}` returns it.
#[derive(Debug, Deserialize)]
pub struct PublishedVersion {
    /// The signed package.
    pub signed: SignedPackage,
    /// When it was published.
    pub published_at: chrono::DateTime<chrono::Utc>,
    /// The store's own verdict on the signature and its key: `valid`, or what is wrong.
    #[serde(default)]
    pub signature: Option<String>,
    #[serde(default)]
    /// When the publisher yanked it (not for new installs).
    pub yanked_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    /// The store's revocation, if any.
    pub revoked: Option<Revocation>,
    /// The store's signed word that the package's key is the publisher's and in good standing
    /// for this version: the only part of this answer a runtime trusts about the key,
    /// checked with the store's pinned key. `signature` above is the same verdict unsigned.
    #[serde(default)]
    pub record: Option<SignedVersionRecord>,
}

/// The store's revocation of a version.
#[derive(Debug, Deserialize)]
pub struct Revocation {
    /// When.
    pub at: chrono::DateTime<chrono::Utc>,
    /// Why.
    pub reason: String,
}

/// What `POST /store/v1/packages` answers.
#[derive(Debug, Deserialize)]
pub struct Published {
    /// The publisher.
    pub publisher: String,
    /// The app.
    pub app: String,
    /// The version.
    pub version: String,
    /// The component's sha256.
    pub sha256: String,
    /// The signing key.
    pub key_id: KeyId,
}

/// How long a feed call may take: a store that accepts the connection and then stalls must
/// not hold a runtime's feed follower.
const FEED_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a catalog call may take: the store admin page waits on it.
const CATALOG_TIMEOUT: Duration = Duration::from_secs(30);

/// How long fetching a version or downloading a component may take by default
/// ([`StoreClient::with_download_timeout`] changes it).
pub const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// The largest JSON answer read from the server: no answer of these APIs comes near it, and
/// a server that sends more is not believed to the end.
const MAX_JSON_BYTES: u64 = 16 << 20;

/// A client of one server: its store API, and its other JSON APIs through [`StoreClient::call`].
pub struct StoreClient {
    http: reqwest::Client,
    server: Url,
    token: Option<String>,
    download_timeout: Duration,
}

impl StoreClient {
    /// A client of the store at `server` (an http or https URL), sending `token` where a call
    /// needs one.
    pub fn new(server: &str, token: Option<String>) -> anyhow::Result<StoreClient> {
        let url = Url::parse(server)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && !url.cannot_be_a_base());
        let Some(server) = url else {
            anyhow::bail!(
                "--server '{server}' is not an http(s) URL: pass one like http://127.0.0.1:8080"
            );
        };
        let http = reqwest::Client::builder()
            .user_agent(concat!("healthcloud/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        Ok(StoreClient {
            http,
            server,
            token: token.filter(|token| !token.trim().is_empty()),
            download_timeout: DOWNLOAD_TIMEOUT,
        })
    }

    /// The same client, allowing `timeout` for fetching a version and for downloading a
    /// component (from the request to the last byte).
    pub fn with_download_timeout(self, timeout: Duration) -> StoreClient {
        StoreClient {
            download_timeout: timeout,
            ..self
        }
    }

    /// Whether the server is on this machine: a loopback address or `localhost`. Nothing
    /// between this process and such a server can answer in its place.
    pub fn is_loopback(&self) -> bool {
        let host = self.server.host_str().unwrap_or_default();
        let ip = host.trim_start_matches('[').trim_end_matches(']');
        match ip.parse::<std::net::IpAddr>() {
            Ok(ip) => ip.is_loopback(),
            Err(_) => host.eq_ignore_ascii_case("localhost"),
        }
    }

    /// The server's base URL, as shown to the user.
    pub fn server(&self) -> &str {
        self.server.as_str().trim_end_matches('/')
    }

    /// Fails now, before any slow work, if `caller` needs a token and none was given.
    pub fn require_token(&self, caller: Caller<'_>) -> Result<(), ClientError> {
        match (caller, &self.token) {
            (Caller::Anyone, _) | (_, Some(_)) => Ok(()),
            (caller, None) => Err(ClientError::NoToken {
                who: caller.who(),
                mint: caller.mint_hint(),
            }),
        }
    }

    /// `POST /store/v1/publishers`: registers a publisher with its first key.
    pub async fn approve_publisher(
        &self,
        id: &str,
        name: &str,
        key_pem: &str,
    ) -> Result<Value, ClientError> {
        let request = self
            .request(Method::POST, &["publishers"], Caller::StoreAdmin)?
            .json(&json!({"id": id, "name": name, "key": key_pem}));
        self.send_json(request, Caller::StoreAdmin).await
    }

    /// `GET /store/v1/publishers/{publisher}`.
    pub async fn publisher(&self, publisher: &str) -> Result<Publisher, ClientError> {
        let request = self.request(Method::GET, &["publishers", publisher], Caller::Anyone)?;
        self.send_json(request, Caller::Anyone).await
    }

    /// `POST /store/v1/publishers/{publisher}/keys`: adds a key endorsed by a current one.
    pub async fn add_key(
        &self,
        publisher: &str,
        key_pem: &str,
        endorsing_key: &KeyId,
        endorsement: &str,
    ) -> Result<Value, ClientError> {
        let caller = Caller::Publisher(publisher);
        let request = self
            .request(Method::POST, &["publishers", publisher, "keys"], caller)?
            .json(&json!({
                "key": key_pem,
                "endorsement": {"key_id": endorsing_key, "signature": endorsement},
            }));
        self.send_json(request, caller).await
    }

    /// `POST /store/v1/publishers/{publisher}/keys/{key_id}/revoke`.
    pub async fn revoke_key(
        &self,
        publisher: &str,
        key_id: &KeyId,
        compromised_since: Option<&str>,
        reason: Option<&str>,
    ) -> Result<Value, ClientError> {
        let caller = Caller::PublisherOrStoreAdmin(publisher);
        let mut body = serde_json::Map::new();
        if let Some(since) = compromised_since {
            body.insert("compromised_since".into(), since.into());
        }
        if let Some(reason) = reason {
            body.insert("reason".into(), reason.into());
        }
        let path = ["publishers", publisher, "keys", key_id.as_str(), "revoke"];
        let request = self.request(Method::POST, &path, caller)?.json(&body);
        self.send_json(request, caller).await
    }

    /// `GET /store/v1/apps?page=PAGE&per_page=N`: one page of the catalog (1-based; at most
    /// 100 apps a page).
    pub async fn apps(&self, page: u32, per_page: u32) -> Result<AppList, ClientError> {
        let request = self
            .request(Method::GET, &["apps"], Caller::Anyone)?
            .query(&[("per_page", per_page), ("page", page)])
            .timeout(CATALOG_TIMEOUT);
        self.send_json(request, Caller::Anyone).await
    }

    /// `GET /store/v1/apps/{publisher}/{app}`: an app with its capabilities and every
    /// version.
    pub async fn app(&self, publisher: &str, app: &str) -> Result<AppDetail, ClientError> {
        let request = self
            .request(Method::GET, &["apps", publisher, app], Caller::Anyone)?
            .timeout(CATALOG_TIMEOUT);
        self.send_json(request, Caller::Anyone).await
    }

    /// `GET /store/v1/apps/{publisher}/{app}/versions/{version}`, within the download time.
    pub async fn version(&self, app: &AppVersion) -> Result<PublishedVersion, ClientError> {
        let request = self.request(Method::GET, &app.path(&[]), Caller::Anyone)?;
        let what = format!("the store's answer about {app}");
        self.in_time(&what, self.send_json(request, Caller::Anyone))
            .await
    }

    /// `GET …/versions/{version}/component`: the component's bytes, at most `signed_size` of
    /// them (the size its signed package names), read as they stream in and within the
    /// download time. Whether they are the signed ones is for the caller to check against the
    /// version's package.
    pub async fn component(
        &self,
        app: &AppVersion,
        signed_size: u64,
    ) -> Result<Vec<u8>, ClientError> {
        let what = format!("the component of {app}");
        let download = async {
            let request = self.request(Method::GET, &app.path(&["component"]), Caller::Anyone)?;
            let response = self.send(request, Caller::Anyone).await?;
            self.read_capped(
                Api::STORE,
                response,
                (&what, signed_size),
                " (its signed size): the store, or something between, sends other bytes than the publisher signed",
            )
            .await
        };
        self.in_time(&what, download).await
    }

    /// `GET /store/v1/revocations?since=SEQ&nonce=N`: the signed revocation feed after
    /// `since`, signing `nonce` back. Whether to trust it is for the caller to check with the
    /// store's pinned key.
    pub async fn revocations(&self, since: i64, nonce: &str) -> Result<SignedFeed, ClientError> {
        let request = self
            .request(Method::GET, &["revocations"], Caller::Anyone)?
            .query(&[("since", since.to_string()), ("nonce", nonce.to_owned())])
            .timeout(FEED_TIMEOUT);
        self.send_json(request, Caller::Anyone).await
    }

    /// `GET /store/v1/revocations/key`: the key the store signs its feed with.
    pub async fn feed_key(&self) -> Result<FeedKey, ClientError> {
        let request = self
            .request(Method::GET, &["revocations", "key"], Caller::Anyone)?
            .timeout(FEED_TIMEOUT);
        self.send_json(request, Caller::Anyone).await
    }

    /// `POST …/versions/{version}/yank`: the publisher withdraws a version from new installs.
    pub async fn yank(&self, app: &AppVersion) -> Result<Value, ClientError> {
        let caller = Caller::Publisher(&app.publisher);
        let request = self.request(Method::POST, &app.path(&["yank"]), caller)?;
        self.send_json(request, caller).await
    }

    /// `POST …/versions/{version}/revoke`: the store withdraws a version everywhere.
    pub async fn revoke_version(
        &self,
        app: &AppVersion,
        reason: &str,
    ) -> Result<Value, ClientError> {
        let caller = Caller::StoreAdmin;
        let request = self
            .request(Method::POST, &app.path(&["revoke"]), caller)?
            .json(&json!({"reason": reason}));
        self.send_json(request, caller).await
    }

    /// `POST /store/v1/packages`: uploads a signed package and its component, streamed from
    /// `component` (of `size` bytes). Returns whether the version was new (201) or an identical
    /// package was already published (200).
    pub async fn publish(
        &self,
        signed: &SignedPackage,
        component: reqwest::Body,
        size: u64,
    ) -> Result<(bool, Published), ClientError> {
        let caller = Caller::Publisher(&signed.package.app.publisher);
        let file_name = format!(
            "{}-{}.wasm",
            signed.package.app.id, signed.package.app.version
        );
        let form = Form::new()
            .part(
                "package",
                Part::text(signed.to_json())
                    .mime_str("application/json")
                    .expect("a valid mime type"),
            )
            .part(
                "component",
                Part::stream_with_length(component, size)
                    .file_name(file_name)
                    .mime_str("application/wasm")
                    .expect("a valid mime type"),
            );
        let request = self
            .request(Method::POST, &["packages"], caller)?
            .multipart(form);
        let response = self.send(request, caller).await?;
        let created = response.status() == StatusCode::CREATED;
        let published = self.read_json(Api::STORE, response).await?;
        Ok((created, published))
    }

    /// Calls `method` on `path` under `api`'s root as `caller`, sending `body` as JSON, and
    /// returns the answer's JSON. Errors are mapped as for the store's own calls: each names
    /// the fix (start the server, mint a token of `caller`, or what the server said).
    pub async fn call<T: DeserializeOwned>(
        &self,
        api: Api,
        method: Method,
        path: &[&str],
        caller: Caller<'_>,
        body: Option<&Value>,
    ) -> Result<T, ClientError> {
        let mut request = self.request_to(api, method, path, caller)?;
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = self.send_to(api, request, caller).await?;
        self.read_json(api, response).await
    }

    /// A request to the store API.
    fn request<S: AsRef<str>>(
        &self,
        method: Method,
        path: &[S],
        caller: Caller<'_>,
    ) -> Result<RequestBuilder, ClientError> {
        self.request_to(Api::STORE, method, path, caller)
    }

    fn request_to<S: AsRef<str>>(
        &self,
        api: Api,
        method: Method,
        path: &[S],
        caller: Caller<'_>,
    ) -> Result<RequestBuilder, ClientError> {
        self.require_token(caller)?;
        let mut url = self.server.clone();
        url.path_segments_mut()
            .expect("checked in new: the server URL can be a base")
            .pop_if_empty()
            .extend(api.root)
            .extend(path);
        let request = self.http.request(method, url);
        Ok(match (caller, &self.token) {
            (Caller::Anyone, _) | (_, None) => request,
            (_, Some(token)) => request.bearer_auth(token),
        })
    }

    async fn send_json<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
        caller: Caller<'_>,
    ) -> Result<T, ClientError> {
        let response = self.send(request, caller).await?;
        self.read_json(Api::STORE, response).await
    }

    /// The answer's JSON, read up to [`MAX_JSON_BYTES`].
    async fn read_json<T: DeserializeOwned>(
        &self,
        api: Api,
        response: Response,
    ) -> Result<T, ClientError> {
        let what = format!("the {}'s answer", api.name);
        let body = self
            .read_capped(api, response, (&what, MAX_JSON_BYTES), "")
            .await?;
        serde_json::from_slice(&body).map_err(|source| ClientError::Malformed {
            api: api.name,
            server: self.server().to_owned(),
            source,
        })
    }

    /// The answer's body, refused as soon as it exceeds `limit` bytes.
    async fn read_capped(
        &self,
        api: Api,
        response: Response,
        (what, limit): (&str, u64),
        why: &'static str,
    ) -> Result<Vec<u8>, ClientError> {
        read_limited(response, limit)
            .await
            .map_err(|error| match error {
                LimitedReadError::TooLarge { limit } => ClientError::TooLarge {
                    what: what.to_owned(),
                    server: self.server().to_owned(),
                    limit,
                    why,
                },
                LimitedReadError::Transport(source) => self.failed(api, source),
            })
    }

    /// Runs `call` within the download time.
    async fn in_time<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        tokio::time::timeout(self.download_timeout, call)
            .await
            .unwrap_or_else(|_| {
                Err(ClientError::TimedOut {
                    what: what.to_owned(),
                    server: self.server().to_owned(),
                    after: self.download_timeout,
                })
            })
    }

    /// Sends a request to the store API.
    async fn send(
        &self,
        request: RequestBuilder,
        caller: Caller<'_>,
    ) -> Result<Response, ClientError> {
        self.send_to(Api::STORE, request, caller).await
    }

    /// Sends `request`; an error status becomes a [`ClientError`] carrying the server's message.
    async fn send_to(
        &self,
        api: Api,
        request: RequestBuilder,
        caller: Caller<'_>,
    ) -> Result<Response, ClientError> {
        let response = request.send().await.map_err(|source| {
            if source.is_connect() {
                ClientError::Unreachable {
                    api: api.name,
                    server: self.server().to_owned(),
                    source,
                }
            } else {
                self.failed(api, source)
            }
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let url = response.url().clone();
        let body = response.text().await.unwrap_or_default();
        let (message, field) = match serde_json::from_str::<ErrorBody>(&body) {
            Ok(ErrorBody { error, field }) => (error, field),
            Err(_) if body.trim().is_empty() => (format!("{status} from {url}"), None),
            Err(_) => (
                format!(
                    "{status} from {url}: {}",
                    body.trim().chars().take(500).collect::<String>()
                ),
                None,
            ),
        };
        Err(if status == StatusCode::UNAUTHORIZED {
            ClientError::Unauthorized {
                api: api.name,
                message,
                who: caller.who(),
                mint: caller.mint_hint(),
            }
        } else {
            ClientError::Refused {
                status,
                message,
                field,
            }
        })
    }

    fn failed(&self, api: Api, source: reqwest::Error) -> ClientError {
        ClientError::Http {
            api: api.name,
            server: self.server().to_owned(),
            source,
        }
    }
}

/// `publisher/app@version`: one version of one app, as the store names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppVersion {
    /// The publisher.
    pub publisher: String,
    /// The app.
    pub app: String,
    /// The version.
    pub version: semver::Version,
}

impl AppVersion {
    /// The API path of this version, followed by `rest`.
    fn path(&self, rest: &[&str]) -> Vec<String> {
        let mut path = vec![
            "apps".to_owned(),
            self.publisher.clone(),
            self.app.clone(),
            "versions".to_owned(),
            self.version.to_string(),
        ];
        path.extend(rest.iter().map(|segment| segment.to_string()));
        path
    }
}

impl std::str::FromStr for AppVersion {
    type Err = String;

    fn from_str(text: &str) -> Result<AppVersion, String> {
        let usage = || format!("'{text}' is not publisher/app@version (e.g. acme/notes@1.2.0)");
        let (id, version) = text.split_once('@').ok_or_else(usage)?;
        let (publisher, app) = id.split_once('/').ok_or_else(usage)?;
        if publisher.is_empty() || app.is_empty() || app.contains('/') {
            return Err(usage());
        }
        for (what, name) in [("publisher", publisher), ("app", app)] {
            crate::manifest::check_name(what, name)
                .map_err(|e| format!("{}: {what} {}", usage(), e.message))?;
        }
        let version = version
            .parse()
            .map_err(|e| format!("'{version}' is not a version (like 1.2.0): {e}"))?;
        Ok(AppVersion {
            publisher: publisher.to_owned(),
            app: app.to_owned(),
            version,
        })
    }
}

impl std::fmt::Display for AppVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}@{}", self.publisher, self.app, self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_versions_parse_and_name_mistakes() {
        let parsed: AppVersion = "acme/notes@1.2.0".parse().unwrap();
        assert_eq!(parsed.to_string(), "acme/notes@1.2.0");
        assert_eq!(
            parsed.path(&["yank"]),
            ["apps", "acme", "notes", "versions", "1.2.0", "yank"]
        );
        for bad in [
            "acme/notes",
            "notes@1.0.0",
            "a/b/c@1.0.0",
            "/x@1.0.0",
            "Acme/notes@1.0.0",
            "acme/../x@1.0.0",
            "acme/-notes@1.0.0",
        ] {
            assert!(
                bad.parse::<AppVersion>()
                    .unwrap_err()
                    .contains("publisher/app@version")
            );
        }
        assert!(
            "acme/notes@one"
                .parse::<AppVersion>()
                .unwrap_err()
                .contains("not a version")
        );
    }

    #[test]
    fn paths_are_joined_onto_the_server_url_with_segments_escaped() {
        let client = StoreClient::new("http://127.0.0.1:9/base/", Some("t".into())).unwrap();
        let request = client
            .request(
                Method::GET,
                &["apps", "a", "b", "versions", "1.0.0+x/y"],
                Caller::Anyone,
            )
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(
            request.url().as_str(),
            "http://127.0.0.1:9/base/store/v1/apps/a/b/versions/1.0.0+x%2Fy"
        );
        assert!(
            request.headers().get("authorization").is_none(),
            "public calls send no token"
        );
        assert!(StoreClient::new("localhost:8080", None).is_err());
    }

    #[test]
    fn only_loopback_servers_count_as_on_this_machine() {
        for local in [
            "http://127.0.0.1:8080",
            "http://127.8.0.1",
            "http://[::1]:9/x",
            "http://localhost:1",
            "https://LOCALHOST",
        ] {
            assert!(
                StoreClient::new(local, None).unwrap().is_loopback(),
                "{local}"
            );
        }
        for remote in [
            "http://10.0.0.5",
            "https://store.example.org",
            "http://localhost.example.org",
            "http://[::2]",
            "http://0.0.0.0:8080",
        ] {
            assert!(
                !StoreClient::new(remote, None).unwrap().is_loopback(),
                "{remote}"
            );
        }
    }

    #[test]
    fn calls_that_need_a_token_fail_before_sending_without_one() {
        let client = StoreClient::new("http://127.0.0.1:9", None).unwrap();
        let error = client.require_token(Caller::Publisher("acme")).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("healthcloud token --role publisher --sub acme"),
            "{error}"
        );
    }

    #[test]
    fn another_api_root_shares_the_machinery_and_names_itself_in_errors() {
        const ADMIN: Api = Api {
            root: &["admin", "v1"],
            name: "region admin API",
        };
        let client = StoreClient::new("http://127.0.0.1:9/base", Some("t".into())).unwrap();
        let caller = Caller::RegionAdmin("hovedstaden");
        let request = client
            .request_to(
                ADMIN,
                Method::GET,
                &["regions", "hovedstaden", "installs"],
                caller,
            )
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(
            request.url().as_str(),
            "http://127.0.0.1:9/base/admin/v1/regions/hovedstaden/installs"
        );
        assert!(request.headers().get("authorization").is_some());

        let error = StoreClient::new("http://127.0.0.1:9", None)
            .unwrap()
            .require_token(caller)
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("healthcloud token --role region-admin --region hovedstaden"),
            "{error}"
        );
        let unreachable = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(client.call::<Value>(ADMIN, Method::GET, &["regions"], caller, None))
            .unwrap_err();
        assert!(
            unreachable
                .to_string()
                .starts_with("cannot reach the region admin API at http://127.0.0.1:9/base"),
            "{unreachable}"
        );
    }
}

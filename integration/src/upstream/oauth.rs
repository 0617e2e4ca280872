//! OAuth 2.0 client credentials (RFC 6749 §4.4) for a source behind a token endpoint.
//!
//! The client secret is read from a file when the source is opened and sent only to the token
//! endpoint, in the `Authorization: Basic` header (`client_secret_basic`). The access token is
//! kept until shortly before it expires and shared by every call to the source: concurrent
//! calls that need a new one wait for a single request to the token endpoint. The token
//! endpoint is as untrusted as the source: its answer is read up to the source's size cap, and
//! of an error answer only the status and the OAuth `error` code are kept.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use healthcloud_platform::http::{LimitedReadError, read_limited};
use reqwest::{StatusCode, Url};
use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{UpstreamError, transport_failure};

/// The longest a token is renewed ahead of its expiry; shorter-lived tokens are renewed a
/// tenth of their lifetime ahead, so a call started with one does not arrive with it expired.
const MAX_RENEWAL_MARGIN: Duration = Duration::from_secs(30);

/// The largest error answer from a token endpoint read for its `error` code.
const ERROR_BODY_CAP: u64 = 64 * 1024;

/// An access token or a static bearer token: sent to the source, never shown.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct AccessToken(String);

impl AccessToken {
    pub(super) fn new(value: String) -> Self {
        AccessToken(value)
    }

    pub(super) fn value(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(..)")
    }
}

/// One source's client credentials and the access token they last obtained.
pub(super) struct ClientCredentials {
    source_name: String,
    token_url: Url,
    /// The client id and secret, each form-encoded as `client_secret_basic` requires.
    basic_user: String,
    basic_password: String,
    scope: Option<String>,
    max_response_bytes: u64,
    cached: Mutex<Option<CachedToken>>,
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("token_url", &self.token_url.as_str())
            .field("client_id", &self.basic_user)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

struct CachedToken {
    token: AccessToken,
    /// When to stop using it; `None` when the token endpoint gave no lifetime, so the token is
    /// kept until the source refuses it.
    renew_at: Option<Instant>,
}

impl CachedToken {
    fn is_fresh(&self) -> bool {
        self.renew_at.is_none_or(|at| Instant::now() < at)
    }
}

impl ClientCredentials {
    /// Reads the client secret from `secret_file`; nothing is sent yet.
    pub(super) fn open(
        source_name: &str,
        token_url: &Url,
        client_id: &str,
        secret_file: &Path,
        scope: Option<&str>,
        max_response_bytes: u64,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            sends_secrets_safely(token_url),
            "source '{source_name}': its token endpoint {token_url} is not https: a client secret \
             is sent only over TLS (or to a loopback address); configure the https URL"
        );
        anyhow::ensure!(
            !client_id.is_empty(),
            "source '{source_name}': its client id is empty: configure the client id its token \
             endpoint issued to healthcloud"
        );
        let secret = std::fs::read_to_string(secret_file).map_err(|e| {
            anyhow::anyhow!(
                "source '{source_name}': its client secret file {} cannot be read ({e}): write the \
                 secret its token endpoint issued for client '{client_id}' into it",
                secret_file.display()
            )
        })?;
        let secret = secret.trim();
        anyhow::ensure!(
            !secret.is_empty(),
            "source '{source_name}': its client secret file {} is empty: write the secret its \
             token endpoint issued for client '{client_id}' into it",
            secret_file.display()
        );
        let form_encoded =
            |value: &str| form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>();
        Ok(ClientCredentials {
            source_name: source_name.to_owned(),
            token_url: token_url.clone(),
            basic_user: form_encoded(client_id),
            basic_password: form_encoded(secret),
            scope: scope.map(str::to_owned),
            max_response_bytes,
            cached: Mutex::new(None),
        })
    }

    /// The access token to send: the one held while it is fresh, else a new one.
    pub(super) async fn token(&self, http: &reqwest::Client) -> Result<AccessToken, UpstreamError> {
        let mut cached = self.cached.lock().await;
        if let Some(held) = cached.as_ref().filter(|held| held.is_fresh()) {
            return Ok(held.token.clone());
        }
        let fresh = self.request_token(http).await?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    /// A new access token in place of `refused`, which the source no longer accepts (it was
    /// revoked, or the token endpoint forgot it), unless another call has already replaced it.
    pub(super) async fn replace(
        &self,
        http: &reqwest::Client,
        refused: &AccessToken,
    ) -> Result<AccessToken, UpstreamError> {
        let mut cached = self.cached.lock().await;
        if let Some(held) = cached
            .as_ref()
            .filter(|held| held.token != *refused && held.is_fresh())
        {
            return Ok(held.token.clone());
        }
        *cached = None;
        let fresh = self.request_token(http).await?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    /// `POST [token_url]` with `grant_type=client_credentials`.
    async fn request_token(&self, http: &reqwest::Client) -> Result<CachedToken, UpstreamError> {
        let form = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "client_credentials");
            if let Some(scope) = &self.scope {
                form.append_pair("scope", scope);
            }
            form.finish()
        };
        let asked_at = Instant::now();
        let response = http
            .post(self.token_url.clone())
            .basic_auth(&self.basic_user, Some(&self.basic_password))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .body(form)
            .send()
            .await
            .map_err(|e| self.failed(format!("could not be reached: {}", transport_failure(e))))?;
        let status = response.status();
        if status == StatusCode::BAD_REQUEST || status == StatusCode::UNAUTHORIZED {
            // RFC 6749 §5.2: the credentials, the grant or the scope were refused.
            let oauth_error = read_limited(response, ERROR_BODY_CAP.min(self.max_response_bytes))
                .await
                .ok()
                .and_then(|body| oauth_error_code(&body));
            return Err(UpstreamError::CredentialsRefused {
                source_name: self.source_name.clone(),
                status,
                oauth_error,
            });
        }
        if !status.is_success() {
            return Err(self.failed(format!("answered {status}")));
        }
        let body = read_limited(response, self.max_response_bytes)
            .await
            .map_err(|error| match error {
                LimitedReadError::TooLarge { limit } => self.failed(format!(
                    "answered more than the source's cap of {limit} bytes"
                )),
                LimitedReadError::Transport(e) => {
                    self.failed(format!("broke off: {}", transport_failure(e)))
                }
            })?;
        let answer: Value = serde_json::from_slice(&body)
            .map_err(|e| self.not_a_token(format!("it is not JSON ({e})")))?;
        let token = answer["access_token"]
            .as_str()
            .filter(|token| !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| self.not_a_token("it holds no access_token that can be sent"))?;
        if !answer["token_type"]
            .as_str()
            .is_some_and(|kind| kind.eq_ignore_ascii_case("bearer"))
        {
            return Err(self.not_a_token("its token_type is not Bearer"));
        }
        let renew_at = match &answer["expires_in"] {
            Value::Null => None,
            lifetime => {
                let lifetime = Duration::from_secs(lifetime.as_u64().ok_or_else(|| {
                    self.not_a_token("its expires_in is not a whole number of seconds")
                })?);
                // A lifetime past what a clock can count is kept until the source refuses it.
                asked_at.checked_add(lifetime - (lifetime / 10).min(MAX_RENEWAL_MARGIN))
            }
        };
        Ok(CachedToken {
            token: AccessToken(token.to_owned()),
            renew_at,
        })
    }

    fn failed(&self, problem: String) -> UpstreamError {
        UpstreamError::TokenEndpoint {
            source_name: self.source_name.clone(),
            problem,
        }
    }

    fn not_a_token(&self, reason: impl fmt::Display) -> UpstreamError {
        self.failed(format!(
            "answered something that is not an OAuth token response: {reason}"
        ))
    }
}

/// The OAuth `error` code of an error answer, when it is one: a short word of `[a-z_]`, so
/// nothing else of the answer (descriptions, internals) is carried on.
fn oauth_error_code(body: &[u8]) -> Option<String> {
    let answer: Value = serde_json::from_slice(body).ok()?;
    let code = answer["error"].as_str()?;
    (!code.is_empty()
        && code.len() <= 64
        && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
    .then(|| code.to_owned())
}

/// Whether a secret sent to `url` stays off the network in the clear: https, or http to this
/// machine.
fn sends_secrets_safely(url: &Url) -> bool {
    match (url.scheme(), url.host()) {
        ("https", Some(_)) => true,
        ("http", Some(url::Host::Domain(domain))) => domain == "localhost",
        ("http", Some(url::Host::Ipv4(address))) => address.is_loopback(),
        ("http", Some(url::Host::Ipv6(address))) => address.is_loopback(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_short_lowercase_error_code_is_kept_from_an_error_answer() {
        assert_eq!(
            oauth_error_code(br#"{"error":"invalid_client","error_description":"db01 down"}"#),
            Some("invalid_client".to_owned())
        );
        assert_eq!(
            oauth_error_code(br#"{"error":"Invalid <b>client</b>"}"#),
            None
        );
        assert_eq!(oauth_error_code(&[b'{'; 10]), None);
        let long = format!(r#"{{"error":"{}"}}"#, "a".repeat(65));
        assert_eq!(oauth_error_code(long.as_bytes()), None);
    }

    #[test]
    fn a_secret_goes_only_to_https_or_to_this_machine() {
        for safe in [
            "https://login.example.dk/token",
            "http://127.0.0.1:8080/token",
            "http://[::1]/token",
            "http://localhost/token",
        ] {
            assert!(sends_secrets_safely(&Url::parse(safe).unwrap()), "{safe}");
        }
        for unsafe_url in [
            "http://login.example.dk/token",
            "http://10.0.0.8/token",
            "http://localhost.example.dk/token",
            "ftp://127.0.0.1/token",
        ] {
            assert!(
                !sends_secrets_safely(&Url::parse(unsafe_url).unwrap()),
                "{unsafe_url}"
            );
        }
    }
}

//! The region admin API's client, `/admin/v1/regions/{region}/…`: one typed method per route,
//! over the store client's HTTP machinery (and its errors, which name the fix).

use healthcloud_package::client::{Api, AppVersion, Caller, ClientError, StoreClient};
use healthcloud_runtime::regions::admin::{AuditEntry, InstallView, UpgradeView};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// The region admin API.
const REGION_ADMIN: Api = Api {
    root: &["admin", "v1"],
    name: "region admin API",
};

/// `publisher/app`: an app, whatever its version, as a region installs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppId {
    /// The publisher.
    pub publisher: String,
    /// The app.
    pub app: String,
}

impl std::str::FromStr for AppId {
    type Err = String;

    fn from_str(text: &str) -> Result<AppId, String> {
        if let Some((id, _)) = text.split_once('@') {
            return Err(format!(
                "'{text}' names a version: pass the app as publisher/app (e.g. {id})"
            ));
        }
        match text.split_once('/') {
            Some((publisher, app))
                if !publisher.is_empty() && !app.is_empty() && !app.contains('/') =>
            {
                Ok(AppId {
                    publisher: publisher.to_owned(),
                    app: app.to_owned(),
                })
            }
            _ => Err(format!(
                "'{text}' is not publisher/app (e.g. examples/bp-monitor)"
            )),
        }
    }
}

impl std::fmt::Display for AppId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.publisher, self.app)
    }
}

impl From<&AppVersion> for AppId {
    fn from(version: &AppVersion) -> AppId {
        AppId {
            publisher: version.publisher.clone(),
            app: version.app.clone(),
        }
    }
}

/// Why a region admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum RegionError {
    /// The token is valid but not a region admin's of this region (403).
    #[error("{message} (HTTP 403){fix}")]
    Forbidden {
        /// The server's message.
        message: String,
        /// How to get a token that is allowed, unless the message says so already.
        fix: String,
    },
    /// Anything else; the message names the fix.
    #[error(transparent)]
    Call(ClientError),
}

impl RegionError {
    fn from_call(region: &str, error: ClientError) -> RegionError {
        match error {
            ClientError::Refused {
                status: StatusCode::FORBIDDEN,
                message,
                ..
            } => {
                let fix = if message.contains("healthcloud token") {
                    String::new()
                } else {
                    format!(
                        ": a region admin's token reaches only its own region; pass one of region {region} with --token or HEALTHCLOUD_TOKEN (mint one with `healthcloud token --role region-admin --region {region}`)"
                    )
                };
                RegionError::Forbidden { message, fix }
            }
            other => RegionError::Call(other),
        }
    }
}

/// A client of one region's admin API on one server.
pub struct RegionClient {
    client: StoreClient,
    region: String,
}

impl RegionClient {
    /// A client of `region` through `client`'s server and token.
    pub fn new(client: StoreClient, region: &str) -> RegionClient {
        RegionClient {
            client,
            region: region.to_owned(),
        }
    }

    /// The server's base URL, as shown to the user.
    pub fn server(&self) -> &str {
        self.client.server()
    }

    /// `GET …/installs`.
    pub async fn list(&self) -> Result<Vec<InstallView>, RegionError> {
        self.call(Method::GET, &["installs"], None).await
    }

    /// `POST …/installs`: installs `app` granting `grant`, a subset of what it requests;
    /// `allow_internal_addresses` allows `outbound-http:` destinations inside the network
    /// among them.
    pub async fn install(
        &self,
        app: &AppVersion,
        grant: &[String],
        allow_internal_addresses: bool,
    ) -> Result<InstallView, RegionError> {
        let mut body = json!({ "app": app.to_string(), "grant": grant });
        allowing(&mut body, allow_internal_addresses);
        self.call(Method::POST, &["installs"], Some(&body)).await
    }

    /// `GET …/installs/{publisher}/{app}`.
    pub async fn show(&self, app: &AppId) -> Result<InstallView, RegionError> {
        self.call(Method::GET, &install_path(app, None), None).await
    }

    /// `DELETE …/installs/{publisher}/{app}`.
    pub async fn uninstall(&self, app: &AppId) -> Result<(), RegionError> {
        self.call::<Value>(Method::DELETE, &install_path(app, None), None)
            .await
            .map(drop)
    }

    /// `POST …/installs/{publisher}/{app}/grant`; `allow_internal_addresses` allows an
    /// `outbound-http:` destination inside the network.
    pub async fn grant(
        &self,
        app: &AppId,
        capability: &str,
        allow_internal_addresses: bool,
    ) -> Result<InstallView, RegionError> {
        let mut body = json!({ "capability": capability });
        allowing(&mut body, allow_internal_addresses);
        let path = install_path(app, Some("grant"));
        self.call(Method::POST, &path, Some(&body)).await
    }

    /// `POST …/installs/{publisher}/{app}/revoke`.
    pub async fn revoke(&self, app: &AppId, capability: &str) -> Result<InstallView, RegionError> {
        let body = json!({ "capability": capability });
        let path = install_path(app, Some("revoke"));
        self.call(Method::POST, &path, Some(&body)).await
    }

    /// `POST …/installs/{publisher}/{app}/upgrade`: to `version`; with `approve`, also what it
    /// asks for beyond the installed version, granting `grant` of that.
    pub async fn upgrade(
        &self,
        version: &AppVersion,
        approve: bool,
        grant: &[String],
        allow_internal_addresses: bool,
    ) -> Result<UpgradeView, RegionError> {
        let mut body = json!({
            "version": version.version.to_string(),
            "approve": approve,
            "grant": grant,
        });
        allowing(&mut body, allow_internal_addresses);
        let app = AppId::from(version);
        let path = install_path(&app, Some("upgrade"));
        self.call(Method::POST, &path, Some(&body)).await
    }

    /// `GET …/audit`: the region's admin actions, newest first.
    pub async fn audit(&self) -> Result<Vec<AuditEntry>, RegionError> {
        self.call(Method::GET, &["audit"], None).await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &[&str],
        body: Option<&Value>,
    ) -> Result<T, RegionError> {
        let mut full = vec!["regions", self.region.as_str()];
        full.extend_from_slice(path);
        self.client
            .call(
                REGION_ADMIN,
                method,
                &full,
                Caller::RegionAdmin(&self.region),
                body,
            )
            .await
            .map_err(|error| RegionError::from_call(&self.region, error))
    }
}

/// `installs/{publisher}/{app}`, then `action`.
/// Adds the admin's allowance for internal addresses to a request body, only when given.
fn allowing(body: &mut Value, allow_internal_addresses: bool) {
    if allow_internal_addresses {
        body["allow_internal_addresses"] = Value::Bool(true);
    }
}

fn install_path<'a>(app: &'a AppId, action: Option<&'a str>) -> Vec<&'a str> {
    let mut path = vec!["installs", app.publisher.as_str(), app.app.as_str()];
    path.extend(action);
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_ids_parse_and_a_version_is_pointed_out() {
        let id: AppId = "examples/bp-monitor".parse().unwrap();
        assert_eq!(id.to_string(), "examples/bp-monitor");
        let versioned = "examples/bp-monitor@1.0.0".parse::<AppId>().unwrap_err();
        assert!(
            versioned.contains("pass the app as publisher/app (e.g. examples/bp-monitor)"),
            "{versioned}"
        );
        for bad in ["bp-monitor", "/x", "a/", "a/b/c"] {
            assert!(
                bad.parse::<AppId>()
                    .unwrap_err()
                    .contains("is not publisher/app"),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_forbidden_answer_says_how_to_mint_a_token_of_the_region() {
        let error = RegionError::from_call(
            "hovedstaden",
            ClientError::Refused {
                status: StatusCode::FORBIDDEN,
                message: "your token administers region midtjylland, not hovedstaden".into(),
                field: None,
            },
        );
        let text = error.to_string();
        assert!(
            text.starts_with("your token administers region midtjylland, not hovedstaden")
                && text.contains("healthcloud token --role region-admin --region hovedstaden"),
            "{text}"
        );
        let named = "this needs a region-admin token for region hovedstaden; yours is for role clinician (mint one with `healthcloud token --role region-admin --region hovedstaden`)";
        let error = RegionError::from_call(
            "hovedstaden",
            ClientError::Refused {
                status: StatusCode::FORBIDDEN,
                message: named.into(),
                field: None,
            },
        );
        assert_eq!(
            error.to_string(),
            format!("{named} (HTTP 403)"),
            "the fix is named once"
        );
    }
}

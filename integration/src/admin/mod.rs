//! The sources admin API, `/admin/v1/sources`, for platform operators: every upstream
//! source with its health, a check of one now (its CapabilityStatement read), and adding,
//! replacing and removing sources. A change takes effect at once and is written to
//! `sources.toml` ([`sources_file`](crate::sources_file)) so a restart keeps it.
//!
//! Only a token of role `platform-operator` for this server's FHIR API may call it; anyone
//! else is refused 403 naming the role, and the refusal goes to the security log
//! ([`SecurityKind::SourceAdmin`]), spending the caller's refusal budget as the FHIR API's
//! refusals do.
//!
//! Sources come from the file or from `--source NAME=FHIR_BASE` on the command line. A
//! command-line source can be removed for the life of the process, but not replaced: it
//! would clash with the flag at the next start.

mod error;
mod http;

use std::collections::BTreeMap;
use std::sync::Arc;

use healthcloud_platform::auth::{Principal, Role, TokenVerifier};
use serde::{Deserialize, Serialize};

pub use error::SourceAdminError;

use crate::api::FhirState;
use crate::security::SecurityKind;
use crate::service::FhirService;
use crate::sources::{SourceError, SourceStatus};
use crate::sources_file::{SourceEntry, SourcesFile};
use crate::upstream::Upstream;

/// Where a source's configuration comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// `sources.toml` (or the admin API, which writes it).
    File,
    /// `--source NAME=FHIR_BASE`, for this process only.
    CommandLine,
    /// Registered by the server itself (such as `up`'s demo world), for this process only.
    Server,
}

/// A source as the admin API shows it: its configuration and health.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceView {
    /// Name, organization, base, types, and health.
    #[serde(flatten)]
    pub status: SourceStatus,
    /// How healthcloud authenticates to it: `none`, `bearer-file` or `client-credentials`.
    pub auth: String,
    /// Where it is configured.
    pub configured_in: Origin,
}

/// The answer to `DELETE /admin/v1/sources/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceRemoved {
    /// The source.
    pub name: String,
    /// Where it was configured: only a source of the file is gone for good; another comes
    /// back at the next start unless its `--source` is dropped.
    pub configured_in: Origin,
}

/// The sources admin service: the registry of [`FhirService::sources`], the file that keeps
/// it, and who may change it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SourcesAdmin {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    service: FhirService,
    verifier: TokenVerifier,
    audience: String,
    /// Held while a change is written and applied, so changes apply in the file's order.
    configured: tokio::sync::Mutex<Configured>,
}

#[derive(Debug)]
struct Configured {
    file: SourcesFile,
    /// The sources given on the command line, by name.
    flags: BTreeMap<String, SourceEntry>,
}

impl Configured {
    fn origin(&self, name: &str) -> Option<(Origin, &SourceEntry)> {
        if let Some(entry) = self.flags.get(name) {
            return Some((Origin::CommandLine, entry));
        }
        self.file.get(name).map(|entry| (Origin::File, entry))
    }
}

impl SourcesAdmin {
    /// Registers the sources of `file` and of the command line (`flags`) with the FHIR API of
    /// `state`; nothing is sent to them yet. A name in both, or a source that cannot be
    /// opened (an unreadable token file), is an error naming it and the fix.
    pub fn open(
        state: &FhirState,
        file: SourcesFile,
        flags: Vec<SourceEntry>,
    ) -> anyhow::Result<SourcesAdmin> {
        let mut by_flag = BTreeMap::new();
        for flag in flags {
            if by_flag.contains_key(&flag.name) {
                anyhow::bail!(
                    "--source {} is given twice: give each source its own name",
                    flag.name
                );
            }
            if let Some(entry) = file.get(&flag.name) {
                anyhow::bail!(
                    "source '{}' is given both with --source {}={} and in {} (base {}): drop the \
                     flag, or remove or rename the source in the file",
                    flag.name,
                    flag.name,
                    flag.base,
                    file.path().display(),
                    entry.base
                );
            }
            by_flag.insert(flag.name.clone(), flag);
        }
        let sources = state.service.sources();
        for (entry, origin) in file
            .entries
            .iter()
            .map(|entry| (entry, file.path().display().to_string()))
            .chain(by_flag.values().map(|entry| (entry, "--source".to_owned())))
        {
            let settings = entry
                .settings(file.data_dir())
                .map_err(|e| anyhow::anyhow!("{origin}: source '{}': {e}", entry.name))?;
            sources
                .add(settings)
                .map_err(|e| anyhow::anyhow!("{origin}: {e:#}"))?;
        }
        Ok(SourcesAdmin {
            inner: Arc::new(Inner {
                service: state.service.clone(),
                verifier: state.verifier.clone(),
                audience: state.config.audience.clone(),
                configured: tokio::sync::Mutex::new(Configured {
                    file,
                    flags: by_flag,
                }),
            }),
        })
    }

    /// The routes, `/admin/v1/sources…`.
    pub fn router(&self) -> axum::Router {
        http::router(self.clone())
    }

    /// Reads every source's CapabilityStatement now, in parallel: each source's name, base,
    /// and its types or why not. For the lines a server prints at start.
    pub async fn check_all(&self) -> Vec<(String, String, Result<Vec<String>, String>)> {
        let sources = self.inner.service.sources();
        let checks = sources.status().into_iter().map(|status| async move {
            let checked = match sources.check(&status.name).await {
                Ok(checked) => Ok(checked.types.unwrap_or_default()),
                Err(error) => Err(error.to_string()),
            };
            (status.name, status.base, checked)
        });
        futures_util::future::join_all(checks).await
    }

    /// Every source with its health, by name.
    pub async fn list(&self) -> Vec<SourceView> {
        let configured = self.inner.configured.lock().await;
        self.inner
            .service
            .sources()
            .status()
            .into_iter()
            .map(|status| view(&configured, status))
            .collect()
    }

    /// Source `name` with its health.
    pub async fn show(&self, name: &str) -> Result<SourceView, SourceAdminError> {
        let configured = self.inner.configured.lock().await;
        let status = self
            .inner
            .service
            .sources()
            .status()
            .into_iter()
            .find(|status| status.name == name)
            .ok_or_else(|| unknown(name))?;
        Ok(view(&configured, status))
    }

    /// Reads source `name`'s CapabilityStatement now.
    pub async fn check(&self, name: &str) -> Result<SourceView, SourceAdminError> {
        let status =
            self.inner
                .service
                .sources()
                .check(name)
                .await
                .map_err(|error| match error {
                    SourceError::Unknown(_) => unknown(name),
                    SourceError::Unavailable(message) => SourceAdminError::Upstream(format!(
                        "{message}: check that the source runs at its base URL and accepts \
                     healthcloud's credentials; it is retried on use"
                    )),
                    SourceError::Home(error) => SourceAdminError::Internal(anyhow::anyhow!(error)),
                })?;
        let configured = self.inner.configured.lock().await;
        Ok(view(&configured, status))
    }

    /// Adds source `name`, or replaces the one of that name, from `entry`: written to the
    /// file, then used at once. Its CapabilityStatement is read afterwards; a failure to read
    /// it shows in its health, and it is retried on use. Whether it replaced one.
    pub async fn put(
        &self,
        name: &str,
        mut entry: SourceEntry,
    ) -> Result<(bool, SourceView), SourceAdminError> {
        if entry.name.is_empty() {
            entry.name = name.to_owned();
        }
        if entry.name != name {
            return Err(SourceAdminError::BadRequest {
                message: format!(
                    "the body names source '{}' and the path '{name}': leave name out of the \
                     body, or make them agree",
                    entry.name
                ),
                field: Some("name".into()),
            });
        }
        let mut configured = self.inner.configured.lock().await;
        if configured.flags.contains_key(name) {
            return Err(SourceAdminError::Conflict(format!(
                "source '{name}' is given with --source on the server's command line: drop that \
                 flag and restart the server to configure it here, or choose another name"
            )));
        }
        let settings = entry
            .settings(configured.file.data_dir())
            .map_err(|error| SourceAdminError::BadRequest {
                message: error.message,
                field: error.key.map(str::to_owned),
            })?;
        // Opening reads the token file: a source that cannot be opened is not written.
        Upstream::open(settings.upstream.clone())
            .map_err(|e| SourceAdminError::Unprocessable(format!("{e:#}")))?;
        let mut changed = configured.file.clone();
        let replaced = changed.put(entry);
        changed.save()?;
        configured.file = changed;
        self.inner.service.sources().add(settings)?;
        drop(configured);
        tracing::info!(source = name, replaced, "source configured");
        // Its health says whether it answered; the change stands either way.
        let status = match self.inner.service.sources().check(name).await {
            Ok(status) => status,
            Err(_) => self.show(name).await?.status,
        };
        let configured = self.inner.configured.lock().await;
        Ok((replaced, view(&configured, status)))
    }

    /// Removes source `name`: no longer asked, and gone from the file.
    pub async fn remove(&self, name: &str) -> Result<SourceRemoved, SourceAdminError> {
        let mut configured = self.inner.configured.lock().await;
        let origin = match configured.origin(name) {
            Some((origin, _)) => origin,
            None if self.inner.service.sources().contains(name) => Origin::Server,
            None => return Err(unknown(name)),
        };
        match origin {
            Origin::File => {
                let mut changed = configured.file.clone();
                changed.remove(name);
                changed.save()?;
                configured.file = changed;
            }
            Origin::CommandLine => {
                configured.flags.remove(name);
            }
            Origin::Server => {}
        }
        self.inner.service.sources().remove(name);
        tracing::info!(source = name, "source removed");
        Ok(SourceRemoved {
            name: name.to_owned(),
            configured_in: origin,
        })
    }

    /// The platform operator behind `principal`; anyone else is refused 403, and the refusal
    /// goes to the security log (`asked` says what was asked, e.g. `GET /admin/v1/sources`).
    /// A caller refused too often lately (here or by the FHIR API) gets 429.
    pub async fn authorize(
        &self,
        principal: &Principal,
        asked: &str,
    ) -> Result<(), SourceAdminError> {
        principal
            .check_audience(&[&self.inner.audience])
            .map_err(|e| SourceAdminError::Unauthorized(e.to_string()))?;
        let refusals = self.inner.service.refusals();
        if let Err(limited) = refusals.check(principal) {
            return Err(SourceAdminError::TooManyRequests {
                message: crate::FhirError::from(limited).to_string(),
                retry_after_secs: limited.retry_after_secs,
            });
        }
        if principal.claims.role == Role::PlatformOperator {
            return Ok(());
        }
        let refusal = format!(
            "the sources admin API needs a token of role platform-operator; yours is for role {} \
             (mint one with `healthcloud token --role platform-operator`)",
            principal.claims.role.as_str()
        );
        self.inner
            .service
            .record_admin_refusal(SecurityKind::SourceAdmin, principal, asked, &refusal)
            .await;
        Err(SourceAdminError::Forbidden(refusal))
    }

    fn verifier(&self) -> &TokenVerifier {
        &self.inner.verifier
    }
}

fn view(configured: &Configured, status: SourceStatus) -> SourceView {
    let (origin, auth) = match configured.origin(&status.name) {
        Some((origin, entry)) => (origin, entry.auth.as_str()),
        None => (Origin::Server, "none"),
    };
    SourceView {
        status,
        auth: auth.to_owned(),
        configured_in: origin,
    }
}

fn unknown(name: &str) -> SourceAdminError {
    SourceAdminError::NotFound(format!(
        "no source is named '{name}': list them with GET /admin/v1/sources (or `healthcloud \
         source list`)"
    ))
}

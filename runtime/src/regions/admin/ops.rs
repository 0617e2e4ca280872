//! The region admin operations: install from the store, change the grant, upgrade, decline
//! an upgrade, uninstall, list and show, each audited.

use axum::http::StatusCode;
use healthcloud_integration::security::SecurityKind;
use healthcloud_package::client::{AppVersion, ClientError};
use healthcloud_package::manifest::{Capability, Manifest};
use healthcloud_package::package::SignedPackage;
use healthcloud_platform::auth::{Principal, Role};

use super::audit::{self, Action, allowing, audited, now, with_grant};
use super::{
    Admin, AdminError, AuditEntry, CapabilityView, InstallView, PendingView, RegionAdminService,
    RevokedView, SmartClientView, UpgradeRequest, UpgradeView,
};
use crate::regions::trust::check_vouched;
use crate::regions::{InstallRow, Regions, Revoked, capabilities_to_json};
use crate::{Grant, Install};

impl RegionAdminService {
    /// The caller as a region admin of `region`. A refusal is recorded in the security log,
    /// not in the region's audit log: only callers with a role in a region write there.
    pub async fn authorize(
        &self,
        principal: &Principal,
        region: &str,
    ) -> Result<Admin, AdminError> {
        self.authorize_for(principal, region, &format!("administer region {region}"))
            .await
    }

    /// [`RegionAdminService::authorize`], with what was asked (`GET /admin/v1/…`) for the security
    /// log. A caller refused too often lately (here or by the FHIR API) gets 429.
    pub(super) async fn authorize_for(
        &self,
        principal: &Principal,
        region: &str,
        asked: &str,
    ) -> Result<Admin, AdminError> {
        let refusals = self.runtime.inner.service.refusals();
        if let Err(limited) = refusals.check(principal) {
            return Err(AdminError::TooManyRequests {
                message: healthcloud_integration::FhirError::from(limited).to_string(),
                retry_after_secs: limited.retry_after_secs,
            });
        }
        let admin = region_admin_of(principal, region);
        if let Err(error) = &admin {
            self.runtime
                .inner
                .service
                .record_admin_refusal(
                    SecurityKind::RegionAdmin,
                    principal,
                    asked,
                    &error.to_string(),
                )
                .await;
        }
        admin
    }

    fn regions(&self) -> Result<&Regions, AdminError> {
        self.runtime.regions().ok_or_else(|| {
            AdminError::Unavailable(
                "this node does not serve region installs: start it with `healthcloud up` or `healthcloud serve runtime`".into(),
            )
        })
    }

    /// The region's audit log, newest first.
    pub async fn audit_log(
        &self,
        admin: &Admin,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, AdminError> {
        audit::audit_log(self.regions()?, admin, limit).await
    }

    /// Asks the store for `version` and checks that it may be installed: not revoked (by the
    /// store or as this node knows from the feed), not yanked, and its key vouched for by the
    /// store's signed version record (under the pinned key), before any component byte.
    async fn offered(&self, version: &AppVersion) -> Result<Offered, AdminError> {
        let regions = self.regions()?;
        let published = regions
            .store()
            .version(version)
            .await
            .map_err(|e| store_error(version, e))?;
        let id = format!("{}/{}", version.publisher, version.app);
        let revoked = published
            .revoked
            .map(|r| (r.reason, r.at.to_rfc3339()))
            .or_else(|| {
                regions
                    .revocation(&id, &version.version.to_string())
                    .map(|r| (r.reason, r.at))
            });
        if let Some((reason, at)) = revoked {
            return Err(AdminError::Gone(format!(
                "{version} was revoked by the store at {at}: {reason}; install a later version"
            )));
        }
        if published.yanked_at.is_some() {
            return Err(AdminError::Conflict(format!(
                "{version} was yanked by its publisher and is not for new installs; install a later version"
            )));
        }
        match published.signature.as_deref() {
            Some("valid") => {}
            other => {
                return Err(AdminError::Conflict(format!(
                    "the store does not vouch for the signature of {version}: {}",
                    other.unwrap_or("no verdict")
                )));
            }
        }
        let (signed, record) = (published.signed, published.record);
        signed.verify().map_err(|e| AdminError::Unprocessable {
            message: format!("{version} does not verify: {e}"),
            field: None,
        })?;
        let manifest = signed.package.manifest();
        if manifest.full_id() != id || manifest.app.version != version.version {
            return Err(AdminError::Unprocessable {
                message: format!(
                    "the store answered {} {} when asked for {version}",
                    manifest.full_id(),
                    manifest.app.version
                ),
                field: None,
            });
        }
        check_vouched(regions, version, record.as_ref(), &signed).await?;
        Ok(Offered { signed, manifest })
    }

    /// Downloads (or reads from disk) the component, verifies and compiles it for `region`.
    /// A SMART web app's registration document is verified, and nothing is compiled
    /// (`None`): the app runs at its vendor, registered as a client when the row is written.
    async fn prepare_offered(
        &self,
        region: &str,
        offered: &Offered,
        grant: Grant,
    ) -> Result<Option<std::sync::Arc<Install>>, AdminError> {
        let regions = self.regions()?;
        let component = regions
            .component(&offered.signed)
            .await
            .map_err(|e| AdminError::Store(format!("{e:#}")))?;
        let unprocessable = |message: String| AdminError::Unprocessable {
            message,
            field: None,
        };
        if offered.signed.package.smart.is_some() {
            offered
                .signed
                .verify()
                .and_then(|_| offered.signed.check_component(&component))
                .map_err(|e| unprocessable(e.to_string()))?;
            return Ok(None);
        }
        self.runtime
            .prepare_package(region, offered.signed.clone(), component, grant)
            .await
            .map(Some)
            .map_err(|e| unprocessable(format!("{e:#}")))
    }

    /// The region's installs.
    pub async fn list(&self, admin: &Admin) -> Result<Vec<InstallView>, AdminError> {
        let regions = self.regions()?;
        let rows = regions.rows(Some(&admin.region)).await?;
        rows.iter().map(|row| self.view(regions, row)).collect()
    }

    /// One install.
    pub async fn show(&self, admin: &Admin, app: &str) -> Result<InstallView, AdminError> {
        let regions = self.regions()?;
        let row = self.existing(regions, admin, app).await?;
        self.view(regions, &row)
    }

    async fn existing(
        &self,
        regions: &Regions,
        admin: &Admin,
        app: &str,
    ) -> Result<InstallRow, AdminError> {
        regions.row(&admin.region, app).await?.ok_or_else(|| {
            AdminError::NotFound(format!(
                "no app {app} is installed in region {}: `healthcloud region list --region {}` shows what is",
                admin.region, admin.region
            ))
        })
    }

    fn view(&self, regions: &Regions, row: &InstallRow) -> Result<InstallView, AdminError> {
        let signed = SignedPackage::from_json(row.package.as_bytes())
            .map_err(|e| anyhow::anyhow!("a stored package: {e}"))?;
        let manifest = signed.package.manifest();
        let capability_view = |requested: &healthcloud_package::manifest::RequestedCapability| {
            let capability = Capability::parse(&requested.name).ok();
            CapabilityView {
                capability: requested.name.clone(),
                justification: requested.justification.clone(),
                explanation: capability
                    .as_ref()
                    .map(Capability::explain)
                    .unwrap_or_default(),
                granted: capability.is_some_and(|c| row.granted.contains(&c)),
            }
        };
        let pending = match &row.pending {
            Some(pending) => {
                let next_package = SignedPackage::from_json(pending.package.as_bytes())
                    .map_err(|e| anyhow::anyhow!("a stored package: {e}"))?
                    .package;
                let registration_changed = next_package.smart != signed.package.smart;
                let next = next_package.manifest();
                Some(PendingView {
                    version: pending.version.clone(),
                    registration_changed,
                    added: next
                        .requested
                        .iter()
                        .filter(|r| {
                            Capability::parse(&r.name).is_ok_and(|c| pending.added.contains(&c))
                        })
                        .map(capability_view)
                        .collect(),
                })
            }
            None => None,
        };
        let revoked = regions.revocation(&row.app, &row.version);
        let client_id = crate::regions::smart::client_id(&row.region, &row.app);
        let smart_client = signed.package.smart.as_ref().map(|smart| SmartClientView {
            client_id: client_id.clone(),
            launch_url: smart.launch_url.clone(),
            redirect_uris: smart.redirect_uris.clone(),
        });
        let serving = revoked.is_none()
            && match &smart_client {
                Some(_) => self
                    .runtime
                    .smart_clients()
                    .get(&client_id)
                    .is_some_and(|client| client.version == row.version),
                None => self
                    .runtime
                    .installed(&row.region, &row.app)
                    .is_some_and(|install| {
                        install.identity.version == row.version && !install.stop.is_cancelled()
                    }),
            };
        Ok(InstallView {
            region: row.region.clone(),
            app: row.app.clone(),
            name: manifest.app.name.clone(),
            version: row.version.clone(),
            sha256: row.sha256.clone(),
            key_id: signed.signature.key_id.to_string(),
            requested: manifest.requested.iter().map(capability_view).collect(),
            granted: row.granted.iter().map(ToString::to_string).collect(),
            allow_internal_addresses: row.allow_internal_addresses,
            installed_at: row.installed_at.clone(),
            updated_at: row.updated_at.clone(),
            serving,
            revoked: revoked.map(|Revoked { reason, at }| RevokedView { reason, at }),
            pending,
            url: match &smart_client {
                Some(smart) => smart.launch_url.clone().unwrap_or_default(),
                None => format!("/apps/{}/{}/", row.region, row.app),
            },
            smart_client,
        })
    }

    /// Installs `app` (`publisher/app@version`) from the store in the admin's region with
    /// `grant` ⊆ what it requests: downloaded, verified (digest, signature, the store's
    /// verdict on the key, revocations), validated and compiled before it is recorded.
    /// `outbound-http:` destinations inside the network are refused: see
    /// [`RegionAdminService::install_allowing`].
    pub async fn install(
        &self,
        admin: &Admin,
        app: &str,
        grant: &[String],
    ) -> Result<InstallView, AdminError> {
        self.install_allowing(admin, app, grant, false).await
    }

    /// [`RegionAdminService::install`], where `allow_internal_addresses` is the admin's explicit
    /// allowance for `outbound-http:` destinations inside the network (loopback, private,
    /// link-local, metadata, …) in `grant`; the audit record says so.
    pub async fn install_allowing(
        &self,
        admin: &Admin,
        app: &str,
        grant: &[String],
        allow_internal_addresses: bool,
    ) -> Result<InstallView, AdminError> {
        let action = Action {
            admin,
            name: "install",
            app: app.split('@').next(),
            detail: allowing(with_grant(app.to_owned(), grant), allow_internal_addresses),
        };
        let result = self
            .install_inner(&action, app, grant, allow_internal_addresses)
            .await;
        audit::audit_refusal(self.runtime.regions(), &action, &result).await;
        result
    }

    async fn install_inner(
        &self,
        action: &Action<'_>,
        app: &str,
        grant: &[String],
        allow_internal_addresses: bool,
    ) -> Result<InstallView, AdminError> {
        let admin = action.admin;
        let regions = self.regions()?;
        let version: AppVersion = app.parse().map_err(|e| AdminError::bad("app", e))?;
        let grant = parse_capabilities("grant", grant)?;
        let id = format!("{}/{}", version.publisher, version.app);
        if let Some(row) = regions.row(&admin.region, &id).await? {
            return Err(AdminError::Conflict(format!(
                "{id} {} is already installed in region {}: upgrade it (`healthcloud region upgrade --region {} --app {version}`) or uninstall it first",
                row.version, admin.region, admin.region
            )));
        }
        let offered = self.offered(&version).await?;
        check_requested("grant", &offered.manifest, &grant)?;
        check_destinations("grant", &grant, allow_internal_addresses)?;
        let install = self
            .prepare_offered(
                &admin.region,
                &offered,
                Grant::new(grant.clone()).allowing_internal_addresses(allow_internal_addresses),
            )
            .await?;
        let db = regions.db();
        let now = now();
        let mut write = db.begin_write().await?;
        not_revoked_meanwhile(regions, &version)?;
        let mut insert = db.sql(
            "INSERT INTO region_installs (region, app, version, sha256, package, granted, \
             allow_internal_addresses, installed_at, updated_at) VALUES (",
        );
        insert
            .bind(admin.region.as_str())
            .push(", ")
            .bind(id.as_str())
            .push(", ")
            .bind(version.version.to_string())
            .push(", ")
            .bind(offered.signed.package.component.sha256.as_str())
            .push(", ")
            .bind(offered.signed.to_json())
            .push(", ")
            .bind(capabilities_to_json(&grant))
            .push(", ")
            .bind(i64::from(allow_internal_addresses))
            .push(", ")
            .bind(now.as_str())
            .push(", ")
            .bind(now.as_str())
            .push(") ON CONFLICT (region, app) DO NOTHING");
        let inserted = insert
            .query()
            .execute(&mut *write.tx)
            .await?
            .rows_affected();
        if inserted == 0 {
            return Err(AdminError::Conflict(format!(
                "{id} was installed in region {} by someone else just now: list the installs and upgrade if needed",
                admin.region
            )));
        }
        changed(regions, &mut write.tx, action).await?;
        // Committed and served under the sync lock: a sync that read the rows before this
        // commit must not then take the new install for an uninstalled one.
        let serving = regions.syncing.lock().await;
        write.commit().await?;
        match install {
            Some(install) => self.runtime.serve_install(install).await,
            None => self.runtime.refresh_smart_clients(regions).await?,
        }
        drop(serving);
        self.show(admin, &id).await
    }

    /// Grants (`grant = true`) or revokes one capability; the change applies to the next host
    /// call on every node.
    /// An `outbound-http:` destination inside the network is refused: see
    /// [`RegionAdminService::set_grant_allowing`].
    pub async fn set_grant(
        &self,
        admin: &Admin,
        app: &str,
        capability: &str,
        grant: bool,
    ) -> Result<InstallView, AdminError> {
        self.set_grant_allowing(admin, app, capability, grant, false)
            .await
    }

    /// [`RegionAdminService::set_grant`], where `allow_internal_addresses` (with a grant) is the
    /// admin's explicit allowance for an `outbound-http:` destination inside the network,
    /// needed for each such grant. The audit record says so.
    pub async fn set_grant_allowing(
        &self,
        admin: &Admin,
        app: &str,
        capability: &str,
        grant: bool,
        allow_internal_addresses: bool,
    ) -> Result<InstallView, AdminError> {
        let allow_internal_addresses = grant && allow_internal_addresses;
        let action = Action {
            admin,
            name: if grant { "grant" } else { "revoke" },
            app: Some(app),
            detail: allowing(capability.to_owned(), allow_internal_addresses),
        };
        let result = self
            .set_grant_inner(&action, app, capability, grant, allow_internal_addresses)
            .await;
        audit::audit_refusal(self.runtime.regions(), &action, &result).await;
        result
    }

    async fn set_grant_inner(
        &self,
        action: &Action<'_>,
        app: &str,
        capability: &str,
        grant: bool,
        allow_internal_addresses: bool,
    ) -> Result<InstallView, AdminError> {
        let admin = action.admin;
        let regions = self.regions()?;
        let capability = Capability::parse(capability).map_err(|e| AdminError::Unprocessable {
            message: e.to_string(),
            field: Some("capability".into()),
        })?;
        let db = regions.db();
        let mut write = db.begin_write().await?;
        let row = locked_row(regions, &mut write.tx, admin, app).await?;
        let mut granted = row.granted.clone();
        if grant {
            let manifest = SignedPackage::from_json(row.package.as_bytes())
                .map_err(|e| anyhow::anyhow!("a stored package: {e}"))?
                .package
                .manifest();
            check_requested("capability", &manifest, std::slice::from_ref(&capability))?;
            // Each internal destination is allowed explicitly, whatever was allowed before.
            check_destinations(
                "capability",
                std::slice::from_ref(&capability),
                allow_internal_addresses,
            )?;
            if !granted.contains(&capability) {
                granted.push(capability);
            }
        } else if granted.contains(&capability) {
            granted.retain(|c| c != &capability);
        } else {
            let now: Vec<String> = granted.iter().map(ToString::to_string).collect();
            return Err(AdminError::Conflict(format!(
                "'{capability}' is not granted to {app} in region {}, so there is nothing to revoke; granted now: {}",
                admin.region,
                if now.is_empty() {
                    "nothing".to_owned()
                } else {
                    now.join(", ")
                }
            )));
        }
        let allowed = row.allow_internal_addresses || allow_internal_addresses;
        if granted != row.granted || allowed != row.allow_internal_addresses {
            let mut update = db.sql("UPDATE region_installs SET granted = ");
            update
                .bind(capabilities_to_json(&granted))
                .push(", allow_internal_addresses = ")
                .bind(i64::from(allowed))
                .push(", updated_at = ")
                .bind(now())
                .push(" WHERE region = ")
                .bind(admin.region.as_str())
                .push(" AND app = ")
                .bind(app);
            update.query().execute(&mut *write.tx).await?;
            changed(regions, &mut write.tx, action).await?;
        }
        write.commit().await?;
        if let Some(install) = self.runtime.installed(&admin.region, app)
            && install.identity.version == row.version
        {
            install.grant.set_internal_addresses(allowed);
            install.grant.replace(granted);
        }
        // Under the sync lock: a sync that read the rows before this change must not undo it.
        let _serving = regions.syncing.lock().await;
        self.runtime.refresh_smart_clients(regions).await?;
        self.show(admin, app).await
    }

    /// Uninstalls: the next request is a 404 on every node, in-flight ones are interrupted,
    /// and the install's kv state is deleted.
    pub async fn uninstall(&self, admin: &Admin, app: &str) -> Result<(), AdminError> {
        let action = Action {
            admin,
            name: "uninstall",
            app: Some(app),
            detail: String::new(),
        };
        let result = self.uninstall_inner(&action, app).await;
        audit::audit_refusal(self.runtime.regions(), &action, &result).await;
        result
    }

    async fn uninstall_inner(&self, action: &Action<'_>, app: &str) -> Result<(), AdminError> {
        let admin = action.admin;
        let regions = self.regions()?;
        let db = regions.db();
        let mut write = db.begin_write().await?;
        locked_row(regions, &mut write.tx, admin, app).await?;
        for table in ["region_installs", "app_kv"] {
            let mut delete = db.sql(&format!("DELETE FROM {table} WHERE region = "));
            delete
                .bind(admin.region.as_str())
                .push(" AND app = ")
                .bind(app);
            delete.query().execute(&mut *write.tx).await?;
        }
        changed(regions, &mut write.tx, action).await?;
        write.commit().await?;
        self.runtime.uninstall(&admin.region, app);
        let _serving = regions.syncing.lock().await;
        self.runtime.refresh_smart_clients(regions).await?;
        Ok(())
    }

    /// Upgrades to `request.version`. The grant carries over as far as the new version still
    /// requests it. When the new version asks for capabilities the installed one did not, the
    /// installed version keeps serving and the upgrade waits until it is approved
    /// (`approve`, granting any of `grant`).
    pub async fn upgrade(
        &self,
        admin: &Admin,
        app: &str,
        request: &UpgradeRequest,
    ) -> Result<UpgradeView, AdminError> {
        let name = if request.approve {
            "approve"
        } else {
            "upgrade"
        };
        let action = Action {
            admin,
            name,
            app: Some(app),
            detail: allowing(
                with_grant(format!("to {}", request.version), &request.grant),
                request.approve && request.allow_internal_addresses,
            ),
        };
        let result = self.upgrade_inner(&action, app, request).await;
        audit::audit_refusal(self.runtime.regions(), &action, &result).await;
        result
    }

    async fn upgrade_inner(
        &self,
        action: &Action<'_>,
        app: &str,
        request: &UpgradeRequest,
    ) -> Result<UpgradeView, AdminError> {
        let admin = action.admin;
        let regions = self.regions()?;
        let current = self.existing(regions, admin, app).await?;
        let version: AppVersion = format!("{app}@{}", request.version)
            .parse()
            .map_err(|e| AdminError::bad("version", e))?;
        let installed: semver::Version = current
            .version
            .parse()
            .map_err(|e| anyhow::anyhow!("a stored version: {e}"))?;
        if version.version <= installed {
            return Err(AdminError::Conflict(format!(
                "{} is not newer than the installed {installed}: an upgrade goes to a later version",
                version.version
            )));
        }
        let extra = parse_capabilities("grant", &request.grant)?;
        if !request.approve && !extra.is_empty() {
            return Err(AdminError::bad(
                "grant",
                "granting capabilities with an upgrade is part of approving it: add approve".into(),
            ));
        }
        let offered = self.offered(&version).await?;
        check_requested("grant", &offered.manifest, &extra)?;
        let old_package = SignedPackage::from_json(current.package.as_bytes())
            .map_err(|e| anyhow::anyhow!("a stored package: {e}"))?
            .package;
        // A SMART web app whose registration (URLs, keys) changes waits for approval too:
        // where its codes go and who may act as it are the region's to accept.
        let registration_changed = old_package.smart != offered.signed.package.smart;
        let old = old_package.manifest().capabilities();
        let new = offered.manifest.capabilities();
        let added: Vec<Capability> = new.iter().filter(|c| !old.contains(c)).cloned().collect();
        // What the region grants now, as far as the new version requests it, and what the
        // approval adds.
        let carried = |granted_now: &[Capability]| {
            let mut granted: Vec<Capability> = granted_now
                .iter()
                .filter(|c| new.contains(c))
                .cloned()
                .collect();
            for capability in &extra {
                if !granted.contains(capability) {
                    granted.push(capability.clone());
                }
            }
            granted
        };
        let waits = (!added.is_empty() || registration_changed) && !request.approve;
        // What the approval adds needs its own allowance; what carries over had it.
        check_destinations(
            "grant",
            &extra,
            request.approve && request.allow_internal_addresses,
        )?;
        let allowed = current.allow_internal_addresses
            || (request.approve && request.allow_internal_addresses);
        // Validated and compiled either way: a broken version is refused now, not on approval.
        let install = self
            .prepare_offered(
                &admin.region,
                &offered,
                Grant::new(carried(&current.granted)).allowing_internal_addresses(allowed),
            )
            .await?;
        let db = regions.db();
        let mut write = db.begin_write().await?;
        let row = locked_row(regions, &mut write.tx, admin, app).await?;
        not_revoked_meanwhile(regions, &version)?;
        if row.version != current.version {
            return Err(AdminError::Conflict(format!(
                "{app} changed to {} while upgrading: list the install and try again",
                row.version
            )));
        }
        // From the locked row: a grant removed while this compiled stays removed.
        let granted = carried(&row.granted);
        let allowed = allowed || row.allow_internal_addresses;
        if let Some(install) = &install {
            install.grant.replace(granted.clone());
            install.grant.set_internal_addresses(allowed);
        }
        let sha256 = offered.signed.package.component.sha256.as_str();
        let package = offered.signed.to_json();
        let mut update = db.sql("UPDATE region_installs SET ");
        if waits {
            update
                .push("pending_version = ")
                .bind(version.version.to_string())
                .push(", pending_sha256 = ")
                .bind(sha256)
                .push(", pending_package = ")
                .bind(package)
                .push(", pending_added = ")
                .bind(capabilities_to_json(&added));
        } else {
            update
                .push("version = ")
                .bind(version.version.to_string())
                .push(", sha256 = ")
                .bind(sha256)
                .push(", package = ")
                .bind(package)
                .push(", granted = ")
                .bind(capabilities_to_json(&granted))
                .push(", allow_internal_addresses = ")
                .bind(i64::from(allowed))
                .push(", pending_version = NULL, pending_sha256 = NULL, pending_package = NULL, pending_added = NULL");
        }
        update
            .push(", updated_at = ")
            .bind(now())
            .push(" WHERE region = ")
            .bind(admin.region.as_str())
            .push(" AND app = ")
            .bind(app);
        update.query().execute(&mut *write.tx).await?;
        changed(regions, &mut write.tx, action).await?;
        let serving = regions.syncing.lock().await;
        write.commit().await?;
        match install {
            Some(install) if !waits => self.runtime.serve_install(install).await,
            _ => self.runtime.refresh_smart_clients(regions).await?,
        }
        drop(serving);
        Ok(UpgradeView {
            status: if waits { "pending" } else { "upgraded" }.into(),
            install: self.show(admin, app).await?,
        })
    }

    /// Declines a pending upgrade: the installed version keeps serving and the pending one is
    /// forgotten.
    pub async fn decline_upgrade(
        &self,
        admin: &Admin,
        app: &str,
    ) -> Result<InstallView, AdminError> {
        let action = Action {
            admin,
            name: "decline",
            app: Some(app),
            detail: String::new(),
        };
        let result = self.decline_inner(&action, app).await;
        audit::audit_refusal(self.runtime.regions(), &action, &result).await;
        result
    }

    async fn decline_inner(
        &self,
        action: &Action<'_>,
        app: &str,
    ) -> Result<InstallView, AdminError> {
        let admin = action.admin;
        let regions = self.regions()?;
        let db = regions.db();
        let mut write = db.begin_write().await?;
        let row = locked_row(regions, &mut write.tx, admin, app).await?;
        let Some(pending) = row.pending else {
            return Err(AdminError::Conflict(format!(
                "{app} has no upgrade waiting for approval in region {}",
                admin.region
            )));
        };
        let mut update = db.sql(
            "UPDATE region_installs SET pending_version = NULL, pending_sha256 = NULL, \
             pending_package = NULL, pending_added = NULL, updated_at = ",
        );
        update
            .bind(now())
            .push(" WHERE region = ")
            .bind(admin.region.as_str())
            .push(" AND app = ")
            .bind(app);
        update.query().execute(&mut *write.tx).await?;
        changed(regions, &mut write.tx, action).await?;
        write.commit().await?;
        tracing::info!(
            region = admin.region,
            app,
            declined = pending.version,
            "upgrade declined"
        );
        self.show(admin, app).await
    }
}

/// The caller, who must be a region admin of `region`.
fn region_admin_of(principal: &Principal, region: &str) -> Result<Admin, AdminError> {
    let claims = &principal.claims;
    if claims.role != Role::RegionAdmin {
        return Err(AdminError::Forbidden(format!(
            "this needs a region-admin token for region {region}; yours is for role {} (mint one with `healthcloud token --role region-admin --region {region}`)",
            claims.role.as_str()
        )));
    }
    match &claims.region {
        Some(home) if home == region => Ok(Admin::system(&claims.sub, region)),
        Some(home) => Err(AdminError::Forbidden(format!(
            "your token administers region {home}, not {region}: use a region-admin token of {region} (mint one with `healthcloud token --role region-admin --region {region}`)"
        ))),
        None => Err(AdminError::Forbidden(format!(
            "a region admin's token must name its region (mint one with `healthcloud token --role region-admin --region {region}`)"
        ))),
    }
}

/// A version the store offers for install: the signed package, the manifest it signs, and
/// the store's verdicts checked.
struct Offered {
    signed: SignedPackage,
    manifest: Manifest,
}

fn parse_capabilities(field: &str, names: &[String]) -> Result<Vec<Capability>, AdminError> {
    names
        .iter()
        .map(|name| {
            Capability::parse(name).map_err(|e| AdminError::Unprocessable {
                message: e.to_string(),
                field: Some(field.into()),
            })
        })
        .collect()
}

/// Refuses capabilities `manifest` does not request, naming every one.
fn check_requested(
    field: &str,
    manifest: &Manifest,
    grant: &[Capability],
) -> Result<(), AdminError> {
    let requested = manifest.capabilities();
    let extra: Vec<String> = grant
        .iter()
        .filter(|c| !requested.contains(c))
        .map(|c| format!("'{c}'"))
        .collect();
    if extra.is_empty() {
        return Ok(());
    }
    let asked: Vec<String> = requested.iter().map(ToString::to_string).collect();
    Err(AdminError::Unprocessable {
        message: format!(
            "{} {} not requested by {} {}; a region grants a subset of what the app requests: {}",
            extra.join(", "),
            if extra.len() == 1 { "is" } else { "are" },
            manifest.full_id(),
            manifest.app.version,
            if asked.is_empty() {
                "nothing".to_owned()
            } else {
                asked.join(", ")
            }
        ),
        field: Some(field.into()),
    })
}

fn store_error(version: &AppVersion, error: ClientError) -> AdminError {
    match error.status() {
        Some(StatusCode::NOT_FOUND) => AdminError::NotFound(format!(
            "the store has no {version}: check the id and version in the catalog"
        )),
        Some(StatusCode::GONE) => AdminError::Gone(format!("the store revoked {version}")),
        _ => AdminError::Store(format!("cannot ask the store about {version}: {error}")),
    }
}

/// Refuses a version the feed revoked while it was being prepared.
fn not_revoked_meanwhile(regions: &Regions, version: &AppVersion) -> Result<(), AdminError> {
    let id = format!("{}/{}", version.publisher, version.app);
    match regions.revocation(&id, &version.version.to_string()) {
        Some(revoked) => Err(AdminError::Gone(format!(
            "{version} was revoked by the store at {} while it was being installed: {}",
            revoked.at, revoked.reason
        ))),
        None => Ok(()),
    }
}

/// The install row of `app` in the admin's region, locked for update on PostgreSQL (SQLite
/// writers are serialised already).
async fn locked_row(
    regions: &Regions,
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    admin: &Admin,
    app: &str,
) -> Result<InstallRow, AdminError> {
    let db = regions.db();
    let mut select = db.sql(&format!(
        "SELECT {} FROM region_installs WHERE region = ",
        crate::regions::INSTALL_COLUMNS
    ));
    select
        .bind(admin.region.as_str())
        .push(" AND app = ")
        .bind(app);
    if db.backend() == healthcloud_platform::db::Backend::Postgres {
        select.push(" FOR UPDATE");
    }
    let row = select.query().fetch_optional(&mut **tx).await?;
    match row {
        Some(row) => Ok(crate::regions::install_row(&row)?),
        None => Err(AdminError::NotFound(format!(
            "no app {app} is installed in region {}: `healthcloud region list --region {}` shows what is",
            admin.region, admin.region
        ))),
    }
}

/// Marks the installs changed, for every node, and records `action` as allowed: in the
/// transaction of the change, so no change commits without its audit record.
async fn changed(
    regions: &Regions,
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    action: &Action<'_>,
) -> Result<(), AdminError> {
    sqlx::query("UPDATE region_changes SET seq = seq + 1 WHERE id = 1")
        .execute(&mut **tx)
        .await?;
    regions.db().notify(tx, crate::regions::CHANNEL).await?;
    audited(regions, tx, action, "allowed").await?;
    Ok(())
}

/// Refuses `outbound-http:` destinations inside the network without the admin's allowance.
fn check_destinations(
    field: &str,
    grant: &[Capability],
    allow_internal_addresses: bool,
) -> Result<(), AdminError> {
    crate::install::check_destinations(grant, allow_internal_addresses).map_err(|e| {
        AdminError::Unprocessable {
            message: e.to_string(),
            field: Some(field.into()),
        }
    })
}

//! SMART web apps a region installed. The app cloud does not run them: their vendors serve
//! them, and they reach data through the FHIR API with tokens of healthcloud's authorization
//! server. A region's install of one is its client registration there: each node keeps the
//! registrations ([`Clients`]) in line with `region_installs` as it syncs, so an uninstall, a
//! narrower grant or the store's revocation of the version ends the app's tokens at once.

use std::collections::HashSet;
use std::time::Duration;

use healthcloud_package::manifest::{Audience, Capability};
use healthcloud_package::package::SignedPackage;
use healthcloud_platform::auth::Role;
use healthcloud_platform::auth::smart::{Client, Clients};
use healthcloud_platform::db::Database;

use super::{InstallRow, Regions};
use crate::Runtime;

/// The client id of `app` (`publisher/app`) installed in `region`: `publisher.app@region`.
pub fn client_id(region: &str, app: &str) -> String {
    format!("{}@{region}", app.replace('/', "."))
}

/// The registration an install row of a SMART web app stands for (`None` for a hosted app).
pub(crate) fn client_of(row: &InstallRow) -> anyhow::Result<Option<Client>> {
    let signed = SignedPackage::from_json(row.package.as_bytes())?;
    let Some(smart) = &signed.package.smart else {
        return Ok(None);
    };
    let manifest = signed.package.manifest();
    let requested = manifest
        .requested
        .iter()
        .filter_map(|requested| match Capability::parse(&requested.name) {
            Ok(Capability::Data(scope)) => Some((scope, requested.justification.clone())),
            _ => None,
        })
        .collect();
    let grant = row
        .granted
        .iter()
        .filter_map(|capability| match capability {
            Capability::Data(scope) => Some(scope.clone()),
            _ => None,
        })
        .collect();
    Ok(Some(Client {
        client_id: client_id(&row.region, &row.app),
        name: signed.package.app.name.clone(),
        app: row.app.clone(),
        version: row.version.clone(),
        installed_at: row.installed_at.clone(),
        changed_at: chrono::DateTime::parse_from_rfc3339(&row.updated_at)
            .map(|at| at.timestamp())
            .unwrap_or(i64::MAX),
        digest: row.sha256.clone(),
        publisher_key: signed.signature.key_id.to_string(),
        region: row.region.clone(),
        audience: manifest
            .app
            .audience
            .iter()
            .map(|audience| match audience {
                Audience::Clinician => Role::Clinician,
                Audience::Patient => Role::Patient,
                Audience::Citizen => Role::Citizen,
            })
            .collect(),
        redirect_uris: smart.redirect_uris.clone(),
        launch_url: smart.launch_url.clone(),
        origins: smart.origins(),
        requested,
        grant,
        purpose: row.granted.iter().find_map(|capability| match capability {
            Capability::Purpose(purpose) => Some(*purpose),
            _ => None,
        }),
        jwks: smart.jwks.clone(),
    }))
}

impl Runtime {
    /// The SMART web apps the regions installed, as the authorization server and the FHIR API
    /// see them (shared: the composition hands the same registry to both).
    pub fn smart_clients(&self) -> &Clients {
        &self.inner.smart
    }

    /// Brings the SMART registrations in line with `rows` (every region's installs): each
    /// installed, unrevoked SMART web app registered with its grant now; every other one
    /// removed.
    pub(crate) fn sync_smart_clients(&self, regions: &Regions, rows: &[InstallRow]) {
        for (app, version) in regions.revoked_versions() {
            self.inner.smart.revoke_version(&app, &version);
        }
        register(&self.inner.smart, rows, |app, version| {
            regions.revocation(app, version).is_some()
        });
    }

    /// Reads every region's installs and brings the SMART registrations in line with them.
    pub(crate) async fn refresh_smart_clients(&self, regions: &Regions) -> anyhow::Result<()> {
        let rows = regions.rows(None).await?;
        self.sync_smart_clients(regions, &rows);
        Ok(())
    }
}

/// Registers in `clients` each SMART web app of `rows` whose version is not `revoked`, with
/// its grant now, and removes every other registration.
fn register(clients: &Clients, rows: &[InstallRow], revoked: impl Fn(&str, &str) -> bool) {
    let mut wanted = HashSet::new();
    for row in rows {
        if revoked(&row.app, &row.version) {
            continue;
        }
        match client_of(row) {
            Ok(Some(client)) => {
                wanted.insert(client.client_id.clone());
                let unchanged = clients
                    .get(&client.client_id)
                    .is_some_and(|registered| *registered == client);
                if !unchanged && let Err(error) = clients.register(client) {
                    tracing::error!(
                        region = row.region,
                        app = row.app,
                        error,
                        "a SMART web app's registration is refused"
                    );
                }
            }
            Ok(None) => {}
            Err(error) => {
                tracing::error!(
                    region = row.region,
                    app = row.app,
                    error = format!("{error:#}"),
                    "a stored package does not parse"
                );
            }
        }
    }
    // Asked again after registering: a version the feed revoked meanwhile (it records the
    // revocation, then unregisters) is not left registered by this sync.
    let removed = clients.retain(|client| {
        wanted.contains(&client.client_id) && !revoked(&client.app, &client.version)
    });
    if removed > 0 {
        tracing::info!(removed, "SMART web apps unregistered");
    }
}

/// Keeps `clients` in line with the regions' SMART web app installs in `db`, for a node
/// that runs no app cloud (a FHIR API node with the authorization server): the installs and
/// the revocations the app cloud's nodes recorded, read at once and every `poll`, and every
/// app's tokens suspended while the feed's validity they recorded is missing or past.
pub async fn follow(db: Database, clients: Clients, poll: Duration) -> anyhow::Result<()> {
    crate::migrate(&db).await?;
    read_into(&db, &clients).await?;
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(poll).await;
            if let Err(error) = read_into(&db, &clients).await {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "SMART web app installs not read"
                );
            }
        }
    });
    Ok(())
}

async fn read_into(db: &Database, clients: &Clients) -> anyhow::Result<()> {
    // Fail closed with the app cloud when the feed is not known to be fresh.
    clients.suspend(super::feed::shared_staleness(db).await?);
    let rows = super::install_rows(db, None).await?;
    let revoked: HashSet<(String, String)> =
        sqlx::query("SELECT app, version FROM runtime_revocations")
            .fetch_all(db.pool())
            .await?
            .iter()
            .map(|row| (sqlx::Row::get(row, 0), sqlx::Row::get(row, 1)))
            .collect();
    for (app, version) in &revoked {
        clients.revoke_version(app, version);
    }
    register(clients, &rows, |app, version| {
        revoked.contains(&(app.to_owned(), version.to_owned()))
    });
    Ok(())
}

/// Whether an install row is of a SMART web app (not loaded into the app cloud).
pub(crate) fn is_smart(row: &InstallRow) -> bool {
    SignedPackage::from_json(row.package.as_bytes())
        .is_ok_and(|signed| signed.package.smart.is_some())
}

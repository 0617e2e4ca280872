//! The demo world's other sectors: a GP system and a municipal care record, each a healthcloud
//! integration node with its own database in the data directory, serving its FHIR API on a
//! loopback port of this process, and registered as a source of the region's node. The
//! region's node reads through them as it would through any organization's FHIR server: over
//! HTTP, with a token the sector's node issued, patients matched by CPR number.

use std::path::{Path, PathBuf};

use healthcloud_integration::sources::SourceSettings;
use healthcloud_integration::upstream::{UpstreamAuth, UpstreamConfig};
use healthcloud_integration::{FhirService, Integration};
use healthcloud_platform::auth::{Role, TokenRequest};

use crate::server;

/// How long the token a sector's node issues to the region's node lasts; a fresh one is
/// issued on every start.
const SOURCE_TOKEN_TTL_SECS: i64 = 366 * 24 * 3600;

/// A sector of the demo world.
#[derive(Debug, Clone, Copy)]
pub struct Sector {
    /// Its name as a source (`meta.source` is `urn:healthcloud:source:<name>`).
    pub name: &'static str,
    /// The organization that owns it.
    pub organization: &'static str,
    /// What it is, for people.
    pub description: &'static str,
}

/// The GP system: GP visits and their measurements and laboratory reports, diagnoses,
/// prescriptions.
pub const GP: Sector = Sector {
    name: "gp",
    organization: "Organization/gp-system",
    description: "GP system",
};

/// The municipal care record: home nursing visits and what the nurse measured.
pub const MUNICIPALITY: Sector = Sector {
    name: "municipality",
    organization: "Organization/municipal-care",
    description: "municipal care record",
};

/// A sector's node, serving.
#[derive(Debug)]
pub struct SectorNode {
    /// Which sector.
    pub sector: Sector,
    /// Its integration cloud, on its own database.
    pub integration: Integration,
    /// Its FHIR base URL on loopback.
    pub fhir_base: String,
    dir: PathBuf,
}

/// The demo world's sector nodes.
#[derive(Debug)]
pub struct DemoSectors {
    /// The GP system.
    pub gp: SectorNode,
    /// The municipal care record.
    pub municipality: SectorNode,
}

impl DemoSectors {
    /// Both nodes.
    pub fn nodes(&self) -> [&SectorNode; 2] {
        [&self.gp, &self.municipality]
    }
}

/// Opens each sector's node on its own SQLite database in `data_dir/sectors/<name>/` (kept
/// across restarts like the region's) and serves its FHIR API on a free loopback port.
pub async fn start(data_dir: &Path) -> anyhow::Result<DemoSectors> {
    Ok(DemoSectors {
        gp: start_node(GP, data_dir).await?,
        municipality: start_node(MUNICIPALITY, data_dir).await?,
    })
}

async fn start_node(sector: Sector, data_dir: &Path) -> anyhow::Result<SectorNode> {
    let dir = data_dir.join("sectors").join(sector.name);
    std::fs::create_dir_all(&dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot create the {} directory {}: {e}",
            sector.description,
            dir.display()
        )
    })?;
    let listener = server::listen("127.0.0.1:0".parse()?).await?;
    let url = format!("http://{}", listener.local_addr()?);
    let database = format!("sqlite://{}", dir.join("healthcloud.db").display());
    let integration = Integration::open(&database, &url, &dir).await?;
    let app = server::app(
        server::Services {
            integration: Some(&integration),
            ..Default::default()
        },
        &server::Ready::now(),
    );
    tokio::spawn(server::serve(listener, app));
    Ok(SectorNode {
        sector,
        fhir_base: format!("{url}/fhir/r4"),
        integration,
        dir,
    })
}

/// Registers each sector's node that holds patients as a source of `service`, with a fresh
/// token its node issued (a clinician of the region, reading every patient's record there);
/// the nodes registered. Empty nodes (a data directory whose records `data generate` made
/// whole, in the region's store) are left out: every patient's search would ask them for
/// nothing.
pub async fn register<'a>(
    service: &FhirService,
    sectors: &'a DemoSectors,
) -> anyhow::Result<Vec<&'a SectorNode>> {
    let mut registered = Vec::new();
    for node in sectors.nodes() {
        let store = node.integration.state.service.store_for_loading();
        if !crate::demo::holds_patients(store).await? {
            continue;
        }
        let token = node
            .integration
            .issuer
            .mint(
                Role::Clinician,
                TokenRequest {
                    sub: Some("healthcloud-region".into()),
                    org: Some(
                        node.sector
                            .organization
                            .trim_start_matches("Organization/")
                            .into(),
                    ),
                    ttl_secs: Some(SOURCE_TOKEN_TTL_SECS),
                    ..Default::default()
                },
            )
            .map_err(anyhow::Error::msg)?;
        let token_file = node.dir.join("region-token");
        write_private(&token_file, &token)?;
        let mut upstream = UpstreamConfig::new(node.sector.name, node.fhir_base.parse()?);
        upstream.auth = UpstreamAuth::BearerFile(token_file);
        service.sources().add(SourceSettings {
            upstream,
            organization: Some(node.sector.organization.into()),
            types: None,
        })?;
        registered.push(node);
    }
    Ok(registered)
}

/// Writes `text` to `path`, readable by this user only (it is a credential).
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(
        &mut options
            .open(path)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?,
        text.as_bytes(),
    )?;
    Ok(())
}

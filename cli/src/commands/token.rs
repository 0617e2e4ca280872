//! `healthcloud token`: development tokens for demos and tests.

use healthcloud_integration::auth::{Role, TokenIssuer, TokenRequest};

use super::DataDirArgs;

/// Mint a development access token.
#[derive(Debug, clap::Args)]
pub struct TokenCommand {
    #[command(flatten)]
    data: DataDirArgs,
    /// clinician, patient, citizen, region-admin, store-admin or publisher.
    #[arg(long, required_unless_present = "public_key")]
    role: Option<Role>,
    /// Print the development issuer's public key (PEM) instead of a token: other nodes verify
    /// its tokens with `--issuer healthcloud-dev-issuer --issuer-key FILE`.
    #[arg(long, conflicts_with = "role")]
    public_key: bool,
    /// The region the user works in.
    #[arg(long)]
    region: Option<String>,
    /// The patient in context (required for patient and citizen).
    #[arg(long)]
    patient: Option<String>,
    /// Space-separated SMART scopes (default depends on the role).
    #[arg(long)]
    scope: Option<String>,
    /// The user id.
    #[arg(long)]
    sub: Option<String>,
    /// Lifetime in seconds (negative mints an already expired token, for tests).
    #[arg(long, default_value_t = 3600, allow_negative_numbers = true)]
    ttl: i64,
    /// The organization the user acts for (an Organization id, for consent).
    #[arg(long)]
    org: Option<String>,
    /// The user's FHIR resource, e.g. Practitioner/123.
    #[arg(long)]
    fhir_user: Option<String>,
}

impl TokenCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let issuer = TokenIssuer::dev(&self.data.data_dir)?;
        let Some(role) = self.role else {
            print!("{}", issuer.public_pem());
            return Ok(());
        };
        let token = issuer
            .mint(
                role,
                TokenRequest {
                    sub: self.sub,
                    scope: self.scope,
                    patient: self.patient,
                    region: self.region,
                    fhir_user: self.fhir_user,
                    org: self.org,
                    ttl_secs: Some(self.ttl),
                },
            )
            .map_err(anyhow::Error::msg)?;
        println!("{token}");
        Ok(())
    }
}

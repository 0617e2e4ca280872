//! `healthcloud token`: development tokens for demos and tests.

use healthcloud_platform::auth::{Role, TokenIssuer, TokenRequest, apps_audience, fhir_audience};

use super::DataDirArgs;

/// Mint a development access token.
#[derive(Debug, clap::Args)]
pub struct TokenCommand {
    #[command(flatten)]
    data: DataDirArgs,
    /// clinician, patient, citizen, region-admin, store-admin, publisher, security-officer or
    /// platform-operator.
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
    /// The user's FHIR resource, e.g. Practitioner/123 (a clinician's or security officer's
    /// defaults to Practitioner/<sub> when neither it nor --org is given: consent opt-outs
    /// name the actor, so workforce tokens always carry one).
    #[arg(long)]
    fhir_user: Option<String>,
    /// With --fhir-user PractitionerRole/<id>: the practitioner of that role (a Practitioner
    /// id); the role's organization goes in --org.
    #[arg(long)]
    practitioner: Option<String>,
    /// The server the token is for: it names that server's FHIR API (<url>/fhir/r4) and app
    /// cloud (<url>/apps/) as its audience.
    #[arg(
        long,
        env = "HEALTHCLOUD_PUBLIC_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    public_url: String,
    /// The token's audience instead (repeatable): a FHIR base URL, an app cloud's
    /// <url>/apps/ or one app's <url>/apps/<region>/<publisher>/<app>/.
    #[arg(long = "audience")]
    audience: Vec<String>,
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
                    practitioner: self.practitioner,
                    audience: if self.audience.is_empty() {
                        vec![
                            fhir_audience(&self.public_url),
                            apps_audience(&self.public_url),
                        ]
                    } else {
                        self.audience
                    },
                    ttl_secs: Some(self.ttl),
                },
            )
            .map_err(anyhow::Error::msg)?;
        println!("{token}");
        Ok(())
    }
}

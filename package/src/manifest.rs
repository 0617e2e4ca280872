//! The app manifest, `healthcloud.toml`: identity, audience and requested capabilities.

use std::fmt;

use healthcloud_platform::scope::{Purpose, Scope};

use crate::address::{Internal, internal_host};
use serde::{Deserialize, Serialize};

/// The manifest's file name in an app's directory.
pub const MANIFEST_FILE: &str = "healthcloud.toml";

/// An app's manifest, as its vendor wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Who the app is.
    pub app: AppInfo,
    /// What it asks for, each with a reason.
    #[serde(rename = "capability", default)]
    pub requested: Vec<RequestedCapability>,
    /// For a SMART web app (served by its vendor, launched with SMART App Launch) instead of a
    /// hosted WebAssembly app: where it is launched and where its authorizations return.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smart: Option<SmartWebApp>,
}

/// The `[smart]` table of a SMART web app: its OAuth client registration, which a region's
/// install makes in that region. What it may ask for is its `[[capability]]` data scopes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmartWebApp {
    /// Where an EHR launches it (`?iss=…&launch=…` appended). A backend service (no user,
    /// `system/` scopes) has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_url: Option<String>,
    /// Where its authorizations may return, each exactly as it will send it (none for a
    /// backend service).
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// For a confidential client: the public keys (a JWK set, RS384 or ES384, each with a
    /// `kid`) whose private halves sign its client assertions (SMART's asymmetric client
    /// authentication, `private_key_jwt`). Without them it is a public client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
}

impl SmartWebApp {
    /// The registration document that stands for a SMART web app's component: its `[smart]`
    /// table as canonical JSON (RFC 8785), so the package's signed digest covers it.
    pub fn document(&self) -> Vec<u8> {
        serde_json_canonicalizer::to_vec(self).expect("a registration serializes")
    }

    /// The web origins of its pages (`scheme://host[:port]`), which the FHIR API answers
    /// with CORS while it is installed.
    pub fn origins(&self) -> Vec<String> {
        let mut origins: Vec<String> = self
            .launch_url
            .iter()
            .chain(&self.redirect_uris)
            .filter_map(|url| url::Url::parse(url).ok())
            .map(|url| url.origin().ascii_serialization())
            .collect();
        origins.sort();
        origins.dedup();
        origins
    }
}

/// The `[app]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppInfo {
    /// The publisher's id, e.g. `examples`: the namespace the app id lives in.
    pub publisher: String,
    /// The app's id within its publisher, e.g. `bp-monitor`.
    pub id: String,
    /// Its version; versions only go up.
    pub version: semver::Version,
    /// Its display name.
    pub name: String,
    /// What it does, for the catalog.
    pub description: String,
    /// Who it is for.
    pub audience: Vec<Audience>,
    /// A path to its icon, relative to the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
}

impl AppInfo {
    /// `publisher/id`, e.g. `examples/bp-monitor`.
    pub fn full_id(&self) -> String {
        format!("{}/{}", self.publisher, self.id)
    }
}

/// Who an app is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Audience {
    /// Health professionals.
    Clinician,
    /// Patients, about their own care.
    Patient,
    /// Citizens.
    Citizen,
}

/// One requested capability with the vendor's justification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestedCapability {
    /// The capability, e.g. `patient/Observation.rs` or `kv`.
    pub name: String,
    /// Why the app needs it, in plain language for a region admin.
    pub justification: String,
}

/// A capability an app may request and a region may grant.
#[derive(Debug, Clone, PartialEq)]
pub enum Capability {
    /// FHIR data, as a SMART v2 scope (`patient/Observation.rs?category=vital-signs`).
    Data(Scope),
    /// App-private key-value state about the patient in context: one partition per patient,
    /// reachable only from launches for that patient, under their consent and audited.
    Kv,
    /// App-private key-value state shared by every launch of the install that has no patient
    /// in context (settings, caches): never about a patient.
    KvInstall,
    /// Log lines to the host log.
    Log,
    /// Outgoing HTTP to one host (`outbound-http:api.example.org`, optionally with `:port`).
    OutboundHttp(String),
    /// A backend service's purpose of use (`purpose:research`, `purpose:quality`,
    /// `purpose:treatment`): what it may export data for, in its audit records, and what
    /// patients' consents may opt out of.
    Purpose(Purpose),
}

/// A capability string that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{capability}' is not a capability: {reason}")]
pub struct CapabilityError {
    /// The text given.
    pub capability: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Capability {
    /// Parses `kv`, `kv-install`, `log`, `outbound-http:<host>`, `purpose:<purpose>` or a
    /// SMART v2 data scope.
    pub fn parse(text: &str) -> Result<Capability, CapabilityError> {
        let error = |reason: String| CapabilityError {
            capability: text.to_owned(),
            reason,
        };
        match text {
            "kv" => return Ok(Capability::Kv),
            "kv-install" => return Ok(Capability::KvInstall),
            "log" => return Ok(Capability::Log),
            _ => {}
        }
        if let Some(name) = text.strip_prefix("purpose:") {
            return Purpose::from_name(name)
                .map(Capability::Purpose)
                .ok_or_else(|| {
                    error("expected purpose:research, purpose:quality or purpose:treatment".into())
                });
        }
        if let Some(host) = text.strip_prefix("outbound-http:") {
            // An IPv6 literal must be bracketed, or its last group would read as a port.
            let bracketed_or_one_colon = host.starts_with('[') || host.matches(':').count() <= 1;
            let valid = !host.is_empty()
                && bracketed_or_one_colon
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
            if !valid {
                return Err(error(
                    "expected outbound-http:<host> or outbound-http:<host>:<port>".into(),
                ));
            }
            let host = host.to_ascii_lowercase();
            if let Some(address) = crate::address::disguised_ipv4(split_port(&host).0) {
                return Err(error(format!(
                    "'{}' is the IPv4 address {address} in disguise: write it as four decimal numbers, outbound-http:{address}",
                    split_port(&host).0
                )));
            }
            return Ok(Capability::OutboundHttp(host));
        }
        match Scope::parse(text) {
            Ok(Some(scope)) => Ok(Capability::Data(scope)),
            Ok(None) => Err(error("this SMART scope grants no data".into())),
            Err(scope_error) => Err(error(format!(
                "{}; capabilities are kv, kv-install, log, outbound-http:<host>, purpose:<purpose> or SMART v2 scopes like patient/Observation.rs",
                scope_error.reason
            ))),
        }
    }
}

/// `host` and `port` of `host[:port]` (IPv6 in brackets, returned without them).
fn split_port(authority: &str) -> (&str, Option<&str>) {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        match rest.split_once(']') {
            Some((host, after)) => (host, after.strip_prefix(':')),
            None => (rest, None),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    (host, port)
}

impl Capability {
    /// For `outbound-http:<host>` whose host is inside a network (a loopback, private,
    /// link-local, shared, unique-local or metadata address, or a local name): the host and
    /// why. A region installs such a capability only when its admin allows internal addresses.
    pub fn internal_destination(&self) -> Option<(&str, Internal)> {
        match self {
            Capability::OutboundHttp(authority) => {
                let host = split_port(authority).0;
                internal_host(host).map(|why| (host, why))
            }
            _ => None,
        }
    }

    /// What the capability lets an app do, in plain language for the catalog and for region
    /// admins deciding on a grant.
    pub fn explain(&self) -> String {
        use healthcloud_platform::scope::{Interaction, ScopeContext};
        match self {
            Capability::Data(scope) => {
                let what = scope.resource_type.as_deref().unwrap_or("*");
                let verbs: Vec<&str> = [
                    (Interaction::Read, "read"),
                    (Interaction::Search, "search"),
                    (Interaction::Create, "add"),
                    (Interaction::Update, "change"),
                    (Interaction::Delete, "delete"),
                ]
                .iter()
                .filter(|(interaction, _)| scope.allows(*interaction, what))
                .map(|(_, verb)| *verb)
                .collect();
                let verbs = match verbs.as_slice() {
                    [] => "use".to_owned(),
                    [one] => (*one).to_owned(),
                    [init @ .., last] => format!("{} and {last}", init.join(", ")),
                };
                let mut verbs = verbs;
                verbs[..1].make_ascii_uppercase();
                let records = match &scope.resource_type {
                    Some(kind) => format!("{kind} records"),
                    // As `Scope::allows` enforces it.
                    None => "records of every kind but access logs and consents".to_owned(),
                };
                let whose = match scope.context {
                    ScopeContext::Patient => format!("the patient's {records}"),
                    ScopeContext::User => {
                        format!("{records} of any patient the signed-in user may see")
                    }
                    ScopeContext::System => format!("{records} of every patient, without a user"),
                };
                let only = if scope.restriction.is_empty() {
                    String::new()
                } else {
                    let conditions: Vec<String> = scope
                        .restriction
                        .iter()
                        .map(|(name, value)| format!("{name} is {value}"))
                        .collect();
                    format!(" (only where {})", conditions.join(" and "))
                };
                format!("{verbs} {whose}{only}.")
            }
            Capability::Kv => {
                "Keep its own notes about the patient it is opened for (within a size \
                quota): only this app, opened for that same patient, can read them; the patient's \
                consent applies and every read and write is in the patient's log."
                    .into()
            }
            Capability::KvInstall => {
                "Keep data shared by everyone who opens this app in the region \
                without a patient (settings, caches; within a size quota): every user of the app \
                can read it, so it must never hold patient data."
                    .into()
            }
            Capability::Log => "Write log lines that the region's operators can read.".into(),
            Capability::OutboundHttp(host) => match self.internal_destination() {
                Some((_, why)) => format!(
                    "Connect to {host}, an address inside your network ({why}), and so send it data the app can see; installed only if the region admin allows internal addresses."
                ),
                None => format!(
                    "Connect to {host} over the internet, and so send it data the app can see."
                ),
            },
            Capability::Purpose(purpose) => format!(
                "Use the data it is granted for {} (its audit records say so), and export it in bulk for that purpose; patients who opted out of {} are left out.",
                purpose.display(),
                purpose.display()
            ),
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Capability::Data(scope) => write!(f, "{scope}"),
            Capability::Kv => f.write_str("kv"),
            Capability::KvInstall => f.write_str("kv-install"),
            Capability::Log => f.write_str("log"),
            Capability::OutboundHttp(host) => write!(f, "outbound-http:{host}"),
            Capability::Purpose(purpose) => write!(f, "purpose:{purpose}"),
        }
    }
}

/// Why a manifest was refused; `path` names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("manifest: {path}: {message}")]
pub struct ManifestError {
    /// The field, e.g. `capability[1].name`.
    pub path: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl Manifest {
    /// Parses and checks a manifest.
    pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| ManifestError {
            path: e
                .span()
                .map(|span| {
                    let line = text[..span.start.min(text.len())].lines().count().max(1);
                    format!("line {line}")
                })
                .unwrap_or_else(|| "(document)".into()),
            message: e.message().to_owned(),
        })?;
        manifest.check()?;
        Ok(manifest)
    }

    pub(crate) fn check(&self) -> Result<(), ManifestError> {
        let error = |path: &str, message: String| ManifestError {
            path: path.to_owned(),
            message,
        };
        check_name("app.publisher", &self.app.publisher)?;
        check_name("app.id", &self.app.id)?;
        if !self.app.version.build.is_empty() {
            return Err(error(
                "app.version",
                format!(
                    "'{}' carries build metadata, which SemVer ignores when comparing versions: use a version without '+…' (a pre-release like 1.0.0-rc.1 is fine)",
                    self.app.version
                ),
            ));
        }
        if let Some(icon) = &self.app.icon {
            let safe = !icon.is_empty()
                && icon.len() <= 200
                && !icon.starts_with('/')
                && icon
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '-' | '_'))
                && icon.split('/').all(|part| !part.is_empty() && part != "..");
            if !safe {
                return Err(error(
                    "app.icon",
                    format!(
                        "'{icon}' is not a relative path inside the app's folder (a-z, 0-9, '/', '.', '-', '_'; no '..')"
                    ),
                ));
            }
        }
        if self.app.name.trim().is_empty() {
            return Err(error("app.name", "must not be empty".into()));
        }
        if self.app.audience.is_empty() {
            return Err(error(
                "app.audience",
                "name at least one of clinician, patient, citizen".into(),
            ));
        }
        if let Some(smart) = &self.smart {
            check_smart(smart)?;
        }
        for (index, requested) in self.requested.iter().enumerate() {
            let capability = Capability::parse(&requested.name)
                .map_err(|e| error(&format!("capability[{index}].name"), e.to_string()))?;
            let backend_service = self.smart.as_ref().is_some_and(|s| s.jwks.is_some());
            if matches!(capability, Capability::Purpose(_)) && !backend_service {
                return Err(error(
                    &format!("capability[{index}].name"),
                    format!(
                        "'{}' is for a backend service (a SMART app with keys, [smart.jwks]): an app with users acts for their care",
                        requested.name
                    ),
                ));
            }
            if let Capability::Data(scope) = &capability
                && scope.context == healthcloud_platform::scope::ScopeContext::System
                && !self.requested.iter().any(|other| {
                    matches!(Capability::parse(&other.name), Ok(Capability::Purpose(_)))
                })
            {
                return Err(error(
                    &format!("capability[{index}].name"),
                    format!(
                        "'{}' reaches every patient's data: a backend service asks for the purpose it uses it for too (purpose:research, purpose:quality or purpose:treatment)",
                        requested.name
                    ),
                ));
            }
            if let Some(smart) = &self.smart {
                use healthcloud_platform::scope::ScopeContext;
                match capability {
                    Capability::Data(scope)
                        if scope.context != ScopeContext::System || smart.jwks.is_some() => {}
                    Capability::Purpose(_) => {
                        let other = self.requested[..index].iter().find(|other| {
                            matches!(Capability::parse(&other.name), Ok(Capability::Purpose(_)))
                        });
                        if let Some(other) = other {
                            return Err(error(
                                &format!("capability[{index}].name"),
                                format!(
                                    "a backend service has one purpose of use, and this one already asks for '{}': publish another app for another purpose",
                                    other.name
                                ),
                            ));
                        }
                    }

                    Capability::Data(_) => {
                        return Err(error(
                            &format!("capability[{index}].name"),
                            format!(
                                "'{}' is for a backend service, which authenticates with its keys: add them ([smart.jwks]), or ask for patient/ or user/ scopes",
                                requested.name
                            ),
                        ));
                    }
                    _ => {
                        return Err(error(
                            &format!("capability[{index}].name"),
                            format!(
                                "a SMART web app asks for data scopes only, not '{}': it runs on its vendor's servers, with nothing of the app cloud",
                                requested.name
                            ),
                        ));
                    }
                }
            }
            if requested.justification.trim().is_empty() {
                return Err(error(
                    &format!("capability[{index}].justification"),
                    format!(
                        "say why the app needs '{}': regions read it before granting",
                        requested.name
                    ),
                ));
            }
            if self.requested[..index]
                .iter()
                .any(|other| other.name == requested.name)
            {
                return Err(error(
                    &format!("capability[{index}].name"),
                    format!("'{}' is requested twice", requested.name),
                ));
            }
        }
        Ok(())
    }

    /// `publisher/id`, e.g. `examples/bp-monitor`.
    pub fn full_id(&self) -> String {
        self.app.full_id()
    }

    /// The requested capabilities, parsed.
    pub fn capabilities(&self) -> Vec<Capability> {
        self.requested
            .iter()
            .map(|r| Capability::parse(&r.name).expect("checked when parsed"))
            .collect()
    }
}

/// The `[smart]` table: URLs a browser is sent to, so https (http only on loopback, for
/// development), without a fragment; at least one redirect URI.
fn check_smart(smart: &SmartWebApp) -> Result<(), ManifestError> {
    let check = |path: String, url: &str| {
        let refuse = |why: &str| {
            Err(ManifestError {
                path: path.clone(),
                message: format!("'{url}' {why}"),
            })
        };
        let Ok(parsed) = url::Url::parse(url) else {
            return refuse("is not an absolute URL");
        };
        let loopback = match parsed.host() {
            Some(url::Host::Domain(name)) => name == "localhost",
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        match parsed.scheme() {
            "https" if parsed.host().is_some() => {}
            "http" if loopback => {}
            _ => return refuse("must be https (http only on this machine, for development)"),
        }
        if parsed.fragment().is_some() {
            return refuse("must not have a fragment (#…)");
        }
        Ok(())
    };
    if let Some(launch_url) = &smart.launch_url {
        check("smart.launch_url".into(), launch_url)?;
    }
    // Only a backend service (a confidential client, no user) goes without them.
    if smart.redirect_uris.is_empty() && smart.jwks.is_none() {
        return Err(ManifestError {
            path: "smart.redirect_uris".into(),
            message: "name at least one: where the app's authorizations return (a backend service without users names its keys, [smart.jwks], instead)".into(),
        });
    }
    for (index, uri) in smart.redirect_uris.iter().enumerate() {
        check(format!("smart.redirect_uris[{index}]"), uri)?;
    }
    if let Some(jwks) = &smart.jwks {
        check_jwks(jwks)?;
    }
    Ok(())
}

/// A confidential client's JWK set: public RS384 or ES384 keys, each named.
fn check_jwks(jwks: &serde_json::Value) -> Result<(), ManifestError> {
    let refuse = |path: String, message: &str| {
        Err(ManifestError {
            path,
            message: message.to_owned(),
        })
    };
    let Some(keys) = jwks["keys"].as_array().filter(|keys| !keys.is_empty()) else {
        return refuse(
            "smart.jwks.keys".into(),
            "list the public keys that sign the app's client assertions",
        );
    };
    for (index, key) in keys.iter().enumerate() {
        let path = format!("smart.jwks.keys[{index}]");
        let kind = match key["alg"].as_str() {
            Some("RS384") => "RSA",
            Some("ES384") => "EC",
            _ => return refuse(format!("{path}.alg"), "must be RS384 or ES384"),
        };
        if key["kty"] != kind {
            return refuse(format!("{path}.kty"), "does not match the key's alg");
        }
        if !key["kid"].is_string() {
            return refuse(
                format!("{path}.kid"),
                "name the key: client assertions say which key signed them",
            );
        }
        if key.get("d").is_some() || key.get("p").is_some() {
            return refuse(
                path,
                "holds a private key: publish only the public half, and keep the private one at the vendor",
            );
        }
    }
    Ok(())
}

/// Publisher and app ids: they appear in URLs and file names.
pub fn check_name(path: &str, name: &str) -> Result<(), ManifestError> {
    let valid = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-');
    if valid {
        Ok(())
    } else {
        Err(ManifestError {
            path: path.to_owned(),
            message: format!(
                "'{name}' must be 1-64 characters of a-z, 0-9 and '-', not starting with '-'"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = r#"
        [app]
        publisher = "examples"
        id = "bp-monitor"
        version = "1.2.3"
        name = "BP"
        description = "d"
        audience = ["clinician", "patient"]

        [[capability]]
        name = "patient/Observation.rs"
        justification = "reads readings"

        [[capability]]
        name = "outbound-http:api.example.org"
        justification = "fetches guidelines"
    "#;

    const SMART: &str = r#"
        [app]
        publisher = "acme"
        id = "bp-diary"
        version = "1.0.0"
        name = "BP diary"
        description = "d"
        audience = ["patient"]

        [smart]
        launch_url = "https://bp-diary.example/launch"
        redirect_uris = ["https://bp-diary.example/callback", "http://127.0.0.1:8000/cb"]

        [[capability]]
        name = "patient/Observation.rs"
        justification = "charts readings"
    "#;

    #[test]
    fn a_smart_web_app_names_https_urls_and_asks_for_data_scopes_only() {
        let manifest = Manifest::parse(SMART).unwrap();
        let smart = manifest.smart.as_ref().unwrap();
        assert_eq!(
            smart.origins(),
            ["http://127.0.0.1:8000", "https://bp-diary.example"]
        );
        for (from, to, path) in [
            (
                "https://bp-diary.example/launch",
                "http://bp-diary.example/launch",
                "smart.launch_url",
            ),
            (
                "https://bp-diary.example/callback",
                "https://bp-diary.example/cb#x",
                "smart.redirect_uris[0]",
            ),
            (
                "https://bp-diary.example/launch",
                "/launch",
                "smart.launch_url",
            ),
            ("patient/Observation.rs", "kv", "capability[0].name"),
            (
                "patient/Observation.rs",
                "system/Observation.rs",
                "capability[0].name",
            ),
            (
                r#"redirect_uris = ["https://bp-diary.example/callback", "http://127.0.0.1:8000/cb"]"#,
                "redirect_uris = []",
                "smart.redirect_uris",
            ),
        ] {
            let error = Manifest::parse(&SMART.replacen(from, to, 1)).unwrap_err();
            assert_eq!(error.path, path, "{to}: {error}");
        }
        // A confidential client's keys: public RS384/ES384 keys, each named.
        let with_keys = |key: &str| {
            SMART.replacen(
                "[[capability]]",
                &format!("[[smart.jwks.keys]]\n{key}\n\n[[capability]]"),
                1,
            )
        };
        let public = r#"kty = "EC"
crv = "P-384"
x = "x"
y = "y"
kid = "k1"
alg = "ES384""#;
        let manifest = Manifest::parse(&with_keys(public)).unwrap();
        assert_eq!(
            manifest.smart.unwrap().jwks.unwrap()["keys"][0]["kid"],
            "k1"
        );
        let purpose = |text: &str, manifest: &str| {
            manifest.replacen(
                "[[capability]]",
                &format!("[[capability]]\nname = \"{text}\"\njustification = \"Registry.\"\n\n[[capability]]"),
                1,
            )
        };
        // A backend service: its keys, system/ scopes and the purpose it uses them for, no
        // browser URLs at all.
        let without_purpose = with_keys(public)
            .replace("launch_url = \"https://bp-diary.example/launch\"", "")
            .replace(
                r#"redirect_uris = ["https://bp-diary.example/callback", "http://127.0.0.1:8000/cb"]"#,
                "",
            )
            .replace("patient/Observation.rs", "system/Observation.rs");
        let error = Manifest::parse(&without_purpose).unwrap_err();
        assert!(error.message.contains("purpose:research"), "{error}");
        let backend = purpose("purpose:quality", &without_purpose);
        let smart = Manifest::parse(&backend).unwrap().smart.unwrap();
        assert_eq!((smart.launch_url, smart.redirect_uris.len()), (None, 0));
        let keyless = SMART.replace("patient/Observation.rs", "system/Observation.rs");
        let error = Manifest::parse(&keyless).unwrap_err();
        assert_eq!(error.path, "capability[0].name", "{error}");
        assert!(error.message.contains("backend service"), "{error}");
        // One purpose of use; an app with users has none.
        let research = Manifest::parse(&purpose("purpose:research", &without_purpose)).unwrap();
        assert!(research.capabilities().contains(&Capability::Purpose(
            healthcloud_platform::scope::Purpose::Research
        )));
        let two = purpose("purpose:research", &backend);
        let error = Manifest::parse(&two).unwrap_err();
        assert_eq!(error.path, "capability[1].name", "{error}");
        assert!(error.message.contains("one purpose of use"), "{error}");
        for with_users in [SMART, VALID] {
            let error = Manifest::parse(&purpose("purpose:research", with_users)).unwrap_err();
            assert_eq!(error.path, "capability[0].name", "{error}");
            assert!(error.message.contains("backend service"), "{error}");
        }
        for (key, path, says) in [
            (
                format!("{public}\nd = \"secret\""),
                "smart.jwks.keys[0]",
                "private key",
            ),
            (
                public.replace("ES384", "HS256"),
                "smart.jwks.keys[0].alg",
                "RS384 or ES384",
            ),
            (
                public.replace("kty = \"EC\"", "kty = \"RSA\""),
                "smart.jwks.keys[0].kty",
                "alg",
            ),
            (
                public.replace("kid = \"k1\"", ""),
                "smart.jwks.keys[0].kid",
                "name the key",
            ),
        ] {
            let error = Manifest::parse(&with_keys(&key)).unwrap_err();
            assert_eq!(error.path, path, "{key}: {error}");
            assert!(error.message.contains(says), "{error}");
        }
    }

    #[test]
    fn a_valid_manifest_parses_with_its_capabilities() {
        let manifest = Manifest::parse(VALID).unwrap();
        assert_eq!(manifest.app.version, semver::Version::new(1, 2, 3));
        assert_eq!(
            manifest.capabilities()[1],
            Capability::OutboundHttp("api.example.org".into())
        );
    }

    #[test]
    fn errors_name_the_field() {
        let bad_scope = VALID.replace("patient/Observation.rs", "patient/Observation.x");
        let error = Manifest::parse(&bad_scope).unwrap_err();
        assert_eq!(error.path, "capability[0].name");
        for icon in ["../../etc/passwd", "/etc/passwd", "icons//a.png", "a b.png"] {
            let with_icon = VALID.replace(
                "description = \"d\"",
                &format!("description = \"d\"\nicon = \"{icon}\""),
            );
            assert_eq!(
                Manifest::parse(&with_icon).unwrap_err().path,
                "app.icon",
                "{icon}"
            );
        }
        let fine = VALID.replace(
            "description = \"d\"",
            "description = \"d\"\nicon = \"icons/app.png\"",
        );
        assert!(Manifest::parse(&fine).is_ok());
        let build = VALID.replace("1.2.3", "1.2.3+build.7");
        assert_eq!(Manifest::parse(&build).unwrap_err().path, "app.version");
        let no_reason = VALID.replace("reads readings", " ");
        assert_eq!(
            Manifest::parse(&no_reason).unwrap_err().path,
            "capability[0].justification"
        );
        let bad_id = VALID.replace("bp-monitor", "BP Monitor");
        assert_eq!(Manifest::parse(&bad_id).unwrap_err().path, "app.id");
        let bad_version = VALID.replace("1.2.3", "one");
        assert!(
            Manifest::parse(&bad_version)
                .unwrap_err()
                .path
                .starts_with("line ")
        );
        let duplicate = VALID.replace("outbound-http:api.example.org", "patient/Observation.rs");
        assert!(
            Manifest::parse(&duplicate)
                .unwrap_err()
                .message
                .contains("twice")
        );
    }

    #[test]
    fn capabilities_are_explained_in_plain_language() {
        let explain = |text: &str| Capability::parse(text).unwrap().explain();
        assert_eq!(
            explain("patient/Observation.rs?category=vital-signs"),
            "Read and search the patient's Observation records (only where category is vital-signs)."
        );
        assert_eq!(
            explain("user/*.cruds"),
            "Read, search, add, change and delete records of every kind but access logs and consents of any patient the signed-in user may see."
        );
        assert_eq!(
            explain("outbound-http:api.example.org"),
            "Connect to api.example.org over the internet, and so send it data the app can see."
        );
        for internal in [
            "outbound-http:169.254.169.254",
            "outbound-http:10.0.0.5:8080",
            "outbound-http:127.0.0.1",
            "outbound-http:[::1]:8443",
            "outbound-http:[::ffff:127.0.0.1]",
            "outbound-http:localhost",
            "outbound-http:metadata.google.internal",
        ] {
            let explained = explain(internal);
            assert!(
                explained.contains("an address inside your network")
                    && !explained.contains("internet"),
                "{internal}: {explained}"
            );
        }
        assert!(explain("outbound-http:169.254.169.254").contains("metadata"));
    }

    #[test]
    fn disguised_ipv4_addresses_are_refused_naming_the_address() {
        for disguised in [
            "outbound-http:2130706433",
            "outbound-http:0x7f000001",
            "outbound-http:0177.0.0.1:8080",
        ] {
            let error = Capability::parse(disguised).unwrap_err();
            assert!(
                error.reason.contains("127.0.0.1 in disguise"),
                "{disguised}: {error}"
            );
        }
    }

    #[test]
    fn capabilities_round_trip_and_refuse_non_data_scopes() {
        for text in [
            "kv",
            "kv-install",
            "log",
            "outbound-http:example.org:8443",
            "purpose:research",
            "purpose:quality",
            "purpose:treatment",
            "patient/Observation.rs",
        ] {
            assert_eq!(Capability::parse(text).unwrap().to_string(), text);
        }
        assert!(Capability::parse("openid").is_err());
        assert!(Capability::parse("purpose:marketing").is_err());
        assert!(Capability::parse("outbound-http:").is_err());
        assert!(Capability::parse("outbound-http:a b").is_err());
        assert!(Capability::parse("outbound-http:fd00::1:8443").is_err());
        assert!(Capability::parse("outbound-http:[fd00::1]:8443").is_ok());
    }
}

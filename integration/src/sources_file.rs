//! `sources.toml` in the data directory: the upstream sources an integration cloud reads
//! through, one `[[source]]` table each. No file means no sources.
//!
//! ```toml
//! [[source]]
//! name = "gp"                                  # prefixes its resources' ids: gp.<id>
//! organization = "Organization/gp-clinic"      # who owns it
//! base = "https://gp.example.dk/fhir/R4"       # its FHIR R4 base URL
//! auth = "bearer-file"                         # none | bearer-file | client-credentials
//! token-file = "secrets/gp.token"              # relative to the data directory
//! types = ["Observation", "Condition"]         # narrows what its CapabilityStatement declares
//! deadline-secs = 3
//! max-concurrent = 8
//! max-response-bytes = 16777216
//! ```
//!
//! With `auth = "client-credentials"`: `token-url`, `client-id`, `secret-file` and optionally
//! `scope`. Every key is checked: an unknown one, a bad name, a duplicate name or a base that
//! is not an http(s) URL is an error naming the file, the source, the key and the fix. The
//! same table, as JSON, is the body of `PUT /admin/v1/sources/{name}`
//! ([`admin`](crate::admin)), which rewrites this file atomically.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::sources::{SourceSettings, is_source_name};
use crate::upstream::{UpstreamAuth, UpstreamConfig};

/// The file's name in the data directory.
pub const FILE: &str = "sources.toml";

/// The longest deadline a source may have, in seconds: a search waits for its slowest source.
const MAX_DEADLINE_SECS: f64 = 300.0;

/// The most calls a source may have open at once.
const MAX_CONCURRENT: usize = 1024;

/// The smallest response cap: less cannot hold a CapabilityStatement.
const MIN_RESPONSE_BYTES: u64 = 1024;

/// How healthcloud authenticates to a source, as the file says it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthKind {
    /// No credentials.
    #[default]
    None,
    /// A bearer token read from `token-file`.
    BearerFile,
    /// OAuth 2.0 client credentials: `token-url`, `client-id`, `secret-file`, `scope`.
    ClientCredentials,
}

impl AuthKind {
    /// The name the file uses: `none`, `bearer-file` or `client-credentials`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthKind::None => "none",
            AuthKind::BearerFile => "bearer-file",
            AuthKind::ClientCredentials => "client-credentials",
        }
    }

    fn is_none(&self) -> bool {
        *self == AuthKind::None
    }
}

/// One source as configured: a `[[source]]` table of `sources.toml`, and the JSON body of
/// `PUT /admin/v1/sources/{name}` (same keys). Only `name` and `base` are required.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SourceEntry {
    /// Its name: lowercase letters, digits and `-` ([`is_source_name`]). In a `PUT` body it
    /// may be left out (the path names it).
    #[serde(default)]
    pub name: String,
    /// The organization that owns it, `Organization/<id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    /// Its FHIR base URL (http or https).
    pub base: String,
    /// How healthcloud authenticates to it (default `none`).
    #[serde(default, skip_serializing_if = "AuthKind::is_none")]
    pub auth: AuthKind,
    /// With `bearer-file`: the file holding the token (relative to the data directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// With `client-credentials`: the source's OAuth token endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    /// With `client-credentials`: the client id the token endpoint issued to healthcloud.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// With `client-credentials`: the file holding the client secret (relative to the data
    /// directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// With `client-credentials`: the scope to ask for, space-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The resource types asked of it, narrowing what its CapabilityStatement declares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<String>>,
    /// How long one call may take, in seconds (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_secs: Option<f64>,
    /// How many calls may be open to it at once (default 8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<usize>,
    /// The largest answer read from it, in bytes (default 16 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_response_bytes: Option<u64>,
}

/// A problem with one source's configuration: what is wrong, how to fix it, and the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct EntryError {
    /// The key at fault, e.g. `base`.
    pub key: Option<&'static str>,
    /// What is wrong and how to fix it.
    pub message: String,
}

fn bad(key: &'static str, message: impl Into<String>) -> EntryError {
    EntryError {
        key: Some(key),
        message: message.into(),
    }
}

impl SourceEntry {
    /// A source at `base` with every other setting at its default, as `--source NAME=BASE`
    /// gives it.
    pub fn new(name: impl Into<String>, base: impl Into<String>) -> Self {
        SourceEntry {
            name: name.into(),
            base: base.into(),
            ..SourceEntry::default()
        }
    }

    /// `NAME=FHIR_BASE`, as `--source` takes it.
    pub fn from_flag(flag: &str) -> Result<Self, String> {
        match flag.split_once('=') {
            Some((name, base)) if !name.is_empty() && !base.is_empty() => {
                Ok(SourceEntry::new(name.trim(), base.trim()))
            }
            _ => Err(format!(
                "'{flag}' is not NAME=FHIR_BASE: pass e.g. --source gp=http://127.0.0.1:8103/fhir/R4"
            )),
        }
    }

    /// What healthcloud reaches the source with, files named relative to `data_dir`.
    /// Nothing is read or sent: a token file is read when the source is opened.
    pub fn settings(&self, data_dir: &Path) -> Result<SourceSettings, EntryError> {
        let name = &self.name;
        if !is_source_name(name) {
            return Err(bad(
                "name",
                format!(
                    "'{name}' cannot name a source: use lowercase letters, digits and '-', starting \
                     with a letter, at most 32 characters (it prefixes the ids of the source's \
                     resources, e.g. gp.<id>)"
                ),
            ));
        }
        let organization = match &self.organization {
            None => None,
            Some(reference) => match reference.strip_prefix("Organization/") {
                Some(id) if healthcloud_platform::auth::is_fhir_id(id) => Some(reference.clone()),
                _ => {
                    return Err(bad(
                        "organization",
                        format!(
                            "organization '{reference}' is not an Organization reference: write \
                             Organization/<id>, e.g. Organization/gp-clinic"
                        ),
                    ));
                }
            },
        };
        let base = fhir_base(&self.base)?;
        let mut upstream = UpstreamConfig::new(name.clone(), base);
        upstream.auth = self.auth(data_dir)?;
        if let Some(secs) = self.deadline_secs {
            if !(secs > 0.0 && secs <= MAX_DEADLINE_SECS) {
                return Err(bad(
                    "deadline-secs",
                    format!(
                        "deadline-secs = {secs} is out of range: give the seconds one call to the \
                         source may take, more than 0 and at most {MAX_DEADLINE_SECS}"
                    ),
                ));
            }
            upstream.deadline = Duration::from_secs_f64(secs);
        }
        if let Some(max) = self.max_concurrent {
            if !(1..=MAX_CONCURRENT).contains(&max) {
                return Err(bad(
                    "max-concurrent",
                    format!(
                        "max-concurrent = {max} is out of range: give how many calls may be open \
                         to the source at once, 1 to {MAX_CONCURRENT}"
                    ),
                ));
            }
            upstream.max_concurrent = max;
        }
        if let Some(max) = self.max_response_bytes {
            if max < MIN_RESPONSE_BYTES {
                return Err(bad(
                    "max-response-bytes",
                    format!(
                        "max-response-bytes = {max} is too small: give at least \
                         {MIN_RESPONSE_BYTES} bytes (the default is 16777216, 16 MiB)"
                    ),
                ));
            }
            upstream.max_response_bytes = max;
        }
        let types = match &self.types {
            None => None,
            Some(types) => Some(served_types(types)?),
        };
        Ok(SourceSettings {
            upstream,
            organization,
            types,
        })
    }

    /// The authentication, checked to have exactly the keys its kind needs.
    ///
    /// Its files must lie inside the data directory: a file's content is sent to the source
    /// as a credential, so a source added through the admin API must not be able to name any
    /// file the server can read (and send, say, another source's secret to an address of its
    /// choosing).
    fn auth(&self, data_dir: &Path) -> Result<UpstreamAuth, EntryError> {
        let kind = self.auth.as_str();
        let given: [(&'static str, bool); 5] = [
            ("token-file", self.token_file.is_some()),
            ("token-url", self.token_url.is_some()),
            ("client-id", self.client_id.is_some()),
            ("secret-file", self.secret_file.is_some()),
            ("scope", self.scope.is_some()),
        ];
        let allowed: &[&str] = match self.auth {
            AuthKind::None => &[],
            AuthKind::BearerFile => &["token-file"],
            AuthKind::ClientCredentials => &["token-url", "client-id", "secret-file", "scope"],
        };
        for (key, present) in given {
            if present && !allowed.contains(&key) {
                return Err(bad(
                    key,
                    format!(
                        "{key} does not go with auth = \"{kind}\": remove it, or set auth to the \
                         kind it belongs to (token-file: bearer-file; token-url, client-id, \
                         secret-file, scope: client-credentials)"
                    ),
                ));
            }
        }
        let required = |key: &'static str, value: bool| {
            if value {
                Ok(())
            } else {
                Err(bad(
                    key,
                    format!("auth = \"{kind}\" needs {key}: add it to the source"),
                ))
            }
        };
        match self.auth {
            AuthKind::None => Ok(UpstreamAuth::None),
            AuthKind::BearerFile => {
                required("token-file", self.token_file.is_some())?;
                let file = self.token_file.as_deref().unwrap_or(Path::new(""));
                Ok(UpstreamAuth::BearerFile(in_data_dir(
                    "token-file",
                    file,
                    data_dir,
                )?))
            }
            AuthKind::ClientCredentials => {
                required("token-url", self.token_url.is_some())?;
                required(
                    "client-id",
                    self.client_id.as_deref().is_some_and(|id| !id.is_empty()),
                )?;
                required("secret-file", self.secret_file.is_some())?;
                let token_url = self.token_url.as_deref().unwrap_or_default();
                let token_url = Url::parse(token_url)
                    .ok()
                    .filter(|url| matches!(url.scheme(), "http" | "https"))
                    .ok_or_else(|| {
                        bad(
                            "token-url",
                            format!(
                                "token-url '{token_url}' is not an http(s) URL: give the source's \
                                 OAuth token endpoint, e.g. https://auth.example.dk/oauth2/token"
                            ),
                        )
                    })?;
                Ok(UpstreamAuth::ClientCredentials {
                    token_url,
                    client_id: self.client_id.clone().unwrap_or_default(),
                    secret_file: in_data_dir(
                        "secret-file",
                        self.secret_file.as_deref().unwrap_or(Path::new("")),
                        data_dir,
                    )?,
                    scope: self.scope.clone(),
                })
            }
        }
    }
}

/// `base` checked to be a FHIR base URL healthcloud can call: http(s), with a host, without
/// credentials, query or fragment (those would be sent, and shown, with every call).
/// `file`, named by `key`, as a path inside `data_dir`: relative, and without `..`.
fn in_data_dir(key: &'static str, file: &Path, data_dir: &Path) -> Result<PathBuf, EntryError> {
    use std::path::Component;
    let inside = !file.as_os_str().is_empty()
        && file
            .components()
            .all(|component| matches!(component, Component::Normal(_) | Component::CurDir));
    if !inside {
        return Err(bad(
            key,
            format!(
                "{key} '{}' must be a path inside the data directory (relative, without '..'): \
                 put the file there, e.g. secrets/<source>.token",
                file.display()
            ),
        ));
    }
    Ok(data_dir.join(file))
}

fn fhir_base(base: &str) -> Result<Url, EntryError> {
    let fix = "give the source's FHIR base URL, e.g. https://fhir.example.dk/R4";
    let url = Url::parse(base)
        .map_err(|e| bad("base", format!("base '{base}' is not a URL ({e}): {fix}")))?;
    let problem = if !matches!(url.scheme(), "http" | "https") {
        Some("its scheme is not http or https")
    } else if url.host_str().is_none_or(str::is_empty) {
        Some("it names no host")
    } else if !url.username().is_empty() || url.password().is_some() {
        Some("it carries credentials, which would be shown wherever the URL is (use auth instead)")
    } else if url.query().is_some() || url.fragment().is_some() {
        Some("it has a query or fragment")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(bad("base", format!("base '{base}': {problem}: {fix}"))),
        None => Ok(url),
    }
}

/// `types` checked to be types healthcloud serves.
fn served_types(types: &[String]) -> Result<BTreeSet<String>, EntryError> {
    if types.is_empty() {
        return Err(bad(
            "types",
            "types is empty, which would ask the source for nothing: list the resource types to \
             ask it for, or leave types out for every type it declares",
        ));
    }
    for resource_type in types {
        if crate::params::type_def(resource_type).is_none() {
            let served: Vec<&str> = crate::params::TYPES.iter().map(|t| t.name).collect();
            return Err(bad(
                "types",
                format!(
                    "healthcloud does not serve the resource type '{resource_type}': use some of {}",
                    served.join(", ")
                ),
            ));
        }
    }
    Ok(types.iter().cloned().collect())
}

/// The `sources.toml` of a data directory: its path and its sources, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct SourcesFile {
    path: PathBuf,
    /// The sources, in the order of their tables.
    pub entries: Vec<SourceEntry>,
}

/// The file as serialized: `[[source]]` tables.
#[derive(Serialize)]
struct Tables<'a> {
    source: &'a [SourceEntry],
}

/// What heads the file when healthcloud writes it (comments in a file are not kept).
const HEADER: &str = "# The upstream FHIR sources of this data directory, one [[source]] table each.\n\
# Rewritten by `healthcloud source add|remove` and PUT/DELETE /admin/v1/sources/{name}: \
comments are not kept.\n\n";

impl SourcesFile {
    /// The file of `data_dir` (which need not exist).
    pub fn path_in(data_dir: &Path) -> PathBuf {
        data_dir.join(FILE)
    }

    /// The file at `path`, checked; none configured when it does not exist.
    pub fn load(path: &Path) -> anyhow::Result<SourcesFile> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(error) => anyhow::bail!(
                "cannot read {}: {error}: make it readable by healthcloud, or move it away for no sources",
                path.display()
            ),
        };
        SourcesFile::parse(path, &text)
    }

    /// `text` as the file at `path`, checked: every source's keys and values, and that no
    /// two share a name.
    pub fn parse(path: &Path, text: &str) -> anyhow::Result<SourcesFile> {
        let shown = path.display();
        let table: toml::Table =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("{shown} is not valid TOML: {e}"))?;
        let mut entries: Vec<SourceEntry> = Vec::new();
        for (key, value) in table {
            if key != "source" {
                anyhow::bail!(
                    "{shown}: unknown key '{key}': the file holds only [[source]] tables; remove it"
                );
            }
            let toml::Value::Array(tables) = value else {
                anyhow::bail!(
                    "{shown}: 'source' must be [[source]] tables, one per source: write [[source]] above each"
                );
            };
            for (index, value) in tables.into_iter().enumerate() {
                let which = match value.get("name").and_then(toml::Value::as_str) {
                    Some(name) => format!("source '{name}'"),
                    None => format!("the [[source]] table number {}", index + 1),
                };
                let entry: SourceEntry = value.try_into().map_err(|e: toml::de::Error| {
                    anyhow::anyhow!(
                        "{shown}: {which}: {}: correct or remove that key",
                        e.message().trim_end()
                    )
                })?;
                if entry.name.is_empty() {
                    anyhow::bail!("{shown}: {which} has no name: add name = \"<name>\"");
                }
                let data_dir = path.parent().unwrap_or(Path::new("."));
                if let Err(error) = entry.settings(data_dir) {
                    anyhow::bail!("{shown}: {which}: {error}");
                }
                if entries.iter().any(|other| other.name == entry.name) {
                    anyhow::bail!(
                        "{shown}: two sources are named '{}': give each [[source]] its own name",
                        entry.name
                    );
                }
                entries.push(entry);
            }
        }
        Ok(SourcesFile {
            path: path.to_owned(),
            entries,
        })
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory its files (token, secret) are relative to: the data directory.
    pub fn data_dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// The source named `name`.
    pub fn get(&self, name: &str) -> Option<&SourceEntry> {
        self.entries.iter().find(|entry| entry.name == name)
    }

    /// Adds `entry`, or replaces the source of its name in place; whether it replaced one.
    pub fn put(&mut self, entry: SourceEntry) -> bool {
        match self.entries.iter_mut().find(|e| e.name == entry.name) {
            Some(existing) => {
                *existing = entry;
                true
            }
            None => {
                self.entries.push(entry);
                false
            }
        }
    }

    /// Removes the source named `name`; it, if there was one.
    pub fn remove(&mut self, name: &str) -> Option<SourceEntry> {
        let at = self.entries.iter().position(|entry| entry.name == name)?;
        Some(self.entries.remove(at))
    }

    /// Writes the file atomically: a temporary file beside it, flushed to disk, renamed over
    /// it, so a crash leaves the old file or the new one, never half of one.
    pub fn save(&self) -> anyhow::Result<()> {
        let shown = self.path.display();
        let text = format!(
            "{HEADER}{}",
            toml::to_string(&Tables {
                source: &self.entries
            })?
        );
        let dir = self.data_dir();
        let written = (|| {
            std::fs::create_dir_all(dir)?;
            let mut temporary = tempfile::NamedTempFile::new_in(dir)?;
            temporary.write_all(text.as_bytes())?;
            temporary.as_file().sync_all()?;
            temporary.persist(&self.path).map_err(|e| e.error)?;
            // The rename itself is durable once the directory is.
            std::fs::File::open(dir)?.sync_all()
        })();
        written.map_err(|e| {
            anyhow::anyhow!("cannot write {shown}: {e}: make its directory writable by healthcloud")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<SourcesFile> {
        SourcesFile::parse(Path::new("/data/sources.toml"), text)
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn a_good_file_gives_every_setting() {
        let file = parse(
            r#"
            [[source]]
            name = "gp"
            organization = "Organization/gp-clinic"
            base = "https://gp.example.dk/fhir/R4"
            auth = "bearer-file"
            token-file = "secrets/gp.token"
            types = ["Observation", "Condition"]
            deadline-secs = 2.5
            max-concurrent = 4
            max-response-bytes = 1048576

            [[source]]
            name = "kommune"
            base = "http://127.0.0.1:8103/fhir/R4/"
            "#,
        )
        .unwrap();
        assert_eq!(file.entries.len(), 2);
        let gp = file.entries[0].settings(file.data_dir()).unwrap();
        assert_eq!(gp.upstream.name, "gp");
        assert_eq!(gp.organization.as_deref(), Some("Organization/gp-clinic"));
        assert_eq!(gp.upstream.base.as_str(), "https://gp.example.dk/fhir/R4");
        assert!(matches!(
            &gp.upstream.auth,
            UpstreamAuth::BearerFile(path) if path == Path::new("/data/secrets/gp.token")
        ));
        assert_eq!(
            gp.types,
            Some(["Condition".to_owned(), "Observation".to_owned()].into())
        );
        assert_eq!(gp.upstream.deadline, Duration::from_millis(2500));
        assert_eq!(gp.upstream.max_concurrent, 4);
        assert_eq!(gp.upstream.max_response_bytes, 1 << 20);
        let kommune = file.entries[1].settings(file.data_dir()).unwrap();
        assert!(matches!(kommune.upstream.auth, UpstreamAuth::None));
        assert_eq!(kommune.types, None);
        assert_eq!(kommune.upstream.deadline, Duration::from_secs(3));
    }

    #[test]
    fn no_file_is_no_sources_and_a_written_file_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = SourcesFile::path_in(dir.path());
        let mut file = SourcesFile::load(&path).unwrap();
        assert!(file.entries.is_empty());
        let mut gp = SourceEntry::new("gp", "http://127.0.0.1:1/fhir/R4");
        gp.types = Some(vec!["Observation".into()]);
        gp.deadline_secs = Some(1.5);
        assert!(!file.put(gp.clone()));
        assert!(!file.put(SourceEntry::new("kommune", "http://127.0.0.1:2/fhir")));
        file.save().unwrap();
        let read = SourcesFile::load(&path).unwrap();
        assert_eq!(read.entries, file.entries);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("[[source]]\nname = \"gp\""), "{text}");
        assert!(!text.contains("auth"), "defaults are left out: {text}");

        let mut changed = read.clone();
        assert!(changed.put(SourceEntry::new("gp", "http://127.0.0.1:3/fhir/R4")));
        assert_eq!(changed.remove("kommune").unwrap().name, "kommune");
        assert!(changed.remove("kommune").is_none());
        changed.save().unwrap();
        let read = SourcesFile::load(&path).unwrap();
        assert_eq!(read.entries.len(), 1);
        assert_eq!(read.entries[0].base, "http://127.0.0.1:3/fhir/R4");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(
            leftovers.len(),
            1,
            "no temporary file is left: {leftovers:?}"
        );
    }

    #[test]
    fn an_unknown_key_names_the_file_the_source_and_the_key() {
        let message = error(
            r#"
            [[source]]
            name = "gp"
            base = "https://gp.example.dk/fhir/R4"
            tokn-file = "gp.token"
            "#,
        );
        assert!(
            message.starts_with("/data/sources.toml: source 'gp': "),
            "{message}"
        );
        assert!(message.contains("tokn-file"), "{message}");
        assert!(message.contains("correct or remove that key"), "{message}");

        let message = error("[server]\nport = 1\n");
        assert!(message.contains("unknown key 'server'"), "{message}");
    }

    #[test]
    fn a_bad_name_is_refused_with_what_a_name_may_hold() {
        for name in ["GP", "gp.clinic", "1gp", ""] {
            let text =
                format!("[[source]]\nname = \"{name}\"\nbase = \"https://gp.example.dk/R4\"\n");
            let message = error(&text);
            assert!(message.starts_with("/data/sources.toml: "), "{message}");
            assert!(
                message.contains("lowercase letters, digits and '-'")
                    || message.contains("has no name"),
                "{name}: {message}"
            );
        }
    }

    #[test]
    fn two_sources_of_one_name_are_refused() {
        let message = error(
            r#"
            [[source]]
            name = "gp"
            base = "https://one.example.dk/R4"
            [[source]]
            name = "gp"
            base = "https://two.example.dk/R4"
            "#,
        );
        assert!(message.contains("two sources are named 'gp'"), "{message}");
        assert!(
            message.contains("give each [[source]] its own name"),
            "{message}"
        );
    }

    #[test]
    fn a_base_that_is_no_http_url_is_refused_naming_the_fix() {
        for base in [
            "gp.example.dk/R4",
            "ftp://gp.example.dk/R4",
            "https://user:secret@gp.example.dk/R4",
            "https://gp.example.dk/R4?_format=json",
        ] {
            let message = error(&format!("[[source]]\nname = \"gp\"\nbase = \"{base}\"\n"));
            assert!(
                message.starts_with("/data/sources.toml: source 'gp': base '"),
                "{message}"
            );
            assert!(
                message.contains("give the source's FHIR base URL"),
                "{message}"
            );
        }
    }

    #[test]
    fn settings_out_of_range_or_of_another_auth_are_refused() {
        let base = "name = \"gp\"\nbase = \"https://gp.example.dk/R4\"\n";
        for (extra, expected) in [
            ("deadline-secs = 0", "deadline-secs = 0 is out of range"),
            ("max-concurrent = 0", "max-concurrent = 0 is out of range"),
            (
                "max-response-bytes = 10",
                "max-response-bytes = 10 is too small",
            ),
            (
                "types = [\"Spaceship\"]",
                "does not serve the resource type 'Spaceship'",
            ),
            ("types = []", "types is empty"),
            ("organization = \"gp-clinic\"", "write Organization/<id>"),
            ("auth = \"bearer-file\"", "needs token-file"),
            (
                "token-file = \"t\"",
                "token-file does not go with auth = \"none\"",
            ),
            ("auth = \"magic\"", "unknown variant `magic`"),
            ("deadline-secs = \"5s\"", "invalid type"),
        ] {
            let message = error(&format!("[[source]]\n{base}{extra}\n"));
            assert!(message.contains(expected), "{extra}: {message}");
        }
    }

    #[test]
    fn client_credentials_are_read_from_the_file() {
        let text = r#"
            [[source]]
            name = "gp"
            base = "https://gp.example.dk/R4"
            auth = "client-credentials"
            token-url = "https://auth.example.dk/token"
            client-id = "healthcloud"
            secret-file = "gp.secret"
            scope = "system/*.read"
            "#;
        let table: toml::Table = toml::from_str(text).unwrap();
        let entry: SourceEntry = table["source"][0].clone().try_into().unwrap();
        assert_eq!(entry.auth, AuthKind::ClientCredentials);
        assert_eq!(entry.client_id.as_deref(), Some("healthcloud"));
        let missing = error(&text.replace("client-id = \"healthcloud\"", ""));
        assert!(missing.contains("needs client-id"), "{missing}");
    }

    #[test]
    fn a_flag_is_name_equals_base() {
        let entry = SourceEntry::from_flag("gp=http://127.0.0.1:8103/fhir/R4").unwrap();
        assert_eq!(
            entry,
            SourceEntry::new("gp", "http://127.0.0.1:8103/fhir/R4")
        );
        assert!(
            SourceEntry::from_flag("gp")
                .unwrap_err()
                .contains("NAME=FHIR_BASE")
        );
        assert!(SourceEntry::from_flag("=http://x").is_err());
    }

    #[test]
    fn a_credential_file_outside_the_data_directory_is_refused() {
        for file in ["/etc/shadow", "../other/secret", "secrets/../../x"] {
            let text = format!(
                "[[source]]\nname = \"gp\"\nbase = \"https://gp.example/fhir\"\nauth = \"bearer-file\"\ntoken-file = \"{file}\"\n"
            );
            let error = SourcesFile::parse(Path::new("/data/sources.toml"), &text)
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("inside the data directory"),
                "{file}: {error}"
            );
        }
    }
}

//! SMART App Launch against healthcloud's authorization server, with real peers: the region's
//! identity provider is npm's oidc-provider (`tests/upstream/identity-provider.mjs`) with
//! password users, the app is Python's `fhirclient` from PyPI, and the person in the browser
//! is `tests/e2e/smart/browser.py` (requests, following every redirect over loopback HTTP). The FHIR API
//! and the authorization server run in this process on one listener, as `serve integration`
//! composes them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use healthcloud_integration::Integration;
use healthcloud_integration::import::Importer;
use healthcloud_integration::store::EmbeddedStore;
use healthcloud_oauth::{AuthorizationServer, Client, IdentityProviderConfig, OAuthConfig};
use healthcloud_platform::scope::Scope;
use serde_json::{Value, json};

const CLIENT_ID: &str = "bp-diary";
const REDIRECT_URI: &str = "http://127.0.0.1:9/bp-diary/callback";
const SCOPE: &str =
    "launch/patient openid fhirUser offline_access patient/Patient.rs patient/Observation.rs";

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `tests/upstream` with its npm packages installed.
fn node_packages() -> PathBuf {
    static INSTALLED: OnceLock<PathBuf> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let dir = repository().join("tests/upstream");
            if !dir.join("node_modules/oidc-provider").exists() {
                let status = Command::new("npm")
                    .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                    .current_dir(&dir)
                    .status()
                    .expect("npm runs (Node.js 20 and npm are needed for the identity provider)");
                assert!(status.success(), "npm ci in tests/upstream failed");
            }
            dir
        })
        .clone()
}

/// A Python with `fhirclient` and `requests` from PyPI, in `target/smart-venv`.
fn python() -> PathBuf {
    static INSTALLED: OnceLock<PathBuf> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let venv = repository().join("target/smart-venv");
            let python = venv.join("bin/python");
            if !python.exists() {
                let status = Command::new("python3")
                    .args(["-m", "venv"])
                    .arg(&venv)
                    .status()
                    .expect("python3 runs");
                assert!(status.success(), "python3 -m venv failed");
            }
            let status = Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "fhirclient==4.4.0",
                    "requests",
                ])
                .status()
                .expect("pip runs");
            assert!(status.success(), "pip install fhirclient failed");
            python
        })
        .clone()
}

/// The identity provider, killed when dropped.
struct IdentityProvider {
    child: Child,
    issuer: String,
}

impl Drop for IdentityProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// healthcloud (FHIR API and authorization server) with one patient's data, the identity
/// provider with its users, and one SMART app installed.
struct World {
    dir: tempfile::TempDir,
    database: healthcloud_platform::db::Database,
    public_url: String,
    fhir_base: String,
    server: AuthorizationServer,
    provider: IdentityProvider,
    http: reqwest::Client,
}

impl World {
    async fn start() -> World {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let public_url = format!("http://{}", listener.local_addr().unwrap());
        let provider = startprovider(dir.path(), &public_url);
        let database_url = format!("sqlite://{}", dir.path().join("fhir.db").display());
        let integration = Integration::open(&database_url, &public_url, dir.path())
            .await
            .unwrap();
        let store = EmbeddedStore::new(integration.database.clone());
        let mut importer = Importer::new(&store);
        importer.add(fixture()).await.unwrap();
        importer.finish().await.unwrap();
        let fhir_base = format!("{public_url}/fhir/r4");
        let server = AuthorizationServer::open(
            integration.database.clone(),
            dir.path(),
            OAuthConfig {
                public_url: public_url.clone(),
                fhir_base: fhir_base.clone(),
                identity_provider: Some(IdentityProviderConfig {
                    issuer: provider.issuer.clone(),
                    client_id: "healthcloud".into(),
                    client_secret: std::fs::read_to_string(dir.path().join("idp-secret")).unwrap(),
                    claims: Default::default(),
                }),
                clients: Default::default(),
            },
        )
        .await
        .unwrap();
        server
            .clients()
            .register(Client {
                client_id: CLIENT_ID.into(),
                name: "Blood pressure diary".into(),
                app: "acme/bp-diary".into(),
                version: "1.0.0".into(),
                installed_at: "2026-12-01T00:00:00Z".into(),
                changed_at: 0,
                digest: "sha256:0".into(),
                publisher_key: "acme-key-1".into(),
                region: "region-h".into(),
                audience: vec![
                    healthcloud_platform::auth::Role::Patient,
                    healthcloud_platform::auth::Role::Clinician,
                ],
                redirect_uris: vec![REDIRECT_URI.into()],
                launch_url: Some("http://127.0.0.1:9/bp-diary/launch".into()),
                origins: vec!["http://127.0.0.1:9".into()],
                requested: vec![
                    (
                        scope("patient/Observation.rs"),
                        "To chart your blood pressure.".into(),
                    ),
                    (scope("patient/Patient.rs"), "To show your name.".into()),
                    (
                        scope("patient/Condition.rs"),
                        "To warn about your diagnoses.".into(),
                    ),
                ],
                // The region did not grant Conditions.
                grant: vec![scope("patient/Observation.rs"), scope("patient/Patient.rs")],
                purpose: None,
                jwks: None,
            })
            .unwrap();
        let integration_database = integration.database.clone();
        let integration = integration.with_authorization_server(
            server.endpoints().clone(),
            server.keys().clone(),
            server.clients().clone(),
        );
        let router = integration.router().merge(server.router());
        tokio::spawn(async move { axum::serve(listener, router).await });
        World {
            dir,
            database: integration_database,
            public_url,
            fhir_base,
            server,
            provider,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    /// The person in the browser, through `url`: the callback URL the app got (or where
    /// they stopped).
    fn browse(&self, url: &str, login: &str, decision: &str) -> Value {
        self.browse_with(url, login, &format!("{login}-password"), &[decision])
    }

    /// The person in the browser, with `password` and `options` of `smart/browser.py`.
    fn browse_with(&self, url: &str, login: &str, password: &str, options: &[&str]) -> Value {
        let output = Command::new(python())
            .arg(repository().join("tests/e2e/smart/browser.py"))
            .args([url, REDIRECT_URI, login, password])
            .args(options)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "browser.py failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }

    /// An authorization URL of the app, with `overrides` of its parameters.
    fn authorize_url(&self, verifier: &str, overrides: &[(&str, &str)]) -> String {
        let challenge = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            <sha2::Sha256 as sha2::Digest>::digest(verifier.as_bytes()),
        );
        let mut parameters: Vec<(&str, String)> = vec![
            ("response_type", "code".into()),
            ("client_id", CLIENT_ID.into()),
            ("redirect_uri", REDIRECT_URI.into()),
            ("scope", SCOPE.into()),
            ("state", "st4te".into()),
            ("aud", self.fhir_base.clone()),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256".into()),
        ];
        for (name, value) in overrides {
            parameters.retain(|(existing, _)| existing != name);
            if !value.is_empty() {
                parameters.push((name, (*value).to_owned()));
            }
        }
        let mut url = url::Url::parse(&format!("{}/oauth2/authorize", self.public_url)).unwrap();
        url.query_pairs_mut().extend_pairs(parameters);
        url.into()
    }

    /// A code for the patient user, through the whole sign-in.
    fn code(&self, verifier: &str, overrides: &[(&str, &str)]) -> String {
        let answer = self.browse(&self.authorize_url(verifier, overrides), "aase", "allow");
        let callback = url::Url::parse(
            answer["callback"]
                .as_str()
                .unwrap_or_else(|| panic!("no code: {answer}")),
        )
        .unwrap();
        let query: std::collections::HashMap<_, _> = callback.query_pairs().collect();
        assert_eq!(query.get("state").map(|s| s.as_ref()), Some("st4te"));
        query
            .get("code")
            .unwrap_or_else(|| panic!("no code: {callback}"))
            .to_string()
    }

    async fn token(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/oauth2/token", self.public_url))
            .form(form)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn exchange(&self, code: &str, verifier: &str) -> (u16, Value) {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", verifier),
            ("client_id", CLIENT_ID),
        ])
        .await
    }

    async fn refresh(&self, refresh_token: &str) -> (u16, Value) {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", CLIENT_ID),
        ])
        .await
    }

    /// A token of the data directory's development issuer for the FHIR API.
    fn dev_token(
        &self,
        role: healthcloud_platform::auth::Role,
        request: healthcloud_platform::auth::TokenRequest,
    ) -> String {
        healthcloud_platform::auth::TokenIssuer::dev(self.dir.path())
            .unwrap()
            .mint(
                role,
                healthcloud_platform::auth::TokenRequest {
                    audience: vec![self.fhir_base.clone()],
                    ..request
                },
            )
            .unwrap()
    }

    /// The status of a search of the patient's Observations with `token`.
    async fn observations(&self, token: &str) -> u16 {
        self.http
            .get(format!("{}/Observation?patient=pat-a", self.fhir_base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

/// Asserts an OAuth error answer: its status and its `error` code.
#[track_caller]
fn assert_oauth_error(status: u16, answer: &Value, expected: u16, error: &str) {
    assert_eq!(
        (status, answer["error"].as_str()),
        (expected, Some(error)),
        "{answer}"
    );
}

fn scope(text: &str) -> Scope {
    Scope::parse(text).unwrap().unwrap()
}

fn startprovider(dir: &Path, public_url: &str) -> IdentityProvider {
    std::fs::write(dir.join("idp-secret"), "idp-s3cret-for-healthcloud").unwrap();
    let users = json!({
        "aase": {"password": "aase-password",
                 "claims": {"role": "patient", "patient": "pat-a", "fhirUser": "Patient/pat-a"}},
        "bent": {"password": "bent-password",
                 "claims": {"role": "patient", "patient": "pat-b", "fhirUser": "Patient/pat-b"}},
        "dr-other": {"password": "dr-other-password",
                 "claims": {"role": "clinician", "fhirUser": "Practitioner/dr-other", "region": "region-s"}},
        "dr-hansen": {"password": "dr-hansen-password",
                 "claims": {"role": "clinician", "fhirUser": "Practitioner/dr-hansen", "region": "region-h"}},
        "citizen-aase": {"password": "citizen-aase-password",
                 "claims": {"role": "citizen", "patient": "pat-a"}},
        "dr-nowhere": {"password": "dr-nowhere-password",
                 "claims": {"role": "clinician", "fhirUser": "Practitioner/dr-nowhere"}},
    });
    std::fs::write(dir.join("users.json"), users.to_string()).unwrap();
    let mut child = Command::new("node")
        .arg(node_packages().join("identity-provider.mjs"))
        .arg("--client")
        .arg(format!("healthcloud:{}", dir.join("idp-secret").display()))
        .arg("--redirect-uri")
        .arg(format!("{public_url}/oauth2/login/callback"))
        .arg("--users")
        .arg(dir.join("users.json"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("node starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next().and_then(Result::ok).unwrap_or_default();
    // Read on, so the provider never writes into a closed pipe.
    std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
    let issuer = line
        .strip_prefix("listening ")
        .unwrap_or_else(|| panic!("the identity provider did not start: {line:?}"))
        .to_owned();
    IdentityProvider { child, issuer }
}

/// Two patients with one blood pressure each.
fn fixture() -> Value {
    let patient = |id: &str, cpr: &str| {
        json!({"resourceType": "Patient", "id": id,
            "identifier": [{"system": "urn:oid:1.2.208.176.1.2", "value": cpr}],
            "name": [{"family": "Sørensen", "given": ["Åse"]}]})
    };
    let observation = |id: &str, patient: &str| {
        json!({"resourceType": "Observation", "id": id, "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
            "subject": {"reference": format!("Patient/{patient}")},
            "effectiveDateTime": "2026-11-01T08:00:00Z"})
    };
    let resources = [
        patient("pat-a", "7501504321"),
        patient("pat-b", "6107624322"),
        observation("a-bp-1", "pat-a"),
        observation("b-bp-1", "pat-b"),
    ];
    json!({"resourceType": "Bundle", "type": "collection",
        "entry": resources.iter().map(|r| json!({"resource": r})).collect::<Vec<_>>()})
}

#[tokio::test(flavor = "multi_thread")]
async fn python_fhirclient_completes_a_standalone_launch_as_a_patient_signed_in_at_the_regionprovider()
 {
    let world = World::start().await;
    let python = python();
    let world_base = world.fhir_base.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(repository().join("tests/e2e/smart/standalone_launch.py"))
            .args([
                &world_base,
                CLIENT_ID,
                REDIRECT_URI,
                "aase",
                "aase-password",
                SCOPE,
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "the launch failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let launched: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(launched["patient"], "pat-a", "the patient's own record");
    assert_eq!(launched["patient_read"], "pat-a");
    assert_eq!(launched["observations"], json!(["a-bp-1"]), "only her own");
    assert_eq!(launched["refreshed"], true);
    assert_eq!(launched["after_refresh"], 1);
    let consent = launched["consent_page"].as_str().unwrap();
    for shown in [
        "Read and search the patient&#39;s Observation records.",
        "To chart your blood pressure.",
        "region-h",
    ] {
        assert!(consent.contains(shown), "{shown} on {consent}");
    }
}

/// The query of the callback URL the browser stopped at.
fn callback_query(answer: &Value) -> std::collections::HashMap<String, String> {
    let callback = answer["callback"]
        .as_str()
        .unwrap_or_else(|| panic!("the app got no answer: {answer}"));
    url::Url::parse(callback)
        .unwrap()
        .query_pairs()
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect()
}

const VERIFIER: &str = "a-verifier-of-the-app-that-is-long-enough-for-pkce-0123456789";

#[tokio::test(flavor = "multi_thread")]
async fn a_code_works_once_and_its_replay_revokes_every_token_issued_with_it() {
    let world = World::start().await;
    let code = world.code(VERIFIER, &[]);
    let (status, tokens) = world.exchange(&code, VERIFIER).await;
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(tokens["patient"], "pat-a");
    assert_eq!(world.observations(access).await, 200);
    let (status, replay) = world.exchange(&code, VERIFIER).await;
    assert_oauth_error(status, &replay, 400, "invalid_grant");
    let (status, refreshed) = world
        .refresh(tokens["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(
        (status, refreshed["error"].as_str()),
        (400, Some("invalid_grant")),
        "the refresh token issued with the replayed code is revoked: {refreshed}"
    );
    let introspected: Value = world
        .http
        .post(format!("{}/oauth2/introspect", world.public_url))
        .form(&[("token", access), ("client_id", CLIENT_ID)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(introspected, json!({"active": false}));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_code_with_the_wrong_pkce_verifier_or_redirect_uri_or_client_gets_no_token() {
    let world = World::start().await;
    let code = world.code(VERIFIER, &[]);
    let (status, refused) = world
        .exchange(
            &code,
            "another-verifier-that-is-long-enough-for-pkce-0123456789",
        )
        .await;
    assert_oauth_error(status, &refused, 400, "invalid_grant");
    assert!(
        refused["error_description"]
            .as_str()
            .unwrap()
            .contains("PKCE")
    );
    // The code was spent on the failed attempt.
    let (status, _) = world.exchange(&code, VERIFIER).await;
    assert_eq!(status, 400);

    let code = world.code(VERIFIER, &[]);
    let (status, refused) = world
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:9/elsewhere"),
            ("code_verifier", VERIFIER),
            ("client_id", CLIENT_ID),
        ])
        .await;
    assert_oauth_error(status, &refused, 400, "invalid_grant");

    let code = world.code(VERIFIER, &[]);
    let (status, refused) = world
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", VERIFIER),
            ("client_id", "some-other-app"),
        ])
        .await;
    assert_oauth_error(status, &refused, 401, "invalid_client");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unregistered_redirect_uri_gets_a_page_and_never_a_redirect() {
    let world = World::start().await;
    let url = world.authorize_url(VERIFIER, &[("redirect_uri", "http://attacker.example/cb")]);
    let response = world.http.get(&url).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert!(response.headers().get("location").is_none());
    assert_eq!(response.headers()["x-frame-options"], "DENY");
    let page = response.text().await.unwrap();
    assert!(page.contains("did not register"), "{page}");
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_without_pkce_or_for_another_audience_are_refused_back_to_the_app() {
    let world = World::start().await;
    for (overrides, expected) in [
        (vec![("code_challenge_method", "plain")], "PKCE"),
        (vec![("code_challenge", "")], "PKCE"),
        (vec![("aud", "https://other-server.example/fhir")], "aud"),
    ] {
        let url = world.authorize_url(VERIFIER, &overrides);
        let response = world.http.get(&url).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 303, "{overrides:?}");
        let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
        assert!(location.as_str().starts_with(REDIRECT_URI), "{location}");
        let query: std::collections::HashMap<_, _> = location.query_pairs().collect();
        assert_eq!(query["error"], "invalid_request", "{overrides:?}");
        assert!(query["error_description"].contains(expected));
        assert_eq!(query["state"], "st4te");
        assert!(!query.contains_key("code"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_never_gets_more_than_the_region_granted_whatever_it_asks_for() {
    let world = World::start().await;
    // Conditions were requested by the vendor but not granted by the region.
    let wide =
        "launch/patient offline_access patient/Observation.rs patient/Condition.rs user/*.cruds";
    let code = world.code(VERIFIER, &[("scope", wide)]);
    let (status, tokens) = world.exchange(&code, VERIFIER).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(
        tokens["scope"],
        "launch/patient offline_access patient/Observation.rs"
    );
    let response = world
        .http
        .get(format!("{}/Condition?patient=pat-a", world.fhir_base))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    // A refresh asking for more than the authorization holds.
    let (status, refused) = world
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ("client_id", CLIENT_ID),
            (
                "scope",
                "offline_access patient/Observation.rs patient/Condition.rs",
            ),
        ])
        .await;
    assert_oauth_error(status, &refused, 400, "invalid_scope");

    // Nothing granted at all: no code.
    let url = world.authorize_url(
        VERIFIER,
        &[("scope", "launch/patient patient/Condition.rs")],
    );
    let query = callback_query(&world.browse(&url, "aase", "allow"));
    assert_eq!(query["error"], "invalid_scope");
    assert!(!query.contains_key("code"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_token_rotates_and_a_used_or_revoked_one_ends_the_authorization() {
    let world = World::start().await;
    let code = world.code(VERIFIER, &[]);
    let (_, tokens) = world.exchange(&code, VERIFIER).await;
    let first = tokens["refresh_token"].as_str().unwrap();
    let (status, rotated) = world.refresh(first).await;
    assert_eq!(status, 200, "{rotated}");
    let second = rotated["refresh_token"].as_str().unwrap();
    assert_ne!(first, second);
    // The first one again: stolen, or a broken app. Both are ended.
    let (status, _) = world.refresh(first).await;
    assert_eq!(status, 400);
    let (status, refused) = world.refresh(second).await;
    assert_oauth_error(status, &refused, 400, "invalid_grant");

    // Revocation (RFC 7009) of a fresh authorization's refresh token.
    let code = world.code(VERIFIER, &[]);
    let (_, tokens) = world.exchange(&code, VERIFIER).await;
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    let revoked = world
        .http
        .post(format!("{}/oauth2/revoke", world.public_url))
        .form(&[("token", refresh_token), ("client_id", CLIENT_ID)])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status().as_u16(), 200);
    let (status, refused) = world.refresh(refresh_token).await;
    assert_oauth_error(status, &refused, 400, "invalid_grant");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ehr_launch_carries_the_ehr_patient_and_encounter_and_its_launch_id_works_once() {
    let world = World::start().await;
    let launch = world
        .server
        .launch(CLIENT_ID, "pat-a", Some("enc-1"))
        .await
        .unwrap();
    let scope = "launch openid fhirUser patient/Observation.rs";
    let code = world.code(VERIFIER, &[("scope", scope), ("launch", &launch)]);
    let (status, tokens) = world.exchange(&code, VERIFIER).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(
        (tokens["patient"].as_str(), tokens["encounter"].as_str()),
        (Some("pat-a"), Some("enc-1"))
    );
    assert!(
        tokens.get("refresh_token").is_none(),
        "no offline_access asked"
    );
    // sso-openid-connect: the ID token is signed with the published keys, for this app, and
    // names the user as a FHIR URL.
    let id_token = tokens["id_token"].as_str().unwrap();
    let kid = jsonwebtoken::decode_header(id_token).unwrap().kid.unwrap();
    let jwks: jsonwebtoken::jwk::JwkSet = world
        .http
        .get(world.server.endpoints().jwks())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&[CLIENT_ID]);
    validation.set_issuer(&[world.server.endpoints().issuer()]);
    let identity = jsonwebtoken::decode::<Value>(
        id_token,
        &jsonwebtoken::DecodingKey::from_jwk(jwks.find(&kid).unwrap()).unwrap(),
        &validation,
    )
    .unwrap()
    .claims;
    assert_eq!(identity["sub"], "aase");
    assert_eq!(
        identity["fhirUser"],
        format!("{}/Patient/pat-a", world.fhir_base)
    );
    // It is no access token.
    assert_eq!(world.observations(id_token).await, 401);
    // The same launch id again.
    let url = world.authorize_url(VERIFIER, &[("scope", scope), ("launch", &launch)]);
    let query = callback_query(&world.browse(&url, "aase", "allow"));
    assert_eq!(query["error"], "invalid_request");
    // A launch for another patient, opened by a patient user: refused.
    let launch = world.server.launch(CLIENT_ID, "pat-b", None).await.unwrap();
    let url = world.authorize_url(VERIFIER, &[("scope", scope), ("launch", &launch)]);
    let query = callback_query(&world.browse(&url, "aase", "allow"));
    assert_eq!(query["error"], "access_denied");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_who_denies_or_gives_a_wrong_password_gets_the_app_no_code() {
    let world = World::start().await;
    let url = world.authorize_url(VERIFIER, &[]);
    let query = callback_query(&world.browse(&url, "aase", "deny"));
    assert_eq!(query["error"], "access_denied");
    assert!(!query.contains_key("code"));
    let answer = world.browse_with(&url, "aase", "not-her-password", &[]);
    assert_eq!(answer["callback"], Value::Null);
    assert_eq!(answer["stopped_at"]["status"], 401, "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fhir_api_refuses_tokens_with_no_signature_a_forged_one_or_a_retired_key() {
    let world = World::start().await;
    let code = world.code(VERIFIER, &[]);
    let (_, tokens) = world.exchange(&code, VERIFIER).await;
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(world.observations(access).await, 200);
    let [_, payload, _] = access.split('.').collect::<Vec<_>>()[..] else {
        panic!("a JWT")
    };
    let b64 = |bytes: &[u8]| {
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
    };
    let unsigned = format!("{}.{payload}.", b64(br#"{"alg":"none","typ":"JWT"}"#));
    assert_eq!(world.observations(&unsigned).await, 401, "alg none");
    // HS256 keyed with the published public key (the classic confusion).
    let kid = jsonwebtoken::decode_header(access).unwrap().kid.unwrap();
    let jwks: Value = world
        .http
        .get(world.server.endpoints().jwks())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["kid"], kid.as_str());
    let public = jwks["keys"][0].to_string();
    let mut confused = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    confused.kid = Some(kid);
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap();
    let hs256 = jsonwebtoken::encode(
        &confused,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(public.as_bytes()),
    )
    .unwrap();
    assert_eq!(
        world.observations(&hs256).await,
        401,
        "HS256 with the public key"
    );
    // Rotated out of the kept keys: its tokens stop working.
    for _ in 0..healthcloud_platform::auth::keys::KEPT_KEYS {
        world.server.keys().rotate().unwrap();
    }
    assert_eq!(world.observations(access).await, 401, "a retired key");
    let _ = &world.dir;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sign_in_finished_in_another_browser_or_with_a_forged_state_gets_no_consent_page() {
    let world = World::start().await;
    let url = world.authorize_url(VERIFIER, &[]);
    let answer = world.browse_with(&url, "aase", "aase-password", &["allow", "switch"]);
    assert_eq!(answer["callback"], Value::Null);
    assert_eq!(answer["consent_page"], Value::Null);
    assert_eq!(answer["stopped_at"]["status"], 400, "{answer}");
    assert!(
        answer["stopped_at"]["text"]
            .as_str()
            .unwrap()
            .contains("another browser")
    );
    // A state that is no id of ours (16 bytes end inside a multi-byte character).
    for path in [
        "/oauth2/login/callback?state=aaaaaaaaaaaaaaa%C3%A9&code=x",
        "/oauth2/login/callback?code=x",
    ] {
        let response = world
            .http
            .get(format!("{}{path}", world.public_url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 400, "{path}");
    }
    let response = world
        .http
        .post(format!("{}/oauth2/consent", world.public_url))
        .form(&[("request", "aaaaaaaaaaaaaaa\u{e9}"), ("decision", "allow")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clinician_of_another_region_or_of_none_cannot_authorize_the_regions_app() {
    let world = World::start().await;
    let launch = world.server.launch(CLIENT_ID, "pat-a", None).await.unwrap();
    let scope = "launch patient/Observation.rs";
    let url = world.authorize_url(VERIFIER, &[("scope", scope), ("launch", &launch)]);
    let query = callback_query(&world.browse(&url, "dr-other", "allow"));
    assert_eq!(query["error"], "access_denied");
    let launch = world.server.launch(CLIENT_ID, "pat-a", None).await.unwrap();
    let url = world.authorize_url(VERIFIER, &[("scope", scope), ("launch", &launch)]);
    let query = callback_query(&world.browse(&url, "dr-nowhere", "allow"));
    assert_eq!(query["error"], "access_denied");
    assert!(!query.contains_key("code"));
}

#[test]
fn a_client_with_a_redirect_uri_that_is_no_absolute_url_is_not_registered() {
    let clients = healthcloud_oauth::Clients::default();
    for uri in [
        "/relative/callback",
        "https://app.example/cb#fragment",
        "not a url",
    ] {
        let refused = clients.register(Client {
            client_id: "x".into(),
            name: "X".into(),
            app: "acme/x".into(),
            version: "1.0.0".into(),
            installed_at: "2026-12-01T00:00:00Z".into(),
            changed_at: 0,
            digest: "sha256:0".into(),
            publisher_key: "acme-key-1".into(),
            region: "region-h".into(),
            audience: Vec::new(),
            redirect_uris: vec![uri.into()],
            launch_url: Some("https://app.example/launch".into()),
            origins: Vec::new(),
            requested: Vec::new(),
            grant: Vec::new(),
            purpose: None,
            jwks: None,
        });
        assert!(refused.is_err(), "{uri}");
        assert!(clients.get("x").is_none());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fhir_api_advertises_the_authorization_server_and_it_takes_requests_by_post() {
    let world = World::start().await;
    let get = |path: String| {
        let http = world.http.clone();
        async move {
            http.get(path)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let smart = get(format!(
        "{}/.well-known/smart-configuration",
        world.fhir_base
    ))
    .await;
    let issuer = format!("{}/oauth2", world.public_url);
    assert_eq!(smart["issuer"], issuer.as_str());
    assert_eq!(
        smart["authorization_endpoint"],
        format!("{issuer}/authorize")
    );
    assert_eq!(smart["token_endpoint"], format!("{issuer}/token"));
    assert_eq!(smart["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(
        smart["grant_types_supported"],
        json!(["authorization_code", "refresh_token", "client_credentials"])
    );
    assert_eq!(
        smart["token_endpoint_auth_signing_alg_values_supported"],
        json!(["RS384", "ES384"])
    );
    for capability in [
        "launch-ehr",
        "launch-standalone",
        "authorize-post",
        "client-public",
        "context-ehr-patient",
        "context-ehr-encounter",
        "context-standalone-patient",
        "permission-offline",
        "permission-patient",
        "permission-v2",
        "sso-openid-connect",
    ] {
        assert!(
            smart["capabilities"]
                .as_array()
                .unwrap()
                .contains(&json!(capability)),
            "{capability}"
        );
    }
    // The keys it names verify its tokens; its OpenID discovery names the same.
    let discovery = get(format!("{issuer}/.well-known/openid-configuration")).await;
    assert_eq!(discovery["issuer"], issuer.as_str());
    assert_eq!(discovery["jwks_uri"], smart["jwks_uri"]);
    let jwks = get(smart["jwks_uri"].as_str().unwrap().to_owned()).await;
    assert_eq!(jwks["keys"][0]["alg"], "ES256");
    let metadata = get(format!("{}/metadata", world.fhir_base)).await;
    let uris = &metadata["rest"][0]["security"]["extension"][0];
    assert_eq!(
        uris["url"],
        "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
    );

    // authorize-post: the same request as a form.
    let url = url::Url::parse(&world.authorize_url(VERIFIER, &[])).unwrap();
    let form: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let response = world
        .http
        .post(format!("{issuer}/authorize"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 303);
    let location = response.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with(&world.provider.issuer),
        "to the identity provider: {location}"
    );
}

/// The AuditEvents recorded so far, as stored.
async fn audit_events(world: &World) -> Vec<Value> {
    let rows = sqlx::query("SELECT content FROM resources WHERE resource_type = 'AuditEvent'")
        .fetch_all(world.database.pool())
        .await
        .unwrap();
    rows.iter()
        .map(|row| serde_json::from_str(&sqlx::Row::get::<String, _>(row, 0)).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_apps_reads_are_audited_under_its_name_and_its_live_token_dies_with_its_revocation_or_removal()
 {
    let world = World::start().await;
    let code = world.code(VERIFIER, &[]);
    let (_, tokens) = world.exchange(&code, VERIFIER).await;
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(world.observations(access).await, 200);
    let events = audit_events(&world).await;
    let by_app = events
        .iter()
        .filter(|event| event.to_string().contains("Device/acme.bp-diary"))
        .count();
    assert!(
        by_app >= 1,
        "the app is named in its reads' audit records: {events:?}"
    );

    // Revoking the authorization (RFC 7009, with the access token itself).
    let revoked = world
        .http
        .post(format!("{}/oauth2/revoke", world.public_url))
        .form(&[("token", access), ("client_id", CLIENT_ID)])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status().as_u16(), 200);
    assert_eq!(
        world.observations(access).await,
        401,
        "at once, on this node"
    );

    // Removing the app (the region uninstalls or revokes it).
    let code = world.code(VERIFIER, &[]);
    let (_, tokens) = world.exchange(&code, VERIFIER).await;
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(world.observations(access).await, 200);
    assert!(world.server.clients().remove(CLIENT_ID));
    assert_eq!(world.observations(access).await, 401, "the app is gone");
    let (status, refused) = world
        .refresh(tokens["refresh_token"].as_str().unwrap())
        .await;
    assert_oauth_error(status, &refused, 401, "invalid_client");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revocation_on_one_node_reaches_another_node_on_the_same_database_within_two_seconds() {
    let world = World::start().await;
    // A second node: its own authorization server and FHIR API on the same database and keys.
    let other = AuthorizationServer::open(
        world.database.clone(),
        world.dir.path(),
        OAuthConfig {
            public_url: world.public_url.clone(),
            fhir_base: world.fhir_base.clone(),
            identity_provider: None,
            clients: Default::default(),
        },
    )
    .await
    .unwrap();
    other
        .clients()
        .register((*world.server.clients().get(CLIENT_ID).unwrap()).clone())
        .unwrap();
    let verifier = healthcloud_platform::auth::TokenIssuer::generate("unused")
        .verifier()
        .with_authorization_server(
            other.endpoints().issuer(),
            other.keys().clone(),
            other.clients().clone(),
        );
    let code = world.code(VERIFIER, &[]);
    let (_, tokens) = world.exchange(&code, VERIFIER).await;
    let access = tokens["access_token"].as_str().unwrap();
    assert!(
        verifier.verify_request(access).await.is_ok(),
        "valid on the other node"
    );
    world
        .http
        .post(format!("{}/oauth2/revoke", world.public_url))
        .form(&[("token", access), ("client_id", CLIENT_ID)])
        .send()
        .await
        .unwrap();
    let revoked_at = std::time::Instant::now();
    while verifier.verify_request(access).await.is_ok() {
        assert!(
            revoked_at.elapsed() < std::time::Duration::from_secs(2),
            "the other node still takes the token 2 s after its revocation"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        verifier.verify_request(access).await.unwrap_err(),
        healthcloud_platform::auth::AuthError::Revoked
    );
}

/// A confidential client's ES384 key pair: its private key (PKCS#8) and its public JWK.
fn es384_key(kid: &str) -> (Vec<u8>, Value) {
    use ring::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    let rng = ring::rand::SystemRandom::new();
    let der = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, der.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref();
    let b64 = |bytes: &[u8]| {
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
    };
    let jwk = json!({"kty": "EC", "crv": "P-384", "x": b64(&point[1..49]), "y": b64(&point[49..]),
        "kid": kid, "alg": "ES384", "use": "sig"});
    (der.as_ref().to_vec(), jwk)
}

/// A client assertion of `client_id` for `audience`, signed with `key` as `kid`.
fn assertion(
    key: &[u8],
    kid: &str,
    client_id: &str,
    audience: &str,
    jti: &str,
    ttl: i64,
) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES384);
    header.kid = Some(kid.into());
    let now = chrono::Utc::now().timestamp();
    jsonwebtoken::encode(
        &header,
        &json!({"iss": client_id, "sub": client_id, "aud": audience, "jti": jti, "exp": now + ttl}),
        &jsonwebtoken::EncodingKey::from_ec_der(key),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_confidential_client_authenticates_with_its_registered_key_once_per_assertion() {
    let world = World::start().await;
    let (key, jwk) = es384_key("k1");
    let (other_key, _) = es384_key("k1");
    let mut client = (*world.server.clients().get(CLIENT_ID).unwrap()).clone();
    client.client_id = "bp-confidential".into();
    client.jwks = Some(json!({"keys": [jwk]}));
    world.server.clients().register(client).unwrap();
    let token_url = world.server.endpoints().token();
    let code = world.code(VERIFIER, &[("client_id", "bp-confidential")]);
    let exchange = |assertion: Option<String>| {
        let code = code.clone();
        let mut form = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code),
            ("redirect_uri", REDIRECT_URI.to_owned()),
            ("code_verifier", VERIFIER.to_owned()),
            ("client_id", "bp-confidential".to_owned()),
        ];
        if let Some(assertion) = assertion {
            form.push((
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
            ));
            form.push(("client_assertion", assertion));
        }
        form
    };
    let post = |form: Vec<(&'static str, String)>| {
        let http = world.http.clone();
        let url = token_url.clone();
        async move {
            let response = http.post(url).form(&form).send().await.unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        }
    };
    // Without an assertion, with one for another audience, signed by another key, expired,
    // or living too long: refused, and the code is not spent.
    let refused = [
        None,
        Some(assertion(
            &key,
            "k1",
            "bp-confidential",
            "https://other.example/token",
            "j1",
            60,
        )),
        Some(assertion(
            &other_key,
            "k1",
            "bp-confidential",
            &token_url,
            "j2",
            60,
        )),
        Some(assertion(
            &key,
            "k1",
            "bp-confidential",
            &token_url,
            "j3",
            -120,
        )),
        Some(assertion(
            &key,
            "k1",
            "bp-confidential",
            &token_url,
            "j4",
            3600,
        )),
        Some(assertion(
            &key,
            "k2",
            "bp-confidential",
            &token_url,
            "j5",
            60,
        )),
        Some(assertion(&key, "k1", CLIENT_ID, &token_url, "j6", 60)),
    ];
    for (index, attempt) in refused.into_iter().enumerate() {
        let (status, answer) = post(exchange(attempt)).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (401, Some("invalid_client")),
            "attempt {index}: {answer}"
        );
    }
    let valid = assertion(&key, "k1", "bp-confidential", &token_url, "j-ok", 60);
    let (status, tokens) = post(exchange(Some(valid.clone()))).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(
        world
            .observations(tokens["access_token"].as_str().unwrap())
            .await,
        200
    );
    // The same assertion again (on a refresh): refused.
    let replayed = vec![
        ("grant_type", "refresh_token".to_owned()),
        (
            "refresh_token",
            tokens["refresh_token"].as_str().unwrap().to_owned(),
        ),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned(),
        ),
        ("client_assertion", valid),
    ];
    let (status, answer) = post(replayed).await;
    assert_oauth_error(status, &answer, 401, "invalid_client");
    let fresh = vec![
        ("grant_type", "refresh_token".to_owned()),
        (
            "refresh_token",
            tokens["refresh_token"].as_str().unwrap().to_owned(),
        ),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned(),
        ),
        (
            "client_assertion",
            assertion(&key, "k1", "bp-confidential", &token_url, "j-next", 60),
        ),
    ];
    let (status, answer) = post(fresh).await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_service_gets_a_token_for_its_granted_system_scopes_with_its_key_only() {
    let world = World::start().await;
    let (key, jwk) = es384_key("backend-1");
    let mut client = (*world.server.clients().get(CLIENT_ID).unwrap()).clone();
    client.client_id = "acme.research@region-h".into();
    client.app = "acme/research".into();
    client.redirect_uris = Vec::new();
    client.launch_url = None;
    client.jwks = Some(json!({"keys": [jwk]}));
    client.grant = vec![scope("system/Observation.rs")];
    client.purpose = Some(healthcloud_platform::scope::Purpose::Quality);
    world.server.clients().register(client.clone()).unwrap();
    let token_url = world.server.endpoints().token();
    let jti = std::sync::atomic::AtomicUsize::new(0);
    let ask = |scope: &str, signed: bool| {
        let mut form = vec![
            ("grant_type", "client_credentials".to_owned()),
            ("scope", scope.to_owned()),
        ];
        if signed {
            let n = jti.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            form.push((
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
            ));
            form.push((
                "client_assertion",
                assertion(
                    &key,
                    "backend-1",
                    "acme.research@region-h",
                    &token_url,
                    &format!("b{n}"),
                    60,
                ),
            ));
        } else {
            form.push(("client_id", "acme.research@region-h".into()));
        }
        let http = world.http.clone();
        let url = token_url.clone();
        async move {
            let response = http.post(url).form(&form).send().await.unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        }
    };
    let (status, tokens) = ask("system/Observation.rs system/Condition.rs", true).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(
        tokens["scope"], "system/Observation.rs",
        "only what the region granted"
    );
    assert!(tokens.get("refresh_token").is_none());
    let token = tokens["access_token"].as_str().unwrap();
    let search = |path: &'static str, token: String| {
        let http = world.http.clone();
        let url = format!("{}/{path}", world.fhir_base);
        async move {
            let response = http.get(url).bearer_auth(token).send().await.unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        }
    };
    // Every patient's readings, as the region granted; nothing else.
    let (status, bundle) = search("Observation", token.to_owned()).await;
    assert_eq!(status, 200, "{bundle}");
    let mut ids: Vec<&str> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|entry| entry["resource"]["id"].as_str())
        .collect();
    ids.sort();
    assert_eq!(ids, ["a-bp-1", "b-bp-1"]);
    assert_eq!(search("Condition", token.to_owned()).await.0, 403);
    assert_eq!(search("AuditEvent", token.to_owned()).await.0, 403);
    // An install granting no purpose of use reaches no data: a patient's opt-out of a
    // purpose could not reach it.
    client.purpose = None;
    world.server.clients().register(client.clone()).unwrap();
    let (status, refused) = search("Observation", token.to_owned()).await;
    assert_eq!(status, 403, "{refused}");
    assert!(refused.to_string().contains("purpose"), "{refused}");
    client.purpose = Some(healthcloud_platform::scope::Purpose::Quality);
    world.server.clients().register(client).unwrap();
    // Without its key, or for nothing granted: no token.
    let (status, refused) = ask("system/Observation.rs", false).await;
    assert_oauth_error(status, &refused, 401, "invalid_client");
    let (status, refused) = ask("system/Condition.rs", true).await;
    assert_oauth_error(status, &refused, 400, "invalid_scope");
    // A public app may not act without a user.
    let public = world
        .http
        .post(&token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("scope", "system/Observation.rs"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(public.status().as_u16(), 400);
    // A system token minted with the development key names no installed app: refused.
    let minted = world.dev_token(
        healthcloud_platform::auth::Role::System,
        healthcloud_platform::auth::TokenRequest {
            scope: Some("system/Observation.rs".into()),
            ..Default::default()
        },
    );
    assert_eq!(search("Observation", minted).await.0, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_patient_who_opts_out_of_a_smart_app_is_closed_to_its_live_token() {
    let world = World::start().await;
    let code = world.code(VERIFIER, &[]);
    let (_, tokens) = world.exchange(&code, VERIFIER).await;
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(world.observations(access).await, 200);
    // Åse opts the app out, as a citizen through the FHIR API.
    let citizen = world.dev_token(
        healthcloud_platform::auth::Role::Citizen,
        healthcloud_platform::auth::TokenRequest {
            patient: Some("pat-a".into()),
            ..Default::default()
        },
    );
    let consent = healthcloud_integration::consent::opt_out("pat-a", "Device/acme.bp-diary", &[]);
    let posted = world
        .http
        .post(format!("{}/Consent", world.fhir_base))
        .bearer_auth(citizen)
        .header("content-type", "application/fhir+json")
        .body(consent.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        posted.status().as_u16(),
        201,
        "{}",
        posted.text().await.unwrap()
    );
    assert_eq!(
        world.observations(access).await,
        403,
        "denied by her consent"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reinstall_a_revoked_version_or_a_changed_install_ends_what_was_authorized_before() {
    let world = World::start().await;
    let clients = world.server.clients();
    let installed = (*clients.get(CLIENT_ID).unwrap()).clone();
    let authorize = async || {
        let code = world.code(VERIFIER, &[]);
        world.exchange(&code, VERIFIER).await.1
    };
    // The install changes (a grant, a version): live access tokens end, refreshing works.
    let tokens = authorize().await;
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(world.observations(access).await, 200);
    let mut changed = installed.clone();
    changed.changed_at = chrono::Utc::now().timestamp() + 1;
    clients.register(changed).unwrap();
    assert_eq!(world.observations(access).await, 401);
    clients.register(installed.clone()).unwrap();
    // Uninstalled and installed again: the authorizations before it end.
    let tokens = authorize().await;
    let mut reinstalled = installed.clone();
    reinstalled.installed_at = "2026-12-07T00:00:00Z".into();
    clients.register(reinstalled).unwrap();
    let (status, refused) = world
        .refresh(tokens["refresh_token"].as_str().unwrap())
        .await;
    assert_oauth_error(status, &refused, 400, "invalid_grant");
    clients.register(installed.clone()).unwrap();
    // The store revokes 1.0.0 and the region installs 1.1.0: 1.0.0's authorizations end.
    let tokens = authorize().await;
    clients.revoke_version("acme/bp-diary", "1.0.0");
    let mut upgraded = installed.clone();
    upgraded.version = "1.1.0".into();
    clients.register(upgraded).unwrap();
    let (status, refused) = world
        .refresh(tokens["refresh_token"].as_str().unwrap())
        .await;
    assert_oauth_error(status, &refused, 400, "invalid_grant");
    assert!(
        refused["error_description"]
            .as_str()
            .unwrap()
            .contains("revoked")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_token_presented_by_another_app_is_refused_without_being_spent() {
    let world = World::start().await;
    let mut other = (*world.server.clients().get(CLIENT_ID).unwrap()).clone();
    other.client_id = "some-other-app".into();
    world.server.clients().register(other).unwrap();
    let code = world.code(VERIFIER, &[]);
    let (_, tokens) = world.exchange(&code, VERIFIER).await;
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    let (status, refused) = world
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", "some-other-app"),
        ])
        .await;
    assert_oauth_error(status, &refused, 400, "invalid_grant");
    let (status, refreshed) = world.refresh(refresh_token).await;
    assert_eq!(status, 200, "the app's own token still works: {refreshed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clinician_picks_the_patient_in_a_standalone_launch_and_only_the_apps_audience_signs_in()
{
    let world = World::start().await;
    let url = world.authorize_url(VERIFIER, &[]);
    let answer = world.browse_with(
        &url,
        "dr-hansen",
        "dr-hansen-password",
        &["allow", "patient=pat-b"],
    );
    let consent = answer["consent_page"].as_str().unwrap_or_default();
    assert!(
        consent.contains("name=\"patient\""),
        "the consent page asks which patient: {consent}"
    );
    let code = callback_query(&answer)["code"].clone();
    let (status, tokens) = world.exchange(&code, VERIFIER).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["patient"], "pat-b");
    let bundle: Value = world
        .http
        .get(format!("{}/Observation?patient=pat-b", world.fhir_base))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bundle["entry"][0]["resource"]["id"], "b-bp-1", "{bundle}");
    // The app is for patients and clinicians: a citizen cannot authorize it.
    let query = callback_query(&world.browse(&url, "citizen-aase", "allow"));
    assert_eq!(query["error"], "access_denied");
    assert!(query["error_description"].contains("not for a citizen"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_endpoint_answers_cors_for_installed_apps_pages_only() {
    let world = World::start().await;
    let token_url = world.server.endpoints().token();
    let preflight = async |origin: &str| {
        let response = world
            .http
            .request(reqwest::Method::OPTIONS, &token_url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
            .await
            .unwrap();
        response
            .headers()
            .get("access-control-allow-origin")
            .map(|value| value.to_str().unwrap().to_owned())
    };
    assert_eq!(
        preflight("http://127.0.0.1:9").await.as_deref(),
        Some("http://127.0.0.1:9"),
        "the installed app's own pages"
    );
    assert_eq!(preflight("https://attacker.example").await, None);
    assert_eq!(preflight("null").await, None);
    assert!(world.server.clients().remove(CLIENT_ID));
    assert_eq!(
        preflight("http://127.0.0.1:9").await,
        None,
        "once it is removed"
    );
}

//! The `healthcloud` command, run as a real process: data generation, Synthea-style import and
//! token minting.

mod common;

use std::path::Path;
use std::process::Command;

use common::{free_port, healthcloud, healthcloud_in, http_get, succeed, wait_for};

use healthcloud_integration::query::{PageLimits, SearchQuery};
use healthcloud_integration::store::EmbeddedStore;
use healthcloud_platform::auth::{Role, TokenIssuer};
use serde_json::{Value, json};

async fn store(dir: &Path) -> EmbeddedStore {
    let url = format!("sqlite://{}", dir.join("healthcloud.db").display());
    EmbeddedStore::new(healthcloud_integration::open_database(&url).await.unwrap())
}

async fn search(store: &EmbeddedStore, resource_type: &str, params: &[(&str, &str)]) -> Vec<Value> {
    let params: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let query = SearchQuery::parse(resource_type, &params, PageLimits::default()).unwrap();
    store
        .search(&query)
        .await
        .unwrap()
        .resources
        .iter()
        .map(|r| serde_json::from_str(&r.content).unwrap())
        .collect()
}

#[tokio::test]
async fn generate_is_deterministic_per_seed() {
    let (one, two, other) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    for (dir, seed) in [(&one, "5"), (&two, "5"), (&other, "6")] {
        let out = succeed(&[
            "data",
            "generate",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--patients",
            "12",
            "--seed",
            seed,
        ]);
        assert!(out.contains("generated"), "{out}");
    }
    let strip_meta = |mut resources: Vec<Value>| {
        for r in &mut resources {
            r.as_object_mut().unwrap().remove("meta");
        }
        resources
    };
    let patients = |dir| async move {
        strip_meta(search(&store(dir).await, "Patient", &[("_count", "100")]).await)
    };
    let first = patients(one.path()).await;
    assert_eq!(first.len(), 12);
    assert_eq!(
        first,
        patients(two.path()).await,
        "same seed, same patients"
    );
    assert_ne!(
        first,
        patients(other.path()).await,
        "another seed, other patients"
    );
    let cpr = first[0]["identifier"][0].clone();
    assert_eq!(cpr["system"], "urn:oid:1.2.208.176.1.2");
    let day: u32 = cpr["value"].as_str().unwrap()[..2].parse().unwrap();
    assert!(
        (61..=91).contains(&day),
        "CPR-like values are clearly synthetic (day + 60): {cpr}"
    );
}

#[tokio::test]
async fn synthea_style_bundles_import_and_bad_ones_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("fhir");
    std::fs::create_dir(&input).unwrap();
    let npi = "http://hl7.org/fhir/sid/us-npi|9999962229";
    let org = "https://github.com/synthetichealth/synthea|dd406540-fa97-3a90-858e-0a0ea61cf07b";
    // As Synthea names them: patient files sort before the shared ones, yet must come after.
    let patient_bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:d5582579-7193-4866-5560-a01e723b6552",
         "resource": {"resourceType": "Patient", "id": "d5582579-7193-4866-5560-a01e723b6552",
            "meta": {"profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]},
            "identifier": [{"system": "https://github.com/synthetichealth/synthea", "value": "d5582579-7193-4866-5560-a01e723b6552"}],
            "name": [{"use": "official", "family": "Gerlach374", "given": ["Lindsay928"], "prefix": ["Mr."]}],
            "gender": "male", "birthDate": "1950-10-24", "multipleBirthBoolean": false},
         "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:3699e7e7-8b1b-4a68-8011-e7a166598566",
         "resource": {"resourceType": "Encounter", "id": "3699e7e7-8b1b-4a68-8011-e7a166598566", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": "urn:uuid:d5582579-7193-4866-5560-a01e723b6552", "display": "Mr. Lindsay928 Gerlach374"},
            "participant": [{"individual": {"reference": format!("Practitioner?identifier={npi}"), "display": "Dr. Alphonso102 Nienow652"}}],
            "period": {"start": "1979-01-02T11:44:52-05:00", "end": "1979-01-02T11:59:52-05:00"},
            "location": [{"location": {"reference": "Location?identifier=https://github.com/synthetichealth/synthea|cb6521ac", "display": "PCP74147"}}],
            "serviceProvider": {"reference": format!("Organization?identifier={org}"), "display": "PCP74147"}},
         "request": {"method": "POST", "url": "Encounter"}},
        {"fullUrl": "urn:uuid:9a01d04d-86de-75e6-5c07-a4ba74966e68",
         "resource": {"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
            "subject": {"reference": "urn:uuid:d5582579-7193-4866-5560-a01e723b6552"},
            "encounter": {"reference": "urn:uuid:3699e7e7-8b1b-4a68-8011-e7a166598566"},
            "effectiveDateTime": "1979-01-02T11:44:52-05:00", "issued": "1979-01-02T11:44:52.558-05:00",
            "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]}, "valueQuantity": {"value": 120, "unit": "mm[Hg]"}}]},
         "request": {"method": "POST", "url": "Observation"}},
        {"fullUrl": "urn:uuid:50a0789d-acf1-9448-58f3-5edce8b59e73",
         "resource": {"resourceType": "Claim", "status": "active", "use": "claim", "patient": {"reference": "urn:uuid:d5582579-7193-4866-5560-a01e723b6552"},
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "institutional"}]},
            "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority", "code": "normal"}]},
            "insurance": [{"sequence": 1, "focal": true, "coverage": {"display": "Cigna Health"}}],
            "provider": {"reference": format!("Organization?identifier={org}")}, "created": "1979-01-02T11:59:52-05:00"},
         "request": {"method": "POST", "url": "Claim"}},
        {"fullUrl": "urn:uuid:11111111-0000-4000-8000-000000000001",
         "resource": {"resourceType": "Provenance", "target": [{"reference": "urn:uuid:d5582579-7193-4866-5560-a01e723b6552"}],
            "recorded": "1979-01-02T11:59:52.558-05:00", "agent": [{"who": {"reference": "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|0000000000"}}]},
         "request": {"method": "POST", "url": "Provenance"}}
    ]});
    std::fs::write(
        input.join("Abe604_Gerlach374_d5582579.json"),
        patient_bundle.to_string(),
    )
    .unwrap();
    let hospital = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"fullUrl": "urn:uuid:dd406540-fa97-3a90-858e-0a0ea61cf07b",
         "resource": {"resourceType": "Organization", "identifier": [{"system": "https://github.com/synthetichealth/synthea", "value": "dd406540-fa97-3a90-858e-0a0ea61cf07b"}], "name": "PCP74147"},
         "request": {"method": "POST", "url": "Organization", "ifNoneExist": "identifier=https://github.com/synthetichealth/synthea|dd406540-fa97-3a90-858e-0a0ea61cf07b"}}
    ]});
    std::fs::write(
        input.join("hospitalInformation1625926618830.json"),
        hospital.to_string(),
    )
    .unwrap();
    let practitioners = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"fullUrl": "urn:uuid:0000016d-3a85-4cca-0000-0000000000a0",
         "resource": {"resourceType": "Practitioner", "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "9999962229"}], "name": [{"family": "Nienow652", "given": ["Alphonso102"]}]},
         "request": {"method": "POST", "url": "Practitioner", "ifNoneExist": "identifier=http://hl7.org/fhir/sid/us-npi|9999962229"}}
    ]});
    std::fs::write(
        input.join("practitionerInformation1625926618830.json"),
        practitioners.to_string(),
    )
    .unwrap();
    let broken = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient", "birthDate": "24/10/1950"}, "request": {"method": "POST", "url": "Patient"}}]});
    std::fs::write(input.join("Broken_Patient.json"), broken.to_string()).unwrap();

    let data_dir = dir.path().join("data");
    let output = healthcloud(&[
        "data",
        "import",
        "--data-dir",
        data_dir.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "one bundle was bad, so the command fails"
    );
    assert!(
        stderr.contains("Broken_Patient.json")
            && stderr.contains("Bundle.entry[0].resource.birthDate"),
        "{stderr}"
    );
    assert!(stderr.contains("1 of 4 bundles were rejected"), "{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("imported 7 resources"), "{stdout}");

    let store = store(&data_dir).await;
    let patients = search(&store, "Patient", &[("name", "gerlach")]).await;
    assert_eq!(patients.len(), 1);
    let patient_id = patients[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        search(&store, "Patient", &[("birthdate", "1950-10-24")])
            .await
            .len(),
        1,
        "the broken patient was not kept"
    );
    let encounters = search(&store, "Encounter", &[("patient", &patient_id)]).await;
    let encounter = &encounters[0];
    let organization = search(&store, "Organization", &[("name", "pcp74147")]).await;
    assert_eq!(
        encounter["serviceProvider"]["reference"],
        format!("Organization/{}", organization[0]["id"].as_str().unwrap())
    );
    assert!(
        encounter["participant"][0]["individual"]["reference"]
            .as_str()
            .unwrap()
            .starts_with("Practitioner/")
    );
    // A reference to a location that was never imported stays as a logical reference.
    assert_eq!(
        encounter["location"][0]["location"]["identifier"]["value"],
        "cb6521ac"
    );
    assert!(
        encounter["location"][0]["location"]
            .get("reference")
            .is_none()
    );
    let observations = search(
        &store,
        "Observation",
        &[("patient", &patient_id), ("code", "85354-9")],
    )
    .await;
    assert_eq!(
        observations[0]["encounter"]["reference"],
        format!("Encounter/{}", encounter["id"].as_str().unwrap())
    );
}

#[test]
fn token_command_mints_verifiable_tokens_and_names_mistakes() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let token = succeed(&[
        "token",
        "--data-dir",
        data_dir,
        "--role",
        "citizen",
        "--patient",
        "p1",
        "--ttl",
        "-60",
    ]);
    let issuer = TokenIssuer::dev(dir.path()).unwrap();
    assert!(
        issuer.verifier().verify(token.trim()).is_err(),
        "negative ttl gives an expired token"
    );
    let token = succeed(&[
        "token",
        "--data-dir",
        data_dir,
        "--role",
        "clinician",
        "--scope",
        "user/Observation.rs",
        "--sub",
        "dr-x",
    ]);
    let principal = issuer.verifier().verify(token.trim()).unwrap();
    assert_eq!(
        (principal.claims.role, principal.claims.sub.as_str()),
        (Role::Clinician, "dr-x")
    );
    // Workforce tokens always name who acts, and every token names the services it is for.
    assert_eq!(
        principal.claims.fhir_user.as_deref(),
        Some("Practitioner/dr-x")
    );
    assert_eq!(
        principal.claims.aud,
        [
            "http://127.0.0.1:8080/fhir/r4",
            "http://127.0.0.1:8080/apps/"
        ]
    );
    let for_one_app = succeed(&[
        "token",
        "--data-dir",
        data_dir,
        "--role",
        "patient",
        "--patient",
        "p1",
        "--public-url",
        "https://hc.example/",
        "--audience",
        "https://hc.example/apps/r1/examples/hello/",
    ]);
    let principal = issuer.verifier().verify(for_one_app.trim()).unwrap();
    assert_eq!(
        principal.claims.aud,
        ["https://hc.example/apps/r1/examples/hello/"]
    );

    let missing_patient = healthcloud(&["token", "--data-dir", data_dir, "--role", "citizen"]);
    assert!(!missing_patient.status.success());
    assert!(String::from_utf8_lossy(&missing_patient.stderr).contains("--patient"));
    let bad_scope = healthcloud(&[
        "token",
        "--data-dir",
        data_dir,
        "--role",
        "clinician",
        "--scope",
        "user/Observation.sr",
    ]);
    assert!(
        String::from_utf8_lossy(&bad_scope.stderr)
            .contains("malformed scope 'user/Observation.sr'")
    );
    let bad_role = healthcloud(&["token", "--data-dir", data_dir, "--role", "doctor"]);
    assert!(String::from_utf8_lossy(&bad_role.stderr).contains("unknown role 'doctor'"));
}

#[test]
fn up_accepts_only_the_configured_issuer() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let data_dir = data_dir.to_str().unwrap();
    succeed(&[
        "data",
        "generate",
        "--data-dir",
        data_dir,
        "--patients",
        "3",
    ]);
    let idp = TokenIssuer::generate("https://idp.region.example");
    let key = dir.path().join("idp.pub.pem");
    std::fs::write(&key, idp.public_pem()).unwrap();
    let port = free_port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_healthcloud"))
        .args([
            "up",
            "--data-dir",
            data_dir,
            "--addr",
            &format!("127.0.0.1:{port}"),
        ])
        .args([
            "--issuer",
            "https://idp.region.example",
            "--issuer-key",
            key.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(port, "healthcloud up");
    let regional = idp
        .mint(
            Role::Clinician,
            healthcloud_platform::auth::TokenRequest {
                audience: vec![format!("http://127.0.0.1:{port}/fhir/r4")],
                ..Default::default()
            },
        )
        .unwrap();
    let dev = succeed(&["token", "--data-dir", data_dir, "--role", "clinician"]);
    let with_regional = http_get(port, "/fhir/r4/Patient", &regional);
    let with_dev = http_get(port, "/fhir/r4/Patient", dev.trim());
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(with_regional.0, 200, "{}", with_regional.1);
    assert_eq!(
        with_dev.0, 401,
        "development tokens are refused once an issuer is configured"
    );
}

/// `--cors-origin` lets one browser app's pages call the FHIR API: its preflight is answered
/// with its origin, another site's is not; an origin with a path, or a trusted issuer that is
/// no URL, is refused at start.
#[test]
fn serve_answers_cors_for_the_configured_origin_only() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let port = free_port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_healthcloud"))
        .args(["serve", "integration", "--data-dir", data_dir])
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .args(["--cors-origin", "https://app.example.dk"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(port, "serve integration");
    let preflight = |origin: &str| {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            stream,
            "OPTIONS /fhir/r4/Patient HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: {origin}\r\n\
             Access-Control-Request-Method: GET\r\n\
             Access-Control-Request-Headers: authorization\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response.to_ascii_lowercase()
    };
    let allowed = preflight("https://app.example.dk");
    let other = preflight("https://evil.example");
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(allowed.starts_with("http/1.1 200"), "{allowed}");
    assert!(
        allowed.contains("access-control-allow-origin: https://app.example.dk"),
        "{allowed}"
    );
    assert!(!other.contains("access-control-allow-origin"), "{other}");

    let refused = healthcloud(&[
        "serve",
        "integration",
        "--data-dir",
        data_dir,
        "--cors-origin",
        "https://app.example.dk/launch",
    ]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("scheme://host[:port]"), "{stderr}");

    // A trusted identity provider is named by its issuer URL.
    let refused = healthcloud(&[
        "serve",
        "integration",
        "--data-dir",
        data_dir,
        "--trust-issuer",
        "idp.region.example",
    ]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("is not an issuer URL"), "{stderr}");
}

/// `up --addr 0.0.0.0:PORT` is reachable from other machines: the launch page, which mints a
/// token of any role for whoever asks, is not served there, and `up` says so.
#[test]
fn up_on_every_address_serves_no_launch_page() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    succeed(&[
        "data",
        "generate",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--patients",
        "3",
    ]);
    let port = free_port();
    let up = common::Up::start_listening(&data_dir, None, "0.0.0.0", port, None);
    let said = up.line_containing("launch page:");
    assert!(
        said.contains("not served") && said.contains("not a loopback address"),
        "{said}"
    );
    for path in ["/", "/citizen/", "/store-admin/", "/regions/hovedstaden/"] {
        let (status, body) = http_get(port, path, "");
        assert_eq!(status, 404, "{path}: {body}");
    }
    let launch = post_form(port, "/launch", "role=store-admin&region=&patient=&app=");
    assert!(
        launch.starts_with("HTTP/1.1 404") || launch.starts_with("HTTP/1.1 405"),
        "{launch}"
    );
    assert!(
        !launch.to_ascii_lowercase().contains("set-cookie"),
        "{launch}"
    );
    // Everything else is served as usual.
    let (status, _) = http_get(port, "/fhir/r4/metadata", "");
    assert_eq!(status, 200);
}

/// A form POST over loopback as a script sends it; the whole response.
fn post_form(port: u16, path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: localhost:{port}\r\nOrigin: http://localhost:{port}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// The vendor quickstart as the README writes it: new → build → run, then the app answers
/// over HTTP with the synthetic patient's data; a manifest that stops requesting what the
/// code imports fails the build, naming the import.
#[test]
fn the_vendor_loop_builds_checks_and_runs_a_new_app() {
    let dir = tempfile::tempdir().unwrap();
    let created = healthcloud_in(dir.path(), &["app", "new", "my-app", "--publisher", "acme"]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let app = dir.path().join("my-app");
    for file in ["Cargo.toml", "src/lib.rs", "healthcloud.toml"] {
        assert!(app.join(file).is_file(), "{file} missing");
    }
    let again = healthcloud_in(dir.path(), &["app", "new", "my-app"]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    let built = healthcloud_in(dir.path(), &["app", "build", "my-app"]);
    let stdout = String::from_utf8_lossy(&built.stdout);
    assert!(
        built.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&built.stderr)
    );
    assert!(stdout.contains("built acme/my-app 0.1.0"), "{stdout}");

    let port = free_port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_healthcloud"))
        .args([
            "app",
            "run",
            "my-app",
            "--addr",
            &format!("127.0.0.1:{port}"),
        ])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Read stdout to its end: a closed pipe would fail the server's next line.
    let stdout = std::io::BufReader::new(server.stdout.take().unwrap());
    let (tokens, token) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(stdout).map_while(Result::ok) {
            if let Some(value) = line.trim().strip_prefix("token:") {
                let _ = tokens.send(value.trim().to_owned());
            }
        }
    });
    let token = token
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("app run prints a token");
    wait_for(port, "app run");
    let page = http_get(port, "/apps/local/acme/my-app/", &token);
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(page.0, 200, "{}", page.1);
    assert!(page.1.contains("You are looking at"), "{}", page.1);

    let manifest = app.join("healthcloud.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let without_capability = text.split("[[capability]]").next().unwrap().to_owned();
    std::fs::write(&manifest, without_capability).unwrap();
    let refused = healthcloud_in(dir.path(), &["app", "build", "my-app"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("healthcloud:platform/fhir@0.2.0")
            && stderr.contains("needs a data capability"),
        "{stderr}"
    );
}

#[test]
fn rotate_signing_key_adds_a_key_and_retires_the_oldest_beyond_three() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let data = data_dir.to_str().unwrap();
    let new_key = |printed: &str| {
        printed
            .lines()
            .find_map(|line| line.strip_prefix("new signing key "))
            .unwrap_or_else(|| panic!("no new key: {printed}"))
            .to_owned()
    };
    let mut kids = Vec::new();
    for _ in 0..3 {
        let printed = succeed(&["rotate-signing-key", "--data-dir", data]);
        assert!(
            printed.contains("signs from 2 minutes from now"),
            "{printed}"
        );
        kids.push(new_key(&printed));
    }
    // The first rotation created the directory with a first key; three are kept.
    let printed = succeed(&["rotate-signing-key", "--data-dir", data]);
    assert!(printed.contains("retired key"), "{printed}");
    kids.push(new_key(&printed));
    let kept = healthcloud_platform::auth::keys::SigningKeys::open(&data_dir.join("oauth-keys"))
        .unwrap()
        .kids();
    assert_eq!(kept, kids[1..], "{printed}");
}

//! Region administration end to end, through public HTTP and the `healthcloud` CLI only,
//! against a real `healthcloud up` (SQLite, and PostgreSQL when
//! `HEALTHCLOUD_TEST_POSTGRES_URL` is set): a vendor publishes an app, a region installs it
//! with a narrower grant than it requests, and every later change — a patient's opt-out, a
//! revoked grant, the store's kill switch, an upgrade that asks for more — shows where
//! clinicians, citizens and admins notice it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::{Up, command_in, free_port, succeed_in};
use healthcloud_runtime::regions::admin::InstallView;
use serde_json::{Value, json};

/// How soon a change must reach the apps: the product promises "within seconds" and the
/// issue's acceptance check says two.
const PROPAGATION: Duration = Duration::from_secs(2);

const VITALS: &str = "acme/vitals";
const PATIENT_READ: &str = "patient/Patient.r";
const VITAL_SIGNS: &str = "patient/Observation.s?category=vital-signs";
const CONDITIONS: &str = "patient/Condition.s?clinical-status=active";
const MEDICATIONS: &str = "patient/MedicationStatement.s?status=active";

/// The vendor's app: the patient's vital signs (the page fails with the call's status when
/// they are not readable), and counts of active conditions and medications, each shown as
/// withheld when the platform denies it. It shows the version serving the request.
const VITALS_SOURCE: &str = r##"//! vitals: the patient in context's vital signs, active conditions and active medications,
//! each as far as the platform allows.

use healthcloud_sdk::model::Patient;
use healthcloud_sdk::{Request, Response, Router, context, fhir, html};

healthcloud_sdk::serve!(handle);

fn handle(request: Request) -> Response {
    Router::new().get("/", home).handle(request)
}

/// How many resources of `resource_type` match `name=value`, or why they could not be read.
fn count(resource_type: &str, name: &str, value: &str) -> Result<u32, fhir::Error> {
    Ok(fhir::search(resource_type)
        .param(name, value)
        .count(1)
        .first_page::<serde_json::Value>()?
        .total)
}

fn section(id: &str, what: &str, counted: Result<u32, fhir::Error>) -> String {
    match counted {
        Ok(n) => format!("<p id=\"{id}\">{n} {what}</p>"),
        Err(error) => format!(
            "<p id=\"{id}\">{what} withheld: {}</p>",
            html::escape(&error.to_string())
        ),
    }
}

fn home(_request: Request) -> Response {
    let launch = context::launch();
    let Some(id) = launch.patient else {
        return Response::text("no patient in context").with_status(400);
    };
    let version = format!(
        "<p id=\"version\">{} {}</p>",
        html::escape(&launch.app_id),
        html::escape(&launch.app_version)
    );
    let vitals = match count("Observation", "category", "vital-signs") {
        Ok(n) => n,
        Err(error) => {
            return Response::html(format!(
                "{version}<p id=\"vitals\">{}</p>",
                html::escape(&error.to_string())
            ))
            .with_status(error.status_code());
        }
    };
    let name = match fhir::read::<Patient>("Patient", &id) {
        Ok(patient) => patient.display_name().unwrap_or(id),
        Err(error) => return Response::text(error.to_string()).with_status(error.status_code()),
    };
    Response::html(format!(
        "<!doctype html><title>Vitals</title>{version}<p id=\"patient\">{}</p>\
         <p id=\"vitals\">{vitals} vital-sign readings</p>{}{}",
        html::escape(&name),
        section("conditions", "active conditions", count("Condition", "clinical-status", "active")),
        section(
            "medications",
            "active medications",
            count("MedicationStatement", "status", "active")
        ),
    ))
}
"##;

/// The vendor's manifest at `version`, requesting `capabilities`.
fn vitals_manifest(version: &str, capabilities: &[&str]) -> String {
    let mut manifest = format!(
        r#"[app]
publisher = "acme"
id = "vitals"
version = "{version}"
name = "Vitals"
description = "The patient's vital signs at a glance, with active conditions."
audience = ["clinician"]
"#
    );
    for capability in capabilities {
        manifest.push_str(&format!(
            "\n[[capability]]\nname = \"{capability}\"\njustification = \"Shows it on the patient's page.\"\n"
        ));
    }
    manifest
}

#[tokio::test(flavor = "multi_thread")]
async fn region_admins_run_installs_with_the_cli_and_users_see_each_change_on_sqlite() {
    regions_end_to_end(None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn region_admins_run_installs_with_the_cli_and_users_see_each_change_on_postgres() {
    let Some(url) = healthcloud_platform::testing::postgres_database("hc_regions_test").await
    else {
        return;
    };
    regions_end_to_end(Some(&url)).await;
}

/// A running `healthcloud up`, killed when the test ends, even by a failed assertion.
struct Running(Option<Up>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(up) = self.0.take() {
            up.kill();
        }
    }
}

/// The test's view of the system: the server, its data directory (for development tokens)
/// and a working directory for the vendor's files.
struct World {
    url: String,
    data_dir: PathBuf,
    /// The server's database, when not the data directory's SQLite file.
    database_url: Option<String>,
    work: PathBuf,
    http: reqwest::Client,
}

impl World {
    /// `healthcloud token --role ROLE ARGS…` on the server's data directory.
    fn token(&self, role: &str, args: &[&str]) -> String {
        let data_dir = self.data_dir.to_str().unwrap();
        let mut all = vec![
            "token",
            "--data-dir",
            data_dir,
            "--role",
            role,
            "--public-url",
            &self.url,
        ];
        all.extend_from_slice(args);
        succeed_in(&self.work, &all).trim().to_owned()
    }

    /// `healthcloud security-log --sub SUB` on the server's database: the operator's view.
    fn security_log(&self, sub: &str) -> String {
        let data_dir = self.data_dir.to_str().unwrap();
        let mut all = vec!["security-log", "--data-dir", data_dir, "--sub", sub];
        if let Some(url) = &self.database_url {
            all.extend(["--database-url", url.as_str()]);
        }
        succeed_in(&self.work, &all)
    }

    /// `healthcloud ARGS…` against the server, with `token`.
    fn run(&self, token: &str, args: &[&str]) -> Output {
        command_in(&self.work, args)
            .env("HEALTHCLOUD_SERVER", &self.url)
            .env("HEALTHCLOUD_TOKEN", token)
            .output()
            .expect("the healthcloud binary runs")
    }

    /// Runs a command that must succeed; its stdout.
    fn ok(&self, token: &str, args: &[&str]) -> String {
        let output = self.run(token, args);
        assert!(
            output.status.success(),
            "{args:?} failed:\n{}{}",
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Runs a command that must fail; its stderr.
    fn refused(&self, token: &str, args: &[&str]) -> String {
        let output = self.run(token, args);
        assert!(
            !output.status.success(),
            "{args:?} succeeded:\n{}",
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8(output.stderr).unwrap()
    }

    async fn get(&self, path: &str, token: &str) -> (u16, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    async fn get_json(&self, path: &str, token: &str) -> Value {
        let (status, body) = self.get(path, token).await;
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Asks `path` until `expected` holds of the answer, failing once `PROPAGATION` has passed
    /// since `since`.
    async fn until(
        &self,
        since: Instant,
        path: &str,
        token: &str,
        what: &str,
        expected: impl Fn(u16, &str) -> bool,
    ) -> (u16, String) {
        loop {
            let (status, body) = self.get(path, token).await;
            if expected(status, &body) {
                return (status, body);
            }
            assert!(
                since.elapsed() < PROPAGATION,
                "{path} did not show that {what} within {PROPAGATION:?}; it answers {status}:\n{body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Patients with blood pressure readings, as a clinician finds them in the FHIR API.
    async fn patients_with_readings(&self, clinician: &str) -> Vec<String> {
        let bundle = self
            .get_json(
                "/fhir/r4/Observation?code=http://loinc.org|85354-9&_sort=-date&_count=100",
                clinician,
            )
            .await;
        let mut patients: Vec<String> = Vec::new();
        for entry in bundle["entry"].as_array().into_iter().flatten() {
            let reference = entry["resource"]["subject"]["reference"].as_str().unwrap();
            let id = reference.strip_prefix("Patient/").unwrap().to_owned();
            if !patients.contains(&id) {
                patients.push(id);
            }
        }
        patients
    }

    /// Writes the vendor's app at `version`, requesting `capabilities`, and publishes it.
    fn publish_vitals(&self, publisher: &str, version: &str, capabilities: &[&str]) {
        let dir = self.work.join("vitals");
        std::fs::write(dir.join("src/lib.rs"), VITALS_SOURCE).unwrap();
        std::fs::write(
            dir.join("healthcloud.toml"),
            vitals_manifest(version, capabilities),
        )
        .unwrap();
        let published = self.ok(
            publisher,
            &["app", "publish", "vitals", "--key", "acme.key"],
        );
        assert!(
            published.contains(&format!("published {VITALS}@{version}")),
            "{published}"
        );
    }
}

fn app_path(region: &str, app: &str) -> String {
    format!("/apps/{region}/{app}/")
}

/// A Consent by which `patient` opts the app `device` (`Device/publisher.app`) out.
fn opt_out(patient: &str, device: &str) -> Value {
    json!({
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/consentscope",
            "code": "patient-privacy",
        }]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{patient}")},
        "policyRule": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "OPTIN",
        }]},
        "provision": {
            "type": "permit",
            "provision": [{"type": "deny", "actor": [{
                "role": {"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                    "code": "IRCP",
                }]},
                "reference": {"reference": device},
            }]}],
        },
    })
}

async fn regions_end_to_end(database_url: Option<&str>) {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let up = Running(Some(Up::start_on(
        data.path(),
        database_url,
        free_port(),
        None,
    )));
    let world = World {
        url: up.0.as_ref().unwrap().url.clone(),
        data_dir: data.path().to_owned(),
        database_url: database_url.map(str::to_owned),
        work: work.path().to_owned(),
        http: reqwest::Client::new(),
    };

    let clinician = world.token("clinician", &["--region", "hovedstaden"]);
    let patients = world.patients_with_readings(&clinician).await;
    assert!(
        patients.len() >= 2,
        "the demo data has patients with readings: {patients:?}"
    );
    let (opted_out, other) = (&patients[0], &patients[1]);
    let in_hovedstaden = |patient: &str| {
        world.token(
            "clinician",
            &["--region", "hovedstaden", "--patient", patient],
        )
    };
    let in_midtjylland = |patient: &str| {
        world.token(
            "clinician",
            &["--region", "midtjylland", "--patient", patient],
        )
    };
    let hovedstaden_admin = world.token(
        "region-admin",
        &["--region", "hovedstaden", "--sub", "anna"],
    );
    let midtjylland_admin = world.token(
        "region-admin",
        &["--region", "midtjylland", "--sub", "mads"],
    );

    vendor_publishes(&world);
    let vitals_h = app_path("hovedstaden", VITALS);
    let vitals_m = app_path("midtjylland", VITALS);
    let (clinician_1, clinician_2) = (in_hovedstaden(opted_out), in_hovedstaden(other));

    // Install with a strict subset of the requested capabilities; one never requested is
    // refused by name, and nothing is installed.
    let install = |grants: &[&str]| {
        let mut args = vec![
            "region",
            "install",
            "--region",
            "hovedstaden",
            "--app",
            "acme/vitals@1.0.0",
        ];
        for grant in grants {
            args.extend(["--grant", grant]);
        }
        world.run(&hovedstaden_admin, &args)
    };
    let refused = install(&[PATIENT_READ, VITAL_SIGNS, MEDICATIONS]);
    assert!(!refused.status.success());
    let refused = String::from_utf8_lossy(&refused.stderr);
    assert!(
        refused.contains(&format!(
            "'{MEDICATIONS}' is not requested by acme/vitals 1.0.0"
        )),
        "{refused}"
    );
    let (status, body) = world.get(&vitals_h, &clinician_1).await;
    assert_eq!(status, 404, "a refused install installs nothing: {body}");
    let installed = install(&[PATIENT_READ, VITAL_SIGNS]);
    let out = String::from_utf8_lossy(&installed.stdout);
    assert!(installed.status.success(), "{out}");
    assert!(
        out.contains("installed acme/vitals 1.0.0 in region hovedstaden")
            && out.contains(&format!("not granted: {CONDITIONS}"))
            && out.contains(&format!("{}{vitals_h}", world.url)),
        "{out}"
    );

    // A clinician opens it for a patient and sees their data; what the region did not grant
    // is withheld on the page.
    let (status, page) = world.get(&vitals_h, &clinician_1).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("acme/vitals 1.0.0") && !page.contains("\">0 vital-sign readings"),
        "{page}"
    );
    assert!(page.contains(" vital-sign readings"), "{page}");
    assert!(page.contains("active conditions withheld"), "{page}");

    // The patient opts the app out: its data calls are denied, and the citizen reads that in
    // their own audit log.
    let citizen = world.token("citizen", &["--patient", opted_out]);
    let consent = world
        .http
        .post(format!("{}/fhir/r4/Consent", world.url))
        .bearer_auth(&citizen)
        .header("content-type", "application/fhir+json")
        .body(opt_out(opted_out, "Device/acme.vitals").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(consent.status(), 201, "{}", consent.text().await.unwrap());
    let (status, page) = world.get(&vitals_h, &clinician_1).await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("denied"), "{page}");
    let log = world
        .get_json(
            &format!("/fhir/r4/AuditEvent?patient={opted_out}&_count=200"),
            &citizen,
        )
        .await;
    let by_vitals: Vec<&Value> = log["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|entry| &entry["resource"])
        .filter(|event| event.to_string().contains("Device/acme.vitals"))
        .collect();
    assert!(
        by_vitals.iter().any(|event| event["outcome"] == "0"),
        "the citizen sees the app's allowed reads: {log}"
    );
    assert!(
        by_vitals.iter().any(|event| event["outcome"] != "0"),
        "the citizen sees the app's denied read: {log}"
    );

    // Another patient's data is there until the region revokes the capability.
    let (status, page) = world.get(&vitals_h, &clinician_2).await;
    assert_eq!(status, 200, "{page}");
    let unchanged = world.ok(
        &hovedstaden_admin,
        &[
            "region",
            "revoke",
            "--region",
            "hovedstaden",
            "--app",
            VITALS,
            "--capability",
            CONDITIONS,
        ],
    );
    assert!(
        unchanged.contains(&format!("was not granted {CONDITIONS}: nothing to revoke")),
        "{unchanged}"
    );
    let since = Instant::now();
    let revoked = world.ok(
        &hovedstaden_admin,
        &[
            "region",
            "revoke",
            "--region",
            "hovedstaden",
            "--app",
            VITALS,
            "--capability",
            VITAL_SIGNS,
        ],
    );
    assert!(
        revoked.contains(&format!(
            "revoked {VITAL_SIGNS} from acme/vitals in region hovedstaden"
        )) && revoked.contains(&format!("granted:     {PATIENT_READ}\n")),
        "{revoked}"
    );
    let (_, page) = world
        .until(
            since,
            &vitals_h,
            &clinician_2,
            "the vital signs are denied",
            |status, _| status == 403,
        )
        .await;
    assert!(page.contains("denied"), "{page}");
    let granted = world.ok(
        &hovedstaden_admin,
        &[
            "region",
            "grant",
            "--region",
            "hovedstaden",
            "--app",
            VITALS,
            "--capability",
            VITAL_SIGNS,
        ],
    );
    assert!(
        granted.contains(&format!(
            "granted {VITAL_SIGNS} to acme/vitals in region hovedstaden"
        )),
        "{granted}"
    );
    let (status, page) = world.get(&vitals_h, &clinician_2).await;
    assert_eq!(status, 200, "granted again: {page}");

    // Midtjylland installs the same version granting nothing: it runs, and gets no data.
    let clinician_m = in_midtjylland(other);
    let installed = world.ok(
        &midtjylland_admin,
        &[
            "region",
            "install",
            "--region",
            "midtjylland",
            "--app",
            "acme/vitals@1.0.0",
        ],
    );
    assert!(
        installed.contains("installed acme/vitals 1.0.0 in region midtjylland")
            && installed.contains("granted:     nothing"),
        "{installed}"
    );
    let (status, page) = world.get(&vitals_m, &clinician_m).await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("denied"), "{page}");

    // The store's kill switch: both regions answer 410 within seconds.
    let store_admin = world.token("store-admin", &[]);
    let since = Instant::now();
    let out = world.ok(
        &store_admin,
        &[
            "store",
            "revoke-version",
            "--app",
            "acme/vitals@1.0.0",
            "--reason",
            "counts readings of other patients",
        ],
    );
    assert!(
        out.contains("revoked acme/vitals@1.0.0: counts readings of other patients"),
        "{out}"
    );
    for (path, token) in [(&vitals_h, &clinician_2), (&vitals_m, &clinician_m)] {
        let (_, page) = world
            .until(since, path, token, "the version is revoked", |status, _| {
                status == 410
            })
            .await;
        assert!(page.contains("counts readings of other patients"), "{page}");
    }
    let listed = world.ok(
        &hovedstaden_admin,
        &["region", "list", "--region", "hovedstaden"],
    );
    assert!(
        listed.lines().any(|line| line.starts_with(VITALS)
            && line.contains("revoked (counts readings of other patients)")),
        "{listed}"
    );

    // The vendor fixes it in 1.0.1, asking for nothing new: hovedstaden upgrades at once
    // and serves again; midtjylland, still on 1.0.0, does not.
    let vendor = world.token("publisher", &["--sub", "acme"]);
    world.publish_vitals(&vendor, "1.0.1", &[PATIENT_READ, VITAL_SIGNS, CONDITIONS]);
    let upgraded = world.ok(
        &hovedstaden_admin,
        &[
            "region",
            "upgrade",
            "--region",
            "hovedstaden",
            "--app",
            "acme/vitals@1.0.1",
        ],
    );
    assert!(
        upgraded.contains("upgraded acme/vitals in region hovedstaden from 1.0.0 to 1.0.1"),
        "{upgraded}"
    );
    let (status, page) = world.get(&vitals_h, &clinician_2).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("acme/vitals 1.0.1"), "{page}");
    assert_eq!(world.get(&vitals_m, &clinician_m).await.0, 410);

    // 1.1.0 asks for medications too: the upgrade waits for approval, saying what it asks
    // for and how to approve, and 1.0.1 keeps serving meanwhile.
    world.publish_vitals(
        &vendor,
        "1.1.0",
        &[PATIENT_READ, VITAL_SIGNS, CONDITIONS, MEDICATIONS],
    );
    let upgrade = [
        "region",
        "upgrade",
        "--region",
        "hovedstaden",
        "--app",
        "acme/vitals@1.1.0",
    ];
    let pending = world.ok(&hovedstaden_admin, &upgrade);
    assert!(
        pending.contains(
            "acme/vitals 1.1.0 waits for approval in region hovedstaden: it asks for what 1.0.1 did not"
        ) && pending.contains(&format!("  {MEDICATIONS}\n"))
            && pending.contains("acme/vitals 1.0.1 keeps serving")
            && pending.contains(&format!(
                "healthcloud region upgrade --region hovedstaden --app acme/vitals@1.1.0 --approve --grant '{MEDICATIONS}'"
            )),
        "{pending}"
    );
    let (status, page) = world.get(&vitals_h, &clinician_2).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("acme/vitals 1.0.1") && page.contains("active medications withheld"),
        "{page}"
    );
    let listed = world.ok(
        &hovedstaden_admin,
        &["region", "list", "--region", "hovedstaden"],
    );
    assert!(
        listed.lines().any(|line| line.starts_with(VITALS)
            && line.contains(&format!(
                "serving; pending upgrade 1.1.0 asking for {MEDICATIONS}"
            ))),
        "{listed}"
    );
    let mut approve = upgrade.to_vec();
    approve.extend(["--approve", "--grant", MEDICATIONS]);
    let approved = world.ok(&hovedstaden_admin, &approve);
    assert!(
        approved.contains("upgraded acme/vitals in region hovedstaden from 1.0.1 to 1.1.0"),
        "{approved}"
    );
    let (status, page) = world.get(&vitals_h, &clinician_2).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("acme/vitals 1.1.0")
            && page.contains(" active medications</p>")
            && !page.contains("active medications withheld"),
        "{page}"
    );
    let json = world.ok(
        &hovedstaden_admin,
        &["region", "list", "--region", "hovedstaden", "--json"],
    );
    let installs: Vec<InstallView> = serde_json::from_str(&json).unwrap();
    let vitals = installs.iter().find(|view| view.app == VITALS).unwrap();
    assert_eq!(
        (
            vitals.version.as_str(),
            vitals.serving,
            vitals.pending.is_none()
        ),
        ("1.1.0", true, true),
        "{json}"
    );
    assert!(vitals.granted.iter().any(|c| c == MEDICATIONS), "{json}");

    // Midtjylland uninstalls its revoked install: the app is gone there.
    let uninstalled = world.ok(
        &midtjylland_admin,
        &[
            "region",
            "uninstall",
            "--region",
            "midtjylland",
            "--app",
            VITALS,
        ],
    );
    assert!(
        uninstalled.contains("uninstalled acme/vitals 1.0.0 from region midtjylland"),
        "{uninstalled}"
    );
    assert_eq!(world.get(&vitals_m, &clinician_m).await.0, 404);

    demo_acceptance(&world, &hovedstaden_admin, &midtjylland_admin, other).await;
}

/// keygen → the store admin approves the publisher → app new → the vendor's source and
/// manifest (1.0.0) → publish.
fn vendor_publishes(world: &World) {
    let dir = &world.work;
    succeed_in(dir, &["keygen", "--out", "acme.key"]);
    let store_admin = world.token("store-admin", &[]);
    let approved = world.ok(
        &store_admin,
        &[
            "store",
            "approve-publisher",
            "--publisher",
            "acme",
            "--name",
            "Acme Health",
            "--key",
            "acme.key.pub",
        ],
    );
    assert!(approved.contains("approved publisher acme"), "{approved}");
    succeed_in(dir, &["app", "new", "vitals", "--publisher", "acme"]);
    assert!(Path::new(dir).join("vitals/src/lib.rs").exists());
    let vendor = world.token("publisher", &["--sub", "acme"]);
    world.publish_vitals(&vendor, "1.0.0", &[PATIENT_READ, VITAL_SIGNS, CONDITIONS]);
}

/// The issue's acceptance check on the demo installs: revoking hovedstaden's vital signs
/// grant of the blood pressure monitor takes the readings off its page within two seconds
/// while midtjylland's page still shows them; and midtjylland's admin cannot touch
/// hovedstaden's installs, which the operator's security log records (hovedstaden's own audit
/// log holds only its admins' actions, so outsiders cannot flood it).
async fn demo_acceptance(
    world: &World,
    hovedstaden_admin: &str,
    midtjylland_admin: &str,
    patient: &str,
) {
    let bp_h = app_path("hovedstaden", "examples/bp-monitor");
    let bp_m = app_path("midtjylland", "examples/bp-monitor");
    let token_h = world.token(
        "clinician",
        &["--region", "hovedstaden", "--patient", patient],
    );
    let token_m = world.token(
        "clinician",
        &["--region", "midtjylland", "--patient", patient],
    );
    let shows_readings = |page: &str| page.contains("id=\"latest\">Latest: <strong>");
    for (path, token) in [(&bp_h, &token_h), (&bp_m, &token_m)] {
        let (status, page) = world.get(path, token).await;
        assert!(status == 200 && shows_readings(&page), "{path}: {page}");
    }

    let since = Instant::now();
    world.ok(
        hovedstaden_admin,
        &[
            "region",
            "revoke",
            "--region",
            "hovedstaden",
            "--app",
            "examples/bp-monitor",
            "--capability",
            VITAL_SIGNS,
        ],
    );
    let (status, page) = world
        .until(
            since,
            &bp_h,
            &token_h,
            "the readings are withheld",
            |status, page| status != 200 && !shows_readings(page),
        )
        .await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("denied"), "{page}");
    let (status, page) = world.get(&bp_m, &token_m).await;
    assert!(
        status == 200 && shows_readings(&page),
        "midtjylland's grant is its own: {page}"
    );

    let foreign = world.refused(
        midtjylland_admin,
        &["region", "list", "--region", "hovedstaden"],
    );
    assert!(
        foreign.contains("your token administers region midtjylland, not hovedstaden")
            && foreign.contains("healthcloud token --role region-admin --region hovedstaden"),
        "{foreign}"
    );
    let (status, body) = world
        .get("/admin/v1/regions/hovedstaden/installs", midtjylland_admin)
        .await;
    assert_eq!(status, 403, "{body}");
    let no_token = world.refused("", &["region", "list", "--region", "hovedstaden"]);
    assert!(
        no_token.contains("healthcloud token --role region-admin --region hovedstaden"),
        "{no_token}"
    );

    let audit = world.ok(
        hovedstaden_admin,
        &["region", "audit", "--region", "hovedstaden"],
    );
    assert!(
        audit.lines().any(|line| line.contains("anna")
            && line.contains("revoke")
            && line.contains("examples/bp-monitor")
            && line.contains("allowed")),
        "{audit}"
    );
    assert!(!audit.contains("mads"), "{audit}");
    let security = world.security_log("mads");
    assert!(
        security
            .lines()
            .any(|line| line.contains("region-admin mads")
                && line.contains("region midtjylland")
                && line.contains("/admin/v1/regions/hovedstaden/installs")
                && line.contains("your token administers region midtjylland")),
        "{security}"
    );
}

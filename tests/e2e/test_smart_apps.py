"""An outside SMART web app, as a vendor ships it and a region uses it: the vendor publishes
its signed manifest to the store, a region admin installs it (the install is its client
registration), a patient who signs in at the region's identity provider (npm's
oidc-provider, tests/upstream/identity-provider.mjs) launches it with Python's `fhirclient`,
and the store's revocation of the version ends its live token within two seconds.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import shutil
import subprocess
import tarfile
import threading
import sys
import time
from pathlib import Path

import pytest
import requests

from conftest import (
    REPO_ROOT,
    Server,
    _env,
    blood_pressure_counts,
    free_port,
    headless_chromium,
    running_up,
)

UPSTREAM = REPO_ROOT / "tests" / "upstream"
SMART = Path(__file__).resolve().parent / "smart"
REGION = "hovedstaden"
APP = "acme/bp-diary"
CLIENT_ID = "acme.bp-diary@hovedstaden"
SCOPE = "launch/patient openid fhirUser offline_access patient/Patient.rs patient/Observation.rs"


class IdentityProvider:
    """The region's OpenID Connect provider, with users written to a file it reads at every
    sign-in."""

    def __init__(self, work: Path, redirect_uri: str):
        if not (UPSTREAM / "node_modules" / "oidc-provider").exists():
            subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=UPSTREAM, check=True, timeout=600,
            )
        self.secret_file = work / "idp-secret"
        self.secret_file.write_text("e2e-idp-secret")
        self.users_file = work / "idp-users.json"
        self.users_file.write_text("{}")
        self.process = subprocess.Popen(
            [
                "node", str(UPSTREAM / "identity-provider.mjs"),
                "--client", f"healthcloud:{self.secret_file}",
                "--redirect-uri", redirect_uri,
                "--users", str(self.users_file),
            ],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        line = self.process.stdout.readline().strip()
        if not line.startswith("listening "):
            self.process.kill()
            pytest.fail(f"the identity provider did not start: {line!r}")
        self.issuer = line.removeprefix("listening ")

    def add_user(self, login: str, password: str, claims: dict) -> None:
        users = json.loads(self.users_file.read_text())
        users[login] = {"password": password, "claims": claims}
        self.users_file.write_text(json.dumps(users))

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def world(healthcloud_bin: Path, tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("healthcloud-smart")
    port = free_port()
    provider = IdentityProvider(work, f"http://127.0.0.1:{port}/oauth2/login/callback")
    try:
        with running_up(
            healthcloud_bin, work, port=port,
            extra_args=(
                "--identity-provider", provider.issuer,
                "--identity-provider-secret", str(provider.secret_file),
            ),
        ) as srv:
            yield srv, provider, work
    finally:
        provider.stop()


def healthcloud(srv: Server, work: Path, token: str, *args: str) -> str:
    """`healthcloud ARGS…` against the server with `token`; its stdout (it must succeed)."""
    env = _env() | {"HEALTHCLOUD_SERVER": srv.root, "HEALTHCLOUD_TOKEN": token}
    done = subprocess.run(
        [str(srv.binary), *args], cwd=work, capture_output=True, text=True, timeout=120, env=env,
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stderr}{done.stdout}"
    return done.stdout


@pytest.fixture(scope="module")
def vendor(world) -> str:
    """The vendor acme, approved by the store with a key of its own: its publisher token."""
    srv, _, work = world
    subprocess.run([str(srv.binary), "keygen", "--out", "acme.key"], cwd=work, check=True, env=_env())
    healthcloud(
        srv, work, srv.token("store-admin"), "store", "approve-publisher", "--publisher", "acme",
        "--name", "Acme Health", "--key", "acme.key.pub",
    )
    return srv.token("publisher", sub="acme")


def ship(world, vendor: str, app_id: str, app_url: str, redirect_uri: str, scopes: list[str]) -> str:
    """The vendor publishes SMART web app `acme/<app_id>` 1.0.0 (its signed manifest), and
    Hovedstaden's admin installs it granting `scopes`: its client id there."""
    srv, _, work = world
    app_dir = work / app_id
    app_dir.mkdir()
    capabilities = "".join(
        f'\n[[capability]]\nname = "{scope}"\njustification = "To chart your blood pressure."\n'
        for scope in scopes
    )
    (app_dir / "healthcloud.toml").write_text(f'''
[app]
publisher = "acme"
id = "{app_id}"
version = "1.0.0"
name = "Blood pressure {app_id}"
description = "Charts blood pressure."
audience = ["patient", "clinician"]

[smart]
launch_url = "{app_url}"
redirect_uris = ["{redirect_uri}"]
{capabilities}''')
    published = healthcloud(srv, work, vendor, "app", "publish", app_id, "--key", "acme.key")
    assert f"published acme/{app_id}@1.0.0" in published, published
    admin = srv.token("region-admin", sub="anna", region=REGION)
    grants = [argument for scope in scopes for argument in ("--grant", scope)]
    installed = healthcloud(
        srv, work, admin, "region", "install", "--region", REGION, "--app", f"acme/{app_id}@1.0.0", *grants,
    )
    assert f"installed acme/{app_id} 1.0.0 in region {REGION}" in installed, installed
    listed = requests.get(
        f"{srv.root}/admin/v1/regions/{REGION}/installs/acme/{app_id}",
        headers={"Authorization": f"Bearer {admin}"}, timeout=30,
    ).json()
    assert listed["serving"] is True, listed
    return listed["smart_client"]["client_id"]


def test_an_outside_smart_app_is_published_installed_launched_and_revoked(world, vendor):
    srv, provider, work = world
    store_admin = srv.token("store-admin")
    app_port = free_port()
    redirect_uri = f"http://127.0.0.1:{app_port}/bp-diary/callback"
    client_id = ship(
        world, vendor, "bp-diary", f"http://127.0.0.1:{app_port}/bp-diary/launch", redirect_uri,
        ["patient/Observation.rs", "patient/Patient.rs"],
    )
    assert client_id == CLIENT_ID

    # A patient signs in at the region's provider and launches the app with fhirclient.
    patient, readings = blood_pressure_counts(srv, srv.token("clinician", sub="e2e-clinician")).most_common(1)[0]
    provider.add_user("aase", "aase-password", {"role": "patient", "patient": patient})
    done = subprocess.run(
        [sys.executable, str(SMART / "standalone_launch.py"), srv.base, CLIENT_ID, redirect_uri,
         "aase", "aase-password", SCOPE],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    launched = json.loads(done.stdout)
    assert launched["patient"] == patient
    assert len(launched["observations"]) >= readings
    assert launched["refreshed"] is True
    token = launched["access_token"]

    def status() -> int:
        return requests.get(
            f"{srv.base}/Observation", params={"patient": patient},
            headers={"Authorization": f"Bearer {token}"}, timeout=30,
        ).status_code

    assert status() == 200
    # The app's browser pages may call the FHIR API (CORS for its origin).
    preflight = requests.options(
        f"{srv.base}/Observation",
        headers={"Origin": f"http://127.0.0.1:{app_port}", "Access-Control-Request-Method": "GET",
                 "Access-Control-Request-Headers": "authorization"},
        timeout=30,
    )
    assert preflight.headers.get("access-control-allow-origin") == f"http://127.0.0.1:{app_port}"

    # The store revokes the version: the live token stops working within two seconds.
    healthcloud(
        srv, work, store_admin, "store", "revoke-version", "--app", f"{APP}@1.0.0",
        "--reason", "leaks data to an analytics service",
    )
    revoked_at = time.monotonic()
    while status() == 200:
        assert time.monotonic() - revoked_at < 2, "the app's token still works 2 s after the revocation"
        time.sleep(0.05)
    assert status() == 401
    refreshed = requests.post(
        f"{srv.root}/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": launched["refresh_token"], "client_id": CLIENT_ID},
        timeout=30,
    )
    assert refreshed.status_code == 401, refreshed.text
    preflight = requests.options(
        f"{srv.base}/Observation",
        headers={"Origin": f"http://127.0.0.1:{app_port}", "Access-Control-Request-Method": "GET"},
        timeout=30,
    )
    assert "access-control-allow-origin" not in preflight.headers


FHIRCLIENT_JS = "2.6.3"


def fhirclient_bundle() -> Path:
    """The browser build of SMART's JavaScript client (npm `fhirclient`), from its package
    tarball, kept under target/."""
    cached = REPO_ROOT / "target" / "smart-app" / f"fhir-client-{FHIRCLIENT_JS}.min.js"
    if not cached.exists():
        cached.parent.mkdir(parents=True, exist_ok=True)
        packed = subprocess.run(
            ["npm", "pack", f"fhirclient@{FHIRCLIENT_JS}", "--silent", "--pack-destination", str(cached.parent)],
            capture_output=True, text=True, timeout=300, check=True,
        )
        tarball = cached.parent / packed.stdout.strip().splitlines()[-1]
        with tarfile.open(tarball) as archive:
            member = archive.extractfile("package/build/fhir-client.min.js")
            cached.write_bytes(member.read())
        tarball.unlink()
    return cached


LAUNCH_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>BP chart: launching</title>
<script src="fhir-client.min.js"></script></head>
<body><main><p>Launching…</p></main>
<script>
FHIR.oauth2.authorize({
  clientId: "%(client_id)s",
  scope: "launch openid fhirUser patient/Observation.rs patient/Patient.rs",
  redirectUri: "index.html",
}).catch((error) => { document.body.textContent = "launch failed: " + error; });
</script></body></html>
"""

INDEX_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>BP chart</title>
<script src="fhir-client.min.js"></script></head>
<body><main><h1>BP chart</h1><p id="result">loading…</p></main>
<script>
FHIR.oauth2.ready()
  .then((client) => client.request("Observation?code=http://loinc.org|85354-9&patient=" + client.patient.id,
                                   { pageLimit: 0, flat: true })
    .then((readings) => {
      const result = document.getElementById("result");
      result.dataset.patient = client.patient.id;
      result.dataset.readings = readings.length;
      result.textContent = readings.length + " blood pressure readings";
    }))
  .catch((error) => { document.getElementById("result").textContent = "failed: " + error; });
</script></body></html>
"""


@contextlib.contextmanager
def serving(directory: Path, port: int):
    """The app's static pages, served over loopback HTTP on `port`."""
    handler = functools.partial(QuietHandler, directory=str(directory))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        httpd.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_javascript_fhirclient_in_a_browser_completes_an_ehr_launch_from_the_launch_page(world, vendor):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    srv, provider, work = world
    app_port = free_port()
    origin = f"http://127.0.0.1:{app_port}"
    client_id = ship(
        world, vendor, "bp-chart", f"{origin}/launch.html", f"{origin}/index.html",
        ["patient/Observation.rs", "patient/Patient.rs"],
    )
    site = work / "bp-chart-site"
    site.mkdir()
    shutil.copy(fhirclient_bundle(), site / "fhir-client.min.js")
    (site / "launch.html").write_text(LAUNCH_HTML % {"client_id": client_id})
    (site / "index.html").write_text(INDEX_HTML)
    provider.add_user(
        "dr-hansen", "dr-hansen-password",
        {"role": "clinician", "fhirUser": "Practitioner/dr-hansen", "region": REGION},
    )
    clinician = srv.token("clinician", sub="e2e-clinician")
    counts = blood_pressure_counts(srv, clinician)

    with serving(site, app_port), headless_chromium() as driver:
        def until(condition, what: str):
            try:
                return WebDriverWait(driver, 30).until(condition)
            except Exception:
                logs = driver.get_log("browser")
                pytest.fail(
                    f"{what}: not reached; at {driver.current_url}\n"
                    f"{driver.page_source[:3000]}\nconsole: {logs}"
                )

        # The EHR: the launch page, a clinician of Hovedstaden opening the app for a patient.
        driver.get(f"{srv.root}/")
        Select(driver.find_element(By.ID, "role")).select_by_value("clinician")
        Select(driver.find_element(By.ID, "region")).select_by_value(REGION)
        patient_select = Select(driver.find_element(By.ID, "patient"))
        patient = patient_select.options[0].get_attribute("value")
        patient_select.select_by_value(patient)
        Select(driver.find_element(By.ID, "app")).select_by_value("acme/bp-chart")
        driver.find_element(By.CSS_SELECTOR, "form.launch button[type=submit]").click()
        # The app sends the browser to authorize; the region's provider asks who it is.
        until(lambda d: d.find_elements(By.NAME, "password"), "the provider's sign-in form")
        driver.find_element(By.NAME, "login").send_keys("dr-hansen")
        driver.find_element(By.NAME, "password").send_keys("dr-hansen-password")
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        # healthcloud's consent page, in plain words.
        until(lambda d: d.find_elements(By.CSS_SELECTOR, "button[value=allow]"), "the consent page")
        assert "Read and search the patient's Observation records." in driver.page_source
        driver.find_element(By.CSS_SELECTOR, "button[value=allow]").click()
        # Back in the app: it read the patient's readings through CORS.
        result = until(
            lambda d: d.find_element(By.ID, "result")
            if d.current_url.startswith(origin) and d.find_elements(By.ID, "result")
            and d.find_element(By.ID, "result").get_attribute("data-readings") is not None
            else None,
            "the app's page with the readings",
        )
        assert result.get_attribute("data-patient") == patient, driver.page_source
        assert int(result.get_attribute("data-readings")) == counts[patient], driver.page_source

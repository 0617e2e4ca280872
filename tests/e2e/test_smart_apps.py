"""An outside SMART web app, as a vendor ships it and a region uses it: the vendor publishes
its signed manifest to the store, a region admin installs it (the install is its client
registration), a patient who signs in at the region's identity provider (npm's
oidc-provider, tests/upstream/identity-provider.mjs) launches it with Python's `fhirclient`,
and the store's revocation of the version ends its live token within two seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from conftest import REPO_ROOT, Server, _env, blood_pressure_counts, free_port, running_up

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


def test_an_outside_smart_app_is_published_installed_launched_and_revoked(world):
    srv, provider, work = world
    # The vendor: a key the store approves, and the app's signed manifest published.
    subprocess.run([str(srv.binary), "keygen", "--out", "acme.key"], cwd=work, check=True, env=_env())
    store_admin = srv.token("store-admin")
    healthcloud(
        srv, work, store_admin, "store", "approve-publisher", "--publisher", "acme",
        "--name", "Acme Health", "--key", "acme.key.pub",
    )
    app_port = free_port()
    redirect_uri = f"http://127.0.0.1:{app_port}/bp-diary/callback"
    app_dir = work / "bp-diary"
    app_dir.mkdir()
    (app_dir / "healthcloud.toml").write_text(f'''
[app]
publisher = "acme"
id = "bp-diary"
version = "1.0.0"
name = "Blood pressure diary"
description = "Charts your blood pressure at home."
audience = ["patient"]

[smart]
launch_url = "http://127.0.0.1:{app_port}/bp-diary/launch"
redirect_uris = ["{redirect_uri}"]

[[capability]]
name = "patient/Observation.rs"
justification = "To chart your blood pressure."

[[capability]]
name = "patient/Patient.rs"
justification = "To show whose chart it is."
''')
    published = healthcloud(
        srv, work, srv.token("publisher", sub="acme"), "app", "publish", "bp-diary", "--key", "acme.key",
    )
    assert f"published {APP}@1.0.0" in published, published

    # The region: the install is the app's client registration.
    admin = srv.token("region-admin", sub="anna", region=REGION)
    installed = healthcloud(
        srv, work, admin, "region", "install", "--region", REGION, "--app", f"{APP}@1.0.0",
        "--grant", "patient/Observation.rs", "--grant", "patient/Patient.rs",
    )
    assert f"installed {APP} 1.0.0 in region {REGION}" in installed, installed
    listed = requests.get(
        f"{srv.root}/admin/v1/regions/{REGION}/installs/{APP}",
        headers={"Authorization": f"Bearer {admin}"}, timeout=30,
    ).json()
    assert listed["smart_client"]["client_id"] == CLIENT_ID, listed
    assert listed["serving"] is True, listed

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

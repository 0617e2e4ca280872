"""The store API and the region admin API against their own OpenAPI documents, with
schemathesis (PyPI), on a `healthcloud up` of their own (the checks register publishers,
revoke versions and keys, and uninstall apps).

schemathesis reads `/store/v1/openapi.json` and `/admin/v1/openapi.json` and sends what they
describe and what they forbid, with a store admin's and a region admin's token, then stateful
sequences that follow one answer into the next request. Every check is on (`--checks all`):
no answer is a server error; every status, content type and body is documented; a request
the schema forbids is refused; one it allows is not refused as malformed; a call that names
the bearer scheme refuses a missing or forged token. `schemathesis.toml` says what a check
may expect beyond schemathesis' defaults, and why. The run is deterministic in what it draws
(a fixed seed, one worker) and bounded (MAX_EXAMPLES per operation and phase).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from conftest import Server, _env, running_up

CONFIG = Path(__file__).with_name("schemathesis.toml")
SEED = 20261206
MAX_EXAMPLES = 40
REGION = "hovedstaden"
PUBLISHER = "examples"
RUN_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def checked_server(healthcloud_bin: Path, tmp_path_factory: pytest.TempPathFactory):
    with running_up(healthcloud_bin, tmp_path_factory.mktemp("healthcloud-schemas")) as srv:
        yield srv


def schemathesis(server: Server, document: str, token: str, reports: Path) -> None:
    """Runs every schemathesis check on `document` and fails with its report unless all pass."""
    args = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "--no-color",
        "run", f"{server.root}{document}", "--url", server.root,
        "--header", f"Authorization: Bearer {token}",
        "--checks", "all",
        "--max-examples", str(MAX_EXAMPLES),
        "--seed", str(SEED),
        "--workers", "1",
        "--generation-database", "none",
        "--report", "junit", "--report-dir", str(reports),
    ]
    env = {
        **_env(),
        "HEALTHCLOUD_E2E_REGION": REGION,
        "HEALTHCLOUD_E2E_PUBLISHER_TOKEN": server.token("publisher", sub=PUBLISHER),
    }
    done = subprocess.run(
        args, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=env, cwd=reports
    )
    shown = " ".join(a if not a.startswith("Authorization") else "Authorization: Bearer …" for a in args)
    assert done.returncode == 0, (
        f"schemathesis found failures on {document} ({shown}):\n{done.stdout[-20000:]}\n{done.stderr[-4000:]}"
    )


def test_requests_the_documents_forbid_are_refused_with_a_json_error_naming_the_field(
    checked_server: Server,
) -> None:
    """What schemathesis found accepted or answered in plain text before the documents and the
    handlers agreed, each sent by hand (first: the checks below then revoke and uninstall)."""
    root = checked_server.root
    store_admin = {"Authorization": f"Bearer {checked_server.token('store-admin', sub='e2e-probe')}"}
    region_admin = {
        "Authorization": f"Bearer {checked_server.token('region-admin', region=REGION, sub='e2e-probe')}"
    }
    cases = [
        # A page size the document caps at 100 was clamped, page 0 read as page 1, a negative
        # feed position as 0, an empty audience as none.
        ("GET", "/store/v1/apps?per_page=1000", {}, None, "per_page"),
        ("GET", "/store/v1/apps?page=0", {}, None, "page"),
        ("GET", "/store/v1/apps?audience=", {}, None, "audience"),
        ("GET", "/store/v1/apps?q=a+b+c+d+e+f+g+h+i", {}, None, "q"),
        ("GET", "/store/v1/revocations?since=-5", {}, None, "since"),
        ("GET", f"/admin/v1/regions/{REGION}/audit?limit=0", region_admin, None, "limit"),
        ("GET", f"/admin/v1/regions/{REGION}/audit?limit=1000000", region_admin, None, "limit"),
        # A display name of control characters, a reason of white space.
        ("POST", "/store/v1/publishers", store_admin,
         {"id": "probe", "name": "\u001b[2J", "key": "x"}, "name"),
        ("POST", "/store/v1/apps/examples/hello/versions/0.1.0/revoke", store_admin,
         {"reason": " \t\n"}, "reason"),
    ]
    for method, path, headers, body, field in cases:
        answer = requests.request(method, f"{root}{path}", headers=headers, json=body, timeout=30)
        assert answer.status_code == 400, f"{method} {path}: {answer.status_code} {answer.text}"
        assert answer.headers["content-type"].startswith("application/json"), (path, answer.headers)
        assert answer.json()["field"] == field, (path, answer.text)

    # Nothing of it was written: no publisher, the version is not revoked.
    assert requests.get(f"{root}/store/v1/publishers/probe", timeout=30).status_code == 404
    version = requests.get(f"{root}/store/v1/apps/examples/hello/versions/0.1.0", timeout=30).json()
    assert "revoked" not in version, version

    # Malformed bodies are JSON errors too, not axum's plain-text rejections.
    for path, headers, data, content_type in [
        ("/store/v1/packages", store_admin, b"", None),
        ("/store/v1/publishers/examples/keys/" + "0" * 64 + "/revoke", store_admin,
         b'{"reason": true}', "application/json"),
        (f"/admin/v1/regions/{REGION}/installs", region_admin, b"{", "application/json"),
    ]:
        sent = dict(headers)
        if content_type:
            sent["Content-Type"] = content_type
        answer = requests.post(f"{root}{path}", headers=sent, data=data, timeout=30)
        assert answer.status_code == 400, f"{path}: {answer.status_code} {answer.text}"
        assert answer.headers["content-type"].startswith("application/json"), (path, answer.headers)
        assert answer.json()["error"], answer.text


def test_the_store_api_answers_as_its_openapi_document_says(
    checked_server: Server, tmp_path: Path
) -> None:
    token = checked_server.token("store-admin", sub="e2e-store-admin")
    schemathesis(checked_server, "/store/v1/openapi.json", token, tmp_path)


def test_the_region_admin_api_answers_as_its_openapi_document_says(
    checked_server: Server, tmp_path: Path
) -> None:
    token = checked_server.token("region-admin", region=REGION, sub="e2e-region-admin")
    schemathesis(checked_server, "/admin/v1/openapi.json", token, tmp_path)

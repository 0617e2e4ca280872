"""`up`'s cross-sector demo world in a real browser: a clinician launches the apps for the
demo patient, whose data lives in three systems (the hospital's record in the region's own
store, a GP system and a municipal care record each in a FHIR server of its own on
loopback), and sees it together, each item saying where it came from.

The module starts its own `healthcloud up` on an empty data directory, so `up` makes the demo
world itself (500 patients, a few seconds), and its own headless chromium.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from pathlib import Path

import pytest
from fhir.resources.R4B import get_fhir_model_class

from conftest import Server, headless_chromium, running_up
from test_launch import by, check_page, launch, patients  # noqa: F401 (a fixture)


def validate_r4b(resource, resource_type: str) -> None:
    """Parses `resource` (fhirpy's or a dict) with the fhir.resources R4B model of its type."""
    data = resource.serialize() if hasattr(resource, "serialize") else dict(resource)
    assert data["resourceType"] == resource_type, data
    get_fhir_model_class(resource_type).model_validate(data)


@pytest.fixture(scope="module")
def server(healthcloud_bin: Path, tmp_path_factory: pytest.TempPathFactory):
    with running_up(healthcloud_bin, tmp_path_factory.mktemp("healthcloud-demo"), demo_world=True) as srv:
        yield srv


@pytest.fixture(scope="module")
def browser():
    with headless_chromium() as driver:
        yield driver


def test_up_prints_each_sectors_own_fhir_server(server: Server):
    printed = server.printed()
    for name in ("gp", "municipality"):
        line = next((l for l in printed.splitlines() if l.startswith(f"    {name} ")), None)
        assert line is not None and "http://127.0.0.1:" in line and "/fhir/r4" in line, printed


def test_the_clinician_sees_home_gp_and_hospital_readings_and_a_summary_across_records(
    server: Server, browser, patients: list[str]
):
    By = by()
    # The launch page offers `up`'s demo patient first.
    patient = patients[0]
    launch(browser, server, "clinician", region="hovedstaden", patient=patient, app="examples/bp-monitor")
    assert browser.current_url.endswith("/apps/hovedstaden/examples/bp-monitor/"), browser.current_url
    check_page(browser)
    # The last 90 days' readings, then the newest earlier reading of each place with none in
    # them: together home, GP and hospital readings, whatever today is (the demo data ends on
    # a fixed day).
    origins = Counter(cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "td.origin"))
    assert {"home", "gp", "hospital"} <= set(origins), origins
    in_window = Counter(
        cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "table:not(#elsewhere) td.origin")
    )
    if in_window:
        measured_at = browser.find_element(By.ID, "origins").text
        for origin, count in in_window.items():
            assert f"{origin} ({count})" in measured_at, measured_at

    launch(browser, server, "clinician", region="hovedstaden", patient=patient, app="examples/patient-summary")
    assert browser.current_url.endswith("/apps/hovedstaden/examples/patient-summary/"), browser.current_url
    check_page(browser)
    items = Counter(
        span.text.strip("()") for span in browser.find_elements(By.CSS_SELECTOR, "main li span.origin")
    )
    assert "gp" in items and "hospital" in items, items


def test_the_practitioner_a_clinicians_token_names_is_readable_with_their_role(server: Server):
    """The demo world holds the practitioners its tokens name: no `fhirUser` dangles."""
    token = server.token("clinician", sub="dr-hansen")
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["fhirUser"] == "Practitioner/dr-hansen"
    client = server.client(token)
    # What a SMART client reads as "who is logged in" (fhirclient's `client.user`).
    user = client.reference(*claims["fhirUser"].split("/")).to_resource()
    validate_r4b(user, "Practitioner")
    assert user["name"][0]["family"] == "Hansen"
    roles = client.resources("PractitionerRole").search(practitioner=claims["fhirUser"]).fetch_all()
    assert len(roles) == 1
    validate_r4b(roles[0], "PractitionerRole")
    organization = client.reference(*roles[0]["organization"]["reference"].split("/")).to_resource()
    validate_r4b(organization, "Organization")
    assert organization.id == "region-hovedstaden"

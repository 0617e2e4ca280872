"""The example apps as `healthcloud up` serves them, through public HTTP only: real patient
data from the FHIR store, "denied" without the scope or after the patient opts the app out
(and audited), and each region's own grants."""

from __future__ import annotations

import re

import requests

from conftest import BP_CODE, Server

LOINC = "http://loinc.org"


def app_url(server: Server, region: str, app: str, rest: str = "") -> str:
    return f"{server.root}/apps/{region}/examples/{app}/{rest}"


def get(url: str, token: str) -> requests.Response:
    return requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def latest_reading(server: Server, clinician_token: str, patient: str) -> tuple[int, int]:
    """The patient's newest blood pressure, asked of the FHIR API directly."""
    http = server.session(clinician_token)
    response = http.get(
        f"{server.base}/Observation",
        params={"patient": patient, "code": BP_CODE, "_sort": "-date", "_count": 1},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    panel = response.json()["entry"][0]["resource"]
    value = {
        c["code"]["coding"][0]["code"]: round(c["valueQuantity"]["value"])
        for c in panel["component"]
    }
    return value["8480-6"], value["8462-4"]


def bp_patients(bp_counts) -> list[str]:
    return [patient for patient, _ in bp_counts.most_common()]


def test_bp_monitor_shows_the_patients_latest_reading_from_the_store(server, clinician_token, bp_counts):
    patient = bp_patients(bp_counts)[0]
    systolic, diastolic = latest_reading(server, clinician_token, patient)
    token = server.token("clinician", patient=patient, region="hovedstaden")
    page = get(app_url(server, "hovedstaden", "bp-monitor"), token)
    assert page.status_code == 200, page.text
    latest = re.search(r'id="latest">Latest: <strong>(\d+)/(\d+) mmHg</strong>', page.text)
    assert latest, page.text[:2000]
    assert (int(latest.group(1)), int(latest.group(2))) == (systolic, diastolic)


def test_without_the_scope_the_app_reports_denied(server, bp_counts):
    patient = bp_patients(bp_counts)[0]
    token = server.token("clinician", patient=patient, region="hovedstaden", scope="user/Patient.rs")
    page = get(app_url(server, "hovedstaden", "bp-monitor"), token)
    assert page.status_code == 403, page.text
    assert "denied" in page.text


def test_a_consent_opt_out_denies_the_app_and_the_citizen_sees_it_in_the_audit_log(server, bp_counts):
    patient = bp_patients(bp_counts)[1]
    app_token = server.token("clinician", patient=patient, region="hovedstaden")
    assert get(app_url(server, "hovedstaden", "bp-monitor"), app_token).status_code == 200

    citizen = server.token("citizen", patient=patient)
    consent = {
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": LOINC, "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient}"},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "provision": {
            "type": "permit",
            "provision": [{"type": "deny", "actor": [{
                "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
                "reference": {"reference": "Device/examples.bp-monitor"},
            }]}],
        },
    }
    created = server.session(citizen).post(
        f"{server.base}/Consent", json=consent, headers={"Content-Type": "application/fhir+json"}, timeout=30
    )
    assert created.status_code == 201, created.text

    page = get(app_url(server, "hovedstaden", "bp-monitor"), app_token)
    assert page.status_code == 403, page.text
    assert "denied" in page.text

    log = server.session(citizen).get(
        f"{server.base}/AuditEvent", params={"patient": patient, "_count": 200}, timeout=30
    )
    assert log.status_code == 200, log.text
    by_app = [
        e["resource"] for e in log.json().get("entry", [])
        if "Device/examples.bp-monitor" in str(e["resource"])
    ]
    assert any(event["outcome"] == "0" for event in by_app), "the allowed read is in the log"
    assert any(event["outcome"] != "0" for event in by_app), "the refused read is in the log"


def test_each_region_applies_its_own_grant(server, bp_counts):
    """Midtjylland does not grant medication data to the diabetes overview; Hovedstaden does."""
    patient = bp_patients(bp_counts)[0]
    hovedstaden = get(
        app_url(server, "hovedstaden", "diabetes-overview", "api/summary"),
        server.token("clinician", patient=patient, region="hovedstaden"),
    )
    assert hovedstaden.status_code == 200, hovedstaden.text
    midtjylland = get(
        app_url(server, "midtjylland", "diabetes-overview", "api/summary"),
        server.token("clinician", patient=patient, region="midtjylland"),
    )
    assert "MedicationStatement" in midtjylland.text and "denied" in midtjylland.text, midtjylland.text


def test_a_token_reaches_only_its_own_regions_installs(server, bp_counts):
    patient = bp_patients(bp_counts)[0]
    token = server.token("clinician", patient=patient, region="hovedstaden")
    foreign = get(app_url(server, "midtjylland", "bp-monitor"), token)
    assert foreign.status_code == 403, foreign.text
    assert get(app_url(server, "hovedstaden", "bp-monitor"), "").status_code == 401

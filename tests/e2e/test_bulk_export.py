"""Bulk Data export (FHIR Bulk Data Access 2.0, `$export`) as a research platform's backend
service uses it against a real `healthcloud up`: two SMART backend services are published to
the store as signed manifests, installed in one region with different grants, and get their
tokens from healthcloud's authorization server with client assertions signed by their own keys
(ES384 and RS384, with PyJWT). Then: a system-level export that matches what a clinician's
paged search finds, a Group export that holds only the Group's members and shows up once in a
member's own audit log, and the refusals a user would notice (another role, a type outside the
grant, another client's export, unsupported parameters, a deleted export); and a citizen who
opts out of research on their own page is left out of the research platform's export, not of
the quality registry's, and reads in their log what each export was for.

healthcloud's authorization server (`/oauth2`) runs only when a region's identity provider is
configured, so `up` is started with the test identity provider of test_smart_apps.py, although
a backend service signs in no user.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from conftest import CLINICIAN_SUB, Server, _env, free_port, running_up
from test_smart_apps import IdentityProvider, healthcloud

REGION = "hovedstaden"
PUBLISHER = "acme"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
NDJSON = "application/fhir+ndjson"
ASYNC = {"Prefer": "respond-async"}
# The first service, a quality registry, reads patients, their observations and Groups; the
# second, a research platform, observations only.
REGISTRY_SCOPES = ["system/Patient.rs", "system/Observation.rs", "system/Group.rs"]
VITALS_SCOPES = ["system/Observation.rs"]
REGISTRY_PURPOSE = "purpose:quality"
VITALS_PURPOSE = "purpose:research"
# How long an export may take here (40 patients), and the longest pause between polls.
EXPORT_DEADLINE_S = 30
POLL_CAP_S = 0.25


def b64url(number: int, size: int) -> str:
    return base64.urlsafe_b64encode(number.to_bytes(size, "big")).rstrip(b"=").decode()


@dataclass
class BackendService:
    """An installed backend service: its client id, private key and the key's JWS algorithm."""

    client_id: str
    key: object
    kid: str
    alg: str
    token_endpoint: str
    token: str = ""

    def assertion(self) -> str:
        """A fresh client assertion (SMART Backend Services): iss = sub = the client id, aud =
        the token endpoint, five minutes at most, a unique jti, signed with the service's key."""
        now = int(time.time())
        claims = {
            "iss": self.client_id, "sub": self.client_id, "aud": self.token_endpoint,
            "iat": now, "exp": now + 120, "jti": str(uuid.uuid4()),
        }
        return jwt.encode(claims, self.key, algorithm=self.alg, headers={"kid": self.kid})

    def get_token(self, scope: str) -> requests.Response:
        return requests.post(
            self.token_endpoint,
            data={
                "grant_type": "client_credentials",
                "scope": scope,
                "client_assertion_type": JWT_BEARER,
                "client_assertion": self.assertion(),
            },
            timeout=30,
        )

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}


def es384_key() -> tuple[object, dict]:
    key = ec.generate_private_key(ec.SECP384R1())
    numbers = key.public_key().public_numbers()
    return key, {"kty": "EC", "crv": "P-384", "x": b64url(numbers.x, 48), "y": b64url(numbers.y, 48),
                 "alg": "ES384"}


def rs384_key() -> tuple[object, dict]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = key.public_key().public_numbers()
    return key, {"kty": "RSA", "n": b64url(numbers.n, (numbers.n.bit_length() + 7) // 8),
                 "e": b64url(numbers.e, 3), "alg": "RS384"}


def publish_and_install(srv: Server, work: Path, vendor: str, app_id: str, jwk: dict,
                        scopes: list[str]) -> str:
    """The vendor publishes backend service `acme/<app_id>` 1.0.0 (a signed SMART manifest
    whose `[smart]` holds only its public key), and the region admin installs it granting
    `scopes` (data scopes and its purpose of use): its client id in the region."""
    app_dir = work / app_id
    app_dir.mkdir()
    key_lines = "".join(f'{name} = "{value}"\n' for name, value in jwk.items())
    capabilities = "".join(
        f'\n[[capability]]\nname = "{scope}"\njustification = "To study outcomes across the region."\n'
        for scope in scopes
    )
    (app_dir / "healthcloud.toml").write_text(f'''
[app]
publisher = "{PUBLISHER}"
id = "{app_id}"
version = "1.0.0"
name = "Research export {app_id}"
description = "Exports records for a quality registry."
audience = ["clinician"]

[smart]
[[smart.jwks.keys]]
{key_lines}{capabilities}''')
    published = healthcloud(srv, work, vendor, "app", "publish", app_id, "--key", "acme.key")
    assert f"published {PUBLISHER}/{app_id}@1.0.0" in published, published
    admin = srv.token("region-admin", sub="anna", region=REGION)
    grants = [argument for scope in scopes for argument in ("--grant", scope)]
    installed = healthcloud(
        srv, work, admin, "region", "install", "--region", REGION,
        "--app", f"{PUBLISHER}/{app_id}@1.0.0", *grants,
    )
    assert f"installed {PUBLISHER}/{app_id} 1.0.0 in region {REGION}" in installed, installed
    listed = requests.get(
        f"{srv.root}/admin/v1/regions/{REGION}/installs/{PUBLISHER}/{app_id}",
        headers={"Authorization": f"Bearer {admin}"}, timeout=30,
    ).json()
    assert listed["serving"] is True, listed
    assert sorted(listed["granted"]) == sorted(scopes), listed
    return listed["smart_client"]["client_id"]


@dataclass
class World:
    srv: Server
    registry: BackendService
    vitals: BackendService
    clinician: str


@pytest.fixture(scope="module")
def world(healthcloud_bin: Path, tmp_path_factory: pytest.TempPathFactory):
    """`up` (40 generated patients) with two backend services installed in Hovedstaden, each
    holding a token it got with its own signed client assertion."""
    work = tmp_path_factory.mktemp("healthcloud-bulk-export")
    port = free_port()
    provider = IdentityProvider(work, f"http://127.0.0.1:{port}/oauth2/login/callback")
    try:
        with running_up(
            healthcloud_bin, work, port=port,
            extra_args=("--identity-provider", provider.issuer,
                        "--identity-provider-secret", str(provider.secret_file)),
        ) as srv:
            subprocess.run([str(srv.binary), "keygen", "--out", "acme.key"], cwd=work, check=True,
                           env=_env(), capture_output=True)
            healthcloud(
                srv, work, srv.token("store-admin"), "store", "approve-publisher",
                "--publisher", PUBLISHER, "--name", "Acme Research", "--key", "acme.key.pub",
            )
            vendor = srv.token("publisher", sub=PUBLISHER)

            smart = requests.get(f"{srv.base}/.well-known/smart-configuration", timeout=30).json()
            assert "token_endpoint" in smart, f"no token endpoint advertised: {smart}"
            assert "client_credentials" in smart.get("grant_types_supported", []), smart
            assert {"ES384", "RS384"} <= set(smart["token_endpoint_auth_signing_alg_values_supported"]), smart
            token_endpoint = smart["token_endpoint"]

            registry_key, registry_jwk = es384_key()
            vitals_key, vitals_jwk = rs384_key()
            services = []
            for app_id, key, jwk, kid, scopes, purpose in (
                ("registry", registry_key, registry_jwk, "registry-1", REGISTRY_SCOPES, REGISTRY_PURPOSE),
                ("vitals", vitals_key, vitals_jwk, "vitals-1", VITALS_SCOPES, VITALS_PURPOSE),
            ):
                client_id = publish_and_install(
                    srv, work, vendor, app_id, jwk | {"kid": kid}, [*scopes, purpose])
                assert client_id == f"{PUBLISHER}.{app_id}@{REGION}"
                service = BackendService(client_id, key, kid, jwk["alg"], token_endpoint)
                answer = service.get_token(" ".join(scopes))
                assert answer.status_code == 200, answer.text
                tokens = answer.json()
                assert tokens["token_type"].lower() == "bearer", tokens
                assert sorted(tokens["scope"].split()) == sorted(scopes), tokens
                assert "refresh_token" not in tokens, tokens
                service.token = tokens["access_token"]
                services.append(service)
            yield World(srv, *services, clinician=srv.token("clinician", sub=CLINICIAN_SUB))
    finally:
        provider.stop()


# Helpers ----------------------------------------------------------------------------------------


def validate(resource: dict, resource_type: str):
    """Parses `resource` with the fhir.resources R4B model of `resource_type`."""
    assert resource.get("resourceType") == resource_type, f"expected a {resource_type}, got {resource}"
    try:
        return get_fhir_model_class(resource_type).model_validate(resource)
    except ValidationError as error:
        pytest.fail(f"{resource_type}/{resource.get('id')} is not a valid R4B {resource_type}:\n{error}")


def kickoff(srv: Server, path: str, headers: dict, params: dict | None = None,
            prefer: bool = True) -> requests.Response:
    """`GET <base>/<path>` (an `$export` kick-off) with `Prefer: respond-async` unless told not."""
    return requests.get(
        f"{srv.base}/{path}", params=params,
        headers=headers | {"Accept": "application/fhir+json"} | (ASYNC if prefer else {}),
        timeout=30,
    )


def wait_for_manifest(status_url: str, headers: dict) -> dict:
    """Polls the status URL as the server asks (Retry-After, capped at POLL_CAP_S here) until it
    answers with the manifest."""
    deadline = time.monotonic() + EXPORT_DEADLINE_S
    while True:
        status = requests.get(status_url, headers=headers, timeout=30)
        if status.status_code == 200:
            assert status.headers["content-type"].startswith("application/json"), status.headers
            return status.json()
        assert status.status_code == 202, f"{status.status_code}: {status.text}"
        retry_after = status.headers.get("retry-after")
        assert retry_after is not None and retry_after.isdigit(), status.headers
        assert status.headers.get("x-progress"), f"no X-Progress while running: {status.headers}"
        assert time.monotonic() < deadline, f"the export did not finish in {EXPORT_DEADLINE_S}s"
        time.sleep(min(int(retry_after), POLL_CAP_S))


def export(srv: Server, path: str, service: BackendService, params: dict) -> tuple[str, dict]:
    """Kicks off an export and waits for it: its status URL and manifest."""
    started = kickoff(srv, path, service.headers, params)
    assert started.status_code == 202, f"{started.status_code}: {started.text}"
    status_url = started.headers.get("content-location", "")
    assert status_url.startswith(f"{srv.base}/$export-status/"), started.headers
    return status_url, wait_for_manifest(status_url, service.headers)


def delete_export(status_url: str, headers: dict) -> None:
    """Deletes a downloaded export, as the IG asks a client to (a client holds three at once)."""
    deleted = requests.delete(status_url, headers=headers, timeout=30)
    assert deleted.status_code == 202, f"{deleted.status_code}: {deleted.text}"


def download(manifest: dict, headers: dict) -> dict[str, list[dict]]:
    """Every file of `manifest` as its resources by type; each line parsed and validated, and
    each file's count checked against the manifest."""
    files: dict[str, list[dict]] = {}
    for output in manifest["output"]:
        response = requests.get(output["url"], headers=headers | {"Accept": NDJSON}, timeout=60)
        assert response.status_code == 200, f"{output['url']}: {response.status_code} {response.text}"
        assert response.headers["content-type"].split(";")[0] == NDJSON, response.headers
        resource_type = output["type"]
        resources = []
        for number, line in enumerate(response.text.splitlines(), 1):
            try:
                resource = json.loads(line)
            except json.JSONDecodeError as error:
                pytest.fail(f"{output['url']} line {number} is not JSON ({error}): {line[:200]!r}")
            validate(resource, resource_type)
            resources.append(resource)
        assert len(resources) == output["count"], f"{resource_type}: {len(resources)} lines, manifest says {output['count']}"
        assert resource_type not in files, f"two files of {resource_type}: {manifest}"
        files[resource_type] = resources
    return files


def ids(resources: list[dict]) -> list[str]:
    return sorted(resource["id"] for resource in resources)


def search_all(srv: Server, token: str, resource_type: str, params: dict | None = None) -> list[dict]:
    """Every match of a search, following its `next` links."""
    url, query = f"{srv.base}/{resource_type}", {"_count": 200, **(params or {})}
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}
    found: list[dict] = []
    for _ in range(200):
        response = requests.get(url, params=query, headers=headers, timeout=30)
        assert response.status_code == 200, f"{url}: {response.status_code} {response.text}"
        bundle = response.json()
        found += [entry["resource"] for entry in bundle.get("entry", [])
                  if entry.get("search", {}).get("mode", "match") == "match"]
        url = next((l["url"] for l in bundle.get("link", []) if l["relation"] == "next"), None)
        query = None
        if url is None:
            return found
    pytest.fail(f"{resource_type} search had more than 200 pages")


def check_manifest(srv: Server, manifest: dict, status_url: str, request_url: str,
                   types: set[str]) -> None:
    """The completion manifest of the Bulk Data IG."""
    assert manifest["requiresAccessToken"] is True, manifest
    assert manifest["error"] == [], manifest
    moment = datetime.fromisoformat(manifest["transactionTime"].replace("Z", "+00:00"))
    assert moment.tzinfo is not None, manifest
    asked, echoed = urlsplit(request_url), urlsplit(manifest["request"])
    assert unquote(echoed.path) == unquote(asked.path), manifest
    assert parse_qsl(echoed.query) == parse_qsl(asked.query), manifest
    export_id = status_url.rsplit("/", 1)[1]
    assert {output["type"] for output in manifest["output"]} == types, manifest
    for output in manifest["output"]:
        assert output["url"] == f"{srv.base}/$export-file/{export_id}/{output['type']}.ndjson", manifest
        assert isinstance(output["count"], int) and output["count"] > 0, manifest


def export_events(srv: Server, patient: str) -> list[tuple[dict, dict]]:
    """The `$export` records in `patient`'s own audit log, read with their citizen token:
    each event with its decoded `entity.query` (`$export=<level>&_type=…`)."""
    citizen = srv.token("citizen", patient=patient, sub=f"citizen-{patient}")
    found = []
    for event in search_all(srv, citizen, "AuditEvent", {"patient": patient}):
        for entity in event.get("entity", []):
            query = base64.b64decode(entity.get("query", "")).decode()
            if query.startswith("%24export="):
                found.append((event, dict(parse_qsl(query))))
    return found


def world_patient(world: World) -> str:
    """A patient id of the generated data."""
    return ids(search_all(world.srv, world.clinician, "Patient"))[0]


# Tests ------------------------------------------------------------------------------------------


def test_a_system_export_holds_every_patient_and_observation_a_clinician_finds(world: World):
    srv, registry = world.srv, world.registry
    params = {"_type": "Patient,Observation", "_outputFormat": NDJSON}
    started = kickoff(srv, "$export", registry.headers, params)
    assert started.status_code == 202, f"{started.status_code}: {started.text}"
    status_url = started.headers.get("content-location", "")
    assert status_url.startswith(f"{srv.base}/$export-status/"), started.headers
    manifest = wait_for_manifest(status_url, registry.headers)
    check_manifest(srv, manifest, status_url, started.url, {"Patient", "Observation"})

    files = download(manifest, registry.headers)
    delete_export(status_url, registry.headers)
    observations, patients = files["Observation"], files["Patient"]
    assert len(set(ids(observations))) == len(observations), "an Observation is exported twice"
    assert len(set(ids(patients))) == len(patients), "a Patient is exported twice"

    # What a clinician's paged searches find, no more and no less.
    clinician_observations = search_all(srv, world.clinician, "Observation")
    clinician_patients = search_all(srv, world.clinician, "Patient")
    assert len(clinician_observations) > 100, "the generated data has too few observations to test"
    assert ids(observations) == ids(clinician_observations)
    assert ids(patients) == ids(clinician_patients)
    # Each exported observation is about an exported patient.
    patient_ids = set(ids(patients))
    subjects = {o["subject"]["reference"].removeprefix("Patient/") for o in observations}
    assert subjects <= patient_ids, subjects - patient_ids


def test_a_group_export_holds_only_its_members_and_a_member_finds_it_once_in_their_log(world: World):
    srv, registry = world.srv, world.registry
    # Two patients with observations, and one more outside the Group.
    by_patient: dict[str, int] = {}
    for observation in search_all(srv, world.clinician, "Observation"):
        patient = observation["subject"]["reference"].removeprefix("Patient/")
        by_patient[patient] = by_patient.get(patient, 0) + 1
    first, second, outsider = sorted(by_patient)[:3]

    keeper = srv.token("clinician", sub="group-keeper", scope="user/Patient.rs user/Observation.rs user/Group.c")
    group = {
        "resourceType": "Group", "type": "person", "actual": True, "name": "Registry cohort",
        "member": [{"entity": {"reference": f"Patient/{first}"}},
                   {"entity": {"reference": f"Patient/{second}"}}],
    }
    created = requests.post(
        f"{srv.base}/Group", data=json.dumps(group),
        headers={"Authorization": f"Bearer {keeper}", "Content-Type": "application/fhir+json",
                 "Accept": "application/fhir+json"},
        timeout=30,
    )
    assert created.status_code == 201, f"{created.status_code}: {created.text}"
    group_id = created.json()["id"]

    path = f"Group/{group_id}/$export"
    params = {"_type": "Patient,Observation"}
    status_url, manifest = export(srv, path, registry, params)
    check_manifest(srv, manifest, status_url, f"{srv.base}/{path}?_type=Patient,Observation",
                   {"Patient", "Observation"})
    files = download(manifest, registry.headers)
    delete_export(status_url, registry.headers)
    members = {first, second}
    assert set(ids(files["Patient"])) == members
    assert len(files["Patient"]) == 2
    observations = files["Observation"]
    assert {o["subject"]["reference"] for o in observations} == {f"Patient/{p}" for p in members}
    assert len(observations) == by_patient[first] + by_patient[second]
    members_observations = [
        o for p in sorted(members)
        for o in search_all(srv, world.clinician, "Observation", {"patient": p})
    ]
    assert ids(observations) == ids(members_observations)

    # The member finds this export once in their own log, under the service's name; the
    # patient outside the Group does not find it at all.
    def this_export(patient: str) -> list[tuple[dict, dict]]:
        return [(event, query) for event, query in export_events(srv, patient)
                if query.get("$export") == f"Group/{group_id}"]

    logged = this_export(first)
    assert len(logged) == 1, f"{len(logged)} records of the Group export in {first}'s log: {logged}"
    event, query = logged[0]
    assert query == {"$export": f"Group/{group_id}", "_type": "Patient,Observation"}, query
    validate(event, "AuditEvent")
    agents = {agent["who"].get("reference") for agent in event["agent"]}
    assert f"Device/{PUBLISHER}.registry" in agents, f"the record does not name the service: {event['agent']}"
    assert this_export(outsider) == []


def test_exports_are_refused_to_users_to_types_outside_the_grant_and_to_other_clients(world: World):
    srv, registry, vitals = world.srv, world.registry, world.vitals
    # A user's token, however broad, does not export.
    for user in (world.clinician, srv.token("citizen", patient=world_patient(world), sub="e2e-citizen")):
        refused = kickoff(srv, "$export", {"Authorization": f"Bearer {user}"}, {"_type": "Observation"})
        assert refused.status_code == 403, f"{refused.status_code}: {refused.text}"
        assert refused.json()["resourceType"] == "OperationOutcome"
    # The observation-only service may not export patients.
    refused = kickoff(srv, "$export", vitals.headers, {"_type": "Patient"})
    assert refused.status_code == 403, f"{refused.status_code}: {refused.text}"
    assert "Patient" in refused.text
    # Unsupported parameters are refused, not ignored; a synchronous request is refused.
    refused = kickoff(srv, "$export", registry.headers,
                      {"_type": "Observation", "_elements": "id"})
    assert refused.status_code == 400, f"{refused.status_code}: {refused.text}"
    refused = kickoff(srv, "$export", registry.headers, {"_type": "Observation"}, prefer=False)
    assert refused.status_code == 400, f"{refused.status_code}: {refused.text}"
    assert "respond-async" in refused.text

    # The registry's finished export: the other service learns nothing of it.
    status_url, manifest = export(srv, "$export", registry, {"_type": "Observation"})
    file_url = manifest["output"][0]["url"]
    assert requests.get(status_url, headers=vitals.headers, timeout=30).status_code == 404
    assert requests.get(file_url, headers=vitals.headers, timeout=30).status_code == 404
    assert requests.delete(status_url, headers=vitals.headers, timeout=30).status_code == 404
    assert requests.get(file_url, timeout=30).status_code == 401
    # ... and its attempt to delete it changed nothing.
    assert requests.get(status_url, headers=registry.headers, timeout=30).status_code == 200
    assert requests.get(file_url, headers=registry.headers, timeout=30).status_code == 200
    # The other service may export what its own grant allows.
    own_url, own_manifest = export(srv, "$export", vitals, {"_type": "Observation"})
    assert own_manifest["output"][0]["count"] == manifest["output"][0]["count"]
    assert requests.get(own_url, headers=registry.headers, timeout=30).status_code == 404
    assert requests.delete(own_url, headers=vitals.headers, timeout=30).status_code == 202

    # The owner deletes its export: the status URL and the files are gone.
    deleted = requests.delete(status_url, headers=registry.headers, timeout=30)
    assert deleted.status_code == 202, f"{deleted.status_code}: {deleted.text}"
    assert requests.get(status_url, headers=registry.headers, timeout=30).status_code == 404
    assert requests.get(file_url, headers=registry.headers, timeout=30).status_code == 404
    assert requests.delete(status_url, headers=registry.headers, timeout=30).status_code == 404


def test_a_research_export_leaves_out_a_patient_who_opted_out_of_research(world: World):
    srv, research, registry = world.srv, world.vitals, world.registry
    by_patient: dict[str, int] = {}
    for observation in search_all(srv, world.clinician, "Observation"):
        patient = observation["subject"]["reference"].removeprefix("Patient/")
        by_patient[patient] = by_patient.get(patient, 0) + 1
    # The citizen must be one the launch page offers.
    launch_page = requests.get(f"{srv.root}/", timeout=30).text
    offered = re.findall(r'<option value="([^"]+)"',
                         launch_page.split('id="patient"', 1)[1].split("</select>", 1)[0])
    opted = next(patient for patient in offered if patient in by_patient)
    other = next(patient for patient in sorted(by_patient) if patient != opted)

    # The citizen opts out of research on their own page.
    session = requests.Session()
    launched = session.post(
        f"{srv.root}/launch", data={"role": "citizen", "region": "", "patient": opted, "app": ""},
        headers={"Origin": srv.root}, allow_redirects=False, timeout=30,
    )
    assert launched.status_code == 303, launched.text
    page = session.get(f"{srv.root}/citizen/", timeout=30)
    assert 'data-purpose="research"' in page.text and "Opt out of research" in page.text, page.text[:3000]
    done = session.post(f"{srv.root}/citizen/opt-out", data={"purpose": "research"},
                        headers={"Origin": srv.root}, timeout=30)
    assert done.status_code == 200 and "You are opted out of research" in done.text, done.text[:3000]

    # Each included patient's log says what an export was for.
    def purposes(patient: str) -> list[str]:
        return [coding["code"] for event, _ in export_events(srv, patient)
                for concept in event.get("purposeOfEvent", []) for coding in concept["coding"]]
    before = {patient: purposes(patient) for patient in (opted, other)}

    # The research platform's export holds the others' observations, none of theirs.
    params = {"_type": "Observation"}
    status_url, manifest = export(srv, "Patient/$export", research, params)
    subjects = {o["subject"]["reference"] for o in download(manifest, research.headers)["Observation"]}
    delete_export(status_url, research.headers)
    assert f"Patient/{opted}" not in subjects
    assert f"Patient/{other}" in subjects
    # A quality registry is not research: its export still holds them.
    status_url, manifest = export(srv, "Patient/$export", registry, params)
    subjects = {o["subject"]["reference"] for o in download(manifest, registry.headers)["Observation"]}
    delete_export(status_url, registry.headers)
    assert f"Patient/{opted}" in subjects

    assert sorted(purposes(other)) == sorted(before[other] + ["HRESCH", "HQUALIMP"])
    assert sorted(purposes(opted)) == sorted(before[opted] + ["HQUALIMP"]), "a research export in their log"
    page = session.get(f"{srv.root}/citizen/", timeout=30)
    assert "included your records in an export for health quality improvement" in page.text, page.text[:3000]


def test_smart_fetch_exports_as_the_registry_with_its_own_key(world: World, tmp_path: Path):
    """SMART Health IT's Bulk Data client (`smart-fetch bulk`, which replaced `cumulus-etl
    export`) signs in with the registry's key from a JWKS file, exports its Patients and, with
    its default `_typeFilter` (the US Core Observation categories), Observations, and writes
    NDJSON whose every line validates and whose ids are those a clinician's same searches
    find."""
    srv, registry = world.srv, world.registry
    numbers = registry.key.private_numbers()
    public = numbers.public_numbers
    jwks = {"keys": [{
        "kty": "EC", "crv": "P-384", "kid": registry.kid, "alg": "ES384", "key_ops": ["sign"],
        "x": b64url(public.x, 48), "y": b64url(public.y, 48), "d": b64url(numbers.private_value, 48),
    }]}
    key_file = tmp_path / "registry.jwks"
    key_file.write_text(json.dumps(jwks))
    out = tmp_path / "export"
    fetched = subprocess.run(
        [str(Path(sys.executable).parent / "smart-fetch"), "bulk", "--fhir-url", srv.base, "--smart-client-id", registry.client_id,
         "--smart-key", str(key_file), "--type", "Patient,Observation",
         "--no-compression", str(out)],
        capture_output=True, text=True, timeout=300, env=_env(),
    )
    assert fetched.returncode == 0, f"smart-fetch failed:\n{fetched.stdout}\n{fetched.stderr}"
    found: dict[str, list[dict]] = {"Patient": [], "Observation": []}
    # Beside the data, smart-fetch keeps its own log (log.ndjson) in the folder.
    data_files = [path for path in sorted(out.rglob("*.ndjson")) if path.name != "log.ndjson"]
    assert data_files, f"smart-fetch wrote no data: {sorted(out.rglob('*'))}"
    for path in data_files:
        for line in path.read_text().splitlines():
            resource = json.loads(line)
            validate(resource, resource["resourceType"])
            found.setdefault(resource["resourceType"], []).append(resource)
    assert ids(found["Patient"]) == ids(search_all(srv, world.clinician, "Patient"))
    categories = "social-history,vital-signs,imaging,laboratory,survey,exam,procedure,therapy,activity"
    selected = search_all(srv, world.clinician, "Observation", {"category": categories})
    assert selected, "the generated data has no observations of those categories"
    assert ids(found["Observation"]) == ids(selected)

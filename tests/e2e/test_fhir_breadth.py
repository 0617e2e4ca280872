"""End-to-end tests of the breadth of the FHIR R4 API of a real `healthcloud up`: versions and
history (of a resource, a type and the whole system), conditional writes, `Prefer`, batch and
transaction Bundles, `$everything`, `$lastn`, `$summary` and `$validate`, HTTP revalidation and
content negotiation, the result parameters, the search modifiers, prefixes, composites and
numbers, Binary documents, the vital-sign profiles and the installed apps as Devices, each as
README.md ("The FHIR API") documents it.

They are driven from the outside with real clients (fhirpy, SMART's `fhirclient` with its
strict R4 models, plain `requests` where status codes, headers and bytes matter). Everything
read is checked against the R4B models of `fhir.resources`, the strict R4 models of `fhirclient`
and FHIR JSON's own rules. The server, tokens and patient ids come from conftest.py; the tests
write heart-rate Observations, Conditions, RiskAssessments, a Binary and its DocumentReference,
but never keep a blood pressure panel (other modules count them: the one written to show a
conforming `bp` reading is accepted is deleted at once).

"""

from __future__ import annotations

import base64
import copy
import email.utils
import importlib
import json
import re
import uuid
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
import requests
from fhir.resources.R4B import get_fhir_model_class
from fhirclient import server as fhirclient_server
from fhirpy import SyncFHIRClient
from pydantic import ValidationError

from conftest import BP_CODE, Server

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
FHIR_JSON = "application/fhir+json"
SEND_JSON = {"Content-Type": FHIR_JSON}
READING_SYSTEM = "urn:oid:1.2.208.184.100.1"
SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
COPENHAGEN = ZoneInfo("Europe/Copenhagen")
EDITOR_SUB = "e2e-breadth-editor"
EDITOR_SCOPES = "user/*.rs user/Observation.cud"


# Helpers ---------------------------------------------------------------------------------------


def plain(resource) -> dict:
    """A fhirpy or fhirclient resource (or a dict) as plain FHIR JSON."""
    if hasattr(resource, "serialize"):
        return resource.serialize()
    if hasattr(resource, "as_json"):
        return resource.as_json()
    return dict(resource)


def json_rule_breaches(value, path: str = "$") -> list[str]:
    """Where `value` breaks FHIR JSON's rules (json.html): no empty arrays or objects, no
    nulls, no empty strings."""
    if isinstance(value, dict):
        found = [path] if not value else []
        for key, item in value.items():
            found += json_rule_breaches(item, f"{path}.{key}")
        return found
    if isinstance(value, list):
        found = [path] if not value else []
        for index, item in enumerate(value):
            found += json_rule_breaches(item, f"{path}[{index}]")
        return found
    return [path] if value is None or value == "" else []


def valid(resource, resource_type: str | None = None):
    """Checks `resource` against FHIR JSON's rules, the fhir.resources R4B model and
    fhirclient's strict R4 model of its type, failing the test with every problem found;
    returns the fhir.resources model."""
    data = plain(resource)
    resource_type = resource_type or data.get("resourceType")
    assert data.get("resourceType") == resource_type, f"expected a {resource_type}, got {data}"
    breaches = json_rule_breaches(data)
    assert not breaches, f"{resource_type}/{data.get('id')} has empty or null values at {breaches}"
    try:
        parsed = get_fhir_model_class(resource_type).model_validate(data)
    except ValidationError as error:
        pytest.fail(f"{resource_type}/{data.get('id')} is not a valid R4B {resource_type}:\n{error}")
    model = getattr(importlib.import_module(f"fhirclient.models.{resource_type.lower()}"), resource_type)
    try:
        model(jsondict=copy.deepcopy(data), strict=True)
    except Exception as error:  # fhirclient raises FHIRValidationError listing every problem
        pytest.fail(f"{resource_type}/{data.get('id')} fails fhirclient's strict R4 model: {error}")
    return parsed


def fhir_response(response: requests.Response, status: int, resource_type: str | None = None) -> dict:
    """The FHIR JSON body of `response`, which must have `status`; validated."""
    assert response.status_code == status, (
        f"{response.request.method} {response.url}: expected {status}, got {response.status_code}: "
        f"{response.text[:2000]}"
    )
    media = response.headers.get("Content-Type", "").split(";")[0].strip()
    assert media == FHIR_JSON, f"{response.request.method} {response.url}: Content-Type {media!r}"
    body = response.json()
    valid(body, resource_type)
    return body


def outcome_text(outcome: dict) -> str:
    return " ".join(
        f"{issue.get('diagnostics', '')} {' '.join(issue.get('expression', []))}" for issue in outcome["issue"]
    )


def errors(outcome: dict) -> list[dict]:
    return [issue for issue in outcome["issue"] if issue["severity"] in ("error", "fatal")]


def link(bundle: dict, relation: str) -> str | None:
    return next((l["url"] for l in bundle.get("link", []) if l["relation"] == relation), None)


def resources(bundle: dict, mode: str | None = None) -> list[dict]:
    return [
        e["resource"] for e in bundle.get("entry", [])
        if "resource" in e and (mode is None or e.get("search", {}).get("mode") == mode)
    ]


def instant(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert parsed.tzinfo is not None, f"{value} has a time but no time zone"
    return parsed


def status_code(entry_status: str) -> int:
    """The code of a Bundle entry's `response.status` ("201 Created" or "201")."""
    return int(entry_status.split()[0])


def new_identifier() -> dict:
    return {"system": READING_SYSTEM, "value": f"breadth-{uuid.uuid4()}"}


def criteria(identifier: dict) -> str:
    return f"{identifier['system']}|{identifier['value']}"


def heart_rate(
    patient_id: str, value: float, identifier: dict | None = None, *, at: datetime | None = None
) -> dict:
    """A heart-rate vital sign for `patient_id` (not a blood pressure: other modules count those)."""
    at = (at or datetime.now(timezone.utc)).replace(microsecond=0)
    reading = {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs",
        }]}],
        "code": {"coding": [{"system": LOINC, "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z"),
        "valueQuantity": {"value": value, "unit": "/min", "system": UCUM, "code": "/min"},
    }
    if identifier is not None:
        reading["identifier"] = [identifier]
    return reading


def fhirclient_for(server: Server, token: str, **headers: str) -> fhirclient_server.FHIRServer:
    """SMART's Python fhirclient on the FHIR base with the bearer token (and `headers` on every
    request it sends)."""
    fhir = fhirclient_server.FHIRServer(None, base_uri=server.base + "/")
    fhir.session.headers["Authorization"] = f"Bearer {token}"
    fhir.session.headers.update(headers)
    return fhir


def search_all(http: requests.Session, url: str, params: dict) -> list[dict]:
    """Every match of a search, following the `next` links; each page validated."""
    found, params = [], {**params, "_count": 200}
    for _ in range(50):
        bundle = fhir_response(http.get(url, params=params, timeout=60), 200, "Bundle")
        found += resources(bundle, "match")
        url, params = link(bundle, "next"), None
        if url is None:
            return found
    pytest.fail(f"the next links of {url} never end")


def get(
    http: requests.Session, url: str, status: int = 200, resource_type: str | None = None, *,
    params: dict | None = None, headers: dict | None = None,
) -> dict:
    """GET `url`, which must answer `status` with valid FHIR JSON."""
    return fhir_response(http.get(url, params=params, headers=headers, timeout=30), status, resource_type)


def total(http: requests.Session, url: str, params: dict) -> int:
    bundle = fhir_response(http.get(url, params={**params, "_summary": "count"}, timeout=60), 200, "Bundle")
    return bundle["total"]


def ids(found) -> set[str]:
    """The ids of what a search found, each checked to be valid."""
    return {valid(r).id for r in found}


@pytest.fixture(scope="module")
def editor_token(server: Server) -> str:
    """A clinician whose scopes let them change and delete Observations (the default may not)."""
    return server.token("clinician", sub=EDITOR_SUB, scope=EDITOR_SCOPES)


@pytest.fixture(scope="module")
def editor_http(server: Server, editor_token: str) -> requests.Session:
    return server.session(editor_token)


@pytest.fixture(scope="module")
def clinician_http(server: Server, clinician_token: str) -> requests.Session:
    return server.session(clinician_token)


@pytest.fixture(scope="module")
def citizen_http(server: Server, citizen_token: str) -> requests.Session:
    return server.session(citizen_token)


def create(http: requests.Session, server: Server, resource: dict) -> dict:
    return fhir_response(
        http.post(f"{server.base}/{resource['resourceType']}", json=resource, headers=SEND_JSON, timeout=30),
        201, resource["resourceType"],
    )


# 1 Versions ------------------------------------------------------------------------------------


def test_each_update_keeps_a_version_that_vread_and_both_histories_list_newest_first(
    server: Server, editor_token: str, editor_http: requests.Session, bp_patient_id: str
):
    from fhirclient.models.bundle import Bundle
    from fhirclient.models.observation import Observation

    fhir = fhirclient_for(server, editor_token)
    identifier = new_identifier()
    body = Observation(jsondict=heart_rate(bp_patient_id, 70, identifier), strict=True).create(fhir)
    valid(body, "Observation")
    reading_id, since = body["id"], body["meta"]["lastUpdated"]
    assert body["meta"]["versionId"] == "1"

    # Two updates with fhirclient's update() (a PUT of the whole resource).
    for value, version in ((71, "2"), (72, "3")):
        current = Observation(jsondict=body, strict=True)
        current.valueQuantity.value = value
        body = current.update(fhir)
        valid(body, "Observation")
        assert body["id"] == reading_id and body["meta"]["versionId"] == version, body["meta"]
        assert body["valueQuantity"]["value"] == value

    # vread: each version as it was.
    for version, value in (("1", 70), ("2", 71), ("3", 72)):
        old = Observation.read_from(f"Observation/{reading_id}/_history/{version}", fhir)
        valid(old, "Observation")
        assert old.meta.versionId == version and old.valueQuantity.value == value
    response = editor_http.get(f"{server.base}/Observation/{reading_id}/_history/1", timeout=30)
    assert fhir_response(response, 200, "Observation")["valueQuantity"]["value"] == 70
    assert response.headers.get("ETag") == 'W/"1"'
    assert response.headers.get("Last-Modified")
    missing = editor_http.get(f"{server.base}/Observation/{reading_id}/_history/9", timeout=30)
    fhir_response(missing, 404, "OperationOutcome")

    # The instance's history: every version, newest first, saying how it came to be.
    history = Bundle.read_from(f"Observation/{reading_id}/_history", fhir)
    valid(history, "Bundle")
    assert history.type == "history" and history.total == 3
    assert [e.resource.meta.versionId for e in history.entry] == ["3", "2", "1"]
    assert [e.resource.valueQuantity.value for e in history.entry] == [72, 71, 70]
    assert [e.request.method for e in history.entry] == ["PUT", "PUT", "POST"]
    assert [e.response.status.split()[0] for e in history.entry] == ["200", "200", "201"]
    assert [e.response.etag for e in history.entry] == ['W/"3"', 'W/"2"', 'W/"1"']
    assert [e.fullUrl for e in history.entry] == [
        f"{server.base}/Observation/{reading_id}/_history/{v}" for v in ("3", "2", "1")
    ]

    # ... in pages of `_count`, following `next`.
    paged, url = [], f"{server.base}/Observation/{reading_id}/_history?_count=1"
    while url and len(paged) < 10:
        page = fhir_response(editor_http.get(url, timeout=30), 200, "Bundle")
        assert len(page["entry"]) == 1 and page["total"] == 3
        paged += [e["resource"]["meta"]["versionId"] for e in page["entry"]]
        url = link(page, "next")
    assert paged == ["3", "2", "1"]

    # The type's history (since the first version, two to a page through the cursor links)
    # holds the same three versions, newest first, among everything else changed since.
    seen, url, params = [], f"{server.base}/Observation/_history", {"_since": since, "_count": 2}
    for _ in range(200):
        page = fhir_response(editor_http.get(url, params=params, timeout=30), 200, "Bundle")
        assert page["type"] == "history"
        seen += page.get("entry", [])
        url, params = link(page, "next"), None
        if url is None:
            break
    changed = [instant(e["response"]["lastModified"]) for e in seen]
    assert changed == sorted(changed, reverse=True), "the type's history is not newest first"
    assert all(c >= instant(since) for c in changed), "the type's history ignores _since"
    ours = [e for e in seen if e["fullUrl"].startswith(f"{server.base}/Observation/{reading_id}/")]
    assert [(e["request"]["method"], e["resource"]["meta"]["versionId"]) for e in ours] == [
        ("PUT", "3"), ("PUT", "2"), ("POST", "1")
    ], ours


def test_a_deleted_reading_answers_410_to_its_readers_404_to_others_and_keeps_its_history(
    server: Server,
    editor_http: requests.Session,
    clinician_http: requests.Session,
    citizen_http: requests.Session,
    bp_patient_id: str,
):
    identifier = new_identifier()
    created = create(editor_http, server, heart_rate(bp_patient_id, 80, identifier))
    url = f"{server.base}/Observation/{created['id']}"
    changed = {**created, "valueQuantity": {**created["valueQuantity"], "value": 81}}
    fhir_response(editor_http.put(url, json=changed, headers=SEND_JSON, timeout=30), 200, "Observation")

    deleted = editor_http.delete(url, timeout=30)
    assert deleted.status_code in (200, 204), deleted.text

    # Whoever could read it: 410 Gone, with an OperationOutcome.
    for http in (editor_http, clinician_http):
        gone = fhir_response(http.get(url, timeout=30), 410, "OperationOutcome")
        assert [i["code"] for i in gone["issue"]] == ["deleted"], gone
    # Searches no longer find it.
    assert total(editor_http, f"{server.base}/Observation", {"identifier": criteria(identifier)}) == 0
    # Its versions stay readable to them; the deletion is the newest version and has no body.
    history = fhir_response(editor_http.get(f"{url}/_history", timeout=30), 200, "Bundle")
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "PUT", "POST"]
    assert "resource" not in history["entry"][0]
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"][1:]] == ["2", "1"]
    version_2 = fhir_response(editor_http.get(f"{url}/_history/2", timeout=30), 200, "Observation")
    assert version_2["valueQuantity"]["value"] == 81
    fhir_response(editor_http.get(f"{url}/_history/3", timeout=30), 410, "OperationOutcome")
    # The type's history names the deletion too.
    since = history["entry"][0]["response"]["lastModified"]
    recent = fhir_response(
        editor_http.get(f"{server.base}/Observation/_history", params={"_since": since}, timeout=30),
        200, "Bundle",
    )
    assert any(
        e["request"]["method"] == "DELETE" and e["request"]["url"] == f"Observation/{created['id']}"
        for e in recent.get("entry", [])
    ), recent

    # A citizen of another record could never read it: not found, now as before.
    for path in ("", "/_history", "/_history/1"):
        fhir_response(citizen_http.get(url + path, timeout=30), 404, "OperationOutcome")


def test_an_empty_page_of_a_types_history_has_no_empty_entry_array(
    server: Server, editor_http: requests.Session
):
    response = editor_http.get(
        f"{server.base}/Observation/_history", params={"_since": "2099-01-01T00:00:00Z"}, timeout=30
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["type"] == "history"
    assert json_rule_breaches(body) == [], body


# 2 Conditional writes --------------------------------------------------------------------------


def test_conditional_update_creates_the_reading_then_updates_its_one_match(
    server: Server, editor_token: str, editor_http: requests.Session, bp_patient_id: str
):
    fhir = fhirclient_for(server, editor_token)
    identifier = new_identifier()
    path = f"Observation?identifier={quote(criteria(identifier), safe='')}"

    # No match: the PUT creates.
    first = fhir.put_json(path, heart_rate(bp_patient_id, 61, identifier))
    created = fhir_response(first, 201, "Observation")
    assert first.headers.get("Location") == f"{server.base}/Observation/{created['id']}/_history/1"
    assert first.headers.get("ETag") == 'W/"1"'

    # One match: the PUT updates it.
    second = fhir.put_json(path, heart_rate(bp_patient_id, 62, identifier))
    updated = fhir_response(second, 200, "Observation")
    assert updated["id"] == created["id"] and updated["meta"]["versionId"] == "2"
    assert updated["valueQuantity"]["value"] == 62
    assert second.headers.get("ETag") == 'W/"2"'
    assert total(editor_http, f"{server.base}/Observation", {"identifier": criteria(identifier)}) == 1

    # A body naming another id than the match is refused.
    with pytest.raises(requests.HTTPError) as refused:
        fhir.put_json(path, {**heart_rate(bp_patient_id, 63, identifier), "id": "someone-else"})
    fhir_response(refused.value.response, 400, "OperationOutcome")

    # Several matches: 412, and neither is changed.
    twin = new_identifier()
    pair = [create(editor_http, server, heart_rate(bp_patient_id, v, twin)) for v in (64, 65)]
    with pytest.raises(requests.HTTPError) as ambiguous:
        fhir.put_json(
            f"Observation?identifier={quote(criteria(twin), safe='')}", heart_rate(bp_patient_id, 66, twin)
        )
    fhir_response(ambiguous.value.response, 412, "OperationOutcome")
    for reading in pair:
        now = fhir_response(editor_http.get(f"{server.base}/Observation/{reading['id']}", timeout=30), 200)
        assert now["meta"]["versionId"] == "1"


def test_conditional_delete_removes_the_one_match_and_will_not_choose_among_several(
    server: Server, editor_token: str, editor_http: requests.Session, bp_patient_id: str
):
    fhir = fhirclient_for(server, editor_token)
    identifier = new_identifier()
    reading = create(editor_http, server, heart_rate(bp_patient_id, 58, identifier))

    deleted = fhir.delete_json(f"Observation?identifier={quote(criteria(identifier), safe='')}")
    assert deleted.status_code in (200, 204), deleted.text
    assert total(editor_http, f"{server.base}/Observation", {"identifier": criteria(identifier)}) == 0
    url = f"{server.base}/Observation/{reading['id']}"
    fhir_response(editor_http.get(url, timeout=30), 410, "OperationOutcome")

    twin = new_identifier()
    pair = [create(editor_http, server, heart_rate(bp_patient_id, v, twin)) for v in (59, 60)]
    with pytest.raises(requests.HTTPError) as ambiguous:
        fhir.delete_json(f"Observation?identifier={quote(criteria(twin), safe='')}")
    fhir_response(ambiguous.value.response, 412, "OperationOutcome")
    assert total(editor_http, f"{server.base}/Observation", {"identifier": criteria(twin)}) == 2
    assert ids(pair) <= ids(search_all(editor_http, f"{server.base}/Observation", {"identifier": criteria(twin)}))


def test_conditional_patch_changes_the_one_match_and_a_stale_if_match_changes_nothing(
    server: Server, editor_http: requests.Session, bp_patient_id: str
):
    identifier = new_identifier()
    reading = create(editor_http, server, heart_rate(bp_patient_id, 57, identifier))
    url = f"{server.base}/Observation/{reading['id']}"

    patched = editor_http.patch(
        f"{server.base}/Observation", params={"identifier": criteria(identifier)},
        json=[{"op": "replace", "path": "/status", "value": "amended"}],
        headers={"Content-Type": "application/json-patch+json"}, timeout=30,
    )
    body = fhir_response(patched, 200, "Observation")
    assert body["id"] == reading["id"] and body["status"] == "amended" and body["meta"]["versionId"] == "2"
    nobody = editor_http.patch(
        f"{server.base}/Observation", params={"identifier": criteria(new_identifier())},
        json={"status": "cancelled"}, headers={"Content-Type": "application/merge-patch+json"}, timeout=30,
    )
    fhir_response(nobody, 404, "OperationOutcome")

    # An update made against version 1, now that version 2 is stored: refused, nothing kept.
    stale = editor_http.put(url, json={**reading, "status": "cancelled"},
                            headers={**SEND_JSON, "If-Match": 'W/"1"'}, timeout=30)
    fhir_response(stale, 412, "OperationOutcome")
    current = editor_http.put(url, json={**body, "status": "corrected"},
                              headers={**SEND_JSON, "If-Match": 'W/"2"'}, timeout=30)
    assert fhir_response(current, 200, "Observation")["meta"]["versionId"] == "3"
    history = fhir_response(editor_http.get(f"{url}/_history", timeout=30), 200, "Bundle")
    assert [e["resource"]["status"] for e in history["entry"]] == ["corrected", "amended", "final"]
    assert [e["request"]["method"] for e in history["entry"]][::2] == ["PUT", "POST"]


def test_the_history_lists_a_patch_as_the_update_it_amounts_to(
    server: Server, editor_http: requests.Session, bp_patient_id: str
):
    reading = create(editor_http, server, heart_rate(bp_patient_id, 56))
    url = f"{server.base}/Observation/{reading['id']}"
    patched = editor_http.patch(url, json={"status": "amended"},
                                headers={"Content-Type": "application/merge-patch+json"}, timeout=30)
    fhir_response(patched, 200, "Observation")
    history = fhir_response(editor_http.get(f"{url}/_history", timeout=30), 200, "Bundle")
    # A patch makes a whole new version: kept and listed as the update it amounts to.
    assert [e["request"]["method"] for e in history["entry"]] == ["PUT", "POST"]
    assert history["entry"][0]["resource"]["status"] == "amended"


def test_if_none_exist_creates_once_and_then_answers_the_existing_reading(
    server: Server, editor_token: str, editor_http: requests.Session, bp_patient_id: str
):
    from fhirclient.models.observation import Observation

    identifier = new_identifier()
    fhir = fhirclient_for(server, editor_token, **{"If-None-Exist": f"identifier={criteria(identifier)}"})

    reading = Observation(jsondict=heart_rate(bp_patient_id, 90, identifier), strict=True)
    first = fhir.post_json("Observation", reading.as_json())
    created = fhir_response(first, 201, "Observation")
    assert first.headers.get("Location") == f"{server.base}/Observation/{created['id']}/_history/1"

    again = fhir.post_json("Observation", heart_rate(bp_patient_id, 91, identifier))
    existing = fhir_response(again, 200, "Observation")
    assert existing == created, "a match is answered as stored, not replaced by the new body"
    assert total(editor_http, f"{server.base}/Observation", {"identifier": criteria(identifier)}) == 1

    twin = new_identifier()
    for value in (92, 93):
        create(editor_http, server, heart_rate(bp_patient_id, value, twin))
    ambiguous = fhirclient_for(server, editor_token, **{"If-None-Exist": f"identifier={criteria(twin)}"})
    with pytest.raises(requests.HTTPError) as refused:
        ambiguous.post_json("Observation", heart_rate(bp_patient_id, 94, twin))
    fhir_response(refused.value.response, 412, "OperationOutcome")
    assert total(editor_http, f"{server.base}/Observation", {"identifier": criteria(twin)}) == 2


# 3 Prefer --------------------------------------------------------------------------------------


def test_prefer_return_chooses_what_a_create_and_an_update_answer(
    server: Server, editor_http: requests.Session, bp_patient_id: str
):
    def send(method: str, url: str, body: dict, prefer: str) -> requests.Response:
        return editor_http.request(method, url, json=body, headers={**SEND_JSON, "Prefer": prefer}, timeout=30)

    identifier = new_identifier()
    reading = heart_rate(bp_patient_id, 66, identifier)

    # return=minimal: no body; Location and ETag say where.
    minimal = send("POST", f"{server.base}/Observation", reading, "return=minimal")
    assert minimal.status_code == 201, minimal.text
    assert minimal.content == b"", minimal.text
    assert minimal.headers.get("Preference-Applied") == "return=minimal"
    assert minimal.headers.get("ETag") == 'W/"1"'
    location = minimal.headers.get("Location", "")
    assert location.startswith(f"{server.base}/Observation/") and location.endswith("/_history/1"), location
    stored = fhir_response(editor_http.get(location, timeout=30), 200, "Observation")
    assert stored["valueQuantity"]["value"] == 66 and stored["identifier"] == [identifier]
    url = f"{server.base}/Observation/{stored['id']}"

    # return=representation (the default too): the resource as stored.
    shown = send("POST", f"{server.base}/Observation", heart_rate(bp_patient_id, 67), "return=representation")
    body = fhir_response(shown, 201, "Observation")
    assert shown.headers.get("Preference-Applied") == "return=representation"
    assert shown.headers.get("Location") == f"{server.base}/Observation/{body['id']}/_history/1"
    assert body["meta"]["versionId"] == "1" and body["valueQuantity"]["value"] == 67

    # return=OperationOutcome: what was done.
    told = send("POST", f"{server.base}/Observation", heart_rate(bp_patient_id, 68), "return=OperationOutcome")
    outcome = fhir_response(told, 201, "OperationOutcome")
    assert told.headers.get("Preference-Applied") == "return=OperationOutcome"
    new_id = told.headers["Location"].split("/Observation/")[1].split("/")[0]
    assert not errors(outcome) and new_id in outcome_text(outcome), outcome

    # The same on update.
    changed = {**stored, "valueQuantity": {**stored["valueQuantity"], "value": 69}}
    minimal = send("PUT", url, changed, "return=minimal")
    assert minimal.status_code == 200 and minimal.content == b"", minimal.text
    assert minimal.headers.get("ETag") == 'W/"2"'
    assert minimal.headers.get("Preference-Applied") == "return=minimal"
    shown = send("PUT", url, changed, "return=representation")
    assert fhir_response(shown, 200, "Observation")["meta"]["versionId"] == "3"
    told = send("PUT", url, changed, "return=OperationOutcome")
    outcome = fhir_response(told, 200, "OperationOutcome")
    assert not errors(outcome) and stored["id"] in outcome_text(outcome), outcome
    assert told.headers.get("ETag") == 'W/"4"'

    # An unknown return value is a 400, and nothing is written.
    other = new_identifier()
    bogus = send("POST", f"{server.base}/Observation", heart_rate(bp_patient_id, 70, other), "return=everything")
    assert "return" in outcome_text(fhir_response(bogus, 400, "OperationOutcome"))
    assert total(editor_http, f"{server.base}/Observation", {"identifier": criteria(other)}) == 0


def test_a_minimal_update_says_where_with_location(
    server: Server, editor_http: requests.Session, bp_patient_id: str
):
    stored = create(editor_http, server, heart_rate(bp_patient_id, 71))
    url = f"{server.base}/Observation/{stored['id']}"
    response = editor_http.put(url, json=stored, headers={**SEND_JSON, "Prefer": "return=minimal"}, timeout=30)
    assert response.status_code == 200 and response.content == b"", response.text
    assert response.headers.get("Location") == f"{url}/_history/2", response.headers


# 4 Batch and transaction -----------------------------------------------------------------------


def test_a_batch_answers_each_entry_as_that_request_alone_would(
    server: Server,
    editor_token: str,
    editor_http: requests.Session,
    citizen_token: str,
    citizen_http: requests.Session,
    bp_patient_id: str,
    citizen_patient_id: str,
    other_patient_id: str,
):
    editor = server.client(editor_token)
    good, bad = new_identifier(), new_identifier()
    invalid = {**heart_rate(bp_patient_id, 99, bad), "bogusElement": True}
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": f"Patient/{bp_patient_id}"}},
        {"request": {"method": "GET", "url": f"Observation?patient={bp_patient_id}&code={BP_CODE}&_count=2"}},
        {"resource": heart_rate(bp_patient_id, 77, good), "request": {"method": "POST", "url": "Observation"}},
        {"resource": invalid, "request": {"method": "POST", "url": "Observation"}},
        {"request": {"method": "GET", "url": "Observation/no-such-reading"}},
    ]}
    answer = editor.execute("", method="post", data=batch)
    valid(answer, "Bundle")  # and so in fhirclient's strict models, entry by entry
    assert answer["type"] == "batch-response"
    patient, search, created, refused, missing = answer["entry"]

    assert status_code(patient["response"]["status"]) == 200
    assert patient["resource"]["id"] == bp_patient_id and patient["response"]["etag"] == 'W/"1"'
    assert status_code(search["response"]["status"]) == 200
    assert search["resource"]["type"] == "searchset" and len(search["resource"]["entry"]) == 2
    expected = total(editor_http, f"{server.base}/Observation", {"patient": bp_patient_id, "code": BP_CODE})
    assert search["resource"]["total"] == expected
    assert status_code(created["response"]["status"]) == 201
    assert created["response"]["location"] == f"{server.base}/Observation/{created['resource']['id']}/_history/1"
    assert status_code(refused["response"]["status"]) in (400, 422), refused
    assert "bogusElement" in outcome_text(refused["response"]["outcome"])
    assert status_code(missing["response"]["status"]) == 404
    assert total(editor_http, f"{server.base}/Observation", {"identifier": criteria(good)}) == 1
    assert total(editor_http, f"{server.base}/Observation", {"identifier": criteria(bad)}) == 0

    # A citizen's batch: each entry gets exactly the answer it gets alone.
    requests_ = [
        ("GET", f"Patient/{citizen_patient_id}", None),
        ("GET", f"Patient/{other_patient_id}", None),
        ("GET", f"Observation?patient={other_patient_id}", None),
        ("POST", "Observation", heart_rate(other_patient_id, 78)),
    ]
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {**({"resource": body} if body else {}), "request": {"method": method, "url": url}}
        for method, url, body in requests_
    ]}
    answer = fhir_response(
        citizen_http.post(server.base, json=batch, headers=SEND_JSON, timeout=30), 200, "Bundle"
    )
    alone = [
        citizen_http.request(method, f"{server.base}/{url}", json=body,
                             headers=SEND_JSON if body else {}, timeout=30)
        for method, url, body in requests_
    ]
    assert [status_code(e["response"]["status"]) for e in answer["entry"]] == [r.status_code for r in alone]
    assert [r.status_code for r in alone][:2] == [200, 404]
    assert answer["entry"][2]["resource"].get("total") == 0
    assert alone[3].status_code in (403, 404)
    citizen = server.client(citizen_token)
    assert citizen.resources("Observation").search(patient=other_patient_id).fetch() == []


def test_a_transaction_writes_all_or_nothing_and_answers_reads_after_its_writes(
    server: Server, editor_token: str, editor_http: requests.Session, bp_patient_id: str
):
    editor = server.client(editor_token)
    kept, rejected = new_identifier(), new_identifier()
    failing = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": heart_rate(bp_patient_id, 67, kept), "request": {"method": "POST", "url": "Observation"}},
        {"resource": {**heart_rate(bp_patient_id, 68, rejected), "bogusElement": True},
         "request": {"method": "POST", "url": "Observation"}},
    ]}
    response = editor_http.post(server.base, json=failing, headers=SEND_JSON, timeout=30)
    assert response.status_code in (400, 422), response.text
    outcome = fhir_response(response, response.status_code, "OperationOutcome")
    assert "bogusElement" in outcome_text(outcome) and "nothing was written" in outcome_text(outcome), outcome
    for identifier in (kept, rejected):
        assert editor.resources("Observation").search(identifier=criteria(identifier)).fetch() == []

    # Without the bad entry: written, a read placed first is answered after the writes, and an
    # `ifNoneExist` entry that matches stands for the match when the Bundle is sent again.
    succeeding = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "GET", "url": f"Observation?identifier={criteria(kept)}"}},
        {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": heart_rate(bp_patient_id, 67, kept),
         "request": {"method": "POST", "url": "Observation", "ifNoneExist": f"identifier={criteria(kept)}"}},
    ]}
    statuses, created_ids = [], set()
    for _ in range(2):
        answer = editor.execute("", method="post", data=succeeding)
        valid(answer, "Bundle")
        assert answer["type"] == "transaction-response"
        read, write = answer["entry"]
        assert read["resource"]["total"] == 1, "the GET entry was answered before the write"
        statuses.append(status_code(write["response"]["status"]))
        created_ids.add(write["resource"]["id"])
    assert statuses == [201, 200] and len(created_ids) == 1
    assert ids(editor.resources("Observation").search(identifier=criteria(kept)).fetch()) == created_ids


@pytest.mark.parametrize("kind", ["batch", "transaction"])
def test_an_empty_bundle_is_answered_without_an_empty_entry_array(
    server: Server, editor_http: requests.Session, kind: str
):
    response = editor_http.post(
        server.base, json={"resourceType": "Bundle", "type": kind}, headers=SEND_JSON, timeout=30
    )
    assert response.status_code in (200, 400), response.text
    assert json_rule_breaches(response.json()) == [], response.text


# 5 Operations ----------------------------------------------------------------------------------


def test_everything_returns_the_patients_record_and_type_narrows_it(
    server: Server, clinician_token: str, clinician_http: requests.Session, editor_http: requests.Session,
    bp_patient_id: str,
):
    from fhirclient.models.bundle import Bundle
    from fhirclient.models.observation import Observation
    from fhirclient.models.operationoutcome import OperationOutcome
    from fhirclient.models.patient import Patient

    fresh = create(editor_http, server, heart_rate(bp_patient_id, 74))
    fhir = fhirclient_for(server, clinician_token)

    everything = Bundle.read_from(f"Patient/{bp_patient_id}/$everything", fhir)  # strict R4 models
    data = everything.as_json()
    valid(data, "Bundle")
    assert everything.type == "searchset"
    first = everything.entry[0]
    assert isinstance(first.resource, Patient) and first.resource.id == bp_patient_id
    assert first.search.mode == "match"
    kinds = {}
    for entry in everything.entry[1:]:
        kinds.setdefault(entry.resource.resource_type, []).append(entry.resource)
        if not isinstance(entry.resource, OperationOutcome):
            assert entry.search.mode == "include"
    assert fresh["id"] in {o.id for o in kinds["Observation"]}
    # Each type holds the patient's whole record of it, as the same clinician's search finds it.
    for resource_type in ("Observation", "Condition", "Encounter"):
        assert kinds.get(resource_type), f"$everything has no {resource_type}: {sorted(kinds)}"
        expected = total(clinician_http, f"{server.base}/{resource_type}", {"patient": bp_patient_id})
        assert len(kinds[resource_type]) == expected, resource_type
        for resource in kinds[resource_type]:
            assert resource.as_json()["subject"]["reference"] == f"Patient/{bp_patient_id}"
    # What was left out (a clinician may not search Consent) is said in an outcome entry.
    outcomes = kinds.get("OperationOutcome", [])
    assert any("Consent" in (issue.diagnostics or "") for o in outcomes for issue in o.issue), data

    narrowed = Bundle.read_from(f"Patient/{bp_patient_id}/$everything?_type=Observation", fhir)
    valid(narrowed.as_json(), "Bundle")
    narrowed_types = {e.resource.resource_type for e in narrowed.entry}
    assert narrowed_types <= {"Patient", "Observation", "OperationOutcome"}, narrowed_types
    assert len([e for e in narrowed.entry if isinstance(e.resource, Observation)]) == len(kinds["Observation"])

    # `_since`: only what changed since then (the new reading), and the patient.
    recent = Bundle.read_from(
        f"Patient/{bp_patient_id}/$everything?_since={quote(fresh['meta']['lastUpdated'], safe='')}", fhir
    )
    valid(recent.as_json(), "Bundle")
    recent_observations = [e.resource for e in recent.entry if isinstance(e.resource, Observation)]
    assert fresh["id"] in {o.id for o in recent_observations}
    assert all(
        instant(o.meta.lastUpdated.isostring) >= instant(fresh["meta"]["lastUpdated"]) for o in recent_observations
    )
    assert len(recent_observations) < len(kinds["Observation"])


def test_lastn_returns_the_newest_readings_of_each_vital_sign(
    server: Server, clinician_token: str, clinician_http: requests.Session, editor_http: requests.Session,
    bp_patient_id: str,
):
    from fhirclient.models.bundle import Bundle
    from fhirclient.models.observation import Observation

    later = datetime.now(timezone.utc) + timedelta(minutes=5)
    newest = create(editor_http, server, heart_rate(bp_patient_id, 75, at=later))
    fhir = fhirclient_for(server, clinician_token)
    url = f"Observation/$lastn?patient={bp_patient_id}&category=vital-signs&max=1"
    bundle = Bundle.read_from(url, fhir)  # strict R4 models
    valid(bundle.as_json(), "Bundle")
    latest = [e.resource for e in bundle.entry if isinstance(e.resource, Observation)]
    by_code = {o.code.coding[0].code: o for o in latest}
    assert len(by_code) == len(latest), "max=1 gave some code twice"
    assert by_code["8867-4"].id == newest["id"], "the newest heart rate is not the one $lastn gives"

    vital_codes = {
        r["code"]["coding"][0]["code"]
        for r in search_all(clinician_http, f"{server.base}/Observation",
                            {"patient": bp_patient_id, "category": "vital-signs", "_elements": "code"})
    }
    assert set(by_code) == vital_codes and {"85354-9", "8867-4"} <= vital_codes
    for code, observation in by_code.items():
        assert observation.subject.reference == f"Patient/{bp_patient_id}"
        newest_by_search = fhir_response(clinician_http.get(f"{server.base}/Observation", params={
            "patient": bp_patient_id, "code": f"{LOINC}|{code}", "_sort": "-date", "_count": 1,
        }, timeout=30), 200, "Bundle")
        assert observation.id == resources(newest_by_search)[0]["id"], code

    three = fhir_response(clinician_http.get(f"{server.base}/Observation/$lastn", params={
        "patient": bp_patient_id, "category": "vital-signs", "max": 3,
    }, timeout=30), 200, "Bundle")
    per_code: dict[str, list[datetime]] = {}
    for observation in resources(three):
        code = observation["code"]["coding"][0]["code"]
        per_code.setdefault(code, []).append(instant(observation["effectiveDateTime"]))
    assert set(per_code) == vital_codes
    for code, dates in per_code.items():
        assert 1 <= len(dates) <= 3 and dates == sorted(dates, reverse=True), (code, dates)


def test_operations_reach_only_the_citizens_own_record(
    server: Server, citizen_http: requests.Session, citizen_patient_id: str, bp_patient_id: str
):
    own = get(citizen_http, f"{server.base}/Patient/{citizen_patient_id}/$everything", 200, "Bundle")
    assert {r["id"] for r in resources(own, "match")} == {citizen_patient_id}
    for resource in resources(own, "include"):
        assert citizen_patient_id in json.dumps(resource), f"{resource['resourceType']}/{resource['id']}"

    get(citizen_http, f"{server.base}/Patient/{bp_patient_id}/$everything", 404, "OperationOutcome")
    foreign = fhir_response(citizen_http.get(f"{server.base}/Observation/$lastn", params={
        "patient": bp_patient_id, "category": "vital-signs",
    }, timeout=30), 200, "Bundle")
    assert foreign.get("total") == 0 and not resources(foreign), foreign


# 6 $validate -----------------------------------------------------------------------------------


def test_validate_answers_whether_a_write_would_accept_the_resource_and_stores_nothing(
    server: Server, clinician_http: requests.Session, bp_patient_id: str
):
    def validate_op(body: dict) -> dict:
        url = f"{server.base}/Observation/$validate"
        response = clinician_http.post(url, json=body, headers=SEND_JSON, timeout=30)
        return fhir_response(response, 200, "OperationOutcome")

    identifier = new_identifier()
    good = heart_rate(bp_patient_id, 72, identifier)

    for body in (good, {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": good}]}):
        outcome = validate_op(body)
        assert not errors(outcome) and [i["severity"] for i in outcome["issue"]] == ["information"], outcome

    # What a write would refuse: each answered (200) with an error naming the element.
    missing_status = {k: v for k, v in good.items() if k != "status"}
    bad_bodies = {
        "Observation.bogusElement": {**good, "bogusElement": 1},
        "Observation.status": missing_status,
        "Observation.subject": {**good, "subject": {"display": "someone"}},
        "Observation.resourceType": {"resourceType": "Patient", "gender": "female"},
    }
    for element, body in bad_bodies.items():
        outcome = validate_op(body)
        assert errors(outcome), f"{element}: {outcome}"
        assert element in outcome_text(outcome), outcome

    assert total(clinician_http, f"{server.base}/Observation", {"identifier": criteria(identifier)}) == 0


def test_validate_does_not_call_a_patient_acceptable_that_no_write_accepts(
    server: Server, clinician_http: requests.Session
):
    patient = {"resourceType": "Patient", "gender": "female", "birthDate": "1980-01-01"}
    written = clinician_http.post(f"{server.base}/Patient", json=patient, headers=SEND_JSON, timeout=30)
    assert written.status_code == 405, written.text
    checked = clinician_http.post(f"{server.base}/Patient/$validate", json=patient, headers=SEND_JSON, timeout=30)
    assert checked.status_code >= 400 or errors(checked.json()), checked.text


# 7 HTTP: caching and content negotiation -------------------------------------------------------


def http_date(moment: datetime) -> str:
    return email.utils.format_datetime(moment.astimezone(timezone.utc), usegmt=True)


def test_a_read_carries_etag_and_last_modified_and_a_current_copy_gets_304(
    server: Server, clinician_http: requests.Session, bp_patient_id: str
):
    url = f"{server.base}/Patient/{bp_patient_id}"
    response = clinician_http.get(url, timeout=30)
    patient = fhir_response(response, 200, "Patient")
    etag, last_modified = response.headers.get("ETag"), response.headers.get("Last-Modified")
    assert etag == f'W/"{patient["meta"]["versionId"]}"'
    assert last_modified, response.headers
    modified = email.utils.parsedate_to_datetime(last_modified)
    assert modified == instant(patient["meta"]["lastUpdated"]).replace(microsecond=0), (modified, patient["meta"])
    assert response.headers.get("Cache-Control") == "no-store"

    for headers in (
        {"If-None-Match": etag},
        {"If-Modified-Since": http_date(modified + timedelta(seconds=1))},
    ):
        current = clinician_http.get(url, headers=headers, timeout=30)
        assert current.status_code == 304, f"{headers}: {current.status_code} {current.text}"
        assert current.content == b""
        assert current.headers.get("ETag") == etag and current.headers.get("Last-Modified") == last_modified

    for headers in (
        {"If-None-Match": 'W/"0"'},
        {"If-Modified-Since": http_date(modified - timedelta(days=1))},
        # If-None-Match wins over If-Modified-Since.
        {"If-None-Match": 'W/"0"', "If-Modified-Since": http_date(modified + timedelta(days=1))},
    ):
        stale = clinician_http.get(url, headers=headers, timeout=30)
        assert fhir_response(stale, 200, "Patient") == patient, headers


def test_a_copy_of_a_changed_resource_is_not_current(
    server: Server, editor_http: requests.Session, bp_patient_id: str
):
    reading = create(editor_http, server, heart_rate(bp_patient_id, 73))
    url = f"{server.base}/Observation/{reading['id']}"
    assert editor_http.get(url, headers={"If-None-Match": 'W/"1"'}, timeout=30).status_code == 304
    changed = {**reading, "valueQuantity": {**reading["valueQuantity"], "value": 74}}
    fhir_response(editor_http.put(url, json=changed, headers=SEND_JSON, timeout=30), 200, "Observation")
    fresh = editor_http.get(url, headers={"If-None-Match": 'W/"1"'}, timeout=30)
    assert fhir_response(fresh, 200, "Observation")["valueQuantity"]["value"] == 74
    assert fresh.headers.get("ETag") == 'W/"2"'
    assert editor_http.get(url, headers={"If-None-Match": 'W/"2"'}, timeout=30).status_code == 304


def test_revalidation_passes_the_checks_and_audit_of_a_read(
    server: Server, citizen_patient_id: str, other_patient_id: str
):
    sub = f"e2e-revalidating-{uuid.uuid4().hex[:8]}"
    http = server.session(server.token("citizen", patient=citizen_patient_id, sub=sub))
    # Another patient's record: not found, whatever the client claims to hold.
    for headers in ({"If-None-Match": 'W/"1"'}, {"If-Modified-Since": http_date(datetime.now(timezone.utc))}):
        get(http, f"{server.base}/Patient/{other_patient_id}", 404, "OperationOutcome", headers=headers)
    # No token: 401, not 304.
    get(server.session(None), f"{server.base}/Patient/{citizen_patient_id}", 401, "OperationOutcome",
        headers={"If-None-Match": 'W/"1"'})
    # Their own: 304, and the citizen's log records the read.
    own = http.get(f"{server.base}/Patient/{citizen_patient_id}", headers={"If-None-Match": 'W/"1"'}, timeout=30)
    assert own.status_code == 304, own.text
    log = search_all(http, f"{server.base}/AuditEvent", {"patient": citizen_patient_id})
    reads = [
        event for event in log
        if any(a["who"].get("identifier", {}).get("value") == sub for a in event["agent"])
        and any(s.get("code") == "read" for s in event.get("subtype", []))
        and any(e.get("what", {}).get("reference") == f"Patient/{citizen_patient_id}" for e in event["entity"])
    ]
    assert len(reads) == 1 and reads[0]["outcome"] == "0", reads


@pytest.mark.parametrize(
    ("path", "params"),
    [("Patient/{id}", {}), ("Patient", {"_count": 1}), ("metadata", {})],
    ids=["read", "search", "metadata"],
)
def test_only_fhir_json_is_served(
    server: Server, clinician_http: requests.Session, bp_patient_id: str, path: str, params: dict
):
    url = f"{server.base}/{path.format(id=bp_patient_id)}"
    for accept in ("application/fhir+xml", "application/xml", "text/html"):
        refused = clinician_http.get(url, params=params, headers={"Accept": accept}, timeout=30)
        outcome = fhir_response(refused, 406, "OperationOutcome")
        assert errors(outcome) and "JSON" in outcome_text(outcome), outcome
    answers = [clinician_http.get(url, params=params, headers={"Accept": accept}, timeout=30)
               for accept in ("application/fhir+json", "application/json", "*/*")]
    answers += [clinician_http.get(url, params={**params, "_format": fmt}, timeout=30)
                for fmt in ("json", "application/fhir+json", "application/json")]
    for answer in answers:
        assert answer.status_code == 200, f"{answer.url} {answer.request.headers['Accept']}: {answer.text}"
        assert answer.headers["Content-Type"].split(";")[0] == FHIR_JSON
        same = {k: v for k, v in answer.json().items() if k != "link"}
        assert same == {k: v for k, v in answers[0].json().items() if k != "link"}
    for fmt in ("xml", "application/fhir+xml", "html"):
        outcome = get(clinician_http, url, 406, "OperationOutcome", params={**params, "_format": fmt})
        assert "JSON" in outcome_text(outcome), outcome


def test_the_capability_statement_has_no_empty_arrays(server: Server):
    response = server.session(None).get(f"{server.base}/metadata", timeout=30)
    assert response.status_code == 200, response.text
    assert json_rule_breaches(response.json()) == []


# 8 Result parameters ---------------------------------------------------------------------------


def test_summary_count_total_and_pretty_shape_a_search(
    server: Server, clinician_http: requests.Session, bp_patient_id: str
):
    url, search = f"{server.base}/Observation", {"patient": bp_patient_id, "code": BP_CODE}
    plain_page = fhir_response(clinician_http.get(url, params={**search, "_count": 3}, timeout=30), 200, "Bundle")
    matches = plain_page["total"]
    assert matches > 3 and len(plain_page["entry"]) == 3

    counted = get(clinician_http, url, 200, "Bundle", params={**search, "_summary": "count"})
    assert counted["total"] == matches and "entry" not in counted, counted

    no_total = get(clinician_http, url, 200, "Bundle", params={**search, "_total": "none", "_count": 3})
    assert "total" not in no_total and len(no_total["entry"]) == 3 and link(no_total, "next")
    for mode in ("accurate", "estimate"):
        counted = get(clinician_http, url, 200, "Bundle", params={**search, "_total": mode, "_count": 3})
        assert counted["total"] == matches, mode

    pretty = clinician_http.get(url, params={**search, "_count": 3, "_pretty": "true"}, timeout=30)
    body = fhir_response(pretty, 200, "Bundle")
    assert "\n  " in pretty.text, "_pretty=true is not indented"
    assert "\n" not in clinician_http.get(url, params={**search, "_count": 3}, timeout=30).text.strip()
    assert body["entry"] == plain_page["entry"] and body["total"] == matches


def test_summary_and_elements_leave_elements_out_and_tag_the_subset(
    server: Server, clinician_http: requests.Session, bp_patient_id: str
):
    url = f"{server.base}/Patient/{bp_patient_id}"
    full = fhir_response(clinician_http.get(url, timeout=30), 200, "Patient")
    assert {"text", "generalPractitioner", "name", "gender"} <= set(full), sorted(full)
    assert SUBSETTED not in full["meta"].get("tag", [])

    def subset(params: dict) -> dict:
        resource = fhir_response(clinician_http.get(url, params=params, timeout=30), 200, "Patient")
        assert SUBSETTED in resource["meta"].get("tag", []), (params, resource["meta"])
        assert resource["id"] == bp_patient_id and resource["meta"]["versionId"] == full["meta"]["versionId"]
        for key, value in resource.items():
            if key != "meta":
                assert value == full[key], f"{params}: {key} changed"
        return resource

    # Summary elements of R4 Patient: not the narrative, not generalPractitioner.
    summary = subset({"_summary": "true"})
    assert {"name", "gender", "birthDate", "identifier"} <= set(summary)
    assert "text" not in summary and "generalPractitioner" not in summary
    data = subset({"_summary": "data"})
    assert "text" not in data and set(full) - set(data) == {"text"}
    text = subset({"_summary": "text"})
    assert set(text) == {"resourceType", "id", "meta", "text"}
    assert set(subset({"_elements": "gender,birthDate"})) == {"resourceType", "id", "meta", "gender", "birthDate"}
    everything = fhir_response(clinician_http.get(url, params={"_summary": "false"}, timeout=30), 200, "Patient")
    assert everything == full

    # A search's entries: `_elements=status` keeps status and the mandatory code.
    bundle = fhir_response(clinician_http.get(f"{server.base}/Observation", params={
        "patient": bp_patient_id, "code": BP_CODE, "_elements": "status", "_count": 4,
    }, timeout=30), 200, "Bundle")
    assert len(bundle["entry"]) == 4
    for observation in resources(bundle):
        assert set(observation) == {"resourceType", "id", "meta", "status", "code"}, observation
        assert SUBSETTED in observation["meta"]["tag"]

    for params in ({"_summary": "bogus"}, {"_elements": "bogus"}, {"_summary": "true", "_elements": "gender"}):
        fhir_response(clinician_http.get(url, params=params, timeout=30), 400, "OperationOutcome")
    fhir_response(clinician_http.get(url, params={"_summary": "count"}, timeout=30), 400, "OperationOutcome")


@pytest.mark.parametrize(
    "extra",
    [{}, {"_summary": "count"}, {"_summary": "true"}, {"_elements": "status"}, {"_total": "accurate"},
     {"_count": "0", "_totalMethod": "count"}, {"_pretty": "true"}],
    ids=["plain", "summary-count", "summary-true", "elements", "total", "fhirpy-count", "pretty"],
)
def test_result_parameters_do_not_widen_a_citizens_access(
    server: Server,
    citizen_http: requests.Session,
    clinician_http: requests.Session,
    citizen_patient_id: str,
    other_patient_id: str,
    extra: dict,
):
    assert total(clinician_http, f"{server.base}/Observation", {"patient": other_patient_id}) > 0
    foreign = fhir_response(citizen_http.get(f"{server.base}/Observation", params={
        "patient": other_patient_id, **extra,
    }, timeout=30), 200, "Bundle")
    assert foreign.get("total", 0) == 0 and not foreign.get("entry"), foreign
    on_patients = {**extra, "_elements": "gender"} if "_elements" in extra else extra
    patients = get(citizen_http, f"{server.base}/Patient", 200, "Bundle", params=on_patients)
    assert patients["total"] == 1
    assert {r["id"] for r in resources(patients)} <= {citizen_patient_id}
    if extra.get("_summary") != "count":  # a read cannot be counted (400)
        read = citizen_http.get(f"{server.base}/Patient/{other_patient_id}", params={
            k: v for k, v in on_patients.items() if k not in ("_count", "_totalMethod", "_total")
        }, timeout=30)
        fhir_response(read, 404, "OperationOutcome")
    # A clinician may not search Consent; counting is no way around it.
    fhir_response(clinician_http.get(f"{server.base}/Consent", params=extra, timeout=30), 403, "OperationOutcome")


# 9 Search: strings, modifiers, prefixes, quantities --------------------------------------------


def family(patient: dict) -> str:
    return patient["name"][0]["family"]


def patient_with(all_patients: list[dict], letter: str, part: str = "family") -> dict:
    for patient in all_patients:
        name = patient["name"][0]
        values = [name.get("family", "")] if part == "family" else name.get("given", [])
        if any(letter in value for value in values):
            return patient
    pytest.fail(f"no generated patient has {letter!r} in their {part} name: the test needs one")


def test_names_match_without_regard_to_case_accents_or_how_danish_letters_are_written(
    clinician: SyncFHIRClient, all_patients: list[dict]
):
    patients = clinician.resources("Patient")

    def found(**params) -> set[str]:
        return ids(patients.search(**params).limit(200).fetch_all())

    def starting_with(name: str) -> set[str]:
        return {p["id"] for p in all_patients if family(p).startswith(name)}

    ae = family(patient_with(all_patients, "æ"))  # e.g. Kjær
    oe = family(patient_with(all_patients, "ø"))  # e.g. Jørgensen
    for name, variants in (
        (ae, [ae, ae.lower(), ae.upper(), ae.replace("æ", "ae"), ae.upper().replace("Æ", "AE"),
              ae.replace("æ", "ä")]),
        (oe, [oe.lower(), oe.upper(), oe.replace("ø", "o"), oe.replace("ø", "oe"), oe.replace("ø", "ö"),
              oe.replace("e", "é").upper()]),
    ):
        expected = starting_with(name)
        assert expected
        for variant in variants:
            assert found(family=variant) == expected, f"family={variant} should find the {name} patients"
        assert found(family=name[:3].lower()) >= expected, "a string matches the start of a name"

    søren = patient_with(all_patients, "ø", "given")
    given = next(g for g in søren["name"][0]["given"] if "ø" in g)
    for variant in (given, given.lower(), given.replace("ø", "o"), given.replace("ø", "oe"), given.upper()):
        assert søren["id"] in found(given=variant), f"given={variant}"
        assert søren["id"] in found(name=variant), f"name={variant}"
    assert found(family="Zzyzx") == set()


def test_exact_and_contains_string_modifiers(clinician: SyncFHIRClient, all_patients: list[dict]):
    patients = clinician.resources("Patient")

    def found(**params) -> set[str]:
        return ids(patients.search(**params).limit(200).fetch_all())

    ae = family(patient_with(all_patients, "æ"))
    exactly = {p["id"] for p in all_patients if family(p) == ae}
    assert found(family__exact=ae) == exactly
    for near in (ae.lower(), ae.replace("æ", "ae"), ae + "x", ae[:-1]):
        assert found(family__exact=near) == set(), f"family:exact={near} matched"

    assert found(family__contains="sen") == {p["id"] for p in all_patients if "sen" in family(p).lower()}
    assert found(family="sen") == {p["id"] for p in all_patients if family(p).lower().startswith("sen")}
    oe = family(patient_with(all_patients, "ø"))
    middle = oe[1:-2]  # e.g. "ørgens": inside the name, with the ø
    expected = {p["id"] for p in all_patients if middle in family(p)}
    assert found(family__contains=middle.upper().replace("Ø", "O")) == expected
    assert found(family__contains=middle) == expected


def test_missing_and_not_modifiers(
    clinician: SyncFHIRClient, clinician_http: requests.Session, server: Server,
    all_patients: list[dict], bp_patient_id: str,
):
    patients = clinician.resources("Patient")
    count = len(all_patients)
    assert patients.search(gender__missing=False).count() == sum(1 for p in all_patients if "gender" in p) == count
    assert patients.search(gender__missing=True).count() == 0
    assert patients.search(general_practitioner__missing=False).count() == sum(
        1 for p in all_patients if p.get("generalPractitioner")
    )
    not_male = ids(patients.search(gender__not="male").limit(200).fetch_all())
    assert not_male == {p["id"] for p in all_patients if p.get("gender") != "male"}
    assert 0 < len(not_male) < count

    record = search_all(clinician_http, f"{server.base}/Observation", {"patient": bp_patient_id})
    observations = clinician.resources("Observation").search(patient=bp_patient_id).limit(200)
    without_value = {o["id"] for o in record if "valueQuantity" not in o}
    assert without_value and without_value != {o["id"] for o in record}
    assert ids(observations.search(value_quantity__missing=True).fetch_all()) == without_value
    with_value = {o["id"] for o in record} - without_value
    assert ids(observations.search(value_quantity__missing=False).fetch_all()) == with_value
    without_encounter = {o["id"] for o in record if "encounter" not in o}
    assert ids(observations.search(encounter__missing=True).fetch_all()) == without_encounter
    bp_code = BP_CODE.split("|")[1]
    not_bp = {o["id"] for o in record if bp_code not in {c["code"] for c in o["code"]["coding"]}}
    assert ids(observations.search(code__not=BP_CODE).fetch_all()) == not_bp


def test_date_prefixes_compare_with_copenhagen_days(
    clinician: SyncFHIRClient, all_patients: list[dict], bp_patient_id: str
):
    readings = clinician.resources("Observation").search(patient=bp_patient_id, code=BP_CODE).limit(200)
    everything = readings.fetch_all()
    when = {o.id: instant(o["effectiveDateTime"]) for o in everything}
    middle = sorted(when.values())[len(when) // 2]
    day = middle.astimezone(COPENHAGEN).date()
    start = datetime.combine(day, time(), COPENHAGEN)
    end = datetime.combine(day + timedelta(days=1), time(), COPENHAGEN)
    expected = {
        "ge": {i for i, t in when.items() if t >= start},
        "sa": {i for i, t in when.items() if t >= end},
        "eb": {i for i, t in when.items() if t < start},
        "le": {i for i, t in when.items() if t < end},
        "eq": {i for i, t in when.items() if start <= t < end},
    }
    assert expected["eq"], "the chosen day has no reading"
    for prefix, wanted in expected.items():
        got = ids(readings.search(date=f"{prefix}{day.isoformat()}").fetch_all())
        assert got == wanted, f"date={prefix}{day}: {len(got)} readings, expected {len(wanted)}"

    # Birth dates (days): sa and eb leave the day itself out, ge and le keep it.
    born = date.fromisoformat(all_patients[len(all_patients) // 2]["birthDate"])
    births = {p["id"]: date.fromisoformat(p["birthDate"]) for p in all_patients}
    patients = clinician.resources("Patient").limit(200)
    for prefix, keep in (
        ("sa", lambda d: d > born), ("eb", lambda d: d < born),
        ("ge", lambda d: d >= born), ("le", lambda d: d <= born),
    ):
        got = ids(patients.search(birthdate=f"{prefix}{born.isoformat()}").fetch_all())
        assert got == {i for i, d in births.items() if keep(d)}, f"birthdate={prefix}{born}"
    year = ids(patients.search(birthdate=str(born.year)).fetch_all())
    assert year == {i for i, d in births.items() if d.year == born.year}


def test_last_updated_tag_profile_security_and_source_find_what_was_written(
    clinician: SyncFHIRClient, editor_http: requests.Session, server: Server, bp_patient_id: str
):
    marker = uuid.uuid4().hex
    profile = f"http://e2e.healthcloud.test/StructureDefinition/pulse-{marker}"
    reading = {
        **heart_rate(bp_patient_id, 101),
        "meta": {
            "tag": [{"system": "urn:e2e:tag", "code": marker}],
            "profile": [profile],
            "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N"}],
        },
    }
    stored = create(editor_http, server, reading)
    assert stored["meta"]["tag"] == reading["meta"]["tag"] and stored["meta"]["profile"] == [profile]
    source = stored["meta"]["source"]  # the server names the writer
    assert EDITOR_SUB in source, stored["meta"]

    observations = clinician.resources("Observation")
    assert ids(observations.search(_tag=f"urn:e2e:tag|{marker}").fetch_all()) == {stored["id"]}
    assert ids(observations.search(_tag=marker).fetch_all()) == {stored["id"]}
    assert observations.search(_tag=f"urn:e2e:other|{marker}").fetch_all() == []
    assert ids(observations.search(_profile=profile).fetch_all()) == {stored["id"]}
    labelled = observations.search(
        patient=bp_patient_id, _security="http://terminology.hl7.org/CodeSystem/v3-Confidentiality|N"
    ).limit(200).fetch_all()
    assert stored["id"] in ids(labelled)
    assert all(reading["meta"]["security"][0] in o["meta"]["security"] for o in labelled)
    by_source = observations.search(patient=bp_patient_id, _source=source).limit(200).fetch_all()
    assert stored["id"] in ids(by_source) and all(o["meta"]["source"] == source for o in by_source)

    # _lastUpdated: what changed at or after the write, and what did not.
    heart_rates = observations.search(patient=bp_patient_id, code=f"{LOINC}|8867-4").limit(200)
    changed = {o.id: instant(o["meta"]["lastUpdated"]) for o in heart_rates.fetch_all()}
    at = stored["meta"]["lastUpdated"]
    since = ids(heart_rates.search(_lastUpdated=f"ge{at}").fetch_all())
    assert since == {i for i, t in changed.items() if t >= instant(at)} and stored["id"] in since
    before = ids(heart_rates.search(_lastUpdated=f"lt{at}").fetch_all())
    assert before == {i for i, t in changed.items() if t < instant(at)} and stored["id"] not in before


def test_quantities_compare_as_numbers_on_values_and_blood_pressure_components(
    clinician: SyncFHIRClient, clinician_http: requests.Session, server: Server, bp_patient_id: str
):
    record = search_all(clinician_http, f"{server.base}/Observation", {"patient": bp_patient_id})
    observations = clinician.resources("Observation").search(patient=bp_patient_id).limit(200)

    # A blood pressure's parts are components: `code=8480-6` is no panel, the component
    # search parameters find them.
    panels = [o for o in record if BP_CODE.split("|")[1] in {c["code"] for c in o["code"]["coding"]}]
    assert panels
    assert observations.search(code=f"{LOINC}|8480-6").fetch_all() == []
    assert ids(observations.search(combo_code=f"{LOINC}|8480-6").fetch_all()) == {o["id"] for o in panels}

    def component_values(observation: dict) -> list[float]:
        return [c["valueQuantity"]["value"] for c in observation.get("component", []) if "valueQuantity" in c]

    systolic = sorted(v for o in panels for v in component_values(o))
    threshold = systolic[len(systolic) * 3 // 4]
    for query, keep in (
        (f"gt{threshold}", lambda v: v > threshold),
        (f"ge{threshold}|{UCUM}|mm[Hg]", lambda v: v >= threshold),
        (f"lt{threshold}", lambda v: v < threshold),
    ):
        got = ids(observations.search(component_value_quantity=query).fetch_all())
        wanted = {o["id"] for o in record if any(keep(v) for v in component_values(o))}
        assert got == wanted, f"component-value-quantity={query}: {len(got)} found, {len(wanted)} expected"

    # valueQuantity: prefixes, units and eq within the value's precision.
    valued = [o for o in record if "valueQuantity" in o]
    weights = [o for o in valued if o["valueQuantity"].get("code") == "kg"]
    assert weights, "the patient has no body weights"
    heaviest = max(o["valueQuantity"]["value"] for o in weights)
    limit = Decimal(str(heaviest)) - 1
    got = ids(observations.search(value_quantity=f"gt{limit}|{UCUM}|kg").fetch_all())
    assert got == {o["id"] for o in weights if Decimal(str(o["valueQuantity"]["value"])) > limit}
    got = ids(observations.search(value_quantity=f"gt{limit}").fetch_all())
    assert got == {o["id"] for o in valued if Decimal(str(o["valueQuantity"]["value"])) > limit}
    value = Decimal(str(weights[0]["valueQuantity"]["value"]))
    half = Decimal(1).scaleb(value.as_tuple().exponent) / 2  # "104.2" means 104.15 up to 104.25
    got = ids(observations.search(value_quantity=f"{value}|{UCUM}|kg").fetch_all())
    near = {o["id"] for o in weights if value - half <= Decimal(str(o["valueQuantity"]["value"])) < value + half}
    assert got == near
    assert weights[0]["id"] in got
    assert observations.search(value_quantity=f"{value}|{UCUM}|mm[Hg]").fetch_all() == []


# Writes beyond heart rates ---------------------------------------------------------------------

WRITER_SUB = "e2e-breadth-writer"
WRITER_SCOPES = (
    "user/*.rs user/Observation.cud user/Condition.c user/RiskAssessment.c user/Binary.c "
    "user/DocumentReference.c"
)
SNOMED = "http://snomed.info/sct"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"


@pytest.fixture(scope="module")
def writer_token(server: Server) -> str:
    """A clinician who may also record diagnoses, risk assessments and documents (Binary)."""
    return server.token("clinician", sub=WRITER_SUB, scope=WRITER_SCOPES)


@pytest.fixture(scope="module")
def writer_http(server: Server, writer_token: str) -> requests.Session:
    return server.session(writer_token)


# Every refused request spends a per-user budget (30 in a burst, then 429): the refusals the
# tests below provoke are spent by subjects of their own, not by conftest's clinician and
# citizen, whom every module uses.


@pytest.fixture(scope="module")
def refused_clinician_http(server: Server) -> requests.Session:
    """A clinician with the default scopes, under a subject of its own."""
    return server.session(server.token("clinician", sub="e2e-breadth-refused-clinician"))


@pytest.fixture(scope="module")
def stranger_token(server: Server, citizen_patient_id: str) -> str:
    """The citizen of `citizen_patient_id` under a subject of its own: a stranger to every
    other patient's record."""
    return server.token("citizen", patient=citizen_patient_id, sub="e2e-breadth-stranger")


@pytest.fixture(scope="module")
def stranger_http(server: Server, stranger_token: str) -> requests.Session:
    return server.session(stranger_token)


def diagnosis(patient_id: str, text: str, coding: list[dict] | None = None) -> dict:
    """An active Condition of `patient_id` whose code says `text` (and has `coding`, if given)."""
    code: dict = {"text": text}
    if coding:
        code["coding"] = coding
    return {
        "resourceType": "Condition",
        "identifier": [new_identifier()],
        "clinicalStatus": {"coding": [{"system": CONDITION_CLINICAL, "code": "active"}]},
        "code": code,
        "subject": {"reference": f"Patient/{patient_id}"},
    }


def has_code(concept: dict | None, code: str) -> bool:
    return any(c.get("code") == code for c in (concept or {}).get("coding", []))


def history_key(entry: dict) -> tuple[str, str]:
    """(type, id) of a history entry, from its fullUrl `[base]/[type]/[id]/_history/[v]`
    (a deletion has no resource)."""
    resource_type, resource_id = entry["fullUrl"].split("/_history/")[0].split("/")[-2:]
    return resource_type, resource_id


# 10 Patient/$summary ---------------------------------------------------------------------------

IPS_SECTIONS = [
    ("Medication Summary", "10160-0", "MedicationStatement"),
    ("Allergies and Intolerances", "48765-2", "AllergyIntolerance"),
    ("Problem List", "11450-4", "Condition"),
]
LIST_EMPTY_REASON = "http://terminology.hl7.org/CodeSystem/list-empty-reason"


def references(value) -> list[str]:
    """Every `reference` of a Reference anywhere in `value`."""
    if isinstance(value, dict):
        found = [value["reference"]] if isinstance(value.get("reference"), str) else []
        return found + [r for key, item in value.items() if key != "reference" for r in references(item)]
    if isinstance(value, list):
        return [r for item in value for r in references(item)]
    return []


def current_allergy(allergy: dict) -> bool:
    """Whether an allergy is current: clinically active, or without a clinical status and not
    refuted or entered in error."""
    if "clinicalStatus" in allergy:
        return has_code(allergy["clinicalStatus"], "active")
    verification = allergy.get("verificationStatus")
    return not (has_code(verification, "refuted") or has_code(verification, "entered-in-error"))


def current_record(http: requests.Session, server: Server, patient_id: str) -> dict[str, set[str]]:
    """The ids of the patient's current medication, allergies and problems, by IPS section title,
    as `http`'s own searches find them."""
    def found(resource_type: str, params: dict) -> list[dict]:
        return search_all(http, f"{server.base}/{resource_type}", {"patient": patient_id, **params})

    return {
        "Medication Summary": {r["id"] for r in found("MedicationStatement", {"status": "active"})},
        "Allergies and Intolerances": {r["id"] for r in found("AllergyIntolerance", {}) if current_allergy(r)},
        "Problem List": {r["id"] for r in found("Condition", {"clinical-status": "active"})},
    }


@pytest.fixture(scope="module")
def summary_patient_id(server: Server, clinician_http: requests.Session) -> str:
    """A patient with current medication, a current allergy and active problems, so that every
    section of their summary has entries."""
    def patients(resource_type: str, params: dict, keep=lambda r: True) -> set[str]:
        return {
            (r.get("subject") or r.get("patient"))["reference"].removeprefix("Patient/")
            for r in search_all(clinician_http, f"{server.base}/{resource_type}", params) if keep(r)
        }

    candidates = (
        patients("MedicationStatement", {"status": "active"})
        & patients("AllergyIntolerance", {}, current_allergy)
        & patients("Condition", {"clinical-status": "active"})
    )
    assert candidates, "no generated patient has current medication, allergies and problems"
    return sorted(candidates)[0]


def test_summary_is_the_patients_ips_document_of_their_current_medication_allergies_and_problems(
    server: Server, clinician_token: str, clinician_http: requests.Session, summary_patient_id: str
):
    from fhirclient.models.bundle import Bundle
    from fhirclient.models.composition import Composition
    from fhirclient.models.patient import Patient

    fhir = fhirclient_for(server, clinician_token)
    document = Bundle.read_from(f"Patient/{summary_patient_id}/$summary", fhir)  # strict R4 models
    data = document.as_json()
    valid(data, "Bundle")
    assert document.type == "document" and document.timestamp is not None
    assert document.identifier.system == "urn:ietf:rfc:3986" and document.identifier.value.startswith("urn:uuid:")

    # The first entry is the Composition: an IPS (LOINC 60591-5) of the patient, in three sections.
    composition = document.entry[0].resource
    assert isinstance(composition, Composition), type(composition)
    assert composition.status == "final"
    assert [(c.system, c.code) for c in composition.type.coding] == [(LOINC, "60591-5")]
    assert [(s.title, s.code.coding[0].system, s.code.coding[0].code) for s in composition.section] == [
        (title, LOINC, code) for title, code, _ in IPS_SECTIONS
    ]
    by_url = {entry.fullUrl: entry.resource for entry in document.entry}
    assert len(by_url) == len(document.entry), "two entries share a fullUrl"
    assert all(url.startswith("urn:uuid:") for url in by_url), sorted(by_url)
    patient = by_url[composition.subject.reference]
    assert isinstance(patient, Patient) and patient.id == summary_patient_id

    # Every reference in the document, the sections' entries included, is to an entry in it.
    found_references = references(data)
    assert found_references and all(r.startswith("urn:uuid:") and r in by_url for r in found_references), [
        r for r in found_references if r not in by_url
    ]

    # Each section lists exactly the current resources the same clinician's searches find.
    expected = current_record(clinician_http, server, summary_patient_id)
    assert all(expected.values()), f"the chosen patient has an empty section: {expected}"
    for section, (title, _, resource_type) in zip(composition.section, IPS_SECTIONS):
        listed = [by_url[entry.reference] for entry in section.entry or []]
        assert {r.resource_type for r in listed} == {resource_type}, title
        assert {r.id for r in listed} == expected[title], title
        assert section.emptyReason is None and section.text.status == "generated", title
        for resource in listed:  # each names the patient by their entry in the document
            named = resource.as_json().get("subject") or resource.as_json().get("patient")
            assert named["reference"] == composition.subject.reference, resource.id
    assert len(document.entry) == 2 + sum(len(ids_) for ids_ in expected.values()), "entries no section lists"


def test_a_citizen_gets_their_own_summary_and_404_for_another_patients(
    server: Server,
    clinician_http: requests.Session,
    stranger_http: requests.Session,
    summary_patient_id: str,
    citizen_patient_id: str,
    other_patient_id: str,
):
    url = f"{server.base}/Patient/{{}}/$summary"
    own_http = server.session(server.token("citizen", patient=summary_patient_id, sub="e2e-summary-citizen"))
    own = get(own_http, url.format(summary_patient_id), 200, "Bundle")
    composition = own["entry"][0]["resource"]
    by_url = {e["fullUrl"]: e["resource"] for e in own["entry"]}
    assert by_url[composition["subject"]["reference"]]["id"] == summary_patient_id
    expected = current_record(clinician_http, server, summary_patient_id)
    for section in composition["section"]:  # the citizen sees all of their own summary
        assert "emptyReason" not in section, section
        assert {by_url[e["reference"]]["id"] for e in section["entry"]} == expected[section["title"]]

    # A citizen's token reaches no other patient's summary.
    foreign = summary_patient_id if summary_patient_id != citizen_patient_id else other_patient_id
    outcome = get(stranger_http, url.format(foreign), 404, "OperationOutcome")
    assert errors(outcome) and [i["code"] for i in outcome["issue"]] == ["not-found"], outcome
    mine = get(stranger_http, url.format(citizen_patient_id), 200, "Bundle")
    assert mine["type"] == "document"
    for section in mine["entry"][0]["resource"]["section"]:  # nothing withheld from their own
        reasons = [c["code"] for c in section.get("emptyReason", {}).get("coding", [])]
        assert section.get("entry") or reasons == ["nilknown"], section


def test_a_summary_section_the_caller_may_not_search_is_withheld_and_the_others_are_filled_in(
    server: Server, clinician_http: requests.Session, summary_patient_id: str
):
    narrow = server.session(server.token(
        "clinician", sub="e2e-summary-no-medication",
        scope="user/Patient.rs user/AllergyIntolerance.rs user/Condition.rs",
    ))
    document = get(narrow, f"{server.base}/Patient/{summary_patient_id}/$summary", 200, "Bundle")
    assert document["type"] == "document"
    composition = document["entry"][0]["resource"]
    sections = {s["title"]: s for s in composition["section"]}
    assert list(sections) == [title for title, _, _ in IPS_SECTIONS]

    medication = sections["Medication Summary"]
    assert "entry" not in medication, medication
    assert [(c["system"], c["code"]) for c in medication["emptyReason"]["coding"]] == [
        (LIST_EMPTY_REASON, "withheld")
    ]
    assert "MedicationStatement" in medication["text"]["div"], "the section does not say what was denied"
    assert "MedicationStatement" not in {e["resource"]["resourceType"] for e in document["entry"]}

    expected = current_record(clinician_http, server, summary_patient_id)
    by_url = {e["fullUrl"]: e["resource"] for e in document["entry"]}
    for title in ("Allergies and Intolerances", "Problem List"):
        assert "emptyReason" not in sections[title]
        assert {by_url[e["reference"]]["id"] for e in sections[title]["entry"]} == expected[title], title


# 11 The system's history -----------------------------------------------------------------------


def test_the_system_history_lists_every_types_changes_newest_first_in_pages_within_the_callers_scopes(
    server: Server, writer_token: str, writer_http: requests.Session, bp_patient_id: str
):
    from fhirclient.models.bundle import Bundle

    earlier = create(writer_http, server, heart_rate(bp_patient_id, 63))
    reading = create(writer_http, server, heart_rate(bp_patient_id, 64))
    condition = create(writer_http, server, diagnosis(bp_patient_id, "Hjertebanken"))
    since = reading["meta"]["lastUpdated"]
    assert instant(earlier["meta"]["lastUpdated"]) < instant(since)
    ours = {("Observation", reading["id"]), ("Condition", condition["id"]), ("Observation", earlier["id"])}

    fhir = fhirclient_for(server, writer_token)
    history = Bundle.read_from(f"_history?_since={quote(since, safe='')}", fhir)  # strict R4 models
    data = history.as_json()
    valid(data, "Bundle")
    assert history.type == "history"
    entries = data["entry"]
    # Both writes since then, of two types, newest first; the earlier write is not listed.
    assert [history_key(e) for e in entries if history_key(e) in ours] == [
        ("Condition", condition["id"]), ("Observation", reading["id"])
    ]
    changed = [instant(e["response"]["lastModified"]) for e in entries]
    assert changed == sorted(changed, reverse=True), "the system's history is not newest first"
    assert all(c >= instant(since) for c in changed), "the system's history ignores _since"
    newest = entries[0]
    assert newest["fullUrl"] == f"{server.base}/Condition/{condition['id']}/_history/1"
    assert newest["request"] == {"method": "POST", "url": "Condition"}
    assert status_code(newest["response"]["status"]) == 201 and newest["response"]["etag"] == 'W/"1"'
    assert newest["resource"] == condition

    # One to a page, following the next links: the same entries in the same order.
    paged, url, params = [], f"{server.base}/_history", {"_since": since, "_count": 1}
    for _ in range(len(entries) + 2):
        page = fhir_response(writer_http.get(url, params=params, timeout=30), 200, "Bundle")
        assert page["type"] == "history" and len(page.get("entry", [])) <= 1, page
        paged += [history_key(e) for e in page.get("entry", [])]
        url, params = link(page, "next"), None
        if url is None:
            break
    assert url is None, "the next links of the system's history never end"
    assert paged == [history_key(e) for e in entries]

    # A token that may search only Conditions sees only Conditions: not the reading.
    conditions_only = server.session(
        server.token("clinician", sub="e2e-history-conditions", scope="user/Condition.rs")
    )
    seen = get(conditions_only, f"{server.base}/_history", 200, "Bundle", params={"_since": since})
    assert [history_key(e) for e in seen.get("entry", [])] == [("Condition", condition["id"])], seen


# 12 Binary: a document's content ---------------------------------------------------------------

PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n\x00\xff\x10trailer\n%%EOF\n"


def binary_pdf(patient_id: str | None, content: bytes = PDF) -> dict:
    binary = {"resourceType": "Binary", "contentType": "application/pdf", "data": base64.b64encode(content).decode()}
    if patient_id is not None:
        binary["securityContext"] = {"reference": f"Patient/{patient_id}"}
    return binary


def test_a_documents_pdf_is_kept_as_a_binary_and_downloaded_byte_for_byte_by_whoever_reads_the_record(
    server: Server,
    writer_token: str,
    clinician_http: requests.Session,
    stranger_http: requests.Session,
    other_patient_id: str,
):
    from fhirclient.models.binary import Binary
    from fhirclient.models.documentreference import DocumentReference

    fhir = fhirclient_for(server, writer_token)
    binary = Binary(jsondict=binary_pdf(other_patient_id), strict=True).create(fhir)
    valid(binary, "Binary")
    assert base64.b64decode(binary["data"]) == PDF
    assert binary["securityContext"] == {"reference": f"Patient/{other_patient_id}"}
    document = DocumentReference(jsondict={
        "resourceType": "DocumentReference",
        "status": "current",
        "type": {
            "coding": [{"system": LOINC, "code": "18842-5", "display": "Discharge summary"}], "text": "Epikrise",
        },
        "subject": {"reference": f"Patient/{other_patient_id}"},
        "content": [{"attachment": {
            "contentType": "application/pdf", "url": f"Binary/{binary['id']}", "title": "epikrise.pdf",
        }}],
    }, strict=True).create(fhir)
    valid(document, "DocumentReference")

    # A reader of the record follows the DocumentReference to its content.
    stored = get(clinician_http, f"{server.base}/DocumentReference/{document['id']}", 200, "DocumentReference")
    attachment = stored["content"][0]["attachment"]
    assert attachment["url"] == f"Binary/{binary['id']}"
    url = f"{server.base}/{attachment['url']}"

    # Asked for the PDF: the very bytes, as a download that cannot act on this origin.
    download = clinician_http.get(url, headers={"Accept": "application/pdf"}, timeout=30)
    assert download.status_code == 200, download.text[:500]
    assert download.content == PDF
    assert download.headers["Content-Type"].split(";")[0].strip() == "application/pdf"
    assert download.headers.get("Content-Disposition", "").split(";")[0].strip() == "attachment", download.headers
    assert download.headers.get("X-Content-Type-Options") == "nosniff", download.headers
    assert "sandbox" in download.headers.get("Content-Security-Policy", ""), download.headers
    assert download.headers.get("Cache-Control") == "no-store"

    # Asked for FHIR JSON: the Binary resource.
    resource = get(clinician_http, url, 200, "Binary", headers={"Accept": FHIR_JSON})
    assert resource["id"] == binary["id"] and resource["contentType"] == "application/pdf"
    assert base64.b64decode(resource["data"]) == PDF
    assert Binary.read(binary["id"], fhirclient_for(server, writer_token)).contentType == "application/pdf"

    # The patient downloads their own; a citizen of another record finds nothing, either way.
    owner = server.session(server.token("citizen", patient=other_patient_id, sub="e2e-binary-owner"))
    own = owner.get(url, headers={"Accept": "application/pdf"}, timeout=30)
    assert own.status_code == 200 and own.content == PDF, own.text[:500]
    for accept in ("application/pdf", FHIR_JSON):
        outcome = get(stranger_http, url, 404, "OperationOutcome", headers={"Accept": accept})
        assert [i["code"] for i in outcome["issue"]] == ["not-found"], outcome


@pytest.mark.parametrize(
    "context", [None, {"reference": "Organization/gp-0001"}, {"display": "the patient"}],
    ids=["no-security-context", "organization", "no-reference"],
)
def test_a_binary_placed_in_no_patients_record_is_refused_naming_its_security_context(
    server: Server, writer_http: requests.Session, context: dict | None
):
    body = binary_pdf(None)
    if context is not None:
        body["securityContext"] = context
    marker = uuid.uuid4().hex
    body["meta"] = {"tag": [{"system": "urn:e2e:tag", "code": marker}]}
    refused = writer_http.post(f"{server.base}/Binary", json=body, headers=SEND_JSON, timeout=30)
    outcome = fhir_response(refused, 422, "OperationOutcome")
    assert errors(outcome) and "Binary.securityContext" in outcome_text(outcome), outcome
    assert total(writer_http, f"{server.base}/Binary", {"_tag": f"urn:e2e:tag|{marker}"}) == 0


def test_a_clinician_without_binary_create_in_their_scopes_cannot_store_a_document(
    server: Server, refused_clinician_http: requests.Session, other_patient_id: str
):
    refused = refused_clinician_http.post(f"{server.base}/Binary", json=binary_pdf(other_patient_id),
                                  headers=SEND_JSON, timeout=30)
    outcome = fhir_response(refused, 403, "OperationOutcome")
    assert "Binary" in outcome_text(outcome), outcome


# 13 :text on codes -----------------------------------------------------------------------------


def code_words(concept: dict) -> set[str]:
    """The words of a code's text and its codings' displays, lower case."""
    texts = [concept.get("text", "")] + [c.get("display", "") for c in concept.get("coding", [])]
    return {word for text in texts for word in re.split(r"\W+", text.lower()) if word}


def with_word_starting(resources_: list[dict], start: str) -> set[str]:
    return {r["id"] for r in resources_ if any(w.startswith(start) for w in code_words(r["code"]))}


def test_code_text_finds_readings_by_a_word_of_their_code_in_any_case_and_spelling_of_danish_letters(
    server: Server, clinician: SyncFHIRClient, clinician_http: requests.Session, bp_patient_id: str
):
    record = search_all(clinician_http, f"{server.base}/Observation", {"patient": bp_patient_id})
    observations = clinician.resources("Observation").search(patient=bp_patient_id).limit(200)

    def found(value: str) -> set[str]:
        return ids(observations.search(code__text=value).fetch_all())

    # Words of the displays (LOINC's English) and of the texts (Danish) of the generated readings.
    for word, spellings in (
        ("pressure", ["pressure", "Pressure", "PRESS"]),  # "Blood pressure panel with all children optional"
        ("heart", ["heart", "HEART", "Hea"]),  # "Heart rate"
        ("blodtryk", ["blodtryk", "Blodtryk", "BLODTRYK"]),  # "Blodtryk"
        ("vægt", ["vægt", "Vægt", "VÆGT", "vaegt", "VAEGT", "vägt"]),  # "Vægt"
    ):
        expected = with_word_starting(record, word)
        assert expected, f"the patient has no reading with a word {word!r} in its code"
        assert expected != {o["id"] for o in record}
        for spelling in spellings:
            assert found(spelling) == expected, f"code:text={spelling} should find the {word} readings"

    # A word's start only, and a word no code has: nothing.
    assert with_word_starting(record, "ressure") == set() and found("ressure") == set()
    assert with_word_starting(record, "zzyzx") == set() and found("zzyzx") == set()


def test_code_text_finds_a_diagnosis_by_a_danish_word_however_its_letters_are_written(
    server: Server, clinician: SyncFHIRClient, clinician_http: requests.Session, writer_http: requests.Session,
    bp_patient_id: str,
):
    condition = create(writer_http, server, diagnosis(bp_patient_id, "Forhøjet blodtryk", [
        {"system": SNOMED, "code": "38341003", "display": "Hypertensive disorder, systemic arterial"},
    ]))
    record = search_all(clinician_http, f"{server.base}/Condition", {"patient": bp_patient_id})
    conditions = clinician.resources("Condition").search(patient=bp_patient_id).limit(200)

    def found(value: str) -> set[str]:
        return ids(conditions.search(code__text=value).fetch_all())

    forhøjet = with_word_starting(record, "forhøj")
    assert condition["id"] in forhøjet
    for spelling in ("forhøjet", "Forhøjet", "FORHØJET", "forhojet", "forhoejet", "FORHOEJET", "forhöjet",
                     "forhø"):
        assert found(spelling) == forhøjet, f"code:text={spelling}"
    assert found("blodtryk") == with_word_starting(record, "blodtryk") == {condition["id"]}
    assert found("hypertensive") == with_word_starting(record, "hypertensive") >= {condition["id"]}
    assert found("orhøjet") == set() and found("zzyzx") == set()
    # README's own example, over every patient the clinician may search.
    everyone = clinician.resources("Condition").search(code__text="blodtryk").limit(200).fetch_all()
    assert condition["id"] in ids(everyone)


def test_code_text_finds_a_diagnosis_whose_code_is_only_text(
    server: Server, clinician: SyncFHIRClient, writer_http: requests.Session, bp_patient_id: str
):
    condition = create(writer_http, server, diagnosis(bp_patient_id, "Mistænkt søvnapnø"))
    conditions = clinician.resources("Condition").search(patient=bp_patient_id)
    assert ids(conditions.search(_id=condition["id"]).fetch_all()) == {condition["id"]}, "not stored"
    for spelling in ("søvnapnø", "sovnapno", "SOEVNAPNOE", "mistænkt"):
        assert ids(conditions.search(code__text=spelling).fetch_all()) == {condition["id"]}, f"code:text={spelling}"


# 14 Composites and numbers ---------------------------------------------------------------------

SYSTOLIC, DIASTOLIC, HEART_RATE = "8480-6", "8462-4", "8867-4"


def part_values(observation: dict, code: str) -> list[float]:
    """The values of an observation's components with LOINC `code`."""
    return [
        c["valueQuantity"]["value"] for c in observation.get("component", [])
        if has_code(c["code"], code) and "valueQuantity" in c
    ]


def test_component_code_value_quantity_holds_the_number_to_its_own_blood_pressure_part(
    server: Server, clinician: SyncFHIRClient, clinician_http: requests.Session, bp_patient_id: str
):
    record = search_all(clinician_http, f"{server.base}/Observation", {"patient": bp_patient_id})
    observations = clinician.resources("Observation").search(patient=bp_patient_id).limit(200)

    def found(**params) -> set[str]:
        return ids(observations.search(**params).fetch_all())

    def having(keep) -> set[str]:
        return {o["id"] for o in record if keep(o)}

    diastolic = sorted(v for o in record for v in part_values(o, DIASTOLIC))
    systolic = sorted(v for o in record for v in part_values(o, SYSTOLIC))
    assert len(diastolic) >= 3 and len(systolic) >= 3
    level = diastolic[len(diastolic) // 2]

    # At a diastolic level, component-value-quantity takes any part (the systolic ones pass);
    # component-code-value-quantity only the diastolic part.
    any_part = having(lambda o: any(v >= level for c in (SYSTOLIC, DIASTOLIC) for v in part_values(o, c)))
    diastolic_part = having(lambda o: any(v >= level for v in part_values(o, DIASTOLIC)))
    assert diastolic_part < any_part, "the test needs readings whose diastolic part is below the level"
    assert found(component_value_quantity=f"ge{level}") == any_part
    assert found(component_code_value_quantity=f"{LOINC}|{DIASTOLIC}$ge{level}") == diastolic_part

    # Several pairs are alternatives: a high systolic part or a high diastolic part.
    high_systolic, high_diastolic = systolic[len(systolic) * 3 // 4], diastolic[len(diastolic) * 3 // 4]
    alarming = having(lambda o: any(v >= high_systolic for v in part_values(o, SYSTOLIC))
                      or any(v >= high_diastolic for v in part_values(o, DIASTOLIC)))
    systolic_only = having(lambda o: any(v >= high_systolic for v in part_values(o, SYSTOLIC)))
    assert found(component_code_value_quantity=f"{LOINC}|{SYSTOLIC}$ge{high_systolic}") == systolic_only
    either = f"{LOINC}|{SYSTOLIC}$ge{high_systolic},{LOINC}|{DIASTOLIC}$ge{high_diastolic}"
    assert found(component_code_value_quantity=either) == alarming
    assert found(component_code_value_quantity=f"{LOINC}|{SYSTOLIC}$gt{systolic[-1]}") == set()


def test_code_value_quantity_compares_the_value_of_that_code_only(
    server: Server, clinician: SyncFHIRClient, clinician_http: requests.Session, bp_patient_id: str
):
    record = search_all(clinician_http, f"{server.base}/Observation", {"patient": bp_patient_id})
    observations = clinician.resources("Observation").search(patient=bp_patient_id).limit(200)
    valued = [o for o in record if "valueQuantity" in o]
    rates = sorted(o["valueQuantity"]["value"] for o in valued if has_code(o["code"], HEART_RATE))
    assert len(rates) >= 3, "the patient has too few heart rates"
    level = rates[len(rates) // 2]

    by_value = ids(observations.search(value_quantity=f"gt{level}").fetch_all())
    by_code_and_value = ids(observations.search(code_value_quantity=f"{LOINC}|{HEART_RATE}$gt{level}").fetch_all())
    fast = {o["id"] for o in valued if has_code(o["code"], HEART_RATE) and o["valueQuantity"]["value"] > level}
    assert by_code_and_value == fast and fast
    assert by_value == {o["id"] for o in valued if o["valueQuantity"]["value"] > level}
    assert by_code_and_value < by_value, "the test needs another kind of value above the level (a weight)"


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("component-code-value-quantity", f"{LOINC}|8480-6$ge140|{UCUM}|mm[Hg]"),
        ("component-code-value-quantity", f"{LOINC}|8480-6$ge140||mm[Hg]"),
        ("code-value-quantity", f"{LOINC}|29463-7$gt80|{UCUM}|kg"),
    ],
    ids=["component-with-unit", "component-with-code-only", "code-with-unit"],
)
def test_a_composite_with_a_unit_is_refused_with_a_400_that_says_to_leave_the_unit_out(
    server: Server, refused_clinician_http: requests.Session, bp_patient_id: str, param: str, value: str
):
    outcome = get(refused_clinician_http, f"{server.base}/Observation", 400, "OperationOutcome",
                  params={"patient": bp_patient_id, param: value})
    assert errors(outcome) and "leave out the unit" in outcome_text(outcome), outcome
    assert param in outcome_text(outcome), outcome


def test_probability_compares_risk_assessments_as_numbers(
    server: Server, writer_token: str, clinician: SyncFHIRClient, bp_patient_id: str
):
    from fhirclient.models.riskassessment import RiskAssessment

    fhir = fhirclient_for(server, writer_token)
    marker = new_identifier()
    made: dict[Decimal, str] = {}
    for probability in ("0.05", "0.12", "0.2", "0.24", "0.35"):
        body = RiskAssessment(jsondict={
            "resourceType": "RiskAssessment",
            "identifier": [marker],
            "status": "final",
            "subject": {"reference": f"Patient/{bp_patient_id}"},
            "occurrenceDateTime": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
            "prediction": [{
                "outcome": {"text": "Hjerteanfald inden for 10 år"},
                "probabilityDecimal": float(probability),
            }],
        }, strict=True).create(fhir)
        valid(body, "RiskAssessment")
        assert body["prediction"][0]["probabilityDecimal"] == float(probability)
        made[Decimal(probability)] = body["id"]

    assessments = clinician.resources("RiskAssessment").search(patient=bp_patient_id, identifier=criteria(marker))

    def found(query: str) -> set[str]:
        return ids(assessments.search(probability=query).fetch_all())

    def made_where(keep) -> set[str]:
        return {i for p, i in made.items() if keep(p)}

    assert found("ge0.2") == made_where(lambda p: p >= Decimal("0.2"))
    assert found("lt0.2") == made_where(lambda p: p < Decimal("0.2"))
    assert found("gt0.2") == made_where(lambda p: p > Decimal("0.2"))
    assert found("le0.12") == made_where(lambda p: p <= Decimal("0.12"))
    # eq within the value's precision: 0.2 means 0.15 up to 0.25.
    assert found("0.2") == found("eq0.2") == made_where(lambda p: Decimal("0.15") <= p < Decimal("0.25"))
    assert found("ge0.5") == set()
    assert len(ids(assessments.fetch_all())) == len(made)


# 15 Profiles -----------------------------------------------------------------------------------

VITAL_SIGNS_PROFILES = "http://hl7.org/fhir/StructureDefinition/"
BP_PROFILE = VITAL_SIGNS_PROFILES + "bp"


def blood_pressure(patient_id: str, systolic: float, diastolic: float, unit: str, identifier: dict) -> dict:
    """A blood pressure panel claiming R4's `bp` profile, its parts in `unit` (UCUM), measured
    long ago (so no app shows it as the latest)."""
    def part(code: str, display: str, value: float) -> dict:
        return {
            "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
            "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
        }

    return {
        "resourceType": "Observation",
        "meta": {"profile": [BP_PROFILE]},
        "identifier": [identifier],
        "status": "final",
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs",
        }]}],
        "code": {"coding": [{"system": LOINC, "code": "85354-9", "display": "Blood pressure panel"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": "2001-03-04T10:00:00Z",
        "component": [part(SYSTOLIC, "Systolic blood pressure", systolic),
                      part(DIASTOLIC, "Diastolic blood pressure", diastolic)],
    }


def test_metadata_lists_the_vital_signs_profiles_observations_are_held_to(server: Server, clinician_token: str):
    from fhirclient.models.capabilitystatement import CapabilityStatement

    capability = CapabilityStatement.read_from("metadata", fhirclient_for(server, clinician_token))
    valid(capability.as_json(), "CapabilityStatement")
    observation = next(r for r in capability.rest[0].resource if r.type == "Observation")
    assert set(observation.supportedProfile) >= {
        VITAL_SIGNS_PROFILES + name for name in (
            "vitalsigns", "bp", "heartrate", "resprate", "bodytemp", "bodyheight", "bodyweight", "bmi",
            "oxygensat", "headcircum",
        )
    }, observation.supportedProfile


def test_a_reading_claiming_the_bp_profile_is_held_to_it_and_validate_checks_a_profile_on_request(
    server: Server, writer_http: requests.Session, bp_patient_id: str
):
    def validate(body, params: dict | None = None) -> dict:
        response = writer_http.post(f"{server.base}/Observation/$validate", params=params, json=body,
                                    headers=SEND_JSON, timeout=30)
        return fhir_response(response, 200, "OperationOutcome")

    identifier = new_identifier()
    in_kpa = blood_pressure(bp_patient_id, 18.7, 12.0, "kPa", identifier)

    # Written claiming `bp` with its parts in kPa: refused, naming the part.
    refused = writer_http.post(f"{server.base}/Observation", json=in_kpa, headers=SEND_JSON, timeout=30)
    outcome = fhir_response(refused, 422, "OperationOutcome")
    assert errors(outcome) and "8480-6" in outcome_text(outcome) and "mm[Hg]" in outcome_text(outcome), outcome
    assert total(writer_http, f"{server.base}/Observation", {"identifier": criteria(identifier)}) == 0

    # The same reading claiming no profile is acceptable as R4; checked against `bp` on request it is not.
    unclaimed = {k: v for k, v in in_kpa.items() if k != "meta"}
    assert not errors(validate(unclaimed)), "an R4-valid reading without a profile claim"
    for checked in (
        validate(unclaimed, {"profile": BP_PROFILE}),
        validate({"resourceType": "Parameters", "parameter": [
            {"name": "resource", "resource": unclaimed}, {"name": "profile", "valueUri": BP_PROFILE},
        ]}),
    ):
        assert errors(checked) and "8480-6" in outcome_text(checked), checked

    # In mm[Hg] it conforms: $validate says so and the write is accepted, the claim kept.
    conforming = blood_pressure(bp_patient_id, 128, 82, "mm[Hg]", identifier)
    assert not errors(validate(conforming, {"profile": BP_PROFILE}))
    created = writer_http.post(f"{server.base}/Observation", json=conforming, headers=SEND_JSON, timeout=30)
    try:
        stored = fhir_response(created, 201, "Observation")
        assert stored["meta"]["profile"] == [BP_PROFILE]
        assert [c["valueQuantity"]["value"] for c in stored["component"]] == [128, 82]
    finally:  # other modules count blood pressure panels: this one is not kept
        if created.status_code == 201:
            deleted = writer_http.delete(f"{server.base}/Observation/{created.json()['id']}", timeout=30)
            assert deleted.status_code in (200, 204), deleted.text


# 16 Installed apps as Devices ------------------------------------------------------------------

APP_SYSTEM = "urn:healthcloud:app"


def installed_apps(server: Server) -> dict[tuple[str, str], str]:
    """The apps `up` printed as installed: (publisher, app) -> version."""
    pattern = re.escape(server.root) + r"/apps/[^/\s]+/([^/\s]+)/([^/\s]+)/\s+\(([^)\s]+)\)"
    return {(publisher, app): version for publisher, app, version in re.findall(pattern, server.printed())}


def test_each_installed_app_is_a_device_a_clinician_can_read(
    server: Server, clinician: SyncFHIRClient, clinician_http: requests.Session
):
    apps = installed_apps(server)
    assert ("examples", "bp-monitor") in apps, f"up installed no bp-monitor: {apps}"
    listed = requests.get(f"{server.root}/store/v1/apps", timeout=30)
    assert listed.status_code == 200, listed.text
    store = {(a["publisher"], a["id"]): a for a in listed.json()["apps"]}

    device = clinician.reference("Device", "examples.bp-monitor").to_resource()
    valid(device, "Device")
    bp_monitor = store["examples", "bp-monitor"]
    assert device["identifier"] == [{"system": APP_SYSTEM, "value": "examples/bp-monitor"}]
    assert device["manufacturer"] == "examples"
    assert device["deviceName"] == [{"name": bp_monitor["name"], "type": "user-friendly-name"}]
    assert device["version"] == [{"value": apps["examples", "bp-monitor"]}]
    assert device["note"] == [{"text": bp_monitor["description"]}]

    by_identifier = clinician.resources("Device").search(identifier=f"{APP_SYSTEM}|examples/bp-monitor").fetch_all()
    assert [valid(d).id for d in by_identifier] == ["examples.bp-monitor"]
    # Every app installed, and nothing else, is a Device of that identifier system.
    every_app = search_all(clinician_http, f"{server.base}/Device", {"identifier": f"{APP_SYSTEM}|"})
    assert {d["id"] for d in every_app} == {f"{p}.{a}" for p, a in apps}
    for app in every_app:
        publisher, name = app["identifier"][0]["value"].split("/")
        assert app["manufacturer"] == publisher and app["version"] == [{"value": apps[publisher, name]}]
        assert app["deviceName"][0]["name"] == store[publisher, name]["name"]


def test_an_apps_device_is_no_patients_data_and_no_client_can_forge_it(
    server: Server, stranger_token: str, stranger_http: requests.Session, clinician_http: requests.Session
):
    url = f"{server.base}/Device/examples.bp-monitor"
    before = get(clinician_http, url, 200, "Device")
    # A token confined to a patient's record does not reach it.
    outcome = get(stranger_http, url, 404, "OperationOutcome")
    assert [i["code"] for i in outcome["issue"]] == ["not-found"], outcome
    devices = server.client(stranger_token).resources("Device")
    assert devices.search(identifier=f"{APP_SYSTEM}|examples/bp-monitor").fetch_all() == []

    # Only the platform records apps: a writer of Devices cannot replace or invent one.
    writer = server.session(server.token("clinician", sub="e2e-device-writer", scope="user/*.rs user/Device.cu"))
    forged = {**{k: v for k, v in before.items() if k != "meta"},
              "deviceName": [{"name": "Not the blood pressure monitor", "type": "user-friendly-name"}]}
    invented = {**{k: v for k, v in forged.items() if k != "id"},
                "identifier": [{"system": APP_SYSTEM, "value": "examples/forged"}]}
    for method, target, body in (("PUT", url, forged), ("POST", f"{server.base}/Device", invented)):
        answer = writer.request(method, target, json=body, headers=SEND_JSON, timeout=30)
        assert 400 <= answer.status_code < 500, f"{method} {target}: {answer.status_code} {answer.text}"
        fhir_response(answer, answer.status_code, "OperationOutcome")
    assert get(clinician_http, url, 200, "Device") == before
    assert search_all(clinician_http, f"{server.base}/Device", {"identifier": f"{APP_SYSTEM}|examples/forged"}) == []

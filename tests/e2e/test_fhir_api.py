"""End-to-end tests of the FHIR R4 API of a real `healthcloud up`, driven over loopback HTTP by
a real FHIR client (fhirpy) and checked against the FHIR R4B models of `fhir.resources`.

The server, tokens and the patient ids used here come from conftest.py.
"""

from __future__ import annotations

import base64
import json
import math
from datetime import datetime, timezone

import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import AuthorizationError, ForbiddenError, ResourceNotFound
from pydantic import ValidationError

from conftest import BP_CODE, CLINICIAN_SUB, CPR_SYSTEM, PATIENT_COUNT, Server

LOINC = "http://loinc.org"
FHIR_JSON = "application/fhir+json"


def plain(resource) -> dict:
    """A fhirpy resource (or a dict) as plain FHIR JSON."""
    return resource.serialize() if hasattr(resource, "serialize") else dict(resource)


def validate(resource, resource_type: str):
    """Parses `resource` with the fhir.resources R4B model of `resource_type`, failing the test
    with the resource's id and pydantic's account of every invalid element."""
    data = plain(resource)
    assert data.get("resourceType") == resource_type, f"expected a {resource_type}, got {data}"
    try:
        return get_fhir_model_class(resource_type).model_validate(data)
    except ValidationError as error:
        pytest.fail(f"{resource_type}/{data.get('id')} is not a valid R4B {resource_type}:\n{error}")


def link(bundle, relation: str) -> str | None:
    return next((l["url"] for l in bundle.get("link", []) if l["relation"] == relation), None)


def codes(concept) -> set[tuple[str, str]]:
    return {(c.get("system"), c.get("code")) for c in (concept or {}).get("coding", [])}


def effective(observation) -> datetime:
    value = observation["effectiveDateTime"]
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert parsed.tzinfo is not None, f"effectiveDateTime {value} has a time but no time zone"
    return parsed


def assert_fhir_json(response) -> None:
    content_type = response.headers.get("Content-Type", "")
    media = content_type.split(";")[0].strip()
    assert media == FHIR_JSON, f"{response.request.method} {response.url}: Content-Type is {content_type!r}"
    assert "charset=utf-8" in content_type.replace(" ", "").lower(), (
        f"{response.request.method} {response.url}: Content-Type {content_type!r} names no UTF-8 charset"
    )


# 1 ---------------------------------------------------------------------------------------------


def test_metadata_is_a_valid_r4_capability_statement_with_smart_security(server: Server):
    http = server.session(None)  # the CapabilityStatement is public
    response = http.get(f"{server.base}/metadata", timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    statement = validate(body, "CapabilityStatement")

    assert statement.fhirVersion == "4.0.1"
    assert statement.kind == "instance"
    assert statement.status == "active"
    assert FHIR_JSON in statement.format or "json" in statement.format
    assert len(statement.rest) == 1 and statement.rest[0].mode == "server"

    security = statement.rest[0].security
    assert security is not None, "rest.security is missing"
    service_codes = {(c.system, c.code) for s in security.service or [] for c in s.coding or []}
    assert (
        "http://terminology.hl7.org/CodeSystem/restful-security-service",
        "SMART-on-FHIR",
    ) in service_codes, f"no SMART-on-FHIR security service: {service_codes}"

    resources = {r.type: r for r in statement.rest[0].resource}
    for resource_type in ("Patient", "Observation", "AuditEvent", "Consent"):
        assert resource_type in resources, f"{resource_type} is not in the CapabilityStatement"
        interactions = {i.code for i in resources[resource_type].interaction}
        assert {"read", "search-type"} <= interactions, f"{resource_type}: {interactions}"
    assert "create" in {i.code for i in resources["Observation"].interaction}
    patient_params = {p.name for p in resources["Patient"].searchParam}
    assert {"_id", "identifier", "name", "birthdate"} <= patient_params, patient_params
    observation_params = {p.name for p in resources["Observation"].searchParam}
    assert {"patient", "code", "date"} <= observation_params, observation_params


def test_metadata_is_served_as_fhir_json(server: Server):
    """FHIR R4 http.html: the formal MIME type application/fhir+json SHALL be used by servers,
    with an explicit UTF-8 charset; every other endpoint already does so."""
    response = server.session(None).get(f"{server.base}/metadata", timeout=30)
    assert response.status_code == 200, response.text
    assert_fhir_json(response)


# 2 ---------------------------------------------------------------------------------------------


def test_clinician_pages_through_every_patient_with_fhirpy(clinician: SyncFHIRClient, server: Server):
    page_size = 7
    search = clinician.resources("Patient").limit(page_size)

    # Page by page, following the server's own `next` links with fhirpy.
    first = search.fetch_raw()
    assert first["resourceType"] == "Bundle" and first["type"] == "searchset"
    total = first["total"]
    assert total == PATIENT_COUNT, f"Bundle.total is {total}, expected the {PATIENT_COUNT} generated patients"
    assert link(first, "previous") is None, "the first page has a previous link"

    pages, bundle = [], first
    while True:
        validate(bundle, "Bundle")
        assert bundle["total"] == total, "Bundle.total changed between pages"
        entries = bundle.get("entry", [])
        pages.append([e["resource"]["id"] for e in entries])
        for entry in entries:
            assert entry["fullUrl"] == f"{server.base}/Patient/{entry['resource']['id']}"
        self_link = link(bundle, "self")
        assert self_link and self_link.startswith(f"{server.base}/Patient?"), self_link
        next_url = link(bundle, "next")
        if next_url is None:
            break
        assert next_url.startswith(f"{server.base}/Patient?"), f"next link not on the base: {next_url}"
        assert len(pages) < 100, "the next links never end"
        bundle = clinician.execute(next_url, method="get")
        assert link(bundle, "previous"), "a page after the first has no previous link"

    assert len(pages) == math.ceil(total / page_size), [len(p) for p in pages]
    assert all(len(p) == page_size for p in pages[:-1]), f"page sizes {[len(p) for p in pages]} ignore _count"
    assert 0 < len(pages[-1]) <= page_size
    paged_ids = [i for page in pages for i in page]
    assert len(paged_ids) == total
    assert len(set(paged_ids)) == total, "a patient appears on two pages"

    # fhirpy's own iteration over every page gives the same patients.
    patients = search.fetch_all()
    assert len(patients) == total, f"fetch_all() collected {len(patients)} patients, Bundle.total is {total}"
    ids = [p.id for p in patients]
    assert len(set(ids)) == total, "fetch_all() collected duplicates"
    assert set(ids) == set(paged_ids)
    for patient in patients:
        validate(patient, "Patient")
        assert patient["meta"]["versionId"] and patient["meta"]["lastUpdated"]


# 3 ---------------------------------------------------------------------------------------------


def test_clinician_searches_a_patients_blood_pressure_newest_first(
    clinician: SyncFHIRClient, bp_patient_id: str, bp_counts
):
    readings = (
        clinician.resources("Observation")
        .search(patient=bp_patient_id, code=BP_CODE)
        .sort("-date")
        .limit(10)
        .fetch_all()
    )
    assert len(readings) == bp_counts[bp_patient_id] >= 3

    for reading in readings:
        validate(reading, "Observation")
        assert reading["subject"]["reference"] == f"Patient/{bp_patient_id}"
        assert (LOINC, "85354-9") in codes(reading["code"])
        components = {code for c in reading["component"] for code in codes(c["code"])}
        assert {(LOINC, "8480-6"), (LOINC, "8462-4")} <= components, components
        for component in reading["component"]:
            assert isinstance(component["valueQuantity"]["value"], (int, float))

    dates = [effective(r) for r in readings]
    assert all(a >= b for a, b in zip(dates, dates[1:])), f"_sort=-date is not newest first: {dates}"
    assert dates[0] > dates[-1], "all readings share one date: the sort is not tested"

    ascending = (
        clinician.resources("Observation")
        .search(patient=bp_patient_id, code=BP_CODE)
        .sort("date")
        .limit(10)
        .fetch_all()
    )
    up = [effective(r) for r in ascending]
    assert all(a <= b for a, b in zip(up, up[1:])), f"_sort=date is not oldest first: {up}"
    assert sorted(r.id for r in ascending) == sorted(r.id for r in readings)

    chosen = readings[len(readings) // 2]
    read = clinician.reference("Observation", chosen.id).to_resource()
    validate(read, "Observation")
    assert plain(read) == plain(chosen), "the read differs from the search result"


# 4 ---------------------------------------------------------------------------------------------


def test_patient_search_by_cpr_identifier_finds_exactly_that_patient(
    clinician: SyncFHIRClient, all_patients: list[dict]
):
    assert len(all_patients) == PATIENT_COUNT
    cprs = {}
    for patient in all_patients:
        values = [i["value"] for i in patient.get("identifier", []) if i.get("system") == CPR_SYSTEM]
        assert len(values) == 1, f"Patient/{patient['id']} has CPR identifiers {values}"
        cprs[patient["id"]] = values[0]
    assert len(set(cprs.values())) == len(cprs), "two patients share a CPR number"

    for patient_id, cpr in cprs.items():
        bundle = clinician.resources("Patient").search(identifier=f"{CPR_SYSTEM}|{cpr}").fetch_raw()
        found = [e["resource"] for e in bundle.get("entry", [])]
        assert bundle["total"] == 1 and [p.id for p in found] == [patient_id], (
            f"identifier={CPR_SYSTEM}|{cpr} found {[p.id for p in found]} (total {bundle['total']}), "
            f"expected only Patient/{patient_id}"
        )
        validate(found[0], "Patient")

    # The system is part of the match, and unknown numbers match no one.
    some_cpr = next(iter(cprs.values()))
    wrong_system = clinician.resources("Patient").search(identifier=f"urn:oid:1.2.208.176.1.1|{some_cpr}")
    assert wrong_system.fetch_raw()["total"] == 0
    unknown = clinician.resources("Patient").search(identifier=f"{CPR_SYSTEM}|0000000000")
    assert unknown.fetch_raw()["total"] == 0


# 5 ---------------------------------------------------------------------------------------------


def home_bp(patient_id: str, systolic: int, diastolic: int) -> dict:
    now = datetime.now(timezone.utc).replace(microsecond=0)
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs",
        }]}],
        "code": {"coding": [{"system": LOINC, "code": "85354-9", "display": "Blood pressure panel"}],
                 "text": "Home blood pressure"},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": now.isoformat().replace("+00:00", "Z"),
        "component": [
            {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
             "valueQuantity": {"value": systolic, "unit": "mmHg",
                               "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
            {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
             "valueQuantity": {"value": diastolic, "unit": "mmHg",
                               "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
        ],
    }


def test_citizen_records_a_home_blood_pressure_the_clinician_then_finds(
    citizen: SyncFHIRClient, clinician: SyncFHIRClient, citizen_patient_id: str
):
    clinician_search = clinician.resources("Observation").search(patient=citizen_patient_id, code=BP_CODE)
    before = clinician_search.fetch_raw()["total"]

    submitted = home_bp(citizen_patient_id, 131, 84)
    validate(submitted, "Observation")
    observation = citizen.resource("Observation", **submitted)
    observation.save()

    assert observation.id, "the created Observation has no id"
    assert observation["meta"]["versionId"] == "1"
    assert observation["meta"]["lastUpdated"]
    validate(observation, "Observation")
    created = plain(observation)
    for key, value in submitted.items():
        assert created[key] == value, f"the server changed {key}: {value} -> {created[key]}"

    read = citizen.reference("Observation", observation.id).to_resource()
    validate(read, "Observation")
    assert plain(read) == created

    after = clinician_search.fetch_raw()["total"]
    assert after == before + 1, f"the clinician's search total went from {before} to {after}"
    found = {o.id: o for o in clinician_search.limit(200).fetch_all()}
    assert observation.id in found, "the clinician's search does not find the citizen's reading"
    validate(found[observation.id], "Observation")
    assert plain(found[observation.id]) == created


def test_fhirpy_counts_and_asks_for_a_subset_of_elements(
    clinician: SyncFHIRClient, bp_patient_id: str
):
    search = clinician.resources("Observation").search(patient=bp_patient_id, code=BP_CODE)
    total = search.fetch_raw()["total"]
    assert total > 5
    # fhirpy's count() sends `_count=0&_totalMethod=count`; `_summary=count` is FHIR's own.
    assert search.count() == total
    counted = search.clone(_summary="count").fetch_raw()
    assert counted["total"] == total and "entry" not in counted, counted
    # `elements()` sends `_elements=id,resourceType,effective`: what was asked, the mandatory
    # elements (status, code) and meta, tagged as a subset so nobody writes it back.
    subset = search.elements("effective").limit(5).fetch()
    assert len(subset) == 5
    for observation in subset:
        validate(observation, "Observation")
        data = plain(observation)
        assert set(data) == {"resourceType", "id", "meta", "status", "code", "effectiveDateTime"}, data
        assert {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                "code": "SUBSETTED"} in data["meta"]["tag"]


def test_fhirpy_get_or_create_makes_one_reading_however_often_it_is_sent(
    citizen: SyncFHIRClient, citizen_patient_id: str
):
    identifier = f"urn:oid:1.2.208.184.100.1|reading-{datetime.now(timezone.utc).timestamp()}"
    system, value = identifier.split("|")
    reading = {**home_bp(citizen_patient_id, 127, 81), "identifier": [{"system": system, "value": value}]}
    search = citizen.resources("Observation").search(identifier=identifier)
    first, created = search.get_or_create(citizen.resource("Observation", **reading))
    assert created, "the first get_or_create creates"
    validate(first, "Observation")
    for systolic in (128, 129):
        again, created = search.get_or_create(
            citizen.resource("Observation", **{**reading, **home_bp(citizen_patient_id, systolic, 81)})
        )
        assert not created, "a reading with that identifier exists: it is returned"
        assert again.id == first.id
        assert plain(again) == plain(first)
    assert search.count() == 1


def entries(bundle, mode: str) -> list[dict]:
    return [e["resource"] for e in plain(bundle).get("entry", []) if e["search"]["mode"] == mode]


def test_fhirpy_includes_revincludes_chains_and_has(
    clinician: SyncFHIRClient, citizen: SyncFHIRClient, all_patients: list[dict], bp_patient_id: str
):
    readings = clinician.resources("Observation").search(patient=bp_patient_id, code=BP_CODE).limit(5)
    # include(): the matches and, once, the patient they refer to.
    bundle = readings.include("Observation", "patient").fetch_raw()
    assert len(entries(bundle, "match")) == 5
    [patient] = entries(bundle, "include")
    assert patient["id"] == bp_patient_id
    for entry in plain(bundle)["entry"]:
        validate(entry["resource"], entry["resource"]["resourceType"])
    # fhirpy's fetch() keeps the matches apart from what was included.
    assert {o.resourceType for o in readings.include("Observation", "patient").fetch()} == {"Observation"}

    # revinclude(): the patient and their readings.
    patient_search = clinician.resources("Patient").search(_id=bp_patient_id)
    bundle = patient_search.revinclude("Observation", "patient").fetch_raw()
    included = entries(bundle, "include")
    assert included and {r["resourceType"] for r in included} == {"Observation"}
    assert {r["subject"]["reference"] for r in included} == {f"Patient/{bp_patient_id}"}

    # has(): patients with a blood pressure reading; a code nobody has finds no one.
    assert [p.id for p in patient_search.has("Observation", "patient", code=BP_CODE).fetch()] == [bp_patient_id]
    assert patient_search.has("Observation", "patient", code="http://loinc.org|0000-0").fetch() == []

    # A chain: readings of the patient with this CPR number, found through the reference.
    cpr = next(
        i["value"]
        for p in all_patients if p["id"] == bp_patient_id
        for i in p["identifier"] if i["system"] == CPR_SYSTEM
    )
    chained = clinician.resources("Observation").search(
        patient__Patient__identifier=f"{CPR_SYSTEM}|{cpr}", code=BP_CODE
    )
    assert chained.count() == readings.count()

    # A citizen's chain reaches only their own record: the BP patient's readings stay out.
    assert citizen.resources("Observation").search(
        patient__Patient__identifier=f"{CPR_SYSTEM}|{cpr}"
    ).fetch() == []


def test_fhirclient_includes_with_its_strict_r4_models(server: Server, clinician_token: str, bp_patient_id: str):
    from fhirclient import server as fhirclient_server
    from fhirclient.models.observation import Observation
    from fhirclient.models.patient import Patient

    fhir = fhirclient_server.FHIRServer(None, base_uri=server.base + "/")
    fhir.session.headers["Authorization"] = f"Bearer {clinician_token}"
    search = Observation.where({"patient": bp_patient_id, "code": BP_CODE, "_count": "3"}).include("subject")
    bundle = next(search.perform_iter(fhir))
    # Strict models: every entry parsed as its R4 type.
    modes = [(type(e.resource), e.search.mode) for e in bundle.entry]
    assert modes.count((Observation, "match")) == 3
    assert modes.count((Patient, "include")) == 1, modes
    [patient] = [e.resource for e in bundle.entry if isinstance(e.resource, Patient)]
    assert patient.id == bp_patient_id
    # Following the pages, the patient comes with each page's readings, once per page.
    resources = list(search.perform_resources_iter(fhir))
    assert {type(r) for r in resources} == {Observation, Patient}


def test_fhirpy_saves_and_patches_an_existing_reading(server: Server, bp_patient_id: str):
    # Changing a reading is a policy decision: this clinician's token may, the default may not.
    editor = server.client(server.token("clinician", sub="e2e-editor", scope="user/*.rs user/Observation.cu"))
    pulse = {key: value for key, value in home_bp(bp_patient_id, 0, 0).items() if key != "component"}
    pulse["code"] = {"coding": [{"system": LOINC, "code": "8867-4", "display": "Heart rate"}]}
    pulse["valueQuantity"] = {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}
    reading = editor.resource("Observation", **pulse)
    reading.save()
    assert reading.meta.versionId == "1"
    # save() of an existing resource is a PUT of the whole resource.
    reading["note"] = [{"text": "measured after exercise"}]
    reading.save()
    assert reading.meta.versionId == "2"
    # patch() sends the changed elements.
    patched = reading.patch(status="amended")
    assert patched["status"] == "amended" and patched["note"] == [{"text": "measured after exercise"}]
    assert patched.meta.versionId == "3"
    validate(patched, "Observation")
    # Each version is kept.
    http = server.session(server.token("clinician", sub="e2e-editor", scope="user/*.rs"))
    history = http.get(f"{server.base}/Observation/{reading.id}/_history", timeout=30).json()
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["3", "2", "1"]
    # The default clinician may record readings, not change them.
    clinician = server.client(server.token("clinician", sub="e2e-clinician"))
    with pytest.raises(ForbiddenError):
        clinician.resource("Observation", id=reading.id).patch(status="final")


def test_a_transaction_bundle_writes_all_or_nothing(server: Server, bp_patient_id: str):
    editor = server.client(
        server.token("clinician", sub="e2e-editor", scope="user/*.rs user/Observation.c user/Encounter.c")
    )
    visit = {"resourceType": "Encounter", "status": "finished",
             "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
             "subject": {"reference": f"Patient/{bp_patient_id}"}}
    pulse = {key: value for key, value in home_bp(bp_patient_id, 0, 0).items() if key != "component"}
    pulse["code"] = {"coding": [{"system": LOINC, "code": "8867-4", "display": "Heart rate"}]}
    pulse["valueQuantity"] = {"value": 64, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}
    pulse["encounter"] = {"reference": "urn:uuid:0c6b1c52-4f7e-4f5b-9d7a-2f0c3b1a9e11"}
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:0c6b1c52-4f7e-4f5b-9d7a-2f0c3b1a9e11", "resource": visit,
         "request": {"method": "POST", "url": "Encounter"}},
        {"resource": pulse, "request": {"method": "POST", "url": "Observation"}},
    ]}
    answer = editor.execute("", method="post", data=bundle)
    validate(answer, "Bundle")
    assert answer["type"] == "transaction-response"
    encounter, observation = (entry["resource"] for entry in answer["entry"])
    assert observation["encounter"]["reference"] == f"Encounter/{encounter['id']}"
    # One entry the token may not write (a Condition): nothing is written.
    condition = {"resourceType": "Condition", "subject": {"reference": f"Patient/{bp_patient_id}"},
                 "code": {"text": "hypertension"}}
    failing = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {**pulse, "encounter": {"reference": f"Encounter/{encounter['id']}"},
                      "valueQuantity": {**pulse["valueQuantity"], "value": 99}},
         "request": {"method": "POST", "url": "Observation"}},
        {"resource": condition, "request": {"method": "POST", "url": "Condition"}},
    ]}
    with pytest.raises(ForbiddenError):
        editor.execute("", method="post", data=failing)
    readings = editor.resources("Observation").search(encounter=f"Encounter/{encounter['id']}").fetch()
    assert [r.id for r in readings] == [observation["id"]]


def test_every_served_resource_is_valid_in_both_r4_model_sets(server: Server, clinician_token: str):
    """Every type the CapabilityStatement lists, as `up` serves it: each resource of a page
    parses with fhir.resources' models and with fhirclient's strict R4 models."""
    import importlib

    http = server.session(clinician_token)
    officer = server.session(server.token("security-officer", sub="e2e-officer"))
    statement = http.get(f"{server.base}/metadata", timeout=30).json()
    checked = {}
    for resource in statement["rest"][0]["resource"]:
        resource_type = resource["type"]
        bundle = http.get(f"{server.base}/{resource_type}", params={"_count": 50}, timeout=60)
        if resource_type in ("Consent", "AuditEvent"):
            # A patient's consents and log are theirs and the security officers', not a
            # clinician's.
            assert bundle.status_code == 403, bundle.text
            bundle = officer.get(f"{server.base}/{resource_type}", params={"_count": 50}, timeout=60)
        assert bundle.status_code == 200, f"{resource_type}: {bundle.text}"
        model = getattr(importlib.import_module(f"fhirclient.models.{resource_type.lower()}"), resource_type)
        entries = [e["resource"] for e in bundle.json().get("entry", []) if e["search"]["mode"] == "match"]
        for data in entries:
            validate(data, resource_type)
            try:
                model(jsondict=data, strict=True)
            except Exception as error:  # fhirclient raises FHIRValidationError with every problem
                pytest.fail(f"{resource_type}/{data.get('id')} fails fhirclient's R4 model: {error}")
        checked[resource_type] = len(entries)
    # The generated world holds data of the clinical types, not only the audit trail.
    for resource_type in ("Patient", "Observation", "Condition", "Encounter", "Organization", "AuditEvent"):
        assert checked.get(resource_type), f"no {resource_type} served: {checked}"


def test_create_answers_201_with_location_and_etag(
    server: Server, citizen_token: str, citizen_patient_id: str
):
    http = server.session(citizen_token)
    response = http.post(
        f"{server.base}/Observation",
        json=home_bp(citizen_patient_id, 118, 76),
        headers={"Content-Type": FHIR_JSON},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    assert_fhir_json(response)
    body = response.json()
    validate(body, "Observation")
    assert response.headers.get("Location") == f"{server.base}/Observation/{body['id']}/_history/1"
    assert response.headers.get("ETag") == 'W/"1"'
    assert body["meta"]["versionId"] == "1"


# 6 ---------------------------------------------------------------------------------------------


def test_citizen_is_confined_to_their_own_record_and_sees_who_looked(
    server: Server,
    clinician: SyncFHIRClient,
    citizen: SyncFHIRClient,
    citizen_patient_id: str,
    other_patient_id: str,
    all_patients: list[dict],
):
    # The clinician looks at the citizen's record: this must show up in the citizen's log.
    started = datetime.now(timezone.utc).replace(microsecond=0)
    seen = clinician.reference("Patient", citizen_patient_id).to_resource()
    assert seen.id == citizen_patient_id

    # Their own record: yes.
    own = citizen.reference("Patient", citizen_patient_id).to_resource()
    validate(own, "Patient")

    # Another patient: not by read ...
    with pytest.raises((ResourceNotFound, ForbiddenError)):
        citizen.reference("Patient", other_patient_id).to_resource()
    # ... nor by any search.
    patients = citizen.resources("Patient").limit(200).fetch_all()
    assert [p.id for p in patients] == [citizen_patient_id], [p.id for p in patients]
    other = next(p for p in all_patients if p["id"] == other_patient_id)
    other_cpr = next(i["value"] for i in other["identifier"] if i["system"] == CPR_SYSTEM)
    assert citizen.resources("Patient").search(identifier=f"{CPR_SYSTEM}|{other_cpr}").fetch_all() == []
    assert citizen.resources("Patient").search(_id=other_patient_id).fetch_all() == []
    assert citizen.resources("Observation").search(patient=other_patient_id).fetch_all() == []
    # ... nor write into their record.
    with pytest.raises((ForbiddenError, ResourceNotFound)):
        citizen.resource("Observation", **home_bp(other_patient_id, 150, 95)).save()

    # The citizen's audit log: valid AuditEvents, all about them, with the clinician's read.
    events = citizen.resources("AuditEvent").search(patient=citizen_patient_id).limit(200).fetch_all()
    assert events, "the citizen's audit log is empty"
    for event in events:
        validate(event, "AuditEvent")
        patients_named = {
            e["what"]["reference"]
            for e in event["entity"]
            if e.get("what", {}).get("reference", "").startswith("Patient/")
        }
        assert f"Patient/{citizen_patient_id}" in patients_named, f"AuditEvent/{event.id} is not about them"

    def is_clinician_read(event) -> bool:
        agents = [a for a in event["agent"] if a.get("requestor")]
        return (
            any(a["who"].get("identifier", {}).get("value") == CLINICIAN_SUB for a in agents)
            and any(s.get("code") == "read" for s in event.get("subtype", []))
            and event["action"] == "R"
            and event["outcome"] == "0"
            and any(
                e.get("what", {}).get("reference") == f"Patient/{citizen_patient_id}"
                and e.get("type", {}).get("code") == "2"
                for e in event["entity"]
            )
            and datetime.fromisoformat(event["recorded"].replace("Z", "+00:00")) >= started
        )

    reads = [e for e in events if is_clinician_read(e)]
    assert reads, (
        f"no AuditEvent records the clinician's read of Patient/{citizen_patient_id}; "
        f"the log has {len(events)} events"
    )

    # The clinician's earlier searches that returned the citizen are logged too, with the query.
    searches = [
        e for e in events
        if any(s.get("code") == "search-type" for s in e.get("subtype", []))
        and any(a["who"].get("identifier", {}).get("value") == CLINICIAN_SUB for a in e["agent"])
    ]
    assert searches, "the clinician's searches that returned the citizen's data are not in their log"
    queries = [
        base64.b64decode(e["query"]).decode()
        for event in searches for e in event["entity"] if e.get("query")
    ]
    assert queries, "search AuditEvents carry no entity.query"

    # Another patient's audit log is not theirs to read.
    assert citizen.resources("AuditEvent").search(patient=other_patient_id).fetch_all() == []


# 7 ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/Patient"), ("GET", "/Observation?code=http://loinc.org|85354-9"), ("GET", "/Patient/{id}"),
     ("POST", "/Observation")],
)
def test_requests_without_a_token_get_401_with_an_operation_outcome(
    server: Server, citizen_patient_id: str, method: str, path: str
):
    http = server.session(None)
    url = server.base + path.format(id=citizen_patient_id)
    kwargs = {}
    if method == "POST":
        kwargs = {"json": home_bp(citizen_patient_id, 120, 80), "headers": {"Content-Type": FHIR_JSON}}
    response = http.request(method, url, timeout=30, **kwargs)
    assert response.status_code == 401, f"{method} {path} without a token: {response.status_code} {response.text}"
    assert_fhir_json(response)
    outcome = validate(response.json(), "OperationOutcome")
    assert outcome.issue and all(i.severity in ("error", "fatal") for i in outcome.issue)
    assert response.headers.get("WWW-Authenticate", "").startswith("Bearer"), response.headers


def test_fhirpy_without_a_token_and_with_bad_tokens_is_refused(server: Server, citizen_patient_id: str):
    with pytest.raises(AuthorizationError):
        SyncFHIRClient(server.base).resources("Patient").fetch()

    expired = server.token("clinician", ttl=-3600)
    forged = server.token("clinician")[:-6] + "AAAAAA"
    for token in (expired, forged, "not-a-jwt"):
        with pytest.raises(AuthorizationError) as refused:
            server.client(token).reference("Patient", citizen_patient_id).to_resource()
        validate(json.loads(str(refused.value)), "OperationOutcome")

"""Subscriptions (FHIR topic-based subscriptions, R4 backport) against a real `healthcloud up`
started with `--allow-internal-subscription-endpoints`: a webhook receiver on loopback (Python's
own HTTP server) gets the handshake and signed notifications a clinician's subscription
selects, each a valid R4B history Bundle, and nothing for a patient who opted out of that
clinician afterwards; a citizen follows her own record over a websocket (websocket-client),
bound with a token from `$get-ws-binding-token`, and is refused another patient's.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
import websocket
from fhir.resources.R4B.bundle import Bundle

from conftest import Server, running_up

NEW_OBSERVATION = "https://healthcloud.example/fhir/SubscriptionTopic/new-observation"
BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
SECRET_EXTENSION = "https://healthcloud.example/fhir/StructureDefinition/notification-secret"
WAIT_S = 15


class Receiver:
    """A webhook receiver on loopback: every POST's headers and body, in order."""

    def __init__(self):
        received: queue.Queue = queue.Queue()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                received.put((dict(self.headers), body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.received = received
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def next(self, secret: str) -> dict:
        """The next notification that is not a heartbeat, its signature checked."""
        while True:
            headers, body = self.received.get(timeout=WAIT_S)
            headers = {name.lower(): value for name, value in headers.items()}
            check_signature(headers, body, secret)
            bundle = json.loads(body)
            if kind(bundle) != "heartbeat":
                return bundle

    def quiet(self, seconds: float):
        """Nothing arrives for `seconds`."""
        try:
            _, body = self.received.get(timeout=seconds)
        except queue.Empty:
            return
        pytest.fail(f"unexpected notification: {body[:500]!r}")


def check_signature(headers: dict, body: bytes, secret: str):
    """`X-Healthcloud-Signature: t=<t>,v1=<hex HMAC-SHA256 of "<t>.<body>">`."""
    signed = headers["x-healthcloud-signature"]
    parts = dict(part.split("=", 1) for part in signed.split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(parts["v1"], expected), f"bad signature {signed}"
    assert headers["authorization"] == "Bearer receiver-secret"


def parameter(bundle: dict, name: str) -> dict:
    return next((p for p in bundle["entry"][0]["resource"]["parameter"] if p["name"] == name), {})


def kind(bundle: dict) -> str:
    return parameter(bundle, "type").get("valueCode", "")


def focus(bundle: dict) -> str:
    event = parameter(bundle, "notification-event")
    return next(p["valueReference"]["reference"] for p in event["part"] if p["name"] == "focus")


def subscription(channel: dict, content: str, patient: str | None = None) -> dict:
    resource = {
        "resourceType": "Subscription", "status": "requested", "reason": "Tell me of new readings",
        "criteria": NEW_OBSERVATION,
        "channel": {
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": f"{BACKPORT}/backport-payload-content", "valueCode": content}]},
            **channel,
        },
    }
    if patient:
        resource["_criteria"] = {"extension": [{"url": f"{BACKPORT}/backport-filter-criteria",
                                                "valueString": f"Observation?patient=Patient/{patient}"}]}
    return resource


def headers(token: str) -> dict:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json",
            "Accept": "application/fhir+json"}


@dataclass
class World:
    srv: Server
    writer: str
    patients: list[str]


@pytest.fixture(scope="module")
def world(healthcloud_bin: Path, tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("healthcloud-subscriptions")
    with running_up(healthcloud_bin, work, extra_args=("--allow-internal-subscription-endpoints",)) as srv:
        writer = srv.token("clinician", sub="lab-system", scope="user/Patient.rs user/Observation.crs")
        found = requests.get(f"{srv.base}/Patient", params={"_count": 5}, headers=headers(writer), timeout=30)
        assert found.status_code == 200, found.text
        patients = [entry["resource"]["id"] for entry in found.json()["entry"]]
        yield World(srv, writer, patients)


def write(world: World, patient: str) -> str:
    """A new vital-sign Observation for `patient`: its id."""
    observation = {
        "resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": "2026-12-01T08:00:00Z",
    }
    created = requests.post(f"{world.srv.base}/Observation", data=json.dumps(observation),
                            headers=headers(world.writer), timeout=30)
    assert created.status_code == 201, created.text
    return created.json()["id"]


def test_a_rest_hook_gets_signed_notifications_and_none_after_an_opt_out(world: World):
    srv, receiver = world.srv, Receiver()
    gp = srv.token("clinician", sub="gp-hansen", scope="user/Observation.rs")
    channel = {"type": "rest-hook", "endpoint": receiver.url, "header": ["Authorization: Bearer receiver-secret"]}
    made = requests.post(f"{srv.base}/Subscription", data=json.dumps(subscription(channel, "full-resource")),
                         headers=headers(gp), timeout=30)
    assert made.status_code == 201, made.text
    subscription_id = made.json()["id"]
    secret = next(e["valueString"] for e in made.json()["extension"] if e["url"] == SECRET_EXTENSION)
    assert kind(receiver.next(secret)) == "handshake"

    first, second = world.patients[:2]
    observation = write(world, first)
    bundle = receiver.next(secret)
    Bundle.model_validate(bundle)
    assert bundle["type"] == "history"
    assert focus(bundle) == f"{srv.base}/Observation/{observation}"
    assert bundle["entry"][1]["resource"]["id"] == observation

    # The first patient opts out of this GP: her next reading is not told; the other's is.
    citizen = srv.token("citizen", patient=first, sub=f"citizen-{first}")
    consent = {
        "resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{first}"},
        "provision": {"type": "permit", "provision": [
            {"type": "deny", "actor": [{"reference": {"reference": "Practitioner/gp-hansen"}}]}]},
    }
    opted = requests.post(f"{srv.base}/Consent", data=json.dumps(consent), headers=headers(citizen), timeout=30)
    assert opted.status_code == 201, opted.text
    write(world, first)
    others = write(world, second)
    assert focus(receiver.next(secret)) == f"{srv.base}/Observation/{others}"
    receiver.quiet(1.5)

    status = requests.get(f"{srv.base}/Subscription/{subscription_id}/$status", headers=headers(gp), timeout=30)
    assert status.status_code == 200, status.text
    assert {p["name"]: p for p in status.json()["parameter"]}["status"]["valueCode"] == "active"
    # Another clinician neither sees nor ends it.
    other = srv.token("clinician", sub="someone-else", scope="user/Observation.rs")
    assert requests.get(f"{srv.base}/Subscription/{subscription_id}", headers=headers(other), timeout=30).status_code == 404
    assert requests.delete(f"{srv.base}/Subscription/{subscription_id}", headers=headers(other), timeout=30).status_code == 404
    assert requests.delete(f"{srv.base}/Subscription/{subscription_id}", headers=headers(gp), timeout=30).status_code == 204


def test_a_citizen_follows_her_record_over_a_websocket_and_no_one_elses(world: World):
    srv = world.srv
    own, other = world.patients[2:4]
    citizen = srv.token("citizen", patient=own, sub=f"citizen-{own}")
    refused = requests.post(f"{srv.base}/Subscription", headers=headers(citizen), timeout=30,
                            data=json.dumps(subscription({"type": "websocket"}, "id-only", patient=other)))
    assert refused.status_code == 403, refused.text

    made = requests.post(f"{srv.base}/Subscription", headers=headers(citizen), timeout=30,
                         data=json.dumps(subscription({"type": "websocket"}, "id-only")))
    assert made.status_code == 201, made.text
    subscription_id = made.json()["id"]
    binding = requests.get(f"{srv.base}/Subscription/{subscription_id}/$get-ws-binding-token",
                           headers=headers(citizen), timeout=30)
    assert binding.status_code == 200, binding.text
    values = {p["name"]: p for p in binding.json()["parameter"]}
    url = values["websocket-url"]["valueUrl"]
    assert url == f"ws://{srv.root.removeprefix('http://')}/fhir/r4/$subscription-ws"

    socket = websocket.create_connection(url, timeout=WAIT_S)
    try:
        socket.send(f"bind-with-token {values['token']['valueString']}")
        assert kind(json.loads(socket.recv())) == "handshake"
        write(world, other)
        mine = write(world, own)
        bundle = json.loads(socket.recv())
        while kind(bundle) == "heartbeat":
            bundle = json.loads(socket.recv())
        Bundle.model_validate(bundle)
        assert focus(bundle) == f"{srv.base}/Observation/{mine}"
        assert len(bundle["entry"]) == 1, "id-only: no resource"
    finally:
        socket.close()

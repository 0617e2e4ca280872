"""Fixtures for the end-to-end tests.

Nothing is built here: the tests drive an already built `healthcloud` binary, named by the
HEALTHCLOUD_BIN environment variable (default: target/debug/healthcloud of this checkout).
One server runs for the whole session, on loopback, on a fresh data directory holding 40
deterministic synthetic patients (`data generate --patients 40 --seed 7`); a module that
changes what the server holds starts its own with `running_up`. The browser tests get headless
chromium from `headless_chromium`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from fhirpy import SyncFHIRClient

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO_ROOT / "target" / "debug" / "healthcloud"
CHROMIUM = Path(os.environ.get("HEALTHCLOUD_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("HEALTHCLOUD_CHROMEDRIVER", "/usr/bin/chromedriver"))

PATIENT_COUNT = 40
SEED = 7
STARTUP_TIMEOUT_S = 60
CPR_SYSTEM = "urn:oid:1.2.208.176.1.2"
BP_CODE = "http://loinc.org|85354-9"
CLINICIAN_SUB = "e2e-clinician"


class Server:
    """A running `healthcloud up` and the helpers the tests need around it."""

    def __init__(self, binary: Path, data_dir: Path, host: str, port: int, stdout_path: Path):
        self.binary = binary
        self.data_dir = data_dir
        self.root = f"http://{host}:{port}"
        self.base = f"{self.root}/fhir/r4"
        self.stdout_path = stdout_path

    def printed(self) -> str:
        """What `up` has printed on stdout so far."""
        return self.stdout_path.read_text()

    def token(
        self,
        role: str,
        *,
        patient: str | None = None,
        sub: str | None = None,
        scope: str | None = None,
        ttl: int | None = None,
        region: str | None = None,
        audience: str | None = None,
    ) -> str:
        """Mints a bearer token with `healthcloud token` for this server: by default its
        audience is this server's FHIR API and app cloud, or `audience` alone."""
        args = [
            str(self.binary), "token", "--data-dir", str(self.data_dir), "--role", role,
            "--public-url", self.root,
        ]
        if audience is not None:
            args += ["--audience", audience]
        if patient is not None:
            args += ["--patient", patient]
        if sub is not None:
            args += ["--sub", sub]
        if scope is not None:
            args += ["--scope", scope]
        if region is not None:
            args += ["--region", region]
        if ttl is not None:
            args.append(f"--ttl={ttl}")  # `=` so a negative ttl is not read as a flag
        done = subprocess.run(args, capture_output=True, text=True, timeout=60, env=_env())
        if done.returncode != 0:
            pytest.fail(f"`{' '.join(args)}` failed ({done.returncode}):\n{done.stderr}")
        token = done.stdout.strip()
        assert token.count(".") == 2, f"`healthcloud token` printed no JWT: {done.stdout!r}"
        return token

    def client(self, token: str) -> SyncFHIRClient:
        """A fhirpy client on the FHIR base, sending FHIR JSON with the bearer token."""
        return SyncFHIRClient(
            self.base,
            authorization=f"Bearer {token}",
            extra_headers={"Content-Type": "application/fhir+json"},
            requests_config={"timeout": 30},
        )

    def session(self, token: str | None) -> requests.Session:
        """A plain HTTP session, for what fhirpy hides (status codes, headers)."""
        session = requests.Session()
        session.headers["Accept"] = "application/fhir+json"
        if token is not None:
            session.headers["Authorization"] = f"Bearer {token}"
        return session


def _env() -> dict:
    """The environment for healthcloud commands: no inherited HEALTHCLOUD_* setting (such as
    HEALTHCLOUD_DATABASE_URL) may point them elsewhere than the test's own data directory."""
    return {k: v for k, v in os.environ.items() if not k.startswith("HEALTHCLOUD_")}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, limit: int = 8000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as error:
        return f"<cannot read {path}: {error}>"
    return text if len(text) <= limit else "...\n" + text[-limit:]


@pytest.fixture(scope="session")
def healthcloud_bin() -> Path:
    binary = Path(os.environ.get("HEALTHCLOUD_BIN", str(DEFAULT_BIN))).resolve()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        pytest.fail(
            f"no healthcloud binary at {binary}: build it (`cargo build -p healthcloud`) "
            "or point HEALTHCLOUD_BIN at it"
        )
    return binary


@contextlib.contextmanager
def running_up(
    binary: Path,
    work: Path,
    *,
    demo_world: bool = False,
    port: int | None = None,
    extra_args: tuple[str, ...] = (),
) -> Iterator[Server]:
    """`healthcloud up` on a fresh data directory in `work` (PATIENT_COUNT patients, seed SEED;
    with `demo_world`, the world `up` itself makes on an empty data directory: each sector's
    data in its own FHIR server) and a free loopback port, yielded once /healthz answers;
    stopped like Ctrl-C stops it. `port` (default: a free one) and `extra_args` go to `up`."""
    data_dir = work / "data"
    if demo_world:
        data_dir.mkdir()
    else:
        generate = [
            str(binary), "data", "generate", "--data-dir", str(data_dir),
            "--patients", str(PATIENT_COUNT), "--seed", str(SEED),
        ]
        done = subprocess.run(generate, capture_output=True, text=True, timeout=300, env=_env())
        if done.returncode != 0:
            pytest.fail(f"`{' '.join(generate)}` failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")

    host, port = "127.0.0.1", port or free_port()
    stdout_path, stderr_path = work / "server.stdout", work / "server.stderr"
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        process = subprocess.Popen(
            [str(binary), "up", "--data-dir", str(data_dir), "--addr", f"{host}:{port}", *extra_args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=_env(),
        )
    srv = Server(binary, data_dir, host, port, stdout_path)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"healthcloud up exited with {process.returncode} before it was healthy.\n"
                    f"stderr:\n{_tail(stderr_path)}\nstdout:\n{_tail(stdout_path)}"
                )
            try:
                if requests.get(f"{srv.root}/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"healthcloud up was not healthy within {STARTUP_TIMEOUT_S}s.\n"
                    f"stderr:\n{_tail(stderr_path)}\nstdout:\n{_tail(stdout_path)}"
                )
            time.sleep(0.2)
        yield srv
    finally:
        if process.poll() is None:
            # `up` shuts down gracefully on Ctrl-C.
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)


@contextlib.contextmanager
def headless_chromium() -> Iterator:
    """Headless chromium through chromedriver, with a fresh profile (no cookies). Without
    chromium the test is skipped, or fails when HEALTHCLOUD_REQUIRE_BROWSER is set."""
    required = bool(os.environ.get("HEALTHCLOUD_REQUIRE_BROWSER"))
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        reason = (
            f"no browser for the page tests: {', '.join(missing)} missing "
            "(install Debian's chromium and chromium-driver, as tests/run does)"
        )
        if required:
            pytest.fail(reason + "; HEALTHCLOUD_REQUIRE_BROWSER is set")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,1024",
        "--lang=en",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="session")
def server(healthcloud_bin: Path, tmp_path_factory: pytest.TempPathFactory):
    with running_up(healthcloud_bin, tmp_path_factory.mktemp("healthcloud-e2e")) as srv:
        yield srv


@pytest.fixture(scope="session")
def browser():
    """Headless chromium for the whole session (test_launch.py starts a browser of its own)."""
    with headless_chromium() as driver:
        yield driver


@pytest.fixture(scope="session")
def clinician_token(server: Server) -> str:
    return server.token("clinician", sub=CLINICIAN_SUB)


@pytest.fixture(scope="session")
def clinician(server: Server, clinician_token: str) -> SyncFHIRClient:
    return server.client(clinician_token)


@pytest.fixture(scope="session")
def all_patients(server: Server, clinician_token: str) -> list[dict]:
    """Every patient, fetched with plain HTTP (the paging test checks paging with fhirpy)."""
    http = server.session(clinician_token)
    response = http.get(f"{server.base}/Patient", params={"_count": 200}, timeout=30)
    assert response.status_code == 200, response.text
    return [entry["resource"] for entry in response.json().get("entry", [])]


@pytest.fixture(scope="session")
def bp_counts(server: Server, clinician_token: str) -> Counter:
    """Blood-pressure observations per patient id, as generated."""
    return blood_pressure_counts(server, clinician_token)


def blood_pressure_counts(server: Server, clinician_token: str) -> Counter:
    """Blood-pressure observations per patient id on `server`."""
    http = server.session(clinician_token)
    counts: Counter = Counter()
    url, params = f"{server.base}/Observation", {"code": BP_CODE, "_count": 200}
    for _ in range(100):
        response = http.get(url, params=params, timeout=30)
        assert response.status_code == 200, response.text
        bundle = response.json()
        for entry in bundle.get("entry", []):
            reference = entry["resource"]["subject"]["reference"]
            counts[reference.removeprefix("Patient/")] += 1
        url = next((l["url"] for l in bundle["link"] if l["relation"] == "next"), None)
        params = None
        if url is None:
            break
    return counts


@pytest.fixture(scope="session")
def bp_patient_id(bp_counts: Counter) -> str:
    """The patient with the most blood-pressure readings (several, so sorting is tested)."""
    patient, count = bp_counts.most_common(1)[0]
    assert count >= 3, f"the generated data has too few BP readings to test sorting: {bp_counts}"
    return patient


@pytest.fixture(scope="session")
def citizen_patient_id(all_patients: list[dict], bp_patient_id: str) -> str:
    """The patient whose citizen token the tests use (not the BP test's patient)."""
    ids = sorted(p["id"] for p in all_patients if p["id"] != bp_patient_id)
    return ids[0]


@pytest.fixture(scope="session")
def other_patient_id(all_patients: list[dict], citizen_patient_id: str) -> str:
    ids = sorted(p["id"] for p in all_patients if p["id"] != citizen_patient_id)
    return ids[-1]


@pytest.fixture(scope="session")
def citizen_token(server: Server, citizen_patient_id: str) -> str:
    return server.token("citizen", patient=citizen_patient_id, sub="e2e-citizen")


@pytest.fixture(scope="session")
def citizen(server: Server, citizen_token: str) -> SyncFHIRClient:
    return server.client(citizen_token)

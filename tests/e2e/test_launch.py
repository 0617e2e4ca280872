"""The launch page of `healthcloud up` and the pages each role lands on, in a real browser:
headless Debian chromium driven by selenium through chromedriver, like test_store_pages.py.

A person launches bp-monitor as a clinician of Hovedstaden and reads the patient's latest
blood pressure; launches the region admin page and revokes bp-monitor's Observation search
with its toggle, and the app then says the readings were denied; a region admin of
Midtjylland is refused Hovedstaden's page and its forms; a citizen sees the clinician's
accesses in their audit log and opts the app out, after which the app is denied that
patient's data; a store admin revokes a version and the app then answers with its 410 page.
Every page is checked for what the pages promise: headings in order, labels, contrast, no
script, the content security policy, and HttpOnly SameSite=Strict cookies scoped to one path.

These tests change grants, consents and revocations, so the module starts its own
`healthcloud up` on a fresh data directory instead of the session's shared server. Without
chromium the browser tests are skipped, unless HEALTHCLOUD_REQUIRE_BROWSER is set (as
tests/run sets it), when they fail.
"""

from __future__ import annotations

import re
import time
import tomllib
from pathlib import Path

import pytest
import requests

from conftest import REPO_ROOT, Server, headless_chromium, running_up
from test_apps import latest_reading
from test_store_pages import CSP, background_of, contrast, relative_luminance

BP_APP = "examples/bp-monitor"
BP_SEARCH = "patient/Observation.s?category=vital-signs"
BP_DENIED = "Access to blood-pressure readings was denied"
LATEST = re.compile(r"Latest: (\d+)/(\d+) mmHg")
BP_MANIFEST = tomllib.loads((REPO_ROOT / "example-apps/bp-monitor/healthcloud.toml").read_text())


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(healthcloud_bin: Path, tmp_path_factory: pytest.TempPathFactory):
    """`healthcloud up` on a data directory of its own (40 patients, seed 7), for this module."""
    with running_up(healthcloud_bin, tmp_path_factory.mktemp("healthcloud-launch")) as srv:
        printed = srv.printed()
        assert f"launch page:   {srv.root}/" in printed, printed
        yield srv


@pytest.fixture(scope="module")
def browser():
    """A browser of this module's own: a fresh profile, without the cookies of other modules."""
    with headless_chromium() as driver:
        yield driver


@pytest.fixture(scope="module")
def patients(server: Server) -> list[str]:
    """The patient ids the launch page offers, in its order (the demo patient first)."""
    page = requests.get(f"{server.root}/", timeout=30)
    assert page.status_code == 200, page.text
    select = page.text.split('id="patient"', 1)[1].split("</select>", 1)[0]
    ids = re.findall(r'<option value="([^"]+)"', select)
    assert len(ids) >= 2, select
    return ids


# -- helpers -------------------------------------------------------------------------------


def by():
    from selenium.webdriver.common.by import By

    return By


def wait_until(driver, condition, timeout: float = 30):
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(condition)


def loaded(driver) -> bool:
    return driver.execute_script("return document.readyState") == "complete"


def visit(driver, url: str):
    """Opens `url`, first reading away what the browser logged on earlier pages (an app's own
    403, say), so the page checks see only this page's problems."""
    driver.get_log("browser")
    driver.get(url)
    wait_until(driver, loaded)


def submit(driver, button):
    """Clicks a form's button and waits for the page the form leads to."""
    before = driver.current_url
    button.click()
    wait_until(driver, lambda d: d.current_url != before and loaded(d))


def launch(driver, server: Server, role: str, region: str | None = None,
           patient: str | None = None, app: str | None = None):
    """Fills in the launch page like a person would and presses Launch."""
    from selenium.webdriver.support.ui import Select

    By = by()
    visit(driver, f"{server.root}/")
    assert driver.find_element(By.TAG_NAME, "h1").text == "Launch healthcloud"
    Select(driver.find_element(By.ID, "role")).select_by_value(role)
    for field, value in (("region", region), ("patient", patient), ("app", app)):
        if value is not None:
            Select(driver.find_element(By.ID, field)).select_by_value(value)
    submit(driver, driver.find_element(By.CSS_SELECTOR, "form.launch button[type=submit]"))


def app_url(server: Server, region: str, app: str = BP_APP) -> str:
    return f"{server.root}/apps/{region}/{app}/"


def check_page(driver, expected_status_log: bool = False):
    """What every launcher page promises, checked in the rendered DOM."""
    By = by()
    assert driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
    assert len(driver.find_elements(By.TAG_NAME, "main")) == 1, "one <main>"
    assert len(driver.find_elements(By.TAG_NAME, "h1")) == 1, "one h1"
    levels = [int(h.tag_name[1]) for h in driver.find_elements(By.CSS_SELECTOR, "h1, h2, h3, h4, h5, h6")]
    assert levels[0] == 1, f"the first heading is the h1: {levels}"
    for previous, level in zip(levels, levels[1:]):
        assert level <= previous + 1, f"a heading level is skipped: {levels}"
    assert driver.find_elements(By.TAG_NAME, "script") == [], "the pages have no script"
    for th in driver.find_elements(By.TAG_NAME, "th"):
        assert th.get_attribute("scope") in ("col", "row"), th.get_attribute("outerHTML")
    for control in driver.find_elements(By.CSS_SELECTOR, "input, select, textarea"):
        if control.get_attribute("type") in ("hidden", "submit", "button"):
            continue
        control_id = control.get_attribute("id")
        assert control_id, f"a form control without id: {control.get_attribute('outerHTML')}"
        labels = driver.find_elements(By.CSS_SELECTOR, f"label[for='{control_id}']")
        assert len(labels) == 1 and labels[0].text.strip(), f"no label for #{control_id}"
        labels[0].click()
        assert driver.switch_to.active_element == control, f"label of #{control_id} not attached"
    for button in driver.find_elements(By.TAG_NAME, "button"):
        assert button.text.strip(), "a button without a name"
    body = driver.find_element(By.TAG_NAME, "body")
    assert relative_luminance(background_of(body)) > 0.8, "a light background"
    for selector in ("h1", "main p", "main a", "footer p", ".badge", "th", "td", "label", "button", ".notice", ".error"):
        for element in driver.find_elements(By.CSS_SELECTOR, selector)[:6]:
            if element.is_displayed() and element.text.strip():
                ratio = contrast(element)
                assert ratio >= 4.5, f"{selector} '{element.text[:40]}' has contrast {ratio:.2f}"
    problems = [
        entry for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE"
        and "favicon.ico" not in entry["message"]
        # An error page's own status is logged by the browser; that is expected there.
        and not (expected_status_log and "the server responded with a status of" in entry["message"])
    ]
    assert problems == [], f"the browser reported problems (CSP violations?): {problems}"


def capability_row(driver, region_app: str, capability: str):
    By = by()
    section = driver.find_element(By.ID, f"install-{region_app.replace('/', '-')}")
    for row in section.find_elements(By.CSS_SELECTOR, "tr.capability"):
        if row.get_attribute("data-capability") == capability:
            return row
    pytest.fail(f"no row for {capability} in {region_app}")


def latest_shown(driver) -> tuple[int, int]:
    By = by()
    latest = LATEST.search(driver.find_element(By.ID, "latest").text)
    assert latest, driver.page_source[:2000]
    return int(latest.group(1)), int(latest.group(2))


def denied_notice(driver) -> str:
    By = by()
    notices = driver.find_elements(By.CSS_SELECTOR, "p.denied")
    return notices[0].text if notices else ""


def session_cookie(driver, name: str) -> dict:
    cookie = driver.get_cookie(name)
    assert cookie is not None, f"no {name} cookie here: {driver.get_cookies()}"
    return cookie


def admin_view(server: Server, region: str, app: str = BP_APP) -> dict:
    """The install as the region admin API shows it (to a CLI-minted admin token)."""
    token = server.token("region-admin", region=region)
    response = requests.get(
        f"{server.root}/admin/v1/regions/{region}/installs/{app}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()


def launched_session(server: Server, **form) -> requests.Session:
    """A launch made with plain HTTP, as a browser's form would send it."""
    session = requests.Session()
    response = session.post(
        f"{server.root}/launch",
        data={"region": "", "patient": "", "app": "", **form},
        headers={"Origin": server.root},
        allow_redirects=False,
        timeout=30,
    )
    assert response.status_code == 303, response.text
    return session


# -- browser tests -------------------------------------------------------------------------


def test_the_launch_page_offers_roles_regions_patients_and_the_installed_apps(server, browser, patients):
    By = by()
    response = requests.get(f"{server.root}/", timeout=30)
    assert response.headers["content-security-policy"] == CSP
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    visit(browser, f"{server.root}/")
    check_page(browser)
    form = browser.find_element(By.CSS_SELECTOR, "form.launch")
    assert form.value_of_css_property("display") == "grid", "the stylesheet was not applied"

    def options(field):
        return [o.get_attribute("value") for o in browser.find_elements(By.CSS_SELECTOR, f"#{field} option")]

    assert options("role") == ["clinician", "patient", "citizen", "region-admin", "store-admin"]
    assert options("region") == ["hovedstaden", "midtjylland"]
    assert options("patient") == patients and len(patients) <= 8
    for option in browser.find_elements(By.CSS_SELECTOR, "#patient option"):
        assert re.match(r"\S.*, born \d{4}-\d{2}-\d{2} \(Patient/", option.text), option.text
    assert set(options("app")) == {
        "examples/bp-monitor", "examples/diabetes-overview", "examples/hello", "examples/patient-summary",
    }

    # A launch naming something that is not there is answered on the form, with no cookie.
    refused = requests.post(
        f"{server.root}/launch",
        data={"role": "clinician", "region": "hovedstaden", "patient": patients[0], "app": "examples/nope"},
        headers={"Origin": server.root},
        allow_redirects=False,
        timeout=30,
    )
    assert refused.status_code == 422, refused.text
    assert "set-cookie" not in refused.headers
    assert "examples/nope is not installed in region hovedstaden" in refused.text
    # And one from another site is refused before anything happens.
    foreign = requests.post(
        f"{server.root}/launch",
        data={"role": "store-admin"},
        headers={"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
        allow_redirects=False,
        timeout=30,
    )
    assert foreign.status_code == 403, foreign.text
    assert "set-cookie" not in foreign.headers


def test_a_clinician_opens_bp_monitor_and_the_region_admin_revokes_its_readings(server, browser, patients):
    By = by()
    patient = patients[0]
    expected = latest_reading(server, server.token("clinician", sub="e2e-clinician"), patient)

    launch(browser, server, "clinician", region="hovedstaden", patient=patient, app=BP_APP)
    assert browser.current_url == app_url(server, "hovedstaden")
    assert latest_shown(browser) == expected, "the app shows the patient's newest reading"
    assert denied_notice(browser) == ""
    cookie = session_cookie(browser, "healthcloud_launch")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert cookie["path"] == f"/apps/hovedstaden/{BP_APP}/"

    launch(browser, server, "region-admin", region="hovedstaden")
    assert browser.current_url == f"{server.root}/regions/hovedstaden/"
    check_page(browser)
    assert browser.find_element(By.TAG_NAME, "h1").text == "Region hovedstaden"
    cookie = session_cookie(browser, "healthcloud_region_admin")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and cookie["path"] == "/regions/"
    requested = {c["name"]: c["justification"] for c in BP_MANIFEST["capability"]}
    section = browser.find_element(By.ID, "install-examples-bp-monitor")
    shown = [row.get_attribute("data-capability") for row in section.find_elements(By.CSS_SELECTOR, "tr.capability")]
    assert shown == list(requested)
    row = capability_row(browser, BP_APP, BP_SEARCH)
    assert " ".join(row.find_element(By.CSS_SELECTOR, "td.justification").text.split()) == " ".join(requested[BP_SEARCH].split())
    explanation = row.find_element(By.CSS_SELECTOR, "td.explanation").text
    assert "Observation" in explanation and "vital-signs" in explanation, explanation
    assert row.find_element(By.CSS_SELECTOR, "td.granted").text == "granted"

    submit(browser, row.find_element(By.CSS_SELECTOR, "button.toggle"))
    assert "done=revoked" in browser.current_url
    check_page(browser)
    assert BP_SEARCH in browser.find_element(By.ID, "notice").text
    row = capability_row(browser, BP_APP, BP_SEARCH)
    assert row.find_element(By.CSS_SELECTOR, "td.granted").text == "not granted"
    assert row.find_element(By.CSS_SELECTOR, "button.toggle").text.startswith("Grant")
    newest = browser.find_element(By.CSS_SELECTOR, "table.audit tbody tr")
    assert newest.find_element(By.CSS_SELECTOR, ".actor").text == "demo-region-admin-hovedstaden"
    assert newest.find_element(By.CSS_SELECTOR, ".action").text == "revoke"
    assert newest.find_element(By.CSS_SELECTOR, ".app").text == BP_APP
    assert newest.find_element(By.CSS_SELECTOR, ".detail").text == BP_SEARCH
    assert newest.find_element(By.CSS_SELECTOR, ".outcome").text == "allowed"
    assert BP_SEARCH not in admin_view(server, "hovedstaden")["granted"], "the runtime's own view agrees"

    # Back to the app: the same launch, now denied the readings by the region.
    visit(browser, app_url(server, "hovedstaden"))
    assert BP_DENIED in denied_notice(browser), browser.page_source[:2000]
    assert "not granted" in denied_notice(browser)
    assert not browser.find_elements(By.ID, "latest")

    # The toggle works both ways (and leaves the region as it was for the other tests).
    visit(browser, f"{server.root}/regions/hovedstaden/")
    submit(browser, capability_row(browser, BP_APP, BP_SEARCH).find_element(By.CSS_SELECTOR, "button.toggle"))
    assert capability_row(browser, BP_APP, BP_SEARCH).find_element(By.CSS_SELECTOR, "td.granted").text == "granted"
    visit(browser, app_url(server, "hovedstaden"))
    assert latest_shown(browser) == expected


def test_a_region_admin_of_midtjylland_cannot_act_on_hovedstadens_page(server, browser):
    By = by()
    launch(browser, server, "region-admin", region="midtjylland")
    assert browser.current_url == f"{server.root}/regions/midtjylland/"
    check_page(browser)
    assert browser.find_element(By.TAG_NAME, "h1").text == "Region midtjylland"

    visit(browser, f"{server.root}/regions/hovedstaden/")
    check_page(browser, expected_status_log=True)
    assert browser.find_element(By.TAG_NAME, "h1").text == "Not allowed"
    message = browser.find_element(By.CSS_SELECTOR, "main .error").text
    assert "hovedstaden" in message and "midtjylland" in message, message
    assert "What to do" in browser.find_element(By.CSS_SELECTOR, "main .next-step").text
    assert browser.find_elements(By.CSS_SELECTOR, "main a[href='/']"), "a way back to the launch page"
    assert not browser.find_elements(By.CSS_SELECTOR, "form[action*='/grant']"), "no hovedstaden forms"

    # The same session's forms, sent by hand to Hovedstaden's actions, are refused as well.
    cookie = session_cookie(browser, "healthcloud_region_admin")["value"]
    cookies = {"healthcloud_region_admin": cookie}
    page = requests.get(f"{server.root}/regions/hovedstaden/", cookies=cookies, timeout=30)
    assert page.status_code == 403
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == CSP
    before = admin_view(server, "hovedstaden")["granted"]
    for action, form in (
        ("grant", {"capability": "log", "change": "revoke"}),
        ("uninstall", {}),
    ):
        refused = requests.post(
            f"{server.root}/regions/hovedstaden/installs/{BP_APP}/{action}",
            data=form, cookies=cookies, headers={"Origin": server.root}, allow_redirects=False, timeout=30,
        )
        assert refused.status_code == 403, (action, refused.text)
    assert admin_view(server, "hovedstaden")["granted"] == before, "nothing changed in hovedstaden"

    # Hovedstaden's own admin, tricked by another site into posting the form: refused too.
    own = launched_session(server, role="region-admin", region="hovedstaden")
    for headers in ({"Origin": "http://evil.example"}, {"Origin": server.root, "Sec-Fetch-Site": "same-site"}):
        forged = own.post(
            f"{server.root}/regions/hovedstaden/installs/{BP_APP}/grant",
            data={"capability": "log", "change": "revoke"}, headers=headers, allow_redirects=False, timeout=30,
        )
        assert forged.status_code == 403, (headers, forged.text)
    assert admin_view(server, "hovedstaden")["granted"] == before
    # Without a session the page says how to get one.
    anonymous = requests.get(f"{server.root}/regions/hovedstaden/", timeout=30)
    assert anonymous.status_code == 401 and "launch page" in anonymous.text


def test_the_citizen_sees_the_clinicians_accesses_and_opts_the_app_out(server, browser, patients):
    By = by()
    patient = patients[1]
    launch(browser, server, "clinician", region="midtjylland", patient=patient, app=BP_APP)
    assert browser.current_url == app_url(server, "midtjylland")
    assert denied_notice(browser) == ""
    readings = browser.find_elements(By.ID, "latest")

    launch(browser, server, "citizen", patient=patient)
    assert browser.current_url == f"{server.root}/citizen/"
    check_page(browser)
    cookie = session_cookie(browser, "healthcloud_citizen")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and cookie["path"] == "/citizen/"
    assert f"Patient/{patient}" in browser.find_element(By.CSS_SELECTOR, "header .session").text

    def accesses():
        return [
            {
                cell: row.find_element(By.CSS_SELECTOR, f"td.{cell}").text
                for cell in ("who", "app", "what", "where", "outcome")
            }
            for row in browser.find_elements(By.CSS_SELECTOR, "table.accesses tbody tr")
        ]

    by_app = [a for a in accesses() if a["app"].startswith(BP_APP)]
    assert by_app, accesses()
    for access in by_app:
        assert access["who"] == "demo-clinician-midtjylland (clinician)", access
        assert access["where"] == "midtjylland" and access["outcome"] == "allowed", access
    assert any(a["what"] == "searched Observation" for a in by_app), by_app

    item = browser.find_element(By.CSS_SELECTOR, f"li.app[data-app='{BP_APP}']")
    assert "Device/examples.bp-monitor" in item.text
    submit(browser, item.find_element(By.CSS_SELECTOR, "button"))
    assert "done=opted-out" in browser.current_url
    check_page(browser)
    assert "opted out" in browser.find_element(By.ID, "notice").text
    item = browser.find_element(By.CSS_SELECTOR, f"li.app[data-app='{BP_APP}']")
    assert "opted out" in item.find_element(By.CSS_SELECTOR, ".status").text
    assert "examples/bp-monitor: all your data" in browser.find_element(By.CSS_SELECTOR, "table.opt-outs").text

    # The clinician's launch of the app, for this patient, is now denied the data.
    visit(browser, app_url(server, "midtjylland"))
    notice = denied_notice(browser)
    assert "denied" in notice and "consent" in notice, browser.page_source[:2000]
    assert not browser.find_elements(By.ID, "latest")

    # The refusal is in the citizen's log; lifting the opt-out lets the app in again.
    visit(browser, f"{server.root}/citizen/")
    assert any(
        a["app"].startswith(BP_APP) and a["outcome"].startswith("refused") for a in accesses()
    ), accesses()
    item = browser.find_element(By.CSS_SELECTOR, f"li.app[data-app='{BP_APP}']")
    submit(browser, item.find_element(By.CSS_SELECTOR, "button"))
    assert "lifted" in browser.find_element(By.ID, "notice").text
    # Who was opted out of what, and when it was lifted, stays on the page.
    story = browser.find_element(By.CSS_SELECTOR, "ol.consent-history").text
    assert "examples/bp-monitor: all your data: opted out on" in story and "lifted on" in story, story
    visit(browser, app_url(server, "midtjylland"))
    assert denied_notice(browser) == ""
    assert len(browser.find_elements(By.ID, "latest")) == len(readings)


def test_the_store_admin_revokes_a_version_and_the_app_answers_410(server, browser, patients):
    By = by()
    launch(browser, server, "store-admin")
    assert browser.current_url == f"{server.root}/store-admin/"
    check_page(browser)
    cookie = session_cookie(browser, "healthcloud_store_admin")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and cookie["path"] == "/store-admin/"
    row = browser.find_element(By.CSS_SELECTOR, "tr[data-version='examples/hello@0.1.0']")
    assert row.find_element(By.CSS_SELECTOR, "td.signature .badge").text == "valid"
    assert row.find_element(By.CSS_SELECTOR, "td.serving").text == "hovedstaden, midtjylland"
    reason = "E2E: the greeting leaks the patient's name"
    row.find_element(By.CSS_SELECTOR, "input[name=reason]").send_keys(reason)
    submit(browser, row.find_element(By.CSS_SELECTOR, "button"))
    check_page(browser)
    assert "Revoked examples/hello@0.1.0" in browser.find_element(By.ID, "notice").text
    row = browser.find_element(By.CSS_SELECTOR, "tr[data-version='examples/hello@0.1.0']")
    assert "revoked" in row.find_element(By.CSS_SELECTOR, "td.status").text
    assert reason in row.find_element(By.CSS_SELECTOR, "td.status").text
    assert not row.find_elements(By.CSS_SELECTOR, "form"), "a revoked version has no revoke form"
    version = requests.get(f"{server.root}/store/v1/apps/examples/hello/versions/0.1.0", timeout=30).json()
    assert version["revoked"]["reason"] == reason

    launch(browser, server, "clinician", region="hovedstaden", patient=patients[0], app="examples/hello")
    deadline = time.monotonic() + 10
    while "was revoked" not in browser.find_element(By.TAG_NAME, "h1").text:
        assert time.monotonic() < deadline, f"hello still serves: {browser.page_source[:1000]}"
        time.sleep(0.3)
        visit(browser, app_url(server, "hovedstaden", "examples/hello"))
    assert browser.find_element(By.TAG_NAME, "h1").text == "Hello was revoked"
    assert reason in browser.find_element(By.TAG_NAME, "main").text
    status = requests.get(
        app_url(server, "hovedstaden", "examples/hello"),
        headers={"Authorization": f"Bearer {server.token('clinician', region='hovedstaden', patient=patients[0])}"},
        timeout=30,
    )
    assert status.status_code == 410

    # A store-admin session is no clinician's, and a clinician's is no store admin's.
    clinician = launched_session(
        server, role="clinician", region="hovedstaden", patient=patients[0], app=BP_APP
    )
    assert clinician.get(f"{server.root}/store-admin/", timeout=30).status_code == 401
    forged = requests.get(
        f"{server.root}/store-admin/",
        cookies={
            "healthcloud_store_admin": server.token(
                "clinician", region="hovedstaden", audience=f"{server.root}/store-admin/"
            )
        },
        timeout=30,
    )
    assert forged.status_code == 403 and "store-admin role" in forged.text

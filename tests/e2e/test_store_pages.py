"""The store's catalog pages (`/store`) in a real browser: headless Debian chromium driven by
selenium through chromedriver, against the example apps `healthcloud up` publishes.

A person searches, filters by audience and opens an app page with the form and links only (the
pages have no JavaScript); the test reads what they would read and checks it against the apps'
manifests (example-apps/*/healthcloud.toml) and the store's JSON API. It also checks what the
pages promise everyone: one h1 and headings in order, a label on every form control, `lang`,
table header scopes, readable contrast, a visible focus outline and the strict content security
policy. Searches that look like SQL wildcards or injection, and markup in the query, are sent
with plain HTTP.

Without chromium the browser tests are skipped, unless HEALTHCLOUD_REQUIRE_BROWSER is set (as
tests/run sets it), when they fail.
"""

from __future__ import annotations

import html
import html.parser
import re
import time
import tomllib

import pytest
import requests

from conftest import REPO_ROOT, Server

PUBLISHER = "examples"
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
BP_CAPABILITY = "patient/Observation.s?category=vital-signs"
HEX64 = re.compile(r"[0-9a-f]{64}")
PUBLISH_TIMEOUT_S = 60


def load_manifests() -> dict[str, dict]:
    """The example apps' manifests by app id."""
    manifests = {}
    for path in sorted((REPO_ROOT / "example-apps").glob("*/healthcloud.toml")):
        manifest = tomllib.loads(path.read_text())
        manifests[manifest["app"]["id"]] = manifest
    return manifests


MANIFESTS = load_manifests()


def words(text: str) -> str:
    return " ".join(text.split())


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def catalog(server: Server) -> dict[str, dict]:
    """The example apps as the store's JSON API lists them, once `up` has published them."""
    deadline = time.monotonic() + PUBLISH_TIMEOUT_S
    while True:
        response = requests.get(f"{server.root}/store/v1/apps", params={"per_page": 100}, timeout=30)
        if response.status_code == 200:
            apps = {
                app["id"]: app for app in response.json()["apps"] if app["publisher"] == PUBLISHER
            }
            if set(MANIFESTS) <= set(apps):
                return apps
        if time.monotonic() > deadline:
            pytest.fail(
                f"`healthcloud up` did not publish the example apps {sorted(MANIFESTS)} as "
                f"publisher '{PUBLISHER}' within {PUBLISH_TIMEOUT_S}s; /store/v1/apps answered "
                f"{response.status_code}: {response.text[:2000]}"
            )
        time.sleep(0.5)


# -- helpers -------------------------------------------------------------------------------


def by():
    from selenium.webdriver.common.by import By

    return By


def wait_for_page(driver, url_part: str):
    """Waits until the browser shows a page whose URL contains `url_part` and whose DOM is in."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 30).until(
        lambda d: url_part in d.current_url
        and d.execute_script("return document.readyState") == "complete"
    )


def listed(driver) -> list[dict]:
    """The apps on the catalog page as a reader sees them."""
    By = by()
    apps = []
    for item in driver.find_elements(By.CSS_SELECTOR, "ol.apps > li.app"):
        link = item.find_element(By.CSS_SELECTOR, "h3 a")
        path = link.get_attribute("href").split("/store/apps/", 1)[1]
        publisher, app_id = path.split("/")
        apps.append(
            {
                "publisher": publisher,
                "id": app_id,
                "name": link.text,
                "shown_publisher": item.find_element(By.CSS_SELECTOR, "dd.publisher").text,
                "description": item.find_element(By.CSS_SELECTOR, "p.description").text,
                "audience": [
                    a.strip()
                    for a in item.find_element(By.CSS_SELECTOR, "dd.audience").text.split(",")
                ],
                "version": item.find_element(By.CSS_SELECTOR, "dd.version").text,
            }
        )
    return apps


def listed_all(driver) -> list[dict]:
    """The apps on this catalog page and the ones after it, following the "Next page" links
    (other tests may have published more apps than one page holds)."""
    By = by()
    apps = listed(driver)
    for _ in range(50):
        following = driver.find_elements(By.CSS_SELECTOR, "nav.pages a[rel=next]")
        if not following:
            return apps
        before = driver.current_url
        following[0].click()
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(driver, 30).until(lambda d: d.current_url != before)
        wait_for_page(driver, "/store")
        apps += listed(driver)
    pytest.fail("more than 50 catalog pages")


def example_ids(apps: list[dict]) -> set[str]:
    return {app["id"] for app in apps if app["publisher"] == PUBLISHER}


def search(driver, q: str | None = None, audience: str | None = None):
    """Fills the search form like a person would and submits it with its button."""
    from selenium.webdriver.support.ui import Select

    By = by()
    if q is not None:
        field = driver.find_element(By.ID, "q")
        field.clear()
        field.send_keys(q)
    if audience is not None:
        Select(driver.find_element(By.ID, "audience")).select_by_value(audience)
    before = driver.current_url
    driver.find_element(By.CSS_SELECTOR, "form.search button[type=submit]").click()
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 30).until(
        lambda d: d.current_url != before
        and d.execute_script("return document.readyState") == "complete"
    )


def relative_luminance(rgb: tuple[float, float, float]) -> float:
    def channel(c: float) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def parse_colour(css: str) -> tuple[tuple[float, float, float], float]:
    numbers = [float(n) for n in re.findall(r"[\d.]+", css)]
    alpha = numbers[3] if len(numbers) > 3 else 1.0
    return (numbers[0], numbers[1], numbers[2]), alpha


def background_of(element) -> tuple[float, float, float]:
    """The first opaque background colour from the element up (white when none is set)."""
    By = by()
    while True:
        rgb, alpha = parse_colour(element.value_of_css_property("background-color"))
        if alpha > 0:
            return rgb
        if element.tag_name.lower() == "html":
            return (255.0, 255.0, 255.0)
        element = element.find_element(By.XPATH, "..")


def contrast(element) -> float:
    foreground, _ = parse_colour(element.value_of_css_property("color"))
    lighter, darker = sorted(
        (relative_luminance(foreground), relative_luminance(background_of(element))), reverse=True
    )
    return (lighter + 0.05) / (darker + 0.05)


def check_page_structure(driver):
    """What every catalog page promises, checked in the rendered DOM."""
    By = by()
    assert driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
    assert len(driver.find_elements(By.TAG_NAME, "main")) == 1, "one <main>"
    assert len(driver.find_elements(By.TAG_NAME, "h1")) == 1, "one h1"
    levels = [
        int(h.tag_name[1])
        for h in driver.find_elements(By.CSS_SELECTOR, "h1, h2, h3, h4, h5, h6")
    ]
    assert levels[0] == 1, f"the first heading is the h1: {levels}"
    for previous, level in zip(levels, levels[1:]):
        assert level <= previous + 1, f"a heading level is skipped: {levels}"
    assert driver.find_elements(By.TAG_NAME, "script") == [], "the pages have no script"
    for th in driver.find_elements(By.TAG_NAME, "th"):
        assert th.get_attribute("scope") in ("col", "row"), th.get_attribute("outerHTML")
    # Every form control has a label the browser attaches to it: clicking the label focuses it.
    controls = driver.find_elements(By.CSS_SELECTOR, "input, select, textarea")
    for control in controls:
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
    # Readable: dark text on a light background (WCAG AA, 4.5:1), stylesheet applied under CSP.
    body = driver.find_element(By.TAG_NAME, "body")
    assert relative_luminance(background_of(body)) > 0.8, "a light background"
    for selector in ("h1", "main p", "main a", "footer p", ".badge", "th", "label", "button"):
        for element in driver.find_elements(By.CSS_SELECTOR, selector)[:5]:
            if element.is_displayed() and element.text.strip():
                ratio = contrast(element)
                assert ratio >= 4.5, f"{selector} '{element.text[:40]}' has contrast {ratio:.2f}"
    problems = [
        entry
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE" and "favicon.ico" not in entry["message"]
    ]
    assert problems == [], f"the browser reported problems (CSP violations?): {problems}"


# -- browser tests -------------------------------------------------------------------------


def test_the_catalog_lists_the_example_apps_and_searches_with_the_form(server, catalog, browser):
    By = by()
    browser.get(f"{server.root}/store")
    wait_for_page(browser, "/store")
    check_page_structure(browser)
    assert browser.find_element(By.TAG_NAME, "h1").text == "App catalog"
    # The stylesheet came from /store/static/store.css despite `default-src 'none'`.
    form = browser.find_element(By.CSS_SELECTOR, "form.search")
    assert form.value_of_css_property("display") == "flex", "the stylesheet was not applied"

    total = browser.find_element(By.ID, "total").text
    apps = listed_all(browser)
    assert total.startswith(f"{len(apps)} apps found"), total
    assert len({(app["publisher"], app["id"]) for app in apps}) == len(apps), "listed twice"
    assert example_ids(apps) == set(MANIFESTS), apps
    for app in apps:
        if app["publisher"] != PUBLISHER:
            continue
        manifest = MANIFESTS[app["id"]]["app"]
        assert app["name"] == manifest["name"]
        assert app["shown_publisher"] == PUBLISHER
        assert words(app["description"]) == words(manifest["description"])
        assert app["audience"] == manifest["audience"]
        assert app["version"] == manifest["version"] == catalog[app["id"]]["latest_version"]

    # A visible focus outline on the search field.
    field = browser.find_element(By.ID, "q")
    field.click()
    assert browser.switch_to.active_element == field
    assert field.value_of_css_property("outline-style") == "solid"
    assert float(field.value_of_css_property("outline-width").removesuffix("px")) >= 2

    search(browser, q="blood")
    assert "q=blood" in browser.current_url
    check_page_structure(browser)
    apps = listed_all(browser)
    assert example_ids(apps) == {"bp-monitor"}, apps
    for app in apps:
        assert "blood" in f"{app['name']} {app['id']} {app['description']}".lower(), app
    assert browser.find_element(By.ID, "q").get_attribute("value") == "blood", "the query is kept"

    # Blood pressure is not a citizen's app: both filters together find none of the examples.
    search(browser, audience="citizen")
    assert example_ids(listed_all(browser)) == set()

    search(browser, q="", audience="citizen")
    check_page_structure(browser)
    apps = listed_all(browser)
    for_citizens = {id for id, m in MANIFESTS.items() if "citizen" in m["app"]["audience"]}
    assert for_citizens == {"hello", "patient-summary"}, "the manifests changed: update the test"
    assert example_ids(apps) == for_citizens, apps
    for app in apps:
        assert "citizen" in app["audience"], app
    selected = browser.find_element(By.CSS_SELECTOR, "#audience option:checked")
    assert selected.get_attribute("value") == "citizen", "the filter is kept"

    search(browser, audience="any")
    assert example_ids(listed_all(browser)) == set(MANIFESTS)


def test_the_app_page_shows_publisher_capabilities_and_signed_versions(server, catalog, browser):
    By = by()
    browser.get(f"{server.root}/store")
    wait_for_page(browser, "/store")
    manifest = MANIFESTS["bp-monitor"]
    search(browser, q=manifest["app"]["name"], audience="any")
    link = browser.find_element(By.CSS_SELECTOR, "li.app h3 a[href='/store/apps/examples/bp-monitor']")
    assert link.text == manifest["app"]["name"]
    link.click()
    wait_for_page(browser, "/store/apps/examples/bp-monitor")
    check_page_structure(browser)

    assert browser.find_element(By.TAG_NAME, "h1").text == manifest["app"]["name"]
    assert browser.find_element(By.ID, "publisher-id").text == PUBLISHER
    assert browser.find_element(By.CSS_SELECTOR, ".publisher-name").text.strip()
    description = browser.find_element(By.CSS_SELECTOR, "main > p.description").text
    assert words(description) == words(manifest["app"]["description"])
    audience = browser.find_element(By.CSS_SELECTOR, "dd.audience").text
    assert [a.strip() for a in audience.split(",")] == manifest["app"]["audience"]

    api = requests.get(f"{server.root}/store/v1/apps/examples/bp-monitor", timeout=30).json()
    explained = {c["name"]: c for c in api["capabilities"]}
    shown = {}
    for item in browser.find_elements(By.CSS_SELECTOR, "li.capability"):
        name = item.find_element(By.CSS_SELECTOR, ".capability-name code").text
        shown[name] = {
            "explanation": item.find_element(By.CSS_SELECTOR, ".explanation").text,
            "justification": item.find_element(By.CSS_SELECTOR, ".justification").text,
        }
    requested = {c["name"]: c["justification"] for c in manifest["capability"]}
    assert set(shown) == set(requested), shown
    for name, text in shown.items():
        assert words(text["justification"]).endswith(words(requested[name])), (name, text)
        assert text["explanation"] == explained[name]["explanation"], (name, text)
    vital_signs = shown[BP_CAPABILITY]["explanation"]
    assert "Observation" in vital_signs and "vital-signs" in vital_signs, vital_signs
    assert vital_signs != BP_CAPABILITY, "the explanation is plain language, not the scope"

    rows = browser.find_elements(By.CSS_SELECTOR, "table.versions tbody tr")
    versions = {row.find_element(By.CSS_SELECTOR, "th[scope=row]").text: row for row in rows}
    assert manifest["app"]["version"] == "0.1.0"
    row = versions["0.1.0"]
    assert row.find_element(By.CSS_SELECTOR, "td.signature").text == "valid"
    assert row.find_element(By.CSS_SELECTOR, "td.status").text == "available"
    published = row.find_element(By.CSS_SELECTOR, "td.published time")
    assert published.get_attribute("datetime") == api["versions"][0]["published_at"]
    # The digest and key id are shortened; their <summary> opens the full value, without script.
    for cell, expected in (("td.sha256", api["versions"][0]["sha256"]), ("td.key", api["versions"][0]["key_id"])):
        details = row.find_element(By.CSS_SELECTOR, f"{cell} details")
        full = details.find_element(By.CSS_SELECTOR, "code.full")
        assert not full.is_displayed()
        summary = details.find_element(By.TAG_NAME, "summary")
        short = summary.find_element(By.TAG_NAME, "code").text.rstrip("…")
        assert len(short) >= 8 and expected.startswith(short), (short, expected)
        summary.click()
        assert details.get_attribute("open") is not None
        assert full.is_displayed()
        assert HEX64.fullmatch(full.text), full.text
        assert full.text == expected

    browser.find_element(By.LINK_TEXT, "Catalog").click()
    wait_for_page(browser, "/store")
    assert browser.find_element(By.TAG_NAME, "h1").text == "App catalog"


def test_an_unknown_app_gets_an_html_not_found_page(server, browser):
    By = by()
    browser.get(f"{server.root}/store/apps/examples/no-such-app")
    wait_for_page(browser, "no-such-app")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Not found"
    assert "examples/no-such-app" in browser.find_element(By.CSS_SELECTOR, "main .error").text
    # The browser logs the 404 itself; the rest of the page's promises hold.
    browser.get_log("browser")


# -- plain HTTP ----------------------------------------------------------------------------


class _PageParser(html.parser.HTMLParser):
    """The bits of a catalog page the HTTP tests look at."""

    def __init__(self):
        super().__init__()
        self.apps: list[str] = []
        self.search_value: str | None = None
        self.tags: list[str] = []
        self.h1: list[str] = []
        self._in_h1 = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "li" and "app" in (attrs.get("class") or "").split():
            self.apps.append("")
        if tag == "input" and attrs.get("id") == "q":
            self.search_value = attrs.get("value")
        if tag == "h1":
            self._in_h1 = True
            self.h1.append("")

    def handle_endtag(self, tag):
        if tag == "h1":
            self._in_h1 = False

    def handle_data(self, data):
        if self._in_h1:
            self.h1[-1] += data


def page(server: Server, path: str, **params) -> tuple[requests.Response, _PageParser]:
    response = requests.get(f"{server.root}{path}", params=params, timeout=30)
    parser = _PageParser()
    parser.feed(response.text)
    return response, parser


def assert_html(response: requests.Response):
    assert response.headers["content-type"].startswith("text/html"), response.headers
    assert response.headers["content-security-policy"] == CSP
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("q", ["%", "_", "%%", "\\", "' OR 1=1 --", "\" OR \"\"=\"", "'; DROP TABLE store_apps; --"])
def test_wildcards_and_injection_in_the_search_match_nothing(server, catalog, q):
    response, parsed = page(server, "/store", q=q)
    assert response.status_code == 200, response.text
    assert_html(response)
    assert parsed.apps == [], f"q={q!r} matched apps"
    assert parsed.search_value == q, "the query is shown back, escaped"
    assert "0 apps found" in response.text
    # The catalog is still there afterwards.
    _, everything = page(server, "/store")
    assert len(everything.apps) >= len(MANIFESTS)


def test_markup_in_the_query_is_escaped(server, catalog):
    q = '"><script>alert(1)</script><b onmouseover="x">'
    response, parsed = page(server, "/store", q=q)
    assert response.status_code == 200
    assert "script" not in parsed.tags and "b" not in parsed.tags
    assert "<script>" not in response.text
    assert parsed.search_value == q


def test_bad_filters_answer_400_on_an_html_page(server, catalog):
    for params, needle in (
        ({"audience": "robots"}, "unknown audience"),
        ({"page": "0"}, "not a page number"),
        ({"page": "many"}, "not a page number"),
    ):
        response, parsed = page(server, "/store", **params)
        assert response.status_code == 400, (params, response.text)
        assert_html(response)
        assert needle in response.text, response.text
        assert parsed.h1 == ["App catalog"], "the form stays, to fix the search"
        assert parsed.apps == []


def test_a_page_past_the_end_is_empty_with_a_way_back(server, catalog):
    for number in ("999", str(2**32 - 1)):
        response, parsed = page(server, "/store", page=number)
        assert response.status_code == 200, response.text
        assert parsed.apps == []
        back = re.search(r'<a rel="prev" href="([^"]+)"', response.text)
        assert back, "a way back to the last page"
        last, parsed = page(server, html.unescape(back.group(1)))
        assert last.status_code == 200 and parsed.apps, "the way back leads to apps"
    response, _ = page(server, "/store", page=str(2**32))
    assert response.status_code == 400, "past u32 is not a page number"


def test_not_found_the_stylesheet_and_headers(server, catalog):
    response, parsed = page(server, "/store/apps/examples/no-such-app")
    assert response.status_code == 404
    assert_html(response)
    assert parsed.h1 == ["Not found"]
    response, parsed = page(server, "/store/apps/examples/bp-monitor")
    assert response.status_code == 200
    assert_html(response)
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    css = requests.get(f"{server.root}/store/static/store.css", timeout=30)
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert "outline" in css.text

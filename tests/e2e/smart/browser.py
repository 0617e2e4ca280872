"""A person in a browser, for SMART launch tests: follows an authorization URL to the region's
identity provider, signs in with a password, decides on healthcloud's consent page, and
stops at the app's redirect URI.

    browser.py AUTHORIZE_URL REDIRECT_URI LOGIN PASSWORD [allow|deny] [switch] [patient=ID]

With `switch`, the identity provider's answer is opened in another browser (no cookies of
the first): what a victim lured to an attacker's sign-in would do. With `patient=ID`, a
clinician names the patient on the consent page (a standalone launch).

Prints one JSON object: `callback` (the URL the app got, or null), `consent_page`, and
`stopped_at` (status and text of the page where it stopped otherwise).
"""

import html
import json
import re
import sys
from urllib.parse import urljoin

import requests


SWITCH = False


def follow(browser, response, redirect_uri):
    """Follows redirects up to a page, or up to the app's redirect URI (returned as text)."""
    while response.is_redirect:
        location = urljoin(response.url, response.headers["Location"])
        if location.startswith(redirect_uri):
            return location
        if SWITCH and "/oauth2/login/callback" in location:
            browser = requests.Session()
        response = browser.get(location, allow_redirects=False)
    return response


def form_value(page, pattern):
    found = re.search(pattern, page.text)
    return html.unescape(found.group(1)) if found else None


def authorize(url, redirect_uri, login, password, decision="allow", patient=None):
    """The user's way through: (callback URL or None, consent page text, last page)."""
    browser = requests.Session()
    page = follow(browser, browser.get(url, allow_redirects=False), redirect_uri)
    if isinstance(page, str):
        return page, None, None
    action = form_value(page, r'<form[^>]*action="([^"]+)"')
    if action is None or "/interaction/" not in action:
        return None, None, page
    page = follow(
        browser,
        browser.post(
            urljoin(page.url, action),
            data={"login": login, "password": password},
            allow_redirects=False,
        ),
        redirect_uri,
    )
    if isinstance(page, str):
        return page, None, None
    request = form_value(page, r'name="request" value="([^"]+)"')
    if request is None:
        return None, None, page
    answer = follow(
        browser,
        browser.post(
            urljoin(page.url, "/oauth2/consent"),
            data={"request": request, "decision": decision}
            | ({"patient": patient} if patient else {}),
            allow_redirects=False,
        ),
        redirect_uri,
    )
    if isinstance(answer, str):
        return answer, page.text, None
    return None, page.text, answer


if __name__ == "__main__":
    url, redirect_uri, login, password = sys.argv[1:5]
    options = sys.argv[5:]
    decision = "deny" if "deny" in options else "allow"
    SWITCH = "switch" in options
    patient = next((o.removeprefix("patient=") for o in options if o.startswith("patient=")), None)
    callback, consent, stopped = authorize(url, redirect_uri, login, password, decision, patient)
    print(
        json.dumps(
            {
                "callback": callback,
                "consent_page": consent,
                "stopped_at": None
                if stopped is None
                else {"status": stopped.status_code, "text": stopped.text[:2000]},
            }
        )
    )

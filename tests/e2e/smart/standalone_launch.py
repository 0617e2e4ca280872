"""A standalone SMART launch by Python's `fhirclient` (PyPI), as a patient would do it.

The script is the app and the browser: fhirclient finds the authorization endpoints in the
server's CapabilityStatement and makes the authorization URL (with PKCE); the "browser"
follows it to the region's identity provider, signs in with a password, allows the app on
healthcloud's consent page and comes back to the app's redirect URI, which fhirclient turns
into tokens. The app then reads the patient and their Observations and refreshes its token.

    standalone_launch.py FHIR_BASE CLIENT_ID REDIRECT_URI LOGIN PASSWORD SCOPE

Prints one JSON object: the patient in context, what was read, the granted scope.
"""

import json
import sys

import browser
from fhirclient import client
from fhirclient.models.observation import Observation
from fhirclient.models.patient import Patient

base, client_id, redirect_uri, login, password, scope = sys.argv[1:7]
smart = client.FHIRClient(
    settings={
        "app_id": client_id,
        "api_base": base,
        "redirect_uri": redirect_uri,
        "scope": scope,
    }
)
callback, consent, stopped = browser.authorize(smart.authorize_url, redirect_uri, login, password)
if callback is None:
    sys.exit(f"no code came back: {stopped.status_code} {stopped.text[:500]}")
smart.handle_callback(callback)
patient = Patient.read(smart.patient_id, smart.server)
observations = Observation.where(struct={"patient": smart.patient_id}).perform_resources(
    smart.server
)
first_token = smart.server.auth.access_token
smart.reauthorize()
refreshed = smart.server.auth.access_token not in (None, first_token)
again = Observation.where(struct={"patient": smart.patient_id}).perform_resources(smart.server)
print(
    json.dumps(
        {
            "patient": smart.patient_id,
            "patient_read": patient.id,
            "observations": sorted(o.id for o in observations),
            "after_refresh": len(again),
            "refreshed": refreshed,
            "consent_page": consent,
            "access_token": smart.server.auth.access_token,
            "refresh_token": smart.server.auth.refresh_token,
        }
    )
)

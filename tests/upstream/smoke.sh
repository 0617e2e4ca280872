#!/usr/bin/env bash
# Smoke check of the upstream FHIR test server: starts it on the sample GP bundle (and once more
# with a bearer token, and once behind the OAuth token server), asks it what healthcloud's
# federation will ask, and checks the answers.
# Needs node (20+), npm and curl. Exits non-zero on any failure.
#
#   bash tests/upstream/smoke.sh
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"
if [ ! -d node_modules/@medplum/fhir-router ] || [ ! -d node_modules/oidc-provider ]; then
  npm ci --no-audit --no-fund --loglevel=error >&2
fi

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $1"; }
ko() { failed=$((failed + 1)); echo "FAIL $1${2:+: $2}"; }

# start NAME [server args...]: starts a server, waits for its ready line, sets BASE.
start() {
  local name="$1"
  shift
  node --experimental-websocket server.mjs --port 0 --data data/gp.json --name "$name" "$@" \
    >"$WORK/$name.out" 2>"$WORK/$name.err" &
  PIDS+=("$!")
  local line=""
  for _ in $(seq 1 300); do
    line="$(head -n 1 "$WORK/$name.out" 2>/dev/null || true)"
    [[ "$line" == listening* ]] && break
    if ! kill -0 "${PIDS[-1]}" 2>/dev/null; then break; fi
    sleep 0.1
  done
  if [[ ! "$line" =~ ^listening\ (http://127\.0\.0\.1:[0-9]+/fhir/R4)$ ]]; then
    echo "server $name did not start; stderr:" >&2
    cat "$WORK/$name.err" >&2
    exit 1
  fi
  BASE="${BASH_REMATCH[1]}"
  [ "$(wc -l <"$WORK/$name.out")" -eq 1 ] && ok "$name: one ready line on stdout ($BASE)" || ko "$name: stdout has more than the ready line"
}

# check NAME STATUS JS-EXPRESSION PATH [curl args...]
# GETs BASE/PATH; passes when the status is STATUS, the body is FHIR JSON and the expression holds.
# In the expression: b is the parsed body, base the server's base URL, h the response headers text.
check() {
  local name="$1" want="$2" expr="$3" path="$4"
  shift 4
  local status
  status="$(curl -sS -g -o "$WORK/body" -D "$WORK/headers" -w '%{http_code}' "$@" "$BASE/$path")" || { ko "$name" "curl failed"; return; }
  if [ "$status" != "$want" ]; then
    ko "$name" "status $status, want $want: $(head -c 300 "$WORK/body")"
    return
  fi
  if ! grep -qi '^content-type: application/fhir+json' "$WORK/headers"; then
    ko "$name" "not application/fhir+json"
    return
  fi
  local out
  if out="$(BASE="$BASE" EXPR="$expr" node -e '
    const fs = require("fs");
    const b = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
    const h = fs.readFileSync(process.argv[2], "utf8");
    const base = process.env.BASE;
    const result = eval(process.env.EXPR);
    if (result !== true) { console.log(JSON.stringify(b).slice(0, 400)); process.exit(1); }
  ' "$WORK/body" "$WORK/headers" 2>&1)"; then
    ok "$name"
  else
    ko "$name" "$expr does not hold: $out"
  fi
}

CPR='urn:oid:1.2.208.176.1.2'
LOINC_BP='http://loinc.org|85354-9'

start gp --log

check "metadata is a CapabilityStatement listing the loaded types and their search params" 200 '
  b.resourceType === "CapabilityStatement" && b.fhirVersion === "4.0.1" && b.kind === "instance" &&
  ["Condition", "Observation", "Organization", "Patient"].every((t) => b.rest[0].resource.some((r) => r.type === t)) &&
  b.rest[0].resource.find((r) => r.type === "Observation").searchParam.some((p) => p.name === "patient" && p.type === "reference") &&
  b.rest[0].resource.find((r) => r.type === "Patient").searchParam.some((p) => p.name === "identifier" && p.type === "token")' \
  metadata

check "Patient by CPR identifier" 200 '
  b.resourceType === "Bundle" && b.type === "searchset" && b.entry.length === 1 &&
  b.entry[0].resource.id === "gp-patient-1" && b.entry[0].fullUrl === base + "/Patient/gp-patient-1" &&
  b.entry[0].search.mode === "match" && b.total === undefined &&
  b.link.find((l) => l.relation === "self").url.startsWith(base + "/Patient?")' \
  "Patient?identifier=$CPR|0101701234"

check "Patient by CPR identifier, other patient, with _total=accurate" 200 '
  b.total === 1 && b.entry[0].resource.id === "gp-patient-2" &&
  b.entry[0].resource.managingOrganization.reference === "Organization/gp-clinic"' \
  "Patient?identifier=$CPR|0202802345&_total=accurate"

check "Observations, newest first, page 1 of 2, next link absolute on the base" 200 '
  b.entry.length === 2 && b.entry.every((e) => e.resource.code.coding[0].code === "85354-9") &&
  b.entry[0].resource.effectiveDateTime > b.entry[1].resource.effectiveDateTime &&
  b.link.find((l) => l.relation === "next").url.startsWith(base + "/Observation?") &&
  b.link.find((l) => l.relation === "next").url.includes("_offset=2") &&
  !b.link.some((l) => l.relation === "previous")' \
  "Observation?patient=gp-patient-1&code=$LOINC_BP&_sort=-date&_count=2"

NEXT="$(node -e 'const b = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); console.log(b.link.find((l) => l.relation === "next").url)' "$WORK/body")"
check "the next link gives page 2 (the oldest), with a previous link and no next" 200 '
  b.entry.length === 1 && b.entry[0].resource.id === "gp-bp-1-1" &&
  b.link.some((l) => l.relation === "previous") && !b.link.some((l) => l.relation === "next")' \
  "${NEXT#"$BASE/"}"

check "read an Observation, with an ETag" 200 '
  b.resourceType === "Observation" && b.id === "gp-bp-1-1" && b.status === "final" &&
  b.component.map((c) => c.code.coding[0].code).join() === "8480-6,8462-4" && /^etag: W\//im.test(h)' \
  Observation/gp-bp-1-1

check "read of a missing id is a 404 OperationOutcome" 404 '
  b.resourceType === "OperationOutcome" && b.issue[0].code === "not-found"' \
  Observation/does-not-exist

check "read of a type not served is a 404 OperationOutcome" 404 'b.resourceType === "OperationOutcome"' Encounter/x

check "an unknown search parameter is ignored (lenient), said in an outcome entry, left out of self" 200 '
  b.entry.filter((e) => e.search.mode === "match").length === 2 &&
  b.entry.some((e) => e.search.mode === "outcome" && e.resource.resourceType === "OperationOutcome") &&
  !b.link.find((l) => l.relation === "self").url.includes("foo")' \
  "Patient?foo=bar"

check "an unknown search parameter with Prefer: handling=strict is a 400" 400 '
  b.resourceType === "OperationOutcome" && b.issue[0].details.text.includes("foo")' \
  "Patient?foo=bar" -H "Prefer: handling=strict"

check "an unsupported modifier is a 400" 400 'b.resourceType === "OperationOutcome"' "Observation?code:text=blood"

check "_summary=count gives the total and no entries" 200 '
  b.total === 3 && b.entry === undefined' \
  "Observation?patient=gp-patient-1&_summary=count"

check "_include and _revinclude" 200 '
  b.entry.map((e) => e.search.mode + ":" + e.resource.resourceType).sort().join() ===
    "include:Condition,include:Organization,match:Patient"' \
  "Patient?identifier=$CPR|0101701234&_include=Patient:organization&_revinclude=Condition:subject"

check "a chained search by CPR" 200 '
  b.entry.length === 2 && b.entry.every((e) => e.resource.subject.reference === "Patient/gp-patient-2")' \
  "Observation?subject:Patient.identifier=$CPR|0202802345"

check "a write is refused with 405" 405 'b.resourceType === "OperationOutcome"' Patient -X POST -d '{}'

# Latency of one search, as measured here.
T="$(curl -sS -g -o /dev/null -w '%{time_total}' "$BASE/Observation?patient=gp-patient-1&code=$LOINC_BP&_sort=-date&_count=2")"
echo "info search latency ${T}s"

echo -n "smoke-token-$$" >"$WORK/token"
start gp-auth --bearer-token-file "$WORK/token"
check "bearer mode: no Authorization is a 401" 401 '
  b.resourceType === "OperationOutcome" && /^www-authenticate: Bearer/im.test(h)' metadata
check "bearer mode: a wrong token is a 401" 401 'b.resourceType === "OperationOutcome"' metadata -H "Authorization: Bearer wrong"
check "bearer mode: the right token is served" 200 'b.resourceType === "CapabilityStatement"' \
  metadata -H "Authorization: Bearer smoke-token-$$"
check "bearer mode: the right token searches" 200 'b.entry.length === 1' \
  "Patient?identifier=$CPR|0101701234" -H "Authorization: Bearer smoke-token-$$"

# OAuth mode: tokens from oidc-provider (token-server.mjs), checked by introspection.
echo -n "smoke-healthcloud-secret" >"$WORK/healthcloud-secret"
echo -n "smoke-fhir-secret" >"$WORK/fhir-secret"
node token-server.mjs --port 0 --client "healthcloud:$WORK/healthcloud-secret" \
  --client "gp-fhir:$WORK/fhir-secret" >"$WORK/tokens.out" 2>"$WORK/tokens.err" &
PIDS+=("$!")
ISSUER=""
for _ in $(seq 1 300); do
  ISSUER="$(head -n 1 "$WORK/tokens.out" 2>/dev/null | sed -n 's/^listening //p')"
  [ -n "$ISSUER" ] && break
  sleep 0.1
done
[ -n "$ISSUER" ] || { echo "token server did not start; stderr:" >&2; cat "$WORK/tokens.err" >&2; exit 1; }
ok "token server: ready at $ISSUER"
start gp-oauth --introspect "$ISSUER/token/introspection" --introspect-client "gp-fhir:$WORK/fhir-secret" \
  --introspect-scope 'system/*.read'
# token [scope]: an access token for healthcloud's client.
token() {
  curl -sS -u healthcloud:smoke-healthcloud-secret -d grant_type=client_credentials ${1:+--data-urlencode "scope=$1"} \
    "$ISSUER/token" | node -e 'let s="";process.stdin.on("data",(d)=>(s+=d)).on("end",()=>process.stdout.write(JSON.parse(s).access_token ?? ""))'
}
TOKEN="$(token 'system/*.read')"
[ -n "$TOKEN" ] && ok "token server: client credentials give a token" || ko "token server: no token for the right secret"
WRONG="$(curl -sS -o /dev/null -w '%{http_code}' -u healthcloud:wrong -d grant_type=client_credentials "$ISSUER/token")"
[ "$WRONG" = 401 ] && ok "token server: a wrong secret is a 401" || ko "token server: a wrong secret is $WRONG, want 401"
check "oauth mode: no Authorization is a 401" 401 'b.resourceType === "OperationOutcome"' metadata
check "oauth mode: a made-up token is a 401" 401 'b.resourceType === "OperationOutcome"' metadata -H "Authorization: Bearer made-up"
check "oauth mode: a token without the scope is a 403" 403 '/insufficient_scope/.test(h)' metadata -H "Authorization: Bearer $(token)"
check "oauth mode: an issued token searches" 200 'b.entry.length === 1' \
  "Patient?identifier=$CPR|0101701234" -H "Authorization: Bearer $TOKEN"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

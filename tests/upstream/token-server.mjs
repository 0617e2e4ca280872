// An OAuth 2.0 authorization server for healthcloud's tests: the token endpoint an
// organization puts in front of its FHIR server, or a region's identity provider. It is npm's
// oidc-provider, configured for the client credentials grant only, issuing opaque access
// tokens (kept in memory) that a resource server checks at the introspection endpoint
// (server.mjs --introspect); with --jwt-audience, JWT access tokens (RFC 9068) for that
// resource instead, signed with the provider's published keys (/jwks, named by its discovery
// document) and carrying each --claim. See README.md.
//
//   node token-server.mjs --port 0 --client ID:SECRET_FILE [--client ID:SECRET_FILE ...]
//        [--scope SCOPE ...] [--ttl SECONDS] [--log]
//        [--jwt-audience URL [--claim NAME=VALUE ...]]
//
// Prints exactly one line to stdout once it listens:
//   listening http://127.0.0.1:<port>
// With --log, one more line per access token issued: `issued <client_id> expires_in=<s>`.
// Errors go to stderr.

import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const HOST = '127.0.0.1';

function fail(message) {
  process.stderr.write(`token-server: ${message}\n`);
  process.exit(1);
}

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    client: { type: 'string', multiple: true, default: [] },
    scope: { type: 'string', multiple: true, default: ['system/*.read'] },
    ttl: { type: 'string', default: '600' },
    log: { type: 'boolean', default: false },
    'jwt-audience': { type: 'string' },
    claim: { type: 'string', multiple: true, default: [] },
  },
  strict: true,
});
const port = Number.parseInt(args.port, 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`bad --port ${args.port}`);
const ttl = Number.parseInt(args.ttl, 10);
if (!Number.isInteger(ttl) || ttl < 1) fail(`bad --ttl ${args.ttl}: a whole number of seconds, at least 1`);
if (args.client.length === 0) fail('at least one --client ID:SECRET_FILE is required');
const audience = args['jwt-audience'];
const extraClaims = Object.fromEntries(
  args.claim.map((spec) => {
    const equals = spec.indexOf('=');
    if (equals <= 0) fail(`--claim ${spec}: expected NAME=VALUE`);
    return [spec.slice(0, equals), spec.slice(equals + 1)];
  }),
);

const clients = args.client.map((spec) => {
  const colon = spec.indexOf(':');
  if (colon <= 0) fail(`--client ${spec}: expected ID:SECRET_FILE`);
  const file = spec.slice(colon + 1);
  let secret;
  try {
    secret = readFileSync(file, 'utf8').trim();
  } catch (err) {
    fail(`--client ${spec}: cannot read the secret file: ${err.message}`);
  }
  if (!secret) fail(`--client ${spec}: the secret file is empty`);
  return {
    client_id: spec.slice(0, colon),
    client_secret: secret,
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    // The method healthcloud uses. oidc-provider takes client_secret_post from such a client
    // too: the two count as one method to it.
    token_endpoint_auth_method: 'client_secret_basic',
    scope: args.scope.join(' '),
  };
});

// The issuer names the port, so the provider is built once the port is known.
const server = createServer();
server.on('error', (err) => fail(`cannot listen: ${err.message}`));
server.listen(port, HOST, () => {
  const issuer = `http://${HOST}:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients,
    scopes: args.scope,
    features: {
      clientCredentials: { enabled: true },
      // Any client that authenticates may ask whether a token is active: here that is the
      // FHIR server, which has its own client.
      introspection: { enabled: true, allowedPolicy: async (_ctx, client) => client.clientAuthMethod !== 'none' },
      // Only the token, introspection and revocation endpoints are wanted.
      devInteractions: { enabled: false },
      // With --jwt-audience: every token is a JWT for that one resource server.
      resourceIndicators: {
        enabled: audience !== undefined,
        defaultResource: () => audience,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: args.scope.join(' '),
          audience,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
    extraTokenClaims: () => extraClaims,
    ttl: { ClientCredentials: ttl },
    // The in-memory adapter (the default) keeps tokens until the process ends.
  });
  if (args.log) {
    provider.on('client_credentials.saved', (token) => {
      process.stdout.write(`issued ${token.clientId} expires_in=${token.expiration}\n`);
    });
  }
  provider.on('server_error', (_ctx, err) => process.stderr.write(`token-server: ${err.stack}\n`));
  server.on('request', provider.callback());
  process.stdout.write(`listening ${issuer}\n`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close();
    process.exit(0);
  });
}

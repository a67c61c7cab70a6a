#!/usr/bin/env node
// Test peer: a real OAuth 2.0 / OpenID Connect authorization server (oidc-provider 9, panva)
// standing in for a SOURCE payer's token server in p2p-exchange integration tests.
//
//   node tests/peers/oauth-server.mjs [--port 0] [--host 127.0.0.1]
//        --client-id ID --client-secret SECRET [--access-ttl 3600] [--refresh-ttl 1209600]
//        [--introspection-client-id ID2 --introspection-client-secret SECRET2]
//        [--redirect-uri http://127.0.0.1/callback] [--extra-token-param memberId ...]
//        [--scope "extra/scope another/scope"]
//        [--jwt-client-id ID3 --jwt-client-jwks FILE]   a second client that authenticates with
//            private_key_jwt (RFC 7523; SMART Backend Services), its public keys registered inline
//            (FILE: a JWK Set, e.g. the service's /.well-known/jwks.json), for the client_credentials,
//            refresh_token and authorization_code grants; the --scope scopes are its allowed scopes
//        [--interactive [--fhir-user-base URL]]   the member's own sign-in (see below)
//
// --redirect-uri may be given several times (every one is registered for both clients).
//
// --interactive: the authorization-code flow a member goes through at a SMART on FHIR payer, with
// oidc-provider's own login and consent pages (devInteractions: GET {issuer}/auth?... -> /interaction/UID;
// any login name and any password are accepted; the login name is the account id, `sub`):
//   - PKCE is required at /auth for every client (code_challenge_method S256, the only one oidc-provider 9
//     supports); offline_access (a refresh token) is granted when the request has prompt=consent, as
//     oidc-provider requires for it;
//   - the `fhirUser` scope puts a `fhirUser` claim "Patient/<login>" (or "<--fhir-user-base>/Patient/<login>")
//     into the id_token (oidc-provider's `claims` + conformIdTokenClaims: false) and userinfo;
//   - p2p-exchange test addition (SMART App Launch launch context, which oidc-provider does not know):
//     an authorization_code token response whose scope has launch/patient carries `"patient": "<login>"`.
// Without --interactive none of the three applies (the login pages are there, but nothing above).
// tests/peers/sign-in.mjs walks those pages over HTTP (as a member's browser would) for a test.
//
// When listening it prints exactly one JSON line to stdout:
//   {"ready":true,"port":N,"issuer":"http://127.0.0.1:N","token_endpoint":...,
//    "introspection_endpoint":...,"revocation_endpoint":...,"well_known":...,
//    "authorization_endpoint":...,"interactive":true|false}
// and then logs to stderr only (oidc-provider's own notices included). Secrets and token values
// are never logged.
//
// What is real (oidc-provider): discovery, JWKS, token endpoint (refresh_token, authorization_code and
// client_credentials grants; client_secret_basic and client_secret_post accepted for the secret
// clients, private_key_jwt with RS384/ES384 for the JWK Set ones), RFC 7591 dynamic client
// registration at /reg, RFC 7662 introspection, RFC 7009 revocation, userinfo. Opaque access tokens, kept in
// oidc-provider's in-memory adapter. Refresh-token rotation is on.
//
// Test controls (no auth, JSON in/out), served by this script next to the provider:
//   POST   /__control/issue            {"sub","scope"?,"accessTtl"?,"clientId"?} -> mint Grant+AccessToken(+RefreshToken)
//                                       for --client-id's client, or the one named
//   POST   /__control/expire-access    {"access_token"}  -> the access token is destroyed (introspects inactive)
//   POST   /__control/revoke-refresh   {"refresh_token"} -> the refresh token is destroyed (refresh gets invalid_grant)
//   POST   /__control/expire-client-credentials {"clientId"?} -> every client_credentials access token (of
//                                       that client) is destroyed, as when its 5 minutes are up: it introspects inactive
//   GET    /__control/token-requests   -> every request seen at the token endpoint since start (or last clear)
//   DELETE /__control/token-requests   -> clear that list
// p2p-exchange test addition (hostile token server):
//   POST   /__control/drop-next-token-response {"count"?:1,"grant"?:"refresh_token"}
//                                       -> the next `count` token requests of that grant_type (default:
//                                          any) are processed, but their response is never sent
//                                          (the socket is destroyed instead)
//   POST   /__control/delay-next-token-response {"milliseconds","count"?:1,"grant"?:"refresh_token"}
//                                       -> the next `count` token requests of that grant_type are
//                                          processed at once (tokens rotated) and answered after
//                                          `milliseconds` (a slow token endpoint)
//   GET    /__control/token-stats       -> token-endpoint request counts by grant type, refresh-token
//                                          reuse, drops
//   POST   /__control/reset             -> clears drop rules, token stats and token-requests (not tokens)
//
// Only loopback hosts are accepted: /__control has no authentication.
//
// When P2P_TEST_LOG_DIR is set (scripts/test.sh sets it), every access and refresh token minted (by
// /__control/issue or the token endpoint) is appended, one per line, to
// $P2P_TEST_LOG_DIR/secrets-oauth-<pid>.txt: scripts/check-secrets.sh then makes sure none of them
// appears in the service's logs or responses.

import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { parseArgs } from 'node:util';

// oidc-provider prints its NOTICEs with console.info (stdout). stdout is reserved for the single
// ready line, so every console method is routed to stderr before the library is loaded.
const toStderr = (...args) => console.error(...args);
console.log = toStderr;
console.info = toStderr;
console.debug = toStderr;

const log = (msg) => process.stderr.write(`[oauth-server] ${msg}\n`);

const secretsFile = process.env.P2P_TEST_LOG_DIR
  ? `${process.env.P2P_TEST_LOG_DIR}/secrets-oauth-${process.pid}.txt` : null;
function recordIssuedTokens(...tokens) {
  const values = tokens.filter((t) => typeof t === 'string' && t !== '');
  if (secretsFile && values.length) fs.appendFileSync(secretsFile, `${values.join('\n')}\n`);
}

function fail(msg) {
  process.stderr.write(`oauth-server: ${msg}\n`);
  process.exit(2);
}

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      port: { type: 'string', default: '0' },
      host: { type: 'string', default: '127.0.0.1' },
      'client-id': { type: 'string' },
      'client-secret': { type: 'string' },
      'access-ttl': { type: 'string', default: '3600' },
      'refresh-ttl': { type: 'string', default: String(14 * 24 * 3600) },
      'introspection-client-id': { type: 'string' },
      'introspection-client-secret': { type: 'string' },
      'redirect-uri': { type: 'string', multiple: true, default: ['http://127.0.0.1/callback'] },
      'extra-token-param': { type: 'string', multiple: true, default: ['memberId'] },
      scope: { type: 'string', multiple: true, default: [] },
      'jwt-client-id': { type: 'string' },
      'jwt-client-jwks': { type: 'string' },
      interactive: { type: 'boolean', default: false },
      'fhir-user-base': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  }));
} catch (err) {
  fail(err.message);
}

if (args.help) {
  process.stderr.write('usage: node tests/peers/oauth-server.mjs [--port 0] [--host 127.0.0.1] '
    + '--client-id ID --client-secret SECRET [--access-ttl 3600] [--refresh-ttl 1209600] '
    + '[--introspection-client-id ID2 --introspection-client-secret SECRET2] '
    + '[--redirect-uri URI ...] [--extra-token-param NAME ...] [--scope "a b" ...] '
    + '[--jwt-client-id ID3 --jwt-client-jwks FILE] [--interactive [--fhir-user-base URL]]\n');
  process.exit(0);
}

function positiveInt(name, value, { allowZero = false } = {}) {
  if (!/^\d+$/.test(value)) fail(`--${name} must be a non-negative integer`);
  const n = Number(value);
  if (!allowZero && n === 0) fail(`--${name} must be > 0`);
  return n;
}

const port = positiveInt('port', args.port, { allowZero: true });
if (port > 65535) fail('--port must be <= 65535');
const accessTtl = positiveInt('access-ttl', args['access-ttl']);
const refreshTtl = positiveInt('refresh-ttl', args['refresh-ttl']);
const clientId = args['client-id'];
const clientSecret = args['client-secret'];
if (!clientId || !clientSecret) fail('--client-id and --client-secret are required');
const introspectionClientId = args['introspection-client-id'];
const introspectionClientSecret = args['introspection-client-secret'];
if (Boolean(introspectionClientId) !== Boolean(introspectionClientSecret)) {
  fail('--introspection-client-id and --introspection-client-secret go together');
}

const jwtClientId = args['jwt-client-id'];
let jwtClientJwks = null;
if (Boolean(jwtClientId) !== Boolean(args['jwt-client-jwks'])) fail('--jwt-client-id and --jwt-client-jwks go together');
if (jwtClientId) {
  try {
    jwtClientJwks = JSON.parse(fs.readFileSync(args['jwt-client-jwks'], 'utf8'));
  } catch (err) {
    fail(`--jwt-client-jwks: ${err.message}`);
  }
  if (!Array.isArray(jwtClientJwks?.keys) || jwtClientJwks.keys.length === 0) fail('--jwt-client-jwks has no keys');
}

const interactive = args.interactive;
const redirectUris = [...new Set(args['redirect-uri'])];
for (const uri of redirectUris) {
  let parsed;
  try {
    parsed = new URL(uri);
  } catch {
    fail(`--redirect-uri ${uri} is not an absolute URL`);
  }
  if (parsed.hash) fail(`--redirect-uri ${uri} must not have a fragment`);
}
const fhirUserBase = args['fhir-user-base']?.replace(/\/+$/, '');
if (fhirUserBase !== undefined && !interactive) fail('--fhir-user-base goes with --interactive');
if (fhirUserBase !== undefined && !/^https?:\/\/[^/]/.test(fhirUserBase)) fail('--fhir-user-base must be an http(s) URL');

const host = args.host;
function isLoopback(h) {
  if (h === 'localhost') return true;
  if (net.isIPv4(h)) return h.startsWith('127.');
  if (net.isIPv6(h)) return h === '::1';
  return false;
}
if (!isLoopback(host)) fail(`--host ${host} is not a loopback address`);

const extraTokenParams = [...new Set(args['extra-token-param'])];

// SMART-on-FHIR style scope names on top of the OIDC ones. oidc-provider 9 keeps access-token
// scopes to those of the Grant; the `scopes` configuration (also published as scopes_supported)
// is what a `scope` parameter on a token request is filtered against.
const SCOPES = [
  'openid', 'offline_access', 'profile', 'fhirUser', 'launch/patient',
  'patient/*.read', 'patient/*.rs', 'user/*.read', 'user/*.rs',
  ...args.scope.flatMap((s) => s.split(/\s+/)).filter(Boolean),
];
const DEFAULT_ISSUE_SCOPE = 'openid offline_access patient/*.read';

// Form parameters never copied into the token-requests log (secrets and tokens).
const SECRET_PARAMS = new Set([
  'client_secret', 'client_assertion', 'refresh_token', 'code', 'code_verifier', 'password',
  'assertion', 'subject_token', 'actor_token', 'device_code', 'auth_req_id', 'token',
]);

// ---------------------------------------------------------------------------------------------

const { default: Provider, errors } = await import('oidc-provider');
// oidc-provider has no "exports" map, so its modules can be imported directly. They are used to
// (1) keep the stock in-memory adapter but give it a store without the default 1000-entry LRU
// cap, and (2) re-register the stock refresh_token grant handler with extra allowed parameters.
const { default: MemoryAdapter } = await import('oidc-provider/lib/adapters/memory_adapter.js');
const { default: LRU } = await import('oidc-provider/lib/helpers/lru.js');
const refreshTokenGrant = await import('oidc-provider/lib/actions/grants/refresh_token.js');
const grantHelpers = await import('oidc-provider/lib/helpers/grants.js');

function signingJwks() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { keys: [{ ...jwk, use: 'sig', alg: 'RS256', kid: crypto.randomUUID() }] };
}

const introspectors = new Set([clientId]);
if (introspectionClientId) introspectors.add(introspectionClientId);

function clientsConfig() {
  const clients = [{
    client_id: clientId,
    client_secret: clientSecret,
    client_name: 'p2p-exchange (test)',
    // client_credentials too: the payer-mediated exchange with a client secret (tokenEndpointAuthMethod
    // client_secret_basic), as the docs sandbox runs it.
    grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
    response_types: ['code'],
    redirect_uris: redirectUris,
    token_endpoint_auth_method: 'client_secret_basic',
  }];
  if (jwtClientId) {
    // As a payer registers a SMART Backend Services client (client-confidential-asymmetric): the
    // client's JWK Set inline, private_key_jwt at the token endpoint, RS384 or ES384 assertions.
    clients.push({
      client_id: jwtClientId,
      client_name: 'p2p-exchange (test, private_key_jwt)',
      grant_types: ['client_credentials', 'authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: redirectUris,
      token_endpoint_auth_method: 'private_key_jwt',
      jwks: jwtClientJwks,
      scope: SCOPES.join(' '),
    });
  }
  if (introspectionClientId && introspectionClientId !== clientId) {
    clients.push({
      client_id: introspectionClientId,
      client_secret: introspectionClientSecret,
      client_name: 'FHIR resource server (test introspection client)',
      grant_types: [],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    });
  }
  return clients;
}

const store = new LRU({ maxSize: 1_000_000 });
// The keys of client_credentials tokens, for /__control/expire-client-credentials (the LRU cannot list its keys).
const clientCredentialKeys = new Set();
{
  const set = store.set.bind(store);
  store.set = (key, value, options) => {
    if (String(key).startsWith('ClientCredentials:')) clientCredentialKeys.add(key);
    return set(key, value, options);
  };
}

const configuration = {
  adapter: (name) => new MemoryAdapter(name, store, 0),
  clients: clientsConfig(),
  jwks: signingJwks(),
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  scopes: SCOPES,
  responseTypes: ['code'],
  // Only affects the authorization endpoint / PAR in oidc-provider 9 (see extra-token-param below).
  extraParams: extraTokenParams,
  clientAuthMethods: ['client_secret_basic', 'client_secret_post', 'private_key_jwt'],
  // SMART Backend Services: clients SHALL support RS384 and ES384.
  enabledJWA: { clientAuthSigningAlgValues: ['RS256', 'RS384', 'ES256', 'ES384', 'PS256'] },
  async findAccount(ctx, sub) {
    return {
      accountId: sub,
      async claims() {
        if (!interactive) return { sub };
        // SMART App Launch: fhirUser is the FHIR resource of the signed-in user, here the member's Patient.
        return { sub, fhirUser: `${fhirUserBase ? `${fhirUserBase}/` : ''}Patient/${sub}` };
      },
    };
  },
  ...(interactive ? {
    // The `fhirUser` scope releases the `fhirUser` claim; with conformIdTokenClaims off the claims of
    // the granted scopes go into the id_token of the code flow too (SMART apps read fhirUser there).
    claims: { openid: ['sub'], fhirUser: ['fhirUser'] },
    conformIdTokenClaims: false,
    // SMART App Launch requires PKCE (S256) of every client, confidential ones included.
    pkce: { required: () => true },
  } : {}),
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    // Dynamic client registration (RFC 7591) at /reg, open as on a test bench: PDex encourages payers to
    // let requesting payers register their JWK Set this way.
    registration: { enabled: true },
    introspection: {
      enabled: true,
      // The default lets any confidential client introspect any token. Here: the token's own
      // client, or the FHIR server's introspection client.
      async allowedPolicy(ctx, client, token) {
        return client.clientId === token.clientId || introspectors.has(client.clientId);
      },
    },
    revocation: {
      enabled: true,
      async allowedPolicy(ctx, client, token) {
        if (token.clientId !== client.clientId) {
          throw new errors.InvalidRequest('client is not authorized to revoke the presented token');
        }
        return true;
      },
    },
    resourceIndicators: { enabled: false },
  },
  rotateRefreshToken: true,
  ttl: {
    AccessToken: accessTtl,
    AuthorizationCode: 60,
    ClientCredentials: 600,
    IdToken: 3600,
    RefreshToken: refreshTtl,
    Grant: Math.max(refreshTtl, 30 * 24 * 3600),
    Interaction: 3600,
    Session: 14 * 24 * 3600,
  },
};

// --- token-request log -----------------------------------------------------------------------

const tokenRequests = [];

function basicClientId(header) {
  if (typeof header !== 'string' || !/^basic /i.test(header)) return undefined;
  try {
    const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
    const i = decoded.indexOf(':');
    if (i === -1) return undefined;
    return decodeURIComponent(decoded.slice(0, i).replace(/\+/g, '%20'));
  } catch {
    return undefined;
  }
}

function recordTokenRequest(ctx) {
  const oidc = ctx.oidc; // defined once the token route matched
  const body = (oidc && oidc.body && typeof oidc.body === 'object') ? oidc.body : {};
  const params = {};
  for (const [k, v] of Object.entries(body)) {
    if (!SECRET_PARAMS.has(k)) params[k] = v;
  }
  let authMethod = 'none';
  if (ctx.headers.authorization !== undefined) authMethod = 'basic';
  else if (body.client_secret !== undefined) authMethod = 'post';
  else if (body.client_assertion !== undefined) authMethod = 'private_key_jwt';
  const rec = {
    time: new Date().toISOString(),
    grant_type: typeof body.grant_type === 'string' ? body.grant_type : null,
    client_id: oidc?.client?.clientId ?? basicClientId(ctx.headers.authorization)
      ?? (typeof body.client_id === 'string' ? body.client_id : null),
    auth_method: authMethod,
    params,
    status: ctx.status,
    error: (ctx.body && typeof ctx.body === 'object' && ctx.body.error) || null,
    // oidc-provider's internal reason (e.g. "refresh token already used"), not sent to clients
    error_detail: ctx.state.grantErrorDetail ?? null,
  };
  tokenRequests.push(rec);
  countTokenRequest(rec);
  log(`token request grant_type=${rec.grant_type} client_id=${rec.client_id} auth=${rec.auth_method}`
    + ` params=${JSON.stringify(params)} -> ${rec.status}${rec.error ? ` ${rec.error}` : ''}`
    + `${rec.error_detail ? ` (${rec.error_detail})` : ''}`);
  return rec;
}

// --- p2p-exchange test addition: token stats and dropped token responses ---------------------

let dropRules = []; // {grant (null = any), remaining}
const emptyStats = () => ({
  requests: 0,
  byGrantType: {},
  errorsByGrantType: {},
  refreshTokenReused: 0,
  dropped: 0,
  droppedByGrantType: {},
});
let tokenStats = emptyStats();
const grantKey = (grantType) => grantType ?? '(none)';
const bump = (obj, key) => { obj[key] = (obj[key] ?? 0) + 1; };

function countTokenRequest(rec) {
  const key = grantKey(rec.grant_type);
  tokenStats.requests++;
  bump(tokenStats.byGrantType, key);
  if (rec.error) {
    tokenStats.errorsByGrantType[key] ??= {};
    bump(tokenStats.errorsByGrantType[key], rec.error);
  }
  // oidc-provider's refresh_token grant throws InvalidGrant('refresh token already used') for a
  // consumed (rotated) refresh token, and revokes the whole grant; seen through 'grant.error'.
  if (rec.grant_type === 'refresh_token' && rec.error_detail === 'refresh token already used') {
    tokenStats.refreshTokenReused++;
  }
}

/** After oidc-provider has fully processed a token request: drop its response if a rule says so. */
function maybeDropTokenResponse(ctx, rec) {
  const rule = dropRules.find((r) => r.remaining > 0 && (r.grant === null || r.grant === rec.grant_type));
  if (!rule) return;
  rule.remaining--;
  dropRules = dropRules.filter((r) => r.remaining > 0);
  rec.dropped = true;
  tokenStats.dropped++;
  bump(tokenStats.droppedByGrantType, grantKey(rec.grant_type));
  log(`token response for grant_type=${rec.grant_type} (status ${rec.status}) dropped: socket destroyed`);
  ctx.respond = false; // koa writes nothing
  ctx.req.socket.destroy();
}

let delayRules = []; // {grant (null = any), remaining, milliseconds}

/** After oidc-provider has processed a token request: hold its answer if a rule says so. */
async function maybeDelayTokenResponse(rec) {
  const rule = delayRules.find((r) => r.remaining > 0 && (r.grant === null || r.grant === rec.grant_type));
  if (!rule) return;
  rule.remaining--;
  delayRules = delayRules.filter((r) => r.remaining > 0);
  log(`token response for grant_type=${rec.grant_type} (status ${rec.status}) held for ${rule.milliseconds} ms`);
  await new Promise((resolve) => setTimeout(resolve, rule.milliseconds));
}

// --- control API ----------------------------------------------------------------------------

class HttpError extends Error {
  constructor(status, error, description) {
    super(description);
    this.status = status;
    this.error = error;
  }
}

async function readJson(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new HttpError(413, 'invalid_request', 'body too large');
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (!text) return {};
  try {
    const v = JSON.parse(text);
    if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('not an object');
    return v;
  } catch {
    throw new HttpError(400, 'invalid_request', 'body must be a JSON object');
  }
}

function requireString(body, name) {
  const v = body[name];
  if (typeof v !== 'string' || v === '') {
    throw new HttpError(400, 'invalid_request', `"${name}" must be a non-empty string`);
  }
  return v;
}

const epoch = () => Math.floor(Date.now() / 1000);

function controlRoutes(provider) {
  const supported = new Set(SCOPES);
  return {
    // Mints what the token endpoint would mint after an authorization_code exchange, through
    // the provider's own models: a Grant holding the scope, an AccessToken and (when the scope
    // has offline_access, as oidc-provider's issueRefreshToken policy requires) a RefreshToken.
    async 'POST /__control/issue'(body) {
      const sub = requireString(body, 'sub');
      const scope = body.scope === undefined ? DEFAULT_ISSUE_SCOPE : requireString(body, 'scope');
      const scopes = scope.split(' ').filter(Boolean);
      const unknown = scopes.filter((s) => !supported.has(s));
      if (unknown.length) {
        throw new HttpError(400, 'invalid_scope', `unsupported scope(s): ${unknown.join(' ')} (add them with --scope)`);
      }
      let ttl;
      if (body.accessTtl !== undefined) {
        if (!Number.isInteger(body.accessTtl) || body.accessTtl <= 0) {
          throw new HttpError(400, 'invalid_request', '"accessTtl" must be a positive integer (seconds)');
        }
        ttl = body.accessTtl;
      }
      // The tokens of the --client-id client, or of another one (--jwt-client-id, or registered at /reg).
      const forClient = body.clientId === undefined ? clientId : requireString(body, 'clientId');
      const client = await provider.Client.find(forClient);
      if (!client) throw new HttpError(400, 'invalid_request', `unknown clientId "${forClient}"`);
      const normalized = scopes.join(' ');

      const grant = new provider.Grant({ accountId: sub, clientId: forClient });
      grant.addOIDCScope(normalized);
      const grantId = await grant.save();

      const common = {
        accountId: sub,
        client,
        grantId,
        gty: 'authorization_code',
        expiresWithSession: false,
        scope: normalized,
      };
      const at = new provider.AccessToken({ ...common, ...(ttl ? { expiresIn: ttl } : {}) });
      const accessToken = await at.save();

      let refreshToken;
      if (scopes.includes('offline_access')) {
        const rt = new provider.RefreshToken({ ...common, authTime: epoch(), rotations: 0 });
        refreshToken = await rt.save();
      }
      recordIssuedTokens(accessToken, refreshToken);
      log(`issued tokens sub=${sub} scope="${normalized}" expires_in=${at.expiration}`
        + ` refresh_token=${refreshToken ? 'yes' : 'no'}`);
      return {
        status: 200,
        body: {
          access_token: accessToken,
          token_type: 'Bearer',
          expires_in: at.expiration,
          scope: normalized,
          ...(refreshToken ? { refresh_token: refreshToken } : {}),
        },
      };
    },

    async 'POST /__control/expire-access'(body) {
      const value = requireString(body, 'access_token');
      const at = await provider.AccessToken.find(value, { ignoreExpiration: true });
      if (!at) throw new HttpError(404, 'not_found', 'unknown access token');
      await at.destroy();
      log(`access token destroyed (sub=${at.accountId})`);
      return { status: 200, body: { expired: true } };
    },

    async 'POST /__control/revoke-refresh'(body) {
      const value = requireString(body, 'refresh_token');
      const rt = await provider.RefreshToken.find(value, { ignoreExpiration: true });
      if (!rt) throw new HttpError(404, 'not_found', 'unknown refresh token');
      await rt.destroy();
      log(`refresh token destroyed (sub=${rt.accountId})`);
      return { status: 200, body: { revoked: true } };
    },

    // p2p-exchange test addition: a backend (client_credentials) token lapses mid-job.
    async 'POST /__control/expire-client-credentials'(body) {
      const only = body.clientId === undefined ? undefined : requireString(body, 'clientId');
      let destroyed = 0;
      for (const key of [...clientCredentialKeys]) {
        const payload = store.get(key);
        if (payload && only !== undefined && payload.clientId !== only) continue;
        clientCredentialKeys.delete(key);
        if (!payload) continue;
        store.delete(key);
        destroyed += 1;
      }
      log(`client_credentials access tokens destroyed: ${destroyed}`);
      return { status: 200, body: { destroyed } };
    },

    async 'GET /__control/token-requests'() {
      return { status: 200, body: tokenRequests };
    },

    async 'DELETE /__control/token-requests'() {
      const cleared = tokenRequests.length;
      tokenRequests.length = 0;
      return { status: 200, body: { cleared } };
    },

    // p2p-exchange test addition: hostile token server controls
    async 'POST /__control/drop-next-token-response'(body) {
      const count = body.count === undefined ? 1 : body.count;
      if (!Number.isInteger(count) || count < 1) {
        throw new HttpError(400, 'invalid_request', '"count" must be a positive integer');
      }
      const grant = body.grant === undefined ? null : requireString(body, 'grant');
      dropRules.push({ grant, remaining: count });
      return { status: 200, body: { ok: true, rules: dropRules } };
    },

    async 'POST /__control/delay-next-token-response'(body) {
      const count = body.count === undefined ? 1 : body.count;
      if (!Number.isInteger(count) || count < 1) {
        throw new HttpError(400, 'invalid_request', '"count" must be a positive integer');
      }
      if (!Number.isInteger(body.milliseconds) || body.milliseconds < 0 || body.milliseconds > 600000) {
        throw new HttpError(400, 'invalid_request', '"milliseconds" must be an integer, 0..600000');
      }
      const grant = body.grant === undefined ? null : requireString(body, 'grant');
      delayRules.push({ grant, remaining: count, milliseconds: body.milliseconds });
      return { status: 200, body: { ok: true, rules: delayRules } };
    },

    async 'GET /__control/token-stats'() {
      return { status: 200, body: { ...tokenStats, pendingDrops: dropRules } };
    },

    async 'POST /__control/reset'() {
      dropRules = [];
      delayRules = [];
      tokenStats = emptyStats();
      tokenRequests.length = 0;
      return { status: 200, body: { ok: true } };
    },
  };
}

async function handleControl(routes, req, res) {
  const path = new URL(req.url, 'http://x').pathname;
  const route = routes[`${req.method} ${path}`];
  let status;
  let body;
  try {
    if (!route) {
      const known = Object.keys(routes).some((k) => k.endsWith(` ${path}`));
      throw new HttpError(known ? 405 : 404, known ? 'method_not_allowed' : 'not_found', `${req.method} ${path}`);
    }
    const input = req.method === 'POST' ? await readJson(req) : {};
    ({ status, body } = await route(input));
  } catch (err) {
    if (err instanceof HttpError) {
      status = err.status;
      body = { error: err.error, error_description: err.message };
    } else {
      log(`control error on ${req.method} ${path}: ${err && err.stack}`);
      status = 500;
      body = { error: 'server_error', error_description: String(err && err.message) };
    }
  }
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
  log(`${req.method} ${path} -> ${status}`);
}

// --- start ------------------------------------------------------------------------------------

// Listen first: with --port 0 the issuer (which embeds the port) is only known afterwards.
let dispatch = (req, res) => { res.writeHead(503); res.end(); };
const server = http.createServer((req, res) => dispatch(req, res));
server.on('clientError', (err, socket) => {
  if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
});

await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, host, () => { server.off('error', reject); resolve(); });
}).catch((err) => fail(`cannot listen on ${host}:${port}: ${err.message}`));

const actualPort = server.address().port;
const issuer = `http://${net.isIPv6(host) ? `[${host}]` : host}:${actualPort}`;

let provider;
try {
  provider = new Provider(issuer, configuration);
} catch (err) {
  fail(`oidc-provider configuration rejected: ${err.message}`);
}
provider.proxy = false;

// oidc-provider 9 only accepts `extraParams` at the authorization endpoint; unknown token
// endpoint parameters are silently dropped. Re-register the stock refresh_token grant handler
// (public registerGrantType API) so the extra parameters are recognised token request
// parameters (ctx.oidc.params.memberId) of that grant.
{
  const helpers = Object.fromEntries(
    Object.entries(grantHelpers).map(([name, fn]) => [name, fn.bind(undefined, provider)]),
  );
  provider.registerGrantType(
    refreshTokenGrant.grantType,
    refreshTokenGrant.handler.bind(undefined, provider, helpers),
    new Set([...refreshTokenGrant.parameters, ...extraTokenParams]),
  );
}

provider.use(async (ctx, next) => {
  await next();
  if (ctx.method === 'POST' && ctx.oidc?.route === 'token') {
    if (interactive) await addLaunchContext(ctx); // p2p-exchange test addition
    if (ctx.body && typeof ctx.body === 'object') recordIssuedTokens(ctx.body.access_token, ctx.body.refresh_token);
    const rec = recordTokenRequest(ctx);
    maybeDropTokenResponse(ctx, rec); // p2p-exchange test addition
    if (!rec.dropped) await maybeDelayTokenResponse(rec); // p2p-exchange test addition
  }
  else if (!ctx.path.startsWith('/__control')) log(`${ctx.method} ${ctx.path} -> ${ctx.status}`);
});
provider.on('grant.error', (ctx, err) => {
  ctx.state.grantErrorDetail = err.error_detail ?? err.error_description ?? null;
});
provider.on('introspection.error', (ctx, err) => log(`introspection error: ${err.error} ${err.error_description ?? ''}`));
provider.on('revocation.error', (ctx, err) => log(`revocation error: ${err.error} ${err.error_description ?? ''}`));
provider.on('server_error', (ctx, err) => log(`server error: ${err && err.stack}`));

// p2p-exchange test addition (--interactive): the SMART App Launch launch context. A token response
// to an authorization_code grant whose scope has launch/patient names the member's Patient ("patient"),
// as a SMART server's does; oidc-provider has no notion of it. The member's login is their Patient id.
async function addLaunchContext(ctx) {
  const body = ctx.body;
  if (ctx.status !== 200 || !body || typeof body !== 'object' || typeof body.access_token !== 'string') return;
  if ((ctx.oidc.params?.grant_type ?? ctx.oidc.body?.grant_type) !== 'authorization_code') return;
  if (!String(body.scope ?? '').split(' ').includes('launch/patient')) return;
  const at = await provider.AccessToken.find(body.access_token);
  if (at?.accountId) body.patient = at.accountId;
}

const routes = controlRoutes(provider);
const providerCallback = provider.callback();
dispatch = (req, res) => {
  if (req.url === '/__control' || req.url.startsWith('/__control/') || req.url.startsWith('/__control?')) {
    handleControl(routes, req, res).catch((err) => {
      log(`control failure: ${err && err.stack}`);
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  } else {
    providerCallback(req, res);
  }
};

process.stdout.write(`${JSON.stringify({
  ready: true,
  port: actualPort,
  issuer,
  token_endpoint: provider.urlFor('token'),
  introspection_endpoint: provider.urlFor('introspection'),
  revocation_endpoint: provider.urlFor('revocation'),
  well_known: `${issuer}/.well-known/openid-configuration`,
  authorization_endpoint: provider.urlFor('authorization'),
  interactive,
})}\n`);
log(`listening on ${issuer}${interactive ? ' (interactive)' : ''} (client ${clientId}${introspectionClientId ? `, introspection client ${introspectionClientId}` : ''}, access ttl ${accessTtl}s)`);

let stopping = false;
function shutdown(signal) {
  if (stopping) return;
  stopping = true;
  log(`${signal}: shutting down`);
  const timer = setTimeout(() => process.exit(0), 3000);
  timer.unref();
  server.close(() => process.exit(0));
  server.closeIdleConnections();
  setTimeout(() => server.closeAllConnections(), 500).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));

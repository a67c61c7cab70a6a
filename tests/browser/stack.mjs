// The whole member connect flow on one machine, for scripts/demo.sh and tests/browser/connect.test.mjs:
//
//   old payer:  OAuth server (tests/peers/oauth-server.mjs --interactive: oidc-provider's own login and
//               consent pages) + FHIR server (tests/peers/fhir-server.mjs, checks the member's token
//               at the OAuth server) holding a sample member's records (sample-member.mjs)
//   new payer:  p2p-exchange (the built binary) on its own PostgreSQL database, the new payer's FHIR
//               server (fhir-server.mjs) where the member already exists, and the
//               member portal (examples/member-portal/server.mjs) holding the service's API key
//
//   import { startStack } from './stack.mjs';
//   const stack = await startStack({ databaseUrl, serviceBinary, logDir });
//   ... stack.portalUrl, stack.member.login ...
//   await stack.stop();
//
// Options:
//   databaseUrl    libpq URL of a PostgreSQL server whose user may CREATE DATABASE (e.g.
//                  postgresql://postgres@127.0.0.1:5432/postgres): a fresh database p2p_<tag>_<random> is
//                  made for the service and dropped by stop() (needs psql)
//   serviceBinary  the p2p-exchange binary (build/p2p-exchange)
//   logDir         where every process logs: service-<tag>-<random>.log (the service: scripts/check-secrets.sh
//                  searches service-*.log), peer-{oauth,source,target}-<tag>.log, portal-<tag>.log
//   tag            part of the file and database names (default "stack")
//   servicePort, portalPort   0 (default): any free loopback port
//   sourcePageSize            the source's page size (default 10: the sample member's 61 records are 7 pages)
//   sourcePageDelayMs         each page of the member's records is answered this late (default 0), so that
//                             a person can watch the progress bar fill
//   recordSecrets             write the stack's own secrets (API key, token key, client secrets) to
//                             <logDir>/secrets-<tag>-<pid>.txt for scripts/check-secrets.sh (default false)
//
// Every process listens on 127.0.0.1 only. The secrets are made fresh for each stack.

import { spawn, execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { sampleMemberResources, countByType } from './sample-member.mjs';

const execFileAsync = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const peersDir = path.join(root, 'tests/peers');

export const PAYER_NAME = 'Evergreen Health Plan';
export const PLAN_NAME = 'Harbor Health Plan';
export const MEMBER = Object.freeze({
  name: 'Jane Doe',
  login: 'jane-doe', // at the old payer; also her Patient id there
  targetPatientId: 'hhp-100234', // her Patient id at the new payer
});
const SOURCE_ORGANIZATION_ID = 'EVERGREEN';
const TARGET_ORGANIZATION_ID = 'HARBOR';

export async function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function waitFor(what, check, timeoutMs, intervalMs = 100) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      if (await check()) return;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`${what} within ${timeoutMs / 1000} s${last ? ` (${last.message})` : ''}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

function tail(file, lines = 30) {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

async function httpJson(method, url, body, headers = {}) {
  const response = await fetch(url, {
    method,
    headers: { Accept: 'application/json', ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}), ...headers },
    body: body === undefined ? undefined : (typeof body === 'string' ? body : JSON.stringify(body)),
    signal: AbortSignal.timeout(30000),
  });
  const text = await response.text();
  let json;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: response.status, headers: response.headers, text, json };
}

/** A child process that prints one JSON line on stdout when ready (the test peers, the portal). */
async function startReadyProcess(name, command, args, { logFile, env, cwd, timeoutMs = 60000 }) {
  const log = fs.openSync(logFile, 'a');
  const child = spawn(command, args, { cwd, env, stdio: ['ignore', 'pipe', log] });
  fs.closeSync(log);
  const lines = readline.createInterface({ input: child.stdout });
  let exited = null;
  const exitPromise = new Promise((resolve) => child.once('exit', (code, signal) => {
    exited = { code, signal };
    resolve(exited);
  }));
  const ready = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} printed no ready line within ${timeoutMs / 1000} s; its log (${logFile}):\n${tail(logFile)}`)), timeoutMs);
    lines.once('line', (line) => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(line));
      } catch {
        reject(new Error(`${name} printed "${line.slice(0, 200)}" instead of its ready line`));
      }
    });
    exitPromise.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${signal ?? `status ${code}`}) before it was ready; its log (${logFile}):\n${tail(logFile)}`));
    });
  });
  lines.on('line', () => {}); // keep stdout drained
  return { name, child, ready, logFile, exited: () => exited, exitPromise };
}

async function stopProcess(proc, timeoutMs = 8000) {
  if (!proc || proc.exited() || proc.child.exitCode !== null) return;
  proc.child.kill('SIGTERM');
  const timer = setTimeout(() => proc.child.kill('SIGKILL'), timeoutMs);
  await proc.exitPromise;
  clearTimeout(timer);
}

async function psql(databaseUrl, sql) {
  await execFileAsync('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', databaseUrl, '-c', sql], { timeout: 60000 });
}

function withDatabase(databaseUrl, name) {
  const url = new URL(databaseUrl);
  url.pathname = `/${name}`;
  return url.href;
}

/** The sample member's records at the old payer, and the member at the new payer. */
async function seed({ oauthIssuer, sourceFhirUrl, targetFhirUrl }) {
  const issued = await httpJson('POST', `${oauthIssuer}/__control/issue`, { sub: 'records-loader', scope: 'patient/*.read' });
  if (issued.status !== 200) throw new Error(`cannot get a token to load the sample records: ${issued.status} ${issued.text}`);
  const token = issued.json.access_token;
  const resources = sampleMemberResources(MEMBER.login);
  for (let i = 0; i < resources.length; i += 40) {
    const entry = resources.slice(i, i + 40).map((resource) => ({
      resource,
      request: { method: 'PUT', url: `${resource.resourceType}/${resource.id}` },
    }));
    const answer = await httpJson('POST', sourceFhirUrl, { resourceType: 'Bundle', type: 'transaction', entry },
      { 'Content-Type': 'application/fhir+json', Authorization: `Bearer ${token}` });
    if (answer.status !== 200) throw new Error(`cannot load the sample records at the old payer: ${answer.status} ${answer.text.slice(0, 500)}`);
  }
  const member = await httpJson('PUT', `${targetFhirUrl}/Patient/${MEMBER.targetPatientId}`, {
    resourceType: 'Patient',
    id: MEMBER.targetPatientId,
    identifier: [{ system: 'urn:example:harbor-health-plan:member-id', value: 'HHP-100234' }],
    name: [{ use: 'official', family: 'Doe', given: ['Jane', 'Marie'] }],
    gender: 'female',
    birthDate: '1979-04-12',
  }, { 'Content-Type': 'application/fhir+json' });
  if (member.status !== 200 && member.status !== 201) {
    throw new Error(`cannot create the member at the new payer's FHIR server: ${member.status} ${member.text.slice(0, 500)}`);
  }
  return countByType(resources);
}

export async function startStack(options) {
  const {
    databaseUrl, serviceBinary, logDir, tag = 'stack', servicePort = 0, portalPort = 0,
    sourcePageSize = 10, sourcePageDelayMs = 0, recordSecrets = false,
  } = options;
  if (!databaseUrl) throw new Error('startStack: databaseUrl is required');
  if (!serviceBinary || !fs.existsSync(serviceBinary)) throw new Error(`startStack: the service binary ${serviceBinary} does not exist: build it (scripts/setup.sh)`);
  if (!fs.existsSync(path.join(peersDir, 'node_modules/oidc-provider'))) {
    throw new Error('startStack: the test peers are not installed: npm ci --prefix tests/peers (scripts/setup.sh does it)');
  }
  fs.mkdirSync(logDir, { recursive: true });
  const random = crypto.randomBytes(4).toString('hex');
  const work = fs.mkdtempSync(path.join(os.tmpdir(), `p2p-${tag}-`));
  const secrets = {
    apiKey: crypto.randomBytes(24).toString('base64url'),
    tokenKey: crypto.randomBytes(32).toString('base64'),
    clientSecret: `client-${crypto.randomBytes(18).toString('base64url')}`,
    introspectionSecret: `introspect-${crypto.randomBytes(18).toString('base64url')}`,
  };
  if (recordSecrets) {
    fs.writeFileSync(path.join(logDir, `secrets-${tag}-${process.pid}-${random}.txt`),
      `${[secrets.apiKey, secrets.tokenKey, secrets.clientSecret, secrets.introspectionSecret].join('\n')}\n`);
  }
  const logs = {
    service: path.join(logDir, `service-${tag}-${random}.log`),
    oauth: path.join(logDir, `peer-oauth-${tag}-${random}.log`),
    source: path.join(logDir, `peer-source-${tag}-${random}.log`),
    target: path.join(logDir, `peer-target-${tag}-${random}.log`),
    portal: path.join(logDir, `portal-${tag}-${random}.log`),
  };
  const processes = [];
  let database = null;
  let stopped = false;

  async function stop() {
    if (stopped) return;
    stopped = true;
    // The portal and the service first (they call the others), then the peers.
    const [portal, service, ...peers] = [...processes].reverse();
    await stopProcess(portal);
    await stopProcess(service, 25000);
    await Promise.all(peers.map((p) => stopProcess(p)));
    if (database) await psql(databaseUrl, `DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`).catch(() => {});
    fs.rmSync(work, { recursive: true, force: true });
  }

  try {
    const [servicePortUsed, portalPortUsed] = await Promise.all([
      servicePort || freePort(), portalPort || freePort(),
    ]);
    const serviceUrl = `http://127.0.0.1:${servicePortUsed}`;
    const portalUrl = `http://127.0.0.1:${portalPortUsed}`;
    const nodeEnv = { ...process.env };

    // The old payer: OAuth server first (the FHIR server checks tokens there).
    const oauth = await startReadyProcess('the OAuth test peer (old payer)', process.execPath, [
      path.join(peersDir, 'oauth-server.mjs'), '--port', '0', '--interactive',
      '--client-id', 'p2p-exchange', '--client-secret', secrets.clientSecret,
      '--introspection-client-id', 'fhir-resource-server', '--introspection-client-secret', secrets.introspectionSecret,
      '--redirect-uri', `${serviceUrl}/oauth/callback`,
    ], { logFile: logs.oauth, env: nodeEnv });
    processes.push(oauth);
    const oauthIssuer = oauth.ready.issuer;
    const [source, target] = await Promise.all([
      startReadyProcess('the source FHIR test peer (old payer)', process.execPath, [
        path.join(peersDir, 'fhir-server.mjs'), '--port', '0', '--page-size', String(sourcePageSize),
        '--introspection-url', oauth.ready.introspection_endpoint,
        '--introspection-client-id', 'fhir-resource-server', '--introspection-client-secret', secrets.introspectionSecret,
      ], { logFile: logs.source, env: nodeEnv }),
      startReadyProcess('the target FHIR test peer (new payer)', process.execPath, [
        path.join(peersDir, 'fhir-server.mjs'), '--port', '0', '--quiet',
      ], { logFile: logs.target, env: nodeEnv }),
    ]);
    processes.push(source, target);
    const sourceFhirUrl = source.ready.base;
    const targetFhirUrl = target.ready.base;
    const expectedCounts = await seed({ oauthIssuer, sourceFhirUrl, targetFhirUrl });
    if (sourcePageDelayMs > 0) {
      const delayed = await httpJson('POST', `${new URL(sourceFhirUrl).origin}/__control/delay`,
        { milliseconds: sourcePageDelayMs, match: '$everything', method: 'GET' });
      if (delayed.status !== 200) throw new Error(`cannot slow the source down: ${delayed.status} ${delayed.text}`);
    }

    // The new payer: p2p-exchange on a fresh database.
    database = `p2p_${tag.replace(/[^a-z0-9_]/gi, '_').toLowerCase()}_${random}`;
    await psql(databaseUrl, `CREATE DATABASE "${database}"`);
    const config = {
      exchange: { pollIntervalMilliseconds: 200, initialBackoffMilliseconds: 100, maxBackoffSeconds: 2, leaseSeconds: 10 },
      connect: { publicBaseUrl: serviceUrl, allowedReturnUrls: [`${portalUrl}/p2p/`] },
      oidcServers: [{
        name: PAYER_NAME,
        issuer: oauthIssuer,
        clientId: 'p2p-exchange',
        clientSecret: secrets.clientSecret,
        authWellKnown: oauth.ready.well_known,
        scopes: 'openid fhirUser offline_access launch/patient patient/*.read',
        fhirEndpoint: sourceFhirUrl,
        tokenEndpoint: oauth.ready.token_endpoint,
        responseType: 'code',
        organizationId: SOURCE_ORGANIZATION_ID,
        notes: 'the demo / browser-test stack: tests/peers',
      }],
    };
    const configFile = path.join(work, 'p2p-exchange.json');
    fs.writeFileSync(configFile, JSON.stringify(config, null, 2), { mode: 0o600 });
    const serviceLog = fs.openSync(logs.service, 'a');
    const serviceChild = spawn(serviceBinary, ['--config', configFile], {
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: process.env.HOME ?? '/tmp',
        P2P_HTTP_HOST: '127.0.0.1',
        P2P_HTTP_PORT: String(servicePortUsed),
        P2P_DATABASE_URL: withDatabase(databaseUrl, database),
        P2P_API_KEYS: secrets.apiKey,
        P2P_TOKEN_ENCRYPTION_KEY: secrets.tokenKey,
        P2P_FHIR_PERSISTENCE_URL: targetFhirUrl,
        P2P_ALLOW_PLAIN_HTTP: 'true',
        P2P_LOG_LEVEL: 'info',
        P2P_SWAGGER_UI_DIR: path.join(peersDir, 'node_modules/swagger-ui-dist'),
      },
      stdio: ['ignore', serviceLog, serviceLog],
    });
    fs.closeSync(serviceLog);
    let serviceExit = null;
    const serviceExitPromise = new Promise((resolve) => serviceChild.once('exit', (code, signal) => {
      serviceExit = { code, signal };
      resolve(serviceExit);
    }));
    const service = { name: 'p2p-exchange', child: serviceChild, logFile: logs.service, exited: () => serviceExit, exitPromise: serviceExitPromise };
    processes.push(service);
    await waitFor('p2p-exchange did not become ready (GET /readyz)', async () => {
      if (serviceExit) {
        throw new Error(`p2p-exchange exited (${serviceExit.signal ?? `status ${serviceExit.code}`}); its log (${logs.service}):\n${tail(logs.service)}`);
      }
      const response = await fetch(`${serviceUrl}/readyz`, { signal: AbortSignal.timeout(2000) });
      return response.status === 200;
    }, 60000, 150).catch((err) => {
      throw new Error(`${err.message}\nlast lines of ${logs.service}:\n${tail(logs.service)}`);
    });
    const servers = await httpJson('GET', `${serviceUrl}/api/oidc_servers`, undefined, { Authorization: `Bearer ${secrets.apiKey}` });
    const pid = servers.json?.servers?.find((s) => s.name === PAYER_NAME)?.pid;
    if (!pid) throw new Error(`GET /api/oidc_servers does not list "${PAYER_NAME}": ${servers.status} ${servers.text.slice(0, 300)}`);

    // The portal.
    const portal = await startReadyProcess('the member portal', process.execPath, [path.join(root, 'examples/member-portal/server.mjs')], {
      logFile: logs.portal,
      env: {
        ...process.env,
        P2P_URL: serviceUrl,
        P2P_API_KEY: secrets.apiKey,
        PORTAL_HOST: '127.0.0.1',
        PORTAL_PORT: String(portalPortUsed),
        PORTAL_PLAN_NAME: PLAN_NAME,
        PORTAL_MEMBER_NAME: MEMBER.name,
        PORTAL_MEMBER_PATIENT_ID: MEMBER.targetPatientId,
        PORTAL_ORGANIZATION_ID: TARGET_ORGANIZATION_ID,
      },
    });
    processes.push(portal);

    return {
      portalUrl: portal.ready.url,
      serviceUrl,
      apiKey: secrets.apiKey,
      pid,
      oauthIssuer,
      sourceFhirUrl,
      targetFhirUrl,
      payerName: PAYER_NAME,
      planName: PLAN_NAME,
      member: MEMBER,
      expectedCounts, // per resource type at the old payer, the member's Patient included
      logs,
      running: () => processes.filter((p) => !p.exited()).map((p) => p.name),
      exited: () => processes.filter((p) => p.exited()).map((p) => `${p.name} (${JSON.stringify(p.exited())})`),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

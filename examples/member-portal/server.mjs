#!/usr/bin/env node
// A small member portal (a demo, no framework): how a new payer's portal brings a member's records over
// from their previous payer with p2p-exchange's connect flow. See README.md in this folder.
//
//   P2P_URL=http://127.0.0.1:8080 P2P_API_KEY=... node examples/member-portal/server.mjs
//
// Environment:
//   P2P_URL                    the p2p-exchange service, as this server reaches it (required)
//   P2P_API_KEY                an API key of the service (required; or P2P_API_KEY_FILE, a file holding it).
//                              It stays in this process: the browser never sees it.
//   PORTAL_HOST, PORTAL_PORT   where to listen (default 127.0.0.1, 8090; port 0 = any free port)
//   PORTAL_PUBLIC_URL          the portal's URL as the member's browser sees it (default http://HOST:PORT);
//                              the service sends the browser back to PORTAL_PUBLIC_URL/p2p/done, which must
//                              be on the service's connect.allowedReturnUrls
//   PORTAL_PLAN_NAME           the new payer's name, shown to the member (default "Harbor Health Plan")
//   PORTAL_MEMBER_NAME         the signed-in member's name (default "Jane Doe"): a real portal has its own
//                              sign-in; this demo has one member
//   PORTAL_MEMBER_PATIENT_ID   that member's Patient id on the new payer's FHIR server (required)
//   PORTAL_ORGANIZATION_ID     the new payer's organization id, sent as targetPayer.organizationId (optional)
//
// When listening it prints one JSON line on stdout, {"ready":true,"url":"http://127.0.0.1:8090"}, and logs
// to stderr (never the API key, and no URL with a query: those carry one-time values).
//
// Routes:
//   GET  /                     the start page (public/index.html)
//   GET  /portal/payers        JSON: the member, the plan and the previous payers (GET /api/oidc_servers)
//   POST /p2p/start            form: pid, consent=yes -> POST /api/oidc_servers/{pid}/authorizations,
//                              then 303 to the old payer's authorizationUrl
//   GET  /p2p/done             where the service sends the browser back (?authorizationId=&completionCode=
//                              or ?authorizationId=&error=). Only for the authorization this browser's
//                              session started: then POST /api/oidc_servers/{pid}/authorizations/{id}/batch_job
//                              with the completionCode makes the batch job (the service makes none before);
//                              a link from anywhere else copies nothing. Then 303 to /p2p/progress
//   GET  /p2p/progress         the progress page (public/progress.html)
//   GET  /portal/status        JSON for the progress page: this session's exchange, polled every second
//   GET  /static/...           CSS and scripts
// The session (a random cookie, HttpOnly, SameSite=Lax) ties the return to the browser that started it;
// the browser never chooses which job it sees.

import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { errorMessage, errorTitle, jobFailureMessage } from './messages.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const publicDir = path.join(here, 'public');
const log = (msg) => process.stderr.write(`[member-portal] ${new Date().toISOString()} ${msg}\n`);

function fail(message) {
  process.stderr.write(`member-portal: ${message}\n`);
  process.exit(2);
}

const env = process.env;
const serviceUrl = (env.P2P_URL ?? '').replace(/\/+$/, '');
if (!/^https?:\/\/[^/]+$/.test(serviceUrl)) fail('set P2P_URL to the p2p-exchange service, e.g. http://127.0.0.1:8080');
let apiKey = env.P2P_API_KEY ?? '';
if (!apiKey && env.P2P_API_KEY_FILE) {
  try {
    apiKey = fs.readFileSync(env.P2P_API_KEY_FILE, 'utf8').trim();
  } catch (err) {
    fail(`cannot read P2P_API_KEY_FILE: ${err.message}`);
  }
}
if (!apiKey) fail('set P2P_API_KEY (or P2P_API_KEY_FILE) to an API key of the service');
const host = env.PORTAL_HOST || '127.0.0.1';
const port = Number(env.PORTAL_PORT ?? '8090');
if (!Number.isInteger(port) || port < 0 || port > 65535) fail('PORTAL_PORT must be a port number');
const planName = env.PORTAL_PLAN_NAME || 'Harbor Health Plan';
const memberName = env.PORTAL_MEMBER_NAME || 'Jane Doe';
const memberPatientId = env.PORTAL_MEMBER_PATIENT_ID ?? '';
if (!/^[A-Za-z0-9\-.]{1,64}$/.test(memberPatientId)) fail('set PORTAL_MEMBER_PATIENT_ID to the member\'s Patient id at the new payer');
const organizationId = env.PORTAL_ORGANIZATION_ID || undefined;

// --- the service's API (server to server, with the API key) --------------------------------------

class ServiceError extends Error {
  constructor(message, status, problem, headers) {
    super(message);
    this.status = status;
    this.problem = problem;
    this.headers = headers;
  }
}

async function api(method, route, body) {
  let response;
  try {
    response = await fetch(`${serviceUrl}${route}`, {
      method,
      headers: {
        Authorization: `Bearer ${apiKey}`,
        Accept: 'application/json',
        ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(15000),
    });
  } catch (err) {
    throw new ServiceError(`${method} ${route}: the service cannot be reached (${err.cause?.code ?? err.message})`, 0);
  }
  const text = await response.text();
  let json;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  if (!response.ok) {
    const detail = json?.detail ?? text.slice(0, 300);
    throw new ServiceError(`${method} ${route} -> ${response.status}: ${detail}`, response.status, json, response.headers);
  }
  return json;
}

let payersCache = { at: 0, servers: [] };
async function payers() {
  if (Date.now() - payersCache.at < 30000) return payersCache.servers;
  const answer = await api('GET', '/api/oidc_servers');
  const servers = Array.isArray(answer?.servers) ? answer.servers.filter((s) => Number.isInteger(s.pid) && typeof s.name === 'string') : [];
  payersCache = { at: Date.now(), servers };
  return servers;
}

async function payerName(pid) {
  const match = (await payers().catch(() => [])).find((s) => s.pid === pid);
  return match?.name ?? 'your previous health plan';
}

// --- sessions (in memory: a demo) ------------------------------------------------------------------

const SESSION_COOKIE = 'member_portal_sid';
const sessions = new Map(); // id -> {created, connect: {...}}
const SESSION_TTL_MS = 8 * 3600 * 1000;

function session(req, res) {
  const cookies = Object.fromEntries(String(req.headers.cookie ?? '').split(';').map((c) => {
    const i = c.indexOf('=');
    return i === -1 ? [c.trim(), ''] : [c.slice(0, i).trim(), c.slice(i + 1).trim()];
  }));
  const id = cookies[SESSION_COOKIE];
  if (id && sessions.has(id)) return sessions.get(id);
  const fresh = crypto.randomBytes(24).toString('base64url');
  const value = { id: fresh, created: Date.now(), connect: null };
  sessions.set(fresh, value);
  res.setHeader('Set-Cookie', `${SESSION_COOKIE}=${fresh}; Path=/; HttpOnly; SameSite=Lax`);
  for (const [key, s] of sessions) if (Date.now() - s.created > SESSION_TTL_MS) sessions.delete(key);
  return value;
}

// --- HTTP helpers ------------------------------------------------------------------------------------

const SECURITY_HEADERS = {
  'Content-Security-Policy': "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
};

function send(res, status, type, body, headers = {}) {
  res.writeHead(status, { ...SECURITY_HEADERS, 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), ...headers });
  res.end(body);
}
const sendJson = (res, status, value) => send(res, status, 'application/json; charset=utf-8', JSON.stringify(value), { 'Cache-Control': 'no-store' });
const redirect = (res, location) => {
  res.writeHead(303, { ...SECURITY_HEADERS, Location: location, 'Cache-Control': 'no-store', 'Content-Length': 0 });
  res.end();
};

const STATIC = {
  '/': ['index.html', 'text/html; charset=utf-8'],
  '/p2p/progress': ['progress.html', 'text/html; charset=utf-8'],
  '/static/portal.css': ['portal.css', 'text/css; charset=utf-8'],
  '/static/start.js': ['start.js', 'text/javascript; charset=utf-8'],
  '/static/progress.js': ['progress.js', 'text/javascript; charset=utf-8'],
};

function serveStatic(res, name, type) {
  const body = fs.readFileSync(path.join(publicDir, name));
  res.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': type, 'Content-Length': body.length, 'Cache-Control': 'no-cache' });
  res.end(body);
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 16 * 1024) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// --- routes ------------------------------------------------------------------------------------------

async function startConnect(req, res, s) {
  const form = await readForm(req);
  const pid = Number(form.get('pid'));
  if (!Number.isInteger(pid) || pid <= 0) return redirect(res, '/?problem=choose-payer');
  if (form.get('consent') !== 'yes') return redirect(res, `/?problem=consent&pid=${pid}`);
  let answer;
  try {
    answer = await api('POST', `/api/oidc_servers/${pid}/authorizations`, {
      targetPayer: { patientId: memberPatientId, ...(organizationId ? { organizationId } : {}) },
      returnUrl: `${publicUrl}/p2p/done`,
    });
  } catch (err) {
    log(`start: ${err.message}`);
    s.connect = { pid, payer: await payerName(pid), error: 'start_failed', startedAt: Date.now() };
    return redirect(res, '/p2p/progress');
  }
  if (typeof answer?.authorizationId !== 'string' || typeof answer?.authorizationUrl !== 'string' ||
      !/^https?:\/\//.test(answer.authorizationUrl)) {
    log('start: the service answered without authorizationId / an http(s) authorizationUrl');
    s.connect = { pid, payer: await payerName(pid), error: 'start_failed', startedAt: Date.now() };
    return redirect(res, '/p2p/progress');
  }
  s.connect = { pid, payer: await payerName(pid), authorizationId: answer.authorizationId, startedAt: Date.now() };
  log(`start: authorization ${answer.authorizationId} at payer ${pid}; sending the member to the payer's sign-in`);
  return redirect(res, answer.authorizationUrl);
}

// The service's record of an authorization (GET .../authorizations/{id}), or null when it cannot be read.
async function authorizationRecord(pid, authorizationId) {
  try {
    return await api('GET', `/api/oidc_servers/${pid}/authorizations/${encodeURIComponent(authorizationId)}`);
  } catch (err) {
    log(`done: ${err.message}`);
    return null;
  }
}

// The error code an authorization that ended without a job of its own stands for.
function recordError(record) {
  if (!record) return null;
  if (record.error) return record.error;
  if (record.status === 'expired') return 'expired';
  return null;
}

const COMPLETION_CODE = /^[0-9a-fA-F]{64}$/;

async function connectDone(url, res, s) {
  const authorizationId = url.searchParams.get('authorizationId');
  const c = s.connect;
  if (!c?.authorizationId || authorizationId !== c.authorizationId) {
    // Not the authorization this browser started: another browser, an old link, or a sign-in link someone
    // forwarded (their portal session started it, and the member signed in with it). Copying now would put
    // the signed-in member's records where the link's starter wants them: nothing is sent to the service.
    log('done: an authorizationId that is not this session\'s; nothing asked of the service');
    // (No payer named: the link may be for any.)
    s.connect = { payer: null, error: 'not_started_here', startedAt: Date.now() };
    return redirect(res, '/p2p/progress');
  }
  const finish = (error, batchJobId = null) => {
    c.error = error;
    c.batchJobId = Number.isInteger(batchJobId) && batchJobId > 0 ? batchJobId : null;
    log(`done: authorization ${authorizationId}: ${c.error ?? 'ok'}${c.batchJobId ? `, job ${c.batchJobId}` : ''}`);
    return redirect(res, '/p2p/progress');
  };
  if (c.batchJobId && !c.error) return finish(null, c.batchJobId); // this page again (reload, back button)

  if (url.searchParams.has('error')) {
    // The sign-in did not work out. The query says why; the service's record of the authorization counts.
    const record = await authorizationRecord(c.pid, authorizationId);
    const error = record ? recordError(record) : url.searchParams.get('error');
    return finish(error ?? (record?.status === 'pending' ? 'still_pending' : 'server_error'));
  }

  // The member signed in: this session's back end completes the authorization and so makes the job.
  // (The completion code is a credential: it goes to the service in a request body and nowhere else.)
  const completionCode = url.searchParams.get('completionCode') ?? '';
  if (!COMPLETION_CODE.test(completionCode)) {
    log('done: no completion code (or not a well-formed one) in the link back; nothing asked of the service');
    return finish('link_incomplete');
  }
  let job;
  try {
    job = await api('POST', `/api/oidc_servers/${c.pid}/authorizations/${encodeURIComponent(authorizationId)}/batch_job`,
      { completionCode });
  } catch (err) {
    log(`done: ${err.message}`);
    if (err.status === 409) {
      // The code no longer completes it (used, expired, not waiting for one), or the member already has an
      // exchange running: the service's record of the authorization says which.
      const record = await authorizationRecord(c.pid, authorizationId);
      const error = recordError(record);
      if (error === 'exchange_in_progress' && Number.isInteger(record.batchJobId)) return finish(error, record.batchJobId);
      if (error === 'exchange_in_progress') return finish(error);
      if (record?.status === 'completed' && Number.isInteger(record.batchJobId)) return finish(null, record.batchJobId);
      return finish(error && error !== 'server_error' ? error : 'completion_refused');
    }
    if (err.status === 404) return finish('completion_refused');
    return finish('job_not_created'); // 400 (the portal's own mistake), 5xx, or the service cannot be reached
  }
  if (!Number.isInteger(job?.batchJobId)) {
    log('done: the service answered the completion without a batchJobId');
    return finish('job_not_created');
  }
  return finish(null, job.batchJobId);
}

async function status(res, s) {
  const c = s.connect;
  if (!c) return sendJson(res, 200, { state: 'none', plan: planName, message: 'Nothing is being copied right now.' });
  const base = { payer: c.payer, plan: planName };
  // exchange_in_progress comes with the job that already runs: show that job.
  if (c.error && !(c.error === 'exchange_in_progress' && c.batchJobId)) {
    return sendJson(res, 200, {
      ...base, state: 'failed', error: c.error, title: errorTitle(c.error), message: errorMessage(c.error, c.payer, planName),
    });
  }
  if (!c.batchJobId) return sendJson(res, 200, { ...base, state: 'waiting', message: `Waiting for ${c.payer}…` });
  let job;
  try {
    job = await api('GET', `/api/oidc_servers/${c.pid}/batch_job/${c.batchJobId}`);
  } catch (err) {
    log(`status: ${err.message}`);
    return sendJson(res, 200, { ...base, state: 'running', stale: true, message: 'Checking on your records… (the service did not answer; trying again)' });
  }
  const written = Number.isInteger(job.resourcesWritten) ? job.resourcesWritten : 0;
  const total = Number.isFinite(job.resourcesTotal) ? job.resourcesTotal : null;
  let percent = Number.isFinite(job.percentComplete) ? Math.max(0, Math.min(100, Math.round(job.percentComplete))) : null;
  const note = c.error === 'exchange_in_progress' ? `A copy from ${c.payer} was already under way, so you are seeing that one. ` : '';
  switch (job.batchStatus) {
    case 'COMPLETED':
      return sendJson(res, 200, {
        ...base, state: 'completed', percent: 100, written, total,
        message: `${written} record${written === 1 ? '' : 's'} arrived from ${c.payer}.`,
      });
    case 'FAILED':
      return sendJson(res, 200, {
        ...base, state: 'failed', percent, written, total, error: 'job_failed', title: written > 0 ? 'Copying stopped' : 'Nothing was copied',
        message: jobFailureMessage(job.lastError, written, c.payer, planName),
      });
    case 'STOPPED':
    case 'ABANDONED':
      return sendJson(res, 200, {
        ...base, state: 'failed', percent, written, total, error: 'job_stopped', title: 'Copying was stopped',
        message: `The copy from ${c.payer} was stopped before it finished. ${written} record${written === 1 ? '' : 's'} arrived. You can start again.`,
      });
    default:
      if (percent === 100) percent = 99; // not done until the job says so
      return sendJson(res, 200, {
        ...base, state: 'running', percent, written, total,
        message: `${note}Copying your records from ${c.payer}. This page updates by itself.`,
      });
  }
}

async function portalPayers(res) {
  try {
    return sendJson(res, 200, { plan: planName, member: memberName, payers: await payers() });
  } catch (err) {
    log(`payers: ${err.message}`);
    return sendJson(res, 503, { plan: planName, member: memberName, payers: [], problem: 'The list of health plans cannot be loaded right now. Please try again in a minute.' });
  }
}

async function handle(req, res) {
  const url = new URL(req.url, 'http://portal.invalid');
  const route = `${req.method} ${url.pathname}`;
  if (req.method === 'GET' && STATIC[url.pathname]) {
    if (url.pathname === '/' || url.pathname === '/p2p/progress') session(req, res);
    const [name, type] = STATIC[url.pathname];
    return serveStatic(res, name, type);
  }
  switch (route) {
    case 'GET /portal/payers': return portalPayers(res);
    case 'POST /p2p/start': return startConnect(req, res, session(req, res));
    case 'GET /p2p/done': return connectDone(url, res, session(req, res));
    case 'GET /portal/status': return status(res, session(req, res));
    case 'GET /healthz': return sendJson(res, 200, { status: 'ok' });
    default:
      return send(res, 404, 'text/plain; charset=utf-8', 'Not found\n');
  }
}

const server = http.createServer((req, res) => {
  const started = Date.now();
  res.on('finish', () => log(`${req.method} ${req.url.split('?')[0]} -> ${res.statusCode} (${Date.now() - started} ms)`));
  handle(req, res).catch((err) => {
    log(`error on ${req.method} ${req.url.split('?')[0]}: ${err.stack}`);
    if (!res.headersSent) send(res, 500, 'text/plain; charset=utf-8', 'Something went wrong on our side. Please try again.\n');
    else res.end();
  });
});

let publicUrl;
server.listen(port, host, () => {
  const actual = server.address().port;
  publicUrl = (env.PORTAL_PUBLIC_URL || `http://${host}:${actual}`).replace(/\/+$/, '');
  process.stdout.write(`${JSON.stringify({ ready: true, url: publicUrl })}\n`);
  log(`listening on ${publicUrl} (service ${serviceUrl}, plan "${planName}", member ${memberPatientId})`);
});
server.on('error', (err) => fail(`cannot listen on ${host}:${port}: ${err.message}`));

function shutdown() {
  server.close(() => process.exit(0));
  server.closeIdleConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

#!/usr/bin/env node
// p2p-exchange test addition: standalone check of the hostile test controls of the test peers.
//
//   node tests/peers/check-hostile-modes.mjs
//
// Starts fhir-server.mjs twice (--base /fhir and --base /, page size 2) and oauth-server.mjs as
// child processes on 127.0.0.1 port 0, exercises every /__control mode with fetch (plant,
// loop-next, misbehave, outage, reset; drop-next-token-response, token-stats, reset), asserts the
// results, stops the children and exits 0 (all passed) or 1. Bounded: gives up after 28 s.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const dir = path.dirname(fileURLToPath(import.meta.url));
const children = [];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let step = 'start';
const say = (msg) => process.stdout.write(`check-hostile-modes: ${msg}\n`);

// --- children ----------------------------------------------------------------------------------

function start(script, args) {
  const child = spawn(process.execPath, [path.join(dir, script), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const entry = { script, child, stderr: '' };
  children.push(entry);
  child.stderr.on('data', (d) => {
    entry.stderr = (entry.stderr + d).slice(-8000);
  });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl >= 0) {
        try {
          resolve(JSON.parse(out.slice(0, nl)));
        } catch (err) {
          reject(new Error(`${script}: bad ready line ${out.slice(0, nl)}`));
        }
      }
    });
    child.on('exit', (code) => reject(new Error(`${script} exited early (${code}): ${entry.stderr}`)));
  });
}

async function stopChildren() {
  await Promise.all(
    children.map(
      ({ child }) =>
        new Promise((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) {
            return resolve();
          }
          const t = setTimeout(() => child.kill('SIGKILL'), 3000);
          child.once('exit', () => {
            clearTimeout(t);
            resolve();
          });
          child.kill('SIGTERM');
        })
    )
  );
}
process.on('exit', () => children.forEach(({ child }) => child.exitCode === null && child.kill('SIGKILL')));

// --- HTTP helpers ------------------------------------------------------------------------------

async function call(url, { method = 'GET', body, headers = {}, form = false } = {}) {
  const init = { method, headers: { ...headers }, signal: AbortSignal.timeout(5000) };
  if (body !== undefined) {
    init.headers['content-type'] = form ? 'application/x-www-form-urlencoded' : 'application/fhir+json';
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
  }
  const res = await fetch(url, init);
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

const ids = (bundle) => (bundle.entry ?? []).map((e) => `${e.resource.resourceType}/${e.resource.id}`);
const link = (bundle, rel) => bundle.link?.find((l) => l.relation === rel)?.url;

function refused(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.setTimeout(1000);
    s.on('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.on('timeout', () => {
      s.destroy();
      resolve(false);
    });
    s.on('error', (err) => resolve(err.code === 'ECONNREFUSED'));
  });
}

// --- FHIR server -------------------------------------------------------------------------------

function transaction(entries) {
  return { resourceType: 'Bundle', type: 'transaction', entry: entries };
}
const put = (resource) => ({ resource, request: { method: 'PUT', url: `${resource.resourceType}/${resource.id}` } });
const obs = (id) => ({
  resourceType: 'Observation',
  id,
  status: 'final',
  code: { text: id },
  subject: { reference: 'Patient/p1' },
});

async function checkFhir(ready, label) {
  const base = ready.base; // http://127.0.0.1:N/fhir or http://127.0.0.1:N
  const origin = new URL(base).origin;
  const ctl = (name, body) => call(`${origin}/__control/${name}`, { method: 'POST', body: body ?? {} });
  const txUrls = [base, `${base}/`]; // POST {base} and POST {base}/ (for --base /: origin and origin/)
  assert.ok(!base.endsWith('/'), 'base from the ready line has no trailing slash');

  const seed = async () => {
    step = `${label}: reset + seed`;
    assert.equal((await ctl('reset')).status, 200);
    const r = await call(txUrls[1], {
      method: 'POST',
      body: transaction([
        put({ resourceType: 'Patient', id: 'p1' }),
        put(obs('o1')),
        put(obs('o2')),
        put(obs('o3')),
        put({ resourceType: 'Organization', id: 'org1', name: 'x' }),
      ]),
    });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.type, 'transaction-response');
    assert.match(r.json.entry[1].response.location, /^Observation\/o1\/_history\/[^/]+$/);
  };
  await seed();

  step = `${label}: paging, Location, $everything`;
  const created = await call(`${base}/Patient`, { method: 'POST', body: { resourceType: 'Patient' } });
  assert.equal(created.status, 201, created.text);
  assert.match(created.headers.get('location'), new RegExp(`^${base.replace(/[.]/g, '\\.')}/Patient/[^/]+/_history/[^/]+$`));
  const ev1 = (await call(`${base}/Patient/p1/$everything`)).json;
  assert.equal(ev1.total, 4);
  assert.deepEqual(ids(ev1).length, 2);
  assert.equal(ids(ev1)[0], 'Patient/p1');
  assert.equal(ev1.entry[0].fullUrl, `${base}/Patient/p1`);
  assert.equal(link(ev1, 'self'), `${base}/Patient/p1/$everything`);
  assert.equal(link(ev1, 'next'), `${base}/Patient/p1/$everything?_count=2&_offset=2`);
  const ev2 = (await call(link(ev1, 'next'))).json;
  assert.equal(ids(ev2).length, 2);
  assert.equal(link(ev2, 'next'), undefined);
  const tx0 = await call(txUrls[0], { method: 'POST', body: transaction([put({ resourceType: 'Patient', id: 'p9' })]) });
  assert.equal(tx0.json?.type, 'transaction-response', `POST ${txUrls[0]}: ${tx0.text}`);

  step = `${label}: plant`;
  const planted = { ...obs('planted-1') };
  let r = await ctl('plant', { resources: [planted], match: '/$everything', page: 2 });
  assert.equal(r.status, 200, r.text);
  r = await ctl('plant', { resources: [{ resourceType: 'Condition', id: 'planted-2', subject: { reference: 'Patient/p1' } }], match: 'Observation' });
  assert.equal(r.status, 200, r.text);
  assert.equal((await ctl('plant', { resources: [] })).status, 400);
  let b = (await call(`${base}/Patient/p1/$everything`)).json;
  assert.equal(ids(b).length, 2, 'page 1 of $everything gets nothing');
  b = (await call(`${base}/Patient/p1/$everything?_count=2&_offset=2`)).json;
  assert.deepEqual(ids(b).slice(2), ['Observation/planted-1']);
  assert.equal(b.total, 4);
  assert.deepEqual(b.entry[2], { fullUrl: `${base}/Observation/planted-1`, resource: planted, search: { mode: 'match' } });
  b = (await call(`${base}/Patient/p1/%24everything?_offset=2&_count=2`)).json;
  assert.deepEqual(ids(b).slice(2), ['Observation/planted-1'], 'percent-encoded $ matches too');
  assert.equal((await call(`${base}/Observation/planted-1`)).status, 404, 'planted resources are not stored');
  b = (await call(`${base}/Observation`)).json;
  assert.deepEqual(ids(b), ['Observation/o1', 'Observation/o2', 'Condition/planted-2']);
  assert.equal(b.entry[2].fullUrl, `${base}/Condition/planted-2`);
  b = (await call(link(b, 'next'))).json;
  assert.deepEqual(ids(b), ['Observation/o3'], 'page 2 of the Observation search gets nothing');

  step = `${label}: loop-next`;
  r = await ctl('loop-next', { match: '/$everything', onPage: 2, toPage: 1 });
  assert.equal(r.status, 200, r.text);
  r = await ctl('loop-next', { match: 'Observation', onPage: 1, toPage: 1 });
  assert.equal(r.status, 200, r.text);
  assert.equal((await ctl('loop-next', { onPage: 0, toPage: 1 })).status, 400);
  b = (await call(`${base}/Patient/p1/$everything`)).json;
  assert.equal(link(b, 'next'), `${base}/Patient/p1/$everything?_count=2&_offset=2`, 'page 1 untouched');
  b = (await call(link(b, 'next'))).json;
  assert.equal(link(b, 'next'), `${base}/Patient/p1/$everything?_count=2&_offset=0`, 'last page loops back to page 1');
  b = (await call(link(b, 'next'))).json;
  assert.equal(ids(b)[0], 'Patient/p1');
  b = (await call(`${base}/Observation?_count=2`)).json;
  assert.equal(link(b, 'next'), `${base}/Observation?_count=2&_offset=0`, 'next points at the page itself');
  const again = (await call(link(b, 'next'))).json;
  assert.deepEqual(ids(again), ids(b));
  assert.equal(link(again, 'next'), link(b, 'next'), 'the loop persists');

  step = `${label}: misbehave`;
  const newTx = (n) =>
    transaction([
      put({ resourceType: 'Patient', id: `m${n}` }),
      { resource: obs(undefined), request: { method: 'POST', url: 'Observation' } },
      put(obs(`mo${n}`)),
      { resource: { resourceType: 'Patient' }, request: { method: 'POST', url: 'Patient', ifNoneExist: 'identifier=a|b' } },
      { resource: { resourceType: 'Patient' }, request: { method: 'POST', url: 'Patient' } },
    ]);
  assert.equal((await ctl('misbehave', { mode: 'nope' })).status, 400);
  for (const [i, mode] of ['html200', 'accepted202', 'batch-errors', 'short-response', 'wrong-type'].entries()) {
    assert.equal((await ctl('misbehave', { mode })).status, 200);
    r = await call(txUrls[i % 2], { method: 'POST', body: newTx(i) });
    assert.equal((await call(`${base}/Patient/m${i}`)).status, 404, `${mode}: nothing stored`);
    const ct = r.headers.get('content-type') ?? '';
    switch (mode) {
      case 'html200':
        assert.equal(r.status, 200);
        assert.equal(ct, 'text/html; charset=utf-8');
        assert.match(r.text, /<form[^>]*>[\s\S]*type="password"/);
        break;
      case 'accepted202':
        assert.equal(r.status, 202);
        assert.equal(r.text, '');
        break;
      case 'batch-errors':
        assert.equal(r.status, 200);
        assert.match(ct, /^application\/fhir\+json/);
        assert.equal(r.json.type, 'batch-response');
        assert.equal(r.json.entry.length, 5);
        for (const e of r.json.entry) {
          assert.equal(e.response.status, '400 Bad Request');
          assert.deepEqual(e.response.outcome.issue, [
            { severity: 'error', code: 'invalid', diagnostics: 'planted per-entry error' },
          ]);
        }
        break;
      case 'short-response':
        assert.equal(r.status, 200);
        assert.equal(r.json.type, 'transaction-response');
        assert.equal(r.json.entry.length, 2, 'floor(5/2) entries');
        assert.ok(r.json.entry.every((e) => e.response.status === '201 Created'));
        assert.equal(r.json.entry[0].response.location, `Patient/m${i}/_history/1`);
        assert.match(r.json.entry[1].response.location, /^Observation\/[0-9a-f-]{36}\/_history\/1$/);
        break;
      case 'wrong-type':
        assert.equal(r.status, 200);
        assert.equal(r.json.resourceType, 'OperationOutcome');
        assert.deepEqual(r.json.issue, [{ severity: 'information', code: 'informational', diagnostics: 'all ok' }]);
        break;
    }
  }
  // count, match, GET never affected, first matching rule wins, then back to normal
  await ctl('misbehave', { mode: 'html200', match: '/NoSuchType/' });
  await ctl('misbehave', { mode: 'accepted202', count: 2, match: '/Patient/' });
  assert.equal((await call(`${base}/Patient/p1`)).status, 200, 'GET is not affected');
  r = await call(txUrls[0], { method: 'POST', body: transaction([put({ resourceType: 'Patient', id: 'q0' })]) });
  assert.equal(r.json?.type, 'transaction-response', 'a non-matching POST is processed');
  assert.equal((await call(`${base}/Patient/q1`, { method: 'PUT', body: { resourceType: 'Patient', id: 'q1' } })).status, 202);
  assert.equal((await call(`${base}/Patient/q2`, { method: 'PUT', body: { resourceType: 'Patient', id: 'q2' } })).status, 202);
  r = await call(`${base}/Patient/q3`, { method: 'PUT', body: { resourceType: 'Patient', id: 'q3' } });
  assert.ok([200, 201].includes(r.status) && r.json.resourceType === 'Patient', 'count exhausted: processed again');
  assert.equal((await call(`${base}/Patient/q1`)).status, 404);
  const log = (await call(`${origin}/__control/requests`)).json;
  assert.equal(log.find((e) => e.method === 'PUT' && e.path.endsWith('/Patient/q1'))?.status, 202);

  step = `${label}: reset clears every rule`;
  await ctl('misbehave', { mode: 'wrong-type', count: 5 });
  await seed();
  b = (await call(`${base}/Patient/p1/$everything?_count=2&_offset=2`)).json;
  assert.equal(ids(b).length, 2, 'no planted entries after reset');
  assert.equal(link(b, 'next'), undefined, 'no loop after reset');
  b = (await call(`${base}/Observation?_count=2`)).json;
  assert.equal(link(b, 'next'), `${base}/Observation?_count=2&_offset=2`);
  r = await call(txUrls[0], { method: 'POST', body: transaction([put({ resourceType: 'Patient', id: 'r1' })]) });
  assert.equal(r.json?.type, 'transaction-response', 'no misbehaving after reset');
}

async function checkOutage(ready, label, seconds) {
  step = `${label}: outage ${seconds} s`;
  const base = ready.base;
  const origin = new URL(base).origin;
  // a keep-alive connection that exists before the outage must be dropped by it
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const kept = await new Promise((resolve, reject) => {
    const rq = http.get(`${base}/metadata`, { agent, timeout: 5000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.socket ?? rq.socket));
    });
    rq.on('error', reject);
  });
  let keptClosed = false;
  kept.on('close', () => {
    keptClosed = true;
  });
  kept.on('error', () => undefined);
  // and so must a connection in the middle of a request (headers sent, body incomplete)
  const busy = net.connect(ready.port, '127.0.0.1');
  await new Promise((resolve, reject) => busy.once('connect', resolve).once('error', reject));
  let busyClosed = false;
  busy.on('close', () => {
    busyClosed = true;
  });
  busy.on('error', () => undefined);
  busy.write(`POST ${new URL(base).pathname.replace(/\/$/, '')}/Patient HTTP/1.1\r\nHost: 127.0.0.1\r\n`
    + 'Content-Type: application/fhir+json\r\nContent-Length: 100\r\n\r\n{');
  await sleep(50);
  const r = await call(`${origin}/__control/outage`, { method: 'POST', body: { seconds } });
  const t0 = Date.now();
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, { ok: true, seconds });
  await sleep(100);
  assert.ok(await refused(ready.port), 'connections are refused during the outage');
  assert.ok(keptClosed, 'the keep-alive connection was closed');
  assert.ok(busyClosed, 'the connection with a request in progress was closed');
  await assert.rejects(call(`${base}/metadata`), 'fetch fails during the outage');
  let up = null;
  while (Date.now() - t0 < seconds * 1000 + 3000) {
    try {
      if ((await call(`${base}/metadata`)).status === 200) {
        up = Date.now();
        break;
      }
    } catch {
      // still down
    }
    await sleep(50);
  }
  assert.ok(up, 'listening again after the outage');
  assert.ok(up - t0 >= seconds * 1000 - 150, `down for ${up - t0} ms, expected about ${seconds * 1000}`);
  assert.equal((await call(`${origin}/__control/requests`)).status, 200, '/__control is back too');
  agent.destroy();
}

// --- OAuth server ------------------------------------------------------------------------------

async function checkOauth(ready) {
  const ctl = (name, body) => call(`${ready.issuer}/__control/${name}`, { method: 'POST', body: body ?? {} });
  const stats = async () => (await call(`${ready.issuer}/__control/token-stats`)).json;
  const basic = `Basic ${Buffer.from('c1:s1').toString('base64')}`;
  const refresh = (rt) =>
    call(ready.token_endpoint, {
      method: 'POST',
      form: true,
      headers: { authorization: basic },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: rt }).toString(),
    });
  const issue = async () => (await ctl('issue', { sub: 'member-1' })).json.refresh_token;

  step = 'oauth: drop-next-token-response';
  const r0 = await issue();
  assert.ok(r0);
  let r = await ctl('drop-next-token-response', { count: 1, grant: 'refresh_token' });
  assert.equal(r.status, 200, r.text);
  assert.equal((await ctl('drop-next-token-response', { count: 0 })).status, 400);
  const err = await refresh(r0).then(
    (res) => assert.fail(`expected no response, got ${res.status}`),
    (e) => e
  );
  assert.notEqual(err.name, 'TimeoutError', 'the connection is closed, not left hanging');
  r = await refresh(r0);
  assert.equal(r.status, 400, r.text);
  assert.equal(r.json.error, 'invalid_grant', 'the dropped request consumed (rotated) the refresh token');
  let s = await stats();
  assert.deepEqual(s, {
    requests: 2,
    byGrantType: { refresh_token: 2 },
    errorsByGrantType: { refresh_token: { invalid_grant: 1 } },
    refreshTokenReused: 1,
    dropped: 1,
    droppedByGrantType: { refresh_token: 1 },
    pendingDrops: [],
  });
  const log = (await call(`${ready.issuer}/__control/token-requests`)).json;
  assert.equal(log[0].dropped, true);
  assert.equal(log[0].status, 200);
  assert.equal(log[1].error_detail, 'refresh token already used');

  step = 'oauth: grant filter, count';
  await ctl('drop-next-token-response', { grant: 'authorization_code' });
  r = await refresh(await issue());
  assert.equal(r.status, 200, 'another grant type is not dropped');
  assert.ok(r.json.refresh_token);
  await ctl('drop-next-token-response', { count: 2 });
  s = await stats();
  assert.deepEqual(s.pendingDrops, [
    { grant: 'authorization_code', remaining: 1 },
    { grant: null, remaining: 2 },
  ]);
  const r3 = await issue();
  await assert.rejects(refresh(r3));
  await assert.rejects(refresh(r3));
  r = await refresh(r3);
  assert.equal(r.status, 400);
  s = await stats();
  assert.equal(s.dropped, 3);
  assert.equal(s.byGrantType.refresh_token, 6);

  step = 'oauth: reset';
  await ctl('drop-next-token-response', { count: 5 });
  assert.equal((await ctl('reset')).status, 200);
  s = await stats();
  assert.equal(s.requests, 0);
  assert.deepEqual(s.pendingDrops, []);
  r = await refresh(await issue());
  assert.equal(r.status, 200, 'no drop rule after reset');
  assert.equal((await call(`${ready.issuer}/__control/token-requests`)).json.length, 1);
}

// --- main --------------------------------------------------------------------------------------

const timer = setTimeout(async () => {
  say(`FAIL: timed out (28 s) at step "${step}"`);
  await stopChildren();
  process.exit(1);
}, 28000);

let ok = false;
try {
  const [fhir, fhirRoot, oauth] = await Promise.all([
    start('fhir-server.mjs', ['--port', '0', '--base', '/fhir', '--page-size', '2']),
    start('fhir-server.mjs', ['--port', '0', '--base', '/', '--page-size', '2']),
    start('oauth-server.mjs', ['--port', '0', '--client-id', 'c1', '--client-secret', 's1']),
  ]);
  assert.equal(new URL(fhirRoot.base).pathname, '/');
  await checkFhir(fhir, 'fhir --base /fhir');
  await checkFhir(fhirRoot, 'fhir --base /');
  await checkOutage(fhir, 'fhir --base /fhir', 1);
  await checkOutage(fhir, 'fhir --base /fhir (again)', 0.5);
  await checkOutage(fhirRoot, 'fhir --base /', 0.5);
  await checkFhir(fhir, 'fhir --base /fhir (after outages)');
  await checkOauth(oauth);
  ok = true;
} catch (err) {
  say(`FAIL at step "${step}": ${err?.stack ?? err}`);
  for (const { script, stderr } of children) {
    process.stderr.write(`--- ${script} stderr (tail) ---\n${stderr.slice(-3000)}\n`);
  }
}
clearTimeout(timer);
await stopChildren();
say(ok ? 'all hostile modes OK' : 'FAILED');
process.exit(ok ? 0 : 1);

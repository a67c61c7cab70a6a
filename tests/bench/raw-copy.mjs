#!/usr/bin/env node
// The raw copy baseline of scripts/bench-fast.sh: the least any exchange must do to move a member's
// pages from a source FHIR server to a target one, one page at a time over keep-alive connections:
// GET a page, JSON.parse it, wrap its resources as a transaction Bundle of PUTs (request.url
// Type/id, resources unchanged), JSON.stringify it, POST it to the target, check that the answer is
// a transaction-response with one 2xx entry per entry sent (the service must check that too), then
// follow the page's `next` link. No ids, references, traceability or Provenance.
//
// usage: node tests/bench/raw-copy.mjs FIRST_PAGE_URL TARGET_BASE
// Prints one JSON line: {"pages":..,"resources":..,"seconds":..,"cpuSeconds":..,"bytesIn":..,"bytesOut":..}

import http from 'node:http';

const [first, target] = process.argv.slice(2);
if (!first || !target || process.argv.length !== 4) {
  process.stderr.write('usage: node tests/bench/raw-copy.mjs FIRST_PAGE_URL TARGET_BASE\n');
  process.exit(2);
}
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function request(url, method, headers, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent }, (res) => {
      const chunks = [];
      let size = 0;
      res.on('data', (c) => {
        chunks.push(c);
        size += c.length;
      });
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks, size) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

const accept = { Accept: 'application/fhir+json', Authorization: 'Bearer raw-copy' };
const started = process.hrtime.bigint();
const cpu0 = process.cpuUsage();
let url = first;
let pages = 0;
let resources = 0;
let bytesIn = 0;
let bytesOut = 0;
while (url) {
  const got = await request(url, 'GET', accept);
  if (got.status !== 200) throw new Error(`GET ${url}: ${got.status} ${got.body.toString().slice(0, 300)}`);
  bytesIn += got.body.length;
  const page = JSON.parse(got.body.toString('utf8'));
  const entry = [];
  for (const e of page.entry ?? []) {
    const r = e.resource;
    if (r?.resourceType && r.id) entry.push({ resource: r, request: { method: 'PUT', url: `${r.resourceType}/${r.id}` } });
  }
  if (entry.length > 0) {
    const body = Buffer.from(JSON.stringify({ resourceType: 'Bundle', type: 'transaction', entry }), 'utf8');
    bytesOut += body.length;
    const put = await request(target, 'POST', { 'Content-Type': 'application/fhir+json', Accept: 'application/fhir+json',
                                                'Content-Length': body.length }, body);
    const answer = put.status === 200 ? JSON.parse(put.body.toString('utf8')) : null;
    if (answer?.type !== 'transaction-response' || answer.entry?.length !== entry.length ||
        !answer.entry.every((x) => String(x.response?.status).startsWith('2'))) {
      throw new Error(`POST ${target} (page ${pages + 1}): ${put.status} ${put.body.toString().slice(0, 300)}`);
    }
    resources += entry.length;
  }
  pages++;
  url = (page.link ?? []).find((l) => l.relation === 'next')?.url;
}
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
const cpu = process.cpuUsage(cpu0);
agent.destroy();
process.stdout.write(JSON.stringify({ pages, resources, seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6, bytesIn, bytesOut }) + '\n');

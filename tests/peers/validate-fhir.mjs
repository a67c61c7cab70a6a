#!/usr/bin/env node
// Validates a FHIR R4 resource or Bundle with two validators (@medplum/core and FHIR.js).
//
// usage: node tests/peers/validate-fhir.mjs [--errors-only] FILE.json|-
//
// Prints {"valid":bool,"issues":[{validator,resourceType,id,severity,location,message,bundleEntry?}],
//         "profilesNotChecked":[...]} on stdout.
// Exit status: 0 valid, 1 invalid (some issue of severity error/fatal), 2 usage or parse error.
// See lib/fhir-validation.mjs for what each validator checks.

import { readFileSync } from 'node:fs';
import { validateFhir } from './lib/fhir-validation.mjs';

function usage(message) {
  if (message) {
    process.stderr.write(`validate-fhir: ${message}\n`);
  }
  process.stderr.write('usage: node tests/peers/validate-fhir.mjs [--errors-only] FILE.json|-\n');
  process.exit(2);
}

const args = process.argv.slice(2);
let errorsOnly = false;
const files = [];
for (const a of args) {
  if (a === '--errors-only') {
    errorsOnly = true;
  } else if (a === '-h' || a === '--help') {
    usage();
  } else if (a.startsWith('--')) {
    usage(`unknown option ${a}`);
  } else {
    files.push(a);
  }
}
if (files.length !== 1) {
  usage('exactly one FILE (or - for stdin) is required');
}

let text;
try {
  text = files[0] === '-' ? readFileSync(0, 'utf8') : readFileSync(files[0], 'utf8');
} catch (err) {
  usage(`cannot read ${files[0]}: ${err.message}`);
}

let input;
try {
  input = JSON.parse(text);
} catch (err) {
  usage(`invalid JSON: ${err.message}`);
}
if (input === null || typeof input !== 'object' || Array.isArray(input)) {
  usage('input must be a JSON object (a FHIR resource or Bundle)');
}

const result = validateFhir(input, { errorsOnly });
process.stdout.write(JSON.stringify(result) + '\n');
process.exitCode = result.valid ? 0 : 1;

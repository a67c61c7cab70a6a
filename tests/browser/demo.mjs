#!/usr/bin/env node
// The stack of stack.mjs for a person to try (scripts/demo.sh runs this): starts it, prints where to go
// and how to sign in, and stops it on Ctrl-C / SIGTERM.
//
//   node tests/browser/demo.mjs --database-url URL --service-binary build/p2p-exchange --log-dir DIR
//        [--portal-port 8090] [--service-port 8080] [--page-delay-ms 1200]
//
// A port that is taken falls back to any free one. --page-delay-ms slows each page of the member's
// records at the old payer, so that the progress bar fills over a few seconds.

import net from 'node:net';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { startStack } from './stack.mjs';

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      'database-url': { type: 'string' },
      'service-binary': { type: 'string' },
      'log-dir': { type: 'string' },
      'portal-port': { type: 'string', default: '8090' },
      'service-port': { type: 'string', default: '8080' },
      'page-delay-ms': { type: 'string', default: '1200' },
    },
    strict: true,
  }));
} catch (err) {
  process.stderr.write(`demo: ${err.message}\n`);
  process.exit(2);
}
for (const name of ['database-url', 'service-binary', 'log-dir']) {
  if (!args[name]) {
    process.stderr.write(`demo: --${name} is required\n`);
    process.exit(2);
  }
}

async function portOrFree(wanted) {
  const port = Number(wanted);
  if (!Number.isInteger(port) || port <= 0) return 0;
  const free = await new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
  if (!free) process.stderr.write(`demo: port ${port} is taken; using another one\n`);
  return free ? port : 0;
}

let stack;
let stopping = false;
async function stop(code) {
  if (stopping) return;
  stopping = true;
  process.stdout.write('\n==> stopping the demo\n');
  if (stack) await stack.stop().catch((err) => process.stderr.write(`demo: ${err.message}\n`));
  process.exit(code);
}
process.on('SIGINT', () => stop(0));
process.on('SIGTERM', () => stop(0));

try {
  process.stdout.write('==> starting the old payer (OAuth and FHIR servers with a sample member), the new payer\'s FHIR server, p2p-exchange and the portal\n');
  stack = await startStack({
    databaseUrl: args['database-url'],
    serviceBinary: path.resolve(args['service-binary']),
    logDir: path.resolve(args['log-dir']),
    tag: 'demo',
    portalPort: await portOrFree(args['portal-port']),
    servicePort: await portOrFree(args['service-port']),
    sourcePageDelayMs: Number(args['page-delay-ms']) || 0,
  });
} catch (err) {
  process.stderr.write(`demo: could not start: ${err.message}\n`);
  process.exit(1);
}
if (stopping) await new Promise(() => {}); // Ctrl-C during start: stop() exits

// The member's own Patient is not copied (she already exists at the new payer).
const records = Object.entries(stack.expectedCounts).reduce((n, [type, count]) => n + (type === 'Patient' ? 0 : count), 0);
process.stdout.write(`
  The member portal demo is running.

    Open the portal:   ${stack.portalUrl}/
    You are ${stack.member.name}, a new member of ${stack.planName}. Choose ${stack.payerName}, give your
    permission, and at ${stack.payerName}'s sign-in page type:
        login:     ${stack.member.login}
        password:  anything
    then press "Continue" on its Authorize page ("[ Cancel ]" there shows what happens when a member says no).
    Back at the portal, ${records} of her records (visits, conditions, lab results, medicines, immunizations,
    allergies) arrive at ${stack.planName}'s FHIR server while you watch.

    p2p-exchange:        ${stack.serviceUrl}/  (Swagger UI; API key for this run: ${stack.apiKey})
    Old payer:           OAuth ${stack.oauthIssuer}, FHIR ${stack.sourceFhirUrl}
    New payer's FHIR:    ${stack.targetFhirUrl}  (e.g. ${stack.targetFhirUrl}/Observation?_count=5)
    Logs:                ${path.resolve(args['log-dir'])}

  Press Ctrl-C to stop everything.

`);
await new Promise(() => {}); // until a signal

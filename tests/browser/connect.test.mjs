#!/usr/bin/env node
// The member connect flow end to end in a real browser (ctest label `browser`): Debian's Chromium driven
// by puppeteer-core goes through the demo member portal (examples/member-portal), the old payer's own
// login and consent pages (oidc-provider's devInteractions, tests/peers/oauth-server.mjs --interactive),
// p2p-exchange's /oauth/callback, and back to the portal's progress bar, on the stack of
// tests/browser/stack.mjs (the same one scripts/demo.sh runs).
//
//   node tests/browser/connect.test.mjs --service-binary build/p2p-exchange [--database-url URL] [--artifacts DIR]
//
//   --database-url  a PostgreSQL server the test may create a database on (default: $P2P_TEST_DATABASE_URL,
//                   which scripts/test.sh exports)
//   --artifacts     where the screenshots go (default: $P2P_BROWSER_ARTIFACTS_DIR, else $P2P_TEST_LOG_DIR/browser,
//                   else build/Testing/browser-screenshots); one PNG per step, numbered in order
//   $CHROMIUM       the browser (default /usr/bin/chromium; scripts/install-deps.sh installs Debian's)
//   $P2P_TEST_LOG_DIR  when set, every process's log goes there and the stack's secrets are listed for
//                   scripts/check-secrets.sh; otherwise the logs go next to the screenshots
//
// Cases:
//   1. the whole flow: choose the payer, consent (keyboard), the old payer's login and consent pages,
//      back at the portal (returnUrl?authorizationId&completionCode, no job yet), whose back end
//      completes the authorization (POST .../authorizations/{id}/batch_job) and so makes the job; the
//      progress bar reaches 100% and says how many records arrived; the job is COMPLETED with
//      percentComplete 100, every record is on the new payer's FHIR server, the authorization is
//      completed with that job, and the same completion again answers 200 with the same job
//   2. a forwarded sign-in link: browser A (portal session A) starts a connect; its authorizationUrl is
//      opened in another browser B (a different portal session) where the member signs in; B comes back
//      to the portal with a valid completionCode, and the portal refuses ("This link was not started
//      from your account here, so nothing was copied."): the authorization stays authorized, no job.
//      Session A, which started it, cannot complete it without the code (a made-up one: 409, no job)
//   3. "[ Cancel ]" on the old payer's consent page: the portal says permission was not given
//   4. a tampered `state` on the callback: the service's own 400 page says the link is invalid, and does
//      not echo the tampered value as markup; the real callback still works once (303 to the portal
//      with a completionCode, the authorization then authorized without a job), and a second use of it
//      gets the 400 page
//   5. a returnUrl that is not on connect.allowedReturnUrls: 400 problem+json at POST .../authorizations
// Exit status 0 when every case passed, 1 otherwise (with what failed, the page it was on and the
// service's last log lines).

import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';

import { startStack } from './stack.mjs';

const execFileAsync = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)} s`;
const say = (msg) => process.stdout.write(`[browser ${elapsed()}] ${msg}\n`);

function usageExit(message) {
  process.stderr.write(`connect.test: ${message}\n`);
  process.exit(2);
}

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      'service-binary': { type: 'string', default: path.join(root, 'build/p2p-exchange') },
      'database-url': { type: 'string', default: process.env.P2P_TEST_DATABASE_URL },
      artifacts: { type: 'string' },
    },
    strict: true,
  }));
} catch (err) {
  usageExit(err.message);
}

// --- preconditions: each a failure with what to do, never a skip ------------------------------------

const chromium = process.env.CHROMIUM || '/usr/bin/chromium';
const problems = [];
if (!fs.existsSync(chromium)) {
  problems.push(`Chromium is not installed (${chromium} is missing): run scripts/install-deps.sh (it installs Debian's chromium), or set CHROMIUM`);
}
let puppeteer;
try {
  puppeteer = createRequire(path.join(root, 'tests/peers/package.json'))('puppeteer-core');
} catch {
  problems.push('puppeteer-core is not installed: npm ci --prefix tests/peers (scripts/setup.sh does it)');
}
if (!args['database-url']) problems.push('no PostgreSQL: set P2P_TEST_DATABASE_URL (scripts/test.sh does) or pass --database-url');
if (!fs.existsSync(args['service-binary'])) problems.push(`${args['service-binary']} does not exist: build it (scripts/setup.sh)`);
if (problems.length) {
  for (const p of problems) process.stderr.write(`connect.test: FAIL: ${p}\n`);
  process.exit(1);
}

const artifacts = path.resolve(args.artifacts || process.env.P2P_BROWSER_ARTIFACTS_DIR
  || (process.env.P2P_TEST_LOG_DIR ? path.join(process.env.P2P_TEST_LOG_DIR, 'browser') : path.join(root, 'build/Testing/browser-screenshots')));
fs.rmSync(artifacts, { recursive: true, force: true });
fs.mkdirSync(artifacts, { recursive: true });
const logDir = process.env.P2P_TEST_LOG_DIR || path.join(artifacts, 'logs');

// --- small helpers ----------------------------------------------------------------------------------

class Failure extends Error {}
function check(condition, message) {
  if (!condition) throw new Failure(message);
}

let shot = 0;
async function screenshot(page, name) {
  shot += 1;
  const file = path.join(artifacts, `${String(shot).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  say(`  screenshot ${path.basename(file)}`);
  return file;
}

// A URL without its query (which may hold a code or a state) for messages.
const bare = (url) => {
  try {
    const u = new URL(url);
    return u.protocol === 'http:' || u.protocol === 'https:' ? `${u.origin}${u.pathname}` : `${u.protocol}${u.pathname}`;
  } catch {
    return String(url).split('?')[0];
  }
};

async function api(stack, method, route, body) {
  const response = await fetch(`${stack.serviceUrl}${route}`, {
    method,
    headers: { Authorization: `Bearer ${stack.apiKey}`, Accept: 'application/json', ...(body ? { 'Content-Type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(15000),
  });
  const text = await response.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, type: response.headers.get('content-type') ?? '', text, json, headers: response.headers };
}

async function newPage(browser, viewport = { width: 1000, height: 860 }) {
  const context = await browser.createBrowserContext(); // no cookies shared with the other cases
  const page = await context.newPage();
  await page.setViewport(viewport);
  page.setDefaultTimeout(20000);
  page.setDefaultNavigationTimeout(30000);
  // Nothing leaves this machine (oidc-provider's pages @import a web font, for example).
  await page.setRequestInterception(true);
  page.navigations = []; // every URL the page navigated to, redirects included (one-time values: never printed)
  page.on('request', (request) => {
    if (request.isNavigationRequest() && request.frame() === page.mainFrame()) page.navigations.push(request.url());
    const { hostname, protocol } = new URL(request.url());
    if ((protocol === 'http:' || protocol === 'https:') && hostname !== '127.0.0.1' && hostname !== 'localhost') {
      request.abort('blockedbyclient');
    } else {
      request.continue();
    }
  });
  page.on('dialog', async (dialog) => {
    page.dialogSeen = dialog.message();
    await dialog.dismiss();
  });
  page.on('pageerror', (err) => say(`  page error on ${bare(page.url())}: ${err.message}`));
  return { context, page };
}

async function navigation(page, action) {
  const [response] = await Promise.all([page.waitForNavigation({ waitUntil: 'domcontentloaded' }), action()]);
  return response;
}

const text = (page, selector) => page.$eval(selector, (el) => el.textContent.replace(/\s+/g, ' ').trim());

// The last navigation of `page` to `url` (origin + path), as a URL.
function navigatedTo(page, url) {
  const found = page.navigations.filter((u) => bare(u) === url).at(-1);
  return found ? new URL(found) : null;
}

// The service's link back to the portal on success: returnUrl?authorizationId=...&completionCode=... and
// nothing else (no batchJobId: no job exists yet; no code, state or token of the old payer).
function checkLinkBack(done, what) {
  check(done, `${what}: the browser went through the portal's /p2p/done`);
  const names = [...done.searchParams.keys()].sort();
  check(names.join(',') === 'authorizationId,completionCode',
    `${what}: the link back carries authorizationId and completionCode only (got ${names.join(', ')})`);
  check(/^[0-9a-f]{64}$/i.test(done.searchParams.get('completionCode')), `${what}: the completionCode is 64 hex characters`);
  return { authorizationId: done.searchParams.get('authorizationId'), completionCode: done.searchParams.get('completionCode') };
}

// The portal's start page up to the old payer's login page.
async function portalToLogin(page, stack, { screenshots }) {
  await page.goto(stack.portalUrl, { waitUntil: 'domcontentloaded' });
  await page.waitForSelector('#payers input[type=radio]');
  check((await text(page, 'h1')) === 'Bring your health records with you', 'the start page has its heading');
  check((await text(page, '#member-name')) === stack.member.name, 'the start page names the signed-in member');
  const payerLabel = await text(page, `label[for="payer-${stack.pid}"]`);
  check(payerLabel === stack.payerName, `the payer list shows "${stack.payerName}" (got "${payerLabel}")`);
  if (screenshots) await screenshot(page, 'portal-start');

  await page.click(`label[for="payer-${stack.pid}"]`);
  if (screenshots) {
    // Without the consent box ticked nothing happens but a clear message, and the focus goes to the box.
    await page.click('#continue');
    await page.waitForSelector('#problem:not([hidden])');
    const problem = await text(page, '#problem');
    check(/tick the box/i.test(problem), `without consent the page says to tick the box (got "${problem}")`);
    check(await page.$eval('#consent', (el) => el === document.activeElement), 'the focus moves to the consent box');
    check(await page.$eval('#problem', (el) => el.getAttribute('role') === 'alert'), 'the problem is announced (role=alert)');
    // Keyboard: Space ticks the focused box.
    await page.keyboard.press('Space');
  } else {
    await page.click('#consent');
  }
  check(await page.$eval('#consent', (el) => el.checked), 'the consent box is ticked');
  const consent = await text(page, '#consent-label');
  check(consent === `I agree that ${stack.payerName} sends my health records to ${stack.planName}.`,
    `the consent sentence names both plans (got "${consent}")`);
  const button = await text(page, '#continue');
  check(button === `Continue to ${stack.payerName}`, `the button says where it goes (got "${button}")`);
  if (screenshots) await screenshot(page, 'portal-consent-given');

  await navigation(page, () => page.click('#continue'));
  const at = new URL(page.url());
  check(at.origin === stack.oauthIssuer && at.pathname.startsWith('/interaction/'),
    `the browser is at the old payer's login page (got ${bare(page.url())})`);
  await page.waitForSelector('input[name=login]');
}

async function signInAtOldPayer(page, stack, { screenshots }) {
  if (screenshots) await screenshot(page, 'old-payer-login');
  await page.type('input[name=login]', stack.member.login);
  await page.type('input[name=password]', 'any password will do');
  await navigation(page, () => page.click('button[type=submit]'));
  check(new URL(page.url()).origin === stack.oauthIssuer, `after the login the browser is still at the old payer (got ${bare(page.url())})`);
  await page.waitForSelector('input[name=prompt][value=consent]');
  const consentPage = await page.$eval('body', (el) => el.innerText);
  check(/offline access/i.test(consentPage) && /patient\/\*\.read/.test(consentPage),
    'the old payer\'s consent page lists what is asked (patient/*.read, offline access)');
  if (screenshots) await screenshot(page, 'old-payer-consent');
}

// --- the cases --------------------------------------------------------------------------------------

async function caseWholeFlow(browser, stack) {
  say('case 1: the whole flow, through the old payer\'s login and consent pages');
  const { context, page } = await newPage(browser);
  try {
    await portalToLogin(page, stack, { screenshots: true });
    await signInAtOldPayer(page, stack, { screenshots: true });
    await navigation(page, () => page.click('button[type=submit]'));
    const back = new URL(page.url());
    check(back.origin === new URL(stack.portalUrl).origin && back.pathname === '/p2p/progress',
      `after the consent the browser is back at the portal's progress page (got ${bare(page.url())}; the page says: ${(await page.$eval('body', (el) => el.innerText).catch(() => '')).slice(0, 300)})`);
    const { authorizationId, completionCode } = checkLinkBack(navigatedTo(page, `${stack.portalUrl}/p2p/done`), 'the whole flow');
    await page.waitForSelector('#bar');
    // Record what the bar shows while the job runs.
    const seen = [];
    let progressShot = false;
    const deadline = Date.now() + 90000;
    for (;;) {
      const state = await page.evaluate(() => ({
        value: document.getElementById('bar').hasAttribute('value') ? document.getElementById('bar').value : null,
        done: !document.getElementById('result').hidden,
      }));
      if (seen.at(-1) !== state.value) seen.push(state.value);
      if (!progressShot && state.value !== null && state.value > 0 && state.value < 100 && !state.done) {
        await screenshot(page, 'portal-progress');
        progressShot = true;
      }
      if (state.done) break;
      check(Date.now() < deadline, `the progress page did not finish within 90 s (bar values seen: ${JSON.stringify(seen)})`);
      await new Promise((resolve) => setTimeout(resolve, 150));
    }
    say(`  progress bar values seen: ${JSON.stringify(seen)}`);
    if (!progressShot) await screenshot(page, 'portal-progress');
    const bar = await page.$eval('#bar', (el) => ({ value: el.value, max: el.max, label: el.labels?.[0]?.textContent }));
    const result = await text(page, '#result-text');
    const expectedWritten = Object.entries(stack.expectedCounts).reduce((n, [type, count]) => n + (type === 'Patient' ? 0 : count), 0);
    check(bar.value === 100 && bar.max === 100, `the progress bar reaches 100% (got ${bar.value} of ${bar.max}; result: "${result}")`);
    check(bar.label === 'Records copied', 'the progress bar has a label');
    const numbers = seen.filter((v) => v !== null);
    check(numbers.every((v, i) => i === 0 || v >= numbers[i - 1]), `the progress bar never goes back (${JSON.stringify(seen)})`);
    check(result === `${expectedWritten} records arrived from ${stack.payerName}.`,
      `the portal says how many records arrived from whom (got "${result}", expected ${expectedWritten})`);
    check(await page.$eval('#result', (el) => el === document.activeElement), 'the focus moves to the result');
    await screenshot(page, 'portal-records-arrived');

    // The service's view: the job the portal's completion made, and the authorization completed with it.
    const jobs = await api(stack, 'GET', `/api/oidc_servers/${stack.pid}/batch_job?limit=5`);
    check(jobs.status === 200 && jobs.json?.jobs?.length === 1, `one batch job exists (GET batch_job: ${jobs.status} ${jobs.text.slice(0, 300)})`);
    const job = (await api(stack, 'GET', `/api/oidc_servers/${stack.pid}/batch_job/${jobs.json.jobs[0].batchJobId}`)).json;
    const authorization = await api(stack, 'GET', `/api/oidc_servers/${stack.pid}/authorizations/${authorizationId}`);
    check(authorization.json?.status === 'completed' && authorization.json?.batchJobId === job.batchJobId && authorization.json?.error === null,
      `the authorization is completed with job ${job.batchJobId} (got ${authorization.status} ${authorization.text.slice(0, 300)})`);
    // The same completion again (a reload, a retry): 200 with the same job, no second one.
    const again = await api(stack, 'POST', `/api/oidc_servers/${stack.pid}/authorizations/${authorizationId}/batch_job`, { completionCode });
    check(again.status === 200 && again.json?.batchJobId === job.batchJobId,
      `the same completion again answers 200 with job ${job.batchJobId} (got ${again.status} ${again.text.slice(0, 300)})`);
    check((again.headers.get('location') ?? '').endsWith(`/batch_job/${job.batchJobId}`),
      `the repeated completion's Location names job ${job.batchJobId} (got ${again.headers.get('location')})`);
    check(job.batchStatus === 'COMPLETED', `the job is COMPLETED (got ${job.batchStatus}, lastError ${job.lastError})`);
    check(job.percentComplete === 100, `the job's percentComplete is 100 (got ${job.percentComplete})`);
    check(job.resourcesWritten === expectedWritten, `the job wrote ${expectedWritten} resources (got ${job.resourcesWritten})`);
    check(job.resourcesTotal === null || typeof job.resourcesTotal === 'number', `resourcesTotal is a number or null (got ${JSON.stringify(job.resourcesTotal)})`);
    say(`  job ${job.batchJobId}: ${job.batchStatus}, ${job.resourcesWritten} written, resourcesTotal ${job.resourcesTotal}, percentComplete ${job.percentComplete}, ${job.pagesCompleted} pages`);

    // The new payer's FHIR server has every record, about the member as the new payer knows her.
    for (const [type, count] of Object.entries(stack.expectedCounts)) {
      if (type === 'Patient') continue;
      const response = await fetch(`${stack.targetFhirUrl}/${type}?_summary=count`, { headers: { Accept: 'application/fhir+json' } });
      const bundle = await response.json();
      check(bundle.total === count, `the new payer's FHIR server has ${count} ${type} (got ${bundle.total})`);
    }
    const observations = await (await fetch(`${stack.targetFhirUrl}/Observation?_count=100`, { headers: { Accept: 'application/fhir+json' } })).json();
    const subjects = new Set(observations.entry.map((e) => e.resource.subject?.reference));
    check(subjects.size === 1 && subjects.has(`Patient/${stack.member.targetPatientId}`),
      `the copied Observations are about the member at the new payer (subjects: ${[...subjects].join(', ')})`);
    // What was written is valid FHIR R4 (both validators of tests/peers/validate-fhir.mjs), the page
    // Provenances included. (The tracking Task is left out: FHIR.js reports its `valueInteger: 0` outputs as
    // missing, a false positive of that validator.)
    const written = [];
    for (const type of [...Object.keys(stack.expectedCounts).filter((t) => t !== 'Patient'), 'Provenance']) {
      const bundle = await (await fetch(`${stack.targetFhirUrl}/${type}?_count=1000`, { headers: { Accept: 'application/fhir+json' } })).json();
      written.push(...(bundle.entry ?? []).map((e) => ({ fullUrl: `${stack.targetFhirUrl}/${type}/${e.resource.id}`, resource: e.resource })));
    }
    check(written.some((e) => e.resource.resourceType === 'Provenance'), 'the pages\' Provenances are on the new payer\'s FHIR server');
    const validation = await (await fetch(`${new URL(stack.targetFhirUrl).origin}/__control/validate?errorsOnly=1`, {
      method: 'POST', headers: { 'Content-Type': 'application/fhir+json' },
      body: JSON.stringify({ resourceType: 'Bundle', type: 'collection', entry: written }),
    })).json();
    check(validation.valid === true, `what was written is valid FHIR R4 (${JSON.stringify(validation.issues?.slice(0, 5))})`);
    say(`  ok: ${expectedWritten} records on the new payer's FHIR server, valid FHIR R4 with ${written.length - expectedWritten} page Provenance(s)`);
  } finally {
    await context.close();
  }
}

async function caseForwardedLink(browser, stack) {
  say('case 2: a forwarded sign-in link: started in one portal session, signed in and back in another');
  const portalDone = `${stack.portalUrl}/p2p/done`;
  const jobCount = async () => (await api(stack, 'GET', `/api/oidc_servers/${stack.pid}/batch_job?limit=20`)).json?.jobs?.length;
  const jobsBefore = await jobCount();
  const a = await newPage(browser); // portal session A: whoever started the connect (for A's member's chart)
  const b = await newPage(browser); // portal session B: another browser, where the forwarded link is opened
  try {
    await portalToLogin(a.page, stack, { screenshots: false });
    const sentTo = a.page.navigations.map((u) => new URL(u)).find((u) => u.origin === stack.oauthIssuer && u.pathname === '/auth');
    check(sentTo, 'session A was sent to the old payer\'s authorization endpoint');

    // B: a portal session of its own, then the forwarded authorizationUrl; the member signs in and consents.
    await b.page.goto(stack.portalUrl, { waitUntil: 'domcontentloaded' });
    await b.page.goto(sentTo.href, { waitUntil: 'domcontentloaded' });
    await b.page.waitForSelector('input[name=login]');
    await signInAtOldPayer(b.page, stack, { screenshots: false });
    await navigation(b.page, () => b.page.click('button[type=submit]'));
    const back = checkLinkBack(navigatedTo(b.page, portalDone), 'the forwarded link');
    check(new URL(b.page.url()).pathname === '/p2p/progress', `B is at the portal's progress page (got ${bare(b.page.url())})`);
    await b.page.waitForSelector('#result:not([hidden])', { timeout: 30000 });
    const message = await text(b.page, '#result-text');
    check(message.startsWith('This link was not started from your account here, so nothing was copied.'),
      `the portal refuses the link back in a session that did not start it (got "${message}")`);
    check((await text(b.page, '#result-title')) === 'Nothing was copied from this link', 'the refusal has its heading');
    check(await b.page.$eval('#progress-box', (el) => el.hidden), 'no progress bar is shown for the refused link');
    check(await b.page.$eval('#result', (el) => el === document.activeElement), 'the focus moves to the message');
    await screenshot(b.page, 'portal-forwarded-link-refused');

    // The service made no job: the authorization waits for a completion that does not come.
    const record = await api(stack, 'GET', `/api/oidc_servers/${stack.pid}/authorizations/${back.authorizationId}`);
    check(record.status === 200 && record.json?.status === 'authorized' && record.json?.batchJobId === null,
      `the forwarded link's authorization stays authorized without a job (got ${record.status} ${record.text.slice(0, 300)})`);
    const jobsNow = await jobCount();
    check(jobsNow === jobsBefore, `no batch job was made (jobs before ${jobsBefore}, after ${jobsNow})`);

    // Session A started it but never sees the code: a made-up one is refused (409) and copies nothing.
    await a.page.goto(`${portalDone}?${new URLSearchParams({ authorizationId: back.authorizationId, completionCode: '0'.repeat(64) })}`,
      { waitUntil: 'domcontentloaded' });
    check(new URL(a.page.url()).pathname === '/p2p/progress', `A is at the portal's progress page (got ${bare(a.page.url())})`);
    await a.page.waitForSelector('#result:not([hidden])', { timeout: 30000 });
    const refused = await text(a.page, '#result-text');
    check(/nothing was copied/i.test(refused), `a made-up completion code copies nothing (the portal says "${refused}")`);
    await screenshot(a.page, 'portal-made-up-completion-code');
    const after = await api(stack, 'GET', `/api/oidc_servers/${stack.pid}/authorizations/${back.authorizationId}`);
    check(after.json?.batchJobId === null, `still no job for the forwarded link's authorization (got ${after.text.slice(0, 300)})`);
    const jobsAfter = await jobCount();
    check(jobsAfter === jobsBefore, `still no batch job (jobs before ${jobsBefore}, after ${jobsAfter})`);
    say(`  ok: refused in session B without a job; a made-up code in session A refused without a job (the authorization: ${after.json?.status}${after.json?.error ? `, ${after.json.error}` : ''})`);
  } finally {
    await a.context.close();
    await b.context.close();
  }
}

async function caseDenied(browser, stack) {
  say('case 3: the member presses "[ Cancel ]" on the old payer\'s consent page (on a phone-sized screen)');
  const { context, page } = await newPage(browser, { width: 375, height: 740, isMobile: true, hasTouch: true, deviceScaleFactor: 1 });
  try {
    await portalToLogin(page, stack, { screenshots: false });
    await signInAtOldPayer(page, stack, { screenshots: false });
    const cancel = await page.$$eval('a', (links) => links.filter((a) => /cancel/i.test(a.textContent)).map((a) => a.getAttribute('href')));
    check(cancel.length === 1, 'the consent page has one Cancel link');
    await navigation(page, () => page.click('a[href$="/abort"]'));
    check(new URL(page.url()).pathname === '/p2p/progress', `after Cancel the browser is back at the portal (got ${bare(page.url())})`);
    await page.waitForSelector('#result:not([hidden])', { timeout: 30000 });
    const message = await text(page, '#result-text');
    check(message === `You did not give permission at ${stack.payerName}, so nothing was copied. You can try again.`,
      `the portal says permission was not given (got "${message}")`);
    check(await page.$eval('#progress-box', (el) => el.hidden), 'no progress bar is shown when nothing was copied');
    check(await page.$eval('#result', (el) => el === document.activeElement), 'the focus moves to the message');
    check((await text(page, '#result-link')) === 'Try again', 'the page offers to try again');
    await screenshot(page, 'portal-permission-not-given');
    const jobs = await api(stack, 'GET', `/api/oidc_servers/${stack.pid}/batch_job?limit=5`);
    check(jobs.json?.jobs?.length === 1, `no job was made for the denied authorization (jobs: ${jobs.json?.jobs?.length})`);
  } finally {
    await context.close();
  }
}

async function caseTamperedState(browser, stack) {
  say('case 4: a tampered state on the callback, then the real one, then the real one again');
  const portalReturn = `${stack.portalUrl}/p2p/done`;
  const created = await api(stack, 'POST', `/api/oidc_servers/${stack.pid}/authorizations`, {
    targetPayer: { patientId: stack.member.targetPatientId }, returnUrl: portalReturn,
  });
  check(created.status === 201, `POST .../authorizations answers 201 (got ${created.status}: ${created.text.slice(0, 300)})`);
  const { authorizationId, authorizationUrl, expiresAt } = created.json;
  check(typeof authorizationId === 'string' && typeof authorizationUrl === 'string' && typeof expiresAt === 'string',
    `the answer has authorizationId, authorizationUrl and expiresAt (got ${Object.keys(created.json).join(', ')})`);
  const minutes = (Date.parse(expiresAt) - Date.now()) / 60000;
  check(minutes > 8 && minutes <= 10.5, `expiresAt is about 10 minutes ahead (got ${expiresAt})`);
  const authUrl = new URL(authorizationUrl);
  const q = authUrl.searchParams;
  check(authUrl.origin === stack.oauthIssuer && authUrl.pathname === '/auth', `authorizationUrl is the old payer's authorization endpoint (got ${bare(authorizationUrl)})`);
  for (const [name, value] of [['response_type', 'code'], ['client_id', 'p2p-exchange'], ['redirect_uri', `${stack.serviceUrl}/oauth/callback`],
    ['code_challenge_method', 'S256'], ['prompt', 'consent']]) {
    check(q.get(name) === value, `authorizationUrl has ${name}=${value} (got ${q.get(name)})`);
  }
  for (const name of ['state', 'code_challenge', 'nonce', 'scope']) check(q.get(name), `authorizationUrl has ${name}`);
  check(/^[A-Za-z0-9_-]{43}$/.test(q.get('code_challenge')), 'code_challenge is a base64url SHA-256');
  const pending = await api(stack, 'GET', `/api/oidc_servers/${stack.pid}/authorizations/${authorizationId}`);
  check(pending.status === 200 && pending.json?.status === 'pending', `a new authorization is pending (got ${pending.status} ${pending.text.slice(0, 200)})`);

  // The member signs in (over HTTP, as tests/peers/sign-in.mjs does it); the callback URL is not followed.
  let signIn;
  try {
    signIn = await execFileAsync(process.execPath, [path.join(root, 'tests/peers/sign-in.mjs'), '--url', authorizationUrl, '--login', stack.member.login], { timeout: 30000 });
  } catch (err) {
    throw new Failure(`sign-in.mjs failed: ${err.stderr || err.message}`);
  }
  const callback = new URL(JSON.parse(signIn.stdout).redirect);
  check(`${callback.origin}${callback.pathname}` === `${stack.serviceUrl}/oauth/callback`, `the old payer redirects to the service's callback (got ${bare(callback.href)})`);
  const state = callback.searchParams.get('state');
  check(state === q.get('state') && callback.searchParams.get('code'), 'the callback carries the code and the state');

  const payload = '<img src=x onerror=alert(document.domain)>';
  const tampered = new URL(callback);
  tampered.searchParams.set('state', `${state.slice(0, -2)}${state.at(-1) === 'A' ? 'B' : 'A'}${payload}`);
  const { context, page } = await newPage(browser);
  try {
    const response = await page.goto(tampered.href, { waitUntil: 'domcontentloaded' });
    check(response.status() === 400, `a tampered state gets 400 (got ${response.status()} at ${bare(page.url())})`);
    check(new URL(page.url()).origin === stack.serviceUrl, `a tampered state is answered by the service itself, without a redirect (got ${bare(page.url())})`);
    check(/text\/html/.test(response.headers()['content-type'] ?? ''), `the answer is an HTML page (got ${response.headers()['content-type']})`);
    const html = await response.text();
    check(!html.includes(payload) && !html.includes('<img'), 'the error page does not echo the tampered state as markup');
    const words = await page.$eval('body', (el) => el.innerText);
    check(/invalid|not valid/i.test(words) && /used/i.test(words), `the page says the link is invalid or was used already (got "${words.slice(0, 300)}")`);
    check(await page.$('img') === null && page.dialogSeen === undefined, 'nothing from the tampered state runs in the page');
    await screenshot(page, 'service-tampered-state');

    // The real callback still works, once: the service exchanges the code and sends the browser on.
    const first = await fetch(callback.href, { redirect: 'manual', signal: AbortSignal.timeout(30000) });
    await first.arrayBuffer();
    const location = first.headers.get('location') ?? '';
    check(first.status === 303, `the real callback answers 303 (got ${first.status})`);
    const to = new URL(location, stack.serviceUrl);
    check(`${to.origin}${to.pathname}` === portalReturn, `the real callback redirects to returnUrl (got ${bare(location)})`);
    const linkBack = checkLinkBack(to, 'the real callback');
    check(linkBack.authorizationId === authorizationId, 'the link back names the authorization');
    const authorized = await api(stack, 'GET', `/api/oidc_servers/${stack.pid}/authorizations/${authorizationId}`);
    check(authorized.json?.status === 'authorized' && authorized.json?.batchJobId === null && authorized.json?.error === null,
      `the authorization is authorized, without a job until the portal completes it (got ${authorized.text.slice(0, 300)})`);

    // A second use of the same callback is refused with the error page.
    const again = await page.goto(callback.href, { waitUntil: 'domcontentloaded' });
    check(again.status() === 400, `a replayed callback gets 400 (got ${again.status()} at ${bare(page.url())})`);
    const againWords = await page.$eval('body', (el) => el.innerText);
    check(/invalid|not valid/i.test(againWords) && /used/i.test(againWords), `the page says the link is invalid or was used already (got "${againWords.slice(0, 300)}")`);
    await screenshot(page, 'service-link-used-already');
  } finally {
    await context.close();
  }
}

async function caseReturnUrlNotAllowed(stack) {
  say('case 5: a returnUrl that is not on connect.allowedReturnUrls');
  const portal = new URL(stack.portalUrl);
  for (const returnUrl of [
    'https://attacker.example/p2p/done',
    `${stack.portalUrl}/elsewhere/done`,
    `http://localhost:${portal.port}/p2p/done`,
    `http://127.0.0.1:${Number(portal.port) === 65535 ? 1 : Number(portal.port) + 1}/p2p/done`,
    `${stack.portalUrl}/p2p/../admin`,
  ]) {
    const answer = await api(stack, 'POST', `/api/oidc_servers/${stack.pid}/authorizations`, {
      targetPayer: { patientId: stack.member.targetPatientId }, returnUrl,
    });
    check(answer.status === 400, `returnUrl ${returnUrl} gets 400 (got ${answer.status}${answer.json?.detail ? `: ${answer.json.detail}` : ''})`);
    check(answer.type.startsWith('application/problem+json') && typeof answer.json?.detail === 'string' && answer.json.detail.length > 0,
      `the 400 for ${returnUrl} is problem+json with a detail (got ${answer.type}: ${answer.text.slice(0, 300)})`);
  }
  say('  ok: every returnUrl off the list was refused');
}

// --- run --------------------------------------------------------------------------------------------

const watchdog = setTimeout(() => {
  process.stderr.write(`connect.test: FAIL: still running after 200 s; screenshots and logs: ${artifacts}, ${logDir}\n`);
  process.exit(1);
}, 200000);

let stack;
let browser;
let profile;
let failed = false;
try {
  say(`starting the stack (service ${args['service-binary']}; logs in ${logDir})`);
  stack = await startStack({
    databaseUrl: args['database-url'],
    serviceBinary: path.resolve(args['service-binary']),
    logDir,
    tag: 'browser',
    sourcePageDelayMs: 300, // the bar fills over a few seconds, as it would with a real payer
    recordSecrets: Boolean(process.env.P2P_TEST_LOG_DIR),
  });
  say(`stack up: portal ${stack.portalUrl}, service ${stack.serviceUrl}, old payer ${stack.oauthIssuer}`);
  profile = fs.mkdtempSync(path.join(os.tmpdir(), 'p2p-chromium-'));
  browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    userDataDir: profile,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
  say(`browser: ${await browser.version()}`);
  await caseWholeFlow(browser, stack);
  await caseForwardedLink(browser, stack);
  await caseDenied(browser, stack);
  await caseTamperedState(browser, stack);
  await caseReturnUrlNotAllowed(stack);
} catch (err) {
  failed = true;
  process.stderr.write(`connect.test: FAIL: ${err instanceof Failure ? err.message : err.stack}\n`);
  if (browser) {
    for (const page of (await Promise.all(browser.browserContexts().map((c) => c.pages()))).flat()) {
      if (page.url() === 'about:blank') continue;
      try {
        process.stderr.write(`  open page: ${bare(page.url())}\n`);
        await screenshot(page, 'failure');
      } catch { /* the page is gone */ }
    }
  }
  if (stack) {
    const exited = stack.exited();
    if (exited.length) process.stderr.write(`  processes that exited: ${exited.join('; ')}\n`);
    try {
      const lines = fs.readFileSync(stack.logs.service, 'utf8').trimEnd().split('\n').slice(-25);
      process.stderr.write(`  last lines of the service log (${stack.logs.service}):\n${lines.map((l) => `    ${l}`).join('\n')}\n`);
    } catch { /* no log */ }
  }
} finally {
  if (browser) await browser.close().catch(() => {});
  if (profile) fs.rmSync(profile, { recursive: true, force: true });
  if (stack) await stack.stop().catch((err) => process.stderr.write(`connect.test: stopping the stack: ${err.message}\n`));
  clearTimeout(watchdog);
}
say(`screenshots: ${artifacts}`);
if (failed) process.exit(1);
say('all cases passed');

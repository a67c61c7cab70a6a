#!/usr/bin/env node
// A member signing in at the old payer, for tests: walks oidc-provider's real login and consent pages
// (tests/peers/oauth-server.mjs --interactive; devInteractions) over HTTP as a browser would, and stops
// at the redirect that leaves the provider (to the client's redirect_uri, e.g. the service's
// /oauth/callback), without following it.
//
//   node tests/peers/sign-in.mjs --url AUTHORIZATION_URL --login NAME [--password PW] [--deny]
//        [--timeout-ms 15000]
//
//   --url       the authorization URL the client made (GET {issuer}/auth?response_type=code&...)
//   --login     the login name typed on the login page (the account id: the member's Patient id)
//   --password  typed on the login page (default "secret"; the test peer accepts any)
//   --deny      on the consent page, press "[ Cancel ]" (oidc-provider's abort link) instead of
//               "Continue": the redirect then carries error=access_denied
//
// What it does, step by step: GET --url; follow redirects by hand (303/302/...) while they stay on the
// provider's origin, keeping the provider's cookies (path-scoped, as a browser does); on an HTML page,
// read its form (action, method, every input) and submit it as the page says: the login page
// (prompt=login) with --login and --password, the consent page (prompt=consent) as is, or with --deny
// the page's abort link. Pages it already submitted twice, or more than 20 steps, are errors.
//
// Output: exactly one JSON line on stdout, then exit 0:
//   {"redirect":"http://127.0.0.1:8080/oauth/callback?code=...&state=...&iss=...","pages":["login","consent"]}
// `pages` lists the pages seen, in order (the consent page is skipped when the grant already exists).
// Anything unexpected (an error page of the provider, a redirect back to the client before the consent
// page with --deny, a page without the expected form, a network error) -> a readable message on stderr
// and exit 1; usage errors exit 2. The redirect holds an authorization code: treat the output as secret.

import { parseArgs } from 'node:util';

function usage(message) {
  process.stderr.write(`sign-in: ${message}\n`
    + 'usage: node tests/peers/sign-in.mjs --url AUTHORIZATION_URL --login NAME [--password PW] [--deny] [--timeout-ms 15000]\n');
  process.exit(2);
}

class SignInError extends Error {}

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      url: { type: 'string' },
      login: { type: 'string' },
      password: { type: 'string', default: 'secret' },
      deny: { type: 'boolean', default: false },
      'timeout-ms': { type: 'string', default: '15000' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  }));
} catch (err) {
  usage(err.message);
}
if (args.help) {
  process.stderr.write('usage: node tests/peers/sign-in.mjs --url AUTHORIZATION_URL --login NAME [--password PW] [--deny] [--timeout-ms 15000]\n');
  process.exit(0);
}
if (!args.url) usage('--url is required');
if (!args.login) usage('--login is required');
if (!/^\d+$/.test(args['timeout-ms']) || Number(args['timeout-ms']) === 0) usage('--timeout-ms must be a positive integer');
let start;
try {
  start = new URL(args.url);
} catch {
  usage(`--url ${args.url} is not an absolute URL`);
}
if (start.protocol !== 'http:' && start.protocol !== 'https:') usage('--url must be http(s)');
const providerOrigin = start.origin;
const timeoutMs = Number(args['timeout-ms']);

// --- cookies (RFC 6265, enough for one host: name, value, path, expiry) ---------------------------

const jar = new Map(); // `${path}\n${name}` -> {name, value, path}

function defaultPath(url) {
  const p = url.pathname;
  if (!p.startsWith('/') || p.lastIndexOf('/') === 0) return '/';
  return p.slice(0, p.lastIndexOf('/'));
}

function storeCookies(url, response) {
  for (const line of response.headers.getSetCookie()) {
    const [pair, ...attributes] = line.split(';');
    const eq = pair.indexOf('=');
    if (eq <= 0) continue;
    const name = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    let path = defaultPath(url);
    let expired = false;
    for (const attribute of attributes) {
      const i = attribute.indexOf('=');
      const key = (i === -1 ? attribute : attribute.slice(0, i)).trim().toLowerCase();
      const val = i === -1 ? '' : attribute.slice(i + 1).trim();
      if (key === 'path' && val.startsWith('/')) path = val;
      if (key === 'max-age' && /^-?\d+$/.test(val) && Number(val) <= 0) expired = true;
      if (key === 'expires' && !Number.isNaN(Date.parse(val)) && Date.parse(val) <= Date.now()) expired = true;
    }
    const key = `${path}\n${name}`;
    if (expired) jar.delete(key);
    else jar.set(key, { name, value, path });
  }
}

function pathMatches(requestPath, cookiePath) {
  if (requestPath === cookiePath) return true;
  if (!requestPath.startsWith(cookiePath)) return false;
  return cookiePath.endsWith('/') || requestPath[cookiePath.length] === '/';
}

function cookieHeader(url) {
  const matching = [...jar.values()].filter((c) => pathMatches(url.pathname, c.path));
  // Longer paths first, as browsers send them.
  matching.sort((a, b) => b.path.length - a.path.length);
  return matching.map((c) => `${c.name}=${c.value}`).join('; ');
}

// --- HTML (the provider's own pages: forms, inputs, links) ----------------------------------------

const ENTITIES = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", '#39': "'", '#x27': "'", '#x2F': '/', '#47': '/' };
function decodeEntities(text) {
  return text.replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (whole, name) => {
    if (ENTITIES[name] !== undefined) return ENTITIES[name];
    if (/^#x/i.test(name)) return String.fromCodePoint(parseInt(name.slice(2), 16));
    if (name.startsWith('#')) return String.fromCodePoint(Number(name.slice(1)));
    return whole;
  });
}

function attributesOf(tag) {
  const attributes = {};
  const re = /([^\s=/>"']+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>"']+)))?/g;
  const inner = tag.replace(/^<\s*[a-z0-9]+/i, '').replace(/\/?>$/, '');
  let m;
  while ((m = re.exec(inner)) !== null) {
    attributes[m[1].toLowerCase()] = decodeEntities(m[2] ?? m[3] ?? m[4] ?? '');
  }
  return attributes;
}

function formsOf(html) {
  const forms = [];
  const re = /<form\b[^>]*>([\s\S]*?)<\/form\s*>/gi;
  let m;
  while ((m = re.exec(html)) !== null) {
    const open = /^<form\b[^>]*>/i.exec(m[0])[0];
    const form = attributesOf(open);
    const inputs = [...m[1].matchAll(/<input\b[^>]*>/gi)].map((t) => attributesOf(t[0]));
    const buttons = [...m[1].matchAll(/<button\b[^>]*>([\s\S]*?)<\/button\s*>/gi)]
      .map((t) => ({ ...attributesOf(/^<button\b[^>]*>/i.exec(t[0])[0]), text: textOf(t[1]) }));
    forms.push({ action: form.action, method: (form.method || 'get').toLowerCase(), inputs, buttons });
  }
  return forms;
}

function linksOf(html) {
  return [...html.matchAll(/<a\b[^>]*>([\s\S]*?)<\/a\s*>/gi)]
    .map((m) => ({ href: attributesOf(/^<a\b[^>]*>/i.exec(m[0])[0]).href, text: textOf(m[1]) }))
    .filter((l) => l.href !== undefined);
}

function textOf(html) {
  return decodeEntities(html.replace(/<(script|style)\b[\s\S]*?<\/\1\s*>/gi, ' ').replace(/<[^>]+>/g, ' '))
    .replace(/\s+/g, ' ').trim();
}

// The readable part of an oidc-provider error page (or any page), for messages.
function pageSummary(html) {
  const body = /<body\b[^>]*>([\s\S]*)<\/body>/i.exec(html)?.[1] ?? html;
  const withoutDebug = body.replace(/<details\b[\s\S]*?<\/details\s*>/gi, ' ');
  const text = textOf(withoutDebug);
  return text.length > 400 ? `${text.slice(0, 400)}...` : text;
}

// --- the walk ---------------------------------------------------------------------------------------

async function request(method, url, body) {
  const headers = { 'user-agent': 'p2p-exchange-test-sign-in', accept: 'text/html,application/xhtml+xml' };
  const cookies = cookieHeader(url);
  if (cookies) headers.cookie = cookies;
  if (body !== undefined) headers['content-type'] = 'application/x-www-form-urlencoded';
  let response;
  try {
    response = await fetch(url, { method, headers, body, redirect: 'manual', signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    throw new SignInError(`${method} ${url.origin}${url.pathname}: ${err.cause?.message ?? err.message}`);
  }
  storeCookies(url, response);
  return response;
}

function describe(url) {
  return `${url.origin}${url.pathname}`; // never the query: it may carry a code
}

async function signIn() {
  const pages = [];
  const submitted = new Map(); // page kind -> count
  let method = 'GET';
  let url = start;
  let body;
  for (let step = 0; step < 20; step++) {
    const response = await request(method, url, body);
    if (response.status >= 300 && response.status < 400) {
      const location = response.headers.get('location');
      await response.arrayBuffer();
      if (!location) throw new SignInError(`${method} ${describe(url)} answered ${response.status} without a Location`);
      const next = new URL(location, url);
      if (next.origin !== providerOrigin) {
        if (args.deny && !pages.includes('consent') && !next.searchParams.has('error')) {
          throw new SignInError(`the provider redirected to ${describe(next)} without showing a consent page to deny`);
        }
        return { redirect: next.href, pages };
      }
      // 307/308 keep the method and body; 301/302/303 become GET (as browsers do for POST).
      if (response.status !== 307 && response.status !== 308) {
        method = 'GET';
        body = undefined;
      }
      url = next;
      continue;
    }
    const type = response.headers.get('content-type') ?? '';
    const text = await response.text();
    if (response.status !== 200) {
      throw new SignInError(`${method} ${describe(url)} answered ${response.status}: ${type.includes('html') ? pageSummary(text) : text.slice(0, 400)}`);
    }
    if (!type.includes('text/html')) {
      throw new SignInError(`${method} ${describe(url)} answered 200 ${type || 'without a content type'}, not an HTML page`);
    }
    const forms = formsOf(text);
    const kindOf = (form) => form.inputs.find((i) => i.name === 'prompt' && i.type === 'hidden')?.value;
    const form = forms.find((f) => kindOf(f) === 'login' || kindOf(f) === 'consent');
    if (!form) {
      throw new SignInError(`${describe(url)}: neither a login nor a consent page: ${pageSummary(text)}`);
    }
    const kind = kindOf(form);
    pages.push(kind);
    submitted.set(kind, (submitted.get(kind) ?? 0) + 1);
    if (submitted.get(kind) > 2) throw new SignInError(`the ${kind} page came back again after being submitted twice`);

    if (kind === 'consent' && args.deny) {
      const cancel = linksOf(text).find((l) => /cancel|abort|deny/i.test(l.text) || /\/abort(\?|$)/.test(l.href));
      if (!cancel) throw new SignInError(`${describe(url)}: the consent page has no cancel link to deny with`);
      method = 'GET';
      body = undefined;
      url = new URL(cancel.href, url);
      continue;
    }

    const fields = new URLSearchParams();
    for (const input of form.inputs) {
      if (!input.name || input.disabled !== undefined) continue;
      const type = (input.type ?? 'text').toLowerCase();
      if (type === 'submit' || type === 'button' || type === 'image' || type === 'reset') continue;
      if ((type === 'checkbox' || type === 'radio') && input.checked === undefined) continue;
      let value = input.value ?? (type === 'checkbox' || type === 'radio' ? 'on' : '');
      if (kind === 'login' && input.name === 'login') value = args.login;
      else if (kind === 'login' && type === 'password') value = args.password;
      else if (input.required !== undefined && value === '') {
        throw new SignInError(`${describe(url)}: the ${kind} form has a required field "${input.name}" this tool does not know`);
      }
      fields.append(input.name, value);
    }
    if (kind === 'login' && !fields.has('login')) throw new SignInError(`${describe(url)}: the login form has no "login" field`);
    // A named submit button is sent like a browser does when it is pressed.
    const button = form.buttons.find((b) => (b.type ?? 'submit').toLowerCase() === 'submit');
    if (button?.name) fields.append(button.name, button.value ?? '');
    const action = new URL(form.action || url.href, url);
    if (action.origin !== providerOrigin) throw new SignInError(`the ${kind} form posts to another origin (${action.origin})`);
    if (form.method === 'post') {
      method = 'POST';
      body = fields.toString();
      url = action;
    } else {
      method = 'GET';
      body = undefined;
      action.search = fields.toString();
      url = action;
    }
  }
  throw new SignInError('more than 20 steps without leaving the provider');
}

try {
  const result = await signIn();
  process.stdout.write(`${JSON.stringify(result)}\n`);
} catch (err) {
  if (!(err instanceof SignInError)) throw err;
  process.stderr.write(`sign-in: ${err.message}\n`);
  process.exit(1);
}

#!/usr/bin/env node
// Test peer: a real SMTP server (smtp-server, nodemailer project) that accepts the mail p2p-exchange
// sends and lets a test read every message back, parsed with mailparser.
//
//   node tests/peers/smtp-server.mjs [--port 0] [--host 127.0.0.1]
//        [--starttls --cert FILE --key FILE | --implicit-tls --cert FILE --key FILE]
//        [--auth USER:PASS] [--reject-rcpt SUBSTRING ...] [--temp-fail N] [--quiet]
//
// --port 0 picks a free port; a fixed port lets a test stop the server and start it again on the
// same address (the service keeps its configured SMTP URL). When both listeners are up it prints
// exactly one JSON line to stdout:
//   {"ready":true,"port":<smtp port>,"control":"http://127.0.0.1:<control port>"}
// and then logs to stderr only (--quiet: nothing). SIGTERM/SIGINT close it and exit 0.
//
// SMTP behaviour:
//   - without --starttls/--implicit-tls: plain SMTP, STARTTLS not advertised;
//   - --starttls: STARTTLS advertised (and AUTH refused with 538 until it is used);
//   - --implicit-tls: TLS from the first byte (smtps);
//   - --auth USER:PASS: AUTH PLAIN and LOGIN only, required before MAIL FROM (530 otherwise);
//     wrong credentials get 535. Without --auth, AUTH is not offered at all;
//   - --reject-rcpt SUBSTRING (repeatable): RCPT TO whose address contains it gets 550;
//   - --temp-fail N: the first N messages get 451 at the end of DATA (not stored).
// Accepted messages are kept in memory, in arrival order.
//
// Control HTTP server (loopback, no auth, JSON):
//   GET  /messages          -> [{envelope:{mailFrom, rcptTo:[...]}, authUser, secure, headers,
//                               rawHeaders, subject, from, to, text, html, contentType,
//                               messageId, raw, receivedAt}]
//        headers:    {lower-cased name: decoded value}; a header that occurs more than once maps
//                    to an array of its values in order
//        rawHeaders: the header lines as received ("Name: value"), folded lines unfolded
//                    (the CRLF before the continuation whitespace removed), RFC 2047 not decoded
//        html:       the text/html content, false when the message has none
//   GET  /rejections        -> [{stage:"rcpt"|"data", code, address|envelope, receivedAt}]
//   POST /__control/reset   -> clears messages and rejections (the --temp-fail count is not reset)

import { readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { parseArgs } from 'node:util';

const { SMTPServer } = await import('smtp-server');
const { simpleParser } = await import('mailparser');

function fail(msg) {
  process.stderr.write(`smtp-server: ${msg}\n`);
  process.exit(2);
}

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      port: { type: 'string', default: '0' },
      host: { type: 'string', default: '127.0.0.1' },
      starttls: { type: 'boolean', default: false },
      'implicit-tls': { type: 'boolean', default: false },
      cert: { type: 'string' },
      key: { type: 'string' },
      auth: { type: 'string' },
      'reject-rcpt': { type: 'string', multiple: true, default: [] },
      'temp-fail': { type: 'string', default: '0' },
      quiet: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  }));
} catch (err) {
  fail(err.message);
}

if (args.help) {
  process.stderr.write('usage: node tests/peers/smtp-server.mjs [--port 0] [--host 127.0.0.1] '
    + '[--starttls --cert FILE --key FILE | --implicit-tls --cert FILE --key FILE] [--auth USER:PASS] '
    + '[--reject-rcpt SUBSTRING ...] [--temp-fail N] [--quiet]\n');
  process.exit(0);
}

function nonNegativeInt(name, value) {
  if (!/^\d+$/.test(value)) fail(`--${name} must be a non-negative integer, got "${value}"`);
  return Number(value);
}

const port = nonNegativeInt('port', args.port);
if (port > 65535) fail('--port must be <= 65535');
let tempFailuresLeft = nonNegativeInt('temp-fail', args['temp-fail']);
const host = args.host;
const isLoopback = host === 'localhost' || (net.isIPv4(host) && host.startsWith('127.')) || host === '::1';
if (!isLoopback) fail(`--host ${host} is not a loopback address`);
if (args.starttls && args['implicit-tls']) fail('--starttls and --implicit-tls exclude each other');
const useTls = args.starttls || args['implicit-tls'];
if (useTls && (!args.cert || !args.key)) fail('--starttls and --implicit-tls need --cert FILE and --key FILE');
if (!useTls && (args.cert || args.key)) fail('--cert and --key are only used with --starttls or --implicit-tls');

let authUser = null;
let authPassword = null;
if (args.auth !== undefined) {
  const colon = args.auth.indexOf(':');
  if (colon <= 0) fail('--auth must be USER:PASS');
  authUser = args.auth.slice(0, colon);
  authPassword = args.auth.slice(colon + 1);
}

const log = args.quiet ? () => {} : (msg) => process.stderr.write(`[smtp-server] ${msg}\n`);

let tlsOptions = {};
if (useTls) {
  try {
    tlsOptions = { cert: readFileSync(args.cert), key: readFileSync(args.key) };
  } catch (err) {
    fail(`cannot read the certificate or key: ${err.message}`);
  }
}

const messages = [];
const rejections = [];

function smtpError(code, message) {
  const err = new Error(message);
  err.responseCode = code;
  return err;
}

function envelopeOf(session) {
  return {
    mailFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : null,
    rcptTo: session.envelope.rcptTo.map((r) => r.address),
  };
}

// The header block as received, unfolded: one "Name: value" string per header field.
function rawHeaderLines(raw) {
  const text = raw.toString('latin1');
  let end = text.indexOf('\r\n\r\n');
  if (end < 0) end = text.indexOf('\n\n');
  const block = end < 0 ? text : text.slice(0, end);
  const lines = [];
  for (const line of block.split(/\r?\n/)) {
    if (/^[ \t]/.test(line) && lines.length > 0) {
      lines[lines.length - 1] += line;
    } else if (line.length > 0) {
      lines.push(line);
    }
  }
  return lines.map((line) => Buffer.from(line, 'latin1').toString('utf8'));
}

function headerValue(value) {
  if (value === null || value === undefined) return '';
  if (typeof value === 'string') return value;
  if (value instanceof Date) return value.toISOString();
  if (typeof value === 'object' && 'text' in value) return value.text;  // address objects
  if (typeof value === 'object' && 'value' in value) {                   // structured (Content-Type)
    const params = Object.entries(value.params || {}).map(([k, v]) => `; ${k}=${v}`).join('');
    return `${value.value}${params}`;
  }
  return String(value);
}

function headersOf(parsed) {
  // mailparser's headerLines keep every occurrence; its `headers` Map keeps decoded values.
  const counts = new Map();
  for (const { key } of parsed.headerLines) counts.set(key, (counts.get(key) || 0) + 1);
  const out = {};
  for (const { key, line } of parsed.headerLines) {
    const colon = line.indexOf(':');
    const rawValue = line.slice(colon + 1).replace(/\r?\n[ \t]/g, ' ').trim();
    // Decoded value where mailparser has one (subject, addresses, dates), raw value otherwise.
    const decoded = counts.get(key) === 1 && parsed.headers.has(key) ? headerValue(parsed.headers.get(key)) : rawValue;
    if (counts.get(key) === 1) {
      out[key] = decoded;
    } else {
      (out[key] ||= []).push(rawValue);
    }
  }
  return out;
}

const smtp = new SMTPServer({
  ...tlsOptions,
  secure: args['implicit-tls'],
  hideSTARTTLS: !args.starttls,
  name: 'smtp-peer.test',
  banner: 'p2p-exchange test SMTP peer',
  logger: false,
  authMethods: ['PLAIN', 'LOGIN'],
  authOptional: authUser === null,
  disabledCommands: authUser === null ? ['AUTH'] : [],
  // Without any TLS, AUTH goes in the clear (a test server on loopback); with --starttls, a
  // client must upgrade first, as real submission servers require.
  allowInsecureAuth: !useTls,

  onAuth(auth, session, callback) {
    if (auth.method !== 'PLAIN' && auth.method !== 'LOGIN') {
      return callback(smtpError(535, 'Error: authentication method not supported'));
    }
    if (auth.username === authUser && auth.password === authPassword) {
      log(`AUTH ${auth.method} ok for ${auth.username}`);
      return callback(null, { user: auth.username });
    }
    log(`AUTH ${auth.method} failed for ${auth.username}`);
    return callback(smtpError(535, 'Error: invalid username or password'));
  },

  onRcptTo(address, session, callback) {
    const rejected = args['reject-rcpt'].find((s) => address.address.includes(s));
    if (rejected !== undefined) {
      rejections.push({ stage: 'rcpt', code: 550, address: address.address, receivedAt: new Date().toISOString() });
      log(`RCPT TO <${address.address}> rejected (550)`);
      return callback(smtpError(550, `No such user here: ${address.address}`));
    }
    return callback();
  },

  onData(stream, session, callback) {
    const chunks = [];
    stream.on('data', (chunk) => chunks.push(chunk));
    stream.on('error', (err) => callback(err));
    stream.on('end', async () => {
      const raw = Buffer.concat(chunks);
      const envelope = envelopeOf(session);
      if (tempFailuresLeft > 0) {
        tempFailuresLeft -= 1;
        rejections.push({ stage: 'data', code: 451, envelope, receivedAt: new Date().toISOString() });
        log(`DATA from <${envelope.mailFrom}> temporarily rejected (451), ${tempFailuresLeft} more to reject`);
        return callback(smtpError(451, 'Try again later (test peer --temp-fail)'));
      }
      if (stream.sizeExceeded) return callback(smtpError(552, 'Message too big'));
      let parsed;
      try {
        parsed = await simpleParser(raw, { skipTextToHtml: true, skipHtmlToText: true, skipImageLinks: true });
      } catch (err) {
        return callback(smtpError(554, `Cannot parse the message: ${err.message}`));
      }
      const contentType = parsed.headers.get('content-type');
      messages.push({
        envelope,
        authUser: session.user ?? null,
        secure: Boolean(session.secure),
        headers: headersOf(parsed),
        rawHeaders: rawHeaderLines(raw),
        subject: parsed.subject ?? null,
        from: parsed.from ? parsed.from.text : null,
        to: parsed.to ? (Array.isArray(parsed.to) ? parsed.to.map((a) => a.text).join(', ') : parsed.to.text) : null,
        text: parsed.text ?? null,
        html: parsed.html ?? false,
        contentType: contentType ? headerValue(contentType) : null,
        messageId: parsed.messageId ?? null,
        raw: raw.toString('utf8'),
        receivedAt: new Date().toISOString(),
      });
      log(`message ${messages.length} accepted: <${envelope.mailFrom}> -> ${envelope.rcptTo.map((r) => `<${r}>`).join(' ')}`);
      return callback(null, 'OK: queued');
    });
  },
});

smtp.on('error', (err) => log(`SMTP error: ${err.message}`));

function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

const control = http.createServer((req, res) => {
  const path = new URL(req.url, 'http://localhost').pathname;
  req.resume();
  req.on('end', () => {
    const route = `${req.method} ${path}`;
    if (route === 'GET /messages') return sendJson(res, 200, messages);
    if (route === 'GET /rejections') return sendJson(res, 200, rejections);
    if (route === 'POST /__control/reset') {
      messages.length = 0;
      rejections.length = 0;
      return sendJson(res, 200, { reset: true });
    }
    return sendJson(res, 404, { error: `unknown control route ${route}`,
      routes: ['GET /messages', 'GET /rejections', 'POST /__control/reset'] });
  });
});

function listen(server, listenPort) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(listenPort, host, () => {
      server.removeListener('error', reject);
      resolve(server.address().port);
    });
  });
}

let smtpPort;
let controlPort;
try {
  smtpPort = await listen(smtp.server, port);
  controlPort = await listen(control, 0);
} catch (err) {
  fail(`cannot listen: ${err.message}`);
}
process.stdout.write(JSON.stringify({ ready: true, port: smtpPort, control: `http://${host}:${controlPort}` }) + '\n');
log(`SMTP on ${host}:${smtpPort}${args.starttls ? ' (STARTTLS)' : ''}${args['implicit-tls'] ? ' (implicit TLS)' : ''}`
  + `${authUser !== null ? ' (AUTH required)' : ''}, control on ${controlPort}`);

function shutdown() {
  control.close();
  smtp.close(() => process.exit(0));
  for (const connection of smtp.connections) connection.close();
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

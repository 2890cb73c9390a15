#!/usr/bin/env node
// The contract test: every response the API test suites received (the
// contract log that tests/http_client.h writes when JOBSTATE_CONTRACT_LOG is
// set) must be one docs/openapi.yaml allows for its route, method and status.
//
//   node tests/contract/validate.mjs [--spec docs/openapi.yaml] LOG_DIR
//
// Fails (exit 1, the first failures listed) when a logged response has
//   - a path no operation of the spec matches, unless the answer is one the
//     spec's x-jobstate-unlisted-path allows (the server's 404 not-found);
//   - a method the path does not define, unless x-jobstate-unlisted-method
//     allows the answer (405 method-not-allowed);
//   - a status the operation does not list;
//   - a Content-Type the response does not list, or a body where it lists none;
//   - a JSON body that does not validate against the response's schema;
//   - a declared header that is missing (required) or does not validate;
// and when the log holds no response at all (a contract test that checks
// nothing is a defect). HEAD is checked as GET, without a body.
//
// The spec is read through `redocly bundle` (the pinned Redocly CLI parses
// the YAML: no YAML package of our own), schemas are JSON Schema 2020-12
// (OpenAPI 3.1) checked with Ajv2020 and ajv-formats.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Ajv2020Module from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';

const Ajv2020 = Ajv2020Module.default ?? Ajv2020Module;
const addFormats = addFormatsModule.default ?? addFormatsModule;
const MAX_LISTED = 20;

function usage(message) {
  console.error(`${message}\nusage: node tests/contract/validate.mjs [--spec docs/openapi.yaml] LOG_DIR`);
  process.exit(2);
}

let specPath = 'docs/openapi.yaml';
let logDir;
const args = process.argv.slice(2);
for (let i = 0; i < args.length; ++i) {
  if (args[i] === '--spec') specPath = args[++i];
  else if (!logDir) logDir = args[i];
  else usage(`unexpected argument ${args[i]}`);
}
if (!logDir || !specPath) usage('no log directory given');

// The spec as JSON, its $refs kept.
function loadSpec(path) {
  const cli = fileURLToPath(new URL('../../node_modules/@redocly/cli/bin/cli.js', import.meta.url));
  const r = spawnSync(process.execPath, [cli, 'bundle', path, '--ext', 'json'], {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
    env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' },
  });
  if (r.status !== 0) {
    console.error(`cannot read ${path} (redocly bundle exited ${r.status}):\n${r.stderr}`);
    process.exit(2);
  }
  return JSON.parse(r.stdout);
}

const spec = loadSpec(specPath);

// Every schema is compiled in the context of one document: the spec's
// components.schemas as $defs, every '#/components/schemas/X' pointing there.
const SPEC_ID = 'https://jobstate.invalid/openapi.json';
function rewriteRefs(node) {
  if (Array.isArray(node)) return node.map(rewriteRefs);
  if (node && typeof node === 'object') {
    const out = {};
    for (const [k, v] of Object.entries(node)) {
      if (k === '$ref' && typeof v === 'string' && v.startsWith('#/components/schemas/'))
        out[k] = `${SPEC_ID}#/$defs/${v.slice('#/components/schemas/'.length)}`;
      else out[k] = rewriteRefs(v);
    }
    return out;
  }
  return node;
}
const ajv = new Ajv2020({ allErrors: true, strict: true, strictTypes: false, strictRequired: false });
addFormats(ajv);
ajv.addSchema({ $id: SPEC_ID, $defs: rewriteRefs(spec.components?.schemas ?? {}) });

// A local reference of the spec ('#/components/responses/X'), followed until it is none.
function deref(node) {
  const seen = new Set();
  while (node && typeof node.$ref === 'string') {
    if (!node.$ref.startsWith('#/') || seen.has(node.$ref)) throw new Error(`cannot follow ${node.$ref}`);
    seen.add(node.$ref);
    node = node.$ref
      .slice(2)
      .split('/')
      .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
      .reduce((n, key) => (n == null ? undefined : n[key]), spec);
  }
  return node;
}

const compiled = new Map();
function validatorFor(key, schema) {
  if (!compiled.has(key)) compiled.set(key, ajv.compile(rewriteRefs(schema)));
  return compiled.get(key);
}

// Path templates, literal ones first ("/ui" before "/ui/{file}").
const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];
const routes = Object.entries(spec.paths ?? {})
  .map(([template, item]) => {
    const params = (template.match(/\{[^}]+\}/g) ?? []).length;
    const escaped = template
      .split(/(\{[^}]+\})/)
      .map((part) => (part.startsWith('{') ? '[^/]+' : part.replace(/[.*+?^$()|[\]\\]/g, '\\$&')))
      .join('');
    return { template, item, params, regex: new RegExp(`^${escaped}$`) };
  })
  .sort((a, b) => a.params - b.params);

function matchRoute(path) {
  // "/ui/" is "/ui": the server does not tell a trailing slash apart.
  const p = path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
  return routes.find((r) => r.regex.test(p));
}

function mediaTypeOf(contentType) {
  return (contentType ?? '').split(';')[0].trim().toLowerCase();
}
const isJson = (media) => media === 'application/json' || media.endsWith('+json');

function describeErrors(errors) {
  return (errors ?? [])
    .slice(0, 8)
    .map((e) => `${e.instancePath || '(body)'} ${e.message}${e.params && Object.keys(e.params).length ? ' ' + JSON.stringify(e.params) : ''} [${e.schemaPath}]`)
    .join('\n      ');
}

// What is wrong with one logged response, or null.
function check(entry, exercised) {
  const method = String(entry.method).toLowerCase();
  const opMethod = method === 'head' ? 'get' : method;
  const route = matchRoute(entry.path);
  let responses;
  let where;
  if (!route) {
    responses = spec['x-jobstate-unlisted-path'];
    where = 'a path the spec does not list (x-jobstate-unlisted-path)';
  } else if (!route.item[opMethod]) {
    responses = spec['x-jobstate-unlisted-method'];
    where = `${route.template}, a method it does not define (x-jobstate-unlisted-method)`;
  } else {
    responses = route.item[opMethod].responses;
    where = `${opMethod.toUpperCase()} ${route.template}`;
    exercised.add(`${where} ${entry.status}`);
  }
  const status = String(entry.status);
  const response = deref(responses?.[status] ?? responses?.[`${status[0]}XX`] ?? responses?.default);
  if (!response) {
    if (!route) return `the path is not in the spec (answered ${status}: a route missing from the spec?)`;
    return `status ${status} is not listed for ${where} (it lists ${Object.keys(responses ?? {}).join(', ') || 'none'})`;
  }
  const headers = entry.headers ?? {};
  for (const [name, declared] of Object.entries(response.headers ?? {})) {
    const h = deref(declared);
    const value = headers[name.toLowerCase()];
    if (value === undefined) {
      if (h.required) return `${where} ${status}: the required header ${name} is missing`;
      continue;
    }
    if (!h.schema) continue;
    const schema = deref(h.schema);
    const isNumber = ['integer', 'number'].includes(schema.type);
    const v = validatorFor(`header ${JSON.stringify(h.schema)}`, h.schema);
    if (!v(isNumber && /^-?[0-9]+(\.[0-9]+)?$/.test(value) ? Number(value) : value))
      return `${where} ${status}: header ${name}: ${JSON.stringify(value)}\n      ${describeErrors(v.errors)}`;
  }
  const content = response.content;
  const body = entry.body ?? '';
  if (!content || Object.keys(content).length === 0) {
    if (body.length > 0) return `${where} ${status}: the spec lists no body, the server sent ${body.length} bytes`;
    return null;
  }
  const media = mediaTypeOf(entry.content_type);
  const mediaObject = content[media];
  if (!mediaObject)
    return `${where} ${status}: Content-Type '${entry.content_type}' is not one the spec lists (${Object.keys(content).join(', ')})`;
  if (method === 'head') return body.length > 0 ? `${where} ${status}: HEAD answered with a body` : null;
  if (!isJson(media) || !mediaObject.schema) return null;
  let parsed;
  try {
    parsed = JSON.parse(body);
  } catch {
    return `${where} ${status}: the body is not JSON`;
  }
  const pointer = `${where} ${status} ${media}`;
  const v = validatorFor(pointer, mediaObject.schema);
  if (!v(parsed)) return `${where} ${status}: the body does not match the schema\n      ${describeErrors(v.errors)}`;
  return null;
}

let files;
try {
  files = readdirSync(logDir).filter((f) => f.endsWith('.jsonl')).sort();
} catch (e) {
  console.error(`contract log ${logDir}: ${e.message}`);
  process.exit(1);
}
const failures = [];
const exercised = new Set();
let checked = 0;
for (const file of files) {
  const lines = readFileSync(join(logDir, file), 'utf8').split('\n');
  lines.forEach((line, i) => {
    if (!line) return;
    let entry;
    try {
      entry = JSON.parse(line);
    } catch {
      failures.push({ at: `${file}:${i + 1}`, what: 'not a JSON line' });
      return;
    }
    ++checked;
    let problem;
    try {
      problem = check(entry, exercised);
    } catch (e) {
      problem = `the validator failed: ${e.message}`;
    }
    if (problem) failures.push({ at: `${file}:${i + 1}`, entry, what: problem });
  });
}

if (checked === 0) {
  console.error(`contract log ${logDir}: no responses at all. The API suites log through tests/http_client.h ` +
    `when JOBSTATE_CONTRACT_LOG is set; a contract test that checks nothing is a defect.`);
  process.exit(1);
}
const operations = new Set(routes.flatMap((r) => METHODS.filter((m) => r.item[m]).map((m) => `${m.toUpperCase()} ${r.template}`)));
const seenOps = new Set([...exercised].map((e) => e.split(' ').slice(0, 2).join(' ')));
const unexercised = [...operations].filter((o) => !seenOps.has(o));
console.log(`${checked} responses from ${files.length} files checked against ${specPath}: ` +
  `${exercised.size} (operation, status) pairs seen, ${operations.size - unexercised.length} of ${operations.size} operations.`);
if (unexercised.length) console.log(`operations no API test called: ${unexercised.join(', ')}`);
if (failures.length === 0) process.exit(0);

console.error(`\n${failures.length} responses do not match ${specPath}; the first ${Math.min(failures.length, MAX_LISTED)}:`);
for (const f of failures.slice(0, MAX_LISTED)) {
  const e = f.entry;
  console.error(`\n  ${e ? `${e.method} ${e.path} -> ${e.status}` : ''} (${f.at}${e?.test ? `, test ${e.test}` : ''})`);
  console.error(`    ${f.what}`);
  if (e?.body) console.error(`    body: ${e.body.length > 400 ? e.body.slice(0, 400) + '…' : e.body}`);
}
process.exit(1);

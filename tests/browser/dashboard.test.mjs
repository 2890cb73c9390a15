// The dashboard (ui/, served by the binary at /ui) in a real browser: Debian's
// chromium, headless, driven by playwright-core, against a real
// `jobstate serve` on 127.0.0.1 with a temporary data directory (or a
// throwaway PostgreSQL: JOBSTATE_TEST_STORE=postgres).
//
//   JOBSTATE_BIN=build/app/jobstate JOBSTATE_SCREENSHOT_DIR=build/screenshots \
//     node --test tests/browser/dashboard.test.mjs
//
// ctest runs it as browser.dashboard (tests/CMakeLists.txt). Every wait has a
// time limit and waits for a condition, never for a fixed time.

import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {spawn, execFileSync} from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {chromium} from 'playwright-core';

const BIN = path.resolve(process.env.JOBSTATE_BIN || 'build/app/jobstate');
const SHOTS = path.resolve(process.env.JOBSTATE_SCREENSHOT_DIR || 'build/screenshots');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const WAIT_MS = 15000;      // the longest any one condition may take
const TEST_MS = 60000;      // the longest one test may take

// JOBSTATE_TEST_STORE=postgres (ctest: pg.browser.dashboard): each server
// gets a throwaway PostgreSQL of its own (scripts/pg-test-server, as the C++
// suites' fixture), instead of a RocksDB directory.
const POSTGRES = process.env.JOBSTATE_TEST_STORE === 'postgres';
const PG_TEST_SERVER = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../scripts/pg-test-server');

// A `jobstate serve` on a free loopback port; stop() ends it and removes its data.
async function startServer(extra = []) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jobstate-ui-test-'));
  let store = ['--data-dir', path.join(dir, 'data')];
  if (POSTGRES) {
    fs.chmodSync(dir, 0o711);  // PostgreSQL runs as an unprivileged user, who must reach dir/pg
    fs.mkdirSync(path.join(dir, 'pg'));
    const uri = execFileSync(PG_TEST_SERVER, ['start', path.join(dir, 'pg')], {encoding: 'utf8', timeout: 120000}).trim();
    assert.match(uri, /^postgresql:\/\//, `pg-test-server start printed ${uri}`);
    store = ['--store', uri];
  }
  const child = spawn(BIN, ['serve', ...store, '--listen', '127.0.0.1:0',
    '--watchdog-interval-ms', '50', ...extra], {stdio: ['ignore', 'pipe', 'pipe']});
  let output = '';
  child.stderr.on('data', (d) => { output += d; });
  const base = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start within 15 s:\n${output}`)), 15000);
    child.stdout.on('data', (d) => {
      output += d;
      const m = output.match(/serving on (http:\/\/127\.0\.0\.1:\d+)/);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    child.on('error', (e) => { clearTimeout(timer); reject(e); });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`serve exited with ${code}:\n${output}`)); });
  });
  return {
    base, dir,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10000);
        await exited;
        clearTimeout(timer);
      }
      if (POSTGRES) execFileSync(PG_TEST_SERVER, ['stop', path.join(dir, 'pg')], {stdio: 'ignore', timeout: 60000});
      fs.rmSync(dir, {recursive: true, force: true});
    },
  };
}

// One HTTP call to the API as a client or worker would make it (no Origin).
async function call(base, method, p, body, headers = {}) {
  const init = {method, headers: {...headers}, signal: AbortSignal.timeout(10000)};
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const r = await fetch(base + p, init);
  const text = await r.text();
  return {status: r.status, headers: r.headers, json: text ? JSON.parse(text) : null};
}

let server;
let browser;
const consoleErrors = [];
const dialogs = [];

async function createJob(body) {
  const r = await call(server.base, 'POST', '/v1/jobs', body);
  assert.equal(r.status, 202, JSON.stringify(r.json));
  return r.json;
}
async function startJob(id) {
  const r = await call(server.base, 'POST', `/v1/jobs/${id}/start`, {worker: 'test-host/4242'});
  assert.equal(r.status, 200, JSON.stringify(r.json));
  return r.headers.get('job-lease');
}
async function heartbeat(id, lease, progress) {
  const r = await call(server.base, 'POST', `/v1/jobs/${id}/heartbeat`, {progress}, {'Job-Lease': lease});
  assert.equal(r.status, 200, JSON.stringify(r.json));
  return r.json;
}

// A page that records dialogs (an alert would be an XSS) and console errors
// (a CSP violation is one).
async function openPage(viewport = {width: 1280, height: 800}) {
  const context = await browser.newContext({viewport});
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  page.on('dialog', async (d) => { dialogs.push(d.message()); await d.dismiss(); });
  page.on('pageerror', (e) => consoleErrors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(`console: ${m.text()}`); });
  return page;
}

// Waits until fn(arg) is true in the page; the message says what did not happen.
async function until(page, what, fn, arg) {
  try {
    await page.waitForFunction(fn, arg, {timeout: WAIT_MS, polling: 50});
  } catch (e) {
    throw new Error(`timed out waiting for: ${what} (${e.message.split('\n')[0]})`);
  }
}

async function markNoReload(page) {
  await page.evaluate(() => { window.__noReload = true; });
}
async function assertNoReload(page) {
  assert.equal(await page.evaluate(() => window.__noReload), true, 'the page reloaded');
}

async function shot(page, name) {
  fs.mkdirSync(SHOTS, {recursive: true});
  await page.screenshot({path: path.join(SHOTS, `${name}.png`), fullPage: false});
}

before(async () => {
  assert.ok(fs.existsSync(BIN), `no jobstate binary at ${BIN} (set JOBSTATE_BIN)`);
  server = await startServer();
  browser = await chromium.launch({executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'], timeout: 30000});
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

test('the job list shows created jobs, newest first, and new ones without a reload', {timeout: TEST_MS}, async () => {
  const a = await createJob({type: 'thumbnail', params: {src: 'a.png'}});
  const b = await createJob({type: 'thumbnail', params: {src: 'b.png'}});
  const c = await createJob({type: 'report', params: {month: '2026-11'}});
  const page = await openPage();
  await page.goto(`${server.base}/ui/#/jobs`);
  await until(page, 'the three jobs listed', (ids) => ids.every((id) => document.querySelector(`tr[data-job-id="${id}"]`)), [a.id, b.id, c.id]);
  const order = await page.$$eval('#jobs-table tbody tr', (rows) => rows.map((r) => r.dataset.jobId));
  assert.deepEqual(order.slice(0, 3), [c.id, b.id, a.id], 'newest first');

  await markNoReload(page);
  const d = await createJob({type: 'thumbnail', params: {src: 'd.png'}});
  await until(page, 'the new job appears at the top', (id) => {
    const first = document.querySelector('#jobs-table tbody tr');
    return first && first.dataset.jobId === id;
  }, d.id);
  await assertNoReload(page);

  await page.fill('#filter-type', 'report');
  await page.click('.filters button[type=submit]');
  await until(page, 'only report jobs listed', (id) => {
    const rows = [...document.querySelectorAll('#jobs-table tbody tr[data-job-id]')];
    return rows.length === 1 && rows[0].dataset.jobId === id;
  }, c.id);
  await page.close();
});

test('a job page moves its progress bar with each heartbeat, without a reload', {timeout: TEST_MS}, async () => {
  const job = await createJob({type: 'thumbnail', params: {src: 'cat.png'}, labels: {team: 'media'}, heartbeat_timeout_s: 600});
  const lease = await startJob(job.id);
  const page = await openPage();
  await page.goto(`${server.base}/ui/#/jobs/${job.id}`);
  await until(page, 'state running', () => document.querySelector('.job-head .state-running'));
  await markNoReload(page);

  await heartbeat(job.id, lease, {fraction: 0.42, message: 'page 42/100'});
  await until(page, 'progress 42% with its message', () =>
    document.querySelector('#progress [role=progressbar]')?.getAttribute('aria-valuenow') === '42' &&
    document.querySelector('#progress-message')?.textContent === 'page 42/100');
  await heartbeat(job.id, lease, {fraction: 0.9, message: 'page 90/100'});
  await until(page, 'progress 90%', () =>
    document.querySelector('#progress [role=progressbar]')?.getAttribute('aria-valuenow') === '90');
  const width = await page.$eval('#progress .bar-fill', (f) => f.getBoundingClientRect().width / f.parentElement.getBoundingClientRect().width);
  assert.ok(width > 0.85 && width <= 0.91, `the bar is drawn at 90% (${width})`);
  await until(page, 'the heartbeats in the timeline with their hashes', () => {
    const rows = [...document.querySelectorAll('#timeline tbody tr')];
    return rows.length === 4 && rows.every((r) => /^[0-9a-f]{64}$/.test(r.querySelector('.hash')?.textContent || ''));
  });
  assert.ok(await page.getByText('test-host/4242').first().isVisible());
  await assertNoReload(page);
  await shot(page, 'job-running-1280x800');
  await page.close();
});

test('a job whose heartbeats stop turns failed with heartbeat_timeout', {timeout: TEST_MS}, async () => {
  const job = await createJob({type: 'report', heartbeat_timeout_s: 2});
  const page = await openPage();
  await page.goto(`${server.base}/ui/#/jobs/${job.id}`);
  await until(page, 'state queued', () => document.querySelector('.job-head .state-queued'));
  await markNoReload(page);
  const lease = await startJob(job.id);
  await heartbeat(job.id, lease, {fraction: 0.3, message: 'stuck on page 30'});
  await until(page, 'state failed with heartbeat_timeout', () =>
    document.querySelector('.job-head .state-failed') &&
    document.querySelector('#error .code')?.textContent === 'heartbeat_timeout');
  const error = await page.textContent('#error');
  assert.match(error, /no heartbeat within 2 s/);
  assert.match(error, /stuck on page 30/, 'the last progress from the error details');
  await assertNoReload(page);
  await shot(page, 'job-failed-1280x800');
  await page.close();
});

test('user input is shown as text, never as markup', {timeout: TEST_MS}, async () => {
  const payload = '<img src=x onerror=alert(1)>';
  const job = await createJob({type: 'thumbnail', params: {src: payload, note: '<script>alert(2)</script>'},
    labels: {owner: '<b onmouseover=alert(3)>x</b>'}});
  const lease = await startJob(job.id);
  await heartbeat(job.id, lease, {fraction: 0.5, message: '<img src=y onerror=alert(4)>'});
  const r = await call(server.base, 'POST', `/v1/jobs/${job.id}/fail`,
    {error: {code: 'bad_input', message: '<svg onload=alert(5)>', details: {stderr_tail: '<iframe src=javascript:alert(6)>'}}},
    {'Job-Lease': lease});
  assert.equal(r.status, 200);
  const page = await openPage();
  await page.goto(`${server.base}/ui/#/jobs/${job.id}`);
  await until(page, 'the failed job shown', () => document.querySelector('.job-head .state-failed'));
  assert.ok(await page.getByText(payload).first().isVisible(), 'the params payload is visible as text');
  assert.ok(await page.getByText('<svg onload=alert(5)>').first().isVisible(), 'the error message is visible as text');
  const injected = await page.evaluate(() => document.querySelectorAll('main img, main script, main svg:not(.chart), main iframe, main b[onmouseover]').length);
  assert.equal(injected, 0, 'no element was made from user input');
  await page.goto(`${server.base}/ui/#/`);
  await until(page, 'the overview lists the failure', (id) => document.querySelector(`#failures a[href="#/jobs/${id}"]`), job.id);
  assert.equal(await page.evaluate(() => document.querySelectorAll('main img, main script, main iframe').length), 0);
  assert.deepEqual(dialogs, [], 'no dialog opened');
  await page.close();
});

test('the cancel button cancels a running job', {timeout: TEST_MS}, async () => {
  const job = await createJob({type: 'thumbnail', heartbeat_timeout_s: 600});
  const lease = await startJob(job.id);
  const page = await openPage();
  await page.goto(`${server.base}/ui/#/jobs/${job.id}`);
  await until(page, 'state running', () => document.querySelector('.job-head .state-running'));
  await page.click('#cancel');
  await page.click('#cancel');  // the second click confirms
  await until(page, 'cancel requested shown', () => document.querySelector('#cancel-requested'));
  const now = await call(server.base, 'GET', `/v1/jobs/${job.id}`);
  assert.equal(now.json.cancel_requested, true, 'the server recorded the cancel request');
  const beat = await heartbeat(job.id, lease);
  assert.equal(beat.cancel_requested, true);
  const done = await call(server.base, 'POST', `/v1/jobs/${job.id}/cancelled`, {reason: 'stopped'}, {'Job-Lease': lease});
  assert.equal(done.status, 200);
  await until(page, 'state cancelled', () => document.querySelector('.job-head .state-cancelled') && !document.querySelector('#cancel'));
  await until(page, 'cancel_requested and cancelled in the timeline', () =>
    document.querySelector('#timeline .ev-cancel_requested') && document.querySelector('#timeline .ev-cancelled'));
  await page.close();
});

test('the overview counts jobs by state, plots events per minute, and the footer shows the audit head', {timeout: TEST_MS}, async () => {
  const page = await openPage();
  await page.goto(`${server.base}/ui/#/`);
  const head = (await call(server.base, 'GET', '/v1/audit/head')).json;
  await until(page, 'the audit head in the footer', (h) =>
    document.querySelector('#audit-seq').textContent === String(h.seq) && document.querySelector('#audit-hash').textContent === h.hash, head);
  const jobs = (await call(server.base, 'GET', '/v1/jobs?limit=1000')).json.jobs;
  const expected = {};
  for (const j of jobs) expected[j.state] = (expected[j.state] || 0) + 1;
  await until(page, 'counts by state', (want) => ['queued', 'running', 'succeeded', 'failed', 'cancelled'].every((s) =>
    document.querySelector(`#counts [data-state=${s}] .n`)?.textContent === String(want[s] || 0)), expected);
  await until(page, 'every event plotted', (n) =>
    [...document.querySelectorAll('#events-chart rect.barv')].reduce((sum, r) => sum + Number(r.dataset.count), 0) === n, head.seq);
  await until(page, 'heartbeat_timeout among the failures', () => /heartbeat_timeout/.test(document.querySelector('#failures').textContent));
  await shot(page, 'overview-1280x800');

  // Live: a new job is counted and plotted without a reload.
  await markNoReload(page);
  await createJob({type: 'thumbnail'});
  await until(page, 'the new job counted', (n) => document.querySelector('#counts [data-state=queued] .n')?.textContent === String(n), (expected.queued || 0) + 1);
  await until(page, 'the new event plotted', (n) =>
    [...document.querySelectorAll('#events-chart rect.barv')].reduce((sum, r) => sum + Number(r.dataset.count), 0) === n, head.seq + 1);
  await assertNoReload(page);
  await page.close();
});

test('at a phone-sized viewport nothing overflows sideways', {timeout: TEST_MS}, async () => {
  const list = await call(server.base, 'GET', '/v1/jobs?state=failed&limit=1');
  const page = await openPage({width: 390, height: 844});
  for (const [hash, name] of [['#/', 'overview-390x844'], ['#/jobs', 'jobs-390x844'], [`#/jobs/${list.json.jobs[0].id}`, 'job-390x844']]) {
    await page.goto(`${server.base}/ui/${hash}`);
    await until(page, `${hash} rendered`, () => document.querySelector('main h1') &&
      (document.querySelector('#counts .count') || document.querySelector('#jobs-table tbody tr') || document.querySelector('#timeline tbody tr')));
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 0, `${hash} is ${overflow}px wider than the screen`);
    await shot(page, name);
  }
  await page.close();
});

test('the job list at 1280x800', {timeout: TEST_MS}, async () => {
  const page = await openPage();
  await page.goto(`${server.base}/ui/#/jobs`);
  await until(page, 'jobs listed', () => document.querySelectorAll('#jobs-table tbody tr[data-job-id]').length > 3);
  await shot(page, 'jobs-1280x800');
  await page.close();
});

test('no CSP violation or script error on any page', () => {
  assert.deepEqual(consoleErrors, []);
});

test('with tokens, the dashboard asks for one and sends it as a bearer token', {timeout: TEST_MS}, async () => {
  const tokens = path.join(server.dir, 'tokens.json');
  const out = execFileSync(BIN, ['token', 'add', '--tokens', tokens, '--role', 'admin', '--name', 'dashboard-test'], {encoding: 'utf8', timeout: 10000});
  const token = out.trim().split('\n').pop().trim();
  assert.match(token, /^jst_/);
  const secured = await startServer(['--tokens', tokens]);
  try {
    const created = await call(secured.base, 'POST', '/v1/jobs', {type: 'secured'}, {Authorization: `Bearer ${token}`});
    assert.equal(created.status, 202);
    const page = await openPage();
    await page.goto(`${secured.base}/ui/#/jobs`);
    await page.locator('#auth-token').waitFor({state: 'visible'});
    await page.fill('#auth-token', 'jst_wrong');
    await page.click('#auth-form button[type=submit]');
    await until(page, 'a refused token asks again', () => !document.querySelector('#auth').hidden &&
      /did not accept/.test(document.querySelector('#auth-message').textContent));
    await page.fill('#auth-token', token);
    await page.click('#auth-form button[type=submit]');
    await until(page, 'the job listed once the token is given', (id) => document.querySelector(`tr[data-job-id="${id}"]`), created.json.id);
    assert.equal(await page.evaluate(() => sessionStorage.getItem('jobstate.token')), token);
    await page.goto(`${secured.base}/ui/#/jobs/${created.json.id}`);
    await page.click('#cancel');
    await page.click('#cancel');
    await until(page, 'cancelled with the token', () => document.querySelector('.job-head .state-cancelled'));
    await page.close();
  } finally {
    await secured.stop();
  }
});

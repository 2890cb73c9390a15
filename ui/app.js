// The dashboard's entry point: hash routing (#/, #/jobs?…, #/jobs/<id>),
// the token prompt, and the footer's audit head. Each view gets an
// AbortSignal that fires when the user navigates away, which ends its
// long-polls and timers.

import {onUnauthorized, setToken, token, isAbort} from './api.js';
import {clear, errorBox} from './dom.js';
import * as feed from './feed.js';
import {renderOverview} from './overview.js';
import {renderJobs} from './jobs.js';
import {renderJob} from './job.js';

const main = document.getElementById('main');
let current = null;

function parseRoute() {
  const hash = location.hash.replace(/^#/, '') || '/';
  const q = hash.indexOf('?');
  const path = q < 0 ? hash : hash.slice(0, q);
  const params = new URLSearchParams(q < 0 ? '' : hash.slice(q + 1));
  const parts = path.split('/').filter(Boolean);
  if (parts[0] === 'jobs' && parts[1]) return {name: 'job', id: decodeURIComponent(parts[1]), params};
  if (parts[0] === 'jobs') return {name: 'jobs', params};
  return {name: 'overview', params};
}

function route() {
  if (current) current.abort();
  current = new AbortController();
  const signal = current.signal;
  const r = parseRoute();
  for (const a of document.querySelectorAll('nav a')) {
    a.classList.toggle('active', a.dataset.route === (r.name === 'job' ? 'jobs' : r.name));
  }
  clear(main);
  const view = r.name === 'job' ? renderJob : r.name === 'jobs' ? renderJobs : renderOverview;
  view(main, r, signal).catch((e) => {
    if (isAbort(e) || signal.aborted) return;
    if (e.status !== 401) console.error(e);
    main.append(errorBox(e));
  });
}

const auth = document.getElementById('auth');
const authForm = document.getElementById('auth-form');
const authInput = document.getElementById('auth-token');
const authMessage = document.getElementById('auth-message');
const forget = document.getElementById('forget-token');

onUnauthorized(() => {
  if (!auth.hidden) return;
  auth.hidden = false;
  if (token()) authMessage.textContent = 'The server did not accept this token (revoked or mistyped). Paste another one.';
  authInput.focus();
});

authForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const value = authInput.value.trim();
  if (!value) return;
  setToken(value);
  authInput.value = '';
  auth.hidden = true;
  forget.hidden = false;
  feed.wake();
  route();
});

forget.addEventListener('click', () => {
  setToken(null);
  forget.hidden = true;
  location.reload();
});
forget.hidden = !token();

feed.onHead((h) => {
  document.getElementById('audit-seq').textContent = String(h.seq);
  const hash = document.getElementById('audit-hash');
  hash.textContent = h.hash || '–';
  hash.title = h.hash || '';
});
const live = document.getElementById('live');
feed.onStatus((s) => {
  live.textContent = s;
  live.dataset.status = s;
});

window.addEventListener('hashchange', route);
route();
feed.start();

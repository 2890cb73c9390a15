// The job list: GET /v1/jobs with state and type filters, newest first,
// PAGE_SIZE jobs a page. The page token lives in the hash (#/jobs?page=…)
// so Back returns to newer pages. The page shown is fetched again (at most
// once a second) whenever the global feed brings events, so new jobs appear
// on the first page and states change in place, without a reload.

import {api, enc} from './api.js';
import {el, fill, errorBox, relative, stateBadge, progressBar} from './dom.js';
import {subscribe, throttle} from './feed.js';

const PAGE_SIZE = 25;
export const STATES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'];

function hashFor(state, type, page) {
  const q = new URLSearchParams();
  if (state) q.set('state', state);
  if (type) q.set('type', type);
  if (page) q.set('page', page);
  const s = q.toString();
  return `#/jobs${s ? `?${s}` : ''}`;
}

export async function renderJobs(root, route, signal) {
  const state = route.params.get('state') || '';
  const type = route.params.get('type') || '';
  const page = route.params.get('page') || '';

  const stateSelect = el('select', {id: 'filter-state', name: 'state'},
    el('option', {value: ''}, 'any state'),
    STATES.map((s) => el('option', {value: s, selected: s === state}, s)));
  const typeInput = el('input', {id: 'filter-type', name: 'type', value: type, placeholder: 'any type',
    list: 'known-types', autocomplete: 'off', spellcheck: 'false'});
  const types = el('datalist', {id: 'known-types'});
  const form = el('form', {class: 'filters', role: 'search'},
    el('label', {for: 'filter-state'}, 'State'), stateSelect,
    el('label', {for: 'filter-type'}, 'Type'), typeInput, types,
    el('button', {type: 'submit'}, 'Filter'),
    (state || type) ? el('a', {href: '#/jobs', class: 'button secondary'}, 'Clear') : null);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    location.hash = hashFor(stateSelect.value, typeInput.value.trim(), '');
  });
  stateSelect.addEventListener('change', () => { location.hash = hashFor(stateSelect.value, typeInput.value.trim(), ''); });

  const tbody = el('tbody');
  const table = el('table', {class: 'jobs', id: 'jobs-table'},
    el('thead', null, el('tr', null,
      el('th', null, 'Job'), el('th', null, 'Type'), el('th', null, 'State'), el('th', {class: 'wide'}, 'Progress'),
      el('th', null, 'Created'), el('th', {class: 'wide'}, 'Worker'))),
    tbody);
  const status = el('p', {class: 'muted', id: 'jobs-status'});
  const pager = el('div', {class: 'pager'});
  const errors = el('div');
  root.append(el('h1', null, 'Jobs'), form, errors, el('div', {class: 'scroll'}, table), status, pager);

  const seen = new Set();
  let first = true;
  async function load() {
    const q = new URLSearchParams({limit: String(PAGE_SIZE)});
    if (state) q.set('state', state);
    if (type) q.set('type', type);
    if (page) q.set('page_token', page);
    let data;
    try {
      ({data} = await api(`/v1/jobs?${q}`, {signal}));
    } catch (e) {
      if (signal.aborted) return;
      fill(errors, errorBox(e));
      return;
    }
    fill(errors);
    fill(tbody);
    const now = Date.now();
    for (const job of data.jobs) {
      const fresh = !first && !seen.has(job.id);
      seen.add(job.id);
      if (!types.querySelector(`option[value="${CSS.escape(job.type)}"]`)) types.append(el('option', {value: job.type}));
      const p = job.progress;
      tbody.append(el('tr', {class: fresh ? 'fresh' : null, 'data-job-id': job.id},
        el('td', {class: 'id'}, el('a', {href: `#/jobs/${enc(job.id)}`, title: job.id}, job.id.slice(0, 8))),
        el('td', {class: 'type'}, job.type),
        el('td', null, stateBadge(job.state),
          job.error ? el('span', {class: 'code'}, job.error.code) : null,
          job.cancel_requested && job.state === 'running' ? el('span', {class: 'muted'}, ' cancel requested') : null),
        el('td', {class: 'wide'}, p && p.fraction !== null && p.fraction !== undefined
          ? el('span', {class: 'mini'}, progressBar(p.fraction), ` ${Math.round(p.fraction * 100)}%`) : (p && p.message) || ''),
        el('td', null, el('span', {title: job.created_at}, relative(job.created_at, now))),
        el('td', {class: 'wide worker'}, job.worker || '')));
    }
    if (!data.jobs.length) tbody.append(el('tr', null, el('td', {colspan: 6, class: 'muted'}, 'No jobs match.')));
    first = false;
    status.textContent = `${data.jobs.length} job${data.jobs.length === 1 ? '' : 's'} on this page, newest first` +
      (page ? '' : '; new jobs appear here as they are created');
    fill(pager, 
      page ? el('a', {href: hashFor(state, type, ''), class: 'button secondary'}, '« Newest') : null,
      data.next_page_token ? el('a', {href: hashFor(state, type, data.next_page_token), class: 'button secondary', id: 'older'}, 'Older »') : null);
  }

  await load();
  const refresh = throttle(() => { if (!signal.aborted) load(); }, 1000);
  const unsubscribe = subscribe(refresh);
  signal.addEventListener('abort', unsubscribe, {once: true});
}

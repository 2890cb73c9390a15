// A job's page: everything its resource carries, its events with their
// hashes, live. After the first GET it long-polls
// GET /v1/jobs/{id}/wait?after_version=V (answered as soon as the job's
// version passes V, or after WAIT_S with the job unchanged) until the job is
// terminal, and reads the new events after each change.

import {api, enc, isAbort, sleep, ApiError} from './api.js';
import {el, fill, errorBox, json, relative, timeEl, stateBadge, progressBar} from './dom.js';

const WAIT_S = 30;
const EVENTS_PAGE = 100;
const EVENT_PAGES_PER_LOAD = 5;   // at most 500 events at a time; "Load more" for the rest
const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

function row(label, ...value) {
  return [el('dt', null, label), el('dd', null, ...value)];
}

function pre(value, cls) {
  return el('pre', {class: cls || 'json'}, json(value));
}

// The error of a job, with what its details usually hold named: a
// command's exit code or signal and stderr tail, the last progress before
// a timeout, the deadlines. The details stay shown in full below.
function errorView(error, id) {
  if (!error) return null;
  const d = error.details && typeof error.details === 'object' && !Array.isArray(error.details) ? error.details : null;
  const facts = [];
  if (d) {
    if ('exit_code' in d) facts.push(row('Exit code', d.exit_code === null ? 'unknown' : String(d.exit_code)));
    if ('signal' in d) facts.push(row('Signal', String(d.signal), d.signal_name ? ` (${d.signal_name})` : ''));
    for (const k of ['last_heartbeat_at', 'deadline_at', 'started_at', 'timeout_at', 'claimable_at']) {
      if (typeof d[k] === 'string') facts.push(row(k.replace(/_/g, ' '), timeEl(d[k])));
    }
    if (d.progress && typeof d.progress === 'object') {
      const p = d.progress;
      facts.push(row('Last progress', typeof p.fraction === 'number' ? `${Math.round(p.fraction * 100)}% ` : '', p.message || ''));
    }
    if (typeof d.attempt === 'number') facts.push(row('Attempt', String(d.attempt)));
  }
  return el('div', {class: 'job-error', id},
    el('p', null, el('span', {class: 'code'}, error.code), ' ', error.message || '',
      error.retryable ? el('span', {class: 'muted'}, ' (retryable)') : null),
    facts.length ? el('dl', {class: 'facts'}, facts) : null,
    d && typeof d.stderr_tail === 'string' ? [el('h3', null, 'stderr (tail)'), el('pre', {class: 'stderr'}, d.stderr_tail)] : null,
    error.details !== undefined && error.details !== null ? el('details', null, el('summary', null, 'Details (JSON)'), pre(error.details)) : null);
}

function eventSummary(e) {
  const d = e.data || {};
  switch (e.type) {
    case 'created': return `type ${d.type}`;
    case 'started': return d.worker ? `worker ${d.worker}` : '';
    case 'heartbeat': {
      const p = d.progress;
      if (!p) return 'alive';
      return [typeof p.fraction === 'number' ? `${Math.round(p.fraction * 100)}%` : null, p.message].filter((x) => x !== null && x !== undefined && x !== '').join(' ');
    }
    case 'failed': return d.error ? `${d.error.code}${d.error.message ? `: ${d.error.message}` : ''}` : '';
    case 'retry_scheduled': return `attempt ${d.attempt} after ${d.error ? d.error.code : 'error'}, not before ${d.not_before}`;
    case 'cancel_requested': case 'cancelled': return d.reason || '';
    case 'succeeded': return d.result === undefined || d.result === null ? '' : JSON.stringify(d.result).slice(0, 200);
    default: return '';
  }
}

export async function renderJob(root, route, signal) {
  const id = route.id;
  if (!UUID.test(id)) {
    root.append(el('h1', null, 'Job'), el('p', {class: 'error'}, 'Not a job id: ', id));
    return;
  }
  const head = el('div', {class: 'job-head'});
  const body = el('div', {class: 'job-body'});
  const errors = el('div');
  const timelineBody = el('tbody');
  const more = el('button', {type: 'button', class: 'secondary', hidden: true}, 'Load more events');
  const timeline = el('section', {class: 'card timeline'},
    el('h2', null, 'Events'),
    el('div', {class: 'scroll'}, el('table', {id: 'timeline'},
      el('thead', null, el('tr', null, el('th', null, 'v'), el('th', null, 'Time'), el('th', null, 'Event'),
        el('th', {class: 'wide'}, 'Details'), el('th', null, 'seq'), el('th', null, 'Hash'))),
      timelineBody)),
    more);
  root.append(el('p', {class: 'crumbs'}, el('a', {href: '#/jobs'}, '« Jobs')), head, errors, body, timeline);

  let job = null;
  let eventsAfter = 0;      // the last version shown in the timeline
  let eventsPending = false; // more events exist than were read (Load more)
  let confirmTimer = null;

  // One reader of the timeline at a time (the live loop and Load more).
  let loading = Promise.resolve();
  function loadEvents() {
    loading = loading.then(readEvents, readEvents);
    return loading;
  }
  async function readEvents() {
    for (let i = 0; i < EVENT_PAGES_PER_LOAD; i++) {
      const {data} = await api(`/v1/jobs/${enc(id)}/events?after_version=${eventsAfter}&limit=${EVENTS_PAGE}`, {signal});
      for (const e of data.events) {
        timelineBody.append(el('tr', {class: `ev ev-${e.type}`, 'data-version': e.version},
          el('td', null, String(e.version)),
          el('td', null, timeEl(e.at)),
          el('td', null, el('span', {class: `evtype evtype-${e.type}`}, e.type)),
          el('td', {class: 'wide summary'}, eventSummary(e)),
          el('td', null, String(e.seq)),
          el('td', null, el('code', {class: 'hash', title: e.hash}, e.hash))));
        eventsAfter = e.version;
      }
      eventsPending = data.next_after_version !== null && data.next_after_version !== undefined;
      if (!eventsPending) break;
    }
    more.hidden = !eventsPending;
  }
  more.addEventListener('click', () => { loadEvents().catch((e) => { if (!isAbort(e)) errors.append(errorBox(e)); }); });

  async function cancel(button) {
    if (!button.classList.contains('confirm')) {
      button.classList.add('confirm');
      button.textContent = 'Really cancel? Click again';
      clearTimeout(confirmTimer);
      confirmTimer = setTimeout(() => { button.classList.remove('confirm'); button.textContent = 'Cancel job'; }, 5000);
      return;
    }
    clearTimeout(confirmTimer);
    button.disabled = true;
    button.textContent = 'Cancelling…';
    try {
      const {data} = await api(`/v1/jobs/${enc(id)}/cancel`, {method: 'POST', body: {reason: 'cancelled from the dashboard'}, signal});
      show(data);
    } catch (e) {
      if (isAbort(e)) return;
      fill(errors, errorBox(e));
      button.disabled = false;
      button.classList.remove('confirm');
      button.textContent = 'Cancel job';
    }
  }

  function show(j) {
    // Unchanged (a long-poll that timed out) or older (an answer that arrived
    // late): keep what is shown, a half-confirmed cancel button included.
    if (job && j.version <= job.version) return;
    job = j;
    document.title = `${j.type} ${j.state} – jobstate`;
    const running = j.state === 'running';
    let action = null;
    if ((running || j.state === 'queued') && !j.cancel_requested) {
      action = el('button', {type: 'button', id: 'cancel', class: 'danger'}, 'Cancel job');
      action.addEventListener('click', () => cancel(action));
    } else if (running && j.cancel_requested) {
      action = el('span', {class: 'notice', id: 'cancel-requested'}, 'Cancel requested: waiting for the worker to stop');
    }
    fill(head, 
      el('h1', null, el('span', {class: 'type'}, j.type), ' ', stateBadge(j.state)),
      el('p', {class: 'muted id'}, j.id, ` · version ${j.version} · attempt ${j.attempt} of ${j.max_attempts}`),
      action);

    const p = j.progress || {};
    const fraction = typeof p.fraction === 'number' ? p.fraction : (j.state === 'succeeded' ? 1 : null);
    const progress = el('section', {class: 'card progress', id: 'progress'},
      el('h2', null, 'Progress'),
      progressBar(fraction, 'job progress'),
      el('p', {class: 'progress-text'},
        el('b', {id: 'progress-pct'}, fraction === null ? '–' : `${Math.round(fraction * 1000) / 10}%`),
        ' ', el('span', {id: 'progress-message'}, p.message || '')),
      p.details !== null && p.details !== undefined ? pre(p.details) : null);

    const deadline = j.deadline_at
      ? [timeEl(j.deadline_at), ' ', el('span', {class: 'muted', id: 'deadline-rel', 'data-at': j.deadline_at}, `(${relative(j.deadline_at)})`)]
      : ['–'];
    const times = el('section', {class: 'card'}, el('h2', null, 'Times'), el('dl', {class: 'facts'},
      row('Created', timeEl(j.created_at)),
      row('Not before', timeEl(j.not_before)),
      row('Started', timeEl(j.started_at)),
      row('Last heartbeat', timeEl(j.last_heartbeat_at)),
      row('Heartbeat deadline', ...deadline),
      row('Finished', timeEl(j.finished_at)),
      row('Heartbeat timeout', `${j.heartbeat_timeout_s} s`),
      row('Execution timeout', j.execution_timeout_s ? `${j.execution_timeout_s} s` : '–'),
      row('Queue timeout', j.queue_timeout_s ? `${j.queue_timeout_s} s` : '–')));

    const labels = Object.entries(j.labels || {});
    const who = el('section', {class: 'card'}, el('h2', null, 'Run'), el('dl', {class: 'facts'},
      row('Worker', el('span', {id: 'worker'}, j.worker || '–')),
      row('Priority', String(j.priority)),
      row('Retry', j.retry ? JSON.stringify(j.retry) : 'none'),
      row('Lease hash', el('code', {class: 'hash', title: j.lease_hash || ''}, j.lease_hash || '–')),
      row('Labels', labels.length ? el('ul', {class: 'labels'}, labels.map(([k, v]) => el('li', null, el('b', null, k), '=', v))) : '–')));

    const outcome = [];
    if (j.error) outcome.push(el('section', {class: 'card bad'}, el('h2', null, 'Error'), errorView(j.error, 'error')));
    if (j.last_error) outcome.push(el('section', {class: 'card'}, el('h2', null, 'Previous attempt\u2019s error'), errorView(j.last_error, 'last-error')));
    if (j.state === 'succeeded' || j.result !== null) outcome.push(el('section', {class: 'card good'}, el('h2', null, 'Result'), el('div', {id: 'result'}, pre(j.result))));

    fill(body, 
      el('div', {class: 'grid'}, progress, ...outcome, times, who,
        el('section', {class: 'card wide-card'}, el('h2', null, 'Params'), el('div', {id: 'params'}, pre(j.params)))));
  }

  const first = await api(`/v1/jobs/${enc(id)}`, {signal});
  show(first.data);
  await loadEvents();

  // The deadline's countdown, once a second while the page is open.
  const ticker = setInterval(() => {
    const rel = document.getElementById('deadline-rel');
    if (rel) rel.textContent = `(${relative(rel.dataset.at)})`;
  }, 1000);
  signal.addEventListener('abort', () => { clearInterval(ticker); clearTimeout(confirmTimer); }, {once: true});

  let backoff = 1000;
  while (!signal.aborted && !TERMINAL.has(job.state)) {
    try {
      const {data} = await api(`/v1/jobs/${enc(id)}/wait?timeout_s=${WAIT_S}&after_version=${job.version}`, {signal});
      backoff = 1000;
      show(data);
      if (!eventsPending && data.version > eventsAfter) await loadEvents();
    } catch (e) {
      if (isAbort(e) || signal.aborted) return;
      fill(errors, errorBox(e));
      if (e instanceof ApiError && e.status === 404) return;
      await sleep(backoff, signal);
      backoff = Math.min(backoff * 2, 15000);
      fill(errors);
    }
  }
}

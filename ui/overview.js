// The overview: jobs by state, the latest failures and a plot of events per
// minute over the last hour, kept current from the global feed.
//
// Bounds: the counts read one page of at most COUNT_LIMIT jobs per state
// (beyond, "1000+": the API has no count endpoint); the plot reads the feed
// backwards from the audit head in pages of at most 1000 events, at most
// PLOT_REQUESTS requests, and says so when the hour held more.

import {api, isAbort} from './api.js';
import {el, fill, svg, errorBox, relative, stateBadge} from './dom.js';
import {subscribe, currentHead, throttle} from './feed.js';
import {STATES} from './jobs.js';

const COUNT_LIMIT = 1000;
const FAILURES_SHOWN = 8;
const MINUTES = 60;
const PLOT_PAGE = 1000;
const PLOT_REQUESTS = 10;
const MAX_TIMES = 200000;

async function countState(state, signal) {
  const {data} = await api(`/v1/jobs?state=${state}&limit=${COUNT_LIMIT}`, {signal});
  return {state, count: data.jobs.length, more: data.next_page_token !== null, jobs: data.jobs};
}

// Reads the feed backwards from headSeq until an event older than an hour,
// or the request budget runs out. Returns {times (ms, ascending), from (ms:
// the plot is complete from here on, or null when the whole hour is)}.
async function readLastHour(headSeq, signal) {
  const since = Date.now() - MINUTES * 60000;
  const chunks = [];
  let end = headSeq;
  let requests = 0;
  let complete = false;
  while (true) {
    if (end <= 0) { complete = true; break; }
    const start = Math.max(0, end - PLOT_PAGE);
    const chunk = [];
    let after = start;
    while (after < end && requests < PLOT_REQUESTS) {
      const {data} = await api(`/v1/events?after_seq=${after}&limit=${end - after}`, {signal});
      requests++;
      if (!data.events.length) break;
      for (const e of data.events) if (e.seq <= end) chunk.push(Date.parse(e.at));
      after = data.next_after_seq;
    }
    if (after < end) break;  // the budget ran out inside this page: drop it
    chunks.unshift(chunk);
    if (chunk.length && chunk[0] < since) { complete = true; break; }
    end = start;
  }
  const times = chunks.flat();
  return {times, from: complete ? null : (times.length ? times[0] : Date.now())};
}

function plot(times, from, now) {
  const W = 640, H = 200, L = 44, R = 8, T = 12, B = 28;
  const bins = new Array(MINUTES).fill(0);
  const start = Math.floor(now / 60000) * 60000 - (MINUTES - 1) * 60000;  // the oldest minute shown
  for (const t of times) {
    const i = Math.floor((t - start) / 60000);
    if (i >= 0 && i < MINUTES) bins[i]++;
  }
  const peak = Math.max(...bins);
  const top = peak <= 5 ? 5 : Math.ceil(peak / Math.pow(10, Math.floor(Math.log10(peak)))) * Math.pow(10, Math.floor(Math.log10(peak)));
  const slot = (W - L - R) / MINUTES;
  const y = (v) => T + (H - T - B) * (1 - v / top);
  const g = svg('svg', {viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', id: 'events-chart',
    'aria-label': `events per minute over the last hour, at most ${peak} a minute`});
  g.append(svg('title', null, 'Events per minute, last 60 minutes'));
  for (const v of [0, top / 2, top]) {
    g.append(svg('line', {x1: L, x2: W - R, y1: y(v), y2: y(v), class: 'grid'}));
    g.append(svg('text', {x: L - 6, y: y(v) + 4, 'text-anchor': 'end', class: 'axis'}, String(Math.round(v * 10) / 10)));
  }
  for (let i = 0; i < MINUTES; i++) {
    const minute = start + i * 60000;
    const x = L + i * slot + 1;
    if (from !== null && minute + 60000 <= from) {
      g.append(svg('rect', {x, y: T, width: slot - 2, height: H - T - B, class: 'nodata'},
        svg('title', null, 'not read (the hour held more events than the dashboard reads)')));
      continue;
    }
    const d = new Date(minute);
    const label = `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
    const h = (H - T - B) * bins[i] / top;
    g.append(svg('rect', {x, y: y(bins[i]), width: slot - 2, height: Math.max(h, bins[i] ? 1 : 0), class: 'barv', 'data-count': bins[i]},
      svg('title', null, `${label}: ${bins[i]} event${bins[i] === 1 ? '' : 's'}`)));
  }
  for (const [i, text] of [[0, '−60 min'], [15, '−45'], [30, '−30'], [45, '−15'], [MINUTES - 1, 'now']]) {
    g.append(svg('text', {x: L + i * slot + slot / 2, y: H - 8, 'text-anchor': i === 0 ? 'start' : i === MINUTES - 1 ? 'end' : 'middle', class: 'axis'}, text));
  }
  return g;
}

export async function renderOverview(root, route, signal) {
  const counts = el('div', {class: 'counts', id: 'counts'});
  const failures = el('div', {id: 'failures'});
  const chartBox = el('div', {class: 'chart-box'}, el('p', {class: 'muted'}, 'Reading the last hour of events…'));
  const chartNote = el('p', {class: 'muted'});
  root.append(el('h1', null, 'Overview'),
    el('section', {class: 'card'}, el('h2', null, 'Jobs by state'), counts),
    el('div', {class: 'grid two'},
      el('section', {class: 'card'}, el('h2', null, 'Events per minute, last hour'), chartBox, chartNote),
      el('section', {class: 'card'}, el('h2', null, 'Recent failures'), failures)));

  async function loadCounts() {
    let results;
    try {
      results = await Promise.all(STATES.map((s) => countState(s, signal)));
    } catch (e) {
      if (isAbort(e) || signal.aborted) return;
      fill(counts, errorBox(e));
      return;
    }
    fill(counts, results.map((r) => el('a', {class: `count count-${r.state}`, href: `#/jobs?state=${r.state}`, 'data-state': r.state},
      el('span', {class: 'n'}, `${r.count}${r.more ? '+' : ''}`), stateBadge(r.state))));
    const failed = results.find((r) => r.state === 'failed').jobs
      .slice().sort((a, b) => String(b.finished_at).localeCompare(String(a.finished_at))).slice(0, FAILURES_SHOWN);
    const now = Date.now();
    fill(failures, failed.length
      ? el('table', {class: 'failures'}, el('tbody', null, failed.map((j) => el('tr', null,
        el('td', null, el('a', {href: `#/jobs/${encodeURIComponent(j.id)}`, title: j.id}, j.type)),
        el('td', null, el('span', {class: 'code'}, j.error ? j.error.code : '?')),
        el('td', {class: 'wide msg'}, j.error && j.error.message ? j.error.message : ''),
        el('td', {title: j.finished_at || ''}, relative(j.finished_at, now))))))
      : el('p', {class: 'muted'}, 'No failed jobs.'));
  }

  let times = [];
  let from = null;
  let readTo = null;     // the seq the chart was read up to; null until read
  let early = [];        // feed events that came while it was being read
  function drawChart() {
    const now = Date.now();
    const cut = now - MINUTES * 60000;
    let k = 0;
    while (k < times.length && times[k] < cut) k++;
    if (k) times = times.slice(k);
    fill(chartBox, plot(times, from, now));
    chartNote.textContent = from === null
      ? `${times.length} event${times.length === 1 ? '' : 's'} in the last hour`
      : `More than ${times.length} events in the last hour: the dashboard reads at most ${PLOT_REQUESTS * PLOT_PAGE} back from the head, so the grey minutes are not counted`;
  }
  async function loadChart() {
    let head = currentHead();
    if (!head) ({data: head} = await api('/v1/audit/head', {signal}));
    try {
      ({times, from} = await readLastHour(head.seq, signal));
      readTo = head.seq;
      for (const e of early) if (e.seq > readTo) times.push(Date.parse(e.at));
      early = [];
    } catch (e) {
      if (isAbort(e) || signal.aborted) return;
      fill(chartBox, e.status === 403 ? el('p', {class: 'muted'}, 'This token may not read the global feed.') : errorBox(e));
      return;
    }
    drawChart();
  }

  const refreshCounts = throttle(() => { if (!signal.aborted) loadCounts(); }, 3000);
  const redraw = throttle(() => { if (!signal.aborted && readTo !== null) drawChart(); }, 1000);
  const unsubscribe = subscribe((events) => {
    if (readTo === null) {
      if (early.length < MAX_TIMES) early.push(...events);
    } else {
      for (const e of events) if (e.seq > readTo) times.push(Date.parse(e.at));
    }
    if (times.length > MAX_TIMES) times = times.slice(times.length - MAX_TIMES);
    refreshCounts();
    redraw();
  });
  // The minutes roll on even without events.
  const roll = setInterval(() => { if (readTo !== null) drawChart(); }, 30000);
  signal.addEventListener('abort', () => { unsubscribe(); clearInterval(roll); }, {once: true});

  await Promise.all([loadCounts(), loadChart()]);
}

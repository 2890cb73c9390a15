// One long-poll of the global feed (GET /v1/events?wait_s=…) for the whole
// page: views subscribe to hear of new events instead of each holding a
// connection. It starts at the audit head (only events from now on), reads
// at most PAGE events per request, and keeps the footer's audit head current
// (the newest event's hash is the head of the chain).
//
// A token limited to job types may not read the feed (403): then it polls
// /v1/audit/head every POLL_MS and tells subscribers "something may have
// changed" with an empty batch whenever the head moves.

import {api, sleep} from './api.js';

const PAGE = 200;
const WAIT_S = 25;
const POLL_MS = 5000;

const listeners = new Set();
let head = null;          // {seq, hash}
let running = false;
const headListeners = new Set();
let statusListener = () => {};

export function subscribe(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}
export function onHead(fn) {
  headListeners.add(fn);
  if (head) fn(head);
}
export function onStatus(fn) { statusListener = fn; }

// Cuts a retry's back-off short (after the user gave a token).
let wakeCtl = new AbortController();
export function wake() { wakeCtl.abort(); wakeCtl = new AbortController(); }
async function pause(ms) {
  try { await sleep(ms, wakeCtl.signal); } catch { /* woken */ }
}
export function currentHead() { return head; }

function setHead(h) {
  if (!h || (head && head.seq === h.seq && head.hash === h.hash)) return;
  head = h;
  for (const fn of headListeners) fn(head);
}

function publish(events) {
  for (const fn of listeners) {
    try { fn(events); } catch (e) { console.error(e); }
  }
}

export async function start() {
  if (running) return;
  running = true;
  let backoff = 1000;
  while (true) {
    try {
      const {data} = await api('/v1/audit/head');
      setHead(data);
      statusListener('live');
      break;
    } catch (e) {
      statusListener('offline');
      await pause(backoff);
      backoff = Math.min(backoff * 2, 15000);
    }
  }
  let after = head.seq;
  let polling = false;
  backoff = 1000;
  while (true) {
    try {
      if (polling) {
        await pause(POLL_MS);
        const {data} = await api('/v1/audit/head');
        if (data.seq !== head.seq) { setHead(data); publish([]); }
        statusListener('polling');
        continue;
      }
      const {data} = await api(`/v1/events?after_seq=${after}&limit=${PAGE}&wait_s=${WAIT_S}`);
      statusListener('live');
      backoff = 1000;
      if (data.events.length) {
        const last = data.events[data.events.length - 1];
        after = data.next_after_seq;
        setHead({seq: last.seq, hash: last.hash});
        publish(data.events);
      }
    } catch (e) {
      if (e.status === 403) { polling = true; continue; }
      statusListener(e.status === 401 ? 'needs token' : 'offline');
      await pause(backoff);
      backoff = Math.min(backoff * 2, 15000);
    }
  }
}

// Calls fn at most once per minMs, the last call winning (for refetching a
// view after a burst of events).
export function throttle(fn, minMs) {
  let timer = null;
  let last = 0;
  return () => {
    if (timer) return;
    const wait = Math.max(0, last + minMs - Date.now());
    timer = setTimeout(() => { timer = null; last = Date.now(); fn(); }, wait);
  };
}

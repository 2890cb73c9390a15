// Building the DOM without innerHTML: every value shown here came from a
// user (params, messages, errors), so text always goes in as textContent.

// el('div', {class: 'x', href: '#/'}, child, 'text', [more]) -> Element.
// Attributes are set with setAttribute (never 'style' or 'on*': the CSP and
// this helper keep them out); children may be nodes, strings, numbers,
// arrays, null or undefined (skipped).
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') || k === 'style') throw new Error(`el: attribute ${k} not allowed`);
    node.setAttribute(k, v === true ? '' : String(v));
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export function clear(node) {
  node.replaceChildren();
  return node;
}

// Replaces node's children (same rules as el's children).
export function fill(node, ...children) {
  return append(clear(node), children);
}

const SVG = 'http://www.w3.org/2000/svg';
export function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  append(node, children);
  return node;
}

// JSON for people: indented, or '–' for null.
export function json(value) {
  if (value === null || value === undefined) return '–';
  return JSON.stringify(value, null, 2);
}

// Local time 'YYYY-MM-DD HH:MM:SS' for an RFC 3339 string (null -> '–').
export function when(iso) {
  if (!iso) return '–';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

// '12 s ago', 'in 3 min' relative to now.
export function relative(iso, now = Date.now()) {
  if (!iso) return '';
  const ms = new Date(iso).getTime() - now;
  if (Number.isNaN(ms)) return '';
  const s = Math.round(Math.abs(ms) / 1000);
  const text = s < 120 ? `${s} s` : s < 3600 ? `${Math.round(s / 60)} min` : s < 86400 ? `${Math.round(s / 3600)} h` : `${Math.round(s / 86400)} d`;
  return ms < 0 ? `${text} ago` : `in ${text}`;
}

// A <time> showing local time, with the server's exact value as its title.
export function timeEl(iso) {
  return el('time', {datetime: iso || null, title: iso || null}, when(iso));
}

export function stateBadge(state) {
  return el('span', {class: `state state-${String(state).replace(/[^a-z_]/g, '')}`}, state);
}

// A message box for a failed request (the problem's detail is user-visible
// text from the server, shown as text).
export function errorBox(e) {
  const status = e && e.status ? `HTTP ${e.status}: ` : '';
  const text = e && e.name === 'TypeError' ? 'the server cannot be reached' : (e && e.message) || String(e);
  return el('p', {class: 'error', role: 'alert'}, status, text);
}

// A progress bar: fraction 0..1 or null (unknown).
export function progressBar(fraction, label) {
  const known = typeof fraction === 'number' && Number.isFinite(fraction);
  const pct = known ? Math.max(0, Math.min(100, Math.round(fraction * 1000) / 10)) : 0;
  const fill = el('span', {class: 'bar-fill'});
  fill.style.width = `${pct}%`;  // CSSOM, which the CSP allows (a style attribute it would not)
  return el('div', {
    class: known ? 'bar' : 'bar bar-unknown', role: 'progressbar', 'aria-label': label || 'progress',
    'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': known ? pct : null,
  }, fill);
}

// Every call to the jobstate API goes through api(): it adds the bearer
// token (when the user gave one), sends JSON with its Content-Type (open
// access refuses a write without it), and turns problem+json answers into
// ApiError. A 401 tells the page to ask for a token (see app.js).

const TOKEN_KEY = 'jobstate.token';

export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

let unauthorizedHandler = () => {};
export function onUnauthorized(fn) { unauthorizedHandler = fn; }

export function token() {
  try { return sessionStorage.getItem(TOKEN_KEY); } catch { return null; }
}
export function setToken(value) {
  try {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch { /* storage disabled: the token lasts until reload */ }
}

// api('/v1/jobs', {method, body, signal}) -> {status, data, etag}.
// Throws ApiError for 4xx/5xx, DOMException 'AbortError' when signal aborts,
// TypeError when the server cannot be reached.
export async function api(path, {method = 'GET', body, signal} = {}) {
  const headers = {Accept: 'application/json'};
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  const init = {method, headers, signal, cache: 'no-store', credentials: 'omit'};
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  const text = await r.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (r.status === 401) unauthorizedHandler(data);
  if (!r.ok) throw new ApiError(r.status, data);
  return {status: r.status, data, etag: r.headers.get('ETag')};
}

export const isAbort = (e) => e && e.name === 'AbortError';

// Resolves after ms, or rejects with AbortError when signal aborts first.
export function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal && signal.aborted) return reject(new DOMException('aborted', 'AbortError'));
    const t = setTimeout(resolve, ms);
    if (signal) signal.addEventListener('abort', () => { clearTimeout(t); reject(new DOMException('aborted', 'AbortError')); }, {once: true});
  });
}

export const enc = encodeURIComponent;

// The console's only way to the gateway: same-origin fetches carrying the
// bearer token the user typed (kept in sessionStorage, gone with the tab).

const TOKEN_KEY = 'hiegw.token';

export function token() {
  try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch { return ''; }
}

export function setToken(t) {
  try {
    if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY);
  } catch { /* storage disabled: the token lives only in this page */ }
}

export class APIError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// call fetches path and returns the decoded JSON. Non-2xx answers throw an
// APIError carrying the status and the API's error text.
export async function call(path, { method = 'GET', body } = {}) {
  const headers = { Accept: 'application/json' };
  const t = token();
  if (t) headers.Authorization = 'Bearer ' + t;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin', cache: 'no-store' });
  } catch (e) {
    throw new APIError(0, 'the gateway cannot be reached');
  }
  let data = null;
  const text = await res.text();
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!res.ok) {
    let msg = (data && data.error) || res.statusText || 'request failed';
    if (res.status === 401) msg = 'authentication required: enter an API token above';
    if (res.status === 403) msg = 'this token\'s role may not do that';
    throw new APIError(res.status, msg);
  }
  return data;
}

// query builds a query string from the non-empty fields of obj.
export function query(obj) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(obj)) if (v !== undefined && v !== null && v !== '') p.set(k, v);
  const s = p.toString();
  return s ? '?' + s : '';
}

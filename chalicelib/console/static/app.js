// LLM Connections console: one page over the public JSON API.
// Every value from the API is rendered as text (textContent / attributes), never as HTML.
// Tokens live in sessionStorage only; secrets typed into a form are sent once and dropped.
'use strict';

const BASE = new URL('.', document.baseURI);          // .../console/
const API = new URL('../', BASE);                     // the API's root (same origin)
const SESSION_KEY = 'llmc.session';
const PAGE = 25;

// ------------------------------------------------------------------ DOM helpers

function h(tag, props, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'value') el.value = v;
    else if (k === 'checked') el.checked = !!v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, ...kids);
  return el;
}
function append(el, ...kids) {
  for (const kid of kids.flat(Infinity)) {
    if (kid === undefined || kid === null || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}
function clear(el) { while (el.firstChild) el.firstChild.remove(); return el; }
const $ = (sel, root = document) => root.querySelector(sel);

// Icons drawn as SVG paths (no icon font, no emoji font needed on the user's machine).
const ICONS = {
  pencil: ['M12 20h9', 'M16.5 3.5a2.1 2.1 0 0 1 3 3L7 19l-4 1 1-4Z'],
  trash: ['M3 6h18', 'M8 6V4h8v2', 'M19 6l-1 14H6L5 6', 'M10 11v6', 'M14 11v6'],
};
function icon(name) {
  const NS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('class', 'icon');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  for (const d of ICONS[name]) {
    const path = document.createElementNS(NS, 'path');
    path.setAttribute('d', d);
    svg.append(path);
  }
  return svg;
}

function fmtDate(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return isNaN(d) ? String(iso) : d.toLocaleString();
}
function fmtAgo(iso) {
  if (!iso) return 'never';
  const d = new Date(iso);
  if (isNaN(d)) return String(iso);
  const s = Math.round((Date.now() - d.getTime()) / 1000);
  if (s < 60) return 'just now';
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}
const time = (iso) => h('time', { datetime: iso || '', title: fmtDate(iso) }, fmtAgo(iso));
const ms = (v) => (v === null || v === undefined ? '—' : `${v} ms`);

const STATUS_WORD = { active: 'Active', warning: 'Warning', error: 'Error', untested: 'Untested' };
function statusBadge(status) {
  const s = STATUS_WORD[status] ? status : 'untested';
  return h('span', { class: `status status-${s}`, 'data-status': s },
    h('span', { class: 'dot', 'aria-hidden': 'true' }), STATUS_WORD[s]);
}

function toast(message) {
  const box = $('#toast');
  const item = h('div', {}, message);
  box.append(item);
  setTimeout(() => item.remove(), 5000);
}

function spinner(label) {
  return h('span', { class: 'progress', role: 'status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), label);
}

// ------------------------------------------------------------------ troubleshooting

// Titles follow the user guide's troubleshooting cases; the steps come from the API.
const TITLES = {
  invalid_api_key: 'Invalid API Key', permission_denied: 'Permission Denied',
  model_not_available: 'Model Not Available', rate_limited: 'Rate Limit Exceeded',
  quota_exhausted: 'Quota Exhausted', quota_exceeded: 'Monthly Quota Used Up',
  timeout: 'Connection Timeout', network_error: 'Network Error',
  provider_unavailable: 'Provider Unavailable', bad_response: 'Unexpected Response',
  blocked_endpoint: 'Endpoint Not Allowed', provider_disabled: 'Provider Disabled',
  needs_credentials: 'Credentials Needed', credentials_unreadable: 'Credentials Unreadable',
  slow_response: 'Slow Responses', rate_limit_headroom: 'Rate Limit Nearly Reached',
  quota_warning: 'Quota Warning', provider_incident: 'Provider Incident',
};
const title = (code) => TITLES[code] || (code ? code.replace(/_/g, ' ') : 'Problem');

function problemPanel(problem, kind) {
  return h('div', { class: `alert ${kind}`, 'data-code': problem.code },
    h('h3', {}, `${title(problem.code)} `, h('span', { class: 'badge' }, problem.code)),
    problem.message ? h('p', {}, problem.message) : null,
    (problem.remediation || []).length
      ? [h('p', { class: 'small muted' }, 'What to do:'), h('ol', {}, problem.remediation.map((s) => h('li', {}, s)))]
      : null);
}
function troubleshooting(error, warnings) {
  const items = [];
  if (error) items.push(problemPanel(error, 'error'));
  for (const w of warnings || []) items.push(problemPanel(w, 'warning'));
  if (!items.length) return null;
  return h('section', { 'aria-label': 'Troubleshooting', class: 'troubleshooting' }, h('h2', {}, 'Troubleshooting'), items);
}

// ------------------------------------------------------------------ session and API

let config = null;
let session = null;
let refreshTimer = null;

function decodeJwt(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(decodeURIComponent(escape(atob(part))));
  } catch { return null; }
}
function loadSession() {
  try {
    const s = JSON.parse(sessionStorage.getItem(SESSION_KEY) || 'null');
    if (s && s.token && s.exp * 1000 > Date.now() + 5000) return s;
  } catch { /* a broken entry is no session */ }
  sessionStorage.removeItem(SESSION_KEY);
  return null;
}
function saveSession(token, extra = {}) {
  const claims = decodeJwt(token) || {};
  const groups = claims['cognito:groups'] || [];
  const s = {
    token, exp: claims.exp || Math.floor(Date.now() / 1000) + 3600,
    user: claims['cognito:username'] || claims.email || claims.sub || 'unknown',
    sub: claims.sub, admin: groups.includes('admins'), ...extra,
  };
  const switched = !session || session.sub !== s.sub;
  session = s;
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(s));
  scheduleRefresh();
  return switched;
}
function dropSession() {
  session = null;
  sessionStorage.removeItem(SESSION_KEY);
  clearTimeout(refreshTimer);
  cache.clear();
}

class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || {};
    super(err.message || `HTTP ${status}`);
    this.status = status;
    this.code = err.code || `http_${status}`;
    this.field = err.field || null;
    this.remediation = err.remediation || [];
    this.details = err.details || null;
    this.requestId = err.request_id || null;
  }
}

// A test run by the queue worker with the connection's own timeout: queue it, then poll its
// state until it has a result (or the page is left).
async function backgroundTest(id, timeout, alive) {
  const queued = await api('POST', `/connections/${id}/test`, { body: { background: true } });
  const deadline = Date.now() + (timeout + 60) * 1000;
  while (Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 1500));
    if (!alive()) return null;
    const state = await api('GET', `/connections/${id}/tests/${queued.test_id}`);
    if (state.status !== 'queued') return state.result;
  }
  throw new ApiError(0, { error: { code: 'timeout', message: 'The background test has not finished yet; its result will appear in the test history.' } });
}

async function api(method, path, { body, headers = {}, raw = false } = {}) {
  const init = { method, headers: { Accept: 'application/json', ...headers }, cache: 'no-store', credentials: 'omit' };
  if (session) init.headers.Authorization = `Bearer ${session.token}`;
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(new URL(path.replace(/^\//, ''), API), init);
  } catch (e) {
    throw new ApiError(0, { error: { code: 'network', message: 'The service could not be reached. Check your network and try again.' } });
  }
  const text = await resp.text();
  let data = null;
  if (text) { try { data = JSON.parse(text); } catch { data = null; } }
  if (!resp.ok) {
    const err = new ApiError(resp.status, data);
    if (resp.status === 401 && session) {
      dropSession();
      showSignIn('Your session has ended; sign in again.');
    }
    throw err;
  }
  return raw ? { data, headers: resp.headers, status: resp.status } : data;
}

const cache = new Map();
async function providers(force = false) {
  if (force || !cache.has('providers')) {
    const all = [];
    let cursor = null;
    do {
      const q = new URLSearchParams({ limit: '100' });
      if (cursor) q.set('cursor', cursor);
      const page = await api('GET', `/providers?${q}`);
      all.push(...page.items);
      cursor = page.next_cursor;
    } while (cursor);
    cache.set('providers', all);
  }
  return cache.get('providers');
}
const providerName = (list, id) => (list.find((p) => p.id === id) || { name: id }).name;

// ------------------------------------------------------------------ sign-in

function b64url(bytes) {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}
const randomString = (n) => b64url(crypto.getRandomValues(new Uint8Array(n)));
const consoleUrl = () => new URL('../console', BASE).href;   // the Cognito callback URL

async function cognitoStart() {
  const verifier = randomString(48);
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier));
  const state = randomString(24);
  sessionStorage.setItem('llmc.pkce', JSON.stringify({ verifier, state }));
  const q = new URLSearchParams({
    response_type: 'code', client_id: config.auth.client_id, redirect_uri: consoleUrl(),
    scope: config.auth.scopes.join(' '), state, code_challenge: b64url(new Uint8Array(digest)),
    code_challenge_method: 'S256',
  });
  location.assign(`${config.auth.domain}/oauth2/authorize?${q}`);
}

async function cognitoToken(params) {
  const resp = await fetch(`${config.auth.domain}/oauth2/token`, {
    method: 'POST', credentials: 'omit', cache: 'no-store',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ client_id: config.auth.client_id, ...params }),
  });
  if (!resp.ok) throw new Error(`sign-in failed (HTTP ${resp.status})`);
  return resp.json();
}

async function cognitoCallback() {
  const q = new URLSearchParams(location.search);
  if (!q.has('code') && !q.has('error')) return false;
  const pkce = JSON.parse(sessionStorage.getItem('llmc.pkce') || 'null');
  sessionStorage.removeItem('llmc.pkce');
  history.replaceState(null, '', consoleUrl() + (location.hash || '#/connections'));
  if (q.has('error') || !pkce || q.get('state') !== pkce.state) {
    showSignIn('Sign-in was cancelled or could not be verified; try again.');
    return true;
  }
  const tokens = await cognitoToken({ grant_type: 'authorization_code', code: q.get('code'), redirect_uri: consoleUrl(), code_verifier: pkce.verifier });
  saveSession(tokens.id_token, { refresh: tokens.refresh_token || null });
  return false;
}

function scheduleRefresh() {
  clearTimeout(refreshTimer);
  if (!session) return;
  // Refresh two minutes before expiry, so a request never leaves with an expired token.
  const wait = Math.max(5000, session.exp * 1000 - Date.now() - 120000);
  refreshTimer = setTimeout(refreshToken, wait);
}

async function refreshToken() {
  if (!session) return;
  try {
    if (config.auth.mode === 'cognito' && session.refresh) {
      const tokens = await cognitoToken({ grant_type: 'refresh_token', refresh_token: session.refresh });
      saveSession(tokens.id_token, { refresh: session.refresh });
    } else if (config.auth.mode === 'local') {
      const out = await api('POST', '/console/local-signin', { body: { user: session.user, admin: session.admin } });
      saveSession(out.id_token);
    }
  } catch { /* the next 401 sends the user to sign in */ }
}

async function signOut() {
  const mode = config && config.auth.mode;
  const refresh = session && session.refresh;
  dropSession();
  if (mode === 'cognito') {
    // Revoke the refresh token first: a copy taken before sign-out must not keep working.
    if (refresh) {
      try {
        await fetch(`${config.auth.domain}/oauth2/revoke`, {
          method: 'POST', credentials: 'omit', cache: 'no-store',
          headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ token: refresh, client_id: config.auth.client_id }),
        });
      } catch { /* signing out goes on; the token expires on its own */ }
    }
    const q = new URLSearchParams({ client_id: config.auth.client_id, logout_uri: consoleUrl() });
    location.assign(`${config.auth.domain}/logout?${q}`);
    return;
  }
  showSignIn('You are signed out.');
}

function showSignIn(message) {
  renderGen++;
  chrome(false);
  const main = clear($('#main'));
  const box = h('div', { class: 'signin card' }, h('h1', {}, 'Sign in'));
  if (message) box.append(h('p', { class: 'alert info', role: 'status' }, message));
  const mode = config ? config.auth.mode : 'token';
  if (mode === 'local') {
    const err = h('p', { class: 'error-text', id: 'user-error', role: 'alert' });
    const user = h('input', { id: 'signin-user', name: 'user', autocomplete: 'username', required: true, 'aria-describedby': 'user-help user-error', value: 'alice' });
    const admin = h('input', { id: 'signin-admin', type: 'checkbox' });
    const form = h('form', { novalidate: true },
      h('p', { class: 'muted small' }, 'Local stage: choose who you are. Tokens are minted by this local server only.'),
      h('div', { class: 'field' }, h('label', { for: 'signin-user' }, 'User name'), user,
        h('span', { class: 'help', id: 'user-help' }, 'Letters, digits, . _ @ -'), err),
      h('div', { class: 'field checkbox' }, admin, h('label', { for: 'signin-admin' }, 'Administrator (admins group)')),
      h('button', { class: 'primary', type: 'submit' }, 'Sign in'));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      err.textContent = '';
      try {
        const out = await api('POST', '/console/local-signin', { body: { user: user.value.trim(), admin: admin.checked } });
        saveSession(out.id_token);
        start();
      } catch (e) {
        err.textContent = e.message;
        user.setAttribute('aria-invalid', 'true');
        user.focus();
      }
    });
    box.append(form);
  } else if (mode === 'cognito') {
    box.append(h('p', {}, 'Sign in with your organisation account.'),
      h('button', { class: 'primary', type: 'button', onclick: cognitoStart }, 'Sign in'));
  } else {
    const ta = h('textarea', { id: 'signin-token', autocomplete: 'off', spellcheck: 'false' });
    box.append(h('form', { onsubmit: (ev) => { ev.preventDefault(); saveSession(ta.value.trim()); start(); } },
      h('div', { class: 'field' }, h('label', { for: 'signin-token' }, 'Bearer token'), ta),
      h('button', { class: 'primary', type: 'submit' }, 'Sign in')));
  }
  main.append(box);
  const first = box.querySelector('input, button, textarea');
  if (first) first.focus();
}

function chrome(signedIn) {
  $('#sidebar').hidden = !signedIn;
  $('#signout').hidden = !signedIn;
  $('#menu-toggle').hidden = !signedIn;
  $('#whoami').textContent = signedIn ? `${session.user}${session.admin ? ' (admin)' : ''}` : '';
  const admin = signedIn && session.admin;
  $('#admin-nav').hidden = !admin;
  $('#admin-heading').hidden = !admin;
}

// ------------------------------------------------------------------ router

let renderGen = 0;
const routes = [
  [/^#\/connections\/new$/, viewForm],
  [/^#\/connections\/owner\/([^/]+)$/, viewList],
  [/^#\/connections\/([\w-]+)\/edit$/, viewForm],
  [/^#\/connections\/([\w-]+)$/, viewDetail],
  [/^#\/connections\/?$/, viewList],
  [/^#\/notifications$/, viewNotifications],
  [/^#\/incidents$/, viewIncidents],
  [/^#\/audit$/, viewAudit],
  [/^#\/admin\/providers$/, viewProviders, true],
  [/^#\/admin\/providers\/new$/, viewProviderForm, true],
  [/^#\/admin\/providers\/([\w-]+)$/, viewProviderForm, true],
  [/^#\/admin\/usage$/, viewUsage, true],
];

async function render() {
  if (!session) { showSignIn(); return; }
  chrome(true);
  const gen = ++renderGen;
  const hash = location.hash || '#/connections';
  let match = null; let fn = null; let adminOnly = false;
  for (const [re, view, adm] of routes) {
    match = hash.match(re);
    if (match) { fn = view; adminOnly = !!adm; break; }
  }
  for (const a of document.querySelectorAll('[data-nav]')) {
    const current = hash.startsWith(`#/${a.dataset.nav}`) || hash.startsWith(`#/admin/${a.dataset.nav}`);
    if (current) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  const main = $('#main');
  // Clear at once: nothing of the previous view (or the previous user) stays on screen.
  clear(main).append(spinner('Loading…'));
  const alive = () => gen === renderGen;
  const mount = (node) => {
    if (!alive()) return false;
    clear(main).append(node);
    window.scrollTo(0, 0);
    return true;
  };
  if (!fn || (adminOnly && !session.admin)) {
    mount(h('div', {}, h('h1', {}, 'Not found'), h('p', {}, 'There is no such page. '), h('a', { href: '#/connections' }, 'Back to connections')));
    return;
  }
  try {
    await fn({ mount, alive }, ...match.slice(1));
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return;
    mount(h('div', {}, h('h1', {}, 'Something went wrong'), errorAlert(e)));
  }
}

function errorAlert(e) {
  if (e instanceof ApiError && (e.remediation || []).length) {
    return problemPanel({ code: e.code, message: e.message, remediation: e.remediation }, 'error');
  }
  return h('div', { class: 'alert error', role: 'alert' }, h('strong', {}, title(e.code) + ': '), e.message,
    e.requestId ? h('span', { class: 'small muted' }, ` (request ${e.requestId})`) : null);
}

// ------------------------------------------------------------------ connections list

async function viewList({ mount, alive }, ownerParam) {
  const provs = await providers();
  const owner = ownerParam ? decodeURIComponent(ownerParam) : '';
  const state = { rows: [], cursor: null, done: false, sort: 'name', dir: 1 };
  const q = h('input', { id: 'f-name', type: 'search', placeholder: 'Name contains…' });
  const fp = h('select', { id: 'f-provider' }, h('option', { value: '' }, 'All providers'), provs.map((p) => h('option', { value: p.id }, p.name)));
  const fs = h('select', { id: 'f-status' }, h('option', { value: '' }, 'All statuses'), Object.entries(STATUS_WORD).map(([k, v]) => h('option', { value: k }, v)));
  const sortSel = h('select', { id: 'f-sort' }, [['name', 'Name'], ['provider', 'Provider'], ['status', 'Status'], ['last_tested_at', 'Last test']].map(([k, v]) => h('option', { value: k }, v)));
  const tbody = h('tbody');
  const count = h('p', { class: 'small muted', 'aria-live': 'polite' });
  const more = h('button', { type: 'button', id: 'load-more' }, 'Load more');
  const importInput = h('input', { type: 'file', id: 'import-file', accept: 'application/json,.json', class: 'visually-hidden' });

  async function load() {
    more.disabled = true;
    more.replaceChildren(spinner('Loading…'));
    try {
      const params = new URLSearchParams({ limit: String(PAGE) });
      if (state.cursor) params.set('cursor', state.cursor);
      if (owner) params.set('owner', owner);
      const page = await api('GET', `/connections?${params}`);
      if (!alive()) return;
      state.rows.push(...page.items);
      state.cursor = page.next_cursor;
      state.done = !page.next_cursor;
      draw();
      page.items.forEach(loadUsage);
    } finally {
      more.disabled = false;
      more.textContent = 'Load more';
      more.hidden = state.done;
    }
  }

  const usageCells = new Map();
  async function loadUsage(row) {
    try {
      const s = await api('GET', `/connections/${row.id}/stats`);
      row._usage = s.usage ? s.usage['7d'] : null;
      const cell = usageCells.get(row.id);
      if (cell && alive()) cell.replaceChildren(usageText(row._usage));
    } catch { /* usage is a hint; the row stands without it */ }
  }

  function visible() {
    const needle = q.value.trim().toLowerCase();
    const rows = state.rows.filter((r) => (!needle || r.name.toLowerCase().includes(needle))
      && (!fp.value || r.provider === fp.value) && (!fs.value || r.status === fs.value));
    const key = sortSel.value;
    const val = (r) => (key === 'provider' ? providerName(provs, r.provider) : (r[key] || '')).toString().toLowerCase();
    rows.sort((a, b) => (val(a) < val(b) ? -1 : val(a) > val(b) ? 1 : 0) * state.dir);
    return rows;
  }

  function draw() {
    usageCells.clear();
    const rows = visible();
    tbody.replaceChildren(...rows.map(rowFor));
    count.textContent = `${rows.length} shown of ${state.rows.length} loaded${state.done ? '' : ' (more available)'}`;
    if (!state.rows.length) tbody.replaceChildren(h('tr', {}, h('td', { colspan: 7, class: 'empty' }, 'No connections yet. Add one to get started.')));
  }

  function rowFor(r) {
    const usage = h('span', {}, r._usage ? usageText(r._usage) : '…');
    usageCells.set(r.id, usage);
    const last = r.last_test;
    const problem = r.error || (r.warnings || [])[0];
    return h('tr', { 'data-id': r.id },
      h('td', { 'data-label': 'Status' }, statusBadge(r.status), problem ? h('div', { class: 'small muted' }, title(problem.code)) : null),
      h('td', { 'data-label': 'Name' }, h('a', { href: `#/connections/${r.id}` }, r.name), r.description ? h('div', { class: 'small muted' }, r.description) : null,
        r.rotation_due ? h('div', {}, h('span', { class: 'badge warn', title: 'The credentials are older than 90 days: rotate the key' }, 'Rotate key (90 days)')) : null,
        r.needs_credentials ? h('div', {}, h('span', { class: 'badge err' }, 'Needs credentials')) : null),
      h('td', { 'data-label': 'Provider' }, providerName(provs, r.provider), h('div', { class: 'small muted' }, r.default_model ? `model ${r.default_model}` : 'no default model')),
      h('td', { 'data-label': 'Last test' }, last ? [time(r.last_tested_at), h('div', { class: 'small muted' }, `${STATUS_WORD[last.status] || last.status} · ${ms(r.latency_ms)}${last.trigger ? ` · ${last.trigger}` : ''}`)] : 'never'),
      h('td', { 'data-label': 'Activity (7 days)', class: 'small' },
        h('div', {}, r.activity ? ['Last call ', time(r.activity.last_invoked_at), r.activity.last_invoke_ok ? ' · ok' : ` · ${title(r.activity.last_error_code)}`] : 'No calls yet'),
        h('div', { class: 'muted' }, usage)),
      h('td', { 'data-label': 'Dependents', class: 'num' }, String(r.dependents_count || 0)),
      h('td', { 'data-label': 'Actions' }, h('div', { class: 'actions' },
        h('button', { type: 'button', 'aria-label': `Test ${r.name}`, onclick: (ev) => quickTest(r, ev.currentTarget) }, 'Test'),
        h('a', { class: 'button icon', href: `#/connections/${r.id}/edit`, 'aria-label': `Edit ${r.name}`, title: 'Edit' }, icon('pencil')),
        h('button', { type: 'button', class: 'icon', 'aria-label': `Delete ${r.name}`, title: 'Delete', onclick: () => deleteDialog(r, () => { state.rows = state.rows.filter((x) => x.id !== r.id); draw(); }) }, icon('trash')))));
  }

  async function quickTest(r, btn) {
    btn.disabled = true;
    btn.replaceChildren(spinner('Testing…'));
    try {
      const result = await api('POST', `/connections/${r.id}/test`, { body: {} });
      const fresh = await api('GET', `/connections/${r.id}`);
      Object.assign(r, fresh);
      toast(`${r.name}: ${STATUS_WORD[result.status]}${result.error ? ` — ${title(result.error.code)}` : ''}`);
    } catch (e) {
      toast(`${r.name}: ${e.message}`);
    } finally {
      if (alive()) draw();
    }
  }

  for (const el of [q, fp, fs, sortSel]) el.addEventListener('input', draw);
  const dirBtn = h('button', { type: 'button', 'aria-label': 'Sort direction: ascending', onclick: () => { state.dir *= -1; dirBtn.textContent = state.dir > 0 ? '↑' : '↓'; dirBtn.setAttribute('aria-label', `Sort direction: ${state.dir > 0 ? 'ascending' : 'descending'}`); draw(); } }, '↑');
  more.addEventListener('click', load);
  importInput.addEventListener('change', () => importFile(importInput));

  const page = h('div', {},
    h('div', { class: 'page-head' }, h('h1', {}, owner ? `Connections of ${owner}` : 'Connections'),
      h('div', { class: 'actions' },
        h('a', { class: 'button primary', href: '#/connections/new' }, '+ Add Connection'),
        h('button', { type: 'button', onclick: exportAll }, 'Export'),
        h('label', { class: 'button', for: 'import-file' }, 'Import'), importInput)),
    session.admin ? ownerForm(owner) : null,
    h('div', { class: 'filters', role: 'search', 'aria-label': 'Filter connections' },
      h('label', { for: 'f-name' }, 'Filter by name', q), h('label', { for: 'f-provider' }, 'Provider', fp),
      h('label', { for: 'f-status' }, 'Status', fs), h('label', { for: 'f-sort' }, 'Sort by', sortSel), dirBtn),
    count,
    h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': 'Your connections, scrollable' }, h('table', { class: 'responsive', 'aria-label': 'Your connections' },
      h('thead', {}, h('tr', {}, ['Status', 'Name', 'Provider and model', 'Last test', 'Activity (7 days)', 'Dependents', 'Actions'].map((c) => h('th', { scope: 'col' }, c)))),
      tbody)),
    h('p', {}, more));
  await load();
  mount(page);
}

function ownerForm(owner) {
  const input = h('input', { id: 'f-owner', autocomplete: 'off', value: owner, placeholder: 'user id' });
  return h('form', { class: 'filters', 'aria-label': 'Administrator: connections of a user', onsubmit: (ev) => {
    ev.preventDefault();
    const v = input.value.trim();
    location.hash = v ? `#/connections/owner/${encodeURIComponent(v)}` : '#/connections';
  } }, h('label', { for: 'f-owner' }, 'Owner (admin)', input), h('button', { type: 'submit' }, 'Show'),
  owner ? h('a', { class: 'button', href: '#/connections' }, 'My connections') : null);
}

function usageText(u) {
  if (!u) return '—';
  const p = u.latency_p50_ms === null || u.latency_p50_ms === undefined ? '' : ` · p50 ${u.latency_p50_ms} / p95 ${u.latency_p95_ms} ms`;
  return `${u.requests} req · ${u.errors} err${p}`;
}

async function exportAll() {
  try {
    const doc = await api('GET', '/connections/export');
    const blob = new Blob([JSON.stringify(doc, null, 2)], { type: 'application/json' });
    const a = h('a', { href: URL.createObjectURL(blob), download: `connections-${new Date().toISOString().slice(0, 10)}.json` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
    toast(`Exported ${doc.connections.length} connections (without secrets).`);
  } catch (e) { toast(`Export failed: ${e.message}`); }
}

async function importFile(input) {
  const file = input.files[0];
  input.value = '';
  if (!file) return;
  let doc;
  try { doc = JSON.parse(await file.text()); } catch { toast('Import failed: the file is not JSON.'); return; }
  try {
    const out = await api('POST', '/connections/import', { body: doc });
    toast(`Imported ${out.items.length} connections; add their credentials, then test them.`);
    render();
  } catch (e) { toast(`Import failed: ${e.message}${e.field ? ` (${e.field})` : ''}`); }
}

// ------------------------------------------------------------------ delete dialog

async function deleteDialog(conn, onDeleted) {
  let deps = [];
  try { deps = (await api('GET', `/connections/${conn.id}/dependents`)).items; } catch { /* shown below */ }
  const err = h('div', { role: 'alert' });
  const confirmName = h('input', { id: 'confirm-name', autocomplete: 'off', 'aria-describedby': 'confirm-help' });
  const del = h('button', { type: 'button', class: 'danger' }, deps.length ? 'Force delete' : 'Delete');
  const cancel = h('button', { type: 'button' }, 'Cancel');
  const dlg = h('dialog', { 'aria-labelledby': 'dlg-title', 'aria-describedby': 'dlg-desc' },
    h('h2', { id: 'dlg-title' }, `Delete “${conn.name}”?`),
    h('p', { id: 'dlg-desc' }, 'Deleting a connection cannot be undone.'),
    deps.length ? [
      h('p', {}, `${deps.length} prompt${deps.length > 1 ? 's use' : ' uses'} this connection and will need another one:`),
      h('ul', { 'aria-label': 'Dependents' }, deps.map((d) => h('li', {}, `${d.display_name} `, h('span', { class: 'small muted' }, `(${d.kind} ${d.id})`)))),
      h('div', { class: 'field' }, h('label', { for: 'confirm-name' }, 'Type the connection name to confirm'), confirmName,
        h('span', { class: 'help', id: 'confirm-help' }, `Type ${conn.name} exactly.`)),
    ] : null,
    err, h('div', { class: 'actions' }, del, cancel));
  if (deps.length) {
    del.disabled = true;
    confirmName.addEventListener('input', () => { del.disabled = confirmName.value !== conn.name; });
  }
  cancel.addEventListener('click', () => dlg.close());
  dlg.addEventListener('close', () => dlg.remove());
  del.addEventListener('click', async () => {
    del.disabled = true;
    try {
      await api('DELETE', `/connections/${conn.id}${deps.length ? '?force=true' : ''}`, { headers: { 'If-Match': `"v${conn.version}"` } });
      dlg.close();
      toast(`Deleted ${conn.name}.`);
      onDeleted();
    } catch (e) {
      del.disabled = false;
      err.replaceChildren(errorAlert(e));
      if (e.status === 409 || e.status === 412) {
        err.append(h('p', {}, 'The connection changed (new dependents or an edit). '), h('button', { type: 'button', onclick: () => { dlg.close(); render(); } }, 'Reload'));
      }
    }
  });
  document.body.append(dlg);
  dlg.showModal();
  (deps.length ? confirmName : cancel).focus();
}

// ------------------------------------------------------------------ add / edit form

const ADVANCED = [
  ['timeout_seconds', 'Request timeout (seconds)', 1, 300, 1],
  ['max_retries', 'Max retries', 0, 10, 1],
  ['rate_limit_rpm', 'Rate limit (requests per minute)', 1, 100000, 1],
  ['max_tokens', 'Max tokens', 1, 1000000, 1],
  ['temperature', 'Temperature', 0, 5, 0.1],
  ['monthly_request_quota', 'Monthly request quota', 1, 1000000000, 1],
  ['monthly_token_quota', 'Monthly token quota', 1, 1000000000000, 1],
];

function field(id, label, input, { help, required } = {}) {
  input.id = id;
  const describedBy = [];
  const helpEl = help ? h('span', { class: 'help', id: `${id}-help` }, help) : null;
  if (helpEl) describedBy.push(`${id}-help`);
  const errEl = h('span', { class: 'error-text', id: `${id}-error` });
  describedBy.push(`${id}-error`);
  input.setAttribute('aria-describedby', describedBy.join(' '));
  if (required) { input.required = true; input.setAttribute('aria-required', 'true'); }
  return h('div', { class: 'field' }, h('label', { for: id }, label, required ? h('span', { class: 'req', 'aria-hidden': 'true' }, ' *') : null), input, helpEl, errEl);
}

function setFieldError(form, apiField, message) {
  for (const el of form.querySelectorAll('[aria-invalid="true"]')) el.removeAttribute('aria-invalid');
  for (const el of form.querySelectorAll('.error-text')) el.textContent = '';
  if (!apiField) return false;
  const name = apiField.replace(/^changes\./, '').replace(/\[\d+\]/g, '');
  const input = form.querySelector(`[data-field="${CSS.escape(name)}"]`) || form.querySelector(`[data-field="${CSS.escape(name.split('.')[0])}"]`);
  if (!input) return false;
  input.setAttribute('aria-invalid', 'true');
  const errEl = form.querySelector(`#${CSS.escape(input.id)}-error`);
  if (errEl) errEl.textContent = message;
  input.focus();
  return true;
}

async function viewForm({ mount, alive }, id) {
  const provs = await providers();
  let conn = null;
  if (id) {
    const got = await api('GET', `/connections/${id}`, { raw: true });
    conn = got.data;
  }
  if (!alive()) return;
  const editing = !!conn;
  const idem = randomString(16);
  const form = h('form', { novalidate: true, 'aria-labelledby': 'form-title' });
  const banner = h('div', { 'aria-live': 'polite' });
  const results = h('section', { 'aria-label': 'Test results', id: 'test-results', 'aria-live': 'polite' });
  const choices = provs.filter((p) => p.enabled || (conn && p.id === conn.provider));
  const providerSel = h('select', { 'data-field': 'provider' }, editing ? null : h('option', { value: '' }, 'Choose a provider…'),
    choices.map((p) => h('option', { value: p.id }, p.name + (p.enabled ? '' : ' (disabled)'))));
  if (conn) providerSel.value = conn.provider;
  const dynamic = h('div');
  let detected = conn ? conn.available_models || [] : [];
  let controls = null;

  function build() {
    const p = provs.find((x) => x.id === providerSel.value);
    clear(dynamic);
    clear(results);
    controls = null;
    if (!p) { dynamic.append(h('p', { class: 'muted' }, 'Choose a provider to see its fields.')); return; }
    const sameProvider = conn && conn.provider === p.id;
    const c = { provider: p, creds: {}, adv: {} };
    const name = h('input', { 'data-field': 'name', autocomplete: 'off', maxlength: 100, value: conn ? conn.name : '' });
    const desc = h('textarea', { 'data-field': 'description', maxlength: 1000, rows: 2 });
    desc.value = conn && conn.description ? conn.description : '';
    c.name = name; c.desc = desc;
    const basic = h('fieldset', {}, h('legend', {}, 'Basic'),
      field('c-name', 'Connection name', name, { required: true, help: 'A descriptive name, e.g. OpenAI-GPT4-Prod-Marketing. No secrets in names.' }),
      field('c-description', 'Description', desc, { help: 'Optional: purpose and limits, for team members.' }));

    const auth = h('fieldset', {}, h('legend', {}, 'Authentication'));
    for (const f of p.credential_fields) {
      const masked = sameProvider ? (conn.credentials_masked || {})[f.name] : undefined;
      const input = h('input', { 'data-field': `credentials.${f.name}`, autocomplete: 'off', spellcheck: 'false' });
      if (f.secret) {
        input.type = 'password';
        input.autocomplete = 'new-password';
        if (masked) input.placeholder = masked;
      } else if (sameProvider && masked !== undefined) {
        input.value = masked;
      }
      if (f.pattern) input.dataset.pattern = f.pattern;
      const keepHelp = f.secret && masked ? 'Saved as shown; leave empty to keep it. ' : '';
      const required = f.required && !(f.secret && masked);
      auth.append(field(`cred-${f.name}`, f.label, input, { help: keepHelp + (f.help || ''), required }));
      c.creds[f.name] = { input, field: f, masked };
    }
    const model = h('input', { 'data-field': 'default_model', autocomplete: 'off', list: 'model-list', value: conn ? conn.default_model || '' : '' });
    const datalist = h('datalist', { id: 'model-list' });
    const modelChips = h('div', { class: 'models', 'aria-live': 'polite' });
    const modelHint = h('p', { class: 'small muted' });
    c.model = model;
    c.fillModels = (models) => {
      detected = models;
      modelHint.textContent = (models || []).length
        ? `${models.length} models found by the last test; choose one or type a name:`
        : 'Available models are detected when you test the connection.';
      const all = [...new Set([...(models || []), ...(p.known_models || [])])];
      datalist.replaceChildren(...all.map((m) => h('option', { value: m })));
      modelChips.replaceChildren(...(models || []).slice(0, 50).map((m) => h('button', { type: 'button', class: 'badge', 'aria-label': `Use ${m} as default model`, onclick: () => { model.value = m; model.focus(); } }, m)));
      if ((models || []).length > 50) modelChips.append(h('span', { class: 'small muted' }, `and ${models.length - 50} more (type to search)`));
    };
    c.fillModels(detected);
    const modelSet = h('fieldset', {}, h('legend', {}, 'Model'),
      modelHint, modelChips,
      field('c-model', 'Default model', model, { help: p.adapter === 'azure_openai' ? 'For Azure, the deployment name.' : 'e.g. one of the detected models.' }), datalist);
    {
      const base = h('input', { 'data-field': 'base_url', type: 'url', autocomplete: 'off', placeholder: p.base_url || 'https://…', value: conn && sameProvider ? conn.base_url || '' : '' });
      c.base = base;
      const note = h('span', { class: 'help', id: 'base-note' });
      base.addEventListener('input', () => {
        const changed = editing && (base.value.trim() || null) !== (conn.base_url || null);
        note.textContent = changed ? 'Changing the base URL needs the secret again: enter it above.' : '';
        markSecretsRequired(c, changed || (editing && !sameProvider));
      });
      modelSet.append(field('c-base', p.base_url_required ? 'Base URL' : (p.adapter === 'bedrock' ? 'Custom endpoint URL (optional)' : 'Custom base URL (optional)'), base, { required: p.base_url_required, help: p.base_url ? `Default: ${p.base_url}` : 'The API endpoint (https).' }), note);
    }
    const defaults = p.default_settings || {};
    const adv = h('fieldset', {}, h('legend', {}, 'Advanced'), h('p', { class: 'small muted' }, 'Empty fields use the provider’s defaults (shown as placeholders).'));
    const grid = h('div', { class: 'grid2' });
    for (const [key, label, min, max, step] of ADVANCED) {
      let lo = min; let hi = max;
      if (key === 'temperature') { lo = defaults.temperature_min ?? 0; hi = defaults.temperature_max ?? 2; }
      const input = h('input', { 'data-field': `settings.${key}`, type: 'number', min: lo, max: hi, step, inputmode: step < 1 ? 'decimal' : 'numeric' });
      const current = conn && sameProvider ? (conn.settings || {})[key] : undefined;
      if (current !== undefined && current !== null) input.value = current;
      const dflt = defaults[key];
      input.placeholder = dflt !== undefined ? `default ${dflt}` : 'none';
      grid.append(field(`s-${key}`, label, input, { help: key === 'temperature' ? `${lo} to ${hi}` : (dflt !== undefined ? `Provider default: ${dflt}` : 'Optional') }));
      c.adv[key] = input;
    }
    adv.append(grid);
    dynamic.append(basic, auth, modelSet, adv);
    controls = c;
    markSecretsRequired(c, editing && !sameProvider);
  }

  function markSecretsRequired(c, needed) {
    for (const { input, field: f, masked } of Object.values(c.creds)) {
      if (!f.secret || !masked) continue;
      input.required = needed && f.required;
      if (needed) input.placeholder = 'Enter the secret again'; else input.placeholder = masked;
    }
  }

  function collect() {
    const c = controls;
    const body = {};
    const name = c.name.value.trim();
    const desc = c.desc.value.trim();
    const creds = {};
    for (const [k, { input, field: f }] of Object.entries(c.creds)) {
      const v = input.value.trim();
      if (v) creds[k] = v;
      else if (editing && !f.secret && conn.provider === c.provider.id && (conn.credentials_masked || {})[k] !== undefined) creds[k] = null;
    }
    const settings = {};
    for (const [k, input] of Object.entries(c.adv)) {
      if (input.value !== '') settings[k] = Number(input.value);
      else if (editing && (conn.settings || {})[k] !== undefined && !['timeout_seconds', 'max_retries'].includes(k)) settings[k] = null;
    }
    const base = c.base ? c.base.value.trim() : '';
    if (!editing) {
      body.name = name;
      if (desc) body.description = desc;
      body.provider = c.provider.id;
      body.credentials = creds;
      if (c.model.value.trim()) body.default_model = c.model.value.trim();
      if (base) body.base_url = base;
      const s = Object.fromEntries(Object.entries(settings).filter(([, v]) => v !== null));
      if (Object.keys(s).length) body.settings = s;
      return body;
    }
    // An edit sends only what changed (a PATCH): secrets left empty are kept by the API.
    if (name !== conn.name) body.name = name;
    if (desc !== (conn.description || '')) body.description = desc || null;
    if (c.provider.id !== conn.provider) body.provider = c.provider.id;
    const model = c.model.value.trim();
    if (model !== (conn.default_model || '')) body.default_model = model || null;
    if (c.base && (base || null) !== (conn.base_url || null)) body.base_url = base || null;
    const changedCreds = Object.fromEntries(Object.entries(creds).filter(([k, v]) => {
      const f = c.creds[k].field;
      return f.secret ? v !== null : v !== ((conn.credentials_masked || {})[k] ?? null);
    }));
    if (Object.keys(changedCreds).length) body.credentials = changedCreds;
    const changedSettings = Object.fromEntries(Object.entries(settings).filter(([k, v]) => v !== ((conn.settings || {})[k] ?? null)));
    if (Object.keys(changedSettings).length) body.settings = changedSettings;
    return body;
  }

  function clientCheck() {
    const c = controls;
    const problems = [];
    if (!c.name.value.trim()) problems.push([c.name, 'Connection name is required.']);
    for (const { input, field: f } of Object.values(c.creds)) {
      const v = input.value.trim();
      if (!v && input.required) problems.push([input, `${f.label} is required.`]);
      else if (v && input.dataset.pattern && !new RegExp(input.dataset.pattern).test(v)) problems.push([input, `${f.label} is not in the expected format.`]);
    }
    if (c.base && c.base.required && !c.base.value.trim()) problems.push([c.base, 'Base URL is required.']);
    for (const input of Object.values(c.adv)) {
      if (input.value !== '' && !input.checkValidity()) problems.push([input, `Enter a number from ${input.min} to ${input.max}.`]);
    }
    if (problems.length) {
      setFieldError(form, null);
      const [input, msg] = problems[0];
      setFieldError(form, input.dataset.field, msg);
      return false;
    }
    return true;
  }

  function showApiError(e) {
    clear(banner);
    if (e.status === 412) {
      banner.append(h('div', { class: 'alert warning', role: 'alert' },
        h('strong', {}, 'This connection was changed elsewhere since you opened it. '),
        'Reload to see the current version (your unsaved changes here will be lost), then make your change again. ',
        h('button', { type: 'button', onclick: () => render() }, 'Reload')));
      banner.querySelector('button').focus();
      return;
    }
    const placed = setFieldError(form, e.field, e.message);
    banner.append(placed ? h('div', { class: 'alert error', role: 'alert' }, `Please correct the highlighted field: ${e.message}`) : errorAlert(e));
  }

  const probe = h('input', { type: 'checkbox', id: 'c-probe' });
  const testBtn = h('button', { type: 'button', id: 'btn-test' }, 'Test Connection');
  const saveBtn = h('button', { type: 'submit', class: 'primary', id: 'btn-save' }, 'Save');
  testBtn.addEventListener('click', async () => {
    if (!controls || !clientCheck()) return;
    clear(banner);
    testBtn.disabled = true;
    results.replaceChildren(spinner('Testing the connection: connectivity, authentication, model access, performance…'));
    try {
      let result;
      const body = collect();
      const opts = probe.checked ? { probe_model: true } : {};
      if (!editing) result = await api('POST', '/connections/test', { body: { ...body, ...opts } });
      else if (Object.keys(body).length) result = await api('POST', `/connections/${conn.id}/test`, { body: { changes: body, ...opts } });
      else result = await api('POST', `/connections/${conn.id}/test`, { body: opts });
      setFieldError(form, null);
      results.replaceChildren(testResult(result));
      if (result.available_models && result.available_models.length) controls.fillModels(result.available_models);
    } catch (e) {
      clear(results);
      showApiError(e);
    } finally { testBtn.disabled = false; }
  });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (!controls || !clientCheck()) return;
    clear(banner);
    saveBtn.disabled = true;
    try {
      const body = collect();
      let saved;
      if (!editing) saved = await api('POST', '/connections', { body, headers: { 'Idempotency-Key': idem } });
      else if (!Object.keys(body).length) { toast('Nothing changed.'); location.hash = `#/connections/${conn.id}`; return; }
      else saved = await api('PATCH', `/connections/${conn.id}`, { body, headers: { 'If-Match': `"v${conn.version}"` } });
      // Secrets typed here are not kept anywhere in the page once saved.
      for (const { input } of Object.values(controls.creds)) if (input.type === 'password') input.value = '';
      toast(`Saved ${saved.name}.`);
      location.hash = `#/connections/${saved.id}`;
    } catch (e) {
      showApiError(e);
    } finally { saveBtn.disabled = false; }
  });
  providerSel.addEventListener('change', build);
  append(form,
    h('fieldset', {}, h('legend', {}, 'Provider'), field('c-provider', 'Provider', providerSel, { required: true, help: editing ? 'Changing the provider needs the secrets again.' : 'Providers are managed by administrators.' })),
    dynamic, results,
    h('div', { class: 'field checkbox' }, probe, h('label', { for: 'c-probe' }, 'Also send a 1-token request to the default model (may cost a fraction of a cent)')),
    h('div', { class: 'actions' }, testBtn, saveBtn, h('a', { class: 'button', href: editing ? `#/connections/${conn.id}` : '#/connections' }, 'Cancel')));
  build();
  const page = h('div', {},
    h('p', {}, h('a', { href: '#/connections' }, '← Connections')),
    h('h1', { id: 'form-title' }, editing ? `Edit ${conn.name}` : 'Add Connection'),
    banner, form);
  if (mount(page)) (editing ? $('#c-name') : providerSel).focus();
}

function checkItem(label, check) {
  const state = check.ok === true ? ['ok', '✓ Passed'] : check.ok === false ? ['fail', '✗ Failed'] : ['skip', '— Not checked'];
  return h('li', { 'data-check': label.toLowerCase().replace(' ', '_') },
    h('div', {}, h('strong', {}, label)),
    h('div', { class: state[0] }, state[1]),
    check.latency_ms !== null && check.latency_ms !== undefined ? h('div', { class: 'small muted' }, `${check.latency_ms} ms`) : null,
    check.detail ? h('div', { class: 'small' }, check.detail) : null);
}

function testResult(r) {
  const checks = r.checks || {};
  return h('div', { class: 'card', 'data-result-status': r.status },
    h('h2', {}, 'Test result: ', statusBadge(r.status), r.latency_ms !== null ? h('span', { class: 'small muted' }, ` ${r.latency_ms} ms`) : null),
    h('ul', { class: 'checks' },
      checkItem('Connectivity', checks.connectivity || {}), checkItem('Authentication', checks.authentication || {}),
      checkItem('Model access', checks.model_access || {}), checkItem('Performance', checks.performance || {})),
    (r.available_models || []).length ? h('p', { class: 'small' }, `${r.available_models.length} models found.`) : null,
    troubleshooting(r.error, r.warnings));
}

// ------------------------------------------------------------------ detail

async function viewDetail({ mount, alive }, id) {
  const [conn, provs] = await Promise.all([api('GET', `/connections/${id}`), providers()]);
  const [deps, stats] = await Promise.all([
    api('GET', `/connections/${id}/dependents`).then((d) => d.items).catch(() => []),
    api('GET', `/connections/${id}/stats`).catch(() => null),
  ]);
  if (!alive()) return;
  const testOut = h('div', { 'aria-live': 'polite' });
  const badge = h('span', {}, statusBadge(conn.status));
  const problems = h('div', {}, troubleshooting(conn.error, conn.warnings));
  const testBtn = h('button', { type: 'button', class: 'primary', id: 'btn-test-now' }, 'Test now');
  // A request through the API ends within 25 s; a connection allowed more than the default
  // 30 s is tested in the background with its own timeout, and the page waits for it.
  const timeout = Number((conn.settings || {}).timeout_seconds) || 30;
  const inBackground = timeout > 30;
  testBtn.addEventListener('click', async () => {
    testBtn.disabled = true;
    testOut.replaceChildren(spinner(inBackground ? `Testing in the background (timeout ${timeout} s)…` : 'Testing…'));
    try {
      const r = inBackground ? await backgroundTest(id, timeout, alive) : await api('POST', `/connections/${id}/test`, { body: {} });
      if (!r) return;
      if (!alive()) return;
      // The result carries its own troubleshooting; the page-level panel would repeat it.
      problems.replaceChildren();
      badge.replaceChildren(statusBadge(r.status));
      testOut.replaceChildren(testResult(r));
      history.reload();
    } catch (e) { testOut.replaceChildren(errorAlert(e)); } finally { testBtn.disabled = false; }
  });
  const masked = Object.entries(conn.credentials_masked || {});
  const props = h('dl', { class: 'props' },
    h('dt', {}, 'Provider'), h('dd', {}, providerName(provs, conn.provider)),
    h('dt', {}, 'Default model'), h('dd', {}, conn.default_model || '—'),
    conn.base_url ? [h('dt', {}, 'Base URL'), h('dd', {}, conn.base_url)] : null,
    h('dt', {}, 'Description'), h('dd', {}, conn.description || '—'),
    h('dt', {}, 'Credentials'), h('dd', {}, masked.length ? masked.map(([k, v]) => h('div', {}, `${k}: `, h('code', {}, v))) : h('span', { class: 'badge err' }, 'Needs credentials')),
    h('dt', {}, 'Key age'), h('dd', {}, conn.credentials_updated_at ? [time(conn.credentials_updated_at), conn.rotation_due ? h('span', { class: 'badge warn' }, ' Rotate key (over 90 days)') : null] : '—'),
    h('dt', {}, 'Last test'), h('dd', {}, conn.last_tested_at ? [time(conn.last_tested_at), ` · ${ms(conn.latency_ms)}`] : 'never'),
    h('dt', {}, 'Settings'), h('dd', {}, Object.entries(conn.settings || {}).map(([k, v]) => `${k}=${v}`).join(', ') || '—'),
    h('dt', {}, 'Created'), h('dd', {}, fmtDate(conn.created_at)));

  const history = historySection(id, alive);
  const page = h('div', {},
    h('p', {}, h('a', { href: '#/connections' }, '← Connections')),
    h('div', { class: 'page-head' }, h('h1', {}, conn.name), badge,
      h('div', { class: 'actions' }, testBtn,
        h('a', { class: 'button', href: `#/connections/${id}/edit`, 'aria-label': `Edit ${conn.name}` }, icon('pencil'), 'Edit'),
        h('button', { type: 'button', 'aria-label': `Delete ${conn.name}`, onclick: () => deleteDialog(conn, () => { location.hash = '#/connections'; }) }, icon('trash'), 'Delete'))),
    problems,
    testOut,
    h('div', { class: 'card' }, props),
    keysSection(conn, provs.find((p) => p.id === conn.provider), alive),
    chartSection(id, stats, alive),
    history.el,
    h('section', { class: 'card', 'aria-labelledby': 'deps-h' }, h('h2', { id: 'deps-h' }, `Dependents (${deps.length})`),
      deps.length ? h('ul', {}, deps.map((d) => h('li', {}, d.display_name, h('span', { class: 'small muted' }, ` ${d.kind} · ${d.id}`)))) : h('p', { class: 'muted' }, 'No prompts use this connection.')),
    playground(conn));
  if (mount(page)) history.reload();
}

// ------------------------------------------------------------------ keys (credential sets)

// A connection holds one to five named keys. Invokes use the first (primary) and fail over to
// the next on a rate limit, a used-up quota or a refused key. Rotation: add, test, make
// primary, remove the old one. Every change sends If-Match with the version last read.
function keysSection(conn, provider, alive) {
  const body = h('div', {});
  const out = h('div', { 'aria-live': 'polite', id: 'keys-output' });
  const secretFields = ((provider && provider.credential_fields) || []).filter((f) => f.secret);
  let state = null;

  async function load() {
    try {
      state = await api('GET', `/connections/${conn.id}/credentials`);
      if (alive()) draw();
    } catch (e) { body.replaceChildren(errorAlert(e)); }
  }

  function changedElsewhere(e) {
    const box = h('div', {}, errorAlert(e));
    if (e.status === 412 || e.status === 409) {
      box.append(h('p', {}, e.status === 412 ? 'The keys changed elsewhere since this page loaded. ' : ''),
        h('button', { type: 'button', onclick: () => render() }, 'Reload'));
    }
    return box;
  }

  async function write(method, path, payload, done) {
    out.replaceChildren(spinner('Saving…'));
    try {
      state = await api(method, path, { body: payload, headers: { 'If-Match': `"v${state.version}"` } });
      out.replaceChildren();
      toast(done);
      // The connection's status, badge and masks follow the primary: reload the whole page.
      render();
    } catch (e) { out.replaceChildren(changedElsewhere(e)); }
  }

  async function testKey(name, btn) {
    btn.disabled = true;
    out.replaceChildren(spinner(`Testing key ${name}…`));
    try {
      const r = await api('POST', `/connections/${conn.id}/credentials/${encodeURIComponent(name)}/test`, { body: {} });
      if (!alive()) return;
      out.replaceChildren(h('h3', {}, `Test of key “${name}”`), testResult(r));
      await load();
    } catch (e) { out.replaceChildren(errorAlert(e)); } finally { btn.disabled = false; }
  }

  function confirmDialog(titleText, text, actionLabel, onConfirm) {
    const go = h('button', { type: 'button', class: 'danger' }, actionLabel);
    const cancel = h('button', { type: 'button' }, 'Cancel');
    const dlg = h('dialog', { 'aria-labelledby': 'key-dlg-title', 'aria-describedby': 'key-dlg-desc' },
      h('h2', { id: 'key-dlg-title' }, titleText), h('p', { id: 'key-dlg-desc' }, text),
      h('div', { class: 'actions' }, go, cancel));
    cancel.addEventListener('click', () => dlg.close());
    dlg.addEventListener('close', () => dlg.remove());
    go.addEventListener('click', () => { dlg.close(); onConfirm(); });
    document.body.append(dlg);
    dlg.showModal();
    cancel.focus();
  }

  function lastTest(t) {
    if (!t) return h('span', { class: 'muted' }, 'never');
    return [statusBadge(t.status), ' ', time(t.tested_at), t.latency_ms !== null && t.latency_ms !== undefined ? ` · ${ms(t.latency_ms)}` : '',
      t.error_code ? [' ', h('span', { class: 'badge err', title: title(t.error_code) }, title(t.error_code))] : null];
  }

  function row(k, count) {
    const q = encodeURIComponent(k.name);
    const testBtn = h('button', { type: 'button', 'aria-label': `Test key ${k.name}` }, 'Test');
    testBtn.addEventListener('click', () => testKey(k.name, testBtn));
    const actions = [testBtn];
    if (!k.primary) {
      actions.push(h('button', { type: 'button', 'aria-label': `Make key ${k.name} primary`,
        onclick: () => write('POST', `/connections/${conn.id}/credentials/${q}/promote`, {}, `Key ${k.name} is now the primary.`) }, 'Make primary'));
    }
    if (count > 1) {
      actions.push(h('button', { type: 'button', 'aria-label': `Remove key ${k.name}`,
        onclick: () => confirmDialog(`Remove key “${k.name}”?`,
          k.primary ? 'The next key becomes the primary. Its secret is deleted.' : 'Its secret is deleted; the other keys keep working.',
          'Remove', () => write('DELETE', `/connections/${conn.id}/credentials/${q}`, undefined, `Removed key ${k.name}.`)) }, 'Remove'));
    }
    actions.push(h('button', { type: 'button', class: 'danger-outline', 'aria-label': `Revoke key ${k.name}`,
      onclick: () => confirmDialog(`Revoke key “${k.name}”?`,
        count > 1 ? 'Its secret is deleted now and no call will use it again. Revoke the key at the provider too.'
          : 'This is the only key: the connection stops working until you add a new one. Its secret is deleted now; revoke the key at the provider too.',
        'Revoke', () => write('POST', `/connections/${conn.id}/credentials/${q}/revoke`, {}, `Revoked key ${k.name}.`)) }, 'Revoke'));
    const masks = Object.entries(k.credentials_masked || {});
    return h('tr', { 'data-key': k.name },
      h('th', { scope: 'row', 'data-label': 'Key' }, h('span', { class: 'key-name' }, k.name),
        k.primary ? [' ', h('span', { class: 'badge ok' }, 'Primary')] : h('span', { class: 'small muted' }, ` #${k.position}`)),
      h('td', { 'data-label': 'Secret' }, masks.length ? masks.map(([f, v]) => h('div', {}, h('code', {}, v), masks.length > 1 ? h('span', { class: 'small muted' }, ` ${f}`) : null)) : '—'),
      h('td', { 'data-label': 'Added' }, time(k.created_at),
        k.rotation_due ? [' ', h('span', { class: 'badge warn' }, 'Rotate (over 90 days)')] : null),
      h('td', { 'data-label': 'Last test' }, lastTest(k.last_test),
        k.auth_failed ? [' ', h('span', { class: 'badge err', title: 'Refused by the provider; skipped by invokes until it is tested again' }, 'Refused: skipped')] : null),
      h('td', { 'data-label': 'Actions' }, h('div', { class: 'actions wrap' }, actions)));
  }

  function addForm() {
    const taken = new Set(state.items.map((k) => k.name));
    const suggestion = ['next', 'backup', 'key-3', 'key-4', 'key-5'].find((n) => !taken.has(n)) || '';
    const nameIn = h('input', { 'data-field': 'name', value: suggestion, autocomplete: 'off', spellcheck: 'false', maxlength: '32' });
    const inputs = secretFields.map((f) => field(`key-${f.name}`, f.label,
      h('input', { type: 'password', 'data-field': `credentials.${f.name}`, autocomplete: 'off', spellcheck: 'false' }),
      { required: !!f.required }));
    const addBtn = h('button', { type: 'submit', class: 'primary' }, 'Add key');
    const form = h('form', { novalidate: true, 'aria-labelledby': 'add-key-h' },
      h('h3', { id: 'add-key-h' }, 'Add a key'),
      field('key-name', 'Key name', nameIn, { required: true, help: 'Lower case letters, digits, - and _. For a rotation, add the new key as “next”, test it, make it primary, then remove the old one.' }),
      inputs, h('div', { class: 'actions' }, addBtn));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      setFieldError(form, null);
      const credentials = {};
      for (const f of secretFields) {
        const v = form.querySelector(`[data-field="credentials.${f.name}"]`).value;
        if (v) credentials[f.name] = v;
      }
      addBtn.disabled = true;
      out.replaceChildren(spinner('Adding key…'));
      try {
        state = await api('POST', `/connections/${conn.id}/credentials`, { body: { name: nameIn.value.trim(), credentials }, headers: { 'If-Match': `"v${state.version}"` } });
        // The typed secret is sent once and dropped from the page.
        for (const i of form.querySelectorAll('input[type="password"]')) i.value = '';
        out.replaceChildren();
        toast(`Added key ${nameIn.value.trim()}. Test it, then make it primary.`);
        draw();
        const btn = body.querySelector(`tr[data-key="${CSS.escape(nameIn.value.trim())}"] button`);
        if (btn) btn.focus();
      } catch (e) {
        if (!setFieldError(form, e.field, e.message)) out.replaceChildren(changedElsewhere(e));
        else out.replaceChildren();
      } finally { addBtn.disabled = false; }
    });
    return form;
  }

  function draw() {
    const count = state.items.length;
    body.replaceChildren(
      count ? h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': 'Keys, scrollable' },
        h('table', { class: 'responsive', 'aria-label': 'Keys' },
          h('thead', {}, h('tr', {}, ['Key', 'Secret', 'Added', 'Last test', 'Actions'].map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', {}, state.items.map((k) => row(k, count)))))
        : h('div', { class: 'alert error' }, 'This connection has no key: add one to use it again.'),
      count < state.max_sets ? addForm() : h('p', { class: 'small muted' }, `A connection holds at most ${state.max_sets} keys: remove one to add another.`));
  }

  load();
  return h('section', { class: 'card', 'aria-labelledby': 'keys-h', id: 'keys' },
    h('h2', { id: 'keys-h' }, 'Keys'),
    h('p', { class: 'small muted' }, 'Calls use the primary key; when the provider rate-limits it, reports its quota used up or refuses it, they try the next key in order. Each key is tested every day.'),
    body, out);
}

function historySection(id, alive) {
  const tbody = h('tbody');
  const more = h('button', { type: 'button', hidden: true }, 'Older tests');
  const status = h('div', { 'aria-live': 'polite' });
  let cursor = null;
  async function load(reset) {
    if (reset) { cursor = null; tbody.replaceChildren(); }
    status.replaceChildren(spinner('Loading test history…'));
    more.disabled = true;
    try {
      const q = new URLSearchParams({ limit: '10' });
      if (cursor) q.set('cursor', cursor);
      const page = await api('GET', `/connections/${id}/tests?${q}`);
      if (!alive()) return;
      for (const t of page.items) {
        const r = t.result || {};
        const codes = [r.error ? r.error.code : null, ...(r.warnings || []).map((w) => w.code)].filter(Boolean);
        tbody.append(h('tr', {},
          h('td', { 'data-label': 'When' }, time(t.tested_at)), h('td', { 'data-label': 'Trigger' }, t.trigger),
          h('td', { 'data-label': 'Result' }, statusBadge(t.status)), h('td', { 'data-label': 'Latency', class: 'num' }, ms(t.latency_ms)),
          h('td', { 'data-label': 'Details' }, codes.length ? codes.map((c) => h('span', { class: 'badge', title: title(c) }, title(c))) : '—')));
      }
      if (!tbody.children.length) tbody.append(h('tr', {}, h('td', { colspan: 5, class: 'empty' }, 'No tests yet.')));
      cursor = page.next_cursor;
      more.hidden = !cursor;
      status.replaceChildren();
    } catch (e) { status.replaceChildren(errorAlert(e)); } finally { more.disabled = false; }
  }
  more.addEventListener('click', () => load(false));
  const el = h('section', { class: 'card', 'aria-labelledby': 'hist-h' }, h('h2', { id: 'hist-h' }, 'Test history'), status,
    h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': 'Test history, scrollable' }, h('table', { class: 'responsive', 'aria-label': 'Test history' },
      h('thead', {}, h('tr', {}, ['When', 'Trigger', 'Result', 'Latency', 'Details'].map((c) => h('th', { scope: 'col' }, c)))), tbody)),
    h('p', {}, more));
  return { el, reload: () => load(true) };
}

let uplotLoading = null;
function loadUplot() {
  if (window.uPlot) return Promise.resolve(window.uPlot);
  if (!uplotLoading) {
    uplotLoading = new Promise((resolve, reject) => {
      const css = h('link', { rel: 'stylesheet', href: 'assets/vendor--uPlot.min.css' });
      const js = h('script', { src: 'assets/vendor--uPlot.iife.min.js' });
      js.addEventListener('load', () => resolve(window.uPlot));
      js.addEventListener('error', reject);
      document.head.append(css, js);
    });
  }
  return uplotLoading;
}

function chartSection(id, stats, alive) {
  const box = h('div', { class: 'chart', id: 'usage-chart', role: 'img', 'aria-label': 'Chart of daily requests and errors, and test latency' });
  const summary = h('p', { class: 'small', 'aria-live': 'polite' });
  const tabs = h('div', { class: 'tabs', role: 'group', 'aria-label': 'Period' });
  let days = 7;
  const usage = stats && stats.usage ? stats.usage : null;
  const tests = stats && stats.tests ? stats.tests : null;
  async function draw() {
    for (const b of tabs.children) b.setAttribute('aria-pressed', String(Number(b.dataset.days) === days));
    const key = `${days}d`;
    const u = usage ? usage[key] : null; const t = tests ? tests[key] : null;
    summary.textContent = [
      u ? `Requests ${u.requests}, errors ${u.errors}, tokens ${u.input_tokens} in / ${u.output_tokens} out, latency p50 ${u.latency_p50_ms ?? '—'} ms / p95 ${u.latency_p95_ms ?? '—'} ms.` : 'No usage yet.',
      t ? `Tests ${t.tests}, failures ${t.failures}, warnings ${t.warnings}, test latency p50 ${t.latency_p50_ms ?? '—'} ms / p95 ${t.latency_p95_ms ?? '—'} ms.` : '',
    ].join(' ');
    const labels = []; const req = []; const err = []; const lat = [];
    const daily = new Map(((usage && usage.daily) || []).map((d) => [d.day, d]));
    let hist = [];
    try { hist = (await api('GET', `/connections/${id}/tests?limit=100`)).items; } catch { hist = []; }
    const latByDay = new Map();
    for (const t2 of hist) {
      const day = (t2.tested_at || '').slice(0, 10);
      if (t2.latency_ms !== null && t2.latency_ms !== undefined) latByDay.set(day, [...(latByDay.get(day) || []), t2.latency_ms]);
    }
    for (let i = days - 1; i >= 0; i--) {
      const d = new Date(Date.now() - i * 86400000);
      const day = d.toISOString().slice(0, 10);
      labels.push(Math.floor(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()) / 1000));
      const row = daily.get(day);
      req.push(row ? Number(row.requests) : 0);
      err.push(row ? Number(row.errors) : 0);
      const l = latByDay.get(day);
      lat.push(l ? Math.round(l.reduce((a, b) => a + b, 0) / l.length) : null);
    }
    if (!alive()) return;
    try {
      const UPlot = await loadUplot();
      clear(box);
      const width = Math.max(280, box.clientWidth || 600);
      // eslint-disable-next-line no-new
      new UPlot({
        width, height: 220,
        series: [{}, { label: 'Requests', stroke: '#0b5cd5', width: 2 }, { label: 'Errors', stroke: '#b42318', width: 2 },
          { label: 'Test latency (ms)', stroke: '#9a6700', width: 2, scale: 'ms', spanGaps: true }],
        axes: [{}, { label: 'count' }, { side: 1, scale: 'ms', label: 'ms', grid: { show: false } }],
        scales: { x: { time: true } },
      }, [labels, req, err, lat], box);
    } catch { box.replaceChildren(h('p', { class: 'muted' }, 'The chart could not be drawn; the figures above are complete.')); }
  }
  for (const d of [7, 30]) tabs.append(h('button', { type: 'button', 'data-days': d, 'aria-pressed': String(d === days), onclick: () => { days = d; draw(); } }, `${d} days`));
  setTimeout(draw, 0);
  return h('section', { class: 'card', 'aria-labelledby': 'chart-h' }, h('h2', { id: 'chart-h' }, 'Latency and usage'), tabs, summary, box);
}

function playground(conn) {
  const prompt = h('textarea', { 'data-field': 'messages', rows: 3, placeholder: 'Say hello in one sentence.' });
  const out = h('div', { 'aria-live': 'polite', id: 'invoke-output' });
  const send = h('button', { type: 'submit', class: 'primary' }, 'Send');
  const form = h('form', { novalidate: true },
    field('pg-prompt', 'Prompt', prompt, { help: `Sent through this connection with its settings (model ${conn.default_model || 'not set'}).` }),
    h('div', { class: 'actions' }, send), out);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const text = prompt.value.trim();
    if (!text) { setFieldError(form, 'messages', 'Enter a prompt.'); return; }
    setFieldError(form, null);
    send.disabled = true;
    out.replaceChildren(spinner('Waiting for the model…'));
    try {
      const r = await api('POST', `/connections/${conn.id}/invoke`, { body: { messages: [{ role: 'user', content: text }] } });
      const via = r.credential_set ? ` · key ${r.credential_set}${(r.failover_from || []).length ? ` (after ${r.failover_from.join(', ')})` : ''}` : '';
      out.replaceChildren(h('pre', { class: 'output' }, r.output_text),
        h('p', { class: 'small muted' }, `${r.model} · ${r.usage.input_tokens} tokens in, ${r.usage.output_tokens} out · ${r.latency_ms} ms · ${r.finish_reason}${via}`));
    } catch (e) { out.replaceChildren(errorAlert(e)); } finally { send.disabled = false; }
  });
  return h('section', { class: 'card', 'aria-labelledby': 'pg-h' }, h('h2', { id: 'pg-h' }, 'Playground'), form);
}

// ------------------------------------------------------------------ notifications

async function viewNotifications({ mount, alive }) {
  const list = await api('GET', '/notifications/subscriptions');
  if (!alive()) return;
  const tbody = h('tbody');
  const draw = (items) => tbody.replaceChildren(...(items.length ? items.map((s) => h('tr', {},
    h('td', { 'data-label': 'E-mail' }, s.endpoint), h('td', { 'data-label': 'Scope' }, s.scope === 'all' ? 'All connections (admin)' : 'My connections'),
    h('td', { 'data-label': 'State' }, s.status === 'subscribed' ? h('span', { class: 'badge' }, 'Confirmed') : h('span', { class: 'badge warn' }, 'Waiting for confirmation')),
    h('td', { 'data-label': 'Delivery' }, s.delivery === 'digest' ? 'Daily digest' : 'Immediately'),
    h('td', { 'data-label': 'Actions' }, h('button', { type: 'button', 'aria-label': `Remove ${s.endpoint}`, onclick: async () => {
      try { await api('DELETE', `/notifications/subscriptions/${encodeURIComponent(s.id)}`); render(); } catch (e) { toast(e.message); }
    } }, 'Remove')))) : [h('tr', {}, h('td', { colspan: 5, class: 'empty' }, 'No alert e-mails yet.'))]));
  draw(list.items);
  const email = h('input', { type: 'email', 'data-field': 'endpoint', autocomplete: 'email' });
  const scope = h('select', { 'data-field': 'scope' }, h('option', { value: 'own' }, 'My connections'), h('option', { value: 'all' }, 'All connections'));
  const delivery = h('select', { 'data-field': 'delivery' }, h('option', { value: 'immediate' }, 'Immediately, one e-mail per event'), h('option', { value: 'digest' }, 'One digest per daily run'));
  const banner = h('div', { 'aria-live': 'polite' });
  const form = h('form', { novalidate: true },
    field('n-email', 'E-mail address', email, { required: true, help: 'Alerts when a connection fails, recovers, or is due for a reminder. You confirm by e-mail first.' }),
    field('n-delivery', 'Delivery', delivery, { help: 'A digest lists every connection that failed, recovered or is due for rotation, once per run.' }),
    session.admin ? field('n-scope', 'Scope', scope) : null,
    h('button', { type: 'submit', class: 'primary' }, 'Add subscription'), banner);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clear(banner);
    if (!email.value.trim()) { setFieldError(form, 'endpoint', 'Enter an e-mail address.'); return; }
    const body = { protocol: 'email', endpoint: email.value.trim() };
    if (session.admin && scope.value === 'all') body.scope = 'all';
    body.delivery = delivery.value;
    try { await api('POST', '/notifications/subscriptions', { body }); toast('Subscription added: confirm it from the e-mail.'); render(); } catch (e) {
      if (!setFieldError(form, e.field, e.message)) banner.append(errorAlert(e));
    }
  });
  mount(h('div', {}, h('h1', {}, 'Notifications'),
    h('p', { class: 'muted' }, 'Daily automatic tests run every 24 hours; failed tests trigger notifications.'),
    h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': 'Alert subscriptions, scrollable' }, h('table', { class: 'responsive', 'aria-label': 'Alert subscriptions' },
      h('thead', {}, h('tr', {}, ['E-mail', 'Scope', 'State', 'Delivery', 'Actions'].map((c) => h('th', { scope: 'col' }, c)))), tbody)),
    h('h2', {}, 'Add an alert e-mail'), h('div', { class: 'card' }, form)));
}

// ------------------------------------------------------------------ incidents

async function viewIncidents({ mount, alive }) {
  const tbody = h('tbody');
  const more = h('button', { type: 'button', hidden: true }, 'Older incidents');
  const status = h('div', { 'aria-live': 'polite' });
  let cursor = null;
  async function load() {
    status.replaceChildren(spinner('Loading…'));
    try {
      const q = new URLSearchParams({ limit: '25' });
      if (cursor) q.set('cursor', cursor);
      const page = await api('GET', `/incidents?${q}`);
      if (!alive()) return;
      for (const i of page.items) {
        tbody.append(h('tr', { 'data-incident': i.id },
          h('td', { 'data-label': 'Provider' }, i.provider, i.base_url ? h('div', { class: 'small muted' }, i.base_url) : null),
          h('td', { 'data-label': 'State' }, i.state === 'open' ? h('span', { class: 'badge err' }, 'Open') : h('span', { class: 'badge' }, 'Ended')),
          h('td', { 'data-label': 'Started' }, time(i.started_at)),
          h('td', { 'data-label': 'Ended' }, i.ended_at ? time(i.ended_at) : '—'),
          h('td', { 'data-label': 'Affected', class: 'num' }, String(i.affected)),
          h('td', { 'data-label': 'Codes' }, i.codes.map((c) => h('span', { class: 'badge', title: c }, title(c))))));
      }
      if (!tbody.children.length) tbody.append(h('tr', {}, h('td', { colspan: 6, class: 'empty' }, 'No provider incidents.')));
      cursor = page.next_cursor;
      more.hidden = !cursor;
      status.replaceChildren();
    } catch (e) { status.replaceChildren(errorAlert(e)); }
  }
  more.addEventListener('click', load);
  await load();
  mount(h('div', {}, h('h1', {}, 'Provider incidents'),
    h('p', { class: 'muted' }, 'When many connections to one provider fail at once in the daily run, it is the provider: those connections turn yellow with “Provider Incident” instead of alerting every owner, and they are retested until it ends.'),
    status, h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': 'Provider incidents, scrollable' }, h('table', { class: 'responsive', 'aria-label': 'Provider incidents' },
      h('thead', {}, h('tr', {}, ['Provider', 'State', 'Started', 'Ended', 'Affected', 'Codes'].map((c) => h('th', { scope: 'col' }, c)))), tbody)), h('p', {}, more)));
}

// ------------------------------------------------------------------ audit

async function viewAudit({ mount, alive }) {
  const tbody = h('tbody');
  const more = h('button', { type: 'button', hidden: true }, 'Older events');
  const filters = {};
  const status = h('div', { 'aria-live': 'polite' });
  let cursor = null;
  async function load(reset) {
    if (reset) { cursor = null; tbody.replaceChildren(); }
    status.replaceChildren(spinner('Loading…'));
    try {
      const q = new URLSearchParams({ limit: '50' });
      for (const [k, input] of Object.entries(filters)) if (input.value.trim()) q.set(k, input.value.trim());
      if (cursor) q.set('cursor', cursor);
      const page = await api('GET', `/audit?${q}`);
      if (!alive()) return;
      for (const e of page.items) {
        tbody.append(h('tr', {}, h('td', { 'data-label': 'When' }, time(e.at)), h('td', { 'data-label': 'Actor' }, e.actor || '—', e.admin_action ? h('span', { class: 'badge' }, ' admin') : null),
          h('td', { 'data-label': 'Action' }, e.action), h('td', { 'data-label': 'Target' }, e.target),
          h('td', { 'data-label': 'Outcome' }, e.outcome === 'success' ? e.outcome : h('span', { class: 'badge err' }, e.outcome)),
          h('td', { 'data-label': 'Detail', class: 'small' }, [e.changed_fields.length ? `changed: ${e.changed_fields.join(', ')}` : '', Object.keys(e.detail).length ? ` ${JSON.stringify(e.detail)}` : ''].join('').trim() || '—')));
      }
      if (!tbody.children.length) tbody.append(h('tr', {}, h('td', { colspan: 6, class: 'empty' }, 'No events.')));
      cursor = page.next_cursor;
      more.hidden = !cursor;
      status.replaceChildren();
    } catch (e) { status.replaceChildren(errorAlert(e)); }
  }
  more.addEventListener('click', () => load(false));
  let filterForm = null;
  if (session.admin) {
    for (const k of ['user', 'action', 'target']) filters[k] = h('input', { 'data-field': k, autocomplete: 'off' });
    filterForm = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter audit events', onsubmit: (ev) => { ev.preventDefault(); load(true); } },
      h('label', { for: 'a-user' }, 'User', Object.assign(filters.user, { id: 'a-user' })),
      h('label', { for: 'a-action' }, 'Action', Object.assign(filters.action, { id: 'a-action', placeholder: 'connection.update' })),
      h('label', { for: 'a-target' }, 'Target', Object.assign(filters.target, { id: 'a-target', placeholder: 'connection:conn_…' })),
      h('button', { type: 'submit' }, 'Filter'));
  }
  await load(true);
  mount(h('div', {}, h('h1', {}, 'Audit trail'), h('p', { class: 'muted' }, session.admin ? 'Every user’s events; filter by user, action or target.' : 'Everything done with your connections, newest first.'),
    filterForm, status, h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': 'Audit events, scrollable' }, h('table', { class: 'responsive', 'aria-label': 'Audit events' },
      h('thead', {}, h('tr', {}, ['When', 'Actor', 'Action', 'Target', 'Outcome', 'Detail'].map((c) => h('th', { scope: 'col' }, c)))), tbody)), h('p', {}, more)));
}

// ------------------------------------------------------------------ admin: providers and usage

async function viewProviders({ mount, alive }) {
  const provs = await providers(true);
  if (!alive()) return;
  const rows = provs.map((p) => h('tr', { 'data-provider': p.id },
    h('td', { 'data-label': 'Name' }, h('a', { href: `#/admin/providers/${p.id}` }, p.name), h('div', { class: 'small muted' }, p.id)),
    h('td', { 'data-label': 'Protocol' }, p.adapter), h('td', { 'data-label': 'Base URL', class: 'small' }, p.base_url || '—'),
    h('td', { 'data-label': 'Fields', class: 'small' }, p.credential_fields.map((f) => f.label).join(', ')),
    h('td', { 'data-label': 'State' }, p.enabled ? 'Enabled' : h('span', { class: 'badge warn' }, 'Disabled')),
    h('td', { 'data-label': 'Actions' }, h('div', { class: 'actions' },
      h('a', { class: 'button', href: `#/admin/providers/${p.id}`, 'aria-label': `Edit provider ${p.name}` }, 'Edit'),
      h('button', { type: 'button', 'aria-label': `${p.enabled ? 'Disable' : 'Enable'} provider ${p.name}`, onclick: async () => {
        try { await api('PATCH', `/providers/${p.id}`, { body: { enabled: !p.enabled }, headers: { 'If-Match': `"v${p.version}"` } }); cache.delete('providers'); render(); } catch (e) { toast(e.message); }
      } }, p.enabled ? 'Disable' : 'Enable')))));
  mount(h('div', {}, h('div', { class: 'page-head' }, h('h1', {}, 'Providers'), h('a', { class: 'button primary', href: '#/admin/providers/new' }, '+ Add provider')),
    h('p', { class: 'muted' }, 'The catalogue users choose from. A disabled provider keeps its connections and refuses new ones.'),
    h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': 'Providers, scrollable' }, h('table', { class: 'responsive', 'aria-label': 'Providers' },
      h('thead', {}, h('tr', {}, ['Name', 'Protocol', 'Base URL', 'Credential fields', 'State', 'Actions'].map((c) => h('th', { scope: 'col' }, c)))), h('tbody', {}, rows)))));
}

async function viewProviderForm({ mount, alive }, id) {
  const p = id ? await api('GET', `/providers/${id}`) : null;
  if (!alive()) return;
  const form = h('form', { novalidate: true });
  const banner = h('div', { 'aria-live': 'polite' });
  const inp = (field, attrs = {}) => h('input', { 'data-field': field, autocomplete: 'off', ...attrs });
  const pid = inp('id', { value: p ? p.id : '', disabled: !!p, placeholder: 'my-gateway' });
  const name = inp('name', { value: p ? p.name : '' });
  const desc = inp('description', { value: p ? p.description || '' : '' });
  const adapter = h('select', { 'data-field': 'adapter' }, ['openai', 'anthropic', 'azure_openai', 'bedrock', 'google', 'cohere'].map((a) => h('option', { value: a }, a === 'openai' ? 'openai (OpenAI-compatible)' : a)));
  adapter.value = p ? p.adapter : 'openai';
  const base = inp('base_url', { type: 'url', value: p ? p.base_url || '' : '', placeholder: 'https://api.example.com/v1' });
  const baseReq = h('input', { type: 'checkbox', 'data-field': 'base_url_required', checked: p ? p.base_url_required : false });
  const models = inp('known_models', { value: p ? (p.known_models || []).join(', ') : '' });
  const d = (p && p.default_settings) || { timeout_seconds: 30, max_retries: 3, slow_threshold_ms: 5000, temperature_min: 0, temperature_max: 2 };
  const ds = {};
  for (const k of ['timeout_seconds', 'max_retries', 'slow_threshold_ms', 'temperature_max']) ds[k] = inp(`default_settings.${k}`, { type: 'number', value: d[k] ?? '' });
  const fieldRows = h('div');
  const addFieldRow = (f) => {
    const n = fieldRows.children.length;
    const row = h('fieldset', { class: 'cred-field' }, h('legend', {}, `Credential field ${n + 1}`),
      h('div', { class: 'grid2' },
        field(`cf-name-${n}`, 'Field name', inp(`credential_fields.name`, { value: f.name || '', class: 'cf-name' }), { required: true, help: 'e.g. api_key' }),
        field(`cf-label-${n}`, 'Label', inp(`credential_fields.label`, { value: f.label || '', class: 'cf-label' }), { required: true }),
        field(`cf-pattern-${n}`, 'Pattern (regular expression)', inp(`credential_fields.pattern`, { value: f.pattern || '', class: 'cf-pattern' })),
        field(`cf-help-${n}`, 'Help text', inp(`credential_fields.help`, { value: f.help || '', class: 'cf-help' }))),
      h('div', { class: 'field checkbox' }, h('input', { type: 'checkbox', id: `cf-secret-${n}`, class: 'cf-secret', checked: f.secret !== false }), h('label', { for: `cf-secret-${n}` }, 'Secret (write-only, encrypted)')),
      h('div', { class: 'field checkbox' }, h('input', { type: 'checkbox', id: `cf-required-${n}`, class: 'cf-required', checked: f.required !== false }), h('label', { for: `cf-required-${n}` }, 'Required')));
    fieldRows.append(row);
  };
  for (const f of (p ? p.credential_fields : [{ name: 'api_key', label: 'API key', secret: true, required: true, pattern: '^[\\x21-\\x7e]{8,512}$', help: 'Paste the key exactly as issued.' }])) addFieldRow(f);
  append(form,
    h('fieldset', {}, h('legend', {}, 'Provider'),
      field('p-id', 'Provider id', pid, { required: true, help: 'Lower-case letters, digits, - and _; cannot change later.' }),
      field('p-name', 'Display name', name, { required: true }), field('p-desc', 'Description', desc),
      field('p-adapter', 'Protocol', adapter, { help: 'Any OpenAI-compatible API uses the openai protocol.' }),
      field('p-base', 'Base URL', base), h('div', { class: 'field checkbox' }, baseReq, h('label', { for: 'p-base-req' }, 'Users must give their own base URL')),
      field('p-models', 'Known models (comma-separated)', models)),
    h('fieldset', {}, h('legend', {}, 'Credential fields'), fieldRows, h('button', { type: 'button', onclick: () => addFieldRow({ secret: false, required: false }) }, '+ Add field')),
    h('fieldset', {}, h('legend', {}, 'Default settings'), h('div', { class: 'grid2' },
      field('p-timeout', 'Request timeout (seconds)', ds.timeout_seconds), field('p-retries', 'Max retries', ds.max_retries),
      field('p-slow', 'Slow threshold (ms)', ds.slow_threshold_ms), field('p-tmax', 'Max temperature', ds.temperature_max))),
    banner, h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, p ? 'Save provider' : 'Add provider'), h('a', { class: 'button', href: '#/admin/providers' }, 'Cancel')));
  baseReq.id = 'p-base-req';
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clear(banner);
    const fields = [...fieldRows.querySelectorAll('.cred-field')].map((row) => {
      const f = { name: $('.cf-name', row).value.trim(), label: $('.cf-label', row).value.trim(), secret: $('.cf-secret', row).checked, required: $('.cf-required', row).checked };
      if ($('.cf-pattern', row).value.trim()) f.pattern = $('.cf-pattern', row).value.trim();
      f.help = $('.cf-help', row).value.trim();
      return f;
    });
    const body = {
      name: name.value.trim(), adapter: adapter.value, description: desc.value.trim() || null,
      base_url: base.value.trim() || null, base_url_required: baseReq.checked, credential_fields: fields,
      known_models: models.value.split(',').map((m) => m.trim()).filter(Boolean),
      default_settings: Object.fromEntries(Object.entries(ds).filter(([, i]) => i.value !== '').map(([k, i]) => [k, Number(i.value)])),
    };
    const save = async (force) => {
      if (p) await api('PATCH', `/providers/${p.id}${force ? '?force=true' : ''}`, { body, headers: { 'If-Match': `"v${p.version}"` } });
      else await api('POST', '/providers', { body: { id: pid.value.trim(), ...body, enabled: true } });
      cache.delete('providers');
      toast(`Saved provider ${body.name}.`);
      location.hash = '#/admin/providers';
    };
    banner.replaceChildren();
    try {
      await save(false);
    } catch (e) {
      if (e.status === 409 && e.code === 'provider_in_use') {
        // Stored keys are never sent to a new address: say what changing it costs, and let
        // the admin confirm.
        const n = (e.details || {}).connections_affected;
        const go = h('button', { type: 'button', class: 'danger-outline' }, 'Change the base URL anyway');
        go.addEventListener('click', async () => {
          go.disabled = true;
          try { await save(true); } catch (err) { banner.replaceChildren(errorAlert(err)); }
        });
        banner.append(h('div', { class: 'alert warning', role: 'alert' },
          h('p', {}, `${n} connection(s) use this provider's base URL. Their stored keys will not be sent to the new address: each owner will have to enter the key again.`), go));
        return;
      }
      if (e.status === 412) { banner.append(h('div', { class: 'alert warning', role: 'alert' }, 'This provider was changed elsewhere. ', h('button', { type: 'button', onclick: () => render() }, 'Reload'))); return; }
      if (!setFieldError(form, e.field, e.message)) banner.append(errorAlert(e));
      else banner.append(h('div', { class: 'alert error', role: 'alert' }, e.message));
    }
  });
  if (mount(h('div', {}, h('p', {}, h('a', { href: '#/admin/providers' }, '← Providers')), h('h1', {}, p ? `Edit provider ${p.name}` : 'Add provider'), form))) (p ? name : pid).focus();
}

async function viewUsage({ mount, alive }) {
  const owner = h('input', { 'data-field': 'owner', autocomplete: 'off' });
  const out = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Usage by user' }, h('label', { for: 'u-owner' }, 'User', Object.assign(owner, { id: 'u-owner' })), h('button', { type: 'submit', class: 'primary' }, 'Show usage'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    out.replaceChildren(spinner('Loading…'));
    try {
      const u = await api('GET', `/usage?owner=${encodeURIComponent(owner.value.trim())}`);
      if (!alive()) return;
      out.replaceChildren(h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': `Usage of ${u.owner}, scrollable` }, h('table', { class: 'responsive', 'aria-label': `Usage of ${u.owner}` },
        h('thead', {}, h('tr', {}, ['Connection', 'Provider', 'Requests 7 d', 'Errors 7 d', 'Requests 30 d', 'Tokens 30 d', 'p50 / p95 30 d'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, u.items.length ? u.items.map((i) => h('tr', {}, h('td', { 'data-label': 'Connection' }, i.name), h('td', { 'data-label': 'Provider' }, i.provider),
          h('td', { class: 'num', 'data-label': 'Requests 7 d' }, i['7d'].requests), h('td', { class: 'num', 'data-label': 'Errors 7 d' }, i['7d'].errors),
          h('td', { class: 'num', 'data-label': 'Requests 30 d' }, i['30d'].requests), h('td', { class: 'num', 'data-label': 'Tokens 30 d' }, i['30d'].input_tokens + i['30d'].output_tokens),
          h('td', { class: 'num', 'data-label': 'p50 / p95 30 d' }, `${i['30d'].latency_p50_ms ?? '—'} / ${i['30d'].latency_p95_ms ?? '—'} ms`))) : [h('tr', {}, h('td', { colspan: 7, class: 'empty' }, 'No connections for this user.'))]))));
    } catch (e) { out.replaceChildren(errorAlert(e)); }
  });
  mount(h('div', {}, h('h1', {}, 'Usage across users'), form, out));
}

// ------------------------------------------------------------------ start

async function start() {
  if (!config) {
    try { config = await (await fetch(new URL('config.json', BASE), { cache: 'no-store' })).json(); } catch { config = { auth: { mode: 'token' } }; }
  }
  if (config.auth.mode === 'cognito') {
    try { if (await cognitoCallback()) return; } catch (e) { showSignIn(e.message); return; }
  }
  session = session || loadSession();
  if (!session) { showSignIn(); return; }
  scheduleRefresh();
  if (!location.hash) history.replaceState(null, '', '#/connections');
  render();
}

window.addEventListener('hashchange', () => {
  if (narrow.matches) collapseNav(true);
  render();
});
const narrow = window.matchMedia('(max-width: 760px)');
function collapseNav(collapsed) {
  $('#sidebar').classList.toggle('collapsed', collapsed);
  $('#menu-toggle').setAttribute('aria-expanded', String(!collapsed));
}
collapseNav(narrow.matches);
$('#signout').addEventListener('click', signOut);
$('#menu-toggle').addEventListener('click', () => collapseNav(!$('#sidebar').classList.contains('collapsed')));
// Another tab signing in as someone else: this tab follows, without showing stale data.
window.addEventListener('storage', (ev) => { if (ev.key === SESSION_KEY) { session = loadSession(); render(); } });
start();

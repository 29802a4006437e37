// hiegw console: hash-routed views over the gateway's JSON API.
import { h, append, replace, svg, badge, fmtTime, fmtDuration, json } from './dom.js';
import { call, query, token, setToken, APIError } from './api.js';
import { reviewView } from './review.js';
import { appAcksView, appAckSummary, stateBadge } from './appacks.js';

const main = document.getElementById('main');
const notice = document.getElementById('notice');
let stopPolling = () => {};

// ---- notices --------------------------------------------------------------

function say(text, kind = 'info') {
  replace(notice, text ? h('p', { class: kind }, text) : null);
}

function fail(err) {
  say(err instanceof APIError || err instanceof Error ? err.message : String(err), 'error');
}

// ---- token ----------------------------------------------------------------

function setupToken() {
  const input = document.getElementById('token');
  input.value = token();
  document.getElementById('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    setToken(input.value.trim());
    say(input.value.trim() ? 'Token set for this browser tab.' : 'No token: requests go without one.');
    route();
  });
  document.getElementById('token-clear').addEventListener('click', () => {
    input.value = '';
    setToken('');
    say('Token forgotten.');
    route();
  });
}

// ---- router ---------------------------------------------------------------

const routes = [
  [/^#\/status$/, statusView, 'status'],
  [/^#\/messages\/([^/?]+)$/, messageView, 'messages'],
  [/^#\/messages(\?.*)?$/, messagesView, 'messages'],
  [/^#\/appacks(\?.*)?$/, (el, qs) => appAcksView(el, qs, { fail }), 'appacks'],
  [/^#\/playground$/, playgroundView, 'playground'],
  [/^#\/review$/, (el) => reviewView(el, { say, fail }), 'review'],
];

function route() {
  stopPolling();
  stopPolling = () => {};
  say('');
  const hash = location.hash || '#/status';
  for (const [re, view, nav] of routes) {
    const m = hash.match(re);
    if (!m) continue;
    for (const a of document.querySelectorAll('[data-nav]')) {
      if (a.dataset.nav === nav) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    }
    replace(main);
    Promise.resolve(view(main, ...m.slice(1).map((x) => (x === undefined ? x : decodeURIComponent(x))))).catch(fail);
    main.focus({ preventScroll: true });
    return;
  }
  location.hash = '#/status';
}

// ---- status ---------------------------------------------------------------

// refreshSoon shows the current page again after ms (to show the effect of
// an action), unless the user has gone to another page meanwhile: a late
// re-render would replace that page and drop what was clicked on it.
function refreshSoon(ms) {
  const here = location.hash;
  setTimeout(() => { if (location.hash === here) route(); }, ms);
}

// certExpiry says when a TLS listener's certificate expires, marked when
// fewer than 14 days are left (the gateway reloads a renewed one by itself).
function certExpiry(iso) {
  if (!iso) return null;
  const left = new Date(iso).getTime() - Date.now();
  return [' · certificate until ', fmtTime(iso),
    left < 14 * 86400e3 ? [' ', h('span', { class: 'badge warning' }, left <= 0 ? 'expired' : 'expires soon')] : null];
}

const counterLabels = [
  ['received', 'Received'], ['processed', 'Processed'], ['failed', 'Failed'], ['rejected', 'Rejected'],
  ['duplicates', 'Duplicates'], ['published', 'Published'], ['publish_failures', 'Publish failures'],
  ['dead_lettered', 'Dead-lettered'], ['unmatched', 'Unrouted events'],
];

async function statusView(el) {
  const title = h('h2', {}, 'Status');
  const meta = h('div', { class: 'panel' });
  const listeners = h('div', { class: 'panel' });
  const processing = h('div', { class: 'panel', id: 'processing' });
  const cards = h('div', { class: 'cards', id: 'throughput' });
  const senders = h('div', { class: 'panel' });
  append(el, [title, meta, h('h3', {}, 'Processing'), processing, h('h3', {}, 'Throughput'), cards,
    h('h3', {}, 'Listeners'), listeners,
    h('h3', {}, 'Senders'), senders]);
  const history = new Map(); // counter → [{t, v}]
  let alive = true;
  stopPolling = () => { alive = false; };

  // Operators may hold processing (receipt goes on) and let it go again.
  async function showProcessing() {
    let p;
    try { p = await call('/api/v1/pipeline'); } catch { return; }
    if (!alive) return;
    const btn = h('button', { type: 'button', class: p.paused ? '' : 'secondary' },
      p.paused ? 'Resume processing' : 'Pause processing');
    btn.addEventListener('click', async () => {
      if (!p.paused && !confirm('Pause processing? Messages are still received, stored and acknowledged; nothing is processed or routed until you resume.')) return;
      try {
        await call('/api/v1/pipeline/' + (p.paused ? 'resume' : 'pause'), { method: 'POST' });
        say(p.paused ? 'Processing resumed.' : 'Processing paused: messages are received and stored, not processed.');
        showProcessing();
      } catch (e) { fail(e); }
    });
    replace(processing, h('dl', { class: 'kv' },
      h('dt', {}, 'State'), h('dd', {}, badge(p.paused ? 'paused' : p.standby ? 'standby' : 'running'), ' ', btn,
        p.standby ? ' other replicas hold every processing partition; this one receives and stores' : ''),
      h('dt', {}, 'Waiting'), h('dd', {}, String(p.waiting || 0), ' message(s) received and not yet processed')));
  }

  async function tick() {
    const s = await call('/api/v1/console/status');
    if (!alive) return;
    showProcessing();
    const t = Date.parse(s.now) / 1000;
    replace(meta, h('dl', { class: 'kv' },
      h('dt', {}, 'Version'), h('dd', {}, s.version || 'unknown'),
      h('dt', {}, 'Up for'), h('dd', {}, fmtDuration(s.uptime_seconds), ' (since ', fmtTime(s.started_at), ')'),
      h('dt', {}, 'Mapping set'), h('dd', { class: 'mono' }, s.mapping_version || '—'),
      h('dt', {}, 'Messages by status'),
      h('dd', {}, Object.keys(s.messages_by_status || {}).length === 0 ? h('span', { class: 'empty' }, 'no messages yet')
        : Object.entries(s.messages_by_status).sort().map(([k, v]) =>
          h('a', { href: '#/messages?status=' + encodeURIComponent(k), class: 'status-link' }, badge(k), ' ', String(v))))));
    replace(cards, counterLabels.map(([key, label]) => {
      const v = (s.counters || {})[key] || 0;
      const hist = history.get(key) || [];
      hist.push({ t, v });
      while (hist.length > 60) hist.shift();
      history.set(key, hist);
      let rate = '';
      if (hist.length > 1) {
        const a = hist[hist.length - 2], b = hist[hist.length - 1];
        if (b.t > a.t) rate = ((b.v - a.v) / (b.t - a.t)).toFixed(1) + ' /s now';
      }
      return h('div', { class: 'card' }, h('div', { class: 'label' }, label), h('div', { class: 'value' }, String(v)),
        h('div', { class: 'rate' }, rate || 'rate after next reading'), spark(hist, label));
    }));
    replace(listeners, s.listeners.length === 0 ? h('p', { class: 'empty' }, 'no listener reported') :
      h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Listener'), h('th', {}, 'Address'), h('th', {}, 'Security'), h('th', {}, 'State'))),
        h('tbody', {}, s.listeners.map((l) => h('tr', {}, h('td', {}, l.name), h('td', { class: 'mono' }, l.addr),
          h('td', {}, l.security || '', certExpiry(l.cert_not_after)), h('td', {}, badge('up')))))));
    const mapped = new Set(s.mapped_senders || []);
    replace(senders, (s.senders || []).length === 0 ? h('p', { class: 'empty' }, 'no sender has sent anything yet') :
      h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Sender'), h('th', { class: 'num' }, 'Messages'),
        h('th', {}, 'Last received'), h('th', {}, 'Mappings'))),
        h('tbody', {}, s.senders.map((x) => h('tr', {},
          h('td', {}, h('a', { href: '#/messages?sender=' + encodeURIComponent(x.sender) }, x.sender)),
          h('td', { class: 'num' }, String(x.messages)), h('td', {}, fmtTime(x.last_received_at)),
          h('td', {}, mapped.has(x.sender) ? 'own + default' : 'default'))))));
  }
  await tick();
  const timer = setInterval(() => tick().catch(fail), 5000);
  stopPolling = () => { alive = false; clearInterval(timer); };
}

function spark(hist, label) {
  const w = 120, ht = 28;
  const el = svg('svg', { class: 'spark', viewBox: `0 0 ${w} ${ht}`, preserveAspectRatio: 'none', role: 'img',
    'aria-label': label + ' rate over the last readings' });
  if (hist.length < 3) return el;
  const rates = [];
  for (let i = 1; i < hist.length; i++) {
    const dt = hist[i].t - hist[i - 1].t;
    rates.push(dt > 0 ? (hist[i].v - hist[i - 1].v) / dt : 0);
  }
  const top = Math.max(...rates, 1e-9);
  const pts = rates.map((r, i) => `${(i / Math.max(rates.length - 1, 1)) * w},${ht - 2 - (r / top) * (ht - 4)}`);
  el.append(svg('polyline', { points: pts.join(' ') }));
  return el;
}

// ---- message list -----------------------------------------------------------

const statuses = ['', 'received', 'processed', 'failed', 'rejected'];

async function messagesView(el, qs) {
  const params = new URLSearchParams((qs || '').replace(/^\?/, ''));
  const f = {
    sender: params.get('sender') || '', status: params.get('status') || '', type: params.get('type') || '',
    since: params.get('since') || '', until: params.get('until') || '', patient: params.get('patient') || '',
  };
  const senderList = h('datalist', { id: 'sender-list' });
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter messages' },
    h('label', {}, 'Sender', h('input', { name: 'sender', value: f.sender, list: 'sender-list', size: 14 })),
    h('label', {}, 'Status', h('select', { name: 'status' },
      statuses.map((s) => h('option', { value: s, selected: s === f.status }, s || 'any')))),
    h('label', {}, 'Message type', h('input', { name: 'type', value: f.type, placeholder: 'e.g. ORU or ADT^A08', size: 14 })),
    h('label', {}, 'Received from', h('input', { name: 'since', type: 'datetime-local', value: toLocalInput(f.since) })),
    h('label', {}, 'until', h('input', { name: 'until', type: 'datetime-local', value: toLocalInput(f.until) })),
    h('button', { type: 'submit' }, 'Apply'),
    h('button', { type: 'button', class: 'secondary', onclick: () => { location.hash = '#/messages'; } }, 'Clear'),
    senderList);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const d = new FormData(form);
    const q = {
      sender: d.get('sender').trim(), status: d.get('status'), type: d.get('type').trim(),
      since: fromLocalInput(d.get('since')), until: fromLocalInput(d.get('until')), patient: f.patient,
    };
    location.hash = '#/messages' + query(q);
  });
  const actions = h('div', { class: 'row' });
  const table = h('table', { id: 'message-table' },
    h('caption', { class: 'visually-hidden' }, 'Messages, newest first'),
    h('thead', {}, h('tr', {},
      h('th', {}, h('span', { class: 'visually-hidden' }, 'Select')), h('th', {}, 'Received'), h('th', {}, 'Sender'),
      h('th', {}, 'Type'), h('th', {}, 'Control id'), h('th', {}, 'Channel'), h('th', {}, 'Status'), h('th', {}, 'Problem'))));
  const body = h('tbody');
  table.append(body);
  const more = h('button', { type: 'button', class: 'secondary' }, 'Load more');
  const count = h('span', { class: 'empty', 'aria-live': 'polite' });
  const patientNote = f.patient ? h('p', {}, 'Only messages linked to enterprise patient ', h('span', { class: 'mono' }, f.patient), '.') : null;
  append(el, [h('h2', {}, 'Messages'), patientNote, form, actions, table, h('div', { class: 'row' }, more, count)]);

  call('/api/v1/console/status').then((s) => {
    for (const x of s.senders || []) senderList.append(h('option', { value: x.sender }));
  }).catch(() => {});

  const selected = new Set();
  const reprocess = h('button', { type: 'button', disabled: true }, 'Reprocess selected');
  const reprocessAll = h('button', { type: 'button', class: 'secondary' },
    f.sender ? `Reprocess every failed message of ${f.sender}` : 'Reprocess every failed message');
  append(actions, [reprocess, reprocessAll]);
  reprocess.addEventListener('click', async () => {
    try {
      const r = await call('/api/v1/messages/reprocess', { method: 'POST', body: { ids: [...selected] } });
      say(`${r.requeued} message(s) queued for processing again.`);
      refreshSoon(800);
    } catch (e) { fail(e); }
  });
  reprocessAll.addEventListener('click', async () => {
    const what = f.sender ? `every failed message of ${f.sender}` : 'every failed message of every sender';
    if (!confirm(`Queue ${what} for processing again?`)) return;
    try {
      const r = await call('/api/v1/messages/reprocess', { method: 'POST', body: { sender: f.sender, ids: [] } });
      say(`${r.requeued} message(s) queued for processing again.`);
      refreshSoon(800);
    } catch (e) { fail(e); }
  });

  const typeFilter = f.type.toUpperCase();
  let before = '';
  let shown = 0;
  async function load() {
    more.disabled = true;
    // The API filters sender, status and time; the type is matched here,
    // reading on until a page's worth matched or the log ends.
    let matched = 0, pages = 0, exhausted = false;
    while (matched < 50 && pages < 10) {
      const page = await call('/api/v1/messages' + query({ sender: f.sender, status: f.status, since: f.since,
        until: f.until, patient: f.patient, before, limit: typeFilter ? 200 : 50 }));
      pages++;
      for (const m of page.messages) {
        if (typeFilter && !(m.message_type || m.kind || '').toUpperCase().startsWith(typeFilter)) continue;
        body.append(messageRow(m, selected, () => { reprocess.disabled = selected.size === 0; }));
        matched++;
      }
      if (!page.next_before || page.messages.length === 0) { exhausted = true; break; }
      before = page.next_before;
      if (!typeFilter) break;
    }
    shown += matched;
    if (shown === 0) body.append(h('tr', {}, h('td', { colspan: 8, class: 'empty' }, 'No message matches these filters.')));
    count.textContent = `${shown} shown` + (exhausted ? ', end of the log' : '');
    more.disabled = exhausted;
    more.hidden = exhausted;
  }
  more.addEventListener('click', () => load().catch(fail));
  await load();
}

function messageRow(m, selected, onChange) {
  const box = h('input', { type: 'checkbox', 'aria-label': 'select message ' + (m.control_id || m.id),
    disabled: m.status !== 'failed' });
  box.addEventListener('change', () => {
    if (box.checked) selected.add(m.id); else selected.delete(m.id);
    onChange();
  });
  return h('tr', { dataset: { id: m.id } },
    h('td', {}, box),
    h('td', { class: 'when' }, h('a', { href: '#/messages/' + encodeURIComponent(m.id) }, fmtTime(m.received_at))),
    h('td', {}, m.sender),
    h('td', { class: 'mono' }, m.message_type || m.kind),
    h('td', { class: 'mono' }, m.control_id || m.filename || ''),
    h('td', {}, m.channel),
    h('td', {}, badge(m.status)),
    h('td', {}, m.error ? firstLine(m.error) : ''));
}

function firstLine(s) {
  const line = String(s).split('\n')[0];
  return line.length > 120 ? line.slice(0, 117) + '…' : line;
}

function toLocalInput(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

function fromLocalInput(v) {
  if (!v) return '';
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? '' : d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

// ---- one message ------------------------------------------------------------

async function messageView(el, id) {
  const m = await call('/api/v1/messages/' + encodeURIComponent(id) + '?body=true');
  const head = h('div', { class: 'panel' }, h('dl', { class: 'kv' },
    h('dt', {}, 'Status'), h('dd', {}, badge(m.status)),
    h('dt', {}, 'Sender'), h('dd', {}, m.sender, ' via ', m.channel),
    h('dt', {}, 'Type'), h('dd', { class: 'mono' }, m.message_type || m.kind),
    h('dt', {}, m.filename ? 'File' : 'Control id'), h('dd', { class: 'mono' }, m.filename || m.control_id),
    h('dt', {}, 'Received'), h('dd', {}, fmtTime(m.received_at)),
    h('dt', {}, 'Processed'), h('dd', {}, m.processed_at ? fmtTime(m.processed_at) : '—',
      m.attempts ? ` (${m.attempts} attempt${m.attempts > 1 ? 's' : ''})` : ''),
    h('dt', {}, 'Mapping set'), h('dd', { class: 'mono' }, m.mapping_version || '—'),
    h('dt', {}, 'Message id'), h('dd', { class: 'mono' }, m.id),
    h('dt', {}, 'Application ACK'), h('dd', { id: 'app-ack' }, appAckSummary(m.app_ack, m.status)),
    h('dt', {}, 'Notes'), h('dd', { id: 'notes-summary' }, (m.notes || []).length
      ? h('a', { href: '#notes' }, `${m.notes.length} (below)`)
      : h('span', { class: 'empty' }, m.status === 'processed' ? 'none: every code was mapped, no value was left out' : 'none')),
    m.error ? [h('dt', {}, 'Problem'), h('dd', {}, h('ul', { class: 'problems' }, m.error.split('\n').filter(Boolean).map((l) => h('li', {}, l))))] : null));
  const actions = h('div', { class: 'row' }, h('a', { href: '#/messages' }, '← all messages'));
  if (m.status === 'failed') {
    const btn = h('button', { type: 'button' }, 'Reprocess this message');
    btn.addEventListener('click', async () => {
      try {
        const r = await call('/api/v1/messages/reprocess', { method: 'POST', body: { ids: [m.id] } });
        say(r.requeued ? 'Queued for processing again.' : 'Nothing queued: the message is no longer failed.');
        refreshSoon(1000);
      } catch (e) { fail(e); }
    });
    actions.append(btn);
  }
  const raw = rawView(m.body || '');
  const tree = h('div', { class: 'tree', id: 'tree', 'aria-label': 'Parsed message' }, h('p', { class: 'empty' }, 'reading…'));
  append(el, [h('h2', {}, 'Message ', h('span', { class: 'mono' }, m.control_id || m.filename || m.id)), actions, head,
    notesView(m.notes || []),
    h('div', { class: 'split' },
      h('section', { 'aria-labelledby': 'raw-h' }, h('h3', { id: 'raw-h' }, 'Raw'), raw),
      h('section', { 'aria-labelledby': 'tree-h' }, h('h3', { id: 'tree-h' }, 'Parsed'), tree))]);

  const panes = {
    fhir: h('div', { id: 'pane-fhir' }), patient: h('div', { id: 'pane-patient' }),
    routing: h('div', { id: 'pane-routing' }), ack: h('div', { id: 'pane-ack' }),
  };
  const tabs = h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'Message output' });
  const names = { fhir: 'FHIR output', patient: 'Patient link', routing: 'Routing', ack: 'Reply (ACK)' };
  for (const [k, label] of Object.entries(names)) {
    const b = h('button', { type: 'button', role: 'tab', id: 'tab-' + k, 'aria-controls': 'pane-' + k, 'aria-selected': 'false' }, label);
    b.addEventListener('click', () => select(k));
    tabs.append(b);
    panes[k].setAttribute('role', 'tabpanel');
    panes[k].setAttribute('aria-labelledby', 'tab-' + k);
  }
  function select(k) {
    for (const [name, p] of Object.entries(panes)) {
      p.hidden = name !== k;
      document.getElementById('tab-' + name).setAttribute('aria-selected', String(name === k));
    }
  }
  append(el, [tabs, Object.values(panes)]);
  select('fhir');

  const loaders = [
    m.kind === 'ccda' ? Promise.resolve(replace(tree, h('p', { class: 'empty' }, 'A C-CDA document has no HL7 v2 tree.')))
      : call(`/api/v1/messages/${encodeURIComponent(id)}/tree`).then((t) => renderTree(tree, t, raw)),
    call(`/api/v1/messages/${encodeURIComponent(id)}/resources`).then((r) => renderResources(panes.fhir, r)),
    call(`/api/v1/messages/${encodeURIComponent(id)}/patient`).then((p) => renderPatient(panes.patient, p)),
    call(`/api/v1/messages/${encodeURIComponent(id)}/routing`).then((r) => renderRouting(panes.routing, r)),
  ];
  replace(panes.ack, m.ack ? rawView(m.ack) : h('p', { class: 'empty' }, 'No reply was sent for this message (files get none).'),
    m.app_ack ? [h('h3', {}, 'Application acknowledgement ', stateBadge(m.app_ack.status)),
      m.app_ack.message ? rawView(m.app_ack.message) : h('p', { class: 'empty' }, 'Its text is not available.')] : null);
  const results = await Promise.allSettled(loaders);
  const bad = results.find((r) => r.status === 'rejected');
  if (bad) fail(bad.reason);
}

// notesView lists what processing noticed without failing the message:
// codes no table mapped (kept as sent) and values the mapping left out.
// Nothing when there are none (the summary above says so).
function notesView(notes) {
  if (notes.length === 0) return null;
  return h('section', { class: 'panel', id: 'notes', 'aria-labelledby': 'notes-h' },
    h('h3', { id: 'notes-h' }, `Notes (${notes.length})`),
    h('p', {}, 'Processing kept these as sent: codes no table mapped, values the mapping left out.'),
    h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Kind'), h('th', {}, 'Detail'))),
      h('tbody', {}, notes.map((n) => h('tr', { dataset: { kind: n.kind } }, h('td', {}, badge(n.kind)),
        h('td', { class: 'mono' }, n.detail))))));
}

function rawView(text) {
  const lines = String(text).split(/\r\n|\r|\n/);
  if (lines.length && lines[lines.length - 1] === '') lines.pop();
  return h('pre', { class: 'raw', tabindex: 0, 'aria-label': 'Raw message text' },
    lines.map((l, i) => h('span', { class: 'ln', dataset: { n: i + 1 } }, l)));
}

function renderTree(el, t, raw) {
  const problems = (t.problems || []).length ? h('ul', { class: 'problems', 'aria-label': 'Problems found' },
    t.problems.map((p) => h('li', {}, p.message))) : null;
  const segs = h('ul', {}, t.segments.map((s) => {
    const d = h('details', { class: 'seg', open: s.index <= 4 ? true : null },
      h('summary', {}, h('span', { class: 'path' }, `${s.name}${s.occurrence > 1 ? '(' + s.occurrence + ')' : ''}`),
        `line ${s.line}, ${s.fields.length} field${s.fields.length === 1 ? '' : 's'}`),
      h('ul', {}, s.fields.map(fieldNode)));
    d.addEventListener('toggle', () => highlight(raw, s.line));
    d.addEventListener('mouseenter', () => highlight(raw, s.line));
    return h('li', {}, d);
  }));
  replace(el, t.structure ? h('p', {}, 'Structure ', h('span', { class: 'mono' }, t.structure)) : null, problems,
    t.segments.length ? segs : h('p', { class: 'empty' }, 'The message could not be parsed.'));
}

function highlight(raw, line) {
  for (const l of raw.querySelectorAll('.ln.hl')) l.classList.remove('hl');
  const target = raw.querySelector(`.ln[data-n="${Number(line)}"]`);
  if (target) target.classList.add('hl');
}

function fieldNode(f) {
  if (f.reps.length === 1 && !(f.reps[0].components || []).length) {
    return h('li', {}, h('span', { class: 'path' }, f.path), h('span', { class: 'val' }, f.reps[0].value));
  }
  return h('li', {}, h('details', {}, h('summary', {}, h('span', { class: 'path' }, f.path),
    h('span', { class: 'val' }, f.reps.map((r) => r.value).join(' ~ '))),
  h('ul', {}, f.reps.map((r) => {
    const comps = r.components || [];
    const inner = comps.map((c) => h('li', {}, h('span', { class: 'path' }, c.path), h('span', { class: 'val' }, c.value),
      (c.subs || []).length ? h('ul', {}, c.subs.map((s) => h('li', {}, h('span', { class: 'path' }, s.path), h('span', { class: 'val' }, s.value)))) : null));
    if (f.reps.length === 1) return inner;
    return h('li', {}, h('span', { class: 'path' }, r.path), comps.length ? h('ul', {}, inner) : h('span', { class: 'val' }, r.value));
  }))));
}

function renderResources(el, r) {
  const list = r.resources || [];
  if (list.length === 0) {
    replace(el, h('p', { class: 'empty' }, r.status === 'processed'
      ? 'Processing wrote no new resource version (everything was already current).'
      : `No FHIR output: the message is ${r.status}.`));
    return;
  }
  replace(el, h('p', {}, `${list.length} resource version(s) written with mapping set `, h('span', { class: 'mono' }, r.mapping_version || '—'), '.'),
    list.map((x) => h('details', { open: list.length <= 3 ? true : null },
      h('summary', {}, h('strong', {}, `${x.resource_type}/${x.id}`), ` version ${x.version} `, x.current ? badge('current') : badge('superseded')),
      json(x.resource, `${x.resource_type} ${x.id}`))));
}

function renderPatient(el, p) {
  if (!p.patient_id) {
    replace(el, h('p', { class: 'empty' }, 'This message is not linked to a patient.'));
    return;
  }
  replace(el, h('dl', { class: 'kv' }, h('dt', {}, 'Enterprise patient'), h('dd', { class: 'mono' }, p.patient_id)),
    h('h3', {}, 'Identifiers linked to this patient'),
    p.identifiers.length === 0 ? h('p', { class: 'empty' }, 'none') :
      h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'System (assigning authority)'), h('th', {}, 'Value'))),
        h('tbody', {}, p.identifiers.map((i) => h('tr', {}, h('td', { class: 'mono' }, i.System ?? i.system), h('td', { class: 'mono' }, i.Value ?? i.value))))),
    h('p', {}, h('a', { href: '#/messages?patient=' + encodeURIComponent(p.patient_id) }, 'Messages of this patient')));
}

function renderRouting(el, r) {
  const evs = r.events || [];
  if (evs.length === 0) {
    replace(el, h('p', { class: 'empty' }, 'No event was routed for this message (not processed yet, or no subscription matched).'));
    return;
  }
  replace(el, h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Subscriber'), h('th', {}, 'Topic'), h('th', {}, 'Event'),
    h('th', {}, 'Key'), h('th', {}, 'State'), h('th', { class: 'num' }, 'Attempts'), h('th', {}, 'Created'), h('th', {}, 'Sent'), h('th', {}, 'Last error'))),
  h('tbody', {}, evs.map((e) => h('tr', {}, h('td', {}, e.subscriber), h('td', { class: 'mono' }, e.topic), h('td', {}, e.event_type),
    h('td', { class: 'mono' }, e.key), h('td', {}, badge(e.state)), h('td', { class: 'num' }, String(e.attempts)),
    h('td', {}, fmtTime(e.created_at)), h('td', {}, fmtTime(e.sent_at || e.dead_at)), h('td', {}, e.last_error || ''))))));
}

// ---- mapping playground ------------------------------------------------------

const sample = [
  'MSH|^~\\&|LAB|NORTHLAB|HIE|HIE|20240101120000||ORU^R01^ORU_R01|PLAY0001|P|2.5.1',
  'PID|1||12345^^^NORTHLAB^MR||DOE^JANE||19800101|F',
  'OBR|1||R1|2345-7^Glucose^LN|||20240101110000',
  'OBX|1|NM|2345-7^Glucose^LN||95|mg/dL|70-99|N|||F',
].join('\n');

async function playgroundView(el) {
  const senderInput = h('input', { id: 'pg-sender', name: 'sender', list: 'pg-senders', size: 18, placeholder: 'default mappings' });
  const senders = h('datalist', { id: 'pg-senders' });
  const text = h('textarea', { id: 'pg-message', class: 'msg', spellcheck: 'false', 'aria-describedby': 'pg-help' });
  const run = h('button', { type: 'submit', id: 'pg-run' }, 'Map it');
  const out = h('div', { id: 'pg-output', 'aria-live': 'polite' });
  const form = h('form', {},
    h('p', { id: 'pg-help' }, 'Paste an HL7 v2 message (or several, or a batch) and pick the sender whose mappings apply. ',
      'Nothing is stored or sent on; the use of the playground is audited, its content is not.'),
    h('div', { class: 'row' }, h('label', { for: 'pg-sender' }, 'Sender '), senderInput, senders,
      h('button', { type: 'button', class: 'secondary', onclick: () => { text.value = sample; } }, 'Insert a sample')),
    h('label', { for: 'pg-message' }, 'Message'), text, h('div', { class: 'row' }, run));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    run.disabled = true;
    replace(out, h('p', { class: 'empty' }, 'mapping…'));
    try {
      const r = await call('/api/v1/mappings/dry-run', { method: 'POST', body: { sender: senderInput.value.trim(), message: text.value } });
      renderDryRun(out, r);
    } catch (e) {
      replace(out);
      fail(e);
    } finally {
      run.disabled = false;
    }
  });
  append(el, [h('h2', {}, 'Mapping playground'), h('div', { class: 'panel' }, form), out]);
  try {
    const s = await call('/api/v1/console/status');
    const names = new Set([...(s.mapped_senders || []), ...(s.senders || []).map((x) => x.sender)]);
    for (const n of [...names].sort()) senders.append(h('option', { value: n }));
  } catch { /* the list is a convenience */ }
}

function renderDryRun(el, r) {
  const head = h('p', { id: 'pg-summary' }, r.ok ? badge('ok') : badge('failed'), ' ',
    `${r.bundles.length} bundle(s) from mapping set `, h('span', { class: 'mono' }, r.mapping_version),
    r.sender ? ` for sender ${r.sender}` : ' (default mappings)', '.');
  const problems = r.problems.length ? [h('h3', {}, 'Errors'), h('ul', { class: 'problems', id: 'pg-problems' },
    r.problems.map((p) => h('li', {}, p.message)))] : null;
  const warnings = (r.warnings || []).length ? [h('h3', {}, 'Warnings'), h('ul', { class: 'problems warnings', id: 'pg-warnings' },
    r.warnings.map((p) => h('li', {}, p.message)))] : null;
  replace(el, head, problems, warnings, r.bundles.map((b, i) => [h('h3', {}, `Bundle ${i + 1}`), json(b, `Bundle ${i + 1}`)]));
}

// ---- start --------------------------------------------------------------------

setupToken();
window.addEventListener('hashchange', route);
route();

// Application acknowledgements (enhanced mode, MSH-16): what hiegw owes each
// sender after processing, and whether the sender has taken it. The list
// holds ids, codes and delivery state only, never message content.
import { h, append, replace, badge, fmtTime } from './dom.js';
import { call, query } from './api.js';

export const appAckStates = ['pending', 'sent', 'refused', 'no_route'];

const stateHelp = {
  pending: 'queued or being retried',
  sent: 'the sender committed it',
  refused: 'the sender refused it; not sent again',
  no_route: 'the sender has no return address configured',
};

// stateBadge shows a state with the API's name made readable (no_route as
// "no route").
export function stateBadge(s) {
  const b = badge(String(s || '').replace(/_/g, ' '));
  if (stateHelp[s]) b.title = stateHelp[s];
  return b;
}

export async function appAcksView(el, qs, { fail }) {
  const params = new URLSearchParams((qs || '').replace(/^\?/, ''));
  const f = { sender: params.get('sender') || '', status: params.get('status') || '' };
  const senderList = h('datalist', { id: 'appack-senders' });
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter application acknowledgements' },
    h('label', {}, 'Sender', h('input', { name: 'sender', value: f.sender, list: 'appack-senders', size: 14 })),
    h('label', {}, 'Status', h('select', { name: 'status' },
      ['', ...appAckStates].map((s) => h('option', { value: s, selected: s === f.status }, s ? s.replace(/_/g, ' ') : 'any')))),
    h('button', { type: 'submit' }, 'Apply'),
    h('button', { type: 'button', class: 'secondary', onclick: () => { location.hash = '#/appacks'; } }, 'Clear'),
    senderList);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const d = new FormData(form);
    location.hash = '#/appacks' + query({ sender: d.get('sender').trim(), status: d.get('status') });
  });
  const counts = h('div', { class: 'panel', id: 'appack-counts' }, h('p', { class: 'empty' }, 'reading…'));
  const table = h('table', { id: 'appack-table' },
    h('caption', { class: 'visually-hidden' }, 'Application acknowledgements, newest first'),
    h('thead', {}, h('tr', {},
      h('th', {}, 'Queued'), h('th', {}, 'Sender'), h('th', {}, 'Message'), h('th', {}, 'ACK control id'),
      h('th', {}, 'Code'), h('th', {}, 'Status'), h('th', { class: 'num' }, 'Attempts'), h('th', {}, 'Next attempt / settled'),
      h('th', {}, 'Reply'), h('th', {}, 'Last error or reason'))));
  const body = h('tbody');
  table.append(body);
  const more = h('button', { type: 'button', class: 'secondary' }, 'Load more');
  const count = h('span', { class: 'empty', 'aria-live': 'polite' });
  append(el, [h('h2', {}, 'Application ACKs'),
    h('p', {}, 'Acknowledgements hiegw sends back after processing when a sender asks for them (enhanced mode, MSH-16), ',
      'in order per sender, to the sender\'s return address.'),
    h('h3', {}, 'By sender and status'), counts, form, table, h('div', { class: 'row' }, more, count)]);

  let before = '';
  let shown = 0;
  let first = true;
  async function load() {
    more.disabled = true;
    const page = await call('/api/v1/appacks' + query({ sender: f.sender, status: f.status, before, limit: 50 }));
    if (first) {
      first = false;
      renderCounts(counts, page.counts || [], page.by_status || {}, f);
      for (const s of [...new Set((page.counts || []).map((c) => c.sender))].sort()) senderList.append(h('option', { value: s }));
    }
    for (const a of page.appacks) body.append(appAckRow(a));
    shown += page.appacks.length;
    const exhausted = !page.next_before || page.appacks.length < 50;
    before = page.next_before;
    if (shown === 0) body.append(h('tr', {}, h('td', { colspan: 10, class: 'empty' }, 'No application acknowledgement matches these filters.')));
    count.textContent = `${shown} shown` + (exhausted ? ', end of the list' : '');
    more.disabled = exhausted;
    more.hidden = exhausted;
  }
  more.addEventListener('click', () => load().catch((e) => { more.disabled = false; fail(e); }));
  await load();
}

function renderCounts(el, counts, byStatus, f) {
  if (counts.length === 0) {
    replace(el, h('p', { class: 'empty' }, 'No sender has asked for an application acknowledgement yet.'));
    return;
  }
  const senders = new Map();
  for (const c of counts) {
    if (!senders.has(c.sender)) senders.set(c.sender, {});
    senders.get(c.sender)[c.status] = c.n;
  }
  const cell = (sender, status, n) => {
    const here = sender === f.sender && status === f.status;
    return h('td', { class: 'num' }, n ? h('a', { href: '#/appacks' + query({ sender, status }),
      'aria-current': here ? 'true' : null }, String(n)) : '0');
  };
  replace(el, h('table', {},
    h('thead', {}, h('tr', {}, h('th', {}, 'Sender'), appAckStates.map((s) => h('th', { class: 'num' }, stateBadge(s))),
      h('th', { class: 'num' }, 'Total'))),
    h('tbody', {}, [...senders.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([sender, by]) => h('tr', { dataset: { sender } },
      h('td', {}, h('a', { href: '#/appacks' + query({ sender }) }, sender)),
      appAckStates.map((s) => cell(sender, s, by[s] || 0)),
      h('td', { class: 'num' }, String(Object.values(by).reduce((x, y) => x + y, 0)))))),
    h('tfoot', {}, h('tr', {}, h('th', {}, 'All senders'),
      appAckStates.map((s) => h('td', { class: 'num' }, byStatus[s] ? h('a', { href: '#/appacks' + query({ status: s }) }, String(byStatus[s])) : '0')),
      h('td', { class: 'num' }, String(Object.values(byStatus).reduce((x, y) => x + y, 0)))))));
}

function appAckRow(a) {
  const when = a.status === 'pending' ? fmtTime(a.next_attempt_at) : fmtTime(a.done_at);
  return h('tr', { dataset: { seq: a.seq } },
    h('td', { class: 'when' }, fmtTime(a.created_at)),
    h('td', {}, a.sender),
    h('td', { class: 'mono' }, h('a', { href: '#/messages/' + encodeURIComponent(a.envelope_id) }, a.control_id || a.envelope_id)),
    h('td', { class: 'mono' }, a.ack_control_id),
    h('td', {}, badge(a.code)),
    h('td', {}, stateBadge(a.status)),
    h('td', { class: 'num' }, String(a.attempts)),
    h('td', { class: 'when' }, when || '—'),
    h('td', { class: 'mono' }, a.reply_code || ''),
    h('td', {}, a.last_error || ''));
}

// appAckSummary describes a message's application acknowledgement for its
// detail view; messageStatus is the message's own.
export function appAckSummary(a, messageStatus) {
  if (!a) {
    return h('span', { class: 'empty' }, messageStatus === 'received'
      ? 'none yet (queued when processing finishes, if the sender asked for one)'
      : 'none (the sender did not ask for one)');
  }
  const parts = [stateBadge(a.status), ' ', badge(a.code), ' ', h('span', { class: 'mono' }, a.ack_control_id)];
  if (a.status === 'pending') {
    parts.push(`, ${a.attempts} attempt${a.attempts === 1 ? '' : 's'}, next `, fmtTime(a.next_attempt_at));
  } else if (a.done_at) {
    parts.push(', settled ', fmtTime(a.done_at));
  }
  if (a.reply_code) parts.push(', sender answered ', h('span', { class: 'mono' }, a.reply_code));
  if (a.last_error) parts.push(h('div', { class: 'problems' }, a.last_error));
  parts.push(' ', h('a', { href: '#/appacks' + query({ sender: a.sender }) }, 'this sender\'s acknowledgements'));
  return parts;
}

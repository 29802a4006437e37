// The master patient index's review queue: pairs of records the matcher was
// unsure about, for a person to decide (GET /api/v1/mpi/tasks, POST
// /api/v1/mpi/tasks/{id}/decision). When the gateway does not serve those
// endpoints the panel says so.
import { h, append, replace, badge, fmtTime } from './dom.js';
import { call } from './api.js';

const LIST = '/api/v1/mpi/tasks';
const decisionPath = (id) => `/api/v1/mpi/tasks/${encodeURIComponent(id)}/decision`;

export async function reviewView(el, { say, fail }) {
  const box = h('div', { id: 'review' });
  append(el, [h('h2', {}, 'Patient matching review queue'),
    h('p', {}, 'Pairs of records the matcher could not decide on. Compare them and record whether they are the same person; the decision is audited and can be undone.'),
    box]);
  let data;
  try {
    data = await call(LIST + '?status=open');
  } catch (e) {
    if (e.status === 404 || e.status === 405 || e.status === 501) {
      replace(box, h('div', { class: 'panel', id: 'review-unavailable' },
        h('p', {}, badge('not available'), ' This gateway does not serve the review queue.'),
        h('p', { class: 'empty' }, 'The master patient index endpoints (', h('code', {}, LIST), ') are not mounted on this build.')));
      return;
    }
    throw e;
  }
  const tasks = (data && data.tasks) || [];
  if (tasks.length === 0) {
    replace(box, h('p', { class: 'empty', id: 'review-empty' }, 'No open review task.'));
    return;
  }
  replace(box, h('p', {}, `${tasks.length} open task(s).`), tasks.map((t) => taskCard(t, { say, fail })));
}

function key(k) {
  return k ? `${k.authority || ''} | ${k.mrn || ''}` : '';
}

const shown = [
  ['Family name', (r) => r.family], ['Given names', (r) => [r.given, r.middle].filter(Boolean).join(' ')],
  ['Birth date', (r) => r.birth_date], ['Sex', (r) => r.sex],
  ['Address', (r) => [...(r.address_lines || []), r.city, r.state, r.postcode].filter(Boolean).join(', ')],
  ['Phone', (r) => r.phone], ['Sender', (r) => r.sender],
];

function taskCard(t, { say, fail }) {
  const a = (t.record && t.record.record) || {};
  const b = (t.candidate_record && t.candidate_record.record) || {};
  const cmp = t.comparison || {};
  const note = h('input', { type: 'text', size: 30, placeholder: 'why (kept in the audit log)', 'aria-label': 'note for task ' + t.id });
  const buttons = [];
  const act = async (match) => {
    buttons.forEach((x) => { x.disabled = true; });
    try {
      await call(decisionPath(t.id), { method: 'POST', body: { match, note: note.value } });
      say(match ? 'Recorded: same person; the records are linked.' : 'Recorded: different people.');
      card.remove();
    } catch (e) {
      buttons.forEach((x) => { x.disabled = false; });
      fail(e);
    }
  };
  buttons.push(h('button', { type: 'button', onclick: () => act(true) }, 'Same person'),
    h('button', { type: 'button', class: 'secondary', onclick: () => act(false) }, 'Different people'));
  const card = h('section', { class: 'panel', 'aria-label': 'review task ' + t.id },
    h('p', {}, h('strong', {}, 'Score ', typeof cmp.score === 'number' ? cmp.score.toFixed(2) : '?'), ' — ', t.reason || '',
      ' — opened ', fmtTime(t.created)),
    h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, ''), h('th', {}, 'Record ', h('span', { class: 'mono' }, key(t.key))),
      h('th', {}, 'Candidate ', h('span', { class: 'mono' }, key(t.candidate))))),
    h('tbody', {}, shown.map(([label, get]) => h('tr', {}, h('th', { scope: 'row' }, label), h('td', {}, get(a) || ''), h('td', {}, get(b) || ''))))),
    (cmp.fields || []).length ? h('details', {}, h('summary', {}, 'Score breakdown'),
      h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Field'), h('th', {}, 'Agreement'), h('th', { class: 'num' }, 'Weight'), h('th', {}, 'Note'))),
        h('tbody', {}, cmp.fields.map((f) => h('tr', {}, h('td', {}, f.field), h('td', {}, f.level),
          h('td', { class: 'num' }, typeof f.weight === 'number' ? f.weight.toFixed(2) : ''), h('td', {}, f.note || '')))))) : null,
    h('div', { class: 'row' }, note, buttons));
  return card;
}

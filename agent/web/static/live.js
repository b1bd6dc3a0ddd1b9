// A class's live page: one row per student now, kept by the server's event stream (no
// reloads), flags at the top as they are raised, and "End visit" on each row.
'use strict';

(() => {
  const main = document.getElementById('live');
  const { timeElement, flagItem } = window.teacherPages;
  const ui = {
    rows: document.getElementById('rows'),
    empty: document.getElementById('empty'),
    count: document.getElementById('count'),
    flags: document.getElementById('live-flags'),
    noFlags: document.getElementById('no-flags'),
    connection: document.getElementById('connection'),
  };
  const clock = (iso) => new Date(iso).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });

  function cell(row, content, className) {
    const td = document.createElement('td');
    if (className) td.className = className;
    td.append(content);
    row.append(td);
    return td;
  }

  function studentRow(s) {
    const tr = document.createElement('tr');
    tr.dataset.session = s.session_id;
    tr.dataset.status = s.status;
    if (s.urgent) tr.classList.add('flag-urgent');
    cell(tr, s.student, 'student');
    cell(tr, timeElement(s.joined_at, clock), 'joined');
    cell(tr, s.status === 'talking' ? s.tutor : '—', 'tutor');
    const status = document.createElement('span');
    status.className = `presence ${s.status}`;
    status.textContent = s.status_text;
    cell(tr, status, 'status');
    cell(tr, s.subjects.join(', ') || '—', 'subjects');
    cell(tr, String(s.turns), 'turns');
    const flags = document.createElement('span');
    flags.className = s.urgent ? 'tier urgent' : s.flags ? 'tier concern' : '';
    flags.textContent = String(s.flags);
    cell(tr, flags, 'flags');
    const end = document.createElement('button');
    end.type = 'button';
    end.className = 'secondary';
    end.textContent = 'End visit';
    end.addEventListener('click', () => endVisit(s, end));
    const actions = cell(tr, end, 'actions');
    const open = document.createElement('a');
    open.href = `/teacher/sessions/${encodeURIComponent(s.session_id)}`;
    open.textContent = 'Transcript';
    actions.append(' ', open);
    return tr;
  }

  async function endVisit(s, button) {
    if (!window.confirm(`End ${s.student}'s visit now? Their tutor will say goodbye and leave.`)) return;
    button.disabled = true;
    button.textContent = 'Ending…';
    const answer = await fetch(`/teacher/visits/${encodeURIComponent(s.session_id)}/end`, {
      method: 'POST',
      headers: { 'X-CSRF-Token': main.dataset.csrf },
    }).catch(() => null);
    if (!answer || (answer.status !== 204 && answer.status !== 404)) {
      button.disabled = false;
      button.textContent = 'End visit';
      window.alert('The visit could not be ended. Please try again.');
    }
  }

  function refreshCounts() {
    const n = ui.rows.children.length;
    ui.count.textContent = String(n);
    ui.empty.hidden = n > 0;
    ui.noFlags.hidden = ui.flags.children.length > 0;
  }

  function putStudent(s) {
    const row = studentRow(s);
    const existing = ui.rows.querySelector(`tr[data-session="${CSS.escape(s.session_id)}"]`);
    if (existing) existing.replaceWith(row);
    else ui.rows.append(row);
    refreshCounts();
  }

  function addFlag(flag) {
    const item = flagItem(flag);
    if (flag.tier === 'urgent') item.classList.add('loud');
    ui.flags.prepend(item);
    refreshCounts();
  }

  function connect() {
    const stream = new EventSource(`/teacher/classes/${encodeURIComponent(main.dataset.code)}/live/events`);
    stream.addEventListener('state', (event) => {
      const state = JSON.parse(event.data);
      ui.rows.replaceChildren(...state.students.map(studentRow));
      ui.flags.replaceChildren(...state.flags.map(flagItem));
      for (const item of ui.flags.querySelectorAll('.flag-urgent')) item.classList.add('loud');
      refreshCounts();
      ui.connection.dataset.state = 'live';
      ui.connection.textContent = 'Live: this page updates by itself.';
    });
    stream.addEventListener('student', (event) => putStudent(JSON.parse(event.data)));
    stream.addEventListener('left', (event) => {
      const { session_id: id } = JSON.parse(event.data);
      ui.rows.querySelector(`tr[data-session="${CSS.escape(id)}"]`)?.remove();
      refreshCounts();
    });
    stream.addEventListener('flag', (event) => addFlag(JSON.parse(event.data)));
    stream.addEventListener('gone', () => {
      stream.close();
      ui.connection.dataset.state = 'gone';
      ui.connection.textContent = 'You have no class with that code.';
    });
    stream.onerror = () => {
      // EventSource reconnects by itself; the server sends the whole class again
      ui.connection.dataset.state = 'reconnecting';
      ui.connection.textContent = 'Reconnecting…';
    };
  }

  connect();
})();

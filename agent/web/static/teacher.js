// The teachers' pages: every <time datetime> in the browser's own time zone, and on the
// home page, each new flag of the teacher's classes the moment it is raised.
'use strict';

(() => {
  const LOCAL = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

  function localTime(iso) {
    const when = new Date(iso);
    return Number.isNaN(when.getTime()) ? iso : LOCAL.format(when);
  }

  function showLocalTimes(root) {
    for (const el of root.querySelectorAll('time[datetime]')) {
      el.textContent = localTime(el.dateTime);
      el.title = el.dateTime.replace('T', ' ').replace('Z', ' UTC');
    }
  }

  function timeElement(iso, format) {
    const el = document.createElement('time');
    el.dateTime = iso;
    el.textContent = format ? format(iso) : localTime(iso);
    el.title = iso.replace('T', ' ').replace('Z', ' UTC');
    return el;
  }

  // one flag as a list item: level, when, who, where, about; the words only on its session page
  function flagItem(flag) {
    const li = document.createElement('li');
    li.className = `flag-${flag.tier}`;
    li.dataset.session = flag.session_id;
    const tier = document.createElement('span');
    tier.className = `tier ${flag.tier}`;
    tier.textContent = flag.tier;
    const link = document.createElement('a');
    link.href = `/teacher/sessions/${encodeURIComponent(flag.session_id)}`;
    link.textContent = 'Open';
    li.append(
      tier, ' ', timeElement(flag.at), ` · ${flag.student} · class ${flag.class_code} · `,
      `${flag.speaker === 'student' ? 'said by the student' : `said by ${flag.speaker}`} · `,
      `${flag.categories.join(', ') || 'flagged'} · `, link,
    );
    return li;
  }

  function followNewFlags(list) {
    const stream = new EventSource(list.dataset.stream);
    stream.addEventListener('flag', (event) => {
      list.prepend(flagItem(JSON.parse(event.data)));
    });
  }

  window.teacherPages = { localTime, timeElement, flagItem };
  showLocalTimes(document);
  const newFlags = document.querySelector('#new-flags[data-stream]');
  if (newFlags) followNewFlags(newFlags);
})();

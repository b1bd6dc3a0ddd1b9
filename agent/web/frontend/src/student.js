// The student page: join with a class code and a first name, talk with the tutors.
// Uses the official livekit-client: publishes the microphone, plays the tutors, shows the
// speaking tutor's title (the workers' `tutor.title` attribute) and the live captions
// (LiveKit's `lk.transcription` text streams).
import {
  ConnectionState,
  ParticipantKind,
  Room,
  RoomEvent,
  Track,
  createLocalAudioTrack,
} from 'livekit-client';

const CONNECT_TIMEOUT_MS = 15000;
const MAX_CAPTIONS = 8;
const TRANSCRIPTION_TOPIC = 'lk.transcription';
const STATE_WORDS = {
  listening: 'is listening',
  thinking: 'is thinking',
  speaking: 'is speaking',
  initializing: 'is getting ready',
};

const $ = (id) => document.getElementById(id);
const ui = {
  join: $('join'),
  form: $('join-form'),
  code: $('code'),
  name: $('name'),
  start: $('start'),
  call: $('call'),
  tutorTitle: $('tutor-title'),
  tutorState: $('tutor-state'),
  captions: $('captions'),
  leave: $('leave'),
  message: $('message'),
  audio: $('audio'),
};

let room = null;
let microphone = null;
let tutorTimer = null;
let attempt = 0; // bumped by every finish: a Start that was left behind says nothing
const captionItems = new Map(); // segment id -> <li>

function say(text) {
  ui.message.textContent = text;
  ui.message.hidden = !text;
}

function show(stage) {
  document.body.dataset.stage = stage;
  ui.join.hidden = stage !== 'join';
  ui.call.hidden = stage === 'join';
}

function tutorOf(participant) {
  return participant.attributes?.['tutor.title'] || participant.name || 'Your tutor';
}

function tutors() {
  return room ? [...room.remoteParticipants.values()].filter((p) => p.kind === ParticipantKind.AGENT) : [];
}

function renderTutor() {
  const present = tutors();
  if (present.length === 0) {
    ui.tutorTitle.textContent = 'Waiting for your tutor…';
    ui.tutorState.textContent = '';
    return;
  }
  // the tutor speaking now, else the newest to join (the one about to speak)
  const speaking = present.find((p) => p.isSpeaking) || present[present.length - 1];
  ui.tutorTitle.textContent = tutorOf(speaking);
  ui.tutorState.textContent = STATE_WORDS[speaking.attributes?.['lk.agent.state']] || '';
  if (tutorTimer) {
    clearTimeout(tutorTimer);
    tutorTimer = null;
    say('');
  }
}

function addCaption(segmentId, who, mine) {
  let item = captionItems.get(segmentId);
  if (!item) {
    item = document.createElement('li');
    item.className = mine ? 'mine' : 'tutor';
    const label = document.createElement('span');
    label.className = 'who';
    label.textContent = who;
    const text = document.createElement('span');
    text.className = 'text';
    item.append(label, text);
    ui.captions.append(item);
    captionItems.set(segmentId, item);
    while (ui.captions.children.length > MAX_CAPTIONS) {
      const oldest = ui.captions.firstElementChild;
      for (const [id, el] of captionItems) if (el === oldest) captionItems.delete(id);
      oldest.remove();
    }
  }
  return item.querySelector('.text');
}

async function onTranscription(reader, participantInfo) {
  const mine = participantInfo.identity === room?.localParticipant.identity;
  const speaker = room?.remoteParticipants.get(participantInfo.identity);
  const who = mine ? 'You' : speaker ? tutorOf(speaker) : 'Tutor';
  const segmentId = reader.info.attributes?.['lk.segment_id'] || reader.info.id;
  const text = addCaption(segmentId, who, mine);
  let sofar = '';
  for await (const chunk of reader) {
    sofar += chunk;
    text.textContent = sofar;
    ui.captions.scrollTop = ui.captions.scrollHeight;
  }
}

// No tutor yet after `seconds`: ask the service, which dispatches one again if it must;
// ask again with backoff until a tutor joins or the service gives up.
function waitForTutor(seconds, token) {
  let delay = seconds;
  const ask = async () => {
    tutorTimer = null;
    if (!room || tutors().length > 0) return;
    let answer = {};
    try {
      const response = await fetch('/api/tutor', {
        method: 'POST',
        headers: { Authorization: `Bearer ${token}` },
      });
      answer = await response.json().catch(() => ({}));
    } catch {
      answer = {};
    }
    if (!room || tutors().length > 0) return;
    if (answer.status === 'gave_up') {
      say(answer.message);
      return;
    }
    say(answer.message || 'Your tutor is on the way…');
    delay = Math.min(delay * 2, 60);
    tutorTimer = setTimeout(ask, delay * 1000);
  };
  tutorTimer = setTimeout(ask, delay * 1000);
}

function withTimeout(promise, ms) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error('timed out')), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function requestToken(code, name) {
  let response;
  try {
    response = await fetch('/api/token', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ code, name }),
    });
  } catch {
    throw new Error('We cannot reach this site right now. Please check the internet connection.');
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || 'Something went wrong. Please try again.');
  return body;
}

async function openMicrophone() {
  try {
    return await createLocalAudioTrack({ echoCancellation: true, noiseSuppression: true, autoGainControl: true });
  } catch (error) {
    if (error?.name === 'NotAllowedError' || error?.name === 'SecurityError') {
      throw new Error('We need your microphone so your tutor can hear you. Please allow the microphone, then press Start again.');
    }
    if (error?.name === 'NotFoundError') {
      throw new Error('We could not find a microphone. Please connect one, then press Start again.');
    }
    throw new Error('Your microphone could not be started. Please ask your teacher for help.');
  }
}

function wireRoom(current) {
  current
    .on(RoomEvent.TrackSubscribed, (track) => {
      if (track.kind === Track.Kind.Audio) ui.audio.append(track.attach());
    })
    .on(RoomEvent.TrackUnsubscribed, (track) => track.detach().forEach((el) => el.remove()))
    .on(RoomEvent.ParticipantConnected, renderTutor)
    .on(RoomEvent.ParticipantDisconnected, renderTutor)
    .on(RoomEvent.ParticipantAttributesChanged, renderTutor)
    .on(RoomEvent.ActiveSpeakersChanged, renderTutor)
    .on(RoomEvent.Disconnected, () => {
      // a failed connect is reported by start(); this is a call that was going
      if (room === current && document.body.dataset.stage === 'connected') {
        finish('The call has ended. Press Start to talk again.');
      }
    });
  current.registerTextStreamHandler(TRANSCRIPTION_TOPIC, (reader, info) => {
    onTranscription(reader, info).catch(() => {});
  });
}

async function start(event) {
  event.preventDefault();
  const mine = ++attempt;
  say('');
  ui.start.disabled = true;
  try {
    const joined = await requestToken(ui.code.value, ui.name.value);
    microphone = await openMicrophone();
    show('connecting');
    ui.tutorTitle.textContent = 'Connecting…';
    room = new Room({ adaptiveStream: true, dynacast: true });
    wireRoom(room);
    try {
      await withTimeout(room.connect(joined.url, joined.token), CONNECT_TIMEOUT_MS);
    } catch {
      throw new Error('We cannot reach the tutoring server right now. Please try again in a minute, or tell your teacher.');
    }
    await room.startAudio();
    await room.localParticipant.publishTrack(microphone);
    show('connected');
    renderTutor();
    if (tutors().length === 0) waitForTutor(joined.tutor_timeout_s, joined.token);
  } catch (error) {
    if (mine === attempt) await finish(error.message);
  } finally {
    ui.start.disabled = false;
  }
}

async function finish(message) {
  attempt++;
  const current = room;
  room = null;
  if (tutorTimer) clearTimeout(tutorTimer);
  tutorTimer = null;
  if (current && current.state !== ConnectionState.Disconnected) await current.disconnect();
  microphone?.stop();
  microphone = null;
  ui.audio.replaceChildren();
  ui.captions.replaceChildren();
  captionItems.clear();
  show('join');
  say(message || '');
}

ui.form.addEventListener('submit', start);
ui.leave.addEventListener('click', () => finish('Goodbye! Press Start to talk again.'));
show('join');

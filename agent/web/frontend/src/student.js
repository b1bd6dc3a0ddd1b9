// The student page: join with a class code and a first name, talk with the tutors.
// Uses the official livekit-client: publishes the microphone, plays the tutors, shows the
// speaking tutor's title (the workers' `tutor.title` attribute) and the live captions
// (LiveKit's `lk.transcription` text streams).
//
// A conversation survives the connection: LiveKit's own reconnection covers a blip; a
// connection it cannot restore, or a reload of the page, rejoins the same visit with the
// resume key this tab keeps (sessionStorage), and the tutor resumes the conversation. A
// tutor that stops answering the page's pings (its worker was lost) is reported, and the
// service sends another at once. A visit the teacher ends (`tutor.visit-ended`, sent by the
// server itself) is over: the page says so once the tutor has said goodbye.
import {
  ConnectionState,
  DisconnectReason,
  ParticipantKind,
  Room,
  RoomEvent,
  RpcError,
  Track,
  createLocalAudioTrack,
} from 'livekit-client';

const CONNECT_TIMEOUT_MS = 15000;
const VISIT_KEY = 'tutor.visit';
const PING_METHOD = 'tutor.ping';
const PING_EVERY_MS = 500;
// a tutor that has answered no ping for this long is lost (its worker died): a live one
// answers within milliseconds, so this is about a stalled worker's worst, not a network's
const LOST_AFTER_MS = 1500;
// a tutor that has not answered yet is still arriving (its job starting, our data channel
// to it opening): given longer, so a healthy tutor is never reported in its first seconds
const ARRIVING_MS = 6000;
// the callee not answering at all; any other RPC error means it is there to refuse
const UNANSWERED = new Set([RpcError.ErrorCode.CONNECTION_TIMEOUT, RpcError.ErrorCode.RESPONSE_TIMEOUT]);
// LiveKit keeps a lost server node's rooms on it until the node has been silent ~5 s, and a
// join sent there meanwhile hangs until the signal timeout: short tries (a 1.5 s signal
// timeout, 300 ms apart) get past that window soonest, and still catch a blip at once
const RECONNECT = {
  nextRetryDelayInMs: ({ retryCount }) => {
    if (retryCount >= 40) return null;
    return retryCount === 0 ? 0 : 300;
  },
};
// the signal timeout of a first join: a quick try, then one for a slow network (the SDK
// keeps the timeout that worked for its reconnections)
const FIRST_JOIN_TIMEOUTS_MS = [1500, 8000];
// a rejoin's tries, [delay, signal timeout] in ms: quick ones past a lost node's ~5 s, then
// patient ones for a slow network
const REJOIN_TRIES = [[0, 1500], [300, 1500], [300, 1500], [300, 1500], [1000, 8000], [2000, 8000], [4000, 8000]];
// why the call ended, when coming back is not what the student wants
const FINAL = new Set([
  DisconnectReason.CLIENT_INITIATED,
  DisconnectReason.DUPLICATE_IDENTITY,
  DisconnectReason.PARTICIPANT_REMOVED,
]);
const MAX_CAPTIONS = 8;
const TRANSCRIPTION_TOPIC = 'lk.transcription';
// sent by the server (no participant can send as it) when the teacher ends the visit
const VISIT_ENDED_TOPIC = 'tutor.visit-ended';
const ENDED_WORDS = {
  teacher: 'Your teacher ended this visit. Goodbye!',
  'class closed': 'Your teacher closed the class. Goodbye!',
};
// the tutor's goodbye line, then its leaving; the page hangs up after this whatever happens
const GOODBYE_MS = 12000;
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
  playAudio: $('play-audio'),
  message: $('message'),
  audio: $('audio'),
};

let room = null;
let microphone = null;
let tutorTimer = null;
let pingTimer = null;
let attempt = 0; // bumped by every finish: a Start that was left behind says nothing
const captionItems = new Map(); // segment id -> <li>
const lastAnswer = new Map(); // tutor identity -> when it last answered a ping (or joined)
const answered = new Set(); // tutors that have answered a ping on this connection
let departed = null; // { identity, at }: the last tutor left and none came after it
let endedWords = null; // what to say once the teacher has ended the visit
let goodbyeTimer = null;

// the visit this tab can come back to (gone with the tab; never shared with another)
function savedVisit() {
  try {
    return JSON.parse(sessionStorage.getItem(VISIT_KEY) || 'null');
  } catch {
    return null;
  }
}

function saveVisit(joined) {
  sessionStorage.setItem(VISIT_KEY, JSON.stringify({ resume: joined.resume }));
}

function forgetVisit() {
  sessionStorage.removeItem(VISIT_KEY);
}

// tells the service the visit is over (the page may be closing: keepalive lets the request
// finish), so that a copy of its resume key opens nothing
function endVisit() {
  const saved = savedVisit();
  forgetVisit();
  if (!saved?.resume) return;
  fetch('/api/leave', {
    method: 'POST',
    keepalive: true,
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ resume: saved.resume }),
  }).catch(() => {}); // the key expires anyway; nothing for the child to do
}

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

async function askForTutor(token, lost = []) {
  try {
    const response = await fetch('/api/tutor', {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ lost }),
    });
    return await response.json().catch(() => ({}));
  } catch {
    return {};
  }
}

// No tutor yet after `seconds`: ask the service, which dispatches one again if it must;
// ask again with backoff until a tutor joins or the service gives up.
function waitForTutor(seconds, token) {
  if (tutorTimer) clearTimeout(tutorTimer);
  let delay = seconds;
  const ask = async () => {
    tutorTimer = null;
    if (!room || tutors().length > 0) return;
    const answer = await askForTutor(token);
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

// Every tutor in the room is asked "are you there?" twice a second. One that has answered
// nothing for LOST_AFTER_MS while no other tutor answers is reported lost, and so is the
// last tutor leaving with none after it (a tutor never leaves a student alone: its job
// died): the service clears it and sends the orchestrator, which resumes the conversation.
function keepPinging(current, joined) {
  const round = async () => {
    pingTimer = null;
    if (room !== current || endedWords) return; // the tutor leaving now is its goodbye
    const now = Date.now();
    if (current.state !== ConnectionState.Connected) {
      lastAnswer.clear(); // our own connection is the one in question
      answered.clear();
    } else {
      const present = tutors();
      for (const tutor of present) if (!lastAnswer.has(tutor.identity)) lastAnswer.set(tutor.identity, now);
      for (const identity of [...lastAnswer.keys()]) {
        if (!present.some((p) => p.identity === identity)) lastAnswer.delete(identity);
      }
      present.forEach((tutor) => ping(current, tutor.identity));
      const silentFor = (identity) => now - lastAnswer.get(identity);
      const patience = (identity) => (answered.has(identity) ? LOST_AFTER_MS : ARRIVING_MS);
      let lost = present.filter((p) => silentFor(p.identity) > patience(p.identity)).map((p) => p.identity);
      if (present.length > 0) departed = null;
      else if (departed && now - departed.at > PING_EVERY_MS) lost = [departed.identity];
      if (lost.length > 0 && lost.length >= present.length) {
        lost.forEach((identity) => lastAnswer.delete(identity));
        departed = null;
        say('Your tutor is coming back…');
        const answer = await askForTutor(joined.token, lost);
        if (room !== current) return;
        if (answer.status === 'unknown') {
          // the service cannot reach the room's server either: the node holding the room
          // is gone while our signalling (relayed through a live node) has not noticed
          rejoin();
          return;
        }
        if (answer.status === 'gave_up') say(answer.message);
        else waitForTutor(joined.tutor_timeout_s, joined.token);
      }
    }
    pingTimer = setTimeout(round, PING_EVERY_MS);
  };
  pingTimer = setTimeout(round, PING_EVERY_MS);
}

function ping(current, identity) {
  current.localParticipant
    .performRpc({ destinationIdentity: identity, method: PING_METHOD, payload: '', responseTimeout: LOST_AFTER_MS })
    .then(
      () => {
        lastAnswer.set(identity, Date.now());
        answered.add(identity);
      },
      (error) => {
        if (UNANSWERED.has(error?.code)) return;
        lastAnswer.set(identity, Date.now());
        answered.add(identity);
      },
    );
}

function withTimeout(promise, ms) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error('timed out')), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

class JoinRefused extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

async function requestToken(request) {
  let response;
  try {
    response = await fetch('/api/token', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(request),
    });
  } catch {
    throw new Error('We cannot reach this site right now. Please check the internet connection.');
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new JoinRefused(body.error || 'Something went wrong. Please try again.', response.status);
  }
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
    .on(RoomEvent.ParticipantDisconnected, (participant) => {
      if (endedWords) {
        if (tutors().length === 0) finish(endedWords); // the goodbye is said
        return;
      }
      if (participant.kind === ParticipantKind.AGENT && tutors().length === 0) {
        departed = { identity: participant.identity, at: Date.now() };
      }
      renderTutor();
    })
    .on(RoomEvent.ParticipantAttributesChanged, renderTutor)
    .on(RoomEvent.ActiveSpeakersChanged, renderTutor)
    .on(RoomEvent.AudioPlaybackStatusChanged, () => {
      ui.playAudio.hidden = current.canPlaybackAudio;
    })
    .on(RoomEvent.Reconnecting, () => say('Reconnecting…'))
    .on(RoomEvent.Reconnected, () => say(''))
    .on(RoomEvent.Disconnected, (reason) => {
      // a failed connect is reported by connect(); this is a call that was going
      if (room !== current || document.body.dataset.stage !== 'connected') return;
      if (endedWords) {
        finish(endedWords);
      } else if (FINAL.has(reason) || !savedVisit()) {
        finish('The call has ended. Press Start to talk again.');
      } else {
        rejoin(); // the connection could not be restored, or the room was closed under us
      }
    });
  current.on(RoomEvent.DataReceived, (payload, participant, _kind, topic) => {
    if (topic !== VISIT_ENDED_TOPIC || participant || room !== current) return;
    visitEnded(payload);
  });
  current.registerTextStreamHandler(TRANSCRIPTION_TOPIC, (reader, info) => {
    onTranscription(reader, info).catch(() => {});
  });
}

// Join the room `joined` names with the open microphone, and keep the call going.
async function connect(joined, signalTimeouts = FIRST_JOIN_TIMEOUTS_MS) {
  saveVisit(joined);
  show('connecting');
  ui.tutorTitle.textContent = 'Connecting…';
  const current = new Room({ adaptiveStream: true, dynacast: true, reconnectPolicy: RECONNECT });
  room = current;
  wireRoom(current);
  let connected = false;
  for (const websocketTimeout of signalTimeouts) {
    try {
      await withTimeout(current.connect(joined.url, joined.token, { websocketTimeout }), CONNECT_TIMEOUT_MS);
      connected = true;
      break;
    } catch {
      if (room !== current) break; // the student left meanwhile
    }
  }
  if (!connected) {
    throw new Error('We cannot reach the tutoring server right now. Please try again in a minute, or tell your teacher.');
  }
  // without a tap on this page yet (it was reloaded) the browser may refuse to play: the
  // button asks for one
  await current.startAudio().catch(() => {});
  ui.playAudio.hidden = current.canPlaybackAudio;
  await current.localParticipant.publishTrack(microphone);
  show('connected');
  renderTutor();
  keepPinging(current, joined);
  if (tutors().length === 0) waitForTutor(joined.tutor_timeout_s, joined.token);
}

async function start(event) {
  event.preventDefault();
  const mine = ++attempt;
  say('');
  ui.start.disabled = true;
  try {
    const joined = await requestToken({ code: ui.code.value, name: ui.name.value });
    microphone = await openMicrophone();
    await connect(joined);
  } catch (error) {
    if (mine === attempt) await finish(error.message);
  } finally {
    ui.start.disabled = false;
  }
}

// Back to the visit this tab had (after a reload, or a connection that could not be
// restored), a few times with backoff; a visit that has ended goes back to the form.
async function rejoin() {
  const mine = ++attempt;
  const previous = room;
  room = null;
  stopTimers();
  if (previous && previous.state !== ConnectionState.Disconnected) await previous.disconnect();
  ui.audio.replaceChildren();
  show('connecting');
  say('Reconnecting…');
  for (const [delay, signalTimeout] of REJOIN_TRIES) {
    if (delay) await new Promise((resolve) => setTimeout(resolve, delay));
    if (mine !== attempt) return; // the student left meanwhile
    const saved = savedVisit();
    if (!saved) break;
    try {
      const joined = await requestToken({ resume: saved.resume });
      if (!microphone) microphone = await openMicrophone();
      await connect(joined, [signalTimeout]);
      say('');
      return;
    } catch (error) {
      if (mine !== attempt) return;
      if (error instanceof JoinRefused && error.status !== 429 && error.status < 500) {
        forgetVisit();
        await finish(error.message);
        return;
      }
      const failed = room;
      room = null;
      stopTimers();
      if (failed) await failed.disconnect().catch(() => {});
    }
  }
  if (mine === attempt) await finish('We could not reconnect you. Press Start to talk again.');
}

// The teacher ended this visit: nothing resumes it; the tutor says goodbye and leaves,
// then the page hangs up (at the latest after GOODBYE_MS).
function visitEnded(payload) {
  let by = 'teacher';
  try {
    by = JSON.parse(new TextDecoder().decode(payload)).by ?? by;
  } catch {
    // the words for a teacher's end do
  }
  forgetVisit();
  endedWords = ENDED_WORDS[by] ?? ENDED_WORDS.teacher;
  stopTimers(); // no more pings, no "tutor is late": the tutor leaving now is its goodbye
  say(endedWords);
  if (tutors().length === 0) {
    finish(endedWords);
  } else {
    goodbyeTimer = setTimeout(() => finish(endedWords), GOODBYE_MS);
  }
}

function stopTimers() {
  if (goodbyeTimer) clearTimeout(goodbyeTimer);
  goodbyeTimer = null;
  if (tutorTimer) clearTimeout(tutorTimer);
  if (pingTimer) clearTimeout(pingTimer);
  tutorTimer = null;
  pingTimer = null;
  lastAnswer.clear();
  answered.clear();
  departed = null;
}

async function finish(message) {
  attempt++;
  const current = room;
  room = null;
  stopTimers();
  if (current && current.state !== ConnectionState.Disconnected) await current.disconnect();
  microphone?.stop();
  microphone = null;
  ui.audio.replaceChildren();
  ui.captions.replaceChildren();
  ui.playAudio.hidden = true;
  captionItems.clear();
  endedWords = null;
  show('join');
  say(message || '');
}

ui.form.addEventListener('submit', start);
ui.leave.addEventListener('click', () => {
  endVisit(); // Leave means done: no key opens this visit again, a reload starts a new one
  finish('Goodbye! Press Start to talk again.');
});
ui.playAudio.addEventListener('click', () => {
  room?.startAudio().then(() => {
    ui.playAudio.hidden = true;
  });
});
show('join');
if (savedVisit()) rejoin(); // reloaded mid-visit: back to it

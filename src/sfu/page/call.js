// The call page: Mattermost's own browser peer (RTCPeer of @mattermost/calls-common, the code the
// Calls webapp runs) over our shared websocket client, against the bundled SFU or the Mattermost
// stand-in. A client nobody here wrote holds the server to the plugin's protocol. Bundled by
// esbuild into dist/page/call.js. State for tests and scripts: window.callState (with `times`: when
// the join was sent and answered, the first offer sent, the first signal received, media connected;
// and `events`: the last signalling steps and connection states, what a test prints when a join hangs),
// and window.callPeer() (calls-common's RTCPeer, whose `pc` a test asks for its stats).
import { RTCPeer } from '@mattermost/calls-common';
import { CallsSocket } from '../client/socket.ts';
import { parseTrackId } from '../protocol/wire.ts';

const callId = location.pathname.split('/').pop();
// The join token comes in the fragment (never sent to a server); kept for this tab, so that a
// reload joins again, and taken out of the address bar and the history.
const token =
  new URLSearchParams(location.hash.slice(1)).get('token') ?? sessionStorage.getItem(`token:${callId}`) ?? '';
if (location.hash) {
  sessionStorage.setItem(`token:${callId}`, token);
  history.replaceState(null, '', location.pathname);
}
const $ = (id) => document.getElementById(id);
const state = (window.callState = {
  joined: false,
  connected: false,
  error: '',
  captions: [],
  received: {},
  published: [],
  sessionId: '',
  times: {},
  events: [],
});
/** A signalling step or state change, with the ms since the page started; the last 100 are kept. */
function event(what) {
  state.events.push(`${Math.round(performance.now())} ${what}`);
  if (state.events.length > 100) state.events.shift();
}
const logger = {
  logDebug: () => {},
  logErr: (...a) => console.error(...a),
  logWarn: (...a) => console.warn(...a),
  logInfo: () => {},
};

const socket = new CallsSocket({
  url: `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/v4/websocket`,
  token,
  channelId: callId,
  challenge: true, // a page cannot set headers on a websocket
  createSocket: (url) => new WebSocket(url),
});
window.callSocket = socket;
window.callPeer = () => peer;

const local = { mic: null, camera: null, screen: null };
let peer;

function tile(sessionId, label) {
  let el = document.querySelector(`.tile[data-session="${sessionId}"]`);
  if (!el) {
    el = document.createElement('div');
    el.className = 'tile';
    el.dataset.session = sessionId;
    el.innerHTML = '<video autoplay playsinline muted></video><span class="name"></span><div class="caption"></div>';
    $('tiles').append(el);
  }
  if (label) el.querySelector('.name').textContent = label;
  return el;
}

function fail(message) {
  event(message);
  state.error = message;
  $('status').textContent = message;
}

socket.on('error', (d) => fail(`refused: ${d.data}`));
socket.on('closed', (d) => {
  state.joined = false;
  fail(`disconnected: ${d.reason || 'connection closed'}`);
});
socket.on('call_state', (d) => {
  for (const s of JSON.parse(d.call).sessions) tile(s.session_id, s.user_id);
});
socket.on('user_joined', (d) => tile(d.session_id, d.user_id));
socket.on('user_left', (d) => {
  document.querySelector(`.tile[data-session="${d.session_id}"]`)?.remove();
  document.querySelector(`.screen[data-session="${d.session_id}"]`)?.remove();
});
socket.on('user_voice_on', (d) => tile(d.session_id).classList.add('speaking'));
socket.on('user_voice_off', (d) => tile(d.session_id).classList.remove('speaking'));
socket.on('user_screen_off', (d) => document.querySelector(`.screen[data-session="${d.session_id}"]`)?.remove());
socket.on('caption', (c) => {
  state.captions.push(c);
  const el = tile(c.session_id).querySelector('.caption');
  el.textContent = c.text;
  clearTimeout(el.timer);
  el.timer = setTimeout(() => (el.textContent = ''), 5000);
});
socket.on('signal', (d) => {
  state.times.signal ??= Date.now();
  let type = 'signal';
  try {
    type = JSON.parse(d.data).type;
  } catch {} // RTCPeer refuses it below
  if (type !== 'candidate') event(`got ${type}`);
  peer?.signal(d.data).catch((err) => {
    event(`${type} failed: ${err}`);
    logger.logErr('signal failed', err);
  });
});
socket.on('join', (d) => {
  state.times.joined = Date.now();
  event('joined');
  state.joined = true;
  state.sessionId = d.connID;
  $('status').textContent = 'in call';
  startPeer();
});

function startPeer() {
  peer = new RTCPeer({ iceServers: [], logger, simulcast: false, connTimeoutMs: 15_000 });
  peer.on('offer', (description) => {
    state.times.offer ??= Date.now();
    event('sent offer');
    socket.sendSdp(description);
  });
  peer.on('answer', (description) => {
    event('sent answer');
    socket.sendSdp(description);
  });
  peer.on('candidate', (candidate) => socket.action('ice', { data: JSON.stringify(candidate) }));
  peer.on('error', (err) => fail(`media: ${err}`));
  peer.on('close', () => fail('media connection closed'));
  peer.pc.addEventListener('signalingstatechange', () => event(`signaling ${peer.pc.signalingState}`));
  peer.pc.addEventListener('connectionstatechange', () => event(`connection ${peer.pc.connectionState}`));
  peer.pc.addEventListener('iceconnectionstatechange', () => event(`ice ${peer.pc.iceConnectionState}`));
  peer.on('connect', () => {
    state.times.connected = Date.now();
    state.connected = true;
  });
  peer.on('stream', (stream) => {
    const [track] = stream.getTracks();
    const id = parseTrackId(track.id);
    if (!id) return;
    state.received[`${id.sessionId}:${id.type}`] = track.kind;
    if (id.type === 'voice' || id.type === 'screen-audio') {
      const audio = new Audio();
      audio.srcObject = stream;
      audio.play().catch(() => undefined);
    } else if (id.type === 'video') {
      tile(id.sessionId).querySelector('video').srcObject = stream;
    } else {
      let el = document.querySelector(`.screen[data-session="${id.sessionId}"]`);
      if (!el) {
        el = document.createElement('video');
        el.className = 'screen';
        el.dataset.session = id.sessionId;
        el.autoplay = true;
        el.muted = true;
        $('screens').append(el);
      }
      el.srcObject = stream;
    }
  });
  if (local.mic) {
    socket.action('unmute');
    peer.addStream(new MediaStream([local.mic]));
    state.published.push('mic');
  }
  if (local.camera) addCamera(local.camera);
  for (const id of ['mic', 'camera', 'screen', 'leave']) $(id).disabled = false;
}

function addCamera(track) {
  const stream = new MediaStream([track]);
  socket.action('video_on', { data: JSON.stringify({ videoStreamID: stream.id }) });
  peer.addStream(stream);
  tile(state.sessionId).querySelector('video').srcObject = stream;
  state.published.push('camera');
}

async function start() {
  try {
    const media = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 360 } });
    local.mic = media.getAudioTracks()[0] ?? null;
    local.camera = media.getVideoTracks()[0] ?? null;
  } catch (err) {
    $('status').textContent = `no microphone or camera: ${err.message}`;
  }
  try {
    await socket.connect();
  } catch (err) {
    return fail(`could not connect: ${err.message}`);
  }
  state.times.join = Date.now();
  socket.action('join', { channelID: callId });
}

$('mic').onclick = () => {
  if (!local.mic) return;
  local.mic.enabled = !local.mic.enabled;
  socket.action(local.mic.enabled ? 'unmute' : 'mute');
  $('mic').textContent = local.mic.enabled ? 'Mute' : 'Unmute';
};
$('camera').onclick = async () => {
  if (local.camera) {
    peer.removeTrack(local.camera.id);
    local.camera.stop();
    local.camera = null;
    socket.action('video_off');
    state.published = state.published.filter((s) => s !== 'camera');
  } else {
    local.camera = (
      await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360 } })
    ).getVideoTracks()[0];
    addCamera(local.camera);
  }
  $('camera').textContent = local.camera ? 'Camera off' : 'Camera on';
};
window.shareScreen = async (on = !local.screen) => {
  if (on) {
    const stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: 15 } });
    local.screen = stream.getVideoTracks()[0];
    local.screen.onended = () => window.shareScreen(false);
    socket.action('screen_on', { data: JSON.stringify({ screenStreamID: stream.id }) });
    peer.addStream(stream);
    state.published.push('screen');
  } else if (local.screen) {
    peer.removeTrack(local.screen.id);
    local.screen.stop();
    local.screen = null;
    socket.action('screen_off');
    state.published = state.published.filter((s) => s !== 'screen');
  }
  $('screen').textContent = local.screen ? 'Stop sharing' : 'Share screen';
};
$('screen').onclick = () => window.shareScreen();
$('leave').onclick = () => {
  socket.action('leave');
  socket.close();
  peer?.destroy();
};

start();

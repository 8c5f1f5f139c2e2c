// The call page: join with the token in the address, publish microphone and camera, show
// everyone else, share the screen, show live captions under the speaker. State for tests and
// scripts: window.call (the CallClient), window.callState.
import { CallClient } from '/static/client.js';

const callId = location.pathname.split('/').pop();
const token = new URLSearchParams(location.search).get('token') ?? '';
const $ = (id) => document.getElementById(id);
const state = (window.callState = { joined: false, error: '', captions: [], received: {} });

const client = new CallClient({
  url: `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`,
  callId,
  token,
  subscribe: 'all',
  createPeerConnection: () => new RTCPeerConnection({ iceServers: [] }),
  createSocket: (url) => new WebSocket(url),
});
window.call = client;

const local = { mic: null, camera: null, screen: null };
const published = () => Object.fromEntries(Object.entries(local).filter(([, t]) => t));

function tile(participant) {
  let el = document.querySelector(`.tile[data-session="${participant.sessionId}"]`);
  if (!el) {
    el = document.createElement('div');
    el.className = 'tile';
    el.dataset.session = participant.sessionId;
    el.innerHTML = '<video autoplay playsinline muted></video><span class="name"></span><div class="caption"></div>';
    $('tiles').append(el);
  }
  el.querySelector('.name').textContent = participant.displayName;
  el.querySelector('.name').classList.toggle('muted', Boolean(participant.tracks.mic?.muted));
  el.classList.toggle('speaking', participant.speaking);
  return el;
}

function render(participant) {
  if (participant.role === 'bot') return; // bots (recorder, captioner) have no tile
  tile(participant);
}

client.on('welcome', (me) => {
  state.joined = true;
  state.me = me;
  $('status').textContent = `in call as ${me.displayName}`;
  tile(me).querySelector('video').srcObject = new MediaStream([local.camera].filter(Boolean));
  for (const p of client.participants.values()) render(p);
});
client.on('joined', render);
client.on('update', render);
client.on('voice', render);
client.on('left', (p) => {
  document.querySelector(`.tile[data-session="${p.sessionId}"]`)?.remove();
  document.querySelector(`.screen[data-session="${p.sessionId}"]`)?.remove();
});
client.on('track', ({ track, source, participant }) => {
  state.received[`${participant.sessionId}:${source}`] = track.kind;
  const stream = new MediaStream([track]);
  if (source === 'mic') {
    const audio = new Audio();
    audio.srcObject = stream;
    audio.play().catch(() => undefined);
  } else if (source === 'camera') {
    tile(participant).querySelector('video').srcObject = stream;
  } else {
    let el = document.querySelector(`.screen[data-session="${participant.sessionId}"]`);
    if (!el) {
      el = document.createElement('video');
      el.className = 'screen';
      el.dataset.session = participant.sessionId;
      el.autoplay = true;
      el.muted = true;
      $('screens').append(el);
    }
    el.srcObject = stream;
    track.onended = () => el.remove();
  }
});
client.on('caption', (c) => {
  state.captions.push(c);
  const el = document.querySelector(`.tile[data-session="${c.sessionId}"] .caption`);
  if (el) {
    el.textContent = c.text;
    clearTimeout(el.timer);
    el.timer = setTimeout(() => (el.textContent = ''), 5000);
  }
});
client.on('closed', ({ reason }) => {
  state.joined = false;
  state.error = reason;
  $('status').textContent = `disconnected: ${reason || 'connection closed'}`;
});

async function start() {
  try {
    const media = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 360 } });
    local.mic = media.getAudioTracks()[0] ?? null;
    local.camera = media.getVideoTracks()[0] ?? null;
  } catch (err) {
    $('status').textContent = `no microphone or camera: ${err.message}`;
  }
  try {
    await client.join();
  } catch (err) {
    state.error = err.message;
    $('status').textContent = `could not join: ${err.message}`;
    return;
  }
  await client.publish(published());
  state.published = Object.keys(published());
  for (const id of ['mic', 'camera', 'screen', 'leave']) $(id).disabled = false;
}

$('mic').onclick = () => {
  if (!local.mic) return;
  local.mic.enabled = !local.mic.enabled;
  client.setMuted('mic', !local.mic.enabled);
  $('mic').textContent = local.mic.enabled ? 'Mute' : 'Unmute';
};
$('camera').onclick = async () => {
  if (local.camera) {
    local.camera.stop();
    local.camera = null;
  } else {
    local.camera = (await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360 } })).getVideoTracks()[0];
  }
  await client.publish(published());
  $('camera').textContent = local.camera ? 'Camera off' : 'Camera on';
};
window.shareScreen = async (on = !local.screen) => {
  if (on) {
    local.screen = (await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: 15 } })).getVideoTracks()[0];
    local.screen.onended = () => window.shareScreen(false);
  } else {
    local.screen?.stop();
    local.screen = null;
  }
  await client.publish(published());
  $('screen').textContent = local.screen ? 'Stop sharing' : 'Share screen';
  state.published = Object.keys(published());
};
$('screen').onclick = () => window.shareScreen();
$('leave').onclick = () => client.leave();

start();

// Compose: one ffmpeg run turns the captured tracks into the MP4 (H.264 + AAC, +faststart): the
// screen share when there is one, otherwise the participants' camera tiles (name cards when no
// camera), the active speaker outlined; all voices mixed; every track placed on the recording's
// clock by its start offset. It reads only what capture appended, so it also assembles the
// files of a recorder that died.
import { execFileSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { CallEvent, TrackEntry } from './capture.js';
import type { RecorderInputs } from './inputs.js';
import { readLines } from '../shared/job.js';

const FONT = '/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf';

export interface Recording {
  tracks: (TrackEntry & { stretch: number })[];
  events: CallEvent[];
  durationMs: number;
}

/** The captured tracks (with their end when known) and events of a recording directory. */
export function readRecording(dir: string, durationMs?: number): Recording {
  const byFile = new Map<string, TrackEntry>();
  for (const t of readLines<TrackEntry>(join(dir, 'tracks.jsonl'))) byFile.set(t.file, { ...byFile.get(t.file), ...t });
  // A track whose first frame never came (no keyframe, no packet) wrote nothing worth reading.
  const tracks = [...byFile.values()]
    .filter((t) => t.mediaMs !== undefined && existsSync(join(dir, t.file)) && statSync(join(dir, t.file)).size > 0)
    .map((t) => ({ ...t, stretch: t.rtpFrameMs ? stretchFor(join(dir, t.file), t.rtpFrameMs) : 1 }));
  const events = readLines<CallEvent>(join(dir, 'events.jsonl'));
  // Without the recorded duration (the recorder died), the media itself says how far it got.
  const lastMedia = () => Math.max(0, ...events.map((e) => e.t), ...tracks.map((t) => t.endMs ?? t.mediaMs! + mediaDurationMs(join(dir, t.file))));
  return { tracks, events, durationMs: durationMs ?? lastMedia() };
}

/** Packet times (s) and durations of a file's first stream, as written. */
function packets(file: string): { pts: number; duration: number }[] {
  try {
    const out = execFileSync('ffprobe', ['-v', 'error', '-select_streams', '0', '-show_entries', 'packet=pts_time,duration_time', '-of', 'csv=p=0', file], { maxBuffer: 256 * 1024 * 1024 });
    // Blank lines are skipped before parsing: Number('') is 0, and a phantom packet at 0 s shrinks
    // the mean frame interval by one frame (1.7 ms/s of A/V drift in a 40 s recording).
    return out.toString().split('\n').filter((l) => l.trim() !== '').map((l) => l.split(',').map(Number))
      .filter(([pts]) => Number.isFinite(pts))
      .map(([pts, duration]) => ({ pts: pts!, duration: Number.isFinite(duration) ? duration! : 0 }));
  } catch {
    return [];
  }
}

/** The last packet's end: a file cut short by a crash has no trustworthy duration header. */
function mediaDurationMs(file: string): number {
  return Math.round(Math.max(0, ...packets(file).map((p) => p.pts + p.duration)) * 1000);
}

/** How much to stretch a video file's times so its mean frame interval matches the sender's clock. */
function stretchFor(file: string, rtpFrameMs: number): number {
  const all = packets(file);
  const lastPts = Math.max(0, ...all.map((p) => p.pts));
  const factor = all.length > 1 && lastPts > 0 ? rtpFrameMs / 1000 / (lastPts / (all.length - 1)) : 1;
  return factor > 0.9 && factor < 1.1 ? factor : 1; // anything further off is not rounding
}

const escapeText = (s: string) => s.replace(/\\/g, '\\\\').replace(/'/g, "\u2019").replace(/:/g, '\\:').replace(/%/g, '\\%');

/** Speaking intervals per session, in seconds, for drawbox's enable expression. */
function speakingIntervals(events: CallEvent[], durationMs: number): Map<string, [number, number][]> {
  const out = new Map<string, [number, number][]>();
  const since = new Map<string, number>();
  for (const e of events) {
    if (e.event === 'speaking') since.set(e.sessionId, e.t);
    if ((e.event === 'silent' || e.event === 'left') && since.has(e.sessionId)) {
      (out.get(e.sessionId) ?? out.set(e.sessionId, []).get(e.sessionId)!).push([since.get(e.sessionId)! / 1000, e.t / 1000]);
      since.delete(e.sessionId);
    }
  }
  for (const [s, t] of since) (out.get(s) ?? out.set(s, []).get(s)!).push([t / 1000, durationMs / 1000]);
  return out;
}

/** ffmpeg arguments that write `output` from the recording in `dir`. */
export function composeArgs(dir: string, rec: Recording, q: RecorderInputs, output: string): string[] {
  const { width: W, height: H, frame_rate: fps } = q;
  const seconds = (rec.durationMs / 1000).toFixed(3);
  const inputs: string[] = [];
  const filters: string[] = [];
  const input = (file: string) => {
    inputs.push('-i', join(dir, file));
    return inputs.length / 2 - 1;
  };

  filters.push(`color=c=0x1e1f22:s=${W}x${H}:r=${fps}:d=${seconds}[base]`);
  let video = 'base';
  const overlay = (label: string, x: number | string, y: number | string) => {
    const out = `v${filters.length}`;
    filters.push(`[${video}][${label}]overlay=x=${x}:y=${y}:eof_action=pass[${out}]`);
    video = out;
  };
  const placed = (entry: Recording['tracks'][number], w: number, h: number) => {
    const i = input(entry.file);
    const label = `t${i}`;
    filters.push(`[${i}:v]setpts=(PTS-STARTPTS)*${entry.stretch.toFixed(6)}+${(entry.mediaMs! / 1000).toFixed(3)}/TB,scale=${w}:${h}:force_original_aspect_ratio=decrease,pad=${w}:${h}:(ow-iw)/2:(oh-ih)/2:color=0x111214,fps=${fps}[${label}]`);
    return label;
  };

  const screens = rec.tracks.filter((t) => t.source === 'screen');
  const people = [...new Map(rec.events.filter((e) => e.event === 'joined').map((e) => [e.sessionId, e.displayName])).entries()];
  if (screens.length > 0) {
    for (const s of screens) overlay(placed(s, W, H), 0, 0);
  } else if (people.length > 0) {
    // A grid of tiles, one per person who was in the call, in order of arrival.
    const cols = Math.ceil(Math.sqrt(people.length));
    const rows = Math.ceil(people.length / cols);
    const tw = Math.floor(W / cols / 2) * 2;
    const th = Math.floor(H / rows / 2) * 2;
    const speaking = speakingIntervals(rec.events, rec.durationMs);
    people.forEach(([sessionId, name], k) => {
      const x = (k % cols) * tw;
      const y = Math.floor(k / cols) * th;
      for (const cam of rec.tracks.filter((t) => t.source === 'camera' && t.sessionId === sessionId)) {
        overlay(placed(cam, tw - 8, th - 8), x + 4, y + 4);
      }
      const label = `n${k}`;
      const fontsize = Math.max(16, Math.round(th / 12));
      const enable = (speaking.get(sessionId) ?? []).map(([a, b]) => `between(t,${a.toFixed(2)},${b.toFixed(2)})`).join('+') || '0';
      filters.push(
        `[${video}]drawtext=fontfile=${FONT}:text='${escapeText(name)}':fontcolor=white:fontsize=${fontsize}:x=${x + 16}:y=${y + th - fontsize - 16}:box=1:boxcolor=black@0.5:boxborderw=6,` +
        `drawbox=x=${x}:y=${y}:w=${tw}:h=${th}:color=0x3ba55d:t=6:enable='${enable}'[${label}]`,
      );
      video = label;
    });
  }

  const mics = rec.tracks.filter((t) => t.source === 'mic');
  let audio: string;
  if (mics.length > 0) {
    const labels = mics.map((m) => {
      const i = input(m.file);
      filters.push(`[${i}:a]aresample=48000,asetpts=PTS-STARTPTS,adelay=${m.mediaMs}:all=1[a${i}]`);
      return `[a${i}]`;
    });
    filters.push(`${labels.join('')}amix=inputs=${labels.length}:normalize=0:duration=longest,apad,atrim=0:${seconds}[mix]`);
    audio = 'mix';
  } else {
    filters.push(`anullsrc=r=48000:cl=stereo,atrim=0:${seconds}[mix]`);
    audio = 'mix';
  }

  return [
    '-hide_banner', '-loglevel', 'error', '-y',
    ...inputs,
    '-filter_complex', filters.join(';'),
    '-map', `[${video}]`, '-map', `[${audio}]`,
    '-c:v', 'libx264', '-preset', q.video_preset, '-pix_fmt', 'yuv420p', '-r', String(fps),
    '-b:v', `${q.video_rate}k`, '-maxrate', `${q.video_rate}k`, '-bufsize', `${q.video_rate * 2}k`,
    '-c:a', 'aac', '-b:a', `${q.audio_rate}k`, '-ar', '48000',
    '-t', seconds, '-movflags', '+faststart',
    output,
  ];
}

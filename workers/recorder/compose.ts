// Compose: ffmpeg turns the captured tracks into the recording, one part at a time (parts.ts; each
// goes into the MP4 as it is made, live-mp4.ts, and joinArgs joins the parts only after a crash or
// a failed muxer): the screen share when there is one, otherwise the participants' camera tiles (name cards when no camera), the active speaker
// outlined; all voices mixed; every track placed on the recording's clock by its start offset.
// It reads only what capture appended, so it also assembles the files of a recorder that died.
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { CallEvent, TrackEntry } from './capture.js';
import type { RecorderInputs } from './inputs.js';
import { readLines } from '../shared/job.js';
import { aacArgs } from './aac.js';
import { inputFrom, isSeek, WebmIndex } from './webm-index.js';

const FONT = '/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf';

/** `index`: what compose has read of the file (its frames, where a reader may start). */
type Track = TrackEntry & { frameMs?: number; lastFrameMs: number; untilMs: number; index: WebmIndex };

export interface Recording {
  /**
   * `frameMs`: the file's mean frame interval so far; `lastFrameMs`: where the file's last frame
   * is on the recording's clock; `untilMs`: where the track's media ends, its end when it ended,
   * else its last frame (a picture held 2 s past it).
   * A sender that stopped sending without ending its track (muted, frozen, gone) is not read in
   * the parts past its file's end: ffmpeg's amix with an input that has nothing in the part never
   * finishes, and ignores SIGTERM while it spins.
   */
  tracks: Track[];
  events: CallEvent[];
  durationMs: number;
}

/**
 * The captured tracks (with their end when known) and events of a recording directory, reading
 * only what capture appended since the last part. Without `durationMs` (a recorder that died) the
 * media says how far it got: each file's last frame, as its index read it.
 */
export function readRecording(dir: string, durationMs?: number): Recording {
  const byFile = new Map<string, TrackEntry>();
  for (const t of readLines<TrackEntry>(join(dir, 'tracks.jsonl'))) byFile.set(t.file, { ...byFile.get(t.file), ...t });
  // A track whose first frame never came (no keyframe, no packet) wrote nothing worth reading.
  const found = [...byFile.values()].filter(
    (t) => t.mediaMs !== undefined && existsSync(join(dir, t.file)) && statSync(join(dir, t.file)).size > 0,
  );
  const tracks = found.map((t) => {
    const index = indexFor(join(dir, t.file));
    const frameMs = index.frames > 1 && index.lastMs > 0 ? index.lastMs / (index.frames - 1) : undefined;
    const lastFrameMs = index.frames === 0 ? -Infinity : t.mediaMs! + index.lastMs;
    const held = lastFrameMs + (t.source === 'mic' ? OPUS_FRAME_MS : PICTURE_HOLD_MS);
    return { ...t, frameMs, lastFrameMs, untilMs: Math.min(t.endMs ?? Infinity, held), index };
  });
  const events = readLines<CallEvent>(join(dir, 'events.jsonl'));
  if (durationMs !== undefined) return { tracks, events, durationMs };
  const ends = tracks.map((t) => t.endMs ?? t.lastFrameMs + (t.source === 'mic' ? OPUS_FRAME_MS : 0));
  return { tracks, events, durationMs: Math.max(0, ...events.map((e) => e.t), ...ends) };
}

const OPUS_FRAME_MS = 20;
const PICTURE_HOLD_MS = 2000;
const SEEK_MARGIN_MS = 100;

/** Each file's frames counted so far: a part reads only what capture appended since the last. */
const indexes = new Map<string, WebmIndex>();
const indexFor = (file: string) => (indexes.get(file) ?? indexes.set(file, new WebmIndex(file)).get(file)!).update();

/**
 * A name as a quoted drawtext value, drawn as written (drawtext's `expansion=none`): with expansion
 * a `%` not followed by `{` made drawtext draw nothing in every frame ("Stray %"), a backslash was
 * lost, and `%{...}` was run as an expression.
 */
const escapeText = (s: string) => s.replace(/\\/g, '\\\\').replace(/'/g, '\u2019').replace(/:/g, '\\:');

/** Per session (in order of their first `open`), the intervals (ms) between an event of `open` and the next of `close`, the last open one ending at `endMs`. */
function intervals(
  events: CallEvent[],
  open: CallEvent['event'],
  close: CallEvent['event'][],
  endMs: number,
): Map<string, [number, number][]> {
  const out = new Map<string, [number, number][]>();
  const since = new Map<string, number>();
  const add = (session: string, a: number, b: number) =>
    (out.get(session) ?? out.set(session, []).get(session)!).push([a, b]);
  for (const e of events) {
    if (e.event === open && !since.has(e.sessionId)) {
      since.set(e.sessionId, e.t);
      if (!out.has(e.sessionId)) out.set(e.sessionId, []); // sessions in order of their first open
    }
    if (close.includes(e.event) && since.has(e.sessionId)) {
      add(e.sessionId, since.get(e.sessionId)!, e.t);
      since.delete(e.sessionId);
    }
  }
  for (const [session, t] of since) add(session, t, endMs);
  return out;
}

const BACKGROUND = '0x1e1f22';

/** Size changes of one track read again in a lane (a part's stretch) at most: each is one more input (a demuxer and a decoder). */
const MAX_SIZE_CHANGES = 3;

/** The output frame at `ms` on the recording's clock: parts and lanes all cut on this grid. */
export const frameAt = (ms: number, fps: number) => Math.round((ms / 1000) * fps);

/** A part of the recording, in ms on its clock: compose works one part at a time. */
export interface Window {
  fromMs: number;
  toMs: number;
}

/**
 * One picture lane: the video tracks of one place (the screen, or one person's camera) laid end to
 * end on the recording's clock, each cut where the next begins, the gaps filled with the
 * background: frames f0 (inclusive) to f1 of w x h, the picture fitted to it and kept `inset` from
 * its edges.
 * Lanes are only ever stacked side by side, never overlaid: ffmpeg's overlay converts every frame
 * to YUVA and blends it pixel by pixel, which cost more than decoding the cameras.
 */
function lane(
  tracks: Recording['tracks'],
  w: number,
  h: number,
  inset: number,
  [f0, f1]: [number, number],
  fps: number,
  input: (track: Track, seekS: number) => number,
  filters: string[],
  label: string,
): void {
  const segments: string[] = [];
  const gap = (n: number) => {
    if (n <= 0) return;
    segments.push(`[${label}s${segments.length}]`);
    filters.push(`color=c=${BACKGROUND}:s=${w}x${h}:r=${fps},trim=end_frame=${n}${segments.at(-1)}`);
  };
  const sorted = [...tracks].sort((a, b) => a.mediaMs! - b.mediaMs!);
  let at = f0; // frames laid so far
  sorted.forEach((t, k) => {
    const start = frameAt(t.mediaMs!, fps);
    const from = Math.max(at, start);
    const endMs = Math.min(t.untilMs, sorted[k + 1]?.mediaMs ?? Infinity);
    const to = Math.min(f1, Number.isFinite(endMs) ? frameAt(endMs, fps) : f1);
    // A file read from a point past its last frame gives ffmpeg nothing, and the lane falls short:
    // where a part or a stretch begins in a track's held last picture, it shows background.
    if (to <= from || (from > start && t.lastFrameMs <= (from * 1000) / fps + SEEK_MARGIN_MS)) return;
    gap(from - at);
    // The file's frames (on the sender's clock) fitted to the cell, resampled to the output rate
    // (before fitting when that drops frames, after when it repeats them: fewer frames to scale),
    // held on its last frame if it ran short, cut to its slot. The fit crops the picture's edges
    // to the margin: a camera sending the cell's size (or its height or width) is not scaled at
    // all, which a fit inside the margin did to every frame (7 % of a part's compose, 4 cameras).
    const margin = inset > 0 ? `crop=min(iw\\,${w - 2 * inset}):min(ih\\,${h - 2 * inset}),` : '';
    // zimg's bilinear, not swscale's: a 720p screen fitted to 1080p at 20 fps cost 1.42-1.68 CPU s
    // per 20 s with swscale and 0.61-0.90 with zimg, 0.6 dB further from a lanczos fit (README,
    // bench/recorder). zimg takes and makes only even sizes of 4:2:0 (a window shared at 1013x677
    // failed the part): the picture is first made even by swscale (a crop would leave nothing of a
    // picture 1 pixel wide), and the fit is rounded to even, never past the cell (its sides are
    // even). That first step keeps the size its input began with (below, `-reinit_filter 0`): it
    // passes a picture of that size through untouched, and scales one of another size to it, so
    // that the filters after it (crop, pad: their sizes are set once) never see a new size.
    const even = 'scale=ceil(iw/2)*2:ceil(ih/2)*2:flags=bilinear,';
    const wider = `gt(iw*${h}\\,ih*${w})`;
    const fitW = `if(${wider}\\,${w}\\,max(2\\,round(iw*${h}/ih/2)*2))`;
    const fitH = `if(${wider}\\,max(2\\,round(ih*${w}/iw/2)*2)\\,${h})`;
    const fit = `${even}zscale=w=${fitW}:h=${fitH}:filter=bilinear,${margin}pad=${w}:${h}:(ow-iw)/2:(oh-ih)/2:color=${BACKGROUND},setsar=1`;
    const resample = `fps=${fps}:start_time=0`;
    const repeats = t.frameMs !== undefined && 1000 / t.frameMs < fps;
    // A track that began before this part is read from there (ffmpeg seeks to the keyframe before
    // and decodes from it; capture asks for keyframes ahead of each part). Its times then count
    // from that point, and fps starts at 0 so each frame lands where it belongs. Where the picture
    // changes size in the part (a browser lowers or raises its camera's resolution, a shared
    // window is resized), the file is read again from the keyframe of the new size (capture opens
    // a cluster at each), so that each input has one size, fitted as it is: scaled to the size the
    // input began with, it lost its detail or its aspect until the next part. The reads begin at
    // their keyframes' frames, kept between from and to, so that together they fill the lane's
    // slot exactly; a change past the first read's seek and at its frame leaves it no frame.
    const firstSeekS = (from - start) / fps;
    const reads = [
      { frame: from, seekS: firstSeekS },
      ...t.index
        .sizeChanges(firstSeekS * 1000, (to / fps) * 1000 - t.mediaMs!)
        .slice(0, MAX_SIZE_CHANGES)
        .map((ms) => ({ frame: Math.min(to, Math.max(from, frameAt(t.mediaMs! + ms, fps))), seekS: ms / 1000 })),
    ];
    reads.forEach(({ frame, seekS }, k) => {
      const frames = (reads[k + 1]?.frame ?? to) - frame;
      if (frames <= 0) return;
      const i = input(t, seekS);
      segments.push(`[${label}s${segments.length}]`);
      filters.push(
        `[${i}:v]${isSeek(seekS * 1000) ? '' : 'setpts=PTS-STARTPTS,'}${repeats ? `${fit},${resample}` : `${resample},${fit}`},` +
          `tpad=stop_mode=clone:stop=${frames},trim=end_frame=${frames},setpts=PTS-STARTPTS${segments.at(-1)}`,
      );
    });
    at = to;
  });
  gap(f1 - at);
  filters.push(`${segments.join('')}concat=n=${segments.length}:v=1:a=0[${label}]`);
}

/** Layouts one part may have: past this, one change is kept in each (MAX_STRETCHES - 1)th of it. */
const MAX_STRETCHES = 16;

/** A stretch of a part with one layout: the screen share, or a grid of these people (session ids). */
interface Stretch {
  frames: [number, number];
  screen: boolean;
  people: string[];
}

/**
 * A part cut where its layout changes: where a screen's media or someone's presence begins or
 * ends. Each stretch is laid out on its own, so the picture switches at the frame of the change
 * whatever the parts' length; a part with one layout throughout showed, for a screen share that
 * began in it, background where the grid was until then. `present`: each person's spans.
 */
function layoutStretches(
  { fromMs, toMs }: Window,
  fps: number,
  screens: Track[],
  present: Map<string, [number, number][]>,
): Stretch[] {
  const changes = [...screens.flatMap((t) => [t.mediaMs!, t.untilMs]), ...[...present.values()].flat(2)];
  let cuts = [...new Set([fromMs, ...changes.filter((c) => c > fromMs && c < toMs).sort((a, b) => a - b), toMs])];
  // Each stretch reads its tracks again (inputs, decoders): people coming and going without pause
  // (a site's join and leave events, as many as it likes) are shown a stretch or more late.
  // The part is then split in equal slots, each keeping its last change: the layout that stands.
  if (cuts.length - 1 > MAX_STRETCHES) {
    const slot = (toMs - fromMs) / (MAX_STRETCHES - 1);
    const last = new Map<number, number>();
    for (const c of cuts.slice(1, -1)) last.set(Math.floor((c - fromMs) / slot), c);
    cuts = [fromMs, ...last.values(), toMs];
  }
  const stretches: Stretch[] = [];
  for (let k = 0; k + 1 < cuts.length; k++) {
    const [a, b] = [cuts[k]!, cuts[k + 1]!];
    const frames: [number, number] = [frameAt(a, fps), frameAt(b, fps)];
    if (frames[1] <= frames[0]) continue;
    const overlaps = (x: number, y: number) => x < b && y > a;
    // In order of arrival (present's order): a tile keeps its place while others come and go after it.
    const people = [...present.entries()]
      .filter(([, spans]) => spans.some(([x, y]) => overlaps(x, y)))
      .map(([sessionId]) => sessionId);
    const screen = people.length === 0 || screens.some((t) => overlaps(t.mediaMs!, t.untilMs));
    const last = stretches.at(-1);
    if (last && last.screen === screen && (screen || last.people.join() === people.join())) last.frames[1] = frames[1];
    else stretches.push({ frames, screen, people: screen ? [] : people });
  }
  return stretches;
}

/**
 * Where a part's compose also writes what the MP4 of the whole call takes from it (live-mp4.ts):
 * its picture as MPEG-TS, at `pictureAtS` on the MP4's clock, and its sound as PCM (s16le, 48 kHz,
 * stereo). Written by the compose itself: a copy and a decode of the part by two more ffmpegs
 * meant two more ffmpegs started per part, each a fork of the recorder, after which it faults
 * again on every page it writes (copy-on-write): 29 % of its page faults (README, bench/recorder).
 */
export interface PartStreams {
  picture: string;
  pictureAtS: number;
  sound: string;
}

/** A file name as the tee muxer reads it (its separators and option brackets escaped). */
const teeName = (file: string) => file.replace(/[\\|[\]']/g, '\\$&');

/**
 * ffmpeg arguments that write one part of the recording (as readRecording read it) to `output`
 * (Matroska: H.264 at the profile's size, rate, bitrate and preset; the voices mixed, losslessly as
 * FLAC so that parts join without seams), and to `streams` when given. In each stretch of one layout
 * (layoutStretches) the screen share when there is one, otherwise a grid of the people present
 * (their camera or the background, the name, the speaker outlined).
 * The filter graph is read from `graph.file`, which the caller writes: a call's people, layouts and
 * speakers make it longer than the 128 KiB Linux allows one argument (spawn fails with E2BIG).
 */
export function partArgs(
  rec: Recording,
  q: RecorderInputs,
  { fromMs, toMs }: Window,
  output: string,
  streams?: PartStreams,
): { args: string[]; graph: { file: string; text: string } } {
  const { width: W, height: H, frame_rate: fps } = q;
  const span: [number, number] = [frameAt(fromMs, fps), frameAt(toMs, fps)];
  const seconds = ((span[1] - span[0]) / fps).toFixed(6);
  const overlaps = (a: number, b: number) => a < toMs && b > fromMs;
  // Only files with media in this part are read: one with nothing after the seek stalls ffmpeg.
  const inPart = rec.tracks.filter((t) => overlaps(t.mediaMs!, t.untilMs) && t.lastFrameMs > fromMs + SEEK_MARGIN_MS);
  const inputs: string[] = [];
  const filters: string[] = [];
  let count = 0;
  // Each input decoded on one thread: a decoder's frame threads cost 3.5 % more CPU for the same
  // part (four cameras at medium, 2.87 → 2.77 CPU s per 10 s), and the part runs at low priority
  // beside capture anyway; x264's threads and the several inputs keep both cores busy.
  // A picture whose size changes mid-input (a browser lowers or raises its camera's resolution
  // with its bandwidth or CPU) is scaled to the size the input began with, then fitted: ffmpeg
  // otherwise rebuilds the whole graph at the change, each lane's times and frame counts start
  // again, and the frames after it were misplaced or the part stalled (test "fits every picture
  // size"). lane() reads a file again from each keyframe where its size changes, up to
  // MAX_SIZE_CHANGES a lane, so this is left for the changes past those.
  const input = (track: Track, seekS: number) => {
    const reinit = track.source === 'mic' ? [] : ['-reinit_filter', '0'];
    inputs.push('-threads', '1', ...reinit, ...inputFrom(track.index, seekS * 1000));
    return count++;
  };

  const screens = inPart.filter((t) => t.source === 'screen');
  const present = intervals(rec.events, 'joined', ['left'], rec.durationMs);
  const speaking = intervals(rec.events, 'speaking', ['silent', 'left'], rec.durationMs);
  const stretches = layoutStretches({ fromMs, toMs }, fps, screens, present);
  const video = 'video';
  stretches.forEach(({ frames, screen, people }, k) => {
    const out = stretches.length === 1 ? video : `v${k}`;
    if (screen) lane(screens, W, H, 0, frames, fps, input, filters, out);
    else grid(people, frames, out);
  });
  if (stretches.length > 1)
    filters.push(`${stretches.map((_, k) => `[v${k}]`).join('')}concat=n=${stretches.length}:v=1:a=0[${video}]`);

  /** A grid of tiles, one per person present, in order of arrival; empty cells stay background. */
  function grid(people: string[], frames: [number, number], out: string): void {
    const cols = Math.ceil(Math.sqrt(people.length));
    const rows = Math.ceil(people.length / cols);
    const tw = Math.floor(W / cols / 2) * 2;
    const th = Math.floor(H / rows / 2) * 2;
    const cells = Array.from({ length: cols * rows }, (_, k) => {
      const sessionId = people[k];
      const cameras =
        sessionId === undefined ? [] : inPart.filter((t) => t.source === 'camera' && t.sessionId === sessionId);
      lane(cameras, tw, th, 4, frames, fps, input, filters, `${out}c${k}`);
      return `[${out}c${k}]`;
    });
    const layout = cells.map((_, k) => `${(k % cols) * tw}_${Math.floor(k / cols) * th}`).join('|');
    filters.push(
      cells.length === 1
        ? `${cells[0]}null[${out}x]`
        : `${cells.join('')}xstack=inputs=${cells.length}:layout=${layout}[${out}x]`,
    );
    // Names, and the speaker's outline as four thin filled boxes: drawbox visits every pixel inside
    // its rectangle, so one hollow box around a whole tile costs as much as the grid's decoding.
    // Times are the stretch's: its frames count from its first.
    const [originMs, endMs] = frames.map((f) => (f * 1000) / fps) as [number, number];
    const marks = people.flatMap((sessionId, k) => {
      const name = rec.events.find((e) => e.sessionId === sessionId)!.displayName;
      const x = (k % cols) * tw;
      const y = Math.floor(k / cols) * th;
      const fontsize = Math.max(16, Math.round(th / 12));
      const enable =
        (speaking.get(sessionId) ?? [])
          .filter(([a, b]) => a < endMs && b > originMs)
          .map(([a, b]) => `between(t,${((a - originMs) / 1000).toFixed(2)},${((b - originMs) / 1000).toFixed(2)})`)
          .join('+') || '0';
      const edges = [
        [x, y, tw, 6],
        [x, y + th - 6, tw, 6],
        [x, y + 6, 6, th - 12],
        [x + tw - 6, y + 6, 6, th - 12],
      ];
      return [
        `drawtext=fontfile=${FONT}:expansion=none:text='${escapeText(name)}':fontcolor=white:fontsize=${fontsize}:x=${x + 16}:y=${y + th - fontsize - 16}:box=1:boxcolor=black@0.5:boxborderw=6`,
        ...edges.map(
          ([ex, ey, ew, eh]) => `drawbox=x=${ex}:y=${ey}:w=${ew}:h=${eh}:color=0x3ba55d:t=fill:enable='${enable}'`,
        ),
      ];
    });
    // The grid may be a few pixels short of the frame when the size does not divide evenly.
    const fill = tw * cols < W || th * rows < H ? `,pad=${W}:${H}:0:0:color=${BACKGROUND}` : '';
    filters.push(`[${out}x]${marks.join(',')}${fill}[${out}]`);
  }

  // Each voice from where it overlaps this part, delayed to where it starts in it. Where packets
  // never came (loss, a network gone for seconds, a muted sender's DTX) the file's timestamps jump:
  // aresample fills every gap of a packet or more with silence, or the voice would slide earlier
  // than the picture by all the gaps before it (5 s after a 5 s outage; seconds an hour at 5 % loss).
  const mics = inPart.filter((t) => t.source === 'mic');
  // A voice read from inside its file (-ss) has its times from the part's start already: made to
  // start at 0, a part that began in a gap (a mute) had the voice after it at its start, seconds early.
  const voices = mics.map((m) => {
    const seekS = Math.max(0, fromMs - m.mediaMs!) / 1000;
    const i = input(m, seekS);
    filters.push(
      `[${i}:a]${isSeek(seekS * 1000) ? '' : 'asetpts=PTS-STARTPTS,'}aresample=48000:async=1:min_hard_comp=0.02:first_pts=0,adelay=${Math.max(0, m.mediaMs! - fromMs)}:all=1[a${i}]`,
    );
    return `[a${i}]`;
  });
  filters.push(
    voices.length > 0
      ? `${voices.join('')}amix=inputs=${voices.length}:normalize=0:duration=longest,apad,atrim=0:${seconds}[mix]`
      : `anullsrc=r=48000:cl=stereo,atrim=0:${seconds}[mix]`,
  );
  if (streams) filters.push('[mix]asplit=2[flac][pcm]');
  const audioOut = ['-ar', '48000', '-ac', '2', '-t', seconds];

  const graph = { file: `${output}.graph`, text: filters.join(';') };
  const args = [
    '-hide_banner',
    '-loglevel',
    'error',
    '-y',
    ...inputs,
    // deprecated since ffmpeg 7.0 for `-/filter_complex <file>`, which Debian 12's 5.1 does not know
    '-filter_complex_script',
    graph.file,
    '-map',
    `[${video}]`,
    '-map',
    streams ? '[flac]' : '[mix]',
    // The tee muxer has no global header of its own: without one asked for, x264 leaves the
    // headers in the stream and Matroska refuses it.
    ...(streams ? ['-flags:v', '+global_header'] : []),
    '-c:v',
    'libx264',
    '-preset',
    q.video_preset,
    '-pix_fmt',
    'yuv420p',
    '-r',
    String(fps),
    // Average bitrate as upstream's recorder asks for it (no VBV cap, which costs x264 ~6 % more).
    '-b:v',
    `${q.video_rate}k`,
    '-c:a',
    'flac',
    ...audioOut,
    // onfail=abort: the tee muxer otherwise goes on with the outputs left, and exits 0.
    ...(streams
      ? [
          ...['-f', 'tee'],
          `[f=matroska:onfail=abort]${teeName(output)}|` +
            `[f=mpegts:select=v:onfail=abort:output_ts_offset=${streams.pictureAtS.toFixed(6)}]${teeName(streams.picture)}`,
          ...['-map', '[pcm]', '-c:a', 'pcm_s16le', ...audioOut, '-f', 's16le', streams.sound],
        ]
      : ['-f', 'matroska', output]),
  ];
  return { args, graph };
}

/**
 * ffmpeg arguments that join the parts (a concat list) into the MP4, after a crash or when the MP4
 * written during the call failed: the video copied, the voices encoded to AAC in one pass (no
 * seams between parts). Its index last: it is read index first (fast-start.ts).
 */
export function joinArgs(list: string, q: RecorderInputs, output: string): string[] {
  return [
    ...['-hide_banner', '-loglevel', 'error', '-y'],
    ...['-f', 'concat', '-safe', '0', '-i', list],
    ...['-map', '0:v', '-map', '0:a', '-c:v', 'copy', ...aacArgs(q.audio_rate), '-ar', '48000'],
    ...['-f', 'mp4', output],
  ];
}

// bench/recorder: what a recording costs, per profile (low, medium, high) and content (a screen
// share with two voices; four camera tiles with voices). The SFU and the Mattermost stand-in run
// in this process; publishers are headless participants fed by ffmpeg (VP8, Opus) from media
// encoded once before the runs and sent with -c copy: in a real call the publishers' encoders run
// on their own machines, and here they would take the recorder's cores. The recorder is the real
// job program, run under GNU time for its CPU (ffmpeg included) and peak memory.
// Prints CPU seconds per recorded minute, split into live capture and the compose after the
// call, next to upstream's published vCPU per recording.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { HeadlessParticipant } from '../../src/sfu/client/participant.js';
import { MattermostStandIn } from '../../test/mattermost-standin.js';
import { avOffsets, flashAndBeep, rtpInputPorts, rtpSource, slides, vp8Encoder } from '../../test/media.js';
import { releasedWeriftArgs } from '../../test/werift-released.js';
import { childProcesses, cpuSeconds, ended, rssMb, udpDrops } from '../proc.js';
import { ffmpegEnv } from '../../workers/shared/ffmpeg.js';
import { aacArgs } from '../../workers/recorder/aac.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 60);
// The recorder's own part length unless BENCH_PART_SEC says otherwise: "stop → posted" is the last
// part and the upload.
const PART_SEC = process.env.BENCH_PART_SEC;
// Media is encoded once, at most this long, and looped: an hour of VP8 took 6 min per camera to make.
const LOOP_SEC = 120;
// BENCH_SYNC=1: the first camera tile flashes and beeps together every 2 s (sent live), and the
// row reports the A/V offset over the last minute of the file.
const SYNC = process.env.BENCH_SYNC === '1';
// BENCH_WERIFT=released: the recorder imports werift as released, without patches/werift+*.patch,
// to measure what the patch does to live capture. The job's bundle holds werift inside it, so that
// run is of the recorder's modules as tsc wrote them (its start ~0.4 CPU s dearer: compare capture
// after the first 10 s).
const RELEASED_WERIFT = process.env.BENCH_WERIFT === 'released';
const WERIFT = RELEASED_WERIFT ? releasedWeriftArgs() : [];
const RECORDER = fileURLToPath(
  new URL(`../../workers/recorder/${RELEASED_WERIFT ? 'program' : 'main'}.js`, import.meta.url),
);
const id = () => randomBytes(13).toString('hex');
/**
 * the media ports of the SFU (the stand-in's): its sockets are told apart by them, below the
 * kernel's ephemeral ports (32768 and up) where the publishers' and the inputs' sockets are
 */
const SFU_PORTS: [number, number] = [30000, 30400];

const profiles = {
  low: {
    WIDTH: '1280',
    HEIGHT: '720',
    VIDEO_RATE: '1000',
    FRAME_RATE: '15',
    VIDEO_PRESET: 'ultrafast',
    upstreamVcpu: 0.66,
  },
  medium: {
    WIDTH: '1280',
    HEIGHT: '720',
    VIDEO_RATE: '1500',
    FRAME_RATE: '20',
    VIDEO_PRESET: 'veryfast',
    upstreamVcpu: 0.88,
  },
  high: {
    WIDTH: '1920',
    HEIGHT: '1080',
    VIDEO_RATE: '2500',
    FRAME_RATE: '20',
    VIDEO_PRESET: 'veryfast',
    upstreamVcpu: 1.44,
  },
} as const;
type Profile = keyof typeof profiles;

const media = mkdtempSync(join(tmpdir(), 'bench-media-'));
const made = new Map<string, string>();
/** A WebM of a lavfi source encoded once, long enough for a run. */
function encoded(source: string, codec: string[]): string {
  const key = JSON.stringify([source, codec]);
  if (!made.has(key)) {
    const file = join(media, `${made.size}.webm`);
    execFileSync('ffmpeg', [
      '-loglevel',
      'error',
      '-f',
      'lavfi',
      '-i',
      source,
      '-t',
      String(Math.min(SECONDS + 20, LOOP_SEC)),
      ...codec,
      file,
    ]);
    made.set(key, file);
  }
  return made.get(key)!;
}

interface Row {
  content: string;
  profile: Profile;
  recordedS: number;
  captureCpuS: number;
  totalCpuS: number;
  peakRssMb: number;
  stopToPostedS: number;
  fileMb: number;
  floor: number;
  /** CPU (cores) of decoding what the publishers sent: with `floor`, the physical floor */
  decodeFloor: number;
  /** CPU (cores) of x264 at the profile on the recording's own picture, read back from its file */
  fileFloor: number;
  /** CPU (cores) of the recorder's AAC on the recording's own sound, read back from its file */
  aacFloor: number;
  /** beep minus flash over the first and the last minute (s): min, mean, max */
  sync?: { first: [number, number, number]; last: [number, number, number] };
  /** the recorder's own memory (MB) every 10 s of the call */
  rssMb: number[];
  /**
   * The recorder's own CPU (s; its threads, not its ffmpegs) from its first 10 s on, per recorded
   * second: live capture once the call is joined. Node's start, the join and DTLS cost about a
   * second once per call, which in a row of 60 s is a third of the capture.
   */
  steadyCapture?: number;
  /** the most memory (MB) seen of each kind of ffmpeg the recorder ran */
  ffmpegMb: Map<string, number>;
  /** the parts the recorder composed and the CPU their ffmpegs used (its log), when it told each */
  parts?: { count: number; cpuS: number };
  /** the recorder's lines from the stop on */
  afterStop: string[];
  /** its lines before the stop but for the routine "composed" ones: what went wrong, if anything */
  beforeStop: string[];
  /**
   * datagrams the kernel dropped at full receive buffers, by whose sockets: the publishers' own
   * receive what the SFU forwards them of the others, which they do not use
   */
  udpDropped: { recorder: number; sfu: number; inputs: number; publishers: number };
}

/** A part's line in the recorder's log: `[recorder <time>] composed 0.0-10.0 s in 2.1 s (3.40 CPU s)`. */
const COMPOSED = /\] composed [\d.]+-[\d.]+ s in/;

/**
 * The recorder's lines before the stop (but for each part's "composed"), with the seconds since
 * its first line, and from the stop on, with the seconds since the stop: where stop → posted goes.
 */
function recorderLines(log: string): Pick<Row, 'beforeStop' | 'afterStop'> {
  const lines = log.split('\n').filter((l) => l.startsWith('[recorder '));
  const at = (line: string) => Date.parse(line.slice('[recorder '.length, line.indexOf(']')));
  const stop = lines.findIndex((l) => l.includes('stopping after'));
  const since = (from: string) => (l: string) =>
    `+${((at(l) - at(from)) / 1000).toFixed(1)} s ${l.slice(l.indexOf(']') + 2)}`;
  return {
    beforeStop: lines
      .slice(0, stop)
      .filter((l) => !COMPOSED.test(l))
      .map(since(lines[0]!)),
    afterStop: lines.slice(stop).map(since(lines[stop]!)),
  };
}

/** The parts the recorder's log says it composed, with their CPU: undefined where a line lacks it. */
function partsOf(log: string): Row['parts'] {
  const lines = log.split('\n').filter((l) => COMPOSED.test(l));
  const cpu = lines.map((l) => /\(([\d.]+) CPU s\)/.exec(l)?.[1]);
  if (cpu.length === 0 || cpu.includes(undefined)) return undefined;
  return { count: cpu.length, cpuS: cpu.reduce((sum, c) => sum + Number(c), 0) };
}

/** What an ffmpeg the recorder runs is for, from its arguments. */
function ffmpegRole(args: string[]): string {
  if (args.includes('concat')) return 'join';
  if (args.includes('pipe:3')) return 'MP4 muxer (whole call)';
  return 'part compose';
}

/** The processes below `pid`, with their arguments and memory (MB). */
function descendants(pid: number): { args: string[]; rssMb: number }[] {
  return childProcesses(pid).flatMap((child) => {
    try {
      const args = readFileSync(`/proc/${child}/cmdline`, 'utf8').split('\0');
      return [{ args, rssMb: rssMb(child) }, ...descendants(child)];
    } catch (err) {
      if (ended(err)) return []; // it ended while being read
      throw err;
    }
  });
}

type Content = 'screen share' | 'slides' | 'camera tiles';
const screenSource = (content: Content) =>
  content === 'slides' ? slides('1280x720', 15) : 'testsrc2=size=1280x720:rate=15';

/** CPU seconds (user + system) of one ffmpeg run with these arguments. */
function ffmpegCpu(args: string[]): number {
  const out = join(tmpdir(), `bench-floor-${process.pid}.txt`);
  execFileSync(
    '/usr/bin/time',
    ['-f', '%U %S', '-o', out, 'ffmpeg', '-loglevel', 'error', ...args, '-f', 'null', '-'],
    {
      env: ffmpegEnv(),
    },
  );
  const [user, sys] = readFileSync(out, 'utf8').trim().split('\n').pop()!.split(' ').map(Number);
  rmSync(out);
  return user! + sys!;
}

const FLOOR_SECONDS = 20;

/**
 * CPU (core-seconds per second) of `encode` alone on what `input` gives for FLOOR_SECONDS: the
 * same read with the encode minus without it.
 */
function encodeAlone(input: string[], encode: string[]): number {
  const cpu = (output: string[]) => ffmpegCpu(['-t', String(FLOOR_SECONDS), ...input, ...output]);
  return (cpu(encode) - cpu([])) / FLOOR_SECONDS;
}

/** x264 alone at the profile on the picture `input` gives (encodeAlone). */
function x264Alone(input: string[], profile: Profile): number {
  const p = profiles[profile];
  return encodeAlone(input, [
    '-c:v',
    'libx264',
    '-preset',
    p.VIDEO_PRESET,
    '-b:v',
    `${p.VIDEO_RATE}k`,
    '-pix_fmt',
    'yuv420p',
  ]);
}

/** The job's sound bitrate (kbit/s) in every row. */
const AUDIO_KBITS = 64;

/**
 * AAC alone, as the recorder encodes it, on the sound the recording holds (encodeAlone): what any
 * recorder that writes an MP4 with AAC sound pays beside x264, and not in the floors above.
 */
const aacAlone = (file: string) => encodeAlone(['-i', file, '-map', '0:a'], aacArgs(AUDIO_KBITS));

/**
 * x264 alone on the recording's kind of picture at the profile (the screen share, or four moving
 * camera tiles), generated and scaled: the floor any recorder that encodes H.264 at this profile
 * pays for this content.
 */
function encodeFloor(content: Content, profile: Profile): number {
  const p = profiles[profile];
  const picture =
    content === 'camera tiles'
      ? 'testsrc2=size=640x360:rate=15,split=4[a][b][c][d];[a][b][c][d]xstack=inputs=4:layout=0_0|w0_0|0_h0|w0_h0'
      : screenSource(content);
  return x264Alone(['-f', 'lavfi', '-i', `${picture},scale=${p.WIDTH}:${p.HEIGHT},fps=${p.FRAME_RATE}`], profile);
}

/**
 * x264 alone on the picture the recording holds, decoded from its file. The generated picture of
 * `encodeFloor` is cleaner than cameras decoded from VP8 and scaled: on four such cameras at
 * 1080p x264 spent about a quarter more than on the generated tiles (2026-12-05).
 */
const fileFloor = (file: string, profile: Profile) => x264Alone(['-i', file, '-map', '0:v'], profile);

/**
 * CPU (core-seconds per second) of decoding the files the publishers send (VP8 and Opus, as
 * sent), each read for 21 s minus the same for 1 s (ffmpeg's start apart). A recorder that
 * receives these tracks decodes them whatever it does next: with x264 alone, the physical floor.
 * A flash-and-beep camera (BENCH_SYNC) is generated live, so its decode is not counted.
 */
function decodeFloor(files: string[]): number {
  const cpu = (file: string, seconds: number) => ffmpegCpu(['-stream_loop', '-1', '-i', file, '-t', String(seconds)]);
  return files.reduce((sum, file) => sum + cpu(file, FLOOR_SECONDS + 1) - cpu(file, 1), 0) / FLOOR_SECONDS;
}

async function run(content: Content, profile: Profile): Promise<Row> {
  const call = id();
  const token = id();
  // the call is on the Mattermost stand-in, as on a real site: the recorder joins it with site_url
  const mm = new MattermostStandIn({ authToken: token, icePorts: SFU_PORTS });
  await mm.start();
  const recordingId = id();
  mm.addJob(recordingId, call);
  const sources: ChildProcess[] = [];
  const sent: string[] = [];
  const people: HeadlessParticipant[] = [];
  type Source = 'mic' | 'camera' | 'screen';
  const plan: [number, Source[]][] =
    content === 'camera tiles'
      ? [0, 1, 2, 3].map((i) => [i, ['mic', 'camera']])
      : [
          [0, ['mic', 'screen']],
          [1, ['mic']],
        ];
  /** what person `i` sends as `source`, pre-encoded, and its RTP payload type */
  const fileOf = (i: number, source: string): [string, number] =>
    source === 'mic'
      ? [encoded(`sine=frequency=${200 + i * 110}`, ['-c:a', 'libopus', '-b:a', '32k']), 111]
      : [
          encoded(
            source === 'screen' ? screenSource(content) : `testsrc2=size=640x360:rate=15,hue=h=${i * 60}`,
            vp8Encoder(source === 'screen' ? '1500k' : '600k', 30),
          ),
          96,
        ];
  // Everything is encoded before anyone joins: an encode blocks this process for seconds, and
  // those who had joined sent its media afterwards in one burst, which the SFU's sockets and the
  // publishers' dropped (4,100-8,900 at the publishers in the first camera row of a process; none
  // since).
  for (const [i, tracks] of plan) if (!(SYNC && i === 0)) for (const source of tracks) fileOf(i, source);
  const join_ = async (i: number, tracks: Source[]) => {
    const p = new HeadlessParticipant({
      siteUrl: mm.url,
      callId: call,
      token: mm.userToken(call, `u${i}`, `Person ${i}`),
      subscribe: 'none',
    });
    await p.join();
    const published = await p.publish(...tracks);
    if (SYNC && i === 0 && published.camera && published.mic) {
      const { camera, mic } = published;
      sources.push(
        await flashAndBeep(
          (rtp) => camera.writeRtp(rtp),
          (rtp) => mic.writeRtp(rtp),
          SECONDS + 20,
        ),
      );
      people.push(p);
      return;
    }
    for (const [source, track] of Object.entries(published)) {
      const [file, payloadType] = fileOf(i, source);
      sent.push(file);
      sources.push(
        await rtpSource(
          (rtp) => track.writeRtp(rtp),
          ['-stream_loop', '-1', '-i', file, '-t', String(SECONDS + 20)],
          ['-c', 'copy', '-payload_type', String(payloadType)],
        ),
      );
    }
    people.push(p);
  };
  for (const [i, tracks] of plan) await join_(i, tracks);

  const dir = mkdtempSync(join(tmpdir(), 'bench-rec-'));
  const { upstreamVcpu: _u, ...quality } = profiles[profile];
  const timeFile = join(dir, 'time.txt');
  // BENCH_PROFILE=<dir>: a V8 CPU profile of each recorder run.
  const profile_ = process.env.BENCH_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE}`] : [];
  const child = spawn(
    '/usr/bin/time',
    ['-f', '%U %S %M', '-o', timeFile, process.execPath, ...profile_, ...WERIFT, RECORDER],
    {
      env: {
        ...process.env,
        ...quality,
        AUDIO_RATE: String(AUDIO_KBITS),
        OUTPUT_FORMAT: 'mp4',
        ...(PART_SEC ? { PART_SEC } : {}),
        SITE_URL: mm.url,
        CALL_ID: call,
        POST_ID: id(),
        RECORDING_ID: recordingId,
        AUTH_TOKEN: token,
        JOB_ID: id(),
        JOB_DIR: join(dir, 'job'),
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  let log = '';
  child.stdout!.on('data', (c) => (log += c));
  while (!mm.statuses.some((s) => s.body.Status === 'started')) await new Promise((r) => setTimeout(r, 100));
  // The recorder (GNU time's child), stopped as the worker does: SIGTERM. Its memory (the Node
  // process alone, ffmpeg apart) is read every 10 s: it must stay flat however long the call.
  const recorderPid = childProcesses(child.pid!)[0]!;
  const recorderMb: number[] = [];
  const cpu: { atS: number; cpuS: number }[] = [];
  const ffmpegMb = new Map<string, number>();
  // Kernel drops at the recorder's sockets and at this process's (the SFU's, the publishers' and
  // their RTP inputs'), the highest count seen of each socket.
  const drops = new Map<string, { port: number; drops: number; recorder: boolean }>();
  const inputs = new Set<number>();
  const sampleDrops = () => {
    for (const port of rtpInputPorts()) inputs.add(port);
    for (const [pid, recorder] of [
      [recorderPid, true],
      [process.pid, false],
    ] as const) {
      try {
        for (const [inode, d] of udpDrops(pid))
          drops.set(inode, { ...d, recorder, drops: Math.max(d.drops, drops.get(inode)?.drops ?? 0) });
      } catch {
        // the recorder has exited
      }
    }
  };
  let samples = 0;
  // Every 2 s the ffmpegs (a part's compose lasts seconds), every 10 s the recorder itself; the
  // ffmpegs still after the stop too (the last part).
  const sampling = setInterval(() => {
    for (const { args, rssMb: mb } of descendants(recorderPid).filter((p) => p.args[0] === 'ffmpeg')) {
      const role = ffmpegRole(args);
      ffmpegMb.set(role, Math.max(mb, ffmpegMb.get(role) ?? 0));
    }
    if (samples++ % 5 !== 0) return;
    sampleDrops();
    try {
      const [mb, cpuS] = [rssMb(recorderPid), cpuSeconds(recorderPid)];
      recorderMb.push(mb);
      cpu.push({ atS: performance.now() / 1000, cpuS });
    } catch (err) {
      // it ended after the stop, before this sampling did (a run died of the read)
      if (!ended(err)) throw err;
    }
  }, 2_000);
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  sampleDrops();
  const stoppedAt = performance.now();
  const posted = new Promise<number>((resolve) => {
    const timer = setInterval(() => {
      if (mm.recordings.length > 0) {
        clearInterval(timer);
        resolve(performance.now());
      }
    }, 20);
  });
  process.kill(recorderPid, 'SIGTERM');
  const [code] = await once(child, 'exit');
  if (code !== 0) throw new Error(`recorder exited with ${code}:\n${log}`);
  const postedAt = await posted;
  clearInterval(sampling);
  sampleDrops();
  const dropped = (which: (d: { port: number; recorder: boolean }) => boolean) =>
    [...drops.values()].filter(which).reduce((sum, d) => sum + d.drops, 0);
  const inSfu = ({ port }: { port: number }) => port >= SFU_PORTS[0] && port <= SFU_PORTS[1];
  for (const s of sources) s.kill('SIGKILL');
  for (const p of people) p.leave();
  const [user, sys, maxKb] = readFileSync(timeFile, 'utf8').trim().split('\n').pop()!.split(' ').map(Number);
  const m = /stopping after ([\d.]+) s \(capture used ([\d.]+) s of CPU\)/.exec(log)!;
  const fileId = mm.recordings[0]!.body.FileIDs[0]!;
  let sync: Row['sync'];
  if (SYNC) {
    const mp4 = mm.filePath(fileId)!;
    const w = Number(quality.WIDTH) / 2;
    const h = Number(quality.HEIGHT) / 2;
    const minute = (fromSec: number): [number, number, number] => {
      const { offsets } = avOffsets(mp4, Number(quality.FRAME_RATE), { crop: `${w}:${h}:0:0`, fromSec, forSec: 60 });
      const near = offsets.filter((o) => Math.abs(o) < 1); // a flash with its own beep
      return [Math.min(...near), near.reduce((a, b) => a + b, 0) / near.length, Math.max(...near)];
    };
    sync = { first: minute(0), last: minute(Math.max(0, Number(m[1]) - 60)) };
  }
  const row: Row = {
    content,
    profile,
    recordedS: Number(m[1]),
    captureCpuS: Number(m[2]),
    totalCpuS: user! + sys!,
    peakRssMb: maxKb! / 1024,
    stopToPostedS: (postedAt - stoppedAt) / 1000,
    fileMb: statSync(mm.filePath(fileId)!).size / 1e6,
    floor: encodeFloor(content, profile),
    decodeFloor: decodeFloor(sent),
    fileFloor: fileFloor(mm.filePath(fileId)!, profile),
    aacFloor: aacAlone(mm.filePath(fileId)!),
    sync,
    rssMb: recorderMb,
    steadyCapture: cpu.length > 2 ? (cpu.at(-1)!.cpuS - cpu[1]!.cpuS) / (cpu.at(-1)!.atS - cpu[1]!.atS) : undefined,
    ffmpegMb,
    parts: partsOf(log),
    ...recorderLines(log),
    udpDropped: {
      recorder: dropped((d) => d.recorder),
      sfu: dropped((d) => !d.recorder && inSfu(d)),
      inputs: dropped((d) => !d.recorder && inputs.has(d.port)),
      publishers: dropped((d) => !d.recorder && !inSfu(d) && !inputs.has(d.port)),
    },
  };
  await mm.close();
  rmSync(dir, { recursive: true, force: true });
  return row;
}

const rows: Row[] = [];
for (const content of (process.env.BENCH_CONTENT?.split(',') ?? [
  'screen share',
  'slides',
  'camera tiles',
]) as Content[]) {
  for (const profile of (process.env.BENCH_PROFILES ?? 'low,medium,high').split(',') as Profile[])
    rows.push(await run(content, profile));
}
rmSync(media, { recursive: true, force: true });

const f = (n: number, d = 2) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
console.log(
  `\nbench/recorder (${new Date().toISOString().slice(0, 10)}, node ${process.version}, 2 cores, ${SECONDS} s recorded per row in ${PART_SEC ? `parts of ${PART_SEC} s` : "the recorder's default parts"}; publishers send pre-encoded media; the recorder's werift ${RELEASED_WERIFT ? 'as released, its modules unbundled' : 'patched, bundled'})\n`,
);
console.log(
  '| content | profile | CPU s per recorded min: live capture | of it after the first 10 s | compose (parts) | total | = vCPU per recording | upstream vCPU | upstream ÷ ours | x264 encode alone (vCPU) | ours ÷ x264 alone | decoding the tracks + x264 alone (vCPU) | ours ÷ that | x264 alone on the recorded picture (vCPU) | ours ÷ decoding + that | peak RSS | stop → posted | file size per hour |',
);
console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
/** CPU seconds a recorded minute of row `r`. */
const perMinOf = (r: Row) => (s: number) => (s / r.recordedS) * 60;
for (const r of rows) {
  const perMin = perMinOf(r);
  const vcpu = r.totalCpuS / r.recordedS;
  const upstream = profiles[r.profile].upstreamVcpu;
  console.log(
    `| ${r.content} | ${r.profile} | ${f(perMin(r.captureCpuS))} | ${r.steadyCapture === undefined ? '–' : f(r.steadyCapture * 60)} | ${f(perMin(r.totalCpuS - r.captureCpuS))} | ${f(perMin(r.totalCpuS))} | ${f(vcpu, 3)} | ${upstream} | ${f(upstream / vcpu, 1)}× | ${f(r.floor, 3)} | ${f(vcpu / r.floor, 2)}× | ${f(r.floor + r.decodeFloor, 3)} | ${f(vcpu / (r.floor + r.decodeFloor), 2)}× | ${f(r.fileFloor, 3)} | ${f(vcpu / (r.fileFloor + r.decodeFloor), 2)}× | ${f(r.peakRssMb, 0)} MB | ${f(r.stopToPostedS, 1)} s | ${f(((r.fileMb / r.recordedS) * 3600) / 1000, 2)} GB |`,
  );
}
// The compose column split: the parts' ffmpegs (their CPU as the recorder's helper read it when
// each ended) against their floor, and the rest (the MP4's muxer with its AAC encode, the helper,
// a part dropped at the stop, the recorder's own work after the stop) against AAC alone.
console.log(
  '\n| content | profile | parts | parts: CPU s per recorded min | parts ÷ (decoding + x264 alone on the recorded picture) | the rest of compose: CPU s per recorded min | AAC alone on the recorded sound: CPU s per recorded min |',
);
console.log('|---|---|---|---|---|---|---|');
for (const r of rows.filter((r) => r.parts)) {
  const perMin = perMinOf(r);
  const { count, cpuS } = r.parts!;
  console.log(
    `| ${r.content} | ${r.profile} | ${count} | ${f(perMin(cpuS))} | ${f(cpuS / r.recordedS / (r.fileFloor + r.decodeFloor), 2)}× | ${f(perMin(r.totalCpuS - r.captureCpuS - cpuS))} | ${f(r.aacFloor * 60)} |`,
  );
}
for (const r of rows.filter((r) => r.rssMb.length >= 6)) {
  const at = (i: number) => f(r.rssMb[i]!, 0);
  console.log(
    `\n${r.content}, ${r.profile}: the recorder's memory (Node alone) at 1 min ${at(5)} MB, halfway ${at(r.rssMb.length >> 1)} MB, at the end ${at(r.rssMb.length - 1)} MB, at most ${f(Math.max(...r.rssMb), 0)} MB; ` +
      `its ffmpegs at most: ${[...r.ffmpegMb].map(([role, mb]) => `${role} ${f(mb, 0)} MB`).join(', ')}`,
  );
  // One sample says little about growth (a part's spawn, V8 growing its heap): the median of each
  // 5 minutes shows whether memory follows the call's length.
  const perFive = Array.from({ length: Math.floor(r.rssMb.length / 30) }, (_, k) => {
    const window = r.rssMb.slice(k * 30, k * 30 + 30).sort((a, b) => a - b);
    return f(window[15]!, 0);
  });
  if (perFive.length > 1) console.log(`the recorder's memory, median of each 5 min: ${perFive.join(' / ')} MB`);
}
for (const r of rows.filter((r) => r.sync)) {
  const show = ([lo, mean, hi]: [number, number, number]) => `${f(mean, 3)} s (${f(lo, 3)} to ${f(hi, 3)})`;
  console.log(
    `\n${r.content}, ${r.profile}: beep minus flash over the first minute ${show(r.sync!.first)}, over the last minute of ${f(r.recordedS, 0)} s ${show(r.sync!.last)}`,
  );
}
for (const r of rows) {
  const { recorder, sfu, inputs, publishers } = r.udpDropped;
  console.log(
    `\n${r.content}, ${r.profile}: UDP datagrams the kernel dropped (receive buffer full): ${recorder} at the recorder, ${sfu} at the SFU, ${inputs} at the publishers' inputs, ${publishers} at the publishers (what the SFU forwards them of the others, unused)` +
      `\nthe recorder before the stop\n${r.beforeStop.map((l) => `    ${l}`).join('\n')}` +
      `\nthe recorder after the stop\n${r.afterStop.map((l) => `    ${l}`).join('\n')}`,
  );
}
const live = Math.max(...rows.map((r) => r.captureCpuS / r.recordedS));
const steady = Math.max(...rows.map((r) => r.steadyCapture ?? 0));
const costliest = Math.max(...rows.map((r) => r.totalCpuS / r.recordedS));
console.log(
  `\nLive capture costs at most ${f(live, 3)} core per recording (${f(steady, 3)} after its first 10 s): 2 cores hold about ${Math.floor(2 / live)} recordings in real time (compose runs at low priority beside it, during and after each call, and takes the "compose" CPU once). ` +
    `Recording around the clock (each call's compose done before the next ends), 2 cores keep up with ${Math.floor(2 / costliest)} at the costliest row and ${Math.floor(2 / Math.min(...rows.map((r) => r.totalCpuS / r.recordedS)))} at the cheapest.`,
);
process.exit(0);

// The recording composed continuously, in parts: while the call goes on, each finished part
// (PART_SEC, default 10 s) is composed at low priority and added to the MP4 (live-mp4.ts), so on
// stop only the last seconds remain, whatever the call's length (parts of 120 s left up to two
// minutes to compose after the stop; 20 s parts cost 7 % less CPU than 10 s ones but left 17 s
// from stop to post with four cameras). During the call the parts' pictures go through one x264
// (live-encoder.ts); after the stop, or after a part failed, each part has its own.
// Parts are files in `parts/` named by their window, its picture (.ts) and its sound (.mkv),
// written under a temporary name and renamed when complete: the recovery run after a crash joins
// them.
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Spawner } from '../shared/spawner.js';
import type { Capture } from './capture.js';
import { frameAt, joinArgs, partArgs, readRecording, type Window } from './compose.js';
import type { RecorderInputs } from './inputs.js';
import { LiveEncoder } from './live-encoder.js';
import { LiveMp4, pictureAtS } from './live-mp4.js';

const KEYFRAME_LEAD_MS = 1500; // ask this long before a part begins, so a keyframe sits just before it
const SETTLE_MS = 3000; // compose a part this long after it ends: late packets are written by then
// The compose during the call yields to everything live: the capture, and on a shared host the
// calls' other work (at 10, a late joiner's browser beside a compose of 10 s parts, on 2 cores,
// once took over 20 s to connect). After the stop someone waits for the file: full priority.
const NICE = 19;
// At the stop the encoder finishes the frames it holds back (x264's lookahead and threads) at
// nice 19, which on a host busy on both cores gets about 1.5 % of one (CFS's weights, 15 against
// 1024). Past this, the parts it had not finished are composed again at full priority.
const ENCODER_END_MS = 3000;

export class Parts {
  private readonly partsDir: string;
  private doneMs = 0;
  private askedFor = -1;
  private running?: Promise<void>;
  /** aborted at the stop: a part composing at nice 19 is dropped, finish() composes it at full priority */
  private readonly stopping = new AbortController();
  private failed = false;
  /** the MP4 written part by part; none in a recovery run that found parts (they are joined) */
  private mp4?: LiveMp4;
  /** the call's x264 while parts go through it (from the first part to a failure or the stop) */
  private encoder?: LiveEncoder;
  /** parts composed into the encoder whose picture it has not finished: `n`, its number among them */
  private encoded: { w: Window; n: number }[] = [];
  /** parts given to the encoder so far */
  private fed = 0;
  /** the parts' additions to the MP4, one after another */
  private appending = Promise.resolve();
  /** starts the parts' ffmpegs, so that the recorder is not forked for each (README, bench/recorder) */
  private readonly spawner = new Spawner();

  constructor(
    private readonly dir: string,
    private readonly inputs: RecorderInputs,
    private readonly partMs: number,
    private readonly log: (m: string) => void,
  ) {
    this.partsDir = join(dir, 'parts');
    mkdirSync(this.partsDir, { recursive: true });
    this.doneMs = this.chain().at(-1)?.toMs ?? 0; // parts an earlier run left
    // Its muxer runs at full priority: it costs about 1 % of a core (the sound's encode), and at
    // nice 19 on a busy host the backlog it holds at the stop would wait behind everything else.
    if (this.doneMs === 0) this.mp4 = new LiveMp4(join(this.partsDir, 'recording.mp4'), inputs);
  }

  /** The complete parts on disk (picture and sound) that follow on from the start, in order. */
  private chain(): Window[] {
    const found = readdirSync(this.partsDir)
      .map((f) => /^part-(\d+)-(\d+)\.mkv$/.exec(f))
      .filter((m) => m !== null)
      .map((m) => ({ fromMs: Number(m[1]), toMs: Number(m[2]) }))
      .filter((w) => existsSync(this.files(w).picture));
    const chain: Window[] = [];
    for (let next = found.find((w) => w.fromMs === 0); next; next = found.find((w) => w.fromMs === chain.at(-1)!.toMs))
      chain.push(next);
    return chain;
  }

  private files(w: Window) {
    const base = join(this.partsDir, `part-${w.fromMs}-${w.toMs}`);
    return { picture: `${base}.ts`, sound: `${base}.mkv`, pcm: `${base}.pcm` };
  }

  /**
   * The encoder for a part during the call: started with the first part, and used while parts
   * follow on from it. Undefined after the stop, a failure, or when it cannot start (each part
   * then has its own x264).
   */
  private encoderFor(w: Window): LiveEncoder | undefined {
    if (!this.mp4 || this.stopping.signal.aborted) return undefined;
    if (w.fromMs === 0 && this.fed === 0) {
      try {
        this.encoder = new LiveEncoder(
          this.partsDir,
          this.inputs,
          this.partMs,
          pictureAtS(0, this.inputs.frame_rate),
          this.spawner,
          NICE,
        );
      } catch (err) {
        this.log(`each part has its own encoder: ${(err as Error).message}`);
      }
    }
    if (this.encoder?.ended) throw new Error(`the encoder of the parts ended: ${this.encoder.ended}`);
    return this.encoder;
  }

  private async compose(w: Window, durationMs: number, duringCall = false): Promise<void> {
    const started = performance.now();
    const rec = await readRecording(this.dir, durationMs);
    const [nice, stop] = duringCall ? [NICE, this.stopping.signal] : [];
    stop?.throwIfAborted();
    const f = this.files(w);
    const encoder = duringCall ? this.encoderFor(w) : undefined;
    const n = encoder ? this.fed++ : -1;
    const pcm = this.mp4 ? f.pcm : undefined;
    const temp = { picture: `${f.picture}.tmp`, sound: `${f.sound}.tmp` };
    // A part writing into an encoder that ended would wait on its pipe for ever.
    const gone = new AbortController();
    void encoder?.exited.then(() => gone.abort(new Error(`the encoder of the parts ended: ${encoder.ended}`)));
    const signal = encoder ? AbortSignal.any([stop!, gone.signal]) : stop;
    try {
      const picture = encoder
        ? { raw: encoder.pipe }
        : { file: temp.picture, atS: pictureAtS(w.fromMs, this.inputs.frame_rate) };
      await this.spawner.ffmpeg(partArgs(rec, this.inputs, w, { picture, sound: temp.sound, pcm }), { nice, signal });
      renameSync(temp.sound, f.sound);
      this.doneMs = w.toMs;
      if (encoder) {
        this.encoded.push({ w, n });
        this.takeEncoded();
      } else {
        renameSync(temp.picture, f.picture);
        this.append(w);
      }
    } catch (err) {
      // Of no use partly written.
      for (const file of [temp.picture, temp.sound, pcm]) if (file) rmSync(file, { force: true });
      throw err;
    }
    this.log(
      `composed ${(w.fromMs / 1000).toFixed(1)}-${(w.toMs / 1000).toFixed(1)} s in ${((performance.now() - started) / 1000).toFixed(1)} s`,
    );
  }

  /** Adds a composed part to the MP4, after those before it; its PCM is of no use after. */
  private append(w: Window): void {
    const { picture, pcm } = this.files(w);
    this.appending = this.appending.then(async () => {
      try {
        await this.mp4?.append({ picture, sound: pcm }, w);
      } catch (err) {
        this.log(`the parts are left for a join at the end: ${(err as Error).message}`);
        this.mp4?.abandon();
        this.mp4 = undefined;
      } finally {
        rmSync(pcm, { force: true });
      }
    });
  }

  /** The parts whose picture the encoder has finished: named as parts, and into the MP4. */
  private takeEncoded(): void {
    while (this.encoded.length > 0) {
      const file = this.encoder?.file(this.encoded[0]!.n);
      if (!file) return;
      const { w } = this.encoded.shift()!;
      renameSync(file, this.files(w).picture);
      this.append(w);
    }
  }

  /**
   * Ends the encoder at the stop: it finishes the frames it holds, and the parts it finished go
   * into the MP4. Those it could not finish (it failed, or took too long) are composed again from
   * the first of them, with what followed.
   */
  private async endEncoder(): Promise<void> {
    const encoder = this.encoder;
    if (!encoder) return;
    let timer: NodeJS.Timeout | undefined;
    const ended = await Promise.race([
      encoder.close(),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ENCODER_END_MS))),
    ]);
    clearTimeout(timer);
    if (!ended) {
      this.log('the encoder of the parts did not end in time: its unfinished parts are composed again');
      encoder.kill();
      await encoder.exited;
    }
    this.takeEncoded();
    this.encoder = undefined;
    if (this.encoded[0]) this.doneMs = this.encoded[0].w.fromMs;
    for (const { w } of this.encoded)
      for (const file of [this.files(w).sound, this.files(w).pcm]) rmSync(file, { force: true });
    this.encoded = [];
    // What it made of a part dropped half-way, its pipe and its list.
    for (const f of readdirSync(this.partsDir))
      if (f.startsWith('picture')) rmSync(join(this.partsDir, f), { force: true });
  }

  /** Called every second while capturing: keyframes ahead of the next part, and the compose of a finished one. */
  whileCapturing(capture: Pick<Capture, 'elapsedMs' | 'requestKeyframes'>): void {
    this.takeEncoded();
    const elapsed = capture.elapsedMs;
    const next = this.doneMs + this.partMs;
    if (elapsed >= next - KEYFRAME_LEAD_MS && this.askedFor !== next) {
      this.askedFor = next;
      capture.requestKeyframes();
    }
    if (this.running || this.failed || elapsed < next + SETTLE_MS) return;
    this.running = this.compose({ fromMs: this.doneMs, toMs: next }, elapsed, true)
      .catch((err) => {
        // Not retried during the call: the end composes everything from here in one go.
        this.failed = true;
        if (!this.stopping.signal.aborted)
          this.log(`parts from ${this.doneMs / 1000} s are left for the end: ${(err as Error).message}`);
      })
      .finally(() => (this.running = undefined));
  }

  /**
   * Composes what is left up to `durationMs` and ends the MP4 as `output` (or joins the parts into
   * it, when there is no MP4 written during the call). A part still being composed at nice 19 is
   * dropped and composed again with the rest at full priority: on a busy host it could wait
   * behind everything else for minutes (on an idle one, redoing it costs a few seconds at most).
   */
  async finish(durationMs: number, output: string): Promise<void> {
    try {
      await this.finishParts(durationMs, output);
    } finally {
      this.encoder?.kill();
      await this.spawner.close();
    }
  }

  private async finishParts(durationMs: number, output: string): Promise<void> {
    this.stopping.abort();
    await this.running;
    await this.endEncoder();
    const fps = this.inputs.frame_rate;
    if (frameAt(durationMs, fps) > frameAt(this.doneMs, fps))
      await this.compose({ fromMs: this.doneMs, toMs: durationMs }, durationMs);
    await this.appending;
    if (this.mp4) {
      const ended = await this.mp4.close().then(
        () => true,
        (err) => {
          this.log(`the parts are joined instead: ${(err as Error).message}`);
          return false;
        },
      );
      if (ended) return renameSync(this.mp4.file, output);
    }
    // Each part's exact length, so the join places the next one frame-exactly.
    const list = (kind: 'picture' | 'sound') => {
      const file = join(this.partsDir, `parts-${kind}.txt`);
      const entries = this.chain().flatMap((w) => [
        `file '${this.files(w)[kind]}'`,
        `duration ${((frameAt(w.toMs, fps) - frameAt(w.fromMs, fps)) / fps).toFixed(6)}`,
      ]);
      writeFileSync(file, `${['ffconcat version 1.0', ...entries].join('\n')}\n`);
      return file;
    };
    await this.spawner.ffmpeg(joinArgs(list('picture'), list('sound'), this.inputs, output));
  }
}

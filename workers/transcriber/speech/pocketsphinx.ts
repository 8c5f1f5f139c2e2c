// pocketsphinx through a small resident helper (pocketsphinx-server.c, built by `npm run build`):
// the model loads once, then each utterance costs only its decoding. Requests are answered in
// order, so one helper serves one caller at a time and several helpers run in parallel.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import {
  EngineError,
  SAMPLE_RATE,
  type EngineOptions,
  type Recognition,
  type RecognitionStream,
  type SpeechEngine,
} from './engine.js';

export const serverPath = fileURLToPath(new URL('../../../bin/pocketsphinx-server', import.meta.url));
/** Debian's pocketsphinx-en-us; POCKETSPHINX_MODEL_DIR names another */
export const defaultModelDir = '/usr/share/pocketsphinx/model/en-us';

/**
 * First pass only: on the LibriVox utterances of pocketsphinx-testdata this is 1.2-1.3x faster
 * and also more accurate (WER 0.21 against 0.28 with the flat-lexicon and best-path passes).
 */
const searchArgs = ['-fwdflat', 'no', '-bestpath', 'no'];

export class PocketsphinxEngine implements SpeechEngine {
  readonly name = 'pocketsphinx';
  private readonly waiting: { resolve: (r: Recognition) => void; reject: (e: Error) => void }[] = [];
  private stderr = '';
  /** samples of the streamed utterance decoded so far (progress lines) */
  private decoded = 0;
  private exited?: Error;

  get failure(): string | undefined {
    return this.exited?.message;
  }

  private constructor(private readonly child: ChildProcessWithoutNullStreams) {
    child.stderr.on('data', (c: Buffer) => (this.stderr = (this.stderr + c.toString()).slice(-2000)));
    createInterface({ input: child.stdout }).on('line', (line) => {
      const reply = JSON.parse(line) as {
        ready?: true;
        at?: number;
        text: string;
        words: [string, number, number, number][];
      };
      if (reply.at !== undefined) return void (this.decoded = reply.at);
      const waiter = this.waiting.shift();
      if (reply.ready) return waiter?.resolve({ text: '', words: [] });
      waiter?.resolve({
        text: reply.text.replace(/\(\d+\)/g, ''),
        // "read(2)" is the dictionary's second pronunciation of "read"
        words: reply.words.map(([w, start, end]) => ({ word: w.replace(/\(\d+\)$/, ''), start, end })),
      });
    });
    const ended = (why: string) => {
      this.exited ??= new Error(`pocketsphinx-server ${why}`);
      for (const w of this.waiting.splice(0)) w.reject(this.exited);
    };
    child.on('exit', (code, signal) =>
      ended(`exited (${signal ?? code}): ${this.stderr.trim().split('\n').slice(-2).join(' | ')}`),
    );
    // a spawn that fails (EAGAIN at a process limit) says so here only, with no 'exit'
    child.on('error', (err) => ended(`could not run: ${err.message}`));
    child.stdin.on('error', () => undefined); // reported by 'exit'
  }

  static async start(opts: EngineOptions): Promise<PocketsphinxEngine> {
    if (opts.language !== undefined && opts.language !== 'en')
      throw new EngineError(`pocketsphinx has an English model only; language ${opts.language} needs whisper.cpp`);
    if (!existsSync(serverPath)) {
      throw new EngineError(
        `${serverPath} is missing: install libpocketsphinx-dev (scripts/install-system-deps.sh) and run npm run build`,
      );
    }
    const modelDir = process.env.POCKETSPHINX_MODEL_DIR || defaultModelDir;
    for (const f of ['en-us', 'en-us.lm.bin', 'cmudict-en-us.dict']) {
      if (!existsSync(`${modelDir}/${f}`))
        throw new EngineError(
          `pocketsphinx model file ${modelDir}/${f} is missing (Debian package pocketsphinx-en-us)`,
        );
    }
    const child = spawn(
      serverPath,
      [
        '-hmm',
        `${modelDir}/en-us`,
        '-lm',
        `${modelDir}/en-us.lm.bin`,
        '-dict',
        `${modelDir}/cmudict-en-us.dict`,
        '-logfn',
        '/dev/null',
        ...searchArgs,
      ],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    const engine = new PocketsphinxEngine(child);
    // The first line is {"ready":true} once the model is loaded.
    await new Promise<void>((resolve, reject) => engine.waiting.push({ resolve: () => resolve(), reject }));
    return engine;
  }

  /** the helper's process id (for measuring its memory) */
  get pid(): number | undefined {
    return this.child.pid;
  }

  recognize(pcm: Int16Array): Promise<Recognition> {
    return this.send(pcm);
  }

  begin(): RecognitionStream {
    let pushed = 0;
    let sinceProgress = 0;
    this.decoded = 0;
    const engine = this;
    return {
      push: (pcm) => {
        pushed += pcm.length;
        sinceProgress += pcm.length;
        // a progress line every 200 ms of audio tells how far behind the decoder is
        const progress = sinceProgress >= SAMPLE_RATE / 5;
        if (progress) sinceProgress = 0;
        this.write(pcm, true, progress);
      },
      get lagMs() {
        return ((pushed - engine.decoded) / SAMPLE_RATE) * 1000;
      },
      end: () => this.send(new Int16Array(0)),
    };
  }

  /**
   * Writes samples as one frame (header and samples in a single write); with `more` the
   * utterance goes on and nothing is answered. Nothing is written once the helper has exited:
   * the stream's end reports that.
   */
  private write(pcm: Int16Array, more: boolean, progress = false): void {
    if (this.exited) return;
    const frame = Buffer.allocUnsafe(4 + pcm.byteLength);
    frame.writeUInt32LE((pcm.length | (more ? 0x80000000 : 0) | (progress ? 0x40000000 : 0)) >>> 0);
    frame.set(new Uint8Array(pcm.buffer, pcm.byteOffset, pcm.byteLength), 4);
    this.child.stdin.write(frame);
  }

  /** Ends an utterance and resolves with what the helper recognised. */
  private send(pcm: Int16Array): Promise<Recognition> {
    if (this.exited) return Promise.reject(this.exited);
    this.write(pcm, false);
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  async close(): Promise<void> {
    if (this.exited) return;
    const done = new Promise((r) => this.child.once('exit', r));
    this.child.stdin.end();
    await done;
  }
}

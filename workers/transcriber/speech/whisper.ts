// Whisper through whisper.cpp's Node addon from @spader/node-whisper-cpp-x64-linux-cpu-gnu: prebuilt
// whisper.cpp 1.8.3 whose CPU backend is picked at run time for the machine's SIMD (AVX2, AVX-512),
// which keeps the model loaded in the process. Models are never downloaded at run time:
// ggml-<size>.bin must be in MODELS_DIR (`npm run models:fetch -- <size>` where the internet is
// reachable, or the image build).
import { closeSync, existsSync, openSync, readSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  EngineError,
  SAMPLE_RATE,
  type EngineOptions,
  type Recognition,
  type SpeechEngine,
  type Word,
} from './engine.js';

interface NativeWhisper {
  WhisperContext: new (opts: { model: string; use_gpu?: boolean }) => NativeContext;
}
interface NativeContext {
  /** `pcm`: Float32 mono at 16 kHz in [-1, 1]. Segment times t0/t1 come back in 10 ms units. */
  transcribe(opts: {
    pcm: Float32Array;
    language?: string;
    threads?: number;
  }): Promise<{ text: string; t0: number; t1: number }[]>;
  free(): void;
}

export const bindingPackage = `@spader/node-whisper-cpp-${process.arch}-${process.platform}-cpu-gnu`;

/** Loads the native addon; an EngineError saying what is missing when it cannot. */
export async function loadBinding(): Promise<NativeWhisper> {
  try {
    const { getBinsDir } = (await import(bindingPackage)) as { getBinsDir(): { binsDir: string } };
    return createRequire(import.meta.url)(join(getBinsDir().binsDir, 'whisper-addon.node')) as NativeWhisper;
  } catch (err) {
    throw new EngineError(
      `the whisper.cpp binding ${bindingPackage} could not be loaded (${(err as Error).message.split('\n')[0]})`,
    );
  }
}

/** MODELS_DIR, or models/ at the top of the installation. */
export const modelsDir = () => process.env.MODELS_DIR || fileURLToPath(new URL('../../../../models', import.meta.url));

export const modelPath = (opts: Pick<EngineOptions, 'modelsDir' | 'modelSize'>) =>
  join(opts.modelsDir, `ggml-${opts.modelSize}.bin`);

/** 'ggml' as the little-endian uint32 that starts every whisper.cpp model file. */
const GGML_MAGIC = 0x67676d6c;

function hasGgmlMagic(file: string): boolean {
  const fd = openSync(file, 'r');
  try {
    const head = Buffer.alloc(4);
    return readSync(fd, head, 0, 4, 0) === 4 && head.readUInt32LE(0) === GGML_MAGIC;
  } finally {
    closeSync(fd);
  }
}

/**
 * How long one call may take before it counts as hung: whisper.cpp decodes 30-s windows, and the
 * slowest case here (a large model on an unoptimised build, the machine shared) stays far inside
 * a minute of start-up plus 20 s per second of audio. A hung call (binding 1.1.3 never settles
 * when whisper.cpp throws inside) then fails the job with a reason instead of holding it until
 * max_duration_sec.
 */
export const defaultBudgetMs = (audioMs: number) => 60_000 + 20 * audioMs;

export class WhisperEngine implements SpeechEngine {
  readonly name = 'whisper.cpp';

  /** One whisper_full at a time per context: the addon crashes the process on concurrent calls. */
  private queue: Promise<unknown> = Promise.resolve();
  /** set when a call overran its budget: the context may still be busy and is not used again */
  private broken?: string;

  get failure(): string | undefined {
    return this.broken;
  }

  private constructor(
    private readonly ctx: NativeContext,
    private readonly opts: EngineOptions,
    private readonly file: string,
    private readonly budgetMs: (audioMs: number) => number,
  ) {}

  static async load(opts: EngineOptions, budgetMs = defaultBudgetMs): Promise<WhisperEngine> {
    const file = modelPath(opts);
    if (!existsSync(file)) {
      throw new EngineError(
        `whisper.cpp model ${file} not found: put ggml-${opts.modelSize}.bin in MODELS_DIR (npm run models:fetch -- ${opts.modelSize} where the internet is reachable)`,
      );
    }
    if (!hasGgmlMagic(file)) throw new EngineError(`whisper.cpp could not load ${file}: it is not a ggml model file`);
    const { WhisperContext } = await loadBinding();
    try {
      return new WhisperEngine(new WhisperContext({ model: file, use_gpu: false }), opts, file, budgetMs);
    } catch (err) {
      // whisper.cpp prints its own reason (wrong tensor shape, file cut short) just before, on stderr
      throw new EngineError(
        `whisper.cpp could not load ${file} (${(err as Error).message}): the file is cut short, damaged or of a shape whisper.cpp does not expect; whisper.cpp's reason is in the log above`,
      );
    }
  }

  recognize(pcm: Int16Array): Promise<Recognition> {
    const run = this.queue.then(() => this.decode(pcm));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async decode(pcm: Int16Array): Promise<Recognition> {
    if (this.broken) throw new EngineError(this.broken);
    const audioMs = (pcm.length / SAMPLE_RATE) * 1000;
    const audio = new Float32Array(pcm.length);
    for (let i = 0; i < pcm.length; i++) audio[i] = pcm[i]! / 32768;
    const budget = this.budgetMs(audioMs);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.broken = `whisper.cpp did not finish ${(audioMs / 1000).toFixed(1)} s of audio within ${(budget / 1000).toFixed(0)} s with ${this.file}: the model or the binding is broken`;
        reject(new EngineError(this.broken));
      }, budget);
    });
    let segments: { text: string; t0: number; t1: number }[];
    try {
      segments = await Promise.race([
        this.ctx.transcribe({ pcm: audio, language: this.opts.language ?? 'auto', threads: this.opts.threads }),
        timeout,
      ]);
    } catch (err) {
      if (err instanceof EngineError) throw err;
      throw new EngineError(
        `whisper.cpp failed on ${(audioMs / 1000).toFixed(1)} s of audio: ${(err as Error).message}`,
      );
    } finally {
      clearTimeout(timer);
    }
    // Segment times are in 10 ms units. Whisper gives no word times without token timestamps: words are
    // spread evenly over their segment, enough for cues and captions. A segment may claim to run
    // past the audio (the window is 30 s whatever the clip): times are kept within the clip.
    const end = audioMs / 1000;
    const clip = (s: number) => Math.min(Math.max(0, s), end);
    const words: Word[] = segments.flatMap((s) => {
      const parts = s.text.trim().split(/\s+/).filter(Boolean);
      const t0 = clip(s.t0 / 100);
      const span = Math.max(0, clip(s.t1 / 100) - t0) / Math.max(1, parts.length);
      return parts.map((word, i) => ({ word, start: t0 + i * span, end: t0 + (i + 1) * span }));
    });
    return { text: words.map((w) => w.word).join(' '), words };
  }

  /** Frees the model once no call is running (a broken context is left to the process's end). */
  async close(): Promise<void> {
    await this.queue;
    if (!this.broken) this.ctx.free();
  }
}

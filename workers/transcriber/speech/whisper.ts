// Whisper through whisper.cpp's prebuilt Node binding (@fugood/node-whisper-<platform>), which keeps
// the model loaded in the process. Models are never downloaded at run time: ggml-<size>.bin must be
// in MODELS_DIR (`npm run models:fetch -- <size>` where the internet is reachable, or the image build).
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EngineError, type EngineOptions, type Recognition, type SpeechEngine } from './engine.js';

interface NativeWhisper {
  WhisperContext: new (opts: { filePath: string; useGpu?: boolean }) => NativeContext;
}
interface NativeContext {
  transcribeData(audio: ArrayBuffer, opts: { language?: string; maxThreads?: number }): {
    promise: Promise<{ result: string; segments: { text: string; t0: number; t1: number }[] }>;
  };
  release(): Promise<void>;
}

export const bindingPackage = `@fugood/node-whisper-${process.platform}-${process.arch}`;

/** Loads the native binding; an EngineError saying what is missing when it cannot. */
export function loadBinding(): NativeWhisper {
  try {
    return createRequire(import.meta.url)(bindingPackage) as NativeWhisper;
  } catch (err) {
    throw new EngineError(`the whisper.cpp binding ${bindingPackage} could not be loaded (${(err as Error).message.split('\n')[0]})`);
  }
}

/** MODELS_DIR, or models/ at the top of the installation. */
export const modelsDir = () => process.env.MODELS_DIR || fileURLToPath(new URL('../../../../models', import.meta.url));

export const modelPath = (opts: Pick<EngineOptions, 'modelsDir' | 'modelSize'>) => join(opts.modelsDir, `ggml-${opts.modelSize}.bin`);

export class WhisperEngine implements SpeechEngine {
  readonly name = 'whisper.cpp';

  private constructor(private readonly ctx: NativeContext, private readonly opts: EngineOptions) {}

  static async load(opts: EngineOptions): Promise<WhisperEngine> {
    const file = modelPath(opts);
    if (!existsSync(file)) {
      throw new EngineError(`whisper.cpp model ${file} not found: put ggml-${opts.modelSize}.bin in MODELS_DIR (npm run models:fetch -- ${opts.modelSize} where the internet is reachable)`);
    }
    const { WhisperContext } = loadBinding();
    try {
      return new WhisperEngine(new WhisperContext({ filePath: file, useGpu: false }), opts);
    } catch (err) {
      throw new EngineError(`whisper.cpp could not load ${file}: ${(err as Error).message}`);
    }
  }

  async recognize(pcm: Int16Array): Promise<Recognition> {
    const audio = new Float32Array(pcm.length);
    for (let i = 0; i < pcm.length; i++) audio[i] = pcm[i]! / 32768;
    const { segments } = await this.ctx.transcribeData(audio.buffer, { language: this.opts.language, maxThreads: this.opts.threads }).promise;
    // Segment times are in 10 ms units (whisper.cpp's t0/t1). Whisper gives no word times without
    // token timestamps; words are spread evenly over their segment, enough for cues and captions.
    const words = segments.flatMap((s) => {
      const parts = s.text.trim().split(/\s+/).filter(Boolean);
      const span = Math.max(0, s.t1 - s.t0) / 100 / Math.max(1, parts.length);
      return parts.map((word, i) => ({ word, start: s.t0 / 100 + i * span, end: s.t0 / 100 + (i + 1) * span }));
    });
    return { text: words.map((w) => w.word).join(' '), words };
  }

  close(): Promise<void> {
    return this.ctx.release();
  }
}

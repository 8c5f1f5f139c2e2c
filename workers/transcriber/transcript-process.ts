// The call's transcript recognised in a process of its own at nice 19: the job's process, which
// listens, writes each speaker's audio and sends live captions, takes the cores first, and the
// transcript has what they leave (Linux's nice is per thread, so whisper.cpp's threads inside the
// job's process could not be lowered apart from the captions'). Both processes run the job
// program; this one with TRANSCRIPT_ARG, reading the speakers' files from the job's directory.
//
// The job program asks it to finish at the stop. If it dies during the call (killed, out of
// memory), the call goes on and the job program recognises the rest itself after the stop, from
// what recognised.jsonl holds: the transcript loses nothing.
import { type ChildProcess, spawn } from 'node:child_process';
import { orphanProof } from '../shared/ffmpeg.js';
import { CallTranscript, type FinishedTranscript } from './call-transcript.js';
import { EngineError, type SpeechEngine } from './speech/engine.js';
import type { Silero } from './speech/silero.js';

/** The argument that runs the job program as the transcript's process. */
export const TRANSCRIPT_ARG = '--transcript';

/** Below the listener and the captions: the recorder composes during the call at the same. */
const NICE = 19;

/** The job program's engines and VAD for the transcript, loaded in whichever process recognises. */
export interface Recognisers {
  engines: SpeechEngine[];
  silero?: Silero;
}

/** What the transcript's process tells the job program. */
type Report =
  | { ready: true }
  /** its engines did not load, or one failed during the call: the job fails with this */
  | { failed: string }
  | { finished: FinishedTranscript };
/** What the job program asks of it. */
type Request = { finish: true };

/** How the process ended: what it reported last, or that it is gone. */
type End = Exclude<Report, { ready: true }> | { gone: string };

export class TranscriptProcess {
  private readonly child: ChildProcess;
  private readonly ready: Promise<Report | { gone: string }>;
  private readonly end: Promise<End>;
  private fail: (why: string) => void = () => undefined;
  /** Resolves with why, if recognition failed during the call (finish() then throws it). */
  readonly failed = new Promise<string>((r) => {
    this.fail = r;
  });

  /**
   * Starts the process and waits for its recognisers to load; an EngineError with the reason
   * when they do not. `load` serves finish() if the process dies during the call.
   */
  static async start(
    dir: string,
    load: () => Promise<Recognisers>,
    log: (message: string) => void,
  ): Promise<TranscriptProcess> {
    const p = new TranscriptProcess(dir, load, log);
    const r = await p.ready;
    if ('failed' in r) throw new EngineError(r.failed);
    if ('gone' in r) throw new EngineError(`the transcript's process ${r.gone}`);
    return p;
  }

  private constructor(
    private readonly dir: string,
    private readonly load: () => Promise<Recognisers>,
    log: (message: string) => void,
  ) {
    // nice execs the program: every thread it starts, whisper.cpp's included, has the priority
    const [command, args] = orphanProof(process.execPath, [...process.execArgv, process.argv[1]!, TRANSCRIPT_ARG]);
    this.child = spawn('nice', ['-n', String(NICE), command, ...args], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'json',
    });
    let ready: (r: Report | { gone: string }) => void = () => undefined;
    let end: (r: End) => void = () => undefined;
    this.ready = new Promise((r) => (ready = r));
    this.end = new Promise((r) => (end = r));
    let ended = false;
    this.child.on('message', (r: Report) => {
      ready(r);
      if ('ready' in r) return;
      ended = true;
      end(r);
      if ('failed' in r) this.fail(r.failed);
    });
    const gone = (why: string) => {
      ready({ gone: why });
      if (!ended) log(`the transcript's process ${why}; what it did not recognise is recognised after the stop`);
      ended = true;
      end({ gone: why });
    };
    this.child.on('exit', (code, signal) => gone(signal ? `was killed (${signal})` : `exited with ${code}`));
    this.child.on('error', (err) => gone(`could not be started (${err.message})`));
  }

  /** The whole transcript, once the process has recognised the rest (or this one, if it died). */
  async finish(): Promise<FinishedTranscript> {
    if (this.child.connected) this.child.send({ finish: true } satisfies Request);
    const r = await this.end;
    if ('finished' in r) return r.finished;
    if ('failed' in r) throw new Error(r.failed);
    const { engines, silero } = await this.load();
    try {
      return await new CallTranscript(engines, this.dir, silero).finish();
    } finally {
      await Promise.all([...engines.map((e) => e.close()), silero?.close()]);
    }
  }
}

/**
 * The transcript's process: loads the recognisers, recognises the call in rounds, and at the job
 * program's request finishes and hands over the transcript. It ends with the job program
 * (setpriv's parent-death signal, where setpriv is; the channel closing, elsewhere).
 */
export async function serveTranscript(dir: string, load: () => Promise<Recognisers>): Promise<void> {
  const send = (r: Report) => new Promise<void>((resolve) => process.send!(r, () => resolve()));
  process.on('disconnect', () => process.exit(1));
  let recognisers: Recognisers;
  try {
    recognisers = await load();
  } catch (err) {
    return send({ failed: (err as Error).message });
  }
  const transcript = new CallTranscript(recognisers.engines, dir, recognisers.silero);
  const asked = new Promise<void>((resolve) => process.once('message', (_: Request) => resolve()));
  transcript.start();
  await send({ ready: true });
  const failed = await Promise.race([asked.then(() => undefined), transcript.failed]);
  if (failed) return send({ failed });
  await transcript.finish().then(
    (finished) => send({ finished }),
    (err: Error) => send({ failed: `recognition failed: ${err.message}` }),
  );
}

// The call's transcript recognised during the call in a process of its own at nice 19: the job's
// process, which listens, writes each speaker's audio and sends live captions, takes the cores
// first, and the transcript has what they leave (Linux's nice is per thread, so whisper.cpp's
// threads inside the job's process could not be lowered apart from the captions'). It loads its
// engines at full priority, since the job joins the call once they have loaded, and then lowers
// itself and its engines' helper processes. Both processes run the job program; this one with
// TRANSCRIPT_ARG, reading the speakers' files from the job's directory and appending what it
// recognises to recognised.jsonl.
//
// At the stop the job program ends it and recognises the rest itself, from what recognised.jsonl
// holds, at full priority: an unprivileged process cannot take back a priority it gave up, and at
// nice 19 on a busy host (other jobs) the last seconds would wait behind everything else, up to
// the stop grace. A round it was running is done again, no more than a round's audio. If it dies
// during the call (killed, out of memory) or one of its engines fails (a helper killed), it is
// started again with fresh engines, a few times at most, and goes on from what recognised.jsonl
// holds; after the last, or if its engines do not load again, the stop recognises what is left
// (and an engine that fails there too fails the job, with where the audio is).
import { type ChildProcess, spawn } from 'node:child_process';
import { orphanProof } from '../shared/ffmpeg.js';
import { lowerPriority } from '../shared/priority.js';
import { CallTranscript, type FinishedTranscript } from './call-transcript.js';
import { EngineError, type SpeechEngine } from './speech/engine.js';
import type { Silero } from './speech/silero.js';

/** The argument that runs the job program as the transcript's process. */
export const TRANSCRIPT_ARG = '--transcript';

/** The job program's engines and VAD for the transcript, loaded in whichever process recognises. */
export interface Recognisers {
  engines: SpeechEngine[];
  silero?: Silero;
}

/** What the transcript's process tells the job program. */
type Report =
  | { ready: true }
  /** its engines did not load (the job fails with this at its start), or one failed during the call */
  | { failed: string };

/** How many times the process is started again after dying during the call. */
const RESTARTS = 3;
/** The wait before it is: a process killed for want of memory is not started into the same want at once. */
const RESTART_DELAY_MS = 5_000;

export class TranscriptProcess {
  private child!: ChildProcess;
  /** resolves when the current process has exited */
  private exited!: Promise<void>;
  private restarts = 0;
  /** the first process loaded, and the call is on: from here a death is survived */
  private serving = false;
  private restartTimer: NodeJS.Timeout | undefined;
  private stopping = false;

  /**
   * Starts the process and waits for its recognisers to load; an EngineError with the reason
   * when they do not. `load` loads them again in this process for finish().
   */
  static async start(
    dir: string,
    load: () => Promise<Recognisers>,
    log: (message: string) => void,
  ): Promise<TranscriptProcess> {
    const p = new TranscriptProcess(dir, load, log);
    const r = await new Promise<Report | { gone: string }>((ready) => p.spawn(ready));
    if ('failed' in r) throw new EngineError(r.failed);
    if ('gone' in r) throw new EngineError(`the transcript's process ${r.gone}`);
    p.serving = true;
    return p;
  }

  private constructor(
    private readonly dir: string,
    private readonly load: () => Promise<Recognisers>,
    private readonly log: (message: string) => void,
  ) {}

  /** Starts a process; `ready` is told whether it loaded its recognisers, or how it ended first. */
  private spawn(ready: (r: Report | { gone: string }) => void): void {
    let exited: () => void = () => undefined;
    this.exited = new Promise((r) => (exited = r));
    /** it reported ready */
    let loaded = false;
    /** started again, its engines did not load: not started again */
    let unloaded = false;
    /** why an engine failed after it loaded, the reason it is killed */
    let failed: string | undefined;
    let ended = false;
    const gone = (how: string) => {
      if (ended) return; // 'error' may come with 'exit'
      ended = true;
      ready({ gone: how });
      exited();
      if (this.serving && !unloaded && !this.stopping) this.died(failed === undefined ? how : `failed (${failed})`);
    };
    const [command, args] = orphanProof(process.execPath, [...process.execArgv, process.argv[1]!, TRANSCRIPT_ARG]);
    let child: ChildProcess;
    try {
      child = spawn(command, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'json' });
    } catch (err) {
      // what spawn does not report as 'error' it throws (ENOMEM among them)
      return gone(`could not be started (${(err as Error).message})`);
    }
    this.child = child;
    child.on('message', (r: Report) => {
      ready(r); // at the start: whether the job can begin
      if ('ready' in r) loaded = true;
      else if (this.serving) {
        // else the first did not load, and start() fails the job with why
        if (loaded)
          failed = r.failed; // a helper died or an engine broke: a death, fresh engines next
        else {
          // started again, its engines did not load (what ended the last may be at it still)
          unloaded = true;
          this.log(
            `the transcript's process could not load its engines again (${r.failed}); what it did not recognise is recognised after the stop`,
          );
        }
        child.kill('SIGKILL');
      }
    });
    child.on('exit', (code, signal) => gone(signal ? `was killed (${signal})` : `exited with ${code}`));
    child.on('error', (err) => gone(`could not be started (${err.message})`));
  }

  /** The process died during the call: it is started again, unless it has been too often. */
  private died(why: string): void {
    if (this.restarts === RESTARTS) {
      this.log(`the transcript's process ${why}; what it did not recognise is recognised after the stop`);
      return;
    }
    this.restarts++;
    this.log(`the transcript's process ${why}; it is started again (${this.restarts} of ${RESTARTS} times)`);
    this.restartTimer = setTimeout(() => {
      if (!this.stopping) this.spawn(() => undefined);
    }, RESTART_DELAY_MS);
  }

  /** Ends the process and recognises the rest of the call in this one; the whole transcript. */
  async finish(): Promise<FinishedTranscript> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    this.child.kill('SIGKILL');
    await this.exited;
    const { engines, silero } = await this.load();
    try {
      return await new CallTranscript(engines, this.dir, silero).finish();
    } finally {
      await Promise.all([...engines.map((e) => e.close()), silero?.close()]);
    }
  }
}

/**
 * The transcript's process: loads the recognisers and recognises the call in rounds until the job
 * program ends it, or reports why it cannot. It ends with the job program too (setpriv's
 * parent-death signal, where setpriv is; the channel closing, elsewhere).
 */
export async function serveTranscript(dir: string, load: () => Promise<Recognisers>): Promise<void> {
  const send = (r: Report) => new Promise<void>((resolve) => process.send!(r, () => resolve()));
  // the job program may have died while this one started or loaded (without setpriv's signal)
  const orphaned = () => !process.connected && process.exit(1);
  process.on('disconnect', orphaned);
  orphaned();
  let recognisers: Recognisers;
  try {
    recognisers = await load();
  } catch (err) {
    return send({ failed: (err as Error).message });
  }
  orphaned();
  lowerPriority();
  const transcript = new CallTranscript(recognisers.engines, dir, recognisers.silero);
  transcript.start();
  await send({ ready: true });
  await send({ failed: await transcript.failed });
}

// The transcriber job program against the real SFU and the Mattermost stand-in, with real recorded
// speech sent as Opus by headless participants: a captioning job captions a speaker and stops
// when everyone has left; the transcript is recognised in its own process at nice 19, and the job
// recognises the rest if that process dies; an engine failing mid-call is replaced with the
// process, and one that cannot load at the stop fails the job saying where the audio is; a
// transcriber killed mid-call is recovered by the worker's `--recover` run into a partial
// transcript that is kept; a finished recording (MEDIA_URL, file or HTTP) is transcribed; bad
// inputs and a missing Whisper model fail at start, naming what is wrong.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { availableParallelism, getPriority, tmpdir } from 'node:os';
import { basename, dirname, extname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { HeadlessParticipant } from '../src/sfu/client/participant.js';
import { mintToken } from '../src/sfu/token.js';
import { MattermostStandIn, type StandInOptions } from './mattermost-standin.js';
import { opusSource, pausedClockVoice } from './media.js';
import { children, waitFor } from './helpers.js';
import { statFields } from '../workers/shared/proc-stat.js';
import { defaultModelDir } from '../workers/transcriber/speech/pocketsphinx.js';
import { JobProgramHarness } from './job-program.js';
import { librivox, speechTrack, wordErrorRate, writeWav } from './speech.js';

const TRANSCRIBER = fileURLToPath(new URL('../workers/transcriber/main.js', import.meta.url));
const id = () => randomBytes(13).toString('hex');
const cmdline = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');

describe('transcriber job program', () => {
  const h = new JobProgramHarness(TRANSCRIBER, [47300, 47500]);
  const dir = mkdtempSync(join(tmpdir(), 'co-transcriber-'));
  const corpus = librivox();
  const wav = writeWav(join(dir, 'speech.wav'), speechTrack(corpus.slice(0, 2), 1, 2));

  before(() => h.start());
  after(async () => {
    await h.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Joins the bundled SFU, or the Mattermost stand-in `mm` where the call is held there. */
  const join_ = async (call: string, user: string, name: string, mm?: MattermostStandIn) => {
    const p = new HeadlessParticipant({
      siteUrl: mm?.url ?? h.sfuUrl,
      callId: call,
      subscribe: 'none',
      token:
        mm?.userToken(call, user, name) ?? mintToken(h.secret, { call, user, name, role: 'participant', ttlSec: 60 }),
    });
    const me = await p.join();
    return { p, me };
  };
  /** Someone whose microphone reads the first two utterances (11 s with pauses). */
  const speaker = async (call: string, user: string, name: string, mm?: MattermostStandIn) => {
    const { p, me } = await join_(call, user, name, mm);
    const mic = (await p.publish('mic')).mic;
    const source = await opusSource((rtp) => mic.writeRtp(rtp), 13.5, wav);
    h.sources.push(source);
    return { p, me, done: once(source, 'exit') };
  };

  const start = (env: Record<string, string>, args: string[] = []) => h.run(env, args);
  /** What Alice said in a WebVTT transcript the job kept. */
  const aliceIn = (file: string, env: { ARTIFACTS_DIR: string }) => {
    const cues = readFileSync(join(env.ARTIFACTS_DIR, file), 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('<v Alice>'));
    assert.ok(cues.length > 0, `Alice is in ${file}`);
    return cues.map((l) => l.slice(9)).join(' ');
  };
  const jobEnv = (call: string, name: string, extra: Record<string, string>) => ({
    CALL_ID: call,
    JOB_ID: id(),
    JOB_DIR: join(dir, name),
    ARTIFACTS_DIR: join(dir, `${name}-artifacts`),
    TRANSCRIBE_API: 'pocketsphinx',
    SFU_URL: h.sfuUrl,
    SFU_TOKEN: mintToken(h.secret, {
      call,
      user: 'calls-transcriber-bot',
      name: 'Transcriber',
      role: 'bot',
      ttlSec: 60,
    }),
    ...extra,
  });

  /** A transcription of a call held on the Mattermost stand-in, as the plugin starts one. */
  const onMattermost = async (name: string, options: Partial<StandInOptions> = {}) => {
    const call = id();
    const token = id();
    const mm = new MattermostStandIn({ authToken: token, ...options });
    await mm.start();
    const transcriptionId = id();
    mm.addJob(transcriptionId, call);
    const env = jobEnv(call, name, {
      SITE_URL: mm.url,
      POST_ID: id(),
      TRANSCRIPTION_ID: transcriptionId,
      AUTH_TOKEN: token,
    });
    return { call, token, mm, env };
  };

  it('captioning job: captions what a speaker says into the call and stops when everyone has left', async () => {
    const call = id();
    const env = jobEnv(call, 'captions', { JOB_TYPE: 'captioning' });
    const job = start(env);
    await waitFor('captioner listening', () => job.output().includes('listening to call'), 20_000);
    const listener = await join_(call, 'listener', 'Listener');
    const captions: { sessionId: string; userId: string; text: string }[] = [];
    listener.p.on('caption', (c) => captions.push(c));
    const alice = await speaker(call, 'alice', 'Alice');
    await alice.done;
    await waitFor('captions', () => captions.length >= 2, 10_000);
    alice.p.leave();
    listener.p.leave();
    const [code] = await job.exited;
    assert.equal(code, 0, job.output());
    assert.match(job.output(), /everyone left the call/);
    assert.ok(
      captions.every((c) => c.sessionId === alice.me.sessionId && c.userId === 'alice'),
      JSON.stringify(captions),
    );
    const wer = wordErrorRate(`${corpus[0]!.text} ${corpus[1]!.text}`, captions.map((c) => c.text).join(' '));
    assert.ok(wer < 0.6, `caption WER ${wer.toFixed(2)}: ${JSON.stringify(captions)}`);
    const output = JSON.parse(readFileSync(join(env.JOB_DIR, 'output.json'), 'utf8'));
    assert.equal(output.captions.sent, captions.length);
    assert.equal(output.captions.dropped, 0);
    assert.equal(output.files, undefined, 'a captioning job makes no transcript');
    // nor keeps the voices' audio, which nothing would read (115 MB a speaker-hour)
    assert.ok(!existsSync(join(env.JOB_DIR, 'tracks')) && !existsSync(join(env.JOB_DIR, 'tracks.jsonl')));
    // and its recovery, after a crash, has nothing to recover
    const recovery = start(env, ['--recover']);
    assert.equal((await recovery.exited)[0], 0, recovery.output());
    assert.match(recovery.output(), /live captions alone keep nothing to recover/);
    assert.ok(!existsSync(env.ARTIFACTS_DIR), 'no empty transcript kept');
  });

  it("keeps a mute the voice's clock left out (Firefox's resumes where it stopped): the voice after it in its place", async () => {
    const call = id();
    const env = jobEnv(call, 'paused-clock', {});
    const job = start(env);
    await waitFor('transcriber listening', () => job.output().includes('listening to call'), 20_000);
    const fox = await join_(call, 'fox', 'Fox');
    const { mic } = await fox.p.publish('mic');
    const pause = await pausedClockVoice((rtp) => mic.writeRtp(rtp), 2, 4);
    fox.p.leave();
    assert.equal((await job.exited)[0], 0, job.output());
    const voice = JSON.parse(readFileSync(join(env.JOB_DIR, 'tracks.jsonl'), 'utf8').split('\n')[0]!);
    const pcm = readFileSync(join(env.JOB_DIR, voice.file));
    // the longest silence in the voice (16 kHz samples): the pause as sent, give or take what the
    // job's reads add (before: 4 ms)
    let longest = 0;
    for (let i = 0, run = 0; i < pcm.length; i += 2) {
      run = Math.abs(pcm.readInt16LE(i)) < 50 ? run + 1 : 0;
      longest = Math.max(longest, run);
    }
    const silence = longest / 16_000;
    assert.ok(
      Math.abs(silence - pause) < 0.5,
      `the longest silence ${silence.toFixed(3)} s, sent ${pause.toFixed(3)} s`,
    );
  });

  it("a voice's file the disk refuses stops the job with the reason, which then ends: no wait for a close that came already", async () => {
    const call = id();
    const env = jobEnv(call, 'refused', {});
    const job = start(env);
    await waitFor('transcriber listening', () => job.output().includes('listening to call'), 20_000);
    const alice = await join_(call, 'alice', 'Alice');
    try {
      // where her voice's file goes, a directory: its open fails (EISDIR) and the stream closes
      mkdirSync(join(env.JOB_DIR, 'tracks', `001-${alice.me.sessionId}.pcm`), { recursive: true });
      const mic = (await alice.p.publish('mic')).mic;
      h.sources.push(await opusSource((rtp) => mic.writeRtp(rtp), 3, 'sine=frequency=440'));
      const [code] = await Promise.race([
        job.exited,
        new Promise<never>((_, reject) =>
          setTimeout(() => reject(new Error(`still running: ${job.output()}`)), 60_000).unref(),
        ),
      ]);
      assert.match(job.output(), /tracks\/001-.*\.pcm could not be written \(EISDIR\); stopping with what is on disk/);
      assert.notEqual(code, null, 'it ended by itself');
    } finally {
      if (job.child.exitCode === null) job.child.kill('SIGKILL');
      alice.p.leave();
    }
  });

  it('recognises the call in a process at nice 19 below the captions, started again if it dies; after the last, the job recognises the rest', async () => {
    const call = id();
    const env = jobEnv(call, 'niced', { JOB_TYPE: 'transcribing', LIVE_CAPTIONS_ON: 'true' });
    const job = start(env);
    let alice: Awaited<ReturnType<typeof speaker>> | undefined;
    try {
      await waitFor('transcriber listening', () => job.output().includes('listening to call'), 20_000);
      /** the transcript's process, once there is one other than those given */
      const transcriptProcess = (...not: number[]) =>
        children(job.child.pid!).find((pid) => cmdline(pid).includes('--transcript') && !not.includes(pid));
      const transcript = transcriptProcess();
      assert.ok(transcript, 'the transcript has its own process');
      // what its libraries leave in the temporary directory (onnxruntime's log, which a killed
      // process cannot remove) goes to the job's directory, swept with the job
      const environ = readFileSync(`/proc/${transcript}/environ`, 'utf8').split('\0');
      assert.ok(environ.includes(`TMPDIR=${env.JOB_DIR}`), 'TMPDIR is the job directory');
      /** the nice value (stat's 19th field) of every thread of `pid` (that has not ended meanwhile) */
      const threadNices = (pid: number) =>
        readdirSync(`/proc/${pid}/task`).flatMap((t) => {
          try {
            return [Number(statFields(pid, Number(t))[16])];
          } catch {
            return [];
          }
        });
      /** ... and of the processes below it */
      const nices = (pid: number): number[] => {
        let below: number[] = [];
        try {
          below = children(pid);
        } catch {
          // a thread (or the process) ended while its children were read
        }
        return [...threadNices(pid), ...below.flatMap(nices)];
      };
      // the captions' engines, the listener and the job's own threads keep the priority they were given
      const own = threadNices(job.child.pid!);
      const captionEngines = children(job.child.pid!).filter((pid) => !cmdline(pid).includes('--transcript'));
      assert.ok(captionEngines.length > 0, 'the captions have their engine beside the job');
      assert.ok(getPriority() < 19, 'the tests run above nice 19, so that the transcript can be below them');
      assert.deepEqual(new Set([...own, ...captionEngines.flatMap(nices)]), new Set([getPriority()]));
      const low = nices(transcript);
      assert.ok(low.length > 1 && children(transcript).length > 0, 'the transcript has its threads and its engine');
      assert.deepEqual(new Set(low), new Set([19]));

      alice = await speaker(call, 'alice', 'Alice');
      // once a round has recognised something, the transcript's process dies mid-call
      const recognised = join(env.JOB_DIR, 'recognised.jsonl');
      // at nice 19 beside whatever else the machine runs: a round may wait long
      await waitFor('a round', () => existsSync(recognised) && readFileSync(recognised, 'utf8').length > 0, 300_000);
      process.kill(transcript, 'SIGKILL');
      // It is started again, goes on from what recognised.jsonl holds, and is lowered once loaded.
      // Killed three times more, it is not started again.
      const killed = [transcript];
      for (let restart = 1; restart <= 3; restart++) {
        await waitFor(
          `restart ${restart}`,
          () => job.output().includes(`started again (${restart} of 3 times)`),
          60_000,
        );
        const again = await waitFor(`process ${restart + 1}`, () => transcriptProcess(...killed), 60_000);
        if (restart === 1) {
          await waitFor('the process to load and lower itself', () => !nices(again).some((n) => n !== 19), 120_000);
          assert.ok(children(again).length > 0, 'it has its engine');
        }
        process.kill(again, 'SIGKILL');
        killed.push(again);
      }
      // the job sees the last gone during the call (on a loaded machine, only after a moment)
      await waitFor(
        'the job to see the last process gone',
        () => job.output().includes('recognised after the stop'),
        60_000,
      );
      await alice.done;
      alice.p.leave();
      const [code] = await job.exited;
      assert.equal(code, 0, job.output());
      assert.match(
        job.output(),
        /the transcript's process was killed \(SIGKILL\); what it did not recognise is recognised after the stop/,
      );
      const during = /after the stop \(([\d.]+) s during the call\)/.exec(job.output());
      assert.ok(Number(during?.[1]) > 0, 'what the process recognised is kept');
      // what onnxruntime left for the killed process is in the job's directory (its telemetry
      // writes nothing where the environment has CI: TMPDIR above is what holds there)
      const debugLog = `mat-debug-${transcript}.log`; // the first process's: killed once loaded
      if (!process.env.CI) {
        assert.ok(!existsSync(join(tmpdir(), debugLog)), debugLog);
        assert.ok(existsSync(join(env.JOB_DIR, debugLog)), debugLog);
      }
      const heard = aliceIn(readdirSync(env.ARTIFACTS_DIR).find((f) => f.endsWith('.vtt'))!, env);
      assert.ok(wordErrorRate(`${corpus[0]!.text} ${corpus[1]!.text}`, heard) < 0.5, heard);
    } finally {
      job.child.kill('SIGKILL');
      alice?.p.leave();
    }
  });

  it('an engine that fails during the call is replaced in a new process; if none can load, the stop fails saying where the audio is and keeps what was recognised', async () => {
    const call = id();
    // the model the engines load, as links the test can take away
    const models = join(dir, 'pocketsphinx-model');
    mkdirSync(models);
    for (const f of readdirSync(defaultModelDir)) symlinkSync(join(defaultModelDir, f), join(models, f));
    const env = jobEnv(call, 'engine-dies', { JOB_TYPE: 'transcribing', POCKETSPHINX_MODEL_DIR: models });
    const job = start(env);
    let alice: Awaited<ReturnType<typeof speaker>> | undefined;
    try {
      await waitFor('transcriber listening', () => job.output().includes('listening to call'), 20_000);
      const transcriptProcess = (...not: number[]) =>
        children(job.child.pid!).find((pid) => cmdline(pid).includes('--transcript') && !not.includes(pid));
      const first = transcriptProcess()!;
      alice = await speaker(call, 'alice', 'Alice');
      for (const helper of children(first)) process.kill(helper, 'SIGKILL'); // pocketsphinx's helper
      const failedAgain = (n: number) =>
        new RegExp(
          `the transcript's process failed \\(recognition failed: .*pocketsphinx.*\\); it is started again \\(${n} of 3 times\\)`,
        );
      // the next round finds it, and a new process with fresh engines goes on from what was recognised
      await waitFor('the engine failure', () => failedAgain(1).test(job.output()), 120_000);
      const recognised = join(env.JOB_DIR, 'recognised.jsonl');
      const size = () => (existsSync(recognised) ? statSync(recognised).size : 0);
      const before = size();
      const second = await waitFor('a new process', () => transcriptProcess(first), 60_000);
      await waitFor('the new process to recognise', () => size() > before, 300_000);
      // The model is gone and that process dies: the next cannot load, and the call goes on
      rmSync(models, { recursive: true });
      process.kill(second, 'SIGKILL');
      await waitFor(
        'the third process not to load',
        () =>
          /could not load its engines again \(.*model file .* is missing.*\); what it did not recognise is recognised after the stop/.test(
            job.output(),
          ),
        120_000,
      );
      await alice.done;
      alice.p.leave();
      // the stop cannot load them either: the job fails saying why and where the audio is
      const [code] = await job.exited;
      assert.equal(code, 1, job.output());
      assert.match(
        job.output(),
        new RegExp(
          `transcription failed \\(what was captured is kept in ${env.JOB_DIR}\\): .*model file .* is missing`,
        ),
      );
      assert.ok(readdirSync(join(env.JOB_DIR, 'tracks')).length > 0, "Alice's audio is kept");
      assert.ok(size() > 0, 'what the processes recognised is kept');
      // and kept as a partial transcript, which the failure and output_data name
      const output = JSON.parse(readFileSync(join(env.JOB_DIR, 'output.json'), 'utf8'));
      assert.equal(output.partial, true);
      assert.match(job.output(), new RegExp(`what was recognised before it is kept at ${output.files[0]} and `));
      assert.match(aliceIn(basename(output.files[0]), env), /\w/);
    } finally {
      job.child.kill('SIGKILL');
      alice?.p.leave();
    }
  });

  it("counts the transcript's times from the call's recording's start (its call_job_state), as upstream, so it plays over the recording", async () => {
    const { call, token, mm, env } = await onMattermost('clock');
    const recordingId = id();
    mm.addJob(recordingId, call);
    const job = start(env);
    try {
      await waitFor('transcriber listening', () => job.output().includes('listening to call'), 20_000);
      // the recording reports `started` 4 s later, as its recorder would
      await new Promise((r) => setTimeout(r, 4000));
      const started = await fetch(
        `${mm.url}/plugins/com.mattermost.calls/bot/calls/${call}/jobs/${recordingId}/status`,
        {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ JobType: 'recording', Status: 'started' }),
        },
      );
      assert.equal(started.status, 200);
      const recordingAt = mm.statuses.find((s) => s.jobId === recordingId)!.at;
      await waitFor(
        'the recording start heard',
        () => /the call's recording started \d+ ms after our join/.test(job.output()),
        10_000,
      );
      const joining = Date.now();
      const alice = await speaker(call, 'alice', 'Alice', mm);
      const speaking = Date.now(); // her microphone's source has started: the speech comes from about here
      await alice.done;
      alice.p.leave();
      const [code] = await job.exited;
      assert.equal(code, 0, job.output());
      const vtt = mm
        .file(
          (mm.transcriptions[0]!.body as { Transcriptions: { FileIDs: string[] }[] }).Transcriptions[0]!.FileIDs[0]!,
        )!
        .toString();
      const [, h, m, sec] = /^(\d\d):(\d\d):(\d\d\.\d\d\d) --> /m.exec(vtt)!;
      const firstCue = Number(h) * 3600 + Number(m) * 60 + Number(sec);
      const [from, to] = [joining, speaking].map((t) => (t - recordingAt) / 1000) as [number, number];
      // on the job's own clock it came 4 s and more later
      assert.ok(
        firstCue >= from - 0.5 && firstCue <= to + 1.5,
        `first cue at ${firstCue} s; the speech began between ${from.toFixed(2)} and ${to.toFixed(2)} s of the recording`,
      );
    } finally {
      if (job.child.exitCode === null) job.child.kill('SIGKILL');
      await mm.close();
    }
  });

  it('a transcript Mattermost refuses (over its MaxFileSize) is kept in the artifacts directory, named in output_data and in the failure', async () => {
    const { mm, env } = await onMattermost('refused-upload', { maxFileSize: 4 });
    const job = start(env);
    try {
      await waitFor('transcriber listening', () => job.output().includes('listening to call'), 20_000);
      job.child.kill('SIGTERM');
      const [code] = await job.exited;
      assert.equal(code, 1, job.output());
      assert.ok(existsSync(join(env.JOB_DIR, 'output.json')), job.output());
      const { files } = JSON.parse(readFileSync(join(env.JOB_DIR, 'output.json'), 'utf8'));
      assert.deepEqual(
        files.map((f: string) => [dirname(f), extname(f), readFileSync(f, 'utf8').slice(0, 6)]),
        [
          [env.ARTIFACTS_DIR, '.vtt', 'WEBVTT'],
          [env.ARTIFACTS_DIR, '.txt', ''],
        ],
      );
      const failed = mm.statuses.find((s) => s.body.Status === 'failed');
      const reason = String(failed?.body.omitempty);
      assert.ok(
        reason.startsWith(`could not deliver the transcript (kept at ${files.join(' and ')}): `) &&
          reason.includes('413'),
        reason,
      );
    } finally {
      if (job.child.exitCode === null) job.child.kill('SIGKILL');
      await mm.close();
    }
  });

  it('a killed transcriber is recovered into a partial transcript that is kept, and Mattermost is told', async () => {
    const { call, mm, env } = await onMattermost('killed');
    const job = start(env);
    await waitFor('transcriber listening', () => job.output().includes('listening to call'), 20_000);
    const alice = await speaker(call, 'alice', 'Alice', mm);
    await alice.done;
    job.child.kill('SIGKILL'); // no chance to finish anything
    await job.exited;
    alice.p.leave();

    const recovery = start(env, ['--recover']);
    const [code] = await recovery.exited;
    assert.equal(code, 0, recovery.output());
    const kept = readdirSync(env.ARTIFACTS_DIR).sort();
    assert.deepEqual(
      kept.map((f) => f.replace(/-[a-z0-9]+-[a-z0-9]+\./, '.')),
      ['partial-transcript.txt', 'partial-transcript.vtt'],
    );
    const heard = aliceIn(kept[1]!, env);
    assert.ok(wordErrorRate(`${corpus[0]!.text} ${corpus[1]!.text}`, heard) < 0.5, heard);
    const failed = mm.statuses.find((s) => s.body.Status === 'failed');
    assert.match(
      String(failed?.body.omitempty),
      /stopped unexpectedly.*kept on the job service at .*partial-transcript/,
    );
    assert.equal(mm.transcriptions.length, 0, 'a partial transcript is not posted as if complete');

    // A run killed before anything was captured (a stop while the engines loaded, once): nothing
    // to keep, and no empty transcript kept as if something were.
    const early = { ...env, JOB_DIR: join(dir, 'killed-early'), ARTIFACTS_DIR: join(dir, 'killed-early-artifacts') };
    const empty = start(early, ['--recover']);
    assert.equal((await empty.exited)[0], 0, empty.output());
    assert.deepEqual(JSON.parse(readFileSync(join(early.JOB_DIR, 'output.json'), 'utf8')), {
      partial: true,
      segments: 0,
    });
    assert.ok(!existsSync(early.ARTIFACTS_DIR));
    assert.match(
      String(mm.statuses.filter((s) => s.body.Status === 'failed').at(-1)?.body.omitempty),
      /stopped unexpectedly before it had recognised anything/,
    );

    // Killed again, this time while delivering a finished transcript (its Mattermost down past the
    // delivery's time): the recovery keeps those files as they are, not as a partial transcript.
    const finished = { vtt: join(env.JOB_DIR, 'transcript.vtt'), txt: join(env.JOB_DIR, 'transcript.txt') };
    writeFileSync(finished.vtt, 'WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n<v Alice>finished words\n');
    writeFileSync(finished.txt, 'Alice: finished words\n');
    writeFileSync(join(env.JOB_DIR, 'delivering'), JSON.stringify({ file: finished.vtt }));
    rmSync(env.ARTIFACTS_DIR, { recursive: true, force: true });
    const again = start(env, ['--recover']);
    const [code2] = await again.exited;
    assert.equal(code2, 0, again.output());
    assert.match(again.output(), /the transcript was finished before the run ended/);
    const output = JSON.parse(readFileSync(join(env.JOB_DIR, 'output.json'), 'utf8'));
    assert.equal(output.partial, undefined);
    assert.deepEqual(
      output.files.map((f: string) => basename(f).replace(/-[a-z0-9]+-[a-z0-9]+\./, '.')),
      ['transcript.vtt', 'transcript.txt'],
    );
    assert.equal(readFileSync(output.files[0], 'utf8'), readFileSync(finished.vtt, 'utf8'));
    assert.equal(readFileSync(output.files[1], 'utf8'), readFileSync(finished.txt, 'utf8'));
    assert.match(
      String(mm.statuses.filter((s) => s.body.Status === 'failed').at(-1)?.body.omitempty),
      /could not be delivered; it is kept on the job service at .*\/transcript-/,
    );
    await mm.close();
  });

  it('transcribes a finished recording given as MEDIA_URL, from a file or over HTTP, where the admin allows it', async () => {
    const media = join(dir, 'recording.mp4');
    execFileSync('ffmpeg', [
      '-loglevel',
      'error',
      '-y',
      '-f',
      'lavfi',
      '-i',
      'color=c=black:s=320x240:r=5',
      '-i',
      wav,
      '-shortest',
      '-c:v',
      'libx264',
      '-c:a',
      'aac',
      media,
    ]);
    const server = createServer((req, res) =>
      req.url === '/recording.mp4' ? res.end(readFileSync(media)) : res.writeHead(404).end(),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const allow = `${origin},${pathToFileURL(dir).href}/`;
    for (const [name, url] of [
      ['media-file', pathToFileURL(media).href],
      ['media-http', `${origin}/recording.mp4`],
    ] as const) {
      const env = jobEnv('', name, { MEDIA_URL: url, NUM_THREADS: '2', MEDIA_URL_ALLOW: allow });
      delete (env as Record<string, string>).CALL_ID;
      const job = start(env);
      const [code] = await job.exited;
      assert.equal(code, 0, job.output());
      const output = JSON.parse(readFileSync(join(env.JOB_DIR, 'output.json'), 'utf8'));
      assert.equal(output.files.length, 2);
      const vtt = readFileSync(
        output.files.find((f: string) => f.endsWith('.vtt')),
        'utf8',
      );
      const cues = vtt.split('\n').filter((l) => l.startsWith('<v Speaker>'));
      assert.ok(cues.length >= 2, vtt);
      const wer = wordErrorRate(`${corpus[0]!.text} ${corpus[1]!.text}`, cues.map((l) => l.slice(11)).join(' '));
      assert.ok(wer < 0.5, `${name}: WER ${wer.toFixed(2)}\n${vtt}`);
      assert.match(vtt, /^WEBVTT\n\n00:00:0\d\.\d{3} --> /);
    }
    server.close();
  });

  /** A transcription of 200 s of speech (the two utterances 15 times) as MEDIA_URL, its first 30 s recognised. */
  const longMediaJob = async (name: string) => {
    const media = join(dir, `${name}.wav`);
    execFileSync('ffmpeg', ['-loglevel', 'error', '-y', '-stream_loop', '14', '-i', wav, '-c', 'copy', media]);
    const env = jobEnv('', name, {
      MEDIA_URL: pathToFileURL(media).href,
      MEDIA_URL_ALLOW: `${pathToFileURL(dir).href}/`,
    });
    delete (env as Record<string, string>).CALL_ID;
    const job = start(env);
    await waitFor('the first piece recognised', () => /recognised 0 min 30 s of 3 min/.test(job.output()), 120_000);
    return { env, job };
  };

  it('media_url: a stop keeps what was recognised before it as a partial transcript, and says where', async () => {
    const { env, job } = await longMediaJob('media-stopped');
    job.child.kill('SIGTERM');
    const [code] = await job.exited;
    assert.equal(code, 1, job.output());
    const output = JSON.parse(readFileSync(join(env.JOB_DIR, 'output.json'), 'utf8'));
    assert.equal(output.partial, true);
    const vtt = output.files.find((f: string) => f.endsWith('.vtt'));
    assert.match(basename(vtt), /^partial-transcript-media-/);
    assert.match(
      job.output(),
      new RegExp(`stop requested while MEDIA_URL was transcribed; what was recognised before it is kept at ${vtt}`),
    );
    // The pieces recognised before the stop are kept, whole; what was not read is not there.
    const cues = readFileSync(vtt, 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('<v Speaker>'));
    const ends = readFileSync(vtt, 'utf8')
      .match(/--> (\d\d):(\d\d):(\d\d)/g)!
      .map((t) => {
        const [, h, m, sec] = /(\d\d):(\d\d):(\d\d)/.exec(t)!.map(Number);
        return h! * 3600 + m! * 60 + sec!;
      });
    assert.ok(cues.length >= 2, `${cues.length} cues`);
    const last = Math.max(...ends);
    assert.ok(last >= 20 && last < 150, `the transcript ends at ${last} s of 200`);
  });

  it('media_url: a run that dies keeps what it recognised, which its recovery keeps as a partial transcript', async () => {
    const { env, job } = await longMediaJob('media-killed');
    job.child.kill('SIGKILL');
    await job.exited;
    const recovery = start(env, ['--recover']);
    assert.equal((await recovery.exited)[0], 0, recovery.output());
    const output = JSON.parse(readFileSync(join(env.JOB_DIR, 'output.json'), 'utf8'));
    assert.equal(output.partial, true);
    assert.ok(output.segments >= 2, JSON.stringify(output));
    const vtt = output.files.find((f: string) => f.endsWith('.vtt'));
    assert.match(basename(vtt), /^partial-transcript-media-/);
    const cues = readFileSync(vtt, 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('<v Speaker>'))
      .map((l) => l.slice(11));
    const wer = wordErrorRate(`${corpus[0]!.text} ${corpus[1]!.text}`, cues.slice(0, 2).join(' '));
    assert.ok(wer < 0.6, `WER ${wer.toFixed(2)} of the first two cues: ${JSON.stringify(cues)}`);
  });

  it('media_url: a redirect out of the allowed sources, a link out of an allowed directory and a file over the cap are refused', async () => {
    const inside = join(dir, 'allowed');
    mkdirSync(inside, { recursive: true });
    symlinkSync('/etc/hostname', join(inside, 'escape.mp4'));
    const elsewhere = createServer((_req, res) => res.end('secret'));
    await new Promise<void>((r) => elsewhere.listen(0, '127.0.0.1', r));
    const server = createServer((req, res) => {
      if (req.url === '/redirect')
        res.writeHead(302, { location: `http://127.0.0.1:${(elsewhere.address() as AddressInfo).port}/x` }).end();
      else res.end(Buffer.alloc(4096));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const allow = `${origin},${pathToFileURL(inside).href}/`;
    const cases = [
      [`${origin}/redirect`, {}, /media_url is not allowed: http:\/\/127\.0\.0\.1:\d+ is not an allowed source/],
      [pathToFileURL(join(inside, 'escape.mp4')).href, {}, /media_url is not allowed: it links out of its directory/],
      [
        `${origin}/big`,
        { MEDIA_MAX_BYTES: '1000' },
        /media_url could not be fetched: the file is larger than 1000 bytes/,
      ],
    ] as const;
    for (const [i, [url, extra, message]] of cases.entries()) {
      const env = jobEnv('', `refused-${i}`, { MEDIA_URL: url, MEDIA_URL_ALLOW: allow, ...extra });
      delete (env as Record<string, string>).CALL_ID;
      const job = start(env);
      const [code] = await job.exited;
      assert.equal(code, 1, job.output());
      assert.match(job.output(), message);
      assert.doesNotMatch(job.output(), /secret/);
    }
    server.close();
    elsewhere.close();
  });

  it("takes live_captions_language as the captions' alone: pocketsphinx transcribes a call whose captions would be German", async () => {
    // upstream's transcript sets no language (Whisper finds it); only the captions are in this one
    const env = jobEnv(id(), 'german', { LIVE_CAPTIONS_LANGUAGE: 'de' });
    const job = start(env);
    await waitFor('listening, or ended', () => /listening to call|invalid input|\n.*failed/.test(job.output()), 20_000);
    job.child.kill('SIGTERM');
    const [code] = await job.exited;
    assert.equal(code, 0, job.output());
    assert.match(job.output(), /listening to call/);
    assert.equal(JSON.parse(readFileSync(join(env.JOB_DIR, 'output.json'), 'utf8')).segments, 0);
  });

  it('fails at start naming a bad input, or the missing Whisper model, and reports it', async () => {
    const bad = start(jobEnv(id(), 'bad', { TRANSCRIBE_API: 'kaldi' }));
    const [code] = await bad.exited;
    assert.equal(code, 2);
    assert.match(bad.output(), /invalid input: TRANSCRIBE_API must be one of/);

    const threads = start(jobEnv(id(), 'bad2', { NUM_THREADS: 'many' }));
    assert.equal((await threads.exited)[0], 2);
    assert.match(threads.output(), /NUM_THREADS must be a whole number/);
    const cpus = availableParallelism();
    // on a host of one CPU (taskset: Node counts the CPUs it may run on) the default of 2 becomes
    // 1, and 2 asked for is refused
    const inputsOn1Cpu = (extra: Record<string, string>) =>
      execFileSync(
        'taskset',
        [
          ...['-c', '0', process.execPath, '--input-type=module', '-e'],
          `const { transcriberInputs } = await import(${JSON.stringify(new URL('../workers/transcriber/inputs.js', import.meta.url).href)});
           try { console.log(transcriberInputs(process.env).num_threads) } catch (e) { console.log(e.message) }`,
        ],
        { env: { ...process.env, ...jobEnv(id(), 'one-cpu', extra) } },
      )
        .toString()
        .trim();
    assert.equal(inputsOn1Cpu({}), '1');
    assert.match(inputsOn1Cpu({ NUM_THREADS: '2' }), /^NUM_THREADS \(2\) must not exceed the 1 CPUs/);
    const tooMany = start(jobEnv(id(), 'bad2b', { NUM_THREADS: String(cpus + 1) }));
    assert.equal((await tooMany.exited)[0], 2, tooMany.output());
    assert.match(
      tooMany.output(),
      new RegExp(`invalid input: NUM_THREADS \\(${cpus + 1}\\) must not exceed the ${cpus} CPUs`),
    );

    // each within its bound, together more recognisers than the host has CPUs (64 × 64 started
    // 4,096 pocketsphinx processes)
    const many = start(
      jobEnv(id(), 'bad3', {
        JOB_TYPE: 'captioning',
        LIVE_CAPTIONS_NUM_TRANSCRIBERS: '64',
        LIVE_CAPTIONS_NUM_THREADS_PER_TRANSCRIBER: '64',
      }),
    );
    assert.equal((await many.exited)[0], 2, many.output());
    assert.match(
      many.output(),
      new RegExp(
        `invalid input: LIVE_CAPTIONS_NUM_TRANSCRIBERS × LIVE_CAPTIONS_NUM_THREADS_PER_TRANSCRIBER \\(64 × 64\\) must not exceed the ${availableParallelism()} CPUs`,
      ),
    );

    const token = id();
    const mm = new MattermostStandIn({ authToken: token });
    await mm.start();
    const call = id();
    const models = join(dir, 'no-models');
    const whisper = start(
      jobEnv(call, 'whisper', {
        TRANSCRIBE_API: 'whisper.cpp',
        MODEL_SIZE: 'small',
        MODELS_DIR: models,
        SITE_URL: mm.url,
        POST_ID: id(),
        TRANSCRIPTION_ID: id(),
        AUTH_TOKEN: token,
      }),
    );
    assert.equal((await whisper.exited)[0], 1, whisper.output());
    const failed = mm.statuses.find((s) => s.body.Status === 'failed');
    assert.ok(String(failed?.body.omitempty).includes(join(models, 'ggml-small.bin')), JSON.stringify(mm.statuses));
    assert.ok(!mm.statuses.some((s) => s.body.Status === 'started'), 'nothing started');
    await mm.close();
  });
});

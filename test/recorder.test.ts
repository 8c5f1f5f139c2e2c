// The recorder job program against the real SFU and the Mattermost stand-in: one participant
// with a camera (VP8) and a microphone (Opus), a second who joins later with a microphone only;
// SIGTERM as the worker sends on stop; the MP4 that reaches Mattermost is checked with ffprobe.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { HeadlessParticipant } from '../src/sfu/client/participant.js';
import { mintToken } from '../src/sfu/token.js';
import { MattermostStandIn } from './mattermost-standin.js';
import {
  avOffsets,
  flashAndBeep,
  greyFrame,
  h264Source,
  opusSource,
  packetTimes,
  pausedClockVoice,
  vp8Source,
} from './media.js';
import { waitFor } from './helpers.js';
import { JobProgramHarness } from './job-program.js';

const RECORDER = fileURLToPath(new URL('../workers/recorder/main.js', import.meta.url));
const id = () => randomBytes(13).toString('hex');

function probe(file: string) {
  const out = execFileSync('ffprobe', [
    '-v',
    'error',
    '-show_entries',
    'stream=codec_type,codec_name,width,height,r_frame_rate:format=duration,format_name',
    '-of',
    'json',
    file,
  ]);
  return JSON.parse(out.toString()) as {
    streams: { codec_type: string; codec_name: string; width?: number; height?: number; r_frame_rate?: string }[];
    format: { duration: string };
  };
}

describe('recorder job program', () => {
  const h = new JobProgramHarness(RECORDER, [47000, 47200]);
  const dir = mkdtempSync(join(tmpdir(), 'co-recorder-'));

  before(() => h.start());
  after(async () => {
    await h.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Someone in the call whose microphone plays a tone for `seconds`. */
  /** `user` in `call` on the bundled SFU, joined. */
  const joined = async (call: string, user: string, name = user) => {
    const p = new HeadlessParticipant({
      siteUrl: h.sfuUrl,
      callId: call,
      token: mintToken(h.secret, { call, user, name, role: 'participant', ttlSec: 60 }),
    });
    await p.join();
    return p;
  };

  const speaker = async (call: string, user: string, seconds: number, frequency: number) => {
    const p = await joined(call, user);
    const mic = (await p.publish('mic')).mic;
    h.sources.push(await opusSource((rtp) => mic.writeRtp(rtp), seconds, `sine=frequency=${frequency}`));
    return p;
  };

  /** A recorder without a site URL: the file stays in the artifacts directory. */
  const localJob = (call: string, name: string) => {
    const jobDir = join(dir, name);
    const artifacts = join(dir, `${name}-artifacts`);
    const env = {
      CALL_ID: call,
      WIDTH: '1280',
      HEIGHT: '720',
      FRAME_RATE: '10',
      VIDEO_PRESET: 'ultrafast',
      JOB_ID: id(),
      JOB_DIR: jobDir,
      ARTIFACTS_DIR: artifacts,
      SFU_URL: h.sfuUrl,
      SFU_TOKEN: mintToken(h.secret, { call, user: 'calls-recording-bot', name: 'Recording', role: 'bot', ttlSec: 60 }),
    };
    return { env, jobDir, artifacts };
  };

  const start = (env: Record<string, string>, args: string[] = []) => h.run(env, args);

  it('records camera and voices, later joiner included, and posts an H.264/AAC MP4 to the call thread', async () => {
    const call = id();
    const token = id();
    // names come 3 s late: the join, which waits for those of the people in the call, takes that long
    const mm = new MattermostStandIn({ authToken: token, maxRequestBytes: 256 * 1024, profileDelayMs: 3000 });
    await mm.start();
    const jobDir = join(dir, 'job1');
    // with a site URL the call is on that Mattermost server: here the stand-in holds it
    const participant = (user: string, name: string) =>
      new HeadlessParticipant({ siteUrl: mm.url, callId: call, token: mm.userToken(call, user, name) });
    const alice = participant('alice', 'Alice');
    await alice.join();
    const aliceTracks = await alice.publish('mic', 'camera');
    h.sources.push(await opusSource((rtp) => aliceTracks.mic.writeRtp(rtp), 8, 'sine=frequency=440'));
    h.sources.push(await vp8Source((rtp) => aliceTracks.camera.writeRtp(rtp), 8));

    const recordingId = id();
    const postId = id();
    mm.addJob(recordingId, call);
    const rec = start({
      SITE_URL: mm.url,
      CALL_ID: call,
      POST_ID: postId,
      RECORDING_ID: recordingId,
      AUTH_TOKEN: token,
      WIDTH: '1280',
      HEIGHT: '720',
      VIDEO_RATE: '1000',
      AUDIO_RATE: '64',
      FRAME_RATE: '15',
      VIDEO_PRESET: 'ultrafast',
      OUTPUT_FORMAT: 'mp4',
      JOB_ID: id(),
      JOB_DIR: jobDir,
    });
    await waitFor('started reported', () => mm.statuses.some((s) => s.body.Status === 'started'), 15_000);
    const startedAt = Date.now();
    await new Promise((r) => setTimeout(r, 2000));
    const bob = participant('bob', 'Bob');
    await bob.join();
    const bobMic = (await bob.publish('mic')).mic;
    h.sources.push(await opusSource((rtp) => bobMic.writeRtp(rtp), 3, 'sine=frequency=880'));
    await new Promise((r) => setTimeout(r, 3000));

    const stoppedAt = Date.now();
    rec.child.kill('SIGTERM');
    // and another while it composes and uploads, as its worker's death sends (setpriv's pdeathsig)
    setTimeout(() => rec.child.kill('SIGTERM'), 300);
    const [code, signal] = await once(rec.child, 'exit');
    assert.equal(code, 0, `${signal}: ${rec.output()}`);
    alice.leave();
    bob.leave();

    assert.equal(mm.recordings.length, 1, rec.output());
    const post = mm.recordings[0]!;
    assert.equal(post.callId, call);
    assert.equal(post.body.JobID, recordingId);
    assert.equal(post.body.PostID, postId);
    const mp4 = join(dir, 'received.mp4');
    const received = mm.file(post.body.FileIDs[0]!)!;
    writeFileSync(mp4, received);
    // Index first, so a browser plays it while it downloads (the recorder writes it last).
    assert.ok(received.indexOf('moov') < received.indexOf('mdat'), 'the moov box comes before the media');
    const info = probe(mp4);
    const v = info.streams.find((s) => s.codec_type === 'video')!;
    const a = info.streams.find((s) => s.codec_type === 'audio')!;
    assert.equal(v.codec_name, 'h264');
    assert.deepEqual([v.width, v.height, v.r_frame_rate], [1280, 720, '15/1']);
    assert.equal(a.codec_name, 'aac');
    const duration = Number(info.format.duration);
    const recorded = JSON.parse(readFileSync(join(jobDir, 'output.json'), 'utf8')).duration_ms / 1000;
    assert.ok(Math.abs(duration - recorded) < 1, `file ${duration} s, recorded ${recorded} s`);
    // The recording covers the time from the join, as 'started' is reported (the time the plugin
    // tells the transcriber the recording started at), to the stop: not the join's seconds before.
    const reportedAt = mm.statuses.find((s) => s.body.Status === 'started')!.at;
    assert.ok(
      recorded >= (stoppedAt - startedAt) / 1000 - 0.5 && recorded <= (stoppedAt - reportedAt) / 1000 + 1.5,
      `recorded ${recorded} s, ${((stoppedAt - reportedAt) / 1000).toFixed(2)} s from 'started' to the stop`,
    );
    assert.ok(
      mm.log.some((l) => / 204$/.test(l)),
      'the upload went through the 204 resume path',
    );
    for (const local of ['recording.mp4', 'tracks', 'parts'])
      assert.ok(!existsSync(join(jobDir, local)), `the local ${local} is removed once posted`);
    await mm.close();
  });

  it('a recording Mattermost refuses (over its MaxFileSize) is kept in the artifacts directory, named in output_data and in the failure', async () => {
    const call = id();
    const token = id();
    const mm = new MattermostStandIn({ authToken: token, maxFileSize: 1000 });
    await mm.start();
    const { env, jobDir, artifacts } = localJob(call, 'refused');
    const alice = new HeadlessParticipant({
      siteUrl: mm.url,
      callId: call,
      token: mm.userToken(call, 'alice', 'Alice'),
    });
    await alice.join();
    const { mic } = await alice.publish('mic');
    h.sources.push(await opusSource((rtp) => mic.writeRtp(rtp), 6, 'sine=frequency=440'));
    const recordingId = id();
    mm.addJob(recordingId, call);
    const rec = start({
      ...env,
      SFU_URL: '',
      SFU_TOKEN: '',
      SITE_URL: mm.url,
      POST_ID: id(),
      RECORDING_ID: recordingId,
      AUTH_TOKEN: token,
    });
    try {
      await waitFor('started reported', () => mm.statuses.some((s) => s.body.Status === 'started'), 15_000);
      await new Promise((r) => setTimeout(r, 2000));
      rec.child.kill('SIGTERM');
      const [code] = await once(rec.child, 'exit');
      assert.equal(code, 1, rec.output());
      const { file, duration_ms } = JSON.parse(readFileSync(join(jobDir, 'output.json'), 'utf8'));
      assert.ok(file.startsWith(artifacts) && existsSync(file), file);
      assert.ok(Math.abs(Number(probe(file).format.duration) - duration_ms / 1000) < 1);
      const failed = mm.statuses.find((s) => s.body.Status === 'failed');
      assert.match(
        String(failed?.body.omitempty),
        new RegExp(`^could not deliver the recording \\(kept at ${file}\\): .*413`),
      );
      assert.equal(mm.recordings.length, 0);
    } finally {
      if (rec.child.exitCode === null) rec.child.kill('SIGKILL');
      alice.leave();
      await mm.close();
    }
  });

  it('records a camera that sends H.264 (a browser that prefers it)', async () => {
    const call = id();
    const { env, jobDir, artifacts } = localJob(call, 'h264');
    const carol = new HeadlessParticipant({
      siteUrl: h.sfuUrl,
      callId: call,
      token: mintToken(h.secret, { call, user: 'carol', name: 'Carol', role: 'participant', ttlSec: 60 }),
      videoCodecs: ['h264'],
    });
    await carol.join();
    const tracks = await carol.publish('mic', 'camera');
    const rec = start(env);
    await waitFor('recorder joined', () => rec.output().includes('recording call'), 15_000);
    h.sources.push(await opusSource((rtp) => tracks.mic.writeRtp(rtp), 6, 'sine=frequency=440'));
    h.sources.push(await h264Source((rtp) => tracks.camera.writeRtp(rtp), 6));
    await new Promise((r) => setTimeout(r, 5000));
    rec.child.kill('SIGTERM');
    const [code] = await once(rec.child, 'exit');
    assert.equal(code, 0, rec.output());
    carol.leave();

    const camera = readFileSync(join(jobDir, 'tracks.jsonl'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l))
      .filter((t) => t.source === 'camera')
      .at(-1);
    assert.ok(camera?.mediaMs !== undefined, `the H.264 camera started at a keyframe: ${JSON.stringify(camera)}`);
    const { file } = JSON.parse(readFileSync(join(jobDir, 'output.json'), 'utf8'));
    assert.ok(file.startsWith(artifacts));
    const info = probe(file);
    assert.equal(info.streams.find((s) => s.codec_type === 'video')!.codec_name, 'h264');
    // The moving test pattern is in the tile: the picture changes from second to second.
    assert.ok(!greyFrame(file, 2).equals(greyFrame(file, 3.5)), 'the camera picture moves');
  });

  it('a recorder killed mid-call leaves media that --recover assembles and keeps', async () => {
    const call = id();
    const { env, jobDir, artifacts } = localJob(call, 'killed');
    const carol = await speaker(call, 'carol', 10, 330);
    const rec = start(env);
    await waitFor('capturing', () => rec.output().includes('recording call'), 15_000);
    await new Promise((r) => setTimeout(r, 4000));
    rec.child.kill('SIGKILL');
    await once(rec.child, 'exit');
    carol.leave();

    const recovery = start(env, ['--recover']);
    const [code] = await recovery.exited;
    assert.equal(code, 0, recovery.output());
    const out = JSON.parse(readFileSync(join(jobDir, 'output.json'), 'utf8'));
    assert.equal(out.partial, true);
    assert.ok(out.file.startsWith(artifacts));
    const duration = Number(probe(out.file).format.duration);
    assert.ok(duration > 3 && duration < 6, `recovered ${duration} s of about 4`);
    assert.equal(probe(out.file).streams.find((s) => s.codec_type === 'audio')!.codec_name, 'aac');

    // Killed again, this time while delivering a finished MP4 (its Mattermost down past the
    // delivery's time): the recovery keeps that file as it is, not composing it again over itself.
    const finished = join(jobDir, 'recording.mp4');
    copyFileSync(out.file, finished);
    writeFileSync(join(jobDir, 'delivering'), JSON.stringify({ file: finished }));
    const before = statSync(finished);
    const again = start(env, ['--recover']);
    const [code2] = await again.exited;
    assert.equal(code2, 0, again.output());
    assert.match(again.output(), /the recording was finished before the run ended/);
    assert.equal(statSync(finished).mtimeMs, before.mtimeMs, 'the finished file untouched');
    const kept = JSON.parse(readFileSync(join(jobDir, 'output.json'), 'utf8'));
    assert.equal(kept.partial, undefined);
    assert.ok(kept.file.startsWith(artifacts) && !kept.file.includes('partial-'), kept.file);
    assert.equal(Number(probe(kept.file).format.duration), duration, 'the same recording, kept');
  });

  it('a recovery keeps what the run before composed before it composes a long rest, which a kill would have lost', async () => {
    const call = id();
    const { env, jobDir, artifacts } = localJob(call, 'long-rest');
    const gina = await speaker(call, 'gina', 16, 494);
    const rec = start({ ...env, PART_SEC: '2' });
    await waitFor('the first part composed', () => /composed 0\.0-2\.0 s/.test(rec.output()), 20_000);
    await new Promise((r) => setTimeout(r, 5000));
    rec.child.kill('SIGKILL');
    await once(rec.child, 'exit');
    gina.leave();
    // what three failed parts leave on disk: the parts up to one, the rest for the end
    for (const f of readdirSync(join(jobDir, 'parts'))) if (f !== 'part-0-2000.mkv') rmSync(join(jobDir, 'parts', f));

    // a recovery killed while it composes the rest (its bound is the stop's grace too)
    const recovery = start({ ...env, PART_SEC: '2' }, ['--recover']);
    recovery.child.stdout!.on('data', (c: Buffer) => {
      if (c.toString().includes('is kept at')) recovery.child.kill('SIGKILL');
    });
    await recovery.exited;
    assert.match(recovery.output(), /the recording up to 2\.0 s is kept at .*; composing the rest/);
    const kept = JSON.parse(readFileSync(join(jobDir, 'output.json'), 'utf8'));
    assert.ok(kept.partial && kept.file.startsWith(artifacts) && kept.duration_ms >= 2000, JSON.stringify(kept));
    assert.ok(Math.abs(Number(probe(kept.file).format.duration) - kept.duration_ms / 1000) < 0.5);

    // one that is not killed composes the rest too, kept under the same name
    const again = start({ ...env, PART_SEC: '2' }, ['--recover']);
    assert.equal((await again.exited)[0], 0, again.output());
    const whole = JSON.parse(readFileSync(join(jobDir, 'output.json'), 'utf8'));
    assert.equal(whole.file, kept.file);
    assert.ok(whole.duration_ms > 7000, JSON.stringify(whole));
    assert.ok(Math.abs(Number(probe(whole.file).format.duration) - whole.duration_ms / 1000) < 0.5);
    assert.deepEqual(readdirSync(artifacts), [basename(kept.file)], 'nothing half-written left beside it');
  });

  it('a write the disk refuses mid-call stops the recording with the reason: a handled failure, not a crash', async () => {
    const call = id();
    const { env, jobDir } = localJob(call, 'unwritable');
    const erin = await speaker(call, 'erin', 20, 440);
    const rec = start(env);
    await waitFor('capturing', () => rec.output().includes('recording call'), 15_000);
    // the call's events can no longer be written (as on a full disk): the next voice or joiner fails
    rmSync(join(jobDir, 'events.jsonl'));
    mkdirSync(join(jobDir, 'events.jsonl'));
    const frank = await speaker(call, 'frank', 20, 550);
    const [code] = await rec.exited;
    erin.leave();
    frank.leave();
    // the error escaped from the participant's event handler: the recorder crashed (and the
    // worker would have run it again on the same disk, telling the plugin nothing)
    assert.equal(code, 1, rec.output());
    assert.match(
      rec.output(),
      /events\.jsonl could not be written \(EISDIR\); stopping with what is on disk: stopping after/,
    );
    assert.match(rec.output(), /could not compose the recording \(the captured tracks are kept in /);
  });

  it('stops by itself when everyone has left, and keeps the file locally without a site URL', async () => {
    const call = id();
    const { env, jobDir, artifacts } = localJob(call, 'alone');
    const dan = await speaker(call, 'dan', 6, 600);
    const rec = start(env);
    await waitFor('capturing', () => rec.output().includes('recording call'), 15_000);
    await new Promise((r) => setTimeout(r, 3000));
    dan.leave();
    const [code] = await once(rec.child, 'exit');
    assert.equal(code, 0, rec.output());
    assert.match(rec.output(), /everyone left the call: stopping after/);
    const out = JSON.parse(readFileSync(join(jobDir, 'output.json'), 'utf8'));
    assert.ok(out.file.startsWith(artifacts) && existsSync(out.file));
    assert.ok(Math.abs(Number(probe(out.file).format.duration) - out.duration_ms / 1000) < 1);
  });

  it("keeps a mute the voice's clock left out (Firefox's resumes where it stopped): the voice after it in its place", async () => {
    const call = id();
    const { env, jobDir } = localJob(call, 'paused-clock');
    const fox = await joined(call, 'fox', 'Fox');
    const { mic } = await fox.publish('mic');
    const rec = start(env);
    await waitFor('capturing', () => rec.output().includes('recording call'), 15_000);
    const pause = await pausedClockVoice((rtp) => mic.writeRtp(rtp), 2, 4);
    rec.child.kill('SIGTERM');
    assert.equal((await once(rec.child, 'exit'))[0], 0, rec.output());
    fox.leave();
    const voice = readFileSync(join(jobDir, 'tracks.jsonl'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l))
      .find((t) => t.source === 'mic');
    const times = packetTimes(join(jobDir, voice.file));
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    const longest = Math.max(...gaps);
    // the pause as sent, give or take what the job's reads add (before: none, the second tone
    // straight after the first)
    assert.ok(
      Math.abs(longest - pause) < 0.5,
      `the longest gap in the voice ${longest.toFixed(3)} s, sent ${pause.toFixed(3)} s`,
    );
    assert.ok(times.length > 180, `${times.length} packets`);
  });

  it('keeps audio and video in sync: a flash and a beep made together stay within 100 ms', async (t) => {
    const call = id();
    const { env, jobDir } = localJob(call, 'sync');
    const eve = await joined(call, 'eve', 'Eve');
    const tracks = await eve.publish('mic', 'camera');
    // Parts of 3 s: most of it is composed while the call goes on, and flashes cross part boundaries.
    const rec = start({ ...env, FRAME_RATE: '30', PART_SEC: '3' });
    await waitFor('capturing', () => rec.output().includes('recording call'), 15_000);
    h.sources.push(
      await flashAndBeep(
        (rtp) => tracks.camera.writeRtp(rtp),
        (rtp) => tracks.mic.writeRtp(rtp),
        9,
      ),
    );
    await new Promise((r) => setTimeout(r, 9500));
    rec.child.kill('SIGTERM');
    assert.equal((await once(rec.child, 'exit'))[0], 0, rec.output());
    eve.leave();
    assert.match(rec.output(), /composed 0\.0-3\.0 s/);
    // the sound was encoded part by part during the call, not in the join
    assert.doesNotMatch(rec.output(), /the sound is/);
    const file = JSON.parse(readFileSync(join(jobDir, 'output.json'), 'utf8')).file as string;

    const { flashes, beeps, offsets } = avOffsets(file, 30);
    assert.ok(flashes.length >= 3 && beeps.length >= 3, `flashes ${flashes} beeps ${beeps}`);
    t.diagnostic(`beep minus flash (s): ${offsets.map((o) => o.toFixed(3)).join(' ')}`);
    assert.ok(
      offsets.every((o) => Math.abs(o) <= 0.1),
      `audio/video offsets (s): ${offsets.map((o) => o.toFixed(3)).join(' ')}`,
    );
    // No drift: the offsets differ by the 33 ms frame step and the 10 ms window at most (a video
    // clock off by one frame in the file made them slide by 77 ms over these 9 s).
    assert.ok(
      Math.max(...offsets) - Math.min(...offsets) <= 0.06,
      `audio/video offsets drift (s): ${offsets.map((o) => o.toFixed(3)).join(' ')}`,
    );
  });

  it('an invalid input fails at once, naming the variable, before joining anything', async () => {
    const rec = start({ CALL_ID: id(), WIDTH: '99', JOB_DIR: join(dir, 'job2'), SFU_URL: h.sfuUrl, SFU_TOKEN: 'x' });
    const [code] = await once(rec.child, 'exit');
    assert.equal(code, 2);
    assert.match(rec.output(), /invalid input: WIDTH must be at least 1280/);
    assert.equal(h.sfu.participantCount, 0);
    const parts = start({
      CALL_ID: id(),
      PART_SEC: '1',
      JOB_DIR: join(dir, 'job3'),
      SFU_URL: h.sfuUrl,
      SFU_TOKEN: 'x',
    });
    assert.equal((await once(parts.child, 'exit'))[0], 2);
    assert.match(parts.output(), /invalid input: PART_SEC must be a whole number of seconds from 2 to 3600/);
  });
});

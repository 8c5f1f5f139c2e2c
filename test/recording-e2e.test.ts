// End to end: the service (API, worker with the process runner) and the Mattermost stand-in, which
// holds the call; a real Chromium participant on the call page (Mattermost's RTCPeer) with a fake
// camera, a screen share and a microphone speaking a WAV; a second participant joins later; POST
// /jobs as the plugin sends it; the recorder joins through the plugin's websocket; the plugin's
// job_stop stops it; the MP4 that reaches Mattermost has the right streams, size, rate and
// duration, speech in its audio and a picture that changes. Mattermost answers 500 for a while
// during delivery. And a recorder killed mid-call, whose capture the worker's recovery run
// assembles and keeps.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launchChromium } from './browser.js';
import { ids, recordingJob, waitFor } from './helpers.js';
import { greyFrame, speechWav } from './media.js';
import { ServiceStack } from './service-stack.js';

/** RMS level (dB) of each second of audio. */
function loudness(file: string): number[] {
  const pcm = execFileSync(
    'ffmpeg',
    ['-loglevel', 'error', '-i', file, '-ac', '1', '-ar', '8000', '-f', 's16le', '-'],
    { maxBuffer: 64 * 1024 * 1024 },
  );
  const out: number[] = [];
  for (let s = 0; s + 16000 <= pcm.length; s += 16000) {
    let sum = 0;
    for (let i = s; i < s + 16000; i += 2) sum += pcm.readInt16LE(i) ** 2;
    out.push(10 * Math.log10(sum / 8000 / 32768 ** 2 + 1e-12));
  }
  return out;
}

describe('recording end to end', () => {
  const stack = new ServiceStack({
    icePorts: '48000-48200',
    stopGraceSec: 60,
    standIn: { maxRequestBytes: 512 * 1024, filename: 'Call_town-square_2026-11-23_18-45-00' },
  });
  const { mm, authToken } = stack;
  const dir = mkdtempSync(join(tmpdir(), 'co-e2e-'));
  let browser: Awaited<ReturnType<typeof launchChromium>>;

  before(async () => {
    await stack.start();
    browser = await launchChromium(
      speechWav(
        dir,
        'Good morning everyone. This meeting is recorded. We will review the plan for the next release, then answer questions.',
      ),
    );
  });
  after(async () => {
    await browser.cleanup();
    await stack.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const joinPage = (callId: string, user: string, name: string) => stack.joinPage(browser, callId, user, name);

  it('records a browser call with a screen share and a late joiner, and posts the MP4 despite Mattermost failing for a while', async () => {
    const callId = ids();
    const alice = await joinPage(callId, 'alice', 'Alice');
    await alice.evaluate(() => (window as any).shareScreen(true));

    const recordingId = ids();
    const postId = ids();
    const created = await stack.createJob({
      ...recordingJob(callId, { site_url: mm.url, post_id: postId, recording_id: recordingId, auth_token: authToken }),
      max_duration_sec: 600,
    });
    assert.equal(created.status, 200, created.text);
    const jobId = created.json.id as string;
    await waitFor('recording started', () => mm.statuses.some((s) => s.body.Status === 'started'), 30_000);
    await new Promise((r) => setTimeout(r, 4000));
    const bob = await joinPage(callId, 'bob', 'Bob');
    await new Promise((r) => setTimeout(r, 4000));

    mm.failNext = 4; // Mattermost is down as the upload begins
    mm.stopJob(recordingId); // the host stopped the recording: the plugin tells the bot
    const { job, log } = await stack.finished(jobId, 90_000);
    assert.match(log, /job_stop/);
    assert.equal(job.status, 'succeeded', `${job.error}\n${log}`);
    assert.match(log, /failed \(attempt 1 of 20\): 500/, 'the 500s were retried');
    assert.match(log, /SRTP: OpenSSL, one context per key/, "the job's bot uses the addon (in the job image too)");
    await bob.close();
    await alice.close();

    assert.equal(mm.recordings.length, 1);
    const post = mm.recordings[0]!;
    assert.deepEqual([post.callId, post.body.JobID, post.body.PostID], [callId, recordingId, postId]);
    assert.equal(job.output_data.file_id, post.body.FileIDs[0]);
    assert.equal(job.output_data.filename, 'Call_town-square_2026-11-23_18-45-00.mp4');
    const mp4 = join(dir, 'recording.mp4');
    writeFileSync(mp4, mm.file(post.body.FileIDs[0]!)!);

    const probe = JSON.parse(
      execFileSync('ffprobe', [
        '-v',
        'error',
        '-show_entries',
        'stream=codec_type,codec_name,width,height,r_frame_rate:format=duration',
        '-of',
        'json',
        mp4,
      ]).toString(),
    );
    const v = probe.streams.find((s: { codec_type: string }) => s.codec_type === 'video');
    const a = probe.streams.find((s: { codec_type: string }) => s.codec_type === 'audio');
    assert.deepEqual([v.codec_name, v.width, v.height, v.r_frame_rate], ['h264', 1280, 720, '15/1']);
    assert.equal(a.codec_name, 'aac');
    const duration = Number(probe.format.duration);
    assert.ok(
      Math.abs(duration - job.output_data.duration_ms / 1000) < 1,
      `file ${duration} s vs recorded ${job.output_data.duration_ms / 1000} s`,
    );
    assert.ok(duration > 7, `duration ${duration}`);
    // `+faststart`: the index (moov) comes before the media (mdat).
    const head = mm.file(post.body.FileIDs[0]!)!.subarray(0, 4096).toString('latin1');
    assert.ok(
      head.indexOf('moov') >= 0 && (head.indexOf('mdat') < 0 || head.indexOf('moov') < head.indexOf('mdat')),
      'moov before mdat',
    );

    const levels = loudness(mp4);
    assert.ok(
      levels.filter((db) => db > -45).length >= levels.length / 2,
      `speech heard in most seconds: ${levels.map((d) => d.toFixed(0)).join(' ')}`,
    );
    assert.ok(
      Math.max(...levels) - Math.min(...levels) > 3,
      'the level changes over time (speech, not a constant tone)',
    );
    assert.ok(!greyFrame(mp4, 1).equals(greyFrame(mp4, duration - 1)), 'the picture changes over time');
  });

  it('a recorder killed mid-call: the worker recovers what it captured into a partial MP4, keeps it and says where', async () => {
    const callId = ids();
    const carol = await joinPage(callId, 'carol', 'Carol');
    const seen = mm.statuses.length;
    const created = await stack.createJob({
      type: 'recording',
      max_duration_sec: 600,
      runner: 'mattermost/calls-recorder:v0.8.5',
      input_data: {
        site_url: mm.url,
        call_id: callId,
        post_id: ids(),
        recording_id: ids(),
        auth_token: authToken,
        width: 1280,
        height: 720,
        frame_rate: 15,
        video_preset: 'ultrafast',
      },
    });
    assert.equal(created.status, 200, created.text);
    const jobId = created.json.id as string;
    await waitFor('recording started', () => mm.statuses.slice(seen).some((s) => s.body.Status === 'started'), 30_000);
    await new Promise((r) => setTimeout(r, 6000));

    // The recorder is the process whose environment carries this job's id.
    const pid = readdirSync('/proc')
      .filter((p) => /^\d+$/.test(p))
      .find((p) => {
        try {
          return (
            readFileSync(`/proc/${p}/environ`, 'latin1').split('\0').includes(`JOB_ID=${jobId}`) &&
            readFileSync(`/proc/${p}/cmdline`, 'latin1').includes('recorder/main.js')
          );
        } catch {
          return false;
        }
      });
    assert.ok(pid, 'the recorder process');
    process.kill(Number(pid), 'SIGKILL');

    const { job, log } = await stack.finished(jobId, 90_000);
    await carol.close();
    assert.equal(job.status, 'failed');
    assert.match(log, /running the job program with --recover/);
    assert.equal(job.output_data.partial, true, log);
    const file = job.output_data.file as string;
    assert.ok(existsSync(file) && statSync(file).size > 10_000, `${file} kept`);
    assert.match(file, /partial-recording-/);
    const probe = JSON.parse(
      execFileSync('ffprobe', [
        '-v',
        'error',
        '-show_entries',
        'stream=codec_name:format=duration',
        '-of',
        'json',
        file,
      ]).toString(),
    );
    assert.deepEqual(probe.streams.map((s: { codec_name: string }) => s.codec_name).sort(), ['aac', 'h264']);
    assert.ok(Number(probe.format.duration) >= 3, `at most a few seconds lost: ${probe.format.duration} s of about 6`);
    const failed = mm.statuses.slice(seen).find((s) => s.body.Status === 'failed');
    assert.match(
      String(failed?.body.omitempty),
      /stopped unexpectedly.*recovered and kept on the job service at .*partial-recording-/,
    );
    rmSync(file, { force: true });
  });
});

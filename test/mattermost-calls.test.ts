// Jobs on calls held by Mattermost (the stand-in), through the service as the plugin drives it:
// a host ending the call (`call_end`) ends the recording and the transcription, which both
// deliver; the bot's websocket cut mid-call is reconnected within the plugin's 10 s, the
// recording has no gap and a job_stop sent during the cut arrives after it; a stop while the plugin
// refuses the "started" report is heard at once; a join the plugin refuses fails the job at once
// with the plugin's reason.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { HeadlessParticipant } from '../src/sfu/client/participant.js';
import { ids, waitFor } from './helpers.js';
import { opusSource } from './media.js';
import { ServiceStack } from './service-stack.js';
import { librivox, speechTrack, writeWav } from './speech.js';

/** The longest run of silence (s) in a file's audio, in 50 ms steps. */
function longestSilence(file: string): { longest: number; seconds: number } {
  const pcm = execFileSync(
    'ffmpeg',
    ['-loglevel', 'error', '-i', file, '-ac', '1', '-ar', '8000', '-f', 's16le', '-'],
    { maxBuffer: 64 * 1024 * 1024 },
  );
  const step = 800; // 50 ms of 16-bit samples at 8 kHz
  let run = 0;
  let longest = 0;
  for (let s = 0; s + step <= pcm.length; s += step) {
    let sum = 0;
    for (let i = s; i < s + step; i += 2) sum += pcm.readInt16LE(i) ** 2;
    const db = 10 * Math.log10(sum / (step / 2) / 32768 ** 2 + 1e-12);
    run = db < -50 ? run + 1 : 0;
    longest = Math.max(longest, run);
  }
  return { longest: (longest * 50) / 1000, seconds: pcm.length / 16000 };
}

describe('jobs on a Mattermost call', () => {
  const stack = new ServiceStack({ icePorts: '48600-48800', stopGraceSec: 60, standIn: {} });
  const { mm, authToken } = stack;
  const dir = mkdtempSync(join(tmpdir(), 'co-mmcalls-'));
  const sources: ChildProcess[] = [];
  // Left here too: a test that fails before its own leave() must not keep the process alive.
  const people: HeadlessParticipant[] = [];
  before(() => stack.start());
  after(async () => {
    for (const s of sources) s.kill('SIGKILL');
    for (const p of people) p.leave();
    await stack.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const transcription = (callId: string, transcriptionId = ids()) => ({
    type: 'transcribing',
    max_duration_sec: 1200,
    runner: 'mattermost/calls-transcriber:v0.7.2',
    input_data: {
      site_url: mm.url,
      call_id: callId,
      post_id: ids(),
      transcription_id: transcriptionId,
      auth_token: authToken,
      transcribe_api: 'pocketsphinx',
      transcribe_api_options: 'null',
      model_size: 'base',
      num_threads: 1,
      output_format: 'vtt',
      live_captions_on: false,
    },
  });
  /** A person on the call whose microphone plays `input` (a WAV, or a lavfi source) for `seconds`. */
  const speaker = async (callId: string, user: string, seconds: number, input: string) => {
    const p = new HeadlessParticipant({
      siteUrl: mm.url,
      callId,
      token: mm.userToken(callId, user, user),
      subscribe: 'none',
    });
    people.push(p);
    await p.join();
    const { mic } = await p.publish('mic');
    sources.push(await opusSource((rtp) => mic.writeRtp(rtp), seconds, input));
    return p;
  };
  const started = (jobId: string) =>
    waitFor(
      `${jobId} started`,
      () => mm.statuses.some((s) => s.jobId === jobId && s.body.Status === 'started'),
      30_000,
    );

  it('call_end from the host ends the recording and the transcription, and both deliver', async () => {
    const callId = ids();
    const wav = writeWav(join(dir, 'speech.wav'), speechTrack(librivox().slice(0, 1), 0.5, 1));
    const alice = await speaker(callId, 'alice', 30, wav);
    const rec = stack.recordingJob(callId);
    const tr = transcription(callId);
    const [r, t] = [await stack.createJob(rec), await stack.createJob(tr)];
    assert.equal(r.status, 200, r.text);
    assert.equal(t.status, 200, t.text);
    await started(rec.input_data.recording_id);
    await started(tr.input_data.transcription_id);
    await new Promise((res) => setTimeout(res, 6000));
    mm.endCall(callId);
    const [recJob, trJob] = await Promise.all([stack.finished(r.json.id, 120_000), stack.finished(t.json.id, 120_000)]);
    alice.leave();
    assert.equal(recJob.job.status, 'succeeded', `${recJob.job.error}\n${recJob.log}`);
    assert.equal(trJob.job.status, 'succeeded', `${trJob.job.error}\n${trJob.log}`);
    assert.match(recJob.log, /the call ended/);
    assert.match(trJob.log, /the call ended/);
    assert.ok(mm.recordings.some((p) => p.body.JobID === rec.input_data.recording_id));
    const post = mm.transcriptions.find((p) => p.body.JobID === tr.input_data.transcription_id);
    const [vttId] = (post!.body.Transcriptions as { FileIDs: string[] }[])[0]!.FileIDs;
    assert.match(mm.file(vttId!)!.toString(), /<v alice>/, 'the speaker named from the bot API');
  });

  it('a websocket cut for 4 s mid-call is reconnected; the recording has no gap; a job_stop sent during the cut arrives after it', async () => {
    const callId = ids();
    const tone = await speaker(callId, 'bob', 40, 'sine=frequency=500');
    const rec = stack.recordingJob(callId);
    const r = await stack.createJob(rec);
    assert.equal(r.status, 200, r.text);
    await started(rec.input_data.recording_id);
    await new Promise((res) => setTimeout(res, 3000));
    const cut = 4000;
    mm.cutBots(callId, cut);
    await new Promise((res) => setTimeout(res, cut / 2));
    // the host stops it while the bot's websocket is down: the event waits for the reconnection
    mm.stopJob(rec.input_data.recording_id);
    const { job, log } = await stack.finished(r.json.id, 120_000);
    tone.leave();
    assert.equal(job.status, 'succeeded', `${job.error}\n${log}`);
    assert.match(log, /websocket reconnected[\s\S]*job_stop/, 'job_stop arrived on the new websocket');
    const post = mm.recordings.find((p) => p.body.JobID === rec.input_data.recording_id)!;
    const file = join(dir, 'cut.mp4');
    writeFileSync(file, mm.file(post.body.FileIDs[0]!)!);
    const { longest, seconds } = longestSilence(file);
    assert.ok(seconds > 3 + cut / 1000, `recorded ${seconds} s`);
    assert.ok(longest <= cut / 1000 + 2, `longest gap ${longest} s with a ${cut / 1000} s cut`);
    process.stdout.write(
      `# websocket cut ${cut / 1000} s: longest silence in the recording ${longest.toFixed(2)} s of ${seconds.toFixed(1)} s\n`,
    );
  });

  it('a stop while the plugin keeps refusing the "started" report is heard at once; the reports keep their order', async () => {
    const callId = ids();
    const dave = await speaker(callId, 'dave', 60, 'sine=frequency=400');
    const [rec, tr] = [stack.recordingJob(callId), transcription(callId)];
    const jobIds = [rec.input_data.recording_id, tr.input_data.transcription_id];
    // two refusals each: a job's start is reported 15 s after its first attempt at the soonest
    for (const jobId of jobIds) mm.refuseStatuses.set(jobId, 2);
    const created = [await stack.createJob(rec), await stack.createJob(tr)];
    for (const r of created) assert.equal(r.status, 200, r.text);
    // each job is stopped as soon as its start was refused once
    const refused = (jobId: string) => mm.log.some((l) => l.includes(`/jobs/${jobId}/status 503`));
    const stopped = jobIds.map(async (jobId) => {
      await waitFor(`${jobId} joined, its start refused`, () => refused(jobId), 60_000);
      mm.stopJob(jobId);
    });
    await Promise.all(stopped);
    const done = await Promise.all(created.map((r) => stack.finished(r.json.id, 180_000)));
    dave.leave();
    for (const [k, { job, log }] of done.entries()) {
      assert.equal(job.status, 'succeeded', `${job.error}\n${log}`);
      // The job heard the stop before the plugin took its start: a job that awaited the report
      // before listening for a stop heard it only after.
      const stop = /\[\w+ (\S+)\] [^\n]*job_stop[^\n]*: stop(?:ping|ped) after/.exec(log)?.[1];
      const start = mm.statuses.find((s) => s.jobId === jobIds[k] && s.body.Status === 'started')?.at;
      assert.ok(stop && start && Date.parse(stop) < start, `stop heard at ${stop}, start taken at ${start}:\n${log}`);
      // ...and what is reported after the start still comes after it
      const at = (pattern: RegExp) => mm.log.findIndex((l) => pattern.test(l));
      const started = at(new RegExp(`/jobs/${jobIds[k]}/status 200$`));
      const posted = at(new RegExp(`/calls/${callId}/${k === 0 ? 'recordings' : 'transcriptions'} 200$`));
      assert.ok(started >= 0 && posted > started, mm.log.join('\n'));
    }
  });

  it('a join the plugin refuses fails the job within seconds, with the reason at the plugin', async () => {
    const callId = ids();
    const carol = await speaker(callId, 'carol', 5, 'sine=frequency=300');
    const rec = stack.recordingJob(callId);
    // the plugin has no such recording job: the bot's join is refused
    const r = await stack.request('POST', '/jobs', rec);
    assert.equal(r.status, 200, r.text);
    // within seconds: the wait is bounded (a refusal that went unseen would hang until the start timeout)
    const { job } = await stack.finished(r.json.id, 30_000);
    carol.leave();
    assert.equal(job.status, 'failed');
    assert.match(job.error, /could not join the call: no job in progress/);
    const told = mm.statuses.find((s) => s.jobId === rec.input_data.recording_id);
    assert.equal(told?.body.Status, 'failed');
    assert.match(String(told?.body.omitempty), /no job in progress/);
  });
});

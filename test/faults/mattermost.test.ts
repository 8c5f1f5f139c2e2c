// Mattermost failing while a recording is delivered: answering 500, unreachable, slow. Each row
// records a short call held by the Mattermost stand-in (a participant sending a tone), through the
// whole service and the real recorder; the host stops the recording and the fault meets the upload
// (which the stand-in also cuts into 204 partial answers, as Mattermost's request limit does). The
// delivery must retry through it and post exactly once. Mattermost down for longer than the whole
// retry budget (20 attempts, about 16 min) is tested in `delivery` with a short budget.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { HeadlessParticipant } from '../../src/sfu/client/participant.js';
import { ids, waitFor } from '../helpers.js';
import { opusSource } from '../media.js';
import { ServiceStack } from '../service-stack.js';
import { report } from './harness.js';

describe('faults: Mattermost during delivery', () => {
  const stack = new ServiceStack({
    icePorts: '46500-46700',
    stopGraceSec: 60,
    standIn: { maxRequestBytes: 16 * 1024 },
  });
  const { mm } = stack;
  const sources: ChildProcess[] = [];
  before(() => stack.start());
  after(async () => {
    for (const s of sources) s.kill('SIGKILL');
    await stack.stop();
  });

  /**
   * Records 5 s of a call, then stops it with `fault` applied; resolves when the fault has ended.
   * Returns the job, its log, the posts of its recording and when the fault ended and the post came.
   */
  const recordThrough = async (fault: () => Promise<void>) => {
    const callId = ids();
    const alice = new HeadlessParticipant({
      siteUrl: mm.url,
      callId,
      token: mm.userToken(callId, 'alice', 'Alice'),
      subscribe: 'none',
    });
    await alice.join();
    const { mic } = await alice.publish('mic');
    sources.push(await opusSource((rtp) => mic.writeRtp(rtp), 60));
    const body = stack.recordingJob(callId);
    const recordingId = body.input_data.recording_id;
    const created = await stack.createJob(body);
    assert.equal(created.status, 200, created.text);
    await waitFor(
      'started',
      () => mm.statuses.some((s) => s.jobId === recordingId && s.body.Status === 'started'),
      30_000,
    );
    await new Promise((r) => setTimeout(r, 5000));
    const faultEnded = fault();
    const stopped = Date.now();
    mm.stopJob(recordingId);
    await faultEnded;
    const faultEnd = Date.now();
    await waitFor('posted', () => mm.recordings.some((p) => p.body.JobID === recordingId), 180_000);
    const posted = Date.now();
    const { job, log } = await stack.finished(created.json.id, 60_000);
    alice.leave();
    const posts = mm.recordings.filter((p) => p.body.JobID === recordingId);
    const file = mm.file(posts[0]!.body.FileIDs[0]!);
    return { job, log, posts, file, recoverMs: Math.max(0, posted - faultEnd), stopToPostedMs: posted - stopped };
  };

  const check = (r: Awaited<ReturnType<typeof recordThrough>>) => {
    assert.equal(r.job.status, 'succeeded', `${r.job.error}\n${r.log}`);
    assert.equal(r.posts.length, 1, 'posted once');
    assert.ok(r.file && r.file.length > 16 * 1024, `the whole file arrived in several requests: ${r.file?.length}`);
  };

  it('Mattermost answering 500 as the upload begins: retried, posted once', async () => {
    const r = await recordThrough(async () => {
      mm.failNext = 3;
      await waitFor('the 500s answered', () => mm.failNext === 0, 120_000);
    });
    check(r);
    assert.match(r.log, /failed \(attempt 3 of 20\): 500/);
    report({
      fault: 'Mattermost answering 500 (3 requests)',
      injected: 3,
      jobs: 1,
      lost: 0,
      twice: r.posts.length - 1,
      recoverMs: r.recoverMs,
      note: `posted once after the 3rd retry; the upload took ${mm.log.filter((l) => / 204$/.test(l)).length} partial answers (204) in all`,
    });
  });

  it('Mattermost unreachable for 12 s during delivery: retried, posted once', async () => {
    const cut = () => mm.log.filter((l) => l.endsWith(' cut')).length;
    const before = cut();
    const r = await recordThrough(async () => {
      mm.goDown(12_000);
      await new Promise((res) => setTimeout(res, 12_000));
    });
    check(r);
    assert.ok(cut() > before, 'connections were cut');
    report({
      fault: 'Mattermost unreachable 12 s',
      injected: cut() - before,
      jobs: 1,
      lost: 0,
      twice: r.posts.length - 1,
      recoverMs: r.recoverMs,
      note: `${cut() - before} connections cut; posted once after (retries 5 s, 10 s, ... apart)`,
    });
  });

  it('a slow Mattermost (each answer 3 s late): posted once', async () => {
    const r = await recordThrough(async () => {
      mm.delayMs = 3000;
    });
    mm.delayMs = 0;
    check(r);
    report({
      fault: 'Mattermost slow (3 s per answer)',
      injected: 1,
      jobs: 1,
      lost: 0,
      twice: r.posts.length - 1,
      recoverMs: null,
      note: `posted once, ${(r.stopToPostedMs / 1000).toFixed(1)} s after the stop`,
    });
  });
});

// End to end: the service (API, worker with the process runner) and the Mattermost stand-in, which
// holds the call; two real Chromium participants on the call page (Mattermost's RTCPeer) whose
// fake microphones speak real recorded English (LibriVox utterances from pocketsphinx-testdata),
// the second joining later; a transcription job with live captions, as the plugin sends it,
// joining through the plugin's websocket, recognised with pocketsphinx, stopped by the plugin's
// job_stop. The stand-in receives a WebVTT and a text file naming both speakers, in time order,
// close to what was said; the captions reach the browser pages while the call goes on.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'puppeteer-core';
import { launchChromium } from './browser.js';
import { ids, waitFor } from './helpers.js';
import { ServiceStack } from './service-stack.js';
import { librivox, speechTrack, wordErrorRate, writeWav } from './speech.js';

/** Cues of a WebVTT file: start/end seconds, speaker, text. */
function cues(vtt: string): { start: number; end: number; speaker: string; text: string }[] {
  const secs = (t: string) => t.split(':').reduce((n, p) => n * 60 + Number(p), 0);
  return vtt
    .split('\n\n')
    .slice(1)
    .filter(Boolean)
    .map((block) => {
      const [times, body] = block.split('\n') as [string, string];
      const [start, end] = times.split(' --> ').map(secs) as [number, number];
      const m = /^<v ([^>]*)>(.*)$/.exec(body)!;
      return { start, end, speaker: m[1]!, text: m[2]! };
    });
}

describe('transcription end to end', () => {
  const stack = new ServiceStack({
    icePorts: '48300-48500',
    stopGraceSec: 120,
    standIn: { maxRequestBytes: 1024, filename: 'Call_town-square_2026-11-23_18-45-00' },
  });
  const { mm, authToken } = stack;
  const dir = mkdtempSync(join(tmpdir(), 'co-e2e-'));
  const corpus = librivox();
  // Alice reads two utterances, Bob (who joins once she is done) the other three.
  const aliceSays = corpus.slice(0, 2);
  const bobSays = corpus.slice(2);
  const browsers: Awaited<ReturnType<typeof launchChromium>>[] = [];

  before(async () => {
    await stack.start();
    // A long silent tail: the fake microphone loops its file, and nobody should repeat themselves.
    for (const [name, says] of [
      ['alice', aliceSays],
      ['bob', bobSays],
    ] as const) {
      browsers.push(await launchChromium(writeWav(join(dir, `${name}.wav`), speechTrack(says, 1, 120))));
    }
  });
  after(async () => {
    for (const b of browsers) await b.cleanup();
    await stack.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const captionsAt = (page: Page) =>
    page.evaluate(() => (window as any).callState.captions as { session_id: string; user_id: string; text: string }[]);

  it('transcribes two speakers into WebVTT and text with their names, and captions them live', async () => {
    const callId = ids();
    const transcriptionId = ids();
    const postId = ids();
    // The job joins first (the plugin starts it as the call starts), then people arrive.
    const created = await stack.createJob({
      type: 'transcribing',
      max_duration_sec: 600,
      runner: 'mattermost/calls-transcriber:v0.6.0',
      input_data: {
        site_url: mm.url,
        call_id: callId,
        post_id: postId,
        transcription_id: transcriptionId,
        auth_token: authToken,
        transcribe_api: 'pocketsphinx',
        num_threads: 1,
        output_format: 'vtt',
        live_captions_on: true,
      },
    });
    assert.equal(created.status, 200, created.text);
    const jobId = created.json.id as string;
    await waitFor('transcription started', () => mm.statuses.some((s) => s.body.Status === 'started'), 30_000);

    const alice = await stack.joinPage(browsers[0]!, callId, 'alice', 'Alice Liddell');
    await new Promise((r) => setTimeout(r, 15_000)); // Alice's 10 s of speech
    const bob = await stack.joinPage(browsers[1]!, callId, 'bob', 'Bob Cratchit');
    await new Promise((r) => setTimeout(r, 18_000)); // Bob's 14.6 s
    const captions = await captionsAt(alice);

    mm.stopJob(transcriptionId); // the host stopped: the plugin tells the bot
    const { job, log } = await stack.finished(jobId, 120_000);
    assert.match(log, /job_stop/);
    assert.equal(job.status, 'succeeded', `${job.error}\n${log}`);
    await bob.close();
    await alice.close();

    // The plugin's contract: two files uploaded (through 204s: 1 KiB requests), one post.
    assert.equal(mm.transcriptions.length, 1);
    const post = mm.transcriptions[0]!;
    const body = post.body as {
      JobID: string;
      PostID: string;
      Transcriptions: { Language: string; FileIDs: string[] }[];
    };
    assert.deepEqual(
      [post.callId, body.JobID, body.PostID, body.Transcriptions[0]!.Language],
      [callId, transcriptionId, postId, 'en'],
    );
    const [vttId, txtId] = body.Transcriptions[0]!.FileIDs as [string, string];
    assert.deepEqual(job.output_data.file_ids, [vttId, txtId]);
    const vtt = mm.file(vttId)!.toString();
    const txt = mm.file(txtId)!.toString();
    assert.match(vtt, /^WEBVTT\n\n/);
    const all = cues(vtt);
    assert.deepEqual([...new Set(all.map((c) => c.speaker))].sort(), ['Alice Liddell', 'Bob Cratchit'], log);
    assert.deepEqual(
      all.map((c) => c.start),
      [...all.map((c) => c.start)].sort((a, b) => a - b),
      'cues in time order',
    );
    assert.ok(all.every((c) => c.end > c.start));
    const firstBob = all.find((c) => c.speaker === 'Bob Cratchit')!.start;
    assert.ok(
      all.filter((c) => c.speaker === 'Alice Liddell').every((c) => c.start < firstBob),
      'Alice spoke before Bob joined',
    );
    assert.ok(firstBob > 12, `Bob's first words are placed after he joined: ${firstBob} s`);
    assert.match(txt, /^\d\d:\d\d:\d\d -> \d\d:\d\d:\d\d\nAlice Liddell\n/);
    assert.match(txt, /\nBob Cratchit\n/);

    // What was said, through Chromium's audio processing, Opus and the SFU, then pocketsphinx.
    const heard = (speaker: string) =>
      all
        .filter((c) => c.speaker === speaker)
        .map((c) => c.text)
        .join(' ');
    const aliceWer = wordErrorRate(aliceSays.map((u) => u.text).join(' '), heard('Alice Liddell'));
    const bobWer = wordErrorRate(bobSays.map((u) => u.text).join(' '), heard('Bob Cratchit'));
    assert.ok(aliceWer < 0.5 && bobWer < 0.5, `WER Alice ${aliceWer.toFixed(2)} Bob ${bobWer.toFixed(2)}\n${vtt}`);

    // Live captions of both speakers reached Alice's page while the call went on.
    assert.ok(
      captions.some((c) => c.user_id === 'alice' && c.session_id),
      `captions of Alice: ${JSON.stringify(captions)}`,
    );
    assert.ok(
      captions.some((c) => c.user_id === 'bob'),
      `captions of Bob: ${JSON.stringify(captions)}`,
    );
    const captionWer = wordErrorRate(
      aliceSays.map((u) => u.text).join(' '),
      captions
        .filter((c) => c.user_id === 'alice')
        .map((c) => c.text)
        .join(' '),
    );
    assert.ok(captionWer < 0.7, `caption WER ${captionWer.toFixed(2)}: ${JSON.stringify(captions)}`);
    assert.ok(job.output_data.captions.sent >= 3, JSON.stringify(job.output_data.captions));
    // The service counts caption windows of finished jobs for Prometheus, each as the job did
    // (how many recognition dropped for falling behind depends on how loaded the machine is).
    const metrics = await (await fetch(`${stack.api.url}/metrics`)).text();
    const windows = (outcome: string) =>
      Number(
        new RegExp(`^calls_offloader_caption_windows_total\\{outcome="${outcome}"\\} (\\d+)$`, 'm').exec(
          metrics,
        )?.[1] ?? 0,
      );
    assert.equal(windows('captioned'), job.output_data.captions.sent, metrics);
    assert.equal(windows('dropped'), job.output_data.captions.dropped, metrics);
    process.stdout.write(
      `# WER transcript Alice ${aliceWer.toFixed(2)} Bob ${bobWer.toFixed(2)}, captions Alice ${captionWer.toFixed(2)}; captions ${JSON.stringify(job.output_data.captions)}\n`,
    );
  });
});

// Delivery through the Calls plugin bot API, against the Mattermost stand-in: resumable uploads
// across 204s, retries while Mattermost answers 500, status reports in the wire format the
// plugin reads, the recording post, and no retrying of a bad token.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { fastStart } from '../workers/shared/fast-start.js';
import { type FileSource, fileSource } from '../workers/shared/file-source.js';
import { BotClient, sanitizeFilename } from '../workers/shared/mattermost.js';
import { MattermostStandIn } from './mattermost-standin.js';

const id = () => randomBytes(13).toString('hex');

describe('delivery to Mattermost (bot API)', () => {
  const token = id();
  const callId = id();
  const dir = mkdtempSync(join(tmpdir(), 'co-delivery-'));
  const mm = new MattermostStandIn({
    authToken: token,
    maxRequestBytes: 1024 * 1024,
    filename: 'Call town-square 2026-11-23 18:45',
  });
  let client: BotClient;
  const notes: string[] = [];
  before(async () => {
    await mm.start();
    client = new BotClient({
      siteUrl: mm.url,
      authToken: token,
      retry: { attempts: 5, stepMs: 50 },
      log: (m) => notes.push(m),
    });
  });
  after(async () => {
    await mm.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("uploads a file larger than Mattermost's request limit by resuming from file_offset after each 204", async () => {
    const data = randomBytes(3 * 1024 * 1024 + 12345);
    const path = join(dir, 'call.mp4');
    writeFileSync(path, data);
    const info = await client.upload(callId, fileSource(path), `${await client.filename(callId)}.mp4`);
    assert.equal(info.name, 'Call_town-square_2026-11-23_18_45.mp4');
    assert.equal(info.size, data.length);
    assert.ok(mm.file(info.id)!.equals(data), 'the bytes arrived whole and in order');
    assert.equal(mm.log.filter((l) => / 204$/.test(l)).length, 3, 'three cut requests, each resumed');
    await client.postRecording(callId, { JobID: id(), FileIDs: [info.id], PostID: id() });
    assert.equal(mm.recordings.length, 1);
    assert.deepEqual(mm.recordings[0]!.body.FileIDs, [info.id]);
  });

  it("delivers a recording index first, byte for byte as ffmpeg's +faststart writes it, resuming across the index", async () => {
    // The same media muxed twice by ffmpeg: its index last (as the recorder writes it), and first.
    const media = join(dir, 'media.mp4');
    execFileSync('ffmpeg', [
      ...['-loglevel', 'error', '-f', 'lavfi', '-i', 'testsrc2=s=640x480:r=15', '-f', 'lavfi', '-i', 'sine=r=48000'],
      ...['-t', '10', '-c:v', 'libx264', '-preset', 'ultrafast', '-qp', '0', '-c:a', 'aac', media], // 4 MB: cut in four
    ]);
    const [last, first] = [join(dir, 'index-last.mp4'), join(dir, 'index-first.mp4')];
    execFileSync('ffmpeg', ['-loglevel', 'error', '-i', media, '-c', 'copy', last]);
    execFileSync('ffmpeg', ['-loglevel', 'error', '-i', media, '-c', 'copy', '-movflags', '+faststart', first]);
    const want = readFileSync(first);
    assert.ok(!readFileSync(last).equals(want), 'ffmpeg wrote the index last');
    const read = async (source: FileSource, from: number) => Buffer.concat(await source.read(from).toArray());
    const reordered = fastStart(last);
    assert.equal(reordered.size, want.length);
    // From the start, from inside ftyp, inside the index, at its end, inside the media.
    const moovEnd = want.indexOf('free', 0, 'latin1') - 4;
    for (const from of [0, 20, 100, moovEnd, moovEnd + 1, want.length - 1])
      assert.ok((await read(reordered, from)).equals(want.subarray(from)), `read from ${from}`);
    assert.ok((await read(fastStart(first), 0)).equals(want), 'a file already index first is read as it is');

    const cuts = mm.log.filter((l) => / 204$/.test(l)).length;
    const info = await client.upload(callId, reordered, 'call.mp4');
    assert.ok(mm.file(info.id)!.equals(want), 'Mattermost got the file index first, whole');
    assert.ok(mm.log.filter((l) => / 204$/.test(l)).length - cuts >= 2, 'it was cut and resumed');
  });

  it('keeps trying while Mattermost answers 500, and resumes the upload where it stood', async () => {
    const data = randomBytes(1500 * 1024);
    const path = join(dir, 'retry.mp4');
    writeFileSync(path, data);
    mm.failNext = 3;
    const info = await client.upload(callId, fileSource(path));
    assert.ok(mm.file(info.id)!.equals(data));
    assert.ok(
      notes.some((n) => /failed \(attempt 1 of 5\): 500/.test(n)),
      notes.join('\n'),
    );
  });

  it('resumes an upload whose connection drops midway from the offset Mattermost kept', async () => {
    const data = randomBytes(2 * 1024 * 1024 + 4321);
    const path = join(dir, 'dropped.mp4');
    writeFileSync(path, data);
    // Inside the first request (cut at 1 MiB): the bytes before the drop are kept, not sent twice.
    mm.cutNextUploadAt = 300_000;
    const info = await client.upload(callId, fileSource(path));
    assert.ok(mm.file(info.id)!.equals(data), 'the bytes arrived whole and in order');
    assert.ok(
      mm.log.some((l) => /cut after 300000 bytes$/.test(l)),
      mm.log.join('\n'),
    );
    assert.ok(
      notes.some((n) => /upload of dropped\.mp4 failed \(attempt 1 of 5\)/.test(n)),
      notes.join('\n'),
    );
  });

  it('uploads a recording of hundreds of MB reading it as it is sent, not into memory', async () => {
    // The uploader is its own process, so its memory is its own (the stand-in keeps what it gets).
    const big = new MattermostStandIn({ authToken: token });
    await big.start();
    const path = join(dir, 'hour.mp4');
    const size = 192 * 1024 * 1024;
    writeFileSync(path, '');
    truncateSync(path, size); // sparse: zeros, no disk
    const module = (name: string) => JSON.stringify(new URL(`../workers/shared/${name}.js`, import.meta.url).href);
    const script = `const { BotClient } = await import(${module('mattermost')});
      const { fileSource } = await import(${module('file-source')});
      const bot = new BotClient({ siteUrl: ${JSON.stringify(big.url)}, authToken: ${JSON.stringify(token)} });
      const info = await bot.upload(${JSON.stringify(callId)}, fileSource(${JSON.stringify(path)}));
      const hwm = /VmHWM:\\s+(\\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1];
      console.log(JSON.stringify({ size: info.size, peakMb: Number(hwm) / 1024 }));`;
    const child = spawn(process.execPath, [
      '--input-type=module',
      '-e',
      `import { readFileSync } from 'node:fs';\n${script}`,
    ]);
    let out = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (out += c));
    const [code] = await once(child, 'exit');
    await big.close();
    assert.equal(code, 0, out);
    const { size: sent, peakMb } = JSON.parse(out) as { size: number; peakMb: number };
    assert.equal(sent, size);
    // Node and undici alone take about 60 MB; fetch read the whole file ahead of the socket.
    assert.ok(peakMb < 150, `the uploader's peak RSS was ${peakMb.toFixed(0)} MB for a ${size >> 20} MB file`);
  });

  it('reports job status with the error under "omitempty", as the plugin reads it', async () => {
    const jobId = id();
    await client.reportStatus(callId, jobId, 'recording', 'started');
    await client.reportStatus(callId, jobId, 'recording', 'failed', 'could not join the call: token expired');
    assert.deepEqual(
      mm.statuses.slice(-2).map((s) => s.body),
      [
        { JobType: 'recording', Status: 'started' },
        { JobType: 'recording', Status: 'failed', omitempty: 'could not join the call: token expired' },
      ],
    );
  });

  it('gives up at once on a bad token, and after the last attempt on a server that stays down', async () => {
    const bad = new BotClient({ siteUrl: mm.url, authToken: id(), retry: { attempts: 5, stepMs: 50 } });
    await assert.rejects(
      bad.filename(callId),
      /failed after 1 attempt\(s\): 401 Unauthorized: Invalid or expired session/,
    );
    mm.failNext = 10;
    await assert.rejects(client.filename(callId), /GET \/calls\/[a-z0-9]+\/filename failed after 5 attempt\(s\): 500/);
    mm.failNext = 0;
  });

  it('a site that redirects, answers without end or keeps nothing of an upload: each fails saying so, and nothing else is asked', async () => {
    let elsewhere = 0;
    const other = createServer((_req, res) => {
      elsewhere++;
      res.end('{"filename":"x"}');
    });
    let mode: 'redirect' | 'long' | 'stuck' | 'beyond' = 'redirect';
    let requests = 0;
    const site = createServer(async (req, res) => {
      requests++;
      for await (const _ of req);
      if (mode === 'redirect') return res.writeHead(302, { location: `${urlOf(other)}/latest/meta-data` }).end();
      if (mode === 'long') return res.end(JSON.stringify({ filename: 'x'.repeat(2 * 1024 * 1024) }));
      if (req.url!.endsWith('/bot/uploads')) return res.end('{"id":"u1"}');
      if (requests > 100) return res.writeHead(400).end(); // a client that never gives up gets this
      if (req.method === 'POST') return res.writeHead(204).end(); // the data: nothing kept
      res.end(JSON.stringify({ file_offset: mode === 'stuck' ? 0 : 1e12 }));
    });
    const urlOf = (s: typeof site) => `http://127.0.0.1:${(s.address() as { port: number }).port}`;
    for (const s of [other, site]) await once(s.listen(0, '127.0.0.1'), 'listening');
    const bot = new BotClient({ siteUrl: urlOf(site), authToken: id(), retry: { attempts: 3, stepMs: 10 } });
    const path = join(dir, 'small.mp4');
    writeFileSync(path, randomBytes(1000));
    try {
      await assert.rejects(
        bot.filename(callId),
        /failed after 1 attempt\(s\): 302 Found: the site redirects to http:\/\/127\.0\.0\.1:\d+\/latest\/meta-data, which is not followed/,
      );
      mode = 'long';
      await assert.rejects(
        bot.filename(callId),
        /failed after 1 attempt\(s\): the site's answer is longer than 1048576 bytes/,
      );
      mode = 'stuck';
      requests = 0;
      await assert.rejects(
        bot.upload(callId, fileSource(path)),
        /upload of small\.mp4 failed after 3 attempt\(s\): the site kept nothing of a request from byte 0 of 1000/,
      );
      mode = 'beyond';
      requests = 0;
      await assert.rejects(
        bot.upload(callId, fileSource(path)),
        /upload of small\.mp4 failed after 1 attempt\(s\): the site gave the upload's offset as 1000000000000, of 1000 bytes/,
      );
      assert.equal(elsewhere, 0, 'the redirect was not followed');
    } finally {
      for (const s of [other, site]) s.close();
    }
  });

  it('makes file names safe', () => {
    assert.equal(sanitizeFilename('Call: Q4 planning / review'), 'Call_Q4_planning_review');
    assert.equal(sanitizeFilename('../../etc/passwd'), 'etc_passwd');
  });
});

// The parts' ffmpegs are started by a helper process (workers/shared/spawner.ts), so that the
// recorder is not forked once per part. Real ffmpegs; the helper is the real program.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Spawner } from '../workers/shared/spawner.js';
import { cpuSeconds, statFields } from '../workers/shared/proc-stat.js';
import { children, waitFor } from './helpers.js';

const cmdline = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
/** The ffmpegs below `pid` (through setpriv, which execs itself away). */
const ffmpegsBelow = (pid: number): number[] =>
  children(pid).flatMap((c) => (cmdline(c)[0] === 'ffmpeg' ? [c] : ffmpegsBelow(c)));
/** The spawner helpers this test process started. */
const helpers = () => children(process.pid).filter((c) => cmdline(c).some((a) => a.endsWith('spawner-process.js')));
/** A generated picture for `seconds` of real time: an ffmpeg that runs long enough to be looked at. */
const slow = (seconds: number, out: string) => [
  ...['-loglevel', 'error', '-re', '-f', 'lavfi', '-i', `testsrc2=size=160x120:rate=10:duration=${seconds}`],
  ...['-y', out],
];

describe('spawner', () => {
  const dir = mkdtempSync(join(tmpdir(), 'spawner-'));

  it("starts each ffmpeg from its helper, not from the caller, at the priority asked, and reports each one's end", async () => {
    const spawner = new Spawner();
    try {
      const out = join(dir, 'a.mkv');
      const running = spawner.ffmpeg(slow(3, out), { nice: 19 });
      const ffmpeg = await waitFor('the ffmpeg', () => ffmpegsBelow(process.pid)[0], 30_000);
      assert.deepEqual(
        children(process.pid).filter((c) => cmdline(c)[0] === 'ffmpeg'),
        [],
        'no ffmpeg is a child of the caller',
      );
      const [helper] = helpers();
      assert.ok(helper, 'the helper runs');
      assert.ok(ffmpegsBelow(helper).includes(ffmpeg), 'the ffmpeg is below the helper');
      // /proc/<pid>/stat: the nice value is its 19th field
      const nice = Number(statFields(ffmpeg)[16]);
      assert.equal(nice, 19);
      await running;
      assert.ok(existsSync(out), 'the file is written');

      await assert.rejects(
        spawner.ffmpeg(['-loglevel', 'error', '-no-such-option']),
        /ffmpeg exited with 1: .*Unrecognized option 'no-such-option'/,
      );
    } finally {
      await spawner.close();
    }
  });

  it('tells the CPU each ffmpeg used, its own and no more', async () => {
    const spawner = new Spawner();
    /** Runs `args` from the helper: the CPU it reports, the most its process was seen using, and its wall time. */
    const run = async (args: string[]) => {
      const started = performance.now();
      const running = spawner.ffmpeg(args);
      let seenS = 0;
      let done = false;
      void running.finally(() => (done = true)).catch(() => {});
      while (!done) {
        // A process listed may be reaped before it is read: the look is skipped, and the next one reads it.
        try {
          for (const pid of ffmpegsBelow(process.pid)) seenS = Math.max(seenS, cpuSeconds(pid));
        } catch {}
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      return { ...(await running), seenS, wallS: (performance.now() - started) / 1000 };
    };
    try {
      const heavy = await run([
        ...['-loglevel', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=1280x720:rate=20:duration=4'],
        ...['-c:v', 'libx264', '-preset', 'veryfast', '-f', 'null', '-'],
      ]);
      assert.ok(heavy.cpuS !== undefined && heavy.seenS > 0.3, `a costly encode (${heavy.seenS} CPU s seen)`);
      assert.ok(heavy.cpuS >= heavy.seenS, `${heavy.cpuS} CPU s told, at least the ${heavy.seenS} seen`);
      assert.ok(heavy.cpuS <= heavy.wallS * availableParallelism(), `${heavy.cpuS} CPU s told, in ${heavy.wallS} s`);
      // The next one's figure is its own: with the first's counted it would exceed what it could use.
      const light = await run([
        '-loglevel',
        'error',
        '-f',
        'lavfi',
        '-i',
        'color=size=64x64:rate=10:duration=0.5',
        '-f',
        'null',
        '-',
      ]);
      assert.ok(light.cpuS !== undefined && light.cpuS >= light.seenS, `${light.cpuS} CPU s told`);
      assert.ok(
        light.cpuS < heavy.seenS,
        `${light.cpuS} CPU s told for a tiny run, after ${heavy.cpuS} for the encode`,
      );
    } finally {
      await spawner.close();
    }
  });

  it('kills an aborted ffmpeg; closing ends the helper; with the helper killed it starts them itself', async () => {
    const spawner = new Spawner();
    try {
      const abort = new AbortController();
      const running = spawner.ffmpeg(slow(600, join(dir, 'b.mkv')), { signal: abort.signal });
      const ffmpeg = await waitFor('the ffmpeg', () => ffmpegsBelow(process.pid)[0], 30_000);
      abort.abort(new Error('stopped'));
      await assert.rejects(running, /stopped/);
      await waitFor('the aborted ffmpeg to end', () => !existsSync(`/proc/${ffmpeg}`) || undefined, 30_000);

      const [helper] = helpers();
      process.kill(helper!, 'SIGKILL');
      await waitFor('the helper to end', () => !children(process.pid).includes(helper!) || undefined, 30_000);
      const out = join(dir, 'c.mkv');
      await spawner.ffmpeg(slow(1, out));
      assert.ok(existsSync(out), 'an ffmpeg started after the helper died still runs');
    } finally {
      await spawner.close();
    }
    assert.deepEqual(helpers(), [], 'no helper is left');
  });

  it("asks glibc for huge pages in each ffmpeg, unless given tunables of its own; where the kernel gives them on request, x264's buffers get them", async () => {
    /** Runs an ffmpeg from a helper started with GLIBC_TUNABLES as given; `look` sees it while it runs. */
    const ffmpegWith = async (tunables: string | undefined, args: string[], look: (pid: number) => Promise<void>) => {
      const given = process.env.GLIBC_TUNABLES;
      if (tunables === undefined) delete process.env.GLIBC_TUNABLES;
      else process.env.GLIBC_TUNABLES = tunables;
      const spawner = new Spawner(); // its helper takes the environment as it is now
      try {
        const running = spawner.ffmpeg(args);
        await look(await waitFor('the ffmpeg', () => ffmpegsBelow(process.pid)[0], 30_000));
        await running;
      } finally {
        await spawner.close();
        if (given === undefined) delete process.env.GLIBC_TUNABLES;
        else process.env.GLIBC_TUNABLES = given;
      }
    };
    const tunablesOf = (pid: number) =>
      readFileSync(`/proc/${pid}/environ`, 'utf8')
        .split('\0')
        .filter((v) => v.startsWith('GLIBC_TUNABLES='));
    const thp = '/sys/kernel/mm/transparent_hugepage/enabled';
    const thpOnRequest = existsSync(thp) && /\[(madvise|always)\]/.test(readFileSync(thp, 'utf8'));

    const x264 = [
      ...['-loglevel', 'error', '-re', '-f', 'lavfi', '-i', 'testsrc2=size=1280x720:rate=20:duration=8'],
      ...['-c:v', 'libx264', '-preset', 'veryfast', '-f', 'null', '-'],
    ];
    await ffmpegWith(undefined, x264, async (pid) => {
      assert.deepEqual(tunablesOf(pid), ['GLIBC_TUNABLES=glibc.malloc.hugetlb=1']);
      if (!thpOnRequest) return;
      const hugeKb = () =>
        Number(/AnonHugePages:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1]);
      await waitFor('huge pages in the ffmpeg', () => hugeKb() > 0, 30_000);
    });
    // the default value: changes nothing
    await ffmpegWith('glibc.malloc.tcache_count=7', slow(2, join(dir, 't.mkv')), async (pid) => {
      assert.deepEqual(tunablesOf(pid), ['GLIBC_TUNABLES=glibc.malloc.tcache_count=7']);
    });
  });

  it('closing kills what still runs', async () => {
    const spawner = new Spawner();
    const running = spawner.ffmpeg(slow(600, join(dir, 'd.mkv')));
    const ffmpeg = await waitFor('the ffmpeg', () => ffmpegsBelow(process.pid)[0], 30_000);
    await spawner.close();
    await assert.rejects(running, /ffmpeg/);
    await waitFor('the ffmpeg to end', () => !existsSync(`/proc/${ffmpeg}`) || undefined, 30_000);
    rmSync(dir, { recursive: true, force: true });
  });
});

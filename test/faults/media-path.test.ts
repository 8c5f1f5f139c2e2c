// Faults on the media path of a recorded call on the bundled SFU: packet loss and jitter, a
// participant's network gone for seconds, the SFU restarted. Each runs media-path.js, where
// iptables hands the call's packets (loopback, its own ports only) to a user-space netem
// (test/fixtures/netem/netem.c: this kernel has no netem qdisc) or drops them. Needs root and
// libnetfilter-queue (scripts/install-system-deps.sh); without them the tests say they were skipped.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { MediaFault, MediaResult } from './media-path.js';
import { ROUNDS, report } from './harness.js';

const SCRIPT = fileURLToPath(new URL('./media-path.js', import.meta.url));
const SOURCE = fileURLToPath(new URL('../../../test/fixtures/netem/netem.c', import.meta.url));

describe('faults: the media path', () => {
  const dir = mkdtempSync(join(tmpdir(), 'co-netem-'));
  const netem = join(dir, 'netem');
  let why = '';
  before(() => {
    try {
      execFileSync('gcc', ['-O2', '-o', netem, SOURCE, '-lnetfilter_queue'], { stdio: 'pipe' });
      execFileSync('iptables', ['-S', 'OUTPUT'], { stdio: 'pipe' });
    } catch (err) {
      why = `iptables and netem need root and libnetfilter-queue-dev: ${(err as Error).message}`;
    }
  });
  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  /** One call with `fault` at second `atSec` of `callSec`, recorded by the recorder job program. */
  const record = async (fault: MediaFault, callSec: number, atSec: number): Promise<MediaResult> => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [SCRIPT, JSON.stringify(fault), String(callSec), String(atSec)],
      { env: { ...process.env, NETEM_BIN: netem }, maxBuffer: 1 << 20, timeout: (callSec + 120) * 1000 },
    );
    return JSON.parse(stdout.trim().split('\n').at(-1)!);
  };

  const summary = (r: MediaResult) =>
    `recorded ${r.recordedSec.toFixed(1)} s; tone missing ${r.audioMissingSec.toFixed(2)} s, longest video freeze ${r.videoFrozenSec.toFixed(1)} s`;

  it('5% loss and 40 ± 30 ms jitter both ways: the recording is whole, with audio gaps near the loss rate', async (t) => {
    if (why) return t.skip(why);
    const results: MediaResult[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const r = await record({ netem: { lossPercent: 5, delayMs: 40, jitterMs: 30 } }, 20, 2);
      t.diagnostic(JSON.stringify({ ...r, log: undefined }));
      results.push(r);
      assert.equal(r.exitCode, 0, r.log);
      assert.ok(Math.abs(r.fileSec - r.recordedSec) < 1, summary(r));
      // Opus has no retransmission: lost packets are gaps. Both legs lose 5%: about 10% of 18 s.
      assert.ok(r.audioMissingSec < 0.2 * 18, summary(r));
      assert.ok(r.videoFrozenSec < 3, summary(r));
      assert.ok(r.audioAtEnd, summary(r));
    }
    const worst = results.reduce((a, b) => (b.audioMissingSec > a.audioMissingSec ? b : a));
    report({
      fault: 'media path: 5% loss, 40 ± 30 ms jitter',
      injected: results.reduce((n, r) => n + (r.netem?.dropped ?? 0), 0),
      jobs: results.length,
      lost: 0,
      twice: 0,
      recoverMs: null,
      note: `packets dropped of seen: ${results.map((r) => `${r.netem?.dropped}/${r.netem?.seen}`).join(', ')}; worst: ${summary(worst)}`,
    });
  });

  it("a participant's network gone for 5 s: the recording goes on and her media comes back into it", async (t) => {
    if (why) return t.skip(why);
    for (let round = 0; round < ROUNDS; round++) {
      const r = await record({ dropSec: 5 }, 20, 4);
      t.diagnostic(JSON.stringify({ ...r, log: undefined }));
      assert.equal(r.exitCode, 0, r.log);
      assert.ok(r.audioAtEnd, `her voice is back at the end: ${summary(r)}`);
      assert.ok(r.audioMissingSec < 5 + 3, summary(r));
      report({
        fault: "a participant's network gone 5 s",
        injected: 1,
        jobs: 1,
        lost: 0,
        twice: 0,
        recoverMs: (r.audioMissingSec - 5) * 1000,
        note: summary(r),
      });
    }
  });

  it('the SFU restarted mid-call: the recorder ends and keeps what it recorded, in a file', async (t) => {
    if (why) return t.skip(why);
    const r = await record({ sfuRestartSec: 2 }, 14, 4);
    t.diagnostic(JSON.stringify({ ...r, log: undefined }));
    assert.equal(r.exitCode, 0, r.log);
    // the call is gone with the SFU's state: the recorder ends, keeping what it recorded before
    assert.ok(r.recordedSec > 4 - 0.5 && r.fileSec > 4 - 0.5, summary(r));
    report({
      fault: 'SFU restarted mid-call',
      injected: 1,
      jobs: 1,
      lost: 0,
      twice: 0,
      recoverMs: null,
      note: `the recorder ended at the restart (it does not rejoin a restarted SFU) and posted what it had: ${summary(r)}`,
    });
  });
});

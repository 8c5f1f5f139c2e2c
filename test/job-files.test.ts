// The files a job program leaves in its directory, as the worker reads them: the program may be in
// a container (its directory mounted writable) while the worker runs as root on the host, so what
// it leaves there is a stranger's input.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readDelivering, readOutput } from '../src/jobs/contract.js';
import { hostPaths } from '../src/runners/runner.js';

describe("a job's files, as the worker reads them", () => {
  const root = mkdtempSync(join(tmpdir(), 'co-job-files-'));
  after(() => rmSync(root, { recursive: true, force: true }));
  let n = 0;
  const jobDir = () => {
    const dir = join(root, `job-${++n}`);
    mkdirSync(dir);
    return dir;
  };

  it('reads output.json and the delivering marker a program wrote, and rewrites its paths as they are on the host', () => {
    const dir = jobDir();
    writeFileSync(join(dir, 'output.json'), JSON.stringify({ file: '/artifacts/a.mp4', duration_ms: 5 }));
    writeFileSync(join(dir, 'delivering'), JSON.stringify({ file: '/job/recording.mp4' }));
    assert.equal(readDelivering(dir), '/job/recording.mp4');
    hostPaths(dir, [['/artifacts', '/data/artifacts']]);
    assert.deepEqual(readOutput(dir), { file: '/data/artifacts/a.mp4', duration_ms: 5 });
  });

  it('a FIFO in their place is not read: reading it held the worker for good', () => {
    const dir = jobDir();
    execFileSync('mkfifo', [join(dir, 'output.json'), join(dir, 'delivering')]);
    assert.equal(readOutput(dir), undefined);
    assert.equal(readDelivering(dir), undefined);
    hostPaths(dir, [['/artifacts', '/data/artifacts']]);
  });

  it("a link in output.json's place is neither read nor written through: the worker read any file into output_data and rewrote it", () => {
    const dir = jobDir();
    const elsewhere = join(root, 'not-the-jobs.json');
    const text = JSON.stringify({ secret: 'kept', path: '/artifacts/x' });
    writeFileSync(elsewhere, text);
    symlinkSync(elsewhere, join(dir, 'output.json'));
    symlinkSync(elsewhere, join(dir, 'delivering'));
    assert.equal(readOutput(dir), undefined);
    assert.equal(readDelivering(dir), undefined);
    hostPaths(dir, [['/artifacts', '/data/artifacts']]);
    assert.equal(readFileSync(elsewhere, 'utf8'), text, 'the file the link names is untouched');
  });

  it('an output.json nested past 16 deep, or over 1 MiB, is not taken: rewriting one 200,000 deep overflowed the stack', () => {
    const dir = jobDir();
    writeFileSync(join(dir, 'output.json'), `${'{"a":'.repeat(200_000)}1${'}'.repeat(200_000)}`);
    assert.equal(readOutput(dir), undefined);
    hostPaths(dir, [['/artifacts', '/data/artifacts']]);
    writeFileSync(join(dir, 'output.json'), JSON.stringify({ file: '/artifacts/a', pad: 'x'.repeat(1024 * 1024) }));
    assert.equal(readOutput(dir), undefined);
    writeFileSync(join(dir, 'output.json'), JSON.stringify({ a: { b: { c: { d: [1] } } } }));
    assert.deepEqual(readOutput(dir), { a: { b: { c: { d: [1] } } } });
  });
});

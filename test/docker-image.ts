// The Docker runner's test image: busybox (Debian's busybox-static) and test/fixtures/docker/job.sh,
// built from local files (no registry is reachable here). Used by its tests and bench/runners.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const TEST_IMAGE = 'calls-offloader-test-job:busybox';
const FIXTURE = fileURLToPath(new URL('../../test/fixtures/docker/', import.meta.url));

export function buildTestImage(): void {
  const ctx = mkdtempSync(join(tmpdir(), 'co-image-'));
  for (const f of ['Dockerfile', 'job.sh']) copyFileSync(join(FIXTURE, f), join(ctx, f));
  copyFileSync('/bin/busybox', join(ctx, 'busybox'));
  execFileSync('docker', ['build', '-q', '-t', TEST_IMAGE, ctx], {
    stdio: 'ignore',
    env: { ...process.env, DOCKER_BUILDKIT: '0' },
  });
  rmSync(ctx, { recursive: true, force: true });
}

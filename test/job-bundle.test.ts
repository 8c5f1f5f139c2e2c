// A job runs its program as one bundle (scripts/bundle-jobs.mjs). Inside it, a module that finds a
// file beside it by `import.meta.url` (the SRTP addon, the ffmpeg helper process, pocketsphinx's
// server, the models) must find what it found as tsc wrote it: each such URL is rewritten to its
// module's own place. The programs' tests run the bundles; this checks every such URL in them, and
// that a bundle's static imports are node's own modules (no file of ours or of node_modules).
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { isBuiltin } from 'node:module';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const OWN_URL = /new URL\("([^"]+)", import\.meta\.url\)\.href/g;

// The programs bundle-jobs.mjs bundles: each workers/<job>/program.js.
const workers = new URL('../workers/', import.meta.url);
const jobs = readdirSync(workers).filter((job) => existsSync(new URL(`${job}/program.js`, workers)));

test('the programs found to bundle are the recorder and the transcriber', () =>
  assert.deepEqual(jobs.sort(), ['recorder', 'transcriber']));

for (const job of jobs) {
  const bundle = new URL(`${job}/main.js`, workers);

  test(`the ${job} bundle: every module keeps its own import.meta.url`, () => {
    const source = readFileSync(bundle, 'utf8');
    const owners = [...source.matchAll(OWN_URL)].map((m) => m[1]);
    // The bundle's own URL is used once more, by its first line (require for bundled CommonJS):
    // every other use was rewritten.
    assert.equal(source.split('import.meta.url').length - 1, owners.length + 1);
    // Both jobs' bots load the SRTP addon from dist/bin.
    assert.ok(owners.includes('../../src/sfu/srtp-native.js'), owners.join(', '));
    for (const owner of new Set(owners)) {
      const module = new URL(owner, bundle);
      assert.ok(existsSync(module), `${owner} (${fileURLToPath(module)}) exists`);
      assert.match(readFileSync(module, 'utf8'), /import\.meta\.url/, `${owner} is a module that uses its URL`);
    }
  });

  test(`the ${job} bundle imports only node's own modules`, () => {
    const imports = [...readFileSync(bundle, 'utf8').matchAll(/^import .* from ["']([^"']+)["'];?$/gm)].map(
      (m) => m[1],
    );
    assert.ok(imports.length > 0, 'the bundle imports node modules');
    assert.deepEqual(
      imports.filter((spec) => !isBuiltin(spec)),
      [],
    );
  });
}

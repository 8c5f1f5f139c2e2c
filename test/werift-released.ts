// werift as released, beside the patched one in node_modules (patches/werift+*.patch): a bench
// runs a child process with each in the same run to measure the patch, and a test compares the two.
import { execFileSync } from 'node:child_process';
import { cpSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url)); // dist/test → the repo

let entry: string | undefined;

/**
 * The URL of released werift's ES module entry. The first call copies node_modules/werift and
 * reverses the patch on the copy, which stays inside node_modules so that werift's own
 * dependencies resolve as they do for the patched one.
 */
export function releasedWerift(): string {
  if (entry) return entry;
  const patch = readdirSync(join(ROOT, 'patches')).find((f) => f.startsWith('werift+'));
  if (!patch) throw new Error('patches/ holds no werift patch');
  const copy = join(ROOT, 'node_modules/.cache/werift-released');
  rmSync(copy, { recursive: true, force: true });
  cpSync(join(ROOT, 'node_modules/werift'), copy, { recursive: true });
  // patch-package's paths are a/node_modules/werift/…: -p3 makes them relative to the copy.
  execFileSync('patch', ['-R', '-s', '-p3', '-d', copy, '-i', join(ROOT, 'patches', patch)]);
  entry = pathToFileURL(join(copy, 'lib/index.mjs')).href;
  return entry;
}

/** Node options that make a child process `import 'werift'` as released. */
export function releasedWeriftArgs(): string[] {
  const hooks = new URL('./werift-released-hooks.js', import.meta.url).href;
  return [
    '--import',
    `data:text/javascript,import{register}from"node:module";register(${JSON.stringify(hooks)},{data:${JSON.stringify(releasedWerift())}})`,
  ];
}

// Cuts a staged app (build-job-image.sh's .job-image/app) down to what the job programs load: the
// service's packages (fastify, BullMQ, dockerode, the Kubernetes client, ...) and the native binaries
// of other platforms are most of node_modules and never run in a job.
//   node docker/prune-job-modules.mjs <app dir>
// Packages are found from the programs' own imports (static, dynamic and require.resolve), followed
// through package-lock.json; the whisper.cpp binding's name is computed at run time, so it is named
// here. Prints what it kept and removed.
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const app = resolve(process.argv[2] ?? '.');
// tsc's modules of the programs (their main.js is a bundle of these, scripts/bundle-jobs.mjs).
const ENTRIES = ['dist/workers/recorder/program.js', 'dist/workers/transcriber/program.js'];
const COMPUTED = [`@spader/node-whisper-cpp-${process.arch}-${process.platform}-cpu-gnu`];
const SPECIFIER = /(?:from\s+|import\(\s*|require(?:\.resolve)?\(\s*)'([^']+)'/g;

/** The bare package names the entries reach through their relative imports. */
function importedPackages() {
  const seen = new Set();
  const packages = new Set(COMPUTED);
  const visit = (file) => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const [, spec] of readFileSync(file, 'utf8').matchAll(SPECIFIER)) {
      if (spec.startsWith('.')) visit(resolve(dirname(file), spec));
      else if (!spec.startsWith('node:')) packages.add(spec.split('/').slice(0, spec.startsWith('@') ? 2 : 1).join('/'));
    }
  };
  for (const entry of ENTRIES) visit(join(app, entry));
  return packages;
}

/** package-lock paths (node_modules/a/node_modules/b) of the packages and all they depend on. */
function closure(roots) {
  const lock = JSON.parse(readFileSync(join(app, 'package-lock.json'), 'utf8')).packages;
  const keep = new Set();
  // Node's resolution: the nearest node_modules/<name> up from the dependant's own path.
  const find = (from, name) => {
    for (let base = from; ; ) {
      const path = base ? `${base}/node_modules/${name}` : `node_modules/${name}`;
      if (lock[path]) return path;
      if (!base) return undefined;
      const up = base.lastIndexOf('/node_modules/');
      base = up < 0 ? '' : base.slice(0, up);
    }
  };
  const add = (path) => {
    if (!path || keep.has(path)) return;
    keep.add(path);
    const entry = lock[path];
    for (const name of Object.keys({ ...entry.dependencies, ...entry.optionalDependencies, ...entry.peerDependencies })) add(find(path, name));
  };
  for (const name of roots) {
    const path = find('', name);
    if (!path) throw new Error(`${name} is imported by a job program but not in package-lock.json`);
    add(path);
  }
  return keep;
}

/** Every installed package directory under node_modules, as a lock path. */
function installed(dir = join(app, 'node_modules'), out = []) {
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir)) {
    if (name.startsWith('.')) continue;
    const path = join(dir, name);
    if (name.startsWith('@')) installed(path, out);
    else if (statSync(path).isDirectory()) {
      out.push(relative(app, path));
      installed(join(path, 'node_modules'), out);
    }
  }
  return out;
}

const roots = importedPackages();
const keep = closure(roots);
let removed = 0;
for (const path of installed()) {
  if (!keep.has(path) && existsSync(join(app, path))) {
    rmSync(join(app, path), { recursive: true });
    removed++;
  }
}
// onnxruntime-node ships every platform's binaries (about 290 MB); only this one's run here.
const ort = join(app, 'node_modules/onnxruntime-node/bin/napi-v6');
if (existsSync(ort)) {
  for (const platform of readdirSync(ort)) {
    for (const arch of readdirSync(join(ort, platform))) {
      if (platform !== process.platform || arch !== process.arch) rmSync(join(ort, platform, arch), { recursive: true });
    }
  }
}
console.log(`job modules: kept ${keep.size} packages for ${[...roots].sort().join(', ')}; removed ${removed}`);

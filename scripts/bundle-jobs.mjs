// Bundles each job program (workers/*/program.ts as tsc wrote it, with all it imports from dist
// and node_modules) into the one file a job runs, dist/workers/<job>/main.js, so a job's node
// loads one file instead of ~420 (werift's X.509 stack, undici, ajv and their imports; figures in
// the README's "Development"). The linked source map serves `node --enable-source-maps`.
//   node scripts/bundle-jobs.mjs        (after tsc; `npm run build` runs it)
// Our modules find files beside them (dist/bin's addon, the ffmpeg helper process, pocketsphinx's
// server) by `import.meta.url`; inside a bundle that would be the bundle's URL, so each one's is
// rewritten to where that module is, relative to the bundle (the tree can move, as into the job
// image). What is loaded at run time by a computed name (whisper.cpp's binding, onnxruntime's
// native module) stays outside, found from the bundle through node_modules as before.
import { existsSync, readdirSync, realpathSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

// esbuild names modules by their real paths.
const dist = realpathSync(fileURLToPath(new URL('../dist/', import.meta.url))) + sep;

function ownImportMetaUrl(bundle) {
  return {
    name: 'own-import-meta-url',
    setup(b) {
      b.onLoad({ filter: /\.js$/ }, async ({ path }) => {
        if (!path.startsWith(dist)) return undefined;
        const contents = await readFile(path, 'utf8');
        // Only .url is rewritten; another of import.meta's fields would be the bundle's.
        if (/import\.meta(?!\.url\b)/.test(contents)) throw new Error(`${path}: import.meta other than .url`);
        const from = relative(dirname(bundle), path).split(sep).join('/');
        const url = `new URL(${JSON.stringify(from)}, import.meta.url).href`;
        return { contents: contents.replaceAll('import.meta.url', url), loader: 'js' };
      });
    },
  };
}

for (const job of readdirSync(resolve(dist, 'workers'))) {
  const program = resolve(dist, 'workers', job, 'program.js');
  if (!existsSync(program)) continue;
  const outfile = resolve(dist, 'workers', job, 'main.js');
  await build({
    entryPoints: [program],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    // Bundled CommonJS calls require() for node's own modules; an ES module has none of its own.
    banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
    sourcemap: 'linked',
    logLevel: 'warning',
    plugins: [ownImportMetaUrl(outfile)],
  });
}

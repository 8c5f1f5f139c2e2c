// `npm run models:fetch -- <size>...`: downloads whisper.cpp models (ggml-<size>.bin) into MODELS_DIR
// where the internet is reachable (an admin's machine, an image build); jobs never download.
// The file is written under a temporary name and renamed only when complete and a ggml model.
import { mkdirSync, renameSync, rmSync, openSync, readSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { modelSizes } from '../../src/jobs/schema.js';
import { modelsDir } from './speech/whisper.js';
import { download } from '../shared/job.js';

const defaultSource = 'https://huggingface.co/ggerganov/whisper.cpp/resolve/main';
/** whisper.cpp publishes no plain "large": the latest large model is fetched under that name. */
const remoteName = (size: string) => (size === 'large' ? 'ggml-large-v3.bin' : `ggml-${size}.bin`);

/** ggml model files start with the magic 0x67676d6c ("ggml") as a little-endian uint32. */
function isGgml(path: string): boolean {
  const fd = openSync(path, 'r');
  const head = Buffer.alloc(4);
  readSync(fd, head, 0, 4, 0);
  closeSync(fd);
  return head.readUInt32LE(0) === 0x67676d6c;
}

async function fetchModel(size: string, dir: string, source = defaultSource): Promise<string> {
  if (!(modelSizes as readonly string[]).includes(size))
    throw new Error(`unknown model size ${JSON.stringify(size)}: one of ${modelSizes.join(', ')}`);
  mkdirSync(dir, { recursive: true });
  const url = `${source.replace(/\/$/, '')}/${remoteName(size)}`;
  const path = join(dir, `ggml-${size}.bin`);
  const part = `${path}.part`;
  try {
    await download(url, part).catch((err: Error) => {
      if (err.message.startsWith('GET ')) throw err; // the server answered, with an error status
      throw new Error(
        `${url} could not be reached (${(err.cause as Error | undefined)?.message ?? err.message}); fetch the model where the internet is reachable and copy it to ${path}`,
      );
    });
    if (!isGgml(part)) throw new Error(`${url} is not a ggml model file`);
    renameSync(part, path);
    return path;
  } finally {
    rmSync(part, { force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const sizes = process.argv.slice(2);
  const dir = modelsDir();
  if (sizes.length === 0) {
    process.stderr.write(
      `usage: npm run models:fetch -- <${modelSizes.join('|')}>... (into MODELS_DIR, now ${dir}; source WHISPER_MODELS_URL)\n`,
    );
    process.exit(2);
  }
  for (const size of sizes) {
    try {
      process.stdout.write(`fetched ${await fetchModel(size, dir, process.env.WHISPER_MODELS_URL || undefined)}\n`);
    } catch (err) {
      process.stderr.write(`models:fetch: ${(err as Error).message}\n`);
      process.exit(1);
    }
  }
}

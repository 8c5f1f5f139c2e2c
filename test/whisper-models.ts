// whisper.cpp models for tests, written by the project's shared tool (shared/tools beside the
// repository: a structurally valid ggml model with seeded random weights; in `scripted` mode every
// 30-s window decodes to one known segment). Nothing is downloaded.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const TOOL =
  process.env.WHISPER_MODEL_TOOL ??
  fileURLToPath(new URL('../../../shared/tools/make-test-whisper-model.mjs', import.meta.url));

export interface ModelOptions {
  size?: 'micro' | 'mini' | 'tiny' | 'base' | 'small';
  text?: string;
  /** the scripted segment's end in seconds */
  end?: number;
  mode?: 'scripted' | 'random';
}

export function makeWhisperModel(path: string, opts: ModelOptions = {}): string {
  if (!existsSync(TOOL)) throw new Error(`the test model tool is missing: ${TOOL} (set WHISPER_MODEL_TOOL)`);
  const args = [TOOL, path, '--size', opts.size ?? 'micro', '--mode', opts.mode ?? 'scripted'];
  if (opts.text) args.push('--text', opts.text);
  if (opts.end) args.push('--end', String(opts.end));
  execFileSync(process.execPath, args, { stdio: 'pipe' });
  return path;
}

/** Damaged copies of a good model: cut short, of another shape than its tensors, or without the " " token. */
export function damagedModel(good: string, out: string, how: 'truncated' | 'wrong-shape' | 'no-space-token'): string {
  const b = readFileSync(good);
  if (how === 'truncated') {
    writeFileSync(out, b.subarray(0, Math.floor(b.length / 2)));
    return out;
  }
  if (how === 'wrong-shape') {
    b.writeInt32LE(b.readInt32LE(12) * 2, 12); // n_audio_state: the tensors no longer fit it
  } else {
    // The vocabulary is length-prefixed tokens; " " (id 220) is the one-byte token between " w219" and " w221".
    const at = b.indexOf(Buffer.from([0x32, 0x31, 0x39, 1, 0, 0, 0, 0x20, 5, 0, 0, 0, 0x20, 0x77, 0x32, 0x32, 0x31]));
    if (at < 0) throw new Error('the " " token was not found in the model');
    b[at + 7] = 0x7f;
  }
  writeFileSync(out, b);
  return out;
}

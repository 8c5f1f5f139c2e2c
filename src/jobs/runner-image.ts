// Which job images a job type may name, checked the way upstream does (registry, image name,
// semantic version at least the supported minimum, optional -devN suffix) plus image digests.
import type { JobType } from './schema.js';

export const imageForType: Record<JobType, string> = {
  recording: 'calls-recorder',
  transcribing: 'calls-transcriber',
  captioning: 'calls-transcriber',
};

const minVersion: Record<string, [number, number, number]> = {
  'calls-recorder': [0, 6, 0],
  'calls-transcriber': [0, 1, 0],
};

export interface RunnerImage {
  /** `calls-recorder` or `calls-transcriber`: what the process runner maps to a program. */
  name: string;
  reference: string;
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/**
 * Parses a runner reference for a job type. Returns the image, or a sentence saying what is
 * wrong. With devMode any `<anything>/<image>[:tag|@digest]` whose image name fits the type passes.
 */
export function parseRunner(runner: string, type: JobType, registry: string, devMode: boolean): RunnerImage | string {
  const name = imageForType[type];
  if (devMode) {
    const m = /^(?:[^\s@]+\/)?(calls-[a-z]+?)(?:-daily)?(?:[:@][^\s]+)?$/.exec(runner);
    if (m && m[1] === name) return { name, reference: runner };
    return `runner ${JSON.stringify(runner)} is not a ${name} image`;
  }
  const semver = '(0|[1-9]\\d*)\\.(0|[1-9]\\d*)\\.(0|[1-9]\\d*)';
  const tag = new RegExp(`^${escapeRegExp(registry)}/${name}(?:-daily)?:v${semver}(?:-dev\\d*)?$`).exec(runner);
  const digest = new RegExp(`^${escapeRegExp(registry)}/${name}@sha256:[0-9a-f]{64}$`).test(runner);
  if (digest) return { name, reference: runner };
  if (!tag) {
    return `runner must be ${registry}/${name}:vX.Y.Z (or @sha256:<digest>) for ${type} jobs, got ${JSON.stringify(runner)}`;
  }
  const version = [Number(tag[1]), Number(tag[2]), Number(tag[3])];
  const min = minVersion[name]!;
  for (let i = 0; i < 3; i++) {
    if (version[i]! > min[i]!) break;
    if (version[i]! < min[i]!) return `runner ${runner} is older than the minimum supported ${name} v${min.join('.')}`;
  }
  return { name, reference: runner };
}

/** `registry/calls-recorder-daily:v1.2.3-dev` → `calls-recorder`. */
export function imageNameOf(reference: string): string {
  const last = reference.slice(reference.lastIndexOf('/') + 1);
  return last.split(/[:@]/)[0]!.replace(/-daily$/, '');
}

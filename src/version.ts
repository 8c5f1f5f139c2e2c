// Build information for GET /version, taken from package.json and the environment the image was built in.
import { readFileSync } from 'node:fs';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

export const version = {
  buildVersion: `v${pkg.version}`,
  buildDate: process.env.BUILD_DATE ?? '',
  buildHash: process.env.BUILD_HASH ?? '',
};

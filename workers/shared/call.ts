// Where a job joins its call, by one rule: with `site_url` the call is on that Mattermost server
// (the plugin's websocket, as the Calls bot with `auth_token`, for the plugin's recording or
// transcription id); without it, on the bundled SFU the worker names (SFU_URL, with the bot join
// token SFU_TOKEN it minted for this call). Both speak the same protocol: one client joins either.
import { rootCertificates } from 'node:tls';
import type { HeadlessOptions } from '../../src/sfu/client/participant.js';
import { useNativeSrtp } from '../../src/sfu/srtp-native.js';
import type { BotClient } from './mattermost.js';
import { workerSetting } from './job.js';

export interface CallSite {
  where: 'mattermost' | 'sfu';
  url: string;
  token: string;
  jobId?: string;
}

export function callSite(
  inputs: { site_url?: string; auth_token?: string },
  pluginJobId: string | undefined,
): CallSite {
  if (inputs.site_url)
    return { where: 'mattermost', url: inputs.site_url, token: inputs.auth_token!, jobId: pluginJobId };
  return { where: 'sfu', url: workerSetting('SFU_URL'), token: workerSetting('SFU_TOKEN') };
}

export const describeSite = (site: CallSite) =>
  site.where === 'mattermost' ? `the Mattermost server at ${site.url}` : `the bundled SFU at ${site.url}`;

/**
 * A job's bot stores or transcribes what it receives, so its media socket is read every 20 ms
 * rather than woken for each datagram (src/sfu/client/batched-receive.ts).
 */
const RECEIVE_EVERY_MS = 20;

/**
 * The calls client's options for this job: names from the bot API, the site's private CA trusted,
 * media read in batches, SRTP through the addon (src/sfu/srtp-native.ts) where it was built.
 */
export function callOptions(
  site: CallSite,
  callId: string,
  bot: BotClient | undefined,
  log: (m: string) => void,
): Omit<HeadlessOptions, 'subscribe'> {
  log(`SRTP: ${useNativeSrtp()}`);
  return {
    siteUrl: site.url,
    token: site.token,
    callId,
    jobId: site.jobId,
    profile: site.where === 'mattermost' && bot ? (sessionId) => bot.profile(callId, sessionId) : undefined,
    ca: bot?.ca ? [...rootCertificates, bot.ca] : undefined,
    receiveEveryMs: RECEIVE_EVERY_MS,
    log,
  };
}

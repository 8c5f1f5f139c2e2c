// The whole service for end-to-end tests: API, a worker running the real job programs with the
// process runner, the SFU, and the Mattermost stand-in; with the plugin-side calls the tests make.
import Docker from 'dockerode';
import type { Browser, Page } from 'puppeteer-core';
import { createLogger } from '../src/log.js';
import type { Config } from '../src/config.js';
import { LABELS } from '../src/runners/docker.js';
import { startSfuInstance } from '../src/services.js';
import { MattermostStandIn, type StandInOptions } from './mattermost-standin.js';
import {
  type Api,
  type InProcessWorker,
  basic,
  call,
  cleanup,
  freePort,
  ids,
  recordingJob,
  startApi,
  startWorker,
  testConfig,
  waitFor,
} from './helpers.js';

export class ServiceStack {
  readonly authToken = ids();
  readonly client = basic(ids());
  config!: Config;
  readonly mm: MattermostStandIn;
  private readonly configOverrides: Record<string, string>;
  api!: Api;
  private worker!: InProcessWorker;
  private sfu!: Awaited<ReturnType<typeof startSfuInstance>>;

  /**
   * `icePorts`: a UDP range of its own per suite, shared by the bundled SFU (lower half) and the
   * calls the Mattermost stand-in holds (upper half); `standIn`: the stand-in's options but the token.
   */
  constructor(opts: {
    icePorts: string;
    stopGraceSec: number;
    standIn: Omit<StandInOptions, 'authToken' | 'icePorts'>;
  }) {
    const [lo, hi] = opts.icePorts.split('-').map(Number) as [number, number];
    const mid = Math.floor((lo + hi) / 2);
    this.configOverrides = {
      JOBS_PROCESSPROGRAMS: '', // the real job programs
      SFU_ICEPORTRANGE: `${lo}-${mid}`,
      JOBS_STOPGRACESEC: String(opts.stopGraceSec),
      // `npm run test:job-image`: the same suites with the jobs in the real job image (Docker runner)
      ...(process.env.TEST_JOB_IMAGE
        ? {
            JOBS_APITYPE: 'docker',
            JOBS_JOBIMAGES: `calls-recorder=${process.env.TEST_JOB_IMAGE},calls-transcriber=${process.env.TEST_JOB_IMAGE}`,
            DOCKER_NETWORK: 'host',
            JOBS_DOCKERLIMITS: 'recording=2/2048,transcribing=2/4096,captioning=2/4096',
          }
        : {}),
    };
    this.mm = new MattermostStandIn({ ...opts.standIn, authToken: this.authToken, icePorts: [mid + 1, hi] });
  }

  async start(): Promise<void> {
    // the SFU's port is told to the jobs before it listens: one the kernel found free
    this.config = testConfig({ ...this.configOverrides, SFU_LISTENADDRESS: `127.0.0.1:${await freePort()}` });
    await this.mm.start();
    this.api = await startApi(this.config);
    this.worker = await startWorker(this.config);
    this.sfu = await startSfuInstance(this.config, createLogger(this.config, 'sfu'));
  }

  async stop(): Promise<void> {
    await this.sfu.close();
    await this.worker.close();
    await this.api.close();
    await this.mm.close();
    await cleanup(this.config);
    if (process.env.TEST_JOB_IMAGE) {
      // the Docker runner keeps a failed job's container (its logs); the suite's go with it
      const docker = new Docker();
      const filters = { label: [`${LABELS.service}=${this.config.redisPrefix}`] };
      for (const c of await docker.listContainers({ all: true, filters }))
        await docker.getContainer(c.Id).remove({ force: true });
    }
  }

  /** An API call as the plugin makes it. */
  request(method: string, path: string, body?: unknown) {
    return call(this.api.url, method, path, this.client, body);
  }

  /**
   * A browser page joined to the call on the Mattermost stand-in, its camera and microphone
   * published. A page that does not connect is reported with its signalling steps and console,
   * closed, and joined once more (a person whose join hangs tries again); a second failure fails
   * the test. (Once in CI a late joiner did not connect within 45 s; not seen in 14 loaded runs.)
   */
  async joinPage(browser: Browser, callId: string, user: string, name: string): Promise<Page> {
    for (let attempt = 1; ; attempt++) {
      const page = await browser.newPage();
      const consoleLines: string[] = [];
      page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
      await page.goto(this.mm.joinUrl(callId, user, name));
      try {
        await page.waitForFunction(
          () => (window as any).callState?.published?.length === 2 && (window as any).callState.connected,
          // Chromium's encoders, the recorder and its compose share 2 cores here
          { timeout: 45_000 },
        );
        return page;
      } catch (err) {
        const state = await page.evaluate(() => (window as any).callState).catch(() => undefined);
        const report = `${user}'s page did not connect (attempt ${attempt}): ${(err as Error).message}\ncallState: ${JSON.stringify(state)}\nconsole:\n${consoleLines.join('\n')}`;
        if (attempt === 2) throw new Error(report);
        process.stderr.write(`${report}\njoining again\n`);
        await page.close();
      }
    }
  }

  /** A recording job's request as the plugin sends it for a call held by the stand-in. */
  recordingJob(callId: string, recordingId = ids()) {
    return recordingJob(callId, { site_url: this.mm.url, recording_id: recordingId, auth_token: this.authToken });
  }

  /** POST /jobs as the plugin does, after recording/start made the plugin's job (the bot may join for it). */
  createJob(body: { type: string; input_data: Record<string, unknown> } & Record<string, unknown>) {
    const pluginJob = body.input_data.recording_id ?? body.input_data.transcription_id;
    if (typeof pluginJob === 'string') this.mm.addJob(pluginJob, String(body.input_data.call_id));
    return this.request('POST', '/jobs', body);
  }

  /** The job once it has ended, and its log; a job that does not end fails the test with its log. */
  async finished(jobId: string, timeoutMs: number) {
    const log = async () => (await this.request('GET', `/jobs/${jobId}/logs`)).text;
    const job = await waitFor(
      'job finished',
      async () => {
        const j = (await this.request('GET', `/jobs/${jobId}`)).json;
        return ['succeeded', 'failed', 'canceled'].includes(j.status) ? j : undefined;
      },
      timeoutMs,
    ).catch(async (err) => {
      throw new Error(`${err.message}; its log:\n${await log()}`);
    });
    return { job, log: await log() };
  }
}

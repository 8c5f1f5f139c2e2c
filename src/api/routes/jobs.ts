// The job routes: upstream's create/get/logs/delete/init, plus stop and listing. A client sees
// and controls only its own jobs; the admin sees all. Another client's job answers 404, so that
// job ids do not leak.
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Config } from '../../config.js';
import {
  Id,
  Job,
  JobConfig,
  StringEnum,
  inputSchemas,
  isJobType,
  isLive,
  jobStatuses,
  jobTypes,
  type InputData,
  type JobType,
} from '../../jobs/schema.js';
import { checkInput, coerceInput, withoutSecrets } from '../../jobs/input-data.js';
import { mediaRefusal, mediaRefused } from '../../jobs/media-access.js';
import { imageForType, parseRunner } from '../../jobs/runner-image.js';
import { type JobRecord, type JobStore, isActive, isFinal, toApiJob } from '../../store/jobs.js';
import { enqueue, type Queues } from '../../queue/queues.js';
import type { Runner } from '../../runners/runner.js';
import type { ClientStore } from '../../store/clients.js';
import { type Principal, claimCall } from '../auth.js';
import { ApiError } from '../errors.js';
import { waitLimitMs } from '../../queue/sweeper.js';

const IdParams = Type.Object({ id: Id('Job id.') });
type IdParams = Static<typeof IdParams>;

const ListQuery = Type.Object(
  {
    type: Type.Optional(StringEnum(jobTypes)),
    status: Type.Optional(StringEnum(jobStatuses)),
    page: Type.Integer({ minimum: 0, maximum: 100_000, default: 0, description: 'Page, from 0.' }),
    per_page: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
  },
  { additionalProperties: false },
);
type ListQuery = Static<typeof ListQuery>;

// Go field names without json tags: newer plugins send Runners, older ones Runner.
const InitBody = Type.Object(
  {
    Runners: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 512 }), { minItems: 1, maxItems: 16 })),
    Runner: Type.Optional(Type.String({ minLength: 1, maxLength: 512 })),
  },
  { additionalProperties: false, anyOf: [{ required: ['Runners'] }, { required: ['Runner'] }] },
);
type InitBody = Static<typeof InitBody>;

const ErrorBody = Type.Object({ error: Type.String(), code: Type.String() });

export interface JobRoutesDeps {
  config: Pick<
    Config,
    | 'imageRegistry'
    | 'devMode'
    | 'maxDurationSec'
    | 'mediaUrlAllow'
    | 'siteUrls'
    | 'maxJobsPerClient'
    | 'maxFinishedJobsPerClient'
    | 'startTimeoutSec'
    | 'queueTimeoutSec'
  >;
  store: JobStore;
  clients: ClientStore;
  queues: Queues;
  runner: Runner;
  publishStop(id: string): Promise<void>;
}

export function jobRoutes(
  app: FastifyInstance,
  { config, store, clients, queues, runner, publishStop }: JobRoutesDeps,
): void {
  /**
   * site_url receives the bot's token and the artifacts: only a site the admin listed
   * (JOBS_SITEURLS), or else the one this client first used for this job type.
   */
  async function checkSite(siteUrl: string, type: JobType, who: Principal): Promise<void> {
    let origin: string;
    try {
      origin = new URL(siteUrl).origin; // the schema's pattern lets through hosts the URL parser refuses
    } catch {
      throw new ApiError(400, 'input_data.site_url is not a valid URL');
    }
    if (config.siteUrls.length > 0) {
      if (!config.siteUrls.includes(origin)) {
        throw new ApiError(
          400,
          `input_data.site_url ${origin} is not a Mattermost site this service serves (JOBS_SITEURLS)`,
        );
      }
      return;
    }
    if (who.admin) return;
    const pinned = await clients.pinSite(who.clientId, type, origin);
    if (pinned !== origin) {
      throw new ApiError(
        400,
        `input_data.site_url ${origin} is not the site this client's ${type} jobs go to (${pinned}, its first); an admin lists the sites with JOBS_SITEURLS`,
      );
    }
  }

  const bodySchema = JobConfig(config.maxDurationSec);
  type Body = Static<typeof bodySchema>;

  /** The job if the caller may see it; 404 otherwise. */
  async function ownJob(request: FastifyRequest<{ Params: IdParams }>): Promise<JobRecord> {
    const job = await store.get(request.params.id);
    const who = request.principal!;
    if (!job || (!who.admin && job.client !== who.clientId))
      throw new ApiError(404, `job ${request.params.id} not found`);
    return job;
  }

  app.post<{ Body: Body }>(
    '/jobs',
    {
      // Admins' overrides arrive as strings ("width": "1920"): read them as their inputs' types first.
      preValidation: async (request) => {
        const body = request.body as { type?: unknown; input_data?: unknown } | undefined;
        const input = body?.input_data;
        if (
          typeof body?.type === 'string' &&
          isJobType(body.type) &&
          input &&
          typeof input === 'object' &&
          !Array.isArray(input)
        ) {
          body.input_data = coerceInput(inputSchemas[body.type], input as Record<string, unknown>);
        }
      },
      schema: {
        summary: 'Create a job',
        description: 'Validates the job and queues it. Answers 200 with the job record, as upstream.',
        tags: ['jobs'],
        body: bodySchema,
        response: { 200: Job, 400: ErrorBody },
      },
    },
    async (request) => {
      const { type, runner: reference, max_duration_sec } = request.body;
      const input = request.body.input_data as InputData;
      const image = parseRunner(reference, type, config.imageRegistry, config.devMode);
      if (typeof image === 'string') throw new ApiError(400, image);
      const problem = checkInput(input);
      if (problem) throw new ApiError(400, problem);
      if (typeof input.site_url === 'string') await checkSite(input.site_url, type, request.principal!);
      if (typeof input.media_url === 'string') {
        const refusal = mediaRefusal(input.media_url, config.mediaUrlAllow, input.site_url as string | undefined);
        if (refusal) throw new ApiError(400, `input_data.${mediaRefused(refusal)}`);
      }
      // A call on the bundled SFU is its client's; one on a Mattermost site is Mattermost's to
      // guard (the job joins it with the plugin's bot token): a claim there would let any client
      // that learnt a channel id keep the plugin's jobs off it.
      if (typeof input.call_id === 'string' && input.site_url === undefined)
        await claimCall(clients, request.principal!, input.call_id);
      const live = isLive(type, input);
      const waitMs = waitLimitMs(live, {
        startTimeoutMs: config.startTimeoutSec * 1000,
        queueTimeoutMs: config.queueTimeoutSec * 1000,
      });
      const job = await store.create(
        {
          type,
          runner: reference,
          max_duration_sec,
          input: withoutSecrets(input),
          client: request.principal!.clientId,
          live,
        },
        { quota: config.maxJobsPerClient, keep: config.maxFinishedJobsPerClient },
        waitMs,
      );
      if (!job) {
        throw new ApiError(
          429,
          `client ${request.principal!.clientId} has ${config.maxJobsPerClient} unfinished jobs already (JOBS_MAXJOBSPERCLIENT); wait for one to end`,
        );
      }
      try {
        await enqueue(queues, type, job.id);
      } catch (err) {
        await store.transition(job.id, ['queued'], 'failed', {
          error: `could not be queued: ${(err as Error).message}`,
        });
        throw err;
      }
      request.log.info({ job: job.id, type, client: job.client }, 'job created');
      return toApiJob(job);
    },
  );

  app.get<{ Querystring: ListQuery }>(
    '/jobs',
    {
      schema: {
        summary: "List the caller's jobs",
        description: "Newest first. The admin sees every client's jobs.",
        tags: ['jobs'],
        querystring: ListQuery,
        response: {
          200: Type.Object({
            jobs: Type.Array(Job),
            page: Type.Integer(),
            per_page: Type.Integer(),
            total: Type.Integer(),
          }),
        },
      },
    },
    async (request) => {
      const { type, status, page, per_page } = request.query;
      const who = request.principal!;
      const { jobs, total } = await store.list(who.admin ? null : who.clientId, { type, status }, page, per_page);
      return { jobs: jobs.map(toApiJob), page, per_page, total };
    },
  );

  app.get<{ Params: IdParams }>(
    '/jobs/:id',
    {
      schema: { summary: 'Get a job', tags: ['jobs'], params: IdParams, response: { 200: Job, 404: ErrorBody } },
    },
    async (request) => toApiJob(await ownJob(request)),
  );

  app.get<{ Params: IdParams }>(
    '/jobs/:id/logs',
    {
      schema: {
        summary: "A job's log",
        description:
          "Standard output and error of the job program with the service's own notes, as text. The tail is kept when it exceeds JOBS_MAXLOGBYTES.",
        tags: ['jobs'],
        params: IdParams,
        produces: ['text/plain'],
      },
    },
    async (request, reply) => {
      const job = await ownJob(request);
      return reply.type('text/plain; charset=utf-8').send(await store.log(job.id));
    },
  );

  app.delete<{ Params: IdParams }>(
    '/jobs/:id',
    {
      schema: {
        summary: 'Delete a finished job',
        description:
          'Removes the record and its log; a job that has not finished answers 400 `job is running`, as upstream.',
        tags: ['jobs'],
        params: IdParams,
      },
    },
    async (request, reply) => {
      const job = await ownJob(request);
      if (!isFinal(job.status)) throw new ApiError(400, 'job is running');
      await store.purge(job.id);
      return reply.code(200).send();
    },
  );

  app.post<{ Params: IdParams }>(
    '/jobs/:id/stop',
    {
      schema: {
        summary: 'Stop a job gracefully',
        description:
          'A queued job is canceled. A running job gets SIGTERM, finishes its file and delivers it; after JOBS_STOPGRACESEC it is killed. Stopping a stopping job again is accepted.',
        tags: ['jobs'],
        params: IdParams,
        response: { 200: Job, 409: ErrorBody },
      },
    },
    async (request) => {
      const job = await ownJob(request);
      if (job.status === 'queued') {
        const { applied } = await store.transition(job.id, ['queued'], 'canceled', {
          error: 'canceled before it started',
        });
        if (applied) {
          await queues[job.type].remove(job.id).catch(() => undefined);
          return toApiJob((await store.get(job.id))!);
        }
      }
      const { applied, previous } = await store.transition(job.id, ['starting', 'running'], 'stopping');
      if (!applied && !(previous && isActive(previous))) {
        throw new ApiError(409, `job has already finished (${previous})`);
      }
      await publishStop(job.id);
      return toApiJob((await store.get(job.id))!);
    },
  );

  app.post<{ Body: InitBody }>(
    '/jobs/init',
    {
      schema: {
        summary: 'Declare the runners the plugin will use',
        description:
          'Checks each runner. Upstream pulls the images; the process runner checks that a job program exists for each (a missing one is logged, and jobs naming it fail with that reason).',
        tags: ['jobs'],
        body: InitBody,
      },
    },
    async (request, reply) => {
      const runners = request.body.Runners ?? [request.body.Runner!];
      const names: string[] = [];
      for (const reference of runners) {
        const type = reference.includes(imageForType.recording) ? 'recording' : 'transcribing';
        const image = parseRunner(reference, type, config.imageRegistry, config.devMode);
        if (typeof image === 'string') throw new ApiError(400, `invalid job service config: ${image}`);
        const problem = runner.check(image.name);
        if (problem) request.log.warn({ runner: reference }, problem);
        names.push(image.name);
      }
      const unprepared = await runner.prepare?.(names);
      if (unprepared) throw new ApiError(503, unprepared);
      return reply.code(200).send();
    },
  );
}

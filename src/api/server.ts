// The HTTP API: fastify with the plugin's routes and our extensions. Dependencies come in
// explicitly; nothing global, so tests start as many instances as they like.
import { readFileSync } from 'node:fs';
import { Ajv } from 'ajv';
import fastify, { LogController, type FastifyInstance, type RouteOptions } from 'fastify';
import type { Redis } from 'ioredis';
import { type Config, sfuBaseUrl } from '../config.js';
import type { Logger } from '../log.js';
import type { ClientStore, SessionStore } from '../store/clients.js';
import type { JobStore } from '../store/jobs.js';
import type { Queues } from '../queue/queues.js';
import type { Runner } from '../runners/runner.js';
import { version } from '../version.js';
import { installAuth } from './auth.js';
import { installDashboard } from './dashboard.js';
import { envelopeOptions, installErrorHandlers } from './errors.js';
import { Metrics } from './metrics.js';
import { buildOpenApi, toYaml } from './openapi.js';
import { clientRoutes } from './routes/clients.js';
import { jobRoutes } from './routes/jobs.js';
import { systemRoutes } from './routes/system.js';
import { callRoutes } from './routes/calls.js';

export const BODY_LIMIT = 1024 * 1024;
const REQUEST_TIMEOUT_MS = 30_000;

export interface ApiDeps {
  config: Config;
  log: Logger;
  redis: Redis;
  store: JobStore;
  clients: ClientStore;
  sessions: SessionStore;
  queues: Queues;
  runner: Runner;
  /** the key that signs SFU join tokens (SFU_TOKENSECRET, or one shared through Redis) */
  tokenSecret(): Promise<string>;
}

export async function buildServer(deps: ApiDeps): Promise<{ app: FastifyInstance; routes: RouteOptions[] }> {
  const { config } = deps;
  const https = config.tlsEnable
    ? { key: readFileSync(config.tlsCertKey), cert: readFileSync(config.tlsCertFile) }
    : null;
  const app = fastify({
    loggerInstance: deps.log,
    bodyLimit: BODY_LIMIT,
    // One line per request is noise at the plugin's polling rate; errors are still logged.
    logController: new LogController({ disableRequestLogging: true }),
    // A request must arrive whole within this long (Node's default, 0 in fastify: none).
    requestTimeout: REQUEST_TIMEOUT_MS,
    ...envelopeOptions,
    ...(https ? { https } : {}),
  }) as unknown as FastifyInstance;

  // Bodies are checked strictly (no type coercion, nothing removed or defaulted): a wrong type
  // is an error the caller should see. Query strings are text, so they are coerced.
  const strict = new Ajv({
    coerceTypes: false,
    useDefaults: false,
    removeAdditional: false,
    allErrors: false,
    strict: false,
  });
  const lenient = new Ajv({
    coerceTypes: true,
    useDefaults: true,
    removeAdditional: false,
    allErrors: false,
    strict: false,
  });
  app.setValidatorCompiler(({ schema, httpPart }) => (httpPart === 'body' ? strict : lenient).compile(schema));

  // The plugin's Go client sends JSON without a Content-Type header: parse any body as JSON.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_request, body, done) => {
    const text = (body as string).trim();
    if (text === '') return done(null, undefined);
    try {
      done(null, JSON.parse(text));
    } catch (err) {
      done(err as Error, undefined);
    }
  });

  const routes: RouteOptions[] = [];
  app.addHook('onRoute', (route) => void routes.push(route));

  installErrorHandlers(app, BODY_LIMIT);
  const auth = installAuth(app, config, deps.clients, deps.sessions);
  const metrics = new Metrics(deps.store, deps.queues);
  metrics.install(app);

  let openapiYaml: string | undefined;
  systemRoutes(app, deps.redis, metrics, () => (openapiYaml ??= toYaml(buildOpenApi(routes, version.buildVersion))));
  clientRoutes(app, config, deps.clients, deps.sessions, auth);
  jobRoutes(app, {
    config,
    store: deps.store,
    clients: deps.clients,
    queues: deps.queues,
    runner: deps.runner,
    publishStop: async (id) => void (await deps.redis.publish(deps.store.keys.stopChannel, id)),
  });
  callRoutes(app, { sfuUrl: sfuBaseUrl(config), clients: deps.clients, tokenSecret: deps.tokenSecret });
  await installDashboard(app, deps.queues);
  await app.ready();
  return { app, routes };
}

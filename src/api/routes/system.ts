// Public routes: version (upstream), liveness, readiness, metrics and the OpenAPI description.
import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import type { Metrics } from '../metrics.js';
import { envelope } from '../errors.js';
import { version } from '../../version.js';

export function systemRoutes(app: FastifyInstance, redis: Redis, metrics: Metrics, openapiYaml: () => string): void {
  const open = { auth: 'none' as const };

  app.get(
    '/version',
    {
      config: open,
      schema: {
        summary: 'Build information',
        tags: ['system'],
        response: {
          200: Type.Object({
            buildDate: Type.String(),
            buildVersion: Type.String(),
            buildHash: Type.String(),
            goVersion: Type.String(),
          }),
        },
      },
    },
    async () => ({ ...version, goVersion: `node ${process.version}` }),
  );

  app.get(
    '/healthz',
    {
      config: open,
      schema: {
        summary: 'Liveness: the process answers',
        tags: ['system'],
        response: { 200: Type.Object({ status: Type.Literal('ok') }) },
      },
    },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/readyz',
    {
      config: open,
      schema: {
        summary: 'Readiness: Redis answers',
        tags: ['system'],
        response: {
          200: Type.Object({ status: Type.Literal('ready') }),
          503: Type.Object({ error: Type.String(), code: Type.String() }),
        },
      },
    },
    async (_request, reply) => {
      try {
        const ping = redis.ping();
        ping.catch(() => undefined); // the race may have been lost already
        await Promise.race([
          ping,
          new Promise((_, reject) => setTimeout(() => reject(new Error('no answer within 1 s')), 1000).unref()),
        ]);
        return { status: 'ready' as const };
      } catch (err) {
        return reply.code(503).send(envelope(503, `redis is unreachable: ${(err as Error).message}`));
      }
    },
  );

  app.get(
    '/metrics',
    {
      config: open,
      schema: { summary: 'Prometheus metrics', tags: ['system'], produces: ['text/plain'] },
    },
    async (_request, reply) => reply.type(metrics.registry.contentType).send(await metrics.render()),
  );

  app.get(
    '/openapi.yaml',
    {
      config: open,
      schema: { summary: 'This description', tags: ['system'], produces: ['application/yaml'] },
    },
    async (_request, reply) => reply.type('application/yaml').send(openapiYaml()),
  );
}

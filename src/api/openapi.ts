// openapi.yaml is generated from the routes themselves (their TypeBox schemas are what requests
// are validated with), so the description cannot drift from the server. `npm run openapi` writes
// it; a test fails when the committed file differs.
import type { RouteOptions } from 'fastify';
import { stringify } from 'yaml';

export const DASHBOARD_PATH = '/admin/queues';

/** Strips TypeBox's symbol keys and undefined values: plain JSON Schema. */
const plain = (schema: unknown) => (schema === undefined ? undefined : JSON.parse(JSON.stringify(schema)));

export function buildOpenApi(routes: RouteOptions[], version: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  if (routes.some((r) => r.url.startsWith(DASHBOARD_PATH))) {
    paths[DASHBOARD_PATH] = {
      get: {
        summary: 'Queue dashboard (bull-board)',
        description: `A web page; its assets and API live under ${DASHBOARD_PATH}/. Needs the admin secret.`,
        tags: ['admin'],
        security: [{ basic: [] }],
        responses: { '200': { description: 'HTML page.', content: { 'text/html': { schema: { type: 'string' } } } } },
      },
    };
  }
  for (const route of routes) {
    const schema = route.schema as Record<string, unknown> | undefined;
    if (!schema?.summary) continue;
    const path = route.url.replace(/:([A-Za-z_]+)/g, '{$1}');
    const methods = (Array.isArray(route.method) ? route.method : [route.method]).filter((m) => m !== 'HEAD');
    for (const method of methods) {
      const op: Record<string, unknown> = { summary: schema.summary, tags: schema.tags };
      if (schema.description) op.description = schema.description;
      const auth = (route.config as { auth?: string } | undefined)?.auth ?? 'client';
      op.security =
        schema.security ??
        (auth === 'none' ? [{}] : auth === 'admin' ? [{ basic: [] }] : [{ basic: [] }, { bearer: [] }]);
      const parameters = [...paramsOf(schema.params, 'path'), ...paramsOf(schema.querystring, 'query')];
      if (parameters.length) op.parameters = parameters;
      if (schema.body)
        op.requestBody = { required: true, content: { 'application/json': { schema: plain(schema.body) } } };
      op.responses = responsesOf(schema);
      (paths[path] ??= {})[method.toLowerCase()] = op;
    }
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'calls-offloader',
      version,
      description:
        'Job service for Mattermost Calls: the routes the Calls plugin uses, with the same shapes and status codes, plus stop, listing, health and metrics. Every error is `{"error": "<message>", "code": "<status>"}`.',
    },
    components: {
      securitySchemes: {
        basic: {
          type: 'http',
          scheme: 'basic',
          description: 'clientID:authKey, or any user with the admin secret as password.',
        },
        bearer: { type: 'http', scheme: 'bearer', description: 'Token from POST /login.' },
      },
    },
    paths: Object.fromEntries(Object.entries(paths).sort(([a], [b]) => a.localeCompare(b))),
  };
}

function paramsOf(schema: unknown, where: 'path' | 'query') {
  const s = plain(schema) as { properties?: Record<string, unknown>; required?: string[] } | undefined;
  return Object.entries(s?.properties ?? {}).map(([name, sch]) => ({
    name,
    in: where,
    required: where === 'path' || (s?.required ?? []).includes(name),
    schema: sch,
  }));
}

function responsesOf(schema: Record<string, unknown>) {
  const out: Record<string, unknown> = {};
  const declared = (schema.response ?? {}) as Record<string, unknown>;
  const produces = (schema.produces as string[] | undefined)?.[0] ?? 'application/json';
  for (const [code, s] of Object.entries(declared)) {
    const body = plain(s) as { type?: string; description?: string };
    out[code] =
      body?.type === 'null'
        ? { description: body.description ?? 'Empty body.' }
        : {
            description: body?.description ?? (code.startsWith('2') ? 'Success.' : 'Error.'),
            content: { 'application/json': { schema: body } },
          };
  }
  if (!Object.keys(out).some((c) => c.startsWith('2'))) {
    out['200'] =
      produces === 'application/json'
        ? { description: 'Success; empty body.' }
        : { description: 'Success.', content: { [produces]: { schema: { type: 'string' } } } };
  }
  out.default = {
    description: 'Error envelope.',
    content: {
      'application/json': {
        schema: {
          type: 'object',
          properties: { error: { type: 'string' }, code: { type: 'string' } },
          required: ['error', 'code'],
        },
      },
    },
  };
  return out;
}

export const toYaml = (doc: unknown) => stringify(doc, { lineWidth: 0 });

declare module 'fastify' {
  interface FastifySchema {
    summary?: string;
    description?: string;
    tags?: string[];
    security?: Record<string, string[]>[];
    /** content type of a non-JSON success body, for the description */
    produces?: string[];
  }
}

// openapi.yaml describes exactly the server's routes, and is what the server generates.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import type { RouteOptions } from 'fastify';
import { createServices } from '../src/services.js';
import { createLogger } from '../src/log.js';
import { buildServer } from '../src/api/server.js';
import { DASHBOARD_PATH, buildOpenApi, toYaml } from '../src/api/openapi.js';
import { version } from '../src/version.js';
import { cleanup, testConfig } from './helpers.js';

const committed = readFileSync(new URL('../../openapi.yaml', import.meta.url), 'utf8');

describe('openapi.yaml', () => {
  const config = testConfig();
  const services = createServices(config, createLogger(config, 'test'));
  let routes: RouteOptions[] = [];
  let served = '';
  before(async () => {
    const built = await buildServer({ config, log: createLogger(config, 'test'), ...services });
    routes = built.routes;
    served = (await built.app.inject({ method: 'GET', url: '/openapi.yaml' })).body;
    await built.app.close();
  });
  after(async () => {
    await services.close();
    await cleanup(config);
  });

  const serverRoutes = () =>
    new Set(
      routes.flatMap((r) => {
        const path = r.url.startsWith(DASHBOARD_PATH) ? DASHBOARD_PATH : r.url.replace(/:([A-Za-z_]+)/g, '{$1}');
        const methods = (Array.isArray(r.method) ? r.method : [r.method]).filter((m) => m !== 'HEAD');
        return r.url.startsWith(DASHBOARD_PATH) ? [`GET ${path}`] : methods.map((m) => `${m} ${path}`);
      }),
    );
  const documented = () => {
    const doc = parse(committed) as { paths: Record<string, Record<string, unknown>> };
    return new Set(
      Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`)),
    );
  };

  it('documents every server route', () => {
    const missing = [...serverRoutes()].filter((r) => !documented().has(r));
    assert.deepEqual(missing, [], 'routes missing from openapi.yaml (run npm run openapi)');
  });

  it('documents no route the server lacks', () => {
    const extra = [...documented()].filter((r) => !serverRoutes().has(r));
    assert.deepEqual(extra, [], 'routes in openapi.yaml the server does not have');
  });

  it('is exactly what the server generates and serves (npm run openapi rewrites it)', () => {
    assert.equal(committed, toYaml(buildOpenApi(routes, version.buildVersion)));
    assert.equal(served, committed);
  });

  it('carries the request schemas the server validates with', () => {
    const doc = parse(committed);
    const body = doc.paths['/jobs'].post.requestBody.content['application/json'].schema;
    assert.deepEqual(body.required, ['type', 'max_duration_sec', 'runner', 'input_data']);
    const recording = body.allOf.find(
      (c: { if: { properties: { type: { const: string } } } }) => c.if.properties.type.const === 'recording',
    );
    assert.equal(recording.then.properties.input_data.properties.width.maximum, 3840);
  });
});

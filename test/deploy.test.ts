// The deployment files: the Kubernetes manifests render with kustomize and every object passes the
// Kubernetes schemas (kubernetes-models); their settings and the compose file's are variables the
// service knows and accepts; the Grafana dashboard asks only for metrics the service and the SFU
// expose. (No cluster runs here: what a real cluster would do with them is not checked.)
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, parse } from 'yaml';
import { loadConfig, variables } from '../src/config.js';
import { call, suiteApi, testConfig } from './helpers.js';
import { Sfu } from '../src/sfu/server/server.js';
import { createLogger } from '../src/log.js';

const DOCKER = fileURLToPath(new URL('../../docker/', import.meta.url));
const known = new Set(Object.values(variables).map((v) => v.name));

const hasKubectl = (() => {
  try {
    execFileSync('kubectl', ['version', '--client'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

async function model(apiVersion: string, kind: string): Promise<new (o: unknown) => { validate(): void }> {
  const group = apiVersion.includes('/') ? apiVersion : `core/${apiVersion}`;
  const path = group.startsWith('core/') ? `kubernetes-models/v1/${kind}` : `kubernetes-models/${group}/${kind}`;
  return ((await import(path)) as Record<string, new (o: unknown) => { validate(): void }>)[kind]!;
}

describe('deployment files', () => {
  const suite = suiteApi();

  it('the Kubernetes manifests render and every object passes the Kubernetes schemas', async (t) => {
    if (!hasKubectl) return t.skip('kubectl (with kustomize) is not installed');
    const rendered = execFileSync('kubectl', ['kustomize', `${DOCKER}kubernetes`]).toString();
    const objects = parseAllDocuments(rendered).map(
      (d) => d.toJS() as { apiVersion: string; kind: string; metadata: { name: string } },
    );
    const kinds = objects.map((o) => o.kind).sort();
    for (const k of [
      'ConfigMap',
      'Deployment',
      'Role',
      'RoleBinding',
      'Secret',
      'Service',
      'ServiceAccount',
      'StatefulSet',
    ])
      assert.ok(kinds.includes(k), k);
    for (const o of objects) {
      const Model = await model(o.apiVersion, o.kind);
      assert.doesNotThrow(() => new Model(o).validate(), `${o.kind} ${o.metadata.name}`);
    }
    // The workers' Role grants what the Kubernetes runner calls, and nothing more.
    const role = objects.find((o) => o.kind === 'Role') as unknown as {
      rules: { resources: string[]; verbs: string[] }[];
    };
    assert.deepEqual(
      role.rules.map((r) => `${r.resources}:${r.verbs}`),
      [
        'jobs:create,get,list,watch,patch,delete',
        'pods:get,list,watch,delete',
        'pods/log:get',
        'secrets:create,delete',
      ],
    );
    // Their settings are the service's variables, and it starts with them.
    const configMap = objects.find((o) => o.kind === 'ConfigMap') as unknown as { data: Record<string, string> };
    const secret = objects.find((o) => o.kind === 'Secret') as unknown as { data: Record<string, string> };
    const env = {
      ...configMap.data,
      ...Object.fromEntries(Object.entries(secret.data).map(([k, v]) => [k, Buffer.from(v, 'base64').toString()])),
    };
    assert.deepEqual(
      Object.keys(env).filter((k) => !known.has(k)),
      [],
    );
    assert.doesNotThrow(() => loadConfig(env));
  });

  it('the compose file sets only variables the service knows', () => {
    const compose = parse(readFileSync(`${DOCKER}compose.yaml`, 'utf8')) as {
      services: Record<string, { environment?: Record<string, string> }>;
    };
    for (const [name, s] of Object.entries(compose.services)) {
      const unknown = Object.keys(s.environment ?? {}).filter((k) => !known.has(k));
      assert.deepEqual(unknown, [], name);
    }
    assert.deepEqual(Object.keys(compose.services).sort(), ['api', 'redis', 'sfu', 'worker']);
  });

  it('the Grafana dashboard asks only for metrics the API and the SFU expose', async () => {
    const dashboard = JSON.parse(readFileSync(`${DOCKER}grafana-dashboard.json`, 'utf8')) as {
      panels: { targets: { expr: string }[] }[];
    };
    const exposed = new Set<string>();
    const collect = (text: string) => {
      for (const line of text.split('\n')) {
        // a sample, or a family declared without samples yet (no job has finished)
        const m = /^(?:# TYPE )?([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{|\s)/.exec(line);
        if (m) exposed.add(m[1]!);
        if (/^# TYPE \S+ histogram/.test(line)) for (const s of ['_bucket', '_sum', '_count']) exposed.add(m![1] + s);
      }
    };
    await call(suite.api.url, 'GET', '/version', null); // a request, so that the HTTP histogram has a series
    collect((await call(suite.api.url, 'GET', '/metrics', null)).text);
    const sfu = new Sfu({
      host: '127.0.0.1',
      port: 0,
      ice: { bindAddress: '127.0.0.1' },
      policy: { authenticate: () => null },
      log: createLogger(testConfig(), 'sfu'),
    });
    collect(await sfu.metrics());
    const asked = dashboard.panels.flatMap((p) =>
      p.targets.flatMap((t) => t.expr.match(/calls_offloader_[a-z_]+/g) ?? []),
    );
    assert.ok(asked.length >= 12);
    assert.deepEqual(
      [...new Set(asked)].filter((m) => !exposed.has(m)),
      [],
    );
  });
});

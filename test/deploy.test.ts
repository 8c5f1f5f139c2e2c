// The deployment files: the Kubernetes manifests render with kustomize and every object passes the
// Kubernetes schemas (kubernetes-models); their settings and the compose file's are variables the
// service knows and accepts; the Grafana dashboard asks only for metrics the service and the SFU
// expose. (No cluster runs here: what a real cluster would do with them is not checked.)
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
    // as an admin deploys them: a copy with secret.env written (no secret is in the repository,
    // and without one nothing renders)
    const dir = mkdtempSync(join(tmpdir(), 'co-kustomize-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    cpSync(`${DOCKER}kubernetes`, dir, { recursive: true, filter: (f) => !f.endsWith('secret.env') });
    assert.throws(() => execFileSync('kubectl', ['kustomize', dir], { stdio: 'pipe' }), /secret\.env/);
    const password = randomBytes(32).toString('hex');
    const adminKey = randomBytes(32).toString('hex');
    writeFileSync(
      join(dir, 'secret.env'),
      `API_SECURITY_ADMINSECRETKEY=${adminKey}\nREDIS_URL=redis://:${password}@redis.calls-offloader.svc:6379\n`,
    );
    const rendered = execFileSync('kubectl', ['kustomize', dir]).toString();
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
      // kustomize folds a Secret's long base64 at 70 characters; the API server's decoder skips the
      // line breaks, the schema's "byte" format does not
      const data = (o as { data?: Record<string, string> }).data;
      const unfolded =
        o.kind === 'Secret' && data
          ? { ...o, data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, v.replace(/\s/g, '')])) }
          : o;
      assert.doesNotThrow(() => new Model(unfolded).validate(), `${o.kind} ${o.metadata.name}`);
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
    assert.equal(env.REDIS_URL, `redis://:${password}@redis.calls-offloader.svc:6379`);
    assert.ok(!('REDIS_URL' in configMap.data), 'the password is not in the ConfigMap');
    type Container = {
      name: string;
      command?: string[];
      env?: { name: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }[];
    };
    const containers = objects.flatMap(
      (o) =>
        (o as unknown as { spec?: { template?: { spec: { containers: Container[] } } } }).spec?.template?.spec
          .containers ?? [],
    );
    // the worker and the SFU read REDIS_URL from the Secret (and nothing else of it: not the admin secret)
    for (const name of ['worker', 'sfu', 'redis']) {
      const c = containers.find((c) => c.name === name)!;
      assert.deepEqual(c.env?.find((e) => e.name === 'REDIS_URL')?.valueFrom?.secretKeyRef?.key, 'REDIS_URL', name);
    }
    // Redis asks for that password: its command, run with a redis-server that prints what it got
    const redis = containers.find((c) => c.name === 'redis')!;
    const bin = join(dir, 'bin');
    mkdirSync(bin);
    writeFileSync(join(bin, 'redis-server'), '#!/bin/sh\necho "args: $*"\ncat\n', { mode: 0o755 });
    const run = (REDIS_URL: string) =>
      execFileSync(redis.command![0]!, redis.command!.slice(1), {
        env: { PATH: `${bin}:${process.env.PATH}`, REDIS_URL },
        stdio: 'pipe',
      }).toString();
    assert.equal(run(env.REDIS_URL), `args: - --appendonly yes --dir /data\nrequirepass ${password}\n`);
    // a REDIS_URL without a password starts no Redis open to all
    assert.throws(() => run('redis://redis.calls-offloader.svc:6379'), /holds no password/);
    assert.throws(() => run('redis://:@redis.calls-offloader.svc:6379'), /holds no password/);
  });

  it('the compose file sets only variables the service knows, and its Redis asks for a password', (t) => {
    const compose = parse(readFileSync(`${DOCKER}compose.yaml`, 'utf8'), { merge: true }) as {
      services: Record<string, { environment?: Record<string, string>; command?: string[] }>;
    };
    assert.deepEqual(Object.keys(compose.services).sort(), ['api', 'redis', 'sfu', 'worker']);
    // what compose makes of ${VAR:?…} and $$
    const password = randomBytes(32).toString('hex');
    const interpolate = (v: string) => v.replace(/\$\{REDIS_PASSWORD:\?[^}]*\}/g, password).replace(/\$\$/g, '$');
    for (const name of ['api', 'sfu', 'worker']) {
      const env = compose.services[name]!.environment ?? {};
      assert.deepEqual(
        Object.keys(env).filter((k) => !known.has(k)),
        [],
        name,
      );
      assert.equal(interpolate(env.REDIS_URL!), `redis://:${password}@127.0.0.1:6379`, name);
      assert.equal(loadConfig({ REDIS_URL: interpolate(env.REDIS_URL!) }).redisUrl, interpolate(env.REDIS_URL!));
    }
    // Redis's command, run with an image entrypoint that prints what it got: the password on stdin
    const redis = compose.services.redis!;
    const dir = mkdtempSync(join(tmpdir(), 'co-compose-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, 'docker-entrypoint.sh'), '#!/bin/sh\necho "args: $*"\ncat\n', { mode: 0o755 });
    const command = redis.command!.map(interpolate);
    const ran = execFileSync(command[0]!, command.slice(1), {
      env: { PATH: `${dir}:${process.env.PATH}`, REDIS_PASSWORD: interpolate(redis.environment!.REDIS_PASSWORD!) },
    }).toString();
    assert.equal(ran, `args: redis-server - --bind 127.0.0.1 --port 6379 --appendonly yes\nrequirepass ${password}\n`);
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

// Configuration: defaults, one clear message per bad variable, and the CLI's behaviour on it;
// the README documents every variable; `serve` runs the whole service from one command.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ConfigError, loadConfig, sfuBaseUrl, variables } from '../src/config.js';
import { HeadlessParticipant } from '../src/sfu/client/participant.js';
import {
  CLI,
  KEY,
  REDIS_URL,
  basic,
  call,
  children,
  cleanup,
  freePort,
  ids,
  loopbackCertificate,
  recordingJob,
  startApi,
  stopChild,
  testConfig,
  testEnv,
  waitFor,
} from './helpers.js';

const run = promisify(execFile);

describe('configuration', () => {
  it('has one set of defaults: process runner, local Redis, loopback, 2 jobs', () => {
    const c = loadConfig({});
    assert.equal(c.apiType, 'process');
    assert.equal(c.redisUrl, 'redis://127.0.0.1:6379');
    assert.deepEqual(c.listen, { host: '127.0.0.1', port: 4545 });
    assert.equal(c.maxConcurrentJobs, 2);
    assert.equal(c.failedJobsRetention, 30 * 86_400_000);
    assert.equal(c.imageRegistry, 'mattermost');
    assert.deepEqual(loadConfig({ API_HTTP_LISTENADDRESS: ':4545' }).listen, { host: '0.0.0.0', port: 4545 });
    // A node label's value may be empty; a program's path may not.
    assert.deepEqual(loadConfig({ JOBS_KUBERNETES_NODESELECTOR: ' disk=ssd, gpu= ' }).k8sNodeSelector, {
      disk: 'ssd',
      gpu: '',
    });
    // Kubernetes job pods are bounded as Docker's containers are, unless the admin says otherwise.
    assert.deepEqual(c.k8sResources.recording, {
      limits: { cpu: '2', memory: '2048Mi' },
      requests: { cpu: '1', memory: '512Mi' },
    });
    assert.deepEqual(
      loadConfig({
        JOBS_KUBERNETES_JOBSRESOURCEREQUIREMENTS:
          '{"recording":{"limits":{"cpu":1.5,"memory":" 3e9 ","nvidia.com/gpu":null}}}',
      }).k8sResources,
      { recording: { limits: { cpu: '1.5', memory: '3e9' } } },
    );
    assert.deepEqual(loadConfig({ JOBS_KUBERNETES_JOBSRESOURCEREQUIREMENTS: '{}' }).k8sResources, {});
  });

  const bad: [Record<string, string>, RegExp][] = [
    [{ JOBS_MAXCONCURRENTJOBS: 'two' }, /^JOBS_MAXCONCURRENTJOBS: expected a whole number, got "two"$/],
    [{ JOBS_MAXCONCURRENTJOBS: '0' }, /^JOBS_MAXCONCURRENTJOBS: must be between 1 and 1000, got 0$/],
    [
      { JOBS_FAILEDJOBSRETENTIONTIME: '7 days' },
      /^JOBS_FAILEDJOBSRETENTIONTIME: expected a duration like 30m, 12h or 7d/,
    ],
    [{ JOBS_APITYPE: 'podman' }, /^JOBS_APITYPE: must be one of process, docker, kubernetes, got "podman"$/],
    [{ API_HTTP_LISTENADDRESS: '4545' }, /^API_HTTP_LISTENADDRESS: expected host:port/],
    [{ API_SECURITY_ALLOWSELFREGISTRATION: 'maybe' }, /^API_SECURITY_ALLOWSELFREGISTRATION: expected true or false/],
    [{ REDIS_URL: 'http://127.0.0.1:6379' }, /^REDIS_URL: expected a redis:\/\/ or rediss:\/\/ URL/],
    [
      { REDIS_URL: 'valkey://default:s3cret@cache:6379' },
      /^REDIS_URL: expected a redis:\/\/ or rediss:\/\/ URL, got "valkey:\/\/…@cache:6379"$/,
    ],
    [
      { REDIS_URL: 'rediss://u:ab/c@d@cache?password=s3cret' },
      /^REDIS_URL: expected a URL such as .*, got "rediss:\/\/…@cache\?…"$/,
    ],
    [
      { REDIS_URL: 'redis://:s3cret@[cache:6379' },
      /^REDIS_URL: expected a URL such as .*, got "redis:\/\/…@\[cache:6379"$/,
    ],
    [{ LOGGER_CONSOLELEVEL: 'loud' }, /^LOGGER_CONSOLELEVEL: must be one of debug, info, warn, error/],
    [{ JOBS_PROCESSPROGRAMS: 'calls-recorder' }, /^JOBS_PROCESSPROGRAMS: expected name=path entries/],
    [{ JOBS_PROCESSPROGRAMS: 'calls-recorder=' }, /^JOBS_PROCESSPROGRAMS: expected name=path entries/],
    [{ JOBS_KUBERNETES_NODESELECTOR: '=ssd' }, /^JOBS_KUBERNETES_NODESELECTOR: expected key=value entries/],
    [{ SFU_ICEPORTRANGE: '8443' }, /^SFU_ICEPORTRANGE: expected a port range like 8443-8943/],
    [{ SFU_ICEHOSTOVERRIDE: 'example.com' }, /^SFU_ICEHOSTOVERRIDE: expected an IPv4 address/],
    [{ SFU_TOKENSECRET: 'short' }, /^SFU_TOKENSECRET: must be at least 32 characters/],
    [{ SFU_URL: 'ftp://x' }, /^SFU_URL: expected http\(s\):\/\/host:port/],
    [
      { API_SECURITY_ENABLEADMIN: 'true', API_SECURITY_ADMINSECRETKEY: 'short' },
      /^API_SECURITY_ADMINSECRETKEY: must be at least 32 characters/,
    ],
    [
      { API_HTTP_TLS_ENABLE: 'true' },
      /^API_HTTP_TLS_ENABLE: TLS needs API_HTTP_TLS_CERTFILE and API_HTTP_TLS_CERTKEY$/,
    ],
    [
      {
        API_HTTP_TLS_ENABLE: 'true',
        API_HTTP_TLS_CERTFILE: '/nonexistent/cert.pem',
        API_HTTP_TLS_CERTKEY: '/etc/hostname',
      },
      /^API_HTTP_TLS_CERTFILE: \/nonexistent\/cert\.pem cannot be read \(ENOENT\)\nAPI_HTTP_TLS_CERTKEY: \/etc\/hostname holds no PEM private key$/,
    ],
    [{ SFU_ICEADDRESS: '999.1.1.1' }, /^SFU_ICEADDRESS: expected an IPv4 address, got "999.1.1.1"$/],
    // empty had werift bind every interface: the opposite of the loopback default
    [{ SFU_ICEADDRESS: '' }, /^SFU_ICEADDRESS: expected an IPv4 address, got ""$/],
    [
      { JOBS_KUBERNETES_PERSISTENTVOLUMECLAIMNAME: 'Calls_Data' },
      /^JOBS_KUBERNETES_PERSISTENTVOLUMECLAIMNAME: expected a Kubernetes object name .*, got "Calls_Data"$/,
    ],
    [
      { SFU_TRUSTEDPROXIES: '10.0.0.0/8, proxy.internal' },
      /^SFU_TRUSTEDPROXIES: "proxy\.internal" is not an IP address or a CIDR range \(like 192\.0\.2\.10 or 10\.1\.2\.0\/29\)$/,
    ],
    [{ SFU_TRUSTEDPROXIES: '10.0.0.0/33' }, /^SFU_TRUSTEDPROXIES: "10\.0\.0\.0\/33": an IPv4 prefix is at most 32$/],
    [{ JOBS_IMAGEREGISTRY: ' ' }, /^JOBS_IMAGEREGISTRY: may not be empty$/],
    [{ JOBS_DATADIR: '' }, /^JOBS_DATADIR: may not be empty$/],
    [
      { JOBS_KUBERNETES_JOBSRESOURCEREQUIREMENTS: '{"recordings":{}}' },
      /^JOBS_KUBERNETES_JOBSRESOURCEREQUIREMENTS: recordings is not a job type \(recording, transcribing, captioning\)$/,
    ],
    [
      { JOBS_KUBERNETES_JOBSRESOURCEREQUIREMENTS: '{"recording":{"limit":{"cpu":"2"}}}' },
      /^JOBS_KUBERNETES_JOBSRESOURCEREQUIREMENTS: recording\.limit: expected limits or requests$/,
    ],
    [
      { JOBS_KUBERNETES_JOBSRESOURCEREQUIREMENTS: '{"recording":{"limits":{"memory":"2GB"}}}' },
      /^JOBS_KUBERNETES_JOBSRESOURCEREQUIREMENTS: recording\.limits\.memory: "2GB" is not a Kubernetes quantity/,
    ],
  ];
  for (const [env, message] of bad) {
    it(`refuses ${JSON.stringify(env)} naming the variable`, () => {
      assert.throws(
        () => loadConfig(env),
        (err: unknown) => err instanceof ConfigError && message.test(err.message),
      );
    });
  }

  it('takes a claim name with dots, as Kubernetes does', () => {
    assert.equal(loadConfig({ JOBS_KUBERNETES_PERSISTENTVOLUMECLAIMNAME: 'calls.data-1' }).k8sClaim, 'calls.data-1');
  });

  it('names the SFU by an address a URL can hold', () => {
    const url = (SFU_LISTENADDRESS: string) => sfuBaseUrl(loadConfig({ SFU_LISTENADDRESS }));
    assert.equal(url('[::1]:4546'), 'http://[::1]:4546');
    assert.equal(url('[::]:4546'), 'http://[::1]:4546');
    assert.equal(url(':4546'), 'http://127.0.0.1:4546');
    assert.equal(url('localhost:4546'), 'http://localhost:4546');
    assert.equal(new URL(url('[fd00::5]:4546')).hostname, '[fd00::5]');
  });

  it('reports every bad variable at once', () => {
    assert.throws(
      () => loadConfig({ JOBS_MAXCONCURRENTJOBS: 'x', JOBS_STOPGRACESEC: '-1' }),
      (err: Error) => /JOBS_MAXCONCURRENTJOBS/.test(err.message) && /JOBS_STOPGRACESEC/.test(err.message),
    );
  });

  it('the README lists every variable with its default', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    for (const v of Object.values(variables)) {
      assert.match(
        readme,
        new RegExp(`\\| \`${v.name}\` \\| \`${v.default.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\` \\|`),
        v.name,
      );
    }
  });
});

describe('calls-offloader CLI', () => {
  it('--help lists the commands', async () => {
    const { stdout } = await run(process.execPath, [CLI, '--help']);
    for (const c of ['serve', 'api', 'worker', 'sfu', 'token']) assert.match(stdout, new RegExp(`^  ${c} `, 'm'));
  });

  it('token refuses bad arguments with exit code 2', async () => {
    const err = await run(process.execPath, [CLI, 'token', '--call', 'nope', '--user', 'x']).catch((e) => e);
    assert.equal(err.code, 2);
    assert.match(err.stderr, /--call must be 26 characters of a-z and 0-9/);
  });

  it('invalid configuration stops start-up with the variable named (exit 78)', async () => {
    const err = await run(process.execPath, [CLI, 'api'], {
      env: { ...process.env, JOBS_MAXCONCURRENTJOBS: 'lots' },
    }).catch((e) => e);
    assert.equal(err.code, 78);
    assert.match(err.stderr, /JOBS_MAXCONCURRENTJOBS: expected a whole number, got "lots"/);
    const k8s = await run(process.execPath, [CLI, 'worker'], {
      env: {
        ...process.env,
        JOBS_APITYPE: 'kubernetes',
        K8S_JOB_POD_TOLERATIONS: '{"key":',
        JOBS_DOCKERLIMITS: 'recording=2/2048',
      },
    }).catch((e) => e);
    assert.equal(k8s.code, 78);
    assert.match(k8s.stderr, /K8S_JOB_POD_TOLERATIONS: is not JSON/);
    assert.match(k8s.stderr, /JOBS_DOCKERLIMITS: needs an entry for transcribing, captioning/);
    // an address that cannot be listened on is told as the setting's, not as a stack trace
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    const port = (taken.address() as AddressInfo).port;
    try {
      for (const [command, env, message] of [
        // an address of no interface here (TEST-NET-1): no name to resolve, so no DNS in the test
        [
          'api',
          { API_HTTP_LISTENADDRESS: '192.0.2.1:4545' },
          /^API_HTTP_LISTENADDRESS: cannot listen on 192\.0\.2\.1:4545: EADDRNOTAVAIL$/m,
        ],
        [
          'sfu',
          { SFU_LISTENADDRESS: `127.0.0.1:${port}` },
          new RegExp(`^SFU_LISTENADDRESS: cannot listen on 127\\.0\\.0\\.1:${port}: EADDRINUSE$`, 'm'),
        ],
      ] as const) {
        const failed = await run(process.execPath, [CLI, command], {
          env: { ...process.env, REDIS_URL, ...env },
        }).catch((e) => e);
        assert.equal(failed.code, 78, failed.stderr);
        assert.match(failed.stderr, message);
        assert.doesNotMatch(failed.stderr, /\n {4}at /, 'no stack trace');
      }
    } finally {
      taken.close();
    }
  });

  it('serve runs API, worker and SFU from one command: a job goes from POST /jobs to succeeded', async () => {
    const [port, sfuPort] = [await freePort(), await freePort()];
    const env = testEnv({
      API_HTTP_LISTENADDRESS: `127.0.0.1:${port}`,
      SFU_LISTENADDRESS: `127.0.0.1:${sfuPort}`,
      SFU_ICEPORTRANGE: '44000-44100',
      REDIS_URL,
      API_SECURITY_ENABLEADMIN: 'true',
      API_SECURITY_ADMINSECRETKEY: `admin-${'s'.repeat(40)}`,
      SFU_TOKENSECRET: `sfu-${'t'.repeat(40)}`,
    });
    const child = spawn(process.execPath, [CLI, 'serve'], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    // A serve that exits early fails the test with what it printed.
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const exited = once(child, 'exit');
    const url = `http://127.0.0.1:${port}`;
    try {
      await Promise.race([
        waitFor('serve answers', async () => (await fetch(`${url}/healthz`)).ok),
        exited.then(([code]) => Promise.reject(new Error(`serve exited with ${code}: ${stderr}`))),
      ]);
      assert.ok((await fetch(`http://127.0.0.1:${sfuPort}/healthz`)).ok, "serve's API answers only once its SFU does");
      const auth = basic(ids(), KEY);
      const { json } = await call(url, 'POST', '/jobs', auth, recordingJob(ids()));
      const job = await waitFor('job done', async () => {
        const j = (await call(url, 'GET', `/jobs/${json.id}`, auth)).json;
        return j.status === 'succeeded' ? j : undefined;
      });
      assert.equal(job.exit_code, 0);
      // No process gets a secret it does not use: the job neither, the worker and SFU not the admin's.
      const jobEnv = readFileSync(join(env.JOBS_DATADIR!, 'jobs', json.id, 'env.json'), 'utf8');
      for (const secret of [env.API_SECURITY_ADMINSECRETKEY!, env.SFU_TOKENSECRET!])
        assert.ok(!jobEnv.includes(secret), 'a secret reached the job');
      const below = children(child.pid!);
      assert.ok(below.length >= 2, 'serve runs a worker and an SFU process');
      for (const pid of below) {
        const environ = readFileSync(`/proc/${pid}/environ`, 'latin1');
        if (environ.includes('REDIS_URL='))
          assert.ok(!environ.includes(env.API_SECURITY_ADMINSECRETKEY!), `process ${pid} got the admin secret`);
      }
      const metrics = await (await fetch(`${url}/metrics`)).text();
      assert.match(metrics, /^calls_offloader_jobs_total\{type="recording",outcome="succeeded"\} 1$/m);
      assert.match(metrics, /^calls_offloader_job_duration_seconds_count\{type="recording"\} 1$/m);
      assert.match(metrics, /^calls_offloader_queue_jobs\{type="recording",state="wait"\} 0$/m);
      assert.match(metrics, /^calls_offloader_jobs_running\{type="recording"\} 0$/m);
      assert.match(
        metrics,
        /^calls_offloader_http_request_duration_seconds_count\{method="POST",route="\/jobs",status_code="200"\} 1$/m,
      );

      // `calls-offloader token` prints a link that the SFU started by serve admits.
      const { stdout } = await run(
        process.execPath,
        [CLI, 'token', '--call', 'c'.repeat(26), '--user', 'ann', '--name', 'Ann'],
        { env: { ...process.env, ...env } },
      );
      const link = new URL(stdout.trim());
      assert.equal(link.origin + link.pathname, `http://127.0.0.1:${sfuPort}/call/${'c'.repeat(26)}`);

      const ann = new HeadlessParticipant({
        siteUrl: link.origin,
        callId: 'c'.repeat(26),
        token: new URLSearchParams(link.hash.slice(1)).get('token')!, // in the fragment: no server sees it
      });
      const me = await ann.join();
      const { stdout: second } = await run(
        process.execPath,
        [CLI, 'token', '--call', 'c'.repeat(26), '--user', 'bob', '--name', 'Bob'],
        { env: { ...process.env, ...env } },
      );
      const bob = new HeadlessParticipant({
        siteUrl: link.origin,
        callId: 'c'.repeat(26),
        token: new URLSearchParams(new URL(second.trim()).hash.slice(1)).get('token')!,
      });
      await bob.join();
      assert.equal(bob.participants.get(me.sessionId)?.userId, 'ann', 'the call has ann in it, as her token says');
      ann.leave();
      bob.leave();
    } finally {
      await stopChild(child);
      await cleanup(loadConfig(env));
    }
  });
});

describe('calls-offloader serve whose API cannot start', () => {
  it('stops the worker and the SFU it started, and exits non-zero', async () => {
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    const port = (taken.address() as AddressInfo).port;
    const sfuPort = await freePort();
    const env = testEnv({
      API_HTTP_LISTENADDRESS: `127.0.0.1:${port}`,
      SFU_LISTENADDRESS: `127.0.0.1:${sfuPort}`,
      SFU_ICEPORTRANGE: '44100-44150',
      REDIS_URL,
    });
    /** processes of this serve: its environment names this test's data directory */
    const ours = () =>
      readdirSync('/proc')
        .filter((p) => /^\d+$/.test(p) && Number(p) !== process.pid)
        .filter((p) => {
          try {
            return readFileSync(`/proc/${p}/environ`, 'latin1').includes(`JOBS_DATADIR=${env.JOBS_DATADIR}\0`);
          } catch {
            return false;
          }
        });
    const child = spawn(process.execPath, [CLI, 'serve'], { env: { ...process.env, ...env }, stdio: 'ignore' });
    try {
      const [code] = await once(child, 'exit');
      assert.notEqual(code, 0);
      // its worker and SFU ran on without the API, the worker taking jobs
      await waitFor('no process of that serve left', () => ours().length === 0, 30_000);
    } finally {
      for (const pid of ours()) process.kill(Number(pid), 'SIGKILL');
      taken.close();
      await cleanup(loadConfig(env));
    }
  });
});

describe('TLS', () => {
  it('serves the API over HTTPS with API_HTTP_TLS_* set', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'co-tls-'));
    const { certFile, keyFile } = loopbackCertificate(dir);
    const config = testConfig({
      API_HTTP_TLS_ENABLE: 'true',
      API_HTTP_TLS_CERTFILE: certFile,
      API_HTTP_TLS_CERTKEY: keyFile,
    });
    const api = await startApi(config);
    try {
      assert.match(api.url, /^https:\/\/127\.0\.0\.1:\d+$/);
      const body = await new Promise<string>((resolve, reject) => {
        request(`${api.url}/version`, { rejectUnauthorized: false }, (res) => {
          let text = '';
          res.on('data', (c) => (text += c));
          res.on('end', () => resolve(text));
        })
          .on('error', reject)
          .end();
      });
      assert.match(JSON.parse(body).buildVersion, /^v/);
    } finally {
      await api.close();
      await cleanup(config);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

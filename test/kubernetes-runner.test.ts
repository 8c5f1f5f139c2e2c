// The Kubernetes runner against the stand-in API server (test/kubernetes-standin.ts; no cluster
// runs here): every Job it makes passes the Kubernetes schemas; a run to its end with its log and
// output (termination message with an emptyDir, the claim's directory with a PVC); signals as pod
// deletion; a failure kept; the watch resumed after the history is compacted (410 Gone); reconcile;
// and a job through the service with JOBS_APITYPE=kubernetes.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { K8S_LABELS, KubernetesRunner, type KubernetesRunnerOptions } from '../src/runners/kubernetes.js';
import type { StartSpec } from '../src/runners/runner.js';
import type { JobRecord } from '../src/store/jobs.js';
import { KubernetesStandin } from './kubernetes-standin.js';
import {
  type Api,
  TEST_JOB,
  basic,
  jobWhen,
  behave,
  call,
  cleanup,
  ids,
  recordingJob,
  startApi,
  startWorker,
  testConfig,
  waitFor,
} from './helpers.js';

const IMAGE = 'calls-offloader-job:0.9.5';

describe('kubernetes runner', () => {
  const standin = new KubernetesStandin({ 'calls-offloader-job': TEST_JOB });
  const kc = new KubeConfig();
  const service = `test-${ids().slice(0, 6)}`;
  const base = (over: Partial<KubernetesRunnerOptions> = {}): KubernetesRunner =>
    new KubernetesRunner({
      namespace: 'jobs',
      images: { 'calls-recorder': IMAGE },
      resources: { recording: { limits: { cpu: '2', memory: '2Gi' }, requests: { cpu: '1', memory: '1Gi' } } },
      tolerations: [{ key: 'calls', operator: 'Equal', value: 'jobs', effect: 'NoSchedule' }],
      nodeSelector: { 'node-role/calls': 'true' },
      sysctls: { 'net.ipv4.ip_local_port_range': '30000 60000' },
      dataDir: standin.claimDir,
      deadlineMarginSec: 1500,
      ttlSecondsAfterFinished: 3600,
      service,
      kubeConfig: kc,
      ...over,
    });
  const jobDirs = mkdtempSync(join(tmpdir(), 'k8s-jobs-'));
  before(async () => {
    await standin.listen();
    kc.loadFromString(standin.kubeconfig());
  });
  after(async () => {
    await standin.close();
    rmSync(standin.claimDir, { recursive: true, force: true });
    rmSync(jobDirs, { recursive: true, force: true });
  });

  const start = async (runner: KubernetesRunner, behaviour: Record<string, unknown>, dir?: string) => {
    const callId = ids();
    behave(callId, behaviour);
    const job = {
      id: ids(),
      type: 'recording',
      runner: 'mattermost/calls-recorder:v0.8.5',
      max_duration_sec: 600,
      input: { call_id: callId },
    } as unknown as JobRecord;
    const jobDir = dir ?? mkdtempSync(join(jobDirs, 'job-'));
    const output: string[] = [];
    const spec: StartSpec = {
      job,
      env: {
        JOB_ID: job.id,
        JOB_TYPE: 'recording',
        JOB_DIR: jobDir,
        CALL_ID: callId,
        AUTH_TOKEN: `bot-${job.id}`,
        SFU_TOKEN: `sfu-${job.id}`,
      },
      dir: jobDir,
      onOutput: (c) => output.push(c.toString()),
    };
    return { job, dir: jobDir, run: await runner.start(spec), output, name: `calls-offloader-${job.id}` };
  };

  it('makes a Job the Kubernetes schemas accept, with the limits, isolation and labels', async () => {
    const { run, name, job } = await start(base(), {});
    await run.exited;
    const made = standin.created.find((j) => j.metadata.name === name)!;
    assert.deepEqual(standin.rejected, []);
    assert.equal(made.spec.backoffLimit, 0, 'never run twice');
    assert.equal(made.spec.activeDeadlineSeconds, 600 + 1500);
    assert.equal(made.spec.ttlSecondsAfterFinished, 3600);
    const pod = made.spec.template.spec;
    assert.equal(pod.restartPolicy, 'Never');
    assert.equal(pod.automountServiceAccountToken, false);
    assert.deepEqual(pod.securityContext.seccompProfile, { type: 'RuntimeDefault' });
    assert.deepEqual(pod.securityContext.sysctls, [{ name: 'net.ipv4.ip_local_port_range', value: '30000 60000' }]);
    assert.deepEqual(pod.tolerations, [{ key: 'calls', operator: 'Equal', value: 'jobs', effect: 'NoSchedule' }]);
    assert.deepEqual(pod.nodeSelector, { 'node-role/calls': 'true' });
    const c = pod.containers[0];
    assert.equal(c.image, IMAGE);
    assert.deepEqual(c.resources.limits, { cpu: '2', memory: '2Gi' });
    assert.deepEqual(c.securityContext.capabilities, { drop: ['ALL'] });
    assert.equal(c.securityContext.readOnlyRootFilesystem, true);
    assert.ok(c.env.some((e: { name: string; value: string }) => e.name === 'JOB_DIR' && e.value === '/job'));
    assert.equal(made.metadata.labels[K8S_LABELS.job], job.id);
  });

  it("keeps the job's tokens out of the Job: a Secret the Job owns holds them while the pod runs, and goes when it ends, also on a failure", async () => {
    const runner = base();
    const secretPath = (name: string) => `/api/v1/namespaces/jobs/secrets/${name}`;
    const running = await start(runner, { sleepMs: 60_000 });
    await waitFor('running', () => running.output.join('').includes('starting'), 20_000);
    const made = standin.created.find((j) => j.metadata.name === running.name)!;
    assert.equal(made.spec.suspend, true, 'created suspended: no pod before its Secret');
    assert.ok(!JSON.stringify(made).includes(`bot-${running.job.id}`) && !JSON.stringify(made).includes('sfu-'));
    const env = made.spec.template.spec.containers[0].env as { name: string; valueFrom?: unknown }[];
    for (const key of ['AUTH_TOKEN', 'SFU_TOKEN'])
      assert.deepEqual(env.find((e) => e.name === key)!.valueFrom, { secretKeyRef: { name: running.name, key } });
    const secret = standin.secrets.get(`jobs/${running.name}`)!;
    const owner = standin.job(`jobs/${running.name}`)!;
    assert.deepEqual(secret.metadata.ownerReferences, [
      { apiVersion: 'batch/v1', kind: 'Job', name: running.name, uid: owner.metadata.uid },
    ]);
    assert.equal(secret.metadata.labels[K8S_LABELS.job], running.job.id);
    assert.match(
      running.output.join(''),
      new RegExp(`SFU_TOKEN=sfu-${running.job.id}\n`),
      'the program has its tokens',
    );
    assert.match(running.output.join(''), new RegExp(`AUTH_TOKEN=bot-${running.job.id}\n`));
    running.run.signal('SIGKILL');
    await running.run.exited;
    await waitFor('its Secret deleted', async () => (await standin.get(secretPath(running.name))) === 404);

    const failing = await start(runner, { exitCode: 3 });
    assert.deepEqual(await failing.run.exited, { code: 3, signal: null });
    await waitFor('its Secret deleted', async () => (await standin.get(secretPath(failing.name))) === 404);
    assert.equal(await standin.get(`/apis/batch/v1/namespaces/jobs/jobs/${failing.name}`), 200, 'the failed Job stays');

    // a Role without secrets (an upgrade that kept the old one): the start fails, and its Job goes unrun
    standin.secretsForbidden = true;
    try {
      const callId = ids();
      const job = { id: ids(), type: 'recording', runner: 'mattermost/calls-recorder:v0.8.5', max_duration_sec: 60 };
      const dir = mkdtempSync(join(jobDirs, 'job-'));
      const env = { JOB_ID: job.id, JOB_TYPE: 'recording', JOB_DIR: dir, CALL_ID: callId, AUTH_TOKEN: 'bot' };
      await assert.rejects(
        runner.start({ job: job as unknown as JobRecord, env, dir, onOutput: () => undefined }),
        /secrets is forbidden/,
      );
      assert.equal(await standin.get(`/apis/batch/v1/namespaces/jobs/jobs/calls-offloader-${job.id}`), 404);
    } finally {
      standin.secretsForbidden = false;
    }
  });

  it('runs a job to its end: its log followed, output_data from the termination message (emptyDir), the Job removed after success', async () => {
    const { run, dir, output, name } = await start(base(), {
      output: { file_id: 'abc', duration_ms: 5 },
      stderr: 'a line on stderr',
    });
    assert.deepEqual(await run.exited, { code: 0, signal: null });
    assert.deepEqual(JSON.parse(readFileSync(join(dir, 'output.json'), 'utf8')), { file_id: 'abc', duration_ms: 5 });
    await waitFor('log complete', () => output.join('').includes('test job exiting with 0'));
    assert.match(output.join(''), /a line on stderr/);
    await waitFor(
      'Job removed',
      async () => (await standin.get(`/apis/batch/v1/namespaces/jobs/jobs/${name}`)) === 404,
    );
  });

  it('with a claim: the job writes its directory inside the claim, which the worker reads; output_data still comes as the termination message', async () => {
    const dir = join(standin.claimDir, 'jobs', ids());
    const { run } = await start(
      base({ claimName: 'calls-offloader-data' }),
      { output: { file: '/artifacts/x.mp4', duration_ms: 7 } },
      dir,
    );
    assert.deepEqual(await run.exited, { code: 0, signal: null });
    assert.deepEqual(JSON.parse(readFileSync(join(dir, 'output.json'), 'utf8')), {
      file: join(standin.claimDir, 'artifacts', 'x.mp4'), // where the worker sees it
      duration_ms: 7,
    });
    const made = standin.created.at(-1)!;
    assert.equal(made.spec.template.spec.containers[0].volumeMounts[0].subPath, dir.slice(standin.claimDir.length + 1));
    assert.deepEqual(made.spec.template.spec.volumes[0], {
      name: 'job',
      persistentVolumeClaim: { claimName: 'calls-offloader-data' },
    });
  });

  it('SIGTERM deletes the pod gracefully (the program finishes), also before its name is known; SIGKILL at once; a failure keeps its Job', async () => {
    const runner = base();
    const graceful = await start(runner, { sleepMs: 60_000 });
    await waitFor('running', () => graceful.output.join('').includes('starting'), 20_000);
    graceful.run.signal('SIGTERM');
    assert.deepEqual(await graceful.run.exited, { code: 0, signal: null });
    assert.match(graceful.output.join(''), /got SIGTERM/);

    const stubborn = await start(runner, { sleepMs: 60_000, ignoreTerm: true });
    await waitFor('running', () => stubborn.output.join('').includes('starting'), 20_000);
    stubborn.run.signal('SIGKILL');
    assert.deepEqual(await stubborn.run.exited, { code: null, signal: 'SIGKILL' });

    // asked before the runner has learnt its pod's name (a stop as the job starts): sent once it has
    const early = await start(runner, { sleepMs: 60_000 });
    early.run.signal('SIGTERM');
    // the program ends at the stop (or the pod goes before it starts), not 60 s later as if never asked
    // (ended by the signal itself when it came before the program's handler was in place)
    const exit = await early.run.exited;
    assert.ok(
      exit.signal === 'SIGTERM' ||
        /got SIGTERM|the pod failed: the pod was deleted before its program ended/.test(early.output.join('')),
      `${JSON.stringify(exit)}: ${early.output.join('')}`,
    );

    const failing = await start(runner, { exitCode: 3 });
    assert.deepEqual(await failing.run.exited, { code: 3, signal: null });
    assert.equal(
      await standin.get(`/apis/batch/v1/namespaces/jobs/jobs/${failing.name}`),
      200,
      'a failed Job stays (ttlSecondsAfterFinished removes it)',
    );
  });

  it('a pod whose image cannot be pulled fails the run at once with the reason', async () => {
    const { run, output } = await start(base({ images: { 'calls-recorder': 'registry.example.com/absent:1' } }), {});
    assert.deepEqual(await run.exited, { code: 1, signal: null });
    assert.match(output.join(''), /the pod failed: ErrImagePull: no program for registry\.example\.com\/absent:1/);
  });

  it('the watch resumes after the API server ends it and compacts its history (410 Gone): the end is still seen', async () => {
    const { run, output } = await start(base(), { sleepMs: 1500 });
    await waitFor('running', () => output.join('').includes('starting'), 20_000);
    standin.compact();
    assert.deepEqual(await run.exited, { code: 0, signal: null });
  });

  it('an API server that cannot list the pod for a moment is waited for: the run ends as its program does', async () => {
    // taken for a crash before, while the program ran on: a --recover run would have shared its directory
    standin.failPodLists(2);
    const { run } = await start(base(), { output: { file_id: 'abc' } });
    assert.deepEqual(await run.exited, { code: 0, signal: null });
  });

  it('reconcile ends the Jobs no live worker supervises and keeps the others', async () => {
    const runner = base();
    const kept = await start(runner, { sleepMs: 60_000 });
    const orphan = await start(runner, { sleepMs: 60_000 });
    await waitFor('both running', () => [kept, orphan].every((r) => r.output.join('').includes('starting')), 20_000);
    const ended = await base().reconcile(async (jobId) => (jobId === orphan.job.id ? 'end' : 'keep'));
    assert.deepEqual(ended, [orphan.job.id]);
    assert.deepEqual(await orphan.run.exited, { code: 0, signal: null }, 'its pod got SIGTERM and finished');
    kept.run.signal('SIGKILL');
    await kept.run.exited;
  });
});

describe('kubernetes runner through the service', () => {
  const standin = new KubernetesStandin({ 'calls-offloader-job': TEST_JOB });
  const kubeconfig = join(mkdtempSync(join(tmpdir(), 'kubeconfig-')), 'config');
  let api: Api;
  let config: ReturnType<typeof testConfig>;
  before(async () => {
    await standin.listen();
    writeFileSync(kubeconfig, standin.kubeconfig());
    process.env.KUBECONFIG = kubeconfig;
    config = testConfig({
      JOBS_APITYPE: 'kubernetes',
      K8S_NAMESPACE: 'jobs',
      JOBS_JOBIMAGES: `calls-recorder=${IMAGE}`,
    });
    api = await startApi(config);
  });
  after(async () => {
    delete process.env.KUBECONFIG;
    await api.close();
    await cleanup(config);
    await standin.close();
    rmSync(standin.claimDir, { recursive: true, force: true });
    rmSync(dirname(kubeconfig), { recursive: true, force: true });
  });

  it('a job runs as a Kubernetes Job and ends with its output', async () => {
    const worker = await startWorker(config);
    try {
      const auth = basic(ids());
      const callId = ids();
      behave(callId, { output: { file_id: 'f1', duration_ms: 3 } });
      const id = (await call(api.url, 'POST', '/jobs', auth, recordingJob(callId))).json.id;
      const job = await jobWhen(api.url, auth, id, 'succeeded');
      assert.deepEqual(job.output_data, { file_id: 'f1', duration_ms: 3 });
      assert.match(
        (await call(api.url, 'GET', `/jobs/${id}/logs`, auth)).text,
        /with the kubernetes runner[\s\S]*test job/,
      );
      // The pod's log has both streams in one: a failure's reason is its last line, which was
      // lost (the error said only "exited with code 1")
      const failingCall = ids();
      behave(failingCall, { exitCode: 1, stderr: 'failing on purpose' });
      const failing = (await call(api.url, 'POST', '/jobs', auth, recordingJob(failingCall))).json.id;
      const failed = await jobWhen(api.url, auth, failing, 'failed');
      assert.equal(failed.error, 'the job program exited with code 1: failing on purpose');
      assert.deepEqual(standin.rejected, []);
    } finally {
      await worker.close();
    }
  });

  it('an API server slower to create the Job than the lease: the lease is renewed meanwhile, and the job runs', async () => {
    const worker = await startWorker(config);
    standin.slowCreates(4 * config.leaseSec * 1000);
    try {
      const auth = basic(ids());
      const callId = ids();
      behave(callId, { output: { file_id: 'f2' } });
      const id = (await call(api.url, 'POST', '/jobs', auth, recordingJob(callId))).json.id;
      // the job failed as "the worker stopped responding" while its Job was being made, and the
      // program was killed as soon as it started
      const job = await jobWhen(api.url, auth, id, ['succeeded', 'failed'], 60_000);
      assert.equal(job.status, 'succeeded', job.error);
      assert.deepEqual(job.output_data, { file_id: 'f2' });
    } finally {
      standin.slowCreates(0);
      await worker.close();
    }
  });
});

// The Kubernetes runner: a batch/v1 Job per job run (backoffLimit 0: never run twice), its pod
// watched until the program ends, its log followed through the pod log API. Signals map to pod
// deletion: SIGTERM deletes the pod with a grace period (the kubelet sends SIGTERM, then SIGKILL),
// SIGKILL deletes it at once. The watch resumes from the last resourceVersion it saw, and after a
// 410 Gone from a fresh list. The job's directory is a subPath of a ReadWriteMany claim the workers
// mount too (JOBS_KUBERNETES_PERSISTENTVOLUMECLAIMNAME), or an emptyDir whose output.json comes
// back as the container's termination message. The job's tokens are not in the Job: whoever may
// read Jobs in the namespace would read them for as long as a failed Job is kept
// (ttlSecondsAfterFinished). They are in a Secret of the Job's name, owned by the Job (so that
// Kubernetes deletes it with the Job whatever happens to the worker), which the pod reads them from
// and the worker deletes as soon as the pod has ended. The Job is created suspended, the Secret
// then with the Job's uid, and the Job resumed: no pod starts before its Secret exists, and no
// Secret exists without its owner.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import {
  BatchV1Api,
  CoreV1Api,
  KubeConfig,
  Log,
  type V1EnvVar,
  type V1Job,
  type V1Pod,
  type V1Secret,
  Watch,
} from '@kubernetes/client-node';
import { EXIT, JOB_ENV, OUTPUT_FILE, RECOVER_ARG, tokenEnv, writeJobFile } from '../jobs/contract.js';
import { imageNameOf } from '../jobs/runner-image.js';
import type { JobType } from '../jobs/schema.js';
import {
  type JobExit,
  type Reconcile,
  type Runner,
  type RunningJob,
  type StartSpec,
  LOG_END_WAIT_MS,
  exitOf,
  hostPaths,
  tried,
} from './runner.js';

export interface KubernetesRunnerOptions {
  namespace: string;
  /** runner name → image */
  images: Record<string, string>;
  /** per job type, as upstream's JOBS_KUBERNETES_JOBSRESOURCEREQUIREMENTS */
  resources?: Partial<Record<JobType, Record<string, unknown>>>;
  tolerations?: Record<string, unknown>[];
  nodeSelector?: Record<string, string>;
  sysctls?: Record<string, string>;
  /** a ReadWriteMany claim holding JOBS_DATADIR; emptyDir without */
  claimName?: string;
  /** the workers' JOBS_DATADIR: a job directory's path below it is its subPath in the claim */
  dataDir: string;
  /** the Job's backstop deadline beyond max_duration_sec (the worker stops the job itself first) */
  deadlineMarginSec: number;
  ttlSecondsAfterFinished: number;
  /** labels every Job with it: several services may share a namespace */
  service: string;
  /** tests: a kubeconfig's API server; in a cluster the service account's */
  kubeConfig?: KubeConfig;
}

export const K8S_LABELS = {
  service: 'calls-offloader.mattermost.com/service',
  job: 'calls-offloader.mattermost.com/job',
  type: 'calls-offloader.mattermost.com/type',
} as const;

const JOB_UID = 10001;
const IN_POD = { dir: '/job', artifacts: '/artifacts', tmp: '/tmp' };
/** Waiting reasons of a container that will not start without someone's help. */
const UNSTARTABLE = new Set([
  'ErrImagePull',
  'ImagePullBackOff',
  'InvalidImageName',
  'CreateContainerConfigError',
  'CreateContainerError',
]);
/** How long to wait for a deleted leftover Job of the same name to be gone. */
const LEFTOVER_WAIT_MS = 30_000;

type Watched = { type: string; object: V1Pod & { code?: number } };

export class KubernetesRunner implements Runner {
  readonly kind = 'kubernetes';
  private readonly kc: KubeConfig;
  private readonly batch: BatchV1Api;
  private readonly core: CoreV1Api;

  constructor(private readonly opts: KubernetesRunnerOptions) {
    this.kc = opts.kubeConfig ?? inCluster();
    this.batch = this.kc.makeApiClient(BatchV1Api);
    this.core = this.kc.makeApiClient(CoreV1Api);
  }

  check(imageName: string): string | null {
    return this.opts.images[imageName] ? null : `the kubernetes runner has no image for ${imageName} (JOBS_JOBIMAGES)`;
  }

  private labels(spec: StartSpec): Record<string, string> {
    const { job } = spec;
    return { [K8S_LABELS.service]: this.opts.service, [K8S_LABELS.job]: job.id, [K8S_LABELS.type]: job.type };
  }

  /** The Secret holding a run's tokens, named as its Job; none when the job has none. */
  secretObject(spec: StartSpec, name: string): V1Secret | undefined {
    const tokens = Object.entries(spec.env).filter(([n]) => tokenEnv.has(n));
    if (!tokens.length) return undefined;
    return {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name, namespace: this.opts.namespace, labels: this.labels(spec) },
      type: 'Opaque',
      immutable: true,
      data: Object.fromEntries(tokens.map(([n, v]) => [n, Buffer.from(v).toString('base64')])),
    };
  }

  /** The Job this runner makes for a run: exported for the tests that validate it against the schemas. */
  jobObject(spec: StartSpec, name: string, suspend = false): V1Job {
    const { job } = spec;
    const image = this.opts.images[imageNameOf(job.runner)]!;
    const labels = this.labels(spec);
    const subPath = this.opts.claimName ? relativeTo(this.opts.dataDir, spec.dir) : undefined;
    const env = { ...spec.env, [JOB_ENV.dir]: IN_POD.dir, [JOB_ENV.artifacts]: IN_POD.artifacts };
    const envVar = ([n, value]: [string, string]): V1EnvVar =>
      tokenEnv.has(n) ? { name: n, valueFrom: { secretKeyRef: { name, key: n } } } : { name: n, value };
    return {
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: { name, namespace: this.opts.namespace, labels },
      spec: {
        ...(suspend ? { suspend } : {}),
        backoffLimit: 0,
        activeDeadlineSeconds: job.max_duration_sec + this.opts.deadlineMarginSec,
        ttlSecondsAfterFinished: this.opts.ttlSecondsAfterFinished,
        template: {
          metadata: { labels },
          spec: {
            restartPolicy: 'Never',
            automountServiceAccountToken: false,
            enableServiceLinks: false,
            terminationGracePeriodSeconds: 3600,
            ...(this.opts.tolerations ? { tolerations: this.opts.tolerations as never } : {}),
            ...(this.opts.nodeSelector && Object.keys(this.opts.nodeSelector).length
              ? { nodeSelector: this.opts.nodeSelector }
              : {}),
            securityContext: {
              runAsNonRoot: true,
              runAsUser: JOB_UID,
              runAsGroup: JOB_UID,
              fsGroup: JOB_UID,
              seccompProfile: { type: 'RuntimeDefault' },
              ...(this.opts.sysctls && Object.keys(this.opts.sysctls).length
                ? { sysctls: Object.entries(this.opts.sysctls).map(([n, value]) => ({ name: n, value })) }
                : {}),
            },
            containers: [
              {
                name: 'job',
                image,
                ...(spec.args?.length ? { args: spec.args } : {}),
                env: Object.entries(env).map(envVar),
                ...(this.opts.resources?.[job.type] ? { resources: this.opts.resources[job.type] as never } : {}),
                workingDir: IN_POD.dir,
                terminationMessagePath: `${IN_POD.dir}/${OUTPUT_FILE}`,
                terminationMessagePolicy: 'File',
                securityContext: {
                  allowPrivilegeEscalation: false,
                  readOnlyRootFilesystem: true,
                  capabilities: { drop: ['ALL'] },
                },
                volumeMounts: [
                  { name: 'job', mountPath: IN_POD.dir, ...(subPath ? { subPath } : {}) },
                  { name: 'job', mountPath: IN_POD.artifacts, ...(subPath ? { subPath: 'artifacts' } : {}) },
                  { name: 'tmp', mountPath: IN_POD.tmp },
                ],
              },
            ],
            volumes: [
              this.opts.claimName
                ? { name: 'job', persistentVolumeClaim: { claimName: this.opts.claimName } }
                : { name: 'job', emptyDir: {} },
              { name: 'tmp', emptyDir: { medium: 'Memory', sizeLimit: '256Mi' } },
            ],
          },
        },
      },
    };
  }

  async start(spec: StartSpec): Promise<RunningJob> {
    const imageName = imageNameOf(spec.job.runner);
    if (!this.opts.images[imageName]) throw new Error(this.check(imageName)!);
    const name = `calls-offloader-${spec.job.id}${spec.args?.includes(RECOVER_ARG) ? '-recover' : ''}`;
    const namespace = this.opts.namespace;
    await this.clearLeftover(name);
    const secret = this.secretObject(spec, name);
    const created = await this.batch.createNamespacedJob({ namespace, body: this.jobObject(spec, name, !!secret) });
    if (secret) {
      const owner = { apiVersion: 'batch/v1', kind: 'Job', name, uid: created.metadata!.uid! };
      try {
        await this.core.createNamespacedSecret({
          namespace,
          body: { ...secret, metadata: { ...secret.metadata, ownerReferences: [owner] } },
        });
        await this.batch.patchNamespacedJob({
          name,
          namespace,
          body: [{ op: 'replace', path: '/spec/suspend', value: false }],
        });
      } catch (err) {
        await this.remove(name);
        throw err;
      }
    }

    let pod: string | undefined;
    /** the pod's log, followed once its container runs: resolves when the log has ended */
    let followed: Promise<void> | undefined;
    /** with a claim the job's directory and the artifacts are on the worker's host too */
    const mounts: [string, string][] = this.opts.claimName
      ? [
          [IN_POD.dir, spec.dir],
          [IN_POD.artifacts, join(this.opts.dataDir, 'artifacts')],
        ]
      : [];
    let settle!: (exit: JobExit) => void;
    const exited = new Promise<JobExit>((resolve) => (settle = resolve));
    let done = false;
    let watch: AbortController | undefined;
    /** A signal asked for before the pod's name was known: sent as soon as it is. */
    let pending: 'SIGTERM' | 'SIGKILL' | undefined;
    const deletePod = (sig: 'SIGTERM' | 'SIGKILL') => {
      const gracePeriodSeconds = sig === 'SIGKILL' ? 0 : 3600; // the worker escalates to SIGKILL itself
      void this.core.deleteNamespacedPod({ name: pod!, namespace, gracePeriodSeconds }).catch(() => undefined);
    };
    const onPod = (p: V1Pod, deleted = false): void => {
      if (done) return;
      const named = pod === undefined && p.metadata?.name !== undefined;
      pod = p.metadata?.name ?? pod;
      if (named && pending) deletePod(pending);
      const status = p.status?.containerStatuses?.find((c) => c.name === 'job');
      if (!followed && pod && (status?.state?.running || status?.state?.terminated)) followed = this.follow(pod, spec);
      const terminated = status?.state?.terminated;
      if (terminated) return finish(terminated.exitCode, terminated.message);
      // Ends the program never saw (an eviction, a deleted pod, a pod that cannot be listed) are
      // crashes, which a --recover run salvages; a program that cannot start has nothing to salvage.
      if (p.status?.phase === 'Failed') return finish(EXIT.crashed, undefined, p.status.reason ?? p.status.message);
      // A program that can never start (its image, its configuration) fails now, not at the deadline.
      const waiting = status?.state?.waiting;
      if (waiting?.reason && UNSTARTABLE.has(waiting.reason))
        return finish(1, undefined, `${waiting.reason}: ${waiting.message ?? ''}`);
      if (deleted) finish(EXIT.crashed, undefined, 'the pod was deleted before its program ended');
    };
    const finish = (code: number, message?: string, why?: string): void => {
      done = true;
      watch?.abort();
      if (secret) void this.removeSecret(name); // the pod has ended: nothing needs the tokens now
      // the log's last lines (a failure's reason among them) may come after the pod's end
      const logEnded = Promise.race([followed, new Promise((r) => setTimeout(r, LOG_END_WAIT_MS))]);
      void logEnded
        .then(() => {
          // The kubelet mounts a file of its own at terminationMessagePath: what the program writes
          // there reaches the worker only as the termination message, with a claim as without one.
          if (message) {
            mkdirSync(spec.dir, { recursive: true });
            writeJobFile(spec.dir, OUTPUT_FILE, message);
          }
          hostPaths(spec.dir, mounts);
          if (why) spec.onOutput(Buffer.from(`the pod failed: ${why}\n`), 'stderr');
          if (code === 0) void this.remove(name);
          settle(exitOf(code));
        })
        .catch((err: Error) => {
          spec.onOutput(Buffer.from(`the pod's end could not be recorded: ${err.message}\n`), 'stderr');
          settle({ code: EXIT.crashed, signal: null });
        });
    };

    // List, then watch from the list's resourceVersion; again from the last one seen when the
    // watch ends, and from a fresh list after 410 Gone.
    const selector = `job-name=${name}`;
    const relist = async (): Promise<string> => {
      const list = await this.core.listNamespacedPod({ namespace, labelSelector: selector });
      for (const p of list.items) onPod(p);
      return list.metadata?.resourceVersion ?? '';
    };
    const follow = async (from: string): Promise<void> => {
      let version = from;
      while (!done) {
        const ended = new Promise<unknown>((resolve) => {
          void new Watch(this.kc)
            .watch(
              `/api/v1/namespaces/${namespace}/pods`,
              { labelSelector: selector, resourceVersion: version, allowWatchBookmarks: true },
              (type, object: Watched['object']) => {
                if (type === 'ERROR') {
                  if (object.code === 410) version = '';
                  return;
                }
                version = object.metadata?.resourceVersion ?? version;
                if (type !== 'BOOKMARK') onPod(object, type === 'DELETED');
              },
              resolve,
            )
            .then((controller) => (watch = controller), resolve);
        });
        await ended;
        if (done) return;
        if (version === '') version = await relist().catch(() => '');
        await new Promise((r) => setTimeout(r, 200));
      }
    };
    void tried(relist).then(follow, async (err) => {
      await this.remove(name); // best effort: an API server that cannot list may not delete either
      finish(EXIT.crashed, undefined, `could not list its pod: ${(err as Error).message}`);
    });

    return {
      signal: (sig) => {
        if (done) return;
        if (pod) deletePod(sig);
        else if (pending !== 'SIGKILL') pending = sig;
      },
      exited,
      mounts,
    };
  }

  /**
   * Ends the Jobs of this service whose job no live worker supervises: their pods get SIGTERM.
   * Returns their job ids. (Their Secrets go with them: a Job owns its Secret.)
   */
  async reconcile(decide: Reconcile): Promise<string[]> {
    const list = await this.batch.listNamespacedJob({
      namespace: this.opts.namespace,
      labelSelector: `${K8S_LABELS.service}=${this.opts.service}`,
    });
    const ended: string[] = [];
    for (const job of list.items) {
      const jobId = job.metadata?.labels?.[K8S_LABELS.job] ?? '';
      const finished = (job.status?.conditions ?? []).some(
        (c) => (c.type === 'Complete' || c.type === 'Failed') && c.status === 'True',
      );
      if (finished || job.metadata?.deletionTimestamp || (await decide(jobId)) === 'keep') continue;
      await this.batch
        .deleteNamespacedJob({
          name: job.metadata!.name!,
          namespace: this.opts.namespace,
          propagationPolicy: 'Background',
          gracePeriodSeconds: 30,
        })
        .catch(() => undefined);
      ended.push(jobId);
    }
    return ended;
  }

  /**
   * The pod's log, followed until it ends, into the job log (Kubernetes merges the two streams);
   * resolves when it has ended (the client's own promise, once it has begun).
   */
  private follow(pod: string, spec: StartSpec): Promise<void> {
    return new Promise((ended) => {
      const sink = new Writable({
        write(chunk: Buffer, _encoding, callback) {
          // The pod's log has both streams in one: any line may be what the program wrote to
          // standard error, and its last on a failure is the reason.
          spec.onOutput(chunk, 'stderr');
          callback();
        },
      });
      sink.once('finish', () => ended());
      new Log(this.kc).log(this.opts.namespace, pod, 'job', sink, { follow: true }).catch((err: Error) => {
        spec.onOutput(Buffer.from(`the pod's log could not be read: ${err.message}\n`), 'stderr');
        ended();
      });
    });
  }

  /** A Job of the same name from an attempt the worker ended: removed before this one starts. */
  private async clearLeftover(name: string): Promise<void> {
    const namespace = this.opts.namespace;
    const exists = () =>
      this.batch.readNamespacedJob({ name, namespace }).then(
        () => true,
        () => false,
      );
    // its Secret goes with it, but Kubernetes' collector may take a while: the name is needed now
    await this.removeSecret(name);
    if (!(await exists())) return;
    await this.remove(name);
    const until = Date.now() + LEFTOVER_WAIT_MS;
    while ((await exists()) && Date.now() < until) await new Promise((r) => setTimeout(r, 250));
  }

  private async removeSecret(name: string): Promise<void> {
    await this.core.deleteNamespacedSecret({ name, namespace: this.opts.namespace }).catch(() => undefined);
  }

  private async remove(name: string): Promise<void> {
    await this.batch
      .deleteNamespacedJob({ name, namespace: this.opts.namespace, propagationPolicy: 'Background' })
      .catch(() => undefined);
  }
}

function inCluster(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromDefault();
  return kc;
}

/** A job directory's path inside the claim that holds JOBS_DATADIR. */
function relativeTo(dataDir: string, dir: string): string {
  const base = dataDir.replace(/\/+$/, '');
  if (!dir.startsWith(`${base}/`)) throw new Error(`the job directory ${dir} is not inside JOBS_DATADIR ${dataDir}`);
  return dir.slice(base.length + 1);
}

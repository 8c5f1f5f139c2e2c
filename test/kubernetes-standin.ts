// A stand-in for the Kubernetes API server (HTTPS, a bearer token) and one kubelet, for the Kubernetes runner's tests: no
// cluster runs here. It answers the endpoints the runner uses as the API server does (paths, list
// and watch with resourceVersion, watch events as JSON lines, 410 Gone as an ERROR event once the
// history is compacted, 409 on a name taken, 404 Status bodies, Foreground/Background deletion),
// validates every Job and Secret it is given against the Kubernetes schemas (kubernetes-models),
// holds a suspended Job's pod until a JSON Patch resumes it, deletes a Job's owned Secrets with it
// (the garbage collector), resolves env from secretKeyRef (a missing Secret or key leaves the
// container waiting in CreateContainerConfigError, as the kubelet does), and runs each
// pod's container as a local process: the image names a program (as the process runner maps them),
// volume mounts become directories (a claim's subPath below `claimDir`, an emptyDir in a temp
// directory; the env's mount paths are rewritten to them: a process cannot see /job), and the
// termination message is read from terminationMessagePath (and is not left in the volume there, as
// the kubelet's own file mounted at that path hides it from the volume). Signals follow pod deletion: SIGTERM,
// then SIGKILL after the grace period. A pod's log lags its container's state by 300 ms, as a
// kubelet's does: the last lines come after the pod's end.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer, request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Job as JobModel } from 'kubernetes-models/batch/v1/Job';
import { Secret as SecretModel } from 'kubernetes-models/v1/Secret';
import { loopbackCertificate } from './helpers.js';

type Obj = { apiVersion?: string; kind?: string; metadata: Record<string, any>; spec?: any; status?: any };
interface Event {
  rv: number;
  kind: 'Job' | 'Pod';
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: Obj;
}

/** How long a pod's log lags its container's state, as a kubelet's does. */
const LOG_LAG_MS = 300;

export class KubernetesStandin {
  private server?: Server;
  private rv = 100;
  private readonly jobs = new Map<string, Obj>();
  /** Secrets by namespace/name: `data` as sent (base64) */
  readonly secrets = new Map<string, Obj & { data?: Record<string, string> }>();
  private readonly pods = new Map<string, Obj & { proc?: ChildProcess; log: Buffer[]; logWaiters: (() => void)[] }>();
  private history: Event[] = [];
  private readonly watchers = new Set<{ kind: 'Job' | 'Pod'; selector: Record<string, string>; res: ServerResponse }>();
  /** every Job body received, for the tests */
  readonly created: Obj[] = [];
  readonly rejected: string[] = [];
  url = '';

  constructor(
    private readonly programs: Record<string, string>,
    readonly claimDir = mkdtempSync(join(tmpdir(), 'k8s-claim-')),
  ) {}

  private cert = '';
  /** the pods' emptyDir volumes, on this host */
  private readonly emptyDirs: string[] = [];

  /** Serves HTTPS with a certificate of its own for 127.0.0.1, as an API server does (the client refuses plain HTTP). */
  async listen(): Promise<string> {
    const dir = mkdtempSync(join(tmpdir(), 'k8s-tls-'));
    const { certFile, keyFile } = loopbackCertificate(dir);
    this.cert = readFileSync(certFile, 'utf8');
    const key = readFileSync(keyFile);
    rmSync(dir, { recursive: true, force: true });
    this.server = createServer(
      { cert: this.cert, key },
      (req, res) => void this.route(req, res).catch((err) => this.status(res, 500, String(err))),
    );
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.url = `https://127.0.0.1:${(this.server!.address() as AddressInfo).port}`;
    return this.url;
  }

  /** Stops every pod's program and the server; removes the pods' emptyDir volumes. */
  async close(): Promise<void> {
    for (const p of this.pods.values()) p.proc?.kill('SIGKILL');
    for (const w of this.watchers) w.res.end();
    await new Promise((r) => this.server?.close(r));
    for (const dir of this.emptyDirs) rmSync(dir, { recursive: true, force: true });
  }

  /** A kubeconfig for the runner: this server, no TLS, a token. */
  kubeconfig(): string {
    return JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [
        {
          name: 'standin',
          cluster: { server: this.url, 'certificate-authority-data': Buffer.from(this.cert).toString('base64') },
        },
      ],
      users: [{ name: 'standin', user: { token: 'standin-token' } }],
      contexts: [{ name: 'standin', context: { cluster: 'standin', user: 'standin', namespace: 'jobs' } }],
      'current-context': 'standin',
    });
  }

  /** Forgets the event history, as etcd compaction does: watches from an older resourceVersion get 410. */
  compact(): void {
    this.history = [];
    for (const w of this.watchers) w.res.end(); // the API server also ends watches now and then
  }

  /** The next `n` lists of pods are answered 503, as by an API server restarting. */
  failPodLists(n: number): void {
    this.podListFailures = n;
  }
  private podListFailures = 0;

  /** Jobs created from now are answered after `ms`, as by an API server whose admission webhooks are slow. */
  slowCreates(ms: number): void {
    this.createDelayMs = ms;
  }
  private createDelayMs = 0;

  /** Refuses to create Secrets, as RBAC does for a Role without them. */
  secretsForbidden = false;

  /** A Job as the API server holds it (namespace/name). */
  job(key: string): Obj | undefined {
    return this.jobs.get(key);
  }

  /** The status of a GET on this server, for the tests (with its own CA). */
  get(path: string): Promise<number> {
    return new Promise((resolve, reject) => {
      const req = httpsRequest(
        `${this.url}${path}`,
        { ca: this.cert, headers: { authorization: 'Bearer standin-token' } },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.end();
    });
  }

  podsOf(jobName: string): Obj[] {
    return [...this.pods.values()].filter((p) => p.metadata.labels['job-name'] === jobName);
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.headers.authorization !== 'Bearer standin-token') return this.status(res, 401, 'Unauthorized');
    const url = new URL(req.url!, this.url);
    const q = url.searchParams;
    let m: RegExpExecArray | null;
    if ((m = /^\/apis\/batch\/v1\/namespaces\/([^/]+)\/jobs(?:\/([^/]+))?$/.exec(url.pathname))) {
      const [, ns, name] = m;
      if (req.method === 'POST' && !name) {
        const job = JSON.parse(await body(req));
        await new Promise((r) => setTimeout(r, this.createDelayMs));
        return this.createJob(ns!, job, res);
      }
      if (req.method === 'GET' && !name) return this.list('Job', ns!, q, res);
      const key = `${ns}/${name}`;
      const job = this.jobs.get(key);
      if (!job) return this.status(res, 404, `jobs.batch "${name}" not found`, 'NotFound');
      if (req.method === 'GET') return json(res, 200, job);
      if (req.method === 'PATCH') return this.patchJob(ns!, job, req.headers['content-type'], await body(req), res);
      if (req.method === 'DELETE') {
        const opts = JSON.parse((await body(req)) || '{}');
        this.deleteJob(key, Number(q.get('gracePeriodSeconds') ?? opts.gracePeriodSeconds ?? 30));
        return this.status(res, 200, 'Success', undefined, 'Success');
      }
    }
    if ((m = /^\/api\/v1\/namespaces\/([^/]+)\/secrets(?:\/([^/]+))?$/.exec(url.pathname))) {
      const [, ns, name] = m;
      if (req.method === 'POST' && !name && this.secretsForbidden)
        return this.status(res, 403, `secrets is forbidden: cannot create resource "secrets" in "${ns}"`, 'Forbidden');
      if (req.method === 'POST' && !name) return this.createSecret(ns!, JSON.parse(await body(req)), res);
      const secret = this.secrets.get(`${ns}/${name}`);
      if (!secret) return this.status(res, 404, `secrets "${name}" not found`, 'NotFound');
      if (req.method === 'GET') return json(res, 200, secret);
      if (req.method === 'DELETE') {
        this.secrets.delete(`${ns}/${name}`);
        return this.status(res, 200, 'Success', undefined, 'Success');
      }
    }
    if ((m = /^\/api\/v1\/namespaces\/([^/]+)\/pods(?:\/([^/]+))?(\/log)?$/.exec(url.pathname))) {
      const [, ns, name, log] = m;
      if (req.method === 'GET' && !name && !['true', '1'].includes(q.get('watch') ?? '') && this.podListFailures > 0) {
        this.podListFailures--;
        return this.status(res, 503, 'the server is currently unable to handle the request', 'ServiceUnavailable');
      }
      if (req.method === 'GET' && !name) return this.list('Pod', ns!, q, res);
      const pod = this.pods.get(`${ns}/${name}`);
      if (!pod) return this.status(res, 404, `pods "${name}" not found`, 'NotFound');
      if (log && req.method === 'GET') return this.streamLog(pod, q.get('follow') === 'true', res);
      if (req.method === 'DELETE') {
        const opts = JSON.parse((await body(req)) || '{}');
        this.deletePod(`${ns}/${name}`, Number(q.get('gracePeriodSeconds') ?? opts.gracePeriodSeconds ?? 30));
        return json(res, 200, strip(pod));
      }
    }
    return this.status(
      res,
      404,
      `the server could not find the requested resource (${req.method} ${url.pathname})`,
      'NotFound',
    );
  }

  private createJob(ns: string, job: Obj, res: ServerResponse): void {
    try {
      new JobModel(job as never).validate();
    } catch (err) {
      this.rejected.push((err as Error).message);
      return this.status(res, 422, `Job is invalid: ${(err as Error).message}`, 'Invalid');
    }
    const key = `${ns}/${job.metadata.name}`;
    if (this.jobs.has(key))
      return this.status(res, 409, `jobs.batch "${job.metadata.name}" already exists`, 'AlreadyExists');
    this.created.push(structuredClone(job));
    job.metadata = {
      ...job.metadata,
      namespace: ns,
      uid: randomBytes(8).toString('hex'),
      creationTimestamp: new Date().toISOString(),
    };
    job.status = job.spec.suspend ? { conditions: [{ type: 'Suspended', status: 'True' }] } : { active: 1 };
    this.jobs.set(key, job);
    this.emit('Job', 'ADDED', job);
    json(res, 201, job);
    if (!job.spec.suspend) this.runPod(ns, job);
  }

  /** JSON Patch (RFC 6902) replace and add, the one kind the runner sends; resuming a suspended Job starts its pod. */
  private patchJob(ns: string, job: Obj, type: string | undefined, raw: string, res: ServerResponse): void {
    if (type !== 'application/json-patch+json')
      return this.status(res, 415, `the body of the request was in an unknown format: ${type}`, 'UnsupportedMediaType');
    const suspended = job.spec.suspend === true;
    for (const op of JSON.parse(raw) as { op: string; path: string; value: unknown }[]) {
      const at = op.path.split('/').slice(1);
      const parent = at.slice(0, -1).reduce((o: any, k) => o?.[k], job);
      if (!['replace', 'add'].includes(op.op) || !parent || (op.op === 'replace' && !(at.at(-1)! in parent)))
        return this.status(res, 422, `the patch cannot be applied: ${JSON.stringify(op)}`, 'Invalid');
      parent[at.at(-1)!] = op.value;
    }
    this.emit('Job', 'MODIFIED', job);
    json(res, 200, job);
    if (suspended && job.spec.suspend === false) {
      job.status = { active: 1 };
      this.runPod(ns, job);
    }
  }

  private createSecret(ns: string, secret: Obj & { data?: Record<string, string> }, res: ServerResponse): void {
    try {
      new SecretModel(secret as never).validate();
    } catch (err) {
      this.rejected.push((err as Error).message);
      return this.status(res, 422, `Secret is invalid: ${(err as Error).message}`, 'Invalid');
    }
    const key = `${ns}/${secret.metadata.name}`;
    if (this.secrets.has(key))
      return this.status(res, 409, `secrets "${secret.metadata.name}" already exists`, 'AlreadyExists');
    secret.metadata = { ...secret.metadata, namespace: ns, uid: randomBytes(8).toString('hex') };
    this.secrets.set(key, secret);
    json(res, 201, secret);
  }

  /** The job controller and the kubelet in one: a pod, its container run as a process. */
  private runPod(ns: string, job: Obj): void {
    const name = `${job.metadata.name}-${randomBytes(3).toString('hex').slice(0, 5)}`;
    const template = job.spec.template;
    const container = template.spec.containers[0];
    const pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name,
        namespace: ns,
        labels: {
          ...template.metadata.labels,
          'job-name': job.metadata.name,
          'batch.kubernetes.io/job-name': job.metadata.name,
        },
      },
      spec: template.spec,
      status: { phase: 'Pending' } as any,
      log: [] as Buffer[],
      logWaiters: [] as (() => void)[],
      proc: undefined as ChildProcess | undefined,
    };
    this.pods.set(`${ns}/${name}`, pod);
    this.emit('Pod', 'ADDED', pod);
    // Volumes: a claim's subPath or an emptyDir, as directories on this host.
    const emptyDir = mkdtempSync(join(tmpdir(), 'k8s-emptydir-'));
    this.emptyDirs.push(emptyDir);
    const paths: [string, string][] = container.volumeMounts.map((vm: any) => {
      const volume = template.spec.volumes.find((v: any) => v.name === vm.name);
      const dir = volume.persistentVolumeClaim
        ? join(this.claimDir, vm.subPath ?? '')
        : join(emptyDir, vm.subPath ?? vm.name);
      mkdirSync(dir, { recursive: true });
      return [vm.mountPath, dir];
    });
    const local = (p: string) => {
      const hit = paths.find(([mount]) => p === mount || p.startsWith(`${mount}/`));
      return hit ? hit[1] + p.slice(hit[0].length) : p;
    };
    const program = this.programs[container.image.replace(/:.*$/, '')];
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '',
      TEST_JOB_CONTROL_DIR: process.env.TEST_JOB_CONTROL_DIR ?? '',
    };
    for (const e of container.env ?? []) {
      const ref = e.valueFrom?.secretKeyRef;
      const data = ref && this.secrets.get(`${ns}/${ref.name}`)?.data;
      if (ref && data?.[ref.key] === undefined) {
        const message = data
          ? `couldn't find key ${ref.key} in Secret ${ns}/${ref.name}`
          : `secret "${ref.name}" not found`;
        pod.status = {
          phase: 'Pending',
          containerStatuses: [{ name: 'job', state: { waiting: { reason: 'CreateContainerConfigError', message } } }],
        };
        this.emit('Pod', 'MODIFIED', pod);
        return;
      }
      env[e.name] = ref ? Buffer.from(data![ref.key]!, 'base64').toString() : local(e.value);
    }
    // A node's log reaches the API server a moment after the container's state does (the kubelet
    // reads it from the runtime's files): what the program wrote last comes after its end.
    const wakeLog = () =>
      setTimeout(() => {
        for (const w of pod.logWaiters.splice(0)) w();
      }, LOG_LAG_MS);
    const started = () => {
      pod.status = {
        phase: 'Running',
        containerStatuses: [{ name: 'job', ready: true, state: { running: { startedAt: new Date().toISOString() } } }],
      };
      this.emit('Pod', 'MODIFIED', pod);
    };
    const exited = (exitCode: number) => {
      const messageFile = local(container.terminationMessagePath);
      const message = existsSync(messageFile) ? readFileSync(messageFile, 'utf8').slice(0, 4096) : undefined;
      // The kubelet bind-mounts a file of its own at that path: what the program wrote there
      // never reached the volume beneath it.
      rmSync(messageFile, { force: true });
      const failed = exitCode !== 0;
      pod.status = {
        phase: failed ? 'Failed' : 'Succeeded',
        containerStatuses: [
          {
            name: 'job',
            ready: false,
            state: {
              terminated: { exitCode, reason: failed ? 'Error' : 'Completed', ...(message ? { message } : {}) },
            },
          },
        ],
      };
      this.emit('Pod', 'MODIFIED', pod);
      wakeLog();
      const j = this.jobs.get(`${ns}/${job.metadata.name}`);
      if (j) {
        j.status = failed
          ? { failed: 1, conditions: [{ type: 'Failed', status: 'True', reason: 'BackoffLimitExceeded' }] }
          : { succeeded: 1, conditions: [{ type: 'Complete', status: 'True' }] };
        this.emit('Job', 'MODIFIED', j);
      }
    };
    if (!program) {
      pod.status = {
        phase: 'Pending',
        containerStatuses: [
          { name: 'job', state: { waiting: { reason: 'ErrImagePull', message: `no program for ${container.image}` } } },
        ],
      };
      this.emit('Pod', 'MODIFIED', pod);
      return;
    }
    setTimeout(() => {
      const proc = spawn(process.execPath, [program, ...(container.args ?? [])], {
        cwd: local(container.workingDir ?? '/'),
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      pod.proc = proc;
      const keep = (c: Buffer) => {
        pod.log.push(c);
        wakeLog();
      };
      proc.stdout!.on('data', keep);
      proc.stderr!.on('data', keep);
      proc.once('spawn', started);
      proc.once('close', (code, signal) => exited(code ?? 128 + (signal === 'SIGKILL' ? 9 : 15)));
    }, 50);
  }

  private deletePod(key: string, graceSec: number): void {
    const pod = this.pods.get(key);
    if (!pod || pod.metadata.deletionTimestamp) return;
    pod.metadata.deletionTimestamp = new Date().toISOString();
    this.emit('Pod', 'MODIFIED', pod);
    const gone = () => {
      this.pods.delete(key);
      this.emit('Pod', 'DELETED', pod);
    };
    const proc = pod.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return gone();
    const timer = setTimeout(() => proc.kill('SIGKILL'), graceSec * 1000);
    proc.once('close', () => {
      clearTimeout(timer);
      setTimeout(gone, 20);
    });
    proc.kill(graceSec === 0 ? 'SIGKILL' : 'SIGTERM');
  }

  private deleteJob(key: string, graceSec: number): void {
    const job = this.jobs.get(key);
    if (!job) return;
    for (const [podKey, pod] of this.pods)
      if (pod.metadata.labels['job-name'] === job.metadata.name) this.deletePod(podKey, graceSec);
    this.jobs.delete(key);
    this.emit('Job', 'DELETED', job);
    // the garbage collector: what the Job owned goes with it
    for (const [secretKey, secret] of this.secrets)
      if (secret.metadata.ownerReferences?.some((o: { uid: string }) => o.uid === job.metadata.uid))
        this.secrets.delete(secretKey);
  }

  private emit(kind: 'Job' | 'Pod', type: Event['type'], object: Obj): void {
    object.metadata.resourceVersion = String(++this.rv);
    const event = { rv: this.rv, kind, type, object: strip(object) };
    this.history.push(event);
    for (const w of this.watchers)
      if (w.kind === kind && matches(event.object, w.selector))
        w.res.write(`${JSON.stringify({ type, object: event.object })}\n`);
  }

  private list(kind: 'Job' | 'Pod', ns: string, q: URLSearchParams, res: ServerResponse): void {
    const selector = parseSelector(q.get('labelSelector'));
    if (q.get('watch') === 'true' || q.get('watch') === '1') {
      const from = Number(q.get('resourceVersion') || this.rv);
      res.writeHead(200, { 'content-type': 'application/json' });
      const oldest = this.history[0]?.rv ?? this.rv + 1;
      if (from < oldest - 1) {
        res.end(
          `${JSON.stringify({ type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', status: 'Failure', message: `too old resource version: ${from} (${oldest})`, reason: 'Expired', code: 410 } })}\n`,
        );
        return;
      }
      for (const e of this.history)
        if (e.rv > from && e.kind === kind && matches(e.object, selector))
          res.write(`${JSON.stringify({ type: e.type, object: e.object })}\n`);
      const watcher = { kind, selector, res };
      this.watchers.add(watcher);
      res.on('close', () => this.watchers.delete(watcher));
      return;
    }
    const store = kind === 'Job' ? [...this.jobs.values()] : [...this.pods.values()];
    const items = store.filter((o) => o.metadata.namespace === ns && matches(o, selector)).map(strip);
    json(res, 200, {
      apiVersion: kind === 'Job' ? 'batch/v1' : 'v1',
      kind: `${kind}List`,
      metadata: { resourceVersion: String(this.rv) },
      items,
    });
  }

  private streamLog(
    pod: KubernetesStandin['pods'] extends Map<string, infer P> ? P : never,
    follow: boolean,
    res: ServerResponse,
  ): void {
    res.writeHead(200, { 'content-type': 'text/plain' });
    let sent = 0;
    const flush = () => {
      while (sent < pod.log.length) res.write(pod.log[sent++]);
      const over =
        pod.status.phase === 'Succeeded' ||
        pod.status.phase === 'Failed' ||
        !this.pods.has(`${pod.metadata.namespace}/${pod.metadata.name}`);
      if (!follow || over) return void res.end();
      pod.logWaiters.push(flush);
    };
    flush();
  }

  private status(res: ServerResponse, code: number, message: string, reason?: string, status = 'Failure'): void {
    json(res, code, {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status,
      message,
      ...(reason ? { reason } : {}),
      code,
    });
  }
}

function strip<T extends Obj>(o: T): Obj {
  const { apiVersion, kind, metadata, spec, status } = o;
  return structuredClone({ apiVersion, kind, metadata, spec, status });
}

function parseSelector(raw: string | null): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (raw ?? '').split(',').filter(Boolean)) {
    const [k, v] = part.split('=');
    out[k!] = v ?? '';
  }
  return out;
}

const matches = (o: Obj, selector: Record<string, string>) =>
  Object.entries(selector).every(([k, v]) => o.metadata.labels?.[k] === v);

function json(res: ServerResponse, code: number, value: unknown): void {
  res.writeHead(code, { 'content-type': 'application/json' });
  res.end(JSON.stringify(value));
}

async function body(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString();
}

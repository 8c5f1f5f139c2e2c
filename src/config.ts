// Service configuration, read from the environment. Variable names follow upstream
// calls-offloader (SECTION_FIELD with the Go field name) where upstream has one, so an existing
// deployment's environment keeps working. Every variable is declared once below: its default, its
// parser and the sentence the README table shows; the Config type is derived from that table.

import { readFileSync } from 'node:fs';
import type { BlockList } from 'node:net';
import { subnets } from './sfu/server/peer-address.js';
import { type MediaSource, parseMediaSources } from './jobs/media-access.js';
import { type JobType, isJobType, jobTypes } from './jobs/schema.js';
import type { DockerLimits } from './runners/docker.js';
import { urlHost } from './url-host.js';

export class ConfigError extends Error {
  /** `text` replaces the usual "VARIABLE: message" (several errors reported at once). */
  constructor(
    readonly variable: string,
    message: string,
    text = `${variable}: ${message}`,
  ) {
    super(text);
    this.name = 'ConfigError';
  }
}

type Parser<T> = (raw: string, name: string) => T;

interface Variable<T> {
  name: string;
  default: string;
  parse: Parser<T>;
  doc: string;
}

const variable = <T>(name: string, def: string, parse: Parser<T>, doc: string): Variable<T> => ({
  name,
  default: def,
  parse,
  doc,
});

const string: Parser<string> = (raw) => raw;
const required: Parser<string> = (raw, name) => {
  if (raw.trim() === '') throw new ConfigError(name, 'may not be empty');
  return raw.trim();
};

const bool: Parser<boolean> = (raw, name) => {
  const v = raw.trim().toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(v)) return true;
  if (['false', '0', 'no', 'off', ''].includes(v)) return false;
  throw new ConfigError(name, `expected true or false, got ${JSON.stringify(raw)}`);
};

const int =
  (min: number, max: number): Parser<number> =>
  (raw, name) => {
    if (!/^-?\d+$/.test(raw.trim())) {
      throw new ConfigError(name, `expected a whole number, got ${JSON.stringify(raw)}`);
    }
    const n = Number(raw);
    if (n < min || n > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${n}`);
    return n;
  };

const oneOf =
  <const T extends string>(...values: T[]): Parser<T> =>
  (raw, name) => {
    const v = raw.trim().toLowerCase() as T;
    if (!values.includes(v)) {
      throw new ConfigError(name, `must be one of ${values.join(', ')}, got ${JSON.stringify(raw)}`);
    }
    return v;
  };

/** Upstream's retention format: a number followed by m (minutes), h (hours) or d (days). */
const duration: Parser<number> = (raw, name) => {
  const m = /^(\d+)([mhd])$/.exec(raw.trim());
  if (!m) throw new ConfigError(name, `expected a duration like 30m, 12h or 7d, got ${JSON.stringify(raw)}`);
  const unit = { m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'm' | 'h' | 'd'];
  return Number(m[1]) * unit;
};

/** `host:port`, `:port` (all interfaces, upstream's form) or `[v6]:port`. */
const listenAddress: Parser<{ host: string; port: number }> = (raw, name) => {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:]*)):(\d{1,5})$/.exec(raw.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) {
    throw new ConfigError(name, `expected host:port such as 127.0.0.1:4545 or :4545, got ${JSON.stringify(raw)}`);
  }
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
};

const redisUrl: Parser<string> = (raw, name) => {
  // quoted without its user and password: the error goes to the log
  const shown = JSON.stringify(raw.replace(/\/\/.*@/, '//…@').replace(/\?.*$/, '?…'));
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(name, `expected a URL such as redis://127.0.0.1:6379, got ${shown}`);
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw new ConfigError(name, `expected a redis:// or rediss:// URL, got ${shown}`);
  }
  return raw;
};

const keyPrefix: Parser<string> = (raw, name) => {
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(raw)) {
    throw new ConfigError(name, 'must be 1 to 64 characters of letters, digits, "_", "." or "-"');
  }
  return raw;
};

/** `a=b,c=d` pairs, `form` as the error spells them; `valueRequired`: `a=` is refused. */
const pairs =
  (form: string, valueRequired: boolean): Parser<Record<string, string>> =>
  (raw, name) => {
    const map: Record<string, string> = {};
    for (const entry of raw
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean)) {
      const eq = entry.indexOf('=');
      if (eq <= 0 || (valueRequired && eq === entry.length - 1))
        throw new ConfigError(name, `expected ${form} entries separated by commas, got ${JSON.stringify(entry)}`);
      map[entry.slice(0, eq)] = entry.slice(eq + 1);
    }
    return map;
  };

/** `calls-recorder=/path/to/program.js,calls-transcriber=/path/...`: overrides the built-in map. */
const programMap = pairs('name=path', true);
const keyValues = pairs('key=value', false);

/** `8443-8943`: werift binds one UDP port per peer connection (two per participant). */
const portRange: Parser<[number, number]> = (raw, name) => {
  const m = /^(\d{1,5})-(\d{1,5})$/.exec(raw.trim());
  const [lo, hi] = m ? [Number(m[1]), Number(m[2])] : [NaN, NaN];
  if (!m || lo < 1024 || hi > 65535 || hi <= lo) {
    throw new ConfigError(
      name,
      `expected a port range like 8443-8943 (above 1023, low < high), got ${JSON.stringify(raw)}`,
    );
  }
  return [lo, hi];
};

const trustedProxies: Parser<BlockList | undefined> = (raw, name) => {
  if (raw.trim() === '') return undefined;
  try {
    return subnets(raw);
  } catch (err) {
    throw new ConfigError(name, (err as Error).message);
  }
};

const ipv4: Parser<string> = (raw, name) => {
  const octets = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(raw.trim());
  if (!octets || octets.slice(1).some((o) => Number(o) > 255)) {
    throw new ConfigError(name, `expected an IPv4 address, got ${JSON.stringify(raw)}`);
  }
  return raw.trim();
};

/** Empty, or what `parse` accepts. */
const optional =
  (parse: Parser<string>): Parser<string> =>
  (raw, name) =>
    raw === '' ? '' : parse(raw, name);

const httpUrl: Parser<string> = (raw, name) => {
  if (!/^https?:\/\/[^\s/]+\/?$/.test(raw))
    throw new ConfigError(name, `expected http(s)://host:port, got ${JSON.stringify(raw)}`);
  return raw.replace(/\/$/, '');
};

/** `https://mm.internal,file:///srv/recordings/`: where media_url may read from (besides the job's site). */
const mediaSources: Parser<MediaSource[]> = (raw, name) => {
  try {
    return parseMediaSources(
      raw
        .split(',')
        .map((e) => e.trim())
        .filter(Boolean),
    );
  } catch (err) {
    throw new ConfigError(name, (err as Error).message);
  }
};

/** `https://mm.example.com,https://mm.internal:8065`: the Mattermost sites jobs may be sent to. */
const siteOrigins: Parser<string[]> = (raw, name) =>
  raw
    .split(',')
    .map((e) => e.trim())
    .filter(Boolean)
    .map((entry) => {
      let url: URL;
      try {
        url = new URL(entry);
      } catch {
        throw new ConfigError(name, `${JSON.stringify(entry)} is not a URL such as https://mm.example.com`);
      }
      if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.pathname !== '/' || url.username) {
        throw new ConfigError(name, `${JSON.stringify(entry)} must be a site: http(s)://host[:port]`);
      }
      return url.origin;
    });

/** `recording=2/2048,transcribing=2/4096,captioning=1/2048`: CPUs / MiB of memory per job type. */
const dockerLimits: Parser<Record<JobType, DockerLimits>> = (raw, name) => {
  const limits: Partial<Record<JobType, DockerLimits>> = {};
  for (const entry of raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const m = /^([a-z]+)=(\d+(?:\.\d+)?)\/(\d+)$/.exec(entry);
    if (!m || !isJobType(m[1]!) || Number(m[2]) <= 0 || Number(m[3]) < 64) {
      throw new ConfigError(
        name,
        `expected type=cpus/MiB entries (e.g. recording=2/2048, at least 64 MiB) for ${jobTypes.join(', ')}, got ${JSON.stringify(entry)}`,
      );
    }
    limits[m[1] as JobType] = { cpus: Number(m[2]), memoryMb: Number(m[3]) };
  }
  const missing = jobTypes.filter((t) => !limits[t]);
  if (missing.length) throw new ConfigError(name, `needs an entry for ${missing.join(', ')}`);
  return limits as Record<JobType, DockerLimits>;
};

const userSpec: Parser<string> = (raw, name) => {
  if (!/^\d{1,10}(:\d{1,10})?$/.test(raw.trim()))
    throw new ConfigError(name, `expected uid or uid:gid in numbers, got ${JSON.stringify(raw)}`);
  return raw.trim();
};

const k8sName: Parser<string> = (raw, name) => {
  if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(raw))
    throw new ConfigError(name, `expected a Kubernetes name, got ${JSON.stringify(raw)}`);
  return raw;
};

/** A name of most Kubernetes objects (a DNS subdomain: labels of a name, joined by dots). */
const k8sObjectName: Parser<string> = (raw, name) => {
  if (raw.length > 253 || !raw.split('.').every((label) => /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(label)))
    throw new ConfigError(
      name,
      `expected a Kubernetes object name (lower case, digits, - and .), got ${JSON.stringify(raw)}`,
    );
  return raw;
};

const isObject = (value: unknown): value is Record<string, unknown> =>
  !!value && typeof value === 'object' && !Array.isArray(value);

const json =
  <T>(kind: 'array' | 'object'): Parser<T | undefined> =>
  (raw, name) => {
    if (raw.trim() === '') return undefined;
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch (err) {
      throw new ConfigError(name, `is not JSON: ${(err as Error).message}`);
    }
    if (kind === 'array' ? !Array.isArray(value) : !isObject(value)) {
      throw new ConfigError(name, `expected a JSON ${kind}`);
    }
    return value as T;
  };
const jsonArray = json<Record<string, unknown>[]>('array');

/** A Kubernetes quantity (`2`, `500m`, `1.5Gi`, `1e3`), as resource.Quantity parses it. */
const QUANTITY = /^\+?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[KMGTPE]i|[numkMGTPE])?$/;

type K8sResources = Partial<Record<JobType, Record<string, Record<string, string>>>>;

/**
 * Upstream's JOBS_KUBERNETES_JOBSRESOURCEREQUIREMENTS: per job type, `limits` and `requests` of
 * quantities, given as Go's resource.Quantity reads them (a string, spaces trimmed, or a number);
 * a null one is left out (Go would read it as 0). Checked here: a typo reached the Kubernetes API only at a job's start, and failed it.
 */
const k8sResources: Parser<K8sResources> = (raw, name) => {
  const fail = (what: string): never => {
    throw new ConfigError(name, what);
  };
  const out: K8sResources = {};
  for (const [type, requirements] of Object.entries(json<Record<string, unknown>>('object')(raw, name) ?? {})) {
    if (!isJobType(type)) return fail(`${type} is not a job type (${jobTypes.join(', ')})`);
    if (!isObject(requirements)) return fail(`${type}: expected an object of limits and requests`);
    out[type] = {};
    for (const [kind, quantities] of Object.entries(requirements)) {
      if (kind !== 'limits' && kind !== 'requests') return fail(`${type}.${kind}: expected limits or requests`);
      if (!isObject(quantities)) return fail(`${type}.${kind}: expected an object of resource quantities`);
      const checked: Record<string, string> = {};
      for (const [resource, quantity] of Object.entries(quantities)) {
        if (quantity === null) continue;
        const text =
          typeof quantity === 'number' ? String(quantity) : typeof quantity === 'string' ? quantity.trim() : '';
        if (!QUANTITY.test(text))
          fail(
            `${type}.${kind}.${resource}: ${JSON.stringify(quantity)} is not a Kubernetes quantity (e.g. "2", "500m", "2Gi")`,
          );
        checked[resource] = text;
      }
      out[type][kind] = checked;
    }
  }
  return out;
};

/** Each job type's CPUs and memory at most, by default: Docker's limits, and Kubernetes'. */
const JOB_LIMITS: Record<JobType, DockerLimits> = {
  recording: { cpus: 2, memoryMb: 2048 },
  transcribing: { cpus: 2, memoryMb: 4096 },
  captioning: { cpus: 1, memoryMb: 2048 },
};
/** What a job measured here uses (README, bench/recorder): Kubernetes' requests by default. */
const JOB_REQUESTS: Record<JobType, { cpu: string; memory: string }> = {
  recording: { cpu: '1', memory: '512Mi' },
  transcribing: { cpu: '1', memory: '1Gi' },
  captioning: { cpu: '500m', memory: '512Mi' },
};

export const variables = {
  listen: variable(
    'API_HTTP_LISTENADDRESS',
    '127.0.0.1:4545',
    listenAddress,
    'Where the API listens. Upstream default is `:4545` (all interfaces); ours stays on loopback until you say otherwise.',
  ),
  tlsEnable: variable('API_HTTP_TLS_ENABLE', 'false', bool, 'Serve the API over HTTPS.'),
  tlsCertFile: variable('API_HTTP_TLS_CERTFILE', '', string, 'PEM certificate file, with TLS on.'),
  tlsCertKey: variable('API_HTTP_TLS_CERTKEY', '', string, 'PEM private key file, with TLS on.'),
  allowSelfRegistration: variable(
    'API_SECURITY_ALLOWSELFREGISTRATION',
    'true',
    bool,
    'Let an unknown client register itself (the Calls plugin relies on it). Turn off when the API is reachable from untrusted hosts and register clients with the admin secret.',
  ),
  enableAdmin: variable(
    'API_SECURITY_ENABLEADMIN',
    'false',
    bool,
    'Accept the admin secret as Basic password: register/unregister any client, see every job, open the dashboard.',
  ),
  adminSecretKey: variable(
    'API_SECURITY_ADMINSECRETKEY',
    '',
    string,
    'The admin secret (at least 32 characters), with admin on.',
  ),
  maxClients: variable(
    'API_SECURITY_MAXCLIENTS',
    '1000',
    int(1, 1_000_000),
    'Registered clients at most: past it, registering (and self-registration) is answered 429.',
  ),
  clientRequestsPerSec: variable(
    'API_LIMITS_CLIENTREQUESTSPERSEC',
    '50',
    int(1, 100_000),
    'Requests a second one client may make to one API instance (bursts of five times as many); past it, 429 with Retry-After.',
  ),
  registrationsPerMinute: variable(
    'API_LIMITS_REGISTRATIONSPERMINUTE',
    '20',
    int(1, 100_000),
    'New clients one address may register a minute on one API instance (explicitly or by self-registration); past it, 429.',
  ),
  sessionExpirationMinutes: variable(
    'API_SECURITY_SESSIONCACHE_EXPIRATIONMINUTES',
    '1440',
    int(1, 525_600),
    'Lifetime of a bearer token from `/login`.',
  ),
  apiType: variable(
    'JOBS_APITYPE',
    'process',
    oneOf('process', 'docker', 'kubernetes'),
    'Runner: `process` (child processes, the embedded default), `docker` or `kubernetes`.',
  ),
  maxConcurrentJobs: variable(
    'JOBS_MAXCONCURRENTJOBS',
    '2',
    int(1, 1000),
    'Jobs running at once across all workers sharing this Redis.',
  ),
  failedJobsRetention: variable(
    'JOBS_FAILEDJOBSRETENTIONTIME',
    '30d',
    duration,
    'How long failed and canceled jobs (record, log, files) are kept: `<n>m`, `<n>h` or `<n>d`.',
  ),
  succeededJobsRetention: variable(
    'JOBS_SUCCEEDEDJOBSRETENTIONTIME',
    '1d',
    duration,
    'How long succeeded jobs are kept (upstream deletes them at once).',
  ),
  imageRegistry: variable(
    'JOBS_IMAGEREGISTRY',
    'mattermost',
    required,
    'Registry part of accepted runner images (`<registry>/calls-recorder:vX.Y.Z`).',
  ),
  maxJobsPerClient: variable(
    'JOBS_MAXJOBSPERCLIENT',
    '100',
    int(1, 1_000_000),
    'Unfinished jobs (queued or running) one client may have; past it, creating a job is answered 429.',
  ),
  maxFinishedJobsPerClient: variable(
    'JOBS_MAXFINISHEDJOBSPERCLIENT',
    '10000',
    int(1, 10_000_000),
    "Finished jobs (records, logs, files) one client keeps; past it, creating a job ends the retention of that client's oldest at once.",
  ),
  queueTimeoutSec: variable(
    'JOBS_QUEUETIMEOUTSEC',
    '86400',
    int(60, 30 * 86_400),
    'A transcription of a finished recording (`media_url`) still queued after this long fails with the reason (live jobs use JOBS_STARTTIMEOUTSEC).',
  ),
  maxDurationSec: variable(
    'JOBS_MAXDURATIONSEC',
    '86400',
    int(1, 7 * 86_400),
    'Largest `max_duration_sec` a job may ask for.',
  ),
  startTimeoutSec: variable(
    'JOBS_STARTTIMEOUTSEC',
    '60',
    int(1, 86_400),
    'A live job (recording, captioning, transcribing a live call) that has not started by then fails; the plugin gives up after 60 s too.',
  ),
  stopGraceSec: variable(
    'JOBS_STOPGRACESEC',
    '120',
    int(1, 3600),
    'Time a job gets after SIGTERM (stop, max duration, shutdown) to finish its file before SIGKILL.',
  ),
  deliveryTimeoutSec: variable(
    'JOBS_DELIVERYTIMEOUTSEC',
    '1200',
    int(1, 86_400),
    'After the stop grace, a job whose file is finished and being delivered (uploads retried while Mattermost is down) gets this long more before SIGKILL; the file is then kept and the job says where.',
  ),
  leaseSec: variable(
    'JOBS_WORKERLEASESEC',
    '15',
    int(2, 600),
    'A running job whose worker has not renewed its lease for this long is marked failed.',
  ),
  maxLogBytes: variable(
    'JOBS_MAXLOGBYTES',
    '1048576',
    int(1024, 64 * 1024 * 1024),
    'Job log kept in Redis (the tail); the full log stays in the job directory.',
  ),
  maxLogFileBytes: variable(
    'JOBS_MAXLOGFILEBYTES',
    '67108864',
    int(1024 * 1024, 2 ** 40),
    "A job's `job.log` in its directory: the program's output past this is not written there (the tail in Redis goes on), so a program that floods its output cannot fill the disk.",
  ),
  dataDir: variable('JOBS_DATADIR', './data', required, 'Job working directories and local artifacts.'),
  siteUrls: variable(
    'JOBS_SITEURLS',
    '',
    siteOrigins,
    "The Mattermost sites (`http(s)://host[:port]`, comma-separated) jobs may be sent to: `site_url` receives the Calls bot's token and the recordings. Empty: each client's jobs of a type go to the site it first used (trust on first use).",
  ),
  mediaUrlAllow: variable(
    'JOBS_MEDIAURLALLOW',
    '',
    mediaSources,
    "Where a transcription of a finished recording (`media_url`) may read from, besides the job's own `site_url`: comma-separated `https://host[:port]` origins and `file:///directory/` prefixes. Empty: only the site.",
  ),
  processPrograms: variable(
    'JOBS_PROCESSPROGRAMS',
    '',
    programMap,
    'Process runner: `name=path` pairs overriding which program runs an image, e.g. `calls-recorder=/opt/rec.js`.',
  ),
  jobImages: variable(
    'JOBS_JOBIMAGES',
    'calls-recorder=calls-offloader-job:latest,calls-transcriber=calls-offloader-job:latest',
    programMap,
    'Docker and Kubernetes runners: the image each runner name maps to (`name=image` pairs); `docker/build-job-image.sh` builds `calls-offloader-job`.',
  ),
  dockerNetwork: variable(
    'DOCKER_NETWORK',
    'host',
    string,
    "Docker runner: the network job containers join (`host`, `none` or a network's name); they must reach Mattermost or the SFU.",
  ),
  dockerLimits: variable(
    'JOBS_DOCKERLIMITS',
    jobTypes.map((t) => `${t}=${JOB_LIMITS[t].cpus}/${JOB_LIMITS[t].memoryMb}`).join(','),
    dockerLimits,
    'Docker runner: CPUs and MiB of memory per job type (`type=cpus/MiB`).',
  ),
  dockerUser: variable(
    'JOBS_DOCKERUSER',
    '10001:10001',
    userSpec,
    "Docker runner: the uid:gid job programs run as (the job image's own user); their directories are given to it.",
  ),
  dockerSeccompProfile: variable(
    'JOBS_DOCKERSECCOMPPROFILE',
    '',
    string,
    "Docker runner: a seccomp profile (JSON file) for job containers; empty: Docker's default profile.",
  ),
  dockerSocket: variable('JOBS_DOCKERSOCKET', '/var/run/docker.sock', string, "Docker runner: the engine's socket."),
  k8sNamespace: variable(
    'K8S_NAMESPACE',
    'default',
    k8sName,
    'Kubernetes runner: the namespace of job Jobs (upstream name).',
  ),
  k8sTolerations: variable(
    'K8S_JOB_POD_TOLERATIONS',
    '',
    jsonArray,
    'Kubernetes runner: tolerations of job pods, a JSON array of Kubernetes tolerations (upstream name).',
  ),
  k8sNodeSelector: variable(
    'JOBS_KUBERNETES_NODESELECTOR',
    '',
    keyValues,
    'Kubernetes runner: node labels job pods must have (`key=value` pairs).',
  ),
  k8sResources: variable(
    'JOBS_KUBERNETES_JOBSRESOURCEREQUIREMENTS',
    JSON.stringify(
      Object.fromEntries(
        jobTypes.map((t) => [
          t,
          {
            limits: { cpu: String(JOB_LIMITS[t].cpus), memory: `${JOB_LIMITS[t].memoryMb}Mi` },
            requests: JOB_REQUESTS[t],
          },
        ]),
      ),
    ),
    k8sResources,
    "Kubernetes runner: requests and limits per job type, as upstream (a type left out gets none; empty or `{}`: none at all). The limits are the Docker runner's defaults; the requests what a job measured here uses (README, bench/recorder).",
  ),
  k8sClaim: variable(
    'JOBS_KUBERNETES_PERSISTENTVOLUMECLAIMNAME',
    '',
    optional(k8sObjectName),
    'Kubernetes runner: a ReadWriteMany claim mounted by the workers at JOBS_DATADIR and by each job at its directory (the worker then sees the delivering marker); empty: an emptyDir, output_data through the termination message.',
  ),
  k8sSysctls: variable(
    'JOBS_KUBERNETES_NODESYSCTLS',
    '',
    keyValues,
    'Kubernetes runner: sysctls of job pods (`name=value` pairs, upstream name).',
  ),
  k8sTtlSec: variable(
    'JOBS_KUBERNETES_TTLSECONDSAFTERFINISHED',
    '86400',
    int(0, 30 * 86_400),
    "Kubernetes runner: how long a finished Job (and a failed one's pod, for its logs) stays before Kubernetes removes it; succeeded ones are deleted at once.",
  ),
  devMode: variable('DEV_MODE', 'false', bool, 'Accept any runner name (upstream `DEV_MODE`).'),
  redisUrl: variable(
    'REDIS_URL',
    'redis://127.0.0.1:6379',
    redisUrl,
    'Redis holding queues, jobs, clients and sessions.',
  ),
  redisPrefix: variable('REDIS_PREFIX', 'calls-offloader', keyPrefix, 'Prefix of every Redis key.'),
  sfuListen: variable(
    'SFU_LISTENADDRESS',
    '127.0.0.1:4546',
    listenAddress,
    'Where the bundled SFU serves the call page and its WebSocket signalling.',
  ),
  sfuUrl: variable(
    'SFU_URL',
    '',
    optional(httpUrl),
    'Address browsers and jobs use to reach the SFU (default: http:// plus SFU_LISTENADDRESS).',
  ),
  sfuIceAddress: variable(
    'SFU_ICEADDRESS',
    '127.0.0.1',
    ipv4,
    "Address the SFU's media sockets bind to: 127.0.0.1 keeps media on this host; 0.0.0.0 for all interfaces.",
  ),
  sfuIceHostOverride: variable(
    'SFU_ICEHOSTOVERRIDE',
    '',
    optional(ipv4),
    "Address announced in ICE candidates instead of the host's (the public address behind NAT, like rtcd's ICEHostOverride).",
  ),
  sfuIcePortRange: variable(
    'SFU_ICEPORTRANGE',
    '8443-8943',
    portRange,
    'UDP ports for media: up to two per participant (werift cannot share one port between peer connections); the range bounds the participants of all calls.',
  ),
  sfuTrustedProxies: variable(
    'SFU_TRUSTEDPROXIES',
    '',
    trustedProxies,
    "Reverse proxies in front of the SFU (IP addresses or CIDR ranges, comma-separated): a websocket from one of them counts as the address its X-Forwarded-For names (the nearest one that is not itself listed), so the 32 sockets one address may hold before logging in are per browser, not shared by everyone behind the proxy. List the proxies' own addresses only: a host in a listed range can name any address it likes. Empty: X-Forwarded-For is not believed.",
  ),
  sfuMaxCallParticipants: variable(
    'SFU_MAXCALLPARTICIPANTS',
    '100',
    int(1, 10_000),
    'People and bots in one call of the bundled SFU; a joiner past it (or past what SFU_ICEPORTRANGE holds, two ports per participant) is refused with the plugin\'s "user cannot join because of limits".',
  ),
  sfuNativeSrtp: variable(
    'SFU_NATIVESRTP',
    'true',
    bool,
    "SRTP's ciphers (AES-GCM; AES-CM with HMAC-SHA1, what browsers choose) through OpenSSL with one context per key (the addon `npm run build` makes), not werift's cipher objects per packet; false, or no addon: werift's.",
  ),
  sfuTokenSecret: variable(
    'SFU_TOKENSECRET',
    '',
    string,
    'Key that signs join tokens (32+ characters). Default: one generated and kept in Redis, shared by every instance.',
  ),
  logConsole: variable('LOGGER_ENABLECONSOLE', 'true', bool, 'Log to standard output.'),
  logJson: variable('LOGGER_CONSOLEJSON', 'true', bool, 'Log as JSON lines (otherwise plain text).'),
  logLevel: variable('LOGGER_CONSOLELEVEL', 'info', oneOf('debug', 'info', 'warn', 'error'), 'Lowest level logged.'),
} as const;

type Variables = typeof variables;
export type Config = { [K in keyof Variables]: Variables[K] extends Variable<infer T> ? T : never };

/**
 * Reads every variable, collecting all errors so that an admin fixes them in one go.
 * Throws a ConfigError naming each bad variable.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const out: Record<string, unknown> = {};
  const errors: ConfigError[] = [];
  for (const [key, v] of Object.entries(variables) as [string, Variable<unknown>][]) {
    try {
      out[key] = v.parse(env[v.name] ?? v.default, v.name);
    } catch (err) {
      errors.push(err instanceof ConfigError ? err : new ConfigError(v.name, String(err)));
    }
  }
  const config = out as Config;
  if (errors.length === 0) {
    if (config.enableAdmin && config.adminSecretKey.length < 32) {
      errors.push(
        new ConfigError(
          variables.adminSecretKey.name,
          'must be at least 32 characters when API_SECURITY_ENABLEADMIN is true',
        ),
      );
    }
    if (config.sfuTokenSecret !== '' && config.sfuTokenSecret.length < 32) {
      errors.push(new ConfigError(variables.sfuTokenSecret.name, 'must be at least 32 characters'));
    }
    if (config.dockerSeccompProfile !== '') {
      try {
        JSON.parse(readFileSync(config.dockerSeccompProfile, 'utf8'));
      } catch (err) {
        errors.push(
          new ConfigError(
            variables.dockerSeccompProfile.name,
            `cannot be read as a JSON seccomp profile: ${(err as Error).message}`,
          ),
        );
      }
    }
    if (config.tlsEnable && (!config.tlsCertFile || !config.tlsCertKey)) {
      errors.push(
        new ConfigError(variables.tlsEnable.name, 'TLS needs API_HTTP_TLS_CERTFILE and API_HTTP_TLS_CERTKEY'),
      );
    } else if (config.tlsEnable) {
      // read at start, so that a wrong path is named here rather than as a stack trace from the server
      for (const [v, file, mark] of [
        [variables.tlsCertFile, config.tlsCertFile, 'CERTIFICATE'],
        [variables.tlsCertKey, config.tlsCertKey, 'PRIVATE KEY'],
      ] as const) {
        try {
          if (!readFileSync(file, 'utf8').includes(mark))
            errors.push(new ConfigError(v.name, `${file} holds no PEM ${mark.toLowerCase()}`));
        } catch (err) {
          errors.push(
            new ConfigError(
              v.name,
              `${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
            ),
          );
        }
      }
    }
  }
  if (errors.length === 1) throw errors[0];
  if (errors.length > 1) {
    throw new ConfigError(errors.map((e) => e.variable).join(', '), '', errors.map((e) => e.message).join('\n'));
  }
  return config;
}

/** The SFU's address as browsers and jobs reach it. */
export function sfuBaseUrl(config: Pick<Config, 'sfuUrl' | 'sfuListen'>): string {
  if (config.sfuUrl) return config.sfuUrl;
  const { host, port } = config.sfuListen;
  return `http://${urlHost(host)}:${port}`;
}

/** Names that look like ours but are not known: most often a typo worth a warning. */
export function unknownVariables(env: NodeJS.ProcessEnv = process.env): string[] {
  const known = new Set(Object.values(variables).map((v) => v.name));
  return Object.keys(env).filter((k) => /^(API|JOBS|LOGGER|SFU)_/.test(k) && !known.has(k));
}

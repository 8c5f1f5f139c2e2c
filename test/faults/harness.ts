// The fault suite's tools: the service as separate processes (so a fault can kill one), a private
// Redis that keeps its data on disk across a restart, load that retries as a plugin would, and the
// table each fault adds a row to. FAULT_ROUNDS and FUZZ_COUNT scale it (`npm run soak`).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { CLI, call, stopChild, waitFor } from '../helpers.js';

export const ROUNDS = Number(process.env.FAULT_ROUNDS ?? 1);
export const FUZZ_COUNT = Number(process.env.FUZZ_COUNT ?? 1500);

export interface FaultRow {
  fault: string;
  injected: number;
  jobs: number;
  lost: number;
  twice: number;
  /** worst time from the fault's end to the service working again */
  recoverMs: number | null;
  note: string;
}

const rows: FaultRow[] = [];

export function report(row: FaultRow): void {
  rows.push(row);
}

/** The table, printed when the suite's process ends (the README keeps the last one). */
process.on('exit', () => {
  if (rows.length === 0) return;
  const lines = [
    '| fault | injected | jobs | lost | run twice | recovered within | what was checked |',
    '|---|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.fault} | ${r.injected} | ${r.jobs} | ${r.lost} | ${r.twice} | ${r.recoverMs === null ? '–' : `${(r.recoverMs / 1000).toFixed(1)} s`} | ${r.note} |`,
    ),
  ];
  console.log(lines.map((l) => `# ${l}`).join('\n'));
});

/** `calls-offloader <command>` as a child process; its output is kept for a failing test. */
export function spawnCli(command: string, env: Record<string, string>): ChildProcess & { output: string[] } {
  const child = spawn(process.execPath, [CLI, command], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const keep = (b: Buffer) => {
    output.push(b.toString());
    if (output.length > 200) output.shift();
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  return Object.assign(child, { output });
}

export async function ready(url: string, timeoutMs = 30_000): Promise<void> {
  await waitFor(`${url} ready`, async () => (await call(url, 'GET', '/readyz', null)).status === 200, timeoutMs);
}

/** A Redis of the test's own that writes every change to disk, so that it can be stopped and started again. */
export class PrivateRedis {
  readonly dir = mkdtempSync(join(tmpdir(), 'co-redis-'));
  private child?: ChildProcess;
  constructor(readonly port: number) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.child = spawn(
      'redis-server',
      [
        '--port',
        String(this.port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'yes',
        '--appendfsync',
        'always',
        '--dir',
        this.dir,
      ],
      { stdio: 'ignore' },
    );
    await waitFor('private redis', async () => {
      const probe = new Redis(this.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      probe.on('error', () => undefined);
      try {
        await probe.connect();
        return (await probe.ping()) === 'PONG';
      } finally {
        probe.disconnect();
      }
    });
  }

  async stop(): Promise<void> {
    if (this.child) await stopChild(this.child);
  }

  async remove(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * POSTs a job as the plugin would, retrying what the service asks to retry (429, 503) or a
 * connection refused while the API restarts. Returns the job id and how many answers were
 * retried, or throws on an answer that is not retryable.
 */
export async function createJob(
  url: string,
  auth: { basic: [string, string] },
  body: unknown,
  untilMs = 120_000,
): Promise<{ id: string; retried: number }> {
  const deadline = Date.now() + untilMs;
  let retried = 0;
  for (;;) {
    const r = await call(url, 'POST', '/jobs', auth, body).catch(() => null);
    if (r?.status === 200) return { id: r.json.id, retried };
    if (r && r.status !== 429 && r.status !== 503) throw new Error(`POST /jobs answered ${r.status}: ${r.text}`);
    if (Date.now() > deadline)
      throw new Error(`POST /jobs kept failing: ${r ? `${r.status} ${r.text}` : 'no connection'}`);
    retried++;
    await new Promise((res) => setTimeout(res, Math.min(2000, Number(r?.headers.get('retry-after') ?? 0.2) * 1000)));
  }
}

// Prometheus metrics. Request latency is per process (prom-client); job counts, outcomes,
// durations, queue depth and running jobs are read from Redis at scrape time, so every API
// instance reports the same cluster-wide numbers (aggregate with max(), not sum(), across instances).
import { Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { FastifyInstance } from 'fastify';
import { jobTypes } from '../jobs/schema.js';
import { durationBuckets, type JobStore } from '../store/jobs.js';
import type { Queues } from '../queue/queues.js';

const NS = 'calls_offloader';

export class Metrics {
  readonly registry = new Registry();
  private readonly requestDuration = new Histogram({
    name: `${NS}_http_request_duration_seconds`,
    help: 'API request latency',
    labelNames: ['method', 'route', 'status_code'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });

  constructor(
    private readonly store: JobStore,
    private readonly queues: Queues,
  ) {
    collectDefaultMetrics({ register: this.registry, prefix: `${NS}_` });
  }

  /** Times every request by its route pattern (not its URL: ids would explode the label set). */
  install(app: FastifyInstance): void {
    app.addHook('onResponse', async (request, reply) => {
      const route = request.routeOptions.url ?? 'unmatched';
      this.requestDuration.observe(
        { method: request.method, route, status_code: String(reply.statusCode) },
        reply.elapsedTime / 1000,
      );
    });
  }

  async render(): Promise<string> {
    return (await this.registry.metrics()) + (await this.jobMetrics());
  }

  private async jobMetrics(): Promise<string> {
    const { redis, keys } = this.store;
    const lines: string[] = [];
    const family = (name: string, type: string, help: string) =>
      lines.push(`# HELP ${NS}_${name} ${help}`, `# TYPE ${NS}_${name} ${type}`);

    family('jobs_total', 'counter', 'Finished jobs by type and outcome');
    const outcomes = await redis.hgetall(keys.outcomes);
    for (const [k, v] of Object.entries(outcomes)) {
      const [type, outcome] = k.split('|');
      lines.push(`${NS}_jobs_total{type="${type}",outcome="${outcome}"} ${v}`);
    }

    family(
      'caption_windows_total',
      'counter',
      'Live caption windows of finished jobs: captioned, dropped because recognition fell behind, or empty (no words)',
    );
    const captions = await redis.hgetall(keys.captions);
    for (const outcome of ['captioned', 'dropped', 'empty'])
      lines.push(`${NS}_caption_windows_total{outcome="${outcome}"} ${captions[outcome] ?? 0}`);

    family('jobs_running', 'gauge', 'Jobs holding a job slot (starting, running or stopping)');
    const running = await redis.zrange(keys.slots, '0', '-1');
    const pipe = redis.pipeline();
    for (const id of running) pipe.hget(keys.job(id), 'type');
    const types = running.length ? ((await pipe.exec()) ?? []).map(([, type]) => type) : [];
    for (const t of jobTypes) lines.push(`${NS}_jobs_running{type="${t}"} ${types.filter((x) => x === t).length}`);

    family('queue_jobs', 'gauge', 'BullMQ queue depth by state');
    for (const t of jobTypes) {
      const counts = await this.queues[t].getJobCounts('wait', 'delayed', 'active');
      for (const [state, n] of Object.entries(counts))
        lines.push(`${NS}_queue_jobs{type="${t}",state="${state}"} ${n}`);
    }

    family('job_duration_seconds', 'histogram', 'Time from start to end of finished jobs');
    for (const t of jobTypes) {
      const h = await redis.hgetall(keys.durations(t));
      for (const le of [...durationBuckets.map(String), '+Inf']) {
        lines.push(`${NS}_job_duration_seconds_bucket{type="${t}",le="${le}"} ${h[le] ?? 0}`);
      }
      lines.push(
        `${NS}_job_duration_seconds_sum{type="${t}"} ${h.sum ?? 0}`,
        `${NS}_job_duration_seconds_count{type="${t}"} ${h['+Inf'] ?? 0}`,
      );
    }
    return `${lines.join('\n')}\n`;
  }
}

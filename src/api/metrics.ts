// Prometheus metrics, through prom-client. Request latency is per process; job counts, outcomes,
// durations, queue depth and running jobs are read from Redis at scrape time, so every API
// instance reports the same cluster-wide numbers (aggregate with max(), not sum(), across instances).
import { Counter, Gauge, Histogram, type Metric, Registry, collectDefaultMetrics } from 'prom-client';
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
    this.registerJobMetrics();
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

  /** The exposition text (its content type: `registry.contentType`). */
  async render(): Promise<string> {
    return this.registry.metrics();
  }

  /** Job counts, outcomes, durations, queue depth and running jobs, read from Redis at each scrape. */
  private registerJobMetrics(): void {
    const { redis, keys } = this.store;
    const registers = [this.registry];
    new Counter({
      name: `${NS}_jobs_total`,
      help: 'Finished jobs by type and outcome',
      labelNames: ['type', 'outcome'],
      registers,
      async collect() {
        const outcomes = await redis.hgetall(keys.outcomes);
        this.reset();
        for (const [k, v] of Object.entries(outcomes)) {
          const [type, outcome] = k.split('|');
          this.inc({ type, outcome }, Number(v));
        }
      },
    });
    new Counter({
      name: `${NS}_caption_windows_total`,
      help: 'Live caption windows of finished jobs: captioned, dropped because recognition fell behind, or empty (no words)',
      labelNames: ['outcome'],
      registers,
      async collect() {
        const captions = await redis.hgetall(keys.captions);
        this.reset();
        for (const outcome of ['captioned', 'dropped', 'empty']) this.inc({ outcome }, Number(captions[outcome] ?? 0));
      },
    });
    new Gauge({
      name: `${NS}_jobs_running`,
      help: 'Jobs holding a job slot (starting, running or stopping)',
      labelNames: ['type'],
      registers,
      async collect() {
        const running = await redis.zrange(keys.slots, '0', '-1');
        const pipe = redis.pipeline();
        for (const id of running) pipe.hget(keys.job(id), 'type');
        const types = running.length ? ((await pipe.exec()) ?? []).map(([, type]) => type) : [];
        for (const type of jobTypes) this.set({ type }, types.filter((x) => x === type).length);
      },
    });
    const queues = this.queues;
    new Gauge({
      name: `${NS}_queue_jobs`,
      help: 'BullMQ queue depth by state',
      labelNames: ['type', 'state'],
      registers,
      async collect() {
        for (const type of jobTypes) {
          const counts = await queues[type].getJobCounts('wait', 'delayed', 'active');
          for (const [state, n] of Object.entries(counts)) this.set({ type, state }, n);
        }
      },
    });
    // A histogram kept whole in Redis (each worker counts its jobs' durations there) has no
    // prom-client class to load it into: prom-client renders any metric that gives its values.
    const durations = {
      name: `${NS}_job_duration_seconds`,
      help: 'Time from start to end of finished jobs',
      type: 'histogram',
      aggregator: 'sum',
      reset: () => undefined,
      async get() {
        const values = [];
        for (const type of jobTypes) {
          const h = await redis.hgetall(keys.durations(type));
          for (const le of [...durationBuckets.map(String), '+Inf'])
            values.push({ metricName: `${this.name}_bucket`, labels: { type, le }, value: Number(h[le] ?? 0) });
          values.push(
            { metricName: `${this.name}_sum`, labels: { type }, value: Number(h.sum ?? 0) },
            { metricName: `${this.name}_count`, labels: { type }, value: Number(h['+Inf'] ?? 0) },
          );
        }
        return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
      },
    };
    this.registry.registerMetric(durations as unknown as Metric);
  }
}

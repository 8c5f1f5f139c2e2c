// One BullMQ queue per job type. The queue carries only the job id: the record (inputs, secrets,
// status) lives in the job store, the one place every API instance and worker reads.
import { Queue, type ConnectionOptions } from 'bullmq';
import { jobTypes, type JobType } from '../jobs/schema.js';

export type Queues = Record<JobType, Queue<{ id: string }>>;

export function createQueues(connection: ConnectionOptions, prefix: string, onError: (err: Error) => void): Queues {
  return Object.fromEntries(
    jobTypes.map((t) => {
      const queue = new Queue<{ id: string }>(t, { connection, prefix: `${prefix}:bull` });
      queue.on('error', onError);
      return [t, queue];
    }),
  ) as Queues;
}

export async function enqueue(queues: Queues, type: JobType, id: string): Promise<void> {
  await queues[type].add(
    type,
    { id },
    {
      jobId: id,
      // The job store keeps the history; BullMQ keeps a bounded trail for the dashboard.
      removeOnComplete: { age: 24 * 3600, count: 1000 },
      removeOnFail: { age: 7 * 24 * 3600, count: 5000 },
    },
  );
}

export async function closeQueues(queues: Queues): Promise<void> {
  await Promise.all(Object.values(queues).map((q) => q.close()));
}

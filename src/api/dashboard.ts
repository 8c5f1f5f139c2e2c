// The bull-board queue dashboard at /admin/queues, for the admin only.
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import type { FastifyInstance } from 'fastify';
import type { Queues } from '../queue/queues.js';
import { DASHBOARD_PATH } from './openapi.js';

export async function installDashboard(app: FastifyInstance, queues: Queues): Promise<void> {
  const adapter = new FastifyAdapter();
  adapter.setBasePath(DASHBOARD_PATH);
  createBullBoard({
    queues: Object.values(queues).map((q) => new BullMQAdapter(q, { readOnlyMode: false })),
    serverAdapter: adapter,
    options: { uiConfig: { boardTitle: 'calls-offloader' } },
  });
  await app.register(async (scope) => {
    // Every route bull-board adds in this scope needs the admin secret.
    scope.addHook('onRoute', (route) => {
      route.config = { ...(route.config as object), auth: 'admin' };
    });
    await scope.register(adapter.registerPlugin(), { prefix: DASHBOARD_PATH });
  });
}

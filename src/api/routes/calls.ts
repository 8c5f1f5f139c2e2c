// Join tokens for the bundled SFU: a link a person opens to join a call from a browser. A client
// mints them for its own calls only, and for people only: bots are the service's own jobs.
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { Id } from '../../jobs/schema.js';
import { callPageUrl, mintToken } from '../../sfu/token.js';
import type { ClientStore } from '../../store/clients.js';
import { claimCall } from '../auth.js';

const Params = Type.Object({ call_id: Id('The call to join.') });
const Body = Type.Object(
  {
    user_id: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.@-]+$', description: 'Who joins.' }),
    display_name: Type.String({
      minLength: 1,
      maxLength: 128,
      description: 'Name shown to the others and in transcripts.',
    }),
    ttl_sec: Type.Optional(Type.Integer({ minimum: 10, maximum: 86_400, description: 'Validity (default 3600).' })),
  },
  { additionalProperties: false },
);

export interface CallRoutesDeps {
  sfuUrl: string;
  clients: ClientStore;
  tokenSecret(): Promise<string>;
}

export function callRoutes(app: FastifyInstance, { sfuUrl, clients, tokenSecret }: CallRoutesDeps): void {
  app.post<{ Params: Static<typeof Params>; Body: Static<typeof Body> }>(
    '/calls/:call_id/tokens',
    {
      schema: {
        summary: 'Mint a join token for the bundled SFU',
        description:
          'The token admits one person to this call only, until it expires. `url` opens the call page. A call belongs to the first client that mints a token or creates a job for it; others get 403.',
        tags: ['calls'],
        params: Params,
        body: Body,
        response: {
          200: Type.Object({ token: Type.String(), url: Type.String(), expires_at: Type.Integer() }),
          403: Type.Object({ error: Type.String(), code: Type.String() }),
        },
      },
    },
    async (request) => {
      const { call_id } = request.params;
      await claimCall(clients, request.principal!, call_id);
      const { user_id, display_name, ttl_sec = 3600 } = request.body;
      const token = mintToken(await tokenSecret(), {
        call: call_id,
        user: user_id,
        name: display_name,
        role: 'participant',
        ttlSec: ttl_sec,
      });
      return {
        token,
        url: callPageUrl(sfuUrl, call_id, token),
        expires_at: Date.now() + ttl_sec * 1000,
      };
    },
  );
}

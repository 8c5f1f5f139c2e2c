// Join tokens for the bundled SFU: a link a person opens to join a call from a browser.
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { Id, StringEnum } from '../../jobs/schema.js';
import { mintToken, roles } from '../../sfu/token.js';

const Params = Type.Object({ call_id: Id('The call to join.') });
const Body = Type.Object(
  {
    user_id: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.@-]+$', description: 'Who joins.' }),
    display_name: Type.String({ minLength: 1, maxLength: 128, description: 'Name shown to the others and in transcripts.' }),
    role: Type.Optional(StringEnum(roles, 'participant (default) or bot (no tile; may send captions).')),
    ttl_sec: Type.Optional(Type.Integer({ minimum: 10, maximum: 86_400, description: 'Validity (default 3600).' })),
  },
  { additionalProperties: false },
);

export function callRoutes(app: FastifyInstance, sfuUrl: string, tokenSecret: () => Promise<string>): void {
  app.post<{ Params: Static<typeof Params>; Body: Static<typeof Body> }>('/calls/:call_id/tokens', {
    schema: {
      summary: 'Mint a join token for the bundled SFU',
      description: 'The token admits one session of one user to this call only, until it expires. `url` opens the call page.',
      tags: ['calls'],
      params: Params,
      body: Body,
      response: { 200: Type.Object({ token: Type.String(), url: Type.String(), expires_at: Type.Integer() }) },
    },
  }, async (request) => {
    const { call_id } = request.params;
    const { user_id, display_name, role = 'participant', ttl_sec = 3600 } = request.body;
    const token = mintToken(await tokenSecret(), { call: call_id, user: user_id, name: display_name, role, ttlSec: ttl_sec });
    return { token, url: `${sfuUrl}/call/${call_id}?token=${encodeURIComponent(token)}`, expires_at: Date.now() + ttl_sec * 1000 };
  });
}

// Client registration and login, as upstream: POST /register answers 201, /unregister and /login 200.
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { Config } from '../../config.js';
import { type ClientStore, MIN_KEY_LENGTH, type SessionStore } from '../../store/clients.js';
import { type Authenticator, clientIdPattern, wrongKeysThrottled } from '../auth.js';
import { ApiError } from '../errors.js';

const ClientId = Type.String({
  pattern: clientIdPattern,
  description: 'Client id (the plugin uses its installation id).',
});
const Credentials = Type.Object(
  {
    clientID: ClientId,
    authKey: Type.String({
      minLength: MIN_KEY_LENGTH,
      maxLength: 1024,
      description: `Secret of at least ${MIN_KEY_LENGTH} characters.`,
    }),
  },
  { additionalProperties: false },
);
type Credentials = Static<typeof Credentials>;
const Unregister = Type.Object({ clientID: ClientId }, { additionalProperties: false });

export function clientRoutes(
  app: FastifyInstance,
  config: Pick<Config, 'allowSelfRegistration' | 'enableAdmin'>,
  clients: ClientStore,
  sessions: SessionStore,
  auth: Authenticator,
): void {
  app.post<{ Body: Credentials }>(
    '/register',
    {
      config: { auth: 'none' },
      schema: {
        summary: 'Register a client',
        description:
          'Open to anyone while self-registration is on; otherwise needs the admin secret. Registering an existing client again with the same key is accepted.',
        tags: ['clients'],
        security: [{ basic: [] }, {}],
        body: Credentials,
        response: { 201: Type.Object({ clientID: Type.String(), code: Type.Literal('201') }) },
      },
    },
    async (request, reply) => {
      if (!config.allowSelfRegistration) {
        const who = await auth.identify(request);
        if (!who.admin)
          throw new ApiError(403, 'registering clients needs the admin secret while self-registration is off');
      }
      const { clientID, authKey } = request.body;
      if (
        !(await auth.register(request, clientID, authKey)) &&
        (await clients.authenticate(clientID, authKey)) !== 'ok'
      ) {
        throw new ApiError(409, `client ${clientID} is already registered`);
      }
      return reply.code(201).send({ clientID, code: '201' });
    },
  );

  app.post<{ Body: Static<typeof Unregister> }>(
    '/unregister',
    {
      schema: {
        summary: 'Unregister a client',
        description: 'The admin, or the client itself.',
        tags: ['clients'],
        body: Unregister,
        response: { 200: Type.Null({ description: 'Empty body.' }) },
      },
    },
    async (request, reply) => {
      if (!config.enableAdmin && !config.allowSelfRegistration) throw new ApiError(403, 'unregister is not enabled');
      const { clientID } = request.body;
      const who = request.principal!;
      if (!who.admin && who.clientId !== clientID) throw new ApiError(403, 'a client can only unregister itself');
      if (!(await clients.unregister(clientID))) throw new ApiError(404, `client ${clientID} is not registered`);
      return reply.code(200).send();
    },
  );

  app.post<{ Body: Credentials }>(
    '/login',
    {
      config: { auth: 'none' },
      schema: {
        summary: 'Exchange client credentials for a bearer token',
        tags: ['clients'],
        security: [{}],
        body: Credentials,
        response: { 200: Type.Object({ bearerToken: Type.String(), code: Type.Literal('200') }) },
      },
    },
    async (request, reply) => {
      const { clientID, authKey } = request.body;
      const result = await clients.authenticate(clientID, authKey);
      if (result === 'throttled') throw wrongKeysThrottled(clientID);
      if (result !== 'ok') throw new ApiError(401, 'authentication failed');
      // a route without credentials in the header: its client's rate is counted here
      auth.throttle(reply, clientID);
      return { bearerToken: await sessions.create(clientID, (await clients.registration(clientID))!), code: '200' };
    },
  );
}

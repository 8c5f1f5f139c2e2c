// Who is calling. Basic `clientID:authKey` (what the plugin's Go client sends on every call),
// Basic with the admin secret as password, or a Bearer token from /login. With
// self-registration on, a Basic request from an unknown client registers it on the spot.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Config } from '../config.js';
import {
  type ClientStore,
  MAX_CALLS_PER_CLIENT,
  MIN_KEY_LENGTH,
  type SessionStore,
  secretsEqual,
} from '../store/clients.js';
import { ApiError, sendError } from './errors.js';
import { RateLimiter } from '../rate-limiter.js';

export interface Principal {
  clientId: string;
  admin: boolean;
}

export type AuthLevel = 'none' | 'client' | 'admin';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
  interface FastifyContextConfig {
    /** who may call the route (default: client) */
    auth?: AuthLevel;
  }
}

export const clientIdPattern = '^[A-Za-z0-9_.@-]{1,128}$';
/** Owner of the jobs the admin creates; outside clientIdPattern. */
export const ADMIN_CLIENT = '!admin';
const clientIdRe = new RegExp(clientIdPattern);

export interface Authenticator {
  /** `selfRegister`: an unknown client's Basic credentials register it (only on client routes). */
  identify(request: FastifyRequest, selfRegister?: boolean): Promise<Principal>;
  /** Registers a client within the limits: 429 past them, false when the id is taken. */
  register(request: FastifyRequest, clientId: string, authKey: string): Promise<boolean>;
  /** Counts a request against the client's rate (API_LIMITS_CLIENTREQUESTSPERSEC): 429 past it. */
  throttle(reply: FastifyReply, clientId: string): void;
}

type AuthConfig = Pick<
  Config,
  | 'enableAdmin'
  | 'adminSecretKey'
  | 'allowSelfRegistration'
  | 'maxClients'
  | 'clientRequestsPerSec'
  | 'registrationsPerMinute'
>;

export const wrongKeysThrottled = (clientId: string) =>
  new ApiError(429, `too many wrong keys for client ${clientId} in the last minute; try again later`);
const busy = () => new ApiError(503, 'too many authentications at once; try again in a moment');

export function installAuth(
  app: FastifyInstance,
  config: AuthConfig,
  clients: ClientStore,
  sessions: SessionStore,
): Authenticator {
  const unauthorized = () => new ApiError(401, 'authentication failed');
  const registrations = new RateLimiter(config.registrationsPerMinute / 60, config.registrationsPerMinute);
  const requests = new RateLimiter(config.clientRequestsPerSec, config.clientRequestsPerSec * 5);

  // A plugin's first requests arrive together: they wait for one registration, not start one each.
  const registering = new Map<string, Promise<boolean>>();

  function register(request: FastifyRequest, clientId: string, authKey: string): Promise<boolean> {
    const pending = registering.get(clientId);
    if (pending) return pending.then(() => false); // its refusal (429, 503) is theirs too
    const done = registerOnce(request, clientId, authKey).finally(() => registering.delete(clientId));
    registering.set(clientId, done);
    return done;
  }

  async function registerOnce(request: FastifyRequest, clientId: string, authKey: string): Promise<boolean> {
    const wait = registrations.take(request.ip);
    if (wait > 0)
      throw new ApiError(
        429,
        `too many new clients from ${request.ip}: at most ${config.registrationsPerMinute} a minute (API_LIMITS_REGISTRATIONSPERMINUTE); try again in ${wait} s`,
      );
    const result = await clients.register(clientId, authKey, config.maxClients);
    if (result === 'full')
      throw new ApiError(
        429,
        `this service has its ${config.maxClients} clients (API_SECURITY_MAXCLIENTS); an admin unregisters one or raises the limit`,
      );
    if (result === 'busy') throw busy();
    if (result === 'added') request.log.info({ clientId }, 'client registered');
    return result === 'added';
  }

  async function identify(request: FastifyRequest, selfRegister = false): Promise<Principal> {
    const header = request.headers.authorization ?? '';
    const space = header.indexOf(' ');
    const scheme = header.slice(0, space).toLowerCase();
    const value = header.slice(space + 1).trim();
    if (scheme === 'bearer') {
      const session = value ? await sessions.clientFor(value) : null;
      // a token of an unregistered (or since re-registered) client is no one's
      if (!session || (await clients.registration(session.clientId)) !== session.registration) throw unauthorized();
      return { clientId: session.clientId, admin: false };
    }
    if (scheme !== 'basic') throw unauthorized();
    const decoded = Buffer.from(value, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) throw unauthorized();
    const clientId = decoded.slice(0, colon);
    const authKey = decoded.slice(colon + 1);
    if (config.enableAdmin && secretsEqual(authKey, config.adminSecretKey)) {
      // an id no client can have (clientIdPattern): a client named "admin" sees none of the admin's jobs
      return { clientId: ADMIN_CLIENT, admin: true };
    }
    if (!clientIdRe.test(clientId)) throw unauthorized();
    let result = await clients.authenticate(clientId, authKey);
    if (result === 'unknown' && selfRegister && config.allowSelfRegistration && authKey.length >= MIN_KEY_LENGTH) {
      await register(request, clientId, authKey);
      result = await clients.authenticate(clientId, authKey);
    }
    if (result === 'throttled') throw wrongKeysThrottled(clientId);
    if (result === 'busy') throw busy();
    if (result !== 'ok') throw unauthorized();
    return { clientId, admin: false };
  }

  app.decorateRequest('principal', null);
  // Answers here rather than throwing: plugins such as the dashboard bring their own error handler.
  app.addHook('onRequest', async (request, reply) => {
    const level = request.routeOptions.config?.auth ?? 'client';
    if (level === 'none') return;
    try {
      // Only the plugin's own routes register a stranger: a mistyped admin secret on the
      // dashboard or an admin route is a 401, not a new client.
      request.principal = await identify(request, level === 'client');
    } catch (err) {
      if (err instanceof ApiError) return sendError(reply, err.status, err.message);
      throw err;
    }
    if (level === 'admin' && !request.principal.admin) {
      return config.enableAdmin
        ? sendError(reply, 403, 'this needs the admin secret')
        : sendError(reply, 404, 'admin routes are off (API_SECURITY_ENABLEADMIN)');
    }
    if (request.principal.admin) return;
    try {
      throttle(reply, request.principal.clientId);
    } catch (err) {
      if (err instanceof ApiError) return sendError(reply, err.status, err.message);
      throw err;
    }
  });

  function throttle(reply: FastifyReply, clientId: string): void {
    const wait = requests.take(clientId);
    if (wait === 0) return;
    reply.header('retry-after', String(wait));
    throw new ApiError(
      429,
      `client ${clientId} makes more than ${config.clientRequestsPerSec} requests a second (API_LIMITS_CLIENTREQUESTSPERSEC); try again in ${wait} s`,
    );
  }
  return { identify, register, throttle };
}

/** A call of the bundled SFU is its first client's: another client gets 403 (the admin may act on any). */
export async function claimCall(clients: ClientStore, who: Principal, callId: string): Promise<void> {
  if (who.admin) return;
  const owner = await clients.claimCall(who.clientId, callId);
  if (owner === '')
    throw new ApiError(429, `client ${who.clientId} holds ${MAX_CALLS_PER_CLIENT} calls, the most one client may`);
  if (owner !== who.clientId) throw new ApiError(403, `call ${callId} belongs to another client`);
}

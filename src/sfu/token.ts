// Join tokens: who may join which call, as what, until when. A compact HMAC-SHA256 token
// (`base64url(payload).base64url(mac)`), minted by the API (and the CLI, and the worker for each
// job's bot) and checked by the SFU before anything else happens on a connection.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export const roles = ['participant', 'bot'] as const;
export type Role = (typeof roles)[number];

export interface JoinClaims {
  /** call (channel) id */
  call: string;
  /** session id: one per join; a second connection with it replaces the first */
  session: string;
  user: string;
  name: string;
  role: Role;
  /** expiry, seconds since epoch */
  exp: number;
}

export class TokenError extends Error {}

/**
 * The call page's address for a join token. The token rides in the fragment, which browsers never
 * send: not to the SFU, nor to a proxy's access log, nor in a Referer. The page keeps it for the
 * tab (a reload joins again) and takes it out of the address bar.
 */
export const callPageUrl = (base: string, callId: string, token: string) =>
  `${base}/call/${callId}#token=${encodeURIComponent(token)}`;

export function mintToken(
  secret: string,
  claims: Omit<JoinClaims, 'session' | 'exp'> & { session?: string; ttlSec: number },
): string {
  const { ttlSec, ...rest } = claims;
  const payload: JoinClaims = {
    ...rest,
    session: rest.session ?? randomBytes(13).toString('hex'),
    exp: Math.floor(Date.now() / 1000) + ttlSec,
  };
  const body = Buffer.from(JSON.stringify(payload)).toString('base64url');
  return `${body}.${sign(secret, body)}`;
}

/** The claims of a valid token for `callId`; throws TokenError with a reason a person can read. */
export function verifyToken(secret: string, token: string, callId?: string): JoinClaims {
  const [body, mac] = token.split('.');
  if (!body || !mac) throw new TokenError('malformed token');
  const expected = Buffer.from(sign(secret, body));
  const given = Buffer.from(mac);
  if (expected.length !== given.length || !timingSafeEqual(expected, given))
    throw new TokenError('bad token signature');
  let claims: JoinClaims;
  try {
    claims = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
  } catch {
    throw new TokenError('malformed token');
  }
  if (!roles.includes(claims.role)) throw new TokenError('token has no valid role');
  if (typeof claims.exp !== 'number' || claims.exp * 1000 < Date.now()) throw new TokenError('token expired');
  if (callId !== undefined && claims.call !== callId) throw new TokenError('token is for another call');
  return claims;
}

function sign(secret: string, body: string): string {
  return createHmac('sha256', secret).update(body).digest('base64url');
}

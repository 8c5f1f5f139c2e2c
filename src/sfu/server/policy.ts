// The bundled SFU's rules: a join token (HMAC, minted by the API, the CLI or the worker) names the
// call, the user and their role; it admits its holder to that call only. A bot's token is bound
// to its job (the token's session is the job's id): it admits only while that job runs.
import { type JoinClaims, TokenError, verifyToken } from '../token.js';
import type { Identity } from './connection.js';
import type { CallsPolicy } from './server.js';

export function joinTokenPolicy(secret: string, jobRunning?: (jobId: string) => Promise<boolean>): CallsPolicy {
  return {
    async authenticate(token) {
      let claims: JoinClaims;
      try {
        claims = verifyToken(secret, token);
      } catch (err) {
        if (err instanceof TokenError) return null;
        throw err;
      }
      if (claims.role === 'bot' && jobRunning && !(await jobRunning(claims.session))) return null;
      return {
        userId: claims.user,
        displayName: claims.name,
        role: claims.role,
        callId: claims.call,
      } satisfies Identity;
    },
  };
}

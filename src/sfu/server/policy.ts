// The bundled SFU's rules: a join token (HMAC, minted by the API, the CLI or the worker) names the
// call, the user and their role; it admits its holder to that call only.
import { TokenError, verifyToken } from '../token.js';
import type { Identity } from './connection.js';
import type { CallsPolicy } from './server.js';

export function joinTokenPolicy(secret: string): CallsPolicy {
  return {
    authenticate(token) {
      try {
        const claims = verifyToken(secret, token);
        return { userId: claims.user, displayName: claims.name, role: claims.role, callId: claims.call } satisfies Identity;
      } catch (err) {
        if (err instanceof TokenError) return null;
        throw err;
      }
    },
  };
}

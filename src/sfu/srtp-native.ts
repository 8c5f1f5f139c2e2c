// SRTP's ciphers through OpenSSL with one context per session key (srtp-native.c, built by
// `npm run build` into dist/bin), handed to werift, whose own path builds Node cipher and HMAC
// objects for every packet. Per RTP packet of 80 / 1,150 bytes: AES-GCM 5.2 / 5.8 → 0.4 / 0.8 µs,
// AES-CM with HMAC-SHA1 (what Chromium negotiates) 6.1 / 9.6 → 0.6 / 1.6 µs. Every packet the SFU
// forwards, and every packet a job's bot receives, passes there.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import * as werift from 'werift';

interface Cipher<Create extends unknown[], Seal extends unknown[], Open extends unknown[]> {
  create(...keys: Create): unknown;
  seal(handle: unknown, ...args: [...Seal, dst: Buffer, offset: number]): void;
  open(handle: unknown, ...args: [...Open, dst: Buffer, offset: number]): boolean;
}

/** What werift's `useSrtpCiphers` takes (patches/werift+*.patch); the addon exports exactly this. */
export interface SrtpCiphers {
  aesGcm: Cipher<
    [key: Buffer],
    [iv: Buffer, aad: Buffer, plaintext: Buffer],
    [iv: Buffer, aad: Buffer, ciphertext: Buffer, tag: Buffer]
  >;
  aesCm: Cipher<
    [key: Buffer, authKey: Buffer],
    [counter: Buffer, header: Buffer, plaintext: Buffer, rolloverCounter: number],
    [counter: Buffer, header: Buffer, ciphertext: Buffer, rolloverCounter: number, tag: Buffer]
  >;
}

export const addonPath = fileURLToPath(new URL('../../bin/srtp-native.node', import.meta.url));

let loaded: { addon?: SrtpCiphers; why?: string } | undefined;

/** The addon, or why it cannot be had (not built, or a node without OpenSSL's symbols). */
export function srtpAddon(): { addon?: SrtpCiphers; why?: string } {
  loaded ??= (() => {
    try {
      return { addon: createRequire(import.meta.url)(addonPath) as SrtpCiphers };
    } catch (err) {
      return { why: (err as Error).message.split('\n')[0] };
    }
  })();
  return loaded;
}

/**
 * Makes werift protect and unprotect SRTP with the addon from now on (sessions keyed after this
 * call), or with its own per-packet objects when `on` is false. Says which, for the log.
 */
export function useNativeSrtp(on = true): string {
  // Released werift has no such hook (the benches run it beside the patched one).
  const hook = (werift as { useSrtpCiphers?: (backend: SrtpCiphers | undefined) => void }).useSrtpCiphers;
  if (!on || !hook) {
    hook?.(undefined);
    return on ? "werift's (this werift has no useSrtpCiphers)" : "werift's (switched off)";
  }
  const { addon, why } = srtpAddon();
  hook(addon);
  return addon ? 'OpenSSL, one context per key' : `werift's (${why})`;
}

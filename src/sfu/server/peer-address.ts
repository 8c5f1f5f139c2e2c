// Whom a websocket of the bundled SFU comes from, for the bound on sockets that have not logged
// in: its peer's address, or behind the admin's reverse proxies the address they forwarded.
import { BlockList, isIP, isIPv6 } from 'node:net';

/**
 * Whom a peer's IP address stands for: an IPv6 host is usually given a whole /64 and can take a
 * new address for each socket, so its first 64 bits; an IPv4 address (mapped into IPv6 or not) as it is.
 */
export function addressOwner(address: string): string {
  const v4 = unmapped(address);
  if (v4 !== address || !isIPv6(address)) return v4;
  const [head = '', tail] = address.split('::');
  const groups = (part: string) => (part ? part.split(':') : []);
  const [first, last] = [groups(head), tail === undefined ? [] : groups(tail)];
  const all = [...first, ...Array<string>(Math.max(0, 8 - first.length - last.length)).fill('0'), ...last];
  return `${all
    .slice(0, 4)
    .map((g) => Number.parseInt(g, 16).toString(16))
    .join(':')}::/64`;
}

/** An IPv4 address mapped into IPv6 (`::ffff:192.0.2.7`, as a dual-stack socket gives it) as IPv4. */
const unmapped = (address: string) => /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1] ?? address;

/**
 * Addresses and ranges (`192.0.2.10`, `10.0.0.0/8`, `fd00::/8`, comma-separated) as a BlockList;
 * an Error naming the entry that is neither.
 */
export function subnets(list: string): BlockList {
  const blocks = new BlockList();
  for (const entry of list
    .split(',')
    .map((e) => e.trim())
    .filter(Boolean)) {
    const [address = '', prefix, extra] = entry.split('/');
    const family = isIP(address);
    const bits = family === 4 ? 32 : 128;
    if (family === 0 || extra !== undefined || (prefix !== undefined && !/^\d{1,3}$/.test(prefix)))
      throw new Error(`${JSON.stringify(entry)} is not an IP address or a CIDR range (like 192.0.2.10 or 10.1.2.0/29)`);
    if (Number(prefix ?? bits) > bits)
      throw new Error(`${JSON.stringify(entry)}: an IPv${family} prefix is at most ${bits}`);
    blocks.addSubnet(address, Number(prefix ?? bits), family === 4 ? 'ipv4' : 'ipv6');
  }
  return blocks;
}

const listed = (proxies: BlockList, address: string): boolean => {
  const a = unmapped(address);
  const family = isIP(a);
  return family !== 0 && proxies.check(a, family === 4 ? 'ipv4' : 'ipv6');
};

/**
 * The address a request comes from: its peer's, or, where the peer is one of the admin's proxies,
 * the nearest address of X-Forwarded-For that is not (each proxy appends whom it heard from, so
 * only the entries the listed proxies appended are believed; what a client wrote before them is not).
 */
export function peerAddress(peer: string, forwardedFor: string | undefined, proxies: BlockList | undefined): string {
  let address = peer;
  const hops = forwardedFor?.split(',').map((h) => h.trim()) ?? [];
  while (proxies && listed(proxies, address) && hops.length > 0) {
    const next = hops.pop()!;
    if (isIP(next) === 0) break; // not an address: the proxy's is the best known
    address = next;
  }
  return address;
}

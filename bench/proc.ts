// What the benches read of a process from /proc.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

export { cpuSeconds } from '../workers/shared/proc-stat.js';
export { childProcesses } from '../workers/shared/priority.js';

/** The resident memory of `pid` in MB. */
export function rssMb(pid: number): number {
  const kb = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return Number(kb ?? 0) / 1024;
}

/** Whether `err` says the process read from /proc has ended. */
export const ended = (err: unknown) => ['ENOENT', 'ESRCH'].includes((err as NodeJS.ErrnoException).code ?? '');

/**
 * Datagrams the kernel has dropped at each UDP socket `pid` holds because its receive buffer was
 * full, by the socket's inode, with its local port. A socket's count goes when the socket closes,
 * so callers keep the highest seen.
 */
export function udpDrops(pid: number): Map<string, { port: number; drops: number }> {
  const held = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const inode = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1];
      if (inode) held.add(inode);
    } catch {
      // closed meanwhile
    }
  }
  const found = new Map<string, { port: number; drops: number }>();
  for (const table of ['/proc/net/udp', '/proc/net/udp6']) {
    // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ref pointer drops
    for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length >= 13 && held.has(f[9]!))
        found.set(f[9]!, { port: Number.parseInt(f[1]!.split(':').pop()!, 16), drops: Number(f[12]) });
    }
  }
  return found;
}

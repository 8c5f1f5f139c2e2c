// A process's CPU as Linux counts it in /proc/<pid>/stat: the spawner helper's reaped ffmpegs, the
// benches' processes, the tests'.
import { readFileSync } from 'node:fs';

const TICKS_PER_SECOND = 100; // USER_HZ on Linux

/**
 * The fields of /proc/<pid>/stat, or of one of its threads, from the state on (the 3rd field is
 * index 0): the command before it, in brackets, may hold spaces and brackets of its own.
 */
export function statFields(pid: number | 'self', thread?: number): string[] {
  const stat = readFileSync(`/proc/${pid}${thread === undefined ? '' : `/task/${thread}`}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** A process's own CPU time so far (s, user + system): all its threads, not its children. */
export function cpuSeconds(pid: number | 'self'): number {
  const f = statFields(pid); // utime and stime: fields 14 and 15
  return (Number(f[11]) + Number(f[12])) / TICKS_PER_SECOND;
}

/** CPU time (s, user + system) of the children a process has waited for so far (cutime and cstime: fields 16 and 17). */
export function reapedChildrenCpuSeconds(pid: number | 'self'): number {
  const f = statFields(pid);
  return (Number(f[13]) + Number(f[14])) / TICKS_PER_SECOND;
}

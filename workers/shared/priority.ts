// Work that must not slow down what runs live (the recorder's compose during the call, the
// transcript's recognition beside live captions) runs at the lowest priority.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { setPriority } from 'node:os';
import { statFields } from './proc-stat.js';

export const BACKGROUND_NICE = 19;

/**
 * Lowers a running process to BACKGROUND_NICE: every thread it has and every process below it
 * (Linux's nice is per thread; a thread or process started later takes its creator's). Without
 * /proc, only the calling thread. What ends meanwhile, or may not be lowered, is passed over.
 */
export function lowerPriority(pid: number | 'self' = 'self'): void {
  const lower = (id: number) => {
    try {
      setPriority(id, BACKGROUND_NICE);
    } catch {
      // ended meanwhile, or not ours to lower
    }
  };
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    if (pid === 'self') lower(0);
    return;
  }
  for (const task of tasks) lower(Number(task));
  for (const child of childProcesses(pid)) lowerPriority(child);
}

/** Whether the kernel gives each thread a `children` file (CONFIG_PROC_CHILDREN). */
const childrenFiles = existsSync(`/proc/self/task/${process.pid}/children`);

/**
 * The processes a process started: its threads' `children` files, or where the kernel has none,
 * every process's parent. None once it has ended (a thread that ends meanwhile has none).
 */
export function childProcesses(pid: number | 'self'): number[] {
  if (childrenFiles) {
    let tasks: string[];
    try {
      tasks = readdirSync(`/proc/${pid}/task`);
    } catch {
      return [];
    }
    return tasks.flatMap((task) => {
      try {
        return readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim().split(' ').filter(Boolean).map(Number);
      } catch {
        return [];
      }
    });
  }
  const parent = String(pid === 'self' ? process.pid : pid);
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        return statFields(Number(d))[1] === parent;
      } catch {
        return false;
      }
    })
    .map(Number);
}

// Work that must not slow down what runs live (the recorder's compose during the call, the
// transcript's recognition beside live captions) runs at the lowest priority.
import { readdirSync, readFileSync } from 'node:fs';
import { setPriority } from 'node:os';

export const BACKGROUND_NICE = 19;

/**
 * Lowers a running process to BACKGROUND_NICE: every thread it has and every process below it
 * (Linux's nice is per thread; a thread or process started later takes its creator's). Without
 * /proc, only the calling thread.
 */
export function lowerPriority(pid: number | 'self' = 'self'): void {
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    if (pid === 'self') setPriority(BACKGROUND_NICE);
    return;
  }
  for (const task of tasks) {
    try {
      setPriority(Number(task), BACKGROUND_NICE);
      const children = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim().split(' ');
      for (const child of children.filter(Boolean)) lowerPriority(Number(child));
    } catch {
      // the thread or process ended meanwhile
    }
  }
}

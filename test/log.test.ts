// What the service logs of a failure: a Redis error carries the command and its arguments (a job's
// input with its bot token, when a job could not be stored); the log must not.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { createLogger } from '../src/log.js';
import { ids, testConfig } from './helpers.js';

describe('logs', () => {
  it("keep a Redis error's message and drop the command's arguments", async () => {
    const config = testConfig();
    const redis = new Redis(config.redisUrl, { lazyConnect: true });
    const key = `${config.redisPrefix}:log-test`;
    const secret = ids();
    let err: Error | undefined;
    try {
      await redis.set(key, 'a string');
      // a hash command on a string: Redis answers WRONGTYPE, and ioredis puts the command on the error
      await redis.hset(key, 'input', JSON.stringify({ auth_token: secret })).catch((e: Error) => {
        err = e;
      });
    } finally {
      await redis.del(key);
      await redis.quit();
    }
    assert.ok(err && JSON.stringify((err as Error & { command?: unknown }).command).includes(secret));
    const lines: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((chunk: string) => lines.push(String(chunk)) > 0) as typeof process.stdout.write;
    try {
      const log = createLogger({ ...config, logConsole: true, logJson: false, logLevel: 'info' }, 'api');
      log.error({ err }, 'request failed');
      // a message given as a string stays a string
      log.warn({ err: 'connection reset' }, 'negotiation failed');
    } finally {
      process.stdout.write = write;
    }
    assert.equal(lines.length, 2);
    assert.match(lines[1]!, /negotiation failed \{"err":"connection reset"\}/);
    assert.match(lines[0]!, /request failed .*WRONGTYPE/);
    assert.ok(!lines[0]!.includes(secret), lines[0]);
  });
});

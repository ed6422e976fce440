/**
 * One LockProvider contract, run against the in-process locks and Redlock over one and over three
 * real Redis masters. Then Redlock's quorum: it survives a minority of masters down, and tells
 * "held by another owner" (null) from "no quorum" (StoreUnavailableError).
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import type { LockProvider } from '../../src/engine/ports';
import { StoreUnavailableError } from '../../src/errors';
import { createRedisClient, whenReady } from '../../src/store/redis-connection';
import { RedlockLockProvider } from '../../src/store/redlock-provider';
import { MemoryLockProvider } from '../helpers/memory-lock';
import { type RedisHandle, startRedis } from '../helpers/redis-server';

interface LockFixture {
  readonly provider: LockProvider;
  close(): Promise<void>;
}

const STORE_TIMEOUT = 500;

function newResource(): string {
  return `idem:{${randomUUID()}}:l:tenant`;
}

function lockProviderContract(name: string, setup: () => Promise<LockFixture>): void {
  describe(`LockProvider contract: ${name}`, () => {
    let fixture: LockFixture | undefined;
    const locks = (): LockProvider => {
      if (fixture === undefined) throw new Error('provider not set up');
      return fixture.provider;
    };

    beforeAll(async () => {
      fixture = await setup();
    });
    afterAll(async () => {
      await fixture?.close();
    });

    test('acquire gives a lease with a token unique to the acquisition', async () => {
      const first = await locks().acquire(newResource(), 5_000);
      const second = await locks().acquire(newResource(), 5_000);
      expect(first?.token).toEqual(expect.any(String));
      expect(first?.token.length).toBeGreaterThan(0);
      expect(first?.token).not.toBe(second?.token);
      await first?.release();
      await second?.release();
    });

    test('a held lock gives null to the next acquirer', async () => {
      const resource = newResource();
      const lease = await locks().acquire(resource, 5_000);
      expect(lease).not.toBeNull();
      await expect(locks().acquire(resource, 5_000)).resolves.toBeNull();
      await lease?.release();
    });

    test('a released lock can be acquired again, with a new token', async () => {
      const resource = newResource();
      const lease = await locks().acquire(resource, 5_000);
      await lease?.release();
      const next = await locks().acquire(resource, 5_000);
      expect(next).not.toBeNull();
      expect(next?.token).not.toBe(lease?.token);
      await next?.release();
    });

    test('a lock expires by itself after its TTL', async () => {
      const resource = newResource();
      await locks().acquire(resource, 150);
      await sleep(250);
      const next = await locks().acquire(resource, 5_000);
      expect(next).not.toBeNull();
      await next?.release();
    });

    test('extend keeps the lock past its first TTL', async () => {
      const resource = newResource();
      const lease = await locks().acquire(resource, 200);
      await expect(lease?.extend(2_000)).resolves.toBe(true);
      await sleep(300);
      await expect(locks().acquire(resource, 5_000)).resolves.toBeNull();
      await expect(lease?.extend(2_000)).resolves.toBe(true);
      await lease?.release();
      const next = await locks().acquire(resource, 5_000);
      expect(next).not.toBeNull();
      await next?.release();
    });

    test('extend after the lock was lost returns false, and the new owner keeps it', async () => {
      const resource = newResource();
      const lost = await locks().acquire(resource, 100);
      await sleep(200);
      const owner = await locks().acquire(resource, 5_000);
      expect(owner).not.toBeNull();
      await expect(lost?.extend(5_000)).resolves.toBe(false);
      // A late release by the old holder must not free the new owner's lock.
      await lost?.release();
      await expect(locks().acquire(resource, 5_000)).resolves.toBeNull();
      await owner?.release();
    });

    test('extend after expiry returns false even when nobody took the lock', async () => {
      const lease = await locks().acquire(newResource(), 100);
      await sleep(200);
      await expect(lease?.extend(5_000)).resolves.toBe(false);
    });

    test('release twice is harmless', async () => {
      const lease = await locks().acquire(newResource(), 5_000);
      await lease?.release();
      await expect(lease?.release()).resolves.toBeUndefined();
    });
  });
}

/** Clients for each server, ready to use. */
async function clientsFor(servers: readonly RedisHandle[], name: string): Promise<Redis[]> {
  const clients = servers.map((server) => createRedisClient(server.url, { storeTimeoutMs: STORE_TIMEOUT, name }));
  await Promise.all(clients.map((client) => whenReady(client, 5_000)));
  return clients;
}

async function startMany(count: number): Promise<RedisHandle[]> {
  return Promise.all(Array.from({ length: count }, () => startRedis()));
}

async function stopAll(servers: readonly RedisHandle[]): Promise<void> {
  await Promise.all(servers.map((server) => server.stop()));
}

// ---------------------------------------------------------------- the implementations

lockProviderContract('MemoryLockProvider', async () => {
  const provider = new MemoryLockProvider();
  return { provider, close: () => provider.close() };
});

for (const count of [1, 3]) {
  describe(`Redlock over ${count} Redis`, () => {
    let servers: RedisHandle[] = [];
    beforeAll(async () => {
      servers = await startMany(count);
    });
    afterAll(async () => {
      await stopAll(servers);
    });

    lockProviderContract(`RedlockLockProvider (${count} master${count > 1 ? 's' : ''})`, async () => {
      const provider = new RedlockLockProvider(await clientsFor(servers, 'locks'), { storeTimeoutMs: STORE_TIMEOUT });
      return { provider, close: () => provider.close() };
    });
  });
}

// ---------------------------------------------------------------- Redlock's quorum

describe('RedlockLockProvider quorum over 3 masters', () => {
  let servers: RedisHandle[] = [];
  let provider: RedlockLockProvider | undefined;
  let clients: Redis[] = [];

  beforeAll(async () => {
    servers = await startMany(3);
    clients = await clientsFor(servers, 'quorum');
    provider = new RedlockLockProvider(clients, { storeTimeoutMs: STORE_TIMEOUT });
  });
  afterAll(async () => {
    await provider?.close();
    await stopAll(servers);
  });

  function server(i: number): RedisHandle {
    const found = servers[i];
    if (found === undefined) throw new Error(`no server ${i}`);
    return found;
  }

  function locks(): RedlockLockProvider {
    if (provider === undefined) throw new Error('provider not set up');
    return provider;
  }

  async function restart(...indexes: number[]): Promise<void> {
    await Promise.all(indexes.map((i) => server(i).restart()));
    await Promise.all(indexes.map((i) => whenReady(clients[i] as Redis, 5_000)));
  }

  test('one master stopped: a lock is still acquired, and a held lock is still reported held', async () => {
    await server(2).stop();
    try {
      const resource = newResource();
      const lease = await locks().acquire(resource, 5_000);
      expect(lease).not.toBeNull();
      await expect(locks().acquire(resource, 5_000)).resolves.toBeNull();
      await expect(lease?.extend(5_000)).resolves.toBe(true);
      await lease?.release();
    } finally {
      await restart(2);
    }
  });

  test('one master paused: a lock is acquired within the store timeout', async () => {
    server(1).pause();
    try {
      const started = Date.now();
      const lease = await locks().acquire(newResource(), 5_000);
      expect(lease).not.toBeNull();
      expect(Date.now() - started).toBeLessThan(STORE_TIMEOUT);
      await lease?.release();
    } finally {
      server(1).resume();
    }
  });

  test('one master paused: a held lock is reported held (null) within the store timeout', async () => {
    const resource = newResource();
    const lease = await locks().acquire(resource, 5_000);
    server(2).pause();
    try {
      const started = Date.now();
      await expect(locks().acquire(resource, 5_000)).resolves.toBeNull();
      expect(Date.now() - started).toBeLessThan(STORE_TIMEOUT);
    } finally {
      server(2).resume();
      await lease?.release();
    }
  });

  test('two masters stopped: acquire throws StoreUnavailableError, not null, and recovers after restart', async () => {
    const resource = newResource();
    await server(1).stop();
    await server(2).stop();
    try {
      const started = Date.now();
      await expect(locks().acquire(resource, 5_000)).rejects.toBeInstanceOf(StoreUnavailableError);
      expect(Date.now() - started).toBeLessThan(STORE_TIMEOUT + 500);
    } finally {
      await restart(1, 2);
    }
    const lease = await locks().acquire(resource, 5_000);
    expect(lease).not.toBeNull();
    await lease?.release();
  });

  test('two masters paused: acquire throws StoreUnavailableError within the store timeout', async () => {
    server(1).pause();
    server(2).pause();
    try {
      const started = Date.now();
      await expect(locks().acquire(newResource(), 5_000)).rejects.toBeInstanceOf(StoreUnavailableError);
      expect(Date.now() - started).toBeLessThan(STORE_TIMEOUT + 500);
    } finally {
      server(1).resume();
      server(2).resume();
    }
  });

  test('a lock held on a quorum is held even when the third master is down', async () => {
    const resource = newResource();
    const lease = await locks().acquire(resource, 5_000);
    await server(0).stop();
    try {
      await expect(locks().acquire(resource, 5_000)).resolves.toBeNull();
    } finally {
      await restart(0);
      await lease?.release();
    }
  });
});

/**
 * Per-key locks in process memory: a LockProvider for tests that take the engine's quorum-lock
 * path without Redis. The product has no use for it: with one store, the store's atomic claim is
 * the lock. Same contract as Redlock (test/contract/lock-provider.test.ts holds both to it): a
 * held lock yields null, a lock expires by itself after its TTL, and only the holder's token can
 * extend or release it.
 */
import { randomUUID } from 'node:crypto';
import type { Lease, LockProvider } from '../../src/engine/ports';

export interface MemoryLockProviderOptions {
  /** Epoch milliseconds; default Date.now. */
  readonly now?: () => number;
}

interface Held {
  readonly token: string;
  expiresAt: number;
}

export class MemoryLockProvider implements LockProvider {
  private readonly locks = new Map<string, Held>();
  private readonly now: () => number;
  private acquisitions = 0;

  constructor(options: MemoryLockProviderOptions = {}) {
    this.now = options.now ?? Date.now;
  }

  async acquire(resource: string, ttlMs: number): Promise<Lease | null> {
    const now = this.now();
    // A lease that was never released (its holder forgot or failed) would stay in the map for
    // good: sweep expired ones now and then, so the map stays as large as the live locks.
    if (++this.acquisitions % 1024 === 0) this.sweep(now);
    const held = this.locks.get(resource);
    if (held !== undefined && held.expiresAt > now) return null;
    const token = randomUUID();
    this.locks.set(resource, { token, expiresAt: now + ttlMs });
    return {
      token,
      extend: async (extendMs: number): Promise<boolean> => {
        const current = this.locks.get(resource);
        const at = this.now();
        // Lost once it expired, even if nobody took it since: Redlock behaves the same, and the
        // engine must not believe it held the key through a gap.
        if (current?.token !== token || current.expiresAt <= at) return false;
        current.expiresAt = at + extendMs;
        return true;
      },
      release: async (): Promise<void> => {
        if (this.locks.get(resource)?.token === token) this.locks.delete(resource);
      },
    };
  }

  private sweep(now: number): void {
    for (const [resource, held] of this.locks) {
      if (held.expiresAt <= now) this.locks.delete(resource);
    }
  }

  async close(): Promise<void> {
    this.locks.clear();
  }
}

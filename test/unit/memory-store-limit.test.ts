/**
 * The in-process store under a flood of distinct keys: it holds at most maxRecords records,
 * drops expired ones to make room, never evicts a live one (its key would run again), and says
 * once per episode that it is full.
 */
import { StoreFullError } from '../../src/errors';
import type { ClaimRequest } from '../../src/engine/ports';
import { MemoryRecordStore } from '../../src/store/memory-store';
import { waitFor } from '../helpers/wait';

function claimOf(ttlMs: number, token = 't'): ClaimRequest {
  return { fingerprint: 'f', token, leaseMs: 10_000, ttlMs, onExpiredLease: 'hold' };
}

describe('MemoryRecordStore record limit', () => {
  let now = 1_000_000;
  const clock = (): number => now;

  test('refuses a new key beyond the limit, keeps every live record, and reports once', async () => {
    const reports: number[] = [];
    const store = new MemoryRecordStore({ now: clock, maxRecords: 3, onFull: (max) => reports.push(max) });
    for (const key of ['a', 'b', 'c']) expect(await store.claim({ tenant: 't', key }, claimOf(60_000))).toEqual({ claimed: true });

    await expect(store.claim({ tenant: 't', key: 'd' }, claimOf(60_000))).rejects.toBeInstanceOf(StoreFullError);
    await expect(store.claim({ tenant: 'other', key: 'a' }, claimOf(60_000))).rejects.toThrow(/maximum of 3/);
    expect(reports).toEqual([3]);
    expect(store.recordCount()).toBe(3);
    // Existing keys still answer as before: nothing live was evicted.
    for (const key of ['a', 'b', 'c']) expect((await store.claim({ tenant: 't', key }, claimOf(60_000))).claimed).toBe(false);
    await store.close();
  });

  test('a settled key frees its place; expired records are dropped to make room', async () => {
    const reports: number[] = [];
    const store = new MemoryRecordStore({ now: clock, maxRecords: 2, onFull: (max) => reports.push(max) });
    await store.claim({ tenant: 't', key: 'short' }, claimOf(1_000, 's'));
    await store.claim({ tenant: 't', key: 'long' }, claimOf(60_000, 'l'));
    await expect(store.claim({ tenant: 't', key: 'x' }, claimOf(60_000))).rejects.toBeInstanceOf(StoreFullError);

    // A released key is gone at once.
    expect(await store.release({ tenant: 't', key: 'long' }, 'l')).toBe(true);
    expect(await store.claim({ tenant: 't', key: 'x' }, claimOf(600_000))).toEqual({ claimed: true });
    await expect(store.claim({ tenant: 't', key: 'y' }, claimOf(60_000))).rejects.toBeInstanceOf(StoreFullError);

    // An expired record is swept out when room is needed (no lookup of it required).
    now += 5_000;
    expect(await store.claim({ tenant: 't', key: 'y' }, claimOf(600_000))).toEqual({ claimed: true });
    expect(store.recordCount()).toBe(2);
    expect(await store.read({ tenant: 't', key: 'short' })).toBeNull();
    // Full again within the minute: refused, but not reported again (no log flood at the limit).
    await expect(store.claim({ tenant: 't', key: 'z' }, claimOf(60_000))).rejects.toBeInstanceOf(StoreFullError);
    expect(reports).toEqual([2]);
    // A later episode is reported again.
    now += 61_000;
    expect(await store.release({ tenant: 't', key: 'y' }, 't')).toBe(true);
    expect(await store.claim({ tenant: 't', key: 'z' }, claimOf(600_000))).toEqual({ claimed: true });
    await expect(store.claim({ tenant: 't', key: 'w' }, claimOf(60_000))).rejects.toBeInstanceOf(StoreFullError);
    expect(reports).toEqual([2, 2]);
    await store.close();
  });

  test('the count stays exact through completion, removal and the periodic sweep', async () => {
    const store = new MemoryRecordStore({ now: clock, maxRecords: 1_000, sweepIntervalMs: 10 });
    for (let i = 0; i < 500; i++) await store.claim({ tenant: `t${i % 7}`, key: `k${i}` }, claimOf(i % 2 === 0 ? 100 : 60_000, `tok${i}`));
    expect(store.recordCount()).toBe(500);
    await store.complete({ tenant: 't0', key: 'k0' }, 'tok0', { status: 201, headers: [], body: Buffer.alloc(0) }, 60_000);
    expect(await store.remove({ tenant: 't1', key: 'k1' })).toBe(true);
    expect(store.recordCount()).toBe(499);
    now += 1_000;
    // The even keys expired (k0 was completed with a fresh TTL and stays): the next sweep drops them.
    const expected = 1 + 249 - 1 + 1;
    await waitFor(() => store.recordCount() <= expected, { timeoutMs: 5_000, intervalMs: 5, what: () => `the sweep (count ${store.recordCount()})` });
    expect(store.recordCount()).toBe(expected);
    await store.close();
    expect(store.recordCount()).toBe(0);
  });

  test('refuses a limit that is not a positive whole number', () => {
    expect(() => new MemoryRecordStore({ maxRecords: 0 })).toThrow(/maxRecords/);
    expect(() => new MemoryRecordStore({ maxRecords: 1.5 })).toThrow(/maxRecords/);
  });
});

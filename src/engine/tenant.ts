/**
 * The tenant: a hash of the values of the tenant headers (default `Authorization`). Two clients
 * that use the same key never meet, and the raw credential never reaches the store or the logs.
 */
import { createHash } from 'node:crypto';

/** 16 hex characters (64 bits): short enough for logs and the admin API, wide enough not to collide. */
export function tenantId(headerValues: readonly (string | undefined)[]): string {
  const hash = createHash('sha256');
  for (const value of headerValues) {
    // An absent header and an empty one are different clients.
    hash.update(value === undefined ? '\u0000' : `${value.length}:${value}`);
    hash.update('\n');
  }
  return hash.digest('hex').slice(0, 16);
}

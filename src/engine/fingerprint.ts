/**
 * The request fingerprint: a hash of the method, the path with its query, and the body bytes.
 * The same key with another fingerprint is a client bug (a reused key) and gets 422. The hash
 * is fed while the body streams in, so the body is never walked twice.
 */
import { createHash, type Hash } from 'node:crypto';

export class FingerprintBuilder {
  private readonly hash: Hash;

  constructor(method: string, pathWithQuery: string) {
    this.hash = createHash('sha256');
    // Length-prefixed so that no method/path/body split can collide with another.
    this.hash.update(`${method.length}:${method}\n${pathWithQuery.length}:${pathWithQuery}\n`);
  }

  update(chunk: Buffer): void {
    this.hash.update(chunk);
  }

  digest(): string {
    return this.hash.digest('base64url');
  }
}

export function fingerprint(method: string, pathWithQuery: string, body: Buffer): string {
  const builder = new FingerprintBuilder(method, pathWithQuery);
  builder.update(body);
  return builder.digest();
}

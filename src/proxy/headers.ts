/**
 * Hop-by-hop headers (RFC 9110 section 7.6.1) belong to one connection: they are never forwarded
 * by the guarded path, never stored, never replayed. Stripped here and only here.
 */
import type { HeaderPair } from '../engine/record';

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** Headers named by `Connection` are hop-by-hop too. */
function connectionTokens(connection: string | undefined): Set<string> {
  const tokens = new Set<string>();
  if (!connection) return tokens;
  for (const token of connection.split(',')) {
    const name = token.trim().toLowerCase();
    if (name) tokens.add(name);
  }
  return tokens;
}

/** Turns Node's rawHeaders (name, value, name, value, ...) into end-to-end pairs, names lower case. */
export function endToEndPairs(rawHeaders: readonly string[], drop: ReadonlySet<string> = EMPTY): HeaderPair[] {
  // Every Connection field counts: a list split over several fields is one list (RFC 9110 section 5.3).
  let connection: string | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if ((rawHeaders[i] as string).toLowerCase() === 'connection') {
      connection = connection === undefined ? rawHeaders[i + 1] : `${connection},${rawHeaders[i + 1] as string}`;
    }
  }
  const named = connectionTokens(connection);
  const pairs: HeaderPair[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = (rawHeaders[i] as string).toLowerCase();
    if (HOP_BY_HOP.has(name) || named.has(name) || drop.has(name)) continue;
    pairs.push([name, rawHeaders[i + 1] as string]);
  }
  return pairs;
}

/** The same for a header object as undici returns it (values may be arrays, e.g. set-cookie). */
export function endToEndPairsFromObject(headers: Readonly<Record<string, string | string[] | undefined>>): HeaderPair[] {
  const connection = headers['connection'];
  const named = connectionTokens(Array.isArray(connection) ? connection.join(',') : connection);
  const pairs: HeaderPair[] = [];
  for (const [rawName, value] of Object.entries(headers)) {
    const name = rawName.toLowerCase();
    if (value === undefined || HOP_BY_HOP.has(name) || named.has(name)) continue;
    if (Array.isArray(value)) for (const item of value) pairs.push([name, item]);
    else pairs.push([name, value]);
  }
  return pairs;
}

const EMPTY: ReadonlySet<string> = new Set();

/**
 * The record of (tenant, key) as the Redis store keeps it: one string, whose layout
 * scripts/includes/record.lua documents (the scripts read and rewrite its header; this module
 * builds what the sidecar sends and reads what comes back):
 *
 *   state \n waited \n created \n lease \n seen \n fingerprint \n token [\n status \n headers \n body]
 *
 * with every instant kept as milliseconds before the key's expiry, which Redis keeps on its own
 * clock (so no script needs TIME). One string rather than a hash of fields because a string is
 * created with its expiry in one command (SET ... PX), which halves what a first-time request
 * asks of Redis, and costs Redis less memory per record than a hash whose body field is too long
 * for the compact encoding.
 */
import type { FoundRecord, HeaderPair, IdempotencyRecord, RecordState, StoredResponse } from '../engine/record';
import { StoreUnavailableError } from '../errors';

const NEWLINE = 0x0a;
const STATES: ReadonlySet<string> = new Set<RecordState>(['in_flight', 'completed', 'unknown']);

/** The in-flight record a claim creates: its lease ends leaseMs after creation, the record ttlMs after. */
export function encodeInFlight(fingerprint: string, token: string, leaseMs: number, ttlMs: number): string {
  return ['in_flight', '0', String(ttlMs), String(ttlMs - leaseMs), '', headerField(fingerprint, 'fingerprint'), headerField(token, 'token')].join('\n');
}

/** The part of a completed record the complete script appends after the header. */
export function encodeResponse(response: StoredResponse): Buffer {
  // JSON.stringify escapes every control character, so the headers never hold a raw newline.
  return Buffer.concat([Buffer.from(`${response.status}\n${JSON.stringify(response.headers)}\n`, 'utf8'), response.body]);
}

/** A record as a claim found it: its times are relative to an expiry the claim did not read. */
export function decodeFound(value: Buffer): FoundRecord {
  const { record } = decode(value);
  return record;
}

/** A record with its instants, given its key's expiry (PEXPIRETIME, epoch ms). */
export function decodeWithExpiry(value: Buffer, expiresAt: number): IdempotencyRecord {
  if (!Number.isSafeInteger(expiresAt) || expiresAt < 0) throw malformed(`record expiry ${String(expiresAt)}`);
  const { record, created, lease } = decode(value);
  return { ...record, createdAt: expiresAt - created, expiresAt, leaseUntil: expiresAt - lease };
}

/** A fingerprint or a token is one line of the header: a newline in it would shift every field after it. */
function headerField(value: string, name: string): string {
  if (value.includes('\n')) throw new TypeError(`${name} must not contain a newline`);
  return value;
}

interface Decoded {
  readonly record: FoundRecord;
  readonly created: number;
  readonly lease: number;
}

function decode(value: Buffer): Decoded {
  let at = 0;
  // One line of the header; the last line of a record without a response runs to the end.
  const line = (): string => {
    if (at > value.length) throw malformed('record (too few fields)');
    let end = value.indexOf(NEWLINE, at);
    if (end === -1) end = value.length;
    const text = value.toString('utf8', at, end);
    at = end + 1;
    return text;
  };
  const state = line();
  if (!STATES.has(state)) throw malformed(`record (state ${state})`);
  line(); // waited: the scripts' business
  const created = integer(line(), 'created');
  const lease = integer(line(), 'lease');
  line(); // seen: the scripts' business
  const record = { state: state as RecordState, fingerprint: line(), token: line() };
  if (state !== 'completed') return { record, created, lease };
  const status = integer(line(), 'status');
  const headers = parseHeaders(line());
  if (at > value.length) throw malformed('record (no body)');
  const response: StoredResponse = { status, headers, body: value.subarray(at) };
  return { record: { ...record, response }, created, lease };
}

function integer(text: string, name: string): number {
  const value = Number(text);
  if (text === '' || !Number.isSafeInteger(value)) throw malformed(`record (${name} is not an integer)`);
  return value;
}

export function parseHeaders(json: string): HeaderPair[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch (error) {
    throw new StoreUnavailableError('malformed record (headers are not JSON)', { cause: error });
  }
  const isPair = (pair: unknown): pair is HeaderPair =>
    Array.isArray(pair) && pair.length === 2 && typeof pair[0] === 'string' && typeof pair[1] === 'string';
  if (!Array.isArray(parsed) || !parsed.every(isPair)) throw malformed('record (headers)');
  return parsed;
}

export function malformed(what: string): StoreUnavailableError {
  return new StoreUnavailableError(`malformed ${what} from Redis`);
}

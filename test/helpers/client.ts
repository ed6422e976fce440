/** A test client that keeps what fetch would hide: repeated headers, raw bytes, repeated key headers. */
import { type Dispatcher, request } from 'undici';

export interface Reply {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Buffer;
  json(): Record<string, unknown>;
  header(name: string): string | undefined;
}

export interface SendOptions {
  readonly method?: string;
  readonly key?: string;
  readonly body?: string | Buffer;
  readonly headers?: Record<string, string>;
  /** Raw header pairs, for headers given more than once. */
  readonly rawHeaders?: readonly (readonly [string, string])[];
  readonly signal?: AbortSignal;
  /** E.g. an undici Agent with `connect: { ca, cert, key }`, for HTTPS and client certificates. */
  readonly dispatcher?: Dispatcher;
  /**
   * The Authorization header that identifies the client (the sidecar's default tenant header), sent
   * unless the headers give one: default TEST_CLIENT; null sends none.
   */
  readonly tenant?: string | null;
}

/** The Authorization a test client sends unless told otherwise: keyed requests need a tenant. */
export const TEST_CLIENT = 'Bearer test-client';

export async function send(baseUrl: string, path: string, options: SendOptions = {}): Promise<Reply> {
  const headers: string[] = [];
  for (const [name, value] of Object.entries(options.headers ?? {})) headers.push(name, value);
  if (options.key !== undefined) headers.push('idempotency-key', options.key);
  for (const [name, value] of options.rawHeaders ?? []) headers.push(name, value);
  const tenant = options.tenant === undefined ? TEST_CLIENT : options.tenant;
  if (tenant !== null && !headers.some((value, i) => i % 2 === 0 && value.toLowerCase() === 'authorization')) {
    headers.push('authorization', tenant);
  }
  if (options.body !== undefined && !Object.keys(options.headers ?? {}).some((n) => n.toLowerCase() === 'content-type')) {
    headers.push('content-type', 'application/json');
  }
  const response = await request(baseUrl + path, {
    method: (options.method ?? 'POST') as 'POST',
    headers,
    body: options.body ?? null,
    signal: options.signal,
    ...(options.dispatcher === undefined ? {} : { dispatcher: options.dispatcher }),
  });
  const body = Buffer.from(await response.body.arrayBuffer());
  return {
    status: response.statusCode,
    headers: response.headers,
    body,
    json: () => JSON.parse(body.toString('utf8')) as Record<string, unknown>,
    header: (name) => {
      const value = response.headers[name.toLowerCase()];
      return Array.isArray(value) ? value.join(', ') : value;
    },
  };
}

/** A fresh key per test, so tests never see each other's records. */
let counter = 0;
export function freshKey(label = 'k'): string {
  counter++;
  return `${label}-${process.pid}-${Date.now().toString(36)}-${counter}`;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

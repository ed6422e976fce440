/**
 * Encryption at rest, end to end: the sidecar as its own process on a real redis-server, with the
 * keys in IDEMPOTENCY_ENCRYPTION_KEYS or IDEMPOTENCY_ENCRYPTION_KEYS_FILE. Redis is then read
 * directly, every key and every field as raw bytes, and must hold none of the card data, headers
 * or credentials the client and the upstream exchanged; a replay must still be byte-identical.
 * Rotation across restarts; a record whose key was removed, altered in Redis, or read with
 * encryption turned off is answered record-unreadable and never runs again.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { tenantId } from '../../src/engine/tenant';
import { recordKey } from '../../src/store/keys';
import { freshKey, send, type Reply } from '../helpers/client';
import { startPaymentUpstream, type PaymentUpstream } from '../helpers/payment-upstream';
import { startRedis, type RedisHandle } from '../helpers/redis-server';
import { runSidecarCommand, startSidecar, type SidecarProcess } from '../helpers/sidecar-process';

const K1 = `k1:${randomBytes(32).toString('base64')}`;
const K2 = `k2:${randomBytes(32).toString('base64')}`;

const CARD = '4111111111111111';
const AUTHORIZATION = 'Bearer sk_live_credential_marker_9f3a';
const HEADER_MARKER = 'request-header-marker-7c1e';
/** Only the upstream sends this header name: its absence shows the stored headers are sealed too. */
const RESPONSE_HEADER_NAME = 'x-echoed-marker';

/** The upstream's /payments answers the request's `amount` in its body: the card comes back. */
function paymentBody(): string {
  return JSON.stringify({ amount: { cents: 1999, card: { number: CARD, cvc: '737' }, customer: 'cus_marker_customer' } });
}

/** What must never appear in Redis, though every one is in the response that is stored. */
const MARKERS = [CARD, 'cus_marker_customer', HEADER_MARKER, RESPONSE_HEADER_NAME];

function pay(sidecar: SidecarProcess, key: string): Promise<Reply> {
  return send(sidecar.url, '/payments', {
    key,
    body: paymentBody(),
    headers: { authorization: AUTHORIZATION, 'x-echo-marker': HEADER_MARKER },
  });
}

/** The response as a client sees it, less what the sidecar may recompute or add on a replay. */
function comparable(reply: Reply): { status: number; headers: Record<string, unknown>; body: string } {
  const { date: _date, 'idempotent-replayed': _replayed, connection: _connection, 'keep-alive': _keepAlive, ...headers } = reply.headers;
  return { status: reply.status, headers, body: reply.body.toString('hex') };
}

/** Every key name, field name, member and value in the server, as raw bytes (SCAN, then by TYPE). */
async function everythingIn(client: Redis): Promise<Buffer[]> {
  const found: Buffer[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await client.scanBuffer(cursor, 'COUNT', 1000);
    cursor = next.toString();
    for (const key of keys) {
      found.push(key);
      const type = await client.type(key);
      switch (type) {
        case 'string':
          found.push((await client.getBuffer(key)) ?? Buffer.alloc(0));
          break;
        case 'hash':
          for (const [field, value] of Object.entries(await client.hgetallBuffer(key))) found.push(Buffer.from(field), value);
          break;
        case 'zset':
          found.push(...(await client.zrangeBuffer(key, 0, -1, 'WITHSCORES')));
          break;
        case 'set':
          found.push(...(await client.smembersBuffer(key)));
          break;
        case 'list':
          found.push(...(await client.lrangeBuffer(key, 0, -1)));
          break;
        case 'none':
          break; // expired between SCAN and TYPE
        default:
          throw new Error(`unexpected key type ${type} for ${key.toString()}: extend the scan`);
      }
    }
  } while (cursor !== '0');
  return found;
}

function markersIn(values: readonly Buffer[]): string[] {
  return MARKERS.filter((marker) => values.some((value) => value.includes(marker)));
}

describe('encryption at rest (sidecar process, redis-server)', () => {
  let redis: RedisHandle | undefined;
  let upstream: PaymentUpstream | undefined;
  let client: Redis | undefined;
  const started: SidecarProcess[] = [];
  const tempDirs: string[] = [];

  beforeAll(async () => {
    redis = await startRedis();
    upstream = await startPaymentUpstream();
    client = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await client.connect();
  });
  afterEach(async () => {
    await Promise.all(started.splice(0).map((sidecar) => sidecar.stop()));
  });
  afterAll(async () => {
    client?.disconnect();
    await upstream?.stop();
    await redis?.stop();
    for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
  });

  async function sidecar(env: Record<string, string>): Promise<SidecarProcess> {
    if (redis === undefined || upstream === undefined) throw new Error('not set up');
    const running = await startSidecar({ upstream: upstream.url, env: { IDEMPOTENCY_REDIS_URL: redis.url, ...env } });
    started.push(running);
    return running;
  }

  async function stop(running: SidecarProcess): Promise<void> {
    started.splice(started.indexOf(running), 1);
    expect(await running.stop()).toBe(0);
  }

  function executions(key: string): number {
    return upstream?.countKey(key) ?? Number.NaN;
  }

  function keyFile(lines: string): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sidecar-keys-'));
    tempDirs.push(dir);
    const file = path.join(dir, 'keys');
    fs.writeFileSync(file, lines, { mode: 0o600 });
    return file;
  }

  /**
   * The stored record, split as src/store/record-value.ts lays it out: `head` (the seven header
   * lines: state, waited, times, fingerprint, token), `state`, and once completed `response` (all
   * after the head) with its `status`, `headers` and `body`.
   */
  async function storedFields(key: string): Promise<Record<string, Buffer>> {
    if (client === undefined) throw new Error('not set up');
    const value = await client.getBuffer(recordKey({ tenant: tenantId([AUTHORIZATION]), key }));
    if (value === null) return {};
    const ends: number[] = [];
    for (let at = value.indexOf(0x0a); at !== -1 && ends.length < 9; at = value.indexOf(0x0a, at + 1)) ends.push(at);
    const [stateEnd = value.length, , , , , , headEnd = value.length, statusEnd = value.length, headersEnd = value.length] = ends;
    return {
      head: value.subarray(0, headEnd + 1),
      state: value.subarray(0, stateEnd),
      response: value.subarray(headEnd + 1),
      status: value.subarray(headEnd + 1, statusEnd),
      headers: value.subarray(statusEnd + 1, headersEnd),
      body: value.subarray(headersEnd + 1),
    };
  }

  /**
   * The first record_unreadable log line. The line is written before the answer, but the pipe
   * from the process may deliver it after the answer arrives: look again until it is there.
   */
  async function unreadableLine(running: SidecarProcess): Promise<Record<string, unknown> | undefined> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const line = running.logs().find((entry) => entry['alert'] === 'record_unreadable');
      if (line !== undefined || Date.now() > deadline) return line;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }

  test('control: without keys the same scan finds every marker in Redis', async () => {
    await client?.flushall();
    const plain = await sidecar({});
    const reply = await pay(plain, freshKey('plain'));
    expect(reply.status).toBe(201);
    expect(reply.header(RESPONSE_HEADER_NAME)).toBe(HEADER_MARKER);
    if (client === undefined) throw new Error('not set up');
    const everything = await everythingIn(client);
    expect(markersIn(everything).sort()).toEqual([...MARKERS].sort());
    // The credential is only ever stored hashed (the tenant), encrypted or not.
    expect(everything.some((value) => value.includes(AUTHORIZATION))).toBe(false);
  });

  test('with a key, Redis holds none of the markers, and the replay is byte-identical to the first answer', async () => {
    await client?.flushall();
    const sealed = await sidecar({ IDEMPOTENCY_ENCRYPTION_KEYS: K1 });
    const keys = [freshKey('enc'), freshKey('enc'), freshKey('enc')];
    const firsts = await Promise.all(keys.map((key) => pay(sealed, key)));
    for (const first of firsts) {
      expect(first.status).toBe(201);
      expect(first.header(RESPONSE_HEADER_NAME)).toBe(HEADER_MARKER);
      expect(first.body.includes(CARD)).toBe(true);
    }
    for (const [i, key] of keys.entries()) {
      const replay = await pay(sealed, key);
      expect(replay.header('idempotent-replayed')).toBe('true');
      expect(comparable(replay)).toEqual(comparable(firsts[i] as Reply));
      expect(executions(key)).toBe(1);
    }

    if (client === undefined) throw new Error('not set up');
    const everything = await everythingIn(client);
    expect(everything.length).toBeGreaterThan(0);
    expect(markersIn(everything)).toEqual([]);
    expect(everything.some((value) => value.includes(AUTHORIZATION))).toBe(false);
    const fields = await storedFields(keys[0] as string);
    expect(fields['state']?.toString()).toBe('completed');
    expect(fields['status']?.toString()).toBe('201');
    expect(JSON.parse(fields['headers']?.toString() ?? 'null')).toEqual([[':encrypted', 'k1']]);
  });

  test('encryption costs no Redis round trip: two commands for a first-time request, one for a replay', async () => {
    if (client === undefined) throw new Error('not set up');
    const running = await sidecar({ IDEMPOTENCY_ENCRYPTION_KEYS: K1 });
    const key = freshKey('trips');
    // Warm the connection and the script cache, so that the counts below are the steady state.
    expect((await pay(running, freshKey('warm'))).status).toBe(201);
    // MONITOR sees every command a client sends; a script's own calls come from `lua` and are not round trips.
    const monitor = await client.monitor();
    const seen: string[] = [];
    monitor.on('monitor', (_time: string, args: string[], source: string) => {
      if (source !== 'lua') seen.push(String(args[0]).toLowerCase());
    });
    try {
      const during = async (work: () => Promise<void>): Promise<string[]> => {
        seen.length = 0;
        await work();
        // The feed is in execution order: once our own ECHO shows up, every command the sidecar
        // sent before answering has too.
        await client?.echo('end-of-request');
        for (let waited = 0; !seen.includes('echo') && waited < 10_000; waited += 20) {
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        expect(seen).toContain('echo');
        return seen.slice(0, seen.indexOf('echo'));
      };
      expect(await during(async () => expect((await pay(running, key)).status).toBe(201))).toEqual(['evalsha', 'evalsha']);
      expect(await during(async () => expect((await pay(running, key)).header('idempotent-replayed')).toBe('true'))).toEqual(['evalsha']);
    } finally {
      monitor.disconnect();
    }
  });

  test('rotation across restarts: new key first keeps old records; the new key alone refuses them, and the upstream is not called again', async () => {
    const oldKey = freshKey('rot-old');
    const first = await sidecar({ IDEMPOTENCY_ENCRYPTION_KEYS: K1 });
    const original = await pay(first, oldKey);
    expect(original.status).toBe(201);
    await stop(first);

    // Rotated: k2 encrypts, k1 still decrypts.
    const rotated = await sidecar({ IDEMPOTENCY_ENCRYPTION_KEYS: `${K2},${K1}` });
    const replay = await pay(rotated, oldKey);
    expect(replay.header('idempotent-replayed')).toBe('true');
    expect(comparable(replay)).toEqual(comparable(original));
    const newKey = freshKey('rot-new');
    const fresh = await pay(rotated, newKey);
    expect(fresh.status).toBe(201);
    expect(JSON.parse((await storedFields(newKey))['headers']?.toString() ?? 'null')).toEqual([[':encrypted', 'k2']]);
    await stop(rotated);

    // k1 removed too early: its record is refused, not replayed as ciphertext, not run again.
    const onlyNew = await sidecar({ IDEMPOTENCY_ENCRYPTION_KEYS: K2 });
    const refused = await pay(onlyNew, oldKey);
    expect(refused.status).toBe(500);
    expect(refused.header('content-type')).toMatch(/^application\/problem\+json/);
    expect(refused.json()).toMatchObject({ type: 'urn:idempotency-sidecar:problem:record-unreadable', status: 500 });
    expect(refused.body.includes(CARD)).toBe(false);
    expect(executions(oldKey)).toBe(1);
    const newReplay = await pay(onlyNew, newKey);
    expect(newReplay.header('idempotent-replayed')).toBe('true');
    expect(comparable(newReplay)).toEqual(comparable(fresh));
    expect(executions(newKey)).toBe(1);

    const line = await unreadableLine(onlyNew);
    expect(line).toMatchObject({ level: 'error', keyId: 'k1', reason: 'unknown-key', tenant: tenantId([AUTHORIZATION]) });
    expect(String(line?.['msg'])).toMatch(/key id k1.*IDEMPOTENCY_ENCRYPTION_KEYS/);
    expect(JSON.stringify(onlyNew.logs())).not.toContain(K2.slice(3));
  });

  test('keys from IDEMPOTENCY_ENCRYPTION_KEYS_FILE (comments, blank lines), rotated there too', async () => {
    const key = freshKey('file');
    const first = await sidecar({ IDEMPOTENCY_ENCRYPTION_KEYS_FILE: keyFile(`# current key\n${K1}\n`) });
    const original = await pay(first, key);
    await stop(first);
    expect(JSON.parse((await storedFields(key))['headers']?.toString() ?? 'null')).toEqual([[':encrypted', 'k1']]);

    const rotated = await sidecar({ IDEMPOTENCY_ENCRYPTION_KEYS_FILE: keyFile(`# new key first\n${K2}\n\n# old key, until its records expire\n${K1}\n`) });
    const replay = await pay(rotated, key);
    expect(replay.header('idempotent-replayed')).toBe('true');
    expect(comparable(replay)).toEqual(comparable(original));
    await stop(rotated);

    const onlyNew = await sidecar({ IDEMPOTENCY_ENCRYPTION_KEYS_FILE: keyFile(`${K2}\n`) });
    expect((await pay(onlyNew, key)).status).toBe(500);
    expect(String((await unreadableLine(onlyNew))?.['msg'])).toMatch(/IDEMPOTENCY_ENCRYPTION_KEYS_FILE/);
    expect(executions(key)).toBe(1);
  });

  test('a key file that holds no valid key stops the start (and --config-test) with exit 2 and one line naming it, never echoing the key', async () => {
    const secret = randomBytes(16).toString('base64'); // 16 bytes: too short for AES-256
    const file = keyFile(`# a short key\nk1:${secret}\n`);
    const env = { IDEMPOTENCY_UPSTREAM: 'http://127.0.0.1:3000', IDEMPOTENCY_ENCRYPTION_KEYS_FILE: file };
    for (const args of [[], ['--config-test']]) {
      const result = await runSidecarCommand(args, env);
      expect(result.code).toBe(2);
      const lines = result.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^idempotency-sidecar: IDEMPOTENCY_ENCRYPTION_KEYS_FILE: .*32 bytes/);
      expect(result.stderr + result.stdout).not.toContain(secret);
    }
    const empty = await runSidecarCommand([], { ...env, IDEMPOTENCY_ENCRYPTION_KEYS_FILE: keyFile('# nothing here\n') });
    expect(empty.code).toBe(2);
    expect(empty.stderr).toMatch(/IDEMPOTENCY_ENCRYPTION_KEYS_FILE: .*holds no key/);
  });

  test('a sealed body copied onto another record in Redis is refused as corrupt, and neither key runs again', async () => {
    const running = await sidecar({ IDEMPOTENCY_ENCRYPTION_KEYS: K1 });
    const source = freshKey('copy-src');
    const target = freshKey('copy-dst');
    expect((await send(running.url, '/payments', { key: source, body: '{"amount":1}', headers: { authorization: AUTHORIZATION } })).status).toBe(201);
    expect((await pay(running, target)).status).toBe(201);
    if (client === undefined) throw new Error('not set up');
    const targetRecord = recordKey({ tenant: tenantId([AUTHORIZATION]), key: target });
    const sourceFields = await storedFields(source);
    const targetFields = await storedFields(target);
    // Same key id, same status: only the scope bound into the authenticated data differs.
    await client.set(targetRecord, Buffer.concat([targetFields['head'] as Buffer, sourceFields['response'] as Buffer]), 'KEEPTTL');

    const refused = await pay(running, target);
    expect(refused.status).toBe(500);
    expect(refused.json()).toMatchObject({ type: 'urn:idempotency-sidecar:problem:record-unreadable' });
    expect(await unreadableLine(running)).toMatchObject({ keyId: 'k1', reason: 'corrupt' });
    expect(executions(target)).toBe(1);
    expect(executions(source)).toBe(1);
  });

  test('turning encryption off while sealed records live refuses them instead of replaying ciphertext', async () => {
    const key = freshKey('off');
    const sealed = await sidecar({ IDEMPOTENCY_ENCRYPTION_KEYS: K1 });
    expect((await pay(sealed, key)).status).toBe(201);
    await stop(sealed);

    const plain = await sidecar({});
    const refused = await pay(plain, key);
    expect(refused.status).toBe(500);
    expect(refused.json()).toMatchObject({ type: 'urn:idempotency-sidecar:problem:record-unreadable' });
    expect(String((await unreadableLine(plain))?.['msg'])).toMatch(/no encryption key is configured/);
    expect(executions(key)).toBe(1);
  });
});

/**
 * What encryption at rest costs per request: microseconds to seal (on complete) and to open (on
 * every replay) a stored response, for a typical 300-byte payment answer and a 16 KiB one.
 * In process only, no Redis: the cipher adds no round trip.
 *
 *   npm run bench:build && node .bench/build/bench/cipher-cost.js
 */
import { randomBytes } from 'node:crypto';
import type { StoredResponse } from '../src/engine/record';
import { ResponseCipher } from '../src/store/response-cipher';

const ITERATIONS = 20_000;
const WARMUP = 2_000;
const SCOPE = { tenant: '9f86d081884c7d65', key: 'order-2024-000042' };

function response(bodyBytes: number): StoredResponse {
  return {
    status: 201,
    headers: [
      ['content-type', 'application/json'],
      ['x-payment-id', 'pay_123456'],
      ['set-cookie', 'a=1; Path=/'],
    ],
    body: Buffer.alloc(bodyBytes, 0x61),
  };
}

function microsecondsPer(work: () => void): number {
  for (let i = 0; i < WARMUP; i++) work();
  const started = process.hrtime.bigint();
  for (let i = 0; i < ITERATIONS; i++) work();
  return Number(process.hrtime.bigint() - started) / 1_000 / ITERATIONS;
}

const cipher = new ResponseCipher([{ id: 'k1', key: randomBytes(32) }]);
const rows: string[] = [];
for (const [label, bytes] of [['300 B', 300], ['16 KiB', 16 * 1024]] as const) {
  const plain = response(bytes);
  const sealed = cipher.seal(SCOPE, plain);
  const seal = microsecondsPer(() => cipher.seal(SCOPE, plain));
  const open = microsecondsPer(() => {
    if (!cipher.open(SCOPE, sealed).ok) throw new Error('open failed');
  });
  rows.push(`${label.padEnd(7)}  seal ${seal.toFixed(1).padStart(6)} µs   open ${open.toFixed(1).padStart(6)} µs   stored ${sealed.body.length} B (+${sealed.body.length - bytes})`);
}
process.stdout.write(`AES-256-GCM, ${ITERATIONS} iterations each, node ${process.version}\n${rows.join('\n')}\n`);

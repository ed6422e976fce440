/**
 * `npm run demo`: a payment API that charges on every POST, the sidecar in front of it on the
 * in-process store, and a burst of duplicate and concurrent requests, so the difference shows in
 * a few seconds. `npm run demo -- --serve` keeps both running for your own curl.
 */
import { loadConfig } from '../config/load';
import { startSidecar, type RunningSidecar } from '../main';
import { createLogger } from '../observability/logger';
import { startPaymentApi, type PaymentApi } from './payment-api';

interface Answer {
  readonly status: number;
  readonly replayed: boolean;
  readonly retryAfter: string | null;
  readonly body: Record<string, unknown>;
}

async function post(url: string, body: unknown, key?: string): Promise<Answer> {
  const response = await fetch(`${url}/payments`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer demo-client', ...(key ? { 'idempotency-key': key } : {}) },
    body: JSON.stringify(body),
  });
  return {
    status: response.status,
    replayed: response.headers.get('idempotent-replayed') === 'true',
    retryAfter: response.headers.get('retry-after'),
    body: (await response.json()) as Record<string, unknown>,
  };
}

function describe(answer: Answer): string {
  if (answer.status === 201) {
    return `${answer.status}  ${answer.replayed ? 'replayed' : 'created '}  ${String(answer.body['id'])}${answer.replayed ? '  (Idempotent-Replayed: true)' : ''}`;
  }
  const type = typeof answer.body['type'] === 'string' ? answer.body['type'].split(':').pop() : '';
  return `${answer.status}  ${type}${answer.retryAfter ? `  (Retry-After: ${answer.retryAfter})` : ''}`;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function start(serve: boolean): Promise<{ api: PaymentApi; sidecar: RunningSidecar }> {
  const api = await startPaymentApi();
  const env = {
    IDEMPOTENCY_UPSTREAM: api.url,
    IDEMPOTENCY_HOST: '127.0.0.1',
    // The burst binds free ports (0) and talks to the ones the sidecar reports.
    IDEMPOTENCY_PORT: serve ? '8080' : '0',
    IDEMPOTENCY_ADMIN_PORT: serve ? '9090' : '0',
    IDEMPOTENCY_ADMIN_TOKEN: 'demo-admin-token-0123456789',
  };
  const config = loadConfig({ argv: [], env });
  const sidecar = await startSidecar(config, createLogger(serve ? 'info' : 'error'));
  return { api, sidecar };
}

async function runBurst(): Promise<void> {
  const { api, sidecar } = await start(false);
  const out = (line = ''): void => void process.stdout.write(`${line}\n`);
  try {
    out('idempotency-sidecar demo');
    out(`  payment API  ${api.url}  (charges again on every POST /payments)`);
    out(`  sidecar      ${sidecar.proxyUrl}  (in front of it, in-process store)`);
    out();

    const burst = 5;
    const payment = { amount: 4200, currency: 'EUR' };
    out(`1. Straight to the API: a client's ${burst} concurrent retries of one payment`);
    const direct = await Promise.all(Array.from({ length: burst }, () => post(api.url, payment)));
    direct.forEach((answer, i) => out(`   #${i + 1}  ${describe(answer)}`));
    const directCharges = api.payments.length;
    out(`   -> the API charged ${directCharges} times`);
    out();

    out(`2. Through the sidecar: the same ${burst} with Idempotency-Key: order-42, then 3 retries once it is done`);
    const before = api.payments.length;
    const concurrent = await Promise.all(Array.from({ length: burst }, () => post(sidecar.proxyUrl, payment, 'order-42')));
    concurrent.forEach((answer, i) => out(`   #${i + 1}  ${describe(answer)}`));
    await sleep(50);
    for (let i = 0; i < 3; i++) out(`   #${burst + i + 1}  ${describe(await post(sidecar.proxyUrl, payment, 'order-42'))}`);
    const sidecarCharges = api.payments.length - before;
    out(`   -> the API charged ${sidecarCharges} time${sidecarCharges === 1 ? '' : 's'}; every retry got the same payment back`);
    out();

    out('3. A client bug reuses the key for another amount');
    out(`   ${describe(await post(sidecar.proxyUrl, { amount: 9900, currency: 'EUR' }, 'order-42'))}`);
    out(`   -> refused before it reached the API (payments so far: ${api.payments.length - before})`);
    out();
    out(`Payments made: ${directCharges} without the sidecar, ${sidecarCharges} with it.`);
    if (sidecarCharges !== 1) process.exitCode = 1;
  } finally {
    await sidecar.close();
    await api.close();
  }
}

async function serve(): Promise<void> {
  const { api, sidecar } = await start(true);
  process.stdout.write(
    [
      `payment API  ${api.url}`,
      `sidecar      ${sidecar.proxyUrl}   admin ${sidecar.adminUrl}`,
      '',
      'Try it (send it twice):',
      `  curl -i -X POST ${sidecar.proxyUrl}/payments -H 'Authorization: Bearer demo-client' -H 'Idempotency-Key: order-1' -H 'Content-Type: application/json' -d '{"amount":1000}'`,
      `  curl -s ${sidecar.adminUrl}/keys/order-1 -H 'Authorization: Bearer demo-admin-token-0123456789'`,
      '',
    ].join('\n'),
  );
  const stop = (): void => {
    void sidecar.close().then(() => api.close()).then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

const main = process.argv.includes('--serve') ? serve : runBurst;
main().catch((error: unknown) => {
  process.stderr.write(`demo failed: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
  process.exit(1);
});

import { startPaymentUpstream } from '../helpers/payment-upstream';
import { startSidecar } from '../helpers/sidecar-process';
import { rawExchange } from '../helpers/raw-http';

test('dump', async () => {
  const upstream = await startPaymentUpstream();
  const sidecar = await startSidecar({
    upstream: upstream.url,
    configYaml: 'routes:\n  - path: /v/open/*\n    guard: false\n  - path: /v/order/*\n    key: { from: body, pointer: /order_id }\n',
    env: { IDEMPOTENCY_CLIENT_HEADER_TIMEOUT: '500ms', IDEMPOTENCY_CLIENT_REQUEST_TIMEOUT: '1s', IDEMPOTENCY_MAX_HEADER_SIZE: '4096', IDEMPOTENCY_LOG_LEVEL: 'warn' },
  });
  try {
    const json = '{"order_id":"fz161zo","amount":161}';
    const post = `POST /v/open/payments/fz161z HTTP/1.1\r\nExpect: 100-continue\r\nHost: sidecar\r\nX-Fuzz-Case: fz161z\r\nContent-Length: ${json.length}\r\n\r\n${json}`;
    const get = 'GET /v/open/payments/fz86z?q=1 HTTP/1.1\r\nExpect: 100-continue\r\nHost: sidecar\r\n\r\nGET /v/open/payments/fz86z?q=1 HTTP/1.1\r\nHost: sidecar\r\nX-Fuzz-Case: fz86z\r\n\r\n';
    const guarded = `POST /payments/g1 HTTP/1.1\r\nExpect: 100-continue\r\nHost: sidecar\r\nIdempotency-Key: g1k${Date.now()}\r\nContent-Type: application/json\r\nContent-Length: ${json.length}\r\n\r\n${json}`;
    for (const text of [get, post + post, guarded + guarded]) {
      const ex = await rawExchange(sidecar.url, [text], { boundMs: 3000 });
      console.log(JSON.stringify(ex.data.toString('latin1')), ex.closed, ex.responses.map((r) => r.status));
    }
    const ex2 = await rawExchange(sidecar.url, [get], { boundMs: 3000, settle: { responses: 1, quietMs: 300 } });
    console.log('settle', JSON.stringify(ex2.data.toString('latin1')), ex2.closed);
    console.log(upstream.executions.map((e) => `${e.method} ${e.url} ${JSON.stringify(e.headers)}`).join('\n'));
  } finally {
    await sidecar.stop();
    await upstream.stop();
  }
}, 60000);

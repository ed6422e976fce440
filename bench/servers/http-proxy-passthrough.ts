/**
 * The plain pass-through on http-proxy: no idempotency, the same proxy and agent settings as the
 * sidecar's pass-through path (src/proxy/passthrough.ts). Its own process; port over IPC.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import httpProxy from 'http-proxy';

const upstream = process.env['BENCH_UPSTREAM'] ?? '';
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
const proxy = httpProxy.createProxyServer({ target: upstream, agent, xfwd: false });
proxy.on('error', (_error, _req, res) => {
  if (res instanceof http.ServerResponse && !res.headersSent) res.writeHead(502);
  res.end();
});
const server = http.createServer((req, res) => proxy.web(req, res));

server.listen(0, '127.0.0.1', () => process.send?.({ type: 'ready', port: (server.address() as AddressInfo).port }));
process.on('disconnect', () => process.exit(0));

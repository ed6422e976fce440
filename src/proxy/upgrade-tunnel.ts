/**
 * Upgrades (WebSocket, h2c, anything with `Connection: Upgrade`) pass through as a raw byte
 * tunnel: the request head is re-sent as received and both directions are piped untouched, so the
 * upstream decides whether to switch protocols. http-proxy's `ws()` would do this for WebSocket
 * only and close every other upgrade, which the contract does not allow.
 */
import type http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';

export function tunnelUpgrade(origin: URL, req: http.IncomingMessage, client: Duplex, head: Buffer): void {
  const port = Number(origin.port) || (origin.protocol === 'https:' ? 443 : 80);
  const host = origin.hostname.replace(/^\[|\]$/g, '');
  const upstream =
    origin.protocol === 'https:' ? tls.connect({ host, port, servername: host }) : net.connect({ host, port });
  const onConnected = (): void => {
    const lines = [`${req.method ?? 'GET'} ${req.url ?? '/'} HTTP/${req.httpVersion}`];
    for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
    upstream.write(`${lines.join('\r\n')}\r\n\r\n`);
    if (head.length > 0) upstream.write(head);
    upstream.pipe(client);
    client.pipe(upstream);
  };
  upstream.once(origin.protocol === 'https:' ? 'secureConnect' : 'connect', onConnected);
  const close = (): void => {
    upstream.destroy();
    client.destroy();
  };
  upstream.on('error', () => {
    // Nothing was switched yet: tell the client plainly rather than hang up without a word.
    if (client.writable && upstream.bytesRead === 0) {
      client.end('HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    }
    close();
  });
  client.on('error', close);
  upstream.on('close', () => client.destroy());
  client.on('close', () => upstream.destroy());
}

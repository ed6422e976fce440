/**
 * Upgrades (WebSocket, h2c, anything with `Connection: Upgrade`) on requests that are not guarded
 * and carry no body. The request goes upstream as it came; the connection becomes a raw tunnel
 * only once the upstream answers `101 Switching Protocols`. Any other answer is relayed as a plain
 * HTTP response and the client's connection is then closed: bytes the client sent after the
 * upgrade request are never forwarded unless the protocol switched, so a declined upgrade cannot
 * carry later requests past the guard. (http-proxy's `ws()` handles WebSocket only and closes every
 * other upgrade, which the contract does not allow.)
 *
 * Which requests may become tunnels is decided by the listener (proxy-server.ts); guarded ones are
 * handled as ordinary requests with the offer dropped.
 */
import http from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';

/** Response headers of a declined upgrade that describe the upstream's connection, not the answer. */
const CONNECTION_HEADERS = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade']);

export function tunnelUpgrade(origin: URL, req: http.IncomingMessage, client: Duplex, head: Buffer): void {
  // Hold whatever the client sends after the request until the upstream has switched protocols.
  client.pause();
  const host = origin.hostname.replace(/^\[|\]$/g, '');
  const options: https.RequestOptions = {
    host,
    port: Number(origin.port) || (origin.protocol === 'https:' ? 443 : 80),
    method: req.method ?? 'GET',
    path: req.url ?? '/',
    headers: req.rawHeaders,
    setHost: false,
    agent: false,
    ...(origin.protocol === 'https:' ? { servername: host } : {}),
  };
  const upstream = origin.protocol === 'https:' ? https.request(options) : http.request(options);
  // The connection to the upstream is this exchange's alone: it ends with the client's. (Once a
  // response has come, destroying the request no longer reaches its socket.)
  let connection: Duplex | undefined;
  upstream.once('socket', (socket: Duplex) => {
    connection = socket;
  });
  const closeUpstream = (): void => {
    upstream.destroy();
    connection?.destroy();
  };
  let answered = false;

  upstream.on('upgrade', (response: http.IncomingMessage, socket: Duplex, upstreamHead: Buffer) => {
    answered = true;
    client.write(responseHead(response, response.rawHeaders));
    if (upstreamHead.length > 0) client.write(upstreamHead);
    if (head.length > 0) socket.write(head);
    socket.on('error', () => client.destroy());
    socket.on('close', () => client.destroy());
    client.on('close', () => socket.destroy());
    socket.pipe(client);
    client.pipe(socket);
  });

  upstream.on('response', (response: http.IncomingMessage) => {
    // Declined: the exchange ends as plain HTTP, delimited by closing the connection.
    answered = true;
    const headers: string[] = [];
    for (let i = 0; i < response.rawHeaders.length; i += 2) {
      if (!CONNECTION_HEADERS.has((response.rawHeaders[i] as string).toLowerCase())) {
        headers.push(response.rawHeaders[i] as string, response.rawHeaders[i + 1] as string);
      }
    }
    headers.push('Connection', 'close');
    client.write(responseHead(response, headers));
    // The client's later bytes stay unread; once the answer is out the connection is dropped.
    response.pipe(client, { end: false });
    response.on('end', () => client.end(() => client.destroy()));
    response.on('error', () => client.destroy());
  });

  upstream.on('error', () => {
    // Nothing came back: tell the client plainly rather than hang up without a word.
    if (!answered && client.writable) {
      client.end('HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    }
    client.destroy();
  });
  client.on('error', closeUpstream);
  client.on('close', closeUpstream);
  upstream.end();
}

function responseHead(response: http.IncomingMessage, rawHeaders: readonly string[]): string {
  const lines = [`HTTP/1.1 ${response.statusCode ?? 502} ${response.statusMessage ?? ''}`];
  for (let i = 0; i < rawHeaders.length; i += 2) lines.push(`${rawHeaders[i]}: ${rawHeaders[i + 1]}`);
  return `${lines.join('\r\n')}\r\n\r\n`;
}

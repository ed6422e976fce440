import net from 'node:net';

/**
 * A loopback port nothing listens on right now: for a client that must find nothing there
 * (connection refused). Not for a listener to bind later: the port may be taken meanwhile (by an
 * outgoing connection, another jest worker). Processes the tests start bind port 0 and report the
 * port they got (listening-line.ts); Redis servers get theirs from redis-server.ts.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

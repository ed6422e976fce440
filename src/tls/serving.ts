/**
 * How an HTTPS listener (the webhook's, the proxy's) serves a key pair: the options it starts
 * with, and the re-read that swaps a rotated pair in for new connections without a restart.
 * Connections already open keep the context they were made with.
 */
import type https from 'node:https';
import type tls from 'node:tls';
import { describeCertificate, type KeyPair, KeyPairReloader, type KeyPairPaths } from './key-pair';

/**
 * The two calls the reloader makes, in pino's shape (fields first, then the message): any logger
 * of that shape fits, so tls/ does not depend on observability/.
 */
export interface ReloadLog {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}

/** What a context needs; TLS 1.0 and 1.1 are refused (RFC 8996). */
function secureContextOptions(pair: KeyPair): tls.SecureContextOptions {
  return { cert: pair.cert, key: pair.key, minVersion: 'TLSv1.2', ...(pair.ca === undefined ? {} : { ca: pair.ca }) };
}

/**
 * Options of https.createServer. With a CA bundle, a client certificate is required and verified
 * against that bundle alone (`ca` replaces the system roots), and a client that fails is refused
 * at the handshake: it never reaches a request handler.
 */
export function serverTlsOptions(pair: KeyPair): https.ServerOptions {
  return {
    ...secureContextOptions(pair),
    ...(pair.ca === undefined ? {} : { requestCert: true, rejectUnauthorized: true }),
  };
}

/**
 * Re-reads the files every `intervalMs` and serves a new valid set to new connections; a set that
 * does not load is logged and refused, and the one in use keeps serving. `stop()` the result.
 */
export function reloadServerTls(
  server: tls.Server,
  paths: KeyPairPaths,
  initial: KeyPair,
  logger: ReloadLog,
  intervalMs: number,
): KeyPairReloader {
  const reloader = new KeyPairReloader(paths, initial, {
    onChange: (pair) => {
      // requestCert and rejectUnauthorized are the server's own options: they stay as they were.
      server.setSecureContext(secureContextOptions(pair));
      logger.info({ certificate: describeCertificate(pair.cert) }, 'serving a new TLS certificate');
    },
    onRejected: (problems) => {
      logger.warn({ problems: problems.map((p) => `${p.file}: ${p.message}`) }, 'new TLS certificate or key refused; still serving the previous pair');
    },
  });
  reloader.start(intervalMs);
  return reloader;
}

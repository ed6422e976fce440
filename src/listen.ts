/**
 * Binding a listener, for the proxy, admin and webhook listeners alike. Port 0 asks the system
 * for a free port: the address resolved, and the "listening" log line, name the one bound, so
 * tests and tools read it there instead of picking a port and hoping it stays free.
 */
import type { AddressInfo } from 'node:net';
import type net from 'node:net';
import { ConfigError } from './errors';
import type { Logger } from './observability/logger';

/** A listener that cannot bind is a configuration problem: name the setting, like validation does. */
export function listen(server: net.Server, port: number, host: string, setting: string): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      const why = error.code === 'EADDRINUSE' ? 'is already in use; pick a free port' : error.code === 'EACCES' ? 'needs privileges; pick a port above 1023' : error.message;
      reject(new ConfigError([`${setting}: cannot listen on ${host}:${port}: the address ${why}`]));
    });
    server.listen(port, host, () => {
      server.removeAllListeners('error');
      resolve(server.address() as AddressInfo);
    });
  });
}

/** `scheme://address:port` of a bound listener (IPv6 addresses in brackets). */
export function urlOf(address: AddressInfo, scheme: 'http' | 'https' = 'http'): string {
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return `${scheme}://${host}:${address.port}`;
}

/**
 * Logs the "listening" line at info even when the log level is set above info (never when it is
 * silent): with port 0 this line is the only place that tells which ports were bound.
 */
export function logListening(logger: Logger, fields: Record<string, unknown>, message: string): void {
  const announcer = logger.isLevelEnabled('info') || logger.level === 'silent' ? logger : logger.child({}, { level: 'info' });
  announcer.info(fields, message);
}

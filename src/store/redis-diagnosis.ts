/**
 * Turns a Redis connection error into what an operator needs: which setting to look at and how
 * to fix it. Only failures that are configuration (TLS, the ACL user, its password, its rights)
 * are diagnosed: those never heal by retrying, and without a clear line they look like an outage.
 * A refused or dropped connection is an outage; readiness and the 503s already report it.
 *
 * ioredis reconnects forever, so the same failure comes back every couple of seconds:
 * RedisErrorLog says it once, and again only when it changes or after the connection recovered.
 */
import type { RedisClient } from './redis-connection';

export type DiagnosisKind = 'tls' | 'auth' | 'permission';

export interface Diagnosis {
  readonly kind: DiagnosisKind;
  /** The settings to look at, as their variables. */
  readonly settings: readonly string[];
  /** One sentence: what failed and the fix. Never echoes a URL (it may hold a password). */
  readonly message: string;
}

/** Where one connection's address, credentials and TLS files come from. */
export interface ConnectionSettings {
  /** What the connection is for, in words: `record store`, `lock server 2`. */
  readonly role: string;
  /** The setting with its address, e.g. IDEMPOTENCY_REDIS_URL. */
  readonly address: string;
  /** The settings with its user and password: the URL's setting, or the node settings. */
  readonly credentials: readonly string[];
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
}

/** Node's codes for a server certificate that does not chain to a trusted CA. */
const UNTRUSTED_SERVER = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'INVALID_CA',
]);

const EXPIRED_SERVER = new Set(['CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID']);

/** TLS alerts the server sends when it refuses the client certificate (or its absence). */
const CLIENT_REFUSED = /ALERT_(CERTIFICATE_REQUIRED|BAD_CERTIFICATE|UNKNOWN_CA|CERTIFICATE_EXPIRED|CERTIFICATE_UNKNOWN|CERTIFICATE_REVOKED|UNSUPPORTED_CERTIFICATE|ACCESS_DENIED|DECRYPT_ERROR)$/;

function codeOf(error: Error): string | undefined {
  const code: unknown = Reflect.get(error, 'code');
  return typeof code === 'string' ? code : undefined;
}

/**
 * A Cluster reports "Failed to refresh slots cache" and keeps the node's own error as
 * `lastNodeError`; a wrapped error keeps it as `cause`.
 */
function rootCause(error: Error): Error {
  let current = error;
  for (let depth = 0; depth < 5; depth += 1) {
    const inner: unknown = Reflect.get(current, 'lastNodeError') ?? current.cause;
    // Duck-typed: errors made in another realm (a VM context) are not instances of this Error.
    if (typeof inner !== 'object' || inner === null || typeof Reflect.get(inner, 'message') !== 'string') break;
    current = inner as Error;
  }
  return current;
}

function firstLine(text: string): string {
  return (text.split('\n')[0] ?? '').trim();
}

/** The diagnosis of a connection error, or undefined when it is not a configuration failure. */
export function diagnoseRedisError(error: Error, settings: ConnectionSettings): Diagnosis | undefined {
  const cause = rootCause(error);
  const code = codeOf(cause);
  const text = firstLine(cause.message);
  const to = `Redis (${settings.role})`;
  if (code !== undefined && UNTRUSTED_SERVER.has(code)) {
    return {
      kind: 'tls',
      settings: [settings.caFile],
      message:
        `TLS: the certificate of ${to} is not signed by a trusted CA (${code}): ` +
        `set ${settings.caFile} to the PEM certificate of the CA that signed the Redis server's certificate`,
    };
  }
  if (code !== undefined && EXPIRED_SERVER.has(code)) {
    return {
      kind: 'tls',
      settings: [settings.caFile],
      message: `TLS: the certificate of ${to} is not valid now (${code}): renew the Redis server's certificate (it is checked against ${settings.caFile})`,
    };
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return {
      kind: 'tls',
      settings: [settings.address],
      message: `TLS: the certificate of ${to} does not name the host in ${settings.address} (${text}): use a host name the certificate names`,
    };
  }
  if (code !== undefined && CLIENT_REFUSED.test(code)) {
    return {
      kind: 'tls',
      settings: [settings.certFile, settings.keyFile],
      message:
        `TLS: ${to} refused the client certificate (${code.replace(/^ERR_SSL_/, '')}): set ${settings.certFile} and ${settings.keyFile} ` +
        'to a certificate signed by a CA the server trusts (its tls-ca-cert-file), valid now, and its key',
    };
  }
  if (code === 'ERR_SSL_WRONG_VERSION_NUMBER' || code === 'ERR_SSL_PACKET_LENGTH_TOO_LONG') {
    return {
      kind: 'tls',
      settings: [settings.address],
      message: `TLS: ${to} does not speak TLS on that port (${code}): point ${settings.address} at the server's tls-port, or use redis:// for a plain port`,
    };
  }
  if (code !== undefined && /^ERR_(SSL|TLS)_/.test(code)) {
    return {
      kind: 'tls',
      settings: [settings.caFile, settings.certFile, settings.keyFile],
      message: `TLS: the handshake with ${to} failed (${code}: ${text}): check ${settings.caFile}, ${settings.certFile} and ${settings.keyFile} against the server's TLS settings`,
    };
  }
  const credentials = settings.credentials.join(' and ');
  if (text.startsWith('WRONGPASS')) {
    return {
      kind: 'auth',
      settings: settings.credentials,
      message: `ACL: ${to} refused the user or password (WRONGPASS: no such user, a wrong password, or the user is off): fix the user and password in ${credentials}`,
    };
  }
  if (text.startsWith('NOAUTH')) {
    return {
      kind: 'auth',
      settings: settings.credentials,
      message: `ACL: ${to} requires a user and password (NOAUTH): give them in ${credentials}`,
    };
  }
  if (text.startsWith('NOPERM')) {
    return {
      kind: 'permission',
      settings: settings.credentials,
      message:
        `ACL: the user in ${credentials} lacks a permission on ${to} (${text}): ` +
        'give it the rule in config/example.yaml (Redis ACL users)',
    };
  }
  return undefined;
}

/** What RedisErrorLog writes to: the logger's error and info, object first. */
export interface DiagnosisLogger {
  error(fields: Record<string, unknown>, message: string): void;
  info(fields: Record<string, unknown>, message: string): void;
}

/**
 * One line per configuration failure of one connection (the subscriber's errors reach the same
 * client's listeners): logged when it first shows, not again while it repeats (nor when it
 * alternates with another, as a Cluster's seed and node connections do), and once more after
 * the connection was ready in between. A recovery after a logged failure is logged too, so an
 * operator sees the fix took.
 */
export class RedisErrorLog {
  /** What was said since the connection was last ready. */
  private readonly said = new Set<string>();

  constructor(
    private readonly logger: DiagnosisLogger,
    private readonly settings: ConnectionSettings,
  ) {}

  /** Listens to `client`'s ready events; errors come through `error()` (the connection's onError). */
  attach(client: RedisClient): void {
    client.on('ready', this.ready);
  }

  readonly error = (error: Error): void => {
    const diagnosis = diagnoseRedisError(error, this.settings);
    if (diagnosis === undefined || this.said.has(diagnosis.message)) return;
    this.said.add(diagnosis.message);
    this.logger.error(
      { connection: this.settings.role, problem: diagnosis.kind, settings: diagnosis.settings },
      diagnosis.message,
    );
  };

  readonly ready = (): void => {
    if (this.said.size === 0) return;
    this.said.clear();
    this.logger.info({ connection: this.settings.role }, `Redis (${this.settings.role}) connected again`);
  };
}

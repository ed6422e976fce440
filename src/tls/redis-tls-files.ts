/**
 * The TLS options of every connection to Redis (the store, its subscriber and the lock quorum),
 * from the configured PEM files. The files are read and checked once, with the rest of the
 * configuration: a file that is not what its setting says is a problem naming the setting
 * (exit 2), instead of surfacing later as a handshake failure that looks like an outage.
 *
 * Which connections use TLS is not decided here: a URL asks for it with rediss://, Cluster and
 * Sentinel-managed nodes with IDEMPOTENCY_REDIS_TLS (see redis-connection.ts).
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';

/** The configured files; the names are the settings'. */
export interface RedisTlsFiles {
  readonly redisTlsCaFile?: string | undefined;
  readonly redisTlsCertFile?: string | undefined;
  readonly redisTlsKeyFile?: string | undefined;
}

/**
 * What a TLS connection to Redis is given. Without a CA, Node's built-in CAs verify the server;
 * without a certificate, none is presented (a server with `tls-auth-clients yes` refuses that).
 */
export type RedisTlsOptions = Readonly<Pick<ConnectionOptions, 'ca' | 'cert' | 'key'>>;

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** An errno code (ENOENT, EACCES) says it all; otherwise the error's message. */
function messageOf(error: unknown): string {
  const code: unknown = typeof error === 'object' && error !== null ? Reflect.get(error, 'code') : undefined;
  if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return code;
  const message: unknown = typeof error === 'object' && error !== null ? Reflect.get(error, 'message') : undefined;
  return typeof message === 'string' ? message : String(error);
}

/** A problem with one of the files, by the setting that names it. */
export interface RedisTlsProblem {
  readonly setting: keyof RedisTlsFiles;
  /** The other file a problem is about (a key that is not the certificate's). */
  readonly also?: readonly (keyof RedisTlsFiles)[];
  readonly message: string;
}

/** The certificates of a PEM bundle, each parsed; a problem when there is none or one is broken. */
function readCertificates(file: string, setting: keyof RedisTlsFiles, what: string, problems: RedisTlsProblem[]): Buffer | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    problems.push({ setting, message: `${JSON.stringify(file)} cannot be read (${messageOf(error)}); mount the file there, or fix the path` });
    return undefined;
  }
  const blocks = text.match(PEM_CERTIFICATE) ?? [];
  if (blocks.length === 0) {
    problems.push({ setting, message: `${JSON.stringify(file)} holds no PEM certificate (-----BEGIN CERTIFICATE-----); give ${what} in PEM` });
    return undefined;
  }
  for (const block of blocks) {
    try {
      new X509Certificate(block);
    } catch (error) {
      problems.push({ setting, message: `${JSON.stringify(file)} holds a certificate that cannot be parsed (${messageOf(error)}); give ${what} in PEM` });
      return undefined;
    }
  }
  return Buffer.from(text);
}

function readPrivateKey(file: string, problems: RedisTlsProblem[]): Buffer | undefined {
  const setting = 'redisTlsKeyFile';
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (error) {
    problems.push({ setting, message: `${JSON.stringify(file)} cannot be read (${messageOf(error)}); mount the file there, or fix the path` });
    return undefined;
  }
  try {
    createPrivateKey(bytes);
  } catch (error) {
    problems.push({
      setting,
      message: `${JSON.stringify(file)} is not an unencrypted PEM private key (${messageOf(error)}); give the client certificate's key in PEM, without a passphrase`,
    });
    return undefined;
  }
  return bytes;
}

/**
 * Reads and checks the files: the options, or every problem. The configuration's cross-checks
 * already refuse a certificate without its key and the reverse.
 */
export function readRedisTls(files: RedisTlsFiles): { readonly options: RedisTlsOptions } | { readonly problems: readonly RedisTlsProblem[] } {
  const problems: RedisTlsProblem[] = [];
  const ca =
    files.redisTlsCaFile === undefined
      ? undefined
      : readCertificates(files.redisTlsCaFile, 'redisTlsCaFile', "the certificate of the CA that signed the Redis servers' certificates", problems);
  const cert =
    files.redisTlsCertFile === undefined
      ? undefined
      : readCertificates(files.redisTlsCertFile, 'redisTlsCertFile', 'the client certificate presented to Redis', problems);
  const key = files.redisTlsKeyFile === undefined ? undefined : readPrivateKey(files.redisTlsKeyFile, problems);
  if (cert !== undefined && key !== undefined) {
    // The first certificate is the client's own (a bundle may follow it with intermediates).
    const own = new X509Certificate((cert.toString('utf8').match(PEM_CERTIFICATE) ?? [''])[0]);
    if (!own.checkPrivateKey(createPrivateKey(key))) {
      problems.push({
        setting: 'redisTlsKeyFile',
        also: ['redisTlsCertFile'],
        message: `${JSON.stringify(files.redisTlsKeyFile)} is not the key of that certificate; give the matching pair`,
      });
    }
  }
  if (problems.length > 0) return { problems };
  return {
    options: {
      ...(ca === undefined ? {} : { ca }),
      ...(cert === undefined ? {} : { cert }),
      ...(key === undefined ? {} : { key }),
    },
  };
}

/** True when the files configure anything: a TLS connection then differs from Node's defaults. */
export function hasRedisTlsFiles(files: RedisTlsFiles): boolean {
  return files.redisTlsCaFile !== undefined || files.redisTlsCertFile !== undefined || files.redisTlsKeyFile !== undefined;
}

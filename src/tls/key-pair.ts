/**
 * A TLS listener's serving certificate and key (the webhook's, and the proxy listener's when it
 * speaks HTTPS), with the CA bundle that verifies client certificates when there is one: read,
 * checked as a set, and re-read on an interval, because cert-manager (and a chart's own Secret on
 * upgrade) rotate them in place. Kubelet swaps
 * the files of a mounted Secret through a symlink, which file watchers miss, so a plain re-read by
 * path is the reliable way to see a change. A new pair that does not load (a half-written file, a
 * key that belongs to another certificate) is refused and the old one keeps serving; the next
 * read tries again.
 */
import { createHash, createPrivateKey, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import tls from 'node:tls';

export interface KeyPair {
  readonly cert: Buffer;
  readonly key: Buffer;
  /** PEM bundle of the CAs client certificates are verified against; only with `caPath`. */
  readonly ca?: Buffer;
}

export interface KeyPairPaths {
  readonly certPath: string;
  readonly keyPath: string;
  /** Read, checked and re-read with the pair: cert-manager rotates ca.crt in the same Secret. */
  readonly caPath?: string;
}

/** Why a pair is unusable, attributed to the file to fix (`both` when the pair does not match). */
export interface KeyPairProblem {
  readonly file: 'cert' | 'key' | 'both' | 'ca';
  readonly message: string;
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g;

/**
 * Problems of a CA bundle. OpenSSL skips what it cannot parse in a `ca` option without a word, so
 * a bundle of garbage would refuse every client with no hint why: each block is parsed here.
 */
export function checkCaBundle(ca: Buffer): KeyPairProblem[] {
  const blocks = ca.toString('latin1').match(PEM_CERTIFICATE) ?? [];
  if (blocks.length === 0) return [{ file: 'ca', message: 'holds no PEM certificate (-----BEGIN CERTIFICATE-----)' }];
  const problems: KeyPairProblem[] = [];
  blocks.forEach((block, i) => {
    try {
      new X509Certificate(block);
    } catch (error) {
      problems.push({ file: 'ca', message: `certificate ${i + 1} of ${blocks.length} does not parse (${messageOf(error)})` });
    }
  });
  return problems;
}

function messageOf(error: unknown): string {
  const message: unknown = typeof error === 'object' && error !== null ? Reflect.get(error, 'message') : undefined;
  return typeof message === 'string' ? message : String(error);
}

/** Checks a pair (and its CA bundle) as TLS will use it; returns the problems, empty when it serves. */
export function checkKeyPair(pair: KeyPair): KeyPairProblem[] {
  const problems: KeyPairProblem[] = pair.ca === undefined ? [] : checkCaBundle(pair.ca);
  let certificate: X509Certificate | undefined;
  try {
    certificate = new X509Certificate(pair.cert);
  } catch (error) {
    problems.push({ file: 'cert', message: `is not a PEM certificate (${messageOf(error)})` });
  }
  let keyOk = false;
  try {
    const key = createPrivateKey(pair.key);
    keyOk = true;
    if (certificate !== undefined && !certificate.checkPrivateKey(key)) {
      problems.push({ file: 'both', message: 'the key does not belong to the certificate' });
    }
  } catch (error) {
    problems.push({ file: 'key', message: `is not a PEM private key (${messageOf(error)})` });
  }
  if (problems.length === 0 && keyOk) {
    try {
      tls.createSecureContext({ cert: pair.cert, key: pair.key, ...(pair.ca === undefined ? {} : { ca: pair.ca }) });
    } catch (error) {
      problems.push({ file: 'both', message: `cannot serve TLS: ${messageOf(error)}` });
    }
  }
  return problems;
}

function samePair(a: KeyPair, b: KeyPair): boolean {
  const sameCa = a.ca === undefined || b.ca === undefined ? a.ca === b.ca : a.ca.equals(b.ca);
  return a.cert.equals(b.cert) && a.key.equals(b.key) && sameCa;
}

/** Reads both files (and the CA bundle) now (start-up); problems name the file that could not be read or used. */
export function readKeyPairSync(paths: KeyPairPaths): { readonly pair: KeyPair } | { readonly problems: KeyPairProblem[] } {
  const problems: KeyPairProblem[] = [];
  const read = (path: string, file: 'cert' | 'key' | 'ca'): Buffer | undefined => {
    try {
      return readFileSync(path);
    } catch (error) {
      problems.push({ file, message: `cannot be read (${messageOf(error)})` });
      return undefined;
    }
  };
  const cert = read(paths.certPath, 'cert');
  const key = read(paths.keyPath, 'key');
  const ca = paths.caPath === undefined ? undefined : read(paths.caPath, 'ca');
  if (cert === undefined || key === undefined || (paths.caPath !== undefined && ca === undefined)) return { problems };
  const pair = { cert, key, ...(ca === undefined ? {} : { ca }) };
  const invalid = checkKeyPair(pair);
  return invalid.length > 0 ? { problems: invalid } : { pair };
}

/** What logs say about a certificate: never the key. */
export function describeCertificate(cert: Buffer): { subject: string; validTo: string; sha256: string } {
  const x509 = new X509Certificate(cert);
  return { subject: x509.subject.replace(/\n/g, ', '), validTo: new Date(x509.validTo).toISOString(), sha256: x509.fingerprint256 };
}

export interface KeyPairEvents {
  /** A new valid pair: serve it to new connections. */
  readonly onChange: (pair: KeyPair) => void;
  /** A changed pair that cannot serve, or files that cannot be read; reported once per content. */
  readonly onRejected: (problems: readonly KeyPairProblem[]) => void;
}

/**
 * Re-reads the pair every `intervalMs` and reports changes. Holds no handle that keeps the
 * process alive; `stop()` ends it.
 */
export class KeyPairReloader {
  private current: KeyPair;
  private lastRejected: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private polling: Promise<void> | undefined;

  constructor(
    private readonly paths: KeyPairPaths,
    initial: KeyPair,
    private readonly events: KeyPairEvents,
  ) {
    this.current = initial;
  }

  start(intervalMs: number): void {
    this.timer = setInterval(() => void this.poll(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One check now; concurrent calls share the one in progress. */
  poll(): Promise<void> {
    this.polling ??= this.check().finally(() => {
      this.polling = undefined;
    });
    return this.polling;
  }

  private async check(): Promise<void> {
    let pair: KeyPair;
    try {
      const caPath = this.paths.caPath;
      const [cert, key, ca] = await Promise.all([
        readFile(this.paths.certPath),
        readFile(this.paths.keyPath),
        caPath === undefined ? undefined : readFile(caPath),
      ]);
      pair = { cert, key, ...(ca === undefined ? {} : { ca }) };
    } catch (error) {
      this.reject(`unreadable:${messageOf(error)}`, [{ file: 'both', message: `cannot be read (${messageOf(error)}); keeping the pair in use` }]);
      return;
    }
    if (samePair(pair, this.current)) {
      this.lastRejected = undefined;
      return;
    }
    const digest = createHash('sha256')
      .update(pair.cert)
      .update('\0')
      .update(pair.key)
      .update('\0')
      .update(pair.ca ?? '')
      .digest('hex');
    const problems = checkKeyPair(pair);
    if (problems.length > 0) {
      this.reject(digest, problems);
      return;
    }
    this.current = pair;
    this.lastRejected = undefined;
    this.events.onChange(pair);
  }

  private reject(fingerprint: string, problems: readonly KeyPairProblem[]): void {
    if (this.lastRejected === fingerprint) return;
    this.lastRejected = fingerprint;
    this.events.onRejected(problems);
  }
}

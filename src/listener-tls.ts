/**
 * The proxy listener's TLS files (IDEMPOTENCY_TLS_CERT_FILE, _KEY_FILE, _CLIENT_CA_FILE), read at
 * start-up. Part of the composition root (main.ts).
 */
import { envName } from './config/schema';
import type { Config } from './config/settings';
import { ConfigError } from './errors';
import { type KeyPair, type KeyPairPaths, type KeyPairProblem, readKeyPairSync } from './tls/key-pair';

export interface ListenerTls {
  readonly paths: KeyPairPaths;
  readonly pair: KeyPair;
}

/**
 * The proxy listener's TLS files, read and checked as TLS will use them: a file that is readable
 * but not a usable certificate, key or CA bundle stops the start with the setting to fix.
 */
export function readListenerTls(config: Config): ListenerTls | undefined {
  if (config.tlsCertFile === undefined || config.tlsKeyFile === undefined) return undefined;
  const paths: KeyPairPaths = {
    certPath: config.tlsCertFile,
    keyPath: config.tlsKeyFile,
    ...(config.tlsClientCaFile === undefined ? {} : { caPath: config.tlsClientCaFile }),
  };
  const read = readKeyPairSync(paths);
  if ('problems' in read) {
    const settingOf = (problem: KeyPairProblem): string =>
      problem.file === 'key'
        ? `${envName('tlsKeyFile')} (${paths.keyPath})`
        : problem.file === 'ca'
          ? `${envName('tlsClientCaFile')} (${paths.caPath ?? ''})`
          : problem.file === 'cert'
            ? `${envName('tlsCertFile')} (${paths.certPath})`
            : `${envName('tlsCertFile')} and ${envName('tlsKeyFile')}`;
    throw new ConfigError(read.problems.map((p) => `${settingOf(p)}: ${p.message}`));
  }
  return { paths, pair: read.pair };
}

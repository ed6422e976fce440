/**
 * The sidecar's configuration as one pass: the rows the proxy reads (table.ts) checked one by one
 * (reader.ts), then against each other, then the files they name read and parsed (the listener's
 * certificate, key and client CA, the Redis TLS files, the encryption key file), and the Config
 * assembled from it all. Every problem of every stage comes back at once, each naming the setting
 * as the operator must fix it; a stage runs for the settings the stages before it passed, so one
 * mistake is never reported twice.
 */

import { readFileSync } from 'node:fs';
import { formatDuration } from './duration';
import { parseEncryptionKeys, type ConfiguredKeys } from './encryption-keys';
import { checkRows, describeIssues, type CommandReading, type SettingIssue, type SettingSources } from './reader';
import { pathCovers } from './routes';
import type { Config, ListenerTls, NodeAuth, SidecarValues, StoreConfig } from './settings';
import { SIDECAR, SIDECAR_SETTINGS, configKey, envName, type SettingValues } from './table';
import { readKeyPairSync, type KeyPairProblem } from '../tls/key-pair';
import { readRedisTls, type RedisTlsOptions } from '../tls/redis-tls-files';

/** How the proxy reads the sidecar's settings. */
export const PROXY_READING: CommandReading<typeof SIDECAR_SETTINGS> = {
  group: SIDECAR,
  command: 'proxy',
  actions: ['help', 'version', 'config-test'],
  helpFlag: '--help',
  example: '--port 8080',
};

type DefaultNames<Rows> = { [N in keyof Rows]: Rows[N] extends { readonly absent: { readonly default: unknown } } ? N : never }[keyof Rows];

/** What each setting with a default is when nobody set it, by Config name (from the rows). */
export const DEFAULTS: SettingValues<Pick<typeof SIDECAR_SETTINGS, DefaultNames<typeof SIDECAR_SETTINGS>>> = deepFreeze(
  Object.fromEntries(
    Object.entries(SIDECAR_SETTINGS).flatMap(([name, setting]) =>
      typeof setting.absent === 'object' && 'default' in setting.absent ? [[configKey(name, setting), setting.absent.default]] : [],
    ),
  ) as SettingValues<Pick<typeof SIDECAR_SETTINGS, DefaultNames<typeof SIDECAR_SETTINGS>>>,
);

export interface SettingProblem {
  /** The setting (YAML name) the problem is about, or the unknown key. */
  readonly setting: string;
  /** One line, starting with the name to fix: `IDEMPOTENCY_TTL: "24" is not a duration; ...`. */
  readonly message: string;
}

export type CheckResult =
  | { readonly ok: true; readonly config: Config; readonly values: SidecarValues }
  | { readonly ok: false; readonly problems: readonly SettingProblem[] };

/**
 * Validates raw settings, keyed by YAML name, into a deeply frozen Config, or lists every problem.
 * `sources` says where each raw value came from; a setting without one is named by its variable.
 */
export function checkSettings(raw: Readonly<Record<string, unknown>>, sources: SettingSources): CheckResult {
  const rows = checkRows(PROXY_READING, raw);
  const issues: SettingIssue[] = [...rows.issues];
  const issue: Issue = (setting, message, also = [], path) => {
    issues.push({ setting, message, ...(also.length === 0 ? {} : { also }), ...(path === undefined ? {} : { path }) });
  };
  const clean = (settings: readonly string[]): boolean => settings.every((s) => !rows.failed.has(s));
  const values = rows.values;
  for (const rule of CROSS_CHECKS) {
    if (clean(rule.settings)) rule.check(values, issue);
  }
  // The files are read once the settings naming them are sound: a missing key file is one line,
  // not a second one about the certificate it was meant to go with.
  const troubled = new Set(issues.flatMap((one) => [one.setting, ...(one.also ?? [])]));
  const material = MATERIAL_SETTINGS.some((name) => troubled.has(name)) ? undefined : readMaterial(values, issue);
  if (issues.length > 0 || material === undefined) {
    const lines = describeIssues(SIDECAR, issues, sources);
    return { ok: false, problems: issues.map((one, i) => ({ setting: one.setting, message: lines[i] ?? one.message })) };
  }
  return { ok: true, config: deepFreeze(assemble(values, material)), values: deepFreeze(values) };
}

/** Records a problem with `setting` (and the settings in `also`), at `path` below it. */
type Issue = (setting: string, message: string, also?: readonly string[], path?: readonly (string | number)[]) => void;

interface CrossCheck {
  /** Runs only when these parsed cleanly. */
  readonly settings: readonly string[];
  readonly check: (values: SidecarValues, issue: Issue) => void;
}

const STORES = ['redisUrl', 'redisClusterNodes', 'redisSentinels'] as const;

const CROSS_CHECKS: readonly CrossCheck[] = [
  {
    settings: ['port', 'adminPort'],
    check: (s, issue) => {
      // Two zeros are two free ports, never the same one.
      if (s.port === s.adminPort && s.port !== 0) {
        issue('adminPort', `are both ${s.port}; the proxy and the admin listener need different ports`, ['port']);
      }
    },
  },
  {
    settings: [...STORES, 'redisSentinelMaster', 'redlockUrls', 'redisUsername', 'redisPassword', 'redisTls', 'redisTlsCertFile', 'redisTlsKeyFile', 'redisWaitReplicas'],
    check: (s, issue) => {
      const stores = STORES.filter((name) => s[name] !== undefined);
      const [first, ...others] = stores;
      if (first !== undefined && others.length > 0) {
        issue(
          first,
          `are ${stores.length === 2 ? 'both' : 'all'} set; the record store is one Redis, one Redis Cluster or one Sentinel-managed master: keep one`,
          others,
        );
      }
      if ((s.redisSentinels === undefined) !== (s.redisSentinelMaster === undefined)) {
        if (s.redisSentinels === undefined) {
          issue('redisSentinelMaster', `is set without ${envName('redisSentinels')}; name the Sentinels too, or unset it`);
        } else {
          issue('redisSentinels', `needs ${envName('redisSentinelMaster')} too: the name of the master they monitor, e.g. mymaster`);
        }
      }
      if (s.redlockUrls !== undefined && stores.length === 0) {
        issue(
          'redlockUrls',
          `needs a Redis record store too (${envName('redisUrl')}, ${envName('redisClusterNodes')} or ${envName('redisSentinels')}): ` +
            'with the in-process store each replica keeps its own records, so shared locks cannot stop a second run',
        );
      }
      const nodeSettings = [
        ...(s.redisUsername === undefined ? [] : ['redisUsername']),
        ...(s.redisPassword === undefined ? [] : ['redisPassword']),
        ...(s.redisTls ? ['redisTls'] : []),
      ];
      const [firstNode, ...moreNodes] = nodeSettings;
      if (firstNode !== undefined && s.redisClusterNodes === undefined && s.redisSentinels === undefined) {
        issue(
          firstNode,
          'apply to a Redis Cluster or Sentinel set only; a single Redis takes its user, password and TLS from its URL ' +
            '(rediss://user:password@host:6380): put them there, or unset these',
          moreNodes,
        );
      }
      if ((s.redisTlsCertFile === undefined) !== (s.redisTlsKeyFile === undefined)) {
        const given = s.redisTlsCertFile === undefined ? 'redisTlsKeyFile' : 'redisTlsCertFile';
        const missing = s.redisTlsCertFile === undefined ? 'redisTlsCertFile' : 'redisTlsKeyFile';
        issue(given, `needs ${envName(missing)} too: a client certificate goes with its key`);
      }
      if (s.redisWaitReplicas > 0 && stores.length === 0) {
        issue('redisWaitReplicas', 'needs a Redis record store with replicas; the in-process store has none: unset it or set 0');
      }
    },
  },
  {
    settings: ['redisWaitReplicas', 'redisWaitTimeout', 'storeTimeout'],
    check: (s, issue) => {
      if (s.redisWaitReplicas > 0 && s.redisWaitTimeoutMs >= s.storeTimeoutMs) {
        issue(
          'redisWaitTimeout',
          `is ${formatDuration(s.redisWaitTimeoutMs)}, not shorter than the store timeout (${formatDuration(s.storeTimeoutMs)}): ` +
            'a WAIT that outlasts it counts the store as down; shorten it or lengthen the store timeout',
          ['storeTimeout'],
        );
      }
    },
  },
  {
    settings: ['tlsCertFile', 'tlsKeyFile', 'tlsClientCaFile', 'tenantFrom', 'tenantHeaders', 'tenantMissing', 'encryptionKeys', 'encryptionKeysFile'],
    check: (s, issue) => {
      if ((s.tlsCertFile === undefined) !== (s.tlsKeyFile === undefined)) {
        const given = s.tlsCertFile === undefined ? 'tlsKeyFile' : 'tlsCertFile';
        const missing = s.tlsCertFile === undefined ? 'tlsCertFile' : 'tlsKeyFile';
        issue(given, `needs ${envName(missing)} too: the listener's certificate goes with its key`);
      }
      if (s.tlsClientCaFile !== undefined && s.tlsCertFile === undefined) {
        issue('tlsClientCaFile', `needs the listener to speak HTTPS: set ${envName('tlsCertFile')} and ${envName('tlsKeyFile')} too`);
      }
      if (s.tenantFrom === 'client-certificate' && s.tlsClientCaFile === undefined) {
        issue(
          'tenantFrom',
          `is client-certificate, but no client certificate is verified: set ${envName('tlsClientCaFile')} (and the listener's certificate and key)`,
        );
      }
      if (s.encryptionKeys !== undefined && s.encryptionKeysFile !== undefined) {
        issue('encryptionKeys', 'are both set; give the keys one way: keep one', ['encryptionKeysFile']);
      }
      if (s.tenantFrom === 'headers' && s.tenantHeaders.length === 0 && s.tenantMissing === 'reject') {
        issue(
          'tenantHeaders',
          `is empty while ${envName('tenantMissing')} is reject: every keyed request would get 400 tenant-missing; ` +
            `name the headers that identify a client, or set ${envName('tenantMissing')}=shared for an API with a single client`,
          ['tenantMissing'],
        );
      }
    },
  },
  {
    settings: ['maxBody', 'maxBodyMemory'],
    check: (s, issue) => {
      if (s.maxBodyMemory < s.maxBody) {
        issue(
          'maxBodyMemory',
          `is ${s.maxBodyMemory} bytes, less than one body of the largest size (${s.maxBody}); raise it, or lower the body limit`,
          ['maxBody'],
        );
      }
    },
  },
  {
    settings: ['clientHeaderTimeout', 'clientRequestTimeout'],
    check: (s, issue) => {
      if (s.clientHeaderTimeoutMs > s.clientRequestTimeoutMs) {
        issue(
          'clientHeaderTimeout',
          `is longer than the request timeout (${formatDuration(s.clientRequestTimeoutMs)}), which includes the headers; shorten it`,
          ['clientRequestTimeout'],
        );
      }
    },
  },
  {
    settings: ['routes', 'methods'],
    check: (s, issue) => {
      s.routes.forEach((later, j) => {
        const laterMethods = later.methods ?? s.methods;
        const i = s.routes.findIndex(
          (earlier, k) => k < j && pathCovers(earlier, later) && laterMethods.every((m) => (earlier.methods ?? s.methods).includes(m)),
        );
        if (i !== -1) {
          issue(
            'routes',
            `${later.path} can never match: routes[${i}] (${s.routes[i]?.path ?? ''}) comes first and matches every request it would; put the more specific rule first`,
            [],
            [j, 'path'],
          );
        }
      });
    },
  },
];

// ---------------------------------------------------------------------------------------------
// What the files hold

const MATERIAL_SETTINGS = ['tlsCertFile', 'tlsKeyFile', 'tlsClientCaFile', 'redisTlsCaFile', 'redisTlsCertFile', 'redisTlsKeyFile', 'encryptionKeys', 'encryptionKeysFile'];

interface Material {
  readonly listenerTls: ListenerTls | undefined;
  readonly redisTls: RedisTlsOptions;
  readonly encryption: ConfiguredKeys;
}

/** Reads and checks every file the settings name, as the connections will use them. */
function readMaterial(s: SidecarValues, issue: Issue): Material | undefined {
  let failed = false;
  const fail: Issue = (setting, message, also, path) => {
    failed = true;
    issue(setting, message, also, path);
  };

  let listenerTls: ListenerTls | undefined;
  if (s.tlsCertFile !== undefined && s.tlsKeyFile !== undefined) {
    const paths = { certPath: s.tlsCertFile, keyPath: s.tlsKeyFile, ...(s.tlsClientCaFile === undefined ? {} : { caPath: s.tlsClientCaFile }) };
    const read = readKeyPairSync(paths);
    if ('problems' in read) {
      for (const problem of read.problems) reportKeyPairProblem(problem, paths, fail);
    } else {
      listenerTls = { paths, pair: read.pair };
    }
  }

  const redis = readRedisTls(s);
  if ('problems' in redis) for (const problem of redis.problems) fail(problem.setting, problem.message, problem.also);

  const encryption = readEncryptionKeys(s, fail);
  if (failed || 'problems' in redis || encryption === undefined) return undefined;
  return { listenerTls, redisTls: redis.options, encryption };
}

const KEY_PAIR_SETTINGS = { cert: 'tlsCertFile', key: 'tlsKeyFile', ca: 'tlsClientCaFile' } as const;

function reportKeyPairProblem(problem: KeyPairProblem, paths: { certPath: string; keyPath: string; caPath?: string }, issue: Issue): void {
  if (problem.file === 'both') {
    issue('tlsCertFile', problem.message, ['tlsKeyFile']);
    return;
  }
  const file = problem.file === 'cert' ? paths.certPath : problem.file === 'key' ? paths.keyPath : (paths.caPath ?? '');
  issue(KEY_PAIR_SETTINGS[problem.file], `${JSON.stringify(file)} ${problem.message}`);
}

/** The keys from the variable (parsed by its row) or from the file, read here once. */
function readEncryptionKeys(s: SidecarValues, issue: Issue): ConfiguredKeys | undefined {
  if (s.encryptionKeysFile === undefined) {
    return { keys: s.encryptionKeys ?? [], setting: 'IDEMPOTENCY_ENCRYPTION_KEYS' };
  }
  const file = s.encryptionKeysFile;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'unreadable';
    issue('encryptionKeysFile', `${JSON.stringify(file)} cannot be read (${code}); mount the file there, or fix the path`);
    return undefined;
  }
  const parsed = parseEncryptionKeys(text, '\n');
  if (!parsed.ok) {
    issue('encryptionKeysFile', `${JSON.stringify(file)} ${parsed.problem}`);
    return undefined;
  }
  return { keys: parsed.keys, setting: 'IDEMPOTENCY_ENCRYPTION_KEYS_FILE' };
}

// ---------------------------------------------------------------------------------------------
// The Config

function assemble(s: SidecarValues, material: Material): Config {
  const {
    redisUrl,
    redisClusterNodes,
    redisSentinels,
    redisSentinelMaster,
    redisUsername,
    redisPassword,
    redisTls,
    redisTlsCaFile,
    redisTlsCertFile,
    redisTlsKeyFile,
    redisWaitReplicas,
    redisWaitTimeoutMs,
    redlockUrls,
    memoryStoreMaxRecords,
    tlsCertFile: _cert,
    tlsKeyFile: _key,
    tlsClientCaFile: _ca,
    encryptionKeys: _keys,
    encryptionKeysFile: _keysFile,
    ...rest
  } = s;
  const common = {
    waitReplicas: redisWaitReplicas,
    waitTimeoutMs: redisWaitTimeoutMs,
    ...(redlockUrls === undefined ? {} : { redlockUrls }),
    tls: material.redisTls,
    tlsFilesGiven: redisTlsCaFile !== undefined || redisTlsCertFile !== undefined || redisTlsKeyFile !== undefined,
  };
  // Unset ones stay undefined: the connection's credentials() leaves them out.
  const auth: NodeAuth = { username: redisUsername, password: redisPassword };
  // The cross-checks above allow at most one of the three, and a master name with the Sentinels.
  const store: StoreConfig =
    redisClusterNodes !== undefined
      ? { kind: 'cluster', nodes: redisClusterNodes, auth, nodeTls: redisTls, ...common }
      : redisSentinels !== undefined && redisSentinelMaster !== undefined
        ? { kind: 'sentinel', sentinels: redisSentinels, masterName: redisSentinelMaster, auth, nodeTls: redisTls, ...common }
        : redisUrl !== undefined
          ? { kind: 'redis', url: redisUrl, ...common }
          : { kind: 'memory', maxRecords: memoryStoreMaxRecords };
  return {
    ...rest,
    store,
    ...(material.listenerTls === undefined ? {} : { listenerTls: material.listenerTls }),
    encryption: material.encryption,
  };
}

/**
 * Freezes `value` and everything reachable from it. A URL's state lives in internal slots that
 * Object.freeze cannot reach, so `config.upstream` is frozen only as an object; nothing writes it.
 * Buffers (certificates, keys) cannot be frozen and are left as they are.
 */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value) && !ArrayBuffer.isView(value)) {
    Object.freeze(value);
    if (!(value instanceof URL)) for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

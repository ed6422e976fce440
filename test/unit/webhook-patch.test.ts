/**
 * The JSON Patch that injects the sidecar, applied to pods of every shape the API server sends:
 * with and without annotations, volumes and init containers. Each patch is applied with the
 * strict RFC 6902 apply in test/helpers, which fails where the API server's would.
 */
import { applyJsonPatch } from '../helpers/json-patch';
import { buildInjectionPatch, configVolume, escapePointerToken, sidecarContainer, type Injection } from '../../src/webhook/patch';
import type { SidecarTemplate } from '../../src/webhook/template';

/** Pods as the tests read them: nested fields without a cast at every step. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = Record<string, any>;

const TEMPLATE: SidecarTemplate = {
  nativeSidecar: false,
  volumes: [],
  proxyPort: 8480,
  adminPort: 9480,
  container: {
    image: 'registry.example/idempotency-sidecar:1.2.3',
    env: [{ name: 'IDEMPOTENCY_REDIS_URL', valueFrom: { secretKeyRef: { name: 'redis', key: 'url' } } }],
    readinessProbe: { httpGet: { path: '/readyz', port: 'idem-admin' } },
    securityContext: { readOnlyRootFilesystem: true },
  },
};

const INJECTION: Injection = { upstreamPort: 3000, proxyPort: 8480, adminPort: 9480, nativeSidecar: false };

function pod(extra: { annotations?: Record<string, string> | null; volumes?: Json[]; initContainers?: Json[] } = {}): Json {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: 'payments-0',
      namespace: 'shop',
      ...(extra.annotations === null ? {} : { annotations: extra.annotations ?? { 'idempotency-sidecar.io/inject': 'true' } }),
    },
    spec: {
      containers: [{ name: 'app', image: 'payments:7', ports: [{ containerPort: 3000 }] }],
      ...(extra.volumes === undefined ? {} : { volumes: extra.volumes }),
      ...(extra.initContainers === undefined ? {} : { initContainers: extra.initContainers }),
    },
  };
}

const patched = (before: Json, injection: Injection = INJECTION, template: SidecarTemplate = TEMPLATE): Json =>
  applyJsonPatch(before, buildInjectionPatch(before, template, injection));

describe('escapePointerToken', () => {
  it('writes ~ as ~0 and / as ~1 (RFC 6901), ~ first so ~1 in a key stays itself', () => {
    expect(escapePointerToken('idempotency-sidecar.io/status')).toBe('idempotency-sidecar.io~1status');
    expect(escapePointerToken('a~b/c')).toBe('a~0b~1c');
    expect(escapePointerToken('~1')).toBe('~01');
    expect(escapePointerToken('plain')).toBe('plain');
  });
});

describe('sidecarContainer', () => {
  it('is the template with the name, the ports and the per-pod variables first', () => {
    const container = sidecarContainer(TEMPLATE, INJECTION);
    expect(container).toEqual({
      name: 'idempotency-sidecar',
      image: 'registry.example/idempotency-sidecar:1.2.3',
      readinessProbe: { httpGet: { path: '/readyz', port: 'idem-admin' } },
      securityContext: { readOnlyRootFilesystem: true },
      ports: [
        { name: 'idem-proxy', containerPort: 8480, protocol: 'TCP' },
        { name: 'idem-admin', containerPort: 9480, protocol: 'TCP' },
      ],
      env: [
        { name: 'IDEMPOTENCY_UPSTREAM', value: 'http://127.0.0.1:3000' },
        { name: 'IDEMPOTENCY_PORT', value: '8480' },
        { name: 'IDEMPOTENCY_ADMIN_PORT', value: '9480' },
        { name: 'IDEMPOTENCY_REDIS_URL', valueFrom: { secretKeyRef: { name: 'redis', key: 'url' } } },
      ],
    });
  });

  it('mounts the config map and points IDEMPOTENCY_CONFIG at its config.yaml', () => {
    const container = sidecarContainer(TEMPLATE, { ...INJECTION, configMap: 'payments-idempotency' });
    expect(container['env']).toContainEqual({ name: 'IDEMPOTENCY_CONFIG', value: '/etc/idempotency-sidecar/config.yaml' });
    expect(container['volumeMounts']).toEqual([{ name: 'idempotency-sidecar-config', mountPath: '/etc/idempotency-sidecar', readOnly: true }]);
    expect(configVolume('payments-idempotency')).toEqual({
      name: 'idempotency-sidecar-config',
      configMap: { name: 'payments-idempotency', items: [{ key: 'config.yaml', path: 'config.yaml' }] },
    });
  });

  it('has restartPolicy Always only as a native sidecar', () => {
    expect(sidecarContainer(TEMPLATE, INJECTION)).not.toHaveProperty('restartPolicy');
    expect(sidecarContainer(TEMPLATE, { ...INJECTION, nativeSidecar: true })['restartPolicy']).toBe('Always');
  });

  it('never changes the template it was built from', () => {
    const before = JSON.stringify(TEMPLATE);
    sidecarContainer(TEMPLATE, { ...INJECTION, configMap: 'x' });
    expect(JSON.stringify(TEMPLATE)).toBe(before);
  });
});

describe('buildInjectionPatch', () => {
  it('appends the container and adds the status annotation with an escaped key', () => {
    const operations = buildInjectionPatch(pod(), TEMPLATE, INJECTION);
    expect(operations.map((o) => `${o.op} ${o.path}`)).toEqual([
      'add /spec/containers/-',
      'add /metadata/annotations/idempotency-sidecar.io~1status',
    ]);
    const after = patched(pod());
    expect(after.spec.containers.map((c: Json) => c.name)).toEqual(['app', 'idempotency-sidecar']);
    expect(after.metadata.annotations).toEqual({ 'idempotency-sidecar.io/inject': 'true', 'idempotency-sidecar.io/status': 'injected' });
  });

  it('creates the annotations when the pod has none', () => {
    const before = pod({ annotations: null });
    expect(buildInjectionPatch(before, TEMPLATE, INJECTION)[1]).toEqual({
      op: 'add',
      path: '/metadata/annotations',
      value: { 'idempotency-sidecar.io/status': 'injected' },
    });
    expect(patched(before).metadata.annotations).toEqual({ 'idempotency-sidecar.io/status': 'injected' });
  });

  it('creates the volumes list for a pod without volumes, and appends to one that has them', () => {
    const injection = { ...INJECTION, configMap: 'payments-idempotency' };
    const without = patched(pod(), injection);
    expect(without.spec.volumes).toEqual([configVolume('payments-idempotency')]);
    const existing = { name: 'data', emptyDir: {} };
    const withVolumes = patched(pod({ volumes: [existing] }), injection);
    expect(withVolumes.spec.volumes).toEqual([existing, configVolume('payments-idempotency')]);
    expect(buildInjectionPatch(pod({ volumes: [existing] }), TEMPLATE, injection).map((o) => o.path)).toContain('/spec/volumes/-');
  });

  it('adds no volume without a config map', () => {
    expect(patched(pod()).spec).not.toHaveProperty('volumes');
  });

  describe('with volumes in the template (Secrets the sidecar mounts)', () => {
    const tlsVolume = { name: 'idempotency-sidecar-tls', secret: { secretName: 'payments-tls' } };
    const keysVolume = { name: 'idempotency-sidecar-encryption', secret: { secretName: 'payments-keys', items: [{ key: 'keys', path: 'keys' }] } };
    const mounting: SidecarTemplate = {
      ...TEMPLATE,
      volumes: [tlsVolume, keysVolume],
      container: {
        ...TEMPLATE.container,
        volumeMounts: [
          { name: 'idempotency-sidecar-tls', mountPath: '/var/run/secrets/idempotency-sidecar/tls', readOnly: true },
          { name: 'idempotency-sidecar-encryption', mountPath: '/var/run/secrets/idempotency-sidecar/encryption', readOnly: true },
        ],
      },
    };

    it('adds them, with the config volume, as one list to a pod without volumes', () => {
      const injection = { ...INJECTION, configMap: 'payments-idempotency' };
      const operations = buildInjectionPatch(pod(), mounting, injection);
      expect(operations.filter((o) => o.path.startsWith('/spec/volumes'))).toEqual([
        { op: 'add', path: '/spec/volumes', value: [tlsVolume, keysVolume, configVolume('payments-idempotency')] },
      ]);
      const after = patched(pod(), injection, mounting);
      const mounts = (after.spec.containers[1].volumeMounts as Json[]).map((m) => m.name).sort();
      expect(mounts).toEqual(after.spec.volumes.map((v: Json) => v.name).sort());
    });

    it('appends each to a pod that has volumes, after the pod\'s own', () => {
      const existing = { name: 'data', emptyDir: {} };
      const after = patched(pod({ volumes: [existing] }), INJECTION, mounting);
      expect(after.spec.volumes).toEqual([existing, tlsVolume, keysVolume]);
      expect(after.spec.containers[1].volumeMounts.map((m: Json) => m.name)).toEqual(['idempotency-sidecar-tls', 'idempotency-sidecar-encryption']);
    });

    it('never hands out the template\'s own objects, so one pod\'s patch cannot change the next', () => {
      const operations = buildInjectionPatch(pod(), mounting, INJECTION);
      const volumes = operations.find((o) => o.path === '/spec/volumes')!.value as Json[];
      expect(volumes[0]).toEqual(tlsVolume);
      expect(volumes[0]).not.toBe(mounting.volumes[0]);
    });
  });

  it('puts a native sidecar at the end of the init containers, creating the list when there is none', () => {
    const native = { ...INJECTION, nativeSidecar: true };
    const without = patched(pod(), native);
    expect(without.spec.containers.map((c: Json) => c.name)).toEqual(['app']);
    expect(without.spec.initContainers.map((c: Json) => [c.name, c.restartPolicy])).toEqual([['idempotency-sidecar', 'Always']]);
    const migrate = { name: 'migrate', image: 'payments:7' };
    const withInit = patched(pod({ initContainers: [migrate] }), native);
    expect(withInit.spec.initContainers.map((c: Json) => c.name)).toEqual(['migrate', 'idempotency-sidecar']);
  });

  it('builds a whole spec and metadata for a pod that has neither, rather than a patch that fails', () => {
    const after = applyJsonPatch({ kind: 'Pod' }, buildInjectionPatch({ kind: 'Pod' }, TEMPLATE, INJECTION));
    expect(after).toEqual({
      kind: 'Pod',
      spec: { containers: [sidecarContainer(TEMPLATE, INJECTION)] },
      metadata: { annotations: { 'idempotency-sidecar.io/status': 'injected' } },
    });
  });

  it('uses add operations only, which the strict apply accepts on every shape above', () => {
    for (const before of [pod(), pod({ annotations: null }), pod({ volumes: [] }), pod({ initContainers: [] })]) {
      for (const injection of [INJECTION, { ...INJECTION, nativeSidecar: true, configMap: 'c' }]) {
        for (const template of [TEMPLATE, { ...TEMPLATE, volumes: [{ name: 'v1', emptyDir: {} }, { name: 'v2', emptyDir: {} }] }]) {
          const operations = buildInjectionPatch(before, template, injection);
          expect(operations.every((o) => o.op === 'add')).toBe(true);
          expect(() => applyJsonPatch(before, operations)).not.toThrow();
        }
      }
    }
  });
});

describe('the test apply itself', () => {
  it('fails an add whose parent does not exist, as the API server does', () => {
    expect(() => applyJsonPatch({ spec: {} }, [{ op: 'add', path: '/spec/volumes/-', value: {} }])).toThrow(/parent/);
    expect(() => applyJsonPatch({ metadata: {} }, [{ op: 'add', path: '/metadata/annotations/a~1b', value: 'x' }])).toThrow(/parent/);
  });

  it('decodes ~1 and ~0 in keys', () => {
    expect(applyJsonPatch({ a: {} }, [{ op: 'add', path: '/a/x~1y~0z', value: 1 }])).toEqual({ a: { 'x/y~z': 1 } });
  });
});

/**
 * The admission decision: which pods get the sidecar, which are left alone, and which are denied
 * because they asked for protection and cannot get it. The process-level suite
 * (test/integration/webhook.test.ts) sends the same reviews over HTTPS; this one covers every
 * rule and message.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { podCreateReview } from '../helpers/admission-review';
import { applyJsonPatch, type PatchOperation } from '../helpers/json-patch';
import { reviewAdmission, type ReviewOutcome } from '../../src/webhook/admission';
import { parseSidecarTemplate, type SidecarTemplate } from '../../src/webhook/template';

/** Pods as the tests read them: nested fields without a cast at every step. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = Record<string, any>;

const EXAMPLE = path.resolve(__dirname, '..', '..', 'config', 'webhook-sidecar-template.yaml');

function exampleTemplate(): SidecarTemplate {
  const parsed = parseSidecarTemplate(readFileSync(EXAMPLE, 'utf8'), EXAMPLE);
  if ('problems' in parsed) throw new Error(parsed.problems.join('\n'));
  return parsed.template;
}

const TEMPLATE = exampleTemplate();

function pod(annotations: Record<string, string> | undefined, spec: Json = {}): Json {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { generateName: 'payments-7d9f-', namespace: 'shop', ...(annotations === undefined ? {} : { annotations }) },
    spec: { containers: [{ name: 'app', image: 'payments:7', ports: [{ name: 'http', containerPort: 3000 }] }], ...spec },
  };
}

const INJECT = { 'idempotency-sidecar.io/inject': 'true', 'idempotency-sidecar.io/upstream-port': '3000' };

function review(object: unknown, request: Json = {}): Json {
  return podCreateReview(object, request);
}

function answered(outcome: ReviewOutcome): Extract<ReviewOutcome, { ok: true }> {
  if (!outcome.ok) throw new Error(`expected a review, got 400: ${outcome.message}`);
  return outcome;
}

/** The pod after the response's patch, or undefined when the response carries none. */
function admitted(object: Json): Json | undefined {
  const { review: response } = answered(reviewAdmission(review(object), TEMPLATE));
  expect(response.response.allowed).toBe(true);
  if (response.response.patch === undefined) return undefined;
  expect(response.response.patchType).toBe('JSONPatch');
  const operations = JSON.parse(Buffer.from(response.response.patch, 'base64').toString('utf8')) as PatchOperation[];
  return applyJsonPatch(object, operations);
}

function denial(object: Json): string {
  const { review: response } = answered(reviewAdmission(review(object), TEMPLATE));
  expect(response.response.allowed).toBe(false);
  expect(response.response.patch).toBeUndefined();
  expect(response.response.status?.code).toBe(400);
  return response.response.status?.message ?? '';
}

describe('pods that get the sidecar', () => {
  it('an annotated pod gets the container, the variables from its annotations and the status annotation', () => {
    const after = admitted(pod(INJECT));
    const sidecar = after?.spec.containers[1];
    expect(sidecar.name).toBe('idempotency-sidecar');
    expect(sidecar.image).toBe('idempotency-sidecar:0.1.0');
    expect(sidecar.env.slice(0, 3)).toEqual([
      { name: 'IDEMPOTENCY_UPSTREAM', value: 'http://127.0.0.1:3000' },
      { name: 'IDEMPOTENCY_PORT', value: '8480' },
      { name: 'IDEMPOTENCY_ADMIN_PORT', value: '9480' },
    ]);
    expect(sidecar.ports.map((p: Json) => [p.name, p.containerPort])).toEqual([['idem-proxy', 8480], ['idem-admin', 9480]]);
    expect(after?.metadata.annotations['idempotency-sidecar.io/status']).toBe('injected');
  });

  it('echoes the uid of the request', () => {
    const outcome = answered(reviewAdmission(review(pod(INJECT), { uid: 'abc-123' }), TEMPLATE));
    expect(outcome.review).toMatchObject({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid: 'abc-123' } });
    expect(outcome.name).toBe('payments-7d9f-');
    expect(outcome.namespace).toBe('shop');
  });

  it('takes the ports, the config map and native mode from the annotations', () => {
    const after = admitted(
      pod({
        ...INJECT,
        'idempotency-sidecar.io/proxy-port': '18080',
        'idempotency-sidecar.io/admin-port': '19090',
        'idempotency-sidecar.io/config-map': 'payments-idempotency',
        'idempotency-sidecar.io/native-sidecar': 'true',
      }),
    );
    expect(after?.spec.containers).toHaveLength(1);
    const sidecar = after?.spec.initContainers[0];
    expect(sidecar.restartPolicy).toBe('Always');
    expect(sidecar.env).toEqual(
      expect.arrayContaining([
        { name: 'IDEMPOTENCY_PORT', value: '18080' },
        { name: 'IDEMPOTENCY_ADMIN_PORT', value: '19090' },
        { name: 'IDEMPOTENCY_CONFIG', value: '/etc/idempotency-sidecar/config.yaml' },
      ]),
    );
    expect(after?.spec.volumes).toEqual([
      { name: 'idempotency-sidecar-config', configMap: { name: 'payments-idempotency', items: [{ key: 'config.yaml', path: 'config.yaml' }] } },
    ]);
  });

  it('resolves an upstream-port given as the name of a declared container port', () => {
    const after = admitted(pod({ ...INJECT, 'idempotency-sidecar.io/upstream-port': 'http' }));
    expect(after?.spec.containers[1].env[0]).toEqual({ name: 'IDEMPOTENCY_UPSTREAM', value: 'http://127.0.0.1:3000' });
  });

  it('an app port that equals the upstream port is no collision', () => {
    expect(admitted(pod(INJECT))).toBeDefined();
  });
});

describe('requests left alone: allowed, no patch', () => {
  it('a pod without the annotation', () => {
    expect(admitted(pod(undefined))).toBeUndefined();
    expect(admitted(pod({ team: 'payments' }))).toBeUndefined();
  });

  it('a pod whose inject annotation is "false"', () => {
    expect(admitted(pod({ ...INJECT, 'idempotency-sidecar.io/inject': 'false' }))).toBeUndefined();
  });

  it('a pod that already has the sidecar, as a container or a native sidecar', () => {
    const injected = admitted(pod(INJECT)) as Json;
    expect(admitted(injected)).toBeUndefined();
    const native = admitted(pod({ ...INJECT, 'idempotency-sidecar.io/native-sidecar': 'true' })) as Json;
    expect(admitted(native)).toBeUndefined();
  });

  it('other kinds, other operations and subresources', () => {
    const cases: Json[] = [
      { kind: { group: 'apps', version: 'v1', kind: 'Deployment' }, resource: { group: 'apps', version: 'v1', resource: 'deployments' } },
      { kind: { group: '', version: 'v1', kind: 'ConfigMap' } },
      { operation: 'UPDATE' },
      { operation: 'DELETE', object: null },
      { subResource: 'ephemeralcontainers' },
    ];
    for (const request of cases) {
      const outcome = answered(reviewAdmission(review(pod(INJECT), request), TEMPLATE));
      expect(outcome.review.response).toEqual({ uid: '705ab4f5-6393-11e8-b7cc-42010a800002', allowed: true });
      expect(outcome.decision.kind).toBe('skipped');
    }
  });
});

describe('pods that asked for the sidecar and cannot get it: denied, naming the annotation', () => {
  it('upstream-port missing', () => {
    expect(denial(pod({ 'idempotency-sidecar.io/inject': 'true' }))).toMatch(
      /idempotency-sidecar\.io\/upstream-port: is missing; give the app's port that the sidecar forwards to/,
    );
  });

  it.each([['0'], ['65536'], ['80a'], [''], ['-1'], ['3000.5']])('upstream-port %j', (value) => {
    expect(denial(pod({ ...INJECT, 'idempotency-sidecar.io/upstream-port': value }))).toContain('idempotency-sidecar.io/upstream-port: ');
  });

  it('upstream-port naming a port no container declares', () => {
    expect(denial(pod({ ...INJECT, 'idempotency-sidecar.io/upstream-port': 'grpc' }))).toContain(
      'idempotency-sidecar.io/upstream-port: "grpc" names no container port of this pod',
    );
  });

  it('the app port colliding with the proxy port, and with the admin port', () => {
    expect(denial(pod({ ...INJECT, 'idempotency-sidecar.io/upstream-port': '8480' }))).toContain(
      "idempotency-sidecar.io/proxy-port: 8480 is also the app's port (idempotency-sidecar.io/upstream-port)",
    );
    expect(denial(pod({ ...INJECT, 'idempotency-sidecar.io/admin-port': '3000' }))).toContain(
      "idempotency-sidecar.io/admin-port: 3000 is also the app's port",
    );
  });

  it('a container of the pod that declares a sidecar port', () => {
    const object = pod(INJECT, {
      containers: [
        { name: 'app', image: 'payments:7', ports: [{ containerPort: 3000 }] },
        { name: 'metrics', image: 'exporter:1', ports: [{ containerPort: 9480 }] },
      ],
    });
    expect(denial(object)).toContain(
      'idempotency-sidecar.io/admin-port: 9480 is a port of container "metrics"; the sidecar\'s admin port must be free in the pod',
    );
  });

  it('proxy and admin ports equal', () => {
    expect(denial(pod({ ...INJECT, 'idempotency-sidecar.io/proxy-port': '9480' }))).toContain(
      'idempotency-sidecar.io/proxy-port and idempotency-sidecar.io/admin-port: are both 9480',
    );
  });

  it('an inject value that is neither true nor false', () => {
    expect(denial(pod({ ...INJECT, 'idempotency-sidecar.io/inject': 'yes' }))).toContain(
      'idempotency-sidecar.io/inject: "yes" is neither "true" nor "false"',
    );
  });

  it('a misspelt annotation of the sidecar, with a suggestion', () => {
    expect(denial(pod({ ...INJECT, 'idempotency-sidecar.io/proxy_port': '8081' }))).toContain(
      'idempotency-sidecar.io/proxy_port: is not an annotation of the sidecar; did you mean idempotency-sidecar.io/proxy-port?',
    );
  });

  it('a config map name that is not one, and a volume name already taken', () => {
    expect(denial(pod({ ...INJECT, 'idempotency-sidecar.io/config-map': 'Bad_Name' }))).toContain(
      'idempotency-sidecar.io/config-map: "Bad_Name" is not a ConfigMap name',
    );
    const taken = pod({ ...INJECT, 'idempotency-sidecar.io/config-map': 'ok' }, { volumes: [{ name: 'idempotency-sidecar-config', emptyDir: {} }] });
    expect(denial(taken)).toContain('the pod already has a volume named idempotency-sidecar-config');
  });

  it('a volume of the pod with the name of a volume the sidecar template adds', () => {
    const withVolumes: SidecarTemplate = { ...TEMPLATE, volumes: [{ name: 'idempotency-sidecar-tls', secret: { secretName: 'payments-tls' } }] };
    const taken = pod(INJECT, { volumes: [{ name: 'idempotency-sidecar-tls', emptyDir: {} }] });
    const { review: refused } = answered(reviewAdmission(review(taken), withVolumes));
    expect(refused.response.allowed).toBe(false);
    expect(refused.response.status?.message).toContain(
      'the pod already has a volume named "idempotency-sidecar-tls", which the sidecar mounts (a volume of its template); rename that volume',
    );
    // A pod whose volumes do not collide gets the template's volume beside its own.
    const free = pod(INJECT, { volumes: [{ name: 'data', emptyDir: {} }] });
    const { review: allowed } = answered(reviewAdmission(review(free), withVolumes));
    expect(allowed.response.allowed).toBe(true);
  });

  it('every problem in one message', () => {
    const message = denial(pod({ 'idempotency-sidecar.io/inject': 'true', 'idempotency-sidecar.io/admin-port': 'x', 'idempotency-sidecar.io/native-sidecar': 'maybe' }));
    expect(message).toMatch(/^the pod asks for the idempotency sidecar \(idempotency-sidecar\.io\/inject: "true"\) but cannot get it: /);
    expect(message).toContain('upstream-port: is missing');
    expect(message).toContain('admin-port: "x" is not a port');
    expect(message).toContain('native-sidecar: "maybe" is neither');
  });
});

describe('bodies that are not an admission.k8s.io/v1 AdmissionReview', () => {
  const cases: [string, unknown, RegExp][] = [
    ['null', null, /not an AdmissionReview/],
    ['a list', [], /not an AdmissionReview/],
    ['v1beta1', { ...review(pod(INJECT)), apiVersion: 'admission.k8s.io/v1beta1' }, /only admission\.k8s\.io\/v1/],
    ['another kind', { ...review(pod(INJECT)), kind: 'Pod' }, /kind "Pod" is not AdmissionReview/],
    ['no request', { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }, /request: is missing/],
    ['no uid', review(pod(INJECT), { uid: undefined }), /request\.uid/],
    ['no kind', review(pod(INJECT), { kind: 'Pod' }), /request\.kind/],
    ['no operation', review(pod(INJECT), { operation: 7 }), /request\.operation/],
    ['a CREATE without the pod', review(undefined), /request\.object/],
    ['a pod without containers', review({ metadata: {}, spec: {} }), /spec\.containers/],
  ];
  it.each(cases)('%s', (_name, body, message) => {
    const outcome = reviewAdmission(body, TEMPLATE);
    expect(outcome.ok).toBe(false);
    if (!outcome.ok) expect(outcome.message).toMatch(message);
  });
});

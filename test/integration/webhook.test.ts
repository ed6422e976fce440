/**
 * The admission webhook as the API server meets it: `idempotency-sidecar webhook` in its own
 * process, real AdmissionReview (admission.k8s.io/v1) requests over HTTPS from a client that
 * trusts only the test CA, the JSON patch in the response decoded and applied to the pod. Also:
 * certificate rotation in place, a client that does not trust the CA, start-up validation and a
 * clean SIGTERM.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { Pod } from 'kubernetes-models/v1/Pod';
import { applyJsonPatch, type PatchOperation } from '../helpers/json-patch';
import { runSidecarCommand } from '../helpers/sidecar-process';
import { createCertificateAuthority, issueServerCertificate, type CertificateAuthority } from '../helpers/tls-certificates';
import { httpsRequest, servedCertificateSerial, startWebhookProcess, type WebhookProcess } from '../helpers/webhook-process';
import { waitFor } from '../helpers/wait';

/** Pods as the tests read them: nested fields without a cast at every step. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = Record<string, any>;

const TEMPLATE = path.resolve(__dirname, '..', '..', 'config', 'webhook-sidecar-template.yaml');

let dir: string;
let tlsDir: string;
let ca: CertificateAuthority;
let webhook: WebhookProcess;
let env: Record<string, string>;

const serialOf = (pem: Buffer): string => new X509Certificate(pem).serialNumber.toUpperCase();

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'webhook-it-'));
  tlsDir = path.join(dir, 'tls');
  ca = createCertificateAuthority(path.join(dir, 'ca'));
  // Issued elsewhere and copied in, as a Secret's files appear in the pod.
  const first = issueServerCertificate(ca, path.join(dir, 'issued'), 'first', 'webhook.idempotency.svc');
  fs.mkdirSync(tlsDir);
  fs.copyFileSync(first.certPath, path.join(tlsDir, 'tls.crt'));
  fs.copyFileSync(first.keyPath, path.join(tlsDir, 'tls.key'));
  env = {
    IDEMPOTENCY_WEBHOOK_TLS_CERT: path.join(tlsDir, 'tls.crt'),
    IDEMPOTENCY_WEBHOOK_TLS_KEY: path.join(tlsDir, 'tls.key'),
    IDEMPOTENCY_WEBHOOK_SIDECAR_TEMPLATE: TEMPLATE,
    IDEMPOTENCY_WEBHOOK_TLS_RELOAD_INTERVAL: '100ms',
  };
  webhook = await startWebhookProcess({ env, ca: ca.cert });
});

afterAll(async () => {
  await webhook?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

let uid = 0;

function pod(annotations: Record<string, string> | undefined, containers?: Json[]): Json {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'payments-0', namespace: 'shop', labels: { app: 'payments' }, ...(annotations === undefined ? {} : { annotations }) },
    spec: {
      containers: containers ?? [{ name: 'app', image: 'payments:7', ports: [{ name: 'http', containerPort: 8080 }] }],
      volumes: [{ name: 'kube-api-access', projected: { sources: [] } }],
    },
  };
}

function review(object: Json, request: Json = {}): Json {
  uid += 1;
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: `0b2d6f0e-0000-4000-8000-${String(uid).padStart(12, '0')}`,
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      requestKind: { group: '', version: 'v1', kind: 'Pod' },
      name: object['metadata']?.name,
      namespace: 'shop',
      operation: 'CREATE',
      userInfo: { username: 'system:serviceaccount:kube-system:replicaset-controller' },
      object,
      oldObject: null,
      dryRun: false,
      options: { apiVersion: 'meta.k8s.io/v1', kind: 'CreateOptions' },
      ...request,
    },
  };
}

/** POSTs the review as the API server does (with its ?timeout= query) and returns the response. */
async function admit(body: Json): Promise<Json> {
  const reply = await httpsRequest(`${webhook.url}/mutate?timeout=10s`, { method: 'POST', body: JSON.stringify(body), ca: ca.cert });
  expect(reply.status).toBe(200);
  const answer = reply.json();
  expect(answer).toMatchObject({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid: body['request'].uid } });
  return answer['response'] as Json;
}

/** The pod after the response's patch, checked against the Kubernetes OpenAPI schema of a Pod. */
function patchedPod(before: Json, response: Json): Json {
  expect(response['allowed']).toBe(true);
  expect(response['patchType']).toBe('JSONPatch');
  const operations = JSON.parse(Buffer.from(response['patch'] as string, 'base64').toString('utf8')) as PatchOperation[];
  const after = applyJsonPatch(before, operations);
  expect(() => new Pod(after).validate()).not.toThrow();
  return after;
}

const INJECT = { 'idempotency-sidecar.io/inject': 'true', 'idempotency-sidecar.io/upstream-port': '8080' };

describe('AdmissionReview over HTTPS', () => {
  test('an annotated pod gets the sidecar container and the status annotation', async () => {
    const before = pod(INJECT);
    const after = patchedPod(before, await admit(review(before)));
    expect(after.spec.containers.map((c: Json) => c.name)).toEqual(['app', 'idempotency-sidecar']);
    const sidecar = after.spec.containers[1];
    expect(sidecar.image).toBe('idempotency-sidecar:0.1.0');
    expect(sidecar.env).toContainEqual({ name: 'IDEMPOTENCY_UPSTREAM', value: 'http://127.0.0.1:8080' });
    expect(sidecar.env).toContainEqual({ name: 'IDEMPOTENCY_PORT', value: '8480' });
    expect(sidecar.env).toContainEqual({ name: 'IDEMPOTENCY_ADMIN_PORT', value: '9480' });
    expect(sidecar.env).toContainEqual({ name: 'IDEMPOTENCY_REDIS_URL', valueFrom: { secretKeyRef: { name: 'idempotency-sidecar-redis', key: 'url' } } });
    expect(sidecar.ports).toEqual([
      { name: 'idem-proxy', containerPort: 8480, protocol: 'TCP' },
      { name: 'idem-admin', containerPort: 9480, protocol: 'TCP' },
    ]);
    expect(sidecar.securityContext).toMatchObject({ readOnlyRootFilesystem: true, runAsNonRoot: true });
    expect(after.metadata.annotations).toEqual({ ...INJECT, 'idempotency-sidecar.io/status': 'injected' });
    // The rest of the pod is as it was.
    expect(after.spec.containers[0]).toEqual(before.spec.containers[0]);
    expect(after.spec.volumes).toEqual(before.spec.volumes);
    expect(after.metadata.labels).toEqual(before.metadata.labels);
  });

  test('a config map annotation appends a volume to the existing ones; native-sidecar makes it an init container', async () => {
    const before = pod({ ...INJECT, 'idempotency-sidecar.io/config-map': 'payments-idempotency', 'idempotency-sidecar.io/native-sidecar': 'true' });
    const after = patchedPod(before, await admit(review(before)));
    expect(after.spec.volumes.map((v: Json) => v.name)).toEqual(['kube-api-access', 'idempotency-sidecar-config']);
    expect(after.spec.containers.map((c: Json) => c.name)).toEqual(['app']);
    expect(after.spec.initContainers).toHaveLength(1);
    expect(after.spec.initContainers[0]).toMatchObject({ name: 'idempotency-sidecar', restartPolicy: 'Always' });
    expect(after.spec.initContainers[0].env).toContainEqual({ name: 'IDEMPOTENCY_CONFIG', value: '/etc/idempotency-sidecar/config.yaml' });
  });

  test('a pod without the annotation is allowed untouched', async () => {
    const response = await admit(review(pod(undefined)));
    expect(response).toEqual({ uid: expect.any(String), allowed: true });
  });

  test('an already injected pod is allowed untouched', async () => {
    const before = pod(INJECT);
    const injected = patchedPod(before, await admit(review(before)));
    const again = await admit(review(injected));
    expect(again['allowed']).toBe(true);
    expect(again['patch']).toBeUndefined();
    expect(again['patchType']).toBeUndefined();
  });

  test('a pod that asks for the sidecar without upstream-port is denied, naming the annotation', async () => {
    const response = await admit(review(pod({ 'idempotency-sidecar.io/inject': 'true' })));
    expect(response['allowed']).toBe(false);
    expect(response['patch']).toBeUndefined();
    expect(response['status']).toMatchObject({ code: 400 });
    expect(response['status'].message).toContain('idempotency-sidecar.io/upstream-port: is missing');
  });

  test('an app port that collides with the sidecar is denied, naming the port and the container', async () => {
    const containers = [{ name: 'app', image: 'payments:7', ports: [{ containerPort: 8080 }, { name: 'debug', containerPort: 8480 }] }];
    const response = await admit(review(pod(INJECT, containers)));
    expect(response['allowed']).toBe(false);
    expect(response['status'].message).toContain('idempotency-sidecar.io/proxy-port: 8480 is a port of container "app"');

    const same = await admit(review(pod({ ...INJECT, 'idempotency-sidecar.io/upstream-port': '9480' })));
    expect(same['allowed']).toBe(false);
    expect(same['status'].message).toContain("idempotency-sidecar.io/admin-port: 9480 is also the app's port");
  });

  test('other kinds are allowed untouched, annotated or not', async () => {
    const deployment = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'payments', annotations: { 'idempotency-sidecar.io/inject': 'true' } },
      spec: { template: pod(INJECT) },
    };
    const response = await admit(
      review(deployment, { kind: { group: 'apps', version: 'v1', kind: 'Deployment' }, resource: { group: 'apps', version: 'v1', resource: 'deployments' } }),
    );
    expect(response).toEqual({ uid: expect.any(String), allowed: true });
    const update = await admit(review(pod(INJECT), { operation: 'UPDATE', oldObject: pod(INJECT) }));
    expect(update).toEqual({ uid: expect.any(String), allowed: true });
  });

  test('malformed bodies get a 400 with a message, and the webhook keeps serving', async () => {
    const notJson = await httpsRequest(`${webhook.url}/mutate`, { method: 'POST', body: '{"apiVersion": "admission.k8s.io/v1",', ca: ca.cert });
    expect(notJson.status).toBe(400);
    expect(notJson.json()['error']).toMatch(/^the body is not JSON/);

    const v1beta1 = await httpsRequest(`${webhook.url}/mutate`, { method: 'POST', body: JSON.stringify({ ...review(pod(INJECT)), apiVersion: 'admission.k8s.io/v1beta1' }), ca: ca.cert });
    expect(v1beta1.status).toBe(400);
    expect(v1beta1.json()['error']).toMatch(/only admission\.k8s\.io\/v1/);

    const noUid = await httpsRequest(`${webhook.url}/mutate`, { method: 'POST', body: JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: {} }), ca: ca.cert });
    expect(noUid.status).toBe(400);
    expect(noUid.json()['error']).toMatch(/request\.uid/);

    const empty = await httpsRequest(`${webhook.url}/mutate`, { method: 'POST', body: '', ca: ca.cert });
    expect(empty.status).toBe(400);

    expect((await httpsRequest(`${webhook.url}/mutate`, { ca: ca.cert })).status).toBe(405);
    expect((await httpsRequest(`${webhook.url}/elsewhere`, { ca: ca.cert })).status).toBe(404);
    expect((await httpsRequest(`${webhook.url}/healthz`, { ca: ca.cert })).status).toBe(200);
    expect(webhook.process.exitCode).toBeNull();
  });
});

describe('TLS', () => {
  test('a client that does not trust the CA fails the handshake', async () => {
    await expect(httpsRequest(`${webhook.url}/healthz`)).rejects.toMatchObject({ code: expect.stringMatching(/UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED|UNABLE_TO_GET_ISSUER/) });
    const stranger = createCertificateAuthority(path.join(dir, 'stranger'), 'stranger-ca');
    await expect(httpsRequest(`${webhook.url}/healthz`, { ca: stranger.cert })).rejects.toMatchObject({ code: expect.any(String) });
  });

  test('a rotated pair is served to new connections; a broken one is refused and the previous pair kept', async () => {
    const certPath = path.join(tlsDir, 'tls.crt');
    const keyPath = path.join(tlsDir, 'tls.key');
    const firstSerial = serialOf(fs.readFileSync(certPath));
    expect(await servedCertificateSerial(webhook.port, ca.cert)).toBe(firstSerial);

    // Rewritten in place, one file after the other, as a careless rotation would: for a moment the
    // pair does not match, which must not take the old one down.
    const second = issueServerCertificate(ca, path.join(dir, 'issued'), 'second', 'webhook.idempotency.svc');
    fs.writeFileSync(certPath, second.cert);
    expect(await servedCertificateSerial(webhook.port, ca.cert)).toBe(firstSerial);
    fs.writeFileSync(keyPath, second.key);
    await waitFor(async () => (await servedCertificateSerial(webhook.port, ca.cert)) === serialOf(second.cert), { timeoutMs: 5_000, what: () => `webhook output:\n${webhook.output()}` });
    const reply = await admit(review(pod(undefined)));
    expect(reply['allowed']).toBe(true);

    // A broken certificate file: refused, the second pair keeps serving.
    fs.writeFileSync(certPath, '-----BEGIN CERTIFICATE-----\ntruncated\n');
    await waitFor(() => webhook.output().includes('new TLS certificate or key refused'), { timeoutMs: 5_000, what: () => `webhook output:\n${webhook.output()}` });
    expect(await servedCertificateSerial(webhook.port, ca.cert)).toBe(serialOf(second.cert));
    expect((await httpsRequest(`${webhook.url}/healthz`, { ca: ca.cert })).status).toBe(200);
    fs.writeFileSync(certPath, second.cert);
  });
});

describe('the webhook process', () => {
  test('a bad setting exits 2 with one line naming it', async () => {
    const result = await runSidecarCommand(['webhook'], { ...env, IDEMPOTENCY_WEBHOOK_TLS_KEY: path.join(dir, 'missing.key') });
    expect(result.code).toBe(2);
    const lines = result.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^idempotency-sidecar webhook: IDEMPOTENCY_WEBHOOK_TLS_KEY .*missing\.key: cannot be read/);
  });

  test('every missing required setting is named, flags as flags', async () => {
    const result = await runSidecarCommand(['webhook', '--port', 'x'], {});
    expect(result.code).toBe(2);
    expect(result.stderr.trim().split('\n')).toEqual([
      'idempotency-sidecar webhook: --port: "x" is not a port; use a whole number from 1 to 65535, or 0 for any free port',
      expect.stringMatching(/IDEMPOTENCY_WEBHOOK_TLS_CERT: is required/),
      expect.stringMatching(/IDEMPOTENCY_WEBHOOK_TLS_KEY: is required/),
      expect.stringMatching(/IDEMPOTENCY_WEBHOOK_SIDECAR_TEMPLATE: is required/),
    ]);
  });

  test('--help and --config-test', async () => {
    const help = await runSidecarCommand(['webhook', '--help'], {});
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: idempotency-sidecar webhook \[flags\]/);
    const test = await runSidecarCommand(['webhook', '--config-test'], env);
    expect(test.code).toBe(0);
    expect(JSON.parse(test.stdout)).toMatchObject({ port: 8443, sidecarTemplate: TEMPLATE, template: { proxyPort: 8480, adminPort: 9480 } });
  });

  test('SIGTERM stops it with exit 0', async () => {
    const other = await startWebhookProcess({ env, ca: ca.cert });
    expect(await other.stop()).toBe(0);
    expect(other.output()).toMatch(/"msg":"stopped"/);
  });
});

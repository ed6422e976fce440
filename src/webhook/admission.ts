/**
 * One AdmissionReview (admission.k8s.io/v1) in, one out: whether a pod gets the sidecar, and the
 * patch that gives it. Pure: the server reads the body and writes what this returns.
 *
 * The rules, in order:
 * - Not a Pod CREATE (other kinds, UPDATE, subresources): allowed, no patch.
 * - No `idempotency-sidecar.io/inject`, or `"false"`: allowed, no patch.
 * - Already has a container named `idempotency-sidecar`: allowed, no patch (reinvocation, a
 *   pod created from an injected pod's spec).
 * - Otherwise the pod asked for protection, and a payment API that asked for it must not start
 *   silently without it: any problem with its annotations (upstream-port missing or invalid, a
 *   port that collides, an unknown `idempotency-sidecar.io/` annotation, an inject value that is
 *   neither true nor false) denies the pod, with every problem named in one message.
 *
 * A body that is not an admission.k8s.io/v1 AdmissionReview is a 400 for the server to send.
 */
import { suggest } from '../config/checks';
import { buildInjectionPatch, type Injection, type JsonPatchOperation } from './patch';
import { ADMIN_PORT_NAME, ANNOTATIONS, ANNOTATION_PREFIX, CONFIG_VOLUME_NAME, CONTAINER_NAME, PROXY_PORT_NAME } from './names';
import type { SidecarTemplate } from './template';

export const ADMISSION_API_VERSION = 'admission.k8s.io/v1';

export interface AdmissionResponse {
  readonly uid: string;
  readonly allowed: boolean;
  readonly patchType?: 'JSONPatch';
  /** Base64 of the JSON Patch. */
  readonly patch?: string;
  readonly status?: { readonly code: number; readonly reason: string; readonly message: string };
}

export interface AdmissionReviewResponse {
  readonly apiVersion: typeof ADMISSION_API_VERSION;
  readonly kind: 'AdmissionReview';
  readonly response: AdmissionResponse;
}

export type Decision =
  | { readonly kind: 'skipped'; readonly reason: string }
  | { readonly kind: 'injected'; readonly injection: Injection; readonly patch: readonly JsonPatchOperation[] }
  | { readonly kind: 'denied'; readonly message: string };

export type ReviewOutcome =
  | { readonly ok: false; readonly message: string }
  | {
      readonly ok: true;
      readonly review: AdmissionReviewResponse;
      readonly decision: Decision;
      /** For logs: what was admitted, where. */
      readonly uid: string;
      readonly namespace: string | undefined;
      readonly name: string | undefined;
    };

type Json = Record<string, unknown>;

function isMapping(value: unknown): value is Json {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) return 'a list';
  if (isMapping(value)) return 'a mapping';
  return String(value);
}

const KNOWN_ANNOTATIONS: readonly string[] = Object.values(ANNOTATIONS);
const IANA_PORT_NAME = /^(?=.*[a-z])[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Answers a parsed request body: the review to send back, or why the body is not a review. */
export function reviewAdmission(body: unknown, template: SidecarTemplate): ReviewOutcome {
  if (!isMapping(body)) return { ok: false, message: 'the body is not an AdmissionReview: expected a JSON object' };
  if (body['apiVersion'] !== ADMISSION_API_VERSION) {
    return {
      ok: false,
      message: `apiVersion ${show(body['apiVersion'])} is not served; only ${ADMISSION_API_VERSION} (admissionReviewVersions: ["v1"])`,
    };
  }
  if (body['kind'] !== 'AdmissionReview') return { ok: false, message: `kind ${show(body['kind'])} is not AdmissionReview` };
  const request = body['request'];
  if (!isMapping(request)) return { ok: false, message: 'request: is missing or not an object' };
  const uid = request['uid'];
  if (typeof uid !== 'string' || uid === '') return { ok: false, message: 'request.uid: is missing or not a string' };
  const kind = request['kind'];
  if (!isMapping(kind) || typeof kind['kind'] !== 'string') return { ok: false, message: 'request.kind: is missing its kind' };
  const operation = request['operation'];
  if (typeof operation !== 'string') return { ok: false, message: 'request.operation: is missing or not a string' };
  const namespace = typeof request['namespace'] === 'string' ? request['namespace'] : undefined;

  const answer = (decision: Decision, name?: string): ReviewOutcome => ({
    ok: true,
    review: { apiVersion: ADMISSION_API_VERSION, kind: 'AdmissionReview', response: responseFor(uid, decision) },
    decision,
    uid,
    namespace,
    name,
  });

  const isPod = kind['kind'] === 'Pod' && (kind['group'] === undefined || kind['group'] === '');
  const subResource = request['subResource'];
  if (!isPod || (typeof subResource === 'string' && subResource !== '')) {
    return answer({ kind: 'skipped', reason: `not a pod: ${kind['kind']}${typeof subResource === 'string' && subResource !== '' ? `/${subResource}` : ''}` });
  }
  if (operation !== 'CREATE') return answer({ kind: 'skipped', reason: `operation ${operation}` });

  const pod = request['object'];
  if (!isMapping(pod)) return { ok: false, message: 'request.object: is missing or not an object (a CREATE carries the pod)' };
  const metadata = isMapping(pod['metadata']) ? pod['metadata'] : {};
  const name = [metadata['name'], metadata['generateName']].find((n): n is string => typeof n === 'string' && n !== '');
  const spec = pod['spec'];
  if (!isMapping(spec) || !Array.isArray(spec['containers'])) {
    return { ok: false, message: 'request.object.spec.containers: is missing or not a list; the object is not a pod' };
  }
  const annotations = isMapping(metadata['annotations']) ? metadata['annotations'] : {};

  const inject = annotations[ANNOTATIONS.inject];
  if (inject === undefined || inject === 'false') return answer({ kind: 'skipped', reason: `no ${ANNOTATIONS.inject}: "true"` }, name);
  if (inject !== 'true') {
    return answer(
      {
        kind: 'denied',
        message: `${ANNOTATIONS.inject}: ${show(inject)} is neither "true" nor "false"; the pod may be asking for the idempotency sidecar, so it is not started without it`,
      },
      name,
    );
  }
  const containers = [...(spec['containers'] as unknown[]), ...(Array.isArray(spec['initContainers']) ? (spec['initContainers'] as unknown[]) : [])];
  if (containers.some((c) => isMapping(c) && c['name'] === CONTAINER_NAME)) {
    return answer({ kind: 'skipped', reason: `already has a container named ${CONTAINER_NAME}` }, name);
  }

  const settled = injectionFor(spec, annotations, template);
  if ('problems' in settled) {
    return answer(
      { kind: 'denied', message: `the pod asks for the idempotency sidecar (${ANNOTATIONS.inject}: "true") but cannot get it: ${settled.problems.join('; ')}` },
      name,
    );
  }
  return answer({ kind: 'injected', injection: settled.injection, patch: buildInjectionPatch(pod, template, settled.injection) }, name);
}

function responseFor(uid: string, decision: Decision): AdmissionResponse {
  switch (decision.kind) {
    case 'skipped':
      return { uid, allowed: true };
    case 'injected':
      return { uid, allowed: true, patchType: 'JSONPatch', patch: Buffer.from(JSON.stringify(decision.patch)).toString('base64') };
    case 'denied':
      return { uid, allowed: false, status: { code: 400, reason: 'BadRequest', message: decision.message } };
  }
}

interface DeclaredPort {
  readonly container: string;
  readonly name: string | undefined;
  readonly port: number | undefined;
}

/** The ports the pod's own containers declare; init containers only when they keep running (native sidecars). */
function declaredPorts(spec: Json): DeclaredPort[] {
  const running = [
    ...(spec['containers'] as unknown[]),
    ...(Array.isArray(spec['initContainers']) ? (spec['initContainers'] as unknown[]) : []).filter(
      (c) => isMapping(c) && c['restartPolicy'] === 'Always',
    ),
  ];
  return running.flatMap((container) => {
    if (!isMapping(container) || !Array.isArray(container['ports'])) return [];
    const containerName = typeof container['name'] === 'string' ? container['name'] : '(unnamed)';
    return (container['ports'] as unknown[]).filter(isMapping).map((p) => ({
      container: containerName,
      name: typeof p['name'] === 'string' ? p['name'] : undefined,
      port: typeof p['containerPort'] === 'number' ? p['containerPort'] : undefined,
    }));
  });
}

function portAnnotation(value: unknown, annotation: string, problems: string[]): number | undefined {
  const text = typeof value === 'string' ? value.trim() : '';
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (Number.isInteger(n) && n >= 1 && n <= 65_535) return n;
  problems.push(`${annotation}: ${show(value)} is not a port; use a whole number from 1 to 65535, e.g. "8480"`);
  return undefined;
}

function injectionFor(spec: Json, annotations: Json, template: SidecarTemplate): { injection: Injection } | { problems: string[] } {
  const problems: string[] = [];
  const ports = declaredPorts(spec);

  for (const key of Object.keys(annotations)) {
    if (!key.startsWith(ANNOTATION_PREFIX) || KNOWN_ANNOTATIONS.includes(key)) continue;
    const hint = suggest(key.slice(ANNOTATION_PREFIX.length), KNOWN_ANNOTATIONS.map((a) => a.slice(ANNOTATION_PREFIX.length)));
    problems.push(`${key}: is not an annotation of the sidecar${hint === undefined ? '' : `; did you mean ${ANNOTATION_PREFIX}${hint}?`}`);
  }

  let upstreamPort: number | undefined;
  const upstream = annotations[ANNOTATIONS.upstreamPort];
  if (upstream === undefined) {
    problems.push(`${ANNOTATIONS.upstreamPort}: is missing; give the app's port that the sidecar forwards to, e.g. ${ANNOTATIONS.upstreamPort}: "8080"`);
  } else if (typeof upstream === 'string' && IANA_PORT_NAME.test(upstream.trim())) {
    const named = ports.find((p) => p.name === upstream.trim() && p.port !== undefined);
    if (named === undefined) problems.push(`${ANNOTATIONS.upstreamPort}: ${show(upstream)} names no container port of this pod; give a number or the name of a declared port`);
    else upstreamPort = named.port;
  } else {
    upstreamPort = portAnnotation(upstream, ANNOTATIONS.upstreamPort, problems);
  }

  const given = (annotation: string, fallback: number): number | undefined =>
    annotations[annotation] === undefined ? fallback : portAnnotation(annotations[annotation], annotation, problems);
  const proxyPort = given(ANNOTATIONS.proxyPort, template.proxyPort);
  const adminPort = given(ANNOTATIONS.adminPort, template.adminPort);

  let nativeSidecar = template.nativeSidecar;
  const native = annotations[ANNOTATIONS.nativeSidecar];
  if (native === 'true') nativeSidecar = true;
  else if (native === 'false') nativeSidecar = false;
  else if (native !== undefined) problems.push(`${ANNOTATIONS.nativeSidecar}: ${show(native)} is neither "true" nor "false"`);

  const configMapValue = annotations[ANNOTATIONS.configMap];
  let configMap: string | undefined;
  if (configMapValue !== undefined) {
    if (typeof configMapValue !== 'string' || configMapValue.length > 253 || !DNS_SUBDOMAIN.test(configMapValue)) {
      problems.push(`${ANNOTATIONS.configMap}: ${show(configMapValue)} is not a ConfigMap name; use lower-case letters, digits, - and .`);
    } else {
      configMap = configMapValue;
    }
    const volumes = Array.isArray(spec['volumes']) ? (spec['volumes'] as unknown[]) : [];
    if (volumes.some((v) => isMapping(v) && v['name'] === CONFIG_VOLUME_NAME)) {
      problems.push(`${ANNOTATIONS.configMap}: the pod already has a volume named ${CONFIG_VOLUME_NAME}, which the sidecar's config needs; rename that volume`);
    }
  }

  // The template's volumes join the pod's: a name the pod already uses would be refused by the API server.
  const podVolumes = Array.isArray(spec['volumes']) ? (spec['volumes'] as unknown[]) : [];
  for (const volume of template.volumes) {
    if (podVolumes.some((v) => isMapping(v) && v['name'] === volume['name'])) {
      problems.push(`the pod already has a volume named ${show(volume['name'])}, which the sidecar mounts (a volume of its template); rename that volume`);
    }
  }

  // The sidecar shares the pod's network: its ports must be free of the app's.
  const sidecarPorts = [
    { annotation: ANNOTATIONS.proxyPort, what: 'proxy port', port: proxyPort, portName: PROXY_PORT_NAME },
    { annotation: ANNOTATIONS.adminPort, what: 'admin port', port: adminPort, portName: ADMIN_PORT_NAME },
  ];
  if (proxyPort !== undefined && proxyPort === adminPort) {
    problems.push(`${ANNOTATIONS.proxyPort} and ${ANNOTATIONS.adminPort}: are both ${proxyPort}; the proxy and the admin listener need different ports`);
  }
  for (const { annotation, what, port, portName } of sidecarPorts) {
    const source = annotations[annotation] === undefined ? ` (the template's default; set ${annotation} to move it)` : '';
    if (port !== undefined && port === upstreamPort) {
      problems.push(`${annotation}: ${port} is also the app's port (${ANNOTATIONS.upstreamPort}); the sidecar's ${what} must differ from it${source}`);
    }
    const taken = ports.find((p) => p.port !== undefined && p.port === port);
    if (port !== undefined && taken !== undefined && port !== upstreamPort) {
      problems.push(`${annotation}: ${port} is a port of container ${JSON.stringify(taken.container)}; the sidecar's ${what} must be free in the pod${source}`);
    }
    const sameName = ports.find((p) => p.name === portName);
    if (sameName !== undefined) {
      problems.push(`container ${JSON.stringify(sameName.container)} has a port named ${portName}, the name of the sidecar's ${what}; rename it`);
    }
  }

  if (problems.length > 0 || upstreamPort === undefined || proxyPort === undefined || adminPort === undefined) {
    return { problems };
  }
  return { injection: { upstreamPort, proxyPort, adminPort, nativeSidecar, ...(configMap === undefined ? {} : { configMap }) } };
}

/**
 * The injection as data: the sidecar container built from the template and a pod's settings, and
 * the RFC 6902 JSON Patch that adds it (and its volumes: the template's and the config volume, and
 * the status annotation) to the pod. Pure functions: no I/O, no decisions about whether to inject (admission.ts makes those).
 *
 * Every operation is an `add`. An `add` to an array member that does not exist fails the whole
 * patch, so a list or mapping the pod lacks (no volumes, no annotations, no init containers) is
 * added whole instead of appended to.
 */
import {
  ADMIN_PORT_NAME,
  ANNOTATIONS,
  CONFIG_MAP_KEY,
  CONFIG_MOUNT_PATH,
  CONFIG_VOLUME_NAME,
  CONTAINER_NAME,
  PROXY_PORT_NAME,
  STATUS_INJECTED,
} from './names';
import type { SidecarTemplate } from './template';

export interface JsonPatchOperation {
  readonly op: 'add';
  /** An RFC 6901 JSON pointer into the pod. */
  readonly path: string;
  readonly value: unknown;
}

/** What the pod's annotations (or the template's defaults) decided for this pod. */
export interface Injection {
  /** The app's port inside the pod, which the sidecar forwards to on 127.0.0.1. */
  readonly upstreamPort: number;
  readonly proxyPort: number;
  readonly adminPort: number;
  /** True: an init container with restartPolicy Always (Kubernetes 1.29+ native sidecar). */
  readonly nativeSidecar: boolean;
  /** A ConfigMap whose `config.yaml` becomes the sidecar's config file. */
  readonly configMap?: string;
}

type Json = Record<string, unknown>;

function isMapping(value: unknown): value is Json {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** RFC 6901 section 3: `~` is written `~0` and `/` is written `~1` inside a reference token. */
export function escapePointerToken(token: string): string {
  return token.replace(/~/g, '~0').replace(/\//g, '~1');
}

/** The container to inject: the template's container with the per-pod name, ports and variables. */
export function sidecarContainer(template: SidecarTemplate, injection: Injection): Json {
  const base = structuredClone(template.container) as Json;
  const templateEnv = Array.isArray(base['env']) ? (base['env'] as unknown[]) : [];
  const templateMounts = Array.isArray(base['volumeMounts']) ? (base['volumeMounts'] as unknown[]) : [];
  delete base['name'];
  delete base['env'];
  delete base['volumeMounts'];

  // The injected variables come first, so the template's may refer to them as $(IDEMPOTENCY_PORT).
  const env: Json[] = [
    { name: 'IDEMPOTENCY_UPSTREAM', value: `http://127.0.0.1:${injection.upstreamPort}` },
    { name: 'IDEMPOTENCY_PORT', value: String(injection.proxyPort) },
    { name: 'IDEMPOTENCY_ADMIN_PORT', value: String(injection.adminPort) },
  ];
  const mounts = [...templateMounts];
  if (injection.configMap !== undefined) {
    env.push({ name: 'IDEMPOTENCY_CONFIG', value: `${CONFIG_MOUNT_PATH}/${CONFIG_MAP_KEY}` });
    mounts.push({ name: CONFIG_VOLUME_NAME, mountPath: CONFIG_MOUNT_PATH, readOnly: true });
  }

  return {
    name: CONTAINER_NAME,
    ...base,
    ports: [
      { name: PROXY_PORT_NAME, containerPort: injection.proxyPort, protocol: 'TCP' },
      { name: ADMIN_PORT_NAME, containerPort: injection.adminPort, protocol: 'TCP' },
    ],
    env: [...env, ...templateEnv],
    ...(mounts.length > 0 ? { volumeMounts: mounts } : {}),
    ...(injection.nativeSidecar ? { restartPolicy: 'Always' } : {}),
  };
}

/** The pod volume behind the `config-map` annotation: only its `config.yaml` key, read-only. */
export function configVolume(configMap: string): Json {
  return { name: CONFIG_VOLUME_NAME, configMap: { name: configMap, items: [{ key: CONFIG_MAP_KEY, path: CONFIG_MAP_KEY }] } };
}

/** Appends `value` to the list at `path` of `parent[key]`, or creates the list when there is none. */
function appendTo(parent: Json | undefined, parentPath: string, key: string, value: unknown): JsonPatchOperation {
  return appendAll(parent, parentPath, key, [value])[0]!;
}

/** Appends each of `values` to the list `parent[key]`, or creates the list with all of them at once. */
function appendAll(parent: Json | undefined, parentPath: string, key: string, values: readonly unknown[]): JsonPatchOperation[] {
  const path = `${parentPath}/${escapePointerToken(key)}`;
  if (values.length === 0) return [];
  if (Array.isArray(parent?.[key])) return values.map((value) => ({ op: 'add', path: `${path}/-`, value }));
  return [{ op: 'add', path, value: [...values] }];
}

/**
 * The JSON Patch that injects the sidecar into `pod`: the container (into containers, or at the
 * end of initContainers for a native sidecar), the template's volumes and the config volume when
 * a ConfigMap is named, and the `idempotency-sidecar.io/status: injected` annotation.
 */
export function buildInjectionPatch(pod: Json, template: SidecarTemplate, injection: Injection): JsonPatchOperation[] {
  const spec = isMapping(pod['spec']) ? pod['spec'] : undefined;
  const metadata = isMapping(pod['metadata']) ? pod['metadata'] : undefined;
  const operations: JsonPatchOperation[] = [];

  if (spec === undefined) {
    // A pod always has a spec; were it missing, the add must create it rather than fail.
    operations.push({ op: 'add', path: '/spec', value: {} });
  }
  const container = sidecarContainer(template, injection);
  operations.push(appendTo(spec, '/spec', injection.nativeSidecar ? 'initContainers' : 'containers', container));
  const volumes: unknown[] = template.volumes.map((volume) => structuredClone(volume));
  if (injection.configMap !== undefined) volumes.push(configVolume(injection.configMap));
  operations.push(...appendAll(spec, '/spec', 'volumes', volumes));

  if (metadata === undefined) {
    operations.push({ op: 'add', path: '/metadata', value: { annotations: { [ANNOTATIONS.status]: STATUS_INJECTED } } });
  } else if (!isMapping(metadata['annotations'])) {
    operations.push({ op: 'add', path: '/metadata/annotations', value: { [ANNOTATIONS.status]: STATUS_INJECTED } });
  } else {
    operations.push({ op: 'add', path: `/metadata/annotations/${escapePointerToken(ANNOTATIONS.status)}`, value: STATUS_INJECTED });
  }
  return operations;
}

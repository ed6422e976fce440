/**
 * The sidecar template: the file (YAML or JSON; the Helm chart renders it into a ConfigMap) that
 * says what the webhook injects. It is the Kubernetes Container to inject, plus one key of the
 * webhook's own:
 *
 * ```yaml
 * nativeSidecar: false      # true: an init container with restartPolicy: Always (Kubernetes 1.29+)
 * volumes:                  # optional: pod volumes the container's volumeMounts name (Secrets with
 *   - name: idempotency-sidecar-tls  #   TLS files, encryption keys), added to the pod with it
 *     secret: { secretName: payments-tls }
 * name: idempotency-sidecar # optional; no other name
 * image: ghcr.io/example/idempotency-sidecar:0.1.0
 * ports:                    # optional: the defaults for pods without proxy-port/admin-port
 *   - { name: idem-proxy, containerPort: 8480 }
 *   - { name: idem-admin, containerPort: 9480 }
 * env: [...]                # IDEMPOTENCY_REDIS_URL from a Secret, and so on
 * ```
 *
 * The container is passed through as written, except for what the webhook sets per pod: the
 * name, the two ports (from the pod's annotations, with the template's ports, else its
 * IDEMPOTENCY_PORT / IDEMPOTENCY_ADMIN_PORT values, else 8480 and 9480 as defaults),
 * IDEMPOTENCY_UPSTREAM, IDEMPOTENCY_CONFIG and restartPolicy. `volumes` is not part of the
 * Container: a container can only mount volumes of its pod, so the webhook adds these to the pod
 * beside it. What would be silently overridden, contradict itself, or mount a volume the pod will
 * not have is refused here, at start-up, rather than discovered at the first pod.
 * Kubernetes validates everything else when the patched pod is admitted.
 */
import { isMap, parseDocument } from 'yaml';
import { yamlErrorLines } from '../config/yaml-errors';
import {
  ADMIN_PORT_NAME,
  ANNOTATIONS,
  CONFIG_MOUNT_PATH,
  CONFIG_VOLUME_NAME,
  CONTAINER_NAME,
  DEFAULT_ADMIN_PORT,
  DEFAULT_PROXY_PORT,
  PROXY_PORT_NAME,
} from './names';

export interface SidecarTemplate {
  readonly nativeSidecar: boolean;
  /** Pod volumes the container mounts (from the template's `volumes:`), added to every injected pod. */
  readonly volumes: readonly Readonly<Record<string, unknown>>[];
  /** The proxy port of pods without the proxy-port annotation. */
  readonly proxyPort: number;
  /** The admin port of pods without the admin-port annotation. */
  readonly adminPort: number;
  /**
   * The Container as written, without what the webhook sets per pod: name, ports, restartPolicy,
   * and the IDEMPOTENCY_PORT and IDEMPOTENCY_ADMIN_PORT variables.
   */
  readonly container: Readonly<Record<string, unknown>>;
}

/** Variables that only a pod's annotations can give: a template value would be wrong for every pod. */
export const PER_POD_VARIABLES: Readonly<Record<string, string>> = {
  IDEMPOTENCY_UPSTREAM: ANNOTATIONS.upstreamPort,
  IDEMPOTENCY_CONFIG: ANNOTATIONS.configMap,
};

/** Variables the template may set as defaults, and the port each stands for. */
const PORT_VARIABLES = { IDEMPOTENCY_PORT: 'proxyPort', IDEMPOTENCY_ADMIN_PORT: 'adminPort' } as const;
const PORT_NAMES = { [PROXY_PORT_NAME]: 'proxyPort', [ADMIN_PORT_NAME]: 'adminPort' } as const;

export type TemplateResult = { readonly template: SidecarTemplate } | { readonly problems: readonly string[] };

/** A Kubernetes volume name (RFC 1123 label). */
const DNS_LABEL = /^(?=.{1,63}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

function isMapping(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) return 'a list';
  if (isMapping(value)) return 'a mapping';
  return String(value);
}

function portNumber(value: unknown): number | undefined {
  const n = typeof value === 'number' ? value : typeof value === 'string' && /^\d+$/.test(value.trim()) ? Number(value) : NaN;
  return Number.isInteger(n) && n >= 1 && n <= 65_535 ? n : undefined;
}

/**
 * Parses and checks the template's text (YAML; JSON is YAML too). Problems are whole lines that
 * start with `where` (the setting and the file) and the key inside the file.
 */
export function parseSidecarTemplate(text: string, where: string): TemplateResult {
  const document = parseDocument(text, { prettyErrors: true });
  if (document.errors.length > 0) return { problems: yamlErrorLines(document, where, 'YAML or JSON') };
  if (!isMap(document.contents)) {
    return { problems: [`${where}: is not a mapping; write the Kubernetes Container to inject (image:, env:, ...), optionally with nativeSidecar:`] };
  }
  let raw: Record<string, unknown>;
  try {
    raw = document.toJS() as Record<string, unknown>;
  } catch (error) {
    return { problems: [`${where}: is not usable YAML: ${error instanceof Error ? error.message : String(error)}`] };
  }

  const problems: string[] = [];
  const at = (key: string, message: string): void => {
    problems.push(`${where}: ${key}: ${message}`);
  };
  const { nativeSidecar: native, volumes: rawVolumes, ...container } = raw;

  let nativeSidecar = false;
  if (native !== undefined && native !== null) {
    if (native === true || native === 'true') nativeSidecar = true;
    else if (native === false || native === 'false') nativeSidecar = false;
    else at('nativeSidecar', `${show(native)} is not a boolean; use true or false`);
  }

  const volumes: Record<string, unknown>[] = [];
  if (rawVolumes !== undefined && rawVolumes !== null) {
    if (!Array.isArray(rawVolumes)) {
      at('volumes', `${show(rawVolumes)} is not a list of pod volumes; write - name: ... secret: { secretName: ... } items`);
    } else {
      for (const [i, entry] of rawVolumes.entries()) {
        const volumeName: unknown = isMapping(entry) ? entry['name'] : undefined;
        if (!isMapping(entry) || typeof volumeName !== 'string' || !DNS_LABEL.test(volumeName)) {
          at(`volumes[${i}]`, 'is not a pod volume; each item needs a name of lower-case letters, digits and - (at most 63), e.g. idempotency-sidecar-tls');
        } else if (volumeName === CONFIG_VOLUME_NAME) {
          at(`volumes[${i}]`, `${CONFIG_VOLUME_NAME} is the webhook's, from ${ANNOTATIONS.configMap}; use another name`);
        } else if (volumes.some((v) => v['name'] === volumeName)) {
          at(`volumes[${i}]`, `${volumeName} is declared twice; a pod's volume names are unique`);
        } else {
          volumes.push(entry);
        }
      }
    }
  }

  const name = container['name'];
  if (name !== undefined && name !== CONTAINER_NAME) {
    at('name', `${show(name)}: leave it out or write ${CONTAINER_NAME}; the webhook recognises injected pods by this name`);
  }
  delete container['name'];
  const image = container['image'];
  if (typeof image !== 'string' || image.trim() === '') {
    at('image', image === undefined ? 'is missing; give the sidecar image, e.g. ghcr.io/example/idempotency-sidecar:0.1.0' : `${show(image)} is not an image reference`);
  }
  if (container['restartPolicy'] !== undefined) {
    at('restartPolicy', 'leave it out: nativeSidecar (or the pod annotation) decides it');
  }

  // The defaults of the two ports, from the declared ports and the variables, which must agree.
  const declared: Partial<Record<'proxyPort' | 'adminPort', { value: number; from: string }>> = {};
  const declare = (port: 'proxyPort' | 'adminPort', value: number, from: string): void => {
    const earlier = declared[port];
    if (earlier !== undefined && earlier.value !== value) {
      at(from, `${value} contradicts ${earlier.from} (${earlier.value}); both give the ${port === 'proxyPort' ? 'proxy' : 'admin'} port`);
    }
    declared[port] ??= { value, from };
  };

  const ports = container['ports'];
  if (ports !== undefined && ports !== null) {
    if (!Array.isArray(ports)) {
      at('ports', `${show(ports)} is not a list of ports`);
    } else {
      for (const [i, entry] of ports.entries()) {
        const portName: unknown = isMapping(entry) ? entry['name'] : undefined;
        const port = typeof portName === 'string' ? PORT_NAMES[portName as keyof typeof PORT_NAMES] : undefined;
        if (!isMapping(entry) || port === undefined) {
          at(`ports[${i}]`, `the sidecar listens on two ports only: name them ${PROXY_PORT_NAME} and ${ADMIN_PORT_NAME}`);
          continue;
        }
        const value = portNumber(entry['containerPort']);
        if (value === undefined) at(`ports[${i}].containerPort`, `${show(entry['containerPort'])} is not a port; use a whole number from 1 to 65535`);
        else declare(port, value, `ports[${i}]`);
      }
    }
  }
  delete container['ports'];

  const env = container['env'];
  let keptEnv: unknown[] | undefined;
  if (env !== undefined && env !== null) {
    if (!Array.isArray(env)) {
      at('env', `${show(env)} is not a list of variables; write - name: ... value: ... items`);
    } else {
      keptEnv = [];
      for (const [i, entry] of env.entries()) {
        const variable: unknown = isMapping(entry) ? entry['name'] : undefined;
        if (typeof variable !== 'string' || variable === '') {
          at(`env[${i}]`, 'is not a variable; each item needs a name, e.g. - name: IDEMPOTENCY_REDIS_URL');
          continue;
        }
        const annotation = PER_POD_VARIABLES[variable];
        const port = PORT_VARIABLES[variable as keyof typeof PORT_VARIABLES];
        if (annotation !== undefined) {
          at(`env[${i}]`, `${variable} is set per pod by the webhook (from ${annotation}); remove it`);
        } else if (port === undefined) {
          keptEnv.push(entry);
        } else {
          const value = portNumber((entry as Record<string, unknown>)['value']);
          if (value === undefined) {
            at(`env[${i}]`, `${variable} is the default of a port the webhook sets per pod: give a literal port as value, or leave it out`);
          } else {
            declare(port, value, `env[${i}] (${variable})`);
          }
        }
      }
    }
  }
  if (keptEnv !== undefined) container['env'] = keptEnv;

  // Every name the template declares, a refused volume's too, so that its mounts are not reported twice.
  const declaredVolumes = new Set<unknown>(Array.isArray(rawVolumes) ? rawVolumes.map((v) => (isMapping(v) ? v['name'] : undefined)) : []);
  const mounts = container['volumeMounts'];
  if (mounts !== undefined && mounts !== null) {
    if (!Array.isArray(mounts)) {
      at('volumeMounts', `${show(mounts)} is not a list of volume mounts`);
    } else {
      for (const [i, entry] of mounts.entries()) {
        if (!isMapping(entry)) at(`volumeMounts[${i}]`, 'is not a volume mount (a mapping)');
        else if (entry['name'] === CONFIG_VOLUME_NAME || entry['mountPath'] === CONFIG_MOUNT_PATH) {
          at(`volumeMounts[${i}]`, `${CONFIG_VOLUME_NAME} at ${CONFIG_MOUNT_PATH} is the webhook's, from ${ANNOTATIONS.configMap}; use another name and path`);
        } else if (!declaredVolumes.has(entry['name'])) {
          // The pods the webhook will see are unknown here: a mount must name a volume it adds.
          at(`volumeMounts[${i}]`, `names volume ${show(entry['name'])}, which volumes: does not declare; declare it there, and the webhook adds it to each pod`);
        }
      }
    }
  }

  const proxyPort = declared.proxyPort?.value ?? DEFAULT_PROXY_PORT;
  const adminPort = declared.adminPort?.value ?? DEFAULT_ADMIN_PORT;
  if (proxyPort === adminPort) {
    at('ports', `the proxy and admin ports are both ${proxyPort}; the two listeners need different ports`);
  }

  if (problems.length > 0) return { problems };
  return { template: { nativeSidecar, volumes, proxyPort, adminPort, container } };
}

/**
 * Every name the admission webhook shares with the pods it mutates and with the Helm chart:
 * annotations, the injected container, its ports, the config volume. Nothing else in src/webhook
 * spells these strings.
 */

export const ANNOTATION_PREFIX = 'idempotency-sidecar.io/';

export const ANNOTATIONS = {
  /** `"true"`: inject the sidecar into this pod. `"false"` or absent: leave it alone. */
  inject: `${ANNOTATION_PREFIX}inject`,
  /** Required when injecting: the app's port (number, or the name of a container port) the sidecar forwards to. */
  upstreamPort: `${ANNOTATION_PREFIX}upstream-port`,
  /** The sidecar's proxy port; default: the template's `idem-proxy` port, else 8480. */
  proxyPort: `${ANNOTATION_PREFIX}proxy-port`,
  /** The sidecar's admin port (health, readiness, metrics); default: the template's `idem-admin` port, else 9480. */
  adminPort: `${ANNOTATION_PREFIX}admin-port`,
  /** A ConfigMap in the pod's namespace whose `config.yaml` key becomes the sidecar's YAML config file. */
  configMap: `${ANNOTATION_PREFIX}config-map`,
  /** `"true"`/`"false"`: overrides the template's `nativeSidecar`. */
  nativeSidecar: `${ANNOTATION_PREFIX}native-sidecar`,
  /** Written by the webhook: `injected`. */
  status: `${ANNOTATION_PREFIX}status`,
} as const;

export const STATUS_INJECTED = 'injected';

/** The injected container's name; a pod that has a container by this name is never patched again. */
export const CONTAINER_NAME = 'idempotency-sidecar';

/** Names of the injected container's ports, for probes and a Service's targetPort (at most 15 characters). */
export const PROXY_PORT_NAME = 'idem-proxy';
export const ADMIN_PORT_NAME = 'idem-admin';

/** The ports when neither the pod nor the template says: clear of the usual 8080/9090 an app may use. */
export const DEFAULT_PROXY_PORT = 8480;
export const DEFAULT_ADMIN_PORT = 9480;

/** The volume made from the `config-map` annotation, where it is mounted, and the key it reads. */
export const CONFIG_VOLUME_NAME = 'idempotency-sidecar-config';
export const CONFIG_MOUNT_PATH = '/etc/idempotency-sidecar';
export const CONFIG_MAP_KEY = 'config.yaml';

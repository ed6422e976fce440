/**
 * Validates rendered objects against the Kubernetes schemas: the kubernetes-models classes
 * (the API's OpenAPI schemas, compiled), and @kubernetes-models/prometheus-operator and
 * /cert-manager for the custom resources. An object whose apiVersion and kind have no class here
 * fails: a new kind in the chart needs its schema added, never a silent skip.
 *
 * Those schemas check types, required fields and enums, not unknown fields, nor the rules the API
 * server adds in code (name formats, label values, port names, unique names in a list); the most
 * useful of those are checked here too.
 */
import { render, type RenderedObject, type RenderOptions } from './render';
import { Certificate } from '@kubernetes-models/cert-manager/cert-manager.io/v1/Certificate';
import { Issuer } from '@kubernetes-models/cert-manager/cert-manager.io/v1/Issuer';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';
import { MutatingWebhookConfiguration } from 'kubernetes-models/admissionregistration.k8s.io/v1/MutatingWebhookConfiguration';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Container } from 'kubernetes-models/v1/Container';
import { Pod } from 'kubernetes-models/v1/Pod';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import type { KubeObject } from './render';

type Model = new (data: never) => { validate(): void };

const MODELS: Readonly<Record<string, Model>> = {
  'v1/ConfigMap': ConfigMap,
  'v1/Pod': Pod,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'v1/ServiceAccount': ServiceAccount,
  'apps/v1/Deployment': Deployment,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'admissionregistration.k8s.io/v1/MutatingWebhookConfiguration': MutatingWebhookConfiguration,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
  'cert-manager.io/v1/Issuer': Issuer,
  'cert-manager.io/v1/Certificate': Certificate,
};

const CLUSTER_SCOPED = new Set(['MutatingWebhookConfiguration']);
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const LABEL_NAME = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const PORT_NAME = /^(?=.*[a-z])[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$/;
const ENV_NAME = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function describe(object: KubeObject): string {
  return `${object.apiVersion} ${object.kind} ${object.metadata?.name ?? '(no name)'}`;
}

function fail(object: KubeObject, message: string): never {
  throw new Error(`${describe(object)}: ${message}`);
}

function checkLabels(object: KubeObject, where: string, labels: Record<string, unknown> | undefined): void {
  for (const [key, value] of Object.entries(labels ?? {})) {
    if (!LABEL_NAME.test(key) || key.split('/').pop()!.length > 63) fail(object, `${where}: label key ${JSON.stringify(key)} is invalid`);
    if (typeof value !== 'string' || value.length > 63 || !LABEL_VALUE.test(value)) {
      fail(object, `${where}: label ${key} has the invalid value ${JSON.stringify(value)}`);
    }
  }
}

function uniqueNames(object: KubeObject, where: string, items: readonly { name?: unknown }[] | undefined): void {
  const seen = new Set<unknown>();
  for (const item of items ?? []) {
    if (seen.has(item.name)) fail(object, `${where}: ${String(item.name)} appears twice`);
    seen.add(item.name);
  }
}

interface ContainerLike {
  name?: string;
  ports?: { name?: string; containerPort?: number }[];
  env?: { name?: string }[];
  volumeMounts?: { name?: string }[];
}

/** What the API server checks on a container beyond its OpenAPI schema. */
export function checkContainer(object: KubeObject, where: string, container: ContainerLike): void {
  for (const port of container.ports ?? []) {
    if (port.name !== undefined && !PORT_NAME.test(port.name)) fail(object, `${where}: port name ${port.name} is not an IANA service name (at most 15 characters)`);
  }
  uniqueNames(object, `${where}.ports`, container.ports);
  uniqueNames(object, `${where}.env`, container.env);
  for (const variable of container.env ?? []) {
    if (typeof variable.name !== 'string' || !ENV_NAME.test(variable.name)) fail(object, `${where}: env name ${String(variable.name)} is invalid`);
  }
}

interface PodSpecLike {
  containers?: ContainerLike[];
  initContainers?: ContainerLike[];
  volumes?: { name?: string }[];
}

function checkPodSpec(object: KubeObject, where: string, spec: PodSpecLike): void {
  const all = [...(spec.initContainers ?? []), ...(spec.containers ?? [])];
  uniqueNames(object, `${where}.containers`, all);
  uniqueNames(object, `${where}.volumes`, spec.volumes);
  const volumes = new Set((spec.volumes ?? []).map((volume) => volume.name));
  const portNames = new Set<string>();
  for (const container of all) {
    checkContainer(object, `${where}.containers[${String(container.name)}]`, container);
    for (const mount of container.volumeMounts ?? []) {
      if (!volumes.has(mount.name)) fail(object, `${where}: container ${String(container.name)} mounts ${String(mount.name)}, which is not a volume of the pod`);
    }
    for (const port of container.ports ?? []) {
      if (port.name === undefined) continue;
      if (portNames.has(port.name)) fail(object, `${where}: port name ${port.name} is used by two containers`);
      portNames.add(port.name);
    }
  }
}

/** Validates one rendered object; throws an Error naming the object and every problem. */
export function validateObject(object: KubeObject): void {
  if (typeof object !== 'object' || object === null) throw new Error(`not an object: ${JSON.stringify(object)}`);
  const key = `${object.apiVersion}/${object.kind}`;
  const model = MODELS[key];
  if (model === undefined) {
    throw new Error(`${describe(object)}: no schema for ${key}: add its kubernetes-models class to test/chart/kube-validate.ts`);
  }
  try {
    new model(object as never).validate();
  } catch (error) {
    fail(object, `does not match its schema: ${error instanceof Error ? error.message : String(error)}`);
  }

  const { name, namespace } = object.metadata;
  if (name.length > 253 || !DNS_SUBDOMAIN.test(name)) fail(object, 'metadata.name is not a DNS subdomain');
  if (object.kind === 'Service' && (name.length > 63 || !DNS_LABEL.test(name))) fail(object, 'a Service name must be a DNS label (at most 63 characters)');
  if (CLUSTER_SCOPED.has(object.kind) ? namespace !== undefined : namespace === undefined) {
    fail(object, CLUSTER_SCOPED.has(object.kind) ? 'a cluster-scoped object has a namespace' : 'metadata.namespace is missing');
  }
  checkLabels(object, 'metadata.labels', object.metadata.labels);

  if (object.kind === 'Deployment') {
    const spec = object['spec'] as { selector: { matchLabels: Record<string, string> }; template: { metadata: { labels: Record<string, string> }; spec: PodSpecLike } };
    checkLabels(object, 'spec.template.metadata.labels', spec.template.metadata.labels);
    for (const [label, value] of Object.entries(spec.selector.matchLabels)) {
      if (spec.template.metadata.labels[label] !== value) fail(object, `the selector's ${label}=${value} does not match the pod template's labels`);
    }
    checkPodSpec(object, 'spec.template.spec', spec.template.spec);
  }
  if (object.kind === 'Pod') checkPodSpec(object, 'spec', object['spec'] as PodSpecLike);
  if (object.kind === 'Secret') {
    for (const [dataKey, value] of Object.entries((object['data'] as Record<string, string> | undefined) ?? {})) {
      if (!BASE64.test(value)) fail(object, `data.${dataKey} is not base64`);
    }
  }
  if (object.kind === 'MutatingWebhookConfiguration') {
    const webhooks = object['webhooks'] as { name: string }[];
    uniqueNames(object, 'webhooks', webhooks);
    for (const webhook of webhooks) {
      if (webhook.name.split('.').length < 3 || !DNS_SUBDOMAIN.test(webhook.name)) fail(object, `webhook name ${webhook.name} is not fully qualified`);
    }
  }
}

/** Validates a Container (the webhook's template holds one) against its schema. */
export function validateContainer(object: KubeObject, where: string, container: Record<string, unknown>): void {
  try {
    new Container(container as never).validate();
  } catch (error) {
    fail(object, `${where} does not match the Container schema: ${error instanceof Error ? error.message : String(error)}`);
  }
  checkContainer(object, where, container);
}

/** Renders the chart and validates every object against the Kubernetes schemas, naming the source of the first that fails. */
export function renderValid(options: RenderOptions): RenderedObject[] {
  const rendered = render(options);
  for (const { object, source } of rendered) {
    try {
      validateObject(object);
    } catch (error) {
      throw new Error(`${source}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    }
  }
  return rendered;
}

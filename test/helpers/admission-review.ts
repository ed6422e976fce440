/**
 * AdmissionReviews for the webhook's tests: a pod CREATE request as the API server sends it, and
 * the pod as the API server stores it after the webhook's answer (its JSON patch applied).
 */
import { reviewAdmission } from '../../src/webhook/admission';
import type { SidecarTemplate } from '../../src/webhook/template';
import { applyJsonPatch, type PatchOperation } from './json-patch';

/** A v1 AdmissionReview of a pod CREATE in namespace `shop`; `request` overrides its fields. */
export function podCreateReview(object: unknown, request: Readonly<Record<string, unknown>> = {}): Record<string, unknown> {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: '705ab4f5-6393-11e8-b7cc-42010a800002',
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      namespace: 'shop',
      operation: 'CREATE',
      object,
      ...request,
    },
  };
}

/** The pod after the webhook admitted it and its patch was applied; throws when it was not admitted. */
export function injectedPod<T extends object>(pod: T, template: SidecarTemplate): T {
  const outcome = reviewAdmission(podCreateReview(pod), template);
  if (!outcome.ok) throw new Error(`the webhook answered 400: ${outcome.message}`);
  const { response } = outcome.review;
  if (!response.allowed) throw new Error(`the webhook denied the pod: ${JSON.stringify(response.status)}`);
  if (response.patch === undefined) return structuredClone(pod);
  const operations = JSON.parse(Buffer.from(response.patch, 'base64').toString('utf8')) as PatchOperation[];
  return applyJsonPatch<T>(structuredClone(pod), operations);
}

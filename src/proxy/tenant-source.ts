/**
 * Where the proxy takes a request's tenant from (the `tenantFrom` setting): the tenant headers,
 * or the client certificate the TLS handshake verified. Only the hash leaves this module.
 */
import type http from 'node:http';
import { TLSSocket } from 'node:tls';
import type { TenantMissingMode, TenantSource } from '../config/settings';
import { certificateTenantId, tenantId } from '../engine/tenant';

/**
 * The tenant id of a request; undefined when the request carries no identity to scope its key to
 * (none of the tenant headers under `tenantMissing: reject`, or no verified certificate).
 */
export type TenantOf = (req: http.IncomingMessage) => string | undefined;

export function tenantSource(source: TenantSource, tenantHeaders: readonly string[], missing: TenantMissingMode = 'reject'): TenantOf {
  if (source === 'headers') {
    return (req) => {
      const values = tenantHeaders.map((name) => req.headersDistinct[name]?.join(', '));
      // A client that sends none of them is not identified: sharing a tenant with every other such
      // client would let them meet (a replay of another's payment), unless the operator says so.
      if (missing === 'reject' && values.every((value) => value === undefined)) return undefined;
      return tenantId(values);
    };
  }
  // One handshake, one certificate: hash it once per connection, not once per request.
  const bySocket = new WeakMap<TLSSocket, string>();
  return (req) => {
    const socket = req.socket;
    // The listener refuses unverified clients at the handshake; this re-check makes a listener
    // built without that option fail closed instead of scoping by an unverified certificate.
    if (!(socket instanceof TLSSocket) || !socket.authorized) return undefined;
    const known = bySocket.get(socket);
    if (known !== undefined) return known;
    const certificate = socket.getPeerX509Certificate();
    if (certificate === undefined) return undefined;
    const tenant = certificateTenantId(certificate.subject, certificate.issuer);
    bySocket.set(socket, tenant);
    return tenant;
  };
}

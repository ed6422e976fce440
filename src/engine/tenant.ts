/**
 * The tenant: a hash of what identifies the client, either the values of the tenant headers
 * (default `Authorization`) or the verified client certificate's subject and issuer. Two clients
 * that use the same key never meet, and the raw credential or subject never reaches the store or
 * the logs.
 */
import { createHash, hash } from 'node:crypto';

/** 16 hex characters (64 bits): short enough for logs and the admin API, wide enough not to collide. */
const TENANT_HEX = 16;

export function tenantId(headerValues: readonly (string | undefined)[]): string {
  // The same bytes as one Hash update per value, hashed in one call: no Hash object per request.
  let text = '';
  for (const value of headerValues) {
    // An absent header and an empty one are different clients.
    text += `${value === undefined ? '\u0000' : `${value.length}:${value}`}\n`;
  }
  return hash('sha256', text, 'hex').slice(0, TENANT_HEX);
}

/**
 * The tenant of a verified client certificate: its subject AND its issuer's name. The subject
 * alone is only what some CA wrote; when the trusted bundle holds two CAs (an internal one and a
 * partner's), both can issue `CN=acme`, and those are two clients that must not share records.
 * The issuer's name, rather than its key or fingerprint, so that a CA renewed under the same name
 * (new key, new validity) keeps its clients' tenants, as does a client whose own certificate is
 * renewed. The hashed text starts with a label that no header tenant's text can start with (those
 * start with NUL or a digit), so a certificate tenant and a header tenant never coincide.
 */
export function certificateTenantId(subject: string, issuer: string): string {
  return createHash('sha256')
    .update('client-certificate\n')
    .update(`${subject.length}:${subject}\n${issuer.length}:${issuer}\n`)
    .digest('hex')
    .slice(0, TENANT_HEX);
}

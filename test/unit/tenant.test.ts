/**
 * The tenant hashes: distinct identities never share a tenant, within a source or across the two.
 */
import fc from 'fast-check';
import { certificateTenantId, tenantId } from '../../src/engine/tenant';

describe('certificateTenantId', () => {
  it('is the same for the same subject and issuer (a renewed certificate keeps its tenant)', () => {
    expect(certificateTenantId('O=acme\nCN=billing', 'CN=client-ca')).toBe(certificateTenantId('O=acme\nCN=billing', 'CN=client-ca'));
    expect(certificateTenantId('O=acme\nCN=billing', 'CN=client-ca')).toMatch(/^[0-9a-f]{16}$/);
  });

  it('tells the same subject from two issuers apart', () => {
    expect(certificateTenantId('CN=acme', 'CN=internal-ca')).not.toBe(certificateTenantId('CN=acme', 'CN=partner-ca'));
  });

  it('never merges two different (subject, issuer) pairs, even when their concatenations match', () => {
    // Without the length prefixes, ("a\nb", "c") and ("a", "b\nc") would hash the same text.
    expect(certificateTenantId('CN=a\nCN=b', 'CN=c')).not.toBe(certificateTenantId('CN=a', 'CN=b\nCN=c'));
    fc.assert(
      fc.property(fc.string(), fc.string(), fc.string(), fc.string(), (s1, i1, s2, i2) => {
        fc.pre(s1 !== s2 || i1 !== i2);
        return certificateTenantId(s1, i1) !== certificateTenantId(s2, i2);
      }),
    );
  });

  it('never coincides with a header tenant, whatever the header values', () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), fc.array(fc.option(fc.string(), { nil: undefined }), { maxLength: 3 }), (subject, issuer, headers) => {
        return certificateTenantId(subject, issuer) !== tenantId(headers);
      }),
    );
    // The one header list that spells out the certificate's text is still another tenant.
    expect(certificateTenantId('CN=a', 'CN=b')).not.toBe(tenantId(['client-certificate', 'CN=a', 'CN=b']));
  });
});

describe('tenantId', () => {
  it('tells an absent header from an empty one', () => {
    expect(tenantId([undefined])).not.toBe(tenantId(['']));
  });
});

/**
 * PKCS#10 request for the intermediate. Vault's sign-intermediate (without use_csr_values) takes only
 * the public key from it and builds subject and extensions from explicit fields, so the CSR carries the
 * same subject and SANs for tools that do read it (and for a human running `openssl req -text`).
 */
import { x509 } from './x509.js';
import type { GeneratedKey } from './keys.js';

export interface SubjectSpec {
  commonName: string;
  organization: string;
  /** CLUSTER_NAME, as L=, so an intermediate says which cluster it serves. */
  locality: string | undefined;
  dnsSans: readonly string[];
}

function escapeRdn(value: string): string {
  return value.replace(/([,+"\\<>;=#])/g, '\\$1');
}

/** RFC 4514 form of the subject, e.g. `CN=Intermediate CA, O=Istio, L=cluster1`. */
export function subjectDn(s: SubjectSpec): string {
  const parts = [`CN=${escapeRdn(s.commonName)}`, `O=${escapeRdn(s.organization)}`];
  if (s.locality) parts.push(`L=${escapeRdn(s.locality)}`);
  return parts.join(', ');
}

/** Builds and signs the CSR. Returns PEM ("CERTIFICATE REQUEST"). */
export async function buildCsr(key: GeneratedKey, subject: SubjectSpec): Promise<string> {
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(true, 0, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
  ];
  if (subject.dnsSans.length) {
    extensions.push(new x509.SubjectAlternativeNameExtension(subject.dnsSans.map((value) => ({ type: 'dns' as const, value }))));
  }
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: subjectDn(subject),
    keys: key.keys,
    signingAlgorithm: key.signingAlgorithm,
    extensions,
  });
  return csr.toString('pem') + '\n';
}

/**
 * The bundle istiod reads: four files, by the names istiod (pkg/security/pki/ca) looks for in
 * ROOT_CA_DIR. Contents are kept as the exact bytes to write: root-cert.pem in particular must stay
 * byte-identical across renewals, so it is never re-encoded once published.
 */
import type { CertInfo } from './cert-info.js';

export interface BundleFiles {
  /** ca-key.pem: PKCS#8 PEM of the intermediate's private key. */
  caKey: string;
  /** ca-cert.pem: the intermediate. */
  caCert: string;
  /** cert-chain.pem: the intermediate, then its issuers in order, root last. */
  certChain: string;
  /** root-cert.pem: the trust anchor(s). */
  rootCert: string;
}

export const BUNDLE_FILES: Readonly<Record<keyof BundleFiles, string>> = {
  caCert: 'ca-cert.pem',
  caKey: 'ca-key.pem',
  certChain: 'cert-chain.pem',
  rootCert: 'root-cert.pem',
};

/** A bundle whose checks passed, with the parsed facts callers schedule and report from. */
export interface VerifiedBundle {
  files: BundleFiles;
  intermediate: CertInfo;
  /** cert-chain.pem, parsed, intermediate first. */
  chain: CertInfo[];
  /** root-cert.pem, parsed. */
  roots: CertInfo[];
  /** The root the chain verified to. */
  anchor: CertInfo;
}

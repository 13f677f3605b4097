/**
 * Verifies a bundle the way istiod does before it swaps CAs (istio pkg/security/pki/util
 * keycertbundle.go Verify: Go x509 Verify with root-cert.pem as roots and cert-chain.pem as
 * intermediates, default options, then the key pair), plus what istiod does not check but a mesh
 * depends on: cert-chain.pem starts with ca-cert.pem (istiod serves it to every workload as is), the
 * chain is in issuer order, strong keys and hashes. Each failure has its own code and message.
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { VerificationError } from '../common/errors.js';
import type { BundleFiles, VerifiedBundle } from './bundle.js';
import { certsFromPem, isIssuedBy, type CertInfo } from './cert-info.js';
import { pemBlocks } from './pem.js';
import { x509 } from './x509.js';

const EKU_SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const EKU_ANY = '2.5.29.37.0';
// RSA-PSS (always with a SHA-2 hash from Vault and Go's accepted set) counts as strong.
const STRONG_HASHES = new Set(['SHA-256', 'SHA-384', 'SHA-512', 'PSS']);
/**
 * Critical extensions Go's x509 understands; any other critical extension makes Verify fail
 * (UnhandledCriticalExtension), so istiod would refuse the bundle.
 */
const HANDLED_CRITICAL = new Set([
  '2.5.29.14', '2.5.29.15', '2.5.29.17', '2.5.29.19', '2.5.29.30', '2.5.29.31', '2.5.29.32', '2.5.29.33',
  '2.5.29.35', '2.5.29.36', '2.5.29.37', '2.5.29.54', '1.3.6.1.5.5.7.1.1',
]);

export interface VerifyOptions {
  /** Epoch ms to check validity at. */
  now: number;
}

function fail(code: string, message: string, cause?: unknown): never {
  throw new VerificationError(message, code, cause);
}

function when(ms: number): string {
  return new Date(ms).toISOString();
}

function parseKey(pem: string): KeyObject {
  const blocks = pemBlocks(pem);
  if (blocks.length !== 1) fail('KEY_INVALID', `ca-key.pem must hold exactly one PEM block, found ${blocks.length}`);
  const label = blocks[0]!.label;
  if (!['PRIVATE KEY', 'RSA PRIVATE KEY', 'EC PRIVATE KEY'].includes(label)) {
    fail('KEY_INVALID', `ca-key.pem holds a "${label}" block; istiod reads an unencrypted PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY`);
  }
  try {
    return createPrivateKey(pem);
  } catch (err) {
    return fail('KEY_INVALID', 'ca-key.pem does not hold a readable private key', err);
  }
}

/** CA:TRUE and keyCertSign: what a certificate needs to sign workload certificates or other CAs. */
function checkCaCert(c: CertInfo, name: string): void {
  if (!c.isCa) fail('NOT_CA', `${name} ("${c.subject}") is not a CA certificate (basicConstraints CA:TRUE is missing)`);
  if (c.keyUsage !== undefined && (c.keyUsage & x509.KeyUsageFlags.keyCertSign) === 0) {
    fail('MISSING_KEY_CERT_SIGN', `${name} ("${c.subject}") lacks keyUsage keyCertSign, so it cannot sign certificates`);
  }
}

/**
 * `below`: how many CA certificates the path holds under `c`, counting ca-cert.pem. istiod's own check
 * treats ca-cert.pem as a leaf and would pass a root with pathlen 0, but every workload certificate
 * would then fail verification one level further down; so the mesh's view is checked here.
 */
function checkPathLen(c: CertInfo, below: number): void {
  if (c.pathLen !== undefined && c.pathLen < below) {
    fail('PATH_LEN', `"${c.subject}" allows ${c.pathLen} CA certificate(s) below it but the chain puts ${below} there, so workload certificates would not verify`);
  }
}

function checkValidity(c: CertInfo, name: string, now: number): void {
  if (now < c.notBefore) fail('NOT_YET_VALID', `${name} ("${c.subject}") is not valid before ${when(c.notBefore)} (check clock skew between Vault and this node)`);
  if (now >= c.notAfter) fail('EXPIRED', `${name} ("${c.subject}") expired at ${when(c.notAfter)}`);
}

function checkSignatureHash(c: CertInfo, name: string): void {
  if (!STRONG_HASHES.has(c.signatureHash)) fail('WEAK_SIGNATURE', `${name} is signed with ${c.signatureHash}; istiod requires SHA-256 or stronger`);
}

/** What Go's Verify checks on every certificate of the path, with istiod's default options. */
function checkPathCert(c: CertInfo, name: string): void {
  // With an extended key usage present, serverAuth (or any) must be allowed, all the way up.
  const eku = c.extKeyUsage;
  if (eku !== undefined && !eku.includes(EKU_SERVER_AUTH) && !eku.includes(EKU_ANY)) {
    fail('EKU_EXCLUDES_SERVER_AUTH', `${name} ("${c.subject}") has an extended key usage (${eku.join(', ')}) without serverAuth; istiod's verification would reject it`);
  }
  const unhandled = c.criticalExtensions.filter((o) => !HANDLED_CRITICAL.has(o));
  if (unhandled.length) fail('UNHANDLED_CRITICAL_EXTENSION', `${name} ("${c.subject}") has a critical extension istiod cannot process (${unhandled.join(', ')})`);
}

function checkStrength(c: CertInfo, name: string): void {
  checkSignatureHash(c, name);
  const ok = (c.keyType === 'rsa' && (c.keyBits ?? 0) >= 2048) || (c.keyType === 'ec' && (c.keyBits === 256 || c.keyBits === 384));
  if (!ok) fail('WEAK_KEY', `${name} has a ${c.keyType ?? 'unknown'} ${c.keyBits ?? '?'}-bit key; use RSA >= 2048 or ECDSA P-256/P-384`);
}

/**
 * Checks the four files. Returns the parsed bundle; throws VerificationError naming the first problem.
 */
export function verifyBundle(files: BundleFiles, opts: VerifyOptions): VerifiedBundle {
  const key = parseKey(files.caKey);
  const caCerts = certsFromPem(files.caCert, 'ca-cert.pem');
  if (caCerts.length !== 1) fail('PEM_INVALID', `ca-cert.pem must hold exactly one certificate, found ${caCerts.length}`);
  const intermediate = caCerts[0]!;
  const chain = certsFromPem(files.certChain, 'cert-chain.pem');
  const roots = certsFromPem(files.rootCert, 'root-cert.pem');

  if (!intermediate.node.checkPrivateKey(key)) {
    fail('KEY_MISMATCH', `ca-key.pem does not match ca-cert.pem ("${intermediate.subject}", serial ${intermediate.serial})`);
  }
  checkCaCert(intermediate, 'ca-cert.pem');
  if (!intermediate.basicConstraintsCritical) fail('NOT_CA', 'ca-cert.pem basicConstraints must be critical');
  if (intermediate.keyUsage === undefined) fail('MISSING_KEY_CERT_SIGN', 'ca-cert.pem has no keyUsage extension (keyCertSign is required)');
  checkPathCert(intermediate, 'ca-cert.pem');
  if (intermediate.selfSigned) fail('NOT_INTERMEDIATE', 'ca-cert.pem is self-signed: expected an intermediate signed by the Vault PKI issuer');
  checkStrength(intermediate, 'ca-cert.pem');
  checkValidity(intermediate, 'ca-cert.pem', opts.now);

  if (!chain[0]!.der.equals(intermediate.der)) {
    fail('CHAIN_MISMATCH', `cert-chain.pem starts with "${chain[0]!.subject}" (serial ${chain[0]!.serial}), not with ca-cert.pem (serial ${intermediate.serial}): the files are from different generations`);
  }
  for (let i = 1; i < chain.length; i++) {
    if (!isIssuedBy(chain[i - 1]!, chain[i]!)) {
      fail('CHAIN_ORDER', `cert-chain.pem entry ${i + 1} ("${chain[i]!.subject}") did not sign entry ${i} ("${chain[i - 1]!.subject}"); the chain must be in issuer order`);
    }
    checkCaCert(chain[i]!, `cert-chain.pem entry ${i + 1}`);
    checkValidity(chain[i]!, `cert-chain.pem entry ${i + 1}`, opts.now);
    checkPathCert(chain[i]!, `cert-chain.pem entry ${i + 1}`);
    // A root's self-signature is never checked (it is trusted as is); every other signature must be strong.
    if (!chain[i]!.selfSigned) checkSignatureHash(chain[i]!, `cert-chain.pem entry ${i + 1}`);
  }

  // Path to a trust anchor, as Go builds it: from ca-cert.pem through chain certs to any root.
  let cur = intermediate;
  let anchor: CertInfo | undefined;
  const intermediates = chain.slice(1);
  for (let below = 1; below <= 10; below++) {
    // Several roots can match (a re-issued root beside its expired twin): prefer one valid now.
    const matching = roots.filter((r) => r.der.equals(cur.der) || isIssuedBy(cur, r));
    anchor = matching.find((r) => opts.now >= r.notBefore && opts.now < r.notAfter) ?? matching[0];
    if (anchor) {
      if (!anchor.der.equals(cur.der)) checkPathLen(anchor, below);
      break;
    }
    const next = intermediates.find((c) => isIssuedBy(cur, c));
    if (!next) break;
    checkPathLen(next, below);
    cur = next;
  }
  if (!anchor) {
    fail('WRONG_ROOT', `ca-cert.pem ("${intermediate.subject}", issuer "${intermediate.issuer}") does not chain to any certificate in root-cert.pem (${roots.map((r) => `"${r.subject}" ${r.fingerprint}`).join(', ')})`);
  }
  checkValidity(anchor, 'the root in root-cert.pem', opts.now);
  checkPathCert(anchor, 'the root in root-cert.pem');
  const last = chain[chain.length - 1]!;
  if (last.selfSigned && !roots.some((r) => r.der.equals(last.der))) {
    fail('WRONG_ROOT', `cert-chain.pem ends with root "${last.subject}" (${last.fingerprint}) which is not in root-cert.pem`);
  }

  return { files, intermediate, chain, roots, anchor };
}

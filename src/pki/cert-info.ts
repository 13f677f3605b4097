/**
 * One parsed certificate with the facts verification and reporting need. Signatures, issuance and
 * key pairing are checked with Node's own X509Certificate (OpenSSL); extensions are read with
 * @peculiar/x509 because Node does not expose basicConstraints or the keyUsage bits.
 */
import { X509Certificate as NodeCert } from 'node:crypto';
import { VerificationError } from '../common/errors.js';
import { pemBlocks, toPem } from './pem.js';
import { x509 } from './x509.js';

export interface CertInfo {
  /** Canonical PEM of this certificate alone. */
  pem: string;
  der: Buffer;
  node: NodeCert;
  subject: string;
  issuer: string;
  /** Hex, upper case, colon-free (as Vault prints serials without colons, but uppercase). */
  serial: string;
  notBefore: number;
  notAfter: number;
  /** SHA-256 fingerprint, hex with colons, for logs: identifies a root without printing it. */
  fingerprint: string;
  isCa: boolean;
  basicConstraintsCritical: boolean;
  /** pathLenConstraint, undefined when absent. */
  pathLen: number | undefined;
  /** keyUsage bit mask (x509.KeyUsageFlags), undefined when the extension is absent. */
  keyUsage: number | undefined;
  /** Extended key usage OIDs, undefined when the extension is absent. */
  extKeyUsage: string[] | undefined;
  dnsSans: string[];
  /** OIDs of the extensions marked critical. */
  criticalExtensions: string[];
  /** Hash of the signature algorithm (SHA-256, SHA-384...), or the raw OID when unknown. */
  signatureHash: string;
  keyType: string | undefined;
  keyBits: number | undefined;
  selfSigned: boolean;
}

const HASH_BY_OID: Record<string, string> = {
  '1.2.840.113549.1.1.5': 'SHA-1',
  '1.2.840.113549.1.1.11': 'SHA-256',
  '1.2.840.113549.1.1.12': 'SHA-384',
  '1.2.840.113549.1.1.13': 'SHA-512',
  '1.2.840.113549.1.1.10': 'PSS',
  '1.2.840.10045.4.1': 'SHA-1',
  '1.2.840.10045.4.3.2': 'SHA-256',
  '1.2.840.10045.4.3.3': 'SHA-384',
  '1.2.840.10045.4.3.4': 'SHA-512',
  '1.3.101.112': 'Ed25519',
};

/**
 * One issuance parses the same few certificates several times (issuer, chain assembly, verification,
 * root comparison); ASN.1 parsing and the self-signature check dominate `verify`, so results are kept
 * by DER. CertInfo is never mutated, so sharing is safe; the cache is small and bounded.
 */
const parsed = new Map<string, CertInfo>();
const PARSE_CACHE_SIZE = 32;

/** Parses one DER certificate. Throws VerificationError(PEM_INVALID) when it is not a certificate. */
export function certFromDer(der: Buffer, where: string): CertInfo {
  const key = der.toString('base64');
  const hit = parsed.get(key);
  if (hit) return hit;
  const info = parseDer(der, where);
  if (parsed.size >= PARSE_CACHE_SIZE) parsed.delete(parsed.keys().next().value!);
  parsed.set(key, info);
  return info;
}

function parseDer(der: Buffer, where: string): CertInfo {
  let node: NodeCert;
  let cert: x509.X509Certificate;
  try {
    node = new NodeCert(der);
    cert = new x509.X509Certificate(new Uint8Array(der));
  } catch (err) {
    throw new VerificationError(`${where} holds a block that is not a valid X.509 certificate`, 'PEM_INVALID', err);
  }
  const bc = cert.getExtension(x509.BasicConstraintsExtension);
  const ku = cert.getExtension(x509.KeyUsagesExtension);
  const eku = cert.getExtension(x509.ExtendedKeyUsageExtension);
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  const keyDetails = node.publicKey.asymmetricKeyDetails;
  const keyType = node.publicKey.asymmetricKeyType;
  const keyBits = keyType === 'ec' ? curveBits(keyDetails?.namedCurve) : keyDetails?.modulusLength;
  return {
    pem: toPem('CERTIFICATE', der),
    der,
    node,
    subject: cert.subject,
    issuer: cert.issuer,
    serial: node.serialNumber.toUpperCase(),
    notBefore: cert.notBefore.getTime(),
    notAfter: cert.notAfter.getTime(),
    fingerprint: node.fingerprint256,
    isCa: bc?.ca ?? false,
    basicConstraintsCritical: bc?.critical ?? false,
    pathLen: bc?.pathLength,
    keyUsage: ku?.usages,
    extKeyUsage: eku?.usages.map(String),
    dnsSans: san ? san.names.items.filter((n) => n.type === 'dns').map((n) => n.value) : [],
    criticalExtensions: cert.extensions.filter((e) => e.critical).map((e) => e.type),
    signatureHash: HASH_BY_OID[oidOf(cert)] ?? oidOf(cert),
    keyType,
    keyBits,
    selfSigned: node.checkIssued(node) && node.verify(node.publicKey),
  };
}

function oidOf(cert: x509.X509Certificate): string {
  // The raw signatureAlgorithm OID; @peculiar/x509 keeps the ASN.1 structure.
  return (cert as unknown as { asn: { signatureAlgorithm: { algorithm: string } } }).asn.signatureAlgorithm.algorithm;
}

function curveBits(curve: string | undefined): number | undefined {
  if (curve === 'prime256v1' || curve === 'P-256') return 256;
  if (curve === 'secp384r1' || curve === 'P-384') return 384;
  if (curve === 'secp521r1' || curve === 'P-521') return 521;
  return undefined;
}

/**
 * Parses every CERTIFICATE block in `text`. Throws VerificationError(PEM_INVALID) when there is none,
 * when a block of another type is mixed in, or when a block does not parse.
 */
export function certsFromPem(text: string, where: string): CertInfo[] {
  const blocks = pemBlocks(text);
  if (blocks.length === 0) throw new VerificationError(`${where} holds no PEM certificate`, 'PEM_INVALID');
  return blocks.map((b) => {
    if (b.label !== 'CERTIFICATE') throw new VerificationError(`${where} holds a "${b.label}" block where only certificates belong`, 'PEM_INVALID');
    return certFromDer(b.der, where);
  });
}

/** True when `child` names `parent` as issuer and `parent`'s key verifies `child`'s signature. */
export function isIssuedBy(child: CertInfo, parent: CertInfo): boolean {
  try {
    return child.node.checkIssued(parent.node) && child.node.verify(parent.node.publicKey);
  } catch {
    return false;
  }
}

/**
 * The CERTIFICATE blocks of `text` with their exact text (armour, base64, and the line end that follows),
 * so a root bundle can gain or lose one certificate while every other byte stays as it was.
 */
export function certBlocks(text: string, where: string): { text: string; cert: CertInfo }[] {
  const out: { text: string; cert: CertInfo }[] = [];
  for (const m of text.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----[ \t]*(?:\r?\n)?/g)) {
    out.push({ text: m[0], cert: certsFromPem(m[0], where)[0]! });
  }
  return out;
}

/**
 * A VaultCa that signs CSRs for real with a test root, in memory, so unit tests drive the agent's whole
 * issue-verify-publish path without a server. Failures are programmed per call.
 */
import type { VaultCa } from '../../src/vault/vault-ca.js';
import type { SignIntermediateResult } from '../../src/vault/pki-api.js';
import { x509 } from '../../src/pki/x509.js';
import type { TestCa } from './test-pki.js';

export type Behaviour = 'ok' | Error | ((n: number) => Promise<SignIntermediateResult> | SignIntermediateResult | Error | 'ok');

/** An issuer of the fake PKI mount. */
export interface FakeIssuer {
  id: string;
  name: string;
  ca: TestCa;
  /** The issuer's chain above it (empty for a root). */
  chain?: TestCa[];
}

export class FakeVaultCa implements VaultCa {
  /** The mount's issuers; `defaultId` names the default one (root/sign-intermediate signs with it). */
  issuers: FakeIssuer[];
  defaultId: string;
  readonly signerRef = 'default';
  /** Issuer id of each sign call, in order (undefined: the default path). */
  signedWith: (string | undefined)[] = [];
  signCalls = 0;
  /** Sign calls that have returned or thrown (a gated one counts once released). */
  signsSettled = 0;
  /** Per-call behaviours for sign, consumed in order; then `otherwise`. */
  queue: Behaviour[] = [];
  otherwise: Behaviour = 'ok';
  /** When set, sign waits for this promise first (to hold a request in flight). */
  gate: Promise<void> | undefined;
  lifetimeMs: number | undefined;
  /** CSR of the latest sign call (a queued behaviour can sign it itself, e.g. to add warnings). */
  lastCsr: string | undefined;

  constructor(root: TestCa, private now: () => number) {
    this.issuers = [{ id: 'root-1', name: 'root-1', ca: root }];
    this.defaultId = 'root-1';
  }

  /** The default issuer's CA; setting it replaces that issuer's key and certificate (a rotated root). */
  get root(): TestCa {
    return this.issuer(this.defaultId).ca;
  }
  set root(ca: TestCa) {
    this.issuer(this.defaultId).ca = ca;
  }

  private issuer(id: string): FakeIssuer {
    const i = this.issuers.find((x) => x.id === id || x.name === id);
    if (!i) throw new Error(`fake Vault: no issuer ${id}`);
    return i;
  }

  readIssuerCalls = 0;

  async readIssuer(_signal?: AbortSignal, ref?: string) {
    this.readIssuerCalls++;
    const i = this.issuer(ref ?? this.defaultId);
    return { certificate: i.ca.pem, caChain: [i.ca.pem, ...(i.chain ?? []).map((c) => c.pem)] };
  }

  async listIssuers() {
    return this.issuers.map((i) => ({ id: i.id, name: i.name, isDefault: i.id === this.defaultId, certificate: i.ca.pem, caChain: [i.ca.pem, ...(i.chain ?? []).map((c) => c.pem)] }));
  }

  async signIntermediate(params: { csr: string; common_name: string; ttl: string }, _signal?: AbortSignal, issuerId?: string): Promise<SignIntermediateResult> {
    const n = ++this.signCalls;
    this.lastCsr = params.csr;
    this.signedWith.push(issuerId);
    const issuer = this.issuer(issuerId ?? this.defaultId).ca;
    try {
      if (this.gate) await this.gate;
      const b = this.queue.shift() ?? this.otherwise;
      const r = typeof b === 'function' ? await b(n) : b;
      if (r instanceof Error) throw r;
      if (r !== 'ok') return r;
      return await this.sign(params.csr, this.lifetimeMs ?? Number(params.ttl.replace(/s$/, '')) * 1000, { issuer });
    } finally {
      this.signsSettled++;
    }
  }

  async sign(csrPem: string, lifetimeMs: number, o: { ca?: boolean; issuer?: TestCa } = {}): Promise<SignIntermediateResult> {
    const issuer = o.issuer ?? this.root;
    const csr = new x509.Pkcs10CertificateRequest(csrPem);
    const now = this.now();
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: (0x1000 + this.signCalls).toString(16),
      subject: csr.subject,
      issuer: issuer.cert.subject,
      notBefore: new Date(now - 30_000),
      notAfter: new Date(now + lifetimeMs),
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } as EcdsaParams,
      publicKey: await csr.publicKey.export(),
      signingKey: issuer.keys.privateKey,
      extensions: [
        new x509.BasicConstraintsExtension(o.ca ?? true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      ],
    });
    const pem = cert.toString('pem') + '\n';
    return { certificate: pem, issuingCa: issuer.pem, caChain: [pem, issuer.pem], serialNumber: cert.serialNumber, warnings: [] };
  }

  tokenExpiresAt() {
    return undefined;
  }
  async describeToken() {
    return { expiresAt: undefined, renewable: false };
  }
  setCaCert() {}
  async close() {}
  /** What state() reports (a test changes it to say Vault is back, or a new leader was elected). */
  health = { up: true, fingerprint: 'up' };
  healthChecks = 0;
  async state() {
    this.healthChecks++;
    return { ...this.health };
  }
}

/**
 * The root-rotation plan as a pure function of Vault's roots, what is published and the clock (issue 13):
 * add, switch after the soak, remove after the wait, rollback, hold, and the exact root-cert.pem bytes
 * each step publishes (istiod <= 1.29 accepts a root change only when one file's bytes contain the other's).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { planRoots, type RootPlanInput, type VaultRoot } from '../../src/agent/root-rotation.js';
import { certsFromPem, type CertInfo } from '../../src/pki/cert-info.js';
import { makeRoot } from '../helpers/test-pki.js';

const H = 3_600_000;
const DAY = 24 * H;
let oldRoot: VaultRoot;
let newRoot: VaultRoot;
let extra: CertInfo;
let t0: number;

const info = (pem: string) => certsFromPem(pem, 'test')[0]!;

beforeAll(async () => {
  t0 = Date.now();
  oldRoot = { id: 'old', name: 'root-2025', cert: info((await makeRoot('CN=Mesh Root 2025', { notBefore: new Date(t0 - 300 * DAY) })).pem) };
  newRoot = { id: 'new', name: 'root-2026', cert: info((await makeRoot('CN=Mesh Root 2026', { notBefore: new Date(t0) })).pem) };
  extra = info((await makeRoot('CN=Extra Anchor')).pem);
});

function input(o: Partial<RootPlanInput> & { bytes?: string; anchor?: CertInfo }): RootPlanInput {
  const bytes = o.bytes ?? oldRoot.cert.pem;
  return {
    now: t0,
    vaultRoots: [oldRoot, newRoot],
    target: oldRoot,
    published: { bytes, roots: certsFromPem(bytes, 'root-cert.pem') },
    anchor: oldRoot.cert,
    currentNotBefore: t0 - 10 * DAY,
    extraRoots: [],
    soakMs: 25 * H,
    removeAfterMs: 25 * H,
    reorderOnSwitch: false,
    hold: false,
    ...o,
  };
}

describe('root rotation plan', () => {
  it('steady: one root, nothing to do', () => {
    const p = planRoots(input({ vaultRoots: [oldRoot] }));
    expect(p).toMatchObject({ phase: 'steady', rootsChange: false, mintNow: false, signWith: oldRoot, nextAt: undefined });
    expect(p.rootBytes).toBe(oldRoot.cert.pem);
  });

  it('add: a new root in the mount is appended, so the old bytes stay a prefix; the intermediate stays', () => {
    const odd = `# mesh roots\n${oldRoot.cert.pem}`;
    const p = planRoots(input({ bytes: odd }));
    expect(p).toMatchObject({ phase: 'added', rootsChange: true, mintNow: false, signWith: oldRoot });
    expect(p.rootBytes.startsWith(odd)).toBe(true);
    expect(p.rootBytes).toBe(`${odd}${newRoot.cert.pem}`);
  });

  it('before the soak ends, renewals stay on the old root even when Vault already made the new one default', () => {
    const bytes = oldRoot.cert.pem + newRoot.cert.pem;
    const p = planRoots(input({ bytes, target: newRoot, now: t0 + 24 * H }));
    expect(p).toMatchObject({ phase: 'added', rootsChange: false, mintNow: false, signWith: oldRoot });
    expect(p.nextAt).toBe(newRoot.cert.notBefore + 25 * H);
  });

  it('switch: after the soak, a new intermediate from the new root; the same bytes where istiod compares bytes', () => {
    const bytes = oldRoot.cert.pem + newRoot.cert.pem;
    const p = planRoots(input({ bytes, target: newRoot, now: newRoot.cert.notBefore + 25 * H }));
    expect(p).toMatchObject({ phase: 'switched', mintNow: true, signWith: newRoot, rootsChange: false });
    expect(p.rootBytes).toBe(bytes);
  });

  it('switch: the new root first where istiod compares sets (>= 1.30), so it pushes the bundle', () => {
    const bytes = oldRoot.cert.pem + newRoot.cert.pem;
    const p = planRoots(input({ bytes, target: newRoot, now: newRoot.cert.notBefore + 25 * H, reorderOnSwitch: true }));
    expect(p).toMatchObject({ mintNow: true, rootsChange: true });
    expect(p.rootBytes).toBe(newRoot.cert.pem + oldRoot.cert.pem);
  });

  it('no switch to a root that is not trusted yet: it is added first', () => {
    const p = planRoots(input({ target: newRoot, now: t0 + 100 * DAY }));
    expect(p).toMatchObject({ mintNow: false, rootsChange: true, signWith: oldRoot });
    expect(p.rootBytes).toBe(oldRoot.cert.pem + newRoot.cert.pem);
  });

  it('remove: the old root leaves ROOT_REMOVE_AFTER after the switch, as a byte suffix or prefix of what istiod has', () => {
    const switchedAt = newRoot.cert.notBefore + 25 * H;
    for (const bytes of [oldRoot.cert.pem + newRoot.cert.pem, newRoot.cert.pem + oldRoot.cert.pem]) {
      const base = { bytes, target: newRoot, anchor: newRoot.cert, currentNotBefore: switchedAt };
      const waiting = planRoots(input({ ...base, now: switchedAt + 24 * H }));
      expect(waiting).toMatchObject({ phase: 'switched', rootsChange: false, mintNow: false, signWith: newRoot, nextAt: switchedAt + 25 * H });
      const gone = planRoots(input({ ...base, now: switchedAt + 25 * H }));
      expect(gone).toMatchObject({ phase: 'steady', rootsChange: true, mintNow: false });
      expect(gone.rootBytes).toBe(newRoot.cert.pem);
      expect(bytes.includes(gone.rootBytes)).toBe(true);
    }
  });

  it('remove waits for the intermediate istiod switched to, not only the soak (a switch later than the soak)', () => {
    const lateSwitch = newRoot.cert.notBefore + 10 * DAY;
    const p = planRoots(input({ bytes: oldRoot.cert.pem + newRoot.cert.pem, target: newRoot, anchor: newRoot.cert, currentNotBefore: lateSwitch, now: lateSwitch + 2 * H }));
    expect(p).toMatchObject({ rootsChange: false, nextAt: lateSwitch + 25 * H });
  });

  it('an old root Vault no longer has is removed at once (an operator deleted it)', () => {
    const p = planRoots(input({ vaultRoots: [newRoot], bytes: oldRoot.cert.pem + newRoot.cert.pem, target: newRoot, anchor: newRoot.cert, currentNotBefore: t0 + 26 * H, now: t0 + 27 * H }));
    expect(p).toMatchObject({ phase: 'steady', rootsChange: true });
    expect(p.rootBytes).toBe(newRoot.cert.pem);
  });

  it('rollback before the switch: the new root deleted in Vault leaves root-cert.pem, back to the old bytes', () => {
    const p = planRoots(input({ vaultRoots: [oldRoot], bytes: oldRoot.cert.pem + newRoot.cert.pem }));
    expect(p).toMatchObject({ phase: 'steady', rootsChange: true, mintNow: false, signWith: oldRoot });
    expect(p.rootBytes).toBe(oldRoot.cert.pem);
  });

  it('hold: nothing moves, renewals stay on the root in use', () => {
    const p = planRoots(input({ target: newRoot, now: t0 + 100 * DAY, hold: true }));
    expect(p).toMatchObject({ phase: 'held', rootsChange: false, mintNow: false, signWith: oldRoot });
  });

  it('extra trust roots are never rotated out, and a first issuance trusts every valid root of the mount', () => {
    const bytes = oldRoot.cert.pem + extra.pem;
    const p = planRoots(input({ vaultRoots: [oldRoot], bytes, extraRoots: [extra] }));
    expect(p).toMatchObject({ rootsChange: false, phase: 'steady' });
    const fresh = planRoots(input({ published: undefined, anchor: undefined, target: newRoot, extraRoots: [extra], now: t0 + 26 * H }));
    expect(fresh).toMatchObject({ mintNow: true, signWith: newRoot, phase: 'added', nextAt: undefined });
    expect(fresh.rootBytes).toBe(newRoot.cert.pem + oldRoot.cert.pem + extra.pem);
  });

  it('a pod that starts during the soak signs with the root being replaced, as the running replicas do, until the soak ends', async () => {
    // Vault already made the new root the default; this pod has nothing published (a rolling restart).
    const soakEnds = newRoot.cert.notBefore + 25 * H;
    const fresh = planRoots(input({ published: undefined, anchor: undefined, target: newRoot, now: t0 + 2 * H }));
    expect(fresh).toMatchObject({ mintNow: true, signWith: oldRoot, phase: 'added', nextAt: soakEnds });
    expect(fresh.rootBytes).toBe(oldRoot.cert.pem + newRoot.cert.pem);
    expect(fresh.notes.join('\n')).toMatch(/this first intermediate comes from "CN=Mesh Root 2025" until .*ROOT_SWITCH_SOAK 1d 1h/);
    // What it published then plans exactly as a replica that went through add: the switch at the soak's end.
    const after = { published: { bytes: fresh.rootBytes, roots: certsFromPem(fresh.rootBytes, 'root-cert.pem') }, anchor: oldRoot.cert, target: newRoot, currentNotBefore: t0 + 2 * H };
    expect(planRoots(input({ ...after, now: t0 + 3 * H }))).toMatchObject({ mintNow: false, signWith: oldRoot, phase: 'added', nextAt: soakEnds, rootsChange: false });
    expect(planRoots(input({ ...after, now: soakEnds }))).toMatchObject({ mintNow: true, signWith: newRoot });
    // The old root is the default still (the operator has not switched): nothing to wait for.
    const before = planRoots(input({ published: undefined, anchor: undefined, target: oldRoot, now: t0 + 2 * H }));
    expect(before).toMatchObject({ mintNow: true, signWith: oldRoot, phase: 'added', nextAt: undefined });
    expect(before.notes).toEqual([]);
    // Roots made within one second (certificates count in seconds): the other one is still the one replaced.
    const twin: VaultRoot = { id: 'twin', name: 'twin', cert: info((await makeRoot('CN=Twin', { notBefore: new Date(newRoot.cert.notBefore) })).pem) };
    expect(planRoots(input({ published: undefined, anchor: undefined, vaultRoots: [twin, newRoot], target: newRoot, now: t0 + 2 * H }))).toMatchObject({ signWith: twin, nextAt: soakEnds });
    // The old root left Vault: only the new one can sign, soak or not.
    expect(planRoots(input({ published: undefined, anchor: undefined, target: newRoot, vaultRoots: [newRoot], now: t0 + 2 * H }))).toMatchObject({ signWith: newRoot, phase: 'steady' });
  });

  it('EXTRA_TRUST_ROOTS_FILE changing: the new extra root is added, the one no longer listed (nor in Vault) leaves', async () => {
    const other = info((await makeRoot('CN=Another Anchor')).pem);
    const p = planRoots(input({ vaultRoots: [oldRoot], bytes: oldRoot.cert.pem + extra.pem, extraRoots: [other] }));
    expect(p.rootsChange).toBe(true);
    expect(certsFromPem(p.rootBytes, 'x').map((c) => c.subject)).toEqual(['CN=Mesh Root 2025', 'CN=Another Anchor']);
    expect(p.notes.join('\n')).toMatch(/add: root "CN=Another Anchor".*from EXTRA_TRUST_ROOTS_FILE/);
    expect(p.notes.join('\n')).toMatch(/remove: root "CN=Extra Anchor".*neither a valid issuer in the mount nor in EXTRA_TRUST_ROOTS_FILE/);
  });

  it('an expired root in the mount is neither added nor kept', () => {
    const expired: VaultRoot = { ...newRoot, cert: { ...newRoot.cert, notAfter: t0 - 1 } };
    const p = planRoots(input({ vaultRoots: [oldRoot, expired] }));
    expect(p).toMatchObject({ phase: 'steady', rootsChange: false });
  });
});

/**
 * A folder OUTSIDE a cert dir that planted links point at, and a byte-exact picture of it: every
 * entry's relative path, type, mode and content (or link target). Two pictures equal means not one
 * byte, name or mode outside CERT_DIR changed.
 */
import fs from 'node:fs/promises';
import path from 'node:path';

/** Bait an attacker would point links at: a sentinel, a key, a complete bundle, prune-able names. */
export const OUTSIDE_FILES: Record<string, string> = {
  'sentinel': 'sentinel: must never change\n',
  'key.pem': 'outside key: must never be read as the bundle\n',
  // A complete "bundle" a planted ..data or .gen could lead to.
  'bundle/ca-cert.pem': 'evil cert\n',
  'bundle/ca-key.pem': 'evil key\n',
  'bundle/cert-chain.pem': 'evil chain\n',
  'bundle/root-cert.pem': 'evil root\n',
  // Names a prune through a planted .gen would take for old generations and temporary links.
  '20200101T000000000Z-0001/ca-key.pem': 'old-looking generation 1\n',
  '20200101T000000000Z-0002/ca-key.pem': 'old-looking generation 2\n',
  'ca-key.pem.tmp': 'temp-looking file\n',
};

export async function makeOutside(dir: string): Promise<void> {
  for (const [rel, content] of Object.entries(OUTSIDE_FILES)) {
    await fs.mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
    await fs.writeFile(path.join(dir, rel), content);
  }
}

/** Sorted lines `<rel> <type> <mode> <content or target>` for everything under `dir`, `dir` included. */
export async function pictureOf(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (p: string, rel: string): Promise<void> => {
    const st = await fs.lstat(p);
    const mode = (st.mode & 0o7777).toString(8);
    if (st.isSymbolicLink()) out.push(`${rel} link ${await fs.readlink(p)}`);
    else if (st.isFile()) out.push(`${rel} file ${mode} ${JSON.stringify(await fs.readFile(p, 'utf8'))}`);
    else if (st.isDirectory()) {
      out.push(`${rel} dir ${mode}`);
      for (const e of await fs.readdir(p)) await walk(path.join(p, e), rel === '.' ? e : `${rel}/${e}`);
    } else out.push(`${rel} other ${mode}`);
  };
  await walk(dir, '.');
  return out.sort();
}

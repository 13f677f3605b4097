/**
 * The install docs (docs/install, and the README's links into them) must not drift from the repository:
 * every relative link reaches a file (and a heading, with an anchor), every repository path they name in
 * backticks exists, and every flag of setup.sh they name is one setup.sh parses.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const DIR = 'docs/install';
const pages = [...readdirSync(DIR).filter((f) => f.endsWith('.md')).map((f) => path.join(DIR, f)), 'README.md'];

function anchors(file: string): Set<string> {
  const text = readFileSync(file, 'utf8').replace(/```[\s\S]*?```/g, '');
  return new Set([...text.matchAll(/^#{1,6} (.+)$/gm)].map((m) => m[1]!.toLowerCase().replace(/[`*]/g, '').replace(/[^a-z0-9 _-]/g, '').replace(/ /g, '-')));
}

describe('install docs', () => {
  it('has one page per install path and an index', () => {
    for (const p of ['README', 'helm-values', 'helm-post-renderer', 'kustomize', 'istioctl', 'kubectl', 'openshift', 'vault-setup', 'image', 'check-manifest', 'scraping']) {
      expect(existsSync(path.join(DIR, `${p}.md`)), p).toBe(true);
    }
  });

  it.each(pages)('%s: relative links reach files and headings', (page) => {
    const text = readFileSync(page, 'utf8');
    for (const m of text.matchAll(/\]\(([^)#\s]+\.md)(?:#([^)]+))?\)/g)) {
      if (/^[a-z]+:/.test(m[1]!)) continue;
      const target = path.join(path.dirname(page), m[1]!);
      expect(existsSync(target), `${page} links ${m[1]}`).toBe(true);
      if (m[2]) expect(anchors(target), `${page} links ${m[1]}#${m[2]}`).toContain(m[2]);
    }
  });

  it.each(pages.filter((p) => p.startsWith(DIR)))('%s: repository paths it names exist', (page) => {
    const text = readFileSync(page, 'utf8');
    for (const m of text.matchAll(/`((?:manifests|scripts|test|image|src)\/[A-Za-z0-9_./<>-]+)`/g)) {
      const p = m[1]!.replace(/\/$/, '');
      if (p.includes('<')) continue; // a pattern such as manifests/istioctl/<variant>.yaml
      expect(existsSync(p), `${page} names ${p}`).toBe(true);
    }
  });

  it('names only flags setup.sh parses', () => {
    const script = readFileSync('manifests/vault/setup.sh', 'utf8');
    const parsed = new Set([...script.matchAll(/^\s+(--[a-z-]+)\) \w+="\$value" ;;$/gm)].map((m) => m[1]!));
    parsed.add('--vault-in-cluster').add('--help');
    const doc = readFileSync(path.join(DIR, 'vault-setup.md'), 'utf8');
    const named = new Set([...doc.matchAll(/`(--[a-z][a-z-]+)/g)].map((m) => m[1]!));
    // Command lines: the flags before a pipe are setup.sh's (after it, kubectl's).
    for (const m of doc.matchAll(/setup\.sh[^\n|]*/g)) for (const f of m[0].matchAll(/(--[a-z][a-z-]+)/g)) named.add(f[1]!);
    expect(named.size).toBeGreaterThan(15);
    for (const f of named) expect(parsed, `vault-setup.md names ${f}`).toContain(f);
    for (const f of parsed) if (f !== '--help') expect(named, `vault-setup.md does not document ${f}`).toContain(f);
  });
});

/**
 * The shell scripts we ship (Helm post-renderer, Vault setup, two-cluster example): executable, strict
 * mode, valid bash, and clean under shellcheck when it is installed (a lint, so it skips without it).
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { hasCommand } from '../helpers/tools.js';
import { REPO } from './support/render.js';

const SCRIPTS = ['manifests/helm/post-renderer.sh', 'manifests/vault/setup.sh', 'manifests/vault/examples/two-clusters.sh', 'scripts/pin-base-images.sh'];

describe('shipped shell scripts', () => {
  it.each(SCRIPTS)('%s is an executable bash script in strict mode', (rel) => {
    const file = path.join(REPO, rel);
    expect(() => accessSync(file, constants.X_OK)).not.toThrow();
    const text = readFileSync(file, 'utf8');
    expect(text.split('\n')[0]).toBe('#!/usr/bin/env bash');
    expect(text).toMatch(/^set -euo pipefail$/m);
    const syntax = spawnSync('bash', ['-n', file], { encoding: 'utf8' });
    expect(syntax.status, syntax.stderr).toBe(0);
  });

  it.skipIf(!hasCommand('shellcheck')).each(SCRIPTS)('%s passes shellcheck', (rel) => {
    const res = spawnSync('shellcheck', ['--shell=bash', path.join(REPO, rel)], { encoding: 'utf8' });
    expect(res.status, res.stdout + res.stderr).toBe(0);
  });

  it('setup.sh --help documents every option it parses', () => {
    const file = path.join(REPO, 'manifests/vault/setup.sh');
    const text = readFileSync(file, 'utf8');
    const parsed = [...text.matchAll(/^\s+(--[a-z-]+)\) \w+="\$value" ;;$/gm)].map((m) => m[1]!);
    expect(parsed.length).toBeGreaterThan(15);
    const help = spawnSync('bash', [file, '--help'], { encoding: 'utf8' });
    expect(help.status).toBe(0);
    for (const flag of [...parsed, '--vault-in-cluster']) expect(help.stdout, flag).toContain(flag);
  });
});

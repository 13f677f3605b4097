/**
 * The istioctl overlays and the Helm values files are generated from the kustomize components
 * (scripts/gen-manifests.ts): every path runs the same containers. A component edited without running
 * `npm run gen:manifests` fails here.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { generate } from '../../scripts/gen-manifests.js';
import { REPO } from './support/render.js';

describe('generated install manifests', () => {
  it.each([...generate()])('%s is what scripts/gen-manifests.ts writes', (rel, text) => {
    expect(readFileSync(path.join(REPO, rel), 'utf8'), `${rel} is stale: run npm run gen:manifests`).toBe(text);
  });
});

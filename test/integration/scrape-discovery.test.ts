/**
 * Which scrape job finds the agent, decided by a real Prometheus: the targets Kubernetes pod discovery
 * would produce for a patched istiod pod (one per container port, init containers included and labelled
 * __meta_kubernetes_pod_container_init="true", the pod's prometheus.io annotations as meta labels; built
 * from the real rendered Deployment) are given to two jobs: ours (manifests/prometheus/scrape-config.yaml)
 * and a generic annotation-driven kubernetes-pods job of the common shape (keep prometheus.io/scrape=true,
 * drop init containers, scrape the prometheus.io/port). Prometheus' own relabelling then says which
 * targets each job keeps. Debian's Prometheus is built without Kubernetes discovery, so static targets
 * carry the labels discovery would attach.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { requireCommand } from '../helpers/tools.js';
import { giveUp, waitFor } from '../helpers/wait.js';
import { chartRender } from '../manifests/support/istio-releases.js';
import { deployments, docs, kustomize, type Obj, type Variant } from '../manifests/support/render.js';
import { freePort } from '../../src/dev/dev-server.js';

const havePrometheus = requireCommand('prometheus', 'apt-get install -y prometheus');
const havePromtool = requireCommand('promtool', 'apt-get install -y prometheus');
const haveKubectl = requireCommand('kubectl', 'kubectl >= 1.27 (kustomize v5)');

/** The usual annotation-driven job (Prometheus' example kubernetes-pods shape, plus the common init-container drop). */
const GENERIC_POD_JOB = {
  job_name: 'kubernetes-pods',
  relabel_configs: [
    { source_labels: ['__meta_kubernetes_pod_annotation_prometheus_io_scrape'], action: 'keep', regex: 'true' },
    { source_labels: ['__meta_kubernetes_pod_container_init'], action: 'drop', regex: 'true' },
    { source_labels: ['__address__', '__meta_kubernetes_pod_annotation_prometheus_io_port'], action: 'replace', regex: '([^:]+)(?::\\d+)?;(\\d+)', replacement: '$1:$2', target_label: '__address__' },
  ],
};

/** Prometheus' label-name sanitising of annotation and label keys. */
const sanitize = (k: string) => k.replace(/[^a-zA-Z0-9_]/g, '_');

/** What Kubernetes pod discovery yields for a pod built from `dep`'s template: one target per container port. */
function podTargets(dep: Obj, pod: { name: string; ip: string }): { targets: string[]; labels: Record<string, string> }[] {
  const tpl = dep.spec.template;
  const common: Record<string, string> = {
    __meta_kubernetes_namespace: dep.metadata.namespace,
    __meta_kubernetes_pod_name: pod.name,
    __meta_kubernetes_pod_ip: pod.ip,
    __meta_kubernetes_pod_phase: 'Running',
    __meta_kubernetes_pod_node_name: 'node-a',
  };
  for (const [k, v] of Object.entries((tpl.metadata.labels ?? {}) as Record<string, string>)) common[`__meta_kubernetes_pod_label_${sanitize(k)}`] = v;
  for (const [k, v] of Object.entries((tpl.metadata.annotations ?? {}) as Record<string, string>)) common[`__meta_kubernetes_pod_annotation_${sanitize(k)}`] = v;
  const out: { targets: string[]; labels: Record<string, string> }[] = [];
  const all = [...((tpl.spec.containers ?? []) as Obj[]).map((c) => [c, false] as const), ...((tpl.spec.initContainers ?? []) as Obj[]).map((c) => [c, true] as const)];
  for (const [c, init] of all) {
    for (const p of (c.ports ?? []) as Obj[]) {
      out.push({
        targets: [`${pod.ip}:${p.containerPort}`],
        labels: {
          ...common,
          __meta_kubernetes_pod_container_name: c.name,
          __meta_kubernetes_pod_container_port_name: p.name ?? '',
          __meta_kubernetes_pod_container_port_number: String(p.containerPort),
          __meta_kubernetes_pod_container_init: String(init),
        },
      });
    }
  }
  return out;
}


interface Target {
  discoveredLabels: Record<string, string>;
  labels?: Record<string, string>;
  scrapePool: string;
}

describe.skipIf(!havePrometheus || !haveKubectl)('which scrape job finds the agent (real Prometheus relabelling)', () => {
  let work = '';
  let prom: ChildProcess | undefined;
  let url = '';
  let log = '';
  const pods: Record<Variant, { name: string; ip: string }> = { native: { name: 'istiod-native-0', ip: '10.0.0.7' }, classic: { name: 'istiod-classic-0', ip: '10.0.0.8' } };

  beforeAll(async () => {
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-sd-'));
    const targets: ReturnType<typeof podTargets> = [];
    for (const variant of ['native', 'classic'] as Variant[]) {
      const dep = deployments(docs(await kustomize(chartRender('1.30.3', 'default'), variant)))[0]!;
      targets.push(...podTargets(dep, pods[variant]));
    }
    const ours = (YAML.parse(await fs.readFile('manifests/prometheus/scrape-config.yaml', 'utf8')) as { scrape_configs: Obj[] }).scrape_configs[0]!;
    delete ours.kubernetes_sd_configs;
    const jobs = [ours, GENERIC_POD_JOB].map((j) => ({ ...j, scrape_interval: '1h', scrape_timeout: '1s', static_configs: targets }));
    const file = path.join(work, 'prometheus.yml');
    await fs.writeFile(file, YAML.stringify({ global: { scrape_interval: '1h' }, scrape_configs: jobs }));
    if (havePromtool) {
      const check = spawnSync('promtool', ['check', 'config', file], { encoding: 'utf8' });
      expect(check.status, check.stdout + check.stderr).toBe(0);
    }
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    prom = spawn('prometheus', [`--config.file=${file}`, `--storage.tsdb.path=${path.join(work, 'tsdb')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
    prom.stdout!.on('data', (d: Buffer) => (log += d.toString()));
    prom.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  });
  afterAll(async () => {
    if (prom && prom.exitCode === null) {
      prom.kill('SIGTERM');
      await new Promise((r) => prom!.once('exit', r));
    }
    if (work) await fs.rm(work, { recursive: true, force: true });
  });

  /** Active and dropped targets once both jobs have been relabelled. */
  async function targets(): Promise<{ active: Target[]; dropped: Target[] }> {
    return waitFor(async () => {
      if (prom?.exitCode !== null) giveUp('Prometheus is not running');
      // Fails while Prometheus is not up yet: not yet.
      const res = (await (await fetch(`${url}/api/v1/targets?state=any`)).json()) as { data: { activeTargets: Target[]; droppedTargets: Target[] } };
      const pools = new Set(res.data.activeTargets.map((t) => t.scrapePool));
      if (pools.has('istiod-vault-agent') && pools.has('kubernetes-pods')) return { active: res.data.activeTargets, dropped: res.data.droppedTargets };
    }, { what: 'Prometheus to have targets for both jobs', timeoutMs: 30_000, intervalMs: 200, detail: () => log.slice(-2000) });
  }

  it('ours scrapes the agent port of both variants, the native sidecar (an init container) included, and nothing else', async () => {
    const { active } = await targets();
    const mine = active.filter((t) => t.scrapePool === 'istiod-vault-agent');
    expect(mine.map((t) => [t.discoveredLabels.__address__, t.discoveredLabels.__meta_kubernetes_pod_container_init, t.labels?.container]).sort()).toEqual([
      ['10.0.0.7:15099', 'true', 'istiod-vault-agent'],
      ['10.0.0.8:15099', 'false', 'istiod-vault-agent'],
    ]);
  });

  it('the generic annotation job never scrapes the agent: it drops the native sidecar and rewrites every port to 15014', async () => {
    const { active, dropped } = await targets();
    const generic = active.filter((t) => t.scrapePool === 'kubernetes-pods');
    expect(generic.length).toBeGreaterThan(0);
    for (const t of generic) expect(t.labels?.instance ?? t.discoveredLabels.__address__, JSON.stringify(t.labels)).toMatch(/:15014$/);
    const nativeAgent = (t: Target) => t.discoveredLabels.__meta_kubernetes_pod_container_init === 'true' && t.discoveredLabels.__meta_kubernetes_pod_container_port_name === 'agent-metrics';
    expect(dropped.filter((t) => t.discoveredLabels.job === 'kubernetes-pods' && nativeAgent(t))).toHaveLength(1);
    expect(dropped.filter((t) => t.discoveredLabels.job === 'istiod-vault-agent' && nativeAgent(t))).toEqual([]);
    // The istiod pod's annotations name istiod's port only.
    const dep = deployments(docs(await kustomize(chartRender('1.30.3', 'default'), 'native')))[0]!;
    expect(dep.spec.template.metadata.annotations).toMatchObject({ 'prometheus.io/port': '15014', 'prometheus.io/scrape': 'true' });
  });
});

/**
 * A real Prometheus (the `prometheus` binary, on loopback, 1s scrapes) scraping a real agent (`run` against
 * a real OpenBao, with a stand-in for istiod's metrics page so the in-sync check succeeds), configured with
 * the job of manifests/prometheus/scrape-config.yaml (pod discovery swapped for static targets that carry
 * the same __meta_kubernetes_* labels, so the relabelling runs for real) and the alert rules of
 * manifests/prometheus/rules.yaml (with `for` removed, so any condition that holds shows at once).
 * Checks: the exported expiry equals the notAfter of the files the agent wrote, before and after a
 * rotation; the exposition passes `promtool check metrics`; a healthy agent fires no alert; every query
 * of the Grafana dashboard is valid and returns data; stopping the agent fires IstiodVaultAgentDown.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { cleanEnv, startAgent, type AgentRun } from '../helpers/agent-process.js';
import { useOpenBao } from '../helpers/openbao.js';
import { requireCommand } from '../helpers/tools.js';
import { waitFor } from '../helpers/wait.js';
import { freePort } from '../../src/dev/dev-server.js';

const bao = useOpenBao();
const havePrometheus = requireCommand('prometheus', 'apt-get install -y prometheus');
const havePromtool = requireCommand('promtool', 'apt-get install -y prometheus');

const JOB = 'istiod-vault-agent';
const POD = 'istiod-6c8f9d7b5-x2x7q';
const NS = 'istio-system';

interface PromSample {
  metric: Record<string, string>;
  value: [number, string];
}
interface PromAlert {
  labels: Record<string, string>;
  state: string;
}


/** Waits for `what` in Prometheus's answers (polled every 250 ms at most, for up to 20 s). */
const inPrometheus = <T>(what: string, probe: () => Promise<T | undefined>) => waitFor(probe, { what, timeoutMs: 20_000, intervalMs: 250 });

function notAfterSeconds(pem: string): number {
  return Date.parse(new X509Certificate(pem).validTo) / 1000;
}

describe.skipIf(!bao.available || !havePrometheus)('Prometheus scraping a running agent', () => {
  let work: string;
  let certDir: string;
  let istiod: http.Server;
  let agent: AgentRun;
  let agentAddr: string;
  let prometheus: ChildProcess | undefined;
  let promLog = '';
  let promUrl: string;
  /** When Prometheus first saw istiod_in_sync == 1 (set by the rotation test). */
  let inSyncSince = 0;

  async function api<T>(p: string): Promise<T> {
    const res = await fetch(`${promUrl}${p}`);
    const body = (await res.json()) as { status: string; data: T; error?: string };
    if (body.status !== 'success') throw new Error(`${p}: ${body.error ?? res.status}`);
    return body.data;
  }

  async function query(q: string): Promise<PromSample[]> {
    const data = await api<{ resultType: string; result: PromSample[] }>(`/api/v1/query?query=${encodeURIComponent(q)}`);
    return data.result;
  }

  beforeAll(async () => {
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-prom-'));
    certDir = path.join(work, 'certs');
    await fs.mkdir(certDir);

    // Stands in for istiod's :15014/metrics: reports the notAfter of whatever ca-cert.pem holds now.
    istiod = http.createServer((_req, res) => {
      fs.readFile(path.join(certDir, 'ca-cert.pem'), 'utf8').then(
        (pem) => res.end(`# TYPE citadel_server_cert_chain_expiry_timestamp gauge\ncitadel_server_cert_chain_expiry_timestamp ${notAfterSeconds(pem)}\n`),
        () => {
          res.statusCode = 503;
          res.end();
        },
      );
    });
    await new Promise<void>((resolve) => istiod.listen(0, '127.0.0.1', resolve));
    const istiodPort = (istiod.address() as AddressInfo).port;

    agent = startAgent(
      ['run'],
      cleanEnv({
        ...bao.get().env,
        CERT_DIR: certDir,
        KEY_TYPE: 'ec',
        CERT_TTL: '1h',
        METRICS_ADDR: '127.0.0.1:0',
        ISTIOD_METRICS_URL: `http://127.0.0.1:${istiodPort}/metrics`,
        ISTIOD_SYNC_TIMEOUT: '10s',
      }),
    );
    agentAddr = String((await agent.waitFor((l) => l.msg === 'serving /metrics, /healthz, /readyz')).addr);
    await agent.waitFor((l) => l.msg === 'published a new intermediate');

    // The scrape job of the plain scrape config, with pod discovery replaced by targets carrying what
    // Kubernetes pod discovery would attach. Only the first is the agent's port on an istiod pod.
    const pod = (app: string, port: string, phase = 'Running') => ({
      __meta_kubernetes_pod_label_app: app,
      __meta_kubernetes_pod_container_port_name: port,
      __meta_kubernetes_pod_phase: phase,
      __meta_kubernetes_namespace: NS,
      __meta_kubernetes_pod_name: POD,
      __meta_kubernetes_pod_container_name: 'istiod-vault-agent',
      __meta_kubernetes_pod_node_name: 'node-a',
    });
    const job = (YAML.parse(await fs.readFile('manifests/prometheus/scrape-config.yaml', 'utf8')) as { scrape_configs: Record<string, unknown>[] }).scrape_configs[0]!;
    delete job.kubernetes_sd_configs;
    Object.assign(job, {
      scrape_interval: '1s',
      scrape_timeout: '1s',
      static_configs: [
        { targets: [agentAddr], labels: pod('istiod', 'agent-metrics') },
        { targets: ['127.0.0.1:9'], labels: pod('istiod', 'http-monitoring') },
        { targets: ['127.0.0.1:9'], labels: pod('ztunnel', 'agent-metrics') },
        { targets: ['127.0.0.1:9'], labels: pod('istiod', 'agent-metrics', 'Succeeded') },
      ],
    });
    // The alert rules, each firing as soon as its condition holds.
    const rules = YAML.parse(await fs.readFile('manifests/prometheus/rules.yaml', 'utf8')) as { groups: { rules: Record<string, unknown>[] }[] };
    for (const g of rules.groups) for (const r of g.rules) delete r.for;
    await fs.writeFile(path.join(work, 'rules.yaml'), YAML.stringify(rules));
    const config = { global: { scrape_interval: '1s', evaluation_interval: '1s' }, rule_files: [path.join(work, 'rules.yaml')], scrape_configs: [job] };
    await fs.writeFile(path.join(work, 'prometheus.yml'), YAML.stringify(config));
    if (havePromtool) {
      const check = spawnSync('promtool', ['check', 'config', path.join(work, 'prometheus.yml')], { encoding: 'utf8' });
      expect(check.status, check.stdout + check.stderr).toBe(0);
    }

    const port = await freePort();
    promUrl = `http://127.0.0.1:${port}`;
    prometheus = spawn(
      'prometheus',
      [`--config.file=${path.join(work, 'prometheus.yml')}`, `--storage.tsdb.path=${path.join(work, 'tsdb')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    prometheus.stdout!.on('data', (d: Buffer) => (promLog += d.toString()));
    prometheus.stderr!.on('data', (d: Buffer) => (promLog += d.toString()));
    await waitFor(async () => (await fetch(`${promUrl}/-/ready`).catch(() => undefined))?.ok, { what: 'Prometheus to be ready', timeoutMs: 20_000, intervalMs: 250, detail: () => promLog.slice(-2000) });
  });

  afterAll(async () => {
    if (agent && agent.child.exitCode === null && agent.child.signalCode === null) {
      agent.kill();
      await agent.exit;
    }
    if (prometheus && prometheus.exitCode === null) {
      const exited = new Promise((r) => prometheus!.once('exit', r));
      prometheus.kill('SIGTERM');
      await exited;
    }
    await new Promise((r) => istiod?.close(r));
    if (work) await fs.rm(work, { recursive: true, force: true });
  });

  it('reports the notAfter of the intermediate and root the agent wrote', async () => {
    const ca = await fs.readFile(path.join(certDir, 'ca-cert.pem'), 'utf8');
    const root = await fs.readFile(path.join(certDir, 'root-cert.pem'), 'utf8');
    const intermediate = await inPrometheus('the intermediate expiry in Prometheus', async () => (await query('istiod_vault_agent_cert_expiration_timestamp_seconds{cert="intermediate"}'))[0]);
    expect(Number(intermediate.value[1])).toBe(notAfterSeconds(ca));
    expect(intermediate.metric).toMatchObject({ job: JOB, namespace: NS, pod: POD, container: 'istiod-vault-agent', cert: 'intermediate' });
    const [rootSample] = await query('istiod_vault_agent_cert_expiration_timestamp_seconds{cert="root"}');
    expect(Number(rootSample!.value[1])).toBe(notAfterSeconds(root));
    const [renewal] = await query('istiod_vault_agent_cert_renewal_timestamp_seconds');
    expect(Number(renewal!.value[1])).toBeGreaterThan(Date.now() / 1000);
    expect(Number(renewal!.value[1])).toBeLessThan(notAfterSeconds(ca));
  });

  it('keeps only the agent-metrics port of app=istiod pods, as job istiod-vault-agent with namespace and pod labels', async () => {
    const targets = await api<{ activeTargets: { labels: Record<string, string>; health: string; scrapeUrl: string }[]; droppedTargets: unknown[] }>('/api/v1/targets');
    expect(targets.activeTargets).toHaveLength(1);
    const t = targets.activeTargets[0]!;
    expect(t.scrapeUrl).toBe(`http://${agentAddr}/metrics`);
    expect(t.labels).toEqual({ job: JOB, instance: agentAddr, namespace: NS, pod: POD, container: 'istiod-vault-agent', node: 'node-a' });
    expect(t.health).toBe('up');
    expect(targets.droppedTargets).toHaveLength(3);
  });

  it.skipIf(!havePromtool)("passes promtool check metrics, but for prom-client's own nodejs_active_*_total gauges", async () => {
    const page = await (await fetch(`http://${agentAddr}/metrics`)).text();
    const res = spawnSync('promtool', ['check', 'metrics'], { input: page, encoding: 'utf8' });
    const problems = (res.stdout + res.stderr).split('\n').filter((l) => l.trim() !== '');
    // prom-client names three default gauges *_total; nothing of ours may complain.
    const known = /^nodejs_active_(handles|requests|resources)_total non-counter metrics should not have "_total" suffix$/;
    expect(problems.filter((l) => !known.test(l))).toEqual([]);
    expect(problems.every((l) => !l.startsWith('istiod_vault_agent_'))).toBe(true);
  });

  // In `run` mode the agent checks istiod only after a renewal, not after its first issuance, so the
  // rotation comes first: afterwards istiod_in_sync is known (1) and the agent is healthy in every respect.
  it('follows a rotation: the new notAfter, a second success, istiod in sync', async () => {
    const before = agent.lines.length;
    agent.kill('SIGHUP');
    await agent.waitFor((l) => l.msg === 'published a new intermediate', 30_000, before);
    await agent.waitFor((l) => l.msg === 'istiod loaded the new intermediate', 30_000, before);
    const want = notAfterSeconds(await fs.readFile(path.join(certDir, 'ca-cert.pem'), 'utf8'));
    await inPrometheus('the new notAfter in Prometheus', async () => {
      const [s] = await query('istiod_vault_agent_cert_expiration_timestamp_seconds{cert="intermediate"}');
      return s && Number(s.value[1]) === want ? s : undefined;
    });
    const [success] = await query('istiod_vault_agent_issuances_total{result="success"}');
    expect(success!.value[1]).toBe('2');
    const [failures] = await query('sum(istiod_vault_agent_issuances_total{result="failure"})');
    expect(failures!.value[1]).toBe('0');
    inSyncSince = (await inPrometheus('istiod_in_sync 1 in Prometheus', async () => (await query('istiod_vault_agent_istiod_in_sync == 1'))[0])).value[0];
  });

  it('fires no alert for a healthy agent, every rule evaluating without error', async () => {
    const since = inSyncSince;
    expect(since).toBeGreaterThan(0);
    type Rules = { groups: { lastEvaluation: string; rules: { name: string; health: string; lastError?: string }[] }[] };
    const groups = await inPrometheus('two rule evaluations after the first scrape', async () => {
      const data = await api<Rules>('/api/v1/rules');
      return data.groups.length && Date.parse(data.groups[0]!.lastEvaluation) / 1000 > since + 2 ? data.groups : undefined;
    });
    const rules = groups.flatMap((g) => g.rules);
    expect(rules).toHaveLength(11);
    expect(rules.filter((r) => r.health !== 'ok').map((r) => `${r.name}: ${r.lastError}`)).toEqual([]);
    const { alerts } = await api<{ alerts: PromAlert[] }>('/api/v1/alerts');
    expect(alerts.map((a) => `${a.labels.alertname} ${a.state}`)).toEqual([]);
  });

  it('answers every query of the Grafana dashboard with data', async () => {
    const dash = JSON.parse(await fs.readFile('manifests/grafana/istiod-vault-agent.json', 'utf8')) as {
      panels: { title: string; targets?: { expr: string }[] }[];
      templating: { list: { name: string; type: string; query: unknown }[] };
    };
    const vars: Record<string, string> = { job: JOB, namespace: '.*', pod: '.*', __rate_interval: '1m', __range: '5m', __interval: '15s' };
    const expand = (q: string) => q.replace(/\$\{?(\w+)\}?/g, (m, name: string) => vars[name] ?? m);
    // A rotation happened in the last minute, so the windowed queries have data too; only the failure
    // series are empty (filtered by "> 0") for a healthy agent.
    const queries = dash.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: expand(t.expr) })));
    expect(queries.length).toBeGreaterThan(15);
    const empty: string[] = [];
    for (const q of queries) {
      expect(q.expr, q.panel).not.toMatch(/\$/);
      const result = await query(q.expr);
      if (result.length === 0 && !/result="failure"[^]*> 0$/.test(q.expr)) empty.push(`${q.panel}: ${q.expr}`);
    }
    expect(empty).toEqual([]);
    for (const v of dash.templating.list.filter((t) => t.type === 'query')) {
      const m = /^label_values\((.+),\s*(\w+)\)$/.exec(String(v.query));
      expect(m, `variable ${v.name}`).not.toBeNull();
      const result = await query(expand(m![1]!));
      expect(result.map((s) => s.metric[m![2]!]), `variable ${v.name}`).toContain(v.name === 'pod' ? POD : NS);
    }
  });

  it('fires IstiodVaultAgentDown for the pod once the agent stops', async () => {
    agent.kill('SIGTERM');
    expect((await agent.exit).code).toBe(0);
    const down = await inPrometheus('IstiodVaultAgentDown', async () => {
      const { alerts } = await api<{ alerts: PromAlert[] }>('/api/v1/alerts');
      return alerts.find((a) => a.labels.alertname === 'IstiodVaultAgentDown' && a.state === 'firing');
    });
    expect(down.labels).toMatchObject({ severity: 'warning', job: JOB, namespace: NS, pod: POD });
  });
});

/**
 * The alerting rules and scrape manifests in manifests/prometheus/: linted and unit-tested with the real
 * promtool (`promtool check rules`, `promtool test rules`), the PrometheusRule kept identical to the plain
 * rule file, every alert documented (severity, summary, description, a runbook anchor that exists in
 * docs/runbooks.md) and covered by promtool cases that fire and that stay quiet, and every metric the
 * rules read is one the agent exports.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { requireCommand } from '../helpers/tools.js';
import { exportedNames, metricNames } from './support/promql.js';

const DIR = path.resolve('manifests/prometheus');
const RUNBOOK_BASE = 'https://github.com/istiod-vault-agent/istiod-vault-agent/blob/main/docs/runbooks.md#';
const JOB = 'istiod-vault-agent';

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface Group {
  name: string;
  rules: Rule[];
}
interface AlertTest {
  eval_time: string;
  alertname: string;
  exp_alerts?: unknown[];
}
interface RuleTestFile {
  rule_files: string[];
  tests: { name?: string; alert_rule_test?: AlertTest[] }[];
}

function load<T>(file: string): T {
  return YAML.parse(fs.readFileSync(path.join(DIR, file), 'utf8')) as T;
}

const groups = load<{ groups: Group[] }>('rules.yaml').groups;
const alerts = groups.flatMap((g) => g.rules).filter((r): r is Rule & { alert: string } => r.alert !== undefined);
const testFiles = fs.readdirSync(path.join(DIR, 'tests')).filter((f) => f.endsWith('.yaml')).map((f) => path.join(DIR, 'tests', f));

const havePromtool = requireCommand('promtool', 'apt-get install -y prometheus');

/** GitHub's heading anchor: lower case, punctuation other than - and _ dropped, spaces to hyphens. */
function githubSlug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

describe('alert rules (manifests/prometheus)', () => {
  it.skipIf(!havePromtool)('promtool check rules accepts the rule file and the PrometheusRule spec', () => {
    const out = execFileSync('promtool', ['check', 'rules', path.join(DIR, 'rules.yaml')], { encoding: 'utf8' });
    expect(out).toContain(`SUCCESS: ${alerts.length} rules found`);
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ivagent-rules-'));
    try {
      const spec = load<{ spec: unknown }>('prometheusrule.yaml').spec;
      fs.writeFileSync(path.join(tmp, 'from-crd.yaml'), YAML.stringify(spec));
      const res = spawnSync('promtool', ['check', 'rules', path.join(tmp, 'from-crd.yaml')], { encoding: 'utf8' });
      expect(res.status, res.stdout + res.stderr).toBe(0);
    } finally {
      fs.rmSync(tmp, { recursive: true });
    }
  });

  it.skipIf(!havePromtool)('promtool test rules passes every case in manifests/prometheus/tests', () => {
    expect(testFiles.length).toBeGreaterThan(0);
    const res = spawnSync('promtool', ['test', 'rules', ...testFiles], { encoding: 'utf8' });
    expect(res.status, res.stdout + res.stderr).toBe(0);
    expect(res.stdout + res.stderr).not.toMatch(/FAILED/);
  });

  it('the PrometheusRule holds exactly the groups of rules.yaml', () => {
    const crd = load<{ apiVersion: string; kind: string; metadata: { name: string }; spec: { groups: Group[] } }>('prometheusrule.yaml');
    expect(crd.apiVersion).toBe('monitoring.coreos.com/v1');
    expect(crd.kind).toBe('PrometheusRule');
    expect(crd.metadata.name).toBe('istiod-vault-agent');
    // When this fails, copy the groups of rules.yaml under spec: in prometheusrule.yaml (indent by two).
    expect(crd.spec.groups).toEqual(groups);
  });

  it('has the alerts the runbooks describe', () => {
    expect(alerts.map((a) => a.alert).sort()).toEqual(
      [
        'IstiodVaultAgentAbsent',
        'IstiodVaultAgentDown',
        'IstiodVaultAgentIntermediateExpired',
        'IstiodVaultAgentIntermediateExpiringCritical',
        'IstiodVaultAgentIntermediateExpiringSoon',
        'IstiodVaultAgentIssuanceFailures',
        'IstiodVaultAgentIstiodOutOfSync',
        'IstiodVaultAgentNotReady',
        'IstiodVaultAgentRenewalOverdue',
        'IstiodVaultAgentRootExpiringCritical',
        'IstiodVaultAgentRootExpiringSoon',
      ].sort(),
    );
  });

  const docs = fs.readFileSync(path.resolve('docs/runbooks.md'), 'utf8');
  const anchors = new Set([...docs.matchAll(/^#{1,6}\s+(.+)$/gm)].map((m) => githubSlug(m[1]!)));

  it.each(alerts.map((a) => [a.alert, a] as const))('%s has a severity, a summary, a description and a runbook that exists', (name, rule) => {
    expect(['critical', 'warning']).toContain(rule.labels?.severity);
    expect(rule.annotations?.summary?.length).toBeGreaterThan(10);
    expect(rule.annotations?.description?.length).toBeGreaterThan(20);
    const anchor = `runbook-${name.toLowerCase()}`;
    expect(rule.annotations?.runbook_url).toBe(RUNBOOK_BASE + anchor);
    expect([...anchors], `docs/runbooks.md needs a heading "Runbook: ${name}"`).toContain(anchor);
    // Alerts on a scrape target must name our job, or they would fire for any down target.
    if (/\bup\b/.test(rule.expr)) expect(rule.expr).toContain(`job="${JOB}"`);
  });

  it.each(alerts.map((a) => [a.alert] as const))('%s has a promtool case where it fires and one where it stays quiet', (name) => {
    const cases = testFiles.flatMap((f) => (YAML.parse(fs.readFileSync(f, 'utf8')) as RuleTestFile).tests.flatMap((t) => t.alert_rule_test ?? [])).filter((c) => c.alertname === name);
    expect(cases.some((c) => (c.exp_alerts ?? []).length > 0), 'no firing case').toBe(true);
    expect(cases.some((c) => (c.exp_alerts ?? []).length === 0), 'no quiet case').toBe(true);
  });

  it('reads only metrics the agent exports (plus up)', async () => {
    const exported = await exportedNames();
    exported.add('up');
    const used = new Set(alerts.flatMap((a) => [...metricNames(a.expr)]));
    expect(used.size).toBeGreaterThan(5);
    expect([...used].filter((n) => !exported.has(n))).toEqual([]);
  });

  it('extracts metric names from PromQL', () => {
    expect([...metricNames('histogram_quantile(0.9, sum by (le, operation) (rate(a_bucket{code=~"2..",x="y{z}"}[$__rate_interval])))')]).toEqual(['a_bucket']);
    expect([...metricNames('(b - time() < 48 * 3600 > 0) and ignoring(cert) (c > 0 and c < time())')].sort()).toEqual(['b', 'c']);
    expect([...metricNames('absent(up{job="j"}) or sum without (pod) (d offset 5m) unless on(x) e')].sort()).toEqual(['d', 'e', 'up']);
  });
});

describe('scrape manifests (manifests/prometheus)', () => {
  it('the PodMonitor scrapes the agent-metrics port of app=istiod pods in any namespace under our job name', () => {
    const pm = load<{
      apiVersion: string;
      kind: string;
      spec: {
        selector: { matchLabels: Record<string, string> };
        namespaceSelector: { any?: boolean; matchNames?: string[] };
        podMetricsEndpoints: { port: string; path: string; relabelings?: { targetLabel: string; replacement?: string; action?: string }[] }[];
      };
    }>('podmonitor.yaml');
    expect(pm.apiVersion).toBe('monitoring.coreos.com/v1');
    expect(pm.kind).toBe('PodMonitor');
    expect(pm.spec.selector.matchLabels).toEqual({ app: 'istiod' });
    expect(pm.spec.namespaceSelector.any).toBe(true);
    expect(pm.spec.podMetricsEndpoints).toHaveLength(1);
    const ep = pm.spec.podMetricsEndpoints[0]!;
    expect(ep).toMatchObject({ port: 'agent-metrics', path: '/metrics' });
    expect(ep.relabelings).toContainEqual({ action: 'replace', targetLabel: 'job', replacement: JOB });
  });

  it('the plain scrape config keeps app=istiod pods on the agent-metrics port under our job name', () => {
    const cfg = load<{ scrape_configs: { job_name: string; metrics_path: string; kubernetes_sd_configs: { role: string }[]; relabel_configs: { source_labels?: string[]; regex?: string; action?: string }[] }[] }>('scrape-config.yaml');
    expect(cfg.scrape_configs).toHaveLength(1);
    const job = cfg.scrape_configs[0]!;
    expect(job.job_name).toBe(JOB);
    expect(job.metrics_path).toBe('/metrics');
    expect(job.kubernetes_sd_configs).toEqual([{ role: 'pod' }]);
    const keeps = job.relabel_configs.filter((r) => r.action === 'keep').map((r) => [r.source_labels, r.regex]);
    expect(keeps).toContainEqual([['__meta_kubernetes_pod_label_app'], 'istiod']);
    expect(keeps).toContainEqual([['__meta_kubernetes_pod_container_port_name'], 'agent-metrics']);
    // The relabelling itself runs in a real Prometheus in test/integration/prometheus-scrape.test.ts.
  });

  it("the deploy manifests name the agent's container port agent-metrics, as the scrape configs select", () => {
    // A folder that vanished (renamed install paths) must fail here, not pass with nothing checked.
    const yamlFiles = (dir: string): string[] => fs.readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => /\.ya?ml$/.test(f)).map((f) => path.join(dir, f));
    const files = [...yamlFiles(path.resolve('manifests/kustomize')), ...yamlFiles(path.resolve('manifests/helm'))];
    let ports = 0;
    for (const file of files) {
      const text = fs.readFileSync(file, 'utf8');
      const declared = [...text.matchAll(/containerPort:\s*15099\b/g)].length;
      const named = [...text.matchAll(/-\s*name:\s*(\S+)\s*\n\s*containerPort:\s*15099\b/g)].map((m) => m[1]);
      expect(named, file).toEqual(Array(declared).fill('agent-metrics'));
      ports += declared;
    }
    expect(files.length).toBeGreaterThan(0);
    expect(ports, 'no containerPort 15099 in manifests/kustomize or manifests/helm').toBeGreaterThan(0);
  });

  it.skipIf(!requireCommand('kubectl', 'install kubectl'))('kustomize renders the PodMonitor and the PrometheusRule', () => {
    const out = execFileSync('kubectl', ['kustomize', DIR], { encoding: 'utf8' });
    const docs = YAML.parseAllDocuments(out).map((d) => d.toJS() as { kind: string; metadata: { name: string } });
    expect(docs.map((d) => `${d.kind}/${d.metadata.name}`).sort()).toEqual(['PodMonitor/istiod-vault-agent', 'PrometheusRule/istiod-vault-agent']);
  });
});

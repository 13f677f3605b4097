/**
 * The Grafana dashboard in manifests/grafana/: valid JSON, the data source a `${datasource}` variable
 * everywhere, namespace/pod/job variables applied to every query, every metric it reads one the agent
 * exports (names taken from the agent's own registry), the topics the dashboard promises all present, and
 * a layout without overlaps. That each query is valid PromQL and returns data is checked against a real
 * Prometheus in test/integration/prometheus-scrape.test.ts.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { requireCommand } from '../helpers/tools.js';
import { exportedNames, metricNames } from './support/promql.js';

const DIR = path.resolve('manifests/grafana');
const FILE = path.join(DIR, 'istiod-vault-agent.json');

interface Target {
  expr: string;
  refId: string;
  datasource?: { type: string; uid: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  description?: string;
  datasource?: { type: string; uid: string };
  gridPos: { h: number; w: number; x: number; y: number };
  targets?: Target[];
  panels?: Panel[];
}
interface Variable {
  name: string;
  type: string;
  query: unknown;
  datasource?: { type: string; uid: string };
  includeAll?: boolean;
  multi?: boolean;
}
interface Dashboard {
  uid: string;
  title: string;
  schemaVersion: number;
  panels: Panel[];
  templating: { list: Variable[] };
}

const text = fs.readFileSync(FILE, 'utf8');
const dash = JSON.parse(text) as Dashboard;
const panels = dash.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
const dataPanels = panels.filter((p) => p.type !== 'row');
const targets = dataPanels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, ...t })));

describe('Grafana dashboard (manifests/grafana)', () => {
  it('is a dashboard with a stable uid and title', () => {
    expect(dash.uid).toBe('istiod-vault-agent');
    expect(dash.title).toBe('istiod-vault-agent');
    expect(dash.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(dataPanels.length).toBeGreaterThan(10);
    expect(new Set(panels.map((p) => p.id)).size).toBe(panels.length);
  });

  it('takes its data source from the ${datasource} variable, in every panel, query and variable', () => {
    const ds = dash.templating.list.find((v) => v.name === 'datasource');
    expect(ds).toMatchObject({ type: 'datasource', query: 'prometheus' });
    const want = { type: 'prometheus', uid: '${datasource}' };
    for (const p of dataPanels) expect(p.datasource, p.title).toEqual(want);
    for (const t of targets) expect(t.datasource, t.panel).toEqual(want);
    for (const v of dash.templating.list.filter((x) => x.type === 'query')) expect(v.datasource, v.name).toEqual(want);
    // No data source of a particular Grafana instance leaks in.
    expect(text).not.toMatch(/"uid":\s*"(?!\$\{datasource\}|-- Grafana --|istiod-vault-agent")/);
  });

  it('has job, namespace and pod variables, and every query applies them', () => {
    const vars = Object.fromEntries(dash.templating.list.map((v) => [v.name, v]));
    expect(vars.job).toMatchObject({ type: 'textbox', query: 'istiod-vault-agent' });
    expect(vars.namespace).toMatchObject({ type: 'query', includeAll: true, multi: true });
    expect(vars.pod).toMatchObject({ type: 'query', includeAll: true, multi: true });
    expect(String(vars.pod!.query)).toContain('namespace=~"$namespace"');
    expect(targets.length).toBeGreaterThan(15);
    for (const t of targets) {
      const names = [...metricNames(t.expr)];
      expect(names.length, `${t.panel}: ${t.expr}`).toBeGreaterThan(0);
      for (const name of names) {
        for (const m of t.expr.matchAll(new RegExp(`(?<![\\w:])${name}(?![\\w:])(\\{[^}]*\\})?`, 'g'))) {
          for (const matcher of ['job="$job"', 'namespace=~"$namespace"', 'pod=~"$pod"']) expect(m[1] ?? '', `${t.panel}: ${m[0]}`).toContain(matcher);
        }
      }
    }
  });

  it('reads only metrics the agent exports', async () => {
    const exported = await exportedNames();
    const used = new Set([
      ...targets.flatMap((t) => [...metricNames(t.expr)]),
      ...dash.templating.list.filter((v) => v.type === 'query').flatMap((v) => [...metricNames(String(v.query).replace(/^label_values\((.*),\s*\w+\)$/, '$1'))]),
    ]);
    expect([...used].filter((n) => !exported.has(n))).toEqual([]);
  });

  it('shows what operators need: expiry, renewal, outcomes, Vault latency quantiles, sync, readiness, token, memory', () => {
    const exprs = targets.map((t) => t.expr);
    const has = (re: RegExp) => exprs.some((e) => re.test(e));
    expect(has(/istiod_vault_agent_cert_expiration_timestamp_seconds\{cert="intermediate"/)).toBe(true);
    expect(has(/istiod_vault_agent_cert_expiration_timestamp_seconds\{cert="root"/)).toBe(true);
    expect(has(/istiod_vault_agent_cert_renewal_timestamp_seconds/)).toBe(true);
    expect(has(/istiod_vault_agent_issuances_total\{result="success"/)).toBe(true);
    expect(has(/sum by \([^)]*reason[^)]*\) \(increase\(istiod_vault_agent_issuances_total\{result="failure"/)).toBe(true);
    for (const q of ['0.5', '0.9', '0.99']) {
      expect(has(new RegExp(`histogram_quantile\\(${q.replace('.', '\\.')}, sum by \\(le, operation\\) \\((rate|increase)\\(istiod_vault_agent_vault_request_duration_seconds_bucket`)), `p${q}`).toBe(true);
    }
    for (const m of ['istiod_vault_agent_istiod_in_sync', 'istiod_vault_agent_ready', 'istiod_vault_agent_vault_token_expiration_timestamp_seconds', 'process_resident_memory_bytes', 'istiod_vault_agent_build_info']) {
      expect(has(new RegExp(`\\b${m}\\{`)), m).toBe(true);
    }
  });

  it('gives every panel a title and a description', () => {
    for (const p of dataPanels) {
      expect(p.title.length, String(p.id)).toBeGreaterThan(2);
      expect(p.description?.length ?? 0, p.title).toBeGreaterThan(20);
    }
  });

  it('lays panels out on the 24-column grid without overlaps', () => {
    const cells = new Set<string>();
    for (const p of panels) {
      const { x, y, w, h } = p.gridPos;
      expect(x + w, p.title).toBeLessThanOrEqual(24);
      for (let i = x; i < x + w; i++) {
        for (let j = y; j < y + h; j++) {
          const cell = `${i},${j}`;
          expect(cells.has(cell), `${p.title} overlaps at ${cell}`).toBe(false);
          cells.add(cell);
        }
      }
    }
  });

  it.skipIf(!requireCommand('kubectl', 'install kubectl'))('kustomize wraps it in a ConfigMap for the Grafana dashboard sidecar', () => {
    const out = YAML.parse(execFileSync('kubectl', ['kustomize', DIR], { encoding: 'utf8' })) as { kind: string; metadata: { name: string; labels: Record<string, string> }; data: Record<string, string> };
    expect(out.kind).toBe('ConfigMap');
    expect(out.metadata.name).toBe('istiod-vault-agent-dashboard');
    expect(out.metadata.labels.grafana_dashboard).toBe('1');
    expect(JSON.parse(out.data['istiod-vault-agent.json']!)).toEqual(dash);
  });
});

import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import type { Settings } from './settings.ts';
import type { Summary } from './stats.ts';

/**
 * A target: on the ratio (orrery ÷ baseline, medians) or on orrery's own figure.
 * `op` reads "orrery's figure must be op value".
 */
export interface Target {
  on: 'ratio' | 'orrery';
  op: '>=' | '<=' | '<';
  value: number;
}

export interface MetricRow {
  metric: string;
  unit: string;
  orrery: Summary;
  baseline?: { name: string; summary: Summary };
  /** orrery median ÷ baseline median. */
  ratio?: number;
  /** Per-run ratios (runs are interleaved, so each pair shares the same background). */
  runRatios?: Summary;
  target?: Target;
  met?: boolean;
}

export interface ScenarioOutput {
  metrics: MetricRow[];
  /** The scenario's own settings (sizes, rates, topics), beside the global ones. */
  settings: Record<string, unknown>;
  /** Everything measured, run by run. */
  runs: unknown[];
  notes: string[];
}

export interface ScenarioReport extends ScenarioOutput {
  scenario: string;
  description: string;
  date: string;
  node: string;
  machine: { cores: number; cpuModel: string; loadavgAtStart: number[]; loadavgAtEnd: number[] };
  benchSettings: Settings;
  durationS: number;
}

export function row(metric: string, unit: string, orrery: Summary, baseline?: { name: string; summary: Summary }, target?: Target): MetricRow {
  const r: MetricRow = { metric, unit, orrery };
  if (baseline) {
    r.baseline = baseline;
    r.ratio = orrery.median / baseline.summary.median;
    const pairs = orrery.values.map((v, i) => v / (baseline.summary.values[i] ?? Number.NaN)).filter(Number.isFinite);
    if (pairs.length === orrery.values.length && pairs.length > 0) {
      const sorted = [...pairs].sort((a, b) => a - b);
      const mid = sorted.length >> 1;
      r.runRatios = {
        median: sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2,
        min: sorted[0]!,
        max: sorted.at(-1)!,
        values: pairs,
      };
    }
  }
  if (target) {
    r.target = target;
    const v = target.on === 'ratio' ? r.ratio : orrery.median;
    if (v !== undefined && Number.isFinite(v)) {
      r.met = target.op === '>=' ? v >= target.value : target.op === '<=' ? v <= target.value : v < target.value;
    }
  }
  return r;
}

export function machineInfo(): { cores: number; cpuModel: string } {
  const list = cpus();
  return { cores: list.length, cpuModel: list[0]?.model ?? 'unknown' };
}

export function currentLoad(): number[] {
  return loadavg().map((x) => Math.round(x * 100) / 100);
}

export function writeReport(dir: string, report: ScenarioReport): string {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${report.scenario}.json`);
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  return file;
}

function fmt(n: number): string {
  if (!Number.isFinite(n)) return '–';
  const a = Math.abs(n);
  if (a >= 100_000) return `${Math.round(n / 1000)}k`;
  if (a >= 10_000) return `${(n / 1000).toFixed(1)}k`;
  if (a >= 100) return String(Math.round(n));
  if (a >= 10) return n.toFixed(1);
  return n.toFixed(2);
}

export function fmtSummary(s: Summary): string {
  return s.values.length > 1 && s.min !== s.max ? `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})` : fmt(s.median);
}

/** Two decimals; two significant digits below 0.1 (gitops' ratios to a polling interval are that small). */
export function fmtRatio(r: number): string {
  return Math.abs(r) >= 0.1 || r === 0 ? r.toFixed(2) : r.toPrecision(2);
}

export function fmtTarget(t: Target | undefined): string {
  if (!t) return 'report only';
  return `${t.on === 'ratio' ? 'ratio' : 'orrery'} ${t.op} ${t.value}`;
}

/** The table: scenario, metric, orrery, baseline, ratio, target, met?. Markdown, so it pastes into a report. */
export function table(reports: ScenarioReport[]): string {
  const head = ['scenario', 'metric', 'orrery median (min–max)', 'baseline median (min–max)', 'ratio (per-run min–max)', 'target', 'met?'];
  const rows: string[][] = [];
  for (const r of reports) {
    for (const m of r.metrics) {
      rows.push([
        r.scenario,
        `${m.metric} [${m.unit}]`,
        fmtSummary(m.orrery),
        m.baseline ? `${m.baseline.name}: ${fmtSummary(m.baseline.summary)}` : '—',
        m.ratio === undefined ? '—' : `${fmtRatio(m.ratio)}×${m.runRatios && m.runRatios.values.length > 1 ? ` (${fmtRatio(m.runRatios.min)}–${fmtRatio(m.runRatios.max)})` : ''}`,
        fmtTarget(m.target),
        m.met === undefined ? (m.target ? '?' : '—') : m.met ? 'yes' : 'NO',
      ]);
    }
  }
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

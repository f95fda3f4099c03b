#!/usr/bin/env node
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Summarises V8 CPU profiles (`.cpuprofile`, as BENCH_PROFILE=1 writes them under
 * bench/results/profiles/<scenario>/<component>/): where the CPU went, by owner (Orrery's
 * own code, each library under node_modules, Node's internals, GC, idle) and by function,
 * self time and, for Orrery's functions, inclusive time.
 *
 *   node bench/profile-summary.ts bench/results/profiles/router [--top 25]
 */

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const ROOT = fileURLToPath(new URL('../', import.meta.url));

/** Who owns a frame: `orrery:<folder>`, `lib:<package>`, `node`, or a V8 pseudo-frame. */
export function ownerOf(cf: CallFrame): string {
  const url = cf.url;
  if (!url) {
    if (cf.functionName === '(garbage collector)') return '(gc)';
    if (cf.functionName === '(idle)') return '(idle)';
    if (cf.functionName === '(program)') return '(program)';
    return '(native)';
  }
  if (url.startsWith('node:')) return 'node';
  const path = url.startsWith('file://') ? fileURLToPath(url) : url;
  const nm = path.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = path.slice(nm + '/node_modules/'.length).split('/');
    return `lib:${rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]}`;
  }
  if (path.startsWith(ROOT)) return `orrery:${relative(ROOT, path).split('/')[0]}`;
  return 'other';
}

function frameName(cf: CallFrame): string {
  const url = cf.url.startsWith('file://') ? relative(ROOT, fileURLToPath(cf.url)) : cf.url;
  return `${cf.functionName || '(anonymous)'} ${url ? `${url.replace(/^.*node_modules\//, '')}:${cf.lineNumber + 1}` : ''}`.trim();
}

export interface ProfileSummary {
  file: string;
  totalMs: number;
  /** Busy = total − idle. */
  busyMs: number;
  byOwner: Array<{ owner: string; ms: number; pctBusy: number }>;
  /**
   * Self time charged to the nearest Orrery or library frame on the stack, so that Node's
   * internals (sockets, streams, buffers) count for whoever called them; module loading
   * at start-up is set apart.
   */
  byCaller: Array<{ owner: string; ms: number; pctBusy: number }>;
  topSelf: Array<{ frame: string; owner: string; ms: number; pctBusy: number }>;
  /** Orrery functions by inclusive time (their callees, libraries included). */
  topOrreryInclusive: Array<{ frame: string; ms: number; pctBusy: number }>;
}

export function summarizeProfile(file: string, top = 25): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<number, number>();
  let total = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const dt = (p.timeDeltas[i] ?? 0) / 1000;
    total += dt;
    self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + dt);
  }
  const owners = new Map<string, number>();
  const frames = new Map<string, { owner: string; ms: number }>();
  const inclusive = new Map<string, number>();
  const callers = new Map<string, number>();
  let idle = 0;
  for (const [id, ms] of self) {
    const node = byId.get(id)!;
    const owner = ownerOf(node.callFrame);
    if (owner === '(idle)') idle += ms;
    owners.set(owner, (owners.get(owner) ?? 0) + ms);
    const name = frameName(node.callFrame);
    const f = frames.get(name) ?? { owner, ms: 0 };
    f.ms += ms;
    frames.set(name, f);
    // Charged to the nearest Orrery or library frame (module loading set apart).
    let caller: string | undefined;
    let loading = false;
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const cf = byId.get(cur)!.callFrame;
      if (cf.url.startsWith('node:internal/modules/')) loading = true;
      const o = ownerOf(cf);
      if (!caller && (o.startsWith('orrery:') || o.startsWith('lib:'))) caller = o;
    }
    const charged = owner.startsWith('(') && owner !== '(native)' ? owner : loading ? '(module loading)' : (caller ?? `${owner} (no caller in js)`);
    callers.set(charged, (callers.get(charged) ?? 0) + ms);
    // Inclusive time of Orrery frames: each distinct Orrery frame on the stack once.
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const cf = byId.get(cur)!.callFrame;
      if (!ownerOf(cf).startsWith('orrery:')) continue;
      const n = frameName(cf);
      if (seen.has(n)) continue;
      seen.add(n);
      inclusive.set(n, (inclusive.get(n) ?? 0) + ms);
    }
  }
  const busy = total - idle;
  const pct = (ms: number) => Math.round((ms / busy) * 1000) / 10;
  return {
    file,
    totalMs: Math.round(total),
    busyMs: Math.round(busy),
    byOwner: [...owners].filter(([o]) => o !== '(idle)').sort((a, b) => b[1] - a[1]).map(([owner, ms]) => ({ owner, ms: Math.round(ms), pctBusy: pct(ms) })),
    byCaller: [...callers].filter(([o]) => o !== '(idle)').sort((a, b) => b[1] - a[1]).map(([owner, ms]) => ({ owner, ms: Math.round(ms), pctBusy: pct(ms) })),
    topSelf: [...frames]
      .filter(([, f]) => f.owner !== '(idle)')
      .sort((a, b) => b[1].ms - a[1].ms)
      .slice(0, top)
      .map(([frame, f]) => ({ frame, owner: f.owner, ms: Math.round(f.ms), pctBusy: pct(f.ms) })),
    topOrreryInclusive: [...inclusive].sort((a, b) => b[1] - a[1]).slice(0, top).map(([frame, ms]) => ({ frame, ms: Math.round(ms), pctBusy: pct(ms) })),
  };
}

function profilesUnder(path: string): string[] {
  if (statSync(path).isFile()) return [path];
  return readdirSync(path, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.cpuprofile'))
    .map((f) => join(path, f))
    .sort();
}

function print(s: ProfileSummary): void {
  const out: string[] = [];
  out.push(`\n## ${relative(process.cwd(), s.file)}: ${(s.totalMs / 1000).toFixed(1)} s profiled, ${(s.busyMs / 1000).toFixed(1)} s busy`);
  out.push('\nby owner (self time, % of busy):');
  for (const o of s.byOwner.slice(0, 15)) out.push(`  ${o.pctBusy.toFixed(1).padStart(5)}%  ${String(o.ms).padStart(7)} ms  ${o.owner}`);
  out.push('\nby caller (self time charged to the nearest Orrery or library frame, % of busy):');
  for (const o of s.byCaller.slice(0, 15)) out.push(`  ${o.pctBusy.toFixed(1).padStart(5)}%  ${String(o.ms).padStart(7)} ms  ${o.owner}`);
  out.push('\ntop functions by self time:');
  for (const f of s.topSelf) out.push(`  ${f.pctBusy.toFixed(1).padStart(5)}%  ${String(f.ms).padStart(7)} ms  [${f.owner}] ${f.frame}`);
  out.push("\nOrrery's functions by inclusive time:");
  for (const f of s.topOrreryInclusive) out.push(`  ${f.pctBusy.toFixed(1).padStart(5)}%  ${String(f.ms).padStart(7)} ms  ${f.frame}`);
  process.stdout.write(`${out.join('\n')}\n`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2);
  const topAt = args.indexOf('--top');
  const top = topAt >= 0 ? Number(args.splice(topAt, 2)[1]) : 25;
  const json = args.includes('--json');
  const paths = args.filter((a) => a !== '--json');
  if (paths.length === 0) {
    process.stderr.write('usage: node bench/profile-summary.ts <file.cpuprofile|folder>… [--top N] [--json]\n');
    process.exitCode = 2;
  } else {
    const summaries = paths.flatMap(profilesUnder).map((f) => summarizeProfile(f, top));
    if (json) process.stdout.write(`${JSON.stringify(summaries, null, 2)}\n`);
    else summaries.forEach(print);
  }
}

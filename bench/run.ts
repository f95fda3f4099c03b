#!/usr/bin/env node
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchContext, KafkaClientName, Scenario, Services } from './lib/context.ts';
import { currentLoad, machineInfo, table, writeReport, type ScenarioReport } from './lib/report.ts';
import { loadSettings } from './lib/settings.ts';
import { nowMs } from './lib/stats.ts';
import { scenario as e2eLatency } from './scenarios/e2e-latency.ts';
import { scenario as embedded } from './scenarios/embedded.ts';
import { scenario as gitops } from './scenarios/gitops.ts';
import { scenario as ingestBatch } from './scenarios/ingest-batch.ts';
import { scenario as ingestTrack } from './scenarios/ingest-track.ts';
import { scenario as memory } from './scenarios/memory.ts';
import { scenario as routerBacklog } from './scenarios/router-backlog.ts';
import { scenario as router } from './scenarios/router.ts';
import { scenario as sinkWebhook } from './scenarios/sink-webhook.ts';
import { scenario as spool } from './scenarios/spool.ts';

/**
 * `npm run bench [scenario…]`: runs the scenarios (all by default), each against its
 * baseline in the same run, writes bench/results/<scenario>.json and prints the table.
 * See bench/README.md.
 */

const SCENARIOS: Scenario[] = [ingestTrack, ingestBatch, router, routerBacklog, sinkWebhook, e2eLatency, gitops, memory, embedded, spool];

/** Scenarios whose orrery processes talk to Kafka: each runs once per client of BENCH_KAFKA_CLIENTS. */
const KAFKA_SCENARIOS = new Set(['ingest-track', 'ingest-batch', 'router', 'router-backlog', 'sink-webhook', 'e2e-latency', 'memory']);
const KAFKA_CLIENTS: readonly KafkaClientName[] = ['kafkajs', 'platformatic'];

/** BENCH_KAFKA_CLIENTS: the Kafka clients to measure, comma-separated; default both (issue #18). */
function kafkaClients(): KafkaClientName[] {
  const raw = (process.env.BENCH_KAFKA_CLIENTS ?? KAFKA_CLIENTS.join(',')).split(',').map((c) => c.trim()).filter(Boolean);
  const bad = raw.filter((c) => !KAFKA_CLIENTS.includes(c as KafkaClientName));
  if (bad.length > 0 || raw.length === 0) throw new Error(`BENCH_KAFKA_CLIENTS: ${bad.join(', ') || '(empty)'} is not one of ${KAFKA_CLIENTS.join(', ')}`);
  return [...new Set(raw)] as KafkaClientName[];
}

/**
 * One (scenario, client) pair to run. With two clients, each Kafka scenario runs with both,
 * back to back, and the order flips from one scenario to the next (ABBA), so that neither
 * client always gets the machine's later, warmer (or busier) minutes. Each run measures
 * its own baseline beside it, so the clients are compared by their ratios.
 */
function plan(chosen: Scenario[], clients: KafkaClientName[]): Array<{ sc: Scenario; client?: KafkaClientName }> {
  let flip = false;
  return chosen.flatMap((sc) => {
    if (!KAFKA_SCENARIOS.has(sc.name) || clients.length < 2) return [{ sc, ...(clients.length === 1 && KAFKA_SCENARIOS.has(sc.name) ? { client: clients[0]! } : {}) }];
    const order = flip ? [...clients].reverse() : clients;
    flip = !flip;
    return order.map((client) => ({ sc, client }));
  });
}

/**
 * The clients side by side: each scenario's first metric as a ratio to its own baseline,
 * per client, and the second client's ratio over the first's (above 1: the second is
 * ahead on a throughput; on a latency or a memory figure, below 1 is better).
 */
function clientTable(reports: ScenarioReport[], clients: KafkaClientName[]): { text: string; rows: Array<Record<string, unknown>> } {
  const [a, b] = clients as [KafkaClientName, KafkaClientName];
  const rows: Array<Record<string, unknown>> = [];
  for (const name of KAFKA_SCENARIOS) {
    const ra = reports.find((r) => r.scenario === `${name}@${a}`);
    const rb = reports.find((r) => r.scenario === `${name}@${b}`);
    if (!ra || !rb) continue;
    for (const ma of ra.metrics) {
      // A metric can appear twice, against two baselines (req/s vs hono, vs node:http).
      // Each client's baseline can be its own (the router's relay): then the row compares
      // what each costs over its own client.
      const same = rb.metrics.find((m) => m.metric === ma.metric && m.baseline?.name === ma.baseline?.name);
      const own = same ? undefined : rb.metrics.find((m) => m.metric === ma.metric && m.baseline && ma.baseline && !ra.metrics.some((x) => x.metric === m.metric && x.baseline?.name === m.baseline?.name));
      const mb = same ?? own;
      if (!mb) continue;
      const va = ma.ratio ?? ma.orrery.median;
      const vb = mb.ratio ?? mb.orrery.median;
      const unit = ma.ratio === undefined ? ma.unit : same ? `× ${ma.baseline?.name}` : `× ${ma.baseline?.name} / × ${mb.baseline?.name}`;
      rows.push({ scenario: name, metric: `${ma.metric} [${unit}]`, [a]: va, [b]: vb, [`${b} ÷ ${a}`]: vb / va });
    }
  }
  const head = ['scenario', 'metric', a, b, `${b} ÷ ${a}`];
  const cells = rows.map((r) => head.map((h) => (typeof r[h] === 'number' ? (r[h] as number).toFixed(3) : String(r[h]))));
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) => `| ${c.map((x, i) => x.padEnd(widths[i]!)).join(' | ')} |`;
  return { text: [line(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...cells.map(line)].join('\n'), rows };
}
const RESULTS = process.env.BENCH_RESULTS_DIR || fileURLToPath(new URL('./results/', import.meta.url));
const SERVICES_UP = fileURLToPath(new URL('../test/services/up', import.meta.url));

// kafkajs 2.2.4 schedules a negative timeout on Node ≥ 23 (harmless); keep other warnings.
process.removeAllListeners('warning');
process.on('warning', (w) => {
  if (w.name !== 'TimeoutNegativeWarning') process.stderr.write(`${w.name}: ${w.message}\n`);
});

function log(msg: string): void {
  process.stderr.write(`${msg}\n`);
}

/** KAFKA_BROKERS and REDIS_URL from env, or from test/services/up (which starts or reuses them). */
function services(): Services {
  let kafkaBrokers = process.env.KAFKA_BROKERS ?? '';
  let redisUrl = process.env.REDIS_URL ?? '';
  if (!kafkaBrokers || !redisUrl) {
    log('KAFKA_BROKERS / REDIS_URL not set: running test/services/up kafka redis');
    const out = execFileSync('bash', [SERVICES_UP, 'kafka', 'redis'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 300_000 });
    for (const m of out.matchAll(/^export (\w+)=(.*)$/gm)) {
      const value = m[2]!.replace(/^['"]|['"]$/g, '');
      if (m[1] === 'KAFKA_BROKERS' && !kafkaBrokers) kafkaBrokers = value;
      if (m[1] === 'REDIS_URL' && !redisUrl) redisUrl = value;
    }
  }
  if (!kafkaBrokers || !redisUrl) throw new Error('no Kafka or Redis: eval "$(test/services/up)" first');
  for (const hostPort of kafkaBrokers.split(',')) {
    if (!/^(127\.\d+\.\d+\.\d+|localhost|\[::1\]):\d+$/.test(hostPort.trim())) throw new Error(`the bench loads only this machine: KAFKA_BROKERS=${kafkaBrokers}`);
  }
  if (!/^rediss?:\/\/([^@]*@)?(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?(\/|$)/.test(redisUrl)) throw new Error('the bench loads only this machine: REDIS_URL must be on 127.0.0.1');
  return { kafkaBrokers, redisUrl };
}

async function main(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h') || argv.includes('--list')) {
    process.stdout.write(`Usage: npm run bench [-- scenario…]   (--table: print the table of the saved results)\n\nScenarios:\n${SCENARIOS.map((s) => `  ${s.name.padEnd(14)} ${s.description}`).join('\n')}\n\nSettings (env): see bench/README.md\n`);
    return 0;
  }
  if (argv.includes('--table')) {
    // The table of the results already in RESULTS, without running anything.
    const reports = SCENARIOS.flatMap((sc) =>
      [sc.name, ...KAFKA_CLIENTS.map((c) => `${sc.name}@${c}`)].flatMap((name) => {
        try {
          return [JSON.parse(readFileSync(join(RESULTS, `${name}.json`), 'utf8')) as ScenarioReport];
        } catch {
          return [];
        }
      }),
    );
    process.stdout.write(`${table(reports)}\n`);
    return 0;
  }
  const unknown = argv.filter((a) => !SCENARIOS.some((s) => s.name === a));
  if (unknown.length > 0) {
    log(`unknown scenario(s): ${unknown.join(', ')}; choose from ${SCENARIOS.map((s) => s.name).join(', ')}`);
    return 2;
  }
  const chosen = argv.length > 0 ? SCENARIOS.filter((s) => argv.includes(s.name)) : SCENARIOS.filter((s) => !s.onlyWhenNamed);
  const settings = loadSettings();
  const clients = kafkaClients();
  const svc = services();
  const runId = `${Date.now().toString(36)}${randomBytes(2).toString('hex')}`;
  const tmpDir = mkdtempSync(join(tmpdir(), 'orrery-bench-'));
  const { cores, cpuModel } = machineInfo();
  log(`orrery bench ${runId}: ${chosen.map((s) => s.name).join(', ')} (node ${process.version}, ${cores} cores; Kafka clients ${clients.join(', ')}; ${JSON.stringify(settings)})`);

  const reports: ScenarioReport[] = [];
  const failed: string[] = [];
  try {
    for (const { sc, client } of plan(chosen, clients)) {
      const name = client && clients.length > 1 ? `${sc.name}@${client}` : sc.name;
      log(`\n== ${name}: ${sc.description}${client ? ` (Kafka client: ${client})` : ''}`);
      const ctx: BenchContext = { scenario: name, settings, services: svc, runId: client ? `${runId}${client.slice(0, 2)}` : runId, tmpDir, profileDir: join(RESULTS, 'profiles'), log, ...(client ? { kafkaClient: client } : {}) };
      // One more try after a failure: on a shared machine another job may restart Kafka
      // (the outage tests do) in the middle of a scenario.
      for (let attempt = 1; attempt <= 2; attempt++) {
        const started = nowMs();
        const loadavgAtStart = currentLoad();
        try {
          const out = await sc.run(attempt === 1 ? ctx : { ...ctx, runId: `${runId}x${attempt}` });
          const report: ScenarioReport = {
            scenario: name,
            description: sc.description,
            date: new Date().toISOString(),
            node: process.version,
            machine: { cores, cpuModel, loadavgAtStart, loadavgAtEnd: currentLoad() },
            benchSettings: settings,
            durationS: Math.round((nowMs() - started) / 100) / 10,
            ...out,
            notes: attempt > 1 ? [...out.notes, `second attempt: the first failed`] : out.notes,
          };
          reports.push(report);
          log(`   wrote ${writeReport(RESULTS, report)} (${report.durationS} s)`);
          for (const n of report.notes) log(`   note: ${n}`);
          break;
        } catch (err) {
          log(`   FAILED (attempt ${attempt}/2): ${(err as Error).stack ?? String(err)}`);
          if (attempt === 2) failed.push(name);
          else await new Promise((r) => setTimeout(r, 10_000));
        }
      }
    }
  } finally {
    rmSync(tmpDir, { recursive: true, force: true });
  }
  let text = table(reports);
  if (clients.length > 1) {
    const compared = clientTable(reports, clients);
    if (compared.rows.length > 0) {
      text += `\n\nKafka clients, each scenario's figures as ratios to its own baseline:\n\n${compared.text}`;
      writeFileSync(join(RESULTS, 'kafka-clients.json'), `${JSON.stringify({ date: new Date().toISOString(), clients, rows: compared.rows }, null, 2)}\n`);
    }
  }
  process.stdout.write(`\n${text}\n`);
  if (reports.length > 0) writeFileSync(join(RESULTS, 'last-table.md'), `${text}\n`);
  if (failed.length > 0) {
    log(`\nfailed: ${failed.join(', ')}`);
    return 1;
  }
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    log(`bench: ${(err as Error).stack ?? String(err)}`);
    process.exitCode = 1;
  },
);

#!/usr/bin/env node
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchContext, Scenario, Services } from './lib/context.ts';
import { currentLoad, machineInfo, table, writeReport, type ScenarioReport } from './lib/report.ts';
import { loadSettings } from './lib/settings.ts';
import { nowMs } from './lib/stats.ts';
import { scenario as e2eLatency } from './scenarios/e2e-latency.ts';
import { scenario as gitops } from './scenarios/gitops.ts';
import { scenario as ingestBatch } from './scenarios/ingest-batch.ts';
import { scenario as ingestTrack } from './scenarios/ingest-track.ts';
import { scenario as memory } from './scenarios/memory.ts';
import { scenario as routerBacklog } from './scenarios/router-backlog.ts';
import { scenario as router } from './scenarios/router.ts';
import { scenario as sinkWebhook } from './scenarios/sink-webhook.ts';

/**
 * `npm run bench [scenario…]`: runs the scenarios (all by default), each against its
 * baseline in the same run, writes bench/results/<scenario>.json and prints the table.
 * See bench/README.md.
 */

const SCENARIOS: Scenario[] = [ingestTrack, ingestBatch, router, routerBacklog, sinkWebhook, e2eLatency, gitops, memory];
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
    const reports = SCENARIOS.flatMap((sc) => {
      try {
        return [JSON.parse(readFileSync(join(RESULTS, `${sc.name}.json`), 'utf8')) as ScenarioReport];
      } catch {
        return [];
      }
    });
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
  const svc = services();
  const runId = `${Date.now().toString(36)}${randomBytes(2).toString('hex')}`;
  const tmpDir = mkdtempSync(join(tmpdir(), 'orrery-bench-'));
  const { cores, cpuModel } = machineInfo();
  log(`orrery bench ${runId}: ${chosen.map((s) => s.name).join(', ')} (node ${process.version}, ${cores} cores; ${JSON.stringify(settings)})`);

  const reports: ScenarioReport[] = [];
  const failed: string[] = [];
  try {
    for (const sc of chosen) {
      log(`\n== ${sc.name}: ${sc.description}`);
      const ctx: BenchContext = { scenario: sc.name, settings, services: svc, runId, tmpDir, profileDir: join(RESULTS, 'profiles'), log };
      // One more try after a failure: on a shared machine another job may restart Kafka
      // (the outage tests do) in the middle of a scenario.
      for (let attempt = 1; attempt <= 2; attempt++) {
        const started = nowMs();
        const loadavgAtStart = currentLoad();
        try {
          const out = await sc.run(attempt === 1 ? ctx : { ...ctx, runId: `${runId}x${attempt}` });
          const report: ScenarioReport = {
            scenario: sc.name,
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
          if (attempt === 2) failed.push(sc.name);
          else await new Promise((r) => setTimeout(r, 10_000));
        }
      }
    }
  } finally {
    rmSync(tmpDir, { recursive: true, force: true });
  }
  const text = table(reports);
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

import { execFile } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect } from 'vitest';
import { serviceCtl, serviceEnv, uniqueName, waitFor } from './index.ts';
import { realServicesEnv, startOrrery, type OrreryProcess } from './process.ts';
import { startReceiver } from './receiver.ts';

/**
 * The fault suite's harness (issue #15): a load generator at a bounded rate and count, a
 * real pipeline of `orrery start <component>` processes delivering to a real local HTTP
 * receiver, and the accounting of what was sent, acknowledged and delivered.
 *
 * Sizes come from env so CI stays short and a bigger run is one variable away:
 * FAULT_RATE (events/s), FAULT_SECONDS (the load's length; in the outage cases, the load
 * before and after the fault), FAULT_USERS, FAULT_<CASE>_MS (the length of a fault).
 */
export const faultEnv = {
  rate: (fallback: number) => Number(process.env.FAULT_RATE ?? fallback),
  seconds: (fallback: number) => Number(process.env.FAULT_SECONDS ?? fallback),
  users: () => Number(process.env.FAULT_USERS ?? 40),
  /** Milliseconds, from FAULT_<NAME>_MS, for the length of one case's fault. */
  ms: (name: string, fallback: number) => Number(process.env[`FAULT_${name}_MS`] ?? fallback),
};

export interface LoadOptions {
  /** Ingest's base URL; read on every request, so a restarted ingest on a new port is followed. */
  url: () => string;
  writeKey: string;
  /** Events per second, spread evenly. */
  rate: number;
  count: number;
  /** Distinct userIds; event i belongs to user i % users and carries properties.seq. */
  users: number;
  /**
   * Requests in flight at once. Each lane owns a fixed set of users and sends its requests
   * one after the other, so each user's events reach ingest in order, as from one SDK.
   */
  lanes?: number;
}

export interface Load {
  tag: string;
  /** Events whose request went out (answered or not). */
  sent(): number;
  /** messageIds of events in requests answered 2xx: ingest's promise that they are durable. */
  acked: Set<string>;
  /** Events in requests answered non-2xx or not at all. */
  failed(): number;
  /** Resolves when every event has been sent once. */
  done: Promise<void>;
  /** Stops sending (the rest are never sent). */
  stop(): void;
}

/**
 * Sends `count` track events at `rate` events/s through /v1/batch (at most 100 per call).
 * A failed request is not retried: its events count as sent but not acknowledged, and a
 * retry would put them behind later events of the same users.
 *
 * @example
 *   const load = startLoad({ url: () => ingest.url, writeKey: 'k', rate: 200, count: 6000, users: 40 });
 *   await load.done;
 */
export function startLoad(opts: LoadOptions): Load {
  const tag = uniqueName('f');
  const lanes = opts.lanes ?? 4;
  if (opts.users % lanes !== 0) throw new Error(`users (${opts.users}) must be a multiple of lanes (${lanes})`);
  const acked = new Set<string>();
  let sent = 0;
  let failed = 0;
  let stopped = false;
  const t0 = Date.now();
  const dueAt = (i: number) => t0 + (i * 1000) / opts.rate;
  const event = (i: number) => ({
    type: 'track',
    event: 'Fault Probe',
    userId: `${tag}-u${i % opts.users}`,
    messageId: `${tag}-${i}`,
    properties: { seq: Math.floor(i / opts.users) },
  });
  const auth = `Basic ${btoa(`${opts.writeKey}:`)}`;

  // Lane l sends events i ≡ l (mod lanes); as lanes divides users, that is a fixed set of users.
  async function lane(l: number): Promise<void> {
    let i = l;
    while (i < opts.count && !stopped) {
      const now = Date.now();
      if (dueAt(i) > now) {
        await sleep(dueAt(i) - now);
        continue;
      }
      const batch: number[] = [];
      while (i < opts.count && dueAt(i) <= now && batch.length < 100) {
        batch.push(i);
        i += lanes;
      }
      sent += batch.length;
      try {
        const res = await fetch(`${opts.url()}/v1/batch`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: auth },
          body: JSON.stringify({ batch: batch.map(event) }),
          signal: AbortSignal.timeout(15_000),
        });
        await res.arrayBuffer();
        if (res.ok) for (const n of batch) acked.add(`${tag}-${n}`);
        else failed += batch.length;
      } catch {
        failed += batch.length;
        // Ingest is down: do not spin on refused connections.
        await sleep(50);
      }
    }
  }
  const done = Promise.all(Array.from({ length: lanes }, (_, l) => lane(l))).then(() => undefined);
  return { tag, acked, done, sent: () => sent, failed: () => failed, stop: () => void (stopped = true) };
}

export interface FaultReport {
  sent: number;
  acked: number;
  delivered: number;
  duplicates: number;
  lost: string[];
  orderViolations: number;
}

/**
 * The accounting of one run. `deliveries` is every event the receiver accepted, in arrival
 * order. Order is judged on first deliveries: per user, an event whose seq is below one
 * already delivered is a violation; a repeat of a delivered messageId is a duplicate, not
 * a violation.
 */
export function account(load: Load, deliveries: Array<Record<string, unknown>>): FaultReport {
  const seen = new Set<string>();
  const maxSeq = new Map<string, number>();
  let duplicates = 0;
  let orderViolations = 0;
  for (const d of deliveries) {
    const id = String(d.messageId);
    if (!id.startsWith(`${load.tag}-`)) continue;
    if (seen.has(id)) {
      duplicates++;
      continue;
    }
    seen.add(id);
    const user = String(d.userId);
    const seq = (d.properties as { seq: number }).seq;
    if (seq < (maxSeq.get(user) ?? -1)) orderViolations++;
    else maxSeq.set(user, seq);
  }
  return {
    sent: load.sent(),
    acked: load.acked.size,
    delivered: seen.size,
    duplicates,
    lost: [...load.acked].filter((id) => !seen.has(id)),
    orderViolations,
  };
}

/**
 * Prints the parseable line and asserts the guarantees: nothing acknowledged lost, no
 * order violation, and duplicates within the case's stated bound.
 */
export function expectGuarantees(name: string, report: FaultReport, bound: { maxDuplicates: number; why: string }, extra = ''): void {
  console.info(
    `fault ${name}: sent ${report.sent}, acked ${report.acked}, delivered ${report.delivered}, duplicates ${report.duplicates}, lost ${report.lost.length}, order violations ${report.orderViolations}` +
      ` (duplicate bound ${bound.maxDuplicates}: ${bound.why})${extra ? `; ${extra}` : ''}`,
  );
  expect(report.acked, 'the load must have been acknowledged at all').toBeGreaterThan(0);
  expect(report.lost.slice(0, 10), `${report.lost.length} acknowledged events never delivered`).toEqual([]);
  expect(report.orderViolations, 'per-user order violations').toBe(0);
  expect(report.duplicates, `duplicates over the bound (${bound.why})`).toBeLessThanOrEqual(bound.maxDuplicates);
}

/** Every event a receiver accepted, flattening `batch: true` arrays, in arrival order. */
export function deliveries(receiver: Receiver): Array<Record<string, unknown>> {
  return receiver.accepted().flatMap((b) => (Array.isArray(b) ? (b as Array<Record<string, unknown>>) : [b]));
}

/**
 * Waits until every acknowledged event has been delivered (or `timeoutMs` passes: the
 * report then shows what is missing), then until deliveries have been quiet for
 * `quietMs`, so late duplicates are counted too.
 */
export async function settle(load: Load, receiver: Receiver, opts: { timeoutMs: number; quietMs?: number }): Promise<FaultReport> {
  await load.done;
  await waitFor(() => account(load, deliveries(receiver)).lost.length === 0, { timeoutMs: opts.timeoutMs, intervalMs: 500, what: 'every acknowledged event delivered' }).catch(
    () => undefined,
  );
  let last = receiver.receipts.length;
  await waitFor(
    () => {
      const now = receiver.receipts.length;
      const quiet = now === last;
      last = now;
      return quiet;
    },
    { timeoutMs: 30_000, intervalMs: opts.quietMs ?? 2_000, what: 'deliveries to go quiet' },
  ).catch(() => undefined);
  return account(load, deliveries(receiver));
}

export type Receiver = Awaited<ReturnType<typeof startReceiver>>;
export type Component = 'ingest' | 'router' | 'sinks';

export const FAULT_WRITE_KEY = 'fault-write-key';

export interface Pipeline {
  env: Record<string, string>;
  dir: string;
  procs: Record<Component, OrreryProcess>;
  /** Ingest's current URL (it keeps its port across restarts). */
  ingestUrl(): string;
  /** kill -9 of one component, then a restart of it (on the same port). */
  crash(component: Component): Promise<void>;
  /** Reads a number from one component's /metrics (sum of the series matching the name). */
  metric(component: Component, name: string): Promise<number>;
  stop(): Promise<void>;
}

/**
 * Ingest, router and sinks as three real processes on the real Kafka, Postgres and Redis
 * (each run its own topic prefix, schema and groups), delivering to `receiverUrl` through
 * a webhook destination `hook`. `extraYaml` adds destinations and routes (YAML list items).
 */
export async function startPipeline(opts: {
  receiverUrl: string;
  extraDestinations?: string;
  extraRoutes?: string;
  env?: Record<string, string>;
}): Promise<Pipeline> {
  const dir = await mkdtemp(join(tmpdir(), 'orrery-fault-'));
  await writeFile(join(dir, 'orrery.yaml'), pipelineConfig(opts.receiverUrl, opts.extraDestinations, opts.extraRoutes));
  const env: Record<string, string> = {
    ...realServicesEnv(dir, 'flt'),
    KAFKA_TOPIC_PARTITIONS: '4',
    SINKS_BACKOFF_INITIAL_MS: '200',
    SINKS_BACKOFF_MAX_MS: '5000',
    ...opts.env,
  };
  const procs = {} as Record<Component, OrreryProcess>;
  // One after the other: the first start seeds the control plane from the YAML file.
  for (const c of ['ingest', 'router', 'sinks'] as const) procs[c] = await startOrrery(['start', c], env, { without: ['KUBECONFIG'] });
  return {
    env,
    dir,
    procs,
    ingestUrl: () => procs.ingest.url,
    async crash(c) {
      const port = procs[c].port;
      await procs[c].kill();
      procs[c] = await startOrrery(['start', c], env, { port, without: ['KUBECONFIG'] });
    },
    metric: (c, name) => readMetric(procs[c].url, name),
    async stop() {
      await Promise.all(Object.values(procs).map((p) => p.stop()));
    },
  };
}

/**
 * One case's setup: a receiver, a pipeline to it and a load of `count` events at `rate`,
 * returned once the load is acknowledged and delivered (so a fault hits a running flow).
 * Everything started is pushed to `closers`.
 */
export async function startFaultRun(opts: {
  rate: number;
  count: number;
  closers: Array<() => Promise<unknown>>;
  pipeline?: Omit<Parameters<typeof startPipeline>[0], 'receiverUrl'>;
}): Promise<{ receiver: Receiver; pipeline: Pipeline; load: Load }> {
  const receiver = await startReceiver();
  opts.closers.push(receiver.close);
  const pipeline = await startPipeline({ receiverUrl: receiver.url, ...opts.pipeline });
  opts.closers.push(pipeline.stop);
  const load = startLoad({ url: pipeline.ingestUrl, writeKey: FAULT_WRITE_KEY, rate: opts.rate, count: opts.count, users: faultEnv.users() });
  await waitFor(() => load.acked.size >= opts.rate * 5 && deliveries(receiver).some((d) => String(d.messageId).startsWith(`${load.tag}-`)), {
    timeoutMs: 60_000,
    what: 'load acknowledged and delivered',
  });
  return { receiver, pipeline, load };
}

export function pipelineConfig(receiverUrl: string, extraDestinations = '', extraRoutes = ''): string {
  return `sources: [{ id: web, writeKeys: [${FAULT_WRITE_KEY}] }]
destinations:
  - { id: hook, type: webhook, url: "${receiverUrl}", allowPrivateNetwork: true, batch: true }
${extraDestinations}
routes:
  - { source: web, destination: hook }
${extraRoutes}
`;
}

/** Sum of the samples of one metric in a Prometheus text page; 0 when absent. */
export async function readMetric(baseUrl: string, name: string): Promise<number> {
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)/.exec(line);
    if (m && m[1] === name) sum += Number(m[3]);
  }
  return sum;
}

const SERVICE_PORT = {
  kafka: { env: 'KAFKA_BROKERS', port: 'ORRERY_KAFKA_PORT', fallback: '9092' },
  postgres: { env: 'DATABASE_URL', port: 'ORRERY_PG_PORT', fallback: '5432' },
  redis: { env: 'REDIS_URL', port: 'ORRERY_REDIS_PORT', fallback: '6379' },
} as const;

/**
 * Stops or starts a service through test/services (the same ORRERY_SERVICES_DIR and
 * ORRERY_*_PORT env as the run). Refuses when the service the pipeline uses is not the
 * one those scripts manage: the case would fault nothing, or another set of services.
 */
export async function faultService(action: 'up' | 'down', service: keyof typeof SERVICE_PORT): Promise<void> {
  const { env, port, fallback } = SERVICE_PORT[service];
  const expected = process.env[port] ?? fallback;
  if (!new RegExp(`^(\\w+://)?([^@/]*@)?127\\.0\\.0\\.1:${expected}(/|$)`).test(serviceEnv(env))) {
    throw new Error(`${env}=${serviceEnv(env)} is not the ${service} test/services manages (127.0.0.1:${expected}; ${port}): refusing to fault it`);
  }
  await serviceCtl(action, service);
}

const CLI = fileURLToPath(new URL('../../bin/orrery.js', import.meta.url));

/** `orrery dlq list --destination <id>` as a user runs it: the pending dead letters. */
export async function listDeadLetters(env: Record<string, string>, destination: string): Promise<Array<{ messageId: string; httpStatus?: number }>> {
  const { stdout } = await promisify(execFile)(process.execPath, [CLI, 'dlq', 'list', '--destination', destination, '--limit', '1000000'], {
    env: { ...process.env, ...env },
    maxBuffer: 256 * 1024 * 1024,
  });
  return stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { messageId: string; httpStatus?: number });
}

/** Resolves once `ms` have passed (the length of a fault, not a wait for a condition). */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, Math.max(0, ms)));
}

export { startReceiver };

import { describe, expect, it, vi } from 'vitest';
import { createLogger } from '../core/logger.ts';
import {
  conditionsOf,
  createAlertMonitor,
  createWebhookNotifier,
  defaultRules,
  EMPTY_ALERT_STATE,
  evaluateAlerts,
  type AlertInput,
  type AlertRule,
  type AlertState,
  type DeployFact,
  type MetricSample,
} from './alerts.ts';

const silent = createLogger({ level: 'silent' });
const T0 = Date.parse('2030-01-01T00:00:00Z');
const s = (n: number) => T0 + n * 1000;

/** A sample with sink counters per destination and optional gauges. */
function sample(at: number, dest: Record<string, { delivered?: number; failed?: number; dead?: number }>, gauges: { lag?: number; spool?: number } = {}): MetricSample {
  const series: MetricSample['series'] = [];
  for (const [destination, v] of Object.entries(dest)) {
    if (v.delivered !== undefined) series.push({ name: 'orrery_sink_events_delivered_total', labels: { destination, service: 'orrery' }, value: v.delivered });
    if (v.failed !== undefined) {
      // Failures are split by the retriable label; the rule adds them up.
      series.push({ name: 'orrery_sink_delivery_failures_total', labels: { destination, retriable: 'true' }, value: Math.ceil(v.failed / 2) });
      series.push({ name: 'orrery_sink_delivery_failures_total', labels: { destination, retriable: 'false' }, value: Math.floor(v.failed / 2) });
    }
    if (v.dead !== undefined) series.push({ name: 'orrery_sink_events_dead_lettered_total', labels: { destination }, value: v.dead });
  }
  if (gauges.lag !== undefined) series.push({ name: 'orrery_router_consumer_lag', labels: {}, value: gauges.lag });
  if (gauges.spool !== undefined) series.push({ name: 'orrery_ingest_spool_depth', labels: {}, value: gauges.spool });
  return { at, series };
}

const failureRule: AlertRule = { id: 'failing', kind: 'destination_failure_rate', windowMs: 60_000, threshold: 0.5, minAttempts: 5, forMs: 30_000, severity: 'critical' };

/** Runs the evaluator over a timeline of inputs, as the monitor would, collecting what it sends. */
/** A deploy of `r/<policy>:1.0.<id>`; one whose rollout did not become healthy says so, and a reverted one names its revert. */
function deploy(id: number, policy: string, state: string): DeployFact {
  const unhealthy = ['failed', 'reverting', 'reverted'].includes(state);
  return { id, policy, state, repository: `r/${policy}`, tag: `1.0.${id}`, error: unhealthy ? 'rollout timed out' : null, revertSha: state.startsWith('revert') ? 'b'.repeat(40) : null, updatedAt: '' };
}

function run(rules: AlertRule[], inputs: AlertInput[]) {
  let state: AlertState = EMPTY_ALERT_STATE;
  const sent: Array<{ at: number; status: string; key: string; text: string }> = [];
  for (const input of inputs) {
    const step = evaluateAlerts(rules, state, input);
    state = step.state;
    for (const n of step.notifications) sent.push({ at: input.now, status: n.status, key: n.key, text: n.text });
  }
  return { state, sent };
}

describe('alert conditions', () => {
  it('failure rate: counts failed attempts against delivered events over the window, per destination', () => {
    const samples = [
      sample(s(0), { hook: { delivered: 100, failed: 0 }, amp: { delivered: 50, failed: 0 } }),
      sample(s(30), { hook: { delivered: 100, failed: 4 }, amp: { delivered: 60, failed: 1 } }),
      sample(s(60), { hook: { delivered: 102, failed: 10 }, amp: { delivered: 70, failed: 2 } }),
    ];
    const conditions = conditionsOf([failureRule], { now: s(60), samples, deploys: [] });
    expect(conditions).toHaveLength(1);
    expect(conditions[0]).toMatchObject({ key: 'failing:hook', labels: { destination: 'hook' } });
    expect(conditions[0]!.value).toBeCloseTo(10 / 12);
    expect(conditions[0]!.summary).toBe('destination hook is failing: 83% of 12 delivery attempts failed in the last 1m');
  });

  it('failure rate: needs minAttempts in the window, and only the window counts', () => {
    const few = [sample(s(0), { hook: { delivered: 0, failed: 0 } }), sample(s(10), { hook: { delivered: 0, failed: 3 } })];
    expect(conditionsOf([failureRule], { now: s(10), samples: few, deploys: [] })).toEqual([]);
    // 50 failures long ago, none in the last minute: the window starts at the sample at t=60.
    const old = [sample(s(0), { hook: { delivered: 0, failed: 0 } }), sample(s(10), { hook: { delivered: 0, failed: 50 } }), sample(s(60), { hook: { delivered: 10, failed: 50 } }), sample(s(120), { hook: { delivered: 40, failed: 50 } })];
    expect(conditionsOf([failureRule], { now: s(120), samples: old, deploys: [] })).toEqual([]);
  });

  it('a counter that went down (a restart) counts from zero, not as a negative increase', () => {
    const samples = [sample(s(0), { hook: { delivered: 500, failed: 100 } }), sample(s(30), { hook: { delivered: 0, failed: 8 } })];
    const [c] = conditionsOf([failureRule], { now: s(30), samples, deploys: [] });
    expect(c?.value).toBe(1);
  });

  it('dead-letter growth: any new dead letter in the window, per destination', () => {
    const rule: AlertRule = { id: 'dl', kind: 'dead_letter_growth', windowMs: 60_000, threshold: 0, forMs: 0 };
    const samples = [sample(s(0), { hook: { dead: 2 }, other: { dead: 5 } }), sample(s(20), { hook: { dead: 5 }, other: { dead: 5 } })];
    expect(conditionsOf([rule], { now: s(20), samples, deploys: [] })).toEqual([
      expect.objectContaining({ key: 'dl:hook', value: 3, summary: 'destination hook dead-lettered 3 events in the last 1m' }),
    ]);
  });

  it('dead-letter growth: the router\'s dead letters over the window, all reasons in one alert', () => {
    const rule: AlertRule = { id: 'dl', kind: 'dead_letter_growth', windowMs: 60_000, threshold: 0, forMs: 0 };
    const router = (at: number, byReason: Record<string, number>): MetricSample => ({
      at,
      series: Object.entries(byReason).map(([reason, value]) => ({ name: 'orrery_router_events_dead_lettered_total', labels: { reason }, value })),
    });
    // invalid_envelope stays at 4; unknown_source grows by 2 and unparseable appears with 1.
    const samples = [router(s(0), { invalid_envelope: 4, unknown_source: 1 }), router(s(20), { invalid_envelope: 4, unknown_source: 3, unparseable: 1 })];
    expect(conditionsOf([rule], { now: s(20), samples, deploys: [] })).toEqual([
      expect.objectContaining({ key: 'dl:router', labels: { stage: 'router' }, value: 3, summary: 'the router dead-lettered 3 events in the last 1m (unknown_source: 2, unparseable: 1)' }),
    ]);
    // No growth in the window: nothing holds.
    expect(conditionsOf([rule], { now: s(20), samples: [samples[1]!, { ...samples[1]!, at: s(20) }], deploys: [] })).toEqual([]);
    const { sent } = run([rule], [
      { now: s(0), samples: [samples[0]!], deploys: [] },
      { now: s(20), samples, deploys: [] },
    ]);
    expect(sent).toEqual([expect.objectContaining({ status: 'firing', key: 'dl:router', text: '[FIRING] warning: the router dead-lettered 3 events in the last 1m (unknown_source: 2, unparseable: 1)' })]);
  });

  it('consumer lag and spool depth read the newest sample; absent metrics mean nothing', () => {
    const rules: AlertRule[] = [
      { id: 'lag', kind: 'consumer_lag', threshold: 1000, forMs: 0 },
      { id: 'spool', kind: 'ingest_spool', forMs: 0 },
    ];
    expect(conditionsOf(rules, { now: s(0), samples: [sample(s(0), {})], deploys: [] })).toEqual([]);
    const keys = conditionsOf(rules, { now: s(5), samples: [sample(s(0), {}, { lag: 5, spool: 0 }), sample(s(5), {}, { lag: 1001, spool: 3 })], deploys: [] }).map((c) => c.key);
    expect(keys).toEqual(['lag', 'spool']);
  });

  it('a failed rollout: the newest deploy of a policy decides', () => {
    const rule: AlertRule = { id: 'rollout', kind: 'rollout_failed', forMs: 0 };
    const conditions = conditionsOf([rule], { now: s(0), samples: [], deploys: [deploy(3, 'web', 'failed'), deploy(1, 'api', 'failed'), deploy(2, 'api', 'rolled-out'), deploy(4, 'db', 'committed')] });
    expect(conditions).toEqual([expect.objectContaining({ key: 'rollout:web', labels: { policy: 'web', deploy: '3', state: 'failed' }, summary: 'deploy #3 of r/web:1.0.3 (policy web) failed: rollout timed out' })]);
  });

  it('a reverted rollout is still a failed one, and says so; a revert that did not roll out either says why', () => {
    const rule: AlertRule = { id: 'rollout', kind: 'rollout_failed', forMs: 0 };
    const summaries = conditionsOf([rule], {
      now: s(0),
      samples: [],
      deploys: [deploy(1, 'web', 'reverting'), deploy(2, 'api', 'reverted'), { ...deploy(3, 'db', 'failed'), error: `the revert ${'c'.repeat(12)} did not roll out either: db not ready`, revertSha: 'c'.repeat(40) }],
    }).map((c) => [c.labels.state, c.summary]);
    expect(summaries).toEqual([
      ['reverting', `deploy #1 of r/web:1.0.1 (policy web) failed: rollout timed out; being reverted (revert ${'b'.repeat(12)} committed, rolling out)`],
      ['reverted', `deploy #2 of r/api:1.0.2 (policy api) failed: rollout timed out; reverted (revert ${'b'.repeat(12)} rolled out healthy)`],
      ['failed', `deploy #3 of r/db:1.0.3 (policy db) failed: the revert ${'c'.repeat(12)} did not roll out either: db not ready`],
    ]);
  });

  it('a failed rollout holds until a later deploy of the policy rolls out: one on its way, or skipped, does not resolve it', () => {
    const rule: AlertRule = { id: 'rollout', kind: 'rollout_failed', forMs: 0 };
    const keys = (deploys: DeployFact[]) => conditionsOf([rule], { now: s(0), samples: [], deploys }).map((c) => `${c.key}#${c.labels.deploy}`);
    const reverted = deploy(1, 'web', 'reverted');
    for (const state of ['received', 'committed', 'pr-opened', 'synced', 'skipped']) expect(keys([reverted, deploy(2, 'web', state)]), state).toEqual(['rollout:web#1']);
    expect(keys([reverted, deploy(2, 'web', 'failed')])).toEqual(['rollout:web#2']);
    expect(keys([reverted, deploy(2, 'web', 'rolled-out'), deploy(3, 'web', 'received')])).toEqual([]);
    // Another policy's good deploy is no answer to this one's failure.
    expect(keys([reverted, deploy(2, 'api', 'rolled-out')])).toEqual(['rollout:web#1']);
  });
});

describe('alert state: a reverted rollout', () => {
  it('fires once while the revert rolls out, keeps firing once reverted, and resolves when a later deploy rolls out', () => {
    const rules = defaultRules({ windowMs: 300_000, forMs: 60_000, failureRate: 0.5, minAttempts: 5, consumerLag: 10_000 });
    const at = (t: number, deploys: DeployFact[]): AlertInput => ({ now: s(t), samples: [sample(s(t), {}, { lag: 0, spool: 0 })], deploys });
    const { state, sent } = run(rules, [
      at(0, [deploy(1, 'web', 'rolled-out'), deploy(2, 'web', 'synced')]),
      at(15, [deploy(1, 'web', 'rolled-out'), deploy(2, 'web', 'reverting')]),
      at(30, [deploy(1, 'web', 'rolled-out'), deploy(2, 'web', 'reverted')]),
      at(45, [deploy(1, 'web', 'rolled-out'), deploy(2, 'web', 'reverted'), deploy(3, 'web', 'committed')]),
    ]);
    expect(sent).toEqual([
      { at: s(15), status: 'firing', key: 'rollout-failed:web', text: `[FIRING] critical: deploy #2 of r/web:1.0.2 (policy web) failed: rollout timed out; being reverted (revert ${'b'.repeat(12)} committed, rolling out)` },
    ]);
    // The alert list shows what became of it.
    expect(state.alerts['rollout-failed:web']).toMatchObject({ state: 'firing', labels: { state: 'reverted' }, summary: expect.stringMatching(/; reverted \(revert b{12} rolled out healthy\)$/) });

    const after = run(rules, [at(0, [deploy(2, 'web', 'reverted')]), at(15, [deploy(2, 'web', 'reverted'), deploy(3, 'web', 'rolled-out')])]).sent;
    expect(after.map((n) => [n.status, n.text])).toEqual([
      ['firing', expect.stringContaining('deploy #2')],
      ['resolved', expect.stringMatching(/^\[RESOLVED\] rollout-failed: was "deploy #2 .*; reverted \(revert b{12} rolled out healthy\)"$/)],
    ]);
  });
});

describe('alert state: for, de-duplication, resolve', () => {
  // A destination failing from t=10s; the receiver recovers at t=100s.
  const timeline = (until: number, step = 10) => {
    const inputs: AlertInput[] = [];
    const samples: MetricSample[] = [];
    let delivered = 0;
    let failed = 0;
    for (let t = 0; t <= until; t += step) {
      if (t >= 10 && t < 100) failed += 5;
      else delivered += 5;
      samples.push(sample(s(t), { hook: { delivered, failed } }));
      inputs.push({ now: s(t), samples: [...samples], deploys: [] });
    }
    return inputs;
  };

  it('fires once after the condition held for `for`, stays quiet while firing, resolves once', () => {
    const { sent, state } = run([failureRule], timeline(240));
    expect(sent.map((n) => [n.status, (n.at - T0) / 1000])).toEqual([
      // Pending from t=10 (5 failed attempts since t=0), firing 30 s later.
      ['firing', 40],
      // Recovered at 100; the 60 s window still holds enough failures until t=120 (15 of 30:
      // at the threshold), and at t=130 it is 10 of 30.
      ['resolved', 130],
    ]);
    expect(sent[0]!.text).toMatch(/^\[FIRING\] critical: destination hook is failing/);
    expect(sent[1]!.text).toMatch(/^\[RESOLVED\] failing: was "destination hook is failing/);
    expect(state.alerts).toEqual({});
  });

  it('a condition shorter than `for` (flapping) never notifies', () => {
    const rule: AlertRule = { id: 'spool', kind: 'ingest_spool', forMs: 30_000 };
    const depths = [0, 5, 0, 7, 9, 0, 3, 0, 0];
    const inputs = depths.map((spool, i) => ({ now: s(i * 10), samples: [sample(s(i * 10), {}, { spool })], deploys: [] }));
    expect(run([rule], inputs).sent).toEqual([]);
  });

  it('keepFiringFor holds a firing alert through a short dip, then resolves', () => {
    const rule: AlertRule = { id: 'lag', kind: 'consumer_lag', threshold: 10, forMs: 0, keepFiringForMs: 25_000 };
    const lags = [50, 50, 0, 50, 0, 0, 0, 0];
    const inputs = lags.map((lag, i) => ({ now: s(i * 10), samples: [sample(s(i * 10), {}, { lag })], deploys: [] }));
    const { sent } = run([rule], inputs);
    expect(sent.map((n) => [n.status, (n.at - T0) / 1000])).toEqual([
      ['firing', 0],
      // Last true at t=30; 25 s later is t=55, so the evaluation at t=60 resolves.
      ['resolved', 60],
    ]);
  });

  it('a pending alert that stops holding goes away without a word', () => {
    const inputs = [
      { now: s(0), samples: [sample(s(0), {}, { spool: 3 })], deploys: [] },
      { now: s(10), samples: [sample(s(10), {}, { spool: 0 })], deploys: [] },
    ];
    const rule: AlertRule = { id: 'spool', kind: 'ingest_spool', forMs: 60_000 };
    const first = evaluateAlerts([rule], EMPTY_ALERT_STATE, inputs[0]!);
    expect(first.state.alerts.spool).toMatchObject({ state: 'pending', activeSince: s(0) });
    const second = evaluateAlerts([rule], first.state, inputs[1]!);
    expect(second).toEqual({ state: { alerts: {} }, notifications: [] });
  });

  it('each destination is its own alert', () => {
    const rule: AlertRule = { id: 'dl', kind: 'dead_letter_growth', windowMs: 60_000, threshold: 0, forMs: 0 };
    const a = sample(s(0), { a: { dead: 0 }, b: { dead: 0 } });
    const b = sample(s(10), { a: { dead: 1 }, b: { dead: 0 } });
    const c = sample(s(20), { a: { dead: 1 }, b: { dead: 2 } });
    const { sent } = run([rule], [
      { now: s(0), samples: [a], deploys: [] },
      { now: s(10), samples: [a, b], deploys: [] },
      { now: s(20), samples: [a, b, c], deploys: [] },
    ]);
    expect(sent.map((n) => `${n.status} ${n.key}`)).toEqual(['firing dl:a', 'firing dl:b']);
  });

  it('the default rules evaluate over an empty process without noise', () => {
    const rules = defaultRules({ windowMs: 300_000, forMs: 60_000, failureRate: 0.5, minAttempts: 5, consumerLag: 10_000 });
    expect(rules.map((r) => r.kind).sort()).toEqual(['consumer_lag', 'dead_letter_growth', 'destination_failure_rate', 'ingest_spool', 'rollout_failed']);
    expect(run(rules, [{ now: s(0), samples: [sample(s(0), {}, { lag: 0, spool: 0 })], deploys: [] }]).sent).toEqual([]);
  });
});

describe('webhook notifier', () => {
  const n = {
    status: 'firing' as const,
    key: 'failing:hook',
    ruleId: 'failing',
    kind: 'destination_failure_rate' as const,
    severity: 'critical' as const,
    labels: { destination: 'hook' },
    value: 1,
    summary: 'destination hook is failing',
    startsAt: new Date(T0).toISOString(),
    text: '[FIRING] critical: destination hook is failing',
  };

  it('posts JSON with a Slack-compatible text, retrying 5xx', async () => {
    const calls: Array<{ url: string; body: unknown }> = [];
    const fetchImpl = vi.fn(async (url: string | URL | Request, init?: RequestInit) => {
      calls.push({ url: String(url), body: JSON.parse(String(init?.body)) });
      return new Response('', { status: calls.length === 1 ? 503 : 200 });
    });
    const notify = createWebhookNotifier({ url: 'https://hooks.example.com/T/B/secret', logger: silent, fetch: fetchImpl as typeof fetch, sleep: async () => {} });
    await notify(n);
    expect(calls).toHaveLength(2);
    expect(calls[1]).toEqual({ url: 'https://hooks.example.com/T/B/secret', body: { text: n.text, status: 'firing', alert: n } });
  });

  it('gives up after its attempts without throwing, and does not retry a 4xx', async () => {
    const down = vi.fn(async () => {
      throw new Error('ECONNREFUSED');
    });
    await createWebhookNotifier({ url: 'http://127.0.0.1:9/x', logger: silent, fetch: down as typeof fetch, attempts: 3, sleep: async () => {} })(n);
    expect(down).toHaveBeenCalledTimes(3);
    const refused = vi.fn(async () => new Response('no', { status: 404 }));
    await createWebhookNotifier({ url: 'http://127.0.0.1:9/x', logger: silent, fetch: refused as typeof fetch, sleep: async () => {} })(n);
    expect(refused).toHaveBeenCalledTimes(1);
  });
});

describe('alert monitor', () => {
  it('evaluates on tick, notifies in order and keeps the recent notifications', async () => {
    let now = s(0);
    let spool = 4;
    const sent: string[] = [];
    const monitor = createAlertMonitor({
      rules: [{ id: 'spool', kind: 'ingest_spool', forMs: 0 }],
      intervalMs: 60_000,
      logger: silent,
      input: async () => ({ now, samples: [sample(now, {}, { spool })], deploys: [] }),
      notify: async (x) => void sent.push(`${x.status} ${x.key}`),
    });
    await monitor.tick();
    expect(monitor.active()).toEqual([expect.objectContaining({ key: 'spool', state: 'firing' })]);
    await monitor.tick();
    now = s(30);
    spool = 0;
    await monitor.tick();
    expect(sent).toEqual(['firing spool', 'resolved spool']);
    expect(monitor.recent().map((r) => r.status)).toEqual(['resolved', 'firing']);
    expect(monitor.active()).toEqual([]);
    await monitor.stop();
  });
});

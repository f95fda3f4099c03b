import type { Logger } from '../core/logger.ts';

/**
 * Alerts over Orrery's own metrics and deploy log. Evaluation is pure: metric samples,
 * deploys and the time go in; the new alert state and the notifications to send come out,
 * so rules are tested with fake snapshots and a fake clock. Around it, a small monitor
 * samples on a timer and hands notifications to a webhook notifier.
 *
 * Semantics follow Prometheus's alerting rules, which operators already know: a condition
 * that holds becomes *pending*, and *firing* once it has held for `forMs` (so one bad
 * sample, or a flapping condition, never pages); a firing alert notifies once, stays quiet
 * while it keeps holding, and notifies again once when it resolves.
 */

/** One value of one metric, with its labels (prom-client's JSON form, flattened). */
export interface SeriesPoint {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Every counter and gauge at one moment. */
export interface MetricSample {
  /** ms since epoch. */
  at: number;
  series: SeriesPoint[];
}

/** What the rollout rule needs of a deploy (gitops' Deploy has more). */
export interface DeployFact {
  id: number;
  policy: string;
  repository: string;
  tag: string;
  state: string;
  error: string | null;
  /** The commit that reverted the deploy's commit (states reverting, reverted). */
  revertSha?: string | null;
  updatedAt: string;
}

export interface AlertInput {
  now: number;
  /** Oldest first; they should reach back at least one window. */
  samples: readonly MetricSample[];
  /** Recent deploys, any order. */
  deploys: readonly DeployFact[];
}

interface RuleBase {
  id: string;
  /** How long the condition must hold before the alert fires. */
  forMs: number;
  /** Keeps a firing alert firing this long after its condition stopped holding (flapping on the way down). */
  keepFiringForMs?: number;
  severity?: 'critical' | 'warning';
}

export type AlertRule =
  /** Failed attempts / (failed attempts + delivered events) of a destination over the window. */
  | (RuleBase & { kind: 'destination_failure_rate'; windowMs: number; threshold: number; minAttempts: number })
  /**
   * Events a destination dead-lettered over the window, above `threshold` (0: any), one
   * alert per destination; and events the router dead-lettered (could not route), one alert.
   */
  | (RuleBase & { kind: 'dead_letter_growth'; windowMs: number; threshold: number })
  /** Raw-topic messages the router has not routed, above `threshold`. */
  | (RuleBase & { kind: 'consumer_lag'; threshold: number })
  /** The newest settled deploy of an image policy did not roll out (failed, or reverted). */
  | (RuleBase & { kind: 'rollout_failed' })
  /** Ingest is writing to its disk spool (Kafka is away or slow). */
  | (RuleBase & { kind: 'ingest_spool' });

export type AlertKind = AlertRule['kind'];

/** A rule's condition holding for one subject (a destination, a policy, …) right now. */
export interface Condition {
  /** Identity of the alert: rule and subject. */
  key: string;
  ruleId: string;
  kind: AlertKind;
  labels: Record<string, string>;
  value: number;
  summary: string;
}

export interface ActiveAlert extends Condition {
  state: 'pending' | 'firing';
  severity: 'critical' | 'warning';
  /** When the condition started to hold. */
  activeSince: number;
  firedAt?: number;
  lastTrueAt: number;
}

/** Alerts pending or firing, by key. Treated as immutable: each step returns a new one. */
export interface AlertState {
  readonly alerts: Readonly<Record<string, ActiveAlert>>;
}

export const EMPTY_ALERT_STATE: AlertState = { alerts: {} };

export interface AlertNotification {
  status: 'firing' | 'resolved';
  key: string;
  ruleId: string;
  kind: AlertKind;
  severity: 'critical' | 'warning';
  labels: Record<string, string>;
  value: number;
  summary: string;
  startsAt: string;
  endsAt?: string;
  /** One line for humans and chat tools. */
  text: string;
}

/**
 * The default rule set, from Pilot's settings.
 *
 * @example const rules = defaultRules({ windowMs: 300_000, forMs: 60_000, failureRate: 0.5, minAttempts: 5, consumerLag: 10_000 });
 */
export function defaultRules(s: { windowMs: number; forMs: number; failureRate: number; minAttempts: number; consumerLag: number }): AlertRule[] {
  return [
    { id: 'destination-failing', kind: 'destination_failure_rate', windowMs: s.windowMs, threshold: s.failureRate, minAttempts: s.minAttempts, forMs: s.forMs, severity: 'critical' },
    // A dead letter is already the end of a long retry story: no need to wait before saying so.
    { id: 'dead-letters-growing', kind: 'dead_letter_growth', windowMs: s.windowMs, threshold: 0, forMs: 0, severity: 'warning' },
    { id: 'router-lagging', kind: 'consumer_lag', threshold: s.consumerLag, forMs: s.forMs, severity: 'warning' },
    { id: 'rollout-failed', kind: 'rollout_failed', forMs: 0, severity: 'critical' },
    { id: 'ingest-spooling', kind: 'ingest_spool', forMs: s.forMs, severity: 'warning' },
  ];
}

/** Sum of a metric's values, per value of one label (series without it are skipped). */
function sumBy(sample: MetricSample | undefined, name: string, label: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const p of sample?.series ?? []) {
    if (p.name !== name) continue;
    const key = p.labels[label];
    if (key === undefined) continue;
    out.set(key, (out.get(key) ?? 0) + p.value);
  }
  return out;
}

function total(sample: MetricSample | undefined, name: string): number | undefined {
  let sum: number | undefined;
  for (const p of sample?.series ?? []) if (p.name === name) sum = (sum ?? 0) + p.value;
  return sum;
}

/**
 * The sample a window starts from: the newest one at or before `now - windowMs`, else the
 * oldest one (a process younger than the window compares with its first sample). Undefined
 * when there is only the current sample to compare with.
 */
function windowStart(samples: readonly MetricSample[], now: number, windowMs: number): MetricSample | undefined {
  if (samples.length < 2) return undefined;
  const cutoff = now - windowMs;
  let start = samples[0];
  for (const s of samples.slice(0, -1)) if (s.at <= cutoff) start = s;
  return start;
}

/** A counter's increase; a counter that went down was reset (a restart), so all of it is new. */
function increase(current: number, start: number | undefined): number {
  const from = start ?? 0;
  return current >= from ? current - from : current;
}

function increases(samples: readonly MetricSample[], now: number, windowMs: number, name: string, label: string): Map<string, number> {
  const start = windowStart(samples, now, windowMs);
  if (!start) return new Map();
  const before = sumBy(start, name, label);
  const after = sumBy(samples.at(-1), name, label);
  return new Map([...after].map(([k, v]) => [k, increase(v, before.get(k))]));
}

/**
 * A duration for messages.
 *
 * @example formatDuration(300_000); // '5m'
 */
export function formatDuration(ms: number): string {
  if (ms % 3_600_000 === 0 && ms > 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0 && ms > 0) return `${ms / 60_000}m`;
  if (ms % 1_000 === 0) return `${ms / 1_000}s`;
  return `${ms}ms`;
}

/** Deploy states that say how a rollout ended; the others are on the way, or skipped. */
const ROLLOUT_VERDICTS = new Set(['rolled-out', 'failed', 'reverting', 'reverted']);

function revertNote(d: DeployFact): string {
  const sha = d.revertSha ? ` ${d.revertSha.slice(0, 12)}` : '';
  if (d.state === 'reverting') return `; being reverted (revert${sha} committed, rolling out)`;
  if (d.state === 'reverted') return `; reverted (revert${sha} rolled out healthy)`;
  return '';
}

/**
 * Which conditions hold now. Pure.
 *
 * @example
 *   conditionsOf(rules, { now, samples, deploys: [] }).map((c) => c.key); // ['destination-failing:hook']
 */
export function conditionsOf(rules: readonly AlertRule[], input: AlertInput): Condition[] {
  const out: Condition[] = [];
  const latest = input.samples.at(-1);
  for (const rule of rules) {
    const base = { ruleId: rule.id, kind: rule.kind };
    switch (rule.kind) {
      case 'destination_failure_rate': {
        const failed = increases(input.samples, input.now, rule.windowMs, 'orrery_sink_delivery_failures_total', 'destination');
        const delivered = increases(input.samples, input.now, rule.windowMs, 'orrery_sink_events_delivered_total', 'destination');
        for (const destination of new Set([...failed.keys(), ...delivered.keys()])) {
          const f = failed.get(destination) ?? 0;
          const attempts = f + (delivered.get(destination) ?? 0);
          if (attempts < rule.minAttempts) continue;
          const rate = f / attempts;
          if (rate < rule.threshold || f === 0) continue;
          out.push({
            ...base,
            key: `${rule.id}:${destination}`,
            labels: { destination },
            value: rate,
            summary: `destination ${destination} is failing: ${Math.round(rate * 100)}% of ${attempts} delivery attempts failed in the last ${formatDuration(rule.windowMs)}`,
          });
        }
        break;
      }
      case 'dead_letter_growth': {
        const dead = increases(input.samples, input.now, rule.windowMs, 'orrery_sink_events_dead_lettered_total', 'destination');
        for (const [destination, n] of dead) {
          if (n <= rule.threshold) continue;
          out.push({
            ...base,
            key: `${rule.id}:${destination}`,
            labels: { destination },
            value: n,
            summary: `destination ${destination} dead-lettered ${n} event${n === 1 ? '' : 's'} in the last ${formatDuration(rule.windowMs)}`,
          });
        }
        // The router counts what it sends to the DLQ topic by reason; its letters are one
        // alert, whose summary says which reasons grew.
        const byReason = [...increases(input.samples, input.now, rule.windowMs, 'orrery_router_events_dead_lettered_total', 'reason')].filter(([, v]) => v > 0);
        const routerDead = byReason.reduce((a, [, v]) => a + v, 0);
        if (routerDead > rule.threshold) {
          const reasons = byReason.sort(([a], [b]) => a.localeCompare(b)).map(([r, v]) => `${r}: ${v}`).join(', ');
          out.push({
            ...base,
            key: `${rule.id}:router`,
            labels: { stage: 'router' },
            value: routerDead,
            summary: `the router dead-lettered ${routerDead} event${routerDead === 1 ? '' : 's'} in the last ${formatDuration(rule.windowMs)} (${reasons})`,
          });
        }
        break;
      }
      case 'consumer_lag': {
        const lag = total(latest, 'orrery_router_consumer_lag');
        if (lag !== undefined && lag > rule.threshold) {
          out.push({ ...base, key: rule.id, labels: {}, value: lag, summary: `the router is ${lag} messages behind on the raw topic (threshold ${rule.threshold})` });
        }
        break;
      }
      case 'ingest_spool': {
        const depth = total(latest, 'orrery_ingest_spool_depth');
        if (depth !== undefined && depth > 0) {
          out.push({ ...base, key: rule.id, labels: {}, value: depth, summary: `ingest is spooling to disk: ${depth} events wait for Kafka` });
        }
        break;
      }
      case 'rollout_failed': {
        // The newest settled deploy of each policy decides: only a later deploy that rolls
        // out resolves the alert. One still on its way (or skipped) has not undone the failure,
        // and a reverted deploy is still a rollout that failed, even though the workloads are
        // healthy again on the previous image.
        const newest = new Map<string, DeployFact>();
        for (const d of input.deploys) {
          if (ROLLOUT_VERDICTS.has(d.state) && (newest.get(d.policy)?.id ?? -1) < d.id) newest.set(d.policy, d);
        }
        for (const [policy, d] of newest) {
          if (d.state === 'rolled-out') continue;
          out.push({
            ...base,
            key: `${rule.id}:${policy}`,
            labels: { policy, deploy: String(d.id), state: d.state },
            value: d.id,
            summary: `deploy #${d.id} of ${d.repository}:${d.tag} (policy ${policy}) failed${d.error ? `: ${d.error}` : ''}${revertNote(d)}`,
          });
        }
        break;
      }
    }
  }
  return out;
}

function notification(a: ActiveAlert, status: 'firing' | 'resolved', now: number): AlertNotification {
  const n: AlertNotification = {
    status,
    key: a.key,
    ruleId: a.ruleId,
    kind: a.kind,
    severity: a.severity,
    labels: a.labels,
    value: a.value,
    summary: a.summary,
    startsAt: new Date(a.firedAt ?? a.activeSince).toISOString(),
    text: `[${status.toUpperCase()}] ${a.severity}: ${a.summary}`,
  };
  if (status === 'resolved') {
    n.endsAt = new Date(now).toISOString();
    n.text = `[RESOLVED] ${a.ruleId}: was "${a.summary}"`;
  }
  return n;
}

/**
 * Moves every alert one step, given the conditions that hold at `now`. Pure: returns the
 * new state and the notifications to send (at most one per alert per transition).
 *
 * @example
 *   let state = EMPTY_ALERT_STATE;
 *   const step = stepAlerts(rules, state, conditionsOf(rules, input), input.now);
 *   state = step.state; // step.notifications: what to send
 */
export function stepAlerts(
  rules: readonly AlertRule[],
  previous: AlertState,
  conditions: readonly Condition[],
  now: number,
): { state: AlertState; notifications: AlertNotification[] } {
  const byId = new Map(rules.map((r) => [r.id, r]));
  const alerts: Record<string, ActiveAlert> = {};
  const notifications: AlertNotification[] = [];
  const holding = new Map(conditions.map((c) => [c.key, c]));

  for (const c of holding.values()) {
    const rule = byId.get(c.ruleId);
    if (!rule) continue;
    const before = previous.alerts[c.key];
    const alert: ActiveAlert = before
      ? { ...before, labels: c.labels, value: c.value, summary: c.summary, lastTrueAt: now }
      : { ...c, state: 'pending', severity: rule.severity ?? 'warning', activeSince: now, lastTrueAt: now };
    if (alert.state === 'pending' && now - alert.activeSince >= rule.forMs) {
      alert.state = 'firing';
      alert.firedAt = now;
      notifications.push(notification(alert, 'firing', now));
    }
    alerts[c.key] = alert;
  }

  for (const [key, before] of Object.entries(previous.alerts)) {
    if (holding.has(key)) continue;
    // A pending alert whose condition stopped holding simply goes away: it never notified.
    if (before.state !== 'firing') continue;
    const keep = byId.get(before.ruleId)?.keepFiringForMs ?? 0;
    if (byId.has(before.ruleId) && now - before.lastTrueAt < keep) {
      alerts[key] = before;
      continue;
    }
    notifications.push(notification(before, 'resolved', now));
  }
  return { state: { alerts }, notifications };
}

/**
 * conditionsOf then stepAlerts.
 *
 * @example const { state, notifications } = evaluateAlerts(rules, previous, { now: Date.now(), samples, deploys });
 */
export function evaluateAlerts(
  rules: readonly AlertRule[],
  previous: AlertState,
  input: AlertInput,
): { state: AlertState; notifications: AlertNotification[] } {
  return stepAlerts(rules, previous, conditionsOf(rules, input), input.now);
}

export type Notify = (n: AlertNotification) => Promise<void>;

/** Keeps secrets in webhook paths (Slack's are) out of logs. */
function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return '[unparseable]';
  }
}

/**
 * Posts each notification as JSON to `url`: `{ text, status, alert }`. `text` is what
 * Slack's incoming webhooks (and Mattermost, Rocket.Chat, …) display; other receivers read
 * `alert`. A failed post is retried a few times with backoff, then logged and dropped: the
 * alert state moves on either way, so a dead receiver cannot cause a notification storm.
 *
 * @example const notify = createWebhookNotifier({ url: 'https://hooks.slack.com/services/…', logger });
 */
export function createWebhookNotifier(opts: {
  url: string;
  logger: Logger;
  fetch?: typeof fetch;
  attempts?: number;
  timeoutMs?: number;
  sleep?: (ms: number) => Promise<void>;
}): Notify {
  const doFetch = opts.fetch ?? globalThis.fetch;
  const attempts = opts.attempts ?? 3;
  const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const log = opts.logger.child({ unit: 'alerts', receiver: hostOf(opts.url) });
  return async (n) => {
    const body = JSON.stringify({ text: n.text, status: n.status, alert: n });
    for (let attempt = 1; attempt <= attempts; attempt++) {
      try {
        const res = await doFetch(opts.url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'user-agent': 'orrery-pilot' },
          body,
          signal: AbortSignal.timeout(opts.timeoutMs ?? 5_000),
        });
        await res.body?.cancel();
        if (res.ok) return;
        if (res.status < 500 && res.status !== 429 && res.status !== 408) {
          log.error({ status: res.status, alert: n.key }, 'the alert receiver refused the notification');
          return;
        }
        log.warn({ status: res.status, attempt, alert: n.key }, 'alert notification failed; retrying');
      } catch (err) {
        log.warn({ err, attempt, alert: n.key }, 'alert notification failed; retrying');
      }
      if (attempt < attempts) await sleep(500 * 2 ** (attempt - 1));
    }
    log.error({ alert: n.key, status: n.status }, 'alert notification dropped after retries');
  };
}

export interface AlertMonitor {
  /** One evaluation now (the timer calls it too). */
  tick(): Promise<void>;
  /** Pending and firing alerts. */
  active(): ActiveAlert[];
  /** The latest notifications, newest first. */
  recent(): AlertNotification[];
  rules(): readonly AlertRule[];
  start(): void;
  stop(): Promise<void>;
}

/**
 * Evaluates `rules` every `intervalMs` over what `input` returns and sends what changed.
 *
 * @example
 *   const monitor = createAlertMonitor({ rules, intervalMs: 15_000, input: () => sampler.alertInput(), notify, logger });
 *   monitor.start();
 */
export function createAlertMonitor(opts: {
  rules: readonly AlertRule[];
  intervalMs: number;
  input: () => Promise<AlertInput>;
  notify?: Notify | undefined;
  logger: Logger;
}): AlertMonitor {
  const log = opts.logger.child({ unit: 'alerts' });
  let state = EMPTY_ALERT_STATE;
  const recent: AlertNotification[] = [];
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;

  async function evaluate(): Promise<void> {
    const input = await opts.input();
    const step = evaluateAlerts(opts.rules, state, input);
    state = step.state;
    for (const n of step.notifications) {
      recent.unshift(n);
      if (recent.length > 100) recent.pop();
      log[n.status === 'firing' ? 'warn' : 'info']({ alert: n.key, status: n.status }, n.text);
      // In order, one at a time: a resolve must never overtake its own firing.
      await opts.notify?.(n);
    }
  }

  const tick = (): Promise<void> => {
    // Ticks never overlap: a slow receiver delays the next evaluation instead of doubling it.
    running ??= evaluate()
      .catch((err: unknown) => log.error({ err }, 'alert evaluation failed'))
      .finally(() => (running = undefined));
    return running;
  };

  return {
    tick,
    active: () => Object.values(state.alerts),
    recent: () => [...recent],
    rules: () => opts.rules,
    start() {
      timer ??= setInterval(() => void tick(), opts.intervalMs);
      timer.unref();
    },
    async stop() {
      clearInterval(timer);
      timer = undefined;
      await running;
    },
  };
}

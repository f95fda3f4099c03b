import { readFileSync } from 'node:fs';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { z } from 'zod';
import { DEFAULT_MAX_BATCH_BYTES } from './bus/record-size.ts';
import { GitopsSection } from './gitops-config.ts';
import { ControlPlaneConfig } from './control-plane.ts';
import { ConfigError } from './errors.ts';

export type { SourceConfig } from './control-plane.ts';

/**
 * Orrery's configuration: defaults, then an optional YAML file (`--config` or
 * `ORRERY_CONFIG`), then environment variables, parsed once with zod at the edge. The
 * result is frozen; no other module reads `process.env`.
 */

const hostPort = z
  .string()
  .regex(/^[^\s:]+:\d{1,5}$/, 'expected host:port, e.g. 127.0.0.1:9092');

const LogLevel = z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);

export const ConfigSchema = z.strictObject({
  log: z.strictObject({ level: LogLevel.default('info') }).prefault({}),
  http: z
    .strictObject({
      host: z.string().min(1).default('0.0.0.0'),
      port: z.coerce.number().int().min(0).max(65535).default(8080),
      /**
       * A request must arrive whole, headers and body, within this long, or it is answered
       * 408 and its connection closed: a client that trickles its body (slowloris) cannot
       * hold a connection open for long. 30 s sends a 500 KB batch at 17 KB/s.
       */
      requestTimeoutMs: z.coerce.number().int().min(100).max(600_000).default(30_000),
      /** The same for the request line and headers alone. */
      headersTimeoutMs: z.coerce.number().int().min(100).max(600_000).default(10_000),
    })
    .prefault({}),
  kafka: z
    .strictObject({
      /** Absent: no Kafka is configured (later: the embedded bus). */
      brokers: z.array(hostPort).min(1).optional(),
      clientId: z.string().min(1).default('orrery'),
      /**
       * Which Kafka client the bus uses: @platformatic/kafka (core/bus/platformatic.ts) or
       * kafkajs (core/bus/kafka.ts). Both keep the same contract and put a key on the same
       * partition; their consumer groups cannot be mixed (switch every replica at once).
       * platformatic by the bench (#18): ingest and router 1.3–1.4× kafkajs's throughput,
       * a quarter less CPU per event; kafkajs has had no release since 2023.
       */
      client: z.enum(['kafkajs', 'platformatic']).default('platformatic'),
      /** Prefix of every topic name, so that installations can share a cluster. */
      topicPrefix: z.string().regex(/^[a-zA-Z0-9._-]{1,50}$/, 'use [a-zA-Z0-9._-], at most 50 characters').default('orrery'),
      topics: z
        .strictObject({
          partitions: z.coerce.number().int().min(1).max(1000).default(6),
          replicationFactor: z.coerce.number().int().min(1).max(7).default(1),
        })
        .prefault({}),
      /**
       * How long the producer waits for more writes before sending, once nothing is in
       * flight and less than 16 KiB is queued. 5 ms is Apache Kafka's own producer default
       * since 4.0 (KIP-1030): a few ms of latency buy far fewer produce requests at
       * moderate rates. 0: send at once.
       */
      lingerMs: z.coerce.number().int().min(0).max(1_000).default(5),
      /**
       * Consumers' fetches: the broker answers once `fetchMinBytes` are there or after
       * `fetchMaxWaitMs`. Kafka's consumer defaults (1 byte, 500 ms) answer every few
       * messages at moderate rates: one fetch, produce and commit each time. 16 KiB within
       * 20 ms lets a stage take its messages in fewer, larger batches; a stage adds at most
       * 20 ms of latency when the topic is quiet.
       */
      fetchMinBytes: z.coerce.number().int().min(1).max(1024 * 1024).default(16 * 1024),
      fetchMaxWaitMs: z.coerce.number().int().min(1).max(5_000).default(20),
      /**
       * The largest record batch Orrery's topics take (their `max.message.bytes`; the
       * broker's default is 1 MiB + 12 bytes). Produce requests are kept under it; a single
       * record over it is refused before it is sent (the router dead-letters it instead).
       * Set it when the topics have a lower limit.
       */
      maxMessageBytes: z.coerce.number().int().min(16 * 1024).default(DEFAULT_MAX_BATCH_BYTES),
    })
    .prefault({}),
  /** Where embedded defaults keep their data (the on-disk bus, the ingest spool). */
  dataDir: z.string().min(1).default('.orrery'),
  database: z
    .strictObject({
      url: z.url({ protocol: /^postgres(ql)?$/, error: 'expected a postgres:// URL' }).optional(),
      /** Schema for Orrery's tables (created if missing), so installations can share a database. */
      schema: z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/, 'a lower-case SQL identifier').optional(),
    })
    .prefault({}),
  redis: z
    .strictObject({
      url: z.url({ protocol: /^rediss?$/, error: 'expected a redis:// URL' }).optional(),
    })
    .prefault({}),
  ingest: z
    .strictObject({
      /**
       * Processes of `orrery start ingest` sharing its port (node:cluster), each with a spool
       * of its own (`<spool>/worker-<i>`); `auto`: the cores available (cgroup-aware). Needs
       * Kafka and Postgres (the embedded bus and store serve one process). Default 1.
       */
      workers: z.union([z.literal('auto'), z.coerce.number().int().min(1).max(64)]).default(1),
      /** How long a produce may take before the events go to the spool instead. */
      produceTimeoutMs: z.coerce.number().int().min(50).default(2_000),
      spool: z
        .strictObject({
          /** Default: `<dataDir>/spool`. */
          dir: z.string().min(1).optional(),
          maxBytes: z.coerce.number().int().min(1024 * 1024).default(1024 * 1024 * 1024),
        })
        .prefault({}),
      /** Client IP from X-Forwarded-For only behind a proxy you trust. */
      trustProxy: z.boolean().default(false),
      /** Per-source default, in events; a source's own rateLimit wins. */
      rateLimit: z
        .strictObject({ eventsPerSecond: z.number().positive(), burst: z.number().int().positive() })
        .prefault({ eventsPerSecond: 5_000, burst: 20_000 }),
    })
    .prefault({}),
  router: z
    .strictObject({
      group: z.string().min(1).default('orrery-router'),
      /** How long a messageId is remembered for dedup (Segment keeps 24 h). */
      dedupWindowMs: z.coerce.number().int().min(1_000).default(24 * 60 * 60 * 1000),
      /** Partitions routed at once (each stays in order); Orrery's topics have 6. */
      partitionConcurrency: z.coerce.number().int().min(1).max(64).default(3),
      /**
       * A partition whose batch has failed 3 times in a row or more, the first of them this
       * long ago, with no success since, is stalled: /readyz answers 503.
       */
      stallAfterMs: z.coerce.number().int().min(1).default(60_000),
      /** Stalled this long: /healthz answers 503 too, so that a supervisor restarts the process. */
      stallLivenessMs: z.coerce.number().int().min(1).default(5 * 60_000),
    })
    .prefault({}),
  sinks: z
    .strictObject({
      /**
       * Opt-in cap on attempts per event, the first included; unset by default: a retriable
       * failure is retried until `maxAgeMs`, so a receiver restarting never means a replay.
       */
      maxAttempts: z.coerce.number().int().min(1).optional(),
      /** Give up on an event this long after its first attempt (RudderStack 180 min, Segment 4 h). */
      maxAgeMs: z.coerce.number().int().min(1).default(3 * 60 * 60 * 1000),
      backoffInitialMs: z.coerce.number().int().min(1).default(500),
      /**
       * An event still failing this long after its first attempt, while its destination
       * has taken other calls since, moves to the park (a table in the store) with its
       * user's later events, and retries from there in order, so the other users of its
       * partition flow on. A destination down for everyone parks nothing.
       */
      parkAfterMs: z.coerce.number().int().min(1).default(30_000),
      /** Past this many parked events per destination, a failing user waits in place instead. */
      parkMaxEvents: z.coerce.number().int().min(1).default(10_000),
      /**
       * Cap on one event's wait between attempts while its destination's breaker is closed
       * (a failure of its own). An outage opens the breaker, which probes within
       * `breakerCooldownMaxMs` and wakes every waiting event when it closes; this cap bounds
       * the rest: 5 s keeps an event that fails alone at ≤ 1 request per 5 s per lane.
       */
      backoffMaxMs: z.coerce.number().int().min(1).default(5_000),
      /**
       * Users delivered at once per destination worker, for destinations that take one
       * event per call (a webhook without batch). 8 left the e2e bench's sink stage at a
       * p99 of 0.9–3 s at 1,000 events/s, 32 at 0.4–0.6 s. RudderStack runs 64 workers.
       */
      concurrency: z.coerce.number().int().min(1).max(256).default(32),
      /**
       * Partition batches a destination worker handles at once (each partition in order;
       * the lanes of all of them share `concurrency`). Hides the tail of each batch, where
       * the last users' lanes run alone.
       */
      partitionConcurrency: z.coerce.number().int().min(1).max(64).default(3),
      groupPrefix: z.string().min(1).default('orrery-sink'),
      /** Retriable failures in a row that open a destination's circuit. */
      breakerThreshold: z.coerce.number().int().min(1).default(5),
      /**
       * How long the circuit stays open the first time; each failed trial doubles it, up to
       * `breakerCooldownMaxMs`. The cap is how late a destination's recovery is noticed.
       */
      breakerCooldownMs: z.coerce.number().int().min(10).default(100),
      breakerCooldownMaxMs: z.coerce.number().int().min(10).default(1_000),
      dedupWindowMs: z.coerce.number().int().min(1_000).default(24 * 60 * 60 * 1000),
    })
    .prefault({}),
  /** Absent: `orrery start` runs GitOps on an embedded default (gitops/embedded.ts); `{ enabled: false }`: off. */
  gitops: GitopsSection.optional(),
  sources: ControlPlaneConfig.shape.sources,
  destinations: ControlPlaneConfig.shape.destinations,
  routes: ControlPlaneConfig.shape.routes,
}).superRefine((cfg, ctx) => {
  // Cross-references (unique ids, routes naming known sources and destinations).
  const checked = ControlPlaneConfig.safeParse({ sources: cfg.sources, destinations: cfg.destinations, routes: cfg.routes });
  if (!checked.success) for (const issue of checked.error.issues) ctx.addIssue({ code: 'custom', path: issue.path, message: issue.message });
});

export type Config = Readonly<z.infer<typeof ConfigSchema>>;

/** Environment variables and the config path each one sets. */
/**
 * `requires`: the variable applies only when the file has that section, switched on
 * (KUBECONFIG is set on many machines; the embedded GitOps default never applies to it).
 */
export const ENV_MAP: ReadonlyArray<{ env: string; path: readonly string[]; list?: boolean; requires?: string }> = [
  { env: 'LOG_LEVEL', path: ['log', 'level'] },
  { env: 'ORRERY_DATA_DIR', path: ['dataDir'] },
  { env: 'HOST', path: ['http', 'host'] },
  { env: 'PORT', path: ['http', 'port'] },
  { env: 'HTTP_REQUEST_TIMEOUT_MS', path: ['http', 'requestTimeoutMs'] },
  { env: 'HTTP_HEADERS_TIMEOUT_MS', path: ['http', 'headersTimeoutMs'] },
  { env: 'KAFKA_BROKERS', path: ['kafka', 'brokers'], list: true },
  { env: 'KAFKA_CLIENT_ID', path: ['kafka', 'clientId'] },
  { env: 'KAFKA_CLIENT', path: ['kafka', 'client'] },
  { env: 'KAFKA_TOPIC_PREFIX', path: ['kafka', 'topicPrefix'] },
  { env: 'KAFKA_TOPIC_PARTITIONS', path: ['kafka', 'topics', 'partitions'] },
  { env: 'KAFKA_REPLICATION_FACTOR', path: ['kafka', 'topics', 'replicationFactor'] },
  { env: 'KAFKA_LINGER_MS', path: ['kafka', 'lingerMs'] },
  { env: 'KAFKA_FETCH_MIN_BYTES', path: ['kafka', 'fetchMinBytes'] },
  { env: 'KAFKA_FETCH_MAX_WAIT_MS', path: ['kafka', 'fetchMaxWaitMs'] },
  { env: 'KAFKA_MAX_MESSAGE_BYTES', path: ['kafka', 'maxMessageBytes'] },
  { env: 'DATABASE_URL', path: ['database', 'url'] },
  { env: 'DATABASE_SCHEMA', path: ['database', 'schema'] },
  { env: 'REDIS_URL', path: ['redis', 'url'] },
  { env: 'INGEST_PRODUCE_TIMEOUT_MS', path: ['ingest', 'produceTimeoutMs'] },
  { env: 'INGEST_SPOOL_DIR', path: ['ingest', 'spool', 'dir'] },
  { env: 'INGEST_WORKERS', path: ['ingest', 'workers'] },
  { env: 'ROUTER_GROUP', path: ['router', 'group'] },
  { env: 'KUBECONFIG', path: ['gitops', 'sync', 'kubeconfig'], requires: 'gitops' },
  { env: 'SINKS_MAX_ATTEMPTS', path: ['sinks', 'maxAttempts'] },
  { env: 'SINKS_MAX_AGE_MS', path: ['sinks', 'maxAgeMs'] },
  { env: 'SINKS_BACKOFF_INITIAL_MS', path: ['sinks', 'backoffInitialMs'] },
  { env: 'SINKS_PARK_AFTER_MS', path: ['sinks', 'parkAfterMs'] },
  { env: 'SINKS_PARK_MAX_EVENTS', path: ['sinks', 'parkMaxEvents'] },
  { env: 'SINKS_BACKOFF_MAX_MS', path: ['sinks', 'backoffMaxMs'] },
  { env: 'SINKS_GROUP_PREFIX', path: ['sinks', 'groupPrefix'] },
  { env: 'SINKS_CONCURRENCY', path: ['sinks', 'concurrency'] },
  { env: 'SINKS_PARTITION_CONCURRENCY', path: ['sinks', 'partitionConcurrency'] },
  { env: 'SINKS_BREAKER_THRESHOLD', path: ['sinks', 'breakerThreshold'] },
  { env: 'SINKS_BREAKER_COOLDOWN_MS', path: ['sinks', 'breakerCooldownMs'] },
  { env: 'SINKS_BREAKER_COOLDOWN_MAX_MS', path: ['sinks', 'breakerCooldownMaxMs'] },
  { env: 'ROUTER_DEDUP_WINDOW_MS', path: ['router', 'dedupWindowMs'] },
  { env: 'ROUTER_PARTITION_CONCURRENCY', path: ['router', 'partitionConcurrency'] },
  { env: 'ROUTER_STALL_AFTER_MS', path: ['router', 'stallAfterMs'] },
  { env: 'ROUTER_STALL_LIVENESS_MS', path: ['router', 'stallLivenessMs'] },
];

export interface LoadConfigOptions {
  env?: Readonly<Record<string, string | undefined>>;
  /** Path of the YAML file; falls back to `env.ORRERY_CONFIG`. */
  configPath?: string | undefined;
  readFile?: (path: string) => string;
}

/**
 * Builds the config once. Throws a {@link ConfigError} whose message names every bad field
 * and where it came from.
 *
 * @example
 *   const config = loadConfig({ env: process.env, configPath: args.config });
 */
export function loadConfig(opts: LoadConfigOptions = {}): Config {
  const env = opts.env ?? {};
  const configPath = opts.configPath ?? (env.ORRERY_CONFIG || undefined);
  const origin = new Map<string, string>();

  let fromFile: Record<string, unknown> = {};
  if (configPath) {
    fromFile = readYamlFile(configPath, opts.readFile ?? ((p) => readFileSync(p, 'utf8')), env);
    markOrigins(fromFile, [], origin, configPath);
  }

  const merged = structuredClone(fromFile);
  for (const { env: name, path, list, requires } of ENV_MAP) {
    const raw = env[name];
    if (raw === undefined || raw === '') continue;
    if (requires !== undefined && (merged[requires] === undefined || (merged[requires] as { enabled?: unknown }).enabled === false)) continue;
    const value = list ? raw.split(',').map((s) => s.trim()).filter(Boolean) : raw;
    setPath(merged, path, value);
    origin.set(path.join('.'), `env ${name}`);
  }

  const parsed = ConfigSchema.safeParse(merged);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => {
      const key = issue.path.map(String).join('.');
      const where = originOf(origin, issue.path.map(String));
      const what = issue.code === 'unrecognized_keys' ? `unknown key(s) ${issue.keys.join(', ')}` : issue.message;
      return `  - ${key || '(root)'}${where ? ` (from ${where})` : ''}: ${what}`;
    });
    throw new ConfigError(`Invalid configuration:\n${lines.join('\n')}`, { details: { issues: parsed.error.issues } });
  }
  return deepFreeze(parsed.data);
}

function readYamlFile(path: string, readFile: (p: string) => string, env: Readonly<Record<string, string | undefined>>): Record<string, unknown> {
  let raw: string;
  try {
    raw = readFile(path);
  } catch (err) {
    throw new ConfigError(`Cannot read config file ${path}: ${(err as Error).message}`, { cause: err });
  }
  const { text, refs } = withPlaceholders(raw);
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    const where = err instanceof YAMLParseError && err.linePos ? `:${err.linePos[0].line}:${err.linePos[0].col}` : '';
    throw new ConfigError(`Config file ${path}${where} is not valid YAML: ${(err as Error).message.split('\n')[0]}`, { cause: err });
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    throw new ConfigError(`Config file ${path} must hold a YAML mapping at the top level`);
  }
  return interpolate(doc, refs, env, path, []) as Record<string, unknown>;
}

/**
 * `${NAME}` in the file is replaced by the environment variable, so that secrets stay out
 * of the file (`token: ${GIT_TOKEN}`); `$${NAME}` is a literal `${NAME}`. Users write it
 * unquoted, even inside flow maps (`{ token: ${TOKEN} }`), where a `{` would end a plain
 * scalar; so each reference is first swapped for a placeholder that YAML reads as plain
 * text, and the values are put in after parsing. A value can therefore never change the
 * YAML's structure. A variable that is not set stops the start, naming the field.
 */
function withPlaceholders(text: string): { text: string; refs: Map<string, { name: string; literal: boolean }> } {
  const refs = new Map<string, { name: string; literal: boolean }>();
  const out = text.replace(/\$?\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (match, name: string) => {
    const key = `__orrery_env_${refs.size}__`;
    refs.set(key, { name, literal: match.startsWith('$$') });
    return key;
  });
  return { text: out, refs };
}

function interpolate(
  value: unknown,
  refs: Map<string, { name: string; literal: boolean }>,
  env: Readonly<Record<string, string | undefined>>,
  file: string,
  path: string[],
): unknown {
  if (typeof value === 'string') {
    return value.replace(/__orrery_env_\d+__/g, (key) => {
      const ref = refs.get(key);
      if (!ref) return key;
      if (ref.literal) return `\${${ref.name}}`;
      const v = env[ref.name];
      if (v === undefined) throw new ConfigError(`Invalid configuration:\n  - ${path.join('.')} (from ${file}): environment variable ${ref.name} is not set`);
      return v;
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => interpolate(v, refs, env, file, [...path, String(i)]));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, interpolate(v, refs, env, file, [...path, k])]));
  }
  return value;
}

function markOrigins(value: unknown, path: string[], origin: Map<string, string>, file: string): void {
  origin.set(path.join('.'), file);
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) markOrigins(v, [...path, k], origin, file);
  }
}

/** The origin of the longest known prefix of `path`. */
function originOf(origin: Map<string, string>, path: string[]): string | undefined {
  for (let n = path.length; n >= 0; n--) {
    const found = origin.get(path.slice(0, n).join('.'));
    if (found) return found;
  }
  return undefined;
}

function setPath(target: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (!next || typeof next !== 'object' || Array.isArray(next)) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path.at(-1)!] = value;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

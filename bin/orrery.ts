#!/usr/bin/env node
import { Hono } from 'hono';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createAdapters, openStore } from '../core/adapters.ts';
import { resolveAdminToken } from '../core/auth.ts';
import { createErrorBoundary, defaultOnError } from '../core/error-boundary.ts';
import { createRefusalLog } from '../core/refusals.ts';
import { loadConfig, type Config } from '../core/config.ts';
import { ConfigError } from '../core/errors.ts';
import { createLogger, redactUrl } from '../core/logger.ts';
import { createRegistry } from '../core/metrics.ts';
import { EMBEDDED_HEAP_LIMIT_MIB, restartWithHeapLimit, settleHeap } from '../core/heap.ts';
import { createOpsRoutes, type ReadinessCheck } from '../core/ops.ts';
import { listen, onShutdown, unmatchedRoutes } from '../core/serve.ts';
import { coreTopicSpecs, topicNames, Topics } from '../core/topics.ts';
import { availableCores, clusterMetrics, runPrimary, workerIdentity } from '../core/cluster.ts';
import type { Component, ComponentFactory } from '../core/component.ts';
import type { EmbeddedGitops } from '../gitops/embedded.ts';
import { pilotConfigFrom } from '../pilot/config.ts';
import type { Stage } from '../pilot/dead-letters.ts';
import { RENDER_HELP, RENDER_OPTIONS } from '../manifests/cli-help.ts';
import type { ControlPlaneSource } from '../core/control-plane-source.ts';
import type { Adapters } from '../core/adapters.ts';
import type { Logger } from '../core/logger.ts';

/**
 * The `orrery` command line: the one entry point of every Orrery process. Each command is
 * a composition root: it loads the config once, builds the adapters, and runs.
 */

interface Flags {
  [render: string]: string | boolean | string[] | undefined;
  destination?: string | undefined;
  id?: string[] | undefined;
  all?: boolean | undefined;
  limit?: string | undefined;
}

interface Command {
  summary: string;
  usage: string;
  help: string;
  run(args: string[], config: () => Config, flags: Flags): Promise<void>;
}

const COMMON_OPTIONS = `Options:
  -c, --config <file>   YAML config file (also ORRERY_CONFIG). Env wins over the file:
                        KAFKA_BROKERS, DATABASE_URL, REDIS_URL, PORT, HOST, LOG_LEVEL, …
  -h, --help            Show help for the command`;

/** Components that serve an endpoint wanting the admin token (Pilot's /api, GitOps' /deploys and /sync/status). */
const NEEDS_ADMIN_TOKEN = new Set(['gitops', 'pilot']);

/**
 * Components `orrery start` can run; with none named, all of them in one process. Each is
 * imported when started, and so are the commands' own modules: `orrery start ingest` never
 * loads the Kubernetes client, isomorphic-git or PGlite (test/integration/lazy-load.test.ts).
 */
const COMPONENTS: Record<string, () => Promise<ComponentFactory>> = {
  ingest: async () => (await import('../ingest/main.ts')).createIngestComponent,
  router: async () => (await import('../router/main.ts')).createRouterComponent,
  sinks: async () => (await import('../sinks/main.ts')).createSinksComponent,
  gitops: async () => (await import('../gitops/main.ts')).createGitopsComponent,
  pilot: async () => (await import('../pilot/main.ts')).createPilotComponent,
};

/** The control plane: versioned in the store (Postgres, or the embedded SQLite store), seeded from the config file, with live changes. */
async function openControlPlane(cfg: Config, adapters: Adapters, logger: Logger): Promise<ControlPlaneSource> {
  const seed = { sources: [...cfg.sources], destinations: [...cfg.destinations], routes: [...cfg.routes] };
  const log = logger.child({ component: 'control-plane' });
  const { createPgControlPlane, seedControlPlane } = await import('../core/control-plane-pg.ts');
  // An empty seed never replaces what the database holds: a missing file is not a wish to delete everything.
  if (seed.sources.length + seed.destinations.length + seed.routes.length > 0) await seedControlPlane(adapters.store, seed, logger);
  const cp = await createPgControlPlane({ store: adapters.store, logger });
  log.info({ adapter: adapters.store.kind, version: cp.current().version }, `control plane: versioned in the store (${adapters.store.kind})`);
  return cp;
}

/** `--workers` or `ingest.workers`: a count, or `auto` for the cores available. */
function workerCount(value: string | number): number {
  if (value === 'auto') return availableCores();
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new ConfigError(`--workers is a number of processes from 1 to 64, or auto (got "${value}")`);
  return n;
}

/** Bytes as whole MiB, for log lines. */
const mib = (bytes: number) => Math.round(bytes / 2 ** 20);

/** The components' checks of one kind, named `<component>.<check>`. */
function componentChecks(components: Component[], kind: 'checks' | 'liveness'): Record<string, ReadinessCheck> {
  return Object.fromEntries(components.flatMap((c) => Object.entries(c[kind] ?? {}).map(([k, v]) => [`${c.name}.${k}`, v])));
}

const commands: Record<string, Command> = {
  start: {
    summary: 'Run Orrery (all components in one process, or one component)',
    usage: 'orrery start [component] [--workers n|auto] [--config file]',
    help: `Runs Orrery's components in one process, or one of them alone for production.
Components: ${Object.keys(COMPONENTS).join(', ')}.
The process serves the components' routes and /healthz, /readyz and /metrics on PORT
(default 8080), logs JSON lines, and drains in-flight work on SIGTERM.
--workers n (ingest.workers, INGEST_WORKERS) runs \`orrery start ingest\` as n processes
sharing the port, each with its own spool; auto: the cores available. Needs KAFKA_BROKERS
and DATABASE_URL.
On the first start of all components (nothing in the control plane, no config seed), it
sets up a demo source, a webhook destination into Pilot and a route, and prints the demo
write key and a curl line on stderr (again at later starts, while the demo key works).`,
    async run(args, config, flags) {
      const names = args.length > 0 ? args : Object.keys(COMPONENTS);
      for (const name of names) {
        if (!COMPONENTS[name]) throw new ConfigError(`unknown component "${name}": choose from ${Object.keys(COMPONENTS).join(', ')}`);
      }
      let cfg = config();
      // The embedded default (no Kafka, no Postgres) runs with a smaller V8 heap limit, for a
      // smaller peak at the same speed (core/heap.ts); this process is replaced once to set it.
      const embedded = !cfg.kafka.brokers && !cfg.database.url;
      if (embedded) restartWithHeapLimit(EMBEDDED_HEAP_LIMIT_MIB);
      const logger = createLogger({ level: cfg.log.level });
      if (embedded) {
        const limit = process.execArgv.find((a) => /^--max[-_]old[-_]space[-_]size=/.test(a))?.split('=')[1];
        logger.info(
          { heapLimitMiB: limit ? Number(limit) : undefined, default: limit === String(EMBEDDED_HEAP_LIMIT_MIB) },
          limit === String(EMBEDDED_HEAP_LIMIT_MIB)
            ? `node: heap limit ${limit} MiB (embedded default; --max-old-space-size in ORRERY_NODE_FLAGS to change)`
            : `node: heap limit ${limit ? `${limit} MiB` : 'as set in NODE_OPTIONS or node\'s default'} (embedded default is ${EMBEDDED_HEAP_LIMIT_MIB} MiB)`,
        );
      }
      const workers = workerCount((flags.workers as string | undefined) ?? cfg.ingest.workers);
      if (workers > 1) {
        if (names.length !== 1 || names[0] !== 'ingest') throw new ConfigError('--workers (ingest.workers) applies to `orrery start ingest` alone');
        if (!cfg.kafka.brokers || !cfg.database.url) throw new ConfigError('--workers needs KAFKA_BROKERS and DATABASE_URL: the embedded bus and store serve one process');
        if (!workerIdentity()) {
          const { refuseOrphanSpools } = await import('../ingest/spool-orphans.ts');
          await refuseOrphanSpools({ base: cfg.ingest.spool.dir ?? join(cfg.dataDir, 'spool'), maxBytes: cfg.ingest.spool.maxBytes, workers, logger });
          process.exitCode = await runPrimary({ workers, logger });
          return;
        }
      }
      const worker = workers > 1 ? workerIdentity() : undefined;
      logger.info({ components: names, node: process.version }, 'starting orrery');
      const adapters = await createAdapters(cfg, logger);
      const registry = createRegistry({ service: args.length === 1 ? names[0]! : 'orrery' });
      const components: Component[] = [];
      const topics = topicNames(cfg.kafka.topicPrefix);
      // Once for the process: `orrery start gitops` alone needs it as much as Pilot does.
      const adminToken = names.some((n) => NEEDS_ADMIN_TOKEN.has(n)) ? resolveAdminToken({ configured: pilotConfigFrom(process.env).adminToken, logger }) : undefined;
      // One trace of refused webhooks for the process, which Pilot shows.
      const refusals = createRefusalLog({ logger });
      let controlPlane: ControlPlaneSource | undefined;
      const stopAll = async () => {
        for (const c of [...components].reverse()) await c.stop().catch((err: unknown) => logger.error({ err, component: c.name }, 'stop failed'));
        await controlPlane?.close();
        await adapters.close();
      };
      let gitopsDefault: EmbeddedGitops | undefined;
      try {
        // No gitops section at all: GitOps runs on its embedded default (a local repository,
        // plan mode), which Pilot sees too. A section, or `gitops: { enabled: false }`, is
        // used as given. After the adapters: the embedded store holds the data dir's lock.
        if (names.includes('gitops') && cfg.gitops === undefined) {
          const { ensureEmbeddedGitops } = await import('../gitops/embedded.ts');
          gitopsDefault = await ensureEmbeddedGitops({ dataDir: cfg.dataDir, logger, alone: args.length > 0 });
          cfg = Object.freeze({ ...cfg, gitops: gitopsDefault.config });
        }
        await adapters.bus.ensureTopics(coreTopicSpecs(topics, cfg.kafka.topics));
        controlPlane = await openControlPlane(cfg, adapters, logger);
        // A demo from before the demo receiver wanted signatures gets its secret before the
        // sinks deliver, or its deliveries would be refused.
        if (names.includes('pilot')) await (await import('../pilot/demo-setup.ts')).ensureDemoSecret({ store: adapters.store, controlPlane, logger });
        for (const name of names) {
          const create = await COMPONENTS[name]!();
          components.push(await create({ config: cfg, logger, registry, adapters, topics, controlPlane, ...(adminToken ? { adminToken } : {}), refusals, ...(worker ? { worker } : {}) }));
        }
      } catch (err) {
        await stopAll();
        throw err;
      }

      let draining = false;
      // Not strict: `/v1/import/` is `/v1/import` (Segment's Java library appends the slash itself).
      const app = new Hono({ strict: false });
      // The components answer their own errors; what reaches here (the ops routes) is counted too.
      app.onError(defaultOnError(createErrorBoundary({ surface: 'ops', logger, registry })));
      app.route(
        '/',
        createOpsRoutes({
          registry,
          isDraining: () => draining,
          checks: {
            bus: async () => ((await adapters.bus.ping()) ? 'ok' : 'degraded'),
            store: async () => ((await adapters.store.ping()) ? 'ok' : 'down'),
            cache: async () => ((await adapters.cache.ping()) ? 'ok' : 'down'),
            ...componentChecks(components, 'checks'),
          },
          liveness: componentChecks(components, 'liveness'),
          // A worker's /metrics is the whole cluster's, summed by the primary.
          ...(worker ? { metrics: clusterMetrics(registry) } : {}),
        }),
      );
      for (const c of components) if (c.routes) app.route('/', c.routes);
      app.notFound(unmatchedRoutes(app));
      const { host, port, requestTimeoutMs, headersTimeoutMs } = cfg.http;
      const server = await listen({ fetch: app.fetch, host, port, requestTimeoutMs, headersTimeoutMs, logger });
      // The demo belongs to the whole platform in one process: a component run alone never sets it up.
      if (args.length === 0 && controlPlane) {
        const { demoBanner, ensureDemo, localBaseUrl } = await import('../pilot/demo-setup.ts');
        const baseUrl = localBaseUrl(cfg.http.host, server.port);
        try {
          const demo = await ensureDemo({ store: adapters.store, controlPlane, dataDir: cfg.dataDir, baseUrl, logger });
          // stderr, not the log: the banner holds a write key, and logs never do.
          if (demo.state !== 'none') process.stderr.write(demoBanner(demo, baseUrl));
        } catch (err) {
          logger.error({ err }, 'demo: setting it up failed; orrery runs without it');
        }
      }
      // stderr, not the log: on its first start the banner holds the webhook secret.
      if (gitopsDefault) {
        const [{ embeddedGitopsBanner }, { localBaseUrl }] = await Promise.all([import('../gitops/embedded.ts'), import('../pilot/demo-setup.ts')]);
        process.stderr.write(embeddedGitopsBanner(gitopsDefault, localBaseUrl(cfg.http.host, server.port)));
      }
      // Serving now: what starting up left in the heap goes (core/heap.ts), or an idle process keeps it.
      const settled = settleHeap();
      logger.info({ rssMiB: [mib(settled.rssBefore), mib(settled.rssAfter)], heapUsedMiB: [mib(settled.heapUsedBefore), mib(settled.heapUsedAfter)], ms: Math.round(settled.ms) }, 'heap settled after start');
      onShutdown(logger, async () => {
        draining = true;
        // Long-lived responses (Pilot's live streams) end first, or close() would wait for them.
        for (const c of components) await c.drain?.();
        // Stop taking requests first; requests in flight finish and get their answer.
        await server.close();
        await stopAll();
      });
    },
  },
  topics: {
    summary: "Create Orrery's Kafka topics (broker auto-create stays off)",
    usage: 'orrery topics create [--config file]',
    help: `Creates the topics that are missing (${coreTopicSpecs(Topics, { partitions: 1, replicationFactor: 1 })
      .map((t) => t.topic)
      .join(', ')}), with kafka.topics.partitions and
kafka.topics.replicationFactor from the config. Existing topics are left alone. Every
service also does this at start.`,
    async run(args, config) {
      if (args[0] !== 'create') throw new ConfigError('usage: orrery topics create');
      const cfg = config();
      const logger = createLogger({ level: cfg.log.level });
      const adapters = await createAdapters(cfg, logger);
      try {
        await adapters.bus.ensureTopics(coreTopicSpecs(topicNames(cfg.kafka.topicPrefix), cfg.kafka.topics));
      } finally {
        await adapters.close();
      }
    },
  },
  dlq: {
    summary: 'List and replay dead letters (events the router could not route, or a destination would not take)',
    usage: 'orrery dlq list|replay [--stage router|sink] [--destination id] [--id n …] [--all] [--limit n] [--config file]',
    help: `list     the dead letters still pending (--all: replayed ones too), oldest first, as JSON
         lines; each says its stage: router (could not route: reason, raw bytes, key) or
         sink (a destination would not take it)
replay   re-send pending dead letters, each once, even when two replays run at once: sink
         letters to their destinations with the current settings, router letters onto the
         raw topic (raw bytes, original key) to be routed with the current control plane
--stage and --destination (sink letters of one destination) narrow both.
Dead letters live in the store: DATABASE_URL's Postgres, or the embedded SQLite store under
the data dir. list reads it while orrery start runs; replay needs the data dir to itself
(use Pilot's replay while orrery start runs).`,
    async run(args, config, flags) {
      const action = args[0];
      if (action !== 'list' && action !== 'replay') throw new ConfigError('usage: orrery dlq list|replay');
      const cfg = config();
      // Logs on stderr: stdout holds the JSON lines (or the replay result) that scripts read.
      const logger = createLogger({ level: 'warn' }, process.stderr);
      if (flags.stage !== undefined && flags.stage !== 'router' && flags.stage !== 'sink') throw new ConfigError('--stage is router or sink');
      const stage = flags.stage as Stage | undefined;
      if (stage === 'router' && flags.destination) throw new ConfigError('router dead letters have no destination: --destination goes with sink letters');
      const filter = {
        stage,
        destinationId: flags.destination,
        ids: flags.id?.map(Number),
        limit: flags.limit ? Number(flags.limit) : undefined,
      };
      const { listAllDeadLetters, replayAllDeadLetters } = await import('../pilot/dead-letters.ts');
      if (action === 'list') {
        // The store alone, unlocked: listing works while `orrery start` runs on the data dir.
        const store = await openStore(cfg, logger, { lock: false });
        try {
          for (const l of await listAllDeadLetters(store, { ...filter, includeReplayed: flags.all })) {
            process.stdout.write(`${JSON.stringify(l)}\n`);
          }
        } finally {
          await store.close();
        }
        return;
      }
      const adapters = await createAdapters(cfg, logger);
      try {
        const store = adapters.store;
        const controlPlane = await openControlPlane(cfg, adapters, logger);
        try {
          const raw = topicNames(cfg.kafka.topicPrefix).raw;
          const { replayToDestinations } = await import('../sinks/replay.ts');
          const result = await replayAllDeadLetters(store, filter, {
            replaySinks: (opts) => replayToDestinations(store, controlPlane.current(), opts),
            republish: (key, value) => adapters.bus.produce(raw, [{ key, value }]),
          });
          process.stdout.write(`${JSON.stringify(result)}\n`);
          if (result.failed.length > 0) process.exitCode = 1;
        } finally {
          await controlPlane.close();
        }
      } finally {
        await adapters.close();
      }
    },
  },
  render: {
    ...RENDER_HELP,
    async run(args, _config, flags) {
      const { renderCommand } = await import('../manifests/cli.ts');
      const code = await renderCommand(args, flags as never);
      if (code !== 0) process.exitCode = code;
    },
  },
  apply: {
    summary: 'Render a values file and apply it to the cluster in KUBECONFIG, in one step',
    usage: 'orrery apply <values.yaml>',
    help: `Renders like 'orrery render' and applies every object with server-side apply
(fieldManager orrery), CRDs and namespaces first, then config, then workloads. For a
cluster that GitOps syncs, commit the render instead and let the sync apply it.`,
    async run(args) {
      const [valuesPath] = args;
      if (!valuesPath) throw new ConfigError('usage: orrery apply <values.yaml>');
      const [{ createKubeApplier, loadKubeConfig }, { parseManifests }, { objectId }, { renderToFiles }] = await Promise.all([
        import('../gitops/apply/applier.ts'),
        import('../gitops/apply/manifests.ts'),
        import('../gitops/apply/inventory.ts'),
        import('../manifests/cli.ts'),
      ]);
      const kc = loadKubeConfig(process.env.KUBECONFIG);
      if (!kc) throw new ConfigError('orrery apply needs a cluster: set KUBECONFIG');
      const rendered = await renderToFiles({ valuesPath, target: 'kubernetes' });
      const applier = createKubeApplier(kc);
      for (const o of parseManifests(new Map([['rendered.yaml', rendered.stdout ?? '']]))) {
        await applier.apply(o, { force: true });
        process.stdout.write(`applied ${objectId(o)}\n`);
      }
    },
  },
  config: {
    summary: 'Check a config and print it resolved, with secrets hidden',
    usage: 'orrery config check [--config file]',
    help: 'Parses env and the YAML file exactly as a service would at start, and prints the result as JSON.',
    async run(args, config) {
      if (args[0] !== 'check') throw new ConfigError('usage: orrery config check');
      const cfg = config();
      const shown = {
        ...cfg,
        sources: cfg.sources.map((s) => ({ ...s, writeKeys: s.writeKeys.map(() => '[redacted]') })),
        database: { ...cfg.database, url: cfg.database.url && redactUrl(cfg.database.url) },
        redis: { url: cfg.redis.url && redactUrl(cfg.redis.url) },
        gitops: redactGitops(cfg.gitops),
      };
      process.stdout.write(`${JSON.stringify(shown, null, 2)}\n`);
    },
  },
};

/** The gitops section with its tokens and secrets (repository, GitHub, receivers, git webhook) hidden. */
function redactGitops(section: Config['gitops']): Config['gitops'] {
  if (section === undefined || section.enabled === false) return section;
  const hide = (v: string | undefined) => (v === undefined ? v : '[redacted]');
  return {
    ...section,
    repo: { ...section.repo, url: URL.canParse(section.repo.url) ? redactUrl(section.repo.url) : section.repo.url, token: hide(section.repo.token) },
    ...(section.github ? { github: { ...section.github, token: '[redacted]' } } : {}),
    receivers: Object.fromEntries(Object.entries(section.receivers).map(([name, settings]) => [name, Object.fromEntries(Object.entries(settings).map(([k, v]) => [k, k === 'host' ? v : '[redacted]']))])),
    sync: { ...section.sync, webhookSecret: hide(section.sync.webhookSecret) },
  };
}

function mainHelp(): string {
  const width = Math.max(...Object.keys(commands).map((k) => k.length));
  return `orrery: self-hosted clickstream (Segment-compatible ingest → Kafka → router → sinks)
and GitOps deploys.

Usage: orrery <command> [args] [options]

Commands:
${Object.entries(commands)
  .map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`)
  .join('\n')}

${COMMON_OPTIONS}

Run 'orrery <command> --help' for more.`;
}

export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      config: { type: 'string', short: 'c' },
      help: { type: 'boolean', short: 'h' },
      destination: { type: 'string' },
      id: { type: 'string', multiple: true },
      stage: { type: 'string' },
      all: { type: 'boolean' },
      limit: { type: 'string' },
      workers: { type: 'string' },
      ...RENDER_OPTIONS,
    },
  });
  const [name, ...rest] = positionals;
  if (!name || name === 'help') {
    const topic = name === 'help' ? rest[0] : undefined;
    const cmd = topic ? commands[topic] : undefined;
    process.stdout.write(`${cmd ? commandHelp(cmd) : mainHelp()}\n`);
    return 0;
  }
  const cmd = commands[name];
  if (!cmd) {
    process.stderr.write(`orrery: unknown command "${name}"\n\n${mainHelp()}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`${commandHelp(cmd)}\n`);
    return 0;
  }
  await cmd.run(rest, () => loadConfig({ env: process.env, configPath: values.config }), values);
  return 0;
}

function commandHelp(cmd: Command): string {
  return `Usage: ${cmd.usage}\n\n${cmd.help}\n\n${COMMON_OPTIONS}`;
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== 0) process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof ConfigError || (err as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      process.stderr.write(`orrery: ${(err as Error).message}\n`);
      process.exitCode = 2;
    } else {
      process.stderr.write(`orrery: ${(err as Error).stack ?? String(err)}\n`);
      process.exitCode = 1;
    }
  },
);

import type { Hono } from 'hono';
import type { Adapters } from './adapters.ts';
import type { WorkerIdentity } from './cluster.ts';
import type { Config } from './config.ts';
import type { ControlPlaneSource } from './control-plane-source.ts';
import type { Logger } from './logger.ts';
import type { Registry } from './metrics.ts';
import type { ReadinessCheck } from './ops.ts';
import type { RefusalLog } from './refusals.ts';
import type { TopicNames } from './topics.ts';

/**
 * A part of Orrery that `orrery start` can run (ingest, router, sinks, …), alone or with
 * the others in one process. The CLI is the composition root: it builds the adapters
 * once, gives each component what it needs, mounts their routes on one server beside
 * /healthz, /readyz and /metrics, and stops them in reverse order on SIGTERM.
 */
export interface Component {
  name: string;
  /** HTTP routes, mounted at the root. */
  routes?: Hono<any>;
  /** Readiness checks, shown under /readyz as `<component>.<check>`. */
  checks?: Record<string, ReadinessCheck>;
  /** Liveness checks, shown under /healthz as `<component>.<check>`: down means restart me. */
  liveness?: Record<string, ReadinessCheck>;
  /** Ends long-lived responses (event streams) before the server stops taking requests. */
  drain?(): Promise<void>;
  /** Drains: stop taking work, finish what is in flight, flush. */
  stop(): Promise<void>;
}

export interface ComponentContext {
  config: Config;
  logger: Logger;
  registry: Registry;
  adapters: Adapters;
  /** Topic names under the configured prefix. */
  topics: TopicNames;
  /** Sources, destinations and routes, live. */
  controlPlane: ControlPlaneSource;
  /**
   * The admin token (Bearer) of every control endpoint (Pilot's /api, GitOps' /deploys and
   * /sync/status), resolved once by the composition root: PILOT_ADMIN_TOKEN, or generated
   * and printed once on stderr. GitOps refuses to start without it.
   */
  adminToken?: string;
  /** Refused webhooks of every component in the process, which Pilot shows; absent: each keeps its own. */
  refusals?: RefusalLog;
  /** Set in a worker of `--workers N` (core/cluster.ts): what is per process is per worker (ingest's spool). */
  worker?: WorkerIdentity;
}

export type ComponentFactory = (ctx: ComponentContext) => Promise<Component>;

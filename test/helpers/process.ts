import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serviceEnv, uniqueName, waitFor } from './index.ts';

const CLI = fileURLToPath(new URL('../../bin/orrery.js', import.meta.url));

/** A port nothing listens on right now. */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

export interface OrreryProcess {
  url: string;
  port: number;
  child: ChildProcess;
  /** Every JSON log line so far. */
  logs: Array<Record<string, unknown>>;
  /** Everything written to stderr so far (the demo banner, crash traces). */
  stderr(): string;
  /** SIGKILL, as a crash would; resolves once it has exited. */
  kill(): Promise<void>;
  /** SIGTERM, then wait for the exit; returns the exit code. */
  stop(): Promise<number | null>;
}

/**
 * Runs `orrery <args>` as a real process (the CLI, as a user would), waits until /readyz
 * answers (any status: readiness itself is what tests look at), and collects its logs.
 */
export interface StartOptions {
  /** Default: a free one. A restart passes the port of the run before. */
  port?: number;
  /** Variables removed from the inherited environment (not just emptied). */
  without?: string[];
  /** Flags for node itself, before the CLI on its command line (as ./orrery passes bin/node-flags). */
  nodeArgs?: string[];
}

export async function startOrrery(args: string[], env: Record<string, string>, opts: StartOptions = {}): Promise<OrreryProcess> {
  const port = opts.port ?? (await freePort());
  const inherited: Record<string, string | undefined> = { ...process.env };
  for (const name of opts.without ?? []) delete inherited[name];
  const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), CLI, ...args], {
    env: { ...inherited, LOG_LEVEL: 'info', ...env, PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Array<Record<string, unknown>> = [];
  let stderr = '';
  let buffer = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    buffer += chunk.toString();
    let nl: number;
    while ((nl = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      try {
        const entry = JSON.parse(line) as Record<string, unknown>;
        // JSON.parse keeps the last of two equal keys, as log tools do: say when a line had two.
        if ((line.match(/"component":/g) ?? []).length > 1) entry.repeatedComponentKey = line;
        logs.push(entry);
      } catch {
        logs.push({ raw: line });
      }
    }
  });
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = once(child, 'exit');
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitFor(
      async () => {
        if (child.exitCode !== null) throw new Error(`orrery exited with ${child.exitCode}: ${stderr}`);
        const res = await fetch(`${url}/healthz`);
        return res.ok;
      },
      { timeoutMs: 60_000, intervalMs: 100, what: `orrery ${args.join(' ')} to listen` },
    );
    // The log reaches the pipe on its own schedule: /healthz can answer before the lines
    // written at start are read here. 'listening' comes after every start line.
    const level = env.LOG_LEVEL ?? 'info';
    if (level === 'info' || level === 'debug' || level === 'trace') {
      await waitFor(() => logs.some((l) => l.msg === 'listening'), { timeoutMs: 10_000, intervalMs: 20, what: "the 'listening' log line" });
    }
  } catch (err) {
    child.kill('SIGKILL');
    throw new Error(`${(err as Error).message}\nstderr: ${stderr}\nlogs: ${JSON.stringify(logs.slice(-10))}`);
  }
  return {
    url,
    port,
    child,
    logs,
    stderr: () => stderr,
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (child.exitCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const [code] = (await exited) as [number | null];
      return code;
    },
  };
}

/**
 * A temp dir holding an `orrery.yaml` with one source `web` (write key `writeKey`), a
 * webhook destination `hook` at `hookUrl` and the route between them: the smallest
 * platform that delivers. Returns the dir.
 */
export async function webToHookConfig(name: string, writeKey: string, hookUrl: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `orrery-${name}-`));
  await writeFile(
    join(dir, 'orrery.yaml'),
    `sources: [{ id: web, writeKeys: [${writeKey}] }]
destinations: [{ id: hook, type: webhook, url: "${hookUrl}", allowPrivateNetwork: true }]
routes: [{ source: web, destination: hook }]
`,
  );
  return dir;
}

/**
 * The env for `orrery start` on the real services with the config in `dir`: topics, groups
 * and schema named uniquely, so that no other test (or earlier run) shares them.
 */
export function realServicesEnv(dir: string, name: string): Record<string, string> {
  return {
    ORRERY_CONFIG: join(dir, 'orrery.yaml'),
    ORRERY_DATA_DIR: join(dir, 'data'),
    KAFKA_BROKERS: serviceEnv('KAFKA_BROKERS'),
    KAFKA_TOPIC_PREFIX: uniqueName(name),
    KAFKA_TOPIC_PARTITIONS: '2',
    DATABASE_URL: serviceEnv('DATABASE_URL'),
    DATABASE_SCHEMA: uniqueName(name).toLowerCase(),
    REDIS_URL: serviceEnv('REDIS_URL'),
    ROUTER_GROUP: uniqueName('router'),
    SINKS_GROUP_PREFIX: uniqueName('sink'),
    INGEST_SPOOL_DIR: join(dir, 'spool'),
  };
}

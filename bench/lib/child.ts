import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/**
 * Bench helper processes (bare servers, baselines, load generators, the receiver) run as
 * child processes, so that no measured code shares an event loop with the bench itself.
 *
 * Protocol, one JSON object a line: the child gets its config in env BENCH_CHILD_CONFIG,
 * prints `{"ready": …}` once it can work, then answers each command it reads on stdin
 * (`{"cmd": …}`) with `{"reply": …}` or `{"error": "…"}`, in order. Other stdout lines are
 * ignored; stderr is kept for error messages.
 */

export interface Child<R = unknown> {
  proc: ChildProcess;
  pid: number;
  /** What the child sent with `ready`. */
  ready: R;
  request<T = unknown>(cmd: Record<string, unknown>, timeoutMs?: number): Promise<T>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once it has exited. */
  stop(graceMs?: number): Promise<void>;
  stderr(): string;
}

export function childScript(name: string): string {
  return fileURLToPath(new URL(`../children/${name}.ts`, import.meta.url));
}

export async function startChild<R = unknown>(
  script: string,
  config: unknown,
  opts: { readyTimeoutMs?: number; env?: Record<string, string>; nodeArgs?: string[] } = {},
): Promise<Child<R>> {
  const proc = spawn(process.execPath, [...(opts.nodeArgs ?? []), script], {
    env: { ...process.env, ...opts.env, BENCH_CHILD_CONFIG: JSON.stringify(config) },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  proc.stderr!.on('data', (c: Buffer) => {
    stderr += c.toString();
    if (stderr.length > 20_000) stderr = stderr.slice(-10_000);
  });
  const exited = once(proc, 'exit');
  const waiting: Array<{ resolve: (v: unknown) => void; reject: (e: Error) => void }> = [];
  let onReady!: (v: R) => void;
  let onFail!: (e: Error) => void;
  const readyP = new Promise<R>((resolve, reject) => {
    onReady = resolve;
    onFail = reject;
  });
  const lines = createInterface({ input: proc.stdout! });
  lines.on('line', (line) => {
    if (!line.startsWith('{')) return;
    let msg: { ready?: R; reply?: unknown; error?: string };
    try {
      msg = JSON.parse(line) as typeof msg;
    } catch {
      return;
    }
    if ('ready' in msg) onReady(msg.ready as R);
    else if ('reply' in msg) waiting.shift()?.resolve(msg.reply);
    else if ('error' in msg) waiting.shift()?.reject(new Error(`${script}: ${msg.error}`));
  });
  proc.on('exit', (code, signal) => {
    const err = new Error(`${script} exited (${code ?? signal}): ${stderr.slice(-2000)}`);
    onFail(err);
    for (const w of waiting.splice(0)) w.reject(err);
  });
  const timer = setTimeout(() => onFail(new Error(`${script} not ready within ${opts.readyTimeoutMs ?? 30_000} ms: ${stderr.slice(-2000)}`)), opts.readyTimeoutMs ?? 30_000);
  let ready: R;
  try {
    ready = await readyP;
  } catch (err) {
    proc.kill('SIGKILL');
    throw err;
  } finally {
    clearTimeout(timer);
  }
  return {
    proc,
    pid: proc.pid!,
    ready,
    request<T>(cmd: Record<string, unknown>, timeoutMs = 600_000): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`${script}: no answer to ${String(cmd.cmd)} within ${timeoutMs} ms`)), timeoutMs);
        waiting.push({
          resolve: (v) => {
            clearTimeout(t);
            resolve(v as T);
          },
          reject: (e) => {
            clearTimeout(t);
            reject(e);
          },
        });
        proc.stdin!.write(`${JSON.stringify(cmd)}\n`);
      });
    },
    async stop(graceMs = 10_000) {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      const kill = setTimeout(() => proc.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(kill);
    },
    stderr: () => stderr,
  };
}

// ---- the child's side ----

export function childConfig<T>(): T {
  const raw = process.env.BENCH_CHILD_CONFIG;
  if (!raw) throw new Error('BENCH_CHILD_CONFIG is not set: this script is started by bench/run.ts');
  return JSON.parse(raw) as T;
}

function send(msg: unknown): void {
  process.stdout.write(`${JSON.stringify(msg)}\n`);
}

/** Tells the parent the child is ready, then serves its commands one after another. */
export function serveCommands(ready: unknown, handle: (cmd: Record<string, unknown> & { cmd: string }) => Promise<unknown> | unknown): void {
  send({ ready });
  const lines = createInterface({ input: process.stdin });
  let chain = Promise.resolve();
  lines.on('line', (line) => {
    chain = chain.then(async () => {
      try {
        send({ reply: (await handle(JSON.parse(line) as Record<string, unknown> & { cmd: string })) ?? null });
      } catch (err) {
        send({ error: (err as Error).stack ?? String(err) });
      }
    });
  });
  // The parent going away ends the child: no orphans.
  lines.on('close', () => setTimeout(() => process.exit(0), 100).unref());
}

/** Runs `stop` on SIGTERM/SIGINT, then exits. */
export function onStop(stop: () => Promise<void> | void): void {
  let stopping = false;
  const h = () => {
    if (stopping) process.exit(1);
    stopping = true;
    Promise.resolve(stop()).finally(() => process.exit(0));
  };
  process.on('SIGTERM', h);
  process.on('SIGINT', h);
}

import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const CLI = createRequire(import.meta.url).resolve('autocannon/autocannon.js');

/** One autocannon run (its CLI, a separate process), reduced to what the bench reports. */
export interface LoadResult {
  /** 2xx answers per second. */
  okPerSec: number;
  ok: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  seconds: number;
  latencyP50: number;
  latencyP99: number;
  latencyMax: number;
}

export interface LoadOptions {
  url: string;
  /** Request body; `[<id>]` is replaced by a fresh id on every request. */
  body: string;
  headers: Record<string, string>;
  connections: number;
  seconds: number;
  /** Folder for the body file. */
  dir: string;
}

let bodies = 0;

export async function autocannon(o: LoadOptions): Promise<LoadResult> {
  const bodyFile = join(o.dir, `autocannon-body-${process.pid}-${++bodies}.json`);
  writeFileSync(bodyFile, o.body);
  const args = [CLI, o.url, '-m', 'POST', '-c', String(o.connections), '-d', String(o.seconds), '-i', bodyFile, '-I', '-j', '-n', '-t', '10'];
  for (const [k, v] of Object.entries(o.headers)) args.push('-H', `${k}=${v}`);
  const { stdout } = await run(process.execPath, args, { maxBuffer: 64 * 1024 * 1024, timeout: (o.seconds + 60) * 1000 });
  const j = JSON.parse(stdout) as {
    '2xx': number;
    non2xx: number;
    errors: number;
    timeouts: number;
    duration: number;
    latency: { p50: number; p99: number; max: number };
  };
  return {
    okPerSec: j['2xx'] / j.duration,
    ok: j['2xx'],
    non2xx: j.non2xx,
    errors: j.errors,
    timeouts: j.timeouts,
    seconds: j.duration,
    latencyP50: j.latency.p50,
    latencyP99: j.latency.p99,
    latencyMax: j.latency.max,
  };
}

import { execFile } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serviceEnv, uniqueName } from '../helpers/index.ts';
import { startOrrery, type OrreryProcess } from '../helpers/process.ts';

const run = promisify(execFile);
const ROOT = new URL('../..', import.meta.url).pathname;
const WRITE_KEY = 'fuzz-write-key';
const ADMIN = 'fuzz-admin-token';
/** Fixed, so that a failure reproduces: `schemathesis run … --seed <this>` finds it again. */
const SEED = Number(process.env.FUZZ_SEED ?? 20261205);
/** Test cases per operation: bounded, so the suite stays fast. FUZZ_EXAMPLES=500 for a longer hunt. */
const EXAMPLES = Number(process.env.FUZZ_EXAMPLES ?? 30);

/**
 * Schema-based fuzzing of both OpenAPI documents of a running Orrery, with schemathesis
 * (from PyPI, in a cached virtualenv: test/services/schemathesis) and every one of its
 * checks: no 5xx, every status and response documented and matching its schema, requests
 * valid by the schema accepted and invalid ones refused, auth enforced, undeclared methods
 * answered 405. A failure prints schemathesis's own report, with a curl line to reproduce.
 */
describe('fuzzing the OpenAPI documents (schemathesis)', () => {
  let orrery: OrreryProcess;
  let venv: string;
  /** schemathesis's working directory: it keeps a crash cache there, which must not land in the repo. */
  let dir: string;

  beforeAll(async () => {
    venv = (await run('bash', [join(ROOT, 'test/services/schemathesis')], { maxBuffer: 1 << 24, timeout: 600_000 })).stdout.trim();
    dir = await mkdtemp(join(tmpdir(), 'orrery-fuzz-'));
    await writeFile(join(dir, 'orrery.yaml'), `sources: [{ id: web, writeKeys: [${WRITE_KEY}] }]\n`);
    orrery = await startOrrery(['start'], {
      ORRERY_CONFIG: join(dir, 'orrery.yaml'),
      ORRERY_DATA_DIR: join(dir, 'data'),
      KAFKA_BROKERS: serviceEnv('KAFKA_BROKERS'),
      KAFKA_TOPIC_PREFIX: uniqueName('fuzz'),
      KAFKA_TOPIC_PARTITIONS: '1',
      DATABASE_URL: serviceEnv('DATABASE_URL'),
      DATABASE_SCHEMA: uniqueName('fuzz').toLowerCase(),
      REDIS_URL: serviceEnv('REDIS_URL'),
      ROUTER_GROUP: uniqueName('router'),
      SINKS_GROUP_PREFIX: uniqueName('sink'),
      INGEST_SPOOL_DIR: join(dir, 'spool'),
      PILOT_ADMIN_TOKEN: ADMIN,
      // The debugger stream ends (with `bye`) after this long; every request to it waits that out.
      PILOT_STREAM_MAX_MS: '1000',
    });
  });
  afterAll(async () => {
    await orrery?.stop();
  });

  async function schemathesis(document: string, auth: string[]): Promise<{ code: number; output: string }> {
    const args = [
      '--config-file',
      join(ROOT, 'test/integration/schemathesis.toml'),
      'run',
      `${orrery.url}${document}`,
      '--max-examples',
      String(EXAMPLES),
      '--seed',
      String(SEED),
      '--workers',
      '1',
      '--generation-database',
      'none',
      '--no-color',
      ...auth,
    ];
    try {
      const { stdout } = await run(join(venv, 'bin', 'schemathesis'), args, { cwd: dir, maxBuffer: 1 << 26, timeout: 600_000 });
      return { code: 0, output: stdout };
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      return { code: typeof e.code === 'number' ? e.code : -1, output: `${e.stdout ?? ''}${e.stderr ?? ''}` };
    }
  }

  /** The report without its passing noise: every failure with its reproduction, then the summary. */
  const failures = (output: string) => output.slice(Math.max(0, output.indexOf('FAILURES')));

  // A fixed amount of work (the seed and the examples are fixed), whose time depends on the
  // machine's load: 111-117 s in full runs, past the suite's 120 s default once.
  it('ingest: /openapi.json (write key as HTTP Basic)', async () => {
    const result = await schemathesis('/openapi.json', ['--auth', `${WRITE_KEY}:`]);
    expect(result.code, failures(result.output)).toBe(0);
    expect(orrery.child.exitCode).toBeNull();
  }, 360_000);

  it("pilot: /api/openapi.json (the admin token as Bearer)", async () => {
    const result = await schemathesis('/api/openapi.json', ['--header', `Authorization: Bearer ${ADMIN}`]);
    expect(result.code, failures(result.output)).toBe(0);
    expect(orrery.child.exitCode).toBeNull();
  });
});

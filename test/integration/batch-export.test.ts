import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Envelope } from '../../core/envelope.ts';
import { createStager, type Stager } from '../../sinks/batch/stage.ts';
import { serviceEnv, uniqueName, waitFor } from '../helpers/index.ts';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * The batch sink end to end: the real stager writes to day partitions in Postgres, and
 * the real Airflow (test/services/airflow) runs the real DAG with `airflow dags test`,
 * exporting to a "warehouse" that is another schema of the same Postgres.
 */
describe('batch export: staging in Postgres, export by the Airflow DAG', () => {
  const url = serviceEnv('DATABASE_URL');
  const stageSchema = uniqueName('bstage').toLowerCase();
  const whSchema = uniqueName('bwh').toLowerCase();
  const tag = uniqueName('e');
  const db = new pg.Pool({ connectionString: url, max: 3 });
  let stager: Stager;
  let airflowHome: string;
  let airflowEnv: NodeJS.ProcessEnv;
  let venv: string;

  beforeAll(async () => {
    stager = createStager({ connection: url, schema: stageSchema });
    await db.query(`create schema if not exists ${whSchema}`);
    // Cold, this builds the venv (about a minute); warm it only prints its path.
    venv = (await run('bash', [join(ROOT, 'test/services/airflow')], { maxBuffer: 1 << 24, timeout: 1_200_000 })).stdout.trim();
    airflowHome = await mkdtemp(join(tmpdir(), 'orrery-airflow-'));
    const sep = url.includes('?') ? '&' : '?';
    airflowEnv = {
      ...process.env,
      AIRFLOW_HOME: airflowHome,
      AIRFLOW__CORE__DAGS_FOLDER: join(ROOT, 'sinks/batch/dags'),
      AIRFLOW__CORE__LOAD_EXAMPLES: 'False',
      // No __pycache__ left in the work tree by Airflow importing the DAG.
      PYTHONDONTWRITEBYTECODE: '1',
      // The stage schema through the connection's search_path, the warehouse one by name:
      // both ways the DAG supports.
      AIRFLOW_CONN_ORRERY_STAGE: `${url}${sep}options=-csearch_path%3D${stageSchema}`,
      AIRFLOW_CONN_ORRERY_WAREHOUSE: url,
      ORRERY_EXPORT_WAREHOUSE_SCHEMA: whSchema,
      // Small batches, so one run commits several of them.
      ORRERY_EXPORT_BATCH_SIZE: '3',
    };
    await airflow(['db', 'migrate']);
  }, 1_500_000);

  afterAll(async () => {
    await stager?.close();
    await db.query(`drop schema if exists ${stageSchema} cascade`).catch(() => {});
    await db.query(`drop schema if exists ${whSchema} cascade`).catch(() => {});
    await db.end();
    if (airflowHome) await rm(airflowHome, { recursive: true, force: true });
  });

  async function airflow(args: string[]): Promise<string> {
    try {
      const { stdout, stderr } = await run(join(venv, 'bin/airflow'), args, { env: airflowEnv, cwd: ROOT, maxBuffer: 1 << 26, timeout: 300_000 });
      return stdout + stderr;
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string; message: string };
      throw new Error(`airflow ${args.join(' ')} failed: ${e.message}\n${(e.stdout ?? '').slice(-4000)}\n${(e.stderr ?? '').slice(-8000)}`);
    }
  }

  /**
   * One scheduled run. First waits until no transaction older than the staged rows is
   * still open anywhere on the cluster (other test files share it): the DAG leaves rows
   * behind such a transaction for a later run, by design, and the assertions need them now.
   */
  async function runDag(): Promise<void> {
    await waitFor(
      async () => {
        const { rows } = await db.query<{ ok: boolean }>(
          `select coalesce(max(staged_xid), 0) < pg_snapshot_xmin(pg_current_snapshot())::text::bigint as ok from ${stageSchema}.batch_events`,
        );
        return rows[0]?.ok === true;
      },
      { timeoutMs: 60_000, what: 'older transactions on the cluster to finish' },
    );
    const out = await airflow(['dags', 'test', 'orrery_export']);
    expect(out).toMatch(/state=success/);
  }

  function event(id: string, receivedAt: string, extra: Partial<Envelope> = {}): Envelope {
    return {
      v: 1,
      sourceId: 'web',
      type: 'track',
      messageId: `${tag}-${id}`,
      event: 'Order Completed',
      userId: `user-${id}`,
      properties: { id, total: 42.5, note: 'comma, "quotes"\nand a newline' },
      context: { library: { name: 'test' } },
      timestamp: receivedAt,
      receivedAt,
      ...extra,
    };
  }

  const keysOf = (rows: Array<{ message_id: string; received_day: string }>) => rows.map((r) => `${r.message_id}@${r.received_day}`).sort();

  async function staged() {
    const { rows } = await db.query<{ message_id: string; received_day: string; stage_seq: string }>(
      `select message_id, received_day::text, stage_seq from ${stageSchema}.batch_events order by stage_seq`,
    );
    return rows;
  }

  async function warehouse() {
    const { rows } = await db.query<{ message_id: string; received_day: string; exported_at: Date; payload: Envelope; properties: unknown; stage_seq: string }>(
      `select message_id, received_day::text, exported_at, payload, properties, stage_seq from ${whSchema}.warehouse_events order by stage_seq`,
    );
    return rows;
  }

  async function watermark() {
    const { rows } = await db.query<{ last_xid: string; last_seq: string; rows_exported: string }>(
      `select last_xid, last_seq, rows_exported from ${whSchema}.export_watermarks`,
    );
    return rows;
  }

  it('stages into day partitions with COPY, skipping duplicates; the DAG exports new rows once', async () => {
    // Two UTC days, and a duplicate messageId (same receivedAt, as a bus redelivery has).
    const first = [
      event('a', '2024-03-01T10:00:00.000Z'),
      event('b', '2024-03-01T23:59:59.999Z'),
      event('c', '2024-03-02T00:00:00.000Z'),
      event('a', '2024-03-01T10:00:00.000Z', { properties: { redelivered: true } }),
      event('d', '2024-03-02T08:30:00.000+02:00'), // 06:30 UTC: still March 2nd
    ];
    expect(await stager.stage(first)).toEqual({ inserted: 4 });
    expect(await stager.stage([first[0]!, first[2]!])).toEqual({ inserted: 0 });
    expect(await stager.partitions()).toEqual(['2024-03-01', '2024-03-02']);
    const { rows: parts } = await db.query<{ name: string; n: string }>(
      `select tableoid::regclass::text as name, count(*) as n from ${stageSchema}.batch_events group by 1 order by 1`,
    );
    expect(parts).toEqual([
      { name: `${stageSchema}.batch_events_p20240301`, n: '2' },
      { name: `${stageSchema}.batch_events_p20240302`, n: '2' },
    ]);
    const afterFirst = await staged();
    expect(keysOf(afterFirst)).toEqual([`${tag}-a@2024-03-01`, `${tag}-b@2024-03-01`, `${tag}-c@2024-03-02`, `${tag}-d@2024-03-02`]);
    const { rows: kept } = await db.query<{ properties: unknown }>(`select properties from ${stageSchema}.batch_events where message_id = $1`, [`${tag}-a`]);
    expect(kept[0]?.properties).toEqual(first[0]!.properties);

    // Run 1: the warehouse holds exactly the staged rows.
    await runDag();
    const run1 = await warehouse();
    expect(keysOf(run1)).toEqual(keysOf(afterFirst));
    expect(run1.find((r) => r.message_id === `${tag}-b`)?.payload).toEqual(first[1]);
    expect(run1.find((r) => r.message_id === `${tag}-b`)?.properties).toEqual(first[1]!.properties);
    expect(await watermark()).toEqual([{ last_xid: expect.any(String), last_seq: afterFirst.at(-1)!.stage_seq, rows_exported: '4' }]);

    // Run 2: new rows (one on a new day, one a redelivery the stager skips) and only those are added.
    const second = [event('e', '2024-03-02T12:00:00.000Z'), event('f', '2024-03-03T01:00:00.000Z'), first[1]!];
    expect(await stager.stage(second)).toEqual({ inserted: 2 });
    expect(await stager.partitions()).toEqual(['2024-03-01', '2024-03-02', '2024-03-03']);
    await runDag();
    const run2 = await warehouse();
    expect(keysOf(run2)).toEqual(keysOf(await staged()));
    expect(run2).toHaveLength(6);
    // The rows of run 1 were not written again.
    for (const r of run1) expect(run2.find((x) => x.message_id === r.message_id)?.exported_at).toEqual(r.exported_at);

    // Run 3: nothing new, nothing changes.
    const mark = await watermark();
    await runDag();
    expect(await warehouse()).toEqual(run2);
    expect(await watermark()).toEqual(mark);
  }, 600_000);

  it('a row that commits after later rows were exported is still exported (no watermark skip)', async () => {
    const before = await warehouse();
    // A staging transaction takes its stage_seq, and stays open...
    const late = await db.connect();
    try {
      await late.query('begin');
      const lateEvent = event('late', '2024-03-03T05:00:00.000Z');
      const { rows } = await late.query<{ stage_seq: string }>(
        `insert into ${stageSchema}.batch_events (source_id, message_id, type, received_at, received_day, payload)
         values ($1, $2, 'track', $3, '2024-03-03', $4) returning stage_seq`,
        [lateEvent.sourceId, lateEvent.messageId, lateEvent.receivedAt, JSON.stringify(lateEvent)],
      );
      const lateSeq = BigInt(rows[0]!.stage_seq);
      // ...while another one stages a later row and commits.
      expect(await stager.stage([event('g', '2024-03-03T06:00:00.000Z')])).toEqual({ inserted: 1 });
      const { rows: g } = await db.query<{ stage_seq: string }>(`select stage_seq from ${stageSchema}.batch_events where message_id = $1`, [`${tag}-g`]);
      expect(BigInt(g[0]!.stage_seq)).toBeGreaterThan(lateSeq);

      // A run now must not export g: a `stage_seq > watermark` exporter would, and then
      // skip the late row forever. (No wait for the horizon here: it is held back on purpose.)
      const out = await airflow(['dags', 'test', 'orrery_export']);
      expect(out).toMatch(/state=success/);
      expect(await warehouse()).toEqual(before);
      await late.query('commit');
    } finally {
      late.release();
    }

    await runDag();
    const after = await warehouse();
    expect(keysOf(after)).toEqual(keysOf(await staged()));
    expect(after.map((r) => r.message_id).slice(before.length).sort()).toEqual([`${tag}-g`, `${tag}-late`]);
  }, 600_000);
});

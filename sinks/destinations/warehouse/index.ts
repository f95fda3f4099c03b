import { z } from 'zod';
import type { Stager } from '../../batch/stage.ts';
import { DEFAULT_STAGE_TABLE } from '../../batch/stage-table.ts';
import { DeliveryError, urlPattern, type DestinationModule } from '../types.ts';

/**
 * The batch sink: stages events into Postgres (day partitions, COPY, idempotent on
 * messageId), from which the Airflow DAG in sinks/batch/dags/ exports to the warehouse.
 * The connection usually comes from the environment: `databaseUrl: ${DATABASE_URL}`.
 */
const Config = z.object({
  databaseUrl: z.url({ protocol: /^postgres(ql)?$/ }).meta({ pattern: urlPattern('postgres(?:ql)?', '[A-Za-z0-9.-]+') }),
  schema: z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/).optional(),
  table: z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/).default(DEFAULT_STAGE_TABLE),
});
export type WarehouseConfig = z.infer<typeof Config>;

// One stager (and pool) per target, shared by the batches of a destination's worker. The
// stager, with pg and pg-copy-streams, is loaded by the first batch: a sinks process with
// no warehouse destination never loads them.
const stagers = new Map<string, Promise<Stager>>();

function stagerFor(config: WarehouseConfig): Promise<Stager> {
  const key = `${config.databaseUrl}|${config.schema ?? ''}|${config.table}`;
  let stager = stagers.get(key);
  if (!stager) {
    stager = import('../../batch/stage.ts').then(({ createStager }) =>
      createStager({ connection: config.databaseUrl, table: config.table, ...(config.schema ? { schema: config.schema } : {}) }),
    );
    stagers.set(key, stager);
  }
  return stager;
}

const warehouse: DestinationModule<WarehouseConfig> = {
  type: 'warehouse',
  displayName: 'Warehouse',
  configSchema: Config as unknown as z.ZodType<WarehouseConfig>,
  // Large batches: COPY costs the same two round trips whatever the size.
  maxBatchSize: 5_000,
  async deliver(events, config) {
    try {
      await (await stagerFor(config)).stage(events);
    } catch (err) {
      throw new DeliveryError(`staging failed: ${(err as Error).message}`, { retriable: (err as { retriable?: boolean }).retriable ?? true, cause: err });
    }
  },
};
export default warehouse;

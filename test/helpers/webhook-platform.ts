import { createPgStore } from '../../core/store/pg.ts';
import { realServicesEnv, webToHookConfig } from './process.ts';

export const WEBHOOK_WRITE_KEY = 'sink-test-key';

/**
 * The env (and config dir) of one `orrery start` process, ingest → router → sinks on the
 * real Kafka, Redis and Postgres, with source `web` routed to a webhook destination `hook`
 * at `receiverUrl` (allowPrivateNetwork). Topics, groups and schema are unique to the call.
 */
export async function webhookPlatform(receiverUrl: string, extraEnv: Record<string, string> = {}) {
  const dir = await webToHookConfig('sinks', WEBHOOK_WRITE_KEY, receiverUrl);
  const env: Record<string, string> = { ...realServicesEnv(dir, 'sk'), KAFKA_TOPIC_PARTITIONS: '3', ...extraEnv };
  return { env, dir };
}

/** POSTs a /v1/batch with the platform's write key; throws unless ingest answers 200. */
export async function sendBatch(url: string, events: object[]): Promise<void> {
  const res = await fetch(`${url}/v1/batch`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Basic ${btoa(`${WEBHOOK_WRITE_KEY}:`)}` },
    body: JSON.stringify({ batch: events }),
  });
  if (res.status !== 200) throw new Error(`ingest answered ${res.status}: ${await res.text()}`);
}

/** Dead letters in the platform's schema (0 before the table exists). */
export async function deadLetterCount(env: Record<string, string>): Promise<number> {
  const store = createPgStore({ url: env.DATABASE_URL!, schema: env.DATABASE_SCHEMA! });
  try {
    return Number((await store.query<{ n: string }>('select count(*) as n from sink_dead_letters').catch(() => ({ rows: [{ n: '0' }] }))).rows[0]!.n);
  } finally {
    await store.close();
  }
}

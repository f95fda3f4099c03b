import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/index.ts';
import { startOrrery, type OrreryProcess } from '../helpers/process.ts';

/**
 * The issue's acceptance, as a new user would go through it: `orrery start` on a machine
 * with none of the real services in its environment and an empty data dir. It prints a
 * curl line; the event it sends is acknowledged; the process dies by SIGKILL right after
 * the 2xx; after a restart the event has been delivered to the demo webhook and Pilot shows
 * it.
 */
const SERVICES = ['KAFKA_BROKERS', 'DATABASE_URL', 'REDIS_URL', 'KUBECONFIG', 'ORRERY_CONFIG', 'DATABASE_SCHEMA'];
const TOKEN = 'first-start-admin-token-0123456789';

interface Printed {
  key: string;
  body: Record<string, unknown>;
  url: string;
}

/** The demo banner's curl line (the one with a write key), taken apart: `-u 'KEY:'`, `-d 'JSON'`, then the URL. */
function parseCurl(stderr: string): Printed | undefined {
  const line = stderr.split('\n').find((l) => l.trim().startsWith('curl ') && l.includes(' -u '));
  if (!line) return undefined;
  const m = /-u '([^':]+):' .* -d '(\{.*\})' (http:\/\/\S+)$/.exec(line.trim());
  if (!m) throw new Error(`unexpected curl line: ${line}`);
  return { key: m[1]!, body: JSON.parse(m[2]!) as Record<string, unknown>, url: m[3]! };
}

describe('first start, as a new user', () => {
  const procs: OrreryProcess[] = [];
  const dirs: string[] = [];
  afterEach(async () => {
    await Promise.all(procs.splice(0).map((p) => p.stop()));
    await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
  });

  it('prints a curl line whose event, acknowledged just before a SIGKILL, is delivered to the demo webhook and shown in Pilot after a restart', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'orrery-first-start-'));
    dirs.push(dir);
    const env = { ORRERY_DATA_DIR: join(dir, 'data'), PILOT_ADMIN_TOKEN: TOKEN };

    const first = await startOrrery(['start'], env, { without: SERVICES });
    procs.push(first);
    const printed = await waitFor(() => parseCurl(first.stderr()), { timeoutMs: 30_000, what: 'the demo curl line on stderr' });
    expect(first.stderr()).toContain('first start: created a demo source');
    expect(printed.url).toBe(`${first.url}/v1/track`);
    const messages = first.logs.map((l) => String(l.msg));
    expect(messages).toContain(`store: embedded SQLite at ${join(dir, 'data', 'store.sqlite')} (default; set DATABASE_URL for PostgreSQL)`);
    expect(messages.some((m) => m.startsWith('bus: embedded log in SQLite'))).toBe(true);

    // What the curl line sends, with a messageId of our own to find it by.
    const messageId = `first-start-${randomUUID()}`;
    const res = await fetch(printed.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Basic ${btoa(`${printed.key}:`)}` },
      body: JSON.stringify({ ...printed.body, messageId }),
    });
    expect(res.status).toBe(200);
    await first.kill();
    // Logs never hold write keys; the key went to stderr only.
    expect(JSON.stringify(first.logs)).not.toContain(printed.key);

    const second = await startOrrery(['start'], env, { without: SERVICES, port: first.port });
    procs.push(second);
    // Not set up again: the same key, printed again because it still works.
    const again = await waitFor(() => parseCurl(second.stderr()), { timeoutMs: 30_000, what: 'the curl line again' });
    expect(again.key).toBe(printed.key);
    expect(second.stderr()).toContain('the demo source is still set up');

    const pilot = (path: string) => fetch(`${second.url}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
    const delivered = await waitFor(
      async () => {
        const body = (await (await pilot('/api/demo/deliveries')).json()) as { deliveries: Array<{ events: Array<Record<string, unknown>> }> };
        return body.deliveries.flatMap((d) => d.events).find((e) => e.messageId === messageId);
      },
      { timeoutMs: 60_000, what: 'the event in the demo webhook, shown by Pilot' },
    );
    expect(delivered).toMatchObject({ type: 'track', event: 'Demo Event', userId: 'demo-user', sourceId: 'demo', properties: { hello: 'world' } });

    // Pilot's config view shows the demo as the first start set it up.
    const config = (await (await pilot('/api/config')).json()) as Record<string, unknown>;
    expect(JSON.stringify(config)).toContain('demo-webhook');
    expect((await fetch(`${second.url}/api/demo/deliveries`)).status).toBe(401);

    // Whoever reaches the port cannot make Pilot show a forged "delivered" event: the demo
    // receiver takes only posts signed by the demo destination.
    const forgedId = `forged-${randomUUID()}`;
    const forged = await fetch(`${second.url}/pilot/demo-webhook`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'webhook-id': forgedId },
      body: JSON.stringify({ messageId: forgedId, type: 'track', event: 'Forged' }),
    });
    expect(forged.status).toBe(401);
    expect(await forged.json()).toMatchObject({ success: false, code: 'missing_signature' });
    const shown = (await (await pilot('/api/demo/deliveries')).json()) as { deliveries: Array<{ events: Array<Record<string, unknown>> }> };
    expect(JSON.stringify(shown)).not.toContain(forgedId);
    const { refusals } = (await (await pilot('/api/webhooks/refusals')).json()) as { refusals: Array<Record<string, unknown>> };
    expect(refusals).toContainEqual(expect.objectContaining({ receiver: 'pilot/demo-webhook', reason: 'missing_signature', count: 1 }));
  });
});

import type { Envelope } from '../../core/envelope.ts';
import { webhookPayload } from '../../sinks/destinations/webhook/index.ts';
import { childConfig, serveCommands } from '../lib/child.ts';
import { routedRecords } from '../lib/events.ts';
import { nowMs } from '../lib/stats.ts';

/**
 * Baseline for sink-webhook: a bare `fetch` loop posting the same events (the webhook's
 * payload of the same envelopes, the same headers) to the same receiver, `concurrency`
 * requests at a time: the delivery limit of Node's fetch against that receiver.
 */
interface Config {
  url: string;
}
const cfg = childConfig<Config>();

async function run(tag: string, count: number, concurrency: number) {
  const events = routedRecords(tag, 0, count).map((r) => JSON.parse(r.value) as Envelope);
  const headers = { 'content-type': 'application/json', 'user-agent': 'orrery-webhook/1' };
  let next = 0;
  let errors = 0;
  const started = nowMs();
  const loop = async () => {
    while (next < events.length) {
      const e = events[next++]!;
      try {
        const res = await fetch(cfg.url, { method: 'POST', headers, body: JSON.stringify(webhookPayload(e)) });
        await res.arrayBuffer();
        if (!res.ok) errors++;
      } catch {
        errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  return { ms: nowMs() - started, errors };
}

serveCommands({ pid: process.pid }, (c) => {
  if (c.cmd === 'run') return run(String(c.tag), Number(c.count), Number(c.concurrency));
  throw new Error(`unknown command ${c.cmd}`);
});

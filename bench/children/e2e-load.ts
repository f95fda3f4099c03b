import { Pool } from 'undici';
import { childConfig, serveCommands } from '../lib/child.ts';
import { AUTH_HEADER, inbound, USERS } from '../lib/events.ts';
import { nowMs, sleep } from '../lib/stats.ts';

/**
 * Load generator of e2e-latency: POST /v1/track at a fixed rate (not a fixed concurrency:
 * the rate is the experiment), each event carrying its send time in
 * `properties.sentAtMs`; it records when each 2xx came back. At most `maxInflight`
 * requests are open at once; when ingest falls behind, sends queue (and the rate actually
 * held is reported).
 */
interface Config {
  url: string;
}
const cfg = childConfig<Config>();
const origin = new URL(cfg.url).origin;
const pool = new Pool(origin, { connections: 64 });
const headers = { 'content-type': 'application/json', authorization: AUTH_HEADER };

async function run(tag: string, rate: number, seconds: number, maxInflight = 1000) {
  const total = Math.round(rate * seconds);
  const sendT = new Float64Array(total);
  const ackT = new Float64Array(total).fill(-1);
  const status = new Int16Array(total);
  let sent = 0;
  let inflight = 0;
  let done = 0;
  const started = nowMs();
  const hardStop = started + (seconds + 30) * 1000;
  const fire = (i: number) => {
    const t = nowMs();
    sendT[i] = t;
    inflight++;
    const body = JSON.stringify(inbound(`${tag}-${i}`, `${tag}-user-${i % USERS}`, i, { sentAtMs: t }));
    pool
      .request({ path: '/v1/track', method: 'POST', headers, body })
      .then(async (res) => {
        await res.body.text();
        status[i] = res.statusCode;
        if (res.statusCode < 300) ackT[i] = nowMs();
      })
      .catch(() => {
        status[i] = -1;
      })
      .finally(() => {
        inflight--;
        done++;
      });
  };
  while (sent < total && nowMs() < hardStop) {
    const due = Math.min(total, Math.floor(((nowMs() - started) / 1000) * rate));
    while (sent < due && inflight < maxInflight) fire(sent++);
    await sleep(1);
  }
  const sendEnded = nowMs();
  while (done < sent && nowMs() < hardStop) await sleep(5);
  let ok = 0;
  for (let i = 0; i < sent; i++) if (ackT[i]! >= 0) ok++;
  return {
    total,
    sent,
    ok,
    sendSeconds: (sendEnded - started) / 1000,
    sendT: Array.from(sendT.subarray(0, sent)),
    ackT: Array.from(ackT.subarray(0, sent)),
    statuses: [...new Set(status.subarray(0, sent))],
  };
}

serveCommands({ pid: process.pid }, (c) => {
  if (c.cmd === 'run') return run(String(c.tag), Number(c.rate), Number(c.seconds));
  throw new Error(`unknown command ${c.cmd}`);
});

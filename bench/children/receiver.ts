import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { childConfig, onStop, serveCommands } from '../lib/child.ts';
import { nowMs } from '../lib/stats.ts';

/**
 * The webhook destination of sink-webhook, e2e-latency and memory: a bare node:http server
 * answering 200 `{"ok":true}` to every POST, counting events (a JSON array body counts its
 * items) and the time of the first and the last. With `record`, it also keeps each
 * event's messageId and arrival time (for end-to-end latency). Orrery's sinks and the
 * bare fetch baseline post to the same receiver. It also counts the connections that
 * carried requests: a keep-alive client (undici) opens one per request it has open at
 * once, so that count is the client's concurrency.
 */
interface Config {
  record: boolean;
}
const cfg = childConfig<Config>();
const OK = '{"ok":true}';
let requests = 0;
let events = 0;
let first = 0;
let last = 0;
let inflight = 0;
let maxInflight = 0;
/** Connections that carried a request since the last reset: a keep-alive client opens one per request it has open at once, so this is its concurrency. */
let sockets = new WeakSet<object>();
let connections = 0;
let receipts: Record<string, number> = {};

const server = createServer((req, res) => {
  if (!sockets.has(req.socket)) {
    sockets.add(req.socket);
    connections++;
  }
  inflight++;
  if (inflight > maxInflight) maxInflight = inflight;
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const t = nowMs();
    const body = Buffer.concat(chunks);
    requests++;
    let n = 1;
    if (body[0] === 0x5b /* [ */ || cfg.record) {
      try {
        const parsed = JSON.parse(body.toString('utf8')) as { messageId?: string } | Array<{ messageId?: string }>;
        const list = Array.isArray(parsed) ? parsed : [parsed];
        n = list.length;
        if (cfg.record) for (const e of list) if (e.messageId) receipts[e.messageId] ??= t;
      } catch {
        // counted as one
      }
    }
    if (events === 0) first = t;
    events += n;
    last = t;
    inflight--;
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': OK.length });
    res.end(OK);
  });
});
server.keepAliveTimeout = 30_000;
server.listen(0, '127.0.0.1', () => {
  serveCommands({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/collect` }, (c) => {
    if (c.cmd === 'stats') return { requests, events, first, last, maxInflight, connections };
    if (c.cmd === 'reset') {
      requests = events = first = last = maxInflight = connections = 0;
      sockets = new WeakSet();
      receipts = {};
      return null;
    }
    if (c.cmd === 'receipts') return receipts;
    throw new Error(`unknown command ${c.cmd}`);
  });
});
onStop(() => new Promise<void>((r) => server.close(() => r())));

import { createServer, type Server } from 'node:http';
import { once } from 'node:events';

export interface Receipt {
  status: number;
  body: unknown;
  headers: Record<string, string | string[] | undefined>;
}

/**
 * A local HTTP destination for tests: records every request with the status it answered.
 * `respond` decides the status per call (default 200), from the call's number and body; `delayMs` slows each answer; `port`
 * listens where a destination already points (a receiver coming back after an outage).
 */
export async function startReceiver(opts: { respond?: (call: number, body: unknown) => number; delayMs?: number; port?: number } = {}) {
  const receipts: Receipt[] = [];
  let calls = 0;
  const state = { respond: opts.respond ?? (() => 200), delayMs: opts.delayMs ?? 0 };
  const server: Server = createServer((req, res) => {
    let text = '';
    req.on('data', (c) => (text += c));
    req.on('end', () => {
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        // kept as text
      }
      const status = state.respond(++calls, body);
      const answer = () => {
        receipts.push({ status, body, headers: req.headers });
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(status < 300 ? '{"ok":true}' : '{"error":"unavailable"}');
      };
      if (state.delayMs > 0) setTimeout(answer, state.delayMs);
      else answer();
    });
  });
  server.listen(opts.port ?? 0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/collect`;
  return {
    url,
    receipts,
    state,
    /** Bodies of the calls answered 2xx. */
    accepted: () => receipts.filter((r) => r.status < 300).map((r) => r.body as Record<string, unknown>),
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

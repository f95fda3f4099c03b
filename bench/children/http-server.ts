import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { onStop, serveCommands } from '../lib/child.ts';

/**
 * Baseline for ingest-track: bare node:http that reads the body and answers 200
 * `{"success":true}`: the ceiling of any Node HTTP server on this machine.
 */
const BODY = '{"success":true}';
const server = createServer((req, res) => {
  req.on('data', () => {});
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': BODY.length });
    res.end(BODY);
  });
});
server.listen(0, '127.0.0.1', () => serveCommands({ port: (server.address() as AddressInfo).port }, () => null));
onStop(() => new Promise<void>((r) => server.close(() => r())));

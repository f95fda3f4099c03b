import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import type { AddressInfo } from 'node:net';
import { onStop, serveCommands } from '../lib/child.ts';

/**
 * Baseline for ingest-track: a bare Hono app on @hono/node-server (what Orrery's ingest is
 * built on) that reads the body, as ingest does, and answers 200 `{"success":true}`.
 */
const app = new Hono();
app.post('*', async (c) => {
  await c.req.text();
  return c.json({ success: true });
});
const server = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, (info: AddressInfo) => {
  serveCommands({ port: info.port }, () => null);
});
onStop(() => new Promise<void>((r) => server.close(() => r())));

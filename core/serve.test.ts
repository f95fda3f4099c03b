import { connect } from 'node:net';
import { once } from 'node:events';
import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { createLogger } from './logger.ts';
import { listen, unmatchedRoutes } from './serve.ts';

/** Sends `head` then `body` a byte at a time every `everyMs`, and returns all the server answered once it closes. */
async function trickle(port: number, head: string, body: string, everyMs: number): Promise<string> {
  const socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  let answer = '';
  socket.on('data', (d) => (answer += d.toString()));
  socket.on('error', () => {});
  socket.write(head);
  let i = 0;
  const timer = setInterval(() => {
    if (i < body.length && !socket.destroyed) socket.write(body[i++]!);
  }, everyMs);
  await once(socket, 'close');
  clearInterval(timer);
  return answer;
}

describe('listen: slow clients', () => {
  const logger = createLogger({ level: 'silent' });

  it('answers 408 and closes a request whose body trickles in past the request timeout (slowloris)', async () => {
    const server = await listen({ fetch: async (req) => new Response(await req.text()), host: '127.0.0.1', port: 0, logger, requestTimeoutMs: 400, headersTimeoutMs: 300 });
    try {
      const body = '{"userId":"u","event":"slow"}';
      const answer = await trickle(server.port, `POST /v1/track HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n`, body, 100);
      expect(answer).toMatch(/^HTTP\/1\.1 408/);
    } finally {
      await server.close();
    }
  });

  it('answers 408 to headers that never end', async () => {
    const server = await listen({ fetch: () => new Response('ok'), host: '127.0.0.1', port: 0, logger, requestTimeoutMs: 400, headersTimeoutMs: 300 });
    try {
      const answer = await trickle(server.port, 'GET /healthz HTTP/1.1\r\n', 'x-slow: ' + 'a'.repeat(200), 50);
      expect(answer).toMatch(/^HTTP\/1\.1 408/);
    } finally {
      await server.close();
    }
  });

  it('serves a request that arrives in time', async () => {
    const server = await listen({ fetch: async (req) => new Response(`got ${(await req.text()).length}`), host: '127.0.0.1', port: 0, logger, requestTimeoutMs: 5_000 });
    try {
      const res = await fetch(`http://127.0.0.1:${server.port}/`, { method: 'POST', body: 'x'.repeat(1000) });
      expect(await res.text()).toBe('got 1000');
    } finally {
      await server.close();
    }
  });
});

describe('unmatchedRoutes', () => {
  const app = new Hono();
  app.use('/v1/*', async (_c, next) => next());
  app.post('/v1/track', (c) => c.text('ok'));
  app.get('/v1/pixel/:type', (c) => c.text('gif'));
  app.put('/api/items/:id{[0-9]+}', (c) => c.text('put'));
  app.delete('/api/items/:id{[0-9]+}', (c) => c.text('deleted'));
  app.notFound(unmatchedRoutes(app));

  it('answers 405 with Allow for a path served with other methods', async () => {
    const res = await app.request('/v1/track', { method: 'PATCH' });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('POST');
    expect(await res.json()).toMatchObject({ success: false, code: 'method_not_allowed' });
    const pixel = await app.request('/v1/pixel/track', { method: 'POST' });
    expect(pixel.status).toBe(405);
    expect(pixel.headers.get('allow')).toBe('GET, HEAD');
    const item = await app.request('/api/items/42', { method: 'GET' });
    expect(item.headers.get('allow')).toBe('DELETE, PUT');
  });

  it('answers 404 where no route has the path, whatever its method', async () => {
    for (const [path, method] of [['/v1/nothing', 'POST'], ['/api/items/abc', 'PUT'], ['/', 'GET']] as const) {
      const res = await app.request(path, { method });
      expect(res.status, `${method} ${path}`).toBe(404);
      expect(await res.json()).toMatchObject({ success: false, code: 'not_found' });
    }
  });

  it('leaves matched routes alone', async () => {
    expect(await (await app.request('/v1/track', { method: 'POST' })).text()).toBe('ok');
  });
});

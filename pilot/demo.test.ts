import { appendFile, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createDemoReceiver } from './demo.ts';

const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

async function tempFile(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'orrery-demo-'));
  dirs.push(dir);
  return join(dir, 'pilot', 'demo-deliveries.jsonl');
}

function post(receiver: Awaited<ReturnType<typeof createDemoReceiver>>, body: unknown, id?: string) {
  return receiver.routes.request('/pilot/demo-webhook', {
    method: 'POST',
    body: JSON.stringify(body),
    headers: { 'content-type': 'application/json', ...(id ? { 'webhook-id': id } : {}) },
  });
}

describe('demo receiver', () => {
  it('keeps deliveries in its file across a restart, seq continuing, the file private', async () => {
    const file = await tempFile();
    const first = await createDemoReceiver({ file, now: () => 1 });
    expect((await post(first, { messageId: 'a' }, 'a')).status).toBe(200);
    expect((await post(first, [{ messageId: 'b' }, { messageId: 'c' }])).status).toBe(200);
    expect((await stat(file)).mode & 0o777).toBe(0o600);

    const again = await createDemoReceiver({ file, now: () => 2 });
    expect(again.list()).toEqual([
      { seq: 1, at: 1, webhookId: 'a', events: [{ messageId: 'a' }] },
      { seq: 2, at: 1, webhookId: null, events: [{ messageId: 'b' }, { messageId: 'c' }] },
    ]);
    await post(again, { messageId: 'd' });
    expect(again.list(2).map((d) => d.seq)).toEqual([3]);
  });

  it('skips a torn last line, and the next delivery is not glued to it', async () => {
    const file = await tempFile();
    const first = await createDemoReceiver({ file });
    await post(first, { messageId: 'a' });
    await appendFile(file, '{"seq":2,"at":1,"webhookId":nu');
    const again = await createDemoReceiver({ file });
    expect(again.list().map((d) => d.seq)).toEqual([1]);
    await post(again, { messageId: 'b' });
    const third = await createDemoReceiver({ file });
    expect(third.list().map((d) => (d.events[0] as { messageId: string }).messageId)).toEqual(['a', 'b']);
  });

  it('keeps the newest `keep`, and rewrites the file before it grows past twice that', async () => {
    const file = await tempFile();
    const receiver = await createDemoReceiver({ file, keep: 3 });
    for (let i = 1; i <= 8; i++) await post(receiver, { i });
    expect(receiver.list().map((d) => d.seq)).toEqual([6, 7, 8]);
    const lines = (await readFile(file, 'utf8')).trim().split('\n');
    expect(lines.length).toBeLessThanOrEqual(6);
    expect((await createDemoReceiver({ file, keep: 3 })).list().map((d) => d.seq)).toEqual([6, 7, 8]);
  });

  it('without a file, keeps them in memory', async () => {
    const receiver = await createDemoReceiver();
    await post(receiver, { messageId: 'a' });
    expect(receiver.list()).toHaveLength(1);
  });
});

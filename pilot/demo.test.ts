import { appendFile, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { standardWebhookHeaders } from '../core/auth.ts';
import { createLogger } from '../core/logger.ts';
import { createRefusalLog } from '../core/refusals.ts';
import { createDemoReceiver } from './demo.ts';

const SECRET = `whsec_${Buffer.from('demo-receiver-secret-0123').toString('base64')}`;
const secrets = () => [SECRET];

const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

async function tempFile(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'orrery-demo-'));
  dirs.push(dir);
  return join(dir, 'pilot', 'demo-deliveries.jsonl');
}

/** A post signed as the webhook destination signs, at `nowMs` (the receiver's clock). */
function post(receiver: Awaited<ReturnType<typeof createDemoReceiver>>, body: unknown, id = 'msg-1', nowMs = Date.now(), secret = SECRET) {
  const text = JSON.stringify(body);
  return receiver.routes.request('/pilot/demo-webhook', {
    method: 'POST',
    body: text,
    headers: { 'content-type': 'application/json', ...standardWebhookHeaders(secret, id, text, nowMs) },
  });
}

describe('demo receiver', () => {
  it('keeps deliveries in its file across a restart, seq continuing, the file private', async () => {
    const file = await tempFile();
    const first = await createDemoReceiver({ file, now: () => 1, secrets });
    expect((await post(first, { messageId: 'a' }, 'a', 1)).status).toBe(200);
    expect((await post(first, [{ messageId: 'b' }, { messageId: 'c' }], 'b+1', 1)).status).toBe(200);
    expect((await stat(file)).mode & 0o777).toBe(0o600);

    const again = await createDemoReceiver({ file, now: () => 2, secrets });
    expect(again.list()).toEqual([
      { seq: 1, at: 1, webhookId: 'a', events: [{ messageId: 'a' }] },
      { seq: 2, at: 1, webhookId: 'b+1', events: [{ messageId: 'b' }, { messageId: 'c' }] },
    ]);
    await post(again, { messageId: 'd' }, 'd', 2);
    expect(again.list(2).map((d) => d.seq)).toEqual([3]);
  });

  it('skips a torn last line, and the next delivery is not glued to it', async () => {
    const file = await tempFile();
    const first = await createDemoReceiver({ file, secrets });
    await post(first, { messageId: 'a' });
    await appendFile(file, '{"seq":2,"at":1,"webhookId":nu');
    const again = await createDemoReceiver({ file, secrets });
    expect(again.list().map((d) => d.seq)).toEqual([1]);
    await post(again, { messageId: 'b' });
    const third = await createDemoReceiver({ file, secrets });
    expect(third.list().map((d) => (d.events[0] as { messageId: string }).messageId)).toEqual(['a', 'b']);
  });

  it('keeps the newest `keep`, and rewrites the file before it grows past twice that', async () => {
    const file = await tempFile();
    const receiver = await createDemoReceiver({ file, keep: 3, secrets });
    for (let i = 1; i <= 8; i++) await post(receiver, { i });
    expect(receiver.list().map((d) => d.seq)).toEqual([6, 7, 8]);
    const lines = (await readFile(file, 'utf8')).trim().split('\n');
    expect(lines.length).toBeLessThanOrEqual(6);
    expect((await createDemoReceiver({ file, keep: 3, secrets })).list().map((d) => d.seq)).toEqual([6, 7, 8]);
  });

  it('without a file, keeps them in memory', async () => {
    const receiver = await createDemoReceiver({ secrets });
    await post(receiver, { messageId: 'a' });
    expect(receiver.list()).toHaveLength(1);
  });

  it('refuses a forged post (unsigned, signed with another secret, or stale) with 401, shows nothing, and records the refusal', async () => {
    const refusals = createRefusalLog({ logger: createLogger({ level: 'silent' }) });
    const receiver = await createDemoReceiver({ secrets, refusals });
    const forged = JSON.stringify({ messageId: 'forged', event: 'Order Completed' });
    const unsigned = await receiver.routes.request('/pilot/demo-webhook', { method: 'POST', body: forged, headers: { 'content-type': 'application/json', 'webhook-id': 'x' } });
    expect(unsigned.status).toBe(401);
    expect(await unsigned.json()).toMatchObject({ success: false, code: 'missing_signature' });
    const otherSecret = `whsec_${Buffer.from('not-the-demo-secret-000').toString('base64')}`;
    const wrong = await post(receiver, { messageId: 'forged' }, 'x', Date.now(), otherSecret);
    expect(wrong.status).toBe(401);
    expect(await wrong.json()).toMatchObject({ code: 'bad_signature' });
    const stale = await post(receiver, { messageId: 'forged' }, 'x', Date.now() - 10 * 60_000);
    expect(stale.status).toBe(401);
    expect(await stale.json()).toMatchObject({ code: 'stale_timestamp' });
    expect(receiver.list()).toEqual([]);
    expect(refusals.list().map((r) => [r.receiver, r.reason, r.count])).toEqual(
      expect.arrayContaining([
        ['pilot/demo-webhook', 'missing_signature', 1],
        ['pilot/demo-webhook', 'bad_signature', 1],
        ['pilot/demo-webhook', 'stale_timestamp', 1],
      ]),
    );
  });

  it('refuses every post while no destination posting to it has a secret', async () => {
    const receiver = await createDemoReceiver({ secrets: () => [] });
    expect((await post(receiver, { messageId: 'a' })).status).toBe(401);
    expect(receiver.list()).toEqual([]);
  });
});

import { HttpResponse } from 'msw';
import { describe, expect, it } from 'vitest';
import type { Envelope } from '../../../core/envelope.ts';
import { ctx, envelope, failure, NOW, vendorApi } from '../testkit.ts';
import slack, { escapeSlack, render, type SlackConfig } from './index.ts';

const HOOK = 'https://hooks.slack.com/services/T000/B000/XXXXXXXX';
const config: SlackConfig = slack.configSchema.parse({ webhookUrl: HOOK });

const vendor = vendorApi<{ text: string }>();
const seen = vendor.seen;
const accept = (answer: () => Response = () => HttpResponse.text('ok')) => vendor.accept(HOOK, answer);

const track = (over: Partial<Envelope> = {}) => envelope({ type: 'track', event: 'Signed Up', ...over });

describe('slack templates', () => {
  it('substitutes dotted paths, renders missing values empty and objects as JSON', () => {
    const e = track({ properties: { plan: 'pro', seats: 3, trial: false, addons: ['sso'] }, context: { traits: { email: 'a@example.com' } } });
    expect(render('{{user}} did {{event}}', e)).toBe('user-42 did Signed Up');
    expect(render('{{ properties.plan }}/{{properties.seats}}/{{properties.trial}}/{{properties.addons}}', e)).toBe('pro/3/false/["sso"]');
    expect(render('{{context.traits.email}}|{{properties.missing.deeper}}|{{nope}}', e)).toBe('a@example.com||');
    expect(render('{{user}}', track({ userId: undefined }))).toBe('anon-7');
  });

  it("escapes Slack's control characters in values, not in the template's own markup", () => {
    expect(escapeSlack('a & <b> > c')).toBe('a &amp; &lt;b&gt; &gt; c');
    const e = track({ event: '<!channel> & co', properties: { url: 'https://x.example/?a=1&b=2' } });
    expect(render('*{{event}}* <{{properties.url}}|open>', e)).toBe('*&lt;!channel&gt; &amp; co* <https://x.example/?a=1&amp;b=2|open>');
  });
});

describe('slack destination', () => {
  it('declares its type, name and a batch of at most 10 lines', () => {
    expect(slack.type).toBe('slack');
    expect(slack.displayName).toBe('Slack');
    expect(slack.maxBatchSize).toBe(10);
  });

  it('validates its config: only https://hooks.slack.com/ webhook URLs', () => {
    expect(config).toEqual({ webhookUrl: HOOK, template: '{{user}} did {{event}}' });
    for (const webhookUrl of ['http://hooks.slack.com/services/T/B/X', 'https://hooks.slack.com.evil.example/services/T', 'https://example.com/hook', 'not a url']) {
      expect(slack.configSchema.safeParse({ webhookUrl }).success).toBe(false);
    }
    expect(slack.configSchema.safeParse({ webhookUrl: HOOK, events: [] }).success).toBe(false);
    expect(slack.configSchema.safeParse({ webhookUrl: HOOK, channel: '#x' }).success).toBe(false);
  });

  it('posts one message with a line per track event to the webhook URL', async () => {
    accept();
    await slack.deliver(
      [track(), envelope({ type: 'page', name: 'Home' }), track({ userId: undefined, event: 'Viewed Pricing' })],
      config,
      ctx(),
    );
    expect(seen).toHaveLength(1);
    const [req] = seen;
    expect(req?.url.href).toBe(HOOK);
    expect(req?.method).toBe('POST');
    expect(req?.headers.get('content-type')).toBe('application/json');
    expect(req?.headers.get('authorization')).toBeNull();
    expect(req?.body).toEqual({ text: 'user-42 did Signed Up\nanon-7 did Viewed Pricing' });
  });

  it('posts only the events named in `events`, and nothing when none match', async () => {
    accept();
    const only = { ...config, events: ['Order Completed'], template: '{{user}} paid {{properties.total}}' };
    await slack.deliver([track(), track({ event: 'Order Completed', properties: { total: 99 } })], only, ctx());
    expect(seen.map((s) => s.body.text)).toEqual(['user-42 paid 99']);

    await slack.deliver([track(), envelope({ type: 'identify', traits: {} })], only, ctx());
    expect(seen).toHaveLength(1);
  });

  it('keeps a full batch within 4000 characters, cutting long lines without breaking an escape', async () => {
    accept();
    const long = `${'a'.repeat(396)}&&&&`;
    await slack.deliver(
      Array.from({ length: 10 }, () => track({ event: long })),
      { ...config, template: '{{event}}' },
      ctx(),
    );
    const text = seen[0]?.body.text ?? '';
    expect(text.length).toBeLessThanOrEqual(4000);
    const line = text.split('\n')[0] ?? '';
    expect(line).toBe(`${'a'.repeat(396)}…`);
  });

  it('429 with Retry-After is retriable after that delay', async () => {
    accept(() => HttpResponse.text('rate_limited', { status: 429, headers: { 'retry-after': '30' } }));
    const err = await failure(slack.deliver([track()], config, ctx()));
    expect(err).toMatchObject({ retriable: true, httpStatus: 429, retryAfterMs: 30_000 });
  });

  it.each([
    [400, 'invalid_payload'],
    [403, 'action_prohibited'],
    [404, 'no_service'],
    [410, 'channel_is_archived'],
  ])('%i %s is final and keeps the error text', async (status, text) => {
    accept(() => HttpResponse.text(text, { status }));
    const err = await failure(slack.deliver([track()], config, ctx()));
    expect(err).toMatchObject({ retriable: false, httpStatus: status, bodyExcerpt: text });
  });

  it('5xx is retriable', async () => {
    accept(() => HttpResponse.text('rollup_error', { status: 500 }));
    const err = await failure(slack.deliver([track()], config, ctx()));
    expect(err).toMatchObject({ retriable: true, httpStatus: 500 });
  });

  it('a network error is retriable', async () => {
    vendor.accept(HOOK, () => HttpResponse.error());
    const err = await failure(slack.deliver([track()], config, ctx()));
    expect(err.retriable).toBe(true);
  });
});

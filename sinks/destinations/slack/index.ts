/**
 * Slack, through an incoming webhook.
 *
 * Followed: Slack's "Sending messages using incoming webhooks" (api.slack.com/messaging/
 * webhooks, with its "Handling errors" table), "Formatting text" (escaping) and "Rate limits":
 * - POST the webhook URL (https://hooks.slack.com/services/…) with JSON `{ text }`; the URL
 *   is the credential, so it is validated as Slack's and never logged here.
 * - Answers: 200 with the body `ok`; 400 `invalid_payload`/`user_not_found`, 403
 *   `action_prohibited`/`invalid_token`, 404 `channel_not_found`/`no_service`/`no_team`,
 *   410 `channel_is_archived` (all final: the text is kept as the body excerpt); 429 with
 *   Retry-After in seconds; 500 `rollup_error` and other 5xx transient.
 * - Rate: about one message per second per webhook, short bursts allowed. So a batch of up
 *   to 10 events becomes ONE message with a line per event: one request per deliver(), which
 *   also makes a batch all-or-nothing (a retry never reposts half of it).
 * - Text: `&`, `<` and `>` are control characters and must be escaped as `&amp;`, `&lt;`,
 *   `&gt;`. Slack cuts text past 40,000 characters and asks for at most 4,000; each line is
 *   cut to fit 10 lines within 4,000.
 *
 * Which events: track calls only, and only those whose name is in `events` when that list
 * is set; anything else is delivered by not being posted.
 *
 * Template: `{{path}}` is replaced by the value at that dotted path in the event (e.g.
 * `{{properties.plan}}`, `{{context.traits.email}}`), plus `{{user}}` for the userId or else
 * the anonymousId. Substituted values are escaped; the template's own text is the operator's
 * and may use Slack markup (`*bold*`, `<https://…|link>`). A missing value renders empty,
 * objects render as JSON.
 */
import { z } from 'zod';
import type { Envelope } from '../../../core/envelope.ts';
import { send } from '../http.ts';
import { urlPattern, type DestinationModule } from '../types.ts';

const MAX_EVENTS_PER_MESSAGE = 10;
const MAX_TEXT = 4000;
const MAX_LINE = Math.floor(MAX_TEXT / MAX_EVENTS_PER_MESSAGE) - 1;

const DEFAULT_TEMPLATE = '{{user}} did {{event}}';

const SlackConfig = z.strictObject({
  webhookUrl: z.url({
    protocol: /^https$/,
    hostname: /^hooks\.slack\.com$/,
    error: 'expected a Slack incoming webhook URL, https://hooks.slack.com/…',
  }).meta({ pattern: urlPattern('https', 'hooks\\.slack\\.com') }),
  template: z.string().min(1).default(DEFAULT_TEMPLATE),
  /** Track event names to post; absent: every track event. */
  events: z.array(z.string().min(1)).min(1).optional(),
});
export type SlackConfig = z.infer<typeof SlackConfig>;

/** Escapes Slack's three control characters. */
export function escapeSlack(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function lookup(root: unknown, path: string): unknown {
  let v = root;
  for (const key of path.split('.')) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string, unknown>)[key];
  }
  return v;
}

function show(v: unknown): string {
  if (v === undefined || v === null) return '';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  return JSON.stringify(v);
}

/** The template with each `{{path}}` replaced by the event's value there, escaped. */
export function render(template: string, env: Envelope): string {
  const root = { ...env, user: env.userId ?? env.anonymousId };
  return template.replace(/\{\{\s*([^{}\s]+)\s*\}\}/g, (_, path: string) => escapeSlack(show(lookup(root, path))));
}

/** Cuts a line to `max` characters without leaving half an escape sequence at the end. */
function cut(line: string, max: number): string {
  if (line.length <= max) return line;
  return `${line.slice(0, max - 1).replace(/&[a-z]{0,3}$/, '')}…`;
}

/** Slack (incoming webhook): one message per batch, a line per matching track event. */
const slack: DestinationModule<SlackConfig> = {
  type: 'slack',
  displayName: 'Slack',
  configSchema: SlackConfig,
  maxBatchSize: MAX_EVENTS_PER_MESSAGE,

  async deliver(events, config, ctx) {
    const wanted = config.events === undefined ? undefined : new Set(config.events);
    const lines = events
      .filter((env) => env.type === 'track' && env.event !== undefined && (wanted === undefined || wanted.has(env.event)))
      .map((env) => cut(render(config.template, env), MAX_LINE));
    if (lines.length === 0) return;
    await send(
      ctx.fetch,
      config.webhookUrl,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ text: lines.join('\n') }),
        signal: ctx.signal,
      },
      ctx.now(),
      'Slack',
    );
  },
};

export default slack;

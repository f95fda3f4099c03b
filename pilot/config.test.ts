import { describe, expect, it } from 'vitest';
import { pilotConfigFrom } from './config.ts';

describe('pilotConfigFrom', () => {
  it('has defaults for everything but the token and the webhook; empty values count as unset', () => {
    const cfg = pilotConfigFrom({ PILOT_ADMIN_TOKEN: '', PILOT_ALERT_WEBHOOK: '' });
    expect(cfg.adminToken).toBeUndefined();
    expect(cfg.alertWebhook).toBeUndefined();
    expect(cfg.alerts).toEqual({ intervalMs: 15_000, windowMs: 300_000, forMs: 60_000, failureRate: 0.5, minAttempts: 5, consumerLag: 10_000 });
    expect(cfg.sampleMs).toBe(5_000);
  });

  it('reads and coerces the variables', () => {
    const cfg = pilotConfigFrom({ PILOT_ADMIN_TOKEN: 'a'.repeat(20), PILOT_ALERT_WEBHOOK: 'https://hooks.slack.com/services/T/B/x', PILOT_ALERT_FOR_MS: '0', PILOT_ALERT_FAILURE_RATE: '0.2' });
    expect(cfg).toMatchObject({ adminToken: 'a'.repeat(20), alertWebhook: 'https://hooks.slack.com/services/T/B/x', alerts: { forMs: 0, failureRate: 0.2 } });
  });

  it('names the variable of a bad value', () => {
    expect(() => pilotConfigFrom({ PILOT_ADMIN_TOKEN: 'short' })).toThrow(/PILOT_ADMIN_TOKEN: use at least 16 characters/);
    expect(() => pilotConfigFrom({ PILOT_ALERT_WEBHOOK: 'ftp://x' })).toThrow(/PILOT_ALERT_WEBHOOK: expected an http\(s\) URL/);
    expect(() => pilotConfigFrom({ PILOT_ALERT_FAILURE_RATE: '2' })).toThrow(/PILOT_ALERT_FAILURE_RATE/);
  });
});

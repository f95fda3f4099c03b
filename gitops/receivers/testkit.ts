import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { expect } from 'vitest';
import { InputError } from '../../core/errors.ts';
import type { ReceiverRequest } from '../api/types.ts';

/** Test helpers for the receiver tests: fixtures, signing, refusals. */

export const NOW = Date.parse('2026-11-27T12:00:00.000Z');
export const DIGEST_A = `sha256:${'a'.repeat(64)}`;

/** A fixture's raw text, exactly as stored (signatures cover these bytes). */
export function fixture(path: string): string {
  return readFileSync(new URL(`./testdata/${path}`, import.meta.url), 'utf8');
}

/** A fixture parsed, to mutate and re-serialise. */
export function fixtureJson<T = Record<string, any>>(path: string): T {
  return JSON.parse(fixture(path)) as T;
}

export function request(body: string, headers: Record<string, string> = {}, extra: Partial<ReceiverRequest> = {}): ReceiverRequest {
  return { headers, body, now: NOW, ...extra };
}

/** GitHub's `X-Hub-Signature-256` value. */
export function githubSignature(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/** Standard Webhooks headers for `body`. */
export function standardWebhookHeaders(secret: string, id: string, timestampSeconds: number, body: string): Record<string, string> {
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
  const sig = createHmac('sha256', key).update(`${id}.${timestampSeconds}.${body}`).digest('base64');
  return { 'webhook-id': id, 'webhook-timestamp': String(timestampSeconds), 'webhook-signature': `v1,${sig}`, 'content-type': 'application/json' };
}

/** Asserts `fn` throws an InputError with `code` and `status`, and returns it. */
export function expectRefusal(fn: () => unknown, code: string, status: number): InputError {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown).toBeInstanceOf(InputError);
  const e = thrown as InputError;
  expect({ code: e.code, status: e.status }).toEqual({ code, status });
  return e;
}

/** A JSON body just over 1 MiB. */
export function oversizedBody(): string {
  return JSON.stringify({ padding: 'x'.repeat(1024 * 1024) });
}

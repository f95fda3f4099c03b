import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { RECORD_BATCH_OVERHEAD, recordBytes } from './record-size.ts';
import type { OutgoingMessage } from './types.ts';

// kafkajs's own encoder for the record batch the broker measures (what a produce request
// carries per topic partition), reached through its source: kafkajs has no exports map.
const require = createRequire(import.meta.url);
const { RecordBatch } = require('kafkajs/src/protocol/recordBatch/v0') as {
  RecordBatch: (b: { records: unknown[]; firstTimestamp: number; maxTimestamp: number; lastOffsetDelta: number }) => Promise<{ buffer: Buffer }>;
};
const Record = require('kafkajs/src/protocol/recordBatch/record/v0') as (r: object) => unknown;

/** The bytes kafkajs writes for these messages in one batch, as its produce request builds it. */
async function encodedBatchBytes(messages: OutgoingMessage[], timestamps: number[] = messages.map(() => 1_780_000_000_000)): Promise<number> {
  const first = Math.min(...timestamps);
  const records = messages.map((m, i) => Record({ key: m.key, value: m.value, headers: m.headers ?? {}, offsetDelta: i, timestampDelta: timestamps[i]! - first }));
  const batch = await RecordBatch({ records, firstTimestamp: first, maxTimestamp: Math.max(...timestamps), lastOffsetDelta: records.length - 1 });
  return batch.buffer.length;
}

const estimate = (messages: OutgoingMessage[]) => RECORD_BATCH_OVERHEAD + messages.reduce((n, m) => n + recordBytes(m), 0);

const dlqHeaders = (i: number): Record<string, string> => ({
  'x-orrery-stage': 'router',
  'x-orrery-reason': 'unknown_source',
  'x-orrery-error': `no source "ghost" in control-plane version ${i}`.padEnd(1000, '·'),
  'x-orrery-original-topic': 'orrery.events.raw',
  'x-orrery-original-partition': String(i % 6),
  'x-orrery-original-offset': String(1_000_000 + i),
  'x-orrery-config-version': '42',
});

describe('recordBytes against kafkajs’s record batch encoder', () => {
  const cases: Array<[string, OutgoingMessage[]]> = [
    ['one small record', [{ key: 'web:u1', value: '{"a":1}' }]],
    ['a null key and an empty value', [{ key: null, value: '' }]],
    ['multi-byte keys, values and headers', [{ key: 'wéb:ü—1', value: '{"name":"Zoë ✓"}', headers: { 'x-ñ': 'ü'.repeat(300) } }]],
    ['a Buffer value of 200 KiB', [{ key: 'k', value: Buffer.alloc(200 * 1024, 1) }]],
    ['3,000 dead letters with 7 headers each', Array.from({ length: 3_000 }, (_, i) => ({ key: `ghost:u${i % 97}`, value: `{"messageId":"m-${i}","filler":"${'x'.repeat(i % 400)}"}`, headers: dlqHeaders(i) }))],
    ['20,000 tiny records (offset deltas past 2 bytes)', Array.from({ length: 20_000 }, (_, i) => ({ key: `s:${i}`, value: String(i) }))],
  ];

  it.each(cases)('%s: never less than the encoded batch, and within 16 bytes a record of it', async (_name, messages) => {
    const actual = await encodedBatchBytes(messages);
    const est = estimate(messages);
    expect(est).toBeGreaterThanOrEqual(actual);
    expect(est - actual).toBeLessThanOrEqual(16 * messages.length);
  });

  it('holds when the records were created up to a day apart (timestamp deltas)', async () => {
    const messages = Array.from({ length: 50 }, (_, i) => ({ key: `k${i}`, value: 'v'.repeat(i) }));
    const t0 = 1_780_000_000_000;
    const actual = await encodedBatchBytes(messages, messages.map((_, i) => t0 + i * 1_800_000));
    expect(estimate(messages)).toBeGreaterThanOrEqual(actual);
  });
});

import type { OutgoingMessage } from './types.ts';

/**
 * Bytes a record batch (Kafka's message format v2, as kafkajs encodes it uncompressed)
 * takes before its records: base offset (8), length (4), partition leader epoch (4),
 * magic (1), CRC (4), attributes (2), last offset delta (4), first and max timestamps
 * (8 + 8), producer id (8), producer epoch (2), first sequence (4), record count (4).
 * The broker compares this plus the records with the topic's `max.message.bytes`.
 */
export const RECORD_BATCH_OVERHEAD = 61;

/**
 * The broker's default limit on one record batch (`message.max.bytes`, and a topic's
 * `max.message.bytes` unless set): 1 MiB plus the 12 bytes of offset and length.
 */
export const DEFAULT_MAX_BATCH_BYTES = 1_048_588;

/** Bytes of a zigzag varint holding `n` (Kafka's varint, as kafkajs's Encoder.sizeOfVarInt). */
function varintBytes(n: number): number {
  let z = n >= 0 ? n * 2 : -n * 2 - 1;
  let bytes = 1;
  while (z >= 0x80) {
    z = Math.floor(z / 0x80);
    bytes++;
  }
  return bytes;
}

/** A length-prefixed field: varint length, then the bytes; null is the length -1 alone. */
function bytesField(len: number | null): number {
  return len === null ? 1 : varintBytes(len) + len;
}

const byteLength = (v: Buffer | string): number => (typeof v === 'string' ? Buffer.byteLength(v) : v.length);

/**
 * Upper bound on the bytes one message adds to a record batch: the record's length
 * varint, attributes, timestamp and offset deltas, key, value and every header's key and
 * value with their varint lengths. The deltas depend on where the record lands in the
 * batch (kafkajs groups a request's messages by partition), so they count at their widest
 * that still makes sense: 10 bytes for the timestamp delta (a varlong), 5 for the offset
 * delta (a varint of an int32). Everything else is exact.
 *
 * @example recordBytes({ key: 'src:u1', value: '{…}', headers: { 'x-orrery-reason': 'unknown_source' } })
 */
export function recordBytes(m: OutgoingMessage): number {
  let body = 1 + 10 + 5 + bytesField(m.key === null ? null : Buffer.byteLength(m.key)) + bytesField(byteLength(m.value));
  const headers = m.headers ? Object.entries(m.headers) : [];
  body += varintBytes(headers.length);
  for (const [k, v] of headers) body += bytesField(Buffer.byteLength(k)) + bytesField(Buffer.byteLength(v));
  return varintBytes(body) + body;
}

import { InputError } from '../core/errors.ts';

/**
 * Request decompression for ingest, on web streams only (DecompressionStream), so the app
 * stays a plain fetch handler on any runtime.
 *
 * SDKs compress their batches: RudderStack's Node and Python SDKs gzip by default, and so
 * does Segment's Java library. `Content-Encoding` names the coding (RFC 9110 §8.4); a body
 * is inflated chunk by chunk and refused with 400 as soon as the inflated bytes pass the
 * same limit that an uncompressed body has, so a bomb (1 GiB of zeros is 1 MiB of gzip,
 * a few kB of brotli) costs at most the limit plus one chunk of memory.
 */

/** Codings ingest takes, by their `Content-Encoding` token. `x-gzip` is gzip (RFC 9110 §8.4.1.3). */
const FORMATS: Readonly<Record<string, string>> = { gzip: 'gzip', 'x-gzip': 'gzip', deflate: 'deflate', br: 'brotli' };

export const SUPPORTED_ENCODINGS = ['gzip', 'deflate', 'br'] as const;

/** The coding of a request, lower-cased; undefined for none (absent, empty or `identity`). */
export function contentCoding(header: string | undefined): string | undefined {
  const coding = header?.trim().toLowerCase();
  return coding && coding !== 'identity' ? coding : undefined;
}

/**
 * Inflates `body` (compressed with `coding`), refusing it with 400 `payload_too_large` once
 * more than `max` bytes come out, 400 `invalid_compression` when it is not valid data of
 * that coding, and 415 `unsupported_encoding` for a coding ingest does not take.
 *
 * @example const bytes = await inflate(req.body, 'gzip', 500 * 1024);
 */
export async function inflate(body: ReadableStream<Uint8Array> | null, coding: string, max: number): Promise<Uint8Array> {
  const format = FORMATS[coding];
  let decoder: DecompressionStream | undefined;
  try {
    if (format) decoder = new DecompressionStream(format as ConstructorParameters<typeof DecompressionStream>[0]);
  } catch {
    // A runtime whose DecompressionStream lacks this format (brotli is a recent addition).
  }
  if (!decoder) {
    throw new InputError('unsupported_encoding', `Content-Encoding "${coding.slice(0, 40)}" is not supported: send ${SUPPORTED_ENCODINGS.join(', ')} or none`, 415);
  }
  if (!body) throw new InputError('invalid_compression', `the request body is empty, so it is not ${coding} data`);
  const reader = body.pipeThrough(decoder).getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      // 400, as every limit of ingest (README, "Errors"): SDKs retry a 413.
      if (total > max) throw new InputError('payload_too_large', `the request body inflates to more than ${max} bytes`);
      chunks.push(value);
    }
  } catch (err) {
    await reader.cancel().catch(() => {});
    if (err instanceof InputError) throw err;
    throw new InputError('invalid_compression', `the request body is not valid ${coding} data: ${(err as Error).message}`);
  }
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(total);
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.byteLength;
  }
  return out;
}

import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP } from 'node:net';
import { Agent, fetch as undiciFetch, request, type Dispatcher } from 'undici';
import { DeliveryError } from './destinations/types.ts';

/**
 * The SSRF guard for user-supplied destination URLs: addresses that are private, loopback,
 * link-local, CGNAT, unique-local, multicast or unspecified are refused. The check runs at
 * connect time, inside the HTTP client's DNS lookup, so a name that resolves to a public
 * address when checked and a private one when connecting (DNS rebinding) is still refused.
 */
const blocked = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const) {
  blocked.addSubnet(net, prefix, 'ipv4');
}
for (const [net, prefix] of [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
  ['64:ff9b::', 96],
] as const) {
  blocked.addSubnet(net, prefix, 'ipv6');
}

/** Whether an IP address literal may be connected to. */
export function isPublicAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return false;
  // An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is judged by its IPv4 address. (A
  // ::ffff:0:0/96 rule would not do: BlockList checks IPv4 addresses against it too.)
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return isPublicAddress(mapped[1]!);
  // The same in hex, as WHATWG URL parsing writes it: [::ffff:127.0.0.1] → [::ffff:7f00:1].
  const hex = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i.exec(address);
  if (hex) {
    const [hi, lo] = [parseInt(hex[1]!, 16), parseInt(hex[2]!, 16)];
    return isPublicAddress(`${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`);
  }
  return !blocked.check(address, family === 6 ? 'ipv6' : 'ipv4');
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

function guardedLookup(hostname: string, options: { all?: boolean }, callback: LookupCallback): void {
  dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
    if (err) return callback(err, []);
    const list = addresses as LookupAddress[];
    const refused = list.find((a) => !isPublicAddress(a.address));
    if (refused) {
      const e = Object.assign(new Error(`${hostname} resolves to ${refused.address}, a private address`), { code: 'ERR_SSRF_BLOCKED' });
      return callback(e, []);
    }
    if (options.all) return callback(null, list);
    callback(null, list[0]!.address, list[0]!.family);
  });
}

const agent = new Agent({ connect: { lookup: guardedLookup as never } });
/** For destinations that may reach private addresses (allowPrivateNetwork). */
const openAgent = new Agent();

/** A refusal of a private IP literal, before any connection is tried. */
function refuseLiteral(target: URL): void {
  const host = target.hostname.replace(/^\[|\]$/g, '');
  if (isIP(host) && !isPublicAddress(host)) {
    throw new DeliveryError(`refused: ${host} is a private address (set allowPrivateNetwork: true to allow it)`, { retriable: false });
  }
}

/** The guard's refusal, found on an error from undici (itself or its cause), as a DeliveryError. */
function ssrfRefusal(err: unknown): DeliveryError | undefined {
  const e = err as { code?: string; message?: string; cause?: { code?: string; message?: string } };
  const blocked = e.code === 'ERR_SSRF_BLOCKED' ? e : e.cause?.code === 'ERR_SSRF_BLOCKED' ? e.cause : undefined;
  if (!blocked) return undefined;
  return new DeliveryError(`refused: ${blocked.message} (set allowPrivateNetwork: true to allow it)`, { retriable: false, cause: err });
}

export interface PostOptions {
  headers: Record<string, string>;
  body: string;
  /** Aborts the call (the worker's shutdown). */
  signal: AbortSignal;
  /**
   * Time allowed for the response headers, and then between body chunks (undici's
   * headersTimeout and bodyTimeout). Cheaper per call than a timeout AbortSignal joined
   * to `signal` with AbortSignal.any: those two were ~5% of a webhook sink's CPU.
   */
  timeoutMs: number;
  /** Skip the guard: the destination's config allows private addresses. */
  allowPrivateNetwork: boolean;
}

/**
 * A POST through undici's `request` on a keep-alive Agent, guarded unless the destination
 * allows private addresses. It is several times cheaper than `fetch` (no WHATWG Request,
 * Headers and stream objects per call), which decides a webhook sink's events per second.
 * Resolves with the status, headers and the response body (read to its end, so the
 * connection is reused; over `maxBodyBytes` it is cut off and the connection dropped).
 */
export async function guardedPost(
  url: string,
  o: PostOptions,
  maxBodyBytes = 64 * 1024,
): Promise<{ status: number; headers: Dispatcher.ResponseData['headers']; body: string }> {
  const target = new URL(url);
  if (!o.allowPrivateNetwork) refuseLiteral(target);
  try {
    const res = await request(target, {
      method: 'POST',
      headers: o.headers,
      body: o.body,
      signal: o.signal,
      headersTimeout: o.timeoutMs,
      bodyTimeout: o.timeoutMs,
      dispatcher: o.allowPrivateNetwork ? openAgent : agent,
    });
    const chunks: Buffer[] = [];
    let bytes = 0;
    for await (const chunk of res.body) {
      bytes += (chunk as Buffer).length;
      if (bytes > maxBodyBytes) {
        res.body.destroy();
        break;
      }
      chunks.push(chunk as Buffer);
    }
    return { status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') };
  } catch (err) {
    throw ssrfRefusal(err) ?? err;
  }
}

/**
 * A fetch that refuses private addresses (IP literals up front, names at connect time).
 * Refusals are DeliveryErrors that are not retried: the config must change.
 */
export async function guardedFetch(url: string | URL, init: RequestInit = {}): Promise<Response> {
  const target = new URL(url);
  refuseLiteral(target);
  try {
    return (await undiciFetch(target, { ...(init as object), dispatcher: agent } as never)) as unknown as Response;
  } catch (err) {
    throw ssrfRefusal(err) ?? err;
  }
}

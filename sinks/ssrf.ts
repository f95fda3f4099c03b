import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP } from 'node:net';
import { Agent, fetch as undiciFetch, request, type Dispatcher } from 'undici';
import { DeliveryError } from './destinations/types.ts';

/**
 * The SSRF guard for user-supplied destination URLs: addresses that are private, loopback,
 * link-local, CGNAT, unique-local, multicast, reserved or unspecified are refused, and an
 * IPv6 address that embeds an IPv4 one is judged by the IPv4 address inside it. The check
 * runs at connect time, inside the HTTP client's DNS lookup, so a name that resolves to a
 * public address when checked and a private one when connecting (DNS rebinding) is still
 * refused; a literal private address is refused up front, and when the destination is
 * created ({@link privateLiteral}).
 */
const blocked = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8], // "this network"
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // CGNAT
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.0.2.0', 24], // documentation (TEST-NET-1, -2, -3)
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['192.88.99.0', 24], // 6to4 relay anycast
  ['192.168.0.0', 16],
  ['198.18.0.0', 15], // benchmarking
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, and the broadcast address
] as const) {
  blocked.addSubnet(net, prefix, 'ipv4');
}
for (const [net, prefix] of [
  ['::', 96], // unspecified, loopback and the deprecated IPv4-compatible ::a.b.c.d (judged by the IPv4 address first)
  ['100::', 64], // discard-only
  ['2001:db8::', 32], // documentation
  ['2001::', 23], // IETF protocol assignments (Teredo inside is judged by its IPv4 addresses first)
  ['fc00::', 7], // unique local
  ['fe80::', 10], // link-local
  ['fec0::', 10], // site-local (deprecated)
  ['ff00::', 8], // multicast
] as const) {
  blocked.addSubnet(net, prefix, 'ipv6');
}

/** The eight 16-bit groups of an IPv6 address literal (a trailing dotted quad included). */
function ipv6Groups(address: string): number[] | undefined {
  let text = address.toLowerCase().replace(/%.*$/, '');
  const quad = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (quad) {
    const [a, b, c, d] = quad.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, quad.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.split('::') as [string, string | undefined];
  const parse = (part: string) => (part === '' ? [] : part.split(':').map((g) => parseInt(g, 16)));
  const left = parse(head);
  const right = tail === undefined ? [] : parse(tail);
  const fill = tail === undefined ? 0 : 8 - left.length - right.length;
  const groups = [...left, ...Array<number>(fill).fill(0), ...right];
  return groups.length === 8 && groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? groups : undefined;
}

const v4 = (hi: number, lo: number) => `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;

/**
 * The IPv4 addresses an IPv6 address carries, by the forms that route to them:
 * IPv4-compatible (::a.b.c.d), IPv4-mapped (::ffff:a.b.c.d), IPv4-translated
 * (::ffff:0:a.b.c.d), NAT64 (64:ff9b::/96 and the local-use 64:ff9b:1::/48), 6to4
 * (2002:AABB:CCDD::/48) and Teredo (2001:0::/32: the server, and the client's address
 * stored inverted).
 */
function embeddedIpv4(g: number[]): string[] {
  const zeros = (from: number, to: number) => g.slice(from, to).every((x) => x === 0);
  if (zeros(0, 5) && (g[5] === 0 || g[5] === 0xffff) && !(g[5] === 0 && g[6] === 0)) return [v4(g[6]!, g[7]!)];
  if (zeros(0, 4) && g[4] === 0xffff && g[5] === 0) return [v4(g[6]!, g[7]!)];
  if (g[0] === 0x64 && g[1] === 0xff9b && (zeros(2, 6) || g[2] === 1)) return [v4(g[6]!, g[7]!)];
  if (g[0] === 0x2002) return [v4(g[1]!, g[2]!)];
  if (g[0] === 0x2001 && g[1] === 0) return [v4(g[2]!, g[3]!), v4(g[6]! ^ 0xffff, g[7]! ^ 0xffff)];
  return [];
}

/** Whether an IP address literal may be connected to. */
export function isPublicAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return false;
  if (family === 4) return !blocked.check(address, 'ipv4');
  const groups = ipv6Groups(address);
  if (!groups) return false;
  const inner = embeddedIpv4(groups);
  if (inner.some((a) => !isPublicAddress(a))) return false;
  // A form that only carries a public IPv4 address is judged by it: NAT64 and 6to4 reach
  // public hosts through public gateways. Anything else in ::/96 (:: and ::1) is refused.
  if (inner.length > 0 && !(groups[0] === 0x2001 && groups[1] === 0)) return true;
  return !blocked.check(address, 'ipv6');
}

/**
 * The reason a destination URL may not be used without `allowPrivateNetwork`, when its
 * host is an IP literal that is not public; undefined for names (checked at connect time)
 * and public addresses. Destination schemas call it, so such a URL is refused when the
 * destination is created or updated, not only when it delivers.
 */
export function privateLiteral(url: string): string | undefined {
  let host: string;
  try {
    host = new URL(url).hostname.replace(/^\[|\]$/g, '');
  } catch {
    return undefined;
  }
  if (!isIP(host) || isPublicAddress(host)) return undefined;
  return `${host} is a private or reserved address: set allowPrivateNetwork: true to allow it`;
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

function guardedLookup(hostname: string, options: { all?: boolean }, callback: LookupCallback): void {
  dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
    if (err) return callback(err, []);
    const list = addresses as LookupAddress[];
    const refused = list.find((a) => !isPublicAddress(a.address));
    if (refused) {
      const e = Object.assign(new Error(`${hostname} resolves to ${refused.address}, a private or reserved address`), { code: 'ERR_SSRF_BLOCKED' });
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
  const reason = privateLiteral(target.href);
  if (reason) throw new DeliveryError(`refused: ${reason}`, { retriable: false });
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

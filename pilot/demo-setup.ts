import { randomBytes } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { newWebhookSecret } from '../core/auth.ts';
import type { ControlPlaneConfig, ControlPlaneSnapshot } from '../core/control-plane.ts';
import { updateControlPlane } from '../core/control-plane-pg.ts';
import type { ControlPlaneSource } from '../core/control-plane-source.ts';
import type { Logger } from '../core/logger.ts';
import { writePrivateFile } from '../core/private-file.ts';
import type { Store } from '../core/store/types.ts';
import { hashWriteKey } from '../ingest/sources.ts';

/**
 * The demo a first `orrery start` sets up, so that a new user has something to send events
 * to and a page that shows them arrive: a source `demo`, a webhook destination
 * `demo-webhook` that posts into Pilot's own demo receiver (pilot/demo.ts), and a route
 * between them.
 *
 * First start means: the control plane has never held anything (version 0, no config seed).
 * Anything else, including a demo deleted later, is never set up again.
 *
 * The write key is stored hashed, like every key, so it cannot be read back from the
 * control plane. To print the curl line at later starts too, the plain key is kept in
 * `<dataDir>/demo-write-key`, readable by its owner only (0600), next to the embedded
 * database that holds everything else. It is printed while it still works (the demo source
 * exists, is enabled and has that key); once the source is deleted or its key rotated,
 * nothing is printed. It never goes to the log: the banner is written to stderr directly.
 *
 * The destination posts to this process over loopback, which the SSRF guard refuses for
 * user-supplied URLs. It is allowed with the webhook destination's own per-destination
 * `allowPrivateNetwork: true`, the setting an admin would use for any internal endpoint:
 * it opens nothing an admin could not already open, it is shown in Pilot's config view,
 * and it goes away with the demo destination.
 *
 * The destination signs its posts (a Standard Webhooks `secret`, generated here) and the
 * demo receiver takes only posts signed by a destination that posts to it, so nobody can
 * make Pilot show a forged "delivered" event. A demo set up before that has no secret:
 * {@link ensureDemoSecret} adds one at start, before the sinks deliver.
 */

export const DEMO_SOURCE = 'demo';
export const DEMO_DESTINATION = 'demo-webhook';
export const DEMO_KEY_FILE = 'demo-write-key';
export const DEMO_PATH = '/pilot/demo-webhook';

export type DemoStatus =
  | { state: 'created' | 'exists'; writeKey: string; keyFile: string }
  | { state: 'none'; reason: string };

/** The demo's control-plane document, for an empty control plane. */
export function demoControlPlane(writeKey: string, baseUrl: string, secret: string = newWebhookSecret()): ControlPlaneConfig {
  return {
    sources: [{ id: DEMO_SOURCE, name: 'Demo (created on first start)', writeKeys: [writeKey], writeKeyHashes: [], enabled: true, allowedOrigins: ['*'] }],
    destinations: [
      {
        id: DEMO_DESTINATION,
        type: 'webhook',
        name: "Pilot's demo receiver",
        enabled: true,
        url: `${baseUrl}${DEMO_PATH}`,
        // Loopback: see the module comment.
        allowPrivateNetwork: true,
        secret,
      },
    ],
    routes: [{ source: DEMO_SOURCE, destination: DEMO_DESTINATION, enabled: true, transforms: [] }],
  };
}

/** Whether a destination is a webhook that posts to a demo receiver (any host: the port may have changed). */
function postsToDemo(d: { type: string; url?: unknown }): boolean {
  if (d.type !== 'webhook' || typeof d.url !== 'string' || !URL.canParse(d.url)) return false;
  return new URL(d.url).pathname === DEMO_PATH;
}

/**
 * The signing secrets the demo receiver accepts: those of the webhook destinations that
 * post to it, enabled or not (a delivery in flight when one was disabled still lands).
 *
 * @example createDemoReceiver({ secrets: () => demoSenderSecrets(controlPlane.current()) });
 */
export function demoSenderSecrets(snapshot: ControlPlaneConfig): string[] {
  return snapshot.destinations.filter((d) => postsToDemo(d) && typeof d.secret === 'string').map((d) => d.secret as string);
}

/**
 * Upgrade of a demo set up before the demo receiver wanted signatures: gives the demo
 * destination a signing secret when it has none, so its deliveries keep landing. Run at
 * start before the components (so the sinks sign from their first delivery); resolves
 * once the running control plane serves the change. Only Orrery's own demo destination is
 * changed: another destination that posts to the receiver is the admin's, and the
 * receiver's 401s (in Pilot's refused webhooks) say what it lacks.
 *
 * @example await ensureDemoSecret({ store, controlPlane, logger });
 */
export async function ensureDemoSecret(opts: { store: Store; controlPlane: ControlPlaneSource; logger: Logger }): Promise<'added' | 'unchanged'> {
  const current = opts.controlPlane.current();
  const unsigned = (doc: ControlPlaneConfig) => doc.destinations.find((d) => d.id === DEMO_DESTINATION && postsToDemo(d) && d.secret === undefined);
  if (!unsigned(current)) return 'unchanged';
  let version: number;
  try {
    ({ version } = await updateControlPlane(
      opts.store,
      (doc) => ({ ...doc, destinations: doc.destinations.map((d) => (d === unsigned(doc) ? { ...d, secret: newWebhookSecret() } : d)) }),
      { expectedVersion: current.version, note: 'demo: signing secret added (the demo receiver takes signed posts only)' },
    ));
  } catch (err) {
    // Changed meanwhile (another process, the API): the next start looks again.
    if ((err as { code?: string }).code === 'CONTROL_PLANE_CONFLICT') return 'unchanged';
    throw err;
  }
  const log = opts.logger.child({ component: 'demo' });
  if (!(await untilVersion(opts.controlPlane, version, 10_000))) log.warn({ version }, 'demo: the control plane has not reloaded the demo secret yet');
  log.info({ destination: DEMO_DESTINATION, version }, 'demo: gave the demo destination a signing secret: the demo receiver now takes signed posts only');
  return 'added';
}

/**
 * How this process is reached from itself: the configured host, or loopback when it
 * listens on every interface.
 *
 * @example localBaseUrl('0.0.0.0', 8080); // 'http://127.0.0.1:8080'
 */
export function localBaseUrl(host: string, port: number): string {
  const h = host === '0.0.0.0' || host === '::' || host === '' ? '127.0.0.1' : host;
  return `http://${h.includes(':') ? `[${h}]` : h}:${port}`;
}

/** The lines printed at start while the demo works: the key and a curl line to copy. */
export function demoBanner(status: Extract<DemoStatus, { writeKey: string }>, baseUrl: string): string {
  const body = JSON.stringify({ userId: 'demo-user', event: 'Demo Event', properties: { hello: 'world' } });
  const first = status.state === 'created' ? 'orrery: first start: created a demo source, a webhook destination into Pilot, and a route.' : 'orrery: the demo source is still set up.';
  return [
    '',
    first,
    `  demo write key: ${status.writeKey}   (kept in ${status.keyFile}, mode 0600)`,
    '  send an event:',
    '',
    `  curl -sS -u '${status.writeKey}:' -H 'content-type: application/json' -d '${body}' ${baseUrl}/v1/track`,
    '',
    `  then open ${baseUrl}/ (Pilot) to see it received and delivered to the demo webhook.`,
    '',
  ].join('\n');
}

async function readKey(file: string): Promise<string | undefined> {
  try {
    return (await readFile(file, 'utf8')).trim() || undefined;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Resolves once `source` serves `version` or later; the change arrives by NOTIFY. */
function untilVersion(source: ControlPlaneSource, version: number, timeoutMs: number): Promise<boolean> {
  if (source.current().version >= version) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      unsubscribe();
      resolve(false);
    }, timeoutMs);
    const unsubscribe = source.subscribe((snap: ControlPlaneSnapshot) => {
      if (snap.version < version) return;
      clearTimeout(timer);
      unsubscribe();
      resolve(true);
    });
  });
}

export interface EnsureDemoOptions {
  store: Store;
  controlPlane: ControlPlaneSource;
  dataDir: string;
  /** Where this process answers HTTP, from itself (see localBaseUrl). */
  baseUrl: string;
  logger: Logger;
}

/**
 * Sets the demo up on a first start, or finds the one set up before. Resolves once the
 * running control plane serves it, so the printed curl line works at once.
 *
 * @example
 *   const demo = await ensureDemo({ store, controlPlane, dataDir: config.dataDir, baseUrl, logger });
 *   if (demo.state !== 'none') process.stderr.write(demoBanner(demo, baseUrl));
 */
export async function ensureDemo(opts: EnsureDemoOptions): Promise<DemoStatus> {
  const log = opts.logger.child({ component: 'demo' });
  const keyFile = join(opts.dataDir, DEMO_KEY_FILE);
  const current = opts.controlPlane.current();

  if (current.version === 0) {
    const key = `demo_${randomBytes(18).toString('base64url')}`;
    await mkdir(opts.dataDir, { recursive: true });
    // The key is on disk before it is in the control plane: a crash in between leaves an
    // unused file, which the next first start overwrites.
    await writePrivateFile(keyFile, `${key}\n`);
    let version: number;
    try {
      ({ version } = await updateControlPlane(opts.store, () => demoControlPlane(key, opts.baseUrl), {
        expectedVersion: 0,
        note: 'demo: created on first start',
      }));
    } catch (err) {
      // Someone stored a config meanwhile (another process, the API): theirs wins.
      if ((err as { code?: string }).code === 'CONTROL_PLANE_CONFLICT') return { state: 'none', reason: 'the control plane was set up meanwhile' };
      throw err;
    }
    if (!(await untilVersion(opts.controlPlane, version, 10_000))) log.warn({ version }, 'demo: the control plane has not reloaded the demo yet');
    log.info({ source: DEMO_SOURCE, destination: DEMO_DESTINATION, version, keyFile }, 'demo: first start, created a demo source, destination and route (the write key is printed on stderr, never logged)');
    return { state: 'created', writeKey: key, keyFile };
  }

  const key = await readKey(keyFile);
  const source = current.sources.find((s) => s.id === DEMO_SOURCE);
  if (!key || !source) return { state: 'none', reason: source ? 'no demo key file' : 'no demo source' };
  if (!source.enabled || !source.writeKeyHashes.includes(await hashWriteKey(key))) return { state: 'none', reason: 'the demo source no longer takes the stored key' };
  // Set up under another PORT or HOST: say so rather than rewrite a destination an admin may have edited.
  const destination = current.destinations.find((d) => d.id === DEMO_DESTINATION);
  const expected = `${opts.baseUrl}${DEMO_PATH}`;
  if (destination && typeof destination.url === 'string' && destination.url.endsWith(DEMO_PATH) && destination.url !== expected) {
    log.warn({ destination: DEMO_DESTINATION, url: destination.url, expected }, 'demo: the demo destination posts to another address than this process answers at; change its url in Pilot');
  }
  return { state: 'exists', writeKey: key, keyFile };
}

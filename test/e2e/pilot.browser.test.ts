import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gitCli } from '../helpers/git-server.ts';
import { serviceEnv, uniqueName, waitFor } from '../helpers/index.ts';
import { startOrrery, type OrreryProcess } from '../helpers/process.ts';
import { startReceiver } from '../helpers/receiver.ts';

/**
 * The Pilot UI in a real browser (Debian's Chromium through playwright-core) over the whole
 * platform on real Kafka, Postgres and Redis: sign in, watch events arrive live in the
 * debugger and at the demo webhook, see a failing destination's dead letters and replay
 * them once it recovers, and see a registry webhook become a deploy with its timeline.
 * Screenshots of each page go to test/e2e/screenshots/ (git-ignored).
 */
const CHROMIUM = '/usr/bin/chromium';
const TOKEN = 'pilot-e2e-token-0123456789abcdef';
const WRITE_KEY = 'pilot-e2e-write-key';
const REGISTRY_TOKEN = 'pilot-e2e-registry-token';
/** The demo receiver takes only posts signed by a destination that posts to it. */
const DEMO_SECRET = `whsec_${Buffer.from('pilot-e2e-demo-secret').toString('base64')}`;
const SHOTS = fileURLToPath(new URL('./screenshots/', import.meta.url));
const exec = promisify(execFile);

const MANIFEST = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    spec:
      containers:
        - name: web
          image: registry.example.com/team/web:1.0.0 # {"$imagepolicy": "web"}
`;

describe('pilot UI in a browser', () => {
  let orrery: OrreryProcess;
  let browser: Browser;
  let page: Page;
  let crm: Awaited<ReturnType<typeof startReceiver>>;
  let manifests: string;
  const shots: string[] = [];
  const tag = uniqueName('e2e');

  async function shot(name: string): Promise<void> {
    const path = join(SHOTS, `${name}.png`);
    await page.screenshot({ path, fullPage: true });
    shots.push(path);
  }

  const api = async (path: string, init: RequestInit = {}) => {
    const res = await fetch(`${orrery.url}${path}`, { ...init, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json', ...(init.headers ?? {}) } });
    return (await res.json()) as Record<string, any>;
  };

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(`Chromium is not installed at ${CHROMIUM}: the browser test needs Debian's package (apt-get install -y chromium); test/services should install it`);
    }
    await mkdir(SHOTS, { recursive: true });
    crm = await startReceiver({ respond: () => 500 });

    // The manifests repository: a local git work tree (gitops commits to it directly).
    manifests = await mkdtemp(join(tmpdir(), 'orrery-e2e-manifests-'));
    await exec('git', ['init', '--quiet', '--initial-branch=main', manifests]);
    await mkdir(join(manifests, 'apps'));
    await writeFile(join(manifests, 'apps/web.yaml'), MANIFEST);
    await gitCli(manifests, 'add', '-A');
    await gitCli(manifests, 'commit', '--quiet', '-m', 'seed manifests');

    const dir = await mkdtemp(join(tmpdir(), 'orrery-e2e-'));
    // ${PORT} is Orrery's own port: the demo destination posts back to Pilot's demo webhook, signed.
    await writeFile(
      join(dir, 'orrery.yaml'),
      `sources: [{ id: web, name: Web shop, writeKeys: [${WRITE_KEY}] }]
destinations:
  - { id: crm, type: webhook, url: "${crm.url}", allowPrivateNetwork: true }
  - { id: demo, type: webhook, url: "http://127.0.0.1:\${PORT}/pilot/demo-webhook", allowPrivateNetwork: true, secret: "${DEMO_SECRET}" }
routes:
  # Only the track calls: two users' events, so the failing destination gives up within seconds.
  - { source: web, destination: crm, filter: { types: [track] } }
  - { source: web, destination: demo }
gitops:
  repo: { url: "${manifests}", branch: main, path: apps, author: { name: Orrery Bot, email: bot@orrery.test } }
  receivers:
    distribution: { token: \${REGISTRY_TOKEN} }
  policies:
    - { name: web, image: registry.example.com/team/web, tags: { semver: ">=1.0.0" }, mode: commit }
`,
    );
    orrery = await startOrrery(['start'], {
      ORRERY_CONFIG: join(dir, 'orrery.yaml'),
      ORRERY_DATA_DIR: join(dir, 'data'),
      KAFKA_BROKERS: serviceEnv('KAFKA_BROKERS'),
      KAFKA_TOPIC_PREFIX: uniqueName('e2e'),
      KAFKA_TOPIC_PARTITIONS: '2',
      DATABASE_URL: serviceEnv('DATABASE_URL'),
      DATABASE_SCHEMA: uniqueName('e2e').toLowerCase(),
      REDIS_URL: serviceEnv('REDIS_URL'),
      ROUTER_GROUP: uniqueName('router'),
      SINKS_GROUP_PREFIX: uniqueName('sink'),
      SINKS_BACKOFF_INITIAL_MS: '100',
      SINKS_BACKOFF_MAX_MS: '400',
      SINKS_MAX_AGE_MS: '1500',
      SINKS_MAX_ATTEMPTS: '50',
      INGEST_SPOOL_DIR: join(dir, 'spool'),
      REGISTRY_TOKEN,
      PILOT_ADMIN_TOKEN: TOKEN,
      PILOT_SAMPLE_MS: '1000',
      KUBECONFIG: '',
    });
    if ((await fetch(`${orrery.url}/api/openapi.json`)).status === 404) {
      throw new Error('Pilot is not part of `orrery start`: add `pilot: createPilotComponent` (pilot/main.ts) to COMPONENTS in bin/orrery.ts');
    }
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    page.setDefaultTimeout(30_000);
  });

  afterAll(async () => {
    // The browser first: its open event stream would otherwise hold the server's drain.
    await browser?.close();
    await orrery?.stop();
    await crm?.close();
    if (shots.length > 0) console.info(`Pilot screenshots:\n${shots.map((s) => `  ${s}`).join('\n')}`);
  });

  it('signs in, and shows events live in the debugger and at the demo webhook', async () => {
    await page.goto(`${orrery.url}/`);
    await expect.poll(() => page.locator('#login').isVisible()).toBe(true);
    await page.fill('#token', 'wrong-token');
    await page.click('#login-form button[type=submit]');
    await page.waitForSelector('#login-error:has-text("not valid")');
    await page.fill('#token', TOKEN);
    await page.click('#login-form button[type=submit]');
    await page.waitForSelector('#login', { state: 'hidden' });
    expect(await page.evaluate(() => sessionStorage.getItem('orrery.pilot.token'))).toBe(TOKEN);

    // The debugger's consumer starts at the latest offset: wait until it follows the topic.
    await waitFor(async () => (await api('/api/debugger/status')).ready === true, { timeoutMs: 30_000, what: 'the debugger to follow the raw topic' });
    await page.waitForSelector('#live-status:has-text("live")');

    const events = [
      { type: 'identify', userId: `${tag}-ada`, traits: { plan: 'pro' }, messageId: `${tag}-1` },
      { type: 'page', userId: `${tag}-ada`, name: 'Pricing', messageId: `${tag}-2` },
      { type: 'track', userId: `${tag}-ada`, event: 'Checkout Started', properties: { total: 42 }, messageId: `${tag}-3` },
      { type: 'track', userId: `${tag}-bob`, event: 'Order Completed', properties: { revenue: 99 }, messageId: `${tag}-4` },
    ];
    const res = await fetch(`${orrery.url}/v1/batch`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Basic ${btoa(`${WRITE_KEY}:`)}` },
      body: JSON.stringify({ batch: events }),
    });
    expect(res.status).toBe(200);

    // Live: no reload, the rows arrive over the event stream.
    await page.waitForSelector('#events tbody tr:has-text("Order Completed")');
    await page.waitForSelector('#events tbody tr:has-text("Checkout Started")');
    expect(await page.locator('#events tbody tr').count()).toBeGreaterThanOrEqual(4);
    await page.click('#events tbody tr:has-text("Checkout Started")');
    await page.waitForSelector('#event-detail:has-text("\\"total\\": 42")');
    // Delivered by the sinks to the demo destination, which posts back to Pilot.
    await page.waitForSelector('#delivered li:has-text("Order Completed")');
    await shot('debugger');
  });

  it('shows the failing destination\'s dead letters, and replays them once it recovers', async () => {
    await page.goto(`${orrery.url}/ui/dead-letters`);
    await waitFor(async () => (await page.locator('#dead-letters tbody tr').count()) === 2, { timeoutMs: 60_000, intervalMs: 500, what: 'two dead letters on the page' });
    const row = page.locator('#dead-letters tbody tr', { hasText: `${tag}-3` });
    expect(await row.textContent()).toContain('crm');
    expect(await row.textContent()).toContain('500');
    await row.getByRole('button', { name: 'Inspect' }).click();
    await page.waitForSelector('#dl-detail:has-text("Checkout Started")');
    await shot('dead-letters');

    // A replay while the receiver still fails: the letters stay, with the replay error.
    await row.getByRole('button', { name: 'Replay' }).click();
    await page.waitForSelector('#flash:has-text("1 failed")');

    crm.state.respond = () => 200;
    await page.click('#dl-replay-all');
    await page.waitForSelector('#flash:has-text("Replayed 2")');
    await page.waitForSelector('#dl-empty', { state: 'visible' });
    expect(await page.locator('#dead-letters tbody tr').count()).toBe(0);
    // Each dead letter delivered once.
    expect(crm.accepted().map((b) => b.messageId).sort()).toEqual([`${tag}-3`, `${tag}-4`]);
    await shot('dead-letters-replayed');
  });

  it('shows throughput and failures per destination with charts', async () => {
    await page.goto(`${orrery.url}/ui/health`);
    // Attached, not visible: a flat line has an empty bounding box.
    await page.waitForSelector('#destinations tbody tr[data-destination="crm"] svg.spark polyline', { state: 'attached' });
    const crmRow = await page.locator('#destinations tbody tr[data-destination="crm"]').textContent();
    expect(crmRow).toMatch(/^crm/);
    expect(await page.locator('#destinations tbody tr[data-destination="demo"] td').nth(2).textContent()).toBe('4');
    await page.waitForSelector('#alerts-active li');
    await shot('health');
  });

  it('shows a registry push become a deploy, with its state and timeline', async () => {
    const push = JSON.stringify({
      events: [
        {
          id: `${tag}-push`,
          timestamp: new Date().toISOString(),
          action: 'push',
          target: {
            mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
            digest: `sha256:${createHash('sha256').update(tag).digest('hex')}`,
            repository: 'team/web',
            tag: '1.1.0',
            url: 'https://registry.example.com/v2/team/web/manifests/sha256:x',
          },
          request: { id: 'r1', host: 'registry.example.com', method: 'PUT', useragent: 'docker/27' },
          actor: {},
          source: { addr: 'registry:5000' },
        },
      ],
    });
    const res = await fetch(`${orrery.url}/webhooks/registry/distribution`, {
      method: 'POST',
      headers: { authorization: `Bearer ${REGISTRY_TOKEN}`, 'content-type': 'application/vnd.docker.distribution.events.v2+json' },
      body: push,
    });
    expect(res.status).toBe(202);

    await page.goto(`${orrery.url}/ui/deploys`);
    const row = page.locator('#deploys tbody tr', { hasText: 'registry.example.com/team/web:1.1.0' });
    await row.waitFor();
    await page.waitForSelector('#deploys tbody tr[data-state="committed"], #deploys tbody tr[data-state="planned"], #deploys tbody tr[data-state="synced"], #deploys tbody tr[data-state="rolled-out"]');
    const timeline = await row.locator('ol.timeline li span').allTextContents();
    expect(timeline.slice(0, 2)).toEqual(['received', 'committed']);
    const sha = (await gitCli(manifests, 'rev-parse', 'HEAD')).trim();
    expect(await row.textContent()).toContain(sha.slice(0, 12));
    expect(await page.locator('#policies').textContent()).toContain('registry.example.com/team/web');
    await shot('deploys');

    await page.goto(`${orrery.url}/ui/config`);
    await page.waitForSelector('#sources tbody tr:has-text("Web shop")');
    const html = await page.content();
    expect(html).not.toContain(WRITE_KEY);
    await shot('config');
  });
});

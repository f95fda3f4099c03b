import { readFileSync } from 'node:fs';
import { Hono } from 'hono';
import { html } from 'hono/html';

/**
 * The Pilot web UI: server-rendered pages (hono/html) with a little vanilla JavaScript
 * (ui/pilot.js) that fetches the API with the admin token and fills them in. Pages hold
 * no data themselves: everything sensitive comes through the token-protected API, so the
 * HTML can be served to anyone. See pilot/README.md for why there is no build step.
 */

const PAGES = [
  { path: '/', id: 'debugger', title: 'Live debugger' },
  { path: '/ui/health', id: 'health', title: 'Throughput & alerts' },
  { path: '/ui/dead-letters', id: 'dead-letters', title: 'Dead letters' },
  { path: '/ui/deploys', id: 'deploys', title: 'Deploys' },
  { path: '/ui/config', id: 'config', title: 'Config' },
] as const;

type PageId = (typeof PAGES)[number]['id'];

function layout(page: (typeof PAGES)[number], body: unknown) {
  return html`<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <title>${page.title} · Orrery Pilot</title>
    <link rel="stylesheet" href="/ui/assets/pilot.css" />
    <script src="/ui/assets/pilot.js" defer></script>
  </head>
  <body data-page="${page.id}">
    <header>
      <a class="brand" href="/">Orrery <span>Pilot</span></a>
      <nav>
        ${PAGES.map((p) => html`<a href="${p.path}" class="${p.id === page.id ? 'active' : ''}" data-nav="${p.id}">${p.title}</a>`)}
      </nav>
      <button id="logout" type="button" class="quiet" hidden>Log out</button>
    </header>
    <dialog id="login">
      <form id="login-form" method="dialog">
        <h2>Sign in to Pilot</h2>
        <p>Paste the admin token: <code>PILOT_ADMIN_TOKEN</code>, or the token Orrery logged once at start when that is not set.</p>
        <label>Admin token <input id="token" name="token" type="password" autocomplete="current-password" required /></label>
        <p id="login-error" class="error" role="alert"></p>
        <button type="submit">Sign in</button>
        <p class="hint">The token is kept in this tab's sessionStorage and sent as a Bearer header; closing the tab forgets it.</p>
      </form>
    </dialog>
    <main>
      <h1>${page.title}</h1>
      <p id="flash" class="flash" role="status" hidden></p>
      ${body}
    </main>
  </body>
</html>`;
}

const bodies: Record<PageId, unknown> = {
  debugger: html`
    <div class="toolbar">
      <label>Source <select id="source-filter"><option value="">all sources</option></select></label>
      <span id="live-status" class="badge">connecting…</span>
      <button id="pause" type="button" class="quiet">Pause</button>
      <button id="clear" type="button" class="quiet">Clear</button>
    </div>
    <div class="split">
      <section>
        <h2>Received <small>from the raw topic, the last 200 per source</small></h2>
        <table id="events" class="events">
          <thead><tr><th>Time</th><th>Source</th><th>Type</th><th>Event</th><th>User</th><th>messageId</th></tr></thead>
          <tbody></tbody>
        </table>
        <p class="empty" id="events-empty">Waiting for events… send some to <code>/v1/track</code>.</p>
      </section>
      <section>
        <h2>Delivered <small>to the demo webhook</small></h2>
        <ul id="delivered" class="delivered"></ul>
        <p class="empty" id="delivered-empty">Nothing delivered to <code>/pilot/demo-webhook</code> yet.</p>
      </section>
    </div>
    <section><h2>Event</h2><pre id="event-detail" class="json">Click an event to see it whole.</pre></section>`,
  health: html`
    <section>
      <h2>Ingest</h2>
      <div id="ingest" class="cards"></div>
    </section>
    <section>
      <h2>Destinations <small>since start; charts: per sample, the last 15 minutes</small></h2>
      <table id="destinations">
        <thead><tr><th>Destination</th><th>Routed</th><th>Delivered</th><th>Failed attempts</th><th>Dead letters</th><th>Delivered / interval</th><th>Failures / interval</th></tr></thead>
        <tbody></tbody>
      </table>
    </section>
    <section>
      <h2>Alerts</h2>
      <p id="alerts-webhook" class="hint"></p>
      <ul id="alerts-active" class="alerts"></ul>
      <h3>Recent notifications</h3>
      <ul id="alerts-recent" class="alerts"></ul>
      <details><summary>Rules</summary><pre id="alerts-rules" class="json"></pre></details>
    </section>`,
  'dead-letters': html`
    <div class="toolbar">
      <label>Show <select id="dl-destination"><option value="">all dead letters</option><option value="@router">router: not routed</option></select></label>
      <button id="dl-replay-all" type="button">Replay all shown</button>
      <button id="dl-refresh" type="button" class="quiet">Refresh</button>
    </div>
    <table id="dead-letters">
      <thead><tr><th>#</th><th>Stage</th><th>Destination / reason</th><th>messageId / key</th><th>Attempts</th><th>HTTP</th><th>Last error</th><th>Dead at</th><th></th></tr></thead>
      <tbody></tbody>
    </table>
    <p class="empty" id="dl-empty">No pending dead letters.</p>
    <section><h2>Dead letter</h2><pre id="dl-detail" class="json">Click Inspect to see a dead letter whole.</pre></section>`,
  deploys: html`
    <p id="refusals" class="error-text" hidden></p>
    <table id="deploys">
      <thead><tr><th>#</th><th>Policy</th><th>Image</th><th>State</th><th>Commit / PR</th><th>Timeline</th></tr></thead>
      <tbody></tbody>
    </table>
    <p class="empty" id="deploys-empty">No deploys yet: a registry webhook for an image under a policy starts one.</p>
    <section><h2>Image policies</h2><ul id="policies" class="plain"></ul></section>`,
  config: html`
    <p id="config-version" class="hint"></p>
    <section><h2>Sources</h2>
      <table id="sources"><thead><tr><th>Id</th><th>Name</th><th>Enabled</th><th>Write keys</th><th>Allowed origins</th></tr></thead><tbody></tbody></table>
    </section>
    <section><h2>Destinations</h2>
      <table id="config-destinations"><thead><tr><th>Id</th><th>Type</th><th>Enabled</th><th>Settings</th></tr></thead><tbody></tbody></table>
    </section>
    <section><h2>Routes</h2>
      <table id="routes"><thead><tr><th>Source</th><th>Destination</th><th>Enabled</th><th>Filter</th><th>Transforms</th></tr></thead><tbody></tbody></table>
    </section>`,
};

/**
 * The UI routes: the pages and their two assets.
 *
 * @example app.route('/', createPilotUi());
 */
export function createPilotUi(): Hono {
  const script = readFileSync(new URL('./pilot.js', import.meta.url), 'utf8');
  const style = readFileSync(new URL('./pilot.css', import.meta.url), 'utf8');
  const app = new Hono();
  // Headers per route, not with app.use('*'): mounted at '/', a wildcard middleware would
  // run for every other component's routes too.
  const headers = {
    // Scripts only from here, never inline: injected markup could not run any.
    'Content-Security-Policy': "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'no-referrer',
  };
  for (const page of PAGES) app.get(page.path, (c) => c.html(layout(page, bodies[page.id]), 200, headers));
  app.get('/ui/assets/pilot.js', (c) => c.body(script, 200, { ...headers, 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'no-cache' }));
  app.get('/ui/assets/pilot.css', (c) => c.body(style, 200, { ...headers, 'content-type': 'text/css; charset=utf-8', 'cache-control': 'no-cache' }));
  return app;
}

// Orrery Pilot: the browser side. Plain JavaScript, no build step, no dependencies.
// Every page is a server-rendered skeleton; this script signs in (the admin token lives in
// sessionStorage and goes out as a Bearer header), fetches the API and fills the page in.
// Data is only ever put into the page with textContent, never as HTML.
'use strict';

(() => {
  const TOKEN_KEY = 'orrery.pilot.token';
  const $ = (sel) => document.querySelector(sel);
  const page = document.body.dataset.page;

  /** el('td', { className: 'x' }, 'text', otherNode) */
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === 'dataset') Object.assign(node.dataset, v);
      else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
      else node[k] = v;
    }
    for (const c of children.flat()) if (c !== undefined && c !== null) node.append(c instanceof Node ? c : String(c));
    return node;
  }

  const time = (ms) => new Date(ms).toLocaleTimeString();
  const dateTime = (iso) => new Date(iso).toLocaleString();
  const json = (v) => JSON.stringify(v, null, 2);

  function flash(message, kind = 'ok') {
    const f = $('#flash');
    f.textContent = message;
    f.className = `flash ${kind}`;
    f.hidden = false;
    clearTimeout(flash.timer);
    flash.timer = setTimeout(() => (f.hidden = true), 6000);
  }

  // ---- sign in ---------------------------------------------------------------------------

  const token = () => sessionStorage.getItem(TOKEN_KEY);

  class Unauthorized extends Error {}

  async function api(path, opts = {}) {
    const res = await fetch(path, {
      ...opts,
      headers: { authorization: `Bearer ${token()}`, ...(opts.body ? { 'content-type': 'application/json' } : {}), ...(opts.headers || {}) },
    });
    if (res.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin('The token was refused: sign in again.');
      throw new Unauthorized('unauthorized');
    }
    const body = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(body.message || `${res.status} ${res.statusText}`);
    return body;
  }

  function showLogin(message) {
    $('#login-error').textContent = message || '';
    $('#logout').hidden = true;
    const dialog = $('#login');
    if (!dialog.open) dialog.showModal();
    $('#token').focus();
  }

  $('#login-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const candidate = $('#token').value.trim();
    const res = await fetch('/api/sources', { headers: { authorization: `Bearer ${candidate}` } });
    if (!res.ok) {
      $('#login-error').textContent = res.status === 401 ? 'That token is not valid.' : `Pilot answered ${res.status}.`;
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, candidate);
    $('#token').value = '';
    $('#login').close();
    // Signed in again after a refusal: the page's timers are running already, start afresh.
    if (started) location.reload();
    else start();
  });

  $('#logout').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    location.reload();
  });

  // ---- charts ----------------------------------------------------------------------------

  const SVG = 'http://www.w3.org/2000/svg';

  /** A small inline SVG line chart of `values` (the newest last), with the peak as a tooltip. */
  function sparkline(values, { width = 180, height = 36, kind = 'ok' } = {}) {
    const svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
    svg.setAttribute('width', String(width));
    svg.setAttribute('height', String(height));
    svg.setAttribute('class', `spark ${kind}`);
    svg.setAttribute('role', 'img');
    const max = Math.max(1, ...values);
    const title = document.createElementNS(SVG, 'title');
    title.textContent = `last ${values.at(-1) ?? 0}, peak ${Math.max(0, ...values)} per interval`;
    svg.append(title);
    if (values.length > 1) {
      const step = width / (values.length - 1);
      const pts = values.map((v, i) => `${(i * step).toFixed(1)},${(height - 2 - (v / max) * (height - 4)).toFixed(1)}`);
      const area = document.createElementNS(SVG, 'polygon');
      area.setAttribute('points', `0,${height} ${pts.join(' ')} ${width},${height}`);
      area.setAttribute('class', 'area');
      const line = document.createElementNS(SVG, 'polyline');
      line.setAttribute('points', pts.join(' '));
      line.setAttribute('class', 'line');
      svg.append(area, line);
    }
    return svg;
  }

  // ---- pages -----------------------------------------------------------------------------

  const pages = {};

  pages.debugger = () => {
    const tbody = $('#events tbody');
    const events = [];
    const deliveredList = $('#delivered');
    const filter = $('#source-filter');
    let paused = false;
    let lastSeq = 0;
    let lastDelivered = 0;
    const known = new Set();

    function addSource(id) {
      if (known.has(id)) return;
      known.add(id);
      filter.append(el('option', { value: id }, id));
    }

    function row(e) {
      const m = e.event && typeof e.event === 'object' ? e.event : {};
      const tr = el(
        'tr',
        { className: e.valid ? '' : 'invalid', dataset: { seq: String(e.seq), source: e.sourceId }, onclick: () => ($('#event-detail').textContent = json(e.event)) },
        el('td', {}, time(e.at)),
        el('td', {}, e.sourceId),
        el('td', {}, el('span', { className: `type ${m.type || 'invalid'}` }, m.type || 'invalid')),
        el('td', {}, m.event || m.name || (e.valid ? '' : e.error || '')),
        el('td', {}, m.userId || m.anonymousId || ''),
        el('td', { className: 'mono' }, m.messageId || ''),
      );
      tr.hidden = filter.value !== '' && filter.value !== e.sourceId;
      return tr;
    }

    function addEvent(e) {
      if (e.seq <= lastSeq) return;
      lastSeq = e.seq;
      addSource(e.sourceId);
      events.push(e);
      if (paused) return;
      tbody.prepend(row(e));
      // The server keeps 200 per source; the page keeps 500 rows in all.
      while (tbody.rows.length > 500) tbody.deleteRow(-1);
      $('#events-empty').hidden = true;
    }

    function addDelivered(d) {
      if (d.seq <= lastDelivered) return;
      lastDelivered = d.seq;
      for (const ev of d.events) {
        const m = ev && typeof ev === 'object' ? ev : {};
        deliveredList.prepend(
          el('li', { onclick: () => ($('#event-detail').textContent = json(ev)) }, el('span', { className: 'when' }, time(d.at)), ' ', el('span', { className: `type ${m.type || ''}` }, m.type || '?'), ' ', m.event || m.name || '', ' ', el('span', { className: 'mono' }, m.messageId || '')),
        );
      }
      while (deliveredList.children.length > 200) deliveredList.lastElementChild.remove();
      $('#delivered-empty').hidden = true;
    }

    filter.addEventListener('change', () => {
      for (const tr of tbody.rows) tr.hidden = filter.value !== '' && filter.value !== tr.dataset.source;
    });
    $('#pause').addEventListener('click', () => {
      paused = !paused;
      $('#pause').textContent = paused ? 'Resume' : 'Pause';
      if (!paused) {
        tbody.replaceChildren(...events.slice(-500).reverse().map(row));
      }
    });
    $('#clear').addEventListener('click', () => {
      events.length = 0;
      tbody.replaceChildren();
      deliveredList.replaceChildren();
    });

    function status(text, kind) {
      const s = $('#live-status');
      s.textContent = text;
      s.className = `badge ${kind}`;
    }

    /** SSE over fetch (EventSource cannot send an Authorization header). */
    async function follow() {
      for (;;) {
        try {
          const res = await fetch(`/api/debugger/stream?since=${lastSeq}&deliveredSince=${lastDelivered}`, { headers: { authorization: `Bearer ${token()}` } });
          if (res.status === 401) {
            showLogin('The token was refused: sign in again.');
            return;
          }
          if (!res.ok || !res.body) throw new Error(`stream answered ${res.status}`);
          const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
          let buffer = '';
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buffer += value;
            let end;
            while ((end = buffer.indexOf('\n\n')) >= 0) {
              const block = buffer.slice(0, end);
              buffer = buffer.slice(end + 2);
              let type = 'message';
              const data = [];
              for (const line of block.split('\n')) {
                if (line.startsWith('event: ')) type = line.slice(7);
                else if (line.startsWith('data: ')) data.push(line.slice(6));
              }
              if (data.length === 0) continue;
              const payload = JSON.parse(data.join('\n'));
              if (type === 'hello') status(payload.ready ? 'live' : 'joining…', payload.ready ? 'ok' : 'warn');
              else if (type === 'event') addEvent(payload);
              else if (type === 'delivered') addDelivered(payload);
            }
          }
        } catch (err) {
          status('reconnecting…', 'warn');
          await new Promise((r) => setTimeout(r, 2000));
        }
      }
    }

    return (async () => {
      const [{ events: backlog }, { deliveries }, { sources }] = await Promise.all([
        api('/api/debugger/events'),
        api('/api/demo/deliveries'),
        api('/api/sources'),
      ]);
      for (const s of sources) addSource(s.id);
      backlog.forEach(addEvent);
      deliveries.forEach(addDelivered);
      void follow();
    })();
  };

  pages.health = () => {
    async function refresh() {
      const [summary, series, alerts] = await Promise.all([api('/api/metrics/summary'), api('/api/metrics/series'), api('/api/alerts')]);
      const points = series.points;
      const card = (label, value, kind = '') => el('div', { className: `card ${kind}` }, el('div', { className: 'value' }, String(value)), el('div', { className: 'label' }, label));
      $('#ingest').replaceChildren(
        card('events accepted', summary.ingest.accepted),
        card('requests rejected', summary.ingest.rejected, summary.ingest.rejected > 0 ? 'warn' : ''),
        card('in the disk spool', summary.ingest.spoolDepth ?? '–', summary.ingest.spoolDepth > 0 ? 'bad' : ''),
        card('router lag', summary.router.consumerLag ?? '–'),
        el('div', { className: 'card chart' }, sparkline(points.map((p) => p.ingest.accepted)), el('div', { className: 'label' }, 'accepted / interval')),
      );
      const pending = summary.deadLettersPending || {};
      $('#destinations tbody').replaceChildren(
        ...Object.entries(summary.destinations).map(([id, t]) =>
          el(
            'tr',
            { dataset: { destination: id } },
            el('td', {}, id),
            el('td', {}, t.routed),
            el('td', {}, t.delivered),
            el('td', { className: t.failed > 0 ? 'warn' : '' }, t.failed),
            el('td', { className: (pending[id] || 0) > 0 ? 'bad' : '' }, `${t.deadLettered}`, pending[id] ? el('small', {}, ` (${pending[id]} pending)`) : ''),
            el('td', {}, sparkline(points.map((p) => (p.destinations[id] || {}).delivered || 0))),
            el('td', {}, sparkline(points.map((p) => (p.destinations[id] || {}).failed || 0), { kind: 'bad' })),
          ),
        ),
      );
      $('#alerts-webhook').textContent = alerts.webhookConfigured ? 'Notifications go to PILOT_ALERT_WEBHOOK on firing and on resolve.' : 'PILOT_ALERT_WEBHOOK is not set: alerts show here only.';
      $('#alerts-active').replaceChildren(
        ...(alerts.active.length === 0
          ? [el('li', { className: 'ok' }, 'All clear.')]
          : alerts.active.map((a) => el('li', { className: a.state === 'firing' ? 'bad' : 'warn' }, el('strong', {}, a.state.toUpperCase()), ' ', a.summary, el('small', {}, ` since ${time(a.activeSince)}`)))),
      );
      $('#alerts-recent').replaceChildren(...alerts.recent.slice(0, 20).map((n) => el('li', { className: n.status === 'firing' ? 'bad' : 'ok' }, el('small', {}, dateTime(n.endsAt || n.startsAt)), ' ', n.text)));
      $('#alerts-rules').textContent = json(alerts.rules);
    }
    setInterval(() => refresh().catch(() => {}), 5000);
    return refresh();
  };

  pages['dead-letters'] = () => {
    const select = $('#dl-destination');
    let shown = [];
    async function refresh() {
      const dest = select.value;
      // "@router": the router's letters (events it could not route); else one destination's, or all.
      const filter = dest === '@router' ? '&stage=router' : dest ? `&destination=${encodeURIComponent(dest)}` : '';
      const { deadLetters, pending } = await api(`/api/dead-letters?limit=500${filter}`);
      for (const id of Object.keys(pending)) {
        if (![...select.options].some((o) => o.value === id)) select.append(el('option', { value: id }, id));
      }
      shown = deadLetters;
      $('#dl-empty').hidden = deadLetters.length > 0;
      $('#dead-letters tbody').replaceChildren(
        ...deadLetters.map((l) =>
          el(
            'tr',
            { dataset: { id: String(l.id) } },
            el('td', {}, l.id),
            el('td', {}, l.stage),
            el('td', {}, l.stage === 'router' ? l.reason : l.destinationId),
            el('td', { className: 'mono' }, l.stage === 'router' ? l.key ?? '–' : l.messageId),
            el('td', {}, l.attempts ?? '–'),
            el('td', {}, l.httpStatus ?? '–'),
            el('td', { className: 'error-text', title: l.responseExcerpt || '' }, l.replayError ? `replay failed: ${l.replayError}` : l.lastError ?? l.error),
            el('td', {}, dateTime(l.deadAt)),
            el(
              'td',
              { className: 'actions' },
              el('button', { type: 'button', className: 'quiet', onclick: () => ($('#dl-detail').textContent = json(l)) }, 'Inspect'),
              el('button', { type: 'button', className: 'replay', onclick: () => replay([l.id]) }, 'Replay'),
            ),
          ),
        ),
      );
    }
    async function replay(ids) {
      try {
        const r = await api('/api/dead-letters/replay', { method: 'POST', body: JSON.stringify({ ids }) });
        flash(`Replayed ${r.replayed.length}${r.failed.length ? `, ${r.failed.length} failed: ${r.failed[0].error}` : ''}.`, r.failed.length ? 'bad' : 'ok');
      } catch (err) {
        if (!(err instanceof Unauthorized)) flash(err.message, 'bad');
      }
      await refresh();
    }
    select.addEventListener('change', () => void refresh());
    $('#dl-refresh').addEventListener('click', () => void refresh());
    $('#dl-replay-all').addEventListener('click', () => shown.length > 0 && replay(shown.map((l) => l.id)));
    setInterval(() => refresh().catch(() => {}), 5000);
    return refresh();
  };

  pages.deploys = () => {
    async function refresh() {
      const [{ deploys }, { policies }, { refusals }] = await Promise.all([api('/api/deploys?limit=100'), api('/api/image-policies'), api('/api/webhooks/refusals')]);
      $('#deploys-empty').hidden = deploys.length > 0;
      // A registry with the wrong token retries forever: say so where deploys are missed.
      $('#refusals').hidden = refusals.length === 0;
      $('#refusals').textContent =
        refusals.length === 0 ? '' : `Refused webhooks: ${refusals.map((r) => `${r.receiver} ${r.status} ${r.reason} ×${r.count} (last ${time(r.lastAt)})`).join(' · ')}`;
      $('#deploys tbody').replaceChildren(
        ...deploys.map((d) =>
          el(
            'tr',
            { dataset: { id: String(d.id), state: d.state } },
            el('td', {}, d.id),
            el('td', {}, d.policy),
            el('td', { className: 'mono' }, `${d.repository}:${d.tag}`),
            el('td', {}, el('span', { className: `state ${d.state}` }, d.state), d.error ? el('div', { className: 'error-text' }, d.error) : ''),
            el('td', { className: 'mono' }, d.prUrl && /^https?:\/\//.test(d.prUrl) ? el('a', { href: d.prUrl, rel: 'noreferrer noopener', target: '_blank' }, 'pull request') : d.sha ? d.sha.slice(0, 12) : '–', d.revertSha ? el('div', { title: 'the revert commit' }, `reverted by ${d.revertSha.slice(0, 12)}`) : ''),
            el(
              'td',
              {},
              el(
                'ol',
                { className: 'timeline' },
                d.history.map((h) => el('li', { className: `state ${h.state}`, title: h.detail || '' }, el('span', {}, h.state), el('small', {}, time(Date.parse(h.at))))),
              ),
            ),
          ),
        ),
      );
      $('#policies').replaceChildren(
        ...(policies.length === 0
          ? [el('li', {}, 'No gitops section in the config.')]
          : policies.map((p) => el('li', {}, el('strong', {}, p.name), ' ', el('span', { className: 'mono' }, p.image), ` · ${p.mode} · tags ${JSON.stringify(p.tags)}`))),
      );
    }
    setInterval(() => refresh().catch(() => {}), 3000);
    return refresh();
  };

  pages.config = async () => {
    const cfg = await api('/api/config');
    $('#config-version').textContent = `Control-plane version ${cfg.version}. Changes through the API apply live, everywhere. Write keys are never shown: only the start of their SHA-256.`;
    $('#sources tbody').replaceChildren(
      ...cfg.sources.map((s) => el('tr', {}, el('td', {}, s.id), el('td', {}, s.name || ''), el('td', {}, s.enabled ? 'yes' : 'no'), el('td', { className: 'mono' }, s.keys.map((k) => k.id).join(', ')), el('td', {}, s.allowedOrigins.join(', ')))),
    );
    $('#config-destinations tbody').replaceChildren(
      ...cfg.destinations.map((d) => {
        const { id, type, enabled, ...settings } = d;
        return el('tr', {}, el('td', {}, id), el('td', {}, type), el('td', {}, enabled === false ? 'no' : 'yes'), el('td', {}, el('pre', { className: 'json small' }, json(settings))));
      }),
    );
    $('#routes tbody').replaceChildren(
      ...cfg.routes.map((r) =>
        el('tr', {}, el('td', {}, r.source), el('td', {}, r.destination), el('td', {}, r.enabled === false ? 'no' : 'yes'), el('td', {}, el('pre', { className: 'json small' }, r.filter ? json(r.filter) : 'everything')), el('td', {}, el('pre', { className: 'json small' }, r.transforms.length ? json(r.transforms) : 'none'))),
      ),
    );
  };

  let started = false;
  function start() {
    if (started) return;
    started = true;
    $('#logout').hidden = false;
    Promise.resolve(pages[page] && pages[page]()).catch((err) => {
      if (err instanceof Unauthorized) {
        started = false;
        return;
      }
      flash(err.message, 'bad');
    });
  }

  if (token()) start();
  else showLogin();
})();

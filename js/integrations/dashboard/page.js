// The dashboard page: reads the feed (one sample per interval, Server-Sent Events) and draws it. Text goes in
// with textContent only: nothing from the server is parsed as HTML.
/* global uPlot */
'use strict';
(() => {
  const base = location.pathname.endsWith('/') ? location.pathname : `${location.pathname}/`;
  /** Points kept per chart. */
  const POINTS = 120;
  const COLORS = ['#2f6fde', '#e0632b', '#2a9d55', '#b23a8f', '#c9a21b', '#5a5a5a', '#1aa3b5', '#8a4fd6'];
  const $ = (id) => document.getElementById(id);

  const el = (tag, attrs = {}, ...children) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    for (const c of children) e.append(c);
    return e;
  };
  const fmt = (n, digits = 1) => {
    if (n === null || n === undefined) return '–';
    if (Math.abs(n) >= 1e6) return `${(n / 1e6).toFixed(digits)}M`;
    if (Math.abs(n) >= 1e4) return `${(n / 1e3).toFixed(digits)}k`;
    return Number.isInteger(n) ? String(n) : n.toFixed(digits);
  };
  const us = (n) =>
    n === null || n === undefined
      ? '–'
      : n >= 1e6
        ? `${(n / 1e6).toFixed(2)} s`
        : n >= 1e3
          ? `${(n / 1e3).toFixed(1)} ms`
          : `${n} µs`;
  const age = (ms) => (ms >= 60_000 ? `${(ms / 60_000).toFixed(1)} min` : `${(ms / 1000).toFixed(1)} s`);
  /** A stream's label as text (the server sends a string of 200 characters at most, or none). */
  const label = (v) => (typeof v === 'string' ? v : '');

  /** A time-series chart whose series may change (a worker's partitions): it is made again when they do. */
  class Chart {
    constructor(parent, title) {
      this.box = el('div', { class: 'chart' });
      parent.append(this.box);
      this.title = title;
      this.labels = null;
      this.xs = [];
      this.ys = new Map();
      this.plot = null;
    }
    push(t, values) {
      const labels = Object.keys(values);
      this.xs.push(t);
      for (const label of labels) if (!this.ys.has(label)) this.ys.set(label, new Array(this.xs.length - 1).fill(null));
      for (const [label, ys] of this.ys) ys.push(label in values ? values[label] : null);
      if (this.xs.length > POINTS) {
        this.xs.shift();
        for (const ys of this.ys.values()) ys.shift();
      }
      for (const [label, ys] of this.ys) if (ys.every((y) => y === null)) this.ys.delete(label);
      const key = [...this.ys.keys()].join('\n');
      const data = [this.xs, ...this.ys.values()];
      if (this.plot === null || key !== this.labels) {
        this.plot?.destroy();
        this.labels = key;
        this.plot = new uPlot(
          {
            title: this.title,
            width: 420,
            height: 180,
            scales: { x: { time: true } },
            series: [{}, ...[...this.ys.keys()].map((label, i) => ({ label, stroke: COLORS[i % COLORS.length], width: 1.5 }))],
            axes: [{}, { size: 56 }],
          },
          data,
          this.box,
        );
      } else this.plot.setData(data);
    }
  }

  const figure = (label, key) => {
    const b = el('b', { 'data-figure': key }, '–');
    return [el('div', { class: 'figure' }, b, el('span', {}, label)), b];
  };

  /** One function's card: figures, charts, stream lists. */
  class FnCard {
    constructor(name) {
      this.name = name;
      this.card = el('div', { class: 'card', 'data-fn': name });
      this.card.append(el('h3', {}, name));
      const figures = el('div', { class: 'figures' });
      this.figures = {};
      const defs = [
        ['open streams', 'open'],
        ['opened /s', 'opened'],
        ['completed /s', 'completed'],
        ['failed /s', 'failed'],
        ['cancelled /s', 'cancelled'],
        ['refused /s', 'rejected'],
        ['events in /s', 'eventsIn'],
        ['events out /s', 'eventsOut'],
        ['queue wait p50', 'queueWaitP50Us'],
        ['queue wait p99', 'queueWaitP99Us'],
        ['backpressure waits', 'backpressureWaits'],
      ];
      for (const [label, key] of defs) {
        const [box, b] = figure(label, key);
        figures.append(box);
        this.figures[key] = b;
      }
      this.extra = el('div', { class: 'figures' });
      this.card.append(figures, this.extra);
      const charts = el('div', { class: 'charts' });
      this.card.append(charts);
      this.events = new Chart(charts, 'events /s');
      this.streams = new Chart(charts, 'streams');
      const lists = el('div', { class: 'lists' });
      this.oldest = this.list(lists, 'longest-lived', 'oldest');
      this.buffered = this.list(lists, 'most buffered', 'buffered');
      this.card.append(lists);
    }
    list(parent, title, key) {
      const body = el('tbody');
      const head = el(
        'tr',
        {},
        ...['stream', 'label', 'age', 'in', 'out', 'buffered in', 'buffered out'].map((h) => el('th', {}, h)),
      );
      parent.append(el('div', {}, el('h4', {}, title), el('table', { 'data-list': key }, el('thead', {}, head), body)));
      return body;
    }
    fill(body, rows) {
      body.replaceChildren(
        ...rows.map((r) => {
          const tr = el('tr', { class: 'stream', 'data-stream': r.id, title: 'show this stream' });
          tr.append(el('td', {}, r.id), el('td', { class: 'label', title: label(r.label) }, label(r.label)));
          for (const v of [age(r.ageMs), fmt(r.eventsIn), fmt(r.eventsOut), fmt(r.bufferedIn), fmt(r.bufferedOut)])
            tr.append(el('td', {}, v));
          tr.addEventListener('click', () => drill.show(this.name, r.id, r.label));
          return tr;
        }),
      );
    }
    update(f, t) {
      for (const [key, b] of Object.entries(this.figures)) {
        const v = f[key];
        b.textContent = key.startsWith('queueWait')
          ? us(v)
          : key === 'backpressureWaits'
            ? `${fmt(v)} (in ${fmt(f.scanned)} stream${f.scanned === 1 ? '' : 's'} read)`
            : fmt(v);
      }
      const extra = [];
      if (f.task)
        extra.push(
          ['task in flight', fmt(f.task.inFlight)],
          ['task retries /s', fmt(f.task.retries)],
          ['task skipped', fmt(f.task.skipped)],
        );
      if (f.threads) {
        extra.push(['threads', `${f.threads.loads.length} of ${f.threads.max}`]);
        extra.push(['streams per thread', f.threads.loads.length ? f.threads.loads.join(' / ') : '–']);
      }
      this.extra.replaceChildren(
        ...extra.map(([label, v]) => el('div', { class: 'figure' }, el('b', {}, v), el('span', {}, label))),
      );
      this.events.push(t, { in: f.eventsIn, out: f.eventsOut });
      this.streams.push(t, { open: f.open, 'opened/s': f.opened, 'failed/s': f.failed });
      this.fill(this.oldest, f.oldest);
      this.fill(this.buffered, f.mostBuffered);
    }
  }

  /** One worker's card (Redis or Postgres: its backend is one of its figures). */
  class WorkerCard {
    constructor(w) {
      this.card = el('div', { class: 'card', 'data-worker': `${w.name} ${w.id}` });
      this.card.append(el('h3', {}, `${w.name} · ${w.id}`));
      this.figures = el('div', { class: 'figures' });
      this.card.append(this.figures);
      const charts = el('div', { class: 'charts' });
      this.card.append(charts);
      this.lag = new Chart(charts, 'lag per partition');
    }
    update(w, t) {
      // (A worker of a release before versions sends neither.)
      const byVersion = Object.entries(w.sessionsByVersion ?? {})
        .map(([v, n]) => `${v === '' ? 'none' : v}: ${fmt(n)}`)
        .join(', ');
      const defs = [
        // (A member of the release before sends none.)
        ['backend', w.backend ?? '–'],
        ['version', `${w.version ? w.version : 'none'}${w.superseded ? ' (superseded)' : ''}`],
        ['partitions owned', w.owned.length ? `${w.owned.length} (${w.owned.join(', ')})` : '0'],
        ['lag', fmt(w.lag)],
        ['sessions', fmt(w.sessions)],
        ['held events', fmt(w.held)],
        ['buffered events', fmt(w.buffered)],
        ['waiting keys', fmt(w.waitingKeys)],
        ['replayed sessions', fmt(w.replayedSessions)],
        ['replayed entries', fmt(w.replayed)],
        ['fenced', fmt(w.fenced)],
        ['leases lost', fmt(w.lost)],
        ['errors', fmt(w.errors)],
        ['round trip p99', `${fmt(w.roundTripP99Ms, 2)} ms`],
        ...(byVersion === '' ? [] : [['sessions by version', byVersion]]),
      ];
      this.figures.replaceChildren(
        ...defs.map(([label, v]) => el('div', { class: 'figure' }, el('b', {}, v), el('span', {}, label))),
      );
      const lag = {};
      for (const [p, n] of Object.entries(w.partitionLag)) lag[`p${p}`] = n;
      this.lag.push(t, lag);
    }
  }

  /** A rate's period, ms, as text: `250 ms`, `1 s`, `1.5 s`, `60 s`. */
  const period = (n) => (n < 1000 ? `${fmt(n)} ms` : `${Number.isInteger(n / 1000) ? n / 1000 : (n / 1000).toFixed(1)} s`);
  /** A limiter's limits as text: `concurrency 4 · 100 per 1 s (burst 100) · throttle · keyed`. */
  const limitsText = (l) => {
    if (!l) return '–';
    const parts = [];
    if (l.concurrency !== undefined) parts.push(`concurrency ${fmt(l.concurrency)}`);
    if (l.rate) parts.push(`${fmt(l.rate.limit)} per ${period(l.rate.period)} (burst ${fmt(l.rate.burst)})`);
    parts.push(l.mode);
    if (l.keyed) parts.push('keyed');
    return parts.join(' · ');
  };
  const ms = (n) => (n === null || n === undefined ? '–' : `${fmt(n, 2)} ms`);

  /** The limiters' table (a row each) and one chart of permits in use and waiters. */
  const limiters = {
    chart: null,
    render(rows, t) {
      $('limiters').hidden = rows.length === 0;
      if (rows.length === 0) return;
      $('limiters-table').tBodies[0].replaceChildren(
        ...rows.map((l) => {
          const tr = el('tr', { 'data-limiter': l.name }, el('td', {}, l.name), el('td', {}, l.kind));
          if (typeof l.error === 'string') {
            tr.append(el('td', { colspan: '14', class: 'empty' }, `stats() failed: ${l.error}`));
            return tr;
          }
          const f = l.redis ?? l.postgres;
          const redis = f
            ? f.down
              ? 'away (last call failed)'
              : `${fmt(f.processes)} process${f.processes === 1 ? '' : 'es'}; fleet admitted ${fmt(f.fleetAdmitted)}, rejected ${fmt(f.fleetRejected)}${f.lost > 0 ? `; ${fmt(f.lost)} lost` : ''}`
            : '–';
          const cells = [
            limitsText(l.limits),
            fmt(l.inUse),
            fmt(l.waiting),
            fmt(l.admitted),
            fmt(l.admittedPerSec),
            fmt(l.rejected),
            fmt(l.rejectedPerSec),
            fmt(l.rate),
            ms(l.waitP50Ms),
            ms(l.waitP99Ms),
            l.oldestWaitMs === null || l.oldestWaitMs === undefined ? '–' : ms(l.oldestWaitMs),
            fmt(l.keys),
            Array.isArray(l.waitingKeys) && l.waitingKeys.length > 0
              ? l.waitingKeys.map((k) => `${k.key}: ${fmt(k.waiting)} waiting, ${ms(k.oldestWaitMs)}`).join('; ')
              : '–',
            redis,
          ];
          tr.append(...cells.map((v) => el('td', {}, v)));
          return tr;
        }),
      );
      this.chart ??= new Chart($('limiters-charts'), 'limiters: in use / waiting');
      const values = {};
      for (const l of rows) {
        if (typeof l.error === 'string') continue;
        values[`${l.name} in use`] = l.inUse;
        values[`${l.name} waiting`] = l.waiting;
      }
      this.chart.push(t, values);
    },
  };

  /** The drill-down: one stream's figures, read every second while open. */
  const drill = {
    timer: null,
    async read(fn, id) {
      const res = await fetch(`${base}stream?fn=${encodeURIComponent(fn)}&id=${encodeURIComponent(id)}`, { cache: 'no-store' });
      const body = res.headers.get('content-type')?.startsWith('application/json') ? await res.json() : null;
      const rows = $('drill-figures').tBodies[0];
      if (body === null || body.listed !== true) {
        $('drill-note').textContent =
          body === null ? `The server answered ${res.status}.` : 'This stream has finished (or was collected).';
        return false;
      }
      $('drill-note').textContent = '';
      const figures = [
        ['label', label(body.label)],
        ['state', body.state],
        ['age', age(body.ageMs)],
        ['events in', fmt(body.eventsIn)],
        ['events out', fmt(body.eventsOut)],
        ['buffered in', fmt(body.bufferedIn)],
        ['buffered out', fmt(body.bufferedOut)],
        ['backpressure waits', fmt(body.backpressureWaits)],
        ['queue wait p50', us(body.queueWaitP50Us)],
        ['queue wait p99', us(body.queueWaitP99Us)],
      ];
      rows.replaceChildren(...figures.map(([k, v]) => el('tr', { 'data-figure': k }, el('th', {}, k), el('td', {}, v))));
      return true;
    },
    show(fn, id, name) {
      this.hide();
      $('drill-title').textContent = `${fn} · ${id}${label(name) ? ` · ${label(name)}` : ''}`;
      $('drill-figures').tBodies[0].replaceChildren();
      $('drill').hidden = false;
      const poll = async () => {
        let again = false;
        try {
          again = await this.read(fn, id);
        } catch {
          $('drill-note').textContent = 'The server did not answer.';
        }
        if (again && !$('drill').hidden) this.timer = setTimeout(poll, 1000);
      };
      void poll();
    },
    hide() {
      clearTimeout(this.timer);
      $('drill').hidden = true;
    },
  };
  $('drill-close').addEventListener('click', () => drill.hide());

  const fnCards = new Map();
  const workerCards = new Map();

  /** The fleet view (the `fleet` route), read again with each sample while the dashboard has a fleet. */
  const fleet = {
    reading: false,
    async read() {
      if (this.reading) return;
      this.reading = true;
      try {
        const res = await fetch(`${base}fleet`, { cache: 'no-store' });
        if (!res.headers.get('content-type')?.startsWith('application/json')) {
          $('fleet-note').textContent = `The server answered ${res.status}.`;
          return;
        }
        this.render(await res.json());
      } catch {
        $('fleet-note').textContent = 'The server did not answer.';
      } finally {
        this.reading = false;
      }
    },
    rows(table, rows, cells) {
      $(table).tBodies[0].replaceChildren(
        ...rows.map((r) => el('tr', { 'data-row': String(r.name ?? r.id) }, ...cells(r).map((v) => el('td', {}, v)))),
      );
    },
    render(view) {
      $('fleet-note').textContent =
        `${view.members.length} member${view.members.length === 1 ? '' : 's'}${view.truncated ? ' (the first by id: the fleet has more)' : ''}, read ${new Date(view.at).toLocaleTimeString()}`;
      this.rows('fleet-functions', view.functions, (f) => [
        f.name,
        fmt(f.members),
        fmt(f.open),
        fmt(f.opened),
        fmt(f.failed),
        fmt(f.eventsIn),
        fmt(f.eventsOut),
        us(f.queueWaitP99Us),
      ]);
      this.rows('fleet-workers', view.workers ?? view.redis, (w) => [
        w.name,
        w.backend ?? '–',
        fmt(w.workers),
        Object.entries(w.versions ?? {})
          .map(([v, n]) => `${v === '' ? 'none' : v} × ${fmt(n)}`)
          .join(', '),
        fmt(w.superseded ?? 0),
        fmt(w.owned),
        fmt(w.sessions),
        fmt(w.lag),
        fmt(w.errors),
        `${fmt(w.roundTripP99Ms, 2)} ms`,
      ]);
      this.rows('fleet-members', view.members, (m) => [
        m.id,
        new Date(m.at).toLocaleTimeString(),
        fmt(m.sample.functions.reduce((n, f) => n + (f.open ?? 0), 0)),
        fmt((m.sample.workers ?? m.sample.redis).reduce((n, w) => n + (w.sessions ?? 0), 0)),
      ]);
    },
  };

  const render = (sample) => {
    const t = sample.at / 1000;
    if (typeof sample.fleet === 'string') {
      $('fleet').hidden = false;
      $('fleet-name').textContent = sample.fleet;
      void fleet.read();
    }
    $('sampled').textContent = `sampled ${new Date(sample.at).toLocaleTimeString()}`;
    $('no-functions').hidden = sample.functions.length > 0;
    for (const f of sample.functions) {
      let card = fnCards.get(f.name);
      if (!card) {
        card = new FnCard(f.name);
        fnCards.set(f.name, card);
        $('functions').append(card.card);
      }
      card.update(f, t);
    }
    const workers = sample.workers ?? sample.redis;
    $('workers').hidden = workers.length === 0;
    for (const w of workers) {
      const key = `${w.name} ${w.id}`;
      let card = workerCards.get(key);
      if (!card) {
        card = new WorkerCard(w);
        workerCards.set(key, card);
        $('workers').append(card.card);
      }
      card.update(w, t);
    }
    limiters.render(Array.isArray(sample.limiters) ? sample.limiters : [], t);
    $('no-errors').hidden = sample.errors.length > 0;
    $('errors').tBodies[0].replaceChildren(
      ...sample.errors.map((e) =>
        el(
          'tr',
          { 'data-error': e.id },
          ...[new Date(e.at).toLocaleTimeString(), e.fn, e.id, e.code, e.message ?? '(hidden: showValues)'].map((v) =>
            el('td', {}, v),
          ),
        ),
      ),
    );
  };

  const feed = new EventSource(`${base}feed`);
  feed.onopen = () => {
    $('status').textContent = 'live';
    $('status').dataset.state = 'live';
  };
  feed.onerror = () => {
    $('status').textContent = 'reconnecting';
    $('status').dataset.state = 'reconnecting';
  };
  feed.onmessage = (message) => render(JSON.parse(message.data));
})();

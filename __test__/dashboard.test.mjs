// velo-stream/dashboard over HTTP (the page in a browser: dashboard-browser.test.mjs): its options, its routes on
// node:http, Express and Fastify, authorize, the feed's figures, its bounds, and sampling only while a page is open.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import express from 'express';
import Fastify from 'fastify';
import { streamFn, task } from 'velo-stream';
import { dashboard } from 'velo-stream/dashboard';
import { listen, openFeed } from './helpers/dashboard-feed.mjs';

const kTotals = Symbol.for('velo-stream.totals');
const kWatch = Symbol.for('velo-stream.watch');

const relayFn = (config = {}) =>
  streamFn(async function* relay(events) {
    for await (const e of events) {
      if (e === 'fail') throw Object.assign(new Error('refused the card 4111-1111'), { code: 'E_REFUSED' });
      yield e;
    }
  }, config);

/** The first of the next `max` samples (one per interval: bounded) for which `check` is true. */
async function sampleWhere(feed, check, what, max = 100) {
  for (let i = 0; i < max; i++) {
    const sample = await feed.next();
    if (check(sample)) return sample;
  }
  assert.fail(`no sample with ${what} in ${max}`);
}

/** Waits (bounded) until `check()` is true. */
async function until(check, what) {
  for (let i = 0; i < 400; i++) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  assert.fail(`still not: ${what}`);
}

/** Whether `ref`'s target is collected within 50 collections. (Each runs in a job of its own: a `deref()` keeps its target until its job ends.) */
async function collected(ref) {
  for (let i = 0; i < 50; i++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
    globalThis.gc();
    if (ref.deref() === undefined) return true;
  }
  return false;
}

test('options: checked at the call, with stable codes', () => {
  const fn = relayFn();
  const other = relayFn();
  const cases = [
    [null, 'ERR_INVALID_ARG_TYPE'],
    [{ functoins: [fn] }, 'ERR_INVALID_ARG_VALUE'],
    [{ functions: fn }, 'ERR_INVALID_ARG_TYPE'],
    [{ functions: 'relay' }, 'ERR_INVALID_ARG_TYPE'],
    [{ functions: [async function* () {}] }, 'ERR_INVALID_ARG_TYPE'],
    [{ functions: [fn, other] }, 'ERR_INVALID_ARG_VALUE'],
    [{ redisWorkers: [{ name: 'x', id: 'y', stats() {} }] }, 'ERR_INVALID_ARG_TYPE'],
    [{ workers: [{ name: 'x', id: 'y', stats() {} }] }, 'ERR_INVALID_ARG_TYPE'],
    [{ workers: 'w' }, 'ERR_INVALID_ARG_TYPE'],
    // `redisWorkers` is the old name of `workers`: one of the two.
    [{ workers: [], redisWorkers: [] }, 'ERR_INVALID_ARG_VALUE'],
    [{ authorize: true }, 'ERR_INVALID_ARG_TYPE'],
    [{ interval: 50 }, 'ERR_OUT_OF_RANGE'],
    [{ interval: 1.5e3 + 0.5 }, 'ERR_OUT_OF_RANGE'],
    [{ maxClients: 0 }, 'ERR_OUT_OF_RANGE'],
    [{ scan: -1 }, 'ERR_OUT_OF_RANGE'],
    [{ showValues: 'yes' }, 'ERR_INVALID_ARG_TYPE'],
  ];
  for (const [options, code] of cases) assert.throws(() => dashboard(options), { code }, JSON.stringify(options));
  // The same function twice is one entry.
  assert.doesNotThrow(() => dashboard({ functions: [fn, fn] }));
});

test('routes on node:http: the page and its files with a strict CSP, nothing cached; 404 elsewhere, 405 for other methods', async () => {
  const { base, close } = await listen(dashboard({ functions: [relayFn()] }));
  try {
    const page = await fetch(`${base}/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type'), /^text\/html/);
    assert.match(page.headers.get('content-security-policy'), /default-src 'none'; script-src 'self'/);
    assert.equal(page.headers.get('cache-control'), 'no-store');
    const html = await page.text();
    assert.match(html, /<script src="uplot.js"><\/script>/);
    assert.doesNotMatch(html, /https?:\/\//, 'nothing loaded from elsewhere');
    for (const [path, type] of [
      ['page.js', /^text\/javascript/],
      ['uplot.js', /^text\/javascript/],
      ['uplot.css', /^text\/css/],
      ['page.css', /^text\/css/],
    ]) {
      const res = await fetch(`${base}/${path}`);
      assert.equal(res.status, 200, path);
      assert.match(res.headers.get('content-type'), type, path);
      assert.ok((await res.text()).length > 100, path);
    }
    assert.equal((await fetch(`${base}/favicon.ico`)).status, 404);
    const post = await fetch(`${base}/feed`, { method: 'POST' });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get('allow'), 'GET, HEAD');
  } finally {
    await close();
  }
});

test('Express: served under its mount path only (the bare path redirects to the slash); other routes reach the app', async () => {
  const app = express();
  app.use('/ops/dash', dashboard({ functions: [relayFn()] }));
  app.get('/ops/dash/other', (_req, res) => res.send('app'));
  app.get('/', (_req, res) => res.send('home'));
  const appErrors = [];
  app.use((error, _req, res, _next) => {
    appErrors.push(error.message);
    res.status(500).end();
  });
  const { base, close } = await listen(app);
  try {
    // Paths under the mount that are not exactly a route are the app's (a 404 here), and a request-target
    // `new URL` refuses (`//`) never throws into the app.
    for (const path of ['/ops/dash//', '/ops/dash/a/page.js', '/ops/dash/page.js/']) {
      assert.equal((await fetch(`${base}${path}`)).status, 404, path);
    }
    assert.deepEqual(appErrors, []);
    const bare = await fetch(`${base}/ops/dash?x=1`, { redirect: 'manual' });
    assert.equal(bare.status, 308);
    assert.equal(bare.headers.get('location'), '/ops/dash/?x=1');
    assert.equal((await fetch(`${base}/ops/dash/`)).status, 200);
    assert.equal((await fetch(`${base}/ops/dash/page.js`)).status, 200);
    assert.equal(await (await fetch(`${base}/ops/dash/other`)).text(), 'app');
    assert.equal(await (await fetch(`${base}/`)).text(), 'home');
    const feed = await openFeed(`${base}/ops/dash/feed`);
    assert.equal(feed.status, 200);
    assert.equal((await feed.next()).functions[0].name, 'relay');
    feed.close();
  } finally {
    await close();
  }
});

test('Fastify: the plugin serves the page and the feed under its prefix', async () => {
  const app = Fastify();
  const dash = dashboard({ functions: [relayFn()] });
  await app.register(dash.fastify, { prefix: '/dash' });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const base = `http://127.0.0.1:${app.server.address().port}`;
  try {
    assert.equal((await fetch(`${base}/dash`, { redirect: 'manual' })).status, 308);
    const page = await fetch(`${base}/dash/`);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /velo-stream dashboard/);
    assert.equal((await fetch(`${base}/dash/uplot.js`)).status, 200);
    // Other methods get 405, as on node:http and Express.
    for (const method of ['POST', 'PUT', 'DELETE']) {
      assert.equal((await fetch(`${base}/dash/feed`, { method })).status, 405, method);
    }
    const feed = await openFeed(`${base}/dash/feed`);
    assert.equal((await feed.next()).functions[0].name, 'relay');
    assert.equal(dash.clients, 1);
    feed.close();
    await until(() => dash.clients === 0, 'the feed dropped');
  } finally {
    await app.close();
  }
});

test('authorize(req) is asked for every route; anything but true (a false, a throw, a rejection) is 403', async () => {
  const asked = [];
  const answers = { yes: true, no: false, truthy: 1, throws: null, rejects: 'reject', async: 'async' };
  const dash = dashboard({
    functions: [relayFn()],
    authorize: (req) => {
      const who = req.headers['x-who'];
      asked.push(new URL(req.url, 'http://x').pathname);
      if (who === 'throws') throw new Error('no');
      if (who === 'rejects') return Promise.reject(new Error('no'));
      if (who === 'async') return Promise.resolve(true);
      return answers[who];
    },
  });
  const { base, close } = await listen(dash);
  try {
    for (const path of ['/', '/page.js', '/uplot.js', '/feed', '/stream?fn=relay&id=s1']) {
      for (const who of ['no', 'truthy', 'throws', 'rejects']) {
        assert.equal((await fetch(base + path, { headers: { 'x-who': who } })).status, 403, `${path} ${who}`);
      }
    }
    assert.equal(dash.clients, 0);
    assert.equal((await fetch(`${base}/`, { headers: { 'x-who': 'yes' } })).status, 200);
    assert.equal((await fetch(`${base}/page.js`, { headers: { 'x-who': 'async' } })).status, 200);
    assert.deepEqual(new Set(asked), new Set(['/', '/page.js', '/uplot.js', '/feed', '/stream']));
  } finally {
    await close();
  }
});

test('the feed: per-function figures as rates, open streams listed oldest first, the most buffered found, failures with code and id but no message', async () => {
  const relay = relayFn({ buffer: 8 });
  const dash = dashboard({ functions: [relay], interval: 100 });
  const { base, close } = await listen(dash);
  const before = relay.open();
  const stalled = relay.open(); // nobody reads it: its outputs fill its buffer
  const streams = [before, stalled, relay.open(), relay.open()];
  const feed = await openFeed(`${base}/feed`);
  try {
    for (let i = 0; i < 8; i++) await stalled.send(i);
    const first = await feed.next();
    const fn = first.functions[0];
    assert.equal(fn.name, 'relay');
    assert.equal(fn.open, 4);
    assert.deepEqual(
      fn.oldest.map((r) => r.id),
      streams.map((s) => s.id),
    );
    // Events sent between two samples show as a rate.
    const reader = (async () => {
      for await (const _ of streams[2]);
    })();
    await feed.next();
    for (let i = 0; i < 50; i++) await streams[2].send(i);
    let sample = await sampleWhere(feed, (x) => x.functions[0].eventsIn > 0, 'events in');
    assert.ok(sample.functions[0].eventsIn > 0 && sample.functions[0].eventsOut > 0);
    assert.equal(sample.functions[0].mostBuffered[0].id, stalled.id);
    assert.equal(sample.functions[0].mostBuffered[0].bufferedOut, 8);

    const failing = relay.open();
    await failing.send('fail');
    await assert.rejects(failing.recv(), { code: 'E_REFUSED' });
    sample = await sampleWhere(feed, (x) => x.errors.length > 0, 'an error');
    assert.equal(sample.errors[0].id, failing.id);
    assert.equal(sample.errors[0].fn, 'relay');
    assert.equal(sample.errors[0].code, 'E_REFUSED');
    assert.ok(Math.abs(sample.errors[0].at - Date.now()) < 60_000);
    assert.equal('message' in sample.errors[0], false);
    assert.doesNotMatch(JSON.stringify(sample), /4111/);
    // A finished stream leaves the lists.
    assert.ok(!sample.functions[0].oldest.some((r) => r.id === failing.id));
    await Promise.all(streams.map((s) => s.cancel()));
    await reader;
  } finally {
    feed.close();
    await close();
  }
});

test('a stream whose handler finished with outputs unread: not in `open` (stats), still read by the scan, its outputs among the most buffered', async () => {
  const relay = relayFn({ buffer: 8 });
  const dash = dashboard({ functions: [relay], interval: 100 });
  const { base, close } = await listen(dash);
  const finished = [];
  for (let i = 0; i < 3; i++) {
    const s = relay.open();
    await s.send(i);
    await s.end();
    finished.push(s);
  }
  const live = relay.open();
  const feed = await openFeed(`${base}/feed`);
  try {
    const sample = await sampleWhere(feed, (x) => x.functions[0].open === 1, 'the finished streams counted out of open');
    const fn = sample.functions[0];
    assert.equal(fn.scanned, 4, 'the scan reads the three finished streams with unread outputs and the open one');
    assert.deepEqual(fn.mostBuffered.map((r) => r.id).sort(), finished.map((s) => s.id).sort());
    for (const s of finished) assert.equal(s.state, 'ending');
  } finally {
    feed.close();
    await live.cancel();
    await Promise.all(finished.map((s) => s.cancel()));
    await close();
  }
});

test('a pipe is shown as one function: its own streams listed and counted', async () => {
  const double = streamFn(async function* double(events) {
    for await (const e of events) yield e * 2;
  });
  const piped = relayFn().pipe(double);
  const { base, close } = await listen(dashboard({ functions: [piped], interval: 100 }));
  const feed = await openFeed(`${base}/feed`);
  const stream = piped.open();
  try {
    await stream.send(21);
    assert.equal(await stream.recv(), 42);
    const sample = await sampleWhere(feed, (x) => x.functions[0].oldest.length > 0, 'the pipe stream listed');
    assert.equal(sample.functions[0].name, 'relay|double');
    assert.equal(sample.functions[0].open, 1);
    assert.deepEqual(
      sample.functions[0].oldest.map((r) => [r.id, r.eventsIn, r.eventsOut]),
      [[stream.id, 1, 1]],
    );
  } finally {
    await stream.cancel();
    feed.close();
    await close();
  }
});

test('showValues: true shows error messages', async () => {
  const relay = relayFn();
  const { base, close } = await listen(dashboard({ functions: [relay], interval: 100, showValues: true }));
  const feed = await openFeed(`${base}/feed`);
  try {
    const failing = relay.open();
    await failing.send('fail');
    await assert.rejects(failing.recv());
    const sample = await sampleWhere(feed, (x) => x.errors.length > 0, 'an error');
    assert.equal(sample.errors[0].message, 'refused the card 4111-1111');
  } finally {
    feed.close();
    await close();
  }
});

test('latest errors: only the failures of the functions shown, not those of another function of the same name', async () => {
  const relay = relayFn();
  // Two other functions named "relay": one made apart, and one of relay's settings (as `sessions(config)` makes).
  const namesake = relayFn();
  const configured = relay.withConfig({ buffer: 4 });
  const { base, close } = await listen(dashboard({ functions: [relay], interval: 100, showValues: true }));
  const feed = await openFeed(`${base}/feed`);
  try {
    for (const other of [namesake, configured]) await assert.rejects(other.run(['fail']), { code: 'E_REFUSED' });
    const own = relay.open();
    await own.send('fail');
    await assert.rejects(own.recv(), { code: 'E_REFUSED' });
    const sample = await sampleWhere(feed, (x) => x.errors.length > 0, 'an error');
    assert.deepEqual(
      sample.errors.map((e) => [e.fn, e.id]),
      [['relay', own.id]],
    );
  } finally {
    feed.close();
    await close();
  }
});

test('an error whose every getter throws is listed by its kind; the feed goes on', async () => {
  const hostile = new Proxy(
    {},
    {
      get() {
        throw new Error('no');
      },
      getPrototypeOf() {
        throw new Error('no');
      },
    },
  );
  const thrower = streamFn(async function* thrower(events) {
    for await (const _ of events) throw hostile;
  });
  const { base, close } = await listen(dashboard({ functions: [thrower], interval: 100, showValues: true }));
  const feed = await openFeed(`${base}/feed`);
  try {
    const stream = thrower.open();
    await stream.send(1);
    // (Not assert.rejects: it would read the error's properties.)
    let rejected = false;
    await stream.recv().then(
      () => {},
      () => (rejected = true),
    );
    assert.ok(rejected);
    const sample = await sampleWhere(feed, (x) => x.errors.length > 0, 'the error');
    assert.equal(sample.errors[0].code, 'object');
    assert.match(sample.errors[0].message, /cannot be shown as text/);
    await feed.next();
  } finally {
    feed.close();
    await close();
  }
});

test('task stages: calls in flight and retries in the feed', async () => {
  let release;
  const gate = new Promise((resolve) => (release = resolve));
  let calls = 0;
  const slow = task(
    async (n) => {
      if (calls++ === 0) throw new Error('first call fails');
      await gate;
      return n;
    },
    { name: 'slow', concurrency: 4, retry: { attempts: 2, delay: 1 } },
  );
  const { base, close } = await listen(dashboard({ functions: [slow], interval: 100 }));
  const feed = await openFeed(`${base}/feed`);
  const stream = slow.open();
  try {
    for (let i = 0; i < 3; i++) await stream.send(i);
    let retries = 0;
    const sample = await sampleWhere(
      feed,
      (x) => (retries += x.functions[0].task?.retries ?? 0) > 0 && x.functions[0].task.inFlight >= 3,
      'a retry and three calls in flight',
    );
    assert.equal(sample.functions[0].task.inFlight, 3);
  } finally {
    release();
    await stream.cancel();
    feed.close();
    await close();
  }
});

test("a stream's figures by id (drill-down): bounded parameters, and a finished or unknown stream is not an error", async () => {
  const relay = relayFn();
  const { base, close } = await listen(dashboard({ functions: [relay] }));
  const stream = relay.open();
  try {
    await stream.send(1);
    await stream.recv();
    const res = await fetch(`${base}/stream?fn=relay&id=${stream.id}`);
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.listed, true);
    assert.equal(body.id, stream.id);
    assert.equal(body.state, 'open');
    assert.equal(body.eventsIn, 1);
    assert.equal(body.eventsOut, 1);
    assert.deepEqual(await (await fetch(`${base}/stream?fn=relay&id=s999999`)).json(), {
      fn: 'relay',
      id: 's999999',
      listed: false,
    });
    await stream.cancel();
    assert.equal((await (await fetch(`${base}/stream?fn=relay&id=${stream.id}`)).json()).listed, false);
    assert.equal((await fetch(`${base}/stream?fn=relay`)).status, 400);
    assert.equal((await fetch(`${base}/stream?fn=relay&id=${'x'.repeat(201)}`)).status, 400);
  } finally {
    await close();
  }
});

test("a function's name over 200 characters is shown cut, in samples and errors alike, and the drill-down finds the function by it", async () => {
  const name = 'n'.repeat(1_000_000);
  const shown = `${'n'.repeat(199)}…`;
  const long = relayFn({ name });
  // Names cut alike are one name on the page: two such functions are refused as two of one name are.
  assert.throws(() => dashboard({ functions: [long, relayFn({ name: `${name}x` })] }), { code: 'ERR_INVALID_ARG_VALUE' });
  const { base, close } = await listen(dashboard({ functions: [long], interval: 100 }));
  const open = long.open();
  const failing = long.open();
  const feed = await openFeed(`${base}/feed`);
  try {
    await failing.send('fail');
    await assert.rejects(failing.recv(), { code: 'E_REFUSED' });
    const sample = await sampleWhere(feed, (x) => x.errors.length > 0, 'the error');
    assert.equal(sample.functions[0].name, shown);
    assert.deepEqual(
      sample.errors.map((e) => e.fn),
      [shown],
    );
    assert.ok(JSON.stringify(sample).length < 5_000, 'a sample holds the name as shown only');
    const res = await fetch(`${base}/stream?fn=${encodeURIComponent(shown)}&id=${open.id}`);
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.deepEqual([body.fn, body.id, body.listed], [shown, open.id, true]);
  } finally {
    feed.close();
    await open.cancel();
    await close();
  }
});

/** A GET of `path` exactly as given (fetch() would resolve its dot segments first): the status. */
function rawStatus(base, path) {
  return new Promise((resolve, reject) => {
    const { hostname, port } = new URL(base);
    const req = http.get({ hostname, port, path }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on('error', reject);
  });
}

test('a path with dot segments (plain, percent-encoded, behind a backslash or before a #) is no route of the dashboard (not resolved to one)', async () => {
  const { base, close } = await listen(dashboard({ functions: [relayFn()] }));
  const app = express();
  app.use('/dashboard', dashboard({ functions: [relayFn()] }));
  app.use((_req, res) => res.status(404).end('the app\n'));
  const onExpress = await listen(app);
  try {
    for (const path of [
      '/x/%2e%2e/page.js',
      '/x/%2E%2E/',
      '/x/./page.js',
      '/x/%2e/page.js',
      '/x/..#',
      '/x\\..\\page.js',
      '/x/%2e%2e\\page.js',
    ]) {
      assert.equal(await rawStatus(base, path), 404, path);
    }
    assert.equal(await rawStatus(base, '/x/page.js'), 200);
    for (const path of [
      '/dashboard/%2e%2e/',
      '/dashboard/x/%2e%2e/page.js',
      '/dashboard/%2e/page.js',
      '/dashboard/%2e%2e#',
      '/dashboard/x\\..\\page.js',
    ]) {
      assert.equal(await rawStatus(onExpress.base, path), 404, path);
    }
    assert.equal(await rawStatus(onExpress.base, '/dashboard/page.js'), 200);
  } finally {
    await close();
    await onExpress.close();
  }
});

test('a feed whose client leaves while authorize() is answering holds no client place', async () => {
  let answered = 0;
  let waiting = 0;
  const dash = dashboard({
    functions: [relayFn()],
    maxClients: 2,
    interval: 100,
    // The first two answer once their clients have gone; later ones at once.
    authorize: (req) =>
      answered + waiting >= 2
        ? true
        : (waiting++,
          new Promise((resolve) => req.socket.once('close', () => setImmediate(() => (waiting--, answered++, resolve(true)))))),
  });
  const { base, close } = await listen(dash);
  try {
    const gone = [];
    for (let i = 0; i < 2; i++) {
      const req = http.get(`${base}/feed`);
      req.on('error', () => {});
      gone.push(new Promise((resolve) => req.on('close', resolve)));
      setTimeout(() => req.destroy(), 50);
    }
    await Promise.all(gone);
    // The two authorize() calls answer after their clients left: no feed starts for them.
    await until(() => answered === 2, 'both answered');
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(dash.clients, 0);
    const feed = await openFeed(`${base}/feed`);
    assert.equal(feed.status, 200);
    await feed.next();
    feed.close();
  } finally {
    await close();
  }
});

test('bounded: at most maxClients feeds (503 past it)', async () => {
  const dash = dashboard({ functions: [relayFn()], maxClients: 2 });
  const { base, close } = await listen(dash);
  const feeds = [await openFeed(`${base}/feed`), await openFeed(`${base}/feed`)];
  try {
    const third = await fetch(`${base}/feed`);
    assert.equal(third.status, 503);
    assert.equal(third.headers.get('retry-after'), '1');
    assert.equal(dash.clients, 2);
    feeds[0].close();
    await until(() => dash.clients === 1, 'one feed dropped');
    const again = await openFeed(`${base}/feed`);
    assert.equal(again.status, 200);
    feeds.push(again);
  } finally {
    for (const f of feeds) f.close();
    await close();
  }
});

test('sampled only while a feed is connected, once per interval, never per event', async () => {
  const relay = relayFn();
  let reads = 0;
  // The function as the dashboard sees it, counting the reads of its counters.
  const counted = Object.create(relay, {
    stats: { value: () => (reads++, relay.stats()) },
    [kTotals]: { value: (bounds) => relay[kTotals](bounds) },
    [kWatch]: { value: () => relay[kWatch]() },
  });
  const dash = dashboard({ functions: [counted], interval: 100 });
  const { base, close } = await listen(dash);
  const stream = relay.open();
  const reader = (async () => {
    for await (const _ of stream);
  })();
  try {
    for (let i = 0; i < 1000; i++) await stream.send(i);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(reads, 0, 'no page, no sample');
    const feed = await openFeed(`${base}/feed`);
    for (let i = 0; i < 3; i++) await feed.next();
    for (let i = 0; i < 1000; i++) await stream.send(i);
    await feed.next();
    assert.ok(reads >= 4 && reads <= 6, `one read per sample: ${reads}`);
    feed.close();
    await until(() => dash.clients === 0, 'the feed dropped');
    const after = reads;
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(reads, after, 'the last page gone, sampling stopped');
    await stream.cancel();
    await reader;
  } finally {
    await close();
  }
});

test('listed weakly: an abandoned open stream of a watched function is still collected', async () => {
  // No idle clock: a running one holds its stream until it ends it.
  const relay = relayFn({ idleTimeout: 0 });
  dashboard({ functions: [relay] });
  let collected = false;
  const registry = new FinalizationRegistry(() => (collected = true));
  (() => {
    const s = relay.open();
    registry.register(s, 'abandoned');
  })();
  for (let i = 0; i < 50 && !collected; i++) {
    globalThis.gc();
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.ok(collected, 'the abandoned stream was collected');
  await until(() => relay.stats().open === 0, 'its slot given back');
});

test("a function's list of streams is held by the function and its dashboards only: collected with them", async () => {
  const list = await (async () => {
    const relay = relayFn();
    const dash = dashboard({ functions: [relay] });
    const failing = relay.open();
    await failing.send('fail');
    await assert.rejects(failing.recv(), { code: 'E_REFUSED' });
    await dash.close();
    return new WeakRef(relay[kWatch]());
  })();
  assert.equal(await collected(list), true, 'the list was collected');
});

test('close() stops listing: streams opened after it are not listed, unless another open dashboard shows the function', async () => {
  const relay = relayFn();
  const first = dashboard({ functions: [relay] });
  const other = dashboard({ functions: [relay] });
  await first.close();
  const { base: otherBase, close: closeOther } = await listen(other);
  const stillShown = relay.open();
  try {
    // `other` still shows relay: its new streams are listed.
    assert.equal((await (await fetch(`${otherBase}/stream?fn=relay&id=${stillShown.id}`)).json()).listed, true);
  } finally {
    await closeOther();
    await other.close();
  }
  // Neither shows it now: what it opens, and its failures, are kept by no one.
  const unlisted = relay.open();
  const failing = relay.open();
  await failing.send('fail');
  await assert.rejects(failing.recv(), { code: 'E_REFUSED' });
  const later = dashboard({ functions: [relay], interval: 100 });
  const listed = relay.open();
  const { base, close } = await listen(later);
  const feed = await openFeed(`${base}/feed`);
  try {
    const sample = await feed.next();
    assert.deepEqual(
      sample.functions[0].oldest.map((r) => r.id),
      [listed.id],
    );
    assert.deepEqual(sample.errors, []);
  } finally {
    feed.close();
    await Promise.all([stillShown, unlisted, listed].map((s) => s.cancel()));
    await close();
    await later.close();
  }
});

test('a dashboard collected without close() stops listing too', async () => {
  const relay = relayFn();
  const gone = new WeakRef(dashboard({ functions: [relay] }));
  assert.equal(await collected(gone), true, 'the dashboard was collected');
  // Its lists are given back by a finalizer, after the collection: a few more turns for it to run.
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setTimeout(resolve, 10));
  const unlisted = relay.open();
  const later = dashboard({ functions: [relay] });
  const { base, close } = await listen(later);
  try {
    assert.equal((await (await fetch(`${base}/stream?fn=relay&id=${unlisted.id}`)).json()).listed, false);
  } finally {
    await unlisted.cancel();
    await close();
    await later.close();
  }
});

test('HEAD of the feed is answered at once with its headers and holds no client place', async () => {
  const dash = dashboard({ functions: [relayFn()], maxClients: 1 });
  const { base, close } = await listen(dash);
  try {
    for (let i = 0; i < 3; i++) {
      const head = await fetch(`${base}/feed`, { method: 'HEAD' });
      assert.equal(head.status, 200);
      assert.match(head.headers.get('content-type'), /text\/event-stream/);
    }
    assert.equal(dash.clients, 0);
    const feed = await openFeed(`${base}/feed`);
    assert.equal(feed.status, 200, 'the one place is free');
    feed.close();
  } finally {
    await close();
  }
});

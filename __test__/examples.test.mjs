// Every example runs and computes the right thing.
import { test } from 'node:test';
import { once } from 'node:events';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { camera, motionDetector } from '../examples/video-motion.mjs';
import { burst, rollingWindow } from '../examples/iot-rolling-window.mjs';
import { jsonExtractor, SAMPLE, tokenize } from '../examples/llm-json-extract.mjs';
import { fraudScorer, session } from '../examples/fraud-scoring.mjs';
import { run } from './helpers/child.mjs';
import { startRedis } from './helpers/redis-server.mjs';

const example = (name) => fileURLToPath(new URL(`../examples/${name}`, import.meta.url));

test('video motion: motion on exactly the frames where the square moved', async () => {
  const out = await motionDetector.run(camera({ frames: 30, moving: (i) => i < 10 || i >= 20 }));
  const motion = out.filter((o) => o.type === 'motion').map((o) => o.frame);
  const expected = [...Array.from({ length: 9 }, (_, i) => i + 1), ...Array.from({ length: 10 }, (_, i) => i + 20)];
  assert.deepEqual(motion, expected);
  assert.deepEqual(out.at(-1), { type: 'summary', upload: out.at(-1).upload, frames: 30, motionEvents: 19 });
});

test('IoT rolling window: one alert and one clear per heat burst, per device', async () => {
  const out = await rollingWindow.run(burst({ heatAt: 10, coolAt: 30 }));
  assert.deepEqual(
    out.map((o) => [o.event, o.t]),
    [
      ['alert', 12],
      ['clear', 32],
      ['closed', undefined],
    ],
  );
});

test('LLM JSON extraction: objects found whatever the token split, broken ones reported', async () => {
  for (const seed of [1, 7, 99, 12345]) {
    const out = await jsonExtractor.run(tokenize(SAMPLE, seed));
    assert.equal(out.length, 3, `seed ${seed}`);
    assert.deepEqual(out[0].value, { name: 'Ada', tags: ['math', '{braces}'], quote: 'she said "hi"' });
    assert.deepEqual(out[1].value, { nested: { depth: 2, list: [1, { x: null }] } });
    assert.equal(out[2].ok, false);
    assert.equal(out[2].text, '{"a": tru}');
  }
});

test('fraud scoring: a normal history is clean, the takeover is flagged', async () => {
  const out = await fraudScorer.run(session());
  assert.ok(out.slice(0, 6).every((r) => !r.flagged));
  const x1 = out.find((r) => r.id === 'x1');
  assert.ok(x1.flagged && x1.reasons.some((r) => r.includes('country changed DE -> BR')));
  assert.ok(out.find((r) => r.id === 'x6').reasons.some((r) => r.includes('within 60 s')));
});

// run() also asserts exit code 0 and a clean stderr (helpers/child.mjs).
test('each example script runs on its own', async () => {
  for (const name of ['video-motion.mjs', 'iot-rolling-window.mjs', 'llm-json-extract.mjs', 'fraud-scoring.mjs']) {
    const { stdout } = await run([example(name)]);
    assert.ok(stdout.trim().length > 0, name);
  }
});

test('the demo processes every upload correctly and prints its figures', async () => {
  const { stdout } = await run([example('demo.mjs'), '--uploads', '100', '--frames', '20']);
  assert.match(stdout, /uploads correct\s+100 \/ 100/);
  assert.match(stdout, /frames processed\s+2,000/);
  assert.match(stdout, /throughput\s+[\d,]+ frames\/s/);
  assert.match(stdout, /peak open streams\s+100/);
  assert.match(stdout, /"open":0,"opened":100,"completed":100/);
});

test('the demo with --threads runs the detector on worker threads and gets the same results', async () => {
  const { stdout } = await run([
    example('demo.mjs'),
    '--uploads',
    '40',
    '--frames',
    '12',
    '--threads',
    '2',
    '--width',
    '160',
    '--height',
    '120',
  ]);
  assert.match(stdout, /on 2 worker threads/);
  assert.match(stdout, /uploads correct\s+40 \/ 40/);
  assert.match(stdout, /main loop lateness\s+p99 [\d.]+ ms/);
  assert.match(stdout, /"open":0,"opened":40,"completed":40/);
});

test('worker HTTP example: uploads processed in-process and on worker threads give whole, correct results; its server children exit cleanly', async () => {
  const { stdout } = await run([example('worker-http.mjs'), '--uploads', '3', '--frames', '6']);
  const lines = stdout.trim().split('\n');
  assert.equal(lines.length, 2, stdout);
  assert.match(lines[0], /^in-process\s+: 3 uploads, 18 frames in [\d.]+ s; GET \/health p50/);
  assert.match(lines[1], /^2 worker threads: 3 uploads, 18 frames in [\d.]+ s; GET \/health p50/);
  assert.doesNotMatch(stdout, /WRONG/);
  assert.match(lines[1], /server exit 0$/);
});

test('worker HTTP example: a body that ends inside a frame gets 400, one over the limit 413, and the same frames give the same results on both', async () => {
  const { createFrameServer, syntheticUpload, FRAME_BYTES, MAX_UPLOAD_BYTES } = await import('../examples/worker-http.mjs');
  const outputs = [];
  for (const threads of [0, 1]) {
    const server = createFrameServer({ threads });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const base = `http://127.0.0.1:${server.address().port}`;
    const ok = await fetch(`${base}/frames`, { method: 'POST', body: syntheticUpload(3) });
    assert.equal(ok.status, 200);
    outputs.push(
      (await ok.text())
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l)),
    );
    const partial = await fetch(`${base}/frames`, { method: 'POST', body: syntheticUpload(2).subarray(0, FRAME_BYTES + 10) });
    assert.match(await partial.text(), /ends inside a frame|"frame":0/);
    const tooBig = await fetch(`${base}/frames`, { method: 'POST', body: Buffer.alloc(MAX_UPLOAD_BYTES + 1) });
    assert.equal(tooBig.status, 413);
    await tooBig.text();
    assert.equal((await fetch(`${base}/health`)).status, 200);
    server.close();
  }
  assert.equal(outputs[0].length, 3);
  assert.deepEqual(outputs[0], outputs[1]);
  assert.ok(outputs[0][1].changed > 0);
});

test('RAG pipeline: fetch with 8 in flight, re-rank in batches of 16, NDJSON to the client, as they come', async () => {
  const { createSearchServer, store } = await import('../examples/rag-pipeline.mjs');
  const server = createSearchServer().listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  try {
    const url = `http://127.0.0.1:${server.address().port}/search`;
    const r = await fetch(url, { method: 'POST', body: JSON.stringify({ query: 'rust streams', candidates: 40 }) });
    assert.match(r.headers.get('content-type'), /^application\/x-ndjson/);
    const hits = (await r.text())
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    // 40 candidates, ids 12, 25 and 38 missing: 37 hits, ranked 1..37.
    assert.equal(hits.length, 37);
    assert.deepEqual(
      hits.map((h) => h.rank),
      Array.from({ length: 37 }, (_, i) => i + 1),
    );
    assert.deepEqual(new Set(hits.map((h) => h.id)).size, 37);
    assert.ok(!hits.some((h) => [12, 25, 38].includes(h.id)));
    // Within each batch (at most 16 documents; fewer when maxWait passed first), the best score comes first.
    assert.ok(hits.every((h, i, a) => i === 0 || a[i - 1].batch !== h.batch || a[i - 1].score >= h.score));
    const sizes = new Map();
    for (const h of hits) sizes.set(h.batch, (sizes.get(h.batch) ?? 0) + 1);
    assert.ok([...sizes.values()].every((n) => n <= 16));
    assert.equal(store.maxInFlight, 8, 'never more than 8 fetches at once');
    const bad = await fetch(url, { method: 'POST', body: '{"query": 1}' });
    assert.equal(bad.status, 400);
    const big = await fetch(url, { method: 'POST', body: 'x'.repeat(20_000) });
    assert.equal(big.status, 413);
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
  const { stdout } = await run([example('rag-pipeline.mjs'), '--once'], { env: { ...process.env, PORT: '0' } });
  assert.match(stdout, /^37 hits, first \{"rank":1,"batch":1,/m);
});

test('checkout-timeout: payment-timeout a while after the cart closes unless a payment came first, the same handler in-process and on a redisWorker (its keys removed after)', async () => {
  const { stdout } = await run([example('checkout-timeout.mjs')]);
  assert.match(stdout, /^in-process alice \[\{"cart":1\},\{"cart":2\},\{"closed":2\},\{"timeout":2\}\]$/m);
  assert.match(stdout, /^in-process bob \[\{"cart":1\},\{"closed":1\},\{"paid":1\}\]$/m);
  assert.match(stdout, /^as expected: yes$/m);
  const redis = await startRedis();
  try {
    const { stdout: shared } = await run([example('checkout-timeout.mjs')], { env: { ...process.env, REDIS_URL: redis.url } });
    assert.match(shared, /^redis alice \[\{"cart":1\},\{"cart":2\},\{"closed":2\},\{"timeout":2\}\]$/m);
    assert.match(shared, /^redis bob \[\{"cart":1\},\{"closed":1\},\{"paid":1\}\]$/m);
    assert.match(shared, /^as expected: yes$/m);
    const client = await redis.client();
    assert.equal(await client.dbSize(), 0, 'nothing left on the shared server');
  } finally {
    await redis.stop();
  }
});

test('Redis feature store: per-user rolling features in hashes, on a private redis-server or on REDIS_URL (its keys removed after)', async () => {
  const { REDIS_URL: _unset, ...withoutUrl } = process.env;
  const { stdout } = await run([example('redis-feature-store.mjs')], { env: withoutUrl });
  assert.match(stdout, /^users correct 3 \/ 3$/m);
  assert.match(stdout, /^features:alice \{"count":"20","total":"1040","avg5":"61","max5":"97","lastAt":"1700000057000"\}$/m);
  assert.match(stdout, /^materialized \{"applied":60,"skipped":0,"failures":0,/m);
  const redis = await startRedis();
  try {
    const { stdout: shared } = await run([example('redis-feature-store.mjs')], { env: { ...process.env, REDIS_URL: redis.url } });
    assert.match(shared, /^users correct 3 \/ 3$/m);
    const client = await redis.client();
    assert.equal(await client.dbSize(), 0, 'nothing left on the shared server');
  } finally {
    await redis.stop();
  }
});

test('LLM budget on Redis: a fleet-wide tokens-per-minute limiter (cost) and a per-tenant concurrency cap (key), on a private redis-server or on REDIS_URL (its keys removed after)', async () => {
  const { REDIS_URL: _unset, ...withoutUrl } = process.env;
  const { stdout } = await run([example('redis-llm-budget.mjs')], { env: withoutUrl });
  assert.match(stdout, /^calls 24, tokens 4800, most in flight for one tenant 2$/m);
  assert.match(stdout, /^a 2,000-token call now: ERR_VELO_RATE_LIMITED$/m);
  const redis = await startRedis();
  try {
    const { stdout: shared } = await run([example('redis-llm-budget.mjs')], { env: { ...process.env, REDIS_URL: redis.url } });
    assert.match(shared, /^calls 24, tokens 4800, most in flight for one tenant 2$/m);
    const client = await redis.client();
    assert.equal(await client.dbSize(), 0, 'nothing left on the shared server');
  } finally {
    await redis.stop();
  }
});

test('Redis rolling deploy: v1 -> v2 while carts are live, a new worker killed -9 in the middle: each session on one version, every item counted once, new carts on v2, nothing of v1 after drained; on a private redis-server or on REDIS_URL (its keys removed after)', async () => {
  const { REDIS_URL: _unset, ...withoutUrl } = process.env;
  const { stdout } = await run([example('redis-rolling-deploy.mjs')], { env: withoutUrl, timeout: 90_000 });
  assert.match(stdout, /^sessions +\d+: [1-9]\d* on v1, [1-9]\d* on v2; each on one version: yes$/m);
  assert.match(stdout, /^items +\d+ over 10 carts, each counted once, in order: yes$/m);
  assert.match(stdout, /^new carts +[1-9]\d* sessions opened after the hand-over, all on v2: yes$/m);
  assert.match(stdout, /^v1 after drained: 0 outputs$/m);
  assert.match(stdout, /^crash +new-1 \(pid \d+\) killed by SIGKILL/m);
  assert.match(stdout, /^as expected: yes$/m);
  const redis = await startRedis();
  try {
    const client = await redis.client();
    await client.set('someone-else', 'kept');
    const { stdout: shared } = await run([example('redis-rolling-deploy.mjs')], {
      env: { ...process.env, REDIS_URL: redis.url },
      timeout: 90_000,
    });
    assert.match(shared, /^as expected: yes$/m);
    assert.deepEqual(await client.keys('*'), ['someone-else'], 'only the keys of others left on the shared server');
  } finally {
    await redis.stop();
  }
});

test('Redis LLM resume: an EventSource that loses its connection mid-answer and a worker killed -9 mid-answer still get one whole answer of a model that answers differently on every call (journaled: the second worker continues it), each token once, in order, then end and 204; on a private redis-server or on REDIS_URL (its keys removed after), every child gone', async () => {
  const { REDIS_URL: _unset, ...withoutUrl } = process.env;
  const { stdout } = await run([example('redis-llm-resume.mjs')], { env: withoutUrl, timeout: 60_000 });
  assert.match(stdout, /^as expected: yes$/m);
  assert.match(stdout, /^client +65 events \(64 tokens and done\), each once, in order: yes$/m);
  assert.match(
    stdout,
    /^journal +one answer \(id [0-9a-f]{8}\): worker-1's model made tokens 0-\d+, worker-2's continued after them: yes$/m,
  );
  assert.match(
    stdout,
    /^reconnects 1, with Last-Event-ID \d+:\d+-\d+ \(the id of event \d+, the last it had: yes\); after the end, one more answered 204/m,
  );
  assert.match(stdout, /^worker +worker-1 \(pid \d+\) killed by SIGKILL after token 25; worker-2 \(pid \d+\) took over$/m);
  assert.match(stdout, /^replay +worker-2 replayed [1-9]\d* entr(?:y|ies) of 1 session$/m);
  assert.match(stdout, /^outputs +65 in Redis for chat c1, seq 1 to 65, none twice: yes$/m);
  assert.match(stdout, /^shutdown +worker-2 exit 0$/m);
  const pids = [...new Set([...stdout.matchAll(/\bpid (\d+)/g)].map((m) => Number(m[1])))];
  assert.equal(pids.length, 3, stdout);
  for (const pid of pids) assert.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, `pid ${pid} still running`);
  const redis = await startRedis();
  try {
    const client = await redis.client();
    await client.set('someone-else', 'kept');
    const { stdout: shared } = await run([example('redis-llm-resume.mjs')], {
      env: { ...process.env, REDIS_URL: redis.url },
      timeout: 60_000,
    });
    assert.match(shared, /^as expected: yes$/m);
    assert.deepEqual(await client.keys('*'), ['someone-else'], 'only the keys of others left on the shared server');
  } finally {
    await redis.stop();
  }
});

test('Postgres ledger: two worker processes, one killed -9 mid-run, a replacement joins: one ledger row per event, every balance the running sum; on a private postgres', async () => {
  const { DATABASE_URL: _unset, ...withoutUrl } = process.env;
  const { stdout } = await run([example('postgres-ledger.mjs')], { env: withoutUrl, timeout: 120_000 });
  assert.match(stdout, /^killed worker \d+ with SIGKILL; starting another$/m);
  assert.match(stdout, /^ledger rows 1000 for 1000 events: each written once, every balance the running sum$/m);
  assert.equal((stdout.match(/\] closed /g) ?? []).length, 2, 'the two live workers handed off');
  assert.doesNotMatch(stdout, /\] error /);
});

test('Redis fraud cluster: HTTP gateway + two worker processes, one killed -9 mid-run, a replacement joins: outputs identical to a crash-free run, every child gone', async () => {
  // Fails (never skips) without redis-server, naming the Debian package (helpers/redis-server.mjs).
  const redis = await startRedis();
  try {
    const { REDIS_URL: _unset, ...withoutUrl } = process.env;
    const { stdout } = await run([example('redis-fraud-cluster.mjs')], { env: withoutUrl, timeout: 60_000 });
    assert.match(stdout, /^results identical to a crash-free run: yes$/m);
    assert.match(stdout, /^load +4,800 transactions of 200 users in 24 POSTs \(JSON and NDJSON\), all 202/m);
    assert.match(stdout, /^kill +SIGKILL worker-2 \(pid \d+\) after round 8 of 24, holding 8 partitions/m);
    assert.match(stdout, /^takeover +worker-1 owned all 16 partitions [\d.]+ s after the kill/m);
    // The kill mattered: worker-2's live sessions were pending, and worker-1 rebuilt them.
    assert.match(stdout, /^replays +worker-1 replayed [1-9][\d,]* entries of [1-9][\d,]* sessions; worker-3 replayed/m);
    assert.match(
      stdout,
      /^outputs +4,800 read with redisOutputs \(4,800 stored, 4,800 distinct \(sid, seq\)\), \d+ flagged, for 200 users$/m,
    );
    assert.match(
      stdout,
      /^shutdown +worker-1 exit 0, worker-3 exit 0, gateway exit 0 \(graceful\); worker-2 killed by SIGKILL$/m,
    );
    // No stray process: redis-server, the gateway and the three workers have all exited.
    const pids = [...new Set([...stdout.matchAll(/\bpid (\d+)/g)].map((m) => Number(m[1])))];
    assert.equal(pids.length, 5, stdout);
    for (const pid of pids) assert.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, `pid ${pid} still running`);

    // On a shared server (REDIS_URL): the same result, and the run removes its keys.
    const client = await redis.client();
    await client.set('someone-else', 'kept');
    const { stdout: shared } = await run(
      [example('redis-fraud-cluster.mjs'), '--users', '40', '--rounds', '9', '--no-replacement'],
      {
        env: { ...process.env, REDIS_URL: redis.url },
        timeout: 60_000,
      },
    );
    assert.match(shared, /^results identical to a crash-free run: yes$/m);
    assert.match(shared, /^outputs +360 read with redisOutputs \(360 stored, 360 distinct/m);
    assert.deepEqual(await client.keys('*'), ['someone-else'], 'only the keys of others left on the shared server');
  } finally {
    await redis.stop();
  }
});

test('Redis fraud cluster gateway: 202 for JSON and NDJSON once Redis has them; 400, 413 (declared and streamed), 415, 404, 405 with a code and nothing written; 503 ERR_VELO_LAG_LIMIT at maxLag', async () => {
  const { createGateway } = await import('../examples/redis-fraud-cluster.mjs');
  const { redisProducer } = await import('velo-stream/redis');
  const { request } = await import('node:http');
  const redis = await startRedis();
  const client = await redis.client();
  const partitions = 4;
  const name = 'gw';
  const inputs = async () => {
    let total = 0;
    for (let p = 0; p < partitions; p++) total += await client.xLen(`velo:{${name}:p${p}}`).catch(() => 0);
    return total;
  };
  const servers = [];
  const listen = async (producer, options) => {
    const server = createGateway(producer, options).listen(0, '127.0.0.1');
    servers.push(server);
    await once(server, 'listening');
    return `http://127.0.0.1:${server.address().port}`;
  };
  const post = async (url, body, type = 'application/json') => {
    const r = await fetch(`${url}/transactions`, { method: 'POST', headers: { 'content-type': type }, body });
    return { status: r.status, body: await r.json() };
  };
  const tx = (user, i) => ({ user, id: `${user}-${i}`, amount: 10 + i, country: 'DE', at: 1000 * i });
  try {
    const url = await listen(redisProducer({ client, name, partitions }), { maxBodyBytes: 1000, maxTransactions: 3 });
    assert.deepEqual(await post(url, JSON.stringify(tx('a', 1))), { status: 202, body: { accepted: 1 } });
    assert.deepEqual(await post(url, JSON.stringify([tx('a', 2), tx('b', 1)])), { status: 202, body: { accepted: 2 } });
    const ndjson = `${JSON.stringify(tx('a', 3))}\r\n\n${JSON.stringify(tx('c', 1))}`;
    assert.deepEqual(await post(url, ndjson, 'application/x-ndjson; charset=utf-8'), { status: 202, body: { accepted: 2 } });
    assert.equal(await inputs(), 5, 'five transactions appended');
    const entries = await client.xRange(
      `velo:{${name}:p${redisProducer({ client, name, partitions }).partitionOf('a')}}`,
      '-',
      '+',
    );
    assert.deepEqual(
      entries.filter((e) => e.message.k === 'a').map((e) => JSON.parse(e.message.v)),
      [1, 2, 3].map((i) => ({ id: `a-${i}`, amount: 10 + i, country: 'DE', at: 1000 * i })),
      "user a's events, in order, without the user field",
    );

    const refused = [
      [await post(url, '{"user":'), 400, 'ERR_BAD_JSON', /not JSON/],
      [await post(url, `${JSON.stringify(tx('a', 4))}\n{"user":"a",`, 'application/x-ndjson'), 400, 'ERR_BAD_JSON', /^line 2 /],
      [
        await post(url, JSON.stringify([tx('a', 4), { ...tx('a', 5), amount: -1 }])),
        400,
        'ERR_BAD_TRANSACTION',
        /^item 1: "amount"/,
      ],
      [await post(url, JSON.stringify({ ...tx('a', 4), country: 'Germany' })), 400, 'ERR_BAD_TRANSACTION', /"country"/],
      [await post(url, JSON.stringify({ ...tx('a', 4), admin: true })), 400, 'ERR_BAD_TRANSACTION', /unknown field "admin"/],
      [await post(url, JSON.stringify({ ...tx('a', 4), user: '' })), 400, 'ERR_BAD_TRANSACTION', /"user"/],
      [await post(url, JSON.stringify({ ...tx('a', 4), at: 1.5 })), 400, 'ERR_BAD_TRANSACTION', /"at"/],
      [await post(url, JSON.stringify(42)), 400, 'ERR_BAD_TRANSACTION', /expected an object/],
      [await post(url, '[]'), 400, 'ERR_NO_TRANSACTIONS', /no transaction/],
      [await post(url, Buffer.from([0x5b, 0xff, 0x5d])), 400, 'ERR_BAD_ENCODING', /UTF-8/],
      [await post(url, JSON.stringify([1, 2, 3, 4].map((i) => tx('a', i)))), 413, 'ERR_TOO_MANY_TRANSACTIONS', /at most 3/],
      [await post(url, 'x'.repeat(1001)), 413, 'ERR_VELO_BODY_TOO_LARGE', /larger than 1000 bytes/],
      [await post(url, JSON.stringify(tx('a', 4)), 'text/plain'), 415, 'ERR_CONTENT_TYPE', /application\/x-ndjson/],
    ];
    for (const [got, status, code, message] of refused) {
      assert.equal(got.status, status, JSON.stringify(got));
      assert.equal(got.body.error.code, code, JSON.stringify(got));
      assert.match(got.body.error.message, message);
    }
    // A body without content-length (chunked) over the limit: refused once 1000 bytes were read, the rest unread.
    const streamed = await new Promise((resolve, reject) => {
      const req = request(`${url}/transactions`, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (t) => (text += t));
        res.on('end', () => resolve({ status: res.statusCode, connection: res.headers.connection, body: JSON.parse(text) }));
      });
      req.on('error', (error) => (error.code === 'EPIPE' || error.code === 'ECONNRESET' ? undefined : reject(error)));
      for (let i = 0; i < 20; i++) req.write('['.repeat(100));
      req.end();
    });
    assert.deepEqual(streamed, {
      status: 413,
      connection: 'close',
      body: { error: { code: 'ERR_VELO_BODY_TOO_LARGE', message: 'the body is larger than 1000 bytes' } },
    });
    assert.equal((await fetch(`${url}/elsewhere`, { method: 'POST' })).status, 404);
    const get = await fetch(`${url}/transactions`);
    assert.equal(get.status, 405);
    assert.equal(get.headers.get('allow'), 'POST');
    assert.equal((await fetch(`${url}/health`)).status, 200);
    assert.equal(await inputs(), 5, 'nothing of a refused request was written');

    // With maxLag 1 and no worker: the first send to a partition is admitted (lag 0), the next refused, nothing written.
    const lagged = await listen(redisProducer({ client, name: 'gw-lag', partitions: 1, maxLag: 1 }));
    assert.equal((await post(lagged, JSON.stringify(tx('a', 1)))).status, 202);
    const limited = await fetch(`${lagged}/transactions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(tx('a', 2)),
    });
    assert.equal(limited.status, 503);
    assert.equal(limited.headers.get('retry-after'), '1');
    const { error } = await limited.json();
    assert.deepEqual(
      { ...error, message: undefined },
      { code: 'ERR_VELO_LAG_LIMIT', message: undefined, partition: 0, lag: 1, limit: 1 },
    );
    assert.equal(typeof error.message, 'string');
    assert.equal(await client.xLen('velo:{gw-lag:p0}'), 1, 'the refused transaction was not written');
  } finally {
    for (const server of servers) {
      server.close();
      server.closeAllConnections();
    }
    await redis.stop();
  }
});

test('dashboard example: serves the page over its load and reads its own feed: the three functions with open streams', async () => {
  const { stdout } = await run([example('dashboard.mjs'), '--seconds', '3'], { env: { ...process.env, PORT: '0' } });
  assert.match(stdout, /^dashboard at http:\/\/127\.0\.0\.1:\d+\/dashboard\/$/m);
  const m = /^feed: 3 functions \(orders (\d+) open, price 1 open, fraud 1 open\), \d+ errors listed$/m.exec(stdout);
  assert.ok(m, stdout);
  assert.ok(Number(m[1]) > 0, 'order sessions open');
});

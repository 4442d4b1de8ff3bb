// velo-stream/dashboard in headless Chromium, against a server with live streams (fixtures/dashboard-browser.mjs,
// run as a child). Chromium is found, or installed with apt-get when this process can, else the test fails
// saying what to install (helpers/chromium.mjs): never a silent skip. Screenshots: __test__/.screenshots/.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chromium, findChromium } from './helpers/chromium.mjs';
import { run } from './helpers/child.mjs';

const fixture = fileURLToPath(new URL('./fixtures/dashboard-browser.mjs', import.meta.url));
const shots = fileURLToPath(new URL('./.screenshots/', import.meta.url));

// Found (`npm run test:js` installs it first if it can: scripts/chromium.mjs), or installed now with apt-get.
let browser;
before(async () => {
  browser = await chromium();
});

test("the dashboard page in Chromium: authorize refuses without the cookie, figures of live streams change, a Redis worker's backend, partitions and lag chart, the failure is listed without its message, drill-down reads one stream, no console error, the feed is dropped when the page closes", async () => {
  mkdirSync(shots, { recursive: true });
  const { stdout } = await run([fixture, browser, shots], { timeout: 180_000 });
  const seen = JSON.parse(stdout.trim().split('\n').at(-1));

  // authorize(req) is asked for every route: the page, its files, the feed, a stream's figures.
  assert.deepEqual(seen.refused, { '': 403, 'page.js': 403, feed: 403, [`stream?fn=relay&id=${seen.firstId}`]: 403 });
  assert.equal(seen.pageStatus, 200);
  assert.equal(seen.feedClients, 1);
  // 12 live streams and the one about to fail.
  assert.equal(seen.open, '13');
  assert.equal(seen.eventsInFigures.length, 2, 'events in /s took two different values');
  assert.ok(seen.charts >= 2, `charts drawn: ${seen.charts}`);
  assert.equal(seen.oldestFirst, seen.firstId, 'the longest-lived stream is the first opened');
  assert.match(seen.taskFigures, /task in flight/);
  assert.match(seen.taskFigures, /task retries \/s/);
  assert.match(seen.redisCard, /^dash · \S+\n/);
  // The card names the worker's backend.
  assert.match(seen.redisCard, /\nredis\nbackend\n/);
  for (const label of ['lag', 'sessions', 'held events', 'buffered events', 'replayed sessions', 'fenced', 'round trip p99']) {
    assert.match(seen.redisCard, new RegExp(`\\n${label}\\n`), label);
  }
  assert.match(seen.redisCard, /lag per partition/);
  assert.equal(seen.redisCharts, 1);
  assert.match(seen.threadFigures, /\n2 of 2\nthreads\n1 \/ 1\nstreams per thread/);

  // The latest error: time, function, stream id and code; the message (it holds a value) is not shown.
  assert.match(seen.errorRow, new RegExp(`relay\\t${seen.failedId}\\tE_REFUSED\\t\\(hidden: showValues\\)`));
  assert.doesNotMatch(seen.pageText, /secret-123/);

  // Drill-down into one stream: its figures, read again while open.
  assert.equal(seen.drillTitle, `relay · ${seen.secondId}`);
  assert.equal(seen.drillState, 'open');
  assert.notEqual(seen.drillEventsIn[0], seen.drillEventsIn[1]);

  assert.deepEqual(seen.consoleErrors, []);
  assert.equal(seen.clientsBeforeClose, 1);
  assert.equal(seen.clientsAfterClose, 0, 'the feed was dropped on the server once the page closed');
  assert.ok(statSync(`${shots}dashboard.png`).size > 10_000);
});

const authFixture = fileURLToPath(new URL('./fixtures/dashboard-browser-auth.mjs', import.meta.url));

test('Basic authentication in Chromium: 401 with the challenge, refused with wrong credentials, the page and its live feed with the right ones; hostile labels shown as text; the fleet section', async () => {
  mkdirSync(shots, { recursive: true });
  const { stdout } = await run([authFixture, browser, shots], { timeout: 180_000 });
  const seen = JSON.parse(stdout.trim().split('\n').at(-1));
  const challenge = { status: 401, challenge: 'Basic realm="velo ops", charset="UTF-8"' };
  // Without credentials: the challenge, and headless Chromium, with no one to ask, ends the navigation there.
  assert.deepEqual(seen.anonymous.responses, [challenge]);
  assert.match(seen.anonymous.outcome, /ERR_INVALID_AUTH_CREDENTIALS/);
  // With wrong ones: the challenge, then the request again with them, refused with the challenge again.
  assert.ok(seen.wrong.responses.length >= 1, JSON.stringify(seen.wrong));
  for (const r of seen.wrong.responses) assert.deepEqual(r, challenge);
  assert.match(seen.wrong.outcome, /ERR_INVALID_AUTH_CREDENTIALS|status 401/);
  assert.equal(seen.pageStatus, 200);
  // The labels, as text: the markup is not parsed, the long one is cut to 200 characters.
  assert.deepEqual(seen.labels, ['<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>', `${'L'.repeat(199)}…`, 'order 42']);
  assert.equal(seen.pwned, null);
  assert.equal(seen.imagesInLists, 0);
  assert.equal(seen.drillTitle, `relay · ${seen.ids[0]} · ${seen.labels[0]}`);
  assert.equal(seen.drillLabel, seen.labels[0]);
  assert.equal(seen.pwnedAfterDrill, null);
  assert.equal(seen.fleetHidden, false);
  assert.equal(seen.fleetName, 'browser');
  assert.match(seen.fleetFunction, /^relay\t1\t3\t/);
  assert.deepEqual(seen.consoleErrors, []);
  assert.ok(statSync(`${shots}dashboard-auth.png`).size > 10_000);
});

test('without a usable Chromium the browser tests fail, naming what to install (never a skip)', async () => {
  const saved = process.env.CHROMIUM_PATH;
  process.env.CHROMIUM_PATH = fileURLToPath(import.meta.url); // a file, not an executable
  try {
    assert.throws(() => findChromium(), /not an executable file\. apt-get install -y chromium \(as root\), or set CHROMIUM_PATH/);
    await assert.rejects(chromium(), /apt-get install -y chromium/);
  } finally {
    if (saved === undefined) delete process.env.CHROMIUM_PATH;
    else process.env.CHROMIUM_PATH = saved;
  }
});

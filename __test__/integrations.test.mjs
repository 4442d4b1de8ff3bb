// The integration examples, each started on 127.0.0.1 and driven by a real
// client: fetch for HTTP, ws for WebSockets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { camera } from '../examples/video-motion.mjs';
import * as upload from '../examples/express-upload.mjs';
import * as sse from '../examples/fastify-sse.mjs';
import * as wsServer from '../examples/ws-server.mjs';
import * as fraud from '../examples/sessions-fraud.mjs';
import { rollingWindow } from '../examples/iot-rolling-window.mjs';
import { until } from './helpers/server.mjs';

async function framesBody(count, moving) {
  const lines = [];
  for await (const f of camera({ frames: count, moving })) lines.push(JSON.stringify({ index: f.index, pixels: Array.from(f.pixels) }));
  return lines.join('\n') + '\n';
}

test('Express upload: NDJSON frames in, per-frame motion results streamed back', async () => {
  const srv = await upload.start(0);
  try {
    const r = await fetch(`${srv.url}/upload`, { method: 'POST', body: await framesBody(12, (i) => i < 6) });
    assert.equal(r.status, 200);
    const results = (await r.text()).trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(results.length, 11);
    assert.deepEqual(results.map((x) => x.motion), [true, true, true, true, true, false, false, false, false, false, false]);
    const bad = await fetch(`${srv.url}/upload`, { method: 'POST', body: 'not json\n' });
    assert.equal(bad.status, 400);
    assert.equal((await bad.json()).error.code, 'ERR_VELO_BAD_NDJSON');
    assert.equal(upload.motion.stats().open, 0);
  } finally {
    await srv.close();
  }
});

test('Express upload: a client that disconnects mid-upload frees the stream', async () => {
  const srv = await upload.start(0);
  try {
    const ac = new AbortController();
    const body = new ReadableStream({
      async start(controller) {
        const text = await framesBody(5, () => true);
        controller.enqueue(new TextEncoder().encode(text)); // some frames, then the client stalls
      },
    });
    const r = await fetch(`${srv.url}/upload`, { method: 'POST', body, duplex: 'half', signal: ac.signal });
    const reader = r.body.getReader();
    await reader.read(); // first results arrived
    await until(() => upload.motion.stats().open === 1, 5000, 'the upload stream to be open');
    ac.abort();
    await until(() => upload.motion.stats().open === 0, 5000, 'the stream to be freed');
  } finally {
    await srv.close();
  }
});

test('Fastify SSE: words and JSON objects stream live as events', async () => {
  const srv = await sse.start(0, { delayMs: 0 });
  try {
    const r = await fetch(`${srv.url}/complete?prompt=hi`);
    assert.match(r.headers.get('content-type'), /text\/event-stream/);
    const events = (await r.text())
      .split('\n\n')
      .filter(Boolean)
      .map((e) => JSON.parse(e.replace(/^data: /, '')));
    const words = events.filter((e) => e.type === 'word').map((e) => e.word);
    assert.deepEqual(words.slice(0, 3), ['You', 'said', '"hi".']);
    const json = events.filter((e) => e.type === 'json');
    assert.equal(json.length, 3);
    assert.deepEqual(json[0].value, { name: 'Ada', tags: ['math', '{braces}'], quote: 'she said "hi"' });
    assert.equal(sse.postProcess.stats().open, 0);
  } finally {
    await srv.close();
  }
});

test('Fastify SSE: a client that disconnects mid-stream cancels the stream and the model', async () => {
  const srv = await sse.start(0, { delayMs: 20 });
  try {
    const ac = new AbortController();
    const r = await fetch(`${srv.url}/complete?prompt=slow`, { signal: ac.signal });
    const reader = r.body.getReader();
    await reader.read();
    assert.equal(sse.postProcess.stats().open, 1);
    ac.abort();
    await until(() => sse.postProcess.stats().open === 0, 5000, 'the stream to be cancelled');
    assert.ok(sse.postProcess.stats().cancelled >= 1);
  } finally {
    await srv.close();
  }
});

test('ws: one stream per connection, alerts back on the socket, closing cancels', async () => {
  const srv = await wsServer.start(0);
  try {
    const socket = new WebSocket(srv.url);
    await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
    const alerts = [];
    socket.on('message', (data) => alerts.push(JSON.parse(String(data))));
    for (let t = 0; t < 20; t++) socket.send(JSON.stringify({ t, celsius: t >= 5 && t < 12 ? 95 : 60 }));
    await until(() => alerts.length >= 2, 5000, 'alert and clear');
    assert.deepEqual(alerts.map((a) => a.event), ['alert', 'clear']);
    assert.equal(rollingWindow.stats().open, 1);
    socket.close();
    await until(() => rollingWindow.stats().open === 0, 5000, 'the stream to be cancelled');
  } finally {
    await srv.close();
  }
});

test('sessions behind POST /events: per-user state across requests, flagged takeover, /metrics', async () => {
  const srv = await fraud.start(0, { idleTimeout: 200 });
  try {
    const post = (user, tx) =>
      fetch(`${srv.url}/events`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user, tx }) });
    let at = 0;
    for (let i = 0; i < 6; i++) {
      assert.equal((await post('alice', { id: `a${i}`, amount: 20, country: 'DE', at: (at += 3_600_000) })).status, 202);
      assert.equal((await post('bob', { id: `b${i}`, amount: 30, country: 'FR', at })).status, 202);
    }
    assert.equal(srv.sessions.size, 2);
    await post('alice', { id: 'a-x', amount: 900, country: 'BR', at: at + 1000 });
    await until(() => srv.flagged.some((f) => f.id === 'a-x'), 5000, 'the takeover to be flagged');
    assert.ok(srv.flagged.every((f) => f.user === 'alice'), 'bob is clean');
    assert.equal((await post('x', 'not an object')).status, 400);
    const metrics = await (await fetch(`${srv.url}/metrics`)).text();
    assert.match(metrics, /velo_streams_open\{fn="score"\} 2/);
    assert.match(metrics, /velo_events_in_total\{fn="score"\} 13/);
    // Both users go quiet: their sessions end on the idle timeout, keys freed.
    await until(() => srv.sessions.size === 0, 5000, 'idle sessions to end');
  } finally {
    await srv.close();
  }
});

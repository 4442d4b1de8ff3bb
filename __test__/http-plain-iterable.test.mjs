// A plain async generator (not a velo-stream stream: no cancel()) behind a writer, parked on an await when the
// client leaves: the writer settles (sendNdjson resolves, the toReadable closes, Fastify's app closes), its
// return() having been called without waiting for it; the generator's `finally` runs when it next resumes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { pipeline } from 'node:stream/promises';
import Fastify from 'fastify';
import { contentType, sendNdjson, sendSse, toReadable } from 'velo-stream/http';
import { deadline, listen, until } from './helpers/server.mjs';
import { unhandledDuring } from './helpers/util.mjs';

/** A plain async generator: one output, then parked on `gate` (an await nothing else resolves). */
function parked() {
  let open;
  const gate = new Promise((resolve) => (open = resolve));
  const seen = { finalized: 0, resumed: false };
  async function* plain() {
    try {
      yield { first: 1 };
      await gate;
      seen.resumed = true;
      yield { second: 2 };
    } finally {
      seen.finalized++;
    }
  }
  return { iterable: plain(), open, seen };
}

/** A GET that reads the first bytes of the answer, then leaves. */
function getAndLeave(port) {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1', () => socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    socket.on('error', () => {});
    socket.once('data', () => {
      socket.destroy();
      resolve();
    });
  });
}

const WRITERS = {
  sendNdjson: (outputs, res) => sendNdjson(res, outputs),
  sendSse: (outputs, res) => sendSse(res, outputs),
  'pipeline(toReadable)': (outputs, res) => pipeline(toReadable(outputs, 'ndjson'), res).catch(() => {}),
};

for (const [name, write] of Object.entries(WRITERS)) {
  test(`${name}: a plain async generator parked on an await when the client leaves: the writer settles; its finally runs when it resumes`, async () => {
    const unhandled = await unhandledDuring(async () => {
      const p = parked();
      let settled;
      const srv = await listen((req, res) => {
        settled = write(p.iterable, res).then(() => 'settled');
      });
      try {
        await getAndLeave(srv.port);
        assert.equal(await deadline(settled, 3000, `${name} after the client left`), 'settled');
        assert.equal(p.seen.finalized, 0, 'still parked');
        p.open();
        await until(() => p.seen.finalized === 1, 3000, "the generator's finally");
      } finally {
        await srv.close();
      }
    });
    assert.deepEqual(unhandled, []);
  });
}

test('Fastify reply.send(toReadable(plain generator)): a client leaving while it is parked; app.close() resolves', async () => {
  const p = parked();
  const app = Fastify();
  app.get('/', (request, reply) => {
    reply.header('content-type', contentType('ndjson'));
    return reply.send(toReadable(p.iterable, 'ndjson'));
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  await getAndLeave(app.server.address().port);
  await deadline(app.close(), 3000, 'app.close()');
  p.open();
  await until(() => p.seen.finalized === 1, 3000, "the generator's finally");
});

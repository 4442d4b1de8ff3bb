// An LLM answer a browser can reconnect to: the answer's tokens are a sessionWorker session's outputs, kept in
// Redis, and the gateway serves them as Server-Sent Events with `keySse`, each token's cursor as its SSE id.
//
// - A worker process runs a (fake) model that answers differently on every call, as a real one does: one session
//   per prompt, the model's stream journaled with `ctx.stream`, a token per output, then `{ done: true }`.
// - The gateway (this process): `POST /chats/<id>` takes a prompt, sends it with `sessionProducer` and answers
//   `{ cursor }`, a `keyCursor()` taken before the send; `GET /chats/<id>/events?from=<cursor>` follows that
//   chat's next answer (`keySse` with `sessionEnd`), ends it with `event: end`, and answers 204 to a client that
//   comes back after it (an EventSource then stops).
// - A browser-like client (the `eventsource` package: the WHATWG EventSource) asks a question and follows the
//   answer. After 10 tokens its network drops the connection (the client's side): it reconnects with
//   `Last-Event-ID`. After 25 tokens the worker is killed -9; a second worker takes the partitions over once the
//   lease runs out and replays the session: it gets the model's recorded tokens back from the journal (those
//   already written are not written again), then its model continues the same answer after them.
//
// It prints what the client got and exits 0 only when it got one whole answer, each token once, in order.
//
//   node examples/redis-llm-resume.mjs            # starts a private redis-server (Debian package redis-server)
//   REDIS_URL=redis://127.0.0.1:6379 node examples/redis-llm-resume.mjs   # uses yours; removes its keys after
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { randomInt, randomUUID } from 'node:crypto';
import { createServer as createTcpServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { EventSource } from 'eventsource';
import { createClient } from 'redis';
import { streamFn } from 'velo-stream';
import { keyCursor, keySse, sessionProducer, sessionWorker } from 'velo-stream/durable';
import { fnv1a, redisClientOptions } from 'velo-stream/redis';

const SELF = fileURLToPath(import.meta.url);
const PARTITIONS = 8;
const LEASE_TTL = 1000;

const WORDS =
  'streams resume where they stopped because every token is an output kept in Redis with an id and the client sends the last id it saw when it comes back so the server reads on from exactly there'.split(
    ' ',
  );
/** How many tokens the fake model's answers have. */
export const TOKENS = 64;

/**
 * The fake model: a different answer on every call (a new answer id, random words), a token every 20 ms. Given the
 * tokens a replay got back from the journal (`chunks`), it continues that answer after them, as a model continues
 * from a prefix. `by` says which worker's model made each token.
 */
export async function* generate(prompt, chunks, signal) {
  const answer = chunks[0]?.answer ?? randomUUID().slice(0, 8);
  for (let i = chunks.length; i < TOKENS; i++) {
    await sleep(20, undefined, { signal });
    yield { answer, token: i === 0 ? `(${prompt})` : WORDS[randomInt(WORDS.length)], by: process.env.WORKER_LABEL };
  }
}

/** One session per prompt: the model's stream, journaled, a token per output; then `{ done: true }`. */
export const model = streamFn(
  async function* model(prompts, ctx) {
    for await (const { prompt } of prompts) {
      let i = 0;
      const answer = ctx.stream('model', ({ chunks, signal }) => generate(prompt, chunks, signal));
      for await (const { answer: id, token, by } of answer) yield { i: i++, token, answer: id, by };
      yield { done: true, tokens: i };
      return;
    }
  },
  { idleTimeout: 30_000 },
);

async function connect(url) {
  const client = createClient(redisClientOptions({ url }));
  client.on('error', (error) => console.error(`redis: ${error.message}`));
  await client.connect();
  return client;
}

/** `worker <url> <name>` (its label in $WORKER_LABEL): runs the model until SIGTERM (or the end of stdin), then prints `closed <stats>`. */
async function workerRole([url, name]) {
  const client = await connect(url);
  const worker = sessionWorker(model, { client, name, partitions: PARTITIONS, leaseTtl: LEASE_TTL });
  console.log('ready');
  let stopping = null;
  const stop = () =>
    (stopping ??= (async () => {
      await worker.close();
      console.log(
        `closed ${JSON.stringify({ replayed: worker.stats().replayed, replayedSessions: worker.stats().replayedSessions })}`,
      );
      await client.close();
      process.stdin.destroy();
    })());
  process.once('SIGTERM', stop);
  process.stdin.on('end', stop).resume();
}

/** The gateway: prompts in, answers out as resumable SSE. */
export function createGateway({ client, name }) {
  const producer = sessionProducer({ client, name, partitions: PARTITIONS });
  return createServer(async (req, res) => {
    const url = new URL(req.url, 'http://localhost');
    const match = /^\/chats\/([\w-]{1,64})(\/events)?$/.exec(url.pathname);
    if (match === null) {
      res.writeHead(404).end();
      return;
    }
    const chat = match[1];
    if (req.method === 'POST' && match[2] === undefined) {
      let body = '';
      for await (const chunk of req) body += chunk;
      const { prompt } = JSON.parse(body || '{}');
      // Taken before the send: every output of this prompt's session comes after it.
      const cursor = await keyCursor({ client, name, partitions: PARTITIONS, key: chat });
      await producer.send(chat, { prompt: String(prompt) });
      res.writeHead(202, { 'content-type': 'application/json' }).end(JSON.stringify({ cursor }));
    } else if (req.method === 'GET' && match[2] !== undefined) {
      await keySse(req, res, {
        client,
        name,
        partitions: PARTITIONS,
        key: chat,
        from: url.searchParams.get('from'),
        sessionEnd: (output) => output.value?.done === true,
        retry: 100,
      });
    } else res.writeHead(405).end();
  });
}

/** A fetch whose response body the client can break as a network drop would (`drop()`): EventSource reconnects. */
function droppableFetch(received) {
  let current = null;
  const sent = [];
  return {
    /** Each request's `Last-Event-ID` (undefined for the first), and how many events the client had then. */
    sent,
    fetch: async (input, init) => {
      sent.push({ lastEventId: init.headers?.['Last-Event-ID'], received: received() });
      const own = new AbortController();
      init.signal?.addEventListener('abort', () => own.abort());
      const res = await fetch(input, { ...init, signal: own.signal });
      if (res.body === null) return res;
      const source = res.body.getReader();
      const body = new ReadableStream({
        start(controller) {
          current = { controller, own };
        },
        async pull(controller) {
          try {
            const { done, value } = await source.read();
            if (done) controller.close();
            else controller.enqueue(value);
          } catch (error) {
            controller.error(error);
          }
        },
        cancel: () => own.abort(),
      });
      return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
    },
    drop() {
      const { controller, own } = current;
      controller.error(new TypeError('the network dropped the connection'));
      own.abort();
    },
  };
}

/** A private redis-server on a free 127.0.0.1 port, without persistence; stop() ends it by PID. */
async function privateRedis() {
  const port = await new Promise((resolve, reject) => {
    const probe = createTcpServer().once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port: free } = probe.address();
      probe.close(() => resolve(free));
    });
  });
  const dir = mkdtempSync(join(tmpdir(), 'velo-llm-resume-'));
  const server = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const exited = new Promise((resolve) => server.once('close', resolve));
  let log = '';
  await new Promise((resolve, reject) => {
    server.once('error', (error) =>
      reject(
        new Error(`could not start redis-server (install the Debian package redis-server, or set REDIS_URL): ${error.message}`),
      ),
    );
    exited.then((code) => reject(new Error(`redis-server exited (${code}):\n${log}`)));
    server.stdout.setEncoding('utf8').on('data', (text) => {
      log += text;
      if (/Ready to accept connections/.test(log)) resolve();
    });
  }).catch((error) => {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  });
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    pid: server.pid,
    async stop() {
      if (server.exitCode === null && server.signalCode === null) process.kill(server.pid, 'SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A worker process: resolves once it is ready; `exit` settles with its exit. */
function startWorker(url, name, label) {
  const child = spawn(process.execPath, [SELF, 'worker', url, name], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, WORKER_LABEL: label },
  });
  const proc = { label, child, pid: child.pid, stdout: '' };
  proc.exit = new Promise((resolve) => child.once('close', (code, signal) => resolve({ code, signal })));
  child.stdin.on('error', () => {});
  proc.ready = new Promise((resolve, reject) => {
    child.stdout.setEncoding('utf8').on('data', (text) => {
      proc.stdout += text;
      if (/^ready$/m.test(proc.stdout)) resolve();
    });
    proc.exit.then(({ code, signal }) => reject(new Error(`${label} exited before it was ready (${code ?? signal})`)));
  });
  // (Awaited for the first worker only; a later one that dies early fails the run by its missing tokens.)
  proc.ready.catch(() => {});
  return proc;
}

export async function main() {
  const name = `llm-resume-${process.pid}`;
  const own = process.env.REDIS_URL ? null : await privateRedis();
  const url = own?.url ?? process.env.REDIS_URL;
  const client = await connect(url);
  const workers = [startWorker(url, name, 'worker-1')];
  const gateway = createGateway({ client, name });
  await new Promise((resolve) => gateway.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${gateway.address().port}`;
  let ok = false;
  try {
    await workers[0].ready;
    console.log(
      `redis      ${own ? `private redis-server (pid ${own.pid}) on 127.0.0.1:${own.port}` : 'REDIS_URL'}; gateway on ${base}`,
    );
    const prompt = 'why do streams resume?';
    const posted = await fetch(`${base}/chats/c1`, { method: 'POST', body: JSON.stringify({ prompt }) });
    const { cursor } = await posted.json();
    // The browser's part: follow the answer.
    const got = [];
    const network = droppableFetch(() => got.length);
    const es = new EventSource(`${base}/chats/c1/events?from=${encodeURIComponent(cursor)}`, { fetch: network.fetch });
    const lastIds = [];
    let opens = 0;
    let ends = 0;
    let killedAt = null;
    let timer;
    const finished = new Promise((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`no end within 30 s (${got.length} tokens)`)), 30_000);
      es.addEventListener('open', () => opens++);
      es.addEventListener('message', (event) => {
        const data = JSON.parse(event.data);
        got.push(data);
        lastIds.push(event.lastEventId);
        if (got.length === 10) network.drop();
        if (got.length === 25) {
          killedAt = got.length;
          workers[0].child.kill('SIGKILL');
          workers.push(startWorker(url, name, 'worker-2'));
        }
      });
      es.addEventListener('end', () => ends++);
      es.addEventListener('error', (event) => {
        // The end, then a reconnect answered 204: the EventSource closed itself.
        if (event.code === 204 && es.readyState === es.CLOSED) resolve();
        else if (es.readyState === es.CLOSED) reject(new Error(`the EventSource closed: ${event.code} ${event.message}`));
      });
    });
    try {
      await finished;
    } finally {
      clearTimeout(timer);
      es.close();
    }
    const made = got.filter((d) => !d.done);
    const tokens = made.map((d) => d.token);
    const once = got.every((d, i) => d.done || d.i === i);
    ok = once && tokens.length === TOKENS && got.at(-1)?.done === true && got.at(-1).tokens === TOKENS && ends === 1;
    console.log(`answer     ${JSON.stringify(tokens.join(' ').slice(0, 72))}... (${tokens.length} tokens)`);
    console.log(`client     ${got.length} events (${tokens.length} tokens and done), each once, in order: ${ok ? 'yes' : 'NO'}`);
    // One answer: worker-1's model began it, worker-2's continued it after the tokens the journal gave back.
    const ids = new Set(made.map((d) => d.answer));
    const handover = made.findIndex((d) => d.by === 'worker-2');
    const continued =
      ids.size === 1 &&
      handover >= 25 &&
      made.slice(0, handover).every((d) => d.by === 'worker-1') &&
      made.slice(handover).every((d) => d.by === 'worker-2');
    console.log(
      `journal    one answer (id ${[...ids].join(', ')}): worker-1's model made tokens 0-${handover - 1}, worker-2's continued after them: ${continued ? 'yes' : 'NO'}`,
    );
    ok &&= continued;
    // Each reconnect sent the id of the last event the client had got: the drop's, then the end's (answered 204).
    const [first, ...resumed] = network.sent;
    const exact = resumed.every((r) => r.lastEventId === lastIds[r.received - 1]);
    console.log(
      `reconnects ${opens - 1}, with Last-Event-ID ${resumed[0]?.lastEventId} (the id of event ${resumed[0]?.received}, the last it had: ${exact ? 'yes' : 'NO'}); after the end, one more answered 204: the EventSource closed`,
    );
    ok &&= first.lastEventId === undefined && opens === 2 && resumed.length === 2 && exact && resumed[1].received === got.length;
    const w1 = await workers[0].exit;
    console.log(
      `worker     worker-1 (pid ${workers[0].pid}) killed by ${w1.signal} after token ${killedAt}; worker-2 (pid ${workers[1].pid}) took over`,
    );
  } catch (error) {
    console.log(`error      ${error.message}`);
    ok = false;
  } finally {
    for (const w of workers) w.child.stdin.end();
    const exits = await Promise.all(workers.map((w) => w.exit));
    const w2 = workers[1];
    if (w2 !== undefined) {
      const closed = /^closed (.*)$/m.exec(w2.stdout);
      const stats = closed ? JSON.parse(closed[1]) : null;
      const plural = (n, one, many) => `${n ?? '?'} ${n === 1 ? one : many}`;
      console.log(
        `replay     worker-2 replayed ${plural(stats?.replayed, 'entry', 'entries')} of ${plural(stats?.replayedSessions, 'session', 'sessions')}`,
      );
      // What Redis holds for the chat: each output once (the replay skipped those worker-1 had written).
      const stored = (await client.xRange(`velo:{${name}:p${fnv1a('c1') % PARTITIONS}}:out`, '-', '+')).filter(
        (e) => e.message.k === 'c1',
      );
      const seqs = stored.map((e) => Number(e.message.seq));
      const distinct = new Set(stored.map((e) => `${e.message.sid} ${e.message.seq}`)).size;
      const whole = distinct === stored.length && seqs.every((q, i) => q === i + 1);
      console.log(
        `outputs    ${stored.length} in Redis for chat c1, seq 1 to ${seqs.at(-1)}, none twice: ${whole ? 'yes' : 'NO'}`,
      );
      ok &&= whole && stored.length === 65;
      console.log(`shutdown   worker-2 exit ${exits[1].code}${exits[1].signal ? ` (${exits[1].signal})` : ''}`);
      ok &&= exits[1].code === 0;
    }
    await new Promise((resolve) => {
      gateway.close(resolve);
      gateway.closeAllConnections();
    });
    if (own === null)
      for await (const keys of client.scanIterator({ MATCH: `velo:{${name}*`, COUNT: 500 }))
        if (keys.length) await client.del(keys);
    await client.close();
    await own?.stop();
  }
  console.log(`as expected: ${ok ? 'yes' : 'no'}`);
  return ok;
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [mode, ...args] = process.argv.slice(2);
  if (mode === 'worker') await workerRole(args);
  else process.exitCode = (await main()) ? 0 : 1;
}

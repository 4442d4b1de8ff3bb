// The stream-kind protocol (docs/design.md): every kind of stream keeps the
// contract the drivers (run, feed, pipe links, sessions, HTTP, duplex) rely
// on. The same checks run against each kind; a new kind joins KINDS.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { streamFn } from 'velo-stream';
import { deferred, isSettled, settle } from './helpers/util.mjs';

// Registered symbols: the protocol is the same for every copy of the module.
const kDrain = Symbol.for('velo-stream.drain');
const kWaitOutput = Symbol.for('velo-stream.waitOutput');
const kSendAll = Symbol.for('velo-stream.sendAll');
const kInputError = Symbol.for('velo-stream.inputError');
const kFinished = Symbol.for('velo-stream.finished');
const kSignal = Symbol.for('velo-stream.signal');
const kSendNow = Symbol.for('velo-stream.sendNow');

const passOn = async function* (events) {
  for await (const e of events) yield e;
};

/** Each kind: a stream function whose streams run `handler` (as their last stage). */
const KINDS = {
  'one handler': (handler, config) => streamFn(handler, config),
  'a pipe': (handler, config) => streamFn(passOn, config).pipe(streamFn(handler, config)),
  'a three-stage pipe': (handler, config) => streamFn(passOn, config).pipe(passOn).pipe(streamFn(handler, config)),
};

for (const [kind, make] of Object.entries(KINDS)) {
  describe(`protocol: ${kind}`, () => {
    test('kDrain moves what is there, and throws only after the outputs made before the error were moved', async () => {
      const boom = new Error('boom');
      const fn = make(async function* (events) {
        for await (const e of events) {
          if (e === 'fail') throw boom;
          yield e;
        }
      });
      const s = fn.open();
      for (const e of [1, 2, 3, 'fail']) await s.send(e);
      const out = [];
      let thrown;
      for (let calls = 0; calls < 100 && thrown === undefined; calls++) {
        const before = out.length;
        try {
          const finished = s[kDrain](out);
          assert.equal(finished, false, 'a failing stream is never "finished" before its error is thrown');
        } catch (error) {
          assert.equal(out.length, before, 'a call that throws moved nothing');
          thrown = error;
          break;
        }
        await s[kWaitOutput]();
      }
      assert.equal(thrown, boom);
      assert.deepEqual(out, [1, 2, 3]);
      assert.throws(() => s[kDrain]([]), (error) => error === boom, 'the stream stays failed');
    });

    test('kDrain returns true once no output will ever come, and kWaitOutput wakes for new outputs', async () => {
      const fn = make(passOn);
      const s = fn.open();
      const out = [];
      assert.equal(s[kDrain](out), false);
      const woken = s[kWaitOutput]();
      assert.equal(await isSettled(woken), false, 'nothing to wake for yet');
      await s.send('a');
      await woken;
      while (!out.includes('a')) {
        s[kDrain](out);
        if (!out.includes('a')) await s[kWaitOutput]();
      }
      s.end();
      while (!s[kDrain](out)) await s[kWaitOutput]();
      assert.deepEqual(out, ['a']);
      assert.equal(s.state, 'done');
    });

    test('kInputError: undefined while the input is open, a StreamClosedError once a send would be refused', async () => {
      const s = make(passOn).open();
      assert.equal(s[kInputError](), undefined);
      s.end();
      const error = s[kInputError]();
      assert.equal(error?.code, 'ERR_VELO_STREAM_CLOSED');
      await assert.rejects(s.send(1), { code: 'ERR_VELO_STREAM_CLOSED' });
      await s.cancel();
    });

    test('kFinished: a cancel of a handler waiting for input finishes it, and stats count it by then', async () => {
      const fn = make(passOn);
      const s = fn.open();
      assert.equal(s.state, 'open');
      assert.equal(await isSettled(s[kFinished]), false, 'not finished while open');
      const finished = s[kFinished];
      const cancelled = s.cancel(new Error('stop'));
      assert.equal(s.state, 'cancelled', 'at once, before the handler finished');
      await finished;
      await cancelled;
      assert.equal(s.state, 'cancelled');
      const stats = fn.stats();
      assert.equal(stats.open, 0);
      assert.equal(stats.cancelled, 1);
    });

    test('kFinished after completion: stats count the stream as completed as soon as it settles', async () => {
      const fn = make(passOn);
      const s = fn.open();
      await s.send(1);
      s.end();
      assert.equal(await s.recv(), 1);
      await assert.rejects(s.recv(), { code: 'ERR_VELO_STREAM_CLOSED' });
      await s[kFinished];
      assert.deepEqual(fn.stats(), { open: 0, opened: 1, completed: 1, failed: 0, cancelled: 0, rejected: 0 });
    });

    test('kSendAll: resolves true when every event went in, false when the stream closed first', async () => {
      const gate = deferred();
      const takesTwo = make(async function* (events) {
        let n = 0;
        for await (const e of events) {
          yield e;
          if (++n === 2) return;
        }
        await gate.promise;
      }, { buffer: 2 });
      const s = takesTwo.open();
      const reading = (async () => {
        const out = [];
        while (!s[kDrain](out)) await s[kWaitOutput]();
        return out;
      })();
      const many = Array.from({ length: 50 }, (_, i) => i);
      assert.equal(await s[kSendAll](many, true), false);
      assert.deepEqual(await reading, [0, 1]);

      const all = make(passOn).open();
      const read = (async () => {
        const out = [];
        while (!all[kDrain](out)) await all[kWaitOutput]();
        return out;
      })();
      async function* source() {
        for (let i = 0; i < 20; i++) yield i;
      }
      assert.equal(await all[kSendAll](source(), true), true);
      assert.deepEqual(await read, Array.from({ length: 20 }, (_, i) => i));
      gate.resolve();
    });

    test('kSendNow: true for an event taken in without waiting, else the send promise (waiting at a full input, refused once closed)', async () => {
      const gate = deferred();
      const held = make(async function* (events) {
        await gate.promise;
        for await (const e of events) yield e;
      }, { buffer: 1 });
      const s = held.open();
      const answers = [];
      let waiting;
      for (let i = 0; i < 50; i++) {
        const sent = s[kSendNow](i);
        if (sent !== true) {
          waiting = sent;
          break;
        }
        answers.push(i);
      }
      assert.ok(answers.length >= 1, 'the first events go in at once');
      assert.ok(waiting instanceof Promise, 'a full input answers with the waiting send');
      gate.resolve();
      await waiting;
      s.end();
      const out = [];
      for await (const v of s) out.push(v);
      assert.deepEqual(out, [...answers, answers.length], 'every event once, in order');
      const closed = make(passOn).open();
      closed.end();
      const refused = closed[kSendNow](1);
      assert.ok(refused instanceof Promise);
      await assert.rejects(refused, { code: 'ERR_VELO_STREAM_CLOSED' });
    });

    test('kSendAll: a source error rejects with that error', async () => {
      const s = make(passOn).open();
      const boom = new Error('source');
      async function* failing() {
        yield 1;
        throw boom;
      }
      await assert.rejects(s[kSendAll](failing(), true), (error) => error === boom);
      await s.cancel();
    });

    test('kSignal is the open signal, and its abort cancels the stream with its reason', async () => {
      const controller = new AbortController();
      const s = make(passOn).open({ signal: controller.signal });
      assert.equal(s[kSignal], controller.signal);
      const reason = new Error('aborted');
      controller.abort(reason);
      await s[kFinished];
      assert.equal(s.state, 'cancelled');
      await assert.rejects(s.send(1), (error) => error.code === 'ERR_VELO_STREAM_CLOSED' && error.cause === reason);
      assert.equal(make(passOn).open()[kSignal], undefined);
    });

    test('the drivers work on it: run, feed, recv, iteration and duplex', async () => {
      const fn = make(passOn);
      assert.deepEqual(await fn.run([1, 2, 3]), [1, 2, 3]);
      const fed = [];
      for await (const v of fn.open().feed([4, 5])) fed.push(v);
      assert.deepEqual(fed, [4, 5]);
      const s = fn.open();
      await s.send(6);
      assert.equal(await s.recv(), 6);
      s.end();
      const rest = [];
      for await (const v of s) rest.push(v);
      assert.deepEqual(rest, []);
      const d = fn.open().duplex();
      d.end(7);
      const read = [];
      for await (const v of d) read.push(v);
      assert.deepEqual(read, [7]);
      await settle();
      assert.equal(fn.stats().open, 0);
    });
  });
}

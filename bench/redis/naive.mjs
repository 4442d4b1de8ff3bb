// The naive baseline of `npm run bench:redis`: keyed sessions on Redis
// Streams written as a careful user would without velo-stream (the design the
// Redis notes call option b):
// - one Redis stream per session (`naive:{<name>}:s:<key>`); a producer
//   appends with XADD, many events per round trip (a pipeline);
// - one consumer names every live session's stream in a single
//   `XREAD COUNT <count> BLOCK <ms> STREAMS s1 ... sN id1 ... idN`, keeping
//   the last id it read per stream;
// - each session's state (a running total) lives in a Map; a read's outputs
//   are written back in one pipeline of XADDs to one output stream.
//
// It is given the list of live sessions up front (a real one would discover
// them, e.g. from an announcement stream), and has no crash safety at all:
// no consumer group, no lease, no fencing, no replay. Both are in its favour.
// __test__/redis-bench-baseline.test.mjs checks that it computes the right
// outputs.

/** The session stream of `key`, and the output stream. */
export const naiveKeys = (name) => ({
  session: (key) => `naive:{${name}}:s:${key}`,
  output: `naive:{${name}}:out`,
});

/** Appends `pairs` ([key, event] in order) to their session streams: one pipeline per 1000 events. */
export async function naiveSend(client, name, pairs) {
  const keys = naiveKeys(name);
  for (let i = 0; i < pairs.length; i += 1000) {
    const pipeline = client.multi();
    for (const [key, event] of pairs.slice(i, i + 1000)) pipeline.xAdd(keys.session(key), '*', { v: JSON.stringify(event) });
    await pipeline.execAsPipeline();
  }
}

// RESP3 maps as flat arrays (RESP_TYPES.MAP = 37), as velo-stream's own reads do.
const FLAT_MAPS = { typeMapping: { 37: Array } };

/** Stream -> entries of an XREAD reply, RESP2 (`[[stream, entries], ...]`) or RESP3 as a flat array. */
function streamsOf(reply) {
  const out = [];
  if (!Array.isArray(reply)) return out;
  if (reply.length > 0 && Array.isArray(reply[0])) for (const [stream, entries] of reply) out.push([String(stream), entries]);
  else for (let i = 0; i + 1 < reply.length; i += 2) out.push([String(reply[i]), reply[i + 1]]);
  return out;
}

/**
 * Runs the consumer over the sessions of `sessionKeys` until `stop()`. `handle(state, event)` returns
 * `[nextState, output]` (`state` undefined for a session's first event); `onEvent(event)` sees each event as it
 * is handled. Resolves `done` once stopped; `stats()`: reads, events, outputs.
 */
export function naiveConsumer(client, { name, sessionKeys, handle, onEvent = () => {}, count = 100, block = 1000 }) {
  const keys = naiveKeys(name);
  const streams = sessionKeys.map((key) => keys.session(key));
  const keyOf = new Map(sessionKeys.map((key, i) => [streams[i], key]));
  const last = new Map(streams.map((s) => [s, '0-0']));
  const state = new Map();
  const stats = { reads: 0, events: 0, outputs: 0 };
  let stopping = false;
  const done = (async () => {
    while (!stopping) {
      const args = ['XREAD', 'COUNT', String(count), 'BLOCK', String(block), 'STREAMS', ...streams];
      for (const s of streams) args.push(last.get(s));
      const reply = await client.sendCommand(args, FLAT_MAPS);
      stats.reads++;
      const pipeline = client.multi();
      let outputs = 0;
      for (const [stream, entries] of streamsOf(reply)) {
        const key = keyOf.get(stream);
        for (const [id, fields] of entries) {
          last.set(stream, String(id));
          let payload;
          for (let i = 0; i + 1 < fields.length; i += 2) if (String(fields[i]) === 'v') payload = String(fields[i + 1]);
          const event = JSON.parse(payload);
          onEvent(event);
          const [next, output] = handle(state.get(key), event);
          state.set(key, next);
          pipeline.xAdd(keys.output, '*', { k: key, v: JSON.stringify(output) });
          outputs++;
          stats.events++;
        }
      }
      if (outputs > 0) {
        await pipeline.execAsPipeline();
        stats.outputs += outputs;
      }
    }
  })();
  return {
    done,
    stats: () => ({ ...stats }),
    stop() {
      stopping = true;
      return done;
    },
  };
}

// A TCP proxy on 127.0.0.1 in front of the test's redis-server, for one
// worker: its connections go through the proxy, and the test cuts them off on
// command.
//
// - hold(): a partition. Connections stay open, but what the worker sends is
//   held in the proxy (as TCP would keep retransmitting it); Redis' replies
//   still flow. heal() delivers the held bytes, in order: the worker's
//   requests reach Redis late, after its leases may have moved on.
// - cut(): every connection is closed at once, and new ones are closed as
//   soon as they are accepted, until heal().
// - strand(): every open connection goes silent for good, both ways, and
//   stays open (a server host gone without a word: nothing answers, nothing
//   closes); new connections are forwarded as before.
//
// stats(): connections accepted, bytes forwarded each way, bytes held and
// delivered late.
import { connect, createServer } from 'node:net';

export async function startProxy(targetPort) {
  let mode = 'open';
  const pairs = new Set();
  const counts = { accepted: 0, refused: 0, up: 0, down: 0, heldBytes: 0, late: 0 };

  const server = createServer((downstream) => {
    if (mode === 'cut') {
      counts.refused++;
      downstream.destroy();
      return;
    }
    counts.accepted++;
    const upstream = connect(targetPort, '127.0.0.1');
    const pair = { downstream, upstream, held: [], stranded: false };
    pairs.add(pair);
    const close = () => {
      pairs.delete(pair);
      downstream.destroy();
      upstream.destroy();
    };
    // Errors (a reset by the other side, a cut) end the pair; they are not failures of the test.
    downstream.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
    downstream.on('data', (chunk) => {
      if (pair.stranded) return;
      if (mode === 'hold') {
        pair.held.push(chunk);
        counts.heldBytes += chunk.length;
        return;
      }
      counts.up += chunk.length;
      upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      if (pair.stranded) return;
      counts.down += chunk.length;
      downstream.write(chunk);
    });
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();

  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    get mode() {
      return mode;
    },
    /** Holds every byte the worker sends from now on (its open connections and new ones). */
    hold() {
      mode = 'hold';
    },
    /** Closes every connection now and refuses new ones. */
    cut() {
      mode = 'cut';
      for (const { downstream, upstream } of [...pairs]) {
        downstream.destroy();
        upstream.destroy();
      }
      pairs.clear();
    },
    /** Every open connection silent from now on, and left open; returns how many. */
    strand() {
      for (const pair of pairs) pair.stranded = true;
      return pairs.size;
    },
    /** Back to forwarding; held bytes are delivered first, in order. */
    heal() {
      for (const pair of pairs) {
        for (const chunk of pair.held) {
          counts.up += chunk.length;
          counts.late += chunk.length;
          pair.upstream.write(chunk);
        }
        pair.held = [];
      }
      mode = 'open';
    },
    stats() {
      return { ...counts, connections: pairs.size };
    },
    async stop() {
      for (const { downstream, upstream } of [...pairs]) {
        downstream.destroy();
        upstream.destroy();
      }
      pairs.clear();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

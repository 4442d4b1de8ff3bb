// velo-stream/dashboard's authorize over real HTTP requests: a 401 with a WWW-Authenticate challenge (the start of
// a browser's Basic-auth flow, which dashboard-browser.test.mjs runs in Chromium), basicAuth()'s checks of the
// Authorization header, and what a result that cannot be sent becomes (403).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { streamFn } from 'velo-stream';
import { basicAuth, dashboard } from 'velo-stream/dashboard';
import { listen } from './helpers/dashboard-feed.mjs';

const relay = streamFn(async function* relay(events) {
  for await (const e of events) yield e;
});

const basic = (user, pass) => `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;

test('basicAuth: 401 with a Basic challenge without credentials or with wrong ones, on every route; the page with the right ones', async () => {
  const dash = dashboard({ functions: [relay], authorize: basicAuth({ username: 'ops', password: 'pa:ss wörd' }) });
  const { root: base, close } = await listen(dash);
  try {
    for (const route of ['', 'page.js', 'feed', 'stream?fn=relay&id=s1', 'fleet']) {
      const res = await fetch(base + route);
      assert.equal(res.status, 401, route);
      assert.equal(res.headers.get('www-authenticate'), 'Basic realm="velo-stream dashboard", charset="UTF-8"', route);
      // The page's own headers stay: a refusal is not framed or cached either.
      assert.equal(res.headers.get('x-frame-options'), 'DENY');
      assert.equal(res.headers.get('cache-control'), 'no-store');
      assert.equal(await res.text(), 'Unauthorized\n');
    }
    const refused = [
      basic('ops', 'wrong'),
      basic('other', 'pa:ss wörd'),
      basic('ops', 'pa:ss wörd ').slice(0, -1), // base64 cut: decodes to something else
      basic('', ''),
      `Basic ${Buffer.from('ops').toString('base64')}`, // no colon
      'Basic !!!not-base64!!!',
      'Bearer abc',
      basic('OPS', 'pa:ss wörd'),
      basic('ops', 'pa:ss'), // the password holds a colon: only the first one splits
    ];
    for (const authorization of refused) {
      const res = await fetch(base, { headers: { authorization } });
      assert.equal(res.status, 401, authorization);
      assert.match(res.headers.get('www-authenticate'), /^Basic realm=/);
      await res.arrayBuffer();
    }
    const ok = await fetch(base, { headers: { authorization: basic('ops', 'pa:ss wörd') } });
    assert.equal(ok.status, 200);
    assert.match(await ok.text(), /<title>velo-stream dashboard<\/title>/);
    // The scheme's name is case-insensitive (RFC 7617).
    const lower = await fetch(`${base}page.js`, { headers: { authorization: basic('ops', 'pa:ss wörd').replace('Basic', 'basic') } });
    assert.equal(lower.status, 200);
    await lower.arrayBuffer();
  } finally {
    await close();
  }
});

test('basicAuth: its realm in the challenge; bad options refused with their codes', async () => {
  const authorize = basicAuth({ username: 'ops', password: 'x', realm: 'Ops <team>' });
  assert.deepEqual(authorize({ headers: {} }), { status: 401, headers: { 'www-authenticate': 'Basic realm="Ops <team>", charset="UTF-8"' } });
  assert.equal(authorize({ headers: { authorization: basic('ops', 'x') } }), true);
  assert.throws(() => basicAuth(), { code: 'ERR_INVALID_ARG_TYPE' });
  assert.throws(() => basicAuth({ username: 'ops' }), { code: 'ERR_INVALID_ARG_TYPE', message: /"password"/ });
  assert.throws(() => basicAuth({ username: '', password: 'x' }), { code: 'ERR_INVALID_ARG_TYPE', message: /"username"/ });
  assert.throws(() => basicAuth({ username: 1, password: 'x' }), { code: 'ERR_INVALID_ARG_TYPE' });
  assert.throws(() => basicAuth({ username: 'a:b', password: 'x' }), { code: 'ERR_INVALID_ARG_VALUE', message: /":"/ });
  assert.throws(() => basicAuth({ username: 'a', password: 'x', realm: 'a"b' }), { code: 'ERR_INVALID_ARG_VALUE' });
  assert.throws(() => basicAuth({ username: 'a', password: 'x', realm: 'a\nb' }), { code: 'ERR_INVALID_ARG_VALUE' });
  assert.throws(() => basicAuth({ username: 'a', password: 'x', realm: 7 }), { code: 'ERR_INVALID_ARG_TYPE' });
  assert.throws(() => basicAuth({ username: 'a', password: 'x', user: 'b' }), { code: 'ERR_INVALID_ARG_VALUE', message: /Known options: username, password, realm/ });
});

test('authorize may answer { status: 401, headers } (a promise of it too); a result it cannot send, or any other, is a 403', async () => {
  const answers = {
    challenge: { status: 401, headers: { 'WWW-Authenticate': 'Bearer realm="ops"', 'x-extra': 'yes' } },
    promised: Promise.resolve({ status: 401, headers: { 'www-authenticate': 'Basic realm="p"' } }),
    bare401: { status: 401 },
    forbidden: { status: 403 },
    other: { status: 200 },
    badName: { status: 401, headers: { 'bad name': 'x' } },
    badValue: { status: 401, headers: { 'www-authenticate': 'a\r\nset-cookie: x=1' } },
    // The dashboard's own headers are not for authorize to change.
    loosen: { status: 401, headers: { 'content-security-policy': "default-src *", 'x-frame-options': 'ALLOWALL' } },
    truthy: 1,
    string: 'true',
    nothing: undefined,
  };
  const dash = dashboard({ functions: [relay], authorize: (req) => answers[req.headers['x-case']] });
  const { root: base, close } = await listen(dash);
  const get = async (c) => {
    const res = await fetch(base, { headers: { 'x-case': c } });
    await res.arrayBuffer();
    return res;
  };
  try {
    const challenge = await get('challenge');
    assert.equal(challenge.status, 401);
    assert.equal(challenge.headers.get('www-authenticate'), 'Bearer realm="ops"');
    assert.equal(challenge.headers.get('x-extra'), 'yes');
    assert.equal((await get('promised')).headers.get('www-authenticate'), 'Basic realm="p"');
    const bare = await get('bare401');
    assert.equal(bare.status, 401);
    assert.equal(bare.headers.get('www-authenticate'), null);
    const loosen = await get('loosen');
    assert.equal(loosen.status, 401);
    assert.match(loosen.headers.get('content-security-policy'), /^default-src 'none'/);
    assert.equal(loosen.headers.get('x-frame-options'), 'DENY');
    for (const c of ['forbidden', 'other', 'badName', 'badValue', 'truthy', 'string', 'nothing']) {
      const res = await get(c);
      assert.equal(res.status, 403, c);
      assert.equal(res.headers.get('set-cookie'), null, c);
    }
  } finally {
    await close();
  }
});

/** A GET of `path` on a connection of its own, read to its end: the status line, the header lines as [name, value], the body. */
function rawGet(base, path) {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname, () =>
      socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`),
    );
    let text = '';
    socket.setEncoding('latin1');
    socket.on('data', (chunk) => (text += chunk));
    socket.on('error', reject);
    socket.on('end', () => {
      const at = text.indexOf('\r\n\r\n');
      const [status, ...lines] = text.slice(0, at).split('\r\n');
      const headers = lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]);
      resolve({ status, headers, body: text.slice(at + 4) });
    });
  });
}

test("authorize's headers cannot frame the answer or steer the connection: those are dropped, the challenge is kept", async () => {
  const dash = dashboard({
    functions: [relay],
    authorize: () => ({
      status: 401,
      headers: {
        'WWW-Authenticate': 'Bearer realm="ops"',
        'Transfer-Encoding': 'chunked',
        'Content-Length': '0',
        Connection: 'keep-alive',
        'Keep-Alive': 'timeout=600',
        Upgrade: 'h2c',
        TE: 'trailers',
        Trailer: 'x-after',
        'Proxy-Connection': 'keep-alive',
      },
    }),
  });
  const { base, close } = await listen(dash);
  try {
    const res = await rawGet(base, '/page.js');
    assert.equal(res.status, 'HTTP/1.1 401 Unauthorized');
    const framing = [
      'transfer-encoding',
      'content-length',
      'connection',
      'keep-alive',
      'upgrade',
      'te',
      'trailer',
      'proxy-connection',
    ];
    assert.deepEqual(
      res.headers.filter(([name]) => framing.includes(name)),
      [
        ['content-length', '13'],
        ['connection', 'close'],
      ],
    );
    assert.deepEqual(
      res.headers.find(([name]) => name === 'www-authenticate'),
      ['www-authenticate', 'Bearer realm="ops"'],
    );
    assert.equal(res.body, 'Unauthorized\n');
  } finally {
    await close();
  }
});

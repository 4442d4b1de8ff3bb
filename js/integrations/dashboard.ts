// velo-stream/dashboard: a live page of the application's stream functions
// and workers (Redis or Postgres), served by a request handler the application mounts
// (node:http, Express, or Fastify through `handler.fastify`).
//
// Routes, relative to where it is mounted: the page (`/`), its script and
// styles and uPlot's (bundled in the package: no CDN), `feed` (Server-Sent
// Events: one aggregated sample per interval, sampled only while a page is
// connected, or all the time while it publishes to a fleet), `stream?fn=&id=`
// (one listed stream's figures, JSON) and `fleet` (every member's latest
// sample, read from Redis or Postgres, and their sums: dashboard-fleet.ts).
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type IncomingMessage, type ServerResponse, validateHeaderName, validateHeaderValue } from 'node:http';
import { assertOptionsObject, readingOptions } from '../config';
import { kTotals } from '../core/function';
import { describe, invalidType, invalidValue } from '../errors';
import { kRoundTrips } from '../durable/engine/metrics';
import type { Worker } from '../durable/engine/worker';
import { isLimiter } from '../limits/use';
import type { Limiter } from '../limits/types';
import { integerOption } from '../validate';
import { type AnyFn, MAX_NAME, Sampler, releaseLists, shownName } from './dashboard-sample';
import { Fleet, type FleetOptions } from './dashboard-fleet';

export type {
  AnyFn,
  ErrorRow,
  FleetFigures,
  FnSample,
  LimiterFailure,
  LimiterKind,
  LimiterLimits,
  LimiterSample,
  RedisSample,
  Sample,
  StreamRow,
  TaskSample,
  WorkerSample,
} from './dashboard-sample';
export type { FleetClient } from './dashboard-fleet-store';
export type { FleetFnTotals, FleetMember, FleetOptions, FleetRedisTotals, FleetView, FleetWorkerTotals } from './dashboard-fleet';

/**
 * What `authorize` answers: `true` serves the request; `{ status: 401, headers }` refuses it with 401 and those
 * headers (a `WWW-Authenticate` challenge: a browser then asks for a user name and password); anything else
 * (false, `{ status: 403 }`, a throw, a rejection) refuses it with 403.
 */
export type AuthorizeResult = boolean | AuthorizeRefusal;

/** A refusal `authorize` may answer: 401 with `headers` (a challenge), or 403. */
export interface AuthorizeRefusal {
  /** 401 (with `headers`), or 403. */
  readonly status: 401 | 403;
  /**
   * With 401: headers of the answer, such as `WWW-Authenticate` (the dashboard's own security headers are kept, and
   * those that frame the answer or steer the connection, `Content-Length`, `Transfer-Encoding`, `Connection` and
   * the like, are dropped).
   */
  readonly headers?: Readonly<Record<string, string>>;
}
export type { ThreadLoads } from '../worker/index';
export type { LimiterDescription } from '../limits/describe';

/** Options of `dashboard()`. */
export interface DashboardOptions {
  /** The stream functions to show (read once). Their open streams are listed from this call on, until `close()`. */
  functions?: Iterable<AnyFn>;
  /**
   * The workers to show (read once): of `velo-stream/redis` or `velo-stream/postgres`, mixed as needed. Each has a
   * card naming its backend.
   */
  workers?: Iterable<Worker>;
  /**
   * The workers to show, under their old name: the same as `workers` (Postgres workers included). Give one of
   * the two: both is `ERR_INVALID_ARG_VALUE`.
   * @deprecated Use `workers`; `redisWorkers` goes in the next major release.
   */
  redisWorkers?: Iterable<Worker>;
  /**
   * The limiters to show (read once): in-process ones (`limiter()`), fleet-wide ones (`redisLimiter()` of
   * `velo-stream/redis`), or any object with `acquire`, `tryAcquire`, `stats` and a `name`. One row each, from
   * their `stats()` at every sample.
   */
  limiters?: Iterable<Limiter<never>>;
  /**
   * Called with every request (the page, its files, the feed, a stream's figures, the fleet) before anything is
   * served: `true` (or a promise of it) serves it, `{ status: 401, headers }` answers 401 with those headers (a
   * `WWW-Authenticate` challenge; `basicAuth()` makes such a function), anything else answers 403. Without it,
   * every request that reaches the handler is served: mount it behind your own authentication.
   */
  authorize?: (req: IncomingMessage) => AuthorizeResult | Promise<AuthorizeResult>;
  /** ms between samples of the feed. Default 1000 (100 to 60,000). */
  interval?: number;
  /** Feed connections open at once; past it the feed answers 503. Default 10 (1 to 1000). */
  maxClients?: number;
  /**
   * Listed streams per function whose metrics a sample reads (round robin, about 1.5 µs each), for the most-buffered
   * list and backpressure waits. Default 250: with 10,000 open streams, each is read every 40 samples.
   */
  scan?: number;
  /** Show error messages, which may hold events' values or keys. Default false: the code, stream id and time only. */
  showValues?: boolean;
  /**
   * Show a `redisWorker` session's key in its label (its full sid, `<key>@<first entry id>`). Default false: the
   * label is `…@<first entry id> · p<partition>`, which finds the session in Redis without showing its key.
   */
  showKeys?: boolean;
  /**
   * A fleet view through Redis or Postgres: this dashboard publishes its sample every `interval` under its member
   * id, where it expires `ttl` after by the server's clock, and its `fleet` route (and a section of its page) shows
   * every member's latest sample and their sums.
   */
  fleet?: FleetOptions;
}

/** What `dashboard()` returns: a request handler for `node:http` and Express, with a Fastify plugin. */
export interface DashboardHandler {
  /** Serves one request; `next` (Express) is called for paths that are not the dashboard's, else they get 404. */
  (req: IncomingMessage, res: ServerResponse, next?: (error?: unknown) => void): void;
  /** A Fastify plugin serving the same routes: `app.register(handler.fastify, { prefix: '/dashboard' })`. */
  readonly fastify: (instance: FastifyLike, options: unknown, done: (error?: Error) => void) => void;
  /** Feed connections open now. The sampler runs only while there is one (or while it publishes to a fleet). */
  readonly clients: number;
  /**
   * Stops sampling and publishing, and with a fleet, leaves it (its sample is removed from the store). Feeds open
   * now are ended, and the functions' new streams are no longer listed (unless another open dashboard shows them).
   * Idempotent. Needed with `fleet`; otherwise a dashboard dropped unclosed stops listing once collected.
   */
  close(): Promise<void>;
}

/** The part of a Fastify instance the plugin uses. */
export interface FastifyLike {
  /** Adds a GET route. */
  get(
    path: string,
    handler: (request: { raw: IncomingMessage }, reply: { raw: ServerResponse; hijack(): void }) => void,
  ): unknown;
  /** Adds a route for every method (Fastify's `all`): other methods then get 405 as on the other servers. */
  all?(
    path: string,
    handler: (request: { raw: IncomingMessage }, reply: { raw: ServerResponse; hijack(): void }) => void,
  ): unknown;
}

const KEYS = [
  'functions',
  'workers',
  'redisWorkers',
  'limiters',
  'authorize',
  'interval',
  'maxClients',
  'scan',
  'showValues',
  'showKeys',
  'fleet',
];
/** A feed client whose unread data passes this is dropped (it stopped reading). */
const MAX_UNREAD = 1 << 20;
/** The longest `fn` or `id` a stream request may name: a function's name as shown, cut to `MAX_NAME`, fits. */
const MAX_PARAM = MAX_NAME;

/** The files of the page, relative to this module's directory: route -> [file, content type]. */
const FILES: Record<string, [string, string]> = {
  '': ['dashboard/index.html', 'text/html; charset=utf-8'],
  'page.js': ['dashboard/page.js', 'text/javascript; charset=utf-8'],
  'page.css': ['dashboard/page.css', 'text/css; charset=utf-8'],
  'uplot.js': ['dashboard/uPlot.iife.min.js', 'text/javascript; charset=utf-8'],
  'uplot.css': ['dashboard/uPlot.min.css', 'text/css; charset=utf-8'],
};
const cache = new Map<string, Buffer>();
function file(route: string): Buffer {
  let body = cache.get(route);
  if (body === undefined) cache.set(route, (body = readFileSync(join(__dirname, FILES[route][0]))));
  return body;
}

/** Every response: nothing cached, nothing sniffed, no framing, and the page may load only its own files. */
/** A request-target as a URL, or undefined when it is not a path (`//`, `*`, an absolute URL): parsed against a base of its own, never as a scheme-relative address. */
const DOT_SEGMENT = /\/(?:\.|%2e){1,2}(?:\/|$)/i;
/** Characters a request path never carries, which the URL parser would take as `/` (a backslash) or cut at (`#`). */
const NOT_IN_PATH = /[\\#]/;

function target(raw: string | undefined): URL | undefined {
  if (typeof raw !== 'string' || !raw.startsWith('/')) return undefined;
  // A dot segment, plain or percent-encoded (`/x/%2e%2e/`), would be resolved away by the URL parser, and the
  // route judged on a path the client did not send: such a path is no route of the dashboard's.
  // Nor is one with a backslash or a `#`, which the parser would read as a separator or a fragment's start.
  const path = raw.split('?', 1)[0];
  if (NOT_IN_PATH.test(path) || DOT_SEGMENT.test(path)) return undefined;
  try {
    return new URL(`http://dashboard.invalid${raw}`);
  } catch {
    return undefined;
  }
}

const HEADERS = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
};

function end(res: ServerResponse, status: number, body: string | Buffer, type = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { ...HEADERS, 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** A list of distinct items, checked with `is`; two different items with one `key` are refused. */
function distinct<T>(name: string, given: unknown, what: string, is: (x: unknown) => boolean, key: (x: T) => string): T[] {
  if (given === undefined) return [];
  let iterable: boolean;
  try {
    iterable = given !== null && typeof given !== 'string' && typeof (given as Iterable<unknown>)[Symbol.iterator] === 'function';
  } catch {
    iterable = false; // a revoked Proxy, a getter that throws
  }
  if (!iterable) {
    throw invalidType(`dashboard(): the "${name}" option must be an iterable of ${what}. Received ${describe(given)}`);
  }
  let items: unknown[];
  try {
    items = [...(given as Iterable<unknown>)];
  } catch (error) {
    const e = invalidValue(`dashboard(): the "${name}" option could not be iterated (${describe(error)})`);
    (e as { cause?: unknown }).cause = error;
    throw e;
  }
  const byKey = new Map<string, T>();
  for (const item of items) {
    if (!is(item)) throw invalidType(`dashboard(): every item of "${name}" must be one of ${what}. Received ${describe(item)}`);
    const k = key(item as T);
    const seen = byKey.get(k);
    if (seen === undefined) byKey.set(k, item as T);
    else if (seen !== item) {
      throw invalidValue(`dashboard(): two different items of "${name}" are both "${k}": give each a name of its own`);
    }
  }
  return [...byKey.values()];
}

/** A limiter's `name`, read once into `names`: a non-empty string, else undefined (a getter that throws included). */
function limiterName(limiter: object, names: WeakMap<object, string>): string | undefined {
  if (names.has(limiter)) return names.get(limiter);
  let name: unknown;
  try {
    name = (limiter as { name?: unknown }).name;
  } catch {
    return undefined;
  }
  if (typeof name !== 'string' || name === '') return undefined;
  names.set(limiter, name);
  return name;
}

/** A dashboard collected without `close()` gives back its functions' lists then (the held value: those lists). */
const unclosed = new FinalizationRegistry(releaseLists);

/**
 * A live dashboard of `functions`, `workers` and `limiters`: a request handler serving one page and its feed. Mount it
 * where the application wants it (`app.use('/dashboard', dashboard({ ... }))`); nothing is served elsewhere.
 * @throws {TypeError} `ERR_INVALID_ARG_TYPE` / `ERR_INVALID_ARG_VALUE` for bad options (an unknown key, an item
 * that is not a stream function, a worker or a limiter, two different functions or limiters with one name, both
 * `workers` and its old name `redisWorkers`).
 * @throws {RangeError} `ERR_OUT_OF_RANGE` for `interval`, `maxClients` or `scan` out of range.
 */
export function dashboard(options: DashboardOptions = {}): DashboardHandler {
  // (An option whose getter or Proxy trap throws is refused as unreadable, ERR_INVALID_ARG_TYPE.)
  return readingOptions('options', () => makeDashboard(options));
}

function makeDashboard(options: DashboardOptions): DashboardHandler {
  assertOptionsObject(options, 'options', '{ functions: [fn] }');
  for (const key of Object.keys(options)) {
    if (!KEYS.includes(key)) throw invalidValue(`dashboard(): unknown option "${key}". Known options: ${KEYS.join(', ')}`);
  }
  const fns = distinct<AnyFn>(
    'functions',
    options.functions,
    'stream functions (from streamFn, task, batch, workerFn, pipe)',
    (x) => typeof (x as { [kTotals]?: unknown } | null)?.[kTotals] === 'function',
    // By the name shown: two functions whose names are cut alike would be one on the page.
    (f) => shownName(f.name),
  );
  // `redisWorkers`: the old name of `workers`, kept one release.
  if (options.workers !== undefined && options.redisWorkers !== undefined) {
    throw invalidValue('dashboard(): give options.workers or options.redisWorkers (its old name), not both');
  }
  const workersKey = options.redisWorkers !== undefined ? 'redisWorkers' : 'workers';
  const workers = distinct<Worker>(
    workersKey,
    options[workersKey],
    'workers (from sessionWorker)',
    (x) => typeof (x as { [kRoundTrips]?: unknown } | null)?.[kRoundTrips] === 'function',
    (w) => `${w.name} ${w.id}`,
  );
  // A limiter's name is read once, here: its row is named by it, and two different limiters may not share one.
  const names = new WeakMap<object, string>();
  const limiters = distinct<Limiter<unknown>>(
    'limiters',
    options.limiters,
    'limiters (from limiter() or fleetLimiter(), or objects with acquire, tryAcquire, stats and a non-empty string name)',
    (x) => isLimiter(x) && limiterName(x, names) !== undefined,
    // (By the name shown, as functions.)
    (l) => shownName(names.get(l)!),
  );
  const { authorize, interval = 1000, maxClients = 10, scan = 250, showValues = false, showKeys = false } = options;
  if (authorize !== undefined && typeof authorize !== 'function') {
    throw invalidType(`dashboard(): the "authorize" option must be a function. Received ${describe(authorize)}`);
  }
  integerOption('dashboard()', 'interval', interval, 100, 60_000);
  integerOption('dashboard()', 'maxClients', maxClients, 1, 1000);
  integerOption('dashboard()', 'scan', scan, 0, 1_000_000);
  if (typeof showValues !== 'boolean') {
    throw invalidType(`dashboard(): the "showValues" option must be a boolean. Received ${describe(showValues)}`);
  }
  if (typeof showKeys !== 'boolean') {
    throw invalidType(`dashboard(): the "showKeys" option must be a boolean. Received ${describe(showKeys)}`);
  }
  const fleet = options.fleet === undefined ? undefined : new Fleet(options.fleet, interval);

  const sampler = new Sampler(
    fns,
    workers,
    scan,
    showValues,
    showKeys,
    fleet?.name,
    limiters.map((limiter) => ({ limiter, name: names.get(limiter)! })),
  );
  const clients = new Set<ServerResponse>();
  let timer: NodeJS.Timeout | undefined;
  let last: string | undefined;
  let closed = false;
  /** The sampler runs while a page is connected, or all the time while publishing to a fleet. */
  const sampling = () => !closed && (clients.size > 0 || fleet?.publish === true);

  const tick = () => {
    let sample;
    try {
      sample = sampler.sample();
      last = `data: ${JSON.stringify(sample)}\n\n`;
    } catch {
      // (A figure that could not be read, say a worker's stats() throwing: this sample is skipped, the
      // application goes on, and the page shows the time of the last sample it got.)
      return;
    }
    if (fleet?.publish) fleet.publishSample(sample);
    for (const res of clients) {
      // A client that stopped reading is dropped rather than buffered for.
      if (res.writableLength > MAX_UNREAD) res.destroy();
      else res.write(last);
    }
  };

  const feed = (req: IncomingMessage, res: ServerResponse) => {
    if (req.method === 'HEAD') {
      // The headers a feed would have, and no feed: a HEAD is answered at once and holds no client's place.
      res.writeHead(200, { ...HEADERS, 'content-type': 'text/event-stream; charset=utf-8' });
      return res.end();
    }
    // Gone while `authorize` was answering: no feed, and no client's place held by it ('close' has fired).
    if (res.destroyed || req.socket.destroyed) return;
    if (closed) return end(res, 503, 'This dashboard is closed\n');
    if (clients.size >= maxClients) {
      res.setHeader('retry-after', String(Math.ceil(interval / 1000)));
      return end(res, 503, `At most ${maxClients} dashboard feeds are open at once (maxClients)\n`);
    }
    res.writeHead(200, { ...HEADERS, 'content-type': 'text/event-stream; charset=utf-8', connection: 'keep-alive' });
    clients.add(res);
    // The first sample a page gets is the latest (or a fresh one), so it shows figures at once.
    if (timer === undefined) start();
    else if (last !== undefined) res.write(last);
    const close = () => {
      if (!clients.delete(res)) return;
      if (!sampling()) stop();
    };
    // (The response's 'close': the request's fires once its body is read.)
    res.on('close', close);
  };

  function start(): void {
    tick();
    timer = setInterval(tick, interval);
    timer.unref();
  }
  function stop(): void {
    clearInterval(timer);
    timer = undefined;
    last = undefined;
  }
  // Publishing: the sampler runs from now on, whether or not a page is open.
  if (fleet?.publish) start();

  const fleetView = (res: ServerResponse) => {
    if (fleet === undefined) return end(res, 404, 'No fleet: give the dashboard a "fleet" option\n');
    fleet.read().then(
      (view) => end(res, 200, JSON.stringify(view), 'application/json'),
      (error: unknown) => {
        fleet.report(error);
        end(res, 502, `The fleet could not be read from ${fleet.server}\n`);
      },
    );
  };

  const stream = (url: URL, res: ServerResponse) => {
    const fn = url.searchParams.get('fn') ?? '';
    const id = url.searchParams.get('id') ?? '';
    if (fn === '' || id === '' || fn.length > MAX_PARAM || id.length > MAX_PARAM) {
      return end(res, 400, 'Give a function and a stream: stream?fn=<name>&id=<stream id>\n');
    }
    const found = sampler.stream(fn, id);
    // A stream no longer listed is an answer, not an error: the page asks until its stream finishes.
    end(
      res,
      200,
      JSON.stringify(found === undefined ? { fn, id, listed: false } : { ...found, listed: true }),
      'application/json',
    );
  };

  /** Serves `route` (a path relative to the mount point, without its leading slash). */
  const serve = (req: IncomingMessage, res: ServerResponse, route: string, url: URL, next?: (e?: unknown) => void) => {
    const known = route === 'feed' || route === 'stream' || route === 'fleet' || route in FILES;
    if (!known) {
      if (next) return next();
      return end(res, 404, 'Not found\n');
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return end(res, 405, 'Method not allowed\n');
    }
    const allowed = authorize === undefined ? true : new Promise<unknown>((resolve) => resolve(authorize(req)));
    const go = (ok: unknown) => {
      if (ok !== true) return refuse(res, ok);
      if (route === 'feed') return feed(req, res);
      if (route === 'stream') return stream(url, res);
      if (route === 'fleet') return fleetView(res);
      if (route === '' && !url.pathname.endsWith('/')) {
        // The page's files are relative to it: its address ends with a slash.
        // One leading slash: `//host` would send the browser elsewhere.
        const location = `/${url.pathname.replace(/^\/+/, '')}/${url.search}`;
        res.writeHead(308, { ...HEADERS, location, 'content-length': 0 });
        return res.end();
      }
      end(res, 200, file(route), FILES[route][1]);
    };
    if (allowed === true) go(true);
    else allowed.then(go, () => go(false));
  };

  /**
   * The route of a request. Mounted by Express (`originalUrl` set), the path left by the mount is the route,
   * exactly: `/page.js/` or `/a/page.js` are not the dashboard's. On node:http, which has no mount, the route is
   * the path's last segment (the application hands over the requests under its prefix). A request-target that is
   * not a path (`//`, `*`) is no route of the dashboard's.
   */
  const handler = ((req: IncomingMessage, res: ServerResponse, next?: (e?: unknown) => void) => {
    const mounted = (req as { originalUrl?: unknown }).originalUrl;
    const url = target(typeof mounted === 'string' ? mounted : req.url);
    const path = target(req.url)?.pathname;
    let route: string | undefined;
    if (url !== undefined && path !== undefined) {
      if (typeof mounted !== 'string') route = path.slice(path.lastIndexOf('/') + 1);
      else if (path.lastIndexOf('/') === 0) route = path.slice(1);
    }
    if (route === undefined || url === undefined) {
      if (next) return next();
      return end(res, 404, 'Not found\n');
    }
    serve(req, res, route, url, next);
  }) as DashboardHandler;

  const fastify = (instance: FastifyLike, _options: unknown, done: (error?: Error) => void) => {
    for (const route of ['', ...Object.keys(FILES).filter((r) => r !== ''), 'feed', 'stream', 'fleet']) {
      const answer = (request: { raw: IncomingMessage }, reply: { raw: ServerResponse; hijack(): void }) => {
        reply.hijack();
        const url = target(request.raw.url);
        if (url === undefined) return end(reply.raw, 404, 'Not found\n');
        serve(request.raw, reply.raw, route, url);
      };
      if (typeof instance.all === 'function') instance.all(`/${route}`, answer);
      else instance.get(`/${route}`, answer);
    }
    done();
  };
  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      closed = true;
      stop();
      // Its functions' new streams are no longer listed (unless another dashboard shows them).
      if (unclosed.unregister(handler)) releaseLists(sampler.lists);
      for (const res of clients) res.end();
      clients.clear();
      await fleet?.leave();
    })());
  unclosed.register(handler, sampler.lists, handler);
  Object.defineProperties(handler, {
    fastify: { value: fastify, enumerable: true },
    clients: { get: () => clients.size, enumerable: true },
    close: { value: close, enumerable: true },
  });
  return handler;
}

/**
 * Headers that frame the answer or concern the connection (RFC 9110 7.6.1, RFC 9112 6): the dashboard's and Node's
 * to set, never `authorize`'s. Given with both a length and a chunked coding, an answer is read apart differently
 * by a proxy and by the client.
 */
const FRAMING = new Set([
  'content-length',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'proxy-connection',
  'upgrade',
  'te',
  'trailer',
]);

/**
 * Answers a request `authorize` did not allow: 401 with the headers it gave (a challenge), else 403. Only a
 * header whose name and value Node accepts is sent (a result it cannot send is a 403), and never one of `FRAMING`
 * (dropped).
 */
function refuse(res: ServerResponse, result: unknown): void {
  const r = result as { status?: unknown; headers?: unknown } | null;
  if (typeof r !== 'object' || r === null || r.status !== 401) return end(res, 403, 'Forbidden\n');
  const headers: Record<string, string> = {};
  try {
    if (typeof r.headers === 'object' && r.headers !== null) {
      for (const [name, value] of Object.entries(r.headers)) {
        const key = name.toLowerCase();
        if (typeof value === 'string' && !FRAMING.has(key)) headers[key] = value;
      }
    }
    for (const [name, value] of Object.entries(headers)) {
      validateHeaderName(name);
      validateHeaderValue(name, value);
    }
  } catch {
    return end(res, 403, 'Forbidden\n');
  }
  const body = 'Unauthorized\n';
  // The dashboard's own headers win: authorize cannot loosen the page's policy.
  res.writeHead(401, {
    ...headers,
    ...HEADERS,
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}

/** Options of `basicAuth()`. */
export interface BasicAuthOptions {
  /** The user name to accept. */
  username: string;
  /** Its password. */
  password: string;
  /** The realm the browser shows when it asks (no `"`, `\` or control characters). Default `'velo-stream dashboard'`. */
  realm?: string;
}

/** A string's digest: compared with `timingSafeEqual`, two digests take the same time whatever their texts. */
const digest = (text: string) => createHash('sha256').update(text, 'utf8').digest();

/**
 * An `authorize` function for HTTP Basic authentication: a request with the right user name and password (in
 * its `Authorization: Basic` header) is served, any other gets 401 with a `WWW-Authenticate: Basic` challenge,
 * so a browser asks for them. Both are compared in constant time (their SHA-256 digests, with
 * `crypto.timingSafeEqual`, both always). Basic authentication sends the password in every request: serve the
 * dashboard over HTTPS.
 * @throws {TypeError} `ERR_INVALID_ARG_TYPE` when `username` or `password` is not a non-empty string (or `realm`
 * not a string); `ERR_INVALID_ARG_VALUE` for a user name with a `:` or a realm with `"`, `\` or control characters.
 */
export function basicAuth(options: BasicAuthOptions): (req: IncomingMessage) => AuthorizeResult {
  assertOptionsObject(options, 'options', "{ username: 'ops', password }");
  for (const key of Object.keys(options)) {
    if (!['username', 'password', 'realm'].includes(key)) {
      throw invalidValue(`basicAuth(): unknown option "${key}". Known options: username, password, realm`);
    }
  }
  const { username, password, realm = 'velo-stream dashboard' } = options;
  for (const [name, value] of [
    ['username', username],
    ['password', password],
  ] as const) {
    if (typeof value !== 'string' || value === '') {
      throw invalidType(`basicAuth(): the "${name}" option must be a non-empty string. Received ${describe(value)}`);
    }
  }
  if (username.includes(':'))
    throw invalidValue('basicAuth(): the "username" option cannot hold a ":" (Basic authentication splits there)');
  if (typeof realm !== 'string')
    throw invalidType(`basicAuth(): the "realm" option must be a string. Received ${describe(realm)}`);
  // eslint-disable-next-line no-control-regex
  if (/["\\\u0000-\u001f\u007f]/.test(realm)) {
    throw invalidValue('basicAuth(): the "realm" option cannot hold a quote, a backslash or a control character');
  }
  const user = digest(username);
  const pass = digest(password);
  const challenge = { status: 401, headers: { 'www-authenticate': `Basic realm="${realm}", charset="UTF-8"` } } as const;
  return (req) => {
    const header = req.headers.authorization;
    const match = typeof header === 'string' ? /^Basic +([A-Za-z0-9+/=]+) *$/i.exec(header) : null;
    if (match === null) return challenge;
    const decoded = Buffer.from(match[1], 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) return challenge;
    // Both compared, always: how long an answer takes says nothing of which part was wrong.
    const userOk = timingSafeEqual(digest(decoded.slice(0, colon)), user);
    const passOk = timingSafeEqual(digest(decoded.slice(colon + 1)), pass);
    return userOk && passOk ? true : challenge;
  };
}

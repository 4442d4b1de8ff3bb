// Loads the native addon through the loader that `napi build --platform`
// generates (native/index.js). It tries a local build first
// (native/velo-stream.<target>.node, which `npm run build:native` writes in a
// checkout, so a contributor's fresh build is the one tested), then the
// platform package velo-stream-<target>: the published package lists one per
// target in optionalDependencies (written at release by `napi pre-publish`),
// and npm installs the one whose os/cpu/libc match. When both fail, the
// generated loader's error does not say what to do; this one does, with a
// stable code.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { addonNotFoundError } from '../errors';

const PACKAGE_ROOT = join(__dirname, '..', '..');
const PACKAGE_PREFIX = 'velo-stream-';

/** This host as napi-rs names targets in package names: `linux-x64-gnu`, `darwin-arm64`, `win32-x64-msvc`. */
function hostTarget(): string {
  const { platform, arch } = process;
  if (platform === 'linux') {
    // Node's report names the glibc it runs on; musl builds have no such field.
    const header = (process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header;
    return `${platform}-${arch}-${header?.glibcVersionRuntime ? 'gnu' : 'musl'}`;
  }
  return platform === 'win32' ? `${platform}-${arch}-msvc` : `${platform}-${arch}`;
}

function isInstalled(name: string): boolean {
  try {
    require.resolve(`${name}/package.json`);
    return true;
  } catch {
    return false;
  }
}

function addonNotFound(cause: unknown): Error {
  const target = hostTarget();
  const wanted = PACKAGE_PREFIX + target;
  const manifest = JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as {
    optionalDependencies?: Record<string, string>;
  };
  const published = Object.keys(manifest.optionalDependencies ?? {}).filter((name) => name.startsWith(PACKAGE_PREFIX));
  let fix: string;
  if (isInstalled(wanted)) {
    fix = `${wanted} is installed but did not load (the cause below says why); reinstall it, or report the error.`;
  } else if (published.includes(wanted)) {
    fix =
      `${wanted} is an optional dependency of velo-stream that is not installed. Install without --omit=optional ` +
      `(or --no-optional); if the lockfile was made on another platform, delete node_modules and package-lock.json and run npm install again.`;
  } else if (published.length > 0) {
    const targets = published.map((name) => name.slice(PACKAGE_PREFIX.length)).join(', ');
    fix = `velo-stream has prebuilt addons for ${targets} only; on ${target}, build it from a checkout of the repository (npm install, needs Rust).`;
  } else {
    fix = 'In a checkout of the repository, build it: npm run build:native (needs Rust; README, Contributing).';
  }
  return addonNotFoundError(
    `velo-stream: cannot load its native addon for ${target} (Node ${process.version}), looked for in a local build ` +
      `(native/velo-stream.${target}.node) and in the package ${wanted}. ${fix}`,
    cause,
  );
}

function loadAddon(): unknown {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('../../native/index.js');
  } catch (cause) {
    throw addonNotFound(cause);
  }
}

export = loadAddon();

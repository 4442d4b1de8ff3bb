// npm run pack:release: the two tarballs a user of this machine's platform installs, made as
// .github/workflows/release.yml publishes them, without building the addon again:
//
// - velo-stream: `npm pack` of the checkout (its built dist/ and native/ loader, no binary), with the two
//   changes the release's publish step makes to package.json: `napi pre-publish` lists every target's platform
//   package, at this version, in optionalDependencies (npm installs the one whose os/cpu/libc match), and
//   `npm pkg delete scripts.prepare` drops the contributors' build from source (a plain `npm pack` runs it: a
//   Rust build, and a tarball whose addon does not load, since the binary is not in it).
// - velo-stream-<target>: npm/<target> with this machine's local build (native/velo-stream.<target>.node) in it,
//   what `napi artifacts` does with each release runner's build. Other targets' packages are built by the release
//   workflow, each on its own runner.
//
// `npm run pack:release` builds the TypeScript first (as the release does) and then runs this script, which packs
// what is built. Usage: node scripts/pack-release.mjs [--destination <dir>] [--json]. Prints the two tarballs'
// paths, one a line (with --json, one JSON object: main and platform, each { path, files }, the published
// `manifest` of the main one, and `target`, `binary`, `platformPackage`). __test__/install.test.mjs installs what
// it makes.
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { readNapiConfig } from '@napi-rs/cli';

const root = fileURLToPath(new URL('..', import.meta.url));

/** Runs `command` (npm through a shell on Windows, where it is npm.cmd): its stdout. */
async function exec(command, args, cwd) {
  const { stdout } = await promisify(execFile)(command, args, {
    cwd,
    maxBuffer: 64 * 1024 * 1024,
    shell: process.platform === 'win32',
  });
  return stdout;
}

/** `npm pack --ignore-scripts` of `from` into `destination`: the tarball's path and its file list. */
async function pack(from, destination) {
  const stdout = await exec('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', destination], from);
  const [result] = JSON.parse(stdout);
  return { path: join(destination, result.filename), files: result.files.map((f) => f.path) };
}

/** This machine's local build, `native/velo-stream.<target>.node`: its file name and target. */
function localBuild() {
  const built = readdirSync(join(root, 'native')).filter((f) => /^velo-stream\..+\.node$/.test(f));
  if (built.length !== 1) {
    throw new Error(
      built.length === 0
        ? 'pack:release: no local build in native/ (velo-stream.<target>.node): run `npm run build:native` (or `npm install`) first'
        : `pack:release: more than one build in native/ (${built.join(', ')}): keep only this machine's`,
    );
  }
  const binary = built[0];
  return { binary, target: binary.slice('velo-stream.'.length, -'.node'.length) };
}

/** Packs both tarballs into `destination` (created if missing); see the header. */
async function packRelease(destination) {
  const { binary, target } = localBuild();
  const version = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version;
  mkdirSync(destination, { recursive: true });
  const staging = mkdtempSync(join(tmpdir(), 'velo-pack-'));
  try {
    const raw = await pack(root, staging);
    await exec('tar', ['-xzf', raw.path, '-C', staging]);
    rmSync(raw.path);
    const staged = join(staging, 'package');
    const { targets, packageName } = await readNapiConfig(join(root, 'package.json'));
    await exec(
      'npm',
      ['pkg', 'set', ...targets.map((t) => `optionalDependencies.${packageName}-${t.platformArchABI}=${version}`)],
      staged,
    );
    await exec('npm', ['pkg', 'delete', 'scripts.prepare'], staged);
    const manifest = JSON.parse(readFileSync(join(staged, 'package.json'), 'utf8'));
    const main = await pack(staged, destination);

    const platformDir = join(root, 'npm', target);
    const platformStaged = join(staging, 'platform');
    mkdirSync(platformStaged);
    for (const file of readdirSync(platformDir)) copyFileSync(join(platformDir, file), join(platformStaged, file));
    copyFileSync(join(root, 'native', binary), join(platformStaged, binary));
    const platformPackage = JSON.parse(readFileSync(join(platformDir, 'package.json'), 'utf8')).name;
    const platform = await pack(platformStaged, destination);
    return { main: { ...main, manifest }, platform, target, binary, platformPackage };
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

try {
  const { values } = parseArgs({ options: { destination: { type: 'string' }, json: { type: 'boolean' } } });
  const packed = await packRelease(resolve(values.destination ?? join(root, 'packed')));
  console.log(values.json ? JSON.stringify(packed) : `${packed.main.path}\n${packed.platform.path}`);
} catch (error) {
  console.error(error instanceof Error ? error.message : String(error));
  process.exitCode = 1;
}

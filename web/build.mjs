// web/build.mjs: builds web/dist/ (the ready-to-serve ES-module build:
// synclog.js, synclog-worker.js, sqlite3.wasm, synclog.d.ts and the
// declarations it imports) and web/build/lib/ (each src module transpiled
// alone, for Node's tests).  `make web` (part of `make all`) runs it.
//
// An entry that does not exist yet (src/synclog.ts, src/worker.ts) is
// skipped with a note.  Any esbuild error, a missing node_modules, or
// declarations that cannot be written fail the build with a message and exit
// status 1.  Type errors alone do not: they are printed here as a warning,
// and tests/suites/70-web-unit.sh (`tsc --noEmit`) fails on them.
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const src = join(here, 'src');
const dist = join(here, 'dist');
const lib = join(here, 'build', 'lib');
const modules = join(here, 'node_modules');

function die(message) {
  console.error(`web/build.mjs: ${message}`);
  process.exit(1);
}

const wasm = join(modules, '@sqlite.org', 'sqlite-wasm', 'dist', 'sqlite3.wasm');
const tsc = join(modules, 'typescript', 'bin', 'tsc');
if (!existsSync(wasm) || !existsSync(tsc))
  die(`web/node_modules is missing or incomplete (no ${existsSync(wasm) ? tsc : wasm}): run \`make deps\` (npm ci in web/)`);

rmSync(dist, { recursive: true, force: true });
rmSync(lib, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });
mkdirSync(lib, { recursive: true });

const entries = readdirSync(src).filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'));

// esbuild has printed its errors (logLevel) when build() rejects.
async function esbuild(what, options) {
  try {
    await build({ logLevel: 'warning', ...options });
  } catch (e) {
    die(`esbuild failed on ${what}${e?.errors?.length ? ' (errors above)' : `: ${e?.message ?? e}`}`);
  }
}

// Each module alone, imports kept, for `node --test test/`.
if (entries.length > 0) {
  await esbuild('src/*.ts (build/lib)', {
    entryPoints: entries.map((f) => join(src, f)),
    outdir: lib,
    format: 'esm',
    platform: 'neutral',
    target: 'es2022',
  });
}

// The page's module and the worker, each one file.  The worker's bundle
// holds sqlite-wasm, which finds sqlite3.wasm next to itself
// (import.meta.url), so the .wasm is copied beside it.
const bundles = [
  ['synclog.ts', 'synclog.js'],
  ['worker.ts', 'synclog-worker.js'],
];
for (const [entry, out] of bundles) {
  if (!entries.includes(entry)) {
    console.log(`web/build.mjs: src/${entry} does not exist yet: no dist/${out}`);
    continue;
  }
  await esbuild(`src/${entry}`, {
    entryPoints: [join(src, entry)],
    outfile: join(dist, out),
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    sourcemap: true,
  });
}
copyFileSync(wasm, join(dist, 'sqlite3.wasm'));

// dist/synclog.d.ts (package.json's "types"), and the declarations of the
// modules it imports beside it, from tsconfig.json's settings.
if (entries.includes('synclog.ts')) {
  const config = join(here, 'build', 'tsconfig.dts.json');
  writeFileSync(config, JSON.stringify({
    extends: '../tsconfig.json',
    compilerOptions: { noEmit: false, declaration: true, emitDeclarationOnly: true, outDir: '../dist', rootDir: '../src' },
    include: [],
    files: ['../src/synclog.ts'],
  }, null, 2));
  const r = spawnSync(process.execPath, [tsc, '-p', config, '--pretty', 'false'], { encoding: 'utf8' });
  const out = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
  // tsc: 0 clean, 2 errors but files written, anything else nothing written.
  if (r.status === 2) {
    console.warn(`web/build.mjs: warning: type errors while writing dist/synclog.d.ts ` +
                 `(tests/suites/70-web-unit.sh fails on them):\n${out}`);
  } else if (r.status !== 0) {
    die(`tsc could not write dist/synclog.d.ts (status ${r.status ?? r.signal}):\n${out}`);
  }
  if (!existsSync(join(dist, 'synclog.d.ts')))
    die(`tsc ran but dist/synclog.d.ts is missing:\n${out}`);
}

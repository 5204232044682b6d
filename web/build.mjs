// web/build.mjs: builds web/dist/ (the ready-to-serve ES-module build:
// synclog.js, synclog-worker.js, sqlite3.wasm, synclog.d.ts) and
// web/build/lib/ (each src module transpiled alone, for Node's tests).
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const src = join(here, 'src');
const dist = join(here, 'dist');
const lib = join(here, 'build', 'lib');

rmSync(dist, { recursive: true, force: true });
rmSync(lib, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });
mkdirSync(lib, { recursive: true });

const entries = readdirSync(src).filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'));

// Each module alone, imports kept, for `node --test test/`.
await build({
  entryPoints: entries.map((f) => join(src, f)),
  outdir: lib,
  format: 'esm',
  platform: 'neutral',
  target: 'es2022',
  logLevel: 'warning',
});

// The page's module and the worker, each one file.  The worker's bundle
// holds sqlite-wasm, which finds sqlite3.wasm next to itself
// (import.meta.url), so the .wasm is copied beside it.
const bundles = [
  ['synclog.ts', 'synclog.js'],
  ['worker.ts', 'synclog-worker.js'],
];
for (const [entry, out] of bundles) {
  if (!entries.includes(entry)) continue;
  await build({
    entryPoints: [join(src, entry)],
    outfile: join(dist, out),
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    sourcemap: true,
    logLevel: 'warning',
  });
}
copyFileSync(join(here, 'node_modules', '@sqlite.org', 'sqlite-wasm', 'dist', 'sqlite3.wasm'),
             join(dist, 'sqlite3.wasm'));

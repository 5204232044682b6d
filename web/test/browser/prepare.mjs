// web/test/browser/prepare.mjs DIR: makes the directory the browser tests'
// gateway serves with --static:
//
//   DIR/                 a copy of web/dist (synclog.js, synclog-worker.js,
//                        sqlite3.wasm, …): the build as an app would serve it
//   DIR/test/            web/test/browser/pages/* except the workers
//   DIR/test-*.js        each pages/*.worker.js bundled by esbuild (it may
//                        import @sqlite.org/sqlite-wasm), beside dist's
//                        sqlite3.wasm, which sqlite-wasm finds relative to
//                        its module (import.meta.url) as synclog-worker.js does
//
// Fails with a message when web/dist has not been built (`make web`).
import { build } from 'esbuild';
import { cpSync, existsSync, mkdirSync, readdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const web = join(here, '..', '..');
const dist = join(web, 'dist');
const pages = join(here, 'pages');

const out = process.argv[2];
if (!out) {
  console.error('usage: node web/test/browser/prepare.mjs DIR');
  process.exit(2);
}
if (!existsSync(join(dist, 'sqlite3.wasm'))) {
  console.error(`prepare.mjs: ${dist}/sqlite3.wasm is missing: build web/dist first (\`make web\`)`);
  process.exit(1);
}

mkdirSync(join(out, 'test'), { recursive: true });
cpSync(dist, out, { recursive: true });
const workers = [];
for (const f of readdirSync(pages)) {
  if (f.endsWith('.worker.js')) workers.push(f);
  else cpSync(join(pages, f), join(out, 'test', f), { recursive: true });
}
for (const f of workers) {
  try {
    await build({
      entryPoints: [join(pages, f)],
      outfile: join(out, `test-${basename(f, '.worker.js')}-worker.js`),
      bundle: true,
      format: 'esm',
      platform: 'browser',
      target: 'es2022',
      nodePaths: [join(web, 'node_modules')],
      logLevel: 'warning',
    });
  } catch (e) {
    console.error(`prepare.mjs: esbuild failed on pages/${f}${e?.errors?.length ? ' (errors above)' : `: ${e?.message ?? e}`}`);
    process.exit(1);
  }
}

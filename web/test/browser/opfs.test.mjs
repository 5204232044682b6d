// web/test/browser/opfs.test.mjs: the served build, sqlite3.wasm and OPFS
// persistence in headless Chromium, before any synclog API: a page of the
// gateway's --static origin starts a dedicated module worker
// (pages/opfs.worker.js, bundled beside dist's sqlite3.wasm) that loads
// sqlite-wasm, installs the opfs-sahpool VFS and keeps one table.
//
//   - sqlite3.wasm is served so that WebAssembly.compileStreaming takes it
//     (application/wasm) and sqlite-wasm loads without a console error;
//   - a row written survives a page reload;
//   - a row whose write resolved survives kill -9 of the whole browser and a
//     restart on the same profile, and the file passes integrity_check;
//   - a second tab installing the same pool while the first holds it gets an
//     error (NoModificationAllowedError from OPFS) and breaks nothing: the
//     first tab keeps writing, and once it lets go the second opens the pool
//     and finds every row.
// Each test starts from a fresh profile and checks the table empty first, so
// a row found later was written by that test.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DEADLINE_MS, inPage, launchBrowser, waitFor } from './harness.mjs';

const PAGE = '/test/opfs.html';

async function openPage(b) {
  const page = await b.open(PAGE);
  await waitFor(() => page.evaluate(() => window.opfsTest?.ready === true), { what: 'the test page\'s module' });
  return page;
}

/* Runs one worker op in the page; rejects with the worker's error. */
function call(b, page, op, args = {}) {
  return inPage(b, page, (op, args) => window.opfsTest.call(op, args), op, args);
}

/* The same, resolving to {ok, value} or {ok: false, name, message}. */
function attempt(b, page, op, args = {}) {
  return inPage(b, page, (op, args) => window.opfsTest.call(op, args).then(
    (value) => ({ ok: true, value }),
    (e) => ({ ok: false, name: e.name, message: e.message })), op, args);
}

/* init + install (retried for a while when asked) + open. */
async function openDb(b, page, { retryMs = 0 } = {}) {
  const init = await call(b, page, 'init');
  const installed = await call(b, page, 'install', { retryMs });
  await call(b, page, 'open');
  return { init, installed };
}

function noErrors(b, page, when) {
  assert.deepEqual(b.errorsOf(page), [], `the page reported errors ${when}`);
}

test('sqlite3.wasm is served as application/wasm and sqlite-wasm loads from the dist build', async (t) => {
  const b = await launchBrowser(t);
  const page = await openPage(b);
  const wasm = await inPage(b, page, async () => {
    const r = await fetch('/sqlite3.wasm');
    const type = r.headers.get('content-type');
    /* compileStreaming refuses a response that is not application/wasm */
    const module = await WebAssembly.compileStreaming(r);
    return { type, exports: WebAssembly.Module.exports(module).length };
  });
  assert.equal(wasm.type, 'application/wasm');
  assert.ok(wasm.exports > 100, `sqlite3.wasm compiled with ${wasm.exports} exports`);
  const { init } = await openDb(b, page);
  assert.match(init.version, /^3\.\d+\.\d+$/);
  noErrors(b, page, 'while loading sqlite-wasm');
});

test('a row written in OPFS survives a page reload', async (t) => {
  const b = await launchBrowser(t);
  let page = await openPage(b);
  const { installed } = await openDb(b, page);
  assert.equal(installed.vfs, 'synclog-test');
  assert.deepEqual(await call(b, page, 'all'), [], 'a fresh profile starts empty');
  await call(b, page, 'put', { k: 'reload', v: 'kept' });
  noErrors(b, page, 'before the reload');

  await page.reload({ waitUntil: 'load' });
  await waitFor(() => page.evaluate(() => window.opfsTest?.ready === true), { what: 'the reloaded page' });
  /* the old page's worker may hold the pool's handles for a moment */
  await openDb(b, page, { retryMs: DEADLINE_MS });
  assert.equal(await call(b, page, 'get', { k: 'reload' }), 'kept');
  assert.equal((await call(b, page, 'check')).integrity, 'ok');
});

test('a write resolved before kill -9 of the browser is there after a restart on the same profile', async (t) => {
  const b = await launchBrowser(t);
  let page = await openPage(b);
  await openDb(b, page);
  assert.deepEqual(await call(b, page, 'all'), [], 'a fresh profile starts empty');
  await call(b, page, 'put', { k: 'before', v: 'crash' });
  await call(b, page, 'put', { k: 'last', v: 'write' });
  await b.kill(); /* right after the put resolved */

  await b.restart();
  page = await openPage(b);
  await openDb(b, page, { retryMs: DEADLINE_MS });
  assert.deepEqual(await call(b, page, 'all'), [['before', 'crash'], ['last', 'write']]);
  const check = await call(b, page, 'check');
  assert.equal(check.integrity, 'ok');
  assert.notEqual(check.journal, 'wal', 'opfs-sahpool has no WAL');
  noErrors(b, page, 'after the restart');
});

test('a second tab opening the same pool gets an error and corrupts nothing', async (t) => {
  const b = await launchBrowser(t);
  const first = await openPage(b);
  await openDb(b, first);
  assert.deepEqual(await call(b, first, 'all'), [], 'a fresh profile starts empty');
  await call(b, first, 'put', { k: 'a', v: 'first tab' });

  const second = await openPage(b);
  await call(b, second, 'init');
  const refused = await attempt(b, second, 'install', { retryMs: 0 });
  assert.equal(refused.ok, false, 'the second tab installed a pool the first tab holds');
  assert.match(`${refused.name}: ${refused.message}`, /NoModificationAllowed|access handle|locked|lock/i,
               `the second tab's error names the held handles: ${refused.name}: ${refused.message}`);

  /* the first tab is unharmed and keeps writing */
  await call(b, first, 'put', { k: 'b', v: 'after the refusal' });
  assert.deepEqual(await call(b, first, 'all'), [['a', 'first tab'], ['b', 'after the refusal']]);
  assert.equal((await call(b, first, 'check')).integrity, 'ok');
  noErrors(b, first, 'in the first tab');

  /* once the first lets go, the second opens the pool and finds every row */
  await call(b, first, 'close');
  await call(b, second, 'install', { retryMs: DEADLINE_MS });
  await call(b, second, 'open');
  assert.deepEqual(await call(b, second, 'all'), [['a', 'first tab'], ['b', 'after the refusal']]);
  assert.equal((await call(b, second, 'check')).integrity, 'ok');
});

// web/test/browser/api-errors.test.mjs: what the page API says when it cannot
// work — no durable storage, bad arguments — in headless Chromium.
//
//   - a worker with no Origin Private File System (navigator.storage hidden
//     before synclog's own worker runs: pages/nostorage.worker.js):
//     openSynclog rejects with storage_unavailable and a message naming
//     OPFS, instead of running without durable storage;
//   - bad arguments to openSynclog, put, delete, query, watch and on are
//     refused with invalid_argument and a message naming the argument.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { inPage, launchBrowser, sql, startGateway, waitFor } from './harness.mjs';

const PAGE = '/test/app.html';

async function appPage(b) {
  const page = await b.open(PAGE);
  await waitFor(() => page.evaluate(() => window.app?.ready === true), { what: 'the app page\'s module' });
  return page;
}

test('no OPFS: openSynclog rejects with storage_unavailable, naming what is missing', async (t) => {
  const gw = await startGateway();
  t.after(() => gw.stop());
  const b = await launchBrowser(t);
  const page = await appPage(b);
  const err = await inPage(b, page, (url) => window.app.error(() => window.app.open({
    url, token: 'x', groups: ['g'], name: 'nostorage', workerUrl: '/test-nostorage-worker.js',
  })), gw.wsUrl);
  assert.ok(err, 'openSynclog resolved without durable storage');
  assert.equal(err.name, 'SynclogError');
  assert.equal(err.code, 'storage_unavailable');
  assert.match(err.message, /Origin Private File System/);
});

test('bad arguments are refused with invalid_argument and a message naming them', async (t) => {
  const group = `args-${randomUUID().slice(0, 8)}`;
  const token = sql(`SELECT synclog.create_token('${group}', ARRAY['${group}'])`);
  const gw = await startGateway();
  t.after(() => gw.stop());
  const b = await launchBrowser(t);
  const page = await appPage(b);

  const openErrors = await inPage(b, page, async (url, token, group) => {
    const cases = {
      'no groups': { url, token, groups: [] },
      'a token that is not a string': { url, token: 42, groups: [group] },
      'a url of another scheme': { url: 'ftp://127.0.0.1/', token, groups: [group] },
      'a bad name': { url, token, groups: [group], name: 'has space' },
    };
    const out = {};
    for (const [k, o] of Object.entries(cases)) out[k] = await window.app.error(() => window.app.open(o));
    return out;
  }, gw.wsUrl, token, group);
  for (const [k, e] of Object.entries(openErrors)) {
    assert.ok(e, `openSynclog accepted ${k}`);
    assert.equal(e.code, 'invalid_argument', `${k}: ${e.message}`);
  }
  assert.match(openErrors['no groups'].message, /groups/);
  assert.match(openErrors['a token that is not a string'].message, /token/);
  assert.match(openErrors['a url of another scheme'].message, /ws:\/\//);
  assert.match(openErrors['a bad name'].message, /name/);

  await inPage(b, page, (o) => window.app.open(o), { url: gw.wsUrl, token, groups: [group], name: 'args' });
  const callErrors = await inPage(b, page, async () => {
    const a = window.app;
    return {
      'put: a table that is not a string': await a.error(() => a.put(7, 'r', {})),
      'put: an empty id': await a.error(() => a.put('issues', '', {})),
      'put: fields that are an array': await a.error(() => a.put('issues', 'r', [1])),
      'put: a NaN field': await a.error(() => a.put('issues', 'r', { prio: NaN })),
      'put: a Date field': await a.error(() => a.put('issues', 'r', { title: new Date() })),
      'delete: an id that is a number': await a.error(() => a.del('issues', 5)),
      'query: no sql': await a.error(() => a.query('')),
      'query: a write': await a.error(() => a.query("DELETE FROM issues")),
      'query: two statements': await a.error(() => a.query('SELECT 1; SELECT 2')),
    };
  });
  for (const [k, e] of Object.entries(callErrors)) {
    assert.ok(e, `${k} was accepted`);
    assert.equal(e.code, 'invalid_argument', `${k}: ${e.code} ${e.message}`);
    assert.ok(e.message.length > 10, `${k}: the message says nothing: ${JSON.stringify(e.message)}`);
  }
  assert.match(callErrors['put: a NaN field'].message, /prio/);
  assert.match(callErrors['put: a Date field'].message, /title/);
  /* nothing of that reached the outbox */
  assert.equal((await inPage(b, page, () => window.app.status())).pending, 0);
});

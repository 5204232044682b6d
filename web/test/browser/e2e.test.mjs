// web/test/browser/e2e.test.mjs: the page API (web/src/synclog.ts, served
// as /synclog.js from web/dist) end to end in headless Chromium, against
// PostgreSQL and synclog-gateway, beside the C client (synclog-cli).
//
// The test page (pages/app.html) comes from the suite's gateway
// ($SYNCLOG_WEB_URL), which stays up, so that a reload works while the
// server is "down": each test syncs through a gateway of its own
// (harness.startGateway) that it stops and starts again on the same port to
// go offline and back (CDP's offline emulation would not drop the open
// socket).  Each test has a group and a token of its own, and a fresh
// browser profile, so that nothing another test did is visible to it.
//
//   - offline: a put resolves with the gateway down, shows at once, is
//     pending; after a reload (still down) the row and the pending op are
//     there; a synclog-cli client meanwhile edits the same row (one field
//     both touched, later, and one only it touched); back online, the
//     browser, the CLI and PostgreSQL converge field by field;
//   - a CHECK refusal: the put shows at once, then on('rejected') reports
//     constraint_violation with the op id put returned, the row is rolled
//     back, PostgreSQL has nothing;
//   - two tabs: one owner; the other's writes go through it; each tab's
//     watch sees the other's writes live; everything reaches PostgreSQL;
//   - the owner tab closed while a batch of the other's writes is being
//     synced: the other becomes the owner, every write is there once,
//     locally and in PostgreSQL (one op each);
//   - the browser killed (SIGKILL) right after put resolved: after a restart
//     on the same profile the row is there and reaches PostgreSQL;
//   - a first sync of 10,000 rows made in PostgreSQL: every row arrives.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { cli, DEADLINE_MS, inPage, launchBrowser, sql, startGateway, waitFor } from './harness.mjs';

const PAGE = '/test/app.html';

/* A group and a token (read-write) of the test's own. */
function newGroup(tag) {
  const group = `${tag}-${randomUUID().slice(0, 8)}`;
  const token = sql(`SELECT synclog.create_token('${group}', ARRAY['${group}'])`);
  return { group, token };
}

async function appPage(b) {
  const page = await b.open(PAGE);
  await waitFor(() => page.evaluate(() => window.app?.ready === true), { what: 'the app page\'s module' });
  return page;
}

const run = (b, page, fn, ...args) => inPage(b, page, fn, ...args);
const open = (b, page, opts) => run(b, page, (o) => window.app.open(o), opts);
const put = (b, page, table, id, fields) => run(b, page, (t, i, f) => window.app.put(t, i, f), table, id, fields);
const query = (b, page, q, params = []) => run(b, page, (q, p) => window.app.query(q, p), q, params);
const status = (b, page) => run(b, page, () => window.app.status());
const events = (b, page, kind) => run(b, page, (k) => window.app.events(k), kind);

/* The row of issues as the page sees it, or null. */
async function localRow(b, page, id) {
  const rows = await query(b, page, 'SELECT id, team, title, status, prio FROM issues WHERE id = ?', [id]);
  return rows[0] ?? null;
}

/* The row in PostgreSQL, or null. */
function serverRow(id) {
  const j = sql(`SELECT row_to_json(r) FROM (SELECT id, team, title, status, prio FROM issues WHERE id = '${id}') r`);
  return j ? JSON.parse(j) : null;
}

function waitStatus(b, page, what, pred, timeout = DEADLINE_MS) {
  return waitFor(async () => {
    const s = await status(b, page);
    return pred(s) ? s : false;
  }, { what: `status: ${what}`, timeout });
}

async function gateway(t, port) {
  const gw = await startGateway(port ? { port } : {});
  t.after(() => gw.stop());
  return gw;
}

function tempFile(t, name) {
  const dir = mkdtempSync(join(tmpdir(), 'synclog-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, name);
}

test('offline: a put is local and pending, survives a reload, and converges field by field with synclog-cli and PostgreSQL', async (t) => {
  const { group, token } = newGroup('offline');
  const id = `row-${randomUUID()}`;
  let gw = await gateway(t);
  const cliDb = tempFile(t, 'cli.db');
  const viaCli = (gwx, args) => cli(cliDb, args, { server: gwx.wsUrl, token, groups: [group] });

  /* the row exists on the server first */
  let r = viaCli(gw, ['put', 'issues', id, `team=${group}`, 'title=first', 'status=open', 'prio=1']);
  assert.equal(r.status, 0, r.stderr);
  r = viaCli(gw, ['sync']);
  assert.equal(r.status, 0, `synclog-cli sync: ${r.stderr}`);

  const b = await launchBrowser(t);
  let page = await appPage(b);
  await open(b, page, { url: gw.wsUrl, token, groups: [group], name: 'offline' });
  await waitFor(async () => (await localRow(b, page, id))?.title === 'first', { what: 'the row from the server' });
  await waitStatus(b, page, 'connected', (s) => s.connected);

  /* offline: the gateway goes away */
  const port = gw.port;
  await gw.stop();
  await waitStatus(b, page, 'disconnected', (s) => !s.connected);
  const opId = await put(b, page, 'issues', id, { title: 'from the browser', status: 'browser' });
  assert.match(opId, /^[0-9a-f-]{36}$/);
  assert.deepEqual(await localRow(b, page, id),
                   { id, team: group, title: 'from the browser', status: 'browser', prio: 1 }, 'visible at once');
  await waitStatus(b, page, '1 pending op', (s) => s.pending === 1 && !s.connected);

  /* a reload, the server still down: the row and the op are still there */
  await page.reload({ waitUntil: 'load' });
  await waitFor(() => page.evaluate(() => window.app?.ready === true), { what: 'the reloaded page' });
  await open(b, page, { url: `ws://127.0.0.1:${port}`, token, groups: [group], name: 'offline' });
  assert.deepEqual(await localRow(b, page, id),
                   { id, team: group, title: 'from the browser', status: 'browser', prio: 1 }, 'kept across the reload');
  await waitStatus(b, page, '1 pending op after the reload', (s) => s.pending === 1 && !s.connected);

  /* meanwhile, later, the C client edits status (which the browser also
   * edited) and prio (which it did not), through another gateway */
  const other = await gateway(t);
  r = viaCli(other, ['put', 'issues', id, 'status=cli', 'prio=7']);
  assert.equal(r.status, 0, r.stderr);
  r = viaCli(other, ['sync']);
  assert.equal(r.status, 0, `synclog-cli sync: ${r.stderr}`);
  assert.deepEqual(serverRow(id), { id, team: group, title: 'first', status: 'cli', prio: 7 });

  /* back online: the browser's gateway returns on its port */
  gw = await gateway(t, port);
  const want = { id, team: group, title: 'from the browser', status: 'cli', prio: 7 };
  await waitStatus(b, page, 'connected, nothing pending', (s) => s.connected && s.pending === 0);
  await waitFor(async () => JSON.stringify(await localRow(b, page, id)) === JSON.stringify(want),
                { what: `the browser's row to converge to ${JSON.stringify(want)}` });
  assert.deepEqual(serverRow(id), want, 'PostgreSQL: title from the browser, status (later) and prio from the CLI');
  r = viaCli(other, ['sync']);
  assert.equal(r.status, 0, r.stderr);
  r = viaCli(other, ['get', 'issues', id]);
  assert.equal(r.status, 0, r.stderr);
  const got = JSON.parse(r.stdout);
  assert.deepEqual({ title: got.title, status: got.status, prio: got.prio }, { title: 'from the browser', status: 'cli', prio: 7 });
  assert.deepEqual(await events(b, page, 'rejected'), []);
  assert.deepEqual(b.errorsOf(page), []);
});

test('a CHECK refusal is shown at once, then rolled back and reported with its code', async (t) => {
  const { group, token } = newGroup('reject');
  const id = `row-${randomUUID()}`;
  const gw = await gateway(t);
  const b = await launchBrowser(t);
  const page = await appPage(b);
  await open(b, page, { url: gw.wsUrl, token, groups: [group], name: 'reject' });
  await waitStatus(b, page, 'connected', (s) => s.connected);
  const good = `row-${randomUUID()}`;
  await put(b, page, 'issues', good, { team: group, title: 'fine', prio: 1 });
  const opId = await put(b, page, 'issues', id, { team: group, title: 'bad', prio: -1 });
  const rejected = await waitFor(async () => (await events(b, page, 'rejected'))[0], { what: 'on(\'rejected\')' });
  assert.equal(rejected.id, opId);
  assert.equal(rejected.table, 'issues');
  assert.equal(rejected.row, id);
  assert.equal(rejected.code, 'constraint_violation');
  assert.match(rejected.message, /prio|check/i);
  await waitFor(async () => (await localRow(b, page, id)) === null, { what: 'the refused row rolled back' });
  await waitStatus(b, page, 'nothing pending', (s) => s.pending === 0);
  assert.equal(serverRow(id), null, 'PostgreSQL has no refused row');
  assert.equal(serverRow(good)?.title, 'fine', 'the op beside it applied');
  assert.equal((await events(b, page, 'rejected')).length, 1);
});

test('two tabs: one owner, the other writes through it, each sees the other\'s writes live', async (t) => {
  const { group, token } = newGroup('tabs');
  const gw = await gateway(t);
  const b = await launchBrowser(t);
  const one = await appPage(b);
  const two = await appPage(b);
  const opts = { url: gw.wsUrl, token, groups: [group], name: 'tabs' };
  await open(b, one, opts);
  await open(b, two, opts);
  const s1 = await waitStatus(b, one, 'tab one owner', (s) => s.owner);
  const s2 = await status(b, two);
  assert.equal(s1.owner, true);
  assert.equal(s2.owner, false, 'exactly one owner');

  const q = 'SELECT id, title FROM issues ORDER BY id';
  const w1 = await run(b, one, (q) => window.app.watch(q), q);
  const w2 = await run(b, two, (q) => window.app.watch(q), q);
  const watched = (page, w) => run(b, page, (n) => window.app.watched(n), w);

  await put(b, two, 'issues', 'a-from-two', { team: group, title: 'two' });
  await waitFor(async () => (await watched(one, w1)).rows?.some((r) => r.id === 'a-from-two'),
                { what: 'tab one\'s watch to see tab two\'s write' });
  await put(b, one, 'issues', 'b-from-one', { team: group, title: 'one' });
  await waitFor(async () => (await watched(two, w2)).rows?.some((r) => r.id === 'b-from-one'),
                { what: 'tab two\'s watch to see tab one\'s write' });
  const want = [{ id: 'a-from-two', title: 'two' }, { id: 'b-from-one', title: 'one' }];
  assert.deepEqual((await watched(one, w1)).rows, want);
  assert.deepEqual((await watched(two, w2)).rows, want);
  await waitStatus(b, two, 'nothing pending (seen from the follower)', (s) => s.pending === 0 && s.connected);
  assert.equal(sql(`SELECT string_agg(id || '=' || title, ',' ORDER BY id) FROM issues WHERE team = '${group}'`),
               'a-from-two=two,b-from-one=one');
  assert.equal((await status(b, two)).owner, false);
  assert.deepEqual(b.errorsOf(one), []);
  assert.deepEqual(b.errorsOf(two), []);
});

test('the owner tab closed mid-sync: the other takes over, nothing lost, nothing twice', async (t) => {
  const { group, token } = newGroup('handoff');
  const gw = await gateway(t);
  const b = await launchBrowser(t);
  const owner = await appPage(b);
  const other = await appPage(b);
  const opts = { url: gw.wsUrl, token, groups: [group], name: 'handoff' };
  await open(b, owner, opts);
  await waitStatus(b, owner, 'owner', (s) => s.owner && s.connected);
  await open(b, other, opts);
  assert.equal((await status(b, other)).owner, false);

  /* 200 writes from the follower, not awaited one by one; the owner's tab
   * closes while they are on their way */
  const N = 200;
  const writes = run(b, other, async (group, n) => {
    const ids = [];
    const all = [];
    for (let i = 0; i < n; i++) all.push(window.app.put('issues', `h-${String(i).padStart(4, '0')}`, { team: group, prio: i }).then((op) => ids.push(op)));
    await Promise.all(all);
    return ids;
  }, group, N);
  await waitFor(async () => (await status(b, other)).pending > 0 || Number(sql(`SELECT count(*) FROM issues WHERE team = '${group}'`)) > 0,
                { what: 'the first writes to be under way' });
  await owner.close({ runBeforeUnload: false });
  const opIds = await writes;
  assert.equal(opIds.length, N, 'every put resolved');
  assert.equal(new Set(opIds).size, N);

  await waitStatus(b, other, 'the other tab is the owner, connected, nothing pending',
                   (s) => s.owner && s.connected && s.pending === 0, 2 * DEADLINE_MS);
  const local = await query(b, other, 'SELECT count(*) AS n, sum(prio) AS s FROM issues');
  assert.deepEqual(local, [{ n: N, s: (N * (N - 1)) / 2 }], 'every write once, locally');
  assert.equal(sql(`SELECT count(*) || ' ' || sum(prio) FROM issues WHERE team = '${group}'`), `${N} ${(N * (N - 1)) / 2}`);
  assert.equal(sql(`SELECT count(*) FROM synclog.ops WHERE grp = '${group}'`), String(N), 'one op per write on the server');
  assert.equal(sql(`SELECT count(*) FROM synclog.ops WHERE op_id::text IN (${opIds.map((o) => `'${o}'`).join(',')})`), String(N),
               'the ops are the ones put resolved with');
});

test('the browser killed right after put resolved: after a restart the write is there and reaches PostgreSQL', async (t) => {
  const { group, token } = newGroup('kill');
  const id = `row-${randomUUID()}`;
  const gw = await gateway(t);
  const b = await launchBrowser(t);
  let page = await appPage(b);
  const opts = { url: gw.wsUrl, token, groups: [group], name: 'kill' };
  await open(b, page, opts);
  await waitStatus(b, page, 'connected', (s) => s.connected);
  await put(b, page, 'issues', id, { team: group, title: 'survives kill -9' });
  await b.kill();

  await b.restart();
  page = await appPage(b);
  await open(b, page, opts);
  assert.equal((await localRow(b, page, id))?.title, 'survives kill -9', 'the write is in the local file after the restart');
  await waitStatus(b, page, 'connected, nothing pending', (s) => s.connected && s.pending === 0);
  assert.equal(serverRow(id)?.title, 'survives kill -9');
  assert.equal(sql(`SELECT count(*) FROM synclog.ops WHERE row_id = '${id}'`), '1', 'applied once');
});

test('a first sync of 10,000 rows', async (t) => {
  const { group, token } = newGroup('bulk');
  const N = 10000;
  sql(`INSERT INTO issues (id, team, title, prio)
       SELECT 'bulk-' || lpad(i::text, 5, '0'), '${group}', 'title ' || i, i FROM generate_series(1, ${N}) i`);
  sql('SELECT synclog.wait_sequenced()');
  const gw = await gateway(t);
  const b = await launchBrowser(t);
  const page = await appPage(b);
  await open(b, page, { url: gw.wsUrl, token, groups: [group], name: 'bulk' });
  await waitFor(async () => (await query(b, page, 'SELECT count(*) AS n FROM issues'))[0]?.n === N,
                { what: `${N} rows in the browser`, timeout: 8 * DEADLINE_MS, every: 250 });
  assert.deepEqual(await query(b, page, 'SELECT count(*) AS n, sum(prio) AS s, min(id) AS lo, max(id) AS hi FROM issues'),
                   [{ n: N, s: (N * (N + 1)) / 2, lo: 'bulk-00001', hi: 'bulk-10000' }]);
  assert.deepEqual(await localRow(b, page, 'bulk-04242'), { id: 'bulk-04242', team: group, title: 'title 4242', status: 'open', prio: 4242 });
  await waitStatus(b, page, 'connected, nothing pending', (s) => s.connected && s.pending === 0 && s.cursor > 0);
  assert.deepEqual(b.errorsOf(page), []);
});

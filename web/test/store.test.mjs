// web/test/store.test.mjs: the durable local store (src/store.ts) on
// sqlite-wasm in Node, the meaningful cases of tests/client/test_store.c
// ported: local writes visible at once, the outbox, changes in seq order and
// idempotent, acks and rejections, snapshots, hostile names, provisional
// tables, type mapping, persistence across reopening the same file (the
// module's in-memory file system keeps it while the process lives), plus
// the browser's own: op-id retries, failed transactions leaving nothing
// behind, read-only queries and the tables a query reads.  A random model
// test holds every visible row to mergeVisible over confirmed state and
// pending ops.  Run on build/lib/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import sqlite3InitModule from '@sqlite.org/sqlite-wasm';
import { Store, StoreError } from '../build/lib/store.js';
import { mergeVisible } from '../build/lib/merge.js';
import { formatHlc, parseHlc } from '../build/lib/hlc.js';

const sqlite3 = await sqlite3InitModule();
const { capi } = sqlite3;

const ISSUES = {
  issues: {
    pk: 'id', group: 'team',
    columns: { id: 'text', team: 'text', title: 'text', prio: 'integer', done: 'boolean',
               est: 'double precision', meta: 'jsonb' },
  },
};

let fileNo = 0;
// A new database file of the module's file system, and a store on it.
function fresh(opts = {}, tables = ISSUES) {
  const path = `/store-test-${++fileNo}.db`;
  const db = new sqlite3.oo1.DB(path, 'c');
  const st = new Store(db, { capi, ...opts });
  if (tables)
    st.ensureTables(tables);
  return { path, db, st };
}

// Closes db and opens a new connection and store on the same file.
function reopen(h, opts = {}) {
  h.db.close();
  h.db = new sqlite3.oo1.DB(h.path, 'c');
  h.st = new Store(h.db, { capi, ...opts });
  return h;
}

// The rows of sql as text: columns joined by '|', rows by '\n', NULL as (null).
function q(db, sql, bind) {
  const rows = db.exec({ sql, bind, rowMode: 'array', returnValue: 'resultRows' });
  return rows.map((r) => r.map((v) => (v === null ? '(null)' : String(v))).join('|')).join('\n');
}

// Asserts fn throws a StoreError with code, and a message matching re when given.
function throwsCode(fn, code, re) {
  assert.throws(fn, (e) => {
    assert.ok(e instanceof StoreError, `not a StoreError: ${e}`);
    assert.equal(e.code, code, e.message);
    if (re)
      assert.match(e.message, re);
    return true;
  });
}

// A changes frame with one change of table issues.
function change1(seq, opId, cid, row, kind, fields, hlc, cursor = seq) {
  return { type: 'changes', cursor,
           changes: [{ seq, op_id: opId, client_id: cid, table: 'issues', row, group: 't1', kind, fields, hlc }] };
}

// The store's clock plus d, as text.
const ahead = (st, d) => formatHlc(parseHlc(st.hlc()) + BigInt(d));
const opHlc = (db, id) => q(db, 'SELECT hlc FROM _synclog_outbox WHERE op_id = ?', [id]);

test('open and local writes (test_open_and_writes)', () => {
  const h = fresh({}, null);
  const { db } = h;
  let { st } = h;
  assert.match(st.clientId, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.equal(st.cursor(), 0);
  assert.equal(st.hlc(), '0000000000000000');
  assert.equal(st.welcomed(), false);
  assert.equal(q(db, 'PRAGMA journal_mode'), 'delete', 'a rollback journal');
  assert.equal(q(db, 'PRAGMA synchronous'), '2', 'synchronous=FULL');
  throwsCode(() => st.put('_synclog_x', 'i0', {}), 'invalid_argument', /reserved/);

  st.ensureTables(ISSUES);
  assert.equal(st.welcomed(), true);
  assert.equal(q(db, "SELECT name, type, pk FROM pragma_table_info('issues') ORDER BY cid"),
               'id|TEXT|1\nteam|TEXT|0\ntitle|TEXT|0\nprio|INTEGER|0\ndone|INTEGER|0\nest|REAL|0\nmeta|TEXT|0');
  st.ensureTables(ISSUES); /* again: the table exists and is known */
  assert.deepEqual(st.tables(), ISSUES);

  const r1 = st.put('issues', 'i1', { team: 't1', title: 'hello', prio: 2, done: true, est: 1.5, meta: { a: [1] } });
  assert.equal(r1.duplicate, false);
  assert.equal(q(db, 'SELECT id, team, title, prio, done, est, meta FROM issues'), 'i1|t1|hello|2|1|1.5|{"a":[1]}');
  assert.equal(q(db, 'SELECT typeof(prio), typeof(done), typeof(est), typeof(meta) FROM issues'), 'integer|integer|real|text');
  assert.equal(q(db, 'SELECT kind, tbl, row, acked, hlc FROM _synclog_outbox WHERE op_id = ?', [r1.id]), `upsert|issues|i1|0|${r1.hlc}`);
  throwsCode(() => st.put('issues', 'i1', { nope: 1 }), 'unknown_column', /"nope"/);
  throwsCode(() => st.put('people', 'i1', {}), 'unknown_table', /people/);
  throwsCode(() => st.put('issues', 'i1', [1]), 'invalid_argument', /object/);
  throwsCode(() => st.put('issues', 'i1', null), 'invalid_argument', /object/);
  throwsCode(() => st.put('issues', '', {}), 'invalid_argument', /empty row/);
  throwsCode(() => st.put('issues', 'i\ud800', {}), 'invalid_argument', /UTF-8/);
  throwsCode(() => st.put('issues', 'i1', { title: undefined }), 'invalid_argument');
  assert.equal(st.pendingCount(), 1, 'refused puts leave no op');

  const r2 = st.put('issues', 'i2', { team: 't1', title: 'two' });
  assert.equal(q(db, 'SELECT id, title, prio FROM issues ORDER BY id'), 'i1|hello|2\ni2|two|(null)');
  const r3 = st.delete('issues', 'i2');
  assert.equal(q(db, 'SELECT id FROM issues ORDER BY id'), 'i1', 'a delete is visible at once');
  assert.equal(q(db, "SELECT kind || ':' || row || ':' || fields FROM _synclog_outbox ORDER BY seq"),
               'upsert:i1:{"team":"t1","title":"hello","prio":2,"done":true,"est":1.5,"meta":{"a":[1]}}\nupsert:i2:{"team":"t1","title":"two"}\ndelete:i2:{}');
  assert.ok(r1.hlc < r2.hlc && r2.hlc < r3.hlc, 'the ops\' clocks increase');
  const p = st.pending();
  assert.deepEqual(p.map((o) => o.id), [r1.id, r2.id, r3.id]);
  assert.deepEqual(p.map((o) => o.seq), [1, 2, 3]);
  assert.deepEqual(p[0], { seq: 1, id: r1.id, table: 'issues', row: 'i1', kind: 'upsert',
                           fields: { team: 't1', title: 'hello', prio: 2, done: true, est: 1.5, meta: { a: [1] } }, hlc: r1.hlc });
  assert.deepEqual(p[2].fields, {});
  assert.deepEqual(st.pending(2).map((o) => o.id), [r3.id]);
  assert.equal(new Set([r1.id, r2.id, r3.id]).size, 3);
  assert.equal(st.hlc(), r3.hlc, 'the floor is the last op\'s clock');

  const floor = st.hlc();
  const clientId = st.clientId;
  st = reopen(h).st;
  assert.equal(st.clientId, clientId, 'reopen keeps the client_id');
  assert.equal(st.hlc(), floor, 'reopen keeps the clock floor (from the outbox)');
  assert.equal(st.cursor(), 0);
  assert.equal(st.welcomed(), true);
  assert.deepEqual(st.pending().map((o) => o.id), [r1.id, r2.id, r3.id], 'reopen keeps the outbox');
  const r4 = st.put('issues', 'i3', { team: 't2', title: 'three' }); /* reopen knows the tables */
  assert.ok(r4.hlc > floor, 'the clock moves past the stored floor');
  assert.equal(st.pending().at(-1).seq, 4, 'seqs go on');
  h.db.close();
});

test('the clock follows the wall clock it is given', () => {
  let wall = 1000;
  const { st, db } = fresh({ now: () => wall });
  assert.equal(st.put('issues', 'a', {}).hlc, formatHlc(1000n << 16n));
  assert.equal(st.put('issues', 'b', {}).hlc, formatHlc((1000n << 16n) + 1n));
  wall = 500; /* backwards: still monotonic */
  assert.equal(st.put('issues', 'c', {}).hlc, formatHlc((1000n << 16n) + 2n));
  wall = 2000;
  assert.equal(st.put('issues', 'd', {}).hlc, formatHlc(2000n << 16n));
  db.close();
});

test('changes and acks (test_changes_acks)', () => {
  const { st, db } = fresh();
  const me = st.clientId;
  const A = st.put('issues', 'i1', { team: 't1', title: 'mine', prio: 1 });
  let t = st.applyChanges(change1(1, A.id, me, 'i1', 'upsert', { team: 't1', title: 'mine', prio: 1 }, A.hlc));
  assert.equal(st.pendingCount(), 0, 'own op confirmed leaves the outbox');
  assert.equal(q(db, 'SELECT fields, deleted FROM _synclog_confirmed'), '{"team":"t1","title":"mine","prio":1}|0');
  assert.equal(q(db, 'SELECT title, prio FROM issues'), 'mine|1', 'own op stays visible');
  assert.deepEqual([...t], [], 'confirming what was shown changes no visible row');
  assert.equal(st.cursor(), 1);

  let h = ahead(st, 1);
  t = st.applyChanges(change1(2, 'op-o1', 'other', 'i1', 'upsert', { prio: 5 }, h));
  assert.deepEqual([...t], ['issues']);
  assert.equal(q(db, 'SELECT title, prio FROM issues'), 'mine|5', 'another client\'s change is merged in');
  assert.equal(q(db, "SELECT clocks FROM _synclog_confirmed WHERE row = 'i1'"),
               JSON.stringify({ team: [A.hlc, me], title: [A.hlc, me], prio: [h, 'other'] }));

  const B = st.put('issues', 'i1', { title: 'local' });
  assert.equal(q(db, 'SELECT title, prio FROM issues'), 'local|5', 'a pending op shows over confirmed state');
  t = st.applyChanges(change1(3, 'op-o2', 'other', 'i1', 'upsert', { title: 'remote' }, A.hlc));
  assert.equal(q(db, "SELECT json_extract(fields, '$.title') FROM _synclog_confirmed"), 'remote');
  assert.equal(q(db, 'SELECT title FROM issues'), 'local', 'the newer pending op still wins the visible row');
  assert.deepEqual([...t], [], 'a change hidden under a pending op changes no visible row');
  h = ahead(st, 5);
  st.applyChanges(change1(4, 'op-o3', 'other', 'i1', 'upsert', { title: 'later' }, h));
  assert.equal(q(db, 'SELECT title FROM issues'), 'later', 'a newer change beats the pending op (LWW)');
  assert.ok(parseHlc(st.hlc()) >= parseHlc(h), 'the clock observes incoming changes');

  t = st.applyChanges(change1(2, 'op-o1', 'other', 'i1', 'upsert', { prio: 99 }, ahead(st, 9)));
  assert.equal(q(db, 'SELECT prio FROM issues'), '5', 'a change at or below the cursor is skipped');
  assert.equal(st.cursor(), 4, 'the cursor never moves back');
  assert.deepEqual([...t], []);
  st.applyChanges(change1(5, 'op-o4', 'other', 'i9', 'upsert', { team: 't1', title: 'nine' }, ahead(st, 1)));
  assert.equal(q(db, "SELECT title FROM issues WHERE id = 'i9'"), 'nine');
  st.applyChanges(change1(6, 'op-o5', 'other', 'i9', 'delete', null, ahead(st, 1)));
  assert.equal(q(db, "SELECT count(*) FROM issues WHERE id = 'i9'"), '0');
  assert.equal(q(db, "SELECT deleted, fields FROM _synclog_confirmed WHERE row = 'i9'"), '1|(null)', 'a tombstone');
  st.applyChanges({ type: 'changes', changes: [], cursor: 10 });
  assert.equal(st.cursor(), 10, 'a frame with no changes moves the cursor to the frame\'s');

  const bad = { type: 'changes', cursor: 13, changes: [
    { seq: 11, op_id: 'x', client_id: 'other', table: 'issues', row: 'i1', kind: 'upsert', fields: { prio: 42 }, hlc: ahead(st, 1) },
    { seq: 12, client_id: 'other', table: 'issues', row: 'i1', kind: 'merge', hlc: ahead(st, 2) }] };
  throwsCode(() => st.applyChanges(bad), 'bad_frame', /index 1/);
  assert.equal(q(db, "SELECT prio FROM issues WHERE id = 'i1'"), '5', 'a refused frame applies none of its changes');
  assert.equal(st.cursor(), 10);
  throwsCode(() => st.applyChanges({ changes: [] }), 'bad_frame');
  throwsCode(() => st.applyChanges({ changes: [], cursor: -1 }), 'bad_frame');
  throwsCode(() => st.applyChanges({ changes: [], cursor: 1.5 }), 'bad_frame');
  throwsCode(() => st.applyChanges(null), 'bad_frame');

  /* ack, then change: the acked op leaves pending() but stays in the outbox. */
  let a = st.ack({ type: 'ack', acked: [B.id], rejected: [], hlc: ahead(st, 1) });
  assert.deepEqual(a.rejected, []);
  assert.equal(st.pending().length, 0, 'an acked op is not listed for resending');
  assert.equal(st.pendingCount(), 1, 'an acked op stays in the outbox');
  st.applyChanges(change1(14, B.id, me, 'i1', 'upsert', {}, B.hlc));
  assert.equal(st.pendingCount(), 0, 'the acked op leaves the outbox when its change arrives');
  assert.equal(q(db, "SELECT title, prio FROM issues WHERE id = 'i1'"), 'later|5', 'its change won nothing');

  /* rejection: the op is dropped and the row rolled back. */
  const C = st.put('issues', 'i1', { title: 'bad', prio: -1 });
  const D = st.put('issues', 'i5', { team: 't1', title: 'new' });
  assert.equal(q(db, 'SELECT id, title FROM issues ORDER BY id'), 'i1|bad\ni5|new');
  a = st.ack({ type: 'ack', acked: [], rejected: [{ id: C.id, code: 'constraint_violation', message: 'prio >= 0' }], hlc: ahead(st, 1) });
  assert.deepEqual(a.rejected, [{ id: C.id, table: 'issues', row: 'i1', code: 'constraint_violation', message: 'prio >= 0' }]);
  assert.deepEqual([...a.tables], ['issues']);
  assert.equal(q(db, 'SELECT row FROM _synclog_outbox'), 'i5', 'a rejected op leaves the outbox');
  assert.equal(q(db, "SELECT title, prio FROM issues WHERE id = 'i1'"), 'later|5', 'a rejected op\'s row rolls back');
  a = st.ack({ rejected: [{ id: D.id, code: 'unauthorized' }] });
  assert.deepEqual(a.rejected, [{ id: D.id, table: 'issues', row: 'i5', code: 'unauthorized', message: '' }]);
  assert.equal(q(db, "SELECT count(*) FROM issues WHERE id = 'i5'"), '0', 'a rejected creation removes the row');
  a = st.ack({ rejected: [{ id: 'nope', code: 'x' }] });
  assert.deepEqual(a.rejected, [], 'an unknown op\'s rejection is not reported');
  throwsCode(() => st.ack([]), 'bad_frame');
  throwsCode(() => st.ack({ acked: 1 }), 'bad_frame');

  /* One frame: two changes to one row and one to a table this client does not know. */
  const h1 = ahead(st, 1);
  const h2 = ahead(st, 2);
  t = st.applyChanges({ cursor: 22, changes: [
    { seq: 20, op_id: 'm1', client_id: 'other', table: 'issues', row: 'i1', kind: 'upsert', fields: { prio: 8, title: 'first' }, hlc: h1 },
    { seq: 21, op_id: 'm2', client_id: 'other', table: 'ghost', row: 'g1', kind: 'upsert', fields: { a: 1 }, hlc: h2 },
    { seq: 22, op_id: 'm3', client_id: 'other', table: 'issues', row: 'i1', kind: 'upsert', fields: { title: 'second' }, hlc: h2 }] });
  assert.equal(q(db, "SELECT title, prio FROM issues WHERE id = 'i1'"), 'second|8', 'several changes to one row apply in seq order');
  assert.equal(q(db, "SELECT fields FROM _synclog_confirmed WHERE tbl = 'ghost'"), '{"a":1}', 'an unknown table\'s change is kept as confirmed state');
  assert.deepEqual([...t], ['issues']);
  assert.equal(st.cursor(), 22);
  db.close();
});

test('reopen after ops left the outbox keeps the clock floor and cursor', () => {
  const h = fresh();
  const A = h.st.put('issues', 'i1', { title: 'x' });
  h.st.applyChanges(change1(7, A.id, h.st.clientId, 'i1', 'upsert', { title: 'x' }, A.hlc));
  const far = ahead(h.st, 1 << 16);
  h.st.ack({ acked: [], rejected: [], hlc: far });
  assert.equal(h.st.hlc(), far, 'an ack\'s clock is observed');
  reopen(h);
  assert.equal(h.st.hlc(), far);
  assert.equal(h.st.cursor(), 7);
  h.db.close();
});

test('observe moves the floor, stores it, and ignores skewed and malformed clocks', () => {
  let wall = 100000;
  const h = fresh({ now: () => wall });
  const near = formatHlc(BigInt(wall + 1000) << 16n);
  h.st.observe(near);
  assert.equal(h.st.hlc(), near);
  h.st.observe(formatHlc(BigInt(wall + 120000) << 16n)); /* beyond the 60 s bound */
  assert.equal(h.st.hlc(), near);
  h.st.observe('nonsense');
  h.st.observe('0000000000000001'); /* behind */
  assert.equal(h.st.hlc(), near);
  reopen(h, { now: () => wall });
  assert.equal(h.st.hlc(), near, 'the observed floor survives a reopen');
  assert.ok(h.st.put('issues', 'x', {}).hlc > near);
  h.db.close();
});

test('snapshots (test_snapshot)', () => {
  const { st, db } = fresh();
  st.applyChanges(change1(1, 'o1', 'other', 'a', 'upsert', { team: 't1', title: 'a0', prio: 1 }, '0000000000010000'));
  st.applyChanges(change1(2, 'o2', 'other', 'c', 'upsert', { team: 't1', title: 'c0' }, '0000000000010000'));
  st.applyChanges(change1(3, 'o3', 'other', 'x', 'upsert', { team: 't2', title: 'x0' }, '0000000000010000'));
  st.put('issues', 'a', { title: 'a-local' });
  assert.equal(q(db, 'SELECT id, title FROM issues ORDER BY id'), 'a|a-local\nc|c0\nx|x0');
  throwsCode(() => st.snapshotFrame({ rows: [], cursor: 1, done: true }), 'bad_frame', /snapshotBegin/);
  st.snapshotBegin(['t1']);
  throwsCode(() => st.snapshotFrame({ rows: [{ table: 'issues' }], cursor: 50, done: true }), 'bad_frame');
  throwsCode(() => st.snapshotFrame({ rows: [], cursor: 50 }), 'bad_frame');
  let r = st.snapshotFrame({ type: 'snapshot', cursor: 50, done: false, rows: [
    { table: 'issues', row: 'a', fields: { id: 'a', team: 't1', title: 'a-snap', prio: 3 },
      clocks: { title: ['0000000000020000', 'other'], prio: ['0000000000020000', 'other'] } }] });
  assert.deepEqual(r, { done: false, tables: new Set() });
  assert.equal(q(db, 'SELECT id, title FROM issues ORDER BY id'), 'a|a-local\nc|c0\nx|x0', 'rows are held until the last frame');
  assert.equal(st.cursor(), 3);
  const last = { type: 'snapshot', cursor: 50, done: true,
                 rows: [{ table: 'issues', row: 'b', fields: { id: 'b', team: 't1', title: 'b-snap' } }] };
  r = st.snapshotFrame(last);
  assert.equal(r.done, true);
  assert.deepEqual([...r.tables], ['issues']);
  assert.equal(q(db, 'SELECT id, title, prio FROM issues ORDER BY id'), 'a|a-local|3\nb|b-snap|(null)\nx|x0|(null)',
               'the group\'s rows replaced; other groups stay; pending ops on top');
  assert.equal(q(db, "SELECT row, json_extract(fields, '$.title') FROM _synclog_confirmed ORDER BY row"), 'a|a-snap\nb|b-snap\nx|x0');
  assert.equal(st.pendingCount(), 1, 'pending ops are kept');
  assert.equal(st.cursor(), 50);
  assert.equal(q(db, 'SELECT count(*) FROM _synclog_snapshot'), '0');
  throwsCode(() => st.snapshotFrame(last), 'bad_frame', /snapshotBegin/);
  st.snapshotBegin(null);
  st.snapshotFrame({ rows: [{ table: 'issues', row: 'a', fields: { team: 't1', title: 'a2' } }], cursor: 60, done: true });
  assert.equal(q(db, 'SELECT id, title, prio FROM issues ORDER BY id'), 'a|a-local|(null)', 'a snapshot of every group replaces every row');
  throwsCode(() => st.snapshotBegin([{}]), 'invalid_argument');
  db.close();
});

test('an unfinished snapshot is forgotten by the next begin', () => {
  const { st, db } = fresh();
  st.snapshotBegin(null);
  st.snapshotFrame({ rows: [{ table: 'issues', row: 'old', fields: { title: 'stale' } }], cursor: 5, done: false });
  st.snapshotBegin(null);
  st.snapshotFrame({ rows: [{ table: 'issues', row: 'new', fields: { title: 'fresh' } }], cursor: 6, done: true });
  assert.equal(q(db, 'SELECT id, title FROM issues'), 'new|fresh');
  db.close();
});

test('hostile identifiers and values (test_hostile)', () => {
  const { st, db } = fresh({}, null);
  const T = 'x"; DROP TABLE _synclog_outbox; --';
  const C = "v'); DELETE FROM _synclog_meta; --";
  st.ensureTables({ [T]: { pk: 'id"', group: 'g;', columns: { 'id"': 'text', 'g;': 'text', [C]: 'integer' } } });
  assert.equal(q(db, "SELECT name FROM sqlite_schema WHERE name LIKE 'x%'"), T);
  assert.equal(q(db, 'SELECT group_concat(name, \',\') FROM pragma_table_info(?)', [T]), `id",g;,${C}`);
  st.put(T, 'r\'1"', { 'g;': 't1', [C]: 7 });
  assert.equal(q(db, `SELECT "id""", "g;", "v'); DELETE FROM _synclog_meta; --" FROM "x""; DROP TABLE _synclog_outbox; --"`), 'r\'1"|t1|7');
  assert.equal(st.pendingCount(), 1, 'the outbox is intact');
  assert.ok(Number(q(db, 'SELECT count(*) FROM _synclog_meta')) >= 3, 'the metadata is intact');
  st.delete(T, 'r\'1"');
  assert.equal(q(db, `SELECT count(*) FROM "x""; DROP TABLE _synclog_outbox; --"`), '0');
  throwsCode(() => st.ensureTables({ _synclog_outbox: { pk: 'seq', columns: { seq: 'int' } } }), 'bad_frame');
  throwsCode(() => st.ensureTables({ sqlite_x: { pk: 'a', columns: { a: 'int' } } }), 'bad_frame');
  throwsCode(() => st.ensureTables({ t: { pk: 'id', columns: { a: 'int' } } }), 'bad_frame', /"t"/);
  throwsCode(() => st.ensureTables([1]), 'bad_frame');
  throwsCode(() => st.ensureTables({ t: { pk: 'a', group: 3, columns: { a: 'int' } } }), 'bad_frame');
  st.put(T, 'r2', { 'g;': 'it\'s "x"; DROP TABLE _synclog_meta; --' });
  assert.equal(q(db, `SELECT "g;" FROM "x""; DROP TABLE _synclog_outbox; --" WHERE "id""" = 'r2'`), 'it\'s "x"; DROP TABLE _synclog_meta; --');

  /* A table the app created itself. */
  db.exec('CREATE TABLE people (id TEXT PRIMARY KEY, name TEXT, extra TEXT)');
  st.ensureTables({ people: { pk: 'id', group: 'name', columns: { id: 'text', name: 'text' } } });
  st.put('people', 'p1', { name: 'ann' });
  assert.equal(q(db, 'SELECT id, name, extra FROM people'), 'p1|ann|(null)');
  db.exec('CREATE TABLE teams (id TEXT PRIMARY KEY, name TEXT)');
  throwsCode(() => st.ensureTables({ teams: { pk: 'id', columns: { id: 'text', age: 'int' } } }), 'invalid_argument', /without column "age"/);
  throwsCode(() => st.put('teams', 'x1', {}), 'unknown_table', /teams/);
  assert.equal(q(db, "SELECT group_concat(name, ',') FROM pragma_table_info('teams')"), 'id,name', 'a refused welcome leaves the app\'s table alone');
  st.ensureTables({ people: { pk: 'id', group: 'name', columns: { id: 'text', name: 'text', age: 'int4', 'x";--': 'real' } } });
  assert.equal(q(db, "SELECT group_concat(name || ':' || type, ',') FROM pragma_table_info('people')"),
               'id:TEXT,name:TEXT,extra:TEXT,age:INTEGER,x";--:REAL', 'a known table gains the new columns');
  st.put('people', 'p1', { age: 3 });
  assert.equal(q(db, 'SELECT id, name, age FROM people'), 'p1|ann|3');
  db.close();
});

test('type mapping of welcome.tables and of values', () => {
  const { st, db } = fresh({}, null);
  st.ensureTables({ typed: { pk: 'k', group: 'g', columns: {
    k: 'bigint', g: 'text', a: 'smallint', b: 'int2', c: 'int8', d: 'serial', e: 'real', f: 'numeric(10,2)',
    h: 'Double Precision', i: 'bool', j: 'json', l: 'integer[]', m: 'text[]', n: 'uuid', o: 'timestamp with time zone',
    p: 'character varying(20)', r: 'float8' } } });
  assert.equal(q(db, "SELECT group_concat(name || ':' || type || ':' || pk, ',') FROM pragma_table_info('typed')"),
               'k:INTEGER:1,g:TEXT:0,a:INTEGER:0,b:INTEGER:0,c:INTEGER:0,d:INTEGER:0,e:REAL:0,f:REAL:0,h:REAL:0,' +
               'i:INTEGER:0,j:TEXT:0,l:TEXT:0,m:TEXT:0,n:TEXT:0,o:TEXT:0,p:TEXT:0,r:REAL:0');
  st.put('typed', '42', { a: 1, e: 2, i: false, j: { x: [1, 'y'] }, l: [1, 2], m: ['a'], p: 7, n: null });
  assert.equal(q(db, 'SELECT k, typeof(k), a, e, typeof(e), i, j, l, m, p, typeof(p), typeof(n) FROM typed'),
               '42|integer|1|2|real|0|{"x":[1,"y"]}|[1,2]|["a"]|7|text|null');
  throwsCode(() => st.put('typed', 'not-a-number', { a: 1 }), 'invalid_argument', /does not fit the primary key "k"/);
  assert.equal(st.pendingCount(), 1);
  db.close();
});

test('provisional tables (test_provisional)', () => {
  const h = fresh({}, null);
  let { st, db } = h;
  const HT = 'p"; DROP TABLE _synclog_outbox; --';
  const HC = "v'); DELETE FROM _synclog_meta; --";
  db.exec('CREATE TABLE appt (k TEXT PRIMARY KEY, a TEXT)');
  st.put('issues', 'i1', { title: 'hello', prio: 2 });
  st.put('issues', 'i2', { id: 'ignored', title: 'two' });
  st.put('issues', 'i2', { done: true, est: 1.5 });
  st.put('issues', 'i1', { local_only: 'x' });
  st.delete('gone', 'g1');
  st.put('notes', 'n1', { body: 'b1' });
  const hostile = st.put(HT, 'r\'1"', { [HC]: 7 });
  throwsCode(() => st.put('_synclog_outbox', 'r', {}), 'invalid_argument', /reserved/);
  throwsCode(() => st.put('SQLite_master', 'r', {}), 'invalid_argument', /reserved/);
  throwsCode(() => st.put('', 'r', {}), 'invalid_argument');
  throwsCode(() => st.put('appt', 'r', { a: 1 }), 'invalid_argument', /not synclog's/);
  throwsCode(() => st.delete('APPT', 'r'), 'invalid_argument', /not synclog's/);
  throwsCode(() => st.put('issues', '', {}), 'invalid_argument', /empty row/);
  throwsCode(() => st.put('issues', 'i1', [1]), 'invalid_argument', /object/);
  throwsCode(() => st.put('issues', 'i1', { '': 1 }), 'invalid_argument', /empty column/);
  const before = st.tables();
  throwsCode(() => st.put('issues', 'i1', { newcol: 1, Title: 2 }), 'invalid_argument', /only in case/);
  assert.equal(q(db, "SELECT count(*) FROM pragma_table_info('issues') WHERE name = 'newcol'"), '0', 'a refused write rolled back its new column');
  assert.deepEqual(st.tables(), before, 'and its description');
  assert.equal(q(db, "SELECT group_concat(name || ':' || type || ':' || pk, ',') FROM pragma_table_info('issues')"),
               'id:TEXT:1,title::0,prio::0,done::0,est::0,local_only::0');
  assert.equal(q(db, 'SELECT id, title, prio, typeof(prio), done, est, local_only FROM issues ORDER BY id'),
               'i1|hello|2|integer|(null)|(null)|x\ni2|two|(null)|null|1|1.5|(null)');
  assert.equal(q(db, "SELECT (SELECT group_concat(name, ',') FROM pragma_table_info('gone')) || '/' || count(*) FROM gone"), 'id/0');
  assert.equal(q(db, 'SELECT group_concat(name, \',\') FROM pragma_table_info(?)', [HT]), `id,${HC}`);
  assert.equal(st.pendingCount(), 7);
  assert.equal(q(db, 'SELECT fields FROM _synclog_outbox WHERE seq = 2'), '{"title":"two"}', 'the pk is left out of the op');
  assert.equal(q(db, 'SELECT group_concat(name, \',\') FROM pragma_table_info(\'appt\')'), 'k,a', 'the app\'s table is untouched');
  assert.equal(st.tables().issues.provisional, true);
  assert.equal(st.tables().issues.pk, 'id');
  assert.equal(st.welcomed(), false);

  ({ st, db } = reopen(h));
  assert.equal(st.welcomed(), false, 'after reopen no welcome came');
  st.put('issues', 'i1', { title: 'hello again' });
  st.put('notes', 'n1', { tags: [1, 2] });
  assert.equal(q(db, 'SELECT id, title FROM issues ORDER BY id'), 'i1|hello again\ni2|two');
  assert.equal(q(db, 'SELECT id, body, tags FROM notes'), 'n1|b1|[1,2]', 'a JSON array value is kept as its text');
  assert.equal(st.pending().length, 9);

  st.ensureTables({
    issues: { pk: 'id', group: 'team', columns: { id: 'text', team: 'text', title: 'text', prio: 'integer', done: 'boolean', est: 'double precision' } },
    notes: { pk: 'key', columns: { key: 'text', body: 'text', tags: 'jsonb' } },
  });
  assert.equal(q(db, "SELECT group_concat(name || ':' || type || ':' || pk, ',') FROM pragma_table_info('issues')"),
               'id:TEXT:1,team:TEXT:0,title:TEXT:0,prio:INTEGER:0,done:INTEGER:0,est:REAL:0', 'rebuilt with the server\'s types');
  assert.equal(q(db, 'SELECT id, team, title, prio, done, est FROM issues ORDER BY id'),
               'i1|(null)|hello again|2|(null)|(null)\ni2|(null)|two|(null)|1|1.5', 'visible rows recomputed; unknown columns omitted');
  assert.equal(q(db, 'SELECT key, body, tags FROM notes'), 'n1|b1|[1,2]', 'a rebuilt table with another pk column');
  assert.equal(q(db, "SELECT count(*), sum(fields LIKE '%local_only%') FROM _synclog_outbox"), '9|1', 'the ops stay untouched');
  const tables = st.tables();
  assert.equal(tables.issues.provisional, undefined);
  assert.equal(tables.notes.provisional, undefined);
  assert.equal(tables.gone.provisional, true, 'a table the server lacks stays provisional');
  assert.equal(q(db, "SELECT group_concat(name, ',') FROM pragma_table_info('gone')"), 'id');
  st.put('issues', 'i3', { title: 'three', prio: 3 });
  assert.equal(q(db, "SELECT title, prio FROM issues WHERE id = 'i3'"), 'three|3');
  throwsCode(() => st.put('issues', 'i3', { local_only: 1 }), 'unknown_column', /unknown column/);
  throwsCode(() => st.put('never', 'x', {}), 'unknown_table', /does not track/);
  throwsCode(() => st.put('gone', 'g2', {}), 'unknown_table', /provisional/);
  throwsCode(() => st.delete('gone', 'g1'), 'unknown_table', /provisional/);

  const a = st.ack({ acked: [], rejected: [{ id: hostile.id, code: 'unknown_table', message: 'not tracked' }] });
  assert.equal(a.rejected.length, 1);
  assert.equal(a.rejected[0].code, 'unknown_table');
  assert.equal(q(db, `SELECT count(*) FROM "p""; DROP TABLE _synclog_outbox; --"`), '0', 'the rejected op\'s row rolls back');

  ({ st, db } = reopen(h));
  throwsCode(() => st.put('never2', 'x', {}), 'unknown_table', /does not track/);
  st.put('notes', 'n2', { body: 'b2' });
  assert.equal(q(db, "SELECT body FROM notes WHERE key = 'n2'"), 'b2');
  db.close();
});

test('edges: deleted rows, put of an empty object', () => {
  const { st, db } = fresh();
  st.applyChanges(change1(1, 'o1', 'other', 'd1', 'upsert', { team: 't1', title: 'd' }, '0000000000010000'));
  st.applyChanges(change1(2, 'o2', 'other', 'd1', 'delete', null, '0000000000010001'));
  st.put('issues', 'd1', { title: 'again' });
  assert.equal(q(db, "SELECT count(*) FROM issues WHERE id = 'd1'"), '0', 'a put on a deleted row does not bring it back');
  assert.equal(q(db, "SELECT count(*) FROM _synclog_outbox WHERE row = 'd1'"), '1', 'but is kept for the server to refuse');
  st.applyChanges(change1(3, 'o3', 'other', 'd1', 'upsert', { title: 'zombie' }, '0000000000020000'));
  assert.equal(q(db, "SELECT deleted FROM _synclog_confirmed WHERE row = 'd1'"), '1', 'the tombstone absorbs it');
  st.put('issues', 'e2', {});
  assert.equal(q(db, "SELECT id, title FROM issues WHERE id = 'e2'"), 'e2|(null)', 'an empty upsert makes the row');
  db.close();
});

test('a write retried with the same op id is answered as the first time', () => {
  const { st, db } = fresh();
  const id = '0b9d5f8e-1c2a-4e3b-9f4d-5a6b7c8d9e0f';
  const first = st.put('issues', 'r1', { title: 'one' }, id);
  assert.deepEqual(first, { id, hlc: first.hlc, duplicate: false });
  const floor = st.hlc();
  const again = st.put('issues', 'r1', { title: 'DIFFERENT' }, id);
  assert.deepEqual(again, { id, hlc: first.hlc, duplicate: true });
  assert.equal(st.pendingCount(), 1, 'nothing written');
  assert.equal(st.hlc(), floor, 'no clock used');
  assert.equal(q(db, "SELECT title FROM issues WHERE id = 'r1'"), 'one');

  /* Confirmed: the op left the outbox, the retry is still a duplicate. */
  st.applyChanges(change1(1, id, st.clientId, 'r1', 'upsert', { title: 'one' }, first.hlc));
  assert.equal(st.pendingCount(), 0);
  assert.deepEqual(st.put('issues', 'r1', { title: 'late retry' }, id), { id, hlc: first.hlc, duplicate: true });
  assert.equal(st.pendingCount(), 0);
  assert.equal(q(db, "SELECT title FROM issues WHERE id = 'r1'"), 'one');

  /* Rejected: a retry does not bring the refused write back. */
  const did = '1b9d5f8e-1c2a-4e3b-9f4d-5a6b7c8d9e0f';
  const d = st.delete('issues', 'r1', did);
  assert.equal(q(db, "SELECT count(*) FROM issues WHERE id = 'r1'"), '0');
  st.ack({ acked: [], rejected: [{ id: did, code: 'unauthorized', message: '' }] });
  assert.equal(q(db, "SELECT count(*) FROM issues WHERE id = 'r1'"), '1', 'the rejected delete rolled back');
  assert.deepEqual(st.delete('issues', 'r1', did), { id: did, hlc: d.hlc, duplicate: true });
  assert.equal(q(db, "SELECT count(*) FROM issues WHERE id = 'r1'"), '1');
  assert.equal(st.pendingCount(), 0);

  throwsCode(() => st.put('issues', 'r1', {}, '0B9D5F8E-1C2A-4E3B-9F4D-5A6B7C8D9E0F'), 'invalid_argument', /lowercase UUID/);
  throwsCode(() => st.put('issues', 'r1', {}, 'op-1'), 'invalid_argument', /UUID/);
  db.close();
});

test('the finished op ids kept are the most recent 10,000', () => {
  const { st, db } = fresh();
  db.exec("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10005)" +
          " INSERT INTO _synclog_done (op_id, hlc) SELECT 'old-' || i, '0000000000000001' FROM n");
  const A = st.put('issues', 'a', {});
  st.applyChanges(change1(1, A.id, st.clientId, 'a', 'upsert', {}, A.hlc));
  assert.equal(q(db, 'SELECT count(*) FROM _synclog_done'), '10000');
  assert.equal(q(db, "SELECT count(*) FROM _synclog_done WHERE op_id IN ('old-1', 'old-6')"), '0', 'the oldest went');
  assert.equal(q(db, 'SELECT count(*) FROM _synclog_done WHERE op_id = ?', [A.id]), '1', 'the newest stays');
  db.close();
});

test('a failing transaction leaves nothing behind, in the file or in memory', () => {
  let wall = 5000;
  const h = fresh({ now: () => wall }, null);
  const { st, db } = h;
  st.ensureTables({ ...ISSUES, nums: { pk: 'n', group: 'g', columns: { n: 'integer', g: 'text', v: 'text' } } });
  const A = st.put('issues', 'a', { title: 'a' });
  const snap = () => [st.hlc(), st.cursor(), st.pendingCount(),
                      q(db, 'SELECT * FROM _synclog_outbox'), q(db, 'SELECT * FROM _synclog_meta ORDER BY key'),
                      q(db, 'SELECT * FROM _synclog_confirmed'), q(db, 'SELECT * FROM issues'), q(db, 'SELECT * FROM nums')];

  /* The visible write fails (the row id is not an integer) after the op was appended. */
  let before = snap();
  wall = 9000;
  throwsCode(() => st.put('nums', 'x', { v: '1' }), 'invalid_argument', /does not fit/);
  assert.deepEqual(snap(), before);

  /* An app trigger refuses the visible row: StoreError storage. */
  db.exec("CREATE TRIGGER no_bad BEFORE INSERT ON issues WHEN NEW.title = 'bad' BEGIN SELECT RAISE(ABORT, 'no bad titles'); END");
  before = snap();
  throwsCode(() => st.put('issues', 'b', { title: 'bad' }), 'storage', /no bad titles/);
  assert.deepEqual(snap(), before);

  /* A changes frame whose last row fails: no change applied, the op not confirmed, the clock not moved. */
  const frame = { cursor: 9, changes: [
    { seq: 8, op_id: A.id, client_id: st.clientId, table: 'issues', row: 'a', kind: 'upsert', fields: { title: 'a' }, hlc: A.hlc },
    { seq: 9, op_id: 'o9', client_id: 'other', table: 'issues', row: 'b', kind: 'upsert', fields: { title: 'bad' },
      hlc: formatHlc(BigInt(wall + 30000) << 16n) }] };
  throwsCode(() => st.applyChanges(frame), 'storage', /no bad titles/);
  assert.deepEqual(snap(), before);
  assert.equal(q(db, 'SELECT count(*) FROM _synclog_done'), '0');

  /* An ack whose rejection's recompute fails keeps the acked marks too. */
  db.exec("CREATE TRIGGER no_delete BEFORE DELETE ON issues BEGIN SELECT RAISE(ABORT, 'no deletes'); END");
  const B = st.put('issues', 'c', { title: 'c' });
  before = snap();
  throwsCode(() => st.ack({ acked: [B.id], rejected: [{ id: A.id, code: 'x' }], hlc: formatHlc(BigInt(wall + 1000) << 16n) }),
             'storage', /no deletes/);
  assert.deepEqual(snap(), before);
  assert.equal(st.pending().length, 2, 'nothing was marked acked');

  /* The store goes on as if nothing happened: the next seq follows the last. */
  db.exec('DROP TRIGGER no_bad; DROP TRIGGER no_delete');
  st.applyChanges(frame);
  assert.equal(st.cursor(), 9);
  assert.equal(q(db, "SELECT title FROM issues WHERE id = 'b'"), 'bad');
  const C = st.put('issues', 'd', {});
  assert.deepEqual(st.pending().map((o) => o.seq), [2, 3], 'A confirmed; B and C pending');
  assert.equal(st.pending().at(-1).id, C.id);
  db.close();
});

test('another connection\'s commit is picked up at the next call', () => {
  const h = fresh();
  const other = new Store(new sqlite3.oo1.DB(h.path, 'c'), { capi });
  const A = h.st.put('issues', 'w1', { title: 'one' });
  other.applyChanges(change1(1, A.id, h.st.clientId, 'w1', 'upsert', { title: 'one' }, A.hlc));
  const B = other.put('issues', 'w2', { title: 'two' });
  h.st.put('issues', 'w2', { prio: 2 });
  assert.equal(h.st.cursor(), 1, 'the first knows the cursor the second moved');
  assert.equal(q(h.db, "SELECT title, prio FROM issues WHERE id = 'w2'"), 'two|2', 'both ops on the row are visible');
  assert.equal(q(h.db, 'SELECT count(DISTINCT seq) FROM _synclog_outbox'), '2');
  h.st.ack({ rejected: [{ id: B.id, code: 'invalid_value' }] });
  assert.equal(q(h.db, "SELECT title, prio FROM issues WHERE id = 'w2'"), '(null)|2', 'the rejected op\'s field rolls back');
  assert.equal(other.pending().length, 1);
  h.db.close();
});

test('query runs one read-only statement and refuses the rest', () => {
  const { st, db } = fresh();
  st.put('issues', 'i1', { title: 'a;b', prio: 1, done: true });
  st.put('issues', 'i2', { title: 'x', prio: 2 });
  assert.deepEqual(st.query('SELECT id, title, prio, done FROM issues WHERE prio >= ? ORDER BY id', [1]),
                   [{ id: 'i1', title: 'a;b', prio: 1, done: 1 }, { id: 'i2', title: 'x', prio: 2, done: null }]);
  assert.deepEqual(st.query("SELECT count(*) AS n FROM issues WHERE title = 'a;b'; -- one statement"), [{ n: 1 }]);
  assert.deepEqual(st.query('WITH t AS (SELECT 1 AS v) SELECT v FROM t;;'), [{ v: 1 }]);
  assert.deepEqual(st.query('SELECT ? AS b, ? AS n', [true, null]), [{ b: 1, n: null }]);
  assert.deepEqual(st.query('SELECT 1 AS "__proto__"')[0], JSON.parse('{"__proto__": 1}'));
  for (const sql of ['DELETE FROM issues', 'SELECT 1; DELETE FROM issues', 'SELECT 1; SELECT 2', 'BEGIN', 'COMMIT',
                     'PRAGMA synchronous=OFF', "ATTACH ':memory:' AS x", 'WITH t AS (SELECT 1) DELETE FROM issues',
                     'INSERT INTO issues (id) VALUES (1)', '', '  -- nothing'])
    throwsCode(() => st.query(sql), 'invalid_argument');
  throwsCode(() => st.query('SELECT nope FROM issues'), 'invalid_argument', /prepare/);
  throwsCode(() => st.query('SELECT ?', [{}]), 'invalid_argument', /parameter 1/);
  assert.equal(q(db, 'SELECT count(*) FROM issues'), '2');
  assert.equal(q(db, 'PRAGMA synchronous'), '2');
  db.close();
});

for (const how of ['authorizer', 'EXPLAIN']) {
  test(`tablesRead finds the tables a query reads (${how})`, () => {
    const { st, db } = fresh(how === 'authorizer' ? {} : { capi: undefined }, {
      ...ISSUES,
      people: { pk: 'id', group: 'team', columns: { id: 'text', team: 'text', name: 'text' } },
      teams: { pk: 'id', group: 'id', columns: { id: 'text', label: 'text' } },
    });
    db.exec('CREATE INDEX people_name ON people (name); CREATE VIEW v AS SELECT i.title FROM issues i JOIN teams t ON t.id = i.team');
    assert.deepEqual(st.tablesRead('SELECT title FROM issues'), ['issues']);
    assert.deepEqual(st.tablesRead('SELECT count(*) FROM issues'), ['issues']);
    assert.deepEqual(st.tablesRead('SELECT i.title, p.name FROM issues i JOIN people p ON p.team = i.team'), ['issues', 'people']);
    assert.deepEqual(st.tablesRead('SELECT name FROM people WHERE name = ?'), ['people'], 'an index-only read');
    assert.deepEqual(st.tablesRead('SELECT * FROM v'), ['issues', 'teams'], 'a view counts as its tables');
    assert.deepEqual(st.tablesRead('SELECT (SELECT count(*) FROM teams) AS n, title FROM issues WHERE id IN (SELECT id FROM people)'),
                     ['issues', 'people', 'teams']);
    assert.deepEqual(st.tablesRead('SELECT * FROM _synclog_outbox JOIN issues ON issues.id = _synclog_outbox.row'), ['issues'],
                     'internal tables are left out');
    assert.deepEqual(st.tablesRead('SELECT 1'), []);
    throwsCode(() => st.tablesRead('DELETE FROM issues'), 'invalid_argument');
    /* The authorizer is gone afterwards: writes and other reads work. */
    st.put('issues', 'x', { title: 't' });
    assert.deepEqual(st.query('SELECT title FROM issues'), [{ title: 't' }]);
    db.close();
  });
}

// A small deterministic PRNG (mulberry32), so that a failure can be replayed.
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// For every row: the visible row must be mergeVisible over the file's confirmed state and pending ops.
function modelDiff(db, me, nrows) {
  for (let r = 0; r < nrows; r++) {
    const row = `m${r}`;
    const c = db.exec({ sql: "SELECT fields, clocks, deleted FROM _synclog_confirmed WHERE tbl = 'issues' AND row = ?",
                        bind: [row], rowMode: 'array', returnValue: 'resultRows' })[0];
    const conf = c ? { fields: c[0] === null ? null : JSON.parse(c[0]), clocks: JSON.parse(c[1]), deleted: c[2] !== 0 }
                   : { fields: null, clocks: {}, deleted: false };
    const ops = db.exec({ sql: "SELECT kind, fields, hlc FROM _synclog_outbox WHERE tbl = 'issues' AND row = ? ORDER BY seq",
                          bind: [row], rowMode: 'array', returnValue: 'resultRows' })
      .map(([kind, fields, hlc]) => ({ kind, fields: JSON.parse(fields), hlc, client_id: me }));
    const { visible } = mergeVisible(conf, ops);
    const want = visible.fields !== null && !visible.deleted
      ? JSON.stringify({ team: visible.fields.team ?? null, title: visible.fields.title ?? null, prio: visible.fields.prio ?? null })
      : '(none)';
    const got = q(db, "SELECT json_object('team', team, 'title', title, 'prio', prio) FROM issues WHERE id = ?", [row]) || '(none)';
    if (got !== want)
      return `row ${row}: visible ${got}, merge says ${want} (${ops.length} pending)`;
  }
  return null;
}

test('model: visible rows are the merge of confirmed state and pending ops, at every step', () => {
  const seed = 20261208;
  const rnd = prng(seed);
  const pick = (a) => a[Math.floor(rnd() * a.length)];
  const h = fresh();
  const nrows = 6;
  let cseq = 0;
  for (let step = 0; step < 400; step++) {
    const dice = rnd() * 100;
    const row = `m${Math.floor(rnd() * nrows)}`;
    const fields = { [rnd() < 0.5 ? 'title' : 'team']: pick(['x1', 'x2', 'x3']), ...(rnd() < 0.5 ? { prio: 7 } : {}) };
    const { st, db } = h;
    if (dice < 40) {
      st.put('issues', row, fields);
    } else if (dice < 44) {
      st.delete('issues', row);
    } else if (dice < 70) {
      /* Another client's change: behind, around, ahead, or beyond the skew bound. */
      const off = pick([-5000n, -1n, 0n, 1n, 3n, 1n << 16n, 120000n << 16n]);
      const hv = parseHlc(st.hlc()) + off;
      cseq++;
      st.applyChanges({ cursor: cseq, changes: [{ seq: cseq, op_id: `o-${step}`, client_id: pick(['other', 'zz-other']),
        table: 'issues', row, kind: rnd() < 1 / 30 ? 'delete' : 'upsert', fields, hlc: formatHlc(hv < 0n ? 0n : hv) }] });
    } else if (dice < 82) {
      /* Our oldest pending op comes back as a change. */
      const o = db.exec({ sql: 'SELECT op_id, row, kind, fields, hlc FROM _synclog_outbox ORDER BY seq LIMIT 1',
                          rowMode: 'array', returnValue: 'resultRows' })[0];
      if (o) {
        cseq++;
        st.applyChanges({ cursor: cseq, changes: [{ seq: cseq, op_id: o[0], client_id: st.clientId, table: 'issues',
          row: o[1], kind: o[2], fields: JSON.parse(o[3]), hlc: o[4] }] });
      }
    } else if (dice < 94) {
      /* An ack of a random pending op: acked, or rejected. */
      const ids = db.exec({ sql: 'SELECT op_id FROM _synclog_outbox', rowMode: 'array', returnValue: 'resultRows' });
      if (ids.length > 0) {
        const id = pick(ids)[0];
        st.ack(rnd() < 0.5 ? { acked: [id], rejected: [] } : { acked: [], rejected: [{ id, code: 'invalid_value' }] });
      }
    } else {
      reopen(h);
    }
    const diff = modelDiff(h.db, h.st.clientId, nrows);
    assert.equal(diff, null, `seed ${seed}, step ${step}`);
  }
  h.db.close();
});

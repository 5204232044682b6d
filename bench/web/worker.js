// bench/web/worker.js: the bench's own dedicated worker (bundled by
// bench/web/bench.mjs with esbuild, beside sqlite3.wasm).  It opens a SQLite
// file on the same VFS as the browser client (opfs-sahpool, a pool of its
// own), with the store's journal settings (rollback journal, synchronous=FULL,
// as web/src/store.ts sets them), and runs one of two things per message:
//
//   {cmd: 'open', mode: 'bare' | 'store'}   opens /bench-<mode>.db afresh;
//       'store' wraps it in web/src/store.ts's Store with the bench's table
//   {cmd: 'put', id, fields}    bare: one INSERT OR REPLACE in its own transaction
//   {cmd: 'rows', rows}         bare: the rows in one transaction, one prepared INSERT
//   {cmd: 'changes', frame}     store: Store.applyChanges(frame) (one transaction)
//   {cmd: 'count'}              the rows in the table
//
// Every reply is {id, ok, value | error, ms} where ms is the time spent inside
// the worker.  The page measures the round trip (page -> worker -> commit ->
// page), which is what the figures compare.
import sqlite3InitModule from '@sqlite.org/sqlite-wasm';
import { Store } from '../../web/build/lib/store.js';

const TABLES = { issues: { pk: 'id', group: 'team', columns: { id: 'text', team: 'text', title: 'text', prio: 'integer' } } };
let sqlite3 = null, pool = null, db = null, store = null, insert = null;

async function open(mode) {
  if (!sqlite3) sqlite3 = await sqlite3InitModule();
  if (!pool) pool = await sqlite3.installOpfsSAHPoolVfs({ name: 'synclog-bench', directory: '.synclog-bench' });
  if (insert) { insert.finalize(); insert = null; }
  if (db) { db.close(); db = null; store = null; }
  const file = `/bench-${mode}.db`;
  try { pool.unlink(file); } catch { /* not there */ }
  db = new pool.OpfsSAHPoolDb(file);
  if (mode === 'store') {
    store = new Store(db, { capi: sqlite3.capi });
    store.ensureTables(TABLES);
  } else {
    db.exec('PRAGMA journal_mode=DELETE');
    db.exec('PRAGMA synchronous=FULL');
    db.exec('CREATE TABLE issues (id TEXT PRIMARY KEY, team TEXT, title TEXT, prio INTEGER)');
    insert = db.prepare('INSERT OR REPLACE INTO issues (id, team, title, prio) VALUES (?, ?, ?, ?)');
  }
  return String(db.selectValue('PRAGMA journal_mode'));
}

function bareRows(rows) {
  db.exec('BEGIN');
  try {
    for (const r of rows) {
      insert.bind([r.id, r.fields.team ?? null, r.fields.title ?? null, r.fields.prio ?? null]).stepReset();
      insert.clearBindings();
    }
    db.exec('COMMIT');
  } catch (e) {
    db.exec('ROLLBACK');
    throw e;
  }
}

async function run(m) {
  switch (m.cmd) {
    case 'open': return open(m.mode);
    case 'put': bareRows([{ id: m.id, fields: m.fields }]); return null;
    case 'rows': bareRows(m.rows); return m.rows.length;
    case 'changes': store.applyChanges(m.frame); return m.frame.changes.length;
    case 'count': return Number(db.selectValue('SELECT count(*) FROM issues'));
    default: throw new Error(`unknown command ${m.cmd}`);
  }
}

self.onmessage = async (ev) => {
  const m = ev.data, t0 = performance.now();
  try {
    const value = await run(m);
    self.postMessage({ id: m.id, ok: true, value, ms: performance.now() - t0 });
  } catch (e) {
    self.postMessage({ id: m.id, ok: false, error: String(e?.stack ?? e), ms: performance.now() - t0 });
  }
};

// web/test/browser/pages/opfs.worker.js: the OPFS test's dedicated worker
// (bundled by prepare.mjs as /test-opfs-worker.js, beside dist's
// sqlite3.wasm).  sqlite-wasm with the opfs-sahpool VFS and one table
// kv(k TEXT PRIMARY KEY, v TEXT), driven by messages {id, op, args} and
// answering {id, ok: true, value} or {id, ok: false, error: {name, message}}.
//
//   init                        load sqlite-wasm (fetches sqlite3.wasm)
//   install {name, retryMs}     installOpfsSAHPoolVfs; with retryMs > 0,
//                               retried until it works or retryMs pass (a
//                               reloaded page's old worker may still hold the
//                               pool's handles for a moment); the answer says
//                               how many attempts it took
//   open {file}                 opens (creates) the database and the table
//   put {k, v}, get {k}, all    one row in, one value out, every row
//   check                       PRAGMA integrity_check and the journal mode
//   close                       closes the database and pauses the pool
//                               (its access handles released)
import sqlite3InitModule from '@sqlite.org/sqlite-wasm';

let sqlite3 = null;
let pool = null;
let db = null;

function need(what, v) {
  if (!v) throw new Error(`${what} first`);
  return v;
}

const ops = {
  async init() {
    sqlite3 ??= await sqlite3InitModule();
    return { version: sqlite3.version.libVersion };
  },

  async install({ name = 'synclog-test', retryMs = 0 } = {}) {
    need('init', sqlite3);
    const end = Date.now() + retryMs;
    for (let attempt = 1; ; attempt++) {
      try {
        /* preserveOnInitFailure: a failed install (the pool held by another
         * tab) must not try to delete the pool; forceReinit…: a failure is
         * cached per name otherwise, and the retry would get it again. */
        pool = await sqlite3.installOpfsSAHPoolVfs({
          name,
          preserveOnInitFailure: true,
          forceReinitIfPreviouslyFailed: true,
        });
        return { attempts: attempt, vfs: pool.vfsName, files: pool.getFileNames() };
      } catch (e) {
        if (Date.now() >= end) throw e;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  },

  open({ file = '/test.db' } = {}) {
    need('install', pool);
    db = new pool.OpfsSAHPoolDb(file);
    db.exec('PRAGMA synchronous = FULL');
    db.exec('CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT NOT NULL)');
    return { file };
  },

  put({ k, v }) {
    need('open', db).exec({ sql: 'INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)', bind: [k, v] });
    return true;
  },

  get({ k }) {
    return need('open', db).selectValue('SELECT v FROM kv WHERE k = ?', [k]) ?? null;
  },

  all() {
    return need('open', db).selectArrays('SELECT k, v FROM kv ORDER BY k');
  },

  check() {
    need('open', db);
    return {
      integrity: db.selectValue('PRAGMA integrity_check'),
      journal: db.selectValue('PRAGMA journal_mode'),
    };
  },

  close() {
    db?.close();
    db = null;
    pool?.pauseVfs(); /* releases the pool's access handles: another tab may take it */
    return true;
  },
};

self.onmessage = async (e) => {
  const { id, op, args } = e.data;
  try {
    const f = ops[op];
    if (!f) throw new Error(`unknown op ${op}`);
    self.postMessage({ id, ok: true, value: await f(args) });
  } catch (err) {
    self.postMessage({ id, ok: false, error: { name: err?.name ?? 'Error', message: String(err?.message ?? err) } });
  }
};

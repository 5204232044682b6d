// web/test/browser/pages/app-page.js: the page the end-to-end tests drive.
// Imports the served build (/synclog.js, web/dist, as an app would) and
// exposes window.app, a thin layer over one handle of openSynclog that
// records every event, so that the tests (puppeteer) can poll for them:
//
//   app.open({url, token, groups, name})  → the status once open
//   app.put / app.del / app.query / app.setOnline / app.close
//   app.status()                          → handle.status
//   app.events(kind)                      → every 'status' | 'change' | 'rejected' so far
//   app.watch(sql, params) → n; app.watched(n) → {rows, calls, error}
//   app.error(fn)                         → a thrown SynclogError as {name, code, message}
import { openSynclog } from '../synclog.js';

const events = { status: [], change: [], rejected: [] };
const watches = [];
let db = null;

const plain = (v) => (v === undefined ? null : JSON.parse(JSON.stringify(v)));

function need() {
  if (!db) throw new Error('app.open first');
  return db;
}

window.app = {
  ready: true,
  async open(opts) {
    db = await openSynclog(opts);
    for (const kind of Object.keys(events)) db.on(kind, (e) => events[kind].push(plain(e)));
    return plain(db.status);
  },
  put: (table, id, fields) => need().put(table, id, fields),
  del: (table, id) => need().delete(table, id),
  query: (sql, params = []) => need().query(sql, params),
  setOnline: (online) => need().setOnline(online),
  close: () => need().close(),
  status: () => plain(need().status),
  events: (kind) => events[kind],
  watch(sql, params = []) {
    const slot = { rows: null, calls: 0, error: null };
    slot.off = need().watch(sql, params, (rows) => {
      slot.rows = plain(rows);
      slot.calls++;
    }, (e) => {
      slot.error = `${e.name}: ${e.message}`;
    });
    watches.push(slot);
    return watches.length - 1;
  },
  watched: (n) => ({ rows: watches[n].rows, calls: watches[n].calls, error: watches[n].error }),
  unwatch: (n) => watches[n].off(),
  async error(fn) {
    try {
      await fn();
      return null;
    } catch (e) {
      return { name: e.name, code: e.code ?? null, message: e.message };
    }
  },
};

// bench/web/bench.mjs: the browser client's figures of `make bench`, driven
// from Node with puppeteer-core in headless Chromium (bench/web/web.sh runs
// it; see there and the README's "The browser client" for what is measured).
//
//   node bench/web/bench.mjs prepare DIR
//       fills DIR with what the gateway serves (--static DIR): web/dist/, this
//       directory's page.html and bench-worker.js (worker.js bundled with
//       esbuild, sqlite-wasm and web/build/lib/store.js inside)
//   node bench/web/bench.mjs run ORIGIN TOKEN CURSOR OUT
//       ORIGIN is http://127.0.0.1:PORT (the gateway); CURSOR the server's
//       cursor once the first-sync rows are sequenced; OUT a file that gets
//       one line per trial and figure: "figure trial value"
//
// Environment: BENCH_QUICK=1 (fewer trials and samples), BENCH_WEB_TRIALS,
// CHROMIUM (default /usr/bin/chromium).  Every browser runs with a fresh
// temporary profile, removed when it closes; every wait is bounded; a
// failure closes every browser started and exits 1.
import { build } from '../../web/node_modules/esbuild/lib/main.js';
import puppeteer from '../../web/node_modules/puppeteer-core/lib/esm/puppeteer/puppeteer-core.js';
import { appendFileSync, cpSync, copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const web = join(here, '..', '..', 'web');
const QUICK = process.env.BENCH_QUICK === '1';
const TRIALS = Number(process.env.BENCH_WEB_TRIALS ?? (QUICK ? 2 : 5));
const PUTS = QUICK ? 200 : 500;            /* figure 1: timed puts per trial and side */
const FRAMES = QUICK ? 5 : 20;             /* figure 2: 1,000-change frames per trial and side */
const LATENCY_PUTS = QUICK ? 60 : 200;     /* figure 4: timed puts per trial */
const WARMUP = 50;

function log(s) { console.log(`  web: ${s}`); }

if (process.argv[2] === 'prepare') {
  const dir = process.argv[3];
  cpSync(join(web, 'dist'), dir, { recursive: true });
  copyFileSync(join(here, 'page.html'), join(dir, 'page.html'));
  await build({
    entryPoints: [join(here, 'worker.js')], outfile: join(dir, 'bench-worker.js'),
    bundle: true, format: 'esm', platform: 'browser', target: 'es2022', logLevel: 'warning',
    nodePaths: [join(web, 'node_modules')], /* sqlite-wasm from web/node_modules */
  });
  process.exit(0);
}
if (process.argv[2] !== 'run') { console.error('usage: bench.mjs prepare DIR | run ORIGIN TOKEN CURSOR OUT'); process.exit(2); }
const [ORIGIN, TOKEN, CURSOR, OUT] = process.argv.slice(3);
writeFileSync(OUT, '');
const record = (figure, trial, value) => appendFileSync(OUT, `${figure} ${trial} ${value}\n`);

const browsers = new Set();
async function launch() {
  const profile = mkdtempSync(join(tmpdir(), 'synclog-bench-chromium-'));
  let b;
  try {
    b = await puppeteer.launch({
      executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
      headless: true, /* the args below carry --headless=new */
      userDataDir: profile,
      args: ['--headless=new', '--disable-background-networking', '--disable-component-update', '--disable-sync',
        '--disable-quic', '--no-first-run', '--no-sandbox', `--user-data-dir=${profile}`],
      protocolTimeout: 600000,
    });
  } catch (e) { rmSync(profile, { recursive: true, force: true }); throw e; }
  const close = async () => {
    browsers.delete(entry);
    await b.close().catch(() => b.process()?.kill('SIGKILL'));
    rmSync(profile, { recursive: true, force: true });
  };
  const entry = { b, close };
  browsers.add(entry);
  const page = await b.newPage();
  page.on('pageerror', (e) => console.error(`  web: page error: ${e.message}`));
  await page.goto(`${ORIGIN}/page.html`, { timeout: 30000 });
  return { page, close };
}
async function closeAll() { for (const e of [...browsers]) await e.close(); }
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => closeAll().finally(() => process.exit(1)));

/* In the page: the helpers every figure uses (a worker RPC, percentiles, openSynclog with a bounded wait for a connection). */
const PAGE_HELPERS = (origin, token) => {
  window.pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)]; };
  window.startBenchWorker = () => {
    const w = new Worker('/bench-worker.js', { type: 'module' });
    let next = 0; const waiting = new Map();
    w.onmessage = (ev) => { const r = waiting.get(ev.data.id); waiting.delete(ev.data.id); r(ev.data); };
    w.call = (m) => new Promise((resolve, reject) => {
      const id = ++next;
      const timer = setTimeout(() => reject(new Error(`bench worker: ${m.cmd} took over 120 s`)), 120000);
      waiting.set(id, (r) => { clearTimeout(timer); r.ok ? resolve(r.value) : reject(new Error(r.error)); });
      w.postMessage({ ...m, id });
    });
    return w;
  };
  window.openDb = async (name, groups) => {
    const { openSynclog } = await import('/synclog.js');
    const db = await openSynclog({ url: origin, token, groups, name });
    const deadline = Date.now() + 30000;
    while (!db.status.connected) {
      if (Date.now() > deadline) throw new Error(`not connected after 30 s: ${JSON.stringify(db.status)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    return db;
  };
  window.now = () => performance.timeOrigin + performance.now();
};

async function withPage(fn) {
  const p = await launch();
  try {
    await p.page.evaluate(PAGE_HELPERS, ORIGIN, TOKEN);
    return await fn(p.page);
  } finally { await p.close(); }
}

/* 1. Local put: db.put's promise against a bare INSERT transaction in a worker on the same VFS. */
async function putLatency(trial) {
  const r = await withPage((page) => page.evaluate(async (n, warm) => {
    const w = startBenchWorker();
    await w.call({ cmd: 'open', mode: 'bare' });
    const fields = (i) => ({ team: 'p', title: `title ${i}`, prio: i });
    const bare = [], api = [];
    for (let i = 0; i < warm + n; i++) {
      const t0 = performance.now();
      await w.call({ cmd: 'put', id: `bare-${i}`, fields: fields(i) });
      if (i >= warm) bare.push(performance.now() - t0);
    }
    w.terminate();
    const db = await openDb('put', ['p']);
    for (let i = 0; i < warm + n; i++) {
      const t0 = performance.now();
      await db.put('issues', `put-${crypto.randomUUID()}`, fields(i));
      if (i >= warm) api.push(performance.now() - t0);
    }
    await db.close();
    return { bare50: pct(bare, 0.5), bare99: pct(bare, 0.99), put50: pct(api, 0.5), put99: pct(api, 0.99) };
  }, PUTS, WARMUP));
  for (const [k, v] of Object.entries(r)) record(k, trial, (v * 1000).toFixed(1)); /* us */
  log(`trial ${trial}: put p50 ${r.put50.toFixed(2)} ms p99 ${r.put99.toFixed(2)} ms; bare p50 ${r.bare50.toFixed(2)} ms p99 ${r.bare99.toFixed(2)} ms`);
}

/* 2. Applying 1,000-change frames through Store.applyChanges against the same rows in bare batched INSERTs. */
async function applyRate(trial) {
  const r = await withPage((page) => page.evaluate(async (frames) => {
    const N = 1000;
    const rows = (f) => Array.from({ length: N }, (_, i) => ({ id: `r-${f}-${i}`, fields: { team: 'g1', title: `title ${f}.${i}`, prio: i } }));
    const hex16 = (ms, i) => (BigInt(ms) << 16n | BigInt(i & 0xffff)).toString(16).padStart(16, '0');
    const ms0 = Date.now();
    const frame = (f) => ({
      type: 'changes', cursor: (f + 1) * N,
      changes: rows(f).map((r, i) => ({ seq: f * N + i + 1, op_id: crypto.randomUUID(), client_id: 'bench-remote',
        table: 'issues', row: r.id, group: 'g1', kind: 'upsert', fields: r.fields, hlc: hex16(ms0 + f, i) })),
    });
    const timed = async (w, msgs) => {
      await w.call(msgs[0]); /* warm-up: the first frame is not timed */
      const t0 = performance.now();
      for (const m of msgs.slice(1)) await w.call(m);
      return (msgs.length - 1) * N / ((performance.now() - t0) / 1000);
    };
    const w = startBenchWorker();
    await w.call({ cmd: 'open', mode: 'bare' });
    const bare = await timed(w, Array.from({ length: frames + 1 }, (_, f) => ({ cmd: 'rows', rows: rows(f) })));
    const bareCount = await w.call({ cmd: 'count' });
    await w.call({ cmd: 'open', mode: 'store' });
    const store = await timed(w, Array.from({ length: frames + 1 }, (_, f) => ({ cmd: 'changes', frame: frame(f) })));
    const storeCount = await w.call({ cmd: 'count' });
    w.terminate();
    if (bareCount !== (frames + 1) * N || storeCount !== (frames + 1) * N) throw new Error(`rows: bare ${bareCount}, store ${storeCount}`);
    return { bare, store };
  }, FRAMES));
  record('apply', trial, r.store.toFixed(0));
  record('bare_apply', trial, r.bare.toFixed(0));
  log(`trial ${trial}: applied ${r.store.toFixed(0)} changes/s; bare batched INSERT ${r.bare.toFixed(0)} rows/s`);
}

/* 3. First sync of the seeded rows on a fresh profile: openSynclog until status.cursor reaches CURSOR and every row is queryable. */
async function firstSync(trial) {
  const r = await withPage((page) => page.evaluate(async (cursor, token) => {
    const { openSynclog } = await import('/synclog.js');
    const t0 = performance.now();
    const db = await openSynclog({ url: location.origin, token, groups: ['g1'], name: 'first' });
    const deadline = Date.now() + 600000;
    let rows = 0;
    while (db.status.cursor < cursor || rows === 0) {
      if (Date.now() > deadline) throw new Error(`first sync: not done after 600 s: ${JSON.stringify(db.status)}`);
      await new Promise((res) => setTimeout(res, 10));
      if (db.status.cursor >= cursor) rows = (await db.query("SELECT count(*) AS n FROM issues WHERE team = 'g1'"))[0].n;
    }
    const s = (performance.now() - t0) / 1000;
    await db.close();
    return { s, rows };
  }, Number(CURSOR), TOKEN));
  record('first_sync', trial, r.s.toFixed(3));
  log(`trial ${trial}: first sync of ${r.rows} rows in ${r.s.toFixed(2)} s`);
}

/* 4. A put in one browser to visible in another (two Chromium processes, each with its own profile). */
async function putToVisible(trial) {
  const a = await launch();
  try {
    const b = await launch();
    try {
      for (const p of [a, b]) {
        await p.page.evaluate(PAGE_HELPERS, ORIGIN, TOKEN);
        await p.page.evaluate(async () => { window.db = await openDb('lat', ['l']); });
      }
      await b.page.evaluate(() => {
        /* waitFor(id): resolves with the time the row first became visible to a query here. */
        window.waitFor = (id) => new Promise((resolve, reject) => {
          const check = async () => {
            const t = now();
            if ((await db.query('SELECT 1 FROM issues WHERE id = ?', [id])).length > 0) { off(); clearTimeout(timer); resolve(t); }
          };
          const off = db.on('change', () => { check().catch(reject); });
          const timer = setTimeout(() => { off(); reject(new Error(`${id}: not visible after 10 s`)); }, 10000);
          check().catch(reject);
        });
      });
      const samples = [];
      for (let i = 0; i < 20 + LATENCY_PUTS; i++) {
        const id = `lat-${trial}-${i}-${Date.now()}`;
        const seen = b.page.evaluate((id) => waitFor(id), id);
        const t0 = await a.page.evaluate(async (id) => { const t = now(); await db.put('issues', id, { team: 'l', title: 'x', prio: 1 }); return t; }, id);
        const t1 = await seen;
        if (i >= 20) samples.push(t1 - t0);
      }
      samples.sort((x, y) => x - y);
      const pct = (p) => samples[Math.min(samples.length - 1, Math.ceil(p * samples.length) - 1)];
      record('visible_p50', trial, pct(0.5).toFixed(2));
      record('visible_p99', trial, pct(0.99).toFixed(2));
      log(`trial ${trial}: put to visible in another browser p50 ${pct(0.5).toFixed(2)} ms p99 ${pct(0.99).toFixed(2)} ms (${samples.length} puts)`);
    } finally { await b.close(); }
  } finally { await a.close(); }
}

try {
  for (let t = 1; t <= TRIALS; t++) {
    await putLatency(t);
    await applyRate(t);
    if (process.env.BENCH_WEB_FIRST_SYNC !== '0') await firstSync(t);
    await putToVisible(t);
  }
} catch (e) {
  console.error(`bench/web: ${e?.stack ?? e}`);
  await closeAll();
  process.exit(1);
}
await closeAll();

// web/test/browser/lifecycle.test.mjs: the browser client when the network
// and the page's life go wrong, end to end in headless Chromium.
//
//   - connections reset mid-frame, frames sliced and delayed, through the
//     fault proxy (tests/soak/faultproxy.c) between the page and a gateway:
//     every write converges, in the browser and in PostgreSQL, each op
//     applied exactly once;
//   - the owner tab frozen (CDP Page.setWebLifecycleState): the other tab
//     takes the database over and syncs; the frozen tab, resumed, writes
//     through the new owner;
//   - a revoked token: status says unauthorized, the client stops retrying,
//     and local writes still work (they stay pending).
//
// Conventions as in e2e.test.mjs: a group and token per test, a gateway of
// the test's own, a fresh profile, bounded polls, everything stopped in
// t.after.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync, mkdtempSync, rmSync, appendFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { DEADLINE_MS, env, freePort, inPage, launchBrowser, sql, startGateway, waitFor } from './harness.mjs';

const PAGE = '/test/app.html';

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

/* The fault proxy in front of upstream port, stopped after the test. */
async function faultProxy(t, upstream, args) {
  const repo = env('REPO');
  const bin = join(repo, 'build', 'soak', 'faultproxy');
  if (!existsSync(bin)) {
    const r = spawnSync('make', ['--no-print-directory', '-C', join(repo, 'tests', 'soak'), 'faultproxy'], { encoding: 'utf8' });
    assert.equal(r.status, 0, `building the fault proxy: ${r.stdout}${r.stderr}`);
  }
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'synclog-fp-'));
  const logFile = join(dir, 'faultproxy.log');
  writeFileSync(logFile, '');
  const proc = spawn(bin, ['--listen', String(port), '--upstream', `127.0.0.1:${upstream}`, ...args],
                     { stdio: ['ignore', 'ignore', 'pipe'] });
  proc.stderr.on('data', (d) => appendFileSync(logFile, d));
  const exited = new Promise((r) => proc.once('exit', (code, sig) => r(code ?? sig)));
  const log = () => readFileSync(logFile, 'utf8');
  const handle = {
    port,
    log,
    signal(sig) { try { proc.kill(sig); } catch { /* gone */ } },
    /* The counters of the proxy's last stats line, after asking for one. */
    async stats() {
      const before = log().split('\n').filter((l) => l.startsWith('faultproxy: connections=')).length;
      handle.signal('SIGHUP');
      await waitFor(() => log().split('\n').filter((l) => l.startsWith('faultproxy: connections=')).length > before,
                    { what: 'the fault proxy\'s stats line' });
      const line = log().split('\n').filter((l) => l.startsWith('faultproxy: connections=')).at(-1);
      return Object.fromEntries(line.replace('faultproxy: ', '').split(' ').map((kv) => {
        const [k, v] = kv.split('=');
        return [k, Number(v)];
      }));
    },
  };
  t.after(async () => {
    handle.signal('SIGTERM');
    const timer = setTimeout(() => handle.signal('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
    rmSync(dir, { recursive: true, force: true });
  });
  await waitFor(() => log().includes(`listening on 127.0.0.1:${port}`), { what: 'the fault proxy listening' });
  return handle;
}

test('connections reset mid-frame through the fault proxy: every write converges, each op applied once', async (t) => {
  const { group, token } = newGroup('faults');
  const gw = await gateway(t);
  const proxy = await faultProxy(t, gw.port, ['--seed', '15', '--reset-per-mille', '60', '--slice-per-mille', '300',
                                             '--latency-ms', '0-20', '--stall-per-mille', '0']);
  const b = await launchBrowser(t);
  const page = await appPage(b);
  await open(b, page, { url: `ws://127.0.0.1:${proxy.port}`, token, groups: [group], name: 'faults' });

  /* 80 new rows, then an edit of every fourth: 100 ops, written while the
   * proxy resets connections and slices frames. */
  const want = new Map();
  for (let i = 0; i < 80; i++) {
    const id = `f-${String(i).padStart(3, '0')}`;
    await put(b, page, 'issues', id, { team: group, title: `t${i}`, status: 'open', prio: i });
    want.set(id, { id, team: group, title: `t${i}`, status: 'open', prio: i });
  }
  for (let i = 0; i < 80; i += 4) {
    const id = `f-${String(i).padStart(3, '0')}`;
    await put(b, page, 'issues', id, { title: `edited ${i}` });
    want.get(id).title = `edited ${i}`;
  }
  let nops = 80 + 20;

  /* More edits until the proxy has reset a connection at least once while
   * syncing (resets are random per chunk: more traffic makes one certain),
   * bounded; then calm, and everything arrives. */
  for (let n = 0; (await proxy.stats()).resets < 1 && n < 600; n++) {
    const id = `f-${String(n % 80).padStart(3, '0')}`;
    await put(b, page, 'issues', id, { title: `more ${n}` });
    want.get(id).title = `more ${n}`;
    nops++;
  }
  const during = await proxy.stats();
  proxy.signal('SIGUSR1');
  await waitStatus(b, page, 'connected, nothing pending', (s) => s.connected && s.pending === 0);
  const after = await proxy.stats();
  assert.ok(after.resets >= 1, `the proxy reset no connection (stats ${JSON.stringify(after)}): the test proved nothing`);
  assert.ok(after.connections >= 2, `one connection only (${JSON.stringify(after)}): the client did not reconnect after a reset`);
  t.diagnostic(`fault proxy: ${JSON.stringify(during)} while writing, ${JSON.stringify(after)} at the end`);

  const server = JSON.parse(sql(`SELECT coalesce(json_agg(r ORDER BY r.id), '[]') FROM
                                 (SELECT id, team, title, status, prio FROM issues WHERE team = '${group}') r`));
  assert.deepEqual(server, [...want.values()], 'PostgreSQL holds every write, the edits winning');
  const local = await query(b, page, 'SELECT id, team, title, status, prio FROM issues WHERE team = ? ORDER BY id', [group]);
  assert.deepEqual(local, server, 'the browser converged with PostgreSQL');
  const [ops, distinct] = sql(`SELECT count(*) || ' ' || count(DISTINCT op_id) FROM synclog.ops WHERE grp = '${group}'`).split(' ').map(Number);
  assert.equal(distinct, nops, 'every op reached the log');
  assert.equal(ops, nops, 'no op applied twice, whatever was resent');
});

test('the owner tab frozen: the other takes the database over and syncs; resumed, the first writes through it', async (t) => {
  const { group, token } = newGroup('freeze');
  const gw = await gateway(t);
  const b = await launchBrowser(t);
  const opts = { url: gw.wsUrl, token, groups: [group], name: 'freeze' };
  const first = await appPage(b);
  await open(b, first, opts);
  const second = await appPage(b);
  await open(b, second, opts);
  assert.equal((await status(b, first)).owner, true, 'the first tab opened first: it owns the database');
  assert.equal((await status(b, second)).owner, false);

  const cdp = await first.createCDPSession();
  t.after(() => cdp.detach().catch(() => {}));
  await cdp.send('Page.setWebLifecycleState', { state: 'frozen' });
  await waitStatus(b, second, 'the second tab owns the database', (s) => s.owner && s.connected);

  await put(b, second, 'issues', 'fz-1', { team: group, title: 'while the owner slept', status: 'open', prio: 1 });
  await waitFor(() => sql(`SELECT title FROM issues WHERE id = 'fz-1'`) === 'while the owner slept',
                { what: 'the second tab\'s write in PostgreSQL' });

  await cdp.send('Page.setWebLifecycleState', { state: 'active' });
  await waitStatus(b, first, 'the resumed tab is a follower', (s) => !s.owner);
  await put(b, first, 'issues', 'fz-2', { team: group, title: 'after resuming', status: 'open', prio: 2 });
  await waitFor(() => sql(`SELECT title FROM issues WHERE id = 'fz-2'`) === 'after resuming',
                { what: 'the resumed tab\'s write in PostgreSQL' });
  await waitFor(async () => (await query(b, first, 'SELECT count(*) AS n FROM issues WHERE team = ?', [group]))[0].n === 2,
                { what: 'both rows visible in the resumed tab' });
  assert.equal((await status(b, second)).owner, true, 'ownership stayed with the second tab');
});

test('a revoked token: status says unauthorized, the client stops retrying, local writes stay pending', async (t) => {
  const { group, token } = newGroup('revoked');
  sql(`SELECT synclog.revoke_token('${token}')`);
  const gw = await gateway(t);
  /* A calm fault proxy in front, only to count the connections made. */
  const proxy = await faultProxy(t, gw.port, ['--calm']);
  const b = await launchBrowser(t);
  const page = await appPage(b);
  await open(b, page, { url: `ws://127.0.0.1:${proxy.port}`, token, groups: [group], name: 'revoked' });
  const s = await waitStatus(b, page, 'unauthorized', (x) => x.lastError?.code === 'unauthorized');
  assert.equal(s.connected, false);

  await put(b, page, 'issues', 'rv-1', { team: group, title: 'kept locally', status: 'open', prio: 1 });
  await waitStatus(b, page, 'one pending op', (x) => x.pending === 1);
  /* A client that retried would have reconnected within its first backoff
   * (250 ms), and again for the new write; give it several times that. */
  const since = Date.now();
  await waitFor(() => Date.now() - since > 2000, { what: 'two seconds' });
  const st = await proxy.stats();
  assert.equal(st.connections, 1, `the client reconnected with a revoked token: ${JSON.stringify(st)}`);
  const s2 = await status(b, page);
  assert.equal(s2.lastError?.code, 'unauthorized');
  assert.equal(s2.pending, 1, 'the write stays in the outbox');
  assert.deepEqual(await query(b, page, 'SELECT title FROM issues WHERE id = ?', ['rv-1']), [{ title: 'kept locally' }]);
});

// web/test/browser/harness.mjs: headless Chromium for the browser tests.
//
// Drives Debian's chromium (/usr/bin/chromium, or $SYNCLOG_CHROMIUM) through
// puppeteer-core over a pipe (no debugging port), with a fresh temporary
// --user-data-dir and the flags that keep it from opening any connection
// beyond loopback: --disable-background-networking --disable-component-update
// --disable-sync --disable-quic --no-first-run, and a host resolver that
// resolves nothing but localhost and 127.0.0.1.
//
//   const b = await launchBrowser(t);     // t: the node:test context; closes b after t
//   const page = await b.open('/test/opfs.html');   // on $SYNCLOG_WEB_URL's origin
//   b.errorsOf(page)   // console errors, uncaught exceptions, failed requests, HTTP >= 400
//   await b.kill();    // SIGKILL to the browser's process group, waits for it to exit
//   await b.restart(); // the same user-data-dir again (what was on disk is there)
//   await b.close();   // closes (kills if it will not close) and removes the profile
//
// Every browser started is closed when the test that launched it ends
// (t.after), whether it passed or failed, and when this Node process exits
// (puppeteer kills the process group then).  For a runner killed with
// SIGKILL, each browser's pid is also written to $SYNCLOG_PID_DIR (when set)
// as chromium-<pid>, removed when the browser is gone, so the suite's cleanup
// can end what is left.
//
// Also: waitFor(cond, {what, timeout}) polls until cond() is truthy against a
// deadline, env() the suite's settings, startGateway() a synclog-gateway of
// the test's own, sql() a query on the suite's database, cli() the C client
// (see below).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync, unlinkSync, appendFileSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer from 'puppeteer-core';

export const CHROMIUM = process.env.SYNCLOG_CHROMIUM || '/usr/bin/chromium';

// Generous: a loaded 2-core machine runs the suites.
export const DEADLINE_MS = Number(process.env.SYNCLOG_TEST_DEADLINE_MS) || 30_000;

const FLAGS = [
  '--headless=new',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
  '--no-first-run',
  '--no-default-browser-check',
  '--disable-domain-reliability',
  '--disable-breakpad',
  '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1',
];

/* The suite's settings (tests/suites/71-web-browser.sh sets them). */
export function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run the browser tests through tests/suites/71-web-browser.sh`);
  return v;
}

/* Polls cond() (sync or async) every `every` ms until it returns a truthy
 * value, which is returned; throws naming `what` at the deadline, with the
 * last value or error cond() gave.  fatal(), when given, is asked first each
 * time: a truthy answer (a message) ends the wait at once with that error. */
export async function waitFor(cond, { what = 'condition', timeout = DEADLINE_MS, every = 50, fatal } = {}) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    const f = fatal?.();
    if (f) throw new Error(`while waiting for ${what}: ${f}`);
    try {
      const v = await cond();
      if (v) return v;
      last = v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) {
      const why = last instanceof Error ? `${last.name}: ${last.message}` : JSON.stringify(last);
      throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${why})`);
    }
    await new Promise((r) => setTimeout(r, every));
  }
}

function pidFile(pid) {
  const dir = process.env.SYNCLOG_PID_DIR;
  return dir ? join(dir, `chromium-${pid}`) : null;
}

class TestBrowser {
  constructor(origin) {
    this.origin = origin;
    this.userDataDir = mkdtempSync(join(tmpdir(), 'synclog-chromium-'));
    this.browser = null;
    this.proc = null;
    this.errors = new Map(); /* page → [string] */
    this.closed = false;
  }

  async start() {
    if (this.closed) throw new Error('browser already closed');
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: \`make deps\` installs Debian's chromium`);
    const args = [...FLAGS];
    if (process.getuid?.() === 0) args.push('--no-sandbox'); /* Chromium's sandbox refuses root */
    this.browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      pipe: true,
      userDataDir: this.userDataDir,
      args,
      timeout: DEADLINE_MS,
      protocolTimeout: 2 * DEADLINE_MS,
      env: { ...process.env, TZ: 'UTC' },
    });
    this.proc = this.browser.process();
    const f = pidFile(this.proc.pid);
    if (f) {
      writeFileSync(f, `${this.proc.pid}\n`);
      this.proc.once('exit', () => { try { unlinkSync(f); } catch { /* gone */ } });
    }
    return this;
  }

  /* A new tab on this.origin + path, loaded; its errors collected from the
   * start (page, its workers, its requests). */
  async open(path = '/', { waitUntil = 'load' } = {}) {
    const page = await this.browser.newPage();
    this.watch(page);
    const url = new URL(path, this.origin).href;
    const res = await page.goto(url, { waitUntil, timeout: DEADLINE_MS });
    if (!res || !res.ok()) throw new Error(`GET ${url}: ${res ? `HTTP ${res.status()}` : 'no response'}`);
    return page;
  }

  watch(page) {
    const list = [];
    this.errors.set(page, list);
    page.on('console', (m) => {
      if (m.type() === 'error') list.push(`console.error: ${m.text()}`);
    });
    page.on('pageerror', (e) => list.push(`uncaught: ${e?.message ?? e}`));
    page.on('requestfailed', (r) => {
      /* a navigation away cancels what was loading: not an error of the page */
      const why = r.failure()?.errorText ?? 'failed';
      if (why !== 'net::ERR_ABORTED') list.push(`request failed: ${r.url()}: ${why}`);
    });
    page.on('response', (r) => {
      if (r.status() >= 400) list.push(`HTTP ${r.status()}: ${r.url()}`);
    });
  }

  errorsOf(page) {
    return this.errors.get(page) ?? [];
  }

  /* kill -9 of the whole browser (its process group: puppeteer starts it
   * detached, as a group leader), then waits until it has exited. */
  async kill() {
    const proc = this.proc;
    if (!proc) return;
    const gone = new Promise((r) => {
      if (proc.exitCode !== null || proc.signalCode !== null) r();
      else proc.once('exit', r);
    });
    try {
      process.kill(-proc.pid, 'SIGKILL');
    } catch {
      try { proc.kill('SIGKILL'); } catch { /* already gone */ }
    }
    await gone;
    try { this.browser.disconnect?.(); } catch { /* the pipe is closed */ }
    this.browser = null;
    this.proc = null;
    this.errors.clear();
  }

  /* Starts Chromium again on the same profile. */
  async restart() {
    if (this.proc) await this.kill();
    return this.start();
  }

  async close() {
    if (this.closed) return;
    this.closed = true;
    if (this.browser) {
      const closing = this.browser.close().then(() => true, () => false);
      const ok = await Promise.race([closing, new Promise((r) => setTimeout(() => r(false), 10_000))]);
      if (!ok || (this.proc && this.proc.exitCode === null && this.proc.signalCode === null)) await this.kill();
    }
    this.browser = null;
    this.proc = null;
    rmSync(this.userDataDir, { recursive: true, force: true, maxRetries: 5 });
  }
}

/* A started browser on `origin` (default $SYNCLOG_WEB_URL), closed after
 * test t (a node:test TestContext) ends; t may be null. */
export async function launchBrowser(t, { origin = env('SYNCLOG_WEB_URL') } = {}) {
  const b = new TestBrowser(origin);
  t?.after(() => b.close());
  try {
    await b.start();
  } catch (e) {
    await b.close();
    throw e;
  }
  return b;
}

/* page.evaluate with a readable failure: the page's collected errors are
 * appended to the message. */
export async function inPage(b, page, fn, ...args) {
  try {
    return await page.evaluate(fn, ...args);
  } catch (e) {
    const errs = b.errorsOf(page);
    e.message += errs.length ? `\npage errors:\n  ${errs.join('\n  ')}` : '';
    throw e;
  }
}

/* --- a gateway of the test's own ------------------------------------------
 *
 * startGateway({ port }) starts $SYNCLOG_GATEWAY on 127.0.0.1 against
 * $SYNCLOG_GATEWAY_DB, serving $SYNCLOG_STATIC, and resolves once its log
 * says "database connected" and the port accepts.  The handle: url (http),
 * wsUrl, port, log(), stop() (SIGTERM, then SIGKILL after 10 s; resolves to
 * the exit status), kill() (SIGKILL).  Pass the same port again to restart
 * a gateway where the browser expects it.  It is killed when the Node
 * process exits. */
const gateways = new Set();
process.on('exit', () => {
  for (const g of gateways) try { g.kill('SIGKILL'); } catch { /* gone */ }
});

function portAccepts(port) {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

export async function freePort() {
  for (let i = 0; i < 100; i++) {
    const p = 20000 + Math.floor(Math.random() * 12000);
    if (!(await portAccepts(p))) return p;
  }
  throw new Error('no free port found');
}

export async function startGateway({ port, args = [] } = {}) {
  port ??= await freePort();
  const logFile = join(mkdtempSync(join(tmpdir(), 'synclog-gw-')), 'gateway.log');
  writeFileSync(logFile, '');
  const proc = spawn(env('SYNCLOG_GATEWAY'), ['--listen', `127.0.0.1:${port}`, '--db', env('SYNCLOG_GATEWAY_DB'),
    '--static', env('SYNCLOG_STATIC'), ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  gateways.add(proc);
  const pf = process.env.SYNCLOG_PID_DIR ? join(process.env.SYNCLOG_PID_DIR, `gateway-${proc.pid}`) : null;
  if (pf) writeFileSync(pf, `${proc.pid}\n`);
  proc.stderr.on('data', (d) => appendFileSync(logFile, d));
  let finalLog = null;
  const exited = new Promise((r) => proc.once('exit', (code, sig) => {
    gateways.delete(proc);
    if (pf) try { unlinkSync(pf); } catch { /* gone */ }
    r(code ?? sig);
  }));
  const log = () => finalLog ?? readFileSync(logFile, 'utf8');
  const handle = {
    port,
    url: `http://127.0.0.1:${port}`,
    wsUrl: `ws://127.0.0.1:${port}`,
    log,
    exited,
    kill() { try { proc.kill('SIGKILL'); } catch { /* gone */ } return exited; },
    async stop() {
      /* Idempotent: a test may stop its gateway (to go offline) and t.after stop it again. */
      if (finalLog !== null) return exited;
      try { proc.kill('SIGTERM'); } catch { /* gone */ }
      const t = setTimeout(() => { try { proc.kill('SIGKILL'); } catch { /* gone */ } }, 10_000);
      const st = await exited;
      clearTimeout(t);
      finalLog = readFileSync(logFile, 'utf8');
      rmSync(join(logFile, '..'), { recursive: true, force: true });
      return st;
    },
  };
  let dead = false;
  exited.then(() => { dead = true; });
  try {
    await waitFor(async () => log().includes('database connected') && (await portAccepts(port)),
                  { what: `the gateway on port ${port}`, fatal: () => dead && `it exited; its log:\n${log()}` });
  } catch (e) {
    await handle.kill();
    throw e;
  }
  return handle;
}

/* --- the database and the C client ----------------------------------------- */

/* psql -c QUERY on the suite's database (the PG* variables): its output,
 * unaligned, tuples only, trimmed.  Throws with psql's stderr on error. */
export function sql(query) {
  const r = spawnSync('psql', ['-X', '-qAt', '-v', 'ON_ERROR_STOP=1', '-c', query], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`psql -c ${JSON.stringify(query)}: ${r.stderr || r.error || `status ${r.status}`}`);
  return r.stdout.trim();
}

/* synclog-cli (the C client) with --db FILE: {status, stdout, stderr}.
 * opts.server/token/groups add --server, --token and --group. */
export function cli(file, args, { server, token, groups = [], timeout = 2 * DEADLINE_MS } = {}) {
  const argv = ['--db', file];
  if (server) argv.push('--server', server);
  if (token) argv.push('--token', token);
  for (const g of groups) argv.push('--group', g);
  const r = spawnSync(env('SYNCLOG_CLI'), [...argv, ...args], { encoding: 'utf8', timeout });
  if (r.error) throw new Error(`synclog-cli ${args.join(' ')}: ${r.error.message}`);
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

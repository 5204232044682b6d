/*
 * web/src/worker.ts: the dedicated worker each tab's page starts
 * (dist/synclog-worker.js).  See web/DESIGN.md "One owner tab".
 *
 * Every worker of one name asks for the Web Lock "synclog:<name>".  The one
 * holding it is the owner: it opens the SQLite file in OPFS (opfs-sahpool,
 * which only one context may hold), runs the one WebSocket (sync.ts) and
 * executes every tab's requests.  The others are followers: they forward
 * their page's requests over the BroadcastChannel and relay the owner's
 * events.  When the owner goes (tab closed, crashed, frozen), the lock
 * passes to the next follower in its queue (a frozen page ends its worker,
 * see synclog.ts), which opens the file and runs
 * the requests still unanswered; writes carry op ids made by the calling
 * page, so one that the old owner did commit is not written twice.
 */

import sqlite3InitModule from '@sqlite.org/sqlite-wasm';

import { Store, type SqliteDb } from './store.js';
import { Sync, type SyncEvent } from './sync.js';
import {
  wireError,
  type Event,
  type Method,
  type OpenParams,
  type PageToWorker,
  type Peer,
  type WireError,
  type WorkerToPage,
} from './rpc.js';
import type { Status } from './types.js';

/* The worker's global scope, typed without pulling the whole WebWorker lib. */
interface WorkerScope {
  postMessage(message: WorkerToPage): void;
  close(): void;
  addEventListener(type: string, listener: (ev: MessageEvent) => void): void;
}
const scope = globalThis as unknown as WorkerScope;

/* The sahpool's util object and database, as far as this file uses them. */
interface PoolDb extends SqliteDb {
  close(): void;
}
interface Pool {
  OpfsSAHPoolDb: new (filename: string) => PoolDb;
  pauseVfs(): Pool;
  unpauseVfs(): Promise<Pool>;
  isPaused(): boolean;
}

class WorkerError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = 'SynclogError';
  }
}

type Request = { id: number } & Method;

const workerId = crypto.randomUUID();
let params: OpenParams | null = null;
let channel: BroadcastChannel | null = null;
let closing = false;

/* Follower state. */
let ownerId: string | null = null;
let announcedReady = false;
const forwarded = new Map<number, Request>(); /* page request id → request, until answered */

/* Owner state. */
let owner = false;
let sqlite3: Awaited<ReturnType<typeof sqlite3InitModule>> | null = null;
let pool: Pool | null = null;
let db: PoolDb | null = null;
let store: Store | null = null;
let sync: Sync | null = null;
let workOffline = false;
let releaseLock: (() => void) | null = null;
let lockAbort: AbortController | null = null;

let status: Omit<Status, 'owner'> = { connected: false, pending: 0, cursor: 0, lastError: null };

function toPage(m: WorkerToPage): void {
  scope.postMessage(m);
}

function toPeers(m: Peer): void {
  channel?.postMessage(m);
}

/* An event of the owner: to its own page and to every follower. */
function emit(e: Event): void {
  toPage({ kind: 'event', ...e });
  toPeers({ kind: 'event', ...e });
}

function ready(): void {
  if (announcedReady) return;
  announcedReady = true;
  toPage({ kind: 'ready', owner });
}

function fatal(error: WireError): void {
  toPage({ kind: 'fatal', error });
}

/* ------------------------------------------------------------------ */
/* Executing requests (owner)                                          */
/* ------------------------------------------------------------------ */

function refreshStatus(): void {
  if (!store) return;
  const next = {
    connected: sync?.connected ?? false,
    pending: store.pendingCount(),
    cursor: store.cursor(),
    lastError: status.lastError,
  };
  if (next.connected !== status.connected || next.pending !== status.pending ||
      next.cursor !== status.cursor || next.lastError !== status.lastError) {
    status = next;
    emit({ event: 'status', payload: status });
  }
}

function execute(req: Method): unknown {
  if (!store) throw new WorkerError('not_owner', 'this worker does not hold the database');
  switch (req.method) {
    case 'put': {
      const [table, row, fields, opId] = req.args;
      const r = store.put(table, row, fields, opId);
      if (!r.duplicate) afterLocalWrite(table);
      return { id: r.id, duplicate: r.duplicate };
    }
    case 'delete': {
      const [table, row, opId] = req.args;
      const r = store.delete(table, row, opId);
      if (!r.duplicate) afterLocalWrite(table);
      return { id: r.id, duplicate: r.duplicate };
    }
    case 'query':
      return store.query(req.args[0], req.args[1]);
    case 'tablesRead':
      return store.tablesRead(req.args[0]);
    case 'status':
      return status;
    case 'setOnline':
      workOffline = !req.args[0];
      if (workOffline) sync?.stop();
      else sync?.start();
      refreshStatus();
      return null;
  }
}

function afterLocalWrite(table: string): void {
  emit({ event: 'change', payload: { tables: [table], source: 'local' } });
  refreshStatus();
  sync?.kick();
}

/* Runs req here and answers through answer(ok, value-or-error). */
function run(req: Method, answer: (r: { ok: true; value: unknown } | { ok: false; error: WireError }) => void): void {
  let value: unknown;
  try {
    value = execute(req);
  } catch (e) {
    answer({ ok: false, error: wireError(e) });
    return;
  }
  answer({ ok: true, value });
}

/* ------------------------------------------------------------------ */
/* Page requests                                                       */
/* ------------------------------------------------------------------ */

function onPageRequest(req: Request): void {
  if (owner && store) {
    run(req, (r) => toPage({ kind: 'res', id: req.id, ...r }));
    return;
  }
  forwarded.set(req.id, req);
  if (ownerId) toPeers({ kind: 'req', from: workerId, ...req });
  else toPeers({ kind: 'who', from: workerId });
}

/* The owner changed: send what it has not answered yet to the new one. */
function resendForwarded(): void {
  for (const req of forwarded.values()) toPeers({ kind: 'req', from: workerId, ...req });
}

/* This worker became the owner: run what it had forwarded itself. */
function runForwardedHere(): void {
  const reqs = [...forwarded.values()];
  forwarded.clear();
  for (const req of reqs) run(req, (r) => toPage({ kind: 'res', id: req.id, ...r }));
}

/* ------------------------------------------------------------------ */
/* Peers                                                               */
/* ------------------------------------------------------------------ */

function onPeer(m: Peer): void {
  switch (m.kind) {
    case 'req':
      if (owner && store) {
        const { from, id } = m;
        run(m, (r) => toPeers({ kind: 'res', to: from, id, ...r }));
      }
      break;
    case 'res':
      if (m.to !== workerId || !forwarded.has(m.id)) break; /* another's, or a late duplicate */
      forwarded.delete(m.id);
      if (m.ok) toPage({ kind: 'res', id: m.id, ok: true, value: m.value });
      else toPage({ kind: 'res', id: m.id, ok: false, error: m.error });
      break;
    case 'event':
      if (!owner) toPage({ kind: 'event', event: m.event, payload: m.payload } as WorkerToPage);
      break;
    case 'owner':
      if (owner) break; /* cannot happen while we hold the lock */
      if (m.owner !== ownerId) {
        ownerId = m.owner;
        resendForwarded();
      }
      ready();
      break;
    case 'who':
      if (owner && store) toPeers({ kind: 'owner', owner: workerId });
      break;
    case 'fatal':
      if (!owner) fatal(m.error);
      break;
  }
}

/* ------------------------------------------------------------------ */
/* Ownership                                                           */
/* ------------------------------------------------------------------ */

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/*
 * Installs (or un-pauses) the pool.  Right after the previous owner's tab
 * went, its access handles may still be open for a moment: the pool then
 * fails with NoModificationAllowedError (or InvalidStateError), and we try
 * again until a generous deadline.
 */
async function openPool(name: string): Promise<Pool> {
  const deadline = Date.now() + 15000;
  for (let attempt = 0; ; attempt++) {
    try {
      if (pool && pool.isPaused()) return await pool.unpauseVfs();
      if (pool) return pool;
      if (!sqlite3) sqlite3 = await sqlite3InitModule();
      const p = (await sqlite3.installOpfsSAHPoolVfs({
        name: `synclog-${name}`,
        directory: `.synclog-${name}`,
        preserveOnInitFailure: true,
        forceReinitIfPreviouslyFailed: attempt > 0,
      } as Parameters<typeof sqlite3.installOpfsSAHPoolVfs>[0])) as unknown as Pool;
      pool = p;
      return p;
    } catch (e) {
      const busy = e instanceof Error && /NoModificationAllowed|InvalidState|locked|access handle/i.test(`${e.name} ${e.message}`);
      if (!busy || Date.now() > deadline) throw e;
      await sleep(Math.min(50 * (attempt + 1), 250));
    }
  }
}

async function becomeOwner(p: OpenParams): Promise<void> {
  const storage = (navigator as Navigator & { storage?: { getDirectory?: unknown } }).storage;
  if (!storage || typeof storage.getDirectory !== 'function')
    throw new WorkerError('storage_unavailable',
      'this browser context has no Origin Private File System (navigator.storage.getDirectory), ' +
      'so synclog cannot keep data durably: use a current Chromium, Firefox or Safari over https or localhost');
  let opened: Pool;
  try {
    opened = await openPool(p.name);
  } catch (e) {
    throw new WorkerError('storage_unavailable', `cannot open synclog's storage in OPFS: ${e instanceof Error ? e.message : String(e)}`);
  }
  db = new opened.OpfsSAHPoolDb('/synclog.db');
  /* capi: tablesRead uses SQLite's authorizer (else EXPLAIN, slower). */
  store = new Store(db, sqlite3 ? { capi: sqlite3.capi } : {});
  sync = new Sync({ url: p.url, token: p.token, groups: p.groups, store }, onSyncEvent);
  owner = true;
  ownerId = workerId;
  toPeers({ kind: 'owner', owner: workerId });
  toPage({ kind: 'role', owner: true });
  status = { ...status, lastError: null };
  refreshStatus();
  emit({ event: 'status', payload: status });
  ready();
  runForwardedHere();
  if (!workOffline) sync.start();
}

/* Gives the database up: closes the socket and the file, frees the pool's handles. */
function stepDown(): void {
  sync?.stop();
  sync = null;
  try {
    db?.close();
  } catch {
    /* closing a database that failed is not worth an error here */
  }
  db = null;
  store = null;
  if (pool && !pool.isPaused()) pool.pauseVfs();
  if (owner) toPage({ kind: 'role', owner: false });
  owner = false;
  ownerId = null;
}

function seekOwnership(p: OpenParams): void {
  lockAbort = new AbortController();
  navigator.locks
    .request(`synclog:${p.name}`, { signal: lockAbort.signal }, async () => {
      if (closing) return;
      try {
        await becomeOwner(p);
      } catch (e) {
        const error = wireError(e, 'storage_unavailable');
        stepDown();
        fatal(error);
        toPeers({ kind: 'fatal', error });
        return;
      }
      await new Promise<void>((resolve) => {
        releaseLock = resolve;
      });
      releaseLock = null;
    })
    .catch((e: unknown) => {
      if (e instanceof Error && e.name === 'AbortError') return; /* close() */
      fatal(wireError(e, 'internal'));
    });
}

/* ------------------------------------------------------------------ */
/* Sync events                                                         */
/* ------------------------------------------------------------------ */

function onSyncEvent(e: SyncEvent): void {
  switch (e.type) {
    case 'status':
      status = { ...status, connected: e.connected, lastError: e.lastError };
      if (store) status = { ...status, pending: store.pendingCount(), cursor: store.cursor() };
      emit({ event: 'status', payload: status });
      break;
    case 'change':
      emit({ event: 'change', payload: { tables: e.tables, source: 'remote' } });
      refreshStatus();
      break;
    case 'rejected':
      for (const r of e.rejections) emit({ event: 'rejected', payload: r });
      refreshStatus();
      break;
    case 'applied':
      refreshStatus();
      break;
  }
}

/* ------------------------------------------------------------------ */
/* Messages from the page                                              */
/* ------------------------------------------------------------------ */

function open(p: OpenParams): void {
  params = p;
  channel = new BroadcastChannel(`synclog:${p.name}`);
  channel.onmessage = (ev: MessageEvent) => onPeer(ev.data as Peer);
  toPeers({ kind: 'who', from: workerId });
  seekOwnership(p);
}

function release(): void {
  if (owner) stepDown();
  releaseLock?.();
  lockAbort?.abort();
  lockAbort = null;
}

scope.addEventListener('message', (ev: MessageEvent) => {
  const m = ev.data as PageToWorker;
  switch (m.kind) {
    case 'open':
      if (!params) open(m.params);
      break;
    case 'req':
      if (closing) {
        toPage({ kind: 'res', id: m.id, ok: false, error: { name: 'SynclogError', code: 'closed', message: 'synclog is closed' } });
        break;
      }
      onPageRequest(m);
      break;
    case 'close':
      closing = true;
      release();
      channel?.close();
      channel = null;
      toPage({ kind: 'closed' });
      scope.close();
      break;
  }
});

scope.addEventListener('online', () => {
  if (!workOffline) sync?.online();
});
scope.addEventListener('offline', () => sync?.offline());

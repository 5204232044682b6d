/*
 * web/src/synclog.ts: synclog in the browser, the page's API (the entry of
 * dist/synclog.js).
 *
 *   const db = await openSynclog({ url: 'wss://example.com/sync', token, groups: ['team-1'] });
 *   await db.put('issues', id, { title: 'Fix login', team: 'team-1' });   // local, durable, at once
 *   const off = db.watch('SELECT * FROM issues ORDER BY title', [], (rows) => render(rows));
 *   db.on('rejected', (r) => toast(`${r.code}: ${r.message}`));
 *
 * Every call goes to this tab's worker (dist/synclog-worker.js), which either
 * holds the database (the owner tab) or forwards to the tab that does (see
 * web/DESIGN.md).  A write resolves once its SQLite transaction committed in
 * the owner's file, never waiting on the network; the outbox then carries it
 * to the server.  The names openSynclog, put, delete, query, watch, status,
 * on and close are a contract.
 */

import type { Fields, Rejection, Status } from './types.js';
import type { Method, MethodName, OpenParams, PageToWorker, WireError, WorkerToPage } from './rpc.js';

export type { Fields, Json, Rejection, Status } from './types.js';

/* Every error the API raises: code is one of the codes below, message says what to do. */
export class SynclogError extends Error {
  constructor(
    readonly code:
      | 'invalid_argument'  /* a bad argument: the message names it */
      | 'unsupported'       /* this browser lacks Worker, Web Locks, BroadcastChannel or OPFS */
      | 'storage_unavailable' /* OPFS refused: no durable storage, nothing was written */
      | 'closed'            /* the handle was closed */
      | string,             /* a code the store reports: unknown_table, unknown_column, ... */
    message: string,
  ) {
    super(message);
    this.name = 'SynclogError';
  }
}

export interface OpenOptions {
  /* The gateway's WebSocket URL: ws:// or wss://, or http(s):// or a path, which are turned into ws(s)://. */
  url: string;
  /* A token from synclog.create_token. */
  token: string;
  /* The groups to sync (a subset of the token's). */
  groups: string[];
  /* The local database's name (default "default"): tabs of one origin with the same name share it. */
  name?: string;
  /* Where dist/synclog-worker.js is, if not next to this module. */
  workerUrl?: string | URL;
}

export interface ChangeEvent {
  tables: string[];
  source: 'local' | 'remote';
}

interface Events {
  status: Status;
  change: ChangeEvent;
  rejected: Rejection;
}
export type EventName = keyof Events;

const EVENT_NAMES: readonly EventName[] = ['status', 'change', 'rejected'];
const NAME_RE = /^[A-Za-z0-9_-]{1,64}$/;

function invalid(message: string): SynclogError {
  return new SynclogError('invalid_argument', message);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function checkJson(v: unknown, path: string, depth = 0): void {
  if (depth > 64) throw invalid(`${path} is nested more than 64 levels deep`);
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return;
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw invalid(`${path} is ${v}, which JSON cannot carry`);
    return;
  }
  if (Array.isArray(v)) {
    v.forEach((x, i) => checkJson(x, `${path}[${i}]`, depth + 1));
    return;
  }
  if (isPlainObject(v)) {
    for (const [k, x] of Object.entries(v)) checkJson(x, `${path}.${k}`, depth + 1);
    return;
  }
  throw invalid(`${path} is ${typeof v === 'object' ? v.constructor?.name ?? 'an object' : typeof v}, not a JSON value`);
}

function checkTableRow(fn: string, table: unknown, id: unknown): void {
  if (typeof table !== 'string' || table === '')
    throw invalid(`${fn}: table must be a non-empty string, not ${JSON.stringify(table) ?? String(table)}`);
  if (typeof id !== 'string' || id === '')
    throw invalid(`${fn}: id must be a non-empty string (the row's primary key as text), not ${JSON.stringify(id) ?? String(id)}`);
}

function socketUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url, typeof location !== 'undefined' ? location.href : undefined);
  } catch {
    throw invalid(`url ${JSON.stringify(url)} is not a URL`);
  }
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  if (u.protocol !== 'ws:' && u.protocol !== 'wss:')
    throw invalid(`url ${JSON.stringify(url)} must be ws://, wss://, http:// or https://`);
  return u.href;
}

function fromWire(e: WireError): SynclogError {
  return new SynclogError(e.code, e.message);
}

/*
 * Opens (or creates) the local database and starts syncing.  Resolves once
 * this tab can read and write: its worker holds the database, or knows the
 * tab that does.  Rejects with SynclogError: invalid_argument, unsupported,
 * storage_unavailable.
 */
export async function openSynclog(options: OpenOptions): Promise<Synclog> {
  if (!isPlainObject(options)) throw invalid('openSynclog needs an options object {url, token, groups}');
  const { token, groups } = options;
  if (typeof options.url !== 'string' || options.url === '') throw invalid('url must be the gateway\'s WebSocket URL');
  const url = socketUrl(options.url);
  if (typeof token !== 'string' || token === '') throw invalid('token must be a non-empty string (synclog.create_token)');
  if (!Array.isArray(groups) || groups.length === 0 || !groups.every((g) => typeof g === 'string' && g !== ''))
    throw invalid('groups must be a non-empty array of non-empty strings');
  const name = options.name ?? 'default';
  if (typeof name !== 'string' || !NAME_RE.test(name))
    throw invalid(`name must be 1-64 letters, digits, "_" or "-", not ${JSON.stringify(name)}`);
  for (const [what, ok] of [
    ['Worker', typeof Worker !== 'undefined'],
    ['BroadcastChannel', typeof BroadcastChannel !== 'undefined'],
    ['the Web Locks API', typeof navigator !== 'undefined' && !!navigator.locks],
  ] as const)
    if (!ok) throw new SynclogError('unsupported', `this browser has no ${what}, which synclog needs`);

  const workerUrl = options.workerUrl ?? new URL('./synclog-worker.js', import.meta.url);
  const handle = new Synclog(workerUrl, { url, token, groups: [...groups], name });
  await handle._open();
  return handle;
}

type Pending = { resolve: (v: unknown) => void; reject: (e: Error) => void };
type Call = Pending & { method: MethodName; args: Method['args'] };

export class Synclog {
  private nextId = 1;
  private readonly calls = new Map<number, Call>();
  private readonly listeners: { [K in EventName]: Set<(e: Events[K]) => void> } = {
    status: new Set(),
    change: new Set(),
    rejected: new Set(),
  };
  private current: Status = { connected: false, pending: 0, cursor: 0, owner: false, lastError: null };
  private closed = false;
  private opened: Pending | null = null;
  private closedWait: (() => void) | null = null;
  private worker: Worker;
  private frozen = false;
  /*
   * A frozen page's worker is frozen with it, and would keep the lock and
   * the file's access handles from every other tab: the page ends it (as a
   * closed tab would) and starts a new one, a follower at first, when it
   * resumes.  Calls unanswered meanwhile are sent again to the new worker;
   * writes carry their op ids, so one the old worker committed is not
   * written twice.
   */
  private readonly onFreeze = () => {
    if (this.closed || this.frozen) return;
    this.frozen = true;
    this.worker.terminate();
    this.setStatus({ ...this.current, owner: false, connected: false });
  };
  private readonly onResume = () => {
    if (this.closed || !this.frozen) return;
    this.frozen = false;
    this.worker = this.spawn();
    this.post({ kind: 'open', params: this.params });
    for (const [id, c] of this.calls) this.post({ kind: 'req', id, method: c.method, args: c.args } as PageToWorker);
  };

  /* @internal: use openSynclog. */
  constructor(private readonly workerUrl: string | URL, private readonly params: OpenParams) {
    this.worker = this.spawn();
    if (typeof document !== 'undefined') {
      document.addEventListener('freeze', this.onFreeze);
      document.addEventListener('resume', this.onResume);
    }
  }

  private spawn(): Worker {
    const worker = new Worker(this.workerUrl, { type: 'module', name: `synclog:${this.params.name}` });
    worker.onmessage = (ev: MessageEvent) => {
      if (worker === this.worker) this.onMessage(ev.data as WorkerToPage);
    };
    worker.onerror = (ev: ErrorEvent) => {
      if (worker !== this.worker) return;
      const e = new SynclogError('internal', `synclog's worker failed: ${ev.message || 'it could not be loaded'}`);
      this.opened?.reject(e);
      this.opened = null;
      this.failAll(e);
    };
    return worker;
  }

  /* @internal */
  _open(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.opened = { resolve: () => resolve(), reject };
      this.post({ kind: 'open', params: this.params });
    });
  }

  private post(m: PageToWorker): void {
    /* Frozen: the call waits in this.calls and goes to the next worker. */
    if (!this.frozen) this.worker.postMessage(m);
  }

  private onMessage(m: WorkerToPage): void {
    switch (m.kind) {
      case 'ready':
        this.current = { ...this.current, owner: m.owner };
        this.opened?.resolve(undefined);
        this.opened = null;
        if (!m.owner) this.call('status', []).then((s) => this.setStatus(s as Omit<Status, 'owner'>), () => {});
        break;
      case 'fatal': {
        const e = fromWire(m.error);
        if (this.opened) {
          this.opened.reject(e);
          this.opened = null;
          this.shutdown();
        } else {
          this.setStatus({ ...this.current, lastError: { code: e.code, message: e.message } });
        }
        break;
      }
      case 'res': {
        const p = this.calls.get(m.id);
        if (!p) break;
        this.calls.delete(m.id);
        if (m.ok) p.resolve(m.value);
        else p.reject(fromWire(m.error));
        break;
      }
      case 'role':
        this.setStatus({ ...this.current, owner: m.owner });
        break;
      case 'event':
        if (m.event === 'status') this.setStatus(m.payload);
        else if (m.event === 'change') this.fire('change', m.payload);
        else this.fire('rejected', m.payload);
        break;
      case 'closed':
        this.closedWait?.();
        break;
    }
  }

  private setStatus(s: Omit<Status, 'owner'> & { owner?: boolean }): void {
    this.current = {
      connected: s.connected,
      pending: s.pending,
      cursor: s.cursor,
      lastError: s.lastError,
      owner: s.owner ?? this.current.owner,
    };
    this.fire('status', this.status);
  }

  private fire<K extends EventName>(name: K, payload: Events[K]): void {
    for (const cb of [...this.listeners[name]]) {
      try {
        cb(payload);
      } catch (e) {
        /* One listener's bug must not stop the others, nor synclog. */
        setTimeout(() => {
          throw e;
        });
      }
    }
  }

  private call(method: MethodName, args: Method['args']): Promise<unknown> {
    if (this.closed) return Promise.reject(new SynclogError('closed', 'this synclog handle is closed'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.calls.set(id, { resolve, reject, method, args });
      this.post({ kind: 'req', id, method, args } as PageToWorker);
    });
  }

  private failAll(e: Error): void {
    for (const p of this.calls.values()) p.reject(e);
    this.calls.clear();
  }

  /*
   * Writes fields into row id of table, locally and durably, and queues the
   * op for the server.  Resolves with the op's id (what on('rejected')
   * reports if the server refuses it) once the write is in the local file.
   */
  async put(table: string, id: string, fields: Fields): Promise<string> {
    checkTableRow('put', table, id);
    if (!isPlainObject(fields)) throw invalid('put: fields must be a plain object of column → value');
    checkJson(fields, 'put: fields');
    const opId = crypto.randomUUID();
    const r = (await this.call('put', [table, id, fields, opId])) as { id: string };
    return r.id;
  }

  /* Deletes row id of table, as put does.  Resolves with the op's id. */
  async delete(table: string, id: string): Promise<string> {
    checkTableRow('delete', table, id);
    const opId = crypto.randomUUID();
    const r = (await this.call('delete', [table, id, opId])) as { id: string };
    return r.id;
  }

  /* Runs one read-only SQL statement on the local database: rows as objects. */
  async query<T = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<T[]> {
    if (typeof sql !== 'string' || sql.trim() === '') throw invalid('query: sql must be a non-empty string');
    if (!Array.isArray(params)) throw invalid('query: params must be an array');
    return (await this.call('query', [sql, params])) as T[];
  }

  /*
   * A live query: calls cb with the rows now, and again whenever a table the
   * statement reads changes (a local write, in any tab, or the server's).
   * Returns the function that stops it.  onError (optional) gets a failing
   * run's error; the watch stays and runs again on the next change.
   */
  watch<T = Record<string, unknown>>(sql: string, params: unknown[], cb: (rows: T[]) => void,
                                     onError?: (e: Error) => void): () => void {
    if (typeof sql !== 'string' || sql.trim() === '') throw invalid('watch: sql must be a non-empty string');
    if (!Array.isArray(params)) throw invalid('watch: params must be an array');
    if (typeof cb !== 'function') throw invalid('watch: cb must be a function');
    let tables: Set<string> | null = null; /* null: not known yet, any change reruns */
    let active = true;
    let running = false;
    let dirty = false;
    const runOnce = async (): Promise<void> => {
      if (running) {
        dirty = true;
        return;
      }
      running = true;
      try {
        do {
          dirty = false;
          try {
            if (!tables) tables = new Set((await this.call('tablesRead', [sql])) as string[]);
            const rows = (await this.call('query', [sql, params])) as T[];
            if (active && !dirty) cb(rows);
          } catch (e) {
            if (active && !this.closed) onError?.(e instanceof Error ? e : new Error(String(e)));
          }
        } while (dirty && active);
      } finally {
        running = false;
      }
    };
    const off = this.on('change', (c) => {
      if (!tables || c.tables.some((t) => tables!.has(t))) void runOnce();
    });
    void runOnce();
    return () => {
      active = false;
      off();
    };
  }

  /* Connected, pending ops, cursor, whether this tab holds the database, last error. */
  get status(): Status {
    return { ...this.current, lastError: this.current.lastError ? { ...this.current.lastError } : null };
  }

  /* Subscribes to 'status', 'change' or 'rejected'; returns the unsubscribe function. */
  on<K extends EventName>(event: K, cb: (e: Events[K]) => void): () => void {
    if (!EVENT_NAMES.includes(event)) throw invalid(`on: unknown event ${JSON.stringify(event)}; events are ${EVENT_NAMES.join(', ')}`);
    if (typeof cb !== 'function') throw invalid('on: cb must be a function');
    const set = this.listeners[event] as Set<(e: Events[K]) => void>;
    set.add(cb);
    return () => {
      set.delete(cb);
    };
  }

  /*
   * Stops syncing in this tab and frees the database for another tab.  What
   * was written is kept; calls after close reject with code "closed".
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 5000);
      this.closedWait = () => {
        clearTimeout(timer);
        resolve();
      };
      this.post({ kind: 'close' });
    });
    this.shutdown();
  }

  private shutdown(): void {
    this.closed = true;
    this.worker.terminate();
    this.failAll(new SynclogError('closed', 'this synclog handle is closed'));
    if (typeof document !== 'undefined') {
      document.removeEventListener('freeze', this.onFreeze);
      document.removeEventListener('resume', this.onResume);
    }
  }

  /* "Work offline": false closes the socket and keeps writing locally; true reconnects. */
  async setOnline(online: boolean): Promise<void> {
    if (typeof online !== 'boolean') throw invalid('setOnline: online must be true or false');
    await this.call('setOnline', [online]);
  }
}


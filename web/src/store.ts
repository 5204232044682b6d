/*
 * web/src/store.ts: the browser client's durable local store on one SQLite
 * database (sqlite-wasm's oo1 API): the app's tables, confirmed state, the
 * outbox, metadata and snapshot staging.  client/store.c, client/outbox.c
 * and client/rebase.c ported; client/store.h documents every decision and
 * the C client stays the reference.  No network.
 *
 * Words, as in DESIGN.md: confirmed state is what the server said, with
 * field clocks (_synclog_confirmed); pending ops are this client's ops in the
 * outbox (_synclog_outbox), acked or not, until their change arrives; the
 * visible row, written into the app's table, is mergeVisible over the two.
 *
 * Internal tables, as the C store's: _synclog_meta (client_id, cursor, hlc,
 * tables, welcomed, outbox_seq), _synclog_confirmed, _synclog_outbox (keyed
 * by seq; lookups by op id and by row come from an index kept in memory, as
 * outbox.c's, rebuilt whenever the file may have changed under it),
 * _synclog_snapshot; and one of the browser's own: _synclog_done, the ids of
 * the most recent 10,000 ops that left the outbox (confirmed or rejected),
 * so that a write retried with the same op id is answered as the first time
 * (DESIGN.md "One owner tab").
 *
 * Transactions: every method that changes anything runs in ONE SQLite
 * transaction (tx(): BEGIN IMMEDIATE ... COMMIT).  On any error it is rolled
 * back and what the store keeps in memory (cursor, clock, tables, welcomed,
 * the outbox's high-water seq) is restored and the outbox index rebuilt, so
 * a failed call changes nothing, in the file or in memory.  The browser's
 * VFS (opfs-sahpool) has no WAL: the file keeps a rollback journal, with
 * synchronous=FULL so that a commit that returned survives a crash.
 *
 * Identifiers of the app's tables come from welcome.tables, or before any
 * welcome from the table and field names of writes (provisional tables), and
 * are always written quoted (qident); values are always bound parameters.
 *
 * Errors: StoreError with a code: invalid_argument (the caller's mistake),
 * unknown_table / unknown_column (a write the tables do not allow),
 * bad_frame (a server frame the store cannot take), storage (SQLite failed).
 *
 * Where this port differs from C, on purpose: a local write recomputes its
 * row from confirmed state and every pending op (C's visible_local is a
 * shortcut to the same result, which tests/client/test_store.c's model test
 * holds to this rule); visible rows are written with an UPSERT that only
 * writes when a value differs, so that the store can say which tables
 * changed (live queries); there is no fast path for changes frames.
 */
import { HlcClock, HlcError, formatHlc, isHlc, parseHlc } from './hlc.js';
import {
  MergeError,
  type PendingOp,
  type Row,
  cloneJson,
  cloneObject,
  clientIdOk,
  isObject,
  mergeVisible,
  own,
  setOwn,
  utf8Length,
} from './merge.js';
import type {
  AckFrame,
  ChangesFrame,
  FieldClock,
  Fields,
  Json,
  OpKind,
  OutboxOp,
  Rejection,
  SnapshotFrame,
  Tables,
} from './types.js';

/* ---------------------------------------------------------------- sqlite-wasm, typed */

/* A value SQLite hands back or takes as a parameter. */
export type SqlValue = null | number | string | bigint | Uint8Array;

/*
 * The part of sqlite-wasm's oo1 API the store uses (oo1.DB and oo1.Stmt;
 * an OpfsSAHPoolDb is an oo1.DB).  sqlite-wasm's own types are loose; this
 * is the one place that says what the store relies on.
 */
export interface SqliteStmt {
  bind(values: readonly SqlValue[]): unknown;
  step(): boolean;
  get(index: number): unknown;
  getColumnNames(target?: string[]): string[];
  readonly columnCount: number;
  reset(alsoClearBinds?: boolean): unknown;
  finalize(): unknown;
  isReadOnly(): boolean;
}

export interface SqliteDb {
  exec(sql: string): unknown;
  prepare(sql: string): SqliteStmt;
  changes(): number;
  readonly pointer?: unknown;
}

/*
 * sqlite3.capi's authorizer, for tablesRead (an oo1.DB does not lead back to
 * the module's capi, so the caller passes it in StoreOptions.capi).
 */
export type AuthorizerFn = (pV: unknown, code: number, s0: string | 0 | null, s1: string | 0 | null,
                            s2: string | 0 | null, s3: string | 0 | null) => number; /* 0: a NULL char* */
export interface SqliteCapi {
  sqlite3_set_authorizer(db: unknown, fn: AuthorizerFn | 0 | null, pUser: unknown): number;
}

const SQLITE_OK = 0;
const SQLITE_READ = 20;
const SQLITE_MISMATCH = 20; /* a result code (not an authorizer action) */

/* ---------------------------------------------------------------- errors and options */

export type StoreErrorCode = 'invalid_argument' | 'unknown_table' | 'unknown_column' | 'bad_frame' | 'storage';

export class StoreError extends Error {
  override name = 'StoreError';
  code: StoreErrorCode;

  constructor(code: StoreErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

export interface StoreOptions {
  now?: () => number;          /* wall clock, Unix ms; Date.now by default */
  randomUUID?: () => string;   /* UUID v4 text; crypto.randomUUID by default */
  /*
   * sqlite3.capi of the module that opened db.  With it tablesRead() uses
   * SQLite's authorizer; without it, EXPLAIN's OpenRead root pages.
   */
  capi?: object; /* sqlite3.capi; object, since sqlite-wasm's .d.ts types the authorizer narrower than its code */
}

/* ---------------------------------------------------------------- constants */

const MAX_SKEW_MS = 60000n;  /* client/store_int.h SL_MAX_SKEW_MS */
const DONE_KEEP = 10000;     /* finished op ids kept for idempotent retries */
const ZERO_HLC = '0000000000000000';
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/*
 * The internal tables, as client/store.c's schema_sql, and _synclog_done:
 * n orders the finished ops so that the oldest are dropped first.
 */
const SCHEMA_SQL =
  'CREATE TABLE IF NOT EXISTS _synclog_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);' +
  'CREATE TABLE IF NOT EXISTS _synclog_confirmed (tbl TEXT NOT NULL, row TEXT NOT NULL,' +
  " fields TEXT, clocks TEXT NOT NULL DEFAULT '{}', deleted INTEGER NOT NULL DEFAULT 0," +
  ' PRIMARY KEY (tbl, row)) WITHOUT ROWID;' +
  'CREATE TABLE IF NOT EXISTS _synclog_outbox (seq INTEGER PRIMARY KEY,' +
  ' op_id TEXT NOT NULL, tbl TEXT NOT NULL, row TEXT NOT NULL, kind TEXT NOT NULL,' +
  " fields TEXT NOT NULL DEFAULT '{}', hlc TEXT NOT NULL, acked INTEGER NOT NULL DEFAULT 0);" +
  'CREATE TABLE IF NOT EXISTS _synclog_snapshot (tbl TEXT NOT NULL, row TEXT NOT NULL,' +
  ' fields TEXT NOT NULL, clocks TEXT NOT NULL, PRIMARY KEY (tbl, row));' +
  'CREATE TABLE IF NOT EXISTS _synclog_done (n INTEGER PRIMARY KEY, op_id TEXT NOT NULL UNIQUE,' +
  ' hlc TEXT NOT NULL);';

/* A table description as stored: welcome.tables' entries, or a provisional table's. */
interface TableDef {
  pk: string;
  group?: string;
  columns: Record<string, string>;
  provisional?: boolean;
}

/* One pending op in the outbox index (outbox.c's sls_obop). */
interface ObOp {
  seq: number;
  table: string;
  row: string;
  isDelete: boolean;
  hlc: string;
}

/* The pending ops of one row, in outbox order (outbox.c's sls_obrow). */
interface ObRow {
  seqs: number[];
}

/* What a transaction restores when it fails (store_int.h's saved). */
interface Saved {
  cursor: number;
  clockLast: bigint;
  skewRefusals: number;
  tables: Record<string, TableDef> | null;
  welcomed: boolean;
  lastSeq: number;
}

/* The SQL identifier for name: in double quotes, quotes doubled (sls_qident). */
function qident(name: string): string {
  return '"' + name.replace(/"/g, '""') + '"';
}

/* The key of (table, row) in the maps: unambiguous whatever the names hold. */
function rowKey(table: string, row: string): string {
  return JSON.stringify([table, row]);
}

/* True when name may be an app table's: not empty and not ours or SQLite's. */
function tableNameOk(name: string): boolean {
  return name !== '' && !name.startsWith('_synclog') && !name.toLowerCase().startsWith('sqlite_');
}

/*
 * The SQLite column type for an SQL type name of welcome.tables (store.c's
 * affinity): integer types and booleans → INTEGER, real/double/numeric →
 * REAL, arrays (…[]) and everything else (json, jsonb, text, …) → TEXT.
 * "numeric(10,2)" is numeric; case does not matter.
 */
function affinity(sqlType: string): string {
  if (sqlType.includes('['))
    return 'TEXT'; /* an array travels as JSON text */
  const word = sqlType.split('(')[0]!.trim().toLowerCase();
  if (['integer', 'int', 'int2', 'int4', 'int8', 'smallint', 'bigint', 'serial', 'bigserial',
       'smallserial', 'boolean', 'bool'].includes(word))
    return 'INTEGER';
  if (['real', 'double', 'double precision', 'numeric', 'decimal', 'float', 'float4',
       'float8'].includes(word))
    return 'REAL';
  return 'TEXT';
}

/*
 * A JSON value as the SQLite value a visible row holds (rebase.c's
 * bind_json): text, numbers and null as they are, booleans as 1/0, objects
 * and arrays as their JSON text.
 */
function sqlOf(v: Json | undefined): SqlValue {
  if (v === undefined || v === null)
    return null;
  if (typeof v === 'boolean')
    return v ? 1 : 0;
  if (typeof v === 'string' || typeof v === 'number')
    return v;
  return JSON.stringify(v);
}

/* True when s is text that can be UTF-8 (no lone surrogate). */
function utf8Ok(s: string): boolean {
  return utf8Length(s) >= 0;
}

/*
 * True when sql holds at most one statement: after the first ';' outside
 * strings, quoted identifiers and comments, only blanks, comments and ';'
 * may follow.  (oo1's prepare() prepares the first statement and drops the
 * rest silently: this is how the rest is refused.)  Also returns the first
 * keyword, upper-cased.
 */
function scanSql(sql: string): { single: boolean; first: string } {
  let i = 0;
  let first = '';
  let ended = false; /* a ';' ended the first statement */
  const n = sql.length;
  while (i < n) {
    const c = sql[i]!;
    if (c === '-' && sql[i + 1] === '-') {
      const e = sql.indexOf('\n', i);
      i = e < 0 ? n : e + 1;
    } else if (c === '/' && sql[i + 1] === '*') {
      const e = sql.indexOf('*/', i + 2);
      i = e < 0 ? n : e + 2;
    } else if (/\s/.test(c)) {
      i++;
    } else if (c === ';') {
      ended = true;
      i++;
    } else if (ended) {
      return { single: false, first };
    } else if (c === "'" || c === '"' || c === '`' || c === '[') {
      const close = c === '[' ? ']' : c;
      let j = i + 1;
      for (;;) {
        const e = sql.indexOf(close, j);
        if (e < 0) { j = n; break; }
        if (close !== ']' && sql[e + 1] === close) { j = e + 2; continue; } /* a doubled quote */
        j = e + 1;
        break;
      }
      i = j;
    } else {
      if (first === '') {
        const m = /^[A-Za-z_]+/.exec(sql.slice(i));
        first = m ? m[0].toUpperCase() : c;
        i += m ? m[0].length : 1;
      } else
        i++;
    }
  }
  return { single: true, first };
}

/* ---------------------------------------------------------------- the store */

export class Store {
  readonly clientId: string;

  private readonly db: SqliteDb;
  private readonly nowMs: () => number;
  private readonly newUuid: () => string;
  private readonly capi: SqliteCapi | undefined;
  private readonly stmts = new Map<string, SqliteStmt>(); /* prepared statements by SQL text */

  private cursorV = 0;
  private clock = new HlcClock(0n, MAX_SKEW_MS);
  private tablesV: Record<string, TableDef> | null = null;
  private welcomedV = false;
  private lastSeq = 0;                       /* greatest outbox seq given out or seen; never reused */
  private snapGroups: (string | number)[] | null = null;
  private snapOpen = false;

  /* The outbox index (store_int.h): derived from the file, rebuilt when obxOk is false. */
  private obxOps = new Map<string, ObOp>();
  private obxRows = new Map<string, ObRow>();
  private obxOk = false;
  private dataVersion = -1;                  /* PRAGMA data_version when the index was last checked */
  private inTx = false;

  /*
   * Takes an open oo1 database: sets the rollback journal (a WAL or no
   * journal is turned into DELETE) and synchronous=FULL, creates the
   * internal tables when absent, picks the client_id (a random UUID v4) the
   * first time and loads what the store keeps in memory.  Throws StoreError
   * storage when the database cannot be read or written.
   */
  constructor(db: unknown, opts: StoreOptions = {}) {
    /* unknown, not SqliteDb: sqlite-wasm's .d.ts lacks Stmt.isReadOnly, which its code has. */
    if (!isObject(db) || typeof (db as { prepare?: unknown }).prepare !== 'function')
      throw new StoreError('invalid_argument', 'Store needs an open sqlite-wasm oo1.DB');
    this.db = db as unknown as SqliteDb;
    this.nowMs = opts.now ?? (() => Date.now());
    this.newUuid = opts.randomUUID ?? (() => globalThis.crypto.randomUUID());
    if (opts.capi !== undefined &&
        typeof (opts.capi as { sqlite3_set_authorizer?: unknown }).sqlite3_set_authorizer !== 'function')
      throw new StoreError('invalid_argument', 'StoreOptions.capi has no sqlite3_set_authorizer');
    this.capi = opts.capi as SqliteCapi | undefined;
    let clientId = '';
    try {
      const mode = String(this.value('PRAGMA journal_mode'));
      if (mode === 'wal' || mode === 'off')
        this.db.exec('PRAGMA journal_mode=DELETE');
      this.db.exec('PRAGMA synchronous=FULL');
    } catch (e) {
      throw this.dbError(e, 'set the journal mode');
    }
    this.tx(() => {
      this.exec(SCHEMA_SQL, 'create the internal tables');
      const have = this.metaGet('client_id');
      if (have === null) {
        clientId = this.uuid();
        this.metaSet('client_id', clientId);
        this.metaSet('cursor', '0');
        this.metaSet('hlc', ZERO_HLC);
      } else
        clientId = have;
      this.reload();
    }, true);
    this.clientId = clientId;
  }

  /* ------------------------------------------------------------ accessors */

  /* The cursor: the highest seq whose effects confirmed state holds (0: none). */
  cursor(): number {
    return this.cursorV;
  }

  /* The HLC floor: the greatest clock this client has used or seen, 16 hex digits. */
  hlc(): string {
    return formatHlc(this.clock.last);
  }

  /* The stored description of the tables (welcome.tables, plus provisional tables), a copy. */
  tables(): Tables {
    return (this.tablesV ? cloneJson(this.tablesV) : {}) as unknown as Tables;
  }

  /* True once a welcome.tables was stored (ensureTables). */
  welcomed(): boolean {
    return this.welcomedV;
  }

  /* ------------------------------------------------------------ SQLite helpers */

  /* A cached prepared statement for sql; throws StoreError storage. */
  private stmt(sql: string): SqliteStmt {
    let st = this.stmts.get(sql);
    if (st === undefined) {
      try {
        st = this.db.prepare(sql);
      } catch (e) {
        throw this.dbError(e, 'prepare');
      }
      this.stmts.set(sql, st);
    }
    return st;
  }

  /*
   * Runs sql with bind and returns its rows as arrays, the statement reset
   * before returning (no statement is ever left mid-step, so the helpers
   * nest freely).  A failure is StoreError storage naming what, but
   * SQLITE_MISMATCH, which mismatch (when given) turns into a message.
   */
  private rows(sql: string, bind: readonly SqlValue[], what: string, mismatch?: string): unknown[][] {
    const st = this.stmt(sql);
    const out: unknown[][] = [];
    try {
      if (bind.length > 0)
        st.bind(bind);
      while (st.step()) {
        const r: unknown[] = [];
        for (let i = 0; i < st.columnCount; i++)
          r.push(st.get(i));
        out.push(r);
      }
    } catch (e) {
      if (mismatch !== undefined && resultCode(e) === SQLITE_MISMATCH)
        throw new StoreError('invalid_argument', mismatch, { cause: e });
      throw this.dbError(e, what);
    } finally {
      try {
        st.reset(true);
      } catch {
        /* the error, if any, was reported by step */
      }
    }
    return out;
  }

  /* Runs a statement that returns no row; returns the number of rows it changed. */
  private run(sql: string, bind: readonly SqlValue[], what: string, mismatch?: string): number {
    this.rows(sql, bind, what, mismatch);
    return this.db.changes();
  }

  /* The first column of the first row, or undefined for none. */
  private value(sql: string, bind: readonly SqlValue[] = [], what = 'read'): unknown {
    const r = this.rows(sql, bind, what);
    return r.length > 0 ? r[0]![0] : undefined;
  }

  /* Runs sql (no parameters, any number of statements). */
  private exec(sql: string, what: string): void {
    try {
      this.db.exec(sql);
    } catch (e) {
      throw this.dbError(e, what);
    }
  }

  /* StoreError storage with SQLite's message, prefixed by what was being done. */
  private dbError(e: unknown, what: string): StoreError {
    if (e instanceof StoreError)
      return e;
    return new StoreError('storage', `${what}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }

  private metaGet(key: string): string | null {
    const v = this.value('SELECT value FROM _synclog_meta WHERE key = ?', [key], 'read _synclog_meta');
    return v === undefined || v === null ? null : String(v);
  }

  private metaSet(key: string, value: string): void {
    this.run('INSERT OR REPLACE INTO _synclog_meta (key, value) VALUES (?, ?)', [key, value], 'write _synclog_meta');
  }

  /*
   * Stores the outbox's seq high-water, by whatever removes ops from the
   * outbox: a seq is then either still in the outbox or at most the stored
   * value, so it is never given out again (sync.ts pushes what lies above
   * the last seq it sent).
   */
  private saveOutboxSeq(): void {
    this.metaSet('outbox_seq', String(this.lastSeq));
  }

  private saveClock(): void {
    this.metaSet('hlc', formatHlc(this.clock.last));
  }

  /* A fresh UUID v4 from the configured source, checked. */
  private uuid(): string {
    const id = this.newUuid();
    if (typeof id !== 'string' || !UUID_RE.test(id))
      throw new StoreError('storage', `randomUUID gave ${JSON.stringify(id)}, not a lowercase UUID`);
    return id;
  }

  private wall(): number {
    return Math.floor(this.nowMs());
  }

  /* ------------------------------------------------------------ transactions */

  /*
   * Runs fn in one write transaction (sls_tx_begin/sls_tx_end): BEGIN
   * IMMEDIATE; the in-memory state reloaded when the file changed under it
   * (another connection's commit, or a rollback of ours); then COMMIT, or on
   * any error ROLLBACK with the in-memory state restored, and the error
   * thrown again (SQLite's as StoreError storage).  init (the constructor's
   * call, before the internal tables exist) skips the check: its fn reloads.
   */
  private tx<T>(fn: () => T, init = false): T {
    if (this.inTx)
      throw new StoreError('invalid_argument', 'a store call made from inside another');
    const sv: Saved = {
      cursor: this.cursorV,
      clockLast: this.clock.last,
      skewRefusals: this.clock.skewRefusals,
      tables: this.tablesV,
      welcomed: this.welcomedV,
      lastSeq: this.lastSeq,
    };
    this.exec('BEGIN IMMEDIATE', 'begin');
    this.inTx = true;
    try {
      const dv = Number(this.value('PRAGMA data_version'));
      if (!init && (!this.obxOk || dv !== this.dataVersion))
        this.reload();
      this.dataVersion = dv;
      const out = fn();
      this.exec('COMMIT', 'commit');
      return out;
    } catch (e) {
      try {
        this.db.exec('ROLLBACK');
      } catch {
        /* no transaction left (SQLite rolled it back itself) */
      }
      this.cursorV = sv.cursor;
      this.clock.last = sv.clockLast;
      this.clock.skewRefusals = sv.skewRefusals;
      this.tablesV = sv.tables;
      this.welcomedV = sv.welcomed;
      this.lastSeq = sv.lastSeq;
      this.obxOk = false; /* rebuilt from the file at the next begin */
      if (e instanceof StoreError)
        throw e;
      if (e instanceof MergeError)
        throw new StoreError('storage', `corrupt local state: ${e.message}`, { cause: e });
      if (e instanceof HlcError)
        throw new StoreError('storage', `the clock cannot advance: ${e.message}`, { cause: e });
      throw this.dbError(e, 'transaction');
    } finally {
      this.inTx = false;
    }
  }

  /*
   * Reads what the store keeps in memory from the file, inside a
   * transaction: cursor, clock floor (never moving the clock back), tables,
   * whether a welcome came, and the outbox index (sls_reload).
   */
  private reload(): void {
    this.cursorV = Number(this.metaGet('cursor') ?? '0') || 0;
    let floor = 0n;
    const h = this.metaGet('hlc');
    if (h !== null && isHlc(h))
      floor = parseHlc(h);
    /*
     * A put does not rewrite the stored floor: its clock is in the outbox, in
     * the same transaction.  Whatever removes ops from the outbox stores the
     * floor first, so the floor is the greater of the two.
     */
    const maxOut = this.value('SELECT max(hlc) FROM _synclog_outbox');
    if (isHlc(maxOut) && parseHlc(maxOut) > floor)
      floor = parseHlc(maxOut);
    if (this.clock.last > floor)
      floor = this.clock.last;
    this.clock.last = floor;
    const seq = Number(this.metaGet('outbox_seq') ?? '0') || 0;
    if (seq > this.lastSeq)
      this.lastSeq = seq;
    const t = this.metaGet('tables');
    let tables: unknown = null;
    try {
      tables = t === null ? null : JSON.parse(t);
    } catch {
      tables = null;
    }
    this.tablesV = isObject(tables) ? (tables as Record<string, TableDef>) : null;
    this.welcomedV = this.metaGet('welcomed') !== null;
    this.obxLoad();
  }

  /* ------------------------------------------------------------ the outbox index */

  /* Rebuilds the index from _synclog_outbox (sls_obx_load). */
  private obxLoad(): void {
    this.obxOps = new Map();
    this.obxRows = new Map();
    this.obxOk = false;
    for (const r of this.rows('SELECT seq, op_id, tbl, row, kind, hlc FROM _synclog_outbox ORDER BY seq', [],
                              'read the outbox'))
      this.obxAdd(Number(r[0]), String(r[1]), String(r[2]), String(r[3]), r[4] === 'delete', String(r[5]));
    this.obxOk = true;
  }

  /* Adds an op (seq above every seq of its row) to the index. */
  private obxAdd(seq: number, opId: string, table: string, row: string, isDelete: boolean, hlc: string): void {
    const key = rowKey(table, row);
    let r = this.obxRows.get(key);
    if (r === undefined) {
      r = { seqs: [] };
      this.obxRows.set(key, r);
    }
    r.seqs.push(seq);
    this.obxOps.set(opId, { seq, table, row, isDelete, hlc });
    if (seq > this.lastSeq)
      this.lastSeq = seq;
  }

  /* Removes op opId from the index. */
  private obxRemove(opId: string): void {
    const op = this.obxOps.get(opId);
    if (op === undefined)
      return;
    this.obxOps.delete(opId);
    const key = rowKey(op.table, op.row);
    const r = this.obxRows.get(key);
    if (r !== undefined) {
      r.seqs = r.seqs.filter((s) => s !== op.seq);
      if (r.seqs.length === 0)
        this.obxRows.delete(key);
    }
  }

  /*
   * Removes opId from the outbox and its index (nothing when absent) and
   * records it among the finished ops, for idempotent retries.  Returns
   * whether it was there.
   */
  private outboxRemove(opId: string): boolean {
    const op = this.obxOps.get(opId);
    if (op === undefined)
      return false;
    this.run('DELETE FROM _synclog_outbox WHERE seq = ?', [op.seq], 'remove from the outbox');
    this.run('INSERT OR REPLACE INTO _synclog_done (op_id, hlc) VALUES (?, ?)', [opId, op.hlc],
             'record a finished op');
    this.obxRemove(opId);
    return true;
  }

  /* Keeps the most recent DONE_KEEP finished ops. */
  private trimDone(): void {
    this.run('DELETE FROM _synclog_done WHERE n <= (SELECT max(n) FROM _synclog_done) - ?', [DONE_KEEP],
             'trim the finished ops');
  }

  /* ------------------------------------------------------------ tables */

  private tableDef(table: string): TableDef | undefined {
    if (this.tablesV === null)
      return undefined;
    const d = own(this.tablesV, table);
    return isObject(d) ? (d as unknown as TableDef) : undefined;
  }

  /* Checks one description: {"pk": col, "group": col, "columns": {col: type}} (store.c's def_ok). */
  private static defOk(def: unknown): def is TableDef {
    if (!isObject(def))
      return false;
    const pk = own(def, 'pk');
    const cols = own(def, 'columns');
    const group = own(def, 'group');
    if (typeof pk !== 'string' || !isObject(cols) || own(cols, pk) === undefined)
      return false;
    if (group !== undefined && typeof group !== 'string')
      return false;
    return Object.keys(cols).every((c) => c !== '' && typeof cols[c] === 'string');
  }

  /* The column names of table as SQLite has them (none: the table does not exist). */
  private columnsOf(table: string): string[] {
    return this.rows('SELECT name FROM pragma_table_info(?)', [table], 'read the columns of a table')
      .map((r) => String(r[0]));
  }

  /*
   * Creates table from def, or checks that the existing table has def's
   * columns: a table this store already knows gains the server's new
   * columns; one it does not know (the app's) must have every one.
   */
  private ensureOne(table: string, def: TableDef): void {
    const have = new Set(this.columnsOf(table));
    if (have.size > 0) {
      const known = this.tableDef(table) !== undefined;
      for (const col of Object.keys(def.columns)) {
        if (have.has(col))
          continue;
        if (!known)
          throw new StoreError('invalid_argument',
                               `table "${table}" exists without column "${col}" of welcome.tables`);
        this.exec(`ALTER TABLE ${qident(table)} ADD COLUMN ${qident(col)} ${affinity(def.columns[col]!)}`,
                  'add a column to an app table');
      }
      return;
    }
    const cols = Object.keys(def.columns).map((col) =>
      `${qident(col)} ${affinity(def.columns[col]!)}${col === def.pk ? ' PRIMARY KEY' : ''}`);
    this.exec(`CREATE TABLE ${qident(table)} (${cols.join(', ')})`, 'create an app table');
  }

  /*
   * Creates each app table of welcome.tables that does not exist yet, as
   * sl_store_ensure_tables: integer types → INTEGER, real/double/numeric →
   * REAL, boolean → INTEGER, json/jsonb, arrays and the rest → TEXT, the pk
   * column PRIMARY KEY.  An app's existing table must have every column
   * named; a table the store knows gains the columns it lacks.  A
   * provisional table the description names is rebuilt: dropped, created
   * from the description, and every visible row recomputed from confirmed
   * state and the outbox, whose ops stay as they are.  From then on the
   * store is welcomed.  StoreError bad_frame for a malformed description or
   * a name of ours or SQLite's; invalid_argument for an app's table without
   * a named column; then nothing changed.
   */
  ensureTables(tables: Tables): void {
    if (!isObject(tables))
      throw new StoreError('bad_frame', 'welcome.tables is not a JSON object');
    for (const t of Object.keys(tables)) {
      if (!tableNameOk(t) || !Store.defOk(own(tables, t)))
        throw new StoreError('bad_frame', `welcome.tables: bad description of table "${t}"`);
    }
    let incoming: Record<string, TableDef>;
    try {
      incoming = cloneJson(tables) as unknown as Record<string, TableDef>;
    } catch (e) {
      throw new StoreError('bad_frame', `welcome.tables: ${(e as Error).message}`);
    }
    this.tx(() => {
      /*
       * A provisional table the server tracks is rebuilt from the server's
       * description: its visible rows are derived data, recomputed below from
       * confirmed state and the outbox, which stays as it is.
       */
      const rebuilt: string[] = [];
      for (const t of Object.keys(incoming)) {
        if (this.tableDef(t)?.provisional === true) {
          this.exec(`DROP TABLE IF EXISTS ${qident(t)}`, 'drop a provisional table');
          rebuilt.push(t);
        }
      }
      for (const t of Object.keys(incoming))
        this.ensureOne(t, incoming[t]!);
      const merged: Record<string, TableDef> = this.tablesV ? (cloneJson(this.tablesV) as unknown as Record<string, TableDef>) : {};
      for (const t of Object.keys(incoming))
        setOwn(merged, t, incoming[t]);
      this.metaSet('tables', JSON.stringify(merged));
      this.metaSet('welcomed', '1');
      this.tablesV = merged; /* tx() restores the old one on failure */
      this.welcomedV = true;
      for (const t of rebuilt)
        this.recomputeTable(t);
    });
  }

  /*
   * Inside a transaction, before any welcome: makes table a provisional
   * table with a column for every field of fields (null for none): creates
   * it ("id" TEXT PRIMARY KEY) when the store does not know it, adds the
   * columns it lacks (untyped: SQLite keeps values as given) and stores the
   * new description.  invalid_argument when a table of that name exists that
   * is not the store's (the app's), or a field is empty or differs from a
   * column only in case.  this.tablesV is replaced, not changed in place, so
   * tx() can restore it.
   */
  private provisionalEnsure(table: string, fields: Fields | null): void {
    let def = this.tableDef(table);
    let changed = false;
    if (def === undefined) {
      if (this.value('SELECT 1 FROM sqlite_schema WHERE name = ? COLLATE NOCASE', [table], 'read the schema') !== undefined)
        throw new StoreError('invalid_argument',
                             `table "${table}" exists and is not synclog's: it cannot become a provisional table`);
      def = { pk: 'id', provisional: true, columns: { id: 'text' } };
      this.exec(`CREATE TABLE ${qident(table)} ("id" TEXT PRIMARY KEY)`, 'create a provisional table');
      changed = true;
    } else
      def = cloneJson(def) as unknown as TableDef;
    const cols = def.columns;
    for (const col of Object.keys(fields ?? {})) {
      if (own(cols, col) !== undefined)
        continue;
      if (col === '')
        throw new StoreError('invalid_argument', 'an empty column name');
      /* SQLite's rule for identifiers: equal but for ASCII case is the same column. */
      const same = Object.keys(cols).find((k) => asciiLower(k) === asciiLower(col));
      if (same !== undefined)
        throw new StoreError('invalid_argument',
                             `column "${col}" of table "${table}" differs from column "${same}" only in case`);
      this.exec(`ALTER TABLE ${qident(table)} ADD COLUMN ${qident(col)}`, 'add a column to a provisional table');
      setOwn(cols, col, '');
      changed = true;
    }
    if (changed) {
      const tables: Record<string, TableDef> = this.tablesV ? (cloneJson(this.tablesV) as unknown as Record<string, TableDef>) : {};
      setOwn(tables, table, def);
      this.metaSet('tables', JSON.stringify(tables));
      this.tablesV = tables; /* tx() restores the old one on failure */
    }
  }

  /* ------------------------------------------------------------ visible rows */

  /* The confirmed state of (table, row): an unknown row when there is none. */
  private confirmedLoad(table: string, row: string): Row {
    const r = this.rows('SELECT fields, clocks, deleted FROM _synclog_confirmed WHERE tbl = ? AND row = ?',
                        [table, row], 'read confirmed state');
    const out: Row = { fields: null, clocks: {}, deleted: false };
    if (r.length === 0)
      return out;
    const [f, c, d] = r[0]!;
    out.deleted = Number(d) !== 0;
    try {
      if (f !== null && f !== undefined) {
        const fields: unknown = JSON.parse(String(f));
        if (!isObject(fields))
          throw new Error('not an object');
        out.fields = fields as Fields;
      }
    } catch {
      throw new StoreError('storage', `corrupt confirmed state of ${table}/${row}`);
    }
    try {
      const clocks: unknown = JSON.parse(String(c));
      if (isObject(clocks))
        out.clocks = clocks as Record<string, FieldClock>;
    } catch {
      /* clocks that do not parse count as none, as C's confirmed_load */
    }
    return out;
  }

  /* Writes r as the confirmed state of (table, row). */
  private confirmedSave(table: string, row: string, r: Row): void {
    this.run('INSERT OR REPLACE INTO _synclog_confirmed (tbl, row, fields, clocks, deleted) VALUES (?, ?, ?, ?, ?)',
             [table, row, r.fields === null ? null : JSON.stringify(r.fields), JSON.stringify(r.clocks ?? {}),
              r.deleted ? 1 : 0], 'write confirmed state');
  }

  /* The pending ops of (table, row) in outbox order, from the index and the file. */
  private pendingOf(table: string, row: string): PendingOp[] {
    const r = this.obxRows.get(rowKey(table, row));
    if (r === undefined)
      return [];
    return r.seqs.map((seq) => {
      const o = this.rows('SELECT kind, fields, hlc FROM _synclog_outbox WHERE seq = ?', [seq], 'read the outbox');
      if (o.length === 0)
        throw new StoreError('storage', `outbox entry ${seq} vanished`);
      const [kind, fields, hlc] = o[0]!;
      let f: unknown;
      try {
        f = JSON.parse(String(fields));
      } catch {
        throw new StoreError('storage', `corrupt outbox entry ${seq}`);
      }
      return { kind: kind === 'delete' ? 'delete' : 'upsert', fields: isObject(f) ? (f as Fields) : null,
               hlc: String(hlc), client_id: this.clientId };
    });
  }

  /*
   * Writes the visible row v of (table, row) into the app's table, or
   * deletes it.  The write is an UPSERT of every column of def (but the pk)
   * that changes the stored row only when a value differs, so the result
   * says whether the visible row changed.  A row id that does not fit an
   * INTEGER PRIMARY KEY is the caller's mistake: invalid_argument.
   */
  private visibleWrite(table: string, def: TableDef, row: string, v: Row): boolean {
    const pk = qident(def.pk);
    if (v.fields === null || v.deleted)
      return this.run(`DELETE FROM ${qident(table)} WHERE ${pk} = ?`, [row], 'delete the visible row') > 0;
    const cols = Object.keys(def.columns).filter((c) => c !== def.pk);
    const fields = v.fields;
    const bind: SqlValue[] = [row, ...cols.map((c) => sqlOf(own(fields, c) as Json | undefined))];
    const names = [pk, ...cols.map(qident)];
    let sql = `INSERT INTO ${qident(table)} (${names.join(', ')}) VALUES (${names.map(() => '?').join(', ')})` +
              ` ON CONFLICT (${pk}) DO `;
    if (cols.length === 0)
      sql += 'NOTHING';
    else
      sql += 'UPDATE SET ' + cols.map((c) => `${qident(c)} = excluded.${qident(c)}`).join(', ') +
             ' WHERE ' + cols.map((c) => `${qident(c)} IS NOT excluded.${qident(c)}`).join(' OR ');
    return this.run(sql, bind, 'write the visible row',
                    `row id "${row}" does not fit the primary key "${def.pk}" of table "${table}" (an integer column)`) > 0;
  }

  /*
   * Recomputes the visible row of (table, row) from confirmed state conf
   * (the file's when not given) and the row's pending ops, and writes it.
   * A table not in the description has no visible rows.  Returns whether the
   * visible row changed.
   */
  private recompute(table: string, row: string, conf?: Row): boolean {
    const def = this.tableDef(table);
    if (def === undefined)
      return false;
    const c = conf ?? this.confirmedLoad(table, row);
    const ops = this.pendingOf(table, row);
    const v = ops.length === 0 ? c : mergeVisible(c, ops).visible;
    return this.visibleWrite(table, def, row, v);
  }

  /* Recomputes every visible row of table that confirmed state or the outbox knows. */
  private recomputeTable(table: string): boolean {
    let changed = false;
    const rows = this.rows('SELECT row FROM _synclog_confirmed WHERE tbl = ?1 UNION SELECT row FROM _synclog_outbox WHERE tbl = ?1',
                           [table], 'list the rows of a table');
    for (const r of rows)
      changed = this.recompute(table, String(r[0])) || changed;
    return changed;
  }

  /* ------------------------------------------------------------ local writes */

  /*
   * A local write: fields is an object of column → value (the pk column may
   * be given; the row is always the pk).  In one transaction: an op id (opId
   * or a new UUID) and a clock, the op appended to the outbox, the visible
   * row recomputed and written.  Before any welcome, a table the store does
   * not know is created on the way as a provisional table (see
   * provisionalEnsure).
   *
   * opId given and already known (in the outbox, or among the recently
   * finished ops): nothing is written and the first answer is returned, with
   * duplicate true.  opId must be a lowercase UUID (the server keeps op ids
   * as uuid and answers in that form).
   *
   * StoreError unknown_table for a table the server does not track (after a
   * welcome; also a provisional table the welcome did not name),
   * unknown_column for a column not in welcome.tables, invalid_argument for
   * an empty row, names that are not text, fields that are not an object, a
   * reserved table name, a provisional table name of the app's, an empty
   * field name or one differing from a column only in case, a row id that
   * does not fit an integer pk.
   */
  put(table: string, row: string, fields: Fields, opId?: string): { id: string; hlc: string; duplicate: boolean } {
    return this.localOp(table, row, false, fields, opId);
  }

  /* As put, for a delete of the row. */
  delete(table: string, row: string, opId?: string): { id: string; hlc: string; duplicate: boolean } {
    return this.localOp(table, row, true, null, opId);
  }

  private localOp(table: string, row: string, isDelete: boolean, fieldsIn: Fields | null,
                  opId: string | undefined): { id: string; hlc: string; duplicate: boolean } {
    if (typeof table !== 'string')
      throw new StoreError('invalid_argument', 'no table: the table name must be a string');
    if (typeof row !== 'string')
      throw new StoreError('invalid_argument', 'no row: the row id must be a string');
    /* Both travel as JSON strings in push frames: one that is not UTF-8 could not. */
    if (!utf8Ok(table))
      throw new StoreError('invalid_argument', 'the table name is not valid UTF-8 (a lone surrogate)');
    if (!utf8Ok(row))
      throw new StoreError('invalid_argument', 'the row id is not valid UTF-8 (a lone surrogate)');
    if (opId !== undefined && (typeof opId !== 'string' || !UUID_RE.test(opId)))
      throw new StoreError('invalid_argument', `op id ${JSON.stringify(opId)} is not a lowercase UUID`);
    if (!isDelete && !isObject(fieldsIn))
      throw new StoreError('invalid_argument', 'fields are not a JSON object');
    let fields: Fields | null = null;
    if (!isDelete) {
      try {
        fields = cloneObject(fieldsIn, 'fields');
      } catch (e) {
        throw new StoreError('invalid_argument', `fields: ${(e as Error).message}`);
      }
    }

    return this.tx(() => {
      if (opId !== undefined) {
        const known = this.obxOps.get(opId);
        if (known !== undefined)
          return { id: opId, hlc: known.hlc, duplicate: true };
        const done = this.value('SELECT hlc FROM _synclog_done WHERE op_id = ?', [opId], 'read the finished ops');
        if (done !== undefined)
          return { id: opId, hlc: String(done), duplicate: true };
      }
      const def = this.tableDef(table);
      if (def === undefined && this.welcomedV)
        throw new StoreError('unknown_table', `unknown table "${table}": the server does not track it`);
      if (def === undefined && !tableNameOk(table))
        throw new StoreError('invalid_argument', `table name "${table}" is reserved (_synclog..., sqlite_...)`);
      const provisional = def === undefined || def.provisional === true;
      if (provisional && this.welcomedV)
        throw new StoreError('unknown_table', `table "${table}" is provisional and the server does not track it`);
      if (row === '')
        throw new StoreError('invalid_argument', 'empty row id');
      const pk = def?.pk ?? 'id';
      if (fields !== null) {
        delete (fields as Record<string, Json>)[pk]; /* the row is the pk */
        if (!provisional) {
          for (const col of Object.keys(fields)) {
            if (own(def!.columns, col) === undefined)
              throw new StoreError('unknown_column', `unknown column "${col}" of table "${table}"`);
          }
        }
      }
      /* Before any welcome, an unknown table is created and grows with its fields. */
      if (provisional)
        this.provisionalEnsure(table, fields);
      const id = opId ?? this.uuid();
      const hlcText = formatHlc(this.clock.now(this.wall()));
      const seq = this.lastSeq + 1; /* never reused (sync.ts sends by seq) */
      this.run('INSERT INTO _synclog_outbox (seq, op_id, tbl, row, kind, fields, hlc) VALUES (?, ?, ?, ?, ?, ?, ?)',
               [seq, id, table, row, isDelete ? 'delete' : 'upsert', isDelete ? '{}' : JSON.stringify(fields), hlcText],
               'append to the outbox');
      this.obxAdd(seq, id, table, row, isDelete, hlcText);
      /* The clock's floor is this op's hlc, now in the outbox (see reload). */
      this.recompute(table, row);
      return { id, hlc: hlcText, duplicate: false };
    });
  }

  /* ------------------------------------------------------------ incoming changes */

  /*
   * A `changes` frame: in one transaction, each change with seq above the
   * cursor is applied, in seq order, to confirmed state as the server
   * decided it (its fields set with its clock; a delete makes a tombstone),
   * the op it confirms leaves the outbox, the cursor moves to the frame's
   * cursor and every affected visible row is recomputed once.  The clock
   * observes every change's hlc (a skewed one is only counted).  Returns the
   * tables whose visible rows changed.  StoreError bad_frame for a
   * malformed frame, with nothing applied.
   */
  applyChanges(frame: ChangesFrame): Set<string> {
    if (!isObject(frame))
      throw new StoreError('bad_frame', 'malformed changes frame: not an object');
    const changes = own(frame, 'changes');
    const cursor = own(frame, 'cursor');
    if (!Array.isArray(changes) || !isCount(cursor))
      throw new StoreError('bad_frame', 'malformed changes frame: want changes (an array) and cursor (an integer >= 0)');
    const list = changes.map((c, i) => {
      const ok = changeOk(c);
      if (ok === null)
        throw new StoreError('bad_frame', `malformed change at index ${i}`);
      return ok;
    });
    return this.tx(() => {
      const touched = new Map<string, { table: string; row: string; list: CheckedChange[] }>();
      let last = this.cursorV;
      for (const c of list) {
        if (c.seq <= last)
          continue; /* already applied */
        last = c.seq;
        this.clock.observe(c.hlcV, this.wall()); /* a skewed clock is only counted */
        const key = rowKey(c.table, c.row);
        let t = touched.get(key);
        if (t === undefined) {
          t = { table: c.table, row: c.row, list: [] };
          touched.set(key, t);
        }
        t.list.push(c);
        if (c.opId !== null)
          this.outboxRemove(c.opId);
      }
      const tables = new Set<string>();
      /* Each affected row once, after all of the frame's changes, in the order first touched. */
      for (const t of touched.values()) {
        const conf = this.confirmedLoad(t.table, t.row);
        for (const c of t.list)
          applyDecided(conf, c);
        this.confirmedSave(t.table, t.row, conf);
        if (this.recompute(t.table, t.row, conf))
          tables.add(t.table);
      }
      if (cursor > last)
        last = cursor;
      this.cursorV = last;
      this.metaSet('cursor', String(last));
      this.saveOutboxSeq();
      this.saveClock();
      this.trimDone();
      return tables;
    });
  }

  /* ------------------------------------------------------------ acks */

  /*
   * An `ack` frame: acked ops are marked so (they stay in the outbox until
   * their change arrives, but pending() no longer lists them); rejected ops
   * leave the outbox and their rows are recomputed, in one transaction; the
   * clock observes the frame's hlc.  Ids not in the outbox are ignored.
   * Returns the rejections of ops that were in the outbox and the tables
   * whose visible rows changed.  StoreError bad_frame for a malformed frame.
   */
  ack(frame: AckFrame): { rejected: Rejection[]; tables: Set<string> } {
    if (!isObject(frame))
      throw new StoreError('bad_frame', 'malformed ack frame: not an object');
    const acked = own(frame, 'acked');
    const rejected = own(frame, 'rejected');
    if ((acked !== undefined && !Array.isArray(acked)) || (rejected !== undefined && !Array.isArray(rejected)))
      throw new StoreError('bad_frame', 'malformed ack frame: acked and rejected must be arrays');
    const hlc = own(frame, 'hlc');
    return this.tx(() => {
      const out: Rejection[] = [];
      const tables = new Set<string>();
      for (const id of acked ?? []) {
        const op = typeof id === 'string' ? this.obxOps.get(id) : undefined;
        if (op === undefined)
          continue; /* not ours, or already gone */
        this.run('UPDATE _synclog_outbox SET acked = 1 WHERE seq = ?', [op.seq], 'mark an op acked');
      }
      for (const e of rejected ?? []) {
        const id = isObject(e) ? own(e, 'id') : undefined;
        const op = typeof id === 'string' ? this.obxOps.get(id) : undefined;
        if (op === undefined || typeof id !== 'string')
          continue; /* not ours, or already gone */
        const code = own(e as object, 'code');
        const message = own(e as object, 'message');
        out.push({ id, table: op.table, row: op.row, code: typeof code === 'string' ? code : '',
                   message: typeof message === 'string' ? message : '' });
        this.outboxRemove(id);
        if (this.recompute(op.table, op.row))
          tables.add(op.table);
      }
      if (isHlc(hlc))
        this.clock.observe(parseHlc(hlc), this.wall()); /* a skewed clock is only counted */
      this.saveOutboxSeq();
      this.saveClock();
      this.trimDone();
      return { rejected: out, tables };
    });
  }

  /*
   * A welcome's, pong's or ack's clock: the clock moves past it (a skewed or
   * malformed one is ignored, as C's sls_observe_text), and the floor is
   * stored when it moved, so that after a restart no local op is older than
   * what was seen.
   */
  observe(hlc: string): void {
    if (!isHlc(hlc))
      return;
    const v = parseHlc(hlc);
    if (v <= this.clock.last)
      return;
    this.tx(() => {
      if (this.clock.observe(v, this.wall()))
        this.saveClock();
    });
  }

  /* ------------------------------------------------------------ snapshots */

  /*
   * Starts a snapshot for the welcomed groups (null: every group),
   * forgetting any snapshot not finished.  invalid_argument when groups is
   * not an array of strings and integers.
   */
  snapshotBegin(groups: string[] | null): void {
    let g: (string | number)[] | null = null;
    if (groups !== null) {
      if (!Array.isArray(groups))
        throw new StoreError('invalid_argument', 'groups are not an array');
      for (const x of groups as unknown[]) {
        if (typeof x !== 'string' && !(typeof x === 'number' && Number.isInteger(x)))
          throw new StoreError('invalid_argument', 'a group is not a string or an integer');
      }
      g = [...groups];
    }
    this.tx(() => {
      this.run('DELETE FROM _synclog_snapshot', [], 'forget an unfinished snapshot');
    });
    this.snapGroups = g;
    this.snapOpen = true;
  }

  /*
   * Takes one `snapshot` frame; rows are kept aside (_synclog_snapshot) until
   * the frame with done true, which, in the same transaction, replaces the
   * confirmed state of the snapshot's groups (and every tombstone) with the
   * rows, sets the cursor to the frame's and recomputes every visible row of
   * the known tables: pending ops stay, rebased on top.  Returns whether it
   * was the last frame and the tables whose visible rows changed.
   * StoreError bad_frame for a malformed frame or a frame with no
   * snapshotBegin (also after the last frame).
   */
  snapshotFrame(frame: SnapshotFrame): { done: boolean; tables: Set<string> } {
    if (!this.snapOpen)
      throw new StoreError('bad_frame', 'a snapshot frame with no snapshotBegin');
    if (!isObject(frame))
      throw new StoreError('bad_frame', 'malformed snapshot frame: not an object');
    const rows = own(frame, 'rows');
    const cursor = own(frame, 'cursor');
    const done = own(frame, 'done');
    if (!Array.isArray(rows) || !isCount(cursor) || typeof done !== 'boolean')
      throw new StoreError('bad_frame', 'malformed snapshot frame: want rows (an array), cursor (an integer >= 0), done (a boolean)');
    const staged = rows.map((r, i) => {
      const t = isObject(r) ? own(r, 'table') : undefined;
      const rw = isObject(r) ? own(r, 'row') : undefined;
      const f = isObject(r) ? own(r, 'fields') : undefined;
      const c = isObject(r) ? own(r, 'clocks') : undefined;
      if (typeof t !== 'string' || typeof rw !== 'string' || !isObject(f) || (c !== undefined && !isObject(c)))
        throw new StoreError('bad_frame', `malformed snapshot row at index ${i}`);
      try {
        return [t, rw, JSON.stringify(cloneJson(f)), c === undefined ? '{}' : JSON.stringify(cloneJson(c))] as const;
      } catch (e) {
        throw new StoreError('bad_frame', `malformed snapshot row at index ${i}: ${(e as Error).message}`);
      }
    });
    const tables = this.tx(() => {
      for (const [t, rw, f, c] of staged)
        this.run('INSERT OR REPLACE INTO _synclog_snapshot (tbl, row, fields, clocks) VALUES (?, ?, ?, ?)',
                 [t, rw, f, c], 'keep a snapshot row');
      return done ? this.snapshotFinish(cursor) : new Set<string>();
    });
    if (done) {
      this.snapOpen = false;
      this.snapGroups = null;
    }
    return { done, tables };
  }

  /* True when a confirmed row (fields text, tombstone flag) is replaced by the snapshot. */
  private replacedBySnapshot(table: string, fieldsText: unknown, deleted: boolean): boolean {
    const def = this.tableDef(table);
    if (this.snapGroups === null || deleted || fieldsText === null || fieldsText === undefined || def === undefined)
      return true;
    const gcol = def.group;
    if (typeof gcol !== 'string')
      return true;
    let fields: unknown;
    try {
      fields = JSON.parse(String(fieldsText));
    } catch {
      return true;
    }
    const text = groupText(isObject(fields) ? own(fields, gcol) : undefined);
    if (text === null)
      return false;
    return this.snapGroups.some((g) => groupText(g) === text);
  }

  /*
   * The last frame's work, inside the transaction: confirmed state of the
   * groups replaced by the staged rows, cursor set, every row that was or is
   * confirmed or pending recomputed.
   */
  private snapshotFinish(cursor: number): Set<string> {
    const keys = new Map<string, [string, string]>();
    const addKey = (t: unknown, r: unknown): void => {
      const table = String(t);
      const row = String(r);
      keys.set(rowKey(table, row), [table, row]);
    };
    for (const r of this.rows('SELECT tbl, row FROM _synclog_confirmed', [], 'list rows'))
      addKey(r[0], r[1]);
    for (const r of this.rows('SELECT tbl, row FROM _synclog_outbox', [], 'list rows'))
      addKey(r[0], r[1]);
    /* Forget the confirmed state the snapshot replaces. */
    const gone = this.rows('SELECT tbl, row, fields, deleted FROM _synclog_confirmed', [], 'read confirmed state')
      .filter((r) => this.replacedBySnapshot(String(r[0]), r[2], Number(r[3]) !== 0));
    for (const r of gone)
      this.run('DELETE FROM _synclog_confirmed WHERE tbl = ? AND row = ?', [String(r[0]), String(r[1])],
               'replace confirmed state');
    this.exec('INSERT OR REPLACE INTO _synclog_confirmed (tbl, row, fields, clocks, deleted)' +
              ' SELECT tbl, row, fields, clocks, 0 FROM _synclog_snapshot; DELETE FROM _synclog_snapshot;',
              'install the snapshot');
    for (const r of this.rows('SELECT tbl, row FROM _synclog_confirmed', [], 'list rows'))
      addKey(r[0], r[1]);
    this.cursorV = cursor;
    this.metaSet('cursor', String(cursor));
    const tables = new Set<string>();
    for (const [table, row] of keys.values()) {
      if (this.recompute(table, row))
        tables.add(table);
    }
    return tables;
  }

  /* ------------------------------------------------------------ the outbox, read */

  /* The unacked ops whose outbox seq is above afterSeq, in outbox order (what to resend, same ids). */
  pending(afterSeq = 0): OutboxOp[] {
    if (!Number.isSafeInteger(afterSeq))
      throw new StoreError('invalid_argument', 'afterSeq is not an integer');
    return this.rows('SELECT seq, op_id, tbl, row, kind, fields, hlc FROM _synclog_outbox WHERE acked = 0 AND seq > ? ORDER BY seq',
                     [afterSeq], 'read the outbox').map((r) => {
      let fields: unknown;
      try {
        fields = JSON.parse(String(r[5]));
      } catch {
        throw new StoreError('storage', `corrupt outbox entry ${String(r[0])}`);
      }
      return {
        seq: Number(r[0]),
        id: String(r[1]),
        table: String(r[2]),
        row: String(r[3]),
        kind: (r[4] === 'delete' ? 'delete' : 'upsert') as OpKind,
        fields: isObject(fields) ? (fields as Fields) : {},
        hlc: String(r[6]),
      };
    });
  }

  /* Every op in the outbox, acked or not (Status.pending). */
  pendingCount(): number {
    return Number(this.value('SELECT count(*) FROM _synclog_outbox', [], 'count the outbox'));
  }

  /* ------------------------------------------------------------ reads */

  /*
   * Prepares sql for a read: one statement, starting with SELECT, WITH or
   * VALUES, that SQLite says is read-only (sqlite3_stmt_readonly).  The
   * keyword check is there because SQLite calls BEGIN, COMMIT, SAVEPOINT,
   * ATTACH and most PRAGMAs read-only too (they change no page of the file),
   * and a BEGIN from an app would break the store's transactions.  Returns
   * the statement (the caller finalizes it); StoreError invalid_argument.
   */
  private prepareRead(sql: string): SqliteStmt {
    if (typeof sql !== 'string')
      throw new StoreError('invalid_argument', 'the query is not a string');
    const { single, first } = scanSql(sql);
    if (!single)
      throw new StoreError('invalid_argument', 'the query holds more than one statement');
    if (!['SELECT', 'WITH', 'VALUES'].includes(first))
      throw new StoreError('invalid_argument', `the query must be a SELECT (a WITH or VALUES), not ${first || 'empty'}`);
    let st: SqliteStmt;
    try {
      st = this.db.prepare(sql);
    } catch (e) {
      throw new StoreError('invalid_argument', `the query does not prepare: ${(e as Error).message}`, { cause: e });
    }
    if (!st.isReadOnly()) {
      st.finalize();
      throw new StoreError('invalid_argument', 'the query is not read-only');
    }
    return st;
  }

  /*
   * Runs a read-only statement with params and returns its rows as objects
   * (column name → value; integers, reals, text, null, blobs as
   * Uint8Array).  StoreError invalid_argument for a statement that is not
   * one read-only SELECT or for bad parameters; storage when SQLite fails.
   */
  query(sql: string, params: unknown[] = []): Record<string, unknown>[] {
    if (!Array.isArray(params))
      throw new StoreError('invalid_argument', 'params are not an array');
    const bind = params.map((p, i): SqlValue => {
      if (p === null || typeof p === 'string' || typeof p === 'number' || typeof p === 'bigint' || p instanceof Uint8Array)
        return p;
      if (typeof p === 'boolean')
        return p ? 1 : 0;
      throw new StoreError('invalid_argument', `parameter ${i + 1} is a ${typeof p}: want null, a number, a string, a boolean, a bigint or a Uint8Array`);
    });
    const st = this.prepareRead(sql);
    try {
      if (bind.length > 0) {
        try {
          st.bind(bind);
        } catch (e) {
          throw new StoreError('invalid_argument', `bad parameters: ${(e as Error).message}`, { cause: e });
        }
      }
      const names = st.getColumnNames([]);
      const out: Record<string, unknown>[] = [];
      while (st.step()) {
        const r: Record<string, unknown> = {};
        names.forEach((n, i) => setOwn(r, n, st.get(i)));
        out.push(r);
      }
      return out;
    } catch (e) {
      throw this.dbError(e, 'query');
    } finally {
      st.finalize();
    }
  }

  /*
   * The app tables sql reads (sorted, internal tables left out), for live
   * queries: found with SQLite's authorizer while the statement is prepared
   * (its SQLITE_READ actions), when StoreOptions.capi was given; otherwise
   * from EXPLAIN's OpenRead root pages mapped through sqlite_schema.  Views
   * count as the tables they read, never as themselves.  StoreError invalid_argument as query().
   */
  tablesRead(sql: string): string[] {
    const found = new Set<string>();
    if (this.capi !== undefined) {
      const capi = this.capi;
      const rc = capi.sqlite3_set_authorizer(this.db.pointer, (_pV, code, s0) => {
        if (code === SQLITE_READ && typeof s0 === 'string')
          found.add(s0);
        return SQLITE_OK;
      }, 0);
      if (rc !== SQLITE_OK)
        throw new StoreError('storage', `sqlite3_set_authorizer failed (${rc})`);
      try {
        this.prepareRead(sql).finalize();
      } finally {
        capi.sqlite3_set_authorizer(this.db.pointer, 0, 0);
      }
    } else {
      this.prepareRead(sql).finalize();
      const roots = new Map<string, string>();
      for (const r of this.rows("SELECT 0, rootpage, tbl_name FROM sqlite_schema WHERE type IN ('table', 'index')" +
                                " UNION ALL SELECT 1, rootpage, tbl_name FROM sqlite_temp_schema WHERE type IN ('table', 'index')",
                                [], 'read the schema'))
        roots.set(`${String(r[0])}:${String(r[1])}`, String(r[2]));
      const st = this.db.prepare('EXPLAIN ' + sql);
      try {
        const names = st.getColumnNames([]);
        const iOp = names.indexOf('opcode');
        const iP2 = names.indexOf('p2');
        const iP3 = names.indexOf('p3');
        while (st.step()) {
          if (st.get(iOp) !== 'OpenRead')
            continue;
          const t = roots.get(`${String(st.get(iP3))}:${String(st.get(iP2))}`);
          if (t !== undefined)
            found.add(t);
        }
      } catch (e) {
        throw this.dbError(e, 'explain');
      } finally {
        st.finalize();
      }
    }
    /* The authorizer also reports a view's own columns: only tables change. */
    const tables = new Set(this.rows("SELECT name FROM sqlite_schema WHERE type = 'table'" +
                                     " UNION SELECT name FROM sqlite_temp_schema WHERE type = 'table'",
                                     [], 'read the schema').map((r) => String(r[0])));
    return [...found].filter((t) => tables.has(t) && tableNameOk(t)).sort();
  }
}

/* ---------------------------------------------------------------- frame helpers */

/* One change of a `changes` frame, checked (rebase.c's change_ok). */
interface CheckedChange {
  seq: number;
  table: string;
  row: string;
  isDelete: boolean;
  hlc: string;
  hlcV: bigint;
  clientId: string;
  opId: string | null;
  fields: Fields | null; /* a copy; null for none (absent, null or not an object) */
}

/* A non-negative integer below 2^53 (PROTOCOL.md: seq, cursor). */
function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/*
 * The change c, checked as rebase.c's change_ok: seq, kind, table, row,
 * hlc, client_id as PROTOCOL.md says; op_id a string or none; fields an
 * object or none.  null when malformed.
 */
function changeOk(c: unknown): CheckedChange | null {
  if (!isObject(c))
    return null;
  const seq = own(c, 'seq');
  const kind = own(c, 'kind');
  const table = own(c, 'table');
  const row = own(c, 'row');
  const hlc = own(c, 'hlc');
  const clientId = own(c, 'client_id');
  const opId = own(c, 'op_id');
  const fields = own(c, 'fields');
  if (!isCount(seq) || (kind !== 'upsert' && kind !== 'delete') || typeof table !== 'string' ||
      typeof row !== 'string' || !isHlc(hlc) || !clientIdOk(clientId))
    return null;
  let f: Fields | null = null;
  if (isObject(fields)) {
    try {
      f = cloneJson(fields) as Fields;
    } catch {
      return null;
    }
  }
  return { seq, table, row, isDelete: kind === 'delete', hlc, hlcV: parseHlc(hlc), clientId,
           opId: typeof opId === 'string' ? opId : null, fields: f };
}

/*
 * Applies one change to r, in place, as the server decided it (rebase.c's
 * apply_decided): its fields set with its clock, or a tombstone; nothing
 * changes a tombstone.  No clock comparison: the change's fields hold only
 * what the op won.
 */
function applyDecided(r: Row, c: CheckedChange): void {
  if (r.deleted)
    return;
  if (c.isDelete) {
    r.fields = null;
    r.clocks = {};
    r.deleted = true;
    return;
  }
  if (r.fields === null)
    r.fields = {};
  if (c.fields === null)
    return;
  for (const col of Object.keys(c.fields)) {
    setOwn(r.fields, col, c.fields[col]);
    setOwn(r.clocks, col, [c.hlc, c.clientId]);
  }
}

/* The text form of a group value, as groups list it; null for none (store.c's group_text). */
function groupText(v: unknown): string | null {
  if (typeof v === 'string')
    return v;
  if (typeof v === 'number' && Number.isInteger(v))
    return String(v);
  return null;
}

/* ASCII lower case, SQLite's rule for identifiers (non-ASCII letters stay as they are). */
function asciiLower(s: string): string {
  return s.replace(/[A-Z]/g, (c) => c.toLowerCase());
}

/* The SQLite result code an sqlite-wasm error carries, or -1. */
function resultCode(e: unknown): number {
  const rc = typeof e === 'object' && e !== null ? (e as { resultCode?: unknown }).resultCode : undefined;
  return typeof rc === 'number' ? rc : -1;
}

/*
 * web/src/protocol.ts: the frames of synclog.v1 (../shared/PROTOCOL.md) as
 * the browser client sends and receives them.  Client frames are built here
 * (hello, push, ping); server frames are validated here, completely, before
 * anything else sees them: parseServerFrame either returns a fresh object of
 * the shapes in types.ts holding only the fields this client knows, or
 * throws a ProtocolError saying what is wrong.  Sync (sync.ts) then drops the
 * connection, so a broken or hostile server can make this client reconnect
 * but never crash it or write a malformed value into the store.
 *
 * What "malformed" means here is the C client's rule (client/rebase.c
 * change_ok, client/store.c def_ok, client/outbox.c sl_store_ack, jansson's
 * parser) made strict where JavaScript would otherwise guess: seq and cursor
 * are integers in [0, 2^53), an hlc is 16 lowercase hex digits, a client_id
 * is 1-64 bytes, changes come in increasing seq order, every string is
 * well-formed Unicode (jansson refuses lone surrogates; SQLite would turn one
 * into U+FFFD and so into another row id), names, ids and row ids hold no
 * NUL (jansson refuses it too), and strings and JSON nesting are bounded
 * (LIMITS).  Unknown frame types give null and unknown fields are
 * dropped, as the protocol asks.
 *
 * Numbers in fields are JavaScript numbers, as JSON.parse reads them: an
 * integer beyond 2^53 in a field loses precision here (the C client keeps the
 * server's text).  Objects built here from server-chosen keys (tables,
 * columns, clocks) are made with Object.fromEntries, so a key "__proto__" is
 * an ordinary own property, never a prototype.
 */

import type {
  AckFrame,
  Change,
  ChangesFrame,
  ErrorFrame,
  FieldClock,
  Fields,
  Json,
  OpKind,
  OutboxOp,
  PongFrame,
  ServerFrame,
  SnapshotFrame,
  SnapshotRow,
  TableSpec,
  Tables,
  WelcomeFrame,
} from './types.js';

/* A server frame this client refuses; the connection is dropped for it. */
export class ProtocolError extends Error {
  readonly code = 'bad_frame';

  constructor(message: string) {
    super(message);
    this.name = 'ProtocolError';
  }
}

/*
 * Bounds on what a server may send.  Each is far above what the synclog
 * server produces (PostgreSQL names are at most 63 bytes, an index entry,
 * and so a row id, at most about 2700) and low enough that one frame cannot
 * make the store hold megabyte keys.
 */
export const LIMITS = {
  frameChars: 64 * 1024 * 1024, /* a whole frame, in UTF-16 units (net.c drops above 64 MiB) */
  clientIdBytes: 64,            /* PROTOCOL.md: 1-64 bytes */
  idBytes: 128,                 /* an op id (a UUID: 36) */
  nameBytes: 256,               /* a table or column name, an SQL type, an error code */
  keyBytes: 8192,               /* a row id, a group */
  messageBytes: 16384,          /* an error's or a refusal's message */
  depth: 64,                    /* nesting inside one field value, as the gateway's max_depth */
} as const;

const HLC_RE = /^[0-9a-f]{16}$/;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

type Obj = { [key: string]: unknown };

function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function fail(where: string, what: string): never {
  throw new ProtocolError(`${where}: ${what}`);
}

/* The UTF-8 length of s, or of as much as it takes to exceed max. */
function utf8Bytes(s: string, max: number): number {
  if (s.length > max) return s.length; /* every UTF-16 unit is at least one byte */
  let n = 0;
  for (let i = 0; i < s.length && n <= max; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff) {
      n += 4; /* a pair (lone surrogates are refused by wellFormed) */
      i++;
    } else n += 3;
  }
  return n;
}

function wellFormed(s: string): boolean {
  return !LONE_SURROGATE.test(s);
}

/* v as a string of at least min and at most max UTF-8 bytes. */
function str(v: unknown, where: string, max: number, min = 0): string {
  if (typeof v !== 'string') fail(where, 'not a string');
  const n = utf8Bytes(v, max);
  if (n > max) fail(where, `longer than ${max} bytes`);
  if (n < min) fail(where, min === 1 ? 'empty' : `shorter than ${min} bytes`);
  if (!wellFormed(v)) fail(where, 'not well-formed Unicode (a lone surrogate)');
  if (v.includes('\0')) fail(where, 'contains NUL'); /* jansson, and so the C client, refuses it */
  return v;
}

/* A seq or cursor: an integer in [0, 2^53). */
function uint(v: unknown, where: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
    fail(where, 'not an integer in [0, 2^53)');
  return v;
}

function hlc(v: unknown, where: string): string {
  if (typeof v !== 'string' || !HLC_RE.test(v)) fail(where, 'not an hlc (16 lowercase hex digits)');
  return v;
}

function bool(v: unknown, where: string): boolean {
  if (typeof v !== 'boolean') fail(where, 'not a boolean');
  return v;
}

function array(v: unknown, where: string): unknown[] {
  if (!Array.isArray(v)) fail(where, 'not an array');
  return v;
}

function object(v: unknown, where: string): Obj {
  if (!isObject(v)) fail(where, 'not an object');
  return v;
}

function kind(v: unknown, where: string): OpKind {
  if (v !== 'upsert' && v !== 'delete') fail(where, 'not "upsert" or "delete"');
  return v;
}

/*
 * Checks one JSON value from JSON.parse: nesting within LIMITS.depth and
 * well-formed strings, keys included.  Iterative, so a deep value cannot
 * exhaust the stack here (JSON.stringify in the store would).
 */
function checkJson(root: unknown, where: string): void {
  const stack: { v: unknown; d: number }[] = [{ v: root, d: 0 }];
  for (let top = stack.pop(); top !== undefined; top = stack.pop()) {
    const { v, d } = top;
    if (typeof v === 'string') {
      if (!wellFormed(v)) fail(where, 'a string that is not well-formed Unicode');
    } else if (typeof v === 'object' && v !== null) {
      if (d >= LIMITS.depth) fail(where, `nested deeper than ${LIMITS.depth}`);
      if (Array.isArray(v)) {
        for (const e of v) stack.push({ v: e, d: d + 1 });
      } else {
        for (const [k, e] of Object.entries(v)) {
          if (!wellFormed(k)) fail(where, 'a key that is not well-formed Unicode');
          stack.push({ v: e, d: d + 1 });
        }
      }
    }
  }
}

/* A fields object: column → JSON value.  The parsed object itself is returned (it is fresh). */
function fields(v: unknown, where: string): Fields {
  const o = object(v, where);
  for (const k of Object.keys(o)) str(k, `${where} (a column name)`, LIMITS.nameBytes, 1);
  checkJson(o, where);
  return o as Fields;
}

/* A table or column name as the store will use it in SQL. */
function tableName(v: unknown, where: string): string {
  const name = str(v, where, LIMITS.nameBytes, 1);
  /* SQLite names are case-insensitive: _SYNCLOG_outbox is the outbox */
  const lower = name.toLowerCase();
  if (lower.startsWith('_synclog') || lower.startsWith('sqlite_'))
    fail(where, `"${name}" is a reserved name (_synclog…, sqlite_…)`);
  return name;
}

function tableSpec(v: unknown, where: string): TableSpec {
  const o = object(v, where);
  const pk = str(o.pk, `${where}.pk`, LIMITS.nameBytes, 1);
  const group = str(o.group, `${where}.group`, LIMITS.nameBytes, 1);
  const cols = object(o.columns, `${where}.columns`);
  const columns = Object.fromEntries(Object.entries(cols).map(([col, type]): [string, string] => {
    str(col, `${where}.columns (a column name)`, LIMITS.nameBytes, 1);
    return [col, str(type, `${where}.columns.${col}`, LIMITS.nameBytes, 1)];
  }));
  if (!Object.hasOwn(columns, pk)) fail(`${where}.pk`, `"${pk}" is not one of the columns`);
  return { pk, group, columns };
}

function welcome(f: Obj): WelcomeFrame {
  const t = object(f.tables, 'welcome.tables');
  const tables: Tables = Object.fromEntries(Object.entries(t).map(([name, spec]): [string, TableSpec] =>
    [tableName(name, 'welcome.tables (a table name)'), tableSpec(spec, `welcome.tables.${name}`)]));
  return {
    type: 'welcome',
    cursor: uint(f.cursor, 'welcome.cursor'),
    hlc: hlc(f.hlc, 'welcome.hlc'),
    groups: array(f.groups, 'welcome.groups').map((g, i) => str(g, `welcome.groups[${i}]`, LIMITS.keyBytes)),
    tables,
  };
}

function change(v: unknown, where: string): Change {
  const c = object(v, where);
  const k = kind(c.kind, `${where}.kind`);
  const out: Change = {
    seq: uint(c.seq, `${where}.seq`),
    op_id: str(c.op_id, `${where}.op_id`, LIMITS.idBytes, 1),
    client_id: str(c.client_id, `${where}.client_id`, LIMITS.clientIdBytes, 1),
    table: str(c.table, `${where}.table`, LIMITS.nameBytes, 1),
    row: str(c.row, `${where}.row`, LIMITS.keyBytes),
    kind: k,
    /* a delete's fields are absent or ignored (PROTOCOL.md) */
    fields: k === 'delete' ? {} : fields(c.fields, `${where}.fields`),
    hlc: hlc(c.hlc, `${where}.hlc`),
  };
  /* a row deleted before the server saw it has no group: null */
  if (c.group !== undefined && c.group !== null) out.group = str(c.group, `${where}.group`, LIMITS.keyBytes);
  return out;
}

function changes(f: Obj): ChangesFrame {
  const list = array(f.changes, 'changes.changes');
  const cursor = uint(f.cursor, 'changes.cursor');
  const out: Change[] = [];
  let last = -1;
  for (let i = 0; i < list.length; i++) {
    const c = change(list[i], `changes.changes[${i}]`);
    if (c.seq <= last) fail(`changes.changes[${i}].seq`, `${c.seq} after ${last}: not in increasing seq order`);
    last = c.seq;
    out.push(c);
  }
  /* "afterwards the client's cursor is cursor": it cannot be behind a change it carries */
  if (cursor < last) fail('changes.cursor', `${cursor} is below the last change's seq ${last}`);
  return { type: 'changes', changes: out, cursor };
}

function clock(v: unknown, where: string): FieldClock {
  const a = array(v, where);
  if (a.length !== 2) fail(where, 'not a pair [hlc, client_id]');
  return [hlc(a[0], `${where}[0]`), str(a[1], `${where}[1]`, LIMITS.clientIdBytes, 1)];
}

function snapshotRow(v: unknown, where: string): SnapshotRow {
  const r = object(v, where);
  /* clocks may be absent, as in client/rebase.c: then no field has one */
  const c = r.clocks === undefined ? {} : object(r.clocks, `${where}.clocks`);
  const clocks = Object.fromEntries(Object.entries(c).map(([col, ck]): [string, FieldClock] => {
    str(col, `${where}.clocks (a column name)`, LIMITS.nameBytes, 1);
    return [col, clock(ck, `${where}.clocks.${col}`)];
  }));
  return {
    table: str(r.table, `${where}.table`, LIMITS.nameBytes, 1),
    row: str(r.row, `${where}.row`, LIMITS.keyBytes),
    fields: fields(r.fields, `${where}.fields`),
    clocks,
  };
}

function snapshot(f: Obj): SnapshotFrame {
  return {
    type: 'snapshot',
    rows: array(f.rows, 'snapshot.rows').map((r, i) => snapshotRow(r, `snapshot.rows[${i}]`)),
    cursor: uint(f.cursor, 'snapshot.cursor'),
    done: bool(f.done, 'snapshot.done'),
  };
}

function ack(f: Obj): AckFrame {
  return {
    type: 'ack',
    acked: array(f.acked, 'ack.acked').map((id, i) => str(id, `ack.acked[${i}]`, LIMITS.idBytes, 1)),
    rejected: array(f.rejected, 'ack.rejected').map((v, i) => {
      const where = `ack.rejected[${i}]`;
      const r = object(v, where);
      return {
        id: str(r.id, `${where}.id`, LIMITS.idBytes, 1),
        code: str(r.code, `${where}.code`, LIMITS.nameBytes, 1),
        message: str(r.message, `${where}.message`, LIMITS.messageBytes),
      };
    }),
    hlc: hlc(f.hlc, 'ack.hlc'),
  };
}

function pong(f: Obj): PongFrame {
  return { type: 'pong', hlc: hlc(f.hlc, 'pong.hlc') };
}

function error(f: Obj): ErrorFrame {
  return {
    type: 'error',
    code: str(f.code, 'error.code', LIMITS.nameBytes, 1),
    message: str(f.message, 'error.message', LIMITS.messageBytes),
  };
}

/*
 * Validates one text frame from the server.  Returns the frame (fresh
 * objects, known fields only), null for a well-formed frame of a type this
 * client does not know (to be ignored), or throws ProtocolError for
 * anything malformed.  Throws nothing else.
 */
export function parseServerFrame(text: string): ServerFrame | null {
  if (typeof text !== 'string') throw new ProtocolError('not a text frame');
  if (text.length > LIMITS.frameChars)
    throw new ProtocolError(`a frame of ${text.length} characters: the limit is ${LIMITS.frameChars}`);
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    /* a SyntaxError, or a RangeError for nesting too deep for the parser */
    throw new ProtocolError(`not JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  const f = object(v, 'frame');
  if (typeof f.type !== 'string') fail('frame.type', 'not a string');
  switch (f.type) {
    case 'welcome': return welcome(f);
    case 'changes': return changes(f);
    case 'snapshot': return snapshot(f);
    case 'ack': return ack(f);
    case 'pong': return pong(f);
    case 'error': return error(f);
    default: return null;
  }
}

/* ------------------------------------------------------------------ */
/* Client frames                                                       */
/* ------------------------------------------------------------------ */

/* The first frame of a connection.  The caller's values are sent as they are. */
export function helloFrame(h: { client_id: string; token: string; groups: string[]; cursor: number; hlc: string }): string {
  return JSON.stringify({
    type: 'hello',
    client_id: h.client_id,
    token: h.token,
    groups: [...h.groups],
    cursor: h.cursor,
    hlc: h.hlc,
  });
}

/*
 * One op as PROTOCOL.md's op object: id, table, row, kind, fields, hlc (no
 * seq: outbox order is the client's own).  A delete carries no fields, as
 * client/net.c sends it.  Sync measures each op's text to bound a push's
 * bytes, then joins them with pushFrameOf.
 */
export function encodeOp(op: OutboxOp): string {
  const o: { [key: string]: Json } = { id: op.id, table: op.table, row: op.row, kind: op.kind };
  if (op.kind !== 'delete') o.fields = op.fields;
  o.hlc = op.hlc;
  return JSON.stringify(o);
}

/* A push frame of ops already encoded by encodeOp. */
export function pushFrameOf(encoded: readonly string[]): string {
  return `{"type":"push","ops":[${encoded.join(',')}]}`;
}

/* A push frame of ops, in the order given. */
export function pushFrame(ops: readonly OutboxOp[]): string {
  return pushFrameOf(ops.map(encodeOp));
}

export function pingFrame(): string {
  return '{"type":"ping"}';
}

/*
 * web/src/merge.ts: the local model's merge, the browser client's copy of
 * the conflict rule of DESIGN.md ("Conflict resolution"); client/merge.c
 * ported, which follows pg_ext/merge.c.  The decisions must stay the same as
 * those: "beats" is strictly greater, so an op never beats its own clock and
 * replaying it is a no-op.
 *
 * Words, as in DESIGN.md: a row's confirmed state is what the server said
 * (through a snapshot or changes), with the clock that last won each field;
 * pending ops are the client's own ops not yet confirmed, in outbox order;
 * the visible row is the merge of the two, which predicts the server's
 * answer.  A clock is an (hlc, client_id) pair, ordered by hlc and then by
 * client_id in byte order; a clocks object maps a column to
 * ["<16 hex digits>", "<client_id>"], as the server's snapshots carry it.
 *
 * The rule: an upsert sets each field whose clock it beats (a field with no
 * clock, or a malformed one, is beaten by any op), and sets every field of a
 * row that does not exist yet; a field it loses is left alone.  A delete is
 * absorbing: the row stays deleted, and every later op on it is refused by
 * the server (row_deleted), so it changes nothing here.
 *
 * Ownership: every function builds its result from deep copies, so the
 * caller may change what it passed or what it got back, and no argument is
 * ever changed.  Objects are read through own properties only and built
 * with defineProperty, so a column named "__proto__" or "constructor" is a
 * column like any other.
 */
import { isHlc, parseHlc } from './hlc.js';
import type { FieldClock, Fields, Json, OpKind } from './types.js';

const CLIENT_ID_MAX = 64; /* bytes, PROTOCOL.md */

/*
 * One row's state: confirmed state, or a computed visible row.  fields null
 * means the row is unknown, or a tombstone when deleted is set (a tombstone
 * made here has no fields and empty clocks).  A row is visible when fields
 * is not null and deleted is false.  clocks holds what the server sent: an
 * entry that is not a well-formed [hlc, client_id] counts as no clock.
 */
export interface Row {
  fields: Fields | null;
  clocks: Record<string, FieldClock>;
  deleted: boolean;
}

/* One pending op, as the outbox holds it.  fields is ignored for a delete. */
export interface PendingOp {
  kind: OpKind;
  fields?: Fields | null;
  hlc: string;       /* 16 lowercase hex digits */
  client_id: string; /* 1-64 bytes of UTF-8 */
}

/*
 * What a pending op does to the visible row, as the server will decide it:
 * 'applied' (an upsert may still lose every field), or 'absorbed' (the row
 * is deleted before it: the server will refuse it row_deleted).
 */
export type MergeOutcome = 'applied' | 'absorbed';

/* What C refuses with SL_EINVAL: a malformed op, change or snapshot row. */
export class MergeError extends Error {
  override name = 'MergeError';
}

/* ---------------------------------------------------------------- JSON helpers */

/* True for a JSON object (not null, not an array). */
export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/* obj[key] when key is obj's own property, else undefined (never the prototype's). */
export function own(obj: object, key: string): unknown {
  return Object.prototype.hasOwnProperty.call(obj, key) ? (obj as Record<string, unknown>)[key] : undefined;
}

/* Sets obj[key] as an own, enumerable property (so "__proto__" is a key, not the prototype). */
export function setOwn(obj: object, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, writable: true, enumerable: true, configurable: true });
}

/*
 * A deep copy of a JSON value; throws MergeError for what JSON cannot hold
 * (undefined, functions, bigints, non-finite numbers, cycles), which no
 * value jansson parsed could be.
 */
export function cloneJson(v: unknown, depth = 0): Json {
  if (depth > 1000)
    throw new MergeError('a JSON value nested too deep (or a cycle)');
  if (v === null || typeof v === 'string' || typeof v === 'boolean')
    return v;
  if (typeof v === 'number') {
    if (!Number.isFinite(v))
      throw new MergeError(`${v} is not a JSON number`);
    return v;
  }
  if (Array.isArray(v))
    return v.map((e) => cloneJson(e, depth + 1));
  if (typeof v === 'object') {
    const out: { [key: string]: Json } = {};
    for (const k of Object.keys(v))
      setOwn(out, k, cloneJson((v as Record<string, unknown>)[k], depth + 1));
    return out;
  }
  throw new MergeError(`a ${typeof v} is not a JSON value`);
}

/* A deep copy of a JSON object; MergeError when v is not one. */
export function cloneObject(v: unknown, what: string): Fields {
  if (!isObject(v))
    throw new MergeError(`${what} is not a JSON object`);
  return cloneJson(v) as Fields;
}

/* ---------------------------------------------------------------- clocks */

/*
 * The code points of s up to its first NUL, as strcmp sees the C string.
 * UTF-8 keeps code point order, so comparing these compares the bytes.
 */
function cmpCodePoints(a: string, b: string): number {
  let i = 0;
  let j = 0;
  for (;;) {
    const ca = i < a.length ? (a.codePointAt(i) as number) : 0;
    const cb = j < b.length ? (b.codePointAt(j) as number) : 0;
    if (ca !== cb)
      return ca < cb ? -1 : 1;
    if (ca === 0)
      return 0; /* both ended (or a NUL, which ends a C string) */
    i += ca > 0xffff ? 2 : 1;
    j += cb > 0xffff ? 2 : 1;
  }
}

/*
 * Orders two clocks: by hlc, then by client_id in UTF-8 byte order (as C's
 * strcmp, not JavaScript's UTF-16 order: "\u{1F600}" sorts after "\uFFFF").
 * -1, 0 or 1.  Cannot fail.
 */
export function clockCmp(h1: bigint, c1: string, h2: bigint, c2: string): number {
  if (h1 !== h2)
    return h1 < h2 ? -1 : 1;
  return cmpCodePoints(c1, c2);
}

/*
 * The UTF-8 length of s, or -1 when s is not well-formed (a lone
 * surrogate: no UTF-8 text, so jansson would never have read it).
 */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80)
      n += 1;
    else if (c < 0x800)
      n += 2;
    else if (c >= 0xd800 && c <= 0xdbff) {
      const d = i + 1 < s.length ? s.charCodeAt(i + 1) : 0;
      if (d < 0xdc00 || d > 0xdfff)
        return -1;
      n += 4;
      i++;
    } else if (c >= 0xdc00 && c <= 0xdfff)
      return -1;
    else
      n += 3;
  }
  return n;
}

/* True when client_id is a string of 1 to 64 bytes of UTF-8 without a NUL. */
export function clientIdOk(clientId: unknown): clientId is string {
  if (typeof clientId !== 'string' || clientId.includes('\0'))
    return false;
  const n = utf8Length(clientId);
  return n >= 1 && n <= CLIENT_ID_MAX;
}

/*
 * The clock that last won col in clocks, or null when the field has no
 * clock or a malformed one (then any op beats it, as on the server).
 */
function clockGet(clocks: object, col: string): { hlc: bigint; clientId: string } | null {
  const entry = own(clocks, col);
  if (!Array.isArray(entry))
    return null;
  const h: unknown = entry[0];
  const c: unknown = entry[1];
  if (typeof c !== 'string' || !isHlc(h))
    return null;
  return { hlc: parseHlc(h), clientId: c };
}

/* ---------------------------------------------------------------- rows */

/* A row that is unknown: no fields, no clocks, not deleted (sl_row_init). */
export function emptyRow(): Row {
  return { fields: null, clocks: {}, deleted: false };
}

/* A deep copy of row (row_copy); MergeError when its parts are not JSON. */
function rowCopy(row: Row): Row {
  if (!isObject(row))
    throw new MergeError('a row is not an object');
  const fields = row.fields === null || row.fields === undefined ? null : cloneObject(row.fields, 'a row\'s fields');
  const clocks = row.clocks === null || row.clocks === undefined ? {} : cloneObject(row.clocks, 'a row\'s clocks');
  return { fields, clocks: clocks as unknown as Record<string, FieldClock>, deleted: row.deleted === true };
}

/*
 * The row of one element of a snapshot's rows: {"fields": {...}, "clocks":
 * {...}} (other keys are ignored; clocks may be absent).  Throws MergeError
 * (SL_EINVAL) when fields is not an object or clocks is present and not an
 * object.  Clock entries are kept as sent: a malformed one counts as none.
 */
export function rowFromSnapshot(snapshotRow: unknown): Row {
  if (!isObject(snapshotRow))
    throw new MergeError('a snapshot row is not a JSON object');
  const fields = own(snapshotRow, 'fields');
  const clocks = own(snapshotRow, 'clocks');
  if (!isObject(fields))
    throw new MergeError('a snapshot row\'s fields are not a JSON object');
  if (clocks !== undefined && !isObject(clocks))
    throw new MergeError('a snapshot row\'s clocks are not a JSON object');
  return {
    fields: cloneObject(fields, 'fields'),
    clocks: (clocks === undefined ? {} : cloneObject(clocks, 'clocks')) as unknown as Record<string, FieldClock>,
    deleted: false,
  };
}

/*
 * Applies an upsert with clock (hlc, hlcText, clientId) to row, in place:
 * every field of a row with no fields yet, else each field whose clock it
 * beats.  fields may be null (an op that names no field still makes the row
 * known).  Returns whether anything was written.  Callers work on copies.
 */
function upsertInto(row: Row, fields: Fields | null, hlc: bigint, hlcText: string, clientId: string): boolean {
  let changed = false;
  const newRow = row.fields === null;
  if (newRow) {
    row.fields = {};
    changed = true;
  }
  if (fields === null)
    return changed;
  const target = row.fields as Fields;
  for (const col of Object.keys(fields)) {
    if (!newRow) {
      const c = clockGet(row.clocks, col);
      if (c !== null && clockCmp(hlc, clientId, c.hlc, c.clientId) <= 0)
        continue; /* confirmed (or an earlier op) holds a clock as new or newer */
    }
    setOwn(target, col, cloneJson(fields[col]));
    setOwn(row.clocks, col, [hlcText, clientId]);
    changed = true;
  }
  return changed;
}

/*
 * Makes row a tombstone, in place: no field values and no clocks (they can
 * never matter again, and dropping them makes every order of application
 * end in the same state).  Returns false when it already was one.
 */
function deleteInto(row: Row): boolean {
  if (row.deleted)
    return false;
  row.deleted = true;
  row.fields = null;
  row.clocks = {};
  return true;
}

/*
 * The visible row from confirmed state and the row's pending ops in outbox
 * order, with one outcome per op.  Its clocks are the winning clocks,
 * pending ops' included.  Throws MergeError (SL_EINVAL) when an op has a bad
 * hlc, a bad client_id, a bad kind or fields that are not an object; every
 * op is checked before anything is built.
 */
export function mergeVisible(confirmed: Row, ops: readonly PendingOp[]): { visible: Row; outcomes: MergeOutcome[] } {
  if (!Array.isArray(ops))
    throw new MergeError('pending ops are not an array');
  ops.forEach((op, i) => {
    if (!isObject(op))
      throw new MergeError(`pending op ${i} is not an object`);
    if (!isHlc(op.hlc))
      throw new MergeError(`pending op ${i} has a malformed hlc`);
    if (!clientIdOk(op.client_id))
      throw new MergeError(`pending op ${i} has a bad client_id (1-64 bytes of UTF-8, no NUL)`);
    if (op.kind !== 'upsert' && op.kind !== 'delete')
      throw new MergeError(`pending op ${i} has an unknown kind`);
    if (op.kind === 'upsert' && op.fields !== undefined && op.fields !== null && !isObject(op.fields))
      throw new MergeError(`pending op ${i}'s fields are not an object`);
  });
  const out = rowCopy(confirmed);
  const outcomes: MergeOutcome[] = [];
  for (const op of ops) {
    if (out.deleted) {
      outcomes.push('absorbed');
      continue;
    }
    outcomes.push('applied');
    if (op.kind === 'delete') {
      deleteInto(out);
      continue;
    }
    upsertInto(out, op.fields ?? null, parseHlc(op.hlc), op.hlc, op.client_id);
  }
  return { visible: out, outcomes };
}

/*
 * Applies one entry of a `changes` frame (PROTOCOL.md: {seq, op_id,
 * client_id, table, row, group, kind, fields, hlc}; only kind, fields, hlc
 * and client_id are read, and the caller has matched table and row) to a
 * copy of the row's confirmed state.  An upsert sets each field whose
 * confirmed clock it beats; a delete makes the row a tombstone (no field
 * values, no clocks); nothing changes a tombstone.  So applying a change
 * twice, or a change older than what confirmed holds, changes nothing, and
 * any order of application converges.  Returns the new row (always a fresh
 * copy) and whether it differs.  Throws MergeError (SL_EINVAL) for a
 * malformed change; confirmed is never changed.
 */
export function applyChange(confirmed: Row, change: unknown): { row: Row; changed: boolean } {
  if (!isObject(change))
    throw new MergeError('a change is not a JSON object');
  const kind = own(change, 'kind');
  const hlc = own(change, 'hlc');
  const clientId = own(change, 'client_id');
  const fields = own(change, 'fields');
  if (kind !== 'upsert' && kind !== 'delete')
    throw new MergeError('a change\'s kind is not "upsert" or "delete"');
  if (!isHlc(hlc))
    throw new MergeError('a change\'s hlc is malformed');
  if (!clientIdOk(clientId))
    throw new MergeError('a change\'s client_id is not 1-64 bytes of UTF-8 without a NUL');
  if (kind === 'upsert' && fields !== undefined && fields !== null && !isObject(fields))
    throw new MergeError('a change\'s fields are not an object');

  const out = rowCopy(confirmed);
  if (out.deleted)
    return { row: out, changed: false }; /* absorbing: nothing changes a tombstone */
  let changed: boolean;
  if (kind === 'delete')
    changed = deleteInto(out);
  else /* fields null or absent: an upsert that won nothing */
    changed = upsertInto(out, isObject(fields) ? (fields as Fields) : null, parseHlc(hlc), hlc, clientId);
  return { row: out, changed }; /* unchanged: out is still a plain copy */
}

// web/test/protocol.test.mjs: synclog.v1 frames (src/protocol.ts): client
// frames as PROTOCOL.md writes them, every server frame type read into fresh
// objects of the known fields only, and hostile frames refused with a
// ProtocolError (code bad_frame) instead of reaching the store.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  LIMITS,
  ProtocolError,
  encodeOp,
  helloFrame,
  parseServerFrame,
  pingFrame,
  pushFrame,
} from '../build/lib/protocol.js';

const H = '0000018c2f3a4b5c';
const H2 = '0000018c2f3a4b5d';
const UUID = '0b9a3c4e-5f60-4718-9a2b-3c4d5e6f7a8b';

const goodChange = (seq, extra = {}) => ({
  seq, op_id: UUID, client_id: 'c1', table: 'issues', row: 'r1', group: 'g1',
  kind: 'upsert', fields: { title: 'x' }, hlc: H, ...extra,
});
const changesText = (changes, cursor) => JSON.stringify({ type: 'changes', changes, cursor });

function refused(text, pattern) {
  assert.throws(() => parseServerFrame(text), (e) => {
    assert.ok(e instanceof ProtocolError, `not a ProtocolError: ${e}`);
    assert.equal(e.code, 'bad_frame');
    if (pattern) assert.match(e.message, pattern);
    return true;
  });
}

// ------------------------------------------------------------ client frames

test('hello carries client_id, token, groups, cursor and hlc, and nothing else', () => {
  const text = helloFrame({ client_id: 'c1', token: 't0k', groups: ['g1', 'g2'], cursor: 42, hlc: H });
  assert.deepEqual(JSON.parse(text), { type: 'hello', client_id: 'c1', token: 't0k', groups: ['g1', 'g2'], cursor: 42, hlc: H });
});

test('push sends ops in order as op objects: no seq, no fields for a delete', () => {
  const ops = [
    { seq: 7, id: 'a', table: 'issues', row: 'r1', kind: 'upsert', fields: { title: 'é "q"', n: 1.5, j: { a: [1] } }, hlc: H },
    { seq: 9, id: 'b', table: 'issues', row: 'r2', kind: 'delete', fields: {}, hlc: H2 },
  ];
  const f = JSON.parse(pushFrame(ops));
  assert.deepEqual(f, {
    type: 'push',
    ops: [
      { id: 'a', table: 'issues', row: 'r1', kind: 'upsert', fields: { title: 'é "q"', n: 1.5, j: { a: [1] } }, hlc: H },
      { id: 'b', table: 'issues', row: 'r2', kind: 'delete', hlc: H2 },
    ],
  });
  assert.deepEqual(JSON.parse(encodeOp(ops[1])), f.ops[1]);
  assert.deepEqual(JSON.parse(pushFrame([])), { type: 'push', ops: [] });
});

test('ping', () => {
  assert.deepEqual(JSON.parse(pingFrame()), { type: 'ping' });
});

// ------------------------------------------------------------ server frames

test('welcome: known fields only, fresh objects', () => {
  const text = JSON.stringify({
    type: 'welcome', cursor: 12, hlc: H, groups: ['g1'], extra: 1,
    tables: { issues: { pk: 'id', group: 'team', columns: { id: 'uuid', team: 'text', title: 'text' }, x: 2 } },
  });
  const f = parseServerFrame(text);
  assert.deepEqual(f, {
    type: 'welcome', cursor: 12, hlc: H, groups: ['g1'],
    tables: { issues: { pk: 'id', group: 'team', columns: { id: 'uuid', team: 'text', title: 'text' } } },
  });
  assert.equal('extra' in f, false);
});

test('changes: each change as types.ts has it; group null omitted; a delete has no fields', () => {
  const f = parseServerFrame(changesText([
    goodChange(5, { junk: true }),
    goodChange(9, { kind: 'delete', fields: 'whatever', group: null }),
  ], 9));
  assert.deepEqual(f, {
    type: 'changes', cursor: 9,
    changes: [
      { seq: 5, op_id: UUID, client_id: 'c1', table: 'issues', row: 'r1', group: 'g1', kind: 'upsert', fields: { title: 'x' }, hlc: H },
      { seq: 9, op_id: UUID, client_id: 'c1', table: 'issues', row: 'r1', kind: 'delete', fields: {}, hlc: H },
    ],
  });
  assert.equal('group' in f.changes[1], false);
  assert.deepEqual(parseServerFrame(changesText([], 0)), { type: 'changes', changes: [], cursor: 0 });
});

test('snapshot, ack, pong, error', () => {
  assert.deepEqual(parseServerFrame(JSON.stringify({
    type: 'snapshot', cursor: 3, done: true,
    rows: [{ table: 'issues', row: 'r1', fields: { title: 'x' }, clocks: { title: [H, 'c1'] }, z: 1 },
           { table: 'issues', row: 'r2', fields: {} }],
  })), {
    type: 'snapshot', cursor: 3, done: true,
    rows: [{ table: 'issues', row: 'r1', fields: { title: 'x' }, clocks: { title: [H, 'c1'] } },
           { table: 'issues', row: 'r2', fields: {}, clocks: {} }],
  });
  assert.deepEqual(parseServerFrame(JSON.stringify({
    type: 'ack', acked: [UUID], rejected: [{ id: 'b', code: 'check_violation', message: 'no', z: 1 }], hlc: H,
  })), { type: 'ack', acked: [UUID], rejected: [{ id: 'b', code: 'check_violation', message: 'no' }], hlc: H });
  assert.deepEqual(parseServerFrame(`{"type":"pong","hlc":"${H}"}`), { type: 'pong', hlc: H });
  assert.deepEqual(parseServerFrame('{"type":"error","code":"rate_limited","message":"slow down"}'),
    { type: 'error', code: 'rate_limited', message: 'slow down' });
});

test('a well-formed frame of an unknown type is null (ignored)', () => {
  assert.equal(parseServerFrame('{"type":"notice","text":"hi"}'), null);
  assert.equal(parseServerFrame('{"type":"hello"}'), null);
});

test('seq and cursor: integers in [0, 2^53)', () => {
  const max = 2 ** 53 - 1;
  assert.equal(parseServerFrame(changesText([goodChange(max)], max)).changes[0].seq, max);
  refused(changesText([goodChange(2 ** 53)], max), /seq/);
  refused(changesText([goodChange(1)], 2 ** 53), /cursor/);
  refused(changesText([goodChange(-1)], 1), /seq/);
  refused(changesText([goodChange(1.5)], 2), /seq/);
  refused(changesText([goodChange('3')], 3), /seq/);
  refused('{"type":"changes","changes":[],"cursor":1e400}', /cursor/);
  refused(`{"type":"welcome","cursor":-1,"hlc":"${H}","groups":[],"tables":{}}`, /cursor/);
});

test('changes out of seq order, repeated, or beyond the cursor are refused', () => {
  refused(changesText([goodChange(5), goodChange(4)], 5), /increasing seq order/);
  refused(changesText([goodChange(5), goodChange(5)], 5), /increasing seq order/);
  refused(changesText([goodChange(5)], 4), /below the last change/);
});

test('hlc: 16 lowercase hex digits', () => {
  for (const bad of ['0000018C2F3A4B5C', '0000018c2f3a4b5', '0000018c2f3a4b5cd', 'g000018c2f3a4b5c', 12, null]) {
    refused(changesText([goodChange(1, { hlc: bad })], 1), /hlc/);
    refused(JSON.stringify({ type: 'pong', hlc: bad }), /hlc/);
  }
});

// A table of hostile or broken frames: every one is refused.
const hostile = [
  ['not JSON', 'nope'],
  ['truncated JSON', '{"type":"changes","changes":['],
  ['empty', ''],
  ['an array', '[{"type":"pong"}]'],
  ['a string', '"welcome"'],
  ['null', 'null'],
  ['no type', '{"cursor":1}'],
  ['a numeric type', '{"type":3}'],
  ['welcome without tables', `{"type":"welcome","cursor":0,"hlc":"${H}","groups":[]}`],
  ['welcome groups not strings', `{"type":"welcome","cursor":0,"hlc":"${H}","groups":[1],"tables":{}}`],
  ['welcome tables an array', `{"type":"welcome","cursor":0,"hlc":"${H}","groups":[],"tables":[]}`],
  ['a table whose pk is not a column', `{"type":"welcome","cursor":0,"hlc":"${H}","groups":[],"tables":{"t":{"pk":"id","group":"g","columns":{"g":"text"}}}}`],
  ['a column type not a string', `{"type":"welcome","cursor":0,"hlc":"${H}","groups":[],"tables":{"t":{"pk":"id","group":"g","columns":{"id":5}}}}`],
  ['a table without group', `{"type":"welcome","cursor":0,"hlc":"${H}","groups":[],"tables":{"t":{"pk":"id","columns":{"id":"text"}}}}`],
  ['a reserved table name', `{"type":"welcome","cursor":0,"hlc":"${H}","groups":[],"tables":{"_SYNCLOG_outbox":{"pk":"id","group":"g","columns":{"id":"text"}}}}`],
  ['a sqlite_ table', `{"type":"welcome","cursor":0,"hlc":"${H}","groups":[],"tables":{"sqlite_master":{"pk":"id","group":"g","columns":{"id":"text"}}}}`],
  ['changes not an array', '{"type":"changes","changes":{},"cursor":1}'],
  ['changes without cursor', `{"type":"changes","changes":[]}`],
  ['a change not an object', changesText([5], 5)],
  ['table not a string', changesText([goodChange(1, { table: 1 })], 1)],
  ['row not a string', changesText([goodChange(1, { row: 7 })], 1)],
  ['row missing', changesText([goodChange(1, { row: undefined })], 1)],
  ['an empty table name', changesText([goodChange(1, { table: '' })], 1)],
  ['kind unknown', changesText([goodChange(1, { kind: 'merge' })], 1)],
  ['fields not an object', changesText([goodChange(1, { fields: [1, 2] })], 1)],
  ['fields null on an upsert', changesText([goodChange(1, { fields: null })], 1)],
  ['client_id empty', changesText([goodChange(1, { client_id: '' })], 1)],
  ['client_id of 65 bytes', changesText([goodChange(1, { client_id: 'x'.repeat(65) })], 1)],
  ['op_id missing', changesText([goodChange(1, { op_id: null })], 1)],
  ['group a number', changesText([goodChange(1, { group: 3 })], 1)],
  ['a lone surrogate in a row id', `{"type":"changes","changes":[{"seq":1,"op_id":"a","client_id":"c","table":"t","row":"\\ud800","kind":"upsert","fields":{},"hlc":"${H}"}],"cursor":1}`],
  ['a NUL in a row id', changesText([goodChange(1, { row: 'a\u0000b' })], 1)],
  ['a lone surrogate in a field value', `{"type":"changes","changes":[{"seq":1,"op_id":"a","client_id":"c","table":"t","row":"r","kind":"upsert","fields":{"x":["\\udc00"]},"hlc":"${H}"}],"cursor":1}`],
  ['snapshot done not a boolean', '{"type":"snapshot","rows":[],"cursor":1,"done":1}'],
  ['snapshot rows not an array', '{"type":"snapshot","rows":{},"cursor":1,"done":true}'],
  ['snapshot row fields missing', '{"type":"snapshot","rows":[{"table":"t","row":"r"}],"cursor":1,"done":true}'],
  ['snapshot clocks an array', '{"type":"snapshot","rows":[{"table":"t","row":"r","fields":{},"clocks":[]}],"cursor":1,"done":true}'],
  ['a clock not a pair', `{"type":"snapshot","rows":[{"table":"t","row":"r","fields":{},"clocks":{"a":["${H}"]}}],"cursor":1,"done":true}`],
  ['a clock with a bad hlc', `{"type":"snapshot","rows":[{"table":"t","row":"r","fields":{},"clocks":{"a":["xyz","c1"]}}],"cursor":1,"done":true}`],
  ['a clock with an empty client_id', `{"type":"snapshot","rows":[{"table":"t","row":"r","fields":{},"clocks":{"a":["${H}",""]}}],"cursor":1,"done":true}`],
  ['a clock of three', `{"type":"snapshot","rows":[{"table":"t","row":"r","fields":{},"clocks":{"a":["${H}","c1",3]}}],"cursor":1,"done":true}`],
  ['ack acked not an array', `{"type":"ack","acked":"a","rejected":[],"hlc":"${H}"}`],
  ['ack acked ids not strings', `{"type":"ack","acked":[1],"rejected":[],"hlc":"${H}"}`],
  ['ack without rejected', `{"type":"ack","acked":[],"hlc":"${H}"}`],
  ['a rejection without code', `{"type":"ack","acked":[],"rejected":[{"id":"a","message":"m"}],"hlc":"${H}"}`],
  ['ack without hlc', '{"type":"ack","acked":[],"rejected":[]}'],
  ['error without code', '{"type":"error","message":"m"}'],
  ['error code a number', '{"type":"error","code":401,"message":"m"}'],
];
for (const [name, text] of hostile) test(`refused: ${name}`, () => refused(text));

test('over-long strings are refused, counted in UTF-8 bytes', () => {
  assert.equal(parseServerFrame(changesText([goodChange(1, { row: 'r'.repeat(LIMITS.keyBytes) })], 1)).changes[0].row.length, LIMITS.keyBytes);
  refused(changesText([goodChange(1, { row: 'r'.repeat(LIMITS.keyBytes + 1) })], 1), /row: longer than/);
  /* 4097 characters, 8194 bytes */
  refused(changesText([goodChange(1, { row: 'é'.repeat(LIMITS.keyBytes / 2 + 1) })], 1), /row: longer than/);
  refused(changesText([goodChange(1, { row: 'x'.repeat(1 << 20) })], 1), /row: longer than/);
  refused(changesText([goodChange(1, { table: 't'.repeat(LIMITS.nameBytes + 1) })], 1), /table: longer than/);
  refused(changesText([goodChange(1, { fields: { ['c'.repeat(LIMITS.nameBytes + 1)]: 1 } })], 1), /column name/);
  refused(JSON.stringify({ type: 'error', code: 'x', message: 'm'.repeat(LIMITS.messageBytes + 1) }), /message: longer than/);
  /* a client_id of 64 bytes in 16 four-byte characters is fine, 17 are not */
  assert.ok(parseServerFrame(changesText([goodChange(1, { client_id: '😀'.repeat(16) })], 1)));
  refused(changesText([goodChange(1, { client_id: '😀'.repeat(17) })], 1), /client_id/);
});

test('a frame longer than the limit is refused before it is parsed', () => {
  const big = `{"type":"pong","hlc":"${H}","pad":"${'x'.repeat(LIMITS.frameChars)}"}`;
  refused(big, /limit/);
});

test('field values nested deeper than the limit are refused', () => {
  const nest = (d) => '['.repeat(d) + ']'.repeat(d);
  const frame = (d) => `{"type":"changes","changes":[{"seq":1,"op_id":"a","client_id":"c","table":"t","row":"r","kind":"upsert","fields":{"j":${nest(d)}},"hlc":"${H}"}],"cursor":1}`;
  assert.ok(parseServerFrame(frame(LIMITS.depth - 1)));
  refused(frame(LIMITS.depth + 1), /nested deeper/);
  refused(frame(100000)); /* deep enough to break a recursive walk: refused, no RangeError */
});

test('"__proto__" as a table, column or field name is an own property, not a prototype', () => {
  const f = parseServerFrame(`{"type":"welcome","cursor":0,"hlc":"${H}","groups":[],"tables":{"__proto__":{"pk":"__proto__","group":"g","columns":{"__proto__":"text","g":"text"}}}}`);
  assert.equal(Object.getPrototypeOf(f.tables), Object.prototype);
  assert.deepEqual(Object.keys(f.tables), ['__proto__']);
  assert.equal(Object.getPrototypeOf(f.tables.__proto__), Object.prototype);
  assert.deepEqual(Object.keys(Object.getOwnPropertyDescriptor(f.tables, '__proto__').value.columns), ['__proto__', 'g']);
  const s = parseServerFrame(`{"type":"snapshot","rows":[{"table":"t","row":"r","fields":{"__proto__":1},"clocks":{"__proto__":["${H}","c"]}}],"cursor":1,"done":true}`);
  assert.deepEqual(Object.keys(s.rows[0].clocks), ['__proto__']);
  assert.deepEqual(Object.keys(s.rows[0].fields), ['__proto__']);
  assert.equal({}.polluted, undefined);
});

test('ProtocolError is an Error with code bad_frame', () => {
  const e = new ProtocolError('x');
  assert.ok(e instanceof Error);
  assert.equal(e.code, 'bad_frame');
  assert.equal(e.name, 'ProtocolError');
});

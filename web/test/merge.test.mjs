// web/test/merge.test.mjs: the local model's merge (src/merge.ts), the cases
// of tests/client/test_core.c (merge, changes) ported:
//   - merge: confirmed state + pending ops → the visible row, its clocks and
//     each op's outcome; confirmed state is never changed;
//   - changes: confirmed state + incoming changes → confirmed state after
//     them; each case also checks that applying every change a second time
//     changes nothing and that every order of application ends the same;
//   - malformed ops and changes are refused with MergeError.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  MergeError, applyChange, clockCmp, emptyRow, mergeVisible, rowFromSnapshot,
} from '../build/lib/merge.js';

const T1 = '0000000100000000';
const T2 = '0000000200000000';
const T3 = '0000000300000000';
const T4 = '0000000400000000';

// Key-sorted JSON text, to compare objects whatever their key order.
function sorted(v) {
  if (Array.isArray(v))
    return v.map(sorted);
  if (v !== null && typeof v === 'object')
    return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sorted(v[k])]));
  return v;
}
const dump = (v) => JSON.stringify(sorted(v));

// Confirmed state in the cases' format: null (unknown), {deleted: true} (a
// tombstone with nothing else), or a snapshot row with an optional deleted.
function rowOf(c) {
  if (c === null)
    return emptyRow();
  if (!('fields' in c))
    return { ...emptyRow(), deleted: c.deleted === true };
  return { ...rowFromSnapshot(c), deleted: c.deleted === true };
}

const up = (fields, hlc, client_id = 'me') => (fields === undefined ? { kind: 'upsert', hlc, client_id } : { kind: 'upsert', fields, hlc, client_id });
const del = (hlc, client_id = 'me', fields) => (fields === undefined ? { kind: 'delete', hlc, client_id } : { kind: 'delete', fields, hlc, client_id });

// [name, confirmed, ops, visible fields (null: hidden), clocks (undefined: not checked), outcomes, deleted]
const mergeCases = [
  ['no pending ops shows confirmed state',
   { fields: { id: 'r', title: 'a' }, clocks: { title: [T1, 's'] } }, [],
   { id: 'r', title: 'a' }, { title: [T1, 's'] }, '', false],
  ['unknown row and no ops is hidden', null, [], null, {}, '', false],
  ['a pending upsert creates an unknown row', null, [up({ id: 'r', title: 'x' }, T2)],
   { id: 'r', title: 'x' }, { id: [T2, 'me'], title: [T2, 'me'] }, 'A', false],
  ['a newer pending upsert wins the field',
   { fields: { title: 'a', state: 'open' }, clocks: { title: [T1, 's'], state: [T1, 's'] } },
   [up({ title: 'b' }, T2)],
   { state: 'open', title: 'b' }, { state: [T1, 's'], title: [T2, 'me'] }, 'A', false],
  ['an older pending upsert loses the field (rebase)',
   { fields: { title: 'theirs' }, clocks: { title: [T3, 'other'] } }, [up({ title: 'mine' }, T2)],
   { title: 'theirs' }, { title: [T3, 'other'] }, 'A', false],
  ['per field: wins one field, loses another',
   { fields: { a: 1, b: 1 }, clocks: { a: [T1, 'x'], b: [T3, 'x'] } }, [up({ a: 2, b: 2 }, T2)],
   { a: 2, b: 1 }, { a: [T2, 'me'], b: [T3, 'x'] }, 'A', false],
  ['equal hlc, greater client_id wins',
   { fields: { t: 'old' }, clocks: { t: [T2, 'aaa'] } }, [up({ t: 'new' }, T2, 'bbb')],
   { t: 'new' }, { t: [T2, 'bbb'] }, 'A', false],
  ['equal hlc, smaller client_id loses',
   { fields: { t: 'old' }, clocks: { t: [T2, 'bbb'] } }, [up({ t: 'new' }, T2, 'aaa')],
   { t: 'old' }, { t: [T2, 'bbb'] }, 'A', false],
  ['client_id ties break in byte order (uppercase below lowercase, prefix below longer)',
   { fields: { a: 0, b: 0 }, clocks: { a: [T2, 'Zed'], b: [T2, 'me'] } }, [up({ a: 1, b: 1 }, T2, 'meX')],
   { a: 1, b: 1 }, undefined, 'A', false],
  ['client_id byte order treats bytes above 0x7f as large',
   { fields: { a: 0 }, clocks: { a: [T2, '\u00e9'] } }, [up({ a: 1 }, T2, 'z')],
   { a: 0 }, undefined, 'A', false],
  ['client_id byte order is UTF-8\'s, not UTF-16\'s (an astral character above U+FFFF)',
   { fields: { a: 0 }, clocks: { a: [T2, '\uffff'] } }, [up({ a: 1 }, T2, '\u{1F600}')],
   { a: 1 }, undefined, 'A', false],
  ['the same clock does not beat itself (an op already confirmed)',
   { fields: { t: 'x' }, clocks: { t: [T2, 'me'] } }, [up({ t: 'x' }, T2)],
   { t: 'x' }, { t: [T2, 'me'] }, 'A', false],
  ['a field without a clock is won by any op',
   { fields: { t: 'default', u: 1 }, clocks: { u: [T4, 's'] } }, [up({ t: 'set' }, T1)],
   { t: 'set', u: 1 }, undefined, 'A', false],
  ['a malformed confirmed clock counts as none, as on the server',
   { fields: { a: 0, b: 0, c: 0 }, clocks: { a: [T4], b: ['000000000000000X', 's'], c: T4 } },
   [up({ a: 1, b: 1, c: 1 }, T1)],
   { a: 1, b: 1, c: 1 }, undefined, 'A', false],
  ['fields absent from an op are left alone',
   { fields: { a: 1, b: 2 }, clocks: {} }, [up({}, T2), up(undefined, T3)],
   { a: 1, b: 2 }, {}, 'AA', false],
  ['an upsert without fields makes an unknown row visible, empty', null, [up(undefined, T3)], {}, {}, 'A', false],
  ['null is a value that wins like any other',
   { fields: { a: 1 }, clocks: { a: [T1, 's'] } }, [up({ a: null, b: { nested: [1, 2] } }, T2)],
   { a: null, b: { nested: [1, 2] } }, undefined, 'A', false],
  ['several pending ops apply in outbox order',
   { fields: { t: 'a' }, clocks: { t: [T1, 's'] } }, [up({ t: 'b', n: 1 }, T2), up({ t: 'c' }, T3)],
   { n: 1, t: 'c' }, { n: [T2, 'me'], t: [T3, 'me'] }, 'AA', false],
  ['pending ops are merged by clock, not by outbox order',
   { fields: { t: 'a' }, clocks: { t: [T1, 's'] } }, [up({ t: 'late' }, T3), up({ t: 'early' }, T2)],
   { t: 'late' }, { t: [T3, 'me'] }, 'AA', false],
  ['a pending delete hides the row',
   { fields: { t: 'a' }, clocks: { t: [T1, 's'] } }, [del(T2)], null, undefined, 'A', true],
  ['a pending delete with an older clock still hides the row (absorbing)',
   { fields: { t: 'a' }, clocks: { t: [T4, 's'] } }, [del(T1)], null, undefined, 'A', true],
  ['pending delete then upsert: the upsert is absorbed',
   { fields: { t: 'a' }, clocks: { t: [T1, 's'] } }, [del(T2), up({ t: 'again' }, T3)], null, undefined, 'AX', true],
  ['upsert then pending delete hides the row', null, [up({ t: 'new' }, T2), del(T3)], null, undefined, 'AA', true],
  ['a pending delete of an unknown row leaves a tombstone that absorbs',
   null, [del(T2), up({ t: 'x' }, T3)], null, undefined, 'AX', true],
  ['two pending deletes: the second is absorbed',
   { fields: { t: 'a' }, clocks: {} }, [del(T2), del(T3)], null, undefined, 'AX', true],
  ['a row deleted on the server stays deleted; pending upserts are absorbed',
   { fields: {}, clocks: { t: [T1, 's'] }, deleted: true }, [up({ t: 'x' }, T4, 'zzz'), del(T4, 'zzz')],
   null, undefined, 'XX', true],
  ['a tombstone of a never-seen row absorbs pending upserts',
   { deleted: true }, [up({ t: 'x' }, T4)], null, undefined, 'X', true],
  ['a delete\'s fields are ignored',
   { fields: { t: 'a' }, clocks: {} }, [del(T2, 'me', { t: 'b' })], null, undefined, 'A', true],
  ['a column named __proto__ or constructor is a column like any other',
   { fields: { constructor: 1 }, clocks: { constructor: [T3, 's'] } },
   [up(JSON.parse('{"__proto__": "p", "constructor": 2, "toString": 3}'), T2)],
   JSON.parse('{"__proto__": "p", "constructor": 1, "toString": 3}'), undefined, 'A', false],
];

for (const [name, confirmedText, ops, wantFields, wantClocks, outcomes, wantDeleted] of mergeCases) {
  test(`merge: ${name}`, () => {
    const confirmed = rowOf(confirmedText);
    const before = dump(confirmed);
    const opsBefore = dump(ops);
    const { visible, outcomes: got } = mergeVisible(confirmed, ops);
    const shown = visible.fields !== null && !visible.deleted;
    assert.equal(dump(shown ? visible.fields : null), dump(wantFields), 'visible fields');
    assert.equal(visible.deleted, wantDeleted, 'deleted');
    if (wantClocks !== undefined)
      assert.equal(dump(visible.clocks), dump(wantClocks), 'clocks');
    assert.equal(got.map((o) => (o === 'absorbed' ? 'X' : 'A')).join(''), outcomes, 'outcomes');
    assert.equal(dump(confirmed), before, 'confirmed state changed');
    assert.equal(dump(ops), opsBefore, 'the ops changed');
    if (shown && Object.prototype.hasOwnProperty.call(visible.fields, '__proto__'))
      assert.equal(Object.getPrototypeOf(visible.fields), Object.prototype, 'a __proto__ field set the prototype');
  });
}

test('merge: the visible row holds its own copies of the values', () => {
  const fields = { t: { deep: 1 } };
  const confirmed = rowFromSnapshot({ fields: { c: { deep: 'c' } }, clocks: {} });
  const { visible } = mergeVisible(confirmed, [up(fields, T1)]);
  fields.t.deep = 2;
  confirmed.fields.c.deep = 'changed';
  assert.equal(dump(visible.fields), dump({ c: { deep: 'c' }, t: { deep: 1 } }));
});

const goodOp = up({ a: 1 }, T1);
const badOps = [
  ['a bad hlc', { kind: 'upsert', hlc: '123', client_id: 'me' }],
  ['no hlc', { kind: 'upsert', client_id: 'me' }],
  ['an uppercase hlc', { kind: 'upsert', hlc: '00000001000000AA', client_id: 'me' }],
  ['an empty client_id', { kind: 'upsert', hlc: T1, client_id: '' }],
  ['a 65-byte client_id', { kind: 'upsert', hlc: T1, client_id: '1'.repeat(65) }],
  ['a client_id of 33 two-byte characters (66 bytes)', { kind: 'upsert', hlc: T1, client_id: '\u00e9'.repeat(33) }],
  ['a client_id with a NUL', { kind: 'upsert', hlc: T1, client_id: 'a\u0000b' }],
  ['a client_id with a lone surrogate', { kind: 'upsert', hlc: T1, client_id: 'a\ud800' }],
  ['an upsert whose fields are not an object', { kind: 'upsert', fields: [1], hlc: T1, client_id: 'me' }],
  ['an op of an unknown kind', { kind: 'merge', hlc: T1, client_id: 'me' }],
];
for (const [name, op] of badOps) {
  test(`merge refuses ${name}`, () => {
    assert.throws(() => mergeVisible(emptyRow(), [goodOp, op]), MergeError);
  });
}

test('merge accepts a client_id of exactly 64 bytes (32 two-byte characters)', () => {
  const { visible } = mergeVisible(emptyRow(), [up({ a: 1 }, T1, '\u00e9'.repeat(32))]);
  assert.equal(visible.fields.a, 1);
});

test('clockCmp orders by hlc, then by client_id in UTF-8 byte order', () => {
  assert.equal(clockCmp(1n, 'z', 2n, 'a'), -1);
  assert.equal(clockCmp(2n, 'a', 1n, 'z'), 1);
  assert.equal(clockCmp(2n, 'me', 2n, 'me'), 0);
  assert.equal(clockCmp(2n, 'Zed', 2n, 'me'), -1);
  assert.equal(clockCmp(2n, 'me', 2n, 'meX'), -1);
  assert.equal(clockCmp(2n, '\u00e9', 2n, 'z'), 1);
  // UTF-16 puts U+1F600 (a surrogate pair, 0xD83D...) below U+FFFF; UTF-8 above.
  assert.ok('\u{1F600}' < '\uffff');
  assert.equal(clockCmp(2n, '\u{1F600}', 2n, '\uffff'), 1);
  assert.equal(clockCmp(2n, '\uffff', 2n, '\u{1F600}'), -1);
  // strcmp stops at a NUL, as the C string does.
  assert.equal(clockCmp(2n, 'a\u0000x', 2n, 'a\u0000y'), 0);
});

// ---------------------------------------------------------------- changes

const CH = (seq, cid, kind, fields, hlc) =>
  ({ seq, op_id: `op${seq}`, client_id: cid, table: 'issues', row: 'r', group: 'g', kind, fields, hlc });

const changeCases = [
  ['an upsert creates an unknown row', null, [CH(1, 'a', 'upsert', { id: 'r', t: 'x' }, T1)],
   { fields: { id: 'r', t: 'x' }, clocks: { id: [T1, 'a'], t: [T1, 'a'] }, deleted: false }],
  ['newer fields replace older ones, others stay',
   { fields: { t: 'x', s: 'open' }, clocks: { t: [T1, 'a'], s: [T1, 'a'] } }, [CH(2, 'b', 'upsert', { t: 'y' }, T2)],
   { fields: { t: 'y', s: 'open' }, clocks: { t: [T2, 'b'], s: [T1, 'a'] }, deleted: false }],
  ['a change older than confirmed changes nothing for those fields',
   { fields: { t: 'new', u: 0 }, clocks: { t: [T3, 'a'], u: [T1, 'a'] } }, [CH(2, 'b', 'upsert', { t: 'old', u: 5 }, T2)],
   { fields: { t: 'new', u: 5 }, clocks: { t: [T3, 'a'], u: [T2, 'b'] }, deleted: false }],
  ['tie on hlc broken by client_id, whichever arrives first', null,
   [CH(1, 'a', 'upsert', { t: 'from a', k: 1 }, T2), CH(2, 'b', 'upsert', { t: 'from b' }, T2)],
   { fields: { t: 'from b', k: 1 }, clocks: { t: [T2, 'b'], k: [T2, 'a'] }, deleted: false }],
  ['a delete makes a tombstone',
   { fields: { t: 'x' }, clocks: { t: [T1, 'a'] } }, [CH(2, 'b', 'delete', {}, T2)],
   { fields: null, clocks: {}, deleted: true }],
  ['a delete is absorbing whatever the clocks', null,
   [CH(1, 'a', 'upsert', { t: 'x' }, T1), CH(2, 'b', 'delete', null, T2), CH(3, 'c', 'upsert', { t: 'late', v: 9 }, T4)],
   { fields: null, clocks: {}, deleted: true }],
  ['a delete of an unknown row leaves a tombstone', null, [CH(1, 'a', 'delete', null, T1)],
   { fields: null, clocks: {}, deleted: true }],
  ['an upsert that won nothing (empty fields) still makes the row known', null, [CH(1, 'a', 'upsert', {}, T1)],
   { fields: {}, clocks: {}, deleted: false }],
  ['concurrent edits to different fields converge field by field',
   { fields: { t: 'x', s: 'open', p: 1 }, clocks: { t: [T1, 'a'], s: [T1, 'a'], p: [T1, 'a'] } },
   [CH(2, 'b', 'upsert', { t: "b's", s: 'closed' }, T3), CH(3, 'c', 'upsert', { t: "c's", p: 3 }, T2),
    CH(4, 'd', 'upsert', { p: 4 }, T4), CH(5, 'a', 'upsert', { s: 'triage' }, T3)],
   { fields: { t: "b's", s: 'closed', p: 4 }, clocks: { t: [T3, 'b'], s: [T3, 'b'], p: [T4, 'd'] }, deleted: false }],
  ['a confirmed field without a clock is won by any change',
   { fields: { t: 'default' }, clocks: {} }, [CH(1, 'a', 'upsert', { t: 'set' }, T1)],
   { fields: { t: 'set' }, clocks: { t: [T1, 'a'] }, deleted: false }],
];

// Applies changes in the given order to a fresh confirmed state (twice over
// when twice), checking each call's `changed` against what it did.
function applyInOrder(confirmedText, changes, order, twice) {
  let row = rowOf(confirmedText);
  for (let pass = 0; pass < (twice ? 2 : 1); pass++) {
    for (const k of order) {
      const before = dump(row);
      const { row: next, changed } = applyChange(row, changes[k]);
      assert.equal(dump(row), before, `change ${k}: applyChange changed its argument`);
      assert.equal(changed, dump(next) !== before, `change ${k}: changed=${changed} but ${before} -> ${dump(next)}`);
      if (pass === 1)
        assert.equal(changed, false, `applying change ${k} again changed the row`);
      row = next;
    }
  }
  return dump({ fields: row.fields, clocks: row.clocks, deleted: row.deleted });
}

function* permutations(a) {
  if (a.length <= 1) {
    yield a;
    return;
  }
  for (let i = 0; i < a.length; i++)
    for (const rest of permutations([...a.slice(0, i), ...a.slice(i + 1)]))
      yield [a[i], ...rest];
}

for (const [name, confirmed, changes, want] of changeCases) {
  const order = changes.map((_, i) => i);
  test(`change: ${name}`, () => {
    assert.equal(applyInOrder(confirmed, changes, order, false), dump(want));
  });
  test(`change: ${name} (idempotent: applied twice)`, () => {
    assert.equal(applyInOrder(confirmed, changes, order, true), dump(want));
  });
  test(`change: ${name} (converges in every order)`, () => {
    let n = 0;
    for (const p of permutations(order)) {
      assert.equal(applyInOrder(confirmed, changes, p, false), dump(want), `order ${p.join(' ')}`);
      n++;
    }
    assert.ok(n >= 1);
  });
}

const badChanges = [
  ['a non-object', [1]],
  ['null', null],
  ['an unknown kind', CH(1, 'a', 'merge', {}, T1)],
  ['a missing kind', { client_id: 'a', hlc: T1, fields: {} }],
  ['a bad hlc', CH(1, 'a', 'upsert', {}, '0000000100000000 ')],
  ['an uppercase hlc', CH(1, 'a', 'upsert', {}, '00000001000000AA')],
  ['a missing client_id', { kind: 'upsert', hlc: T1, fields: {} }],
  ['an empty client_id', CH(1, '', 'upsert', {}, T1)],
  ['a client_id with a NUL', CH(1, 'a\u0000b', 'upsert', {}, T1)],
  ['fields that are not an object', CH(1, 'a', 'upsert', ['t'], T1)],
];
for (const [name, change] of badChanges) {
  test(`change refuses ${name}`, () => {
    const row = rowFromSnapshot({ fields: { t: 'x' }, clocks: { t: [T1, 'a'] } });
    const before = dump(row);
    assert.throws(() => applyChange(row, change), MergeError);
    assert.equal(dump(row), before);
  });
}

test('change: confirmed state holds its own copy of the values', () => {
  const ch = CH(1, 'a', 'upsert', { t: { deep: 1 } }, T1);
  const { row } = applyChange(emptyRow(), ch);
  ch.fields.t.deep = 2;
  assert.equal(dump(row.fields), dump({ t: { deep: 1 } }));
});

test('change: a tombstone is returned as a copy, unchanged', () => {
  const tomb = { ...emptyRow(), deleted: true };
  const { row, changed } = applyChange(tomb, CH(1, 'a', 'upsert', { t: 1 }, T4));
  assert.equal(changed, false);
  assert.equal(row.deleted, true);
  assert.equal(row.fields, null);
  assert.notEqual(row, tomb);
});

test('rowFromSnapshot refuses what C refuses and copies what it takes', () => {
  assert.throws(() => rowFromSnapshot(null), MergeError);
  assert.throws(() => rowFromSnapshot({ clocks: {} }), MergeError);
  assert.throws(() => rowFromSnapshot({ fields: [1] }), MergeError);
  assert.throws(() => rowFromSnapshot({ fields: {}, clocks: [] }), MergeError);
  const src = { fields: { a: [1] }, table: 'ignored' };
  const row = rowFromSnapshot(src);
  src.fields.a.push(2);
  assert.equal(dump(row), dump({ fields: { a: [1] }, clocks: {}, deleted: false }));
});

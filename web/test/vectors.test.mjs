// web/test/vectors.test.mjs: runs the shared vectors of tests/vectors/
// (format in tests/vectors/README.md) against the TypeScript port of the
// clock and the merge, web/build/lib/hlc.js and merge.js (built from
// src/hlc.ts and src/merge.ts by build.mjs).  tests/client/test_vectors.c
// runs the same files against client/hlc.c and client/merge.c, so a case
// that passes here and there is a decision both clients make the same way.
//
// One test per case, named after the case inside a suite named after its
// file ("<file> > <case name>" in suite 70); a mismatch says what was
// expected and what came back.  The vectors' words map to the TS API so:
// error "invalid" is an HlcError (hlc.json) or a MergeError (the others)
// thrown; "range" is an HlcError thrown by now(); "skew" is observe()
// returning false.  Rows are compared as canonical JSON of their own
// enumerable keys (fields, clocks, deleted), so an object with another
// prototype compares equal and a "__proto__" column must be a real key.
//
//   cd web && node build.mjs && node --test test/vectors.test.mjs
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const VECTORS = process.env.SYNCLOG_VECTORS_DIR ?? join(here, '..', '..', 'tests', 'vectors');

let hlc;
let merge;
try {
  hlc = await import('../build/lib/hlc.js');
  merge = await import('../build/lib/merge.js');
} catch (e) {
  throw new Error(`cannot load web/build/lib/hlc.js and merge.js (build them first: cd web && node build.mjs): ${e.message}`);
}
const { HLC_TEXT_LEN, isHlc, parseHlc, formatHlc, HlcError, HlcClock } = hlc;
const { clockCmp, emptyRow, rowFromSnapshot, mergeVisible, applyChange, MergeError } = merge;

// ------------------------------------------------------------ helpers

/* A copy of a vector value that the code under test may change freely. */
const copy = (v) => (v === undefined ? undefined : JSON.parse(JSON.stringify(v)));

/* Canonical text: own enumerable keys sorted, so key order and prototypes do not matter. */
function canon(v) {
  if (v === undefined) return 'undefined';
  if (typeof v === 'bigint') return `${v}n`;
  if (Array.isArray(v)) return `[${v.map(canon).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canon(v[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

/* The row as the vectors write it: only fields, clocks and deleted. */
const rowOf = (r) => (r === null || typeof r !== 'object' ? r : { fields: r.fields, clocks: r.clocks, deleted: r.deleted });

function sameJson(got, want, what) {
  const g = canon(got);
  const w = canon(want);
  assert.ok(g === w, `${what}: got ${g}, want ${w}`);
}

const sameRow = (got, want, what) => sameJson(rowOf(got), want, what);

/* The vector's own hlc text as a bigint, without going through the code under test. */
function vhlc(s, what) {
  assert.ok(typeof s === 'string' && /^[0-9a-f]{16}$/.test(s), `bad vector: ${what} is not an hlc: ${JSON.stringify(s)}`);
  return BigInt(`0x${s}`);
}

const hex = (v) => (typeof v === 'bigint' ? v.toString(16).padStart(16, '0') : String(v));

function throwsAs(fn, cls, what) {
  let got;
  try {
    got = fn();
  } catch (e) {
    assert.ok(e instanceof cls, `${what}: threw ${e?.constructor?.name ?? typeof e} (${e?.message}), want a ${cls.name}`);
    return;
  }
  assert.fail(`${what}: returned ${canon(got)}, want a ${cls.name} thrown`);
}

function load(file) {
  const doc = JSON.parse(readFileSync(join(VECTORS, file), 'utf8'));
  assert.equal(typeof doc.about, 'string', `${file}: needs "about"`);
  assert.ok(Array.isArray(doc.cases) && doc.cases.length > 0, `${file}: needs a non-empty "cases" array`);
  return doc.cases;
}

/* Next permutation of p in lexicographic order; false after the last. */
function nextPerm(p) {
  let i = p.length - 1;
  while (i > 0 && p[i - 1] >= p[i]) i--;
  if (i <= 0) return false;
  let k = p.length - 1;
  while (p[k] <= p[i - 1]) k--;
  [p[i - 1], p[k]] = [p[k], p[i - 1]];
  for (let a = i, b = p.length - 1; a < b; a++, b--) [p[a], p[b]] = [p[b], p[a]];
  return true;
}

// ------------------------------------------------------------ hlc.json

function hlcParse(text, expect) {
  if (expect.error !== undefined) {
    assert.equal(expect.error, 'invalid', 'bad vector: parse can only fail with "invalid"');
    assert.equal(isHlc(text), false, `isHlc(${JSON.stringify(text)}) is true, want false`);
    throwsAs(() => parseHlc(text), HlcError, `parseHlc(${JSON.stringify(text)})`);
    return;
  }
  assert.equal(isHlc(text), true, `isHlc(${JSON.stringify(text)}) is false, want true`);
  const v = parseHlc(text);
  assert.equal(typeof v, 'bigint', `parseHlc gives a ${typeof v}, want a bigint`);
  assert.equal(v >> 16n, BigInt(expect.ms), `ms part ${v >> 16n}, want ${expect.ms}`);
  assert.equal(v & 0xffffn, BigInt(expect.counter), `counter ${v & 0xffffn}, want ${expect.counter}`);
  assert.equal(formatHlc(v), text, `formats back as ${formatHlc(v)}`);
}

function hlcFormat(input, expect) {
  assert.ok(Number.isSafeInteger(input.ms) && input.ms >= 0 && input.ms < 2 ** 48 &&
            Number.isInteger(input.counter) && input.counter >= 0 && input.counter <= 0xffff &&
            typeof expect.text === 'string', 'bad vector: format needs ms, counter and expect.text');
  const v = (BigInt(input.ms) << 16n) | BigInt(input.counter);
  const got = formatHlc(v);
  assert.equal(got, expect.text, `formatHlc(${hex(v)}) gives ${got}, want ${expect.text}`);
  assert.equal(got.length, HLC_TEXT_LEN, `HLC_TEXT_LEN is ${HLC_TEXT_LEN}, the text has ${got.length}`);
  assert.equal(parseHlc(got), v, `${got} does not parse back to ${hex(v)}`);
}

function hlcClock(input, expect) {
  assert.ok(Array.isArray(input.steps) && Number.isInteger(input.max_skew_ms), 'bad vector: clock needs max_skew_ms and steps');
  const clock = new HlcClock(vhlc(input.last, 'clock.last'), BigInt(input.max_skew_ms));
  input.steps.forEach((st, i) => {
    const before = clock.last;
    const ex = st.expect;
    if (st.do === 'now') {
      if (ex.error !== undefined) {
        assert.equal(ex.error, 'range', 'bad vector: now can only fail with "range"');
        throwsAs(() => clock.now(st.wall_ms), HlcError, `step ${i}: now(${st.wall_ms})`);
        assert.equal(clock.last, before, `step ${i}: a refused now moved the clock to ${hex(clock.last)}`);
      } else {
        const want = vhlc(ex.value, `step ${i} expect.value`);
        const got = clock.now(st.wall_ms);
        assert.ok(got === want && clock.last === got,
          `step ${i}: now(${st.wall_ms}) gives ${hex(got)} (last ${hex(clock.last)}), want ${hex(want)}`);
      }
    } else if (st.do === 'observe') {
      const remote = vhlc(st.remote, `step ${i} remote`);
      const want = vhlc(ex.last, `step ${i} expect.last`);
      const wantOk = ex.error === undefined;
      if (!wantOk) assert.equal(ex.error, 'skew', 'bad vector: observe can only fail with "skew"');
      const ok = clock.observe(remote, st.wall_ms);
      assert.equal(ok, wantOk, `step ${i}: observe(${st.remote}, ${st.wall_ms}) gives ${ok}, want ${wantOk}${wantOk ? '' : ' (skew)'}`);
      assert.equal(clock.last, want, `step ${i}: observe(${st.remote}, ${st.wall_ms}) leaves last ${hex(clock.last)}, want ${ex.last}`);
    } else {
      assert.fail(`bad vector: step ${i}: unknown do ${JSON.stringify(st.do)}`);
    }
  });
  assert.equal(clock.last, vhlc(expect.last, 'expect.last'), `last ${hex(clock.last)} at the end, want ${expect.last}`);
  assert.equal(clock.skewRefusals, expect.skew_refusals, `skewRefusals ${clock.skewRefusals}, want ${expect.skew_refusals}`);
}

function runHlc({ input, expect }) {
  if ('parse' in input) hlcParse(input.parse, expect);
  else if (input.format) hlcFormat(input.format, expect);
  else if (input.clock) hlcClock(input.clock, expect);
  else assert.fail('bad vector: input needs parse, format or clock');
}

// ------------------------------------------------------------ clock_order.json

function runClockOrder({ input, expect }) {
  const [ha, ca] = input.a;
  const [hb, cb] = input.b;
  const a = vhlc(ha, 'a[0]');
  const b = vhlc(hb, 'b[0]');
  assert.ok(typeof ca === 'string' && typeof cb === 'string' && [-1, 0, 1].includes(expect.cmp), 'bad vector');
  const ab = Math.sign(clockCmp(a, ca, b, cb)) || 0; /* || 0: no -0 */
  const ba = Math.sign(clockCmp(b, cb, a, ca)) || 0;
  assert.equal(ab, expect.cmp, `clockCmp(a, b) is ${ab}, want ${expect.cmp}`);
  assert.equal(ba, -expect.cmp || 0, `clockCmp(b, a) is ${ba}, want ${-expect.cmp || 0}`);
}

// ------------------------------------------------------------ merge_visible.json

function runMergeVisible({ input, expect }) {
  const confirmed = copy(input.confirmed);
  const before = canon(confirmed);
  if (expect.error !== undefined) {
    assert.equal(expect.error, 'invalid', 'bad vector: merge can only fail with "invalid"');
    throwsAs(() => mergeVisible(confirmed, copy(input.ops)), MergeError, 'mergeVisible');
  } else {
    const out = mergeVisible(confirmed, copy(input.ops));
    sameRow(out.visible, expect.visible, 'visible');
    sameJson(out.outcomes, expect.outcomes, 'outcomes');
  }
  assert.equal(canon(confirmed), before, `confirmed state changed: ${before} -> ${canon(confirmed)}`);
}

// ------------------------------------------------------------ apply_change.json

/*
 * Applies change to row; checks that changed says whether the row changed
 * and that a refused change leaves the row as it was.  Returns [result, row].
 */
function applyOne(row, change, ctx) {
  const before = canon(rowOf(row));
  let r;
  try {
    r = applyChange(row, copy(change));
  } catch (e) {
    assert.ok(e instanceof MergeError, `${ctx}: threw ${e?.constructor?.name} (${e?.message}), want a MergeError or a result`);
    assert.equal(canon(rowOf(row)), before, `${ctx}: refused, but the row changed`);
    return ['invalid', row];
  }
  assert.ok(r && typeof r.changed === 'boolean' && r.row && typeof r.row === 'object',
    `${ctx}: applyChange returned ${canon(r)}, want {row, changed}`);
  const after = canon(rowOf(r.row));
  assert.equal(r.changed, after !== before, `${ctx}: changed=${r.changed} but ${before} -> ${after}`);
  return [r.changed ? 'changed' : 'unchanged', r.row];
}

function runApplyChange({ input, expect }) {
  const { changes } = input;
  assert.ok(Array.isArray(changes) && Array.isArray(expect.results) && expect.results.length === changes.length &&
            expect.results.every((r) => ['changed', 'unchanged', 'invalid'].includes(r)) && expect.row,
            'bad vector: needs changes, expect.results (one per change) and expect.row');

  let row = copy(input.confirmed);
  changes.forEach((ch, k) => {
    const [got, next] = applyOne(row, ch, `change ${k}`);
    assert.equal(got, expect.results[k], `change ${k}: ${got}, want ${expect.results[k]} (row now ${canon(rowOf(next))})`);
    row = next;
  });
  sameRow(row, expect.row, 'row');

  changes.forEach((ch, k) => {
    const want = expect.results[k] === 'invalid' ? 'invalid' : 'unchanged';
    const [got, next] = applyOne(row, ch, `change ${k} applied again`);
    assert.equal(got, want, `change ${k} applied again: ${got}, want ${want}`);
    row = next;
  });
  sameRow(row, expect.row, 'row after applying every change again');

  const order = changes.map((_, k) => k);
  do {
    let r = copy(input.confirmed);
    for (const k of order) [, r] = applyOne(r, changes[k], `order ${order.join(' ')}, change ${k}`);
    sameRow(r, expect.row, `row in the order ${order.join(' ')}`);
  } while (nextPerm(order));
}

// ------------------------------------------------------------ row_from_snapshot.json

function runRowFromSnapshot({ input, expect }) {
  assert.ok('snapshot' in input, 'bad vector: needs input.snapshot');
  if (expect.error !== undefined) {
    assert.equal(expect.error, 'invalid', 'bad vector: a snapshot row can only fail with "invalid"');
    throwsAs(() => rowFromSnapshot(copy(input.snapshot)), MergeError, 'rowFromSnapshot');
    return;
  }
  sameRow(rowFromSnapshot(copy(input.snapshot)), expect.row, 'row');
}

// ------------------------------------------------------------ rebase.json

function runRebase({ input }) {
  assert.ok(Array.isArray(input.steps) && input.steps.length > 0, 'bad vector: input.steps');
  let confirmed = copy(input.confirmed);
  let pending = []; /* [{id, op}] in outbox order */
  input.steps.forEach((st, i) => {
    if (st.put !== undefined) {
      const { id, ...op } = copy(st.put);
      assert.equal(typeof id, 'string', `bad vector: step ${i}: put needs an id`);
      pending.push({ id, op });
    } else if (st.change !== undefined) {
      let r;
      try {
        r = applyChange(confirmed, copy(st.change));
      } catch (e) {
        assert.fail(`step ${i}: the change is refused: ${e?.message}`);
      }
      confirmed = r.row;
      pending = pending.filter((p) => p.id !== st.change.op_id);
    } else if (st.reject !== undefined) {
      assert.ok(pending.some((p) => p.id === st.reject), `bad vector: step ${i}: reject names no pending op`);
      pending = pending.filter((p) => p.id !== st.reject);
    } else if (st.snapshot !== undefined) {
      confirmed = st.snapshot === null ? emptyRow() : rowFromSnapshot(copy(st.snapshot));
    } else {
      assert.fail(`bad vector: step ${i} needs put, change, reject or snapshot`);
    }
    const out = mergeVisible(confirmed, pending.map((p) => copy(p.op)));
    sameRow(out.visible, st.expect.visible, `step ${i}: visible`);
    sameJson(pending.map((p) => p.id), st.expect.pending, `step ${i}: pending`);
    sameJson(out.outcomes, st.expect.outcomes, `step ${i}: outcomes`);
  });
}

// ------------------------------------------------------------ files

const RUNNERS = {
  'hlc.json': runHlc,
  'clock_order.json': runClockOrder,
  'merge_visible.json': runMergeVisible,
  'apply_change.json': runApplyChange,
  'row_from_snapshot.json': runRowFromSnapshot,
  'rebase.json': runRebase,
};

test('every vector file has a runner here', () => {
  const files = readdirSync(VECTORS).filter((f) => f.endsWith('.json'));
  for (const f of files) assert.ok(f in RUNNERS, `${f}: no runner in web/test/vectors.test.mjs knows this file`);
  for (const f of Object.keys(RUNNERS)) assert.ok(files.includes(f), `${f}: missing from ${VECTORS}`);
});

test('emptyRow() is the unknown row the vectors write', () => {
  sameRow(emptyRow(), { fields: null, clocks: {}, deleted: false }, 'emptyRow()');
});

for (const [file, run] of Object.entries(RUNNERS)) {
  describe(file, () => {
    for (const c of load(file)) {
      test(c.name, () => {
        assert.ok(typeof c.name === 'string' && c.input && typeof c.input === 'object', 'bad vector: a case needs name and input');
        run(c);
      });
    }
  });
}

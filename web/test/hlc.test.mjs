// web/test/hlc.test.mjs: the hybrid logical clock (src/hlc.ts), the cases of
// tests/client/test_core.c (hlc_parse, hlc_seq) ported: which texts parse
// and to what, and sequences of now/observe steps against a driven wall
// clock with the value or refusal each must give.  Run on build/lib/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HLC_TEXT_LEN, HlcClock, HlcError, formatHlc, isHlc, parseHlc } from '../build/lib/hlc.js';

const H = (ms, ctr) => (BigInt(ms) << 16n) | BigInt(ctr);
const MS_MAX = (1n << 48n) - 1n;
const U64_MAX = (1n << 64n) - 1n;

test('HLC_TEXT_LEN is 16', () => {
  assert.equal(HLC_TEXT_LEN, 16);
});

const parseCases = [
  ['parse zero', '0000000000000000', 0n],
  ['parse max', 'ffffffffffffffff', U64_MAX],
  ['parse mixed digits', '0123456789abcdef', 0x0123456789abcdefn],
  ['parse refuses empty', '', null],
  ['parse refuses 15 digits', '000000000000000', null],
  ['parse refuses 17 digits', '00000000000000000', null],
  ['parse refuses uppercase', '00000000000000AB', null],
  ['parse refuses 0x prefix', '0x00000000000000', null],
  ['parse refuses leading space', ' 000000000000000', null],
  ['parse refuses trailing space', '0000000000000000 ', null],
  ['parse refuses sign', '-000000000000001', null],
  ['parse refuses non-hex letter', '000000000000000g', null],
  ['parse refuses punctuation', '00000000:0000000', null],
  ['parse refuses a non-ASCII character', '000000000000000\u00c3', null],
  ['parse refuses newline', '000000000000000\n', null],
  ['parse refuses an embedded NUL', '0000000\u000000000000', null],
  ['parse refuses a fullwidth digit', '000000000000000\uff10', null],
];

for (const [name, text, want] of parseCases) {
  test(name, () => {
    if (want === null) {
      assert.equal(isHlc(text), false);
      assert.throws(() => parseHlc(text), HlcError);
    } else {
      assert.equal(isHlc(text), true);
      assert.equal(parseHlc(text), want);
    }
  });
}

test('isHlc refuses what is not a string', () => {
  for (const v of [null, undefined, 0, 0n, ['0000000000000000'], { hlc: '0000000000000000' }])
    assert.equal(isHlc(v), false);
});

test('format round-trips and string order is clock order', () => {
  const vals = [0n, 1n, 0xffffn, 0x10000n, H(1700000000000, 7), H(MS_MAX, 0xffff), 0x8000000000000000n];
  for (const x of vals) {
    const a = formatHlc(x);
    assert.equal(a.length, 16);
    assert.equal(parseHlc(a), x);
    for (const y of vals) {
      const b = formatHlc(y);
      assert.equal(Math.sign(a < b ? -1 : a > b ? 1 : 0), x < y ? -1 : x > y ? 1 : 0);
    }
  }
  assert.equal(formatHlc(H(1, 2)), '0000000000010002');
});

test('format refuses values outside 64 bits', () => {
  assert.throws(() => formatHlc(-1n), HlcError);
  assert.throws(() => formatHlc(1n << 64n), HlcError);
});

// [kind, wallMs, remote, ok, want]: NOW: want is the value returned (ok false:
// it throws HlcError); OBSERVE: want is clock.last after, ok what observe returns.
const NOW = 'now';
const OBS = 'observe';
const seqCases = [
  ['now follows the wall clock', 0n, 60000n,
   [[NOW, 1000, 0n, true, H(1000, 0)], [NOW, 1001, 0n, true, H(1001, 0)], [NOW, 5000, 0n, true, H(5000, 0)]]],
  ['now with the wall clock standing still counts', 0n, 60000n,
   [[NOW, 1000, 0n, true, H(1000, 0)], [NOW, 1000, 0n, true, H(1000, 1)], [NOW, 1000, 0n, true, H(1000, 2)],
    [NOW, 1001, 0n, true, H(1001, 0)]]],
  ['now with the wall clock going backwards stays monotonic', 0n, 60000n,
   [[NOW, 5000, 0n, true, H(5000, 0)], [NOW, 4000, 0n, true, H(5000, 1)], [NOW, 1, 0n, true, H(5000, 2)],
    [NOW, 0, 0n, true, H(5000, 3)], [NOW, 5001, 0n, true, H(5001, 0)]]],
  ['now resumes from a stored floor after a restart', H(9000, 5), 60000n,
   [[NOW, 8000, 0n, true, H(9000, 6)]]],
  ['counter overflow advances the ms part', H(1000, 0xfffe), 60000n,
   [[NOW, 1000, 0n, true, H(1000, 0xffff)], [NOW, 1000, 0n, true, H(1001, 0)], [NOW, 1000, 0n, true, H(1001, 1)],
    [NOW, 1001, 0n, true, H(1001, 2)], [NOW, 1002, 0n, true, H(1002, 0)]]],
  ['an exhausted clock refuses (SL_ERANGE)', U64_MAX, 60000n,
   [[NOW, 1000, 0n, false, U64_MAX]]],
  ['a wall clock beyond 48 bits is refused', 0n, 60000n,
   [[NOW, Number(MS_MAX + 1n), 0n, false, 0n], [NOW, Number(MS_MAX), 0n, true, H(MS_MAX, 0)]]],
  ['receive rule: the clock moves past a remote clock ahead of it', 0n, 60000n,
   [[NOW, 1000, 0n, true, H(1000, 0)], [OBS, 1000, H(3000, 7), true, H(3000, 7)], [NOW, 1000, 0n, true, H(3000, 8)],
    [NOW, 3000, 0n, true, H(3000, 9)], [NOW, 3001, 0n, true, H(3001, 0)]]],
  ['receive rule: an equal remote clock still puts the next now past it', 0n, 60000n,
   [[NOW, 1000, 0n, true, H(1000, 0)], [OBS, 1000, H(1000, 0), true, H(1000, 0)], [NOW, 1000, 0n, true, H(1000, 1)]]],
  ['receive rule: a remote clock behind changes nothing', 0n, 60000n,
   [[NOW, 5000, 0n, true, H(5000, 0)], [OBS, 5000, H(10, 3), true, H(5000, 0)], [NOW, 5000, 0n, true, H(5000, 1)]]],
  ['receive rule: a remote counter overflow carries', 0n, 60000n,
   [[OBS, 1000, H(1000, 0xffff), true, H(1000, 0xffff)], [NOW, 1000, 0n, true, H(1001, 0)]]],
  ['skew: a remote clock exactly max_skew ahead is accepted', 0n, 60000n,
   [[OBS, 1000, H(61000, 0xffff), true, H(61000, 0xffff)]]],
  ['skew: a remote clock more than max_skew ahead is refused', H(1000, 0), 60000n,
   [[OBS, 1000, H(61001, 0), false, H(1000, 0)], [NOW, 1000, 0n, true, H(1000, 1)],
    [OBS, 1000, U64_MAX, false, H(1000, 1)]]],
  ['skew: accepted once the wall clock catches up', 0n, 1000n,
   [[OBS, 1000, H(5000, 0), false, 0n], [OBS, 4000, H(5000, 0), true, H(5000, 0)], [NOW, 4000, 0n, true, H(5000, 1)]]],
  ['skew: a zero bound refuses anything ahead of the wall clock', 0n, 0n,
   [[OBS, 1000, H(1001, 0), false, 0n], [OBS, 1000, H(1000, 0xffff), true, H(1000, 0xffff)]]],
  ['skew: a remote clock behind a wall clock near 2^48 is accepted', 0n, 0n,
   [[OBS, Number(MS_MAX), H(5, 0), true, H(5, 0)]]],
];

for (const [name, start, skew, steps] of seqCases) {
  test(name, () => {
    const clock = new HlcClock(start, skew);
    let refusals = 0;
    steps.forEach(([kind, wall, remote, ok, want], i) => {
      const before = clock.last;
      if (kind === NOW) {
        if (ok) {
          const got = clock.now(wall);
          assert.equal(got, want, `step ${i}`);
          assert.ok(got > before, `step ${i}: now went backwards`);
          assert.equal(clock.last, got, `step ${i}: last`);
        } else {
          assert.throws(() => clock.now(wall), HlcError, `step ${i}`);
          assert.equal(clock.last, before, `step ${i}: a failed now moved the clock`);
        }
      } else {
        const got = clock.observe(remote, wall);
        if (!got)
          refusals++;
        assert.equal(got, ok, `step ${i}: observe`);
        assert.equal(clock.last, want, `step ${i}: last`);
      }
    });
    assert.equal(clock.skewRefusals, refusals);
  });
}

test('the default skew bound is C\'s 60 s', () => {
  const clock = new HlcClock();
  assert.equal(clock.last, 0n);
  assert.equal(clock.observe(H(61000, 0), 1000), true);
  assert.equal(clock.observe(H(61002, 0), 1000), false);
  assert.equal(clock.skewRefusals, 1);
});

test('now and observe refuse wall clocks that are not whole non-negative ms', () => {
  const clock = new HlcClock();
  assert.throws(() => clock.now(-1), HlcError);
  assert.throws(() => clock.now(1.5), HlcError);
  assert.throws(() => clock.now(Number.NaN), HlcError);
  assert.throws(() => clock.observe(-1n, 0), HlcError);
  assert.throws(() => clock.observe(1n << 64n, 0), HlcError);
  assert.equal(clock.last, 0n);
});

test('now is strictly monotonic over 20000 random wall clock steps and receives', () => {
  const clock = new HlcClock(0n, 60000n);
  let prev = 0n;
  let wall = 1000000;
  let seed = 12345;
  for (let k = 0; k < 20000; k++) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    switch ((seed >>> 16) % 4) {
      case 0: wall += (seed >>> 8) % 50; break;
      case 1: wall -= (seed >>> 8) % 50; break;
      case 2: break;
      case 3:
        assert.equal(clock.observe(H(wall + ((seed >>> 4) % 100), (seed >>> 8) & 0xffff), wall), true);
        break;
    }
    const got = clock.now(wall);
    assert.ok(got > prev && got >= H(wall, 0), `went backwards at step ${k}`);
    prev = got;
  }
});

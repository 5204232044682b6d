/*
 * web/src/hlc.ts: the browser client's hybrid logical clock
 * (PROTOCOL.md "Values"), client/hlc.c ported.
 *
 * A clock value is 64 bits, held as a bigint: the high 48 are Unix
 * milliseconds, the low 16 a counter.  On the wire it is 16 lowercase hex
 * digits, so that string order is clock order; ties between equal clocks are
 * broken by client_id (merge.ts's business, not this file's).
 *
 * An HlcClock is one client's clock, one per open store.  The wall clock is
 * always passed in (wallMs, Unix milliseconds) so that tests can drive it;
 * nothing here reads the system time.  The rules are the server's
 * (pg_ext/hlc.c): now = max(wall << 16, last + 1); observe raises last to
 * the remote value, refusing a remote clock too far ahead of the wall clock.
 *
 * Where C returns a status, this file throws HlcError (SL_EINVAL, SL_ERANGE)
 * or returns false (SL_ESKEW); on failure the clock is unchanged, as in C.
 */

export const HLC_TEXT_LEN = 16;

/* The largest ms part (SL_HLC_MS_MAX) and the largest clock value. */
const MS_MAX = (1n << 48n) - 1n;
const HLC_MAX = (1n << 64n) - 1n;

/* client/store_int.h SL_MAX_SKEW_MS: the receive rule's bound, as synclog.max_clock_skew. */
const DEFAULT_MAX_SKEW_MS = 60000n;

const HLC_RE = /^[0-9a-f]{16}$/;

/* A malformed clock text, a value out of range, or a clock that cannot advance. */
export class HlcError extends Error {
  override name = 'HlcError';
}

/*
 * True when s is exactly 16 lowercase hex digits and nothing else (no sign,
 * no spaces, no "0x", no uppercase), as sl_hlc_parse accepts.  Cannot fail.
 */
export function isHlc(s: unknown): s is string {
  return typeof s === 'string' && s.length === HLC_TEXT_LEN && HLC_RE.test(s);
}

/* The value of a clock text; throws HlcError when isHlc(s) is false. */
export function parseHlc(s: string): bigint {
  if (!isHlc(s))
    throw new HlcError(`malformed hlc ${JSON.stringify(String(s))}: want 16 lowercase hex digits`);
  return BigInt('0x' + s);
}

/*
 * v as 16 lowercase hex digits.  C's cannot fail for a uint64_t; a bigint
 * outside [0, 2^64) has no text and throws HlcError.
 */
export function formatHlc(v: bigint): string {
  checkValue(v, 'hlc value');
  return v.toString(16).padStart(HLC_TEXT_LEN, '0');
}

/* Throws unless v is a bigint in [0, 2^64). */
function checkValue(v: unknown, what: string): asserts v is bigint {
  if (typeof v !== 'bigint' || v < 0n || v > HLC_MAX)
    throw new HlcError(`${what} out of range: want a bigint in [0, 2^64)`);
}

/* Throws unless wallMs is a non-negative integer number of milliseconds. */
function wallOf(wallMs: number): bigint {
  if (!Number.isSafeInteger(wallMs) || wallMs < 0)
    throw new HlcError(`wall clock ${String(wallMs)} is not a non-negative integer of milliseconds`);
  return BigInt(wallMs);
}

/*
 * One client's clock (sl_hlc_clock).  last is the greatest value returned
 * or observed so far; skewRefusals counts the remote clocks observe()
 * refused.  A plain value with no locking: the caller serializes calls.
 */
export class HlcClock {
  last: bigint;
  skewRefusals = 0;
  readonly maxSkewMs: bigint;

  /*
   * last: the greatest value this client ever used or saw (0 for a new
   * client; a stored floor after a restart); maxSkewMs: the receive rule's
   * bound (C's default, 60 s).  Throws HlcError for values out of range.
   */
  constructor(last: bigint = 0n, maxSkewMs: bigint = DEFAULT_MAX_SKEW_MS) {
    checkValue(last, 'clock floor');
    checkValue(maxSkewMs, 'max skew');
    this.last = last;
    this.maxSkewMs = maxSkewMs;
  }

  /*
   * A fresh clock value for a local event, strictly greater than every value
   * returned or observed before, whatever wallMs does: the wall clock's ms
   * with counter 0 when that is ahead, else last + 1 (the counter
   * increments, and a full counter carries into the ms part).  Throws
   * HlcError (SL_ERANGE) when wallMs exceeds 2^48 - 1 or the clock is
   * exhausted (last is all ones), with the clock unchanged.
   */
  now(wallMs: number): bigint {
    const wallMsBig = wallOf(wallMs);
    if (wallMsBig > MS_MAX)
      throw new HlcError(`wall clock ${wallMs} ms is beyond what 48 bits hold`);
    const wall = wallMsBig << 16n;
    let next: bigint;
    if (wall > this.last)
      next = wall;
    else if (this.last === HLC_MAX)
      throw new HlcError('the clock is exhausted: it cannot advance past ffffffffffffffff');
    else
      next = this.last + 1n; /* a full counter carries into the ms part */
    this.last = next;
    return next;
  }

  /*
   * The receive rule: the clock moves past remote, so that every later now()
   * is greater than it.  A remote clock whose ms part is more than maxSkewMs
   * ahead of wallMs is refused: returns false (SL_ESKEW) and only counts it
   * in skewRefusals.  A remote clock behind ours changes nothing.  Returns
   * true otherwise.  Throws HlcError for a remote value or wall clock out of
   * range (C's types cannot hold those).
   */
  observe(remote: bigint, wallMs: number): boolean {
    checkValue(remote, 'remote hlc');
    const wall = wallOf(wallMs);
    const remoteMs = remote >> 16n;
    if (remoteMs > wall && remoteMs - wall > this.maxSkewMs) {
      this.skewRefusals++;
      return false;
    }
    if (remote > this.last)
      this.last = remote;
    return true;
  }
}

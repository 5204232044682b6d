/*
 * client/hlc.h: the client's hybrid logical clock (PROTOCOL.md "Values").
 *
 * A clock value is 64 bits: the high 48 are Unix milliseconds, the low 16 a
 * counter.  On the wire it is 16 lowercase hex digits, so that string order
 * is clock order; ties between equal clocks are broken by client_id (that is
 * merge.c's business, not this file's).
 *
 * An sl_hlc_clock is one client's clock; one of these per open database.  It
 * is a plain value with no locking: the caller serializes access.  The wall
 * clock is always passed in (wall_ms, Unix milliseconds) so that tests can
 * drive it; nothing here reads the system time.  Nothing here allocates.
 */
#ifndef SL_HLC_H
#define SL_HLC_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define SL_HLC_TEXT_LEN 16                     /* hex digits, without the NUL */
#define SL_HLC_MS_MAX ((UINT64_C(1) << 48) - 1) /* the largest ms part */

/* One client's clock.  Initialise with sl_hlc_init; the fields are readable. */
typedef struct sl_hlc_clock {
	uint64_t last;        /* the greatest value returned or observed so far */
	uint64_t max_skew_ms; /* observe() refuses remote clocks further ahead */
	uint64_t skew_refusals; /* how many remote clocks observe() refused */
} sl_hlc_clock;

/*
 * Parses s, which must be exactly 16 lowercase hex digits followed by the
 * end of the string (no sign, no spaces, no "0x", no uppercase).  Returns
 * SL_OK and sets *out, or SL_EINVAL and leaves *out untouched.  s may be NULL
 * (SL_EINVAL).
 */
int sl_hlc_parse(const char *s, uint64_t *out);

/* As sl_hlc_parse, for len bytes at s that need not be NUL-terminated. */
int sl_hlc_parse_n(const char *s, size_t len, uint64_t *out);

/* Writes hlc as 16 lowercase hex digits and a NUL into out.  Cannot fail. */
void sl_hlc_format(uint64_t hlc, char out[SL_HLC_TEXT_LEN + 1]);

/* The ms part and the counter of a clock value. */
static inline uint64_t sl_hlc_ms(uint64_t hlc) { return hlc >> 16; }
static inline uint16_t sl_hlc_counter(uint64_t hlc) { return (uint16_t) (hlc & 0xffff); }

/*
 * Initialises clock: last is the greatest value this client ever used or saw
 * (0 for a new client; a stored floor after a restart), max_skew_ms the
 * receive rule's bound.  Cannot fail.
 */
void sl_hlc_init(sl_hlc_clock *clock, uint64_t last, uint64_t max_skew_ms);

/*
 * A fresh clock value for a local event, strictly greater than every value
 * returned or observed before, whatever wall_ms does: the wall clock's ms
 * with counter 0 when that is ahead, else the last value plus one (the
 * counter increments, and carries into the ms part when it overflows).
 * Returns SL_OK and sets *out; SL_ERANGE when wall_ms exceeds SL_HLC_MS_MAX
 * or the clock is exhausted (last is all ones), with clock unchanged.
 */
int sl_hlc_now(sl_hlc_clock *clock, uint64_t wall_ms, uint64_t *out);

/*
 * The receive rule: clock moves past remote, so that every later
 * sl_hlc_now() is greater than it.  A remote clock whose ms part is more than
 * max_skew_ms ahead of wall_ms is refused: SL_ESKEW, clock unchanged except
 * that skew_refusals counts it.  A remote clock behind ours changes nothing.
 * Returns SL_OK otherwise.
 */
int sl_hlc_observe(sl_hlc_clock *clock, uint64_t remote, uint64_t wall_ms);

#endif /* SL_HLC_H */

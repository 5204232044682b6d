/*
 * fuzz/fuzz_hlc.c: libFuzzer target for HLC parsing and the clock rules,
 * client (client/hlc.c) and server (pg_ext/hlc.c, compiled without a
 * backend: its pure part, plus the shared-memory clock on a local word with
 * GetCurrentTimestamp() from pgstub.c).
 *
 * Each input is used twice:
 *   1. as clock text: client sl_hlc_parse_n and the server's sl_hlc_parse
 *      must agree on every input (same verdict, same value); an accepted
 *      text formats back to itself byte for byte, on both sides; the
 *      NUL-terminated sl_hlc_parse agrees with sl_hlc_parse_n on the text up
 *      to its first NUL;
 *   2. as a program of clock operations (one op byte, then 8-byte operands)
 *      on a client clock and the server clock, checking after each: a local
 *      clock value is strictly greater than every value returned or observed
 *      before and not behind the wall clock; observe refuses exactly the
 *      clocks more than max_skew_ms ahead (client) and otherwise raises the
 *      clock; SL_ERANGE only at the documented limits; format/parse round
 *      trips for any 64-bit value, and both sides format alike.
 * The server is only ever given clocks push.c would let through (at most
 * synclog.max_clock_skew ahead of its wall clock), as in production.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hlc.h"
#include "pgstub.h"

/* pg_ext/hlc.c, renamed (fuzz/Makefile) so as not to clash with client/hlc.c */
bool pg_sl_hlc_parse(const char *s, int len, uint64_t *out);
void pg_sl_hlc_format(uint64_t hlc, char *out);
uint64_t pg_sl_hlc_now(void);
void pg_sl_hlc_observe(uint64_t remote);
void sl_hlc_shmem_init(void *addr);
uint64_t sl_wall_ms(void);

#define CHECK(cond)                                                                  \
	do {                                                                             \
		if (!(cond)) {                                                               \
			fprintf(stderr, "fuzz_hlc: invariant broken at line %d: %s\n", __LINE__, \
			        #cond);                                                          \
			abort();                                                                 \
		}                                                                            \
	} while (0)

/* Microseconds from the Unix epoch to PostgreSQL's (2000-01-01). */
#define PG_EPOCH_US (INT64_C(946684800) * 1000000)
#define SERVER_SKEW_MS 60000 /* synclog.max_clock_skew's default */

static uint64_t server_word[2]; /* the shared-memory clock, 8-byte aligned */

typedef struct reader {
	const uint8_t *p;
	size_t n;
} reader;

static uint64_t
rd_u64(reader *r)
{
	uint64_t v = 0;

	for (int i = 0; i < 8 && r->n > 0; i++, r->p++, r->n--)
		v = (v << 8) | *r->p;
	return v;
}

static void
check_text(const uint8_t *data, size_t size)
{
	uint64_t vc = 0, vs = 0, v2 = 0;
	char out[SL_HLC_TEXT_LEN + 1], out2[SL_HLC_TEXT_LEN + 1];
	int rc = sl_hlc_parse_n((const char *) data, size, &vc);
	bool ok = size <= 64 && pg_sl_hlc_parse((const char *) data, (int) size, &vs);

	CHECK((rc == SL_OK) == ok || size > 64);
	CHECK(rc == SL_OK || rc == SL_EINVAL);
	if (rc == SL_OK) {
		CHECK(vc == vs);
		sl_hlc_format(vc, out);
		pg_sl_hlc_format(vs, out2);
		CHECK(size == SL_HLC_TEXT_LEN && memcmp(out, data, size) == 0);
		CHECK(strcmp(out, out2) == 0);
	}

	/* The NUL-terminated form: the text up to its first NUL. */
	char *z = malloc(size + 1);
	if (z == NULL)
		return;
	memcpy(z, data, size);
	z[size] = '\0';
	size_t zl = strlen(z);
	int rz = sl_hlc_parse(z, &v2);
	int rn = sl_hlc_parse_n(z, zl, &vc);
	CHECK(rz == rn);
	if (rz == SL_OK)
		CHECK(v2 == vc);
	free(z);
}

static void
run_ops(const uint8_t *data, size_t size)
{
	reader r = { data, size };
	sl_hlc_clock c;
	uint64_t cl_seen = 0;  /* the greatest value the client returned or accepted */
	uint64_t sv_seen = 0;  /* the same for the server */
	bool sv_any = false;

	sl_hlc_init(&c, 0, 60000);
	memset(server_word, 0, sizeof server_word);
	pgstub_now = 0;

	for (int steps = 0; r.n > 0 && steps < 256; steps++) {
		uint8_t op = *r.p++;
		uint64_t a, b, out = 0, before = c.last;
		int rc;
		r.n--;

		switch (op % 6) {
		case 0: /* client: a local event */
			a = rd_u64(&r) % (SL_HLC_MS_MAX + 2); /* sometimes just past the limit */
			rc = sl_hlc_now(&c, a, &out);
			if (a > SL_HLC_MS_MAX) {
				CHECK(rc == SL_ERANGE && c.last == before);
			} else if (rc == SL_ERANGE) {
				CHECK(before == UINT64_MAX && c.last == before);
			} else {
				CHECK(rc == SL_OK);
				CHECK(out > before && out >= (a << 16) && c.last == out);
				CHECK(out > cl_seen || (cl_seen == 0 && out > 0) || out > before);
				CHECK(cl_seen == 0 || out > cl_seen);
				cl_seen = out;
			}
			break;
		case 1: { /* client: a remote clock */
			uint64_t refusals = c.skew_refusals;
			a = rd_u64(&r);
			b = rd_u64(&r) % (SL_HLC_MS_MAX + 1);
			rc = sl_hlc_observe(&c, a, b);
			bool ahead = (a >> 16) > b && (a >> 16) - b > c.max_skew_ms;
			if (ahead) {
				CHECK(rc == SL_ESKEW && c.last == before && c.skew_refusals == refusals + 1);
			} else {
				CHECK(rc == SL_OK && c.skew_refusals == refusals);
				CHECK(c.last == (a > before ? a : before));
				if (a > cl_seen)
					cl_seen = a;
			}
			break;
		}
		case 2: /* client: restart from a stored floor */
			a = rd_u64(&r);
			b = rd_u64(&r) % (UINT64_C(1) << 40);
			sl_hlc_init(&c, a, b);
			CHECK(c.last == a && c.max_skew_ms == b && c.skew_refusals == 0);
			cl_seen = a;
			break;
		case 3: { /* server: a local event at some wall time (Unix ms below 2^47) */
			a = rd_u64(&r) % (UINT64_C(1) << 47);
			pgstub_now = (int64_t) (a * 1000) - PG_EPOCH_US;
			uint64_t wall = sl_wall_ms();
			CHECK(wall == a);
			out = pg_sl_hlc_now();
			CHECK(out >= (wall << 16));
			CHECK(!sv_any || out > sv_seen);
			sv_seen = out;
			sv_any = true;
			break;
		}
		case 4: { /* server: a clock push.c accepted (not beyond the skew) */
			uint64_t wall = sl_wall_ms();
			uint64_t limit = ((wall + SERVER_SKEW_MS) << 16) | 0xffff;
			a = rd_u64(&r) % (limit + 1);
			pg_sl_hlc_observe(a);
			out = pg_sl_hlc_now();
			CHECK(out > a);
			CHECK(!sv_any || out > sv_seen);
			sv_seen = out;
			sv_any = true;
			break;
		}
		case 5: { /* format and parse any value, both sides */
			char t1[SL_HLC_TEXT_LEN + 1], t2[SL_HLC_TEXT_LEN + 1];
			uint64_t back = 0, back2 = 0;
			a = rd_u64(&r);
			sl_hlc_format(a, t1);
			pg_sl_hlc_format(a, t2);
			CHECK(strlen(t1) == SL_HLC_TEXT_LEN && strcmp(t1, t2) == 0);
			CHECK(sl_hlc_parse(t1, &back) == SL_OK && back == a);
			CHECK(pg_sl_hlc_parse(t2, SL_HLC_TEXT_LEN, &back2) && back2 == a);
			CHECK(sl_hlc_ms(a) == a >> 16 && sl_hlc_counter(a) == (uint16_t) a);
			break;
		}
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool attached;

	if (!attached) {
		sl_hlc_shmem_init(server_word);
		attached = true;
	}
	check_text(data, size);
	run_ops(data, size);
	pgstub_reset();
	return 0;
}

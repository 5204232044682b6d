/*
 * tests/client/test_core.c: tests of libsynclog's pure core, client/hlc.c
 * (the hybrid logical clock) and client/merge.c (the local model's merge).
 *
 * Built by `make -C client test-bin` with ASan and UBSan and run by
 * tests/suites/40-client-core.sh.  Prints one line per case,
 * "PASS: client-core: <name>" or "FAIL: client-core: <name> (<why>)", and
 * exits 1 if any case failed.  Groups of cases, each a table:
 *   - hlc_parse: strings and whether they parse (and to what);
 *   - hlc_seq: sequences of now/observe steps against a driven wall clock,
 *     with the status and clock value each must give;
 *   - merge: confirmed state + pending ops (JSON text) → the visible row and
 *     each op's outcome; clocks are checked where the case gives them;
 *   - changes: a confirmed state and a list of incoming changes → the
 *     confirmed state after them; each case also checks that applying every
 *     change a second time changes nothing and that every order of
 *     application ends in the same state.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hlc.h"
#include "merge.h"

static int n_pass, n_fail;

static void report(const char *name, bool ok, const char *why, ...)
	__attribute__((format(printf, 3, 4)));

/* Prints the PASS/FAIL line of one case; why is a printf format, used on FAIL. */
static void
report(const char *name, bool ok, const char *why, ...)
{
	va_list ap;

	if (ok) {
		n_pass++;
		printf("PASS: client-core: %s\n", name);
		return;
	}
	n_fail++;
	printf("FAIL: client-core: %s (", name);
	va_start(ap, why);
	vprintf(why, ap);
	va_end(ap);
	printf(")\n");
}

/* Parses JSON test text; a broken table is a bug in this file: exit 2. */
static json_t *
j(const char *text)
{
	json_error_t err;
	json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);

	if (v == NULL) {
		fprintf(stderr, "test_core: bad JSON in a table: %s: %s\n", err.text, text);
		exit(2);
	}
	return v;
}

/* Compact, key-sorted text of v (caller frees); "null" for NULL. */
static char *
dump(const json_t *v)
{
	if (v == NULL)
		return strdup("null");
	return json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
}

#define H(ms, ctr) ((((uint64_t) (ms)) << 16) | (uint64_t) (ctr))

/* ---------------------------------------------------------------- hlc */

static const struct {
	const char *name;
	const char *text; /* NULL: a NULL pointer */
	bool ok;
	uint64_t value;
} parse_cases[] = {
	{"parse zero", "0000000000000000", true, 0},
	{"parse max", "ffffffffffffffff", true, UINT64_MAX},
	{"parse mixed digits", "0123456789abcdef", true, UINT64_C(0x0123456789abcdef)},
	{"parse refuses NULL", NULL, false, 0},
	{"parse refuses empty", "", false, 0},
	{"parse refuses 15 digits", "000000000000000", false, 0},
	{"parse refuses 17 digits", "00000000000000000", false, 0},
	{"parse refuses uppercase", "00000000000000AB", false, 0},
	{"parse refuses 0x prefix", "0x00000000000000", false, 0},
	{"parse refuses leading space", " 000000000000000", false, 0},
	{"parse refuses trailing space", "0000000000000000 ", false, 0},
	{"parse refuses sign", "-000000000000001", false, 0},
	{"parse refuses non-hex letter", "000000000000000g", false, 0},
	{"parse refuses punctuation", "00000000:0000000", false, 0},
	{"parse refuses high byte", "000000000000000\xc3", false, 0},
	{"parse refuses newline", "000000000000000\n", false, 0},
};

static void
test_hlc_parse(void)
{
	for (size_t i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
		uint64_t v = 42;
		int rc = sl_hlc_parse(parse_cases[i].text, &v);

		if (parse_cases[i].ok)
			report(parse_cases[i].name, rc == SL_OK && v == parse_cases[i].value,
			       "rc %d, value %llx", rc, (unsigned long long) v);
		else
			report(parse_cases[i].name, rc == SL_EINVAL && v == 42,
			       "rc %d, value %llx (want SL_EINVAL, untouched)", rc, (unsigned long long) v);
	}
	/* parse_n: a buffer that is not NUL-terminated, and an embedded NUL. */
	{
		const char buf[20] = "00000000000000ffXXX";
		const char nul[17] = "0000000\0" "00000000";
		uint64_t v = 0;

		report("parse_n reads exactly 16 bytes",
		       sl_hlc_parse_n(buf, 16, &v) == SL_OK && v == 0xff, "value %llx",
		       (unsigned long long) v);
		report("parse_n refuses an embedded NUL", sl_hlc_parse_n(nul, 16, &v) == SL_EINVAL, "parsed");
	}
	/* format and parse round-trip, and string order is clock order. */
	{
		static const uint64_t vals[] = {0, 1, 0xffff, 0x10000, H(1700000000000ULL, 7),
		                                H(SL_HLC_MS_MAX, 0xffff), UINT64_C(0x8000000000000000)};
		size_t n = sizeof(vals) / sizeof(vals[0]);
		bool ok = true;
		char a[17], b[17];

		for (size_t x = 0; x < n; x++) {
			uint64_t back;

			sl_hlc_format(vals[x], a);
			if (strlen(a) != 16 || sl_hlc_parse(a, &back) != SL_OK || back != vals[x])
				ok = false;
			for (size_t y = 0; y < n; y++) {
				int sc, vc = (vals[x] > vals[y]) - (vals[x] < vals[y]);

				sl_hlc_format(vals[y], b);
				sc = strcmp(a, b);
				if ((sc > 0) - (sc < 0) != vc)
					ok = false;
			}
		}
		sl_hlc_format(H(1, 2), a);
		report("format round-trips and string order is clock order",
		       ok && strcmp(a, "0000000000010002") == 0, "format(H(1,2)) = %s", a);
	}
}

enum step_kind { NOW, OBSERVE, END };

typedef struct {
	enum step_kind kind;
	uint64_t wall_ms;
	uint64_t remote; /* OBSERVE */
	int rc;
	uint64_t want; /* NOW: the value returned; OBSERVE: clock.last after */
} step;

static const struct {
	const char *name;
	uint64_t start;
	uint64_t skew_ms;
	step steps[8];
} seq_cases[] = {
	{"now follows the wall clock", 0, 60000,
	 {{NOW, 1000, 0, SL_OK, H(1000, 0)}, {NOW, 1001, 0, SL_OK, H(1001, 0)},
	  {NOW, 5000, 0, SL_OK, H(5000, 0)}, {END, 0, 0, 0, 0}}},
	{"now with the wall clock standing still counts", 0, 60000,
	 {{NOW, 1000, 0, SL_OK, H(1000, 0)}, {NOW, 1000, 0, SL_OK, H(1000, 1)},
	  {NOW, 1000, 0, SL_OK, H(1000, 2)}, {NOW, 1001, 0, SL_OK, H(1001, 0)}, {END, 0, 0, 0, 0}}},
	{"now with the wall clock going backwards stays monotonic", 0, 60000,
	 {{NOW, 5000, 0, SL_OK, H(5000, 0)}, {NOW, 4000, 0, SL_OK, H(5000, 1)},
	  {NOW, 1, 0, SL_OK, H(5000, 2)}, {NOW, 0, 0, SL_OK, H(5000, 3)},
	  {NOW, 5001, 0, SL_OK, H(5001, 0)}, {END, 0, 0, 0, 0}}},
	{"now resumes from a stored floor after a restart", H(9000, 5), 60000,
	 {{NOW, 8000, 0, SL_OK, H(9000, 6)}, {END, 0, 0, 0, 0}}},
	{"counter overflow advances the ms part", H(1000, 0xfffe), 60000,
	 {{NOW, 1000, 0, SL_OK, H(1000, 0xffff)}, {NOW, 1000, 0, SL_OK, H(1001, 0)},
	  {NOW, 1000, 0, SL_OK, H(1001, 1)}, {NOW, 1001, 0, SL_OK, H(1001, 2)},
	  {NOW, 1002, 0, SL_OK, H(1002, 0)}, {END, 0, 0, 0, 0}}},
	{"an exhausted clock refuses with SL_ERANGE", UINT64_MAX, 60000,
	 {{NOW, 1000, 0, SL_ERANGE, UINT64_MAX}, {END, 0, 0, 0, 0}}},
	{"a wall clock beyond 48 bits is refused", 0, 60000,
	 {{NOW, SL_HLC_MS_MAX + 1, 0, SL_ERANGE, 0}, {NOW, SL_HLC_MS_MAX, 0, SL_OK, H(SL_HLC_MS_MAX, 0)},
	  {END, 0, 0, 0, 0}}},
	{"receive rule: the clock moves past a remote clock ahead of it", 0, 60000,
	 {{NOW, 1000, 0, SL_OK, H(1000, 0)}, {OBSERVE, 1000, H(3000, 7), SL_OK, H(3000, 7)},
	  {NOW, 1000, 0, SL_OK, H(3000, 8)}, {NOW, 3000, 0, SL_OK, H(3000, 9)},
	  {NOW, 3001, 0, SL_OK, H(3001, 0)}, {END, 0, 0, 0, 0}}},
	{"receive rule: an equal remote clock still puts the next now past it", 0, 60000,
	 {{NOW, 1000, 0, SL_OK, H(1000, 0)}, {OBSERVE, 1000, H(1000, 0), SL_OK, H(1000, 0)},
	  {NOW, 1000, 0, SL_OK, H(1000, 1)}, {END, 0, 0, 0, 0}}},
	{"receive rule: a remote clock behind changes nothing", 0, 60000,
	 {{NOW, 5000, 0, SL_OK, H(5000, 0)}, {OBSERVE, 5000, H(10, 3), SL_OK, H(5000, 0)},
	  {NOW, 5000, 0, SL_OK, H(5000, 1)}, {END, 0, 0, 0, 0}}},
	{"receive rule: a remote counter overflow carries", 0, 60000,
	 {{OBSERVE, 1000, H(1000, 0xffff), SL_OK, H(1000, 0xffff)},
	  {NOW, 1000, 0, SL_OK, H(1001, 0)}, {END, 0, 0, 0, 0}}},
	{"skew: a remote clock exactly max_skew ahead is accepted", 0, 60000,
	 {{OBSERVE, 1000, H(61000, 0xffff), SL_OK, H(61000, 0xffff)}, {END, 0, 0, 0, 0}}},
	{"skew: a remote clock more than max_skew ahead is refused", H(1000, 0), 60000,
	 {{OBSERVE, 1000, H(61001, 0), SL_ESKEW, H(1000, 0)}, {NOW, 1000, 0, SL_OK, H(1000, 1)},
	  {OBSERVE, 1000, UINT64_MAX, SL_ESKEW, H(1000, 1)}, {END, 0, 0, 0, 0}}},
	{"skew: accepted once the wall clock catches up", 0, 1000,
	 {{OBSERVE, 1000, H(5000, 0), SL_ESKEW, 0}, {OBSERVE, 4000, H(5000, 0), SL_OK, H(5000, 0)},
	  {NOW, 4000, 0, SL_OK, H(5000, 1)}, {END, 0, 0, 0, 0}}},
	{"skew: a zero bound refuses anything ahead of the wall clock", 0, 0,
	 {{OBSERVE, 1000, H(1001, 0), SL_ESKEW, 0}, {OBSERVE, 1000, H(1000, 0xffff), SL_OK, H(1000, 0xffff)},
	  {END, 0, 0, 0, 0}}},
	{"skew: a remote clock behind a wall clock near 2^48 is accepted", 0, 0,
	 {{OBSERVE, SL_HLC_MS_MAX, H(5, 0), SL_OK, H(5, 0)}, {END, 0, 0, 0, 0}}},
};

static void
test_hlc_seq(void)
{
	for (size_t i = 0; i < sizeof(seq_cases) / sizeof(seq_cases[0]); i++) {
		sl_hlc_clock clock;
		char why[256] = "";
		uint64_t refusals = 0;

		sl_hlc_init(&clock, seq_cases[i].start, seq_cases[i].skew_ms);
		for (int s = 0; seq_cases[i].steps[s].kind != END && why[0] == '\0'; s++) {
			const step *st = &seq_cases[i].steps[s];
			uint64_t before = clock.last, got = 0;
			int rc;

			if (st->kind == NOW) {
				rc = sl_hlc_now(&clock, st->wall_ms, &got);
				if (rc != st->rc)
					snprintf(why, sizeof why, "step %d: rc %d, want %d", s, rc, st->rc);
				else if (rc == SL_OK && (got != st->want || got <= before || clock.last != got))
					snprintf(why, sizeof why, "step %d: now %016llx, want %016llx (before %016llx)",
					         s, (unsigned long long) got, (unsigned long long) st->want,
					         (unsigned long long) before);
				else if (rc != SL_OK && clock.last != before)
					snprintf(why, sizeof why, "step %d: failed now moved the clock", s);
			} else {
				rc = sl_hlc_observe(&clock, st->remote, st->wall_ms);
				if (rc == SL_ESKEW)
					refusals++;
				if (rc != st->rc)
					snprintf(why, sizeof why, "step %d: rc %d, want %d", s, rc, st->rc);
				else if (clock.last != st->want)
					snprintf(why, sizeof why, "step %d: last %016llx, want %016llx", s,
					         (unsigned long long) clock.last, (unsigned long long) st->want);
			}
		}
		if (why[0] == '\0' && clock.skew_refusals != refusals)
			snprintf(why, sizeof why, "skew_refusals %llu, want %llu",
			         (unsigned long long) clock.skew_refusals, (unsigned long long) refusals);
		report(seq_cases[i].name, why[0] == '\0', "%s", why);
	}

	/* A long random walk of the wall clock: now is strictly increasing. */
	{
		sl_hlc_clock clock;
		uint64_t prev = 0, wall = 1000000, got;
		unsigned seed = 12345;
		bool ok = true;

		sl_hlc_init(&clock, 0, 60000);
		for (int k = 0; k < 200000 && ok; k++) {
			seed = seed * 1103515245u + 12345u;
			switch ((seed >> 16) % 4) {
			case 0: wall += (seed >> 8) % 50; break;    /* forwards */
			case 1: wall -= (seed >> 8) % 50; break;    /* backwards */
			case 2: break;                               /* standing still */
			case 3:
				if (sl_hlc_observe(&clock, H(wall + (seed >> 4) % 100, (seed >> 8) & 0xffff), wall) != SL_OK)
					ok = false;
				break;
			}
			if (sl_hlc_now(&clock, wall, &got) != SL_OK || got <= prev || got < H(wall, 0))
				ok = false;
			prev = got;
		}
		report("now is strictly monotonic over 200000 random wall clock steps and receives", ok,
		       "went backwards or failed at %016llx", (unsigned long long) prev);
	}
}

/* ---------------------------------------------------------------- merge */

typedef struct {
	const char *name;
	/* {"fields":{..},"clocks":{..},"deleted":bool} or "null" for unknown */
	const char *confirmed;
	/* [{"kind","fields","hlc","client_id"}...] */
	const char *pending;
	const char *want_fields; /* the visible fields, or "null" for hidden */
	const char *want_clocks; /* NULL: not checked */
	const char *outcomes;    /* one letter per op: A applied, X absorbed; NULL: not checked */
	bool want_deleted;
} merge_case;

#define T1 "0000000100000000"
#define T2 "0000000200000000"
#define T3 "0000000300000000"
#define T4 "0000000400000000"

static const merge_case merge_cases[] = {
	{"merge: no pending ops shows confirmed state",
	 "{\"fields\":{\"id\":\"r\",\"title\":\"a\"},\"clocks\":{\"title\":[\"" T1 "\",\"s\"]}}", "[]",
	 "{\"id\":\"r\",\"title\":\"a\"}", "{\"title\":[\"" T1 "\",\"s\"]}", "", false},
	{"merge: unknown row and no ops is hidden", "null", "[]", "null", "{}", "", false},
	{"merge: a pending upsert creates an unknown row",
	 "null", "[{\"kind\":\"upsert\",\"fields\":{\"id\":\"r\",\"title\":\"x\"},\"hlc\":\"" T2 "\",\"client_id\":\"me\"}]",
	 "{\"id\":\"r\",\"title\":\"x\"}", "{\"id\":[\"" T2 "\",\"me\"],\"title\":[\"" T2 "\",\"me\"]}", "A", false},
	{"merge: a newer pending upsert wins the field",
	 "{\"fields\":{\"title\":\"a\",\"state\":\"open\"},\"clocks\":{\"title\":[\"" T1 "\",\"s\"],\"state\":[\"" T1 "\",\"s\"]}}",
	 "[{\"kind\":\"upsert\",\"fields\":{\"title\":\"b\"},\"hlc\":\"" T2 "\",\"client_id\":\"me\"}]",
	 "{\"state\":\"open\",\"title\":\"b\"}", "{\"state\":[\"" T1 "\",\"s\"],\"title\":[\"" T2 "\",\"me\"]}", "A", false},
	{"merge: an older pending upsert loses the field (rebase)",
	 "{\"fields\":{\"title\":\"theirs\"},\"clocks\":{\"title\":[\"" T3 "\",\"other\"]}}",
	 "[{\"kind\":\"upsert\",\"fields\":{\"title\":\"mine\"},\"hlc\":\"" T2 "\",\"client_id\":\"me\"}]",
	 "{\"title\":\"theirs\"}", "{\"title\":[\"" T3 "\",\"other\"]}", "A", false},
	{"merge: per field: wins one field, loses another",
	 "{\"fields\":{\"a\":1,\"b\":1},\"clocks\":{\"a\":[\"" T1 "\",\"x\"],\"b\":[\"" T3 "\",\"x\"]}}",
	 "[{\"kind\":\"upsert\",\"fields\":{\"a\":2,\"b\":2},\"hlc\":\"" T2 "\",\"client_id\":\"me\"}]",
	 "{\"a\":2,\"b\":1}", "{\"a\":[\"" T2 "\",\"me\"],\"b\":[\"" T3 "\",\"x\"]}", "A", false},
	{"merge: equal hlc, greater client_id wins",
	 "{\"fields\":{\"t\":\"old\"},\"clocks\":{\"t\":[\"" T2 "\",\"aaa\"]}}",
	 "[{\"kind\":\"upsert\",\"fields\":{\"t\":\"new\"},\"hlc\":\"" T2 "\",\"client_id\":\"bbb\"}]",
	 "{\"t\":\"new\"}", "{\"t\":[\"" T2 "\",\"bbb\"]}", "A", false},
	{"merge: equal hlc, smaller client_id loses",
	 "{\"fields\":{\"t\":\"old\"},\"clocks\":{\"t\":[\"" T2 "\",\"bbb\"]}}",
	 "[{\"kind\":\"upsert\",\"fields\":{\"t\":\"new\"},\"hlc\":\"" T2 "\",\"client_id\":\"aaa\"}]",
	 "{\"t\":\"old\"}", "{\"t\":[\"" T2 "\",\"bbb\"]}", "A", false},
	{"merge: client_id ties break in byte order (uppercase below lowercase, prefix below longer)",
	 "{\"fields\":{\"a\":0,\"b\":0},\"clocks\":{\"a\":[\"" T2 "\",\"Zed\"],\"b\":[\"" T2 "\",\"me\"]}}",
	 "[{\"kind\":\"upsert\",\"fields\":{\"a\":1,\"b\":1},\"hlc\":\"" T2 "\",\"client_id\":\"meX\"}]",
	 "{\"a\":1,\"b\":1}", NULL, "A", false},
	{"merge: client_id byte order treats bytes above 0x7f as large",
	 "{\"fields\":{\"a\":0},\"clocks\":{\"a\":[\"" T2 "\",\"\\u00e9\"]}}",
	 "[{\"kind\":\"upsert\",\"fields\":{\"a\":1},\"hlc\":\"" T2 "\",\"client_id\":\"z\"}]",
	 "{\"a\":0}", NULL, "A", false},
	{"merge: the same clock does not beat itself (an op already confirmed)",
	 "{\"fields\":{\"t\":\"x\"},\"clocks\":{\"t\":[\"" T2 "\",\"me\"]}}",
	 "[{\"kind\":\"upsert\",\"fields\":{\"t\":\"x\"},\"hlc\":\"" T2 "\",\"client_id\":\"me\"}]",
	 "{\"t\":\"x\"}", "{\"t\":[\"" T2 "\",\"me\"]}", "A", false},
	{"merge: a field without a clock is won by any op",
	 "{\"fields\":{\"t\":\"default\",\"u\":1},\"clocks\":{\"u\":[\"" T4 "\",\"s\"]}}",
	 "[{\"kind\":\"upsert\",\"fields\":{\"t\":\"set\"},\"hlc\":\"" T1 "\",\"client_id\":\"me\"}]",
	 "{\"t\":\"set\",\"u\":1}", NULL, "A", false},
	{"merge: a malformed confirmed clock counts as none, as on the server",
	 "{\"fields\":{\"a\":0,\"b\":0,\"c\":0},\"clocks\":{\"a\":[\"" T4 "\"],\"b\":[\"000000000000000X\",\"s\"],\"c\":\"" T4 "\"}}",
	 "[{\"kind\":\"upsert\",\"fields\":{\"a\":1,\"b\":1,\"c\":1},\"hlc\":\"" T1 "\",\"client_id\":\"me\"}]",
	 "{\"a\":1,\"b\":1,\"c\":1}", NULL, "A", false},
	{"merge: fields absent from an op are left alone",
	 "{\"fields\":{\"a\":1,\"b\":2},\"clocks\":{}}",
	 "[{\"kind\":\"upsert\",\"fields\":{},\"hlc\":\"" T2 "\",\"client_id\":\"me\"},"
	 "{\"kind\":\"upsert\",\"hlc\":\"" T3 "\",\"client_id\":\"me\"}]",
	 "{\"a\":1,\"b\":2}", "{}", "AA", false},
	{"merge: an upsert without fields makes an unknown row visible, empty",
	 "null", "[{\"kind\":\"upsert\",\"hlc\":\"" T3 "\",\"client_id\":\"me\"}]", "{}", "{}", "A", false},
	{"merge: null is a value that wins like any other",
	 "{\"fields\":{\"a\":1},\"clocks\":{\"a\":[\"" T1 "\",\"s\"]}}",
	 "[{\"kind\":\"upsert\",\"fields\":{\"a\":null,\"b\":{\"nested\":[1,2]}},\"hlc\":\"" T2 "\",\"client_id\":\"me\"}]",
	 "{\"a\":null,\"b\":{\"nested\":[1,2]}}", NULL, "A", false},
	{"merge: several pending ops apply in outbox order",
	 "{\"fields\":{\"t\":\"a\"},\"clocks\":{\"t\":[\"" T1 "\",\"s\"]}}",
	 "[{\"kind\":\"upsert\",\"fields\":{\"t\":\"b\",\"n\":1},\"hlc\":\"" T2 "\",\"client_id\":\"me\"},"
	 "{\"kind\":\"upsert\",\"fields\":{\"t\":\"c\"},\"hlc\":\"" T3 "\",\"client_id\":\"me\"}]",
	 "{\"n\":1,\"t\":\"c\"}", "{\"n\":[\"" T2 "\",\"me\"],\"t\":[\"" T3 "\",\"me\"]}", "AA", false},
	{"merge: pending ops are merged by clock, not by outbox order",
	 "{\"fields\":{\"t\":\"a\"},\"clocks\":{\"t\":[\"" T1 "\",\"s\"]}}",
	 "[{\"kind\":\"upsert\",\"fields\":{\"t\":\"late\"},\"hlc\":\"" T3 "\",\"client_id\":\"me\"},"
	 "{\"kind\":\"upsert\",\"fields\":{\"t\":\"early\"},\"hlc\":\"" T2 "\",\"client_id\":\"me\"}]",
	 "{\"t\":\"late\"}", "{\"t\":[\"" T3 "\",\"me\"]}", "AA", false},
	{"merge: a pending delete hides the row",
	 "{\"fields\":{\"t\":\"a\"},\"clocks\":{\"t\":[\"" T1 "\",\"s\"]}}",
	 "[{\"kind\":\"delete\",\"hlc\":\"" T2 "\",\"client_id\":\"me\"}]", "null", NULL, "A", true},
	{"merge: a pending delete with an older clock still hides the row (absorbing)",
	 "{\"fields\":{\"t\":\"a\"},\"clocks\":{\"t\":[\"" T4 "\",\"s\"]}}",
	 "[{\"kind\":\"delete\",\"hlc\":\"" T1 "\",\"client_id\":\"me\"}]", "null", NULL, "A", true},
	{"merge: pending delete then upsert: the upsert is absorbed",
	 "{\"fields\":{\"t\":\"a\"},\"clocks\":{\"t\":[\"" T1 "\",\"s\"]}}",
	 "[{\"kind\":\"delete\",\"hlc\":\"" T2 "\",\"client_id\":\"me\"},"
	 "{\"kind\":\"upsert\",\"fields\":{\"t\":\"again\"},\"hlc\":\"" T3 "\",\"client_id\":\"me\"}]",
	 "null", NULL, "AX", true},
	{"merge: upsert then pending delete hides the row",
	 "null",
	 "[{\"kind\":\"upsert\",\"fields\":{\"t\":\"new\"},\"hlc\":\"" T2 "\",\"client_id\":\"me\"},"
	 "{\"kind\":\"delete\",\"hlc\":\"" T3 "\",\"client_id\":\"me\"}]",
	 "null", NULL, "AA", true},
	{"merge: a pending delete of an unknown row leaves a tombstone that absorbs",
	 "null",
	 "[{\"kind\":\"delete\",\"hlc\":\"" T2 "\",\"client_id\":\"me\"},"
	 "{\"kind\":\"upsert\",\"fields\":{\"t\":\"x\"},\"hlc\":\"" T3 "\",\"client_id\":\"me\"}]",
	 "null", NULL, "AX", true},
	{"merge: two pending deletes: the second is absorbed",
	 "{\"fields\":{\"t\":\"a\"},\"clocks\":{}}",
	 "[{\"kind\":\"delete\",\"hlc\":\"" T2 "\",\"client_id\":\"me\"},"
	 "{\"kind\":\"delete\",\"hlc\":\"" T3 "\",\"client_id\":\"me\"}]",
	 "null", NULL, "AX", true},
	{"merge: a row deleted on the server stays deleted; pending upserts are absorbed",
	 "{\"fields\":{},\"clocks\":{\"t\":[\"" T1 "\",\"s\"]},\"deleted\":true}",
	 "[{\"kind\":\"upsert\",\"fields\":{\"t\":\"x\"},\"hlc\":\"" T4 "\",\"client_id\":\"zzz\"},"
	 "{\"kind\":\"delete\",\"hlc\":\"" T4 "\",\"client_id\":\"zzz\"}]",
	 "null", NULL, "XX", true},
	{"merge: a tombstone of a never-seen row absorbs pending upserts",
	 "{\"deleted\":true}",
	 "[{\"kind\":\"upsert\",\"fields\":{\"t\":\"x\"},\"hlc\":\"" T4 "\",\"client_id\":\"me\"}]",
	 "null", NULL, "X", true},
	{"merge: a delete's fields are ignored",
	 "{\"fields\":{\"t\":\"a\"},\"clocks\":{}}",
	 "[{\"kind\":\"delete\",\"fields\":{\"t\":\"b\"},\"hlc\":\"" T2 "\",\"client_id\":\"me\"}]",
	 "null", NULL, "A", true},
};

/* Builds confirmed state from a merge case's text (the test's own format). */
static void
row_from_text(sl_row *row, const char *text)
{
	json_t *v = j(text);

	if (json_is_null(v)) {
		if (sl_row_init(row) != SL_OK)
			exit(2);
	} else if (json_object_get(v, "fields") == NULL) {
		if (sl_row_init(row) != SL_OK)
			exit(2);
		row->deleted = json_is_true(json_object_get(v, "deleted"));
	} else {
		if (sl_row_from_snapshot(row, v) != SL_OK) {
			fprintf(stderr, "test_core: bad confirmed state in a table: %s\n", text);
			exit(2);
		}
		row->deleted = json_is_true(json_object_get(v, "deleted"));
	}
	json_decref(v);
}

/* Fills ops[] from the JSON array pending (borrowed, must outlive ops). */
static size_t
ops_from_json(const json_t *pending, sl_pending_op *ops, size_t max)
{
	size_t n = json_array_size(pending);

	if (n > max)
		exit(2);
	for (size_t i = 0; i < n; i++) {
		const json_t *o = json_array_get(pending, i);
		const char *kind = json_string_value(json_object_get(o, "kind"));

		ops[i].kind = (kind && strcmp(kind, "delete") == 0) ? SL_OP_DELETE : SL_OP_UPSERT;
		ops[i].fields = json_object_get(o, "fields");
		ops[i].hlc = json_string_value(json_object_get(o, "hlc"));
		ops[i].client_id = json_string_value(json_object_get(o, "client_id"));
	}
	return n;
}

static void
test_merge(void)
{
	for (size_t i = 0; i < sizeof(merge_cases) / sizeof(merge_cases[0]); i++) {
		const merge_case *c = &merge_cases[i];
		sl_row confirmed, visible;
		sl_pending_op ops[8];
		sl_merge_outcome outcomes[8];
		json_t *pending = j(c->pending);
		size_t n = ops_from_json(pending, ops, 8);
		char *before, *after, *got_f = NULL, *got_c = NULL, *want_f = NULL, *want_c = NULL;
		char why[512] = "";
		int rc;

		row_from_text(&confirmed, c->confirmed);
		before = dump(confirmed.fields);
		rc = sl_merge_visible(&confirmed, ops, n, &visible, outcomes);
		after = dump(confirmed.fields);
		if (rc != SL_OK) {
			snprintf(why, sizeof why, "rc %d", rc);
		} else {
			bool shown = visible.fields != NULL && !visible.deleted;
			json_t *wf = j(c->want_fields);

			got_f = dump(shown ? visible.fields : NULL);
			want_f = dump(wf);
			json_decref(wf);
			if (strcmp(got_f, want_f) != 0)
				snprintf(why, sizeof why, "visible %s, want %s", got_f, want_f);
			else if (visible.deleted != c->want_deleted)
				snprintf(why, sizeof why, "deleted %d, want %d", visible.deleted, c->want_deleted);
			if (why[0] == '\0' && c->want_clocks) {
				json_t *wc = j(c->want_clocks);

				got_c = dump(visible.clocks);
				want_c = dump(wc);
				json_decref(wc);
				if (strcmp(got_c, want_c) != 0)
					snprintf(why, sizeof why, "clocks %s, want %s", got_c, want_c);
			}
			if (why[0] == '\0' && c->outcomes) {
				for (size_t k = 0; k < n; k++) {
					char want = c->outcomes[k], got = outcomes[k] == SL_MERGE_ABSORBED ? 'X' : 'A';

					if (got != want) {
						snprintf(why, sizeof why, "op %zu outcome %c, want %c", k, got, want);
						break;
					}
				}
			}
		}
		if (why[0] == '\0' && strcmp(before, after) != 0)
			snprintf(why, sizeof why, "confirmed state changed: %s -> %s", before, after);
		report(c->name, why[0] == '\0', "%s", why);
		free(before), free(after), free(got_f), free(got_c), free(want_f), free(want_c);
		sl_row_clear(&visible);
		sl_row_clear(&confirmed);
		json_decref(pending);
	}

	/* Bad pending ops are refused with nothing built. */
	{
		static const struct {
			const char *name;
			const char *op;
		} bad[] = {
			{"merge refuses an op with a bad hlc", "{\"kind\":\"upsert\",\"hlc\":\"123\",\"client_id\":\"me\"}"},
			{"merge refuses an op with no hlc", "{\"kind\":\"upsert\",\"client_id\":\"me\"}"},
			{"merge refuses an op with an empty client_id", "{\"kind\":\"upsert\",\"hlc\":\"" T1 "\",\"client_id\":\"\"}"},
			{"merge refuses an op with a 65-byte client_id",
			 "{\"kind\":\"upsert\",\"hlc\":\"" T1 "\",\"client_id\":"
			 "\"12345678901234567890123456789012345678901234567890123456789012345\"}"},
			{"merge refuses an upsert whose fields are not an object",
			 "{\"kind\":\"upsert\",\"fields\":[1],\"hlc\":\"" T1 "\",\"client_id\":\"me\"}"},
		};
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			sl_row confirmed, visible;
			sl_pending_op ops[2];
			json_t *pending = json_array();
			int rc;

			json_array_append_new(pending, j("{\"kind\":\"upsert\",\"fields\":{\"a\":1},\"hlc\":\"" T1 "\",\"client_id\":\"me\"}"));
			json_array_append_new(pending, j(bad[i].op));
			ops_from_json(pending, ops, 2);
			row_from_text(&confirmed, "null");
			rc = sl_merge_visible(&confirmed, ops, 2, &visible, NULL);
			report(bad[i].name, rc == SL_EINVAL && visible.fields == NULL && visible.clocks == NULL,
			       "rc %d", rc);
			sl_row_clear(&visible);
			sl_row_clear(&confirmed);
			json_decref(pending);
		}
		{
			sl_row confirmed, visible;
			sl_pending_op op = {(sl_op_kind) 7, NULL, T1, "me"};
			int rc;

			row_from_text(&confirmed, "null");
			rc = sl_merge_visible(&confirmed, &op, 1, &visible, NULL);
			report("merge refuses an op of an unknown kind", rc == SL_EINVAL, "rc %d", rc);
			sl_row_clear(&visible);
			sl_row_clear(&confirmed);
		}
	}
}

/* ---------------------------------------------------------------- changes */

typedef struct {
	const char *name;
	const char *confirmed; /* as in merge cases */
	const char *changes;   /* JSON array of change entries */
	const char *want;      /* {"fields":..,"clocks":..,"deleted":..}; fields null when unknown */
} change_case;

#define CH(seq, cid, kind, fields, hlc) \
	"{\"seq\":" #seq ",\"op_id\":\"op" #seq "\",\"client_id\":\"" cid "\",\"table\":\"issues\"," \
	"\"row\":\"r\",\"group\":\"g\",\"kind\":\"" kind "\",\"fields\":" fields ",\"hlc\":\"" hlc "\"}"

static const change_case change_cases[] = {
	{"change: an upsert creates an unknown row", "null",
	 "[" CH(1, "a", "upsert", "{\"id\":\"r\",\"t\":\"x\"}", T1) "]",
	 "{\"fields\":{\"id\":\"r\",\"t\":\"x\"},\"clocks\":{\"id\":[\"" T1 "\",\"a\"],\"t\":[\"" T1 "\",\"a\"]},\"deleted\":false}"},
	{"change: newer fields replace older ones, others stay",
	 "{\"fields\":{\"t\":\"x\",\"s\":\"open\"},\"clocks\":{\"t\":[\"" T1 "\",\"a\"],\"s\":[\"" T1 "\",\"a\"]}}",
	 "[" CH(2, "b", "upsert", "{\"t\":\"y\"}", T2) "]",
	 "{\"fields\":{\"t\":\"y\",\"s\":\"open\"},\"clocks\":{\"t\":[\"" T2 "\",\"b\"],\"s\":[\"" T1 "\",\"a\"]},\"deleted\":false}"},
	{"change: a change older than confirmed changes nothing for those fields",
	 "{\"fields\":{\"t\":\"new\",\"u\":0},\"clocks\":{\"t\":[\"" T3 "\",\"a\"],\"u\":[\"" T1 "\",\"a\"]}}",
	 "[" CH(2, "b", "upsert", "{\"t\":\"old\",\"u\":5}", T2) "]",
	 "{\"fields\":{\"t\":\"new\",\"u\":5},\"clocks\":{\"t\":[\"" T3 "\",\"a\"],\"u\":[\"" T2 "\",\"b\"]},\"deleted\":false}"},
	{"change: tie on hlc broken by client_id, whichever arrives first", "null",
	 "[" CH(1, "a", "upsert", "{\"t\":\"from a\",\"k\":1}", T2) "," CH(2, "b", "upsert", "{\"t\":\"from b\"}", T2) "]",
	 "{\"fields\":{\"t\":\"from b\",\"k\":1},\"clocks\":{\"t\":[\"" T2 "\",\"b\"],\"k\":[\"" T2 "\",\"a\"]},\"deleted\":false}"},
	{"change: a delete makes a tombstone",
	 "{\"fields\":{\"t\":\"x\"},\"clocks\":{\"t\":[\"" T1 "\",\"a\"]}}",
	 "[" CH(2, "b", "delete", "{}", T2) "]",
	 "{\"fields\":null,\"clocks\":{},\"deleted\":true}"},
	{"change: a delete is absorbing whatever the clocks",
	 "null",
	 "[" CH(1, "a", "upsert", "{\"t\":\"x\"}", T1) "," CH(2, "b", "delete", "null", T2) ","
	 CH(3, "c", "upsert", "{\"t\":\"late\",\"v\":9}", T4) "]",
	 "{\"fields\":null,\"clocks\":{},\"deleted\":true}"},
	{"change: a delete of an unknown row leaves a tombstone",
	 "null", "[" CH(1, "a", "delete", "null", T1) "]",
	 "{\"fields\":null,\"clocks\":{},\"deleted\":true}"},
	{"change: an upsert that won nothing (empty fields) still makes the row known",
	 "null", "[" CH(1, "a", "upsert", "{}", T1) "]",
	 "{\"fields\":{},\"clocks\":{},\"deleted\":false}"},
	{"change: concurrent edits to different fields converge field by field",
	 "{\"fields\":{\"t\":\"x\",\"s\":\"open\",\"p\":1},\"clocks\":{\"t\":[\"" T1 "\",\"a\"],\"s\":[\"" T1 "\",\"a\"],\"p\":[\"" T1 "\",\"a\"]}}",
	 "[" CH(2, "b", "upsert", "{\"t\":\"b's\",\"s\":\"closed\"}", T3) ","
	 CH(3, "c", "upsert", "{\"t\":\"c's\",\"p\":3}", T2) ","
	 CH(4, "d", "upsert", "{\"p\":4}", T4) ","
	 CH(5, "a", "upsert", "{\"s\":\"triage\"}", T3) "]",
	 "{\"fields\":{\"t\":\"b's\",\"s\":\"closed\",\"p\":4},\"clocks\":{\"t\":[\"" T3 "\",\"b\"],\"s\":[\"" T3 "\",\"b\"],\"p\":[\"" T4 "\",\"d\"]},\"deleted\":false}"},
	{"change: a confirmed field without a clock is won by any change",
	 "{\"fields\":{\"t\":\"default\"},\"clocks\":{}}",
	 "[" CH(1, "a", "upsert", "{\"t\":\"set\"}", T1) "]",
	 "{\"fields\":{\"t\":\"set\"},\"clocks\":{\"t\":[\"" T1 "\",\"a\"]},\"deleted\":false}"},
};

/* The text of a row in a change case's "want" format. */
static char *
row_text(const sl_row *row)
{
	json_t *o = json_pack("{s:O?,s:O?,s:b}", "fields", row->fields, "clocks", row->clocks,
	                      "deleted", row->deleted);
	char *s = dump(o);

	json_decref(o);
	return s;
}

/* Applies changes[order[0..n)] to a fresh confirmed state; the result's text. */
static char *
apply_in_order(const char *confirmed_text, const json_t *changes, const size_t *order, size_t n,
               bool twice, char *why, size_t whylen)
{
	sl_row row;
	char *s;

	row_from_text(&row, confirmed_text);
	for (int pass = 0; pass < (twice ? 2 : 1); pass++) {
		for (size_t k = 0; k < n; k++) {
			bool changed = false;
			char *before = row_text(&row);
			int rc = sl_apply_change(&row, json_array_get(changes, order[k]), &changed);
			char *after = row_text(&row);

			if (rc != SL_OK && why[0] == '\0')
				snprintf(why, whylen, "change %zu: rc %d", order[k], rc);
			if (changed != (strcmp(before, after) != 0) && why[0] == '\0')
				snprintf(why, whylen, "change %zu: changed=%d but %s -> %s", order[k], changed,
				         before, after);
			if (pass == 1 && changed && why[0] == '\0')
				snprintf(why, whylen, "applying change %zu again changed the row", order[k]);
			free(before);
			free(after);
		}
	}
	s = row_text(&row);
	sl_row_clear(&row);
	return s;
}

/* Next permutation of p[0..n) in lexicographic order; false after the last. */
static bool
next_perm(size_t *p, size_t n)
{
	size_t i, k;

	if (n < 2)
		return false;
	for (i = n - 1; i > 0 && p[i - 1] >= p[i]; i--)
		;
	if (i == 0)
		return false;
	for (k = n - 1; p[k] <= p[i - 1]; k--)
		;
	size_t t = p[i - 1]; p[i - 1] = p[k]; p[k] = t;
	for (size_t a = i, b = n - 1; a < b; a++, b--)
		t = p[a], p[a] = p[b], p[b] = t;
	return true;
}

static void
test_changes(void)
{
	for (size_t i = 0; i < sizeof(change_cases) / sizeof(change_cases[0]); i++) {
		const change_case *c = &change_cases[i];
		json_t *changes = j(c->changes), *wj = j(c->want);
		size_t n = json_array_size(changes), order[8];
		char *want = dump(wj), *got, name[300], why[600] = "";

		for (size_t k = 0; k < n; k++)
			order[k] = k;
		/* In seq order. */
		got = apply_in_order(c->confirmed, changes, order, n, false, why, sizeof why);
		if (why[0] == '\0' && strcmp(got, want) != 0)
			snprintf(why, sizeof why, "got %s, want %s", got, want);
		report(c->name, why[0] == '\0', "%s", why);
		free(got);

		/* Twice over: the second pass changes nothing. */
		why[0] = '\0';
		got = apply_in_order(c->confirmed, changes, order, n, true, why, sizeof why);
		if (why[0] == '\0' && strcmp(got, want) != 0)
			snprintf(why, sizeof why, "got %s, want %s", got, want);
		snprintf(name, sizeof name, "%s (idempotent: applied twice)", c->name);
		report(name, why[0] == '\0', "%s", why);
		free(got);

		/* Every order converges. */
		why[0] = '\0';
		size_t perms = 0;
		do {
			perms++;
			got = apply_in_order(c->confirmed, changes, order, n, false, why, sizeof why);
			if (why[0] == '\0' && strcmp(got, want) != 0) {
				snprintf(why, sizeof why, "order");
				for (size_t k = 0; k < n; k++)
					snprintf(why + strlen(why), sizeof why - strlen(why), " %zu", order[k]);
				snprintf(why + strlen(why), sizeof why - strlen(why), ": got %s", got);
			}
			free(got);
		} while (why[0] == '\0' && next_perm(order, n));
		snprintf(name, sizeof name, "%s (converges in all %zu orders)", c->name, perms);
		if (why[0] != '\0')
			snprintf(name, sizeof name, "%s (converges in every order)", c->name);
		report(name, why[0] == '\0', "%s", why);

		free(want);
		json_decref(wj);
		json_decref(changes);
	}

	/* Malformed changes are refused and change nothing. */
	{
		static const struct {
			const char *name;
			const char *change;
		} bad[] = {
			{"change refuses a non-object", "[1]"},
			{"change refuses an unknown kind", CH(1, "a", "merge", "{}", T1)},
			{"change refuses a missing kind", "{\"client_id\":\"a\",\"hlc\":\"" T1 "\",\"fields\":{}}"},
			{"change refuses a bad hlc", CH(1, "a", "upsert", "{}", "0000000100000000 ")},
			{"change refuses an uppercase hlc", CH(1, "a", "upsert", "{}", "00000001000000AA")},
			{"change refuses a missing client_id", "{\"kind\":\"upsert\",\"hlc\":\"" T1 "\",\"fields\":{}}"},
			{"change refuses an empty client_id", CH(1, "", "upsert", "{}", T1)},
			{"change refuses a client_id with a NUL", CH(1, "a\\u0000b", "upsert", "{}", T1)},
			{"change refuses fields that are not an object", CH(1, "a", "upsert", "[\"t\"]", T1)},
		};
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			sl_row row;
			json_t *ch = j(bad[i].change);
			char *before, *after;
			bool changed = true;
			int rc;

			row_from_text(&row, "{\"fields\":{\"t\":\"x\"},\"clocks\":{\"t\":[\"" T1 "\",\"a\"]}}");
			before = row_text(&row);
			rc = sl_apply_change(&row, ch, &changed);
			after = row_text(&row);
			report(bad[i].name, rc == SL_EINVAL && !changed && strcmp(before, after) == 0,
			       "rc %d, changed %d, %s -> %s", rc, changed, before, after);
			free(before);
			free(after);
			sl_row_clear(&row);
			json_decref(ch);
		}
	}

	/* The row owns copies: the caller may change the change afterwards. */
	{
		sl_row row;
		json_t *ch = j(CH(1, "a", "upsert", "{\"t\":{\"deep\":1}}", T1));
		char *s;

		row_from_text(&row, "null");
		sl_apply_change(&row, ch, NULL);
		json_object_set_new(json_object_get(json_object_get(ch, "fields"), "t"), "deep", json_integer(2));
		json_decref(ch);
		s = dump(row.fields);
		report("change: confirmed state holds its own copy of the values",
		       strcmp(s, "{\"t\":{\"deep\":1}}") == 0, "fields %s", s);
		free(s);
		sl_row_clear(&row);
	}
	sl_row_clear(NULL);
	report("sl_row_clear accepts NULL", true, "%s", "");
}

/* ---------------------------------------------------------------- main */

int
main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	test_hlc_parse();
	test_hlc_seq();
	test_merge();
	test_changes();
	printf("client-core: %d passed, %d failed\n", n_pass, n_fail);
	return n_fail > 0 ? 1 : 0;
}

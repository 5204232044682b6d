/*
 * tests/client/test_vectors.c: runs the shared vectors of tests/vectors/
 * (format in tests/vectors/README.md) against libsynclog's pure core,
 * client/hlc.c and client/merge.c.  web/test/vectors.test.mjs runs the same
 * files against the TypeScript port, so both clients are held to the same
 * answers.
 *
 * Built by `make -C client vectors-test-bin` with ASan and UBSan and run by
 * tests/suites/40-client-core.sh as `test_vectors DIR` (DIR defaults to the
 * repository's tests/vectors, compiled in as SL_VECTORS_DIR).  Prints one
 * line per case, "PASS: client-vectors: <file>: <name>" or
 * "FAIL: client-vectors: <file>: <name> (<why>)", and exits 1 if any case
 * failed.  A file that cannot be read, a case that does not follow the
 * format, and a .json file in DIR that no runner here knows are failures
 * too, so that no vector is skipped without saying so.
 *
 * Every JSON value of the vectors belongs to the loaded document of its
 * file; rows built here own deep copies (merge.h), released before the next
 * case.
 */
#include <dirent.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "hlc.h"
#include "merge.h"

#ifndef SL_VECTORS_DIR
#define SL_VECTORS_DIR "tests/vectors"
#endif

#define MAX_OPS 16    /* pending ops or changes in one case */
#define MAX_PERM_N 7  /* changes whose every order is tried (7! = 5040) */
#define WHY_LEN 2048

static int n_pass, n_fail;

/* The case being run: its file and name, for report(). */
static const char *cur_file, *cur_name;

/* Prints the PASS/FAIL line of the current case; why empty means PASS. */
static void
report(const char *why)
{
	if (why[0] == '\0') {
		n_pass++;
		printf("PASS: client-vectors: %s: %s\n", cur_file, cur_name);
	} else {
		n_fail++;
		printf("FAIL: client-vectors: %s: %s (%s)\n", cur_file, cur_name, why);
	}
}

static void fail(char *why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Writes the first failure of a case into why (WHY_LEN); later ones are dropped. */
static void
fail(char *why, const char *fmt, ...)
{
	va_list ap;

	if (why[0] != '\0')
		return;
	va_start(ap, fmt);
	vsnprintf(why, WHY_LEN, fmt, ap);
	va_end(ap);
}

/* Compact, key-sorted text of v (caller frees); "(none)" for NULL. */
static char *
dump(const json_t *v)
{
	char *s;

	if (v == NULL)
		return strdup("(none)");
	s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
	return s ? s : strdup("(unprintable)");
}

/* Reports "what: got X, want Y" into why unless json_equal(got, want). */
static bool
expect_json(char *why, const char *what, const json_t *got, const json_t *want)
{
	char *g, *w;

	if (got != NULL && want != NULL && json_equal(got, want))
		return true;
	g = dump(got);
	w = dump(want);
	fail(why, "%s: got %s, want %s", what, g, w);
	free(g);
	free(w);
	return false;
}

/* The status an "error" text names, or -1. */
static int
error_code(const json_t *e)
{
	const char *s = json_string_value(e);

	if (s == NULL)
		return -1;
	if (strcmp(s, "invalid") == 0)
		return SL_EINVAL;
	if (strcmp(s, "skew") == 0)
		return SL_ESKEW;
	if (strcmp(s, "range") == 0)
		return SL_ERANGE;
	return -1;
}

static const char *
rc_name(int rc)
{
	switch (rc) {
	case SL_OK: return "ok";
	case SL_EINVAL: return "invalid";
	case SL_ESKEW: return "skew";
	case SL_ERANGE: return "range";
	case SL_ENOMEM: return "nomem";
	default: return "?";
	}
}

/* A vector's hlc text (must be valid: it is the vector's own data). */
static bool
vec_hlc(const json_t *v, uint64_t *out, char *why, const char *what)
{
	if (!json_is_string(v) || sl_hlc_parse_n(json_string_value(v), json_string_length(v), out) != SL_OK) {
		char *s = dump(v);

		fail(why, "bad vector: %s is not an hlc: %s", what, s);
		free(s);
		return false;
	}
	return true;
}

/* ---------------------------------------------------------------- rows */

/*
 * A row from the vectors' {"fields": object|null, "clocks": object,
 * "deleted": bool}, all three keys required.  row is initialised either way
 * (sl_row_clear is safe); false with why set when v is not such a row.
 */
static bool
vec_row(sl_row *row, const json_t *v, char *why, const char *what)
{
	const json_t *f = json_object_get(v, "fields"), *c = json_object_get(v, "clocks"),
	             *d = json_object_get(v, "deleted");

	if (sl_row_init(row) != SL_OK) {
		fail(why, "out of memory");
		return false;
	}
	if (!(json_is_object(f) || json_is_null(f)) || !json_is_object(c) || !json_is_boolean(d)) {
		fail(why, "bad vector: %s is not {fields, clocks, deleted}", what);
		return false;
	}
	if (json_is_object(f) && (row->fields = json_deep_copy(f)) == NULL) {
		fail(why, "out of memory");
		return false;
	}
	json_decref(row->clocks);
	if ((row->clocks = json_deep_copy(c)) == NULL) {
		fail(why, "out of memory");
		return false;
	}
	row->deleted = json_is_true(d);
	return true;
}

/* The row as the vectors write it: a new reference. */
static json_t *
row_json(const sl_row *row)
{
	return json_pack("{s:O?,s:O?,s:b}", "fields", row->fields, "clocks", row->clocks, "deleted",
	                 row->deleted);
}

/* Reports "what: got X, want Y" into why unless row is the vector row want. */
static bool
expect_row(char *why, const char *what, const sl_row *row, const json_t *want)
{
	json_t *got = row_json(row);
	bool ok = expect_json(why, what, got, want);

	json_decref(got);
	return ok;
}

/*
 * A pending op from the vectors' {"kind", "fields", "hlc", "client_id"},
 * as the outbox would hand it over: fields absent or null are none; a kind
 * other than "upsert" or "delete" (or none) is passed as a kind merge.h
 * does not know; an hlc or client_id that is not a string is passed as
 * NULL.  Every pointer is borrowed from v.
 */
static void
vec_op(sl_pending_op *op, const json_t *v)
{
	const char *kind = json_string_value(json_object_get(v, "kind"));
	const json_t *fields = json_object_get(v, "fields");

	if (kind != NULL && strcmp(kind, "upsert") == 0)
		op->kind = SL_OP_UPSERT;
	else if (kind != NULL && strcmp(kind, "delete") == 0)
		op->kind = SL_OP_DELETE;
	else
		op->kind = (sl_op_kind) 99;
	op->fields = json_is_null(fields) ? NULL : fields;
	op->hlc = json_string_value(json_object_get(v, "hlc"));
	op->client_id = json_string_value(json_object_get(v, "client_id"));
}

/* The vectors' outcome names, as a JSON array (new reference). */
static json_t *
outcomes_json(const sl_merge_outcome *o, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_string(o[i] == SL_MERGE_ABSORBED ? "absorbed" : "applied"));
	return a;
}

/* ---------------------------------------------------------------- hlc.json */

static void
hlc_parse_case(const json_t *text, const json_t *expect, char *why)
{
	const json_t *err = json_object_get(expect, "error");
	uint64_t v = 42, v2 = 42;
	int rc, rc2;

	if (json_is_string(text)) {
		const char *s = json_string_value(text);
		size_t len = json_string_length(text);

		rc = sl_hlc_parse_n(s, len, &v);
		/* The NUL-terminated entry point agrees, unless the text holds a NUL. */
		if (strlen(s) == len) {
			rc2 = sl_hlc_parse(s, &v2);
			if (rc2 != rc || (rc == SL_OK && v2 != v))
				fail(why, "sl_hlc_parse gives %s %016llx, sl_hlc_parse_n %s %016llx", rc_name(rc2),
				     (unsigned long long) v2, rc_name(rc), (unsigned long long) v);
		}
	} else {
		rc = sl_hlc_parse(NULL, &v); /* C's only spelling of "not a string" */
	}
	if (err != NULL) {
		if (error_code(err) != SL_EINVAL)
			fail(why, "bad vector: parse can only fail with \"invalid\"");
		else if (rc != SL_EINVAL)
			fail(why, "parsed as %016llx (%s), want error invalid", (unsigned long long) v, rc_name(rc));
		else if (v != 42)
			fail(why, "refused, but wrote %016llx to the output", (unsigned long long) v);
		return;
	}
	if (!json_is_integer(json_object_get(expect, "ms")) || !json_is_integer(json_object_get(expect, "counter"))) {
		fail(why, "bad vector: expect needs error, or ms and counter");
		return;
	}
	{
		uint64_t ms = (uint64_t) json_integer_value(json_object_get(expect, "ms"));
		uint64_t ctr = (uint64_t) json_integer_value(json_object_get(expect, "counter"));
		char back[SL_HLC_TEXT_LEN + 1];

		if (rc != SL_OK) {
			fail(why, "refused (%s), want ms %llu counter %llu", rc_name(rc), (unsigned long long) ms,
			     (unsigned long long) ctr);
			return;
		}
		if (sl_hlc_ms(v) != ms || sl_hlc_counter(v) != ctr)
			fail(why, "ms %llu counter %u, want ms %llu counter %llu", (unsigned long long) sl_hlc_ms(v),
			     sl_hlc_counter(v), (unsigned long long) ms, (unsigned long long) ctr);
		sl_hlc_format(v, back);
		if (strcmp(back, json_string_value(text)) != 0)
			fail(why, "formats back as %s", back);
	}
}

static void
hlc_format_case(const json_t *in, const json_t *expect, char *why)
{
	const json_t *jm = json_object_get(in, "ms"), *jc = json_object_get(in, "counter");
	const char *want = json_string_value(json_object_get(expect, "text"));
	char got[SL_HLC_TEXT_LEN + 1];
	uint64_t v, back = 0;

	if (!json_is_integer(jm) || !json_is_integer(jc) || want == NULL || json_integer_value(jm) < 0 ||
	    (uint64_t) json_integer_value(jm) > SL_HLC_MS_MAX || json_integer_value(jc) < 0 ||
	    json_integer_value(jc) > 0xffff) {
		fail(why, "bad vector: format needs ms (0..2^48-1), counter (0..65535) and expect.text");
		return;
	}
	v = ((uint64_t) json_integer_value(jm) << 16) | (uint64_t) json_integer_value(jc);
	sl_hlc_format(v, got);
	if (strcmp(got, want) != 0)
		fail(why, "formatted %s, want %s", got, want);
	else if (sl_hlc_parse(got, &back) != SL_OK || back != v)
		fail(why, "%s does not parse back to %016llx", got, (unsigned long long) v);
}

static void
hlc_clock_case(const json_t *in, const json_t *expect, char *why)
{
	const json_t *steps = json_object_get(in, "steps"), *skew = json_object_get(in, "max_skew_ms");
	uint64_t start, want_last;
	sl_hlc_clock clock;
	size_t i;
	const json_t *st;

	if (!vec_hlc(json_object_get(in, "last"), &start, why, "clock.last") ||
	    !vec_hlc(json_object_get(expect, "last"), &want_last, why, "expect.last"))
		return;
	if (!json_is_integer(skew) || json_integer_value(skew) < 0 || !json_is_array(steps) ||
	    !json_is_integer(json_object_get(expect, "skew_refusals"))) {
		fail(why, "bad vector: clock needs max_skew_ms, steps, expect.skew_refusals");
		return;
	}
	sl_hlc_init(&clock, start, (uint64_t) json_integer_value(skew));
	json_array_foreach(steps, i, st) {
		const char *what = json_string_value(json_object_get(st, "do"));
		const json_t *jw = json_object_get(st, "wall_ms"), *ex = json_object_get(st, "expect");
		const json_t *err = json_object_get(ex, "error");
		uint64_t before = clock.last, wall, got = 0, want = 0;
		int rc, want_rc = err ? error_code(err) : SL_OK;

		if (!json_is_integer(jw) || json_integer_value(jw) < 0 || !json_is_object(ex) || want_rc < 0 ||
		    what == NULL) {
			fail(why, "bad vector: step %zu needs do, wall_ms, expect", i);
			return;
		}
		wall = (uint64_t) json_integer_value(jw);
		if (strcmp(what, "now") == 0) {
			if (err == NULL && !vec_hlc(json_object_get(ex, "value"), &want, why, "step's expect.value"))
				return;
			rc = sl_hlc_now(&clock, wall, &got);
			if (rc != want_rc)
				fail(why, "step %zu: now(%llu) gives %s %016llx, want %s", i, (unsigned long long) wall,
				     rc_name(rc), (unsigned long long) got, rc_name(want_rc));
			else if (rc == SL_OK && (got != want || clock.last != got))
				fail(why, "step %zu: now(%llu) gives %016llx (last %016llx), want %016llx", i,
				     (unsigned long long) wall, (unsigned long long) got, (unsigned long long) clock.last,
				     (unsigned long long) want);
			else if (rc != SL_OK && clock.last != before)
				fail(why, "step %zu: a refused now moved the clock to %016llx", i,
				     (unsigned long long) clock.last);
		} else if (strcmp(what, "observe") == 0) {
			uint64_t remote;

			if (!vec_hlc(json_object_get(st, "remote"), &remote, why, "step's remote") ||
			    !vec_hlc(json_object_get(ex, "last"), &want, why, "step's expect.last"))
				return;
			rc = sl_hlc_observe(&clock, remote, wall);
			if (rc != want_rc)
				fail(why, "step %zu: observe(%016llx, %llu) gives %s, want %s", i,
				     (unsigned long long) remote, (unsigned long long) wall, rc_name(rc), rc_name(want_rc));
			else if (clock.last != want)
				fail(why, "step %zu: observe(%016llx, %llu) leaves last %016llx, want %016llx", i,
				     (unsigned long long) remote, (unsigned long long) wall,
				     (unsigned long long) clock.last, (unsigned long long) want);
		} else {
			fail(why, "bad vector: step %zu: unknown do \"%s\"", i, what);
		}
		if (why[0] != '\0')
			return;
	}
	if (clock.last != want_last)
		fail(why, "last %016llx at the end, want %016llx", (unsigned long long) clock.last,
		     (unsigned long long) want_last);
	else if (clock.skew_refusals != (uint64_t) json_integer_value(json_object_get(expect, "skew_refusals")))
		fail(why, "skew_refusals %llu, want %lld", (unsigned long long) clock.skew_refusals,
		     (long long) json_integer_value(json_object_get(expect, "skew_refusals")));
}

static void
run_hlc(const json_t *in, const json_t *expect, char *why)
{
	if (json_object_get(in, "parse") != NULL)
		hlc_parse_case(json_object_get(in, "parse"), expect, why);
	else if (json_is_object(json_object_get(in, "format")))
		hlc_format_case(json_object_get(in, "format"), expect, why);
	else if (json_is_object(json_object_get(in, "clock")))
		hlc_clock_case(json_object_get(in, "clock"), expect, why);
	else
		fail(why, "bad vector: input needs parse, format or clock");
}

/* ---------------------------------------------------------------- clock_order.json */

static void
run_clock_order(const json_t *in, const json_t *expect, char *why)
{
	const json_t *a = json_object_get(in, "a"), *b = json_object_get(in, "b"),
	             *want_j = json_object_get(expect, "cmp");
	const char *ca = json_string_value(json_array_get(a, 1)), *cb = json_string_value(json_array_get(b, 1));
	uint64_t ha, hb;
	int want, ab, ba;

	if (!vec_hlc(json_array_get(a, 0), &ha, why, "a[0]") || !vec_hlc(json_array_get(b, 0), &hb, why, "b[0]"))
		return;
	if (ca == NULL || cb == NULL || !json_is_integer(want_j) || json_integer_value(want_j) < -1 ||
	    json_integer_value(want_j) > 1) {
		fail(why, "bad vector: needs a and b as [hlc, client_id] and expect.cmp in -1, 0, 1");
		return;
	}
	want = (int) json_integer_value(want_j);
	ab = sl_clock_cmp(ha, ca, hb, cb);
	ba = sl_clock_cmp(hb, cb, ha, ca);
	ab = (ab > 0) - (ab < 0);
	ba = (ba > 0) - (ba < 0);
	if (ab != want)
		fail(why, "cmp(a, b) is %d, want %d", ab, want);
	else if (ba != -want)
		fail(why, "cmp(b, a) is %d, want %d", ba, -want);
}

/* ---------------------------------------------------------------- merge_visible.json */

/*
 * Fills ops[] from the vector array v (borrowed); false with why set when
 * it is not an array of at most MAX_OPS objects.
 */
static bool
vec_ops(const json_t *v, sl_pending_op *ops, size_t *n, char *why)
{
	size_t i;
	const json_t *o;

	if (!json_is_array(v) || json_array_size(v) > MAX_OPS) {
		fail(why, "bad vector: ops is not an array of at most %d ops", MAX_OPS);
		return false;
	}
	json_array_foreach(v, i, o) {
		if (!json_is_object(o)) {
			fail(why, "bad vector: op %zu is not an object", i);
			return false;
		}
		vec_op(&ops[i], o);
	}
	*n = json_array_size(v);
	return true;
}

static void
run_merge_visible(const json_t *in, const json_t *expect, char *why)
{
	sl_row confirmed, visible = {0};
	sl_pending_op ops[MAX_OPS];
	sl_merge_outcome outcomes[MAX_OPS];
	const json_t *err = json_object_get(expect, "error");
	json_t *before = NULL, *after = NULL, *got_o = NULL;
	size_t n = 0;
	int rc;

	if (!vec_row(&confirmed, json_object_get(in, "confirmed"), why, "confirmed") ||
	    !vec_ops(json_object_get(in, "ops"), ops, &n, why))
		goto done;
	if (err != NULL && error_code(err) != SL_EINVAL) {
		fail(why, "bad vector: merge can only fail with \"invalid\"");
		goto done;
	}
	if (err == NULL && (!json_is_object(json_object_get(expect, "visible")) ||
	                    !json_is_array(json_object_get(expect, "outcomes")))) {
		fail(why, "bad vector: expect needs error, or visible and outcomes");
		goto done;
	}
	before = row_json(&confirmed);
	rc = sl_merge_visible(&confirmed, ops, n, &visible, outcomes);
	after = row_json(&confirmed);
	if (err != NULL) {
		if (rc != SL_EINVAL) {
			json_t *got = row_json(&visible);
			char *s = dump(got);

			fail(why, "gives %s %s, want error invalid", rc_name(rc), s);
			free(s);
			json_decref(got);
		} else if (visible.fields != NULL || visible.clocks != NULL) {
			fail(why, "refused, but left a visible row built");
		}
	} else if (rc != SL_OK) {
		fail(why, "refused (%s), want a visible row", rc_name(rc));
	} else {
		got_o = outcomes_json(outcomes, n);
		if (expect_row(why, "visible", &visible, json_object_get(expect, "visible")))
			expect_json(why, "outcomes", got_o, json_object_get(expect, "outcomes"));
	}
	expect_json(why, "confirmed state (must not change)", after, before);
done:
	json_decref(before);
	json_decref(after);
	json_decref(got_o);
	sl_row_clear(&visible);
	sl_row_clear(&confirmed);
}

/* ---------------------------------------------------------------- apply_change.json */

enum result { R_CHANGED, R_UNCHANGED, R_INVALID, R_BAD };

static enum result
result_of(const json_t *v)
{
	const char *s = json_string_value(v);

	if (s == NULL)
		return R_BAD;
	if (strcmp(s, "changed") == 0)
		return R_CHANGED;
	if (strcmp(s, "unchanged") == 0)
		return R_UNCHANGED;
	if (strcmp(s, "invalid") == 0)
		return R_INVALID;
	return R_BAD;
}

static const char *const result_names[] = {"changed", "unchanged", "invalid", "?"};

/*
 * Applies change to row and checks the call against itself: its changed
 * flag must say whether the row changed, and a refused change must leave
 * the row as it was.  Returns what happened, or R_BAD with why set.
 */
static enum result
apply_one(sl_row *row, const json_t *change, char *why, const char *ctx)
{
	json_t *before = row_json(row), *after;
	bool changed = true, differs;
	int rc = sl_apply_change(row, change, &changed);
	enum result r = R_BAD;

	after = row_json(row);
	differs = !json_equal(before, after);
	if (rc == SL_EINVAL) {
		if (changed || differs)
			fail(why, "%s: refused, but changed=%d and the row %s", ctx, changed,
			     differs ? "changed" : "stayed");
		else
			r = R_INVALID;
	} else if (rc != SL_OK) {
		fail(why, "%s: %s", ctx, rc_name(rc));
	} else if (changed != differs) {
		char *b = dump(before), *a = dump(after);

		fail(why, "%s: changed=%d but %s -> %s", ctx, changed, b, a);
		free(b);
		free(a);
	} else {
		r = changed ? R_CHANGED : R_UNCHANGED;
	}
	json_decref(before);
	json_decref(after);
	return r;
}

/* Next permutation of p[0..n) in lexicographic order; false after the last. */
static bool
next_perm(size_t *p, size_t n)
{
	size_t i, k, t;

	if (n < 2)
		return false;
	for (i = n - 1; i > 0 && p[i - 1] >= p[i]; i--)
		;
	if (i == 0)
		return false;
	for (k = n - 1; p[k] <= p[i - 1]; k--)
		;
	t = p[i - 1], p[i - 1] = p[k], p[k] = t;
	for (size_t a = i, b = n - 1; a < b; a++, b--)
		t = p[a], p[a] = p[b], p[b] = t;
	return true;
}

static void
run_apply_change(const json_t *in, const json_t *expect, char *why)
{
	const json_t *changes = json_object_get(in, "changes"), *results = json_object_get(expect, "results"),
	             *want_row = json_object_get(expect, "row");
	size_t n = json_array_size(changes), order[MAX_OPS], perms = 0;
	sl_row row = {0};
	char ctx[64];

	if (!json_is_array(changes) || n > MAX_OPS || !json_is_array(results) || json_array_size(results) != n ||
	    !json_is_object(want_row)) {
		fail(why, "bad vector: needs changes, expect.results (one per change) and expect.row");
		return;
	}
	for (size_t k = 0; k < n; k++)
		if (result_of(json_array_get(results, k)) == R_BAD) {
			fail(why, "bad vector: result %zu is not changed, unchanged or invalid", k);
			return;
		}

	/* In the given order, each change's result; then the final row. */
	if (!vec_row(&row, json_object_get(in, "confirmed"), why, "confirmed"))
		goto done;
	for (size_t k = 0; k < n && why[0] == '\0'; k++) {
		enum result want = result_of(json_array_get(results, k)), got;

		snprintf(ctx, sizeof ctx, "change %zu", k);
		got = apply_one(&row, json_array_get(changes, k), why, ctx);
		if (got != R_BAD && got != want) {
			json_t *r = row_json(&row);
			char *s = dump(r);

			fail(why, "change %zu: %s, want %s (row now %s)", k, result_names[got], result_names[want], s);
			free(s);
			json_decref(r);
		}
	}
	if (why[0] == '\0')
		expect_row(why, "row", &row, want_row);

	/* Every change once more: nothing changes (idempotent). */
	for (size_t k = 0; k < n && why[0] == '\0'; k++) {
		enum result want = result_of(json_array_get(results, k)) == R_INVALID ? R_INVALID : R_UNCHANGED, got;

		snprintf(ctx, sizeof ctx, "change %zu applied again", k);
		got = apply_one(&row, json_array_get(changes, k), why, ctx);
		if (got != R_BAD && got != want)
			fail(why, "change %zu applied again: %s, want %s", k, result_names[got], result_names[want]);
	}
	if (why[0] == '\0')
		expect_row(why, "row after applying every change again", &row, want_row);
	sl_row_clear(&row);

	/* Every order of application ends in the same row (commutative). */
	if (n > MAX_PERM_N) {
		fail(why, "bad vector: more than %d changes, too many orders to try", MAX_PERM_N);
		goto done;
	}
	for (size_t k = 0; k < n; k++)
		order[k] = k;
	do {
		if (why[0] != '\0')
			break;
		perms++;
		if (!vec_row(&row, json_object_get(in, "confirmed"), why, "confirmed"))
			goto done;
		for (size_t k = 0; k < n && why[0] == '\0'; k++) {
			snprintf(ctx, sizeof ctx, "order %zu, change %zu", perms, order[k]);
			(void) apply_one(&row, json_array_get(changes, order[k]), why, ctx);
		}
		if (why[0] == '\0') {
			char what[64 + 16 * MAX_OPS] = "row in the order";

			for (size_t k = 0; k < n; k++)
				snprintf(what + strlen(what), sizeof what - strlen(what), " %zu", order[k]);
			expect_row(why, what, &row, want_row);
		}
		sl_row_clear(&row);
	} while (next_perm(order, n));
done:
	sl_row_clear(&row);
}

/* ---------------------------------------------------------------- row_from_snapshot.json */

static void
run_row_from_snapshot(const json_t *in, const json_t *expect, char *why)
{
	const json_t *err = json_object_get(expect, "error"), *want = json_object_get(expect, "row");
	json_t *snap;
	sl_row row;
	int rc;

	if (!json_is_object(in) || (snap = json_object_get(in, "snapshot")) == NULL ||
	    (err == NULL && !json_is_object(want)) || (err != NULL && error_code(err) != SL_EINVAL)) {
		fail(why, "bad vector: needs input.snapshot and expect.row or expect.error \"invalid\"");
		return;
	}
	rc = sl_row_from_snapshot(&row, snap);
	if (err != NULL) {
		if (rc != SL_EINVAL)
			fail(why, "gives %s, want error invalid", rc_name(rc));
		else if (row.fields != NULL)
			fail(why, "refused, but the row has fields");
	} else if (rc != SL_OK) {
		fail(why, "refused (%s), want a row", rc_name(rc));
	} else {
		expect_row(why, "row", &row, want);
	}
	sl_row_clear(&row);
}

/* ---------------------------------------------------------------- rebase.json */

/* One pending op of a rebase case: its id and its vector object (borrowed). */
typedef struct {
	const char *id;
	const json_t *op;
} pend;

/* Removes the op named id from p[0..*n), if there; true if it was. */
static bool
pend_remove(pend *p, size_t *n, const char *id)
{
	for (size_t i = 0; i < *n; i++)
		if (strcmp(p[i].id, id) == 0) {
			memmove(&p[i], &p[i + 1], (*n - i - 1) * sizeof(*p));
			(*n)--;
			return true;
		}
	return false;
}

static void
run_rebase(const json_t *in, const json_t *expect, char *why)
{
	const json_t *steps = json_object_get(in, "steps"), *st;
	pend pending[MAX_OPS];
	size_t n_pend = 0, i;
	sl_row confirmed;

	(void) expect; /* a rebase case's expectations are in its steps */
	if (!vec_row(&confirmed, json_object_get(in, "confirmed"), why, "confirmed"))
		goto done;
	if (!json_is_array(steps) || json_array_size(steps) == 0) {
		fail(why, "bad vector: input.steps is not a non-empty array");
		goto done;
	}
	json_array_foreach(steps, i, st) {
		const json_t *ex = json_object_get(st, "expect"), *a;
		sl_pending_op ops[MAX_OPS];
		sl_merge_outcome outcomes[MAX_OPS];
		sl_row visible = {0};
		json_t *ids, *got_o;
		char ctx[64];
		int rc;

		if (!json_is_object(ex) || !json_is_object(json_object_get(ex, "visible")) ||
		    !json_is_array(json_object_get(ex, "pending")) || !json_is_array(json_object_get(ex, "outcomes"))) {
			fail(why, "bad vector: step %zu needs expect.visible, expect.pending, expect.outcomes", i);
			break;
		}
		if ((a = json_object_get(st, "put")) != NULL) {
			const char *id = json_string_value(json_object_get(a, "id"));

			if (id == NULL || n_pend == MAX_OPS) {
				fail(why, "bad vector: step %zu: put needs an id (and at most %d pending ops)", i, MAX_OPS);
				break;
			}
			pending[n_pend].id = id;
			pending[n_pend++].op = a;
		} else if ((a = json_object_get(st, "change")) != NULL) {
			const char *op_id = json_string_value(json_object_get(a, "op_id"));
			bool changed;

			if ((rc = sl_apply_change(&confirmed, a, &changed)) != SL_OK) {
				fail(why, "step %zu: the change is refused (%s)", i, rc_name(rc));
				break;
			}
			if (op_id != NULL)
				(void) pend_remove(pending, &n_pend, op_id);
		} else if ((a = json_object_get(st, "reject")) != NULL) {
			if (!json_is_string(a) || !pend_remove(pending, &n_pend, json_string_value(a))) {
				fail(why, "bad vector: step %zu: reject names no pending op", i);
				break;
			}
		} else if ((a = json_object_get(st, "snapshot")) != NULL) {
			sl_row_clear(&confirmed);
			if (json_is_null(a))
				rc = sl_row_init(&confirmed);
			else
				rc = sl_row_from_snapshot(&confirmed, a);
			if (rc != SL_OK) {
				fail(why, "step %zu: the snapshot row is refused (%s)", i, rc_name(rc));
				break;
			}
		} else {
			fail(why, "bad vector: step %zu needs put, change, reject or snapshot", i);
			break;
		}
		for (size_t k = 0; k < n_pend; k++)
			vec_op(&ops[k], pending[k].op);
		if ((rc = sl_merge_visible(&confirmed, ops, n_pend, &visible, outcomes)) != SL_OK) {
			fail(why, "step %zu: merge refused (%s)", i, rc_name(rc));
			break;
		}
		ids = json_array();
		for (size_t k = 0; k < n_pend; k++)
			json_array_append_new(ids, json_string(pending[k].id));
		got_o = outcomes_json(outcomes, n_pend);
		snprintf(ctx, sizeof ctx, "step %zu: visible", i);
		expect_row(why, ctx, &visible, json_object_get(ex, "visible"));
		snprintf(ctx, sizeof ctx, "step %zu: pending", i);
		expect_json(why, ctx, ids, json_object_get(ex, "pending"));
		snprintf(ctx, sizeof ctx, "step %zu: outcomes", i);
		expect_json(why, ctx, got_o, json_object_get(ex, "outcomes"));
		json_decref(ids);
		json_decref(got_o);
		sl_row_clear(&visible);
		if (why[0] != '\0')
			break;
	}
done:
	sl_row_clear(&confirmed);
}

/* ---------------------------------------------------------------- files */

typedef void (*runner)(const json_t *in, const json_t *expect, char *why);

static const struct {
	const char *file;
	runner run;
	bool needs_expect;
} runners[] = {
	{"hlc.json", run_hlc, true},
	{"clock_order.json", run_clock_order, true},
	{"merge_visible.json", run_merge_visible, true},
	{"apply_change.json", run_apply_change, true},
	{"row_from_snapshot.json", run_row_from_snapshot, true},
	{"rebase.json", run_rebase, false},
};
#define N_RUNNERS (sizeof(runners) / sizeof(runners[0]))

/* Runs every case of one file; a file that cannot be used is one FAIL line. */
static void
run_file(const char *dir, size_t r)
{
	char path[4096], why[WHY_LEN] = "";
	json_error_t err;
	json_t *doc, *cases, *c;
	size_t i;

	cur_file = runners[r].file;
	snprintf(path, sizeof path, "%s/%s", dir, runners[r].file);
	/* JSON_ALLOW_NUL: a few vectors hold a NUL inside a string on purpose. */
	doc = json_load_file(path, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &err);
	cases = json_object_get(doc, "cases");
	if (doc == NULL)
		fail(why, "cannot load %s: line %d: %s", path, err.line, err.text);
	else if (!json_is_string(json_object_get(doc, "about")) || !json_is_array(cases) ||
	         json_array_size(cases) == 0)
		fail(why, "bad vector file: needs \"about\" and a non-empty \"cases\" array");
	if (why[0] != '\0') {
		cur_name = "(the file)";
		report(why);
		json_decref(doc);
		return;
	}
	json_array_foreach(cases, i, c) {
		const json_t *name = json_object_get(c, "name"), *in = json_object_get(c, "input"),
		             *ex = json_object_get(c, "expect");
		char fallback[32];

		why[0] = '\0';
		snprintf(fallback, sizeof fallback, "(case %zu)", i);
		cur_name = json_is_string(name) ? json_string_value(name) : fallback;
		if (!json_is_string(name) || !json_is_object(in) || (runners[r].needs_expect && !json_is_object(ex)))
			fail(why, "bad vector: a case needs name, input%s", runners[r].needs_expect ? " and expect" : "");
		else
			runners[r].run(in, ex, why);
		report(why);
	}
	json_decref(doc);
}

int
main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : SL_VECTORS_DIR;
	DIR *d;
	struct dirent *e;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (size_t r = 0; r < N_RUNNERS; r++)
		run_file(dir, r);

	/* A .json file that nothing here runs would be a silent gap. */
	cur_name = "(the file)";
	if ((d = opendir(dir)) == NULL) {
		cur_file = dir;
		report("cannot list the directory");
	} else {
		while ((e = readdir(d)) != NULL) {
			size_t len = strlen(e->d_name), r;

			if (len < 5 || strcmp(e->d_name + len - 5, ".json") != 0)
				continue;
			for (r = 0; r < N_RUNNERS && strcmp(runners[r].file, e->d_name) != 0; r++)
				;
			if (r == N_RUNNERS) {
				cur_file = e->d_name;
				report("no runner in tests/client/test_vectors.c knows this file");
			}
		}
		closedir(d);
	}
	printf("client-vectors: %d passed, %d failed\n", n_pass, n_fail);
	return n_fail > 0 ? 1 : 0;
}

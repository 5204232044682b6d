/*
 * bench/clientbench.c: one trial of the client store's benchmarks (bench/client.sh
 * runs it several times and reports medians), each figure beside a baseline
 * measured in the same process, on the same file system, with SQLite set up
 * the same way (WAL, synchronous=NORMAL):
 *
 *   put     local write latency: sl_store_put of one new row (one
 *           transaction: outbox + visible row), timed call by call, p50 and
 *           p99 over N writes after a warm-up.  Baseline: BEGIN; INSERT OR
 *           REPLACE of the same row into a table of the same shape; COMMIT,
 *           all three prepared once.
 *   apply   applying `changes` frames of B changes each (PROTOCOL.md; texts
 *           built before the clock starts) with sl_store_apply_changes:
 *           changes/s over F frames.  Baseline: the same rows inserted with
 *           one prepared INSERT OR REPLACE per row, B rows per transaction.
 *
 * Built by bench/Makefile with -O2 and no sanitizers, from the store's
 * sources (client/store.c, outbox.c, rebase.c, jscan.c, merge.c, hlc.c), so no
 * network library is needed.
 *
 * Usage: clientbench DIR WRITES FRAMES [BATCH]
 * DIR is a directory (made if missing; its bench files are replaced).
 * Prints one line of key=value pairs:
 *   put_p50_us put_p99_us bare_put_p50_us bare_put_p99_us
 *   apply_changes_per_s bare_apply_rows_per_s
 * Exit status 0, or 1 with a message on stderr.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store.h"

#define WARMUP 1000

static const char *tables_json =
	"{\"issues\": {\"pk\": \"id\", \"group\": \"team\", \"columns\": {\"id\": \"text\","
	" \"team\": \"text\", \"title\": \"text\", \"prio\": \"integer\", \"done\": \"boolean\"}}}";

/* The same shape, as the store creates it from tables_json. */
static const char *bare_schema =
	"CREATE TABLE issues (id TEXT PRIMARY KEY, team TEXT, title TEXT, prio INTEGER, done INTEGER)";

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void
die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "clientbench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	exit(1);
}

static double
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec * 1e6 + (double) ts.tv_nsec / 1e3;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *) a, y = *(const double *) b;

	return (x > y) - (x < y);
}

/* The q-quantile (0 < q <= 1) of n sorted values: the smallest value with q of them at or below. */
static double
quantile(const double *v, size_t n, double q)
{
	size_t i = (size_t) (q * (double) n + 0.999999);

	return v[i > 0 ? i - 1 : 0];
}

/* dir/name into out, with any file of that name (and its -wal, -shm) removed. */
static void
path_in(char *out, size_t size, const char *dir, const char *name)
{
	static const char *const suffix[] = {"", "-wal", "-shm"};
	char p[1200];

	snprintf(out, size, "%s/%s", dir, name);
	for (size_t i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s%s", out, suffix[i]);
		unlink(p);
	}
}

static sqlite3 *
bare_open(const char *path)
{
	sqlite3 *db;

	if (sqlite3_open(path, &db) != SQLITE_OK ||
	    sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(db, bare_schema, NULL, NULL, NULL) != SQLITE_OK)
		die("%s: %s", path, sqlite3_errmsg(db));
	return db;
}

static sqlite3_stmt *
prep(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		die("prepare %s: %s", sql, sqlite3_errmsg(db));
	return st;
}

static void
step_done(sqlite3 *db, sqlite3_stmt *st)
{
	if (sqlite3_step(st) != SQLITE_DONE)
		die("step: %s", sqlite3_errmsg(db));
	sqlite3_reset(st);
}

/* One bare row: BEGIN; INSERT OR REPLACE; COMMIT, all prepared. */
struct bare {
	sqlite3 *db;
	sqlite3_stmt *begin, *ins, *commit;
};

static void
bare_row(struct bare *b, const char *id, const char *title, int prio)
{
	sqlite3_bind_text(b->ins, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(b->ins, 2, "t1", -1, SQLITE_STATIC);
	sqlite3_bind_text(b->ins, 3, title, -1, SQLITE_STATIC);
	sqlite3_bind_int(b->ins, 4, prio);
	step_done(b->db, b->ins);
}

static void
bare_init(struct bare *b, const char *path)
{
	b->db = bare_open(path);
	b->begin = prep(b->db, "BEGIN");
	b->ins = prep(b->db, "INSERT OR REPLACE INTO issues (id, team, title, prio) VALUES (?, ?, ?, ?)");
	b->commit = prep(b->db, "COMMIT");
}

static void
bare_close(struct bare *b)
{
	sqlite3_finalize(b->begin);
	sqlite3_finalize(b->ins);
	sqlite3_finalize(b->commit);
	sqlite3_close(b->db);
}

static sl_store *
store_open(const char *path)
{
	sl_store *st = NULL;

	if (sl_store_open(path, &st) != SL_OK)
		die("open %s: %s", path, st ? sl_store_errmsg(st) : "failed");
	if (sl_store_ensure_tables(st, tables_json) != SL_OK)
		die("ensure_tables: %s", sl_store_errmsg(st));
	return st;
}

/* ---------------------------------------------------------------- put */

static void
bench_put(const char *dir, size_t n, double out[4])
{
	size_t total = n + WARMUP;
	double *lat = malloc(n * sizeof(*lat)), *bare_lat = malloc(n * sizeof(*bare_lat));
	char (*ids)[32] = malloc(total * sizeof(*ids));
	char (*fields)[96] = malloc(total * sizeof(*fields));
	char (*titles)[32] = malloc(total * sizeof(*titles));
	char path[1100];
	struct bare b;
	sl_store *st;

	if (!lat || !bare_lat || !ids || !fields || !titles)
		die("out of memory");
	for (size_t i = 0; i < total; i++) {
		snprintf(ids[i], sizeof(ids[i]), "row-%08zu", i);
		snprintf(titles[i], sizeof(titles[i]), "title %zu", i);
		snprintf(fields[i], sizeof(fields[i]), "{\"team\":\"t1\",\"title\":\"%s\",\"prio\":%d}",
		         titles[i], (int) (i % 5));
	}

	path_in(path, sizeof(path), dir, "bare-put.db");
	bare_init(&b, path);
	for (size_t i = 0; i < total; i++) {
		double t0 = now_us();

		step_done(b.db, b.begin);
		bare_row(&b, ids[i], titles[i], (int) (i % 5));
		step_done(b.db, b.commit);
		if (i >= WARMUP)
			bare_lat[i - WARMUP] = now_us() - t0;
	}
	bare_close(&b);

	path_in(path, sizeof(path), dir, "store-put.db");
	st = store_open(path);
	for (size_t i = 0; i < total; i++) {
		double t0 = now_us();

		if (sl_store_put(st, "issues", ids[i], fields[i], NULL) != SL_OK)
			die("put: %s", sl_store_errmsg(st));
		if (i >= WARMUP)
			lat[i - WARMUP] = now_us() - t0;
	}
	sl_store_close(st);

	qsort(lat, n, sizeof(*lat), cmp_double);
	qsort(bare_lat, n, sizeof(*bare_lat), cmp_double);
	out[0] = quantile(lat, n, 0.50);
	out[1] = quantile(lat, n, 0.99);
	out[2] = quantile(bare_lat, n, 0.50);
	out[3] = quantile(bare_lat, n, 0.99);
	free(lat);
	free(bare_lat);
	free(ids);
	free(fields);
	free(titles);
}

/* ---------------------------------------------------------------- apply */

/* A growable string; dies when memory runs out. */
struct buf {
	char *p;
	size_t len, cap;
};

static void
bprintf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0)
			die("vsnprintf");
		if (b->len + (size_t) n < b->cap) {
			b->len += (size_t) n;
			return;
		}
		b->cap = b->cap ? b->cap * 2 : 4096;
		if ((b->p = realloc(b->p, b->cap)) == NULL)
			die("out of memory");
	}
}

static void
bench_apply(const char *dir, size_t frames, size_t batch, double out[2])
{
	char **text = malloc(frames * sizeof(*text));
	char (*ids)[32] = malloc(frames * batch * sizeof(*ids));
	char (*titles)[32] = malloc(frames * batch * sizeof(*titles));
	struct timespec ts;
	uint64_t ms;
	char path[1100];
	struct bare b;
	sl_store *st;
	double t0, t_store, t_bare;

	if (!text || !ids || !titles)
		die("out of memory");
	clock_gettime(CLOCK_REALTIME, &ts);
	ms = (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000 - 10000; /* 10 s ago */
	for (size_t f = 0; f < frames; f++) {
		struct buf fb = {0};

		bprintf(&fb, "{\"type\":\"changes\",\"changes\":[");
		for (size_t j = 0; j < batch; j++) {
			size_t k = f * batch + j;

			snprintf(ids[k], sizeof(ids[k]), "row-%08zu", k);
			snprintf(titles[k], sizeof(titles[k]), "title %zu", k);
			bprintf(&fb,
			        "%s{\"seq\":%zu,\"op_id\":\"00000000-0000-4000-8000-%012zx\",\"client_id\":\"other-client\","
			        "\"table\":\"issues\",\"row\":\"%s\",\"group\":\"t1\",\"kind\":\"upsert\","
			        "\"fields\":{\"team\":\"t1\",\"title\":\"%s\",\"prio\":%d},\"hlc\":\"%012llx%04x\"}",
			        j ? "," : "", k + 1, k, ids[k], titles[k], (int) (k % 5),
			        (unsigned long long) (ms + k / 1000), (unsigned) (k % 1000));
		}
		bprintf(&fb, "],\"cursor\":%zu}", (f + 1) * batch);
		text[f] = fb.p;
	}

	path_in(path, sizeof(path), dir, "bare-apply.db");
	bare_init(&b, path);
	t0 = now_us();
	for (size_t f = 0; f < frames; f++) {
		step_done(b.db, b.begin);
		for (size_t j = 0; j < batch; j++) {
			size_t k = f * batch + j;

			bare_row(&b, ids[k], titles[k], (int) (k % 5));
		}
		step_done(b.db, b.commit);
	}
	t_bare = now_us() - t0;
	bare_close(&b);

	path_in(path, sizeof(path), dir, "store-apply.db");
	st = store_open(path);
	t0 = now_us();
	for (size_t f = 0; f < frames; f++) {
		if (sl_store_apply_changes(st, text[f]) != SL_OK)
			die("apply_changes: %s", sl_store_errmsg(st));
	}
	t_store = now_us() - t0;
	if (sl_store_cursor(st) != frames * batch)
		die("cursor %llu after applying, want %zu", (unsigned long long) sl_store_cursor(st),
		    frames * batch);
	sl_store_close(st);

	out[0] = (double) (frames * batch) / (t_store / 1e6);
	out[1] = (double) (frames * batch) / (t_bare / 1e6);
	for (size_t f = 0; f < frames; f++)
		free(text[f]);
	free(text);
	free(ids);
	free(titles);
}

int
main(int argc, char **argv)
{
	double put[4], apply[2];
	size_t writes, frames, batch = 1000;

	if (argc < 4 || argc > 5)
		die("usage: clientbench DIR WRITES FRAMES [BATCH]");
	writes = strtoul(argv[2], NULL, 10);
	frames = strtoul(argv[3], NULL, 10);
	if (argc == 5)
		batch = strtoul(argv[4], NULL, 10);
	if (writes == 0 || frames == 0 || batch == 0)
		die("WRITES, FRAMES and BATCH must be positive");
	if (mkdir(argv[1], 0755) != 0 && errno != EEXIST)
		die("mkdir %s: %s", argv[1], strerror(errno));
	bench_put(argv[1], writes, put);
	bench_apply(argv[1], frames, batch, apply);
	printf("put_p50_us=%.3f put_p99_us=%.3f bare_put_p50_us=%.3f bare_put_p99_us=%.3f"
	       " apply_changes_per_s=%.1f bare_apply_rows_per_s=%.1f\n",
	       put[0], put[1], put[2], put[3], apply[0], apply[1]);
	return 0;
}

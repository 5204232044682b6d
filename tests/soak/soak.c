/*
 * tests/soak/soak.c: the clients and the judge of `make soak`
 * (scripts/soak.sh runs them; tests/suites/60-soak.sh runs a short soak in
 * `make check`).
 *
 *   soak client --url U --token T --group G --dir D --index I --rows K --seed S
 *       One libsynclog client (public API only, client/synclog.h) on
 *       D/client-I.db.  Until D/quiet exists it makes random upserts and
 *       deletes over rows r000..rK-1 of table `items` (fields title, status,
 *       prio, body, n), now and then goes offline for 0.3-4 s, and otherwise
 *       keeps synclog_run() going.  Every op it makes is appended, once
 *       synclog_put/delete returned (locally acknowledged), to D/ops-I.log:
 *           op_id TAB client_id TAB hlc TAB row TAB kind TAB fields-json
 *       and every refusal to D/rejected-I.log (op_id TAB code).  Then it
 *       drains: syncs until its outbox is empty and writes D/drained-I.  It
 *       waits for D/final (the server's final cursor, written by the script
 *       once every client drained), syncs until its cursor reaches it, and
 *       writes D/client-I.dump (canonical rows, below) and D/client-I.stats
 *       (made, rejected, dup_changes, seq_regressions, converged_ms).
 *       Besides, it checks the change stream it receives: a change whose seq
 *       is not above the last one (seq_regressions) or whose op it already
 *       received (dup_changes) is counted.
 *
 *   soak check --dir D --clients N --conninfo C --seed S [--last-fault-ms MS]
 *       The judge, after every client finished.  Reads every client's op and
 *       refusal logs and, through libpq, synclog.ops and table items, and
 *       prints
 *         soak: seed=S clients=N ops=… acked=… rejected=… lost=0 duplicated=0
 *               seq_gaps=0 replicas_identical=N/N oracle=ok
 *       (on one line) where
 *         acked       ops made and not refused (every outbox is empty by now,
 *                     so each op was acked or refused);
 *         lost        acked ops missing from the op log;
 *         duplicated  op ids in the op log twice, refused ops that are in the
 *                     op log anyway, and changes a client received twice or
 *                     out of seq order;
 *         seq_gaps    numbers missing from 1..max(seq), plus ops never
 *                     stamped;
 *         replicas_identical  clients whose canonical dump equals the
 *                     server's byte for byte;
 *         oracle      the op log replayed through an independent model of
 *                     the conflict rule (per-field last-writer-wins on (hlc,
 *                     client_id), deletes absorbing), using the fields each
 *                     client sent (from its own log, not the server's
 *                     record of what won), equals the server's table.
 *       The op log must also hold nothing no client made ("foreign") and
 *       agree with the clients' logs on each op's hlc, row and kind.  Then a
 *       line with the convergence time of the clients (converged_ms minus
 *       MS, the end of the last fault): p50, p99 and max.  On any failure
 *       it names the seed and the first diverging row, and exits 1.
 *
 * Canonical rows: `id|team|title|status|prio|body|n`, ordered by id in byte
 * order, NULL as \N; values never hold '|' or a newline.
 */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include "synclog.h"

#define N_COLS 7
static const char *const columns[N_COLS] = {"id", "team", "title", "status", "prio", "body", "n"};

static const char *o_url, *o_token, *o_group, *o_dir, *o_conninfo;
static int o_index = -1, o_rows = 300, o_clients;
static unsigned long long o_seed = 1;
static long long o_last_fault_ms = -1;

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

static void
die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "soak: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static long long
wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long long
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* xorshift64*: a run replays from its seed (as far as timing lets it). */
static uint64_t rng;

static uint64_t
rnd(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 2685821657736338717ULL;
}

static int
rnd_below(int n)
{
	return (int) (rnd() % (uint64_t) n);
}

static char *
path_in_dir(const char *fmt, ...)
{
	static char buf[4][4096];
	static int next;
	char name[256];
	va_list ap;
	char *p = buf[next++ % 4];

	va_start(ap, fmt);
	vsnprintf(name, sizeof(name), fmt, ap);
	va_end(ap);
	snprintf(p, sizeof(buf[0]), "%s/%s", o_dir, name);
	return p;
}

static int
exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

/* Writes text to path atomically (a temporary file renamed over it). */
static void
write_file(const char *path, const char *text)
{
	char tmp[4200];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if ((f = fopen(tmp, "w")) == NULL || fputs(text, f) == EOF || fclose(f) != 0)
		die("write %s: %s", tmp, strerror(errno));
	if (rename(tmp, path) != 0)
		die("rename %s: %s", tmp, strerror(errno));
}

/* ------------------------------------------------------------------ client */

static FILE *ops_log, *rej_log;
static long n_made, n_rejected, n_dup_changes, n_seq_regressions;
static uint64_t last_seq;
static json_t *seen_ops; /* op ids received in changes */

static void
on_reject(void *ctx, const char *op_id, const char *table, const char *row, const char *code,
          const char *message)
{
	(void) ctx;
	(void) table;
	(void) row;
	(void) message;
	n_rejected++;
	if (fprintf(rej_log, "%s\t%s\n", op_id, code) < 0 || fflush(rej_log) != 0)
		die("write rejected log: %s", strerror(errno));
}

static void
on_change(void *ctx, const synclog_change *c)
{
	(void) ctx;
	if (c->seq <= last_seq)
		n_seq_regressions++;
	else
		last_seq = c->seq;
	if (c->op_id == NULL || c->op_id[0] == '\0')
		return;
	if (json_object_get(seen_ops, c->op_id) != NULL)
		n_dup_changes++;
	else
		json_object_set_new(seen_ops, c->op_id, json_true());
}

static void
on_event(void *ctx, synclog_event ev, const char *detail)
{
	(void) ctx;
	if (ev == SYNCLOG_EV_SNAPSHOT) {
		uint64_t c = strtoull(detail, NULL, 10);

		if (c > last_seq)
			last_seq = c;
	}
}

struct find_hlc {
	const char *op_id;
	char hlc[32];
};

static int
find_hlc(void *ctx, const synclog_op *op)
{
	struct find_hlc *f = ctx;

	if (strcmp(op->op_id, f->op_id) != 0)
		return 0;
	snprintf(f->hlc, sizeof(f->hlc), "%s", op->hlc);
	return 1;
}

/*
 * One random write.  Rows r000..rK-1; only rows whose number ends in 9 are
 * ever deleted (deletes absorb every later op, so most rows must stay
 * alive); about 2% of upserts carry a negative prio, which the server's
 * CHECK refuses when that prio wins.
 */
static void
random_write(synclog *sl, const char *client_id)
{
	static const char *const statuses[] = {"todo", "doing", "done", "blocked", "won't fix"};
	static const char *const bodies[] = {
		"plain", "caf\u00e9 cr\u00e8me", "quote \\\" and backslash \\\\", "\u2713 done; DROP TABLE items --",
		"tab\\there", "emoji \U0001F680", "",
	};
	char row[16], fields[512], id[SYNCLOG_UUID_LEN + 1];
	struct find_hlc f;
	int r = rnd_below(o_rows), rc;
	const char *kind;

	snprintf(row, sizeof(row), "r%03d", r);
	if (r % 10 == 9 && rnd_below(100) == 0) {
		kind = "delete";
		snprintf(fields, sizeof(fields), "{}");
		rc = synclog_delete(sl, "items", row, id);
	} else {
		int n = snprintf(fields, sizeof(fields), "{\"team\":\"%s\"", o_group), any = 0;

		while (!any) {
			if (rnd_below(3) == 0)
				any = 1, n += snprintf(fields + n, sizeof(fields) - (size_t) n, ",\"title\":\"c%d-%u\"",
				                       o_index, (unsigned) (rnd() % 1000000));
			if (rnd_below(3) == 0)
				any = 1, n += snprintf(fields + n, sizeof(fields) - (size_t) n, ",\"status\":\"%s\"",
				                       statuses[rnd_below(5)]);
			if (rnd_below(3) == 0)
				any = 1, n += snprintf(fields + n, sizeof(fields) - (size_t) n, ",\"prio\":%d",
				                       rnd_below(50) == 0 ? -1 - rnd_below(5) : rnd_below(10));
			if (rnd_below(5) == 0)
				any = 1, n += snprintf(fields + n, sizeof(fields) - (size_t) n, ",\"body\":\"%s\"",
				                       bodies[rnd_below(7)]);
			if (rnd_below(6) == 0)
				any = 1, n += snprintf(fields + n, sizeof(fields) - (size_t) n, ",\"n\":%lld",
				                       (long long) (rnd() % 2000000000001ULL) - 1000000000000LL);
		}
		snprintf(fields + n, sizeof(fields) - (size_t) n, "}");
		kind = "upsert";
		rc = synclog_put(sl, "items", row, fields, id);
	}
	if (rc != SYNCLOG_OK)
		die("client %d: write to %s: %s", o_index, row, synclog_errmsg(sl));
	f.op_id = id;
	f.hlc[0] = '\0';
	if (synclog_pending(sl, find_hlc, &f) != SYNCLOG_OK)
		die("client %d: pending: %s", o_index, synclog_errmsg(sl));
	if (f.hlc[0] == '\0')
		die("client %d: op %s is not in the outbox right after it was made", o_index, id);
	if (fprintf(ops_log, "%s\t%s\t%s\t%s\t%s\t%s\n", id, client_id, f.hlc, row, kind, fields) < 0 ||
	    fflush(ops_log) != 0)
		die("write ops log: %s", strerror(errno));
	n_made++;
}

static int
count_one(void *ctx, const synclog_op *op)
{
	(void) op;
	(*(int *) ctx)++;
	return 0;
}

static int
n_pending(synclog *sl)
{
	int n = 0;

	if (synclog_pending(sl, count_one, &n) != SYNCLOG_OK)
		die("client %d: pending: %s", o_index, synclog_errmsg(sl));
	return n;
}

static void
dump_rows(sqlite3 *db, FILE *out)
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(db, "SELECT id, team, title, status, prio, body, n FROM items ORDER BY id",
	                       -1, &st, NULL) != SQLITE_OK)
		return; /* no table yet: no rows */
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		for (int i = 0; i < N_COLS; i++) {
			const unsigned char *t = sqlite3_column_text(st, i);

			fprintf(out, "%s%s", i ? "|" : "", t ? (const char *) t : "\\N");
		}
		fputc('\n', out);
	}
	if (rc != SQLITE_DONE)
		die("dump: %s", sqlite3_errmsg(db));
	sqlite3_finalize(st);
}

/* Syncs until f() holds or deadline_ms (monotonic) passes; 1 when it held. */
static int
sync_until(synclog *sl, int (*f)(synclog *, uint64_t), uint64_t arg, long long deadline_ms)
{
	int tries = 0;

	while (mono_ms() < deadline_ms) {
		int rc = synclog_sync(sl, 10000);

		tries++;
		if (rc == SYNCLOG_OK && f(sl, arg))
			return 1;
		if (rc != SYNCLOG_OK && tries % 10 == 0)
			fprintf(stderr, "soak: client %d: sync: %s\n", o_index, synclog_errmsg(sl));
		if (rc != SYNCLOG_OK)
			usleep(200000);
	}
	return 0;
}

static int
drained(synclog *sl, uint64_t unused)
{
	(void) unused;
	return n_pending(sl) == 0;
}

static int
caught_up(synclog *sl, uint64_t target)
{
	return n_pending(sl) == 0 && synclog_cursor(sl) >= target;
}

static int
cmd_client(void)
{
	const char *groups[1] = {o_group};
	synclog_config cfg = {
		.url = o_url,
		.token = o_token,
		.groups = groups,
		.n_groups = 1,
		.connect_timeout_ms = 3000,
		.backoff_max_ms = 2000,
	};
	synclog *sl;
	char client_id[SYNCLOG_UUID_LEN + 1], text[512];
	long long offline_until = 0, deadline;
	uint64_t target = 0;
	FILE *f;

	if (synclog_open(path_in_dir("client-%d.db", o_index), &sl) != SYNCLOG_OK)
		die("client %d: open: %s", o_index, sl ? synclog_errmsg(sl) : "out of memory");
	snprintf(client_id, sizeof(client_id), "%s", synclog_client_id(sl));
	if ((ops_log = fopen(path_in_dir("ops-%d.log", o_index), "a")) == NULL ||
	    (rej_log = fopen(path_in_dir("rejected-%d.log", o_index), "a")) == NULL)
		die("client %d: open logs: %s", o_index, strerror(errno));
	seen_ops = json_object();
	synclog_on_reject(sl, on_reject, NULL);
	synclog_on_change(sl, on_change, NULL);
	synclog_on_event(sl, on_event, NULL);
	if (synclog_connect(sl, &cfg) != SYNCLOG_OK)
		die("client %d: connect: %s", o_index, synclog_errmsg(sl));

	/* Work until told to be quiet. */
	while (!exists(path_in_dir("quiet"))) {
		long long now = mono_ms();
		int tick = 5 + rnd_below(40), rc;

		if (rnd_below(100) < 15)
			for (int w = 1 + rnd_below(2); w > 0; w--)
				random_write(sl, client_id);
		if (offline_until == 0 && rnd_below(300) == 0) {
			offline_until = now + 300 + rnd_below(3700);
			synclog_disconnect(sl);
		}
		if (offline_until != 0 && now >= offline_until)
			offline_until = 0;
		if (offline_until != 0) {
			usleep((useconds_t) tick * 1000);
			continue;
		}
		rc = synclog_run(sl, tick);
		if (rc != SYNCLOG_OK)
			die("client %d: run: %s", o_index, synclog_errmsg(sl));
	}

	/* Drain the outbox; then wait for the final cursor and reach it. */
	deadline = mono_ms() + 240000;
	if (!sync_until(sl, drained, 0, deadline))
		die("client %d: outbox not empty after 240 s (%d ops pending)", o_index, n_pending(sl));
	write_file(path_in_dir("drained-%d", o_index), "drained\n");
	while (!exists(path_in_dir("final"))) {
		if (mono_ms() > deadline)
			die("client %d: no final cursor after 240 s", o_index);
		if (synclog_run(sl, 100) != SYNCLOG_OK)
			die("client %d: run: %s", o_index, synclog_errmsg(sl));
	}
	if ((f = fopen(path_in_dir("final"), "r")) == NULL || fscanf(f, "%" SCNu64, &target) != 1)
		die("client %d: cannot read the final cursor", o_index);
	fclose(f);
	if (!sync_until(sl, caught_up, target, deadline))
		die("client %d: cursor %" PRIu64 " short of %" PRIu64 " after 240 s", o_index,
		    synclog_cursor(sl), target);
	snprintf(text, sizeof(text),
	         "client_id=%s\nmade=%ld\nrejected=%ld\ndup_changes=%ld\nseq_regressions=%ld\n"
	         "converged_ms=%lld\ncursor=%" PRIu64 "\n",
	         client_id, n_made, n_rejected, n_dup_changes, n_seq_regressions, wall_ms(),
	         synclog_cursor(sl));
	if ((f = fopen(path_in_dir("client-%d.dump", o_index), "w")) == NULL)
		die("client %d: write dump: %s", o_index, strerror(errno));
	dump_rows(synclog_db(sl), f);
	if (fclose(f) != 0)
		die("client %d: write dump: %s", o_index, strerror(errno));
	write_file(path_in_dir("client-%d.stats", o_index), text);
	synclog_close(sl);
	fclose(ops_log);
	fclose(rej_log);
	json_decref(seen_ops);
	return 0;
}

/* ------------------------------------------------------------------- check */

/* One op as its client recorded it. */
typedef struct op_rec {
	char id[SYNCLOG_UUID_LEN + 1];
	char client_id[64];
	char hlc[17];
	char row[16];
	int is_delete;
	json_t *fields;
	int rejected; /* named in the client's refusal log */
	int in_log;   /* rows of synclog.ops with this id */
} op_rec;

static op_rec *recs;
static size_t n_recs, cap_recs;
static json_t *rec_index; /* op id -> index in recs + 1 */

static void
read_ops_log(int i)
{
	const char *path = path_in_dir("ops-%d.log", i);
	FILE *f = fopen(path, "r");
	char line[4096];

	if (f == NULL)
		die("open %s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		char *tab[6], *p = line;
		json_error_t err;
		op_rec *r;
		int k;

		line[strcspn(line, "\n")] = '\0';
		for (k = 0; k < 6; k++) {
			tab[k] = p;
			if (k < 5) {
				if ((p = strchr(p, '\t')) == NULL)
					die("%s: malformed line: %s", path, line);
				*p++ = '\0';
			}
		}
		if (n_recs == cap_recs) {
			cap_recs = cap_recs ? cap_recs * 2 : 4096;
			if ((recs = realloc(recs, cap_recs * sizeof(*recs))) == NULL)
				die("out of memory");
		}
		r = &recs[n_recs];
		memset(r, 0, sizeof(*r));
		snprintf(r->id, sizeof(r->id), "%s", tab[0]);
		snprintf(r->client_id, sizeof(r->client_id), "%s", tab[1]);
		snprintf(r->hlc, sizeof(r->hlc), "%s", tab[2]);
		snprintf(r->row, sizeof(r->row), "%s", tab[3]);
		r->is_delete = strcmp(tab[4], "delete") == 0;
		if ((r->fields = json_loads(tab[5], 0, &err)) == NULL)
			die("%s: bad fields %s: %s", path, tab[5], err.text);
		if (json_object_get(rec_index, r->id))
			die("%s: op id %s made twice", path, r->id);
		json_object_set_new(rec_index, r->id, json_integer((json_int_t) n_recs + 1));
		n_recs++;
	}
	fclose(f);
}

static op_rec *
find_rec(const char *id)
{
	json_t *v = json_object_get(rec_index, id);

	return v ? &recs[json_integer_value(v) - 1] : NULL;
}

static void
read_rejected_log(int i)
{
	const char *path = path_in_dir("rejected-%d.log", i);
	FILE *f = fopen(path, "r");
	char line[512];

	if (f == NULL)
		die("open %s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		op_rec *r;

		line[strcspn(line, "\t\n")] = '\0';
		if ((r = find_rec(line)) == NULL)
			die("%s: refusal of op %s, which no client made", path, line);
		r->rejected = 1;
	}
	fclose(f);
}

/* key=value from a client's stats file; -1 when absent. */
static long long
stat_of(int i, const char *key)
{
	FILE *f = fopen(path_in_dir("client-%d.stats", i), "r");
	char line[256];
	size_t kl = strlen(key);
	long long v = -1;

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, kl) == 0 && line[kl] == '=')
			v = strtoll(line + kl + 1, NULL, 10);
	fclose(f);
	return v;
}

static PGresult *
query(PGconn *pg, const char *sql)
{
	PGresult *res = PQexec(pg, sql);

	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		die("query failed: %s: %s", sql, PQerrorMessage(pg));
	return res;
}

/* The text a value of a client's fields takes in the canonical dump. */
static char *
canonical_value(json_t *v)
{
	char buf[64];

	if (v == NULL || json_is_null(v))
		return strdup("\\N");
	if (json_is_string(v))
		return strdup(json_string_value(v));
	if (json_is_integer(v)) {
		snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return strdup(buf);
	}
	die("unexpected value type in a client's fields");
}

/* The model's state of one row: per column, value and winning clock. */
typedef struct model_row {
	char id[16];
	int deleted, exists;
	char *value[N_COLS];
	char clock[N_COLS][17];
	const char *clock_client[N_COLS];
} model_row;

static int
clock_cmp(const char *h1, const char *c1, const char *h2, const char *c2)
{
	int c = strcmp(h1, h2);

	return c ? c : strcmp(c1, c2);
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

static int
cmp_ll(const void *a, const void *b)
{
	long long x = *(const long long *) a, y = *(const long long *) b;

	return (x > y) - (x < y);
}

static int
cmd_check(void)
{
	PGconn *pg;
	PGresult *ops, *res;
	json_t *model = json_object(); /* row id -> index into rows + 1 */
	model_row *rows = NULL;
	size_t n_rows = 0, cap_rows = 0;
	long long acked = 0, rejected = 0, lost = 0, duplicated = 0, gaps = 0, foreign = 0, mismatch = 0;
	long long rejected_applied = 0, client_dups = 0;
	int identical = 0, oracle_ok = 1, ok;
	char *server_dump = NULL, *expected_dump = NULL, first_lost[64] = "";
	size_t server_len = 0, expected_len = 0;
	FILE *sd, *ed;
	long long *conv = calloc((size_t) o_clients, sizeof(long long));
	int n_conv = 0;

	rec_index = json_object();
	for (int i = 0; i < o_clients; i++)
		read_ops_log(i);
	for (int i = 0; i < o_clients; i++)
		read_rejected_log(i);

	pg = PQconnectdb(o_conninfo);
	if (PQstatus(pg) != CONNECTION_OK)
		die("connect %s: %s", o_conninfo, PQerrorMessage(pg));

	/* The op log, in seq order (unstamped ops last). */
	ops = query(pg, "SELECT op_id::text, seq, lpad(to_hex(hlc), 16, '0'), client_id, row_id, kind "
	                "FROM synclog.ops WHERE table_name = 'items' ORDER BY seq NULLS LAST, local_id");
	for (int t = 0; t < PQntuples(ops); t++) {
		const char *id = PQgetvalue(ops, t, 0);
		op_rec *r = find_rec(id);

		if (PQgetisnull(ops, t, 1))
			gaps++; /* never stamped */
		if (r == NULL) {
			if (foreign++ == 0)
				fprintf(stderr, "soak: op %s (row %s) is in the op log but no client made it\n", id,
				        PQgetvalue(ops, t, 4));
			continue;
		}
		r->in_log++;
		if (strcmp(r->hlc, PQgetvalue(ops, t, 2)) != 0 || strcmp(r->client_id, PQgetvalue(ops, t, 3)) != 0 ||
		    strcmp(r->row, PQgetvalue(ops, t, 4)) != 0 ||
		    r->is_delete != (strcmp(PQgetvalue(ops, t, 5), "delete") == 0)) {
			if (mismatch++ == 0)
				fprintf(stderr, "soak: op %s: the op log says hlc %s client %s row %s %s; its client "
				                "made hlc %s client %s row %s %s\n",
				        id, PQgetvalue(ops, t, 2), PQgetvalue(ops, t, 3), PQgetvalue(ops, t, 4),
				        PQgetvalue(ops, t, 5), r->hlc, r->client_id, r->row,
				        r->is_delete ? "delete" : "upsert");
		}
	}
	res = query(pg, "SELECT coalesce(max(seq), 0) - count(seq), count(*) - count(DISTINCT op_id) "
	                "FROM synclog.ops");
	gaps += strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	duplicated += strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	PQclear(res);

	for (size_t k = 0; k < n_recs; k++) {
		op_rec *r = &recs[k];

		if (r->rejected) {
			rejected++;
			if (r->in_log) {
				rejected_applied++;
				if (rejected_applied == 1)
					fprintf(stderr, "soak: op %s (row %s) was refused, yet it is in the op log\n", r->id,
					        r->row);
			}
			continue;
		}
		acked++;
		if (r->in_log == 0 && lost++ == 0)
			snprintf(first_lost, sizeof(first_lost), "%s (row %s)", r->id, r->row);
	}
	duplicated += rejected_applied;
	for (int i = 0; i < o_clients; i++) {
		long long d = stat_of(i, "dup_changes"), s = stat_of(i, "seq_regressions"),
		          c = stat_of(i, "converged_ms");

		if (d < 0 || s < 0)
			die("client %d left no stats (did it finish?)", i);
		client_dups += d + s;
		if (c >= 0 && o_last_fault_ms >= 0)
			conv[n_conv++] = c - o_last_fault_ms;
	}
	duplicated += client_dups;

	/* The oracle: the applied ops, as their clients sent them, through LWW. */
	for (int t = 0; t < PQntuples(ops); t++) {
		op_rec *r = find_rec(PQgetvalue(ops, t, 0));
		model_row *m;
		json_t *ix;
		const char *key;
		json_t *v;

		if (r == NULL)
			continue;
		if ((ix = json_object_get(model, r->row)) == NULL) {
			if (n_rows == cap_rows) {
				cap_rows = cap_rows ? cap_rows * 2 : 512;
				if ((rows = realloc(rows, cap_rows * sizeof(*rows))) == NULL)
					die("out of memory");
			}
			memset(&rows[n_rows], 0, sizeof(*rows));
			snprintf(rows[n_rows].id, sizeof(rows[n_rows].id), "%s", r->row);
			json_object_set_new(model, r->row, json_integer((json_int_t) n_rows + 1));
			m = &rows[n_rows++];
		} else {
			m = &rows[json_integer_value(ix) - 1];
		}
		if (r->is_delete) {
			m->deleted = 1;
			continue;
		}
		m->exists = 1;
		json_object_foreach(r->fields, key, v) {
			int c;

			for (c = 1; c < N_COLS && strcmp(columns[c], key) != 0; c++)
				;
			if (c == N_COLS)
				die("op %s sets unknown field %s", r->id, key);
			if (m->value[c] == NULL || clock_cmp(r->hlc, r->client_id, m->clock[c], m->clock_client[c]) > 0) {
				free(m->value[c]);
				m->value[c] = canonical_value(v);
				memcpy(m->clock[c], r->hlc, 17);
				m->clock_client[c] = r->client_id;
			}
		}
	}
	{
		char **lines = calloc(n_rows + 1, sizeof(char *));
		size_t n_lines = 0;

		ed = open_memstream(&expected_dump, &expected_len);
		for (size_t k = 0; k < n_rows; k++) {
			model_row *m = &rows[k];
			char *line = NULL;
			size_t len = 0;
			FILE *lf;

			if (m->deleted || !m->exists)
				continue;
			lf = open_memstream(&line, &len);
			fprintf(lf, "%s", m->id);
			for (int c = 1; c < N_COLS; c++)
				fprintf(lf, "|%s", m->value[c] ? m->value[c] : "\\N");
			fputc('\n', lf);
			fclose(lf);
			lines[n_lines++] = line;
		}
		qsort(lines, n_lines, sizeof(char *), cmp_str);
		for (size_t k = 0; k < n_lines; k++) {
			fputs(lines[k], ed);
			free(lines[k]);
		}
		fclose(ed);
		free(lines);
	}

	/* The server's table, canonically. */
	res = query(pg, "SELECT id, team, title, status, prio::text, body, n::text FROM items "
	                "ORDER BY id COLLATE \"C\"");
	sd = open_memstream(&server_dump, &server_len);
	for (int t = 0; t < PQntuples(res); t++) {
		for (int c = 0; c < N_COLS; c++)
			fprintf(sd, "%s%s", c ? "|" : "", PQgetisnull(res, t, c) ? "\\N" : PQgetvalue(res, t, c));
		fputc('\n', sd);
	}
	fclose(sd);
	PQclear(res);
	PQclear(ops);
	PQfinish(pg);
	write_file(path_in_dir("server.dump"), server_dump);
	write_file(path_in_dir("oracle.dump"), expected_dump);

	/* First diverging line of two dumps, for the report. */
#define FIRST_DIFF(a, b, what)                                                                     \
	do {                                                                                           \
		const char *p = (a), *q = (b);                                                             \
		while (*p && *p == *q)                                                                     \
			p++, q++;                                                                              \
		while (p > (a) && p[-1] != '\n')                                                       \
			p--, q--;                                                                              \
		fprintf(stderr, "soak: %s: first diverging row:\n  server: %.*s\n  %-6s: %.*s\n", what,   \
		        (int) strcspn(p, "\n"), *p ? p : "(no more rows)", "other", (int) strcspn(q, "\n"), \
		        *q ? q : "(no more rows)");                                                        \
	} while (0)

	if (strcmp(server_dump, expected_dump) != 0) {
		oracle_ok = 0;
		FIRST_DIFF(server_dump, expected_dump, "oracle (other = the LWW model)");
	}
	for (int i = 0; i < o_clients; i++) {
		const char *path = path_in_dir("client-%d.dump", i);
		FILE *f = fopen(path, "r");
		char *text = NULL;
		size_t len = 0;
		FILE *m;
		int ch;

		if (f == NULL) {
			fprintf(stderr, "soak: client %d left no dump\n", i);
			continue;
		}
		m = open_memstream(&text, &len);
		while ((ch = fgetc(f)) != EOF)
			fputc(ch, m);
		fclose(m);
		fclose(f);
		if (strcmp(text, server_dump) == 0) {
			identical++;
		} else {
			char what[64];

			snprintf(what, sizeof(what), "client %d (other = the client)", i);
			FIRST_DIFF(server_dump, text, what);
		}
		free(text);
	}

	ok = lost == 0 && duplicated == 0 && gaps == 0 && identical == o_clients && oracle_ok &&
	     foreign == 0 && mismatch == 0 && n_recs > 0;
	printf("soak: seed=%llu clients=%d ops=%zu acked=%lld rejected=%lld lost=%lld duplicated=%lld "
	       "seq_gaps=%lld replicas_identical=%d/%d oracle=%s\n",
	       o_seed, o_clients, n_recs, acked, rejected, lost, duplicated, gaps, identical, o_clients,
	       oracle_ok ? "ok" : "FAILED");
	if (n_conv > 0) {
		qsort(conv, (size_t) n_conv, sizeof(long long), cmp_ll);
		printf("soak: convergence after the last fault: p50=%lldms p99=%lldms max=%lldms (%d clients)\n",
		       conv[(n_conv - 1) / 2], conv[(99 * n_conv - 1) / 100], conv[n_conv - 1], n_conv);
	}
	if (lost)
		fprintf(stderr, "soak: %lld acked ops missing from the op log; the first: %s\n", lost, first_lost);
	if (foreign || mismatch)
		fprintf(stderr, "soak: op log disagrees with the clients: %lld foreign ops, %lld mismatched\n",
		        foreign, mismatch);
	if (client_dups)
		fprintf(stderr, "soak: clients received %lld changes twice or out of order\n", client_dups);
	if (!ok)
		fprintf(stderr, "soak: FAILED; replay with SOAK_SEED=%llu\n", o_seed);
	for (size_t k = 0; k < n_rows; k++)
		for (int c = 0; c < N_COLS; c++)
			free(rows[k].value[c]);
	for (size_t k = 0; k < n_recs; k++)
		json_decref(recs[k].fields);
	free(rows);
	free(recs);
	json_decref(model);
	json_decref(rec_index);
	free(server_dump);
	free(expected_dump);
	free(conv);
	return ok ? 0 : 1;
}

static void
usage(void)
{
	fprintf(stderr,
	        "usage: soak client --url U --token T --group G --dir D --index I [--rows K] [--seed S]\n"
	        "       soak check --dir D --clients N --conninfo C [--seed S] [--last-fault-ms MS]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	const char *cmd;

	if (argc < 2)
		usage();
	cmd = argv[1];
	for (int i = 2; i < argc; i += 2) {
		const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (v == NULL)
			usage();
		if (strcmp(k, "--url") == 0)
			o_url = v;
		else if (strcmp(k, "--token") == 0)
			o_token = v;
		else if (strcmp(k, "--group") == 0)
			o_group = v;
		else if (strcmp(k, "--dir") == 0)
			o_dir = v;
		else if (strcmp(k, "--conninfo") == 0)
			o_conninfo = v;
		else if (strcmp(k, "--index") == 0)
			o_index = atoi(v);
		else if (strcmp(k, "--rows") == 0)
			o_rows = atoi(v);
		else if (strcmp(k, "--clients") == 0)
			o_clients = atoi(v);
		else if (strcmp(k, "--seed") == 0)
			o_seed = strtoull(v, NULL, 10);
		else if (strcmp(k, "--last-fault-ms") == 0)
			o_last_fault_ms = strtoll(v, NULL, 10);
		else
			usage();
	}
	if (o_dir == NULL)
		usage();
	if (strcmp(cmd, "client") == 0) {
		if (!o_url || !o_token || !o_group || o_index < 0 || o_rows < 1 || o_rows > 1000)
			usage();
		/* Each client its own stream, all from the run's seed. */
		rng = (o_seed + 1) * 0x9E3779B97F4A7C15ULL + (uint64_t) o_index * 0xD1B54A32D192ED03ULL;
		if (rng == 0)
			rng = 1;
		return cmd_client();
	}
	if (strcmp(cmd, "check") == 0) {
		if (!o_conninfo || o_clients < 1)
			usage();
		return cmd_check();
	}
	usage();
}

/*
 * tests/client/test_store.c: tests of libsynclog's durable local store,
 * client/store.c, on real SQLite files in a temporary directory.
 *
 * Built by `make -C client store-test-bin` with ASan and UBSan and run by
 * tests/suites/41-client-store.sh.  Prints one line per check,
 * "PASS: client-store: <name>" or "FAIL: client-store: <name> (<why>)", and
 * exits 1 if any check failed.  The app's tables are read back through a
 * second SQLite connection, as an app would read them.  Groups of checks:
 * open and tables; local writes (visible at once, in the outbox); reopen
 * (outbox, cursor, client_id, clock floor kept); incoming changes (own op
 * confirmed, others' merged, visible = confirmed + pending); ack then
 * change; rejection (op dropped, row rolled back); snapshot replacement with
 * pending ops rebased on top; hostile identifiers; provisional tables
 * (before any welcome) and their rebuild by a welcome; malformed frames
 * change nothing; the JSON scanner (client/jscan.c) against jansson, case by
 * case (malformed, truncated, nested, escaped, non-ASCII, bad UTF-8) and on
 * random mutants, never disagreeing with it; kill safety (a child process writing and confirming ops is
 * SIGKILLed at random moments; every write it was told succeeded is found
 * after reopening, in the outbox or confirmed, never both).
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#include "hlc.h"
#include "merge.h"
#include "store.h"
#include "store_int.h"

static int n_pass, n_fail;
static char dir[256], path[300];
static char model_me[SL_UUID_LEN + 1]; /* the client_id of test_model's store */

static void report(const char *name, bool ok, const char *why, ...)
	__attribute__((format(printf, 3, 4)));

/* Prints the PASS/FAIL line of one check; why is a printf format, used on FAIL. */
static void
report(const char *name, bool ok, const char *why, ...)
{
	va_list ap;

	if (ok) {
		n_pass++;
		printf("PASS: client-store: %s\n", name);
		return;
	}
	n_fail++;
	printf("FAIL: client-store: %s (", name);
	va_start(ap, why);
	vprintf(why, ap);
	va_end(ap);
	printf(")\n");
}

/*
 * The first column of the first row of sql on the file, through its own
 * connection, as text in a static buffer: "(none)" for no row, "(null)" for
 * NULL, "(error: ...)" on error.  Rows are joined with '|' when all is true.
 */
static const char *
q(const char *sql)
{
	static char out[4096];
	sqlite3 *db;
	sqlite3_stmt *st;
	size_t len = 0;
	int rc;

	snprintf(out, sizeof(out), "(none)");
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		snprintf(out, sizeof(out), "(error: open)");
		sqlite3_close(db);
		return out;
	}
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		snprintf(out, sizeof(out), "(error: %s)", sqlite3_errmsg(db));
		sqlite3_close(db);
		return out;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		for (int c = 0; c < sqlite3_column_count(st); c++) {
			const char *v = (const char *) sqlite3_column_text(st, c);

			len += (size_t) snprintf(out + len, sizeof(out) - len, "%s%s",
			                         (len == 0 || out[len - 1] == '\n') ? "" : "|",
			                         v ? v : "(null)");
			if (len >= sizeof(out))
				len = sizeof(out) - 1;
		}
		len += (size_t) snprintf(out + len, sizeof(out) - len, "\n");
		if (len >= sizeof(out))
			len = sizeof(out) - 1;
	}
	if (len > 0 && out[len - 1] == '\n')
		out[len - 1] = '\0';
	if (rc != SQLITE_DONE)
		snprintf(out, sizeof(out), "(error: %s)", sqlite3_errmsg(db));
	sqlite3_finalize(st);
	sqlite3_close(db);
	return out;
}

static bool
is(const char *sql, const char *want, const char **got)
{
	*got = q(sql);
	return strcmp(*got, want) == 0;
}

#define CHECK_Q(name, sql, want)                                                   \
	do {                                                                           \
		const char *got_;                                                          \
		bool ok_ = is(sql, want, &got_);                                           \
		report(name, ok_, "%s gave \"%s\", want \"%s\"", sql, got_, want);         \
	} while (0)

#define CHECK_RC(name, expr, want)                                                 \
	do {                                                                           \
		int rc_ = (expr);                                                          \
		report(name, rc_ == (want), "rc %d, want %d: %s", rc_, (want),             \
		       sl_store_errmsg(st));                                               \
	} while (0)

/* Counts the ops sl_store_pending lists; remembers the last op id. */
struct pend {
	int n;
	char ids[1024];
};

static int
pend_cb(void *ctx, const sl_store_op *op)
{
	struct pend *p = ctx;
	size_t len = strlen(p->ids);

	p->n++;
	snprintf(p->ids + len, sizeof(p->ids) - len, "%s%s", len ? "," : "", op->op_id);
	return 0;
}

static struct pend
pending(sl_store *st)
{
	struct pend p = {0};

	if (sl_store_pending(st, pend_cb, &p) != SL_OK)
		p.n = -1;
	return p;
}

/* Rejections seen by the ack callback. */
struct rej {
	int n;
	char last[512];
};

static void
rej_cb(void *ctx, const char *op_id, const char *table, const char *row, const char *code,
       const char *message)
{
	struct rej *r = ctx;

	r->n++;
	snprintf(r->last, sizeof(r->last), "%s %s %s %s %s", op_id, table, row, code, message);
}

static const char *issues_tables =
	"{\"issues\": {\"pk\": \"id\", \"group\": \"team\", \"columns\": {\"id\": \"text\","
	" \"team\": \"text\", \"title\": \"text\", \"prio\": \"integer\", \"done\": \"boolean\","
	" \"est\": \"double precision\", \"meta\": \"jsonb\"}}}";

/* A changes frame with one change. */
static const char *
change1(unsigned seq, const char *op_id, const char *cid, const char *row, const char *kind,
        const char *fields, const char *hlc, unsigned cursor)
{
	static char buf[2048];

	snprintf(buf, sizeof(buf),
	         "{\"type\":\"changes\",\"cursor\":%u,\"changes\":[{\"seq\":%u,\"op_id\":\"%s\","
	         "\"client_id\":\"%s\",\"table\":\"issues\",\"row\":\"%s\",\"group\":\"t1\","
	         "\"kind\":\"%s\",\"fields\":%s,\"hlc\":\"%s\"}]}",
	         cursor, seq, op_id, cid, row, kind, fields, hlc);
	return buf;
}

static void
test_open_and_writes(void)
{
	sl_store *st = NULL;
	char id1[SL_UUID_LEN + 1] = "", id2[SL_UUID_LEN + 1] = "", id3[SL_UUID_LEN + 1] = "";
	char client_id[SL_UUID_LEN + 1], sql[512];
	uint64_t floor;
	struct pend p;

	report("open creates the file", sl_store_open(path, &st) == SL_OK && st != NULL, "%s",
	       "open failed");
	if (st == NULL)
		exit(1);
	{
		const char *c = sl_store_client_id(st);

		report("client_id is a UUID v4", strlen(c) == 36 && c[8] == '-' && c[14] == '4' &&
		       strchr("89ab", c[19]) != NULL, "client_id %s", c);
		snprintf(client_id, sizeof(client_id), "%s", c);
	}
	report("a new store's cursor is 0", sl_store_cursor(st) == 0, "cursor %llu",
	       (unsigned long long) sl_store_cursor(st));
	CHECK_Q("journal mode is WAL", "PRAGMA journal_mode", "wal");
	CHECK_RC("put to a name of ours before the tables are known is refused",
	         sl_store_put(st, "_synclog_x", "i0", "{}", NULL), SL_EINVAL);
	CHECK_RC("ensure_tables creates the tables", sl_store_ensure_tables(st, issues_tables), SL_OK);
	CHECK_Q("columns get SQLite affinities",
	        "SELECT name, type, pk FROM pragma_table_info('issues') ORDER BY cid",
	        "id|TEXT|1\nteam|TEXT|0\ntitle|TEXT|0\nprio|INTEGER|0\ndone|INTEGER|0\nest|REAL|0\nmeta|TEXT|0");
	CHECK_RC("ensure_tables again accepts the existing table",
	         sl_store_ensure_tables(st, issues_tables), SL_OK);

	CHECK_RC("put", sl_store_put(st, "issues", "i1",
	                             "{\"team\":\"t1\",\"title\":\"hello\",\"prio\":2,\"done\":true,"
	                             "\"est\":1.5,\"meta\":{\"a\":[1]}}", id1), SL_OK);
	CHECK_Q("put is visible at once", "SELECT id, team, title, prio, done, est, meta FROM issues",
	        "i1|t1|hello|2|1|1.5|{\"a\":[1]}");
	snprintf(sql, sizeof(sql), "SELECT kind, tbl, row, acked FROM _synclog_outbox WHERE op_id = '%s'", id1);
	CHECK_Q("put is in the outbox under its op id", sql, "upsert|issues|i1|0");
	CHECK_RC("put of an unknown column is refused",
	         sl_store_put(st, "issues", "i1", "{\"nope\":1}", NULL), SL_EINVAL);
	CHECK_RC("put to an unknown table is refused",
	         sl_store_put(st, "people", "i1", "{}", NULL), SL_EINVAL);
	CHECK_RC("put of fields that are not an object is refused",
	         sl_store_put(st, "issues", "i1", "[1]", NULL), SL_EINVAL);
	CHECK_RC("put of an empty row is refused", sl_store_put(st, "issues", "", "{}", NULL), SL_EINVAL);
	CHECK_Q("refused puts leave no op", "SELECT count(*) FROM _synclog_outbox", "1");

	CHECK_RC("second put", sl_store_put(st, "issues", "i2", "{\"team\":\"t1\",\"title\":\"two\"}", id2), SL_OK);
	CHECK_Q("second row visible", "SELECT id, title, prio FROM issues ORDER BY id", "i1|hello|2\ni2|two|(null)");
	CHECK_RC("delete", sl_store_delete(st, "issues", "i2", id3), SL_OK);
	CHECK_Q("delete is visible at once", "SELECT id FROM issues ORDER BY id", "i1");
	CHECK_Q("the outbox holds the ops in order", "SELECT kind || ':' || row FROM _synclog_outbox ORDER BY seq",
	        "upsert:i1\nupsert:i2\ndelete:i2");
	CHECK_Q("the ops' clocks increase", "SELECT count(*) FROM _synclog_outbox a JOIN _synclog_outbox b"
	        " ON b.seq = a.seq + 1 WHERE b.hlc <= a.hlc", "0");
	p = pending(st);
	report("pending lists the three ops in order", p.n == 3 && strstr(p.ids, id1) == p.ids,
	       "n %d, ids %s", p.n, p.ids);
	report("op ids are distinct UUIDs", strlen(id1) == 36 && strcmp(id1, id2) && strcmp(id2, id3),
	       "%s %s %s", id1, id2, id3);

	floor = sl_store_hlc(st);
	sl_store_close(st);
	st = NULL;
	report("reopen", sl_store_open(path, &st) == SL_OK, "%s", "open failed");
	if (st == NULL)
		exit(1);
	report("reopen keeps the client_id", strcmp(sl_store_client_id(st), client_id) == 0, "%s vs %s",
	       sl_store_client_id(st), client_id);
	report("reopen keeps the clock floor", sl_store_hlc(st) == floor, "%llx vs %llx",
	       (unsigned long long) sl_store_hlc(st), (unsigned long long) floor);
	report("reopen keeps the cursor", sl_store_cursor(st) == 0, "cursor %llu",
	       (unsigned long long) sl_store_cursor(st));
	p = pending(st);
	report("reopen keeps the outbox", p.n == 3 && strstr(p.ids, id1) == p.ids, "n %d", p.n);
	CHECK_RC("reopen knows the tables", sl_store_put(st, "issues", "i3", "{\"team\":\"t2\",\"title\":\"three\"}", NULL), SL_OK);
	report("the clock moves past the stored floor", sl_store_hlc(st) > floor, "%llx vs %llx",
	       (unsigned long long) sl_store_hlc(st), (unsigned long long) floor);
	sl_store_close(st);
	sl_store_close(NULL);
	report("sl_store_close accepts NULL", true, "%s", "");
}

/* Runs sql on the file through its own read-write connection; exits on error. */
static void
w(const char *sql)
{
	sqlite3 *db;
	char *err = NULL;

	if (sqlite3_open(path, &db) != SQLITE_OK || sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
		fprintf(stderr, "test_store: %s: %s\n", sql, err ? err : sqlite3_errmsg(db));
		exit(2);
	}
	sqlite3_close(db);
}

/* Opens a fresh store at dir/name with the issues table; exits on failure. */
static sl_store *
fresh(const char *name)
{
	sl_store *st = NULL;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (sl_store_open(path, &st) != SL_OK || sl_store_ensure_tables(st, issues_tables) != SL_OK) {
		fprintf(stderr, "test_store: cannot open %s\n", path);
		exit(2);
	}
	return st;
}

/* The hlc text of op_id in the outbox (static buffer). */
static const char *
op_hlc(const char *op_id)
{
	static char buf[32];
	char sql[256];

	snprintf(sql, sizeof(sql), "SELECT hlc FROM _synclog_outbox WHERE op_id = '%s'", op_id);
	snprintf(buf, sizeof(buf), "%s", q(sql));
	return buf;
}

/* The store's clock plus d, as text (static buffer). */
static const char *
ahead(sl_store *st, uint64_t d)
{
	static char buf[SL_HLC_TEXT_LEN + 1];

	sl_hlc_format(sl_store_hlc(st) + d, buf);
	return buf;
}

static void
test_changes_acks(void)
{
	sl_store *st = fresh("changes.db");
	char me[SL_UUID_LEN + 1], idA[SL_UUID_LEN + 1], idB[SL_UUID_LEN + 1], idC[SL_UUID_LEN + 1],
		idD[SL_UUID_LEN + 1], hA[32], h[32], sql[256];
	struct rej r = {0};
	struct pend p;

	snprintf(me, sizeof(me), "%s", sl_store_client_id(st));
	sl_store_put(st, "issues", "i1", "{\"team\":\"t1\",\"title\":\"mine\",\"prio\":1}", idA);
	snprintf(hA, sizeof(hA), "%s", op_hlc(idA));
	CHECK_RC("own op's change applies",
	         sl_store_apply_changes(st, change1(1, idA, me, "i1", "upsert",
	                                            "{\"team\":\"t1\",\"title\":\"mine\",\"prio\":1}", hA, 1)),
	         SL_OK);
	CHECK_Q("own op confirmed leaves the outbox", "SELECT count(*) FROM _synclog_outbox", "0");
	CHECK_Q("own op is in confirmed state", "SELECT fields, deleted FROM _synclog_confirmed",
	        "{\"team\":\"t1\",\"title\":\"mine\",\"prio\":1}|0");
	CHECK_Q("own op stays visible", "SELECT title, prio FROM issues", "mine|1");
	report("changes advance the cursor", sl_store_cursor(st) == 1, "cursor %llu",
	       (unsigned long long) sl_store_cursor(st));

	snprintf(h, sizeof(h), "%s", ahead(st, 1));
	CHECK_RC("another client's change applies",
	         sl_store_apply_changes(st, change1(2, "op-o1", "other", "i1", "upsert", "{\"prio\":5}", h, 2)),
	         SL_OK);
	CHECK_Q("another client's change is merged into the visible row", "SELECT title, prio FROM issues", "mine|5");
	snprintf(sql, sizeof(sql), "SELECT clocks FROM _synclog_confirmed WHERE row = 'i1'");
	{
		char want[256];

		snprintf(want, sizeof(want), "{\"team\":[\"%s\",\"%s\"],\"title\":[\"%s\",\"%s\"],\"prio\":[\"%s\",\"other\"]}",
		         hA, me, hA, me, h);
		CHECK_Q("confirmed clocks are the changes' clocks", sql, want);
	}

	sl_store_put(st, "issues", "i1", "{\"title\":\"local\"}", idB);
	CHECK_Q("a pending op shows over confirmed state", "SELECT title, prio FROM issues", "local|5");
	CHECK_RC("an older change under a pending op applies",
	         sl_store_apply_changes(st, change1(3, "op-o2", "other", "i1", "upsert", "{\"title\":\"remote\"}", hA, 3)),
	         SL_OK);
	CHECK_Q("the older change is confirmed", "SELECT json_extract(fields, '$.title') FROM _synclog_confirmed", "remote");
	CHECK_Q("the newer pending op still wins the visible row", "SELECT title FROM issues", "local");
	snprintf(h, sizeof(h), "%s", ahead(st, 5));
	CHECK_RC("a newer change applies",
	         sl_store_apply_changes(st, change1(4, "op-o3", "other", "i1", "upsert", "{\"title\":\"later\"}", h, 4)),
	         SL_OK);
	CHECK_Q("a newer change beats the pending op (LWW)", "SELECT title FROM issues", "later");
	{
		uint64_t hv;

		sl_hlc_parse(h, &hv);
		report("the clock observes incoming changes", sl_store_hlc(st) >= hv, "%llx < %s",
		       (unsigned long long) sl_store_hlc(st), h);
	}
	CHECK_RC("a replayed change is accepted",
	         sl_store_apply_changes(st, change1(2, "op-o1", "other", "i1", "upsert", "{\"prio\":99}", ahead(st, 9), 2)),
	         SL_OK);
	CHECK_Q("a change at or below the cursor is skipped", "SELECT prio FROM issues", "5");
	report("the cursor never moves back", sl_store_cursor(st) == 4, "cursor %llu",
	       (unsigned long long) sl_store_cursor(st));
	snprintf(h, sizeof(h), "%s", ahead(st, 1));
	sl_store_apply_changes(st, change1(5, "op-o4", "other", "i9", "upsert", "{\"team\":\"t1\",\"title\":\"nine\"}", h, 5));
	CHECK_Q("another client's new row appears", "SELECT title FROM issues WHERE id = 'i9'", "nine");
	sl_store_apply_changes(st, change1(6, "op-o5", "other", "i9", "delete", "null", ahead(st, 1), 6));
	CHECK_Q("another client's delete removes the row", "SELECT count(*) FROM issues WHERE id = 'i9'", "0");
	CHECK_Q("a delete leaves a tombstone", "SELECT deleted, fields FROM _synclog_confirmed WHERE row = 'i9'", "1|(null)");
	CHECK_RC("a frame with no changes", sl_store_apply_changes(st, "{\"changes\":[],\"cursor\":10}"), SL_OK);
	report("a frame with no changes moves the cursor to the frame's", sl_store_cursor(st) == 10,
	       "cursor %llu", (unsigned long long) sl_store_cursor(st));
	{
		char frame[1024];

		snprintf(frame, sizeof(frame),
		         "{\"cursor\":13,\"changes\":[{\"seq\":11,\"op_id\":\"x\",\"client_id\":\"other\","
		         "\"table\":\"issues\",\"row\":\"i1\",\"kind\":\"upsert\",\"fields\":{\"prio\":42},"
		         "\"hlc\":\"%s\"},{\"seq\":12,\"client_id\":\"other\",\"table\":\"issues\","
		         "\"row\":\"i1\",\"kind\":\"merge\",\"hlc\":\"%s\"}]}", ahead(st, 1), ahead(st, 2));
		CHECK_RC("a frame with a malformed change is refused", sl_store_apply_changes(st, frame), SL_EINVAL);
	}
	CHECK_Q("a refused frame applies none of its changes", "SELECT prio FROM issues WHERE id = 'i1'", "5");
	report("a refused frame leaves the cursor", sl_store_cursor(st) == 10, "cursor %llu",
	       (unsigned long long) sl_store_cursor(st));
	CHECK_RC("a changes frame that is not JSON is refused", sl_store_apply_changes(st, "{"), SL_EINVAL);
	CHECK_RC("a changes frame without a cursor is refused", sl_store_apply_changes(st, "{\"changes\":[]}"), SL_EINVAL);

	/* ack, then change: the acked op leaves pending() but stays in the outbox. */
	snprintf(sql, sizeof(sql), "{\"acked\":[\"%s\"],\"rejected\":[],\"hlc\":\"%s\"}", idB, ahead(st, 1));
	CHECK_RC("ack", sl_store_ack(st, sql, rej_cb, &r), SL_OK);
	p = pending(st);
	report("an acked op is not listed for resending", p.n == 0, "n %d", p.n);
	snprintf(sql, sizeof(sql), "SELECT acked FROM _synclog_outbox WHERE op_id = '%s'", idB);
	CHECK_Q("an acked op stays pending in the outbox", sql, "1");
	CHECK_RC("the acked op's change applies",
	         sl_store_apply_changes(st, change1(14, idB, me, "i1", "upsert", "{}", op_hlc(idB), 14)), SL_OK);
	CHECK_Q("the acked op leaves the outbox when its change arrives", "SELECT count(*) FROM _synclog_outbox", "0");
	CHECK_Q("its change won nothing: the visible row is confirmed state", "SELECT title, prio FROM issues WHERE id = 'i1'", "later|5");

	/* rejection: the op is dropped and the row rolled back. */
	sl_store_put(st, "issues", "i1", "{\"title\":\"bad\",\"prio\":-1}", idC);
	sl_store_put(st, "issues", "i5", "{\"team\":\"t1\",\"title\":\"new\"}", idD);
	CHECK_Q("before rejection the ops are visible", "SELECT id, title FROM issues ORDER BY id", "i1|bad\ni5|new");
	snprintf(sql, sizeof(sql), "{\"acked\":[],\"rejected\":[{\"id\":\"%s\",\"code\":\"constraint_violation\","
	         "\"message\":\"prio >= 0\"}]}", idC);
	CHECK_RC("ack with a rejection", sl_store_ack(st, sql, rej_cb, &r), SL_OK);
	{
		char want[256];

		snprintf(want, sizeof(want), "%s issues i1 constraint_violation prio >= 0", idC);
		report("the rejection is reported with its code", r.n == 1 && strcmp(r.last, want) == 0,
		       "n %d, last \"%s\"", r.n, r.last);
	}
	CHECK_Q("a rejected op leaves the outbox", "SELECT row FROM _synclog_outbox", "i5");
	CHECK_Q("a rejected op's row rolls back", "SELECT title, prio FROM issues WHERE id = 'i1'", "later|5");
	snprintf(sql, sizeof(sql), "{\"rejected\":[{\"id\":\"%s\",\"code\":\"unauthorized\"}]}", idD);
	sl_store_ack(st, sql, rej_cb, &r);
	CHECK_Q("a rejected creation removes the row", "SELECT count(*) FROM issues WHERE id = 'i5'", "0");
	CHECK_RC("a rejection of an unknown op",
	         sl_store_ack(st, "{\"rejected\":[{\"id\":\"nope\",\"code\":\"x\"}]}", rej_cb, &r), SL_OK);
	report("an unknown op's rejection is not reported", r.n == 2, "n %d", r.n);
	CHECK_RC("an ack that is not an object is refused", sl_store_ack(st, "[]", NULL, NULL), SL_EINVAL);
	CHECK_RC("an ack with acked not an array is refused", sl_store_ack(st, "{\"acked\":1}", NULL, NULL), SL_EINVAL);

	/* One frame: two changes to one row and one to a table this client does not know. */
	{
		char frame[1024], h1[32], h2[32];

		snprintf(h1, sizeof(h1), "%s", ahead(st, 1));
		snprintf(h2, sizeof(h2), "%s", ahead(st, 2));
		snprintf(frame, sizeof(frame),
		         "{\"cursor\":22,\"changes\":["
		         "{\"seq\":20,\"op_id\":\"m1\",\"client_id\":\"other\",\"table\":\"issues\",\"row\":\"i1\","
		         "\"kind\":\"upsert\",\"fields\":{\"prio\":8,\"title\":\"first\"},\"hlc\":\"%s\"},"
		         "{\"seq\":21,\"op_id\":\"m2\",\"client_id\":\"other\",\"table\":\"ghost\",\"row\":\"g1\","
		         "\"kind\":\"upsert\",\"fields\":{\"a\":1},\"hlc\":\"%s\"},"
		         "{\"seq\":22,\"op_id\":\"m3\",\"client_id\":\"other\",\"table\":\"issues\",\"row\":\"i1\","
		         "\"kind\":\"upsert\",\"fields\":{\"title\":\"second\"},\"hlc\":\"%s\"}]}", h1, h2, h2);
		CHECK_RC("a frame of several changes", sl_store_apply_changes(st, frame), SL_OK);
	}
	CHECK_Q("several changes to one row all apply, in seq order", "SELECT title, prio FROM issues WHERE id = 'i1'", "second|8");
	CHECK_Q("a change to an unknown table is kept as confirmed state",
	        "SELECT fields FROM _synclog_confirmed WHERE tbl = 'ghost'", "{\"a\":1}");
	report("the frame's cursor is kept", sl_store_cursor(st) == 22, "cursor %llu",
	       (unsigned long long) sl_store_cursor(st));
	{
		uint64_t floor = sl_store_hlc(st);

		sl_store_close(st);
		st = NULL;
		report("reopen after ops left the outbox keeps the clock floor and cursor",
		       sl_store_open(path, &st) == SL_OK && sl_store_hlc(st) == floor && sl_store_cursor(st) == 22,
		       "floor %llx vs %llx", st ? (unsigned long long) sl_store_hlc(st) : 0ULL,
		       (unsigned long long) floor);
	}
	sl_store_close(st);
}

static void
test_snapshot(void)
{
	sl_store *st = fresh("snapshot.db");
	char idA[SL_UUID_LEN + 1], frame[2048];

	sl_store_apply_changes(st, change1(1, "o1", "other", "a", "upsert", "{\"team\":\"t1\",\"title\":\"a0\",\"prio\":1}", "0000000000010000", 1));
	sl_store_apply_changes(st, change1(2, "o2", "other", "c", "upsert", "{\"team\":\"t1\",\"title\":\"c0\"}", "0000000000010000", 2));
	sl_store_apply_changes(st, change1(3, "o3", "other", "x", "upsert", "{\"team\":\"t2\",\"title\":\"x0\"}", "0000000000010000", 3));
	sl_store_put(st, "issues", "a", "{\"title\":\"a-local\"}", idA);
	CHECK_Q("before the snapshot", "SELECT id, title FROM issues ORDER BY id", "a|a-local\nc|c0\nx|x0");
	CHECK_RC("a snapshot frame with no begin is refused",
	         sl_store_snapshot_frame(st, "{\"rows\":[],\"cursor\":1,\"done\":true}"), SL_EINVAL);
	CHECK_RC("snapshot begin", sl_store_snapshot_begin(st, "[\"t1\"]"), SL_OK);
	CHECK_RC("a malformed snapshot frame is refused",
	         sl_store_snapshot_frame(st, "{\"rows\":[{\"table\":\"issues\"}],\"cursor\":50,\"done\":true}"), SL_EINVAL);
	CHECK_RC("first snapshot frame",
	         sl_store_snapshot_frame(st, "{\"type\":\"snapshot\",\"rows\":[{\"table\":\"issues\",\"row\":\"a\","
	                                     "\"fields\":{\"id\":\"a\",\"team\":\"t1\",\"title\":\"a-snap\",\"prio\":3},"
	                                     "\"clocks\":{\"title\":[\"0000000000020000\",\"other\"],"
	                                     "\"prio\":[\"0000000000020000\",\"other\"]}}],\"cursor\":50,\"done\":false}"),
	         SL_OK);
	CHECK_Q("rows are held until the last frame", "SELECT id, title FROM issues ORDER BY id", "a|a-local\nc|c0\nx|x0");
	report("the cursor is unchanged until the last frame", sl_store_cursor(st) == 3, "cursor %llu",
	       (unsigned long long) sl_store_cursor(st));
	snprintf(frame, sizeof(frame), "%s",
	         "{\"type\":\"snapshot\",\"rows\":[{\"table\":\"issues\",\"row\":\"b\",\"fields\":{\"id\":\"b\","
	         "\"team\":\"t1\",\"title\":\"b-snap\"}}],\"cursor\":50,\"done\":true}");
	CHECK_RC("last snapshot frame", sl_store_snapshot_frame(st, frame), SL_OK);
	CHECK_Q("the snapshot replaces the group's rows; other groups stay; pending ops on top",
	        "SELECT id, title, prio FROM issues ORDER BY id", "a|a-local|3\nb|b-snap|(null)\nx|x0|(null)");
	CHECK_Q("confirmed state is the snapshot's", "SELECT row, json_extract(fields, '$.title') FROM _synclog_confirmed ORDER BY row",
	        "a|a-snap\nb|b-snap\nx|x0");
	CHECK_Q("pending ops are kept", "SELECT count(*) FROM _synclog_outbox", "1");
	report("the snapshot sets the cursor", sl_store_cursor(st) == 50, "cursor %llu",
	       (unsigned long long) sl_store_cursor(st));
	CHECK_RC("a frame after the last one is refused", sl_store_snapshot_frame(st, frame), SL_EINVAL);
	/* A snapshot for every group (NULL) with a newer clock than the pending op's... no: the
	 * pending op's clock is ours, newer; it still wins its field. */
	sl_store_snapshot_begin(st, NULL);
	CHECK_RC("a snapshot of every group",
	         sl_store_snapshot_frame(st, "{\"rows\":[{\"table\":\"issues\",\"row\":\"a\",\"fields\":"
	                                     "{\"team\":\"t1\",\"title\":\"a2\"}}],\"cursor\":60,\"done\":true}"), SL_OK);
	CHECK_Q("a snapshot of every group replaces every row", "SELECT id, title, prio FROM issues ORDER BY id",
	        "a|a-local|(null)");
	sl_store_close(st);
}

static void
test_hostile(void)
{
	sl_store *st;
	char id1[SL_UUID_LEN + 1];

	snprintf(path, sizeof(path), "%s/hostile.db", dir);
	if (sl_store_open(path, &st) != SL_OK)
		exit(2);
	CHECK_RC("hostile identifiers are accepted as names",
	         sl_store_ensure_tables(st, "{\"x\\\"; DROP TABLE _synclog_outbox; --\": {\"pk\": \"id\\\"\","
	                                    " \"group\": \"g;\", \"columns\": {\"id\\\"\": \"text\", \"g;\": \"text\","
	                                    " \"v'); DELETE FROM _synclog_meta; --\": \"integer\"}}}"),
	         SL_OK);
	CHECK_Q("the hostile table exists under its exact name",
	        "SELECT name FROM sqlite_master WHERE name LIKE 'x%'", "x\"; DROP TABLE _synclog_outbox; --");
	CHECK_Q("the hostile columns exist under their exact names",
	        "SELECT group_concat(name, ',') FROM pragma_table_info('x\"; DROP TABLE _synclog_outbox; --')",
	        "id\",g;,v'); DELETE FROM _synclog_meta; --");
	CHECK_RC("put into the hostile table",
	         sl_store_put(st, "x\"; DROP TABLE _synclog_outbox; --", "r'1\"",
	                      "{\"g;\":\"t1\",\"v'); DELETE FROM _synclog_meta; --\":7}", id1), SL_OK);
	CHECK_Q("the hostile row reads back",
	        "SELECT \"id\"\"\", \"g;\", \"v'); DELETE FROM _synclog_meta; --\" FROM \"x\"\"; DROP TABLE _synclog_outbox; --\"",
	        "r'1\"|t1|7");
	CHECK_Q("nothing was executed: the outbox is intact", "SELECT count(*) FROM _synclog_outbox", "1");
	CHECK_Q("nothing was executed: the metadata is intact", "SELECT count(*) >= 3 FROM _synclog_meta", "1");
	CHECK_RC("a delete in the hostile table",
	         sl_store_delete(st, "x\"; DROP TABLE _synclog_outbox; --", "r'1\"", NULL), SL_OK);
	CHECK_Q("the hostile row is deleted", "SELECT count(*) FROM \"x\"\"; DROP TABLE _synclog_outbox; --\"", "0");
	CHECK_RC("a welcome naming an internal table is refused",
	         sl_store_ensure_tables(st, "{\"_synclog_outbox\": {\"pk\": \"seq\", \"columns\": {\"seq\": \"int\"}}}"),
	         SL_EINVAL);
	CHECK_RC("a welcome whose pk is not a column is refused",
	         sl_store_ensure_tables(st, "{\"t\": {\"pk\": \"id\", \"columns\": {\"a\": \"int\"}}}"), SL_EINVAL);
	CHECK_RC("a welcome that is not an object is refused", sl_store_ensure_tables(st, "[1]"), SL_EINVAL);
	CHECK_RC("a value with quotes is stored as a value",
	         sl_store_put(st, "x\"; DROP TABLE _synclog_outbox; --", "r2",
	                      "{\"g;\":\"it's \\\"x\\\"; DROP TABLE _synclog_meta; --\"}", NULL), SL_OK);
	CHECK_Q("the quoted value reads back", "SELECT \"g;\" FROM \"x\"\"; DROP TABLE _synclog_outbox; --\"",
	        "it's \"x\"; DROP TABLE _synclog_meta; --");

	/* A table the app created itself. */
	w("CREATE TABLE people (id TEXT PRIMARY KEY, name TEXT, extra TEXT)");
	CHECK_RC("an app-created table with the same columns is accepted",
	         sl_store_ensure_tables(st, "{\"people\": {\"pk\": \"id\", \"group\": \"name\", \"columns\": {\"id\": \"text\", \"name\": \"text\"}}}"),
	         SL_OK);
	CHECK_RC("a put into the app-created table", sl_store_put(st, "people", "p1", "{\"name\":\"ann\"}", NULL), SL_OK);
	CHECK_Q("the app-created table gets the row", "SELECT id, name, extra FROM people", "p1|ann|(null)");
	w("CREATE TABLE teams (id TEXT PRIMARY KEY, name TEXT)");
	CHECK_RC("an app-created table missing a column is refused",
	         sl_store_ensure_tables(st, "{\"teams\": {\"pk\": \"id\", \"columns\": {\"id\": \"text\", \"age\": \"int\"}}}"),
	         SL_EINVAL);
	CHECK_RC("a refused welcome leaves the known tables",
	         sl_store_put(st, "teams", "x1", "{}", NULL), SL_EINVAL);
	CHECK_Q("a refused welcome leaves the app's table alone",
	        "SELECT group_concat(name, ',') FROM pragma_table_info('teams')", "id,name");
	CHECK_RC("a known table gains a new column of welcome.tables",
	         sl_store_ensure_tables(st, "{\"people\": {\"pk\": \"id\", \"group\": \"name\", \"columns\": {\"id\": \"text\", \"name\": \"text\", \"age\": \"int4\", \"x\\\";--\": \"real\"}}}"),
	         SL_OK);
	CHECK_Q("the new columns exist with their affinities",
	        "SELECT group_concat(name || ':' || type, ',') FROM pragma_table_info('people')",
	        "id:TEXT,name:TEXT,extra:TEXT,age:INTEGER,x\";--:REAL");
	CHECK_RC("a put into the new column", sl_store_put(st, "people", "p1", "{\"age\":3}", NULL), SL_OK);
	CHECK_Q("the new column gets the value", "SELECT id, name, age FROM people", "p1|ann|3");
	sl_store_close(st);
}

/* One local write of a table-driven case: put (fields non-NULL) or delete. */
struct write_case {
	const char *name;
	const char *table, *row, *fields; /* fields NULL: a delete */
	int want;
	const char *errmsg_has; /* on failure, a piece of the message; NULL: not checked */
};

static void
run_writes(sl_store *st, const struct write_case *c, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int rc = c[i].fields ? sl_store_put(st, c[i].table, c[i].row, c[i].fields, NULL)
		                     : sl_store_delete(st, c[i].table, c[i].row, NULL);
		bool ok = rc == c[i].want &&
		          (c[i].errmsg_has == NULL || strstr(sl_store_errmsg(st), c[i].errmsg_has) != NULL);

		report(c[i].name, ok, "rc %d, want %d: \"%s\"", rc, c[i].want, sl_store_errmsg(st));
	}
}

#define HOSTILE_T "p\"; DROP TABLE _synclog_outbox; --"
#define HOSTILE_C "v'); DELETE FROM _synclog_meta; --"

/*
 * Provisional tables (synclog.h): before any welcome, writes to a table the
 * store does not know create it (id TEXT PRIMARY KEY plus one untyped column
 * per field written); a welcome rebuilds the ones the server tracks.
 */
static void
test_provisional(void)
{
	sl_store *st = NULL;
	char id_h[SL_UUID_LEN + 1], sql[512];
	struct rej r = {0};
	struct pend p;
	static const struct write_case before[] = {
		{"provisional: put creates the table", "issues", "i1", "{\"title\":\"hello\",\"prio\":2}", SL_OK, NULL},
		{"provisional: a put with the pk field", "issues", "i2", "{\"id\":\"ignored\",\"title\":\"two\"}", SL_OK, NULL},
		{"provisional: a later field adds a column", "issues", "i2", "{\"done\":true,\"est\":1.5}", SL_OK, NULL},
		{"provisional: a field the server will not have", "issues", "i1", "{\"local_only\":\"x\"}", SL_OK, NULL},
		{"provisional: a delete creates its table", "gone", "g1", NULL, SL_OK, NULL},
		{"provisional: a second table", "notes", "n1", "{\"body\":\"b1\"}", SL_OK, NULL},
		{"provisional: a hostile table and column", HOSTILE_T, "r'1\"", "{\"" HOSTILE_C "\":7}", SL_OK, NULL},
		{"provisional: a name of ours is refused", "_synclog_outbox", "r", "{}", SL_EINVAL, "reserved"},
		{"provisional: a name of SQLite's is refused", "SQLite_master", "r", "{}", SL_EINVAL, "reserved"},
		{"provisional: an empty table name is refused", "", "r", "{}", SL_EINVAL, NULL},
		{"provisional: a table the app made is refused", "appt", "r", "{\"a\":1}", SL_EINVAL, "not synclog's"},
		{"provisional: the app's table, another case", "APPT", "r", NULL, SL_EINVAL, "not synclog's"},
		{"provisional: an empty row is refused", "issues", "", "{}", SL_EINVAL, "empty row"},
		{"provisional: fields not an object are refused", "issues", "i1", "[1]", SL_EINVAL, "object"},
		{"provisional: an empty column name is refused", "issues", "i1", "{\"\":1}", SL_EINVAL, "empty column"},
		{"provisional: a column differing only in case is refused", "issues", "i1",
		 "{\"newcol\":1,\"Title\":2}", SL_EINVAL, "only in case"},
	};
	static const struct write_case after[] = {
		{"after welcome: a put to a rebuilt table", "issues", "i3", "{\"title\":\"three\",\"prio\":3}", SL_OK, NULL},
		{"after welcome: a column the server lacks is refused", "issues", "i3", "{\"local_only\":1}", SL_EINVAL,
		 "unknown column"},
		{"after welcome: an unknown table is refused", "never", "x", "{}", SL_EINVAL, "does not track"},
		{"after welcome: a provisional table the server lacks is refused", "gone", "g2", "{}", SL_EINVAL,
		 "provisional"},
		{"after welcome: a delete in a provisional table the server lacks is refused", "gone", "g1", NULL,
		 SL_EINVAL, "provisional"},
	};

	snprintf(path, sizeof(path), "%s/provisional.db", dir);
	if (sl_store_open(path, &st) != SL_OK)
		exit(2);
	w("CREATE TABLE appt (k TEXT PRIMARY KEY, a TEXT)");
	run_writes(st, before, sizeof(before) / sizeof(before[0]));
	CHECK_Q("provisional: the table has id and one untyped column per field",
	        "SELECT group_concat(name || ':' || type || ':' || pk, ',') FROM pragma_table_info('issues')",
	        "id:TEXT:1,title::0,prio::0,done::0,est::0,local_only::0");
	CHECK_Q("provisional: values are kept as given",
	        "SELECT id, title, prio, typeof(prio), done, est, local_only FROM issues ORDER BY id",
	        "i1|hello|2|integer|(null)|(null)|x\ni2|two|(null)|null|1|1.5|(null)");
	CHECK_Q("provisional: a refused write rolled back its new column",
	        "SELECT count(*) FROM pragma_table_info('issues') WHERE name = 'newcol'", "0");
	CHECK_Q("provisional: the delete's table exists, empty",
	        "SELECT (SELECT group_concat(name, ',') FROM pragma_table_info('gone')) || '/' || count(*) FROM gone",
	        "id/0");
	CHECK_Q("provisional: hostile names are created exactly",
	        "SELECT group_concat(name, ',') FROM pragma_table_info('" "p\"; DROP TABLE _synclog_outbox; --" "')",
	        "id," HOSTILE_C);
	CHECK_Q("provisional: the hostile row reads back",
	        "SELECT \"id\", \"v'); DELETE FROM _synclog_meta; --\" FROM \"p\"\"; DROP TABLE _synclog_outbox; --\"",
	        "r'1\"|7");
	CHECK_Q("provisional: every write is in the outbox", "SELECT count(*) FROM _synclog_outbox", "7");
	CHECK_Q("provisional: the app's table is untouched",
	        "SELECT group_concat(name, ',') FROM pragma_table_info('appt')", "k,a");
	CHECK_Q("provisional: the description says provisional",
	        "SELECT json_extract(value, '$.issues.provisional') || json_extract(value, '$.issues.pk')"
	        " FROM _synclog_meta WHERE key = 'tables'", "1id");

	/* Reopen: the store still knows its provisional tables and that no welcome came. */
	sl_store_close(st);
	st = NULL;
	if (sl_store_open(path, &st) != SL_OK)
		exit(2);
	CHECK_RC("provisional: after reopen, a put to a known provisional table",
	         sl_store_put(st, "issues", "i1", "{\"title\":\"hello again\"}", NULL), SL_OK);
	CHECK_RC("provisional: after reopen, a new field still adds a column",
	         sl_store_put(st, "notes", "n1", "{\"tags\":[1,2]}", NULL), SL_OK);
	CHECK_Q("provisional: after reopen, the rows", "SELECT id, title FROM issues ORDER BY id",
	        "i1|hello again\ni2|two");
	CHECK_Q("provisional: a JSON array value is kept as its text", "SELECT id, body, tags FROM notes",
	        "n1|b1|[1,2]");
	p = pending(st);
	report("provisional: the pending ops", p.n == 9, "n %d", p.n);
	snprintf(sql, sizeof(sql), "SELECT op_id FROM _synclog_outbox WHERE tbl = '%s'", "p\"; DROP TABLE _synclog_outbox; --");
	snprintf(id_h, sizeof(id_h), "%s", q(sql));

	CHECK_RC("provisional: a welcome rebuilds the tables the server tracks",
	         sl_store_ensure_tables(st, "{\"issues\": {\"pk\": \"id\", \"group\": \"team\", \"columns\": {"
	                                    "\"id\": \"text\", \"team\": \"text\", \"title\": \"text\","
	                                    " \"prio\": \"integer\", \"done\": \"boolean\", \"est\": \"double precision\"}},"
	                                    " \"notes\": {\"pk\": \"key\", \"columns\": {\"key\": \"text\", \"body\": \"text\","
	                                    " \"tags\": \"jsonb\"}}}"),
	         SL_OK);
	CHECK_Q("provisional: the rebuilt table has the server's columns and types",
	        "SELECT group_concat(name || ':' || type || ':' || pk, ',') FROM pragma_table_info('issues')",
	        "id:TEXT:1,team:TEXT:0,title:TEXT:0,prio:INTEGER:0,done:INTEGER:0,est:REAL:0");
	CHECK_Q("provisional: the visible rows are recomputed; unknown columns omitted",
	        "SELECT id, team, title, prio, done, est FROM issues ORDER BY id",
	        "i1|(null)|hello again|2|(null)|(null)\ni2|(null)|two|(null)|1|1.5");
	CHECK_Q("provisional: a rebuilt table with another pk column", "SELECT key, body, tags FROM notes", "n1|b1|[1,2]");
	CHECK_Q("provisional: the ops stay in the outbox untouched",
	        "SELECT count(*), sum(fields LIKE '%local_only%') FROM _synclog_outbox", "9|1");
	CHECK_Q("provisional: the rebuilt tables are no longer provisional, the others are",
	        "SELECT coalesce(json_extract(value, '$.issues.provisional'), 0) || coalesce(json_extract(value, '$.notes.provisional'), 0)"
	        " || json_extract(value, '$.gone.provisional') FROM _synclog_meta WHERE key = 'tables'", "001");
	CHECK_Q("provisional: a table the server lacks stays as it was",
	        "SELECT group_concat(name, ',') FROM pragma_table_info('gone')", "id");
	run_writes(st, after, sizeof(after) / sizeof(after[0]));
	CHECK_Q("after welcome: the put is visible", "SELECT title, prio FROM issues WHERE id = 'i3'", "three|3");

	/* The server rejects the op on a table it lacks: it leaves, its row rolls back. */
	snprintf(sql, sizeof(sql), "{\"acked\":[],\"rejected\":[{\"id\":\"%s\",\"code\":\"unknown_table\","
	         "\"message\":\"not tracked\"}]}", id_h);
	CHECK_RC("provisional: an op rejected unknown_table", sl_store_ack(st, sql, rej_cb, &r), SL_OK);
	report("provisional: the rejection is reported", r.n == 1 && strstr(r.last, "unknown_table") != NULL,
	       "n %d, last \"%s\"", r.n, r.last);
	CHECK_Q("provisional: the rejected op's row rolls back",
	        "SELECT count(*) FROM \"p\"\"; DROP TABLE _synclog_outbox; --\"", "0");

	sl_store_close(st);
	st = NULL;
	if (sl_store_open(path, &st) != SL_OK)
		exit(2);
	CHECK_RC("after reopen, the store remembers the welcome: an unknown table is refused",
	         sl_store_put(st, "never2", "x", "{}", NULL), SL_EINVAL);
	CHECK_RC("after reopen, a rebuilt table takes writes",
	         sl_store_put(st, "notes", "n2", "{\"body\":\"b2\"}", NULL), SL_OK);
	sl_store_close(st);
}

/*
 * The model check: for every row of issues, the visible row must be
 * sl_merge_visible over its confirmed state and its pending ops as the file
 * holds them.  Returns NULL, or a description of the first difference
 * (static buffer).
 */
static const char *
model_diff(int nrows)
{
	static char why[1024];
	sqlite3 *db;
	sqlite3_stmt *cs, *os, *vs;
	const char *res = NULL;

	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
		return "cannot open";
	sqlite3_prepare_v2(db, "SELECT fields, clocks, deleted FROM _synclog_confirmed WHERE tbl = 'issues' AND row = ?", -1, &cs, NULL);
	sqlite3_prepare_v2(db, "SELECT kind, fields, hlc FROM _synclog_outbox WHERE tbl = 'issues' AND row = ? ORDER BY seq", -1, &os, NULL);
	sqlite3_prepare_v2(db, "SELECT json_object('team', team, 'title', title, 'prio', prio) FROM issues WHERE id = ?", -1, &vs, NULL);
	for (int r = 0; r < nrows && res == NULL; r++) {
		char row[16];
		sl_row conf = {0}, vis = {0};
		sl_pending_op ops[256];
		json_t *of[256], *want = NULL, *got = NULL;
		char oh[256][17];
		size_t n = 0;

		snprintf(row, sizeof(row), "m%d", r);
		sl_row_init(&conf);
		sqlite3_bind_text(cs, 1, row, -1, SQLITE_STATIC);
		if (sqlite3_step(cs) == SQLITE_ROW) {
			const char *f = (const char *) sqlite3_column_text(cs, 0);

			conf.fields = f ? json_loads(f, 0, NULL) : NULL;
			json_decref(conf.clocks);
			conf.clocks = json_loads((const char *) sqlite3_column_text(cs, 1), 0, NULL);
			conf.deleted = sqlite3_column_int(cs, 2) != 0;
		}
		sqlite3_reset(cs);
		sqlite3_bind_text(os, 1, row, -1, SQLITE_STATIC);
		while (n < 256 && sqlite3_step(os) == SQLITE_ROW) {
			of[n] = json_loads((const char *) sqlite3_column_text(os, 1), 0, NULL);
			snprintf(oh[n], sizeof(oh[n]), "%s", (const char *) sqlite3_column_text(os, 2));
			ops[n].kind = strcmp((const char *) sqlite3_column_text(os, 0), "delete") == 0 ? SL_OP_DELETE : SL_OP_UPSERT;
			ops[n].fields = of[n];
			ops[n].hlc = oh[n];
			ops[n].client_id = model_me;
			n++;
		}
		sqlite3_reset(os);
		if (sl_merge_visible(&conf, ops, n, &vis, NULL) != SL_OK) {
			snprintf(why, sizeof(why), "row %s: merge failed", row);
			res = why;
		} else if (vis.fields != NULL && !vis.deleted) {
			want = json_pack("{s:o?, s:o?, s:o?}", "team", json_incref(json_object_get(vis.fields, "team")),
			                 "title", json_incref(json_object_get(vis.fields, "title")),
			                 "prio", json_incref(json_object_get(vis.fields, "prio")));
			const char *k;
			json_t *v, *full = json_object();

			json_object_set_new(full, "team", json_null());
			json_object_set_new(full, "title", json_null());
			json_object_set_new(full, "prio", json_null());
			json_object_foreach(want, k, v)
				json_object_set(full, k, v);
			json_decref(want);
			want = full;
		}
		sqlite3_bind_text(vs, 1, row, -1, SQLITE_STATIC);
		if (sqlite3_step(vs) == SQLITE_ROW)
			got = json_loads((const char *) sqlite3_column_text(vs, 0), 0, NULL);
		sqlite3_reset(vs);
		if (!((want == NULL && got == NULL) || (want && got && json_equal(want, got)))) {
			char *w = want ? json_dumps(want, JSON_SORT_KEYS) : NULL, *g = got ? json_dumps(got, JSON_SORT_KEYS) : NULL;

			snprintf(why, sizeof(why), "row %s: visible %s, merge says %s (%zu pending)", row, g ? g : "(none)",
			         w ? w : "(none)", n);
			free(w);
			free(g);
			res = why;
		}
		json_decref(want);
		json_decref(got);
		for (size_t i = 0; i < n; i++)
			json_decref(of[i]);
		sl_row_clear(&conf);
		sl_row_clear(&vis);
	}
	sqlite3_finalize(cs);
	sqlite3_finalize(os);
	sqlite3_finalize(vs);
	sqlite3_close(db);
	return res;
}

/*
 * Random local writes, incoming changes (behind, ahead, far ahead of our
 * clock, deletes), own ops confirmed, acks, rejections and reopens on a few
 * rows; after every step the visible rows must be what the merge of
 * confirmed state and pending ops says (model_diff).  This checks the fast
 * paths (a local write changes the visible row by itself; a frame recomputes
 * each row once) against the rule.
 */
static void
test_model(void)
{
	sl_store *st = fresh("model.db");
	const int nrows = 8, steps = 1500;
	unsigned seed = (unsigned) time(NULL);
	const char *diff = NULL;
	unsigned cseq = 0;
	int step;

	srand(seed);
	snprintf(model_me, sizeof(model_me), "%s", sl_store_client_id(st));
	for (step = 0; step < steps && diff == NULL; step++) {
		int dice = rand() % 100, r = rand() % nrows;
		char row[16], fields[256], frame[1024], h[SL_HLC_TEXT_LEN + 1], sql[256];
		int rc = SL_OK;

		snprintf(row, sizeof(row), "m%d", r);
		snprintf(fields, sizeof(fields), "{%s%s%s}",
		         rand() % 2 ? "\"title\":\"x" : "\"team\":\"t",
		         (const char[][4]){"1\"", "2\"", "3\""}[rand() % 3],
		         rand() % 2 ? ",\"prio\":7" : "");
		if (dice < 40) {
			rc = sl_store_put(st, "issues", row, fields, NULL);
		} else if (dice < 44) {
			rc = sl_store_delete(st, "issues", row, NULL);
		} else if (dice < 70) {
			/* Another client's change: behind, around, ahead, or beyond the skew bound. */
			int64_t off = (int64_t[]){-5000, -1, 0, 1, 3, 1 << 16, (int64_t) 120000 << 16}[rand() % 7];
			uint64_t now = sl_store_hlc(st);

			sl_hlc_format((uint64_t) ((int64_t) now + off), h);
			snprintf(frame, sizeof(frame),
			         "{\"cursor\":%u,\"changes\":[{\"seq\":%u,\"op_id\":\"o-%d\",\"client_id\":\"%s\","
			         "\"table\":\"issues\",\"row\":\"%s\",\"kind\":\"%s\",\"fields\":%s,\"hlc\":\"%s\"}]}",
			         cseq + 1, cseq + 1, step, rand() % 2 ? "other" : "zz-other", row,
			         rand() % 30 == 0 ? "delete" : "upsert", fields, h);
			cseq++;
			rc = sl_store_apply_changes(st, frame);
		} else if (dice < 82) {
			/* Our oldest pending op comes back as a change. */
			const char *got;

			snprintf(sql, sizeof(sql), "SELECT op_id || ' ' || row || ' ' || kind || ' ' || hlc || ' ' || fields"
			         " FROM _synclog_outbox ORDER BY seq LIMIT 1");
			got = q(sql);
			if (strcmp(got, "(none)") != 0) {
				char id[64], orow[16], kind[16], oh[32], of[256];

				if (sscanf(got, "%63s %15s %15s %31s %255[^\n]", id, orow, kind, oh, of) == 5) {
					snprintf(frame, sizeof(frame),
					         "{\"cursor\":%u,\"changes\":[{\"seq\":%u,\"op_id\":\"%s\",\"client_id\":\"%s\","
					         "\"table\":\"issues\",\"row\":\"%s\",\"kind\":\"%s\",\"fields\":%s,\"hlc\":\"%s\"}]}",
					         cseq + 1, cseq + 1, id, model_me, orow, kind, of, oh);
					cseq++;
					rc = sl_store_apply_changes(st, frame);
				}
			}
		} else if (dice < 94) {
			/* An ack of a random pending op: acked, or rejected. */
			snprintf(sql, sizeof(sql), "SELECT op_id FROM _synclog_outbox ORDER BY random() LIMIT 1");
			snprintf(h, sizeof(h), "%s", "");
			{
				char id[64];

				snprintf(id, sizeof(id), "%s", q(sql));
				if (strcmp(id, "(none)") != 0) {
					if (rand() % 2)
						snprintf(frame, sizeof(frame), "{\"acked\":[\"%s\"],\"rejected\":[]}", id);
					else
						snprintf(frame, sizeof(frame), "{\"acked\":[],\"rejected\":[{\"id\":\"%s\",\"code\":\"invalid_value\"}]}", id);
					rc = sl_store_ack(st, frame, NULL, NULL);
				}
			}
		} else {
			sl_store_close(st);
			st = NULL;
			if (sl_store_open(path, &st) != SL_OK)
				exit(2);
		}
		if (rc != SL_OK) {
			static char why[512];

			snprintf(why, sizeof(why), "step %d: call failed: %s", step, sl_store_errmsg(st));
			diff = why;
			break;
		}
		diff = model_diff(nrows);
	}
	report("model: visible rows are the merge of confirmed state and pending ops, at every step",
	       diff == NULL, "seed %u, step %d: %s", seed, step, diff ? diff : "");
	sl_store_close(st);
}

/* Appends one change object to a frame's list of changes in buf. */
static void
add_change(char *buf, size_t size, unsigned seq, const char *op_id, const char *cid, const char *row,
           const char *kind, const char *fields, const char *hlc)
{
	size_t len = strlen(buf);

	snprintf(buf + len, size - len,
	         "%s{\"seq\":%u,\"op_id\":\"%s\",\"client_id\":\"%s\",\"table\":\"issues\",\"row\":\"%s\","
	         "\"group\":\"t1\",\"kind\":\"%s\",\"fields\":%s,\"hlc\":\"%s\"}",
	         len > 0 ? "," : "", seq, op_id, cid, row, kind, fields, hlc);
}

/*
 * A changes frame of the changes in list; with via_jansson, a member the
 * scanner declines (nested) is added, so jansson reads it and every row
 * takes the store's general way.  Static buffer.
 */
static const char *
mixed_frame(const char *list, unsigned cursor, bool via_jansson)
{
	static char buf[8192];

	snprintf(buf, sizeof(buf), "{\"type\":\"changes\",%s\"changes\":[%s],\"cursor\":%u}",
	         via_jansson ? "\"extra\":{\"via\":[\"jansson\"]}," : "", list, cursor);
	return buf;
}

#define MX_H1 "0000000000010000"
#define MX_H2 "0000000000010001"
#define MX_H3 "0000000000020000"
#define MX_H4 "0000000000020001"

/* What run_mixed leaves in a file, as text: confirmed state, visible rows, outbox. */
struct mixed_out {
	char confirmed[4096], visible[4096], outbox[1024];
	uint64_t cursor;
	bool ok;
	char why[512];
};

static void
mixed_dump(struct mixed_out *o, uint64_t cursor)
{
	/* Row q is confirmed by this store's own op: its clock names this store, so it is left out. */
	snprintf(o->confirmed, sizeof(o->confirmed), "%s",
	         q("SELECT row || '|' || ifnull(fields, 'NULL') || '|' || clocks || '|' || deleted"
	           " FROM _synclog_confirmed WHERE row <> 'q' ORDER BY row"));
	snprintf(o->visible, sizeof(o->visible), "%s",
	         q("SELECT id || '|' || ifnull(team, 'N') || '|' || ifnull(title, 'N') || '|' || ifnull(prio, 'N')"
	           " || '|' || ifnull(done, 'N') || '|' || ifnull(est, 'N') || '|' || ifnull(meta, 'N')"
	           " || '|' || typeof(prio) || typeof(est) FROM issues ORDER BY id"));
	snprintf(o->outbox, sizeof(o->outbox), "%s",
	         q("SELECT row || '|' || kind || '|' || fields FROM _synclog_outbox ORDER BY seq"));
	o->cursor = cursor;
}

/*
 * The scenario of test_apply_mixed on a fresh store named name, every frame
 * read by the scanner or (via_jansson) by jansson; checks what only this
 * store can know (its own op), leaves the file's state in *o.
 */
static void
run_mixed(const char *name, bool via_jansson, struct mixed_out *o)
{
	sl_store *st = fresh(name);
	char list[6144] = "", me[SL_UUID_LEN + 1], idQ[SL_UUID_LEN + 1], hQ[32], sql[256];
	struct mixed_out again;

	o->ok = false;
	snprintf(me, sizeof(me), "%s", sl_store_client_id(st));
	/* Confirmed state before: row a alive, row d a tombstone. */
	add_change(list, sizeof(list), 1, "o1", "other", "a", "upsert", "{\"team\":\"t1\",\"title\":\"a0\",\"prio\":1}", MX_H1);
	add_change(list, sizeof(list), 2, "o2", "other", "d", "upsert", "{\"team\":\"t1\",\"title\":\"d0\"}", MX_H1);
	add_change(list, sizeof(list), 3, "o3", "other", "d", "delete", "null", MX_H2);
	if (sl_store_apply_changes(st, mixed_frame(list, 3, via_jansson)) != SL_OK) {
		snprintf(o->why, sizeof(o->why), "first frame: %s", sl_store_errmsg(st));
		goto out;
	}
	/* Pending ops: on a confirmed row (a), on a row confirmed state lacks (p), and q, to come back. */
	if (sl_store_put(st, "issues", "a", "{\"title\":\"mine\"}", NULL) != SL_OK ||
	    sl_store_put(st, "issues", "p", "{\"team\":\"t1\",\"title\":\"pnew\"}", NULL) != SL_OK ||
	    sl_store_put(st, "issues", "q", "{\"team\":\"t1\",\"title\":\"qmine\",\"prio\":3}", idQ) != SL_OK) {
		snprintf(o->why, sizeof(o->why), "put: %s", sl_store_errmsg(st));
		goto out;
	}
	snprintf(hQ, sizeof(hQ), "%s", op_hlc(idQ));
	list[0] = '\0';
	add_change(list, sizeof(list), 2, "o2", "other", "n3", "upsert", "{\"title\":\"ghost\"}", MX_H1); /* redelivered */
	add_change(list, sizeof(list), 4, "o4", "other", "n1", "upsert",
	           "{\"team\":\"t1\",\"title\":\"n1\",\"prio\":4,\"done\":true,\"est\":2.5}", MX_H3);
	add_change(list, sizeof(list), 5, "o5", "other", "a", "upsert", "{\"title\":\"theirs\",\"prio\":5}", MX_H3);
	add_change(list, sizeof(list), 6, "o6", "other", "p", "upsert", "{\"team\":\"t1\",\"title\":\"ptheirs\",\"prio\":6}", MX_H3);
	add_change(list, sizeof(list), 7, "o7", "other", "n2", "upsert", "{\"title\":\"x1\",\"prio\":1}", MX_H3);
	add_change(list, sizeof(list), 8, "o8", "zz-other", "n2", "upsert", "{\"title\":\"x2\",\"team\":\"t2\"}", MX_H4);
	add_change(list, sizeof(list), 9, "o9", "other", "d", "upsert", "{\"title\":\"zombie\"}", MX_H4);
	add_change(list, sizeof(list), 10, idQ, me, "q", "upsert", "{\"team\":\"t1\",\"title\":\"qmine\",\"prio\":3}", hQ);
	add_change(list, sizeof(list), 11, "o11", "other", "n4", "upsert", "{\"title\":\"dup1\",\"prio\":2,\"title\":\"dup2\"}", MX_H3);
	add_change(list, sizeof(list), 12, "o12", "other", "n5", "upsert",
	           "{\"id\":\"zzz\",\"title\":\"t5\",\"nope\":1,\"meta\":\"m\"}", MX_H3);
	add_change(list, sizeof(list), 12, "o12", "other", "n5", "upsert", "{\"title\":\"again\"}", MX_H3); /* seq repeated */
	add_change(list, sizeof(list), 13, "o13", "other", "n6", "delete", "null", MX_H3);
	add_change(list, sizeof(list), 14, "o14", "other", "n7", "upsert", "null", MX_H3);
	add_change(list, sizeof(list), 15, "o15", "other", "n8", "upsert",
	           "{\"title\":\"q\\\"b\\\\s\\u00e9\\t\",\"est\":-0.5,\"prio\":-7,\"done\":false,\"meta\":null,\"team\":\"t1\"}", MX_H3);
	add_change(list, sizeof(list), 16, "o16", "other", "n9", "upsert", "{}", MX_H3);
	if (sl_store_apply_changes(st, mixed_frame(list, 20, via_jansson)) != SL_OK) {
		snprintf(o->why, sizeof(o->why), "mixed frame: %s", sl_store_errmsg(st));
		goto out;
	}
	mixed_dump(o, sl_store_cursor(st));
	/* The same frame again changes nothing. */
	if (sl_store_apply_changes(st, mixed_frame(list, 20, via_jansson)) != SL_OK) {
		snprintf(o->why, sizeof(o->why), "redelivered frame: %s", sl_store_errmsg(st));
		goto out;
	}
	mixed_dump(&again, sl_store_cursor(st));
	if (strcmp(again.confirmed, o->confirmed) != 0 || strcmp(again.visible, o->visible) != 0 ||
	    strcmp(again.outbox, o->outbox) != 0 || again.cursor != o->cursor) {
		snprintf(o->why, sizeof(o->why), "the redelivered frame changed the file");
		goto out;
	}
	/* Own op confirmed on a row new to confirmed state: out of the outbox, its clock ours. */
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM _synclog_outbox WHERE op_id = '%s'", idQ);
	if (strcmp(q(sql), "0") != 0) {
		snprintf(o->why, sizeof(o->why), "own op still in the outbox");
		goto out;
	}
	{
		char want[512];

		snprintf(want, sizeof(want),
		         "{\"team\":\"t1\",\"title\":\"qmine\",\"prio\":3}|{\"team\":[\"%s\",\"%s\"],\"title\":[\"%s\",\"%s\"],"
		         "\"prio\":[\"%s\",\"%s\"]}|0", hQ, me, hQ, me, hQ, me);
		if (strcmp(q("SELECT fields || '|' || clocks || '|' || deleted FROM _synclog_confirmed WHERE row = 'q'"), want) != 0) {
			snprintf(o->why, sizeof(o->why), "row q confirmed as %s", q("SELECT fields || '|' || clocks FROM _synclog_confirmed WHERE row = 'q'"));
			goto out;
		}
	}
	/* A later local write on a row the frame created merges with its confirmed clocks. */
	if (sl_store_put(st, "issues", "n1", "{\"title\":\"later\"}", NULL) != SL_OK ||
	    strcmp(q("SELECT title || '|' || prio FROM issues WHERE id = 'n1'"), "later|4") != 0) {
		snprintf(o->why, sizeof(o->why), "put on n1: %s", q("SELECT title || '|' || prio FROM issues WHERE id = 'n1'"));
		goto out;
	}
	o->ok = true;
out:
	sl_store_close(st);
}

/*
 * A frame mixing rows new to confirmed state (the fast way of
 * sl_store_apply_changes), updates of rows with pending ops, a row new to
 * confirmed state but with a pending op, two changes of one row, a change
 * of a tombstone, own ops confirmed, repeated names, the pk and unknown
 * columns among the fields, deletes, no fields, escapes, redelivered
 * changes: the file must be exactly what the general way (jansson's frames)
 * leaves, and each guarantee holds on its own.
 */
static void
test_apply_mixed(void)
{
	struct mixed_out fast, general;
	const char *got;

	run_mixed("mixed-fast.db", false, &fast);
	report("mixed frame, scanner's way: applies, idempotent on redelivery, own op confirmed", fast.ok, "%s", fast.why);
	run_mixed("mixed-general.db", true, &general);
	report("mixed frame, jansson's way: applies, idempotent on redelivery, own op confirmed", general.ok, "%s", general.why);
	report("mixed frame: confirmed state the same both ways", strcmp(fast.confirmed, general.confirmed) == 0,
	       "scanner:\n%s\njansson:\n%s", fast.confirmed, general.confirmed);
	report("mixed frame: visible rows the same both ways", strcmp(fast.visible, general.visible) == 0,
	       "scanner:\n%s\njansson:\n%s", fast.visible, general.visible);
	report("mixed frame: outbox the same both ways", strcmp(fast.outbox, general.outbox) == 0 && fast.cursor == general.cursor,
	       "scanner: %s (cursor %llu); jansson: %s (cursor %llu)", fast.outbox, (unsigned long long) fast.cursor,
	       general.outbox, (unsigned long long) general.cursor);
	report("mixed frame: cursor is the frame's", fast.cursor == 20, "cursor %llu", (unsigned long long) fast.cursor);
	/* Each guarantee, on the scanner's file. */
	snprintf(path, sizeof(path), "%s/%s", dir, "mixed-fast.db");
	CHECK_Q("mixed frame: a redelivered change (seq at or below the cursor) is skipped",
	        "SELECT count(*) FROM _synclog_confirmed WHERE row = 'n3' OR fields LIKE '%again%'", "0");
	CHECK_Q("mixed frame: a new row's confirmed state, texts as the general way writes them",
	        "SELECT fields || '|' || clocks FROM _synclog_confirmed WHERE row = 'n1'",
	        "{\"team\":\"t1\",\"title\":\"n1\",\"prio\":4,\"done\":true,\"est\":2.5}|{\"team\":[\"" MX_H3 "\",\"other\"],"
	        "\"title\":[\"" MX_H3 "\",\"other\"],\"prio\":[\"" MX_H3 "\",\"other\"],\"done\":[\"" MX_H3 "\",\"other\"],"
	        "\"est\":[\"" MX_H3 "\",\"other\"]}");
	CHECK_Q("mixed frame: a pending op stays on top of a confirmed row's change",
	        "SELECT title || '|' || prio FROM issues WHERE id = 'a'", "mine|5");
	CHECK_Q("mixed frame: ... and confirmed state holds the server's value",
	        "SELECT fields FROM _synclog_confirmed WHERE row = 'a'", "{\"team\":\"t1\",\"title\":\"theirs\",\"prio\":5}");
	CHECK_Q("mixed frame: a pending op stays on top of a row new to confirmed state",
	        "SELECT team || '|' || title || '|' || prio FROM issues WHERE id = 'p'", "t1|pnew|6");
	CHECK_Q("mixed frame: two changes of one row, applied in order",
	        "SELECT fields FROM _synclog_confirmed WHERE row = 'n2'", "{\"title\":\"x2\",\"prio\":1,\"team\":\"t2\"}");
	CHECK_Q("mixed frame: a tombstone absorbs a later upsert",
	        "SELECT (SELECT count(*) FROM issues WHERE id = 'd') || '|' || deleted FROM _synclog_confirmed WHERE row = 'd'", "0|1");
	CHECK_Q("mixed frame: a repeated name: its last value", "SELECT title || '|' || prio FROM issues WHERE id = 'n4'", "dup2|2");
	CHECK_Q("mixed frame: the pk and unknown columns among the fields",
	        "SELECT id || '|' || title || '|' || meta FROM issues WHERE id = 'n5'", "n5|t5|m");
	CHECK_Q("mixed frame: escapes, reals, booleans, null",
	        "SELECT title || '|' || est || '|' || prio || '|' || done || '|' || typeof(meta) FROM issues WHERE id = 'n8'",
	        "q\"b\\s\xc3\xa9\t|-0.5|-7|0|null");
	got = q("SELECT count(*) FROM issues WHERE id IN ('n6', 'n7', 'n9')");
	report("mixed frame: a delete of an unknown row hides it; no fields or {} make a row",
	       strcmp(got, "2") == 0 && strcmp(q("SELECT deleted FROM _synclog_confirmed WHERE row = 'n6'"), "1") == 0,
	       "%s rows", got);
}

/*
 * Two handles on one file (two processes, say: a CLI put beside a running
 * watch): each sees the other's commits, the outbox index included.
 */
static void
test_two_handles(void)
{
	sl_store *a = fresh("two.db"), *b = NULL, *st;
	char id1[SL_UUID_LEN + 1], id2[SL_UUID_LEN + 1], me[SL_UUID_LEN + 1];
	struct pend p;

	if (sl_store_open(path, &b) != SL_OK)
		exit(2);
	snprintf(me, sizeof(me), "%s", sl_store_client_id(a));
	st = a;
	CHECK_RC("two handles: a put through the first", sl_store_put(a, "issues", "w1", "{\"title\":\"one\"}", id1), SL_OK);
	st = b;
	CHECK_RC("two handles: the second applies the first's op coming back",
	         sl_store_apply_changes(b, change1(1, id1, me, "w1", "upsert", "{\"title\":\"one\"}", op_hlc(id1), 1)), SL_OK);
	CHECK_Q("two handles: the op left the outbox", "SELECT count(*) FROM _synclog_outbox", "0");
	CHECK_RC("two handles: a put through the second", sl_store_put(b, "issues", "w2", "{\"title\":\"two\"}", id2), SL_OK);
	st = a;
	CHECK_RC("two handles: the first writes again", sl_store_put(a, "issues", "w2", "{\"prio\":2}", NULL), SL_OK);
	CHECK_Q("two handles: both ops on the row are visible", "SELECT title, prio FROM issues WHERE id = 'w2'", "two|2");
	CHECK_Q("two handles: the outbox seqs are distinct", "SELECT count(DISTINCT seq) FROM _synclog_outbox", "2");
	report("two handles: the first knows the cursor the second moved", sl_store_cursor(a) == 1, "cursor %llu",
	       (unsigned long long) sl_store_cursor(a));
	{
		char ack[256];

		snprintf(ack, sizeof(ack), "{\"rejected\":[{\"id\":\"%s\",\"code\":\"invalid_value\"}]}", id2);
		CHECK_RC("two handles: a rejection through the first of the second's op", sl_store_ack(a, ack, NULL, NULL), SL_OK);
	}
	CHECK_Q("two handles: the rejected op's field rolls back", "SELECT title, prio FROM issues WHERE id = 'w2'", "(null)|2");
	p = pending(b);
	report("two handles: the second lists the one op left", p.n == 1, "n %d", p.n);
	sl_store_close(a);
	sl_store_close(b);
}

/* A file made with the first layout of the internal tables is converted when opened. */
static void
test_migrate(void)
{
	sl_store *st = NULL;
	struct pend p;

	snprintf(path, sizeof(path), "%s/v1.db", dir);
	w("CREATE TABLE _synclog_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
	  "CREATE TABLE _synclog_confirmed (tbl TEXT NOT NULL, row TEXT NOT NULL, fields TEXT,"
	  " clocks TEXT NOT NULL DEFAULT '{}', deleted INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (tbl, row));"
	  "CREATE TABLE _synclog_outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, op_id TEXT NOT NULL UNIQUE,"
	  " tbl TEXT NOT NULL, row TEXT NOT NULL, kind TEXT NOT NULL, fields TEXT NOT NULL DEFAULT '{}',"
	  " hlc TEXT NOT NULL, acked INTEGER NOT NULL DEFAULT 0);"
	  "CREATE INDEX _synclog_outbox_row ON _synclog_outbox (tbl, row, seq);"
	  "CREATE TABLE _synclog_snapshot (tbl TEXT NOT NULL, row TEXT NOT NULL, fields TEXT NOT NULL,"
	  " clocks TEXT NOT NULL, PRIMARY KEY (tbl, row));"
	  "INSERT INTO _synclog_meta VALUES ('client_id', '11111111-1111-4111-8111-111111111111'), ('cursor', '7'),"
	  " ('hlc', '0000000000010000'), ('tables', '{\"issues\":{\"pk\":\"id\",\"columns\":{\"id\":\"text\",\"title\":\"text\"}}}');"
	  "CREATE TABLE issues (id TEXT PRIMARY KEY, title TEXT);"
	  "INSERT INTO _synclog_confirmed VALUES ('issues', 'c1', '{\"title\":\"c\"}', '{\"title\":[\"0000000000010000\",\"x\"]}', 0);"
	  "INSERT INTO _synclog_outbox (seq, op_id, tbl, row, kind, fields, hlc) VALUES"
	  " (41, 'op-41', 'issues', 'c1', 'upsert', '{\"title\":\"mine\"}', '0000000000020000');"
	  "INSERT INTO issues VALUES ('c1', 'mine');");
	report("migrate: a first-layout file opens", sl_store_open(path, &st) == SL_OK, "%s", "open failed");
	if (st == NULL)
		return;
	CHECK_Q("migrate: the outbox is one b-tree keyed by seq",
	        "SELECT count(*) FROM sqlite_master WHERE tbl_name = '_synclog_outbox'", "1");
	CHECK_Q("migrate: confirmed state is WITHOUT ROWID",
	        "SELECT sql LIKE '%WITHOUT ROWID%' FROM sqlite_master WHERE name = '_synclog_confirmed'", "1");
	CHECK_Q("migrate: rows and seqs kept", "SELECT seq, op_id FROM _synclog_outbox", "41|op-41");
	p = pending(st);
	report("migrate: the op is pending", p.n == 1 && strcmp(p.ids, "op-41") == 0, "n %d %s", p.n, p.ids);
	report("migrate: cursor and clock floor kept", sl_store_cursor(st) == 7 && sl_store_hlc(st) == 0x20000,
	       "cursor %llu hlc %llx", (unsigned long long) sl_store_cursor(st), (unsigned long long) sl_store_hlc(st));
	CHECK_RC("migrate: the op's change confirms it",
	         sl_store_apply_changes(st, change1(8, "op-41", "11111111-1111-4111-8111-111111111111", "c1",
	                                            "upsert", "{\"title\":\"mine\"}", "0000000000020000", 8)), SL_OK);
	CHECK_Q("migrate: confirmed, left the outbox", "SELECT (SELECT count(*) FROM _synclog_outbox) || (SELECT title FROM issues)", "0mine");
	CHECK_RC("migrate: a new op gets a seq above the old ones",
	         sl_store_put(st, "issues", "c2", "{\"title\":\"n\"}", NULL), SL_OK);
	CHECK_Q("migrate: its seq", "SELECT seq > 41 FROM _synclog_outbox", "1");
	sl_store_close(st);
}

/* ---------------------------------------------------------------- the JSON scanner (jscan.c) */

/*
 * jscan.c is a fast path that must never disagree with jansson: what it
 * accepts, jansson accepts with the same values (same types, same member
 * order); what it declines, jansson judges.  Each text below is copied into a
 * buffer of exactly its size, so that ASan sees any read past the NUL.
 */
typedef enum { ACCEPT, DECLINE } scan_want;

typedef struct scan_case {
	const char *name;
	const char *text;
	scan_want want;
	enum { MALFORMED, VALID, APPLIES } jansson; /* json_loads refuses it, accepts it; a frame the store applies */
} scan_case;

static const scan_case fields_cases[] = {
	{"plain", "{\"team\":\"t1\",\"title\":\"x\",\"prio\":3}", ACCEPT, VALID},
	{"empty object", "{}", ACCEPT, VALID},
	{"whitespace everywhere", " \t\r\n{ \"a\" : 1 ,\n\"b\"\t:\"x\" } \n", ACCEPT, VALID},
	{"true false null", "{\"a\":true,\"b\":false,\"c\":null}", ACCEPT, VALID},
	{"integers", "{\"a\":0,\"b\":-0,\"c\":-12,\"d\":999999999999999999,\"e\":-999999999999999999}", ACCEPT, VALID},
	{"reals", "{\"a\":1.5,\"b\":-0.25,\"c\":1e3,\"d\":2E-2,\"e\":0.0,\"f\":1.0e+2,\"g\":1e-400}", ACCEPT, VALID},
	{"simple escapes", "{\"a\":\"q\\\" b\\\\ s\\/ \\b\\f\\n\\r\\t\"}", ACCEPT, VALID},
	{"escaped key", "{\"t\\u0069tle\":\"x\"}", ACCEPT, VALID},
	{"\\u escapes", "{\"a\":\"\\u00e9\\u20AC\\u0041\"}", ACCEPT, VALID},
	{"surrogate pair", "{\"a\":\"\\ud83d\\ude00\"}", ACCEPT, VALID},
	{"non-ASCII UTF-8", "{\"t\xc3\xaftre\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf\"}", ACCEPT, VALID},
	{"duplicate keys, last wins", "{\"a\":1,\"b\":2,\"a\":3}", ACCEPT, VALID},
	{"empty key and value", "{\"\":\"\"}", ACCEPT, VALID},
	/* valid, but not the scanner's shape: jansson reads them */
	{"nested object", "{\"meta\":{\"a\":1}}", DECLINE, VALID},
	{"nested array", "{\"meta\":[1,2]}", DECLINE, VALID},
	{"deep nesting", "{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}", DECLINE, VALID},
	{"19-digit integer", "{\"a\":1234567890123456789}", DECLINE, VALID},
	{"top-level array", "[1]", DECLINE, VALID},
	/* malformed: declined, and jansson refuses them */
	{"empty text", "", DECLINE, MALFORMED},
	{"only spaces", "   ", DECLINE, MALFORMED},
	{"truncated after brace", "{", DECLINE, MALFORMED},
	{"truncated in key", "{\"ti", DECLINE, MALFORMED},
	{"truncated after key", "{\"a\"", DECLINE, MALFORMED},
	{"truncated after colon", "{\"a\":", DECLINE, MALFORMED},
	{"truncated in string", "{\"a\":\"xy", DECLINE, MALFORMED},
	{"truncated in escape", "{\"a\":\"x\\", DECLINE, MALFORMED},
	{"truncated in \\u", "{\"a\":\"\\u00", DECLINE, MALFORMED},
	{"truncated in literal", "{\"a\":tru", DECLINE, MALFORMED},
	{"truncated in number", "{\"a\":-", DECLINE, MALFORMED},
	{"truncated after value", "{\"a\":1", DECLINE, MALFORMED},
	{"truncated after comma", "{\"a\":1,", DECLINE, MALFORMED},
	{"trailing comma", "{\"a\":1,}", DECLINE, MALFORMED},
	{"missing colon", "{\"a\" 1}", DECLINE, MALFORMED},
	{"missing comma", "{\"a\":1 \"b\":2}", DECLINE, MALFORMED},
	{"unquoted key", "{a:1}", DECLINE, MALFORMED},
	{"single quotes", "{'a':1}", DECLINE, MALFORMED},
	{"trailing garbage", "{\"a\":1} x", DECLINE, MALFORMED},
	{"two objects", "{}{}", DECLINE, MALFORMED},
	{"leading zero", "{\"a\":01}", DECLINE, MALFORMED},
	{"bare dot", "{\"a\":1.}", DECLINE, MALFORMED},
	{"dot first", "{\"a\":.5}", DECLINE, MALFORMED},
	{"empty exponent", "{\"a\":1e}", DECLINE, MALFORMED},
	{"plus sign", "{\"a\":+1}", DECLINE, MALFORMED},
	{"hex number", "{\"a\":0x10}", DECLINE, MALFORMED},
	{"NaN", "{\"a\":NaN}", DECLINE, MALFORMED},
	{"real overflow", "{\"a\":1e400}", DECLINE, MALFORMED},
	{"integer overflow", "{\"a\":99999999999999999999}", DECLINE, MALFORMED},
	{"literal with suffix", "{\"a\":truex}", DECLINE, MALFORMED},
	{"capitalised literal", "{\"a\":True}", DECLINE, MALFORMED},
	{"control character in string", "{\"a\":\"x\ty\"}", DECLINE, MALFORMED},
	{"newline in string", "{\"a\":\"x\ny\"}", DECLINE, MALFORMED},
	{"bad escape", "{\"a\":\"\\x41\"}", DECLINE, MALFORMED},
	{"\\u0000", "{\"a\":\"x\\u0000y\"}", DECLINE, MALFORMED},
	{"bad hex in \\u", "{\"a\":\"\\u00g1\"}", DECLINE, MALFORMED},
	{"lone high surrogate", "{\"a\":\"\\ud83dx\"}", DECLINE, MALFORMED},
	{"high surrogate then non-low", "{\"a\":\"\\ud83d\\u0041\"}", DECLINE, MALFORMED},
	{"lone low surrogate", "{\"a\":\"\\ude00\"}", DECLINE, MALFORMED},
	{"invalid UTF-8: lone continuation", "{\"a\":\"\x80\"}", DECLINE, MALFORMED},
	{"invalid UTF-8: overlong", "{\"a\":\"\xc0\xaf\"}", DECLINE, MALFORMED},
	{"invalid UTF-8: overlong 3 bytes", "{\"a\":\"\xe0\x80\xaf\"}", DECLINE, MALFORMED},
	{"invalid UTF-8: surrogate", "{\"a\":\"\xed\xa0\x80\"}", DECLINE, MALFORMED},
	{"invalid UTF-8: above U+10FFFF", "{\"a\":\"\xf4\x90\x80\x80\"}", DECLINE, MALFORMED},
	{"invalid UTF-8: truncated sequence", "{\"a\":\"\xe2\x82\"}", DECLINE, MALFORMED},
	{"invalid UTF-8: truncated at end", "{\"a\":\"\xe2", DECLINE, MALFORMED},
	{"invalid UTF-8: 0xff", "{\"a\":\"\xff\"}", DECLINE, MALFORMED},
	{"invalid UTF-8 in key", "{\"\xc3\":1}", DECLINE, MALFORMED},
	{"non-ASCII outside strings", "{\"a\":1\xc2\xa0}", DECLINE, MALFORMED},
	{"deep nesting, unclosed", "{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", DECLINE, MALFORMED},
};

/* A copy of text in a buffer of exactly its size (for ASan). */
static char *
exact_copy(const char *text, size_t n)
{
	char *c = malloc(n + 1);

	if (c == NULL)
		exit(2);
	memcpy(c, text, n);
	c[n] = '\0';
	return c;
}

/* Whether the scanner's object and jansson's agree: values, types and member order. */
static bool
same_object(const json_t *fast, const json_t *ref)
{
	char *a, *b;
	bool same;

	if (!json_is_object(ref) || !json_equal(fast, ref))
		return false;
	a = json_dumps(fast, JSON_COMPACT | JSON_PRESERVE_ORDER);
	b = json_dumps(ref, JSON_COMPACT | JSON_PRESERVE_ORDER);
	same = a && b && strcmp(a, b) == 0;
	free(a);
	free(b);
	return same;
}

/*
 * Checks the scanner on one fields text: when it accepts, jansson does with
 * the same object.  Returns 1 when it accepted, 0 when it declined, -1 on
 * disagreement.
 */
/* The object sls_scan_flat read, as jansson values (a new reference). */
static json_t *
flat_json(const sls_flat *f)
{
	json_t *o = json_object();

	for (size_t i = 0; i < f->n; i++) {
		const sls_scalar *v = &f->val[i];
		json_t *j = v->type == SLS_STRING ? json_stringn(v->str, v->len)
		            : v->type == SLS_INT  ? json_integer(v->i)
		            : v->type == SLS_REAL ? json_real(v->d)
		            : v->type == SLS_TRUE ? json_true()
		            : v->type == SLS_FALSE ? json_false() : json_null();

		json_object_set_new(o, f->name[i], j);
	}
	return o;
}

/*
 * Checks the scanner on one fields text (sls_scan_fields and sls_scan_flat):
 * when it accepts, jansson does with the same object.  Returns 1 when
 * sls_scan_fields accepted, 0 when it declined, -1 on any disagreement.
 */
static int
fields_agree(const char *text, size_t n)
{
	char *c = exact_copy(text, n);
	json_t *fast = sls_scan_fields(c), *ref = json_loads(c, 0, NULL);
	int r = fast == NULL ? 0 : same_object(fast, ref) ? 1 : -1;
	sls_flat f;

	if (sls_scan_flat(c, &f)) {
		json_t *fj = flat_json(&f);

		/* The flat reading declines duplicates and long objects, nothing else. */
		if (fast == NULL || !same_object(fj, ref) || json_object_size(ref) != f.n)
			r = -1;
		json_decref(fj);
		sls_flat_free(&f);
	}
	json_decref(fast);
	json_decref(ref);
	free(c);
	return r;
}

/* As fields_agree, for a changes frame: same changes as jansson's tree holds, same cursor. */
static int
frame_agree(const char *text, size_t n)
{
	char *c = exact_copy(text, n);
	json_t *ref = json_loads(c, 0, NULL), *changes = json_object_get(ref, "changes");
	sls_frame f;
	int r = 1;

	if (!sls_scan_changes(c, &f))
		r = 0;
	else if (!json_is_array(changes) || json_array_size(changes) != f.n ||
	         !json_is_integer(json_object_get(ref, "cursor")) ||
	         (uint64_t) json_integer_value(json_object_get(ref, "cursor")) != f.cursor)
		r = -1;
	else {
		for (size_t i = 0; i < f.n && r == 1; i++) {
			const json_t *ch = json_array_get(changes, i), *fl = json_object_get(ch, "fields");
			const json_t *op = json_object_get(ch, "op_id");
			const sls_change *v = &f.v[i];
			json_t *vf = NULL;

			if (sls_change_fields(&f, v, &vf) != SL_OK)
				exit(2);
			if ((uint64_t) json_integer_value(json_object_get(ch, "seq")) != v->seq ||
			    strcmp(json_string_value(json_object_get(ch, "table")), v->table) != 0 ||
			    strcmp(json_string_value(json_object_get(ch, "row")), v->row) != 0 ||
			    strcmp(json_string_value(json_object_get(ch, "hlc")), v->hlc) != 0 ||
			    strcmp(json_string_value(json_object_get(ch, "client_id")), v->client_id) != 0 ||
			    strcmp(json_string_value(json_object_get(ch, "kind")), v->is_delete ? "delete" : "upsert") != 0 ||
			    (json_is_string(op) ? v->op_id == NULL || strcmp(json_string_value(op), v->op_id) != 0
			                        : v->op_id != NULL) ||
			    (json_is_object(fl) ? vf == NULL || !same_object(vf, fl) : vf != NULL))
				r = -1;
			json_decref(vf);
		}
	}
	if (r != 0)
		sls_frame_free(&f);
	json_decref(ref);
	free(c);
	return r;
}

#define HLC_A "0000018c00000000"

static const scan_case frame_cases[] = {
	{"one change", "{\"type\":\"changes\",\"changes\":[{\"seq\":1,\"op_id\":\"o1\",\"client_id\":\"c\",\"table\":\"issues\","
	 "\"row\":\"r1\",\"group\":\"t1\",\"kind\":\"upsert\",\"fields\":{\"title\":\"x\"},\"hlc\":\"" HLC_A "\"}],\"cursor\":1}",
	 ACCEPT, VALID},
	{"no changes", "{\"changes\":[],\"cursor\":0}", ACCEPT, VALID},
	{"members in any order, spaces",
	 " { \"cursor\" : 7 , \"changes\" : [ { \"hlc\" : \"" HLC_A "\" , \"kind\" : \"delete\" , \"row\" : \"r\" ,"
	 " \"table\" : \"issues\" , \"client_id\" : \"c\" , \"seq\" : 7 } ] } ", ACCEPT, VALID},
	{"op_id null, fields null, group integer",
	 "{\"changes\":[{\"seq\":1,\"op_id\":null,\"client_id\":\"c\",\"table\":\"issues\",\"row\":\"r\",\"group\":5,"
	 "\"kind\":\"upsert\",\"fields\":null,\"hlc\":\"" HLC_A "\"}],\"cursor\":1}", ACCEPT, VALID},
	{"escaped and non-ASCII strings",
	 "{\"changes\":[{\"seq\":1,\"client_id\":\"c\\u00e9\",\"table\":\"iss\\u0075es\",\"row\":\"r\\\"\xe2\x82\xac\","
	 "\"kind\":\"upsert\",\"fields\":{\"title\":\"a\\nb\"},\"hlc\":\"" HLC_A "\"}],\"cursor\":1}", ACCEPT, VALID},
	{"unknown scalar members", "{\"x\":true,\"changes\":[{\"y\":1.5,\"seq\":1,\"client_id\":\"c\",\"table\":\"t\","
	 "\"row\":\"r\",\"kind\":\"delete\",\"hlc\":\"" HLC_A "\"}],\"cursor\":1,\"z\":null}", ACCEPT, VALID},
	/* valid JSON the scanner leaves to jansson */
	{"nested fields", "{\"changes\":[{\"seq\":1,\"client_id\":\"c\",\"table\":\"t\",\"row\":\"r\",\"kind\":\"upsert\","
	 "\"fields\":{\"meta\":{\"a\":[1]}},\"hlc\":\"" HLC_A "\"}],\"cursor\":1}", DECLINE, APPLIES},
	{"nested unknown member", "{\"changes\":[],\"cursor\":0,\"extra\":{\"a\":1}}", DECLINE, APPLIES},
	{"fields an array", "{\"changes\":[{\"seq\":1,\"client_id\":\"c\",\"table\":\"t\",\"row\":\"r\",\"kind\":\"upsert\","
	 "\"fields\":[1],\"hlc\":\"" HLC_A "\"}],\"cursor\":1}", DECLINE, APPLIES},
	{"bad kind", "{\"changes\":[{\"seq\":1,\"client_id\":\"c\",\"table\":\"t\",\"row\":\"r\",\"kind\":\"merge\","
	 "\"hlc\":\"" HLC_A "\"}],\"cursor\":1}", DECLINE, VALID},
	{"bad hlc", "{\"changes\":[{\"seq\":1,\"client_id\":\"c\",\"table\":\"t\",\"row\":\"r\",\"kind\":\"delete\","
	 "\"hlc\":\"xyz\"}],\"cursor\":1}", DECLINE, VALID},
	{"negative seq", "{\"changes\":[{\"seq\":-1,\"client_id\":\"c\",\"table\":\"t\",\"row\":\"r\",\"kind\":\"delete\","
	 "\"hlc\":\"" HLC_A "\"}],\"cursor\":1}", DECLINE, VALID},
	{"real seq", "{\"changes\":[{\"seq\":1.0,\"client_id\":\"c\",\"table\":\"t\",\"row\":\"r\",\"kind\":\"delete\","
	 "\"hlc\":\"" HLC_A "\"}],\"cursor\":1}", DECLINE, VALID},
	{"missing row", "{\"changes\":[{\"seq\":1,\"client_id\":\"c\",\"table\":\"t\",\"kind\":\"delete\","
	 "\"hlc\":\"" HLC_A "\"}],\"cursor\":1}", DECLINE, VALID},
	{"empty client_id", "{\"changes\":[{\"seq\":1,\"client_id\":\"\",\"table\":\"t\",\"row\":\"r\",\"kind\":\"delete\","
	 "\"hlc\":\"" HLC_A "\"}],\"cursor\":1}", DECLINE, VALID},
	{"no cursor", "{\"changes\":[]}", DECLINE, VALID},
	{"string cursor", "{\"changes\":[],\"cursor\":\"1\"}", DECLINE, VALID},
	{"changes not an array", "{\"changes\":{},\"cursor\":1}", DECLINE, VALID},
	{"a change not an object", "{\"changes\":[1],\"cursor\":1}", DECLINE, VALID},
	{"deeply nested", "{\"changes\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]],\"cursor\":1}", DECLINE, VALID},
	/* malformed */
	{"truncated frame", "{\"changes\":[{\"seq\":1,\"client_id\":\"c\",\"table\":\"t\",\"row\":\"r\",\"kind\":\"de", DECLINE, MALFORMED},
	{"truncated after the list", "{\"changes\":[],", DECLINE, MALFORMED},
	{"trailing comma in list", "{\"changes\":[{\"seq\":1,\"client_id\":\"c\",\"table\":\"t\",\"row\":\"r\",\"kind\":\"delete\","
	 "\"hlc\":\"" HLC_A "\"},],\"cursor\":1}", DECLINE, MALFORMED},
	{"invalid UTF-8 in row", "{\"changes\":[{\"seq\":1,\"client_id\":\"c\",\"table\":\"t\",\"row\":\"\xc3\x28\",\"kind\":\"delete\","
	 "\"hlc\":\"" HLC_A "\"}],\"cursor\":1}", DECLINE, MALFORMED},
	{"\\u0000 in table", "{\"changes\":[{\"seq\":1,\"client_id\":\"c\",\"table\":\"t\\u0000x\",\"row\":\"r\",\"kind\":\"delete\","
	 "\"hlc\":\"" HLC_A "\"}],\"cursor\":1}", DECLINE, MALFORMED},
	{"garbage after frame", "{\"changes\":[],\"cursor\":1}]", DECLINE, MALFORMED},
	{"not JSON", "changes", DECLINE, MALFORMED},
};

/* A few bytes mutations may insert: JSON's punctuation, and bytes outside ASCII. */
static const char mut_bytes[] = "{}[]:,\"\\ u0aeE.-+tfn\x80\xc3\xe2\xf0\xff\x01";

/*
 * Mutates a valid text at random (replace, insert, delete, truncate) many
 * times and checks the scanner against jansson on every mutant.  Returns the
 * number of disagreements; *accepted counts mutants the scanner read.
 */
static int
mutate_agree(const char *seed, bool frame, int rounds, int *accepted)
{
	size_t n0 = strlen(seed);
	char *buf = malloc(n0 + 8);
	int bad = 0;

	if (buf == NULL)
		exit(2);
	for (int r = 0; r < rounds; r++) {
		size_t n = n0;
		int k = 1 + rand() % 3;

		memcpy(buf, seed, n0);
		while (k-- > 0 && n > 0) {
			size_t at = (size_t) rand() % n;
			char b = mut_bytes[rand() % (int) (sizeof(mut_bytes) - 1)];

			switch (rand() % 4) {
			case 0: buf[at] = b; break;
			case 1:
				if (n < n0 + 7) {
					memmove(buf + at + 1, buf + at, n - at);
					buf[at] = b;
					n++;
				}
				break;
			case 2:
				memmove(buf + at, buf + at + 1, n - at - 1);
				n--;
				break;
			default: n = at; break;
			}
		}
		/* A NUL ends the text: the scanner and jansson both stop there. */
		n = strnlen(buf, n);
		{
			int a = frame ? frame_agree(buf, n) : fields_agree(buf, n);

			if (a < 0)
				bad++;
			else
				*accepted += a;
		}
	}
	free(buf);
	return bad;
}

static void
test_scanner(void)
{
	char name[160];
	int bad, accepted = 0;
	sl_store *st;

	for (size_t i = 0; i < sizeof(fields_cases) / sizeof(fields_cases[0]); i++) {
		const scan_case *c = &fields_cases[i];
		json_t *ref = json_loads(c->text, 0, NULL);
		int a = fields_agree(c->text, strlen(c->text));

		snprintf(name, sizeof(name), "scanner, fields: %s", c->name);
		report(name, a == (c->want == ACCEPT ? 1 : 0) && (json_is_object(ref) || json_is_array(ref)) == (c->jansson != MALFORMED),
		       "scanner %d (want %d), jansson %s", a, c->want == ACCEPT, ref ? "accepts" : "refuses");
		json_decref(ref);
		if (c->want == ACCEPT) {
			sls_flat f;
			bool flat = sls_scan_flat(c->text, &f);

			/* The flat reading (no jansson values) takes the same, but duplicate names. */
			snprintf(name, sizeof(name), "scanner, flat fields: %s", c->name);
			report(name, flat == (strstr(c->name, "duplicate") == NULL), "flat %d", flat);
			if (flat)
				sls_flat_free(&f);
		}
	}
	for (size_t i = 0; i < sizeof(frame_cases) / sizeof(frame_cases[0]); i++) {
		const scan_case *c = &frame_cases[i];
		json_t *ref = json_loads(c->text, 0, NULL);
		int a = frame_agree(c->text, strlen(c->text));

		snprintf(name, sizeof(name), "scanner, changes frame: %s", c->name);
		report(name, a == (c->want == ACCEPT ? 1 : 0) && (ref != NULL) == (c->jansson != MALFORMED),
		       "scanner %d (want %d), jansson %s", a, c->want == ACCEPT, ref ? "accepts" : "refuses");
		json_decref(ref);
	}
	/* Every prefix of a valid text: a truncated text is never accepted. */
	bad = 0;
	for (size_t i = 0; i < 2; i++) {
		const char *t = i == 0 ? fields_cases[10].text : frame_cases[4].text;

		for (size_t n = 0; n < strlen(t); n++) {
			if ((i == 0 ? fields_agree(t, n) : frame_agree(t, n)) != 0)
				bad++;
		}
	}
	report("scanner: no proper prefix of a valid text is accepted", bad == 0, "%d accepted", bad);
	srand(12345);
	bad = mutate_agree(fields_cases[10].text, false, 20000, &accepted) +
	      mutate_agree(fields_cases[5].text, false, 20000, &accepted) +
	      mutate_agree(frame_cases[0].text, true, 20000, &accepted) +
	      mutate_agree(frame_cases[4].text, true, 20000, &accepted);
	report("scanner: 80,000 random mutants, never a disagreement with jansson", bad == 0 && accepted > 0,
	       "%d disagreements, %d accepted", bad, accepted);
	printf("client-store: the scanner read %d of 80000 mutants, jansson the rest\n", accepted);

	/* The store's JSON writer (sls_sb_json) writes what json_dumps writes. */
	{
		static const char *const texts[] = {
			"{\"a\":1,\"b\\\"q\":\"x\\u0001y\\n\",\"c\\\\\":[true,false,null,-5,1.5],\"\\u00e9\\t\":{\"d\":{}}}",
			"{\"\":\"\",\"k\":\"\\ud83d\\ude00 \\u001f \\/\"}",
		};

		bad = 0;
		for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
			json_t *v = json_loads(texts[i], 0, NULL);
			char *want = v ? json_dumps(v, JSON_COMPACT) : NULL;
			sbuf b = {0};

			if (v != NULL)
				sls_sb_json(&b, v);
			if (want == NULL || b.p == NULL || strcmp(want, b.p) != 0)
				bad++;
			free(want);
			free(b.p);
			json_decref(v);
		}
		report("sls_sb_json writes as json_dumps (escaped keys and strings)", bad == 0, "%d differ", bad);
	}

	/* Through the store: a malformed text is SL_EINVAL and changes nothing. */
	st = fresh("scanner.db");
	for (size_t i = 0; i < sizeof(fields_cases) / sizeof(fields_cases[0]); i++) {
		const scan_case *c = &fields_cases[i];
		int rc;

		if (c->jansson != MALFORMED)
			continue;
		rc = sl_store_put(st, "issues", "s1", c->text, NULL);
		snprintf(name, sizeof(name), "put with malformed fields is SL_EINVAL: %s", c->name);
		report(name, rc == SL_EINVAL, "rc %d", rc);
	}
	CHECK_Q("malformed puts wrote nothing", "SELECT count(*) FROM _synclog_outbox", "0");
	CHECK_RC("put with escaped, non-ASCII fields",
	         sl_store_put(st, "issues", "s2", "{\"t\\u0069tle\":\"caf\xc3\xa9 \\u20ac \\ud83d\\ude00\",\"prio\":-3,\"est\":1.5e1,\"done\":true}", NULL),
	         SL_OK);
	CHECK_Q("its visible row", "SELECT title || '|' || prio || '|' || est || '|' || done FROM issues WHERE id = 's2'",
	        "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80|-3|15.0|1");
	for (size_t i = 0; i < sizeof(frame_cases) / sizeof(frame_cases[0]); i++) {
		const scan_case *c = &frame_cases[i];
		uint64_t before = sl_store_cursor(st);
		int rc;

		if (c->want == ACCEPT)
			continue;
		rc = sl_store_apply_changes(st, c->text);
		snprintf(name, sizeof(name), "a frame the scanner declines is jansson's to judge: %s", c->name);
		if (c->jansson == APPLIES)
			report(name, rc == SL_OK, "rc %d", rc);
		else
			report(name, rc == SL_EINVAL && sl_store_cursor(st) == before, "rc %d, cursor %llu",
			       rc, (unsigned long long) sl_store_cursor(st));
	}
	/* Puts on a known table read without jansson (sls_scan_flat), and the cases it leaves to jansson. */
	CHECK_RC("flat put: an unknown column is refused",
	         sl_store_put(st, "issues", "f1", "{\"title\":\"x\",\"nope\":1}", NULL), SL_EINVAL);
	report("flat put: the error names the column", strstr(sl_store_errmsg(st), "\"nope\"") != NULL,
	       "errmsg \"%s\"", sl_store_errmsg(st));
	CHECK_RC("put naming the pk (jansson's path)",
	         sl_store_put(st, "issues", "f1", "{\"id\":\"other\",\"title\":\"t\"}", NULL), SL_OK);
	CHECK_Q("its op's fields leave the pk out", "SELECT fields FROM _synclog_outbox WHERE row = 'f1'",
	        "{\"title\":\"t\"}");
	CHECK_Q("its row is the row, not the pk given", "SELECT id || '|' || title FROM issues WHERE id = 'f1'", "f1|t");
	CHECK_RC("flat put: the op's fields kept as written",
	         sl_store_put(st, "issues", "f2", " { \"prio\" : 1.50 , \"title\":null } ", NULL), SL_OK);
	CHECK_Q("flat put: its text", "SELECT fields FROM _synclog_outbox WHERE row = 'f2'",
	        " { \"prio\" : 1.50 , \"title\":null } ");
	CHECK_Q("flat put: its row", "SELECT typeof(prio) || '|' || prio || '|' || typeof(title) FROM issues WHERE id = 'f2'",
	        "real|1.5|null"); /* a real, as jansson's path binds it */
	CHECK_RC("a frame with escaped, non-ASCII strings",
	         sl_store_apply_changes(st, "{\"changes\":[{\"seq\":5,\"client_id\":\"other\",\"table\":\"iss\\u0075es\","
	                                    "\"row\":\"r\\\"\xe2\x82\xac\",\"kind\":\"upsert\",\"fields\":{\"title\":\"a\\nb\","
	                                    "\"prio\":2},\"hlc\":\"" HLC_A "\"}],\"cursor\":5}"),
	         SL_OK);
	CHECK_Q("its row", "SELECT title || '|' || prio FROM issues WHERE id = 'r\"\xe2\x82\xac'", "a\nb|2");
	sl_store_close(st);
}

/* Counts calls and stops after the first. */
static int
stop_cb(void *ctx, const sl_store_op *op)
{
	(void) op;
	++*(int *) ctx;
	return 1;
}

static void
test_edges(void)
{
	sl_store *st = fresh("edges.db"), *bad = (sl_store *) 1;
	char id[SL_UUID_LEN + 1];
	int calls = 0;
	FILE *f;

	sl_store_apply_changes(st, change1(1, "o1", "other", "d1", "upsert", "{\"team\":\"t1\",\"title\":\"d\"}", "0000000000010000", 1));
	sl_store_apply_changes(st, change1(2, "o2", "other", "d1", "delete", "null", "0000000000010001", 2));
	CHECK_RC("a put on a deleted row is kept for the server to refuse",
	         sl_store_put(st, "issues", "d1", "{\"title\":\"again\"}", id), SL_OK);
	CHECK_Q("a put on a deleted row does not bring it back", "SELECT count(*) FROM issues WHERE id = 'd1'", "0");
	CHECK_Q("a put on a deleted row is in the outbox", "SELECT count(*) FROM _synclog_outbox WHERE row = 'd1'", "1");
	CHECK_RC("a change on a deleted row changes nothing",
	         sl_store_apply_changes(st, change1(3, "o3", "other", "d1", "upsert", "{\"title\":\"zombie\"}", "0000000000020000", 3)), SL_OK);
	CHECK_Q("the tombstone absorbs it", "SELECT deleted FROM _synclog_confirmed WHERE row = 'd1'", "1");
	sl_store_put(st, "issues", "e1", "{\"team\":\"t1\"}", NULL);
	sl_store_pending(st, stop_cb, &calls);
	report("a pending callback that returns non-zero stops the listing", calls == 1, "calls %d", calls);
	sl_store_put(st, "nope", "x", "{}", NULL);
	report("a refused call says why", strstr(sl_store_errmsg(st), "nope") != NULL, "errmsg \"%s\"",
	       sl_store_errmsg(st));
	sl_store_put(st, "issues", "e2", "{}", NULL);
	report("a successful call clears the error", sl_store_errmsg(st)[0] == '\0', "errmsg \"%s\"",
	       sl_store_errmsg(st));
	sl_store_close(st);

	snprintf(path, sizeof(path), "%s/not-sqlite.db", dir);
	if ((f = fopen(path, "w")) == NULL)
		exit(2);
	fputs("this is not an SQLite database, not even close; padding padding padding padding\n", f);
	fclose(f);
	report("opening a file that is not SQLite fails with SL_EDB",
	       sl_store_open(path, &bad) == SL_EDB && bad == NULL, "store %p", (void *) bad);
	snprintf(path, sizeof(path), "%s/no-such-dir/x.db", dir);
	bad = (sl_store *) 1;
	report("opening in a missing directory fails with SL_EDB",
	       sl_store_open(path, &bad) == SL_EDB && bad == NULL, "store %p", (void *) bad);
}

/*
 * The child of test_kill: puts rows and confirms every other one with a
 * change of its own op, forever, telling the parent on fd after each call
 * returns SL_OK: "P <op_id> <row> <seq>" or "C <op_id> <row> <seq>".
 */
static void
kill_child(int fd)
{
	sl_store *st = NULL;
	char line[256], id[SL_UUID_LEN + 1], row[32], h[SL_HLC_TEXT_LEN + 1], me[SL_UUID_LEN + 1];

	if (sl_store_open(path, &st) != SL_OK)
		_exit(3);
	snprintf(me, sizeof(me), "%s", sl_store_client_id(st));
	for (unsigned i = 0;; i++) {
		uint64_t seq = sl_store_cursor(st) + 1;

		snprintf(row, sizeof(row), "k%d-%u", (int) getpid(), i);
		if (sl_store_put(st, "issues", row, "{\"team\":\"t1\",\"title\":\"k\"}", id) != SL_OK)
			_exit(4);
		snprintf(line, sizeof(line), "P %s %s 0\n", id, row);
		if (write(fd, line, strlen(line)) < 0)
			_exit(5);
		if (i % 2 == 1)
			continue;
		sl_hlc_format(sl_store_hlc(st), h);
		if (sl_store_apply_changes(st, change1((unsigned) seq, id, me, row, "upsert",
		                                       "{\"team\":\"t1\",\"title\":\"k\"}", h,
		                                       (unsigned) seq)) != SL_OK)
			_exit(6);
		snprintf(line, sizeof(line), "C %s %s %llu\n", id, row, (unsigned long long) seq);
		if (write(fd, line, strlen(line)) < 0)
			_exit(5);
	}
}

static void
test_kill(void)
{
	sl_store *st = fresh("kill.db");
	bool all_ok = true, ran = false;
	char why[512] = "";
	int checked = 0;

	sl_store_close(st);
	srand((unsigned) time(NULL) ^ (unsigned) getpid());
	for (int round = 0; round < 8; round++) {
		int fds[2], status;
		pid_t pid;
		char buf[1 << 16];
		size_t len = 0;
		ssize_t n;
		uint64_t max_seq = 0;
		struct timespec ts = {0, (long) (2 + rand() % 40) * 1000000L};

		if (pipe(fds) != 0 || (pid = fork()) < 0) {
			perror("test_store: pipe/fork");
			exit(2);
		}
		if (pid == 0) {
			close(fds[0]);
			kill_child(fds[1]);
		}
		close(fds[1]);
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		while (len < sizeof(buf) - 1 && (n = read(fds[0], buf + len, sizeof(buf) - 1 - len)) > 0)
			len += (size_t) n;
		close(fds[0]);
		buf[len] = '\0';
		if (!WIFSIGNALED(status)) {
			snprintf(why, sizeof(why), "round %d: the child exited with %d", round, WEXITSTATUS(status));
			all_ok = false;
			break;
		}
		/* Every complete line the child wrote is a write it was told succeeded. */
		for (char *p = buf, *nl; (nl = strchr(p, '\n')) != NULL; p = nl + 1) {
			char kind, id[64], row[64], sql[256];
			unsigned long long seq;
			const char *in_outbox, *visible;

			*nl = '\0';
			if (sscanf(p, "%c %63s %63s %llu", &kind, id, row, &seq) != 4)
				continue;
			ran = true;
			checked++;
			snprintf(sql, sizeof(sql), "SELECT count(*) FROM _synclog_outbox WHERE op_id = '%s'", id);
			in_outbox = q(sql);
			if (kind == 'P' && strcmp(in_outbox, "1") != 0) {
				/* Unless its change was applied (perhaps just before the kill, unreported). */
				snprintf(sql, sizeof(sql), "SELECT count(*) FROM _synclog_confirmed WHERE row = '%s'", row);
				if (strcmp(q(sql), "1") != 0) {
					snprintf(why, sizeof(why), "round %d: put %s is neither pending nor confirmed",
					         round, id);
					all_ok = false;
				}
			}
			if (kind == 'C' && strcmp(in_outbox, "0") != 0) {
				snprintf(why, sizeof(why), "round %d: confirmed op %s is still in the outbox", round, id);
				all_ok = false;
			}
			if (kind == 'C' && seq > max_seq)
				max_seq = seq;
			snprintf(sql, sizeof(sql), "SELECT count(*) FROM issues WHERE id = '%s'", row);
			visible = q(sql);
			if (strcmp(visible, "1") != 0) {
				snprintf(why, sizeof(why), "round %d: row %s is not visible", round, row);
				all_ok = false;
			}
		}
		if (sl_store_open(path, &st) != SL_OK) {
			snprintf(why, sizeof(why), "round %d: reopen failed", round);
			all_ok = false;
			break;
		}
		if (sl_store_cursor(st) < max_seq) {
			snprintf(why, sizeof(why), "round %d: cursor %llu behind a confirmed seq %llu", round,
			         (unsigned long long) sl_store_cursor(st), (unsigned long long) max_seq);
			all_ok = false;
		}
		sl_store_close(st);
	}
	printf("client-store: kill safety checked %d reported writes over 8 kills\n", checked);
	CHECK_Q("after kills, no op is both pending and confirmed",
	        "SELECT count(*) FROM _synclog_outbox o JOIN _synclog_confirmed c ON c.row = o.row", "0");
	CHECK_Q("after kills, every pending op's row is visible",
	        "SELECT count(*) FROM _synclog_outbox o LEFT JOIN issues i ON i.id = o.row WHERE i.id IS NULL", "0");
	report("SIGKILL at random points loses no write that returned SL_OK", all_ok && ran, "%s",
	       ran ? why : "the child wrote nothing");
}

int
main(void)
{
	const char *tmp = getenv("TMPDIR");

	setvbuf(stdout, NULL, _IOLBF, 0);
	snprintf(dir, sizeof(dir), "%s/synclog-test-store.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 2;
	}
	snprintf(path, sizeof(path), "%s/store.db", dir);
	test_open_and_writes();
	test_changes_acks();
	test_snapshot();
	test_hostile();
	test_provisional();
	test_model();
	test_apply_mixed();
	test_two_handles();
	test_migrate();
	test_scanner();
	test_edges();
	test_kill();
	{
		char cmd[300];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "test_store: could not remove %s\n", dir);
	}
	printf("client-store: %d passed, %d failed\n", n_pass, n_fail);
	return n_fail > 0 ? 1 : 0;
}

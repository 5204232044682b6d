/*
 * tests/gateway/test_db.c: tests of gateway/db.c, the asynchronous libpq layer,
 * against a running cluster.
 *
 * Built by `make -C gateway test-db-bin` with ASan and UBSan and run by
 * tests/suites/11-gateway-db.sh, which creates the database (with the synclog
 * extension) and passes its name as argv[1]; libpq's PGHOST/PGPORT/PGUSER
 * name the cluster, and `psql` (on PATH, same environment) is used for what must
 * come from another session (NOTIFY, pg_terminate_backend).  A poll() loop
 * stands in for the gateway's lws loop; every wait is bounded.  Prints one line
 * per case, "PASS: db: <name>" or "FAIL: db: <name> (<why>)", and exits 1 if
 * any case failed.  Cases, in order (each builds on the previous connection):
 * bad conninfo refused, connect through a multi-host conninfo whose first host
 * refuses, synclog.cursor(), 100 queued queries answered in order, a parameter
 * with quotes, backslashes and non-ASCII echoed unchanged, a syntax error
 * delivered as an error result with the queue going on, notifications from the
 * layer and from psql, then the backend terminated from psql: the in-flight and
 * queued queries fail with server_unavailable, the layer refuses queries while
 * disconnected, reconnects by itself and calls on_connected again, LISTENs
 * again, and answers queries; finally sl_db_free fails what is still queued.
 */
#include "db.h"

#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int n_pass, n_fail;
static const char *dbname;

/* Prints the PASS/FAIL line of one case; why is a printf format, used on FAIL. */
static void report(const char *name, bool ok, const char *why, ...)
	__attribute__((format(printf, 3, 4)));

static void
report(const char *name, bool ok, const char *why, ...)
{
	if (ok) {
		n_pass++;
		printf("PASS: db: %s\n", name);
	} else {
		n_fail++;
		printf("FAIL: db: %s (", name);
		va_list ap;
		va_start(ap, why);
		vprintf(why, ap);
		va_end(ap);
		printf(")\n");
	}
	fflush(stdout);
}

static int64_t
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* What the callbacks saw. */
static int n_connected;
static int n_logs;
static char last_channel[64], last_payload[256];
static int n_notifies;

static void
on_connected(void *user)
{
	(void) user;
	n_connected++;
}

static void
on_notify(void *user, const char *channel, const char *payload)
{
	(void) user;
	snprintf(last_channel, sizeof last_channel, "%s", channel);
	snprintf(last_payload, sizeof last_payload, "%s", payload);
	n_notifies++;
}

static void
on_log(void *user, const char *line)
{
	(void) user;
	n_logs++;
	printf("# log: %s\n", line);
}

/* One query's answer, recorded by the result callback. */
typedef struct answer {
	bool done;
	int order;               /* the how-many-th answer it was */
	ExecStatusType status;   /* of res, when res */
	bool had_res;
	char error[64];          /* the error string, when no res */
	char value[256];         /* first column of first row, or SQLSTATE on error */
	bool connected_at_call;  /* sl_db_connected() during the callback */
	int requery;             /* sl_db_query() from the callback, when asked (-2: not asked) */
} answer;

static int n_answers;
static sl_db *the_db;
static bool requery_in_callback;

static void
noop_result(void *arg, PGresult *res, const char *error)
{
	(void) arg;
	(void) res;
	(void) error;
}

static void
on_result(void *arg, PGresult *res, const char *error)
{
	answer *a = arg;
	a->done = true;
	a->order = n_answers++;
	a->had_res = res != NULL;
	a->connected_at_call = sl_db_connected(the_db);
	a->requery = -2;
	if (res) {
		a->status = PQresultStatus(res);
		if (a->status == PGRES_TUPLES_OK && PQntuples(res) > 0 && PQnfields(res) > 0)
			snprintf(a->value, sizeof a->value, "%s", PQgetvalue(res, 0, 0));
		else if (a->status == PGRES_FATAL_ERROR) {
			const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
			snprintf(a->value, sizeof a->value, "%s", st ? st : "");
		}
	} else {
		snprintf(a->error, sizeof a->error, "%s", error ? error : "(null)");
	}
	if (requery_in_callback)
		a->requery = sl_db_query(the_db, "SELECT 1", 0, NULL, noop_result, NULL);
}

/* Drives db with poll() until *flag becomes true or limit_ms passes. */
static bool
run_until(sl_db *db, bool (*cond)(void *), void *carg, int64_t limit_ms)
{
	int64_t end = now_ms() + limit_ms;
	for (;;) {
		if (cond && cond(carg))
			return true;
		int64_t now = now_ms();
		if (now >= end)
			return cond == NULL;
		int64_t wait = end - now;
		int64_t t = sl_db_next_timeout_ms(db, now);
		if (t >= 0 && t < wait)
			wait = t;
		if (wait > 50)
			wait = 50;
		struct pollfd pfd = {.fd = sl_db_fd(db), .events = sl_db_events(db)};
		short revents = 0;
		if (pfd.fd >= 0) {
			if (poll(&pfd, 1, (int) wait) > 0)
				revents = pfd.revents;
		} else {
			poll(NULL, 0, (int) wait);
		}
		sl_db_on_ready(db, revents, now_ms());
	}
}

static bool
cond_connected_n(void *arg)
{
	return n_connected >= *(int *) arg;
}

static bool
cond_done(void *arg)
{
	return ((answer *) arg)->done;
}

typedef struct answers {
	answer *a;
	int n;
} answers;

static bool
cond_all_done(void *arg)
{
	answers *as = arg;
	for (int i = 0; i < as->n; i++)
		if (!as->a[i].done)
			return false;
	return true;
}

static bool
cond_notifies(void *arg)
{
	return n_notifies >= *(int *) arg;
}

/* Runs one query to its answer (5 s bound); false when it timed out or was refused. */
static bool
query_sync(sl_db *db, const char *sql, int nparams, const char *const *params, answer *a)
{
	memset(a, 0, sizeof *a);
	if (sl_db_query(db, sql, nparams, params, on_result, a) != 0)
		return false;
	return run_until(db, cond_done, a, 5000);
}

/* Runs psql -c sql on the test database; true on exit status 0. */
static bool
psql(const char *sql)
{
	char cmd[1024];
	snprintf(cmd, sizeof cmd, "psql -X -q -v ON_ERROR_STOP=1 -d '%s' -c \"%s\" >/dev/null",
			 dbname, sql);
	return system(cmd) == 0;
}

int
main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s DBNAME (with PGHOST, PGPORT, PGUSER set)\n", argv[0]);
		return 2;
	}
	dbname = argv[1];
	const char *host = getenv("PGHOST");
	const char *port = getenv("PGPORT");
	if (!host || !port) {
		fprintf(stderr, "PGHOST and PGPORT must be set\n");
		return 2;
	}
	sl_db_callbacks cb = {.on_connected = on_connected, .on_notify = on_notify, .on_log = on_log};
	answer a;

	/* A conninfo that does not parse is refused; free accepts NULL. */
	sl_db *bad = sl_db_new("host='unterminated", &cb, NULL);
	report("bad conninfo refused", bad == NULL, "sl_db_new returned an sl_db");
	sl_db_free(bad);
	sl_db_free(NULL);

	/* Multi-host: port 1 on the first host refuses, the second is the cluster. */
	char conninfo[512];
	snprintf(conninfo, sizeof conninfo,
			 "host=%s,%s port=1,%s dbname=%s application_name=sl_db_test", host, host, port,
			 dbname);
	sl_db *db = sl_db_new(conninfo, &cb, NULL);
	the_db = db;
	if (!db) {
		report("sl_db_new", false, "returned NULL");
		return 1;
	}
	report("not connected before the loop runs", !sl_db_connected(db), "connected already");

	/* A query queued while connecting waits for the connection. */
	answer early;
	memset(&early, 0, sizeof early);
	int rc = sl_db_query(db, "SELECT 'early'", 0, NULL, on_result, &early);
	int want = 1;
	bool ok = run_until(db, cond_connected_n, &want, 10000);
	report("connect (multi-host, on_connected)", ok && n_connected == 1 && sl_db_connected(db),
		   "on_connected fired %d times, connected=%d", n_connected, sl_db_connected(db));
	ok = rc == 0 && run_until(db, cond_done, &early, 5000);
	report("query queued while connecting is answered", ok && early.had_res &&
		   strcmp(early.value, "early") == 0, "rc=%d done=%d value=%s", rc, early.done,
		   early.value);

	/* synclog.cursor() */
	ok = query_sync(db, "SELECT synclog.cursor()", 0, NULL, &a);
	char *end = NULL;
	long long cur = ok && a.had_res ? strtoll(a.value, &end, 10) : -1;
	report("SELECT synclog.cursor()", ok && a.status == PGRES_TUPLES_OK && end && *end == '\0' &&
		   cur >= 0, "done=%d status=%s value=%s", ok, PQresStatus(a.status), a.value);

	/* 100 queued queries, answered in order. */
	{
		enum { N = 100 };
		answer *as = calloc(N, sizeof *as);
		char params[N][16];
		int refused = 0;
		n_answers = 0;
		for (int i = 0; i < N; i++) {
			snprintf(params[i], sizeof params[i], "%d", i);
			const char *p[1] = {params[i]};
			if (sl_db_query(db, "SELECT $1::int * 2", 1, p, on_result, &as[i]) != 0)
				refused++;
		}
		answers all = {as, N};
		ok = refused == 0 && run_until(db, cond_all_done, &all, 10000);
		int bad_at = -1;
		for (int i = 0; ok && i < N; i++) {
			char expect[16];
			snprintf(expect, sizeof expect, "%d", i * 2);
			if (as[i].order != i || !as[i].had_res || strcmp(as[i].value, expect) != 0) {
				bad_at = i;
				break;
			}
		}
		report("100 queued queries answered in order", ok && bad_at < 0,
			   "refused=%d all_done=%d first bad=%d (order %d value %s)", refused, ok, bad_at,
			   bad_at >= 0 ? as[bad_at].order : -1, bad_at >= 0 ? as[bad_at].value : "");
		free(as);
	}

	/* A parameter with quotes, backslashes and non-ASCII, echoed unchanged. */
	{
		const char *nasty = "it's \"quoted\" \\back\\slash\\ $1 '' -- ; \xc3\xbcn\xc3\xaf" "c\xc3\xb6"
							"d\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xe2\x9c\x93 \xf0\x9f\x98\x80";
		const char *p[1] = {nasty};
		ok = query_sync(db, "SELECT $1::text", 1, p, &a);
		report("parameter echoed unchanged", ok && a.had_res && strcmp(a.value, nasty) == 0,
			   "done=%d got '%s'", ok, a.value);
	}

	/* A syntax error is an error result; the queue goes on. */
	{
		answer e, next;
		memset(&e, 0, sizeof e);
		memset(&next, 0, sizeof next);
		int r1 = sl_db_query(db, "SELEC 1", 0, NULL, on_result, &e);
		int r2 = sl_db_query(db, "SELECT 'after'", 0, NULL, on_result, &next);
		ok = r1 == 0 && r2 == 0 && run_until(db, cond_done, &next, 5000);
		report("syntax error delivered as an error result",
			   ok && e.done && e.had_res && e.status == PGRES_FATAL_ERROR &&
				   strcmp(e.value, "42601") == 0,
			   "done=%d status=%s sqlstate=%s", e.done, PQresStatus(e.status), e.value);
		report("queue goes on after an error result",
			   ok && next.had_res && strcmp(next.value, "after") == 0 && sl_db_connected(db),
			   "done=%d value=%s connected=%d", next.done, next.value, sl_db_connected(db));
	}

	/* Notifications: through the layer, then from another session. */
	{
		int target = n_notifies + 1;
		ok = query_sync(db, "SELECT pg_notify('synclog', '42')", 0, NULL, &a);
		ok = ok && run_until(db, cond_notifies, &target, 5000);
		report("notify synclog through the layer", ok && strcmp(last_channel, "synclog") == 0 &&
			   strcmp(last_payload, "42") == 0, "ok=%d channel=%s payload=%s", ok, last_channel,
			   last_payload);
		target = n_notifies + 1;
		ok = psql("NOTIFY synclog_revoke, 'tok-1'") && run_until(db, cond_notifies, &target, 5000);
		report("notify synclog_revoke from psql", ok && strcmp(last_channel, "synclog_revoke") == 0 &&
			   strcmp(last_payload, "tok-1") == 0, "ok=%d channel=%s payload=%s", ok,
			   last_channel, last_payload);
	}

	/* Connection loss: terminate the backend while one query runs and more wait. */
	{
		ok = query_sync(db, "SELECT pg_backend_pid()", 0, NULL, &a);
		long pid = ok && a.had_res ? strtol(a.value, NULL, 10) : 0;
		report("backend pid", pid > 0, "ok=%d value=%s", ok, a.value);

		enum { M = 4 };
		answer lost[M];
		memset(lost, 0, sizeof lost);
		int refused = 0;
		if (sl_db_query(db, "SELECT pg_sleep(30)", 0, NULL, on_result, &lost[0]) != 0)
			refused++;
		for (int i = 1; i < M; i++)
			if (sl_db_query(db, "SELECT 1", 0, NULL, on_result, &lost[i]) != 0)
				refused++;
		run_until(db, NULL, NULL, 300); /* send the pg_sleep */
		char sql[128];
		snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%ld)", pid);
		int64_t t0 = now_ms();
		bool killed = psql(sql);
		requery_in_callback = true;
		answers all = {lost, M};
		ok = refused == 0 && killed && run_until(db, cond_all_done, &all, 10000);
		requery_in_callback = false;
		bool all_failed = ok;
		bool in_order = ok;
		bool disconnected = ok;
		bool refused_during = ok;
		for (int i = 0; ok && i < M; i++) {
			all_failed = all_failed && !lost[i].had_res &&
						 strcmp(lost[i].error, SL_DB_ERR_UNAVAILABLE) == 0;
			in_order = in_order && (i == 0 || lost[i].order == lost[i - 1].order + 1);
			disconnected = disconnected && !lost[i].connected_at_call;
			refused_during = refused_during && lost[i].requery == -1;
		}
		report("in-flight and queued queries fail with server_unavailable", all_failed,
			   "refused=%d killed=%d all_done=%d first error='%s' had_res=%d", refused, killed,
			   ok, lost[0].error, lost[0].had_res);
		report("failures delivered in queue order", in_order, "orders %d %d %d %d",
			   lost[0].order, lost[1].order, lost[2].order, lost[3].order);
		report("disconnected during the failure callbacks", disconnected,
			   "sl_db_connected was true in a failure callback");
		report("sl_db_query refused while disconnected", refused_during,
			   "requery from callback returned %d", lost[0].requery);
		report("failure within 5 s of the termination", ok && now_ms() - t0 < 5000,
			   "took %lld ms", (long long) (now_ms() - t0));

		want = 2;
		ok = run_until(db, cond_connected_n, &want, 10000);
		int64_t took = now_ms() - t0;
		report("reconnects by itself, on_connected again", ok && n_connected == 2 &&
			   sl_db_connected(db), "on_connected fired %d times in %lld ms", n_connected,
			   (long long) took);

		ok = query_sync(db, "SELECT pg_backend_pid()", 0, NULL, &a);
		long pid2 = ok && a.had_res ? strtol(a.value, NULL, 10) : 0;
		report("query after reconnection succeeds (new backend)", pid2 > 0 && pid2 != pid,
			   "ok=%d pid before %ld after %ld", ok, pid, pid2);

		int target = n_notifies + 1;
		ok = psql("NOTIFY synclog, '43'") && run_until(db, cond_notifies, &target, 5000);
		report("LISTEN again after reconnection", ok && strcmp(last_channel, "synclog") == 0 &&
			   strcmp(last_payload, "43") == 0, "ok=%d channel=%s payload=%s", ok, last_channel,
			   last_payload);
	}

	report("connection events logged", n_logs >= 3, "%d log lines", n_logs);

	/* sl_db_free fails what is still queued. */
	{
		answer q1, q2;
		memset(&q1, 0, sizeof q1);
		memset(&q2, 0, sizeof q2);
		int r1 = sl_db_query(db, "SELECT 1", 0, NULL, on_result, &q1);
		int r2 = sl_db_query(db, "SELECT 2", 0, NULL, on_result, &q2);
		the_db = NULL;
		sl_db_free(db);
		report("sl_db_free fails queued queries", r1 == 0 && r2 == 0 && q1.done && q2.done &&
			   !q1.had_res && strcmp(q2.error, SL_DB_ERR_UNAVAILABLE) == 0,
			   "r1=%d r2=%d done=%d/%d", r1, r2, q1.done, q2.done);
	}

	printf("# db: %d passed, %d failed\n", n_pass, n_fail);
	return n_fail ? 1 : 0;
}

/*
 * tests/client/test_sync.c: libsynclog's network side (client/net.c) end to
 * end, against a real synclog-gateway on loopback.  Driven by
 * tests/suites/42-client-sync.sh, which starts the gateway and checks
 * PostgreSQL with psql between the steps; each step is one subcommand:
 *
 *   test_sync init     FILE URL TOKEN            first sync: welcome, tables made locally
 *   test_sync offline  FILE DEAD_URL TOKEN       writes with no server; run and sync fail fast
 *   test_sync push     FILE URL TOKEN            sync pushes the outbox, own changes return
 *   test_sync pull     FILE URL TOKEN            a new client (cursor 0): snapshot, same values
 *   test_sync reject   FILE URL TOKEN            prio -1: rejected, rolled back, outbox empty
 *   test_sync badtoken FILE URL                  sync and run: SYNCLOG_EAUTH
 *   test_sync live     FILE_A FILE_B URL TOKEN_A TOKEN_B   A's write reaches B's run loop
 *   test_sync thread   FILE URL TOKEN            a write on another thread is pushed at once;
 *                                                synclog_wakeup makes run return
 *   test_sync resend   FILE URL TOKEN N GW_PID   N writes, then a run loop; once some are
 *                                                acked it SIGKILLs the gateway, which the
 *                                                script restarts: run reconnects on its own
 *                                                and every op is confirmed
 *   test_sync lost     FILE URL TOKEN GW_PID     the gateway SIGKILLed during a sync: ENET
 *   test_sync hostile  FILE                      a scripted server of its own sends garbage,
 *                                                fragments, 70 MiB, unauthorized
 *
 * Each check prints "PASS: client-sync: NAME" or "FAIL: client-sync: NAME"
 * (with the reason on the line before); the exit status is 1 when a check
 * failed, 2 for bad usage.  Every wait is bounded.  The rows written are in
 * table issues (id text, team text, title text, prio int CHECK (prio >= 0)),
 * group column team; the tokens grant t1 (and t2 for A).
 */
#define _GNU_SOURCE /* usleep, kill, strcasestr */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sqlite3.h>

#include "synclog.h"

static int failures;

static void
check(bool ok, const char *name, const char *fmt, ...)
{
	va_list ap;

	if (!ok) {
		printf("  why: ");
		va_start(ap, fmt);
		vprintf(fmt, ap);
		va_end(ap);
		printf("\n");
		failures++;
	}
	printf("%s: client-sync: %s\n", ok ? "PASS" : "FAIL", name);
	fflush(stdout);
}

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------------------------------------------------------------- recorded callbacks */

#define MAX_SEEN 64

typedef struct rec {
	atomic_int n_connected, n_disconnected, n_snapshot, n_error, n_changes, n_rejects;
	char last_disconnect[512];
	bool saw_cap;              /* a DISCONNECTED naming the 64 MiB cap */
	bool saw_timeout;          /* a DISCONNECTED naming the connect timeout */
	int64_t first_disconnect_ms;
	char last_error[512];
	struct {
		char row[64], fields[512], client_id[64], json[1024];
		uint64_t seq;
	} changes[MAX_SEEN];
	struct {
		char op_id[40], table[64], row[64], code[64], message[256];
	} rejects[MAX_SEEN];
} rec;

static void
on_event(void *ctx, synclog_event ev, const char *detail)
{
	rec *r = ctx;

	switch (ev) {
	case SYNCLOG_EV_CONNECTED:
		r->n_connected++;
		break;
	case SYNCLOG_EV_DISCONNECTED:
		snprintf(r->last_disconnect, sizeof(r->last_disconnect), "%s", detail);
		if (strstr(detail, "64 MiB") != NULL)
			r->saw_cap = true;
		if (strstr(detail, "no welcome within 1000 ms") != NULL)
			r->saw_timeout = true;
		if (r->first_disconnect_ms == 0)
			r->first_disconnect_ms = now_ms();
		r->n_disconnected++;
		break;
	case SYNCLOG_EV_SNAPSHOT:
		r->n_snapshot++;
		break;
	case SYNCLOG_EV_ERROR:
		snprintf(r->last_error, sizeof(r->last_error), "%s", detail);
		r->n_error++;
		break;
	}
}

static void
on_change(void *ctx, const synclog_change *c)
{
	rec *r = ctx;
	int i = r->n_changes;

	if (i < MAX_SEEN) {
		snprintf(r->changes[i].row, sizeof(r->changes[i].row), "%s", c->row);
		snprintf(r->changes[i].fields, sizeof(r->changes[i].fields), "%s", c->fields);
		snprintf(r->changes[i].client_id, sizeof(r->changes[i].client_id), "%s", c->client_id);
		snprintf(r->changes[i].json, sizeof(r->changes[i].json), "%s", c->json);
		r->changes[i].seq = c->seq;
	}
	r->n_changes++;
}

static void
on_reject(void *ctx, const char *op_id, const char *table, const char *row, const char *code,
          const char *message)
{
	rec *r = ctx;
	int i = r->n_rejects;

	if (i < MAX_SEEN) {
		snprintf(r->rejects[i].op_id, sizeof(r->rejects[i].op_id), "%s", op_id);
		snprintf(r->rejects[i].table, sizeof(r->rejects[i].table), "%s", table);
		snprintf(r->rejects[i].row, sizeof(r->rejects[i].row), "%s", row);
		snprintf(r->rejects[i].code, sizeof(r->rejects[i].code), "%s", code);
		snprintf(r->rejects[i].message, sizeof(r->rejects[i].message), "%s", message);
	}
	r->n_rejects++;
}

/* ---------------------------------------------------------------- helpers */

static void
die(const char *what, synclog *sl)
{
	printf("  fatal: %s: %s\n", what, sl ? synclog_errmsg(sl) : "");
	printf("FAIL: client-sync: %s\n", what);
	exit(1);
}

/* Opens file with callbacks recording into r and connects it to url. */
static synclog *
open_client(const char *file, const char *url, const char *token, rec *r, const char *const *groups,
            size_t n_groups)
{
	synclog *sl;
	synclog_config cfg = {
		.url = url,
		.token = token,
		.groups = groups,
		.n_groups = n_groups,
		.connect_timeout_ms = 3000,
		.backoff_min_ms = 50,
		.backoff_max_ms = 400,
	};

	if (synclog_open(file, &sl) != SYNCLOG_OK) {
		printf("  cannot open %s: %s\n", file, sl ? synclog_errmsg(sl) : "");
		synclog_close(sl);
		die("open the client file", NULL);
	}
	memset(r, 0, sizeof(*r));
	synclog_on_event(sl, on_event, r);
	synclog_on_change(sl, on_change, r);
	synclog_on_reject(sl, on_reject, r);
	if (synclog_connect(sl, &cfg) != SYNCLOG_OK)
		die("synclog_connect", sl);
	return sl;
}

static const char *const groups_t1[] = {"t1"};
static const char *const groups_t12[] = {"t1", "t2"};

static int
count_one(void *ctx, const synclog_op *op)
{
	(void) op;
	(*(int *) ctx)++;
	return 0;
}

/* Unacked ops (synclog_pending). */
static int
n_pending(synclog *sl)
{
	int n = 0;

	if (synclog_pending(sl, count_one, &n) != SYNCLOG_OK)
		die("synclog_pending", sl);
	return n;
}

/* Every op in the outbox, acked or not (read from the store's table). */
static int
n_outbox(synclog *sl)
{
	sqlite3_stmt *st;
	int n = -1;

	if (sqlite3_prepare_v2(synclog_db(sl), "SELECT count(*) FROM _synclog_outbox", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return n;
}

/* The visible row as "team|title|prio" ("(none)" when absent). */
static void
row_text(synclog *sl, const char *row, char *out, size_t cap)
{
	sqlite3_stmt *st;

	snprintf(out, cap, "(none)");
	if (sqlite3_prepare_v2(synclog_db(sl),
	                       "SELECT coalesce(team, 'NULL') || '|' || coalesce(title, 'NULL') || '|' ||"
	                       " coalesce(prio, 'NULL') FROM issues WHERE id = ?",
	                       -1, &st, NULL) != SQLITE_OK) {
		snprintf(out, cap, "(error: %s)", sqlite3_errmsg(synclog_db(sl)));
		return;
	}
	sqlite3_bind_text(st, 1, row, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		snprintf(out, cap, "%s", (const char *) sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
}

static bool
row_is(synclog *sl, const char *row, const char *want)
{
	char got[256];

	row_text(sl, row, got, sizeof(got));
	if (strcmp(got, want) != 0) {
		printf("  row %s: got \"%s\", want \"%s\"\n", row, got, want);
		return false;
	}
	return true;
}

/* Whether JSON text has "key": value (the server writes jsonb's text: ": " or ":"). */
static bool
has_member(const char *text, const char *key, const char *value)
{
	char a[256], b[256];

	snprintf(a, sizeof(a), "\"%s\":%s", key, value);
	snprintf(b, sizeof(b), "\"%s\": %s", key, value);
	return strstr(text, a) != NULL || strstr(text, b) != NULL;
}

static void
put(synclog *sl, const char *row, const char *fields, char op_id[SYNCLOG_UUID_LEN + 1])
{
	if (synclog_put(sl, "issues", row, fields, op_id) != SYNCLOG_OK)
		die("synclog_put", sl);
}

/* The three rows the offline step writes, as the visible rows must read. */
static const struct {
	const char *row, *fields, *visible;
} offline_rows[] = {
	{"off-1", "{\"team\":\"t1\",\"title\":\"one\",\"prio\":1}", "t1|one|1"},
	{"off-2", "{\"team\":\"t1\",\"title\":\"two \\\"quoted\\\" \\u00e9\",\"prio\":2}", "t1|two \"quoted\" \xc3\xa9|2"},
	{"off-3", "{\"team\":\"t1\",\"title\":\"three\",\"prio\":3}", "t1|three|3"},
};
#define N_OFFLINE 3

/* ---------------------------------------------------------------- steps */

static void
step_init(const char *file, const char *url, const char *token)
{
	rec r;
	synclog *sl = open_client(file, url, token, &r, groups_t12, 2);
	int rc = synclog_sync(sl, 15000);
	sqlite3_stmt *st;
	bool table = false;

	check(rc == SYNCLOG_OK && r.n_connected == 1, "first sync: OK, one CONNECTED event",
	      "rc %d (%s), %d CONNECTED", rc, synclog_errmsg(sl), r.n_connected);
	check(synclog_connected(sl) != 0, "sync stays connected", "synclog_connected is 0");
	if (sqlite3_prepare_v2(synclog_db(sl), "SELECT 1 FROM sqlite_master WHERE name = 'issues'", -1, &st,
	                       NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
		table = true;
	sqlite3_finalize(st);
	check(table, "welcome's tables are created locally", "no table issues in %s", file);
	synclog_disconnect(sl);
	check(synclog_connected(sl) == 0, "synclog_disconnect ends the connection", "still connected");
	synclog_close(sl);
}

static void
step_offline(const char *file, const char *dead_url, const char *token)
{
	rec r;
	synclog *sl = open_client(file, dead_url, token, &r, groups_t12, 2);
	bool visible = true;
	int64_t t0, el;
	int i, rc;

	for (i = 0; i < N_OFFLINE; i++) {
		put(sl, offline_rows[i].row, offline_rows[i].fields, NULL);
		visible &= row_is(sl, offline_rows[i].row, offline_rows[i].visible);
	}
	check(visible && n_pending(sl) == N_OFFLINE, "offline writes are visible at once and in the outbox",
	      "visible %d, %d pending", visible, n_pending(sl));

	t0 = now_ms();
	rc = synclog_run(sl, 200);
	el = now_ms() - t0;
	check(rc == SYNCLOG_OK && el >= 190 && el < 450, "run(200) with no server returns in about 200 ms",
	      "rc %d, %lld ms", rc, (long long) el);
	check(r.n_disconnected >= 1 && strstr(r.last_disconnect, dead_url) != NULL,
	      "run with no server reports DISCONNECTED naming the url", "%d events, last \"%s\"",
	      r.n_disconnected, r.last_disconnect);
	t0 = now_ms();
	rc = synclog_run(sl, 0);
	el = now_ms() - t0;
	check(rc == SYNCLOG_OK && el < 100, "run(0) returns at once", "rc %d, %lld ms", rc, (long long) el);

	t0 = now_ms();
	rc = synclog_sync(sl, 10000);
	el = now_ms() - t0;
	check(rc == SYNCLOG_ENET && el < 2000 && strstr(synclog_errmsg(sl), dead_url) != NULL,
	      "sync to an unreachable port: SYNCLOG_ENET at once, message names the url",
	      "rc %d after %lld ms: \"%s\"", rc, (long long) el, synclog_errmsg(sl));
	check(n_pending(sl) == N_OFFLINE && synclog_connected(sl) == 0,
	      "a failed sync keeps the outbox", "%d pending", n_pending(sl));
	synclog_close(sl);

	/* reopen: the outbox survived */
	if (synclog_open(file, &sl) != SYNCLOG_OK)
		die("reopen", sl);
	check(n_pending(sl) == N_OFFLINE, "the outbox survives a reopen", "%d pending", n_pending(sl));
	synclog_close(sl);
}

static void
step_push(const char *file, const char *url, const char *token)
{
	rec r;
	synclog *sl = open_client(file, url, token, &r, groups_t12, 2);
	uint64_t c0 = synclog_cursor(sl);
	int64_t t0 = now_ms();
	int rc = synclog_sync(sl, 15000);
	int i, own = 0;

	check(rc == SYNCLOG_OK, "sync pushes the offline writes", "rc %d: %s", rc, synclog_errmsg(sl));
	check(n_pending(sl) == 0 && n_outbox(sl) == 0,
	      "after sync the outbox is empty (acked, and the changes came back)", "%d pending, %d in outbox",
	      n_pending(sl), n_outbox(sl));
	for (i = 0; i < r.n_changes && i < MAX_SEEN; i++)
		if (strcmp(r.changes[i].client_id, synclog_client_id(sl)) == 0)
			own++;
	check(own == N_OFFLINE && synclog_cursor(sl) > c0,
	      "own ops come back as changes through on_change; the cursor moves", "%d own changes of %d, cursor %llu",
	      own, r.n_changes, (unsigned long long) synclog_cursor(sl));
	check(now_ms() - t0 < 1900, "sync returns as soon as caught up (not after the 2 s settle)",
	      "%lld ms", (long long) (now_ms() - t0));
	for (i = 0; i < N_OFFLINE; i++)
		if (!row_is(sl, offline_rows[i].row, offline_rows[i].visible))
			break;
	check(i == N_OFFLINE, "visible rows unchanged by their confirmation", "row %d differs", i);
	synclog_close(sl);
}

static void
step_pull(const char *file, const char *url, const char *token)
{
	rec r;
	synclog *sl = open_client(file, url, token, &r, groups_t1, 1);
	int rc = synclog_sync(sl, 15000);
	int i;

	check(rc == SYNCLOG_OK && r.n_snapshot == 1, "a new client (cursor 0) syncs through a snapshot",
	      "rc %d (%s), %d SNAPSHOT events", rc, synclog_errmsg(sl), r.n_snapshot);
	for (i = 0; i < N_OFFLINE; i++)
		if (!row_is(sl, offline_rows[i].row, offline_rows[i].visible))
			break;
	check(i == N_OFFLINE, "the second client has the rows with the same field values",
	      "row %s differs", i < N_OFFLINE ? offline_rows[i].row : "");
	check(r.n_changes == 0, "snapshot rows are not reported through on_change", "%d changes", r.n_changes);
	check(synclog_cursor(sl) > 0, "the cursor is the snapshot's", "cursor 0");
	synclog_close(sl);
}

static void
step_reject(const char *file, const char *url, const char *token)
{
	rec r;
	synclog *sl = open_client(file, url, token, &r, groups_t12, 2);
	char op[SYNCLOG_UUID_LEN + 1], good[SYNCLOG_UUID_LEN + 1];
	int rc;

	put(sl, "off-1", "{\"prio\":-1}", op);
	put(sl, "rej-ok", "{\"team\":\"t1\",\"title\":\"fine\",\"prio\":5}", good);
	check(row_is(sl, "off-1", "t1|one|-1"), "the refused write is visible until the server answers", "");
	rc = synclog_sync(sl, 15000);
	check(rc == SYNCLOG_OK, "sync with a rejected op is OK", "rc %d: %s", rc, synclog_errmsg(sl));
	check(r.n_rejects == 1 && strcmp(r.rejects[0].op_id, op) == 0 &&
	          strcmp(r.rejects[0].code, "constraint_violation") == 0 &&
	          strcmp(r.rejects[0].table, "issues") == 0 && strcmp(r.rejects[0].row, "off-1") == 0 &&
	          r.rejects[0].message[0] != '\0',
	      "the reject callback names the op, its row and constraint_violation, with a message",
	      "%d rejects; first: %s %s %s %s \"%s\"", r.n_rejects, r.rejects[0].op_id, r.rejects[0].table,
	      r.rejects[0].row, r.rejects[0].code, r.rejects[0].message);
	check(row_is(sl, "off-1", "t1|one|1"), "the rejected op is rolled back (confirmed value again)", "");
	check(row_is(sl, "rej-ok", "t1|fine|5"), "the op beside it in the batch applies", "");
	check(n_pending(sl) == 0 && n_outbox(sl) == 0, "the rejected op left the outbox",
	      "%d pending, %d in outbox", n_pending(sl), n_outbox(sl));
	synclog_close(sl);
}

static void
step_badtoken(const char *file, const char *url)
{
	rec r;
	synclog *sl = open_client(file, url, "slt_not-a-token", &r, groups_t1, 1);
	int64_t t0 = now_ms();
	int rc = synclog_sync(sl, 10000);
	synclog_config cfg = {.url = "http://x/", .token = "t"};

	check(rc == SYNCLOG_EAUTH && now_ms() - t0 < 5000, "bad token: sync returns SYNCLOG_EAUTH",
	      "rc %d: %s", rc, synclog_errmsg(sl));
	check(r.n_error >= 1 && strstr(r.last_error, "unauthorized") != NULL,
	      "bad token: an ERROR event says unauthorized", "last error \"%s\"", r.last_error);
	t0 = now_ms();
	rc = synclog_run(sl, 1000);
	check(rc == SYNCLOG_EAUTH && now_ms() - t0 < 500, "bad token: run returns SYNCLOG_EAUTH without retrying",
	      "rc %d after %lld ms", rc, (long long) (now_ms() - t0));
	rc = synclog_connect(sl, &cfg);
	check(rc == SYNCLOG_EINVAL && strstr(synclog_errmsg(sl), "ws://") != NULL,
	      "connect with an http:// url: SYNCLOG_EINVAL naming ws://", "rc %d: %s", rc, synclog_errmsg(sl));
	cfg.url = "ws://127.0.0.1:1/";
	cfg.token = "";
	rc = synclog_connect(sl, &cfg);
	check(rc == SYNCLOG_EINVAL && strstr(synclog_errmsg(sl), "token") != NULL,
	      "connect with an empty token: SYNCLOG_EINVAL naming the token", "rc %d: %s", rc, synclog_errmsg(sl));
	synclog_close(sl);

	if (synclog_open(file, &sl) != SYNCLOG_OK)
		die("reopen", sl);
	rc = synclog_run(sl, 10);
	check(rc == SYNCLOG_EMISUSE, "run without synclog_connect: SYNCLOG_EMISUSE", "rc %d", rc);
	synclog_close(sl);
}

static void
step_live(const char *file_a, const char *file_b, const char *url, const char *tok_a, const char *tok_b)
{
	rec ra, rb;
	synclog *a = open_client(file_a, url, tok_a, &ra, groups_t12, 2);
	synclog *b = open_client(file_b, url, tok_b, &rb, groups_t1, 1);
	char op[SYNCLOG_UUID_LEN + 1];
	int64_t t0 = now_ms(), t1;
	int rc, i, found = -1, n0;

	while (rb.n_connected == 0 && now_ms() - t0 < 10000)
		if ((rc = synclog_run(b, 100)) != SYNCLOG_OK)
			die("B's run", b);
	/* let B take its backlog: then it is live */
	t0 = now_ms();
	while (now_ms() - t0 < 300)
		synclog_run(b, 50);
	check(rb.n_connected == 1, "B connects through synclog_run", "%d CONNECTED", rb.n_connected);
	n0 = rb.n_changes;
	put(a, "live-1", "{\"team\":\"t1\",\"title\":\"live!\",\"prio\":7}", op);
	if ((rc = synclog_sync(a, 15000)) != SYNCLOG_OK)
		die("A's sync", a);
	t1 = now_ms();
	while (found < 0 && now_ms() - t1 < 5000) {
		if (synclog_run(b, 100) != SYNCLOG_OK)
			die("B's run", b);
		for (i = n0; i < rb.n_changes && i < MAX_SEEN; i++)
			if (strcmp(rb.changes[i].row, "live-1") == 0)
				found = i;
	}
	check(found >= 0, "a live change from A reaches B's run loop within 5 s", "B saw %d changes",
	      rb.n_changes - n0);
	if (found >= 0) {
		char quoted[SYNCLOG_UUID_LEN + 3];

		snprintf(quoted, sizeof(quoted), "\"%s\"", op);
		check(has_member(rb.changes[found].fields, "title", "\"live!\"") &&
		          has_member(rb.changes[found].fields, "prio", "7") &&
		          strcmp(rb.changes[found].client_id, synclog_client_id(a)) == 0 &&
		          has_member(rb.changes[found].json, "op_id", quoted) &&
		          has_member(rb.changes[found].json, "fields", "{"),
		      "on_change gets the right fields, writer and op id", "fields %s, client %s, json %s",
		      rb.changes[found].fields, rb.changes[found].client_id, rb.changes[found].json);
		check(row_is(b, "live-1", "t1|live!|7"), "the live change is in B's table", "");
	}
	synclog_close(a);
	synclog_close(b);
}

struct runner {
	synclog *sl;
	atomic_int stop, runs, rc;
	int timeout_ms;
};

static void *
run_loop(void *arg)
{
	struct runner *t = arg;
	int rc;

	while (!t->stop) {
		rc = synclog_run(t->sl, t->timeout_ms);
		t->runs++;
		if (rc != SYNCLOG_OK) {
			t->rc = rc;
			break;
		}
	}
	return NULL;
}

static void
step_thread(const char *file, const char *url, const char *token)
{
	rec r;
	synclog *sl = open_client(file, url, token, &r, groups_t12, 2);
	struct runner t = {.sl = sl, .timeout_ms = 10000};
	pthread_t th;
	char op[SYNCLOG_UUID_LEN + 1];
	int64_t t0, el;
	int runs0;

	if (pthread_create(&th, NULL, run_loop, &t) != 0)
		die("pthread_create", NULL);
	t0 = now_ms();
	while (!synclog_connected(sl) && now_ms() - t0 < 10000)
		usleep(10000);
	usleep(300000); /* the backlog */
	runs0 = t.runs;
	put(sl, "thr-1", "{\"team\":\"t2\",\"title\":\"from another thread\",\"prio\":0}", op);
	t0 = now_ms();
	while (n_pending(sl) > 0 && now_ms() - t0 < 5000)
		usleep(5000);
	el = now_ms() - t0;
	check(n_pending(sl) == 0 && el < 2000,
	      "a write from another thread during synclog_run(10 s) is pushed and acked at once",
	      "%d pending after %lld ms", n_pending(sl), (long long) el);
	check(t.runs > runs0, "a write makes the waiting synclog_run return to its caller", "runs %d -> %d",
	      runs0, (int) t.runs);

	/* the stop flag: wakeup makes the 10 s run return at once */
	usleep(200000);
	t.stop = 1;
	t0 = now_ms();
	synclog_wakeup(sl);
	pthread_join(th, NULL);
	el = now_ms() - t0;
	check(el < 1000 && t.rc == SYNCLOG_OK, "synclog_wakeup makes a synclog_run(10 s) return at once",
	      "%lld ms, rc %d", (long long) el, (int) t.rc);
	synclog_close(sl);
}

static void
step_resend(const char *file, const char *url, const char *token, int n, pid_t gateway)
{
	rec r;
	synclog *sl = open_client(file, url, token, &r, groups_t1, 1);
	synclog_config cfg = {
		.url = url, .token = token, .groups = groups_t1, .n_groups = 1,
		.connect_timeout_ms = 2000, .backoff_min_ms = 50, .backoff_max_ms = 300, .batch_ops = 10,
	};
	char row[32], fields[128];
	int64_t t0 = now_ms();
	bool killed = false, done = false;
	int i, rc, conn0 = 0, disc0 = 0;

	if (synclog_connect(sl, &cfg) != SYNCLOG_OK)
		die("synclog_connect", sl);
	for (i = 1; i <= n; i++) {
		snprintf(row, sizeof(row), "rs-%d", i);
		snprintf(fields, sizeof(fields), "{\"team\":\"t1\",\"title\":\"resend %d\",\"prio\":%d}", i, i);
		put(sl, row, fields, NULL);
	}
	while (!done && now_ms() - t0 < 60000) {
		if ((rc = synclog_run(sl, 20)) != SYNCLOG_OK)
			die("run", sl);
		if (!killed && n_pending(sl) < n) {
			/* some pushes acked, others in flight or unsent: the gateway dies */
			printf("  %d of %d ops acked when the gateway is killed\n", n - n_pending(sl), n);
			conn0 = r.n_connected;
			disc0 = r.n_disconnected;
			kill(gateway, SIGKILL);
			killed = true;
		}
		done = killed && r.n_disconnected > disc0 && r.n_connected > conn0 && n_outbox(sl) == 0;
	}
	printf("  %d CONNECTED, %d DISCONNECTED (last: %s), %lld ms\n", (int) r.n_connected,
	       (int) r.n_disconnected, r.last_disconnect, (long long) (now_ms() - t0));
	check(killed && r.n_disconnected > disc0, "the gateway killed mid-push: run reports DISCONNECTED",
	      "killed %d, %d DISCONNECTED", killed, (int) r.n_disconnected);
	check(done, "after the gateway restarts, run reconnects on its own and every op is confirmed",
	      "%d CONNECTED, %d pending, %d in outbox", (int) r.n_connected, n_pending(sl), n_outbox(sl));
	for (i = 1; i <= n; i++) {
		char want[64];

		snprintf(row, sizeof(row), "rs-%d", i);
		snprintf(want, sizeof(want), "t1|resend %d|%d", i, i);
		if (!row_is(sl, row, want))
			break;
	}
	check(i > n, "every resent row is visible with its values", "row rs-%d", i);
	synclog_close(sl);
}

struct killer {
	synclog *sl;
	pid_t gateway;
	int n;
	atomic_int killed_at; /* pending ops when killed, or -1 */
};

/* Kills the gateway once some of the sync's ops are acked (bounded: 20 s). */
static void *
kill_midway(void *arg)
{
	struct killer *k = arg;
	int64_t t0 = now_ms();
	int p;

	while (now_ms() - t0 < 20000) {
		if ((p = n_pending(k->sl)) < k->n) {
			kill(k->gateway, SIGKILL);
			k->killed_at = p;
			return NULL;
		}
		usleep(1000);
	}
	return NULL;
}

static void
step_lost(const char *file, const char *url, const char *token, pid_t gateway)
{
	rec r;
	synclog *sl = open_client(file, url, token, &r, groups_t1, 1);
	synclog_config cfg = {
		.url = url, .token = token, .groups = groups_t1, .n_groups = 1, .batch_ops = 5,
	};
	struct killer k = {.sl = sl, .gateway = gateway, .n = 2000, .killed_at = -1};
	pthread_t th;
	int64_t t0;
	int rc, i;

	if (synclog_connect(sl, &cfg) != SYNCLOG_OK)
		die("synclog_connect", sl);
	for (i = 0; i < k.n; i++) {
		char row[32];

		snprintf(row, sizeof(row), "lost-%d", i);
		put(sl, row, "{\"team\":\"t1\",\"title\":\"lost\"}", NULL);
	}
	rc = synclog_sync(sl, 1);
	check(rc == SYNCLOG_ETIMEOUT && strstr(synclog_errmsg(sl), "ms") != NULL,
	      "sync(1 ms) with 2000 ops to push: SYNCLOG_ETIMEOUT with a message", "rc %d: %s", rc,
	      synclog_errmsg(sl));
	if (pthread_create(&th, NULL, kill_midway, &k) != 0)
		die("pthread_create", NULL);
	t0 = now_ms();
	rc = synclog_sync(sl, 30000);
	pthread_join(th, NULL);
	printf("  killed with %d ops unacked; sync: %s\n", (int) k.killed_at, synclog_errmsg(sl));
	check(k.killed_at > 0 && rc == SYNCLOG_ENET && now_ms() - t0 < 10000,
	      "the connection lost during sync: SYNCLOG_ENET", "killed at %d, rc %d after %lld ms: %s",
	      (int) k.killed_at, rc, (long long) (now_ms() - t0), synclog_errmsg(sl));
	check(n_pending(sl) > 0, "unacked ops stay in the outbox after a lost sync", "none pending");
	synclog_close(sl);
}

/* ---------------------------------------------------------------- a hostile server */

/*
 * A hand-written WebSocket server (RFC 6455, no libwebsockets) on an
 * ephemeral loopback port, one scripted connection after another, sending
 * what a broken or malicious server might: not JSON, not an object, bad
 * field types, a fragmented message, a message past the client's 64 MiB cap,
 * and finally `unauthorized`.  The client must survive all of it under the
 * sanitizers, report it, and apply what was valid.
 */

static void
sha1(const unsigned char *msg, size_t len, unsigned char out[20])
{
	uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
	size_t total = ((len + 8) / 64 + 1) * 64, i, j;
	unsigned char *m = calloc(1, total);

	memcpy(m, msg, len);
	m[len] = 0x80;
	for (i = 0; i < 8; i++)
		m[total - 1 - i] = (unsigned char) ((uint64_t) len * 8 >> (8 * i));
	for (i = 0; i < total; i += 64) {
		uint32_t w[80], a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f, k, t;

		for (j = 0; j < 16; j++)
			w[j] = (uint32_t) m[i + 4 * j] << 24 | (uint32_t) m[i + 4 * j + 1] << 16 |
			       (uint32_t) m[i + 4 * j + 2] << 8 | m[i + 4 * j + 3];
		for (j = 16; j < 80; j++) {
			t = w[j - 3] ^ w[j - 8] ^ w[j - 14] ^ w[j - 16];
			w[j] = t << 1 | t >> 31;
		}
		for (j = 0; j < 80; j++) {
			if (j < 20)
				f = (b & c) | (~b & d), k = 0x5A827999;
			else if (j < 40)
				f = b ^ c ^ d, k = 0x6ED9EBA1;
			else if (j < 60)
				f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
			else
				f = b ^ c ^ d, k = 0xCA62C1D6;
			t = (a << 5 | a >> 27) + f + e + k + w[j];
			e = d, d = c, c = b << 30 | b >> 2, b = a, a = t;
		}
		h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
	}
	free(m);
	for (i = 0; i < 20; i++)
		out[i] = (unsigned char) (h[i / 4] >> (24 - 8 * (i % 4)));
}

static void
base64(const unsigned char *in, size_t len, char *out)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i;

	for (i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t) in[i] << 16 | (i + 1 < len ? (uint32_t) in[i + 1] << 8 : 0) |
		             (i + 2 < len ? in[i + 2] : 0);

		*out++ = tab[v >> 18 & 63];
		*out++ = tab[v >> 12 & 63];
		*out++ = i + 1 < len ? tab[v >> 6 & 63] : '=';
		*out++ = i + 2 < len ? tab[v & 63] : '=';
	}
	*out = '\0';
}

static bool
send_all(int fd, const void *p, size_t n)
{
	const char *c = p;

	while (n > 0) {
		ssize_t w = send(fd, c, n, MSG_NOSIGNAL);

		if (w <= 0)
			return false;
		c += w;
		n -= (size_t) w;
	}
	return true;
}

/* Sends one frame header (server frames are unmasked). */
static bool
send_header(int fd, bool fin, int opcode, uint64_t len)
{
	unsigned char h[10];
	size_t n = 2;
	int i;

	h[0] = (unsigned char) ((fin ? 0x80 : 0) | opcode);
	if (len < 126) {
		h[1] = (unsigned char) len;
	} else if (len < 65536) {
		h[1] = 126;
		h[2] = (unsigned char) (len >> 8);
		h[3] = (unsigned char) len;
		n = 4;
	} else {
		h[1] = 127;
		for (i = 0; i < 8; i++)
			h[2 + i] = (unsigned char) (len >> (56 - 8 * i));
		n = 10;
	}
	return send_all(fd, h, n);
}

static bool
send_frame(int fd, const char *text)
{
	return send_header(fd, true, 1, strlen(text)) && send_all(fd, text, strlen(text));
}

/* Accepts one connection (10 s at most) and answers its upgrade; -1 on failure. */
static int
accept_ws(int lfd)
{
	struct pollfd pfd = {.fd = lfd, .events = POLLIN};
	struct timeval tv = {.tv_sec = 5};
	char req[4096], accept_key[64], *k, *e;
	unsigned char digest[20];
	char reply[512], keybuf[128];
	size_t got = 0;
	int fd;

	if (poll(&pfd, 1, 10000) != 1 || (fd = accept(lfd, NULL, NULL)) < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	while (got < sizeof(req) - 1) {
		ssize_t r = recv(fd, req + got, sizeof(req) - 1 - got, 0);

		if (r <= 0)
			break;
		got += (size_t) r;
		req[got] = '\0';
		if (strstr(req, "\r\n\r\n"))
			break;
	}
	req[got] = '\0';
	if ((k = strcasestr(req, "Sec-WebSocket-Key:")) == NULL) {
		close(fd);
		return -1;
	}
	k += strlen("Sec-WebSocket-Key:");
	while (*k == ' ')
		k++;
	e = strstr(k, "\r\n");
	snprintf(keybuf, sizeof(keybuf), "%.*s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", (int) (e ? e - k : 0), k);
	sha1((const unsigned char *) keybuf, strlen(keybuf), digest);
	base64(digest, 20, accept_key);
	snprintf(reply, sizeof(reply),
	         "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	         "Sec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: synclog.v1\r\n\r\n",
	         accept_key);
	if (!send_all(fd, reply, strlen(reply))) {
		close(fd);
		return -1;
	}
	(void) recv(fd, req, sizeof(req), 0); /* the hello */
	return fd;
}

#define HOSTILE_WELCOME                                                                            \
	"{\"type\":\"welcome\",\"cursor\":0,\"hlc\":\"0000000000000001\",\"groups\":[\"t1\"],"          \
	"\"tables\":{\"notes\":{\"pk\":\"id\",\"group\":\"team\",\"columns\":{\"id\":\"text\","     \
	"\"team\":\"text\",\"title\":\"text\",\"est\":\"numeric\"}}}}"

struct hostile {
	int lfd;
	atomic_int stage; /* the connection being served, 1.. */
	atomic_int done;
};

static void *
hostile_server(void *arg)
{
	struct hostile *h = arg;
	static const char *const part[3] = {
		"{\"type\":\"changes\",\"changes\":[{\"seq\":1,\"op_id\":\"00000000-0000-4000-8000-000000000001\","
		"\"client_id\":\"server\",\"table\":\"notes\",",
		"\"row\":\"frag-1\",\"kind\":\"upsert\",\"group\":\"t1\",\"fields\":{\"team\":\"t1\",\"title\":"
		"\"frag\\u0020mented\",",
		"\"est\":0.1},\"hlc\":\"0000000000000002\"}],\"cursor\":1}",
	};
	char *big;
	size_t i;
	int fd;

	/* stage 0: a server that accepts and never answers the upgrade */
	struct pollfd pfd = {.fd = h->lfd, .events = POLLIN};
	char sink[4096];

	if (poll(&pfd, 1, 10000) == 1 && (fd = accept(h->lfd, NULL, NULL)) >= 0) {
		struct timeval tv = {.tv_sec = 10};

		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		while (recv(fd, sink, sizeof(sink), 0) > 0)
			; /* until the client gives up */
		close(fd);
	}
	for (h->stage = 1; h->stage <= 6; h->stage++) {
		if ((fd = accept_ws(h->lfd)) < 0)
			break;
		switch (h->stage) {
		case 1: /* not JSON */
			send_frame(fd, "this is not json {");
			break;
		case 2: /* JSON, not an object; then garbage types */
			send_frame(fd, "[1,2,3]");
			break;
		case 3: /* a welcome with wrong types, unknown frames, a bad changes frame */
			send_frame(fd, "{\"type\":\"welcome\",\"cursor\":\"x\",\"tables\":5,\"groups\":7}");
			send_frame(fd, "{\"type\":\"no such type\",\"x\":[]}");
			send_frame(fd, "{\"no\":\"type\"}");
			send_frame(fd, "{\"type\":\"pong\",\"hlc\":\"0000000000000001\"}");
			send_frame(fd, "{\"type\":\"ack\",\"acked\":\"nope\"}");
			send_frame(fd, "{\"type\":\"changes\",\"changes\":\"x\",\"cursor\":-1}");
			break;
		case 4: /* a valid welcome, then a changes frame in three fragments */
			send_frame(fd, HOSTILE_WELCOME);
			send_header(fd, false, 1, strlen(part[0]));
			send_all(fd, part[0], strlen(part[0]));
			send_header(fd, false, 0, strlen(part[1]));
			send_all(fd, part[1], strlen(part[1]));
			send_header(fd, true, 0, strlen(part[2]));
			send_all(fd, part[2], strlen(part[2]));
			usleep(300000);
			break;
		case 5: /* a message past 64 MiB, in 1 MiB fragments */
			send_frame(fd, HOSTILE_WELCOME);
			big = malloc(1 << 20);
			memset(big, ' ', 1 << 20);
			for (i = 0; i < 70; i++)
				if (!send_header(fd, false, i == 0 ? 1 : 0, 1 << 20) || !send_all(fd, big, 1 << 20))
					break;
			free(big);
			break;
		case 6: /* unauthorized */
			send_frame(fd, "{\"type\":\"error\",\"code\":\"unauthorized\",\"message\":\"go away\"}");
			usleep(200000);
			break;
		}
		shutdown(fd, SHUT_RDWR);
		close(fd);
	}
	h->done = 1;
	return NULL;
}

static void
step_hostile(const char *file)
{
	struct hostile h = {.lfd = socket(AF_INET, SOCK_STREAM, 0)};
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl_len = sizeof(sa);
	char url[64];
	pthread_t th;
	rec r;
	synclog *sl;
	int64_t t0;
	int rc = SYNCLOG_OK, i, frag = -1;

	if (h.lfd < 0 || bind(h.lfd, (struct sockaddr *) &sa, sizeof(sa)) != 0 || listen(h.lfd, 8) != 0 ||
	    getsockname(h.lfd, (struct sockaddr *) &sa, &sl_len) != 0)
		die("listen on loopback", NULL);
	snprintf(url, sizeof(url), "ws://127.0.0.1:%d/", ntohs(sa.sin_port));
	if (pthread_create(&th, NULL, hostile_server, &h) != 0)
		die("pthread_create", NULL);
	sl = open_client(file, url, "slt_whatever", &r, groups_t1, 1);
	{
		synclog_config cfg = {.url = url, .token = "slt_whatever", .groups = groups_t1, .n_groups = 1,
		                      .connect_timeout_ms = 1000, .backoff_min_ms = 50, .backoff_max_ms = 200};

		if (synclog_connect(sl, &cfg) != SYNCLOG_OK)
			die("synclog_connect", sl);
	}
	t0 = now_ms();
	while (now_ms() - t0 < 60000 && (rc = synclog_run(sl, 100)) == SYNCLOG_OK)
		;
	pthread_join(th, NULL);
	close(h.lfd);
	printf("  %d DISCONNECTED, %d ERROR events, last error \"%s\"; run: %s\n", (int) r.n_disconnected,
	       (int) r.n_error, r.last_error, synclog_errmsg(sl));
	check(h.done && h.stage == 7, "hostile server: the client came back after each bad connection",
	      "stopped at stage %d", (int) h.stage);
	check(rc == SYNCLOG_EAUTH && strstr(synclog_errmsg(sl), "go away") != NULL,
	      "hostile server: unauthorized ends run with SYNCLOG_EAUTH and the server's message", "rc %d: %s",
	      rc, synclog_errmsg(sl));
	check(r.n_error >= 4, "hostile server: frames that are not JSON objects or malformed are ERROR events",
	      "%d ERROR events", (int) r.n_error);
	for (i = 0; i < r.n_changes && i < MAX_SEEN; i++)
		if (strcmp(r.changes[i].row, "frag-1") == 0)
			frag = i;
	check(frag >= 0 && strcmp(r.changes[frag].fields,
	                          "{\"team\":\"t1\",\"title\":\"frag\\u0020mented\",\"est\":0.1}") == 0,
	      "hostile server: a fragmented changes frame is reassembled; on_change gets the fields verbatim",
	      "%d changes; fields %s", r.n_changes, frag >= 0 ? r.changes[frag].fields : "-");
	check(r.saw_timeout && r.first_disconnect_ms - t0 >= 900 && r.first_disconnect_ms - t0 < 2500,
	      "hostile server: an upgrade never answered times out after connect_timeout_ms",
	      "timeout seen %d, first DISCONNECTED after %lld ms", r.saw_timeout,
	      (long long) (r.first_disconnect_ms - t0));
	check(r.n_disconnected >= 7, "hostile server: each bad connection ends in DISCONNECTED",
	      "%d DISCONNECTED", (int) r.n_disconnected);
	check(r.saw_cap, "hostile server: a message past 64 MiB drops the connection, saying so",
	      "no DISCONNECTED names the cap");
	synclog_close(sl);
}

int
main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : "";

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (strcmp(cmd, "init") == 0 && argc == 5)
		step_init(argv[2], argv[3], argv[4]);
	else if (strcmp(cmd, "offline") == 0 && argc == 5)
		step_offline(argv[2], argv[3], argv[4]);
	else if (strcmp(cmd, "push") == 0 && argc == 5)
		step_push(argv[2], argv[3], argv[4]);
	else if (strcmp(cmd, "pull") == 0 && argc == 5)
		step_pull(argv[2], argv[3], argv[4]);
	else if (strcmp(cmd, "reject") == 0 && argc == 5)
		step_reject(argv[2], argv[3], argv[4]);
	else if (strcmp(cmd, "badtoken") == 0 && argc == 4)
		step_badtoken(argv[2], argv[3]);
	else if (strcmp(cmd, "live") == 0 && argc == 7)
		step_live(argv[2], argv[3], argv[4], argv[5], argv[6]);
	else if (strcmp(cmd, "thread") == 0 && argc == 5)
		step_thread(argv[2], argv[3], argv[4]);
	else if (strcmp(cmd, "resend") == 0 && argc == 7)
		step_resend(argv[2], argv[3], argv[4], atoi(argv[5]), (pid_t) atoi(argv[6]));
	else if (strcmp(cmd, "hostile") == 0 && argc == 3)
		step_hostile(argv[2]);
	else if (strcmp(cmd, "lost") == 0 && argc == 6)
		step_lost(argv[2], argv[3], argv[4], (pid_t) atoi(argv[5]));
	else {
		fprintf(stderr, "usage: see the comment at the top of tests/client/test_sync.c\n");
		return 2;
	}
	return failures ? 1 : 0;
}

/*
 * gateway/db.c: the gateway's asynchronous libpq layer (see db.h for the
 * contract).
 *
 * One sl_db per gateway process (or per service thread), driven by that
 * thread's event loop; nothing here is shared or locked.  The connection goes
 * through an explicit state machine, sl_db_state:
 *
 *   DISCONNECTED --(retry time reached)--> CONNECTING --(PQconnectPoll OK,
 *   LISTENs sent)--> LISTENING --(both LISTENs COMMAND_OK)--> READY
 *
 * and any failure in CONNECTING, LISTENING or READY goes back to DISCONNECTED
 * with a retry time from the backoff (drop_connection()).  Queries are accepted
 * in every state but DISCONNECTED; they are only sent in READY, in queue
 * order, so results come back in queue order.
 *
 * Pipelining.  In READY the connection is in libpq's pipeline mode: up to
 * SL_DB_PIPELINE_MAX queries are sent ahead without waiting for the answers
 * before them, each followed by its own PQpipelineSync(), so each is still a
 * transaction of its own (the server commits it at its Sync) and an error in
 * one does not abort the next.  The server thus always has the next query
 * while the gateway's loop is busy elsewhere (writing to clients), instead of
 * idling until the loop comes back to read an answer and send the next one.
 * The queue's first n_sent queries are the ones sent; next_send is the first
 * one not sent.  The head's results are gathered until PQgetResult() returns
 * NULL (the last one kept), then its PGRES_PIPELINE_SYNC is awaited
 * (await_sync): only then, its transaction committed, does the callback get
 * the result (an error reported at commit, before the Sync, replaces it).
 * Callbacks run with the queue already consistent (the answered query removed
 * first), so they may queue more queries.
 *
 * A result that ends with the connection in CONNECTION_BAD (the server's FATAL
 * "terminating connection" error, then EOF) is not handed over as a result:
 * the query fails with SL_DB_ERR_UNAVAILABLE like every other queued one.
 *
 * Memory: each sl_db_query node owns copies of its SQL and parameters; the
 * queue is bounded by SL_DB_QUEUE_MAX.  PGresults are PQclear()ed here after
 * the callback returns; PGnotify structs are PQfreemem()ed after on_notify.
 */
#include "db.h"

#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The explicit connection state machine (see the header comment). */
typedef enum sl_db_state {
	SL_DB_DISCONNECTED, /* no connection; retry_at_ms says when to try again */
	SL_DB_CONNECTING,   /* PQconnectPoll in progress */
	SL_DB_LISTENING,    /* LISTEN statements in flight */
	SL_DB_READY,        /* connected: queries are being sent */
} sl_db_state;

/* One of these per queued query; owned by the queue until answered. */
typedef struct sl_db_query_node {
	struct sl_db_query_node *next;
	char *sql;
	int nparams;
	char **params; /* nparams copies, NULL elements for SQL NULL */
	sl_db_result_fn fn;
	void *arg;
} sl_db_query_node;

/* One of these per sl_db_new(). */
struct sl_db {
	char *conninfo;
	sl_db_callbacks cb;
	void *user;

	sl_db_state state;
	PGconn *conn;              /* NULL only in DISCONNECTED */
	PostgresPollingStatusType poll_want; /* CONNECTING: what PQconnectPoll waits for */
	int64_t deadline_ms;       /* CONNECTING: attempt limit; -1 until first seen */
	int64_t retry_at_ms;       /* DISCONNECTED: when to connect again */
	unsigned failures;         /* attempts failed in a row, for the backoff */
	uint64_t rng;              /* xorshift state for the jitter */

	bool in_flight;            /* LISTENING: the LISTENs were sent */
	bool flush_pending;        /* PQflush() returned 1: wait for POLLOUT */
	PGresult *last_result;     /* the head's latest result, not yet handed over */
	bool await_sync;           /* READY: the head's results are in, its Sync is not */

	sl_db_query_node *head, *tail;
	size_t queued;
	size_t n_sent;             /* READY: queries of the queue sent (the first ones) */
	sl_db_query_node *next_send; /* READY: the first query not sent, or NULL */
};

/* Queries sent ahead of their answers on one connection at most. */
#define SL_DB_PIPELINE_MAX 16

static void
db_log(sl_db *db, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Formats one line and hands it to on_log (if set). */
static void
db_log(sl_db *db, const char *fmt, ...)
{
	if (!db->cb.on_log)
		return;
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	db->cb.on_log(db->user, line);
}

/*
 * libpq's error message on one line: newlines become spaces, runs of spaces
 * one space, no leading or trailing space, into buf (always NUL-terminated).
 */
static const char *
conn_error(PGconn *conn, char *buf, size_t size)
{
	const char *msg = conn ? PQerrorMessage(conn) : "out of memory";
	size_t n = 0;
	for (; *msg && n + 1 < size; msg++) {
		char c = (*msg == '\n' || *msg == '\r' || *msg == '\t') ? ' ' : *msg;
		if (c == ' ' && (n == 0 || buf[n - 1] == ' '))
			continue; /* one space between words */
		buf[n++] = c;
	}
	while (n > 0 && buf[n - 1] == ' ')
		n--;
	buf[n] = '\0';
	if (n == 0)
		snprintf(buf, size, "unknown error");
	return buf;
}

static void
node_free(sl_db_query_node *q)
{
	if (!q)
		return;
	for (int i = 0; i < q->nparams; i++)
		free(q->params[i]);
	free(q->params);
	free(q->sql);
	free(q);
}

/* Removes and returns the head of the queue (NULL when empty). */
static sl_db_query_node *
queue_pop(sl_db *db)
{
	sl_db_query_node *q = db->head;
	if (!q)
		return NULL;
	db->head = q->next;
	if (!db->head)
		db->tail = NULL;
	db->queued--;
	q->next = NULL;
	return q;
}

/*
 * Fails every queued query with SL_DB_ERR_UNAVAILABLE, in order.  The queue is
 * detached first, so queries a callback queues meanwhile are not failed here.
 * Returns how many failed.
 */
static size_t
fail_all(sl_db *db)
{
	sl_db_query_node *q = db->head;
	size_t n = 0;
	db->head = db->tail = NULL;
	db->queued = 0;
	while (q) {
		sl_db_query_node *next = q->next;
		q->fn(q->arg, NULL, SL_DB_ERR_UNAVAILABLE);
		node_free(q);
		q = next;
		n++;
	}
	return n;
}

/* 100 ms doubling to 5 s for the failures-th failure in a row, minus up to 25% jitter. */
static int64_t
backoff_ms(sl_db *db)
{
	int64_t delay = SL_DB_BACKOFF_MIN_MS;
	for (unsigned i = 1; i < db->failures && delay < SL_DB_BACKOFF_MAX_MS; i++)
		delay *= 2;
	if (delay > SL_DB_BACKOFF_MAX_MS)
		delay = SL_DB_BACKOFF_MAX_MS;
	db->rng ^= db->rng << 13;
	db->rng ^= db->rng >> 7;
	db->rng ^= db->rng << 17;
	return delay - (int64_t) (db->rng % (uint64_t) (delay / 4 + 1));
}

/*
 * Closes the connection, goes to DISCONNECTED with a retry time, logs one line
 * (what: "connection failed" or "connection lost") and fails every queued
 * query.  Cannot fail.
 */
static void
drop_connection(sl_db *db, const char *what, int64_t now_ms)
{
	char err[256];
	conn_error(db->conn, err, sizeof err);
	if (db->last_result) {
		PQclear(db->last_result);
		db->last_result = NULL;
	}
	PQfinish(db->conn);
	db->conn = NULL;
	db->state = SL_DB_DISCONNECTED;
	db->in_flight = false;
	db->flush_pending = false;
	db->await_sync = false;
	db->n_sent = 0;
	db->next_send = NULL;
	db->failures++;
	int64_t delay = backoff_ms(db);
	db->retry_at_ms = now_ms + delay;
	size_t nq = db->queued;
	db_log(db, "db: %s: %s; %zu queries failed; retrying in %lld ms", what, err, nq,
		   (long long) delay);
	fail_all(db);
}

/*
 * Starts a connection attempt (state CONNECTING).  A PQconnectStart() that fails
 * at once leaves a CONNECTION_BAD conn with no socket; sl_db_next_timeout_ms()
 * then asks for an immediate sl_db_on_ready(), where PQconnectPoll() reports
 * the failure.  Cannot fail.
 */
/* libpq's notices and asynchronous errors (a FATAL "terminating
 * connection" arriving between queries): to on_log, not libpq's stderr. */
static void
notice_to_log(void *arg, const char *message)
{
	sl_db *db = arg;
	size_t n = strcspn(message, "\n");
	db_log(db, "db: server says: %.*s", (int) n, message);
}

static void
start_connect(sl_db *db)
{
	/* dbname with expand_dbname: the whole conninfo (key=value or URI) is
	 * used as given; fallback_application_name names the gateway in
	 * pg_stat_activity unless the conninfo sets application_name. */
	static const char *const keys[] = { "dbname", "fallback_application_name", NULL };
	const char *values[] = { db->conninfo, "synclog-gateway", NULL };

	db->conn = PQconnectStartParams(keys, values, 1);
	if (db->conn)
		PQsetNoticeProcessor(db->conn, notice_to_log, db);
	db->state = SL_DB_CONNECTING;
	db->poll_want = PGRES_POLLING_WRITING;
	db->deadline_ms = -1;
	db->in_flight = false;
	db->flush_pending = false;
	db->await_sync = false;
	db->n_sent = 0;
	db->next_send = NULL;
}

/* PQflush() in non-blocking mode; false when the connection broke. */
static bool
do_flush(sl_db *db)
{
	int r = PQflush(db->conn);
	if (r < 0)
		return false;
	db->flush_pending = (r == 1);
	return true;
}

/*
 * Connection established: non-blocking mode, send the LISTENs (state
 * LISTENING).  An sl_db without on_notify listens to nothing: it sends
 * "SELECT 1" instead, the same round trip proving the session usable.  False
 * when that fails (the caller drops the connection).
 */
static bool
start_listen(sl_db *db)
{
	if (PQsetnonblocking(db->conn, 1) != 0)
		return false;
	if (!PQsendQuery(db->conn, db->cb.on_notify ? "LISTEN synclog; LISTEN synclog_revoke"
	                                            : "SELECT 1"))
		return false;
	db->state = SL_DB_LISTENING;
	db->in_flight = true;
	return do_flush(db);
}

/* Hands every pending notification to on_notify. */
static void
deliver_notifies(sl_db *db)
{
	PGnotify *n;
	while (db->conn && (n = PQnotifies(db->conn)) != NULL) {
		if (db->cb.on_notify)
			db->cb.on_notify(db->user, n->relname, n->extra ? n->extra : "");
		PQfreemem(n);
	}
}

/*
 * LISTENING: the LISTENs' (or SELECT 1's) results, until the answer is
 * complete; then READY, in pipeline mode, every queued query still to send.
 * Returns false when the connection broke or the answer is an error.
 */
static bool
pump_listen(sl_db *db)
{
	while (db->in_flight) {
		if (PQisBusy(db->conn))
			return true;
		PGresult *r = PQgetResult(db->conn);
		if (r) {
			ExecStatusType st = PQresultStatus(r);
			PQclear(r);
			if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
				return false;
			continue;
		}
		db->in_flight = false;
		if (PQstatus(db->conn) == CONNECTION_BAD || PQenterPipelineMode(db->conn) != 1)
			return false;
		db->state = SL_DB_READY;
		db->failures = 0;
		db->n_sent = 0;
		db->await_sync = false;
		db->next_send = db->head;
		db_log(db, "db: connected to %s port %s (backend pid %d)%s",
			   PQhost(db->conn), PQport(db->conn), PQbackendPID(db->conn),
			   db->cb.on_notify ? ", listening" : "");
		if (db->cb.on_connected)
			db->cb.on_connected(db->user);
	}
	return true;
}

/* READY: sends queued queries until SL_DB_PIPELINE_MAX are out, each with its
 * Sync, and flushes.  False when the connection broke. */
static bool
send_ahead(sl_db *db)
{
	bool sent = false;
	while (db->next_send && db->n_sent < SL_DB_PIPELINE_MAX && !db->flush_pending) {
		sl_db_query_node *q = db->next_send;
		if (!PQsendQueryParams(db->conn, q->sql, q->nparams, NULL,
							   (const char *const *) q->params, NULL, NULL, 0) ||
			!PQpipelineSync(db->conn))
			return false;
		db->n_sent++;
		db->next_send = q->next;
		sent = true;
	}
	return !sent || do_flush(db);
}

/*
 * Sends, reads and delivers until libpq would block.  Returns false when the
 * connection broke (the caller drops it).
 */
static bool
pump(sl_db *db)
{
	for (;;) {
		if (PQstatus(db->conn) == CONNECTION_BAD)
			return false;
		if (db->state == SL_DB_LISTENING) {
			if (!pump_listen(db))
				return false;
			if (db->state != SL_DB_READY)
				return true;
		}
		if (!send_ahead(db))
			return false;
		if (db->n_sent == 0 || PQisBusy(db->conn))
			return true;
		PGresult *r = PQgetResult(db->conn);
		ExecStatusType st = r ? PQresultStatus(r) : PGRES_EMPTY_QUERY;
		if (r && (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH)) {
			/* Not supported (db.h): give up on this connection. */
			PQclear(r);
			return false;
		}
		if (!db->await_sync) {
			if (r) {
				if (db->last_result)
					PQclear(db->last_result);
				db->last_result = r;
			} else {
				db->await_sync = true; /* the head's results are complete */
			}
			continue;
		}
		if (!r)
			return true; /* nothing more until input arrives */
		if (st == PGRES_FATAL_ERROR) {
			/* the head's transaction failed at its commit */
			if (db->last_result)
				PQclear(db->last_result);
			db->last_result = r;
			continue;
		}
		PQclear(r);
		if (st != PGRES_PIPELINE_SYNC)
			return false; /* out of step with the pipeline: start afresh */
		/* The head's answer is complete, its transaction over. */
		db->await_sync = false;
		if (PQstatus(db->conn) == CONNECTION_BAD)
			return false; /* its result is the connection's death, not an answer */
		PGresult *res = db->last_result;
		db->last_result = NULL;
		sl_db_query_node *q = queue_pop(db);
		db->n_sent--;
		if (res)
			q->fn(q->arg, res, NULL);
		else
			q->fn(q->arg, NULL, SL_DB_ERR_UNAVAILABLE);
		PQclear(res);
		node_free(q);
	}
}

sl_db *
sl_db_new(const char *conninfo, const sl_db_callbacks *cb, void *user)
{
	sl_db *db = NULL;
	char *errmsg = NULL;
	if (!conninfo)
		conninfo = "";
	PQconninfoOption *opts = PQconninfoParse(conninfo, &errmsg);
	if (!opts)
		goto error;
	PQconninfoFree(opts);

	db = calloc(1, sizeof *db);
	if (!db)
		goto error;
	db->conninfo = strdup(conninfo);
	if (!db->conninfo)
		goto error;
	if (cb)
		db->cb = *cb;
	db->user = user;
	db->rng = (uint64_t) (uintptr_t) db ^ ((uint64_t) time(NULL) << 20) ^ 0x9e3779b97f4a7c15u;
	if (db->rng == 0)
		db->rng = 1;
	start_connect(db);
	return db;

error:
	PQfreemem(errmsg);
	if (db)
		free(db->conninfo);
	free(db);
	return NULL;
}

void
sl_db_free(sl_db *db)
{
	if (!db)
		return;
	if (db->last_result)
		PQclear(db->last_result);
	if (db->conn)
		PQfinish(db->conn);
	db->conn = NULL;
	db->state = SL_DB_DISCONNECTED;
	fail_all(db);
	free(db->conninfo);
	free(db);
}

int
sl_db_fd(sl_db *db)
{
	if (!db->conn)
		return -1;
	return PQsocket(db->conn);
}

short
sl_db_events(sl_db *db)
{
	if (!db->conn || PQsocket(db->conn) < 0)
		return 0;
	switch (db->state) {
	case SL_DB_DISCONNECTED:
		return 0;
	case SL_DB_CONNECTING:
		return db->poll_want == PGRES_POLLING_READING ? POLLIN : POLLOUT;
	case SL_DB_LISTENING:
		return POLLIN | (db->flush_pending ? POLLOUT : 0);
	case SL_DB_READY:
		if (db->flush_pending || (db->next_send && db->n_sent < SL_DB_PIPELINE_MAX))
			return POLLIN | POLLOUT;
		return POLLIN;
	}
	return 0;
}

int64_t
sl_db_next_timeout_ms(sl_db *db, int64_t now_ms)
{
	switch (db->state) {
	case SL_DB_DISCONNECTED:
		return db->retry_at_ms > now_ms ? db->retry_at_ms - now_ms : 0;
	case SL_DB_CONNECTING:
		if (!db->conn || PQsocket(db->conn) < 0)
			return 0;
		if (db->deadline_ms < 0)
			db->deadline_ms = now_ms + SL_DB_CONNECT_TIMEOUT_MS;
		return db->deadline_ms > now_ms ? db->deadline_ms - now_ms : 0;
	case SL_DB_LISTENING:
	case SL_DB_READY:
		return -1;
	}
	return -1;
}

void
sl_db_on_ready(sl_db *db, short revents, int64_t now_ms)
{
	if (db->state == SL_DB_DISCONNECTED) {
		if (now_ms < db->retry_at_ms)
			return;
		db_log(db, "db: connecting");
		start_connect(db);
	}

	if (db->state == SL_DB_CONNECTING) {
		if (db->deadline_ms < 0)
			db->deadline_ms = now_ms + SL_DB_CONNECT_TIMEOUT_MS;
		int fd = PQsocket(db->conn);
		short want = db->poll_want == PGRES_POLLING_READING ? POLLIN : POLLOUT;
		/* PQconnectPoll only when the socket is ready (or there is none). */
		for (int spins = 0; spins < 100 && (fd < 0 || (revents & (want | POLLERR | POLLHUP)));
			 spins++) {
			PostgresPollingStatusType st = PQconnectPoll(db->conn);
			if (st == PGRES_POLLING_FAILED) {
				drop_connection(db, "connection failed", now_ms);
				return;
			}
			if (st == PGRES_POLLING_OK) {
				if (!start_listen(db) || !pump(db))
					drop_connection(db, "connection failed", now_ms);
				deliver_notifies(db);
				return;
			}
			db->poll_want = st;
			/* The socket may be new (next host): wait for it afresh. */
			fd = PQsocket(db->conn);
			want = st == PGRES_POLLING_READING ? POLLIN : POLLOUT;
			revents = 0;
		}
		if (now_ms >= db->deadline_ms) {
			drop_connection(db, "connection failed (timed out)", now_ms);
		}
		return;
	}

	/* LISTENING or READY. */
	if (revents & (POLLIN | POLLERR | POLLHUP)) {
		if (!PQconsumeInput(db->conn)) {
			deliver_notifies(db);
			if (db->state == SL_DB_READY)
				drop_connection(db, "connection lost", now_ms);
			else
				drop_connection(db, "connection failed", now_ms);
			return;
		}
	}
	if (db->flush_pending && !do_flush(db)) {
		drop_connection(db, db->state == SL_DB_READY ? "connection lost" : "connection failed",
						now_ms);
		return;
	}
	bool ok = pump(db);
	if (db->conn)
		deliver_notifies(db);
	if (!ok)
		drop_connection(db, db->state == SL_DB_READY ? "connection lost" : "connection failed",
						now_ms);
}

int
sl_db_query(sl_db *db, const char *sql, int nparams, const char *const *params,
			sl_db_result_fn fn, void *arg)
{
	if (!db || !sql || !fn || nparams < 0 || (nparams > 0 && !params))
		return -1;
	if (db->state == SL_DB_DISCONNECTED || db->queued >= SL_DB_QUEUE_MAX)
		return -1;
	sl_db_query_node *q = calloc(1, sizeof *q);
	if (!q)
		return -1;
	q->fn = fn;
	q->arg = arg;
	q->sql = strdup(sql);
	if (!q->sql)
		goto error;
	if (nparams > 0) {
		q->params = calloc((size_t) nparams, sizeof *q->params);
		if (!q->params)
			goto error;
		for (int i = 0; i < nparams; i++) {
			q->nparams = i + 1;
			if (params[i] && !(q->params[i] = strdup(params[i])))
				goto error;
		}
	}
	if (db->tail)
		db->tail->next = q;
	else
		db->head = q;
	db->tail = q;
	db->queued++;
	if (db->state == SL_DB_READY && !db->next_send)
		db->next_send = q;
	return 0;

error:
	node_free(q);
	return -1;
}

bool
sl_db_connected(sl_db *db)
{
	return db && db->state == SL_DB_READY;
}

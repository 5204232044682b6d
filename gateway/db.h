/*
 * gateway/db.h: the gateway's asynchronous libpq layer, one PostgreSQL
 * connection driven by an outside event loop.
 *
 * An sl_db owns one libpq connection and a bounded FIFO of queries.  It connects
 * without blocking (PQconnectStart/PQconnectPoll, so a multi-host conninfo is
 * tried host after host by libpq), sends `LISTEN synclog` and
 * `LISTEN synclog_revoke` before anything else (only when the owner gave an
 * on_notify callback; otherwise a `SELECT 1`), then sends the queued queries
 * in queue order (PQsendQueryParams, text parameters), several ahead of their
 * answers (libpq's pipeline mode, each query still its own transaction), and
 * hands each its result, in queue order, once its transaction is over.  Notifications on those channels go to on_notify.  When the
 * connection breaks, every queued or in-flight query fails with
 * SL_DB_ERR_UNAVAILABLE, and the layer reconnects by itself with exponential
 * backoff (100 ms doubling to 5 s, with jitter), LISTENs again and calls
 * on_connected, so that the gateway re-reads changes from its lowest cursor.
 *
 * It knows nothing of libwebsockets: the event loop (lws, or poll() in the test)
 * asks for sl_db_fd(), sl_db_events() and sl_db_next_timeout_ms(), waits, and
 * calls sl_db_on_ready().  All of these and every callback run on the one thread
 * that owns the sl_db (the gateway's service thread); nothing here is locked
 * and an sl_db must not be touched from two threads.  Callbacks are only ever
 * called from sl_db_on_ready() and sl_db_free(), never from sl_db_new() or
 * sl_db_query().
 *
 * Words: the queue is the FIFO of queries not yet answered; the first few
 * (up to db.c's SL_DB_PIPELINE_MAX) may be in flight (sent, answer not
 * complete).  Connected
 * means the LISTENs have succeeded and queries are being sent.
 *
 * Ownership: the PGresult given to a result callback is borrowed: sl_db
 * PQclear()s it after the callback returns, so a callback that wants data
 * later copies it out.  Strings given to callbacks are valid only during the
 * call.  sl_db_query() copies the SQL and parameters.
 */
#ifndef SL_DB_H
#define SL_DB_H

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

/* The error string a query's callback gets when no answer will come. */
#define SL_DB_ERR_UNAVAILABLE "server_unavailable"

/* Most queries waiting in one sl_db's queue; sl_db_query() refuses more. */
#define SL_DB_QUEUE_MAX 10000

/* Backoff between connection attempts, and the limit of one attempt. */
#define SL_DB_BACKOFF_MIN_MS 100
#define SL_DB_BACKOFF_MAX_MS 5000
#define SL_DB_CONNECT_TIMEOUT_MS 10000

typedef struct sl_db sl_db;

/*
 * The answer to one query.  Exactly one of res and error is non-NULL:
 *   - res: the query's result, whatever its status (PGRES_TUPLES_OK,
 *     PGRES_COMMAND_OK, or PGRES_FATAL_ERROR for a query the server refused,
 *     such as a syntax error; the queue goes on).  Borrowed: sl_db PQclear()s
 *     it when the callback returns.
 *   - error: SL_DB_ERR_UNAVAILABLE when the connection failed or was lost
 *     before the answer was complete, or the sl_db is being freed.
 * The callback may call sl_db_query() (on the same sl_db or another), not
 * sl_db_free() on its own sl_db.
 */
typedef void (*sl_db_result_fn)(void *arg, PGresult *res, const char *error);

/*
 * What the owner hears; any member may be NULL.  `user` is sl_db_new()'s.
 *   on_connected: connected (LISTENs done), at the first connection and after
 *     each reconnection; queued queries are sent after it returns.
 *   on_notify: a notification on `synclog` or `synclog_revoke`; payload may be
 *     empty, never NULL.  When NULL, the connection LISTENs to nothing.
 *   Connections report libpq's notices (and a FATAL that arrives between
 *   queries) through on_log, and name themselves synclog-gateway in
 *   pg_stat_activity unless the conninfo sets application_name.
 *   on_log: one line (no newline, no password) per connection event, for the
 *     operator's log.
 * The same rules as for sl_db_result_fn: sl_db_query() yes, sl_db_free() no.
 */
typedef struct sl_db_callbacks {
	void (*on_connected)(void *user);
	void (*on_notify)(void *user, const char *channel, const char *payload);
	void (*on_log)(void *user, const char *line);
} sl_db_callbacks;

/*
 * Creates an sl_db and starts connecting (no blocking, no callback).  conninfo
 * is a libpq connection string or URI (empty: libpq's environment and
 * defaults); it is copied.  cb is copied.  Returns NULL when conninfo does not
 * parse or memory runs out; a server that is down is not a failure here, the
 * layer keeps retrying.  Free with sl_db_free().
 */
sl_db *sl_db_new(const char *conninfo, const sl_db_callbacks *cb, void *user);

/*
 * Closes the connection and frees the sl_db.  Every query still queued gets
 * its callback with SL_DB_ERR_UNAVAILABLE first, so its arg can be released.
 * Accepts NULL.  Never call it from one of this sl_db's callbacks.
 */
void sl_db_free(sl_db *db);

/*
 * The socket to wait on, or -1 when there is none (waiting to reconnect).  It
 * can change after any sl_db_on_ready() call (libpq opens a new socket for each
 * host it tries and each reconnection), so an event loop re-reads it each time.
 */
int sl_db_fd(sl_db *db);

/* POLLIN and/or POLLOUT: what to wait for on sl_db_fd() now; 0 when no socket. */
short sl_db_events(sl_db *db);

/*
 * Drives the layer: polls the connection attempt, reads and writes, delivers
 * results and notifications, notices a lost connection, starts a reconnection
 * when its time has come.  revents are poll() bits that happened on sl_db_fd()
 * (0 for a timer tick: always safe); now_ms is the caller's monotonic clock in
 * milliseconds (the same clock for every call).  Cannot fail: every problem
 * ends in a callback, an on_log line, or both.
 */
void sl_db_on_ready(sl_db *db, short revents, int64_t now_ms);

/*
 * Milliseconds until sl_db_on_ready() must be called even without socket
 * activity (0: now), or -1 when only socket activity matters.
 */
int64_t sl_db_next_timeout_ms(sl_db *db, int64_t now_ms);

/*
 * Queues a query: sql with nparams text parameters ($1...; a NULL element is
 * SQL NULL), copied.  fn(arg, ...) is called exactly once, later, from
 * sl_db_on_ready() or sl_db_free(), in queue order.  One statement only, no
 * COPY.  After a 0 return the caller re-reads sl_db_events() (it now asks for
 * POLLOUT to send).  Returns 0 when queued; -1 when not connected and not
 * connecting (waiting for a reconnection: answer server_unavailable yourself),
 * when the queue is full, on bad arguments or out of memory; fn is then never
 * called.
 */
int sl_db_query(sl_db *db, const char *sql, int nparams, const char *const *params,
				sl_db_result_fn fn, void *arg);

/* True when connected (LISTENs done, queries being sent). */
bool sl_db_connected(sl_db *db);

#endif /* SL_DB_H */

/*
 * gateway/gateway.h: what main.c (arguments, the lws context, the database
 * connections in the loop) and session.c (the lws protocol "synclog.v1",
 * fan-out) share.
 *
 * There is one gateway per process and one lws service thread, so the shared
 * state is one global struct, sl_gw, touched only from that thread (lws
 * callbacks, lws_sul timers, sl_db callbacks: all run inside lws_service()).
 * Nothing here is locked.
 *
 * Words, as in DESIGN.md and protocol.h: a session is one WebSocket connection
 * of protocol synclog.v1; its id is a number never reused within the process,
 * which is what a database result carries to find its session again (a
 * session that closed meanwhile is simply not found).
 *
 * Database connections: sl_gw.dbs[0] is the listener: it LISTENs, reads the
 * change stream for fan-out and checks revocations.  Sessions' own queries
 * (authenticate, backlog, push) go to dbs[1..n-1], each session pinned to one
 * of them, so its pushes are applied in the order it sent them (an sl_db
 * answers in queue order).  With --db-connections 1 everything shares dbs[0].
 */
#ifndef SL_GATEWAY_H
#define SL_GATEWAY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <libwebsockets.h>

#include "db.h"
#include "protocol.h"

/* The command line's settings (main.c's usage() lists them). */
typedef struct sl_config {
	sl_limits limits;          /* frame size, ops per push, ... (protocol.h) */
	int db_connections;        /* --db-connections, default 4 */
	size_t max_connections;    /* --max-connections, default 10000 */
	size_t max_pending_per_peer; /* --max-pending-per-peer, default 16; 0: no limit */
	int hello_timeout_s;       /* --hello-timeout, default 10 */
	int idle_timeout_s;        /* --idle-timeout, default 60 */
	size_t send_queue_bytes;   /* --send-queue-bytes, default 1 MiB */
	int socket_send_buffer;    /* --socket-send-buffer: SO_SNDBUF of client sockets, 0: the kernel's */
	char **origins;            /* --allow-origin, NULL-terminated, or NULL: any */
} sl_config;

/* One database connection of the gateway and its place in the lws loop. */
typedef struct sl_dbconn {
	sl_db *db;
	int index;                 /* in sl_gw.dbs */
	struct lws *wsi;           /* the adopted copy of its socket, or NULL */
	ino_t ino;                 /* identity of the socket adopted */
	lws_sorted_usec_list_t tick;
} sl_dbconn;

struct sl_sess; /* session.c's per-session data */

/* One of these per process (per gateway). */
typedef struct sl_gateway {
	struct lws_context *ctx;
	struct lws_vhost *vh;
	sl_config cfg;
	sl_dbconn *dbs;            /* cfg.db_connections of them; [0] listens */
	int n_dbs;
	uint64_t next_session_id;  /* ids handed to sessions, from 1 */
	struct sl_sess *sessions;  /* every session between ESTABLISHED and CLOSED */
	size_t n_sessions;
	uint64_t hlc_last;         /* the gateway's hybrid logical clock */
} sl_gateway;

extern sl_gateway sl_gw;

/* The lws protocol "synclog.v1" (session.c). */
int sl_session_callback(struct lws *wsi, enum lws_callback_reasons reason,
                        void *user, void *in, size_t len);
size_t sl_session_data_size(void);

/* Sessions from peer address addr (lws_get_peer_simple()'s text) that have
 * not been welcomed yet: what --max-pending-per-peer limits. */
size_t sl_sessions_pending_from(const char *addr);

/* Starts and stops session.c's timers (hello and idle timeouts). */
void sl_sessions_start(void);
void sl_sessions_stop(void);

/* Database notifications (from dbs[0]) and connections, forwarded by main.c. */
void sl_sessions_on_notify(const char *channel, const char *payload);
void sl_sessions_on_db_connected(int dbi);

/*
 * Queues a query on the gateway's database connection `dbi` and brings the
 * lws side up to date (POLLOUT interest, timer).  Same contract as
 * sl_db_query().
 */
int sl_gw_query(int dbi, const char *sql, int nparams, const char *const *params,
                sl_db_result_fn fn, void *arg);

/* The gateway's clock now, as 16 lowercase hex digits in out[17]. */
void sl_gw_hlc_now(char out[SL_HLC_LEN + 1]);
/* Advances the gateway's clock past a clock seen in a message (ignored when
 * not 16 hex digits or more than a minute ahead of the wall clock). */
void sl_gw_hlc_observe(const char *hlc);

/* Monotonic milliseconds. */
int64_t sl_gw_now_ms(void);

/* One line to stderr, prefixed "synclog-gateway: ". */
void sl_gw_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif /* SL_GATEWAY_H */

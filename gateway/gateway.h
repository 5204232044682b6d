/*
 * gateway/gateway.h: what main.c (arguments, the lws context, the database
 * glue) and session.c (the lws protocol "synclog.v1") share.
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
 */
#ifndef SL_GATEWAY_H
#define SL_GATEWAY_H

#include <stdbool.h>
#include <stdint.h>

#include <libwebsockets.h>

#include "db.h"
#include "protocol.h"

/* Bytes of frames one session may have queued for sending; past it the
 * session gets an error and is closed (it resumes from its cursor). */
#define SL_SEND_QUEUE_MAX_BYTES (1024 * 1024)

struct sl_sess; /* session.c's per-session data */

/* One of these per process (per gateway). */
typedef struct sl_gateway {
	struct lws_context *ctx;
	struct lws_vhost *vh;
	sl_limits limits;
	sl_db *db;
	uint64_t next_session_id;  /* ids handed to sessions, from 1 */
	struct sl_sess *sessions;  /* every session in PROTOCOL_INIT..DESTROY */
	uint64_t hlc_last;         /* the gateway's hybrid logical clock */
} sl_gateway;

extern sl_gateway sl_gw;

/* The lws protocol "synclog.v1" (session.c). */
int sl_session_callback(struct lws *wsi, enum lws_callback_reasons reason,
                        void *user, void *in, size_t len);
size_t sl_session_data_size(void);

/* Database notifications and reconnections, forwarded by main.c. */
void sl_sessions_on_notify(const char *channel, const char *payload);
void sl_sessions_on_db_connected(void);

/*
 * Queues a query on the gateway's sl_db and brings the lws side up to date
 * (POLLOUT interest, timer).  Same contract as sl_db_query().
 */
int sl_gw_query(const char *sql, int nparams, const char *const *params,
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

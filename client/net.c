/*
 * client/net.c: the network side of libsynclog (synclog.h): one WebSocket
 * connection to a synclog gateway (PROTOCOL.md, subprotocol synclog.v1)
 * through a libwebsockets 4.1 client context owned by the handle, driven by
 * synclog_run() (reconnecting with jittered backoff) and synclog_sync() (one
 * attempt, returns once caught up).  Frames are parsed with jansson and
 * handed to the store (store.h) as text, so the store and the wire agree on
 * every number: push frames are built by hand around each op's fields text,
 * never re-encoded.
 *
 * Threads and the lock.  The handle's lock (sl->lock, recursive) guards
 * every field here; the public functions in synclog.c take it once before
 * calling in.  The thread inside run or sync (one at a time: `in_loop`)
 * releases it only around lws_service(), setting `servicing` meanwhile; every
 * lws callback, which lws calls inside lws_service() on that thread, takes it
 * again, and so do the application's callbacks run from there (the contract
 * of synclog.h: callbacks run with the lock held).  While `servicing`, another
 * thread holding the lock (synclog_disconnect, synclog_connect) must not call
 * into lws: a connection it drops goes to `zombies`, which the service thread
 * closes after lws_service() returns, and lws_cancel_service() wakes it.
 * synclog_wakeup() takes no lock: it calls lws_cancel_service() on
 * sl->wake_ctx, which is set when the context is made and cleared before it
 * is destroyed (only by synclog_close, when no other thread may use the
 * handle).
 *
 * Waiting.  lws_service() in 4.1 ignores its timeout: it polls until the next
 * lws timer.  Each loop turn therefore schedules `sul` at its own deadline
 * (the run's end, the next retry, the attempt's timeout), so poll() never
 * sleeps past it; a turn with no time left polls without waiting.
 *
 * Connection states (enum sl_net_state): IDLE (none; the next attempt is due
 * at retry_ms), CONNECTING (TCP/TLS/upgrade under way), HELLO (upgraded, hello
 * sent or about to be, waiting for welcome), LIVE (welcomed: pushes go out,
 * changes come in), AUTH_FAILED (the server said unauthorized: no attempt
 * until the next synclog_connect).  Leaving CONNECTING/HELLO/LIVE always goes
 * through conn_end(), which says SYNCLOG_EV_DISCONNECTED once and schedules the
 * retry.
 *
 * Pushing.  `sent_seq` is the outbox seq of the last op sent on this
 * connection (0 on each new one: every unacked op is resent, same ids, and
 * the server acks a duplicate without applying it twice).  At most
 * SL_NET_MAX_INFLIGHT push frames wait for their ack, each of at most
 * batch_ops ops and about SL_NET_PUSH_BYTES of JSON.  An `error` frame while
 * pushes are unanswered may be the answer to one of them (server_unavailable:
 * "the push was not applied"), so the connection is dropped and everything
 * unacked is resent on the next one.
 *
 * jansson references are marked "new" (ours to json_decref) or "borrowed".
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <libwebsockets.h>

#include "synclog.h"
#include "synclog_int.h"

#define SL_NET_MAX_INFLIGHT 4               /* push frames awaiting their ack */
#define SL_NET_PUSH_BYTES (256 * 1024)      /* about this much JSON per push frame */
#define SL_NET_MAX_FRAME (64u * 1024 * 1024) /* a longer incoming message drops the connection */
#define SL_NET_SETTLE_MS 2000               /* sync: how long acked ops' changes are awaited */
#define SL_NET_MAX_ZOMBIES 8
#define SL_NET_PROTOCOL "synclog.v1"

typedef enum sl_net_state {
	SL_NET_IDLE,
	SL_NET_CONNECTING,
	SL_NET_HELLO,
	SL_NET_LIVE,
	SL_NET_AUTH_FAILED
} sl_net_state;

/* One of these per handle, from the first synclog_connect to synclog_close. */
struct sl_net {
	/* the configuration, copied by sl_net_connect; strings owned */
	char *url, *host, *path, *token;
	int port;
	bool tls;
	char **groups;
	size_t n_groups;
	int connect_timeout_ms, backoff_min_ms, backoff_max_ms, batch_ops;

	struct lws_context *ctx;     /* made by the first run or sync */
	bool ctx_tls;                /* ctx was made with TLS (it serves ws:// too) */
	struct lws_context *old_ctx; /* a context without TLS replaced by one with it */
	lws_sorted_usec_list_t sul;  /* wakes lws_service at the turn's deadline */
	bool in_loop;                /* a thread is inside run or sync */
	bool servicing;              /* ... and inside lws_service, lock released */
	synclog *sl;                 /* the handle (the lws context's user is this struct) */
	atomic_uint wake_gen;        /* synclog_wakeup calls, counted without the lock */
	bool freeing;                /* sl_net_free: no more events */
	struct lws *zombies[SL_NET_MAX_ZOMBIES]; /* dropped while servicing, to close */
	int n_zombies;

	/* the connection */
	sl_net_state state;
	struct lws *wsi;             /* the current connection, or NULL */
	bool connecting_now;         /* inside lws_client_connect_via_info */
	int64_t attempt_ms;          /* when the current attempt started */
	int64_t retry_ms;            /* IDLE: when the next attempt is due */
	int backoff_ms;              /* the next retry delay's ceiling */
	uint64_t rng;                /* xorshift state, for the jitter */
	char reason[400];            /* why the last connection ended */
	bool ended_welcomed;         /* the connection that ended had been welcomed */

	/* per connection, reset by conn_reset */
	bool hello_sent;
	uint64_t welcome_cursor;
	char *granted;               /* welcome.groups as JSON text, or NULL */
	int64_t sent_seq;            /* last outbox seq pushed on this connection */
	int inflight;                /* push frames not answered */
	bool snap_open;              /* a snapshot is being received */
	bool dirty;                  /* the outbox may hold ops not pushed yet */
	int64_t settle_ms;           /* welcome or the last ack: sync's settle clock */
	char *rx;                    /* the incoming message being reassembled */
	size_t rx_len, rx_cap;
	int close_code;              /* from the server's close frame, or 0 */
	char close_text[124];

	/* a local failure for run or sync to return */
	int fatal;
	char fatal_msg[512];
	char auth_msg[256];          /* the server's message with `unauthorized` */
};

/* ---------------------------------------------------------------- helpers */

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t
rng_next(struct sl_net *n)
{
	uint64_t x = n->rng;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return n->rng = x;
}

/* A growable string; on allocation failure oom is set and appends stop. */
typedef struct nbuf {
	char *p;
	size_t len, cap;
	bool oom;
} nbuf;

static void
nb_add(nbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		char *p;

		while (cap < b->len + n + 1)
			cap *= 2;
		if ((p = realloc(b->p, cap)) == NULL) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void
nb_str(nbuf *b, const char *s)
{
	nb_add(b, s, strlen(s));
}

/* Appends s as a JSON string literal (quotes, escapes; UTF-8 passes through). */
static void
nb_jstr(nbuf *b, const char *s)
{
	const unsigned char *p = (const unsigned char *) (s ? s : "");
	char esc[8];

	nb_add(b, "\"", 1);
	for (; *p; p++) {
		if (*p == '"' || *p == '\\') {
			esc[0] = '\\';
			esc[1] = (char) *p;
			nb_add(b, esc, 2);
		} else if (*p < 0x20) {
			snprintf(esc, sizeof(esc), "\\u%04x", *p);
			nb_add(b, esc, 6);
		} else {
			nb_add(b, (const char *) p, 1);
		}
	}
	nb_add(b, "\"", 1);
}

/* ---------------------------------------------------------------- raw JSON spans */

/*
 * A minimal scanner over JSON text the parser already accepted, to hand the
 * application each change's object and fields exactly as the server wrote
 * them (a jansson round trip would turn 0.1 into 0.10000000000000001).  Each
 * returns the end of what it skipped, or NULL when the text is not as
 * expected (the caller then falls back to jansson's encoding).
 */
static const char *
skip_ws(const char *p, const char *e)
{
	while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

static const char *
skip_string(const char *p, const char *e)
{
	if (p >= e || *p != '"')
		return NULL;
	for (p++; p < e; p++) {
		if (*p == '\\')
			p++;
		else if (*p == '"')
			return p + 1;
	}
	return NULL;
}

static const char *
skip_value(const char *p, const char *e)
{
	int depth = 0;

	if (p >= e)
		return NULL;
	if (*p == '"')
		return skip_string(p, e);
	if (*p != '{' && *p != '[') {
		while (p < e && !strchr(",}] \t\r\n", *p))
			p++;
		return p;
	}
	while (p < e) {
		if (*p == '"') {
			if ((p = skip_string(p, e)) == NULL)
				return NULL;
			continue;
		}
		if (*p == '{' || *p == '[')
			depth++;
		else if ((*p == '}' || *p == ']') && --depth == 0)
			return p + 1;
		p++;
	}
	return NULL;
}

/*
 * In the object at p, the value of key (written without escapes): true and
 * its span.  When the key is there more than once, the last one, as jansson
 * (and so the store) reads it.
 */
static bool
find_key(const char *p, const char *e, const char *key, const char **vs, const char **ve)
{
	size_t klen = strlen(key);
	bool found = false;

	p = skip_ws(p, e);
	if (p >= e || *p != '{')
		return false;
	p = skip_ws(p + 1, e);
	while (p < e && *p == '"') {
		const char *ks = p + 1, *kend = skip_string(p, e), *v, *vend;

		if (kend == NULL)
			return false;
		p = skip_ws(kend, e);
		if (p >= e || *p != ':')
			return false;
		v = skip_ws(p + 1, e);
		if ((vend = skip_value(v, e)) == NULL)
			return false;
		if ((size_t) (kend - 1 - ks) == klen && memcmp(ks, key, klen) == 0) {
			*vs = v;
			*ve = vend;
			found = true;
		}
		p = skip_ws(vend, e);
		if (p < e && *p == ',')
			p = skip_ws(p + 1, e);
	}
	return found;
}

/*
 * The spans of the elements of the array at p: up to max of them in
 * starts/ends; returns how many there are, or -1 when p is not an array.
 */
static long
array_spans(const char *p, const char *e, const char **starts, const char **ends, size_t max)
{
	long n = 0;

	p = skip_ws(p, e);
	if (p >= e || *p != '[')
		return -1;
	p = skip_ws(p + 1, e);
	while (p < e && *p != ']') {
		const char *v = skip_value(p, e);

		if (v == NULL)
			return -1;
		if ((size_t) n < max) {
			starts[n] = p;
			ends[n] = v;
		}
		n++;
		p = skip_ws(v, e);
		if (p < e && *p == ',')
			p = skip_ws(p + 1, e);
		else if (p < e && *p != ']')
			return -1;
	}
	return n;
}

/* ---------------------------------------------------------------- connection life */

static void conn_end(synclog *sl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Forgets what belonged to the connection that ended. */
static void
conn_reset(struct sl_net *n)
{
	n->hello_sent = false;
	n->welcome_cursor = 0;
	free(n->granted);
	n->granted = NULL;
	n->sent_seq = 0;
	n->inflight = 0;
	n->snap_open = false;
	n->dirty = true;
	n->settle_ms = 0;
	n->rx_len = 0;
	n->close_code = 0;
	n->close_text[0] = '\0';
}

/*
 * Closes wsi, or, while another thread services lws, hands it to that
 * thread (zombies).  The caller has already detached it (n->wsi no longer
 * names it), so its callbacks are ignored.
 */
static void
kill_wsi(synclog *sl, struct lws *wsi)
{
	struct sl_net *n = sl->net;

	if (wsi == NULL)
		return;
	if (n->servicing) {
		if (n->n_zombies < SL_NET_MAX_ZOMBIES)
			n->zombies[n->n_zombies++] = wsi;
		/* else: lws closes it with the context, at synclog_close */
		if (n->ctx)
			lws_cancel_service(n->ctx);
		return;
	}
	lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
}

/* Closes the zombies; only on the servicing thread, outside lws_service. */
static void
reap_zombies(synclog *sl)
{
	struct sl_net *n = sl->net;

	while (n->n_zombies > 0) {
		struct lws *w = n->zombies[--n->n_zombies];

		lws_set_timeout(w, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
	}
}

/*
 * The current connection ended (or could not be made): detaches it, says
 * SYNCLOG_EV_DISCONNECTED with the reason and schedules the next attempt
 * after the backoff (a random delay in [d/2, d], d doubling up to
 * backoff_max_ms).  Does not close the wsi: the caller returns -1 from its
 * callback or calls kill_wsi.
 */
static void
conn_end(synclog *sl, const char *fmt, ...)
{
	struct sl_net *n = sl->net;
	va_list ap;
	int d;

	va_start(ap, fmt);
	vsnprintf(n->reason, sizeof(n->reason), fmt, ap);
	va_end(ap);
	n->ended_welcomed = n->state == SL_NET_LIVE;
	n->wsi = NULL;
	conn_reset(n);
	if (n->state != SL_NET_AUTH_FAILED) {
		n->state = SL_NET_IDLE;
		d = n->backoff_ms > 0 ? n->backoff_ms : 1;
		n->retry_ms = now_ms() + d / 2 + (int64_t) (rng_next(n) % (uint64_t) (d - d / 2 + 1));
		n->backoff_ms = d > n->backoff_max_ms / 2 ? n->backoff_max_ms : d * 2;
	}
	if (!n->freeing)
		sl_event(sl, SYNCLOG_EV_DISCONNECTED, n->reason);
}

/* Drops the current connection from outside its callbacks, if there is one. */
static void
conn_drop(synclog *sl, const char *why)
{
	struct sl_net *n = sl->net;
	struct lws *w = n->wsi;

	if (n->state != SL_NET_CONNECTING && n->state != SL_NET_HELLO && n->state != SL_NET_LIVE)
		return;
	conn_end(sl, "%s", why);
	kill_wsi(sl, w);
}

/*
 * A local failure (the store's file, memory) while handling a frame: run
 * and sync return rc with msg; SYNCLOG_EV_ERROR says it now.  The caller
 * then ends the connection.
 */
static void
local_fail(synclog *sl, int rc, const char *what)
{
	struct sl_net *n = sl->net;
	char detail[600];

	if (n->fatal == SYNCLOG_OK) {
		n->fatal = rc;
		snprintf(n->fatal_msg, sizeof(n->fatal_msg), "%s: %s", what, sl_store_errmsg(sl->store));
	}
	snprintf(detail, sizeof(detail), "local: %s: %s", what, sl_store_errmsg(sl->store));
	sl_event(sl, SYNCLOG_EV_ERROR, detail);
}

static void sul_cb(lws_sorted_usec_list_t *sul) { (void) sul; }

static int net_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                        size_t len);

static const struct lws_protocols sl_protocols[] = {
	{SL_NET_PROTOCOL, net_callback, 0, 65536, 0, NULL, 0},
	{NULL, NULL, 0, 0, 0, NULL, 0}
};

static pthread_once_t log_once = PTHREAD_ONCE_INIT;
static void quiet_lws(void) { lws_set_log_level(LLL_ERR, NULL); }

/*
 * Makes the lws context if there is none yet, or none with TLS for a wss://
 * url: SYNCLOG_OK or SYNCLOG_ENOMEM.  TLS is initialized only when needed
 * (OpenSSL's start-up is slow).  A context without TLS that a wss:// url
 * replaces is kept, unused, until sl_net_free, because synclog_wakeup may
 * still hold it.
 */
static int
ensure_ctx(synclog *sl)
{
	struct sl_net *n = sl->net;
	struct lws_context_creation_info info;
	struct lws_context *ctx;

	if (n->ctx != NULL && (n->ctx_tls || !n->tls))
		return SYNCLOG_OK;
	if (n->ctx != NULL && n->old_ctx != NULL)
		return sl_err(sl, SYNCLOG_ENOMEM, "cannot make a third WebSocket client context");
	pthread_once(&log_once, quiet_lws);
	memset(&info, 0, sizeof(info));
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = sl_protocols;
	info.user = n;
	info.fd_limit_per_thread = 1 + 1 + 2 * SL_NET_MAX_ZOMBIES;
	info.options = n->tls ? LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT : 0;
	if ((ctx = lws_create_context(&info)) == NULL)
		return sl_err(sl, SYNCLOG_ENOMEM, "cannot create the WebSocket client context%s",
		              n->tls ? " with TLS" : "");
	if (n->ctx != NULL) {
		conn_drop(sl, "switching to a TLS context");
		reap_zombies(sl);
		n->old_ctx = n->ctx;
	}
	n->ctx = ctx;
	n->ctx_tls = n->tls;
	atomic_store(&sl->wake_ctx, (void *) n->ctx);
	return SYNCLOG_OK;
}

/* Starts one connection attempt now; its failure, if any, goes through conn_end. */
static void
start_attempt(synclog *sl)
{
	struct sl_net *n = sl->net;
	struct lws_client_connect_info ci;
	struct lws *w;

	conn_reset(n);
	memset(&ci, 0, sizeof(ci));
	ci.context = n->ctx;
	ci.address = n->host;
	ci.port = n->port;
	ci.path = n->path;
	ci.host = n->host;
	ci.origin = n->host;
	ci.protocol = SL_NET_PROTOCOL;
	ci.ssl_connection = n->tls ? LCCSCF_USE_SSL : 0;
	n->state = SL_NET_CONNECTING;
	n->attempt_ms = now_ms();
	n->wsi = NULL;
	n->connecting_now = true;
	w = lws_client_connect_via_info(&ci);
	n->connecting_now = false;
	if (n->state != SL_NET_CONNECTING)
		return; /* a callback already ended it (and lws returns NULL then) */
	if (w == NULL) {
		conn_end(sl, "cannot connect to %s: the connection could not be started", n->url);
		return;
	}
	n->wsi = w;
}

/* ---------------------------------------------------------------- frames out */

static int
send_text(struct lws *wsi, nbuf *b)
{
	size_t len = b->len - LWS_PRE;

	return lws_write(wsi, (unsigned char *) b->p + LWS_PRE, len, LWS_WRITE_TEXT) < (int) len ? -1 : 0;
}

/* Returns 0, or -1 after conn_end (the caller returns -1 to lws). */
static int
send_hello(synclog *sl, struct lws *wsi)
{
	struct sl_net *n = sl->net;
	json_t *groups = json_array(), *hello; /* new */
	char hlc[17], *text;
	nbuf b = {0};
	size_t i;
	int rc;

	for (i = 0; groups && i < n->n_groups; i++)
		if (json_array_append_new(groups, json_string(n->groups[i])) != 0)
			break;
	snprintf(hlc, sizeof(hlc), "%016" PRIx64, sl_store_hlc(sl->store));
	/* "o" steals groups, also on failure */
	hello = groups ? json_pack("{s:s, s:s, s:s, s:o, s:I, s:s}", "type", "hello", "client_id",
	                           sl_store_client_id(sl->store), "token", n->token, "groups", groups,
	                           "cursor", (json_int_t) sl_store_cursor(sl->store), "hlc", hlc)
	               : NULL;
	text = hello ? json_dumps(hello, JSON_COMPACT) : NULL;
	json_decref(hello);
	if (text == NULL) {
		sl_err(sl, SYNCLOG_ENOMEM, "out of memory");
		n->fatal = SYNCLOG_ENOMEM;
		snprintf(n->fatal_msg, sizeof(n->fatal_msg), "out of memory building the hello");
		conn_end(sl, "out of memory");
		return -1;
	}
	nb_add(&b, (char[LWS_PRE]){0}, LWS_PRE);
	nb_str(&b, text);
	free(text);
	rc = b.oom ? -1 : send_text(wsi, &b);
	free(b.p);
	if (rc != 0) {
		conn_end(sl, "cannot send the hello to %s", n->url);
		return -1;
	}
	n->hello_sent = true;
	return 0;
}

struct push_ctx {
	struct sl_net *n;
	nbuf b;
	int ops;
	int64_t last_seq;
};

static int
push_one(void *vctx, const sl_store_op *op)
{
	struct push_ctx *pc = vctx;
	size_t mark = pc->b.len;
	bool del = strcmp(op->kind, "delete") == 0;

	if (pc->ops > 0)
		nb_add(&pc->b, ",", 1);
	nb_str(&pc->b, "{\"id\":");
	nb_jstr(&pc->b, op->op_id);
	nb_str(&pc->b, ",\"table\":");
	nb_jstr(&pc->b, op->table);
	nb_str(&pc->b, ",\"row\":");
	nb_jstr(&pc->b, op->row);
	nb_str(&pc->b, ",\"kind\":");
	nb_jstr(&pc->b, op->kind);
	if (!del) {
		nb_str(&pc->b, ",\"fields\":");
		nb_str(&pc->b, op->fields && op->fields[0] ? op->fields : "{}"); /* verbatim */
	}
	nb_str(&pc->b, ",\"hlc\":");
	nb_jstr(&pc->b, op->hlc);
	nb_add(&pc->b, "}", 1);
	if (pc->b.oom)
		return 1;
	if (pc->ops > 0 && pc->b.len > SL_NET_PUSH_BYTES + LWS_PRE) {
		pc->b.len = mark; /* this op starts the next frame */
		pc->b.p[mark] = '\0';
		return 1;
	}
	pc->ops++;
	pc->last_seq = op->seq;
	return pc->ops >= pc->n->batch_ops || pc->b.len >= SL_NET_PUSH_BYTES + LWS_PRE;
}

/*
 * Sends the next push frame, if there are unsent ops and room in flight; asks
 * for writable again while both remain.  Returns 0, or -1 after conn_end.
 */
static int
send_push(synclog *sl, struct lws *wsi)
{
	struct sl_net *n = sl->net;
	struct push_ctx pc = {.n = n};
	int rc;

	if (n->inflight >= SL_NET_MAX_INFLIGHT)
		return 0;
	nb_add(&pc.b, (char[LWS_PRE]){0}, LWS_PRE);
	nb_str(&pc.b, "{\"type\":\"push\",\"ops\":[");
	rc = sl_store_pending_after(sl->store, n->sent_seq, push_one, &pc);
	if (rc != SL_OK || pc.b.oom) {
		free(pc.b.p);
		if (rc == SL_OK)
			rc = SYNCLOG_ENOMEM;
		local_fail(sl, rc, "reading the outbox");
		conn_end(sl, "local failure: %s", n->fatal_msg);
		return -1;
	}
	if (pc.ops == 0) {
		free(pc.b.p);
		n->dirty = false; /* until a write (synclog_wakeup) or an ack */
		return 0;
	}
	nb_str(&pc.b, "]}");
	rc = pc.b.oom ? -1 : send_text(wsi, &pc.b);
	free(pc.b.p);
	if (rc != 0) {
		conn_end(sl, "cannot send a push to %s", n->url);
		return -1;
	}
	n->inflight++;
	n->sent_seq = pc.last_seq;
	if (n->inflight < SL_NET_MAX_INFLIGHT)
		lws_callback_on_writable(wsi);
	return 0;
}

/* ---------------------------------------------------------------- frames in */

static void
forward_reject(void *ctx, const char *op_id, const char *table, const char *row, const char *code,
               const char *message)
{
	synclog *sl = ctx;

	if (sl->on_reject != NULL)
		sl->on_reject(sl->reject_ctx, op_id, table, row, code ? code : "", message ? message : "");
}

/*
 * Calls on_change for each change of frame (borrowed) that the store applied:
 * by sl_store_apply_changes's rule, those whose seq is above old_cursor and
 * above every seq before it in the frame (a change out of order or repeated
 * in a frame is skipped there, so it is not reported here either).  text/len
 * is the frame as received, for the exact spans of each change and its
 * fields.
 */
static void
report_changes(synclog *sl, const json_t *frame, const char *text, size_t len, uint64_t old_cursor)
{
	const json_t *changes = json_object_get(frame, "changes"), *c; /* borrowed */
	const char *e = text + len, *as, *ae, **starts = NULL, **ends = NULL;
	size_t i, count = json_array_size(changes);
	bool raw = false;

	if (sl->on_change == NULL || count == 0)
		return;
	starts = malloc(count * sizeof(*starts));
	ends = malloc(count * sizeof(*ends));
	if (starts && ends && find_key(text, e, "changes", &as, &ae) &&
	    array_spans(as, ae, starts, ends, count) == (long) count)
		raw = true;
	json_array_foreach(changes, i, c) {
		const json_t *seq = json_object_get(c, "seq");
		char *json = NULL, *fields = NULL;
		const char *fs, *fe;
		synclog_change ch;

		if (!json_is_integer(seq) || json_integer_value(seq) < 0 ||
		    (uint64_t) json_integer_value(seq) <= old_cursor)
			continue;
		old_cursor = (uint64_t) json_integer_value(seq); /* the store's `last` */
		if (raw) {
			json = strndup(starts[i], (size_t) (ends[i] - starts[i]));
			if (find_key(starts[i], ends[i], "fields", &fs, &fe))
				fields = strndup(fs, (size_t) (fe - fs));
			else
				fields = strdup("{}");
		} else {
			const json_t *f = json_object_get(c, "fields");

			json = json_dumps(c, JSON_COMPACT);
			fields = f ? json_dumps(f, JSON_COMPACT | JSON_ENCODE_ANY) : strdup("{}");
		}
		if (json == NULL || fields == NULL) {
			free(json);
			free(fields);
			continue; /* out of memory: the change is applied, only not reported */
		}
		memset(&ch, 0, sizeof(ch));
		ch.seq = (uint64_t) json_integer_value(seq);
#define STR(k) (json_is_string(json_object_get(c, k)) ? json_string_value(json_object_get(c, k)) : "")
		ch.op_id = STR("op_id");
		ch.client_id = STR("client_id");
		ch.table = STR("table");
		ch.row = STR("row");
		ch.kind = STR("kind");
		ch.hlc = STR("hlc");
#undef STR
		ch.fields = fields;
		ch.json = json;
		sl->on_change(sl->change_ctx, &ch);
		free(json);
		free(fields);
	}
	free(starts);
	free(ends);
}

/*
 * A store call on a frame failed with rc: a local failure (SL_EDB,
 * SL_ENOMEM) is returned by run/sync; a malformed or unacceptable frame
 * (SL_EINVAL, SL_ESKEW, SL_ERANGE) is the server's and only drops the
 * connection.  Either way the connection ends.  Returns -1.
 */
static int
frame_failed(synclog *sl, int rc, const char *what)
{
	char detail[700];

	if (rc == SL_EDB || rc == SL_ENOMEM) {
		local_fail(sl, rc, what);
		conn_end(sl, "local failure: %s", sl->net->fatal_msg);
	} else {
		snprintf(detail, sizeof(detail), "bad_frame: %s: %s", what, sl_store_errmsg(sl->store));
		sl_event(sl, SYNCLOG_EV_ERROR, detail);
		conn_end(sl, "the server's frame was refused (%s)", detail);
	}
	return -1;
}

static int
on_welcome(synclog *sl, struct lws *wsi, const json_t *f)
{
	struct sl_net *n = sl->net;
	const json_t *tables = json_object_get(f, "tables"), *cur = json_object_get(f, "cursor");
	const json_t *groups = json_object_get(f, "groups"); /* borrowed */
	char *text, detail[32];
	int rc;

	if (n->state != SL_NET_HELLO)
		return 0; /* a second welcome: ignored */
	if (json_is_object(tables)) {
		if ((text = json_dumps(tables, JSON_COMPACT)) == NULL)
			return frame_failed(sl, SL_ENOMEM, "welcome.tables");
		rc = sl_store_ensure_tables(sl->store, text);
		free(text);
		if (rc != SL_OK) {
			/* the app's tables cannot take the server's: every attempt would fail */
			local_fail(sl, rc, "creating the server's tables");
			conn_end(sl, "local failure: %s", n->fatal_msg);
			return -1;
		}
	}
	n->welcome_cursor = json_is_integer(cur) && json_integer_value(cur) > 0
	                        ? (uint64_t) json_integer_value(cur) : 0;
	free(n->granted);
	n->granted = json_is_array(groups) ? json_dumps(groups, JSON_COMPACT) : NULL;
	n->state = SL_NET_LIVE;
	n->backoff_ms = n->backoff_min_ms;
	n->settle_ms = now_ms();
	snprintf(detail, sizeof(detail), "%" PRIu64, n->welcome_cursor);
	sl_event(sl, SYNCLOG_EV_CONNECTED, detail);
	if (wsi != NULL) /* NULL: a frame fed by sl_net_feed */
		lws_callback_on_writable(wsi);
	return 0;
}

static int
on_changes(synclog *sl, const json_t *f, const char *text, size_t len)
{
	uint64_t old = sl_store_cursor(sl->store);
	int rc;

	if (sl->net->state != SL_NET_LIVE)
		return 0;
	if ((rc = sl_store_apply_changes(sl->store, text)) != SL_OK)
		return frame_failed(sl, rc, "applying a changes frame");
	report_changes(sl, f, text, len, old);
	return 0;
}

static int
on_snapshot(synclog *sl, const json_t *f, const char *text)
{
	struct sl_net *n = sl->net;
	char detail[32];
	int rc;

	if (n->state != SL_NET_LIVE)
		return 0;
	if (!n->snap_open) {
		if ((rc = sl_store_snapshot_begin(sl->store, n->granted)) != SL_OK)
			return frame_failed(sl, rc, "starting a snapshot");
		n->snap_open = true;
	}
	if ((rc = sl_store_snapshot_frame(sl->store, text)) != SL_OK)
		return frame_failed(sl, rc, "applying a snapshot frame");
	if (json_is_true(json_object_get(f, "done"))) {
		n->snap_open = false;
		snprintf(detail, sizeof(detail), "%" PRIu64, sl_store_cursor(sl->store));
		sl_event(sl, SYNCLOG_EV_SNAPSHOT, detail);
	}
	return 0;
}

static int
on_ack(synclog *sl, struct lws *wsi, const char *text)
{
	struct sl_net *n = sl->net;
	int rc;

	if (n->inflight > 0)
		n->inflight--;
	n->settle_ms = now_ms();
	n->dirty = true;
	if ((rc = sl_store_ack(sl->store, text, forward_reject, sl)) != SL_OK)
		return frame_failed(sl, rc, "applying an ack");
	if (wsi != NULL) /* NULL: a frame fed by sl_net_feed */
		lws_callback_on_writable(wsi);
	return 0;
}

static int
on_error(synclog *sl, const json_t *f)
{
	struct sl_net *n = sl->net;
	const char *code = json_string_value(json_object_get(f, "code"));
	const char *msg = json_string_value(json_object_get(f, "message"));
	char detail[600];

	snprintf(detail, sizeof(detail), "%s: %s", code ? code : "error", msg ? msg : "");
	sl_event(sl, SYNCLOG_EV_ERROR, detail);
	if (code && strcmp(code, "unauthorized") == 0) {
		snprintf(n->auth_msg, sizeof(n->auth_msg), "%s", msg ? msg : "");
		n->state = SL_NET_AUTH_FAILED;
		conn_end(sl, "the server refused the token (unauthorized: %s)", msg ? msg : "");
		return -1;
	}
	if (n->inflight > 0) {
		/* possibly the answer to a push, which then was not applied: resend all */
		conn_end(sl, "the server answered %s while pushes were unanswered; reconnecting to resend",
		         detail);
		return -1;
	}
	return 0;
}

/* One whole message from the server, NUL-terminated.  0, or -1 after conn_end. */
static int
on_message(synclog *sl, struct lws *wsi, const char *text, size_t len)
{
	json_t *f = json_loadb(text, len, 0, NULL); /* new */
	const char *type = json_string_value(json_object_get(f, "type"));
	int rc = 0;

	if (!json_is_object(f)) {
		json_decref(f);
		sl_event(sl, SYNCLOG_EV_ERROR, "bad_frame: the server sent a frame that is not a JSON object");
		conn_end(sl, "the server sent a frame that is not a JSON object");
		return -1;
	}
	if (type == NULL)
		rc = 0;
	else if (strcmp(type, "welcome") == 0)
		rc = on_welcome(sl, wsi, f);
	else if (strcmp(type, "changes") == 0)
		rc = on_changes(sl, f, text, len);
	else if (strcmp(type, "snapshot") == 0)
		rc = on_snapshot(sl, f, text);
	else if (strcmp(type, "ack") == 0)
		rc = on_ack(sl, wsi, text);
	else if (strcmp(type, "error") == 0)
		rc = on_error(sl, f);
	/* pong and unknown types: nothing */
	json_decref(f);
	return rc;
}

int
sl_net_feed(synclog *sl, const char *text, size_t len)
{
	struct sl_net *n = sl->net;
	int rc;

	if (n == NULL || text == NULL || text[len] != '\0')
		return -1;
	pthread_mutex_lock(&sl->lock);
	if (n->state != SL_NET_HELLO && n->state != SL_NET_LIVE) {
		/* as when a new connection is upgraded and its hello sent */
		conn_reset(n);
		n->state = SL_NET_HELLO;
		n->hello_sent = true;
	}
	rc = on_message(sl, NULL, text, len);
	pthread_mutex_unlock(&sl->lock);
	return rc;
}

/* Whether wsi is the current connection (or the one being created). */
static bool
is_current(struct sl_net *n, struct lws *wsi)
{
	return n->wsi == wsi || (n->connecting_now && n->wsi == NULL && n->state == SL_NET_CONNECTING);
}

static int
on_receive(synclog *sl, struct lws *wsi, const char *in, size_t len)
{
	struct sl_net *n = sl->net;

	if (n->rx_len + len > SL_NET_MAX_FRAME) {
		sl_event(sl, SYNCLOG_EV_ERROR, "too_large: a message from the server exceeds 64 MiB");
		conn_end(sl, "a message from the server exceeds 64 MiB");
		return -1;
	}
	if (n->rx_len + len + 1 > n->rx_cap) {
		size_t cap = n->rx_cap ? n->rx_cap : 65536;
		char *p;

		while (cap < n->rx_len + len + 1)
			cap *= 2;
		if ((p = realloc(n->rx, cap)) == NULL) {
			n->fatal = SYNCLOG_ENOMEM;
			snprintf(n->fatal_msg, sizeof(n->fatal_msg), "out of memory receiving a frame");
			conn_end(sl, "out of memory receiving a frame");
			return -1;
		}
		n->rx = p;
		n->rx_cap = cap;
	}
	memcpy(n->rx + n->rx_len, in, len);
	n->rx_len += len;
	n->rx[n->rx_len] = '\0';
	if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi) > 0)
		return 0;
	len = n->rx_len;
	n->rx_len = 0; /* the buffer stays valid until the next receive */
	return on_message(sl, wsi, n->rx, len);
}

/* Why the server closed, for the DISCONNECTED event. */
static void
closed_reason(struct sl_net *n, char *out, size_t cap)
{
	if (n->close_code != 0)
		snprintf(out, cap, "the server closed the connection (%d%s%s)", n->close_code,
		         n->close_text[0] ? ": " : "", n->close_text);
	else
		snprintf(out, cap, "the connection to %s was lost", n->url);
}

static int
net_callback_locked(synclog *sl, struct lws *wsi, enum lws_callback_reasons reason, void *in,
                    size_t len)
{
	struct sl_net *n = sl->net;
	char why[300];
	int i;

	if (n == NULL)
		return 0;
	switch (reason) {
	case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
		/* synclog_wakeup (a write, maybe), or lws's own: look at the outbox */
		n->dirty = true;
		return 0;
	case LWS_CALLBACK_WSI_DESTROY:
		for (i = 0; i < n->n_zombies; i++)
			if (n->zombies[i] == wsi)
				n->zombies[i--] = n->zombies[--n->n_zombies];
		if (n->wsi == wsi && wsi != NULL)
			conn_end(sl, "the connection to %s was closed", n->url);
		return 0;
	default:
		break;
	}
	if (!is_current(n, wsi))
		return reason == LWS_CALLBACK_CLIENT_RECEIVE || reason == LWS_CALLBACK_CLIENT_WRITEABLE ? -1 : 0;
	switch (reason) {
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
		conn_end(sl, "cannot connect to %s: %.*s", n->url, in ? (int) strnlen(in, 200) : 7,
		         in ? (const char *) in : "unknown");
		return -1;
	case LWS_CALLBACK_CLIENT_ESTABLISHED:
		n->state = SL_NET_HELLO;
		lws_callback_on_writable(wsi);
		return 0;
	case LWS_CALLBACK_CLIENT_WRITEABLE:
		if (n->state == SL_NET_HELLO && !n->hello_sent)
			return send_hello(sl, wsi);
		if (n->state == SL_NET_LIVE)
			return send_push(sl, wsi);
		return 0;
	case LWS_CALLBACK_CLIENT_RECEIVE:
		return on_receive(sl, wsi, in, len);
	case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
		if (in != NULL && len >= 2) {
			const unsigned char *p = in;
			size_t tl = len - 2 < sizeof(n->close_text) - 1 ? len - 2 : sizeof(n->close_text) - 1;

			n->close_code = (p[0] << 8) | p[1];
			memcpy(n->close_text, p + 2, tl);
			n->close_text[tl] = '\0';
			if (strstr(n->close_text, "unauthorized") != NULL)
				n->state = SL_NET_AUTH_FAILED;
		}
		return 0;
	case LWS_CALLBACK_CLIENT_CLOSED:
		closed_reason(n, why, sizeof(why));
		conn_end(sl, "%s", why);
		return 0;
	default:
		return 0;
	}
}

/* Every lws callback of the context: takes the handle's lock around the work. */
static int
net_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
	struct sl_net *n = lws_context_user(lws_get_context(wsi));
	synclog *sl = n ? n->sl : NULL;
	int rc;

	(void) user;
	if (sl == NULL)
		return 0;
	pthread_mutex_lock(&sl->lock);
	rc = net_callback_locked(sl, wsi, reason, in, len);
	pthread_mutex_unlock(&sl->lock);
	return rc;
}

/* ---------------------------------------------------------------- the loop */

/*
 * One turn: housekeeping (a due attempt when may_connect, the attempt's
 * timeout, writable while pushes can go out), then lws_service() with the
 * lock released, waking at wake_ms at the latest.
 */
static void
turn(synclog *sl, int64_t wake_ms, bool may_connect)
{
	struct sl_net *n = sl->net;
	int64_t now = now_ms(), t;

	reap_zombies(sl);
	if (n->state == SL_NET_IDLE && may_connect && now >= n->retry_ms)
		start_attempt(sl);
	if ((n->state == SL_NET_CONNECTING || n->state == SL_NET_HELLO) &&
	    now - n->attempt_ms >= n->connect_timeout_ms) {
		char why[300];

		snprintf(why, sizeof(why), "cannot connect to %s: no welcome within %d ms", n->url,
		         n->connect_timeout_ms);
		conn_drop(sl, why);
	}
	if (n->state == SL_NET_LIVE && n->dirty && n->inflight < SL_NET_MAX_INFLIGHT)
		lws_callback_on_writable(n->wsi);
	if (n->state == SL_NET_IDLE && may_connect && n->retry_ms < wake_ms)
		wake_ms = n->retry_ms;
	if (n->state == SL_NET_CONNECTING || n->state == SL_NET_HELLO) {
		t = n->attempt_ms + n->connect_timeout_ms;
		if (t < wake_ms)
			wake_ms = t;
	}
	now = now_ms();
	/* +1 ms: poll() rounds down to whole ms, and must not wake just before */
	if (wake_ms > now)
		lws_sul_schedule(n->ctx, 0, &n->sul, sul_cb, (lws_usec_t) (wake_ms - now + 1) * 1000);
	n->servicing = true;
	pthread_mutex_unlock(&sl->lock);
	lws_service(n->ctx, wake_ms > now ? 0 : -1);
	pthread_mutex_lock(&sl->lock);
	n->servicing = false;
	lws_sul_cancel(&n->sul);
	reap_zombies(sl);
}

/* Common checks of run and sync: SYNCLOG_OK, or a failure with errmsg set. */
static int
loop_begin(synclog *sl)
{
	struct sl_net *n = sl->net;
	int rc;

	if (n == NULL)
		return sl_err(sl, SYNCLOG_EMISUSE, "no server given: call synclog_connect first");
	if (n->in_loop)
		return sl_err(sl, SYNCLOG_EMISUSE,
		              "synclog_run or synclog_sync is already running (re-entered from a callback, "
		              "or from two threads)");
	if (n->state == SL_NET_AUTH_FAILED)
		return sl_err(sl, SYNCLOG_EAUTH, "the server refused the token (unauthorized: %s); "
		              "give another with synclog_connect", n->auth_msg);
	if ((rc = ensure_ctx(sl)) != SYNCLOG_OK)
		return rc;
	n->in_loop = true;
	return SYNCLOG_OK;
}

/* A pending local failure or refused token as run/sync's result, or SYNCLOG_OK. */
static int
loop_status(synclog *sl)
{
	struct sl_net *n = sl->net;
	int rc;

	if (n->fatal != SYNCLOG_OK) {
		rc = sl_err(sl, n->fatal, "%s", n->fatal_msg);
		n->fatal = SYNCLOG_OK;
		return rc;
	}
	if (n->state == SL_NET_AUTH_FAILED)
		return sl_err(sl, SYNCLOG_EAUTH, "the server refused the token (unauthorized: %s)",
		              n->auth_msg);
	return SYNCLOG_OK;
}

int
sl_net_run(synclog *sl, int timeout_ms)
{
	struct sl_net *n = sl->net;
	int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
	unsigned gen;
	int rc;

	if ((rc = loop_begin(sl)) != SYNCLOG_OK)
		return rc;
	n = sl->net;
	gen = atomic_load(&n->wake_gen);
	for (;;) {
		turn(sl, deadline, true);
		if ((rc = loop_status(sl)) != SYNCLOG_OK)
			break;
		if (atomic_load(&n->wake_gen) != gen) {
			/* synclog_wakeup: push what it announced, then return to the caller */
			if (n->state == SL_NET_LIVE)
				turn(sl, 0, false);
			rc = loop_status(sl);
			break;
		}
		if (now_ms() >= deadline)
			break;
	}
	n->in_loop = false;
	if (rc == SYNCLOG_OK)
		sl->errmsg[0] = '\0';
	return rc;
}

/*
 * Whether sync is done on the live connection: nothing unacked, every push
 * answered, no snapshot half received, the cursor at welcome's, and no acked
 * op still awaiting its change -- except that the latter wait ends
 * SL_NET_SETTLE_MS after the last ack (or the welcome), since an op for a
 * group this client does not follow never comes back.  *wake gets when to
 * look again.  SYNCLOG_OK with *done, or a store failure.
 */
static int
found_one(void *ctx, const sl_store_op *op)
{
	(void) op;
	*(bool *) ctx = true;
	return 1;
}

static int
sync_done(synclog *sl, bool *done, int64_t *wake)
{
	struct sl_net *n = sl->net;
	int64_t acked;
	bool unacked = false;
	int rc;

	*done = false;
	if (n->inflight > 0 || n->snap_open || sl_store_cursor(sl->store) < n->welcome_cursor)
		return SYNCLOG_OK;
	if ((rc = sl_store_pending(sl->store, found_one, &unacked)) != SL_OK)
		return rc;
	if (unacked)
		return SYNCLOG_OK;
	if ((rc = sl_store_acked_count(sl->store, &acked)) != SL_OK)
		return rc;
	if (acked > 0 && now_ms() < n->settle_ms + SL_NET_SETTLE_MS) {
		*wake = n->settle_ms + SL_NET_SETTLE_MS;
		return SYNCLOG_OK;
	}
	*done = true;
	return SYNCLOG_OK;
}

int
sl_net_sync(synclog *sl, int timeout_ms)
{
	struct sl_net *n = sl->net;
	int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0), wake;
	bool done;
	int rc;

	if ((rc = loop_begin(sl)) != SYNCLOG_OK)
		return rc;
	n = sl->net;
	/*
	 * A connection left live by an earlier sync (or run) says nothing of
	 * the server's cursor now: its welcome is old, and the changes since
	 * may still sit unread in the socket.  A sync therefore always begins
	 * with a fresh hello, whose welcome names the cursor to catch up with.
	 * Unacked pushes of the old connection are resent (same ids).
	 */
	conn_drop(sl, "a sync begins with a fresh connection");
	if (n->state == SL_NET_IDLE)
		start_attempt(sl); /* one attempt, now, whatever the backoff */
	for (;;) {
		if ((rc = loop_status(sl)) != SYNCLOG_OK)
			break;
		if (n->state == SL_NET_IDLE) {
			rc = sl_err(sl, SYNCLOG_ENET, "%s", n->reason);
			break;
		}
		wake = deadline;
		if (n->state == SL_NET_LIVE) {
			if ((rc = sync_done(sl, &done, &wake)) != SL_OK) {
				rc = sl_err_store(sl, rc);
				conn_drop(sl, "local failure reading the outbox");
				break;
			}
			if (done)
				break;
		}
		if (now_ms() >= deadline) {
			rc = sl_err(sl, SYNCLOG_ETIMEOUT, "not caught up with %s within %d ms", n->url,
			            timeout_ms);
			break;
		}
		turn(sl, wake < deadline ? wake : deadline, false);
	}
	n->in_loop = false;
	if (rc == SYNCLOG_OK)
		sl->errmsg[0] = '\0';
	return rc;
}

/* ---------------------------------------------------------------- configuration */

static void
config_free(struct sl_net *n)
{
	size_t i;

	free(n->url);
	free(n->host);
	free(n->path);
	free(n->token);
	for (i = 0; i < n->n_groups; i++)
		free(n->groups[i]);
	free(n->groups);
	n->url = n->host = n->path = n->token = NULL;
	n->groups = NULL;
	n->n_groups = 0;
}

/*
 * Splits url (ws://HOST[:PORT][/PATH] or wss://...; HOST may be [v6]) into
 * c's host, port, path and tls.  SYNCLOG_OK, SYNCLOG_EINVAL (message set),
 * SYNCLOG_ENOMEM.
 */
static int
parse_url(synclog *sl, const char *url, struct sl_net *c)
{
	const char *p, *hs, *he, *ps;
	long port;
	char *end;

	if (strncmp(url, "ws://", 5) == 0) {
		c->tls = false;
		p = url + 5;
	} else if (strncmp(url, "wss://", 6) == 0) {
		c->tls = true;
		p = url + 6;
	} else {
		return sl_err(sl, SYNCLOG_EINVAL, "url \"%s\" does not start with ws:// or wss://", url);
	}
	if (*p == '[') {
		hs = p + 1;
		if ((he = strchr(hs, ']')) == NULL)
			return sl_err(sl, SYNCLOG_EINVAL, "url \"%s\": unclosed [ in the host", url);
		p = he + 1;
	} else {
		hs = p;
		he = p + strcspn(p, ":/?#");
		p = he;
	}
	if (he == hs)
		return sl_err(sl, SYNCLOG_EINVAL, "url \"%s\" has no host", url);
	port = c->tls ? 443 : 80;
	if (*p == ':') {
		port = strtol(p + 1, &end, 10);
		if (end == p + 1 || port < 1 || port > 65535 || (*end != '\0' && *end != '/'))
			return sl_err(sl, SYNCLOG_EINVAL, "url \"%s\": the port is not a number in 1-65535", url);
		p = end;
	}
	if (*p != '\0' && *p != '/')
		return sl_err(sl, SYNCLOG_EINVAL, "url \"%s\": unexpected \"%s\" after the host", url, p);
	for (ps = url; *ps; ps++)
		if ((unsigned char) *ps <= 0x20 || *ps == 0x7f)
			return sl_err(sl, SYNCLOG_EINVAL, "url \"%s\" contains a space or a control character", url);
	c->port = (int) port;
	c->host = strndup(hs, (size_t) (he - hs));
	c->path = strdup(*p ? p : "/");
	c->url = strdup(url);
	if (c->host == NULL || c->path == NULL || c->url == NULL)
		return sl_err(sl, SYNCLOG_ENOMEM, "out of memory");
	return SYNCLOG_OK;
}

int
sl_net_connect(synclog *sl, const synclog_config *cfg)
{
	struct sl_net c, *n;
	size_t i;
	int rc;

	memset(&c, 0, sizeof(c));
	if (cfg == NULL)
		return sl_err(sl, SYNCLOG_EINVAL, "no configuration given");
	if (cfg->url == NULL || cfg->url[0] == '\0')
		return sl_err(sl, SYNCLOG_EINVAL, "no url given (ws://HOST:PORT/ or wss://HOST:PORT/)");
	if (cfg->token == NULL || cfg->token[0] == '\0')
		return sl_err(sl, SYNCLOG_EINVAL, "no token given (one from synclog.create_token)");
	for (i = 0; cfg->token[i]; i++)
		if ((unsigned char) cfg->token[i] < 0x20)
			return sl_err(sl, SYNCLOG_EINVAL, "the token contains a control character");
	if (cfg->n_groups > 0 && cfg->groups == NULL)
		return sl_err(sl, SYNCLOG_EINVAL, "n_groups is %zu but groups is NULL", cfg->n_groups);
	for (i = 0; i < cfg->n_groups; i++)
		if (cfg->groups[i] == NULL)
			return sl_err(sl, SYNCLOG_EINVAL, "group %zu is NULL", i);
	if (cfg->connect_timeout_ms < 0 || cfg->backoff_min_ms < 0 || cfg->backoff_max_ms < 0 ||
	    cfg->batch_ops < 0)
		return sl_err(sl, SYNCLOG_EINVAL, "a negative timeout, backoff or batch_ops");
	if ((rc = parse_url(sl, cfg->url, &c)) != SYNCLOG_OK)
		goto fail;
	c.token = strdup(cfg->token);
	c.groups = calloc(cfg->n_groups ? cfg->n_groups : 1, sizeof(char *));
	if (c.token == NULL || c.groups == NULL) {
		rc = sl_err(sl, SYNCLOG_ENOMEM, "out of memory");
		goto fail;
	}
	for (c.n_groups = 0; c.n_groups < cfg->n_groups; c.n_groups++) {
		if ((c.groups[c.n_groups] = strdup(cfg->groups[c.n_groups])) == NULL) {
			rc = sl_err(sl, SYNCLOG_ENOMEM, "out of memory");
			goto fail;
		}
	}
	c.connect_timeout_ms = cfg->connect_timeout_ms ? cfg->connect_timeout_ms : 5000;
	c.backoff_min_ms = cfg->backoff_min_ms ? cfg->backoff_min_ms : 100;
	c.backoff_max_ms = cfg->backoff_max_ms ? cfg->backoff_max_ms : 5000;
	if (c.backoff_max_ms < c.backoff_min_ms)
		c.backoff_max_ms = c.backoff_min_ms;
	c.batch_ops = cfg->batch_ops ? cfg->batch_ops : 100;

	if ((n = sl->net) == NULL) {
		if ((n = calloc(1, sizeof(*n))) == NULL) {
			rc = sl_err(sl, SYNCLOG_ENOMEM, "out of memory");
			goto fail;
		}
		n->sl = sl;
		atomic_init(&n->wake_gen, 0);
		n->rng = ((uint64_t) (uintptr_t) sl * 0x9e3779b97f4a7c15u) ^ (uint64_t) time(NULL) ^
		         ((uint64_t) now_ms() << 20) ^ 1;
		sl->net = n;
	} else {
		conn_drop(sl, "synclog_connect: a new server configuration");
	}
	config_free(n);
	n->url = c.url;
	n->host = c.host;
	n->path = c.path;
	n->token = c.token;
	n->port = c.port;
	n->tls = c.tls;
	n->groups = c.groups;
	n->n_groups = c.n_groups;
	n->connect_timeout_ms = c.connect_timeout_ms;
	n->backoff_min_ms = c.backoff_min_ms;
	n->backoff_max_ms = c.backoff_max_ms;
	n->batch_ops = c.batch_ops;
	n->state = SL_NET_IDLE;
	n->retry_ms = 0;
	n->backoff_ms = n->backoff_min_ms;
	n->auth_msg[0] = '\0';
	n->fatal = SYNCLOG_OK;
	sl->errmsg[0] = '\0';
	return SYNCLOG_OK;
fail:
	config_free(&c);
	return rc;
}

void
sl_net_disconnect(synclog *sl)
{
	struct sl_net *n = sl->net;

	if (n == NULL)
		return;
	conn_drop(sl, "disconnected by the application");
	if (n->state == SL_NET_IDLE)
		n->retry_ms = 0; /* the next synclog_run connects at once */
}

int
sl_net_connected(synclog *sl)
{
	return sl->net != NULL && sl->net->state == SL_NET_LIVE;
}

void
sl_net_free(synclog *sl)
{
	struct sl_net *n = sl->net;

	if (n == NULL)
		return;
	n->freeing = true;
	if (n->ctx != NULL) {
		atomic_store(&sl->wake_ctx, NULL);
		n->wsi = NULL; /* the context closes it, and the zombies */
		lws_context_destroy(n->ctx);
		n->ctx = NULL;
	}
	if (n->old_ctx != NULL) {
		lws_context_destroy(n->old_ctx);
		n->old_ctx = NULL;
	}
	conn_reset(n);
	config_free(n);
	free(n->rx);
	free(n);
	sl->net = NULL;
}

void
synclog_wakeup(synclog *sl)
{
	struct lws_context *ctx;
	struct sl_net *n;

	if (sl == NULL)
		return;
	/* wake_ctx is stored after sl->net is made and cleared before it is freed,
	 * so a context seen here is alive and its user, the sl_net, too */
	ctx = atomic_load(&sl->wake_ctx);
	if (ctx == NULL)
		return;
	n = lws_context_user(ctx);
	atomic_fetch_add(&n->wake_gen, 1);
	lws_cancel_service(ctx);
}

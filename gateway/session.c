/*
 * gateway/session.c: the lws protocol "synclog.v1": one WebSocket connection
 * per session, driven by protocol.h's state machine, answered through the
 * gateway's database connections (gateway.h, sl_gw_query), and the fan-out of
 * live changes to every session.
 *
 * Callbacks, all on the lws service thread:
 *   ESTABLISHED: the sl_sess is set up, given an id, put on sl_gw.sessions
 *     and in the id table; CLOSED: taken off and freed.
 *   RECEIVE: fragments are reassembled up to limits.max_frame_bytes (past it
 *     the rest of the message is discarded and the frame answered too_large),
 *     then the frame is parsed and the state machine says what to do; RECEIVE
 *     only queues (a frame to send or a query) and asks for writable.
 *   SERVER_WRITEABLE: writes one WebSocket ping when one is due, else exactly
 *     one queued frame; asks again while more are queued, and closes once the
 *     queue is empty if the session is closing.
 *
 * Database results find their session by id (struct sl_pending holds the id,
 * never a pointer), so a result for a session that closed meanwhile is
 * dropped.
 *
 * Send queue and slow clients.  Frames are reference-counted buffers (sl_buf):
 * a changes frame built once is queued on every session it suits.  A session's
 * queue is bounded by cfg.send_queue_bytes (counting each frame it holds at
 * its full size, shared or not):
 *   - a changes frame that would take the queue past the bound is not queued:
 *     the session falls "behind" (it leaves the fan-out, its cursor stays at
 *     the last change queued) and, once its queue has drained to half the
 *     bound, it is caught up from the database by cursor, a query at a
 *     time, and rejoins the fan-out;
 *   - other frames (ack, pong, error) are always queued, but past the bound
 *     the gateway stops reading from the session (lws rx flow control) until
 *     the queue drains, so a client that pushes without reading cannot grow
 *     it further.  They go ahead of the changes frames queued after the last
 *     frame that is no changes frame (queue_buf()); snapshot frames do not.
 * Changes frames waiting together at the head of a queue are written as one
 * (merge_changes()).  A session that fell behind and is within one fan-out
 * answer of the others rejoins the fan-out; further behind, it reads its
 * own backlog (catch_up()).
 * Before a byte counts against the bound, the kernel takes what the client's
 * socket will hold; with cfg.socket_send_buffer that is fixed at ESTABLISHED
 * (set_send_buffer()), else Linux grows it up to tcp_wmem's max for a socket
 * that stalls.
 * A snapshot is read a page at a time (synclog.snapshot_page, at most 500 rows
 * and half the bound in bytes), the next page only once the queue is below
 * half the bound, so it is bounded too.  Changes are read at most 1000 (fewer
 * when they are large: changes_max()) and half the bound in bytes at a time
 * (see changes_sql).
 *
 * Timers: every second a sweep closes sessions that sent no hello within
 * cfg.hello_timeout_s, sends a WebSocket ping to sessions silent for half of
 * cfg.idle_timeout_s and drops those silent (no frame, no pong) for all of it,
 * and drops sessions stuck closing (their last frame unwritten) for
 * SL_CLOSE_GRACE_MS.
 *
 * jansson references are marked "new" (ours to json_decref) or "borrowed".
 */
#include "gateway.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

/* Changes read per query at most, for a backlog and for one fan-out round
 * (fewer when they are large: see changes_max()). */
#define SL_CHANGES_PER_QUERY 1000
/* Pushes of one session waiting for the database before it is not read. */
#define SL_PUSH_MAX_INFLIGHT 16
/* Rows per snapshot frame (one synclog.snapshot_page call each). */
#define SL_SNAPSHOT_PAGE_ROWS 500
/* How long a closing session may take to write its last frame. */
#define SL_CLOSE_GRACE_MS 5000
/* Buckets of the session id table (a power of two). */
#define SL_SESS_BUCKETS 4096
/* A token's SHA-256 in hex: what the gateway keeps and sends instead of it. */
#define SL_TOKEN_HASH_HEX 64

/* One frame to send, shareable between sessions: each queue entry holding
 * it is a reference.  LWS_PRE bytes of headroom precede the text.  A changes
 * frame built here (chg_frame_new()) is CHG_HEAD, `items` bytes of changes
 * separated by commas, then `],"cursor":N}`: what merge_changes() needs to
 * join several into one. */
typedef struct sl_buf {
	unsigned refs;
	bool changes;         /* a changes frame of chg_frame_new()'s layout */
	size_t len;
	size_t items;         /* changes: bytes between CHG_HEAD and the tail */
	uint64_t cursor;      /* changes: its cursor */
	unsigned char data[]; /* LWS_PRE + len */
} sl_buf;

#define CHG_HEAD "{\"type\":\"changes\",\"changes\":["

typedef struct sl_out {
	struct sl_out *next;
	sl_buf *buf;
	uint32_t round;   /* the fan-out round that queued it, or 0 */
} sl_out;

/* One of these per session (WebSocket connection of protocol synclog.v1). */
typedef struct sl_sess {
	struct sl_sess *next, *prev; /* on sl_gw.sessions */
	struct sl_sess *hnext;       /* in its bucket of the id table */
	struct lws *wsi;
	uint64_t id;
	int dbi;                     /* the database connection for its queries */
	sl_session sm;               /* protocol.h state machine */
	char peer[48];
	int64_t opened_ms, last_rx_ms, closing_ms;
	bool hello_seen;
	bool pending_counted;        /* counted in its peer's pending sessions (peer_pending_begin) */
	bool ping_due;               /* write a WebSocket ping at the next writable */
	bool ping_sent;              /* since the last frame or pong received */
	bool rx_paused;              /* rx flow control off (rx_flow()) */
	unsigned push_n;             /* pushes sent to the database, not answered */
	size_t push_bytes;           /* and their bytes */

	/* reassembly of one incoming message */
	char *rx;
	size_t rx_len, rx_cap;
	bool rx_oversize;            /* past max_frame_bytes: discarding to the end */

	/* send queue */
	sl_out *q_head, *q_tail;
	sl_out *q_ctl;               /* the last entry that is no changes frame, or NULL */
	size_t q_bytes;
	bool close_after;            /* close once the queue is written */

	/* from the hello */
	char client_id[SL_CLIENT_ID_MAX + 1];
	bool has_token;              /* token_hex holds the hello's token hash */
	char token_hex[SL_TOKEN_HASH_HEX + 1]; /* SHA-256 of the token, lowercase hex */
	uint64_t auth_gen;           /* rv.gen when its authentication query was sent */
	bool held;                   /* accepted by an answer that may predate a revocation:
	                              * waits for the next revocation check (rv) */
	uint64_t check_run;          /* the last revocation check (rv.run) that included it */
	char *auth_subject;          /* malloc'd: the accepting answer, until welcome() */
	json_t *auth_groups;         /* new: the token's groups, until welcome() */
	json_t *auth_tables;         /* new: synclog.tables(), until welcome() */
	uint64_t auth_cursor;        /* synclog.cursor() of that answer */
	json_t *req_groups;          /* new: the groups asked for; NULL after welcome */
	json_t *groups;              /* new: granted (asked ∩ token's); NULL before welcome */
	char *gkey;                  /* the granted groups, sorted: which frames it can share */
	uint64_t cursor;             /* highest seq this client holds (as far as we queued) */
	bool live;                   /* backlog sent: the fan-out serves it */
	uint64_t fo_query;           /* the fan-out query that last covered its groups */
	bool behind;                 /* a changes frame was not queued: catch up when drained */
	bool backlog_busy;           /* a backlog query is in flight */

	/* a snapshot being sent, page by page */
	bool snapshotting;
	uint64_t snap_cursor;        /* the first page's cursor: the snapshot's */
	char *snap_table, *snap_row; /* malloc'd: where the next page starts */
} sl_sess;

/* What a pending query needs to find its session again. */
typedef enum { PQ_AUTH, PQ_PUSH, PQ_BACKLOG, PQ_SNAPSHOT } sl_pending_kind;
typedef struct sl_pending {
	uint64_t sid;
	sl_pending_kind kind;
	size_t bytes;     /* PQ_PUSH: the frame's length */
	int max;          /* PQ_BACKLOG: the changes asked for */
} sl_pending;

static sl_sess *sess_table[SL_SESS_BUCKETS];
static lws_sorted_usec_list_t sweep_sul;

/* The fan-out's state (see the comment above fanout_run()). */
static struct {
	bool running, again;
	uint64_t query;          /* the number of the last fan-out query sent */
	bool deferred;           /* a round waits for the last one's frames */
	uint32_t round;          /* the last round's number (never 0) */
	uint64_t cursor;         /* the highest cursor a fan-out answer reached */
	uint32_t tag;            /* while a round queues: its number, else 0 */
	size_t round_frames;     /* frames the last round queued */
	size_t unsent;           /* of those, not yet written or dropped */
	int64_t round_ms;        /* when the last round queued them */
	lws_sorted_usec_list_t sul;
	bool stopped;            /* sl_sessions_stop(): no more rounds or timers (nor checks) */
	/* NOTIFY synclog (see the comment above sl_sessions_on_notify()) */
	uint64_t claim;          /* the highest cursor notified, not yet asked for; 0: none */
	uint64_t claim_sent;     /* the claim the query in flight was sent for */
	int64_t throttle_until;  /* a claim not confirmed: the next waits until then */
	bool claim_timer;        /* claim_sul is set */
	lws_sorted_usec_list_t claim_sul;
	/* counters for the shutdown log line */
	uint64_t n_rounds, n_frames, n_writes, n_merged;
	uint64_t n_notify, n_stale, n_unconfirmed;
} fo;

/* The least time between two checks started by notifications anyone can
 * send (NOTIFY synclog_revoke; NOTIFY synclog that no answer confirms). */
#define SL_NOTIFY_INTERVAL_MS 250

static void fanout_sent_one(void);
static void fanout_claim_pump(void);

size_t
sl_session_data_size(void)
{
	return sizeof(sl_sess);
}

static sl_sess *
sess_find(uint64_t id)
{
	for (sl_sess *s = sess_table[id & (SL_SESS_BUCKETS - 1)]; s; s = s->hnext)
		if (s->id == id)
			return s;
	return NULL;
}

static void
sess_table_remove(sl_sess *s)
{
	sl_sess **pp = &sess_table[s->id & (SL_SESS_BUCKETS - 1)];
	while (*pp && *pp != s)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = s->hnext;
}

/* First line of a libpq error message, for logs and error frames. */
static void
first_line(const char *in, char *out, size_t outsz)
{
	size_t n = strcspn(in ? in : "", "\n");
	if (n >= outsz)
		n = outsz - 1;
	memcpy(out, in ? in : "", n);
	out[n] = '\0';
}

/* ---------------------------------------------------------------- buffers */

static sl_buf *
buf_new(size_t len)
{
	sl_buf *b = malloc(sizeof *b + LWS_PRE + len);
	if (b) {
		b->refs = 1;
		b->changes = false;
		b->len = len;
		b->items = 0;
		b->cursor = 0;
	}
	return b;
}

/*
 * A changes frame with room for `items` bytes of changes, its head and tail
 * written: the caller fills the items at chg_frame_items().  NULL when out
 * of memory.
 */
static sl_buf *
chg_frame_new(size_t items, uint64_t cursor)
{
	char tail[64];
	int tlen = snprintf(tail, sizeof tail, "],\"cursor\":%llu}", (unsigned long long) cursor);
	sl_buf *b = buf_new(sizeof CHG_HEAD - 1 + items + (size_t) tlen);
	if (b) {
		b->changes = true;
		b->items = items;
		b->cursor = cursor;
		memcpy(b->data + LWS_PRE, CHG_HEAD, sizeof CHG_HEAD - 1);
		memcpy(b->data + LWS_PRE + sizeof CHG_HEAD - 1 + items, tail, (size_t) tlen);
	}
	return b;
}

static char *
chg_frame_items(sl_buf *b)
{
	return (char *) b->data + LWS_PRE + sizeof CHG_HEAD - 1;
}

static void
buf_unref(sl_buf *b)
{
	if (b && --b->refs == 0)
		free(b);
}

static sl_buf *
buf_from_text(const char *text)
{
	size_t len = strlen(text);
	sl_buf *b = buf_new(len);
	if (b)
		memcpy(b->data + LWS_PRE, text, len);
	return b;
}

/* A growable byte string for building frames. */
typedef struct sl_str {
	char *p;
	size_t len, cap;
	bool oom;
} sl_str;

static void
str_add(sl_str *s, const char *p, size_t n)
{
	if (s->oom)
		return;
	if (s->len + n > s->cap) {
		size_t cap = s->cap ? s->cap : 256;
		while (cap < s->len + n)
			cap *= 2;
		char *np = realloc(s->p, cap);
		if (!np) {
			s->oom = true;
			return;
		}
		s->p = np;
		s->cap = cap;
	}
	memcpy(s->p + s->len, p, n);
	s->len += n;
}

/* ---------------------------------------------------------------- queue */

static void
sess_free_queue(sl_sess *s)
{
	sl_out *o = s->q_head;
	while (o) {
		sl_out *n = o->next;
		if (o->round && o->round == fo.round)
			fanout_sent_one();
		buf_unref(o->buf);
		free(o);
		o = n;
	}
	s->q_head = s->q_tail = s->q_ctl = NULL;
	s->q_bytes = 0;
}

static void
start_closing(sl_sess *s)
{
	if (!s->close_after) {
		s->close_after = true;
		s->closing_ms = sl_gw_now_ms();
		s->live = false;
	}
	lws_callback_on_writable(s->wsi);
}

/*
 * Reading from a session stops while its send queue is over its bound or it
 * has SL_PUSH_MAX_INFLIGHT pushes (or max_frame_bytes of them) waiting for the
 * database, and resumes once both are under: a client that pushes faster
 * than the database answers, or without reading its acks, is slowed down
 * rather than buffered.
 */
static void
rx_flow(sl_sess *s)
{
	bool pause = s->q_bytes > sl_gw.cfg.send_queue_bytes ||
	             s->push_n >= SL_PUSH_MAX_INFLIGHT ||
	             s->push_bytes >= sl_gw.cfg.limits.max_frame_bytes;
	if (pause != s->rx_paused) {
		s->rx_paused = pause;
		lws_rx_flow_control(s->wsi, pause ? 0 : 1);
	}
}

/*
 * Queues a reference to b; false when out of memory (then closing).  A
 * changes frame, or any frame with ahead false, goes at the tail.  A frame
 * with ahead true (an answer to the client: ack, pong, error) goes after the
 * last frame that is no changes frame, ahead of the changes frames queued
 * after it: PROTOCOL.md orders changes among themselves and after the
 * backlog, not against acks (a change may come before or after its op's
 * ack), so an ack does not wait behind a crowd of changes its client has not
 * read yet, while every frame that is no changes frame keeps its order.
 * Snapshot frames are queued with ahead false: they must not pass changes
 * frames queued before them.
 */
static bool
queue_buf(sl_sess *s, sl_buf *b, bool ahead)
{
	sl_out *o = malloc(sizeof *o);
	if (!o) {
		sl_gw_log("session %llu client_id=%s: out of memory queueing a frame; closing",
		          (unsigned long long) s->id, s->client_id);
		sess_free_queue(s);
		start_closing(s);
		return false;
	}
	b->refs++;
	o->next = NULL;
	o->buf = b;
	o->round = fo.tag;
	if (fo.tag)
		fo.round_frames++, fo.unsent++;
	if (ahead && !b->changes && s->q_tail && s->q_tail != s->q_ctl) {
		sl_out **at = s->q_ctl ? &s->q_ctl->next : &s->q_head;
		o->next = *at;
		*at = o;
	} else {
		if (s->q_tail)
			s->q_tail->next = o;
		else
			s->q_head = o;
		s->q_tail = o;
	}
	if (!b->changes)
		s->q_ctl = o;
	s->q_bytes += b->len;
	if (s->q_bytes > sl_gw.cfg.send_queue_bytes && !s->rx_paused)
		rx_flow(s);
	lws_callback_on_writable(s->wsi);
	return true;
}

/*
 * Queues a frame that is not a change (welcome, snapshot, ack, pong, error):
 * copied, always queued (see the header comment), ahead of queued changes
 * frames or not (queue_buf()).  Once the session is closing nothing more is
 * queued.  A NULL text (an encoder out of memory) closes the session.
 */
static void
queue_text_at(sl_sess *s, const char *text, bool ahead)
{
	if (s->close_after)
		return;
	sl_buf *b = text ? buf_from_text(text) : NULL;
	if (!b) {
		sl_gw_log("session %llu client_id=%s: out of memory encoding a frame; closing",
		          (unsigned long long) s->id, s->client_id);
		sess_free_queue(s);
		start_closing(s);
		return;
	}
	queue_buf(s, b, ahead);
	buf_unref(b);
}

/* An answer to the client (ack, pong, error, welcome): ahead of changes. */
static void
queue_text(sl_sess *s, const char *text)
{
	queue_text_at(s, text, true);
}

static void
queue_owned(sl_sess *s, char *text)
{
	queue_text(s, text);
	free(text);
}

/*
 * Sends an error frame.  With close, what was still queued is dropped first
 * (the client resumes from its cursor and resends what was not acked), so the
 * error is the last frame the client gets, and the session closes after it.
 */
static void
queue_error(sl_sess *s, const char *code, const char *message, bool close)
{
	if (s->close_after)
		return;
	if (close)
		sess_free_queue(s);
	char *t = sl_encode_error(code, message);
	if (t) {
		queue_text(s, t);
		free(t);
	}
	if (close)
		start_closing(s);
}

/*
 * Queues a changes frame that takes the session's cursor to `cursor`; b NULL
 * means nothing in it is for this session (the cursor just moves).  When the
 * frame would take a non-empty queue past its bound the session falls behind
 * instead (false): the frame is not queued and the cursor stays.
 */
static bool
queue_changes(sl_sess *s, sl_buf *b, uint64_t cursor)
{
	if (s->close_after)
		return false;
	if (b && s->q_bytes > 0 && s->q_bytes + b->len > sl_gw.cfg.send_queue_bytes) {
		if (!s->behind)
			sl_gw_log("session %llu client_id=%s: behind (send queue at %zu bytes); "
			          "catching up from cursor %llu once it drains",
			          (unsigned long long) s->id, s->client_id, s->q_bytes,
			          (unsigned long long) s->cursor);
		s->behind = true;
		s->live = false;
		return false;
	}
	if (b && !queue_buf(s, b, false))
		return false;
	if (cursor > s->cursor)
		s->cursor = cursor;
	return true;
}

static sl_pending *
pending_new(sl_sess *s, sl_pending_kind k)
{
	sl_pending *p = malloc(sizeof *p);
	if (p) {
		p->sid = s->id;
		p->kind = k;
		p->bytes = 0;
		p->max = 0;
	}
	return p;
}

/* ---------------------------------------------------------------- strings */

/* A set of borrowed strings (open addressing), for unions of groups and of
 * tokens over many sessions. */
typedef struct sl_strset {
	const char **slot;
	size_t cap, n;
	bool oom;
} sl_strset;

static uint64_t
hash_str(const char *p, uint64_t h)
{
	for (; *p; p++)
		h = (h ^ (unsigned char) *p) * 0x100000001b3u;
	return h;
}

/* Adds s (borrowed: it must outlive the set); true when it was new. */
static bool
strset_add(sl_strset *set, const char *s)
{
	if (set->oom)
		return false;
	if ((set->n + 1) * 2 > set->cap) {
		size_t cap = set->cap ? set->cap * 2 : 64;
		const char **slot = calloc(cap, sizeof *slot);
		if (!slot) {
			set->oom = true;
			return false;
		}
		for (size_t i = 0; i < set->cap; i++)
			if (set->slot[i]) {
				size_t j = hash_str(set->slot[i], 0xcbf29ce484222325u) & (cap - 1);
				while (slot[j])
					j = (j + 1) & (cap - 1);
				slot[j] = set->slot[i];
			}
		free(set->slot);
		set->slot = slot;
		set->cap = cap;
	}
	size_t j = hash_str(s, 0xcbf29ce484222325u) & (set->cap - 1);
	while (set->slot[j]) {
		if (!strcmp(set->slot[j], s))
			return false;
		j = (j + 1) & (set->cap - 1);
	}
	set->slot[j] = s;
	set->n++;
	return true;
}

static bool
strset_has(const sl_strset *set, const char *s)
{
	if (!set->cap)
		return false;
	size_t j = hash_str(s, 0xcbf29ce484222325u) & (set->cap - 1);
	while (set->slot[j]) {
		if (!strcmp(set->slot[j], s))
			return true;
		j = (j + 1) & (set->cap - 1);
	}
	return false;
}

/* The strings of a set, or of a JSON array of strings, as a PostgreSQL text[]
 * literal; malloc'd, NULL on out of memory. */
static void
literal_add(sl_str *out, const char *v, bool first)
{
	if (!first)
		str_add(out, ",", 1);
	str_add(out, "\"", 1);
	for (const char *c = v; *c; c++) {
		if (*c == '"' || *c == '\\')
			str_add(out, "\\", 1);
		str_add(out, c, 1);
	}
	str_add(out, "\"", 1);
}

static char *
strset_literal(const sl_strset *set)
{
	sl_str out = { 0 };
	bool first = true;
	str_add(&out, "{", 1);
	for (size_t i = 0; i < set->cap; i++)
		if (set->slot[i]) {
			literal_add(&out, set->slot[i], first);
			first = false;
		}
	str_add(&out, "}", 2); /* with the NUL */
	if (out.oom) {
		free(out.p);
		return NULL;
	}
	return out.p;
}

static char *
groups_literal(json_t *groups)
{
	sl_str out = { 0 };
	size_t i;
	json_t *g;
	str_add(&out, "{", 1);
	json_array_foreach(groups, i, g)
		literal_add(&out, json_string_value(g), i == 0);
	str_add(&out, "}", 2);
	if (out.oom) {
		free(out.p);
		return NULL;
	}
	return out.p;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/* The granted groups, sorted, NUL-separated, then NUL: sessions with equal
 * keys (and cursors) can share one changes frame. */
static char *
groups_key(json_t *groups)
{
	size_t n = json_array_size(groups), i, len = 1;
	const char **v = calloc(n ? n : 1, sizeof *v);
	if (!v)
		return NULL;
	for (i = 0; i < n; i++) {
		v[i] = json_string_value(json_array_get(groups, i));
		len += strlen(v[i]) + 1;
	}
	qsort(v, n, sizeof *v, cmp_str);
	char *key = malloc(len), *p = key;
	if (key) {
		for (i = 0; i < n; i++) {
			size_t l = strlen(v[i]) + 1;
			memcpy(p, v[i], l);
			p += l;
		}
		*p = '\0';
	}
	free(v);
	return key;
}

static size_t
groups_key_len(const char *key)
{
	const char *p = key;
	while (*p)
		p += strlen(p) + 1;
	return (size_t) (p - key) + 1;
}

static bool
sess_has_group(const sl_sess *s, const char *g)
{
	for (const char *p = s->gkey; *p; p += strlen(p) + 1)
		if (!strcmp(p, g))
			return true;
	return false;
}

/* ---------------------------------------------------------------- pending peers */

/*
 * Sessions not welcomed yet, counted per peer address (the text of
 * lws_get_peer_simple()), for --max-pending-per-peer: main.c refuses a
 * handshake from an address that already has that many (HTTP 503), so one
 * address cannot hold every --max-connections slot with connections that
 * never say hello (or whose hello is never answered).  A session is counted
 * from ESTABLISHED until its welcome is queued or it closes, whichever comes
 * first.  One sl_peer per address with at least one such session, freed when
 * its count drops to 0, so there are never more than sessions (at most
 * --max-connections).
 */
#define SL_PEER_BUCKETS 1024

/* One of these per peer address with pending sessions. */
typedef struct sl_peer {
	struct sl_peer *next;  /* in its bucket */
	size_t pending;        /* its sessions not yet welcomed, > 0 */
	char addr[48];
} sl_peer;

static sl_peer *peer_table[SL_PEER_BUCKETS];

/* Where addr's entry is, or would be linked, in its bucket. */
static sl_peer **
peer_slot(const char *addr)
{
	sl_peer **pp = &peer_table[hash_str(addr, 0xcbf29ce484222325u) & (SL_PEER_BUCKETS - 1)];
	while (*pp && strcmp((*pp)->addr, addr))
		pp = &(*pp)->next;
	return pp;
}

size_t
sl_sessions_pending_from(const char *addr)
{
	sl_peer **pp = peer_slot(addr);
	return *pp ? (*pp)->pending : 0;
}

/* Counts s as pending for its peer.  Out of memory it is not counted (and
 * logged): the limit is a defence, not a reason to refuse a connection. */
static void
peer_pending_begin(sl_sess *s)
{
	sl_peer **pp = peer_slot(s->peer);
	if (!*pp) {
		sl_peer *p = calloc(1, sizeof *p);
		if (!p) {
			sl_gw_log("session %llu peer=%s: out of memory counting pending connections",
			          (unsigned long long) s->id, s->peer);
			return;
		}
		snprintf(p->addr, sizeof p->addr, "%s", s->peer);
		*pp = p;
	}
	(*pp)->pending++;
	s->pending_counted = true;
}

/* s is welcomed or closing for good: no longer pending.  Idempotent. */
static void
peer_pending_end(sl_sess *s)
{
	if (!s->pending_counted)
		return;
	s->pending_counted = false;
	sl_peer **pp = peer_slot(s->peer), *p = *pp;
	if (p && --p->pending == 0) {
		*pp = p->next;
		free(p);
	}
}

/* ---------------------------------------------------------------- changes */

/*
 * The change stream is read with one statement, whose answer has one row per
 * change (in seq order) or a single row of NULLs after the first two columns
 * when there is none: the answer's cursor, whether a snapshot is required,
 * then each change's seq, group and text.  The text is PostgreSQL's jsonb
 * output of the change object, put into frames as it is: the gateway never
 * decodes or re-encodes a change.  OFFSET 0 keeps the planner from inlining
 * the subqueries, which would call the (STABLE) function, or build each text,
 * again per use.
 *
 * Bytes are bounded as well as changes: only the changes that start within
 * $4 bytes of text come back (at least one), so neither the answer nor the
 * frames built from it grow past about that much however large the changes
 * are.  The last column, the number of changes in the function's answer,
 * tells a cut answer: its cursor is then its last change's seq.
 */
static const char changes_sql[] =
	"SELECT r.j->>'cursor', r.j ? 'snapshot_required', x.seq, x.grp, x.t, x.total"
	" FROM (SELECT synclog.changes($1::text[], $2::bigint, $3::int) AS j OFFSET 0) r"
	" LEFT JOIN LATERAL ("
	"   SELECT y.seq, y.grp, y.t, y.n, jsonb_array_length(r.j->'changes') AS total,"
	"          sum(octet_length(y.t)) OVER (ORDER BY y.n) - octet_length(y.t) AS before"
	"     FROM (SELECT c.e->>'seq' AS seq, c.e->>'group' AS grp, c.e::text AS t, c.n"
	"             FROM jsonb_array_elements(r.j->'changes') WITH ORDINALITY AS c(e, n)"
	"           OFFSET 0) y"
	" ) x ON x.n = 1 OR x.before < $4::bigint"
	" ORDER BY x.n";

typedef struct sl_chg {
	uint64_t seq;
	const char *grp;  /* borrowed from the PGresult */
	const char *text;
	size_t len;
} sl_chg;

typedef struct sl_chgs {
	uint64_t cursor;
	bool snapshot_required;
	bool more;        /* cut by the byte or change limit: read again from cursor */
	size_t n;
	sl_chg *v;        /* malloc'd */
} sl_chgs;

/*
 * How many changes to ask changes_sql for.  Its byte bound cuts the answer at
 * half of --send-queue-bytes, but synclog.changes() builds every change asked
 * for first: 1000 changes of 1 kB each for a cut at 128 kB is eight times the
 * work kept, which a crowd of clients catching up after a stall pays for on
 * every query.  So the count follows the average size of the changes lately
 * read (chg_len_avg, bytes of text; 0 before the first), with a quarter more
 * for headroom, between 16 and SL_CHANGES_PER_QUERY.  An answer that returns
 * every change asked for is read again from its cursor (chgs_read's `more`),
 * so a low guess costs a query, never a change.
 */
static size_t chg_len_avg;

static int
changes_max(void)
{
	if (chg_len_avg == 0)
		return SL_CHANGES_PER_QUERY;
	size_t n = sl_gw.cfg.send_queue_bytes / 2 / chg_len_avg;
	n += n / 4 + 1;
	return n < 16 ? 16 : n > SL_CHANGES_PER_QUERY ? SL_CHANGES_PER_QUERY : (int) n;
}

/* Reads an answer of changes_sql for `max` changes; false (with *why) when it
 * is not one. */
static bool
chgs_read(PGresult *res, const char *error, int max, sl_chgs *out, char *why, size_t whysz)
{
	memset(out, 0, sizeof *out);
	if (error || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) < 1 ||
	    PQnfields(res) != 6) {
		first_line(error ? error : PQresultErrorMessage(res), why, whysz);
		if (!why[0])
			snprintf(why, whysz, "unexpected answer from the database");
		return false;
	}
	int rows = PQntuples(res);
	out->cursor = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
	out->snapshot_required = PQgetvalue(res, 0, 1)[0] == 't';
	if (PQgetisnull(res, 0, 2))
		return true;
	out->v = malloc((size_t) rows * sizeof *out->v);
	if (!out->v) {
		snprintf(why, whysz, "out of memory");
		return false;
	}
	size_t bytes = 0;
	for (int i = 0; i < rows; i++) {
		sl_chg *c = &out->v[out->n++];
		c->seq = strtoull(PQgetvalue(res, i, 2), NULL, 10);
		c->grp = PQgetvalue(res, i, 3);
		c->text = PQgetvalue(res, i, 4);
		c->len = (size_t) PQgetlength(res, i, 4);
		bytes += c->len;
	}
	/* the estimate moves halfway to this answer's average */
	size_t avg = bytes / (size_t) rows + 1;
	chg_len_avg = chg_len_avg ? (chg_len_avg + avg) / 2 : avg;
	long total = strtol(PQgetvalue(res, 0, 5), NULL, 10);
	if (total > rows) {
		out->cursor = out->v[out->n - 1].seq;
		out->more = true;
	} else {
		out->more = total >= max;
	}
	return true;
}

/*
 * The changes frames for a session with these groups and cursor: the changes
 * of its groups above its cursor, split so that no frame is longer than
 * frame_max() unless one change alone is; each frame's cursor is the seq of
 * its last change, the last frame's the answer's cursor.
 */
typedef struct sl_frames {
	size_t n;
	sl_buf **buf;       /* n references */
	uint64_t *cursor;
} sl_frames;

static size_t
frame_max(void)
{
	size_t m = sl_gw.cfg.send_queue_bytes / 4;
	return m < 1024 ? 1024 : m;
}

static void
frames_free(sl_frames *f)
{
	for (size_t i = 0; i < f->n; i++)
		buf_unref(f->buf[i]);
	free(f->buf);
	free(f->cursor);
	memset(f, 0, sizeof *f);
}

static bool
frames_add(sl_frames *f, const sl_chgs *c, const sl_sess *s, size_t from, size_t to,
           size_t len, uint64_t cursor)
{
	sl_buf **nb = realloc(f->buf, (f->n + 1) * sizeof *nb);
	if (!nb)
		return false;
	f->buf = nb;
	uint64_t *nc = realloc(f->cursor, (f->n + 1) * sizeof *nc);
	if (!nc)
		return false;
	f->cursor = nc;
	sl_buf *b = chg_frame_new(len, cursor);
	if (!b)
		return false;
	char *p = chg_frame_items(b);
	size_t k = 0;
	for (size_t i = from; i < to; i++)
		if (c->v[i].seq > s->cursor && sess_has_group(s, c->v[i].grp)) {
			if (k++)
				*p++ = ',';
			memcpy(p, c->v[i].text, c->v[i].len);
			p += c->v[i].len;
		}
	f->buf[f->n] = b;
	f->cursor[f->n] = cursor;
	f->n++;
	return true;
}

/* Fills *out (possibly with no frame: nothing is for this session); false
 * when memory ran out (*out then empty). */
static bool
chgs_frames(const sl_chgs *c, const sl_sess *s, sl_frames *out)
{
	size_t max = frame_max(), from = 0, len = 0, k = 0;
	uint64_t last = 0;

	memset(out, 0, sizeof *out);
	for (size_t i = 0; i < c->n; i++) {
		if (c->v[i].seq <= s->cursor || !sess_has_group(s, c->v[i].grp))
			continue;
		if (k > 0 && len + 1 + c->v[i].len + 64 > max) {
			if (!frames_add(out, c, s, from, i, len, last))
				goto oom;
			from = i;
			len = 0;
			k = 0;
		}
		len += c->v[i].len + (k++ ? 1 : 0);
		last = c->v[i].seq;
	}
	if (k > 0 && !frames_add(out, c, s, from, c->n, len, c->cursor))
		goto oom;
	return true;
oom:
	frames_free(out);
	return false;
}

/* Queues the frames in order; false when one did not fit (the session is
 * behind from there) or the session is closing. */
static bool
queue_frames(sl_sess *s, const sl_frames *f)
{
	for (size_t i = 0; i < f->n; i++)
		if (!queue_changes(s, f->buf[i], f->cursor[i]))
			return false;
	return true;
}

/* ---------------------------------------------------------------- backlog */

static void fanout_kick(void);

static void
go_live(sl_sess *s)
{
	s->live = true;
	fanout_kick(); /* anything committed while the backlog was read */
}

static void on_backlog_result(void *arg, PGresult *res, const char *error);

/* Asks for the next piece of the session's backlog: the next page of the
 * snapshot being sent, a snapshot's first page at cursor 0, else changes after
 * its cursor. */
static void
backlog_next(sl_sess *s)
{
	char *lit = groups_literal(s->groups);
	char cur[32], max[16];
	bool snap = s->snapshotting || s->cursor == 0;
	sl_pending *p = pending_new(s, snap ? PQ_SNAPSHOT : PQ_BACKLOG);
	int rc = -1;

	s->live = false;
	if (snap && !s->snapshotting) {
		s->snapshotting = true;
		free(s->snap_table);
		free(s->snap_row);
		s->snap_table = s->snap_row = NULL;
	}
	snprintf(cur, sizeof cur, "%llu", (unsigned long long) s->cursor);
	int nmax = snap ? SL_SNAPSHOT_PAGE_ROWS : changes_max();
	snprintf(max, sizeof max, "%d", nmax);
	if (p)
		p->max = nmax;
	if (lit && p) {
		if (snap) {
			char bytes[32];
			snprintf(bytes, sizeof bytes, "%zu", sl_gw.cfg.send_queue_bytes / 2);
			const char *params[5] = { lit, s->snap_table, s->snap_row, max, bytes };
			rc = sl_gw_query(s->dbi,
			                 "SELECT synclog.snapshot_page($1::text[], $2, $3, $4::int, $5::bigint)::text",
			                 5, params, on_backlog_result, p);
		} else {
			char bytes[32];
			snprintf(bytes, sizeof bytes, "%zu", sl_gw.cfg.send_queue_bytes / 2);
			const char *params[4] = { lit, cur, max, bytes };
			rc = sl_gw_query(s->dbi, changes_sql, 4, params, on_backlog_result, p);
		}
	}
	free(lit);
	if (rc != 0) {
		free(p);
		queue_error(s, SL_ERR_SERVER_UNAVAILABLE,
		            "the database is unavailable; reconnect and resume from your cursor", true);
		return;
	}
	s->backlog_busy = true;
}

/* One page of a snapshot has arrived: one snapshot frame. */
static void
snapshot_result(sl_sess *s, PGresult *res)
{
	json_t *j = json_loads(PQgetvalue(res, 0, 0), 0, NULL); /* new */
	json_t *jc = j ? json_object_get(j, "cursor") : NULL;   /* borrowed */
	json_t *rows = j ? json_object_get(j, "rows") : NULL;   /* borrowed */
	json_t *more = j ? json_object_get(j, "more") : NULL;   /* borrowed */
	if (!json_is_integer(jc) || json_integer_value(jc) < 0 || !json_is_array(rows) ||
	    !json_is_boolean(more)) {
		json_decref(j);
		queue_error(s, SL_ERR_SERVER_UNAVAILABLE, "unexpected answer from the database", true);
		return;
	}
	if (!s->snap_table) /* the first page: its cursor is the snapshot's */
		s->snap_cursor = (uint64_t) json_integer_value(jc);
	bool done = !json_is_true(more);
	char *snap = sl_encode_snapshot(rows, s->snap_cursor, done);
	queue_text_at(s, snap, false); /* in order with changes */
	free(snap);
	if (!done) {
		const char *t = json_string_value(json_object_get(j, "table"));
		const char *r = json_string_value(json_object_get(j, "row"));
		free(s->snap_table);
		free(s->snap_row);
		s->snap_table = t ? strdup(t) : NULL;
		s->snap_row = r ? strdup(r) : NULL;
		if (!s->snap_table || !s->snap_row) {
			json_decref(j);
			queue_error(s, SL_ERR_SERVER_UNAVAILABLE, "unexpected answer from the database", true);
			return;
		}
	}
	json_decref(j);
	if (s->close_after)
		return;
	if (!done) {
		if (s->q_bytes > sl_gw.cfg.send_queue_bytes / 2)
			s->behind = true; /* the next page once the queue drains */
		else
			backlog_next(s);
		return;
	}
	s->snapshotting = false;
	s->cursor = s->snap_cursor;
	if (s->cursor > 0)
		backlog_next(s); /* whatever committed after the snapshot's cursor */
	else
		go_live(s);      /* an empty log: live changes from seq 1 */
}

static void
on_backlog_result(void *arg, PGresult *res, const char *error)
{
	sl_pending *p = arg;
	sl_sess *s = sess_find(p->sid);
	sl_pending_kind kind = p->kind;
	int max = p->max;
	free(p);
	if (!s)
		return;
	s->backlog_busy = false;
	if (s->close_after)
		return;

	char why[200];
	if (kind == PQ_SNAPSHOT) {
		if (error || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
			first_line(error ? error : PQresultErrorMessage(res), why, sizeof why);
			goto failed;
		}
		snapshot_result(s, res);
		return;
	}

	sl_chgs c;
	if (!chgs_read(res, error, max, &c, why, sizeof why))
		goto failed;
	if (c.snapshot_required) {
		sl_gw_log("session %llu client_id=%s: cursor %llu is no longer in the log; sending a snapshot",
		          (unsigned long long) s->id, s->client_id, (unsigned long long) s->cursor);
		free(c.v);
		s->cursor = 0;
		backlog_next(s);
		return;
	}
	bool oom = false, queued = true;
	sl_frames fr = { 0 };
	if (c.cursor > s->cursor) {
		oom = !chgs_frames(&c, s, &fr);
		if (!oom && fr.n == 0) {
			/* nothing of its groups: an empty frame still moves its cursor */
			sl_buf *b = chg_frame_new(0, c.cursor);
			oom = !b;
			if (b) {
				queued = queue_changes(s, b, c.cursor);
				buf_unref(b);
			}
		}
	}
	bool more = c.more;
	free(c.v);
	if (oom) {
		queue_error(s, SL_ERR_SERVER_UNAVAILABLE, "the gateway ran out of memory", true);
		return;
	}
	queued = queued && queue_frames(s, &fr);
	frames_free(&fr);
	if (!queued)
		return; /* behind (or closing): resumed from the cursor once drained */
	if (!more)
		go_live(s);
	else if (s->q_bytes > sl_gw.cfg.send_queue_bytes / 2)
		s->behind = true; /* the rest once the queue drains */
	else
		backlog_next(s);
	return;

failed:
	sl_gw_log("session %llu client_id=%s: backlog query failed: %s",
	          (unsigned long long) s->id, s->client_id, why);
	queue_error(s, SL_ERR_SERVER_UNAVAILABLE,
	            "reading the change log failed; reconnect and resume from your cursor", true);
}

/* ---------------------------------------------------------------- fan-out */

/*
 * Live changes.  On each NOTIFY synclog that claims a cursor not yet read
 * (see sl_sessions_on_notify(): claims are coalesced, and false ones
 * throttled), on each reconnection of the listener, and when a session joins
 * the fan-out, one query reads, for all live sessions together,
 * changes_sql(union of their groups, lowest of their cursors, changes_max())
 * on dbs[0].  At most one such query is in flight; a wake-up while it runs
 * sets `again` (a claim: fo.claim), which runs one more after it.  So
 * database work grows with changes, not with sessions or notifications.
 *
 * With the answer, each live session whose cursor is at least the query's
 * `after` gets one frame holding the changes of its granted groups above its
 * cursor, and its cursor moves to the answer's cursor.  Sessions with equal
 * granted groups and equal cursors (normally all of a group's followers) get
 * the same frame: built once, queued by reference.  A session that joined with
 * a lower cursor meanwhile is left for the next round, run at once.
 *
 * When the lowest cursor has left the log (snapshot_required), the sessions at
 * that cursor are sent a snapshot and the rest are served by the next round.
 */
typedef struct sl_fanout_q {
	uint64_t after;
	int max;          /* the changes asked for */
} sl_fanout_q;

/* A frame built for one (groups, cursor) in a round. */
typedef struct sl_frame_slot {
	const char *gkey;     /* borrowed from a session */
	uint64_t cursor;
	sl_frames frames;     /* none: nothing for them */
	bool used;
} sl_frame_slot;

static void on_fanout_result(void *arg, PGresult *res, const char *error);

static void
fanout_run(void)
{
	sl_strset groups = { 0 };
	uint64_t after = UINT64_MAX;
	bool any = false;

	fo.again = false;
	fo.claim_sent = fo.claim; /* what this query's answer should reach */
	fo.claim = 0;
	fo.query++;
	for (sl_sess *s = sl_gw.sessions; s; s = s->next) {
		if (!s->live || s->close_after)
			continue;
		any = true;
		s->fo_query = fo.query; /* its groups are in this query's */
		if (s->cursor < after)
			after = s->cursor;
		for (const char *p = s->gkey; *p; p += strlen(p) + 1)
			strset_add(&groups, p);
	}
	if (!any || groups.n == 0 || groups.oom) {
		if (groups.oom)
			sl_gw_log("fan-out: out of memory");
		free(groups.slot);
		return;
	}
	char *lit = strset_literal(&groups);
	free(groups.slot);
	sl_fanout_q *q = malloc(sizeof *q);
	char cur[32], max[16];
	snprintf(cur, sizeof cur, "%llu", (unsigned long long) after);
	int nmax = changes_max();
	snprintf(max, sizeof max, "%d", nmax);
	char bytes[32];
	snprintf(bytes, sizeof bytes, "%zu", sl_gw.cfg.send_queue_bytes / 2);
	const char *params[4] = { lit, cur, max, bytes };
	if (lit && q) {
		q->after = after;
		q->max = nmax;
		if (sl_gw_query(0, changes_sql, 4, params, on_fanout_result, q) == 0) {
			fo.running = true;
			q = NULL;
		}
	}
	free(q);
	free(lit);
}

/*
 * Pacing.  Under load the fastest way to many subscribers is fewer, fuller
 * frames: a round is not started while most frames of the last one are still
 * unwritten (more than a tenth of them, for at most SL_FANOUT_DEFER_MS), so
 * the changes that commit meanwhile go out together, one frame per session,
 * in the next round.  A few stalled sessions cannot hold it: they are under
 * the tenth, and the wait is capped.
 */
#define SL_FANOUT_DEFER_MS 25

static bool
fanout_ready(void)
{
	return fo.unsent * 10 <= fo.round_frames ||
	       sl_gw_now_ms() - fo.round_ms >= SL_FANOUT_DEFER_MS;
}

static void fanout_kick(void);

static void
fanout_deferred(lws_sorted_usec_list_t *sul)
{
	(void) sul;
	fo.deferred = false;
	fanout_kick();
}

static void
fanout_kick(void)
{
	if (fo.stopped)
		return; /* shutting down: sessions are closing, the context going */
	if (fo.running) {
		fo.again = true;
	} else if (fanout_ready()) {
		if (fo.deferred) {
			fo.deferred = false;
			lws_sul_schedule(sl_gw.ctx, 0, &fo.sul, NULL, LWS_SET_TIMER_USEC_CANCEL);
		}
		fanout_run();
	} else if (!fo.deferred) {
		fo.deferred = true;
		int64_t left = SL_FANOUT_DEFER_MS - (sl_gw_now_ms() - fo.round_ms);
		lws_sul_schedule(sl_gw.ctx, 0, &fo.sul, fanout_deferred,
		                 (left > 0 ? left : 1) * LWS_US_PER_MS);
	}
}

/* A frame of the last round was written (or dropped with its session). */
static void
fanout_sent_one(void)
{
	if (fo.unsent > 0)
		fo.unsent--;
	if (fo.deferred && fanout_ready())
		fanout_kick();
}

static void
fanout_claim_timer(lws_sorted_usec_list_t *sul)
{
	(void) sul;
	fo.claim_timer = false;
	fanout_claim_pump();
}

/*
 * Starts the round a pending claim asks for, unless one is in flight (its
 * answer calls this again), or the last claim went unconfirmed less than
 * SL_NOTIFY_INTERVAL_MS ago (then a timer calls this again at the end of
 * that interval).
 */
static void
fanout_claim_pump(void)
{
	if (fo.stopped || fo.claim == 0 || fo.running || fo.claim_timer)
		return;
	int64_t wait = fo.throttle_until - sl_gw_now_ms();
	if (wait > 0) {
		fo.claim_timer = true;
		lws_sul_schedule(sl_gw.ctx, 0, &fo.claim_sul, fanout_claim_timer, wait * LWS_US_PER_MS);
		return;
	}
	fanout_kick();
}

static uint64_t
slot_hash(const char *gkey, uint64_t cursor)
{
	uint64_t h = 0xcbf29ce484222325u;
	for (const char *p = gkey; *p; p += strlen(p) + 1)
		h = hash_str(p, h) * 31 + 1;
	return h ^ (cursor * 0x9e3779b97f4a7c15u);
}

static void
on_fanout_result(void *arg, PGresult *res, const char *error)
{
	sl_fanout_q *q = arg;
	uint64_t after = q->after;
	int max = q->max;
	free(q);
	fo.running = false;

	sl_chgs c;
	char why[200];
	if (!chgs_read(res, error, max, &c, why, sizeof why)) {
		sl_gw_log("fan-out query failed: %s", why);
		/* the next notification (not sooner than the interval) or
		 * reconnection tries again */
		fo.claim_sent = 0;
		fo.throttle_until = sl_gw_now_ms() + SL_NOTIFY_INTERVAL_MS;
		fanout_claim_pump();
		return;
	}
	bool rerun = fo.again || c.more;
	if (!c.snapshot_required && c.cursor > fo.cursor)
		fo.cursor = c.cursor;
	if (fo.claim_sent > fo.cursor) {
		if (c.more || c.snapshot_required) {
			/* cut short: the next round, run at once, reads on */
			if (fo.claim_sent > fo.claim)
				fo.claim = fo.claim_sent;
		} else {
			/* A notification claimed a cursor this answer, read after it
			 * was heard, does not reach: not the sequencer's.  The next
			 * claim waits SL_NOTIFY_INTERVAL_MS. */
			fo.n_unconfirmed++;
			fo.throttle_until = sl_gw_now_ms() + SL_NOTIFY_INTERVAL_MS;
		}
	}
	fo.claim_sent = 0;
	if (fo.claim <= fo.cursor)
		fo.claim = 0;

	/* One slot per (groups, cursor): an open-addressing table sized for
	 * every live session. */
	size_t nlive = 0;
	for (sl_sess *s = sl_gw.sessions; s; s = s->next)
		nlive += s->live;
	size_t cap = 16;
	while (cap < nlive * 2)
		cap *= 2;
	sl_frame_slot *slot = calloc(cap, sizeof *slot);
	if (!slot) {
		sl_gw_log("fan-out: out of memory");
		free(c.v);
		return;
	}

	fo.n_rounds++;
	if (++fo.round == 0)
		fo.round = 1;
	fo.tag = fo.round;
	fo.round_frames = fo.unsent = 0;
	fo.round_ms = sl_gw_now_ms();
	for (sl_sess *s = sl_gw.sessions; s; s = s->next) {
		if (!s->live || s->close_after)
			continue;
		if (s->fo_query != fo.query || s->cursor < after) {
			/* Went live after the query was sent: its groups may not be in
			 * the answer, whose cursor must not move it.  Next round. */
			rerun = true;
			continue;
		}
		if (c.snapshot_required) {
			if (s->cursor == after) {
				sl_gw_log("session %llu client_id=%s: cursor %llu is no longer in the log; sending a snapshot",
				          (unsigned long long) s->id, s->client_id,
				          (unsigned long long) s->cursor);
				s->cursor = 0;
				backlog_next(s);
			} else {
				rerun = true;
			}
			continue;
		}
		if (c.cursor <= s->cursor)
			continue;
		size_t j = slot_hash(s->gkey, s->cursor) & (cap - 1);
		size_t klen = groups_key_len(s->gkey);
		while (slot[j].used &&
		       !(slot[j].cursor == s->cursor && groups_key_len(slot[j].gkey) == klen &&
		         !memcmp(slot[j].gkey, s->gkey, klen)))
			j = (j + 1) & (cap - 1);
		if (!slot[j].used) {
			slot[j].used = true;
			slot[j].gkey = s->gkey;
			slot[j].cursor = s->cursor;
			if (!chgs_frames(&c, s, &slot[j].frames)) {
				slot[j].used = false;
				sl_gw_log("fan-out: out of memory building a frame");
				queue_error(s, SL_ERR_SERVER_UNAVAILABLE, "the gateway ran out of memory", true);
				continue;
			}
		}
		if (queue_frames(s, &slot[j].frames) && c.cursor > s->cursor)
			s->cursor = c.cursor; /* nothing more for it up to the answer's cursor */
	}
	fo.n_frames += fo.round_frames;
	fo.tag = 0;
	for (size_t j = 0; j < cap; j++)
		frames_free(&slot[j].frames);
	free(slot);
	free(c.v);
	if (rerun)
		fanout_kick();
	else
		fanout_claim_pump();
}

/* ---------------------------------------------------------------- revocation */

/*
 * On NOTIFY synclog_revoke (and on each reconnection of the listener, which
 * may have missed one) the tokens of every welcomed session are checked again
 * with synclog.authenticate_hash, by their hashes, in one query; the sessions
 * of tokens that no longer authenticate get `unauthorized` and are closed.
 *
 * Any role may send NOTIFY synclog_revoke, so a flood of them must not mean a
 * flood of checks: at most one check is in flight, and one starts at most
 * every SL_NOTIFY_INTERVAL_MS.  A notification that arrives while a check
 * runs or within the interval marks one as wanted (rv.want), which starts
 * when the one in flight has answered and the interval is over (a timer,
 * rv.sul): however many notifications, one more check.  The first
 * notification after a quiet interval starts its check at once, so a real
 * revocation closes its sessions within a query's time.
 *
 * A hello whose authentication is still in flight when a notification
 * arrives is not in that check, and its query may have read the token before
 * the revocation committed (its snapshot came first).  So each notification
 * (and each reconnection of the listener) advances rv.gen; an accepting
 * answer to a query sent under an older generation is not trusted: the
 * session is held (its answer kept, no welcome, no row sent) and joins the
 * next check, whose answer welcomes it or closes it with unauthorized.
 * (Authenticating it again instead would, under a flood, never end: each
 * new answer would straddle another notification.)
 */
static struct {
	bool running;
	bool want;     /* a check is due: a notification, a reconnection, a held hello */
	bool timer;    /* sul is set */
	bool sent;     /* a check was ever sent (last_ms is meaningful) */
	int64_t last_ms;   /* when the last check was sent */
	uint64_t gen;  /* revocation notifications heard so far */
	uint64_t run;  /* the number of the last check sent (sessions' check_run) */
	lws_sorted_usec_list_t sul;
	uint64_t n_notify, n_checks; /* for the shutdown log line */
} rv;

/* The hashes ($1, hex) whose tokens no longer authenticate. */
static const char revoke_sql[] =
	"SELECT h FROM pg_catalog.unnest($1::text[]) AS h"
	" WHERE NOT EXISTS (SELECT 1 FROM synclog.authenticate_hash(pg_catalog.decode(h, 'hex')))";

static void on_revoke_result(void *arg, PGresult *res, const char *error);
static void welcome(sl_sess *s);

/* A held session whose check could not be made: as an authentication query
 * that failed. */
static void
held_unavailable(sl_sess *s)
{
	s->held = false;
	s->sm.state = SL_SESS_CLOSING;
	queue_error(s, SL_ERR_SERVER_UNAVAILABLE, "the database is unavailable; try again later", true);
}

static void
revoke_run(void)
{
	sl_strset tokens = { 0 };
	rv.want = false;
	rv.run++;
	for (sl_sess *s = sl_gw.sessions; s; s = s->next)
		if ((s->groups || s->held) && !s->close_after && s->has_token) {
			strset_add(&tokens, s->token_hex);
			s->check_run = rv.run;
		}
	if (tokens.n == 0 || tokens.oom) {
		if (tokens.oom)
			sl_gw_log("revocation check: out of memory");
		free(tokens.slot);
		return;
	}
	char *lit = strset_literal(&tokens);
	free(tokens.slot);
	const char *params[1] = { lit };
	if (lit && sl_gw_query(0, revoke_sql, 1, params, on_revoke_result, NULL) == 0) {
		rv.running = true;
		rv.sent = true;
		rv.last_ms = sl_gw_now_ms();
		rv.n_checks++;
	} else {
		sl_gw_log("revocation check: could not be sent; the next notification or reconnection tries again");
		for (sl_sess *s = sl_gw.sessions; s; s = s->next)
			if (s->held && !s->close_after)
				held_unavailable(s);
	}
	free(lit);
}

static void revoke_pump(void);

static void
revoke_timer(lws_sorted_usec_list_t *sul)
{
	(void) sul;
	rv.timer = false;
	revoke_pump();
}

/* Starts the wanted check, unless one is in flight (its answer calls this
 * again) or the last started less than SL_NOTIFY_INTERVAL_MS ago (a timer
 * calls this again then). */
static void
revoke_pump(void)
{
	if (fo.stopped || !rv.want || rv.running || rv.timer)
		return;
	int64_t wait = rv.sent ? rv.last_ms + SL_NOTIFY_INTERVAL_MS - sl_gw_now_ms() : 0;
	if (wait > 0) {
		rv.timer = true;
		lws_sul_schedule(sl_gw.ctx, 0, &rv.sul, revoke_timer, wait * LWS_US_PER_MS);
		return;
	}
	revoke_run();
}

static void
revoke_kick(void)
{
	rv.want = true;
	revoke_pump();
}

static void
on_revoke_result(void *arg, PGresult *res, const char *error)
{
	(void) arg;
	rv.running = false;
	uint64_t run = rv.run;
	if (error || PQresultStatus(res) != PGRES_TUPLES_OK) {
		char why[200];
		first_line(error ? error : PQresultErrorMessage(res), why, sizeof why);
		sl_gw_log("revocation check failed: %s", why);
		for (sl_sess *s = sl_gw.sessions; s; s = s->next)
			if (s->held && s->check_run == run && !s->close_after)
				held_unavailable(s);
		revoke_pump(); /* else the next notification or reconnection tries again */
		return;
	}
	sl_strset gone = { 0 };
	for (int i = 0; i < PQntuples(res); i++)
		strset_add(&gone, PQgetvalue(res, i, 0));
	for (sl_sess *s = sl_gw.sessions, *next; s; s = next) {
		next = s->next;
		if (s->close_after || !s->has_token || s->check_run != run)
			continue;
		bool revoked = gone.n > 0 && strset_has(&gone, s->token_hex);
		if (s->held) {
			s->held = false;
			sl_action a = sl_session_on_auth_result(&s->sm, !revoked);
			if (a.kind == SL_ACTION_CLOSE) {
				sl_gw_log("session %llu client_id=%s peer=%s: auth failure (%s)",
				          (unsigned long long) s->id, s->client_id, s->peer, a.error.message);
				queue_error(s, a.error.code, a.error.message, true);
			} else if (a.kind == SL_ACTION_WELCOME) {
				welcome(s);
			}
		} else if (revoked && s->groups) {
			sl_gw_log("session %llu client_id=%s peer=%s: token revoked; closing",
			          (unsigned long long) s->id, s->client_id, s->peer);
			s->sm.state = SL_SESS_CLOSING;
			queue_error(s, SL_ERR_UNAUTHORIZED, "the token was revoked", true);
		}
	}
	free(gone.slot);
	revoke_pump();
}

/*
 * NOTIFY synclog carries the sequencer's new high-water cursor.  A
 * notification whose cursor the fan-out has already read (≤ fo.cursor) asks
 * for nothing and is ignored; otherwise its cursor becomes a claim
 * (fo.claim, the highest one pending) that the next round reads up to.  At
 * most one round is in flight (fo.running), so notifications arriving
 * meanwhile are coalesced into one claim, read by one round once the
 * answer is in; the first notification after a quiet spell starts its round
 * at once.  Any role can send NOTIFY synclog with any payload, but a claim
 * is checked by its answer: an answer read after the notification arrived
 * must reach its cursor (the sequencer notifies after its commit).  When it
 * does not, the claim was not the sequencer's, and the next claim waits until
 * SL_NOTIFY_INTERVAL_MS after that answer (fo.throttle_until,
 * fo.claim_sul): a flood of false claims costs at most one fan-out query per
 * interval, while true ones, confirmed by every answer, are never held back
 * unless such a flood is going on.  A payload that is not a number is a claim
 * of "anything", confirmed by no answer.
 */
void
sl_sessions_on_notify(const char *channel, const char *payload)
{
	if (!strcmp(channel, "synclog")) {
		fo.n_notify++;
		uint64_t n = UINT64_MAX;
		char *end;
		if (payload[0] >= '0' && payload[0] <= '9') {
			errno = 0;
			unsigned long long v = strtoull(payload, &end, 10);
			if (!errno && !*end)
				n = v;
		}
		if (n <= fo.cursor) {
			fo.n_stale++;
			return;
		}
		if (n > fo.claim)
			fo.claim = n;
		fanout_claim_pump();
	} else if (!strcmp(channel, "synclog_revoke")) {
		rv.n_notify++;
		rv.gen++;
		revoke_kick();
	}
}

void
sl_sessions_on_db_connected(int dbi)
{
	if (dbi != 0)
		return;
	/* Their queries, if any, failed with the connection. */
	fo.running = false;
	rv.running = false;
	rv.gen++; /* a revocation may have been missed while disconnected */
	fanout_kick();
	revoke_kick();
}

/* ---------------------------------------------------------------- hello */

/*
 * Tokens.  The gateway never sends a token to PostgreSQL, where any logging
 * setting (log_statement, log_min_duration_statement, auto_explain, an error
 * quoting its parameters) could write it down: it hashes the token itself
 * (SHA-256 of its UTF-8 bytes, the same as the extension's
 * sha256(convert_to(token, 'UTF8')), which synclog.tokens stores) and sends
 * the hash, as hex, to synclog.authenticate_hash and synclog.push_hash and in
 * the revocation check.  The session keeps only the hash; the hello's text
 * (the frame buffer and jansson's copy of the token) is wiped once read.
 */

/* Fills out with the lowercase hex SHA-256 of token; false (out empty) when
 * libcrypto fails, which it does not short of memory. */
static bool
token_hash_hex(const char *token, char out[SL_TOKEN_HASH_HEX + 1])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	out[0] = '\0';
	if (!EVP_Digest(token, strlen(token), md, &n, EVP_sha256(), NULL) ||
	    n * 2 != SL_TOKEN_HASH_HEX)
		return false;
	for (unsigned int i = 0; i < n; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[2 * n] = '\0';
	return true;
}

static void on_auth_result(void *arg, PGresult *res, const char *error);

/*
 * Sends the hello's authentication query (the token's grant, the server's
 * cursor, the tracked tables); on_auth_result answers.  When it cannot be
 * sent the session is closed with server_unavailable.
 */
static void
auth_send(sl_sess *s)
{
	sl_pending *p = pending_new(s, PQ_AUTH);
	const char *params[1] = { s->token_hex };
	s->auth_gen = rv.gen;
	if (!s->has_token || !p ||
	    sl_gw_query(s->dbi,
	                "SELECT a.subject, array_to_json(a.groups)::text, a.can_write, "
	                "synclog.cursor(), synclog.tables()::text "
	                "FROM synclog.authenticate_hash(pg_catalog.decode($1, 'hex')) a",
	                1, params, on_auth_result, p) != 0) {
		free(p);
		s->sm.state = SL_SESS_CLOSING;
		queue_error(s, SL_ERR_SERVER_UNAVAILABLE,
		            "the database is unavailable; try again later", true);
	}
}

static void
on_auth_result(void *arg, PGresult *res, const char *error)
{
	sl_pending *p = arg;
	sl_sess *s = sess_find(p->sid);
	free(p);
	if (!s)
		return;
	if (error || PQresultStatus(res) != PGRES_TUPLES_OK) {
		char why[200];
		first_line(error ? error : PQresultErrorMessage(res), why, sizeof why);
		sl_gw_log("session %llu client_id=%s: authentication query failed: %s",
		          (unsigned long long) s->id, s->client_id, why);
		/* Not a refusal: the state machine has no "try later", so close. */
		s->sm.state = SL_SESS_CLOSING;
		queue_error(s, SL_ERR_SERVER_UNAVAILABLE,
		            "the database is unavailable; try again later", true);
		return;
	}
	bool ok = PQntuples(res) == 1;
	if (ok && s->sm.state == SL_SESS_AUTHENTICATING) {
		/* the answer, kept until welcome() */
		free(s->auth_subject);
		json_decref(s->auth_groups);
		json_decref(s->auth_tables);
		s->auth_subject = strdup(PQgetvalue(res, 0, 0));
		s->auth_groups = json_loads(PQgetvalue(res, 0, 1), 0, NULL); /* new */
		s->auth_tables = json_loads(PQgetvalue(res, 0, 4), 0, NULL); /* new */
		s->auth_cursor = strtoull(PQgetvalue(res, 0, 3), NULL, 10);
		if (s->auth_gen != rv.gen) {
			/* A revocation was heard meanwhile: this answer may predate
			 * it.  Held for the next revocation check. */
			sl_gw_log("session %llu client_id=%s: a revocation arrived during authentication; "
			          "holding the welcome for the next revocation check",
			          (unsigned long long) s->id, s->client_id);
			s->held = true;
			revoke_kick();
			return;
		}
	}
	sl_action a = sl_session_on_auth_result(&s->sm, ok);
	if (a.kind == SL_ACTION_CLOSE) {
		sl_gw_log("session %llu client_id=%s peer=%s: auth failure (%s)",
		          (unsigned long long) s->id, s->client_id, s->peer, a.error.message);
		queue_error(s, a.error.code, a.error.message, true);
		return;
	}
	if (a.kind == SL_ACTION_WELCOME)
		welcome(s);
}

/*
 * The hello is accepted (the state machine said SL_ACTION_WELCOME): the
 * granted groups are the asked ones the token's answer (s->auth_*) grants;
 * welcome is queued and the backlog asked for.  The answer is released.
 */
static void
welcome(sl_sess *s)
{
	json_t *tokgroups = s->auth_groups; /* new: ours now */
	json_t *tables = s->auth_tables;    /* new: ours now */
	uint64_t server_cursor = s->auth_cursor;
	char *subject = s->auth_subject;
	s->auth_groups = s->auth_tables = NULL;
	s->auth_subject = NULL;
	sl_strset granted = { 0 }, seen = { 0 };
	size_t i;
	json_t *g;
	json_array_foreach(tokgroups, i, g)
		if (json_is_string(g))
			strset_add(&granted, json_string_value(g));
	s->groups = json_array();
	json_array_foreach(s->req_groups, i, g)
		if (strset_has(&granted, json_string_value(g)) && strset_add(&seen, json_string_value(g)))
			json_array_append(s->groups, g);
	free(granted.slot);
	free(seen.slot);
	json_decref(tokgroups);
	json_decref(s->req_groups);
	s->req_groups = NULL;
	s->gkey = groups_key(s->groups);
	if (!s->gkey || !subject || granted.oom || seen.oom) {
		json_decref(tables);
		free(subject);
		queue_error(s, SL_ERR_SERVER_UNAVAILABLE, "the gateway ran out of memory", true);
		return;
	}
	if (!json_is_object(tables)) {
		json_decref(tables);
		tables = json_object();
	}
	char hlc[SL_HLC_LEN + 1];
	sl_gw_hlc_now(hlc);
	queue_owned(s, sl_encode_welcome(server_cursor, hlc, s->groups, tables));
	peer_pending_end(s);
	json_decref(tables);
	char *gs = json_dumps(s->groups, JSON_COMPACT);
	sl_gw_log("session %llu client_id=%s peer=%s: welcome subject=%s groups=%s cursor=%llu",
	          (unsigned long long) s->id, s->client_id, s->peer, subject,
	          gs ? gs : "?", (unsigned long long) s->cursor);
	free(gs);
	free(subject);
	if (json_array_size(s->groups) > 0 && !s->close_after)
		backlog_next(s);
}

static void
do_hello(sl_sess *s, const sl_frame *f)
{
	snprintf(s->client_id, sizeof s->client_id, "%s", f->hello.client_id);
	s->has_token = token_hash_hex(f->hello.token, s->token_hex);
	if (!s->has_token)
		sl_gw_log("session %llu client_id=%s: hashing the token failed",
		          (unsigned long long) s->id, s->client_id);
	json_decref(s->req_groups);
	s->req_groups = json_incref(f->hello.groups);
	s->cursor = f->hello.cursor;
	s->hello_seen = true;
	sl_gw_hlc_observe(f->hello.hlc);
	sl_gw_log("session %llu client_id=%s peer=%s: hello cursor=%llu",
	          (unsigned long long) s->id, s->client_id, s->peer,
	          (unsigned long long) s->cursor);

	auth_send(s);
}

/* ---------------------------------------------------------------- push */

static void
on_push_result(void *arg, PGresult *res, const char *error)
{
	sl_pending *p = arg;
	sl_sess *s = sess_find(p->sid);
	size_t bytes = p->bytes;
	free(p);
	if (!s)
		return;
	s->push_n--;
	s->push_bytes -= bytes;
	rx_flow(s);
	if (error) {
		queue_error(s, SL_ERR_SERVER_UNAVAILABLE,
		            "the database is unavailable; the push was not applied, send it again", false);
		return;
	}
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		char why[200];
		first_line(PQresultErrorMessage(res), why, sizeof why);
		sl_gw_log("session %llu client_id=%s: push failed: %s",
		          (unsigned long long) s->id, s->client_id, why);
		queue_error(s, SL_ERR_SERVER_UNAVAILABLE, why, false);
		return;
	}
	json_t *reply = json_loads(PQgetvalue(res, 0, 0), 0, NULL); /* new */
	char *ack = reply ? sl_encode_ack(reply) : NULL;
	if (!ack) {
		sl_gw_log("session %llu client_id=%s: synclog.push answered something unexpected",
		          (unsigned long long) s->id, s->client_id);
		queue_error(s, SL_ERR_SERVER_UNAVAILABLE, "unexpected answer from the database", false);
	} else {
		sl_gw_hlc_observe(json_string_value(json_object_get(reply, "hlc")));
		queue_owned(s, ack);
	}
	json_decref(reply);
}

static void
do_push(sl_sess *s)
{
	sl_pending *p = pending_new(s, PQ_PUSH);
	/* s->rx is the client's frame, NUL-terminated by on_message */
	const char *params[3] = { s->token_hex, s->client_id, s->rx };
	if (!p || !s->has_token ||
	    sl_gw_query(s->dbi,
	                "SELECT synclog.push_hash(pg_catalog.decode($1, 'hex'), $2, ($3::jsonb)->'ops')::text",
	                3, params, on_push_result, p) != 0) {
		free(p);
		queue_error(s, SL_ERR_SERVER_UNAVAILABLE,
		            "the database is unavailable; the push was not applied, send it again", false);
		return;
	}
	p->bytes = s->rx_len;
	s->push_n++;
	s->push_bytes += s->rx_len;
	rx_flow(s);
}

/* ---------------------------------------------------------------- frames */

static void
act(sl_sess *s, sl_action a, const sl_frame *f)
{
	switch (a.kind) {
	case SL_ACTION_NONE:
	case SL_ACTION_WELCOME: /* only from on_auth_result */
		break;
	case SL_ACTION_AUTHENTICATE:
		do_hello(s, f);
		break;
	case SL_ACTION_PUSH:
		do_push(s);
		break;
	case SL_ACTION_PONG: {
		char hlc[SL_HLC_LEN + 1];
		sl_gw_hlc_now(hlc);
		queue_owned(s, sl_encode_pong(hlc));
		break;
	}
	case SL_ACTION_ERROR:
		queue_error(s, a.error.code, a.error.message, false);
		break;
	case SL_ACTION_CLOSE:
		sl_gw_log("session %llu client_id=%s peer=%s: closing: %s: %s",
		          (unsigned long long) s->id, s->client_id, s->peer, a.error.code,
		          a.error.message);
		queue_error(s, a.error.code, a.error.message, true);
		break;
	}
}

/* A whole message has arrived (s->rx, s->rx_len, NUL-terminated). */
static void
on_message(sl_sess *s, bool binary)
{
	sl_frame f;
	sl_error err;

	memset(&f, 0, sizeof f);
	if (s->rx_oversize) {
		memset(&err, 0, sizeof err);
		err.code = SL_ERR_TOO_LARGE;
		snprintf(err.message, sizeof err.message,
		         "frame larger than max_frame_bytes (%zu bytes)", s->sm.limits.max_frame_bytes);
		act(s, sl_session_on_bad_frame(&s->sm, &err), NULL);
	} else if (binary) {
		memset(&err, 0, sizeof err);
		err.code = SL_ERR_BAD_FRAME;
		snprintf(err.message, sizeof err.message, "binary frames are not part of synclog.v1; send text");
		act(s, sl_session_on_bad_frame(&s->sm, &err), NULL);
	} else if (sl_frame_parse(s->rx ? s->rx : "", s->rx_len, &s->sm.limits, &f, &err) != 0) {
		act(s, sl_session_on_bad_frame(&s->sm, &err), NULL);
	} else {
		act(s, sl_session_on_frame(&s->sm, &f), &f);
	}
	/* The token, in jansson's copy and in the frame's text, is not kept
	 * (a frame before welcome is small: wiping costs nothing). */
	if (f.doc && f.type == SL_FRAME_HELLO && f.hello.token)
		OPENSSL_cleanse((char *) f.hello.token, strlen(f.hello.token));
	if (s->rx && !s->groups)
		OPENSSL_cleanse(s->rx, s->rx_len);
	sl_frame_clear(&f);
	/* An idle session keeps no receive buffer. */
	free(s->rx);
	s->rx = NULL;
	s->rx_len = s->rx_cap = 0;
	s->rx_oversize = false;
}

/* Appends one fragment; false when out of memory. */
static bool
rx_append(sl_sess *s, const void *in, size_t len)
{
	if (s->rx_oversize)
		return true;
	if (s->rx_len + len > s->sm.limits.max_frame_bytes) {
		s->rx_oversize = true;
		free(s->rx);
		s->rx = NULL;
		s->rx_len = s->rx_cap = 0;
		return true;
	}
	if (s->rx_len + len + 1 > s->rx_cap) {
		size_t cap = s->rx_cap ? s->rx_cap : 1024;
		while (cap < s->rx_len + len + 1)
			cap *= 2;
		char *n = realloc(s->rx, cap);
		if (!n)
			return false;
		s->rx = n;
		s->rx_cap = cap;
	}
	if (len)
		memcpy(s->rx + s->rx_len, in, len);
	s->rx_len += len;
	s->rx[s->rx_len] = '\0';
	return true;
}

/* ---------------------------------------------------------------- timers */

static void
drop(sl_sess *s, const char *why)
{
	sl_gw_log("session %llu client_id=%s peer=%s: %s; dropping the connection",
	          (unsigned long long) s->id, s->client_id[0] ? s->client_id : "-", s->peer, why);
	s->live = false;
	s->close_after = true;
	lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

static void
sweep(lws_sorted_usec_list_t *sul)
{
	int64_t now = sl_gw_now_ms();
	int64_t idle_ms = (int64_t) sl_gw.cfg.idle_timeout_s * 1000;
	char why[96];

	for (sl_sess *s = sl_gw.sessions; s; s = s->next) {
		if (s->close_after) {
			if (s->closing_ms && now - s->closing_ms > SL_CLOSE_GRACE_MS) {
				s->closing_ms = 0; /* once */
				drop(s, "closing, its last frame still unwritten");
			}
			continue;
		}
		if (!s->hello_seen && now - s->opened_ms > (int64_t) sl_gw.cfg.hello_timeout_s * 1000) {
			snprintf(why, sizeof why, "no hello within %d s; closing", sl_gw.cfg.hello_timeout_s);
			sl_gw_log("session %llu peer=%s: %s", (unsigned long long) s->id, s->peer, why);
			s->sm.state = SL_SESS_CLOSING;
			queue_error(s, SL_ERR_HELLO_REQUIRED, why, true);
			continue;
		}
		if (idle_ms > 0 && now - s->last_rx_ms > idle_ms) {
			snprintf(why, sizeof why, "silent for %d s (no frame, no pong)",
			         sl_gw.cfg.idle_timeout_s);
			drop(s, why);
		} else if (idle_ms > 0 && now - s->last_rx_ms > idle_ms / 2 && !s->ping_sent) {
			s->ping_sent = s->ping_due = true;
			lws_callback_on_writable(s->wsi);
		}
	}
	lws_sul_schedule(sl_gw.ctx, 0, sul, sweep, LWS_US_PER_SEC);
}

void
sl_sessions_start(void)
{
	lws_sul_schedule(sl_gw.ctx, 0, &sweep_sul, sweep, LWS_US_PER_SEC);
}

void
sl_sessions_stop(void)
{
	sl_gw_log("fan-out: %llu rounds queued %llu changes frames; %llu frames written, "
	          "%llu changes frames coalesced into fewer",
	          (unsigned long long) fo.n_rounds, (unsigned long long) fo.n_frames,
	          (unsigned long long) fo.n_writes, (unsigned long long) fo.n_merged);
	sl_gw_log("notifications: synclog %llu (%llu already read, %llu claims no answer confirmed), "
	          "synclog_revoke %llu; %llu revocation checks",
	          (unsigned long long) fo.n_notify, (unsigned long long) fo.n_stale,
	          (unsigned long long) fo.n_unconfirmed, (unsigned long long) rv.n_notify,
	          (unsigned long long) rv.n_checks);
	fo.stopped = true;
	fo.deferred = false;
	fo.claim_timer = false;
	rv.timer = false;
	lws_sul_schedule(sl_gw.ctx, 0, &fo.sul, NULL, LWS_SET_TIMER_USEC_CANCEL);
	lws_sul_schedule(sl_gw.ctx, 0, &fo.claim_sul, NULL, LWS_SET_TIMER_USEC_CANCEL);
	lws_sul_schedule(sl_gw.ctx, 0, &rv.sul, NULL, LWS_SET_TIMER_USEC_CANCEL);
	lws_sul_schedule(sl_gw.ctx, 0, &sweep_sul, NULL, LWS_SET_TIMER_USEC_CANCEL);
}

/* ---------------------------------------------------------------- callback */

/*
 * Coalescing.  When more than one changes frame waits at the head of a
 * session's queue (its client reads slower than changes commit, or a round
 * came while its last frame was unwritten), they go out as one changes
 * frame: their changes in queue order, which is seq order (each frame holds
 * only changes above the cursor of the one before it), and the last one's
 * cursor; at most frame_max() bytes unless the first frame alone is longer.
 * One write and one frame for the client to read instead of several.  It is
 * adaptive by construction: a client that keeps up has one frame queued at a
 * time, which is written as it is, shared, not copied.  The merged frame
 * replaces the frames it took in the head entry; those of the current round
 * count as sent now.  When memory runs out nothing is merged.
 */
static void
merge_changes(sl_sess *s)
{
	sl_out *o = s->q_head;
	if (!o || !o->buf->changes || !o->next || !o->next->buf->changes)
		return;
	size_t max = frame_max(), items = 0, n = 0;
	uint64_t cursor = 0;
	for (sl_out *e = o; e && e->buf->changes; e = e->next) {
		size_t add = e->buf->items + (items && e->buf->items ? 1 : 0);
		if (n > 0 && sizeof CHG_HEAD + items + add + 32 > max)
			break;
		items += add;
		cursor = e->buf->cursor;
		n++;
	}
	if (n < 2)
		return;
	sl_buf *m = chg_frame_new(items, cursor);
	if (!m)
		return;
	fo.n_merged += n;
	char *start = chg_frame_items(m), *p = start;
	for (size_t i = 0; i < n; i++) {
		sl_out *e = i == 0 ? o : o->next;
		sl_buf *b = e->buf;
		if (b->items) {
			if (p != start)
				*p++ = ',';
			memcpy(p, chg_frame_items(b), b->items);
			p += b->items;
		}
		s->q_bytes -= b->len;
		if (e->round && e->round == fo.round)
			fanout_sent_one();
		buf_unref(b);
		if (i > 0) {
			o->next = e->next;
			free(e);
		}
	}
	if (!o->next)
		s->q_tail = o;
	o->buf = m; /* the queue's reference */
	o->round = 0;
	s->q_bytes += m->len;
}

/*
 * A session that fell behind has drained its queue to half the bound: it is
 * caught up by cursor.  When it is only a little behind the fan-out (what it
 * misses is estimated within half the bound, the byte bound of one fan-out
 * answer: the seqs between its cursor and the fan-out's last answer, at the
 * average size of changes lately read), it simply rejoins the fan-out, whose
 * next query starts at the lowest cursor of its sessions and serves it with
 * everyone else (the sessions already further on get their new changes in
 * that answer, or at worst in the round run at once after it).  That is the
 * common case under a heavy push load, where every subscriber of a busy
 * group falls behind at about the same cursor, about one round behind: one
 * query for all of them instead of one each.  Otherwise (far behind, or
 * sending a snapshot) it is served by its own backlog queries, a page at a
 * time, so that one laggard does not hold the fan-out back for long.
 */
static void
catch_up(sl_sess *s)
{
	uint64_t gap = fo.cursor > s->cursor ? fo.cursor - s->cursor : 0;
	if (!s->snapshotting && s->cursor > 0 && chg_len_avg > 0 &&
	    gap <= sl_gw.cfg.send_queue_bytes / 2 / chg_len_avg) {
		sl_gw_log("session %llu client_id=%s: drained; rejoining the fan-out at cursor %llu",
		          (unsigned long long) s->id, s->client_id, (unsigned long long) s->cursor);
		go_live(s);
	} else
		backlog_next(s); /* catch up by cursor, then live again */
}

static int
on_writeable(sl_sess *s, struct lws *wsi)
{
	if (s->ping_due) {
		/* Not empty: lws drops the empty pong that answers an empty ping
		 * before our callback could see it. */
		unsigned char ping[LWS_PRE + 2];
		ping[LWS_PRE] = 's';
		ping[LWS_PRE + 1] = 'l';
		s->ping_due = false;
		if (lws_write(wsi, ping + LWS_PRE, 2, LWS_WRITE_PING) < 0)
			return -1;
		if (s->q_head || s->close_after)
			lws_callback_on_writable(wsi);
		return 0;
	}
	merge_changes(s);
	sl_out *o = s->q_head;
	if (o) {
		s->q_head = o->next;
		if (!s->q_head)
			s->q_tail = NULL;
		if (s->q_ctl == o)
			s->q_ctl = NULL;
		s->q_bytes -= o->buf->len;
		if (o->round && o->round == fo.round)
			fanout_sent_one();
		/* lws writes the frame header into the headroom: the same bytes for
		 * every session sharing the buffer (same length, server frames are
		 * not masked), and lws copies what the socket does not take. */
		fo.n_writes++;
		int n = lws_write(wsi, o->buf->data + LWS_PRE, o->buf->len, LWS_WRITE_TEXT);
		size_t want = o->buf->len;
		buf_unref(o->buf);
		free(o);
		if (n < (int) want)
			return -1;
	}
	if (s->q_bytes <= sl_gw.cfg.send_queue_bytes / 2 && !s->close_after) {
		if (s->rx_paused)
			rx_flow(s);
		if (s->behind && !s->backlog_busy) {
			s->behind = false;
			catch_up(s);
		}
	}
	if (s->q_head) {
		lws_callback_on_writable(wsi);
	} else if (s->close_after) {
		lws_close_reason(wsi, LWS_CLOSE_STATUS_POLICY_VIOLATION, NULL, 0);
		return -1;
	}
	return 0;
}

/*
 * --socket-send-buffer: fixes the socket's SO_SNDBUF (which also turns off the
 * kernel's growing of it), so that what a client that stops reading leaves in
 * the kernel is bounded too, and small enough that its send queue, not the
 * kernel, takes the backlog and the session falls behind (caught up from the
 * database) soon.  Left to the kernel when 0.  A failure is logged, not fatal.
 */
static void
set_send_buffer(sl_sess *s)
{
	int n = sl_gw.cfg.socket_send_buffer;
	if (n > 0 && setsockopt(lws_get_socket_fd(s->wsi), SOL_SOCKET, SO_SNDBUF, &n, sizeof n) != 0)
		sl_gw_log("session %llu peer=%s: SO_SNDBUF %d: %s", (unsigned long long) s->id, s->peer, n,
		          strerror(errno));
}

int
sl_session_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                    void *in, size_t len)
{
	sl_sess *s = user;

	switch (reason) {
	case LWS_CALLBACK_ESTABLISHED:
		memset(s, 0, sizeof *s);
		s->wsi = wsi;
		s->id = sl_gw.next_session_id++;
		s->dbi = sl_gw.n_dbs > 1 ? 1 + (int) (s->id % (uint64_t) (sl_gw.n_dbs - 1)) : 0;
		sl_session_init(&s->sm, &sl_gw.cfg.limits);
		s->opened_ms = s->last_rx_ms = sl_gw_now_ms();
		lws_get_peer_simple(wsi, s->peer, sizeof s->peer);
		s->next = sl_gw.sessions;
		if (sl_gw.sessions)
			sl_gw.sessions->prev = s;
		sl_gw.sessions = s;
		s->hnext = sess_table[s->id & (SL_SESS_BUCKETS - 1)];
		sess_table[s->id & (SL_SESS_BUCKETS - 1)] = s;
		sl_gw.n_sessions++;
		peer_pending_begin(s);
		sl_gw_log("session %llu peer=%s: connect", (unsigned long long) s->id, s->peer);
		set_send_buffer(s);
		break;

	case LWS_CALLBACK_RECEIVE:
		if (!s || !s->id)
			return -1;
		s->last_rx_ms = sl_gw_now_ms();
		s->ping_sent = false;
		if (s->close_after)
			break; /* closing: every frame is ignored */
		if (!rx_append(s, in, len)) {
			sl_gw_log("session %llu client_id=%s: out of memory; dropping the connection",
			          (unsigned long long) s->id, s->client_id);
			return -1;
		}
		if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi))
			on_message(s, lws_frame_is_binary(wsi));
		break;

	case LWS_CALLBACK_RECEIVE_PONG:
		if (s && s->id) {
			s->last_rx_ms = sl_gw_now_ms();
			s->ping_sent = false;
		}
		break;

	case LWS_CALLBACK_SERVER_WRITEABLE:
		if (!s || !s->id)
			return -1;
		return on_writeable(s, wsi);

	case LWS_CALLBACK_CLOSED:
		if (!s || !s->id)
			break;
		sl_gw_log("session %llu client_id=%s peer=%s: close (%s)", (unsigned long long) s->id,
		          s->client_id[0] ? s->client_id : "-", s->peer, sl_sess_state_name(s->sm.state));
		if (s->prev)
			s->prev->next = s->next;
		else
			sl_gw.sessions = s->next;
		if (s->next)
			s->next->prev = s->prev;
		sess_table_remove(s);
		sl_gw.n_sessions--;
		peer_pending_end(s);
		sess_free_queue(s);
		free(s->rx);
		free(s->gkey);
		free(s->auth_subject);
		json_decref(s->auth_groups);
		json_decref(s->auth_tables);
		free(s->snap_table);
		free(s->snap_row);
		json_decref(s->req_groups);
		json_decref(s->groups);
		s->id = 0;
		break;

	default:
		break;
	}
	return 0;
}

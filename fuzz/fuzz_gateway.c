/*
 * fuzz/fuzz_gateway.c: libFuzzer target for the gateway's frame decoding
 * and protocol state machine, driven through the real session code.
 *
 * gateway/session.c (the lws protocol "synclog.v1") is #included, so its
 * callback and its static handlers run as in the gateway, over
 * gateway/protocol.c (frame codec and state machine, linked).  What it calls
 * outside itself is replaced here: the libwebsockets calls (lws_write
 * records and checks every frame, lws_callback_on_writable and
 * lws_set_timeout set flags the harness acts on, timers are a small list
 * fired when the input advances the clock) and main.c's sl_gw_* (queries are
 * queued, and answered when the input says so with real libpq PGresults
 * built by PQmakeEmptyPGresult/PQsetvalue; the clock is the harness's).
 *
 * Input: records separated by the byte 0xff (never part of UTF-8 text, so
 * no valid frame needs it).  A record is a command byte, a connection byte
 * (which of 4 connections, and for 'f' how many fragments), then a payload:
 *   c  connect (ESTABLISHED)          x  close (CLOSED)
 *   t  a text message, whole          f  a text message in 1-4 fragments
 *   b  a binary message               o  an oversized message (fragments past
 *                                        max_frame_bytes)
 *   w  one SERVER_WRITEABLE           W  write until every queue is empty
 *   a  answer a query with the payload (see answer()); the connection
 *      byte picks which, modulo the number waiting (0: the oldest)
 *   e  fail a query (a connection error), picked the same way
 *   n  NOTIFY synclog (payload "r": synclog_revoke)
 *   d  the listener reconnected       D  toggle "queries cannot be sent"
 *   k  advance the clock by payload[0] * 100 ms and fire due timers
 *   p  a pong arrives                 F  toggle "lws_write fails"
 * Any other command byte is taken modulo the list.
 *
 * Invariants checked on every frame the gateway writes (lws_write): one
 * valid JSON object, no NUL, its "type" one PROTOCOL.md lists; nothing but
 * `error` before `welcome`, at most one welcome per connection, no more acks
 * than pushes sent to the database; error codes from PROTOCOL.md; every
 * change delivered belongs to a group the connection was granted, and
 * changes arrive in seq order, each at most once, above the hello's cursor
 * (a snapshot resets the floor to its cursor).  The database answers are
 * modelled on the real functions (changes above the query's cursor, in seq
 * order, none past the answer's cursor) so that a broken invariant is the
 * gateway's.  At the end of each input every query is failed and every
 * connection closed; nothing may be left (sessions, queries, timers).
 * FUZZ_TRACE=1 in the environment prints each frame written (for seeds).
 */
#include "../gateway/session.c"

#include <stdarg.h>

#define CHECK(cond)                                                                      \
	do {                                                                                 \
		if (!(cond)) {                                                                   \
			fprintf(stderr, "fuzz_gateway: invariant broken at line %d: %s\n", __LINE__, \
			        #cond);                                                              \
			abort();                                                                     \
		}                                                                                \
	} while (0)

#define NCONN 4
#define MAX_PENDING 64
#define MAX_TIMERS 8
#define MAX_STEPS 400

/* One WebSocket connection as lws would hold it. */
struct lws {
	int idx;
};

typedef struct conn {
	struct lws wsi;
	sl_sess *user;       /* the per-session data lws would allocate */
	bool open;           /* ESTABLISHED delivered, CLOSED not yet */
	bool want_write;     /* lws_callback_on_writable asked */
	bool kill;           /* to be closed (a callback returned -1, or a timeout kill) */
	bool rx_off;         /* lws_rx_flow_control(0) */
	/* the oracle's view of this connection */
	int welcomes;
	unsigned pushes;     /* push queries sent to the database */
	unsigned acks;
	uint64_t floor;      /* every change delivered from now on must have seq above */
	bool floor_set;
	json_t *granted;     /* welcome.groups as written */
} conn;

typedef struct pending_q {
	sl_db_result_fn fn;
	void *arg;
	char *params[5];
	int nparams;
} pending_q;

typedef struct timer {
	lws_sorted_usec_list_t *sul;
	sul_cb_t cb;
	int64_t due_ms;
} timer;

static conn conns[NCONN];
static pending_q pend[MAX_PENDING];
static int npend;
static timer timers[MAX_TIMERS];
static int ntimers;
static int64_t now_ms_fake;
static uint64_t hlc_fake;
static bool db_down, write_fails;
/* the message being received, for lws_is_final_fragment & co. */
static bool rx_final = true, rx_binary;
static size_t rx_remaining;

sl_gateway sl_gw;

static conn *
conn_of(struct lws *wsi)
{
	CHECK(wsi != NULL && wsi->idx >= 0 && wsi->idx < NCONN);
	return &conns[wsi->idx];
}

/* ------------------------------------------------------------ lws stubs */

int lws_is_final_fragment(struct lws *wsi) { (void) wsi; return rx_final; }
size_t lws_remaining_packet_payload(struct lws *wsi) { (void) wsi; return rx_remaining; }
int lws_frame_is_binary(struct lws *wsi) { (void) wsi; return rx_binary; }

int
lws_callback_on_writable(struct lws *wsi)
{
	conn_of(wsi)->want_write = true;
	return 1;
}

int
lws_rx_flow_control(struct lws *wsi, int enable)
{
	conn_of(wsi)->rx_off = !enable;
	return 0;
}

void
lws_set_timeout(struct lws *wsi, enum pending_timeout reason, int secs)
{
	(void) reason;
	if (secs == LWS_TO_KILL_ASYNC || secs == LWS_TO_KILL_SYNC)
		conn_of(wsi)->kill = true;
}

const char *
lws_get_peer_simple(struct lws *wsi, char *name, size_t namelen)
{
	snprintf(name, namelen, "127.0.0.%d", conn_of(wsi)->wsi.idx + 1);
	return name;
}

/* No socket: --socket-send-buffer's setsockopt fails on it, which is logged. */
lws_sockfd_type
lws_get_socket_fd(struct lws *wsi)
{
	(void) wsi;
	return -1;
}

void
lws_close_reason(struct lws *wsi, enum lws_close_status status, unsigned char *buf, size_t len)
{
	(void) wsi;
	(void) status;
	(void) buf;
	(void) len;
}

void
lws_sul_schedule(struct lws_context *ctx, int tsi, lws_sorted_usec_list_t *sul, sul_cb_t cb,
                 lws_usec_t us)
{
	int i;

	(void) ctx;
	(void) tsi;
	for (i = 0; i < ntimers; i++)
		if (timers[i].sul == sul)
			break;
	if (us == LWS_SET_TIMER_USEC_CANCEL) {
		if (i < ntimers)
			timers[i] = timers[--ntimers];
		return;
	}
	if (i == ntimers) {
		CHECK(ntimers < MAX_TIMERS);
		ntimers++;
	}
	timers[i].sul = sul;
	timers[i].cb = cb;
	timers[i].due_ms = now_ms_fake + us / 1000;
}

static bool
is_error_code(const char *c)
{
	static const char *codes[] = { SL_ERR_UNAUTHORIZED, SL_ERR_BAD_FRAME, SL_ERR_HELLO_REQUIRED,
	                               SL_ERR_SERVER_UNAVAILABLE, SL_ERR_TOO_LARGE,
	                               SL_ERR_RATE_LIMITED };
	for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
		if (c && strcmp(c, codes[i]) == 0)
			return true;
	return false;
}

static bool
granted_has(const conn *c, const char *g)
{
	size_t i;
	json_t *v;

	json_array_foreach(c->granted, i, v)
		if (g && strcmp(json_string_value(v), g) == 0)
			return true;
	return false;
}

/* The oracle: every frame the gateway sends. */
static void
check_frame(conn *c, const unsigned char *buf, size_t len)
{
	json_error_t jerr;
	json_t *f, *v;
	const char *type;
	size_t i;

	CHECK(memchr(buf, 0, len) == NULL);
	f = json_loadb((const char *) buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (f == NULL)
		fprintf(stderr, "fuzz_gateway: frame is not JSON (%s): %.*s\n", jerr.text,
		        (int) (len > 300 ? 300 : len), (const char *) buf);
	CHECK(f != NULL && json_is_object(f));
	type = json_string_value(json_object_get(f, "type"));
	CHECK(type != NULL);
	if (c->welcomes == 0)
		CHECK(strcmp(type, "error") == 0 || strcmp(type, "welcome") == 0);
	if (strcmp(type, "error") == 0) {
		CHECK(is_error_code(json_string_value(json_object_get(f, "code"))));
		CHECK(json_is_string(json_object_get(f, "message")));
	} else if (strcmp(type, "welcome") == 0) {
		CHECK(++c->welcomes == 1);
		v = json_object_get(f, "groups");
		CHECK(json_is_array(v) && json_is_object(json_object_get(f, "tables")));
		CHECK(json_is_integer(json_object_get(f, "cursor")));
		c->granted = json_incref(v);
	} else if (strcmp(type, "ack") == 0) {
		CHECK(++c->acks <= c->pushes);
		CHECK(json_is_array(json_object_get(f, "acked")) &&
		      json_is_array(json_object_get(f, "rejected")));
	} else if (strcmp(type, "pong") == 0) {
		v = json_object_get(f, "hlc");
		CHECK(json_is_string(v) && json_string_length(v) == SL_HLC_LEN);
	} else if (strcmp(type, "snapshot") == 0) {
		v = json_object_get(f, "cursor");
		CHECK(json_is_integer(v) && json_is_array(json_object_get(f, "rows")) &&
		      json_is_boolean(json_object_get(f, "done")));
		c->floor = (uint64_t) json_integer_value(v);
		c->floor_set = true;
	} else if (strcmp(type, "changes") == 0) {
		json_t *ch = json_object_get(f, "changes"), *e;
		CHECK(json_is_array(ch) && json_is_integer(json_object_get(f, "cursor")));
		json_array_foreach(ch, i, e) {
			json_t *seq = json_object_get(e, "seq");
			CHECK(json_is_integer(seq));
			CHECK(granted_has(c, json_string_value(json_object_get(e, "g"))));
			if (c->floor_set)
				CHECK((uint64_t) json_integer_value(seq) > c->floor);
			c->floor = (uint64_t) json_integer_value(seq);
			c->floor_set = true;
		}
	} else {
		CHECK(!"unknown frame type");
	}
	json_decref(f);
}

int
lws_write(struct lws *wsi, unsigned char *buf, size_t len, enum lws_write_protocol protocol)
{
	conn *c = conn_of(wsi);

	CHECK(c->open);
	if (getenv("FUZZ_TRACE"))
		fprintf(stderr, "conn %d <- %.*s\n", c->wsi.idx, (int) (len > 200 ? 200 : len),
		        protocol == LWS_WRITE_TEXT ? (const char *) buf : "(ping)");
	if (protocol == LWS_WRITE_TEXT)
		check_frame(c, buf, len);
	else
		CHECK(protocol == LWS_WRITE_PING);
	return write_fails ? -1 : (int) len;
}

/* ------------------------------------------------------------ main.c's part */

int
sl_gw_query(int dbi, const char *sql, int nparams, const char *const *params,
            sl_db_result_fn fn, void *arg)
{
	pending_q *q;

	CHECK(dbi >= 0 && dbi < sl_gw.n_dbs && sql != NULL && fn != NULL);
	if (db_down || npend == MAX_PENDING)
		return -1;
	q = &pend[npend++];
	memset(q, 0, sizeof *q);
	q->fn = fn;
	q->arg = arg;
	q->nparams = nparams;
	for (int i = 0; i < nparams && i < 5; i++)
		q->params[i] = params[i] ? strdup(params[i]) : NULL;
	return 0;
}

void
sl_gw_hlc_now(char out[SL_HLC_LEN + 1])
{
	snprintf(out, SL_HLC_LEN + 1, "%016llx", (unsigned long long) ++hlc_fake);
}

void
sl_gw_hlc_observe(const char *hlc)
{
	(void) hlc;
}

int64_t
sl_gw_now_ms(void)
{
	return now_ms_fake;
}

void
sl_gw_log(const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
}

/* ------------------------------------------------------------ database answers */

static PGresult *
result_new(ExecStatusType st, int nfields)
{
	PGresult *r = PQmakeEmptyPGresult(NULL, st);
	PGresAttDesc att[6];

	CHECK(r != NULL && nfields <= 6);
	if (nfields > 0) {
		memset(att, 0, sizeof att);
		for (int i = 0; i < nfields; i++) {
			att[i].name = (char *) "c";
			att[i].typid = 25; /* text */
			att[i].typlen = -1;
			att[i].atttypmod = -1;
		}
		CHECK(PQsetResultAttrs(r, nfields, att));
	}
	return r;
}

static void
set(PGresult *r, int row, int col, const char *v)
{
	CHECK(PQsetvalue(r, row, col, (char *) v, v ? (int) strlen(v) : -1));
}

/* The next line of *p (up to end), NUL-terminated in a static-free copy. */
static char *
next_line(const char **p, const char *end)
{
	const char *s = *p, *nl;
	char *out;

	if (s >= end)
		return NULL;
	nl = memchr(s, '\n', (size_t) (end - s));
	if (nl == NULL)
		nl = end;
	out = strndup(s, (size_t) (nl - s));
	*p = nl < end ? nl + 1 : end;
	return out;
}

/* The i-th element of a text[] literal as built by literal_add ({"a","b\"c"}), or NULL. */
static char *
literal_elem(const char *lit, unsigned k)
{
	const char *p = lit;
	unsigned i = 0;

	if (lit == NULL || *p++ != '{')
		return NULL;
	while (*p == '"') {
		char *out = malloc(strlen(p) + 1);
		size_t o = 0;
		if (out == NULL)
			return NULL;
		for (p++; *p && *p != '"'; p++) {
			if (*p == '\\' && p[1])
				p++;
			out[o++] = *p;
		}
		out[o] = '\0';
		if (*p != '"') {
			free(out);
			return NULL;
		}
		p++;
		if (i++ == k)
			return out;
		free(out);
		if (*p == ',')
			p++;
	}
	return NULL;
}

/*
 * The answer of changes_sql as the real function gives it: the payload's
 * first line is "CURSOR FLAGS" (s: snapshot_required; m: more than fit;
 * M: a full page), each further line "DELTA GROUP TEXT": a change with seq
 * the previous one's (first: the query's cursor) plus DELTA (at least 1), of
 * GROUP (=N: the N-th group asked for), carrying TEXT.  The answer's cursor
 * is never below its last change, and no number reaches 2^53.
 */
static PGresult *
changes_answer(const pending_q *q, const char *p, const char *end)
{
	char *line = next_line(&p, end);
	unsigned long long cur = 0, after = q->params[1] ? strtoull(q->params[1], NULL, 10) : 0;
	char flags[8] = "";
	PGresult *r = result_new(PGRES_TUPLES_OK, 6);
	int rows = 0;
	uint64_t seq = after;
	char num[32], tot[32];

	if (line) {
		sscanf(line, "%llu %7s", &cur, flags);
		free(line);
	}
	/* seq and cursor are below 2^53 (PROTOCOL.md); the gateway copies them
	 * into frames as the database wrote them */
	if (cur >= SL_CURSOR_LIMIT)
		cur = SL_CURSOR_LIMIT - 1;
	if (strchr(flags, 's')) {
		snprintf(num, sizeof num, "%llu", cur);
		set(r, 0, 0, num);
		set(r, 0, 1, "t");
		for (int c = 2; c < 6; c++)
			set(r, 0, c, NULL);
		return r;
	}
	while (rows < 50 && (line = next_line(&p, end)) != NULL) {
		unsigned long long delta = 1;
		char grp[300] = "", *text;
		int used = 0;
		json_t *o;

		sscanf(line, "%llu %299s %n", &delta, grp, &used);
		if (seq + 1001 >= SL_CURSOR_LIMIT) {
			free(line);
			break;
		}
		seq += delta ? delta % 1000 + 1 : 1;
		if (grp[0] == '=') {
			char *g = literal_elem(q->params[0], (unsigned) atoi(grp + 1));
			snprintf(grp, sizeof grp, "%s", g ? g : "nogroup");
			free(g);
		}
		json_t *x = json_stringn(line + used, strlen(line + used)); /* new, NULL if not UTF-8 */
		o = json_pack("{s:I, s:s, s:s, s:o}", "seq", (json_int_t) seq, "op_id", "x", "g", grp,
		              "x", x ? x : json_null());
		text = o ? json_dumps(o, JSON_COMPACT) : NULL;
		json_decref(o);
		free(line);
		if (text == NULL) /* a group that is not UTF-8 */
			continue;
		snprintf(num, sizeof num, "%llu", (unsigned long long) seq);
		set(r, rows, 2, num);
		set(r, rows, 3, grp);
		set(r, rows, 4, text);
		free(text);
		rows++;
	}
	if (rows > 0 && cur < seq)
		cur = seq;
	snprintf(num, sizeof num, "%llu", cur);
	snprintf(tot, sizeof tot, "%d", strchr(flags, 'M') ? SL_CHANGES_PER_QUERY : rows + (strchr(flags, 'm') ? 1 : 0));
	if (rows == 0) {
		set(r, 0, 0, num);
		set(r, 0, 1, "f");
		for (int c = 2; c < 6; c++)
			set(r, 0, c, NULL);
		return r;
	}
	for (int i = 0; i < rows; i++) {
		set(r, i, 0, num);
		set(r, i, 1, "f");
		set(r, i, 5, tot);
	}
	return r;
}

/* The answer to authenticate: payload[0] picks refused (0 rows) or granted;
 * then lines "GROUPS-JSON", "CURSOR", "TABLES-JSON", each with a default. */
static PGresult *
auth_answer(const char *p, const char *end)
{
	PGresult *r = result_new(PGRES_TUPLES_OK, 5);
	char *groups, *cursor, *tables;

	if (p < end && (*p++ & 3) == 0)
		return r; /* no row: unknown or revoked */
	groups = next_line(&p, end);
	cursor = next_line(&p, end);
	tables = next_line(&p, end);
	set(r, 0, 0, "alice");
	set(r, 0, 1, groups ? groups : "[\"g1\",\"g2\"]");
	set(r, 0, 2, "t");
	set(r, 0, 3, cursor ? cursor : "0");
	set(r, 0, 4, tables ? tables : "{\"t\":{\"pk\":\"id\",\"group\":\"g\",\"columns\":{\"id\":\"text\"}}}");
	free(groups);
	free(cursor);
	free(tables);
	return r;
}

/* One column, one row per payload line (revocation: the tokens gone). */
static PGresult *
lines_answer(const char *p, const char *end)
{
	PGresult *r = result_new(PGRES_TUPLES_OK, 1);
	char *line;

	for (int i = 0; i < 16 && (line = next_line(&p, end)) != NULL; i++) {
		set(r, i, 0, line);
		free(line);
	}
	return r;
}

/* One row, one column: the payload as it is (push reply, snapshot page). */
static PGresult *
text_answer(const char *p, const char *end)
{
	PGresult *r = result_new(PGRES_TUPLES_OK, 1);
	char *t = strndup(p, (size_t) (end - p));

	set(r, 0, 0, t);
	free(t);
	return r;
}

/* Takes query k out of the queue (k < npend). */
static pending_q
pop_pending(int k)
{
	pending_q q = pend[k];

	memmove(pend + k, pend + k + 1, (size_t) (npend - k - 1) * sizeof pend[0]);
	npend--;
	return q;
}

static void
free_params(pending_q *q)
{
	for (int i = 0; i < 5; i++)
		free(q->params[i]);
}

/* Answers query `which` (modulo the number waiting; 0 is the oldest): with
 * an error when fail, else from the payload (the first byte 0 gives a failed
 * statement instead, as PostgreSQL's). */
static void
answer(unsigned which, const char *p, const char *end, bool fail)
{
	pending_q q;
	PGresult *r = NULL;

	if (npend == 0)
		return;
	q = pop_pending((int) (which % (unsigned) npend));
	if (fail) {
		q.fn(q.arg, NULL, "server closed the connection unexpectedly");
		free_params(&q);
		return;
	}
	if (p < end && *p == 0) {
		r = result_new(PGRES_FATAL_ERROR, 0);
	} else if (q.fn == on_auth_result) {
		r = auth_answer(p, end);
	} else if (q.fn == on_push_result) {
		r = text_answer(p, end);
	} else if (q.fn == on_backlog_result && ((sl_pending *) q.arg)->kind == PQ_SNAPSHOT) {
		r = text_answer(p, end);
	} else if (q.fn == on_backlog_result || q.fn == on_fanout_result) {
		r = changes_answer(&q, p, end);
	} else {
		CHECK(q.fn == on_revoke_result);
		r = lines_answer(p, end);
	}
	q.fn(q.arg, r, NULL);
	PQclear(r);
	free_params(&q);
}

/* ------------------------------------------------------------ driving */

static int
callback(conn *c, enum lws_callback_reasons reason, void *in, size_t len)
{
	int rc = sl_session_callback(&c->wsi, reason, c->user, in, len);

	if (rc != 0)
		c->kill = true;
	return rc;
}

static void
do_close(conn *c)
{
	if (!c->open)
		return;
	callback(c, LWS_CALLBACK_CLOSED, NULL, 0);
	c->open = false;
	c->kill = false;
	c->want_write = false;
	c->rx_off = false;
	json_decref(c->granted);
	c->granted = NULL;
}

static void
reap(void)
{
	for (int i = 0; i < NCONN; i++)
		if (conns[i].kill)
			do_close(&conns[i]);
}

/* Delivers one message, in `pieces` fragments. */
static void
receive(conn *c, const char *p, size_t len, int pieces, bool binary)
{
	sl_sess *s = c->user;
	unsigned pushes_before = s->push_n;
	size_t off = 0;

	if (!c->open || c->rx_off)
		return; /* lws would hold it until rx flow is back on */
	rx_binary = binary;
	for (int k = 0; k < pieces; k++) {
		size_t n = k == pieces - 1 ? len - off : len / (size_t) pieces;
		rx_final = k == pieces - 1;
		rx_remaining = 0;
		if (callback(c, LWS_CALLBACK_RECEIVE, (void *) (p + off), n) != 0)
			break;
		off += n;
	}
	rx_final = true;
	rx_binary = false;
	if (c->open && !c->kill && s->push_n > pushes_before)
		c->pushes += s->push_n - pushes_before;
	if (!c->floor_set && s->hello_seen) {
		c->floor = s->cursor;
		c->floor_set = true;
	}
}

static void
writable(conn *c)
{
	if (!c->open || !c->want_write || c->kill)
		return;
	c->want_write = false;
	callback(c, LWS_CALLBACK_SERVER_WRITEABLE, NULL, 0);
}

static void
fire_timers(void)
{
	for (int round = 0; round < 8; round++) {
		int i;
		for (i = 0; i < ntimers; i++)
			if (timers[i].due_ms <= now_ms_fake)
				break;
		if (i == ntimers)
			return;
		timer t = timers[i];
		timers[i] = timers[--ntimers];
		if (t.cb)
			t.cb(t.sul);
	}
}

static void
setup(void)
{
	memset(&sl_gw, 0, sizeof sl_gw);
	sl_gw.cfg.limits = sl_limits_default();
	sl_gw.cfg.limits.max_frame_bytes = 4096; /* small: reach the limits */
	sl_gw.cfg.limits.max_push_ops = 8;
	sl_gw.cfg.limits.max_hello_groups = 8;
	sl_gw.cfg.limits.max_depth = 16;
	sl_gw.cfg.limits.max_bad_frames = 4;
	sl_gw.cfg.db_connections = 3;
	sl_gw.cfg.hello_timeout_s = 10;
	sl_gw.cfg.idle_timeout_s = 60;
	sl_gw.cfg.send_queue_bytes = 2048; /* small: reach "behind" and split frames */
	sl_gw.n_dbs = 3;
	sl_gw.next_session_id = 1;
	now_ms_fake = 1000000;
	hlc_fake = 0;
	db_down = write_fails = false;
	for (int i = 0; i < NCONN; i++) {
		memset(&conns[i], 0, sizeof conns[i]);
		conns[i].wsi.idx = i;
	}
	sl_sessions_start();
}

static void
teardown(void)
{
	int guard;

	db_down = false;
	/* Fail every query (answers may start others), close every connection. */
	for (guard = 0; guard < 100 && (npend > 0 || sl_gw.sessions); guard++) {
		while (npend > 0)
			answer(0, NULL, NULL, true);
		for (int i = 0; i < NCONN; i++)
			do_close(&conns[i]);
	}
	CHECK(npend == 0);
	CHECK(sl_gw.sessions == NULL && sl_gw.n_sessions == 0);
	for (size_t b = 0; b < SL_SESS_BUCKETS; b++)
		CHECK(sess_table[b] == NULL);
	sl_sessions_stop();
	ntimers = 0;
	memset(&fo, 0, sizeof fo);
	memset(&rv, 0, sizeof rv);
	for (int i = 0; i < NCONN; i++)
		free(conns[i].user);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char cmds[] = "ctfbowWaendDkpFx";
	const char *p = (const char *) data, *end = p + size;
	size_t sessz = sl_session_data_size();

	setup();
	for (int i = 0; i < NCONN; i++)
		if ((conns[i].user = malloc(sessz)) == NULL)
			abort();

	for (int step = 0; step < MAX_STEPS && p < end; step++) {
		const char *rec = p, *rend = memchr(p, 0xff, (size_t) (end - p));
		char cmd;
		unsigned cb;
		conn *c;

		if (rend == NULL)
			rend = end;
		p = rend < end ? rend + 1 : end;
		if (rend - rec < 1)
			continue;
		cmd = strchr(cmds, rec[0]) && rec[0] ? rec[0] : cmds[(unsigned char) rec[0] % (sizeof cmds - 1)];
		cb = rend - rec >= 2 ? (unsigned char) rec[1] : 0;
		c = &conns[cb % NCONN];
		rec += rend - rec >= 2 ? 2 : 1;

		switch (cmd) {
		case 'c':
			if (!c->open) {
				memset(c->user, 0xa5, sessz); /* lws's memory is not zeroed for us */
				c->open = true;
				c->welcomes = 0;
				c->pushes = c->acks = 0;
				c->floor = 0;
				c->floor_set = false;
				callback(c, LWS_CALLBACK_ESTABLISHED, NULL, 0);
			}
			break;
		case 't':
			receive(c, rec, (size_t) (rend - rec), 1, false);
			break;
		case 'f':
			receive(c, rec, (size_t) (rend - rec), 1 + (int) ((cb / NCONN) % 4), false);
			break;
		case 'b':
			receive(c, rec, (size_t) (rend - rec), 1, true);
			break;
		case 'o': { /* a message over max_frame_bytes, in 1 KiB fragments */
			static char junk[1024];
			memset(junk, '[', sizeof junk);
			if (!c->open || c->rx_off)
				break;
			for (int k = 0; k < 6 && !c->kill; k++) {
				rx_final = k == 5;
				callback(c, LWS_CALLBACK_RECEIVE, junk, sizeof junk);
			}
			rx_final = true;
			break;
		}
		case 'w':
			writable(c);
			break;
		case 'W':
			for (int k = 0; k < 256; k++) {
				bool any = false;
				for (int i = 0; i < NCONN; i++)
					if (conns[i].open && conns[i].want_write && !conns[i].kill) {
						writable(&conns[i]);
						any = true;
					}
				reap();
				if (!any)
					break;
			}
			break;
		case 'a':
			answer(cb, rec, rend, false);
			break;
		case 'e':
			answer(cb, rec, rend, true);
			break;
		case 'n':
			sl_sessions_on_notify(rec < rend && *rec == 'r' ? "synclog_revoke" : "synclog", "7");
			break;
		case 'd':
			sl_sessions_on_db_connected(rec < rend ? (unsigned char) *rec % 3 : 0);
			break;
		case 'D':
			db_down = !db_down;
			break;
		case 'k':
			now_ms_fake += (rec < rend ? (unsigned char) *rec : 10) * 100;
			fire_timers();
			break;
		case 'p':
			if (c->open)
				callback(c, LWS_CALLBACK_RECEIVE_PONG, NULL, 0);
			break;
		case 'F':
			write_fails = !write_fails;
			break;
		case 'x':
			do_close(c);
			break;
		}
		reap();
	}
	teardown();
	return 0;
}

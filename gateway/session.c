/*
 * gateway/session.c: the lws protocol "synclog.v1": one WebSocket connection
 * per session, driven by protocol.h's state machine, answered through the
 * gateway's one database connection (db.h, via sl_gw_query).
 *
 * Callbacks, all on the lws service thread:
 *   ESTABLISHED (the session's PROTOCOL_INIT): the sl_sess is set up, given
 *     an id and put on sl_gw.sessions; CLOSED (its PROTOCOL_DESTROY): freed.
 *   RECEIVE: fragments are reassembled up to limits.max_frame_bytes (past it
 *     the rest of the message is discarded and the frame answered too_large),
 *     then the frame is parsed and the state machine says what to do; RECEIVE
 *     only queues (a frame to send or a query) and asks for writable.
 *   SERVER_WRITEABLE: writes exactly one queued frame, asks again while more
 *     are queued, and closes once the queue is empty if the session is closing.
 *
 * Database results find their session by id (struct sl_pending holds the id,
 * never a pointer), so a result for a session that closed meanwhile is
 * dropped.  The send queue is bounded by SL_SEND_QUEUE_MAX_BYTES: a session
 * that would pass it gets one error frame (rate_limited) and is closed; it can
 * reconnect and resume from its cursor.
 *
 * Fan-out (live changes): see the block comment above fanout_run().
 *
 * jansson references are marked "new" (ours to json_decref) or "borrowed".
 */
#include "gateway.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One queued outgoing frame, LWS_PRE bytes of headroom before the text. */
typedef struct sl_out {
	struct sl_out *next;
	size_t len;
	unsigned char buf[]; /* LWS_PRE + len */
} sl_out;

/* One of these per session (WebSocket connection of protocol synclog.v1). */
typedef struct sl_sess {
	struct sl_sess *next, *prev; /* on sl_gw.sessions */
	struct lws *wsi;
	uint64_t id;
	sl_session sm;               /* protocol.h state machine */
	char peer[64];

	/* reassembly of one incoming message */
	char *rx;
	size_t rx_len, rx_cap;
	bool rx_oversize;            /* past max_frame_bytes: discarding to the end */

	/* send queue, bounded by SL_SEND_QUEUE_MAX_BYTES */
	sl_out *q_head, *q_tail;
	size_t q_bytes;
	bool close_after;            /* close once the queue is written */

	/* from the hello */
	char client_id[SL_CLIENT_ID_MAX + 1];
	char *token;                 /* malloc'd */
	json_t *req_groups;          /* new: the groups asked for */
	json_t *groups;              /* new: granted (asked ∩ token's); NULL before welcome */
	uint64_t cursor;             /* highest seq this client holds (as far as we sent) */
	bool live;                   /* backlog sent: live changes go to it */
} sl_sess;

/* What a pending query needs to find its session again. */
typedef enum { PQ_AUTH, PQ_PUSH, PQ_BACKLOG, PQ_SNAPSHOT } sl_pending_kind;
typedef struct sl_pending {
	uint64_t sid;
	sl_pending_kind kind;
} sl_pending;

size_t
sl_session_data_size(void)
{
	return sizeof(sl_sess);
}

static sl_sess *
sess_find(uint64_t id)
{
	for (sl_sess *s = sl_gw.sessions; s; s = s->next)
		if (s->id == id)
			return s;
	return NULL;
}

static void
sess_free_queue(sl_sess *s)
{
	sl_out *o = s->q_head;
	while (o) {
		sl_out *n = o->next;
		free(o);
		o = n;
	}
	s->q_head = s->q_tail = NULL;
	s->q_bytes = 0;
}

/*
 * Queues `text` (copied; the caller keeps it) and asks for writable.  Once
 * the session is closing nothing more is queued.  Past the byte bound the
 * queue is replaced by one error frame and the session closes.  A NULL text
 * (an encoder out of memory) closes the session.
 */
static void queue_error(sl_sess *s, const char *code, const char *message, bool close);

static void
queue_text(sl_sess *s, const char *text)
{
	if (s->close_after)
		return;
	if (!text) {
		sl_gw_log("session %llu client_id=%s: out of memory encoding a frame; closing",
		          (unsigned long long) s->id, s->client_id);
		queue_error(s, SL_ERR_SERVER_UNAVAILABLE, "the gateway ran out of memory", true);
		return;
	}
	size_t len = strlen(text);
	if (s->q_bytes + len > SL_SEND_QUEUE_MAX_BYTES) {
		char msg[160];
		sl_gw_log("session %llu client_id=%s: send queue over %d bytes; closing",
		          (unsigned long long) s->id, s->client_id, SL_SEND_QUEUE_MAX_BYTES);
		sess_free_queue(s);
		snprintf(msg, sizeof msg,
		         "the client fell behind (send queue over %d bytes); reconnect and resume from your cursor",
		         SL_SEND_QUEUE_MAX_BYTES);
		queue_error(s, SL_ERR_RATE_LIMITED, msg, true);
		return;
	}
	sl_out *o = malloc(sizeof *o + LWS_PRE + len);
	if (!o) {
		sess_free_queue(s);
		s->close_after = true;
		lws_callback_on_writable(s->wsi);
		return;
	}
	o->next = NULL;
	o->len = len;
	memcpy(o->buf + LWS_PRE, text, len);
	if (s->q_tail)
		s->q_tail->next = o;
	else
		s->q_head = o;
	s->q_tail = o;
	s->q_bytes += len;
	lws_callback_on_writable(s->wsi);
}

static void
queue_error(sl_sess *s, const char *code, const char *message, bool close)
{
	char *t = sl_encode_error(code, message);
	if (t) {
		queue_text(s, t);
		free(t);
	}
	if (close) {
		s->close_after = true;
		lws_callback_on_writable(s->wsi);
	}
}

static void
queue_owned(sl_sess *s, char *text)
{
	queue_text(s, text);
	free(text);
}

static sl_pending *
pending_new(sl_sess *s, sl_pending_kind k)
{
	sl_pending *p = malloc(sizeof *p);
	if (p) {
		p->sid = s->id;
		p->kind = k;
	}
	return p;
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

/* ---------------------------------------------------------------- backlog */

static void backlog_next(sl_sess *s);
static void fanout_kick(void);

/* Groups as a PostgreSQL text[] literal, malloc'd; NULL on out of memory. */
static char *
groups_literal(json_t *groups)
{
	size_t cap = 3, i;
	json_t *g;
	json_array_foreach(groups, i, g)
		cap += 2 * strlen(json_string_value(g)) + 3;
	char *out = malloc(cap), *p = out;
	if (!out)
		return NULL;
	*p++ = '{';
	json_array_foreach(groups, i, g) {
		if (i)
			*p++ = ',';
		*p++ = '"';
		for (const char *c = json_string_value(g); *c; c++) {
			if (*c == '"' || *c == '\\')
				*p++ = '\\';
			*p++ = *c;
		}
		*p++ = '"';
	}
	*p++ = '}';
	*p = '\0';
	return out;
}

static void on_backlog_result(void *arg, PGresult *res, const char *error);

/* Asks for the next piece of the session's backlog: a snapshot at cursor 0,
 * else changes after its cursor. */
static void
backlog_next(sl_sess *s)
{
	char *lit = groups_literal(s->groups);
	char cur[32];
	sl_pending *p = pending_new(s, s->cursor == 0 ? PQ_SNAPSHOT : PQ_BACKLOG);
	int rc = -1;

	snprintf(cur, sizeof cur, "%llu", (unsigned long long) s->cursor);
	if (lit && p) {
		if (s->cursor == 0) {
			const char *params[1] = { lit };
			rc = sl_gw_query("SELECT synclog.snapshot($1::text[])::text", 1, params,
			                 on_backlog_result, p);
		} else {
			const char *params[2] = { lit, cur };
			rc = sl_gw_query("SELECT synclog.changes($1::text[], $2::bigint, 1000)::text", 2,
			                 params, on_backlog_result, p);
		}
	}
	free(lit);
	if (rc != 0) {
		free(p);
		queue_error(s, SL_ERR_SERVER_UNAVAILABLE,
		            "the database is unavailable; reconnect and resume from your cursor", true);
	}
}

static void
on_backlog_result(void *arg, PGresult *res, const char *error)
{
	sl_pending *p = arg;
	sl_sess *s = sess_find(p->sid);
	sl_pending_kind kind = p->kind;
	free(p);
	if (!s || s->close_after)
		return;
	if (error || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		char why[200];
		first_line(error ? error : PQresultErrorMessage(res), why, sizeof why);
		sl_gw_log("session %llu client_id=%s: backlog query failed: %s",
		          (unsigned long long) s->id, s->client_id, why);
		queue_error(s, SL_ERR_SERVER_UNAVAILABLE,
		            "reading the change log failed; reconnect and resume from your cursor", true);
		return;
	}
	json_t *j = json_loads(PQgetvalue(res, 0, 0), 0, NULL); /* new */
	json_t *jc = j ? json_object_get(j, "cursor") : NULL;                           /* borrowed */
	if (!json_is_integer(jc) || json_integer_value(jc) < 0) {
		json_decref(j);
		queue_error(s, SL_ERR_SERVER_UNAVAILABLE, "unexpected answer from the database", true);
		return;
	}
	uint64_t cursor = (uint64_t) json_integer_value(jc);

	if (kind == PQ_SNAPSHOT) {
		json_t *rows = json_object_get(j, "rows"); /* borrowed */
		size_t n = json_array_size(rows), i = 0;
		do {
			size_t k = n - i < 500 ? n - i : 500;
			json_t *chunk = json_array(); /* new */
			for (size_t m = 0; m < k; m++)
				json_array_append(chunk, json_array_get(rows, i + m));
			i += k;
			queue_owned(s, sl_encode_snapshot(chunk, cursor, i >= n));
			json_decref(chunk);
		} while (i < n && !s->close_after);
		s->cursor = cursor;
		json_decref(j);
		if (s->close_after)
			return;
		if (cursor > 0) {
			backlog_next(s); /* whatever committed after the snapshot's cursor */
		} else {
			s->live = true;  /* an empty log: live changes from seq 1 */
			fanout_kick();
		}
		return;
	}

	if (json_is_true(json_object_get(j, "snapshot_required"))) {
		json_decref(j);
		s->cursor = 0;
		backlog_next(s);
		return;
	}
	json_t *changes = json_object_get(j, "changes"); /* borrowed */
	size_t n = json_array_size(changes);
	if (n > 0 || cursor > s->cursor)
		queue_owned(s, sl_encode_changes(changes, cursor));
	if (cursor > s->cursor)
		s->cursor = cursor;
	json_decref(j);
	if (s->close_after)
		return;
	if (n >= 1000) {
		backlog_next(s);
	} else {
		s->live = true;
		fanout_kick(); /* anything committed while the backlog was read */
	}
}

/* ---------------------------------------------------------------- fan-out */

/*
 * Live changes.  On each NOTIFY synclog (and on each database reconnection,
 * and when a session's backlog is done) one query reads, for all live
 * sessions together, synclog.changes(union of their groups, lowest of their
 * cursors, 1000), plus each change's group (synclog.changes does not return
 * it, so it is read from synclog.ops by seq).  At most one such query is in
 * flight; a wake-up while it runs sets `again`, which runs one more after it.
 * Each live session whose cursor is at least the query's `after` gets the
 * changes of its granted groups with seq above its cursor, in seq order, and
 * its cursor moves to the answer's cursor; a session that went live with a
 * lower cursor meanwhile is left for the next round, which is run at once.
 */
static struct {
	bool running, again;
} fo;

static void on_fanout_result(void *arg, PGresult *res, const char *error);

typedef struct sl_fanout_q {
	uint64_t after;
} sl_fanout_q;

static void
fanout_run(void)
{
	json_t *groups = json_array(); /* new */
	uint64_t after = UINT64_MAX;
	bool any = false;

	for (sl_sess *s = sl_gw.sessions; s; s = s->next) {
		if (!s->live || s->close_after)
			continue;
		any = true;
		if (s->cursor < after)
			after = s->cursor;
		size_t i, k;
		json_t *g, *h;
		json_array_foreach(s->groups, i, g) {
			bool dup = false;
			json_array_foreach(groups, k, h)
				if (json_equal(g, h)) {
					dup = true;
					break;
				}
			if (!dup)
				json_array_append(groups, g);
		}
	}
	fo.again = false;
	if (!any || json_array_size(groups) == 0) {
		json_decref(groups);
		return;
	}
	char *lit = groups_literal(groups);
	json_decref(groups);
	sl_fanout_q *q = malloc(sizeof *q);
	char cur[32];
	snprintf(cur, sizeof cur, "%llu", (unsigned long long) after);
	const char *params[2] = { lit, cur };
	if (lit && q) {
		q->after = after;
		if (sl_gw_query("WITH r AS (SELECT synclog.changes($1::text[], $2::bigint, 1000) AS j) "
		                "SELECT r.j::text, (SELECT coalesce(json_object_agg(o.seq, o.grp), '{}')"
		                " FROM synclog.ops o WHERE o.seq IN"
		                " (SELECT (e->>'seq')::bigint FROM jsonb_array_elements(r.j->'changes') e))::text"
		                " FROM r",
		                2, params, on_fanout_result, q) == 0) {
			fo.running = true;
			q = NULL;
		}
	}
	free(q);
	free(lit);
}

static void
fanout_kick(void)
{
	if (fo.running)
		fo.again = true;
	else
		fanout_run();
}

static void
on_fanout_result(void *arg, PGresult *res, const char *error)
{
	sl_fanout_q *q = arg;
	uint64_t after = q->after;
	free(q);
	fo.running = false;
	if (error || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		char why[200];
		first_line(error ? error : PQresultErrorMessage(res), why, sizeof why);
		sl_gw_log("fan-out query failed: %s", why);
		return; /* the next notification or reconnection tries again */
	}
	json_t *j = json_loads(PQgetvalue(res, 0, 0), 0, NULL);    /* new */
	json_t *grp = json_loads(PQgetvalue(res, 0, 1), 0, NULL);  /* new */
	json_t *jc = j ? json_object_get(j, "cursor") : NULL;       /* borrowed */
	bool rerun = fo.again;
	if (!json_is_integer(jc) || !grp) {
		sl_gw_log("fan-out: unexpected answer from the database");
		json_decref(j);
		json_decref(grp);
		return;
	}
	uint64_t cursor = (uint64_t) json_integer_value(jc);
	json_t *changes = json_object_get(j, "changes"); /* borrowed */
	bool snapshot_required = json_is_true(json_object_get(j, "snapshot_required"));

	for (sl_sess *s = sl_gw.sessions; s; s = s->next) {
		if (!s->live || s->close_after)
			continue;
		if (s->cursor < after || snapshot_required) {
			rerun = rerun || !snapshot_required;
			if (snapshot_required) {
				s->live = false; /* its cursor is gone: start over with a snapshot */
				s->cursor = 0;
				backlog_next(s);
			}
			continue;
		}
		if (cursor <= s->cursor)
			continue;
		json_t *mine = json_array(); /* new */
		size_t i;
		json_t *c;
		json_array_foreach(changes, i, c) {
			json_t *seqj = json_object_get(c, "seq");
			if (!json_is_integer(seqj) || (uint64_t) json_integer_value(seqj) <= s->cursor)
				continue;
			char key[32];
			snprintf(key, sizeof key, "%lld", (long long) json_integer_value(seqj));
			json_t *g = json_object_get(grp, key);
			size_t k;
			json_t *h;
			json_array_foreach(s->groups, k, h)
				if (json_equal(g, h)) {
					json_array_append(mine, c);
					break;
				}
		}
		if (json_array_size(mine) > 0)
			queue_owned(s, sl_encode_changes(mine, cursor));
		json_decref(mine);
		s->cursor = cursor;
	}
	if (json_array_size(changes) >= 1000)
		rerun = true;
	json_decref(j);
	json_decref(grp);
	if (rerun)
		fanout_run();
}

void
sl_sessions_on_notify(const char *channel, const char *payload)
{
	(void) payload;
	if (!strcmp(channel, "synclog"))
		fanout_kick();
	/* synclog_revoke: not handled yet (sessions keep their grant until they
	 * reconnect) */
}

void
sl_sessions_on_db_connected(void)
{
	fo.running = false; /* its query, if any, failed with the connection */
	fanout_kick();
}

/* ---------------------------------------------------------------- hello */

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
	sl_action a = sl_session_on_auth_result(&s->sm, ok);
	if (a.kind == SL_ACTION_CLOSE) {
		sl_gw_log("session %llu client_id=%s peer=%s: auth failure (%s)",
		          (unsigned long long) s->id, s->client_id, s->peer, a.error.message);
		queue_error(s, a.error.code, a.error.message, true);
		return;
	}
	if (a.kind != SL_ACTION_WELCOME)
		return;

	json_t *tokgroups = json_loads(PQgetvalue(res, 0, 1), 0, NULL); /* new */
	json_t *tables = json_loads(PQgetvalue(res, 0, 4), 0, NULL);    /* new */
	uint64_t server_cursor = strtoull(PQgetvalue(res, 0, 3), NULL, 10);
	s->groups = json_array();
	size_t i, k;
	json_t *g, *h;
	json_array_foreach(s->req_groups, i, g) {
		bool dup = false;
		json_array_foreach(s->groups, k, h)
			if (json_equal(g, h))
				dup = true;
		if (dup)
			continue;
		json_array_foreach(tokgroups, k, h)
			if (json_equal(g, h)) {
				json_array_append(s->groups, g);
				break;
			}
	}
	json_decref(tokgroups);
	if (!json_is_object(tables)) {
		json_decref(tables);
		tables = json_object();
	}
	char hlc[SL_HLC_LEN + 1];
	sl_gw_hlc_now(hlc);
	queue_owned(s, sl_encode_welcome(server_cursor, hlc, s->groups, tables));
	json_decref(tables);
	char *gs = json_dumps(s->groups, JSON_COMPACT);
	sl_gw_log("session %llu client_id=%s peer=%s: welcome subject=%s groups=%s cursor=%llu",
	          (unsigned long long) s->id, s->client_id, s->peer, PQgetvalue(res, 0, 0),
	          gs ? gs : "?", (unsigned long long) s->cursor);
	free(gs);
	if (json_array_size(s->groups) == 0)
		s->live = false; /* nothing to follow */
	else if (!s->close_after)
		backlog_next(s);
}

static void
do_hello(sl_sess *s, const sl_frame *f)
{
	snprintf(s->client_id, sizeof s->client_id, "%s", f->hello.client_id);
	free(s->token);
	s->token = strdup(f->hello.token);
	json_decref(s->req_groups);
	s->req_groups = json_incref(f->hello.groups);
	s->cursor = f->hello.cursor;
	sl_gw_hlc_observe(f->hello.hlc);
	sl_gw_log("session %llu client_id=%s peer=%s: hello cursor=%llu",
	          (unsigned long long) s->id, s->client_id, s->peer,
	          (unsigned long long) s->cursor);

	sl_pending *p = pending_new(s, PQ_AUTH);
	const char *params[1] = { s->token };
	if (!s->token || !p ||
	    sl_gw_query("SELECT a.subject, array_to_json(a.groups)::text, a.can_write, "
	                "synclog.cursor(), synclog.tables()::text "
	                "FROM synclog.authenticate($1) a",
	                1, params, on_auth_result, p) != 0) {
		free(p);
		s->sm.state = SL_SESS_CLOSING;
		queue_error(s, SL_ERR_SERVER_UNAVAILABLE,
		            "the database is unavailable; try again later", true);
	}
}

/* ---------------------------------------------------------------- push */

static void
on_push_result(void *arg, PGresult *res, const char *error)
{
	sl_pending *p = arg;
	sl_sess *s = sess_find(p->sid);
	free(p);
	if (!s)
		return;
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
	const char *params[3] = { s->token, s->client_id, s->rx };
	if (!p || sl_gw_query("SELECT synclog.push($1, $2, ($3::jsonb)->'ops')::text", 3, params,
	                      on_push_result, p) != 0) {
		free(p);
		queue_error(s, SL_ERR_SERVER_UNAVAILABLE,
		            "the database is unavailable; the push was not applied, send it again", false);
	}
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
	sl_frame_clear(&f);
	s->rx_len = 0;
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
		size_t cap = s->rx_cap ? s->rx_cap : 4096;
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
		sl_session_init(&s->sm, &sl_gw.limits);
		lws_get_peer_simple(wsi, s->peer, sizeof s->peer);
		s->next = sl_gw.sessions;
		if (sl_gw.sessions)
			sl_gw.sessions->prev = s;
		sl_gw.sessions = s;
		sl_gw_log("session %llu peer=%s: connect", (unsigned long long) s->id, s->peer);
		break;

	case LWS_CALLBACK_RECEIVE:
		if (!s || !s->id)
			return -1;
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

	case LWS_CALLBACK_SERVER_WRITEABLE: {
		if (!s || !s->id)
			return -1;
		sl_out *o = s->q_head;
		if (o) {
			s->q_head = o->next;
			if (!s->q_head)
				s->q_tail = NULL;
			s->q_bytes -= o->len;
			int n = lws_write(wsi, o->buf + LWS_PRE, o->len, LWS_WRITE_TEXT);
			size_t want = o->len;
			free(o);
			if (n < (int) want)
				return -1;
		}
		if (s->q_head) {
			lws_callback_on_writable(wsi);
		} else if (s->close_after) {
			lws_close_reason(wsi, LWS_CLOSE_STATUS_POLICY_VIOLATION, NULL, 0);
			return -1;
		}
		break;
	}

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
		sess_free_queue(s);
		free(s->rx);
		free(s->token);
		json_decref(s->req_groups);
		json_decref(s->groups);
		s->id = 0;
		break;

	default:
		break;
	}
	return 0;
}

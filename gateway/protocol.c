/*
 * gateway/protocol.c: the synclog.v1 frame codec and the per-connection
 * protocol state machine (see protocol.h for the contracts).
 *
 * Parsing a frame goes in three steps, cheapest first, so that hostile input
 * costs little and never reaches jansson in a shape it handles badly:
 *   1. length: over lim->max_frame_bytes is too_large before anything is read;
 *   2. one pass over the bytes (prescan): strict UTF-8 (RFC 3629: no overlong
 *      forms, no surrogates, nothing above U+10FFFF), no raw NUL byte, no
 *      number PostgreSQL's numeric cannot hold (number_fits_numeric), and
 *      nesting depth at most lim->max_depth.  jansson 2.14 (Debian 12) has its
 *      own recursion limit (JSON_PARSER_MAX_DEPTH, 2048, not settable at run
 *      time) and would refuse 100,000 '[' safely, but only with a generic
 *      message, after recursing 2048 deep; ours is lower and named;
 *   3. json_loadb with JSON_DECODE_ANY (so a top-level scalar gets a precise
 *      "must be an object" message) and JSON_REJECT_DUPLICATES: a frame with a
 *      key twice ({"token":"a","token":"b"}, or twice the same column in an
 *      op's fields) is ambiguous, and other JSON readers would pick a
 *      different copy than jansson's last-one-wins, so it is refused as
 *      bad_frame.  "\u0000" in a string is refused too (jansson's default
 *      without JSON_ALLOW_NUL): it cannot reach a PostgreSQL text value anyway.
 * Then the fields of the frame's type are checked in a fixed order; the first
 * problem found is the one reported.
 *
 * Error messages are built with set_error(), which leaves only printable ASCII
 * in them; client-supplied text shown in a message (an unknown type, a bad
 * hlc) is quoted with quote(), which escapes other bytes and truncates.
 *
 * The state machine is sl_session_on_frame / _on_bad_frame / _on_auth_result:
 * each is one switch with one case per state.  "Bad frames" (PROTOCOL.md's
 * "a client that keeps sending garbage") are counted in sl_session.bad_frames
 * by count_bad_frame(); a frame acted on resets the count, and a frame refused
 * only for an unknown type neither counts nor resets it.
 */
#include "protocol.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest piece of client-supplied text quoted in a message, in bytes. */
#define QUOTE_MAX 40

sl_limits
sl_limits_default(void)
{
	sl_limits l = {
		.max_frame_bytes = 1024 * 1024,
		.max_push_ops = 1000,
		.max_hello_groups = 256,
		.max_depth = 64,
		.max_bad_frames = 10,
	};
	return l;
}

/*
 * Sets err->code to `code` (a static string) and err->message from the format,
 * truncated to fit, with every byte outside printable ASCII replaced by '?'.
 * Always returns -1, so parse steps can `return set_error(...)`.
 */
static int set_error(sl_error *err, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int
set_error(sl_error *err, const char *code, const char *fmt, ...)
{
	va_list ap;

	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof err->message, fmt, ap);
	va_end(ap);
	for (char *p = err->message; *p; p++)
		if ((unsigned char) *p < 0x20 || (unsigned char) *p > 0x7e)
			*p = '?';
	return -1;
}

/*
 * Writes s[0..len) into dst (size dstsz >= 8) as printable ASCII: other bytes
 * and '\\' become \xNN, '"' becomes \", and text past QUOTE_MAX bytes of input
 * is cut and marked "...".  Returns dst.  Cannot fail.
 */
static const char *
quote(char *dst, size_t dstsz, const char *s, size_t len)
{
	size_t o = 0;
	size_t i;

	for (i = 0; i < len && i < QUOTE_MAX; i++) {
		unsigned char c = (unsigned char) s[i];
		char tmp[5];
		size_t n;

		if (c == '"') {
			tmp[0] = '\\';
			tmp[1] = '"';
			n = 2;
		} else if (c >= 0x20 && c <= 0x7e && c != '\\') {
			tmp[0] = (char) c;
			n = 1;
		} else {
			snprintf(tmp, sizeof tmp, "\\x%02x", c);
			n = 4;
		}
		if (o + n + 4 > dstsz) /* room for "..." and NUL */
			break;
		memcpy(dst + o, tmp, n);
		o += n;
	}
	if (i < len) {
		memcpy(dst + o, "...", 3);
		o += 3;
	}
	dst[o] = '\0';
	return dst;
}

/* A JSON value's kind for messages: "an object", "a string", ... */
static const char *
json_kind(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER: return "an integer";
	case JSON_REAL: return "a real number";
	case JSON_TRUE:
	case JSON_FALSE: return "a boolean";
	case JSON_NULL: return "null";
	}
	return "an unknown value";
}

/*
 * Length of the valid UTF-8 sequence starting at s[0] (a byte >= 0x80), with
 * `avail` bytes available, or 0 if it is not one (RFC 3629 table 3.7).
 */
static size_t
utf8_seq_len(const unsigned char *s, size_t avail)
{
	unsigned char c = s[0];
	unsigned char lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
	size_t n;

	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		if (c == 0xe0)
			lo = 0xa0; /* no overlong forms */
		else if (c == 0xed)
			hi = 0x9f; /* no UTF-16 surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		if (c == 0xf0)
			lo = 0x90; /* no overlong forms */
		else if (c == 0xf4)
			hi = 0x8f; /* nothing above U+10FFFF */
	} else
		return 0;
	if (avail < n || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

/* PostgreSQL 15's numeric: NUMERIC_DSCALE_MAX, and the exponent bound of
 * numeric_in (INT_MAX / 2). */
#define PG_NUMERIC_DSCALE_MAX 16383
#define PG_NUMERIC_EXPONENT_MAX 1073741823

/*
 * Scans the JSON number token at s[0] (a '-' or a digit outside a string) and
 * sets *end to its length (at least 1).  True when PostgreSQL's numeric can
 * hold it as written: at most PG_NUMERIC_DSCALE_MAX digits after the decimal
 * point, counted as PostgreSQL does (the fraction's digits minus the
 * exponent: 10e-16384 has 16384), and an exponent below
 * PG_NUMERIC_EXPONENT_MAX.  The gateway hands a push to synclog.push as the
 * frame's text cast to jsonb, which reads every number as numeric; jansson
 * reads 1e-20000 or 0e99999999999 as a double (0) without complaint, so
 * without this check such a number anywhere in a push failed the cast as a
 * whole and reached the client as server_unavailable, which tells it to
 * resend the same frame forever.
 */
static bool
number_fits_numeric(const unsigned char *s, size_t len, size_t *end)
{
	size_t i = 0;
	long long frac = 0, exp = 0, dscale;
	bool neg_exp = false;

	if (i < len && s[i] == '-')
		i++;
	while (i < len && s[i] >= '0' && s[i] <= '9')
		i++;
	if (i < len && s[i] == '.') {
		i++;
		while (i < len && s[i] >= '0' && s[i] <= '9') {
			i++;
			frac++;
		}
	}
	if (i < len && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < len && (s[i] == '+' || s[i] == '-'))
			neg_exp = s[i++] == '-';
		while (i < len && s[i] >= '0' && s[i] <= '9') {
			if (exp < PG_NUMERIC_EXPONENT_MAX) /* saturates: no overflow */
				exp = exp * 10 + (s[i] - '0');
			i++;
		}
	}
	*end = i ? i : 1;
	if (exp >= PG_NUMERIC_EXPONENT_MAX)
		return false;
	dscale = neg_exp ? frac + exp : frac - exp;
	return dscale <= PG_NUMERIC_DSCALE_MAX;
}

/*
 * One pass over the raw frame: refuses a NUL byte or invalid UTF-8 (bad_frame),
 * a number PostgreSQL's numeric cannot hold (bad_frame, see
 * number_fits_numeric) and nesting deeper than lim->max_depth (too_large).  The depth count skips
 * brackets inside strings; on malformed JSON it may be off, which only changes
 * which error a frame that is refused anyway gets.  Returns 0 or -1 with *err.
 */
static int
prescan(const unsigned char *s, size_t len, const sl_limits *lim, sl_error *err)
{
	size_t depth = 0;
	bool in_string = false, escaped = false;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = s[i];

		if (c == 0)
			return set_error(err, SL_ERR_BAD_FRAME,
			                 "frame contains a NUL byte at offset %zu; a frame is one JSON text", i);
		if (c >= 0x80) {
			size_t n = utf8_seq_len(s + i, len - i);

			if (n == 0)
				return set_error(err, SL_ERR_BAD_FRAME,
				                 "frame is not valid UTF-8 (byte 0x%02x at offset %zu)", c, i);
			i += n - 1;
			escaped = false;
			continue;
		}
		if (in_string) {
			if (escaped)
				escaped = false;
			else if (c == '\\')
				escaped = true;
			else if (c == '"')
				in_string = false;
			continue;
		}
		if (c == '"')
			in_string = true;
		else if (c == '-' || (c >= '0' && c <= '9')) {
			size_t n;

			if (!number_fits_numeric(s + i, len - i, &n))
				return set_error(err, SL_ERR_BAD_FRAME,
				                 "frame has a number PostgreSQL cannot hold (at offset %zu): at "
				                 "most %d digits after the decimal point, counting a negative "
				                 "exponent", i, PG_NUMERIC_DSCALE_MAX);
			i += n - 1;
		} else if (c == '[' || c == '{') {
			if (++depth > lim->max_depth)
				return set_error(err, SL_ERR_TOO_LARGE,
				                 "frame nests JSON deeper than %zu levels (at offset %zu); "
				                 "the limit is max_depth = %zu",
				                 lim->max_depth, i, lim->max_depth);
		} else if ((c == ']' || c == '}') && depth > 0)
			depth--;
	}
	return 0;
}

/*
 * Fetches member `name` of a hello as a string of min..max bytes into *out
 * (borrowed from doc).  Returns 0, or -1 with a bad_frame *err whose message
 * names the field but never shows its value (it may be the token).
 */
static int
get_bounded_string(json_t *doc, const char *name, size_t min, size_t max,
                   const char **out, sl_error *err)
{
	json_t *v = json_object_get(doc, name);
	size_t n;

	if (v == NULL)
		return set_error(err, SL_ERR_BAD_FRAME,
		                 "hello needs \"%s\", a string of %zu to %zu bytes", name, min, max);
	if (!json_is_string(v))
		return set_error(err, SL_ERR_BAD_FRAME,
		                 "hello \"%s\" must be a string of %zu to %zu bytes, not %s",
		                 name, min, max, json_kind(v));
	n = json_string_length(v);
	if (n < min || n > max)
		return set_error(err, SL_ERR_BAD_FRAME,
		                 "hello \"%s\" is %zu bytes; it must be %zu to %zu bytes",
		                 name, n, min, max);
	*out = json_string_value(v);
	return 0;
}

/* Validates a hello (doc is the frame object) into f->hello.  0 or -1. */
static int
parse_hello(json_t *doc, const sl_limits *lim, sl_frame *f, sl_error *err)
{
	json_t *groups, *cursor, *hlc;
	size_t n, i;
	json_int_t c;
	const char *h;
	char q[QUOTE_MAX * 4 + 8];

	if (get_bounded_string(doc, "client_id", 1, SL_CLIENT_ID_MAX, &f->hello.client_id, err) < 0 ||
	    get_bounded_string(doc, "token", 1, SL_TOKEN_MAX, &f->hello.token, err) < 0)
		return -1;
	/* synclog.push refuses it as an argument error, which would reach the
	 * client as server_unavailable on every push (an invitation to retry
	 * forever): refuse it here, once, for what it is. */
	if (strcmp(f->hello.client_id, SL_CLIENT_ID_RESERVED) == 0)
		return set_error(err, SL_ERR_BAD_FRAME,
		                 "hello \"client_id\" \"%s\" is reserved for writes made directly in "
		                 "SQL; pick another (a UUID)", SL_CLIENT_ID_RESERVED);

	groups = json_object_get(doc, "groups");
	if (groups == NULL)
		return set_error(err, SL_ERR_BAD_FRAME,
		                 "hello needs \"groups\", an array of group names");
	if (!json_is_array(groups))
		return set_error(err, SL_ERR_BAD_FRAME,
		                 "hello \"groups\" must be an array of group names, not %s",
		                 json_kind(groups));
	n = json_array_size(groups);
	if (n == 0)
		return set_error(err, SL_ERR_BAD_FRAME,
		                 "hello \"groups\" is empty; name at least one group");
	if (n > lim->max_hello_groups)
		return set_error(err, SL_ERR_TOO_LARGE,
		                 "hello names %zu groups; the limit is max_hello_groups = %zu",
		                 n, lim->max_hello_groups);
	for (i = 0; i < n; i++) {
		json_t *g = json_array_get(groups, i);
		size_t gl;

		if (!json_is_string(g))
			return set_error(err, SL_ERR_BAD_FRAME,
			                 "hello groups[%zu] must be a string, not %s", i, json_kind(g));
		gl = json_string_length(g);
		if (gl == 0 || gl > SL_GROUP_MAX)
			return set_error(err, SL_ERR_BAD_FRAME,
			                 "hello groups[%zu] is %zu bytes; a group name is 1 to %d bytes",
			                 i, gl, SL_GROUP_MAX);
	}
	f->hello.groups = groups;

	cursor = json_object_get(doc, "cursor");
	if (cursor == NULL)
		return set_error(err, SL_ERR_BAD_FRAME,
		                 "hello needs \"cursor\", an integer (0 when the client holds nothing yet)");
	if (!json_is_integer(cursor))
		return set_error(err, SL_ERR_BAD_FRAME,
		                 "hello \"cursor\" must be an integer from 0 to 2^53-1, not %s",
		                 json_kind(cursor));
	c = json_integer_value(cursor);
	if (c < 0 || (uint64_t) c >= SL_CURSOR_LIMIT)
		return set_error(err, SL_ERR_BAD_FRAME,
		                 "hello \"cursor\" is %" JSON_INTEGER_FORMAT "; it must be from 0 to 2^53-1", c);
	f->hello.cursor = (uint64_t) c;

	hlc = json_object_get(doc, "hlc");
	if (hlc == NULL)
		return set_error(err, SL_ERR_BAD_FRAME,
		                 "hello needs \"hlc\", the client's clock as 16 lowercase hex digits");
	if (!json_is_string(hlc))
		return set_error(err, SL_ERR_BAD_FRAME,
		                 "hello \"hlc\" must be a string of 16 lowercase hex digits, not %s",
		                 json_kind(hlc));
	h = json_string_value(hlc);
	n = json_string_length(hlc);
	for (i = 0; i < n; i++)
		if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f')))
			break;
	if (n != SL_HLC_LEN || i != n)
		return set_error(err, SL_ERR_BAD_FRAME,
		                 "hello \"hlc\" must be 16 lowercase hex digits, got \"%s\"",
		                 quote(q, sizeof q, h, n));
	memcpy(f->hello.hlc, h, SL_HLC_LEN + 1);
	return 0;
}

/* Validates a push (doc is the frame object) into f->push.  0 or -1. */
static int
parse_push(json_t *doc, const sl_limits *lim, sl_frame *f, sl_error *err)
{
	json_t *ops = json_object_get(doc, "ops");
	size_t n;

	if (ops == NULL)
		return set_error(err, SL_ERR_BAD_FRAME, "push needs \"ops\", an array of ops");
	if (!json_is_array(ops))
		return set_error(err, SL_ERR_BAD_FRAME,
		                 "push \"ops\" must be an array of ops, not %s", json_kind(ops));
	n = json_array_size(ops);
	if (n > lim->max_push_ops)
		return set_error(err, SL_ERR_TOO_LARGE,
		                 "push has %zu ops; the limit is max_batch_ops = %zu; split the batch",
		                 n, lim->max_push_ops);
	for (size_t i = 0; i < n; i++) {
		json_t *op = json_array_get(ops, i);

		if (!json_is_object(op))
			return set_error(err, SL_ERR_BAD_FRAME,
			                 "push ops[%zu] must be an object, not %s", i, json_kind(op));
	}
	f->push.ops = ops;
	f->push.n_ops = n;
	return 0;
}

int
sl_frame_parse(const char *buf, size_t len, const sl_limits *lim,
               sl_frame *out, sl_error *err)
{
	sl_limits defaults;
	json_error_t jerr;
	json_t *doc, *type;
	const char *t;
	size_t i;
	char q[QUOTE_MAX * 4 + 8];

	memset(out, 0, sizeof *out);
	err->code = NULL;
	err->message[0] = '\0';
	err->unknown_type = false;
	if (lim == NULL) {
		defaults = sl_limits_default();
		lim = &defaults;
	}

	if (buf == NULL || len == 0)
		return set_error(err, SL_ERR_BAD_FRAME, "frame is empty; expected a JSON object");
	if (len > lim->max_frame_bytes)
		return set_error(err, SL_ERR_TOO_LARGE,
		                 "frame is %zu bytes; the limit is max_frame_bytes = %zu", len,
		                 lim->max_frame_bytes);
	if (prescan((const unsigned char *) buf, len, lim, err) < 0)
		return -1;
	for (i = 0; i < len; i++)
		if (buf[i] != ' ' && buf[i] != '\t' && buf[i] != '\n' && buf[i] != '\r')
			break;
	if (i == len)
		return set_error(err, SL_ERR_BAD_FRAME,
		                 "frame holds only whitespace; expected a JSON object");

	doc = json_loadb(buf, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
	if (doc == NULL) {
		char *near;

		switch (json_error_code(&jerr)) {
		case json_error_duplicate_key: /* the text names the key, not a value */
			return set_error(err, SL_ERR_BAD_FRAME,
			                 "frame has a key twice in one object (%s at byte %d); "
			                 "each key may appear once", jerr.text, jerr.position);
		case json_error_null_character:
		case json_error_null_byte_in_key:
			return set_error(err, SL_ERR_BAD_FRAME,
			                 "frame has \\u0000 in a string (at byte %d); strings may not "
			                 "contain NUL", jerr.position);
		case json_error_numeric_overflow:
			return set_error(err, SL_ERR_BAD_FRAME,
			                 "frame has a number outside the range of a 64-bit integer or "
			                 "a double (at byte %d)", jerr.position);
		default:
			break;
		}
		/* Drop jansson's " near '<text>'": it may quote the token. */
		if ((near = strstr(jerr.text, " near ")) != NULL)
			*near = '\0';
		return set_error(err, SL_ERR_BAD_FRAME, "frame is not valid JSON: %s (at byte %d)",
		                 jerr.text, jerr.position);
	}
	if (!json_is_object(doc)) {
		set_error(err, SL_ERR_BAD_FRAME, "frame must be a JSON object, not %s",
		          json_kind(doc));
		json_decref(doc);
		return -1;
	}

	type = json_object_get(doc, "type");
	if (type == NULL || !json_is_string(type)) {
		if (type == NULL)
			set_error(err, SL_ERR_BAD_FRAME,
			          "frame has no \"type\"; expected \"hello\", \"push\" or \"ping\"");
		else
			set_error(err, SL_ERR_BAD_FRAME,
			          "frame \"type\" must be a string (\"hello\", \"push\" or \"ping\"), not %s",
			          json_kind(type));
		json_decref(doc);
		return -1;
	}
	t = json_string_value(type);

	out->doc = doc;
	if (strcmp(t, "hello") == 0) {
		out->type = SL_FRAME_HELLO;
		if (parse_hello(doc, lim, out, err) == 0)
			return 0;
	} else if (strcmp(t, "push") == 0) {
		out->type = SL_FRAME_PUSH;
		if (parse_push(doc, lim, out, err) == 0)
			return 0;
	} else if (strcmp(t, "ping") == 0) {
		out->type = SL_FRAME_PING;
		return 0;
	} else {
		set_error(err, SL_ERR_BAD_FRAME,
		          "unknown frame type \"%s\"; this server understands hello, push and ping",
		          quote(q, sizeof q, t, json_string_length(type)));
		err->unknown_type = true;
	}
	sl_frame_clear(out);
	return -1;
}

void
sl_frame_clear(sl_frame *f)
{
	if (f == NULL)
		return;
	json_decref(f->doc); /* accepts NULL */
	memset(f, 0, sizeof *f);
}

/* Dumps obj compactly and releases the caller's reference to it (obj may be
 * NULL, from a failed json_pack).  Returns malloc'd text or NULL. */
static char *
dump_and_release(json_t *obj)
{
	char *text;

	if (obj == NULL)
		return NULL;
	text = json_dumps(obj, JSON_COMPACT);
	json_decref(obj);
	return text;
}

char *
sl_encode_welcome(uint64_t cursor, const char *hlc, json_t *groups, json_t *tables)
{
	if (cursor >= SL_CURSOR_LIMIT || hlc == NULL || !json_is_array(groups) ||
	    !json_is_object(tables))
		return NULL;
	/* "O" takes a new reference to groups and tables; dump_and_release drops it. */
	return dump_and_release(json_pack("{s:s, s:I, s:s, s:O, s:O}", "type", "welcome",
	                                  "cursor", (json_int_t) cursor, "hlc", hlc,
	                                  "groups", groups, "tables", tables));
}

char *
sl_encode_ack(json_t *push_reply)
{
	json_t *acked = json_object_get(push_reply, "acked"); /* NULL-safe */
	json_t *rejected = json_object_get(push_reply, "rejected");
	json_t *hlc = json_object_get(push_reply, "hlc");

	if (!json_is_array(acked) || !json_is_array(rejected) || !json_is_string(hlc))
		return NULL;
	return dump_and_release(json_pack("{s:s, s:O, s:O, s:O}", "type", "ack",
	                                  "acked", acked, "rejected", rejected, "hlc", hlc));
}

char *
sl_encode_pong(const char *hlc)
{
	if (hlc == NULL)
		return NULL;
	return dump_and_release(json_pack("{s:s, s:s}", "type", "pong", "hlc", hlc));
}

char *
sl_encode_error(const char *code, const char *message)
{
	json_t *obj;
	char *clean, *text;

	if (code == NULL)
		return NULL;
	if (message == NULL)
		message = "";
	obj = json_pack("{s:s, s:s, s:s}", "type", "error", "code", code, "message", message);
	if (obj != NULL)
		return dump_and_release(obj);
	/* Either memory ran out or message (or code) is not UTF-8: retry with the
	 * non-ASCII bytes of the message replaced. */
	clean = strdup(message);
	if (clean == NULL)
		return NULL;
	for (char *p = clean; *p; p++)
		if ((unsigned char) *p >= 0x80)
			*p = '?';
	text = dump_and_release(json_pack("{s:s, s:s, s:s}", "type", "error", "code", code,
	                                  "message", clean));
	free(clean);
	return text;
}

char *
sl_encode_changes(json_t *changes, uint64_t cursor)
{
	if (!json_is_array(changes) || cursor >= SL_CURSOR_LIMIT)
		return NULL;
	return dump_and_release(json_pack("{s:s, s:O, s:I}", "type", "changes",
	                                  "changes", changes, "cursor", (json_int_t) cursor));
}

char *
sl_encode_snapshot(json_t *rows, uint64_t cursor, bool done)
{
	if (!json_is_array(rows) || cursor >= SL_CURSOR_LIMIT)
		return NULL;
	return dump_and_release(json_pack("{s:s, s:O, s:I, s:b}", "type", "snapshot",
	                                  "rows", rows, "cursor", (json_int_t) cursor,
	                                  "done", (int) done));
}

void
sl_session_init(sl_session *s, const sl_limits *lim)
{
	memset(s, 0, sizeof *s);
	s->state = SL_SESS_AWAIT_HELLO;
	s->limits = lim != NULL ? *lim : sl_limits_default();
}

/* An action with no error attached. */
static sl_action
act(sl_action_kind kind)
{
	sl_action a;

	memset(&a, 0, sizeof a);
	a.kind = kind;
	return a;
}

/*
 * Counts one bad frame on s and returns the answer to it: ERROR with `code`
 * and `message`, or, at the max_bad_frames-th bad frame in a row, CLOSE with
 * the same code and a note that the connection closes (state CLOSING).
 */
static sl_action
count_bad_frame(sl_session *s, const char *code, const char *message)
{
	sl_action a = act(SL_ACTION_ERROR);
	unsigned max = s->limits.max_bad_frames;

	s->bad_frames++;
	if (max > 0 && s->bad_frames >= max) {
		char note[96];
		int room;

		snprintf(note, sizeof note,
		         " (closing the connection after %u bad frames in a row)", max);
		room = (int) (sizeof a.error.message - strlen(note) - 1);
		set_error(&a.error, code, "%.*s%s", room, message, note);
		a.kind = SL_ACTION_CLOSE;
		s->state = SL_SESS_CLOSING;
		return a;
	}
	set_error(&a.error, code, "%s", message);
	return a;
}

/* "hello", "push", "ping" for messages. */
static const char *
frame_type_name(sl_frame_type t)
{
	switch (t) {
	case SL_FRAME_HELLO: return "hello";
	case SL_FRAME_PUSH: return "push";
	case SL_FRAME_PING: return "ping";
	}
	return "?";
}

sl_action
sl_session_on_frame(sl_session *s, const sl_frame *f)
{
	char msg[SL_ERROR_MESSAGE_MAX];

	switch (s->state) {
	case SL_SESS_AWAIT_HELLO:
		if (f->type == SL_FRAME_HELLO) {
			s->bad_frames = 0;
			s->state = SL_SESS_AUTHENTICATING;
			return act(SL_ACTION_AUTHENTICATE);
		}
		snprintf(msg, sizeof msg,
		         "send hello first: nothing else is accepted before it (got %s)",
		         frame_type_name(f->type));
		return count_bad_frame(s, SL_ERR_HELLO_REQUIRED, msg);

	case SL_SESS_AUTHENTICATING:
		if (f->type == SL_FRAME_HELLO)
			return count_bad_frame(s, SL_ERR_BAD_FRAME,
			                       "hello already received on this connection; wait for welcome");
		snprintf(msg, sizeof msg,
		         "%s before welcome: the hello is still being authenticated; wait for welcome",
		         frame_type_name(f->type));
		return count_bad_frame(s, SL_ERR_HELLO_REQUIRED, msg);

	case SL_SESS_ACTIVE:
		switch (f->type) {
		case SL_FRAME_HELLO:
			return count_bad_frame(s, SL_ERR_BAD_FRAME,
			                       "hello already accepted on this connection; "
			                       "reconnect to change token, groups or cursor");
		case SL_FRAME_PUSH:
			s->bad_frames = 0;
			return act(SL_ACTION_PUSH);
		case SL_FRAME_PING:
			s->bad_frames = 0;
			return act(SL_ACTION_PONG);
		}
		return count_bad_frame(s, SL_ERR_BAD_FRAME, "frame of an unknown type");

	case SL_SESS_CLOSING:
		return act(SL_ACTION_NONE);
	}
	return act(SL_ACTION_NONE);
}

/* The answer to a refused frame in an open state: count it, unless it was
 * refused only for an unknown type, which gets its error uncounted. */
static sl_action
answer_refused(sl_session *s, const sl_error *err)
{
	const char *code = err->code != NULL ? err->code : SL_ERR_BAD_FRAME;
	sl_action a;

	if (!err->unknown_type)
		return count_bad_frame(s, code, err->message);
	a = act(SL_ACTION_ERROR);
	set_error(&a.error, code, "%s", err->message);
	return a;
}

sl_action
sl_session_on_bad_frame(sl_session *s, const sl_error *err)
{
	switch (s->state) {
	case SL_SESS_AWAIT_HELLO:
		return answer_refused(s, err);
	case SL_SESS_AUTHENTICATING:
		return answer_refused(s, err);
	case SL_SESS_ACTIVE:
		return answer_refused(s, err);
	case SL_SESS_CLOSING:
		return act(SL_ACTION_NONE);
	}
	return act(SL_ACTION_NONE);
}

sl_action
sl_session_on_auth_result(sl_session *s, bool ok)
{
	sl_action a;

	switch (s->state) {
	case SL_SESS_AWAIT_HELLO:
		return act(SL_ACTION_NONE); /* no hello to answer: a caller bug, ignored */
	case SL_SESS_AUTHENTICATING:
		if (ok) {
			s->state = SL_SESS_ACTIVE;
			return act(SL_ACTION_WELCOME);
		}
		s->state = SL_SESS_CLOSING;
		a = act(SL_ACTION_CLOSE);
		set_error(&a.error, SL_ERR_UNAUTHORIZED,
		          "the token is unknown or revoked; get a new token and reconnect");
		return a;
	case SL_SESS_ACTIVE:
		return act(SL_ACTION_NONE); /* already welcomed: a caller bug, ignored */
	case SL_SESS_CLOSING:
		return act(SL_ACTION_NONE); /* closed for garbage while authenticating */
	}
	return act(SL_ACTION_NONE);
}

const char *
sl_sess_state_name(sl_sess_state st)
{
	switch (st) {
	case SL_SESS_AWAIT_HELLO: return "AWAIT_HELLO";
	case SL_SESS_AUTHENTICATING: return "AUTHENTICATING";
	case SL_SESS_ACTIVE: return "ACTIVE";
	case SL_SESS_CLOSING: return "CLOSING";
	}
	return "?";
}

const char *
sl_action_name(sl_action_kind k)
{
	switch (k) {
	case SL_ACTION_NONE: return "NONE";
	case SL_ACTION_AUTHENTICATE: return "AUTHENTICATE";
	case SL_ACTION_WELCOME: return "WELCOME";
	case SL_ACTION_PUSH: return "PUSH";
	case SL_ACTION_PONG: return "PONG";
	case SL_ACTION_ERROR: return "ERROR";
	case SL_ACTION_CLOSE: return "CLOSE";
	}
	return "?";
}

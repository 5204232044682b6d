/*
 * gateway/protocol.h: the synclog.v1 frame codec and the per-connection
 * protocol state machine.
 *
 * This is the part of the gateway that knows PROTOCOL.md and nothing else: it
 * turns one client text frame into a validated sl_frame (or an sl_error whose
 * code is one of PROTOCOL.md's error codes), encodes the server's frames as
 * compact JSON text, and decides, for each event on a connection, what the
 * gateway must do next (sl_action).  It does no I/O and calls neither
 * libwebsockets nor libpq: session.c (the lws protocol) and db.c (async libpq)
 * call into it.  All functions are pure apart from allocation, so any thread may
 * call them on its own data; nothing here is shared between connections.
 *
 * Words, as in DESIGN.md: a frame is one WebSocket text message holding one JSON
 * object with a "type"; an op is one element of a push's "ops"; the cursor is
 * the highest seq a client holds; a limit is a configurable bound in sl_limits
 * (exceeding one is `too_large`, and the message names the limit and its
 * value), while fixed format rules of PROTOCOL.md (client_id 1-64 bytes, token
 * at most 4096 bytes, group at most 256 bytes, hlc 16 lowercase hex digits) are
 * `bad_frame` when broken.
 *
 * jansson references: every json_t argument and field is marked "borrowed" (the
 * caller keeps its reference, the callee takes none it does not release itself)
 * or "owned".  Nothing here steals a reference.
 */
#ifndef SL_PROTOCOL_H
#define SL_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* Error codes of PROTOCOL.md, as the static strings sl_error.code points to. */
#define SL_ERR_UNAUTHORIZED "unauthorized"
#define SL_ERR_BAD_FRAME "bad_frame"
#define SL_ERR_HELLO_REQUIRED "hello_required"
#define SL_ERR_SERVER_UNAVAILABLE "server_unavailable"
#define SL_ERR_TOO_LARGE "too_large"
#define SL_ERR_RATE_LIMITED "rate_limited"

/* Fixed format rules of PROTOCOL.md (not configurable). */
#define SL_CLIENT_ID_MAX 64   /* bytes */
#define SL_CLIENT_ID_RESERVED "server" /* the client_id of direct SQL writes (DESIGN.md) */
#define SL_TOKEN_MAX 4096     /* bytes */
#define SL_GROUP_MAX 256      /* bytes, each group name */
#define SL_HLC_LEN 16         /* lowercase hex digits */
#define SL_CURSOR_LIMIT (UINT64_C(1) << 53) /* cursors and seqs are below this */

/*
 * Configurable limits; one of these per gateway, read-only once connections
 * exist.  sl_limits_default() gives the values below.
 */
typedef struct sl_limits {
	size_t max_frame_bytes;  /* default 1 MiB: a longer frame is too_large */
	size_t max_push_ops;     /* default 1000, as synclog.max_batch_ops */
	size_t max_hello_groups; /* default 256 */
	size_t max_depth;        /* default 64: JSON nesting, the frame object is 1 */
	unsigned max_bad_frames; /* default 10 consecutive bad frames, then close; 0 never closes */
} sl_limits;

#define SL_ERROR_MESSAGE_MAX 256

/*
 * A problem with a frame or a connection, ready for an `error` frame.  `code`
 * points to one of the SL_ERR_* static strings; `message` is for people,
 * NUL-terminated, printable ASCII only (client-supplied bytes are shown
 * escaped, the token never), so it is always valid to log and to put in JSON.
 * `unknown_type` marks a frame refused only for its type: PROTOCOL.md promises
 * such a frame an error and an open connection, so the session does not count
 * it as garbage (a newer client may send types this server does not know).
 */
typedef struct sl_error {
	const char *code;
	char message[SL_ERROR_MESSAGE_MAX];
	bool unknown_type; /* a well-formed frame of a type this server does not know */
} sl_error;

typedef enum sl_frame_type {
	SL_FRAME_HELLO,
	SL_FRAME_PUSH,
	SL_FRAME_PING,
} sl_frame_type;

/*
 * One parsed client frame.  The frame owns one reference to the parsed
 * document (`doc`); every pointer in `hello` and `push` is borrowed from it and
 * valid until sl_frame_clear().  To keep `push.ops` or `hello.groups` longer,
 * json_incref() them before clearing the frame.
 */
typedef struct sl_frame {
	sl_frame_type type;
	json_t *doc; /* owned: the whole frame object; NULL when cleared */
	struct {
		const char *client_id; /* 1..64 bytes, NUL-terminated */
		const char *token;     /* 1..4096 bytes, NUL-terminated */
		json_t *groups;        /* borrowed: array of 1..max_hello_groups non-empty strings */
		uint64_t cursor;       /* 0 <= cursor < 2^53 */
		char hlc[SL_HLC_LEN + 1]; /* 16 lowercase hex digits */
	} hello;                   /* meaningful when type == SL_FRAME_HELLO */
	struct {
		json_t *ops;           /* borrowed: array of 0..max_push_ops objects, unvalidated beyond that */
		size_t n_ops;
	} push;                    /* meaningful when type == SL_FRAME_PUSH */
} sl_frame;

/* Returns the default limits listed in sl_limits.  Cannot fail. */
sl_limits sl_limits_default(void);

/*
 * Parses one client text frame of `len` bytes (need not be NUL-terminated) and
 * validates it against PROTOCOL.md and `lim` (NULL means the defaults).
 *
 * Returns 0 and fills *out (which the caller then releases with
 * sl_frame_clear) or returns -1, fills *err and leaves *out cleared (so
 * sl_frame_clear is still safe).  *out is overwritten without being released
 * first.  Never crashes or leaks on any input: invalid UTF-8, NUL bytes, deep
 * nesting and oversized frames are refused before jansson builds anything.
 *
 * Errors: over max_frame_bytes, more than max_depth levels of nesting, more
 * than max_push_ops ops or more than max_hello_groups groups → too_large (the
 * message names the limit and its value); anything else (empty, not UTF-8, NUL
 * byte, not JSON, duplicate object keys, not an object, no string "type",
 * unknown type, a missing or mistyped field, a value out of range) →
 * bad_frame.  Unknown fields are ignored.
 */
int sl_frame_parse(const char *buf, size_t len, const sl_limits *lim,
                   sl_frame *out, sl_error *err);

/* Releases what *f owns and zeroes it.  Accepts NULL and cleared frames. */
void sl_frame_clear(sl_frame *f);

/*
 * Encoders.  Each returns the frame as malloc'd, NUL-terminated compact JSON
 * text, which the caller frees with free(), or NULL when memory runs out or an
 * argument breaks its contract (wrong JSON type, a cursor >= 2^53, a string
 * that is not UTF-8).  No json_t argument is stolen or modified.
 */

/* {"type":"welcome","cursor","hlc","groups","tables"}; groups (array) and
 * tables (object) are borrowed. */
char *sl_encode_welcome(uint64_t cursor, const char *hlc, json_t *groups,
                        json_t *tables);

/* {"type":"ack","acked","rejected","hlc"} copied from the reply of
 * synclog.push (borrowed): it must hold arrays "acked" and "rejected" and a
 * string "hlc", else NULL (a server bug worth a log line). */
char *sl_encode_ack(json_t *push_reply);

/* {"type":"pong","hlc"} */
char *sl_encode_pong(const char *hlc);

/* {"type":"error","code","message"}.  A message that is not valid UTF-8 is sent
 * with its offending bytes replaced by '?', so this fails only on allocation. */
char *sl_encode_error(const char *code, const char *message);

/* {"type":"changes","changes","cursor"}; changes (array) is borrowed. */
char *sl_encode_changes(json_t *changes, uint64_t cursor);

/* {"type":"snapshot","rows","cursor","done"}; rows (array) is borrowed. */
char *sl_encode_snapshot(json_t *rows, uint64_t cursor, bool done);

/*
 * The per-connection state machine.  One sl_session per connection.
 *
 *   AWAIT_HELLO --hello--> AUTHENTICATING --auth ok--> ACTIVE
 *                                        \--auth refused--> CLOSING
 *   any state --max_bad_frames consecutive bad frames--> CLOSING
 *
 * A bad frame is one answered with an `error`: a parse error, a push or ping
 * before welcome, a second hello.  Any frame that is acted on resets the count;
 * a frame of an unknown type gets an error but neither counts nor resets.
 */
typedef enum {
	SL_SESS_AWAIT_HELLO,    /* connected; only a hello is accepted */
	SL_SESS_AUTHENTICATING, /* hello received, synclog.authenticate in flight */
	SL_SESS_ACTIVE,         /* welcome sent: push and ping are served */
	SL_SESS_CLOSING,        /* the last error is queued; every frame is ignored */
} sl_sess_state;

typedef enum {
	SL_ACTION_NONE,         /* nothing to send (frame ignored while closing) */
	SL_ACTION_AUTHENTICATE, /* authenticate hello.token, then call sl_session_on_auth_result */
	SL_ACTION_WELCOME,      /* send welcome, then the backlog from hello.cursor */
	SL_ACTION_PUSH,         /* call synclog.push with push.ops, answer with ack */
	SL_ACTION_PONG,         /* answer with pong */
	SL_ACTION_ERROR,        /* send an error frame (action.error); the connection stays open */
	SL_ACTION_CLOSE,        /* send an error frame (action.error), then close the connection */
} sl_action_kind;

typedef struct sl_action {
	sl_action_kind kind;
	sl_error error; /* set for SL_ACTION_ERROR and SL_ACTION_CLOSE, else code NULL */
} sl_action;

/* One of these per connection; plain data, nothing to free. */
typedef struct sl_session {
	sl_sess_state state;
	unsigned bad_frames; /* consecutive bad frames so far */
	sl_limits limits;    /* a copy, so the session outlives the caller's struct */
} sl_session;

/* Starts a session in AWAIT_HELLO.  lim NULL means the defaults.  Cannot fail. */
void sl_session_init(sl_session *s, const sl_limits *lim);

/* What to do with a frame sl_frame_parse accepted.  Cannot fail. */
sl_action sl_session_on_frame(sl_session *s, const sl_frame *f);

/* What to do with a frame sl_frame_parse refused with *err: send that error,
 * or close after max_bad_frames in a row (err->unknown_type never closes).
 * Cannot fail. */
sl_action sl_session_on_bad_frame(sl_session *s, const sl_error *err);

/* What to do once synclog.authenticate answered: ok → ACTIVE and WELCOME;
 * refused → CLOSING and CLOSE with `unauthorized`.  Outside AUTHENTICATING
 * (say the session started closing meanwhile) the result is ignored: NONE. */
sl_action sl_session_on_auth_result(sl_session *s, bool ok);

/* Names for logs: "AWAIT_HELLO", "PUSH", ... ("?" for an unknown value). */
const char *sl_sess_state_name(sl_sess_state st);
const char *sl_action_name(sl_action_kind k);

#endif /* SL_PROTOCOL_H */

/*
 * synclog.h: the public interface of libsynclog, synclog's client library.
 *
 * An application opens a local SQLite file with synclog_open() and from then
 * on writes through synclog_put() / synclog_delete(): each write updates the
 * visible row in the app's table AND appends the op to a durable outbox, in
 * one SQLite transaction, with no network on the path.  The app reads its
 * tables with ordinary SQL (synclog_db()).  It works offline for as long as
 * it likes: nothing written is lost across crashes or kills, because the
 * outbox, the cursor and the clock live in the same file (WAL mode,
 * synchronous=NORMAL).
 *
 * To sync, give the handle a server with synclog_connect() and then either
 * call synclog_run() in a loop (typically on a network thread: it reconnects
 * with jittered backoff, resends unacknowledged ops in order, pushes new
 * writes as they are made and applies the changes the server streams), or
 * call synclog_sync() to push everything and pull until caught up, then
 * return.
 *
 * Words, as in DESIGN.md: an op is one change to one row made here; pending
 * ops are this client's ops not yet confirmed by a change from the server;
 * confirmed state is the server's state at this client's cursor; the visible
 * row (what the app's table holds) is the per-field last-writer-wins merge of
 * confirmed state and pending ops, which predicts what the server will
 * decide.  When the server refuses an op, the op leaves the outbox, the row
 * is recomputed without it and the reject callback says why.
 *
 * Tables: the server's tracked tables are created locally from the `welcome`
 * frame (or the app creates them first, with at least the same columns).
 * Before the first welcome, a write to a table the handle does not know yet
 * creates that table locally (a "provisional" table: primary-key column `id`
 * plus one untyped column per field written); the first welcome rebuilds it
 * with the server's columns.  After a welcome, a write to a table the server
 * does not track, or to a column it does not have, is refused locally with
 * SYNCLOG_EINVAL.
 *
 * Errors: every function that can fail returns an int status, SYNCLOG_OK (0)
 * or one of the codes below, and on failure changes nothing;
 * synclog_errmsg() then says why in a sentence, until the next call on the
 * handle from the same thread.
 *
 * Threads: a handle may be used from several threads.  Every function takes
 * the handle's (recursive) lock, except synclog_wakeup(), which only wakes a
 * synclog_run() in progress.  synclog_run() and synclog_sync() release the
 * lock while they wait for the network, so a UI thread's writes never wait
 * for it; only one thread at a time may be inside synclog_run() or
 * synclog_sync().  Callbacks run on that thread, with the lock held, after
 * the transaction they report has committed; they may call synclog_put(),
 * synclog_delete() and every read, but not synclog_run(), synclog_sync(),
 * synclog_disconnect() or synclog_close().
 *
 * Strings passed in are borrowed for the duration of the call; strings passed
 * to callbacks are borrowed for the duration of the callback.
 */
#ifndef SYNCLOG_H
#define SYNCLOG_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes.  The first six are the store's (status.h), unchanged. */
enum {
	SYNCLOG_OK = 0,
	SYNCLOG_EINVAL = 1,   /* a bad argument: unknown table or column, bad JSON, empty row */
	SYNCLOG_ESKEW = 2,    /* a clock from the server too far ahead of ours */
	SYNCLOG_ERANGE = 3,   /* a clock beyond 48+16 bits */
	SYNCLOG_ENOMEM = 4,   /* out of memory */
	SYNCLOG_EDB = 5,      /* the local SQLite file failed (open, I/O, corrupt, busy) */
	SYNCLOG_ENET = 6,     /* the server could not be reached, or the connection failed */
	SYNCLOG_EAUTH = 7,    /* the server refused the token (`unauthorized`) */
	SYNCLOG_ETIMEOUT = 8, /* synclog_sync() ran out of time before being caught up */
	SYNCLOG_EMISUSE = 9   /* no server given (synclog_connect), or run/sync re-entered */
};

#define SYNCLOG_UUID_LEN 36 /* characters of an op id or client id, without the NUL */

typedef struct synclog synclog;
struct sqlite3;

/*
 * Opens or creates the local database at path (a file name; SQLite's URI
 * names are not interpreted) and sets it up: WAL mode, synchronous=NORMAL,
 * the internal tables (named _synclog_*), a client id chosen once and kept.
 * SYNCLOG_OK and *out, or SYNCLOG_EDB / SYNCLOG_ENOMEM with *out NULL.  Any
 * handle *out, also one whose open failed after allocation, is released with
 * synclog_close().
 */
int synclog_open(const char *path, synclog **out);

/*
 * Disconnects, closes the file and frees the handle.  Accepts NULL.  Cannot
 * fail: what was committed stays committed; nothing is written here.
 */
void synclog_close(synclog *sl);

/* The last error's text on this handle ("" after success).  Owned by sl. */
const char *synclog_errmsg(synclog *sl);

/* This client's id, a UUID stable across opens.  Owned by sl. */
const char *synclog_client_id(synclog *sl);

/* The cursor: the highest seq whose effects confirmed state holds; 0 before any. */
uint64_t synclog_cursor(synclog *sl);

/*
 * The SQLite connection, for reading the app's tables with ordinary SQL
 * (sqlite3_prepare_v2 and so on) on the thread that holds no synclog lock
 * elsewhere.  Owned by sl; never close it, never write the app's or the
 * _synclog_* tables through it (writes go through synclog_put/delete).
 */
struct sqlite3 *synclog_db(synclog *sl);

/*
 * A local write: sets the fields of fields_json (a JSON object, column →
 * value; numbers are kept exactly as written) on row `row` of `table`,
 * creating the row if it does not exist.  The primary-key column may be left
 * out (the row is the key).  Visible at once to synclog_db() readers; sent
 * with the next push.  op_id_out (may be NULL) gets the op's id, which the
 * reject callback names should the server refuse it.  SYNCLOG_EINVAL for an
 * empty row, a table or row that is not valid UTF-8, fields that are not an
 * object, an unknown table or column (after a welcome); SYNCLOG_EDB if the
 * file failed.
 */
int synclog_put(synclog *sl, const char *table, const char *row, const char *fields_json,
                char op_id_out[SYNCLOG_UUID_LEN + 1]);

/* As synclog_put, for deleting the row (deletes absorb: later ops on it are refused). */
int synclog_delete(synclog *sl, const char *table, const char *row,
                   char op_id_out[SYNCLOG_UUID_LEN + 1]);

/* One pending op, as synclog_pending lists it.  Every pointer is borrowed. */
typedef struct synclog_op {
	const char *op_id;
	const char *table;
	const char *row;
	const char *kind;   /* "upsert" or "delete" */
	const char *fields; /* JSON object text, "{}" for a delete */
	const char *hlc;    /* 16 hex digits */
} synclog_op;

/* Returns non-zero to stop the listing. */
typedef int (*synclog_op_fn)(void *ctx, const synclog_op *op);

/*
 * Calls fn for each op not yet acknowledged by the server, in the order they
 * were written (the order they will be pushed).  SYNCLOG_OK (also when fn
 * stopped the listing) or SYNCLOG_EDB.
 */
int synclog_pending(synclog *sl, synclog_op_fn fn, void *ctx);

/* One change applied from the server.  Every pointer is borrowed. */
typedef struct synclog_change {
	uint64_t seq;
	const char *op_id;
	const char *client_id; /* the writer: another client, ours, or "server" */
	const char *table;
	const char *row;
	const char *kind;   /* "upsert" or "delete" */
	const char *fields; /* JSON object text: the fields the op won */
	const char *hlc;
	const char *json;   /* the whole change object as JSON text */
} synclog_change;

/*
 * Called once per change applied to confirmed state (including this client's
 * own ops coming back), in seq order, after the transaction that applied it
 * committed.  Not called for the rows of a snapshot (see SYNCLOG_EV_SNAPSHOT).
 */
typedef void (*synclog_change_fn)(void *ctx, const synclog_change *change);

/*
 * Called once per op the server refused, after the op left the outbox and its
 * row was recomputed without it: the op's id, table and row, the rejection
 * code (DESIGN.md: row_deleted, read_only, constraint_violation, ...) and the
 * server's message.
 */
typedef void (*synclog_reject_fn)(void *ctx, const char *op_id, const char *table,
                                  const char *row, const char *code, const char *message);

/* Connection events, for an online/offline indicator or a log. */
typedef enum synclog_event {
	SYNCLOG_EV_CONNECTED,    /* welcome received; detail: the server's cursor, in decimal */
	SYNCLOG_EV_DISCONNECTED, /* the connection ended or could not be made; detail: why */
	SYNCLOG_EV_SNAPSHOT,     /* a snapshot replaced confirmed state; detail: its cursor */
	SYNCLOG_EV_ERROR         /* an `error` frame or a local failure; detail: "code: message" */
} synclog_event;

typedef void (*synclog_event_fn)(void *ctx, synclog_event event, const char *detail);

/* Registers (or, with NULL, removes) a callback.  Cannot fail. */
void synclog_on_change(synclog *sl, synclog_change_fn fn, void *ctx);
void synclog_on_reject(synclog *sl, synclog_reject_fn fn, void *ctx);
void synclog_on_event(synclog *sl, synclog_event_fn fn, void *ctx);

/* Where and how to sync.  Zero fields take the defaults named. */
typedef struct synclog_config {
	const char *url;            /* ws://HOST:PORT/ or wss://HOST:PORT/ (required) */
	const char *token;          /* bearer token from synclog.create_token (required) */
	const char *const *groups;  /* groups to follow; the server grants a subset */
	size_t n_groups;
	int connect_timeout_ms;     /* 5000: per connection attempt, until welcome */
	int backoff_min_ms;         /* 100: first retry delay; doubles, with jitter */
	int backoff_max_ms;         /* 5000: the delay's ceiling */
	int batch_ops;              /* 100: ops per push frame (at most the server's max) */
} synclog_config;

/*
 * Sets the server to sync with (copying cfg) and drops any connection made
 * with a previous one.  Nothing is sent until synclog_run() or synclog_sync().
 * SYNCLOG_EINVAL for a missing or malformed url or token (message says
 * which), SYNCLOG_ENOMEM.
 */
int synclog_connect(synclog *sl, const synclog_config *cfg);

/*
 * Services the network for up to timeout_ms milliseconds (0: only what is
 * ready now), then returns: connects or reconnects (jittered backoff between
 * attempts), says hello with the cursor, resends every unacknowledged op in
 * order in batches, pushes writes made since, applies backlog, snapshots and
 * live changes, handles acks (calling the callbacks).  Losing the connection
 * is not an error here: it is reported as SYNCLOG_EV_DISCONNECTED and retried.
 * Returns SYNCLOG_OK; SYNCLOG_EAUTH when the server refused the token (no
 * more retries until the next synclog_connect); SYNCLOG_EDB / SYNCLOG_ENOMEM
 * on a local failure; SYNCLOG_EMISUSE without synclog_connect or when
 * re-entered.
 */
int synclog_run(synclog *sl, int timeout_ms);

/*
 * Connects afresh (a connection already open is closed first: only a new
 * welcome tells the server's cursor of this moment), pushes every
 * unacknowledged op, waits for every ack, and pulls until confirmed state
 * is at least at the server's cursor of the moment it said welcome and this
 * client's acked ops have come back as changes (an op of a group this
 * client does not follow never comes back: that wait ends 2 s after the
 * last ack); then returns SYNCLOG_OK, staying connected (synclog_disconnect()
 * ends it; synclog_run() keeps it).  Rejections are reported through the reject callback and are not
 * an error of the sync.  SYNCLOG_ENET when the server cannot be reached or
 * the connection is lost (one attempt, within cfg.connect_timeout_ms);
 * SYNCLOG_EAUTH for a refused token; SYNCLOG_ETIMEOUT when timeout_ms passed
 * first; SYNCLOG_EMISUSE without synclog_connect.  On failure, whatever was
 * applied stays applied and unacknowledged ops stay in the outbox.
 */
int synclog_sync(synclog *sl, int timeout_ms);

/* Closes the connection, if any (the next synclog_run reconnects).  Cannot fail. */
void synclog_disconnect(synclog *sl);

/* Non-zero while connected and welcomed. */
int synclog_connected(synclog *sl);

/*
 * Makes a synclog_run() waiting on another thread return to its loop at once
 * (to notice a stop flag the app set, say).  synclog_put and
 * synclog_delete call it themselves, so a write made on another thread is
 * pushed at once.  Safe from any thread; takes no lock.
 */
void synclog_wakeup(synclog *sl);

#ifdef __cplusplus
}
#endif

#endif /* SYNCLOG_H */

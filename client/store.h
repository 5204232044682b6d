/*
 * client/store.h: libsynclog's durable local store, one SQLite file in WAL
 * mode (synchronous=NORMAL) holding the app's tables, the confirmed state,
 * the outbox and the metadata (client_id, cursor, HLC floor).  No network.
 *
 * Words, as in DESIGN.md: confirmed state is what the server said, with
 * field clocks (_synclog_confirmed); pending ops are this client's ops in the
 * outbox (_synclog_outbox), acked or not, until their change arrives; the
 * visible row, written into the app's table, is sl_merge_visible over the
 * two.  Every function that changes anything does it in ONE SQLite
 * transaction, so a process killed at any point leaves the file either
 * before or after the call, never between.
 *
 * Internal tables: _synclog_meta (key, value: client_id, cursor, hlc,
 * tables, welcomed, outbox_seq), _synclog_confirmed (WITHOUT ROWID, keyed by
 * table and row), _synclog_outbox (keyed by seq alone; the store finds ops
 * by id and by row through an index it keeps in memory, rebuilt when another
 * connection changes the file), _synclog_snapshot (rows of a snapshot being
 * received, until its last frame).  Files of the first layout are converted
 * when opened.
 *
 * Threads: an sl_store is one connection; the caller serializes calls on it.
 * Errors: every function returns an SL_* status (status.h); on failure
 * nothing changed, in the file or in memory, and sl_store_errmsg() says why
 * until the next call.  JSON arguments are text, borrowed, never kept.
 */
#ifndef SL_STORE_H
#define SL_STORE_H

#include <stdint.h>

#include "status.h"

#define SL_UUID_LEN 36 /* characters, without the NUL */

typedef struct sl_store sl_store;

/*
 * Opens or creates the SQLite file at path, sets WAL mode and
 * synchronous=NORMAL, creates the internal tables when absent and picks the
 * client_id (a random UUID v4) the first time.  SL_OK and *out; SL_EDB (the
 * file cannot be opened, is not SQLite, ...) or SL_ENOMEM with *out NULL.
 * The store is freed with sl_store_close.
 */
int sl_store_open(const char *path, sl_store **out);

/* Closes the file and frees store.  Accepts NULL.  Cannot fail. */
void sl_store_close(sl_store *store);

/* The text of the last error, or "" after success.  Owned by store. */
const char *sl_store_errmsg(const sl_store *store);

/* This client's id (a UUID, stable across opens).  Owned by store. */
const char *sl_store_client_id(const sl_store *store);

/* The cursor: the highest seq whose effects confirmed state holds (0: none). */
uint64_t sl_store_cursor(const sl_store *store);

/* The HLC floor: the greatest clock this client has used or seen. */
uint64_t sl_store_hlc(const sl_store *store);

/*
 * Creates each app table of welcome_tables_json ({"issues": {"pk": "id",
 * "group": "team", "columns": {"id": "text", ...}}, ...}, welcome.tables)
 * that does not exist yet: integer types → INTEGER, real/double/numeric →
 * REAL, boolean → INTEGER, else TEXT, the pk column PRIMARY KEY.  A table
 * that exists and that this store does not know yet (the app created it)
 * must have every column named (it may have more); a table it already knows
 * gains the columns it lacks (ALTER TABLE ADD COLUMN), as the server's
 * tables grow.  The description is stored, so a later open knows the
 * tables.  A provisional table (see sl_store_put) the description names
 * is rebuilt: dropped, created from the description, and every visible row
 * of it recomputed from confirmed state and the outbox, whose ops stay as
 * they are (a column the server lacks is left out of the visible row; the
 * server will refuse the op).  Provisional tables it does not name stay
 * provisional.  From then on the store is "welcomed" (kept in the file).
 * SL_EINVAL for a malformed description, a name of ours (_synclog...) or
 * SQLite's, or an app's table without a named column; then nothing changed.
 */
int sl_store_ensure_tables(sl_store *store, const char *welcome_tables_json);

/*
 * A local write: fields_json is an object of column → value (the pk column
 * may be left out; it is always the row).  In one transaction: a new op id
 * and clock, the op appended to the outbox, the visible row recomputed and
 * written.  op_id_out (may be NULL) gets the op's id.
 *
 * Before any welcome (sl_store_ensure_tables never called), a table the
 * store does not know is created on the way as a provisional table: "id"
 * TEXT PRIMARY KEY plus one untyped column per field written, more columns
 * added (ALTER TABLE ADD COLUMN) as later writes name new fields, recorded
 * as {"pk": "id", "provisional": true, "columns": {...}} in the stored
 * description.  Refused then (SL_EINVAL): a name of ours or SQLite's, a
 * table that exists and is not the store's (the app's), an empty field name
 * or one differing from a column only in case.
 *
 * SL_EINVAL for an unknown table after a welcome (also a provisional table
 * the welcome did not name: the server does not track it), an unknown
 * column of a table from welcome.tables, an empty row, a table or row that
 * is not valid UTF-8, fields that are not an object.
 */
int sl_store_put(sl_store *store, const char *table, const char *row, const char *fields_json,
                 char op_id_out[SL_UUID_LEN + 1]);

/* As sl_store_put, for a delete of the row. */
int sl_store_delete(sl_store *store, const char *table, const char *row,
                    char op_id_out[SL_UUID_LEN + 1]);

/*
 * A `changes` frame (PROTOCOL.md), text: in one transaction, each change with
 * seq above the cursor is applied, in seq order, to confirmed state as the
 * server decided it (its fields set with its clock; a delete makes a
 * tombstone), the op it confirms leaves the outbox, the cursor moves to the
 * frame's cursor and every affected visible row is recomputed.  The clock
 * observes every change's hlc.  SL_EINVAL for a malformed frame.
 */
int sl_store_apply_changes(sl_store *store, const char *changes_frame_json);

/*
 * Called by sl_store_ack once per rejected op, after the commit, with the
 * op's id, table, row and the server's code and message (all borrowed, valid
 * during the call; message may be "").
 */
typedef void (*sl_store_reject_fn)(void *ctx, const char *op_id, const char *table,
                                   const char *row, const char *code, const char *message);

/*
 * An `ack` frame, text: acked ops are marked so (they stay pending until
 * their change arrives, but are no longer listed by sl_store_pending);
 * rejected ops leave the outbox and their rows are recomputed, in one
 * transaction; then on_reject (may be NULL) is called for each rejected op
 * that was in the outbox.  Ids not in the outbox are ignored.  SL_EINVAL for
 * a malformed frame.
 */
int sl_store_ack(sl_store *store, const char *ack_json, sl_store_reject_fn on_reject, void *ctx);

/*
 * A snapshot arrives in frames.  sl_store_snapshot_begin starts one for the
 * welcomed groups (groups_json: a JSON array of group values as text, or
 * NULL for every group), forgetting any snapshot not finished.
 * sl_store_snapshot_frame takes each `snapshot` frame; rows are kept aside
 * until the frame with done true, which, in one transaction, replaces the
 * confirmed state of those groups (and every tombstone) with the rows, sets
 * the cursor to the frame's and recomputes every visible row of the known
 * tables: pending ops stay, rebased on top.  SL_EINVAL for a malformed frame
 * or a frame with no begin.
 */
int sl_store_snapshot_begin(sl_store *store, const char *groups_json);
int sl_store_snapshot_frame(sl_store *store, const char *snapshot_frame_json);

/* One pending op, as sl_store_pending lists it.  Every pointer is borrowed. */
typedef struct sl_store_op {
	int64_t seq;          /* outbox order */
	const char *op_id;
	const char *table;
	const char *row;
	const char *kind;     /* "upsert" or "delete" */
	const char *fields;   /* JSON object text; "{}" for a delete */
	const char *hlc;      /* 16 hex digits */
} sl_store_op;

/* Returns non-zero to stop the listing. */
typedef int (*sl_store_op_fn)(void *ctx, const sl_store_op *op);

/*
 * Calls fn for each unacked op in outbox order (what to resend, same ids).
 * SL_OK (also when fn stopped it) or SL_EDB.
 */
int sl_store_pending(sl_store *store, sl_store_op_fn fn, void *ctx);

/* As sl_store_pending, for the unacked ops whose outbox seq is above after_seq. */
int sl_store_pending_after(sl_store *store, int64_t after_seq, sl_store_op_fn fn, void *ctx);

/* The number of acked ops still in the outbox (their change not arrived yet). */
int sl_store_acked_count(sl_store *store, int64_t *n);

/* The SQLite connection, for reads (synclog_db).  Owned by store. */
struct sqlite3 *sl_store_db(sl_store *store);

#endif /* SL_STORE_H */

/*
 * client/merge.h: the local model's merge, the client's copy of the conflict
 * rule of DESIGN.md ("Conflict resolution") as pg_ext/merge.c applies it.
 *
 * Words, as in DESIGN.md: a row's confirmed state is what the server said
 * (through a snapshot or changes), with the clock that last won each field;
 * pending ops are the client's own ops not yet confirmed, in outbox order;
 * the visible row is the merge of the two, which predicts the server's
 * answer.  A clock is an (hlc, client_id) pair, ordered by hlc and then by
 * client_id in byte order; a clocks object maps a column to
 * ["<16 hex digits>", "<client_id>"], as the server's snapshots carry it.
 *
 * The rule: an upsert sets each field whose clock it beats (a field with no
 * clock, or a malformed one, is beaten by any op), and sets every field of a
 * row that does not exist yet; a field it loses is left alone.  A delete is
 * absorbing: the row stays deleted, and every later op on it is refused by
 * the server (row_deleted), so it changes nothing here.
 *
 * Not modelled yet: group_immutable and the other refusals that need the
 * table's schema (unknown_column, constraint_violation); the server reports
 * those and the client drops the op then.
 *
 * jansson references: every json_t an sl_row holds is owned by that sl_row;
 * every json_t argument is borrowed; nothing here steals a reference.  Values
 * are deep-copied in, so the caller may change or free what it passed.  None
 * of these functions is thread-safe on the same sl_row.
 */
#ifndef SL_MERGE_H
#define SL_MERGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "status.h"

/*
 * One row's state: confirmed state, or a computed visible row.  fields NULL
 * means the row is unknown, or a tombstone when deleted is set (a tombstone
 * made here has no fields and empty clocks).  A row is visible when fields
 * is non-NULL and deleted is false.
 */
typedef struct sl_row {
	json_t *fields; /* owned; object column → value, or NULL */
	json_t *clocks; /* owned; object column → [hlc, client_id]; never NULL once initialised */
	bool deleted;   /* a tombstone: absorbing */
} sl_row;

typedef enum sl_op_kind { SL_OP_UPSERT, SL_OP_DELETE } sl_op_kind;

/* One pending op, as the outbox holds it.  Every pointer is borrowed. */
typedef struct sl_pending_op {
	sl_op_kind kind;
	const json_t *fields;  /* object, or NULL for none; ignored for a delete */
	const char *hlc;       /* 16 lowercase hex digits */
	const char *client_id; /* 1-64 bytes */
} sl_pending_op;

/* What a pending op does to the visible row, as the server will decide it. */
typedef enum sl_merge_outcome {
	SL_MERGE_APPLIED,  /* the op applies (an upsert may still lose every field) */
	SL_MERGE_ABSORBED  /* the row is deleted before it: the server will refuse it row_deleted */
} sl_merge_outcome;

/*
 * Orders two clocks: by hlc, then by client_id in byte order.  <0, 0 or >0
 * like strcmp.  Cannot fail.
 */
int sl_clock_cmp(uint64_t h1, const char *c1, uint64_t h2, const char *c2);

/*
 * Initialises row as unknown (no fields, no clocks, not deleted).  SL_OK, or
 * SL_ENOMEM with row's fields NULL (sl_row_clear is still safe).
 */
int sl_row_init(sl_row *row);

/* Releases what row holds and leaves it zeroed.  Accepts NULL. */
void sl_row_clear(sl_row *row);

/*
 * Initialises row from one element of a snapshot's rows: {"fields": {...},
 * "clocks": {...}} (other keys are ignored; clocks may be absent).  row need
 * not be initialised and is overwritten without being released.  SL_EINVAL
 * when fields is not an object or clocks is present and not an object,
 * SL_ENOMEM; on failure row is as sl_row_init leaves it (or zeroed).
 */
int sl_row_from_snapshot(sl_row *row, const json_t *snapshot_row);

/*
 * Computes the visible row from confirmed state and the row's pending ops in
 * outbox order.  visible need not be initialised and is overwritten without
 * being released; the caller releases it with sl_row_clear.  Its clocks are
 * the winning clocks, pending ops' included.  outcomes, when not NULL, gets
 * n_ops entries.  Returns SL_OK; SL_EINVAL when an op has a bad hlc, a bad
 * client_id, a bad kind or fields that are not an object; SL_ENOMEM.  On
 * failure visible is zeroed and outcomes undefined.
 */
int sl_merge_visible(const sl_row *confirmed, const sl_pending_op *ops, size_t n_ops,
                     sl_row *visible, sl_merge_outcome *outcomes);

/*
 * Applies one entry of a `changes` frame (PROTOCOL.md: {seq, op_id,
 * client_id, table, row, group, kind, fields, hlc}; only kind, fields, hlc
 * and client_id are read, and the caller has matched table and row) to the
 * row's confirmed state.  An upsert sets each field whose confirmed clock it
 * beats; a delete makes the row a tombstone (no field values, no clocks);
 * nothing changes a tombstone.
 * So applying a change twice, or a change older than what confirmed holds,
 * changes nothing, and any order of application converges.  *changed (when
 * not NULL) says whether confirmed changed.  Returns SL_OK; SL_EINVAL for a
 * malformed change; SL_ENOMEM.  On failure confirmed is as it was.
 */
int sl_apply_change(sl_row *confirmed, const json_t *change, bool *changed);

#endif /* SL_MERGE_H */

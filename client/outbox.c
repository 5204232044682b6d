/*
 * client/outbox.c: the outbox side of the local store (store.h): local
 * writes (put, delete) that append an op and recompute the visible row in one
 * transaction (before any welcome, into a provisional table made on the
 * way: see sls_provisional_ensure in store.c), acks (acked ops stop being resent; rejected ops leave the
 * outbox and their rows roll back), the list of ops to resend, and the
 * outbox index (store_int.h): op id -> op and row -> its pending ops, in
 * memory, rebuilt from the file by sls_obx_load and changed beside every
 * insert into and delete from _synclog_outbox.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sqlite3.h>

#include "hlc.h"
#include "merge.h"
#include "store.h"
#include "store_int.h"

/* ---------------------------------------------------------------- the outbox index */

/* The key of a row in obx_rows: table, NUL, row.  Returns its length; *buf malloc'd or NULL. */
static size_t
row_key(const char *table, const char *row, char *stack, size_t stack_size, char **buf)
{
	size_t lt = strlen(table), lr = strlen(row), n = lt + 1 + lr;
	char *k = stack;

	*buf = NULL;
	if (n > stack_size) {
		if ((k = *buf = malloc(n)) == NULL)
			return 0;
	}
	memcpy(k, table, lt + 1);
	memcpy(k + lt + 1, row, lr);
	return n;
}

static void
obrow_free(void *v)
{
	sls_obrow *r = v;

	if (r == NULL)
		return;
	free(r->seqs); /* table and row are in r's allocation */
	free(r);
}

void
sls_obx_free(sl_store *s)
{
	sls_hmap_free(&s->obx_ops, free);
	sls_hmap_free(&s->obx_rows, obrow_free);
	s->obx_ok = false;
}

/* The pending ops of (table, row) in the index, or NULL for none. */
const sls_obrow *
sls_obx_row(const sl_store *s, const char *table, const char *row)
{
	char stack[256], *buf;
	size_t n;
	const sls_obrow *r;

	if (s->obx_rows.n == 0)
		return NULL; /* an empty outbox: no key to build */
	n = row_key(table, row, stack, sizeof(stack), &buf);

	if (n == 0)
		return NULL; /* out of memory: callers treat it as no pending op... */
	r = sls_hmap_get(&s->obx_rows, buf ? buf : stack, n, sls_hash(buf ? buf : stack, n));
	free(buf);
	return r;
}

/* The op op_id in the index, or NULL. */
static const sls_obop *
obx_op(const sl_store *s, const char *op_id)
{
	size_t n;

	if (s->obx_ops.n == 0)
		return NULL; /* an empty outbox: nothing to hash */
	n = strlen(op_id);

	return sls_hmap_get(&s->obx_ops, op_id, n, sls_hash(op_id, n));
}

/* Adds an op (seq above every seq of its row) to the index.  SL_OK or SL_ENOMEM. */
static int
obx_add(sl_store *s, int64_t seq, const char *op_id, const char *table, const char *row, bool is_delete)
{
	char stack[256], *buf;
	size_t n = row_key(table, row, stack, sizeof(stack), &buf), idn = strlen(op_id);
	const char *key = buf ? buf : stack;
	uint64_t hash = sls_hash(key, n);
	sls_obrow *r;
	sls_obop *op;
	int rc = SL_ENOMEM;

	if (n == 0)
		return SL_ENOMEM;
	if ((r = sls_hmap_get(&s->obx_rows, key, n, hash)) == NULL) {
		/* One allocation: the entry, then table NUL row NUL (the key, NUL-ended). */
		if ((r = calloc(1, sizeof(*r) + n + 1)) == NULL)
			goto out;
		r->table = (char *) (r + 1);
		memcpy(r->table, key, n);
		r->row = r->table + strlen(table) + 1;
		if (sls_hmap_put(&s->obx_rows, key, n, hash, r) != SL_OK) {
			obrow_free(r);
			goto out;
		}
	}
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 2;
		int64_t *a = realloc(r->seqs, cap * sizeof(*a));

		if (a == NULL)
			goto out;
		r->seqs = a;
		r->cap = cap;
	}
	if ((op = malloc(sizeof(*op))) == NULL)
		goto out;
	op->seq = seq;
	op->row = r;
	op->is_delete = is_delete;
	if (sls_hmap_put(&s->obx_ops, op_id, idn, sls_hash(op_id, idn), op) != SL_OK) {
		free(op);
		goto out;
	}
	r->seqs[r->n++] = seq;
	if (is_delete)
		r->n_deletes++;
	if (seq > s->last_seq)
		s->last_seq = seq;
	rc = SL_OK;
out:
	/* A row entry left with no op on failure is harmless: it lists none. */
	free(buf);
	return rc;
}

/* Removes op (found by obx_op) from the index; op is freed. */
static void
obx_remove(sl_store *s, const char *op_id)
{
	size_t idn = strlen(op_id);
	sls_obop *op = sls_hmap_del(&s->obx_ops, op_id, idn, sls_hash(op_id, idn));
	sls_obrow *r;

	if (op == NULL)
		return;
	r = op->row;
	for (size_t i = 0; i < r->n; i++) {
		if (r->seqs[i] == op->seq) {
			memmove(r->seqs + i, r->seqs + i + 1, (r->n - i - 1) * sizeof(*r->seqs));
			r->n--;
			break;
		}
	}
	if (op->is_delete)
		r->n_deletes--;
	if (r->n == 0) {
		char stack[256], *buf;
		size_t n = row_key(r->table, r->row, stack, sizeof(stack), &buf);

		if (n > 0) {
			const char *key = buf ? buf : stack;

			obrow_free(sls_hmap_del(&s->obx_rows, key, n, sls_hash(key, n)));
		}
		free(buf);
	}
	free(op);
}

/* Rebuilds the index from _synclog_outbox.  SL_OK, SL_EDB, SL_ENOMEM (then obx_ok stays false). */
int
sls_obx_load(sl_store *s)
{
	sqlite3_stmt *st;
	int rc = SL_OK, src;

	sls_obx_free(s);
	if ((st = sls_prep_const(s, "SELECT seq, op_id, tbl, row, kind FROM _synclog_outbox ORDER BY seq")) == NULL)
		return SL_EDB;
	while (rc == SL_OK && (src = sqlite3_step(st)) == SQLITE_ROW) {
		rc = obx_add(s, sqlite3_column_int64(st, 0), (const char *) sqlite3_column_text(st, 1),
		             (const char *) sqlite3_column_text(st, 2), (const char *) sqlite3_column_text(st, 3),
		             strcmp((const char *) sqlite3_column_text(st, 4), "delete") == 0);
		if (rc != SL_OK)
			rc = sls_seterr(s, rc, "out of memory");
	}
	if (rc == SL_OK && src != SQLITE_DONE)
		rc = sls_dberr(s, "read the outbox");
	sls_release(s, st);
	if (rc != SL_OK) {
		sls_obx_free(s);
		return rc;
	}
	s->obx_ok = true;
	return SL_OK;
}

/* ---------------------------------------------------------------- local writes */

/* sl_store_put and sl_store_delete: kind "upsert" (with fields) or "delete". */
static int
local_op(sl_store *s, const char *table, const char *row, bool is_delete, const char *fields_json,
         char op_id_out[SL_UUID_LEN + 1])
{
	json_t *def, *fields = NULL;
	const json_t *cols;
	const char *col, *pk;
	json_t *val;
	char op_id[SL_UUID_LEN + 1], hlc_text[SL_HLC_TEXT_LEN + 1], *ftext = NULL; /* owned, or NULL */
	sqlite3_stmt *st;
	uint64_t h;
	saved sv;
	bool provisional, pk_given = false, use_flat = false;
	sls_flat flat; /* the fields, when use_flat */
	int64_t seq;
	int rc;

	if (table == NULL)
		return sls_seterr(s, SL_EINVAL, "no table");
	/* Both travel as JSON strings in push frames (net.c copies their bytes):
	 * one not UTF-8 would make every frame carrying the op a bad_frame. */
	if (!sls_utf8_ok(table))
		return sls_seterr(s, SL_EINVAL, "the table name is not valid UTF-8");
	if (row != NULL && !sls_utf8_ok(row))
		return sls_seterr(s, SL_EINVAL, "the row id is not valid UTF-8");
	def = sls_table_def(s, table);
	if (def == NULL && s->welcomed)
		return sls_seterr(s, SL_EINVAL, "unknown table \"%s\": the server does not track it", table);
	if (def == NULL && !sls_table_name_ok(table))
		return sls_seterr(s, SL_EINVAL, "table name \"%s\" is reserved (_synclog..., sqlite_...)", table);
	provisional = def == NULL || sls_def_provisional(def);
	if (provisional && s->welcomed)
		return sls_seterr(s, SL_EINVAL,
		                  "table \"%s\" is provisional and the server does not track it", table);
	if (row == NULL || row[0] == '\0')
		return sls_seterr(s, SL_EINVAL, "empty row id");
	pk = def ? json_string_value(json_object_get(def, "pk")) : "id";
	cols = def ? json_object_get(def, "columns") : NULL;
	if (!is_delete && !provisional && sls_scan_flat(fields_json, &flat)) {
		/* A known table's fields of the common shape: no jansson value at all. */
		use_flat = true;
		for (size_t i = 0; i < flat.n && use_flat; i++) {
			if (strcmp(flat.name[i], pk) == 0) {
				use_flat = false; /* the pk is dropped from the op's text: jansson's path */
				sls_flat_free(&flat);
			} else if (json_object_get(cols, flat.name[i]) == NULL) {
				rc = sls_seterr(s, SL_EINVAL, "unknown column \"%s\" of table \"%s\"", flat.name[i], table);
				sls_flat_free(&flat);
				return rc;
			}
		}
	}
	if (!is_delete && !use_flat) {
		/* The scanner reads the common shape; jansson judges the rest. */
		if ((fields = sls_scan_fields(fields_json)) == NULL)
			fields = json_loads(fields_json ? fields_json : "", 0, NULL);
		if (!json_is_object(fields)) {
			json_decref(fields);
			return sls_seterr(s, SL_EINVAL, "fields are not a JSON object");
		}
		pk_given = json_object_del(fields, pk) == 0; /* the row is the pk */
		json_object_foreach(fields, col, val) {
			if (!provisional && json_object_get(cols, col) == NULL) {
				rc = sls_seterr(s, SL_EINVAL, "unknown column \"%s\" of table \"%s\"", col, table);
				json_decref(fields);
				return rc;
			}
		}
	}
	/* The op's fields as written (numbers exactly as given), unless the pk had to go. */
	if (pk_given && (ftext = json_dumps(fields, JSON_COMPACT)) == NULL) {
		json_decref(fields);
		return sls_seterr(s, SL_ENOMEM, "out of memory");
	}
	if ((rc = sls_tx_begin(s, &sv)) != SL_OK) {
		json_decref(fields);
		free(ftext);
		if (use_flat)
			sls_flat_free(&flat);
		return rc;
	}
	/* Before any welcome, an unknown table is created and grows with its fields. */
	if (provisional && (rc = sls_provisional_ensure(s, table, fields)) != SL_OK)
		goto done;
	if ((rc = sls_new_uuid(s, op_id)) != SL_OK)
		goto done;
	if ((rc = sl_hlc_now(&s->clock, sls_wall_ms(), &h)) != SL_OK) {
		rc = sls_seterr(s, rc, "the clock cannot advance");
		goto done;
	}
	sl_hlc_format(h, hlc_text);
	st = sls_prep_const(s, "INSERT INTO _synclog_outbox (seq, op_id, tbl, row, kind, fields, hlc)"
	             " VALUES (?, ?, ?, ?, ?, ?, ?)");
	if (st == NULL) {
		rc = SL_EDB;
		goto done;
	}
	seq = s->last_seq + 1; /* never reused while the store is open (net.c sends by seq) */
	sqlite3_bind_int64(st, 1, seq);
	sqlite3_bind_text(st, 2, op_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, table, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, row, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, is_delete ? "delete" : "upsert", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, ftext ? ftext : is_delete ? "{}" : fields_json, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 7, hlc_text, -1, SQLITE_STATIC);
	if ((rc = sls_step_done(s, st, "append to the outbox")) != SL_OK)
		goto done;
	if ((rc = obx_add(s, seq, op_id, table, row, is_delete)) != SL_OK) {
		rc = sls_seterr(s, rc, "out of memory");
		goto done;
	}
	/*
	 * The clock's floor is this op's hlc, now in the outbox (see sls_reload).
	 * The visible row changes by this op alone: it is newer than every
	 * pending op (our clock), so only confirmed clocks can beat it.
	 */
	if (use_flat)
		rc = sls_visible_local_flat(s, table, row, &flat, h);
	else
		rc = sls_visible_local(s, table, row, is_delete, fields, h);
done:
	if (use_flat)
		sls_flat_free(&flat);
	json_decref(fields);
	free(ftext);
	rc = sls_tx_end(s, &sv, rc);
	if (rc == SL_OK && op_id_out != NULL)
		memcpy(op_id_out, op_id, sizeof(op_id));
	return rc;
}

int
sl_store_put(sl_store *s, const char *table, const char *row, const char *fields_json,
             char op_id_out[SL_UUID_LEN + 1])
{
	return local_op(s, table, row, false, fields_json, op_id_out);
}

int
sl_store_delete(sl_store *s, const char *table, const char *row, char op_id_out[SL_UUID_LEN + 1])
{
	return local_op(s, table, row, true, NULL, op_id_out);
}

/* Removes op_id from the outbox and its index (nothing when absent).  SL_OK or SL_EDB. */
int
sls_outbox_remove(sl_store *s, const char *op_id)
{
	const sls_obop *op = obx_op(s, op_id);
	sqlite3_stmt *st;
	int rc;

	if (op == NULL)
		return SL_OK;
	if ((st = sls_prep_const(s, "DELETE FROM _synclog_outbox WHERE seq = ?")) == NULL)
		return SL_EDB;
	sqlite3_bind_int64(st, 1, op->seq);
	if ((rc = sls_step_done(s, st, "remove from the outbox")) == SL_OK)
		obx_remove(s, op_id);
	return rc;
}

/* ---------------------------------------------------------------- acks */

int
sl_store_ack(sl_store *s, const char *ack_json, sl_store_reject_fn on_reject, void *ctx)
{
	json_t *frame = json_loads(ack_json ? ack_json : "", 0, NULL);
	json_t *acked = json_object_get(frame, "acked"), *rejected = json_object_get(frame, "rejected");
	json_t *done_list = json_array(), *e;
	sqlite3_stmt *st;
	size_t i;
	saved sv;
	int rc;

	if (done_list == NULL || !json_is_object(frame) || (acked && !json_is_array(acked)) ||
	    (rejected && !json_is_array(rejected))) {
		json_decref(frame);
		json_decref(done_list);
		return sls_seterr(s, done_list ? SL_EINVAL : SL_ENOMEM, "malformed ack frame");
	}
	if ((rc = sls_tx_begin(s, &sv)) != SL_OK)
		goto out;
	json_array_foreach(acked, i, e) {
		const sls_obop *op;

		if (!json_is_string(e) || (op = obx_op(s, json_string_value(e))) == NULL)
			continue; /* not ours, or already gone */
		if ((st = sls_prep_const(s, "UPDATE _synclog_outbox SET acked = 1 WHERE seq = ?")) == NULL) {
			rc = SL_EDB;
			goto done;
		}
		sqlite3_bind_int64(st, 1, op->seq);
		if ((rc = sls_step_done(s, st, "mark an op acked")) != SL_OK)
			goto done;
	}
	json_array_foreach(rejected, i, e) {
		const json_t *id = json_object_get(e, "id");
		const json_t *code = json_object_get(e, "code"), *msg = json_object_get(e, "message");
		const sls_obop *op;
		char *table = NULL, *row = NULL;

		if (!json_is_string(id) || (op = obx_op(s, json_string_value(id))) == NULL)
			continue; /* not ours, or already gone */
		table = strdup(op->row->table);
		row = strdup(op->row->row);
		if (table == NULL || row == NULL ||
		    json_array_append_new(done_list,
		                          json_pack("{s:s, s:s, s:s, s:s, s:s}", "id", json_string_value(id),
		                                    "table", table, "row", row, "code",
		                                    json_is_string(code) ? json_string_value(code) : "",
		                                    "message",
		                                    json_is_string(msg) ? json_string_value(msg) : "")) != 0)
			rc = sls_seterr(s, SL_ENOMEM, "out of memory");
		if (rc == SL_OK && (rc = sls_outbox_remove(s, json_string_value(id))) == SL_OK)
			rc = sls_recompute(s, table, row);
		free(table);
		free(row);
		if (rc != SL_OK)
			goto done;
	}
	sls_observe_text(s, json_string_value(json_object_get(frame, "hlc")));
	if ((rc = sls_save_outbox_seq(s)) == SL_OK)
		rc = sls_save_clock(s);
done:
	rc = sls_tx_end(s, &sv, rc);
	if (rc == SL_OK && on_reject != NULL) {
		json_array_foreach(done_list, i, e) {
			on_reject(ctx, json_string_value(json_object_get(e, "id")),
			          json_string_value(json_object_get(e, "table")),
			          json_string_value(json_object_get(e, "row")),
			          json_string_value(json_object_get(e, "code")),
			          json_string_value(json_object_get(e, "message")));
		}
	}
out:
	json_decref(frame);
	json_decref(done_list);
	return rc;
}

/* ---------------------------------------------------------------- pending ops */

int
sl_store_pending(sl_store *s, sl_store_op_fn fn, void *ctx)
{
	return sl_store_pending_after(s, 0, fn, ctx);
}

int
sl_store_pending_after(sl_store *s, int64_t after_seq, sl_store_op_fn fn, void *ctx)
{
	sqlite3_stmt *st = sls_prep_const(s, "SELECT seq, op_id, tbl, row, kind, fields, hlc FROM _synclog_outbox"
	                           " WHERE acked = 0 AND seq > ? ORDER BY seq");
	int rc;

	if (st == NULL)
		return SL_EDB;
	sqlite3_bind_int64(st, 1, after_seq);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		sl_store_op op = {
			.seq = sqlite3_column_int64(st, 0),
			.op_id = (const char *) sqlite3_column_text(st, 1),
			.table = (const char *) sqlite3_column_text(st, 2),
			.row = (const char *) sqlite3_column_text(st, 3),
			.kind = (const char *) sqlite3_column_text(st, 4),
			.fields = (const char *) sqlite3_column_text(st, 5),
			.hlc = (const char *) sqlite3_column_text(st, 6),
		};

		if (fn(ctx, &op) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	sls_release(s, st);
	if (rc != SQLITE_DONE)
		return sls_dberr(s, "read the outbox");
	s->errmsg[0] = '\0';
	return SL_OK;
}

/*
 * Sets *n to the number of acked ops still in the outbox: durable on the
 * server, their change not arrived yet (net.c's sync waits for them).
 * SL_OK or SL_EDB (then *n is 0).
 */
int
sl_store_acked_count(sl_store *s, int64_t *n)
{
	sqlite3_stmt *st = sls_prep_const(s, "SELECT count(*) FROM _synclog_outbox WHERE acked = 1");
	int rc;

	*n = 0;
	if (st == NULL)
		return SL_EDB;
	if ((rc = sqlite3_step(st)) == SQLITE_ROW)
		*n = sqlite3_column_int64(st, 0);
	sls_release(s, st);
	if (rc != SQLITE_ROW)
		return sls_dberr(s, "count acked ops");
	s->errmsg[0] = '\0';
	return SL_OK;
}

/*
 * client/merge.c: the local model's merge; the rule and the ownership of
 * references are described in merge.h.
 *
 * The server's version is pg_ext/merge.c (sl_apply_op) with pg_ext/util.c
 * (sl_clock_cmp, sl_clock_get); the decisions here must stay the same as
 * those: "beats" is strictly greater, so an op never beats its own clock and
 * replaying it is a no-op.
 *
 * Failure leaves the caller's row untouched: every function builds its result
 * in fresh objects and swaps them in at the end.
 */
#include <string.h>

#include "hlc.h"
#include "merge.h"

#define SL_CLIENT_ID_MAX 64 /* bytes, PROTOCOL.md */

int
sl_clock_cmp(uint64_t h1, const char *c1, uint64_t h2, const char *c2)
{
	if (h1 != h2)
		return h1 < h2 ? -1 : 1;
	return strcmp(c1, c2); /* compares as unsigned char: byte order */
}

/* True when client_id is a non-empty string of at most 64 bytes. */
static bool
client_id_ok(const char *client_id)
{
	size_t len;

	if (client_id == NULL)
		return false;
	len = strnlen(client_id, SL_CLIENT_ID_MAX + 1);
	return len >= 1 && len <= SL_CLIENT_ID_MAX;
}

/*
 * The clock that last won col in clocks (borrowed); false when the field
 * has no clock or a malformed one (then any op beats it, as on the server).
 * *client_id is borrowed from clocks.
 */
static bool
clock_get(const json_t *clocks, const char *col, uint64_t *hlc, const char **client_id)
{
	const json_t *entry = clocks ? json_object_get(clocks, col) : NULL;
	const json_t *h, *c;

	if (!json_is_array(entry))
		return false;
	h = json_array_get(entry, 0);
	c = json_array_get(entry, 1);
	if (!json_is_string(h) || !json_is_string(c))
		return false;
	if (sl_hlc_parse_n(json_string_value(h), json_string_length(h), hlc) != SL_OK)
		return false;
	*client_id = json_string_value(c);
	return true;
}

/* Sets clocks[col] = [hlc_text, client_id] (a new array).  SL_OK or SL_ENOMEM. */
static int
clock_set(json_t *clocks, const char *col, const char *hlc_text, const char *client_id)
{
	json_t *entry = json_pack("[ss]", hlc_text, client_id);

	if (entry == NULL || json_object_set_new(clocks, col, entry) != 0)
		return SL_ENOMEM;
	return SL_OK;
}

/* Deep copies of src's objects into dst (zeroed first).  SL_OK or SL_ENOMEM. */
static int
row_copy(sl_row *dst, const sl_row *src)
{
	memset(dst, 0, sizeof(*dst));
	dst->deleted = src->deleted;
	dst->clocks = src->clocks ? json_deep_copy(src->clocks) : json_object();
	if (dst->clocks == NULL)
		goto fail;
	if (src->fields != NULL && (dst->fields = json_deep_copy(src->fields)) == NULL)
		goto fail;
	return SL_OK;
fail:
	sl_row_clear(dst);
	return SL_ENOMEM;
}

int
sl_row_init(sl_row *row)
{
	row->fields = NULL;
	row->deleted = false;
	row->clocks = json_object();
	return row->clocks ? SL_OK : SL_ENOMEM;
}

void
sl_row_clear(sl_row *row)
{
	if (row == NULL)
		return;
	json_decref(row->fields);
	json_decref(row->clocks);
	memset(row, 0, sizeof(*row));
}

int
sl_row_from_snapshot(sl_row *row, const json_t *snapshot_row)
{
	const json_t *fields = json_object_get(snapshot_row, "fields");
	const json_t *clocks = json_object_get(snapshot_row, "clocks");
	sl_row src = {(json_t *) fields, (json_t *) clocks, false};
	int rc;

	memset(row, 0, sizeof(*row));
	if (!json_is_object(fields) || (clocks != NULL && !json_is_object(clocks)))
		return SL_EINVAL;
	rc = row_copy(row, &src);
	return rc;
}

/*
 * Applies an upsert with clock (hlc, hlc_text, client_id) to row, in place:
 * every field of a row with no fields yet, else each field whose clock it
 * beats.  fields may be NULL (an op that names no field still makes the row
 * known).  Sets *changed when a field is written.  SL_OK or SL_ENOMEM (row
 * then holds part of the op: callers work on copies).
 */
static int
upsert_into(sl_row *row, const json_t *fields, uint64_t hlc, const char *hlc_text,
            const char *client_id, bool *changed)
{
	const char *col;
	json_t *value;
	bool new_row = (row->fields == NULL);

	if (new_row) {
		if ((row->fields = json_object()) == NULL)
			return SL_ENOMEM;
		*changed = true;
	}
	if (fields == NULL)
		return SL_OK;
	json_object_foreach((json_t *) fields, col, value) {
		uint64_t h;
		const char *c;
		json_t *copy;

		if (!new_row && clock_get(row->clocks, col, &h, &c) &&
		    sl_clock_cmp(hlc, client_id, h, c) <= 0)
			continue;
		if ((copy = json_deep_copy(value)) == NULL ||
		    json_object_set_new(row->fields, col, copy) != 0)
			return SL_ENOMEM;
		if (clock_set(row->clocks, col, hlc_text, client_id) != SL_OK)
			return SL_ENOMEM;
		*changed = true;
	}
	return SL_OK;
}

/*
 * Makes row a tombstone, in place: no field values and no clocks (they can
 * never matter again, and dropping them makes every order of application
 * end in the same state).  Sets *changed unless it was one.
 */
static void
delete_into(sl_row *row, bool *changed)
{
	if (row->deleted)
		return;
	row->deleted = true;
	json_decref(row->fields);
	row->fields = NULL;
	json_object_clear(row->clocks);
	*changed = true;
}

int
sl_merge_visible(const sl_row *confirmed, const sl_pending_op *ops, size_t n_ops,
                 sl_row *visible, sl_merge_outcome *outcomes)
{
	sl_row out;
	int rc;

	memset(visible, 0, sizeof(*visible));
	/* Check every op before building anything. */
	for (size_t i = 0; i < n_ops; i++) {
		uint64_t h;

		if (sl_hlc_parse(ops[i].hlc, &h) != SL_OK || !client_id_ok(ops[i].client_id))
			return SL_EINVAL;
		if (ops[i].kind != SL_OP_UPSERT && ops[i].kind != SL_OP_DELETE)
			return SL_EINVAL;
		if (ops[i].kind == SL_OP_UPSERT && ops[i].fields != NULL &&
		    !json_is_object(ops[i].fields))
			return SL_EINVAL;
	}
	if ((rc = row_copy(&out, confirmed)) != SL_OK)
		return rc;
	for (size_t i = 0; i < n_ops; i++) {
		const sl_pending_op *op = &ops[i];
		bool changed = false;
		uint64_t h;

		if (out.deleted) {
			if (outcomes)
				outcomes[i] = SL_MERGE_ABSORBED;
			continue;
		}
		if (outcomes)
			outcomes[i] = SL_MERGE_APPLIED;
		if (op->kind == SL_OP_DELETE) {
			delete_into(&out, &changed);
			continue;
		}
		(void) sl_hlc_parse(op->hlc, &h); /* checked above */
		if (upsert_into(&out, op->fields, h, op->hlc, op->client_id, &changed) != SL_OK)
			goto nomem;
	}
	*visible = out;
	return SL_OK;
nomem:
	sl_row_clear(&out);
	return SL_ENOMEM;
}

int
sl_apply_change(sl_row *confirmed, const json_t *change, bool *changed)
{
	const json_t *kind = json_object_get(change, "kind");
	const json_t *hlc_j = json_object_get(change, "hlc");
	const json_t *cid_j = json_object_get(change, "client_id");
	const json_t *fields = json_object_get(change, "fields");
	const char *kind_s, *client_id;
	bool is_delete, did = false;
	uint64_t hlc;
	sl_row out;
	int rc;

	if (changed)
		*changed = false;
	if (!json_is_object(change) || !json_is_string(kind) || !json_is_string(hlc_j) ||
	    !json_is_string(cid_j))
		return SL_EINVAL;
	kind_s = json_string_value(kind);
	if (strcmp(kind_s, "delete") == 0)
		is_delete = true;
	else if (strcmp(kind_s, "upsert") == 0)
		is_delete = false;
	else
		return SL_EINVAL;
	if (sl_hlc_parse_n(json_string_value(hlc_j), json_string_length(hlc_j), &hlc) != SL_OK)
		return SL_EINVAL;
	client_id = json_string_value(cid_j);
	if (!client_id_ok(client_id) || strlen(client_id) != json_string_length(cid_j))
		return SL_EINVAL;
	if (!is_delete && fields != NULL && !json_is_null(fields) && !json_is_object(fields))
		return SL_EINVAL;

	if (confirmed->deleted)
		return SL_OK; /* absorbing: nothing changes a tombstone */
	if ((rc = row_copy(&out, confirmed)) != SL_OK)
		return rc;
	if (is_delete)
		delete_into(&out, &did);
	else {
		/* fields null or absent: an upsert that won nothing. */
		rc = upsert_into(&out, json_is_object(fields) ? fields : NULL, hlc,
		                 json_string_value(hlc_j), client_id, &did);
		if (rc != SL_OK) {
			sl_row_clear(&out);
			return rc;
		}
	}
	if (!did) {
		sl_row_clear(&out);
		return SL_OK;
	}
	sl_row_clear(confirmed);
	*confirmed = out;
	if (changed)
		*changed = true;
	return SL_OK;
}

/*
 * client/rebase.c: confirmed state and visible rows (store.h).  recompute
 * merges a row's confirmed state with its pending ops (merge.h) and writes
 * the result into the app's table; incoming changes and snapshots change
 * confirmed state, as the server decided it, and recompute every row they
 * touch, so pending ops are rebased on top.
 *
 * sl_store_apply_changes has a fast way for the commonest row of a frame:
 * new to confirmed state, one upsert the scanner read flat, no pending op.
 * Its confirmed state and visible row are written straight from the
 * scanned values (no read, no jansson value), the same rows and texts the
 * general way writes; any other row takes the general way (frame_row).
 * tests/client/test_store.c (test_apply_mixed) holds the two to each other.
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

/* ---------------------------------------------------------------- rows */

/* Binds a JSON value to parameter i as its SQLite value; v must live until the step. */
static int
bind_json(sqlite3_stmt *st, int i, const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_STRING:
		return sqlite3_bind_text(st, i, json_string_value(v), (int) json_string_length(v),
		                         SQLITE_STATIC); /* v outlives the step */
	case JSON_INTEGER:
		return sqlite3_bind_int64(st, i, json_integer_value(v));
	case JSON_REAL:
		return sqlite3_bind_double(st, i, json_real_value(v));
	case JSON_TRUE:
		return sqlite3_bind_int(st, i, 1);
	case JSON_FALSE:
		return sqlite3_bind_int(st, i, 0);
	case JSON_NULL:
		return sqlite3_bind_null(st, i);
	default: {
		char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

		if (text == NULL)
			return SQLITE_NOMEM;
		return sqlite3_bind_text(st, i, text, -1, free);
	}
	}
}

/* Loads the confirmed state of (table, row) into r (initialised here). */
static int
confirmed_load(sl_store *s, const char *table, const char *row, sl_row *r)
{
	sqlite3_stmt *st;
	int rc;

	if (sl_row_init(r) != SL_OK)
		return sls_seterr(s, SL_ENOMEM, "out of memory");
	st = sls_prep_const(s, "SELECT fields, clocks, deleted FROM _synclog_confirmed WHERE tbl = ? AND row = ?");
	if (st == NULL)
		return SL_EDB;
	sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, row, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		const char *f = (const char *) sqlite3_column_text(st, 0);
		json_t *c = json_loads((const char *) sqlite3_column_text(st, 1), 0, NULL);

		r->deleted = sqlite3_column_int(st, 2) != 0;
		if (f != NULL && (r->fields = json_loads(f, 0, NULL)) == NULL) {
			json_decref(c);
			sls_release(s, st);
			return sls_seterr(s, SL_EDB, "corrupt confirmed state of %s/%s", table, row);
		}
		if (json_is_object(c)) {
			json_decref(r->clocks);
			r->clocks = c;
		} else
			json_decref(c);
		rc = SQLITE_DONE;
	}
	sls_release(s, st);
	return rc == SQLITE_DONE ? SL_OK : sls_dberr(s, "read confirmed state");
}

/* Writes r as the confirmed state of (table, row). */
static int
confirmed_save(sl_store *s, const char *table, const char *row, const sl_row *r)
{
	sqlite3_stmt *st = sls_prep_const(s, "INSERT OR REPLACE INTO _synclog_confirmed"
	                           " (tbl, row, fields, clocks, deleted) VALUES (?, ?, ?, ?, ?)");
	sbuf f = {0}, c = {0};
	int rc;

	if (st == NULL)
		return SL_EDB;
	if (r->fields)
		sls_sb_json(&f, r->fields);
	if (r->clocks)
		sls_sb_json(&c, r->clocks);
	else
		sls_sb_str(&c, "{}");
	if (f.oom || c.oom) {
		free(f.p);
		free(c.p);
		sls_release(s, st);
		return sls_seterr(s, SL_ENOMEM, "out of memory");
	}
	sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, row, -1, SQLITE_STATIC);
	if (r->fields)
		sqlite3_bind_text(st, 3, f.p, (int) f.len, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 3);
	sqlite3_bind_text(st, 4, c.p, (int) c.len, SQLITE_STATIC);
	sqlite3_bind_int(st, 5, r->deleted ? 1 : 0);
	rc = sls_step_done(s, st, "write confirmed state");
	free(f.p);
	free(c.p);
	return rc;
}

/* How write_fields writes: the whole row, or some fields of an existing one. */
typedef enum { WRITE_REPLACE, WRITE_UPDATE } write_mode;

/*
 * The columns a write sets: the fields that are columns of the table, but
 * the pk, with their values: jansson's (val) or the scanner's (sval).
 */
typedef struct wcols {
	const char **name;
	const json_t **val;       /* or NULL, with sval */
	const sls_scalar *sval;   /* or NULL, with val */
	size_t n;
} wcols;

/* Binds a scanned scalar to parameter i; v's text must live until the step. */
static int
bind_scalar(sqlite3_stmt *st, int i, const sls_scalar *v)
{
	switch (v->type) {
	case SLS_STRING: return sqlite3_bind_text(st, i, v->str, (int) v->len, SQLITE_STATIC);
	case SLS_INT: return sqlite3_bind_int64(st, i, v->i);
	case SLS_REAL: return sqlite3_bind_double(st, i, v->d);
	case SLS_TRUE: return sqlite3_bind_int(st, i, 1);
	case SLS_FALSE: return sqlite3_bind_int(st, i, 0);
	default: return sqlite3_bind_null(st, i);
	}
}

/*
 * The statement of a write of shape (mode, table, pk, columns), in s->wsql
 * (prepared on the first use of the shape, then found by its key): owned
 * by the store, to be reset after use, never finalized by the caller.
 * SL_OK and *out; SL_ENOMEM or SL_EDB, with the error recorded.
 */
static int
write_stmt(sl_store *s, write_mode mode, const char *table, const char *pk, const wcols *w,
           sqlite3_stmt **out)
{
	sqlite3_stmt *st = NULL;
	char stack[512], *key = stack;
	size_t klen = 1, lt = strlen(table) + 1, lp = strlen(pk) + 1, i;
	struct wsql *e;
	sbuf b = {0};

	klen += lt + lp;
	for (i = 0; i < w->n; i++)
		klen += strlen(w->name[i]) + 1;
	if (klen > sizeof(stack) && (key = malloc(klen)) == NULL)
		return sls_seterr(s, SL_ENOMEM, "out of memory");
	key[0] = mode == WRITE_REPLACE ? 'R' : 'U';
	memcpy(key + 1, table, lt);
	memcpy(key + 1 + lt, pk, lp);
	klen = 1 + lt + lp;
	for (i = 0; i < w->n; i++) {
		size_t l = strlen(w->name[i]) + 1;

		memcpy(key + klen, w->name[i], l);
		klen += l;
	}
	for (i = 0; i < SLS_WSQL; i++) {
		e = &s->wsql[i];
		if (e->key != NULL && e->klen == klen && memcmp(e->key, key, klen) == 0) {
			if (key != stack)
				free(key);
			*out = e->st;
			return SL_OK;
		}
	}
	if (mode == WRITE_REPLACE) {
		sls_sb_str(&b, "INSERT OR REPLACE INTO ");
		sls_qident(&b, table);
		sls_sb_str(&b, " (");
		sls_qident(&b, pk);
		for (i = 0; i < w->n; i++) {
			sls_sb_str(&b, ", ");
			sls_qident(&b, w->name[i]);
		}
		sls_sb_str(&b, ") VALUES (?");
		for (i = 0; i < w->n; i++)
			sls_sb_str(&b, ", ?");
		sls_sb_str(&b, ")");
	} else {
		sls_sb_str(&b, "UPDATE ");
		sls_qident(&b, table);
		sls_sb_str(&b, " SET ");
		for (i = 0; i < w->n; i++) {
			if (i > 0)
				sls_sb_str(&b, ", ");
			sls_qident(&b, w->name[i]);
			sls_sb_str(&b, " = ?");
		}
		sls_sb_str(&b, " WHERE ");
		sls_qident(&b, pk);
		sls_sb_str(&b, " = ?");
	}
	if (key == stack) { /* the entry keeps a copy */
		if ((key = malloc(klen)) != NULL)
			memcpy(key, stack, klen);
	}
	if (b.oom || key == NULL) {
		free(key);
		free(b.p);
		return sls_seterr(s, SL_ENOMEM, "out of memory");
	}
	if (sqlite3_prepare_v2(s->db, b.p, (int) b.len, &st, NULL) != SQLITE_OK) {
		sls_dberr(s, "prepare");
		sqlite3_finalize(st);
		free(key);
		free(b.p);
		return SL_EDB;
	}
	free(b.p);
	e = &s->wsql[s->wsql_next];
	free(e->key);
	sqlite3_finalize(e->st);
	e->key = key;
	e->klen = klen;
	e->st = st;
	s->wsql_next = (s->wsql_next + 1) % SLS_WSQL;
	s->wsql_made++;
	*out = st;
	return SL_OK;
}

static int write_cols_with(sl_store *s, sqlite3_stmt *st, const char *table, const char *pk,
                           const char *row, const wcols *w, write_mode mode, bool *updated);

/*
 * Writes the columns w as row of table: WRITE_REPLACE replaces the row with
 * pk + w, WRITE_UPDATE sets them on the existing row (*updated says whether
 * there was one; nothing to set is a success with *updated true).
 */
static int
write_cols(sl_store *s, const char *table, const char *pk, const char *row, const wcols *w,
           write_mode mode, bool *updated)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (updated)
		*updated = true;
	if (mode == WRITE_UPDATE && w->n == 0)
		return SL_OK;
	if ((rc = write_stmt(s, mode, table, pk, w, &st)) != SL_OK)
		return rc;
	return write_cols_with(s, st, table, pk, row, w, mode, updated);
}

/*
 * write_cols with st, the statement write_stmt gives for its shape (taken
 * by the caller, which may keep it while s->wsql_made is unchanged).
 */
static int
write_cols_with(sl_store *s, sqlite3_stmt *st, const char *table, const char *pk, const char *row,
                const wcols *w, write_mode mode, bool *updated)
{
	int i, rc = SL_OK;

	if (updated)
		*updated = true;
	/* The row is the first parameter of an INSERT, the last of an UPDATE. */
	i = 1;
	if (mode == WRITE_REPLACE)
		sqlite3_bind_text(st, i++, row, -1, SQLITE_STATIC);
	for (size_t k = 0; k < w->n; k++) {
		if ((w->sval ? bind_scalar(st, i++, &w->sval[k]) : bind_json(st, i++, w->val[k])) != SQLITE_OK) {
			rc = sls_dberr(s, "bind a value");
			sqlite3_reset(st);
			return rc;
		}
	}
	if (mode == WRITE_UPDATE)
		sqlite3_bind_text(st, i, row, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE) {
		/* An INTEGER PRIMARY KEY (a server key of an integer type) holds
		 * integers only: a row id that is not one is the caller's mistake. */
		if (sqlite3_errcode(s->db) == SQLITE_MISMATCH)
			rc = sls_seterr(s, SL_EINVAL,
			                "row id \"%s\" does not fit the primary key \"%s\" of table \"%s\" "
			                "(an integer column)", row, pk, table);
		else
			rc = sls_dberr(s, "write the visible row");
	}
	else if (updated)
		*updated = sqlite3_changes(s->db) > 0;
	sqlite3_reset(st);
	return rc;
}

/* Arrays for a wcols of up to 16 columns without allocating. */
typedef struct wcols_stack {
	const char *name[16];
	const json_t *val[16];
} wcols_stack;

/*
 * Fills w with the fields of an object that are columns of def, but the pk,
 * in the object's order; arrays from stk, or malloc'd when there are more
 * than 16 (wcols_free releases them).  SL_OK or SL_ENOMEM.
 */
static int
wcols_from_json(wcols *w, wcols_stack *stk, const char *pk, const json_t *cols, const json_t *fields)
{
	size_t size = json_object_size(fields);
	const char *col;
	json_t *val;

	w->name = stk->name;
	w->val = stk->val;
	w->sval = NULL;
	w->n = 0;
	if (size > 16) {
		w->name = malloc(size * sizeof(*w->name));
		w->val = malloc(size * sizeof(*w->val));
		if (w->name == NULL || w->val == NULL) {
			free(w->name);
			free(w->val);
			w->name = stk->name;
			w->val = stk->val;
			return SL_ENOMEM;
		}
	}
	json_object_foreach((json_t *) fields, col, val) {
		if (strcmp(col, pk) == 0 || json_object_get(cols, col) == NULL)
			continue;
		w->name[w->n] = col;
		w->val[w->n++] = val;
	}
	return SL_OK;
}

static void
wcols_free(wcols *w, wcols_stack *stk)
{
	if (w->name != stk->name)
		free(w->name);
	if (w->val != stk->val)
		free(w->val);
}

/*
 * Writes fields (an object; those that are not columns of def are left out)
 * as row of table, as write_cols does.
 */
static int
write_fields(sl_store *s, const char *table, const json_t *def, const char *row,
             const json_t *fields, write_mode mode, bool *updated)
{
	const char *pk = json_string_value(json_object_get(def, "pk"));
	wcols_stack stk;
	wcols w;
	int rc;

	if (wcols_from_json(&w, &stk, pk, json_object_get(def, "columns"), fields) != SL_OK)
		return sls_seterr(s, SL_ENOMEM, "out of memory");
	rc = write_cols(s, table, pk, row, &w, mode, updated);
	wcols_free(&w, &stk);
	return rc;
}

/* Deletes the visible row of (table, row) from the app's table. */
static int
visible_delete(sl_store *s, const char *table, const json_t *def, const char *row)
{
	sqlite3_stmt *st;
	sbuf b = {0};

	sls_sb_str(&b, "DELETE FROM ");
	sls_qident(&b, table);
	sls_sb_str(&b, " WHERE ");
	sls_qident(&b, json_string_value(json_object_get(def, "pk")));
	sls_sb_str(&b, " = ?");
	if (b.oom) {
		free(b.p);
		return sls_seterr(s, SL_ENOMEM, "out of memory");
	}
	st = sls_prep(s, b.p);
	free(b.p);
	if (st == NULL)
		return SL_EDB;
	sqlite3_bind_text(st, 1, row, -1, SQLITE_STATIC);
	return sls_step_done(s, st, "delete the visible row");
}

/* Writes the visible row v of (table, row) into the app table, or deletes it. */
static int
visible_write(sl_store *s, const char *table, const json_t *def, const char *row, const sl_row *v)
{
	if (v->fields == NULL || v->deleted)
		return visible_delete(s, table, def, row);
	return write_fields(s, table, def, row, v->fields, WRITE_REPLACE, NULL);
}

/*
 * Recomputes the visible row of (table, row) from its confirmed state conf
 * (borrowed) and the row's outbox ops, and writes it.  A table not in
 * welcome.tables has no visible rows: SL_OK.
 */
static int
recompute_with(sl_store *s, const char *table, const char *row, const sl_row *conf)
{
	json_t *def = sls_table_def(s, table);
	const sls_obrow *pr;
	sl_pending_op *ops = NULL;
	json_t **fields = NULL;
	char **hlcs = NULL;
	size_t n = 0;
	sqlite3_stmt *st = NULL;
	sl_row vis = {0};
	int rc = SL_OK;

	if (def == NULL)
		return SL_OK;
	pr = sls_obx_row(s, table, row);
	if (pr == NULL || pr->n == 0)
		return visible_write(s, table, def, row, conf); /* no pending op: confirmed state */
	ops = calloc(pr->n, sizeof(*ops));
	fields = calloc(pr->n, sizeof(*fields));
	hlcs = calloc(pr->n, sizeof(*hlcs));
	if (ops == NULL || fields == NULL || hlcs == NULL) {
		rc = sls_seterr(s, SL_ENOMEM, "out of memory");
		goto done;
	}
	if ((st = sls_prep_const(s, "SELECT kind, fields, hlc FROM _synclog_outbox WHERE seq = ?")) == NULL) {
		rc = SL_EDB;
		goto done;
	}
	for (size_t i = 0; i < pr->n; i++) {
		sqlite3_reset(st);
		sqlite3_bind_int64(st, 1, pr->seqs[i]);
		if (sqlite3_step(st) != SQLITE_ROW) {
			rc = sls_dberr(s, "read the outbox");
			goto done;
		}
		fields[n] = json_loads((const char *) sqlite3_column_text(st, 1), 0, NULL);
		hlcs[n] = strdup((const char *) sqlite3_column_text(st, 2));
		ops[n].kind = strcmp((const char *) sqlite3_column_text(st, 0), "delete") == 0
		                  ? SL_OP_DELETE : SL_OP_UPSERT;
		ops[n].fields = fields[n];
		ops[n].hlc = hlcs[n];
		ops[n].client_id = s->client_id;
		n++;
		if (hlcs[n - 1] == NULL) {
			rc = sls_seterr(s, SL_ENOMEM, "out of memory");
			goto done;
		}
	}
	if ((rc = sl_merge_visible(conf, ops, n, &vis, NULL)) != SL_OK) {
		rc = sls_seterr(s, rc, "cannot merge %s/%s (bad outbox entry?)", table, row);
		goto done;
	}
	rc = visible_write(s, table, def, row, &vis);
done:
	sls_release(s, st);
	for (size_t i = 0; i < n; i++) {
		json_decref(fields[i]);
		free(hlcs[i]);
	}
	free(ops);
	free(fields);
	free(hlcs);
	sl_row_clear(&vis);
	return rc;
}

/* Recomputes the visible row of (table, row) from the file's confirmed state and outbox. */
int
sls_recompute(sl_store *s, const char *table, const char *row)
{
	sl_row conf = {0};
	int rc;

	if (sls_table_def(s, table) == NULL)
		return SL_OK;
	if ((rc = confirmed_load(s, table, row, &conf)) == SL_OK)
		rc = recompute_with(s, table, row, &conf);
	sl_row_clear(&conf);
	return rc;
}

/*
 * The visible row after a local op, which the caller has just appended to
 * the outbox (and its index), with clock hlc, newer than every pending op of
 * the row.  So it changes the visible row by itself: a delete removes it; an
 * upsert is absorbed when the row is deleted (confirmed tombstone or a
 * pending delete), creates the row with its fields when there is none, and
 * otherwise sets each field whose confirmed clock it beats (a pending op's
 * clock never does).  The same result as sl_merge_visible over confirmed
 * state and every pending op, without reading the row's other ops.  w holds
 * the op's fields that are columns (all of them, for an upsert).
 */
static int
visible_local(sl_store *s, const char *table, const json_t *def, const char *row, bool is_delete,
              const wcols *w, uint64_t hlc)
{
	const char *pk = json_string_value(json_object_get(def, "pk"));
	json_t *clocks = NULL;
	const sls_obrow *pr;
	sqlite3_stmt *st;
	bool conf_row = false, conf_alive = false, exists, updated;
	int rc, src;

	if (is_delete)
		return visible_delete(s, table, def, row);
	pr = sls_obx_row(s, table, row);
	if (pr != NULL && pr->n_deletes > 0)
		return SL_OK; /* absorbed by a pending delete */
	st = sls_prep_const(s, "SELECT clocks, deleted, fields IS NOT NULL FROM _synclog_confirmed"
	                 " WHERE tbl = ? AND row = ?");
	if (st == NULL)
		return SL_EDB;
	sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, row, -1, SQLITE_STATIC);
	if ((src = sqlite3_step(st)) == SQLITE_ROW) {
		conf_row = true;
		if (sqlite3_column_int(st, 1) != 0) {
			sls_release(s, st);
			return SL_OK; /* absorbed by a tombstone */
		}
		conf_alive = sqlite3_column_int(st, 2) != 0;
		clocks = json_loads((const char *) sqlite3_column_text(st, 0), 0, NULL);
	}
	sls_release(s, st);
	if (src != SQLITE_ROW && src != SQLITE_DONE)
		return sls_dberr(s, "read confirmed state");
	/* The row exists when confirmed state has it or an earlier pending op made it. */
	exists = conf_alive || (pr != NULL && pr->n > 1);
	if (!exists) {
		json_decref(clocks);
		return write_cols(s, table, pk, row, w, WRITE_REPLACE, NULL);
	}
	if (conf_row && json_object_size(clocks) > 0) {
		/* Only the fields this op wins against confirmed clocks. */
		const char **name = malloc((w->n + 1) * sizeof(*name));
		const json_t **val = w->val ? malloc((w->n + 1) * sizeof(*val)) : NULL;
		sls_scalar *sval = w->sval ? malloc((w->n + 1) * sizeof(*sval)) : NULL;
		wcols win = {name, val, sval, 0};

		if (name == NULL || (w->val && val == NULL) || (w->sval && sval == NULL)) {
			free(name);
			free(val);
			free(sval);
			json_decref(clocks);
			return sls_seterr(s, SL_ENOMEM, "out of memory");
		}
		for (size_t k = 0; k < w->n; k++) {
			const json_t *c = json_object_get(clocks, w->name[k]);
			const json_t *ch = json_array_get(c, 0), *cc = json_array_get(c, 1);
			uint64_t h;

			if (json_is_string(ch) && json_is_string(cc) &&
			    sl_hlc_parse(json_string_value(ch), &h) == SL_OK &&
			    sl_clock_cmp(hlc, s->client_id, h, json_string_value(cc)) <= 0)
				continue;
			name[win.n] = w->name[k];
			if (val)
				val[win.n] = w->val[k];
			if (sval)
				sval[win.n] = w->sval[k];
			win.n++;
		}
		rc = write_cols(s, table, pk, row, &win, WRITE_UPDATE, &updated);
		free(name);
		free(val);
		free(sval);
	} else
		rc = write_cols(s, table, pk, row, w, WRITE_UPDATE, &updated);
	json_decref(clocks);
	if (rc == SL_OK && !updated)
		rc = sls_recompute(s, table, row); /* the app's table lacked the row: write it whole */
	return rc;
}

/* visible_local for an op whose fields are a jansson object (NULL for a delete). */
int
sls_visible_local(sl_store *s, const char *table, const char *row, bool is_delete,
                  const json_t *fields, uint64_t hlc)
{
	json_t *def = sls_table_def(s, table);
	wcols_stack stk;
	wcols w;
	int rc;

	if (def == NULL)
		return SL_OK;
	if (wcols_from_json(&w, &stk, json_string_value(json_object_get(def, "pk")),
	                    json_object_get(def, "columns"), fields) != SL_OK)
		return sls_seterr(s, SL_ENOMEM, "out of memory");
	rc = visible_local(s, table, def, row, is_delete, &w, hlc);
	wcols_free(&w, &stk);
	return rc;
}

/*
 * visible_local for an upsert whose fields jscan.c read (sls_scan_flat),
 * every one of them a column of table and none its pk.  The description
 * is looked up here: the transaction's begin may have reloaded it.
 */
int
sls_visible_local_flat(sl_store *s, const char *table, const char *row, const sls_flat *f,
                       uint64_t hlc)
{
	json_t *def = sls_table_def(s, table);
	wcols w = {(const char **) f->name, NULL, f->val, f->n};

	if (def == NULL)
		return SL_OK;
	return visible_local(s, table, def, row, false, &w, hlc);
}

/*
 * Recomputes every visible row of table that confirmed state or the outbox
 * knows (a rebuilt table's rows are derived data).  SL_OK, SL_EDB, SL_ENOMEM.
 */
int
sls_recompute_table(sl_store *s, const char *table)
{
	sqlite3_stmt *st = sls_prep_const(s, "SELECT row FROM _synclog_confirmed WHERE tbl = ?1"
	                               " UNION SELECT row FROM _synclog_outbox WHERE tbl = ?1");
	json_t *rows = json_array(), *e;
	size_t i;
	int rc = SL_OK, src;

	if (st == NULL || rows == NULL) {
		sls_release(s, st);
		json_decref(rows);
		return st ? sls_seterr(s, SL_ENOMEM, "out of memory") : SL_EDB;
	}
	sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
	while (rc == SL_OK && (src = sqlite3_step(st)) == SQLITE_ROW) {
		if (json_array_append_new(rows, json_string((const char *) sqlite3_column_text(st, 0))) != 0)
			rc = sls_seterr(s, SL_ENOMEM, "out of memory");
	}
	if (rc == SL_OK && src != SQLITE_DONE)
		rc = sls_dberr(s, "list the rows of a table");
	sls_release(s, st);
	json_array_foreach(rows, i, e) {
		if (rc != SL_OK)
			break;
		rc = sls_recompute(s, table, json_string_value(e));
	}
	json_decref(rows);
	return rc;
}

/* Adds (table, row) to keys, an object table → object row → true. */
int
sls_key_add(json_t *keys, const char *table, const char *row)
{
	json_t *rows = json_object_get(keys, table);

	if (rows == NULL && json_object_set_new(keys, table, rows = json_object()) != 0)
		return SL_ENOMEM;
	return json_object_set_new(rows, row, json_true()) == 0 ? SL_OK : SL_ENOMEM;
}

/* ---------------------------------------------------------------- incoming changes */

/*
 * Applies one change to r as the server decided it: its fields set with its
 * clock, or a tombstone; nothing changes a tombstone.  SL_OK or SL_ENOMEM.
 */
static int
apply_decided(sl_row *r, bool is_delete, const json_t *fields, const char *hlc, const char *cid)
{
	const char *col;
	json_t *val, *clock;

	if (r->deleted)
		return SL_OK;
	if (is_delete) {
		json_decref(r->fields);
		r->fields = NULL;
		json_object_clear(r->clocks);
		r->deleted = true;
		return SL_OK;
	}
	if (r->fields == NULL && (r->fields = json_object()) == NULL)
		return SL_ENOMEM;
	if (!json_is_object(fields) || json_object_size(fields) == 0)
		return SL_OK;
	/* Values are shared with the frame (read only); one clock entry serves every field. */
	if ((clock = json_pack("[ss]", hlc, cid)) == NULL)
		return SL_ENOMEM;
	json_object_foreach((json_t *) fields, col, val) {
		if (json_object_set(r->fields, col, val) != 0 || json_object_set(r->clocks, col, clock) != 0) {
			json_decref(clock);
			return SL_ENOMEM;
		}
	}
	json_decref(clock);
	return SL_OK;
}

/* Checks one change of a frame; fills the pieces (borrowed from change). */
static bool
change_ok(const json_t *c, uint64_t *seq, const char **table, const char **row, bool *is_delete,
          const char **hlc, uint64_t *hlc_v, const char **cid, const char **op_id)
{
	const json_t *j_seq = json_object_get(c, "seq"), *j_kind = json_object_get(c, "kind");
	const json_t *j_op = json_object_get(c, "op_id");
	const char *kind;
	uint64_t h;

	if (!json_is_object(c) || !json_is_integer(j_seq) || json_integer_value(j_seq) < 0 ||
	    !json_is_string(j_kind) || !json_is_string(json_object_get(c, "table")) ||
	    !json_is_string(json_object_get(c, "row")) ||
	    !json_is_string(json_object_get(c, "hlc")) ||
	    !json_is_string(json_object_get(c, "client_id")))
		return false;
	*seq = (uint64_t) json_integer_value(j_seq);
	*table = json_string_value(json_object_get(c, "table"));
	*row = json_string_value(json_object_get(c, "row"));
	*hlc = json_string_value(json_object_get(c, "hlc"));
	*cid = json_string_value(json_object_get(c, "client_id"));
	*op_id = json_is_string(j_op) ? json_string_value(j_op) : NULL;
	kind = json_string_value(j_kind);
	if (strcmp(kind, "delete") == 0)
		*is_delete = true;
	else if (strcmp(kind, "upsert") == 0)
		*is_delete = false;
	else
		return false;
	if (sl_hlc_parse(*hlc, &h) != SL_OK)
		return false;
	*hlc_v = h;
	return (*cid)[0] != '\0' && strlen(*cid) <= 64;
}

/*
 * One row a changes frame touches.  Rows go one of two ways: the general
 * one (confirmed state loaded once as jansson values, every change of the
 * frame applied in order, saved once, the visible row recomputed), or, for
 * a row new to confirmed state whose one change is an upsert that jscan.c
 * read flat and that has no pending op, the fast one (confirmed_insert_new,
 * then visible_write_new: no read, no jansson value).
 */
typedef struct frame_row {
	const char *table, *row; /* borrowed from the frame */
	const sls_change *first; /* its first change above the cursor */
	size_t n;                /* how many of the frame's changes above the cursor touch it */
	bool general;            /* takes the general way */
	bool loaded;             /* conf has been loaded (the general way) */
	sl_row conf;             /* its confirmed state, when loaded */
} frame_row;

/*
 * The fast way's first half, for change c of frame f (an upsert, fields
 * flat with distinct names): when confirmed state has no row (table, row),
 * inserts the one apply_decided would make of the change on an unknown row
 * (every field, each with the change's clock; not deleted), its texts
 * exactly as confirmed_save writes them, and sets *inserted.  When
 * confirmed state has the row (alive or a tombstone), writes nothing and
 * clears *inserted: the general way decides.  *stp is the statement,
 * taken on the first call (NULL) and kept for the frame's other rows: the
 * caller gives it back (sls_release).  fb and cb are scratch buffers the
 * caller frees.  SL_OK, SL_EDB, SL_ENOMEM.
 */
static int
confirmed_insert_new(sl_store *s, const sls_frame *f, const sls_change *c, sbuf *fb, sbuf *cb,
                     sqlite3_stmt **stp, bool *inserted)
{
	const char *const *name = f->fname + c->foff;
	const sls_scalar *val = f->fval + c->foff;
	sqlite3_stmt *st = *stp;
	size_t clock_len;
	int rc;

	*inserted = false;
	fb->len = cb->len = 0;
	/* fb: the clock entry, ["hlc","client_id"], then the fields text; cb: the
	 * clocks text.  The clock is 16 hex digits (its reader parsed it), which
	 * JSON writes as they are. */
	sls_sb_add(fb, "[\"", 2);
	sls_sb_add(fb, c->hlc, SL_HLC_TEXT_LEN);
	sls_sb_add(fb, "\",", 2);
	sls_sb_jstr(fb, c->client_id, strlen(c->client_id));
	sls_sb_add(fb, "]", 1);
	clock_len = fb->len;
	sls_sb_add(fb, "{", 1);
	sls_sb_add(cb, "{", 1);
	for (size_t k = 0; k < c->nf && !fb->oom; k++) {
		size_t at;

		if (k > 0) {
			sls_sb_add(fb, ",", 1);
			sls_sb_add(cb, ",", 1);
		}
		/* The name as JSON and its colon, written once, copied into cb. */
		at = fb->len;
		sls_sb_jstr(fb, name[k], strlen(name[k]));
		sls_sb_add(fb, ":", 1);
		if (fb->oom)
			break;
		sls_sb_add(cb, fb->p + at, fb->len - at);
		sls_sb_add(cb, fb->p, clock_len);
		sls_sb_scalar(fb, &val[k]);
	}
	sls_sb_add(fb, "}", 1);
	sls_sb_add(cb, "}", 1);
	if (fb->oom || cb->oom)
		return sls_seterr(s, SL_ENOMEM, "out of memory");
	if (st == NULL &&
	    (st = *stp = sls_prep_const(s, "INSERT INTO _synclog_confirmed (tbl, row, fields, clocks, deleted)"
	                                   " VALUES (?, ?, ?, ?, 0) ON CONFLICT (tbl, row) DO NOTHING")) == NULL)
		return SL_EDB;
	sqlite3_bind_text(st, 1, c->table, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, c->row, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, fb->p + clock_len, (int) (fb->len - clock_len), SQLITE_STATIC);
	sqlite3_bind_text(st, 4, cb->p, (int) cb->len, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE)
		rc = sls_dberr(s, "write confirmed state");
	else {
		*inserted = sqlite3_changes(s->db) > 0;
		rc = SL_OK;
	}
	sqlite3_reset(st);
	return rc;
}

/*
 * The last table's description, and which field names of the last change
 * were columns of it (but the pk), remembered from one change to the next:
 * a frame's changes mostly have one table and one shape.  One of these per
 * sl_store_apply_changes call; names are borrowed from the frame, def,
 * pk and cols from s->tables, which no call inside a frame replaces.
 */
typedef struct col_memo {
	const char *table;      /* NULL: no table remembered */
	json_t *def, *cols;     /* def NULL: the table is not in welcome.tables */
	const char *pk;
	const json_t *shape_def; /* NULL: no shape remembered */
	size_t n;
	const char *name[16];
	bool col[16];
	sqlite3_stmt *st;        /* the shape's write (write_stmt's, borrowed), or NULL */
	uint64_t made;           /* s->wsql_made when st was taken: st is valid while it is unchanged */
} col_memo;

/*
 * The fast way's second half: the visible row of a row confirmed_insert_new
 * inserted, which has no pending op, so is its confirmed state: written as
 * recompute_with writes it (the fields that are columns of the table, but
 * the pk, replacing the row), from the scanned values.  A table not in
 * welcome.tables has no visible rows: SL_OK.
 */
static int
visible_write_new(sl_store *s, const sls_frame *f, const sls_change *c, col_memo *memo)
{
	const char *stk_name[16], **name = stk_name, *pk;
	sls_scalar stk_val[16], *val = stk_val;
	json_t *def, *cols;
	sqlite3_stmt *st = NULL;
	bool same;
	wcols w;
	int rc;

	if (memo->table == NULL || strcmp(memo->table, c->table) != 0) {
		memo->table = c->table;
		memo->def = sls_table_def(s, c->table);
		memo->pk = json_string_value(json_object_get(memo->def, "pk"));
		memo->cols = json_object_get(memo->def, "columns");
	}
	if ((def = memo->def) == NULL)
		return SL_OK;
	pk = memo->pk;
	cols = memo->cols;
	same = memo->shape_def == def && memo->n == c->nf;
	for (size_t k = 0; k < c->nf && same; k++)
		same = strcmp(memo->name[k], f->fname[c->foff + k]) == 0;
	if (!same && c->nf <= 16) {
		memo->shape_def = def;
		memo->st = NULL;
		memo->n = c->nf;
		for (size_t k = 0; k < c->nf; k++) {
			const char *nm = f->fname[c->foff + k];

			memo->name[k] = nm;
			memo->col[k] = strcmp(nm, pk) != 0 && json_object_get(cols, nm) != NULL;
		}
		same = true;
	}
	if (c->nf > 16) {
		name = malloc(c->nf * sizeof(*name));
		val = malloc(c->nf * sizeof(*val));
		if (name == NULL || val == NULL) {
			free(name);
			free(val);
			return sls_seterr(s, SL_ENOMEM, "out of memory");
		}
	}
	w.name = name;
	w.val = NULL;
	w.sval = val;
	w.n = 0;
	for (size_t k = 0; k < c->nf; k++) {
		const char *nm = f->fname[c->foff + k];

		if (same ? !memo->col[k] : strcmp(nm, pk) == 0 || json_object_get(cols, nm) == NULL)
			continue;
		name[w.n] = nm;
		val[w.n++] = f->fval[c->foff + k];
	}
	/* The shape's statement, kept while no other shape's replaced it in s->wsql. */
	if (same && memo->st != NULL && memo->made == s->wsql_made)
		st = memo->st;
	else if ((rc = write_stmt(s, WRITE_REPLACE, c->table, pk, &w, &st)) == SL_OK && same) {
		memo->st = st;
		memo->made = s->wsql_made;
	}
	if (st != NULL)
		rc = write_cols_with(s, st, c->table, pk, c->row, &w, WRITE_REPLACE, NULL);
	if (name != stk_name) {
		free(name);
		free(val);
	}
	return rc;
}

/*
 * The hash of a row of a frame's row map: FNV-1a, as sls_hash would give
 * for the bytes table NUL row, without building them.  Cannot fail.
 */
static uint64_t
row_hash(const char *table, const char *row)
{
	uint64_t h = UINT64_C(14695981039346656037);

	for (const unsigned char *p = (const unsigned char *) table; *p; p++)
		h = (h ^ *p) * UINT64_C(1099511628211);
	h *= UINT64_C(1099511628211); /* the NUL between them */
	for (const unsigned char *p = (const unsigned char *) row; *p; p++)
		h = (h ^ *p) * UINT64_C(1099511628211);
	return h;
}

/*
 * Reads a changes frame with jansson, when jscan.c declined it: f's strings
 * are borrowed from f->json.  SL_OK, SL_EINVAL (malformed), SL_ENOMEM; f is
 * freed by the caller either way.
 */
static int
frame_from_json(sl_store *s, const char *frame_json, sls_frame *f)
{
	json_t *changes, *j_cursor, *c;
	size_t i;

	memset(f, 0, sizeof(*f));
	f->json = json_loads(frame_json ? frame_json : "", 0, NULL);
	changes = json_object_get(f->json, "changes");
	j_cursor = json_object_get(f->json, "cursor");
	if (!json_is_array(changes) || !json_is_integer(j_cursor) || json_integer_value(j_cursor) < 0)
		return sls_seterr(s, SL_EINVAL, "malformed changes frame");
	f->cursor = (uint64_t) json_integer_value(j_cursor);
	if ((f->v = calloc(json_array_size(changes) + 1, sizeof(*f->v))) == NULL)
		return sls_seterr(s, SL_ENOMEM, "out of memory");
	f->cap = json_array_size(changes) + 1;
	json_array_foreach(changes, i, c) {
		sls_change *ch = &f->v[f->n];
		const json_t *fields = json_object_get(c, "fields");

		if (!change_ok(c, &ch->seq, &ch->table, &ch->row, &ch->is_delete, &ch->hlc, &ch->hlc_v,
		               &ch->client_id, &ch->op_id))
			return sls_seterr(s, SL_EINVAL, "malformed change at index %zu", i);
		ch->fields = json_is_object(fields) ? json_incref((json_t *) fields) : NULL;
		f->n++;
	}
	return SL_OK;
}

int
sl_store_apply_changes(sl_store *s, const char *frame_json)
{
	sls_frame f;
	uint32_t *slot = NULL;       /* the row map: 1 + an index into rv, 0 for an empty slot */
	size_t mask = 0;             /* the row map's size, less one (a power of two) */
	frame_row *rv = NULL;        /* the rows, in the order first touched */
	frame_row **owner = NULL;    /* the row of each change; NULL for one at or below the cursor */
	sbuf fb = {0}, cb = {0};     /* the fast way's texts */
	sqlite3_stmt *ins = NULL;    /* the fast way's insert into confirmed state */
	col_memo memo = {0};
	size_t n_rows = 0, i;
	uint64_t last;
	saved sv;
	int rc;

	/* The scanner reads the common shape; jansson reads (and judges) the rest. */
	if (!sls_scan_changes(frame_json, &f) && (rc = frame_from_json(s, frame_json, &f)) != SL_OK) {
		sls_frame_free(&f);
		return rc;
	}
	rv = calloc(f.n + 1, sizeof(*rv));
	owner = calloc(f.n + 1, sizeof(*owner));
	if (rv == NULL || owner == NULL) {
		free(rv);
		free(owner);
		sls_frame_free(&f);
		return sls_seterr(s, SL_ENOMEM, "out of memory");
	}
	/* At most half full: f.n rows at most, in at least 2 * f.n slots. */
	for (mask = 15; mask < 2 * f.n; mask = mask * 2 + 1)
		;
	if (f.n > UINT32_MAX / 4 || (slot = calloc(mask + 1, sizeof(*slot))) == NULL) {
		free(rv);
		free(owner);
		sls_frame_free(&f);
		return sls_seterr(s, SL_ENOMEM, "out of memory");
	}
	if ((rc = sls_tx_begin(s, &sv)) != SL_OK) {
		free(slot);
		sls_frame_free(&f);
		free(rv);
		free(owner);
		return rc;
	}
	/* Each change above the cursor, in seq order: its clock observed, its row
	 * found, the op it confirms out of the outbox. */
	last = s->cursor;
	for (i = 0; i < f.n; i++) {
		const sls_change *c = &f.v[i];
		size_t k;
		frame_row *fr;

		if (c->seq <= last)
			continue; /* already applied */
		last = c->seq;
		(void) sl_hlc_observe(&s->clock, c->hlc_v, sls_wall_ms()); /* a skewed clock is only counted */
		/* The row's slot: linear probing from its hash, the strings compared in place. */
		for (k = (size_t) row_hash(c->table, c->row) & mask; slot[k] != 0; k = (k + 1) & mask) {
			fr = &rv[slot[k] - 1];
			if (strcmp(fr->row, c->row) == 0 && strcmp(fr->table, c->table) == 0)
				break;
		}
		if (slot[k] == 0) {
			fr = &rv[n_rows++];
			slot[k] = (uint32_t) n_rows;
			fr->table = c->table;
			fr->row = c->row;
			fr->first = c;
		}
		owner[i] = fr;
		fr->n++;
		if (c->op_id != NULL && (rc = sls_outbox_remove(s, c->op_id)) != SL_OK)
			goto done;
	}
	/* The fast way's confirmed state, for the rows it can take. */
	for (i = 0; i < n_rows; i++) {
		frame_row *fr = &rv[i];
		const sls_change *c = fr->first;
		const sls_obrow *pr;
		bool inserted = false;

		fr->general = true;
		if (fr->n != 1 || c->is_delete || !c->flat || !c->flat_distinct)
			continue;
		if ((pr = sls_obx_row(s, fr->table, fr->row)) != NULL && pr->n > 0)
			continue; /* pending ops to rebase */
		if ((rc = confirmed_insert_new(s, &f, c, &fb, &cb, &ins, &inserted)) != SL_OK)
			goto done;
		fr->general = !inserted;
	}
	sls_release(s, ins);
	ins = NULL;
	/* The general way: confirmed state loaded once, each change applied in order. */
	for (i = 0; i < f.n; i++) {
		const sls_change *c = &f.v[i];
		frame_row *fr = owner[i];
		json_t *fields = NULL; /* a new reference */

		if (fr == NULL || !fr->general)
			continue;
		if (!fr->loaded) {
			fr->loaded = true; /* conf is initialised even on failure */
			if ((rc = confirmed_load(s, fr->table, fr->row, &fr->conf)) != SL_OK)
				goto done;
		}
		if ((rc = sls_change_fields(&f, c, &fields)) == SL_OK)
			rc = apply_decided(&fr->conf, c->is_delete, fields, c->hlc, c->client_id);
		json_decref(fields);
		if (rc != SL_OK) {
			sls_seterr(s, rc, "out of memory");
			goto done;
		}
	}
	/* Each affected row once, after all of the frame's changes, in the order first touched. */
	for (i = 0; i < n_rows; i++) {
		frame_row *fr = &rv[i];

		if (!fr->general)
			rc = visible_write_new(s, &f, fr->first, &memo);
		else if ((rc = confirmed_save(s, fr->table, fr->row, &fr->conf)) == SL_OK)
			rc = recompute_with(s, fr->table, fr->row, &fr->conf);
		if (rc != SL_OK)
			goto done;
	}
	if (f.cursor > last)
		last = f.cursor;
	s->cursor = last;
	if ((rc = sls_meta_set_u64(s, "cursor", last)) != SL_OK ||
	    (rc = sls_save_outbox_seq(s)) != SL_OK)
		goto done;
	rc = sls_save_clock(s);
done:
	sls_release(s, ins);
	free(slot);
	for (i = 0; i < n_rows; i++)
		sl_row_clear(&rv[i].conf);
	free(rv);
	free(owner);
	free(fb.p);
	free(cb.p);
	rc = sls_tx_end(s, &sv, rc);
	sls_frame_free(&f);
	return rc;
}

/* ---------------------------------------------------------------- snapshots */

int
sl_store_snapshot_begin(sl_store *s, const char *groups_json)
{
	json_t *groups = NULL;

	if (groups_json != NULL) {
		size_t i;
		json_t *g;

		groups = json_loads(groups_json, 0, NULL);
		if (!json_is_array(groups)) {
			json_decref(groups);
			return sls_seterr(s, SL_EINVAL, "groups are not a JSON array");
		}
		json_array_foreach(groups, i, g) {
			if (!json_is_string(g) && !json_is_integer(g)) {
				json_decref(groups);
				return sls_seterr(s, SL_EINVAL, "a group is not a string or an integer");
			}
		}
	}
	if (sls_exec(s, "DELETE FROM _synclog_snapshot", "forget an unfinished snapshot") != SL_OK) {
		json_decref(groups);
		return SL_EDB;
	}
	json_decref(s->snap_groups);
	s->snap_groups = groups;
	s->snap_open = true;
	s->errmsg[0] = '\0';
	return SL_OK;
}

/* The text form of a group value (malloc'd), as groups list it; NULL for none. */
static char *
group_text(const json_t *v)
{
	char buf[32];

	if (json_is_string(v))
		return strdup(json_string_value(v));
	if (json_is_integer(v)) {
		snprintf(buf, sizeof(buf), "%lld", (long long) json_integer_value(v));
		return strdup(buf);
	}
	return NULL;
}

/* True when a confirmed row (fields text, tombstone flag) is replaced by the snapshot. */
static bool
replaced_by_snapshot(sl_store *s, const char *table, const char *fields_text, bool deleted)
{
	json_t *def = sls_table_def(s, table), *fields, *g;
	const char *gcol;
	char *text;
	size_t i;
	bool in = false;

	if (s->snap_groups == NULL || deleted || fields_text == NULL || def == NULL)
		return true;
	gcol = json_string_value(json_object_get(def, "group"));
	if (gcol == NULL)
		return true;
	if ((fields = json_loads(fields_text, 0, NULL)) == NULL)
		return true;
	text = group_text(json_object_get(fields, gcol));
	json_decref(fields);
	if (text == NULL)
		return false;
	json_array_foreach(s->snap_groups, i, g) {
		char *gt = group_text(g);

		if (gt && strcmp(gt, text) == 0)
			in = true;
		free(gt);
	}
	free(text);
	return in;
}

/*
 * The last frame's work, inside the transaction: confirmed state of the
 * groups replaced by the staged rows, cursor set, every row that was or is
 * confirmed or pending recomputed.
 */
static int
snapshot_finish(sl_store *s, uint64_t cursor)
{
	static const char *const key_sql[] = {
		"SELECT tbl, row FROM _synclog_confirmed",
		"SELECT tbl, row FROM _synclog_outbox",
	};
	json_t *keys = json_object(), *rows, *v;
	const char *table, *row;
	sqlite3_stmt *st, *del;
	int rc = SL_OK, src;

	if (keys == NULL)
		return sls_seterr(s, SL_ENOMEM, "out of memory");
	for (size_t k = 0; k < 2 && rc == SL_OK; k++) {
		if ((st = sls_prep(s, key_sql[k])) == NULL) {
			rc = SL_EDB;
			break;
		}
		while (rc == SL_OK && (src = sqlite3_step(st)) == SQLITE_ROW)
			rc = sls_key_add(keys, (const char *) sqlite3_column_text(st, 0),
			             (const char *) sqlite3_column_text(st, 1));
		if (rc == SL_OK && src != SQLITE_DONE)
			rc = sls_dberr(s, "list rows");
		sls_release(s, st);
	}
	if (rc != SL_OK)
		goto done;
	/* Forget the confirmed state the snapshot replaces. */
	st = sls_prep_const(s, "SELECT tbl, row, fields, deleted FROM _synclog_confirmed");
	del = sls_prep_const(s, "DELETE FROM _synclog_confirmed WHERE tbl = ? AND row = ?");
	if (st == NULL || del == NULL) {
		sls_release(s, st);
		sls_release(s, del);
		rc = SL_EDB;
		goto done;
	}
	{
		json_t *gone = json_object();

		while (gone && (src = sqlite3_step(st)) == SQLITE_ROW) {
			if (replaced_by_snapshot(s, (const char *) sqlite3_column_text(st, 0),
			                         (const char *) sqlite3_column_text(st, 2),
			                         sqlite3_column_int(st, 3) != 0) &&
			    sls_key_add(gone, (const char *) sqlite3_column_text(st, 0),
			            (const char *) sqlite3_column_text(st, 1)) != SL_OK)
				break;
		}
		sls_release(s, st);
		if (gone == NULL || src != SQLITE_DONE) {
			json_decref(gone);
			sls_release(s, del);
			rc = gone ? sls_dberr(s, "read confirmed state") : sls_seterr(s, SL_ENOMEM, "out of memory");
			goto done;
		}
		json_object_foreach(gone, table, rows) {
			json_object_foreach(rows, row, v) {
				sqlite3_reset(del);
				sqlite3_bind_text(del, 1, table, -1, SQLITE_STATIC);
				sqlite3_bind_text(del, 2, row, -1, SQLITE_STATIC);
				if (sqlite3_step(del) != SQLITE_DONE && rc == SL_OK)
					rc = sls_dberr(s, "replace confirmed state");
			}
		}
		sls_release(s, del);
		json_decref(gone);
		if (rc != SL_OK)
			goto done;
	}
	if ((rc = sls_exec(s, "INSERT OR REPLACE INTO _synclog_confirmed (tbl, row, fields, clocks, deleted)"
	                  " SELECT tbl, row, fields, clocks, 0 FROM _synclog_snapshot;"
	                  " DELETE FROM _synclog_snapshot;",
	               "install the snapshot")) != SL_OK)
		goto done;
	if ((st = sls_prep_const(s, "SELECT tbl, row FROM _synclog_confirmed")) == NULL) {
		rc = SL_EDB;
		goto done;
	}
	while (rc == SL_OK && (src = sqlite3_step(st)) == SQLITE_ROW)
		rc = sls_key_add(keys, (const char *) sqlite3_column_text(st, 0),
		             (const char *) sqlite3_column_text(st, 1));
	if (rc == SL_OK && src != SQLITE_DONE)
		rc = sls_dberr(s, "list rows");
	sls_release(s, st);
	if (rc != SL_OK)
		goto done;
	s->cursor = cursor;
	if ((rc = sls_meta_set_u64(s, "cursor", cursor)) != SL_OK)
		goto done;
	json_object_foreach(keys, table, rows) {
		json_object_foreach(rows, row, v) {
			if ((rc = sls_recompute(s, table, row)) != SL_OK)
				goto done;
		}
	}
done:
	if (rc == SL_ENOMEM)
		sls_seterr(s, rc, "out of memory");
	json_decref(keys);
	return rc;
}

int
sl_store_snapshot_frame(sl_store *s, const char *frame_json)
{
	json_t *frame = json_loads(frame_json ? frame_json : "", 0, NULL);
	json_t *rows = json_object_get(frame, "rows"), *j_cursor = json_object_get(frame, "cursor");
	json_t *done_j = json_object_get(frame, "done"), *r;
	sqlite3_stmt *st = NULL;
	size_t i;
	saved sv;
	int rc;

	if (!s->snap_open) {
		json_decref(frame);
		return sls_seterr(s, SL_EINVAL, "a snapshot frame with no sl_store_snapshot_begin");
	}
	if (!json_is_array(rows) || !json_is_integer(j_cursor) || json_integer_value(j_cursor) < 0 ||
	    !json_is_boolean(done_j)) {
		json_decref(frame);
		return sls_seterr(s, SL_EINVAL, "malformed snapshot frame");
	}
	if ((rc = sls_tx_begin(s, &sv)) != SL_OK) {
		json_decref(frame);
		return rc;
	}
	st = sls_prep_const(s, "INSERT OR REPLACE INTO _synclog_snapshot (tbl, row, fields, clocks) VALUES (?, ?, ?, ?)");
	if (st == NULL) {
		rc = SL_EDB;
		goto done;
	}
	json_array_foreach(rows, i, r) {
		const json_t *t = json_object_get(r, "table"), *rw = json_object_get(r, "row");
		const json_t *f = json_object_get(r, "fields"), *c = json_object_get(r, "clocks");
		char *ft, *ct;

		if (!json_is_string(t) || !json_is_string(rw) || !json_is_object(f) ||
		    (c != NULL && !json_is_object(c))) {
			rc = sls_seterr(s, SL_EINVAL, "malformed snapshot row at index %zu", i);
			goto done;
		}
		ft = json_dumps(f, JSON_COMPACT);
		ct = c ? json_dumps(c, JSON_COMPACT) : strdup("{}");
		sqlite3_reset(st);
		sqlite3_bind_text(st, 1, json_string_value(t), -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, json_string_value(rw), -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, ft, -1, free);
		sqlite3_bind_text(st, 4, ct, -1, free);
		if (ft == NULL || ct == NULL) {
			rc = sls_seterr(s, SL_ENOMEM, "out of memory");
			goto done;
		}
		if (sqlite3_step(st) != SQLITE_DONE) {
			rc = sls_dberr(s, "keep a snapshot row");
			goto done;
		}
	}
	sls_release(s, st);
	st = NULL;
	if (json_is_true(done_j))
		rc = snapshot_finish(s, (uint64_t) json_integer_value(j_cursor));
done:
	sls_release(s, st);
	rc = sls_tx_end(s, &sv, rc);
	if (rc == SL_OK && json_is_true(done_j)) {
		s->snap_open = false;
		json_decref(s->snap_groups);
		s->snap_groups = NULL;
	}
	json_decref(frame);
	return rc;
}

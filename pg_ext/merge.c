/*
 * merge.c
 *		Applying one op to its row: the conflict rule of DESIGN.md.
 *
 * Upsert: per-field last-writer-wins.  A field takes the op's value when the
 * op's (hlc, client_id) is greater than the clock that last won the field; a
 * field the op loses is left alone.  A new row is inserted with the fields
 * given (other columns take their defaults, and have no clock, so any later
 * op wins them).  Delete: absorbing.  The row gets a tombstone and every later
 * op on it is refused row_deleted.  The group column never changes through
 * an op (group_immutable).
 *
 * Concurrency: the row's synclog.row_meta entry is locked FOR UPDATE before
 * anything is decided, so two pushes to one row are applied one after the
 * other; a new row's entry is created with ON CONFLICT DO NOTHING and, if a
 * concurrent push created it first, read again under the lock.  The op-log
 * entry is written last, after the lock, so its local_id orders ops on one
 * row in the order they were applied.
 *
 * Runs inside SPI_connect and inside a subtransaction of push.c's (the
 * batch's, or this op's own after an error): an ERROR here (bad value,
 * constraint) ends with only this op refused.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"

#include "synclog.h"

extern const char *sl_current_column;

/* One field of an upsert, resolved against the catalog. */
typedef struct SlField
{
	char	   *column;
	AttrNumber	attnum;
	Oid			typid;
	int32		typmod;
	JsonbValue	value;
} SlField;

static void
reject(const char **code, const char *c)
{
	*code = c;
}

/*
 * Appends a JSON array as a PostgreSQL array literal: {"a","b",NULL,{...}}.
 * Elements are quoted and escaped; nested arrays nest.  Objects inside are
 * written as their JSON text (for arrays of json/jsonb).
 */
static void
append_array_literal(StringInfo out, JsonbContainer *arr)
{
	int			n = JsonContainerSize(arr);

	appendStringInfoChar(out, '{');
	for (int i = 0; i < n; i++)
	{
		JsonbValue *e = getIthJsonbValueFromContainer(arr, i);

		if (i > 0)
			appendStringInfoChar(out, ',');
		if (e->type == jbvNull)
			appendStringInfoString(out, "NULL");
		else if (e->type == jbvBinary && JsonContainerIsArray(e->val.binary.data))
			append_array_literal(out, e->val.binary.data);
		else
		{
			char	   *str = sl_json_text(e);

			appendStringInfoChar(out, '"');
			for (char *c = str; *c; c++)
			{
				if (*c == '"' || *c == '\\')
					appendStringInfoChar(out, '\\');
				appendStringInfoChar(out, *c);
			}
			appendStringInfoChar(out, '"');
		}
	}
	appendStringInfoChar(out, '}');
}

/* The text of a JSON value for a column of type typid; NULL for JSON null. */
static char *
field_text(JsonbValue *v, Oid typid)
{
	if (v->type == jbvNull)
		return NULL;
	if (v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data) &&
		OidIsValid(get_element_type(typid)))
	{
		StringInfoData s;

		initStringInfo(&s);
		append_array_literal(&s, v->val.binary.data);
		return s.data;
	}
	if (typid == JSONOID || typid == JSONBOID)
	{
		StringInfoData s;
		Jsonb	   *jb = JsonbValueToJsonb(v);

		initStringInfo(&s);
		JsonbToCString(&s, &jb->root, VARSIZE(jb));
		return s.data;
	}
	return sl_json_text(v);
}

/* The datum of a JSON value for a column; raises the type's input error. */
static Datum
field_datum(SlField *f, bool *isnull)
{
	char	   *str;
	Oid			infunc,
				ioparam;
	Datum		d;

	sl_current_column = f->column;
	str = field_text(&f->value, f->typid);
	*isnull = (str == NULL);
	getTypeInputInfo(f->typid, &infunc, &ioparam);
	/* NULL still goes through the input function: domains check NOT NULL. */
	d = OidInputFunctionCall(infunc, str, ioparam, f->typmod);
	sl_current_column = NULL;
	return d;
}

/*
 * Resolves the fields of an upsert.  Returns false with code and message set
 * when a column is unknown or may not be written.
 */
static bool
resolve_fields(SlTable *t, JsonbContainer *fields, List **out,
			   const char **code, StringInfo msg)
{
	JsonbIterator *it = JsonbIteratorInit(fields);
	JsonbValue	v;
	JsonbIteratorToken tok;
	SlField    *f = NULL;

	*out = NIL;
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			char	   *col = pnstrdup(v.val.string.val, v.val.string.len);
			AttrNumber	attnum = get_attnum(t->relid, col);
			Oid			coll;

			if (attnum <= 0)
			{
				reject(code, "unknown_column");
				appendStringInfo(msg, "column \"%s\" does not exist in table \"%s\"", col, t->name);
				return false;
			}
			if (get_attgenerated(t->relid, attnum) != '\0')
			{
				reject(code, "invalid_op");
				appendStringInfo(msg, "column \"%s\" of table \"%s\" is generated and cannot be written",
								 col, t->name);
				return false;
			}
			f = palloc0(sizeof(SlField));
			f->column = col;
			f->attnum = attnum;
			get_atttypetypmodcoll(t->relid, attnum, &f->typid, &f->typmod, &coll);
		}
		else if (tok == WJB_VALUE)
		{
			f->value = v;
			*out = lappend(*out, f);
		}
	}
	return true;
}

static bool
group_granted(const SlAuth *auth, const char *grp)
{
	if (grp == NULL)
		return false;
	for (int i = 0; i < auth->ngroups; i++)
		if (strcmp(auth->groups[i], grp) == 0)
			return true;
	return false;
}

/* The canonical text of a field's value for comparisons; NULL for null. */
static char *
field_canonical(SlField *f)
{
	char	   *str;

	sl_current_column = f->column;
	str = sl_json_text(&f->value);
	if (str != NULL)
		str = sl_normalize_text(str, f->typid, f->typmod);
	sl_current_column = NULL;
	return str;
}

/* Keeps only the keys in cols (a List of C strings) of a JSON object. */
static Jsonb *
jsonb_keep(Jsonb *all, List *cols)
{
	JsonbParseState *state = NULL;
	ListCell   *lc;

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	foreach(lc, cols)
	{
		const char *col = lfirst(lc);
		JsonbValue	buf;
		JsonbValue *val = sl_json_get(&all->root, col, &buf);
		JsonbValue	key;

		if (val == NULL)
			continue;
		key.type = jbvString;
		key.val.string.val = (char *) col;
		key.val.string.len = strlen(col);
		pushJsonbValue(&state, WJB_KEY, &key);
		pushJsonbValue(&state, WJB_VALUE, val);
	}
	return JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL));
}

Jsonb *
sl_empty_object(void)
{
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));
}

/*
 * The op log rows of a batch being applied in one subtransaction
 * (sl_oplog_defer): written by sl_oplog_flush in one INSERT instead of one
 * INSERT per op.  NULL when ops are written at once.
 */
typedef struct SlLoggedOp
{
	char	   *op_id;
	char	   *table;
	char	   *row;
	char	   *grp;			/* NULL: no group */
	bool		is_delete;
	Jsonb	   *fields;
	uint64		hlc;
	char	   *client_id;
} SlLoggedOp;

static List *deferred_ops = NIL;
static MemoryContext deferred_cxt = NULL;

/*
 * From now until sl_oplog_flush or sl_oplog_discard, sl_record_op keeps
 * the op log rows in cxt (which must outlive both) instead of inserting
 * them.  The rows keep their order: the flush numbers them (local_id) in
 * the order they were recorded, as the inserts one by one would have.
 */
void
sl_oplog_defer(MemoryContext cxt)
{
	deferred_ops = NIL;
	deferred_cxt = cxt;
}

/* Forgets the rows kept since sl_oplog_defer (the batch was rolled back). */
void
sl_oplog_discard(void)
{
	deferred_ops = NIL;
	deferred_cxt = NULL;
}

static void
insert_ops(List *rows)
{
	int			n = list_length(rows);
	Oid			argtypes[8] = {TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
	TEXTARRAYOID, JSONBARRAYOID, INT8ARRAYOID, TEXTARRAYOID};
	Datum		args[8];
	Datum	   *cols[8];
	bool	   *grp_nulls = palloc0(sizeof(bool) * n);
	int			dims[1] = {n};
	int			lbs[1] = {1};
	ListCell   *lc;
	int			i = 0;
	int			rc;

	for (int c = 0; c < 8; c++)
		cols[c] = palloc(sizeof(Datum) * n);
	foreach(lc, rows)
	{
		SlLoggedOp *o = lfirst(lc);

		cols[0][i] = CStringGetTextDatum(o->op_id);
		cols[1][i] = CStringGetTextDatum(o->table);
		cols[2][i] = CStringGetTextDatum(o->row);
		if (o->grp)
			cols[3][i] = CStringGetTextDatum(o->grp);
		else
		{
			cols[3][i] = (Datum) 0;
			grp_nulls[i] = true;
		}
		cols[4][i] = CStringGetTextDatum(o->is_delete ? "delete" : "upsert");
		cols[5][i] = JsonbPGetDatum(o->fields ? o->fields : sl_empty_object());
		cols[6][i] = Int64GetDatum((int64) o->hlc);
		cols[7][i] = CStringGetTextDatum(o->client_id);
		i++;
	}
	for (int c = 0; c < 8 && n > 1; c++)
	{
		if (c == 3)
			args[c] = PointerGetDatum(construct_md_array(cols[c], grp_nulls, 1, dims, lbs,
														 TEXTOID, -1, false, TYPALIGN_INT));
		else if (c == 5)
			args[c] = PointerGetDatum(construct_array(cols[c], n, JSONBOID, -1, false, TYPALIGN_INT));
		else if (c == 6)
			args[c] = PointerGetDatum(construct_array(cols[c], n, INT8OID, 8, FLOAT8PASSBYVAL,
													  TYPALIGN_DOUBLE));
		else
			args[c] = PointerGetDatum(construct_array(cols[c], n, TEXTOID, -1, false, TYPALIGN_INT));
	}

	if (n == 1)
	{
		/* One row (a batch of one, a write captured in SQL): plain VALUES. */
		Oid			types1[8] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
		JSONBOID, INT8OID, TEXTOID};
		char		nulls[8] = "        ";

		for (int c = 0; c < 8; c++)
			args[c] = cols[c][0];
		if (grp_nulls[0])
			nulls[3] = 'n';
		rc = SPI_execute_plan(sl_plan("INSERT INTO synclog.ops "
									  "(op_id, table_name, row_id, grp, kind, fields, hlc, client_id) "
									  "VALUES ($1::pg_catalog.uuid, $2, $3, $4, $5, $6, $7, $8)",
									  8, types1),
							  args, nulls, false, 0);
		if (rc != SPI_OK_INSERT)
			elog(ERROR, "synclog: op log insert failed: %s", SPI_result_code_string(rc));
		sl_note_ops_written();
		return;
	}
	/* local_id is drawn row by row in ordinality order, the order recorded. */
	rc = SPI_execute_plan(sl_plan("INSERT INTO synclog.ops "
								  "(op_id, table_name, row_id, grp, kind, fields, hlc, client_id) "
								  "SELECT o::pg_catalog.uuid, t, r, g, k, f, h, c "
								  "FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), "
								  "pg_catalog.unnest($3), pg_catalog.unnest($4), pg_catalog.unnest($5), "
								  "pg_catalog.unnest($6), pg_catalog.unnest($7), pg_catalog.unnest($8)) "
								  "WITH ORDINALITY AS u(o, t, r, g, k, f, h, c, n) ORDER BY n",
								  8, argtypes),
						  args, NULL, false, 0);
	if (rc != SPI_OK_INSERT || SPI_processed != (uint64) n)
		elog(ERROR, "synclog: op log insert failed: %s", SPI_result_code_string(rc));
	sl_note_ops_written();
}

/*
 * Inserts the rows kept since sl_oplog_defer, and writes ops at once again.
 * A second op with an id already logged raises a unique violation on
 * synclog.ops, as sl_record_op would.  Must be called inside SPI_connect.
 */
void
sl_oplog_flush(void)
{
	List	   *rows = deferred_ops;

	deferred_ops = NIL;
	deferred_cxt = NULL;
	if (rows != NIL)
		insert_ops(rows);
}

/*
 * Appends an op to the op log, unsequenced, and asks for the sequencer to be
 * woken at commit (or, between sl_oplog_defer and sl_oplog_flush, keeps it
 * for the flush).  A second op with the same id raises a unique violation
 * on synclog.ops (push.c treats it as a duplicate).  Inside SPI.
 */
void
sl_record_op(const char *op_id, const char *table, const char *row,
			 const char *grp, bool is_delete, Jsonb *fields,
			 uint64 hlc, const char *client_id)
{
	SlLoggedOp *o;
	MemoryContext old;

	old = MemoryContextSwitchTo(deferred_cxt ? deferred_cxt : CurrentMemoryContext);
	o = palloc(sizeof(SlLoggedOp));
	o->op_id = pstrdup(op_id);
	o->table = pstrdup(table);
	o->row = pstrdup(row);
	o->grp = grp ? pstrdup(grp) : NULL;
	o->is_delete = is_delete;
	o->fields = fields ? (Jsonb *) DatumGetPointer(datumCopy(JsonbPGetDatum(fields), false, -1)) : NULL;
	o->hlc = hlc;
	o->client_id = pstrdup(client_id);
	if (deferred_cxt != NULL)
	{
		deferred_ops = lappend(deferred_ops, o);
		MemoryContextSwitchTo(old);
		return;
	}
	MemoryContextSwitchTo(old);
	insert_ops(list_make1(o));
}

static Datum
groups_array(List *groups)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(list_length(groups), 1));
	int			n = 0;
	ListCell   *lc;

	foreach(lc, groups)
		elems[n++] = CStringGetTextDatum((char *) lfirst(lc));
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}

/*
 * Locks and reads the row's metadata; false when it has none.  tomb_groups
 * (may be NULL) gets the groups of a never-seen row's tombstone.
 */
bool
sl_meta_lock(SlTable *t, const char *row, char **grp, Jsonb **clocks, bool *deleted,
			 List **tomb_groups)
{
	Oid			argtypes[2] = {OIDOID, TEXTOID};
	Datum		args[2] = {ObjectIdGetDatum(t->relid), CStringGetTextDatum(row)};
	SPIPlanPtr	plan;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;

	plan = sl_plan("SELECT grp, clocks, deleted, tomb_groups FROM synclog.row_meta "
				   "WHERE tbl OPERATOR(pg_catalog.=) $1::pg_catalog.regclass "
				   "AND row_id OPERATOR(pg_catalog.=) $2 FOR UPDATE",
				   2, argtypes);
	if (SPI_execute_plan(plan, args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "synclog: row metadata lookup failed");
	if (SPI_processed == 0)
		return false;
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	*grp = SPI_getvalue(tup, desc, 1);
	*clocks = DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 2, &isnull));
	*deleted = DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull));
	if (tomb_groups != NULL)
	{
		Datum		d = SPI_getbinval(tup, desc, 4, &isnull);

		*tomb_groups = NIL;
		if (!isnull)
		{
			Datum	   *elems;
			bool	   *nulls;
			int			n;

			deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
							  &elems, &nulls, &n);
			for (int i = 0; i < n; i++)
				if (!nulls[i])
					*tomb_groups = lappend(*tomb_groups, TextDatumGetCString(elems[i]));
		}
	}
	return true;
}

/* Creates the row's metadata unless a concurrent push just did; true if created. */
bool
sl_meta_create(SlTable *t, const char *row, const char *grp, Jsonb *clocks, bool deleted,
			   List *tomb_groups)
{
	Oid			argtypes[6] = {OIDOID, TEXTOID, TEXTOID, JSONBOID, BOOLOID, TEXTARRAYOID};
	Datum		args[6];
	char		nulls[6] = "      ";
	SPIPlanPtr	plan;

	args[0] = ObjectIdGetDatum(t->relid);
	args[1] = CStringGetTextDatum(row);
	if (grp)
		args[2] = CStringGetTextDatum(grp);
	else
		nulls[2] = 'n';
	args[3] = JsonbPGetDatum(clocks);
	args[4] = BoolGetDatum(deleted);
	if (tomb_groups != NIL)
		args[5] = groups_array(tomb_groups);
	else
		nulls[5] = 'n';
	plan = sl_plan("INSERT INTO synclog.row_meta (tbl, row_id, grp, clocks, deleted, tomb_groups) "
				   "VALUES ($1::pg_catalog.regclass, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
				   6, argtypes);
	if (SPI_execute_plan(plan, args, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "synclog: row metadata insert failed");
	return SPI_processed == 1;
}

/* Rewrites the row's metadata (it must exist and be locked). */
void
sl_meta_update(SlTable *t, const char *row, const char *grp, Jsonb *clocks, bool deleted,
			   List *tomb_groups)
{
	Oid			argtypes[6] = {OIDOID, TEXTOID, JSONBOID, BOOLOID, TEXTOID, TEXTARRAYOID};
	Datum		args[6];
	char		nulls[6] = "      ";
	SPIPlanPtr	plan;

	args[0] = ObjectIdGetDatum(t->relid);
	args[1] = CStringGetTextDatum(row);
	args[2] = JsonbPGetDatum(clocks);
	args[3] = BoolGetDatum(deleted);
	if (grp)
		args[4] = CStringGetTextDatum(grp);
	else
		nulls[4] = 'n';
	if (tomb_groups != NIL)
		args[5] = groups_array(tomb_groups);
	else
		nulls[5] = 'n';
	plan = sl_plan("UPDATE synclog.row_meta SET clocks = $3, deleted = $4, grp = $5, tomb_groups = $6 "
				   "WHERE tbl OPERATOR(pg_catalog.=) $1::pg_catalog.regclass "
				   "AND row_id OPERATOR(pg_catalog.=) $2",
				   6, argtypes);
	if (SPI_execute_plan(plan, args, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "synclog: row metadata update failed");
}

static Jsonb *app_write_as_owner(SlTable *t, const char *row, List *list, bool insert);

static Datum
pk_datum(SlTable *t, const char *row)
{
	Oid			infunc,
				ioparam;
	Datum		d;

	sl_current_column = t->pk_column;
	getTypeInputInfo(t->pk_type, &infunc, &ioparam);
	d = OidInputFunctionCall(infunc, (char *) row, ioparam, t->pk_typmod);
	sl_current_column = NULL;
	return d;
}

/*
 * Deletes the application row, if there is one, as the table's owner
 * (sl_as_owner_begin): its triggers and policies are the owner's code.
 */
void
sl_app_delete(SlTable *t, const char *row)
{
	StringInfoData sql;
	Datum		arg = pk_datum(t, row);
	SlAsOwner	save;
	int			rc;

	initStringInfo(&sql);
	appendStringInfo(&sql, "DELETE FROM %s WHERE %s OPERATOR(pg_catalog.=) $1",
					 t->qualname, quote_identifier(t->pk_column));
	sl_push_writing(t, row);
	sl_as_owner_begin(t->owner, &save);
	rc = SPI_execute_plan(sl_plan(sql.data, 1, &t->pk_type), &arg, NULL, false, 0);
	sl_as_owner_end(&save);
	if (rc != SPI_OK_DELETE)
		elog(ERROR, "synclog: delete from %s failed", t->qualname);
	sl_push_writing(NULL, NULL);
}

/*
 * Inserts (when insert) or updates the application row with the fields in
 * list, returning the whole row as JSON, or NULL when an update found no row.
 * Runs as the table's owner (sl_as_owner_begin): converting the values
 * (domain checks), the write itself (triggers, defaults, checks, generated
 * columns, index expressions, policies) and rendering the row (casts to
 * json) run the owner's code, never with synclog's rights.
 */
static Jsonb *
app_write(SlTable *t, const char *row, List *list, bool insert)
{
	SlAsOwner	save;
	Jsonb	   *result;

	sl_as_owner_begin(t->owner, &save);
	result = app_write_as_owner(t, row, list, insert);
	sl_as_owner_end(&save);
	return result;
}

static Jsonb *
app_write_as_owner(SlTable *t, const char *row, List *list, bool insert)
{
	StringInfoData sql;
	int			n = list_length(list) + 1;
	Oid		   *argtypes = palloc(sizeof(Oid) * n);
	Datum	   *args = palloc(sizeof(Datum) * n);
	char	   *nulls = palloc(n + 1);
	ListCell   *lc;
	int			i = 0;
	int			rc;
	Jsonb	   *result = NULL;
	char	   *alias;

	memset(nulls, ' ', n);
	nulls[n] = '\0';
	foreach(lc, list)
	{
		SlField    *f = lfirst(lc);
		bool		isnull;

		argtypes[i] = f->typid;
		args[i] = field_datum(f, &isnull);
		if (isnull)
			nulls[i] = 'n';
		i++;
	}
	argtypes[i] = t->pk_type;
	args[i] = pk_datum(t, row);

	alias = sl_row_alias(t->relid);
	initStringInfo(&sql);
	if (insert)
	{
		appendStringInfo(&sql, "INSERT INTO %s AS %s (", t->qualname, alias);
		foreach(lc, list)
			appendStringInfo(&sql, "%s, ", quote_identifier(((SlField *) lfirst(lc))->column));
		appendStringInfo(&sql, "%s) VALUES (", quote_identifier(t->pk_column));
		for (int k = 1; k <= n; k++)
			appendStringInfo(&sql, "$%d%s", k, k < n ? ", " : ")");
	}
	else
	{
		appendStringInfo(&sql, "UPDATE %s AS %s SET ", t->qualname, alias);
		i = 1;
		foreach(lc, list)
			appendStringInfo(&sql, "%s%s = $%d", i > 1 ? ", " : "",
							 quote_identifier(((SlField *) lfirst(lc))->column), i), i++;
		appendStringInfo(&sql, " WHERE %s OPERATOR(pg_catalog.=) $%d", quote_identifier(t->pk_column), n);
	}
	appendStringInfo(&sql, " RETURNING pg_catalog.to_jsonb(%s)", alias);

	sl_push_writing(t, row);
	rc = SPI_execute_plan(sl_plan(sql.data, n, argtypes), args, nulls, false, 0);
	sl_push_writing(NULL, NULL);
	if (rc != SPI_OK_INSERT_RETURNING && rc != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "synclog: write to %s failed: %s", t->qualname, SPI_result_code_string(rc));
	if (SPI_processed == 1)
	{
		bool		isnull;

		result = DatumGetJsonbPCopy(SPI_getbinval(SPI_tuptable->vals[0],
												  SPI_tuptable->tupdesc, 1, &isnull));
	}
	return result;
}

static List *
field_names(List *fields)
{
	List	   *names = NIL;
	ListCell   *lc;

	foreach(lc, fields)
		names = lappend(names, ((SlField *) lfirst(lc))->column);
	return names;
}

/*
 * True when the op log (or compaction's list) already has op_id: checked
 * under the row lock before refusing an op row_deleted, because a
 * concurrent push of this very op may have deleted the row and committed.
 */
static bool
op_logged(const char *op_id)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1] = {CStringGetTextDatum(op_id)};

	if (SPI_execute_plan(sl_plan("SELECT 1 FROM synclog.ops WHERE op_id OPERATOR(pg_catalog.=) $1::pg_catalog.uuid "
								 "UNION ALL SELECT 1 FROM synclog.compacted_ops "
								 "WHERE op_id OPERATOR(pg_catalog.=) $1::pg_catalog.uuid",
								 1, argtypes), args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "synclog: op id lookup failed");
	return SPI_processed > 0;
}

static List *
auth_groups(const SlAuth *auth)
{
	List	   *l = NIL;

	for (int i = 0; i < auth->ngroups; i++)
		l = lappend(l, auth->groups[i]);
	return l;
}

/*
 * Applies op to table t (NULL: the op names no tracked table) as the holder
 * of auth.  Returns SL_APPLIED (the op is in the op
 * log), or SL_REJECTED with *code one of DESIGN.md's rejection codes and msg
 * saying why; the caller then rolls back the subtransaction.  Bad values and
 * constraint violations are raised as ERRORs for the caller to classify.
 */
SlOutcome
sl_apply_op(const SlOp *op, SlTable *t, const SlAuth *auth, const char **code,
			StringInfo msg)
{
	List	   *fields = NIL;
	List	   *write = NIL;
	SlField    *grp_field = NULL;
	char	   *row;
	char	   *grp = NULL;
	Jsonb	   *clocks = NULL;
	bool		deleted = false;
	bool		exists;
	ListCell   *lc;
	Jsonb	   *rowjson;
	int			attempts = 0;
	List	   *tomb_groups = NIL;
	bool		stale_tomb = false;

	if (t == NULL)
	{
		reject(code, "unknown_table");
		appendStringInfo(msg, "table \"%s\" is not tracked by synclog", op->table);
		return SL_REJECTED;
	}
	if (t->unusable)
	{
		/* A key or group column altered to a type track() refuses. */
		reject(code, "invalid_op");
		appendStringInfoString(msg, t->unusable);
		return SL_REJECTED;
	}

	/* Rows are named by the canonical text of their primary key. */
	sl_current_column = t->pk_column;
	row = sl_normalize_text(op->row, t->pk_type, t->pk_typmod);
	sl_current_column = NULL;

	if (!op->is_delete)
	{
		if (!resolve_fields(t, op->fields, &fields, code, msg))
			return SL_REJECTED;
		foreach(lc, fields)
		{
			SlField    *f = lfirst(lc);

			if (f->attnum == t->pk_attnum)
			{
				char	   *v = field_canonical(f);

				if (v == NULL || strcmp(v, row) != 0)
				{
					reject(code, "invalid_op");
					appendStringInfo(msg, "field \"%s\" is the primary key and must equal the op's row \"%s\"",
									 f->column, row);
					return SL_REJECTED;
				}
				continue;		/* the key is written from the row alone */
			}
			if (f->attnum == t->grp_attnum)
				grp_field = f;
			write = lappend(write, f);
		}
	}

again:
	exists = sl_meta_lock(t, row, &grp, &clocks, &deleted, &tomb_groups);

	if (exists && deleted && grp == NULL)
	{
		/*
		 * The tombstone of a row deleted before the server saw it alive.  It
		 * absorbs a creation in a group its deleter could write; a delete by
		 * a token without rights there absorbs nothing, just as that delete
		 * would have been refused had the row arrived first.
		 */
		char	   *g = (!op->is_delete && grp_field) ? field_canonical(grp_field) : NULL;

		if (g != NULL)
		{
			bool		absorbs = false;
			ListCell   *lc2;

			foreach(lc2, tomb_groups)
				if (strcmp((char *) lfirst(lc2), g) == 0)
					absorbs = true;
			stale_tomb = !absorbs;
		}
		if (!stale_tomb)
		{
			if (op_logged(op->id))
				return SL_DUPLICATE;
			reject(code, "row_deleted");
			appendStringInfo(msg, "row \"%s\" of table \"%s\" was deleted", row, t->name);
			return SL_REJECTED;
		}
	}

	if (!exists || stale_tomb)
	{
		if (op->is_delete)
		{
			/*
			 * A delete of a row we never saw: record the tombstone anyway, so
			 * that the result does not depend on the order ops arrive in.
			 */
			if (!sl_meta_create(t, row, NULL, sl_empty_object(), true, auth_groups(auth)))
			{
				if (++attempts > 1)
					elog(ERROR, "synclog: row metadata of \"%s\" changed twice under us", row);
				goto again;
			}
			sl_app_delete(t, row);
			sl_record_op(op->id, t->name, row, NULL, true, NULL, op->hlc, op->client_id);
			return SL_APPLIED;
		}

		if (grp_field == NULL || (grp = field_canonical(grp_field)) == NULL)
		{
			reject(code, "invalid_op");
			appendStringInfo(msg, "a new row needs its group column \"%s\" among the fields", t->grp_column);
			return SL_REJECTED;
		}
		if (!group_granted(auth, grp))
		{
			reject(code, "unauthorized");
			appendStringInfo(msg, "the token does not grant group \"%s\"", grp);
			return SL_REJECTED;
		}
		clocks = sl_clock_entry_set(NULL, field_names(write), op->hlc, op->client_id);
		if (stale_tomb)
			sl_meta_update(t, row, grp, clocks, false, NIL);
		else if (!sl_meta_create(t, row, grp, clocks, false, NIL))
		{
			if (++attempts > 1)
				elog(ERROR, "synclog: row metadata of \"%s\" changed twice under us", row);
			goto again;
		}
		rowjson = app_write(t, row, write, true);
		sl_record_op(op->id, t->name, row, grp, false, rowjson, op->hlc, op->client_id);
		return SL_APPLIED;
	}

	if (!group_granted(auth, grp))
	{
		/* Never name the row's group: the token holder may not know it. */
		reject(code, "unauthorized");
		appendStringInfo(msg, "row \"%s\" of table \"%s\" is in no group the token grants",
						 row, t->name);
		return SL_REJECTED;
	}
	if (deleted)
	{
		if (op_logged(op->id))
			return SL_DUPLICATE;
		reject(code, "row_deleted");
		appendStringInfo(msg, "row \"%s\" of table \"%s\" was deleted", row, t->name);
		return SL_REJECTED;
	}

	if (op->is_delete)
	{
		sl_meta_update(t, row, grp, clocks, true, NIL);
		sl_app_delete(t, row);
		sl_record_op(op->id, t->name, row, grp, true, NULL, op->hlc, op->client_id);
		return SL_APPLIED;
	}

	if (grp_field != NULL)
	{
		char	   *v = field_canonical(grp_field);

		if (v == NULL || strcmp(v, grp) != 0)
		{
			reject(code, "group_immutable");
			if (v == NULL)
				appendStringInfo(msg, "the group column \"%s\" of a row cannot change: the row is in \"%s\", the op sets it to null",
								 t->grp_column, grp);
			else
				appendStringInfo(msg, "the group column \"%s\" of a row cannot change: the row is in \"%s\", the op says \"%s\"",
								 t->grp_column, grp, v);
			return SL_REJECTED;
		}
	}

	/* Per-field last-writer-wins. */
	{
		List	   *won = NIL;

		foreach(lc, write)
		{
			SlField    *f = lfirst(lc);
			uint64		h;
			char	   *c;

			if (!sl_clock_get(clocks, f->column, &h, &c) ||
				sl_clock_cmp(op->hlc, op->client_id, h, c) > 0)
				won = lappend(won, f);
		}

		rowjson = NULL;
		if (won != NIL)
		{
			List	   *names = field_names(won);

			rowjson = app_write(t, row, won, false);
			if (rowjson == NULL)
			{
				/* Metadata without a row (written around the trigger): recreate it. */
				rowjson = app_write(t, row, won, true);
			}
			else
				rowjson = jsonb_keep(rowjson, names);
			sl_meta_update(t, row, grp, sl_clock_entry_set(clocks, names, op->hlc, op->client_id),
						   false, NIL);
		}
		sl_record_op(op->id, t->name, row, grp, false, rowjson, op->hlc, op->client_id);
	}
	return SL_APPLIED;
}

/*
 * util.c
 *		Helpers shared by push, merge and capture: a cache of saved SPI plans,
 *		tracked-table lookup, datum and JSON conversions, and field clocks.
 *
 * The plan cache is backend-local and keyed by the SQL text and argument
 * types.  SQL text is always built from catalog-resolved, quoted
 * identifiers and never carries values, so the number of distinct texts is
 * bounded by tables × column sets; the cache is emptied when it grows past
 * SL_PLAN_CACHE_MAX.  Saved plans are revalidated by the plan cache when a
 * table changes, so an entry never runs a stale plan.
 *
 * Field clocks live in synclog.row_meta.clocks as {"col": ["<hlc>", "<client_id>"]}.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/guc.h"
#include "utils/syscache.h"
#include "catalog/pg_class.h"
#include "miscadmin.h"
#include "storage/lmgr.h"

#include "synclog.h"

#define SL_PLAN_CACHE_MAX 1024

typedef struct SlPlanEntry
{
	uint64		key;			/* hash of SQL text and argument types */
	char	   *sql;			/* in TopMemoryContext */
	int			nargs;
	Oid			argtypes[FUNC_MAX_ARGS];
	SPIPlanPtr	plan;
} SlPlanEntry;

static HTAB *plan_cache = NULL;

static void
sl_plan_cache_reset(void)
{
	HASH_SEQ_STATUS seq;
	SlPlanEntry *e;

	if (plan_cache == NULL)
		return;
	hash_seq_init(&seq, plan_cache);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		SPI_freeplan(e->plan);
		pfree(e->sql);
	}
	hash_destroy(plan_cache);
	plan_cache = NULL;
}

/*
 * Returns a saved plan for sql with the given argument types, preparing it
 * on first use.  Must be called inside SPI_connect.  Errors in preparing
 * (a syntax error would be our bug) are raised as usual.
 */
SPIPlanPtr
sl_plan(const char *sql, int nargs, Oid *argtypes)
{
	uint64		key;
	SlPlanEntry *e;
	bool		found;
	SPIPlanPtr	plan;

	Assert(nargs <= FUNC_MAX_ARGS);
	key = hash_bytes_extended((const unsigned char *) sql, strlen(sql), 0);
	if (nargs > 0)
		key = hash_bytes_extended((const unsigned char *) argtypes,
								  nargs * sizeof(Oid), key);

	if (plan_cache == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(uint64);
		ctl.entrysize = sizeof(SlPlanEntry);
		plan_cache = hash_create("synclog plans", 64, &ctl, HASH_ELEM | HASH_BLOBS);
	}

	e = hash_search(plan_cache, &key, HASH_FIND, &found);
	if (found && e->nargs == nargs && strcmp(e->sql, sql) == 0 &&
		memcmp(e->argtypes, argtypes, nargs * sizeof(Oid)) == 0)
		return e->plan;

	/*
	 * Generic plans: these are short index lookups and writes whose best
	 * plan does not depend on the values, and a custom plan would be planned
	 * again on every call (the plan cache prefers custom plans whenever they
	 * look cheaper, as they do for "= ANY ($1)").
	 */
	plan = SPI_prepare_cursor(sql, nargs, argtypes, CURSOR_OPT_GENERIC_PLAN);
	if (plan == NULL)
		elog(ERROR, "synclog: SPI_prepare failed for \"%s\": %s",
			 sql, SPI_result_code_string(SPI_result));
	if (found)
		return plan;			/* a hash collision: run it unsaved */

	if (hash_get_num_entries(plan_cache) >= SL_PLAN_CACHE_MAX)
		sl_plan_cache_reset();
	if (plan_cache == NULL)
		return sl_plan(sql, nargs, argtypes);

	SPI_keepplan(plan);
	e = hash_search(plan_cache, &key, HASH_ENTER, &found);
	e->sql = MemoryContextStrdup(TopMemoryContext, sql);
	e->nargs = nargs;
	memcpy(e->argtypes, argtypes, nargs * sizeof(Oid));
	e->plan = plan;
	return plan;
}

/*
 * Why a column of type typid with collation coll cannot name rows (a key) or
 * groups, or NULL when it can.  A row id is the text form of the key, and
 * two spellings of one id must never reach two rows' metadata while the
 * table's equality finds one row: so only types whose text form is the
 * same for exactly the values their equality calls equal, whatever the
 * session's settings, are accepted.  uuid and the integers print one
 * canonical text for each value; text and varchar compare byte by byte
 * under a deterministic collation.  citext, numeric ('1.0' = '1'), char(n)
 * (trailing blanks), nondeterministic collations, timestamps and dates
 * (TimeZone, DateStyle), floats, domains (whose checks are the owner's
 * code) and everything else are refused.
 */
const char *
sl_key_type_problem(Oid typid, Oid coll)
{
	switch (typid)
	{
		case UUIDOID:
		case INT2OID:
		case INT4OID:
		case INT8OID:
			return NULL;
		case TEXTOID:
		case VARCHAROID:
			if (OidIsValid(coll) && !get_collation_isdeterministic(coll))
				return psprintf("collation %s is nondeterministic: two different texts may be equal",
								quote_identifier(get_collation_name(coll)));
			return NULL;
		default:
			return psprintf("type %s has no text form that names exactly one value whatever the session's settings",
							format_type_be(typid));
	}
}

static SlTable *
sl_table_fill(Oid relid, const char *name, const char *pk_column, const char *grp_column)
{
	SlTable    *t;
	Oid			coll;
	char	   *relname = get_rel_name(relid);
	HeapTuple	ctup;
	const char *problem;

	if (relname == NULL)
		return NULL;			/* dropped in this transaction */
	t = palloc0(sizeof(SlTable));
	t->relid = relid;
	ctup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(ctup))
		return NULL;
	t->owner = ((Form_pg_class) GETSTRUCT(ctup))->relowner;
	ReleaseSysCache(ctup);
	t->name = pstrdup(name);
	t->qualname = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
											 relname);
	t->pk_column = pstrdup(pk_column);
	t->grp_column = pstrdup(grp_column);
	t->pk_attnum = get_attnum(relid, pk_column);
	t->grp_attnum = get_attnum(relid, grp_column);
	if (t->pk_attnum == InvalidAttrNumber || t->grp_attnum == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("tracked table \"%s\" no longer has column \"%s\"", name,
						t->pk_attnum == InvalidAttrNumber ? pk_column : grp_column),
				 errhint("Restore the column, or call synclog.untrack and synclog.track again.")));
	get_atttypetypmodcoll(relid, t->pk_attnum, &t->pk_type, &t->pk_typmod, &coll);
	if ((problem = sl_key_type_problem(t->pk_type, coll)) != NULL)
		t->unusable = psprintf("the primary key \"%s\" of tracked table \"%s\" cannot name rows: %s",
							   pk_column, name, problem);
	get_atttypetypmodcoll(relid, t->grp_attnum, &t->grp_type, &t->grp_typmod, &coll);
	if (t->unusable == NULL && (problem = sl_key_type_problem(t->grp_type, coll)) != NULL)
		t->unusable = psprintf("the group column \"%s\" of tracked table \"%s\" cannot name groups: %s",
							   grp_column, name, problem);
	return t;
}

/*
 * Becomes the owner of table t, as PostgreSQL does when it runs code on an
 * owner's behalf (VACUUM, ANALYZE, CREATE INDEX, REFRESH MATERIALIZED VIEW):
 * current_user is the owner, SECURITY_RESTRICTED_OPERATION forbids what
 * could outlive the operation (SET ROLE, SET SESSION AUTHORIZATION,
 * temporary objects, cursors WITH HOLD), and a GUC nest level undoes any
 * setting the owner's code changes, search_path included, at
 * sl_as_owner_end.  Everything that may run code attached to an
 * application table (triggers, CHECK and DEFAULT expressions, generated
 * columns, index expressions, policies, domain checks, casts) happens
 * between the two calls; synclog's own tables are never written there.
 *
 * Cheap (a few assignments and, at the end, one pass over the settings
 * changed in this transaction): push brackets each application-table
 * write with it.  An ERROR in between needs no sl_as_owner_end: the
 * (sub)transaction's abort restores the user and the settings.
 */
void
sl_as_owner_begin(Oid owner, SlAsOwner *save)
{
	GetUserIdAndSecContext(&save->userid, &save->sec_context);
	SetUserIdAndSecContext(owner, save->sec_context | SECURITY_RESTRICTED_OPERATION);
	save->nestlevel = NewGUCNestLevel();
}

void
sl_as_owner_end(SlAsOwner *save)
{
	AtEOXact_GUC(false, save->nestlevel);
	SetUserIdAndSecContext(save->userid, save->sec_context);
}

/*
 * The constraints of table relid that PostgreSQL checks at commit
 * (DEFERRABLE INITIALLY DEFERRED foreign keys and constraint triggers),
 * quoted and comma-separated, or NULL if it has none.  A push cannot write
 * a row that queues such a check: the write runs with the owner's rights,
 * which end with the op, and PostgreSQL refuses to carry a deferred trigger
 * past a security-restricted operation.  Read only to explain that refusal.
 */
char *
sl_deferred_constraints(Oid relid)
{
	Relation	tgrel = table_open(TriggerRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	StringInfoData names;
	List	   *seen = NIL;

	initStringInfo(&names);
	ScanKeyInit(&key, Anum_pg_trigger_tgrelid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(relid));
	scan = systable_beginscan(tgrel, TriggerRelidNameIndexId, true, NULL, 1, &key);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Form_pg_trigger tg = (Form_pg_trigger) GETSTRUCT(tup);
		char	   *name = NULL;

		if (!tg->tginitdeferred || tg->tgenabled == TRIGGER_DISABLED)
			continue;
		/* A foreign key has several triggers: name the constraint once. */
		if (OidIsValid(tg->tgconstraint))
		{
			if (list_member_oid(seen, tg->tgconstraint))
				continue;
			seen = lappend_oid(seen, tg->tgconstraint);
			name = get_constraint_name(tg->tgconstraint);
		}
		if (name == NULL)
			name = NameStr(tg->tgname);
		appendStringInfo(&names, "%s%s", names.len ? ", " : "", quote_identifier(name));
	}
	systable_endscan(scan);
	table_close(tgrel, AccessShareLock);
	return names.len ? names.data : NULL;
}

/*
 * Runs a one-row lookup of synclog.tracked.  The result is allocated in the
 * caller's memory context (SPI calls leave CurrentMemoryContext at SPI's own,
 * which SPI_finish frees).
 */
static SlTable *
sl_table_lookup(const char *sql, Oid argtype, Datum arg)
{
	MemoryContext caller = CurrentMemoryContext;
	SPIPlanPtr	plan = sl_plan(sql, 1, &argtype);
	SlTable    *t;
	int			rc;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	Oid			relid;
	char	   *name,
			   *pk,
			   *grp;

	rc = SPI_execute_plan(plan, &arg, NULL, false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "synclog: tracked-table lookup failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 0)
	{
		MemoryContextSwitchTo(caller);
		return NULL;
	}
	MemoryContextSwitchTo(caller);
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	relid = DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull));
	name = SPI_getvalue(tup, desc, 2);
	pk = SPI_getvalue(tup, desc, 3);
	grp = SPI_getvalue(tup, desc, 4);
	t = sl_table_fill(relid, name, pk, grp);
	SPI_freetuptable(SPI_tuptable);
	return t;
}

/* The tracked table with this wire name, or NULL.  Inside SPI. */
SlTable *
sl_table_by_name(const char *name)
{
	return sl_table_lookup("SELECT tbl::pg_catalog.oid, name, pk_column, group_column "
						   "FROM synclog.tracked WHERE name OPERATOR(pg_catalog.=) $1",
						   TEXTOID, CStringGetTextDatum(name));
}

/* The tracked table with this relation oid, or NULL.  Inside SPI. */
SlTable *
sl_table_by_relid(Oid relid)
{
	return sl_table_lookup("SELECT tbl::pg_catalog.oid, name, pk_column, group_column "
						   "FROM synclog.tracked WHERE tbl OPERATOR(pg_catalog.=) $1",
						   OIDOID, ObjectIdGetDatum(relid));
}

/*
 * A table alias for SQL text that is no column name of relid, so that
 * to_jsonb(alias) means the whole row: "synclog_row", then "synclog_row_"…
 */
char *
sl_row_alias(Oid relid)
{
	StringInfoData a;

	initStringInfo(&a);
	appendStringInfoString(&a, "synclog_row");
	while (get_attnum(relid, a.data) != InvalidAttrNumber)
		appendStringInfoChar(&a, '_');
	return a.data;
}

/* The text form of a datum by its type's output function; palloc'd. */
char *
sl_datum_text(Datum value, Oid typid)
{
	Oid			outfunc;
	bool		varlena;

	getTypeOutputInfo(typid, &outfunc, &varlena);
	return OidOutputFunctionCall(outfunc, value);
}

/*
 * The canonical text of a value of type typid given as text: input then
 * output, so that "05" and "5" name the same integer group.  Raises the input
 * function's error when text is not a valid value.
 */
char *
sl_normalize_text(const char *str, Oid typid, int32 typmod)
{
	Oid			infunc,
				ioparam;
	Datum		d;

	/*
	 * varchar(n) drops trailing spaces beyond n: 'abc   ' is the row 'abc',
	 * so it too goes through the type.
	 */
	if (typid == TEXTOID || (typid == VARCHAROID && typmod < 0))
		return pstrdup(str);
	getTypeInputInfo(typid, &infunc, &ioparam);
	d = OidInputFunctionCall(infunc, (char *) str, ioparam, typmod);
	return sl_datum_text(d, typid);
}

/*
 * A composite datum (a row of an application table) as a JSON object, the
 * encoding of to_jsonb.  Rendering may call casts to json of the columns'
 * types, which their owners define: it runs as owner (sl_as_owner_begin),
 * the owner of the row's table.
 */
Jsonb *
sl_record_jsonb(Oid owner, Datum composite)
{
	SlAsOwner	save;
	Datum		json;

	sl_as_owner_begin(owner, &save);
	json = DirectFunctionCall1(row_to_json, composite);
	sl_as_owner_end(&save);
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(TextDatumGetCString(json))));
}

/*
 * The row as a JSON object (the encoding of to_jsonb, rendered as owner, the
 * owner of its table), keeping only the attribute numbers in keep, or every
 * column when keep is NULL.
 */
Jsonb *
sl_tuple_jsonb(Oid owner, HeapTuple tuple, TupleDesc desc, Bitmapset *keep)
{
	Datum		composite = heap_copy_tuple_as_datum(tuple, desc);
	Jsonb	   *all = sl_record_jsonb(owner, composite);
	JsonbParseState *state = NULL;
	JsonbValue *res;

	if (keep == NULL)
		return all;

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		JsonbValue	key;
		JsonbValue *val;
		JsonbValue	buf;

		if (att->attisdropped || !bms_is_member(att->attnum, keep))
			continue;
		val = sl_json_get(&all->root, NameStr(att->attname), &buf);
		if (val == NULL)
			continue;
		key.type = jbvString;
		key.val.string.val = NameStr(att->attname);
		key.val.string.len = strlen(NameStr(att->attname));
		pushJsonbValue(&state, WJB_KEY, &key);
		pushJsonbValue(&state, WJB_VALUE, val);
	}
	res = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(res);
}

/* The value under key in a JSON object, or NULL; buf holds scalars. */
JsonbValue *
sl_json_get(JsonbContainer *obj, const char *key, JsonbValue *buf)
{
	if (!JsonContainerIsObject(obj))
		return NULL;
	return getKeyJsonValueFromContainer(obj, key, strlen(key), buf);
}

/*
 * The text a JSON value stands for when given to a column: strings as
 * themselves, numbers and booleans in their JSON spelling, containers as
 * JSON text.  NULL for JSON null.
 */
char *
sl_json_text(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return NULL;
		case jbvString:
			return pnstrdup(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out,
													   NumericGetDatum(v->val.numeric)));
		case jbvBool:
			return pstrdup(v->val.boolean ? "true" : "false");
		case jbvBinary:
			{
				StringInfoData s;

				initStringInfo(&s);
				JsonbToCString(&s, v->val.binary.data, v->val.binary.len);
				return s.data;
			}
		default:
			elog(ERROR, "synclog: unexpected JSON value type %d", (int) v->type);
	}
	return NULL;				/* keep compiler quiet */
}

/*
 * Orders two clocks: by hlc, then by client_id in byte order.  Returns <0, 0
 * or >0 like strcmp.
 */
int
sl_clock_cmp(uint64 h1, const char *c1, uint64 h2, const char *c2)
{
	if (h1 != h2)
		return h1 < h2 ? -1 : 1;
	return strcmp(c1, c2);
}

/*
 * The clock that last won field col, from a clocks object.  False when the
 * field has no clock (it was never written by an op: any op wins it).
 */
bool
sl_clock_get(Jsonb *clocks, const char *col, uint64 *hlc, char **client_id)
{
	JsonbValue	buf;
	JsonbValue *entry = sl_json_get(&clocks->root, col, &buf);
	JsonbValue *h,
			   *c;

	if (entry == NULL || entry->type != jbvBinary ||
		!JsonContainerIsArray(entry->val.binary.data))
		return false;
	h = getIthJsonbValueFromContainer(entry->val.binary.data, 0);
	c = getIthJsonbValueFromContainer(entry->val.binary.data, 1);
	if (h == NULL || c == NULL || h->type != jbvString || c->type != jbvString)
		return false;
	if (!sl_hlc_parse(h->val.string.val, h->val.string.len, hlc))
		return false;
	*client_id = pnstrdup(c->val.string.val, c->val.string.len);
	return true;
}

/*
 * A copy of clocks (NULL for none) with every column named in cols (a List
 * of C strings) set to [hlc, client_id].
 */
Jsonb *
sl_clock_entry_set(Jsonb *clocks, List *cols, uint64 hlc, const char *client_id)
{
	JsonbParseState *state = NULL;
	JsonbValue *res;
	char		hex[SL_HLC_TEXT_LEN + 1];
	ListCell   *lc;

	sl_hlc_format(hlc, hex);
	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	if (clocks != NULL && JB_ROOT_IS_OBJECT(clocks))
	{
		JsonbIterator *it = JsonbIteratorInit(&clocks->root);
		JsonbValue	v;
		JsonbIteratorToken tok;

		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok == WJB_KEY || tok == WJB_VALUE)
				pushJsonbValue(&state, tok, &v);
		}
	}
	/* Later keys replace earlier ones when the object is finished. */
	foreach(lc, cols)
	{
		const char *col = lfirst(lc);
		JsonbValue	key,
					elem;

		key.type = jbvString;
		key.val.string.val = (char *) col;
		key.val.string.len = strlen(col);
		pushJsonbValue(&state, WJB_KEY, &key);
		pushJsonbValue(&state, WJB_BEGIN_ARRAY, NULL);
		elem.type = jbvString;
		elem.val.string.val = hex;
		elem.val.string.len = SL_HLC_TEXT_LEN;
		pushJsonbValue(&state, WJB_ELEM, &elem);
		elem.val.string.val = (char *) client_id;
		elem.val.string.len = strlen(client_id);
		pushJsonbValue(&state, WJB_ELEM, &elem);
		pushJsonbValue(&state, WJB_END_ARRAY, NULL);
	}
	res = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(res);
}

/* A random (version 4) UUID in canonical text form, from pg_strong_random. */
void
sl_uuid_text(char *out)
{
	unsigned char b[16];
	static const char hex[] = "0123456789abcdef";
	int			o = 0;

	if (!pg_strong_random(b, sizeof(b)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random bytes")));
	b[6] = (b[6] & 0x0f) | 0x40;
	b[8] = (b[8] & 0x3f) | 0x80;
	for (int i = 0; i < 16; i++)
	{
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[b[i] >> 4];
		out[o++] = hex[b[i] & 0xf];
	}
	out[o] = '\0';
}

PG_FUNCTION_INFO_V1(synclog_row_jsonb);
PG_FUNCTION_INFO_V1(synclog_key_problem);

/*
 * synclog._row_jsonb(tbl regclass, r record) → jsonb: a row of tracked table
 * tbl as to_jsonb renders it, rendered as the table's owner
 * (sl_record_jsonb), for snapshot and snapshot_page.  Refuses a record of
 * any other type, so that it cannot be used to run another table's casts.
 */
Datum
synclog_row_jsonb(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	HeapTupleHeader rec = PG_GETARG_HEAPTUPLEHEADER(1);
	HeapTuple	ctup;
	Oid			owner;
	Oid			rowtype;

	ctup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(ctup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	owner = ((Form_pg_class) GETSTRUCT(ctup))->relowner;
	rowtype = ((Form_pg_class) GETSTRUCT(ctup))->reltype;
	ReleaseSysCache(ctup);
	if (HeapTupleHeaderGetTypeId(rec) != rowtype)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("the record is not a row of table \"%s\"", get_rel_name(relid))));
	PG_RETURN_JSONB_P(sl_record_jsonb(owner, PointerGetDatum(rec)));
}

/*
 * Why column col of table relid cannot be a tracked table's primary key or
 * group column (sl_key_type_problem), or NULL when it can; *missing tells
 * when there is no such column.
 */
static const char *
column_key_problem(Oid relid, const char *col, bool *missing)
{
	AttrNumber	attnum = get_attnum(relid, col);
	Oid			typid,
				coll;
	int32		typmod;

	*missing = (attnum == InvalidAttrNumber);
	if (*missing)
		return NULL;
	get_atttypetypmodcoll(relid, attnum, &typid, &typmod, &coll);
	return sl_key_type_problem(typid, coll);
}

/*
 * synclog._key_problem(tbl regclass, col name) → text: why column col of
 * tbl cannot be a tracked table's primary key or group column, or NULL when
 * it can.
 */
Datum
synclog_key_problem(PG_FUNCTION_ARGS)
{
	bool		missing;
	const char *problem = column_key_problem(PG_GETARG_OID(0), NameStr(*PG_GETARG_NAME(1)), &missing);

	if (problem == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(problem));
}

PG_FUNCTION_INFO_V1(synclog_readable);

/*
 * synclog._readable(tbl regclass, name text, pk name, grp name) → bool:
 * whether the tracked table tbl (called name) may be read for a snapshot
 * now; when not, a WARNING says why and the snapshot leaves it out.
 * Takes the table's ACCESS SHARE lock first (held to the end of the
 * transaction, as the snapshot's own read would), so that no ALTER TABLE
 * can commit between this check and the read, and then looks at the
 * current catalog: the table must still be an ordinary table (a rule can
 * turn a table into a view, whose query would run with synclog's rights)
 * whose key and group column are still of types track() accepts (a key
 * altered to a type with the owner's cast from text would have that cast
 * run by the read's m.row_id::type).
 */
Datum
synclog_readable(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	const char *cols[2] = {NameStr(*PG_GETARG_NAME(2)), NameStr(*PG_GETARG_NAME(3))};
	const char *problem = NULL;
	char		kind;

	LockRelationOid(relid, AccessShareLock);
	kind = get_rel_relkind(relid);
	if (kind == '\0')
		problem = "it no longer exists";
	else if (kind != RELKIND_RELATION)
		problem = "it is no longer an ordinary table";
	for (int i = 0; problem == NULL && i < 2; i++)
	{
		bool		missing;
		const char *p = column_key_problem(relid, cols[i], &missing);

		if (missing)
			problem = psprintf("its column \"%s\" no longer exists", cols[i]);
		else if (p != NULL)
			problem = psprintf("its %s \"%s\": %s", i == 0 ? "primary key" : "group column",
							   cols[i], p);
	}
	if (problem == NULL)
		PG_RETURN_BOOL(true);
	ereport(WARNING,
			(errmsg("synclog: tracked table \"%s\" left out of the snapshot: %s", name, problem),
			 errhint("Restore the table, or call synclog.untrack on it.")));
	PG_RETURN_BOOL(false);
}

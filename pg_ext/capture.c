/*
 * capture.c
 *		The trigger that turns direct SQL writes to a tracked table into ops.
 *
 * A back-office script or another service writing a tracked table with plain
 * INSERT, UPDATE or DELETE must reach clients like any other edit.  The AFTER
 * ROW trigger synclog_capture records each such write as an op with a fresh
 * server clock and client_id "server", carrying only the columns that
 * changed, and moves the row's field clocks and tombstone along.
 *
 * Writes made by push itself are not captured twice: merge.c names the row
 * it writes (sl_push_writing), and the trigger leaves that row alone; rows a
 * cascade touches are captured as usual.  A direct UPDATE that moves a row
 * to another group is a delete for the old group and the whole row for the
 * new one, so that both groups' change streams stay true.  TRUNCATE fires no row triggers, so tracked tables
 * refuse it (synclog_refuse_truncate) rather than silently desynchronize.
 *
 * A server write wins over every op the server has accepted: the clock is
 * taken after observing the row's field clocks.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "synclog.h"

Oid			sl_push_relid = InvalidOid;
const char *sl_push_row = NULL;
static AttrNumber sl_push_pk_attnum = InvalidAttrNumber;

/* merge.c: the row being written now (t NULL: none). */
void
sl_push_writing(SlTable *t, const char *row)
{
	sl_push_relid = t ? t->relid : InvalidOid;
	sl_push_pk_attnum = t ? t->pk_attnum : InvalidAttrNumber;
	sl_push_row = row;
}

PG_FUNCTION_INFO_V1(synclog_capture);
PG_FUNCTION_INFO_V1(synclog_refuse_truncate);
PG_FUNCTION_INFO_V1(synclog_capture_existing);

static char *
attr_text(HeapTuple tup, TupleDesc desc, AttrNumber attnum)
{
	bool		isnull;
	Datum		d = heap_getattr(tup, attnum, desc, &isnull);

	if (isnull)
		return NULL;
	return sl_datum_text(d, TupleDescAttr(desc, attnum - 1)->atttypid);
}

/* The highest clock among a row's field clocks, or 0. */
static uint64
max_clock(Jsonb *clocks)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	uint64		best = 0;
	bool		first_elem = false;

	if (clocks == NULL)
		return 0;
	it = JsonbIteratorInit(&clocks->root);
	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		if (tok == WJB_BEGIN_ARRAY)
			first_elem = true;
		else if (tok == WJB_ELEM && first_elem)
		{
			uint64		h;

			first_elem = false;
			if (v.type == jbvString && sl_hlc_parse(v.val.string.val, v.val.string.len, &h) && h > best)
				best = h;
		}
	}
	return best;
}

/* Records the deletion of a row through SQL.  Inside SPI. */
static void
capture_delete(SlTable *t, const char *row, const char *tuple_grp)
{
	char	   *grp = NULL;
	Jsonb	   *clocks = NULL;
	bool		deleted;
	char		id[37];
	uint64		hlc;

	if (sl_meta_lock(t, row, &grp, &clocks, &deleted, NULL))
	{
		sl_hlc_observe(max_clock(clocks));
		sl_meta_update(t, row, grp, clocks, true, NIL);
	}
	else
	{
		grp = (char *) tuple_grp;
		sl_meta_create(t, row, grp, sl_empty_object(), true, NIL);
	}
	hlc = sl_hlc_now();
	sl_uuid_text(id);
	sl_record_op(id, t->name, row, grp, true, NULL, hlc, SL_SERVER_CLIENT);
}

/*
 * Records a write of newtup made through SQL: an insert when oldtup is NULL,
 * else an update carrying the columns that differ.  Inside SPI.
 */
void
sl_capture_row(SlTable *t, HeapTuple oldtup, HeapTuple newtup, TupleDesc desc)
{
	char	   *row;
	char	   *grp;
	Bitmapset  *changed = NULL;
	List	   *names = NIL;
	char	   *meta_grp = NULL;
	Jsonb	   *clocks = NULL;
	bool		deleted = false;
	bool		exists;
	uint64		hlc;
	char		id[37];

	if (newtup == NULL)
	{
		capture_delete(t, attr_text(oldtup, desc, t->pk_attnum),
					   attr_text(oldtup, desc, t->grp_attnum));
		return;
	}

	row = attr_text(newtup, desc, t->pk_attnum);
	grp = attr_text(newtup, desc, t->grp_attnum);
	if (oldtup != NULL)
	{
		char	   *oldrow = attr_text(oldtup, desc, t->pk_attnum);
		char	   *oldgrp = attr_text(oldtup, desc, t->grp_attnum);

		/* A changed key is the old row deleted and a new row inserted. */
		if (strcmp(oldrow, row) != 0)
		{
			capture_delete(t, oldrow, oldgrp);
			oldtup = NULL;
		}
		else if ((oldgrp == NULL) != (grp == NULL) ||
				 (oldgrp != NULL && strcmp(oldgrp, grp) != 0))
		{
			/* The old group's clients see it go; the new group's get all of it. */
			sl_uuid_text(id);
			sl_record_op(id, t->name, row, oldgrp, true, NULL, sl_hlc_now(), SL_SERVER_CLIENT);
			oldtup = NULL;
		}
	}

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		bool		n1,
					n2;
		Datum		d1,
					d2;

		if (att->attisdropped)
			continue;
		if (oldtup != NULL)
		{
			d1 = heap_getattr(oldtup, att->attnum, desc, &n1);
			d2 = heap_getattr(newtup, att->attnum, desc, &n2);
			if (n1 == n2 && (n1 || datumIsEqual(d1, d2, att->attbyval, att->attlen)))
				continue;
		}
		changed = bms_add_member(changed, att->attnum);
		if (att->attnum != t->pk_attnum)
			names = lappend(names, pstrdup(NameStr(att->attname)));
	}
	if (changed == NULL)
		return;					/* an UPDATE that changed nothing */

	exists = sl_meta_lock(t, row, &meta_grp, &clocks, &deleted, NULL);
	sl_hlc_observe(max_clock(clocks));
	hlc = sl_hlc_now();
	clocks = sl_clock_entry_set(clocks, names, hlc, SL_SERVER_CLIENT);
	if (exists)
		sl_meta_update(t, row, grp, clocks, false, NIL);
	else
		sl_meta_create(t, row, grp, clocks, false, NIL);

	sl_uuid_text(id);
	sl_record_op(id, t->name, row, grp, false,
				 sl_tuple_jsonb(t->owner, newtup, desc, oldtup ? changed : NULL),
				 hlc, SL_SERVER_CLIENT);
}

/* AFTER INSERT OR UPDATE OR DELETE FOR EACH ROW on a tracked table. */
Datum
synclog_capture(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Relation	rel;
	SlTable    *t;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("synclog._capture() must be called as a trigger")));
	if (!TRIGGER_FIRED_AFTER(td->tg_event) || !TRIGGER_FIRED_FOR_ROW(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("synclog._capture() must run AFTER ... FOR EACH ROW")));

	rel = td->tg_relation;
	if (RelationGetRelid(rel) == sl_push_relid && sl_push_row != NULL)
	{
		/* Push records its own write; anything else (a cascade) is ours. */
		HeapTuple	tup = TRIGGER_FIRED_BY_UPDATE(td->tg_event) ?
			td->tg_newtuple : td->tg_trigtuple;
		char	   *row = attr_text(tup, RelationGetDescr(rel), sl_push_pk_attnum);

		if (row != NULL && strcmp(row, sl_push_row) == 0)
			return PointerGetDatum(NULL);
	}

	sl_require_preload();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "synclog: SPI_connect failed");
	t = sl_table_by_relid(RelationGetRelid(rel));
	if (t != NULL && t->unusable)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s", t->unusable),
				 errhint("Change the column back to a type synclog.track accepts, or call synclog.untrack.")));
	if (t != NULL)
	{
		TupleDesc	desc = RelationGetDescr(rel);

		if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
			sl_capture_row(t, NULL, td->tg_trigtuple, desc);
		else if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
			sl_capture_row(t, td->tg_trigtuple, td->tg_newtuple, desc);
		else if (TRIGGER_FIRED_BY_DELETE(td->tg_event))
			sl_capture_row(t, td->tg_trigtuple, NULL, desc);
	}
	SPI_finish();
	return PointerGetDatum(NULL);
}

/* BEFORE TRUNCATE on a tracked table. */
Datum
synclog_refuse_truncate(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("synclog._refuse_truncate() must be called as a trigger")));
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("cannot truncate \"%s\": it is tracked by synclog",
					RelationGetRelationName(td->tg_relation)),
			 errdetail("TRUNCATE fires no row triggers, so clients would never learn that the rows are gone."),
			 errhint("Use DELETE, or call synclog.untrack first.")));
	PG_RETURN_NULL();
}

/*
 * synclog._capture_existing(tbl) → bigint: records every row already in a
 * newly tracked table as a server insert, so clients get them through the
 * change stream.  Returns the number of rows.
 */
Datum
synclog_capture_existing(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	SlTable    *t;
	Portal		portal;
	Relation	rel;
	int64		count = 0;
	StringInfoData sql;

	sl_require_preload();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "synclog: SPI_connect failed");
	t = sl_table_by_relid(relid);
	if (t == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("table with OID %u is not tracked", relid)));

	/*
	 * Whole-row values keep the table's physical layout (dropped columns
	 * included), so they deform with the relation's own descriptor.
	 */
	rel = table_open(relid, AccessShareLock);
	initStringInfo(&sql);
	{
		char	   *alias = sl_row_alias(relid);

		appendStringInfo(&sql, "SELECT %s FROM %s AS %s", alias, t->qualname, alias);
	}
	portal = SPI_cursor_open_with_args(NULL, sql.data, 0, NULL, NULL, NULL, true, 0);
	for (;;)
	{
		SPITupleTable *tt;
		uint64		n;

		SPI_cursor_fetch(portal, true, 1000);
		tt = SPI_tuptable;
		n = SPI_processed;
		if (n == 0)
			break;
		for (uint64 i = 0; i < n; i++)
		{
			bool		isnull;
			HeapTupleHeader th;
			HeapTupleData tup;

			CHECK_FOR_INTERRUPTS();
			th = DatumGetHeapTupleHeader(SPI_getbinval(tt->vals[i], tt->tupdesc, 1, &isnull));
			tup.t_len = HeapTupleHeaderGetDatumLength(th);
			tup.t_data = th;
			tup.t_tableOid = relid;
			ItemPointerSetInvalid(&tup.t_self);
			sl_capture_row(t, NULL, &tup, RelationGetDescr(rel));
		}
		count += n;
		SPI_freetuptable(tt);
	}
	SPI_cursor_close(portal);
	table_close(rel, AccessShareLock);
	SPI_finish();
	PG_RETURN_INT64(count);
}

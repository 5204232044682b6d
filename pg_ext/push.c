/*
 * push.c
 *		synclog.push(token, client_id, ops jsonb) → jsonb
 *
 * Applies a batch of ops in the caller's transaction and answers
 * {"acked": [id…], "rejected": [{"id", "code", "message"}…], "hlc": "…"}.
 *
 * A refused op is not an ERROR: it is a row in "rejected" and the rest of the
 * batch goes on.  The batch runs in one subtransaction; if an op raises an
 * error (a constraint of the application's table, a bad value), the batch is
 * rolled back and applied again with one subtransaction per op, so that op
 * alone is refused (apply_batch).  Errors
 * that say the whole transaction is in trouble (deadlock, serialization
 * failure, cancel, out of memory, internal errors) are re-thrown: the batch
 * fails and the caller retries it, which is safe because ops are idempotent.
 *
 * Checks run cheapest first: shape, token, duplicate id, clock skew; then
 * merge.c locks the row and does the rest.  Ids are answered as the client
 * spelled them; the op log keeps their canonical lowercase form, so
 * "A0…" and "a0…" are the same op.  Bad arguments (not the ops in
 * them) raise an ERROR with SQLSTATE 22xxx.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "mb/pg_wchar.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "synclog.h"

PG_FUNCTION_INFO_V1(synclog_push);
PG_FUNCTION_INFO_V1(synclog_push_hash);

/* Set by merge.c while it converts a field, to name it in invalid_value. */
const char *sl_current_column = NULL;

typedef struct SlReply
{
	StringInfoData acked;
	StringInfoData rejected;
	int			nacked;
	int			nrejected;
} SlReply;

typedef struct SlIdEntry
{
	char		id[40];
} SlIdEntry;

static void
reply_ack(SlReply *r, const char *id)
{
	if (r->nacked++ > 0)
		appendStringInfoChar(&r->acked, ',');
	escape_json(&r->acked, id);
}

static void
reply_reject(SlReply *r, const char *id, const char *code, const char *message)
{
	if (r->nrejected++ > 0)
		appendStringInfoChar(&r->rejected, ',');
	appendStringInfoString(&r->rejected, "{\"id\":");
	if (id)
		escape_json(&r->rejected, id);
	else
		appendStringInfoString(&r->rejected, "null");
	appendStringInfoString(&r->rejected, ",\"code\":");
	escape_json(&r->rejected, code);
	appendStringInfoString(&r->rejected, ",\"message\":");
	escape_json(&r->rejected, message);
	appendStringInfoChar(&r->rejected, '}');
}

/*
 * Canonical lowercase text of a UUID given as 32 hex digits with or without
 * the four hyphens; false for anything else.
 */
static bool
normalize_uuid(const char *s, int len, char *out)
{
	int			o = 0;
	int			ndigits = 0;

	if (len != 32 && len != 36)
		return false;
	for (int i = 0; i < len; i++)
	{
		char		c = s[i];

		if (len == 36 && (i == 8 || i == 13 || i == 18 || i == 23))
		{
			if (c != '-')
				return false;
			continue;
		}
		if (c >= 'A' && c <= 'F')
			c = c - 'A' + 'a';
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
		if (ndigits == 8 || ndigits == 12 || ndigits == 16 || ndigits == 20)
			out[o++] = '-';
		out[o++] = c;
		ndigits++;
	}
	out[o] = '\0';
	return true;
}

/*
 * Parses one element of the ops array into op.  On a malformed op returns
 * false with *raw_id set to the element's "id" when it is a string (so the
 * client can tell which op was refused) and message filled.
 */
static bool
parse_op(JsonbValue *elem, SlOp *op, char *idbuf, const char **raw_id,
		 StringInfo message)
{
	JsonbContainer *obj;
	JsonbValue	b1,
				b2,
				b3,
				b4,
				b5,
				b6;
	JsonbValue *id,
			   *table,
			   *row,
			   *kind,
			   *fields,
			   *hlc;

	*raw_id = NULL;
	if (elem->type != jbvBinary || !JsonContainerIsObject(elem->val.binary.data))
	{
		appendStringInfoString(message, "each op must be a JSON object");
		return false;
	}
	obj = elem->val.binary.data;
	id = sl_json_get(obj, "id", &b1);
	if (id != NULL && id->type == jbvString)
		*raw_id = pnstrdup(id->val.string.val, id->val.string.len);
	if (id == NULL || id->type != jbvString ||
		!normalize_uuid(id->val.string.val, id->val.string.len, idbuf))
	{
		appendStringInfoString(message, "op \"id\" must be a UUID string");
		return false;
	}
	op->id = idbuf;

	table = sl_json_get(obj, "table", &b2);
	if (table == NULL || table->type != jbvString || table->val.string.len == 0)
	{
		appendStringInfoString(message, "op \"table\" must be a non-empty string");
		return false;
	}
	op->table = pnstrdup(table->val.string.val, table->val.string.len);

	row = sl_json_get(obj, "row", &b3);
	if (row == NULL || row->type != jbvString || row->val.string.len == 0)
	{
		appendStringInfoString(message, "op \"row\" must be a non-empty string (the primary key's text form)");
		return false;
	}
	op->row = pnstrdup(row->val.string.val, row->val.string.len);

	kind = sl_json_get(obj, "kind", &b4);
	if (kind != NULL && kind->type == jbvString &&
		kind->val.string.len == 6 && memcmp(kind->val.string.val, "upsert", 6) == 0)
		op->is_delete = false;
	else if (kind != NULL && kind->type == jbvString &&
			 kind->val.string.len == 6 && memcmp(kind->val.string.val, "delete", 6) == 0)
		op->is_delete = true;
	else
	{
		appendStringInfoString(message, "op \"kind\" must be \"upsert\" or \"delete\"");
		return false;
	}

	op->fields = NULL;
	if (!op->is_delete)
	{
		fields = sl_json_get(obj, "fields", &b5);
		if (fields == NULL || fields->type != jbvBinary ||
			!JsonContainerIsObject(fields->val.binary.data))
		{
			appendStringInfoString(message, "an upsert needs \"fields\" as a JSON object of column to value");
			return false;
		}
		op->fields = fields->val.binary.data;
	}

	hlc = sl_json_get(obj, "hlc", &b6);
	if (hlc == NULL || hlc->type != jbvString ||
		!sl_hlc_parse(hlc->val.string.val, hlc->val.string.len, &op->hlc))
	{
		appendStringInfoString(message, "op \"hlc\" must be 16 lowercase hex digits");
		return false;
	}
	return true;
}

/*
 * The grant of the token whose SHA-256 is hash, or NULL for an unknown or
 * revoked token.  Inside SPI.
 */
static SlAuth *
authenticate(bytea *hash)
{
	Oid			argtypes[1] = {BYTEAOID};
	Datum		args[1] = {PointerGetDatum(hash)};
	SPIPlanPtr	plan;
	SlAuth	   *auth;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	Datum	   *elems;
	bool	   *nulls;
	int			n;

	plan = sl_plan("SELECT subject, groups, can_write FROM synclog.tokens "
				   "WHERE token_hash OPERATOR(pg_catalog.=) $1 AND revoked_at IS NULL",
				   1, argtypes);
	if (SPI_execute_plan(plan, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "synclog: token lookup failed");
	if (SPI_processed == 0)
		return NULL;

	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	auth = palloc0(sizeof(SlAuth));
	auth->subject = SPI_getvalue(tup, desc, 1);
	deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(tup, desc, 2, &isnull)),
					  TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	auth->groups = palloc(sizeof(char *) * Max(n, 1));
	for (int i = 0; i < n; i++)
		if (!nulls[i])
			auth->groups[auth->ngroups++] = TextDatumGetCString(elems[i]);
	auth->can_write = DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull));
	return auth;
}

/*
 * The ids among ids[0..n) that the server already has (in the op log or
 * removed by compaction), as a hash set in the caller's memory context.
 * Inside SPI.
 */
static HTAB *
known_ids(char **ids, int n)
{
	MemoryContext caller = CurrentMemoryContext;
	HASHCTL		ctl;
	HTAB	   *set;
	Datum	   *elems;
	int			m = 0;
	Oid			argtypes[1] = {TEXTARRAYOID};
	Datum		args[1];
	SPIPlanPtr	plan;

	ctl.keysize = sizeof(((SlIdEntry *) 0)->id);
	ctl.entrysize = sizeof(SlIdEntry);
	ctl.hcxt = CurrentMemoryContext;
	set = hash_create("synclog op ids", Max(n, 16), &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

	elems = palloc(sizeof(Datum) * Max(n, 1));
	for (int i = 0; i < n; i++)
		if (ids[i] != NULL)
			elems[m++] = CStringGetTextDatum(ids[i]);
	if (m == 0)
		return set;

	args[0] = PointerGetDatum(construct_array(elems, m, TEXTOID, -1, false, TYPALIGN_INT));
	plan = sl_plan("SELECT op_id::pg_catalog.text FROM synclog.ops "
				   "WHERE op_id OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.uuid[]) "
				   "UNION ALL "
				   "SELECT op_id::pg_catalog.text FROM synclog.compacted_ops "
				   "WHERE op_id OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.uuid[])",
				   1, argtypes);
	if (SPI_execute_plan(plan, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "synclog: op id lookup failed");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *id = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);

		hash_search(set, id, HASH_ENTER, NULL);
	}
	MemoryContextSwitchTo(caller);
	return set;
}

/* True when an error means the whole transaction must fail, not one op. */
static bool
error_is_fatal_to_batch(int sqlerrcode)
{
	switch (ERRCODE_TO_CATEGORY(sqlerrcode))
	{
		case ERRCODE_TO_CATEGORY(ERRCODE_TRANSACTION_ROLLBACK):
		case ERRCODE_TO_CATEGORY(ERRCODE_INSUFFICIENT_RESOURCES):
		case ERRCODE_TO_CATEGORY(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE):
		case ERRCODE_TO_CATEGORY(ERRCODE_OPERATOR_INTERVENTION):
		case ERRCODE_TO_CATEGORY(ERRCODE_SYSTEM_ERROR):
		case ERRCODE_TO_CATEGORY(ERRCODE_CONFIG_FILE_ERROR):
		case ERRCODE_TO_CATEGORY(ERRCODE_INTERNAL_ERROR):
			return true;
		default:
			return false;
	}
}

/* What became of one op of the batch. */
typedef struct SlResult
{
	SlOutcome	outcome;
	bool		pending;		/* passed the cheap checks: to be applied */
	const char *code;
	char	   *message;
} SlResult;

/*
 * Classifies an error raised while applying an op: a concurrent push of the
 * same op id (unique violation on the op log) is a duplicate; a bad value is
 * invalid_value, and so is one too large for an index or too deeply
 * nested (program limits); anything else a constraint, trigger or rule of the table
 * raised is constraint_violation.  writing is the table the op was writing
 * when the error came, if any: a constraint it checks at commit explains an
 * insufficient-privilege error.  The caller re-throws errors that
 * error_is_fatal_to_batch() names.
 */
static void
classify_error(ErrorData *edata, Oid writing, SlResult *r, MemoryContext cxt)
{
	StringInfoData msg;
	char	   *deferred;
	MemoryContext old = MemoryContextSwitchTo(cxt);

	if (edata->sqlerrcode == ERRCODE_UNIQUE_VIOLATION &&
		edata->schema_name && strcmp(edata->schema_name, "synclog") == 0 &&
		edata->table_name && strcmp(edata->table_name, "ops") == 0)
	{
		r->outcome = SL_DUPLICATE;
		MemoryContextSwitchTo(old);
		return;
	}
	r->outcome = SL_REJECTED;
	initStringInfo(&msg);
	if (sl_current_column)
	{
		/*
		 * Converting a field's value: whatever the type's input function
		 * raises (tsvector's syntax error is 42601) is the value's fault.
		 */
		r->code = "invalid_value";
		appendStringInfo(&msg, "column \"%s\": ", sl_current_column);
	}
	else if (ERRCODE_TO_CATEGORY(edata->sqlerrcode) == ERRCODE_DATA_EXCEPTION ||
			 ERRCODE_TO_CATEGORY(edata->sqlerrcode) == ERRCODE_PROGRAM_LIMIT_EXCEEDED)
		r->code = "invalid_value";
	else if (edata->sqlerrcode == ERRCODE_INSUFFICIENT_PRIVILEGE && OidIsValid(writing) &&
			 (deferred = sl_deferred_constraints(writing)) != NULL)
	{
		/*
		 * "cannot fire deferred trigger within security-restricted
		 * operation": say which constraints, and what to do about them.
		 */
		r->code = "constraint_violation";
		appendStringInfo(&msg, "%s: table \"%s\" has constraints checked at commit (%s), "
						 "and synclog writes a pushed row with the table owner's rights, "
						 "which end with the op; declare them DEFERRABLE INITIALLY IMMEDIATE "
						 "or NOT DEFERRABLE", edata->message, get_rel_name(writing), deferred);
		r->message = msg.data;
		MemoryContextSwitchTo(old);
		return;
	}
	else
		r->code = "constraint_violation";
	appendStringInfoString(&msg, edata->message);

	/*
	 * A unique or exclusion violation's detail shows the conflicting key,
	 * and an exclusion's the other row's: both may be another group's data.
	 */
	if (edata->detail &&
		edata->sqlerrcode != ERRCODE_UNIQUE_VIOLATION &&
		edata->sqlerrcode != ERRCODE_EXCLUSION_VIOLATION)
		appendStringInfo(&msg, " (%s)", edata->detail);
	r->message = msg.data;
	MemoryContextSwitchTo(old);
}

/*
 * Applies the pending ops of the batch, in order.  With per_op false the
 * whole batch runs in one subtransaction, and the first op that raises an
 * error rolls it all back and makes this return false: the caller then runs
 * the batch again with per_op true, one subtransaction per op, so that the
 * failing op is refused alone.  Most batches never fail, and one
 * subtransaction per batch keeps transactions far from the 64 subxids a
 * backend can advertise before every snapshot in the cluster gets slower.
 *
 * Refusals decided by sl_apply_op (SL_REJECTED) happen before it writes
 * anything, so they need no rollback in either mode.  Results are allocated
 * in cxt.  Errors that doom the whole transaction are re-thrown.
 */
static bool
apply_batch(SlOp *ops, SlTable **tables, SlResult *results, int nops,
			const SlAuth *auth, bool per_op, MemoryContext cxt)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	HASHCTL		ctl;
	HTAB	   *applied;
	volatile int current = -1;
	volatile int start = 0;
	volatile bool done = false;
	volatile bool ok = true;

	ctl.keysize = sizeof(((SlIdEntry *) 0)->id);
	ctl.entrysize = sizeof(SlIdEntry);
	ctl.hcxt = cxt;
	applied = hash_create("synclog applied ids", Max(nops, 16), &ctl,
						  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

	while (!done)
	{
		if (!per_op)
		{
			BeginInternalSubTransaction(NULL);
			MemoryContextSwitchTo(oldcontext);
			/* The batch's op log rows go in with one INSERT, at its end. */
			sl_oplog_defer(cxt);
		}
		PG_TRY();
		{
			for (int i = start; i < nops; i++)
			{
				SlResult   *r = &results[i];
				StringInfoData msg;
				MemoryContext spi;

				if (!r->pending)
					continue;
				CHECK_FOR_INTERRUPTS();
				current = i;
				if (hash_search(applied, ops[i].id, HASH_FIND, NULL))
				{
					r->outcome = SL_DUPLICATE;
					if (per_op)
						r->pending = false;
					continue;
				}
				if (per_op)
				{
					BeginInternalSubTransaction(NULL);
					MemoryContextSwitchTo(oldcontext);
				}
				if (SPI_connect() != SPI_OK_CONNECT)
					elog(ERROR, "synclog: SPI_connect failed");
				spi = MemoryContextSwitchTo(cxt);
				initStringInfo(&msg);
				MemoryContextSwitchTo(spi);

				r->outcome = sl_apply_op(&ops[i], tables[i], auth, &r->code, &msg);
				SPI_finish();
				if (r->outcome == SL_REJECTED)
					r->message = msg.data;
				else
					hash_search(applied, ops[i].id, HASH_ENTER, NULL);
				sl_current_column = NULL;

				if (per_op)
				{
					ReleaseCurrentSubTransaction();
					MemoryContextSwitchTo(oldcontext);
					CurrentResourceOwner = oldowner;
					r->pending = false;
				}
			}
			if (!per_op)
			{
				if (SPI_connect() != SPI_OK_CONNECT)
					elog(ERROR, "synclog: SPI_connect failed");
				current = -1;
				sl_oplog_flush();
				SPI_finish();
				ReleaseCurrentSubTransaction();
				MemoryContextSwitchTo(oldcontext);
				CurrentResourceOwner = oldowner;
			}
			done = true;
		}
		PG_CATCH();
		{
			ErrorData  *edata;
			Oid			writing = sl_push_relid;	/* the table being written, if any */

			MemoryContextSwitchTo(oldcontext);
			edata = CopyErrorData();
			FlushErrorState();
			RollbackAndReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(oldcontext);
			CurrentResourceOwner = oldowner;
			sl_push_writing(NULL, NULL);
			sl_oplog_discard();

			if (error_is_fatal_to_batch(edata->sqlerrcode))
				ReThrowError(edata);
			if (per_op)
			{
				/* Only op `current` was rolled back: refuse it, go on after it. */
				classify_error(edata, writing, &results[current], cxt);
				if (results[current].outcome == SL_DUPLICATE)
					hash_search(applied, ops[current].id, HASH_ENTER, NULL);
				results[current].pending = false;
				start = current + 1;
			}
			else
			{
				ok = false;		/* everything rolled back: run again per op */
				done = true;
			}
			sl_current_column = NULL;
			FreeErrorData(edata);
		}
		PG_END_TRY();
	}
	return ok;
}

/*
 * The SHA-256 of a token's UTF-8 text, as synclog.tokens keeps it (what
 * sha256(convert_to(token, 'UTF8')) gives in SQL).
 */
bytea *
sl_token_hash(text *token)
{
	int			len = VARSIZE_ANY_EXHDR(token);
	const char *utf8 = pg_server_to_any(VARDATA_ANY(token), len, PG_UTF8);
	bytea	   *hash = palloc(VARHDRSZ + PG_SHA256_DIGEST_LENGTH);
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);

	/* The input itself when no conversion was needed, else a C string. */
	if (utf8 != VARDATA_ANY(token))
		len = strlen(utf8);
	if (pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) utf8, len) < 0 ||
		pg_cryptohash_final(ctx, (uint8 *) VARDATA(hash), PG_SHA256_DIGEST_LENGTH) < 0)
		elog(ERROR, "synclog: could not compute SHA-256: %s", pg_cryptohash_error(ctx));
	pg_cryptohash_free(ctx);
	SET_VARSIZE(hash, VARHDRSZ + PG_SHA256_DIGEST_LENGTH);
	return hash;
}

static Datum push_batch(bytea *hash, FunctionCallInfo fcinfo);

/* synclog.push(token text, client_id text, ops jsonb) → jsonb */
Datum
synclog_push(PG_FUNCTION_ARGS)
{
	sl_require_preload();
	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("synclog.push needs a token")));
	return push_batch(sl_token_hash(PG_GETARG_TEXT_PP(0)), fcinfo);
}

/*
 * synclog.push_hash(token_hash bytea, client_id text, ops jsonb) → jsonb:
 * push for a caller that holds the token and sends only its SHA-256 (the
 * gateway), so that the token never appears in a statement or its
 * parameters, whatever the server logs.
 */
Datum
synclog_push_hash(PG_FUNCTION_ARGS)
{
	bytea	   *hash;

	sl_require_preload();
	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("synclog.push_hash needs a token hash")));
	hash = PG_GETARG_BYTEA_PP(0);
	if (VARSIZE_ANY_EXHDR(hash) != PG_SHA256_DIGEST_LENGTH)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("a token hash is %d bytes, not %d", PG_SHA256_DIGEST_LENGTH,
							   (int) VARSIZE_ANY_EXHDR(hash)),
						errhint("Pass sha256(convert_to(token, 'UTF8')).")));
	return push_batch((bytea *) PG_DETOAST_DATUM_COPY(PG_GETARG_DATUM(0)), fcinfo);
}

/* Both entry points: the batch of arguments 1 and 2 for the token of hash. */
static Datum
push_batch(bytea *hash, FunctionCallInfo fcinfo)
{
	char	   *client_id;
	Jsonb	   *ops;
	int			nops;
	SlReply		reply;
	SlAuth	   *auth;
	HTAB	   *known;
	char	  **ids;
	char	  (*idbufs)[40];
	SlOp	   *parsed;
	bool	   *ok;
	const char **raw_ids;
	char	  **parse_errors;
	SlTable   **tables;
	SlResult   *results;
	bool		any_pending = false;
	MemoryContext outer = CurrentMemoryContext;
	StringInfoData out;
	char		hex[SL_HLC_TEXT_LEN + 1];
	uint64		wall_limit;

	if (PG_ARGISNULL(1))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("synclog.push needs a client_id")));
	if (PG_ARGISNULL(2))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("synclog.push needs ops, a JSON array")));

	client_id = text_to_cstring(PG_GETARG_TEXT_PP(1));
	ops = PG_GETARG_JSONB_P(2);

	if (strlen(client_id) < 1 || strlen(client_id) > SL_MAX_CLIENT_ID)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("client_id must be 1 to %d bytes, not %zu",
							   SL_MAX_CLIENT_ID, strlen(client_id)),
						errhint("A client picks its id once, a UUID, and keeps it.")));
	if (strcmp(client_id, SL_SERVER_CLIENT) == 0)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("client_id \"%s\" is reserved for writes made directly in SQL",
							   SL_SERVER_CLIENT)));
	if (!JB_ROOT_IS_ARRAY(ops) || JB_ROOT_IS_SCALAR(ops))
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("ops must be a JSON array of ops"),
						errhint("Pass e.g. '[{\"id\": \"…\", \"table\": \"issues\", \"row\": \"…\", \"kind\": \"upsert\", \"fields\": {…}, \"hlc\": \"…\"}]'.")));

	nops = JB_ROOT_COUNT(ops);
	initStringInfo(&reply.acked);
	initStringInfo(&reply.rejected);
	reply.nacked = reply.nrejected = 0;

	ids = palloc0(sizeof(char *) * Max(nops, 1));
	idbufs = palloc0(sizeof(*idbufs) * Max(nops, 1));
	parsed = palloc0(sizeof(SlOp) * Max(nops, 1));
	ok = palloc0(sizeof(bool) * Max(nops, 1));
	raw_ids = palloc0(sizeof(char *) * Max(nops, 1));
	parse_errors = palloc0(sizeof(char *) * Max(nops, 1));
	tables = palloc0(sizeof(SlTable *) * Max(nops, 1));
	results = palloc0(sizeof(SlResult) * Max(nops, 1));

	/* Parse every op first: the duplicate check wants all ids at once. */
	for (int i = 0; i < nops; i++)
	{
		JsonbValue *elem = getIthJsonbValueFromContainer(&ops->root, i);
		StringInfoData msg;

		initStringInfo(&msg);
		parsed[i].client_id = client_id;
		ok[i] = parse_op(elem, &parsed[i], idbufs[i], &raw_ids[i], &msg);
		if (ok[i])
			ids[i] = idbufs[i];
		else
			parse_errors[i] = msg.data;
	}

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "synclog: SPI_connect failed");
	auth = authenticate(hash);
	if (auth)
	{
		SlAuth	   *copy = MemoryContextAllocZero(outer, sizeof(SlAuth));

		copy->subject = MemoryContextStrdup(outer, auth->subject);
		copy->can_write = auth->can_write;
		copy->groups = MemoryContextAlloc(outer, sizeof(char *) * Max(auth->ngroups, 1));
		for (int i = 0; i < auth->ngroups; i++)
			copy->groups[copy->ngroups++] = MemoryContextStrdup(outer, auth->groups[i]);
		auth = copy;
	}
	known = NULL;
	if (auth && auth->can_write && nops <= sl_max_batch_ops)
	{
		MemoryContextSwitchTo(outer);
		known = known_ids(ids, nops);
		/* Each distinct table once per batch; tables[i] stays NULL if untracked. */
		for (int i = 0; i < nops; i++)
		{
			bool		seen = false;

			if (!ok[i])
				continue;
			for (int j = 0; j < i && !seen; j++)
				if (ok[j] && strcmp(parsed[j].table, parsed[i].table) == 0)
				{
					tables[i] = tables[j];
					seen = true;
				}
			if (!seen)
				tables[i] = sl_table_by_name(parsed[i].table);
		}
	}
	SPI_finish();
	MemoryContextSwitchTo(outer);

	/* The cheap checks, in the order a client can act on them. */
	wall_limit = sl_wall_ms() + (uint64) sl_max_clock_skew_ms;
	for (int i = 0; i < nops; i++)
	{
		SlOp	   *op = &parsed[i];
		SlResult   *r = &results[i];

		r->outcome = SL_REJECTED;
		if (!ok[i])
		{
			r->code = "invalid_op";
			r->message = parse_errors[i];
		}
		else if (nops > sl_max_batch_ops)
		{
			r->code = "batch_too_large";
			r->message = psprintf("the batch has %d ops; synclog.max_batch_ops is %d",
								  nops, sl_max_batch_ops);
		}
		else if (auth == NULL)
		{
			r->code = "unauthorized";
			r->message = "the token is unknown or revoked";
		}
		else if (!auth->can_write)
		{
			r->code = "read_only";
			r->message = psprintf("the token of \"%s\" is read-only", auth->subject);
		}
		else if (hash_search(known, op->id, HASH_FIND, NULL))
			r->outcome = SL_DUPLICATE;
		else if ((op->hlc >> 16) > wall_limit)
		{
			r->code = "clock_skew";
			r->message = psprintf("the op's clock is %llu ms ahead of the server's; synclog.max_clock_skew is %d ms",
								  (unsigned long long) ((op->hlc >> 16) - (wall_limit - sl_max_clock_skew_ms)),
								  sl_max_clock_skew_ms);
		}
		else
			r->pending = any_pending = true;
	}

	if (any_pending && !apply_batch(parsed, tables, results, nops, auth, false, outer))
		(void) apply_batch(parsed, tables, results, nops, auth, true, outer);

	for (int i = 0; i < nops; i++)
	{
		SlResult   *r = &results[i];

		switch (r->outcome)
		{
			case SL_APPLIED:
				sl_hlc_observe(parsed[i].hlc);
				/* FALLTHROUGH */
			case SL_DUPLICATE:
				reply_ack(&reply, raw_ids[i]);
				break;
			case SL_REJECTED:
				reply_reject(&reply, raw_ids[i], r->code, r->message);
				break;
		}
	}

	sl_hlc_format(sl_hlc_now(), hex);
	initStringInfo(&out);
	appendStringInfo(&out, "{\"acked\":[%s],\"rejected\":[%s],\"hlc\":\"%s\"}",
					 reply.acked.data, reply.rejected.data, hex);
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(out.data)));
}

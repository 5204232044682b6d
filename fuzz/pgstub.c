/*
 * fuzz/pgstub.c: the backend services of pgstub.h.  Compiled against the
 * server's headers, so every stub has the backend's exact prototype.
 */
#include "postgres.h"

#include <stdio.h>
#include <stdlib.h>

#include "access/xact.h"
#include "common/cryptohash.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "synclog.h"
#include "pgstub.h"

/* port.h maps these to libpgport's; the C library's will do here. */
#undef fprintf
#undef vsnprintf

int64_t pgstub_now;

/* ------------------------------------------------------------ the arena */

typedef struct chunk {
	struct chunk *next;
	max_align_t data[];
} chunk;

static chunk *arena;

void
pgstub_reset(void)
{
	while (arena) {
		chunk *n = arena->next;
		free(arena);
		arena = n;
	}
}

void *
palloc(Size size)
{
	chunk *c = malloc(sizeof *c + size);

	if (c == NULL)
		abort();
	c->next = arena;
	arena = c;
	return c->data;
}

void *
palloc0(Size size)
{
	void *p = palloc(size);

	memset(p, 0, size);
	return p;
}

void *
repalloc(void *pointer, Size size)
{
	/* The arena never frees one chunk: the old copy stays until the reset. */
	void *p = palloc(size);

	memcpy(p, pointer, size); /* callers only grow (StringInfo) */
	return p;
}

char *
pnstrdup(const char *in, Size len)
{
	Size n = strnlen(in, len);
	char *p = palloc(n + 1);

	memcpy(p, in, n);
	p[n] = '\0';
	return p;
}

char *
pstrdup(const char *in)
{
	return pnstrdup(in, strlen(in));
}

/* ------------------------------------------------------------ StringInfo */

void
initStringInfo(StringInfo str)
{
	str->maxlen = 64;
	str->data = palloc(str->maxlen);
	str->len = 0;
	str->data[0] = '\0';
	str->cursor = 0;
}

static void
grow(StringInfo str, int needed)
{
	int newlen = str->maxlen;
	char *old = str->data;

	if (str->len + needed + 1 <= str->maxlen)
		return;
	while (newlen < str->len + needed + 1)
		newlen *= 2;
	str->data = palloc(newlen);
	memcpy(str->data, old, str->len + 1);
	str->maxlen = newlen;
}

void
appendBinaryStringInfo(StringInfo str, const char *data, int datalen)
{
	grow(str, datalen);
	memcpy(str->data + str->len, data, datalen);
	str->len += datalen;
	str->data[str->len] = '\0';
}

void
appendStringInfoString(StringInfo str, const char *s)
{
	appendBinaryStringInfo(str, s, (int) strlen(s));
}

void
appendStringInfoChar(StringInfo str, char ch)
{
	appendBinaryStringInfo(str, &ch, 1);
}

void
appendStringInfo(StringInfo str, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (n < 0 || n >= (int) sizeof buf)
		abort(); /* the fuzzed paths format short messages only */
	appendBinaryStringInfo(str, buf, n);
}

/* ------------------------------------------------------------ clock, errors */

TimestampTz
GetCurrentTimestamp(void)
{
	return pgstub_now;
}

/* An ereport reached: the fuzzed paths raise none (hlc.c's preload check is
 * satisfied by the targets), so it is reported as a crash. */
bool
errstart_cold(int elevel, const char *domain)
{
	(void) domain;
	fprintf(stderr, "pgstub: ereport(%d) raised\n", elevel);
	return true;
}

bool
errstart(int elevel, const char *domain)
{
	return errstart_cold(elevel, domain);
}

void
errfinish(const char *filename, int lineno, const char *funcname)
{
	fprintf(stderr, "pgstub: ereport at %s:%d (%s)\n", filename, lineno, funcname);
	abort();
}

int errcode(int sqlerrcode) { (void) sqlerrcode; return 0; }
int errmsg(const char *fmt, ...) { (void) fmt; return 0; }
int errmsg_internal(const char *fmt, ...) { (void) fmt; return 0; }
int errhint(const char *fmt, ...) { (void) fmt; return 0; }

/* ------------------------------------------------------------ never reached */

#define UNREACHED() \
	do { \
		fprintf(stderr, "pgstub: %s called: not available without a backend\n", __func__); \
		abort(); \
	} while (0)

MemoryContext CurrentMemoryContext;
ResourceOwner CurrentResourceOwner;
volatile sig_atomic_t InterruptPending;
sigjmp_buf *PG_exception_stack;
ErrorContextCallback *error_context_stack;
uint64 SPI_processed;
SPITupleTable *SPI_tuptable;
int sl_max_batch_ops = 1000;
int sl_max_clock_skew_ms = 60000;

void BeginInternalSubTransaction(const char *name) { (void) name; UNREACHED(); }
void ReleaseCurrentSubTransaction(void) { UNREACHED(); }
void RollbackAndReleaseCurrentSubTransaction(void) { UNREACHED(); }
ErrorData *CopyErrorData(void) { UNREACHED(); }
void FlushErrorState(void) { UNREACHED(); }
void FreeErrorData(ErrorData *edata) { (void) edata; UNREACHED(); }
void ReThrowError(ErrorData *edata) { (void) edata; UNREACHED(); }
void ProcessInterrupts(void) { UNREACHED(); }
Datum DirectFunctionCall1Coll(PGFunction func, Oid collation, Datum arg1)
{ (void) func; (void) collation; (void) arg1; UNREACHED(); }
void *MemoryContextAlloc(MemoryContext context, Size size) { (void) context; (void) size; UNREACHED(); }
void *MemoryContextAllocZero(MemoryContext context, Size size) { (void) context; (void) size; UNREACHED(); }
char *MemoryContextStrdup(MemoryContext context, const char *string) { (void) context; (void) string; UNREACHED(); }
int SPI_connect(void) { UNREACHED(); }
int SPI_finish(void) { UNREACHED(); }
int SPI_execute_plan(SPIPlanPtr plan, Datum *Values, const char *Nulls, bool read_only, long count)
{ (void) plan; (void) Values; (void) Nulls; (void) read_only; (void) count; UNREACHED(); }
Datum SPI_getbinval(HeapTuple tuple, TupleDesc tupdesc, int fnumber, bool *isnull)
{ (void) tuple; (void) tupdesc; (void) fnumber; (void) isnull; UNREACHED(); }
char *SPI_getvalue(HeapTuple tuple, TupleDesc tupdesc, int fnumber)
{ (void) tuple; (void) tupdesc; (void) fnumber; UNREACHED(); }
ArrayType *construct_array(Datum *elems, int nelems, Oid elmtype, int elmlen, bool elmbyval, char elmalign)
{ (void) elems; (void) nelems; (void) elmtype; (void) elmlen; (void) elmbyval; (void) elmalign; UNREACHED(); }
void deconstruct_array(ArrayType *array, Oid elmtype, int elmlen, bool elmbyval, char elmalign,
                       Datum **elemsp, bool **nullsp, int *nelemsp)
{ (void) array; (void) elmtype; (void) elmlen; (void) elmbyval; (void) elmalign; (void) elemsp; (void) nullsp; (void) nelemsp; UNREACHED(); }
text *cstring_to_text(const char *s) { (void) s; UNREACHED(); }
char *text_to_cstring(const text *t) { (void) t; UNREACHED(); }
void escape_json(StringInfo buf, const char *str) { (void) buf; (void) str; UNREACHED(); }
JsonbValue *getIthJsonbValueFromContainer(JsonbContainer *sheader, uint32 i)
{ (void) sheader; (void) i; UNREACHED(); }
HTAB *hash_create(const char *tabname, long nelem, const HASHCTL *info, int flags)
{ (void) tabname; (void) nelem; (void) info; (void) flags; UNREACHED(); }
void *hash_search(HTAB *hashp, const void *keyPtr, HASHACTION action, bool *foundPtr)
{ (void) hashp; (void) keyPtr; (void) action; (void) foundPtr; UNREACHED(); }
Datum jsonb_in(PG_FUNCTION_ARGS) { (void) fcinfo; UNREACHED(); }
struct varlena *pg_detoast_datum(struct varlena *datum) { (void) datum; UNREACHED(); }
struct varlena *pg_detoast_datum_packed(struct varlena *datum) { (void) datum; UNREACHED(); }
struct varlena *pg_detoast_datum_copy(struct varlena *datum) { (void) datum; UNREACHED(); }
char *pg_server_to_any(const char *s, int len, int encoding) { (void) s; (void) len; (void) encoding; UNREACHED(); }
pg_cryptohash_ctx *pg_cryptohash_create(pg_cryptohash_type type) { (void) type; UNREACHED(); }
int pg_cryptohash_init(pg_cryptohash_ctx *ctx) { (void) ctx; UNREACHED(); }
int pg_cryptohash_update(pg_cryptohash_ctx *ctx, const uint8 *data, size_t len) { (void) ctx; (void) data; (void) len; UNREACHED(); }
int pg_cryptohash_final(pg_cryptohash_ctx *ctx, uint8 *dest, size_t len) { (void) ctx; (void) dest; (void) len; UNREACHED(); }
void pg_cryptohash_free(pg_cryptohash_ctx *ctx) { (void) ctx; UNREACHED(); }
const char *pg_cryptohash_error(pg_cryptohash_ctx *ctx) { (void) ctx; UNREACHED(); }
char *psprintf(const char *fmt, ...) { (void) fmt; UNREACHED(); }
SlOutcome sl_apply_op(const SlOp *op, SlTable *t, const SlAuth *auth, const char **code, StringInfo message)
{ (void) op; (void) t; (void) auth; (void) code; (void) message; UNREACHED(); }
SPIPlanPtr sl_plan(const char *sql, int nargs, Oid *argtypes) { (void) sql; (void) nargs; (void) argtypes; UNREACHED(); }
void sl_push_writing(SlTable *t, const char *row) { (void) t; (void) row; UNREACHED(); }
void sl_oplog_defer(MemoryContext cxt) { (void) cxt; UNREACHED(); }
Oid sl_push_relid = InvalidOid;
char *sl_deferred_constraints(Oid relid) { (void) relid; UNREACHED(); }
char *get_rel_name(Oid relid) { (void) relid; UNREACHED(); }
void sl_oplog_flush(void) { UNREACHED(); }
void sl_oplog_discard(void) { UNREACHED(); }
SlTable *sl_table_by_name(const char *name) { (void) name; UNREACHED(); }

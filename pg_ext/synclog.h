/*
 * synclog.h
 *		Declarations shared by the modules of the synclog extension.
 *
 * The extension is the single source of truth of a synclog deployment: it
 * keeps the op log beside the application's tables, reconciles concurrent
 * edits by per-field last-writer-wins, numbers committed changes with a
 * gap-free seq (sequencer.c) and authenticates tokens.  Modules:
 *
 *	synclog.c	_PG_init, GUCs, the hooks that tie the modules together
 *	hlc.c		the server's hybrid logical clock, in shared memory
 *	util.c		saved-plan cache, tracked-table lookup, JSON helpers
 *	push.c		synclog.push(): parsing, authorization, one subxact per op
 *	merge.c		applying one op to its row: LWW, tombstones, op log
 *	capture.c	the trigger that turns direct SQL writes into ops
 *	sequencer.c	the launcher and per-database sequencer workers
 *	auth.c		token generation
 *
 * Words follow DESIGN.md: op, change, seq, cursor, group, clock.
 */
#ifndef SYNCLOG_H
#define SYNCLOG_H

#include "postgres.h"

#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "nodes/bitmapset.h"
#include "utils/jsonb.h"

/* Settings (synclog.c) */
extern int	sl_max_clock_skew_ms;
extern int	sl_retention_s;
extern int	sl_max_batch_ops;

/* The client_id of ops captured from direct SQL writes. */
#define SL_SERVER_CLIENT "server"
#define SL_MAX_CLIENT_ID 64

/*
 * hlc.c: 48 bits of Unix milliseconds then a 16-bit counter.  Text form is
 * 16 lowercase hex digits, so that string order is clock order.
 */
#define SL_HLC_TEXT_LEN 16
extern void sl_require_preload(void);
extern Size sl_hlc_shmem_size(void);
extern void sl_hlc_shmem_init(void *addr);
extern uint64 sl_wall_ms(void);
extern uint64 sl_hlc_now(void);
extern void sl_hlc_observe(uint64 remote);
extern bool sl_hlc_parse(const char *s, int len, uint64 *out);
extern void sl_hlc_format(uint64 hlc, char *out);	/* out: 17 bytes */

/* sequencer.c */
extern Size sl_sequencer_shmem_size(void);
extern void sl_sequencer_shmem_init(void *addr);
extern void sl_sequencer_register_launcher(void);
extern void sl_sequencer_xact_init(void);
extern void sl_note_ops_written(void);
extern void sl_sequencer_before_dropdb(const char *dbname);
extern int64 sl_compact(void);

/*
 * util.c: what we know of one tracked table, looked up by wire name or by
 * relation.  All strings are palloc'd in the caller's context.
 */
typedef struct SlTable
{
	Oid			relid;
	char	   *name;			/* the table's name on the wire */
	char	   *qualname;		/* schema-qualified, quoted, for SQL text */
	AttrNumber	pk_attnum;
	char	   *pk_column;
	Oid			pk_type;
	int32		pk_typmod;
	AttrNumber	grp_attnum;
	char	   *grp_column;
	Oid			grp_type;
	int32		grp_typmod;
	Oid			owner;			/* the table's owner: its code runs as this role */
	char	   *unusable;		/* why ops cannot name rows of it, or NULL */
} SlTable;

/* util.c: running code attached to an application table as its owner. */
typedef struct SlAsOwner
{
	Oid			userid;
	int			sec_context;
	int			nestlevel;
} SlAsOwner;

extern void sl_as_owner_begin(Oid owner, SlAsOwner *save);
extern void sl_as_owner_end(SlAsOwner *save);
extern const char *sl_key_type_problem(Oid typid, Oid coll);
extern char *sl_deferred_constraints(Oid relid);

extern SlTable *sl_table_by_name(const char *name);
extern SlTable *sl_table_by_relid(Oid relid);
extern char *sl_row_alias(Oid relid);

extern SPIPlanPtr sl_plan(const char *sql, int nargs, Oid *argtypes);
extern char *sl_datum_text(Datum value, Oid typid);
extern char *sl_normalize_text(const char *text, Oid typid, int32 typmod);
extern Jsonb *sl_tuple_jsonb(Oid owner, HeapTuple tuple, TupleDesc desc, Bitmapset *keep);
extern Jsonb *sl_record_jsonb(Oid owner, Datum composite);
extern JsonbValue *sl_json_get(JsonbContainer *obj, const char *key, JsonbValue *buf);
extern char *sl_json_text(JsonbValue *v);
extern Jsonb *sl_clock_entry_set(Jsonb *clocks, List *cols, uint64 hlc, const char *client_id);
extern bool sl_clock_get(Jsonb *clocks, const char *col, uint64 *hlc, char **client_id);
extern int	sl_clock_cmp(uint64 h1, const char *c1, uint64 h2, const char *c2);
extern void sl_uuid_text(char *out);	/* out: 37 bytes, a random v4 UUID */

/*
 * merge.c: the op as push.c parsed it, and the outcome of applying it.
 */
typedef struct SlOp
{
	const char *id;				/* normalized UUID text */
	const char *table;
	const char *row;
	bool		is_delete;
	JsonbContainer *fields;		/* NULL for a delete */
	uint64		hlc;
	const char *client_id;
} SlOp;

typedef enum SlOutcome
{
	SL_APPLIED,
	SL_DUPLICATE,
	SL_REJECTED
} SlOutcome;

typedef struct SlAuth
{
	char	   *subject;
	char	  **groups;
	int			ngroups;
	bool		can_write;
} SlAuth;

extern bytea *sl_token_hash(text *token);	/* push.c */

extern SlOutcome sl_apply_op(const SlOp *op, SlTable *t, const SlAuth *auth,
							 const char **code, StringInfo message);
extern bool sl_meta_lock(SlTable *t, const char *row, char **grp, Jsonb **clocks,
						 bool *deleted, List **tomb_groups);
extern bool sl_meta_create(SlTable *t, const char *row, const char *grp, Jsonb *clocks,
						   bool deleted, List *tomb_groups);
extern void sl_meta_update(SlTable *t, const char *row, const char *grp, Jsonb *clocks,
						   bool deleted, List *tomb_groups);
extern void sl_app_delete(SlTable *t, const char *row);
extern Jsonb *sl_empty_object(void);
extern void sl_record_op(const char *op_id, const char *table, const char *row,
						 const char *grp, bool is_delete, Jsonb *fields,
						 uint64 hlc, const char *client_id);
extern void sl_oplog_defer(MemoryContext cxt);
extern void sl_oplog_flush(void);
extern void sl_oplog_discard(void);

/*
 * capture.c: push names the row it is writing (relation and canonical
 * primary-key text) so that the capture trigger leaves that one write alone;
 * cascades to other rows are still captured.
 */
extern Oid	sl_push_relid;
extern const char *sl_push_row;
extern void sl_push_writing(SlTable *t, const char *row);
extern void sl_capture_row(SlTable *t, HeapTuple oldtup, HeapTuple newtup,
						   TupleDesc desc);

#endif							/* SYNCLOG_H */

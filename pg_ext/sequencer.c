/*
 * sequencer.c
 *		The sequencer: gap-free, commit-ordered seq numbers for the op log.
 *
 * Pushing transactions write ops with seq NULL.  One background worker per
 * database ("the sequencer") stamps seq on every op committed since its last
 * pass, in one transaction per pass, advances synclog.state.high_water in
 * that same transaction, and sends NOTIFY synclog, '<high_water>' at its
 * commit.  Passes are serial and each commits before the next begins, so a
 * reader whose snapshot shows seq N can never later see a new change with
 * seq <= N: the property readers of changes() rely on.  The counter lives in
 * the same transaction as the stamps, so a crash loses or doubles nothing.
 * Only the worker notifies: pushing transactions never take NOTIFY's
 * commit-time lock.
 *
 * Waking: a transaction that wrote ops sets the worker's latch from its
 * XACT_EVENT_COMMIT callback (which runs after the commit is visible).  The
 * worker also makes a pass every second in case a wake-up was missed (a
 * prepared transaction committed elsewhere, say), and compacts the log every
 * minute (synclog.retention).
 *
 * Processes:
 *	- the launcher, a static worker started after recovery, connects to no
 *	  database, lists pg_database, and starts a worker for each database one
 *	  at a time; a worker finding no synclog extension exits at once.  The
 *	  launcher then idles, so that it runs again after a crash-restart.
 *	- a worker per database, registered with BGW_NEVER_RESTART: when one
 *	  ends (terminated, DROP EXTENSION), the next transaction in that
 *	  database that writes ops starts another before it commits
 *	  (sl_ensure_sequencer), and so does CREATE EXTENSION.
 *
 * Shared state: an array of slots, one per database with a worker, guarded
 * by the "synclog" LWLock.  A slot is STARTING from registration until the
 * worker claims it (RUNNING); a STARTING slot older than 10 s is stale.
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "commands/async.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "synclog.h"

#define SL_MAX_DATABASES 64
#define SL_PASS_LIMIT 10000
#define SL_PASS_INTERVAL_MS 1000
#define SL_COMPACT_INTERVAL_MS (60 * 1000)
#define SL_STARTING_STALE_MS (10 * 1000)

typedef enum SlSlotState
{
	SL_SLOT_FREE = 0,
	SL_SLOT_STARTING,
	SL_SLOT_RUNNING
} SlSlotState;

/* One of these per database that has (or is getting) a sequencer worker. */
typedef struct SlSlot
{
	Oid			dbid;
	SlSlotState state;
	pid_t		pid;			/* RUNNING only */
	Latch	   *latch;			/* RUNNING only: the worker's MyLatch */
	TimestampTz since;			/* when the state was entered */
} SlSlot;

typedef struct SlSequencerShared
{
	LWLock	   *lock;
	SlSlot		slots[SL_MAX_DATABASES];
} SlSequencerShared;

static SlSequencerShared *seq_shared = NULL;
static bool ops_written = false;
static SlSlot *my_slot = NULL;

PGDLLEXPORT void synclog_launcher_main(Datum arg);
PGDLLEXPORT void synclog_sequencer_main(Datum arg);

PG_FUNCTION_INFO_V1(synclog_start_sequencer);
PG_FUNCTION_INFO_V1(synclog_ensure_sequencer);
PG_FUNCTION_INFO_V1(synclog_compact);

Size
sl_sequencer_shmem_size(void)
{
	return sizeof(SlSequencerShared);
}

/* Called under AddinShmemInitLock, in the postmaster and (EXEC_BACKEND) children. */
void
sl_sequencer_shmem_init(void *addr)
{
	seq_shared = (SlSequencerShared *) addr;
	seq_shared->lock = &(GetNamedLWLockTranche("synclog"))->lock;
}

/* The slot of a database, or NULL.  Caller holds the lock. */
static SlSlot *
slot_find(Oid dbid)
{
	for (int i = 0; i < SL_MAX_DATABASES; i++)
		if (seq_shared->slots[i].state != SL_SLOT_FREE && seq_shared->slots[i].dbid == dbid)
			return &seq_shared->slots[i];
	return NULL;
}

static SlSlot *
slot_free(void)
{
	for (int i = 0; i < SL_MAX_DATABASES; i++)
		if (seq_shared->slots[i].state == SL_SLOT_FREE)
			return &seq_shared->slots[i];
	return NULL;
}

static bool
slot_is_live(SlSlot *s)
{
	if (s->state == SL_SLOT_RUNNING)
		return true;
	return s->state == SL_SLOT_STARTING &&
		!TimestampDifferenceExceeds(s->since, GetCurrentTimestamp(), SL_STARTING_STALE_MS);
}

static bool
register_worker(Oid dbid, TransactionId wait_xid, bool notify_me,
				BackgroundWorkerHandle **handle)
{
	BackgroundWorker w;

	memset(&w, 0, sizeof(w));
	w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	w.bgw_start_time = BgWorkerStart_RecoveryFinished;
	w.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(w.bgw_library_name, BGW_MAXLEN, "synclog");
	snprintf(w.bgw_function_name, BGW_MAXLEN, "synclog_sequencer_main");
	snprintf(w.bgw_name, BGW_MAXLEN, "synclog sequencer for database %u", dbid);
	snprintf(w.bgw_type, BGW_MAXLEN, "synclog sequencer");
	w.bgw_main_arg = ObjectIdGetDatum(dbid);
	memcpy(w.bgw_extra, &wait_xid, sizeof(wait_xid));
	w.bgw_notify_pid = notify_me ? MyProcPid : 0;
	return RegisterDynamicBackgroundWorker(&w, handle);
}

/*
 * Makes sure database dbid has a sequencer, registering one if none runs or
 * is starting.  The new worker first waits for wait_xid to end (the
 * transaction that is creating the extension or writing the first ops).
 * Never raises an error: a failure to start is a WARNING, and the next
 * transaction that writes ops tries again.
 */
static bool
ensure_sequencer(Oid dbid, TransactionId wait_xid, bool notify_me,
				 BackgroundWorkerHandle **handle)
{
	SlSlot	   *s;

	if (seq_shared == NULL)
		return false;

	LWLockAcquire(seq_shared->lock, LW_EXCLUSIVE);
	s = slot_find(dbid);
	if (s != NULL && slot_is_live(s))
	{
		LWLockRelease(seq_shared->lock);
		return false;
	}
	if (s == NULL)
		s = slot_free();
	if (s == NULL)
	{
		LWLockRelease(seq_shared->lock);
		ereport(WARNING,
				(errmsg("synclog: no free sequencer slot for database %u", dbid),
				 errdetail("synclog serves at most %d databases.", SL_MAX_DATABASES)));
		return false;
	}
	s->dbid = dbid;
	s->state = SL_SLOT_STARTING;
	s->pid = 0;
	s->latch = NULL;
	s->since = GetCurrentTimestamp();
	LWLockRelease(seq_shared->lock);

	if (!register_worker(dbid, wait_xid, notify_me, handle))
	{
		LWLockAcquire(seq_shared->lock, LW_EXCLUSIVE);
		if (s->state == SL_SLOT_STARTING && s->dbid == dbid)
			s->state = SL_SLOT_FREE;
		LWLockRelease(seq_shared->lock);
		ereport(WARNING,
				(errmsg("synclog: could not start the sequencer for database %u", dbid),
				 errhint("Raise max_worker_processes: synclog needs one background worker per database that uses it, plus one.")));
		return false;
	}
	return true;
}

/* Marks that this transaction wrote ops; see sl_xact_callback. */
void
sl_note_ops_written(void)
{
	ops_written = true;
}

static void
wake_sequencer(void)
{
	SlSlot	   *s;

	if (seq_shared == NULL)
		return;
	LWLockAcquire(seq_shared->lock, LW_SHARED);
	s = slot_find(MyDatabaseId);
	if (s != NULL && s->state == SL_SLOT_RUNNING && s->latch != NULL)
		SetLatch(s->latch);
	LWLockRelease(seq_shared->lock);
}

static void
sl_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			if (ops_written)
				ensure_sequencer(MyDatabaseId, GetTopTransactionIdIfAny(), false, NULL);
			break;
		case XACT_EVENT_COMMIT:
			if (ops_written)
				wake_sequencer();
			ops_written = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			ops_written = false;
			break;
		default:
			break;
	}
}

void
sl_sequencer_xact_init(void)
{
	RegisterXactCallback(sl_xact_callback, NULL);
}

/* synclog._start_sequencer(): called by CREATE EXTENSION. */
Datum
synclog_start_sequencer(PG_FUNCTION_ARGS)
{
	sl_require_preload();
	ensure_sequencer(MyDatabaseId, GetTopTransactionId(), false, NULL);
	PG_RETURN_VOID();
}

/*
 * synclog._ensure_sequencer(): called by changes() and wait_sequenced(), so
 * that ops pushed while no worker could start (max_worker_processes was
 * exhausted, say) are sequenced once one can.
 */
Datum
synclog_ensure_sequencer(PG_FUNCTION_ARGS)
{
	sl_require_preload();
	ensure_sequencer(MyDatabaseId, GetTopTransactionIdIfAny(), false, NULL);
	PG_RETURN_VOID();
}

/*
 * DROP DATABASE waits for other connections to end; ours is one.  Terminate
 * the database's worker and wait (up to 5 s) for it to go.
 */
void
sl_sequencer_before_dropdb(const char *dbname)
{
	Oid			dbid = get_database_oid(dbname, true);
	pid_t		pid = 0;

	if (seq_shared == NULL || !OidIsValid(dbid))
		return;
	LWLockAcquire(seq_shared->lock, LW_SHARED);
	{
		SlSlot	   *s = slot_find(dbid);

		if (s != NULL && s->state == SL_SLOT_RUNNING)
			pid = s->pid;
	}
	LWLockRelease(seq_shared->lock);
	if (pid == 0)
		return;

	kill(pid, SIGTERM);
	for (int i = 0; i < 500; i++)
	{
		bool		gone;

		LWLockAcquire(seq_shared->lock, LW_SHARED);
		gone = (slot_find(dbid) == NULL);
		LWLockRelease(seq_shared->lock);
		if (gone)
			return;
		pg_usleep(10 * 1000L);
		CHECK_FOR_INTERRUPTS();
	}
}

/* ---------------------------------------------------------------------
 * The launcher
 * ---------------------------------------------------------------------
 */

void
sl_sequencer_register_launcher(void)
{
	BackgroundWorker w;

	memset(&w, 0, sizeof(w));
	w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	w.bgw_start_time = BgWorkerStart_RecoveryFinished;
	w.bgw_restart_time = 10;
	snprintf(w.bgw_library_name, BGW_MAXLEN, "synclog");
	snprintf(w.bgw_function_name, BGW_MAXLEN, "synclog_launcher_main");
	snprintf(w.bgw_name, BGW_MAXLEN, "synclog launcher");
	snprintf(w.bgw_type, BGW_MAXLEN, "synclog launcher");
	RegisterBackgroundWorker(&w);
}

static List *
database_list(void)
{
	List	   *dbs = NIL;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	MemoryContext outer = CurrentMemoryContext;

	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);
		MemoryContext old;

		if (!db->datallowconn || db->datistemplate)
			continue;
		old = MemoryContextSwitchTo(outer);
		dbs = lappend_oid(dbs, db->oid);
		MemoryContextSwitchTo(old);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return dbs;
}

void
synclog_launcher_main(Datum arg)
{
	List	   *dbs;
	ListCell   *lc;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	dbs = database_list();
	foreach(lc, dbs)
	{
		Oid			dbid = lfirst_oid(lc);
		BackgroundWorkerHandle *handle = NULL;
		pid_t		pid;

		if (!ensure_sequencer(dbid, InvalidTransactionId, true, &handle))
			continue;
		if (WaitForBackgroundWorkerStartup(handle, &pid) != BGWH_STARTED)
			continue;

		/* One at a time: wait until it runs or finds nothing to do. */
		for (int i = 0; i < 300; i++)
		{
			bool		running;

			LWLockAcquire(seq_shared->lock, LW_SHARED);
			{
				SlSlot	   *s = slot_find(dbid);

				running = (s != NULL && s->state == SL_SLOT_RUNNING);
			}
			LWLockRelease(seq_shared->lock);
			if (running || GetBackgroundWorkerPid(handle, &pid) == BGWH_STOPPED)
				break;
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 100, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
	}

	/* Idle, so that a crash-restart of the cluster runs the launcher again. */
	for (;;)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH, -1L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/* ---------------------------------------------------------------------
 * The per-database worker
 * ---------------------------------------------------------------------
 */

static void
release_slot(int code, Datum arg)
{
	if (my_slot == NULL)
		return;
	LWLockAcquire(seq_shared->lock, LW_EXCLUSIVE);
	if (my_slot->pid == MyProcPid)
	{
		my_slot->state = SL_SLOT_FREE;
		my_slot->pid = 0;
		my_slot->latch = NULL;
	}
	LWLockRelease(seq_shared->lock);
	my_slot = NULL;
}

/* Claims this database's slot; false when another worker already runs here. */
static bool
claim_slot(Oid dbid)
{
	SlSlot	   *s;

	LWLockAcquire(seq_shared->lock, LW_EXCLUSIVE);
	s = slot_find(dbid);
	if (s != NULL && s->state == SL_SLOT_RUNNING && s->pid != MyProcPid)
	{
		LWLockRelease(seq_shared->lock);
		return false;
	}
	if (s == NULL)
		s = slot_free();
	if (s == NULL)
	{
		LWLockRelease(seq_shared->lock);
		return false;
	}
	s->dbid = dbid;
	s->state = SL_SLOT_RUNNING;
	s->pid = MyProcPid;
	s->latch = MyLatch;
	s->since = GetCurrentTimestamp();
	my_slot = s;
	LWLockRelease(seq_shared->lock);
	return true;
}

/* Frees a STARTING slot we will not use (no extension here). */
static void
abandon_slot(Oid dbid)
{
	SlSlot	   *s;

	LWLockAcquire(seq_shared->lock, LW_EXCLUSIVE);
	s = slot_find(dbid);
	if (s != NULL && s->state == SL_SLOT_STARTING)
		s->state = SL_SLOT_FREE;
	LWLockRelease(seq_shared->lock);
}

static int64
spi_int8(const char *sql)
{
	bool		isnull;
	Datum		d;

	/* A saved plan: the sequencer runs these on every pass. */
	if (SPI_execute_plan(sl_plan(sql, 0, NULL), NULL, NULL, false, 1) < 0 ||
		SPI_processed != 1)
		elog(ERROR, "synclog: \"%s\" failed", sql);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? 0 : DatumGetInt64(d);
}

/*
 * Compacts the op log: removes the longest prefix (in seq order) of changes
 * older than synclog.retention, keeping their op ids for idempotency, and
 * advances compacted_through.  Returns compacted_through.  Inside SPI.
 */
int64
sl_compact(void)
{
	Oid			argtypes[2] = {INT8OID, TIMESTAMPTZOID};
	Datum		args[2];
	TimestampTz cutoff;
	int64		through;

	through = spi_int8("SELECT compacted_through FROM synclog.state FOR UPDATE");
	cutoff = GetCurrentTimestamp() - (TimestampTz) sl_retention_s * USECS_PER_SEC;

	for (int round = 0; round < 100; round++)
	{
		uint64		n;
		int64		last = through;
		bool		full;

		args[0] = Int64GetDatum(through);
		args[1] = TimestampTzGetDatum(cutoff);
		if (SPI_execute_plan(sl_plan("SELECT seq, created_at OPERATOR(pg_catalog.<) $2 FROM synclog.ops "
									 "WHERE seq OPERATOR(pg_catalog.>) $1 ORDER BY seq LIMIT 10000",
									 2, argtypes), args, NULL, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "synclog: compaction scan failed");
		n = SPI_processed;
		full = (n == 10000);
		for (uint64 i = 0; i < n; i++)
		{
			bool		isnull;
			bool		old = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i],
														 SPI_tuptable->tupdesc, 2, &isnull));

			if (!old)
			{
				full = false;
				break;
			}
			last = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
											   SPI_tuptable->tupdesc, 1, &isnull));
		}
		if (last == through)
			break;

		args[1] = Int64GetDatum(last);
		{
			Oid			types2[2] = {INT8OID, INT8OID};

			if (SPI_execute_plan(sl_plan("WITH gone AS (DELETE FROM synclog.ops "
										 "WHERE seq OPERATOR(pg_catalog.>) $1 "
										 "AND seq OPERATOR(pg_catalog.<=) $2 RETURNING op_id) "
										 "INSERT INTO synclog.compacted_ops SELECT op_id FROM gone "
										 "ON CONFLICT DO NOTHING", 2, types2),
								 args, NULL, false, 0) < 0)
				elog(ERROR, "synclog: compaction failed");
			args[0] = Int64GetDatum(last);
			if (SPI_execute_plan(sl_plan("UPDATE synclog.state SET compacted_through = $1",
										 1, types2), args, NULL, false, 0) != SPI_OK_UPDATE)
				elog(ERROR, "synclog: compaction state update failed");
		}
		through = last;
		if (!full)
			break;
	}
	return through;
}

/* synclog.compact() → bigint */
Datum
synclog_compact(PG_FUNCTION_ARGS)
{
	int64		through;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "synclog: SPI_connect failed");
	through = sl_compact();
	SPI_finish();
	PG_RETURN_INT64(through);
}

/*
 * Numbers up to SL_PASS_LIMIT committed, unsequenced ops in local_id order
 * with hw+1, hw+2, …; returns how many.  Two statements, each linear in the
 * backlog: the ids are read from the partial index ops_unstamped, then one
 * UPDATE joins them as arrays.  (A single UPDATE … FROM (SELECT … LIMIT)
 * can get a nested loop that re-runs the subquery per row: quadratic, and a
 * sequencer that once fell behind would never catch up.)  Inside SPI.
 */
static uint64
stamp(int64 hw)
{
	Oid			argtypes[2] = {INT8OID, INT8ARRAYOID};
	Datum		args[2];
	Datum	   *ids;
	Datum	   *seqs;
	uint64		n;

	args[0] = Int64GetDatum(SL_PASS_LIMIT);
	if (SPI_execute_plan(sl_plan("SELECT local_id FROM synclog.ops WHERE seq IS NULL "
								 "ORDER BY local_id LIMIT $1", 1, argtypes),
						 args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "synclog: reading unsequenced ops failed");
	n = SPI_processed;
	if (n == 0)
		return 0;
	ids = palloc(sizeof(Datum) * n);
	seqs = palloc(sizeof(Datum) * n);
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;

		ids[i] = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);
		seqs[i] = Int64GetDatum(hw + (int64) i + 1);
	}
	argtypes[0] = INT8ARRAYOID;
	args[0] = PointerGetDatum(construct_array(ids, (int) n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[1] = PointerGetDatum(construct_array(seqs, (int) n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	if (SPI_execute_plan(sl_plan("UPDATE synclog.ops o SET seq = v.seq "
								 "FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.int8[]), "
								 "pg_catalog.unnest($2::pg_catalog.int8[])) AS v(local_id, seq) "
								 "WHERE o.local_id OPERATOR(pg_catalog.=) v.local_id AND o.seq IS NULL",
								 2, argtypes), args, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "synclog: stamping failed");
	if (SPI_processed != n)
		elog(ERROR, "synclog: stamped %llu ops of %llu read",
			 (unsigned long long) SPI_processed, (unsigned long long) n);
	return n;
}

/*
 * One pass: stamps up to SL_PASS_LIMIT committed, unsequenced ops in
 * local_id order, advances high_water and queues the NOTIFY, all in one
 * transaction.  Returns the number stamped; false in *present when the
 * extension is gone from this database.
 */
static uint64
sequencer_pass(bool compact, bool check_present, bool *present)
{
	uint64		stamped = 0;
	Oid			argtypes[2] = {INT8OID, INT8OID};
	Datum		args[2];
	int64		hw;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "synclog: SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "synclog sequencer pass");

	/* A catalog scan: not on every pass of a busy sequencer (see below). */
	*present = !check_present || OidIsValid(get_extension_oid("synclog", true));
	if (*present)
	{
		hw = spi_int8("SELECT high_water FROM synclog.state FOR UPDATE");
		stamped = stamp(hw);
		if (stamped > 0)
		{
			char		payload[32];

			hw += (int64) stamped;
			args[0] = Int64GetDatum(hw);
			args[1] = Int64GetDatum((int64) sl_hlc_now());
			if (SPI_execute_plan(sl_plan("UPDATE synclog.state SET high_water = $1, "
										 "hlc_floor = greatest(hlc_floor, $2)",
										 2, argtypes), args, NULL, false, 0) != SPI_OK_UPDATE)
				elog(ERROR, "synclog: high-water update failed");
			snprintf(payload, sizeof(payload), INT64_FORMAT, hw);
			Async_Notify("synclog", payload);
		}
		if (compact)
			(void) sl_compact();
	}

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return stamped;
}

/* Raises the shared clock past every clock this database has recorded. */
static void
seed_clock(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "synclog: SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	sl_hlc_observe((uint64) spi_int8("SELECT greatest((SELECT hlc_floor FROM synclog.state), "
									 "(SELECT pg_catalog.max(hlc) FROM synclog.ops WHERE seq IS NULL))"));
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
}

void
synclog_sequencer_main(Datum arg)
{
	Oid			dbid = DatumGetObjectId(arg);
	TransactionId wait_xid;
	bool		present;
	volatile bool check_present = true;
	TimestampTz last_compact;
	TimestampTz last_check;
	char	   *dbname;

	memcpy(&wait_xid, MyBgworkerEntry->bgw_extra, sizeof(wait_xid));
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dbid, InvalidOid, 0);
	pgstat_report_appname("synclog sequencer");

	/*
	 * The worker runs as the bootstrap superuser: nothing a database's or a
	 * role's settings put on the path may change what its queries call
	 * (they qualify every name as well).
	 */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);

	/* The transaction that asked for us may be creating the extension. */
	if (TransactionIdIsValid(wait_xid))
	{
		StartTransactionCommand();
		XactLockTableWait(wait_xid, NULL, NULL, XLTW_None);
		CommitTransactionCommand();
	}

	StartTransactionCommand();
	present = OidIsValid(get_extension_oid("synclog", true));
	dbname = MemoryContextStrdup(TopMemoryContext, get_database_name(dbid));
	CommitTransactionCommand();
	if (!present)
	{
		abandon_slot(dbid);
		proc_exit(0);
	}
	if (!claim_slot(dbid))
		proc_exit(0);
	before_shmem_exit(release_slot, (Datum) 0);

	ereport(LOG, (errmsg("synclog sequencer started for database \"%s\"", dbname)));
	seed_clock();
	last_compact = last_check = GetCurrentTimestamp();

	for (;;)
	{
		bool		compact;
		uint64		stamped;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		compact = TimestampDifferenceExceeds(last_compact, GetCurrentTimestamp(),
											 SL_COMPACT_INTERVAL_MS);
		if (compact)
			last_compact = GetCurrentTimestamp();

		/*
		 * Whether the extension is still there is checked after an idle
		 * wait, after a failed pass (a pass fails once the extension's tables
		 * are gone) and at least once a second, not on every pass.
		 */
		if (TimestampDifferenceExceeds(last_check, GetCurrentTimestamp(), 1000))
			check_present = true;
		if (check_present)
			last_check = GetCurrentTimestamp();

		/*
		 * A failed pass (a lock timeout, a full disk, DROP EXTENSION racing
		 * the pass) is logged and retried; nothing it did is committed, so
		 * nothing is lost or numbered twice.
		 */
		PG_TRY();
		{
			stamped = sequencer_pass(compact, check_present, &present);
			check_present = false;
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(TopMemoryContext);
			EmitErrorReport();
			FlushErrorState();
			AbortCurrentTransaction();
			pgstat_report_activity(STATE_IDLE, NULL);
			stamped = 0;
			present = true;
			check_present = true;
			(void) WaitLatch(MyLatch, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 SL_PASS_INTERVAL_MS, PG_WAIT_EXTENSION);
		}
		PG_END_TRY();
		if (!present)
		{
			ereport(LOG, (errmsg("synclog sequencer for database \"%s\" stops: the extension was dropped",
								 dbname)));
			proc_exit(0);
		}
		if (stamped == SL_PASS_LIMIT)
			continue;			/* more are waiting */

		if (WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					  SL_PASS_INTERVAL_MS, PG_WAIT_EXTENSION) & WL_TIMEOUT)
			check_present = true;
		ResetLatch(MyLatch);
	}
}

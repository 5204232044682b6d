/*
 * synclog.c
 *		Module entry: settings, shared memory, and the hooks that connect the
 *		other modules to the server.
 *
 * synclog must be in shared_preload_libraries: the HLC and the sequencer
 * slots live in shared memory, and the sequencer launcher is a static
 * background worker.  Loaded any other way, the SQL functions refuse to run
 * (sl_require_preload) rather than misbehave.
 *
 * Shared memory is one block: the HLC first, then the sequencer's slots.  It
 * is requested in shmem_request_hook and attached under AddinShmemInitLock
 * in shmem_startup_hook, as PostgreSQL 15 requires.
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "tcop/utility.h"
#include "utils/guc.h"

#include "synclog.h"

PG_MODULE_MAGIC;

int			sl_max_clock_skew_ms = 60 * 1000;
int			sl_retention_s = 7 * 24 * 3600;
int			sl_max_batch_ops = 1000;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;

void		_PG_init(void);

static Size
sl_shmem_size(void)
{
	return add_size(MAXALIGN(sl_hlc_shmem_size()), sl_sequencer_shmem_size());
}

static void
sl_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(sl_shmem_size());
	RequestNamedLWLockTranche("synclog", 1);
}

static void
sl_shmem_startup(void)
{
	bool		found;
	char	   *addr;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	addr = ShmemInitStruct("synclog", sl_shmem_size(), &found);
	if (!found)
		memset(addr, 0, sl_shmem_size());
	sl_hlc_shmem_init(addr);
	sl_sequencer_shmem_init(addr + MAXALIGN(sl_hlc_shmem_size()));
	LWLockRelease(AddinShmemInitLock);
}

/*
 * DROP DATABASE waits for every other connection to the database to end;
 * our sequencer worker is one.  Ask it to leave first.
 */
static void
sl_process_utility(PlannedStmt *pstmt, const char *queryString,
				   bool readOnlyTree, ProcessUtilityContext context,
				   ParamListInfo params, QueryEnvironment *queryEnv,
				   DestReceiver *dest, QueryCompletion *qc)
{
	if (IsA(pstmt->utilityStmt, DropdbStmt))
		sl_sequencer_before_dropdb(((DropdbStmt *) pstmt->utilityStmt)->dbname);

	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context,
							params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}

void
_PG_init(void)
{
	DefineCustomIntVariable("synclog.max_clock_skew",
							"How far ahead of the server's clock an op's clock may be.",
							"Ops whose clock is further ahead are refused with clock_skew.",
							&sl_max_clock_skew_ms,
							60 * 1000, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("synclog.retention",
							"How long changes are kept before compaction.",
							"A client whose cursor is older than the oldest kept change gets a snapshot.",
							&sl_retention_s,
							7 * 24 * 3600, 1, INT_MAX,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("synclog.max_batch_ops",
							"The most ops one push may carry.",
							"A larger batch is refused whole with batch_too_large.",
							&sl_max_batch_ops,
							1000, 1, 1000000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
	MarkGUCPrefixReserved("synclog");

	sl_sequencer_xact_init();

	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = sl_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = sl_shmem_startup;
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = sl_process_utility;

	sl_sequencer_register_launcher();
}

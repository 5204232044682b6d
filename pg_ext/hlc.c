/*
 * hlc.c
 *		The server's hybrid logical clock.
 *
 * One clock per cluster, a 64-bit atomic in shared memory: 48 bits of Unix
 * milliseconds, then a 16-bit counter.  sl_hlc_now() returns a value greater
 * than every value it returned before and than every clock passed to
 * sl_hlc_observe(), so an edit the server makes after seeing a client's edit
 * always wins over it.  All functions are lock-free and cannot fail once
 * shared memory is attached.
 *
 * Shared memory is zero at startup; the sequencer raises the clock past the
 * last one it persisted (synclog.state.hlc_floor) when it starts, and the
 * capture trigger observes a row's clocks before it stamps a server write.
 */
#include "postgres.h"

#include "fmgr.h"
#include "port/atomics.h"
#include "utils/timestamp.h"

#include "synclog.h"

typedef struct SlHlcShared
{
	pg_atomic_uint64 value;
} SlHlcShared;

static SlHlcShared *hlc_shared = NULL;

PG_FUNCTION_INFO_V1(synclog_hlc_now);

Size
sl_hlc_shmem_size(void)
{
	return sizeof(SlHlcShared);
}

/* Called under AddinShmemInitLock; the block is zeroed on first attach. */
void
sl_hlc_shmem_init(void *addr)
{
	hlc_shared = (SlHlcShared *) addr;
	/* Zeroed memory is a valid, initialized pg_atomic_uint64 of value 0. */
}

/*
 * Refuses, with a hint, to run without the preload: there would be no shared
 * clock and no sequencer, and ops would never reach a change stream.
 */
void
sl_require_preload(void)
{
	if (hlc_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("synclog must be loaded via shared_preload_libraries"),
				 errhint("Add 'synclog' to shared_preload_libraries in postgresql.conf and restart the server.")));
}

uint64
sl_wall_ms(void)
{
	TimestampTz now = GetCurrentTimestamp();

	/* TimestampTz counts microseconds from 2000-01-01. */
	return (uint64) (now / 1000) +
		(uint64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000;
}

uint64
sl_hlc_now(void)
{
	uint64		wall = sl_wall_ms() << 16;
	uint64		old;

	sl_require_preload();
	old = pg_atomic_read_u64(&hlc_shared->value);
	for (;;)
	{
		uint64		next = (wall > old) ? wall : old + 1;

		if (pg_atomic_compare_exchange_u64(&hlc_shared->value, &old, next))
			return next;
	}
}

void
sl_hlc_observe(uint64 remote)
{
	uint64		old;

	sl_require_preload();
	old = pg_atomic_read_u64(&hlc_shared->value);
	while (remote > old)
	{
		if (pg_atomic_compare_exchange_u64(&hlc_shared->value, &old, remote))
			break;
	}
}

/* True when s[0..len) is exactly 16 lowercase hex digits. */
bool
sl_hlc_parse(const char *s, int len, uint64 *out)
{
	uint64		v = 0;

	if (len != SL_HLC_TEXT_LEN)
		return false;
	for (int i = 0; i < len; i++)
	{
		char		c = s[i];

		if (c >= '0' && c <= '9')
			v = (v << 4) | (uint64) (c - '0');
		else if (c >= 'a' && c <= 'f')
			v = (v << 4) | (uint64) (c - 'a' + 10);
		else
			return false;
	}
	*out = v;
	return true;
}

void
sl_hlc_format(uint64 hlc, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (int i = SL_HLC_TEXT_LEN - 1; i >= 0; i--)
	{
		out[i] = digits[hlc & 0xf];
		hlc >>= 4;
	}
	out[SL_HLC_TEXT_LEN] = '\0';
}

/* synclog._hlc_now() → bigint: a fresh server clock. */
Datum
synclog_hlc_now(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64((int64) sl_hlc_now());
}

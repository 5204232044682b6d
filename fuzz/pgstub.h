/*
 * fuzz/pgstub.h: the few PostgreSQL backend services that the fuzzed parts
 * of the extension (pg_ext/hlc.c, pg_ext/push.c's op validation) call,
 * provided without a backend (pgstub.c).
 *
 * palloc and friends allocate from one arena that pgstub_reset() frees, as
 * a memory context reset would: a target calls it at the end of each input.
 * The wall clock GetCurrentTimestamp() returns is pgstub_now (microseconds
 * since 2000-01-01), which a target sets.  Every other backend function the
 * compiled files name (SPI, subtransactions, catalogs, ...) is a stub that
 * aborts: the fuzzed paths never reach them, and if one did, the target
 * would report it as a crash rather than run on with a fake.
 */
#ifndef SL_FUZZ_PGSTUB_H
#define SL_FUZZ_PGSTUB_H

#include <stdint.h>

extern int64_t pgstub_now;
void pgstub_reset(void);

#endif /* SL_FUZZ_PGSTUB_H */

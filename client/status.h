/*
 * client/status.h: the status codes every libsynclog function returns.
 *
 * Public functions of the client library return an int: SL_OK (0) on success,
 * else one of the codes below; on failure the caller's state is exactly as it
 * was (STYLE.md, "Errors").  The public header client/synclog.h, when it
 * exists, re-exports these values unchanged.
 */
#ifndef SL_STATUS_H
#define SL_STATUS_H

enum {
	SL_OK = 0,     /* success */
	SL_EINVAL = 1, /* a malformed argument: bad hlc text, bad change, ... */
	SL_ESKEW = 2,  /* a remote clock too far ahead of the wall clock */
	SL_ERANGE = 3, /* a clock or wall clock beyond what 48+16 bits hold */
	SL_ENOMEM = 4, /* out of memory */
	SL_EDB = 5     /* the local SQLite file failed (open, I/O, corrupt, busy) */
};

#endif /* SL_STATUS_H */

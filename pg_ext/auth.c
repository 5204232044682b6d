/*
 * auth.c
 *		Token generation.
 *
 * A token is "slt_" and 64 hex digits: 256 bits from pg_strong_random.  Only
 * its SHA-256 is stored (synclog.tokens.token_hash); create_token, revoke_token
 * and authenticate are SQL (synclog--1.0.sql) around this one function.
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"

#include "synclog.h"

#define SL_TOKEN_BYTES 32

PG_FUNCTION_INFO_V1(synclog_random_token);

/* synclog._random_token() → text.  Raises an error if the OS has no entropy. */
Datum
synclog_random_token(PG_FUNCTION_ARGS)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char bytes[SL_TOKEN_BYTES];
	char		out[4 + 2 * SL_TOKEN_BYTES + 1];

	if (!pg_strong_random(bytes, sizeof(bytes)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random token")));
	memcpy(out, "slt_", 4);
	for (int i = 0; i < SL_TOKEN_BYTES; i++)
	{
		out[4 + 2 * i] = hex[bytes[i] >> 4];
		out[4 + 2 * i + 1] = hex[bytes[i] & 0xf];
	}
	out[sizeof(out) - 1] = '\0';
	PG_RETURN_TEXT_P(cstring_to_text(out));
}

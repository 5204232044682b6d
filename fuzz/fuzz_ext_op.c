/*
 * fuzz/fuzz_ext_op.c: libFuzzer target for the extension's op validation,
 * the part of synclog.push that can run without a backend: push.c's
 * parse_op (the shape of one op: id, table, row, kind, fields, hlc) with its
 * normalize_uuid, and pg_ext/hlc.c's sl_hlc_parse.  push.c is #included so
 * that its static functions are called as they are; pgstub.c provides
 * palloc and StringInfo, and aborts if anything else of the backend is
 * reached.
 *
 * What a backend would hand parse_op is jsonb; here the input is parsed by
 * jansson (in ext_op_json.c: PostgreSQL's headers clash with jansson's) and
 * each value handed over as the JsonbValue jsonb would give:
 * strings (pointer and length), numbers, booleans, null, and objects and
 * arrays as jbvBinary containers whose header says object or array and
 * whose body points back to the jansson value (sl_json_get, util.c's one-line
 * lookup, is re-implemented over that, with jsonb's last-key-wins like
 * jansson's).  jsonb_in's own parsing, the authorization, duplicate-id,
 * clock-skew and batch checks of synclog_push (SPI, hash tables), and
 * merge.c's application of an op (column types, constraints, per-field LWW,
 * tombstones) need a server and are not covered here: the pg_regress and
 * isolation suites test them.
 *
 * Input: a JSON text.  An array is a batch (each element an op, as push.c
 * takes them); anything else is one op.  Separately, the input's bytes are
 * given to normalize_uuid as they are.
 *
 * Invariants: parse_op accepts an op exactly when an independent reading of
 * PROTOCOL.md's op (written here, not copied from push.c) does; when it
 * accepts, the id is the canonical lowercase 8-4-4-4-12 form of the given
 * id, table and row are the given strings, kind and fields are as given,
 * and the clock formats back to the given text; when it refuses, it says
 * why (a non-empty message) and names the id when it was a string.
 * normalize_uuid is idempotent and agrees with the reference on any bytes.
 */
#include "../pg_ext/push.c"

#include <stdio.h>
#include <stdlib.h>

#include "ext_op_json.h"
#include "pgstub.h"

#undef fprintf /* port.h's pg_fprintf is libpgport's; the C library's will do */

#define CHECK(cond)                                                                     \
	do {                                                                                \
		if (!(cond)) {                                                                  \
			fprintf(stderr, "fuzz_ext_op: invariant broken at line %d: %s\n", __LINE__, \
			        #cond);                                                             \
			abort();                                                                    \
		}                                                                               \
	} while (0)

/* A fake container: jsonb's header word, then the jansson value it stands for. */
static JsonbContainer *
container(void *v)
{
	JsonbContainer *c = palloc0(offsetof(JsonbContainer, children) + sizeof(void *));

	c->header = (ej_kindof(v) == EJ_OBJECT ? JB_FOBJECT : JB_FARRAY) | (uint32) ej_size(v);
	memcpy((char *) c + offsetof(JsonbContainer, children), &v, sizeof v);
	return c;
}

static void *
container_json(JsonbContainer *c)
{
	void *v;

	memcpy(&v, (char *) c + offsetof(JsonbContainer, children), sizeof v);
	return v;
}

/* v as the JsonbValue jsonb hands out, in *buf. */
static JsonbValue *
to_jbv(void *v, JsonbValue *buf)
{
	size_t len;

	memset(buf, 0, sizeof *buf);
	switch (ej_kindof(v)) {
	case EJ_STRING:
		buf->type = jbvString;
		buf->val.string.val = (char *) ej_string(v, &len);
		buf->val.string.len = (int) len;
		break;
	case EJ_NUMBER:
		buf->type = jbvNumeric; /* parse_op never looks inside a number */
		break;
	case EJ_TRUE:
	case EJ_FALSE:
		buf->type = jbvBool;
		buf->val.boolean = ej_kindof(v) == EJ_TRUE;
		break;
	case EJ_NULL:
		buf->type = jbvNull;
		break;
	case EJ_OBJECT:
	case EJ_ARRAY:
		buf->type = jbvBinary;
		buf->val.binary.data = container(v);
		buf->val.binary.len = 0;
		break;
	}
	return buf;
}

/* util.c's sl_json_get, over the fake containers. */
JsonbValue *
sl_json_get(JsonbContainer *obj, const char *key, JsonbValue *buf)
{
	void *v;

	if (!JsonContainerIsObject(obj))
		return NULL;
	v = ej_get(container_json(obj), key);
	return v ? to_jbv(v, buf) : NULL;
}

/* ------------------------------------------------------------ the target */

/* The string member key of object op (NUL-terminated by jansson), or NULL. */
static const char *
member_string(void *op, const char *key)
{
	size_t len;
	void *v = ej_get(op, key);

	return v ? ej_string(v, &len) : NULL;
}

static void
check_op(void *op)
{
	JsonbValue elem;
	SlOp parsed;
	char idbuf[40], ref_id[37];
	const char *raw_id = (const char *) 1;
	StringInfoData msg;
	bool ok, want;

	memset(&parsed, 0, sizeof parsed);
	memset(idbuf, 0x5a, sizeof idbuf);
	initStringInfo(&msg);
	to_jbv(op, &elem);
	ok = parse_op(&elem, &parsed, idbuf, &raw_id, &msg);
	want = ej_ref_op(op, ref_id);
	if (ok != want)
		fprintf(stderr, "fuzz_ext_op: parse_op says %d, the reference %d (%s)\n", ok, want, msg.data);
	CHECK(ok == want);
	if (ok) {
		const char *kind = member_string(op, "kind");
		char hex[SL_HLC_TEXT_LEN + 1];

		CHECK(parsed.id == idbuf && strcmp(idbuf, ref_id) == 0);
		CHECK(strcmp(parsed.table, member_string(op, "table")) == 0);
		CHECK(strcmp(parsed.row, member_string(op, "row")) == 0);
		CHECK(parsed.is_delete == (strcmp(kind, "delete") == 0));
		CHECK(parsed.is_delete ? parsed.fields == NULL
		                       : container_json(parsed.fields) == ej_get(op, "fields"));
		sl_hlc_format(parsed.hlc, hex);
		CHECK(strcmp(hex, member_string(op, "hlc")) == 0);
		CHECK(msg.len == 0);
	} else {
		const char *id = ej_kindof(op) == EJ_OBJECT ? member_string(op, "id") : NULL;

		CHECK(msg.len > 0);
		if (id != NULL)
			CHECK(raw_id != NULL && strcmp(raw_id, id) == 0);
		else
			CHECK(raw_id == NULL);
	}
}

static void
check_uuid_bytes(const uint8_t *data, size_t size)
{
	char out[40], again[40], ref[37];
	bool ok, want;

	if (size > 64)
		return;
	ok = normalize_uuid((const char *) data, (int) size, out);
	want = ej_ref_uuid((const char *) data, size, ref);
	CHECK(ok == want);
	if (ok) {
		CHECK(strcmp(out, ref) == 0);
		CHECK(normalize_uuid(out, (int) strlen(out), again) && strcmp(again, out) == 0);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	void *doc = ej_load(data, size);

	check_uuid_bytes(data, size);
	if (doc != NULL) {
		if (ej_kindof(doc) == EJ_ARRAY) {
			for (size_t i = 0; i < ej_size(doc) && i < 64; i++)
				check_op(ej_index(doc, i));
		} else {
			check_op(doc);
		}
		ej_free(doc);
	}
	pgstub_reset();
	return 0;
}

/*
 * fuzz/ext_op_json.c: the jansson side of fuzz_ext_op.c (ext_op_json.h).
 */
#include "ext_op_json.h"

#include <string.h>

#include <jansson.h>

void *
ej_load(const uint8_t *data, size_t size)
{
	return json_loadb((const char *) data, size, JSON_DECODE_ANY, NULL);
}

void
ej_free(void *doc)
{
	json_decref(doc);
}

ej_kind
ej_kindof(void *v)
{
	switch (json_typeof((json_t *) v)) {
	case JSON_OBJECT: return EJ_OBJECT;
	case JSON_ARRAY: return EJ_ARRAY;
	case JSON_STRING: return EJ_STRING;
	case JSON_INTEGER:
	case JSON_REAL: return EJ_NUMBER;
	case JSON_TRUE: return EJ_TRUE;
	case JSON_FALSE: return EJ_FALSE;
	case JSON_NULL: return EJ_NULL;
	}
	return EJ_NULL;
}

size_t
ej_size(void *v)
{
	return json_is_object((json_t *) v) ? json_object_size(v) : json_array_size(v);
}

void *
ej_index(void *array, size_t i)
{
	return json_array_get(array, i);
}

void *
ej_get(void *object, const char *key)
{
	return json_object_get(object, key);
}

const char *
ej_string(void *v, size_t *len)
{
	if (!json_is_string((json_t *) v))
		return NULL;
	*len = json_string_length(v);
	return json_string_value(v);
}

static bool
hexdigit(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

bool
ej_ref_uuid(const char *s, size_t len, char out[37])
{
	char digits[33];
	size_t nd = 0;

	if (len == 36) {
		for (size_t i = 0; i < 36; i++) {
			bool at_hy = i == 8 || i == 13 || i == 18 || i == 23;
			if (at_hy ? s[i] != '-' : !hexdigit(s[i]))
				return false;
			if (!at_hy)
				digits[nd++] = s[i];
		}
	} else if (len == 32) {
		for (size_t i = 0; i < 32; i++) {
			if (!hexdigit(s[i]))
				return false;
			digits[nd++] = s[i];
		}
	} else {
		return false;
	}
	for (size_t i = 0, o = 0; o < 36; o++) {
		if (o == 8 || o == 13 || o == 18 || o == 23) {
			out[o] = '-';
		} else {
			char c = digits[i++];
			out[o] = (c >= 'A' && c <= 'F') ? (char) (c - 'A' + 'a') : c;
		}
	}
	out[36] = '\0';
	return true;
}

static bool
ref_hlc(json_t *h)
{
	const char *s = json_string_value(h);

	if (s == NULL || json_string_length(h) != 16)
		return false;
	for (int i = 0; i < 16; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

static bool
nonempty_string(json_t *v)
{
	return json_is_string(v) && json_string_length(v) > 0;
}

bool
ej_ref_op(void *vop, char id[37])
{
	json_t *op = vop, *jid, *kind;
	const char *k;

	if (!json_is_object(op))
		return false;
	jid = json_object_get(op, "id");
	if (!json_is_string(jid) || !ej_ref_uuid(json_string_value(jid), json_string_length(jid), id))
		return false;
	if (!nonempty_string(json_object_get(op, "table")) || !nonempty_string(json_object_get(op, "row")))
		return false;
	kind = json_object_get(op, "kind");
	k = json_string_value(kind);
	if (k == NULL || json_string_length(kind) != 6 ||
	    (strcmp(k, "upsert") != 0 && strcmp(k, "delete") != 0))
		return false;
	if (strcmp(k, "upsert") == 0 && !json_is_object(json_object_get(op, "fields")))
		return false;
	return ref_hlc(json_object_get(op, "hlc"));
}

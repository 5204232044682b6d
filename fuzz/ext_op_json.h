/*
 * fuzz/ext_op_json.h: the jansson side of fuzz_ext_op.c, in a file of its
 * own because PostgreSQL's headers declare a json_object() of their own
 * (the SQL function) that clashes with jansson's.  Values are opaque
 * pointers to jansson values, borrowed from the document of ej_load.
 */
#ifndef SL_FUZZ_EXT_OP_JSON_H
#define SL_FUZZ_EXT_OP_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { EJ_OBJECT, EJ_ARRAY, EJ_STRING, EJ_NUMBER, EJ_TRUE, EJ_FALSE, EJ_NULL } ej_kind;

void *ej_load(const uint8_t *data, size_t size); /* new document, or NULL; ej_free */
void ej_free(void *doc);
ej_kind ej_kindof(void *v);
size_t ej_size(void *v);                     /* members of an object, elements of an array */
void *ej_index(void *array, size_t i);       /* NULL past the end */
void *ej_get(void *object, const char *key); /* NULL when absent or not an object */
const char *ej_string(void *v, size_t *len); /* NULL when not a string */

/* PROTOCOL.md's op, read independently of push.c: true when op is a valid
 * op, with id[37] its id in canonical lowercase 8-4-4-4-12 form. */
bool ej_ref_op(void *op, char id[37]);
/* A UUID as push.c takes one (32 hex digits, or 36 with hyphens at
 * 8-4-4-4-12, any case); out[37] its canonical form. */
bool ej_ref_uuid(const char *s, size_t len, char out[37]);

#endif /* SL_FUZZ_EXT_OP_JSON_H */

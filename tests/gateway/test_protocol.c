/*
 * tests/gateway/test_protocol.c: tests of gateway/protocol.c, the frame codec
 * and the per-connection state machine.
 *
 * Built by `make -C gateway test-bin` with ASan and UBSan and run by
 * tests/suites/10-gateway-protocol.sh.  Prints one line per case,
 * "PASS: protocol: <name>" or "FAIL: protocol: <name> (<why>)", and exits 1 if
 * any case failed.  Groups of cases:
 *   - frame_cases: a table of {name, input, expected error code or success};
 *     inputs too big to write inline come from generators; no error message
 *     may show the test token "s3cr3t";
 *   - state_cases: a table of {state, event} → {action, error code, new state},
 *     every state against every event, then a few sequences (the garbage
 *     counter, a whole connection built from parsed frames);
 *   - encoders: each output parsed back with json_loads and its fields checked,
 *     and the borrowed arguments' reference counts unchanged;
 *   - random: 10,000 random byte strings and mutated valid frames from a seed
 *     (printed; SEED=N repeats a run): no crash, no leak, and either success or
 *     an allowed error code with a printable, encodable message.
 */
#include "protocol.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int n_pass, n_fail;

/* Prints the PASS/FAIL line of one case; why is a printf format, used on FAIL. */
static void report(const char *name, bool ok, const char *why, ...)
	__attribute__((format(printf, 3, 4)));

static void
report(const char *name, bool ok, const char *why, ...)
{
	if (ok) {
		n_pass++;
		printf("PASS: protocol: %s\n", name);
		return;
	}
	n_fail++;
	printf("FAIL: protocol: %s (", name);
	va_list ap;
	va_start(ap, why);
	vprintf(why, ap);
	va_end(ap);
	printf(")\n");
}

/* True when s is non-empty and printable ASCII only. */
static bool
printable(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if ((unsigned char) *s < 0x20 || (unsigned char) *s > 0x7e)
			return false;
	return true;
}

/* Growable buffer for the generators. */
typedef struct {
	char *p;
	size_t len, cap;
} buf_t;

static void
put(buf_t *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		b->p = realloc(b->p, b->cap);
		if (b->p == NULL) {
			perror("realloc");
			exit(2);
		}
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void
puts_(buf_t *b, const char *s)
{
	put(b, s, strlen(s));
}

static void
putn(buf_t *b, char c, size_t n)
{
	for (size_t i = 0; i < n; i++)
		put(b, &c, 1);
}

#define HELLO_HEAD "{\"type\":\"hello\",\"client_id\":\"c1\",\"token\":\"t\","
#define HELLO_TAIL "\"cursor\":0,\"hlc\":\"0000000000000000\"}"

/* Generators: each returns a malloc'd frame and its length. */

static char *
gen_push_ops(size_t n, size_t *len)
{
	buf_t b = {0};
	puts_(&b, "{\"type\":\"push\",\"ops\":[");
	for (size_t i = 0; i < n; i++)
		puts_(&b, i ? ",{}" : "{}");
	puts_(&b, "]}");
	*len = b.len;
	return b.p;
}
static char *gen_ops_1000(size_t *len) { return gen_push_ops(1000, len); }
static char *gen_ops_1001(size_t *len) { return gen_push_ops(1001, len); }

static char *
gen_groups(size_t n, size_t *len)
{
	buf_t b = {0};
	puts_(&b, HELLO_HEAD "\"groups\":[");
	for (size_t i = 0; i < n; i++)
		puts_(&b, i ? ",\"g\"" : "\"g\"");
	puts_(&b, "]," HELLO_TAIL);
	*len = b.len;
	return b.p;
}
static char *gen_groups_256(size_t *len) { return gen_groups(256, len); }
static char *gen_groups_257(size_t *len) { return gen_groups(257, len); }

static char *
gen_group_bytes(size_t n, size_t *len)
{
	buf_t b = {0};
	puts_(&b, HELLO_HEAD "\"groups\":[\"ok\",\"");
	putn(&b, 'g', n);
	puts_(&b, "\"]," HELLO_TAIL);
	*len = b.len;
	return b.p;
}
static char *gen_group_256b(size_t *len) { return gen_group_bytes(256, len); }
static char *gen_group_257b(size_t *len) { return gen_group_bytes(257, len); }

static char *
gen_token_bytes(size_t n, size_t *len)
{
	buf_t b = {0};
	puts_(&b, "{\"type\":\"hello\",\"client_id\":\"c1\",\"token\":\"");
	putn(&b, 't', n);
	puts_(&b, "\",\"groups\":[\"g\"]," HELLO_TAIL);
	*len = b.len;
	return b.p;
}
static char *gen_token_4096(size_t *len) { return gen_token_bytes(4096, len); }
static char *gen_token_4097(size_t *len) { return gen_token_bytes(4097, len); }

/* A ping padded to exactly n bytes. */
static char *
gen_ping_bytes(size_t n, size_t *len)
{
	buf_t b = {0};
	const char *head = "{\"type\":\"ping\",\"pad\":\"", *tail = "\"}";
	puts_(&b, head);
	putn(&b, 'x', n - strlen(head) - strlen(tail));
	puts_(&b, tail);
	*len = b.len;
	return b.p;
}
static char *gen_ping_1mib(size_t *len) { return gen_ping_bytes(1024 * 1024, len); }
static char *gen_ping_1mib_plus1(size_t *len) { return gen_ping_bytes(1024 * 1024 + 1, len); }

static char *
gen_run(char c, size_t n, size_t *len)
{
	buf_t b = {0};
	putn(&b, c, n);
	*len = b.len;
	return b.p;
}
static char *gen_100k_brackets(size_t *len) { return gen_run('[', 100000, len); }
static char *gen_100k_braces(size_t *len) { return gen_run('{', 100000, len); }

/* A ping whose "x" nests `arrays` arrays: total depth arrays + 1. */
static char *
gen_ping_depth(size_t arrays, size_t *len)
{
	buf_t b = {0};
	puts_(&b, "{\"type\":\"ping\",\"x\":");
	putn(&b, '[', arrays);
	putn(&b, ']', arrays);
	puts_(&b, "}");
	*len = b.len;
	return b.p;
}
static char *gen_depth_64(size_t *len) { return gen_ping_depth(63, len); }
static char *gen_depth_65(size_t *len) { return gen_ping_depth(64, len); }

/* 100,000 '[' inside a string: not nesting. */
static char *
gen_brackets_in_string(size_t *len)
{
	buf_t b = {0};
	puts_(&b, "{\"type\":\"ping\",\"x\":\"");
	putn(&b, '[', 100000);
	puts_(&b, "\"}");
	*len = b.len;
	return b.p;
}

/* A push whose op nests objects to depth exactly 64: frame 1, ops 2, op 3. */
static char *
gen_push_deep_op(size_t *len)
{
	buf_t b = {0};
	puts_(&b, "{\"type\":\"push\",\"ops\":[{\"fields\":");
	for (int i = 0; i < 61; i++)
		puts_(&b, "{\"a\":");
	puts_(&b, "1");
	putn(&b, '}', 61);
	puts_(&b, "}]}");
	*len = b.len;
	return b.p;
}

/* Checks for accepted frames: return NULL when fine, else why not. */

static const char *
chk_hello_basic(const sl_frame *f)
{
	if (strcmp(f->hello.client_id, "c1") != 0) return "client_id";
	if (strcmp(f->hello.token, "t") != 0) return "token";
	if (json_array_size(f->hello.groups) != 1) return "groups";
	if (f->hello.cursor != 0) return "cursor";
	if (strcmp(f->hello.hlc, "0000000000000000") != 0) return "hlc";
	return NULL;
}

static const char *
chk_hello_full(const sl_frame *f)
{
	if (strcmp(f->hello.client_id, "0f8fad5b-d9cb-469f-a165-70867728950e") != 0) return "client_id";
	if (strcmp(f->hello.token, "secret") != 0) return "token";
	if (json_array_size(f->hello.groups) != 2) return "groups size";
	if (strcmp(json_string_value(json_array_get(f->hello.groups, 1)), "team-b") != 0) return "groups[1]";
	if (f->hello.cursor != 9007199254740991ULL) return "cursor";
	if (strcmp(f->hello.hlc, "0193a2b4c5d6ef01") != 0) return "hlc";
	return NULL;
}

static const char *
chk_groups_256(const sl_frame *f)
{
	return json_array_size(f->hello.groups) == 256 ? NULL : "not 256 groups";
}

static const char *
chk_ops_0(const sl_frame *f)
{
	return f->push.n_ops == 0 && json_array_size(f->push.ops) == 0 ? NULL : "not 0 ops";
}

static const char *
chk_ops_2(const sl_frame *f)
{
	if (f->push.n_ops != 2) return "not 2 ops";
	json_t *op = json_array_get(f->push.ops, 0);
	if (!json_is_object(op) || strcmp(json_string_value(json_object_get(op, "table")), "issues") != 0)
		return "ops[0].table";
	return NULL;
}

static const char *
chk_ops_1000(const sl_frame *f)
{
	return f->push.n_ops == 1000 ? NULL : "not 1000 ops";
}

#define S(lit) lit, sizeof(lit) - 1
#define G(fn) NULL, 0, fn
#define OK_HELLO NULL, SL_FRAME_HELLO
#define OK_PUSH NULL, SL_FRAME_PUSH
#define OK_PING NULL, SL_FRAME_PING
#define BAD SL_ERR_BAD_FRAME, 0
#define BIG SL_ERR_TOO_LARGE, 0

typedef struct {
	const char *name;
	const char *in;   /* the frame, or NULL when gen makes it */
	size_t len;
	char *(*gen)(size_t *len);
	const char *code; /* expected error code, or NULL for success */
	sl_frame_type type;       /* expected type on success */
	const char *msg_has;      /* expected in the error message, or NULL */
	const char *(*check)(const sl_frame *f); /* more checks on success, or NULL */
} frame_case;

static const frame_case frame_cases[] = {
	/* Not a JSON object. */
	{"empty frame", S(""), NULL, BAD, "empty", NULL},
	{"whitespace only", S(" \t\r\n "), NULL, BAD, "whitespace", NULL},
	{"truncated object", S("{\"type\":\"ping\""), NULL, BAD, "not valid JSON", NULL},
	{"truncated inside string", S("{\"type\":\"pi"), NULL, BAD, "not valid JSON", NULL},
	{"truncated after colon", S("{\"type\":"), NULL, BAD, "not valid JSON", NULL},
	{"bare word", S("hello"), NULL, BAD, "not valid JSON", NULL},
	{"single quotes", S("{'type':'ping'}"), NULL, BAD, "not valid JSON", NULL},
	{"trailing comma", S("{\"type\":\"ping\",}"), NULL, BAD, "not valid JSON", NULL},
	{"two objects", S("{\"type\":\"ping\"}{\"type\":\"ping\"}"), NULL, BAD, "not valid JSON", NULL},
	{"invalid utf-8 0xff", S("{\"type\":\"ping\",\"x\":\"\xff\"}"), NULL, BAD, "UTF-8", NULL},
	{"invalid utf-8 lone continuation", S("{\"type\":\"ping\",\"x\":\"\x80\"}"), NULL, BAD, "UTF-8", NULL},
	{"invalid utf-8 overlong slash", S("{\"type\":\"ping\",\"x\":\"\xc0\xaf\"}"), NULL, BAD, "UTF-8", NULL},
	{"invalid utf-8 overlong 3-byte", S("{\"type\":\"ping\",\"x\":\"\xe0\x80\xaf\"}"), NULL, BAD, "UTF-8", NULL},
	{"invalid utf-8 surrogate", S("{\"type\":\"ping\",\"x\":\"\xed\xa0\x80\"}"), NULL, BAD, "UTF-8", NULL},
	{"invalid utf-8 above U+10FFFF", S("{\"type\":\"ping\",\"x\":\"\xf4\x90\x80\x80\"}"), NULL, BAD, "UTF-8", NULL},
	{"invalid utf-8 truncated sequence", S("{\"type\":\"ping\",\"x\":\"\xe2\x82\"}"), NULL, BAD, "UTF-8", NULL},
	{"invalid utf-8 at end of frame", S("{\"type\":\"ping\"}\xe2\x82"), NULL, BAD, "UTF-8", NULL},
	{"NUL inside a string", S("{\"type\":\"pi\0ng\"}"), NULL, BAD, "NUL byte at offset 11", NULL},
	{"NUL after the object", S("{\"type\":\"ping\"}\0{\"x\":1}"), NULL, BAD, "NUL byte", NULL},
	{"escaped NUL in a string", S("{\"type\":\"ping\",\"x\":\"a\\u0000b\"}"), NULL, BAD, "\\u0000 in a string", NULL},
	{"JSON error does not quote the token", S("{\"type\":\"hello\",\"client_id\":\"c1\",\"token\":\"s3cr3t\\q\"}"), NULL, BAD, "invalid escape (at byte", NULL},
	{"top-level array", S("[{\"type\":\"ping\"}]"), NULL, BAD, "not an array", NULL},
	{"top-level number", S("42"), NULL, BAD, "not an integer", NULL},
	{"top-level string", S("\"ping\""), NULL, BAD, "not a string", NULL},
	{"top-level null", S("null"), NULL, BAD, "not null", NULL},
	{"top-level true", S("true"), NULL, BAD, "not a boolean", NULL},
	/* The type. */
	{"missing type", S("{}"), NULL, BAD, "no \"type\"", NULL},
	{"missing type with fields", S("{\"ops\":[]}"), NULL, BAD, "no \"type\"", NULL},
	{"type null", S("{\"type\":null}"), NULL, BAD, "not null", NULL},
	{"type number", S("{\"type\":1}"), NULL, BAD, "must be a string", NULL},
	{"type object", S("{\"type\":{\"name\":\"ping\"}}"), NULL, BAD, "not an object", NULL},
	{"unknown type", S("{\"type\":\"subscribe\"}"), NULL, BAD, "\"subscribe\"", NULL},
	{"type in upper case", S("{\"type\":\"PING\"}"), NULL, BAD, "\"PING\"", NULL},
	{"type empty", S("{\"type\":\"\"}"), NULL, BAD, "unknown frame type \"\"", NULL},
	{"type non-ASCII escaped in message", S("{\"type\":\"p\xc3\xafng\"}"), NULL, BAD, "p\\xc3\\xafng", NULL},
	{"type very long, truncated in message", S("{\"type\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}"), NULL, BAD, "aaa...\"", NULL},
	/* hello: missing fields. */
	{"hello missing client_id", S("{\"type\":\"hello\",\"token\":\"t\",\"groups\":[\"g\"]," HELLO_TAIL), NULL, BAD, "\"client_id\"", NULL},
	{"hello missing token", S("{\"type\":\"hello\",\"client_id\":\"c1\",\"groups\":[\"g\"]," HELLO_TAIL), NULL, BAD, "\"token\"", NULL},
	{"hello missing groups", S(HELLO_HEAD HELLO_TAIL), NULL, BAD, "\"groups\"", NULL},
	{"hello missing cursor", S(HELLO_HEAD "\"groups\":[\"g\"],\"hlc\":\"0000000000000000\"}"), NULL, BAD, "\"cursor\"", NULL},
	{"hello missing hlc", S(HELLO_HEAD "\"groups\":[\"g\"],\"cursor\":0}"), NULL, BAD, "\"hlc\"", NULL},
	/* hello: client_id. */
	{"hello client_id number", S("{\"type\":\"hello\",\"client_id\":7,\"token\":\"t\",\"groups\":[\"g\"]," HELLO_TAIL), NULL, BAD, "not an integer", NULL},
	{"hello client_id null", S("{\"type\":\"hello\",\"client_id\":null,\"token\":\"t\",\"groups\":[\"g\"]," HELLO_TAIL), NULL, BAD, "\"client_id\" must be a string", NULL},
	{"hello client_id empty", S("{\"type\":\"hello\",\"client_id\":\"\",\"token\":\"t\",\"groups\":[\"g\"]," HELLO_TAIL), NULL, BAD, "is 0 bytes", NULL},
	{"hello client_id 65 bytes", S("{\"type\":\"hello\",\"client_id\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"token\":\"t\",\"groups\":[\"g\"]," HELLO_TAIL), NULL, BAD, "is 65 bytes", NULL},
	{"hello client_id reserved", S("{\"type\":\"hello\",\"client_id\":\"server\",\"token\":\"t\",\"groups\":[\"g\"]," HELLO_TAIL), NULL, BAD, "\"server\" is reserved", NULL},
	/* hello: token. */
	{"hello token empty", S("{\"type\":\"hello\",\"client_id\":\"c1\",\"token\":\"\",\"groups\":[\"g\"]," HELLO_TAIL), NULL, BAD, "\"token\" is 0 bytes", NULL},
	{"hello token 4097 bytes", G(gen_token_4097), BAD, "\"token\" is 4097 bytes", NULL},
	{"hello token array", S("{\"type\":\"hello\",\"client_id\":\"c1\",\"token\":[\"t\"],\"groups\":[\"g\"]," HELLO_TAIL), NULL, BAD, "not an array", NULL},
	/* hello: groups. */
	{"hello groups empty", S(HELLO_HEAD "\"groups\":[]," HELLO_TAIL), NULL, BAD, "empty", NULL},
	{"hello groups a string", S(HELLO_HEAD "\"groups\":\"g\"," HELLO_TAIL), NULL, BAD, "not a string", NULL},
	{"hello groups an object", S(HELLO_HEAD "\"groups\":{\"g\":true}," HELLO_TAIL), NULL, BAD, "not an object", NULL},
	{"hello groups null", S(HELLO_HEAD "\"groups\":null," HELLO_TAIL), NULL, BAD, "not null", NULL},
	{"hello groups non-string element", S(HELLO_HEAD "\"groups\":[\"g\",3]," HELLO_TAIL), NULL, BAD, "groups[1]", NULL},
	{"hello groups empty-string element", S(HELLO_HEAD "\"groups\":[\"\"]," HELLO_TAIL), NULL, BAD, "groups[0] is 0 bytes", NULL},
	{"hello groups 257-byte element", G(gen_group_257b), BAD, "groups[1] is 257 bytes", NULL},
	{"hello groups 257 groups", G(gen_groups_257), BIG, "max_hello_groups = 256", NULL},
	/* hello: cursor. */
	{"hello cursor -1", S(HELLO_HEAD "\"groups\":[\"g\"],\"cursor\":-1,\"hlc\":\"0000000000000000\"}"), NULL, BAD, "is -1", NULL},
	{"hello cursor 2^53", S(HELLO_HEAD "\"groups\":[\"g\"],\"cursor\":9007199254740992,\"hlc\":\"0000000000000000\"}"), NULL, BAD, "is 9007199254740992", NULL},
	{"hello cursor 2^63 (beyond int64)", S(HELLO_HEAD "\"groups\":[\"g\"],\"cursor\":9223372036854775808,\"hlc\":\"0000000000000000\"}"), NULL, BAD, "64-bit integer", NULL},
	{"hello cursor 1.5", S(HELLO_HEAD "\"groups\":[\"g\"],\"cursor\":1.5,\"hlc\":\"0000000000000000\"}"), NULL, BAD, "not a real number", NULL},
	{"hello cursor 1.0", S(HELLO_HEAD "\"groups\":[\"g\"],\"cursor\":1.0,\"hlc\":\"0000000000000000\"}"), NULL, BAD, "not a real number", NULL},
	{"hello cursor 1e3", S(HELLO_HEAD "\"groups\":[\"g\"],\"cursor\":1e3,\"hlc\":\"0000000000000000\"}"), NULL, BAD, "not a real number", NULL},
	{"hello cursor \"5\"", S(HELLO_HEAD "\"groups\":[\"g\"],\"cursor\":\"5\",\"hlc\":\"0000000000000000\"}"), NULL, BAD, "not a string", NULL},
	{"hello cursor null", S(HELLO_HEAD "\"groups\":[\"g\"],\"cursor\":null,\"hlc\":\"0000000000000000\"}"), NULL, BAD, "not null", NULL},
	{"hello cursor true", S(HELLO_HEAD "\"groups\":[\"g\"],\"cursor\":true,\"hlc\":\"0000000000000000\"}"), NULL, BAD, "not a boolean", NULL},
	/* hello: hlc. */
	{"hello hlc 15 digits", S(HELLO_HEAD "\"groups\":[\"g\"],\"cursor\":0,\"hlc\":\"000000000000000\"}"), NULL, BAD, "16 lowercase hex", NULL},
	{"hello hlc 17 digits", S(HELLO_HEAD "\"groups\":[\"g\"],\"cursor\":0,\"hlc\":\"00000000000000000\"}"), NULL, BAD, "16 lowercase hex", NULL},
	{"hello hlc upper case", S(HELLO_HEAD "\"groups\":[\"g\"],\"cursor\":0,\"hlc\":\"0193A2B4C5D6EF01\"}"), NULL, BAD, "got \"0193A2B4C5D6EF01\"", NULL},
	{"hello hlc non-hex", S(HELLO_HEAD "\"groups\":[\"g\"],\"cursor\":0,\"hlc\":\"000000000000000g\"}"), NULL, BAD, "16 lowercase hex", NULL},
	{"hello hlc with 0x prefix", S(HELLO_HEAD "\"groups\":[\"g\"],\"cursor\":0,\"hlc\":\"0x00000000000000\"}"), NULL, BAD, "16 lowercase hex", NULL},
	{"hello hlc number", S(HELLO_HEAD "\"groups\":[\"g\"],\"cursor\":0,\"hlc\":1234567890123456}"), NULL, BAD, "not an integer", NULL},
	{"hello hlc empty", S(HELLO_HEAD "\"groups\":[\"g\"],\"cursor\":0,\"hlc\":\"\"}"), NULL, BAD, "got \"\"", NULL},
	/* push. */
	{"push ops missing", S("{\"type\":\"push\"}"), NULL, BAD, "\"ops\"", NULL},
	{"push ops an object", S("{\"type\":\"push\",\"ops\":{\"id\":\"x\"}}"), NULL, BAD, "not an object", NULL},
	{"push ops a string", S("{\"type\":\"push\",\"ops\":\"[]\"}"), NULL, BAD, "not a string", NULL},
	{"push ops null", S("{\"type\":\"push\",\"ops\":null}"), NULL, BAD, "not null", NULL},
	{"push 1001 ops", G(gen_ops_1001), BIG, "max_batch_ops = 1000", NULL},
	{"push op a number", S("{\"type\":\"push\",\"ops\":[{},5]}"), NULL, BAD, "ops[1] must be an object", NULL},
	{"push op a string", S("{\"type\":\"push\",\"ops\":[\"op\"]}"), NULL, BAD, "ops[0]", NULL},
	{"push op an array", S("{\"type\":\"push\",\"ops\":[[]]}"), NULL, BAD, "not an array", NULL},
	{"push op null", S("{\"type\":\"push\",\"ops\":[null]}"), NULL, BAD, "not null", NULL},
	{"push op field real beyond double", S("{\"type\":\"push\",\"ops\":[{\"fields\":{\"n\":1e999}}]}"), NULL, BAD, "double", NULL},
	{"escaped NUL in a key", S("{\"type\":\"ping\",\"a\\u0000b\":1}"), NULL, BAD, "\\u0000 in a string", NULL},
	{"push op field integer beyond int64", S("{\"type\":\"push\",\"ops\":[{\"fields\":{\"n\":100000000000000000000}}]}"), NULL, BAD, "64-bit integer", NULL},
	/* Limits. */
	{"frame 1 MiB + 1 byte", G(gen_ping_1mib_plus1), BIG, "max_frame_bytes = 1048576", NULL},
	{"100,000 '['", G(gen_100k_brackets), BIG, "max_depth = 64", NULL},
	{"100,000 '{'", G(gen_100k_braces), BIG, "max_depth = 64", NULL},
	{"nesting depth 65", G(gen_depth_65), BIG, "deeper than 64", NULL},
	/* Duplicate keys. */
	{"duplicate type", S("{\"type\":\"ping\",\"type\":\"push\"}"), NULL, BAD, "key twice", NULL},
	{"duplicate token", S("{\"type\":\"hello\",\"client_id\":\"c1\",\"token\":\"s3cr3t\",\"token\":\"s3cr3t\",\"groups\":[\"g\"]," HELLO_TAIL), NULL, BAD, "key twice", NULL},
	{"duplicate key inside op fields", S("{\"type\":\"push\",\"ops\":[{\"fields\":{\"a\":1,\"a\":2}}]}"), NULL, BAD, "key twice", NULL},

	/* Good frames. */
	{"ping", S("{\"type\":\"ping\"}"), NULL, OK_PING, NULL, NULL},
	{"ping with whitespace around", S(" \r\n\t{ \"type\" : \"ping\" }\n"), NULL, OK_PING, NULL, NULL},
	{"ping with numbers at PostgreSQL's numeric limits", S("{\"type\":\"ping\",\"a\":1e-16383,\"b\":1.5e-16382,\"c\":0e1073741822,\"d\":-12.5E+3,\"e\":-0}"), NULL, OK_PING, NULL, NULL},
	{"number beyond numeric's scale 1e-16384", S("{\"type\":\"ping\",\"x\":1e-16384}"), NULL, BAD, "PostgreSQL cannot hold (at offset 19)", NULL},
	{"number beyond numeric's scale 10e-16384", S("{\"type\":\"push\",\"ops\":[{\"fields\":{\"n\":10e-16384}}]}"), NULL, BAD, "PostgreSQL cannot hold", NULL},
	{"number beyond numeric's scale 1.55e-16382", S("{\"type\":\"ping\",\"x\":[1.55e-16382]}"), NULL, BAD, "PostgreSQL cannot hold", NULL},
	{"number with a huge exponent 0e1073741823", S("{\"type\":\"ping\",\"x\":0e1073741823}"), NULL, BAD, "PostgreSQL cannot hold", NULL},
	{"number with a 30-digit exponent", S("{\"type\":\"ping\",\"x\":0E-999999999999999999999999999999}"), NULL, BAD, "PostgreSQL cannot hold", NULL},
	{"digits inside a string are no number", S("{\"type\":\"ping\",\"x\":\"1e-99999\"}"), NULL, OK_PING, NULL, NULL},
	{"ping with unknown fields ignored", S("{\"type\":\"ping\",\"extra\":{\"x\":[1,2,{\"y\":null}]},\"n\":1.5}"), NULL, OK_PING, NULL, NULL},
	{"ping with brackets inside strings", S("{\"type\":\"ping\",\"x\":\"[[[{{{\\\"[[[\",\"y\":\"\\\\\"}"), NULL, OK_PING, NULL, NULL},
	{"ping with 100,000 '[' inside a string", G(gen_brackets_in_string), OK_PING, NULL, NULL},
	{"ping with UTF-8 text", S("{\"type\":\"ping\",\"x\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \\u00e9\\ud83d\\ude00\"}"), NULL, OK_PING, NULL, NULL},
	{"ping nesting depth 64", G(gen_depth_64), OK_PING, NULL, NULL},
	{"ping exactly 1 MiB", G(gen_ping_1mib), OK_PING, NULL, NULL},
	{"hello", S(HELLO_HEAD "\"groups\":[\"g\"]," HELLO_TAIL), NULL, OK_HELLO, NULL, chk_hello_basic},
	{"hello fields in another order with unknown fields", S("{\"hlc\":\"0193a2b4c5d6ef01\",\"version\":2,\"cursor\":9007199254740991,\"groups\":[\"team-a\",\"team-b\"],\"token\":\"secret\",\"client_id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"type\":\"hello\",\"x\":{}}"), NULL, OK_HELLO, NULL, chk_hello_full},
	{"hello cursor -0 is 0", S(HELLO_HEAD "\"groups\":[\"g\"],\"cursor\":-0,\"hlc\":\"0000000000000000\"}"), NULL, OK_HELLO, NULL, chk_hello_basic},
	{"hello client_id 64 bytes", S("{\"type\":\"hello\",\"client_id\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"token\":\"t\",\"groups\":[\"g\"]," HELLO_TAIL), NULL, OK_HELLO, NULL, NULL},
	{"hello client_id UTF-8", S("{\"type\":\"hello\",\"client_id\":\"\xc3\xa9t\xc3\xa9\",\"token\":\"t\",\"groups\":[\"g\"]," HELLO_TAIL), NULL, OK_HELLO, NULL, NULL},
	{"hello token 4096 bytes", G(gen_token_4096), OK_HELLO, NULL, NULL},
	{"hello 256 groups", G(gen_groups_256), OK_HELLO, NULL, chk_groups_256},
	{"hello group 256 bytes", G(gen_group_256b), OK_HELLO, NULL, NULL},
	{"push no ops", S("{\"type\":\"push\",\"ops\":[]}"), NULL, OK_PUSH, NULL, chk_ops_0},
	{"push two ops kept as given", S("{\"type\":\"push\",\"ops\":[{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"table\":\"issues\",\"row\":\"r1\",\"kind\":\"upsert\",\"fields\":{\"title\":\"x\"},\"hlc\":\"0193a2b4c5d6ef01\"},{\"kind\":\"bogus\"}]}"), NULL, OK_PUSH, NULL, chk_ops_2},
	{"push 1000 ops", G(gen_ops_1000), OK_PUSH, NULL, chk_ops_1000},
	{"push op nested to depth 64", G(gen_push_deep_op), OK_PUSH, NULL, NULL},
};

/* Encodes err as an error frame and checks it parses back with the same code
 * and message.  Returns NULL when fine, else why not. */
static const char *
error_roundtrips(const sl_error *err)
{
	static char why[64];
	char *text = sl_encode_error(err->code, err->message);
	json_t *j;
	const char *res = NULL;

	if (text == NULL)
		return "sl_encode_error returned NULL";
	j = json_loads(text, 0, NULL);
	if (j == NULL)
		res = "error frame is not JSON";
	else if (!json_is_string(json_object_get(j, "code")) ||
	         !json_is_string(json_object_get(j, "message")) ||
	         strcmp(json_string_value(json_object_get(j, "code")), err->code) != 0 ||
	         strcmp(json_string_value(json_object_get(j, "message")), err->message) != 0) {
		snprintf(why, sizeof why, "error frame does not round-trip");
		res = why;
	}
	json_decref(j);
	free(text);
	return res;
}

static void
run_frame_cases(void)
{
	sl_limits lim = sl_limits_default();

	for (size_t i = 0; i < sizeof frame_cases / sizeof frame_cases[0]; i++) {
		const frame_case *c = &frame_cases[i];
		char *owned = NULL;
		const char *in = c->in;
		size_t len = c->len;
		sl_frame f;
		sl_error err;
		int rc;
		char name[160];

		snprintf(name, sizeof name, "frame %s", c->name);
		if (c->gen != NULL) {
			owned = c->gen(&len);
			in = owned;
		}
		rc = sl_frame_parse(in, len, &lim, &f, &err);
		if (c->code == NULL) {
			const char *why = NULL;

			if (rc != 0)
				report(name, false, "refused: %s: %s", err.code, err.message);
			else if (f.type != c->type)
				report(name, false, "type %d, expected %d", (int) f.type, (int) c->type);
			else if (f.doc == NULL)
				report(name, false, "doc is NULL");
			else if (c->check != NULL && (why = c->check(&f)) != NULL)
				report(name, false, "%s", why);
			else
				report(name, true, NULL);
			sl_frame_clear(&f);
		} else {
			const char *why;

			if (rc == 0) {
				report(name, false, "accepted, expected %s", c->code);
				sl_frame_clear(&f);
			} else if (err.code == NULL || strcmp(err.code, c->code) != 0)
				report(name, false, "code %s, expected %s (%s)", err.code ? err.code : "NULL",
				       c->code, err.message);
			else if (!printable(err.message))
				report(name, false, "message empty or not printable ASCII");
			else if (strstr(err.message, "s3cr3t") != NULL)
				report(name, false, "message shows the token: %s", err.message);
			else if (c->msg_has != NULL && strstr(err.message, c->msg_has) == NULL)
				report(name, false, "message \"%s\" lacks \"%s\"", err.message, c->msg_has);
			else if (f.doc != NULL)
				report(name, false, "frame not cleared on error");
			else if ((why = error_roundtrips(&err)) != NULL)
				report(name, false, "%s", why);
			else {
				printf("  %s: %s\n", err.code, err.message);
				report(name, true, NULL);
			}
		}
		free(owned);
	}
}

/* Misc API contracts. */
static void
run_api_cases(void)
{
	sl_frame f;
	sl_error err;
	sl_limits lim = sl_limits_default();

	report("limits defaults",
	       lim.max_frame_bytes == 1048576 && lim.max_push_ops == 1000 &&
	       lim.max_hello_groups == 256 && lim.max_depth == 64 && lim.max_bad_frames == 10,
	       "unexpected defaults");

	/* NULL limits mean the defaults. */
	size_t len;
	char *big = gen_ops_1001(&len);
	int rc = sl_frame_parse(big, len, NULL, &f, &err);
	report("NULL limits are the defaults", rc == -1 && strcmp(err.code, SL_ERR_TOO_LARGE) == 0,
	       "rc %d", rc);
	free(big);

	/* Smaller limits apply. */
	sl_limits small = lim;
	small.max_push_ops = 1;
	rc = sl_frame_parse(S("{\"type\":\"push\",\"ops\":[{},{}]}"), &small, &f, &err);
	report("configured max_push_ops applies",
	       rc == -1 && strcmp(err.code, SL_ERR_TOO_LARGE) == 0 && strstr(err.message, "= 1") != NULL,
	       "rc %d %s", rc, err.message);
	small.max_frame_bytes = 64;
	rc = sl_frame_parse(S("{\"type\":\"ping\",\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}"), &small, &f, &err);
	report("configured max_frame_bytes applies",
	       rc == -1 && strcmp(err.code, SL_ERR_TOO_LARGE) == 0 && strstr(err.message, "= 64") != NULL,
	       "rc %d %s", rc, err.message);
	small.max_depth = 2;
	rc = sl_frame_parse(S("{\"type\":\"push\",\"ops\":[{}]}"), &small, &f, &err);
	report("configured max_depth applies",
	       rc == -1 && strcmp(err.code, SL_ERR_TOO_LARGE) == 0 && strstr(err.message, "max_depth = 2") != NULL,
	       "rc %d %s", rc, err.message);

	/* sl_frame_clear accepts NULL and a cleared frame; keeping ops past clear. */
	sl_frame_clear(NULL);
	rc = sl_frame_parse(S("{\"type\":\"push\",\"ops\":[{\"id\":\"a\"}]}"), NULL, &f, &err);
	json_t *ops = rc == 0 ? json_incref(f.push.ops) : NULL;
	sl_frame_clear(&f);
	sl_frame_clear(&f);
	report("ops kept with json_incref outlive sl_frame_clear",
	       ops != NULL && json_array_size(ops) == 1 && f.doc == NULL && f.push.ops == NULL,
	       "rc %d", rc);
	json_decref(ops);

	/* jansson 2.14's own recursion limit (JSON_PARSER_MAX_DEPTH = 2048): the
	 * prescan keeps such input away from it, but check it refuses safely. */
	char *deep = gen_100k_brackets(&len);
	json_error_t jerr;
	json_t *j = json_loadb(deep, len, JSON_DECODE_ANY, &jerr);
	report("jansson alone refuses 100,000 '[' without overflowing the stack",
	       j == NULL && strstr(jerr.text, "depth") != NULL, "got %s", j ? "a value" : jerr.text);
	json_decref(j);
	free(deep);

	/* unknown_type marks only frames refused for their type. */
	rc = sl_frame_parse(S("{\"type\":\"subscribe\"}"), NULL, &f, &err);
	bool unknown = rc == -1 && err.unknown_type;
	rc = sl_frame_parse(S("{\"type\":\"push\"}"), NULL, &f, &err);
	report("unknown_type set for an unknown type only", unknown && rc == -1 && !err.unknown_type,
	       "flag wrong");

	/* State and action names. */
	report("state and action names",
	       strcmp(sl_sess_state_name(SL_SESS_AUTHENTICATING), "AUTHENTICATING") == 0 &&
	       strcmp(sl_action_name(SL_ACTION_PONG), "PONG") == 0,
	       "wrong names");
}

/* State machine. */

typedef enum { EV_HELLO, EV_PUSH, EV_PING, EV_BAD, EV_UNKNOWN, EV_AUTH_OK, EV_AUTH_FAIL } event;

static const char *const event_names[] = {
	"hello", "push", "ping", "bad frame", "unknown type", "auth ok", "auth refused",
};

typedef struct {
	sl_sess_state from;
	event ev;
	sl_action_kind action;
	const char *code;  /* expected error code, or NULL */
	sl_sess_state to;
} state_case;

static const state_case state_cases[] = {
	{SL_SESS_AWAIT_HELLO, EV_HELLO, SL_ACTION_AUTHENTICATE, NULL, SL_SESS_AUTHENTICATING},
	{SL_SESS_AWAIT_HELLO, EV_PUSH, SL_ACTION_ERROR, SL_ERR_HELLO_REQUIRED, SL_SESS_AWAIT_HELLO},
	{SL_SESS_AWAIT_HELLO, EV_PING, SL_ACTION_ERROR, SL_ERR_HELLO_REQUIRED, SL_SESS_AWAIT_HELLO},
	{SL_SESS_AWAIT_HELLO, EV_BAD, SL_ACTION_ERROR, SL_ERR_BAD_FRAME, SL_SESS_AWAIT_HELLO},
	{SL_SESS_AWAIT_HELLO, EV_UNKNOWN, SL_ACTION_ERROR, SL_ERR_BAD_FRAME, SL_SESS_AWAIT_HELLO},
	{SL_SESS_AWAIT_HELLO, EV_AUTH_OK, SL_ACTION_NONE, NULL, SL_SESS_AWAIT_HELLO},
	{SL_SESS_AWAIT_HELLO, EV_AUTH_FAIL, SL_ACTION_NONE, NULL, SL_SESS_AWAIT_HELLO},

	{SL_SESS_AUTHENTICATING, EV_HELLO, SL_ACTION_ERROR, SL_ERR_BAD_FRAME, SL_SESS_AUTHENTICATING},
	{SL_SESS_AUTHENTICATING, EV_PUSH, SL_ACTION_ERROR, SL_ERR_HELLO_REQUIRED, SL_SESS_AUTHENTICATING},
	{SL_SESS_AUTHENTICATING, EV_PING, SL_ACTION_ERROR, SL_ERR_HELLO_REQUIRED, SL_SESS_AUTHENTICATING},
	{SL_SESS_AUTHENTICATING, EV_BAD, SL_ACTION_ERROR, SL_ERR_BAD_FRAME, SL_SESS_AUTHENTICATING},
	{SL_SESS_AUTHENTICATING, EV_UNKNOWN, SL_ACTION_ERROR, SL_ERR_BAD_FRAME, SL_SESS_AUTHENTICATING},
	{SL_SESS_AUTHENTICATING, EV_AUTH_OK, SL_ACTION_WELCOME, NULL, SL_SESS_ACTIVE},
	{SL_SESS_AUTHENTICATING, EV_AUTH_FAIL, SL_ACTION_CLOSE, SL_ERR_UNAUTHORIZED, SL_SESS_CLOSING},

	{SL_SESS_ACTIVE, EV_HELLO, SL_ACTION_ERROR, SL_ERR_BAD_FRAME, SL_SESS_ACTIVE},
	{SL_SESS_ACTIVE, EV_PUSH, SL_ACTION_PUSH, NULL, SL_SESS_ACTIVE},
	{SL_SESS_ACTIVE, EV_PING, SL_ACTION_PONG, NULL, SL_SESS_ACTIVE},
	{SL_SESS_ACTIVE, EV_BAD, SL_ACTION_ERROR, SL_ERR_BAD_FRAME, SL_SESS_ACTIVE},
	{SL_SESS_ACTIVE, EV_UNKNOWN, SL_ACTION_ERROR, SL_ERR_BAD_FRAME, SL_SESS_ACTIVE},
	{SL_SESS_ACTIVE, EV_AUTH_OK, SL_ACTION_NONE, NULL, SL_SESS_ACTIVE},
	{SL_SESS_ACTIVE, EV_AUTH_FAIL, SL_ACTION_NONE, NULL, SL_SESS_ACTIVE},

	{SL_SESS_CLOSING, EV_HELLO, SL_ACTION_NONE, NULL, SL_SESS_CLOSING},
	{SL_SESS_CLOSING, EV_PUSH, SL_ACTION_NONE, NULL, SL_SESS_CLOSING},
	{SL_SESS_CLOSING, EV_PING, SL_ACTION_NONE, NULL, SL_SESS_CLOSING},
	{SL_SESS_CLOSING, EV_BAD, SL_ACTION_NONE, NULL, SL_SESS_CLOSING},
	{SL_SESS_CLOSING, EV_UNKNOWN, SL_ACTION_NONE, NULL, SL_SESS_CLOSING},
	{SL_SESS_CLOSING, EV_AUTH_OK, SL_ACTION_NONE, NULL, SL_SESS_CLOSING},
	{SL_SESS_CLOSING, EV_AUTH_FAIL, SL_ACTION_NONE, NULL, SL_SESS_CLOSING},
};

/* Applies ev to s through the public API, with a parsed frame for frame events. */
static sl_action
apply(sl_session *s, event ev)
{
	static const struct { const char *in; size_t len; } frames[] = {
		[EV_HELLO] = {S(HELLO_HEAD "\"groups\":[\"g\"]," HELLO_TAIL)},
		[EV_PUSH] = {S("{\"type\":\"push\",\"ops\":[]}")},
		[EV_PING] = {S("{\"type\":\"ping\"}")},
		[EV_BAD] = {S("{\"type\":")},
		[EV_UNKNOWN] = {S("{\"type\":\"presence\",\"x\":1}")},
	};
	sl_frame f;
	sl_error err;
	sl_action a;

	switch (ev) {
	case EV_AUTH_OK:
		return sl_session_on_auth_result(s, true);
	case EV_AUTH_FAIL:
		return sl_session_on_auth_result(s, false);
	case EV_BAD:
	case EV_UNKNOWN:
		if (sl_frame_parse(frames[ev].in, frames[ev].len, NULL, &f, &err) == 0) {
			fprintf(stderr, "bad frame parsed\n");
			exit(2);
		}
		return sl_session_on_bad_frame(s, &err);
	case EV_HELLO:
	case EV_PUSH:
	case EV_PING:
		break;
	}
	if (sl_frame_parse(frames[ev].in, frames[ev].len, NULL, &f, &err) != 0) {
		fprintf(stderr, "good frame refused: %s\n", err.message);
		exit(2);
	}
	a = sl_session_on_frame(s, &f);
	sl_frame_clear(&f);
	return a;
}

/* Checks an action against expectations; returns NULL or why not. */
static const char *
action_is(const sl_action *a, sl_action_kind kind, const char *code)
{
	static char why[200];

	if (a->kind != kind)
		snprintf(why, sizeof why, "action %s, expected %s", sl_action_name(a->kind),
		         sl_action_name(kind));
	else if (code == NULL && a->error.code != NULL)
		snprintf(why, sizeof why, "unexpected error code %s", a->error.code);
	else if (code != NULL && (a->error.code == NULL || strcmp(a->error.code, code) != 0))
		snprintf(why, sizeof why, "code %s, expected %s", a->error.code ? a->error.code : "NULL",
		         code);
	else if (code != NULL && !printable(a->error.message))
		snprintf(why, sizeof why, "message empty or not printable");
	else
		return NULL;
	return why;
}

static void
run_state_cases(void)
{
	for (size_t i = 0; i < sizeof state_cases / sizeof state_cases[0]; i++) {
		const state_case *c = &state_cases[i];
		sl_session s;
		sl_action a;
		const char *why;
		char name[128];

		snprintf(name, sizeof name, "state %s + %s -> %s %s", sl_sess_state_name(c->from),
		         event_names[c->ev], sl_action_name(c->action), sl_sess_state_name(c->to));
		sl_session_init(&s, NULL);
		s.state = c->from;
		a = apply(&s, c->ev);
		if ((why = action_is(&a, c->action, c->code)) != NULL)
			report(name, false, "%s", why);
		else if (s.state != c->to)
			report(name, false, "state %s", sl_sess_state_name(s.state));
		else
			report(name, true, NULL);
	}
}

static void
run_state_sequences(void)
{
	sl_session s;
	sl_action a;
	const char *why = NULL;
	bool ok;
	int i;

	/* A whole connection. */
	sl_session_init(&s, NULL);
	struct { event ev; sl_action_kind k; const char *code; } seq[] = {
		{EV_PING, SL_ACTION_ERROR, SL_ERR_HELLO_REQUIRED},
		{EV_HELLO, SL_ACTION_AUTHENTICATE, NULL},
		{EV_PUSH, SL_ACTION_ERROR, SL_ERR_HELLO_REQUIRED},
		{EV_AUTH_OK, SL_ACTION_WELCOME, NULL},
		{EV_PUSH, SL_ACTION_PUSH, NULL},
		{EV_PUSH, SL_ACTION_PUSH, NULL},
		{EV_PING, SL_ACTION_PONG, NULL},
		{EV_HELLO, SL_ACTION_ERROR, SL_ERR_BAD_FRAME},
		{EV_BAD, SL_ACTION_ERROR, SL_ERR_BAD_FRAME},
		{EV_PING, SL_ACTION_PONG, NULL},
	};
	for (i = 0; i < (int) (sizeof seq / sizeof seq[0]) && why == NULL; i++) {
		a = apply(&s, seq[i].ev);
		why = action_is(&a, seq[i].k, seq[i].code);
	}
	report("sequence hello, welcome, push, push, ping, second hello", why == NULL,
	       "step %d: %s", i, why);

	/* The garbage counter: the 10th bad frame in a row closes. */
	sl_session_init(&s, NULL);
	apply(&s, EV_HELLO);
	apply(&s, EV_AUTH_OK);
	ok = true;
	for (i = 1; i <= 9 && ok; i++)
		ok = apply(&s, EV_BAD).kind == SL_ACTION_ERROR;
	a = apply(&s, EV_BAD);
	ok = ok && a.kind == SL_ACTION_CLOSE && s.state == SL_SESS_CLOSING &&
	     strcmp(a.error.code, SL_ERR_BAD_FRAME) == 0 && strstr(a.error.message, "closing") != NULL &&
	     printable(a.error.message);
	report("10th consecutive bad frame closes with the frame's code", ok, "got %s: %s",
	       sl_action_name(a.kind), a.error.message);
	ok = apply(&s, EV_PING).kind == SL_ACTION_NONE && apply(&s, EV_BAD).kind == SL_ACTION_NONE;
	report("frames after close are ignored", ok, "not NONE");

	/* A good frame resets the count. */
	sl_session_init(&s, NULL);
	apply(&s, EV_HELLO);
	apply(&s, EV_AUTH_OK);
	ok = true;
	for (i = 0; i < 9; i++)
		ok = ok && apply(&s, EV_BAD).kind == SL_ACTION_ERROR;
	ok = ok && apply(&s, EV_PING).kind == SL_ACTION_PONG;
	for (i = 0; i < 9; i++)
		ok = ok && apply(&s, EV_BAD).kind == SL_ACTION_ERROR;
	ok = ok && apply(&s, EV_PUSH).kind == SL_ACTION_PUSH && s.state == SL_SESS_ACTIVE;
	report("a good frame resets the bad-frame count", ok, "closed early");

	/* Misplaced frames count as bad frames too. */
	sl_session_init(&s, NULL);
	for (i = 0; i < 9; i++)
		apply(&s, i % 2 ? EV_PUSH : EV_PING);
	a = apply(&s, EV_PUSH);
	report("10 frames before hello close with hello_required",
	       action_is(&a, SL_ACTION_CLOSE, SL_ERR_HELLO_REQUIRED) == NULL,
	       "%s", action_is(&a, SL_ACTION_CLOSE, SL_ERR_HELLO_REQUIRED));

	/* Closed for garbage while authenticating: the late auth result is ignored. */
	sl_session_init(&s, NULL);
	apply(&s, EV_HELLO);
	for (i = 0; i < 10; i++)
		a = apply(&s, EV_BAD);
	ok = a.kind == SL_ACTION_CLOSE && s.state == SL_SESS_CLOSING;
	a = apply(&s, EV_AUTH_OK);
	report("auth result after closing for garbage is ignored",
	       ok && a.kind == SL_ACTION_NONE && s.state == SL_SESS_CLOSING, "state %s",
	       sl_sess_state_name(s.state));

	/* Unknown types: an error each, never a close, and no reset either. */
	sl_session_init(&s, NULL);
	apply(&s, EV_HELLO);
	apply(&s, EV_AUTH_OK);
	ok = true;
	for (i = 0; i < 50; i++) {
		a = apply(&s, EV_UNKNOWN);
		ok = ok && action_is(&a, SL_ACTION_ERROR, SL_ERR_BAD_FRAME) == NULL &&
		     strstr(a.error.message, "\"presence\"") != NULL;
	}
	ok = ok && s.state == SL_SESS_ACTIVE;
	report("unknown types get an error and the connection stays open", ok, "closed or wrong answer");
	for (i = 0; i < 9; i++)
		apply(&s, EV_BAD);
	apply(&s, EV_UNKNOWN);
	a = apply(&s, EV_BAD);
	report("an unknown type does not reset the bad-frame count",
	       a.kind == SL_ACTION_CLOSE, "got %s", sl_action_name(a.kind));
	sl_session_init(&s, NULL);
	for (i = 0; i < 20; i++)
		a = apply(&s, EV_UNKNOWN);
	report("unknown types before hello do not close either",
	       a.kind == SL_ACTION_ERROR && s.state == SL_SESS_AWAIT_HELLO, "got %s",
	       sl_action_name(a.kind));

	/* max_bad_frames = 0 never closes; 1 closes at once. */
	sl_limits lim = sl_limits_default();
	lim.max_bad_frames = 0;
	sl_session_init(&s, &lim);
	ok = true;
	for (i = 0; i < 1000; i++)
		ok = ok && apply(&s, EV_BAD).kind == SL_ACTION_ERROR;
	report("max_bad_frames 0 never closes", ok, "closed");
	lim.max_bad_frames = 1;
	sl_session_init(&s, &lim);
	a = apply(&s, EV_BAD);
	report("max_bad_frames 1 closes at the first bad frame",
	       a.kind == SL_ACTION_CLOSE && s.state == SL_SESS_CLOSING, "got %s", sl_action_name(a.kind));

	/* Long messages still fit with the closing note. */
	sl_session_init(&s, &lim);
	sl_error long_err = {.code = SL_ERR_TOO_LARGE};
	memset(long_err.message, 'm', sizeof long_err.message - 1);
	long_err.message[sizeof long_err.message - 1] = '\0';
	a = sl_session_on_bad_frame(&s, &long_err);
	report("closing note fits after a maximal message",
	       a.kind == SL_ACTION_CLOSE && strstr(a.error.message, "closing the connection") != NULL &&
	       strlen(a.error.message) < sizeof a.error.message,
	       "%s", a.error.message);
}

/* Encoders. */

/* Parses text (freeing it) and checks "type"; returns the object or NULL. */
static json_t *
load_frame(char *text, const char *type, const char **why)
{
	json_t *j;
	char head[64];

	if (text == NULL) {
		*why = "encoder returned NULL";
		return NULL;
	}
	snprintf(head, sizeof head, "{\"type\":\"%s\"", type);
	if (strncmp(text, head, strlen(head)) != 0 || strstr(text, "\n") != NULL) {
		*why = "not compact or type not first";
		free(text);
		return NULL;
	}
	j = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
	free(text);
	if (j == NULL)
		*why = "output is not JSON";
	return j;
}

static void
run_encoder_cases(void)
{
	const char *why = NULL;
	json_t *j;
	char *text;

	/* welcome */
	json_t *groups = json_pack("[s,s]", "team-a", "team-b");
	json_t *tables = json_loads("{\"issues\":{\"pk\":\"id\",\"group\":\"team\",\"columns\":{\"id\":\"text\",\"title\":\"text\"}}}", 0, NULL);
	size_t rg = groups->refcount, rt = tables->refcount;
	j = load_frame(sl_encode_welcome(42, "0193a2b4c5d6ef01", groups, tables), "welcome", &why);
	report("encode welcome",
	       j != NULL && json_integer_value(json_object_get(j, "cursor")) == 42 &&
	       strcmp(json_string_value(json_object_get(j, "hlc")), "0193a2b4c5d6ef01") == 0 &&
	       json_equal(json_object_get(j, "groups"), groups) &&
	       json_equal(json_object_get(j, "tables"), tables) && json_object_size(j) == 5,
	       "%s", why ? why : "wrong fields");
	json_decref(j);
	report("encode welcome borrows groups and tables",
	       groups->refcount == rg && tables->refcount == rt, "refcounts changed");
	text = sl_encode_welcome(9007199254740992ULL, "0193a2b4c5d6ef01", groups, tables);
	report("encode welcome refuses cursor 2^53", text == NULL, "got %s", text);
	free(text);
	text = sl_encode_welcome(9007199254740991ULL, "0193a2b4c5d6ef01", groups, tables);
	report("encode welcome cursor 2^53-1", text != NULL && strstr(text, "\"cursor\":9007199254740991") != NULL,
	       "got %s", text ? text : "NULL");
	free(text);
	text = sl_encode_welcome(1, "0193a2b4c5d6ef01", tables, groups);
	report("encode welcome refuses groups that are not an array", text == NULL, "got %s", text);
	free(text);
	json_decref(groups);
	json_decref(tables);

	/* ack */
	json_t *reply = json_loads("{\"acked\":[\"a1\",\"a2\"],\"rejected\":[{\"id\":\"r1\",\"code\":\"row_deleted\","
	                           "\"message\":\"row r1 of issues was deleted\"}],\"hlc\":\"0193a2b4c5d6ef02\",\"extra\":1}",
	                           0, NULL);
	size_t rr = reply->refcount;
	why = NULL;
	j = load_frame(sl_encode_ack(reply), "ack", &why);
	report("encode ack copies acked, rejected and hlc",
	       j != NULL && json_equal(json_object_get(j, "acked"), json_object_get(reply, "acked")) &&
	       json_equal(json_object_get(j, "rejected"), json_object_get(reply, "rejected")) &&
	       json_equal(json_object_get(j, "hlc"), json_object_get(reply, "hlc")) &&
	       json_object_get(j, "extra") == NULL && json_object_size(j) == 4,
	       "%s", why ? why : "wrong fields");
	json_decref(j);
	report("encode ack borrows the reply", reply->refcount == rr, "refcount changed");
	json_object_del(reply, "acked");
	text = sl_encode_ack(reply);
	report("encode ack refuses a reply without acked", text == NULL, "got %s", text);
	free(text);
	json_decref(reply);
	text = sl_encode_ack(NULL);
	report("encode ack refuses NULL", text == NULL, "got %s", text);
	free(text);

	/* pong */
	why = NULL;
	j = load_frame(sl_encode_pong("0193a2b4c5d6ef03"), "pong", &why);
	report("encode pong",
	       j != NULL && strcmp(json_string_value(json_object_get(j, "hlc")), "0193a2b4c5d6ef03") == 0 &&
	       json_object_size(j) == 2, "%s", why ? why : "wrong fields");
	json_decref(j);

	/* error */
	why = NULL;
	j = load_frame(sl_encode_error(SL_ERR_HELLO_REQUIRED, "send \"hello\" first\n\u00e9"), "error", &why);
	report("encode error",
	       j != NULL && strcmp(json_string_value(json_object_get(j, "code")), "hello_required") == 0 &&
	       strcmp(json_string_value(json_object_get(j, "message")), "send \"hello\" first\n\u00e9") == 0,
	       "%s", why ? why : "wrong fields");
	json_decref(j);
	why = NULL;
	j = load_frame(sl_encode_error(SL_ERR_BAD_FRAME, "bad \xff\xfe bytes"), "error", &why);
	report("encode error replaces bytes that are not UTF-8",
	       j != NULL && strcmp(json_string_value(json_object_get(j, "message")), "bad ?? bytes") == 0,
	       "%s", why ? why : "wrong message");
	json_decref(j);

	/* changes */
	json_t *changes = json_loads("[{\"seq\":7,\"op_id\":\"o\",\"client_id\":\"c\",\"table\":\"issues\",\"row\":\"r\","
	                             "\"kind\":\"upsert\",\"fields\":{\"title\":\"x\"},\"hlc\":\"0193a2b4c5d6ef04\"}]", 0, NULL);
	size_t rc = changes->refcount;
	why = NULL;
	j = load_frame(sl_encode_changes(changes, 7), "changes", &why);
	report("encode changes",
	       j != NULL && json_equal(json_object_get(j, "changes"), changes) &&
	       json_integer_value(json_object_get(j, "cursor")) == 7 && json_object_size(j) == 3 &&
	       changes->refcount == rc, "%s", why ? why : "wrong fields");
	json_decref(j);
	json_decref(changes);
	changes = json_array();
	why = NULL;
	j = load_frame(sl_encode_changes(changes, 0), "changes", &why);
	report("encode changes empty at cursor 0",
	       j != NULL && json_array_size(json_object_get(j, "changes")) == 0 &&
	       json_is_integer(json_object_get(j, "cursor")), "%s", why ? why : "wrong fields");
	json_decref(j);
	text = sl_encode_changes(NULL, 0);
	report("encode changes refuses NULL", text == NULL, "got %s", text);
	free(text);
	json_decref(changes);

	/* snapshot */
	json_t *rows = json_loads("[{\"table\":\"issues\",\"row\":\"r\",\"fields\":{\"title\":\"x\"},"
	                          "\"clocks\":{\"title\":\"0193a2b4c5d6ef05\"}}]", 0, NULL);
	why = NULL;
	j = load_frame(sl_encode_snapshot(rows, 99, false), "snapshot", &why);
	report("encode snapshot not done",
	       j != NULL && json_equal(json_object_get(j, "rows"), rows) &&
	       json_integer_value(json_object_get(j, "cursor")) == 99 &&
	       json_is_false(json_object_get(j, "done")) && json_object_size(j) == 4 && rows->refcount == 1,
	       "%s", why ? why : "wrong fields");
	json_decref(j);
	why = NULL;
	j = load_frame(sl_encode_snapshot(rows, 100, true), "snapshot", &why);
	report("encode snapshot done", j != NULL && json_is_true(json_object_get(j, "done")),
	       "%s", why ? why : "wrong fields");
	json_decref(j);
	json_decref(rows);
}

/* Randomized inputs. */

static uint64_t rng_state;

static uint64_t
rng(void)
{
	/* xorshift64* */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * UINT64_C(2685821657736338717);
}

static size_t
rnd(size_t n)
{
	return n ? (size_t) (rng() % n) : 0;
}

static const char *const seeds[] = {
	"{\"type\":\"ping\"}",
	HELLO_HEAD "\"groups\":[\"g\",\"h\"]," HELLO_TAIL,
	"{\"type\":\"push\",\"ops\":[{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"table\":\"issues\","
	"\"row\":\"r1\",\"kind\":\"upsert\",\"fields\":{\"title\":\"caf\xc3\xa9\",\"n\":[1,2.5,{\"x\":null}]},"
	"\"hlc\":\"0193a2b4c5d6ef01\"},{\"kind\":\"delete\"}]}",
	"{\"type\":\"push\",\"ops\":[]}",
};

static const char json_alphabet[] = "{}[]\":,\\ 0123456789-+.eEtrufalsnhypgoc\xc3\xa9\xe2\x82\xac\n";

/* Parses one input, feeds the outcome to a session in a random state, and
 * checks the invariants.  Returns NULL or why not. */
static const char *
fuzz_one(const char *in, size_t len, const sl_limits *lim, int *accepted)
{
	static char why[300];
	sl_frame f;
	sl_error err;
	sl_session s;
	sl_action a;
	const char *r;

	sl_session_init(&s, lim);
	s.state = (sl_sess_state) rnd(4);
	if (sl_frame_parse(in, len, lim, &f, &err) == 0) {
		(*accepted)++;
		if (f.doc == NULL || (f.type != SL_FRAME_HELLO && f.type != SL_FRAME_PUSH && f.type != SL_FRAME_PING))
			return "accepted frame malformed";
		if (f.type == SL_FRAME_PUSH && json_array_size(f.push.ops) != f.push.n_ops)
			return "n_ops mismatch";
		if (f.type == SL_FRAME_HELLO && (strlen(f.hello.hlc) != 16 || f.hello.cursor >= SL_CURSOR_LIMIT))
			return "hello fields out of range";
		a = sl_session_on_frame(&s, &f);
		sl_frame_clear(&f);
	} else {
		if (err.code == NULL ||
		    (strcmp(err.code, SL_ERR_BAD_FRAME) != 0 && strcmp(err.code, SL_ERR_TOO_LARGE) != 0)) {
			snprintf(why, sizeof why, "code %s not allowed", err.code ? err.code : "NULL");
			return why;
		}
		if (!printable(err.message)) {
			snprintf(why, sizeof why, "message not printable: %s", err.message);
			return why;
		}
		if (f.doc != NULL)
			return "frame not cleared on error";
		if ((r = error_roundtrips(&err)) != NULL)
			return r;
		a = sl_session_on_bad_frame(&s, &err);
	}
	if (a.error.code != NULL && !printable(a.error.message))
		return "action message not printable";
	return NULL;
}

static void
run_random_cases(void)
{
	const char *env = getenv("SEED");
	uint64_t seed = env != NULL ? strtoull(env, NULL, 10)
	                            : (uint64_t) time(NULL) ^ ((uint64_t) getpid() << 32);
	sl_limits def = sl_limits_default(), small = def;
	char buf[4096];
	const char *why = NULL;
	int accepted = 0, i;

	if (seed == 0)
		seed = 1;
	rng_state = seed;
	printf("protocol: random seed %llu (SEED=%llu repeats this run)\n",
	       (unsigned long long) seed, (unsigned long long) seed);
	small.max_frame_bytes = 200;
	small.max_push_ops = 1;
	small.max_hello_groups = 1;
	small.max_depth = 3;
	small.max_bad_frames = 2;

	/* 5,000 random byte strings: half any bytes, half JSON-ish. */
	for (i = 0; i < 5000 && why == NULL; i++) {
		size_t len = rnd(300);
		bool any = i % 2 == 0;

		for (size_t k = 0; k < len; k++)
			buf[k] = any ? (char) rnd(256) : json_alphabet[rnd(sizeof json_alphabet - 1)];
		why = fuzz_one(buf, len, i % 4 == 3 ? &small : &def, &accepted);
	}
	report("random: 5000 random byte strings", why == NULL, "input %d: %s", i - 1, why);

	/* 5,000 mutated valid frames. */
	accepted = 0;
	for (i = 0; i < 5000 && why == NULL; i++) {
		const char *seed_frame = seeds[rnd(sizeof seeds / sizeof seeds[0])];
		size_t len = strlen(seed_frame);
		int muts = 1 + (int) rnd(4);

		memcpy(buf, seed_frame, len);
		for (int m = 0; m < muts; m++) {
			size_t pos = rnd(len + 1);
			size_t room = sizeof buf - len;

			switch (rnd(7)) {
			case 0: /* flip a byte */
				if (len > 0)
					buf[rnd(len)] = (char) rnd(256);
				break;
			case 1: /* insert a JSON-ish byte */
				if (room > 0) {
					memmove(buf + pos + 1, buf + pos, len - pos);
					buf[pos] = json_alphabet[rnd(sizeof json_alphabet - 1)];
					len++;
				}
				break;
			case 2: /* delete a run */
				if (pos < len) {
					size_t n = 1 + rnd(len - pos);
					if (n > 8)
						n = 1 + rnd(8);
					if (n > len - pos)
						n = len - pos;
					memmove(buf + pos, buf + pos + n, len - pos - n);
					len -= n;
				}
				break;
			case 3: /* truncate */
				len = pos;
				break;
			case 4: /* duplicate a slice */
				if (pos < len) {
					size_t n = 1 + rnd(len - pos);
					if (n > room)
						n = room;
					memmove(buf + pos + n, buf + pos, len - pos);
					len += n;
				}
				break;
			case 5: /* insert a run of brackets */
				{
					size_t n = rnd(80);
					if (n > room)
						n = room;
					memmove(buf + pos + n, buf + pos, len - pos);
					memset(buf + pos, rnd(2) ? '[' : '{', n);
					len += n;
				}
				break;
			case 6: /* swap a digit for another value-ish token */
				for (size_t k = pos; k < len; k++)
					if (buf[k] >= '0' && buf[k] <= '9') {
						buf[k] = "-.e9\"x"[rnd(6)];
						break;
					}
				break;
			}
		}
		why = fuzz_one(buf, len, i % 4 == 3 ? &small : &def, &accepted);
	}
	report("random: 5000 mutated valid frames", why == NULL, "input %d: %s", i - 1, why);
	printf("protocol: %d mutated frames were still accepted\n", accepted);
	report("random: some mutated frames still parse", accepted > 0, "none accepted");
}

int
main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0); /* keep lines if a sanitizer aborts */
	run_frame_cases();
	run_api_cases();
	run_state_cases();
	run_state_sequences();
	run_encoder_cases();
	run_random_cases();
	printf("protocol: %d passed, %d failed\n", n_pass, n_fail);
	return n_fail == 0 ? 0 : 1;
}

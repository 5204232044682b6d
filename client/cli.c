/*
 * client/cli.c: synclog-cli, a command-line client over libsynclog.
 *
 *   synclog-cli --db FILE [--server URL] [--token T] [--group G]... COMMAND
 *
 * One process, one command: put, delete, get, list and pending work on the
 * local SQLite file only (no network, no --server needed, also before the
 * first sync); sync pushes the outbox and pulls until caught up; watch stays
 * connected and prints what arrives.  The contract is DESIGN.md's
 * "Command-line surfaces"; the usage text below (usage()) is the reference
 * for output formats and exit statuses, and README.md repeats it.
 *
 * What a reader must know before editing:
 *   - Writes go through synclog_put/synclog_delete only.  Reads of the app's
 *     tables use SQLite directly on synclog_db(), read-only; every table and
 *     column name that goes into SQL text is quoted as an identifier
 *     (quote_ident), every value is bound.
 *   - `put` builds the fields object's JSON text by hand so that numbers keep
 *     the exact text the user typed (0.1 stays 0.1); jansson is used only to
 *     decide whether a value is JSON, never to re-encode one.
 *   - Everything printed on stdout is JSON, one value per line (strings are
 *     escaped, invalid UTF-8 from the file becomes U+FFFD), so output can be
 *     piped to jq or read line by line.  Diagnostics go to stderr, one line
 *     each, prefixed "synclog-cli: ".
 *   - Exit statuses: CLI_OK 0, CLI_LOCAL 1 (the file, an unknown table, a row
 *     not found, a write the library refused), CLI_USAGE 2 (bad command
 *     line), CLI_NET 2 (sync/watch: server unreachable, token refused, sync
 *     timed out), CLI_REJECTED 3 (sync: the server rejected an op).
 *   - Single-threaded.  watch's signal handler only sets a flag and calls
 *     synclog_wakeup(), which takes no lock.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#include "synclog.h"

enum {
	CLI_OK = 0,
	CLI_LOCAL = 1,
	CLI_USAGE = 2,
	CLI_NET = 2,
	CLI_REJECTED = 3
};

#define PROG "synclog-cli"
#define SYNC_TIMEOUT_DEFAULT_S 30.0
#define WATCH_SLICE_MS 250 /* watch services the network in slices this long */

static const char usage_text[] =
	"usage: synclog-cli --db FILE [--server URL] [--token T] [--group G]... COMMAND [ARGS]\n"
	"\n"
	"Local commands (never touch the network; work before the first sync):\n"
	"  put TABLE ROW COL=VALUE...    set fields of one row; prints the op id\n"
	"  put TABLE ROW --json OBJECT   the same, the fields given as one JSON object\n"
	"  delete TABLE ROW              delete one row; prints the op id\n"
	"  get TABLE ROW                 print the visible row as one JSON object\n"
	"                                (column -> value); exit 1 \"not found\" if absent\n"
	"  list TABLE                    print the visible rows as JSON lines, one\n"
	"                                object per line, ordered by primary key\n"
	"  pending                       print the ops not yet acknowledged, oldest\n"
	"                                first, one JSON object per line:\n"
	"                                {\"id\",\"table\",\"row\",\"kind\",\"fields\",\"hlc\"}\n"
	"\n"
	"Network commands (need --server and --token):\n"
	"  sync [--timeout SECONDS]      push every pending op, pull until caught up,\n"
	"                                then exit (timeout default 30); prints each\n"
	"                                rejected op as one JSON line\n"
	"                                {\"op_id\",\"table\",\"row\",\"code\",\"message\"}\n"
	"  watch [--count N] [--for SECONDS]\n"
	"                                stay connected (reconnecting) and print each\n"
	"                                applied change as {\"type\":\"change\",...the\n"
	"                                change: seq, op_id, client_id, table, row,\n"
	"                                kind, fields, hlc} and each rejection as\n"
	"                                {\"type\":\"rejected\",\"op_id\",...} (one JSON\n"
	"                                line each, flushed); connection events go to\n"
	"                                stderr; ends on SIGINT/SIGTERM, after N\n"
	"                                changes, or after SECONDS\n"
	"\n"
	"Values: VALUE is parsed as JSON when it parses (3, -0.5, 0.1, true, null,\n"
	"\"quoted text\", {\"a\":1}, [1,2]), else taken as a string: title=hello is\n"
	"\"hello\", title='\"3\"' is the string \"3\", title= is \"\".  Numbers keep the\n"
	"text typed.  Only the first '=' splits: note=a=b is \"a=b\".\n"
	"\n"
	"Rows read back: INTEGER and REAL columns print as numbers, TEXT as strings\n"
	"(parsed as JSON in a column declared json or jsonb), NULL as null.  The\n"
	"local file is SQLite, which has no booleans: true reads back as 1.\n"
	"\n"
	"Options:\n"
	"  --db FILE         the local database (created if missing; required)\n"
	"  --server URL      ws://HOST:PORT/ (default: $SYNCLOG_SERVER)\n"
	"  --token T         bearer token (default: $SYNCLOG_TOKEN)\n"
	"  --group G         a group to follow; repeat for more\n"
	"  --timeout SECONDS sync: give up after this long (default 30)\n"
	"  --count N         watch: exit 0 after N changes\n"
	"  --for SECONDS     watch: exit 0 after this long\n"
	"  --json OBJECT     put: the fields as one JSON object\n"
	"  --help            print this text and exit 0\n"
	"  --                end of options (for a ROW that starts with --)\n"
	"  Options may come before or after COMMAND; --opt=value works too.\n"
	"\n"
	"Exit status: 0 success; 1 local failure (the file, unknown table, row not\n"
	"found, a write refused); 2 usage error, or (sync, watch) server unreachable,\n"
	"token refused, timed out; 3 sync: the server rejected at least one op\n"
	"(each printed on stdout).  Pending ops are kept whenever sync fails.\n";

/* ---------------------------------------------------------------- messages */

/* Prints "synclog-cli: MESSAGE" on stderr. */
static void __attribute__((format(printf, 1, 2)))
say(const char *fmt, ...)
{
	va_list ap;

	fputs(PROG ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* A usage error: the message, then the usage text, on stderr.  Returns CLI_USAGE. */
static int __attribute__((format(printf, 1, 2)))
usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs(PROG ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fputs(usage_text, stderr);
	return CLI_USAGE;
}

/* ---------------------------------------------------------------- growable text */

/* A growable string, always NUL-terminated once anything was added. */
typedef struct {
	char *p;
	size_t len, cap;
} buf;

/* Appends n bytes.  Cannot fail: out of memory ends the process (exit 1). */
static void
buf_add(buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		char *p;

		while (b->len + n + 1 > cap)
			cap *= 2;
		if ((p = realloc(b->p, cap)) == NULL) {
			say("out of memory");
			exit(CLI_LOCAL);
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void
buf_str(buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

static void
buf_chr(buf *b, char c)
{
	buf_add(b, &c, 1);
}

/* Writes b and a newline to stdout and empties b.  (Callbacks flush after.) */
static void
buf_println(buf *b)
{
	if (b->len > 0)
		fwrite(b->p, 1, b->len, stdout);
	fputc('\n', stdout);
	b->len = 0;
}

/* ---------------------------------------------------------------- JSON text */

/*
 * The length of the well-formed UTF-8 sequence at s (at most n bytes), or 0
 * when it is not one (bad lead byte, truncated, overlong, surrogate, above
 * U+10FFFF).  s[0] is not ASCII.
 */
static size_t
utf8_seq(const unsigned char *s, size_t n)
{
	unsigned c = s[0], cp;
	size_t len, i;

	if (c >= 0xc2 && c <= 0xdf)
		len = 2, cp = c & 0x1f;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3, cp = c & 0x0f;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4, cp = c & 0x07;
	else
		return 0;
	if (n < len)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/* True when s (n bytes) is well-formed UTF-8 without NUL. */
static bool
utf8_ok(const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *) s;
	size_t i = 0, k;

	while (i < n) {
		if (u[i] == 0)
			return false;
		if (u[i] < 0x80) {
			i++;
			continue;
		}
		if ((k = utf8_seq(u + i, n - i)) == 0)
			return false;
		i += k;
	}
	return true;
}

/* Appends s (n bytes) as a JSON string; invalid UTF-8 bytes become U+FFFD. */
static void
jw_str(buf *b, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *) s;
	size_t i = 0, k;
	char esc[8];

	buf_chr(b, '"');
	while (i < n) {
		unsigned char c = u[i];

		if (c == '"' || c == '\\') {
			buf_chr(b, '\\');
			buf_chr(b, (char) c);
			i++;
		} else if (c < 0x20) {
			switch (c) {
			case '\n': buf_str(b, "\\n"); break;
			case '\t': buf_str(b, "\\t"); break;
			case '\r': buf_str(b, "\\r"); break;
			case '\b': buf_str(b, "\\b"); break;
			case '\f': buf_str(b, "\\f"); break;
			default:
				snprintf(esc, sizeof(esc), "\\u%04x", c);
				buf_str(b, esc);
			}
			i++;
		} else if (c < 0x80) {
			buf_chr(b, (char) c);
			i++;
		} else if ((k = utf8_seq(u + i, n - i)) > 0) {
			buf_add(b, s + i, k);
			i += k;
		} else {
			buf_str(b, "\\ufffd");
			i++;
		}
	}
	buf_chr(b, '"');
}

static void
jw_cstr(buf *b, const char *s)
{
	if (s == NULL)
		buf_str(b, "null");
	else
		jw_str(b, s, strlen(s));
}

/*
 * Appends the JSON text s (n bytes), already known to be valid JSON, without
 * the whitespace between tokens, so it fits on one line.  String contents
 * and number texts are copied byte for byte.
 */
static void
jw_minified(buf *b, const char *s, size_t n)
{
	bool in_str = false, esc = false;
	size_t i;

	for (i = 0; i < n; i++) {
		char c = s[i];

		if (in_str) {
			if (esc)
				esc = false;
			else if (c == '\\')
				esc = true;
			else if (c == '"')
				in_str = false;
		} else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
			continue;
		} else if (c == '"') {
			in_str = true;
		}
		buf_chr(b, c);
	}
}

/* True when s is exactly a JSON number (RFC 8259 grammar, nothing around it). */
static bool
is_json_number(const char *s)
{
	const char *p = s;

#define DIGIT(c) ((c) >= '0' && (c) <= '9')
	if (*p == '-')
		p++;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		while (DIGIT(*p))
			p++;
	else
		return false;
	if (*p == '.') {
		p++;
		if (!DIGIT(*p))
			return false;
		while (DIGIT(*p))
			p++;
	}
	if (*p == 'e' || *p == 'E') {
		p++;
		if (*p == '+' || *p == '-')
			p++;
		if (!DIGIT(*p))
			return false;
		while (DIGIT(*p))
			p++;
	}
#undef DIGIT
	return *p == '\0';
}

/* True when the n bytes at s parse as one JSON value (any type). */
static bool
is_json(const char *s, size_t n)
{
	json_error_t err;
	json_t *v = json_loadb(s, n, JSON_DECODE_ANY, &err); /* new reference */

	if (v == NULL)
		return false;
	json_decref(v);
	return true;
}

/*
 * Appends the JSON text of one command-line value: its own text when it is a
 * JSON value (numbers byte for byte, whitespace between tokens dropped), else
 * the value as a JSON string.  False (nothing appended) when the value is
 * neither JSON nor valid UTF-8.
 */
static bool
jw_value_arg(buf *b, const char *v)
{
	size_t n = strlen(v);

	if (is_json_number(v) || is_json(v, n)) {
		jw_minified(b, v, n);
		return true;
	}
	if (!utf8_ok(v, n))
		return false;
	jw_str(b, v, n);
	return true;
}

/* Appends d as the shortest decimal text that reads back as d; null for inf/nan. */
static void
jw_real(buf *b, double d)
{
	char t[40];
	int prec;

	if (!isfinite(d)) {
		buf_str(b, "null");
		return;
	}
	for (prec = 1; prec <= 17; prec++) {
		snprintf(t, sizeof(t), "%.*g", prec, d);
		if (strtod(t, NULL) == d)
			break;
	}
	buf_str(b, t);
}

/* ---------------------------------------------------------------- the command line */

/* What the command line said.  Strings borrow argv or the environment. */
typedef struct {
	const char *db, *server, *token, *json;
	const char **groups;
	size_t n_groups;
	double timeout_s; /* sync; 0: not given */
	long count;       /* watch; 0: not given */
	double for_s;     /* watch; 0: not given */
	bool help;
	const char *cmd;
	char **args; /* the positional arguments after cmd */
	int n_args;
} cli_opts;

/* Parses a positive number of seconds (decimals allowed, at most a day × 365). */
static bool
parse_seconds(const char *s, double *out)
{
	char *end;
	double d;

	errno = 0;
	d = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !(d > 0) || d > 365.0 * 86400)
		return false;
	*out = d;
	return true;
}

/*
 * Fills o from argv.  Options may come anywhere (before or after the
 * command); "--" ends them; "--name=value" and "--name value" both work.
 * Returns CLI_OK or, after printing the usage error, CLI_USAGE.  o->groups
 * and o->args are allocated here (free both).
 */
static int
parse_args(int argc, char **argv, cli_opts *o)
{
	bool opts_done = false;
	int i;

	memset(o, 0, sizeof(*o));
	o->groups = calloc((size_t) argc + 1, sizeof(*o->groups));
	o->args = calloc((size_t) argc + 1, sizeof(*o->args));
	if (o->groups == NULL || o->args == NULL) {
		say("out of memory");
		return CLI_LOCAL;
	}
	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *val = NULL, *eq;
		char name[32];
		size_t nlen;

		if (opts_done || (strncmp(a, "--", 2) != 0 && strcmp(a, "-h") != 0)) {
			if (o->cmd == NULL)
				o->cmd = a;
			else
				o->args[o->n_args++] = argv[i];
			continue;
		}
		if (strcmp(a, "--") == 0) {
			opts_done = true;
			continue;
		}
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			o->help = true;
			continue;
		}
		eq = strchr(a, '=');
		nlen = eq ? (size_t) (eq - a) : strlen(a);
		if (nlen >= sizeof(name))
			return usage_error("unknown option %s", a);
		memcpy(name, a, nlen);
		name[nlen] = '\0';
		if (strcmp(name, "--db") != 0 && strcmp(name, "--server") != 0 &&
		    strcmp(name, "--token") != 0 && strcmp(name, "--group") != 0 &&
		    strcmp(name, "--timeout") != 0 && strcmp(name, "--count") != 0 &&
		    strcmp(name, "--for") != 0 && strcmp(name, "--json") != 0)
			return usage_error("unknown option %s", name);
		if (eq != NULL)
			val = eq + 1;
		else if (i + 1 < argc)
			val = argv[++i];
		else
			return usage_error("option %s needs a value", name);

		if (strcmp(name, "--db") == 0) {
			o->db = val;
		} else if (strcmp(name, "--server") == 0) {
			o->server = val;
		} else if (strcmp(name, "--token") == 0) {
			o->token = val;
		} else if (strcmp(name, "--group") == 0) {
			if (val[0] == '\0')
				return usage_error("--group needs a non-empty group name");
			o->groups[o->n_groups++] = val;
		} else if (strcmp(name, "--timeout") == 0) {
			if (!parse_seconds(val, &o->timeout_s))
				return usage_error("--timeout wants a positive number of seconds, not \"%s\"", val);
		} else if (strcmp(name, "--for") == 0) {
			if (!parse_seconds(val, &o->for_s))
				return usage_error("--for wants a positive number of seconds, not \"%s\"", val);
		} else if (strcmp(name, "--count") == 0) {
			char *end;

			errno = 0;
			o->count = strtol(val, &end, 10);
			if (errno != 0 || end == val || *end != '\0' || o->count <= 0)
				return usage_error("--count wants a positive whole number, not \"%s\"", val);
		} else {
			o->json = val;
		}
	}
	return CLI_OK;
}

/* ---------------------------------------------------------------- put, delete */

/*
 * Builds the fields object's JSON text from COL=VALUE arguments into b.
 * Returns CLI_OK, or CLI_USAGE after printing why.
 */
static int
fields_from_args(char **args, int n, buf *b)
{
	int i, j;

	buf_chr(b, '{');
	for (i = 0; i < n; i++) {
		const char *eq = strchr(args[i], '=');
		size_t klen;

		if (eq == NULL || eq == args[i])
			return usage_error("put: \"%s\" is not COL=VALUE", args[i]);
		klen = (size_t) (eq - args[i]);
		if (!utf8_ok(args[i], klen))
			return usage_error("put: column name in \"%s\" is not valid UTF-8", args[i]);
		for (j = 0; j < i; j++)
			if (strncmp(args[j], args[i], klen) == 0 && args[j][klen] == '=')
				return usage_error("put: column \"%.*s\" given twice", (int) klen, args[i]);
		if (i > 0)
			buf_chr(b, ',');
		jw_str(b, args[i], klen);
		buf_chr(b, ':');
		if (!jw_value_arg(b, eq + 1))
			return usage_error("put: the value of column \"%.*s\" is not valid UTF-8",
			                   (int) klen, args[i]);
	}
	buf_chr(b, '}');
	return CLI_OK;
}

/* put TABLE ROW COL=VALUE... | put TABLE ROW --json OBJECT */
static int
cmd_put(synclog *sl, const cli_opts *o)
{
	char op_id[SYNCLOG_UUID_LEN + 1];
	buf fields = {0};
	int rc;

	if (o->n_args < 2)
		return usage_error("put needs TABLE ROW COL=VALUE...");
	if (o->json != NULL) {
		json_t *v;
		json_error_t err;

		if (o->n_args > 2)
			return usage_error("put: give the fields either as COL=VALUE or with --json, not both");
		v = json_loads(o->json, 0, &err); /* new reference */
		if (!json_is_object(v)) {
			json_decref(v);
			return usage_error("put: --json wants a JSON object");
		}
		json_decref(v);
		buf_str(&fields, o->json);
	} else if (o->n_args == 2) {
		return usage_error("put needs at least one COL=VALUE (or --json OBJECT)");
	} else if ((rc = fields_from_args(o->args + 2, o->n_args - 2, &fields)) != CLI_OK) {
		free(fields.p);
		return rc;
	}
	rc = synclog_put(sl, o->args[0], o->args[1], fields.p, op_id);
	free(fields.p);
	if (rc != SYNCLOG_OK) {
		say("put: %s", synclog_errmsg(sl));
		return CLI_LOCAL;
	}
	printf("%s\n", op_id);
	return CLI_OK;
}

/* delete TABLE ROW */
static int
cmd_delete(synclog *sl, const cli_opts *o)
{
	char op_id[SYNCLOG_UUID_LEN + 1];

	if (o->n_args != 2)
		return usage_error("delete needs TABLE ROW");
	if (synclog_delete(sl, o->args[0], o->args[1], op_id) != SYNCLOG_OK) {
		say("delete: %s", synclog_errmsg(sl));
		return CLI_LOCAL;
	}
	printf("%s\n", op_id);
	return CLI_OK;
}

/* ---------------------------------------------------------------- get, list */

/* Appends name quoted as an SQL identifier: "name", inner quotes doubled. */
static void
quote_ident(buf *b, const char *name)
{
	buf_chr(b, '"');
	for (; *name; name++) {
		if (*name == '"')
			buf_chr(b, '"');
		buf_chr(b, *name);
	}
	buf_chr(b, '"');
}

/* True when decl (a column's declared type, may be NULL) names json or jsonb. */
static bool
decl_is_json(const char *decl)
{
	size_t i;

	if (decl == NULL)
		return false;
	for (i = 0; decl[i]; i++)
		if (strncasecmp(decl + i, "json", 4) == 0)
			return true;
	return false;
}

/*
 * Finds app table `table` in db and its primary-key column.  Returns CLI_OK
 * with *pk_out (malloc'd, the caller frees), or CLI_LOCAL after saying why:
 * "unknown table" (also for synclog's own and SQLite's tables), a table
 * without a single-column primary key, a database error.
 */
static int
table_pk(sqlite3 *db, const char *cmd, const char *table, char **pk_out)
{
	sqlite3_stmt *st = NULL;
	int rc, n = 0;

	*pk_out = NULL;
	if (table[0] == '\0' || strncmp(table, "_synclog", 8) == 0 || strncasecmp(table, "sqlite_", 7) == 0) {
		say("%s: unknown table \"%s\"", cmd, table);
		return CLI_LOCAL;
	}
	if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1", -1, &st,
	                       NULL) != SQLITE_OK)
		goto dberr;
	sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	st = NULL;
	if (rc == SQLITE_DONE) {
		say("%s: unknown table \"%s\"", cmd, table);
		return CLI_LOCAL;
	}
	if (rc != SQLITE_ROW)
		goto dberr;
	if (sqlite3_prepare_v2(db, "SELECT name FROM pragma_table_info(?1) WHERE pk > 0", -1, &st, NULL) !=
	    SQLITE_OK)
		goto dberr;
	sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n++ == 0 && (*pk_out = strdup((const char *) sqlite3_column_text(st, 0))) == NULL) {
			sqlite3_finalize(st);
			say("out of memory");
			return CLI_LOCAL;
		}
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		goto dberr;
	if (n != 1) {
		free(*pk_out);
		*pk_out = NULL;
		say("%s: table \"%s\" has no single-column primary key", cmd, table);
		return CLI_LOCAL;
	}
	return CLI_OK;
dberr:
	free(*pk_out);
	*pk_out = NULL;
	say("%s: reading table \"%s\": %s", cmd, table, sqlite3_errmsg(db));
	return CLI_LOCAL;
}

/* Appends the current row of st as one JSON object, columns in table order. */
static void
row_json(buf *b, sqlite3_stmt *st)
{
	int i, n = sqlite3_column_count(st);

	buf_chr(b, '{');
	for (i = 0; i < n; i++) {
		const char *text;
		int len;

		if (i > 0)
			buf_chr(b, ',');
		jw_cstr(b, sqlite3_column_name(st, i));
		buf_chr(b, ':');
		switch (sqlite3_column_type(st, i)) {
		case SQLITE_INTEGER: {
			char t[32];

			snprintf(t, sizeof(t), "%lld", (long long) sqlite3_column_int64(st, i));
			buf_str(b, t);
			break;
		}
		case SQLITE_FLOAT:
			jw_real(b, sqlite3_column_double(st, i));
			break;
		case SQLITE_NULL:
			buf_str(b, "null");
			break;
		default: /* TEXT; a BLOB is shown as its bytes, as text */
			text = (const char *) sqlite3_column_text(st, i);
			len = sqlite3_column_bytes(st, i);
			if (text == NULL)
				buf_str(b, "null");
			else if (decl_is_json(sqlite3_column_decltype(st, i)) && len > 0 && is_json(text, (size_t) len))
				jw_minified(b, text, (size_t) len);
			else
				jw_str(b, text, (size_t) len);
		}
	}
	buf_chr(b, '}');
}

/*
 * get TABLE ROW (row != NULL) or list TABLE (row == NULL): the visible rows
 * as JSON objects, one per line.
 */
static int
cmd_read(synclog *sl, const char *cmd, const char *table, const char *row)
{
	sqlite3 *db = synclog_db(sl);
	sqlite3_stmt *st = NULL;
	char *pk = NULL;
	buf sql = {0}, out = {0};
	int rc, found = 0, status;

	if ((status = table_pk(db, cmd, table, &pk)) != CLI_OK)
		return status;
	buf_str(&sql, "SELECT * FROM ");
	quote_ident(&sql, table);
	buf_str(&sql, row ? " WHERE " : " ORDER BY ");
	quote_ident(&sql, pk);
	if (row)
		buf_str(&sql, " = ?1");
	free(pk);
	if (sqlite3_prepare_v2(db, sql.p, -1, &st, NULL) != SQLITE_OK) {
		say("%s: reading table \"%s\": %s", cmd, table, sqlite3_errmsg(db));
		free(sql.p);
		return CLI_LOCAL;
	}
	free(sql.p);
	if (row)
		sqlite3_bind_text(st, 1, row, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		row_json(&out, st);
		buf_println(&out);
		found++;
		if (row)
			break;
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		say("%s: reading table \"%s\": %s", cmd, table, sqlite3_errmsg(db));
		status = CLI_LOCAL;
	} else if (row && !found) {
		say("get: not found: no row \"%s\" in table \"%s\"", row, table);
		status = CLI_LOCAL;
	}
	sqlite3_finalize(st);
	free(out.p);
	return status;
}

/* ---------------------------------------------------------------- pending */

static int
pending_one(void *ctx, const synclog_op *op)
{
	buf *b = ctx;

	buf_str(b, "{\"id\":");
	jw_cstr(b, op->op_id);
	buf_str(b, ",\"table\":");
	jw_cstr(b, op->table);
	buf_str(b, ",\"row\":");
	jw_cstr(b, op->row);
	buf_str(b, ",\"kind\":");
	jw_cstr(b, op->kind);
	buf_str(b, ",\"fields\":");
	if (op->fields == NULL || op->fields[0] == '\0')
		buf_str(b, "{}");
	else
		jw_minified(b, op->fields, strlen(op->fields));
	buf_str(b, ",\"hlc\":");
	jw_cstr(b, op->hlc);
	buf_chr(b, '}');
	buf_println(b);
	return 0;
}

static int
cmd_pending(synclog *sl)
{
	buf b = {0};
	int rc = synclog_pending(sl, pending_one, &b);

	free(b.p);
	if (rc != SYNCLOG_OK) {
		say("pending: %s", synclog_errmsg(sl));
		return CLI_LOCAL;
	}
	return CLI_OK;
}

/* ---------------------------------------------------------------- sync, watch */

/* What the callbacks of sync and watch share.  One of these per run. */
typedef struct {
	bool watch;      /* print changes, tag lines with "type" */
	long changes;    /* changes seen */
	long rejections; /* rejections seen */
	long count;      /* watch: stop after this many changes (0: never) */
	buf line;
} net_ctx;

static volatile sig_atomic_t stop_requested;
static synclog *signal_sl; /* the handle synclog_wakeup wakes from the signal handler */

static void
on_stop_signal(int sig)
{
	(void) sig;
	stop_requested = 1;
	if (signal_sl != NULL)
		synclog_wakeup(signal_sl);
}

static void
on_reject(void *vctx, const char *op_id, const char *table, const char *row, const char *code,
          const char *message)
{
	net_ctx *c = vctx;
	buf *b = &c->line;

	c->rejections++;
	buf_str(b, c->watch ? "{\"type\":\"rejected\",\"op_id\":" : "{\"op_id\":");
	jw_cstr(b, op_id);
	buf_str(b, ",\"table\":");
	jw_cstr(b, table);
	buf_str(b, ",\"row\":");
	jw_cstr(b, row);
	buf_str(b, ",\"code\":");
	jw_cstr(b, code);
	buf_str(b, ",\"message\":");
	jw_cstr(b, message);
	buf_chr(b, '}');
	buf_println(b);
	fflush(stdout);
}

static void
on_change(void *vctx, const synclog_change *ch)
{
	net_ctx *c = vctx;
	buf *b = &c->line;
	size_t n = ch->json ? strlen(ch->json) : 0;
	const char *p = ch->json, *q;

	if (!c->watch || (c->count > 0 && c->changes >= c->count))
		return; /* sync prints no changes; watch --count N prints exactly N */
	c->changes++;
	while (p != NULL && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	if (n > 0 && *p == '{' && is_json(ch->json, n)) {
		/* {"type":"change", then the change's members as they came */
		for (q = p + 1; *q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'; q++)
			;
		buf_str(b, "{\"type\":\"change\"");
		if (*q != '}')
			buf_chr(b, ',');
		jw_minified(b, q, strlen(q));
	} else {
		char seq[32];

		snprintf(seq, sizeof(seq), "%llu", (unsigned long long) ch->seq);
		buf_str(b, "{\"type\":\"change\",\"seq\":");
		buf_str(b, seq);
		buf_str(b, ",\"op_id\":");
		jw_cstr(b, ch->op_id);
		buf_str(b, ",\"client_id\":");
		jw_cstr(b, ch->client_id);
		buf_str(b, ",\"table\":");
		jw_cstr(b, ch->table);
		buf_str(b, ",\"row\":");
		jw_cstr(b, ch->row);
		buf_str(b, ",\"kind\":");
		jw_cstr(b, ch->kind);
		buf_str(b, ",\"fields\":");
		if (ch->fields && is_json(ch->fields, strlen(ch->fields)))
			jw_minified(b, ch->fields, strlen(ch->fields));
		else
			buf_str(b, "{}");
		buf_str(b, ",\"hlc\":");
		jw_cstr(b, ch->hlc);
		buf_chr(b, '}');
	}
	buf_println(b);
	fflush(stdout);
	if (c->count > 0 && c->changes >= c->count)
		stop_requested = 1;
}

/* Connection events: all of them for watch, errors only for sync; on stderr. */
static void
on_event(void *vctx, synclog_event ev, const char *detail)
{
	net_ctx *c = vctx;

	switch (ev) {
	case SYNCLOG_EV_CONNECTED:
		if (c->watch)
			say("connected (server cursor %s)", detail);
		break;
	case SYNCLOG_EV_DISCONNECTED:
		if (c->watch)
			say("disconnected: %s", detail);
		break;
	case SYNCLOG_EV_SNAPSHOT:
		if (c->watch)
			say("snapshot received (cursor %s)", detail);
		break;
	case SYNCLOG_EV_ERROR:
		say("server error: %s", detail);
		break;
	}
}

/*
 * Points the handle at o's server (run() checked that there is one) with c
 * as the callbacks' context; CLI_OK, or an exit status after saying why (a
 * malformed URL or token is a usage error).
 */
static int
net_setup(synclog *sl, const cli_opts *o, net_ctx *c)
{
	synclog_config cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.url = o->server;
	cfg.token = o->token;
	cfg.groups = o->groups;
	cfg.n_groups = o->n_groups;
	synclog_on_reject(sl, on_reject, c);
	synclog_on_change(sl, on_change, c);
	synclog_on_event(sl, on_event, c);
	switch (synclog_connect(sl, &cfg)) {
	case SYNCLOG_OK:
		return CLI_OK;
	case SYNCLOG_EINVAL:
		return usage_error("%s: %s", o->cmd, synclog_errmsg(sl));
	default:
		say("%s: %s", o->cmd, synclog_errmsg(sl));
		return CLI_LOCAL;
	}
}

/* Detaches the callbacks (their ctx lives on the caller's stack). */
static void
net_teardown(synclog *sl)
{
	synclog_disconnect(sl);
	synclog_on_reject(sl, NULL, NULL);
	synclog_on_change(sl, NULL, NULL);
	synclog_on_event(sl, NULL, NULL);
}

/* sync [--timeout SECONDS] */
static int
cmd_sync(synclog *sl, const cli_opts *o)
{
	net_ctx c = {0};
	double t = o->timeout_s > 0 ? o->timeout_s : SYNC_TIMEOUT_DEFAULT_S;
	int status, rc;

	if ((status = net_setup(sl, o, &c)) != CLI_OK)
		return status;
	rc = synclog_sync(sl, t * 1000 > INT_MAX ? INT_MAX : (int) (t * 1000));
	switch (rc) {
	case SYNCLOG_OK:
		status = c.rejections > 0 ? CLI_REJECTED : CLI_OK;
		if (c.rejections > 0)
			say("sync: the server rejected %ld op%s (listed on stdout)", c.rejections,
			    c.rejections == 1 ? "" : "s");
		break;
	case SYNCLOG_ENET:
		say("sync: cannot reach the server: %s", synclog_errmsg(sl));
		status = CLI_NET;
		break;
	case SYNCLOG_EAUTH:
		say("sync: the server refused the token: %s", synclog_errmsg(sl));
		status = CLI_NET;
		break;
	case SYNCLOG_ETIMEOUT:
		say("sync: timed out after %g s: %s", t, synclog_errmsg(sl));
		status = CLI_NET;
		break;
	default:
		say("sync: %s", synclog_errmsg(sl));
		status = CLI_LOCAL;
	}
	net_teardown(sl);
	free(c.line.p);
	return status;
}

/* Monotonic milliseconds. */
static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec * 1000.0 + (double) ts.tv_nsec / 1e6;
}

/* watch [--count N] [--for SECONDS] */
static int
cmd_watch(synclog *sl, const cli_opts *o)
{
	net_ctx c = {.watch = true, .count = o->count};
	struct sigaction sa;
	double deadline = o->for_s > 0 ? now_ms() + o->for_s * 1000.0 : 0;
	int status, rc;

	if ((status = net_setup(sl, o, &c)) != CLI_OK)
		return status;
	signal_sl = sl;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	status = CLI_OK;
	while (!stop_requested) {
		int slice = WATCH_SLICE_MS;

		if (deadline > 0) {
			double left = deadline - now_ms();

			if (left <= 0)
				break;
			if (left < slice)
				slice = (int) left + 1;
		}
		rc = synclog_run(sl, slice);
		if (rc == SYNCLOG_EAUTH) {
			say("watch: the server refused the token: %s", synclog_errmsg(sl));
			status = CLI_NET;
			break;
		}
		if (rc != SYNCLOG_OK) {
			say("watch: %s", synclog_errmsg(sl));
			status = CLI_LOCAL;
			break;
		}
	}
	sa.sa_handler = SIG_DFL;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal_sl = NULL;
	net_teardown(sl);
	free(c.line.p);
	return status;
}

/* ---------------------------------------------------------------- main */

/*
 * Checks the command line against the command (arity, which options apply,
 * --server/--token for the network commands), opens --db and runs the
 * command.  Returns the exit status; every failure has been reported.
 */
static int
run(const cli_opts *o)
{
	const char *c = o->cmd;
	bool local = strcmp(c, "put") == 0 || strcmp(c, "delete") == 0 || strcmp(c, "get") == 0 ||
	             strcmp(c, "list") == 0 || strcmp(c, "pending") == 0;
	bool net = strcmp(c, "sync") == 0 || strcmp(c, "watch") == 0;
	synclog *sl = NULL;
	int status;

	if (!local && !net)
		return usage_error("unknown command \"%s\"", c);
	if (o->db == NULL || o->db[0] == '\0')
		return usage_error("--db FILE is required");
	if (o->json != NULL && strcmp(c, "put") != 0)
		return usage_error("--json applies to put only");
	if ((o->count > 0 || o->for_s > 0) && strcmp(c, "watch") != 0)
		return usage_error("--count and --for apply to watch only");
	if (o->timeout_s > 0 && strcmp(c, "sync") != 0)
		return usage_error("--timeout applies to sync only");
	if ((strcmp(c, "get") == 0 || strcmp(c, "delete") == 0) && o->n_args != 2)
		return usage_error("%s needs TABLE ROW", c);
	if (strcmp(c, "list") == 0 && o->n_args != 1)
		return usage_error("list needs TABLE");
	if ((strcmp(c, "pending") == 0 || net) && o->n_args != 0)
		return usage_error("%s takes no arguments", c);
	if (net && (o->server == NULL || o->server[0] == '\0'))
		return usage_error("%s needs --server URL (or SYNCLOG_SERVER)", c);
	if (net && (o->token == NULL || o->token[0] == '\0'))
		return usage_error("%s needs --token T (or SYNCLOG_TOKEN)", c);
	/* Reading never creates a file: a mistyped --db is an error, not an empty database. */
	if ((strcmp(c, "get") == 0 || strcmp(c, "list") == 0 || strcmp(c, "pending") == 0) &&
	    access(o->db, F_OK) != 0) {
		say("%s: no database at %s: %s", c, o->db, strerror(errno));
		return CLI_LOCAL;
	}

	if (synclog_open(o->db, &sl) != SYNCLOG_OK) {
		say("%s", sl ? synclog_errmsg(sl) : "out of memory");
		synclog_close(sl);
		return CLI_LOCAL;
	}
	if (strcmp(c, "put") == 0)
		status = cmd_put(sl, o);
	else if (strcmp(c, "delete") == 0)
		status = cmd_delete(sl, o);
	else if (strcmp(c, "get") == 0)
		status = cmd_read(sl, "get", o->args[0], o->args[1]);
	else if (strcmp(c, "list") == 0)
		status = cmd_read(sl, "list", o->args[0], NULL);
	else if (strcmp(c, "pending") == 0)
		status = cmd_pending(sl);
	else if (strcmp(c, "sync") == 0)
		status = cmd_sync(sl, o);
	else
		status = cmd_watch(sl, o);
	synclog_close(sl);
	return status;
}

int
main(int argc, char **argv)
{
	cli_opts o;
	int status;

	status = parse_args(argc, argv, &o);
	if (status == CLI_OK) {
		if (o.server == NULL)
			o.server = getenv("SYNCLOG_SERVER");
		if (o.token == NULL)
			o.token = getenv("SYNCLOG_TOKEN");
		if (o.help) {
			fputs(usage_text, stdout);
		} else if (o.cmd == NULL) {
			status = usage_error("no command given");
		} else {
			status = run(&o);
		}
	}
	free(o.groups);
	free(o.args);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		say("cannot write to stdout: %s", strerror(errno));
		if (status == CLI_OK)
			status = CLI_LOCAL;
	}
	return status;
}

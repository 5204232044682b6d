/*
 * client/store.c: libsynclog's durable local store on SQLite; the contract
 * and the words are in store.h.
 *
 * Every public function that writes runs between tx_begin() and tx_end():
 * BEGIN IMMEDIATE, then COMMIT, or ROLLBACK and the in-memory copies
 * (clock, cursor, tables) restored, so that failure changes nothing.
 * Identifiers of the app's tables come from welcome.tables only and are
 * always written quoted (qident); values are always bound parameters.
 *
 * The visible row of (table, row) is recomputed by recompute(): confirmed
 * state and the row's outbox ops (acked or not, in seq order) go through
 * sl_merge_visible, and the result is written with INSERT OR REPLACE, or the
 * row is deleted when it is not visible.
 */
#include <fcntl.h>
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

#include "hlc.h"
#include "merge.h"
#include "store.h"

#define SL_MAX_SKEW_MS 60000 /* the receive rule's bound, as synclog.max_clock_skew */
#define SL_STMT_CACHE 64     /* prepared statements kept per store */

/* One of these per open file. */
struct sl_store {
	sqlite3 *db;
	char client_id[SL_UUID_LEN + 1];
	uint64_t cursor;
	sl_hlc_clock clock;
	json_t *tables;            /* owned; welcome.tables as stored, or NULL */
	json_t *snap_groups;       /* owned; the groups of the snapshot being received */
	bool snap_open;            /* a snapshot was begun and not finished */
	int urandom;               /* /dev/urandom, open for the store's life; -1 when closed */
	struct cached {            /* prepared statements kept for reuse, by SQL text */
		char *sql;             /* owned */
		sqlite3_stmt *st;
		bool busy;             /* handed out by prep() and not yet release()d */
	} cache[SL_STMT_CACHE];
	int n_cached;
	char errmsg[512];
};

/* Saved in-memory state, restored on rollback. */
typedef struct saved {
	uint64_t cursor;
	sl_hlc_clock clock;
	json_t *tables; /* a new reference */
} saved;

static const char *schema_sql =
	"CREATE TABLE IF NOT EXISTS _synclog_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
	"CREATE TABLE IF NOT EXISTS _synclog_confirmed (tbl TEXT NOT NULL, row TEXT NOT NULL,"
	" fields TEXT, clocks TEXT NOT NULL DEFAULT '{}', deleted INTEGER NOT NULL DEFAULT 0,"
	" PRIMARY KEY (tbl, row));"
	"CREATE TABLE IF NOT EXISTS _synclog_outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
	" op_id TEXT NOT NULL UNIQUE, tbl TEXT NOT NULL, row TEXT NOT NULL, kind TEXT NOT NULL,"
	" fields TEXT NOT NULL DEFAULT '{}', hlc TEXT NOT NULL, acked INTEGER NOT NULL DEFAULT 0);"
	"CREATE INDEX IF NOT EXISTS _synclog_outbox_row ON _synclog_outbox (tbl, row, seq);"
	"CREATE TABLE IF NOT EXISTS _synclog_snapshot (tbl TEXT NOT NULL, row TEXT NOT NULL,"
	" fields TEXT NOT NULL, clocks TEXT NOT NULL, PRIMARY KEY (tbl, row));";

/* ---------------------------------------------------------------- errors */

static int seterr(sl_store *s, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Records the error text and returns rc. */
static int
seterr(sl_store *s, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->errmsg, sizeof(s->errmsg), fmt, ap);
	va_end(ap);
	return rc;
}

/* SL_EDB with SQLite's message, prefixed by what was being done. */
static int
dberr(sl_store *s, const char *what)
{
	return seterr(s, SL_EDB, "%s: %s", what, sqlite3_errmsg(s->db));
}

/* ---------------------------------------------------------------- strings */

/* A growable string; on allocation failure oom is set and appends stop. */
typedef struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
} sbuf;

static void
sb_add(sbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 128;
		char *p;

		while (cap < b->len + n + 1)
			cap *= 2;
		if ((p = realloc(b->p, cap)) == NULL) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

/* Appends name as an SQL identifier: in double quotes, quotes doubled. */
static void
qident(sbuf *b, const char *name)
{
	sb_add(b, "\"", 1);
	for (const char *p = name; *p; p++) {
		if (*p == '"')
			sb_add(b, "\"\"", 2);
		else
			sb_add(b, p, 1);
	}
	sb_add(b, "\"", 1);
}

/* ---------------------------------------------------------------- SQLite helpers */

/* Runs sql (no parameters, any number of statements).  SL_OK or SL_EDB. */
static int
exec(sl_store *s, const char *sql, const char *what)
{
	if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return dberr(s, what);
	return SL_OK;
}

/*
 * A prepared statement for sql, from the store's cache when it holds one that
 * is not in use; NULL on failure, with the error recorded.  Every statement
 * prep() returns goes back through release(), never sqlite3_finalize.
 */
static sqlite3_stmt *
prep(sl_store *s, const char *sql)
{
	sqlite3_stmt *st = NULL;
	int i;

	for (i = 0; i < s->n_cached; i++) {
		if (!s->cache[i].busy && strcmp(s->cache[i].sql, sql) == 0) {
			s->cache[i].busy = true;
			return s->cache[i].st;
		}
	}
	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
		dberr(s, "prepare");
		sqlite3_finalize(st);
		return NULL;
	}
	if (s->n_cached < SL_STMT_CACHE && (s->cache[s->n_cached].sql = strdup(sql)) != NULL) {
		s->cache[s->n_cached].st = st;
		s->cache[s->n_cached].busy = true;
		s->n_cached++;
	}
	return st;
}

/* Gives back a statement from prep(): reset for reuse, or finalized.  Accepts NULL. */
static void
release(sl_store *s, sqlite3_stmt *st)
{
	if (st == NULL)
		return;
	for (int i = 0; i < s->n_cached; i++) {
		if (s->cache[i].st == st) {
			sqlite3_reset(st);
			sqlite3_clear_bindings(st);
			s->cache[i].busy = false;
			return;
		}
	}
	sqlite3_finalize(st);
}

/* Steps a statement that returns no row, then finalizes it.  SL_OK or SL_EDB. */
static int
step_done(sl_store *s, sqlite3_stmt *st, const char *what)
{
	int rc = sqlite3_step(st);

	if (rc != SQLITE_DONE) {
		dberr(s, what);
		release(s, st);
		return SL_EDB;
	}
	release(s, st);
	return SL_OK;
}

static int
meta_set(sl_store *s, const char *key, const char *value)
{
	sqlite3_stmt *st = prep(s, "INSERT OR REPLACE INTO _synclog_meta (key, value) VALUES (?, ?)");

	if (st == NULL)
		return SL_EDB;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, value, -1, SQLITE_TRANSIENT);
	return step_done(s, st, "write _synclog_meta");
}

/* The value of key, malloc'd, in *out (NULL when absent).  SL_OK, SL_EDB, SL_ENOMEM. */
static int
meta_get(sl_store *s, const char *key, char **out)
{
	sqlite3_stmt *st = prep(s, "SELECT value FROM _synclog_meta WHERE key = ?");
	int rc;

	*out = NULL;
	if (st == NULL)
		return SL_EDB;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*out = strdup((const char *) sqlite3_column_text(st, 0));
		release(s, st);
		return *out ? SL_OK : seterr(s, SL_ENOMEM, "out of memory");
	}
	release(s, st);
	return rc == SQLITE_DONE ? SL_OK : dberr(s, "read _synclog_meta");
}

static int
meta_set_u64(sl_store *s, const char *key, uint64_t v)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%llu", (unsigned long long) v);
	return meta_set(s, key, buf);
}

static int
save_clock(sl_store *s)
{
	char text[SL_HLC_TEXT_LEN + 1];

	sl_hlc_format(s->clock.last, text);
	return meta_set(s, "hlc", text);
}

/* Starts a write transaction and saves the in-memory state. */
static int
tx_begin(sl_store *s, saved *sv)
{
	sv->cursor = s->cursor;
	sv->clock = s->clock;
	sv->tables = json_incref(s->tables);
	if (exec(s, "BEGIN IMMEDIATE", "begin") != SL_OK) {
		json_decref(sv->tables);
		return SL_EDB;
	}
	return SL_OK;
}

/*
 * Ends the transaction begun by tx_begin: COMMIT when rc is SL_OK (and the
 * commit succeeds), else ROLLBACK and the in-memory state restored.  Returns
 * the final status; the error text of a failure is kept.
 */
static int
tx_end(sl_store *s, saved *sv, int rc)
{
	if (rc == SL_OK && sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		rc = dberr(s, "commit");
	if (rc != SL_OK) {
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		s->cursor = sv->cursor;
		s->clock = sv->clock;
		json_decref(s->tables);
		s->tables = sv->tables;
	} else
		json_decref(sv->tables);
	sv->tables = NULL;
	if (rc == SL_OK)
		s->errmsg[0] = '\0';
	return rc;
}

/* ---------------------------------------------------------------- ids and clocks */

/* A random UUID v4 from /dev/urandom into out.  SL_OK or SL_EDB. */
static int
new_uuid(sl_store *s, char out[SL_UUID_LEN + 1])
{
	unsigned char b[16];
	ssize_t got = 0;

	if (s->urandom < 0 && (s->urandom = open("/dev/urandom", O_RDONLY | O_CLOEXEC)) < 0)
		return seterr(s, SL_EDB, "cannot open /dev/urandom");
	while (got < 16) {
		ssize_t n = read(s->urandom, b + got, 16 - (size_t) got);

		if (n <= 0)
			return seterr(s, SL_EDB, "cannot read /dev/urandom");
		got += n;
	}
	b[6] = (unsigned char) ((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char) ((b[8] & 0x3f) | 0x80);
	snprintf(out, SL_UUID_LEN + 1,
	         "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
	         b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
	         b[15]);
	return SL_OK;
}

static uint64_t
wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

/* Observes a remote clock text, if well-formed; a skewed one is only counted. */
static void
observe_text(sl_store *s, const char *text)
{
	uint64_t h;

	if (text != NULL && sl_hlc_parse(text, &h) == SL_OK)
		(void) sl_hlc_observe(&s->clock, h, wall_ms());
}

/* ---------------------------------------------------------------- open / close */

int
sl_store_open(const char *path, sl_store **out)
{
	sl_store *s;
	char *v = NULL;
	uint64_t floor = 0;
	int rc;

	*out = NULL;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return SL_ENOMEM;
	s->urandom = -1;
	if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
	    SQLITE_OK) {
		rc = SL_EDB;
		goto fail;
	}
	sqlite3_busy_timeout(s->db, 5000);
	if ((rc = exec(s, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", "set WAL mode")) != SL_OK)
		goto fail;
	if ((rc = exec(s, "BEGIN IMMEDIATE", "begin")) != SL_OK)
		goto fail;
	if ((rc = exec(s, schema_sql, "create the internal tables")) != SL_OK)
		goto rollback;
	if ((rc = meta_get(s, "client_id", &v)) != SL_OK)
		goto rollback;
	if (v == NULL) {
		if ((rc = new_uuid(s, s->client_id)) != SL_OK ||
		    (rc = meta_set(s, "client_id", s->client_id)) != SL_OK ||
		    (rc = meta_set(s, "cursor", "0")) != SL_OK ||
		    (rc = meta_set(s, "hlc", "0000000000000000")) != SL_OK)
			goto rollback;
	} else {
		snprintf(s->client_id, sizeof(s->client_id), "%s", v);
		free(v);
		v = NULL;
	}
	if ((rc = meta_get(s, "cursor", &v)) != SL_OK)
		goto rollback;
	s->cursor = v ? strtoull(v, NULL, 10) : 0;
	free(v);
	if ((rc = meta_get(s, "hlc", &v)) != SL_OK)
		goto rollback;
	if (v != NULL && sl_hlc_parse(v, &floor) != SL_OK)
		floor = 0;
	free(v);
	sl_hlc_init(&s->clock, floor, SL_MAX_SKEW_MS);
	if ((rc = meta_get(s, "tables", &v)) != SL_OK)
		goto rollback;
	if (v != NULL) {
		s->tables = json_loads(v, 0, NULL);
		free(v);
	}
	if ((rc = exec(s, "COMMIT", "commit")) != SL_OK)
		goto rollback;
	*out = s;
	return SL_OK;
rollback:
	sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
fail:
	sl_store_close(s);
	return rc;
}

void
sl_store_close(sl_store *s)
{
	if (s == NULL)
		return;
	for (int i = 0; i < s->n_cached; i++) {
		sqlite3_finalize(s->cache[i].st);
		free(s->cache[i].sql);
	}
	if (s->urandom >= 0)
		close(s->urandom);
	sqlite3_close_v2(s->db);
	json_decref(s->tables);
	json_decref(s->snap_groups);
	free(s);
}

const char *sl_store_errmsg(const sl_store *s) { return s->errmsg; }
const char *sl_store_client_id(const sl_store *s) { return s->client_id; }
uint64_t sl_store_cursor(const sl_store *s) { return s->cursor; }
uint64_t sl_store_hlc(const sl_store *s) { return s->clock.last; }

/* ---------------------------------------------------------------- tables */

/* The description of table in welcome.tables (borrowed), or NULL. */
static json_t *
table_def(sl_store *s, const char *table)
{
	return s->tables ? json_object_get(s->tables, table) : NULL;
}

/* The SQLite column type for an SQL type name of welcome.tables. */
static const char *
affinity(const char *sql_type)
{
	static const char *const ints[] = {"integer", "int", "int2", "int4", "int8", "smallint",
	                                   "bigint", "serial", "bigserial", "smallserial",
	                                   "boolean", "bool"};
	static const char *const reals[] = {"real", "double", "double precision", "numeric",
	                                    "decimal", "float", "float4", "float8"};
	char word[32];
	size_t n = 0;

	/* The type's name up to a '(' or '[': "numeric(10,2)" is numeric. */
	while (sql_type[n] && sql_type[n] != '(' && sql_type[n] != '[' && n < sizeof(word) - 1) {
		char c = sql_type[n];

		word[n++] = (c >= 'A' && c <= 'Z') ? (char) (c - 'A' + 'a') : c;
	}
	while (n > 0 && word[n - 1] == ' ')
		n--;
	word[n] = '\0';
	if (sql_type[n] && sql_type[n] == '[')
		return "TEXT"; /* an array travels as text */
	for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++)
		if (strcmp(word, ints[i]) == 0)
			return "INTEGER";
	for (size_t i = 0; i < sizeof(reals) / sizeof(reals[0]); i++)
		if (strcmp(word, reals[i]) == 0)
			return "REAL";
	return "TEXT";
}

/* True when name may be an app table's: not empty and not ours or SQLite's. */
static bool
table_name_ok(const char *name)
{
	return name[0] != '\0' && strncmp(name, "_synclog", 8) != 0 &&
	       strncasecmp(name, "sqlite_", 7) != 0;
}

/* Checks one table description: {"pk": col, "group": col, "columns": {col: type}}. */
static bool
def_ok(const json_t *def)
{
	const json_t *pk = json_object_get(def, "pk");
	const json_t *cols = json_object_get(def, "columns");
	const char *col;
	json_t *type;

	if (!json_is_object(def) || !json_is_string(pk) || !json_is_object(cols) ||
	    json_object_get(cols, json_string_value(pk)) == NULL)
		return false;
	if (json_object_get(def, "group") != NULL && !json_is_string(json_object_get(def, "group")))
		return false;
	json_object_foreach((json_t *) cols, col, type) {
		if (col[0] == '\0' || !json_is_string(type))
			return false;
	}
	return true;
}

/* Creates table from def, or checks the existing table has def's columns. */
static int
ensure_one(sl_store *s, const char *table, const json_t *def)
{
	const char *pk = json_string_value(json_object_get(def, "pk"));
	json_t *cols = json_object_get(def, "columns");
	sqlite3_stmt *st;
	const char *col;
	json_t *type;
	sbuf b = {0};
	bool exists = false, first = true;
	int rc;

	if ((st = prep(s, "SELECT name FROM pragma_table_info(?)")) == NULL)
		return SL_EDB;
	sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
	{
		json_t *have = json_object();

		if (have == NULL) {
			release(s, st);
			return seterr(s, SL_ENOMEM, "out of memory");
		}
		while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
			exists = true;
			json_object_set_new(have, (const char *) sqlite3_column_text(st, 0), json_true());
		}
		release(s, st);
		if (rc != SQLITE_DONE) {
			json_decref(have);
			return dberr(s, "read the columns of an app table");
		}
		if (exists) {
			json_object_foreach(cols, col, type) {
				if (json_object_get(have, col) == NULL) {
					json_decref(have);
					return seterr(s, SL_EINVAL,
					              "table \"%s\" exists without column \"%s\" of welcome.tables",
					              table, col);
				}
			}
		}
		json_decref(have);
	}
	if (exists)
		return SL_OK;
	sb_str(&b, "CREATE TABLE ");
	qident(&b, table);
	sb_str(&b, " (");
	json_object_foreach(cols, col, type) {
		if (!first)
			sb_str(&b, ", ");
		first = false;
		qident(&b, col);
		sb_str(&b, " ");
		sb_str(&b, affinity(json_string_value(type)));
		if (strcmp(col, pk) == 0)
			sb_str(&b, " PRIMARY KEY");
	}
	sb_str(&b, ")");
	if (b.oom) {
		free(b.p);
		return seterr(s, SL_ENOMEM, "out of memory");
	}
	rc = exec(s, b.p, "create an app table");
	free(b.p);
	return rc;
}

int
sl_store_ensure_tables(sl_store *s, const char *welcome_tables_json)
{
	json_t *in = json_loads(welcome_tables_json ? welcome_tables_json : "", 0, NULL);
	json_t *merged = NULL, *def;
	const char *table;
	char *text = NULL;
	saved sv;
	int rc = SL_OK;

	if (!json_is_object(in)) {
		json_decref(in);
		return seterr(s, SL_EINVAL, "welcome.tables is not a JSON object");
	}
	json_object_foreach(in, table, def) {
		if (!table_name_ok(table) || !def_ok(def)) {
			seterr(s, SL_EINVAL, "welcome.tables: bad description of table \"%s\"", table);
			json_decref(in);
			return SL_EINVAL;
		}
	}
	if ((rc = tx_begin(s, &sv)) != SL_OK) {
		json_decref(in);
		return rc;
	}
	json_object_foreach(in, table, def) {
		if ((rc = ensure_one(s, table, def)) != SL_OK)
			goto done;
	}
	merged = s->tables ? json_deep_copy(s->tables) : json_object();
	if (merged == NULL || json_object_update(merged, in) != 0 ||
	    (text = json_dumps(merged, JSON_COMPACT)) == NULL) {
		rc = seterr(s, SL_ENOMEM, "out of memory");
		goto done;
	}
	if ((rc = meta_set(s, "tables", text)) != SL_OK)
		goto done;
	json_decref(s->tables);
	s->tables = merged;
	merged = NULL;
done:
	free(text);
	json_decref(merged);
	json_decref(in);
	return tx_end(s, &sv, rc);
}

/* ---------------------------------------------------------------- rows */

/* Binds a JSON value to parameter i as its SQLite value. */
static int
bind_json(sqlite3_stmt *st, int i, const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_STRING:
		return sqlite3_bind_text(st, i, json_string_value(v), (int) json_string_length(v),
		                         SQLITE_TRANSIENT);
	case JSON_INTEGER:
		return sqlite3_bind_int64(st, i, json_integer_value(v));
	case JSON_REAL:
		return sqlite3_bind_double(st, i, json_real_value(v));
	case JSON_TRUE:
		return sqlite3_bind_int(st, i, 1);
	case JSON_FALSE:
		return sqlite3_bind_int(st, i, 0);
	case JSON_NULL:
		return sqlite3_bind_null(st, i);
	default: {
		char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

		if (text == NULL)
			return SQLITE_NOMEM;
		return sqlite3_bind_text(st, i, text, -1, free);
	}
	}
}

/* Loads the confirmed state of (table, row) into r (initialised here). */
static int
confirmed_load(sl_store *s, const char *table, const char *row, sl_row *r)
{
	sqlite3_stmt *st;
	int rc;

	if (sl_row_init(r) != SL_OK)
		return seterr(s, SL_ENOMEM, "out of memory");
	st = prep(s, "SELECT fields, clocks, deleted FROM _synclog_confirmed WHERE tbl = ? AND row = ?");
	if (st == NULL)
		return SL_EDB;
	sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, row, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		const char *f = (const char *) sqlite3_column_text(st, 0);
		json_t *c = json_loads((const char *) sqlite3_column_text(st, 1), 0, NULL);

		r->deleted = sqlite3_column_int(st, 2) != 0;
		if (f != NULL && (r->fields = json_loads(f, 0, NULL)) == NULL) {
			json_decref(c);
			release(s, st);
			return seterr(s, SL_EDB, "corrupt confirmed state of %s/%s", table, row);
		}
		if (json_is_object(c)) {
			json_decref(r->clocks);
			r->clocks = c;
		} else
			json_decref(c);
		rc = SQLITE_DONE;
	}
	release(s, st);
	return rc == SQLITE_DONE ? SL_OK : dberr(s, "read confirmed state");
}

/* Writes r as the confirmed state of (table, row). */
static int
confirmed_save(sl_store *s, const char *table, const char *row, const sl_row *r)
{
	sqlite3_stmt *st = prep(s, "INSERT OR REPLACE INTO _synclog_confirmed"
	                           " (tbl, row, fields, clocks, deleted) VALUES (?, ?, ?, ?, ?)");
	char *f = NULL, *c = NULL;

	if (st == NULL)
		return SL_EDB;
	if ((r->fields && (f = json_dumps(r->fields, JSON_COMPACT)) == NULL) ||
	    (c = json_dumps(r->clocks, JSON_COMPACT)) == NULL) {
		free(f);
		release(s, st);
		return seterr(s, SL_ENOMEM, "out of memory");
	}
	sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, row, -1, SQLITE_STATIC);
	if (f)
		sqlite3_bind_text(st, 3, f, -1, free);
	else
		sqlite3_bind_null(st, 3);
	sqlite3_bind_text(st, 4, c, -1, free);
	sqlite3_bind_int(st, 5, r->deleted ? 1 : 0);
	return step_done(s, st, "write confirmed state");
}

/* Writes the visible row v of (table, row) into the app table, or deletes it. */
static int
visible_write(sl_store *s, const char *table, const json_t *def, const char *row, const sl_row *v)
{
	const char *pk = json_string_value(json_object_get(def, "pk"));
	const json_t *cols = json_object_get(def, "columns");
	sqlite3_stmt *st;
	const char *col;
	json_t *val;
	sbuf b = {0};
	int n = 1, i;

	if (v->fields == NULL || v->deleted) {
		sb_str(&b, "DELETE FROM ");
		qident(&b, table);
		sb_str(&b, " WHERE ");
		qident(&b, pk);
		sb_str(&b, " = ?");
	} else {
		sbuf vals = {0};

		sb_str(&b, "INSERT OR REPLACE INTO ");
		qident(&b, table);
		sb_str(&b, " (");
		qident(&b, pk);
		sb_str(&vals, "?");
		json_object_foreach(v->fields, col, val) {
			if (strcmp(col, pk) == 0 || json_object_get(cols, col) == NULL)
				continue;
			sb_str(&b, ", ");
			qident(&b, col);
			sb_str(&vals, ", ?");
			n++;
		}
		sb_str(&b, ") VALUES (");
		sb_str(&b, vals.oom ? "" : vals.p);
		sb_str(&b, ")");
		if (vals.oom)
			b.oom = true;
		free(vals.p);
	}
	if (b.oom) {
		free(b.p);
		return seterr(s, SL_ENOMEM, "out of memory");
	}
	st = prep(s, b.p);
	free(b.p);
	if (st == NULL)
		return SL_EDB;
	sqlite3_bind_text(st, 1, row, -1, SQLITE_STATIC);
	i = 2;
	if (n > 1) {
		json_object_foreach(v->fields, col, val) {
			if (strcmp(col, pk) == 0 || json_object_get(cols, col) == NULL)
				continue;
			if (bind_json(st, i++, val) != SQLITE_OK) {
				release(s, st);
				return dberr(s, "bind a value");
			}
		}
	}
	return step_done(s, st, "write the visible row");
}

/*
 * Recomputes the visible row of (table, row) from confirmed state and the
 * row's outbox ops and writes it.  A table not in welcome.tables has no
 * visible rows: SL_OK.
 */
static int
recompute(sl_store *s, const char *table, const char *row)
{
	json_t *def = table_def(s, table);
	sl_pending_op *ops = NULL;
	json_t **fields = NULL;
	char **hlcs = NULL;
	size_t n = 0, cap = 0;
	sqlite3_stmt *st = NULL;
	sl_row conf = {0}, vis = {0};
	int rc, src;

	if (def == NULL)
		return SL_OK;
	if ((rc = confirmed_load(s, table, row, &conf)) != SL_OK)
		goto done;
	st = prep(s, "SELECT kind, fields, hlc FROM _synclog_outbox WHERE tbl = ? AND row = ? ORDER BY seq");
	if (st == NULL) {
		rc = SL_EDB;
		goto done;
	}
	sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, row, -1, SQLITE_STATIC);
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 4;
			void *a = realloc(ops, nc * sizeof(*ops)), *b2, *c;

			if (a)
				ops = a;
			b2 = realloc(fields, nc * sizeof(*fields));
			if (b2)
				fields = b2;
			c = realloc(hlcs, nc * sizeof(*hlcs));
			if (c)
				hlcs = c;
			if (!a || !b2 || !c) {
				rc = seterr(s, SL_ENOMEM, "out of memory");
				goto done;
			}
			cap = nc;
		}
		fields[n] = json_loads((const char *) sqlite3_column_text(st, 1), 0, NULL);
		hlcs[n] = strdup((const char *) sqlite3_column_text(st, 2));
		ops[n].kind = strcmp((const char *) sqlite3_column_text(st, 0), "delete") == 0
		                  ? SL_OP_DELETE : SL_OP_UPSERT;
		ops[n].fields = fields[n];
		ops[n].hlc = hlcs[n];
		ops[n].client_id = s->client_id;
		n++;
		if (hlcs[n - 1] == NULL) {
			rc = seterr(s, SL_ENOMEM, "out of memory");
			goto done;
		}
	}
	if (src != SQLITE_DONE) {
		rc = dberr(s, "read the outbox");
		goto done;
	}
	if ((rc = sl_merge_visible(&conf, ops, n, &vis, NULL)) != SL_OK) {
		rc = seterr(s, rc, "cannot merge %s/%s (bad outbox entry?)", table, row);
		goto done;
	}
	rc = visible_write(s, table, def, row, &vis);
done:
	release(s, st);
	for (size_t i = 0; i < n; i++) {
		json_decref(fields[i]);
		free(hlcs[i]);
	}
	free(ops);
	free(fields);
	free(hlcs);
	sl_row_clear(&conf);
	sl_row_clear(&vis);
	return rc;
}

/* ---------------------------------------------------------------- local writes */

/* sl_store_put and sl_store_delete: kind "upsert" (with fields) or "delete". */
static int
local_op(sl_store *s, const char *table, const char *row, bool is_delete, const char *fields_json,
         char op_id_out[SL_UUID_LEN + 1])
{
	json_t *def = table_def(s, table), *fields = NULL;
	const json_t *cols;
	const char *col, *pk;
	json_t *val;
	char op_id[SL_UUID_LEN + 1], hlc_text[SL_HLC_TEXT_LEN + 1], *ftext = NULL;
	sqlite3_stmt *st;
	uint64_t h;
	saved sv;
	int rc;

	if (def == NULL)
		return seterr(s, SL_EINVAL, "unknown table \"%s\"", table ? table : "(null)");
	if (row == NULL || row[0] == '\0')
		return seterr(s, SL_EINVAL, "empty row id");
	pk = json_string_value(json_object_get(def, "pk"));
	cols = json_object_get(def, "columns");
	if (!is_delete) {
		fields = json_loads(fields_json ? fields_json : "", 0, NULL);
		if (!json_is_object(fields)) {
			json_decref(fields);
			return seterr(s, SL_EINVAL, "fields are not a JSON object");
		}
		json_object_del(fields, pk); /* the row is the pk */
		json_object_foreach(fields, col, val) {
			if (json_object_get(cols, col) == NULL) {
				rc = seterr(s, SL_EINVAL, "unknown column \"%s\" of table \"%s\"", col, table);
				json_decref(fields);
				return rc;
			}
		}
	}
	ftext = fields ? json_dumps(fields, JSON_COMPACT) : strdup("{}");
	json_decref(fields);
	if (ftext == NULL)
		return seterr(s, SL_ENOMEM, "out of memory");
	if ((rc = tx_begin(s, &sv)) != SL_OK) {
		free(ftext);
		return rc;
	}
	if ((rc = new_uuid(s, op_id)) != SL_OK)
		goto done;
	if ((rc = sl_hlc_now(&s->clock, wall_ms(), &h)) != SL_OK) {
		rc = seterr(s, rc, "the clock cannot advance");
		goto done;
	}
	sl_hlc_format(h, hlc_text);
	st = prep(s, "INSERT INTO _synclog_outbox (op_id, tbl, row, kind, fields, hlc)"
	             " VALUES (?, ?, ?, ?, ?, ?)");
	if (st == NULL) {
		rc = SL_EDB;
		goto done;
	}
	sqlite3_bind_text(st, 1, op_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, table, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, row, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, is_delete ? "delete" : "upsert", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, ftext, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, hlc_text, -1, SQLITE_STATIC);
	if ((rc = step_done(s, st, "append to the outbox")) != SL_OK)
		goto done;
	if ((rc = save_clock(s)) != SL_OK)
		goto done;
	rc = recompute(s, table, row);
done:
	free(ftext);
	rc = tx_end(s, &sv, rc);
	if (rc == SL_OK && op_id_out != NULL)
		memcpy(op_id_out, op_id, sizeof(op_id));
	return rc;
}

int
sl_store_put(sl_store *s, const char *table, const char *row, const char *fields_json,
             char op_id_out[SL_UUID_LEN + 1])
{
	return local_op(s, table, row, false, fields_json, op_id_out);
}

int
sl_store_delete(sl_store *s, const char *table, const char *row, char op_id_out[SL_UUID_LEN + 1])
{
	return local_op(s, table, row, true, NULL, op_id_out);
}

/* ---------------------------------------------------------------- incoming changes */

/* Adds (table, row) to keys, an object table → object row → true. */
static int
key_add(json_t *keys, const char *table, const char *row)
{
	json_t *rows = json_object_get(keys, table);

	if (rows == NULL && json_object_set_new(keys, table, rows = json_object()) != 0)
		return SL_ENOMEM;
	return json_object_set_new(rows, row, json_true()) == 0 ? SL_OK : SL_ENOMEM;
}

/* Removes op_id from the outbox (nothing when absent). */
static int
outbox_remove(sl_store *s, const char *op_id)
{
	sqlite3_stmt *st = prep(s, "DELETE FROM _synclog_outbox WHERE op_id = ?");

	if (st == NULL)
		return SL_EDB;
	sqlite3_bind_text(st, 1, op_id, -1, SQLITE_STATIC);
	return step_done(s, st, "remove from the outbox");
}

/*
 * Applies one change to r as the server decided it: its fields set with its
 * clock, or a tombstone; nothing changes a tombstone.  SL_OK or SL_ENOMEM.
 */
static int
apply_decided(sl_row *r, bool is_delete, const json_t *fields, const char *hlc, const char *cid)
{
	const char *col;
	json_t *val;

	if (r->deleted)
		return SL_OK;
	if (is_delete) {
		json_decref(r->fields);
		r->fields = NULL;
		json_object_clear(r->clocks);
		r->deleted = true;
		return SL_OK;
	}
	if (r->fields == NULL && (r->fields = json_object()) == NULL)
		return SL_ENOMEM;
	if (!json_is_object(fields))
		return SL_OK;
	json_object_foreach((json_t *) fields, col, val) {
		if (json_object_set_new(r->fields, col, json_deep_copy(val)) != 0 ||
		    json_object_set_new(r->clocks, col, json_pack("[ss]", hlc, cid)) != 0)
			return SL_ENOMEM;
	}
	return SL_OK;
}

/* Checks one change of a frame; fills the pieces (borrowed from change). */
static bool
change_ok(const json_t *c, uint64_t *seq, const char **table, const char **row, bool *is_delete,
          const char **hlc, const char **cid, const char **op_id)
{
	const json_t *j_seq = json_object_get(c, "seq"), *j_kind = json_object_get(c, "kind");
	const json_t *j_op = json_object_get(c, "op_id");
	const char *kind;
	uint64_t h;

	if (!json_is_object(c) || !json_is_integer(j_seq) || json_integer_value(j_seq) < 0 ||
	    !json_is_string(j_kind) || !json_is_string(json_object_get(c, "table")) ||
	    !json_is_string(json_object_get(c, "row")) ||
	    !json_is_string(json_object_get(c, "hlc")) ||
	    !json_is_string(json_object_get(c, "client_id")))
		return false;
	*seq = (uint64_t) json_integer_value(j_seq);
	*table = json_string_value(json_object_get(c, "table"));
	*row = json_string_value(json_object_get(c, "row"));
	*hlc = json_string_value(json_object_get(c, "hlc"));
	*cid = json_string_value(json_object_get(c, "client_id"));
	*op_id = json_is_string(j_op) ? json_string_value(j_op) : NULL;
	kind = json_string_value(j_kind);
	if (strcmp(kind, "delete") == 0)
		*is_delete = true;
	else if (strcmp(kind, "upsert") == 0)
		*is_delete = false;
	else
		return false;
	return sl_hlc_parse(*hlc, &h) == SL_OK && (*cid)[0] != '\0' && strlen(*cid) <= 64;
}

int
sl_store_apply_changes(sl_store *s, const char *frame_json)
{
	json_t *frame = json_loads(frame_json ? frame_json : "", 0, NULL);
	json_t *changes = json_object_get(frame, "changes"), *j_cursor = json_object_get(frame, "cursor");
	json_t *c, *keys = json_object(), *rows, *v;
	const char *kt, *kr;
	uint64_t last;
	size_t i;
	saved sv;
	int rc;

	if (keys == NULL) {
		json_decref(frame);
		return seterr(s, SL_ENOMEM, "out of memory");
	}
	if (!json_is_array(changes) || !json_is_integer(j_cursor) || json_integer_value(j_cursor) < 0) {
		json_decref(frame);
		json_decref(keys);
		return seterr(s, SL_EINVAL, "malformed changes frame");
	}
	if ((rc = tx_begin(s, &sv)) != SL_OK) {
		json_decref(frame);
		json_decref(keys);
		return rc;
	}
	last = s->cursor;
	json_array_foreach(changes, i, c) {
		const char *table, *row, *hlc, *cid, *op_id;
		bool is_delete;
		uint64_t seq;
		sl_row r = {0};

		if (!change_ok(c, &seq, &table, &row, &is_delete, &hlc, &cid, &op_id)) {
			rc = seterr(s, SL_EINVAL, "malformed change at index %zu", i);
			goto done;
		}
		if (seq <= last)
			continue; /* already applied */
		last = seq;
		observe_text(s, hlc);
		if ((rc = confirmed_load(s, table, row, &r)) == SL_OK &&
		    (rc = apply_decided(&r, is_delete, json_object_get(c, "fields"), hlc, cid)) == SL_OK &&
		    (rc = confirmed_save(s, table, row, &r)) == SL_OK &&
		    (op_id == NULL || (rc = outbox_remove(s, op_id)) == SL_OK))
			rc = key_add(keys, table, row);
		if (rc == SL_ENOMEM)
			seterr(s, rc, "out of memory");
		sl_row_clear(&r);
		if (rc != SL_OK)
			goto done;
	}
	/* Each affected row once, after all of the frame's changes. */
	json_object_foreach(keys, kt, rows) {
		json_object_foreach(rows, kr, v) {
			if ((rc = recompute(s, kt, kr)) != SL_OK)
				goto done;
		}
	}
	if ((uint64_t) json_integer_value(j_cursor) > last)
		last = (uint64_t) json_integer_value(j_cursor);
	s->cursor = last;
	if ((rc = meta_set_u64(s, "cursor", last)) != SL_OK)
		goto done;
	rc = save_clock(s);
done:
	json_decref(frame);
	json_decref(keys);
	return tx_end(s, &sv, rc);
}

/* ---------------------------------------------------------------- acks */

int
sl_store_ack(sl_store *s, const char *ack_json, sl_store_reject_fn on_reject, void *ctx)
{
	json_t *frame = json_loads(ack_json ? ack_json : "", 0, NULL);
	json_t *acked = json_object_get(frame, "acked"), *rejected = json_object_get(frame, "rejected");
	json_t *done_list = json_array(), *e;
	sqlite3_stmt *st;
	size_t i;
	saved sv;
	int rc;

	if (done_list == NULL || !json_is_object(frame) || (acked && !json_is_array(acked)) ||
	    (rejected && !json_is_array(rejected))) {
		json_decref(frame);
		json_decref(done_list);
		return seterr(s, done_list ? SL_EINVAL : SL_ENOMEM, "malformed ack frame");
	}
	if ((rc = tx_begin(s, &sv)) != SL_OK)
		goto out;
	json_array_foreach(acked, i, e) {
		if (!json_is_string(e))
			continue;
		if ((st = prep(s, "UPDATE _synclog_outbox SET acked = 1 WHERE op_id = ?")) == NULL) {
			rc = SL_EDB;
			goto done;
		}
		sqlite3_bind_text(st, 1, json_string_value(e), -1, SQLITE_STATIC);
		if ((rc = step_done(s, st, "mark an op acked")) != SL_OK)
			goto done;
	}
	json_array_foreach(rejected, i, e) {
		const json_t *id = json_object_get(e, "id");
		const json_t *code = json_object_get(e, "code"), *msg = json_object_get(e, "message");
		char *table = NULL, *row = NULL;
		int src;

		if (!json_is_string(id))
			continue;
		if ((st = prep(s, "SELECT tbl, row FROM _synclog_outbox WHERE op_id = ?")) == NULL) {
			rc = SL_EDB;
			goto done;
		}
		sqlite3_bind_text(st, 1, json_string_value(id), -1, SQLITE_STATIC);
		src = sqlite3_step(st);
		if (src == SQLITE_ROW) {
			table = strdup((const char *) sqlite3_column_text(st, 0));
			row = strdup((const char *) sqlite3_column_text(st, 1));
		}
		release(s, st);
		if (src != SQLITE_ROW && src != SQLITE_DONE) {
			rc = dberr(s, "read the outbox");
			goto done;
		}
		if (src == SQLITE_DONE)
			continue; /* not ours, or already gone */
		if (table == NULL || row == NULL ||
		    json_array_append_new(done_list,
		                          json_pack("{s:s, s:s, s:s, s:s, s:s}", "id", json_string_value(id),
		                                    "table", table, "row", row, "code",
		                                    json_is_string(code) ? json_string_value(code) : "",
		                                    "message",
		                                    json_is_string(msg) ? json_string_value(msg) : "")) != 0)
			rc = seterr(s, SL_ENOMEM, "out of memory");
		if (rc == SL_OK && (rc = outbox_remove(s, json_string_value(id))) == SL_OK)
			rc = recompute(s, table, row);
		free(table);
		free(row);
		if (rc != SL_OK)
			goto done;
	}
	observe_text(s, json_string_value(json_object_get(frame, "hlc")));
	rc = save_clock(s);
done:
	rc = tx_end(s, &sv, rc);
	if (rc == SL_OK && on_reject != NULL) {
		json_array_foreach(done_list, i, e) {
			on_reject(ctx, json_string_value(json_object_get(e, "id")),
			          json_string_value(json_object_get(e, "table")),
			          json_string_value(json_object_get(e, "row")),
			          json_string_value(json_object_get(e, "code")),
			          json_string_value(json_object_get(e, "message")));
		}
	}
out:
	json_decref(frame);
	json_decref(done_list);
	return rc;
}

/* ---------------------------------------------------------------- pending ops */

int
sl_store_pending(sl_store *s, sl_store_op_fn fn, void *ctx)
{
	sqlite3_stmt *st = prep(s, "SELECT seq, op_id, tbl, row, kind, fields, hlc FROM _synclog_outbox"
	                           " WHERE acked = 0 ORDER BY seq");
	int rc;

	if (st == NULL)
		return SL_EDB;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		sl_store_op op = {
			.seq = sqlite3_column_int64(st, 0),
			.op_id = (const char *) sqlite3_column_text(st, 1),
			.table = (const char *) sqlite3_column_text(st, 2),
			.row = (const char *) sqlite3_column_text(st, 3),
			.kind = (const char *) sqlite3_column_text(st, 4),
			.fields = (const char *) sqlite3_column_text(st, 5),
			.hlc = (const char *) sqlite3_column_text(st, 6),
		};

		if (fn(ctx, &op) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	release(s, st);
	if (rc != SQLITE_DONE)
		return dberr(s, "read the outbox");
	s->errmsg[0] = '\0';
	return SL_OK;
}

/* ---------------------------------------------------------------- snapshots */

int
sl_store_snapshot_begin(sl_store *s, const char *groups_json)
{
	json_t *groups = NULL;

	if (groups_json != NULL) {
		size_t i;
		json_t *g;

		groups = json_loads(groups_json, 0, NULL);
		if (!json_is_array(groups)) {
			json_decref(groups);
			return seterr(s, SL_EINVAL, "groups are not a JSON array");
		}
		json_array_foreach(groups, i, g) {
			if (!json_is_string(g) && !json_is_integer(g)) {
				json_decref(groups);
				return seterr(s, SL_EINVAL, "a group is not a string or an integer");
			}
		}
	}
	if (exec(s, "DELETE FROM _synclog_snapshot", "forget an unfinished snapshot") != SL_OK) {
		json_decref(groups);
		return SL_EDB;
	}
	json_decref(s->snap_groups);
	s->snap_groups = groups;
	s->snap_open = true;
	s->errmsg[0] = '\0';
	return SL_OK;
}

/* The text form of a group value (malloc'd), as groups list it; NULL for none. */
static char *
group_text(const json_t *v)
{
	char buf[32];

	if (json_is_string(v))
		return strdup(json_string_value(v));
	if (json_is_integer(v)) {
		snprintf(buf, sizeof(buf), "%lld", (long long) json_integer_value(v));
		return strdup(buf);
	}
	return NULL;
}

/* True when a confirmed row (fields text, tombstone flag) is replaced by the snapshot. */
static bool
replaced_by_snapshot(sl_store *s, const char *table, const char *fields_text, bool deleted)
{
	json_t *def = table_def(s, table), *fields, *g;
	const char *gcol;
	char *text;
	size_t i;
	bool in = false;

	if (s->snap_groups == NULL || deleted || fields_text == NULL || def == NULL)
		return true;
	gcol = json_string_value(json_object_get(def, "group"));
	if (gcol == NULL)
		return true;
	if ((fields = json_loads(fields_text, 0, NULL)) == NULL)
		return true;
	text = group_text(json_object_get(fields, gcol));
	json_decref(fields);
	if (text == NULL)
		return false;
	json_array_foreach(s->snap_groups, i, g) {
		char *gt = group_text(g);

		if (gt && strcmp(gt, text) == 0)
			in = true;
		free(gt);
	}
	free(text);
	return in;
}

/*
 * The last frame's work, inside the transaction: confirmed state of the
 * groups replaced by the staged rows, cursor set, every row that was or is
 * confirmed or pending recomputed.
 */
static int
snapshot_finish(sl_store *s, uint64_t cursor)
{
	static const char *const key_sql[] = {
		"SELECT tbl, row FROM _synclog_confirmed",
		"SELECT tbl, row FROM _synclog_outbox",
	};
	json_t *keys = json_object(), *rows, *v;
	const char *table, *row;
	sqlite3_stmt *st, *del;
	int rc = SL_OK, src;

	if (keys == NULL)
		return seterr(s, SL_ENOMEM, "out of memory");
	for (size_t k = 0; k < 2 && rc == SL_OK; k++) {
		if ((st = prep(s, key_sql[k])) == NULL) {
			rc = SL_EDB;
			break;
		}
		while (rc == SL_OK && (src = sqlite3_step(st)) == SQLITE_ROW)
			rc = key_add(keys, (const char *) sqlite3_column_text(st, 0),
			             (const char *) sqlite3_column_text(st, 1));
		if (rc == SL_OK && src != SQLITE_DONE)
			rc = dberr(s, "list rows");
		release(s, st);
	}
	if (rc != SL_OK)
		goto done;
	/* Forget the confirmed state the snapshot replaces. */
	st = prep(s, "SELECT tbl, row, fields, deleted FROM _synclog_confirmed");
	del = prep(s, "DELETE FROM _synclog_confirmed WHERE tbl = ? AND row = ?");
	if (st == NULL || del == NULL) {
		release(s, st);
		release(s, del);
		rc = SL_EDB;
		goto done;
	}
	{
		json_t *gone = json_object();

		while (gone && (src = sqlite3_step(st)) == SQLITE_ROW) {
			if (replaced_by_snapshot(s, (const char *) sqlite3_column_text(st, 0),
			                         (const char *) sqlite3_column_text(st, 2),
			                         sqlite3_column_int(st, 3) != 0) &&
			    key_add(gone, (const char *) sqlite3_column_text(st, 0),
			            (const char *) sqlite3_column_text(st, 1)) != SL_OK)
				break;
		}
		release(s, st);
		if (gone == NULL || src != SQLITE_DONE) {
			json_decref(gone);
			release(s, del);
			rc = gone ? dberr(s, "read confirmed state") : seterr(s, SL_ENOMEM, "out of memory");
			goto done;
		}
		json_object_foreach(gone, table, rows) {
			json_object_foreach(rows, row, v) {
				sqlite3_reset(del);
				sqlite3_bind_text(del, 1, table, -1, SQLITE_STATIC);
				sqlite3_bind_text(del, 2, row, -1, SQLITE_STATIC);
				if (sqlite3_step(del) != SQLITE_DONE && rc == SL_OK)
					rc = dberr(s, "replace confirmed state");
			}
		}
		release(s, del);
		json_decref(gone);
		if (rc != SL_OK)
			goto done;
	}
	if ((rc = exec(s, "INSERT OR REPLACE INTO _synclog_confirmed (tbl, row, fields, clocks, deleted)"
	                  " SELECT tbl, row, fields, clocks, 0 FROM _synclog_snapshot;"
	                  " DELETE FROM _synclog_snapshot;",
	               "install the snapshot")) != SL_OK)
		goto done;
	if ((st = prep(s, "SELECT tbl, row FROM _synclog_confirmed")) == NULL) {
		rc = SL_EDB;
		goto done;
	}
	while (rc == SL_OK && (src = sqlite3_step(st)) == SQLITE_ROW)
		rc = key_add(keys, (const char *) sqlite3_column_text(st, 0),
		             (const char *) sqlite3_column_text(st, 1));
	if (rc == SL_OK && src != SQLITE_DONE)
		rc = dberr(s, "list rows");
	release(s, st);
	if (rc != SL_OK)
		goto done;
	s->cursor = cursor;
	if ((rc = meta_set_u64(s, "cursor", cursor)) != SL_OK)
		goto done;
	json_object_foreach(keys, table, rows) {
		json_object_foreach(rows, row, v) {
			if ((rc = recompute(s, table, row)) != SL_OK)
				goto done;
		}
	}
done:
	if (rc == SL_ENOMEM)
		seterr(s, rc, "out of memory");
	json_decref(keys);
	return rc;
}

int
sl_store_snapshot_frame(sl_store *s, const char *frame_json)
{
	json_t *frame = json_loads(frame_json ? frame_json : "", 0, NULL);
	json_t *rows = json_object_get(frame, "rows"), *j_cursor = json_object_get(frame, "cursor");
	json_t *done_j = json_object_get(frame, "done"), *r;
	sqlite3_stmt *st = NULL;
	size_t i;
	saved sv;
	int rc;

	if (!s->snap_open) {
		json_decref(frame);
		return seterr(s, SL_EINVAL, "a snapshot frame with no sl_store_snapshot_begin");
	}
	if (!json_is_array(rows) || !json_is_integer(j_cursor) || json_integer_value(j_cursor) < 0 ||
	    !json_is_boolean(done_j)) {
		json_decref(frame);
		return seterr(s, SL_EINVAL, "malformed snapshot frame");
	}
	if ((rc = tx_begin(s, &sv)) != SL_OK) {
		json_decref(frame);
		return rc;
	}
	st = prep(s, "INSERT OR REPLACE INTO _synclog_snapshot (tbl, row, fields, clocks) VALUES (?, ?, ?, ?)");
	if (st == NULL) {
		rc = SL_EDB;
		goto done;
	}
	json_array_foreach(rows, i, r) {
		const json_t *t = json_object_get(r, "table"), *rw = json_object_get(r, "row");
		const json_t *f = json_object_get(r, "fields"), *c = json_object_get(r, "clocks");
		char *ft, *ct;

		if (!json_is_string(t) || !json_is_string(rw) || !json_is_object(f) ||
		    (c != NULL && !json_is_object(c))) {
			rc = seterr(s, SL_EINVAL, "malformed snapshot row at index %zu", i);
			goto done;
		}
		ft = json_dumps(f, JSON_COMPACT);
		ct = c ? json_dumps(c, JSON_COMPACT) : strdup("{}");
		sqlite3_reset(st);
		sqlite3_bind_text(st, 1, json_string_value(t), -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, json_string_value(rw), -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, ft, -1, free);
		sqlite3_bind_text(st, 4, ct, -1, free);
		if (ft == NULL || ct == NULL) {
			rc = seterr(s, SL_ENOMEM, "out of memory");
			goto done;
		}
		if (sqlite3_step(st) != SQLITE_DONE) {
			rc = dberr(s, "keep a snapshot row");
			goto done;
		}
	}
	release(s, st);
	st = NULL;
	if (json_is_true(done_j))
		rc = snapshot_finish(s, (uint64_t) json_integer_value(j_cursor));
done:
	release(s, st);
	rc = tx_end(s, &sv, rc);
	if (rc == SL_OK && json_is_true(done_j)) {
		s->snap_open = false;
		json_decref(s->snap_groups);
		s->snap_groups = NULL;
	}
	json_decref(frame);
	return rc;
}

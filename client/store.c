/*
 * client/store.c: libsynclog's durable local store on SQLite, the part that
 * opens the file and holds it together: the internal tables, metadata
 * (client_id, cursor, HLC floor, welcome.tables), transactions, the
 * statement cache, ids and clocks, and the app's tables from welcome.tables
 * or, before any welcome, provisional ones made from the writes.
 * The contract and the words are in store.h; what the store's files share is
 * in store_int.h; local writes and acks are in outbox.c, incoming changes,
 * snapshots and visible rows in rebase.c.
 *
 * Every public function that writes runs between sls_tx_begin() and
 * sls_tx_end(): BEGIN IMMEDIATE, then COMMIT, or ROLLBACK and the in-memory
 * copies (clock, cursor, tables) restored, so that failure changes nothing.
 * Identifiers of the app's tables come from welcome.tables, or before any
 * welcome from the table and field names of writes (provisional tables),
 * and are always written quoted (sls_qident); values are always bound
 * parameters.
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
#include "store_int.h"

/*
 * The internal tables.  _synclog_outbox is keyed by seq alone and
 * _synclog_confirmed is a WITHOUT ROWID table keyed by (tbl, row): each is
 * one b-tree, so a write touches one page of it.  The outbox's lookups by op
 * id and by row are in memory (store_int.h: the outbox index).
 */
static const char *schema_sql =
	"CREATE TABLE IF NOT EXISTS _synclog_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
	"CREATE TABLE IF NOT EXISTS _synclog_confirmed (tbl TEXT NOT NULL, row TEXT NOT NULL,"
	" fields TEXT, clocks TEXT NOT NULL DEFAULT '{}', deleted INTEGER NOT NULL DEFAULT 0,"
	" PRIMARY KEY (tbl, row)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS _synclog_outbox (seq INTEGER PRIMARY KEY,"
	" op_id TEXT NOT NULL, tbl TEXT NOT NULL, row TEXT NOT NULL, kind TEXT NOT NULL,"
	" fields TEXT NOT NULL DEFAULT '{}', hlc TEXT NOT NULL, acked INTEGER NOT NULL DEFAULT 0);"
	"CREATE TABLE IF NOT EXISTS _synclog_snapshot (tbl TEXT NOT NULL, row TEXT NOT NULL,"
	" fields TEXT NOT NULL, clocks TEXT NOT NULL, PRIMARY KEY (tbl, row));";

/*
 * Files made before the layout above (an AUTOINCREMENT outbox with indexes
 * on op_id and on (tbl, row, seq); a rowid confirmed table) are converted
 * when opened: same rows, same seqs.
 */
static const char *const migrate_sql[][2] = {
	{"SELECT 1 FROM sqlite_master WHERE name = '_synclog_outbox' AND sql LIKE '%AUTOINCREMENT%'",
	 "CREATE TABLE _synclog_outbox_v2 (seq INTEGER PRIMARY KEY,"
	 " op_id TEXT NOT NULL, tbl TEXT NOT NULL, row TEXT NOT NULL, kind TEXT NOT NULL,"
	 " fields TEXT NOT NULL DEFAULT '{}', hlc TEXT NOT NULL, acked INTEGER NOT NULL DEFAULT 0);"
	 "INSERT INTO _synclog_outbox_v2 SELECT seq, op_id, tbl, row, kind, fields, hlc, acked"
	 " FROM _synclog_outbox;"
	 "DROP TABLE _synclog_outbox;"
	 "ALTER TABLE _synclog_outbox_v2 RENAME TO _synclog_outbox;"},
	{"SELECT 1 FROM sqlite_master WHERE name = '_synclog_confirmed' AND sql NOT LIKE '%WITHOUT ROWID%'",
	 "CREATE TABLE _synclog_confirmed_v2 (tbl TEXT NOT NULL, row TEXT NOT NULL,"
	 " fields TEXT, clocks TEXT NOT NULL DEFAULT '{}', deleted INTEGER NOT NULL DEFAULT 0,"
	 " PRIMARY KEY (tbl, row)) WITHOUT ROWID;"
	 "INSERT INTO _synclog_confirmed_v2 SELECT tbl, row, fields, clocks, deleted FROM _synclog_confirmed;"
	 "DROP TABLE _synclog_confirmed;"
	 "ALTER TABLE _synclog_confirmed_v2 RENAME TO _synclog_confirmed;"},
};

/* ---------------------------------------------------------------- errors */

/* Records the error text and returns rc. */
int
sls_seterr(sl_store *s, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->errmsg, sizeof(s->errmsg), fmt, ap);
	va_end(ap);
	return rc;
}

/* SL_EDB with SQLite's message, prefixed by what was being done. */
int
sls_dberr(sl_store *s, const char *what)
{
	return sls_seterr(s, SL_EDB, "%s: %s", what, sqlite3_errmsg(s->db));
}

/* ---------------------------------------------------------------- strings */


/* sls_sb_add's slow half: room for n more bytes and a NUL.  False, with oom set, when out of memory. */
bool
sls_sb_grow(sbuf *b, size_t n)
{
	size_t cap = b->cap ? b->cap * 2 : 128;
	char *p;

	while (cap < b->len + n + 1)
		cap *= 2;
	if ((p = realloc(b->p, cap)) == NULL) {
		b->oom = true;
		return false;
	}
	b->p = p;
	b->cap = cap;
	return true;
}

void sls_sb_str(sbuf *b, const char *s) { sls_sb_add(b, s, strlen(s)); }

/* Appends name as an SQL identifier: in double quotes, quotes doubled. */
void
sls_qident(sbuf *b, const char *name)
{
	const char *q;

	sls_sb_add(b, "\"", 1);
	while ((q = strchr(name, '"')) != NULL) {
		sls_sb_add(b, name, (size_t) (q - name) + 1);
		sls_sb_add(b, "\"", 1); /* the quote, doubled */
		name = q + 1;
	}
	sls_sb_str(b, name);
	sls_sb_add(b, "\"", 1);
}

/*
 * The bytes json_dumps writes as they are in a string: all but the control
 * characters, the quote and the backslash (UTF-8 sequences pass through).
 */
#define P8(x) x, x, x, x, x, x, x, x
static const bool json_plain[256] = {
	P8(0), P8(0), P8(0), P8(0),       /* control characters */
	1, 1, 0, 1, 1, 1, 1, 1, P8(1),    /* ' ' '!' '"' ... */
	P8(1), P8(1), P8(1), P8(1), P8(1),
	1, 1, 1, 1, 0, 1, 1, 1,           /* 'X' 'Y' 'Z' '[' '\\' ... */
	P8(1), P8(1), P8(1), P8(1),
	P8(1), P8(1), P8(1), P8(1), P8(1), P8(1), P8(1), P8(1),
	P8(1), P8(1), P8(1), P8(1), P8(1), P8(1), P8(1), P8(1),
};
#undef P8

/*
 * Appends the n bytes at p as a JSON string, escaped as json_dumps escapes
 * them.  Room for the longest escaping (6 bytes a byte, and the quotes) is
 * made first, so the bytes are written in one pass.
 */
void
sls_sb_jstr(sbuf *b, const char *p, size_t n)
{
	static const char hex[] = "0123456789ABCDEF"; /* as jansson: upper case */
	const unsigned char *r = (const unsigned char *) p, *end = r + n;
	char *o;

	if (b->oom || (b->len + 6 * n + 3 > b->cap && !sls_sb_grow(b, 6 * n + 2)))
		return;
	o = b->p + b->len;
	*o++ = '"';
	while (r < end) {
		unsigned char c = *r++;

		if (json_plain[c]) {
			*o++ = (char) c;
			continue;
		}
		*o++ = '\\';
		switch (c) {
		case '"': *o++ = '"'; break;
		case '\\': *o++ = '\\'; break;
		case '\b': *o++ = 'b'; break;
		case '\f': *o++ = 'f'; break;
		case '\n': *o++ = 'n'; break;
		case '\r': *o++ = 'r'; break;
		case '\t': *o++ = 't'; break;
		default:
			*o++ = 'u';
			*o++ = '0';
			*o++ = '0';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		}
	}
	*o++ = '"';
	*o = '\0';
	b->len = (size_t) (o - b->p);
}

/* Appends an integer as json_dumps writes it. */
static void
sb_json_int(sbuf *b, json_int_t n)
{
	char num[40];
	unsigned long long u = n < 0 ? 0ULL - (unsigned long long) n : (unsigned long long) n;
	char *o = num + sizeof(num);

	do
		*--o = (char) ('0' + u % 10);
	while ((u /= 10) != 0);
	if (n < 0)
		*--o = '-';
	sls_sb_add(b, o, (size_t) (num + sizeof(num) - o));
}

/* Appends a real as json_dumps writes it (%.17g, and ".0" when that looks like an integer). */
static void
sb_json_real(sbuf *b, double d)
{
	char num[40];
	int n = snprintf(num, sizeof(num), "%.17g", d);

	sls_sb_add(b, num, (size_t) n);
	if (strpbrk(num, ".eE") == NULL)
		sls_sb_add(b, ".0", 2); /* stays a real when read back */
}

/* Appends a scanned scalar (jscan.c) as sls_sb_json writes the jansson value it stands for. */
void
sls_sb_scalar(sbuf *b, const sls_scalar *v)
{
	switch (v->type) {
	case SLS_STRING: sls_sb_jstr(b, v->str, v->len); return;
	case SLS_INT: sb_json_int(b, v->i); return;
	case SLS_REAL: sb_json_real(b, v->d); return;
	case SLS_TRUE: sls_sb_add(b, "true", 4); return;
	case SLS_FALSE: sls_sb_add(b, "false", 5); return;
	default: sls_sb_add(b, "null", 4); return;
	}
}

/*
 * Appends v as compact JSON text, as json_dumps(v, JSON_COMPACT) writes it
 * (keys in insertion order, strings escaped alike, reals with %.17g), without
 * its generic machinery: the store writes two such texts per row it saves.
 * On allocation failure b->oom is set.
 */
void
sls_sb_json(sbuf *b, const json_t *v)
{
	size_t i;

	switch (json_typeof(v)) {
	case JSON_OBJECT: {
		const char *k;
		json_t *e;
		bool first = true;

		sls_sb_add(b, "{", 1);
		json_object_foreach((json_t *) v, k, e) {
			if (!first)
				sls_sb_add(b, ",", 1);
			first = false;
			sls_sb_jstr(b, k, strlen(k));
			sls_sb_add(b, ":", 1);
			sls_sb_json(b, e);
		}
		sls_sb_add(b, "}", 1);
		return;
	}
	case JSON_ARRAY:
		sls_sb_add(b, "[", 1);
		for (i = 0; i < json_array_size(v); i++) {
			if (i > 0)
				sls_sb_add(b, ",", 1);
			sls_sb_json(b, json_array_get(v, i));
		}
		sls_sb_add(b, "]", 1);
		return;
	case JSON_STRING:
		sls_sb_jstr(b, json_string_value(v), json_string_length(v));
		return;
	case JSON_INTEGER:
		sb_json_int(b, json_integer_value(v));
		return;
	case JSON_REAL:
		sb_json_real(b, json_real_value(v));
		return;
	case JSON_TRUE:
		sls_sb_add(b, "true", 4);
		return;
	case JSON_FALSE:
		sls_sb_add(b, "false", 5);
		return;
	default:
		sls_sb_add(b, "null", 4);
		return;
	}
}

/* ---------------------------------------------------------------- hash maps */

/* FNV-1a, 64 bits. */
uint64_t
sls_hash(const char *p, size_t n)
{
	uint64_t h = UINT64_C(14695981039346656037);

	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char) p[i];
		h *= UINT64_C(1099511628211);
	}
	return h;
}

/* The slot of key in m, or of the empty slot where it would go.  m->cap > 0. */
static size_t
hmap_slot(const sls_hmap *m, const char *key, size_t klen, uint64_t hash)
{
	size_t i = (size_t) hash & (m->cap - 1);

	while (m->e[i].key != NULL &&
	       !(m->e[i].hash == hash && m->e[i].klen == klen && memcmp(m->e[i].key, key, klen) == 0))
		i = (i + 1) & (m->cap - 1);
	return i;
}

/* The value of key, or NULL. */
void *
sls_hmap_get(const sls_hmap *m, const char *key, size_t klen, uint64_t hash)
{
	if (m->cap == 0)
		return NULL;
	return m->e[hmap_slot(m, key, klen, hash)].val;
}

/* Sets key (copied) to val, replacing any value.  SL_OK or SL_ENOMEM (m unchanged). */
int
sls_hmap_put(sls_hmap *m, const char *key, size_t klen, uint64_t hash, void *val)
{
	size_t i;

	if ((m->n + 1) * 4 > m->cap * 3) {
		size_t cap = m->cap ? m->cap * 2 : 64;
		sls_hent *e = calloc(cap, sizeof(*e)), *old = m->e;
		size_t oldcap = m->cap;

		if (e == NULL)
			return SL_ENOMEM;
		m->e = e;
		m->cap = cap;
		for (size_t j = 0; j < oldcap; j++) {
			if (old[j].key != NULL)
				m->e[hmap_slot(m, old[j].key, old[j].klen, old[j].hash)] = old[j];
		}
		free(old);
	}
	i = hmap_slot(m, key, klen, hash);
	if (m->e[i].key == NULL) {
		char *k = malloc(klen + 1);

		if (k == NULL)
			return SL_ENOMEM;
		memcpy(k, key, klen);
		k[klen] = '\0';
		m->e[i].key = k;
		m->e[i].klen = klen;
		m->e[i].hash = hash;
		m->n++;
	}
	m->e[i].val = val;
	return SL_OK;
}

/* Removes key; returns its value (the caller's to free), or NULL when absent. */
void *
sls_hmap_del(sls_hmap *m, const char *key, size_t klen, uint64_t hash)
{
	size_t i, j;
	void *val;

	if (m->cap == 0)
		return NULL;
	i = hmap_slot(m, key, klen, hash);
	if (m->e[i].key == NULL)
		return NULL;
	val = m->e[i].val;
	free(m->e[i].key);
	m->e[i].key = NULL;
	m->e[i].val = NULL;
	m->n--;
	/* Backward shift: move up every entry of the run that its home slot allows. */
	for (j = (i + 1) & (m->cap - 1); m->e[j].key != NULL; j = (j + 1) & (m->cap - 1)) {
		size_t home = (size_t) m->e[j].hash & (m->cap - 1);

		/* Move j to i when home is not cyclically in (i, j]. */
		if ((j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j))) {
			m->e[i] = m->e[j];
			m->e[j].key = NULL;
			m->e[j].val = NULL;
			i = j;
		}
	}
	return val;
}

/* Frees every key, every value with free_val (may be NULL), and the table. */
void
sls_hmap_free(sls_hmap *m, void (*free_val)(void *))
{
	for (size_t i = 0; i < m->cap; i++) {
		if (m->e[i].key != NULL) {
			free(m->e[i].key);
			if (free_val)
				free_val(m->e[i].val);
		}
	}
	free(m->e);
	memset(m, 0, sizeof(*m));
}

/* ---------------------------------------------------------------- SQLite helpers */

/* Runs sql (no parameters, any number of statements).  SL_OK or SL_EDB. */
int
sls_exec(sl_store *s, const char *sql, const char *what)
{
	if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return sls_dberr(s, what);
	return SL_OK;
}

/*
 * A prepared statement for sql, from the store's cache when it holds one that
 * is not in use; NULL on failure, with the error recorded.  Every statement
 * sls_prep() returns goes back through sls_release(), never sqlite3_finalize.
 */
sqlite3_stmt *
sls_prep(sl_store *s, const char *sql)
{
	sqlite3_stmt *st = NULL;
	uint64_t hash = sls_hash(sql, strlen(sql));
	int i;

	for (i = 0; i < s->n_cached; i++) {
		if (s->cache[i].hash == hash && !s->cache[i].busy && strcmp(s->cache[i].sql, sql) == 0) {
			s->cache[i].busy = true;
			return s->cache[i].st;
		}
	}
	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
		sls_dberr(s, "prepare");
		sqlite3_finalize(st);
		return NULL;
	}
	if (s->n_cached < SL_STMT_CACHE && (s->cache[s->n_cached].sql = strdup(sql)) != NULL) {
		s->cache[s->n_cached].st = st;
		s->cache[s->n_cached].hash = hash;
		s->cache[s->n_cached].busy = true;
		s->n_cached++;
	}
	return st;
}

/*
 * As sls_prep, for sql a string constant (a literal, or in a static array):
 * its address identifies it, so a statement prepared before is found
 * without hashing or comparing the text.
 */
sqlite3_stmt *
sls_prep_const(sl_store *s, const char *sql)
{
	sqlite3_stmt *st;

	for (int i = 0; i < s->n_cached; i++) {
		if (s->cache[i].src == sql && !s->cache[i].busy) {
			s->cache[i].busy = true;
			return s->cache[i].st;
		}
	}
	if ((st = sls_prep(s, sql)) != NULL) {
		for (int i = 0; i < s->n_cached; i++) {
			if (s->cache[i].st == st) {
				s->cache[i].src = sql;
				break;
			}
		}
	}
	return st;
}

/* Gives back a statement from sls_prep(): reset for reuse, or finalized.  Accepts NULL. */
void
sls_release(sl_store *s, sqlite3_stmt *st)
{
	if (st == NULL)
		return;
	for (int i = 0; i < s->n_cached; i++) {
		if (s->cache[i].st == st) {
			sqlite3_reset(st);
			s->cache[i].busy = false; /* every user binds every parameter */
			return;
		}
	}
	sqlite3_finalize(st);
}

/* Steps a statement that returns no row, then finalizes it.  SL_OK or SL_EDB. */
int
sls_step_done(sl_store *s, sqlite3_stmt *st, const char *what)
{
	int rc = sqlite3_step(st);

	if (rc != SQLITE_DONE) {
		sls_dberr(s, what);
		sls_release(s, st);
		return SL_EDB;
	}
	sls_release(s, st);
	return SL_OK;
}

int
sls_meta_set(sl_store *s, const char *key, const char *value)
{
	sqlite3_stmt *st = sls_prep_const(s, "INSERT OR REPLACE INTO _synclog_meta (key, value) VALUES (?, ?)");

	if (st == NULL)
		return SL_EDB;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, value, -1, SQLITE_TRANSIENT);
	return sls_step_done(s, st, "write _synclog_meta");
}

/* The value of key, malloc'd, in *out (NULL when absent).  SL_OK, SL_EDB, SL_ENOMEM. */
static int
meta_get(sl_store *s, const char *key, char **out)
{
	sqlite3_stmt *st = sls_prep_const(s, "SELECT value FROM _synclog_meta WHERE key = ?");
	int rc;

	*out = NULL;
	if (st == NULL)
		return SL_EDB;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*out = strdup((const char *) sqlite3_column_text(st, 0));
		sls_release(s, st);
		return *out ? SL_OK : sls_seterr(s, SL_ENOMEM, "out of memory");
	}
	sls_release(s, st);
	return rc == SQLITE_DONE ? SL_OK : sls_dberr(s, "read _synclog_meta");
}

int
sls_meta_set_u64(sl_store *s, const char *key, uint64_t v)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%llu", (unsigned long long) v);
	return sls_meta_set(s, key, buf);
}

/*
 * Stores the outbox's seq high-water (meta "outbox_seq"), by whatever removes
 * ops from the outbox: a seq is then either still in the outbox or at most
 * the stored value, so no handle on the file ever gives it out again (net.c
 * pushes what lies above the last seq it sent).
 */
int
sls_save_outbox_seq(sl_store *s)
{
	return sls_meta_set_u64(s, "outbox_seq", (uint64_t) s->last_seq);
}

int
sls_save_clock(sl_store *s)
{
	char text[SL_HLC_TEXT_LEN + 1];

	sl_hlc_format(s->clock.last, text);
	return sls_meta_set(s, "hlc", text);
}

/* Steps one of the store's own statements (BEGIN, COMMIT, ...) and resets it. */
static int
step_own(sl_store *s, sqlite3_stmt *st, const char *what)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? SL_OK : sls_dberr(s, what);
}

/*
 * The pager's data version (SQLITE_FCNTL_DATA_VERSION): it moves whenever
 * the file changes, by this connection's commits or, seen when a read
 * begins, another's.  Unlike PRAGMA data_version it needs no statement.
 */
static int64_t
file_data_version(sl_store *s)
{
	unsigned int v = 0;

	if (sqlite3_file_control(s->db, "main", SQLITE_FCNTL_DATA_VERSION, &v) != SQLITE_OK)
		return -1; /* never equal to a version: reload */
	return (int64_t) v;
}

/*
 * Inside a transaction: when the file changed since our last commit (or
 * since the index was built), reloads what the store keeps in memory
 * (sls_reload).  Our own commits record the version they leave
 * (sls_tx_end), so only another connection's commits, or writes made
 * outside sls_tx_begin, cause a reload.
 */
static int
check_data_version(sl_store *s)
{
	int64_t dv = file_data_version(s);

	if (dv == s->data_version && dv >= 0 && s->obx_ok)
		return SL_OK;
	s->data_version = dv;
	return sls_reload(s);
}

/*
 * Starts a write transaction and saves the in-memory state.  Another
 * connection's commits (another process on the same file) are picked up
 * here, before anything is decided.
 */
int
sls_tx_begin(sl_store *s, saved *sv)
{
	int rc;

	if ((rc = step_own(s, s->st_begin, "begin")) != SL_OK)
		return rc;
	if ((rc = check_data_version(s)) != SL_OK) {
		step_own(s, s->st_rollback, "rollback");
		return rc;
	}
	sv->cursor = s->cursor;
	sv->clock = s->clock;
	sv->tables = json_incref(s->tables);
	sv->welcomed = s->welcomed;
	return SL_OK;
}

/*
 * Ends the transaction begun by tx_begin: COMMIT when rc is SL_OK (and the
 * commit succeeds), else ROLLBACK and the in-memory state restored (the
 * outbox index is rebuilt from the file at the next begin).  Returns the
 * final status; the error text of a failure is kept.
 */
int
sls_tx_end(sl_store *s, saved *sv, int rc)
{
	if (rc == SL_OK && step_own(s, s->st_commit, "commit") != SL_OK)
		rc = SL_EDB;
	if (rc == SL_OK)
		s->data_version = file_data_version(s); /* our commit moved it */
	if (rc != SL_OK) {
		if (sqlite3_get_autocommit(s->db) == 0)
			sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		s->cursor = sv->cursor;
		s->clock = sv->clock;
		json_decref(s->tables);
		s->tables = sv->tables;
		s->welcomed = sv->welcomed;
		s->obx_ok = false;
	} else
		json_decref(sv->tables);
	sv->tables = NULL;
	if (rc == SL_OK)
		s->errmsg[0] = '\0';
	return rc;
}

/* ---------------------------------------------------------------- ids and clocks */

/* A random UUID v4 from /dev/urandom (read ahead, 1 KiB at a time) into out.  SL_OK or SL_EDB. */
int
sls_new_uuid(sl_store *s, char out[SL_UUID_LEN + 1])
{
	unsigned char b[16];

	if (s->rnd_len - s->rnd_pos < 16) {
		ssize_t got = 0;

		if (s->urandom < 0 && (s->urandom = open("/dev/urandom", O_RDONLY | O_CLOEXEC)) < 0)
			return sls_seterr(s, SL_EDB, "cannot open /dev/urandom");
		while (got < (ssize_t) sizeof(s->rnd)) {
			ssize_t n = read(s->urandom, s->rnd + got, sizeof(s->rnd) - (size_t) got);

			if (n <= 0)
				return sls_seterr(s, SL_EDB, "cannot read /dev/urandom");
			got += n;
		}
		s->rnd_pos = 0;
		s->rnd_len = sizeof(s->rnd);
	}
	memcpy(b, s->rnd + s->rnd_pos, 16);
	memset(s->rnd + s->rnd_pos, 0, 16); /* used once */
	s->rnd_pos += 16;
	b[6] = (unsigned char) ((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char) ((b[8] & 0x3f) | 0x80);
	{
		static const char hex[] = "0123456789abcdef";
		char *o = out;

		for (int i = 0; i < 16; i++) {
			if (i == 4 || i == 6 || i == 8 || i == 10)
				*o++ = '-';
			*o++ = hex[b[i] >> 4];
			*o++ = hex[b[i] & 15];
		}
		*o = '\0';
	}
	return SL_OK;
}

uint64_t
sls_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

/* Observes a remote clock text, if well-formed; a skewed one is only counted. */
void
sls_observe_text(sl_store *s, const char *text)
{
	uint64_t h;

	if (text != NULL && sl_hlc_parse(text, &h) == SL_OK)
		(void) sl_hlc_observe(&s->clock, h, sls_wall_ms());
}

/* ---------------------------------------------------------------- open / close */

/*
 * Reads what the store keeps in memory from the file, inside a transaction:
 * cursor, clock floor (never moving the clock back), tables, whether a
 * welcome came, and the outbox index.  SL_OK, SL_EDB, SL_ENOMEM.
 */
int
sls_reload(sl_store *s)
{
	char *v = NULL;
	uint64_t floor = 0;
	int rc;

	if ((rc = meta_get(s, "cursor", &v)) != SL_OK)
		return rc;
	s->cursor = v ? strtoull(v, NULL, 10) : 0;
	free(v);
	if ((rc = meta_get(s, "hlc", &v)) != SL_OK)
		return rc;
	if (v != NULL && sl_hlc_parse(v, &floor) != SL_OK)
		floor = 0;
	free(v);
	/*
	 * A put does not rewrite the stored floor: its clock is in the outbox, in
	 * the same transaction.  Whatever removes ops from the outbox stores the
	 * floor first, so the floor is the greater of the two.
	 */
	{
		sqlite3_stmt *st = sls_prep_const(s, "SELECT max(hlc) FROM _synclog_outbox");
		uint64_t h;

		if (st == NULL)
			return SL_EDB;
		if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0) != NULL &&
		    sl_hlc_parse((const char *) sqlite3_column_text(st, 0), &h) == SL_OK && h > floor)
			floor = h;
		sls_release(s, st);
	}
	if (s->clock.last > floor)
		floor = s->clock.last;
	sl_hlc_init(&s->clock, floor, SL_MAX_SKEW_MS);
	if ((rc = meta_get(s, "outbox_seq", &v)) != SL_OK)
		return rc;
	if (v != NULL && strtoll(v, NULL, 10) > s->last_seq)
		s->last_seq = strtoll(v, NULL, 10);
	free(v);
	if ((rc = meta_get(s, "tables", &v)) != SL_OK)
		return rc;
	json_decref(s->tables);
	s->tables = v ? json_loads(v, 0, NULL) : NULL;
	free(v);
	if ((rc = meta_get(s, "welcomed", &v)) != SL_OK)
		return rc;
	s->welcomed = v != NULL;
	free(v);
	if (!s->welcomed && json_is_object(s->tables)) {
		/* A file from before provisional tables: its tables came from a welcome. */
		const char *t;
		json_t *d;

		s->welcomed = true;
		json_object_foreach(s->tables, t, d) {
			if (sls_def_provisional(d))
				s->welcomed = false;
		}
	}
	return sls_obx_load(s);
}

/* Converts the internal tables of a file made before the current layout. */
static int
migrate(sl_store *s)
{
	for (size_t i = 0; i < sizeof(migrate_sql) / sizeof(migrate_sql[0]); i++) {
		sqlite3_stmt *st = sls_prep(s, migrate_sql[i][0]);
		int src;

		if (st == NULL)
			return SL_EDB;
		src = sqlite3_step(st);
		sls_release(s, st);
		if (src == SQLITE_ROW && sls_exec(s, migrate_sql[i][1], "convert an internal table") != SL_OK)
			return SL_EDB;
		if (src != SQLITE_ROW && src != SQLITE_DONE)
			return sls_dberr(s, "read the schema");
	}
	return SL_OK;
}

int
sl_store_open(const char *path, sl_store **out)
{
	sl_store *s;
	char *v = NULL;
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
	if ((rc = sls_exec(s, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", "set WAL mode")) != SL_OK)
		goto fail;
	if (sqlite3_prepare_v2(s->db, "BEGIN IMMEDIATE", -1, &s->st_begin, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(s->db, "COMMIT", -1, &s->st_commit, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(s->db, "ROLLBACK", -1, &s->st_rollback, NULL) != SQLITE_OK) {
		rc = sls_dberr(s, "prepare");
		goto fail;
	}
	if ((rc = step_own(s, s->st_begin, "begin")) != SL_OK)
		goto fail;
	if ((rc = sls_exec(s, schema_sql, "create the internal tables")) != SL_OK ||
	    (rc = migrate(s)) != SL_OK)
		goto rollback;
	if ((rc = meta_get(s, "client_id", &v)) != SL_OK)
		goto rollback;
	if (v == NULL) {
		if ((rc = sls_new_uuid(s, s->client_id)) != SL_OK ||
		    (rc = sls_meta_set(s, "client_id", s->client_id)) != SL_OK ||
		    (rc = sls_meta_set(s, "cursor", "0")) != SL_OK ||
		    (rc = sls_meta_set(s, "hlc", "0000000000000000")) != SL_OK)
			goto rollback;
	} else {
		snprintf(s->client_id, sizeof(s->client_id), "%s", v);
		free(v);
		v = NULL;
	}
	if ((rc = sls_reload(s)) != SL_OK)
		goto rollback;
	if ((rc = step_own(s, s->st_commit, "commit")) != SL_OK)
		goto rollback;
	s->data_version = file_data_version(s);
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
	sqlite3_finalize(s->st_begin);
	sqlite3_finalize(s->st_commit);
	sqlite3_finalize(s->st_rollback);
	for (int i = 0; i < SLS_WSQL; i++) {
		free(s->wsql[i].key);
		sqlite3_finalize(s->wsql[i].st);
	}
	sls_obx_free(s);
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
sqlite3 *sl_store_db(sl_store *s) { return s->db; }

/* ---------------------------------------------------------------- tables */

/* The description of table in welcome.tables (borrowed), or NULL. */
json_t *
sls_table_def(sl_store *s, const char *table)
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
bool
sls_table_name_ok(const char *name)
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

	if ((st = sls_prep_const(s, "SELECT name FROM pragma_table_info(?)")) == NULL)
		return SL_EDB;
	sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
	{
		json_t *have = json_object();

		if (have == NULL) {
			sls_release(s, st);
			return sls_seterr(s, SL_ENOMEM, "out of memory");
		}
		while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
			exists = true;
			json_object_set_new(have, (const char *) sqlite3_column_text(st, 0), json_true());
		}
		sls_release(s, st);
		if (rc != SQLITE_DONE) {
			json_decref(have);
			return sls_dberr(s, "read the columns of an app table");
		}
		if (exists) {
			/* A table this store already knows gains the server's new columns. */
			bool known = sls_table_def(s, table) != NULL;

			rc = SL_OK;
			json_object_foreach(cols, col, type) {
				if (json_object_get(have, col) != NULL)
					continue;
				if (!known) {
					rc = sls_seterr(s, SL_EINVAL,
					                "table \"%s\" exists without column \"%s\" of welcome.tables",
					                table, col);
					break;
				}
				sls_sb_str(&b, "ALTER TABLE ");
				sls_qident(&b, table);
				sls_sb_str(&b, " ADD COLUMN ");
				sls_qident(&b, col);
				sls_sb_str(&b, " ");
				sls_sb_str(&b, affinity(json_string_value(type)));
				if (b.oom)
					rc = sls_seterr(s, SL_ENOMEM, "out of memory");
				else
					rc = sls_exec(s, b.p, "add a column to an app table");
				b.len = 0;
				if (rc != SL_OK)
					break;
			}
			free(b.p);
		}
		json_decref(have);
		if (exists)
			return rc;
	}
	sls_sb_str(&b, "CREATE TABLE ");
	sls_qident(&b, table);
	sls_sb_str(&b, " (");
	json_object_foreach(cols, col, type) {
		if (!first)
			sls_sb_str(&b, ", ");
		first = false;
		sls_qident(&b, col);
		sls_sb_str(&b, " ");
		sls_sb_str(&b, affinity(json_string_value(type)));
		if (strcmp(col, pk) == 0)
			sls_sb_str(&b, " PRIMARY KEY");
	}
	sls_sb_str(&b, ")");
	if (b.oom) {
		free(b.p);
		return sls_seterr(s, SL_ENOMEM, "out of memory");
	}
	rc = sls_exec(s, b.p, "create an app table");
	free(b.p);
	return rc;
}

int
sl_store_ensure_tables(sl_store *s, const char *welcome_tables_json)
{
	json_t *in = json_loads(welcome_tables_json ? welcome_tables_json : "", 0, NULL);
	json_t *merged = NULL, *rebuilt = json_array(), *def, *e;
	const char *table;
	char *text = NULL;
	size_t i;
	saved sv;
	int rc = SL_OK;

	if (!json_is_object(in) || rebuilt == NULL) {
		json_decref(in);
		json_decref(rebuilt);
		return rebuilt ? sls_seterr(s, SL_EINVAL, "welcome.tables is not a JSON object")
		               : sls_seterr(s, SL_ENOMEM, "out of memory");
	}
	json_object_foreach(in, table, def) {
		if (!sls_table_name_ok(table) || !def_ok(def)) {
			sls_seterr(s, SL_EINVAL, "welcome.tables: bad description of table \"%s\"", table);
			json_decref(in);
			json_decref(rebuilt);
			return SL_EINVAL;
		}
	}
	if ((rc = sls_tx_begin(s, &sv)) != SL_OK) {
		json_decref(in);
		json_decref(rebuilt);
		return rc;
	}
	/*
	 * A provisional table the server tracks is rebuilt from the server's
	 * description: its visible rows are derived data, recomputed below from
	 * confirmed state and the outbox, which stays as it is.
	 */
	json_object_foreach(in, table, def) {
		json_t *old = sls_table_def(s, table);
		sbuf b = {0};

		if (old == NULL || !sls_def_provisional(old))
			continue;
		sls_sb_str(&b, "DROP TABLE IF EXISTS ");
		sls_qident(&b, table);
		if (b.oom || json_array_append_new(rebuilt, json_string(table)) != 0)
			rc = sls_seterr(s, SL_ENOMEM, "out of memory");
		else
			rc = sls_exec(s, b.p, "drop a provisional table");
		free(b.p);
		if (rc != SL_OK)
			goto done;
	}
	json_object_foreach(in, table, def) {
		if ((rc = ensure_one(s, table, def)) != SL_OK)
			goto done;
	}
	merged = s->tables ? json_deep_copy(s->tables) : json_object();
	if (merged == NULL || json_object_update(merged, in) != 0 ||
	    (text = json_dumps(merged, JSON_COMPACT)) == NULL) {
		rc = sls_seterr(s, SL_ENOMEM, "out of memory");
		goto done;
	}
	if ((rc = sls_meta_set(s, "tables", text)) != SL_OK ||
	    (rc = sls_meta_set(s, "welcomed", "1")) != SL_OK)
		goto done;
	json_decref(s->tables);
	s->tables = merged; /* sls_tx_end restores the old one on failure */
	merged = NULL;
	s->welcomed = true;
	json_array_foreach(rebuilt, i, e) {
		if ((rc = sls_recompute_table(s, json_string_value(e))) != SL_OK)
			goto done;
	}
done:
	free(text);
	json_decref(merged);
	json_decref(in);
	json_decref(rebuilt);
	return sls_tx_end(s, &sv, rc);
}

/* ---------------------------------------------------------------- provisional tables */

/* True when def describes a provisional table (made here before any welcome). */
bool
sls_def_provisional(const json_t *def)
{
	return json_is_true(json_object_get(def, "provisional"));
}

/* The key of obj equal to name but for ASCII case (SQLite's rule for identifiers), or NULL. */
static const char *
key_nocase(const json_t *obj, const char *name)
{
	const char *k;
	json_t *v;

	json_object_foreach((json_t *) obj, k, v) {
		if (strcasecmp(k, name) == 0)
			return k;
	}
	return NULL;
}

/*
 * Inside a transaction, before any welcome: makes table a provisional table
 * with a column for every field of fields (an object, or NULL): creates it
 * ("id" TEXT PRIMARY KEY) when the store does not know it, adds the columns
 * it lacks (untyped: SQLite keeps values as given) and stores the new
 * description.  SL_EINVAL when a table of that name exists that is not the
 * store's (the app's), or a field is empty or differs from a column only in
 * case; SL_EDB; SL_ENOMEM.  s->tables is replaced, not changed in place, so
 * sls_tx_end can restore it.
 */
int
sls_provisional_ensure(sl_store *s, const char *table, const json_t *fields)
{
	json_t *def = sls_table_def(s, table), *cols, *tables = NULL, *val;
	const char *col, *have;
	sbuf b = {0};
	char *text = NULL;
	int rc = SL_OK;
	bool changed = false;

	if (def == NULL) {
		sqlite3_stmt *st = sls_prep_const(s, "SELECT 1 FROM sqlite_master WHERE name = ? COLLATE NOCASE");
		int src;

		if (st == NULL)
			return SL_EDB;
		sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
		src = sqlite3_step(st);
		sls_release(s, st);
		if (src == SQLITE_ROW)
			return sls_seterr(s, SL_EINVAL,
			                  "table \"%s\" exists and is not synclog's: it cannot become a provisional table",
			                  table);
		if (src != SQLITE_DONE)
			return sls_dberr(s, "read the schema");
		def = json_pack("{s:s, s:b, s:{s:s}}", "pk", "id", "provisional", 1, "columns", "id", "text");
		if (def == NULL)
			return sls_seterr(s, SL_ENOMEM, "out of memory");
		sls_sb_str(&b, "CREATE TABLE ");
		sls_qident(&b, table);
		sls_sb_str(&b, " (\"id\" TEXT PRIMARY KEY)");
		changed = true;
	} else if ((def = json_deep_copy(def)) == NULL)
		return sls_seterr(s, SL_ENOMEM, "out of memory");
	cols = json_object_get(def, "columns");
	if (b.len > 0 && !b.oom)
		rc = sls_exec(s, b.p, "create a provisional table");
	json_object_foreach((json_t *) fields, col, val) {
		if (rc != SL_OK)
			break;
		if (json_object_get(cols, col) != NULL)
			continue;
		if (col[0] == '\0') {
			rc = sls_seterr(s, SL_EINVAL, "an empty column name");
			break;
		}
		if ((have = key_nocase(cols, col)) != NULL) {
			rc = sls_seterr(s, SL_EINVAL, "column \"%s\" of table \"%s\" differs from column \"%s\" only in case",
			                col, table, have);
			break;
		}
		b.len = 0;
		sls_sb_str(&b, "ALTER TABLE ");
		sls_qident(&b, table);
		sls_sb_str(&b, " ADD COLUMN ");
		sls_qident(&b, col);
		if (b.oom || json_object_set_new(cols, col, json_string("")) != 0)
			rc = sls_seterr(s, SL_ENOMEM, "out of memory");
		else
			rc = sls_exec(s, b.p, "add a column to a provisional table");
		changed = true;
	}
	if (b.oom && rc == SL_OK)
		rc = sls_seterr(s, SL_ENOMEM, "out of memory");
	if (rc == SL_OK && changed) {
		tables = s->tables ? json_deep_copy(s->tables) : json_object();
		if (tables == NULL || json_object_set(tables, table, def) != 0 ||
		    (text = json_dumps(tables, JSON_COMPACT)) == NULL)
			rc = sls_seterr(s, SL_ENOMEM, "out of memory");
		else if ((rc = sls_meta_set(s, "tables", text)) == SL_OK) {
			json_decref(s->tables);
			s->tables = tables; /* sls_tx_end restores the old one on failure */
			tables = NULL;
		}
	}
	free(b.p);
	free(text);
	json_decref(tables);
	json_decref(def);
	return rc;
}

/*
 * client/store_int.h: what the store's files (store.c, outbox.c, rebase.c)
 * share and the library does not export: the sl_store struct and the
 * helpers, all prefixed sls_.  Not a public header.
 *
 * store.c: opening, metadata, transactions, SQLite and string helpers, the
 * app's tables.  outbox.c: local writes, acks, the pending list.  rebase.c:
 * confirmed state and visible rows, incoming changes and snapshots.
 * jscan.c: the fast JSON scanner for fields objects and `changes` frames,
 * which declines what it does not read (then jansson parses the text).
 *
 * Every write a public function makes runs between sls_tx_begin and
 * sls_tx_end; statements come from sls_prep (sls_prep_const for SQL that is
 * a string constant) and go back through sls_release, but for rebase.c's
 * visible-row writes, which own theirs (s->wsql).
 *
 * The outbox index: the outbox table is keyed by seq alone (one b-tree, so a
 * local write touches as few pages as possible); the lookups by op id and by
 * row are served from memory, by two hash maps built from the file when it
 * is opened (sls_obx_load) and kept in step with every change of the
 * outbox.  They are derived data: rebuilt after a rollback and whenever
 * another connection has changed the file (the pager's data version,
 * SQLITE_FCNTL_DATA_VERSION).
 */
#ifndef SL_STORE_INT_H
#define SL_STORE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <jansson.h>
#include <sqlite3.h>

#include "hlc.h"
#include "store.h"

#define SL_MAX_SKEW_MS 60000 /* the receive rule's bound, as synclog.max_clock_skew */
#define SL_STMT_CACHE 128    /* prepared statements kept per store */
#define SLS_WSQL 16          /* shapes of visible-row writes whose SQL text is kept */

/* A hash map from byte strings (copied in) to pointers; open addressing. */
typedef struct sls_hent {
	char *key;      /* owned; NULL for an empty slot */
	size_t klen;
	uint64_t hash;
	void *val;
} sls_hent;

typedef struct sls_hmap {
	sls_hent *e;
	size_t cap, n; /* cap: 0 or a power of two */
} sls_hmap;

/* One pending op in the outbox index (the value of obx_ops). */
typedef struct sls_obop {
	int64_t seq;
	struct sls_obrow *row; /* borrowed from obx_rows */
	bool is_delete;
} sls_obop;

/* The pending ops of one row, in outbox order (the value of obx_rows). */
typedef struct sls_obrow {
	char *table, *row; /* in this struct's allocation, after it */
	int64_t *seqs;     /* owned; ascending */
	size_t n, cap;
	size_t n_deletes;  /* how many of them are deletes */
} sls_obrow;

/* One of these per open file. */
struct sl_store {
	sqlite3 *db;
	char client_id[SL_UUID_LEN + 1];
	uint64_t cursor;
	sl_hlc_clock clock;
	json_t *tables;            /* owned; welcome.tables as stored (plus provisional tables), or NULL */
	bool welcomed;             /* a welcome.tables was ever stored (sl_store_ensure_tables) */
	json_t *snap_groups;       /* owned; the groups of the snapshot being received */
	bool snap_open;            /* a snapshot was begun and not finished */
	int urandom;               /* /dev/urandom, open for the store's life; -1 when closed */
	unsigned char rnd[1024];   /* bytes read ahead from /dev/urandom */
	size_t rnd_pos, rnd_len;
	int64_t last_seq;          /* the greatest outbox seq given out or seen; never reused */
	int64_t data_version;      /* the pager's data version after our last commit or reload */
	sls_hmap obx_ops;          /* op id -> sls_obop* (owned) */
	sls_hmap obx_rows;         /* table NUL row -> sls_obrow* (owned) */
	bool obx_ok;               /* the outbox index matches the file */
	sqlite3_stmt *st_begin, *st_commit, *st_rollback; /* owned */
	struct wsql {              /* rebase.c's visible-row writes, by shape: prepared once */
		char *key;             /* owned: mode, table, pk and columns, NUL-separated; NULL when unused */
		size_t klen;
		sqlite3_stmt *st;      /* owned; reset after each use */
	} wsql[SLS_WSQL];
	int wsql_next;             /* the entry to replace next */
	uint64_t wsql_made;        /* statements ever prepared into wsql: unchanged, none was replaced */
	struct cached {            /* prepared statements kept for reuse, by SQL text */
		char *sql;             /* owned */
		const char *src;       /* the constant it was prepared from (sls_prep_const), or NULL */
		uint64_t hash;         /* of sql */
		sqlite3_stmt *st;
		bool busy;             /* handed out by sls_prep() and not yet sls_release()d */
	} cache[SL_STMT_CACHE];
	int n_cached;
	char errmsg[512];
};

/* Saved in-memory state, restored on rollback. */
typedef struct saved {
	uint64_t cursor;
	sl_hlc_clock clock;
	json_t *tables; /* a new reference */
	bool welcomed;
} saved;


/* A growable string; on allocation failure oom is set and appends stop. */
typedef struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
} sbuf;

bool sls_sb_grow(sbuf *b, size_t n);

/* Appends the n bytes at s (which must not point into b) and keeps b NUL-terminated. */
static inline void
sls_sb_add(sbuf *b, const char *s, size_t n)
{
	if (b->oom || (b->len + n + 1 > b->cap && !sls_sb_grow(b, n)))
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

/* A scalar JSON value as jscan.c reads it; str points into the scanner's copy of the text. */
typedef enum { SLS_STRING, SLS_INT, SLS_REAL, SLS_TRUE, SLS_FALSE, SLS_NULL } sls_type;

typedef struct sls_scalar {
	sls_type type;
	const char *str; /* SLS_STRING: NUL-terminated, len bytes, valid UTF-8 */
	size_t len;
	json_int_t i;    /* SLS_INT */
	double d;        /* SLS_REAL */
} sls_scalar;

/*
 * One change of a `changes` frame, checked (seq >= 0, kind, hlc, client_id
 * as PROTOCOL.md says).  Strings are borrowed from the sls_frame.  Its
 * fields object is either a jansson value (a frame jansson read) or, from
 * jscan.c, flat: nf names and scalars at the frame's fname and fval, from
 * index foff, in the text's order (no jansson value made; sls_change_fields
 * builds one when wanted).
 */
typedef struct sls_change {
	uint64_t seq;
	const char *table, *row, *hlc, *client_id;
	const char *op_id; /* NULL for none */
	bool is_delete;
	uint64_t hlc_v;    /* hlc, parsed */
	json_t *fields;    /* a new reference to the fields object, or NULL (none, or flat) */
	bool flat;         /* the fields object is flat (then fields is NULL) */
	bool flat_distinct; /* flat, and no name appears twice */
	size_t foff, nf;
} sls_change;

/* A `changes` frame, read by jscan.c or by jansson (rebase.c). */
typedef struct sls_frame {
	char *text;      /* owned; jscan.c's unescaped copy of the text, or NULL */
	json_t *json;    /* owned; jansson's tree of the text, or NULL */
	sls_change *v;   /* owned; the changes in frame order */
	size_t n, cap;
	uint64_t cursor;
	const char **fname;  /* owned; the names of every flat fields object, into text */
	sls_scalar *fval;    /* owned; their values, strings into text */
	size_t nfv, capfv;
} sls_frame;

/*
 * A fields object of at most SLS_FLAT_MAX scalars with distinct names, read
 * by jscan.c without jansson (sls_scan_flat); freed by sls_flat_free.
 */
#define SLS_FLAT_MAX 32

typedef struct sls_flat {
	char buf[512];   /* the copy of the text names and strings point into, when it fits */
	char *heap;      /* owned; the copy when it does not fit, or NULL */
	size_t n;
	char *name[SLS_FLAT_MAX];
	sls_scalar val[SLS_FLAT_MAX];
} sls_flat;

/* jscan.c */
json_t *sls_scan_fields(const char *text);
bool sls_scan_flat(const char *text, sls_flat *f);
void sls_flat_free(sls_flat *f);
bool sls_scan_changes(const char *text, sls_frame *f);
void sls_frame_free(sls_frame *f);
int sls_change_fields(const sls_frame *f, const sls_change *c, json_t **out);
/* True when s (NUL-terminated) is UTF-8 as jansson and the gateway accept it. */
bool sls_utf8_ok(const char *s);

/* store.c */
int sls_seterr(sl_store *s, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int sls_dberr(sl_store *s, const char *what);
void sls_sb_str(sbuf *b, const char *s);
void sls_qident(sbuf *b, const char *name);
void sls_sb_json(sbuf *b, const json_t *v);
void sls_sb_jstr(sbuf *b, const char *p, size_t n);
void sls_sb_scalar(sbuf *b, const sls_scalar *v);
int sls_exec(sl_store *s, const char *sql, const char *what);
sqlite3_stmt *sls_prep(sl_store *s, const char *sql);
sqlite3_stmt *sls_prep_const(sl_store *s, const char *sql);
void sls_release(sl_store *s, sqlite3_stmt *st);
int sls_step_done(sl_store *s, sqlite3_stmt *st, const char *what);
int sls_meta_set(sl_store *s, const char *key, const char *value);
int sls_meta_set_u64(sl_store *s, const char *key, uint64_t v);
int sls_save_clock(sl_store *s);
int sls_save_outbox_seq(sl_store *s);
int sls_tx_begin(sl_store *s, saved *sv);
int sls_tx_end(sl_store *s, saved *sv, int rc);
int sls_new_uuid(sl_store *s, char out[SL_UUID_LEN + 1]);
uint64_t sls_wall_ms(void);
void sls_observe_text(sl_store *s, const char *text);
json_t *sls_table_def(sl_store *s, const char *table);
uint64_t sls_hash(const char *p, size_t n);
void *sls_hmap_get(const sls_hmap *m, const char *key, size_t klen, uint64_t hash);
int sls_hmap_put(sls_hmap *m, const char *key, size_t klen, uint64_t hash, void *val);
void *sls_hmap_del(sls_hmap *m, const char *key, size_t klen, uint64_t hash);
void sls_hmap_free(sls_hmap *m, void (*free_val)(void *));
int sls_reload(sl_store *s);
bool sls_table_name_ok(const char *name);
bool sls_def_provisional(const json_t *def);
int sls_provisional_ensure(sl_store *s, const char *table, const json_t *fields);

/* rebase.c */
int sls_key_add(json_t *keys, const char *table, const char *row);
int sls_recompute(sl_store *s, const char *table, const char *row);
int sls_recompute_table(sl_store *s, const char *table);
int sls_visible_local(sl_store *s, const char *table, const char *row, bool is_delete,
                      const json_t *fields, uint64_t hlc);
int sls_visible_local_flat(sl_store *s, const char *table, const char *row, const sls_flat *f,
                           uint64_t hlc);

/* outbox.c */
int sls_outbox_remove(sl_store *s, const char *op_id);
int sls_obx_load(sl_store *s);
void sls_obx_free(sl_store *s);
const sls_obrow *sls_obx_row(const sl_store *s, const char *table, const char *row);

#endif /* SL_STORE_INT_H */

/*
 * fuzz/fuzz_client.c: libFuzzer target for the client library's handling of
 * server frames: client/net.c's frame dispatch (welcome, changes, snapshot,
 * ack, error; its raw-span scanner for reported changes) and the store it
 * drives (client/store.c, rebase.c, outbox.c, jscan.c over SQLite), entered
 * through sl_net_feed (client/synclog_int.h) with no socket.  The whole
 * library is compiled in; libwebsockets is linked but never started.
 *
 * Each input runs against a fresh store file (a temporary directory made
 * once per process, removed at exit).  Input: records separated by the byte
 * 0xff, each a command byte and a payload:
 *   f  a server frame: the payload, where "@0".."@7" stand for the ids of
 *      the ops this input wrote (so acks and changes can name them)
 *   p  a local write (synclog_put): "TABLE\tROW\tFIELDS-JSON"
 *   d  a local delete: "TABLE\tROW"
 *   r  close and reopen the handle (the file persists)
 * Any other command byte is taken modulo the list.
 *
 * Invariants:
 *   - a frame the client refuses (sl_net_feed -1) changes nothing in the
 *     file: every table's rows (a multiset hash), the cursor and the clock
 *     are as before (the store's contract: on failure nothing changed; the
 *     staging table of an unfinished snapshot is the exception: a snapshot's
 *     first frame starts a new one even when that frame is then refused);
 *   - a changes frame never moves the cursor back; a snapshot leaves it at
 *     the snapshot's cursor;
 *   - each change reported to the application (on_change) has a seq above
 *     the cursor before its frame and above the change reported before it
 *     in that frame (synclog.h: once per change applied, in seq order); its
 *     json is one element of the frame's "changes", byte-exact JSON, and its
 *     fields that element's "fields" ("{}" when absent);
 *   - each rejection reported names an op this input wrote, once;
 *   - a local write is accepted (SYNCLOG_OK) or refused (SYNCLOG_EINVAL),
 *     and every op left pending would make a valid op in a push frame
 *     (strings UTF-8, fields a JSON object);
 *   - reopening keeps the cursor; PRAGMA integrity_check says "ok" at the
 *     end of every input.
 * FUZZ_TRACE=1 in the environment prints each frame's outcome (for seeds).
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#include "synclog.h"
#include "synclog_int.h"

#define CHECK(cond)                                                                     \
	do {                                                                                \
		if (!(cond)) {                                                                  \
			fprintf(stderr, "fuzz_client: invariant broken at line %d: %s\n", __LINE__, \
			        #cond);                                                             \
			abort();                                                                    \
		}                                                                               \
	} while (0)

#define MAX_IDS 8
#define MAX_STEPS 64

static char dir[256], path[300];
static synclog *sl;
static char ids[MAX_IDS][SYNCLOG_UUID_LEN + 1];
static bool rejected[MAX_IDS];
static int nids;

/* The frame being fed, parsed by the harness, for the on_change checks. */
static json_t *cur_frame;
static uint64_t cur_floor;     /* the cursor before the frame */
static uint64_t last_reported; /* the last seq reported in this frame */

static void
cleanup_dir(void)
{
	char p[340];
	static const char *sfx[] = { "", "-wal", "-shm", "-journal" };

	for (size_t i = 0; i < sizeof sfx / sizeof sfx[0]; i++) {
		snprintf(p, sizeof p, "%s%s", path, sfx[i]);
		unlink(p);
	}
}

static void
remove_dir(void)
{
	cleanup_dir();
	rmdir(dir);
}

static void
on_change(void *ctx, const synclog_change *ch)
{
	json_t *changes = json_object_get(cur_frame, "changes"), *e, *j, *fj;
	json_error_t err;
	size_t i;
	bool found = false;

	(void) ctx;
	CHECK(cur_frame != NULL);
	CHECK(ch->seq > cur_floor);
	CHECK(ch->seq > last_reported);
	last_reported = ch->seq;
	j = json_loads(ch->json, JSON_DECODE_ANY, &err);
	fj = json_loads(ch->fields, JSON_DECODE_ANY, &err);
	CHECK(j != NULL && fj != NULL);
	json_array_foreach(changes, i, e) {
		json_t *ef = json_object_get(e, "fields");
		if (json_equal(e, j) && (ef ? json_equal(ef, fj) : json_object_size(fj) == 0 && json_is_object(fj)))
			found = true;
	}
	CHECK(found);
	json_decref(j);
	json_decref(fj);
}

static void
on_reject(void *ctx, const char *op_id, const char *table, const char *row, const char *code,
          const char *message)
{
	int k;

	(void) ctx;
	CHECK(table != NULL && row != NULL && code != NULL && message != NULL);
	for (k = 0; k < nids; k++)
		if (strcmp(ids[k], op_id) == 0)
			break;
	CHECK(k < nids);
	CHECK(!rejected[k]);
	rejected[k] = true;
}

static void
on_event(void *ctx, synclog_event ev, const char *detail)
{
	(void) ctx;
	(void) ev;
	CHECK(detail != NULL);
}

static void
open_handle(void)
{
	static const char *groups[] = { "g1", "g2" };
	synclog_config cfg;

	CHECK(synclog_open(path, &sl) == SYNCLOG_OK);
	memset(&cfg, 0, sizeof cfg);
	cfg.url = "ws://127.0.0.1:9/";
	cfg.token = "slt_fuzz";
	cfg.groups = groups;
	cfg.n_groups = 2;
	CHECK(synclog_connect(sl, &cfg) == SYNCLOG_OK);
	synclog_on_change(sl, on_change, NULL);
	synclog_on_reject(sl, on_reject, NULL);
	synclog_on_event(sl, on_event, NULL);
}

/* An order-independent hash of every row of every table but the snapshot's
 * staging table, with the table's name. */
static uint64_t
digest(void)
{
	sqlite3 *db = synclog_db(sl);
	sqlite3_stmt *tabs, *rows;
	uint64_t sum = 0;

	CHECK(sqlite3_prepare_v2(db, "SELECT name FROM sqlite_master WHERE type = 'table' "
	                             "AND name <> '_synclog_snapshot' ORDER BY name",
	                         -1, &tabs, NULL) == SQLITE_OK);
	while (sqlite3_step(tabs) == SQLITE_ROW) {
		const char *t = (const char *) sqlite3_column_text(tabs, 0);
		char *sql = sqlite3_mprintf("SELECT * FROM \"%w\"", t);
		uint64_t th = 1469598103934665603u;

		for (const char *q = t; *q; q++)
			th = (th ^ (unsigned char) *q) * 1099511628211u;
		CHECK(sql != NULL && sqlite3_prepare_v2(db, sql, -1, &rows, NULL) == SQLITE_OK);
		sqlite3_free(sql);
		while (sqlite3_step(rows) == SQLITE_ROW) {
			uint64_t h = th;
			for (int c = 0; c < sqlite3_column_count(rows); c++) {
				const unsigned char *v = sqlite3_column_blob(rows, c);
				int n = sqlite3_column_bytes(rows, c);
				h = (h ^ (uint64_t) sqlite3_column_type(rows, c)) * 1099511628211u;
				for (int k = 0; k < n; k++)
					h = (h ^ v[k]) * 1099511628211u;
				h = (h ^ 0xff) * 1099511628211u;
			}
			sum += h * 0x9e3779b97f4a7c15u | 1;
		}
		sqlite3_finalize(rows);
	}
	sqlite3_finalize(tabs);
	return sum;
}

/* Copies payload[0..len) NUL-terminated, with @K replaced by ids[K]. */
static char *
substitute(const char *p, size_t len, size_t *outlen)
{
	char *out = malloc(len * (SYNCLOG_UUID_LEN + 1) / 2 + len + 1), *o = out;

	if (out == NULL)
		abort();
	for (size_t i = 0; i < len; i++) {
		if (p[i] == '@' && i + 1 < len && p[i + 1] >= '0' && p[i + 1] < '0' + MAX_IDS &&
		    p[i + 1] - '0' < nids) {
			memcpy(o, ids[p[i + 1] - '0'], SYNCLOG_UUID_LEN);
			o += SYNCLOG_UUID_LEN;
			i++;
		} else {
			*o++ = p[i];
		}
	}
	*o = '\0';
	*outlen = (size_t) (o - out);
	return out;
}

/* Splits "A\tB\tC" into up to 3 NUL-terminated fields (in place). */
static int
split_tabs(char *s, char **f, int max)
{
	int n = 0;

	f[n++] = s;
	for (char *q = s; *q && n < max; q++)
		if (*q == '\t') {
			*q = '\0';
			f[n++] = q + 1;
		}
	return n;
}

static void
feed(const char *p, size_t len)
{
	size_t n;
	char *text = substitute(p, len, &n);
	uint64_t before = synclog_cursor(sl), d0 = digest(), hlc0 = sl_store_hlc(sl->store);
	int rc;
	const char *type;

	cur_frame = json_loadb(text, n, 0, NULL);
	type = json_string_value(json_object_get(cur_frame, "type"));
	cur_floor = before;
	last_reported = 0;
	rc = sl_net_feed(sl, text, n);
	if (getenv("FUZZ_TRACE"))
		fprintf(stderr, "feed %s -> %d, cursor %llu -> %llu: %s\n", type ? type : "?", rc,
		        (unsigned long long) before, (unsigned long long) synclog_cursor(sl),
		        sl_store_errmsg(sl->store));
	if (rc != 0) {
		CHECK(synclog_cursor(sl) == before);
		CHECK(sl_store_hlc(sl->store) == hlc0);
		CHECK(digest() == d0);
	} else if (type && strcmp(type, "changes") == 0) {
		CHECK(synclog_cursor(sl) >= before);
	} else if (type && strcmp(type, "snapshot") == 0 &&
	           json_is_true(json_object_get(cur_frame, "done")) && synclog_connected(sl)) {
		CHECK(synclog_cursor(sl) ==
		      (uint64_t) json_integer_value(json_object_get(cur_frame, "cursor")));
	}
	json_decref(cur_frame);
	cur_frame = NULL;
	free(text);
}

static void
local_write(const char *p, size_t len, bool del)
{
	char *s = strndup(p, len), *f[3] = { NULL, NULL, NULL };
	char id[SYNCLOG_UUID_LEN + 1];
	int n, rc;

	if (s == NULL)
		abort();
	n = split_tabs(s, f, 3);
	if (del)
		rc = synclog_delete(sl, f[0], n > 1 ? f[1] : "r1", id);
	else
		rc = synclog_put(sl, f[0], n > 1 ? f[1] : "r1", n > 2 ? f[2] : "{\"title\":\"x\"}", id);
	if (getenv("FUZZ_TRACE"))
		fprintf(stderr, "%s %s -> %d %s\n", del ? "delete" : "put", f[0], rc, synclog_errmsg(sl));
	CHECK(rc == SYNCLOG_OK || rc == SYNCLOG_EINVAL);
	if (rc == SYNCLOG_OK && nids < MAX_IDS) {
		memcpy(ids[nids], id, sizeof id);
		rejected[nids] = false;
		nids++;
	}
	free(s);
}

/* A pending op must make a valid op of a push frame (net.c copies its
 * strings' bytes and its fields text into the frame). */
static int
check_pending(void *ctx, const synclog_op *op)
{
	json_t *o, *f;

	(void) ctx;
	o = json_pack("{s:s, s:s, s:s, s:s, s:s}", "id", op->op_id, "table", op->table, "row",
	              op->row, "kind", op->kind, "hlc", op->hlc);
	f = json_loads(op->fields, 0, NULL);
	CHECK(o != NULL && json_is_object(f));
	CHECK(strcmp(op->kind, "upsert") == 0 || strcmp(op->kind, "delete") == 0);
	json_decref(o);
	json_decref(f);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char cmds[] = "fpdr";
	const char *p = (const char *) data, *end = p + size;
	sqlite3_stmt *st;

	if (dir[0] == '\0') {
		const char *tmp = getenv("TMPDIR");
		snprintf(dir, sizeof dir, "%s/synclog-fuzz-client.XXXXXX", tmp && *tmp ? tmp : "/tmp");
		CHECK(mkdtemp(dir) != NULL);
		snprintf(path, sizeof path, "%s/store.db", dir);
		atexit(remove_dir);
	}
	cleanup_dir();
	nids = 0;
	open_handle();

	for (int step = 0; step < MAX_STEPS && p < end; step++) {
		const char *rec = p, *rend = memchr(p, 0xff, (size_t) (end - p));
		char cmd;

		if (rend == NULL)
			rend = end;
		p = rend < end ? rend + 1 : end;
		if (rend - rec < 1)
			continue;
		cmd = rec[0] && strchr(cmds, rec[0]) ? rec[0] : cmds[(unsigned char) rec[0] % (sizeof cmds - 1)];
		rec++;
		switch (cmd) {
		case 'f':
			feed(rec, (size_t) (rend - rec));
			break;
		case 'p':
			local_write(rec, (size_t) (rend - rec), false);
			break;
		case 'd':
			local_write(rec, (size_t) (rend - rec), true);
			break;
		case 'r': {
			uint64_t c = synclog_cursor(sl);
			synclog_close(sl);
			open_handle();
			CHECK(synclog_cursor(sl) == c);
			break;
		}
		}
	}

	CHECK(synclog_pending(sl, check_pending, NULL) == SYNCLOG_OK);
	CHECK(sqlite3_prepare_v2(synclog_db(sl), "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK);
	CHECK(sqlite3_step(st) == SQLITE_ROW);
	CHECK(strcmp((const char *) sqlite3_column_text(st, 0), "ok") == 0);
	sqlite3_finalize(st);
	synclog_close(sl);
	sl = NULL;
	return 0;
}

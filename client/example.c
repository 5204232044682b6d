/*
 * client/example.c: the README's example program, built by `make` as
 * build/client/example so it cannot drift from synclog.h.
 *
 *   build/client/example FILE URL TOKEN GROUP
 *
 * Opens FILE, writes one issue locally (visible at once, no network), reads
 * it back with plain SQL, then syncs with the gateway at URL and prints what
 * the server changed or refused.
 */
#include <stdio.h>

#include <sqlite3.h>

#include "synclog.h"

static void
changed(void *ctx, const synclog_change *c)
{
	(void) ctx;
	printf("change %llu: %s %s/%s %s\n", (unsigned long long) c->seq, c->kind, c->table, c->row,
	       c->fields);
}

static void
refused(void *ctx, const char *op_id, const char *table, const char *row, const char *code,
        const char *message)
{
	(void) ctx;
	printf("refused %s (%s/%s): %s: %s\n", op_id, table, row, code, message);
}

int
main(int argc, char **argv)
{
	synclog *sl;
	sqlite3_stmt *st;
	char op[SYNCLOG_UUID_LEN + 1];
	const char *groups[1];
	synclog_config cfg = {0};
	int rc;

	if (argc != 5) {
		fprintf(stderr, "usage: %s FILE URL TOKEN GROUP\n", argv[0]);
		return 2;
	}
	if (synclog_open(argv[1], &sl) != SYNCLOG_OK) {
		fprintf(stderr, "open: %s\n", sl ? synclog_errmsg(sl) : "out of memory");
		synclog_close(sl);
		return 1;
	}
	synclog_on_change(sl, changed, NULL);
	synclog_on_reject(sl, refused, NULL);

	/* A local write: one SQLite transaction, the row and the outbox. */
	if (synclog_put(sl, "issues", "issue-1", "{\"team\": \"t1\", \"title\": \"Hello\", \"prio\": 1}",
	                op) != SYNCLOG_OK) {
		fprintf(stderr, "put: %s\n", synclog_errmsg(sl));
		synclog_close(sl);
		return 1;
	}
	printf("wrote op %s\n", op);

	/* Reads are ordinary SQL on the app's table. */
	if (sqlite3_prepare_v2(synclog_db(sl), "SELECT title FROM issues WHERE id = 'issue-1'", -1, &st,
	                       NULL) == SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW)
			printf("local title: %s\n", (const char *) sqlite3_column_text(st, 0));
		sqlite3_finalize(st);
	}

	/* Push the outbox and pull until caught up. */
	groups[0] = argv[4];
	cfg.url = argv[2];
	cfg.token = argv[3];
	cfg.groups = groups;
	cfg.n_groups = 1;
	if ((rc = synclog_connect(sl, &cfg)) == SYNCLOG_OK)
		rc = synclog_sync(sl, 10000);
	if (rc != SYNCLOG_OK)
		fprintf(stderr, "sync: %s (the op stays in the outbox)\n", synclog_errmsg(sl));
	else
		printf("synced, cursor %llu\n", (unsigned long long) synclog_cursor(sl));
	synclog_close(sl);
	return rc == SYNCLOG_OK ? 0 : 1;
}

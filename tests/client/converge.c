/*
 * tests/client/converge.c: a harness of libsynclog clients for the
 * end-to-end convergence and kill-safety suite (tests/suites/44-client-
 * converge.sh).  It uses only the public API (client/synclog.h).
 *
 *   converge edit  --url U --token T --group G --dir D --clients N
 *                  --rounds R [--rows K] [--seed S]
 *       N clients (D/client-I.db) make random offline upserts and deletes
 *       over rows r00..rK-1 of table `issues` (fields title, status, prio;
 *       prio is sometimes negative, which the server's CHECK refuses), R
 *       rounds; after its edits in a round, each client syncs with
 *       probability 1/2 (a failed sync is fine: the gateway may be down).
 *       Writes the round number to D/round after each round, for the script
 *       to time its faults.  Then settles (below).
 *   converge settle --url U --token T --group G --dir D --clients N
 *       Syncs every client, round robin, until a whole pass has every sync
 *       succeed with no op pending and no client's cursor moving, then writes
 *       D/client-I.dump (canonical rows, below).  Gives up after 120 s.
 *   converge killme --url U --token T --group G --db F --log L [--seed S]
 *       Forever: a random write to rows k00..k07 (upserts the server
 *       accepts: no deletes, no negative prio), then its op id appended to
 *       L (so L lists writes acknowledged locally), then synclog_run for up
 *       to 20 ms.  The script SIGKILLs it at random moments.
 *   converge dump --db F
 *       Prints F's canonical rows.
 *
 * Canonical rows: `SELECT id, team, title, status, prio FROM issues ORDER BY
 * id`, one line per row, fields separated by '|', NULL as \N, which is what
 * psql -At -F'|' -P null='\N' prints for the same query on the server.
 *
 * Prints a summary line `ops=N rejected=N` (edit) and progress lines to
 * stderr.  Exits 0 on success, 1 on any failure, with a message.
 */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "synclog.h"

#define MAX_CLIENTS 32

static const char *o_url, *o_token, *o_group, *o_dir, *o_db, *o_log;
static int o_clients = 4, o_rounds = 20, o_rows = 12;
static unsigned long o_seed = 1;

static long n_rejected;
static int o_safe; /* killme: no deletes and no refused values, so every write must land */

static void
die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "converge: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

/* A small seeded generator (xorshift64*), so a run replays from its seed. */
static uint64_t rng_state;

static uint64_t
rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ULL;
}

static int
rnd_below(int n)
{
	return (int) (rnd() % (uint64_t) n);
}

static void
on_reject(void *ctx, const char *op_id, const char *table, const char *row, const char *code,
          const char *message)
{
	(void) ctx;
	(void) op_id;
	n_rejected++;
	fprintf(stderr, "converge: rejected %s/%s: %s (%s)\n", table, row, code, message);
}

static synclog *
open_client(const char *path)
{
	synclog *sl;
	const char *groups[1] = {o_group};
	synclog_config cfg = {
		.url = o_url,
		.token = o_token,
		.groups = groups,
		.n_groups = 1,
		.connect_timeout_ms = 3000,
	};

	if (synclog_open(path, &sl) != SYNCLOG_OK)
		die("open %s: %s", path, sl ? synclog_errmsg(sl) : "out of memory");
	synclog_on_reject(sl, on_reject, NULL);
	if (synclog_connect(sl, &cfg) != SYNCLOG_OK)
		die("connect %s: %s", path, synclog_errmsg(sl));
	return sl;
}

/* One random write to row prefix+NN (NN below nrows); returns the op id in id. */
static void
random_write(synclog *sl, const char *who, char prefix, int nrows, char id[SYNCLOG_UUID_LEN + 1])
{
	static const char *statuses[] = {"todo", "doing", "done", "blocked"};
	char row[16], fields[256];
	int r = rnd_below(nrows), what = rnd_below(100), rc;

	snprintf(row, sizeof(row), "%c%02d", prefix, r);
	if (o_safe && what < 2)
		what += 2;
	if (o_safe && what >= 97)
		what = 96;
	if (what < 2 && rnd_below(3) != 0)
		what = 2; /* deletes absorb every later op: keep them rare (2/300) */
	if (what < 2) {
		rc = synclog_delete(sl, "issues", row, id);
	} else {
		int n = 0;

		n += snprintf(fields + n, sizeof(fields) - (size_t) n, "{\"team\": \"%s\"", o_group);
		if (what < 40)
			n += snprintf(fields + n, sizeof(fields) - (size_t) n, ", \"title\": \"%s-%u\"", who,
			              (unsigned) (rnd() % 100000));
		if (what >= 30 && what < 75)
			n += snprintf(fields + n, sizeof(fields) - (size_t) n, ", \"status\": \"%s\"",
			              statuses[rnd_below(4)]);
		if (what >= 70)
			n += snprintf(fields + n, sizeof(fields) - (size_t) n, ", \"prio\": %d",
			              what >= 97 ? -1 : rnd_below(10));
		snprintf(fields + n, sizeof(fields) - (size_t) n, "}");
		rc = synclog_put(sl, "issues", row, fields, id);
	}
	if (rc != SYNCLOG_OK)
		die("%s: write to %s: %s", who, row, synclog_errmsg(sl));
}

/* Number of ops not yet acknowledged. */
static int
count_one(void *ctx, const synclog_op *op)
{
	(void) op;
	(*(int *) ctx)++;
	return 0;
}

static int
n_pending(synclog *sl)
{
	int n = 0;

	if (synclog_pending(sl, count_one, &n) != SYNCLOG_OK)
		die("pending: %s", synclog_errmsg(sl));
	return n;
}

static void
dump(synclog *sl, FILE *out)
{
	sqlite3 *db = synclog_db(sl);
	sqlite3_stmt *st;
	int rc, i;

	if (sqlite3_prepare_v2(db, "SELECT id, team, title, status, prio FROM issues ORDER BY id", -1, &st,
	                       NULL) != SQLITE_OK) {
		/* No table yet: no rows. */
		return;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		for (i = 0; i < 5; i++) {
			const unsigned char *t = sqlite3_column_text(st, i);

			fprintf(out, "%s%s", i ? "|" : "", t ? (const char *) t : "\\N");
		}
		fputc('\n', out);
	}
	if (rc != SQLITE_DONE)
		die("dump: %s", sqlite3_errmsg(db));
	sqlite3_finalize(st);
}

static void
write_round(int round)
{
	char path[4096], tmp[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/round", o_dir);
	snprintf(tmp, sizeof(tmp), "%s/round.tmp", o_dir);
	if ((f = fopen(tmp, "w")) == NULL)
		die("write %s: %s", tmp, strerror(errno));
	fprintf(f, "%d\n", round);
	fclose(f);
	if (rename(tmp, path) != 0)
		die("rename %s: %s", tmp, strerror(errno));
}

static void
settle(synclog **cl, int n)
{
	uint64_t deadline = now_ms() + 120000, before[MAX_CLIENTS];
	int pass = 0;

	for (;;) {
		int all_ok = 1, i;

		pass++;
		for (i = 0; i < n; i++)
			before[i] = synclog_cursor(cl[i]);
		for (i = 0; i < n; i++) {
			int rc = synclog_sync(cl[i], 10000);

			if (rc != SYNCLOG_OK) {
				fprintf(stderr, "converge: settle pass %d: client %d: sync: %s\n", pass, i,
				        synclog_errmsg(cl[i]));
				all_ok = 0;
			} else if (n_pending(cl[i]) != 0) {
				all_ok = 0;
			}
		}
		for (i = 0; i < n && all_ok; i++)
			if (synclog_cursor(cl[i]) != before[i] || synclog_cursor(cl[i]) != synclog_cursor(cl[0]))
				all_ok = 0;
		if (!all_ok && pass % 20 == 0)
			for (i = 0; i < n; i++)
				fprintf(stderr, "converge: settle pass %d: client %d: cursor %llu (was %llu), %d pending\n",
				        pass, i, (unsigned long long) synclog_cursor(cl[i]),
				        (unsigned long long) before[i], n_pending(cl[i]));
		if (all_ok)
			break;
		if (now_ms() > deadline)
			die("not settled after 120 s (%d passes)", pass);
		usleep(200000);
	}
	fprintf(stderr, "converge: settled after %d passes, cursor %llu\n", pass,
	        (unsigned long long) synclog_cursor(cl[0]));
	for (int i = 0; i < n; i++) {
		char path[4096];
		FILE *f;

		snprintf(path, sizeof(path), "%s/client-%d.dump", o_dir, i);
		if ((f = fopen(path, "w")) == NULL)
			die("write %s: %s", path, strerror(errno));
		dump(cl[i], f);
		fclose(f);
	}
}

static synclog **
open_all(void)
{
	static synclog *cl[MAX_CLIENTS];

	for (int i = 0; i < o_clients; i++) {
		char path[4096];

		snprintf(path, sizeof(path), "%s/client-%d.db", o_dir, i);
		cl[i] = open_client(path);
	}
	return cl;
}

static void
close_all(synclog **cl)
{
	for (int i = 0; i < o_clients; i++)
		synclog_close(cl[i]);
}

static int
cmd_edit(void)
{
	synclog **cl = open_all();
	long ops = 0;
	int order[MAX_CLIENTS];

	for (int round = 1; round <= o_rounds; round++) {
		for (int i = 0; i < o_clients; i++)
			order[i] = i;
		for (int i = o_clients - 1; i > 0; i--) {
			int j = rnd_below(i + 1), t = order[i];

			order[i] = order[j];
			order[j] = t;
		}
		for (int k = 0; k < o_clients; k++) {
			int i = order[k], nw = 1 + rnd_below(4);
			char who[16], id[SYNCLOG_UUID_LEN + 1];

			snprintf(who, sizeof(who), "c%d", i);
			for (int w = 0; w < nw; w++, ops++)
				random_write(cl[i], who, 'r', o_rows, id);
			if (rnd_below(2) == 0) {
				int rc = synclog_sync(cl[i], 5000);

				if (rc != SYNCLOG_OK)
					fprintf(stderr, "converge: round %d: client %d offline: %s\n", round, i,
					        synclog_errmsg(cl[i]));
			} else {
				synclog_disconnect(cl[i]); /* offline for a while */
			}
		}
		write_round(round);
		fprintf(stderr, "converge: round %d/%d done, %ld ops\n", round, o_rounds, ops);
		usleep(50000);
	}
	settle(cl, o_clients);
	printf("ops=%ld rejected=%ld\n", ops, n_rejected);
	close_all(cl);
	return 0;
}

static int
cmd_settle(void)
{
	synclog **cl = open_all();

	settle(cl, o_clients);
	printf("rejected=%ld\n", n_rejected);
	close_all(cl);
	return 0;
}

static void cmd_killme(void) __attribute__((noreturn));

static void
cmd_killme(void)
{
	synclog *sl;
	int log;

	o_safe = 1;
	sl = open_client(o_db);
	log = open(o_log, O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (log < 0)
		die("open %s: %s", o_log, strerror(errno));
	for (;;) {
		char id[SYNCLOG_UUID_LEN + 1], line[SYNCLOG_UUID_LEN + 2];
		int rc;

		random_write(sl, "k", 'k', 8, id);
		memcpy(line, id, SYNCLOG_UUID_LEN);
		line[SYNCLOG_UUID_LEN] = '\n';
		if (write(log, line, SYNCLOG_UUID_LEN + 1) != SYNCLOG_UUID_LEN + 1)
			die("write %s: %s", o_log, strerror(errno));
		if ((rc = synclog_run(sl, 20)) != SYNCLOG_OK)
			die("run: %s", synclog_errmsg(sl));
	}
}

static int
cmd_dump(void)
{
	synclog *sl;

	if (synclog_open(o_db, &sl) != SYNCLOG_OK)
		die("open %s: %s", o_db, sl ? synclog_errmsg(sl) : "out of memory");
	dump(sl, stdout);
	synclog_close(sl);
	return 0;
}

static void
usage(void)
{
	fprintf(stderr, "usage: converge edit|settle|killme|dump [--url U] [--token T] [--group G]\n"
	                "       [--dir D] [--clients N] [--rounds R] [--rows K] [--seed S] [--db F] [--log L]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	const char *cmd;

	if (argc < 2)
		usage();
	cmd = argv[1];
	for (int i = 2; i < argc; i++) {
		const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (v == NULL)
			usage();
		i++;
		if (strcmp(k, "--url") == 0)
			o_url = v;
		else if (strcmp(k, "--token") == 0)
			o_token = v;
		else if (strcmp(k, "--group") == 0)
			o_group = v;
		else if (strcmp(k, "--dir") == 0)
			o_dir = v;
		else if (strcmp(k, "--db") == 0)
			o_db = v;
		else if (strcmp(k, "--log") == 0)
			o_log = v;
		else if (strcmp(k, "--clients") == 0)
			o_clients = atoi(v);
		else if (strcmp(k, "--rounds") == 0)
			o_rounds = atoi(v);
		else if (strcmp(k, "--rows") == 0)
			o_rows = atoi(v);
		else if (strcmp(k, "--seed") == 0)
			o_seed = strtoul(v, NULL, 10);
		else
			usage();
	}
	rng_state = o_seed * 0x9E3779B97F4A7C15ULL + 1;
	if (o_clients < 1 || o_clients > MAX_CLIENTS || o_rows < 1 || o_rows > 99)
		usage();
	if (strcmp(cmd, "dump") == 0) {
		if (!o_db)
			usage();
		return cmd_dump();
	}
	if (!o_url || !o_token || !o_group)
		usage();
	if (strcmp(cmd, "edit") == 0 && o_dir)
		return cmd_edit();
	if (strcmp(cmd, "settle") == 0 && o_dir)
		return cmd_settle();
	if (strcmp(cmd, "killme") == 0 && o_db && o_log)
		cmd_killme();
	usage();
	return 2;
}

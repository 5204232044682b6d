/*
 * bench/seqlag.c: sequencer lag probe for `make bench` (bench/run.sh).
 *
 * Measures, for single-op pushes of its own, the time from the push's commit
 * returning to the client (t0) to the arrival of the first NOTIFY synclog
 * whose payload (the new high-water seq) covers the op's seq (t1).
 *
 * Three connections, all driven asynchronously and waited on together with
 * poll() on their PQsocket()s, so nothing busy-loops and no wait on one
 * connection delays reading another:
 *   L  LISTEN synclog; every notification is recorded as (high-water, t1).
 *   P  pushes one op with a known id every INTERVAL_MS; t0 is taken as soon
 *      as the push's result (sent after the commit) has been read.
 *   Q  looks up the seqs of this probe's own ops once they are stamped
 *      (SELECT ... WHERE op_id = ANY(...) AND seq IS NOT NULL).
 * An op's lag is t1 of the first notification whose high-water is >= its seq,
 * minus its t0.  Because every notification is kept with its arrival time,
 * the order in which the probe learns things does not bias the result; a
 * notification read before the push's own result (possible when both arrive
 * together) counts as lag 0 ("early").
 *
 * Usage: seqlag CONNINFO TOKEN GROUP DURATION_S INTERVAL_MS [SAMPLES_FILE]
 *   CONNINFO may be "" to use the PG* environment variables.
 * Prints one line of key=value pairs on stdout:
 *   samples p50_ms p99_ms max_ms mean_ms missed pushes rejected early
 *   notifications
 * and, with SAMPLES_FILE, writes every lag in ms, one per line.
 * Exits 1 on a connection or query error.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

typedef struct ProbeOp
{
	char		id[37];
	double		t0;				/* monotonic ms; < 0 while the push is in flight */
	long long	seq;			/* 0 while unknown */
	int			lookup;			/* in the lookup now running on Q */
} ProbeOp;

typedef struct Notice
{
	long long	hw;
	double		t1;
} Notice;

static ProbeOp *ops;
static int	nops,
			capops;
static Notice *notices;
static int	nnotices,
			capnotices;
static int	urandom_fd = -1;

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static void
die_conn(PGconn *c, const char *what)
{
	fprintf(stderr, "seqlag: %s: %s", what, PQerrorMessage(c));
	exit(1);
}

static void *
xrealloc(void *p, size_t n)
{
	void	   *q = realloc(p, n);

	if (q == NULL)
	{
		fprintf(stderr, "seqlag: out of memory\n");
		exit(1);
	}
	return q;
}

/* A random version-4 UUID in canonical text form. */
static void
new_uuid(char *out)
{
	unsigned char b[16];
	size_t		got = 0;

	while (got < sizeof(b))
	{
		ssize_t		n = read(urandom_fd, b + got, sizeof(b) - got);

		if (n <= 0)
		{
			if (n < 0 && errno == EINTR)
				continue;
			fprintf(stderr, "seqlag: cannot read /dev/urandom\n");
			exit(1);
		}
		got += (size_t) n;
	}
	b[6] = (unsigned char) ((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char) ((b[8] & 0x3f) | 0x80);
	snprintf(out, 37,
			 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
			 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
			 b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

static PGconn *
connect_or_die(const char *conninfo)
{
	PGconn	   *c = PQconnectdb(conninfo);

	if (PQstatus(c) != CONNECTION_OK)
		die_conn(c, "cannot connect");
	return c;
}

/* Reads every pending notification on L, stamping them with now. */
static void
drain_notices(PGconn *L)
{
	PGnotify   *n;
	double		t1;

	if (!PQconsumeInput(L))
		die_conn(L, "listen connection");
	t1 = now_ms();
	while ((n = PQnotifies(L)) != NULL)
	{
		if (strcmp(n->relname, "synclog") == 0)
		{
			if (nnotices == capnotices)
			{
				capnotices = capnotices ? capnotices * 2 : 1024;
				notices = xrealloc(notices, sizeof(Notice) * (size_t) capnotices);
			}
			notices[nnotices].hw = atoll(n->extra);
			notices[nnotices].t1 = t1;
			nnotices++;
		}
		PQfreemem(n);
	}
}

/* Sends the lookup of every stamped-or-not op whose seq is still unknown. */
static int
send_lookup(PGconn *Q)
{
	static char *buf;
	static size_t cap;
	size_t		len = 0;
	int			k = 0;
	const char *params[1];

	for (int i = 0; i < nops; i++)
	{
		if (ops[i].t0 < 0 || ops[i].seq != 0)
			continue;
		if (len + 40 >= cap)
		{
			cap = cap ? cap * 2 : 4096;
			buf = xrealloc(buf, cap);
		}
		buf[len++] = k ? ',' : '{';
		memcpy(buf + len, ops[i].id, 36);
		len += 36;
		ops[i].lookup = 1;
		k++;
	}
	if (k == 0)
		return 0;
	buf[len++] = '}';
	buf[len] = '\0';
	params[0] = buf;
	if (!PQsendQueryParams(Q, "SELECT op_id::text, seq FROM synclog.ops "
						   "WHERE op_id = ANY ($1::uuid[]) AND seq IS NOT NULL",
						   1, NULL, params, NULL, NULL, 0))
		die_conn(Q, "lookup");
	return 1;
}

static void
take_lookup(PGresult *r)
{
	int			n = PQntuples(r);

	for (int j = 0; j < n; j++)
	{
		const char *id = PQgetvalue(r, j, 0);
		long long	seq = atoll(PQgetvalue(r, j, 1));

		for (int i = nops - 1; i >= 0; i--)
			if (ops[i].lookup && strcmp(ops[i].id, id) == 0)
			{
				ops[i].seq = seq;
				break;
			}
	}
	for (int i = 0; i < nops; i++)
		ops[i].lookup = 0;
}

static void
send_push(PGconn *P, const char *token, const char *group, int n)
{
	static char json[512];
	char		row[37];
	char		client[64];
	struct timespec ts;
	unsigned long long hlc;
	const char *params[3];

	if (nops == capops)
	{
		capops = capops ? capops * 2 : 1024;
		ops = xrealloc(ops, sizeof(ProbeOp) * (size_t) capops);
	}
	new_uuid(ops[nops].id);
	ops[nops].t0 = -1;
	ops[nops].seq = 0;
	ops[nops].lookup = 0;
	new_uuid(row);
	clock_gettime(CLOCK_REALTIME, &ts);
	hlc = ((unsigned long long) ts.tv_sec * 1000ULL +
		   (unsigned long long) ts.tv_nsec / 1000000ULL) << 16;
	snprintf(json, sizeof(json),
			 "[{\"id\":\"%s\",\"table\":\"items\",\"row\":\"%s\",\"kind\":\"upsert\","
			 "\"fields\":{\"grp\":\"%s\",\"title\":\"seqlag probe\",\"n\":%d},"
			 "\"hlc\":\"%016llx\"}]",
			 ops[nops].id, row, group, n, hlc);
	snprintf(client, sizeof(client), "seqlag-%d", (int) getpid());
	params[0] = token;
	params[1] = client;
	params[2] = json;
	nops++;
	if (!PQsendQueryParams(P, "SELECT (r->'rejected') = '[]'::jsonb, r::text "
						   "FROM synclog.push($1, $2, $3::jsonb) r",
						   3, NULL, params, NULL, NULL, 0))
		die_conn(P, "push");
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted v[0..n). */
static double
pct(const double *v, int n, double p)
{
	int			k;

	if (n == 0)
		return 0;
	k = (int) (p * n + 0.999999999);
	if (k < 1)
		k = 1;
	if (k > n)
		k = n;
	return v[k - 1];
}

int
main(int argc, char **argv)
{
	const char *conninfo,
			   *token,
			   *group;
	double		duration_ms,
				interval_ms,
				start,
				end,
				drain_end,
				next_push;
	PGconn	   *L,
			   *P,
			   *Q;
	PGresult   *r;
	int			push_busy = 0,
				lookup_busy = 0,
				want_lookup = 0,
				rejected = 0,
				early = 0,
				missed = 0,
				nsamples = 0;
	double	   *lags;
	double		sum = 0;

	if (argc < 6 || argc > 7)
	{
		fprintf(stderr, "usage: seqlag CONNINFO TOKEN GROUP DURATION_S INTERVAL_MS [SAMPLES_FILE]\n");
		return 2;
	}
	conninfo = argv[1];
	token = argv[2];
	group = argv[3];
	duration_ms = atof(argv[4]) * 1000.0;
	interval_ms = atof(argv[5]);
	if (duration_ms <= 0 || interval_ms <= 0)
	{
		fprintf(stderr, "seqlag: DURATION_S and INTERVAL_MS must be positive\n");
		return 2;
	}
	urandom_fd = open("/dev/urandom", O_RDONLY);
	if (urandom_fd < 0)
	{
		fprintf(stderr, "seqlag: cannot open /dev/urandom\n");
		return 1;
	}

	L = connect_or_die(conninfo);
	P = connect_or_die(conninfo);
	Q = connect_or_die(conninfo);
	r = PQexec(L, "LISTEN synclog");
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		die_conn(L, "LISTEN");
	PQclear(r);
	if (PQsetnonblocking(P, 1) || PQsetnonblocking(Q, 1))
		die_conn(P, "nonblocking");

	start = now_ms();
	end = start + duration_ms;
	drain_end = end + 3000;
	next_push = start;

	for (;;)
	{
		struct pollfd pfd[3];
		double		t = now_ms();
		double		wake;
		int			timeout,
					pending = 0;

		/* Push on schedule; never more than one in flight. */
		if (!push_busy && t < end && t >= next_push)
		{
			send_push(P, token, group, nops);
			push_busy = 1;
			next_push += interval_ms;
			if (next_push < t)
				next_push = t + interval_ms;
		}
		if (want_lookup && !lookup_busy)
		{
			lookup_busy = send_lookup(Q);
			want_lookup = 0;
		}

		for (int i = 0; i < nops; i++)
			if (ops[i].t0 < 0 || ops[i].seq == 0 ||
				nnotices == 0 || notices[nnotices - 1].hw < ops[i].seq)
				pending++;
		if (t >= end && ((pending == 0 && !push_busy && !lookup_busy) || t >= drain_end))
			break;

		wake = (t < end && !push_busy) ? next_push : drain_end;
		if (t >= end && pending > 0 && !lookup_busy)
		{
			/* After the run: look again now and then, in case seqs came late. */
			want_lookup = 1;
			wake = t + 50 < drain_end ? t + 50 : drain_end;
		}
		timeout = (int) (wake - t + 0.999);
		if (timeout < 0)
			timeout = 0;

		pfd[0].fd = PQsocket(L);
		pfd[0].events = POLLIN;
		pfd[1].fd = push_busy ? PQsocket(P) : -1;
		pfd[1].events = POLLIN;
		pfd[2].fd = lookup_busy ? PQsocket(Q) : -1;
		pfd[2].events = POLLIN;
		pfd[0].revents = pfd[1].revents = pfd[2].revents = 0;
		if (poll(pfd, 3, timeout) < 0)
		{
			if (errno == EINTR)
				continue;
			perror("seqlag: poll");
			return 1;
		}

		/* The push's result first: its commit precedes any notice covering it. */
		if (push_busy && (pfd[1].revents & (POLLIN | POLLERR | POLLHUP)))
		{
			if (!PQconsumeInput(P))
				die_conn(P, "push connection");
			if (!PQisBusy(P))
			{
				double		t0 = now_ms();

				while ((r = PQgetResult(P)) != NULL)
				{
					if (PQresultStatus(r) != PGRES_TUPLES_OK)
					{
						fprintf(stderr, "seqlag: push failed: %s", PQresultErrorMessage(r));
						return 1;
					}
					if (strcmp(PQgetvalue(r, 0, 0), "t") != 0)
					{
						if (rejected++ == 0)
							fprintf(stderr, "seqlag: push refused: %s\n", PQgetvalue(r, 0, 1));
						ops[nops - 1].seq = -1; /* never stamped: not a sample */
					}
					PQclear(r);
				}
				ops[nops - 1].t0 = t0;
				push_busy = 0;
			}
		}
		if (pfd[0].revents & (POLLIN | POLLERR | POLLHUP))
		{
			int			before = nnotices;

			drain_notices(L);
			if (nnotices > before)
				want_lookup = 1;
		}
		if (lookup_busy && (pfd[2].revents & (POLLIN | POLLERR | POLLHUP)))
		{
			if (!PQconsumeInput(Q))
				die_conn(Q, "lookup connection");
			if (!PQisBusy(Q))
			{
				while ((r = PQgetResult(Q)) != NULL)
				{
					if (PQresultStatus(r) != PGRES_TUPLES_OK)
					{
						fprintf(stderr, "seqlag: lookup failed: %s", PQresultErrorMessage(r));
						return 1;
					}
					take_lookup(r);
					PQclear(r);
				}
				lookup_busy = 0;
			}
		}
	}

	/* Each op's lag: the first notification covering its seq, minus t0. */
	lags = malloc(sizeof(double) * (size_t) (nops ? nops : 1));
	for (int i = 0; i < nops; i++)
	{
		int			lo = 0,
					hi = nnotices;
		double		lag;

		if (ops[i].seq < 0)
			continue;			/* refused */
		if (ops[i].t0 < 0 || ops[i].seq == 0)
		{
			missed++;
			continue;
		}
		while (lo < hi)			/* high-waters arrive in increasing order */
		{
			int			mid = (lo + hi) / 2;

			if (notices[mid].hw >= ops[i].seq)
				hi = mid;
			else
				lo = mid + 1;
		}
		if (lo == nnotices)
		{
			missed++;
			continue;
		}
		lag = notices[lo].t1 - ops[i].t0;
		if (lag < 0)
		{
			early++;
			lag = 0;
		}
		lags[nsamples++] = lag;
		sum += lag;
	}
	qsort(lags, (size_t) nsamples, sizeof(double), cmp_double);
	if (argc == 7)
	{
		FILE	   *f = fopen(argv[6], "w");

		if (f == NULL)
		{
			perror("seqlag: samples file");
			return 1;
		}
		for (int i = 0; i < nsamples; i++)
			fprintf(f, "%.3f\n", lags[i]);
		fclose(f);
	}
	printf("samples=%d p50_ms=%.3f p99_ms=%.3f max_ms=%.3f mean_ms=%.3f missed=%d "
		   "pushes=%d rejected=%d early=%d notifications=%d\n",
		   nsamples, pct(lags, nsamples, 0.50), pct(lags, nsamples, 0.99),
		   nsamples ? lags[nsamples - 1] : 0.0, nsamples ? sum / nsamples : 0.0,
		   missed, nops, rejected, early, nnotices);
	(void) start;
	PQfinish(L);
	PQfinish(P);
	PQfinish(Q);
	free(lags);
	return 0;
}

/*
 * tests/soak/faultproxy.c: a fault-injecting TCP proxy for the soak test
 * (issue 6).  Clients connect to it on loopback; it forwards each connection
 * to one of its upstreams (gateways) and, per chunk it reads, may hold the
 * chunk back (latency), write it in small pieces (slice), pause that
 * direction (stall) or forward only part of it and then reset both sockets
 * (reset), so the peers see what a bad network does to them.
 *
 *   faultproxy --listen PORT --upstream HOST:PORT [--upstream HOST:PORT]...
 *              [--seed S] [--latency-ms MIN-MAX] [--reset-per-mille N]
 *              [--slice-per-mille N] [--stall-per-mille N]
 *              [--stall-ms MIN-MAX] [--calm] [--verbose]
 *
 * Words used here:
 *   connection  one accepted client socket and its upstream socket;
 *   side        one of the two sockets of a connection (client, upstream);
 *   flow        one direction of a connection: what is read from one side
 *               and written to the other ("up" is client to upstream,
 *               "down" upstream to client).  A flow is a FIFO of chunks;
 *   chunk       the bytes of one read(), with the faults decided for it when
 *               it was read: when it may be written (due), whether it is
 *               written in slices, and how much of it is written before a
 *               reset (cut < len means a reset follows);
 *   pending     the bytes a flow holds; a side is not read while the flow
 *               it feeds holds more than PENDING_MAX, so memory per
 *               connection is bounded;
 *   calm        no faults at all: nothing new is delayed, sliced, stalled or
 *               reset, and what is held is released at once (SIGUSR1, or
 *               --calm at start; SIGUSR2 turns faults on again).
 *
 * One thread, one poll() loop, non-blocking sockets.  Signals only write
 * their number into a self-pipe that the loop reads, so every piece of state
 * is touched by the loop alone.  Random decisions come from one xorshift64*
 * generator seeded by --seed, so a run is replayable as far as timing allows.
 *
 * Closing: when a side reaches end of file, what the other flow still holds
 * for the closed side is dropped (it has no reader), the flow towards the
 * other side is flushed, and then the closed side's socket is closed and the
 * other one shut down for writing (a FIN once the kernel has sent what it
 * holds); that side is then read and its bytes dropped until it closes too,
 * LINGER_MS at most (CONN_LINGER: see conn_end for why).  A side that resets
 * (or a write that fails) ends the connection at once, with SO_LINGER 0 on
 * the other side too, so the reset travels on.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define READ_SIZE 16384			/* bytes per read(), so per chunk at most */
#define READS_PER_WAKEUP 4		/* reads of one side per poll() wakeup */
#define PENDING_MAX (256 * 1024)	/* a flow holding more stops its reads */
#define CONNECT_TIMEOUT_MS 2000
#define MAX_UPSTREAMS 16
#define SLICE_MAX 64			/* slice pieces are 1..SLICE_MAX bytes */
#define SLICE_GAP_MAX_MS 2		/* with 0..SLICE_GAP_MAX_MS ms between */
#define ACCEPT_PAUSE_MS 100		/* after EMFILE/ENFILE */
#define LINGER_MS 10000			/* at most, in CONN_LINGER */
#define RANGE_MAX_MS 3600000		/* one hour: a sane bound for ranges */

enum conn_state
{
	CONN_CONNECTING,			/* client accepted, upstream connect() in progress */
	CONN_OPEN,					/* both sides connected, flows running */
	CONN_LINGER,				/* ended cleanly: a side that did not close is
								 * shut down for writing, and read and dropped
								 * until it closes too (or LINGER_MS pass) */
	CONN_DONE					/* sockets closed; freed at the end of the pass */
};

enum side
{
	SIDE_CLIENT = 0,
	SIDE_UPSTREAM = 1
};

/* One of these per read() that returned data; freed once written. */
struct chunk
{
	struct chunk *next;
	int64_t		due;			/* monotonic ms before which it is not written */
	size_t		len;			/* bytes read */
	size_t		cut;			/* bytes to write: len, or a strict prefix
								 * when a reset follows */
	size_t		off;			/* bytes written so far */
	bool		sliced;
	unsigned char data[];
};

/* One of these per direction of a connection. */
struct flow
{
	struct chunk *head,
			   *tail;
	size_t		pending;		/* sum of len of the chunks held */
	int64_t		stall_until;	/* no write before this (monotonic ms) */
	int64_t		next_write;		/* slicing: the next piece's earliest time */
	bool		blocked;		/* the last write got EAGAIN: wait for POLLOUT */
	bool		eof;			/* its source side reached end of file */
	unsigned long long bytes;	/* bytes written to its destination */
};

/* One of these per accepted client connection. */
struct conn
{
	struct conn *prev,
			   *next;
	unsigned long long id;
	enum conn_state state;
	int			fd[2];			/* by enum side; -1 once closed */
	struct flow flow[2];		/* flow[s] reads fd[s] and writes fd[1 - s] */
	int			first;			/* the upstream round-robin chose */
	int			tries;			/* upstreams tried so far, the current one
								 * included */
	int			up;				/* the upstream being tried or in use */
	int64_t		deadline;		/* connect() timeout, or the end of
								 * CONN_LINGER (monotonic ms) */
	char		peer[64];		/* the client's address, for the log */
};

struct upstream
{
	char		name[300];		/* HOST:PORT as given */
	struct sockaddr_storage addr;
	socklen_t	addrlen;
};

struct range
{
	unsigned	min,
				max;
};

/* The command line. */
static struct
{
	unsigned	port;
	struct upstream up[MAX_UPSTREAMS];
	int			nup;
	uint64_t	seed;
	struct range latency;
	unsigned	reset_pm,
				slice_pm,
				stall_pm;
	struct range stall;
	bool		calm;
	bool		verbose;
}			opt;

/* What the stats line reports. */
static struct
{
	unsigned long long connections,
				failovers,
				resets,
				slices,
				stalls,
				delayed,
				bytes[2];		/* by flow: [0] up, [1] down */
}			st;

static const char *const side_name[2] = {"client", "upstream"};

static struct conn *conns;		/* all connections, newest first */
static size_t nconns;			/* how many are in conns */
static unsigned long long next_id = 1;
static unsigned rr;				/* the next connection's first upstream */
static bool calm;
static uint64_t rng_state;
static int sig_pipe[2] = {-1, -1};
static int listen_fd = -1;
static int64_t accept_resume;	/* accepting paused until then (EMFILE) */

static void
usage(FILE *to)
{
	fprintf(to,
			"usage: faultproxy --listen PORT --upstream HOST:PORT [--upstream HOST:PORT]...\n"
			"                  [--seed S] [--latency-ms MIN-MAX] [--reset-per-mille N]\n"
			"                  [--slice-per-mille N] [--stall-per-mille N]\n"
			"                  [--stall-ms MIN-MAX] [--calm] [--verbose]\n"
			"\n"
			"Listens on 127.0.0.1:PORT and forwards each connection to the next upstream\n"
			"in turn (the following ones if connecting fails), injecting faults per chunk\n"
			"read.  Defaults: latency 0-0 ms, every per-mille 0 (a plain proxy),\n"
			"stall-ms 100-1000, seed 1.  SIGUSR1: calm (no faults), SIGUSR2: faults on,\n"
			"SIGHUP: print the stats line, SIGTERM/SIGINT: print it and exit 0.\n");
}

static void
die_usage(const char *fmt, const char *arg)
{
	fprintf(stderr, "faultproxy: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n");
	usage(stderr);
	exit(2);
}

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* xorshift64*: never returns the same state twice in a row; state != 0. */
static uint64_t
rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * UINT64_C(2685821657736338717);
}

/* A uniform draw in r (both ends included). */
static unsigned
rng_range(struct range r)
{
	return r.min + (unsigned) (rng() % ((uint64_t) r.max - r.min + 1));
}

/* True with probability pm / 1000; always draws, so the sequence of draws
 * does not depend on the settings' outcomes. */
static bool
rng_permille(unsigned pm)
{
	return rng() % 1000 < pm;
}

/*
 * Parses a whole decimal number no greater than max into *out.  Returns false
 * (and leaves *out alone) on anything else: sign, junk, empty, overflow.
 */
static bool
parse_uint(const char *s, unsigned long long max, unsigned long long *out)
{
	char	   *end;
	unsigned long long v;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v > max)
		return false;
	*out = v;
	return true;
}

/* "MIN-MAX" or "N" (meaning N-N), in milliseconds; exits 2 if malformed. */
static struct range
parse_range(const char *what, const char *s)
{
	char		buf[64];
	char	   *dash;
	unsigned long long lo,
				hi;
	struct range r;

	if (strlen(s) >= sizeof buf)
		die_usage("bad range for %s (want MIN-MAX milliseconds)", what);
	strcpy(buf, s);
	dash = strchr(buf, '-');
	if (dash)
		*dash = '\0';
	if (!parse_uint(buf, RANGE_MAX_MS, &lo) ||
		!parse_uint(dash ? dash + 1 : buf, RANGE_MAX_MS, &hi) || lo > hi)
		die_usage("bad range for %s (want MIN-MAX milliseconds, MIN <= MAX <= 3600000)", what);
	r.min = (unsigned) lo;
	r.max = (unsigned) hi;
	return r;
}

static unsigned
parse_permille(const char *what, const char *s)
{
	unsigned long long v;

	if (!parse_uint(s, 1000, &v))
		die_usage("bad value for %s (want 0..1000)", what);
	return (unsigned) v;
}

/*
 * HOST:PORT or [HOST]:PORT, resolved once, now, to its first address (IPv4
 * if it has one); exits 2 if it cannot be.
 */
static void
parse_upstream(const char *s)
{
	struct upstream *u;
	char		host[256];
	const char *colon = strrchr(s, ':');
	const char *h = s;
	size_t		hlen;
	unsigned long long port;
	struct addrinfo hints,
			   *res;
	int			rc;

	if (opt.nup == MAX_UPSTREAMS)
		die_usage("too many upstreams (at most 16)%s", "");
	if (!colon || !parse_uint(colon + 1, 65535, &port) || port == 0)
		die_usage("bad upstream %s (want HOST:PORT)", s);
	hlen = (size_t) (colon - s);
	if (hlen >= 2 && s[0] == '[' && s[hlen - 1] == ']')
	{
		h = s + 1;
		hlen -= 2;
	}
	if (hlen == 0 || hlen >= sizeof host || strlen(s) >= sizeof u->name)
		die_usage("bad upstream %s (want HOST:PORT)", s);
	memcpy(host, h, hlen);
	host[hlen] = '\0';

	/* IPv4 first: "localhost" must not become ::1 when gateways listen on
	 * 127.0.0.1; an IPv6 literal still resolves on the second try. */
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_INET;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(host, colon + 1, &hints, &res);
	if (rc != 0)
	{
		hints.ai_family = AF_UNSPEC;
		rc = getaddrinfo(host, colon + 1, &hints, &res);
	}
	if (rc != 0)
	{
		fprintf(stderr, "faultproxy: cannot resolve upstream %s: %s\n", s, gai_strerror(rc));
		usage(stderr);
		exit(2);
	}
	u = &opt.up[opt.nup++];
	snprintf(u->name, sizeof u->name, "%s", s);
	memcpy(&u->addr, res->ai_addr, res->ai_addrlen);
	u->addrlen = res->ai_addrlen;
	freeaddrinfo(res);
}

static void
parse_args(int argc, char **argv)
{
	enum
	{
		O_LISTEN = 1, O_UPSTREAM, O_SEED, O_LATENCY, O_RESET, O_SLICE,
		O_STALL, O_STALL_MS, O_CALM, O_VERBOSE, O_HELP
	};
	static const struct option longopts[] = {
		{"listen", required_argument, NULL, O_LISTEN},
		{"upstream", required_argument, NULL, O_UPSTREAM},
		{"seed", required_argument, NULL, O_SEED},
		{"latency-ms", required_argument, NULL, O_LATENCY},
		{"reset-per-mille", required_argument, NULL, O_RESET},
		{"slice-per-mille", required_argument, NULL, O_SLICE},
		{"stall-per-mille", required_argument, NULL, O_STALL},
		{"stall-ms", required_argument, NULL, O_STALL_MS},
		{"calm", no_argument, NULL, O_CALM},
		{"verbose", no_argument, NULL, O_VERBOSE},
		{"help", no_argument, NULL, O_HELP},
		{NULL, 0, NULL, 0}
	};
	bool		have_listen = false;
	unsigned long long v;
	int			c;

	opt.seed = 1;
	opt.stall.min = 100;
	opt.stall.max = 1000;
	opterr = 0;
	while ((c = getopt_long_only(argc, argv, ":", longopts, NULL)) != -1)
	{
		switch (c)
		{
			case O_LISTEN:
				{
					const char *p = optarg;

					if (strncmp(p, "127.0.0.1:", 10) == 0)
						p += 10;
					if (!parse_uint(p, 65535, &v))
						die_usage("bad --listen %s (want PORT)", optarg);
					opt.port = (unsigned) v;
					have_listen = true;
					break;
				}
			case O_UPSTREAM:
				parse_upstream(optarg);
				break;
			case O_SEED:
				if (!parse_uint(optarg, UINT64_MAX, &v))
					die_usage("bad --seed %s (want a number)", optarg);
				opt.seed = v;
				break;
			case O_LATENCY:
				opt.latency = parse_range("--latency-ms", optarg);
				break;
			case O_RESET:
				opt.reset_pm = parse_permille("--reset-per-mille", optarg);
				break;
			case O_SLICE:
				opt.slice_pm = parse_permille("--slice-per-mille", optarg);
				break;
			case O_STALL:
				opt.stall_pm = parse_permille("--stall-per-mille", optarg);
				break;
			case O_STALL_MS:
				opt.stall = parse_range("--stall-ms", optarg);
				break;
			case O_CALM:
				opt.calm = true;
				break;
			case O_VERBOSE:
				opt.verbose = true;
				break;
			case O_HELP:
				usage(stdout);
				exit(0);
			case ':':
				die_usage("%s needs a value", argv[optind - 1]);
				break;
			default:
				die_usage("unknown option %s", argv[optind - 1]);
		}
	}
	if (optind < argc)
		die_usage("unexpected argument %s", argv[optind]);
	if (!have_listen)
		die_usage("--listen PORT is required%s", "");
	if (opt.nup == 0)
		die_usage("at least one --upstream HOST:PORT is required%s", "");
}

static void
print_stats(void)
{
	fprintf(stderr,
			"faultproxy: connections=%llu failovers=%llu resets=%llu slices=%llu "
			"stalls=%llu delayed=%llu bytes_up=%llu bytes_down=%llu\n",
			st.connections, st.failovers, st.resets, st.slices, st.stalls,
			st.delayed, st.bytes[0], st.bytes[1]);
}

static void
on_signal(int sig)
{
	int			saved = errno;
	unsigned char b = (unsigned char) sig;

	/* A full pipe drops the signal: hundreds are already queued. */
	if (write(sig_pipe[1], &b, 1) < 0)
		(void) 0;
	errno = saved;
}

static void
set_nodelay(int fd)
{
	int			one = 1;

	/* Small writes must leave as small segments for slicing to mean much. */
	(void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* Frees every chunk of f; f is empty afterwards. */
static void
flow_clear(struct flow *f)
{
	struct chunk *ch = f->head;

	while (ch)
	{
		struct chunk *next = ch->next;

		free(ch);
		ch = next;
	}
	f->head = f->tail = NULL;
	f->pending = 0;
	f->blocked = false;
}

/*
 * Reads and drops what fd has received and not been read (a bounded number
 * of reads).  Returns false once fd has reached end of file or failed.
 */
static bool
drain(int fd)
{
	unsigned char buf[READ_SIZE];
	int			i;

	for (i = 0; i < 1024; i++)
	{
		ssize_t		n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);

		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
			return false;
		if (n < 0 && errno != EINTR)
			break;
	}
	return true;
}

/* Closes side s of c (draining it first), if open. */
static void
side_close(struct conn *c, int s)
{
	if (c->fd[s] < 0)
		return;
	drain(c->fd[s]);
	close(c->fd[s]);
	c->fd[s] = -1;
}

/*
 * Ends connection c and frees what its flows held.  With reset, closes both
 * sockets at once with SO_LINGER 0 (an RST) and c is CONN_DONE.  Otherwise a
 * side that has closed is closed, and a side that has not is shut down for
 * writing (a FIN after what its send buffer holds) and c is CONN_LINGER: that
 * side is read and dropped until it closes, so that bytes it still sends do
 * not make the kernel reset it (Linux answers bytes arriving on a closed
 * socket, or left unread at close(), with an RST and drops what the send
 * buffer held: the peer would lose the last bytes forwarded to it).  c stays
 * in the list until the end of the loop's pass that finds it CONN_DONE.
 * Cannot fail.
 */
static void
conn_end(struct conn *c, bool reset, const char *why)
{
	struct linger lg = {1, 0};
	int			s;

	if (c->state == CONN_DONE || c->state == CONN_LINGER)
		return;
	for (s = 0; s < 2; s++)
	{
		flow_clear(&c->flow[s]);
		if (c->fd[s] < 0)
			continue;
		if (reset)
		{
			(void) setsockopt(c->fd[s], SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
			close(c->fd[s]);
			c->fd[s] = -1;
		}
		else if (c->flow[s].eof || (s == SIDE_UPSTREAM && c->state == CONN_CONNECTING))
			side_close(c, s);
		else
			(void) shutdown(c->fd[s], SHUT_WR);
	}
	if (opt.verbose)
		fprintf(stderr, "faultproxy: conn %llu close (%s%s) up=%llu down=%llu\n",
				c->id, why, reset ? ", reset" : "",
				c->flow[0].bytes, c->flow[1].bytes);
	if (c->fd[0] >= 0 || c->fd[1] >= 0)
	{
		c->state = CONN_LINGER;
		c->deadline = now_ms() + LINGER_MS;
	}
	else
		c->state = CONN_DONE;
}

/* A lingering side s is readable: drop what it sent; close it at its end. */
static void
linger_read(struct conn *c, int s)
{
	if (c->fd[s] >= 0 && !drain(c->fd[s]))
	{
		close(c->fd[s]);
		c->fd[s] = -1;
	}
	if (c->fd[0] < 0 && c->fd[1] < 0)
		c->state = CONN_DONE;
}

/*
 * Starts connecting c to the next upstream it has not tried.  An upstream
 * that refuses at once counts as a failover and the next one is tried; with
 * none left the client is closed.  Cannot fail otherwise.
 */
static void
conn_connect_next(struct conn *c, int64_t now)
{
	while (c->tries < opt.nup)
	{
		struct upstream *u;
		int			fd;

		c->up = (c->first + c->tries) % opt.nup;
		c->tries++;
		u = &opt.up[c->up];
		fd = socket(u->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
		{
			/* Out of descriptors: no upstream will do better. */
			if (opt.verbose)
				fprintf(stderr, "faultproxy: conn %llu socket: %s\n", c->id, strerror(errno));
			break;
		}
		set_nodelay(fd);
		if (connect(fd, (struct sockaddr *) &u->addr, u->addrlen) == 0 || errno == EINPROGRESS)
		{
			c->fd[SIDE_UPSTREAM] = fd;
			c->state = CONN_CONNECTING;
			c->deadline = now + CONNECT_TIMEOUT_MS;
			return;
		}
		if (opt.verbose)
			fprintf(stderr, "faultproxy: conn %llu upstream %s: %s\n", c->id, u->name, strerror(errno));
		close(fd);
		st.failovers++;
	}
	conn_end(c, false, "no upstream");
}

/* The connect() in progress failed (err) or timed out: try the next one. */
static void
conn_connect_failed(struct conn *c, const char *err, int64_t now)
{
	if (opt.verbose)
		fprintf(stderr, "faultproxy: conn %llu upstream %s: %s\n",
				c->id, opt.up[c->up].name, err);
	close(c->fd[SIDE_UPSTREAM]);
	c->fd[SIDE_UPSTREAM] = -1;
	st.failovers++;
	conn_connect_next(c, now);
}

static void
conn_connected(struct conn *c)
{
	c->state = CONN_OPEN;
	if (opt.verbose)
		fprintf(stderr, "faultproxy: conn %llu open %s -> %s\n",
				c->id, c->peer, opt.up[c->up].name);
}

/*
 * Writes to fd[1 - s] what flow s may write now.  Ends the connection when a
 * write fails, when a reset fault's prefix is written, and when the flow is
 * empty after its source's end of file.  Returns false when it ended it.
 */
static bool
flow_flush(struct conn *c, int s, int64_t now)
{
	struct flow *f = &c->flow[s];
	int			dst = c->fd[1 - s];

	f->blocked = false;
	while (f->head)
	{
		struct chunk *ch = f->head;
		size_t		want;

		if (!calm && (now < f->stall_until || now < ch->due ||
					  (ch->sliced && now < f->next_write)))
			return true;
		want = ch->cut - ch->off;
		if (want > 0)
		{
			ssize_t		n;

			if (ch->sliced && !calm)
			{
				size_t		piece = 1 + (size_t) (rng() % SLICE_MAX);

				if (piece < want)
					want = piece;
			}
			n = send(dst, ch->data + ch->off, want, MSG_NOSIGNAL);
			if (n < 0)
			{
				char		why[128];

				if (errno == EINTR)
					continue;
				if (errno == EAGAIN || errno == EWOULDBLOCK)
				{
					f->blocked = true;
					return true;
				}
				snprintf(why, sizeof why, "write to %s: %s", side_name[1 - s], strerror(errno));
				conn_end(c, true, why);
				return false;
			}
			ch->off += (size_t) n;
			f->bytes += (size_t) n;
			st.bytes[s] += (size_t) n;
			if (ch->sliced && !calm)
				f->next_write = now + (int64_t) (rng() % (SLICE_GAP_MAX_MS + 1));
			if (ch->off < ch->cut)
				continue;
		}
		if (ch->cut < ch->len)
		{
			st.resets++;
			conn_end(c, true, "fault");
			return false;
		}
		f->head = ch->next;
		if (!f->head)
			f->tail = NULL;
		f->pending -= ch->len;
		free(ch);
	}
	if (f->eof)
	{
		char		why[64];

		snprintf(why, sizeof why, "%s closed", side_name[s]);
		conn_end(c, false, why);
		return false;
	}
	return true;
}

/*
 * Side s reached end of file: stop reading it, drop what the other flow held
 * for it, and flush flow s before closing.  Returns false when the connection
 * ended.
 */
static bool
side_eof(struct conn *c, int s, int64_t now)
{
	c->flow[s].eof = true;
	flow_clear(&c->flow[1 - s]);
	return flow_flush(c, s, now);
}

/* Queues the n bytes just read from side s, deciding their faults. */
static bool
flow_push(struct flow *f, const unsigned char *buf, size_t n, int64_t now)
{
	struct chunk *ch = malloc(sizeof *ch + n);

	if (!ch)
		return false;
	memcpy(ch->data, buf, n);
	ch->next = NULL;
	ch->len = ch->cut = n;
	ch->off = 0;
	ch->due = now;
	ch->sliced = false;
	if (!calm)
	{
		bool		reset = rng_permille(opt.reset_pm);
		bool		stall = rng_permille(opt.stall_pm);
		bool		slice = rng_permille(opt.slice_pm);
		unsigned	delay = rng_range(opt.latency);

		if (reset)
			ch->cut = (size_t) (rng() % n);
		if (stall)
		{
			int64_t		until = now + rng_range(opt.stall);

			if (until > f->stall_until)
				f->stall_until = until;
			st.stalls++;
		}
		if (slice)
		{
			ch->sliced = true;
			st.slices++;
		}
		if (delay > 0)
		{
			ch->due = now + delay;
			st.delayed++;
		}
	}
	if (f->tail)
		f->tail->next = ch;
	else
		f->head = ch;
	f->tail = ch;
	f->pending += n;
	return true;
}

/*
 * Reads side s (a few times at most, while its flow has room) and forwards.
 * Returns false when the connection ended.
 */
static bool
side_read(struct conn *c, int s, int64_t now)
{
	unsigned char buf[READ_SIZE];
	struct flow *f = &c->flow[s];
	int			i;

	for (i = 0; i < READS_PER_WAKEUP && f->pending < PENDING_MAX; i++)
	{
		ssize_t		n = recv(c->fd[s], buf, sizeof buf, 0);

		if (n < 0)
		{
			char		why[128];

			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			snprintf(why, sizeof why, "read from %s: %s", side_name[s], strerror(errno));
			conn_end(c, true, why);
			return false;
		}
		if (n == 0)
			return side_eof(c, s, now);
		if (!flow_push(f, buf, (size_t) n, now))
		{
			conn_end(c, true, "out of memory");
			return false;
		}
	}
	return f->blocked ? true : flow_flush(c, s, now);
}

/*
 * Accepts what is waiting on the listening socket.  On EMFILE/ENFILE,
 * accepting pauses ACCEPT_PAUSE_MS (the backlog keeps the clients).
 */
static void
accept_clients(int64_t now)
{
	int			i;

	for (i = 0; i < 64; i++)
	{
		struct sockaddr_storage sa;
		socklen_t	salen = sizeof sa;
		int			fd = accept4(listen_fd, (struct sockaddr *) &sa, &salen,
								 SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct conn *c;

		if (fd < 0)
		{
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
			{
				fprintf(stderr, "faultproxy: accept: %s (pausing)\n", strerror(errno));
				accept_resume = now + ACCEPT_PAUSE_MS;
			}
			return;				/* EAGAIN, or a client gone before accept */
		}
		c = calloc(1, sizeof *c);
		if (!c)
		{
			close(fd);
			accept_resume = now + ACCEPT_PAUSE_MS;
			return;
		}
		set_nodelay(fd);
		c->id = next_id++;
		c->fd[SIDE_CLIENT] = fd;
		c->fd[SIDE_UPSTREAM] = -1;
		if (sa.ss_family == AF_INET)
		{
			struct sockaddr_in *in = (struct sockaddr_in *) &sa;
			char		a[INET_ADDRSTRLEN];

			inet_ntop(AF_INET, &in->sin_addr, a, sizeof a);
			snprintf(c->peer, sizeof c->peer, "%s:%u", a, ntohs(in->sin_port));
		}
		else
			snprintf(c->peer, sizeof c->peer, "?");
		c->first = (int) (rr++ % (unsigned) opt.nup);
		c->next = conns;
		if (conns)
			conns->prev = c;
		conns = c;
		nconns++;
		st.connections++;
		conn_connect_next(c, now);
	}
}

/* Runs c's timers: the connect timeout, and writes that became due. */
static void
conn_service(struct conn *c, int64_t now)
{
	int			s;

	if (c->state == CONN_CONNECTING && now >= c->deadline)
		conn_connect_failed(c, "timed out", now);
	if (c->state == CONN_LINGER && now >= c->deadline)
	{
		side_close(c, SIDE_CLIENT);
		side_close(c, SIDE_UPSTREAM);
		c->state = CONN_DONE;
	}
	for (s = 0; s < 2 && c->state == CONN_OPEN; s++)
		if (c->flow[s].head && !c->flow[s].blocked)
			flow_flush(c, s, now);
}

/* The earliest time c needs the loop to wake without an event, or INT64_MAX. */
static int64_t
conn_wakeup(const struct conn *c)
{
	int64_t		t = INT64_MAX;
	int			s;

	if (c->state == CONN_CONNECTING || c->state == CONN_LINGER)
		return c->deadline;
	if (c->state != CONN_OPEN)
		return t;
	for (s = 0; s < 2; s++)
	{
		const struct flow *f = &c->flow[s];
		int64_t		w;

		if (!f->head || f->blocked)
			continue;
		w = f->head->due;
		if (f->stall_until > w)
			w = f->stall_until;
		if (f->head->sliced && f->next_write > w)
			w = f->next_write;
		if (calm)
			w = 0;
		if (w < t)
			t = w;
	}
	return t;
}

/* Poll events for side s of an open connection. */
static short
side_events(const struct conn *c, int s)
{
	short		ev = 0;

	if (c->flow[s].eof)
		return -1;				/* closed: not polled at all */
	if (!c->flow[1 - s].eof && c->flow[s].pending < PENDING_MAX)
		ev |= POLLIN;
	if (c->flow[1 - s].blocked)
		ev |= POLLOUT;
	return ev;
}

/* SIGUSR1: calm now, and release what is held (delays, stalls, cuts). */
static void
calm_down(void)
{
	struct conn *c;

	calm = true;
	for (c = conns; c; c = c->next)
	{
		int			s;

		for (s = 0; s < 2; s++)
		{
			struct chunk *ch;

			c->flow[s].stall_until = 0;
			c->flow[s].next_write = 0;
			for (ch = c->flow[s].head; ch; ch = ch->next)
			{
				ch->due = 0;
				ch->cut = ch->len;
				ch->sliced = false;
			}
		}
	}
}

static void
shutdown_all(void)
{
	while (conns)
	{
		struct conn *c = conns;

		conns = c->next;
		conn_end(c, false, "proxy exiting");
		side_close(c, SIDE_CLIENT);
		side_close(c, SIDE_UPSTREAM);
		free(c);
	}
	close(listen_fd);
	close(sig_pipe[0]);
	close(sig_pipe[1]);
}

/* Reads the self-pipe; returns true when the proxy must exit. */
static bool
handle_signals(void)
{
	unsigned char sigs[64];
	ssize_t		n;
	bool		quit = false;

	while ((n = read(sig_pipe[0], sigs, sizeof sigs)) > 0)
	{
		ssize_t		i;

		for (i = 0; i < n; i++)
		{
			switch (sigs[i])
			{
				case SIGUSR1:
					calm_down();
					if (opt.verbose)
						fprintf(stderr, "faultproxy: calm\n");
					break;
				case SIGUSR2:
					calm = false;
					if (opt.verbose)
						fprintf(stderr, "faultproxy: faults on\n");
					break;
				case SIGHUP:
					print_stats();
					break;
				default:
					quit = true;
			}
		}
	}
	return quit;
}

static void
setup(void)
{
	struct sockaddr_in sin;
	socklen_t	len = sizeof sin;
	struct sigaction sa;
	struct rlimit rl;
	int			one = 1;
	const int	sigs[] = {SIGUSR1, SIGUSR2, SIGHUP, SIGTERM, SIGINT};
	size_t		i;

	/* As many connections as the hard limit allows. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max)
	{
		rl.rlim_cur = rl.rlim_max;
		(void) setrlimit(RLIMIT_NOFILE, &rl);
	}

	if (pipe2(sig_pipe, O_NONBLOCK | O_CLOEXEC) < 0)
	{
		fprintf(stderr, "faultproxy: pipe: %s\n", strerror(errno));
		exit(1);
	}
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	for (i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
		sigaction(sigs[i], &sa, NULL);

	listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t) opt.port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (listen_fd < 0 ||
		setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
		bind(listen_fd, (struct sockaddr *) &sin, sizeof sin) < 0 ||
		listen(listen_fd, SOMAXCONN) < 0 ||
		getsockname(listen_fd, (struct sockaddr *) &sin, &len) < 0)
	{
		fprintf(stderr, "faultproxy: cannot listen on 127.0.0.1:%u: %s\n", opt.port, strerror(errno));
		exit(1);
	}
	fprintf(stderr, "faultproxy: listening on 127.0.0.1:%u\n", ntohs(sin.sin_port));
}

int
main(int argc, char **argv)
{
	struct pollfd *pfd = NULL;
	struct conn **pconn = NULL;	/* pconn[i]: the connection of pfd[i] */
	size_t		cap = 0;

	parse_args(argc, argv);
	rng_state = opt.seed ? opt.seed : UINT64_C(0x9e3779b97f4a7c15);
	calm = opt.calm;
	setvbuf(stderr, NULL, _IOLBF, 0);
	setup();

	for (;;)
	{
		int64_t		now = now_ms();
		int64_t		wake = INT64_MAX;
		struct conn *c,
				   *next;
		size_t		n = 0,
					i;
		int			timeout;

		/* Timers, then forget what ended; then what to wait for. */
		for (c = conns; c; c = c->next)
			conn_service(c, now);
		for (c = conns; c; c = next)
		{
			next = c->next;
			if (c->state != CONN_DONE)
				continue;
			if (c->prev)
				c->prev->next = c->next;
			else
				conns = c->next;
			if (c->next)
				c->next->prev = c->prev;
			nconns--;
			free(c);
		}

		if (cap < 2 + 2 * nconns)
		{
			size_t		want = 2 + 2 * nconns + 128;

			pfd = realloc(pfd, want * sizeof *pfd);
			pconn = realloc(pconn, want * sizeof *pconn);
			if (!pfd || !pconn)
			{
				fprintf(stderr, "faultproxy: out of memory\n");
				exit(1);
			}
			cap = want;
		}
		pfd[n].fd = sig_pipe[0];
		pfd[n].events = POLLIN;
		pconn[n++] = NULL;
		pfd[n].fd = now >= accept_resume ? listen_fd : -1;
		pfd[n].events = POLLIN;
		pconn[n++] = NULL;
		if (accept_resume > now)
			wake = accept_resume;
		for (c = conns; c; c = c->next)
		{
			int64_t		w = conn_wakeup(c);
			int			s;

			if (w < wake)
				wake = w;
			for (s = 0; s < 2; s++)
			{
				pfd[n].fd = c->fd[s];
				pconn[n] = c;
				if (c->state == CONN_CONNECTING)
					pfd[n].events = s == SIDE_UPSTREAM ? POLLOUT : 0;
				else if (c->state == CONN_LINGER)
					pfd[n].events = POLLIN;
				else
				{
					short		ev = side_events(c, s);

					if (ev < 0)
						pfd[n].fd = -1;
					pfd[n].events = ev < 0 ? 0 : ev;
				}
				pfd[n].revents = 0;
				n++;
			}
		}
		if (wake == INT64_MAX)
			timeout = -1;
		else if (wake <= now)
			timeout = 0;
		else
			timeout = wake - now > 60000 ? 60000 : (int) (wake - now);

		if (poll(pfd, n, timeout) < 0 && errno != EINTR)
		{
			fprintf(stderr, "faultproxy: poll: %s\n", strerror(errno));
			exit(1);
		}
		now = now_ms();

		if (pfd[0].revents && handle_signals())
		{
			print_stats();
			shutdown_all();
			free(pfd);
			free(pconn);
			return 0;
		}
		if (pfd[1].revents)
			accept_clients(now);

		/* pfd[i] and pfd[i + 1] are one connection's client and upstream. */
		for (i = 2; i < n; i += 2)
		{
			short		rc = pfd[i].revents,
						ru = pfd[i + 1].revents;
			int			s;

			c = pconn[i];
			if (c->state == CONN_CONNECTING)
			{
				if (rc & (POLLERR | POLLHUP))
					conn_end(c, true, "client gone while connecting");
				else if (ru)
				{
					int			err = 0;
					socklen_t	elen = sizeof err;

					if (getsockopt(c->fd[SIDE_UPSTREAM], SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
						err = errno;
					if (err)
						conn_connect_failed(c, strerror(err), now);
					else
						conn_connected(c);
				}
				continue;
			}
			if (c->state == CONN_LINGER)
			{
				for (s = 0; s < 2; s++)
					if (pfd[i + s].revents)
						linger_read(c, s);
				continue;
			}
			for (s = 0; s < 2 && c->state == CONN_OPEN; s++)
			{
				short		r = s == SIDE_CLIENT ? rc : ru;
				short		asked = pfd[i + s].events;

				if (!r)
					continue;
				if (r & (POLLIN | POLLERR | POLLHUP) && asked & POLLIN)
				{
					if (!side_read(c, s, now))
						break;
				}
				else if (r & (POLLERR | POLLHUP))
				{
					/* Hung up while not read: a reset, or nothing to write to. */
					char		why[64];

					snprintf(why, sizeof why, "%s hung up", side_name[s]);
					conn_end(c, true, why);
					break;
				}
				if (r & POLLOUT && c->state == CONN_OPEN)
					flow_flush(c, 1 - s, now);
			}
		}
	}
}

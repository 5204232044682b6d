/*
 * tests/soak/proxytest.c: the echo server and the test clients of
 * tests/suites/17-faultproxy.sh, which checks tests/soak/faultproxy.c.
 * Plain sockets on loopback, one poll() loop per mode, every wait bounded.
 *
 *   proxytest echo PORT
 *       An echo server on 127.0.0.1:PORT for any number of connections
 *       (a 64 KiB buffer each: it stops reading a connection whose echo
 *       cannot be written).  Prints "echo: listening on 127.0.0.1:PORT",
 *       then "echo: accepted N" for each connection, to stderr.  SIGTERM or
 *       SIGINT: prints "echo: connections=N bytes=N" and exits 0.
 *
 *   proxytest send PORT BYTES [CONNS [SEED]]
 *       CONNS connections (default 1) at once, each sending BYTES of
 *       pseudo-random data (a stream seeded by SEED + its number; SEED
 *       defaults to 1) while reading the echo back, and checking every byte
 *       read against the stream.  One line per connection:
 *         conn=I result=R sent=N received=N sum_sent=X sum_received=X reads=N
 *       R is ok (all BYTES came back intact), corrupt (a byte differed),
 *       reset (ECONNRESET or EPIPE), eof (closed early), error (another
 *       errno, or connect failed) or timeout (60 s); the sums are 64-bit
 *       FNV-1a of what was sent and what was read; reads counts the recv()
 *       calls that returned data.  Exit 0 only if every
 *       connection is ok.
 *
 *   proxytest rtt PORT COUNT [SIG PID MS]
 *       One connection; COUNT times, sends 100 bytes and waits (30 s at most)
 *       for their echo, printing "rtt_ms=N".  With SIG (USR1, USR2, HUP) PID
 *       MS, the first time it also sends SIG to PID MS ms after sending.
 *       Exit 0 if every echo came back intact.
 *
 *   proxytest flood PORT MAXBYTES SECS [PID]
 *       One connection with 64 KiB socket buffers that sends up to MAXBYTES
 *       for SECS seconds and never reads, then waits 500 ms and prints
 *       "flood: sent=N rss_before_kb=N rss_after_kb=N", PID's VmRSS read
 *       before connecting and at the end (0 without PID).  Exit 0.
 *
 *   proxytest source PORT BYTES / sink PORT BYTES
 *       A server that sends BYTES to each connection, then FIN, and never
 *       reads; a client that first sends until sending stays blocked, then
 *       reads BYTES slowly, still sending a little, and expects a clean end
 *       of file.  See run_source and
 *       run_sink.
 *
 *   proxytest blackhole PORT
 *       A listener whose accept queue is full: connecting to it hangs.
 *
 * Exit status 2 on bad arguments.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ECHO_BUF 65536
#define IO_BUF 65536
#define SEND_TIMEOUT_MS 60000
#define RTT_TIMEOUT_MS 30000
#define RTT_SIZE 100

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
usage(void)
{
	fprintf(stderr,
			"usage: proxytest echo PORT\n"
			"       proxytest send PORT BYTES [CONNS [SEED]]\n"
			"       proxytest rtt PORT COUNT [SIG PID MS]\n"
			"       proxytest flood PORT MAXBYTES SECS [PID]\n"
			"       proxytest source PORT BYTES\n"
			"       proxytest sink PORT BYTES\n"
			"       proxytest blackhole PORT\n");
	exit(2);
}

static unsigned long long
num(const char *s)
{
	char	   *end;
	unsigned long long v;

	if (*s < '0' || *s > '9')
		usage();
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end)
		usage();
	return v;
}

/* The pseudo-random byte stream: xorshift64*, eight bytes per step. */
struct gen
{
	uint64_t	state;
	unsigned char cache[8];
	int			left;
};

static void
gen_init(struct gen *g, uint64_t seed)
{
	g->state = seed * UINT64_C(0x9e3779b97f4a7c15) + 1;
	g->left = 0;
}

static void
gen_fill(struct gen *g, unsigned char *buf, size_t n)
{
	while (n--)
	{
		if (g->left == 0)
		{
			uint64_t	x;

			g->state ^= g->state >> 12;
			g->state ^= g->state << 25;
			g->state ^= g->state >> 27;
			x = g->state * UINT64_C(2685821657736338717);
			memcpy(g->cache, &x, 8);
			g->left = 8;
		}
		*buf++ = g->cache[8 - g->left--];
	}
}

static uint64_t
fnv(uint64_t h, const unsigned char *p, size_t n)
{
	while (n--)
	{
		h ^= *p++;
		h *= UINT64_C(0x100000001b3);
	}
	return h;
}

#define FNV_INIT UINT64_C(0xcbf29ce484222325)

/* A connected (blocking) socket to 127.0.0.1:port, or -1 (errno set). */
static int
connect_to(unsigned port, int bufsize)
{
	struct sockaddr_in sin;
	int			fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	if (bufsize > 0)
	{
		(void) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bufsize, sizeof bufsize);
		(void) setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof bufsize);
	}
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t) port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *) &sin, sizeof sin) < 0)
	{
		int			e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* ---- echo ---- */

static volatile sig_atomic_t echo_quit;

static void
echo_on_signal(int sig)
{
	(void) sig;
	echo_quit = 1;
}

/* One of these per echo connection. */
struct echo_conn
{
	int			fd;				/* -1 once closed */
	bool		eof;
	size_t		len;			/* bytes in buf, not yet written back */
	unsigned char buf[ECHO_BUF];
};

static int
run_echo(unsigned port)
{
	struct sockaddr_in sin;
	socklen_t	slen = sizeof sin;
	struct sigaction sa;
	int			one = 1;
	int			lfd;
	struct echo_conn **cs = NULL;
	size_t		ncs = 0,
				npolled,
				i;
	unsigned long long accepted = 0,
				bytes = 0;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = echo_on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	setvbuf(stderr, NULL, _IOLBF, 0);

	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t) port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
		bind(lfd, (struct sockaddr *) &sin, sizeof sin) < 0 || listen(lfd, 128) < 0 ||
		getsockname(lfd, (struct sockaddr *) &sin, &slen) < 0)
	{
		fprintf(stderr, "echo: cannot listen on 127.0.0.1:%u: %s\n", port, strerror(errno));
		return 1;
	}
	fprintf(stderr, "echo: listening on 127.0.0.1:%u\n", ntohs(sin.sin_port));

	while (!echo_quit)
	{
		struct pollfd *p = calloc(ncs + 1, sizeof *p);

		if (!p)
			abort();
		p[0].fd = lfd;
		p[0].events = POLLIN;
		for (i = 0; i < ncs; i++)
		{
			struct echo_conn *c = cs[i];

			p[i + 1].fd = c->fd;
			p[i + 1].events = (c->len ? POLLOUT : 0) |
				(!c->eof && c->len < ECHO_BUF ? POLLIN : 0);
		}
		if (poll(p, ncs + 1, 1000) < 0 && errno != EINTR)
			abort();
		npolled = ncs;			/* a connection accepted now is polled next time */
		if (p[0].revents & POLLIN)
		{
			int			fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

			if (fd >= 0)
			{
				struct echo_conn *c = calloc(1, sizeof *c);
				struct echo_conn **ncs_arr = realloc(cs, (ncs + 1) * sizeof *cs);

				if (!c || !ncs_arr)
					abort();
				cs = ncs_arr;
				c->fd = fd;
				cs[ncs++] = c;
				fprintf(stderr, "echo: accepted %llu\n", ++accepted);
			}
		}
		for (i = 0; i < npolled; i++)
		{
			struct echo_conn *c = cs[i];
			short		r = p[i + 1].revents;

			if (r & (POLLIN | POLLERR | POLLHUP) && p[i + 1].events & POLLIN)
			{
				ssize_t		n = recv(c->fd, c->buf + c->len, ECHO_BUF - c->len, 0);

				if (n > 0)
					c->len += (size_t) n;
				else if (n == 0)
					c->eof = true;
				else if (errno != EAGAIN && errno != EINTR)
				{
					close(c->fd);
					c->fd = -1;
					continue;
				}
			}
			else if (r & (POLLERR | POLLHUP) && !(r & POLLOUT))
			{
				close(c->fd);
				c->fd = -1;
				continue;
			}
			if (c->len)
			{
				ssize_t		n = send(c->fd, c->buf, c->len, MSG_NOSIGNAL);

				if (n > 0)
				{
					memmove(c->buf, c->buf + n, c->len - (size_t) n);
					c->len -= (size_t) n;
					bytes += (unsigned long long) n;
				}
				else if (n < 0 && errno != EAGAIN && errno != EINTR)
				{
					close(c->fd);
					c->fd = -1;
					continue;
				}
			}
			if (c->eof && c->len == 0)
			{
				close(c->fd);
				c->fd = -1;
			}
		}
		free(p);
		/* Forget closed connections. */
		for (i = 0; i < ncs;)
		{
			if (cs[i]->fd < 0)
			{
				free(cs[i]);
				cs[i] = cs[--ncs];
			}
			else
				i++;
		}
	}
	for (i = 0; i < ncs; i++)
	{
		close(cs[i]->fd);
		free(cs[i]);
	}
	free(cs);
	close(lfd);
	fprintf(stderr, "echo: connections=%llu bytes=%llu\n", accepted, bytes);
	return 0;
}

/* ---- send ---- */

enum result
{
	RES_RUNNING, RES_OK, RES_CORRUPT, RES_RESET, RES_EOF, RES_ERROR, RES_TIMEOUT
};

static const char *const result_name[] = {
	"running", "ok", "corrupt", "reset", "eof", "error", "timeout"
};

/* One of these per test connection. */
struct send_conn
{
	int			fd;
	enum result result;
	struct gen	gsend,
				gcheck;
	unsigned long long sent,
				received,
				reads;			/* recv() calls that returned data */
	uint64_t	sum_sent,
				sum_received;
	unsigned char out[IO_BUF];
	size_t		out_len,
				out_off;
};

static void
send_finish(struct send_conn *c, enum result r)
{
	c->result = r;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

static enum result
errno_result(int e)
{
	return e == ECONNRESET || e == EPIPE ? RES_RESET : RES_ERROR;
}

static int
run_send(unsigned port, unsigned long long bytes, unsigned nconn, uint64_t seed)
{
	struct send_conn *cs = calloc(nconn, sizeof *cs);
	struct pollfd *p = calloc(nconn, sizeof *p);
	unsigned char *in = malloc(IO_BUF),
			   *expect = malloc(IO_BUF);
	int64_t		deadline = now_ms() + SEND_TIMEOUT_MS;
	unsigned	i,
				running = nconn,
				nok = 0;
	unsigned long long tsent = 0,
				trecv = 0;
	struct sigaction sa;

	if (!cs || !p || !in || !expect)
		abort();
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);

	for (i = 0; i < nconn; i++)
	{
		struct send_conn *c = &cs[i];

		gen_init(&c->gsend, seed + i);
		gen_init(&c->gcheck, seed + i);
		c->sum_sent = c->sum_received = FNV_INIT;
		c->fd = connect_to(port, 0);
		if (c->fd < 0)
		{
			fprintf(stderr, "send: conn %u: connect: %s\n", i, strerror(errno));
			send_finish(c, RES_ERROR);
			running--;
		}
	}
	while (running > 0)
	{
		int64_t		left = deadline - now_ms();

		if (left <= 0)
			break;
		for (i = 0; i < nconn; i++)
		{
			p[i].fd = cs[i].fd;
			p[i].events = POLLIN | (cs[i].sent < bytes ? POLLOUT : 0);
			p[i].revents = 0;
		}
		if (poll(p, nconn, left > 1000 ? 1000 : (int) left) < 0 && errno != EINTR)
			abort();
		for (i = 0; i < nconn; i++)
		{
			struct send_conn *c = &cs[i];

			if (c->fd < 0 || !p[i].revents)
				continue;
			if (p[i].revents & POLLOUT && c->sent < bytes)
			{
				ssize_t		n;

				if (c->out_off == c->out_len)
				{
					unsigned long long want = bytes - c->sent;

					c->out_len = want < IO_BUF ? (size_t) want : IO_BUF;
					c->out_off = 0;
					gen_fill(&c->gsend, c->out, c->out_len);
					c->sum_sent = fnv(c->sum_sent, c->out, c->out_len);
				}
				n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
						 MSG_NOSIGNAL | MSG_DONTWAIT);
				if (n < 0 && errno != EAGAIN && errno != EINTR)
				{
					send_finish(c, errno_result(errno));
					running--;
					continue;
				}
				if (n > 0)
				{
					c->out_off += (size_t) n;
					c->sent += (unsigned long long) n;
				}
			}
			if (p[i].revents & (POLLIN | POLLERR | POLLHUP))
			{
				ssize_t		n = recv(c->fd, in, IO_BUF, MSG_DONTWAIT);

				if (n < 0 && (errno == EAGAIN || errno == EINTR))
					continue;
				if (n < 0)
				{
					send_finish(c, errno_result(errno));
					running--;
					continue;
				}
				if (n == 0)
				{
					send_finish(c, RES_EOF);
					running--;
					continue;
				}
				gen_fill(&c->gcheck, expect, (size_t) n);
				c->sum_received = fnv(c->sum_received, in, (size_t) n);
				c->received += (unsigned long long) n;
				c->reads++;
				if (memcmp(in, expect, (size_t) n) != 0 || c->received > bytes)
				{
					send_finish(c, RES_CORRUPT);
					running--;
				}
				else if (c->received == bytes)
				{
					send_finish(c, RES_OK);
					running--;
				}
			}
		}
	}
	for (i = 0; i < nconn; i++)
	{
		struct send_conn *c = &cs[i];

		if (c->result == RES_RUNNING)
			send_finish(c, RES_TIMEOUT);
		printf("conn=%u result=%s sent=%llu received=%llu sum_sent=%016llx sum_received=%016llx reads=%llu\n",
			   i, result_name[c->result], c->sent, c->received,
			   (unsigned long long) c->sum_sent, (unsigned long long) c->sum_received, c->reads);
		nok += c->result == RES_OK;
		tsent += c->sent;
		trecv += c->received;
	}
	printf("total: conns=%u ok=%u sent=%llu received=%llu\n", nconn, nok, tsent, trecv);
	free(cs);
	free(p);
	free(in);
	free(expect);
	return nok == nconn ? 0 : 1;
}

/* ---- rtt ---- */

static int
run_rtt(unsigned port, unsigned count, int sig, pid_t pid, unsigned sig_ms)
{
	unsigned char out[RTT_SIZE],
				in[RTT_SIZE];
	struct gen	g;
	unsigned	k;
	int			fd = connect_to(port, 0);

	if (fd < 0)
	{
		printf("rtt: connect: %s\n", strerror(errno));
		return 1;
	}
	gen_init(&g, 7);
	for (k = 0; k < count; k++)
	{
		int64_t		t0 = now_ms();
		int64_t		kill_at = sig && k == 0 ? t0 + sig_ms : INT64_MAX;
		int64_t		deadline = t0 + RTT_TIMEOUT_MS;
		size_t		got = 0;

		gen_fill(&g, out, sizeof out);
		if (send(fd, out, sizeof out, MSG_NOSIGNAL) != (ssize_t) sizeof out)
		{
			printf("rtt: send: %s\n", strerror(errno));
			close(fd);
			return 1;
		}
		while (got < sizeof in)
		{
			int64_t		now = now_ms();
			int64_t		wake = kill_at < deadline ? kill_at : deadline;
			struct pollfd pf = {fd, POLLIN, 0};
			ssize_t		n;

			if (now >= kill_at)
			{
				kill(pid, sig);
				kill_at = INT64_MAX;
				continue;
			}
			if (now >= deadline)
			{
				printf("rtt: timeout\n");
				close(fd);
				return 1;
			}
			if (poll(&pf, 1, (int) (wake - now)) <= 0)
				continue;
			n = recv(fd, in + got, sizeof in - got, 0);
			if (n <= 0)
			{
				printf("rtt: %s\n", n == 0 ? "eof" : strerror(errno));
				close(fd);
				return 1;
			}
			got += (size_t) n;
		}
		if (memcmp(in, out, sizeof in) != 0)
		{
			printf("rtt: corrupt echo\n");
			close(fd);
			return 1;
		}
		printf("rtt_ms=%lld\n", (long long) (now_ms() - t0));
		fflush(stdout);
	}
	close(fd);
	return 0;
}

/* ---- source, sink, blackhole ---- */

static volatile sig_atomic_t quit;

static void
on_quit(int sig)
{
	(void) sig;
	quit = 1;
}

static void
catch_quit(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_quit;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	setvbuf(stderr, NULL, _IOLBF, 0);
}

/* A listening socket on 127.0.0.1:port with backlog; exits 1 if it cannot. */
static int
listen_on(const char *mode, unsigned port, int backlog)
{
	struct sockaddr_in sin;
	socklen_t	slen = sizeof sin;
	int			one = 1;
	int			lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t) port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
		bind(lfd, (struct sockaddr *) &sin, sizeof sin) < 0 || listen(lfd, backlog) < 0 ||
		getsockname(lfd, (struct sockaddr *) &sin, &slen) < 0)
	{
		fprintf(stderr, "%s: cannot listen on 127.0.0.1:%u: %s\n", mode, port, strerror(errno));
		exit(1);
	}
	fprintf(stderr, "%s: listening on 127.0.0.1:%u\n", mode, ntohs(sin.sin_port));
	return lfd;
}

/* One of these per source connection. */
struct source_conn
{
	int			fd;
	struct gen	g;
	unsigned long long sent;
	unsigned char out[IO_BUF];
	size_t		out_len,
				out_off;
};

/*
 * source PORT BYTES: to each connection, sends BYTES of the stream (seed 1),
 * then shuts its side down (FIN) and never reads; the sockets stay open until
 * SIGTERM/SIGINT.
 */
static int
run_source(unsigned port, unsigned long long bytes)
{
	int			lfd;
	struct source_conn **cs = NULL;
	size_t		ncs = 0,
				i;
	unsigned long long accepted = 0;

	catch_quit();
	lfd = listen_on("source", port, 128);
	while (!quit)
	{
		struct pollfd *p = calloc(ncs + 1, sizeof *p);
		size_t		npolled = ncs;

		if (!p)
			abort();
		p[0].fd = lfd;
		p[0].events = POLLIN;
		for (i = 0; i < ncs; i++)
		{
			p[i + 1].fd = cs[i]->sent < bytes ? cs[i]->fd : -1;
			p[i + 1].events = POLLOUT;
		}
		if (poll(p, ncs + 1, 1000) < 0 && errno != EINTR)
			abort();
		if (p[0].revents & POLLIN)
		{
			int			fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

			if (fd >= 0)
			{
				struct source_conn *c = calloc(1, sizeof *c);
				struct source_conn **more = realloc(cs, (ncs + 1) * sizeof *cs);

				if (!c || !more)
					abort();
				cs = more;
				c->fd = fd;
				gen_init(&c->g, 1);
				cs[ncs++] = c;
				fprintf(stderr, "source: accepted %llu\n", ++accepted);
			}
		}
		for (i = 0; i < npolled; i++)
		{
			struct source_conn *c = cs[i];
			ssize_t		n;

			if (!(p[i + 1].revents & (POLLOUT | POLLERR | POLLHUP)))
				continue;
			if (c->out_off == c->out_len)
			{
				unsigned long long want = bytes - c->sent;

				c->out_len = want < IO_BUF ? (size_t) want : IO_BUF;
				c->out_off = 0;
				gen_fill(&c->g, c->out, c->out_len);
			}
			n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
			if (n < 0 && errno != EAGAIN && errno != EINTR)
				c->sent = bytes;	/* gone: stop writing */
			else if (n > 0)
			{
				c->out_off += (size_t) n;
				c->sent += (unsigned long long) n;
			}
			if (c->sent == bytes)
				shutdown(c->fd, SHUT_WR);
		}
		free(p);
	}
	for (i = 0; i < ncs; i++)
	{
		close(cs[i]->fd);
		free(cs[i]);
	}
	free(cs);
	close(lfd);
	fprintf(stderr, "source: connections=%llu\n", accepted);
	return 0;
}

/*
 * sink PORT BYTES: first sends as much as it can (until sending has been
 * blocked for 500 ms, 16 MB, or 10 s), then reads slowly (64 kB every 5 ms
 * or so, while sending 1 kB each time: a peer still talking when the proxy
 * closes, whose bytes must not make the proxy's kernel reset the socket
 * before the reader has all it was sent): expects BYTES of the stream (seed 1) and
 * then end of file.  Prints "sink: result=R sent=N received=N" where R is ok,
 * corrupt, reset, eof (early), error or timeout (60 s).  Exit 0 if ok.
 */
static int
run_sink(unsigned port, unsigned long long bytes)
{
	unsigned char *buf = malloc(IO_BUF),
			   *expect = malloc(IO_BUF);
	unsigned long long sent = 0,
				received = 0;
	int64_t		fill_end = now_ms() + 10000,
				deadline = now_ms() + SEND_TIMEOUT_MS;
	enum result r = RES_RUNNING;
	struct gen	g;
	unsigned char trickle[1024];
	int			fd;

	if (!buf || !expect)
		abort();
	memset(trickle, 't', sizeof trickle);
	catch_quit();
	gen_init(&g, 1);
	fd = connect_to(port, 65536);
	if (fd < 0)
	{
		printf("sink: connect: %s\n", strerror(errno));
		free(buf);
		free(expect);
		return 1;
	}
	memset(buf, 'x', IO_BUF);
	while (sent < 16000000 && now_ms() < fill_end)
	{
		struct pollfd pf = {fd, POLLOUT, 0};
		ssize_t		n;

		/* Blocked for 500 ms: the way to the server is full. */
		if (poll(&pf, 1, 500) == 0)
			break;
		n = send(fd, buf, IO_BUF, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			break;
		sent += (unsigned long long) n;
	}
	while (r == RES_RUNNING)
	{
		int64_t		left = deadline - now_ms();
		struct pollfd pf = {fd, POLLIN, 0};
		ssize_t		n;

		if (left <= 0)
		{
			r = RES_TIMEOUT;
			break;
		}
		/* A 1 kB trickle and a 64 kB read every 5 ms or so. */
		(void) send(fd, trickle, sizeof trickle, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (poll(&pf, 1, left < 5 ? (int) left : 5) <= 0)
			continue;
		usleep(5000);
		n = recv(fd, buf, IO_BUF, MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n < 0)
			r = errno_result(errno);
		else if (n == 0)
			r = received == bytes ? RES_OK : RES_EOF;
		else
		{
			gen_fill(&g, expect, (size_t) n);
			if (memcmp(buf, expect, (size_t) n) != 0 || received + (unsigned long long) n > bytes)
				r = RES_CORRUPT;
			received += (unsigned long long) n;
		}
	}
	printf("sink: result=%s sent=%llu received=%llu\n", result_name[r], sent, received);
	close(fd);
	free(buf);
	free(expect);
	return r == RES_OK ? 0 : 1;
}

/*
 * blackhole PORT: a listener that never accepts, its accept queue filled by
 * connections of its own, so the kernel drops new SYNs and a connect() to it
 * neither succeeds nor fails until the connecting side gives up.  Runs until
 * SIGTERM/SIGINT.
 */
static int
run_blackhole(unsigned port)
{
	struct sockaddr_in sin;
	socklen_t	slen = sizeof sin;
	int			fillers[4];
	int			lfd,
				i;

	catch_quit();
	lfd = listen_on("blackhole", port, 0);
	if (getsockname(lfd, (struct sockaddr *) &sin, &slen) < 0)
		abort();
	for (i = 0; i < 4; i++)
	{
		fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fillers[i] >= 0)
			(void) connect(fillers[i], (struct sockaddr *) &sin, sizeof sin);
	}
	while (!quit)
		poll(NULL, 0, 1000);
	for (i = 0; i < 4; i++)
		if (fillers[i] >= 0)
			close(fillers[i]);
	close(lfd);
	return 0;
}

/* ---- flood ---- */

/* VmRSS of pid in kB, 0 if unknown. */
static unsigned long long
rss_kb(pid_t pid)
{
	char		path[64],
				line[256];
	unsigned long long kb = 0;
	FILE	   *f;

	if (pid <= 0)
		return 0;
	snprintf(path, sizeof path, "/proc/%d/status", (int) pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "VmRSS: %llu", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

static int
run_flood(unsigned port, unsigned long long max, unsigned secs, pid_t pid)
{
	unsigned long long before = rss_kb(pid),
				sent = 0;
	unsigned char *buf = malloc(IO_BUF);
	int64_t		end = now_ms() + (int64_t) secs * 1000;
	int			fd = connect_to(port, 65536);
	struct sigaction sa;

	if (!buf)
		abort();
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	if (fd < 0)
	{
		printf("flood: connect: %s\n", strerror(errno));
		free(buf);
		return 1;
	}
	memset(buf, 'x', IO_BUF);
	while (sent < max)
	{
		int64_t		left = end - now_ms();
		struct pollfd pf = {fd, POLLOUT, 0};
		unsigned long long want = max - sent;
		ssize_t		n;

		if (left <= 0)
			break;
		if (poll(&pf, 1, (int) left) <= 0)
			continue;
		n = send(fd, buf, want < IO_BUF ? (size_t) want : IO_BUF, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			break;
		if (n > 0)
			sent += (unsigned long long) n;
	}
	usleep(500 * 1000);
	printf("flood: sent=%llu rss_before_kb=%llu rss_after_kb=%llu\n", sent, before, rss_kb(pid));
	close(fd);
	free(buf);
	return 0;
}

int
main(int argc, char **argv)
{
	if (argc < 3)
		usage();
	if (strcmp(argv[1], "echo") == 0 && argc == 3)
		return run_echo((unsigned) num(argv[2]));
	if (strcmp(argv[1], "send") == 0 && argc >= 4 && argc <= 6)
		return run_send((unsigned) num(argv[2]), num(argv[3]),
						argc >= 5 ? (unsigned) num(argv[4]) : 1,
						argc >= 6 ? num(argv[5]) : 1);
	if (strcmp(argv[1], "rtt") == 0 && (argc == 4 || argc == 7))
	{
		int			sig = 0;

		if (argc == 7)
		{
			if (strcmp(argv[4], "USR1") == 0)
				sig = SIGUSR1;
			else if (strcmp(argv[4], "USR2") == 0)
				sig = SIGUSR2;
			else if (strcmp(argv[4], "HUP") == 0)
				sig = SIGHUP;
			else
				usage();
		}
		return run_rtt((unsigned) num(argv[2]), (unsigned) num(argv[3]), sig,
					   argc == 7 ? (pid_t) num(argv[5]) : 0,
					   argc == 7 ? (unsigned) num(argv[6]) : 0);
	}
	if (strcmp(argv[1], "source") == 0 && argc == 4)
		return run_source((unsigned) num(argv[2]), num(argv[3]));
	if (strcmp(argv[1], "sink") == 0 && argc == 4)
		return run_sink((unsigned) num(argv[2]), num(argv[3]));
	if (strcmp(argv[1], "blackhole") == 0 && argc == 3)
		return run_blackhole((unsigned) num(argv[2]));
	if (strcmp(argv[1], "flood") == 0 && (argc == 5 || argc == 6))
		return run_flood((unsigned) num(argv[2]), num(argv[3]), (unsigned) num(argv[4]),
						 argc == 6 ? (pid_t) num(argv[5]) : 0);
	usage();
}

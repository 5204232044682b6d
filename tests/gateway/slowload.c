/*
 * tests/gateway/slowload.c: the load of the slow-consumers suite
 * (tests/suites/16-slow-consumers.sh): many subscribers, some of which the
 * suite stops with SIGSTOP, and one publisher pushing at a steady rate.
 *
 * One process, one thread, one epoll loop driving --conns WebSocket
 * connections on loopback, each a hand-written RFC 6455 client (the plumbing
 * is bench/gwload.c's: handshake with Sec-WebSocket-Protocol: synclog.v1 and
 * its accept key checked, masked frames out, fragmented messages
 * reassembled, pings answered, SO_LINGER 0 on close).  A process stopped with
 * SIGSTOP reads nothing at all: its sockets' receive buffers fill and the
 * gateway's sends to it stall, as with a client that hangs.
 *
 *   slowload sub --port P --token T --group G --cursor C [--conns N]
 *                --expect FILE [--timeout S] [--rcvbuf B]
 *                [--warm-ops W] [--window-ops K] [--extra-group PREFIX]
 *   slowload pub --port P --token T --group G --rate R --seconds S
 *                [--pad BYTES] [--prefix HEX]
 *
 * sub: opens N connections (100 in setup at a time), each says hello with
 *   cursor C for group G, and prints "ready N" on stdout once every one has
 *   its welcome.  Then it reads.  Per connection it checks that the seqs of
 *   the changes it gets are strictly increasing (a repeat or a step back is a
 *   violation) and counts them.  Each change of the publisher carries the op's
 *   number n and the time t (CLOCK_MONOTONIC, µs, the same clock in every
 *   process of the machine) at which the publisher wrote the push; the
 *   latency of a delivery is the time of the read() that brought it minus t.
 *   Ops n <= W are the warm-up, not counted; the others fall in windows of K
 *   ops (window (n - W - 1) / K).  Every 100 ms it looks for FILE: once FILE
 *   holds the final seq F, the run ends when every connection has exactly the
 *   changes C+1..F (count F - C, last seq F, no violation), or after S
 *   seconds (default 60) counted from the moment FILE was read.  Output: one
 *   line "result conns= complete= violations= closed= errors= changes=
 *   samples= p50_ms= p99_ms= max_ms= windows= win_p50_ms=a/b/.. win_p99_ms=
 *   med_win_p50_ms= med_win_p99_ms= catchup_ms=" (catchup_ms: from reading
 *   FILE to complete; -1 if not).  Exit 0 when every connection completed.
 *   --rcvbuf sets SO_RCVBUF before connecting.  With --extra-group,
 *   connection k also asks for group PREFIXk (in which nothing is written),
 *   so that its set of groups is its own: the gateway shares a changes frame
 *   only between sessions of the same groups, so each such connection's
 *   queue holds frames of its own, as clients of different teams would.
 *
 * pub: one connection, hello with groups ["-"] (granted nothing, so it gets
 *   no changes), prints "ready"; then pushes op n = 1, 2, ... one op per
 *   push, op n due at start + (n - 1) / R seconds, for S seconds; each op
 *   creates row "<prefix>-<n>" in table items with fields grp = G, n, t and
 *   pad (BYTES 'x's, default 1000).  Then waits (30 s at most) for the
 *   acks.  Output: "result sent= acked= rejected= errors= late_ms=" (late_ms:
 *   the most any push was written after it was due).  Exit 0 when every op
 *   was acked and none refused.
 *
 * Addresses: when the gateway is on loopback (--host 127.x.y.z, the default
 * 127.0.0.1), connection k comes from its own source address,
 * 127.1.(k / 200).(k % 200 + 1) (Linux routes all of 127/8 to lo), as
 * clients of many machines would: the gateway limits the connections not yet
 * welcomed per peer address (--max-pending-per-peer, default 16), which 100
 * handshakes in flight from one address would exceed.
 *
 * Both stop on SIGTERM/SIGINT, printing what they have.  Exit 1 on a failed
 * setup or run, 2 on bad arguments.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_MESSAGE (16u << 20)   /* a longer message from the server is an error */
#define READ_CHUNK 65536
#define SETUP_CONCURRENCY 100
#define MAX_WINDOWS 64

typedef enum { M_SUB, M_PUB } run_mode;

/* A connection's state: one case per step of its life. */
typedef enum {
	C_NEW,          /* not started */
	C_CONNECTING,   /* connect() in progress */
	C_HANDSHAKE,    /* request sent, waiting for the 101 */
	C_HELLO,        /* hello sent, waiting for welcome */
	C_READY,
	C_CLOSED
} conn_state;

/* One of these per client connection. */
typedef struct conn {
	int fd;
	int idx;
	conn_state st;
	bool want_out;          /* EPOLLOUT registered */
	char accept[29];        /* the Sec-WebSocket-Accept expected */
	unsigned char *in;      /* bytes read, not yet parsed */
	size_t in_len, in_cap;
	unsigned char *msg;     /* a fragmented message being reassembled */
	size_t msg_len, msg_cap;
	int msg_op;             /* its opcode, 0 when none */
	unsigned char *out;     /* bytes to write */
	size_t out_off, out_len, out_cap;
	/* sub */
	uint64_t last_seq;      /* the last change's seq (the hello's cursor before) */
	uint64_t nchanges;
	unsigned long violations;
	bool complete;
} conn;

static struct {
	run_mode mode;
	const char *host;
	int port;
	int nconns;
	const char *token;
	const char *group;
	unsigned long long cursor;
	const char *expect;
	double timeout;
	int rcvbuf;
	long warm_ops;
	long window_ops;
	double rate;
	double seconds;
	int pad;
	const char *prefix;
	const char *extra_group;
} opt = {
	.host = "127.0.0.1", .nconns = 1, .group = "g", .timeout = 60, .window_ops = 1000000000L,
	.rate = 50, .seconds = 10, .pad = 1000, .prefix = "op",
};

static conn *conns;
static int epfd;
static uint64_t rng_state;
static volatile sig_atomic_t interrupted;

static int started, nready, nclosed_unexpected, nerrors, nsetup_failed;
static unsigned long pings, errors_printed;

/* sub: latency samples (ms) per window */
typedef struct samples {
	float *v;
	size_t n, cap;
} samples;
static samples win[MAX_WINDOWS];
static int nwin;
static unsigned long long total_changes, foreign;

/* pub */
static unsigned long long acked, rejected;
static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static void *
xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (!q) {
		fprintf(stderr, "slowload: out of memory\n");
		exit(1);
	}
	return q;
}

static uint64_t
rnd(void)
{
	uint64_t x = rng_state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

static void
on_signal(int sig)
{
	(void) sig;
	interrupted = 1;
}
/* ------------------------------------------------------------ SHA-1, base64 */

/* SHA-1 (FIPS 180-4) of len bytes; only for the handshake's accept key. */
static void
sha1(const unsigned char *data, size_t len, unsigned char out[20])
{
	uint32_t h[5] = { 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0 };
	size_t total = ((len + 8) / 64 + 1) * 64;
	unsigned char *m = calloc(1, total);

	if (!m) {
		fprintf(stderr, "slowload: out of memory\n");
		exit(1);
	}
	memcpy(m, data, len);
	m[len] = 0x80;
	uint64_t bits = (uint64_t) len * 8;
	for (int i = 0; i < 8; i++)
		m[total - 1 - i] = (unsigned char) (bits >> (8 * i));
	for (size_t off = 0; off < total; off += 64) {
		uint32_t w[80];
		for (int i = 0; i < 16; i++)
			w[i] = (uint32_t) m[off + 4 * i] << 24 | (uint32_t) m[off + 4 * i + 1] << 16 |
			       (uint32_t) m[off + 4 * i + 2] << 8 | m[off + 4 * i + 3];
		for (int i = 16; i < 80; i++) {
			uint32_t x = w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16];
			w[i] = x << 1 | x >> 31;
		}
		uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
		for (int i = 0; i < 80; i++) {
			uint32_t f, k;
			if (i < 20) {
				f = (b & c) | (~b & d);
				k = 0x5A827999;
			} else if (i < 40) {
				f = b ^ c ^ d;
				k = 0x6ED9EBA1;
			} else if (i < 60) {
				f = (b & c) | (b & d) | (c & d);
				k = 0x8F1BBCDC;
			} else {
				f = b ^ c ^ d;
				k = 0xCA62C1D6;
			}
			uint32_t t = (a << 5 | a >> 27) + f + e + k + w[i];
			e = d;
			d = c;
			c = b << 30 | b >> 2;
			b = a;
			a = t;
		}
		h[0] += a;
		h[1] += b;
		h[2] += c;
		h[3] += d;
		h[4] += e;
	}
	free(m);
	for (int i = 0; i < 5; i++)
		for (int j = 0; j < 4; j++)
			out[4 * i + j] = (unsigned char) (h[i] >> (24 - 8 * j));
}

static void
base64(const unsigned char *in, size_t len, char *out)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i, o = 0;

	for (i = 0; i + 2 < len; i += 3) {
		uint32_t v = (uint32_t) in[i] << 16 | (uint32_t) in[i + 1] << 8 | in[i + 2];
		out[o++] = tab[v >> 18];
		out[o++] = tab[(v >> 12) & 63];
		out[o++] = tab[(v >> 6) & 63];
		out[o++] = tab[v & 63];
	}
	if (i < len) {
		uint32_t v = (uint32_t) in[i] << 16 | (i + 1 < len ? (uint32_t) in[i + 1] << 8 : 0);
		out[o++] = tab[v >> 18];
		out[o++] = tab[(v >> 12) & 63];
		out[o++] = i + 1 < len ? tab[(v >> 6) & 63] : '=';
		out[o++] = '=';
	}
	out[o] = '\0';
}

/* ------------------------------------------------------------ output */

static void
set_events(conn *c, bool want_out)
{
	struct epoll_event ev = { .events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.u32 = (uint32_t) c->idx };

	if (c->want_out == want_out)
		return;
	c->want_out = want_out;
	epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void conn_fail(conn *c, const char *why);

/* Writes what is queued; returns -1 when the connection failed (closed). */
static int
flush_out(conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				set_events(c, true);
				return 0;
			}
			conn_fail(c, strerror(errno));
			return -1;
		}
		c->out_off += (size_t) n;
	}
	c->out_off = c->out_len = 0;
	if (c->st != C_CONNECTING)
		set_events(c, false);
	return 0;
}

static void
queue_bytes(conn *c, const void *data, size_t len)
{
	if (c->out_off > 0 && c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	if (c->out_len + len > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : 1024;
		while (cap < c->out_len + len)
			cap *= 2;
		c->out = xrealloc(c->out, cap);
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, data, len);
	c->out_len += len;
}

/* Queues one masked frame (FIN set).  Does not write. */
static void
queue_frame(conn *c, int opcode, const void *data, size_t len)
{
	unsigned char h[14];
	size_t hl = 0;
	uint32_t mask = (uint32_t) rnd();
	unsigned char mk[4] = { (unsigned char) mask, (unsigned char) (mask >> 8),
	                        (unsigned char) (mask >> 16), (unsigned char) (mask >> 24) };

	h[hl++] = (unsigned char) (0x80 | opcode);
	if (len < 126) {
		h[hl++] = (unsigned char) (0x80 | len);
	} else if (len < 65536) {
		h[hl++] = 0x80 | 126;
		h[hl++] = (unsigned char) (len >> 8);
		h[hl++] = (unsigned char) len;
	} else {
		h[hl++] = 0x80 | 127;
		for (int i = 7; i >= 0; i--)
			h[hl++] = (unsigned char) ((uint64_t) len >> (8 * i));
	}
	memcpy(h + hl, mk, 4);
	hl += 4;
	queue_bytes(c, h, hl);
	queue_bytes(c, data, len);
	unsigned char *p = c->out + c->out_len - len;
	for (size_t i = 0; i < len; i++)
		p[i] ^= mk[i & 3];
}

/* Queues a text frame and writes; -1 when the connection failed. */
static int
send_text(conn *c, const char *text, size_t len)
{
	queue_frame(c, 0x1, text, len);
	return flush_out(c);
}


/* ------------------------------------------------------------ connections */

static void
conn_close(conn *c)
{
	if (c->fd >= 0) {
		struct linger lg = { 1, 0 };
		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
		epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
		c->fd = -1;
	}
	if (c->st == C_READY)
		nready--;
	c->st = C_CLOSED;
	free(c->in);
	free(c->msg);
	free(c->out);
	c->in = c->msg = c->out = NULL;
	c->in_len = c->in_cap = c->msg_len = c->msg_cap = c->out_len = c->out_off = c->out_cap = 0;
}

/* The connection ended when it should not have: counted, the first few told. */
static void
conn_fail(conn *c, const char *why)
{
	if (c->st == C_CLOSED)
		return;
	if (c->st != C_READY)
		nsetup_failed++;
	else
		nclosed_unexpected++;
	if (errors_printed++ < 5)
		fprintf(stderr, "slowload: connection %d: %s\n", c->idx, why);
	conn_close(c);
}

static void
conn_start(conn *c)
{
	struct sockaddr_in sa;
	unsigned char key[16];

	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t) opt.port);
	if (inet_pton(AF_INET, opt.host, &sa.sin_addr) != 1) {
		fprintf(stderr, "slowload: --host %s: not an IPv4 address\n", opt.host);
		exit(2);
	}
	started++;
	c->st = C_CONNECTING;
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		conn_fail(c, strerror(errno));
		return;
	}
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (opt.rcvbuf > 0 && setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &opt.rcvbuf, sizeof opt.rcvbuf) != 0) {
		conn_fail(c, strerror(errno));
		return;
	}
	if (!strncmp(opt.host, "127.", 4)) {
		struct sockaddr_in src;
		memset(&src, 0, sizeof src);
		src.sin_family = AF_INET;
		src.sin_addr.s_addr = htonl(0x7f010000u | (((uint32_t) c->idx / 200 & 0xff) << 8) |
		                            ((uint32_t) c->idx % 200 + 1));
		if (bind(c->fd, (struct sockaddr *) &src, sizeof src) != 0) {
			conn_fail(c, strerror(errno));
			return;
		}
	}
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t) c->idx };
	epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
	c->want_out = true;

	for (int i = 0; i < 16; i++)
		key[i] = (unsigned char) rnd();
	char key64[25], buf[512];
	base64(key, 16, key64);
	int n = snprintf(buf, sizeof buf, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key64);
	unsigned char dg[20];
	sha1((unsigned char *) buf, (size_t) n, dg);
	base64(dg, 20, c->accept);
	n = snprintf(buf, sizeof buf,
	             "GET / HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	             "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
	             "Sec-WebSocket-Protocol: synclog.v1\r\n\r\n",
	             opt.host, opt.port, key64);
	queue_bytes(c, buf, (size_t) n);

	if (connect(c->fd, (struct sockaddr *) &sa, sizeof sa) != 0 && errno != EINPROGRESS)
		conn_fail(c, strerror(errno));
}

/* The clock of an op or hello: 48 bits of Unix ms, 16-bit counter. */
static void
hlc_now(char out[17])
{
	static uint64_t last;
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t h = ((uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000) << 16;
	last = h > last ? h : last + 1;
	snprintf(out, 17, "%016llx", (unsigned long long) last);
}

static void
send_hello(conn *c)
{
	char buf[1024], hlc[17], extra[160] = "";
	int n;

	if (opt.extra_group)
		snprintf(extra, sizeof extra, ",\"%s%d\"", opt.extra_group, c->idx);
	hlc_now(hlc);
	n = snprintf(buf, sizeof buf,
	             "{\"type\":\"hello\",\"client_id\":\"slowload-%d-%s-%d\",\"token\":\"%s\","
	             "\"groups\":[\"%s\"%s],\"cursor\":%llu,\"hlc\":\"%s\"}",
	             (int) getpid(), opt.mode == M_PUB ? "pub" : "sub", c->idx, opt.token,
	             opt.mode == M_PUB ? "-" : opt.group, extra, opt.cursor, hlc);
	c->st = C_HELLO;
	c->last_seq = opt.cursor;
	send_text(c, buf, (size_t) n);
}

/* Parses the handshake response once complete; -1 when the connection failed. */
static int
on_handshake(conn *c)
{
	unsigned char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);

	if (!end) {
		if (c->in_len > 8192) {
			conn_fail(c, "handshake response too long");
			return -1;
		}
		return 0;
	}
	size_t hlen = (size_t) (end - c->in) + 4;
	char *h = strndup((char *) c->in, hlen);
	bool ok101 = strncmp(h, "HTTP/1.1 101", 12) == 0, accept_ok = false, proto_ok = false;
	for (char *line = strstr(h, "\r\n"); line && line[2]; line = strstr(line + 2, "\r\n")) {
		char *l = line + 2, *colon = strchr(l, ':'), *eol = strstr(l, "\r\n");
		if (!colon || !eol || colon > eol)
			continue;
		char *v = colon + 1;
		while (*v == ' ')
			v++;
		size_t vlen = (size_t) (eol - v);
		if (!strncasecmp(l, "Sec-WebSocket-Accept:", 21))
			accept_ok = vlen == strlen(c->accept) && !strncmp(v, c->accept, vlen);
		else if (!strncasecmp(l, "Sec-WebSocket-Protocol:", 23))
			proto_ok = vlen == 10 && !strncmp(v, "synclog.v1", 10);
	}
	if (!ok101 || !accept_ok || !proto_ok) {
		char why[200];
		snprintf(why, sizeof why, "bad handshake response (%s%s%s): %.80s", ok101 ? "" : "not 101 ",
		         accept_ok ? "" : "bad accept ", proto_ok ? "" : "no synclog.v1", h);
		free(h);
		conn_fail(c, why);
		return -1;
	}
	free(h);
	memmove(c->in, c->in + hlen, c->in_len - hlen);
	c->in_len -= hlen;
	send_hello(c);
	return 0;
}

/* ------------------------------------------------------------ messages */

static const char *
find_key(const char *from, const char *end, const char *key)
{
	size_t kl = strlen(key);

	while (from < end) {
		const char *p = memmem(from, (size_t) (end - from), key, kl);
		if (!p)
			return NULL;
		p += kl;
		while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
			p++;
		if (p < end && *p == ':') {
			p++;
			while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
				p++;
			return p;
		}
		from = p;
	}
	return NULL;
}

static unsigned long
count_rejected(const char *m, size_t len)
{
	const char *end = m + len, *p = find_key(m, end, "\"rejected\"");
	unsigned long n = 0;

	if (!p || p >= end || *p != '[')
		return 0;
	p++;
	while (p < end && *p == ' ')
		p++;
	if (p < end && *p == ']')
		return 0;
	while ((p = find_key(p, end, "\"id\"")) != NULL)
		n++;
	return n ? n : 1;
}


/* The value of the first "type" key, or "" (copied into out). */
static void
msg_type(const char *m, size_t len, char *out, size_t outsz)
{
	const char *end = m + len, *p = find_key(m, end, "\"type\"");

	out[0] = '\0';
	if (!p || p >= end || *p != '"')
		return;
	p++;
	size_t n = 0;
	while (p + n < end && p[n] != '"' && n + 1 < outsz)
		n++;
	memcpy(out, p, n);
	out[n] = '\0';
}

/* The decimal number at p (before end); *ok false when there is none. */
static unsigned long long
num_at(const char *p, const char *end, bool *ok)
{
	unsigned long long v = 0;
	int k = 0;

	while (p < end && *p >= '0' && *p <= '9' && k < 19) {
		v = v * 10 + (unsigned long long) (*p - '0');
		p++;
		k++;
	}
	*ok = k > 0;
	return v;
}

/* Records the latency of a delivery of op n (warm-up ops are not counted). */
static void
add_sample(unsigned long long n, double ms)
{
	if ((long) n <= opt.warm_ops)
		return;
	long w = ((long) n - opt.warm_ops - 1) / opt.window_ops;
	if (w >= MAX_WINDOWS)
		w = MAX_WINDOWS - 1;
	samples *s = &win[w];
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 65536;
		s->v = xrealloc(s->v, s->cap * sizeof *s->v);
	}
	s->v[s->n++] = (float) ms;
	if (w + 1 > nwin)
		nwin = (int) w + 1;
}

/*
 * A changes frame read at time t.  The change objects are PostgreSQL's jsonb
 * text, whose keys come shortest first: each change's "seq" precedes its
 * "fields", in which "n" and "t" are the publisher's.  So every change is
 * the stretch from one "seq" key to the next.
 */
static void
on_changes(conn *c, const char *m, size_t len, double t)
{
	const char *end = m + len, *p = find_key(m, end, "\"changes\"");

	if (!p)
		return;
	for (p = find_key(p, end, "\"seq\""); p;) {
		bool ok, okn = false, okt = false;
		unsigned long long seq = num_at(p, end, &ok);
		const char *next = find_key(p, end, "\"seq\""), *lim = next ? next : end;
		const char *pn = find_key(p, lim, "\"n\""), *pt = find_key(p, lim, "\"t\"");

		if (!ok || seq <= c->last_seq) {
			if (c->violations++ == 0 && errors_printed++ < 5)
				fprintf(stderr, "slowload: connection %d: seq %llu after seq %llu\n", c->idx, seq,
				        (unsigned long long) c->last_seq);
		} else {
			c->last_seq = seq;
		}
		c->nchanges++;
		total_changes++;
		unsigned long long n = pn ? num_at(pn, lim, &okn) : 0, us = pt ? num_at(pt, lim, &okt) : 0;
		if (pn && pt && okn && okt)
			add_sample(n, t - (double) us / 1000.0);
		else
			foreign++;
		p = next;
	}
}

/* A whole text message from the server, read at time t. */
static void
on_message(conn *c, const char *m, size_t len, double t)
{
	char type[32];

	msg_type(m, len, type, sizeof type);
	if (!strcmp(type, "changes")) {
		on_changes(c, m, len, t);
	} else if (!strcmp(type, "ack")) {
		unsigned long r = count_rejected(m, len);
		if (r && errors_printed++ < 5)
			fprintf(stderr, "slowload: connection %d: ops rejected: %.300s\n", c->idx, m);
		acked++;
		rejected += r;
	} else if (!strcmp(type, "welcome")) {
		if (c->st == C_HELLO) {
			c->st = C_READY;
			nready++;
		}
	} else if (!strcmp(type, "error") || !strcmp(type, "snapshot")) {
		/* a snapshot: the cursor of the hello had left the log (it may not) */
		nerrors++;
		if (errors_printed++ < 5)
			fprintf(stderr, "slowload: connection %d: %.300s\n", c->idx, m);
		if (c->st == C_HELLO)
			conn_fail(c, "error frame answering the hello");
	}
}
static long
parse_frames(conn *c, const unsigned char *buf, size_t len, double t)
{
	size_t off = 0;

	while (len - off >= 2) {
		const unsigned char *f = buf + off;
		int fin = f[0] & 0x80, op = f[0] & 0x0f;
		uint64_t plen = f[1] & 0x7f;
		size_t hl = 2;
		if (f[1] & 0x80) {
			conn_fail(c, "masked frame from the server");
			return -1;
		}
		if (plen == 126) {
			if (len - off < 4)
				break;
			plen = (uint64_t) f[2] << 8 | f[3];
			hl = 4;
		} else if (plen == 127) {
			if (len - off < 10)
				break;
			plen = 0;
			for (int i = 0; i < 8; i++)
				plen = plen << 8 | f[2 + i];
			hl = 10;
		}
		if (plen > MAX_MESSAGE) {
			conn_fail(c, "frame too large");
			return -1;
		}
		if (len - off < hl + plen)
			break;
		const unsigned char *p = f + hl;
		off += hl + (size_t) plen;

		switch (op) {
		case 0x0:
		case 0x1:
		case 0x2:
			if ((op != 0) == (c->msg_op != 0)) {
				conn_fail(c, op ? "new message inside a fragmented one" : "continuation without a message");
				return -1;
			}
			if (fin && op) {
				on_message(c, (const char *) p, (size_t) plen, t);
			} else {
				if (op)
					c->msg_op = op;
				if (c->msg_len + plen > MAX_MESSAGE) {
					conn_fail(c, "message too large");
					return -1;
				}
				if (c->msg_len + plen > c->msg_cap) {
					size_t cap = c->msg_cap ? c->msg_cap : 4096;
					while (cap < c->msg_len + plen)
						cap *= 2;
					c->msg = xrealloc(c->msg, cap);
					c->msg_cap = cap;
				}
				memcpy(c->msg + c->msg_len, p, (size_t) plen);
				c->msg_len += (size_t) plen;
				if (fin) {
					on_message(c, (const char *) c->msg, c->msg_len, t);
					c->msg_len = 0;
					c->msg_op = 0;
				}
			}
			break;
		case 0x8: {
			char why[160];
			int code = plen >= 2 ? (p[0] << 8 | p[1]) : 0;
			snprintf(why, sizeof why, "closed by the server (code %d%s%.*s)", code,
			         plen > 2 ? ": " : "", plen > 2 ? (int) plen - 2 : 0, (const char *) p + 2);
			queue_frame(c, 0x8, p, plen >= 2 ? 2 : 0);
			flush_out(c);
			conn_fail(c, why);
			return -1;
		}
		case 0x9:
			pings++;
			queue_frame(c, 0xA, p, (size_t) plen);
			if (flush_out(c) < 0)
				return -1;
			break;
		case 0xA:
			break;
		default:
			conn_fail(c, "unknown opcode from the server");
			return -1;
		}
		if (c->st == C_CLOSED)
			return -1;
	}
	return (long) off;
}

/* Appends len bytes to c->in. */
static void
in_append(conn *c, const unsigned char *data, size_t len)
{
	if (c->in_len + len > c->in_cap) {
		size_t cap = c->in_cap ? c->in_cap : 1024;
		while (cap < c->in_len + len)
			cap *= 2;
		c->in = xrealloc(c->in, cap);
		c->in_cap = cap;
	}
	memcpy(c->in + c->in_len, data, len);
	c->in_len += len;
}

/*
 * Reads what the socket has into a shared scratch buffer and parses it there;
 * only the tail of an incomplete frame is kept in c->in, so an idle
 * connection holds no input buffer.
 */
static void
on_readable(conn *c)
{
	static unsigned char scratch[READ_CHUNK];
	ssize_t n = recv(c->fd, scratch, sizeof scratch, 0);
	double t = now_ms();

	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		conn_fail(c, strerror(errno));
		return;
	}
	if (n == 0) {
		conn_fail(c, "connection closed by the server");
		return;
	}
	const unsigned char *buf = scratch;
	size_t len = (size_t) n;
	if (c->in_len > 0 || c->st == C_HANDSHAKE) {
		in_append(c, scratch, len);
		if (c->st == C_HANDSHAKE && (on_handshake(c) < 0 || c->st == C_HANDSHAKE))
			return;
		buf = c->in;
		len = c->in_len;
	}
	if (c->st != C_HELLO && c->st != C_READY)
		return;
	long used = parse_frames(c, buf, len, t);
	if (used < 0 || c->st == C_CLOSED)
		return;
	size_t left = len - (size_t) used;
	if (buf == scratch) {
		if (left)
			in_append(c, scratch + used, left);
	} else {
		memmove(c->in, c->in + used, left);
		c->in_len = left;
		if (left == 0 && c->in_cap > READ_CHUNK) {
			free(c->in);
			c->in = NULL;
			c->in_cap = 0;
		}
	}
	if (c->in_len > MAX_MESSAGE + 64)
		conn_fail(c, "input buffer overflow");
}

static void
on_writable(conn *c)
{
	if (c->st == C_CONNECTING) {
		int err = 0;
		socklen_t l = sizeof err;
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
		if (err) {
			conn_fail(c, strerror(err));
			return;
		}
		c->st = C_HANDSHAKE;
	}
	flush_out(c);
}


/* ------------------------------------------------------------ the loop */

/* Runs the loop for at most timeout_ms (0: one non-blocking pass). */
static void
poll_once(double timeout_ms)
{
	struct epoll_event evs[512];
	int n = epoll_wait(epfd, evs, 512, timeout_ms <= 0 ? 0 : (int) ceil(timeout_ms));

	for (int i = 0; i < n; i++) {
		conn *c = &conns[evs[i].data.u32];
		if (c->st == C_CLOSED || c->fd < 0)
			continue;
		if (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
			on_writable(c);
		if (c->st != C_CLOSED && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
			on_readable(c);
	}
}

/* Opens every connection, SETUP_CONCURRENCY in setup at a time, until all
 * have their welcome; exits 1 when one fails or 120 s pass. */
static void
setup(void)
{
	double deadline = now_ms() + 120000;
	int next = 0;

	for (;;) {
		int in_setup = started - nready - nsetup_failed - nclosed_unexpected;
		while (next < opt.nconns && in_setup < SETUP_CONCURRENCY) {
			conn_start(&conns[next++]);
			in_setup++;
		}
		if (nsetup_failed) {
			fprintf(stderr, "slowload: %d connection(s) failed during setup (%d ready)\n", nsetup_failed,
			        nready);
			exit(1);
		}
		if (next == opt.nconns && nready == opt.nconns)
			return;
		if (interrupted || now_ms() > deadline) {
			fprintf(stderr, "slowload: setup %s with %d of %d connections ready\n",
			        interrupted ? "interrupted" : "timed out", nready, opt.nconns);
			exit(1);
		}
		poll_once(50);
	}
}

static int
cmp_float(const void *a, const void *b)
{
	float x = *(const float *) a, y = *(const float *) b;
	return x < y ? -1 : x > y;
}

/* The q-quantile (nearest rank) of n sorted values. */
static double
quantile(const float *v, size_t n, double q)
{
	if (n == 0)
		return 0;
	size_t k = (size_t) ceil(q * (double) n);
	if (k < 1)
		k = 1;
	return v[k - 1];
}

static double
median(double *v, int n)
{
	if (n == 0)
		return 0;
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
			double x = v[j];
			v[j] = v[j - 1];
			v[j - 1] = x;
		}
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Reads FILE's "FINAL_SEQ COUNT"; false while it is missing or incomplete. */
static bool
read_expect(unsigned long long *final, unsigned long long *count)
{
	FILE *f = fopen(opt.expect, "r");
	bool ok = f && fscanf(f, "%llu %llu", final, count) == 2;

	if (f)
		fclose(f);
	return ok;
}

static int
run_sub(void)
{
	unsigned long long final = 0, count = 0;
	double t_expect = -1, t_done = -1, next_check = 0;
	int ncomplete = 0, nclosed = 0;

	setup();
	printf("ready %d\n", nready);
	fflush(stdout);
	while (!interrupted) {
		poll_once(100);
		double now = now_ms();
		if (t_expect < 0 && now >= next_check) {
			next_check = now + 100;
			if (read_expect(&final, &count))
				t_expect = now;
		}
		if (t_expect < 0)
			continue;
		ncomplete = nclosed = 0;
		for (int i = 0; i < opt.nconns; i++) {
			conn *c = &conns[i];
			if (!c->complete && c->last_seq == final && c->nchanges == count && !c->violations)
				c->complete = true;
			ncomplete += c->complete;
			nclosed += !c->complete && c->st == C_CLOSED;
		}
		if (ncomplete == opt.nconns) {
			t_done = now;
			break;
		}
		if (ncomplete + nclosed == opt.nconns || now - t_expect > opt.timeout * 1000)
			break;
	}

	/* the figures */
	size_t nall = 0;
	for (int w = 0; w < nwin; w++)
		nall += win[w].n;
	float *all = xrealloc(NULL, (nall ? nall : 1) * sizeof *all);
	double p50w[MAX_WINDOWS], p99w[MAX_WINDOWS];
	char w50[MAX_WINDOWS * 12 + 1] = "", w99[MAX_WINDOWS * 12 + 1] = "";
	size_t k = 0;
	int nw = 0;
	for (int w = 0; w < nwin; w++) {
		samples *s = &win[w];
		memcpy(all + k, s->v, s->n * sizeof *all);
		k += s->n;
		qsort(s->v, s->n, sizeof *s->v, cmp_float);
		p50w[nw] = quantile(s->v, s->n, 0.5);
		p99w[nw] = quantile(s->v, s->n, 0.99);
		snprintf(w50 + strlen(w50), 13, "%s%.1f", nw ? "/" : "", p50w[nw]);
		snprintf(w99 + strlen(w99), 13, "%s%.1f", nw ? "/" : "", p99w[nw]);
		nw++;
	}
	qsort(all, nall, sizeof *all, cmp_float);
	unsigned long violations = 0;
	for (int i = 0; i < opt.nconns; i++) {
		conn *c = &conns[i];
		violations += c->violations;
		if (!c->complete && t_expect >= 0 && errors_printed++ < 10)
			fprintf(stderr, "slowload: connection %d: incomplete: %llu changes (of %llu), last seq %llu (of %llu)%s\n",
			        i, (unsigned long long) c->nchanges, count, (unsigned long long) c->last_seq, final,
			        c->st == C_CLOSED ? ", closed" : "");
	}
	printf("result conns=%d complete=%d violations=%lu closed=%d errors=%d changes=%llu foreign=%llu "
	       "samples=%zu p50_ms=%.2f p99_ms=%.2f max_ms=%.2f windows=%d win_p50_ms=%s win_p99_ms=%s "
	       "med_win_p50_ms=%.2f med_win_p99_ms=%.2f catchup_ms=%.0f\n",
	       opt.nconns, ncomplete, violations, nclosed_unexpected, nerrors, total_changes, foreign, nall,
	       quantile(all, nall, 0.5), quantile(all, nall, 0.99), nall ? all[nall - 1] : 0.0, nw,
	       nw ? w50 : "-", nw ? w99 : "-", median(p50w, nw), median(p99w, nw),
	       t_done >= 0 ? t_done - t_expect : -1.0);
	free(all);
	return ncomplete == opt.nconns && nerrors == 0 ? 0 : 1;
}

static int
run_pub(void)
{
	conn *c = &conns[0];
	long total = lround(opt.rate * opt.seconds), sent = 0;
	double interval = 1000.0 / opt.rate, late = 0;
	char *pad = xrealloc(NULL, (size_t) opt.pad + 1), *buf = xrealloc(NULL, (size_t) opt.pad + 1024);
	uint32_t run;

	memset(pad, 'x', (size_t) opt.pad);
	pad[opt.pad] = '\0';
	run = (uint32_t) rnd();
	setup();
	printf("ready\n");
	fflush(stdout);
	double t0 = now_ms() + 20;
	while (sent < total && !interrupted && c->st == C_READY) {
		double due = t0 + (double) sent * interval, t = now_ms();
		if (t < due) {
			poll_once(due - t);
			continue;
		}
		if (t - due > late)
			late = t - due;
		char hlc[17];
		hlc_now(hlc);
		long n = ++sent;
		long long us = (long long) (now_ms() * 1000);
		int len = snprintf(buf, (size_t) opt.pad + 1024,
		                   "{\"type\":\"push\",\"ops\":[{\"id\":\"%08x-0000-4000-8000-%012lx\","
		                   "\"table\":\"items\",\"row\":\"%s-%ld\",\"kind\":\"upsert\","
		                   "\"fields\":{\"grp\":\"%s\",\"n\":%ld,\"t\":%lld,\"pad\":\"%s\"},"
		                   "\"hlc\":\"%s\"}]}",
		                   run, n, opt.prefix, n, opt.group, n, us, pad, hlc);
		send_text(c, buf, (size_t) len);
		poll_once(0);
	}
	double deadline = now_ms() + 30000;
	while (!interrupted && acked < (unsigned long long) sent && now_ms() < deadline && c->st == C_READY)
		poll_once(50);
	printf("result sent=%ld acked=%llu rejected=%llu errors=%d closed=%d late_ms=%.1f\n", sent, acked,
	       rejected, nerrors, nclosed_unexpected, late);
	free(pad);
	free(buf);
	return sent == total && acked == (unsigned long long) sent && rejected == 0 && nerrors == 0 ? 0 : 1;
}

static void
usage(FILE *f)
{
	fprintf(f,
	        "usage: slowload sub --port P --token T --group G --cursor C [--conns N] --expect FILE\n"
	        "                    [--timeout S] [--rcvbuf B] [--warm-ops W] [--window-ops K] [--host H]\n"
	        "                    [--extra-group PREFIX]\n"
	        "       slowload pub --port P --token T --group G --rate R --seconds S [--pad BYTES]\n"
	        "                    [--prefix ROWPREFIX] [--host H]\n");
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "host", required_argument, NULL, 'H' },
		{ "port", required_argument, NULL, 'p' },
		{ "conns", required_argument, NULL, 'n' },
		{ "token", required_argument, NULL, 't' },
		{ "group", required_argument, NULL, 'g' },
		{ "cursor", required_argument, NULL, 'c' },
		{ "expect", required_argument, NULL, 'e' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "rcvbuf", required_argument, NULL, 'b' },
		{ "warm-ops", required_argument, NULL, 'W' },
		{ "window-ops", required_argument, NULL, 'K' },
		{ "rate", required_argument, NULL, 'r' },
		{ "seconds", required_argument, NULL, 's' },
		{ "pad", required_argument, NULL, 'P' },
		{ "prefix", required_argument, NULL, 'x' },
		{ "extra-group", required_argument, NULL, 'X' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	if (argc < 2 || (strcmp(argv[1], "sub") && strcmp(argv[1], "pub"))) {
		usage(stderr);
		return 2;
	}
	opt.mode = strcmp(argv[1], "sub") ? M_PUB : M_SUB;
	optind = 2;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'H': opt.host = optarg; break;
		case 'p': opt.port = atoi(optarg); break;
		case 'n': opt.nconns = atoi(optarg); break;
		case 't': opt.token = optarg; break;
		case 'g': opt.group = optarg; break;
		case 'c': opt.cursor = strtoull(optarg, NULL, 10); break;
		case 'e': opt.expect = optarg; break;
		case 'T': opt.timeout = atof(optarg); break;
		case 'b': opt.rcvbuf = atoi(optarg); break;
		case 'W': opt.warm_ops = atol(optarg); break;
		case 'K': opt.window_ops = atol(optarg); break;
		case 'r': opt.rate = atof(optarg); break;
		case 's': opt.seconds = atof(optarg); break;
		case 'P': opt.pad = atoi(optarg); break;
		case 'x': opt.prefix = optarg; break;
		case 'X': opt.extra_group = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (opt.mode == M_PUB)
		opt.nconns = 1;
	if (optind < argc || opt.port <= 0 || opt.port > 65535 || opt.nconns < 1 || !opt.token ||
	    opt.timeout <= 0 || opt.window_ops < 1 || opt.warm_ops < 0 || opt.rate <= 0 || opt.seconds < 0 ||
	    opt.pad < 0 || opt.pad > (1 << 20) || (opt.mode == M_SUB && (!opt.expect || opt.cursor == 0))) {
		usage(stderr);
		return 2;
	}

	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);

	FILE *ur = fopen("/dev/urandom", "r");
	if (!ur || fread(&rng_state, sizeof rng_state, 1, ur) != 1) {
		fprintf(stderr, "slowload: cannot read /dev/urandom\n");
		return 1;
	}
	fclose(ur);
	rng_state |= 1;

	conns = xrealloc(NULL, sizeof(conn) * (size_t) opt.nconns);
	memset(conns, 0, sizeof(conn) * (size_t) opt.nconns);
	for (int i = 0; i < opt.nconns; i++) {
		conns[i].fd = -1;
		conns[i].idx = i;
	}
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0) {
		perror("slowload: epoll_create1");
		return 1;
	}
	int status = opt.mode == M_SUB ? run_sub() : run_pub();
	fflush(stdout);
	for (int i = 0; i < opt.nconns; i++)
		conn_close(&conns[i]);
	return status;
}

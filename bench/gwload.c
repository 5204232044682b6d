/*
 * bench/gwload.c: the WebSocket load generator of the gateway benchmarks
 * (bench/gateway.sh).
 *
 * One process, one thread, one epoll loop driving many client connections
 * on loopback, each a hand-written RFC 6455 client (no libwebsockets, so a
 * bug shared by the gateway and lws's client side cannot hide): the opening
 * handshake with Sec-WebSocket-Protocol: synclog.v1 (the server's
 * Sec-WebSocket-Accept is checked), masked frames out, unmasked frames in,
 * fragmented messages reassembled, pings answered with pongs (the gateway
 * pings idle connections), a close answered with a close.  Connections are
 * opened CONCURRENCY at a time, each sends its hello and counts as ready once
 * the welcome (and, with cursor 0, the last snapshot chunk) has arrived.  A
 * socket is closed with SO_LINGER 0 (a reset), so runs of thousands of
 * connections leave no TIME_WAIT behind to exhaust loopback ports.
 *
 * Modes (--mode):
 *   idle    opens --conns connections, prints "ready N" on stdout once all
 *           are ready, then holds them idle until SIGTERM/SIGINT, EOF on
 *           stdin, or --seconds pass.  The memory benchmark reads the
 *           server's RSS meanwhile.
 *   fanout  --conns subscribers plus one publisher connection.  Once all are
 *           ready, the publisher sends a warm-up op and waits until every
 *           subscriber has it (so every subscriber is known to be live), then
 *           sends one op every 1000/--rate ms, for --warmup seconds (default
 *           1, not counted: the first ops after a quiet spell are slower) and
 *           then for --seconds; each op's id encodes its number.  The latency of an op is the time from the
 *           publisher's write() to the read() that brought it to the LAST
 *           subscriber (the max over subscribers).  After the last op it
 *           waits up to --drain seconds (default 10) for every op to reach
 *           every subscriber; an op that did not counts with the time waited
 *           for it (a lower bound).  Prints p50/p99/max over the measured
 *           ops, and how many never reached every subscriber.
 *   push    --conns clients, each sending a push of --batch ops, waiting for
 *           its ack, and sending the next, for --seconds from the moment all
 *           are ready; ops/s counts the ops acked within that window.  Half
 *           the ops of a batch create rows, half update rows of the client's
 *           own slice, seeded by gateway.sh as
 *           "%08x-0000-4000-a000-%012x" (client, 1..--rows-per-client), so
 *           clients never wait on each other's row locks.  The clients
 *           subscribe to the group like any client, so the gateway also fans
 *           every change out to all of them; with --own-groups, connection N
 *           follows and writes group "GROUP-N" instead (its rows seeded
 *           there), so each change goes back to its writer only.
 *
 * --raw (the baseline, bench/lwsbcast): no hello (a connection is ready after
 * the handshake), and the publisher sends, instead of a push, the changes
 * frame of --template (a frame the gateway sent, saved by an earlier
 * --sample-out run) with its op_id replaced by the op's, so the baseline
 * carries the same bytes.
 *
 * --pgss CONNINFO (fanout, against the gateway): after the warm-up, LISTEN
 * synclog and pg_stat_statements_reset() on a connection of its own; after
 * the measured ops have been delivered (and a quiet second), counts the
 * NOTIFY synclog received meanwhile and the calls pg_stat_statements holds
 * for role --pgss-role other than synclog.push itself; --pgss-out FILE gets
 * the per-statement breakdown.
 *
 * Output: one line of key=value pairs on stdout (mode-specific; always
 * errors=); diagnostics on stderr.  Exit status 0 when the run completed
 * (whether or not every op arrived: that is in the figures), 1 when
 * connections could not be set up or the server closed one during a
 * measurement, 2 on bad arguments.
 *
 * Op ids are "PPPPPPPP-CCCC-4000-8000-NNNNNNNNNNNN": a random run prefix P,
 * the connection C and a number N, so a change is matched to its op without
 * a lookup and changes from other runs are ignored.  Masks come from a
 * xorshift generator, not a strong one: the peer is our own server.
 */
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

#include <libpq-fe.h>

#define MAX_MESSAGE (16u << 20)   /* a longer message from the server is an error */
#define READ_CHUNK 65536
#define OPID_LEN 36

typedef enum { M_IDLE, M_FANOUT, M_PUSH } run_mode;

/* A connection's state: one case per step of its life. */
typedef enum {
	C_NEW,          /* not started */
	C_CONNECTING,   /* connect() in progress */
	C_HANDSHAKE,    /* request sent, waiting for the 101 */
	C_HELLO,        /* hello sent, waiting for welcome (and snapshot done) */
	C_READY,
	C_CLOSED
} conn_state;

/* One of these per client connection. */
typedef struct conn {
	int fd;
	int idx;
	conn_state st;
	bool is_pub;            /* the fanout publisher */
	bool want_out;          /* EPOLLOUT registered */
	bool welcomed;
	char accept[29];        /* the Sec-WebSocket-Accept expected */
	unsigned char *in;      /* bytes read, not yet parsed */
	size_t in_len, in_cap;
	unsigned char *msg;     /* a fragmented message being reassembled */
	size_t msg_len, msg_cap;
	int msg_op;             /* its opcode, 0 when none */
	unsigned char *out;     /* bytes to write */
	size_t out_off, out_len, out_cap;
	/* push mode */
	bool in_flight;
	double push_t;
	uint64_t opseq;
	bool sampled;
} conn;

static struct {
	run_mode mode;
	bool raw;
	const char *host;
	int port;
	int nconns;
	double rate;
	double seconds;
	double warmup;
	double drain;
	int batch;
	int rows_per_client;
	const char *token;
	const char *group;
	bool own_groups;
	unsigned long long cursor;
	int concurrency;
	double setup_timeout;
	const char *template_file;
	const char *sample_out;
	const char *samples_file;
	const char *pgss;
	const char *pgss_role;
	const char *pgss_out;
} opt = {
	.mode = M_IDLE, .host = "127.0.0.1", .nconns = 1, .rate = 100, .seconds = 5, .warmup = 1, .drain = 10, .batch = 10,
	.rows_per_client = 200, .token = "", .group = "g1", .concurrency = 200, .setup_timeout = 120,
};

static conn *conns;
static int nall;               /* connections in all: nconns, + 1 publisher in fanout */
static int epfd;
static uint32_t prefix;        /* run prefix of op ids */
static uint64_t rng_state;
static volatile sig_atomic_t interrupted;
static bool stdin_eof;

static int started, nready, nclosed_unexpected, nerrors, nsetup_failed;
static unsigned long pings, errors_printed;

/* fanout */
static int nops;                /* ops planned, index 0 is the warm-up */
static double *op_sent;         /* write() time, < 0 before sent */
static double *op_lat;          /* max over subscribers so far */
static int *op_count;           /* subscribers that got it */
static int ops_sent;
static unsigned long acks, rejected, dup_deliveries, foreign_changes;
static char *tmpl;              /* raw mode: the changes frame */
static size_t tmpl_len, tmpl_opid;

/* push */
static unsigned long long pushes_acked, ops_acked_window, pushes_window, ops_rejected;
static double window_start, window_end;
static double *ack_lat;
static size_t nack_lat, cap_ack_lat;

/* pgss */
static PGconn *pg;
static unsigned long notifications;

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
		fprintf(stderr, "gwload: out of memory\n");
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
		fprintf(stderr, "gwload: out of memory\n");
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
		fprintf(stderr, "gwload: connection %d%s: %s\n", c->idx, c->is_pub ? " (publisher)" : "", why);
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
		fprintf(stderr, "gwload: --host %s: not an IPv4 address\n", opt.host);
		exit(2);
	}
	started++;
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		c->st = C_CONNECTING;
		conn_fail(c, strerror(errno));
		return;
	}
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t) c->idx };
	epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
	c->want_out = true;
	c->st = C_CONNECTING;

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

static void
uuid_of(char out[OPID_LEN + 1], uint32_t pfx, unsigned kind, unsigned conn_no, uint64_t n)
{
	snprintf(out, OPID_LEN + 1, "%08x-%04x-4000-%04x-%012llx", pfx, conn_no & 0xffff, kind,
	         (unsigned long long) (n & 0xffffffffffffULL));
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

/* The group connection c follows and writes to: --group, or with
 * --own-groups "GROUP-N" for connection N. */
static const char *
group_of(const conn *c)
{
	static char buf[128];

	if (!opt.own_groups)
		return opt.group;
	snprintf(buf, sizeof buf, "%s-%d", opt.group, c->idx);
	return buf;
}

static void
send_hello(conn *c)
{
	char buf[1024], hlc[17];
	int n;

	hlc_now(hlc);
	n = snprintf(buf, sizeof buf,
	             "{\"type\":\"hello\",\"client_id\":\"gwload-%08x-%d\",\"token\":\"%s\","
	             "\"groups\":[\"%s\"],\"cursor\":%llu,\"hlc\":\"%s\"}",
	             prefix, c->idx, opt.token, group_of(c), opt.cursor, hlc);
	c->st = C_HELLO;
	send_text(c, buf, (size_t) n);
}

static void
set_ready(conn *c)
{
	c->st = C_READY;
	nready++;
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
	if (opt.raw)
		set_ready(c);
	else
		send_hello(c);
	return 0;
}

/* ------------------------------------------------------------ messages */

/*
 * Finds the next `"key"` followed by optional blanks and a colon, at or after
 * from; returns where its value starts (blanks skipped), or NULL.  The
 * gateway passes change objects through as PostgreSQL prints jsonb, with a
 * blank after each colon, and writes its own frames compactly: both do.
 */
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

static int
hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	return -1;
}

/* Records every op_id of a changes (or raw) frame that reached subscriber c at t. */
static void
scan_changes(conn *c, const char *m, size_t len, double t)
{
	const char *p = m, *end = m + len;
	char pfx[9];

	snprintf(pfx, sizeof pfx, "%08x", prefix);
	while ((p = find_key(p, end, "\"op_id\"")) != NULL) {
		if (end - p < OPID_LEN + 1 || *p != '"')
			break;
		p++;
		if (memcmp(p, pfx, 8) != 0) {
			foreign_changes++;
			continue;
		}
		uint64_t n = 0;
		bool ok = true;
		for (int i = 24; i < OPID_LEN; i++) {
			int v = hexval((unsigned char) p[i]);
			if (v < 0)
				ok = false;
			n = n << 4 | (uint64_t) (v < 0 ? 0 : v);
		}
		if (!ok || n >= (uint64_t) nops || op_sent[n] < 0) {
			foreign_changes++;
			continue;
		}
		if (op_count[n] >= opt.nconns) {
			dup_deliveries++;
			continue;
		}
		op_count[n]++;
		if (t - op_sent[n] > op_lat[n])
			op_lat[n] = t - op_sent[n];
		if (opt.sample_out && !c->sampled && c->idx == 0) {
			FILE *f = fopen(opt.sample_out, "w");
			if (f) {
				fwrite(m, 1, len, f);
				fclose(f);
			}
			c->sampled = true;
		}
	}
}

static void push_next(conn *c, double t);

/* Counts the ids in the "rejected" array of an ack (0 when it is empty). */
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

/* A whole text message from the server, read at time t. */
static void
on_message(conn *c, const char *m, size_t len, double t)
{
	char type[32];

	if (opt.raw) {
		if (opt.mode == M_FANOUT && !c->is_pub)
			scan_changes(c, m, len, t);
		return;
	}
	msg_type(m, len, type, sizeof type);
	if (!strcmp(type, "changes")) {
		if (opt.mode == M_FANOUT && !c->is_pub)
			scan_changes(c, m, len, t);
	} else if (!strcmp(type, "ack")) {
		unsigned long r = count_rejected(m, len);
		if (r && errors_printed++ < 5)
			fprintf(stderr, "gwload: connection %d: ops rejected: %.300s\n", c->idx, m);
		if (opt.mode == M_FANOUT) {
			acks++;
			rejected += r;
		} else if (opt.mode == M_PUSH && c->in_flight) {
			c->in_flight = false;
			pushes_acked++;
			ops_rejected += r;
			if (t >= window_start && t <= window_end) {
				ops_acked_window += (unsigned long long) opt.batch - r;
				pushes_window++;
				if (nack_lat == cap_ack_lat) {
					cap_ack_lat = cap_ack_lat ? cap_ack_lat * 2 : 4096;
					ack_lat = xrealloc(ack_lat, cap_ack_lat * sizeof *ack_lat);
				}
				ack_lat[nack_lat++] = t - c->push_t;
			}
			push_next(c, t);
		}
	} else if (!strcmp(type, "welcome")) {
		c->welcomed = true;
		if (c->st == C_HELLO && opt.cursor > 0)
			set_ready(c);
	} else if (!strcmp(type, "snapshot")) {
		const char *d = find_key(m, m + len, "\"done\"");
		if (c->st == C_HELLO && d && m + len - d >= 4 && !memcmp(d, "true", 4))
			set_ready(c);
	} else if (!strcmp(type, "error")) {
		nerrors++;
		if (errors_printed++ < 5)
			fprintf(stderr, "gwload: connection %d: %.300s\n", c->idx, m);
		if (c->st == C_HELLO)
			conn_fail(c, "error frame answering the hello");
	}
}

/*
 * Parses the whole frames at the start of buf; returns the bytes they took,
 * or -1 when the connection failed or closed (c's buffers are freed then).
 */
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

static void
pg_drain(void)
{
	PGnotify *n;

	if (!PQconsumeInput(pg)) {
		fprintf(stderr, "gwload: pgss connection: %s", PQerrorMessage(pg));
		exit(1);
	}
	while ((n = PQnotifies(pg)) != NULL) {
		if (!strcmp(n->relname, "synclog"))
			notifications++;
		PQfreemem(n);
	}
}

#define EV_STDIN 0xfffffffeu
#define EV_PG 0xfffffffdu

/* Runs the loop for at most timeout_ms (0: one non-blocking pass). */
static void
poll_once(double timeout_ms)
{
	struct epoll_event evs[512];
	int n = epoll_wait(epfd, evs, 512, timeout_ms <= 0 ? 0 : (int) ceil(timeout_ms));

	for (int i = 0; i < n; i++) {
		uint32_t id = evs[i].data.u32;
		if (id == EV_STDIN) {
			char b[256];
			ssize_t r = read(0, b, sizeof b);
			if (r <= 0) {
				stdin_eof = true;
				epoll_ctl(epfd, EPOLL_CTL_DEL, 0, NULL);
			}
			continue;
		}
		if (id == EV_PG) {
			pg_drain();
			continue;
		}
		conn *c = &conns[id];
		if (c->st == C_CLOSED || c->fd < 0)
			continue;
		if (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
			on_writable(c);
		if (c->st != C_CLOSED && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
			on_readable(c);
	}
}

/* Opens connections [from, to), CONCURRENCY in setup at a time, until all
 * are ready; exits 1 when one fails or the setup timeout passes. */
static void
setup(int from, int to)
{
	double deadline = now_ms() + opt.setup_timeout * 1000;
	int next = from;

	for (;;) {
		int in_setup = started - nready - nsetup_failed - nclosed_unexpected;
		while (next < to && in_setup < opt.concurrency) {
			conn_start(&conns[next++]);
			in_setup++;
		}
		if (nsetup_failed) {
			fprintf(stderr, "gwload: %d connection(s) failed during setup (%d ready)\n", nsetup_failed, nready);
			exit(1);
		}
		if (next == to && nready == to)
			return;
		if (interrupted || now_ms() > deadline) {
			fprintf(stderr, "gwload: setup %s with %d of %d connections ready\n",
			        interrupted ? "interrupted" : "timed out", nready, to);
			exit(1);
		}
		poll_once(50);
	}
}

static void
run_idle(void)
{
	double end = opt.seconds > 0 ? now_ms() + opt.seconds * 1000 : 0;

	printf("ready %d\n", nready);
	fflush(stdout);
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = EV_STDIN };
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &ev) != 0)
		stdin_eof = false; /* not pollable (a file): ignore stdin */
	while (!interrupted && !stdin_eof && (end == 0 || now_ms() < end))
		poll_once(200);
	printf("mode=idle conns=%d ready=%d closed=%d errors=%d pings=%lu\n", opt.nconns, nready,
	       nclosed_unexpected, nerrors, pings);
}

/* The publisher sends op i (its write() time is op_sent[i]). */
static void
publish(conn *pub, int i)
{
	char id[OPID_LEN + 1], row[OPID_LEN + 1], hlc[17], buf[1024];
	int n;

	uuid_of(id, prefix, 0x8000, 0xffff, (uint64_t) i);
	if (opt.raw) {
		memcpy(tmpl + tmpl_opid, id, OPID_LEN);
		op_sent[i] = now_ms();
		send_text(pub, tmpl, tmpl_len);
	} else {
		uuid_of(row, prefix, 0x9000, 0xffff, (uint64_t) i);
		hlc_now(hlc);
		n = snprintf(buf, sizeof buf,
		             "{\"type\":\"push\",\"ops\":[{\"id\":\"%s\",\"table\":\"items\",\"row\":\"%s\","
		             "\"kind\":\"upsert\",\"fields\":{\"%s\":\"%s\",\"title\":\"fanout\",\"n\":%d},"
		             "\"hlc\":\"%s\"}]}",
		             id, row, "grp", opt.group, i, hlc);
		op_sent[i] = now_ms();
		send_text(pub, buf, (size_t) n);
	}
	ops_sent++;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *) a, y = *(const double *) b;
	return x < y ? -1 : x > y;
}

/* The q-quantile (nearest rank) of n sorted values. */
static double
quantile(const double *v, size_t n, double q)
{
	if (n == 0)
		return 0;
	size_t k = (size_t) ceil(q * (double) n);
	if (k < 1)
		k = 1;
	return v[k - 1];
}

static void
pgss_start(void)
{
	pg = PQconnectdb(opt.pgss);
	if (PQstatus(pg) != CONNECTION_OK) {
		fprintf(stderr, "gwload: --pgss: cannot connect: %s", PQerrorMessage(pg));
		exit(1);
	}
	PGresult *r = PQexec(pg, "LISTEN synclog");
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		fprintf(stderr, "gwload: LISTEN: %s", PQerrorMessage(pg));
		exit(1);
	}
	PQclear(r);
	r = PQexec(pg, "SELECT pg_stat_statements_reset()");
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		fprintf(stderr, "gwload: pg_stat_statements_reset(): %s", PQerrorMessage(pg));
		exit(1);
	}
	PQclear(r);
	pg_drain();
	notifications = 0;
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = EV_PG };
	epoll_ctl(epfd, EPOLL_CTL_ADD, PQsocket(pg), &ev);
}

/* Prints "queries=Q statements=S" for the role (synclog.push excluded). */
static void
pgss_finish(void)
{
	const char *params[1] = { opt.pgss_role };
	pg_drain();
	epoll_ctl(epfd, EPOLL_CTL_DEL, PQsocket(pg), NULL);
	PGresult *r = PQexecParams(pg,
	    "SELECT s.calls, regexp_replace(s.query, '\\s+', ' ', 'g') FROM pg_stat_statements s "
	    "JOIN pg_roles r ON r.oid = s.userid WHERE r.rolname = $1 ORDER BY s.calls DESC",
	    1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		fprintf(stderr, "gwload: reading pg_stat_statements: %s", PQerrorMessage(pg));
		exit(1);
	}
	FILE *f = opt.pgss_out ? fopen(opt.pgss_out, "w") : NULL;
	unsigned long long q = 0, pushq = 0;
	for (int i = 0; i < PQntuples(r); i++) {
		unsigned long long calls = strtoull(PQgetvalue(r, i, 0), NULL, 10);
		const char *text = PQgetvalue(r, i, 1);
		bool is_push = strstr(text, "synclog.push(") != NULL;
		if (is_push)
			pushq += calls;
		else
			q += calls;
		if (f)
			fprintf(f, "%llu\t%s\t%.300s\n", calls, is_push ? "excluded" : "counted", text);
	}
	if (f)
		fclose(f);
	PQclear(r);
	PQfinish(pg);
	pg = NULL;
	printf(" notifications=%lu queries=%llu push_calls=%llu", notifications, q, pushq);
}

/*
 * Publishes ops first..last (inclusive) on the schedule t0 + k * interval,
 * k counting from first; returns when all are sent (or the publisher closed).
 */
static void
publish_range(conn *pub, int first, int last, double t0, double interval)
{
	for (int i = first; i <= last && !interrupted && pub->st != C_CLOSED;) {
		double due = t0 + (i - first) * interval, t = now_ms();
		if (t >= due) {
			publish(pub, i++);
			poll_once(0);
		} else {
			poll_once(due - t);
		}
	}
}

/* How many of ops first..last reached every subscriber. */
static int
count_complete(int first, int last)
{
	int n = 0;

	for (int i = first; i <= last; i++)
		if (op_count[i] >= opt.nconns)
			n++;
	return n;
}

static void
run_fanout(void)
{
	conn *pub = &conns[opt.nconns];
	int warm = (int) llround(opt.rate * opt.warmup), planned = nops - 1 - warm;
	int first = 1 + warm, last = nops - 1;
	double interval = 1000.0 / opt.rate;

	/* settle, then op 0: wait until every subscriber has it (all are live) */
	for (double e = now_ms() + 300; now_ms() < e;)
		poll_once(e - now_ms());
	publish(pub, 0);
	double warm_deadline = now_ms() + 30000;
	while (op_count[0] < opt.nconns && now_ms() < warm_deadline && !interrupted && pub->st != C_CLOSED)
		poll_once(50);
	if (op_count[0] < opt.nconns) {
		fprintf(stderr, "gwload: the first op reached %d of %d subscribers within 30 s\n", op_count[0],
		        opt.nconns);
		exit(1);
	}
	/* the warm-up ops, at the same rate, not counted */
	if (warm > 0)
		publish_range(pub, 1, warm, now_ms() + 20, interval);
	if (opt.pgss)
		pgss_start();

	int closed_before = nclosed_unexpected;
	publish_range(pub, first, last, now_ms() + (warm > 0 ? interval : 20), interval);
	/* wait for the stragglers: until all delivered, or --drain seconds */
	double deadline = now_ms() + opt.drain * 1000;
	while (!interrupted && now_ms() < deadline && count_complete(first, last) < planned)
		poll_once(20);
	if (opt.pgss) { /* the gateway's queries of the last wake-up to finish */
		for (double e = now_ms() + 1000; now_ms() < e;)
			poll_once(e - now_ms());
	}

	/* An op that never reached every subscriber counts with the time waited
	 * for it (a lower bound), so it cannot make the quantiles look better. */
	double *lat = xrealloc(NULL, sizeof(double) * (size_t) nops);
	double tend = now_ms();
	size_t nl = 0, incomplete = 0;
	unsigned long long deliveries = 0;
	int sent = 0;
	for (int i = first; i <= last; i++) {
		if (op_sent[i] < 0)
			continue;
		sent++;
		deliveries += (unsigned long long) op_count[i];
		if (op_count[i] >= opt.nconns) {
			lat[nl++] = op_lat[i];
		} else {
			lat[nl++] = tend - op_sent[i];
			incomplete++;
		}
	}
	if (opt.samples_file) {
		FILE *f = fopen(opt.samples_file, "w");
		if (f) {
			fprintf(f, "# op latency_ms(-1: not every subscriber) subscribers_reached (ops 1..%d: warm-up)\n",
			        warm);
			for (int i = 1; i <= last; i++)
				if (op_sent[i] >= 0)
					fprintf(f, "%d %.3f %d\n", i, op_count[i] >= opt.nconns ? op_lat[i] : -1.0, op_count[i]);
			fclose(f);
		}
	}
	qsort(lat, nl, sizeof *lat, cmp_double);
	double sum = 0;
	for (size_t i = 0; i < nl; i++)
		sum += lat[i];
	printf("mode=fanout%s subs=%d sent=%d incomplete=%zu deliveries=%llu p50_ms=%.3f p99_ms=%.3f "
	       "max_ms=%.3f mean_ms=%.3f dup=%lu foreign=%lu acks=%lu rejected=%lu closed=%d errors=%d pings=%lu",
	       opt.raw ? "-raw" : "", opt.nconns, sent, incomplete, deliveries,
	       quantile(lat, nl, 0.5), quantile(lat, nl, 0.99), nl ? lat[nl - 1] : 0, nl ? sum / (double) nl : 0,
	       dup_deliveries, foreign_changes, acks, rejected, nclosed_unexpected - closed_before, nerrors, pings);
	if (opt.pgss)
		pgss_finish();
	printf("\n");
	free(lat);
}

/* Sends client c's next push if the window is still open. */
static void
push_next(conn *c, double t)
{
	static char *buf;
	static size_t cap;
	size_t len = 0;
	char id[OPID_LEN + 1], row[OPID_LEN + 1], hlc[17];

	if (t >= window_end || interrupted || c->st != C_READY)
		return;
	size_t need = 64 + (size_t) opt.batch * 400;
	if (need > cap) {
		buf = xrealloc(buf, need);
		cap = need;
	}
	len += (size_t) snprintf(buf + len, cap - len, "{\"type\":\"push\",\"ops\":[");
	unsigned r = (unsigned) (rnd() & 1);
	for (int g = 1; g <= opt.batch; g++) {
		uuid_of(id, prefix, 0x8000, (unsigned) c->idx, c->opseq++);
		hlc_now(hlc);
		if ((g + r) % 2 == 0) {
			uuid_of(row, prefix, 0x9000, (unsigned) c->idx, c->opseq);
			len += (size_t) snprintf(buf + len, cap - len,
			    "%s{\"id\":\"%s\",\"table\":\"items\",\"row\":\"%s\",\"kind\":\"upsert\","
			    "\"fields\":{\"grp\":\"%s\",\"title\":\"new\",\"n\":%d},\"hlc\":\"%s\"}",
			    g > 1 ? "," : "", id, row, group_of(c), g, hlc);
		} else {
			unsigned k = 1 + (unsigned) (rnd() % (uint64_t) opt.rows_per_client);
			len += (size_t) snprintf(buf + len, cap - len,
			    "%s{\"id\":\"%s\",\"table\":\"items\",\"row\":\"%08x-0000-4000-a000-%012x\","
			    "\"kind\":\"upsert\",\"fields\":{\"title\":\"updated\",\"n\":%d},\"hlc\":\"%s\"}",
			    g > 1 ? "," : "", id, (unsigned) c->idx, k, g, hlc);
		}
	}
	len += (size_t) snprintf(buf + len, cap - len, "]}");
	c->in_flight = true;
	c->push_t = now_ms();
	send_text(c, buf, len);
}

static void
run_push(void)
{
	for (double e = now_ms() + 300; now_ms() < e;)
		poll_once(e - now_ms());
	window_start = now_ms();
	window_end = window_start + opt.seconds * 1000;
	for (int i = 0; i < opt.nconns; i++)
		push_next(&conns[i], window_start);
	while (!interrupted && now_ms() < window_end)
		poll_once(window_end - now_ms());
	/* let the pushes in flight finish, uncounted, so the gateway is idle */
	double deadline = now_ms() + 10000;
	for (;;) {
		int busy = 0;
		for (int i = 0; i < opt.nconns; i++)
			busy += conns[i].in_flight && conns[i].st == C_READY;
		if (!busy || now_ms() > deadline || interrupted)
			break;
		poll_once(20);
	}
	qsort(ack_lat, nack_lat, sizeof *ack_lat, cmp_double);
	double secs = (window_end - window_start) / 1000.0;
	printf("mode=push clients=%d batch=%d seconds=%.1f ops_acked=%llu pushes=%llu ops_per_s=%.1f "
	       "ack_p50_ms=%.3f ack_p99_ms=%.3f rejected=%llu closed=%d errors=%d pings=%lu\n",
	       opt.nconns, opt.batch, secs, ops_acked_window, pushes_window, (double) ops_acked_window / secs,
	       quantile(ack_lat, nack_lat, 0.5), quantile(ack_lat, nack_lat, 0.99), ops_rejected,
	       nclosed_unexpected, nerrors, pings);
}

static void
usage(FILE *f)
{
	fprintf(f,
	        "usage: gwload --port PORT [--host 127.0.0.1] [--mode idle|fanout|push] [--conns N]\n"
	        "              [--token TOKEN] [--group g1] [--own-groups] [--cursor N] [--raw]\n"
	        "              [--template FILE] [--rate OPS_PER_S] [--seconds S] [--warmup S]\n"
	        "              [--drain S] [--batch B] [--rows-per-client R] [--concurrency K]\n"
	        "              [--setup-timeout S] [--sample-out FILE] [--samples FILE]\n"
	        "              [--pgss CONNINFO --pgss-role ROLE [--pgss-out FILE]]\n");
}

static void
load_template(void)
{
	static const char dflt[] =
	    "{\"type\":\"changes\",\"changes\":[{\"seq\":1,\"op_id\":\"00000000-0000-0000-0000-000000000000\","
	    "\"client_id\":\"gwload\",\"table\":\"items\",\"row\":\"00000000-0000-0000-0000-000000000000\","
	    "\"kind\":\"upsert\",\"fields\":{\"grp\":\"g1\",\"title\":\"fanout\",\"n\":1},"
	    "\"hlc\":\"0000000000000000\"}],\"cursor\":1}";

	if (opt.template_file) {
		FILE *f = fopen(opt.template_file, "r");
		if (!f) {
			fprintf(stderr, "gwload: --template %s: %s\n", opt.template_file, strerror(errno));
			exit(2);
		}
		tmpl = xrealloc(NULL, MAX_MESSAGE);
		tmpl_len = fread(tmpl, 1, MAX_MESSAGE, f);
		fclose(f);
	} else {
		tmpl = strdup(dflt);
		tmpl_len = strlen(dflt);
	}
	const char *p = find_key(tmpl, tmpl + tmpl_len, "\"op_id\"");
	if (!p || *p != '"' || (size_t) (p + 1 - tmpl) + OPID_LEN > tmpl_len) {
		fprintf(stderr, "gwload: the template has no op_id\n");
		exit(2);
	}
	tmpl_opid = (size_t) (p + 1 - tmpl);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "mode", required_argument, NULL, 'm' },
		{ "host", required_argument, NULL, 'H' },
		{ "port", required_argument, NULL, 'p' },
		{ "conns", required_argument, NULL, 'n' },
		{ "rate", required_argument, NULL, 'r' },
		{ "seconds", required_argument, NULL, 's' },
		{ "warmup", required_argument, NULL, 'W' },
		{ "drain", required_argument, NULL, 'D' },
		{ "batch", required_argument, NULL, 'b' },
		{ "rows-per-client", required_argument, NULL, 'R' },
		{ "token", required_argument, NULL, 't' },
		{ "group", required_argument, NULL, 'g' },
		{ "own-groups", no_argument, NULL, 'G' },
		{ "cursor", required_argument, NULL, 'c' },
		{ "concurrency", required_argument, NULL, 'k' },
		{ "setup-timeout", required_argument, NULL, 'T' },
		{ "raw", no_argument, NULL, 'w' },
		{ "template", required_argument, NULL, 'L' },
		{ "sample-out", required_argument, NULL, 'o' },
		{ "samples", required_argument, NULL, 'S' },
		{ "pgss", required_argument, NULL, 'P' },
		{ "pgss-role", required_argument, NULL, 'U' },
		{ "pgss-out", required_argument, NULL, 'O' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'm':
			if (!strcmp(optarg, "idle"))
				opt.mode = M_IDLE;
			else if (!strcmp(optarg, "fanout"))
				opt.mode = M_FANOUT;
			else if (!strcmp(optarg, "push"))
				opt.mode = M_PUSH;
			else {
				usage(stderr);
				return 2;
			}
			break;
		case 'H': opt.host = optarg; break;
		case 'p': opt.port = atoi(optarg); break;
		case 'n': opt.nconns = atoi(optarg); break;
		case 'r': opt.rate = atof(optarg); break;
		case 's': opt.seconds = atof(optarg); break;
		case 'W': opt.warmup = atof(optarg); break;
		case 'D': opt.drain = atof(optarg); break;
		case 'b': opt.batch = atoi(optarg); break;
		case 'R': opt.rows_per_client = atoi(optarg); break;
		case 't': opt.token = optarg; break;
		case 'g': opt.group = optarg; break;
		case 'G': opt.own_groups = true; break;
		case 'c': opt.cursor = strtoull(optarg, NULL, 10); break;
		case 'k': opt.concurrency = atoi(optarg); break;
		case 'T': opt.setup_timeout = atof(optarg); break;
		case 'w': opt.raw = true; break;
		case 'L': opt.template_file = optarg; break;
		case 'o': opt.sample_out = optarg; break;
		case 'S': opt.samples_file = optarg; break;
		case 'P': opt.pgss = optarg; break;
		case 'U': opt.pgss_role = optarg; break;
		case 'O': opt.pgss_out = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc || opt.port <= 0 || opt.port > 65535 || opt.nconns < 1 || opt.rate <= 0 ||
	    opt.seconds < 0 || opt.warmup < 0 || opt.drain < 0 || opt.batch < 1 || opt.rows_per_client < 1 || opt.concurrency < 1 ||
	    (opt.pgss && !opt.pgss_role) || (opt.mode == M_PUSH && opt.raw)) {
		usage(stderr);
		return 2;
	}

	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);

	FILE *ur = fopen("/dev/urandom", "r");
	if (!ur || fread(&rng_state, sizeof rng_state, 1, ur) != 1 || fread(&prefix, sizeof prefix, 1, ur) != 1) {
		fprintf(stderr, "gwload: cannot read /dev/urandom\n");
		return 1;
	}
	fclose(ur);
	rng_state |= 1;

	nall = opt.nconns + (opt.mode == M_FANOUT ? 1 : 0);
	conns = xrealloc(NULL, sizeof(conn) * (size_t) nall);
	memset(conns, 0, sizeof(conn) * (size_t) nall);
	for (int i = 0; i < nall; i++) {
		conns[i].fd = -1;
		conns[i].idx = i;
		conns[i].st = C_NEW;
	}
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0) {
		perror("gwload: epoll_create1");
		return 1;
	}

	if (opt.mode == M_FANOUT) {
		if (opt.raw)
			load_template();
		nops = 1 + (int) llround(opt.rate * opt.warmup) + (int) llround(opt.rate * opt.seconds);
		op_sent = xrealloc(NULL, sizeof(double) * (size_t) nops);
		op_lat = xrealloc(NULL, sizeof(double) * (size_t) nops);
		op_count = xrealloc(NULL, sizeof(int) * (size_t) nops);
		for (int i = 0; i < nops; i++) {
			op_sent[i] = -1;
			op_lat[i] = 0;
			op_count[i] = 0;
		}
		conns[opt.nconns].is_pub = true;
	}

	setup(0, opt.nconns);
	if (opt.mode == M_FANOUT)
		setup(opt.nconns, nall);

	switch (opt.mode) {
	case M_IDLE:
		run_idle();
		break;
	case M_FANOUT:
		run_fanout();
		break;
	case M_PUSH:
		run_push();
		break;
	}
	fflush(stdout);
	int status = nclosed_unexpected ? 1 : 0;
	for (int i = 0; i < nall; i++)
		conn_close(&conns[i]);
	return status;
}

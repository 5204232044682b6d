/*
 * tests/gateway/test_client.c: a small synchronous WebSocket client for the
 * gateway's end-to-end suites (tests/suites/12-gateway-e2e.sh,
 * 13-gateway-faults.sh and 14-hostile.sh).
 *
 * Deliberately independent of libwebsockets: a hand-written RFC 6455 client
 * over one blocking loopback TCP socket (handshake with
 * Sec-WebSocket-Protocol: synclog.v1, masked frames out, unmasked frames in),
 * so a bug shared by the gateway and lws's client side cannot hide.
 *
 *   test_client [--origin ORIGIN] [--rcvbuf BYTES] [--bind ADDR] [--stamp] HOST PORT < script
 *
 * --origin adds an "Origin: ORIGIN" header to the handshake (none by
 * default, as a non-browser client).  --rcvbuf sets SO_RCVBUF before
 * connecting, so that a client that stops reading fills the kernel's buffers
 * after some kilobytes rather than megabytes.  It also fixes the TCP window
 * for the whole connection (no window scaling): a few kilobytes make every
 * later read slow, 64 kB does not.  --bind binds the socket to local address
 * ADDR (numeric, port 0) before connecting, so that a loopback client can
 * come from 127.0.0.2 rather than 127.0.0.1 (the gateway counts pending
 * connections per peer address).  --stamp starts every output line with
 * the wall-clock time it was printed, "@SECONDS.MICROSECONDS " (so the
 * moment a frame or the close was read), for suites that measure latencies.
 *
 * The script has one command per line; every wait is bounded:
 *   send TEXT           one text frame
 *   sendfrag N TEXT     TEXT as one message in N fragments
 *   sendbig N           a ping frame padded to N bytes (streamed: N may be
 *                       far larger than the client's memory would like)
 *   sendbin TEXT        one binary frame
 *   recv SECS           wait for one message: prints "RECV <text>", or
 *                       "CLOSED <code>" / "TIMEOUT"
 *   drain SECS          print every message until SECS pass without one
 *   expectclose SECS    print messages until the server closes ("CLOSED
 *                       <code>") or SECS pass ("TIMEOUT")
 *   read SECS           print every message for SECS seconds
 *   readuntil FILE SECS print every message until FILE exists (checked
 *                       every 50 ms) or SECS pass ("TIMEOUT")
 *   await N SECS TEXT   print every message until N messages containing TEXT
 *                       were read or SECS pass ("TIMEOUT")
 *   stall SECS [FILE]   do not touch the socket for SECS seconds, or until
 *                       FILE exists; with FILE prints "STALLING" first and
 *                       then "RESUMED" (FILE appeared) or "TIMEOUT"
 *   sleep MS            same as stall, in milliseconds, silently
 *   sendhex HEX         one text frame of the bytes HEX spells (two hex digits
 *                       a byte): invalid UTF-8, NUL bytes
 *   sendraw HEX         the bytes HEX spells, written to the socket as they
 *                       are (no framing, no masking): broken WebSocket frames
 *   sendnest N          a push frame whose ops array nests N arrays deep
 *                       ({"type":"push","ops":[[[...]]]}, 2N+20 bytes)
 *   sendslow MS TEXT    TEXT as one text frame written a byte at a time (frame
 *                       header included), MS ms apart; stops as soon as the
 *                       server sends anything or closes, printing "SLOWSTOP
 *                       <bytes written> <total>" (else "SLOWDONE <total>")
 *   timedpush N MS TEXT N times: send TEXT with every "{i}" replaced by a
 *                       counter kept across commands, as 12 decimal digits
 *                       (000000000001, ...: fits a UUID's last group), print every
 *                       message until an "ack" arrives, then "RTT <i> <ms>"
 *                       (the send-to-ack time, 3 decimals; "RTT <i> TIMEOUT"
 *                       after 10 s), then keep printing messages for MS ms
 *   timedpushuntil FILE MS SECS TEXT
 *                       the same until FILE exists (or SECS pass)
 *   mark TEXT           print "MARK TEXT"
 *   touch FILE          create FILE (a signal to the script driving the suite)
 * Every read answers the server's ping frames with a pong and prints "PING".
 * Output lines go to stdout, flushed.  "CONNECTED" after the handshake.
 * Exit status: 0 when the script ran, 2 when the connection or handshake
 * failed (a line "ERROR ..." says why, for a refused handshake "ERROR
 * handshake refused: " and the server's status line), 3 on a protocol
 * violation by the server.  Once closed, later reading commands print
 * "CLOSED -".  SIGPIPE is ignored: writing to a socket the server closed
 * fails quietly and the next read reports the close.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int fd = -1;
static int closed;
static unsigned char inbuf[1 << 16];
static size_t in_len;

static int64_t
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * --stamp: stdout becomes this cookie stream, which writes through to file
 * descriptor 1 and puts the wall-clock time before each line.  Never fails
 * visibly: a failed write is dropped, as a closed stdout would drop it.
 */
static int at_line_start = 1;

static ssize_t
stamp_write(void *cookie, const char *buf, size_t len)
{
	(void) cookie;
	for (size_t i = 0; i < len;) {
		if (at_line_start) {
			struct timespec ts;
			char t[48];
			clock_gettime(CLOCK_REALTIME, &ts);
			int n = snprintf(t, sizeof t, "@%lld.%06ld ", (long long) ts.tv_sec, ts.tv_nsec / 1000);
			if (write(1, t, (size_t) n) < 0)
				return (ssize_t) len;
			at_line_start = 0;
		}
		const char *nl = memchr(buf + i, '\n', len - i);
		size_t k = nl ? (size_t) (nl - (buf + i)) + 1 : len - i;
		if (write(1, buf + i, k) < 0)
			return (ssize_t) len;
		at_line_start = nl != NULL;
		i += k;
	}
	return (ssize_t) len;
}

/* Reads more bytes into inbuf before deadline; 1 ok, 0 timeout, -1 EOF/error. */
static int
fill(int64_t deadline)
{
	if (in_len == sizeof inbuf)
		return 1;
	for (;;) {
		int64_t left = deadline - now_ms();
		if (left < 0)
			return 0;
		struct pollfd p = { fd, POLLIN, 0 };
		int r = poll(&p, 1, (int) left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0)
			return 0;
		ssize_t n = read(fd, inbuf + in_len, sizeof inbuf - in_len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		in_len += (size_t) n;
		return 1;
	}
}

static int
need(size_t n, int64_t deadline)
{
	while (in_len < n) {
		int r = fill(deadline);
		if (r <= 0)
			return r;
	}
	return 1;
}

static void
consume(size_t n)
{
	memmove(inbuf, inbuf + n, in_len - n);
	in_len -= n;
}

static int
write_all(const void *buf, size_t len)
{
	const unsigned char *p = buf;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t) n;
	}
	return 0;
}

/* Writes the header of a masked frame of len bytes; its mask in mask[4]. */
static int
send_header(int opcode, int fin, uint64_t len, unsigned char mask[4])
{
	unsigned char h[14];
	size_t hl = 0;
	h[hl++] = (unsigned char) ((fin ? 0x80 : 0) | opcode);
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
	for (int i = 0; i < 4; i++)
		mask[i] = (unsigned char) (rand() & 0xff);
	memcpy(h + hl, mask, 4);
	hl += 4;
	return write_all(h, hl);
}

/* Sends one masked frame. */
static int
send_frame(int opcode, int fin, const void *data, size_t len)
{
	unsigned char mask[4];
	if (send_header(opcode, fin, len, mask) != 0)
		return -1;
	unsigned char *m = malloc(len ? len : 1);
	if (!m)
		return -1;
	const unsigned char *d = data;
	for (size_t i = 0; i < len; i++)
		m[i] = d[i] ^ mask[i & 3];
	int r = write_all(m, len) == 0 ? 0 : -1;
	free(m);
	return r;
}

/*
 * Reads one whole message before deadline.  Returns 1 and a malloc'd *out
 * (NUL-terminated) for text/binary; 0 timeout; -1 closed (prints CLOSED);
 * -2 protocol violation.
 */
static int
read_message(int64_t deadline, char **out, size_t *out_len)
{
	char *msg = NULL;
	size_t mlen = 0;
	int r;
	for (;;) {
		r = need(2, deadline);
		if (r <= 0)
			goto ended;
		int fin = inbuf[0] & 0x80, op = inbuf[0] & 0x0f;
		if (inbuf[1] & 0x80) {
			free(msg);
			return -2; /* server frames are never masked */
		}
		uint64_t plen = inbuf[1] & 0x7f;
		size_t hl = 2;
		if (plen == 126) {
			if ((r = need(4, deadline)) <= 0)
				goto ended;
			plen = ((uint64_t) inbuf[2] << 8) | inbuf[3];
			hl = 4;
		} else if (plen == 127) {
			if ((r = need(10, deadline)) <= 0)
				goto ended;
			plen = 0;
			for (int i = 0; i < 8; i++)
				plen = (plen << 8) | inbuf[2 + i];
			hl = 10;
		}
		consume(hl);
		char *payload = malloc(plen + 1);
		if (!payload) {
			free(msg);
			return -2;
		}
		size_t got = 0;
		while (got < plen) {
			if (in_len == 0 && (r = fill(deadline + 5000)) <= 0) {
				free(payload);
				goto ended;
			}
			size_t k = in_len < plen - got ? in_len : (size_t) (plen - got);
			memcpy(payload + got, inbuf, k);
			consume(k);
			got += k;
		}
		payload[plen] = '\0';
		if (op == 0x8) {
			int code = plen >= 2 ? ((unsigned char) payload[0] << 8 | (unsigned char) payload[1]) : 0;
			printf("CLOSED %d\n", code);
			send_frame(0x8, 1, payload, plen >= 2 ? 2 : 0);
			free(payload);
			free(msg);
			closed = 1;
			return -1;
		}
		if (op == 0x9) { /* ping */
			printf("PING\n");
			send_frame(0xA, 1, payload, plen);
			free(payload);
			continue;
		}
		if (op == 0xA) {
			free(payload);
			continue;
		}
		char *n = realloc(msg, mlen + plen + 1);
		if (!n) {
			free(payload);
			free(msg);
			return -2;
		}
		msg = n;
		memcpy(msg + mlen, payload, plen);
		mlen += plen;
		msg[mlen] = '\0';
		free(payload);
		if (fin) {
			*out = msg;
			*out_len = mlen;
			return 1;
		}
	}
ended:
	free(msg);
	if (r < 0) {
		printf("CLOSED -1\n");
		closed = 1;
		return -1;
	}
	return 0;
}

static int
connect_ws(const char *host, const char *port, const char *origin, int rcvbuf, const char *bind_addr)
{
	struct addrinfo hints, *ai;
	memset(&hints, 0, sizeof hints);
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(host, port, &hints, &ai) != 0) {
		printf("ERROR cannot resolve %s\n", host);
		return -1;
	}
	fd = socket(ai->ai_family, SOCK_STREAM, 0);
	if (fd >= 0 && rcvbuf > 0 && setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) != 0) {
		printf("ERROR cannot set SO_RCVBUF: %s\n", strerror(errno));
		freeaddrinfo(ai);
		return -1;
	}
	if (fd >= 0 && bind_addr) {
		struct addrinfo bh, *bi;
		memset(&bh, 0, sizeof bh);
		bh.ai_family = ai->ai_family;
		bh.ai_socktype = SOCK_STREAM;
		bh.ai_flags = AI_NUMERICHOST;
		if (getaddrinfo(bind_addr, "0", &bh, &bi) != 0) {
			printf("ERROR cannot parse --bind %s\n", bind_addr);
			freeaddrinfo(ai);
			return -1;
		}
		int rc = bind(fd, bi->ai_addr, bi->ai_addrlen);
		freeaddrinfo(bi);
		if (rc != 0) {
			printf("ERROR cannot bind to %s: %s\n", bind_addr, strerror(errno));
			freeaddrinfo(ai);
			return -1;
		}
	}
	if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
		printf("ERROR cannot connect to %s:%s: %s\n", host, port, strerror(errno));
		freeaddrinfo(ai);
		return -1;
	}
	freeaddrinfo(ai);
	/* Frames go out as a header write and a payload write: without
	 * TCP_NODELAY the second waits for the gateway's delayed ACK (40 ms),
	 * which would dominate every timed round trip. */
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	char req[1024];
	int rl = snprintf(req, sizeof req,
	                  "GET / HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
	                  "Sec-WebSocket-Protocol: synclog.v1\r\n%s%s%s\r\n",
	                  host, port, origin ? "Origin: " : "", origin ? origin : "", origin ? "\r\n" : "");
	if (rl < 0 || (size_t) rl >= sizeof req) {
		printf("ERROR handshake request too long\n");
		return -1;
	}
	if (write_all(req, strlen(req)) != 0) {
		printf("ERROR cannot send the handshake\n");
		return -1;
	}
	int64_t deadline = now_ms() + 5000;
	for (;;) {
		char *end = in_len ? memmem(inbuf, in_len, "\r\n\r\n", 4) : NULL;
		if (end) {
			size_t hl = (size_t) (end - (char *) inbuf) + 4;
			char head[4096];
			size_t n = hl < sizeof head ? hl : sizeof head - 1;
			memcpy(head, inbuf, n);
			head[n] = '\0';
			consume(hl);
			if (strncmp(head, "HTTP/1.1 101", 12) != 0) {
				printf("ERROR handshake refused: %.*s\n", (int) strcspn(head, "\r\n"), head);
				return -1;
			}
			/* RFC 6455 accept value for the key above */
			if (!strstr(head, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") ||
			    !strcasestr(head, "Sec-WebSocket-Protocol: synclog.v1")) {
				printf("ERROR bad handshake answer\n");
				return -1;
			}
			return 0;
		}
		if (fill(deadline) <= 0) {
			printf("ERROR no handshake answer\n");
			return -1;
		}
	}
}

/* True when PATH exists. */
static int
file_exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

/* Sleeps ms milliseconds (not touching the socket). */
static void
sleep_ms(int64_t ms)
{
	struct timespec ts;
	if (ms <= 0)
		return;
	ts.tv_sec = (time_t) (ms / 1000);
	ts.tv_nsec = (long) (ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* True when a message may be read now: bytes already buffered, or the socket
 * readable within ms milliseconds. */
static int
readable(int64_t ms)
{
	if (in_len > 0)
		return 1;
	struct pollfd p = { fd, POLLIN, 0 };
	return poll(&p, 1, (int) (ms < 0 ? 0 : ms)) > 0;
}

/*
 * The reading commands.  mode 'r' recv (one message), 'd' drain (until SECS
 * without a message), 'e' expectclose, 't' read (for SECS), 'u' readuntil
 * (until `file` exists), 'a' await (until `count` messages holding `text`).
 * Prints what it reads; returns 3 on a protocol violation, else 0.
 */
static int
read_cmd(int mode, int64_t secs, const char *file, long count, const char *text, int64_t ms)
{
	int64_t deadline = now_ms() + secs * 1000 + ms;
	long seen = 0;

	if (closed) {
		printf("CLOSED -\n");
		return 0;
	}
	for (;;) {
		char *msg;
		size_t mlen;
		int r;

		if (mode == 'u') {
			/* wait for the socket in steps of 50 ms, looking for the file */
			if (file_exists(file))
				return 0;
			int64_t left = deadline - now_ms();
			if (left <= 0) {
				printf("TIMEOUT\n");
				return 0;
			}
			if (!readable(left < 50 ? left : 50))
				continue;
		}
		r = read_message(deadline, &msg, &mlen);
		if (r == 1) {
			printf("RECV %s\n", msg);
			if (mode == 'a' && strstr(msg, text) && ++seen >= count) {
				free(msg);
				return 0;
			}
			free(msg);
			if (mode == 'r')
				return 0;
			if (mode == 'd')
				deadline = now_ms() + secs * 1000;
			continue;
		}
		if (r == 0 && mode != 't')
			printf("TIMEOUT\n");
		if (r == -2) {
			printf("ERROR protocol violation by the server\n");
			return 3;
		}
		return 0;
	}
}

/* Sends a ping frame padded to len bytes ({"type":"ping","pad":"xxx..."}),
 * written in 64 kB pieces: nothing of len size is allocated. */
static int
send_big_ping(size_t len)
{
	static const char head[] = "{\"type\":\"ping\",\"pad\":\"";
	unsigned char mask[4], chunk[65536];
	size_t hl = sizeof head - 1;

	if (len < hl + 2)
		len = hl + 2;
	if (send_header(0x1, 1, len, mask) != 0)
		return -1;
	for (size_t off = 0; off < len;) {
		size_t k = len - off < sizeof chunk ? len - off : sizeof chunk;
		for (size_t i = 0; i < k; i++) {
			size_t at = off + i;
			unsigned char c = at < hl ? (unsigned char) head[at] : at == len - 2 ? '"' : at == len - 1 ? '}' : 'x';
			chunk[i] = c ^ mask[at & 3];
		}
		if (write_all(chunk, k) != 0)
			return -1;
		off += k;
	}
	return 0;
}

/* The bytes HEX spells, in a malloc'd buffer (*len); NULL on a bad digit. */
static unsigned char *
from_hex(const char *hex, size_t *len)
{
	size_t n = strlen(hex) / 2;
	unsigned char *b = malloc(n ? n : 1);
	if (!b || strlen(hex) % 2) {
		free(b);
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		if (sscanf(hex + 2 * i, "%2x", &v) != 1) {
			free(b);
			return NULL;
		}
		b[i] = (unsigned char) v;
	}
	*len = n;
	return b;
}

static int64_t
now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * TEXT as one masked text frame written a byte at a time, ms apart; stops
 * when the server sends something (or closes).  Prints SLOWSTOP/SLOWDONE.
 */
static void
send_slow(int64_t ms, const char *text)
{
	size_t len = strlen(text), hl = 0, total;
	unsigned char h[14 + 4], mask[4], *all;

	h[hl++] = 0x81;
	if (len < 126) {
		h[hl++] = (unsigned char) (0x80 | len);
	} else {
		h[hl++] = 0x80 | 126;
		h[hl++] = (unsigned char) (len >> 8);
		h[hl++] = (unsigned char) len;
	}
	for (int i = 0; i < 4; i++)
		h[hl++] = mask[i] = (unsigned char) (rand() & 0xff);
	total = hl + len;
	all = malloc(total);
	if (!all) {
		printf("ERROR out of memory\n");
		return;
	}
	memcpy(all, h, hl);
	for (size_t i = 0; i < len; i++)
		all[hl + i] = (unsigned char) text[i] ^ mask[i & 3];
	for (size_t i = 0; i < total; i++) {
		struct pollfd p = { fd, POLLIN, 0 };
		if (in_len > 0 || poll(&p, 1, 0) > 0) {
			printf("SLOWSTOP %zu %zu\n", i, total);
			free(all);
			return;
		}
		if (write_all(all + i, 1) != 0) {
			printf("SLOWSTOP %zu %zu\n", i, total);
			free(all);
			return;
		}
		sleep_ms(ms);
	}
	free(all);
	printf("SLOWDONE %zu\n", total);
}

static long push_counter;

/*
 * One timed push: TEXT with each "{i}" replaced by the next counter value;
 * prints every message until the ack ("RTT i ms" then) or 10 s ("RTT i
 * TIMEOUT"), then every message for ms milliseconds.  Returns 3 on a
 * protocol violation, else 0.
 */
static int
timed_push(const char *text, int64_t ms)
{
	char num[24], *frame;
	size_t cap, n = 0, nl;
	long i = ++push_counter;
	const char *p;

	nl = (size_t) snprintf(num, sizeof num, "%012ld", i);
	cap = strlen(text) * (nl + 1) + 1;
	frame = malloc(cap);
	if (!frame)
		return 3;
	for (p = text; *p;) {
		if (!strncmp(p, "{i}", 3)) {
			memcpy(frame + n, num, nl);
			n += nl;
			p += 3;
		} else
			frame[n++] = *p++;
	}
	frame[n] = '\0';
	if (closed) {
		printf("RTT %ld CLOSED\n", i);
		free(frame);
		return 0;
	}
	int64_t t0 = now_us(), deadline = now_ms() + 10000;
	if (send_frame(0x1, 1, frame, n) != 0)
		printf("SENDFAIL\n");
	free(frame);
	for (;;) {
		char *msg;
		size_t mlen;
		int r = read_message(deadline, &msg, &mlen);
		if (r == 1) {
			int ack = strstr(msg, "\"type\":\"ack\"") != NULL;
			int64_t t1 = now_us();
			printf("RECV %s\n", msg);
			free(msg);
			if (ack) {
				printf("RTT %ld %.3f\n", i, (double) (t1 - t0) / 1000.0);
				break;
			}
			continue;
		}
		if (r == -2) {
			printf("ERROR protocol violation by the server\n");
			return 3;
		}
		printf("RTT %ld %s\n", i, r == 0 ? "TIMEOUT" : "CLOSED");
		return 0;
	}
	return read_cmd('t', 0, NULL, 0, NULL, ms);
}

static void
usage(void)
{
	fprintf(stderr, "usage: test_client [--origin ORIGIN] [--rcvbuf BYTES] [--bind ADDR] [--stamp] HOST PORT < script\n");
}

int
main(int argc, char **argv)
{
	const char *origin = NULL, *bind_addr = NULL;
	int rcvbuf = 0;
	int ai = 1;

	while (ai < argc && !strncmp(argv[ai], "--", 2)) {
		if (!strcmp(argv[ai], "--stamp")) {
			FILE *f = fopencookie(NULL, "w", (cookie_io_functions_t) { .write = stamp_write });
			if (!f) {
				perror("test_client: fopencookie");
				return 2;
			}
			stdout = f;
			ai++;
			continue;
		}
		if (ai + 1 >= argc) {
			usage();
			return 2;
		}
		if (!strcmp(argv[ai], "--origin"))
			origin = argv[ai + 1];
		else if (!strcmp(argv[ai], "--rcvbuf"))
			rcvbuf = atoi(argv[ai + 1]);
		else if (!strcmp(argv[ai], "--bind"))
			bind_addr = argv[ai + 1];
		else {
			usage();
			return 2;
		}
		ai += 2;
	}
	if (argc - ai != 2) {
		usage();
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	srand((unsigned) getpid());
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (connect_ws(argv[ai], argv[ai + 1], origin, rcvbuf, bind_addr) != 0) {
		if (fd >= 0)
			close(fd);
		return 2;
	}
	printf("CONNECTED\n");

	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int status = 0;
	while ((n = getline(&line, &cap, stdin)) > 0) {
		while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		char *arg = strchr(line, ' ');
		if (arg)
			*arg++ = '\0';
		else
			arg = line + n;
		if (!strcmp(line, "send") || !strcmp(line, "sendbin")) {
			if (!closed && send_frame(line[4] ? 0x2 : 0x1, 1, arg, strlen(arg)) != 0)
				printf("SENDFAIL\n");
		} else if (!strcmp(line, "sendfrag")) {
			char *text;
			long parts = strtol(arg, &text, 10);
			if (*text == ' ')
				text++;
			size_t len = strlen(text), step = parts > 0 ? (len + (size_t) parts - 1) / (size_t) parts : len;
			for (size_t off = 0; !closed && off < len; off += step) {
				size_t k = len - off < step ? len - off : step;
				send_frame(off == 0 ? 0x1 : 0x0, off + k >= len, text + off, k);
			}
		} else if (!strcmp(line, "sendbig")) {
			if (!closed && send_big_ping(strtoul(arg, NULL, 10)) != 0)
				printf("SENDFAIL\n");
		} else if (!strcmp(line, "sendhex")) {
			size_t len;
			unsigned char *b = from_hex(arg, &len);
			if (!b) {
				printf("ERROR sendhex needs an even number of hex digits\n");
				status = 3;
				continue;
			}
			if (!closed && send_frame(0x1, 1, b, len) != 0)
				printf("SENDFAIL\n");
			free(b);
		} else if (!strcmp(line, "sendraw")) {
			size_t len;
			unsigned char *b = from_hex(arg, &len);
			if (!b) {
				printf("ERROR sendraw needs an even number of hex digits\n");
				status = 3;
				continue;
			}
			if (!closed && write_all(b, len) != 0)
				printf("SENDFAIL\n");
			free(b);
		} else if (!strcmp(line, "sendnest")) {
			size_t depth = strtoul(arg, NULL, 10);
			char *b = malloc(2 * depth + 32);
			if (b) {
				size_t p = (size_t) sprintf(b, "{\"type\":\"push\",\"ops\":");
				memset(b + p, '[', depth);
				p += depth;
				memset(b + p, ']', depth);
				p += depth;
				b[p++] = '}';
				if (!closed && send_frame(0x1, 1, b, p) != 0)
					printf("SENDFAIL\n");
				free(b);
			}
		} else if (!strcmp(line, "sendslow")) {
			char *text;
			int64_t ms = strtol(arg, &text, 10);
			if (*text == ' ')
				text++;
			if (!closed)
				send_slow(ms, text);
		} else if (!strcmp(line, "timedpush")) {
			char *text;
			long count = strtol(arg, &text, 10);
			int64_t ms = strtol(text, &text, 10);
			if (*text == ' ')
				text++;
			for (long k = 0; k < count; k++)
				if (timed_push(text, ms))
					status = 3;
		} else if (!strcmp(line, "timedpushuntil")) {
			char *sp = strchr(arg, ' '), *text;
			if (!sp) {
				printf("ERROR timedpushuntil needs FILE MS SECS TEXT\n");
				status = 3;
				continue;
			}
			*sp = '\0';
			int64_t ms = strtol(sp + 1, &text, 10);
			int64_t end = now_ms() + strtol(text, &text, 10) * 1000;
			if (*text == ' ')
				text++;
			while (!file_exists(arg) && now_ms() < end)
				if (timed_push(text, ms))
					status = 3;
		} else if (!strcmp(line, "mark")) {
			printf("MARK %s\n", arg);
		} else if (!strcmp(line, "touch")) {
			FILE *t = fopen(arg, "w");
			if (t)
				fclose(t);
			else
				printf("ERROR cannot create %s\n", arg);
		} else if (!strcmp(line, "recv") || !strcmp(line, "drain") || !strcmp(line, "expectclose") ||
		           !strcmp(line, "read")) {
			int mode = !strcmp(line, "read") ? 't' : line[0];
			if (read_cmd(mode, strtol(arg, NULL, 10), NULL, 0, NULL, 0))
				status = 3;
		} else if (!strcmp(line, "readuntil")) {
			char *sp = strrchr(arg, ' ');
			if (!sp) {
				printf("ERROR readuntil needs FILE SECS\n");
				status = 3;
				continue;
			}
			*sp = '\0';
			if (read_cmd('u', strtol(sp + 1, NULL, 10), arg, 0, NULL, 0))
				status = 3;
		} else if (!strcmp(line, "await")) {
			char *rest;
			long count = strtol(arg, &rest, 10);
			int64_t secs = strtol(rest, &rest, 10);
			if (*rest == ' ')
				rest++;
			if (count < 1 || !*rest) {
				printf("ERROR await needs N SECS TEXT\n");
				status = 3;
				continue;
			}
			if (read_cmd('a', secs, NULL, count, rest, 0))
				status = 3;
		} else if (!strcmp(line, "stall")) {
			char *file;
			int64_t deadline = now_ms() + strtol(arg, &file, 10) * 1000;
			if (*file == ' ')
				file++;
			if (!*file) {
				sleep_ms(deadline - now_ms());
				continue;
			}
			printf("STALLING\n");
			while (!file_exists(file) && now_ms() < deadline)
				sleep_ms(20);
			printf(file_exists(file) ? "RESUMED\n" : "TIMEOUT\n");
		} else if (!strcmp(line, "sleep")) {
			sleep_ms(strtol(arg, NULL, 10));

		} else if (line[0] && line[0] != '#') {
			printf("ERROR unknown command %s\n", line);
			status = 3;
		}
	}
	free(line);
	if (!closed)
		send_frame(0x8, 1, "\x03\xe8", 2);
	close(fd);
	return status;
}

/*
 * tests/gateway/hostile.c: attacks on the gateway that need many sockets or
 * the HTTP phase of the handshake, for tests/suites/14-hostile.sh (the
 * single-connection attacks are test_client.c script commands).  Plain
 * sockets, no libwebsockets, like test_client.c; every wait is bounded.
 *
 *   hostile flood HOST PORT N TOKEN GROUP HOLD_BYTES HOLD_FILE SECS
 *       Opens N WebSocket handshakes one after another, each kept open.
 *       Prints "STATUS <i> <HTTP status>" per attempt (0: no answer within
 *       5 s, or the connection failed).  Each accepted connection says hello
 *       (client_id flood-<i>, the TOKEN, [GROUP], cursor 0) and reads frames
 *       until its welcome ("WELCOMED" counts them).  Then, when HOLD_BYTES > 0,
 *       each accepted connection sends all but the last byte of a ping frame
 *       padded to HOLD_BYTES (so the gateway holds that much of a message for
 *       every connection at once), prints "HOLDING", waits until HOLD_FILE
 *       exists (or SECS pass), sends the last bytes and reads each connection
 *       until its pong ("PONGS" counts them).  Ends with one line
 *       "ACCEPTED a REFUSED503 r OTHER o WELCOMED w PONGS p" and closes all.
 *
 *   hostile pending HOST PORT N HOLD_FILE SECS
 *       Opens N WebSocket handshakes one after another and never says hello
 *       on any (what --max-pending-per-peer limits).  Prints "STATUS <i>
 *       <HTTP status>" per attempt (0: no answer within 5 s, or the
 *       connection failed), then "ACCEPTED a REFUSED503 r OTHER o" and
 *       "HOLDING"; keeps the accepted ones open until HOLD_FILE exists (or
 *       SECS pass), closes them all and prints "RELEASED".
 *
 *   hostile slowhttp HOST PORT DELAY_MS SECS
 *       Sends the handshake request a byte at a time, DELAY_MS apart (a
 *       slowloris): prints "CLOSED <ms> <bytes sent>" when the server closes
 *       the connection, "ANSWER <ms> <status line>" when it answers, or
 *       "TIMEOUT <bytes sent>" after SECS.
 *
 *   hostile halfopen HOST PORT N SECS
 *       N connections that send the first line of a request and nothing
 *       more; prints "HALFOPEN closed <c> of <N>, last after <ms> ms" once all
 *       were closed by the server or SECS passed.
 *
 * Exit status 0 when the attack ran (whatever the gateway answered), 2 on a
 * usage error or when no connection could be opened at all.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
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

#define MAX_CONNS 4096

static const char request_fmt[] =
	"GET / HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
	"Sec-WebSocket-Protocol: synclog.v1\r\n\r\n";

static int64_t
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
sleep_ms(int64_t ms)
{
	struct timespec ts = { (time_t) (ms / 1000), (long) (ms % 1000) * 1000000L };
	while (ms > 0 && nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* A connected TCP socket to HOST:PORT (numeric), with 10 s send and receive
 * timeouts, or -1. */
static int
connect_tcp(const char *host, const char *port)
{
	struct sockaddr_in a;
	struct timeval tv = { 10, 0 };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t) atoi(port));
	if (fd < 0 || inet_pton(AF_INET, host, &a.sin_addr) != 1) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	if (connect(fd, (struct sockaddr *) &a, sizeof a) != 0) {
		close(fd);
		return -1;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}

static int
write_all(int fd, const void *buf, size_t len)
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

/* Reads into buf[*len..cap) once, waiting until deadline; 1 read, 0 timeout,
 * -1 closed or error. */
static int
read_some(int fd, unsigned char *buf, size_t *len, size_t cap, int64_t deadline)
{
	for (;;) {
		int64_t left = deadline - now_ms();
		if (left <= 0)
			return 0;
		struct pollfd p = { fd, POLLIN, 0 };
		int r = poll(&p, 1, (int) left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0)
			return 0;
		if (*len == cap)
			return -1;
		ssize_t n = read(fd, buf + *len, cap - *len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		*len += (size_t) n;
		return 1;
	}
}

/* Writes a masked frame header for len bytes; the mask in mask[4]. */
static int
send_header(int fd, int opcode, uint64_t len, unsigned char mask[4])
{
	unsigned char h[14];
	size_t hl = 0;

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
			h[hl++] = (unsigned char) (len >> (8 * i));
	}
	for (int i = 0; i < 4; i++)
		h[hl++] = mask[i] = (unsigned char) (rand() & 0xff);
	return write_all(fd, h, hl);
}

/* Sends payload[from..to) of a frame whose mask is mask. */
static int
send_masked(int fd, const unsigned char *payload, size_t from, size_t to, const unsigned char mask[4])
{
	unsigned char chunk[8192];
	while (from < to) {
		size_t k = to - from < sizeof chunk ? to - from : sizeof chunk;
		for (size_t i = 0; i < k; i++)
			chunk[i] = payload[from + i] ^ mask[(from + i) & 3];
		if (write_all(fd, chunk, k) != 0)
			return -1;
		from += k;
	}
	return 0;
}

static int
send_text(int fd, const char *text)
{
	unsigned char mask[4];
	size_t len = strlen(text);
	if (send_header(fd, 0x1, len, mask) != 0)
		return -1;
	return send_masked(fd, (const unsigned char *) text, 0, len, mask);
}

/*
 * Sends the handshake and reads the answer's head (5 s at most).  Returns the
 * HTTP status (101 on success, with any bytes after the head left in
 * rest/rest_len), or 0.
 */
static int
handshake(int fd, const char *host, const char *port, unsigned char *rest, size_t *rest_len,
          size_t cap)
{
	char req[512];
	size_t len = 0;
	int64_t deadline = now_ms() + 5000;

	snprintf(req, sizeof req, request_fmt, host, port);
	if (write_all(fd, req, strlen(req)) != 0)
		return 0;
	for (;;) {
		unsigned char *end = len ? memmem(rest, len, "\r\n\r\n", 4) : NULL;
		if (end) {
			int status = 0;
			if (sscanf((char *) rest, "HTTP/1.%*d %d", &status) != 1)
				status = 0;
			size_t hl = (size_t) (end - rest) + 4;
			memmove(rest, rest + hl, len - hl);
			*rest_len = len - hl;
			return status;
		}
		if (read_some(fd, rest, &len, cap, deadline) <= 0)
			return 0;
	}
}

/*
 * Reads server frames on a connection until one whose text contains `want`
 * (1), the connection closes (-1) or deadline passes (0).  buf/len carry bytes
 * across calls.  Server frames are unmasked; control frames are skipped
 * (pings are not answered: the holders live for seconds only).
 */
static int
await_text(int fd, unsigned char *buf, size_t *len, size_t cap, const char *want, int64_t deadline)
{
	for (;;) {
		while (*len >= 2) {
			uint64_t plen = buf[1] & 0x7f;
			size_t hl = 2;
			if (plen == 126) {
				if (*len < 4)
					break;
				plen = (uint64_t) buf[2] << 8 | buf[3];
				hl = 4;
			} else if (plen == 127) {
				if (*len < 10)
					break;
				plen = 0;
				for (int i = 0; i < 8; i++)
					plen = plen << 8 | buf[2 + i];
				hl = 10;
			}
			if (hl + plen > cap)
				return -1; /* larger than we care to read: count as closed */
			if (*len < hl + plen)
				break;
			int op = buf[0] & 0x0f;
			int hit = (op == 0x1 || op == 0x0) && memmem(buf + hl, (size_t) plen, want, strlen(want));
			memmove(buf, buf + hl + plen, *len - hl - (size_t) plen);
			*len -= hl + (size_t) plen;
			if (op == 0x8)
				return -1;
			if (hit)
				return 1;
		}
		int r = read_some(fd, buf, len, cap, deadline);
		if (r <= 0)
			return r;
	}
}

static int
file_exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

typedef struct conn {
	int fd;
	unsigned char buf[16384];
	size_t len;
} conn;

static int
do_flood(const char *host, const char *port, int n, const char *token, const char *group,
         size_t hold, const char *hold_file, int secs)
{
	static conn c[MAX_CONNS];
	int accepted = 0, refused = 0, other = 0, welcomed = 0, pongs = 0;
	int64_t end = now_ms() + (int64_t) secs * 1000;

	if (n < 1 || n > MAX_CONNS)
		return 2;
	for (int i = 0; i < n; i++) {
		c[i].fd = connect_tcp(host, port);
		c[i].len = 0;
		int st = c[i].fd < 0 ? 0 : handshake(c[i].fd, host, port, c[i].buf, &c[i].len, sizeof c[i].buf);
		printf("STATUS %d %d\n", i, st);
		if (st == 101) {
			char hello[8192];
			accepted++;
			snprintf(hello, sizeof hello,
			         "{\"type\":\"hello\",\"client_id\":\"flood-%d\",\"token\":\"%s\","
			         "\"groups\":[\"%s\"],\"cursor\":0,\"hlc\":\"0000000000000001\"}",
			         i, token, group);
			if (send_text(c[i].fd, hello) == 0 &&
			    await_text(c[i].fd, c[i].buf, &c[i].len, sizeof c[i].buf, "\"type\":\"welcome\"",
			               now_ms() + 10000) == 1)
				welcomed++;
			continue;
		}
		st == 503 ? refused++ : other++;
		if (c[i].fd >= 0)
			close(c[i].fd);
		c[i].fd = -1;
	}
	if (hold > 0) {
		static const char head[] = "{\"type\":\"ping\",\"pad\":\"";
		unsigned char *ping = malloc(hold);
		unsigned char (*masks)[4] = calloc((size_t) n, 4);
		if (!ping || !masks || hold < sizeof head + 2) {
			free(ping);
			free(masks);
			return 2;
		}
		memcpy(ping, head, sizeof head - 1);
		memset(ping + sizeof head - 1, 'x', hold - (sizeof head - 1) - 2);
		memcpy(ping + hold - 2, "\"}", 2);
		for (int i = 0; i < n; i++)
			if (c[i].fd >= 0 && (send_header(c[i].fd, 0x1, hold, masks[i]) != 0 ||
			                     send_masked(c[i].fd, ping, 0, hold - 1, masks[i]) != 0)) {
				close(c[i].fd);
				c[i].fd = -1;
			}
		printf("HOLDING\n");
		fflush(stdout);
		while (!file_exists(hold_file) && now_ms() < end)
			sleep_ms(20);
		for (int i = 0; i < n; i++)
			if (c[i].fd >= 0 && send_masked(c[i].fd, ping, hold - 1, hold, masks[i]) != 0) {
				close(c[i].fd);
				c[i].fd = -1;
			}
		for (int i = 0; i < n; i++)
			if (c[i].fd >= 0 &&
			    await_text(c[i].fd, c[i].buf, &c[i].len, sizeof c[i].buf, "\"type\":\"pong\"",
			               now_ms() + 10000) == 1)
				pongs++;
		free(ping);
		free(masks);
	}
	for (int i = 0; i < n; i++)
		if (c[i].fd >= 0) {
			unsigned char mask[4], code[2] = { 0x03, 0xe8 };
			if (send_header(c[i].fd, 0x8, 2, mask) == 0)
				send_masked(c[i].fd, code, 0, 2, mask);
			close(c[i].fd);
		}
	printf("ACCEPTED %d REFUSED503 %d OTHER %d WELCOMED %d PONGS %d\n", accepted, refused, other,
	       welcomed, pongs);
	return accepted + refused + other > 0 ? 0 : 2;
}

static int
do_pending(const char *host, const char *port, int n, const char *hold_file, int secs)
{
	static conn c[MAX_CONNS];
	int accepted = 0, refused = 0, other = 0;
	int64_t end = now_ms() + (int64_t) secs * 1000;

	if (n < 1 || n > MAX_CONNS)
		return 2;
	for (int i = 0; i < n; i++) {
		c[i].fd = connect_tcp(host, port);
		c[i].len = 0;
		int st = c[i].fd < 0 ? 0 : handshake(c[i].fd, host, port, c[i].buf, &c[i].len, sizeof c[i].buf);
		printf("STATUS %d %d\n", i, st);
		if (st == 101) {
			accepted++;
			continue;
		}
		st == 503 ? refused++ : other++;
		if (c[i].fd >= 0)
			close(c[i].fd);
		c[i].fd = -1;
	}
	printf("ACCEPTED %d REFUSED503 %d OTHER %d\nHOLDING\n", accepted, refused, other);
	fflush(stdout);
	while (!file_exists(hold_file) && now_ms() < end)
		sleep_ms(20);
	for (int i = 0; i < n; i++)
		if (c[i].fd >= 0)
			close(c[i].fd);
	printf("RELEASED\n");
	return accepted + refused + other > 0 ? 0 : 2;
}

static int
do_slowhttp(const char *host, const char *port, int delay_ms, int secs)
{
	char req[512];
	unsigned char in[4096];
	size_t sent = 0, len = 0;
	int fd = connect_tcp(host, port);
	int64_t t0 = now_ms(), end = t0 + (int64_t) secs * 1000;

	if (fd < 0) {
		printf("ERROR cannot connect\n");
		return 2;
	}
	snprintf(req, sizeof req, request_fmt, host, port);
	while (now_ms() < end) {
		struct pollfd p = { fd, POLLIN, 0 };
		if (poll(&p, 1, 0) > 0) {
			int r = read_some(fd, in, &len, sizeof in - 1, now_ms() + 1000);
			if (r < 0 && len == 0) {
				printf("CLOSED %lld %zu\n", (long long) (now_ms() - t0), sent);
			} else {
				in[len] = '\0';
				printf("ANSWER %lld %.*s\n", (long long) (now_ms() - t0),
				       (int) strcspn((char *) in, "\r\n"), (char *) in);
			}
			close(fd);
			return 0;
		}
		if (sent < strlen(req)) {
			if (write_all(fd, req + sent, 1) != 0) {
				printf("CLOSED %lld %zu\n", (long long) (now_ms() - t0), sent);
				close(fd);
				return 0;
			}
			sent++;
		}
		sleep_ms(delay_ms);
	}
	printf("TIMEOUT %zu\n", sent);
	close(fd);
	return 0;
}

static int
do_halfopen(const char *host, const char *port, int n, int secs)
{
	static int fds[MAX_CONNS];
	int closed = 0, open = 0;
	int64_t t0 = now_ms(), end = t0 + (int64_t) secs * 1000, last = 0;

	if (n < 1 || n > MAX_CONNS)
		return 2;
	for (int i = 0; i < n; i++) {
		fds[i] = connect_tcp(host, port);
		if (fds[i] >= 0 && write_all(fds[i], "GET / HTTP/1.1\r\n", 16) != 0) {
			close(fds[i]);
			fds[i] = -1;
		}
		open += fds[i] >= 0;
	}
	if (!open) {
		printf("ERROR cannot connect\n");
		return 2;
	}
	while (closed < open && now_ms() < end) {
		struct pollfd p[MAX_CONNS];
		int k = 0;
		for (int i = 0; i < n; i++)
			if (fds[i] >= 0)
				p[k++] = (struct pollfd) { fds[i], POLLIN, 0 };
		if (poll(p, (nfds_t) k, 100) <= 0)
			continue;
		for (int j = 0; j < k; j++) {
			if (!p[j].revents)
				continue;
			unsigned char b[512];
			ssize_t r = read(p[j].fd, b, sizeof b);
			if (r > 0)
				continue; /* an answer: it will close next */
			for (int i = 0; i < n; i++)
				if (fds[i] == p[j].fd) {
					close(fds[i]);
					fds[i] = -1;
				}
			closed++;
			last = now_ms() - t0;
		}
	}
	for (int i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	printf("HALFOPEN closed %d of %d, last after %lld ms\n", closed, open, (long long) last);
	return 0;
}

static void
usage(void)
{
	fprintf(stderr,
	        "usage: hostile flood HOST PORT N TOKEN GROUP HOLD_BYTES HOLD_FILE SECS\n"
	        "       hostile pending HOST PORT N HOLD_FILE SECS\n"
	        "       hostile slowhttp HOST PORT DELAY_MS SECS\n"
	        "       hostile halfopen HOST PORT N SECS\n");
}

int
main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	srand((unsigned) getpid());
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 10 && !strcmp(argv[1], "flood"))
		return do_flood(argv[2], argv[3], atoi(argv[4]), argv[5], argv[6],
		                strtoul(argv[7], NULL, 10), argv[8], atoi(argv[9]));
	if (argc == 7 && !strcmp(argv[1], "pending"))
		return do_pending(argv[2], argv[3], atoi(argv[4]), argv[5], atoi(argv[6]));
	if (argc == 6 && !strcmp(argv[1], "slowhttp"))
		return do_slowhttp(argv[2], argv[3], atoi(argv[4]), atoi(argv[5]));
	if (argc == 6 && !strcmp(argv[1], "halfopen"))
		return do_halfopen(argv[2], argv[3], atoi(argv[4]), atoi(argv[5]));
	usage();
	return 2;
}

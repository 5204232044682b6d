/*
 * bench/lwsbcast.c: the baseline server of the gateway benchmarks
 * (bench/gateway.sh): a bare libwebsockets broadcast server.
 *
 * Whatever text message one connection sends, the server sends the same
 * bytes, as one text frame, to every other connection; nothing is parsed and
 * no database is involved.  It runs on the same libwebsockets as the gateway
 * (Debian's 4.1, default poll() loop, one service thread, the context
 * options of gateway/main.c, subprotocol synclog.v1) with lws's defaults
 * otherwise (rx_buffer_size 0: lws's own), so the fan-out latency and the
 * memory per idle connection it gives are the floor that libwebsockets itself
 * sets on this machine, and the gateway's figures can be read against it.
 *
 *   lwsbcast --listen HOST:PORT [--rx-buffer BYTES]   (default 0: lws's)
 *
 * Runs until SIGTERM or SIGINT, then exits 0; exits 1 when it cannot listen.
 *
 * Messages: one process-wide ring of SLOTS slots, indexed by a message number
 * (head = the next number).  A message holds a reference for every session
 * that existed when it arrived (the sender included, which skips it); each
 * session keeps `next`, the number of the next message it has not taken, and
 * drops its reference as it writes (or skips) each one; the message is freed
 * at zero.  A session that has fallen SLOTS messages behind when a new one
 * arrives is closed (it cannot be served without unbounded memory), and
 * counted.  Everything runs on the lws service thread; nothing is locked.
 * The work per message is one lws_callback_on_writable() per session and one
 * write per receiving session, as in libwebsockets' minimal-ws-server-ring
 * (whose lws_ring_consume_and_update_oldest() scans every session whenever the
 * oldest tail moves, which is quadratic at thousands of sessions, so the ring
 * here is reference-counted instead).
 */
#include <libwebsockets.h>

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS 1024

/* One of these per message in the ring. */
typedef struct bc_msg {
	unsigned refs;       /* sessions that still have to write or skip it */
	struct bc_sess *sender;
	size_t len;
	unsigned char *buf;  /* LWS_PRE + len bytes, malloc'd */
} bc_msg;

/* One of these per WebSocket connection. */
typedef struct bc_sess {
	struct bc_sess *next_sess, *prev_sess;
	struct lws *wsi;
	uint64_t next;        /* number of the next message to take */
	bool culled;
	unsigned char *rx;    /* reassembly of a fragmented message */
	size_t rx_len, rx_cap;
} bc_sess;

static bc_msg ring[SLOTS];
static uint64_t head;     /* number of the next message to arrive */
static bc_sess *sessions;
static unsigned long nsessions, culled_total, messages_total;
static volatile sig_atomic_t interrupted;

static void
msg_unref(uint64_t n)
{
	bc_msg *m = &ring[n % SLOTS];

	if (m->refs && --m->refs == 0) {
		free(m->buf);
		m->buf = NULL;
	}
}

/* Drops the session's references to every message it has not taken. */
static void
sess_release(bc_sess *s)
{
	for (; s->next < head; s->next++)
		msg_unref(s->next);
}

/* Takes in a whole message from `from`; returns -1 only when out of memory. */
static int
broadcast(bc_sess *from, const void *data, size_t len)
{
	bc_msg *m = &ring[head % SLOTS];

	if (m->refs) {
		/* Someone is still SLOTS messages behind: close the laggards. */
		for (bc_sess *s = sessions; s; s = s->next_sess)
			if (!s->culled && head - s->next >= SLOTS) {
				s->culled = true;
				culled_total++;
				sess_release(s);
				lws_set_timeout(s->wsi, PENDING_TIMEOUT_LAGGING, LWS_TO_KILL_ASYNC);
			}
		/* Every holder of the slot's message was culled just now. */
		free(m->buf);
		m->buf = NULL;
		m->refs = 0;
	}
	m->buf = malloc(LWS_PRE + len);
	if (!m->buf)
		return -1;
	memcpy(m->buf + LWS_PRE, data, len);
	m->len = len;
	m->sender = from;
	m->refs = 0;
	for (bc_sess *s = sessions; s; s = s->next_sess)
		if (!s->culled)
			m->refs++;
	head++;
	messages_total++;
	for (bc_sess *s = sessions; s; s = s->next_sess)
		if (s != from && !s->culled)
			lws_callback_on_writable(s->wsi);
	if (m->refs == 0) {
		free(m->buf);
		m->buf = NULL;
	}
	return 0;
}

static int
callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
	bc_sess *s = user;

	switch (reason) {
	case LWS_CALLBACK_ESTABLISHED:
		memset(s, 0, sizeof *s);
		s->wsi = wsi;
		s->next = head;
		s->next_sess = sessions;
		if (sessions)
			sessions->prev_sess = s;
		sessions = s;
		nsessions++;
		break;

	case LWS_CALLBACK_CLOSED:
		if (!s->culled)
			sess_release(s);
		if (s->prev_sess)
			s->prev_sess->next_sess = s->next_sess;
		else
			sessions = s->next_sess;
		if (s->next_sess)
			s->next_sess->prev_sess = s->prev_sess;
		free(s->rx);
		nsessions--;
		break;

	case LWS_CALLBACK_RECEIVE: {
		bool whole = lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi);

		if (whole && s->rx_len == 0)
			return broadcast(s, in, len);
		if (s->rx_len + len > s->rx_cap) {
			size_t cap = s->rx_cap ? s->rx_cap : 4096;
			while (cap < s->rx_len + len)
				cap *= 2;
			unsigned char *n = realloc(s->rx, cap);
			if (!n)
				return -1;
			s->rx = n;
			s->rx_cap = cap;
		}
		memcpy(s->rx + s->rx_len, in, len);
		s->rx_len += len;
		if (whole) {
			int rc = broadcast(s, s->rx, s->rx_len);
			s->rx_len = 0;
			return rc;
		}
		break;
	}

	case LWS_CALLBACK_SERVER_WRITEABLE:
		if (s->culled)
			break;
		while (s->next < head) {
			bc_msg *m = &ring[s->next % SLOTS];
			if (m->sender == s) {
				msg_unref(s->next++);
				continue;
			}
			int n = lws_write(wsi, m->buf + LWS_PRE, m->len, LWS_WRITE_TEXT);
			if (n < (int) m->len)
				return -1;
			msg_unref(s->next++);
			break; /* one frame per callback */
		}
		if (s->next < head)
			lws_callback_on_writable(wsi);
		break;

	default:
		break;
	}
	return 0;
}

static void
on_signal(int sig)
{
	(void) sig;
	interrupted = 1;
}

static void
usage(FILE *f)
{
	fprintf(f, "usage: lwsbcast --listen HOST:PORT [--rx-buffer BYTES]\n");
}

int
main(int argc, char **argv)
{
	const char *listen_arg = NULL;
	long rx_buffer = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		}
		if (i + 1 >= argc) {
			usage(stderr);
			return 2;
		}
		if (!strcmp(argv[i], "--listen"))
			listen_arg = argv[++i];
		else if (!strcmp(argv[i], "--rx-buffer"))
			rx_buffer = atol(argv[++i]);
		else {
			usage(stderr);
			return 2;
		}
	}
	const char *colon = listen_arg ? strrchr(listen_arg, ':') : NULL;
	if (!colon || colon == listen_arg || rx_buffer < 0) {
		usage(stderr);
		return 2;
	}
	char host[256];
	snprintf(host, sizeof host, "%.*s", (int) (colon - listen_arg), listen_arg);
	int port = atoi(colon + 1);

	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	lws_set_log_level(LLL_ERR | LLL_WARN, NULL);

	static struct lws_protocols protocols[] = {
		{ "http", lws_callback_http_dummy, 0, 0, 0, NULL, 0 },
		{ "synclog.v1", callback, sizeof(bc_sess), 0, 0, NULL, 0 },
		{ NULL, NULL, 0, 0, 0, NULL, 0 },
	};
	protocols[1].rx_buffer_size = (size_t) rx_buffer;

	struct lws_context_creation_info info;
	memset(&info, 0, sizeof info);
	info.options = LWS_SERVER_OPTION_VALIDATE_UTF8 | LWS_SERVER_OPTION_DISABLE_IPV6;
	info.port = port;
	info.iface = host;
	info.protocols = protocols;
	struct lws_context *ctx = lws_create_context(&info);
	if (!ctx) {
		fprintf(stderr, "lwsbcast: cannot listen on %s\n", listen_arg);
		return 1;
	}
	fprintf(stderr, "lwsbcast: listening on %s\n", listen_arg);
	while (!interrupted)
		if (lws_service(ctx, 0) < 0)
			break;
	fprintf(stderr, "lwsbcast: %lu messages, %lu sessions culled for lagging, %lu sessions open at exit\n",
	        messages_total, culled_total, nsessions);
	lws_context_destroy(ctx);
	for (uint64_t n = head > SLOTS ? head - SLOTS : 0; n < head; n++)
		free(ring[n % SLOTS].buf);
	return 0;
}

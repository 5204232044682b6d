/*
 * gateway/main.c: synclog-gateway's entry point: arguments, the lws context,
 * and the glue that services the gateway's one database connection (db.h)
 * inside the lws event loop.
 *
 *   synclog-gateway --listen HOST:PORT --db CONNINFO [--static DIR] [options]
 *   (SYNCLOG_LISTEN and SYNCLOG_DB are the fallbacks for the first two;
 *   usage() lists the options)
 *
 * At start it listens (exit 1 with a message when it cannot), connects to the
 * database and waits up to SL_DB_START_TIMEOUT_MS for it (exit 1 with a
 * message when it is not reached), then serves until SIGTERM or SIGINT, after
 * which it closes everything and exits 0.  A database lost later is
 * reconnected by db.c; meanwhile pushes get server_unavailable.
 *
 * Handshakes: the plain HTTP protocol's CONFIRM_UPGRADE refuses an upgrade
 * past --max-connections (503), one from an address that already has
 * --max-pending-per-peer connections not yet welcomed (503; session.c
 * counts them; these refusals are logged at most once a second, with the
 * number left unlogged, so that a flood does not flood the log) and one
 * whose Origin is not allowed (403).  A
 * connection that has not finished its HTTP upgrade within --hello-timeout is
 * closed by lws (timeout_secs_ah_idle), so the upgrade cannot be sent slowly
 * for longer than a hello could.
 *
 * Database sockets in the lws loop (one sl_dbconn per connection, gateway.h):
 * lws owns the poll() loop, so each sl_db's socket is handed to lws as an adopted raw file descriptor (protocol
 * "synclog-db", LWS_ADOPT_RAW_FILE_DESC).  lws closes the descriptors it
 * adopts, while libpq must stay the only owner of its socket, so lws gets a
 * dup() of it: same socket, same readiness, and lws closes only its copy.
 * libpq opens a new socket at each reconnection (and for each host it tries)
 * and the number may be reused, so the adopted copy is checked after every
 * sl_db call by the socket's identity (fstat st_ino), not its number; when it
 * differs the old adoption is killed and the new socket adopted.  Readable →
 * sl_db_on_ready(POLLIN); POLLOUT wanted → lws_callback_on_writable on the
 * adopted wsi, writeable → sl_db_on_ready(POLLOUT).  A lws_sul timer calls
 * sl_db_on_ready(0) when sl_db_next_timeout_ms() says so, and at least every
 * SL_DB_TICK_MS as a safety net (a missed wakeup).  Backoff and connect
 * timeouts come from sl_db_next_timeout_ms(), so the tick can be rare: each
 * one is a poll() over every connection (measured: 100 ms ticks on 9
 * database connections were most of an idle gateway's wake-ups).  A signal
 * interrupts poll() itself.
 */
#include "gateway.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SL_DB_START_TIMEOUT_MS 5000
#define SL_DB_TICK_MS 1000

sl_gateway sl_gw;

static volatile sig_atomic_t interrupted;

void
sl_gw_log(const char *fmt, ...)
{
	va_list ap;
	char line[1024];

	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	fprintf(stderr, "synclog-gateway: %s\n", line);
	fflush(stderr);
}

int64_t
sl_gw_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t
wall_hlc(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t ms = (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
	return (ms & ((UINT64_C(1) << 48) - 1)) << 16;
}

void
sl_gw_hlc_now(char out[SL_HLC_LEN + 1])
{
	uint64_t w = wall_hlc();

	sl_gw.hlc_last = w > sl_gw.hlc_last ? w : sl_gw.hlc_last + 1;
	snprintf(out, SL_HLC_LEN + 1, "%016llx", (unsigned long long) sl_gw.hlc_last);
}

void
sl_gw_hlc_observe(const char *hlc)
{
	char *end;
	uint64_t h;

	if (!hlc || strlen(hlc) != SL_HLC_LEN)
		return;
	errno = 0;
	h = strtoull(hlc, &end, 16);
	if (errno || *end)
		return;
	if (h > wall_hlc() + (UINT64_C(60000) << 16))
		return;
	if (h > sl_gw.hlc_last)
		sl_gw.hlc_last = h;
}

/* Kills the connection's current adoption, if any; its close callback is
 * then ignored. */
static void
db_unadopt(sl_dbconn *d)
{
	if (d->wsi) {
		struct lws *w = d->wsi;
		d->wsi = NULL;
		lws_set_opaque_user_data(w, NULL);
		lws_set_timeout(w, PENDING_TIMEOUT_KILLED_BY_PARENT, LWS_TO_KILL_ASYNC);
	}
}

static void db_tick(lws_sorted_usec_list_t *sul);

/*
 * Brings the lws side up to date with one sl_db: the right socket adopted,
 * POLLOUT asked for when wanted, the timer set.  Cannot fail: a socket that
 * cannot be adopted is left to the timer (SL_DB_TICK_MS polling).
 */
static void
db_sync(sl_dbconn *d)
{
	int fd;
	struct stat st;

	if (!d->db)
		return;
	fd = sl_db_fd(d->db);
	if (fd < 0 || fstat(fd, &st) != 0) {
		db_unadopt(d);
	} else if (!d->wsi || st.st_ino != d->ino) {
		db_unadopt(d);
		int copy = dup(fd);
		if (copy >= 0) {
			lws_sock_file_fd_type u;
			u.filefd = copy;
			/* On failure lws closes `copy` itself. */
			d->wsi = lws_adopt_descriptor_vhost(sl_gw.vh, LWS_ADOPT_RAW_FILE_DESC, u,
			                                    "synclog-db", NULL);
			if (d->wsi)
				lws_set_opaque_user_data(d->wsi, d);
			d->ino = st.st_ino;
		}
	}
	if (d->wsi && (sl_db_events(d->db) & POLLOUT))
		lws_callback_on_writable(d->wsi);

	int64_t t = sl_db_next_timeout_ms(d->db, sl_gw_now_ms());
	if (t < 0 || t > SL_DB_TICK_MS)
		t = SL_DB_TICK_MS;
	lws_sul_schedule(sl_gw.ctx, 0, &d->tick, db_tick, t * LWS_US_PER_MS);
}

static void
db_ready(sl_dbconn *d, short revents)
{
	sl_db_on_ready(d->db, revents, sl_gw_now_ms());
	db_sync(d);
}

static void
db_tick(lws_sorted_usec_list_t *sul)
{
	db_ready(lws_container_of(sul, sl_dbconn, tick), 0);
}

int
sl_gw_query(int dbi, const char *sql, int nparams, const char *const *params,
            sl_db_result_fn fn, void *arg)
{
	if (dbi < 0 || dbi >= sl_gw.n_dbs || !sl_gw.dbs[dbi].db)
		return -1;
	sl_dbconn *d = &sl_gw.dbs[dbi];
	int rc = sl_db_query(d->db, sql, nparams, params, fn, arg);
	if (rc == 0)
		db_sync(d);
	return rc;
}

/* The raw-file protocol the database sockets' copies are adopted into. */
static int
db_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
            void *in, size_t len)
{
	(void) user;
	(void) in;
	(void) len;
	sl_dbconn *d = lws_get_opaque_user_data(wsi);
	switch (reason) {
	case LWS_CALLBACK_RAW_RX_FILE:
		if (!d || wsi != d->wsi)
			return -1; /* a stale adoption: let lws close its copy */
		db_ready(d, POLLIN);
		break;
	case LWS_CALLBACK_RAW_WRITEABLE_FILE:
		if (!d || wsi != d->wsi)
			return -1;
		db_ready(d, POLLOUT);
		break;
	case LWS_CALLBACK_RAW_CLOSE_FILE:
		if (d && wsi == d->wsi) {
			/* hangup or error on the socket: let libpq see it */
			d->wsi = NULL;
			if (d->db)
				sl_db_on_ready(d->db, POLLIN, sl_gw_now_ms());
			/* no db_sync() here: we are inside lws's close path; the tick
			 * re-adopts */
			if (sl_gw.ctx)
				lws_sul_schedule(sl_gw.ctx, 0, &d->tick, db_tick, 1);
		}
		break;
	default:
		break;
	}
	return 0;
}

/*
 * protocols[0]: plain HTTP (the --static mount).  A WebSocket upgrade without
 * the synclog.v1 subprotocol would land here: refuse it rather than leave the
 * client talking to nothing.
 */
static bool
origin_allowed(struct lws *wsi)
{
	char origin[256];

	if (!sl_gw.cfg.origins)
		return true;
	int n = lws_hdr_copy(wsi, origin, sizeof origin, WSI_TOKEN_ORIGIN);
	if (n <= 0)
		return lws_hdr_total_length(wsi, WSI_TOKEN_ORIGIN) == 0; /* none: not a browser */
	for (char **o = sl_gw.cfg.origins; *o; o++)
		if (!strcmp(*o, origin))
			return true;
	return false;
}

/* Refuses the handshake with an HTTP status and a one-line body. */
static int
refuse(struct lws *wsi, unsigned status, const char *why)
{
	char peer[48];

	lws_get_peer_simple(wsi, peer, sizeof peer);
	sl_gw_log("peer=%s: handshake refused (%u): %s", peer, status, why);
	lws_return_http_status(wsi, status, why);
	return -1;
}

/*
 * Refuses the handshake of a peer at --max-pending-per-peer (503).  The log
 * line names the address and the limit, at most once per
 * SL_REFUSE_LOG_MS, saying how many refusals went unlogged since the last.
 */
#define SL_REFUSE_LOG_MS 1000

static int
refuse_pending(struct lws *wsi, const char *peer)
{
	static int64_t last_ms = -SL_REFUSE_LOG_MS;
	static unsigned long long unlogged;
	int64_t now = sl_gw_now_ms();

	if (now - last_ms >= SL_REFUSE_LOG_MS) {
		char more[96] = "";
		if (unlogged)
			snprintf(more, sizeof more, "; %llu more such refusals (any address) since the last line",
			         unlogged);
		sl_gw_log("peer=%s: handshake refused (503): %zu connections from this address not yet "
		          "welcomed (--max-pending-per-peer %zu)%s",
		          peer, sl_sessions_pending_from(peer), sl_gw.cfg.max_pending_per_peer, more);
		last_ms = now;
		unlogged = 0;
	} else {
		unlogged++;
	}
	lws_return_http_status(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE,
	                       "too many connections from this address not yet welcomed");
	return -1;
}

static int
http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
              void *in, size_t len)
{
	switch (reason) {
	case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
		if (!in || strcmp((const char *) in, "websocket"))
			break;
		if (sl_gw.n_sessions >= sl_gw.cfg.max_connections)
			return refuse(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE,
			              "too many connections (--max-connections)");
		if (sl_gw.cfg.max_pending_per_peer > 0) {
			char peer[48];
			lws_get_peer_simple(wsi, peer, sizeof peer);
			if (sl_sessions_pending_from(peer) >= sl_gw.cfg.max_pending_per_peer)
				return refuse_pending(wsi, peer);
		}
		if (!origin_allowed(wsi))
			return refuse(wsi, HTTP_STATUS_FORBIDDEN, "Origin not allowed (--allow-origin)");
		break;
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
	case LWS_CALLBACK_ESTABLISHED:
		/* a WebSocket without the synclog.v1 subprotocol */
		return -1;
	default:
		break;
	}
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static void
on_db_connected(void *user)
{
	sl_dbconn *d = user;
	sl_gw_log("database connected (connection %d)", d->index);
	sl_sessions_on_db_connected(d->index);
}

static void
on_db_notify(void *user, const char *channel, const char *payload)
{
	(void) user;
	sl_sessions_on_notify(channel, payload);
}

static void
on_db_log(void *user, const char *line)
{
	sl_dbconn *d = user;
	sl_gw_log("[%d] %s", d->index, line);
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
	fprintf(f,
	        "usage: synclog-gateway --listen HOST:PORT --db CONNINFO [--static DIR] [options]\n"
	        "  --listen HOST:PORT      address to serve WebSocket (and --static HTTP) on;\n"
	        "                          [::1]:PORT for IPv6 (environment SYNCLOG_LISTEN)\n"
	        "  --db CONNINFO           libpq connection string or URI; multi-host with\n"
	        "                          target_session_attrs=read-write works (SYNCLOG_DB)\n"
	        "  --static DIR            serve DIR's files over plain HTTP on the same port\n"
	        "                          (/ is DIR/index.html; .html .js .mjs .css .json .map\n"
	        "                          .wasm .ts and image types; Cache-Control: no-store)\n"
	        "  --db-connections N      database connections, 1-64 (default 4): one reads the\n"
	        "                          change stream, the others carry the clients' queries\n"
	        "  --max-connections N     WebSocket connections at most (default 10000); more\n"
	        "                          handshakes are refused with HTTP 503\n"
	        "  --max-pending-per-peer N\n"
	        "                          connections from one address not yet welcomed (no\n"
	        "                          hello, or its answer not sent yet) at most (default\n"
	        "                          16; 0: no limit); more handshakes from that address\n"
	        "                          are refused with HTTP 503.  Behind a proxy or load\n"
	        "                          balancer all clients share its address: raise it\n"
	        "                          or set 0 and rely on the proxy's own limits\n"
	        "  --allow-origin LIST     comma-separated Origins a browser may connect from;\n"
	        "                          others are refused with HTTP 403 (default: any;\n"
	        "                          handshakes without Origin are always accepted)\n"
	        "  --hello-timeout SECS    close a connection without hello after SECS (default 10);\n"
	        "                          also one still sending its HTTP upgrade by then\n"
	        "  --idle-timeout SECS     ping a connection silent for SECS/2, drop it when silent\n"
	        "                          for SECS (default 60; 0: never)\n"
	        "  --send-queue-bytes N    bytes queued for one client at most (default 1048576);\n"
	        "                          a client past it is caught up from the database later\n"
	        "  --socket-send-buffer N  SO_SNDBUF of each client's socket (default 0: the\n"
	        "                          kernel's, which grows up to net.ipv4.tcp_wmem's max);\n"
	        "                          bounds what the kernel holds for a client that stops\n"
	        "                          reading before --send-queue-bytes counts\n"
	        "  --max-frame-bytes N     largest incoming message (default 1048576)\n"
	        "  --max-push-ops N        most ops in one push (default 1000)\n");
}

/* A whole decimal number in [min, max], or -1 with a message. */
static long long
num_arg(const char *opt, const char *v, long long min, long long max)
{
	char *end;
	errno = 0;
	long long n = strtoll(v, &end, 10);
	if (errno || end == v || *end || n < min || n > max) {
		fprintf(stderr, "synclog-gateway: %s %s: expected a whole number from %lld to %lld\n",
		        opt, v, min, max);
		return -1;
	}
	return n;
}

/* --allow-origin's list, NULL-terminated; NULL (with a message) when empty. */
static char **
split_origins(const char *list)
{
	size_t n = 1;
	for (const char *p = list; *p; p++)
		n += *p == ',';
	char **v = calloc(n + 1, sizeof *v);
	char *copy = strdup(list);
	size_t k = 0;
	if (!v || !copy) {
		free(v);
		free(copy);
		return NULL;
	}
	for (char *tok = strtok(copy, ", "); tok; tok = strtok(NULL, ", "))
		v[k++] = strdup(tok);
	free(copy);
	if (k == 0) {
		free(v);
		fprintf(stderr, "synclog-gateway: --allow-origin: expected a comma-separated list of origins such as https://app.example.com\n");
		return NULL;
	}
	return v;
}

/* lws's own log lines: errors and warnings only, through our prefix. */
static void
lws_log_line(int level, const char *line)
{
	(void) level;
	size_t n = strlen(line);
	while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		n--;
	fprintf(stderr, "synclog-gateway: lws: %.*s\n", (int) n, line);
}

int
main(int argc, char **argv)
{
	const char *listen_arg = getenv("SYNCLOG_LISTEN");
	const char *db_arg = getenv("SYNCLOG_DB");
	const char *static_dir = NULL;
	int status = 1;
	long long v;

	sl_gw.cfg.limits = sl_limits_default();
	sl_gw.cfg.db_connections = 4;
	sl_gw.cfg.max_connections = 10000;
	sl_gw.cfg.max_pending_per_peer = 16;
	sl_gw.cfg.hello_timeout_s = 10;
	sl_gw.cfg.idle_timeout_s = 60;
	sl_gw.cfg.send_queue_bytes = 1024 * 1024;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return 0;
		}
		if (i + 1 >= argc) {
			fprintf(stderr, "synclog-gateway: option %s needs a value\n", argv[i]);
			usage(stderr);
			return 2;
		}
		if (!strcmp(argv[i], "--listen"))
			listen_arg = argv[++i];
		else if (!strcmp(argv[i], "--db"))
			db_arg = argv[++i];
		else if (!strcmp(argv[i], "--static"))
			static_dir = argv[++i];
		else if (!strcmp(argv[i], "--db-connections")) {
			if ((v = num_arg(argv[i], argv[i + 1], 1, 64)) < 0)
				return 2;
			sl_gw.cfg.db_connections = (int) v;
			i++;
		} else if (!strcmp(argv[i], "--max-connections")) {
			if ((v = num_arg(argv[i], argv[i + 1], 1, 1000000)) < 0)
				return 2;
			sl_gw.cfg.max_connections = (size_t) v;
			i++;
		} else if (!strcmp(argv[i], "--max-pending-per-peer")) {
			if ((v = num_arg(argv[i], argv[i + 1], 0, 1000000)) < 0)
				return 2;
			sl_gw.cfg.max_pending_per_peer = (size_t) v;
			i++;
		} else if (!strcmp(argv[i], "--hello-timeout")) {
			if ((v = num_arg(argv[i], argv[i + 1], 1, 3600)) < 0)
				return 2;
			sl_gw.cfg.hello_timeout_s = (int) v;
			i++;
		} else if (!strcmp(argv[i], "--idle-timeout")) {
			if ((v = num_arg(argv[i], argv[i + 1], 0, 86400)) < 0)
				return 2;
			sl_gw.cfg.idle_timeout_s = (int) v;
			i++;
		} else if (!strcmp(argv[i], "--send-queue-bytes")) {
			if ((v = num_arg(argv[i], argv[i + 1], 4096, 1LL << 32)) < 0)
				return 2;
			sl_gw.cfg.send_queue_bytes = (size_t) v;
			i++;
		} else if (!strcmp(argv[i], "--socket-send-buffer")) {
			if ((v = num_arg(argv[i], argv[i + 1], 0, 64LL << 20)) < 0)
				return 2;
			sl_gw.cfg.socket_send_buffer = (int) v;
			i++;
		} else if (!strcmp(argv[i], "--max-frame-bytes")) {
			if ((v = num_arg(argv[i], argv[i + 1], 1024, 64LL << 20)) < 0)
				return 2;
			sl_gw.cfg.limits.max_frame_bytes = (size_t) v;
			i++;
		} else if (!strcmp(argv[i], "--max-push-ops")) {
			if ((v = num_arg(argv[i], argv[i + 1], 1, 100000)) < 0)
				return 2;
			sl_gw.cfg.limits.max_push_ops = (size_t) v;
			i++;
		} else if (!strcmp(argv[i], "--allow-origin")) {
			if (!(sl_gw.cfg.origins = split_origins(argv[++i])))
				return 2;
		} else {
			fprintf(stderr, "synclog-gateway: unknown option %s\n", argv[i]);
			usage(stderr);
			return 2;
		}
	}
	if (!listen_arg || !*listen_arg) {
		fprintf(stderr, "synclog-gateway: no address to listen on: give --listen HOST:PORT or set SYNCLOG_LISTEN\n");
		return 2;
	}
	if (!db_arg) {
		fprintf(stderr, "synclog-gateway: no database: give --db CONNINFO or set SYNCLOG_DB\n");
		return 2;
	}

	char host[256];
	const char *colon = strrchr(listen_arg, ':');
	char *end;
	long port = colon ? strtol(colon + 1, &end, 10) : -1;
	if (!colon || colon == listen_arg || (size_t) (colon - listen_arg) >= sizeof host ||
	    !colon[1] || *end || port < 1 || port > 65535) {
		fprintf(stderr, "synclog-gateway: --listen %s: expected HOST:PORT with a port from 1 to 65535\n",
		        listen_arg);
		return 2;
	}
	memcpy(host, listen_arg, (size_t) (colon - listen_arg));
	host[colon - listen_arg] = '\0';
	if (host[0] == '[' && host[strlen(host) - 1] == ']') { /* [::1]:8080 */
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}

	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_line);

	sl_gw.next_session_id = 1;

	static struct lws_protocols protocols[] = {
		{ "http", http_callback, 0, 0, 0, NULL, 0 },
		/* rx_buffer_size: lws's per-connection receive buffer; messages of
		 * any size are reassembled by session.c, so it is kept small (it is
		 * most of an idle connection's memory). */
		{ "synclog.v1", sl_session_callback, 0, 2048, 0, NULL, 0 },
		{ "synclog-db", db_callback, 0, 0, 0, NULL, 0 },
		{ NULL, NULL, 0, 0, 0, NULL, 0 },
	};
	protocols[1].per_session_data_size = sl_session_data_size();

	/*
	 * --static: lws knows .html, .js, .css and a few image and font
	 * types itself, and answers any other file with 415.  A browser needs
	 * these too: an ES module (.mjs) must come as JavaScript, a .wasm as
	 * application/wasm (WebAssembly.instantiateStreaming refuses anything
	 * else), source maps and declarations as text.  lws checks its own list
	 * first, then this one; a suffix in neither still gets 415.  Files go out
	 * with lws's "Cache-Control: no-store" (no cache_max_age), so a reload
	 * always gets the build on disk, never a page of one build with the
	 * worker or .wasm of another.
	 */
	static struct lws_protocol_vhost_options mime_ts = { NULL, NULL, ".ts", "text/plain; charset=utf-8" };
	static struct lws_protocol_vhost_options mime_map = { &mime_ts, NULL, ".map", "application/json" };
	static struct lws_protocol_vhost_options mime_json = { &mime_map, NULL, ".json", "application/json" };
	static struct lws_protocol_vhost_options mime_wasm = { &mime_json, NULL, ".wasm", "application/wasm" };
	static struct lws_protocol_vhost_options mime_mjs = { &mime_wasm, NULL, ".mjs", "text/javascript" };
	static struct lws_http_mount mount;
	memset(&mount, 0, sizeof mount);
	mount.mountpoint = "/";
	mount.mountpoint_len = 1;
	mount.origin = static_dir;
	mount.def = "index.html";
	mount.origin_protocol = LWSMPRO_FILE;
	mount.extra_mimetypes = &mime_mjs;

	struct lws_context_creation_info info;
	memset(&info, 0, sizeof info);
	info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_VALIDATE_UTF8 |
	               LWS_SERVER_OPTION_DISABLE_IPV6 * (strchr(host, ':') == NULL);
	info.port = CONTEXT_PORT_NO_LISTEN;
	sl_gw.ctx = lws_create_context(&info);
	if (!sl_gw.ctx) {
		fprintf(stderr, "synclog-gateway: cannot create the libwebsockets context\n");
		return 1;
	}

	info.port = (int) port;
	info.iface = host;
	/* A connection still in its HTTP upgrade (a slowloris sending its
	 * headers a byte at a time, or nothing after a request line) is closed
	 * by lws once it has held its header buffer this long: the hello timeout
	 * then bounds the whole opening, upgrade and hello (lws's default is 10 s
	 * whatever --hello-timeout says). */
	info.timeout_secs_ah_idle = (unsigned) sl_gw.cfg.hello_timeout_s;
	info.protocols = protocols;
	info.vhost_name = "synclog";
	if (static_dir)
		info.mounts = &mount;
	sl_gw.vh = lws_create_vhost(sl_gw.ctx, &info);
	if (!sl_gw.vh) {
		fprintf(stderr, "synclog-gateway: cannot listen on %s (address in use, not local, or not permitted)\n",
		        listen_arg);
		goto out;
	}

	sl_gw.dbs = calloc((size_t) sl_gw.cfg.db_connections, sizeof *sl_gw.dbs);
	if (!sl_gw.dbs) {
		fprintf(stderr, "synclog-gateway: out of memory\n");
		goto out;
	}
	sl_gw.n_dbs = sl_gw.cfg.db_connections;
	for (int i = 0; i < sl_gw.n_dbs; i++) {
		/* Only the first LISTENs (db.h: no on_notify, no LISTEN). */
		sl_db_callbacks cb = { on_db_connected, i == 0 ? on_db_notify : NULL, on_db_log };
		sl_gw.dbs[i].index = i;
		sl_gw.dbs[i].db = sl_db_new(db_arg, &cb, &sl_gw.dbs[i]);
		if (!sl_gw.dbs[i].db) {
			fprintf(stderr, "synclog-gateway: --db: the connection string does not parse\n");
			goto out;
		}
	}
	sl_gw_log("listening on %s, connecting to the database (%d connections)", listen_arg,
	          sl_gw.n_dbs);
	for (int i = 0; i < sl_gw.n_dbs; i++)
		db_sync(&sl_gw.dbs[i]);

	int64_t deadline = sl_gw_now_ms() + SL_DB_START_TIMEOUT_MS;
	bool all = false;
	while (!interrupted && !all && sl_gw_now_ms() < deadline) {
		if (lws_service(sl_gw.ctx, 0) < 0)
			break;
		all = true;
		for (int i = 0; i < sl_gw.n_dbs; i++)
			all = all && sl_db_connected(sl_gw.dbs[i].db);
	}
	if (!interrupted && !all) {
		fprintf(stderr, "synclog-gateway: cannot reach the database within %d s (see the db: lines above); giving up\n",
		        SL_DB_START_TIMEOUT_MS / 1000);
		goto out;
	}

	sl_sessions_start();
	while (!interrupted)
		if (lws_service(sl_gw.ctx, 0) < 0)
			break;
	sl_sessions_stop();
	sl_gw_log("%s: shutting down", interrupted ? "signal" : "service loop ended");
	status = interrupted ? 0 : 1;

out:
	/* Sessions first (their close callbacks may reach for the db), then the
	 * db (failing what is still queued: the callbacks find no session). */
	if (sl_gw.ctx) {
		for (int i = 0; i < sl_gw.n_dbs; i++) {
			lws_sul_schedule(sl_gw.ctx, 0, &sl_gw.dbs[i].tick, NULL, LWS_SET_TIMER_USEC_CANCEL);
			sl_gw.dbs[i].wsi = NULL;
		}
		struct lws_context *ctx = sl_gw.ctx;
		lws_context_destroy(ctx);
		sl_gw.ctx = NULL;
	}
	for (int i = 0; i < sl_gw.n_dbs; i++)
		sl_db_free(sl_gw.dbs[i].db);
	free(sl_gw.dbs);
	sl_gw.dbs = NULL;
	sl_gw.n_dbs = 0;
	if (sl_gw.cfg.origins) {
		for (char **o = sl_gw.cfg.origins; *o; o++)
			free(*o);
		free(sl_gw.cfg.origins);
	}
	return status;
}

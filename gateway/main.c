/*
 * gateway/main.c: synclog-gateway's entry point: arguments, the lws context,
 * and the glue that services the gateway's one database connection (db.h)
 * inside the lws event loop.
 *
 *   synclog-gateway --listen HOST:PORT --db CONNINFO [--static DIR]
 *   (SYNCLOG_LISTEN and SYNCLOG_DB are the fallbacks for the first two)
 *
 * At start it listens (exit 1 with a message when it cannot), connects to the
 * database and waits up to SL_DB_START_TIMEOUT_MS for it (exit 1 with a
 * message when it is not reached), then serves until SIGTERM or SIGINT, after
 * which it closes everything and exits 0.  A database lost later is
 * reconnected by db.c; meanwhile pushes get server_unavailable.
 *
 * Database socket in the lws loop: lws owns the poll() loop, so the sl_db's
 * socket is handed to lws as an adopted raw file descriptor (protocol
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
 * SL_DB_TICK_MS as a safety net (backoff, connect timeouts, a missed wakeup),
 * which also bounds how long a signal can go unnoticed.
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
#define SL_DB_TICK_MS 100

sl_gateway sl_gw;

/* The database side of the loop; one of these per gateway. */
static struct {
	struct lws *wsi;  /* the adopted copy of the sl_db socket, or NULL */
	ino_t ino;        /* identity of the socket adopted */
	lws_sorted_usec_list_t tick;
} dbl;

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

/* Kills the current adoption, if any; its close callback is then ignored. */
static void
db_unadopt(void)
{
	if (dbl.wsi) {
		struct lws *w = dbl.wsi;
		dbl.wsi = NULL;
		lws_set_timeout(w, PENDING_TIMEOUT_KILLED_BY_PARENT, LWS_TO_KILL_ASYNC);
	}
}

static void db_tick(lws_sorted_usec_list_t *sul);

/*
 * Brings the lws side up to date with the sl_db: the right socket adopted,
 * POLLOUT asked for when wanted, the timer set.  Cannot fail: a socket that
 * cannot be adopted is left to the timer (SL_DB_TICK_MS polling).
 */
static void
db_sync(void)
{
	int fd;
	struct stat st;

	if (!sl_gw.db)
		return;
	fd = sl_db_fd(sl_gw.db);
	if (fd < 0 || fstat(fd, &st) != 0) {
		db_unadopt();
	} else if (!dbl.wsi || st.st_ino != dbl.ino) {
		db_unadopt();
		int copy = dup(fd);
		if (copy >= 0) {
			lws_sock_file_fd_type u;
			u.filefd = copy;
			/* On failure lws closes `copy` itself. */
			dbl.wsi = lws_adopt_descriptor_vhost(sl_gw.vh, LWS_ADOPT_RAW_FILE_DESC,
			                                     u, "synclog-db", NULL);
			dbl.ino = st.st_ino;
		}
	}
	if (dbl.wsi && (sl_db_events(sl_gw.db) & POLLOUT))
		lws_callback_on_writable(dbl.wsi);

	int64_t t = sl_db_next_timeout_ms(sl_gw.db, sl_gw_now_ms());
	if (t < 0 || t > SL_DB_TICK_MS)
		t = SL_DB_TICK_MS;
	lws_sul_schedule(sl_gw.ctx, 0, &dbl.tick, db_tick, t * LWS_US_PER_MS);
}

static void
db_ready(short revents)
{
	sl_db_on_ready(sl_gw.db, revents, sl_gw_now_ms());
	db_sync();
}

static void
db_tick(lws_sorted_usec_list_t *sul)
{
	(void) sul;
	db_ready(0);
}

int
sl_gw_query(const char *sql, int nparams, const char *const *params,
            sl_db_result_fn fn, void *arg)
{
	if (!sl_gw.db)
		return -1;
	int rc = sl_db_query(sl_gw.db, sql, nparams, params, fn, arg);
	if (rc == 0)
		db_sync();
	return rc;
}

/* The raw-file protocol the database socket's copy is adopted into. */
static int
db_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
            void *in, size_t len)
{
	(void) user;
	(void) in;
	(void) len;
	switch (reason) {
	case LWS_CALLBACK_RAW_RX_FILE:
		if (wsi != dbl.wsi)
			return -1; /* a stale adoption: let lws close its copy */
		db_ready(POLLIN);
		break;
	case LWS_CALLBACK_RAW_WRITEABLE_FILE:
		if (wsi != dbl.wsi)
			return -1;
		db_ready(POLLOUT);
		break;
	case LWS_CALLBACK_RAW_CLOSE_FILE:
		if (wsi == dbl.wsi) {
			/* hangup or error on the socket: let libpq see it */
			dbl.wsi = NULL;
			if (sl_gw.db)
				sl_db_on_ready(sl_gw.db, POLLIN, sl_gw_now_ms());
			/* no db_sync() here: we are inside lws's close path; the tick
			 * re-adopts */
			if (sl_gw.ctx)
				lws_sul_schedule(sl_gw.ctx, 0, &dbl.tick, db_tick, 1);
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
static int
http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
              void *in, size_t len)
{
	if (reason == LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION || reason == LWS_CALLBACK_ESTABLISHED)
		return -1;
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static void
on_db_connected(void *user)
{
	(void) user;
	sl_gw_log("database connected");
	sl_sessions_on_db_connected();
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
	(void) user;
	sl_gw_log("%s", line);
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
	fprintf(f, "usage: synclog-gateway --listen HOST:PORT --db CONNINFO [--static DIR]\n"
	           "  (environment SYNCLOG_LISTEN and SYNCLOG_DB are used when the options are absent)\n");
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
		else {
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

	sl_gw.limits = sl_limits_default();
	sl_gw.next_session_id = 1;

	static struct lws_protocols protocols[] = {
		{ "http", http_callback, 0, 0, 0, NULL, 0 },
		{ "synclog.v1", sl_session_callback, 0, 65536, 0, NULL, 0 },
		{ "synclog-db", db_callback, 0, 0, 0, NULL, 0 },
		{ NULL, NULL, 0, 0, 0, NULL, 0 },
	};
	protocols[1].per_session_data_size = sl_session_data_size();

	static struct lws_http_mount mount;
	memset(&mount, 0, sizeof mount);
	mount.mountpoint = "/";
	mount.mountpoint_len = 1;
	mount.origin = static_dir;
	mount.def = "index.html";
	mount.origin_protocol = LWSMPRO_FILE;

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

	sl_db_callbacks cb = { on_db_connected, on_db_notify, on_db_log };
	sl_gw.db = sl_db_new(db_arg, &cb, NULL);
	if (!sl_gw.db) {
		fprintf(stderr, "synclog-gateway: --db: the connection string does not parse\n");
		goto out;
	}
	sl_gw_log("listening on %s, connecting to the database", listen_arg);
	db_sync();

	int64_t deadline = sl_gw_now_ms() + SL_DB_START_TIMEOUT_MS;
	while (!interrupted && !sl_db_connected(sl_gw.db) && sl_gw_now_ms() < deadline)
		if (lws_service(sl_gw.ctx, 0) < 0)
			break;
	if (!interrupted && !sl_db_connected(sl_gw.db)) {
		fprintf(stderr, "synclog-gateway: cannot reach the database within %d s (see the db: lines above); giving up\n",
		        SL_DB_START_TIMEOUT_MS / 1000);
		goto out;
	}

	while (!interrupted)
		if (lws_service(sl_gw.ctx, 0) < 0)
			break;
	sl_gw_log("%s: shutting down", interrupted ? "signal" : "service loop ended");
	status = interrupted ? 0 : 1;

out:
	/* Sessions first (their close callbacks may reach for the db), then the
	 * db (failing what is still queued: the callbacks find no session). */
	if (sl_gw.ctx) {
		lws_sul_schedule(sl_gw.ctx, 0, &dbl.tick, NULL, LWS_SET_TIMER_USEC_CANCEL);
		struct lws_context *ctx = sl_gw.ctx;
		dbl.wsi = NULL;
		lws_context_destroy(ctx);
		sl_gw.ctx = NULL;
	}
	sl_db_free(sl_gw.db);
	sl_gw.db = NULL;
	return status;
}

/*
 * client/synclog.c: the public handle of libsynclog (synclog.h) on its local
 * side: opening and closing, local writes and reads, the pending list, the
 * callbacks and the handle's lock.  The network side is net.c; the durable
 * store is store.c, outbox.c and rebase.c.
 *
 * Every public function here takes sl->lock (recursive, so a callback may
 * write) for its whole call; see synclog_int.h.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "synclog.h"
#include "synclog_int.h"

_Static_assert((int) SYNCLOG_OK == (int) SL_OK && (int) SYNCLOG_EINVAL == (int) SL_EINVAL &&
                       (int) SYNCLOG_ESKEW == (int) SL_ESKEW && (int) SYNCLOG_ERANGE == (int) SL_ERANGE &&
                       (int) SYNCLOG_ENOMEM == (int) SL_ENOMEM && (int) SYNCLOG_EDB == (int) SL_EDB,
               "synclog.h re-exports the store's status codes unchanged");
_Static_assert(SYNCLOG_UUID_LEN == SL_UUID_LEN, "one UUID length");

int
sl_err(synclog *sl, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(sl->errmsg, sizeof(sl->errmsg), fmt, ap);
	va_end(ap);
	return rc;
}

int
sl_err_store(synclog *sl, int rc)
{
	if (rc == SL_OK)
		sl->errmsg[0] = '\0';
	else
		snprintf(sl->errmsg, sizeof(sl->errmsg), "%s", sl_store_errmsg(sl->store));
	return rc;
}

void
sl_event(synclog *sl, synclog_event ev, const char *detail)
{
	if (sl->on_event != NULL)
		sl->on_event(sl->event_ctx, ev, detail ? detail : "");
}

int
synclog_open(const char *path, synclog **out)
{
	synclog *sl;
	pthread_mutexattr_t attr;
	int rc;

	*out = NULL;
	if ((sl = calloc(1, sizeof(*sl))) == NULL)
		return SYNCLOG_ENOMEM;
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
	rc = pthread_mutex_init(&sl->lock, &attr);
	pthread_mutexattr_destroy(&attr);
	if (rc != 0) {
		free(sl);
		return SYNCLOG_ENOMEM;
	}
	atomic_init(&sl->wake_ctx, NULL);
	*out = sl;
	if ((rc = sl_store_open(path ? path : "", &sl->store)) != SL_OK) {
		snprintf(sl->errmsg, sizeof(sl->errmsg), "cannot open \"%s\": %s", path ? path : "(null)",
		         sl->store ? sl_store_errmsg(sl->store) : "out of memory");
		return rc;
	}
	return SYNCLOG_OK;
}

void
synclog_close(synclog *sl)
{
	if (sl == NULL)
		return;
	pthread_mutex_lock(&sl->lock);
	sl_net_free(sl);
	sl_store_close(sl->store);
	sl->store = NULL;
	pthread_mutex_unlock(&sl->lock);
	pthread_mutex_destroy(&sl->lock);
	free(sl);
}

const char *
synclog_errmsg(synclog *sl)
{
	return sl->errmsg;
}

const char *
synclog_client_id(synclog *sl)
{
	return sl->store ? sl_store_client_id(sl->store) : "";
}

uint64_t
synclog_cursor(synclog *sl)
{
	uint64_t c;

	pthread_mutex_lock(&sl->lock);
	c = sl->store ? sl_store_cursor(sl->store) : 0;
	pthread_mutex_unlock(&sl->lock);
	return c;
}

struct sqlite3 *
synclog_db(synclog *sl)
{
	return sl->store ? sl_store_db(sl->store) : NULL;
}

int
synclog_put(synclog *sl, const char *table, const char *row, const char *fields_json,
            char op_id_out[SYNCLOG_UUID_LEN + 1])
{
	int rc;

	pthread_mutex_lock(&sl->lock);
	if (sl->store == NULL)
		rc = sl_err(sl, SYNCLOG_EMISUSE, "the handle's database is not open");
	else
		rc = sl_err_store(sl, sl_store_put(sl->store, table, row, fields_json, op_id_out));
	pthread_mutex_unlock(&sl->lock);
	if (rc == SYNCLOG_OK)
		synclog_wakeup(sl);
	return rc;
}

int
synclog_delete(synclog *sl, const char *table, const char *row, char op_id_out[SYNCLOG_UUID_LEN + 1])
{
	int rc;

	pthread_mutex_lock(&sl->lock);
	if (sl->store == NULL)
		rc = sl_err(sl, SYNCLOG_EMISUSE, "the handle's database is not open");
	else
		rc = sl_err_store(sl, sl_store_delete(sl->store, table, row, op_id_out));
	pthread_mutex_unlock(&sl->lock);
	if (rc == SYNCLOG_OK)
		synclog_wakeup(sl);
	return rc;
}

struct pending_ctx {
	synclog_op_fn fn;
	void *ctx;
};

static int
pending_one(void *vctx, const sl_store_op *op)
{
	struct pending_ctx *p = vctx;
	synclog_op o = {
		.op_id = op->op_id,
		.table = op->table,
		.row = op->row,
		.kind = op->kind,
		.fields = op->fields,
		.hlc = op->hlc,
	};

	return p->fn(p->ctx, &o);
}

int
synclog_pending(synclog *sl, synclog_op_fn fn, void *ctx)
{
	struct pending_ctx p = {fn, ctx};
	int rc;

	pthread_mutex_lock(&sl->lock);
	if (sl->store == NULL)
		rc = sl_err(sl, SYNCLOG_EMISUSE, "the handle's database is not open");
	else
		rc = sl_err_store(sl, sl_store_pending(sl->store, pending_one, &p));
	pthread_mutex_unlock(&sl->lock);
	return rc;
}

void
synclog_on_change(synclog *sl, synclog_change_fn fn, void *ctx)
{
	pthread_mutex_lock(&sl->lock);
	sl->on_change = fn;
	sl->change_ctx = ctx;
	pthread_mutex_unlock(&sl->lock);
}

void
synclog_on_reject(synclog *sl, synclog_reject_fn fn, void *ctx)
{
	pthread_mutex_lock(&sl->lock);
	sl->on_reject = fn;
	sl->reject_ctx = ctx;
	pthread_mutex_unlock(&sl->lock);
}

void
synclog_on_event(synclog *sl, synclog_event_fn fn, void *ctx)
{
	pthread_mutex_lock(&sl->lock);
	sl->on_event = fn;
	sl->event_ctx = ctx;
	pthread_mutex_unlock(&sl->lock);
}

/* ---------------------------------------------------------------- network, in net.c */

int
synclog_connect(synclog *sl, const synclog_config *cfg)
{
	int rc;

	pthread_mutex_lock(&sl->lock);
	if (sl->store == NULL)
		rc = sl_err(sl, SYNCLOG_EMISUSE, "the handle's database is not open");
	else
		rc = sl_net_connect(sl, cfg);
	pthread_mutex_unlock(&sl->lock);
	return rc;
}

int
synclog_run(synclog *sl, int timeout_ms)
{
	int rc;

	pthread_mutex_lock(&sl->lock);
	rc = sl_net_run(sl, timeout_ms);
	pthread_mutex_unlock(&sl->lock);
	return rc;
}

int
synclog_sync(synclog *sl, int timeout_ms)
{
	int rc;

	pthread_mutex_lock(&sl->lock);
	rc = sl_net_sync(sl, timeout_ms);
	pthread_mutex_unlock(&sl->lock);
	return rc;
}

void
synclog_disconnect(synclog *sl)
{
	pthread_mutex_lock(&sl->lock);
	sl_net_disconnect(sl);
	pthread_mutex_unlock(&sl->lock);
}

int
synclog_connected(synclog *sl)
{
	int c;

	pthread_mutex_lock(&sl->lock);
	c = sl_net_connected(sl);
	pthread_mutex_unlock(&sl->lock);
	return c;
}

/*
 * client/synclog_int.h: the synclog handle, shared by synclog.c (opening,
 * local writes, reads, callbacks, the lock) and net.c (the network side).
 * Not a public header.
 *
 * Locking: `lock` (recursive) guards every field and the store.  net.c
 * releases it only while lws waits in poll(); lws callbacks take it again.
 * `wake_ctx` is read without the lock by synclog_wakeup (set once under the
 * lock while no other thread can call wakeup on a context being torn down:
 * it is cleared before the context is destroyed).
 */
#ifndef SL_SYNCLOG_INT_H
#define SL_SYNCLOG_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "store.h"
#include "synclog.h"

struct sl_net; /* net.c's state, NULL until synclog_connect */

/* One of these per synclog_open. */
struct synclog {
	pthread_mutex_t lock; /* recursive */
	sl_store *store;
	char errmsg[512];     /* the handle's last error (the store's is copied here) */

	synclog_change_fn on_change;
	void *change_ctx;
	synclog_reject_fn on_reject;
	void *reject_ctx;
	synclog_event_fn on_event;
	void *event_ctx;

	struct sl_net *net;
	_Atomic(void *) wake_ctx; /* the lws context to cancel_service, or NULL */
};

/* synclog.c: sets sl->errmsg from a store failure and returns rc. */
int sl_err_store(synclog *sl, int rc);
/* synclog.c: sets sl->errmsg (printf-style) and returns rc. */
int sl_err(synclog *sl, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* synclog.c: calls the event callback, if any. */
void sl_event(synclog *sl, synclog_event ev, const char *detail);

/* net.c */
int sl_net_connect(synclog *sl, const synclog_config *cfg);
int sl_net_run(synclog *sl, int timeout_ms);
int sl_net_sync(synclog *sl, int timeout_ms);
void sl_net_disconnect(synclog *sl);
int sl_net_connected(synclog *sl);
void sl_net_free(synclog *sl); /* frees sl->net; accepts none */

/*
 * Hands one whole server message (text[len] must be its NUL) to the frame
 * handler as if it had arrived on the current connection, with no socket:
 * the entry point of fuzz/fuzz_client.c.  Needs sl_net_connect first (-1
 * otherwise).  When no connection is up, one is pretended, in the state of
 * a connection whose hello was sent (welcome awaited).  Returns 0, or -1
 * when the frame ended that connection (a refused frame, `unauthorized`, a
 * local failure), exactly as a frame from the network would.  Takes the
 * handle's lock.
 */
int sl_net_feed(synclog *sl, const char *text, size_t len);

#endif /* SL_SYNCLOG_INT_H */

/*
 * client/net.c: the network side of libsynclog.  PLACEHOLDER until the lws
 * client lands (issue 5, in progress): every network call refuses with
 * SYNCLOG_EMISUSE.
 */
#include "synclog.h"
#include "synclog_int.h"

int sl_net_connect(synclog *sl, const synclog_config *cfg) { (void) cfg; return sl_err(sl, SYNCLOG_EMISUSE, "the network side is not built yet"); }
int sl_net_run(synclog *sl, int timeout_ms) { (void) timeout_ms; return sl_err(sl, SYNCLOG_EMISUSE, "the network side is not built yet"); }
int sl_net_sync(synclog *sl, int timeout_ms) { (void) timeout_ms; return sl_err(sl, SYNCLOG_EMISUSE, "the network side is not built yet"); }
void sl_net_disconnect(synclog *sl) { (void) sl; }
int sl_net_connected(synclog *sl) { (void) sl; return 0; }
void sl_net_free(synclog *sl) { (void) sl; }
void synclog_wakeup(synclog *sl) { (void) sl; }

/*
 * reconcile.h - kjournald's reconciler thread: the recovery pass at start-up,
 * a targeted pass for the pods of every session that opens with an engine or
 * closes, and a full resync every interval. It has its own journal handle and
 * its own Kubernetes client, so ingest never waits for the API server.
 */
#ifndef KJD_RECONCILE_H
#define KJD_RECONCILE_H

#include "reconciler/reconciler.h"

typedef struct kjd_reconciler kjd_reconciler;

/* Starts the thread; cfg and pol must outlive it. */
int kjd_reconciler_start(const char *journal_path, const kj_kube_config *cfg, const kj_policy *pol,
                         int64_t resync_ms, kjd_reconciler **out, kj_err *err);
/* Queues a targeted pass for the pods of session_id (any thread; never blocks
 * on the API server). */
void kjd_reconciler_notify(kjd_reconciler *r, const char *session_id);
/* Asks for a full pass (a server restart closed sessions the caller cannot name). */
void kjd_reconciler_notify_all(kjd_reconciler *r);
/* Live pods that no session uses, kept running, as of the last full pass
 * that listed every namespace; -1 before the first (or without a
 * reconciler). Any thread. */
int64_t kjd_reconciler_running_orphans(void);
/* Stops the pass in hand (within a fraction of a second) and joins the
 * thread; accepts NULL. */
void kjd_reconciler_stop(kjd_reconciler *r);

#endif

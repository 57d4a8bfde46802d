/*
 * reconcile.h - kjournald's reconciler thread: the recovery pass at start-up
 * (trigger "startup"), a targeted pass for the pods of every session that
 * opens with an engine or closes ("event"), a pass for the pods the watch
 * sees change ("watch", informer.h), and a full resync every interval
 * ("resync"). It has its own journal handle and its own Kubernetes clients
 * (one for passes, one for the watch), so ingest never waits for the API
 * server. Between passes it waits on the watch's sockets.
 */
#ifndef KJD_RECONCILE_H
#define KJD_RECONCILE_H

#include "reconciler/reconciler.h"

typedef struct kjd_reconciler kjd_reconciler;

typedef struct kjd_reconciler_opts {
    const kj_kube_config *cfg;
    const kj_policy *pol;
    int64_t resync_ms;
    const char *identity;   /* recorded with every run; NULL: none */
    const char *user_agent; /* of every request; NULL: the client's default */
    /* The lease fence (lease.h): while it is 0 or past, the thread is a
     * standby: it runs no pass and drops what it is told; when the lease is
     * (re)gained it starts with a full pass. NULL: no election, always act. */
    const atomic_llong *fence;
    /* Per-server topology (pol->per_server): the fence of a sweeper (the
     * earlier of its own Lease's and the sweeper Lease's; 0 when not the
     * sweeper), the namespace of the instances' Leases and how long one
     * must have been expired before its claims are removed. */
    const atomic_llong *sweeper_fence;
    const char *lease_namespace;
    int64_t instance_grace_ms;
} kjd_reconciler_opts;

/* Starts the thread; what o points at must outlive it. */
int kjd_reconciler_start(const char *journal_path, const kjd_reconciler_opts *o,
                         kjd_reconciler **out, kj_err *err);
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

/*
 * lease.h - kjournald's leader-election thread (DESIGN.md, "Several Kyuubi
 * servers: ownership and leases"). It runs client-go's election
 * (reconciler/leader.h) on its own Kubernetes client, so that a slow reconcile
 * pass never delays a renewal, and publishes the fence: the monotonic time
 * until which this process may change the cluster (0: it may not). The
 * reconciler thread reads it before every mutation.
 *
 * On a clean stop a holder releases the Lease (holder empty, 1 s), as
 * client-go's ReleaseOnCancel does, so that a standby takes over at once.
 */
#ifndef KJD_LEASE_H
#define KJD_LEASE_H

#include <stdatomic.h>
#include <stddef.h>

#include "reconciler/leader.h"

typedef struct kjd_lease kjd_lease;

#define KJD_LEASE_MAX 2

/*
 * Starts the thread over n elections (ec[0..n-1]), each renewed every retry
 * period: central, the one Lease; per server, the instance's own Lease
 * (proof of life) and the sweeper's. cfg and every string in ec must
 * outlive it.
 */
int kjd_lease_start(const kj_kube_config *cfg, const kj_elect_cfg *ec, size_t n,
                    const char *user_agent, kjd_lease **out, kj_err *err);
/* The fence of the first election, for kj_reconcile_opts.fence. */
const atomic_llong *kjd_lease_fence(const kjd_lease *l);
/* The earliest fence of all (0 unless every Lease is held): a sweeper's
 * pass stops when either its own Lease or the sweeper's is lost. */
const atomic_llong *kjd_lease_fence_all(const kjd_lease *l);
/* Releases the Lease if held (at most 2 s), joins the thread; accepts NULL. */
void kjd_lease_stop(kjd_lease *l);

/* For /readyz and /metrics, any thread: -1 without an election, 0 standby,
 * 1 holder; why in reason ("standby: lease kyuubi/kjournald held by X"). */
int kjd_lease_role(char *reason, size_t size);
/* The second election (per server: the sweeper's): -1 none, 0, 1. */
int kjd_lease_second_role(void);
/* Times this process became the holder of the first, and stopped being it. */
void kjd_lease_counts(long long *acquired, long long *lost);

/* A default --identity as client-go makes one: the host name, '_', and 16
 * random hex digits. 0 or KJ_EIO. */
int kjd_lease_default_identity(char *out, size_t size, kj_err *err);

#endif

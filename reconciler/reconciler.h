/*
 * reconciler.h - makes the cluster agree with the journal (DESIGN.md,
 * "Reconciliation"): releases our finalizer and deletes orphaned and
 * terminated engine pods, safely and idempotently.
 *
 * Two halves:
 *
 *   - the planner, kj_plan_pod() and kj_plan_missing_engine(): pure functions
 *     from (pod, what the journal says of its sessions, now, policy) to the
 *     steps to take and why. No I/O; tested by tables.
 *
 *   - the executor, kj_reconcile(): lists the pods in scope page by page,
 *     plans each against the journal, applies the steps with bounded
 *     concurrency through the kube client (kube.h), and records the run and
 *     every action in the journal. Before each mutation it plans the pod again
 *     from the journal and the pod as last seen, so an event that arrived
 *     during a long pass is honoured; a 409/422 makes it re-read the pod and
 *     re-plan; a 404 means done. Running it twice mutates nothing the second
 *     time.
 *
 *     kj_policy pol;
 *     kj_policy_init(&pol);   // then the program's flags (tools/common/kube_opts.h)
 *     kj_reconcile_summary sum;
 *     rc = kj_reconcile(journal, kube, &pol, &(kj_reconcile_opts){.trigger = "recovery"},
 *                       &sum, &err);
 *
 * The journal handle must be read-write unless opts.dry_run is set; in a dry
 * run nothing is written anywhere and every planned step is reported through
 * opts.on_action with result "planned".
 */
#ifndef KJ_RECONCILER_H
#define KJ_RECONCILER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "journal/journal.h"
#include "reconciler/kube.h"

#define KJ_DEFAULT_FINALIZER "kyuubi.apache.org/pod-cleanup"
#define KJ_DEFAULT_SELECTOR "kyuubi-unique-tag"
#define KJ_MAX_NAMESPACES 16

typedef enum {
    KJ_CLEANUP_ALL = 0,   /* delete terminal pods whatever their phase */
    KJ_CLEANUP_COMPLETED, /* delete Succeeded pods only */
    KJ_CLEANUP_NONE,      /* never delete terminal pods (finalizers are still released) */
} kj_cleanup_kind;

typedef struct kj_policy {
    const char *namespaces[KJ_MAX_NAMESPACES]; /* none given: the kube config's namespace */
    size_t n_namespaces;
    const char *selector;         /* label selector of engine pods */
    const char *finalizer;        /* ours; never anyone else's */
    int64_t retain_terminated_ms; /* keep terminal pods this long after they finished */
    kj_cleanup_kind cleanup_kind;
    int64_t engine_grace_ms; /* a live pod whose sessions are all closed goes after this */
    int64_t submit_grace_ms; /* an open session without a pod is closed after this */
    int delete_running_orphans;
    int64_t orphan_grace_ms; /* age of a live orphan before it may be deleted */
    int concurrency;         /* requests in flight: give it to the kube client
                                (kj_kube_flags.max_in_flight) */
    /* The per-server topology (claims.h): finalizer is this instance's
     * claim, other instances' claims keep a pod, DELETE carries a
     * resourceVersion precondition. 0: central (one instance owns all). */
    int per_server;
} kj_policy;

/* Defaults mirror Kyuubi's own knobs: retain 5 min, cleanup ALL, engine
 * grace 30 min (engine idle timeout), submit grace 3 min (engine
 * initialize timeout), orphans reported, orphan grace 1 h, concurrency 32. */
void kj_policy_init(kj_policy *p);

/* --- the planner -------------------------------------------------------- */

typedef enum {
    KJ_POD_LIVE = 1,    /* Pending / Running / Unknown, not being deleted */
    KJ_POD_TERMINAL,    /* Succeeded / Failed, not being deleted */
    KJ_POD_TERMINATING, /* deletionTimestamp set */
} kj_pod_state;

/* What the journal says of the sessions a pod belongs to. */
typedef struct kj_pod_sessions {
    int64_t open, closed;
    int64_t last_closed_ms; /* latest closed_ms among the closed ones */
} kj_pod_sessions;

typedef enum {
    KJ_STEP_CLOSE_SESSIONS = 1, /* append a close event (close_reason) to every open session */
    KJ_STEP_ADD_FINALIZER,
    KJ_STEP_RELEASE_FINALIZER,
    KJ_STEP_DELETE,
    KJ_STEP_REPORT_ORPHAN,
    KJ_STEP_REMOVE_CLAIM, /* per-server sweeper: a dead instance's claim */
} kj_step_kind;

typedef struct kj_step {
    kj_step_kind kind;
    const char *reason;       /* static: why, in the table's words */
    const char *close_reason; /* KJ_STEP_CLOSE_SESSIONS: engine_terminated, pod_deleted */
} kj_step;

typedef struct kj_plan {
    kj_pod_state state;
    const char *owner; /* "open", "closed", "orphan" */
    kj_step steps[4];
    size_t n;
    int64_t due_ms; /* a time-gated step not yet due becomes due then; 0: none */
} kj_plan;

kj_pod_state kj_pod_state_of(const kj_pod *pod);
const char *kj_pod_state_name(kj_pod_state s);
const char *kj_step_name(kj_step_kind k); /* "close_session", "add_finalizer", ... */

/* Terminal since: the latest container finishedAt, else seen_terminal_ms. */
void kj_plan_pod(const kj_pod *pod, const kj_pod_sessions *sessions, int64_t seen_terminal_ms,
                 int64_t now_ms, const kj_policy *p, kj_plan *out);
/* 1 when an open session whose engine pod was not found since since_ms
 * should be closed (engine_missing) at now_ms: its creation, or for a
 * session whose engine is not known yet, when the journal last heard of it. */
int kj_plan_missing_engine(int64_t since_ms, int64_t now_ms, const kj_policy *p);

/* --- the executor ------------------------------------------------------- */

typedef void (*kj_action_fn)(const kj_action *a, void *ud);

typedef struct kj_reconcile_opts {
    const char *trigger; /* "startup", "event", "watch", "resync", "manual" */
    int dry_run;
    /* A targeted pass: only pods with this tag or application id (either may
     * be NULL; both NULL: every pod in scope). No engine_missing check. */
    const char *only_tag, *only_app_id;
    /* Plan these pods as given (a watch saw them change) instead of listing;
     * no engine_missing check. The pods are copied. */
    const kj_pod *pods;
    size_t n_pods;
    const char *default_namespace; /* the kube config's, listed when the policy names none */
    kj_action_fn on_action;        /* each action as it is recorded (or planned) */
    void *ud;
    int progress;        /* log progress lines on stderr during long passes */
    int64_t deadline_ms; /* whole pass; 0: 10 minutes */
    /* Another thread sets *cancel to stop the pass within a fraction of a
     * second: requests in flight are abandoned, the pass returns KJ_ECANCELED. */
    const atomic_int *cancel;
    /* Who runs the pass (kjournald's --identity), recorded with the run and
     * its actions; NULL: nobody named. */
    const char *identity;
    /* Leader election (reconciler/leader.h): no request that changes the
     * cluster is sent at or after the monotonic time *fence (0: not the
     * holder), and none queued is started after it; the pass then stops
     * (KJ_ECANCELED, "the lease was lost"). NULL: no election. */
    const atomic_llong *fence;
    /* Per-server topology (p->per_server): whether this instance is the
     * sweeper, the claims (finalizer names) of instances known dead, and a
     * callback told the identity of every other instance's claim seen, so
     * that the caller can find out which are alive. */
    int sweeper;
    const char *const *dead_claims;
    size_t n_dead_claims;
    void (*on_claim)(const char *identity, void *ud);
} kj_reconcile_opts;

typedef struct kj_reconcile_summary {
    int64_t run_id; /* 0 in a dry run */
    int64_t pods_seen, pods_acted_on;
    int64_t finalizers_added, finalizers_released, pods_deleted, sessions_closed;
    int64_t orphans_reported, already_gone, conflicts;
    int64_t claims_removed; /* dead instances' claims removed (sweeper) */
    int64_t actions_ok, actions_failed, planned;
    int64_t waiting;     /* pods with a step not yet due (retain period, graces) */
    int64_t next_due_ms; /* when the first of those steps is due (epoch ms); 0: none */
    int list_complete;   /* every namespace was listed to the end */
    /* live orphans kept running (--running-orphans report, or younger than
     * the orphan grace), whether recorded in this pass or before:
     * orphans_reported counts only those recorded now, when first seen or
     * changed (a dry run counts them all as running, none as reported) */
    int64_t orphans_running;
} kj_reconcile_summary;

/*
 * One pass. Returns 0 when it converged (every action succeeded), KJ_EIO
 * when some actions failed (summary.actions_failed; each was reported), or
 * another negative code when the pass could not run (the list failed, the
 * journal failed). A pass that cannot list a namespace closes no session as
 * engine_missing.
 */
int kj_reconcile(kj_journal *j, kj_kube *k, const kj_policy *p, const kj_reconcile_opts *o,
                 kj_reconcile_summary *sum, kj_err *err);

#endif

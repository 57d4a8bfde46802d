/*
 * The planner against DESIGN.md's reconciliation table, as data: one row per
 * cell of the table and per policy flag, plus shared engines, executors,
 * finalizers (ours, another controller's, both, none) and the terminal-since
 * rule (container finishedAt first, else when the reconciler first saw the
 * pod terminal).
 *
 * A row is a pod, what the journal says of its sessions, the policy flags
 * (parsed by the programs' policy options, so the flags are exercised too) and the plan
 * expected: its steps as one string ("close_session(engine_terminated)
 * release_finalizer delete"), the pod state, the owner and when a step not
 * yet due becomes due. Every failure names its row. Adding a case adds a row,
 * never code.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "reconciler/kube_internal.h"
#include "reconciler/reconciler.h"
#include "tools/common/kube_opts.h"

#define SEC 1000LL
#define MIN (60 * SEC)
#define HOUR (60 * MIN)
#define DAY (24 * HOUR)
#define NOW 1764391200000LL /* 2025-11-29T04:40:00Z */

#define OURS KJ_DEFAULT_FINALIZER
#define OTHER "example.com/other-controller"

typedef struct row {
    const char *name;
    const char *policy; /* flags, space separated; NULL: the defaults */
    /* the pod */
    const char *phase; /* NULL: the pod has no phase yet */
    int terminating;   /* deletionTimestamp set */
    const char *role;  /* label spark-role; NULL: none */
    const char *fin[3];
    int64_t age;          /* now - creationTimestamp */
    int64_t finished_ago; /* now - latest container finishedAt; 0: no finishedAt */
    int64_t seen_ago;     /* now - first seen terminal (0: first seen now) */
    /* the journal */
    int open, closed;
    int64_t closed_ago; /* now - the latest closed_ms */
    /* expected */
    const char *steps; /* "" for none */
    const char *state, *owner;
    int64_t due_in;     /* expected due_ms - now; 0: nothing waits */
    const char *reason; /* when set: a substring of the first step's reason */
} row;

/* One row per case reads better than one field per line. */
/* clang-format off */
static const row rows[] = {
    /* ---- live x any open: keep; ensure our finalizer -------------------- */
    {.name = "live/open: ours present, kept untouched", .phase = "Running", .fin = {OURS},
     .open = 1, .steps = "", .state = "live", .owner = "open"},
    {.name = "live/open: no finalizer, ours added", .phase = "Running", .open = 1,
     .steps = "add_finalizer", .state = "live", .owner = "open"},
    {.name = "live/open: another controller's finalizer only, ours added", .phase = "Running",
     .fin = {OTHER}, .open = 1, .steps = "add_finalizer", .state = "live", .owner = "open"},
    {.name = "live/open: ours after another controller's, kept", .phase = "Running",
     .fin = {OTHER, OURS}, .open = 1, .steps = "", .state = "live", .owner = "open"},
    {.name = "live/open: Pending counts as live", .phase = "Pending", .open = 1,
     .steps = "add_finalizer", .state = "live", .owner = "open"},
    {.name = "live/open: Unknown counts as live", .phase = "Unknown", .open = 1,
     .steps = "add_finalizer", .state = "live", .owner = "open"},
    {.name = "live/open: no phase yet counts as live", .phase = NULL, .open = 1,
     .steps = "add_finalizer", .state = "live", .owner = "open"},
    {.name = "live/open: a custom --finalizer is the one ensured", .policy = "--finalizer x.io/f",
     .phase = "Running", .fin = {OURS}, .open = 1, .steps = "add_finalizer", .state = "live",
     .owner = "open"},
    {.name = "live/open: old pod, grace flags at zero, still kept",
     .policy = "--engine-grace 0 --orphan-grace 0 --running-orphans delete", .phase = "Running",
     .fin = {OURS}, .age = 30 * DAY, .open = 1, .steps = "", .state = "live", .owner = "open"},
    /* shared engines: one open session keeps the pod whatever the others did */
    {.name = "live/shared: 1 open + 3 closed long ago, kept", .phase = "Running", .fin = {OURS},
     .open = 1, .closed = 3, .closed_ago = 2 * DAY, .steps = "", .state = "live",
     .owner = "open"},
    {.name = "live/shared: 1 open + 3 closed, engine grace 0, kept", .policy = "--engine-grace 0",
     .phase = "Running", .fin = {OURS}, .open = 1, .closed = 3, .closed_ago = 2 * DAY,
     .steps = "", .state = "live", .owner = "open"},
    {.name = "live/shared: 2 open + 1 closed, no finalizer, ours added", .phase = "Running",
     .open = 2, .closed = 1, .closed_ago = DAY, .steps = "add_finalizer", .state = "live",
     .owner = "open"},

    /* ---- live x all closed: delete once closed longer than the engine grace */
    {.name = "live/closed: before the engine grace (29m of 30m), waits", .phase = "Running",
     .fin = {OURS}, .closed = 1, .closed_ago = 29 * MIN, .steps = "", .state = "live",
     .owner = "closed", .due_in = 1 * MIN},
    {.name = "live/closed: after the engine grace (31m of 30m), released and deleted",
     .phase = "Running", .fin = {OURS}, .closed = 1, .closed_ago = 31 * MIN,
     .steps = "release_finalizer delete", .state = "live", .owner = "closed",
     .reason = "engine grace"},
    {.name = "live/closed: after the engine grace, no finalizer, deleted", .phase = "Running",
     .closed = 2, .closed_ago = 31 * MIN, .steps = "delete", .state = "live", .owner = "closed"},
    {.name = "live/closed: after the engine grace, other's finalizer only, deleted",
     .phase = "Running", .fin = {OTHER}, .closed = 1, .closed_ago = 31 * MIN, .steps = "delete",
     .state = "live", .owner = "closed"},
    {.name = "live/closed: after the engine grace, ours + other's, ours released, deleted",
     .phase = "Running", .fin = {OTHER, OURS}, .closed = 1, .closed_ago = 31 * MIN,
     .steps = "release_finalizer delete", .state = "live", .owner = "closed"},
    {.name = "live/closed: before the engine grace, no finalizer, waits", .phase = "Pending",
     .closed = 1, .closed_ago = 1 * MIN, .steps = "", .state = "live", .owner = "closed",
     .due_in = 29 * MIN},
    {.name = "live/closed: --engine-grace 0, closed 1s ago, deleted", .policy = "--engine-grace 0",
     .phase = "Running", .fin = {OURS}, .closed = 1, .closed_ago = 1 * SEC,
     .steps = "release_finalizer delete", .state = "live", .owner = "closed"},
    {.name = "live/closed: --engine-grace 2h, closed 31m ago, waits",
     .policy = "--engine-grace 2h", .phase = "Running", .fin = {OURS}, .closed = 1,
     .closed_ago = 31 * MIN, .steps = "", .state = "live", .owner = "closed",
     .due_in = 89 * MIN},
    {.name = "live/closed: --engine-grace=10m, closed 11m ago, deleted",
     .policy = "--engine-grace=10m", .phase = "Running", .fin = {OURS}, .closed = 1,
     .closed_ago = 11 * MIN, .steps = "release_finalizer delete", .state = "live",
     .owner = "closed"},
    {.name = "live/closed: the grace counts from the latest close, not the pod's age",
     .phase = "Running", .fin = {OURS}, .age = 30 * DAY, .closed = 5, .closed_ago = 10 * MIN,
     .steps = "", .state = "live", .owner = "closed", .due_in = 20 * MIN},
    {.name = "live/closed: cleanup kind does not apply to live pods",
     .policy = "--cleanup-kind NONE", .phase = "Running", .fin = {OURS}, .closed = 1,
     .closed_ago = 31 * MIN, .steps = "release_finalizer delete", .state = "live",
     .owner = "closed"},

    /* ---- live x none (orphan): report; delete only when asked and old -- */
    {.name = "live/orphan: reported by default", .phase = "Running", .fin = {OURS},
     .age = 30 * DAY, .steps = "report_orphan", .state = "live", .owner = "orphan"},
    {.name = "live/orphan: reported by default, no finalizer", .phase = "Pending", .age = 30 * DAY,
     .steps = "report_orphan", .state = "live", .owner = "orphan"},
    {.name = "live/orphan: --running-orphans report with grace 0, reported only",
     .policy = "--running-orphans report --orphan-grace 0", .phase = "Running", .fin = {OURS},
     .age = 30 * DAY, .steps = "report_orphan", .state = "live", .owner = "orphan"},
    {.name = "live/orphan: delete asked, older than the orphan grace (2h of 1h), deleted",
     .policy = "--running-orphans delete", .phase = "Running", .fin = {OURS}, .age = 2 * HOUR,
     .steps = "release_finalizer delete", .state = "live", .owner = "orphan",
     .reason = "orphan grace"},
    {.name = "live/orphan: delete asked, no finalizer, deleted",
     .policy = "--running-orphans delete", .phase = "Running", .age = 2 * HOUR, .steps = "delete",
     .state = "live", .owner = "orphan"},
    {.name = "live/orphan: delete asked, younger than the orphan grace (30m of 1h), reported",
     .policy = "--running-orphans delete", .phase = "Running", .fin = {OURS}, .age = 30 * MIN,
     .steps = "report_orphan", .state = "live", .owner = "orphan", .due_in = 30 * MIN},
    {.name = "live/orphan: --orphan-grace 10m, 30m old, deleted",
     .policy = "--running-orphans delete --orphan-grace 10m", .phase = "Running",
     .age = 30 * MIN, .steps = "delete", .state = "live", .owner = "orphan"},
    {.name = "live/orphan: --orphan-grace 2h, 90m old, reported",
     .policy = "--running-orphans=delete --orphan-grace=2h", .phase = "Running", .fin = {OURS},
     .age = 90 * MIN, .steps = "report_orphan", .state = "live", .owner = "orphan",
     .due_in = 30 * MIN},
    {.name = "live/orphan: --orphan-grace 0, just created, deleted",
     .policy = "--running-orphans delete --orphan-grace 0", .phase = "Pending", .fin = {OURS},
     .age = 0, .steps = "release_finalizer delete", .state = "live", .owner = "orphan"},
    {.name = "live/orphan: delete asked, ours + other's, ours released, deleted",
     .policy = "--running-orphans delete", .phase = "Running", .fin = {OURS, OTHER},
     .age = 2 * HOUR, .steps = "release_finalizer delete", .state = "live", .owner = "orphan"},

    /* ---- terminal x any open: close them (engine_terminated), then as all closed */
    {.name = "terminal/open: Succeeded after retain, closed, released, deleted",
     .phase = "Succeeded", .fin = {OURS}, .finished_ago = HOUR, .open = 1,
     .steps = "close_session(engine_terminated) release_finalizer delete", .state = "terminal",
     .owner = "open"},
    {.name = "terminal/open: Failed after retain, closed, released, deleted", .phase = "Failed",
     .fin = {OURS}, .finished_ago = HOUR, .open = 2,
     .steps = "close_session(engine_terminated) release_finalizer delete", .state = "terminal",
     .owner = "open"},
    {.name = "terminal/open: Failed before retain, closed, released, waits", .phase = "Failed",
     .fin = {OURS}, .finished_ago = 1 * MIN, .open = 1,
     .steps = "close_session(engine_terminated) release_finalizer", .state = "terminal",
     .owner = "open", .due_in = 4 * MIN},
    {.name = "terminal/open: no finalizer, after retain, closed, deleted", .phase = "Failed",
     .finished_ago = HOUR, .open = 1, .steps = "close_session(engine_terminated) delete",
     .state = "terminal", .owner = "open"},
    {.name = "terminal/open: cleanup NONE, closed and released, never deleted",
     .policy = "--cleanup-kind NONE", .phase = "Succeeded", .fin = {OURS},
     .finished_ago = DAY, .open = 1, .steps = "close_session(engine_terminated) release_finalizer",
     .state = "terminal", .owner = "open"},
    {.name = "terminal/open: cleanup COMPLETED, Failed: closed and released, kept",
     .policy = "--cleanup-kind COMPLETED", .phase = "Failed", .fin = {OURS},
     .finished_ago = DAY, .open = 1, .steps = "close_session(engine_terminated) release_finalizer",
     .state = "terminal", .owner = "open"},
    {.name = "terminal/open: cleanup COMPLETED, Succeeded: closed, released, deleted",
     .policy = "--cleanup-kind COMPLETED", .phase = "Succeeded", .fin = {OURS},
     .finished_ago = DAY, .open = 1,
     .steps = "close_session(engine_terminated) release_finalizer delete", .state = "terminal",
     .owner = "open"},
    {.name = "terminal/shared: 1 open + 2 closed, closed, released, deleted",
     .phase = "Succeeded", .fin = {OURS}, .finished_ago = HOUR, .open = 1, .closed = 2,
     .closed_ago = 2 * HOUR, .steps = "close_session(engine_terminated) release_finalizer delete",
     .state = "terminal", .owner = "open"},
    {.name = "terminal/open: engine grace does not hold a terminal pod",
     .policy = "--engine-grace 1d", .phase = "Failed", .fin = {OURS}, .finished_ago = HOUR,
     .open = 1, .steps = "close_session(engine_terminated) release_finalizer delete",
     .state = "terminal", .owner = "open"},

    /* ---- terminal x all closed: release; delete after retain, per cleanup kind */
    {.name = "terminal/closed: ALL, Succeeded, after retain, released, deleted",
     .policy = "--cleanup-kind ALL", .phase = "Succeeded", .fin = {OURS},
     .finished_ago = 6 * MIN, .closed = 1, .closed_ago = HOUR,
     .steps = "release_finalizer delete", .state = "terminal", .owner = "closed",
     .reason = "retain period"},
    {.name = "terminal/closed: ALL, Failed, after retain, released, deleted",
     .policy = "--cleanup-kind ALL", .phase = "Failed", .fin = {OURS}, .finished_ago = 6 * MIN,
     .closed = 1, .closed_ago = HOUR, .steps = "release_finalizer delete", .state = "terminal",
     .owner = "closed"},
    {.name = "terminal/closed: ALL, Succeeded, before retain, released, waits",
     .policy = "--cleanup-kind ALL", .phase = "Succeeded", .fin = {OURS},
     .finished_ago = 4 * MIN, .closed = 1, .closed_ago = HOUR, .steps = "release_finalizer",
     .state = "terminal", .owner = "closed", .due_in = 1 * MIN},
    {.name = "terminal/closed: ALL, Failed, before retain, released, waits",
     .policy = "--cleanup-kind ALL", .phase = "Failed", .fin = {OURS}, .finished_ago = 4 * MIN,
     .closed = 1, .closed_ago = HOUR, .steps = "release_finalizer", .state = "terminal",
     .owner = "closed", .due_in = 1 * MIN},
    {.name = "terminal/closed: COMPLETED, Succeeded, after retain, released, deleted",
     .policy = "--cleanup-kind COMPLETED", .phase = "Succeeded", .fin = {OURS},
     .finished_ago = 6 * MIN, .closed = 1, .closed_ago = HOUR,
     .steps = "release_finalizer delete", .state = "terminal", .owner = "closed"},
    {.name = "terminal/closed: COMPLETED, Failed, after retain, released, kept",
     .policy = "--cleanup-kind COMPLETED", .phase = "Failed", .fin = {OURS},
     .finished_ago = 6 * MIN, .closed = 1, .closed_ago = HOUR, .steps = "release_finalizer",
     .state = "terminal", .owner = "closed"},
    {.name = "terminal/closed: COMPLETED, Succeeded, before retain, released, waits",
     .policy = "--cleanup-kind COMPLETED", .phase = "Succeeded", .fin = {OURS},
     .finished_ago = 4 * MIN, .closed = 1, .closed_ago = HOUR, .steps = "release_finalizer",
     .state = "terminal", .owner = "closed", .due_in = 1 * MIN},
    {.name = "terminal/closed: COMPLETED, Failed, before retain, released, nothing waits",
     .policy = "--cleanup-kind COMPLETED", .phase = "Failed", .fin = {OURS},
     .finished_ago = 4 * MIN, .closed = 1, .closed_ago = HOUR, .steps = "release_finalizer",
     .state = "terminal", .owner = "closed"},
    {.name = "terminal/closed: lowercase --cleanup-kind=completed, Failed, kept",
     .policy = "--cleanup-kind=completed", .phase = "Failed", .fin = {OURS},
     .finished_ago = DAY, .closed = 1, .closed_ago = DAY, .steps = "release_finalizer",
     .state = "terminal", .owner = "closed"},
    {.name = "terminal/closed: NONE, Succeeded, after retain, released, kept",
     .policy = "--cleanup-kind NONE", .phase = "Succeeded", .fin = {OURS}, .finished_ago = DAY,
     .closed = 1, .closed_ago = DAY, .steps = "release_finalizer", .state = "terminal",
     .owner = "closed"},
    {.name = "terminal/closed: NONE, Failed, after retain, released, kept",
     .policy = "--cleanup-kind NONE", .phase = "Failed", .fin = {OURS}, .finished_ago = DAY,
     .closed = 1, .closed_ago = DAY, .steps = "release_finalizer", .state = "terminal",
     .owner = "closed"},
    {.name = "terminal/closed: NONE, no finalizer, nothing to do",
     .policy = "--cleanup-kind NONE", .phase = "Failed", .finished_ago = DAY, .closed = 1,
     .closed_ago = DAY, .steps = "", .state = "terminal", .owner = "closed"},
    {.name = "terminal/closed: after retain, no finalizer, deleted", .phase = "Succeeded",
     .finished_ago = HOUR, .closed = 1, .closed_ago = HOUR, .steps = "delete",
     .state = "terminal", .owner = "closed"},
    {.name = "terminal/closed: before retain, no finalizer, waits", .phase = "Succeeded",
     .finished_ago = 2 * MIN, .closed = 1, .closed_ago = HOUR, .steps = "", .state = "terminal",
     .owner = "closed", .due_in = 3 * MIN},
    {.name = "terminal/closed: other's finalizer only, after retain, deleted (not released)",
     .phase = "Failed", .fin = {OTHER}, .finished_ago = HOUR, .closed = 1, .closed_ago = HOUR,
     .steps = "delete", .state = "terminal", .owner = "closed"},
    {.name = "terminal/closed: other's finalizer only, before retain, nothing yet",
     .phase = "Failed", .fin = {OTHER}, .finished_ago = 1 * MIN, .closed = 1,
     .closed_ago = HOUR, .steps = "", .state = "terminal", .owner = "closed",
     .due_in = 4 * MIN},
    {.name = "terminal/closed: other's + ours, after retain, ours released, deleted",
     .phase = "Failed", .fin = {OTHER, OURS}, .finished_ago = HOUR, .closed = 1,
     .closed_ago = HOUR, .steps = "release_finalizer delete", .state = "terminal",
     .owner = "closed"},
    {.name = "terminal/closed: --retain-terminated 0, finished 1s ago, deleted",
     .policy = "--retain-terminated 0", .phase = "Failed", .fin = {OURS},
     .finished_ago = 1 * SEC, .closed = 1, .closed_ago = 1 * SEC,
     .steps = "release_finalizer delete", .state = "terminal", .owner = "closed"},
    {.name = "terminal/closed: --retain-terminated 2h, finished 1h ago, released, waits",
     .policy = "--retain-terminated 2h", .phase = "Succeeded", .fin = {OURS},
     .finished_ago = HOUR, .closed = 1, .closed_ago = HOUR, .steps = "release_finalizer",
     .state = "terminal", .owner = "closed", .due_in = HOUR},
    {.name = "terminal/closed: --retain-terminated 1h30m, finished 91m ago, deleted",
     .policy = "--retain-terminated 1h30m", .phase = "Succeeded", .fin = {OURS},
     .finished_ago = 91 * MIN, .closed = 1, .closed_ago = DAY,
     .steps = "release_finalizer delete", .state = "terminal", .owner = "closed"},
    {.name = "terminal/closed: a recent close does not hold a terminal pod (no engine grace)",
     .phase = "Succeeded", .fin = {OURS}, .finished_ago = HOUR, .closed = 1,
     .closed_ago = 1 * SEC, .steps = "release_finalizer delete", .state = "terminal",
     .owner = "closed"},

    /* ---- terminal since: finishedAt when the pod has one, else first seen */
    {.name = "since: no finishedAt, first seen terminal 10m ago, deleted", .phase = "Failed",
     .fin = {OURS}, .seen_ago = 10 * MIN, .closed = 1, .closed_ago = HOUR,
     .steps = "release_finalizer delete", .state = "terminal", .owner = "closed"},
    {.name = "since: no finishedAt, first seen terminal now, released, waits 5m",
     .phase = "Failed", .fin = {OURS}, .seen_ago = 0, .closed = 1, .closed_ago = HOUR,
     .steps = "release_finalizer", .state = "terminal", .owner = "closed", .due_in = 5 * MIN},
    {.name = "since: no finishedAt, old pod first seen now, waits (age is not finishing)",
     .phase = "Succeeded", .fin = {OURS}, .age = 30 * DAY, .seen_ago = 0, .closed = 1,
     .closed_ago = DAY, .steps = "release_finalizer", .state = "terminal", .owner = "closed",
     .due_in = 5 * MIN},
    {.name = "since: finishedAt 1h ago beats first seen now, deleted", .phase = "Succeeded",
     .fin = {OURS}, .finished_ago = HOUR, .seen_ago = 0, .closed = 1, .closed_ago = HOUR,
     .steps = "release_finalizer delete", .state = "terminal", .owner = "closed"},
    {.name = "since: finishedAt 1m ago beats first seen 1h ago, waits 4m", .phase = "Succeeded",
     .fin = {OURS}, .finished_ago = 1 * MIN, .seen_ago = HOUR, .closed = 1, .closed_ago = HOUR,
     .steps = "release_finalizer", .state = "terminal", .owner = "closed", .due_in = 4 * MIN},

    /* ---- terminal x none (orphan): release; delete after retain -------- */
    {.name = "terminal/orphan: after retain, released, deleted", .phase = "Failed",
     .fin = {OURS}, .finished_ago = HOUR, .steps = "release_finalizer delete",
     .state = "terminal", .owner = "orphan", .reason = "orphan"},
    {.name = "terminal/orphan: before retain, released, waits", .phase = "Succeeded",
     .fin = {OURS}, .finished_ago = 2 * MIN, .steps = "release_finalizer", .state = "terminal",
     .owner = "orphan", .due_in = 3 * MIN},
    {.name = "terminal/orphan: no finalizer, after retain, deleted", .phase = "Succeeded",
     .finished_ago = HOUR, .steps = "delete", .state = "terminal", .owner = "orphan"},
    {.name = "terminal/orphan: other's finalizer only, after retain, deleted", .phase = "Failed",
     .fin = {OTHER}, .finished_ago = HOUR, .steps = "delete", .state = "terminal",
     .owner = "orphan"},
    /* The table's orphan row deletes after the retain period with no "per
     * cleanup kind": the kind is about engines of known sessions. */
    {.name = "terminal/orphan: cleanup NONE still deletes orphans after retain",
     .policy = "--cleanup-kind NONE", .phase = "Failed", .fin = {OURS}, .finished_ago = HOUR,
     .steps = "release_finalizer delete", .state = "terminal", .owner = "orphan"},
    {.name = "terminal/orphan: cleanup COMPLETED still deletes Failed orphans",
     .policy = "--cleanup-kind COMPLETED", .phase = "Failed", .finished_ago = HOUR,
     .steps = "delete", .state = "terminal", .owner = "orphan"},
    {.name = "terminal/orphan: --running-orphans report does not hold terminal orphans",
     .policy = "--running-orphans report", .phase = "Succeeded", .fin = {OURS},
     .finished_ago = HOUR, .steps = "release_finalizer delete", .state = "terminal",
     .owner = "orphan"},
    {.name = "terminal/orphan: no finishedAt, first seen 6m ago, deleted", .phase = "Failed",
     .seen_ago = 6 * MIN, .steps = "delete", .state = "terminal", .owner = "orphan"},

    /* ---- terminating: release our finalizer; close open sessions (pod_deleted) */
    {.name = "terminating/open: closed (pod_deleted), released", .phase = "Running",
     .terminating = 1, .fin = {OURS}, .open = 1,
     .steps = "close_session(pod_deleted) release_finalizer", .state = "terminating",
     .owner = "open"},
    {.name = "terminating/open: no finalizer, closed (pod_deleted)", .phase = "Running",
     .terminating = 1, .open = 1, .steps = "close_session(pod_deleted)",
     .state = "terminating", .owner = "open"},
    {.name = "terminating/open: other's finalizer only, closed, not touched", .phase = "Running",
     .terminating = 1, .fin = {OTHER}, .open = 1, .steps = "close_session(pod_deleted)",
     .state = "terminating", .owner = "open"},
    {.name = "terminating/open: Failed phase too, closed (pod_deleted), released",
     .phase = "Failed", .terminating = 1, .fin = {OURS}, .finished_ago = HOUR, .open = 1,
     .steps = "close_session(pod_deleted) release_finalizer", .state = "terminating",
     .owner = "open"},
    {.name = "terminating/shared: 1 open + 1 closed, closed (pod_deleted), released",
     .phase = "Running", .terminating = 1, .fin = {OTHER, OURS}, .open = 1, .closed = 1,
     .closed_ago = MIN, .steps = "close_session(pod_deleted) release_finalizer",
     .state = "terminating", .owner = "open"},
    {.name = "terminating/closed: released", .phase = "Succeeded", .terminating = 1,
     .fin = {OURS}, .closed = 1, .closed_ago = 1 * SEC, .steps = "release_finalizer",
     .state = "terminating", .owner = "closed"},
    {.name = "terminating/closed: released whatever the cleanup kind",
     .policy = "--cleanup-kind NONE --retain-terminated 1d", .phase = "Failed",
     .terminating = 1, .fin = {OURS}, .finished_ago = 1 * SEC, .closed = 1,
     .closed_ago = 1 * SEC, .steps = "release_finalizer", .state = "terminating",
     .owner = "closed"},
    {.name = "terminating/closed: ours + other's, ours released", .phase = "Running",
     .terminating = 1, .fin = {OURS, OTHER}, .closed = 1, .closed_ago = 1 * SEC,
     .steps = "release_finalizer", .state = "terminating", .owner = "closed"},
    {.name = "terminating/closed: other's only, nothing", .phase = "Running", .terminating = 1,
     .fin = {OTHER}, .closed = 1, .closed_ago = 1 * SEC, .steps = "", .state = "terminating",
     .owner = "closed"},
    {.name = "terminating/orphan: released", .phase = "Running", .terminating = 1,
     .fin = {OURS}, .steps = "release_finalizer", .state = "terminating", .owner = "orphan"},
    {.name = "terminating/orphan: no finalizer, nothing", .phase = "Pending", .terminating = 1,
     .steps = "", .state = "terminating", .owner = "orphan"},
    {.name = "terminating/orphan: running orphans report mode does not hold it",
     .policy = "--running-orphans report", .phase = "Running", .terminating = 1,
     .fin = {OTHER, OURS}, .steps = "release_finalizer", .state = "terminating",
     .owner = "orphan"},

    /* ---- executors: their driver's garbage; only our finalizer back ---- */
    {.name = "executor/live/open: no finalizer added", .phase = "Running", .role = "executor",
     .open = 1, .steps = "", .state = "live", .owner = "open"},
    {.name = "executor/live/closed: after engine grace, not deleted (the driver owns it)",
     .phase = "Running", .role = "executor", .fin = {OURS}, .closed = 1, .closed_ago = DAY,
     .steps = "", .state = "live", .owner = "closed"},
    {.name = "executor/live/orphan: not reported, not deleted",
     .policy = "--running-orphans delete --orphan-grace 0", .phase = "Running",
     .role = "executor", .age = DAY, .steps = "", .state = "live", .owner = "orphan"},
    {.name = "executor/terminal/open: sessions not closed by an executor", .phase = "Failed",
     .role = "executor", .fin = {OURS}, .finished_ago = HOUR, .open = 1, .steps = "",
     .state = "terminal", .owner = "open"},
    {.name = "executor/terminal/closed: not deleted", .phase = "Succeeded", .role = "executor",
     .finished_ago = DAY, .closed = 1, .closed_ago = DAY, .steps = "", .state = "terminal",
     .owner = "closed"},
    {.name = "executor/terminating: ours released", .phase = "Running", .role = "executor",
     .terminating = 1, .fin = {OTHER, OURS}, .open = 1, .steps = "release_finalizer",
     .state = "terminating", .owner = "open"},
    {.name = "executor/terminating: other's only, nothing", .phase = "Running",
     .role = "executor", .terminating = 1, .fin = {OTHER}, .closed = 1, .closed_ago = DAY,
     .steps = "", .state = "terminating", .owner = "closed"},
    {.name = "driver role: an engine like any other", .phase = "Succeeded", .role = "driver",
     .fin = {OURS}, .finished_ago = HOUR, .closed = 1, .closed_ago = HOUR,
     .steps = "release_finalizer delete", .state = "terminal", .owner = "closed"},
};
/* clang-format on */

/* Splits flags on spaces and parses them with the programs' policy options. */
static void policy_from(const row *r, kj_policy *p, char *buf, size_t bufsz)
{
    kj_policy_init(p);
    if (!r->policy)
        return;
    char *argv[32] = {"planner"};
    int argc = 1;
    snprintf(buf, bufsz, "%s", r->policy);
    for (char *t = buf; *t && argc < 32;) {
        argv[argc++] = t;
        t += strcspn(t, " ");
        if (*t)
            *t++ = '\0';
    }
    kj_opt opts[KJ_POLICY_OPTS];
    kj_policy_opts(opts, p);
    int operands;
    if (kj_opts_parse("planner", opts, argc, argv, &operands) || operands)
        fail_msg("row \"%s\": policy flags '%s' not taken", r->name, r->policy);
}

/* "close_session(engine_terminated) release_finalizer delete" */
static void plan_string(const kj_plan *pl, char *out, size_t n)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < pl->n && used < n; i++) {
        const kj_step *st = &pl->steps[i];
        used +=
            (size_t)snprintf(out + used, n - used, "%s%s", i ? " " : "", kj_step_name(st->kind));
        if (st->close_reason && used < n)
            used += (size_t)snprintf(out + used, n - used, "(%s)", st->close_reason);
    }
}

static void run_row(const row *r)
{
    char fbuf[3][128];
    char *fins[3];
    char pbuf[512];
    kj_policy pol;
    policy_from(r, &pol, pbuf, sizeof pbuf);

    kj_pod pod = {0};
    pod.namespace_ = "kyuubi";
    pod.name = "kyuubi-engine-driver";
    pod.uid = "0b5e6c9e-0000-4000-8000-000000000001";
    pod.resource_version = "42";
    pod.unique_tag = "tag-1";
    pod.app_selector = "spark-app-1";
    pod.spark_role = (char *)r->role;
    pod.phase = (char *)r->phase;
    pod.created_ms = NOW - r->age;
    pod.deletion_ms = r->terminating ? NOW - 1 * SEC : 0;
    pod.deletion_grace_s = r->terminating ? 0 : -1;
    pod.finished_ms = r->finished_ago ? NOW - r->finished_ago : 0;
    for (size_t i = 0; i < 3 && r->fin[i]; i++) {
        snprintf(fbuf[i], sizeof fbuf[i], "%s", r->fin[i]);
        fins[i] = fbuf[i];
        pod.n_finalizers++;
    }
    pod.finalizers = pod.n_finalizers ? fins : NULL;

    kj_pod_sessions s = {.open = r->open,
                         .closed = r->closed,
                         .last_closed_ms = r->closed ? NOW - r->closed_ago : 0};
    kj_plan pl;
    memset(&pl, 0xa5, sizeof pl); /* the planner must set every field */
    kj_plan_pod(&pod, &s, NOW - r->seen_ago, NOW, &pol, &pl);

    char got[256];
    plan_string(&pl, got, sizeof got);
    if (strcmp(got, r->steps))
        fail_msg("row \"%s\": steps \"%s\", expected \"%s\"", r->name, got, r->steps);
    if (strcmp(kj_pod_state_name(pl.state), r->state))
        fail_msg("row \"%s\": state %s, expected %s", r->name, kj_pod_state_name(pl.state),
                 r->state);
    if (!pl.owner || strcmp(pl.owner, r->owner))
        fail_msg("row \"%s\": owner %s, expected %s", r->name, pl.owner ? pl.owner : "(null)",
                 r->owner);
    int64_t due_in = pl.due_ms ? pl.due_ms - NOW : 0;
    if (due_in != r->due_in)
        fail_msg("row \"%s\": due in %lld ms, expected %lld ms", r->name, (long long)due_in,
                 (long long)r->due_in);
    for (size_t i = 0; i < pl.n; i++) {
        const kj_step *st = &pl.steps[i];
        if (!st->reason || !*st->reason)
            fail_msg("row \"%s\": step %zu (%s) has no reason", r->name, i, kj_step_name(st->kind));
        if ((st->kind == KJ_STEP_CLOSE_SESSIONS) != (st->close_reason != NULL))
            fail_msg("row \"%s\": step %zu (%s): a close reason belongs to close steps only",
                     r->name, i, kj_step_name(st->kind));
    }
    if (r->reason && (!pl.n || !strstr(pl.steps[0].reason, r->reason)))
        fail_msg("row \"%s\": first reason \"%s\" does not mention \"%s\"", r->name,
                 pl.n ? pl.steps[0].reason : "(no step)", r->reason);
}

static void test_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        run_row(&rows[i]);
}

/* 1 when the plan string has the step `name` (a whole word, not "pod_deleted"). */
static int has_step(const char *steps, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = steps; (p = strstr(p, name)); p += n)
        if ((p == steps || p[-1] == ' ') && (p[n] == '\0' || p[n] == ' ' || p[n] == '('))
            return 1;
    return 0;
}

/* The safety properties, over every row: whatever the policy, no plan deletes
 * a pod an open session uses while it is live, or touches another
 * controller's finalizer (the planner only ever names ours), and a delete of
 * a pod carrying our finalizer is preceded by its release. */
static void test_invariants(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const row *r = &rows[i];
        int del = has_step(r->steps, "delete");
        if (r->open && !r->terminating && r->phase && strcmp(r->phase, "Succeeded") &&
            strcmp(r->phase, "Failed") && del)
            fail_msg("row \"%s\": deletes a live pod with an open session", r->name);
        int ours = 0;
        for (size_t f = 0; f < 3 && r->fin[f]; f++)
            ours |= !strcmp(r->fin[f], OURS);
        if (del && ours && (!r->policy || !strstr(r->policy, "--finalizer")) &&
            !strstr(r->steps, "release_finalizer delete"))
            fail_msg("row \"%s\": deletes without releasing our finalizer first", r->name);
        if (has_step(r->steps, "close_session") && !r->open)
            fail_msg("row \"%s\": closes sessions of a pod that has none open", r->name);
    }
}

/* The same plan once time has passed: a step waiting for due_ms is planned
 * at due_ms (not before), so a pass at due_ms acts and one just before waits. */
static void test_due_is_when_it_happens(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const row *r = &rows[i];
        if (!r->due_in)
            continue;
        char pbuf[512];
        kj_policy pol;
        policy_from(r, &pol, pbuf, sizeof pbuf);
        char *fins[3];
        kj_pod pod = {.namespace_ = "kyuubi",
                      .name = "p",
                      .uid = "u",
                      .unique_tag = "t",
                      .phase = (char *)r->phase,
                      .spark_role = (char *)r->role,
                      .created_ms = NOW - r->age,
                      .finished_ms = r->finished_ago ? NOW - r->finished_ago : 0,
                      .deletion_grace_s = -1};
        for (size_t f = 0; f < 3 && r->fin[f]; f++)
            fins[pod.n_finalizers++] = (char *)r->fin[f];
        pod.finalizers = fins;
        kj_pod_sessions s = {.open = r->open,
                             .closed = r->closed,
                             .last_closed_ms = r->closed ? NOW - r->closed_ago : 0};
        kj_plan before, at;
        int64_t due = NOW + r->due_in;
        kj_plan_pod(&pod, &s, NOW - r->seen_ago, due - 1, &pol, &before);
        kj_plan_pod(&pod, &s, NOW - r->seen_ago, due, &pol, &at);
        int del_before = 0, del_at = 0;
        for (size_t k = 0; k < before.n; k++)
            del_before |= before.steps[k].kind == KJ_STEP_DELETE;
        for (size_t k = 0; k < at.n; k++)
            del_at |= at.steps[k].kind == KJ_STEP_DELETE;
        if (del_before || !del_at || at.due_ms)
            fail_msg("row \"%s\": 1 ms before due: delete=%d; at due: delete=%d due_ms=%lld",
                     r->name, del_before, del_at, (long long)at.due_ms);
    }
}

/* An open session without a pod is closed (engine_missing) after the submit grace. */
static void test_missing_engine(void **state)
{
    (void)state;
    static const struct {
        const char *name, *policy;
        int64_t age;
        int close;
    } cases[] = {
        {"just opened, default grace 3m", NULL, 0, 0},
        {"2m old, default grace 3m", NULL, 2 * MIN, 0},
        {"3m old, default grace 3m: due", NULL, 3 * MIN, 1},
        {"4m old, default grace 3m", NULL, 4 * MIN, 1},
        {"a week old", NULL, 7 * DAY, 1},
        {"4m old, --submit-grace 10m", "--submit-grace 10m", 4 * MIN, 0},
        {"11m old, --submit-grace 10m", "--submit-grace 10m", 11 * MIN, 1},
        {"just opened, --submit-grace 0", "--submit-grace 0", 0, 1},
        {"90s old, --submit-grace=90s", "--submit-grace=90s", 89 * SEC, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        row r = {.name = cases[i].name, .policy = cases[i].policy};
        char pbuf[128];
        kj_policy pol;
        policy_from(&r, &pol, pbuf, sizeof pbuf);
        int got = kj_plan_missing_engine(NOW - cases[i].age, NOW, &pol);
        if (got != cases[i].close)
            fail_msg("missing engine \"%s\": close=%d, expected %d", cases[i].name, got,
                     cases[i].close);
    }
}

/* The planner fed from a pod as the API server sends it: the retain period
 * counts from the latest finishedAt over containers and init containers. */
static void test_finished_at_from_json(void **state)
{
    (void)state;
    static const char pod_json[] =
        "{\"metadata\":{\"name\":\"e\",\"namespace\":\"kyuubi\",\"uid\":\"u1\","
        "\"resourceVersion\":\"7\",\"creationTimestamp\":\"2025-11-28T00:00:00Z\","
        "\"labels\":{\"kyuubi-unique-tag\":\"t\"},"
        "\"finalizers\":[\"kyuubi.apache.org/pod-cleanup\"]},"
        "\"spec\":{\"containers\":[{\"name\":\"a\"},{\"name\":\"b\"}]},"
        "\"status\":{\"phase\":\"Failed\","
        "\"initContainerStatuses\":[{\"name\":\"i\",\"state\":{\"terminated\":{\"exitCode\":0,"
        "\"finishedAt\":\"2025-11-28T00:01:00Z\"}}}],"
        "\"containerStatuses\":["
        "{\"name\":\"a\",\"state\":{\"terminated\":{\"exitCode\":1,"
        "\"finishedAt\":\"2025-11-29T04:30:00Z\"}}},"
        "{\"name\":\"b\",\"state\":{\"terminated\":{\"exitCode\":0,"
        "\"finishedAt\":\"2025-11-29T04:38:00Z\"}}}]}}";
    kj_pod *pod = NULL;
    kj_err err = {0};
    assert_int_equal(kj_pod_parse(pod_json, sizeof pod_json - 1, &pod, &err), 0);
    kj_policy pol;
    kj_policy_init(&pol);
    kj_pod_sessions s = {.closed = 1, .last_closed_ms = NOW - DAY};
    kj_plan pl;
    /* latest finishedAt 04:38, retain 5m: due 04:43 = NOW + 3m, whatever
     * the first-seen time says */
    kj_plan_pod(pod, &s, NOW - DAY, NOW, &pol, &pl);
    assert_int_equal(pl.n, 1);
    assert_int_equal(pl.steps[0].kind, KJ_STEP_RELEASE_FINALIZER);
    assert_int_equal(pl.due_ms, NOW + 3 * MIN);
    kj_plan_pod(pod, &s, NOW, NOW + 3 * MIN, &pol, &pl);
    assert_int_equal(pl.n, 2);
    assert_int_equal(pl.steps[1].kind, KJ_STEP_DELETE);
    kj_pod_free(pod);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_invariants),
        cmocka_unit_test(test_due_is_when_it_happens),
        cmocka_unit_test(test_missing_engine),
        cmocka_unit_test(test_finished_at_from_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

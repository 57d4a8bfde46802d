/*
 * informer.h - kjournald's watch on the engine pods (DESIGN.md, "Watching
 * pods"): per namespace a paged list then a watch, like client-go's
 * informer (kj_reflector, reconciler/kube.h). Every pod that changes is kept
 * (the newest version of each) until the reconciler thread plans it with the
 * same planner and journal state the passes use, and acts on it in a pass of
 * its own (trigger "watch").
 *
 * The informer runs on the reconciler thread: kjd_informer_start() on a
 * kj_kube client of its own (a watch is always pending on it), driven by
 * kj_kube_poll() on that client while the thread waits; kjd_informer_react()
 * between passes.
 */
#ifndef KJD_INFORMER_H
#define KJD_INFORMER_H

#include <stdatomic.h>
#include <stdio.h>

#include "reconciler/reconciler.h"

typedef struct kjd_informer kjd_informer;

/* Starts a reflector per namespace of the policy (default_ns when it names
 * none) on kw. watch_timeout_s: each watch's timeoutSeconds (0: 300). */
int kjd_informer_start(kj_kube *kw, const kj_policy *pol, const char *default_ns,
                       int watch_timeout_s, kjd_informer **out, kj_err *err);
/* Pods changed since the last kjd_informer_react(). */
size_t kjd_informer_pending(const kjd_informer *inf);
/*
 * Plans each changed pod and acts on those with a step to take, in one pass
 * on k (trigger "watch") with base's identity, cancel flag, lease fence and
 * per-server settings: a watch pass is fenced like every other pass.
 * *next_due_ms receives when a step not yet due becomes due (epoch ms; 0:
 * none). 0, or the pass's error.
 */
int kjd_informer_react(kjd_informer *inf, kj_journal *j, kj_kube *k, const kj_reconcile_opts *base,
                       int64_t *next_due_ms);
/* Copies the reflectors' counters where /metrics reads them. */
void kjd_informer_publish(const kjd_informer *inf);
/* Frees; kw must have been freed first (its callbacks point here). */
void kjd_informer_free(kjd_informer *inf);

/* /metrics: watch restarts, relists, events by type, reaction latency. Any
 * thread; nothing before the informer has started. */
void kjd_informer_render(FILE *f);

#endif

/*
 * kube_opts.h - the options of the programs that reconcile (kjournald,
 * kjournal recover): the Kubernetes connection, like kubectl's flags, and
 * the policy. Linked only by those programs, so that the read commands
 * start without libcurl.
 *
 *     kj_kube_flags kube;  kj_kube_flags_init(&kube);
 *     kj_policy pol;       kj_policy_init(&pol);
 *     kj_opt kube_opts[KJ_KUBE_OPTS], policy_opts[KJ_POLICY_OPTS];
 *     kj_kube_opts(kube_opts, &kube);
 *     kj_policy_opts(policy_opts, &pol);
 *     const kj_opt opts[] = { ..., KJ_OPTS_INCLUDE(kube_opts), KJ_OPTS_INCLUDE(policy_opts), {0} };
 */
#ifndef KJ_KUBE_OPTS_H
#define KJ_KUBE_OPTS_H

#include "opts.h"
#include "reconciler/reconciler.h"

#define KJ_KUBE_OPTS 16
#define KJ_POLICY_OPTS 16

/* Fills table (room for KJ_KUBE_OPTS entries, ends with {0}) with the kube
 * flags, writing into f. */
void kj_kube_opts(kj_opt *table, kj_kube_flags *f);
/* Likewise for the policy flags, writing into p. */
void kj_policy_opts(kj_opt *table, kj_policy *p);

#endif

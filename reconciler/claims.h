/*
 * claims.h - the per-server topology (DESIGN.md, "Several Kyuubi servers:
 * ownership and leases"): one kjournald beside each Kyuubi server, each with
 * its own journal, and the engine pods themselves saying who uses them.
 *
 * A claim is a finalizer per instance on the engine pod:
 *
 *     kjournal.apache.org/claim-<identity>
 *
 * added (JSON Patch guarded by a resourceVersion test) while the instance has
 * an open session on the engine, removed (guarded by uid and index tests)
 * when it has none. Why a finalizer rather than an annotation: the claim must
 * also keep the pod until its claimant has seen it end (the reason kjournal
 * puts a finalizer on engine pods at all: a pod deleted by someone else, or
 * evicted, stays Terminating until every instance with an open session on it
 * has recorded the end and let go); `kubectl get pod -o
 * jsonpath='{.metadata.finalizers}'` shows who holds it; and a finalizer
 * cannot be added to a pod being deleted (422), so a claim never lands on a
 * pod already going. The cost, a pod kept by the claim of an instance that
 * died, is what the sweeper removes after --instance-grace.
 *
 * An instance deletes a pod only when no other instance claims it, with a
 * DELETE whose preconditions (uid, resourceVersion) fail with 409 if a claim
 * was added since it read the pod; it then reads the pod again and plans
 * again. Releasing its own claim removes only its own entry.
 *
 * The sweeper (the holder of the Lease kjournald-sweeper) alone handles pods
 * that nobody claims and that its own journal does not know (orphans, with
 * the orphan policy), and removes the claims of instances whose Lease
 * kjournald-<identity> has been expired for longer than --instance-grace.
 * Every other instance counts every other claim as live.
 */
#ifndef KJ_CLAIMS_H
#define KJ_CLAIMS_H

#include "reconciler/reconciler.h"

#define KJ_CLAIM_PREFIX "kjournal.apache.org/claim-"
/* A finalizer's name part is at most 63 characters: "claim-" + 57 */
#define KJ_CLAIM_IDENTITY_MAX 57
#define KJ_SWEEPER_LEASE "kjournald-sweeper"
#define KJ_INSTANCE_LEASE_PREFIX "kjournald-"

/*
 * The claim finalizer of identity in out. 0, or KJ_EINVAL with err saying
 * why: an identity here must be a DNS label (lowercase letters, digits, '-',
 * starting and ending with a letter or digit) of at most 57 characters, as
 * it also names the Lease kjournald-<identity>.
 */
int kj_claim_name(const char *identity, char *out, size_t size, kj_err *err);
/* The identity a claim finalizer names (a pointer into name), NULL if name
 * is not a claim. */
const char *kj_claim_identity(const char *name);

/* The claims on a pod besides the planner's own. */
typedef struct kj_claims {
    int64_t others; /* claims of other instances counted as live */
    int64_t dead;   /* claims of instances known dead (only the sweeper knows) */
    int sweeper;    /* the planning instance holds the sweeper Lease */
} kj_claims;

/* Counts the claims on pod other than mine; dead lists claim finalizer
 * names of dead instances. */
void kj_claims_count(const kj_pod *pod, const char *mine, const char *const *dead, size_t n_dead,
                     kj_claims *out);
/* The first claim on pod that is in dead (its name, owned by pod), or NULL. */
const char *kj_claims_first_dead(const kj_pod *pod, const char *const *dead, size_t n_dead);

/*
 * The planner of the per-server topology: kj_plan_pod() (p->finalizer is
 * this instance's claim), then:
 *   - the sweeper first removes dead claims (remove_claim), one a step;
 *   - while another instance claims the pod, nothing deletes it: this
 *     instance only releases its own claim once it has no open session;
 *   - a pod this instance's journal does not know is not its business
 *     unless it is the sweeper (orphans), beyond releasing a claim of its own.
 */
void kj_plan_pod_claims(const kj_pod *pod, const kj_pod_sessions *s, int64_t seen_terminal_ms,
                        int64_t now_ms, const kj_policy *p, const kj_claims *c, kj_plan *out);

#endif

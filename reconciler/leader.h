/*
 * leader.h - leader election over a coordination.k8s.io/v1 Lease, as
 * client-go's leaderelection package does it, as a pure state machine: the
 * caller makes the requests (kube.h) and hands the answers in, with the
 * times. No I/O, no clock of its own: tests drive it with a fake clock.
 *
 * A round, every retry period:
 *
 *     kj_lease want;
 *     int64_t t0 = kj_mono_ms();
 *     GET the Lease -> (rc, got)
 *     switch (kj_elect_after_get(&e, rc, &got, t0, kj_mono_ms(), kj_now_ms(), &want)) {
 *     case KJ_ELECT_CREATE: POST want  -> kj_elect_after_write(&e, rc, &answer, t0); break;
 *     case KJ_ELECT_UPDATE: PUT want   -> kj_elect_after_write(&e, rc, &answer, t0); break;
 *     case KJ_ELECT_WAIT:   break;     // someone else holds it, not expired
 *     }
 *     fence = kj_elect_fence(&e, kj_mono_ms());   // mutate only while now < fence
 *
 * Expiry is judged as client-go judges it: by the local monotonic clock from
 * the moment this instance last saw the record change (its resourceVersion;
 * "saw" is when the GET's answer arrived, never when it was first sent: the
 * change may have been written while the GET was in flight or retried), plus
 * the record's leaseDurationSeconds, against the round's start; never by
 * comparing renewTime with the local wall clock, so clocks that disagree do
 * not matter, only their rates.
 *
 * Fencing by time. A holder may mutate until renewed + renew_deadline, where
 * renewed is the moment it *sent* its last successful acquire or renew (before
 * the server wrote it, so before any other instance can have seen it). Any
 * other instance can take over no earlier than lease_duration after it saw
 * that write, so a holder that cannot renew stops mutating at least
 * lease_duration - renew_deadline (5 s with the defaults: client-go's margin
 * for clock-rate skew and requests in flight) before anyone else may start.
 * kj_elect_cfg_check() refuses timings without that margin, as client-go's
 * NewLeaderElector does (lease > renew deadline > 1.2 x retry period).
 */
#ifndef KJ_LEADER_H
#define KJ_LEADER_H

#include <stdint.h>

#include "reconciler/kube.h"

#define KJ_ELECT_LEASE_MS 15000
#define KJ_ELECT_RENEW_DEADLINE_MS 10000
#define KJ_ELECT_RETRY_MS 2000
/* client-go's JitterFactor: the renew deadline must exceed 1.2 retry periods */
#define KJ_ELECT_JITTER 1.2

typedef struct kj_elect_cfg {
    const char *namespace_; /* NULL: the client's namespace */
    const char *name;       /* the Lease */
    const char *identity;   /* holderIdentity */
    int64_t lease_ms, renew_deadline_ms, retry_ms;
} kj_elect_cfg;

/* 0, or KJ_EINVAL with err naming the flag that is wrong. */
int kj_elect_cfg_check(const kj_elect_cfg *c, kj_err *err);

typedef struct kj_elector {
    kj_elect_cfg cfg;  /* strings borrowed: they must outlive the elector */
    kj_lease observed; /* the record as last read or written */
    int have_observed;
    int64_t observed_mono; /* when observed last changed (its resourceVersion) */
    int64_t renewed_mono;  /* when the last successful acquire or renew was sent */
    int leader;
    int64_t acquisitions; /* times this instance became the holder */
    int64_t losses;       /* times it stopped being the holder */
} kj_elector;

typedef enum {
    KJ_ELECT_WAIT = 0, /* nothing to write: another holds a lease not expired, or the read failed */
    KJ_ELECT_CREATE,   /* no Lease yet: create it (out) */
    KJ_ELECT_UPDATE,   /* acquire or renew: update (out, carrying the read resourceVersion) */
} kj_elect_step;

void kj_elect_init(kj_elector *e, const kj_elect_cfg *cfg);

/*
 * After the GET of a round that began (request sent) at now_mono and whose
 * answer arrived at answered_mono: rc 0 with got, KJ_ENOENT, or another
 * failure. A changed record counts as seen at answered_mono; expiry is judged
 * at now_mono (both the conservative side, as client-go does). now_wall
 * stamps acquireTime and renewTime. Returns what to write, in *out.
 */
kj_elect_step kj_elect_after_get(kj_elector *e, int rc, const kj_lease *got, int64_t now_mono,
                                 int64_t answered_mono, int64_t now_wall, kj_lease *out);
/*
 * client-go's fast path for a holder: renew with the record as last written,
 * without reading it first (half the requests; a 409 means someone else wrote
 * and the next round reads). 1 with the Lease to update in *out if this
 * instance holds the Lease, 0 if it must read first.
 */
int kj_elect_fast_renew(kj_elector *e, int64_t now_mono, int64_t now_wall, kj_lease *out);

/*
 * After the CREATE or UPDATE of the round begun at round_mono (the GET's
 * sending time: conservative). rc 0 with the Lease the server answered, or a
 * failure (409: someone wrote between our read and our write).
 */
void kj_elect_after_write(kj_elector *e, int rc, const kj_lease *answer, int64_t round_mono);

/*
 * The monotonic time until which this instance may mutate, 0 when it does
 * not hold the Lease. Passing the fence ends leadership (e->leader 0, losses
 * counted): a holder that could not renew is a standby again.
 */
int64_t kj_elect_fence(kj_elector *e, int64_t now_mono);

/*
 * On a clean stop, client-go's ReleaseOnCancel: the Lease to write (holder
 * empty, duration 1 s) so that a standby takes over at once. 1 if there is
 * something to write (we hold it), 0 if not. Leadership ends here.
 */
int kj_elect_release(kj_elector *e, int64_t now_wall, kj_lease *out);

#endif

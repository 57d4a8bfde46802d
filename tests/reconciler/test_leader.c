/*
 * The election state machine (reconciler/leader.h) with a fake clock and an
 * in-memory Lease store that answers like the API server (404, 409 on a stale
 * resourceVersion or an existing name, every write a new resourceVersion).
 *
 * Scenarios: first acquisition, a standby that waits while the holder renews,
 * takeover within lease duration + retry period after the holder stops, a
 * holder that cannot renew fenced before anyone else may take over, a paused
 * holder (SIGSTOP) that resumes after a takeover and does not act, a 409 race
 * between two candidates, release on a clean stop, the timing checks; and a
 * property: three candidates under random failures, lost answers and pauses,
 * never two inside their fences at the same moment.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "reconciler/leader.h"

#define SEC 1000LL

/* ---- a Lease store like the API server's ---- */

typedef struct store {
    int exists;
    kj_lease l;
    long rv;
    long writes;
} store;

static int store_get(store *s, kj_lease *out)
{
    if (!s->exists)
        return KJ_ENOENT;
    *out = s->l;
    return 0;
}

static int store_write(store *s, kj_elect_step step, const kj_lease *in, kj_lease *out)
{
    if (step == KJ_ELECT_CREATE && s->exists)
        return KJ_ECONFLICT; /* AlreadyExists */
    if (step == KJ_ELECT_UPDATE &&
        (!s->exists || strcmp(in->resource_version, s->l.resource_version)))
        return KJ_ECONFLICT;
    s->exists = 1;
    s->l = *in;
    snprintf(s->l.resource_version, sizeof s->l.resource_version, "%ld", ++s->rv);
    snprintf(s->l.uid, sizeof s->l.uid, "lease-uid");
    s->writes++;
    *out = s->l;
    return 0;
}

/* ---- a candidate ---- */

typedef struct cand {
    kj_elector e;
    char id[16];
} cand;

static const kj_elect_cfg base = {.namespace_ = "kyuubi",
                                  .name = "kjournald",
                                  .lease_ms = KJ_ELECT_LEASE_MS,
                                  .renew_deadline_ms = KJ_ELECT_RENEW_DEADLINE_MS,
                                  .retry_ms = KJ_ELECT_RETRY_MS};

static void cand_init(cand *c, const char *id)
{
    snprintf(c->id, sizeof c->id, "%s", id);
    kj_elect_cfg cfg = base;
    cfg.identity = c->id;
    kj_elect_init(&c->e, &cfg);
}

typedef enum { OK = 0, GET_FAILS, WRITE_FAILS, ANSWER_LOST } fault;

/* One round at now as kjournald makes it: a holder renews at once (the
 * fast path), falling back to the GET, then the write it asks for. */
static void round_at(cand *c, store *s, int64_t now, fault f)
{
    kj_lease got, want, ans;
    if (kj_elect_fast_renew(&c->e, now, 1700000000000 + now, &want)) {
        int rc = f == WRITE_FAILS ? KJ_EUNAVAIL : store_write(s, KJ_ELECT_UPDATE, &want, &ans);
        if (f == ANSWER_LOST && rc == 0) {
            kj_elect_after_write(&c->e, KJ_ETIMEDOUT, NULL, now);
            return;
        }
        kj_elect_after_write(&c->e, rc, rc ? NULL : &ans, now);
        if (rc == 0)
            return;
    }
    int rc = f == GET_FAILS ? KJ_EUNAVAIL : store_get(s, &got);
    kj_elect_step step =
        kj_elect_after_get(&c->e, rc, rc ? NULL : &got, now, now, 1700000000000 + now, &want);
    if (step == KJ_ELECT_WAIT)
        return;
    if (f == WRITE_FAILS) {
        kj_elect_after_write(&c->e, KJ_EUNAVAIL, NULL, now);
        return;
    }
    rc = store_write(s, step, &want, &ans);
    if (f == ANSWER_LOST) { /* applied, but the answer never came */
        kj_elect_after_write(&c->e, KJ_ETIMEDOUT, NULL, now);
        return;
    }
    kj_elect_after_write(&c->e, rc, rc ? NULL : &ans, now);
}

static int holds(cand *c, int64_t now)
{
    return kj_elect_fence(&c->e, now) > now;
}

/* ---- scenarios ---- */

static void test_first_acquisition(void **state)
{
    (void)state;
    store s = {0};
    cand a;
    cand_init(&a, "a");
    assert_false(holds(&a, 0));
    round_at(&a, &s, 0, OK);
    assert_true(holds(&a, 0));
    assert_int_equal(kj_elect_fence(&a.e, 0), KJ_ELECT_RENEW_DEADLINE_MS);
    assert_string_equal(s.l.holder, "a");
    assert_int_equal(s.l.duration_s, 15);
    assert_int_equal(s.l.transitions, 0);
    /* renewing keeps acquireTime and the transitions; moves the fence */
    int64_t acquired = s.l.acquire_ms;
    round_at(&a, &s, 2 * SEC, OK);
    assert_int_equal(s.l.acquire_ms, acquired);
    assert_int_equal(s.l.renew_ms, 1700000000000 + 2 * SEC);
    assert_int_equal(kj_elect_fence(&a.e, 2 * SEC), 12 * SEC);
    assert_int_equal(a.e.acquisitions, 1);
}

static void test_standby_waits_while_renewed(void **state)
{
    (void)state;
    store s = {0};
    cand a, b;
    cand_init(&a, "a");
    cand_init(&b, "b");
    for (int64_t t = 0; t < 120 * SEC; t += KJ_ELECT_RETRY_MS) {
        round_at(&a, &s, t, OK);
        round_at(&b, &s, t + 700, OK);
        assert_true(holds(&a, t + 700));
        assert_false(holds(&b, t + 700));
    }
    assert_string_equal(s.l.holder, "a");
    assert_int_equal(b.e.acquisitions, 0);
}

/* The holder dies after its renewal at `last`: the standby takes over within
 * lease duration + retry period, never before the holder's fence. */
static void test_takeover_after_holder_dies(void **state)
{
    (void)state;
    store s = {0};
    cand a, b;
    cand_init(&a, "a");
    cand_init(&b, "b");
    int64_t t, last = 0;
    for (t = 0; t <= 10 * SEC; t += KJ_ELECT_RETRY_MS) {
        round_at(&a, &s, t, OK);
        last = t;
        round_at(&b, &s, t + 300, OK);
    }
    int64_t took = 0;
    for (t = last + KJ_ELECT_RETRY_MS + 300; t < last + 60 * SEC && !took; t += KJ_ELECT_RETRY_MS) {
        round_at(&b, &s, t, OK);
        if (holds(&b, t))
            took = t;
    }
    assert_true(took > 0);
    assert_true(took - last <= KJ_ELECT_LEASE_MS + KJ_ELECT_RETRY_MS);
    assert_true(took >= last + KJ_ELECT_LEASE_MS);
    assert_true(took > kj_elect_fence(&a.e, last)); /* a's fence was over before */
    assert_string_equal(s.l.holder, "b");
    assert_int_equal(s.l.transitions, 1);
}

/* The holder is alive but every renewal fails: it stops at its renew
 * deadline, 5 s before the standby may act. */
static void test_holder_that_cannot_renew_is_fenced(void **state)
{
    (void)state;
    store s = {0};
    cand a, b;
    cand_init(&a, "a");
    cand_init(&b, "b");
    round_at(&a, &s, 0, OK);
    int64_t a_stopped = 0, b_started = 0;
    for (int64_t t = 100; t < 40 * SEC; t += 100) {
        if (t % KJ_ELECT_RETRY_MS == 0)
            round_at(&a, &s, t, WRITE_FAILS);
        if (t % KJ_ELECT_RETRY_MS == 500)
            round_at(&b, &s, t, OK);
        if (!a_stopped && !holds(&a, t))
            a_stopped = t;
        if (!b_started && holds(&b, t))
            b_started = t;
        assert_false(holds(&a, t) && holds(&b, t));
    }
    assert_int_equal(a_stopped, KJ_ELECT_RENEW_DEADLINE_MS);
    assert_true(b_started >= KJ_ELECT_LEASE_MS);
    assert_true(b_started - a_stopped >= KJ_ELECT_LEASE_MS - KJ_ELECT_RENEW_DEADLINE_MS);
    assert_int_equal(a.e.losses, 1);
    /* a stays a standby: it sees b's renewals and waits */
    round_at(&b, &s, 40 * SEC, OK);
    round_at(&a, &s, 40 * SEC + 100, OK);
    assert_false(holds(&a, 40 * SEC + 100));
}

/* SIGSTOP longer than the lease, then SIGCONT: the paused holder's fence has
 * passed when it wakes; its first round reads the new holder and it waits. */
static void test_paused_holder_does_not_act_after_takeover(void **state)
{
    (void)state;
    store s = {0};
    cand a, b;
    cand_init(&a, "a");
    cand_init(&b, "b");
    round_at(&a, &s, 0, OK);
    round_at(&b, &s, 500, OK);
    /* a is stopped from 1 s to 30 s; b goes on */
    for (int64_t t = 2500; t < 30 * SEC; t += KJ_ELECT_RETRY_MS)
        round_at(&b, &s, t, OK);
    assert_string_equal(s.l.holder, "b");
    int64_t wake = 30 * SEC;
    assert_false(holds(&a, wake)); /* before any request: the clock alone */
    round_at(&a, &s, wake, OK);
    assert_false(holds(&a, wake));
    assert_string_equal(s.l.holder, "b");
    assert_int_equal(a.e.losses, 1);
}

/* The holder renews while the standby's GET is on its way (a slow answer):
 * the standby saw that renewal when the answer came, not when it sent the
 * GET, and may not take over before a lease duration after the renewal was
 * written. The e2e test saw it happen under faults: the standby's GET was
 * dropped, kube.c retried it 1 s later and got the holder's newest renewal,
 * which was dated at the first attempt, so the standby took over 2.4 s after
 * that renewal was written (lease 3 s). */
static void test_renewal_during_slow_get(void **state)
{
    (void)state;
    store s = {0};
    cand a, b;
    cand_init(&a, "a");
    cand_init(&b, "b");
    round_at(&a, &s, 0, OK);
    kj_lease got, want;
    store_get(&s, &got);
    assert_int_equal(kj_elect_after_get(&b.e, 0, &got, 100, 100, 0, &want), KJ_ELECT_WAIT);
    /* b sends its GET at 500; a's renewal is written at 600; the answer,
     * with that renewal, reaches b at 900; then a dies */
    round_at(&a, &s, 600, OK);
    store_get(&s, &got);
    assert_int_equal(kj_elect_after_get(&b.e, 0, &got, 500, 900, 0, &want), KJ_ELECT_WAIT);
    int64_t written = 600;
    for (int64_t t = 1000; t < 900 + KJ_ELECT_LEASE_MS; t += 100)
        assert_int_equal(kj_elect_after_get(&b.e, 0, &got, t, t + 300, 0, &want), KJ_ELECT_WAIT);
    assert_true(900 + KJ_ELECT_LEASE_MS >= written + KJ_ELECT_LEASE_MS);
    assert_int_equal(kj_elect_after_get(&b.e, 0, &got, 900 + KJ_ELECT_LEASE_MS,
                                        900 + KJ_ELECT_LEASE_MS + 300, 0, &want),
                     KJ_ELECT_UPDATE);
    assert_true(kj_elect_fence(&a.e, written) < written + KJ_ELECT_LEASE_MS);
}

/* Both read the expired record; the first write wins, the second gets 409. */
static void test_conflict_race(void **state)
{
    (void)state;
    store s = {0};
    cand a, b, c;
    cand_init(&a, "a");
    cand_init(&b, "b");
    cand_init(&c, "c");
    round_at(&a, &s, 0, OK);
    kj_lease got;
    store_get(&s, &got);
    /* b and c have watched a's record unchanged for the whole lease */
    kj_lease wb, wc, ans;
    assert_int_equal(kj_elect_after_get(&b.e, 0, &got, 1 * SEC, 1 * SEC, 0, &wb), KJ_ELECT_WAIT);
    assert_int_equal(kj_elect_after_get(&c.e, 0, &got, 1 * SEC, 1 * SEC, 0, &wc), KJ_ELECT_WAIT);
    assert_int_equal(kj_elect_after_get(&b.e, 0, &got, 17 * SEC, 17 * SEC, 0, &wb),
                     KJ_ELECT_UPDATE);
    assert_int_equal(kj_elect_after_get(&c.e, 0, &got, 17 * SEC, 17 * SEC, 0, &wc),
                     KJ_ELECT_UPDATE);
    assert_int_equal(store_write(&s, KJ_ELECT_UPDATE, &wb, &ans), 0);
    kj_elect_after_write(&b.e, 0, &ans, 17 * SEC);
    assert_int_equal(store_write(&s, KJ_ELECT_UPDATE, &wc, &ans), KJ_ECONFLICT);
    kj_elect_after_write(&c.e, KJ_ECONFLICT, NULL, 17 * SEC);
    assert_true(holds(&b, 17 * SEC));
    assert_false(holds(&c, 17 * SEC));
    /* a create racing another create: AlreadyExists */
    store s2 = {0};
    cand d, e2;
    cand_init(&d, "d");
    cand_init(&e2, "e");
    kj_lease wd, we;
    assert_int_equal(kj_elect_after_get(&d.e, KJ_ENOENT, NULL, 0, 0, 0, &wd), KJ_ELECT_CREATE);
    assert_int_equal(kj_elect_after_get(&e2.e, KJ_ENOENT, NULL, 0, 0, 0, &we), KJ_ELECT_CREATE);
    assert_int_equal(store_write(&s2, KJ_ELECT_CREATE, &wd, &ans), 0);
    kj_elect_after_write(&d.e, 0, &ans, 0);
    assert_int_equal(store_write(&s2, KJ_ELECT_CREATE, &we, &ans), KJ_ECONFLICT);
    kj_elect_after_write(&e2.e, KJ_ECONFLICT, NULL, 0);
    assert_true(holds(&d, 0));
    assert_false(holds(&e2, 0));
}

static void test_release_on_stop(void **state)
{
    (void)state;
    store s = {0};
    cand a, b;
    cand_init(&a, "a");
    cand_init(&b, "b");
    round_at(&a, &s, 0, OK);
    round_at(&b, &s, 500, OK);
    kj_lease rel, ans;
    assert_true(kj_elect_release(&a.e, 1700000001000, &rel));
    assert_false(holds(&a, 1000)); /* stops acting before the write */
    assert_string_equal(rel.holder, "");
    assert_int_equal(rel.duration_s, 1);
    assert_int_equal(store_write(&s, KJ_ELECT_UPDATE, &rel, &ans), 0);
    assert_false(kj_elect_release(&a.e, 0, &rel)); /* nothing more to release */
    /* b sees the released record and takes it at its next round */
    round_at(&b, &s, 2500, OK);
    assert_true(holds(&b, 2500));
    assert_string_equal(s.l.holder, "b");
}

/* The fast path renews without reading; a 409 (another wrote meanwhile)
 * leaves the fence as it was, and the read that follows ends leadership. */
static void test_fast_renew(void **state)
{
    (void)state;
    store s = {0};
    cand a;
    cand_init(&a, "a");
    kj_lease want, ans;
    assert_false(kj_elect_fast_renew(&a.e, 0, 0, &want)); /* not the holder */
    round_at(&a, &s, 0, OK);
    long writes = s.writes;
    assert_true(kj_elect_fast_renew(&a.e, 2 * SEC, 1700000002000, &want));
    assert_string_equal(want.resource_version, s.l.resource_version);
    assert_string_equal(want.holder, "a");
    assert_int_equal(want.acquire_ms, s.l.acquire_ms);
    assert_int_equal(store_write(&s, KJ_ELECT_UPDATE, &want, &ans), 0);
    kj_elect_after_write(&a.e, 0, &ans, 2 * SEC);
    assert_int_equal(s.writes, writes + 1);
    assert_int_equal(kj_elect_fence(&a.e, 2 * SEC), 12 * SEC);
    /* someone else writes (a person, kubectl): the fast renewal is refused */
    s.l.holder[0] = 'z';
    snprintf(s.l.resource_version, sizeof s.l.resource_version, "%ld", ++s.rv);
    assert_true(kj_elect_fast_renew(&a.e, 4 * SEC, 0, &want));
    assert_int_equal(store_write(&s, KJ_ELECT_UPDATE, &want, &ans), KJ_ECONFLICT);
    kj_elect_after_write(&a.e, KJ_ECONFLICT, NULL, 4 * SEC);
    assert_int_equal(kj_elect_fence(&a.e, 4 * SEC), 12 * SEC); /* unchanged */
    kj_lease got;
    store_get(&s, &got);
    assert_int_equal(kj_elect_after_get(&a.e, 0, &got, 4 * SEC, 4 * SEC, 0, &want), KJ_ELECT_WAIT);
    assert_false(holds(&a, 4 * SEC));
    /* past the fence, no fast path */
    assert_false(kj_elect_fast_renew(&a.e, 30 * SEC, 0, &want));
}

static void test_timings_checked(void **state)
{
    (void)state;
    kj_err err;
    kj_elect_cfg c = base;
    c.identity = "a";
    assert_int_equal(kj_elect_cfg_check(&c, &err), 0);
    c.renew_deadline_ms = 15 * SEC;
    assert_int_equal(kj_elect_cfg_check(&c, &err), KJ_EINVAL);
    assert_non_null(strstr(err.msg, "--leader-elect-lease-duration must be greater"));
    c = base;
    c.identity = "a";
    c.retry_ms = 9 * SEC; /* 1.2 x 9 s > 10 s */
    assert_int_equal(kj_elect_cfg_check(&c, &err), KJ_EINVAL);
    assert_non_null(strstr(err.msg, "1.2"));
    c = base;
    c.identity = "";
    assert_int_equal(kj_elect_cfg_check(&c, &err), KJ_EINVAL);
    char longid[300];
    memset(longid, 'x', sizeof longid - 1);
    longid[sizeof longid - 1] = 0;
    c.identity = longid;
    assert_int_equal(kj_elect_cfg_check(&c, &err), KJ_EINVAL);
    c = base;
    c.identity = "a";
    c.lease_ms = 15500; /* a Lease counts whole seconds */
    assert_int_equal(kj_elect_cfg_check(&c, &err), KJ_EINVAL);
}

/* A record that says nothing sensible (no holder, no duration, garbage
 * times) is taken over; one held by another with a duration of 0 falls back
 * to our own duration. */
static void test_odd_records(void **state)
{
    (void)state;
    cand a;
    cand_init(&a, "a");
    kj_lease got = {0}, want;
    snprintf(got.resource_version, sizeof got.resource_version, "7");
    assert_int_equal(kj_elect_after_get(&a.e, 0, &got, 0, 0, 0, &want), KJ_ELECT_UPDATE);
    assert_string_equal(want.resource_version, "7");
    snprintf(got.holder, sizeof got.holder, "z");
    snprintf(got.resource_version, sizeof got.resource_version, "8");
    got.duration_s = 0;
    assert_int_equal(kj_elect_after_get(&a.e, 0, &got, 1000, 1000, 0, &want), KJ_ELECT_WAIT);
    assert_int_equal(kj_elect_after_get(&a.e, 0, &got, 1000 + KJ_ELECT_LEASE_MS - 1,
                                        1000 + KJ_ELECT_LEASE_MS - 1, 0, &want),
                     KJ_ELECT_WAIT);
    assert_int_equal(kj_elect_after_get(&a.e, 0, &got, 1000 + KJ_ELECT_LEASE_MS,
                                        1000 + KJ_ELECT_LEASE_MS, 0, &want),
                     KJ_ELECT_UPDATE);
    /* a successful write answered with another holder (a broken server) is
     * not leadership */
    kj_lease other = got;
    kj_elect_after_write(&a.e, 0, &other, 2000);
    assert_false(holds(&a, 2000));
}

/* ---- the property ---- */

static uint64_t rng = 88172645463325252ULL;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void test_never_two_holders(void **state)
{
    (void)state;
    for (int trial = 0; trial < 40; trial++) {
        store s = {0};
        cand c[3];
        int64_t next[3], paused_until[3] = {0};
        const char *ids[3] = {"a", "b", "c"};
        for (int i = 0; i < 3; i++) {
            cand_init(&c[i], ids[i]);
            next[i] = (int64_t)(next_rand() % 2000);
        }
        long changes = 0;
        int last_holder = -1;
        for (int64_t t = 0; t < 20 * 60 * SEC; t += 50) {
            for (int i = 0; i < 3; i++) {
                if (t < next[i])
                    continue;
                next[i] = t + KJ_ELECT_RETRY_MS + (int64_t)(next_rand() % 400);
                if (t < paused_until[i])
                    continue;
                uint64_t r = next_rand() % 100;
                if (r < 2) { /* SIGSTOP for 0-40 s */
                    paused_until[i] = t + (int64_t)(next_rand() % 40000);
                    continue;
                }
                fault f = r < 12 ? GET_FAILS : r < 20 ? WRITE_FAILS : r < 25 ? ANSWER_LOST : OK;
                round_at(&c[i], &s, t, f);
            }
            int n = 0, who = -1;
            for (int i = 0; i < 3; i++)
                if (holds(&c[i], t))
                    n++, who = i;
            if (n > 1)
                fail_msg("trial %d: two holders at t=%lld ms", trial, (long long)t);
            if (who >= 0 && who != last_holder) {
                changes++;
                last_holder = who;
            }
        }
        assert_true(changes >= 1); /* someone held it; pauses make it change hands */
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_acquisition),
        cmocka_unit_test(test_standby_waits_while_renewed),
        cmocka_unit_test(test_takeover_after_holder_dies),
        cmocka_unit_test(test_renewal_during_slow_get),
        cmocka_unit_test(test_holder_that_cannot_renew_is_fenced),
        cmocka_unit_test(test_paused_holder_does_not_act_after_takeover),
        cmocka_unit_test(test_conflict_race),
        cmocka_unit_test(test_release_on_stop),
        cmocka_unit_test(test_fast_renew),
        cmocka_unit_test(test_timings_checked),
        cmocka_unit_test(test_odd_records),
        cmocka_unit_test(test_never_two_holders),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * The per-server planner (reconciler/claims.h) as a table: a pod (its phase,
 * its claims: mine, others', dead ones), what this instance's journal says
 * of its sessions, whether it is the sweeper, and the steps expected. Plus
 * claim names (hostile identities refused), claim counting, and the
 * invariants: nothing is ever deleted while another instance claims the pod,
 * and only the sweeper touches a pod its journal does not know.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "reconciler/claims.h"

#define SEC 1000LL
#define MIN (60 * SEC)
#define NOW 1800000000000LL

#define MINE KJ_CLAIM_PREFIX "a"
#define B KJ_CLAIM_PREFIX "b"
#define C KJ_CLAIM_PREFIX "c"
#define OTHER "example.com/other-controller"

typedef struct row {
    const char *what;
    const char *phase;
    int terminating;
    const char *fins[4]; /* NULL-terminated */
    int64_t open, closed;
    int sweeper;
    const char *dead; /* a dead claim, or NULL */
    int orphan_delete;
    const char *want; /* steps, space-separated */
} row;

static const row rows[] = {
    /* my sessions open */
    {"open, unclaimed: claim it", "Running", 0, {NULL}, 1, 0, 0, NULL, 0, "add_finalizer"},
    {"open, claimed by b too: claim it", "Running", 0, {B}, 1, 0, 0, NULL, 0, "add_finalizer"},
    {"open, claimed: nothing", "Running", 0, {MINE, B}, 1, 0, 0, NULL, 0, ""},
    {"open, pod terminal, b claims: close, release mine",
     "Succeeded",
     0,
     {MINE, B},
     1,
     0,
     0,
     NULL,
     0,
     "close_session release_finalizer"},
    /* my sessions closed */
    {"closed, only mine: release, delete",
     "Running",
     0,
     {MINE},
     0,
     1,
     0,
     NULL,
     0,
     "release_finalizer delete"},
    {"closed, b claims: release mine, keep",
     "Running",
     0,
     {MINE, B},
     0,
     1,
     0,
     NULL,
     0,
     "release_finalizer"},
    {"closed, b claims, mine gone: nothing", "Running", 0, {B}, 0, 1, 0, NULL, 0, ""},
    {"closed, another controller's finalizer only: delete",
     "Running",
     0,
     {OTHER},
     0,
     1,
     0,
     NULL,
     0,
     "delete"},
    {"terminal, closed, b and c claim: release mine",
     "Failed",
     0,
     {MINE, B, C},
     0,
     1,
     0,
     NULL,
     0,
     "release_finalizer"},
    {"terminal, closed, unclaimed: delete", "Succeeded", 0, {NULL}, 0, 1, 0, NULL, 0, "delete"},
    /* pods my journal does not know */
    {"orphan, not the sweeper: nothing", "Running", 0, {NULL}, 0, 0, 0, NULL, 1, ""},
    {"terminal orphan, not the sweeper: nothing", "Succeeded", 0, {NULL}, 0, 0, 0, NULL, 0, ""},
    {"orphan with my claim, not the sweeper: release it",
     "Running",
     0,
     {MINE},
     0,
     0,
     0,
     NULL,
     0,
     "release_finalizer"},
    {"orphan claimed by b: nothing, even for the sweeper",
     "Succeeded",
     0,
     {B},
     0,
     0,
     1,
     NULL,
     0,
     ""},
    {"terminal orphan, sweeper: delete", "Succeeded", 0, {NULL}, 0, 0, 1, NULL, 0, "delete"},
    {"running orphan, sweeper, report policy: report",
     "Running",
     0,
     {NULL},
     0,
     0,
     1,
     NULL,
     0,
     "report_orphan"},
    {"running orphan, sweeper, delete policy: delete",
     "Running",
     0,
     {NULL},
     0,
     0,
     1,
     NULL,
     1,
     "delete"},
    /* dead instances */
    {"b dead, sweeper: remove its claim first", "Succeeded", 0, {B}, 0, 0, 1, B, 0, "remove_claim"},
    {"b dead, sweeper, c alive: remove b's", "Succeeded", 0, {B, C}, 0, 0, 1, B, 0, "remove_claim"},
    {"b dead, not the sweeper: b still counts",
     "Succeeded",
     0,
     {MINE, B},
     0,
     1,
     0,
     NULL,
     0,
     "release_finalizer"},
    /* being deleted */
    {"terminating, open: close, release mine",
     "Running",
     1,
     {MINE, B},
     1,
     0,
     0,
     NULL,
     0,
     "close_session release_finalizer"},
    {"terminating, b dead, sweeper: mine first as usual",
     "Running",
     1,
     {MINE, B},
     0,
     1,
     1,
     B,
     0,
     "release_finalizer"},
};

static void steps_of(const kj_plan *pl, char *out, size_t size)
{
    out[0] = 0;
    for (size_t i = 0; i < pl->n; i++) {
        size_t n = strlen(out);
        snprintf(out + n, size - n, "%s%s", i ? " " : "", kj_step_name(pl->steps[i].kind));
    }
}

static void plan_row(const row *r, kj_plan *pl)
{
    kj_policy pol;
    kj_policy_init(&pol);
    pol.finalizer = MINE;
    pol.per_server = 1;
    pol.engine_grace_ms = 0;
    pol.retain_terminated_ms = 0;
    pol.orphan_grace_ms = 0;
    pol.delete_running_orphans = r->orphan_delete;
    char *fins[4];
    size_t n = 0;
    while (n < 4 && r->fins[n]) {
        fins[n] = (char *)r->fins[n];
        n++;
    }
    kj_pod pod = {.name = "p",
                  .uid = "u",
                  .resource_version = "7",
                  .unique_tag = "t",
                  .phase = (char *)r->phase,
                  .finalizers = fins,
                  .n_finalizers = n,
                  .created_ms = NOW - 60 * MIN,
                  .deletion_ms = r->terminating ? NOW - SEC : 0,
                  .finished_ms = strcmp(r->phase, "Running") ? NOW - MIN : 0};
    kj_pod_sessions s = {.open = r->open, .closed = r->closed, .last_closed_ms = NOW - MIN};
    const char *dead[1] = {r->dead};
    kj_claims c = {.sweeper = r->sweeper};
    kj_claims_count(&pod, MINE, dead, r->dead ? 1 : 0, &c);
    kj_plan_pod_claims(&pod, &s, NOW - MIN, NOW, &pol, &c, pl);
}

static void test_table(void **state)
{
    (void)state;
    int bad = 0;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        kj_plan pl;
        char got[200];
        plan_row(&rows[i], &pl);
        steps_of(&pl, got, sizeof got);
        if (strcmp(got, rows[i].want)) {
            fprintf(stderr, "row '%s': got '%s', want '%s'\n", rows[i].what, got, rows[i].want);
            bad++;
        }
    }
    assert_int_equal(bad, 0);
}

/* Every combination of claims, sessions, phases and roles: never a delete
 * while another live claim stands; never anything but releasing one's own
 * claim on a pod unknown to a non-sweeper. */
static void test_invariants(void **state)
{
    (void)state;
    const char *phases[] = {"Pending", "Running", "Succeeded", "Failed"};
    const char *sets[][4] = {{NULL}, {MINE}, {B}, {MINE, B}, {B, C}, {OTHER}, {MINE, OTHER, C}};
    for (size_t ph = 0; ph < 4; ph++)
        for (size_t st = 0; st < sizeof sets / sizeof sets[0]; st++)
            for (int open = 0; open < 2; open++)
                for (int closed = 0; closed < 2; closed++)
                    for (int sw = 0; sw < 2; sw++)
                        for (int term = 0; term < 2; term++) {
                            row r = {"", phases[ph], term, {NULL}, open, closed, sw, NULL, 1, ""};
                            memcpy(r.fins, sets[st], sizeof r.fins);
                            kj_plan pl;
                            plan_row(&r, &pl);
                            int others = 0;
                            for (size_t i = 0; i < 4 && r.fins[i]; i++)
                                others += kj_claim_identity(r.fins[i]) && strcmp(r.fins[i], MINE);
                            for (size_t i = 0; i < pl.n; i++) {
                                kj_step_kind k = pl.steps[i].kind;
                                if (others)
                                    assert_true(k != KJ_STEP_DELETE);
                                if (!open && !closed && !sw)
                                    assert_true(k == KJ_STEP_RELEASE_FINALIZER);
                                assert_true(k != KJ_STEP_REMOVE_CLAIM); /* none dead */
                                if (k == KJ_STEP_ADD_FINALIZER)
                                    assert_true(open);
                            }
                        }
}

static void test_names(void **state)
{
    (void)state;
    char out[128];
    kj_err err;
    assert_int_equal(kj_claim_name("kyuubi-0", out, sizeof out, &err), 0);
    assert_string_equal(out, "kjournal.apache.org/claim-kyuubi-0");
    assert_string_equal(kj_claim_identity(out), "kyuubi-0");
    const char *bad[] = {"",    "-a",   "a-", "A",   "a_b", "a.b", "a b",
                         "a/b", "a\nb", "é",  "a\"", "a:b", NULL};
    for (size_t i = 0; bad[i]; i++)
        assert_int_equal(kj_claim_name(bad[i], out, sizeof out, &err), KJ_EINVAL);
    char longid[80];
    memset(longid, 'k', sizeof longid);
    longid[KJ_CLAIM_IDENTITY_MAX] = 0;
    assert_int_equal(kj_claim_name(longid, out, sizeof out, &err), 0);
    longid[KJ_CLAIM_IDENTITY_MAX] = 'k';
    longid[KJ_CLAIM_IDENTITY_MAX + 1] = 0;
    assert_int_equal(kj_claim_name(longid, out, sizeof out, &err), KJ_EINVAL);
    assert_int_equal(kj_claim_name("abc", out, 10, &err), KJ_EINVAL); /* too small */
    assert_null(kj_claim_identity("kjournal.apache.org/claim-"));
    assert_null(kj_claim_identity("kyuubi.apache.org/pod-cleanup"));
    assert_null(kj_claim_identity(NULL));
}

static void test_count(void **state)
{
    (void)state;
    char *fins[] = {MINE, B, OTHER, C, KJ_CLAIM_PREFIX};
    kj_pod pod = {.finalizers = fins, .n_finalizers = 5};
    const char *dead[] = {C};
    kj_claims c;
    kj_claims_count(&pod, MINE, dead, 1, &c);
    assert_int_equal(c.others, 1);
    assert_int_equal(c.dead, 1);
    assert_string_equal(kj_claims_first_dead(&pod, dead, 1), C);
    assert_null(kj_claims_first_dead(&pod, dead, 0));
    kj_claims_count(&pod, NULL, NULL, 0, &c);
    assert_int_equal(c.others, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_invariants),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

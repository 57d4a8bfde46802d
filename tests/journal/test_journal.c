/* Queries, paging, statistics, maintenance and the reconciler audit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include "testutil.h"

typedef struct fixture {
    char *dir, *path;
    kj_journal *j;
} fixture;

#define NSESS 700 /* more than two pages */

/* Sessions s0000..s0699, one per second; users alternate alice/bob; every
 * third is closed; engines e<n/10> (shared by ten sessions). */
static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = test_dir();
    f->path = path_in(f->dir, "j.db");
    kj_err err = {0};
    if (kj_journal_open(f->path, 0, &f->j, &err))
        return -1;
    static char ids[NSESS * 2][24], sess[NSESS][16], eng[NSESS][16];
    kj_event evs[NSESS * 2];
    size_t n = 0;
    for (int i = 0; i < NSESS; i++) {
        snprintf(sess[i], sizeof sess[i], "s%04d", i);
        snprintf(eng[i], sizeof eng[i], "e%d", i / 10);
        snprintf(ids[n], sizeof ids[n], "open-%d", i);
        evs[n] = ev_open(ids[n], sess[i], T0 + i * 1000LL);
        evs[n].user = i % 2 ? "bob" : "alice";
        evs[n].engine_tag = eng[i];
        evs[n].engine_id = i % 20 == 0 ? "spark-app-0" : NULL;
        n++;
        if (i % 3 == 0) {
            snprintf(ids[n], sizeof ids[n], "close-%d", i);
            evs[n] = ev_close(ids[n], sess[i], T0 + i * 1000LL + 500);
            n++;
        }
    }
    kj_append_result *res = calloc(n, sizeof *res);
    int rc = kj_journal_append(f->j, evs, n, res, &err);
    for (size_t i = 0; i < n && !rc; i++)
        if (res[i].status != KJ_APPEND_STORED)
            rc = -1;
    free(res);
    *state = f;
    return rc;
}

static int teardown(void **state)
{
    fixture *f = *state;
    kj_journal_close(f->j);
    free(f->path);
    rm_tree(f->dir);
    free(f);
    return 0;
}

typedef struct collect {
    int n;
    char first[32], last[32];
    int64_t prev;
    int ordered;
} collect;

static int collect_session(const kj_session *s, void *ud)
{
    collect *c = ud;
    if (c->n == 0)
        snprintf(c->first, sizeof c->first, "%s", s->session_id);
    snprintf(c->last, sizeof c->last, "%s", s->session_id);
    if (c->n && s->created_ms < c->prev)
        c->ordered = 0;
    c->prev = s->created_ms;
    c->n++;
    return 0;
}

static collect sessions(kj_journal *j, kj_session_filter flt)
{
    collect c = {.ordered = 1};
    kj_err err = {0};
    assert_int_equal(kj_journal_sessions(j, &flt, collect_session, &c, &err), 0);
    return c;
}

static void test_session_filters(void **state)
{
    fixture *f = *state;
    collect c = sessions(f->j, (kj_session_filter){0});
    assert_int_equal(c.n, NSESS);
    assert_true(c.ordered);
    assert_string_equal(c.first, "s0000");
    assert_string_equal(c.last, "s0699");

    c = sessions(f->j, (kj_session_filter){.state = KJ_SESSION_CLOSED});
    assert_int_equal(c.n, (NSESS + 2) / 3);
    c = sessions(f->j, (kj_session_filter){.state = KJ_SESSION_OPEN});
    assert_int_equal(c.n, NSESS - (NSESS + 2) / 3);
    c = sessions(f->j, (kj_session_filter){.user = "bob"});
    assert_int_equal(c.n, NSESS / 2);
    c = sessions(f->j, (kj_session_filter){.user = "nobody"});
    assert_int_equal(c.n, 0);
    c = sessions(f->j, (kj_session_filter){.engine = "e3"});
    assert_int_equal(c.n, 10);
    c = sessions(f->j, (kj_session_filter){.engine = "spark-app-0"});
    assert_int_equal(c.n, NSESS / 20);
    c = sessions(f->j, (kj_session_filter){.since_ms = T0 + 100000, .until_ms = T0 + 110000});
    assert_int_equal(c.n, 10);
    assert_string_equal(c.first, "s0100");

    /* -n 5 -r: the newest five, newest first; then across a page boundary. */
    c = sessions(f->j, (kj_session_filter){.limit = 5, .reverse = 1});
    assert_int_equal(c.n, 5);
    assert_string_equal(c.first, "s0699");
    assert_string_equal(c.last, "s0695");
    c = sessions(f->j, (kj_session_filter){.limit = 300, .reverse = 1});
    assert_int_equal(c.n, 300);
    assert_string_equal(c.last, "s0400");
    c = sessions(f->j, (kj_session_filter){.limit = 300});
    assert_string_equal(c.last, "s0299");
}

static int stop_after_three(const kj_session *s, void *ud)
{
    (void)s;
    return ++*(int *)ud == 3 ? 42 : 0;
}

static void test_callback_stops(void **state)
{
    fixture *f = *state;
    int n = 0;
    kj_err err = {0};
    assert_int_equal(kj_journal_sessions(f->j, NULL, stop_after_three, &n, &err), 42);
    assert_int_equal(n, 3);
}

typedef struct ev_collect {
    int n;
    int64_t last_seq, prev_t;
    int ordered;
} ev_collect;

static int collect_event(const kj_event_row *r, void *ud)
{
    ev_collect *c = ud;
    if (c->n && r->event.time_ms < c->prev_t)
        c->ordered = 0;
    c->prev_t = r->event.time_ms;
    c->last_seq = r->seq;
    c->n++;
    return 0;
}

static void test_events(void **state)
{
    fixture *f = *state;
    kj_err err = {0};
    int total = NSESS + (NSESS + 2) / 3;
    ev_collect c = {.ordered = 1};
    assert_int_equal(kj_journal_events(f->j, NULL, collect_event, &c, &err), 0);
    assert_int_equal(c.n, total);
    assert_true(c.ordered);

    c = (ev_collect){.ordered = 1};
    kj_event_filter flt = {.session_id = "s0300"};
    assert_int_equal(kj_journal_events(f->j, &flt, collect_event, &c, &err), 0);
    assert_int_equal(c.n, 2);

    c = (ev_collect){.ordered = 1};
    flt = (kj_event_filter){.since_ms = T0 + 600000};
    assert_int_equal(kj_journal_events(f->j, &flt, collect_event, &c, &err), 0);
    assert_int_equal(c.n, 100 + 34); /* opens 600..699, closes 600, 603, ..., 699 */

    c = (ev_collect){.ordered = 1};
    flt = (kj_event_filter){.reverse = 1, .limit = 3};
    assert_int_equal(kj_journal_events(f->j, &flt, collect_event, &c, &err), 0);
    assert_int_equal(c.n, 3);
    assert_int_equal(c.prev_t, T0 + 698000);

    /* Following: everything after a seq, in commit order. */
    int64_t last = 0, max = 0;
    assert_int_equal(kj_journal_last_seq(f->j, &max, &err), 0);
    c = (ev_collect){.ordered = 1};
    assert_int_equal(
        kj_journal_events_after(f->j, max - 10, NULL, 0, collect_event, &c, &last, &err), 0);
    assert_int_equal(c.n, 10);
    assert_int_equal(last, max);
    kj_event e = ev_open("late", "late-session", T0);
    kj_append_result res;
    assert_int_equal(kj_journal_append(f->j, &e, 1, &res, &err), 0);
    c = (ev_collect){.ordered = 1};
    assert_int_equal(kj_journal_events_after(f->j, last, NULL, 0, collect_event, &c, &last, &err),
                     0);
    assert_int_equal(c.n, 1);
    assert_int_equal(last, max + 1);
}

static int count_cb(const char *key, int64_t open, int64_t closed, void *ud)
{
    int64_t *v = ud;
    if (key && !strcmp(key, "alice")) {
        v[0] = open;
        v[1] = closed;
    }
    v[2]++;
    return 0;
}

static void test_stats(void **state)
{
    fixture *f = *state;
    kj_err err = {0};
    kj_journal_stats st;
    assert_int_equal(kj_journal_stats_get(f->j, &st, &err), 0);
    assert_int_equal(st.sessions_closed, (NSESS + 2) / 3);
    assert_int_equal(st.sessions_open + st.sessions_closed, NSESS);
    assert_int_equal(st.events_open, NSESS);
    assert_int_equal(st.events_close, (NSESS + 2) / 3);
    assert_int_equal(st.oldest_ms, T0);
    assert_int_equal(st.newest_ms, T0 + 699500); /* the close of s0699 */
    assert_true(st.file_bytes > 0);
    int64_t v[3] = {0};
    assert_int_equal(kj_journal_count_by(f->j, "user", count_cb, v, &err), 0);
    assert_int_equal(v[0] + v[1], NSESS / 2);
    assert_int_equal(v[2], 2);
    assert_int_equal(kj_journal_count_by(f->j, "password", count_cb, v, &err), KJ_EINVAL);
}

static void test_prune(void **state)
{
    fixture *f = *state;
    kj_err err = {0};
    int64_t s = 0, e = 0;
    /* Sessions closed before s0300 closed: s0000, s0003, ..., s0297 = 100. */
    assert_int_equal(kj_journal_prune(f->j, T0 + 300000, &s, &e, &err), 0);
    assert_int_equal(s, 100);
    assert_int_equal(e, 200);
    session_seen seen = {0};
    assert_int_equal(kj_journal_session_get(f->j, "s0000", copy_session, &seen, &err), KJ_ENOENT);
    assert_int_equal(kj_journal_session_get(f->j, "s0001", copy_session, &seen, &err), 0);
    kj_journal_stats st;
    assert_int_equal(kj_journal_stats_get(f->j, &st, &err), 0);
    assert_int_equal(st.sessions_open + st.sessions_closed, NSESS - 100);
    int64_t problems = -1;
    if (kj_journal_verify(f->j, NULL, NULL, &problems, &err))
        fail_msg("verify after prune: %s", err.msg);
    /* A pruned event id is forgotten: the journal keeps no tombstones. */
    assert_int_equal(kj_journal_prune(f->j, T0 + 300000, &s, &e, &err), 0);
    assert_int_equal(s, 0);
}

static void test_backup(void **state)
{
    fixture *f = *state;
    kj_err err = {0};
    char *copy = path_in(f->dir, "copy.db");
    assert_int_equal(kj_journal_backup(f->j, copy, &err), 0);
    assert_int_equal(kj_journal_backup(f->j, copy, &err), KJ_EINVAL);
    assert_non_null(strstr(err.msg, "already exists"));
    kj_journal *b = NULL;
    assert_int_equal(kj_journal_open(copy, KJ_JOURNAL_READONLY, &b, &err), 0);
    collect c = sessions(b, (kj_session_filter){0});
    assert_int_equal(c.n, NSESS);
    assert_int_equal(kj_journal_verify(b, NULL, NULL, NULL, &err), 0);
    kj_journal_close(b);
    free(copy);
}

static int list_problem(const char *p, void *ud)
{
    char *buf = ud;
    size_t n = strlen(buf);
    snprintf(buf + n, 2048 - n, "%s\n", p);
    return 0;
}

/* verify names what a hand edit broke. */
static void test_verify_finds_tampering(void **state)
{
    fixture *f = *state;
    kj_err err = {0};
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "UPDATE sessions SET state = 1, closed_ms = 0 WHERE"
                                  " session_id = 's0003';"
                                  "PRAGMA foreign_keys = OFF;"
                                  "INSERT INTO events (event_id, session, type, time_ms,"
                                  " recorded_ms) VALUES ('orphan', 999999, 1, 1, 1)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    char buf[2048] = "";
    int64_t problems = 0;
    assert_int_equal(kj_journal_verify(f->j, list_problem, buf, &problems, &err), KJ_ECORRUPT);
    assert_true(problems >= 3);
    assert_non_null(strstr(buf, "s0003"));
    assert_non_null(strstr(buf, "orphan"));
    assert_non_null(strstr(buf, "count state/all"));
}

typedef struct action_seen {
    int n;
    char last_action[32], last_result[32];
} action_seen;

static int collect_action(const kj_action *a, void *ud)
{
    action_seen *s = ud;
    s->n++;
    snprintf(s->last_action, sizeof s->last_action, "%s", a->action);
    snprintf(s->last_result, sizeof s->last_result, "%s", a->result);
    return 0;
}

static int collect_run(const kj_run *r, void *ud)
{
    kj_run *out = ud;
    *out = *r;
    out->trigger = out->status = NULL; /* not kept past the call */
    return strcmp(r->status, "converged") ? 1 : 0;
}

static void test_audit(void **state)
{
    fixture *f = *state;
    kj_err err = {0};
    int64_t run = 0;
    assert_int_equal(kj_journal_run_begin(f->j, "recovery", 0, &run, &err), 0);
    kj_action a = {.run_id = run,
                   .namespace_ = "kyuubi",
                   .pod = "driver-e3",
                   .uid = "u-1",
                   .engine_tag = "e3",
                   .action = "release_finalizer",
                   .reason = "all closed",
                   .result = "ok",
                   .http_code = 200};
    assert_int_equal(kj_journal_action_record(f->j, &a, &err), 0);
    a.action = "delete";
    assert_int_equal(kj_journal_action_record(f->j, &a, &err), 0);
    a.engine_tag = "e9";
    a.pod = "driver-e9";
    assert_int_equal(kj_journal_action_record(f->j, &a, &err), 0);
    assert_int_equal(kj_journal_run_end(f->j, run, "converged", 10, 3, 0, &err), 0);

    action_seen s = {0};
    kj_action_filter af = {.run_id = run};
    assert_int_equal(kj_journal_actions(f->j, &af, collect_action, &s, &err), 0);
    assert_int_equal(s.n, 3);
    s = (action_seen){0};
    af = (kj_action_filter){.session_id = "s0031"}; /* engine e3 */
    assert_int_equal(kj_journal_actions(f->j, &af, collect_action, &s, &err), 0);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.last_action, "delete");
    kj_run r = {0};
    assert_int_equal(kj_journal_runs(f->j, 10, 1, collect_run, &r, &err), 0);
    assert_int_equal(r.id, run);
    assert_int_equal(r.actions_ok, 3);
    assert_true(r.finished_ms >= r.started_ms);

    int64_t first = 0;
    assert_int_equal(kj_journal_pod_terminal_since(f->j, "u-1", 1000, &first, &err), 0);
    assert_int_equal(first, 1000);
    assert_int_equal(kj_journal_pod_terminal_since(f->j, "u-1", 5000, &first, &err), 0);
    assert_int_equal(first, 1000);
}

typedef struct pod_match {
    int n;
} pod_match;

static int count_pod_session(const kj_session *s, void *ud)
{
    (void)s;
    ((pod_match *)ud)->n++;
    return 0;
}

static void test_sessions_of_pod(void **state)
{
    fixture *f = *state;
    kj_err err = {0};
    pod_match m = {0};
    assert_int_equal(kj_journal_sessions_of_pod(f->j, "e2", NULL, count_pod_session, &m, &err), 0);
    assert_int_equal(m.n, 10);
    m.n = 0;
    /* By app id (sessions 0, 20, 40, ...) or by tag e0 (0..9): 35 + 9. */
    assert_int_equal(
        kj_journal_sessions_of_pod(f->j, "e0", "spark-app-0", count_pod_session, &m, &err), 0);
    assert_int_equal(m.n, NSESS / 20 + 9);
    m.n = 0;
    assert_int_equal(kj_journal_sessions_of_pod(f->j, NULL, NULL, count_pod_session, &m, &err), 0);
    assert_int_equal(m.n, 0);
}

/* kj_grow: doubles from 16, keeps the array whole when it cannot grow. */
static void test_grow(void **state)
{
    (void)state;
    int *a = NULL;
    size_t cap = 0;
    assert_int_equal(kj_grow((void **)&a, &cap, 1, sizeof *a), 0);
    assert_int_equal(cap, 16);
    a[0] = 7;
    assert_int_equal(kj_grow((void **)&a, &cap, 16, sizeof *a), 0);
    assert_int_equal(cap, 16);
    assert_int_equal(kj_grow((void **)&a, &cap, 17, sizeof *a), 0);
    assert_int_equal(cap, 32);
    assert_int_equal(kj_grow((void **)&a, &cap, 100, sizeof *a), 0);
    assert_int_equal(cap, 128);
    assert_int_equal(a[0], 7);
    int *before = a;
    assert_int_equal(kj_grow((void **)&a, &cap, SIZE_MAX / 2, sizeof *a), KJ_ENOMEM);
    assert_ptr_equal(a, before);
    assert_int_equal(cap, 128);
    assert_int_equal(a[0], 7);
    free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grow),
        cmocka_unit_test_setup_teardown(test_session_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_callback_stops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_finds_tampering, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sessions_of_pod, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

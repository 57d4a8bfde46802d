/*
 * The session state machine, as a table: every (session state, event type)
 * pair, duplicates, out-of-order close-before-open and invalid events, each
 * run through kj_journal_append on a fresh journal.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "testutil.h"

#define LONG_ID                                                                                    \
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"                    \
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"

#define O KJ_EVENT_SESSION_OPEN
#define C KJ_EVENT_SESSION_CLOSE

typedef struct step {
    const char *event_id;
    int type;
    int64_t t;
    const char *engine_id;
} step;

typedef struct row {
    const char *name;
    step setup[3]; /* applied first, each must be stored */
    step ev;       /* the event under test */
    kj_append_status want;
    const char *want_code;       /* on rejection */
    kj_session_state want_state; /* of session "s" afterwards (NONE: absent) */
    int64_t want_events;         /* events of session "s" afterwards */
    const char *want_engine_id;  /* NULL: don't check */
} row;

static const row rows[] = {
    {"none + open creates it open",
     {{0}},
     {"e1", O, T0, NULL},
     KJ_APPEND_STORED,
     NULL,
     KJ_SESSION_OPEN,
     1,
     NULL},
    {"none + close creates it closed",
     {{0}},
     {"e1", C, T0, NULL},
     KJ_APPEND_STORED,
     NULL,
     KJ_SESSION_CLOSED,
     1,
     NULL},
    {"open + open learns the engine id",
     {{"e1", O, T0, NULL}},
     {"e2", O, T0 + 5, "spark-1"},
     KJ_APPEND_STORED,
     NULL,
     KJ_SESSION_OPEN,
     2,
     "spark-1"},
    {"open + open keeps what it knew",
     {{"e1", O, T0, "spark-1"}},
     {"e2", O, T0 + 5, NULL},
     KJ_APPEND_STORED,
     NULL,
     KJ_SESSION_OPEN,
     2,
     "spark-1"},
    {"open + close closes it",
     {{"e1", O, T0, NULL}},
     {"e2", C, T0 + 9, NULL},
     KJ_APPEND_STORED,
     NULL,
     KJ_SESSION_CLOSED,
     2,
     NULL},
    {"closed + open is rejected",
     {{"e1", O, T0, NULL}, {"e2", C, T0 + 9, NULL}},
     {"e3", O, T0 + 10, NULL},
     KJ_APPEND_REJECTED,
     "session_closed",
     KJ_SESSION_CLOSED,
     2,
     NULL},
    {"closed + close is stored and stays closed",
     {{"e1", O, T0, NULL}, {"e2", C, T0 + 9, NULL}},
     {"e3", C, T0 + 10, NULL},
     KJ_APPEND_STORED,
     NULL,
     KJ_SESSION_CLOSED,
     3,
     NULL},
    {"close before open: the late open is rejected",
     {{"e2", C, T0 + 9, NULL}},
     {"e1", O, T0, NULL},
     KJ_APPEND_REJECTED,
     "session_closed",
     KJ_SESSION_CLOSED,
     1,
     NULL},
    {"duplicate open while open",
     {{"e1", O, T0, NULL}},
     {"e1", O, T0, NULL},
     KJ_APPEND_DUPLICATE,
     NULL,
     KJ_SESSION_OPEN,
     1,
     NULL},
    {"duplicate close while closed",
     {{"e1", O, T0, NULL}, {"e2", C, T0 + 9, NULL}},
     {"e2", C, T0 + 9, NULL},
     KJ_APPEND_DUPLICATE,
     NULL,
     KJ_SESSION_CLOSED,
     2,
     NULL},
    {"retried open after close is a duplicate, not a rejection",
     {{"e1", O, T0, NULL}, {"e2", C, T0 + 9, NULL}},
     {"e1", O, T0, NULL},
     KJ_APPEND_DUPLICATE,
     NULL,
     KJ_SESSION_CLOSED,
     2,
     NULL},
    {"duplicate id with other content is still a duplicate",
     {{"e1", O, T0, NULL}},
     {"e1", C, T0 + 1, NULL},
     KJ_APPEND_DUPLICATE,
     NULL,
     KJ_SESSION_OPEN,
     1,
     NULL},
    {"missing event id",
     {{0}},
     {"", O, T0, NULL},
     KJ_APPEND_REJECTED,
     "missing_field",
     KJ_SESSION_NONE,
     0,
     NULL},
    {"event id too long",
     {{0}},
     {LONG_ID, O, T0, NULL},
     KJ_APPEND_REJECTED,
     "field_too_long",
     KJ_SESSION_NONE,
     0,
     NULL},
    {"time before 2000",
     {{0}},
     {"e1", O, 1000, NULL},
     KJ_APPEND_REJECTED,
     "bad_time",
     KJ_SESSION_NONE,
     0,
     NULL},
    {"time after 2099",
     {{0}},
     {"e1", O, KJ_EVENT_TIME_MAX, NULL},
     KJ_APPEND_REJECTED,
     "bad_time",
     KJ_SESSION_NONE,
     0,
     NULL},
    {"unknown type",
     {{0}},
     {"e1", 7, T0, NULL},
     KJ_APPEND_REJECTED,
     "bad_type",
     KJ_SESSION_NONE,
     0,
     NULL},
    {"rejected event leaves the session untouched",
     {{"e1", O, T0, "spark-1"}},
     {"e2", O, 5, "spark-2"},
     KJ_APPEND_REJECTED,
     "bad_time",
     KJ_SESSION_OPEN,
     1,
     "spark-1"},
};

static kj_event to_event(const step *s)
{
    kj_event e = {.event_id = s->event_id,
                  .type = (kj_event_type)s->type,
                  .session_id = "s",
                  .user = "alice",
                  .time_ms = s->t,
                  .engine_id = s->engine_id,
                  .reason = s->type == C ? "client" : NULL};
    return e;
}

static void test_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const row *r = &rows[i];
        char *dir = test_dir(), *path = path_in(dir, "j.db");
        kj_journal *j = NULL;
        kj_err err = {0};
        assert_int_equal(kj_journal_open(path, 0, &j, &err), 0);
        for (int k = 0; k < 3 && r->setup[k].event_id; k++) {
            kj_event e = to_event(&r->setup[k]);
            kj_append_result res;
            assert_int_equal(kj_journal_append(j, &e, 1, &res, &err), 0);
            if (res.status != KJ_APPEND_STORED)
                fail_msg("row '%s': setup event %d not stored: %s", r->name, k, res.message);
        }
        kj_event e = to_event(&r->ev);
        kj_append_result res;
        assert_int_equal(kj_journal_append(j, &e, 1, &res, &err), 0);
        if (res.status != r->want)
            fail_msg("row '%s': status %d, want %d (%s)", r->name, res.status, r->want,
                     res.message);
        if (r->want_code && (!res.code || strcmp(res.code, r->want_code)))
            fail_msg("row '%s': code %s, want %s", r->name, res.code ? res.code : "(none)",
                     r->want_code);
        if (r->want == KJ_APPEND_REJECTED && !res.message[0])
            fail_msg("row '%s': a rejection without a message", r->name);

        session_seen seen = {0};
        int rc = kj_journal_session_get(j, "s", copy_session, &seen, &err);
        if (r->want_state == KJ_SESSION_NONE) {
            if (rc != KJ_ENOENT)
                fail_msg("row '%s': session exists after a rejected first event", r->name);
        } else {
            assert_int_equal(rc, 0);
            if (seen.state != r->want_state || seen.event_count != r->want_events)
                fail_msg("row '%s': state %d with %lld events, want %d with %lld", r->name,
                         seen.state, (long long)seen.event_count, r->want_state,
                         (long long)r->want_events);
            if (r->want_engine_id && strcmp(seen.engine_id, r->want_engine_id))
                fail_msg("row '%s': engine id '%s', want '%s'", r->name, seen.engine_id,
                         r->want_engine_id);
        }
        int64_t problems = -1;
        if (kj_journal_verify(j, NULL, NULL, &problems, &err) != 0)
            fail_msg("row '%s': verify: %s", r->name, err.msg);
        kj_journal_close(j);
        free(path);
        rm_tree(dir);
    }
}

/* The pure function agrees with the table above, and never accepts an open after close. */
static void test_next(void **state)
{
    (void)state;
    const char *code = NULL;
    assert_int_equal(kj_session_next(KJ_SESSION_NONE, O, &code), KJ_SESSION_OPEN);
    assert_int_equal(kj_session_next(KJ_SESSION_NONE, C, &code), KJ_SESSION_CLOSED);
    assert_int_equal(kj_session_next(KJ_SESSION_OPEN, O, &code), KJ_SESSION_OPEN);
    assert_int_equal(kj_session_next(KJ_SESSION_OPEN, C, &code), KJ_SESSION_CLOSED);
    assert_int_equal(kj_session_next(KJ_SESSION_CLOSED, C, &code), KJ_SESSION_CLOSED);
    assert_int_equal(kj_session_next(KJ_SESSION_CLOSED, O, &code), KJ_SESSION_NONE);
    assert_string_equal(code, "session_closed");
}

/* In one batch: a rejected event changes nothing, the others land, and a
 * duplicate inside the batch is seen as one. */
static void test_batch_mixed(void **state)
{
    (void)state;
    char *dir = test_dir(), *path = path_in(dir, "j.db");
    kj_journal *j = NULL;
    kj_err err = {0};
    assert_int_equal(kj_journal_open(path, 0, &j, &err), 0);
    kj_event evs[5] = {ev_open("a1", "a", T0), ev_open("bad", "b", 3), ev_open("a1", "a", T0),
                       ev_close("a2", "a", T0 + 10), ev_open("a3", "a", T0 + 20)};
    kj_append_result res[5];
    assert_int_equal(kj_journal_append(j, evs, 5, res, &err), 0);
    assert_int_equal(res[0].status, KJ_APPEND_STORED);
    assert_int_equal(res[1].status, KJ_APPEND_REJECTED);
    assert_int_equal(res[2].status, KJ_APPEND_DUPLICATE);
    assert_int_equal(res[3].status, KJ_APPEND_STORED);
    assert_int_equal(res[4].status, KJ_APPEND_REJECTED);
    assert_string_equal(res[4].code, "session_closed");
    session_seen seen = {0};
    assert_int_equal(kj_journal_session_get(j, "b", copy_session, &seen, &err), KJ_ENOENT);
    assert_int_equal(kj_journal_session_get(j, "a", copy_session, &seen, &err), 0);
    assert_int_equal(seen.state, KJ_SESSION_CLOSED);
    assert_int_equal(seen.event_count, 2);
    assert_int_equal(seen.closed_ms, T0 + 10);
    assert_string_equal(seen.close_reason, "client");
    kj_journal_stats st;
    assert_int_equal(kj_journal_stats_get(j, &st, &err), 0);
    assert_int_equal(st.sessions_closed, 1);
    assert_int_equal(st.sessions_open, 0);
    assert_int_equal(st.events_open + st.events_close, 2);
    assert_int_equal(kj_journal_verify(j, NULL, NULL, NULL, &err), 0);
    kj_journal_close(j);
    free(path);
    rm_tree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_next),
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_batch_mixed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

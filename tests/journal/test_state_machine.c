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

typedef struct totals {
    char keys[8][32];
    int64_t open[8], closed[8];
    int n;
} totals;

static int collect_totals(const char *key, int64_t open, int64_t closed, void *ud)
{
    totals *t = ud;
    if (t->n < 8) {
        snprintf(t->keys[t->n], sizeof t->keys[0], "%s", key ? key : "(none)");
        t->open[t->n] = open;
        t->closed[t->n] = closed;
        t->n++;
    }
    return 0;
}

/* Appends evs one by one (each must be stored), then checks that the only
 * total by dim is key with open/closed sessions, and that verify is clean. */
static void check_totals(const kj_event *evs, size_t n, const char *dim, const char *key,
                         int64_t open, int64_t closed)
{
    char *dir = test_dir(), *path = path_in(dir, "j.db");
    kj_journal *j = NULL;
    kj_err err = {0};
    assert_int_equal(kj_journal_open(path, 0, &j, &err), 0);
    for (size_t i = 0; i < n; i++) {
        kj_append_result res;
        assert_int_equal(kj_journal_append(j, &evs[i], 1, &res, &err), 0);
        assert_int_equal(res.status, KJ_APPEND_STORED);
    }
    totals t = {0};
    assert_int_equal(kj_journal_count_by(j, dim, collect_totals, &t, &err), 0);
    assert_int_equal(t.n, 1);
    assert_string_equal(t.keys[0], key);
    assert_int_equal(t.open[0], open);
    assert_int_equal(t.closed[0], closed);
    if (kj_journal_verify(j, NULL, NULL, NULL, &err))
        fail_msg("verify: %s", err.msg);
    kj_journal_close(j);
    free(path);
    rm_tree(dir);
}

/* Issue 10 item 3: a session's user or instance learnt or changed by a later
 * event moves its totals with it ("bob -1 open" before). */
static void test_totals_follow_user_and_instance(void **state)
{
    (void)state;
    kj_event a[2] = {ev_open("a1", "s", T0), ev_close("a2", "s", T0 + 10)};
    a[0].user = NULL;
    a[1].user = "alice";
    check_totals(a, 2, "user", "alice", 0, 1);

    kj_event b[3] = {ev_open("b1", "s", T0), ev_open("b2", "s", T0 + 5),
                     ev_close("b3", "s", T0 + 10)};
    b[1].user = "bob";
    check_totals(b, 3, "user", "bob", 0, 1);
    check_totals(b, 2, "user", "bob", 1, 0);

    kj_event c[3] = {ev_open("c1", "s", T0), ev_open("c2", "s", T0 + 5),
                     ev_close("c3", "s", T0 + 10)};
    c[0].instance = NULL;
    c[1].instance = "10.0.0.2:10009";
    c[2].instance = "10.0.0.3:10009";
    check_totals(c, 3, "instance", "10.0.0.3:10009", 0, 1);

    /* A closed session that learns its user. */
    kj_event d[2] = {ev_close("d1", "s", T0), ev_close("d2", "s", T0 + 10)};
    d[1].user = "carol";
    check_totals(d, 2, "user", "carol", 0, 1);
}

static kj_append_result append1(kj_journal *j, kj_event e)
{
    kj_append_result res;
    kj_err err = {0};
    assert_int_equal(kj_journal_append(j, &e, 1, &res, &err), 0);
    return res;
}

/* Issue 10 item 5: the publisher's clock cannot end a grace period early
 * (a close before its session's open) or hold it forever (a time ahead of
 * the journal's clock); old events replayed after an outage stay valid. */
static void test_publisher_time(void **state)
{
    (void)state;
    char *dir = test_dir(), *path = path_in(dir, "j.db");
    kj_journal *j = NULL;
    kj_err err = {0};
    assert_int_equal(kj_journal_open(path, 0, &j, &err), 0);
    int64_t now = kj_now_ms();

    assert_int_equal(append1(j, ev_open("o", "s", now)).status, KJ_APPEND_STORED);
    kj_append_result r = append1(j, ev_close("c2000", "s", 946684800000LL));
    assert_int_equal(r.status, KJ_APPEND_REJECTED);
    assert_string_equal(r.code, "close_before_open");
    assert_non_null(strstr(r.message, "time_ms"));
    assert_non_null(strstr(r.message, "2000-01-01T00:00:00.000Z"));
    r = append1(j, ev_close("c2099", "s", 4070908800000LL)); /* 2099-01-01 */
    assert_int_equal(r.status, KJ_APPEND_REJECTED);
    assert_string_equal(r.code, "time_in_future");
    assert_non_null(strstr(r.message, "time_ms"));
    r = append1(j, ev_open("o-late", "s", now + KJ_EVENT_CLOCK_SKEW_MS + 60000));
    assert_int_equal(r.status, KJ_APPEND_REJECTED);
    assert_string_equal(r.code, "time_in_future");
    session_seen seen = {0};
    assert_int_equal(kj_journal_session_get(j, "s", copy_session, &seen, &err), 0);
    assert_int_equal(seen.state, KJ_SESSION_OPEN);
    assert_int_equal(seen.event_count, 1);

    /* A rejected first event creates no session. */
    r = append1(j, ev_close("f", "future", now + 3600 * 1000));
    assert_string_equal(r.code, "time_in_future");
    assert_int_equal(kj_journal_session_get(j, "future", copy_session, &seen, &err), KJ_ENOENT);

    /* Within the skew, and at the open's own time: stored. */
    assert_int_equal(append1(j, ev_close("c", "s", now + 60000)).status, KJ_APPEND_STORED);
    kj_event o2 = ev_open("o2", "t", now), c2 = ev_close("c2", "t", now);
    assert_int_equal(append1(j, o2).status, KJ_APPEND_STORED);
    assert_int_equal(append1(j, c2).status, KJ_APPEND_STORED);

    /* A replay of a day-old session, close first: stored; its late open is
     * still refused as before (session_closed); a retry is a duplicate. */
    int64_t day = 24 * 3600 * 1000LL;
    assert_int_equal(append1(j, ev_close("old-c", "old", now - day + 600000)).status,
                     KJ_APPEND_STORED);
    assert_string_equal(append1(j, ev_open("old-o", "old", now - day)).code, "session_closed");
    assert_int_equal(append1(j, ev_close("old-c", "old", now - day + 600000)).status,
                     KJ_APPEND_DUPLICATE);
    /* A retried close whose id is stored is a duplicate even with a time
     * that would be rejected now. */
    assert_int_equal(append1(j, ev_close("old-c", "old", 946684800000LL)).status,
                     KJ_APPEND_DUPLICATE);
    assert_int_equal(kj_journal_verify(j, NULL, NULL, NULL, &err), 0);
    kj_journal_close(j);
    free(path);
    rm_tree(dir);
}

/* --- server restarts (issue 12) --- */

#define KA "10.0.0.1:10009" /* ev_open's instance */
#define KB "10.0.0.2:10009"

static kj_event typed_open(const char *id, const char *session, int64_t t, const char *type)
{
    kj_event e = ev_open(id, session, t);
    e.session_type = type;
    return e;
}

static kj_event server(const char *id, kj_event_type type, const char *instance, int64_t t)
{
    kj_event e = {.event_id = id, .type = type, .instance = instance, .time_ms = t};
    return e;
}

static session_seen seen_of(kj_journal *j, const char *session)
{
    session_seen seen = {0};
    kj_err err = {0};
    assert_int_equal(kj_journal_session_get(j, session, copy_session, &seen, &err), 0);
    return seen;
}

static void verify_clean(kj_journal *j)
{
    kj_err err = {0};
    if (kj_journal_verify(j, NULL, NULL, NULL, &err))
        fail_msg("verify: %s", err.msg);
}

/* Schema 5: an event id is unique within its session. A retry names the
 * event's session and is a duplicate, even after the session closed; the
 * same id in another session is another event. */
static void test_event_id_scope(void **state)
{
    (void)state;
    char *dir = test_dir(), *path = path_in(dir, "j.db");
    kj_journal *j = NULL;
    kj_err err = {0};
    assert_int_equal(kj_journal_open(path, 0, &j, &err), 0);
    assert_int_equal(append1(j, ev_open("x", "s1", T0)).status, KJ_APPEND_STORED);
    assert_int_equal(append1(j, ev_open("x", "s2", T0)).status, KJ_APPEND_STORED);
    assert_int_equal(append1(j, ev_open("x", "s1", T0)).status, KJ_APPEND_DUPLICATE);
    assert_int_equal(append1(j, ev_close("y", "s1", T0 + 10)).status, KJ_APPEND_STORED);
    /* closed: a new open is refused, but a retry of a stored one is not */
    assert_int_equal(append1(j, ev_open("x", "s1", T0)).status, KJ_APPEND_DUPLICATE);
    assert_int_equal(append1(j, ev_open("z", "s1", T0)).status, KJ_APPEND_REJECTED);
    /* a retry whose time the journal now refuses is still a duplicate */
    assert_int_equal(append1(j, ev_close("y", "s1", T0 - 10)).status, KJ_APPEND_DUPLICATE);
    assert_int_equal(append1(j, ev_close("y", "s2", T0 + 20)).status, KJ_APPEND_STORED);
    /* both in one batch: the second is the first's duplicate */
    kj_event b[2] = {ev_open("w", "s3", T0), ev_open("w", "s3", T0)};
    kj_append_result res[2];
    assert_int_equal(kj_journal_append(j, b, 2, res, &err), 0);
    assert_int_equal(res[0].status, KJ_APPEND_STORED);
    assert_int_equal(res[1].status, KJ_APPEND_DUPLICATE);
    assert_int_equal(seen_of(j, "s1").event_count, 2);
    assert_int_equal(seen_of(j, "s2").event_count, 2);
    assert_int_equal(seen_of(j, "s3").event_count, 1);
    verify_clean(j);
    kj_journal_close(j);
    free(path);
    rm_tree(dir);
}

/* A start of A closes A's open interactive sessions created before it, and
 * nothing else; a replay changes nothing; a stop closes nothing. */
static void test_server_restart(void **state)
{
    (void)state;
    char *dir = test_dir(), *path = path_in(dir, "j.db");
    kj_journal *j = NULL;
    kj_err err = {0};
    assert_int_equal(kj_journal_open(path, 0, &j, &err), 0);
    kj_event evs[] = {
        typed_open("i1", "i1", T0, "interactive"),
        typed_open("i2", "i2", T0 + 100, "interactive"), /* after the start */
        typed_open("b1", "b1", T0, "batch"),
        ev_open("u1", "u1", T0), /* type unknown */
        typed_open("o1", "o1", T0, "interactive"),
        typed_open("c1", "c1", T0, "interactive"),
        ev_close("c1-close", "c1", T0 + 10),
    };
    evs[4].instance = KB;
    kj_append_result res[8];
    assert_int_equal(kj_journal_append(j, evs, 7, res, &err), 0);

    assert_int_equal(append1(j, server("stop", KJ_EVENT_SERVER_STOP, KA, T0 + 40)).status,
                     KJ_APPEND_STORED);
    assert_int_equal(seen_of(j, "i1").state, KJ_SESSION_OPEN);
    assert_int_equal(append1(j, server("start", KJ_EVENT_SERVER_START, KA, T0 + 50)).status,
                     KJ_APPEND_STORED);
    session_seen i1 = seen_of(j, "i1");
    assert_int_equal(i1.state, KJ_SESSION_CLOSED);
    assert_string_equal(i1.close_reason, "server_restarted");
    assert_true(i1.closed_ms == T0 + 50);
    assert_int_equal(i1.event_count, 2);
    assert_int_equal(seen_of(j, "i2").state, KJ_SESSION_OPEN);
    assert_int_equal(seen_of(j, "b1").state, KJ_SESSION_OPEN);
    assert_int_equal(seen_of(j, "u1").state, KJ_SESSION_OPEN);
    assert_int_equal(seen_of(j, "o1").state, KJ_SESSION_OPEN);
    session_seen c1 = seen_of(j, "c1");
    assert_string_equal(c1.close_reason, "client");
    assert_int_equal(c1.event_count, 2);
    verify_clean(j);

    /* Replays: duplicates, nothing changes. */
    kj_journal_stats before, after;
    assert_int_equal(kj_journal_stats_get(j, &before, &err), 0);
    assert_int_equal(append1(j, server("start", KJ_EVENT_SERVER_START, KA, T0 + 50)).status,
                     KJ_APPEND_DUPLICATE);
    assert_int_equal(append1(j, server("stop", KJ_EVENT_SERVER_STOP, KA, T0 + 40)).status,
                     KJ_APPEND_DUPLICATE);
    /* Server event ids are their own: one a session event uses is another event. */
    assert_int_equal(append1(j, server("i2", KJ_EVENT_SERVER_STOP, KA, T0 + 60)).status,
                     KJ_APPEND_STORED);
    assert_int_equal(kj_journal_stats_get(j, &after, &err), 0);
    assert_int_equal(after.events_close, before.events_close);
    assert_int_equal(after.sessions_open, before.sessions_open);
    assert_int_equal(seen_of(j, "i2").state, KJ_SESSION_OPEN);

    /* A later start of B closes o1 only. */
    assert_int_equal(append1(j, server("startB", KJ_EVENT_SERVER_START, KB, T0 + 60)).status,
                     KJ_APPEND_STORED);
    assert_string_equal(seen_of(j, "o1").close_reason, "server_restarted");
    assert_int_equal(seen_of(j, "i2").state, KJ_SESSION_OPEN);

    /* Server events are checked like any: a start in the future, a start
     * that names a session. */
    kj_append_result r =
        append1(j, server("future", KJ_EVENT_SERVER_START, KA, kj_now_ms() + 3600 * 1000));
    assert_string_equal(r.code, "time_in_future");
    kj_event bad = server("named", KJ_EVENT_SERVER_START, KA, T0 + 70);
    bad.session_id = "i2";
    assert_string_equal(append1(j, bad).code, "unexpected_field");
    bad = server("noinstance", KJ_EVENT_SERVER_START, NULL, T0 + 70);
    assert_string_equal(append1(j, bad).code, "missing_field");
    assert_int_equal(seen_of(j, "i2").state, KJ_SESSION_OPEN);
    verify_clean(j);
    kj_journal_close(j);
    free(path);
    rm_tree(dir);
}

/*
 * The lines of one server reach the journal in any order (the session file
 * and the server-info file are read apart, and a shipper replays after a
 * crash): every order of these events ends in the same sessions, and verify
 * is clean after each step.
 */
typedef struct final_state {
    session_seen s[3];
} final_state;

static void run_order(const kj_event *evs, const int *order, int n, final_state *out)
{
    char *dir = test_dir(), *path = path_in(dir, "j.db");
    kj_journal *j = NULL;
    kj_err err = {0};
    assert_int_equal(kj_journal_open(path, 0, &j, &err), 0);
    for (int i = 0; i < n; i++) {
        kj_append_result r = append1(j, evs[order[i]]);
        if (r.status != KJ_APPEND_STORED && r.status != KJ_APPEND_DUPLICATE)
            fail_msg("event %s rejected (%s: %s) at step %d", evs[order[i]].event_id, r.code,
                     r.message, i);
        verify_clean(j);
    }
    const char *ids[3] = {"s", "t", "b"};
    for (int k = 0; k < 3; k++)
        out->s[k] = seen_of(j, ids[k]);
    kj_journal_close(j);
    free(path);
    rm_tree(dir);
}

static int next_permutation(int *a, int n)
{
    int i = n - 2;
    while (i >= 0 && a[i] >= a[i + 1])
        i--;
    if (i < 0)
        return 0;
    int k = n - 1;
    while (a[k] <= a[i])
        k--;
    int x = a[i];
    a[i] = a[k];
    a[k] = x;
    for (int l = i + 1, r = n - 1; l < r; l++, r--) {
        x = a[l];
        a[l] = a[r];
        a[r] = x;
    }
    return 1;
}

static void test_restart_any_order(void **state)
{
    (void)state;
    /* s: created, opened, closed by its client before the restart;
     * t: created, opened, never closed (the restart ends it);
     * b: a batch session, which outlives the restart. */
    kj_event evs[] = {
        typed_open("s:created", "s", T0, "interactive"),
        typed_open("s:opened", "s", T0 + 10, "interactive"),
        ev_close("s:closed", "s", T0 + 20),
        typed_open("t:created", "t", T0 + 5, "interactive"),
        typed_open("t:opened", "t", T0 + 15, "interactive"),
        typed_open("b:created", "b", T0 + 1, "batch"),
        server("start", KJ_EVENT_SERVER_START, KA, T0 + 30),
    };
    evs[1].engine_id = "spark-s";
    evs[4].engine_id = "spark-t";
    int n = 7, order[7];
    for (int i = 0; i < n; i++)
        order[i] = i;
    final_state first, got;
    run_order(evs, order, n, &first);
    assert_string_equal(first.s[0].close_reason, "client");
    assert_true(first.s[0].closed_ms == T0 + 20);
    assert_string_equal(first.s[1].close_reason, "server_restarted");
    assert_true(first.s[1].closed_ms == T0 + 30);
    assert_string_equal(first.s[1].engine_id, "spark-t");
    assert_int_equal(first.s[2].state, KJ_SESSION_OPEN);
    /* Each session's own lines come in their order (one file, appended in
     * order; an open after its own close is refused with or without a
     * restart); the start and the batch session go anywhere: 420 orders,
     * every 10th is tried. */
    int count = 0;
    while (next_permutation(order, n)) {
        int pos[7];
        for (int i = 0; i < n; i++)
            pos[order[i]] = i;
        if (pos[0] > pos[1] || pos[1] > pos[2] || pos[3] > pos[4])
            continue;
        if (++count % 10)
            continue;
        run_order(evs, order, n, &got);
        for (int k = 0; k < 3; k++) {
            session_seen *a = &first.s[k], *b = &got.s[k];
            /* The one difference allowed: when the start came before s's
             * own close, the restart's close of s stays as an event of it. */
            int extra = k == 0 && b->event_count == a->event_count + 1;
            if (a->state != b->state || a->closed_ms != b->closed_ms ||
                (a->event_count != b->event_count && !extra) ||
                strcmp(a->close_reason, b->close_reason) || strcmp(a->engine_id, b->engine_id))
                fail_msg("order %d%d%d%d%d%d%d: session %d ends %d/%lld/%s/%lld, not "
                         "%d/%lld/%s/%lld",
                         order[0], order[1], order[2], order[3], order[4], order[5], order[6], k,
                         b->state, (long long)b->closed_ms, b->close_reason,
                         (long long)b->event_count, a->state, (long long)a->closed_ms,
                         a->close_reason, (long long)a->event_count);
        }
    }
}

/* An open after the restart closed its session is refused, as any open of
 * a closed session: only the opens of its earlier life are taken. */
static void test_restart_later_open_refused(void **state)
{
    (void)state;
    char *dir = test_dir(), *path = path_in(dir, "j.db");
    kj_journal *j = NULL;
    kj_err err = {0};
    assert_int_equal(kj_journal_open(path, 0, &j, &err), 0);
    assert_int_equal(append1(j, server("start", KJ_EVENT_SERVER_START, KA, T0 + 30)).status,
                     KJ_APPEND_STORED);
    assert_int_equal(append1(j, typed_open("t1", "t", T0, "interactive")).status, KJ_APPEND_STORED);
    session_seen t = seen_of(j, "t");
    assert_int_equal(t.state, KJ_SESSION_CLOSED);
    assert_string_equal(t.close_reason, "server_restarted");
    assert_int_equal(t.event_count, 2);
    assert_string_equal(append1(j, typed_open("t2", "t", T0 + 31, "interactive")).code,
                        "session_closed");
    /* A session created after the start is not touched. */
    assert_int_equal(append1(j, typed_open("u1", "u", T0 + 31, "interactive")).status,
                     KJ_APPEND_STORED);
    assert_int_equal(seen_of(j, "u").state, KJ_SESSION_OPEN);
    verify_clean(j);
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
        cmocka_unit_test(test_totals_follow_user_and_instance),
        cmocka_unit_test(test_publisher_time),
        cmocka_unit_test(test_event_id_scope),
        cmocka_unit_test(test_server_restart),
        cmocka_unit_test(test_restart_any_order),
        cmocka_unit_test(test_restart_later_open_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

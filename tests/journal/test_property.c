/*
 * Property test: any sequence of events keeps the journal consistent.
 *
 * Thousands of random sequences (sessions whose user, instance, engine and
 * type change between events, duplicates, retries with other content, events
 * out of time order, closes before opens, times in the future, invalid
 * events, server starts that close interactive sessions of their instance,
 * before or after those sessions' events),
 * appended in random batches. After each sequence: kj_journal_verify() must
 * find nothing, and the totals (stats, counts by user and by instance) and
 * every session must equal what a model of the state machine, written here
 * independently of the journal, recounts.
 *
 * The seed is printed at the start and on failure; run again with
 * KJ_TEST_SEED=N to replay it. KJ_TEST_SEQUENCES=N changes how many
 * sequences run (default 4000).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <inttypes.h>
#include <time.h>

#include "testutil.h"

#define SEQ_PER_JOURNAL 250 /* sequences share a journal, so totals accumulate */
#define MAX_EVENTS 14       /* per sequence */
#define MAX_SESSIONS 3      /* per sequence */
#define MAX_MODEL (SEQ_PER_JOURNAL * MAX_SESSIONS)
#define MAX_KEYS 64

static uint64_t rng_state;
/* How often the restart rules applied, to show the sequences reach them. */
static int64_t restart_closes, late_closes, late_opens;

static uint64_t rnd(void)
{
    /* splitmix64: small, and every seed is a good one */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static int below(int n)
{
    return (int)(rnd() % (uint64_t)n);
}

/* --- the model ------------------------------------------------------------- */

typedef struct msession {
    char id[32];
    int exists;
    kj_session_state state;
    char user[16], instance[24];
    int64_t created_ms, updated_ms, events;
    char type[16];     /* of its first stored event with one */
    int64_t closed_ms; /* its earliest close */
    char reason[24];   /* of that close */
    int touched;       /* changed since the last check */
} msession;

typedef struct mtotal {
    char key[24];
    int64_t open, closed;
} mtotal;

typedef struct model {
    msession s[MAX_MODEL];
    int ns;
    char (*ids)[64]; /* stored event ids */
    int nids, capids;
    int64_t events_open, events_close;
    struct {
        char instance[24];
        int64_t t;
    } starts[MAX_MODEL];
    int nstarts;
} model;

static msession *model_session(model *m, const char *id)
{
    for (int i = 0; i < m->ns; i++)
        if (!strcmp(m->s[i].id, id))
            return &m->s[i];
    msession *s = &m->s[m->ns++];
    memset(s, 0, sizeof *s);
    snprintf(s->id, sizeof s->id, "%s", id);
    return s;
}

static int model_stored(const model *m, const char *event_id)
{
    for (int i = 0; i < m->nids; i++)
        if (!strcmp(m->ids[i], event_id))
            return 1;
    return 0;
}

static int present(const char *s)
{
    return s && *s;
}

static int valid(const kj_event *e)
{
    if (e->type == KJ_EVENT_SERVER_START)
        return present(e->event_id) && present(e->instance);
    return present(e->event_id) && present(e->session_id);
}

static void model_remember(model *m, const char *event_id)
{
    if (m->nids == m->capids) {
        m->capids = m->capids ? 2 * m->capids : 256;
        m->ids = realloc(m->ids, (size_t)m->capids * sizeof *m->ids);
        assert_non_null(m->ids);
    }
    snprintf(m->ids[m->nids++], sizeof m->ids[0], "%s", event_id);
}

/* A close of s at t with reason (stored), as the journal's update does it. */
static void model_close(model *m, msession *s, int64_t t, const char *reason)
{
    s->state = KJ_SESSION_CLOSED;
    if (!s->closed_ms || t < s->closed_ms) {
        s->closed_ms = t;
        snprintf(s->reason, sizeof s->reason, "%s", reason);
    }
    s->created_ms = t < s->created_ms ? t : s->created_ms;
    s->updated_ms = t > s->updated_ms ? t : s->updated_ms;
    s->events++;
    s->touched = 1;
    m->events_close++;
}

/* The restart's close of s at t (event kj:restarted:<id>). */
static void model_restart_close(model *m, msession *s, int64_t t)
{
    char id[64];
    snprintf(id, sizeof id, "kj:restarted:%s", s->id);
    model_remember(m, id);
    restart_closes++;
    model_close(m, s, t, "server_restarted");
}

/* After a stored event of s: the first known start of its instance after
 * its creation ends an open interactive session. */
static void model_after_restart(model *m, msession *s)
{
    if (s->state != KJ_SESSION_OPEN || strcmp(s->type, "interactive") || !s->instance[0])
        return;
    int64_t first = 0;
    for (int k = 0; k < m->nstarts; k++)
        if (!strcmp(m->starts[k].instance, s->instance) && m->starts[k].t > s->created_ms &&
            (!first || m->starts[k].t < first))
            first = m->starts[k].t;
    if (first) {
        late_closes++;
        model_restart_close(m, s, first);
    }
}

static kj_append_status model_server_start(model *m, const kj_event *e, int64_t now,
                                           const char **code)
{
    if (present(e->session_id) || present(e->user)) {
        *code = "unexpected_field";
        return KJ_APPEND_REJECTED;
    }
    if (model_stored(m, e->event_id))
        return KJ_APPEND_DUPLICATE;
    if (e->time_ms > now + KJ_EVENT_CLOCK_SKEW_MS) {
        *code = "time_in_future";
        return KJ_APPEND_REJECTED;
    }
    model_remember(m, e->event_id);
    assert_true(m->nstarts < MAX_MODEL);
    snprintf(m->starts[m->nstarts].instance, sizeof m->starts[0].instance, "%s", e->instance);
    m->starts[m->nstarts++].t = e->time_ms;
    for (int i = 0; i < m->ns; i++) {
        msession *s = &m->s[i];
        if (s->exists && s->state == KJ_SESSION_OPEN && !strcmp(s->type, "interactive") &&
            !strcmp(s->instance, e->instance) && s->created_ms < e->time_ms)
            model_restart_close(m, s, e->time_ms);
    }
    return KJ_APPEND_STORED;
}

/* The status the journal must give e, and its effect on the model. */
static kj_append_status model_apply(model *m, const kj_event *e, int64_t now, const char **code)
{
    *code = NULL;
    if (!valid(e)) {
        *code = "missing_field";
        return KJ_APPEND_REJECTED;
    }
    if (e->type == KJ_EVENT_SERVER_START)
        return model_server_start(m, e, now, code);
    if (model_stored(m, e->event_id))
        return KJ_APPEND_DUPLICATE;
    msession *s = model_session(m, e->session_id);
    int close = e->type == KJ_EVENT_SESSION_CLOSE;
    if (e->time_ms > now + KJ_EVENT_CLOCK_SKEW_MS) {
        *code = "time_in_future";
        return KJ_APPEND_REJECTED;
    }
    if (s->exists && close && e->time_ms < s->created_ms) {
        *code = "close_before_open";
        return KJ_APPEND_REJECTED;
    }
    /* The opens of a life a restart ended are taken, the session stays
     * closed. */
    int late = s->exists && !close && s->state == KJ_SESSION_CLOSED &&
               !strcmp(s->reason, "server_restarted") && e->time_ms < s->closed_ms;
    if (s->exists && !close && s->state == KJ_SESSION_CLOSED && !late) {
        *code = "session_closed";
        return KJ_APPEND_REJECTED;
    }
    late_opens += late;
    if (!s->exists) {
        s->exists = 1;
        s->created_ms = s->updated_ms = e->time_ms;
        s->state = KJ_SESSION_OPEN;
    }
    if (present(e->user))
        snprintf(s->user, sizeof s->user, "%s", e->user);
    if (present(e->instance))
        snprintf(s->instance, sizeof s->instance, "%s", e->instance);
    if (!s->type[0] && present(e->session_type))
        snprintf(s->type, sizeof s->type, "%s", e->session_type);
    model_remember(m, e->event_id);
    if (close) {
        model_close(m, s, e->time_ms, present(e->reason) ? e->reason : "unknown");
    } else {
        s->created_ms = e->time_ms < s->created_ms ? e->time_ms : s->created_ms;
        s->updated_ms = e->time_ms > s->updated_ms ? e->time_ms : s->updated_ms;
        s->events++;
        s->touched = 1;
        m->events_open++;
    }
    model_after_restart(m, s);
    return KJ_APPEND_STORED;
}

/* Totals by user (by_user) or instance, recounted from the model's sessions. */
static int model_totals(const model *m, int by_user, mtotal *t)
{
    int n = 0;
    for (int i = 0; i < m->ns; i++) {
        const msession *s = &m->s[i];
        if (!s->exists)
            continue;
        const char *key = by_user ? s->user : s->instance;
        int k = 0;
        while (k < n && strcmp(t[k].key, key))
            k++;
        if (k == n) {
            assert_true(n < MAX_KEYS);
            memset(&t[n], 0, sizeof t[n]);
            snprintf(t[n++].key, sizeof t[0].key, "%s", key);
        }
        t[k].open += s->state == KJ_SESSION_OPEN;
        t[k].closed += s->state == KJ_SESSION_CLOSED;
    }
    return n;
}

/* --- random sequences -------------------------------------------------------- */

typedef struct seq {
    kj_event ev[MAX_EVENTS];
    char ids[MAX_EVENTS][32], sessions[MAX_EVENTS][32], engines[MAX_EVENTS][24];
    int n;
} seq;

static const char *const users[] = {NULL, "", "alice", "bob", "carol"};
static const char *const instances[] = {NULL, "", "10.0.0.1:10009", "10.0.0.2:10009"};
static const char *const types[] = {NULL, "interactive", "interactive", "batch"};

static void seq_make(seq *q, int number, int64_t now)
{
    int nsess = 1 + below(MAX_SESSIONS);
    int64_t base = now - 3600 * 1000 - below(1000) * 1000LL;
    q->n = 1 + below(MAX_EVENTS);
    for (int i = 0; i < q->n; i++) {
        kj_event *e = &q->ev[i];
        int r = below(100);
        if (i > 0 && r < 12) {
            /* a retry: the same event again, or its id with other content */
            *e = q->ev[below(i)];
            if (r < 6) {
                e->type = below(2) ? KJ_EVENT_SESSION_OPEN : KJ_EVENT_SESSION_CLOSE;
                e->user = users[below(5)];
                e->time_ms += below(200) - 100;
            }
            continue;
        }
        snprintf(q->ids[i], sizeof q->ids[i], "q%d-e%d", number, i);
        snprintf(q->sessions[i], sizeof q->sessions[i], "q%d-s%d", number, below(nsess));
        snprintf(q->engines[i], sizeof q->engines[i], "spark-%d", below(4));
        int close = below(100) < 35;
        *e = (kj_event){
            .event_id = q->ids[i],
            .type = close ? KJ_EVENT_SESSION_CLOSE : KJ_EVENT_SESSION_OPEN,
            .session_id = q->sessions[i],
            .user = users[below(5)],
            .instance = instances[below(4)],
            .engine_id = below(2) ? q->engines[i] : NULL,
            .engine_tag = below(3) ? NULL : q->sessions[i],
            .engine_namespace = below(2) ? "kyuubi" : NULL,
            /* out of time order: anywhere in a ten-minute window */
            .time_ms = base + below(600) * 1000LL,
            .reason = close && below(4) ? "client" : NULL,
            .session_type = types[below(4)],
        };
        if (below(100) < 10) {
            /* a server start, somewhere in the window */
            *e = (kj_event){.event_id = q->ids[i],
                            .type = KJ_EVENT_SERVER_START,
                            .instance = instances[2 + below(2)],
                            .time_ms = base + below(600) * 1000LL};
            r = below(100);
            if (r < 3)
                e->session_id = q->sessions[i]; /* a server event names no session */
            else if (r < 6)
                e->time_ms = now + 3600 * 1000;
            continue;
        }
        r = below(100);
        if (r < 4)
            e->time_ms = now + 3600 * 1000; /* far ahead of the clock */
        else if (r < 8)
            e->time_ms = now + below(60) * 1000; /* ahead, within the skew */
        else if (r < 12)
            e->time_ms = base - 3600 * 1000; /* long before the others */
        else if (r < 14)
            e->session_id = NULL; /* invalid */
    }
}

static void seq_print(const seq *q, int64_t now)
{
    for (int i = 0; i < q->n; i++) {
        const kj_event *e = &q->ev[i];
        print_error("  %s %s session=%s type=%s user=%s instance=%s t=now%+" PRId64 "ms\n",
                    e->event_id, kj_event_type_name(e->type), e->session_id ? e->session_id : "-",
                    e->session_type ? e->session_type : "-", e->user ? e->user : "-",
                    e->instance ? e->instance : "-", e->time_ms - now);
    }
}

/* --- checking the journal against the model ---------------------------------- */

typedef struct seen_totals {
    mtotal t[MAX_KEYS];
    int n;
} seen_totals;

static int collect_total(const char *key, int64_t open, int64_t closed, void *ud)
{
    seen_totals *s = ud;
    assert_true(s->n < MAX_KEYS);
    snprintf(s->t[s->n].key, sizeof s->t[0].key, "%s", key ? key : "");
    s->t[s->n].open = open;
    s->t[s->n].closed = closed;
    s->n++;
    return 0;
}

static int problem_text(const char *p, void *ud)
{
    char *buf = ud;
    size_t n = strlen(buf);
    snprintf(buf + n, 4096 - n, "    %s\n", p);
    return 0;
}

/* Returns NULL when the journal agrees with the model, else what differs.
 * Sessions from index first on are compared one by one (the others belong to
 * earlier sequences and were compared then). */
static const char *check(kj_journal *j, const model *m, int first, char *why, size_t size)
{
    kj_err err = {0};
    char problems[4096] = "";
    if (kj_journal_verify(j, problem_text, problems, NULL, &err)) {
        snprintf(why, size, "verify: %s\n%s", err.msg, problems);
        return why;
    }
    kj_journal_stats st;
    assert_int_equal(kj_journal_stats_get(j, &st, &err), 0);
    int64_t open = 0, closed = 0;
    for (int i = 0; i < m->ns; i++) {
        open += m->s[i].exists && m->s[i].state == KJ_SESSION_OPEN;
        closed += m->s[i].exists && m->s[i].state == KJ_SESSION_CLOSED;
    }
    if (st.sessions_open != open || st.sessions_closed != closed ||
        st.events_open != m->events_open || st.events_close != m->events_close) {
        snprintf(why, size,
                 "stats: sessions %" PRId64 " open %" PRId64 " closed, events %" PRId64
                 " open %" PRId64 " close; recount: %" PRId64 " %" PRId64 ", %" PRId64 " %" PRId64,
                 st.sessions_open, st.sessions_closed, st.events_open, st.events_close, open,
                 closed, m->events_open, m->events_close);
        return why;
    }
    for (int by_user = 0; by_user < 2; by_user++) {
        mtotal want[MAX_KEYS];
        int nwant = model_totals(m, by_user, want), nz = 0;
        seen_totals got = {0};
        const char *dim = by_user ? "user" : "instance";
        assert_int_equal(kj_journal_count_by(j, dim, collect_total, &got, &err), 0);
        for (int k = 0; k < nwant; k++) {
            if (!want[k].open && !want[k].closed)
                continue;
            nz++;
            int g = 0;
            while (g < got.n && strcmp(got.t[g].key, want[k].key))
                g++;
            if (g == got.n || got.t[g].open != want[k].open || got.t[g].closed != want[k].closed) {
                snprintf(why, size,
                         "count by %s '%s': %" PRId64 " open %" PRId64 " closed, recount %" PRId64
                         " %" PRId64,
                         dim, want[k].key, g < got.n ? got.t[g].open : 0,
                         g < got.n ? got.t[g].closed : 0, want[k].open, want[k].closed);
                return why;
            }
        }
        if (got.n != nz) {
            snprintf(why, size, "count by %s: %d keys, recount %d", dim, got.n, nz);
            return why;
        }
    }
    for (int i = 0; i < m->ns; i++) {
        const msession *s = &m->s[i];
        if (i < first && !s->touched)
            continue;
        session_seen seen = {0};
        int rc = kj_journal_session_get(j, s->id, copy_session, &seen, &err);
        if (!s->exists) {
            if (rc != KJ_ENOENT) {
                snprintf(why, size, "session %s exists; the model has none", s->id);
                return why;
            }
            continue;
        }
        if (rc || seen.state != s->state || strcmp(seen.user, s->user) ||
            seen.event_count != s->events || seen.created_ms != s->created_ms ||
            seen.closed_ms != s->closed_ms || strcmp(seen.close_reason, s->reason)) {
            snprintf(why, size,
                     "session %s: state %d user '%s' %" PRId64 " events created %" PRId64
                     " closed %" PRId64 " '%s'; model: state %d user '%s' %" PRId64
                     " events created %" PRId64 " closed %" PRId64 " '%s'",
                     s->id, seen.state, seen.user, seen.event_count, seen.created_ms,
                     seen.closed_ms, seen.close_reason, s->state, s->user, s->events, s->created_ms,
                     s->closed_ms, s->reason);
            return why;
        }
    }
    return NULL;
}

static void test_random_sequences(void **state)
{
    (void)state;
    const char *env = getenv("KJ_TEST_SEED");
    uint64_t seed = env && *env ? strtoull(env, NULL, 10)
                                : (uint64_t)time(NULL) * 1000003u ^ (uint64_t)getpid();
    env = getenv("KJ_TEST_SEQUENCES");
    int total = env && *env ? atoi(env) : 4000;
    print_message("property test: seed %" PRIu64 " (replay with KJ_TEST_SEED=%" PRIu64
                  "), %d sequences\n",
                  seed, seed, total);
    rng_state = seed;

    /* tmpfs where there is one: thousands of commits, each an fsync. */
    char tmpl[] = "/dev/shm/kj-property.XXXXXX";
    char *dir = mkdtemp(tmpl) ? strdup(tmpl) : test_dir();
    assert_non_null(dir);
    model *m = calloc(1, sizeof *m);
    seq *q = calloc(1, sizeof *q);
    assert_non_null(m);
    assert_non_null(q);
    kj_journal *j = NULL;
    char *path = NULL;
    int64_t stored = 0, dup = 0, rej = 0;
    for (int number = 0; number < total; number++) {
        if (number % SEQ_PER_JOURNAL == 0) {
            kj_journal_close(j);
            free(path);
            char name[32];
            snprintf(name, sizeof name, "j%d.db", number / SEQ_PER_JOURNAL);
            path = path_in(dir, name);
            kj_err err = {0};
            if (kj_journal_open(path, 0, &j, &err))
                fail_msg("open %s: %s", path, err.msg);
            free(m->ids);
            memset(m, 0, sizeof *m);
        }
        int64_t now = kj_now_ms();
        int first = m->ns;
        seq_make(q, number, now);
        /* In batches of random sizes: deltas within a batch and across
         * batches must both add up. */
        for (int i = 0; i < q->n;) {
            int n = 1 + below(q->n - i);
            kj_append_result res[MAX_EVENTS];
            kj_err err = {0};
            int64_t before = kj_now_ms();
            if (kj_journal_append(j, &q->ev[i], (size_t)n, res, &err))
                fail_msg("seed %" PRIu64 " sequence %d: append: %s", seed, number, err.msg);
            for (int k = 0; k < n; k++) {
                const char *code = NULL;
                kj_append_status want = model_apply(m, &q->ev[i + k], before, &code);
                stored += res[k].status == KJ_APPEND_STORED;
                dup += res[k].status == KJ_APPEND_DUPLICATE;
                rej += res[k].status == KJ_APPEND_REJECTED;
                if (res[k].status != want ||
                    (want == KJ_APPEND_REJECTED && (!res[k].code || strcmp(res[k].code, code)))) {
                    print_error("seed %" PRIu64 " sequence %d:\n", seed, number);
                    seq_print(q, now);
                    fail_msg("seed %" PRIu64 " sequence %d: event %s: status %d (%s: %s), "
                             "model says %d (%s)",
                             seed, number, q->ev[i + k].event_id ? q->ev[i + k].event_id : "-",
                             res[k].status, res[k].code ? res[k].code : "-", res[k].message, want,
                             code ? code : "-");
                }
            }
            i += n;
        }
        char why[4600];
        const char *bad = check(j, m, first, why, sizeof why);
        for (int i = 0; i < m->ns; i++)
            m->s[i].touched = 0;
        if (bad) {
            print_error("seed %" PRIu64 " sequence %d (journal %s):\n", seed, number, path);
            seq_print(q, now);
            fail_msg("seed %" PRIu64 " sequence %d: %s", seed, number, why);
        }
    }
    print_message("property test: %" PRId64 " stored, %" PRId64 " duplicates, %" PRId64
                  " rejected\n",
                  stored, dup, rej);
    print_message("property test: %" PRId64 " restart closes (%" PRId64
                  " of sessions stored after their server's start), %" PRId64
                  " opens of restarted sessions\n",
                  restart_closes, late_closes, late_opens);
    assert_true(stored > 0 && dup > 0 && rej > 0);
    if (total >= 1000)
        assert_true(restart_closes > 0 && late_closes > 0 && late_opens > 0);
    kj_journal_close(j);
    free(path);
    free(m->ids);
    free(m);
    free(q);
    rm_tree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_sequences),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * bench_queries - the library work behind the kjournal read commands, timed
 * in one process (no exec, no dynamic loading), on a journal made by
 * gen_journal:
 *
 *     bench_queries PATH [RUNS]
 *
 * Each figure is the median of RUNS (default 21) runs, callbacks doing no
 * more than counting: what a command costs beyond starting the process and
 * printing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "journal/journal.h"

static int64_t rows;
static char newest_closed[64];

static int count_session(const kj_session *s, void *ud)
{
    (void)ud;
    rows++;
    snprintf(newest_closed, sizeof newest_closed, "%s", s->session_id);
    return 0;
}

static int count_event(const kj_event_row *r, void *ud)
{
    (void)r;
    (void)ud;
    rows++;
    return 0;
}

static int count_action(const kj_action *a, void *ud)
{
    (void)a;
    (void)ud;
    rows++;
    return 0;
}

static int count_key(const char *key, int64_t open, int64_t closed, void *ud)
{
    (void)key;
    (void)open;
    (void)closed;
    (void)ud;
    rows++;
    return 0;
}

static int last_action_session(const kj_action *a, void *ud)
{
    (void)ud;
    snprintf(newest_closed, sizeof newest_closed, "%s",
             a->engine_tag && !strncmp(a->engine_tag, "tag-", 4) ? a->engine_tag + 4 : "");
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

enum { Q_SESSIONS_OPEN, Q_SHOW, Q_EVENTS_HOUR, Q_STATS, Q_OPEN };

static int run_query(kj_journal *j, int q, const char *sid, int64_t now, kj_err *err)
{
    switch (q) {
    case Q_SESSIONS_OPEN: {
        kj_session_filter f = {.state = KJ_SESSION_OPEN, .limit = 100, .reverse = 1};
        return kj_journal_sessions(j, &f, count_session, NULL, err);
    }
    case Q_SHOW: {
        kj_event_filter ef = {.session_id = sid};
        kj_action_filter af = {.session_id = sid};
        int rc = kj_journal_session_get(j, sid, count_session, NULL, err);
        if (!rc)
            rc = kj_journal_events(j, &ef, count_event, NULL, err);
        if (!rc)
            rc = kj_journal_actions(j, &af, count_action, NULL, err);
        return rc;
    }
    case Q_EVENTS_HOUR: {
        kj_event_filter f = {.since_ms = now - 3600000};
        return kj_journal_events(j, &f, count_event, NULL, err);
    }
    case Q_STATS: {
        kj_journal_stats st;
        int rc = kj_journal_stats_get(j, &st, err);
        if (!rc)
            rc = kj_journal_count_by(j, "user", count_key, NULL, err);
        if (!rc)
            rc = kj_journal_count_by(j, "instance", count_key, NULL, err);
        return rc;
    }
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_queries PATH [RUNS]\n");
        return 2;
    }
    int runs = argc > 2 ? atoi(argv[2]) : 21;
    if (runs < 1 || runs > 1000)
        runs = 21;
    kj_err err = {0};
    kj_journal *j;
    /* A session with actions: gen_journal tags engines "tag-SESSION_ID". */
    if (kj_journal_open(argv[1], KJ_JOURNAL_READONLY, &j, &err) < 0) {
        fprintf(stderr, "bench_queries: %s\n", err.msg);
        return 1;
    }
    kj_action_filter af = {.limit = 1, .reverse = 1};
    kj_journal_actions(j, &af, last_action_session, NULL, &err);
    char sid[64];
    snprintf(sid, sizeof sid, "%s", newest_closed);
    kj_journal_close(j);

    static const char *const names[] = {
        [Q_SESSIONS_OPEN] = "sessions --state open -n 100",
        [Q_SHOW] = "show ID (session, events, actions)",
        [Q_EVENTS_HOUR] = "events --since -1h",
        [Q_STATS] = "stats (totals, by user, by instance)",
        [Q_OPEN] = "open read-only + close",
    };
    double *t = calloc((size_t)runs, sizeof *t);
    printf("in-process, median of %d runs (%s):\n", runs, sid);
    for (int q = 0; q <= Q_OPEN; q++) {
        int64_t n = 0;
        for (int r = 0; r < runs; r++) {
            int64_t t0 = now_us();
            if (kj_journal_open(argv[1], KJ_JOURNAL_READONLY, &j, &err) < 0) {
                fprintf(stderr, "bench_queries: %s\n", err.msg);
                return 1;
            }
            int64_t t1 = now_us();
            rows = 0;
            if (q != Q_OPEN && run_query(j, q, sid, kj_now_ms(), &err) < 0) {
                fprintf(stderr, "bench_queries: %s\n", err.msg);
                return 1;
            }
            int64_t t2 = now_us();
            kj_journal_close(j);
            t[r] = (double)(q == Q_OPEN ? now_us() - t0 : t2 - t1) / 1000.0;
            n = rows;
        }
        qsort(t, (size_t)runs, sizeof *t, cmp_double);
        printf("  %-40s %8.2f ms  (min %.2f)  %lld rows\n", names[q], t[runs / 2], t[0],
               (long long)n);
    }
    free(t);
    return 0;
}

/*
 * kjt_journal - builds the journals the kjournal CLI tests read.
 *
 *   kjt_journal golden PATH   a small journal with fixed events, times, runs and
 *                             actions: every command's golden output reads it
 *   kjt_journal ties PATH     1,500 sessions in groups of 300 sharing one time,
 *                             open and close at the same time: pages of
 *                             KJ_JOURNAL_PAGE rows end in the middle of ties
 *   kjt_journal writer PATH   appends sessions (open, later close) in small
 *                             batches until SIGTERM; prints the batches
 *                             committed on exit
 *
 * Times the library takes from the clock (recorded_ms, run start and end) are
 * set to fixed values afterwards, so the output does not depend on when the
 * test ran.
 */
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "journal/journal.h"

#define T0 1795860000000LL /* 2026-11-28T10:00:00Z */
#define MIN 60000LL

static int die(const char *what, const kj_err *err)
{
    fprintf(stderr, "kjt_journal: %s: %s\n", what, err ? err->msg : "failed");
    return 1;
}

static int append(kj_journal *j, const kj_event *ev, size_t n)
{
    kj_append_result res[64];
    kj_err err = {0};
    if (kj_journal_append(j, ev, n, res, &err) < 0)
        return die("append", &err);
    for (size_t i = 0; i < n; i++)
        if (res[i].status != KJ_APPEND_STORED) {
            fprintf(stderr, "kjt_journal: event %s not stored: %s\n", ev[i].event_id,
                    res[i].message);
            return 1;
        }
    return 0;
}

static int golden(const char *path)
{
    kj_journal *j;
    kj_err err = {0};
    if (kj_journal_open(path, 0, &j, &err) < 0)
        return die("open", &err);
    const kj_event ev[] = {
        {.event_id = "e01",
         .type = KJ_EVENT_SESSION_OPEN,
         .session_id = "s-alice-1",
         .instance = "kyuubi-0:10009",
         .user = "alice",
         .engine_id = "spark-app-0001",
         .engine_tag = "tag-0001",
         .engine_namespace = "kyuubi",
         .time_ms = T0,
         .session_type = "interactive",
         .payload = "{\"sessionId\":\"s-alice-1\",\"note\":\"a, \\\"quoted\\\" value\"}"},
        {.event_id = "e02",
         .type = KJ_EVENT_SESSION_OPEN,
         .session_id = "s-bob-1",
         .instance = "kyuubi-1:10009",
         .user = "bob",
         .engine_id = "spark-app-0002",
         .engine_tag = "tag-0002",
         .engine_namespace = "kyuubi",
         .time_ms = T0 + 1 * MIN,
         .session_type = "interactive"},
        {.event_id = "e03",
         .type = KJ_EVENT_SESSION_OPEN,
         .session_id = "s-alice-2",
         .instance = "kyuubi-0:10009",
         .user = "alice",
         .engine_tag = "tag-0003",
         .engine_namespace = "kyuubi",
         .time_ms = T0 + 2 * MIN,
         .session_type = "interactive"},
        {.event_id = "e04",
         .type = KJ_EVENT_SESSION_CLOSE,
         .session_id = "s-alice-1",
         .time_ms = T0 + 10 * MIN,
         .reason = "client"},
        {.event_id = "e05",
         .type = KJ_EVENT_SESSION_OPEN,
         .session_id = "s-carol-1",
         .instance = "kyuubi-1:10009",
         .user = "carol",
         .engine_id = "spark-app-0004",
         .engine_namespace = "batch",
         .time_ms = T0 + 15 * MIN,
         .session_type = "batch"},
        {.event_id = "e06",
         .type = KJ_EVENT_SESSION_OPEN,
         .session_id = "s-anon-1",
         .instance = "kyuubi-0:10009",
         .time_ms = T0 + 20 * MIN},
        {.event_id = "e07",
         .type = KJ_EVENT_SESSION_CLOSE,
         .session_id = "s-bob-1",
         .time_ms = T0 + 30 * MIN,
         .reason = "engine_terminated"},
        {.event_id = "e08",
         .type = KJ_EVENT_SESSION_OPEN,
         .session_id = "s-alice-2",
         .engine_id = "spark-app-0003",
         .time_ms = T0 + 31 * MIN},
        {.event_id = "e09",
         .type = KJ_EVENT_SESSION_CLOSE,
         .session_id = "s-anon-1",
         .time_ms = T0 + 45 * MIN,
         .reason = "idle_timeout"},
        {.event_id = "e10",
         .type = KJ_EVENT_SESSION_OPEN,
         .session_id = "s-dave-1",
         .instance = "kyuubi-1:10009",
         .user = "dave",
         .engine_tag = "tag-0005",
         .time_ms = T0 + 24 * 60 * MIN},
    };
    /* Two batches, so commit order (seq) differs from time order for e10. */
    if (append(j, ev + 9, 1) || append(j, ev, 9))
        return 1;

    int64_t run1, run2;
    if (kj_journal_run_begin(j, "recovery", 0, &run1, &err) < 0 ||
        kj_journal_run_begin(j, "resync", 1, &run2, &err) < 0)
        return die("run", &err);
    const kj_action acts[] = {
        {.run_id = run1,
         .time_ms = T0 + 31 * MIN,
         .namespace_ = "kyuubi",
         .pod = "engine-0002",
         .uid = "uid-0002",
         .engine_tag = "tag-0002",
         .engine_id = "spark-app-0002",
         .action = "release_finalizer",
         .reason = "pod terminal, sessions closed",
         .result = "ok",
         .http_code = 200},
        {.run_id = run1,
         .time_ms = T0 + 32 * MIN,
         .namespace_ = "kyuubi",
         .pod = "engine-0002",
         .uid = "uid-0002",
         .engine_tag = "tag-0002",
         .engine_id = "spark-app-0002",
         .action = "delete",
         .reason = "retain period over",
         .result = "gone",
         .http_code = 404,
         .message = "pods \"engine-0002\" not found"},
        {.run_id = run2,
         .time_ms = T0 + 50 * MIN,
         .namespace_ = "kyuubi",
         .pod = "engine-0001",
         .uid = "uid-0001",
         .engine_tag = "tag-0001",
         .action = "delete",
         .reason = "closed longer than the engine grace",
         .result = "planned"},
    };
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++)
        if (kj_journal_action_record(j, &acts[i], &err) < 0)
            return die("action", &err);
    if (kj_journal_run_end(j, run1, "converged", 3, 2, 0, &err) < 0 ||
        kj_journal_run_end(j, run2, "converged", 3, 0, 0, &err) < 0)
        return die("run", &err);
    kj_journal_close(j);

    /* Fix what the library stamped with the clock. */
    sqlite3 *db;
    char *msg = NULL;
    if (sqlite3_open(path, &db) != SQLITE_OK ||
        sqlite3_exec(db,
                     "UPDATE events SET recorded_ms = time_ms + 250;"
                     "UPDATE sessions SET recorded_ms = (SELECT max(recorded_ms) FROM events"
                     " WHERE session = sessions.id);"
                     "UPDATE reconcile_runs SET started_ms = 1795861800000 + id * 600000,"
                     " finished_ms = 1795861800000 + id * 600000 + 1500;"
                     "PRAGMA wal_checkpoint(TRUNCATE)",
                     NULL, NULL, &msg) != SQLITE_OK) {
        fprintf(stderr, "kjt_journal: fix times: %s\n", msg ? msg : sqlite3_errmsg(db));
        return 1;
    }
    sqlite3_close(db);
    return 0;
}

static int ties(const char *path)
{
    kj_journal *j;
    kj_err err = {0};
    if (kj_journal_open(path, 0, &j, &err) < 0)
        return die("open", &err);
    static const char *const users[] = {"alice", "bob", "carol"};
    for (int b = 0; b < 1500; b += 30) {
        char ids[60][48];
        kj_event ev[60];
        for (int i = 0; i < 30; i++) {
            int k = b + i;
            int64_t t = T0 + (int64_t)(k / 300) * MIN;
            snprintf(ids[2 * i], 48, "t-%04d", k);
            snprintf(ids[2 * i + 1], 48, "t-%04d-open", k);
            ev[i] = (kj_event){.event_id = ids[2 * i + 1],
                               .type = KJ_EVENT_SESSION_OPEN,
                               .session_id = ids[2 * i],
                               .user = users[k % 3],
                               .instance = "kyuubi-0:10009",
                               .time_ms = t};
        }
        char closes[30][48];
        for (int i = 0; i < 30; i++) {
            int k = b + i;
            snprintf(closes[i], 48, "t-%04d-close", k);
            ev[30 + i] = (kj_event){.event_id = closes[i],
                                    .type = KJ_EVENT_SESSION_CLOSE,
                                    .session_id = ids[2 * i],
                                    .time_ms = T0 + (int64_t)(k / 300) * MIN,
                                    .reason = "client"};
        }
        /* Closes of even sessions only: the others stay open. */
        kj_event batch[60];
        size_t n = 0;
        for (int i = 0; i < 30; i++)
            batch[n++] = ev[i];
        for (int i = 0; i < 30; i += 2)
            batch[n++] = ev[30 + i];
        if (append(j, batch, n))
            return 1;
    }
    kj_journal_close(j);
    return 0;
}

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
    (void)sig;
    stop = 1;
}

/* Each batch opens 8 sessions and closes the 8 opened the batch before, so
 * every session has one open event and at most one close event. */
static int writer(const char *path)
{
    kj_journal *j;
    kj_err err = {0};
    if (kj_journal_open(path, 0, &j, &err) < 0)
        return die("open", &err);
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    long batch = 0;
    int rc = 0;
    char ids[32][48];
    kj_event ev[16];
    int64_t t = T0;
    while (!stop) {
        size_t n = 0;
        for (int i = 0; i < 8; i++) {
            char *sid = ids[(batch % 2) * 16 + i], *eid = ids[(batch % 2) * 16 + 8 + i];
            snprintf(sid, 48, "w-%ld-%d", batch, i);
            snprintf(eid, 48, "w-%ld-%d-open", batch, i);
            ev[n++] = (kj_event){.event_id = eid,
                                 .type = KJ_EVENT_SESSION_OPEN,
                                 .session_id = sid,
                                 .user = i % 2 ? "alice" : "bob",
                                 .instance = "kyuubi-0:10009",
                                 .time_ms = t++};
        }
        char closes[8][48];
        if (batch > 0)
            for (int i = 0; i < 8; i++) {
                snprintf(closes[i], 48, "w-%ld-%d-close", batch - 1, i);
                ev[n++] = (kj_event){.event_id = closes[i],
                                     .type = KJ_EVENT_SESSION_CLOSE,
                                     .session_id = ids[((batch - 1) % 2) * 16 + i],
                                     .time_ms = t++,
                                     .reason = "client"};
            }
        if ((rc = append(j, ev, n)))
            break;
        batch++;
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    kj_journal_close(j);
    printf("%ld\n", batch);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: kjt_journal golden|ties|writer PATH\n");
        return 2;
    }
    if (!strcmp(argv[1], "golden"))
        return golden(argv[2]);
    if (!strcmp(argv[1], "ties"))
        return ties(argv[2]);
    if (!strcmp(argv[1], "writer"))
        return writer(argv[2]);
    fprintf(stderr, "kjt_journal: unknown mode '%s'\n", argv[1]);
    return 2;
}

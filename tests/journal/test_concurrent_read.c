/*
 * A read-only handle reads consistent data while another process appends,
 * and never writes: after the writer stops, a full round of reads leaves the
 * files byte for byte as they were.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "testutil.h"

/* Each batch opens session i and closes session i-1, so every committed
 * state has exactly one open session and events_close == sessions_closed. */
static void writer(const char *path)
{
    kj_journal *j = NULL;
    kj_err err = {0};
    if (kj_journal_open(path, 0, &j, &err))
        _exit(1);
    char open_id[32], close_id[32], sess[32], prev[32] = "";
    for (int i = 0;; i++) {
        snprintf(sess, sizeof sess, "w%d", i);
        snprintf(open_id, sizeof open_id, "w%d-open", i);
        snprintf(close_id, sizeof close_id, "w%d-close", i - 1);
        kj_event evs[2] = {ev_open(open_id, sess, T0 + i), ev_close(close_id, prev, T0 + i)};
        kj_append_result res[2];
        if (kj_journal_append(j, evs, i ? 2 : 1, res, &err))
            _exit(2);
        memcpy(prev, sess, sizeof prev);
    }
}

static int count_rows(const kj_event_row *r, void *ud)
{
    (void)r;
    ++*(int64_t *)ud;
    return 0;
}

static int count_sessions(const kj_session *s, void *ud)
{
    (void)s;
    ++*(int64_t *)ud;
    return 0;
}

/* One round of everything a reader does; checks the snapshot invariants. */
static void read_round(kj_journal *j, int64_t *seen_events)
{
    kj_err err = {0};
    kj_journal_stats st;
    if (kj_journal_stats_get(j, &st, &err))
        fail_msg("stats while writing: %s", err.msg);
    if (st.sessions_open + st.sessions_closed > 0) {
        assert_int_equal(st.sessions_open, 1);
        assert_int_equal(st.events_open, st.sessions_open + st.sessions_closed);
        assert_int_equal(st.events_close, st.sessions_closed);
    }
    int64_t n = 0;
    kj_session_filter open = {.state = KJ_SESSION_OPEN};
    if (kj_journal_sessions(j, &open, count_sessions, &n, &err))
        fail_msg("sessions while writing: %s", err.msg);
    assert_true(n <= 1);
    n = 0;
    if (kj_journal_events(j, NULL, count_rows, &n, &err))
        fail_msg("events while writing: %s", err.msg);
    assert_true(n >= *seen_events); /* the journal only grows */
    *seen_events = n;
    int64_t problems = 0;
    if (kj_journal_verify(j, NULL, NULL, &problems, &err))
        fail_msg("verify while writing: %s", err.msg);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        *len = 0;
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    *len = fread(buf, 1, (size_t)n, f);
    fclose(f);
    return buf;
}

static void test_read_while_writing(void **state)
{
    (void)state;
    char *dir = test_dir(), *path = path_in(dir, "live.db");
    kj_journal *j = NULL;
    kj_err err = {0};
    assert_int_equal(kj_journal_open(path, 0, &j, &err), 0);
    kj_journal_close(j);
    pid_t pid = fork();
    if (pid == 0)
        writer(path);
    assert_int_equal(kj_journal_open(path, KJ_JOURNAL_READONLY, &j, &err), 0);
    /* Read for two seconds at least, and until the reads have seen the
     * writer's first 200 events, however slow the machine is to start it. */
    int64_t seen = 0, rounds = 0;
    int64_t t0 = kj_mono_ms();
    while (kj_mono_ms() < t0 + 2000 || seen < 200) {
        if (kj_mono_ms() > t0 + 120000) {
            kill(pid, SIGKILL);
            fail_msg("the reader saw %lld events of the writer in 120 s", (long long)seen);
        }
        read_round(j, &seen);
        rounds++;
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    assert_true(seen >= 200);
    printf("read-while-write: %lld read rounds, %lld events seen\n", (long long)rounds,
           (long long)seen);

    /* Writer gone: reading changes no byte of the journal or its WAL. */
    char *wal = path_in(dir, "live.db-wal");
    size_t n0, n1, w0, w1;
    char *db0 = slurp(path, &n0), *wal0 = slurp(wal, &w0);
    read_round(j, &seen);
    char backup[600];
    snprintf(backup, sizeof backup, "%s/copy.db", dir);
    assert_int_equal(kj_journal_backup(j, backup, &err), 0);
    kj_journal_close(j);
    char *db1 = slurp(path, &n1), *wal1 = slurp(wal, &w1);
    assert_int_equal(n0, n1);
    assert_memory_equal(db0, db1, n0);
    assert_int_equal(w0, w1);
    if (w0)
        assert_memory_equal(wal0, wal1, w0);
    free(db0);
    free(db1);
    free(wal0);
    free(wal1);
    free(wal);
    free(path);
    rm_tree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_read_while_writing)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}

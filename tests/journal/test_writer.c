/*
 * The writer's side of the journal file (issue 10): the writer lock, the
 * path checked against the files a handle has open (a journal deleted,
 * moved or replaced under its writer), the -wal and -shm files a writer
 * leaves for readers, and runs a killed process left "running".
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <sys/stat.h>

#include "testutil.h"

static kj_journal *open_ok(const char *path, unsigned flags)
{
    kj_journal *j = NULL;
    kj_err err = {0};
    int rc = kj_journal_open(path, flags, &j, &err);
    if (rc)
        fail_msg("open %s: %d %s", path, rc, err.msg);
    return j;
}

/* n sessions, one open event each, ids prefix-0 .. prefix-(n-1). */
static void append_sessions(kj_journal *j, const char *prefix, int n)
{
    kj_err err = {0};
    for (int i = 0; i < n; i++) {
        char id[64];
        snprintf(id, sizeof id, "%s-%d", prefix, i);
        kj_event e = ev_open(id, id, T0 + i);
        kj_append_result r;
        assert_int_equal(kj_journal_append(j, &e, 1, &r, &err), 0);
        assert_int_equal(r.status, KJ_APPEND_STORED);
    }
}

static int64_t count_events(const char *path)
{
    kj_journal *j = open_ok(path, KJ_JOURNAL_READONLY);
    kj_journal_stats st;
    kj_err err = {0};
    assert_int_equal(kj_journal_stats_get(j, &st, &err), 0);
    int64_t problems = 0;
    if (kj_journal_verify(j, NULL, NULL, &problems, &err))
        fail_msg("verify %s: %s", path, err.msg);
    kj_journal_close(j);
    return st.events_open + st.events_close;
}

static int64_t has_session(const char *path, const char *id)
{
    kj_journal *j = open_ok(path, KJ_JOURNAL_READONLY);
    session_seen s = {0};
    kj_err err = {0};
    kj_journal_session_get(j, id, copy_session, &s, &err);
    kj_journal_close(j);
    return s.found;
}

static void test_second_writer_refused(void **state)
{
    (void)state;
    char *dir = test_dir(), *path = path_in(dir, "j.db"), *lock = path_in(dir, "j.db.lock");
    kj_journal *a = open_ok(path, KJ_JOURNAL_LOCK);
    struct stat sb;
    assert_int_equal(stat(lock, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);

    /* In this process too: the lock is the open file's, not the process's. */
    kj_journal *b = NULL;
    kj_err err = {0};
    assert_int_equal(kj_journal_open(path, KJ_JOURNAL_LOCK, &b, &err), KJ_ELOCKED);
    assert_null(b);
    char pid[32];
    snprintf(pid, sizeof pid, "pid %ld", (long)getpid());
    if (!strstr(err.msg, path) || !strstr(err.msg, pid) || !strstr(err.msg, "another writer"))
        fail_msg("message '%s' names neither the journal nor the holder", err.msg);

    /* Readers (and the lock-free writers) are not blocked. */
    kj_journal *r = open_ok(path, KJ_JOURNAL_READONLY);
    kj_journal *w = open_ok(path, 0);
    kj_journal_close(w);
    kj_journal_close(r);

    /* Released with its handle; the lock file stays. */
    kj_journal_close(a);
    b = open_ok(path, KJ_JOURNAL_LOCK);
    kj_journal_close(b);
    assert_int_equal(stat(lock, &sb), 0);
    free(lock);
    free(path);
    rm_tree(dir);
}

static void test_writer_leaves_wal_for_readers(void **state)
{
    (void)state;
    char *dir = test_dir(), *path = path_in(dir, "j.db");
    char *wal = path_in(dir, "j.db-wal"), *shm = path_in(dir, "j.db-shm");
    kj_journal *j = open_ok(path, KJ_JOURNAL_LOCK);
    append_sessions(j, "s", 10);
    kj_journal_close(j);
    struct stat sb;
    assert_int_equal(stat(wal, &sb), 0);
    assert_int_equal(sb.st_size, 0); /* checkpointed and emptied */
    assert_int_equal(stat(shm, &sb), 0);
    assert_int_equal(count_events(path), 10);
    free(wal);
    free(shm);
    free(path);
    rm_tree(dir);
}

/* rm j.db j.db-wal j.db-shm under the writer: noticed, nothing touched by name. */
static void test_deleted_under_the_writer(void **state)
{
    (void)state;
    char *dir = test_dir(), *path = path_in(dir, "j.db");
    kj_journal *j = open_ok(path, KJ_JOURNAL_LOCK);
    append_sessions(j, "s", 5);
    kj_err err = {0};
    assert_int_equal(kj_journal_check_path(j, &err), 0);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -f '%s' '%s-wal' '%s-shm'", path, path, path);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(kj_journal_check_path(j, &err), KJ_ESTALE);
    if (!strstr(err.msg, "deleted") || !strstr(err.msg, path))
        fail_msg("message '%s'", err.msg);
    /* and it stays lost */
    assert_int_equal(kj_journal_check_path(j, &err), KJ_ESTALE);
    kj_journal_close(j);
    struct stat sb;
    assert_int_not_equal(stat(path, &sb), 0); /* nothing recreated by name */
    free(path);
    rm_tree(dir);
}

/* mv j.db elsewhere: the writer's WAL goes into the moved file, which keeps
 * every event committed before the move. */
static void test_moved_away_keeps_its_events(void **state)
{
    (void)state;
    char *dir = test_dir(), *path = path_in(dir, "j.db"), *moved = path_in(dir, "moved.db");
    kj_journal *j = open_ok(path, KJ_JOURNAL_LOCK);
    append_sessions(j, "s", 20); /* in the WAL, not yet in the file */
    assert_int_equal(rename(path, moved), 0);
    kj_err err = {0};
    assert_int_equal(kj_journal_check_path(j, &err), KJ_ESTALE);
    kj_journal_close(j);
    assert_int_equal(count_events(moved), 20);
    free(moved);
    free(path);
    rm_tree(dir);
}

/* mv other.db j.db: the replacement is never written, its events intact,
 * and the writer's WAL (left at j.db-wal) is empty, so nothing replays it
 * over the replacement. */
static void test_replaced_under_the_writer(void **state)
{
    (void)state;
    char *dir = test_dir(), *path = path_in(dir, "j.db"), *other = path_in(dir, "other.db");
    kj_journal *o = open_ok(other, KJ_JOURNAL_LOCK);
    append_sessions(o, "other", 300);
    kj_journal_close(o);

    kj_journal *j = open_ok(path, KJ_JOURNAL_LOCK);
    append_sessions(j, "mine", 50);
    assert_int_equal(rename(other, path), 0);
    kj_err err = {0};
    assert_int_equal(kj_journal_check_path(j, &err), KJ_ESTALE);
    if (!strstr(err.msg, "replaced"))
        fail_msg("message '%s'", err.msg);
    kj_journal_close(j);

    char *wal = path_in(dir, "j.db-wal");
    struct stat sb;
    if (stat(wal, &sb) == 0)
        assert_int_equal(sb.st_size, 0);
    assert_int_equal(count_events(path), 300);
    assert_true(has_session(path, "other-299"));
    assert_false(has_session(path, "mine-0"));
    free(wal);
    free(other);
    free(path);
    rm_tree(dir);
}

/* rm j.db-wal j.db-shm only: the journal file is still ours; closing puts
 * the WAL's events into it. */
static void test_wal_deleted_under_the_writer(void **state)
{
    (void)state;
    char *dir = test_dir(), *path = path_in(dir, "j.db");
    kj_journal *j = open_ok(path, KJ_JOURNAL_LOCK);
    append_sessions(j, "s", 30);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -f '%s-wal' '%s-shm'", path, path);
    assert_int_equal(system(cmd), 0);
    kj_err err = {0};
    assert_int_equal(kj_journal_check_path(j, &err), KJ_ESTALE);
    if (!strstr(err.msg, "-wal"))
        fail_msg("message '%s'", err.msg);
    kj_journal_close(j);
    assert_int_equal(count_events(path), 30);
    free(path);
    rm_tree(dir);
}

typedef struct run_seen {
    char status[32];
    int64_t started_ms, finished_ms, actions_ok, actions_failed;
} run_seen;

static int copy_run(const kj_run *r, void *ud)
{
    run_seen *s = ud;
    snprintf(s->status, sizeof s->status, "%s", r->status ? r->status : "");
    s->started_ms = r->started_ms;
    s->finished_ms = r->finished_ms;
    s->actions_ok = r->actions_ok;
    s->actions_failed = r->actions_failed;
    return 0;
}

static void test_running_runs_of_a_dead_process(void **state)
{
    (void)state;
    char *dir = test_dir(), *path = path_in(dir, "j.db");
    kj_err err = {0};
    kj_journal *j = open_ok(path, KJ_JOURNAL_LOCK);
    int64_t cut = 0, cut_bare = 0, done = 0;
    assert_int_equal(kj_journal_run_begin(j, "recovery", 0, &cut, &err), 0);
    kj_action acts[3] = {
        {.run_id = cut, .time_ms = T0 + 10, .pod = "p1", .action = "delete", .result = "ok"},
        {.run_id = cut, .time_ms = T0 + 20, .pod = "p2", .action = "delete", .result = "failed"},
        {.run_id = cut, .time_ms = T0 + 30, .pod = "p3", .action = "delete", .result = "gone"},
    };
    assert_int_equal(kj_journal_action_record_batch(j, acts, 3, &err), 0);
    assert_int_equal(kj_journal_run_begin(j, "resync", 0, &cut_bare, &err), 0);
    assert_int_equal(kj_journal_run_begin(j, "manual", 0, &done, &err), 0);
    assert_int_equal(kj_journal_run_end(j, done, "converged", 7, 0, 0, &err), 0);
    kj_journal_close(j); /* as a SIGKILL would: the first two never end */

    /* Without the lock, a run may belong to a live process: refused. */
    j = open_ok(path, 0);
    int64_t n = -1;
    assert_int_equal(kj_journal_runs_interrupt(j, &n, &err), KJ_EINVAL);
    assert_int_equal(n, 0);
    kj_journal_close(j);

    j = open_ok(path, KJ_JOURNAL_LOCK);
    assert_int_equal(kj_journal_runs_interrupt(j, &n, &err), 0);
    assert_int_equal(n, 2);
    run_seen r = {0};
    assert_int_equal(kj_journal_run_get(j, cut, copy_run, &r, &err), 0);
    assert_string_equal(r.status, "interrupted");
    assert_int_equal(r.finished_ms, T0 + 30); /* its last sign of life */
    assert_int_equal(r.actions_ok, 1);
    assert_int_equal(r.actions_failed, 1);
    assert_int_equal(kj_journal_run_get(j, cut_bare, copy_run, &r, &err), 0);
    assert_string_equal(r.status, "interrupted");
    assert_int_equal(r.finished_ms, r.started_ms);
    assert_int_equal(kj_journal_run_get(j, done, copy_run, &r, &err), 0);
    assert_string_equal(r.status, "converged");
    /* once */
    assert_int_equal(kj_journal_runs_interrupt(j, &n, &err), 0);
    assert_int_equal(n, 0);
    kj_journal_close(j);
    free(path);
    rm_tree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_second_writer_refused),
        cmocka_unit_test(test_writer_leaves_wal_for_readers),
        cmocka_unit_test(test_deleted_under_the_writer),
        cmocka_unit_test(test_moved_away_keeps_its_events),
        cmocka_unit_test(test_replaced_under_the_writer),
        cmocka_unit_test(test_wal_deleted_under_the_writer),
        cmocka_unit_test(test_running_runs_of_a_dead_process),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

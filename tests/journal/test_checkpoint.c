/*
 * The background checkpointer (KJ_JOURNAL_CHECKPOINTER, issue 15) on a real
 * file: under continuous appends, with a reader taking snapshots on and off,
 * the WAL stays under its hard limit and starts over; an idle journal's WAL
 * is copied and starts over at the next commit; close leaves an empty WAL;
 * a writer killed with SIGKILL mid-load leaves a journal that verifies, with
 * every acknowledged batch in it. The limits are shrunk (tens of frames
 * rather than thousands) so that each test goes through many cycles.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "journal/checkpoint_internal.h"
#include "testutil.h"

#define FRAME_BYTES (4096 + 24)
#define WAL_HEADER 32
#define BATCH 20
#define DEADLINE_MS 120000

static const kj_ckpt_limits small = {.soft = 40,
                                     .restart = 150,
                                     .cheap = 40,
                                     .hard = 600,
                                     .rewind_wait = 2,
                                     .hard_wait = 5000,
                                     .idle = 50};

static int64_t file_bytes(const char *path, const char *suffix)
{
    char p[600];
    struct stat sb;
    snprintf(p, sizeof p, "%s%s", path, suffix);
    return stat(p, &sb) == 0 ? (int64_t)sb.st_size : -1;
}

static kj_journal *open_ckpt(const char *path, const kj_ckpt_limits *lim)
{
    kj_journal *j = NULL;
    kj_err err = {0};
    if (kj_journal_open(path, KJ_JOURNAL_CHECKPOINTER, &j, &err))
        fail_msg("open: %s", err.msg);
    kj_ckpt *c = kj_journal_ckpt(j);
    assert_non_null(c);
    kj_ckpt_limits_set(c, lim);
    return j;
}

/* Batch b of tag: BATCH new sessions, one open event each. */
static int append_batch(kj_journal *j, const char *tag, int b, kj_err *err)
{
    static char ids[BATCH][64], sess[BATCH][64];
    kj_event evs[BATCH];
    kj_append_result res[BATCH];
    for (int k = 0; k < BATCH; k++) {
        snprintf(sess[k], sizeof sess[k], "%s-b%d-s%d", tag, b, k);
        snprintf(ids[k], sizeof ids[k], "%s-b%d-s%d-open", tag, b, k);
        evs[k] = ev_open(ids[k], sess[k], T0 + b);
    }
    return kj_journal_append(j, evs, BATCH, res, err);
}

/* --- a reader on and off ------------------------------------------------------ */

typedef struct reader {
    const char *path;
    volatile int stop;
    long snapshots;
} reader;

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* Holds a read snapshot 0-3 ms, lets go 0-3 ms, until stopped. */
static void *read_on_and_off(void *arg)
{
    reader *r = arg;
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(r->path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        return NULL;
    sqlite3_busy_timeout(db, 10000);
    unsigned seed = 7;
    while (!r->stop) {
        if (sqlite3_exec(db, "BEGIN; SELECT count(*) FROM events", NULL, NULL, NULL) == SQLITE_OK)
            r->snapshots++;
        sleep_us(rand_r(&seed) % 3000);
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
        sleep_us(rand_r(&seed) % 3000);
    }
    sqlite3_close(db);
    return NULL;
}

static void test_wal_bounded_with_reader(void **state)
{
    (void)state;
    char *dir = test_dir(), *path = path_in(dir, "j.db");
    kj_journal *j = open_ckpt(path, &small);
    kj_err err = {0};
    assert_int_equal(append_batch(j, "warm", 0, &err), 0);

    reader r = {.path = path};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, read_on_and_off, &r), 0);
    kj_ckpt_stats st = {0};
    int64_t wal_max = 0, start = kj_mono_ms();
    int b = 0;
    /* Many cycles: the WAL starts over at least 10 times, under load. */
    for (; b < 400 || st.rewinds < 10; b++) {
        if (kj_mono_ms() - start > DEADLINE_MS)
            fail_msg("the WAL started over %lld times in %d batches", (long long)st.rewinds, b);
        if (append_batch(j, "load", b, &err))
            fail_msg("append %d: %s", b, err.msg);
        int64_t w = file_bytes(path, "-wal");
        if (w > wal_max)
            wal_max = w;
        kj_ckpt_stats_get(kj_journal_ckpt(j), &st);
    }
    r.stop = 1;
    pthread_join(t, NULL);
    printf("checkpoint: %d batches, reader took %ld snapshots; passes %lld (errors %lld), "
           "rewinds %lld (thread %lld, hard %lld, busy %lld, errors %lld), max frames %d, "
           "max -wal %lld bytes\n",
           b, r.snapshots, (long long)st.passes, (long long)st.pass_errors, (long long)st.rewinds,
           (long long)st.rewinds_thread, (long long)st.rewinds_hard, (long long)st.rewind_busy,
           (long long)st.rewind_errors, st.max_frames, (long long)wal_max);
    assert_true(r.snapshots > 10);
    assert_true(st.passes > 0);
    assert_int_equal(st.pass_errors, 0);
    assert_int_equal(st.rewind_errors, 0);
    /* One commit of BATCH sessions writes far fewer than 200 frames; the
     * rewind at `hard` waits for the reader, so the WAL never passes it by
     * more than one commit. */
    assert_true(st.max_frames < small.hard + 200);
    assert_true(wal_max <= WAL_HEADER + (int64_t)(small.hard + 200) * FRAME_BYTES);

    kj_journal_close(j);
    assert_int_equal(file_bytes(path, "-wal") > 0, 0); /* emptied, or removed */

    /* Nothing was lost on the way. */
    assert_int_equal(kj_journal_open(path, KJ_JOURNAL_READONLY, &j, &err), 0);
    int64_t problems = -1;
    assert_int_equal(kj_journal_verify(j, NULL, NULL, &problems, &err), 0);
    assert_int_equal(problems, 0);
    kj_journal_stats js;
    assert_int_equal(kj_journal_stats_get(j, &js, &err), 0);
    assert_int_equal(js.events_open, (int64_t)(b + 1) * BATCH);
    kj_journal_close(j);
    free(path);
    rm_tree(dir);
}

/* Idle: the thread copies the WAL within `idle` ms, and the next commit
 * starts it over, though it never reached `restart`. */
static void test_idle_wal_starts_over(void **state)
{
    (void)state;
    char *dir = test_dir(), *path = path_in(dir, "j.db");
    kj_ckpt_limits lim = small;
    lim.soft = lim.restart = lim.hard = 1 << 30;
    kj_journal *j = open_ckpt(path, &lim);
    kj_err err = {0};
    for (int b = 0; b < 5; b++)
        assert_int_equal(append_batch(j, "idle", b, &err), 0);
    kj_ckpt_stats st;
    int64_t start = kj_mono_ms();
    /* Until a pass that began after the last commit has ended. */
    do {
        sleep_us(10000);
        kj_ckpt_stats_get(kj_journal_ckpt(j), &st);
    } while ((st.passes == 0 || st.working) && kj_mono_ms() - start < DEADLINE_MS);
    assert_true(st.passes > 0);
    assert_false(st.working);
    int64_t before = st.rewinds; /* an idle pass may have come between two batches */
    assert_int_equal(append_batch(j, "idle", 5, &err), 0);
    kj_ckpt_stats_get(kj_journal_ckpt(j), &st);
    assert_int_equal(st.rewinds, before + 1);
    assert_int_equal(st.rewinds_thread + st.rewinds_hard, 0); /* SQLite's own */
    kj_journal_close(j);
    free(path);
    rm_tree(dir);
}

/* Only handles that ask for it get a checkpointer. */
static void test_opt_in(void **state)
{
    (void)state;
    char *dir = test_dir(), *path = path_in(dir, "j.db");
    kj_journal *j = NULL;
    kj_err err = {0};
    assert_int_equal(kj_journal_open(path, 0, &j, &err), 0);
    assert_null(kj_journal_ckpt(j));
    kj_journal_close(j);
    assert_int_equal(kj_journal_open(path, KJ_JOURNAL_READONLY | KJ_JOURNAL_CHECKPOINTER, &j, &err),
                     0);
    assert_null(kj_journal_ckpt(j));
    kj_journal_close(j);
    free(path);
    rm_tree(dir);
}

static int count_id(sqlite3 *db, const char *id)
{
    sqlite3_stmt *st = NULL;
    sqlite3_prepare_v2(db, "SELECT count(*) FROM events WHERE event_id = ?1", -1, &st, NULL);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
    sqlite3_finalize(st);
    return n;
}

/* --- a checkpoint that fails ------------------------------------------------------ */

/*
 * The child fills a journal, then may no longer grow any file past the
 * database's size (RLIMIT_FSIZE): new pages cannot be copied into the
 * database, while commits, whose WAL stays smaller, go on. It reports the
 * batches committed, and the checkpoint errors counted, on fd; its stderr
 * (the log) goes to log_fd.
 */
static int full_child(const char *path, int fd, int log_fd)
{
    dup2(log_fd, 2);
    signal(SIGXFSZ, SIG_IGN);
    kj_journal *j = NULL;
    kj_err err = {0};
    if (kj_journal_open(path, KJ_JOURNAL_CHECKPOINTER, &j, &err))
        return 1;
    kj_ckpt_limits_set(kj_journal_ckpt(j), &small);
    int b = 0;
    for (; file_bytes(path, "") < 3 * small.hard * FRAME_BYTES; b++)
        if (append_batch(j, "fill", b, &err))
            return 1;
    struct rlimit rl = {.rlim_cur = (rlim_t)file_bytes(path, ""), .rlim_max = RLIM_INFINITY};
    if (setrlimit(RLIMIT_FSIZE, &rl))
        return 1;
    kj_ckpt_stats st = {0};
    int64_t start = kj_mono_ms();
    for (int k = 0; st.pass_errors + st.rewind_errors == 0 || k < 20; k++) {
        if (kj_mono_ms() - start > DEADLINE_MS || append_batch(j, "full", k, &err))
            break;
        char line[32];
        int len = snprintf(line, sizeof line, "%d\n", k);
        if (write(fd, line, (size_t)len) != len)
            return 1;
        kj_ckpt_stats_get(kj_journal_ckpt(j), &st);
    }
    dprintf(fd, "errors %lld\n", (long long)(st.pass_errors + st.rewind_errors));
    _exit(0); /* no close: its checkpoint would fail too */
}

static void test_checkpoint_errors_logged(void **state)
{
    (void)state;
    char *dir = test_dir(), *path = path_in(dir, "full.db"), *log = path_in(dir, "log");
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    FILE *lf = fopen(log, "w+");
    assert_non_null(lf);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        _exit(full_child(path, fds[1], fileno(lf)));
    }
    close(fds[1]);
    int status = 0;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    FILE *acks = fdopen(fds[0], "r");
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    int k, acked = 0;
    long long errors = -1;
    char id[64];
    while (fscanf(acks, "%d", &k) == 1) {
        acked++;
        for (int e = 0; e < BATCH; e++) {
            snprintf(id, sizeof id, "full-b%d-s%d-open", k, e);
            if (count_id(db, id) != 1)
                fail_msg("acked event %s missing after failed checkpoints", id);
        }
    }
    assert_int_equal(fscanf(acks, "errors %lld", &errors), 1);
    fclose(acks);
    sqlite3_close(db);
    char text[8192] = {0};
    rewind(lf);
    size_t n = fread(text, 1, sizeof text - 1, lf);
    text[n] = 0;
    fclose(lf);
    printf("checkpoint errors: %d batches acked after the limit, %lld checkpoint errors\n", acked,
           errors);
    assert_true(errors > 0);
    assert_true(acked > 0);
    assert_non_null(strstr(text, "journal checkpoint failed"));

    kj_journal *j = NULL;
    kj_err err = {0};
    if (kj_journal_open(path, 0, &j, &err))
        fail_msg("reopen: %s", err.msg);
    int64_t problems = -1;
    assert_int_equal(kj_journal_verify(j, NULL, NULL, &problems, &err), 0);
    assert_int_equal(problems, 0);
    kj_journal_close(j);
    free(log);
    free(path);
    rm_tree(dir);
}

/* --- SIGKILL mid-load ----------------------------------------------------------- */

#define KILL_ROUNDS 10

/* Appends until killed, reporting each batch on fd once committed. */
static int child(const char *path, int round, int fd)
{
    kj_journal *j = NULL;
    kj_err err = {0};
    if (kj_journal_open(path, KJ_JOURNAL_CHECKPOINTER, &j, &err)) {
        fprintf(stderr, "child: %s\n", err.msg);
        return 1;
    }
    kj_ckpt_limits lim = small;
    lim.hard_wait = 0;
    kj_ckpt_limits_set(kj_journal_ckpt(j), &lim);
    char tag[32];
    snprintf(tag, sizeof tag, "r%d", round);
    for (int b = 0;; b++) {
        if (append_batch(j, tag, b, &err)) {
            fprintf(stderr, "child: %s\n", err.msg);
            return 1;
        }
        char line[32];
        int len = snprintf(line, sizeof line, "%d\n", b);
        if (write(fd, line, (size_t)len) != len)
            return 1;
    }
}

static void test_sigkill_with_checkpointer(void **state)
{
    (void)state;
    char *dir = test_dir(), *path = path_in(dir, "crash.db");
    unsigned seed = (unsigned)time(NULL);
    srand(seed);
    long acked = 0;
    for (int round = 0; round < KILL_ROUNDS; round++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            _exit(child(path, round, fds[1]));
        }
        close(fds[1]);
        /* Once the child commits, let it run through a few WAL cycles. */
        struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
        poll(&pfd, 1, DEADLINE_MS);
        sleep_us(20000 + (rand() % 300) * 1000L);
        kill(pid, SIGKILL);
        int status = 0;
        waitpid(pid, &status, 0);
        if (!WIFSIGNALED(status))
            fail_msg("round %d: child exited by itself (status %d), seed %u", round, status, seed);

        FILE *acks = fdopen(fds[0], "r");
        sqlite3 *db = NULL;
        assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        int b;
        char id[64];
        while (fscanf(acks, "%d", &b) == 1) {
            acked++;
            for (int k = 0; k < BATCH; k++) {
                snprintf(id, sizeof id, "r%d-b%d-s%d-open", round, b, k);
                if (count_id(db, id) != 1)
                    fail_msg("acked event %s missing after SIGKILL (seed %u)", id, seed);
            }
        }
        sqlite3_close(db);
        fclose(acks);

        kj_journal *j = NULL;
        kj_err err = {0};
        if (kj_journal_open(path, 0, &j, &err))
            fail_msg("reopen after SIGKILL: %s", err.msg);
        int64_t problems = -1;
        if (kj_journal_verify(j, NULL, NULL, &problems, &err))
            fail_msg("verify after SIGKILL round %d: %s", round, err.msg);
        assert_int_equal(problems, 0);
        kj_journal_close(j);
    }
    printf("checkpoint crash: %d kills, %ld acked batches present\n", KILL_ROUNDS, acked);
    assert_true(acked >= KILL_ROUNDS);
    free(path);
    rm_tree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_opt_in),
        cmocka_unit_test(test_idle_wal_starts_over),
        cmocka_unit_test(test_wal_bounded_with_reader),
        cmocka_unit_test(test_checkpoint_errors_logged),
        cmocka_unit_test(test_sigkill_with_checkpointer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

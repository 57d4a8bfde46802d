/*
 * Crash safety with a real process: a child appends batches in a loop and
 * reports each batch on a pipe only after kj_journal_append() returned 0;
 * the parent kills it with SIGKILL at a random moment, many times. After
 * reopening, every reported event is present exactly once and verify passes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <time.h>

#include "testutil.h"

#define ROUNDS 25
#define MAX_BATCH 64

/* Batch b of round r: sessions r-b-k opened, and those of batch b-1 closed. */
static int child(const char *path, int round, int fd)
{
    kj_journal *j = NULL;
    kj_err err = {0};
    if (kj_journal_open(path, 0, &j, &err)) {
        fprintf(stderr, "child: %s\n", err.msg);
        return 1;
    }
    static char ids[2 * MAX_BATCH][48], sess[2 * MAX_BATCH][48];
    kj_event evs[2 * MAX_BATCH];
    kj_append_result res[2 * MAX_BATCH];
    int prev_n = 0;
    for (int b = 0;; b++) {
        int n = 1 + rand() % MAX_BATCH, m = 0;
        for (int k = 0; k < n; k++, m++) {
            snprintf(sess[m], sizeof sess[m], "r%d-b%d-s%d", round, b, k);
            snprintf(ids[m], sizeof ids[m], "r%d-b%d-s%d-open", round, b, k);
            evs[m] = ev_open(ids[m], sess[m], T0 + b);
        }
        for (int k = 0; k < prev_n; k++, m++) {
            snprintf(sess[m], sizeof sess[m], "r%d-b%d-s%d", round, b - 1, k);
            snprintf(ids[m], sizeof ids[m], "r%d-b%d-s%d-close", round, b - 1, k);
            evs[m] = ev_close(ids[m], sess[m], T0 + b);
        }
        if (kj_journal_append(j, evs, (size_t)m, res, &err)) {
            fprintf(stderr, "child: %s\n", err.msg);
            return 1;
        }
        /* The ack: "batch b of n opens and prev_n closes is durable". */
        char line[64];
        int len = snprintf(line, sizeof line, "%d %d %d\n", b, n, prev_n);
        if (write(fd, line, (size_t)len) != len)
            return 1;
        prev_n = n;
    }
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

static void test_sigkill(void **state)
{
    (void)state;
    char *dir = test_dir(), *path = path_in(dir, "crash.db");
    unsigned seed = (unsigned)time(NULL);
    srand(seed);
    long acked_batches = 0, checked = 0;
    for (int round = 0; round < ROUNDS; round++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            srand(seed + (unsigned)round);
            _exit(child(path, round, fds[1]));
        }
        close(fds[1]);
        /* Kill at a random moment once the child is appending (its first ack
         * is in the pipe), however slow the machine is. */
        struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
        poll(&pfd, 1, 120000);
        struct timespec ts = {0, (rand() % 50) * 1000000L};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int status = 0;
        waitpid(pid, &status, 0);
        if (!WIFSIGNALED(status))
            fail_msg("round %d: child exited by itself (status %d), seed %u", round, status, seed);

        FILE *acks = fdopen(fds[0], "r");
        sqlite3 *db = NULL;
        assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        int b, n, prev;
        char id[64];
        while (fscanf(acks, "%d %d %d", &b, &n, &prev) == 3) {
            acked_batches++;
            for (int k = 0; k < n; k++) {
                snprintf(id, sizeof id, "r%d-b%d-s%d-open", round, b, k);
                if (count_id(db, id) != 1)
                    fail_msg("acked event %s missing after SIGKILL (seed %u)", id, seed);
                checked++;
            }
            for (int k = 0; k < prev; k++) {
                snprintf(id, sizeof id, "r%d-b%d-s%d-close", round, b - 1, k);
                if (count_id(db, id) != 1)
                    fail_msg("acked event %s missing after SIGKILL (seed %u)", id, seed);
                checked++;
            }
        }
        sqlite3_close(db);
        fclose(acks);

        kj_journal *j = NULL;
        kj_err err = {0};
        if (kj_journal_open(path, 0, &j, &err))
            fail_msg("reopen after SIGKILL: %s", err.msg);
        int64_t problems = 0;
        if (kj_journal_verify(j, NULL, NULL, &problems, &err))
            fail_msg("verify after SIGKILL round %d: %s", round, err.msg);
        kj_journal_close(j);
    }
    printf("crash: %d kills, %ld acked batches, %ld acked events present exactly once\n", ROUNDS,
           acked_batches, checked);
    assert_true(acked_batches >= ROUNDS);
    free(path);
    rm_tree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_sigkill)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}

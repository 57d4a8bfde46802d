/*
 * bench_batch - the cost of one large commit: appends N events in a single
 * kj_journal_append() (one transaction, as kjournald's group commit does with
 * --batch-max N) and prints the time, for N, N/2, N/4 and N/8, so that the
 * growth with the batch size shows (linear: each doubling doubles the time).
 *
 *     bench_batch [--dir DIR] [--events N] [--distinct users|sessions]
 *
 * Every event is a session_open of its own session; with --distinct users
 * (the default) each one also has its own user and Kyuubi instance, the
 * worst case for the totals a commit keeps by user and instance.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "journal/journal.h"

typedef struct names {
    char id[48], session[48], user[32], instance[40];
} names;

static void remove_db(const char *path)
{
    char p[4200];
    const char *suffix[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", path, suffix[i]);
        unlink(p);
    }
}

/* Seconds of wall clock, and of CPU (which a busy machine does not inflate). */
static void run(const char *path, size_t n, int distinct_users, double *wall, double *cpu)
{
    names *nm = calloc(n, sizeof *nm);
    kj_event *ev = calloc(n, sizeof *ev);
    kj_append_result *res = calloc(n, sizeof *res);
    if (!nm || !ev || !res) {
        fprintf(stderr, "bench_batch: out of memory\n");
        exit(1);
    }
    int64_t t = kj_now_ms() - 3600 * 1000;
    for (size_t i = 0; i < n; i++) {
        unsigned long long h = (i + 1) * 0x9E3779B97F4A7C15ULL;
        snprintf(nm[i].id, sizeof nm[i].id, "ev-%016llx", h);
        snprintf(nm[i].session, sizeof nm[i].session, "s-%016llx", h);
        snprintf(nm[i].user, sizeof nm[i].user, "user-%zu", distinct_users ? i : i % 200);
        snprintf(nm[i].instance, sizeof nm[i].instance, "kyuubi-%zu:10009",
                 distinct_users ? i : i % 8);
        ev[i] = (kj_event){.event_id = nm[i].id,
                           .type = KJ_EVENT_SESSION_OPEN,
                           .session_id = nm[i].session,
                           .user = nm[i].user,
                           .instance = nm[i].instance,
                           .time_ms = t + (int64_t)i};
    }
    remove_db(path);
    kj_journal *j = NULL;
    kj_err err = {0};
    if (kj_journal_open(path, 0, &j, &err)) {
        fprintf(stderr, "bench_batch: %s\n", err.msg);
        exit(1);
    }
    int64_t t0 = kj_mono_ms();
    clock_t c0 = clock();
    if (kj_journal_append(j, ev, n, res, &err)) {
        fprintf(stderr, "bench_batch: %s\n", err.msg);
        exit(1);
    }
    *cpu = (double)(clock() - c0) / CLOCKS_PER_SEC;
    *wall = (double)(kj_mono_ms() - t0) / 1000.0;
    for (size_t i = 0; i < n; i++)
        if (res[i].status != KJ_APPEND_STORED) {
            fprintf(stderr, "bench_batch: event %zu not stored: %s\n", i, res[i].message);
            exit(1);
        }
    kj_journal_close(j);
    remove_db(path);
    free(nm);
    free(ev);
    free(res);
}

static void usage(FILE *out)
{
    fprintf(out, "usage: bench_batch [--dir DIR] [--events N] [--distinct users|sessions]\n"
                 "Appends N/8, N/4, N/2 and N events (default 100000), each in one transaction,\n"
                 "to a fresh journal in DIR (default: the current directory) and prints the\n"
                 "seconds each took (wall clock and CPU). --distinct users (default): every event "
                 "has its own user\n"
                 "and instance; sessions: 200 users and 8 instances.\n");
}

int main(int argc, char **argv)
{
    const char *dir = ".";
    size_t events = 100000;
    int distinct_users = 1;
    static const struct option opts[] = {{"dir", required_argument, NULL, 'd'},
                                         {"events", required_argument, NULL, 'n'},
                                         {"distinct", required_argument, NULL, 'u'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    for (int c; (c = getopt_long(argc, argv, "d:n:u:h", opts, NULL)) != -1;) {
        switch (c) {
        case 'd':
            dir = optarg;
            break;
        case 'n':
            events = strtoul(optarg, NULL, 10);
            break;
        case 'u':
            if (strcmp(optarg, "users") && strcmp(optarg, "sessions")) {
                fprintf(stderr, "bench_batch: --distinct is users or sessions\n");
                return 2;
            }
            distinct_users = !strcmp(optarg, "users");
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc || events < 8) {
        usage(stderr);
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/bench-batch.db", dir);
    printf("distinct: %s\n%10s %10s %10s\n", distinct_users ? "users" : "sessions", "events",
           "seconds", "cpu s");
    for (size_t n = events / 8; n <= events; n *= 2) {
        double wall = 0, cpu = 0;
        run(path, n, distinct_users, &wall, &cpu);
        printf("%10zu %10.2f %10.2f\n", n, wall, cpu);
        fflush(stdout);
    }
    return 0;
}

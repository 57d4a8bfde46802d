/* journal_check - runs kj_journal_verify on a journal for the e2e tests:
 * prints each problem and "events=N last_seq=N", exits 0 when clean. */
#include <stdio.h>

#include "journal/journal.h"

static int problem(const char *p, void *ud)
{
    (void)ud;
    printf("problem: %s\n", p);
    return 0;
}

static int count(const kj_event_row *row, void *ud)
{
    (void)row;
    (*(long long *)ud)++;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: journal_check JOURNAL\n");
        return 2;
    }
    kj_journal *j = NULL;
    kj_err err = {0};
    if (kj_journal_open(argv[1], KJ_JOURNAL_READONLY, &j, &err) < 0) {
        fprintf(stderr, "journal_check: %s\n", err.msg);
        return 1;
    }
    int64_t problems = 0, seq = 0;
    long long n = 0;
    int rc = kj_journal_verify(j, problem, NULL, &problems, &err);
    if (rc < 0 && rc != KJ_ECORRUPT)
        fprintf(stderr, "journal_check: %s\n", err.msg);
    kj_journal_last_seq(j, &seq, NULL);
    kj_journal_events_after(j, 0, NULL, 0, count, &n, NULL, NULL);
    printf("events=%lld last_seq=%lld problems=%lld\n", n, (long long)seq, (long long)problems);
    kj_journal_close(j);
    return rc == 0 ? 0 : 1;
}

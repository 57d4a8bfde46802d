/*
 * bench_recover_gen - the input of the recovery benchmark: N engine pods as a
 * kube-sim seed file (a JSON array) and a journal of their sessions.
 *
 * Half the pods are to clean up: Failed long ago (container finishedAt a day
 * back), our finalizer, their session closed; the pass releases the finalizer
 * and deletes each. The other half are kept: Running, our finalizer, their
 * session open; the pass only looks at them.
 *
 * usage: bench_recover_gen --pods N --journal PATH --seed FILE [--namespace NS]
 *                          [--cleanup-names FILE]
 *
 * --cleanup-names writes the names of the pods to clean up, one a line (the
 * kubectl comparison works through them).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "journal/journal.h"

#define BATCH 1000

static void iso(int64_t ms, char *out, size_t n)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Pod i: "eng-%06zu", tag "tag-%06zu", app "spark-%06zu"; even i are cleaned up. */
static int write_seed(const char *path, const char *ns, size_t n, int64_t now,
                      const char *names_path)
{
    FILE *f = fopen(path, "w");
    FILE *names = names_path ? fopen(names_path, "w") : NULL;
    if (!f || (names_path && !names)) {
        perror(f ? names_path : path);
        if (f)
            fclose(f);
        return -1;
    }
    char created[32], started[32], finished[32];
    iso(now - 2 * 86400000LL, created, sizeof created);
    iso(now - 2 * 86400000LL + 60000, started, sizeof started);
    iso(now - 86400000LL, finished, sizeof finished);
    fputc('[', f);
    for (size_t i = 0; i < n; i++) {
        int cleanup = i % 2 == 0;
        char state[256];
        if (cleanup)
            snprintf(state, sizeof state,
                     "{\"terminated\":{\"exitCode\":1,\"reason\":\"Error\",\"startedAt\":\"%s\","
                     "\"finishedAt\":\"%s\"}}",
                     started, finished);
        else
            snprintf(state, sizeof state, "{\"running\":{\"startedAt\":\"%s\"}}", started);
        fprintf(f,
                "%s{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"eng-%06zu\","
                "\"namespace\":\"%s\",\"creationTimestamp\":\"%s\",\"labels\":{"
                "\"kyuubi-unique-tag\":\"tag-%06zu\",\"spark-app-selector\":\"spark-%06zu\","
                "\"spark-role\":\"driver\"},\"finalizers\":[\"kyuubi.apache.org/pod-cleanup\"]},"
                "\"spec\":{\"nodeName\":\"node-%zu\",\"restartPolicy\":\"Never\","
                "\"terminationGracePeriodSeconds\":0,\"containers\":[{\"name\":"
                "\"spark-kubernetes-driver\",\"image\":\"apache/spark:3.5.3\"}]},"
                "\"status\":{\"phase\":\"%s\",\"containerStatuses\":[{\"name\":"
                "\"spark-kubernetes-driver\",\"ready\":%s,\"restartCount\":0,\"state\":%s}]}}",
                i ? "," : "", i, ns, created, i, i, i % 16, cleanup ? "Failed" : "Running",
                cleanup ? "false" : "true", state);
        if (names && cleanup)
            fprintf(names, "eng-%06zu\n", i);
    }
    fputs("]\n", f);
    int rc = ferror(f) ? -1 : 0;
    if (fclose(f))
        rc = -1;
    if (names && fclose(names))
        rc = -1;
    return rc;
}

/* One session per pod, opened two days ago; the cleanup half closed a day ago. */
static int write_journal(const char *path, const char *ns, size_t n, int64_t now)
{
    kj_journal *j = NULL;
    kj_err err = {0};
    int rc = kj_journal_open(path, 0, &j, &err);
    if (rc) {
        fprintf(stderr, "bench_recover_gen: %s\n", err.msg);
        return rc;
    }
    kj_event *ev = calloc(BATCH, sizeof *ev);
    kj_append_result *res = calloc(BATCH, sizeof *res);
    char(*ids)[48] = calloc(BATCH, sizeof *ids);
    char(*sids)[48] = calloc(BATCH, sizeof *sids);
    char(*tags)[48] = calloc(BATCH, sizeof *tags);
    char(*apps)[48] = calloc(BATCH, sizeof *apps);
    if (!ev || !res || !ids || !sids || !tags || !apps) {
        rc = KJ_ENOMEM;
        goto out;
    }
    size_t k = 0;
    /* all opens, then the closes: 1.5 events per pod */
    for (int pass = 0; pass < 2 && !rc; pass++) {
        for (size_t i = 0; i < n && !rc; i++) {
            if (pass == 1 && i % 2)
                continue;
            snprintf(ids[k], sizeof ids[k], "%s-%06zu", pass ? "close" : "open", i);
            snprintf(sids[k], sizeof sids[k], "session-%06zu", i);
            snprintf(tags[k], sizeof tags[k], "tag-%06zu", i);
            snprintf(apps[k], sizeof apps[k], "spark-%06zu", i);
            ev[k] = (kj_event){.event_id = ids[k],
                               .type = pass ? KJ_EVENT_SESSION_CLOSE : KJ_EVENT_SESSION_OPEN,
                               .session_id = sids[k],
                               .user = "bench",
                               .engine_id = pass ? NULL : apps[k],
                               .engine_tag = pass ? NULL : tags[k],
                               .engine_namespace = pass ? NULL : ns,
                               .time_ms = now - (pass ? 86400000LL : 2 * 86400000LL),
                               .reason = pass ? "client" : NULL};
            if (++k == BATCH || (i + 1 == n)) {
                rc = kj_journal_append(j, ev, k, res, &err);
                for (size_t r = 0; !rc && r < k; r++)
                    if (res[r].status == KJ_APPEND_REJECTED) {
                        fprintf(stderr, "bench_recover_gen: event %s rejected: %s\n",
                                ev[r].event_id, res[r].message);
                        rc = KJ_EINVAL;
                    }
                k = 0;
            }
        }
        if (!rc && k) {
            rc = kj_journal_append(j, ev, k, res, &err);
            k = 0;
        }
    }
    if (rc && err.msg[0])
        fprintf(stderr, "bench_recover_gen: %s\n", err.msg);
out:
    free(ev);
    free(res);
    free(ids);
    free(sids);
    free(tags);
    free(apps);
    kj_journal_close(j);
    return rc;
}

int main(int argc, char **argv)
{
    size_t n = 10000;
    const char *journal = NULL, *seed = NULL, *ns = "kyuubi", *names = NULL;
    static const struct option opts[] = {
        {"pods", required_argument, 0, 'n'},          {"journal", required_argument, 0, 'j'},
        {"seed", required_argument, 0, 's'},          {"namespace", required_argument, 0, 'N'},
        {"cleanup-names", required_argument, 0, 'c'}, {0, 0, 0, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'n':
            n = strtoul(optarg, NULL, 10);
            break;
        case 'j':
            journal = optarg;
            break;
        case 's':
            seed = optarg;
            break;
        case 'N':
            ns = optarg;
            break;
        case 'c':
            names = optarg;
            break;
        default:
            goto usage;
        }
    }
    if (!journal || !seed || n == 0 || n > 1000000)
        goto usage;
    int64_t now = kj_now_ms();
    if (write_seed(seed, ns, n, now, names) || write_journal(journal, ns, n, now))
        return 1;
    printf("bench_recover_gen: %zu pods (%zu to clean up) in %s, journal %s\n", n, (n + 1) / 2,
           seed, journal);
    return 0;
usage:
    fprintf(stderr, "usage: bench_recover_gen --pods N --journal PATH --seed FILE "
                    "[--namespace NS] [--cleanup-names FILE]\n");
    return 2;
}

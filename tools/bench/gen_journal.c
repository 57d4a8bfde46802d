/*
 * gen_journal - builds a large journal for the CLI benchmark (bench_cli.sh):
 *
 *     gen_journal PATH [SESSIONS]        (default 1,000,000 sessions)
 *
 * Every session has two events: 95% open then close (5 to 60 minutes later),
 * 5% open then open again (they learn their Spark application id) and stay
 * open; so 1,000,000 sessions are 2,000,000 events. Sessions start over the
 * 30 days before now, 200 users, 8 Kyuubi servers, one engine each. One
 * reconcile run per 100 sessions records an action on each of 10 of them
 * (100,000 actions for a million sessions), so show finds actions.
 * Deterministic apart from "now". Appends in batches of 10,000 events.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journal/journal.h"

#define BATCH 10000
#define SPAN_MS (30LL * 24 * 3600 * 1000)

typedef struct strings {
    char event_id[64], session_id[48], user[16], instance[24], engine_id[32], engine_tag[64];
    char payload[192];
} strings;

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

static void session_strings(strings *s, long i)
{
    uint64_t h = mix((uint64_t)i);
    snprintf(s->session_id, sizeof s->session_id, "%08lx-%04x-4%03x-8%03x-%012llx", i,
             (unsigned)(h & 0xffff), (unsigned)((h >> 16) & 0xfff), (unsigned)((h >> 28) & 0xfff),
             (unsigned long long)((h >> 16) & 0xffffffffffffULL));
    snprintf(s->user, sizeof s->user, "user-%03lu", (unsigned long)(h % 200));
    snprintf(s->instance, sizeof s->instance, "kyuubi-%lu:10009", (unsigned long)((h >> 8) % 8));
    snprintf(s->engine_id, sizeof s->engine_id, "spark-%016llx",
             (unsigned long long)mix(h) & 0xffffffffffffffULL);
    snprintf(s->engine_tag, sizeof s->engine_tag, "tag-%s", s->session_id);
}

/* Nothing happens after now. */
static int64_t close_ms(int64_t t, int64_t now)
{
    return t < now - 1000 ? t : now - 1000;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: gen_journal PATH [SESSIONS]\n"
                 "Builds a journal at PATH (which must not exist) for the CLI benchmark\n"
                 "(bench_cli.sh): SESSIONS sessions (default 1000000) over the last 30 days,\n"
                 "two events each, 200 users, 8 Kyuubi servers, one reconcile run per 100\n"
                 "sessions. A million sessions take about 1 GB and a few minutes.\n"
                 "exit codes: 0 done, 1 failure, 2 usage error\n");
}

int main(int argc, char **argv)
{
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return 0;
    }
    if (argc < 2 || argc > 3) {
        usage(stderr);
        return 2;
    }
    /* An option is never a journal: "--help" once became a 1 GB file. */
    if (argv[1][0] == '-' || !argv[1][0]) {
        fprintf(stderr, "gen_journal: '%s' is not a path (an option? see --help)\n", argv[1]);
        return 2;
    }
    long sessions = 1000000;
    if (argc == 3) {
        char *end;
        errno = 0;
        sessions = strtol(argv[2], &end, 10);
        if (errno || end == argv[2] || *end || sessions < 1) {
            fprintf(stderr, "gen_journal: SESSIONS '%s': expected a positive number\n", argv[2]);
            return 2;
        }
    }
    kj_journal *j;
    kj_err err = {0};
    if (kj_journal_open(argv[1], KJ_JOURNAL_NOCREATE, &j, &err) == 0) {
        fprintf(stderr, "gen_journal: %s exists; remove it first\n", argv[1]);
        kj_journal_close(j);
        return 1;
    }
    if (kj_journal_open(argv[1], 0, &j, &err) < 0) {
        fprintf(stderr, "gen_journal: %s\n", err.msg);
        return 1;
    }
    int64_t now = kj_now_ms(), start = now - SPAN_MS, t0 = kj_mono_ms();
    strings *str = calloc(BATCH, sizeof *str);
    kj_event *ev = calloc(BATCH, sizeof *ev);
    kj_append_result *res = calloc(BATCH, sizeof *res);
    kj_action *acts = calloc(BATCH, sizeof *acts);
    if (!str || !ev || !res || !acts)
        return 1;
    long events = 0, actions = 0;
    for (long first = 0; first < sessions; first += BATCH / 2) {
        size_t n = 0, na = 0;
        int64_t run_id = 0;
        if (kj_journal_run_begin(j, "resync", 0, &run_id, &err) < 0) {
            fprintf(stderr, "gen_journal: %s\n", err.msg);
            return 1;
        }
        for (long i = first; i < first + BATCH / 2 && i < sessions; i++) {
            strings *s = &str[n];
            session_strings(s, i);
            int64_t t = start + (SPAN_MS - 60000) * i / sessions;
            uint64_t h = mix((uint64_t)i * 7 + 1);
            snprintf(s->event_id, sizeof s->event_id, "%s-open", s->session_id);
            snprintf(s->payload, sizeof s->payload,
                     "{\"eventType\":\"SESSION_OPEN\",\"sessionId\":\"%s\",\"user\":\"%s\","
                     "\"clientIp\":\"10.1.%u.%u\"}",
                     s->session_id, s->user, (unsigned)(h % 250), (unsigned)((h >> 8) % 250));
            ev[n++] = (kj_event){.event_id = s->event_id,
                                 .type = KJ_EVENT_SESSION_OPEN,
                                 .session_id = s->session_id,
                                 .instance = s->instance,
                                 .user = s->user,
                                 .engine_tag = s->engine_tag,
                                 .engine_namespace = "kyuubi",
                                 .time_ms = t,
                                 .payload = s->payload};
            strings *c = &str[n];
            int open = h % 20 == 0;
            snprintf(c->event_id, sizeof c->event_id, "%s-%s", s->session_id,
                     open ? "engine" : "close");
            ev[n++] =
                (kj_event){.event_id = c->event_id,
                           .type = open ? KJ_EVENT_SESSION_OPEN : KJ_EVENT_SESSION_CLOSE,
                           .session_id = s->session_id,
                           .engine_id = s->engine_id,
                           .time_ms = close_ms(t + 60000 + (int64_t)((h >> 12) % 3300000), now),
                           .reason = open ? NULL : "client"};
            if (i % 10 == 0)
                acts[na++] = (kj_action){.run_id = run_id,
                                         .time_ms = t + 3600000,
                                         .namespace_ = "kyuubi",
                                         .pod = s->engine_tag,
                                         .uid = s->engine_id,
                                         .engine_tag = s->engine_tag,
                                         .engine_id = s->engine_id,
                                         .action = "delete",
                                         .reason = "closed longer than the engine grace",
                                         .result = "ok",
                                         .http_code = 200};
        }
        if (kj_journal_append(j, ev, n, res, &err) < 0 ||
            kj_journal_action_record_batch(j, acts, na, &err) < 0 ||
            kj_journal_run_end(j, run_id, "converged", (int64_t)na, (int64_t)na, 0, &err) < 0) {
            fprintf(stderr, "gen_journal: %s\n", err.msg);
            return 1;
        }
        for (size_t i = 0; i < n; i++)
            if (res[i].status != KJ_APPEND_STORED) {
                fprintf(stderr, "gen_journal: event %s not stored: %s\n", ev[i].event_id,
                        res[i].message);
                return 1;
            }
        events += (long)n;
        actions += (long)na;
    }
    kj_journal_close(j);
    printf("gen_journal: %ld sessions, %ld events, %ld actions in %.1f s\n", sessions, events,
           actions, (double)(kj_mono_ms() - t0) / 1000.0);
    free(str);
    free(ev);
    free(res);
    free(acts);
    return 0;
}

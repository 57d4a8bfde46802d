/* cmd_events.c - kjournal events: the event log, and -f to follow it. */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"

#define FOLLOW_POLL_MS 200
#define FOLLOW_DEFAULT_LINES 10

static const char help[] =
    "usage: kjournal events [OPTIONS]\n"
    "\n"
    "Lists events in the order they happened (by event time, then commit order).\n"
    "The journal is opened read-only and read page by page, so kjournald keeps\n"
    "writing and checkpointing while a long listing streams.\n";

static const char examples[] = "\nexamples:\n"
                               "  kjournal events --since -1h\n"
                               "  kjournal events --session 8e9f1c2a-41d7-4b1e-9b0e-3f1c2a41d74b\n"
                               "  kjournal events --since today --until -10m -o csv > today.csv\n"
                               "  kjournal events -f -o json | jq .session_id\n";

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

typedef struct ctx {
    kj_out *o;
    int64_t max_seq;      /* print only events committed up to here (0: any) */
    int64_t since, until; /* while following: the time window */
} ctx;

static int on_event(const kj_event_row *r, void *ud)
{
    ctx *x = ud;
    if (x->max_seq && r->seq > x->max_seq)
        return 0;
    if ((x->since && r->event.time_ms < x->since) || (x->until && r->event.time_ms >= x->until))
        return 0;
    return kj_print_event(r, x->o) || stop;
}

static int ignore_session(const kj_session *s, void *ud)
{
    (void)s;
    (void)ud;
    return 0;
}

/* Waits up to ms for a signal or for stdout to go away (a pipe whose reader
 * closed reports POLLERR); returns non-zero when it is time to stop. */
static int follow_wait(int ms)
{
    struct pollfd p = {.fd = STDOUT_FILENO, .events = 0};
    int n = poll(&p, 1, ms);
    if (stop)
        return 1;
    return n > 0 && (p.revents & (POLLERR | POLLHUP | POLLNVAL));
}

static int follow(kj_journal *j, ctx *x, const char *session, int64_t after, kj_err *err)
{
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    x->max_seq = 0;
    while (!stop && !kj_out_closed(x->o)) {
        kj_out_flush(x->o);
        if (follow_wait(FOLLOW_POLL_MS))
            break;
        int rc = kj_journal_events_after(j, after, session, 0, on_event, x, &after, err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int kj_cmd_events(int argc, char **argv)
{
    kj_event_filter f = {.limit = -1};
    int following = 0;
    const kj_opt opts[] = {
        {"session", 0, KJ_OPT_STRING, &f.session_id, "ID", .help = "only this session's events"},
        {"lines", 'n', KJ_OPT_COUNT, &f.limit, "N", .help = "the last N events ('all': every one)"},
        {"reverse", 'r', KJ_OPT_FLAG, &f.reverse, NULL, .help = "newest first"},
        {"follow", 'f', KJ_OPT_FLAG, &following, NULL,
         .help = "after the last events (10 unless -n), print new events as they\n"
                 "are committed, in commit order, until interrupted (Ctrl-C)"},
        {0},
    };
    const kj_cli_spec spec = {
        .help = help, .opts = opts, .examples = examples, .flags = KJ_CLI_TIMES | KJ_CLI_NOTFOUND};
    kj_cli_common c;
    int rc;
    if ((rc = kj_cli_parse(&c, &spec, argc, argv)))
        return rc;
    if (following && f.reverse)
        return kj_cli_fail(&c, KJ_EXIT_USAGE, "-f and -r cannot be used together");
    if ((rc = kj_cli_times(&c, &f.since_ms, &f.until_ms)))
        return rc;
    if (f.limit < 0) /* no -n */
        f.limit = following ? FOLLOW_DEFAULT_LINES : 0;

    kj_journal *j = NULL;
    if ((rc = kj_cli_open(&c, KJ_JOURNAL_READONLY, &j)))
        return rc;
    kj_err err = {0};
    int qrc = 0;
    /* An unknown session is an error, unless following: it may yet appear. */
    if (f.session_id && !following) {
        qrc = kj_journal_session_get(j, f.session_id, ignore_session, NULL, &err);
        if (qrc == KJ_ENOENT) {
            kj_journal_close(j);
            return kj_cli_fail(&c, KJ_EXIT_NOTFOUND, "no session '%s' in journal '%s'",
                               f.session_id, c.journal);
        }
    }
    ctx x = {.o = kj_out_new(&c)};
    /* Following starts after the last event committed now; the first listing
     * leaves out anything committed later, which following prints. */
    int64_t last = 0;
    if (!qrc && following)
        qrc = kj_journal_last_seq(j, &last, &err);
    x.max_seq = last;
    kj_out_begin_list(x.o, "events", following ? NULL : "-- no events --", kj_event_fields,
                      kj_event_nfields);
    kj_out_last(x.o, f.limit, &f.reverse);
    if (!qrc && !(following && last == 0))
        qrc = kj_journal_events(j, &f, on_event, &x, &err);
    kj_out_release(x.o);
    if (qrc >= 0 && following) {
        x.since = f.since_ms;
        x.until = f.until_ms;
        qrc = follow(j, &x, f.session_id, last, &err);
    }
    kj_out_end_list(x.o);
    rc = kj_out_free(x.o);
    if (qrc < 0)
        rc = kj_cli_fail_err(&c, &err);
    kj_journal_close(j);
    return rc;
}
